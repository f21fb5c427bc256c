//! Random tokens and constant-time comparison: the two primitives every secret in the gateway uses.

use base64::Engine;
use rand::RngCore;
use subtle::ConstantTimeEq;

/// `n` bytes from the OS CSPRNG, base64url without padding. Used for execution ids, session ids
/// and CSRF tokens: 32 bytes makes them unguessable.
pub fn random_token(n: usize) -> String {
    let mut buf = vec![0u8; n];
    rand::rngs::OsRng.fill_bytes(&mut buf);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
}

/// Compares two secrets without leaking through timing where they differ.
pub fn equal(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// A secret a user typed (a password, a one-time code). `Debug` is redacted and there is no
/// `Display`, so it cannot end up in a log line by accident.
pub struct SecretString(String);

impl SecretString {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    /// The secret itself; call only where it is hashed or compared.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// Stored as the plain string (an execution keeps its CSRF token and a code's hash this way):
/// serialising is how a secret reaches the store, never a log.
impl serde::Serialize for SecretString {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for SecretString {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Self)
    }
}

impl std::fmt::Debug for SecretString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretString(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_distinct_and_url_safe() {
        let a = random_token(32);
        assert_ne!(a, random_token(32));
        assert!(a
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    }

    #[test]
    fn secret_strings_round_trip_through_serde_but_not_debug() {
        let s = SecretString::new("hunter2");
        let json = serde_json::to_string(&s).expect("serialises");
        assert_eq!(json, "\"hunter2\"");
        let back: SecretString = serde_json::from_str(&json).expect("deserialises");
        assert_eq!(back.expose(), "hunter2");
        assert!(!format!("{back:?}").contains("hunter2"));
    }

    #[test]
    fn equal_compares_content() {
        assert!(equal(b"abc", b"abc"));
        assert!(!equal(b"abc", b"abd"));
        assert!(!equal(b"abc", b"ab"));
    }
}

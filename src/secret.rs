//! Random tokens and constant-time comparison: the two primitives every secret in the gateway uses.

use base64::Engine;
use rand::RngCore;
use subtle::ConstantTimeEq;

/// `n` bytes from the OS CSPRNG, base64url without padding. Used for execution ids, session ids
/// and CSRF tokens: 32 bytes makes them unguessable.
#[must_use]
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
/// `Display`, so it cannot end up in a log line by accident. Not `Clone`: it is used once.
pub struct SecretString(String);

impl SecretString {
    /// Wraps what the user typed.
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

/// A secret the gateway holds for a while: a signing key, an SMTP password, an SMS provider's
/// token, a CSRF token. `Debug` prints `Secret(<redacted>)`, there is no `Display`, and the
/// value is read through [`Secret::expose`] alone, so a `{:?}` of a whole configuration or of
/// a key file names no secret.
///
/// # Security
/// `Serialize` writes the value itself: it exists for the files that must keep it (the
/// signing keys file, mode 0600). Never serialize a `Secret` into a log or a response.
#[derive(Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    /// Wraps a secret value.
    pub fn new(value: T) -> Self {
        Self(value)
    }

    /// The secret itself; call only where it is used (signed with, sent to its provider,
    /// compared in constant time).
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> From<T> for Secret<T> {
    fn from(value: T) -> Self {
        Self(value)
    }
}

impl From<&str> for Secret<String> {
    fn from(value: &str) -> Self {
        Self(value.to_string())
    }
}

impl<T> std::fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
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
    fn secrets_print_redacted() {
        let s = Secret::new("hunter2".to_string());
        assert_eq!(format!("{s:?}"), "Secret(<redacted>)");
        assert_eq!(s.expose(), "hunter2");
        assert!(!format!("{:?}", SecretString::new("hunter2")).contains("hunter2"));
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

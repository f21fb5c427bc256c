//! One-time code primitives: generation from the OS CSPRNG, keyed hashing, constant-time
//! checks, masking of destinations, and the messages the code machine ([`super::code`]) shows.

use crate::secret::SecretString;
use hmac::{Hmac, Mac};
use rand::Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Message shown when the attempt limit is reached; the execution ends.
pub(crate) const TOO_MANY_ATTEMPTS: &str = "Too many attempts. Start the sign-in again.";
/// Message shown when a send limit is reached.
pub(crate) const TOO_MANY_SENDS: &str =
    "No more codes can be sent for this sign-in right now. Try again later.";
/// The account-wide cap of verification mail (see `ACCOUNT_SENDS_FACTOR`); the same words for
/// a name that matches no account.
pub(crate) const TOO_MANY_FOR_ACCOUNT: &str =
    "Too many messages were requested for this account recently. Try again later.";
pub(crate) const WRONG_CODE: &str = "That code is not valid. Check it and try again.";
pub(crate) const EXPIRED_CODE: &str = "That code has expired. Send a new one.";
pub(crate) const RESENT: &str = "A new code was sent. Codes sent earlier no longer work.";
pub(crate) const RESENT_LINK: &str = "A new link was sent. Links sent earlier no longer work.";

/// A code of `len` decimal digits, each drawn uniformly from the OS CSPRNG.
///
/// # Security
/// Uniform per digit (`gen_range` rejects biased draws), so a 6-digit code has 10^6 equally
/// likely values; the attempt limits of the code machine keep guessing hopeless. Returned as a
/// [`SecretString`] so that from here to the transport it cannot be logged by a `{:?}`.
pub fn generate_code(len: u32) -> SecretString {
    let mut rng = rand::rngs::OsRng;
    SecretString::new(
        (0..len)
            .map(|_| char::from(b'0' + rng.gen_range(0..10u8)))
            .collect::<String>(),
    )
}

/// HMAC-SHA256 of a code under the gateway's OTP key, bound to its purpose. Codes are short, so
/// a plain hash could be reversed by trying them all; without the key nobody can.
pub fn hash_code(key: &[u8; 32], purpose: &str, code: &str) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC accepts 32-byte keys"));
    mac.update(purpose.as_bytes());
    mac.update(b"\0");
    mac.update(code.as_bytes());
    hex(&mac.finalize().into_bytes())
}

/// SHA-256 of a high-entropy token (a link secret): enough, since it cannot be guessed.
pub(crate) fn hash_token(token: &SecretString) -> String {
    hex(&Sha256::digest(token.expose().as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `code` (trimmed) matches `stored` (a [`hash_code`] result under the same key and
/// purpose), compared in constant time.
pub fn verify_code(key: &[u8; 32], purpose: &str, code: &str, stored: &str) -> bool {
    let candidate = hash_code(key, purpose, code.trim());
    crate::secret::equal(candidate.as_bytes(), stored.as_bytes())
}

/// A magic link's server-side record, stored under the hash of its token (the token itself is
/// only ever in the e-mail).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LinkTicket {
    /// The execution waiting for the link.
    pub execution: String,
    /// That execution's flow, to send a confirming tab back to it.
    pub flow: String,
    /// The plan's stage that sent it.
    pub stage: String,
    /// Set when someone opened the link and confirmed; the stage then consumes it.
    pub confirmed: bool,
    /// Whether the tab that confirms may carry on with the sign-in (same browser only).
    pub continue_in_verify_window: bool,
    /// Who asked for the link, shown when it is opened in another browser. Tickets written
    /// before this was recorded read as an unknown browser.
    #[serde(default)]
    pub requester: super::requester::Requester,
}

/// Shows an address so its owner recognises it without revealing it to a bystander:
/// `al***@example.com`, `+41*****89`.
pub(crate) fn mask(address: &str) -> String {
    if let Some((local, domain)) = address.split_once('@') {
        let keep: String = local.chars().take(2).collect();
        return format!("{keep}***@{domain}");
    }
    let chars: Vec<char> = address.chars().collect();
    if chars.len() <= 5 {
        return "*".repeat(chars.len());
    }
    let head: String = chars[..3].iter().collect();
    let tail: String = chars[chars.len() - 2..].iter().collect();
    format!("{head}{}{tail}", "*".repeat(chars.len() - 5))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_have_the_length_and_only_digits() {
        let c = generate_code(8);
        let c = c.expose();
        assert_eq!(c.len(), 8);
        assert!(c.bytes().all(|b| b.is_ascii_digit()));
    }

    #[test]
    fn code_hash_verifies_only_same_code_and_purpose() {
        let key = [7u8; 32];
        let h = hash_code(&key, "email:x:s", "123456");
        assert!(verify_code(&key, "email:x:s", "123456", &h));
        assert!(verify_code(&key, "email:x:s", " 123456 ", &h));
        assert!(!verify_code(&key, "email:x:s", "123457", &h));
        assert!(!verify_code(&key, "email:y:s", "123456", &h));
        assert!(!verify_code(&[8u8; 32], "email:x:s", "123456", &h));
    }

    #[test]
    fn masks_addresses() {
        assert_eq!(mask("alice@example.com"), "al***@example.com");
        assert_eq!(mask("+41791234589"), "+41*******89");
    }
}

//! Recovery codes (authentik's static tokens, NIST SP 800-63B look-up secrets): made from the
//! OS CSPRNG, shown once, stored as keyed hashes, each used once.
//!
//! # Security
//! A code is 12 characters (by default) of a 32-letter alphabet: 60 bits, far beyond what an
//! attacker could try, so a fast keyed hash (HMAC-SHA-256 under a store secret, bound to the
//! user) stores it safely; argon2's slowness is for passwords people choose. The key lives in
//! the store's secrets, so a leaked device record alone cannot be checked offline either.

use hmac::{Hmac, Mac};
use rand::Rng;
use serde::{Deserialize, Serialize};

/// Letters and digits that cannot be mistaken for each other (no 0/O, 1/I/L, U).
const ALPHABET: &[u8; 32] = b"ABCDEFGHJKMNPQRSTVWXYZ0123456789";
/// The store secret codes are hashed under.
pub(crate) const HASH_SECRET: &str = "recovery-codes";
/// Left at or under this many, the user is told to make a new set.
pub(crate) const FEW_LEFT: usize = 2;

/// `count` fresh codes of `length` characters.
pub(crate) fn new_codes(count: u32, length: u32) -> Vec<String> {
    let mut rng = rand::rngs::OsRng;
    (0..count)
        .map(|_| {
            (0..length)
                .map(|_| char::from(ALPHABET[rng.gen_range(0..ALPHABET.len())]))
                .collect()
        })
        .collect()
}

/// A typed code as stored codes are hashed: spaces and dashes dropped, upper case, and the
/// letters people read for digits (O, I, L) taken as those digits.
fn normalise(typed: &str) -> String {
    typed
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .map(|c| match c.to_ascii_uppercase() {
            'O' => '0',
            'I' | 'L' => '1',
            other => other,
        })
        .collect()
}

/// The keyed hash of `code` for `username`, base64url.
pub(crate) fn hash(key: &[u8; 32], username: &str, code: &str) -> String {
    use base64::Engine;
    // HMAC takes keys of any length; a 32-byte key never fails.
    let Ok(mut mac) = Hmac::<sha2::Sha256>::new_from_slice(key) else {
        return String::new();
    };
    mac.update(username.as_bytes());
    mac.update(b"\0");
    mac.update(normalise(code).as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

/// What a recovery-code device keeps in [`crate::store::Device::secret`] (as JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Material {
    /// The hashes of the codes not used yet.
    pub(crate) hashes: Vec<String>,
}

impl Material {
    /// The material of a stored device; `None` when it holds none or it does not decode.
    pub(crate) fn of(device: &crate::store::Device) -> Option<Material> {
        serde_json::from_str(device.secret.as_deref()?).ok()
    }

    /// As stored in [`crate::store::Device::secret`].
    pub(crate) fn to_stored(&self) -> Option<String> {
        serde_json::to_string(self).ok()
    }

    /// Without the code whose hash is `h`, if it is there (compared in constant time).
    pub(crate) fn without(&self, h: &str) -> Option<Material> {
        let mut found = None;
        for (i, have) in self.hashes.iter().enumerate() {
            if crate::secret::equal(have.as_bytes(), h.as_bytes()) && found.is_none() {
                found = Some(i);
            }
        }
        let i = found?;
        let mut hashes = self.hashes.clone();
        hashes.remove(i);
        Some(Material { hashes })
    }
}

/// The device id every recovery-code set of a user is stored under: a new set replaces the
/// old one in one write.
pub(crate) const DEVICE_ID: &str = "recovery-codes";

/// A new set of codes for `username` as a device (`stage`: the setup stage or `cli`), and the
/// codes to show once.
pub(crate) fn issue(
    key: &[u8; 32],
    username: &str,
    name: &str,
    stage: &str,
    count: u32,
    length: u32,
    now: i64,
) -> (crate::store::Device, Vec<String>) {
    let codes = new_codes(count, length);
    let material = Material {
        hashes: codes.iter().map(|c| hash(key, username, c)).collect(),
    };
    let device = crate::store::Device {
        id: DEVICE_ID.into(),
        username: username.into(),
        class: crate::store::DeviceClass::Static,
        name: name.into(),
        address: String::new(),
        address_hash: None,
        stage: stage.into(),
        created: now,
        last_used: None,
        secret: material.to_stored(),
    };
    (device, codes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_of_the_alphabet_and_hash_per_user() {
        let codes = new_codes(10, 12);
        assert_eq!(codes.len(), 10);
        assert!(codes
            .iter()
            .all(|c| c.len() == 12 && c.bytes().all(|b| ALPHABET.contains(&b))));
        let mut unique = codes.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), 10);
        let key = [7u8; 32];
        assert_eq!(
            hash(&key, "alice", "ABCD-EFGH 2345"),
            hash(&key, "alice", "abcdefgh2345")
        );
        assert_ne!(hash(&key, "alice", "ABCD"), hash(&key, "bob", "ABCD"));
        assert_ne!(
            hash(&key, "alice", "ABCD"),
            hash(&[8u8; 32], "alice", "ABCD")
        );
    }

    #[test]
    fn a_used_code_leaves_the_set() {
        let key = [1u8; 32];
        let (device, codes) = issue(&key, "alice", "Recovery codes", "s", 3, 12, 0);
        let m = Material::of(&device).unwrap();
        let left = m.without(&hash(&key, "alice", &codes[1])).unwrap();
        assert_eq!(left.hashes.len(), 2);
        assert!(left.without(&hash(&key, "alice", &codes[1])).is_none());
    }
}

//! Session signing keys: generated on first start, kept in a 0600 file with a key id each,
//! rotated by adding a new active key while old ones keep verifying until their tokens expire.
//! A rotated-out key is retired: it verifies only tokens issued before its retirement and
//! expiring within the longest session lifetime after it, and is dropped from the file once
//! that has passed, so a leaked old key cannot mint tokens for ever.

use crate::clock::Clock;
use crate::secret::{random_token, Secret};
use base64::Engine;
use jsonwebtoken::{DecodingKey, EncodingKey};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Why the signing keys file could not be used; it names the file, never a key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The file could not be read or written.
    #[error("session keys {path}: {source}")]
    Io {
        /// The keys file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a keys file, or a key in it is unusable.
    #[error("session keys {path}: not a keys file: {reason}")]
    Invalid {
        /// The keys file.
        path: PathBuf,
        /// What is wrong, naming a key by its id only.
        reason: String,
    },
}

/// The keys file as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyFile {
    /// The key id new tokens are signed with.
    pub active: String,
    /// The session (HS256) keys, retired ones included.
    pub keys: Vec<KeyEntry>,
    /// Ed25519 keys for identity assertions to upstreams (public halves at
    /// `/.portcullis/jwks.json`); the last one signs.
    #[serde(default)]
    pub assertion: Vec<AssertionKey>,
}

/// An asymmetric signing key for identity assertions.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AssertionKey {
    /// The key id (the JWT's `kid`).
    pub kid: String,
    /// `EdDSA`.
    pub alg: String,
    /// PKCS#8 PEM of the private key.
    ///
    /// # Security
    /// Whoever holds it can sign identity assertions every upstream believes.
    pub private_pem: Secret<String>,
    /// The raw 32-byte public key, base64url: the JWK's `x`.
    pub public_x: String,
    /// When it was made (unix seconds).
    pub created: i64,
}

impl AssertionKey {
    fn generate(now: i64) -> Result<Self, String> {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).map_err(|e| e.to_string())?;
        Ok(Self {
            kid: random_token(9),
            alg: "EdDSA".into(),
            private_pem: Secret::new(pair.serialize_pem()),
            public_x: base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(pair.public_key_raw()),
            created: now,
        })
    }
}

/// A session signing key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyEntry {
    /// The key id (the JWT's `kid`).
    pub kid: String,
    /// `HS256`.
    pub alg: String,
    /// 32 random bytes, base64url without padding.
    ///
    /// # Security
    /// Whoever holds it can mint session cookies for any user.
    pub secret: Secret<String>,
    /// When it was made (unix seconds).
    pub created: i64,
    /// Set when the key was rotated out: what it may still verify.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retired: Option<Retired>,
}

/// What a retired key still verifies: tokens issued up to `at` (unix seconds) that expire by
/// `verify_until`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Retired {
    pub at: i64,
    pub verify_until: i64,
}

impl KeyEntry {
    fn generate(now: i64) -> Self {
        Self {
            kid: random_token(9),
            alg: "HS256".into(),
            secret: Secret::new(random_token(32)),
            created: now,
            retired: None,
        }
    }
}

impl KeyFile {
    /// Reads the keys file, creating it with one fresh key when it does not exist; keys made
    /// are dated by `clock`.
    ///
    /// # Errors
    /// [`KeyError`] naming the path when it cannot be read, written or parsed.
    pub fn load_or_create(path: &Path, clock: &dyn Clock) -> Result<KeyFile, KeyError> {
        match std::fs::read(path) {
            Ok(bytes) => {
                let mut file: KeyFile =
                    serde_json::from_slice(&bytes).map_err(|e| KeyError::Invalid {
                        path: path.to_path_buf(),
                        reason: e.to_string(),
                    })?;
                file.check(path)?;
                if file.assertion.is_empty() {
                    // Files written before assertions existed get their key on next load.
                    file.assertion
                        .push(AssertionKey::generate(clock.now()).map_err(|reason| {
                            KeyError::Invalid {
                                path: path.to_path_buf(),
                                reason,
                            }
                        })?);
                    file.save(path)?;
                }
                Ok(file)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = KeyEntry::generate(clock.now());
                let assertion =
                    AssertionKey::generate(clock.now()).map_err(|reason| KeyError::Invalid {
                        path: path.to_path_buf(),
                        reason,
                    })?;
                let file = KeyFile {
                    active: key.kid.clone(),
                    keys: vec![key],
                    assertion: vec![assertion],
                };
                file.save(path)?;
                Ok(file)
            }
            Err(source) => Err(KeyError::Io {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// Reads and checks the keys file if there is one; a missing file is fine (it is created
    /// on first start).
    ///
    /// # Errors
    /// [`KeyError`] naming the path when it exists but cannot be read or is not a keys file.
    pub fn check_existing(path: &Path) -> Result<(), KeyError> {
        match std::fs::read(path) {
            Ok(bytes) => {
                let file: KeyFile =
                    serde_json::from_slice(&bytes).map_err(|e| KeyError::Invalid {
                        path: path.to_path_buf(),
                        reason: e.to_string(),
                    })?;
                file.check(path)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(KeyError::Io {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// Adds a new key and makes it the active one; returns its id. The key it replaces is
    /// retired: it keeps verifying the tokens it signed, which live at most `max_lifetime`
    /// seconds, and nothing newer. Keys whose last token has expired are removed.
    ///
    /// # Errors
    /// As [`KeyFile::load_or_create`].
    pub fn rotate(path: &Path, max_lifetime: i64, clock: &dyn Clock) -> Result<String, KeyError> {
        let mut file = Self::load_or_create(path, clock)?;
        let now = clock.now();
        let previous = file.active.clone();
        for k in &mut file.keys {
            if k.kid == previous && k.retired.is_none() {
                k.retired = Some(Retired {
                    at: now,
                    verify_until: now.saturating_add(max_lifetime),
                });
            }
        }
        file.keys
            .retain(|k| k.retired.is_none_or(|r| r.verify_until >= now));
        let key = KeyEntry::generate(now);
        let kid = key.kid.clone();
        file.active = kid.clone();
        file.keys.push(key);
        file.assertion
            .push(
                AssertionKey::generate(clock.now()).map_err(|reason| KeyError::Invalid {
                    path: path.to_path_buf(),
                    reason,
                })?,
            );
        file.save(path)?;
        Ok(kid)
    }

    fn check(&self, path: &Path) -> Result<(), KeyError> {
        let invalid = |reason: String| KeyError::Invalid {
            path: path.to_path_buf(),
            reason,
        };
        if !self.keys.iter().any(|k| k.kid == self.active) {
            return Err(invalid(format!(
                "active key `{}` is not in the file",
                self.active
            )));
        }
        for k in &self.keys {
            if k.alg != "HS256" {
                return Err(invalid(format!(
                    "key `{}` has unsupported alg `{}`",
                    k.kid, k.alg
                )));
            }
            let secret = decode_secret(k.secret.expose())
                .ok_or_else(|| invalid(format!("key `{}` has no valid secret", k.kid)))?;
            if secret.len() < 32 {
                return Err(invalid(format!("key `{}` is shorter than 32 bytes", k.kid)));
            }
        }
        Ok(())
    }

    /// Writes atomically (temp file + rename) with mode 0600, so a crash never leaves half a file.
    fn save(&self, path: &Path) -> Result<(), KeyError> {
        let io = |source| KeyError::Io {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let tmp = path.with_extension("json.tmp");
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(&tmp).map_err(io)?;
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| io(std::io::Error::other(e)))?;
        f.write_all(&bytes).map_err(io)?;
        f.sync_all().map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)?;
        Ok(())
    }
}

pub(super) fn decode_secret(s: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .ok()
}

/// A key prepared for verifying, with what it may still verify when retired.
pub(super) struct VerifyKey {
    pub(super) key: DecodingKey,
    pub(super) retired: Option<Retired>,
}

impl VerifyKey {
    /// Whether a token with these times may have been signed with this key legitimately.
    pub(super) fn admits(&self, iat: i64, exp: i64) -> bool {
        self.retired
            .is_none_or(|r| iat <= r.at && exp <= r.verify_until)
    }
}

/// Keys prepared once for signing and verifying.
pub struct Keyring {
    pub(super) active_kid: String,
    pub(super) encoding: EncodingKey,
    pub(super) decoding: HashMap<String, VerifyKey>,
    /// Raw active secret, for HMACs that are not JWTs (logout CSRF tokens).
    pub(super) mac_secret: Secret<Vec<u8>>,
}

impl Keyring {
    /// The keys of `file` prepared for signing and verifying; a key whose secret does not
    /// decode is skipped (the file was checked when loaded).
    pub fn from_file(file: &KeyFile) -> Keyring {
        let mut decoding = HashMap::new();
        let mut encoding = None;
        let mut mac_secret = Vec::new();
        for k in &file.keys {
            let Some(secret) = decode_secret(k.secret.expose()) else {
                continue;
            };
            decoding.insert(
                k.kid.clone(),
                VerifyKey {
                    key: DecodingKey::from_secret(&secret),
                    retired: k.retired,
                },
            );
            if k.kid == file.active {
                encoding = Some(EncodingKey::from_secret(&secret));
                mac_secret = secret;
            }
        }
        Keyring {
            active_kid: file.active.clone(),
            encoding: encoding.unwrap_or_else(|| EncodingKey::from_secret(&mac_secret)),
            decoding,
            mac_secret: Secret::new(mac_secret),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SystemClock;

    #[test]
    fn created_file_is_private_and_rotation_keeps_old_keys() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("keys.json");
        let first = KeyFile::load_or_create(&p, &SystemClock).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let kid = KeyFile::rotate(&p, 3600, &SystemClock).unwrap();
        let after = KeyFile::load_or_create(&p, &SystemClock).unwrap();
        assert_eq!(after.active, kid);
        assert_eq!(after.keys.len(), 2);
        let old = after.keys.iter().find(|k| k.kid == first.active).unwrap();
        let r = old.retired.expect("the replaced key is retired");
        assert_eq!(r.verify_until - r.at, 3600);
        assert!(after
            .keys
            .iter()
            .find(|k| k.kid == kid)
            .unwrap()
            .retired
            .is_none());
    }

    #[test]
    fn a_printed_key_file_shows_no_key_material() {
        let dir = tempfile::tempdir().unwrap();
        let file = KeyFile::load_or_create(&dir.path().join("keys.json"), &SystemClock).unwrap();
        let printed = format!("{file:?}");
        for k in &file.keys {
            assert!(!printed.contains(k.secret.expose().as_str()), "{printed}");
        }
        for a in &file.assertion {
            assert!(!printed.contains("PRIVATE KEY"), "{printed}");
            assert!(!printed.contains(a.private_pem.expose().as_str()));
        }
    }

    #[test]
    fn retired_keys_admit_only_tokens_from_before_their_retirement() {
        let k = VerifyKey {
            key: DecodingKey::from_secret(b"x"),
            retired: Some(Retired {
                at: 1000,
                verify_until: 4600,
            }),
        };
        assert!(k.admits(999, 4599));
        assert!(!k.admits(1001, 4000), "minted after retirement");
        assert!(
            !k.admits(900, 9999),
            "backdated but living past every real token"
        );
    }

    #[test]
    fn keys_past_their_last_token_are_dropped_at_the_next_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("keys.json");
        let first = KeyFile::load_or_create(&p, &SystemClock).unwrap();
        // With no lifetime left, the first key's tokens are all expired by the next rotation.
        KeyFile::rotate(&p, -1, &SystemClock).unwrap();
        KeyFile::rotate(&p, 3600, &SystemClock).unwrap();
        let after = KeyFile::load_or_create(&p, &SystemClock).unwrap();
        assert!(after.keys.iter().all(|k| k.kid != first.active));
        assert_eq!(after.keys.len(), 2);
    }
}

//! Session signing keys: one key set shared by every replica through the [`Store`] (the key set
//! [`KEYSET_SESSION`]), made by the first gateway that starts on a database, each key with an
//! id; rotated by adding a new active key while old ones keep verifying until their tokens
//! expire. A rotated-out key is retired: it verifies only tokens issued before its retirement
//! and expiring within the longest session lifetime after it, and is dropped from the set once
//! that has passed, so a leaked old key cannot mint tokens for ever.
//!
//! Every change is a compare-and-swap on the stored version ([`Store::swap_keyset`]): two
//! replicas starting together on an empty database end up with one key set, and two rotating
//! at once each add their key without losing the other's. A keys file of an earlier version
//! (`[session] keys_path`) is imported once into an empty store and then renamed.

use crate::clock::Clock;
use crate::secret::{random_token, Secret};
use crate::store::{Store, StoreError, KEYSET_SESSION};
use base64::Engine;
use jsonwebtoken::{DecodingKey, EncodingKey};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// How often a rotation retries after losing the compare-and-swap to another writer.
const SWAP_ATTEMPTS: usize = 16;

/// Why the signing keys could not be used; it names the file or the store, never a key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The keys file to import could not be read or renamed.
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
    /// The key set in the store is unusable.
    #[error("session keys in the store: not a key set: {reason}")]
    Stored {
        /// What is wrong, naming a key by its id only.
        reason: String,
    },
    /// Reading or writing the key set failed.
    #[error("session keys: {0}")]
    Store(#[from] StoreError),
    /// A keys file is there, but the store already holds another key set.
    #[error("session keys {path}: the store already holds a key set without this file's keys, so the file was not imported; move the file away to run on the store's keys (sessions signed by the file's keys end), or start on an empty store to import it")]
    NotImported {
        /// The keys file.
        path: PathBuf,
    },
    /// No key set is stored yet.
    #[error("no session keys in the store yet: a gateway makes them at its first start; nothing was rotated")]
    NoKeys,
    /// Other writers kept changing the key set.
    #[error("the session keys changed {SWAP_ATTEMPTS} times while rotating; try again")]
    Contended,
}

/// The key set as stored (formerly the keys file, whose format it keeps).
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

/// The key set in the store and the version it was read at.
#[derive(Debug, Clone)]
pub struct StoredKeys {
    /// The stored version ([`crate::store::Keyset::version`]).
    pub version: i64,
    /// The keys.
    pub file: KeyFile,
}

impl KeyFile {
    /// A fresh key set: one session key, one assertion key, dated `now`.
    ///
    /// # Errors
    /// A message when no Ed25519 key can be made.
    pub fn generate(now: i64) -> Result<KeyFile, String> {
        let key = KeyEntry::generate(now);
        Ok(KeyFile {
            active: key.kid.clone(),
            keys: vec![key],
            assertion: vec![AssertionKey::generate(now)?],
        })
    }

    /// The key set the store holds, if any.
    ///
    /// # Errors
    /// [`KeyError::Store`], or [`KeyError::Stored`] when it is not a usable key set.
    pub fn stored(store: &dyn Store) -> Result<Option<StoredKeys>, KeyError> {
        let Some(set) = store.keyset(KEYSET_SESSION)? else {
            return Ok(None);
        };
        let file: KeyFile = serde_json::from_slice(&set.data).map_err(|e| KeyError::Stored {
            reason: e.to_string(),
        })?;
        file.validate()
            .map_err(|reason| KeyError::Stored { reason })?;
        Ok(Some(StoredKeys {
            version: set.version,
            file,
        }))
    }

    /// The store's key set; on an empty store, the keys file at `import` (a gateway of an
    /// earlier version kept its keys there), or else a fresh set, stored first. Of several
    /// gateways starting together on an empty database, one stores its set and the others
    /// take it. An imported file is renamed to `<name>.imported` (it keeps its 0600 mode), so
    /// it is imported once and every session it signed stays valid.
    ///
    /// # Errors
    /// [`KeyError`]: the store fails, its key set or the file is unusable, or the file holds
    /// keys the store's set lacks ([`KeyError::NotImported`]: nothing is lost silently).
    pub fn load_or_init(
        store: &dyn Store,
        import: &Path,
        clock: &dyn Clock,
    ) -> Result<StoredKeys, KeyError> {
        for _ in 0..SWAP_ATTEMPTS {
            let file = Self::read_file(import)?;
            if let Some(stored) = Self::stored(store)? {
                if let Some(file) = file {
                    let known = |kid: &str| stored.file.keys.iter().any(|k| k.kid == kid);
                    if !file.keys.iter().all(|k| known(&k.kid)) {
                        return Err(KeyError::NotImported {
                            path: import.to_path_buf(),
                        });
                    }
                    // Imported before, and the rename did not happen: finish it.
                    rename_imported(import)?;
                }
                return Ok(stored);
            }
            let imported = file.is_some();
            let mut file = match file {
                Some(f) => f,
                None => {
                    Self::generate(clock.now()).map_err(|reason| KeyError::Stored { reason })?
                }
            };
            if file.assertion.is_empty() {
                // Files written before assertions existed get their key now.
                file.assertion.push(
                    AssertionKey::generate(clock.now())
                        .map_err(|reason| KeyError::Stored { reason })?,
                );
            }
            if store.swap_keyset(KEYSET_SESSION, 0, &file.to_bytes()?)? {
                if imported {
                    let to = rename_imported(import)?;
                    tracing::info!(
                        file = %import.display(),
                        renamed = %to.display(),
                        "imported the session keys file into the store; sessions it signed stay valid"
                    );
                } else {
                    tracing::info!("made the session signing keys and stored them");
                }
                return Ok(StoredKeys { version: 1, file });
            }
            // Another gateway stored its set first: take that one.
        }
        Err(KeyError::Contended)
    }

    /// Reads and checks the keys file if there is one (`check-config`: it would be imported).
    ///
    /// # Errors
    /// [`KeyError`] naming the path when it exists but cannot be read or is not a keys file.
    pub fn check_existing(path: &Path) -> Result<(), KeyError> {
        Self::read_file(path).map(|_| ())
    }

    /// The keys file at `path`, checked; `None` when there is none.
    fn read_file(path: &Path) -> Result<Option<KeyFile>, KeyError> {
        match std::fs::read(path) {
            Ok(bytes) => {
                let invalid = |reason: String| KeyError::Invalid {
                    path: path.to_path_buf(),
                    reason,
                };
                let file: KeyFile =
                    serde_json::from_slice(&bytes).map_err(|e| invalid(e.to_string()))?;
                file.validate().map_err(invalid)?;
                Ok(Some(file))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(KeyError::Io {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// Adds a new key to the stored set and makes it the active one; returns its id and the
    /// set as stored. The key it replaces is retired: it keeps verifying the tokens it signed,
    /// which live at most `max_lifetime` seconds, and nothing newer. Keys whose last token has
    /// expired are removed. A rotation that loses the compare-and-swap to another writer
    /// starts again from what that writer stored, so neither loses a key.
    ///
    /// # Errors
    /// [`KeyError::NoKeys`] when no set is stored yet; otherwise as [`KeyFile::stored`].
    pub fn rotate(
        store: &dyn Store,
        max_lifetime: i64,
        clock: &dyn Clock,
    ) -> Result<(String, StoredKeys), KeyError> {
        for _ in 0..SWAP_ATTEMPTS {
            let Some(StoredKeys { version, mut file }) = Self::stored(store)? else {
                return Err(KeyError::NoKeys);
            };
            let kid = file
                .rotated(clock.now(), max_lifetime)
                .map_err(|reason| KeyError::Stored { reason })?;
            if store.swap_keyset(KEYSET_SESSION, version, &file.to_bytes()?)? {
                return Ok((
                    kid,
                    StoredKeys {
                        version: version + 1,
                        file,
                    },
                ));
            }
        }
        Err(KeyError::Contended)
    }

    /// Retires the active key, drops keys past their last token, adds and activates a new
    /// key and a new assertion key; returns the new key's id.
    fn rotated(&mut self, now: i64, max_lifetime: i64) -> Result<String, String> {
        let previous = self.active.clone();
        for k in &mut self.keys {
            if k.kid == previous && k.retired.is_none() {
                k.retired = Some(Retired {
                    at: now,
                    verify_until: now.saturating_add(max_lifetime),
                });
            }
        }
        self.keys
            .retain(|k| k.retired.is_none_or(|r| r.verify_until >= now));
        let key = KeyEntry::generate(now);
        let kid = key.kid.clone();
        self.active = kid.clone();
        self.keys.push(key);
        self.assertion.push(AssertionKey::generate(now)?);
        Ok(kid)
    }

    fn to_bytes(&self) -> Result<Vec<u8>, KeyError> {
        serde_json::to_vec(self).map_err(|e| KeyError::Stored {
            reason: e.to_string(),
        })
    }

    /// Whether the set is usable: its active key is in it, every key is HS256 and 32 bytes.
    fn validate(&self) -> Result<(), String> {
        if !self.keys.iter().any(|k| k.kid == self.active) {
            return Err(format!("active key `{}` is not in the set", self.active));
        }
        for k in &self.keys {
            if k.alg != "HS256" {
                return Err(format!("key `{}` has unsupported alg `{}`", k.kid, k.alg));
            }
            let secret = decode_secret(k.secret.expose())
                .ok_or_else(|| format!("key `{}` has no valid secret", k.kid))?;
            if secret.len() < 32 {
                return Err(format!("key `{}` is shorter than 32 bytes", k.kid));
            }
        }
        Ok(())
    }
}

impl KeyFile {
    /// Where the keys file at `path` is once imported: `<name>.imported` beside it (still
    /// secret: it is kept owner-only like the file was).
    pub fn imported_path(path: &Path) -> PathBuf {
        let mut name = path.file_name().unwrap_or_default().to_os_string();
        name.push(".imported");
        path.with_file_name(name)
    }
}

/// Renames an imported keys file to [`KeyFile::imported_path`]; returns the new path.
fn rename_imported(path: &Path) -> Result<PathBuf, KeyError> {
    let to = KeyFile::imported_path(path);
    std::fs::rename(path, &to).map_err(|source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(to)
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
    use crate::store::MemoryStore;

    fn no_file() -> PathBuf {
        PathBuf::from("/nonexistent/keys.json")
    }

    #[test]
    fn the_first_start_stores_a_set_and_rotation_keeps_old_keys() {
        let store = MemoryStore::new();
        let first = KeyFile::load_or_init(&store, &no_file(), &SystemClock).unwrap();
        assert_eq!(first.version, 1);
        let again = KeyFile::load_or_init(&store, &no_file(), &SystemClock).unwrap();
        assert_eq!(again.file.active, first.file.active, "made once");
        let (kid, rotated) = KeyFile::rotate(&store, 3600, &SystemClock).unwrap();
        assert_eq!(rotated.version, 2);
        let after = KeyFile::stored(&store).unwrap().unwrap().file;
        assert_eq!(after.active, kid);
        assert_eq!(after.keys.len(), 2);
        let old = after
            .keys
            .iter()
            .find(|k| k.kid == first.file.active)
            .unwrap();
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
    fn rotating_an_empty_store_makes_nothing() {
        let store = MemoryStore::new();
        assert!(matches!(
            KeyFile::rotate(&store, 3600, &SystemClock),
            Err(KeyError::NoKeys)
        ));
        assert!(store.keyset(KEYSET_SESSION).unwrap().is_none());
    }

    #[test]
    fn concurrent_rotations_lose_no_key() {
        let store = std::sync::Arc::new(MemoryStore::new());
        KeyFile::load_or_init(store.as_ref(), &no_file(), &SystemClock).unwrap();
        let kids: Vec<String> = (0..6)
            .map(|_| {
                let store = store.clone();
                std::thread::spawn(move || {
                    KeyFile::rotate(store.as_ref(), 3600, &SystemClock)
                        .unwrap()
                        .0
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().unwrap())
            .collect();
        let after = KeyFile::stored(store.as_ref()).unwrap().unwrap();
        assert_eq!(after.version, 7);
        for kid in &kids {
            assert!(after.file.keys.iter().any(|k| &k.kid == kid), "{kid} lost");
        }
        assert_eq!(after.file.keys.len(), 7);
    }

    #[test]
    fn an_unusable_stored_set_is_refused_naming_the_store_not_a_key() {
        let store = MemoryStore::new();
        let mut file = KeyFile::generate(1).unwrap();
        file.keys[0].secret = Secret::new("c2hvcnQ".into());
        store
            .swap_keyset(KEYSET_SESSION, 0, &serde_json::to_vec(&file).unwrap())
            .unwrap();
        let e = KeyFile::load_or_init(&store, &no_file(), &SystemClock).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("session keys in the store: not a key set: key `"),
            "{e}"
        );
        assert!(e.to_string().contains("shorter than 32 bytes"), "{e}");
    }

    #[test]
    fn a_printed_key_set_shows_no_key_material() {
        let store = MemoryStore::new();
        let stored = KeyFile::load_or_init(&store, &no_file(), &SystemClock).unwrap();
        let printed = format!("{stored:?} {:?}", store.keyset(KEYSET_SESSION).unwrap());
        for k in &stored.file.keys {
            assert!(!printed.contains(k.secret.expose().as_str()), "{printed}");
        }
        for a in &stored.file.assertion {
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
        let store = MemoryStore::new();
        let first = KeyFile::load_or_init(&store, &no_file(), &SystemClock).unwrap();
        // With no lifetime left, the first key's tokens are all expired by the next rotation.
        KeyFile::rotate(&store, -1, &SystemClock).unwrap();
        KeyFile::rotate(&store, 3600, &SystemClock).unwrap();
        let after = KeyFile::stored(&store).unwrap().unwrap().file;
        assert!(after.keys.iter().all(|k| k.kid != first.file.active));
        assert_eq!(after.keys.len(), 2);
    }

    #[test]
    fn an_old_keys_file_is_imported_once_then_renamed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        let mut old = KeyFile::generate(1).unwrap();
        old.assertion.clear(); // a file of the version before assertions
        std::fs::write(&path, serde_json::to_vec(&old).unwrap()).unwrap();
        let store = MemoryStore::new();
        let stored = KeyFile::load_or_init(&store, &path, &SystemClock).unwrap();
        assert_eq!(
            stored.file.active, old.active,
            "the file's keys, not new ones"
        );
        assert_eq!(stored.file.assertion.len(), 1, "an assertion key was added");
        assert!(!path.exists());
        assert!(dir.path().join("keys.json.imported").exists());
        // A file put back later holding the same keys is only renamed again.
        std::fs::write(&path, serde_json::to_vec(&old).unwrap()).unwrap();
        let again = KeyFile::load_or_init(&store, &path, &SystemClock).unwrap();
        assert_eq!(again.version, 1);
        assert!(!path.exists());
        // One with other keys is refused: importing it would drop the store's keys.
        let other = KeyFile::generate(1).unwrap();
        std::fs::write(&path, serde_json::to_vec(&other).unwrap()).unwrap();
        let e = KeyFile::load_or_init(&store, &path, &SystemClock).unwrap_err();
        assert!(matches!(e, KeyError::NotImported { .. }), "{e}");
        assert!(e.to_string().contains(&path.display().to_string()), "{e}");
        assert!(path.exists(), "left where it was");
    }
}

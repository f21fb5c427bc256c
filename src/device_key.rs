//! The device key: seals device secrets (TOTP keys) at rest with XChaCha20-Poly1305, apart
//! from the session signing keys. Kept like those: generated on first start into a 0600 file
//! next to the database (`[storage] device_key_path`), written atomically.
//!
//! # Security
//! A database copied without this file yields no TOTP secret; a session key that leaks mints
//! no TOTP code. Each sealed value is bound (as associated data) to the user and device it
//! belongs to, so a sealed secret moved onto another account's record does not open. A lost
//! or damaged key file while sealed devices exist stops the gateway with a message naming the
//! file, rather than silently making every authenticator app useless.
//!
//! Replicas on one database must all hold the same file (it is deliberately not in the
//! database). The first gateway to start stores the key's check value (an HMAC of a constant
//! under the key, which tells nothing of the key); a replica whose file gives another value
//! refuses to start, naming the file, before it seals a secret the others cannot open.

use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use std::io::Write;
use std::path::{Path, PathBuf};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;
/// What a sealed value starts with: the format, so a later format can sit beside it.
const PREFIX: &str = "xc1.";

/// Why the device key could not be used; names the file, never the key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeviceKeyError {
    /// The file could not be read or written.
    #[error("device key {path}: {source}")]
    Io {
        /// The key file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is there but holds no usable key.
    #[error("device key {path} is damaged ({reason}); restore it from a backup: TOTP devices sealed under it cannot be opened without it")]
    Damaged {
        /// The key file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The file is gone while devices sealed under it exist.
    #[error("device key {path} is missing, but {devices} TOTP device(s) were sealed under it; restore the file from a backup (or remove those devices with `portcullis user device-remove`)")]
    Missing {
        /// The key file.
        path: PathBuf,
        /// How many sealed devices the store holds.
        devices: usize,
    },
    /// The database was first used with another device key than this file holds.
    #[error("device key {path} is not the device key this database was first used with: every replica needs the same device key file; copy it from a running replica (a gateway with another key could not open the TOTP secrets the others sealed)")]
    NotShared {
        /// The key file.
        path: PathBuf,
    },
    /// Reading or storing the key's check value failed.
    #[error("device key check: {0}")]
    Store(#[source] Box<crate::store::StoreError>),
}

impl DeviceKeyError {
    fn store(source: crate::store::StoreError) -> Self {
        Self::Store(Box::new(source))
    }
}

impl From<crate::store::StoreError> for DeviceKeyError {
    fn from(source: crate::store::StoreError) -> Self {
        Self::store(source)
    }
}

/// A sealed value did not open: another key, another device, or tampering.
#[derive(Debug, thiserror::Error)]
#[error("a sealed device secret did not open under the device key")]
pub struct Unsealable;

/// The 32-byte device key.
pub struct DeviceKey {
    cipher: XChaCha20Poly1305,
    /// HMAC-SHA256 of [`CHECK_LABEL`] under the key.
    check: [u8; 32],
}

/// What the check value is a MAC of.
const CHECK_LABEL: &[u8] = b"portcullis device key check v1";

impl std::fmt::Debug for DeviceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DeviceKey(<redacted>)")
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct KeyFile {
    /// base64url, 32 bytes.
    key: String,
}

impl DeviceKey {
    /// A key from the OS CSPRNG (tests, and a first start).
    pub fn generate() -> Self {
        let mut key = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut key);
        Self::from_bytes(&key)
    }

    fn from_bytes(key: &[u8; 32]) -> Self {
        use hmac::Mac;
        let mut mac = <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(key)
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
        mac.update(CHECK_LABEL);
        Self {
            cipher: XChaCha20Poly1305::new(key.into()),
            check: mac.finalize().into_bytes().into(),
        }
    }

    /// Makes sure every replica on `store`'s database has this key: stores its check value if
    /// none is stored (the first gateway to start), else compares it with the stored one.
    ///
    /// # Errors
    /// [`DeviceKeyError::NotShared`] naming `path` when the stored value is another key's;
    /// [`DeviceKeyError::Store`] when the store fails.
    ///
    /// # Security
    /// The check value is a MAC of a constant: it tells nothing of the key, and is compared
    /// in constant time.
    pub fn agree_with_store(
        &self,
        path: &Path,
        store: &dyn crate::store::Store,
    ) -> Result<(), DeviceKeyError> {
        use crate::store::KEYSET_DEVICE_CHECK;
        // Of replicas starting together, one stores its value; the others read it.
        let _first = store.swap_keyset(KEYSET_DEVICE_CHECK, 0, &self.check)?;
        let stored = store
            .keyset(KEYSET_DEVICE_CHECK)?
            .map(|k| k.data)
            .unwrap_or_default();
        if crate::secret::equal(&stored, &self.check) {
            Ok(())
        } else {
            Err(DeviceKeyError::NotShared {
                path: path.to_path_buf(),
            })
        }
    }

    /// Reads the key file; creates it when it does not exist and `sealed` (the number of
    /// devices sealed under a key) is zero.
    ///
    /// # Errors
    /// [`DeviceKeyError`] naming the file: unreadable, damaged, or missing while `sealed > 0`.
    pub fn load_or_create(path: &Path, sealed: usize) -> Result<Self, DeviceKeyError> {
        let io = |source| DeviceKeyError::Io {
            path: path.to_path_buf(),
            source,
        };
        match std::fs::read(path) {
            Ok(bytes) => Self::parse(path, &bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if sealed > 0 {
                    return Err(DeviceKeyError::Missing {
                        path: path.to_path_buf(),
                        devices: sealed,
                    });
                }
                let mut key = [0u8; 32];
                rand::rngs::OsRng.fill_bytes(&mut key);
                save(
                    path,
                    &KeyFile {
                        key: B64.encode(key),
                    },
                )
                .map_err(io)?;
                Ok(Self::from_bytes(&key))
            }
            Err(e) => Err(io(e)),
        }
    }

    /// Reads and checks the key file if there is one, writing nothing (`check-config`).
    ///
    /// # Errors
    /// As [`DeviceKey::load_or_create`], for a file that exists.
    pub fn check_existing(path: &Path) -> Result<(), DeviceKeyError> {
        match std::fs::read(path) {
            Ok(bytes) => Self::parse(path, &bytes).map(|_| ()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(DeviceKeyError::Io {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    fn parse(path: &Path, bytes: &[u8]) -> Result<Self, DeviceKeyError> {
        let damaged = |reason: &str| DeviceKeyError::Damaged {
            path: path.to_path_buf(),
            reason: reason.into(),
        };
        let file: KeyFile =
            serde_json::from_slice(bytes).map_err(|_| damaged("not a device key file"))?;
        let raw = B64
            .decode(file.key.trim())
            .map_err(|_| damaged("the key is not base64url"))?;
        let key: [u8; 32] = raw
            .try_into()
            .map_err(|_| damaged("the key is not 32 bytes"))?;
        Ok(Self::from_bytes(&key))
    }

    /// Seals `plain` for the device named by `context` (user and device id).
    pub fn seal(&self, plain: &[u8], context: &str) -> String {
        let mut nonce = [0u8; 24];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let payload = Payload {
            msg: plain,
            aad: context.as_bytes(),
        };
        // Encryption fails only for messages beyond the cipher's length limit (256 GiB).
        let sealed = self
            .cipher
            .encrypt(&XNonce::from(nonce), payload)
            .unwrap_or_default();
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        format!("{PREFIX}{}", B64.encode(out))
    }

    /// Opens what [`DeviceKey::seal`] made for the same `context`.
    ///
    /// # Errors
    /// [`Unsealable`] for another key, another context, or a changed value.
    pub fn open(&self, sealed: &str, context: &str) -> Result<Vec<u8>, Unsealable> {
        let raw = sealed
            .strip_prefix(PREFIX)
            .and_then(|b| B64.decode(b).ok())
            .ok_or(Unsealable)?;
        if raw.len() < 24 + 16 {
            return Err(Unsealable);
        }
        let (nonce, body) = raw.split_at(24);
        let nonce: [u8; 24] = nonce.try_into().map_err(|_| Unsealable)?;
        let payload = Payload {
            msg: body,
            aad: context.as_bytes(),
        };
        self.cipher
            .decrypt(&XNonce::from(nonce), payload)
            .map_err(|_| Unsealable)
    }
}

/// Writes atomically (temp file + rename) with mode 0600.
fn save(path: &Path, file: &KeyFile) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp)?;
    f.write_all(&serde_json::to_vec_pretty(file).map_err(std::io::Error::other)?)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_secret_opens_only_for_its_device_under_its_key() {
        let key = DeviceKey::generate();
        let sealed = key.seal(b"12345678901234567890", "alice\0d1");
        assert!(!sealed.contains("12345678901234567890"));
        assert_eq!(
            key.open(&sealed, "alice\0d1").unwrap(),
            b"12345678901234567890"
        );
        assert!(
            key.open(&sealed, "mallory\0d1").is_err(),
            "moved to another account"
        );
        assert!(DeviceKey::generate().open(&sealed, "alice\0d1").is_err());
        let mut flipped = sealed.clone().into_bytes();
        let last = flipped.len() - 2;
        flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
        let flipped = String::from_utf8(flipped).unwrap();
        assert!(key.open(&flipped, "alice\0d1").is_err(), "tampered");
        assert!(key.open("garbage", "alice\0d1").is_err());
    }

    #[test]
    fn the_key_file_is_created_once_0600_and_a_missing_or_damaged_one_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("device-key.json");
        let missing = DeviceKey::load_or_create(&path, 2).unwrap_err().to_string();
        assert!(
            missing.contains("device-key.json") && missing.contains("2 TOTP"),
            "{missing}"
        );
        let first = DeviceKey::load_or_create(&path, 0).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let sealed = first.seal(b"s", "c");
        let again = DeviceKey::load_or_create(&path, 5).unwrap();
        assert_eq!(again.open(&sealed, "c").unwrap(), b"s");
        std::fs::write(&path, b"{\"key\":\"short\"}").unwrap();
        let damaged = DeviceKey::load_or_create(&path, 0).unwrap_err().to_string();
        assert!(
            damaged.contains("damaged") && damaged.contains("device-key.json"),
            "{damaged}"
        );
        assert!(DeviceKey::check_existing(&path).is_err());
    }

    #[test]
    fn a_replica_with_another_device_key_is_refused_naming_the_file() {
        use crate::store::Store;
        let store = crate::store::MemoryStore::new();
        let dir = tempfile::tempdir().unwrap();
        let first = dir.path().join("a").join("device-key.json");
        let second = dir.path().join("b").join("device-key.json");
        let a = DeviceKey::load_or_create(&first, 0).unwrap();
        a.agree_with_store(&first, &store).unwrap();
        // The same file on another replica (and on a restart) is fine.
        std::fs::create_dir_all(second.parent().unwrap()).unwrap();
        std::fs::copy(&first, &second).unwrap();
        let same = DeviceKey::load_or_create(&second, 0).unwrap();
        same.agree_with_store(&second, &store).unwrap();
        a.agree_with_store(&first, &store).unwrap();
        // A fresh file on a new replica is refused before it seals anything.
        std::fs::remove_file(&second).unwrap();
        let fresh = DeviceKey::load_or_create(&second, 0).unwrap();
        let e = fresh.agree_with_store(&second, &store).unwrap_err();
        let text = e.to_string();
        assert!(matches!(e, DeviceKeyError::NotShared { .. }), "{text}");
        assert!(text.contains(&second.display().to_string()), "{text}");
        assert!(
            text.contains("every replica needs the same device key file"),
            "{text}"
        );
        // The stored value is a MAC, not the key.
        let key_file = std::fs::read_to_string(&first).unwrap();
        let stored = store
            .keyset(crate::store::KEYSET_DEVICE_CHECK)
            .unwrap()
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(&key_file).unwrap();
        let raw = B64.decode(v["key"].as_str().unwrap()).unwrap();
        assert_ne!(stored.data, raw);
        assert_eq!(stored.data.len(), 32);
    }
}

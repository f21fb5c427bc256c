//! Owner-only state on disk: at start the data directory, the database and the key files are
//! tightened to the gateway's account alone (directories 0700, files 0600), or the start is
//! refused, naming the path, when that cannot be done.
//!
//! # Security
//! The database holds password hashes, sessions and live sign-ins; the key files sign sessions
//! and seal device secrets. A directory or file another account can read leaks them; one
//! another account owns can be swapped under the gateway, so it is refused, not chmod-ed.

use crate::config::Config;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// How deep the database directory is walked (sled keeps `blobs/` one level down).
const MAX_DEPTH: usize = 4;

/// Why the state on disk could not be made owner-only.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FilesError {
    /// The path belongs to another account.
    #[error("{path} is owned by uid {owner}, not by the gateway's uid {us}: refusing to use it (chown it to the gateway's account)")]
    NotOwned {
        /// The path.
        path: PathBuf,
        /// Its owner's uid.
        owner: u32,
        /// The gateway's uid.
        us: u32,
    },
    /// The path could not be read or its mode set.
    #[error("{path}: cannot make it owner-only: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
}

/// The uid files are created with (the effective uid), when `/proc` says.
pub(crate) fn our_uid() -> Option<u32> {
    std::fs::metadata("/proc/self").ok().map(|m| m.uid())
}

/// The data directory (the database's parent), the database directory with everything in it,
/// the signing keys file, the device key file and the audit file, each that exists, made
/// owner-only. Each change is logged at `warn` with the path and both modes.
///
/// # Errors
/// [`FilesError`] naming the first path that belongs to another account or whose mode cannot
/// be set.
pub fn secure(config: &Config) -> Result<(), FilesError> {
    secure_as(config, our_uid())
}

fn secure_as(config: &Config, us: Option<u32>) -> Result<(), FilesError> {
    let storage = &config.storage;
    if let Some(dir) = storage.path.parent().filter(|d| !d.as_os_str().is_empty()) {
        tighten(dir, us, false)?;
    }
    walk(&storage.path, us, 0)?;
    let imported_keys = crate::session::KeyFile::imported_path(&storage.keys_path);
    let files = [
        Some(storage.keys_path.as_path()),
        Some(imported_keys.as_path()),
        Some(storage.device_key_path.as_path()),
        config.log.audit_file.as_deref(),
    ];
    for file in files.into_iter().flatten() {
        tighten(file, us, false)?;
    }
    Ok(())
}

/// `path` and, for a directory, what is in it (symbolic links inside are left alone).
fn walk(path: &Path, us: Option<u32>, depth: usize) -> Result<(), FilesError> {
    let Some(is_dir) = tighten(path, us, depth > 0)? else {
        return Ok(());
    };
    if !is_dir || depth >= MAX_DEPTH {
        return Ok(());
    }
    let io = |source| FilesError::Io {
        path: path.to_path_buf(),
        source,
    };
    for entry in std::fs::read_dir(path).map_err(io)? {
        walk(&entry.map_err(io)?.path(), us, depth + 1)?;
    }
    Ok(())
}

/// Makes `path` owner-only when it exists: `Some(is_dir)`, or `None` when it does not exist
/// (or is a symbolic link met inside the database, when `inside`).
fn tighten(path: &Path, us: Option<u32>, inside: bool) -> Result<Option<bool>, FilesError> {
    let io = |source| FilesError::Io {
        path: path.to_path_buf(),
        source,
    };
    let meta = if inside {
        std::fs::symlink_metadata(path)
    } else {
        std::fs::metadata(path)
    };
    let meta = match meta {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(e)),
    };
    if meta.file_type().is_symlink() {
        return Ok(None);
    }
    if let Some(us) = us {
        if meta.uid() != us {
            return Err(FilesError::NotOwned {
                path: path.to_path_buf(),
                owner: meta.uid(),
                us,
            });
        }
    }
    let mode = meta.permissions().mode() & 0o7777;
    let wanted = if meta.is_dir() {
        (mode & 0o700) | 0o700
    } else {
        (mode & 0o700) | 0o600
    };
    if mode != wanted {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(wanted)).map_err(io)?;
        tracing::warn!(
            path = %path.display(),
            from = format!("{mode:04o}"),
            to = format!("{wanted:04o}"),
            "made owner-only"
        );
    }
    Ok(Some(meta.is_dir()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
    }

    fn config(dir: &Path) -> Config {
        let text = format!(
            "[storage]\npath = \"{}\"\n[log]\naudit_file = \"{}\"\n",
            dir.join("data/db").display(),
            dir.join("audit.jsonl").display()
        );
        let file = dir.join("portcullis.toml");
        std::fs::write(&file, text).unwrap();
        Config::load(&file).unwrap()
    }

    #[test]
    fn open_directories_and_files_become_owner_only_and_missing_ones_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let c = config(dir.path());
        let data = dir.path().join("data");
        std::fs::create_dir_all(data.join("db/blobs")).unwrap();
        let set = |p: &Path, m| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m));
        for (p, m) in [(&data, 0o755), (&data.join("db"), 0o777)] {
            set(p, m).unwrap();
        }
        std::fs::write(data.join("db/conf"), "x").unwrap();
        set(&data.join("db/conf"), 0o644).unwrap();
        std::fs::write(data.join("keys.json"), "{}").unwrap();
        set(&data.join("keys.json"), 0o664).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", data.join("db/link")).unwrap();
        secure(&c).unwrap();
        assert_eq!(mode(&data), 0o700);
        assert_eq!(mode(&data.join("db")), 0o700);
        assert_eq!(mode(&data.join("db/blobs")), 0o700);
        assert_eq!(mode(&data.join("db/conf")), 0o600);
        assert_eq!(mode(&data.join("keys.json")), 0o600);
        assert_ne!(
            mode(Path::new("/etc/hostname")),
            0o600,
            "a link inside is not followed"
        );
        assert!(!dir.path().join("audit.jsonl").exists());
    }

    #[test]
    fn a_path_owned_by_another_account_refuses_the_start_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let c = config(dir.path());
        std::fs::create_dir_all(dir.path().join("data")).unwrap();
        let us = our_uid().unwrap();
        let e = secure_as(&c, Some(us + 1)).unwrap_err();
        let text = e.to_string();
        assert!(matches!(e, FilesError::NotOwned { .. }), "{text}");
        assert!(
            text.contains(&dir.path().join("data").display().to_string()),
            "{text}"
        );
    }
}

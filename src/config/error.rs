//! What a refused configuration says: which file, which key, and why.

use std::path::PathBuf;

/// A configuration that cannot be used. `Display` names the file, the key path and the reason, so
/// `check-config` and a refused `serve` print the same line an operator can act on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}: {reason}")]
    Syntax { file: PathBuf, reason: String },
    #[error("{file}: {path}: {reason}")]
    Invalid {
        file: PathBuf,
        path: String,
        reason: String,
    },
}

impl ConfigError {
    /// The key path the error is about, when there is one (e.g. `apps[1].hosts[0]`).
    pub fn path(&self) -> Option<&str> {
        match self {
            ConfigError::Invalid { path, .. } => Some(path),
            _ => None,
        }
    }
}

/// Collects the first semantic problem with its key path while validation walks the raw config.
pub(crate) struct Problem {
    pub path: String,
    pub reason: String,
}

impl Problem {
    pub(super) fn new(path: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

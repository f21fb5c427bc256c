//! What a refused configuration says: which file, which key, and why.

use std::path::PathBuf;

/// A configuration that cannot be used. `Display` names the file, the key path and the reason, so
/// `check-config` and a refused `serve` print the same line an operator can act on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{file}: cannot read: {source}")]
    Read {
        /// The config file.
        file: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not TOML.
    #[error("{file}: {reason}")]
    Syntax {
        /// The config file.
        file: PathBuf,
        /// The parser's message.
        reason: String,
    },
    /// A key's value is refused.
    #[error("{file}: {path}: {reason}")]
    Invalid {
        /// The config file.
        file: PathBuf,
        /// The key path (`stages.mfa.code_length`) or the variable that set it.
        path: String,
        /// Why, without echoing a value from the environment.
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

//! argon2id hashing on dedicated low-priority threads.
//!
//! A hash costs ~16 ms of CPU at OWASP's minimum. Running it on the async workers would stall
//! every request sharing that worker, so hashes go to a few threads of their own (as many as
//! `max_concurrent_hashes`, the core count by default) that run at the lowest scheduling
//! priority: when the CPU is busy, the proxy workers serving signed-in traffic come first and a
//! sign-in storm queues here instead of slowing them.

use crate::config::{PasswordParams, PasswordPolicy};
use crate::secret::SecretString;
use argon2::password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher as _, SaltString};
use argon2::{Algorithm, Argon2, Params, PasswordVerifier, Version};
use async_trait::async_trait;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};

/// Why a password could not be hashed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PasswordError {
    /// The configured argon2 cost is out of argon2's range.
    #[error("argon2 parameters rejected: {0}")]
    Params(argon2::Error),
    /// argon2 refused to hash (not expected with valid parameters).
    #[error("hashing failed: {0}")]
    Hash(argon2::password_hash::Error),
    /// The hashing threads are gone.
    #[error("the hashing pool has shut down")]
    PoolClosed,
}

type Job = Box<dyn FnOnce() + Send>;

/// The hashing threads, started on first use (the CLI hashes on its own thread and never
/// needs them). They end when the last handle to the pool is dropped.
struct Workers {
    jobs: mpsc::Sender<Job>,
}

impl Workers {
    fn start(threads: usize) -> Workers {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("portcullis-argon2-{i}"))
                .spawn(move || {
                    if let Err(e) = thread_priority::set_current_thread_priority(
                        thread_priority::ThreadPriority::Min,
                    ) {
                        tracing::warn!(error = ?e, "could not lower the priority of a hashing thread; sign-ins compete with proxying for the CPU");
                    }
                    loop {
                        // The lock is held only while waiting for the next job.
                        let next = match rx.lock() {
                            Ok(rx) => rx.recv(),
                            Err(_) => return,
                        };
                        match next {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "could not start a hashing thread");
            }
        }
        Workers { jobs: tx }
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, PasswordError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(f());
        });
        self.jobs.send(job).map_err(|_| PasswordError::PoolClosed)?;
        rx.await.map_err(|_| PasswordError::PoolClosed)
    }
}

/// Password hashing as the flow engine sees it: asynchronous, off the request workers.
/// Implemented by [`PasswordHasherPool`] (argon2id); tests use a pool with a cheap cost.
#[async_trait]
pub trait PasswordHasher: Send + Sync {
    /// Hashes `password`; returns its PHC string (`$argon2id$...`) with a fresh salt.
    ///
    /// # Errors
    /// [`PasswordError`] when the hash cannot be computed.
    async fn hash(&self, password: SecretString) -> Result<String, PasswordError>;

    /// Whether `password` matches `hash`. With no hash (unknown user, no password set) it
    /// returns false after as much work as a real check.
    ///
    /// # Security
    /// Taking the same time with and without a hash keeps the answer's timing from telling
    /// which usernames exist.
    async fn verify(&self, password: SecretString, hash: Option<String>) -> bool;
}

/// Hashes and verifies passwords with the configured argon2id cost.
#[derive(Clone)]
pub struct PasswordHasherPool {
    argon: Argon2<'static>,
    threads: usize,
    workers: Arc<OnceLock<Workers>>,
    /// A real hash of a random password: verifying against it when a user does not exist takes
    /// as long as a real check, so timing does not reveal which usernames exist.
    dummy: Arc<String>,
}

impl PasswordHasherPool {
    /// A pool hashing with the cost `p`; its threads start on the first asynchronous hash.
    ///
    /// # Errors
    /// [`PasswordError::Params`] when the configured cost is not accepted by argon2.
    pub fn new(p: &PasswordParams) -> Result<Self, PasswordError> {
        let params = Params::new(p.memory_kib, p.iterations, p.parallelism, None)
            .map_err(PasswordError::Params)?;
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let dummy = hash_with(&argon, &crate::secret::random_token(16))?;
        Ok(Self {
            argon,
            threads: p.max_concurrent_hashes,
            workers: Arc::new(OnceLock::new()),
            dummy: Arc::new(dummy),
        })
    }

    fn workers(&self) -> &Workers {
        self.workers.get_or_init(|| Workers::start(self.threads))
    }

    /// Hashes on the calling thread; for the CLI and other non-async callers.
    ///
    /// # Errors
    /// [`PasswordError::Hash`] if argon2 fails (it does not for valid parameters).
    pub fn hash_blocking(&self, password: &SecretString) -> Result<String, PasswordError> {
        hash_with(&self.argon, password.expose())
    }

    /// Blocking verify, for callers outside the async runtime.
    pub fn verify_blocking(&self, password: &SecretString, hash: &str) -> bool {
        verify_with(&self.argon, password.expose(), hash)
    }
}

#[async_trait]
impl PasswordHasher for PasswordHasherPool {
    /// Hashes on the hashing threads.
    ///
    /// # Errors
    /// As [`PasswordHasherPool::hash_blocking`], or [`PasswordError::PoolClosed`].
    async fn hash(&self, password: SecretString) -> Result<String, PasswordError> {
        let argon = self.argon.clone();
        self.workers()
            .run(move || hash_with(&argon, password.expose()))
            .await?
    }

    /// Checks `password` against `hash`; with no hash (unknown user, no password set) it checks
    /// against a dummy so the answer takes the same time, and returns false.
    async fn verify(&self, password: SecretString, hash: Option<String>) -> bool {
        let argon = self.argon.clone();
        let real = hash.is_some();
        let hash = hash.unwrap_or_else(|| self.dummy.as_ref().clone());
        let ok = self
            .workers()
            .run(move || verify_with(&argon, password.expose(), &hash))
            .await
            .unwrap_or(false);
        ok && real
    }
}

fn hash_with(argon: &Argon2<'_>, password: &str) -> Result<String, PasswordError> {
    let salt = SaltString::generate(&mut OsRng);
    argon
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(PasswordError::Hash)
}

/// Verification uses the parameters recorded in the hash itself, so raising the configured cost
/// does not lock out users hashed under the old one.
fn verify_with(argon: &Argon2<'_>, password: &str, hash: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    argon.verify_password(password.as_bytes(), &parsed).is_ok()
}

/// A new password that breaks the `[password]` policy; `Display` names the rule, never the
/// password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyViolation {
    /// Fewer characters than `[password] min_length`.
    #[error("the password is shorter than {min} characters (rule: [password] min_length = {min})")]
    TooShort {
        /// The configured minimum.
        min: usize,
    },
    /// More characters than `[password] max_length`.
    #[error("the password is longer than {max} characters (rule: [password] max_length = {max})")]
    TooLong {
        /// The configured maximum.
        max: usize,
    },
    /// A control character (newline, tab, NUL...).
    #[error("the password contains a control character (rule: printable characters only)")]
    ControlCharacter,
}

impl PasswordPolicy {
    /// Checks a password an operator is about to set.
    ///
    /// Lengths count Unicode code points, as NIST SP 800-63B asks, so `Passwört1` is 9 long.
    /// Control characters are refused: a pasted newline or NUL is a mistake that could not be
    /// typed at a sign-in form.
    ///
    /// # Errors
    /// The first [`PolicyViolation`].
    pub fn check(&self, password: &str) -> Result<(), PolicyViolation> {
        if password.chars().any(char::is_control) {
            return Err(PolicyViolation::ControlCharacter);
        }
        let n = password.chars().count();
        if n < self.min_length {
            return Err(PolicyViolation::TooShort {
                min: self.min_length,
            });
        }
        if n > self.max_length {
            return Err(PolicyViolation::TooLong {
                max: self.max_length,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap() -> PasswordHasherPool {
        PasswordHasherPool::new(&PasswordParams {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
            max_concurrent_hashes: 2,
        })
        .unwrap()
    }

    #[tokio::test]
    async fn hash_is_argon2id_and_verifies() {
        let h = cheap();
        let hash = h.hash(SecretString::new("hunter2")).await.unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(
            h.verify(SecretString::new("hunter2"), Some(hash.clone()))
                .await
        );
        assert!(!h.verify(SecretString::new("hunter3"), Some(hash)).await);
    }

    #[test]
    fn policy_counts_characters_and_names_the_rule() {
        let p = PasswordPolicy::default();
        for (pw, want) in [
            ("", Err(PolicyViolation::TooShort { min: 8 })),
            ("1234567", Err(PolicyViolation::TooShort { min: 8 })),
            ("12345678", Ok(())),
            // 7 characters in 14 bytes: still too short.
            ("äöüäöüä", Err(PolicyViolation::TooShort { min: 8 })),
            ("Passwört", Ok(())),
            ("tab\there-long", Err(PolicyViolation::ControlCharacter)),
            ("line\nbreak-long", Err(PolicyViolation::ControlCharacter)),
        ] {
            assert_eq!(p.check(pw), want, "{pw:?}");
        }
        assert_eq!(p.check(&"x".repeat(64)), Ok(()));
        assert_eq!(
            p.check(&"x".repeat(65)),
            Err(PolicyViolation::TooLong { max: 64 })
        );
        let msg = PolicyViolation::TooShort { min: 8 }.to_string();
        assert!(msg.contains("min_length") && msg.contains('8'), "{msg}");
    }

    #[tokio::test]
    async fn missing_hash_never_verifies() {
        assert!(!cheap().verify(SecretString::new("x"), None).await);
    }

    #[tokio::test]
    async fn hashes_run_on_lowest_priority_threads() {
        let h = cheap();
        // The `nice` field of /proc/thread-self/stat (the 19th), read on a hashing thread.
        let nice = h
            .workers()
            .run(|| {
                let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
                let after_name = &stat[stat.rfind(')').unwrap() + 2..];
                after_name
                    .split(' ')
                    .nth(16)
                    .unwrap()
                    .parse::<i32>()
                    .unwrap()
            })
            .await
            .unwrap();
        assert_eq!(nice, 19);
    }
}

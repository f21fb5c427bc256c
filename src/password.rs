//! argon2id hashing on dedicated low-priority threads.
//!
//! A hash costs ~16 ms of CPU at OWASP's minimum. Running it on the async workers would stall
//! every request sharing that worker, so hashes go to a few threads of their own (as many as
//! `max_concurrent_hashes`, the core count by default) that run at the lowest scheduling
//! priority: when the CPU is busy, the proxy workers serving signed-in traffic come first and a
//! sign-in storm queues here instead of slowing them.
//!
//! Each hash needs `memory_kib` of working memory (19 MiB at OWASP's minimum). It is allocated
//! once per hashing thread and reused for every hash and verification that thread runs
//! ([`with_memory`]): allocating and freeing it per hash, on several threads, left the freed
//! blocks in the allocator's per-thread arenas, and resident memory grew by up to ~1 MB per
//! sign-in under load.

use crate::config::{PasswordParams, PasswordPolicy};
use crate::secret::SecretString;
use argon2::password_hash::{rand_core::OsRng, Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use async_trait::async_trait;
use std::cell::RefCell;
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
                    lowest_priority();
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

/// Puts the calling (hashing) thread at the lowest priority there is: on Linux the
/// `SCHED_IDLE` policy, elsewhere (or where it is refused) nice 19.
///
/// Under `SCHED_IDLE` the scheduler hands the CPU at once to any normal thread that wakes (a
/// proxy worker with a request), where under nice 19 alone the kernel's EEVDF scheduler may
/// let a running hash finish its slice first: that wait showed as tail latency of signed-in
/// traffic during a sign-in storm. Hashes still get every cycle nothing else wants.
fn lowest_priority() {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        use thread_priority::{NormalThreadSchedulePolicy, ThreadSchedulePolicy};
        let idle = thread_priority::set_thread_priority_and_policy(
            thread_priority::thread_native_id(),
            thread_priority::ThreadPriority::Min,
            ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle),
        );
        match idle {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(error = ?e, "could not put a hashing thread on SCHED_IDLE; it runs at nice 19")
            }
        }
    }
    if let Err(e) =
        thread_priority::set_current_thread_priority(thread_priority::ThreadPriority::Min)
    {
        tracing::warn!(error = ?e, "could not lower the priority of a hashing thread; sign-ins compete with proxying for the CPU");
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
        let dummy = hash_with(
            &argon,
            crate::secret::random_token(16).as_bytes(),
            Memory::Fresh,
        )?;
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
        hash_with(&self.argon, password.expose().as_bytes(), Memory::Fresh)
    }

    /// Blocking verify, for callers outside the async runtime.
    pub fn verify_blocking(&self, password: &SecretString, hash: &str) -> bool {
        verify_with(password.expose().as_bytes(), hash, Memory::Fresh)
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
            .run(move || hash_with(&argon, password.expose().as_bytes(), Memory::Thread))
            .await?
    }

    /// Checks `password` against `hash`; with no hash (unknown user, no password set) it checks
    /// against a dummy so the answer takes the same time, and returns false.
    async fn verify(&self, password: SecretString, hash: Option<String>) -> bool {
        let real = hash.is_some();
        let hash = hash.unwrap_or_else(|| self.dummy.as_ref().clone());
        let ok = self
            .workers()
            .run(move || verify_with(password.expose().as_bytes(), &hash, Memory::Thread))
            .await
            .unwrap_or(false);
        ok && real
    }
}

thread_local! {
    /// This thread's argon2 working memory, grown to the largest cost it has computed and kept
    /// for the thread's life.
    static MEMORY: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` on `blocks` blocks of this thread's argon2 memory, allocating (or growing) it only
/// the first time a cost needs more than the thread already holds.
fn with_memory<T>(blocks: usize, f: impl FnOnce(&mut [Block]) -> T) -> T {
    MEMORY.with(|memory| {
        // Nothing `f` calls hashes again, so the borrow is never taken twice.
        let mut memory = memory.borrow_mut();
        if memory.len() < blocks {
            let more = blocks - memory.len();
            memory.reserve_exact(more);
            memory.resize(blocks, Block::new());
        }
        f(&mut memory[..blocks])
    })
}

/// Where a hash's working memory comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Memory {
    /// The hashing thread's own, kept for its next hash ([`with_memory`]).
    Thread,
    /// Allocated for this hash and freed after: for one-off hashes on threads that are not
    /// hashing threads (start-up, the CLI, the admin socket), which should not keep it.
    Fresh,
}

/// argon2 into `out`, in `memory`.
fn hash_into(
    argon: &Argon2<'_>,
    password: &[u8],
    salt: &[u8],
    out: &mut [u8],
    memory: Memory,
) -> Result<(), argon2::Error> {
    let blocks = argon.params().block_count();
    match memory {
        Memory::Thread => with_memory(blocks, |m| {
            argon.hash_password_into_with_memory(password, salt, out, m)
        }),
        Memory::Fresh => {
            argon.hash_password_into_with_memory(password, salt, out, vec![Block::new(); blocks])
        }
    }
}

/// A fresh salt, the hash, and its PHC string (`$argon2id$v=19$m=..,t=..,p=..$salt$hash`),
/// as `argon2`'s own `hash_password` writes it.
fn hash_with(argon: &Argon2<'_>, password: &[u8], memory: Memory) -> Result<String, PasswordError> {
    let salt = SaltString::generate(&mut OsRng);
    let mut salt_buf = [0u8; 64];
    let salt_bytes = salt
        .as_salt()
        .decode_b64(&mut salt_buf)
        .map_err(PasswordError::Hash)?;
    let params = argon.params();
    let len = params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN);
    let output = Output::init_with(len, |out| {
        hash_into(argon, password, salt_bytes, out, memory).map_err(Into::into)
    })
    .map_err(PasswordError::Hash)?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(params).map_err(PasswordError::Hash)?,
        salt: Some(salt.as_salt()),
        hash: Some(output),
    };
    Ok(phc.to_string())
}

/// Verification uses the parameters recorded in the hash itself, so raising the configured cost
/// does not lock out users hashed under the old one. The hash is recomputed into this thread's
/// memory and compared in constant time.
fn verify_with(password: &[u8], hash: &str, memory: Memory) -> bool {
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(parsed.algorithm) else {
        return false;
    };
    let version = match parsed.version.map(Version::try_from).transpose() {
        Ok(v) => v.unwrap_or_default(),
        Err(_) => return false,
    };
    let Ok(params) = Params::try_from(&parsed) else {
        return false;
    };
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else {
        return false;
    };
    let mut out = [0u8; Output::MAX_LENGTH];
    let Some(out) = out.get_mut(..expected.len()) else {
        return false;
    };
    let argon = Argon2::new(algorithm, version, params);
    if hash_into(&argon, password, salt, out, memory).is_err() {
        return false;
    }
    subtle::ConstantTimeEq::ct_eq(&*out, expected.as_bytes()).into()
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

    fn argon(algorithm: Algorithm, version: Version, m: u32, t: u32, p: u32) -> Argon2<'static> {
        Argon2::new(algorithm, version, Params::new(m, t, p, None).unwrap())
    }

    #[test]
    fn hashes_are_interchangeable_with_the_argon2_crates_own() {
        use argon2::{PasswordHasher as _, PasswordVerifier as _};
        let ours_argon = argon(Algorithm::Argon2id, Version::V0x13, 64, 1, 1);
        let ours = hash_with(&ours_argon, b"hunter2", Memory::Thread).unwrap();
        assert!(ours.starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "{ours}");
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(ours_argon.verify_password(b"hunter2", &parsed).is_ok());
        assert!(ours_argon.verify_password(b"hunter3", &parsed).is_err());
        // Hashes stored before (written by the crate), under every variant and other costs.
        for (alg, ver, m, t, p) in [
            (Algorithm::Argon2id, Version::V0x13, 64, 1, 1),
            (Algorithm::Argon2id, Version::V0x13, 256, 3, 2),
            (Algorithm::Argon2i, Version::V0x13, 128, 2, 1),
            (Algorithm::Argon2d, Version::V0x10, 96, 1, 3),
        ] {
            let theirs = argon(alg, ver, m, t, p)
                .hash_password(b"hunter2", &SaltString::generate(&mut OsRng))
                .unwrap()
                .to_string();
            assert!(verify_with(b"hunter2", &theirs, Memory::Thread), "{theirs}");
            assert!(
                !verify_with(b"hunter3", &theirs, Memory::Thread),
                "{theirs}"
            );
            assert!(!verify_with(b"", &theirs, Memory::Thread), "{theirs}");
        }
    }

    #[test]
    fn damaged_hashes_never_verify() {
        let good = hash_with(
            &argon(Algorithm::Argon2id, Version::V0x13, 64, 1, 1),
            b"pw",
            Memory::Thread,
        )
        .unwrap();
        assert!(verify_with(b"pw", &good, Memory::Thread));
        let (head, digest) = good.rsplit_once('$').unwrap();
        let flipped = {
            let mut d = digest.as_bytes().to_vec();
            d[0] = if d[0] == b'A' { b'B' } else { b'A' };
            format!("{head}${}", String::from_utf8(d).unwrap())
        };
        for bad in [
            String::new(),
            "garbage".into(),
            head.to_string(),
            format!("{head}$"),
            flipped,
            format!("{head}${}", &digest[..digest.len() - 4]),
            good.replace("argon2id", "argon2x"),
            good.replace("v=19", "v=99"),
            good.replace("m=64", "m=1"),
            good.replace("$argon2id$", "$scrypt$"),
        ] {
            assert!(!verify_with(b"pw", &bad, Memory::Thread), "{bad:?}");
        }
    }

    #[test]
    fn a_thread_hashes_into_the_same_memory_every_time() {
        let a = argon(Algorithm::Argon2id, Version::V0x13, 256, 1, 1);
        let memory = || MEMORY.with(|m| (m.borrow().as_ptr() as usize, m.borrow().capacity()));
        let hash = hash_with(&a, b"pw", Memory::Thread).unwrap();
        let first = memory();
        assert_eq!(first.1, 256, "one block per KiB, allocated exactly");
        for _ in 0..5 {
            hash_with(&a, b"pw", Memory::Thread).unwrap();
            assert!(verify_with(b"pw", &hash, Memory::Thread));
        }
        // A cheaper stored hash runs in the same memory; a dearer one grows it once.
        let cheap = hash_with(
            &argon(Algorithm::Argon2id, Version::V0x13, 64, 1, 1),
            b"pw",
            Memory::Thread,
        )
        .unwrap();
        assert!(verify_with(b"pw", &cheap, Memory::Thread));
        assert_eq!(memory(), first);
        hash_with(
            &argon(Algorithm::Argon2id, Version::V0x13, 512, 1, 1),
            b"pw",
            Memory::Thread,
        )
        .unwrap();
        let grown = memory();
        assert_eq!(grown.1, 512);
        assert!(verify_with(b"pw", &hash, Memory::Thread));
        assert_eq!(memory(), grown);
        // One-off hashes (start-up, CLI, admin socket) leave the thread's memory alone.
        let dear = argon(Algorithm::Argon2id, Version::V0x13, 1024, 1, 1);
        let once = hash_with(&dear, b"pw", Memory::Fresh).unwrap();
        assert!(verify_with(b"pw", &once, Memory::Fresh));
        assert!(verify_with(b"pw", &once, Memory::Thread) && memory().1 == 1024);
    }

    #[tokio::test]
    async fn missing_hash_never_verifies() {
        assert!(!cheap().verify(SecretString::new("x"), None).await);
    }

    #[tokio::test]
    async fn hashes_run_on_lowest_priority_threads() {
        let h = cheap();
        // The `policy` field of /proc/thread-self/stat (the 41st), read on a hashing thread:
        // 5 is SCHED_IDLE, the policy a running hash yields to any woken proxy worker under.
        let policy = h
            .workers()
            .run(|| {
                let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
                let after_name = &stat[stat.rfind(')').unwrap() + 2..];
                after_name
                    .split(' ')
                    .nth(38)
                    .unwrap()
                    .parse::<i32>()
                    .unwrap()
            })
            .await
            .unwrap();
        assert_eq!(policy, 5, "SCHED_IDLE");
    }
}

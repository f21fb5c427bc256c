//! Persistence behind one trait, so the flow engine and the admin commands never see sled and
//! another backend can be added beside it: [`SledStore`] on disk, [`MemoryStore`] in memory.

mod changes;
#[cfg(test)]
mod conformance;
pub mod dump;
#[cfg(test)]
mod dump_tests;
mod integrity;
mod memory_store;
mod model;
mod postgres;
#[doc(hidden)]
pub use postgres::test_server as pg_test_server;
mod sled_store;
mod username;

pub(crate) use changes::FeedState;
pub use changes::{Change, ChangeFeed, ChangeSink};
pub use dump::Record;
pub use integrity::record_path as integrity_record_path;
pub use memory_store::MemoryStore;
pub use model::{Ban, Device, DeviceClass, Invitation, InvitationData, SessionRecord, User};
#[cfg(test)]
pub(crate) use postgres::lock as pg_lock;
#[cfg(test)]
pub(crate) use postgres::test_server;
pub use postgres::PgStore;
pub use sled_store::SledStore;
pub use username::{canonical_username, new_username, MAX_USERNAME_CHARS};

/// A storage failure, with what was being done. It names no backend's types: a backend's own
/// error travels as the boxed [`std::error::Error::source`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The backend failed while doing `action`.
    #[error("storage: {action}: {source}")]
    Backend {
        /// What was being done ("write user").
        action: &'static str,
        /// The backend's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A record could not be encoded or decoded.
    #[error("storage: {action}: corrupt record: {source}")]
    Corrupt {
        /// What was being done.
        action: &'static str,
        /// Why the record did not (de)serialize.
        #[source]
        source: serde_json::Error,
    },
    /// The database is held by another process.
    #[error("storage: the database at {path} is in use by another process")]
    Locked {
        /// The database's path.
        path: String,
    },
    /// An import was refused: the target already holds state (`holds` counts it by kind).
    #[error("storage: the target database is not empty: it holds {holds}; import only into a new, empty database (nothing was imported)")]
    NotEmpty {
        /// What it holds ("2 user, 1 session").
        holds: String,
    },
    /// The database is damaged, lost writes or was replaced: the gateway does not run on it.
    #[error("storage: the database at {path} cannot be trusted: {finding}")]
    Damaged {
        /// The database's path.
        path: String,
        /// What was found, and what the operator can do.
        finding: String,
    },
}

/// A database's identity: random, made with the database (or when an older database is first
/// opened by a version that has identities). Session tokens carry it, so a token issued by
/// another database, or an earlier one at the same path, is refused.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DatabaseId {
    /// The identity (random, base64url).
    pub id: String,
    /// When an existing database was given its identity (unix milliseconds): tokens issued
    /// by it before then carry none and are accepted until they expire. `None` for a database
    /// that had its identity from the start, or was accepted afresh.
    pub adopted_ms: Option<i64>,
}

impl StoreError {
    /// A [`StoreError::Backend`] for `action` caused by `source`.
    pub fn backend(
        action: &'static str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self::Backend {
            action,
            source: source.into(),
        }
    }
}

/// Opens the backend `[storage]` names: sled at `path`, or PostgreSQL (migrated on open).
///
/// # Errors
/// As [`SledStore::open`] or [`PgStore::connect`].
pub fn open(storage: &crate::config::StorageConfig) -> StoreResult<std::sync::Arc<dyn Store>> {
    Ok(match &storage.backend {
        crate::config::StorageBackend::Sled => std::sync::Arc::new(SledStore::open(&storage.path)?),
        crate::config::StorageBackend::Postgres(pg) => std::sync::Arc::new(PgStore::connect(pg)?),
    })
}

/// The key set holding the session signing keys and the identity-assertion keys (JSON of
/// [`crate::session::KeyFile`]).
pub const KEYSET_SESSION: &str = "session";
/// The key set holding the device key's check value (a MAC of a constant under the device
/// key, never the key), so every replica can tell it has the same device key file.
pub const KEYSET_DEVICE_CHECK: &str = "device-key-check";

/// How long audit records are kept in the store (90 days, in ms): [`Store::purge_expired`]
/// drops older ones. An `[log] audit_file` keeps everything; archive from it (or from
/// `portcullis audit list`) to keep records longer.
pub const AUDIT_RETENTION: i64 = 90 * 24 * 60 * 60 * 1000;

/// A key set as stored ([`Store::keyset`]).
///
/// # Security
/// `data` may hold signing keys: its `Debug` shows only the version and length.
#[derive(Clone, PartialEq, Eq)]
pub struct Keyset {
    /// 1 for the first stored, one more at each successful [`Store::swap_keyset`].
    pub version: i64,
    /// What was stored.
    pub data: Vec<u8>,
}

impl std::fmt::Debug for Keyset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyset")
            .field("version", &self.version)
            .field("data", &format_args!("<{} bytes>", self.data.len()))
            .finish()
    }
}

/// What every [`Store`] method returns.
pub type StoreResult<T> = Result<T, StoreError>;

/// The e-mail index key: trimmed, NFC, lower case, so an address matches however its
/// accents were composed or its letters cased.
fn email_key(email: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    email.trim().nfc().collect::<String>().to_lowercase()
}

/// The start of every device key of `username`.
fn device_prefix(username: &str) -> String {
    // NUL cannot occur in a username, so one user's prefix never matches another's.
    format!("{username}\0")
}

/// A session's key in the per-user index: its user's [`device_prefix`] (the same
/// NUL-terminated username), then its sid.
fn user_session_key(username: &str, sid: &str) -> String {
    format!("{}{sid}", device_prefix(username))
}

/// A device's key: its user's [`device_prefix`], then its id.
fn device_key(username: &str, id: &str) -> String {
    format!("{}{id}", device_prefix(username))
}

/// Everything the gateway persists. Writes that a user would miss after a crash (users,
/// sessions, revocations, executions) are durable when the call returns.
///
/// Times are passed in, never read: every method that judges expiry takes the caller's `now`
/// (unix seconds), and a record is dead at its expiry (`expires <= now`). Each method is
/// atomic on its own; `src/store/conformance.rs` holds the behaviour every backend must show.
///
/// # Errors
/// Every method fails with [`StoreError`] when the backend does.
pub trait Store: Send + Sync + 'static {
    /// The account `username` names: stored under exactly that name, or under its canonical
    /// form ([`canonical_username`]: `ALICE` finds `alice`), or stored before names were
    /// canonical under another spelling of it (`alice` finds an old `Alice`).
    fn user(&self, username: &str) -> StoreResult<Option<User>>;
    /// Looks a user up by e-mail address, case-insensitively.
    fn user_by_email(&self, email: &str) -> StoreResult<Option<User>>;
    /// Creates or replaces a user, keeping the e-mail index in step.
    fn put_user(&self, user: &User) -> StoreResult<()>;
    /// Removes the account `username` names (any spelling, as [`Store::user`] finds it), its
    /// e-mail index entry and every device it enrolled; returns whether it existed.
    fn remove_user(&self, username: &str) -> StoreResult<bool>;
    /// Every account, ordered by stored username.
    fn users(&self) -> StoreResult<Vec<User>>;
    /// How many accounts exist.
    fn user_count(&self) -> StoreResult<usize>;

    /// An execution's serialized state, if it exists and has not expired at `now`.
    fn execution(&self, id: &str, now: i64) -> StoreResult<Option<Vec<u8>>>;
    /// Creates or replaces an execution's state, alive until `expires` (unix seconds,
    /// exclusive). Durable on return.
    fn put_execution(&self, id: &str, expires: i64, state: &[u8]) -> StoreResult<()>;
    /// Replaces the execution `id` with `new` (alive until `expires`), only if its stored state
    /// is still exactly `current` (whether or not it has expired meanwhile); returns whether it
    /// did. Of several replicas that loaded the same state, exactly one moves it on: a step is
    /// applied once, and an execution removed meanwhile (cancelled, finished) is never brought
    /// back by a late save. Durable on return.
    fn swap_execution(
        &self,
        id: &str,
        current: &[u8],
        new: &[u8],
        expires: i64,
    ) -> StoreResult<bool>;
    /// Whether other gateways (replicas, or in tests other engines) may write this store at
    /// the same time, so the engine's in-process step lock does not serialise an execution's
    /// steps: the engine then claims an execution ([`Store::swap_execution`]) before a step
    /// acts. `false` (the default) where one process holds the database (sled locks its
    /// directory).
    fn shared(&self) -> bool {
        false
    }
    /// Forgets an execution; nothing happens when it does not exist.
    fn remove_execution(&self, id: &str) -> StoreResult<()>;
    /// Drops whatever has expired by `now`: executions, session records, revocations of
    /// tokens that are dead anyway, one-time tickets and counters whose window has passed,
    /// audit records older than [`AUDIT_RETENTION`]. Returns how many records went, so the database does not grow with every sign-in.
    fn purge_expired(&self, now: i64) -> StoreResult<usize>;

    /// Records an issued session, for listing, revocation and the check of a retired key's
    /// tokens. Durable on return: a session answered before a crash is recorded after it.
    fn put_session(&self, session: &SessionRecord) -> StoreResult<()>;
    /// The recorded session `sid`, unless it was revoked or purged.
    fn session(&self, sid: &str) -> StoreResult<Option<SessionRecord>>;
    /// Marks a session revoked until `expires` (after which its token is dead anyway) and
    /// drops its record. Durable on return.
    fn revoke_session(&self, sid: &str, expires: i64) -> StoreResult<()>;
    /// Every revocation still in force at `now` (sid, expiry), to load into memory at start;
    /// those no longer in force are dropped.
    fn revocations(&self, now: i64) -> StoreResult<Vec<(String, i64)>>;
    /// Tokens for `username` issued at or before `since` (unix milliseconds) are refused (set
    /// when a user is disabled, removed or changes password); replaces an earlier `since`, never
    /// a later one (decided atomically: of replicas revoking at once, the latest wins).
    /// Durable on return.
    fn revoke_user_sessions(&self, username: &str, since: i64) -> StoreResult<()>;
    /// Every user revocation (username, since in unix milliseconds); they never expire.
    fn user_revocations(&self) -> StoreResult<Vec<(String, i64)>>;
    /// Calls `each` with every revocation still in force at `now` (sid, expiry), as
    /// [`Store::revocations`] returns them, one at a time: the start-up load of a million
    /// revocations builds no list of a million strings. Those no longer in force are dropped.
    /// The default collects [`Store::revocations`]; a backend that can stream should.
    fn for_each_revocation(&self, now: i64, each: &mut dyn FnMut(&str, i64)) -> StoreResult<()> {
        for (sid, exp) in self.revocations(now)? {
            each(&sid, exp);
        }
        Ok(())
    }
    /// Calls `each` with every user revocation (username, since in unix milliseconds), as
    /// [`Store::user_revocations`] returns them, one at a time. The default collects them.
    fn for_each_user_revocation(&self, each: &mut dyn FnMut(&str, i64)) -> StoreResult<()> {
        for (user, since) in self.user_revocations()? {
            each(&user, since);
        }
        Ok(())
    }

    /// A user's enrolled second-factor devices, ordered by id; never another user's.
    fn devices(&self, username: &str) -> StoreResult<Vec<Device>>;
    /// Creates or replaces a device (durable on return).
    fn put_device(&self, device: &Device) -> StoreResult<()>;
    /// Replaces the stored device `current` names (same user and id) with `new`, only if the
    /// stored record still equals `current`; returns whether it did. Of several writers that
    /// read the same record, exactly one wins: a TOTP step or a recovery code is used once
    /// however many requests race. Durable on return.
    fn swap_device(&self, current: &Device, new: &Device) -> StoreResult<bool>;
    /// Removes a user's device; returns whether it existed. Durable on return.
    fn remove_device(&self, username: &str, id: &str) -> StoreResult<bool>;

    /// Adds one to the counter `key` in a fixed window of `window` seconds starting at its
    /// first hit, and returns the new count. Used for per-user, per-number, per-address and
    /// global limits that must hold across executions and restarts.
    fn bump_counter(&self, key: &str, window: i64, now: i64) -> StoreResult<u32>;
    /// The counter's value in its current window (0 once the window has passed).
    fn counter(&self, key: &str, now: i64) -> StoreResult<u32>;
    /// Drops the counter, so the next bump starts a new window at 1.
    fn reset_counter(&self, key: &str) -> StoreResult<()>;

    /// Stores a one-time ticket (e.g. a magic link) under the hash of its secret.
    fn put_ticket(&self, hash: &str, expires: i64, data: &[u8]) -> StoreResult<()>;
    /// The ticket, if present and unexpired.
    fn ticket(&self, hash: &str, now: i64) -> StoreResult<Option<Vec<u8>>>;
    /// Removes the ticket, returning whether this call was the one that removed it, so two
    /// racing consumers cannot both use it.
    fn take_ticket(&self, hash: &str) -> StoreResult<bool>;

    /// A 32-byte secret for `name`, created on first use and kept forever.
    fn secret(&self, name: &str) -> StoreResult<[u8; 32]>;

    /// Creates `user` only if no account has its name (in any spelling [`Store::user`]
    /// finds) and, when it has an address, no account has that address; returns whether it
    /// did. Of several callers racing for one name or address, exactly one wins. Durable on
    /// return.
    fn create_user(&self, user: &User) -> StoreResult<bool>;

    /// Creates or replaces an invitation (durable on return).
    fn put_invitation(&self, invitation: &Invitation) -> StoreResult<()>;
    /// The invitation `id`, if it exists and has not expired at `now`.
    fn invitation(&self, id: &str, now: i64) -> StoreResult<Option<Invitation>>;
    /// Every stored invitation, expired ones included (until purged), ordered by id.
    fn invitations(&self) -> StoreResult<Vec<Invitation>>;
    /// Removes the invitation `id` (revoked, or spent); returns whether this call removed
    /// it, so of two enrolments racing with one single-use invitation only one spends it.
    /// Durable on return.
    fn remove_invitation(&self, id: &str) -> StoreResult<bool>;
    /// Puts a message in the outbox (mail waiting for delivery) under the unique `id`.
    /// Durable on return: a message queued before a crash is still there after it.
    fn put_outbox(&self, id: &str, record: &[u8]) -> StoreResult<()>;
    /// Every message in the outbox, ordered by id.
    fn outbox(&self) -> StoreResult<Vec<(String, Vec<u8>)>>;
    /// Replaces the message `id` with `new`, only if it is still stored as `current`; returns
    /// whether it did. A message taken meanwhile (sent, or withdrawn by a resend) is never
    /// brought back by a late reschedule. Durable on return.
    fn swap_outbox(&self, id: &str, current: &[u8], new: &[u8]) -> StoreResult<bool>;
    /// Removes the message `id`, returning whether this call removed it. Durable on return:
    /// a message taken after it was delivered is never delivered again after a restart.
    fn take_outbox(&self, id: &str) -> StoreResult<bool>;

    /// The recorded sessions of `username` still alive at `now` (neither revoked nor
    /// expired), oldest first; never another user's. What the settings page lists.
    fn user_sessions(&self, username: &str, now: i64) -> StoreResult<Vec<SessionRecord>>;
    /// Records when sessions were last seen: (sid, unix seconds) pairs; a sid with no record
    /// (revoked, purged) is skipped, and an older time never replaces a newer one. Need not be
    /// durable on return: a lost write only shows an older "last seen".
    fn touch_sessions(&self, seen: &[(String, i64)]) -> StoreResult<()>;

    /// Writes everything stored so far to disk (a no-op where nothing is on disk); the
    /// gateway calls it last at shutdown.
    fn flush(&self) -> StoreResult<()>;
    /// Replaces the existing account `user.username` with `user`, keeping the e-mail index in
    /// step, only if the account still exists and no other account has `user.email`; returns
    /// whether it did. Atomic against [`Store::create_user`] and itself: of several writers
    /// racing for one address, exactly one gets it, and none overwrites another account's
    /// index entry. Durable on return.
    fn update_user(&self, user: &User) -> StoreResult<bool>;
    /// The database's identity ([`DatabaseId`]); the same for as long as the database lives.
    fn database_id(&self) -> StoreResult<DatabaseId>;
    /// Records a failure at `now` in the sliding window `key` of `window` seconds and returns
    /// how many failures the window holds, this one included (at most `keep`: older ones are
    /// forgotten first). Atomic: of many concurrent callers each sees a distinct count. Kept
    /// until `window` seconds after its newest failure (then [`Store::purge_expired`] drops it).
    fn slide_failure(&self, key: &str, window: i64, now: i64, keep: u32) -> StoreResult<u32>;
    /// How many failures the sliding window `key` holds at `now`: those recorded less than
    /// `window` seconds before it. Reads only.
    fn failures(&self, key: &str, window: i64, now: i64) -> StoreResult<u32>;
    /// Takes back one failure recorded at `at` in the window `key` (an attempt counted before
    /// it was judged turned out right); nothing happens when there is none.
    fn unslide_failure(&self, key: &str, at: i64) -> StoreResult<()>;
    /// `Ok` when the store can serve, for `/.portcullis/ready`. Must not wait on a remote
    /// database: a flood of readiness checks during an outage would park every worker (the
    /// PostgreSQL backend answers what its background probe last saw). The default, for
    /// local stores, reads an account no one can have (usernames hold no NUL).
    ///
    /// # Errors
    /// The reason the store cannot serve.
    fn check_ready(&self) -> StoreResult<()> {
        self.user("\u{0}portcullis-ready-probe").map(|_| ())
    }
    /// Creates the ban on `ban.subject`, or replaces the one there when
    /// [`Ban::replaced_by`] says so (decided atomically, so replicas banning one subject at
    /// once keep the longest ban). Durable on return.
    fn put_ban(&self, ban: &Ban) -> StoreResult<()>;
    /// Lifts the ban on `subject`; returns whether there was one. Durable on return.
    fn remove_ban(&self, subject: &str) -> StoreResult<bool>;
    /// Every ban in force at `now`, ordered by subject; those no longer in force are dropped.
    fn bans(&self, now: i64) -> StoreResult<Vec<Ban>>;

    /// Starts hearing the changes every process on this database makes to revocations and
    /// bans ([`Change`]), handing them to `sink` on a thread of the feed's own until the
    /// returned [`ChangeFeed`] is dropped. The writes that revoke ([`Store::revoke_session`],
    /// [`Store::revoke_user_sessions`]) and those that ban ([`Store::put_ban`],
    /// [`Store::remove_ban`]) announce their change when they commit. After every
    /// (re)connection the feed asks `sink` to read everything again ([`Change::Resync`]),
    /// and while it cannot listen it asks so at least every second, so no change is missed
    /// for longer than that.
    ///
    /// The default, for a store no other process writes (sled, memory), is
    /// [`ChangeFeed::silent`]: the one process applied every change as it made it.
    ///
    /// # Errors
    /// The backend's, when the feed cannot start.
    fn watch_changes(&self, sink: std::sync::Arc<dyn ChangeSink>) -> StoreResult<ChangeFeed> {
        drop(sink);
        Ok(ChangeFeed::silent())
    }
    /// Every record the store holds, expired ones not yet purged included, in the order of
    /// [`dump::sort`]: what `portcullis store export` writes. One consistent view (on
    /// PostgreSQL one `REPEATABLE READ` transaction; sled is held by this process alone).
    /// Reads only.
    fn export_records(&self) -> StoreResult<Vec<Record>>;
    /// Puts `records` back as they were (expiry times, counts, hashes and sealed material
    /// exactly as given; the e-mail, legacy-name and per-user session indexes rebuilt), and the
    /// database takes the identity of a [`Record::DatabaseId`] among them. Refuses a store that
    /// holds anything but its identity with [`StoreError::NotEmpty`], writing nothing. On
    /// PostgreSQL one transaction: all or nothing. Durable on return.
    fn import_records(&self, records: &[Record]) -> StoreResult<()>;
    /// The key set `name` ([`KEYSET_SESSION`], [`KEYSET_DEVICE_CHECK`]) as last stored, with
    /// its version (1 for the first one stored); `None` before any is.
    fn keyset(&self, name: &str) -> StoreResult<Option<Keyset>>;
    /// Stores `data` as the key set `name`, version `expected + 1`, only if the stored version
    /// is still `expected` (0: none stored yet); returns whether it did. Of several writers
    /// that read the same version, exactly one wins: two replicas rotating at once, or
    /// starting together on an empty database, cannot lose each other's keys or end up with
    /// two key sets. Durable on return.
    fn swap_keyset(&self, name: &str, expected: i64, data: &[u8]) -> StoreResult<bool>;
    /// Appends one audit record (`line`, the JSON line of [`crate::audit`]) made at `at_ms`
    /// (unix ms), so every replica's records are in one place. Two records of the same
    /// millisecond both stay. [`Store::purge_expired`] drops records older than
    /// [`AUDIT_RETENTION`]. Durable on return on PostgreSQL; on sled with its next periodic
    /// flush (half a second) or at shutdown.
    fn append_audit(&self, at_ms: i64, line: &str) -> StoreResult<()>;
    /// Up to `limit` audit records made at or after `since_ms`, oldest first (records of one
    /// millisecond in the order they were appended).
    fn audit_records(&self, since_ms: i64, limit: usize) -> StoreResult<Vec<(i64, String)>>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn a_backend_error_says_what_was_done_and_keeps_its_cause() {
        let cause = std::io::Error::other("disk full");
        let e = StoreError::backend("write user", cause);
        assert_eq!(e.to_string(), "storage: write user: disk full");
        let source = e.source().map(ToString::to_string);
        assert_eq!(source.as_deref(), Some("disk full"));
        let from_text = StoreError::backend("scan", "connection reset by the database server");
        assert!(from_text
            .to_string()
            .ends_with("connection reset by the database server"));
    }
}

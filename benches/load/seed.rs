//! Fills a fresh sled database before the gateway starts: the bench user, and `n` users,
//! session records, session revocations and user revocations, so the scale rows show whether
//! per-request cost grows with what is stored. It also issues the valid session cookie the
//! signed-in rows send, with the gateway's own `SessionService`.
//!
//! The bulk goes in as sled batches with one flush at the end, not through `Store`: every
//! `Store` write is durable on its own (a flush each), which makes a million users take hours.
//! The batches write the layout `SledStore` reads (tree names, JSON records, big-endian
//! instants), and [`check`] then reads samples back through the `Store` API, so a change of
//! layout fails the bench loudly instead of seeding records the gateway cannot see.

use crate::procs::BoxError;
use portcullis::config::Config;
use portcullis::password::PasswordHasherPool;
use portcullis::secret::SecretString;
use portcullis::session::{NewSession, SessionService};
use portcullis::store::{SessionRecord, SledStore, Store, User};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub(crate) const USER: &str = "bench";
pub(crate) const PASSWORD: &str = "bench-Password-4711";

/// Records per sled batch: large enough that batching pays, small enough to bound memory.
const BATCH: u64 = 20_000;

/// Seeds `n` of each record kind (the bench user counts as one) and returns a valid token and
/// how long seeding took.
pub(crate) fn seed(config: &Config, n: u64) -> Result<(String, Duration), BoxError> {
    let started = Instant::now();
    let passwords = PasswordHasherPool::new(&config.passwords)?;
    // One real hash shared by every seeded user: hashing a million passwords would take hours
    // and tells nothing about per-request cost.
    let hash = passwords.hash_blocking(&SecretString::new(PASSWORD))?;
    let extra = n.saturating_sub(1);
    let now = portcullis::clock::now();
    let now_ms = portcullis::clock::now_ms();
    bulk(&config.storage.path, extra, &hash, now, now_ms)?;

    let store: Arc<dyn Store> = Arc::new(SledStore::open(&config.storage.path)?);
    check(store.as_ref(), extra, now)?;
    let token = user_and_token(config, store, hash)?;
    Ok((token, started.elapsed()))
}

/// The bench user in the configured store (any backend, e.g. PostgreSQL shared by replicas)
/// and a valid session token for it, signed with the keys at `keys_path` (made when missing).
pub(crate) fn seed_store(config: &Config) -> Result<String, BoxError> {
    let passwords = PasswordHasherPool::new(&config.passwords)?;
    let hash = passwords.hash_blocking(&SecretString::new(PASSWORD))?;
    let store = portcullis::store::open(&config.storage)?;
    user_and_token(config, store, hash)
}

/// Stores the bench user with `hash` and issues its session token.
fn user_and_token(
    config: &Config,
    store: Arc<dyn Store>,
    hash: String,
) -> Result<String, BoxError> {
    let now = portcullis::clock::now();
    let mut me = User::new(USER, now);
    me.name = "Bench User".into();
    me.email = Some("bench@example.com".into());
    me.groups = vec!["staff".into()];
    me.password_hash = Some(hash);
    store.put_user(&me)?;

    let sessions = SessionService::new(
        &config.session,
        config.storage.keys_path.clone(),
        store.clone(),
    )?;
    let (token, _) = sessions.issue(NewSession {
        username: USER.into(),
        name: me.name.clone(),
        email: "bench@example.com".into(),
        groups: me.groups.clone(),
        amr: vec!["identification".into(), "password".into()],
        factors: portcullis::session::Factors::PASSWORD,
        flows: vec![super::FLOW.into()],
        lifetime_secs: 12 * 3600,
    })?;
    Ok(token)
}

fn name(i: u64) -> String {
    format!("user{i:07}")
}

/// A revoked sid shaped as the gateway's (18 bytes, base64url: 24 characters), distinct for
/// every `i`, so the revocation list and sled's pages hold what they would in production.
fn revoked_sid(i: u64) -> String {
    use base64::Engine;
    let mut b = [0x5au8; 18];
    b[..8].copy_from_slice(&i.to_be_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// Writes `count` of each kind in batches, then flushes once.
fn bulk(path: &Path, count: u64, hash: &str, now: i64, now_ms: i64) -> Result<(), BoxError> {
    if count == 0 {
        return Ok(());
    }
    // sled's default page cache (1 GiB) let a million-record seeding grow past 10 GB
    // resident; the gateway runs with the cap `SledStore` sets.
    let db = sled::Config::new()
        .path(path)
        .cache_capacity(64 * 1024 * 1024)
        .open()?;
    let users = db.open_tree("users")?;
    let emails = db.open_tree("users_by_email")?;
    let sessions = db.open_tree("sessions")?;
    let revoked = db.open_tree("revoked_sessions")?;
    let user_revoked = db.open_tree("revoked_users")?;
    let expires = now + 86_400;
    let mut start = 0;
    while start < count {
        let end = (start + BATCH).min(count);
        let mut u = sled::Batch::default();
        let mut e = sled::Batch::default();
        let mut s = sled::Batch::default();
        let mut r = sled::Batch::default();
        let mut ur = sled::Batch::default();
        for i in start..end {
            let name = name(i);
            let email = format!("{name}@example.com");
            let mut user = User::new(name.clone(), now);
            user.email = Some(email.clone());
            user.password_hash = Some(hash.to_string());
            user.created = now;
            u.insert(name.as_bytes(), serde_json::to_vec(&user)?);
            e.insert(email.as_bytes(), name.as_bytes());
            let record = SessionRecord {
                sid: format!("sid-{i:07}"),
                username: name.clone(),
                issued: now,
                expires,
                client: "127.0.0.1".into(),
                browser: "Unknown browser".into(),
                last_seen: Some(now),
            };
            s.insert(record.sid.as_bytes(), serde_json::to_vec(&record)?);
            r.insert(revoked_sid(i).as_bytes(), &expires.to_be_bytes()[..]);
            // Users whose sessions were all revoked a moment ago, as `revoke_user` records it.
            ur.insert(name.as_bytes(), &now_ms.to_be_bytes()[..]);
        }
        users.apply_batch(u)?;
        emails.apply_batch(e)?;
        sessions.apply_batch(s)?;
        revoked.apply_batch(r)?;
        user_revoked.apply_batch(ur)?;
        start = end;
    }
    db.flush()?;
    Ok(())
}

/// Reads the seeded records back the way the gateway will, so a layout drift is an error here.
fn check(store: &dyn Store, count: u64, now: i64) -> Result<(), BoxError> {
    if count == 0 {
        return Ok(());
    }
    let last = name(count - 1);
    let seen = store.user(&last)?.map(|u| u.username);
    let by_email = store
        .user_by_email(&format!("{last}@example.com"))?
        .map(|u| u.username);
    let session = store.session(&format!("sid-{:07}", count - 1))?;
    let users = store.user_count()? as u64;
    let revocations = store.revocations(now)?.len() as u64;
    let user_revocations = store.user_revocations()?.len() as u64;
    let ok = seen.as_deref() == Some(last.as_str())
        && by_email.as_deref() == Some(last.as_str())
        && session.is_some()
        && users == count
        && revocations == count
        && user_revocations == count;
    if !ok {
        return Err(format!(
            "seeded records do not read back through Store (the sled layout changed?): \
             user {seen:?}, by email {by_email:?}, session {}, {users} users, {revocations} \
             session revocations, {user_revocations} user revocations, expected {count} each",
            session.is_some()
        )
        .into());
    }
    Ok(())
}

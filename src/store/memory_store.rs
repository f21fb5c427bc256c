//! An in-memory [`Store`] with the same semantics as [`super::SledStore`], for in-process
//! tests and throw-away gateways. Nothing survives the process.

use super::dump::{self, Bytes, Record};
use super::username::canonical_username;
use super::{
    device_key, device_prefix, email_key, Ban, DatabaseId, Device, Invitation, SessionRecord,
    Store, StoreError, StoreResult, User,
};
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};

/// A [`Store`] held in memory. Every call takes one lock, so each call is atomic the way the
/// sled backend's are: a counter bump, a ticket taken once, a secret created once.
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Keyed by the username as stored; ordered like sled's byte-ordered keys.
    users: BTreeMap<String, User>,
    /// canonical username -> the key of an account stored under another spelling.
    legacy_names: HashMap<String, String>,
    /// [`email_key`] -> username.
    emails: HashMap<String, String>,
    /// id -> (expires, state).
    executions: HashMap<String, (i64, Vec<u8>)>,
    sessions: HashMap<String, SessionRecord>,
    /// sid -> expires.
    revoked: HashMap<String, i64>,
    /// username -> since (unix ms).
    user_revoked: BTreeMap<String, i64>,
    /// [`device_key`] -> device.
    devices: BTreeMap<String, Device>,
    /// key -> (window end, count).
    counters: HashMap<String, (i64, u32)>,
    /// hash -> (expires, data).
    tickets: HashMap<String, (i64, Vec<u8>)>,
    secrets: HashMap<String, [u8; 32]>,
    /// id -> invitation.
    invitations: BTreeMap<String, Invitation>,
    /// id -> queued message.
    outbox: BTreeMap<String, Vec<u8>>,
    /// Sliding failure windows: key -> (window seconds, failure times, oldest first).
    windows: HashMap<String, (i64, Vec<i64>)>,
    /// subject -> ban.
    bans: BTreeMap<String, Ban>,
    /// Random per store: two memory stores are two databases (until one imports the
    /// other's records).
    id: DatabaseId,
    /// name -> key set.
    keysets: HashMap<String, super::Keyset>,
    /// Audit records (at ms, line), in the order appended.
    audit: Vec<(i64, String)>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self {
            inner: Mutex::new(Inner {
                id: DatabaseId {
                    id: crate::secret::random_token(16),
                    adopted_ms: None,
                },
                ..Inner::default()
            }),
        }
    }
}

impl Inner {
    /// As the sled backend's: `raw` reachable under its canonical form when it is not that
    /// form and no account holds it.
    fn index_legacy_name(&mut self, raw: &str) {
        let Some(canonical) = canonical_username(raw) else {
            return;
        };
        if canonical == raw {
            return;
        }
        let taken = self.users.contains_key(&canonical);
        let indexed = !taken
            && self
                .legacy_names
                .entry(canonical.clone())
                .or_insert_with(|| raw.to_string())
                .as_str()
                == raw;
        if !indexed {
            tracing::warn!(user = %raw, canonical = %canonical, "two accounts have the same username once case is ignored; the one stored as typed is reached only by its exact name: remove or rename one");
        }
    }

    fn user(&self, username: &str) -> Option<User> {
        if let Some(u) = self.users.get(username) {
            return Some(u.clone());
        }
        let canonical = canonical_username(username)?;
        if let Some(u) = self.users.get(&canonical) {
            return Some(u.clone());
        }
        let raw = self.legacy_names.get(&canonical)?;
        self.users.get(raw).cloned()
    }

    fn forget_email(&mut self, email: &str) {
        self.emails.remove(&email_key(email));
        self.emails.remove(&email.trim().to_lowercase());
    }
}

impl Store for MemoryStore {
    fn user(&self, username: &str) -> StoreResult<Option<User>> {
        Ok(self.inner.lock().user(username))
    }

    fn user_by_email(&self, email: &str) -> StoreResult<Option<User>> {
        let inner = self.inner.lock();
        let found = inner
            .emails
            .get(&email_key(email))
            .or_else(|| inner.emails.get(&email.trim().to_lowercase()));
        Ok(found.and_then(|name| inner.users.get(name)).cloned())
    }

    fn put_user(&self, user: &User) -> StoreResult<()> {
        let mut inner = self.inner.lock();
        let old = inner.users.get(&user.username).cloned();
        if let Some(old_email) = old.as_ref().and_then(|o| o.email.as_ref()) {
            inner.forget_email(old_email);
        }
        if let Some(email) = &user.email {
            inner.emails.insert(email_key(email), user.username.clone());
        }
        inner.users.insert(user.username.clone(), user.clone());
        if old.is_none() {
            inner.index_legacy_name(&user.username);
        }
        Ok(())
    }

    fn remove_user(&self, username: &str) -> StoreResult<bool> {
        let mut inner = self.inner.lock();
        let Some(old) = inner.user(username) else {
            return Ok(false);
        };
        if let Some(email) = &old.email {
            inner.forget_email(email);
        }
        if let Some(canonical) = canonical_username(&old.username) {
            if inner.legacy_names.get(&canonical) == Some(&old.username) {
                inner.legacy_names.remove(&canonical);
            }
        }
        let prefix = device_prefix(&old.username);
        inner.devices.retain(|k, _| !k.starts_with(&prefix));
        inner.users.remove(&old.username);
        Ok(true)
    }

    fn users(&self) -> StoreResult<Vec<User>> {
        Ok(self.inner.lock().users.values().cloned().collect())
    }

    fn user_count(&self) -> StoreResult<usize> {
        Ok(self.inner.lock().users.len())
    }

    fn execution(&self, id: &str, now: i64) -> StoreResult<Option<Vec<u8>>> {
        let mut inner = self.inner.lock();
        match inner.executions.get(id) {
            Some((exp, data)) if *exp > now => Ok(Some(data.clone())),
            Some(_) => {
                inner.executions.remove(id);
                Ok(None)
            }
            None => Ok(None),
        }
    }

    fn put_execution(&self, id: &str, expires: i64, state: &[u8]) -> StoreResult<()> {
        self.inner
            .lock()
            .executions
            .insert(id.to_string(), (expires, state.to_vec()));
        Ok(())
    }

    fn swap_execution(
        &self,
        id: &str,
        current: &[u8],
        new: &[u8],
        expires: i64,
    ) -> StoreResult<bool> {
        let mut inner = self.inner.lock();
        match inner.executions.get_mut(id) {
            Some(stored) if stored.1.as_slice() == current => {
                *stored = (expires, new.to_vec());
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Any number of engines may hold one memory store (the tests' replicas).
    fn shared(&self) -> bool {
        true
    }

    fn remove_execution(&self, id: &str) -> StoreResult<()> {
        self.inner.lock().executions.remove(id);
        Ok(())
    }

    fn purge_expired(&self, now: i64) -> StoreResult<usize> {
        let mut inner = self.inner.lock();
        let before = inner.executions.len()
            + inner.sessions.len()
            + inner.revoked.len()
            + inner.tickets.len()
            + inner.counters.len()
            + inner.invitations.len();
        inner.executions.retain(|_, (exp, _)| *exp > now);
        inner.sessions.retain(|_, s| s.expires > now);
        inner.revoked.retain(|_, exp| *exp > now);
        inner.tickets.retain(|_, (exp, _)| *exp > now);
        inner.counters.retain(|_, (end, _)| *end > now);
        inner.invitations.retain(|_, i| i.expires > now);
        let audit_before = inner.audit.len();
        inner
            .audit
            .retain(|(at, _)| *at > now.saturating_sub(super::AUDIT_RETENTION));
        let audit_purged = audit_before - inner.audit.len();
        let after = inner.executions.len()
            + inner.sessions.len()
            + inner.revoked.len()
            + inner.tickets.len()
            + inner.counters.len()
            + inner.invitations.len();
        Ok(before - after + audit_purged)
    }

    fn put_session(&self, session: &SessionRecord) -> StoreResult<()> {
        self.inner
            .lock()
            .sessions
            .insert(session.sid.clone(), session.clone());
        Ok(())
    }

    fn session(&self, sid: &str) -> StoreResult<Option<SessionRecord>> {
        Ok(self.inner.lock().sessions.get(sid).cloned())
    }

    fn revoke_session(&self, sid: &str, expires: i64) -> StoreResult<()> {
        let mut inner = self.inner.lock();
        inner.revoked.insert(sid.to_string(), expires);
        inner.sessions.remove(sid);
        Ok(())
    }

    fn revocations(&self, now: i64) -> StoreResult<Vec<(String, i64)>> {
        let mut inner = self.inner.lock();
        inner.revoked.retain(|_, exp| *exp > now);
        let mut out: Vec<(String, i64)> = inner
            .revoked
            .iter()
            .map(|(sid, exp)| (sid.clone(), *exp))
            .collect();
        out.sort();
        Ok(out)
    }

    fn revoke_user_sessions(&self, username: &str, since: i64) -> StoreResult<()> {
        let mut inner = self.inner.lock();
        let slot = inner
            .user_revoked
            .entry(username.to_string())
            .or_insert(since);
        *slot = (*slot).max(since);
        Ok(())
    }

    fn user_revocations(&self) -> StoreResult<Vec<(String, i64)>> {
        Ok(self
            .inner
            .lock()
            .user_revoked
            .iter()
            .map(|(u, since)| (u.clone(), *since))
            .collect())
    }

    fn devices(&self, username: &str) -> StoreResult<Vec<Device>> {
        let prefix = device_prefix(username);
        Ok(self
            .inner
            .lock()
            .devices
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(_, d)| d.clone())
            .collect())
    }

    fn put_device(&self, device: &Device) -> StoreResult<()> {
        self.inner
            .lock()
            .devices
            .insert(device_key(&device.username, &device.id), device.clone());
        Ok(())
    }

    fn swap_device(&self, current: &Device, new: &Device) -> StoreResult<bool> {
        let mut inner = self.inner.lock();
        let key = device_key(&current.username, &current.id);
        match inner.devices.get_mut(&key) {
            Some(stored) if stored == current => {
                *stored = new.clone();
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    fn remove_device(&self, username: &str, id: &str) -> StoreResult<bool> {
        Ok(self
            .inner
            .lock()
            .devices
            .remove(&device_key(username, id))
            .is_some())
    }

    fn bump_counter(&self, key: &str, window: i64, now: i64) -> StoreResult<u32> {
        let mut inner = self.inner.lock();
        let slot = inner.counters.entry(key.to_string()).or_insert((0, 0));
        *slot = if slot.0 > now {
            (slot.0, slot.1.saturating_add(1))
        } else {
            (now + window, 1)
        };
        Ok(slot.1)
    }

    fn counter(&self, key: &str, now: i64) -> StoreResult<u32> {
        Ok(match self.inner.lock().counters.get(key) {
            Some((end, count)) if *end > now => *count,
            _ => 0,
        })
    }

    fn reset_counter(&self, key: &str) -> StoreResult<()> {
        self.inner.lock().counters.remove(key);
        Ok(())
    }

    fn put_ticket(&self, hash: &str, expires: i64, data: &[u8]) -> StoreResult<()> {
        self.inner
            .lock()
            .tickets
            .insert(hash.to_string(), (expires, data.to_vec()));
        Ok(())
    }

    fn ticket(&self, hash: &str, now: i64) -> StoreResult<Option<Vec<u8>>> {
        Ok(match self.inner.lock().tickets.get(hash) {
            Some((exp, data)) if *exp > now => Some(data.clone()),
            _ => None,
        })
    }

    fn take_ticket(&self, hash: &str) -> StoreResult<bool> {
        Ok(self.inner.lock().tickets.remove(hash).is_some())
    }

    fn secret(&self, name: &str) -> StoreResult<[u8; 32]> {
        let mut inner = self.inner.lock();
        let secret = inner.secrets.entry(name.to_string()).or_insert_with(|| {
            let mut fresh = [0u8; 32];
            rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut fresh);
            fresh
        });
        Ok(*secret)
    }

    fn create_user(&self, user: &User) -> StoreResult<bool> {
        let mut inner = self.inner.lock();
        let email_taken = user.email.as_deref().is_some_and(|e| {
            inner.emails.contains_key(&email_key(e))
                || inner.emails.contains_key(&e.trim().to_lowercase())
        });
        if email_taken || inner.user(&user.username).is_some() {
            return Ok(false);
        }
        if let Some(email) = &user.email {
            inner.emails.insert(email_key(email), user.username.clone());
        }
        inner.users.insert(user.username.clone(), user.clone());
        inner.index_legacy_name(&user.username);
        Ok(true)
    }

    fn put_invitation(&self, invitation: &Invitation) -> StoreResult<()> {
        self.inner
            .lock()
            .invitations
            .insert(invitation.id.clone(), invitation.clone());
        Ok(())
    }

    fn invitation(&self, id: &str, now: i64) -> StoreResult<Option<Invitation>> {
        Ok(self
            .inner
            .lock()
            .invitations
            .get(id)
            .filter(|i| i.expires > now)
            .cloned())
    }

    fn invitations(&self) -> StoreResult<Vec<Invitation>> {
        Ok(self.inner.lock().invitations.values().cloned().collect())
    }

    fn remove_invitation(&self, id: &str) -> StoreResult<bool> {
        Ok(self.inner.lock().invitations.remove(id).is_some())
    }

    fn put_outbox(&self, id: &str, record: &[u8]) -> StoreResult<()> {
        self.inner
            .lock()
            .outbox
            .insert(id.to_string(), record.to_vec());
        Ok(())
    }

    fn outbox(&self) -> StoreResult<Vec<(String, Vec<u8>)>> {
        Ok(self
            .inner
            .lock()
            .outbox
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn swap_outbox(&self, id: &str, current: &[u8], new: &[u8]) -> StoreResult<bool> {
        let mut inner = self.inner.lock();
        match inner.outbox.get_mut(id) {
            Some(v) if v.as_slice() == current => {
                *v = new.to_vec();
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    fn take_outbox(&self, id: &str) -> StoreResult<bool> {
        Ok(self.inner.lock().outbox.remove(id).is_some())
    }

    fn user_sessions(&self, username: &str, now: i64) -> StoreResult<Vec<SessionRecord>> {
        let inner = self.inner.lock();
        let mut out: Vec<SessionRecord> = inner
            .sessions
            .values()
            .filter(|s| s.username == username && s.expires > now)
            .cloned()
            .collect();
        out.sort_by(|a, b| (a.issued, &a.sid).cmp(&(b.issued, &b.sid)));
        Ok(out)
    }

    fn touch_sessions(&self, seen: &[(String, i64)]) -> StoreResult<()> {
        let mut inner = self.inner.lock();
        for (sid, at) in seen {
            if let Some(s) = inner.sessions.get_mut(sid) {
                if s.last_seen.is_none_or(|t| t < *at) {
                    s.last_seen = Some(*at);
                }
            }
        }
        Ok(())
    }

    fn flush(&self) -> StoreResult<()> {
        Ok(())
    }

    fn update_user(&self, user: &User) -> StoreResult<bool> {
        let mut inner = self.inner.lock();
        let Some(old) = inner.users.get(&user.username).cloned() else {
            return Ok(false);
        };
        let taken = user.email.as_deref().is_some_and(|e| {
            [email_key(e), e.trim().to_lowercase()]
                .iter()
                .any(|k| inner.emails.get(k).is_some_and(|h| *h != user.username))
        });
        if taken {
            return Ok(false);
        }
        if let Some(old_email) = &old.email {
            inner.forget_email(old_email);
        }
        if let Some(email) = &user.email {
            inner.emails.insert(email_key(email), user.username.clone());
        }
        inner.users.insert(user.username.clone(), user.clone());
        Ok(true)
    }

    fn database_id(&self) -> StoreResult<DatabaseId> {
        Ok(self.inner.lock().id.clone())
    }

    fn slide_failure(&self, key: &str, window: i64, now: i64, keep: u32) -> StoreResult<u32> {
        let mut inner = self.inner.lock();
        let slot = inner
            .windows
            .entry(key.to_string())
            .or_insert((window, Vec::new()));
        slot.0 = window;
        slide(&mut slot.1, window, now, keep);
        Ok(u32::try_from(slot.1.len()).unwrap_or(u32::MAX))
    }

    fn failures(&self, key: &str, window: i64, now: i64) -> StoreResult<u32> {
        let inner = self.inner.lock();
        let n = inner.windows.get(key).map_or(0, |(_, times)| {
            times.iter().filter(|t| **t > now - window).count()
        });
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }

    fn unslide_failure(&self, key: &str, at: i64) -> StoreResult<()> {
        let mut inner = self.inner.lock();
        if let Some((_, times)) = inner.windows.get_mut(key) {
            if let Some(i) = times.iter().rposition(|t| *t == at) {
                times.remove(i);
            }
            if times.is_empty() {
                inner.windows.remove(key);
            }
        }
        Ok(())
    }

    fn put_ban(&self, ban: &Ban) -> StoreResult<()> {
        let mut inner = self.inner.lock();
        if inner
            .bans
            .get(&ban.subject)
            .is_none_or(|old| old.replaced_by(ban))
        {
            inner.bans.insert(ban.subject.clone(), ban.clone());
        }
        Ok(())
    }

    fn remove_ban(&self, subject: &str) -> StoreResult<bool> {
        Ok(self.inner.lock().bans.remove(subject).is_some())
    }

    fn bans(&self, now: i64) -> StoreResult<Vec<Ban>> {
        let mut inner = self.inner.lock();
        inner.bans.retain(|_, b| b.in_force(now));
        Ok(inner.bans.values().cloned().collect())
    }

    fn keyset(&self, name: &str) -> StoreResult<Option<super::Keyset>> {
        Ok(self.inner.lock().keysets.get(name).cloned())
    }

    fn append_audit(&self, at_ms: i64, line: &str) -> StoreResult<()> {
        let mut inner = self.inner.lock();
        // Kept sorted by time (stable for one ms): a record with an earlier time (a clock
        // step back) goes before later ones, as the other backends order it.
        let at = inner.audit.partition_point(|(t, _)| *t <= at_ms);
        inner.audit.insert(at, (at_ms, line.to_string()));
        Ok(())
    }

    fn audit_records(&self, since_ms: i64, limit: usize) -> StoreResult<Vec<(i64, String)>> {
        let inner = self.inner.lock();
        let from = inner.audit.partition_point(|(t, _)| *t < since_ms);
        Ok(inner.audit[from..].iter().take(limit).cloned().collect())
    }

    fn swap_keyset(&self, name: &str, expected: i64, data: &[u8]) -> StoreResult<bool> {
        let mut inner = self.inner.lock();
        let stored = inner.keysets.get(name).map_or(0, |k| k.version);
        if stored != expected {
            return Ok(false);
        }
        inner.keysets.insert(
            name.to_string(),
            super::Keyset {
                version: expected + 1,
                data: data.to_vec(),
            },
        );
        Ok(true)
    }

    fn export_records(&self) -> StoreResult<Vec<Record>> {
        Ok(self.inner.lock().records())
    }

    fn import_records(&self, records: &[Record]) -> StoreResult<()> {
        dump::check_all(records)?;
        let mut inner = self.inner.lock();
        if let Some(holds) = dump::holdings(&inner.records()) {
            return Err(StoreError::NotEmpty { holds });
        }
        for record in records {
            inner.import(record);
        }
        Ok(())
    }
}

impl Inner {
    /// Everything held, as [`Store::export_records`] returns it.
    fn records(&self) -> Vec<Record> {
        let mut out = vec![Record::DatabaseId {
            id: self.id.id.clone(),
            adopted_ms: self.id.adopted_ms,
        }];
        out.extend(self.secrets.iter().map(|(name, value)| Record::Secret {
            name: name.clone(),
            value: Bytes(value.to_vec()),
        }));
        out.extend(self.users.values().cloned().map(Record::User));
        out.extend(self.devices.values().cloned().map(Record::Device));
        out.extend(
            self.executions
                .iter()
                .map(|(id, (expires, state))| Record::Execution {
                    id: id.clone(),
                    expires: *expires,
                    state: Bytes(state.clone()),
                }),
        );
        out.extend(self.sessions.values().cloned().map(Record::Session));
        out.extend(
            self.revoked
                .iter()
                .map(|(sid, expires)| Record::Revocation {
                    sid: sid.clone(),
                    expires: *expires,
                }),
        );
        out.extend(
            self.user_revoked
                .iter()
                .map(|(username, since)| Record::UserRevocation {
                    username: username.clone(),
                    since_ms: *since,
                }),
        );
        out.extend(
            self.counters
                .iter()
                .map(|(key, (end, count))| Record::Counter {
                    key: key.clone(),
                    window_end: *end,
                    count: *count,
                }),
        );
        out.extend(
            self.windows
                .iter()
                .map(|(key, (window, times))| Record::FailureWindow {
                    key: key.clone(),
                    window: *window,
                    times: times.clone(),
                }),
        );
        out.extend(
            self.tickets
                .iter()
                .map(|(hash, (expires, data))| Record::Ticket {
                    hash: hash.clone(),
                    expires: *expires,
                    data: Bytes(data.clone()),
                }),
        );
        out.extend(self.invitations.values().cloned().map(Record::Invitation));
        out.extend(self.outbox.iter().map(|(id, record)| Record::Outbox {
            id: id.clone(),
            record: Bytes(record.clone()),
        }));
        out.extend(self.bans.values().cloned().map(Record::Ban));
        out.extend(self.keysets.iter().map(|(name, set)| Record::Keyset {
            name: name.clone(),
            data: Bytes(set.data.clone()),
        }));
        out.extend(self.audit.iter().map(|(at_ms, line)| Record::Audit {
            at_ms: *at_ms,
            line: line.clone(),
        }));
        dump::sort(&mut out);
        out
    }

    /// Puts one exported record back.
    fn import(&mut self, record: &Record) {
        match record.clone() {
            Record::DatabaseId { id, adopted_ms } => self.id = DatabaseId { id, adopted_ms },
            Record::Secret { name, value } => {
                if let Ok(v) = <[u8; 32]>::try_from(value.0.as_slice()) {
                    self.secrets.insert(name, v);
                }
            }
            Record::User(user) => {
                if let Some(email) = &user.email {
                    self.emails.insert(email_key(email), user.username.clone());
                }
                let name = user.username.clone();
                self.users.insert(name.clone(), user);
                self.index_legacy_name(&name);
            }
            Record::Device(d) => {
                self.devices.insert(device_key(&d.username, &d.id), d);
            }
            Record::Execution { id, expires, state } => {
                self.executions.insert(id, (expires, state.0));
            }
            Record::Session(s) => {
                self.sessions.insert(s.sid.clone(), s);
            }
            Record::Revocation { sid, expires } => {
                self.revoked.insert(sid, expires);
            }
            Record::UserRevocation { username, since_ms } => {
                self.user_revoked.insert(username, since_ms);
            }
            Record::Counter {
                key,
                window_end,
                count,
            } => {
                self.counters.insert(key, (window_end, count));
            }
            Record::FailureWindow { key, window, times } => {
                self.windows.insert(key, (window, times));
            }
            Record::Ticket {
                hash,
                expires,
                data,
            } => {
                self.tickets.insert(hash, (expires, data.0));
            }
            Record::Invitation(i) => {
                self.invitations.insert(i.id.clone(), i);
            }
            Record::Outbox { id, record } => {
                self.outbox.insert(id, record.0);
            }
            Record::Ban(b) => {
                self.bans.insert(b.subject.clone(), b);
            }
            Record::Keyset { name, data } => {
                self.keysets.insert(
                    name,
                    super::Keyset {
                        version: 1,
                        data: data.0,
                    },
                );
            }
            Record::Audit { at_ms, line } => {
                let at = self.audit.partition_point(|(t, _)| *t <= at_ms);
                self.audit.insert(at, (at_ms, line));
            }
        }
    }
}

/// Drops the failures of `times` older than `window` at `now`, adds `now`, and keeps at most
/// the newest `keep`.
pub(super) fn slide(times: &mut Vec<i64>, window: i64, now: i64, keep: u32) {
    times.retain(|t| *t > now - window);
    times.push(now);
    let keep = usize::try_from(keep.max(1)).unwrap_or(usize::MAX);
    if times.len() > keep {
        let extra = times.len() - keep;
        times.drain(..extra);
    }
}

//! The embedded default backend: one sled database, one tree per record kind.

use super::dump::{self, Bytes, Record};
use super::integrity::{self, Mode, Recorder};
use super::username::canonical_username;
use super::{
    device_key, device_prefix, email_key, user_session_key, Ban, DatabaseId, Device, Invitation,
    SessionRecord, Store, StoreError, StoreResult, User,
};
use serde::{de::DeserializeOwned, Serialize};
use std::path::Path;

/// sled-backed [`Store`]. sled allows one process per database; a second open fails with
/// [`StoreError::Locked`].
pub struct SledStore {
    db: sled::Db,
    users: sled::Tree,
    /// canonical username -> the key of an account stored before usernames were canonical.
    legacy_names: sled::Tree,
    emails: sled::Tree,
    executions: sled::Tree,
    sessions: sled::Tree,
    /// [`user_session_key`] -> the session's expiry (8 bytes, big-endian): the sessions of
    /// one user without a scan of every session.
    user_sessions: sled::Tree,
    revoked: sled::Tree,
    user_revoked: sled::Tree,
    devices: sled::Tree,
    counters: sled::Tree,
    tickets: sled::Tree,
    meta: sled::Tree,
    invitations: sled::Tree,
    /// Serialises [`Store::create_user`]: its checks and its writes span two trees.
    creating: std::sync::Mutex<()>,
    /// Mail waiting for delivery, by message id.
    outbox: sled::Tree,
    /// Audit records: [`audit_key`] -> the JSON line.
    audit: sled::Tree,
    /// The database's identity, checked and made at open (replaced only by an import).
    identity: parking_lot::RwLock<DatabaseId>,
    /// Keeps the integrity record beside the database in step with each durable write.
    recorder: Recorder,
}

fn backend(action: &'static str) -> impl FnOnce(sled::Error) -> StoreError {
    move |source| StoreError::backend(action, source)
}

fn decode<T: DeserializeOwned>(action: &'static str, bytes: &[u8]) -> StoreResult<T> {
    serde_json::from_slice(bytes).map_err(|source| StoreError::Corrupt { action, source })
}

fn encode<T: Serialize>(action: &'static str, v: &T) -> StoreResult<Vec<u8>> {
    serde_json::to_vec(v).map_err(|source| StoreError::Corrupt { action, source })
}

/// Values with an expiry are stored as 8 big-endian bytes of unix time, then the payload.
fn with_expiry(expires: i64, data: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(8 + data.len());
    v.extend_from_slice(&expires.to_be_bytes());
    v.extend_from_slice(data);
    v
}

fn split_expiry(v: &[u8]) -> Option<(i64, &[u8])> {
    let (head, rest) = v.split_first_chunk::<8>()?;
    Some((i64::from_be_bytes(*head), rest))
}

/// The sled page cache: enough for the working set of sign-ins. sled keeps two to three
/// times its cap resident once a start-up scan (the integrity check reads every record) has
/// filled it: measured over 6 million records, 16 MiB left about 40 MiB behind, 4 MiB
/// nothing beyond the page table sled holds anyway (~175 MiB). A miss costs a sign-in step a
/// page read from the OS's file cache, next to a 17 ms hash; signed-in requests read no page
/// at all (the revocation list is in memory).
const CACHE_BYTES: u64 = 4 * 1024 * 1024;

impl SledStore {
    /// Opens (creating if needed) the database directory, after checking every record reads
    /// back and the database is the one its integrity record describes (see
    /// `src/store/integrity.rs`).
    ///
    /// # Errors
    /// [`StoreError::Locked`] when another process holds it, [`StoreError::Damaged`] naming
    /// what was found when it is damaged, lost writes or was replaced, otherwise the backend
    /// error.
    pub fn open(path: &Path) -> StoreResult<Self> {
        Self::open_as(path, Mode::Check)
    }

    /// Opens the database as it is, whatever its integrity record says, under a new identity:
    /// every session issued before is refused, and the record starts again from here. For an
    /// operator who looked at what [`SledStore::open`] refused (`portcullis storage accept`).
    /// Records sled itself cannot read are still refused.
    ///
    /// # Errors
    /// As [`SledStore::open`].
    pub fn accept(path: &Path) -> StoreResult<Self> {
        Self::open_as(path, Mode::Accept)
    }

    fn open_as(path: &Path, mode: Mode) -> StoreResult<Self> {
        let created = !path.exists();
        // Password hashes, sessions and live sign-ins are in there: owner only, whatever the
        // umask says.
        for dir in [path.parent(), Some(path)].into_iter().flatten() {
            if dir.as_os_str().is_empty() {
                continue;
            }
            let mut b = std::fs::DirBuilder::new();
            b.recursive(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::DirBuilderExt;
                b.mode(0o700);
            }
            let _ = b.create(dir);
        }
        // sled's page cache defaults to 1 GiB, and the start-up load of the revocations would
        // fill it with pages no request reads again (requests consult the in-memory list).
        // Users, devices and executions are read per sign-in step, where a cache miss is a
        // page read.
        let opened = std::panic::catch_unwind(|| {
            sled::Config::new()
                .path(path)
                .cache_capacity(CACHE_BYTES)
                .open()
        })
        .map_err(|_| StoreError::Damaged {
            path: path.display().to_string(),
            finding: "sled failed while recovering it".into(),
        })?;
        let db = opened.map_err(|e| match e {
            sled::Error::Io(ref io) if io.kind() == std::io::ErrorKind::WouldBlock => {
                StoreError::Locked {
                    path: path.display().to_string(),
                }
            }
            sled::Error::Io(ref io) if io.to_string().contains("lock") => StoreError::Locked {
                path: path.display().to_string(),
            },
            sled::Error::Corruption { .. } | sled::Error::Unsupported(_) => StoreError::Damaged {
                path: path.display().to_string(),
                finding: format!("sled cannot recover it: {e}"),
            },
            other => StoreError::backend("open database", other),
        })?;
        let tree = |name: &str| db.open_tree(name).map_err(backend("open tree"));
        let meta = tree("meta")?;
        let (identity, recorder) = integrity::check(
            &db,
            &meta,
            path,
            created,
            mode,
            crate::clock::Clock::now_ms(&crate::clock::SystemClock),
        )?;
        Self {
            users: tree("users")?,
            legacy_names: tree("users_by_canonical_name")?,
            emails: tree("users_by_email")?,
            executions: tree("executions")?,
            sessions: tree("sessions")?,
            user_sessions: tree("sessions_by_user")?,
            revoked: tree("revoked_sessions")?,
            user_revoked: tree("revoked_users")?,
            devices: tree("devices")?,
            counters: tree("counters")?,
            tickets: tree("tickets")?,
            meta,
            invitations: tree("invitations")?,
            creating: std::sync::Mutex::new(()),
            outbox: tree("outbox")?,
            audit: tree("audit")?,
            identity: parking_lot::RwLock::new(identity),
            recorder,
            db,
        }
        .with_username_index()?
        .with_user_session_index()
    }

    /// Sessions recorded before the per-user index existed are indexed once per database;
    /// [`Store::put_session`] and [`Store::revoke_session`] keep it in step afterwards.
    fn with_user_session_index(self) -> StoreResult<Self> {
        const DONE: &str = "user_session_index:1";
        let action = "build session index";
        if self.meta.get(DONE).map_err(backend(action))?.is_some() {
            return Ok(self);
        }
        for item in self.sessions.iter() {
            let (_, v) = item.map_err(backend(action))?;
            // A record that does not decode is left to expire unlisted.
            if let Ok(s) = serde_json::from_slice::<SessionRecord>(&v) {
                self.index_session(&s)?;
            }
        }
        self.meta
            .insert(DONE, &[1u8][..])
            .map_err(backend(action))?;
        self.durable()?;
        Ok(self)
    }

    fn index_session(&self, s: &SessionRecord) -> StoreResult<()> {
        self.user_sessions
            .insert(
                user_session_key(&s.username, &s.sid),
                &s.expires.to_be_bytes(),
            )
            .map_err(backend("index session"))?;
        Ok(())
    }

    /// Accounts stored before usernames were compared in canonical form (RFC 8265) are kept
    /// under the name as typed then (`Alice`). Rather than renaming them, and every device,
    /// session and revocation recorded under that name, an index maps their canonical form to
    /// that key, so `alice` finds `Alice`. Built once per database; [`Store::put_user`] keeps it
    /// in step afterwards.
    fn with_username_index(self) -> StoreResult<Self> {
        const DONE: &str = "username_index:rfc8265";
        if self
            .meta
            .get(DONE)
            .map_err(backend("read username index"))?
            .is_some()
        {
            return Ok(self);
        }
        for key in self.users.iter().keys() {
            let key = key.map_err(backend("build username index"))?;
            let raw = String::from_utf8_lossy(&key).into_owned();
            self.index_legacy_name(&raw)?;
        }
        self.meta
            .insert(DONE, &[1u8][..])
            .map_err(backend("build username index"))?;
        self.durable()?;
        Ok(self)
    }

    /// Records `raw` in the legacy index when it is not its own canonical form. When another
    /// account already holds the canonical form, the older spelling stays reachable only by
    /// its exact name, and the log says so.
    fn index_legacy_name(&self, raw: &str) -> StoreResult<()> {
        let Some(canonical) = canonical_username(raw) else {
            return Ok(());
        };
        if canonical == raw {
            return Ok(());
        }
        let taken = self
            .users
            .contains_key(&canonical)
            .map_err(backend("build username index"))?;
        let indexed = !taken
            && match self
                .legacy_names
                .compare_and_swap(&canonical, None as Option<&[u8]>, Some(raw.as_bytes()))
                .map_err(backend("build username index"))?
            {
                Ok(()) => true,
                Err(e) => e.current.as_deref() == Some(raw.as_bytes()),
            };
        if !indexed {
            tracing::warn!(user = %raw, canonical = %canonical, "two accounts have the same username once case is ignored; the one stored as typed is reached only by its exact name: remove or rename one");
        }
        Ok(())
    }

    fn user_exact(&self, key: &str) -> StoreResult<Option<User>> {
        match self.users.get(key).map_err(backend("read user"))? {
            Some(v) => Ok(Some(decode("read user", &v)?)),
            None => Ok(None),
        }
    }

    /// Makes every write so far durable, and counts it: the generation is bumped before the
    /// flush (so it lies after the writes in sled's log) and copied to the integrity record
    /// after it.
    fn durable(&self) -> StoreResult<()> {
        let generation = self
            .meta
            .update_and_fetch(integrity::GENERATION_KEY, |old| {
                let n = old
                    .and_then(|v| <[u8; 8]>::try_from(v).ok())
                    .map_or(0, u64::from_be_bytes);
                Some(n.saturating_add(1).to_be_bytes().to_vec())
            })
            .map_err(backend("flush"))?
            .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
            .map_or(0, u64::from_be_bytes);
        self.db.flush().map_err(backend("flush"))?;
        self.recorder.durable(generation)
    }
}

impl Store for SledStore {
    fn user(&self, username: &str) -> StoreResult<Option<User>> {
        if let Some(u) = self.user_exact(username)? {
            return Ok(Some(u));
        }
        let Some(canonical) = canonical_username(username) else {
            return Ok(None);
        };
        if canonical != username {
            if let Some(u) = self.user_exact(&canonical)? {
                return Ok(Some(u));
            }
        }
        match self
            .legacy_names
            .get(&canonical)
            .map_err(backend("read username index"))?
        {
            Some(raw) => self.user_exact(&String::from_utf8_lossy(&raw)),
            None => Ok(None),
        }
    }

    fn user_by_email(&self, email: &str) -> StoreResult<Option<User>> {
        let key = email_key(email);
        let mut found = self.emails.get(&key).map_err(backend("read email index"))?;
        // Entries written before addresses were NFC-normalised.
        let plain = email.trim().to_lowercase();
        if found.is_none() && plain != key {
            found = self
                .emails
                .get(plain)
                .map_err(backend("read email index"))?;
        }
        match found {
            Some(name) => self.user_exact(&String::from_utf8_lossy(&name)),
            None => Ok(None),
        }
    }

    fn put_user(&self, user: &User) -> StoreResult<()> {
        let old = self.user_exact(&user.username)?;
        if let Some(old_email) = old.as_ref().and_then(|o| o.email.as_ref()) {
            for key in [email_key(old_email), old_email.trim().to_lowercase()] {
                self.emails
                    .remove(key)
                    .map_err(backend("update email index"))?;
            }
        }
        if let Some(email) = &user.email {
            self.emails
                .insert(email_key(email), user.username.as_bytes())
                .map_err(backend("update email index"))?;
        }
        self.users
            .insert(&user.username, encode("write user", user)?)
            .map_err(backend("write user"))?;
        if old.is_none() {
            self.index_legacy_name(&user.username)?;
        }
        self.durable()
    }

    fn remove_user(&self, username: &str) -> StoreResult<bool> {
        let Some(old) = self.user(username)? else {
            return Ok(false);
        };
        // Devices first: a crash in between leaves an account without factors, never factors
        // waiting for the next account of that name.
        let mut batch = sled::Batch::default();
        for key in self
            .devices
            .scan_prefix(device_prefix(&old.username))
            .keys()
        {
            batch.remove(key.map_err(backend("list devices"))?);
        }
        self.devices
            .apply_batch(batch)
            .map_err(backend("remove devices"))?;
        if let Some(email) = &old.email {
            for key in [email_key(email), email.trim().to_lowercase()] {
                self.emails
                    .remove(key)
                    .map_err(backend("update email index"))?;
            }
        }
        if let Some(canonical) = canonical_username(&old.username) {
            let _ = self
                .legacy_names
                .compare_and_swap(
                    &canonical,
                    Some(old.username.as_bytes()),
                    None as Option<&[u8]>,
                )
                .map_err(backend("update username index"))?;
        }
        self.users
            .remove(&old.username)
            .map_err(backend("remove user"))?;
        self.durable()?;
        Ok(true)
    }

    fn users(&self) -> StoreResult<Vec<User>> {
        self.users
            .iter()
            .values()
            .map(|v| decode("list users", &v.map_err(backend("list users"))?))
            .collect()
    }

    fn user_count(&self) -> StoreResult<usize> {
        Ok(self.users.len())
    }

    fn execution(&self, id: &str, now: i64) -> StoreResult<Option<Vec<u8>>> {
        let Some(v) = self.executions.get(id).map_err(backend("read execution"))? else {
            return Ok(None);
        };
        match split_expiry(&v) {
            Some((exp, data)) if exp > now => Ok(Some(data.to_vec())),
            _ => {
                self.executions
                    .remove(id)
                    .map_err(backend("expire execution"))?;
                Ok(None)
            }
        }
    }

    fn put_execution(&self, id: &str, expires: i64, state: &[u8]) -> StoreResult<()> {
        self.executions
            .insert(id, with_expiry(expires, state))
            .map_err(backend("write execution"))?;
        self.durable()
    }

    fn swap_execution(
        &self,
        id: &str,
        current: &[u8],
        new: &[u8],
        expires: i64,
    ) -> StoreResult<bool> {
        let replacement = with_expiry(expires, new);
        loop {
            let Some(old) = self.executions.get(id).map_err(backend("swap execution"))? else {
                return Ok(false);
            };
            if split_expiry(&old).is_none_or(|(_, data)| data != current) {
                return Ok(false);
            }
            // The compare is on the whole stored value (expiry and state): a writer that
            // changed it between the read and here makes this one read again, and lose.
            let swapped = self
                .executions
                .compare_and_swap(id, Some(&old), Some(replacement.as_slice()))
                .map_err(backend("swap execution"))?
                .is_ok();
            if swapped {
                self.durable()?;
                return Ok(true);
            }
        }
    }

    fn remove_execution(&self, id: &str) -> StoreResult<()> {
        self.executions
            .remove(id)
            .map_err(backend("remove execution"))?;
        self.durable()
    }

    fn purge_expired(&self, now: i64) -> StoreResult<usize> {
        let expiry_first = |v: &[u8]| split_expiry(v).map(|(exp, _)| exp);
        let session_end = |v: &[u8]| {
            serde_json::from_slice::<SessionRecord>(v)
                .ok()
                .map(|s| s.expires)
        };
        let counter_end = |v: &[u8]| parse_counter(v).map(|(end, _)| end);
        let mut n = 0;
        n += purge_tree(&self.executions, now, expiry_first)?;
        n += purge_tree(&self.sessions, now, session_end)?;
        purge_tree(&self.user_sessions, now, expiry_first)?;
        n += purge_tree(&self.revoked, now, expiry_first)?;
        n += purge_tree(&self.tickets, now, expiry_first)?;
        n += purge_tree(&self.counters, now, counter_end)?;
        let invitation_end = |v: &[u8]| {
            serde_json::from_slice::<Invitation>(v)
                .ok()
                .map(|i| i.expires)
        };
        n += purge_tree(&self.invitations, now, invitation_end)?;
        // Audit keys sort by time: everything before the cutoff's first key is older.
        let cutoff = audit_key(
            now.saturating_sub(super::AUDIT_RETENTION).saturating_add(1),
            0,
        );
        for item in self.audit.range(..cutoff.as_slice()) {
            let (k, _) = item.map_err(backend("scan for expired records"))?;
            if self
                .audit
                .remove(&k)
                .map_err(backend("purge expired records"))?
                .is_some()
            {
                n += 1;
            }
        }
        Ok(n)
    }

    fn put_session(&self, session: &SessionRecord) -> StoreResult<()> {
        self.sessions
            .insert(&session.sid, encode("write session", session)?)
            .map_err(backend("write session"))?;
        self.index_session(session)?;
        // Durable before the cookie is handed out: a session answered before a crash is
        // recorded after it (a retired key verifies only recorded sessions).
        self.durable()
    }

    fn session(&self, sid: &str) -> StoreResult<Option<SessionRecord>> {
        match self.sessions.get(sid).map_err(backend("read session"))? {
            Some(v) => Ok(Some(decode("read session", &v)?)),
            None => Ok(None),
        }
    }

    fn revoke_session(&self, sid: &str, expires: i64) -> StoreResult<()> {
        self.revoked
            .insert(sid, &expires.to_be_bytes())
            .map_err(backend("revoke session"))?;
        let old = self
            .sessions
            .remove(sid)
            .map_err(backend("revoke session"))?;
        if let Some(s) = old.and_then(|v| serde_json::from_slice::<SessionRecord>(&v).ok()) {
            self.user_sessions
                .remove(user_session_key(&s.username, sid))
                .map_err(backend("revoke session"))?;
        }
        self.durable()
    }

    fn revocations(&self, now: i64) -> StoreResult<Vec<(String, i64)>> {
        let mut out = Vec::new();
        self.for_each_revocation(now, &mut |sid, exp| out.push((sid.to_string(), exp)))?;
        Ok(out)
    }

    fn revoke_user_sessions(&self, username: &str, since: i64) -> StoreResult<()> {
        // Only forward: an earlier `since` written late never lets revoked tokens back in.
        self.user_revoked
            .fetch_and_update(username, |old| {
                let old = old
                    .and_then(|o| <[u8; 8]>::try_from(o).ok())
                    .map(i64::from_be_bytes);
                Some(old.map_or(since, |o| o.max(since)).to_be_bytes().to_vec())
            })
            .map_err(backend("revoke user sessions"))?;
        self.durable()
    }

    fn user_revocations(&self) -> StoreResult<Vec<(String, i64)>> {
        let mut out = Vec::new();
        self.for_each_user_revocation(&mut |user, since| out.push((user.to_string(), since)))?;
        Ok(out)
    }

    fn for_each_revocation(&self, now: i64, each: &mut dyn FnMut(&str, i64)) -> StoreResult<()> {
        for item in self.revoked.iter() {
            let (k, v) = item.map_err(backend("load revocations"))?;
            let exp = split_expiry(&v).map(|(e, _)| e).unwrap_or(0);
            if exp > now {
                each(&String::from_utf8_lossy(&k), exp);
            } else {
                self.revoked
                    .remove(k)
                    .map_err(backend("prune revocations"))?;
            }
        }
        Ok(())
    }

    fn for_each_user_revocation(&self, each: &mut dyn FnMut(&str, i64)) -> StoreResult<()> {
        for item in self.user_revoked.iter() {
            let (k, v) = item.map_err(backend("load user revocations"))?;
            let since = split_expiry(&v).map(|(e, _)| e).unwrap_or(0);
            each(&String::from_utf8_lossy(&k), since);
        }
        Ok(())
    }

    fn devices(&self, username: &str) -> StoreResult<Vec<Device>> {
        self.devices
            .scan_prefix(device_prefix(username))
            .values()
            .map(|v| decode("list devices", &v.map_err(backend("list devices"))?))
            .collect()
    }

    fn put_device(&self, device: &Device) -> StoreResult<()> {
        let key = device_key(&device.username, &device.id);
        self.devices
            .insert(key, encode("write device", device)?)
            .map_err(backend("write device"))?;
        self.durable()
    }

    fn swap_device(&self, current: &Device, new: &Device) -> StoreResult<bool> {
        // The stored bytes are compared, not re-encoded: a record written by an older version
        // (fields in another order, a default left out) still swaps when it decodes equal.
        let key = device_key(&current.username, &current.id);
        let Some(raw) = self.devices.get(&key).map_err(backend("read device"))? else {
            return Ok(false);
        };
        let stored: Device = decode("read device", &raw)?;
        if &stored != current {
            return Ok(false);
        }
        let swapped = self
            .devices
            .compare_and_swap(key, Some(raw), Some(encode("write device", new)?))
            .map_err(backend("write device"))?
            .is_ok();
        if swapped {
            self.durable()?;
        }
        Ok(swapped)
    }

    fn remove_device(&self, username: &str, id: &str) -> StoreResult<bool> {
        let key = device_key(username, id);
        let old = self.devices.remove(key).map_err(backend("remove device"))?;
        self.durable()?;
        Ok(old.is_some())
    }

    fn bump_counter(&self, key: &str, window: i64, now: i64) -> StoreResult<u32> {
        // Value: 8 bytes window end, 4 bytes count. update_and_fetch makes the increment atomic
        // across concurrent requests.
        let v = self
            .counters
            .update_and_fetch(key, |old| {
                let (end, count) = old.and_then(parse_counter).unwrap_or((0, 0));
                let (end, count) = if end > now {
                    (end, count.saturating_add(1))
                } else {
                    (now + window, 1)
                };
                let mut out = end.to_be_bytes().to_vec();
                out.extend_from_slice(&count.to_be_bytes());
                Some(out)
            })
            .map_err(backend("bump counter"))?;
        Ok(v.as_deref()
            .and_then(parse_counter)
            .map(|(_, c)| c)
            .unwrap_or(1))
    }

    fn counter(&self, key: &str, now: i64) -> StoreResult<u32> {
        let v = self.counters.get(key).map_err(backend("read counter"))?;
        Ok(match v.as_deref().and_then(parse_counter) {
            Some((end, count)) if end > now => count,
            _ => 0,
        })
    }

    fn reset_counter(&self, key: &str) -> StoreResult<()> {
        self.counters
            .remove(key)
            .map_err(backend("reset counter"))?;
        Ok(())
    }

    fn put_ticket(&self, hash: &str, expires: i64, data: &[u8]) -> StoreResult<()> {
        self.tickets
            .insert(hash, with_expiry(expires, data))
            .map_err(backend("write ticket"))?;
        self.durable()
    }

    fn ticket(&self, hash: &str, now: i64) -> StoreResult<Option<Vec<u8>>> {
        let Some(v) = self.tickets.get(hash).map_err(backend("read ticket"))? else {
            return Ok(None);
        };
        Ok(split_expiry(&v)
            .filter(|(exp, _)| *exp > now)
            .map(|(_, d)| d.to_vec()))
    }

    fn take_ticket(&self, hash: &str) -> StoreResult<bool> {
        let old = self
            .tickets
            .remove(hash)
            .map_err(backend("consume ticket"))?;
        self.durable()?;
        Ok(old.is_some())
    }

    fn secret(&self, name: &str) -> StoreResult<[u8; 32]> {
        let key = format!("secret:{name}");
        if let Some(v) = self.meta.get(&key).map_err(backend("read secret"))? {
            if let Ok(arr) = <[u8; 32]>::try_from(v.as_ref()) {
                return Ok(arr);
            }
        }
        let mut fresh = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut fresh);
        // Another thread may have raced us; whoever wrote first wins and both use that value.
        let _ = self
            .meta
            .compare_and_swap(&key, None as Option<&[u8]>, Some(&fresh[..]))
            .map_err(backend("write secret"))?;
        self.durable()?;
        let v = self
            .meta
            .get(&key)
            .map_err(backend("read secret"))?
            .and_then(|v| <[u8; 32]>::try_from(v.as_ref()).ok())
            .unwrap_or(fresh);
        Ok(v)
    }

    fn create_user(&self, user: &User) -> StoreResult<bool> {
        // One gateway process holds the database (sled locks it), so a process-wide lock
        // makes check-then-write atomic against every other creation.
        let _one_at_a_time = self
            .creating
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if self.user(&user.username)?.is_some() {
            return Ok(false);
        }
        if let Some(email) = &user.email {
            if self.user_by_email(email)?.is_some() {
                return Ok(false);
            }
        }
        self.put_user(user)?;
        Ok(true)
    }

    fn put_invitation(&self, invitation: &Invitation) -> StoreResult<()> {
        self.invitations
            .insert(&invitation.id, encode("write invitation", invitation)?)
            .map_err(backend("write invitation"))?;
        self.durable()
    }

    fn invitation(&self, id: &str, now: i64) -> StoreResult<Option<Invitation>> {
        match self
            .invitations
            .get(id)
            .map_err(backend("read invitation"))?
        {
            Some(v) => {
                Ok(Some(decode::<Invitation>("read invitation", &v)?).filter(|i| i.expires > now))
            }
            None => Ok(None),
        }
    }

    fn invitations(&self) -> StoreResult<Vec<Invitation>> {
        self.invitations
            .iter()
            .values()
            .map(|v| decode("list invitations", &v.map_err(backend("list invitations"))?))
            .collect()
    }

    fn remove_invitation(&self, id: &str) -> StoreResult<bool> {
        let old = self
            .invitations
            .remove(id)
            .map_err(backend("remove invitation"))?;
        self.durable()?;
        Ok(old.is_some())
    }

    fn put_outbox(&self, id: &str, record: &[u8]) -> StoreResult<()> {
        self.outbox
            .insert(id, record)
            .map_err(backend("queue mail"))?;
        self.durable()
    }

    fn outbox(&self) -> StoreResult<Vec<(String, Vec<u8>)>> {
        self.outbox
            .iter()
            .map(|kv| {
                let (k, v) = kv.map_err(backend("read outbox"))?;
                Ok((String::from_utf8_lossy(&k).into_owned(), v.to_vec()))
            })
            .collect()
    }

    fn swap_outbox(&self, id: &str, current: &[u8], new: &[u8]) -> StoreResult<bool> {
        let swapped = self
            .outbox
            .compare_and_swap(id, Some(current), Some(new))
            .map_err(backend("reschedule mail"))?
            .is_ok();
        self.durable()?;
        Ok(swapped)
    }

    fn take_outbox(&self, id: &str) -> StoreResult<bool> {
        let old = self.outbox.remove(id).map_err(backend("dequeue mail"))?;
        self.durable()?;
        Ok(old.is_some())
    }

    fn user_sessions(&self, username: &str, now: i64) -> StoreResult<Vec<SessionRecord>> {
        self.sessions_of(username, now)
    }

    fn touch_sessions(&self, seen: &[(String, i64)]) -> StoreResult<()> {
        for (sid, at) in seen {
            // update_and_fetch writes only when the record is still there, and keeps the later
            // of two times should two writers race.
            self.sessions
                .update_and_fetch(sid.as_bytes(), |old| {
                    let old = old?;
                    let Ok(mut s) = serde_json::from_slice::<SessionRecord>(old) else {
                        return Some(old.to_vec());
                    };
                    if s.last_seen.is_some_and(|t| t >= *at) {
                        return Some(old.to_vec());
                    }
                    s.last_seen = Some(*at);
                    serde_json::to_vec(&s).ok().or_else(|| Some(old.to_vec()))
                })
                .map_err(backend("record last seen"))?;
        }
        Ok(())
    }

    fn flush(&self) -> StoreResult<()> {
        self.durable()
    }

    fn update_user(&self, user: &User) -> StoreResult<bool> {
        // The lock `create_user` takes: check-then-write is atomic against every creation
        // and update (one gateway process holds the database).
        let _one_at_a_time = self
            .creating
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if self.user_exact(&user.username)?.is_none() {
            return Ok(false);
        }
        if let Some(email) = &user.email {
            if self
                .user_by_email(email)?
                .is_some_and(|holder| holder.username != user.username)
            {
                return Ok(false);
            }
        }
        self.put_user(user)?;
        Ok(true)
    }

    fn database_id(&self) -> StoreResult<DatabaseId> {
        Ok(self.identity.read().clone())
    }
    fn slide_failure(&self, key: &str, window: i64, now: i64, keep: u32) -> StoreResult<u32> {
        // In the counters tree, so purge_expired drops a window whose newest failure is older
        // than the window (its first 12 bytes read as a counter: end, count).
        let mut count = 0;
        self.counters
            .update_and_fetch(slide_key(key), |old| {
                let mut times = old.map(parse_slide).unwrap_or_default();
                super::memory_store::slide(&mut times, window, now, keep);
                count = u32::try_from(times.len()).unwrap_or(u32::MAX);
                Some(encode_slide(&times, window))
            })
            .map_err(backend("count failure"))?;
        Ok(count)
    }

    fn failures(&self, key: &str, window: i64, now: i64) -> StoreResult<u32> {
        let v = self
            .counters
            .get(slide_key(key))
            .map_err(backend("read failures"))?;
        let n = v.map_or(0, |v| {
            parse_slide(&v)
                .iter()
                .filter(|t| **t > now - window)
                .count()
        });
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }

    fn unslide_failure(&self, key: &str, at: i64) -> StoreResult<()> {
        self.counters
            .update_and_fetch(slide_key(key), |old| {
                let old = old?;
                let mut times = parse_slide(old);
                let window = parse_counter(old)
                    .zip(times.last())
                    .map_or(0, |((end, _), last)| end - last);
                if let Some(i) = times.iter().rposition(|t| *t == at) {
                    times.remove(i);
                }
                (!times.is_empty()).then(|| encode_slide(&times, window))
            })
            .map_err(backend("take back failure"))?;
        Ok(())
    }

    fn put_ban(&self, ban: &Ban) -> StoreResult<()> {
        let tree = self.bans_tree()?;
        let new = encode("write ban", ban)?;
        // Compare-and-swap until the decision was made on what is stored: a ban written
        // meanwhile is judged again.
        loop {
            let old = tree
                .get(ban.subject.as_bytes())
                .map_err(backend("write ban"))?;
            if let Some(old) = &old {
                let stored: Option<Ban> = decode("write ban", old).ok();
                if stored.is_some_and(|stored| !stored.replaced_by(ban)) {
                    return Ok(());
                }
            }
            let swapped = tree
                .compare_and_swap(ban.subject.as_bytes(), old, Some(new.clone()))
                .map_err(backend("write ban"))?;
            if swapped.is_ok() {
                break;
            }
        }
        self.durable()
    }

    fn remove_ban(&self, subject: &str) -> StoreResult<bool> {
        let old = self
            .bans_tree()?
            .remove(subject.as_bytes())
            .map_err(backend("lift ban"))?;
        self.durable()?;
        Ok(old.is_some())
    }

    fn bans(&self, now: i64) -> StoreResult<Vec<Ban>> {
        let tree = self.bans_tree()?;
        let mut out = Vec::new();
        for item in tree.iter() {
            let (k, v) = item.map_err(backend("load bans"))?;
            let ban: Ban = decode("load bans", &v)?;
            if ban.in_force(now) {
                out.push(ban);
            } else {
                tree.remove(k).map_err(backend("drop ended ban"))?;
            }
        }
        Ok(out)
    }

    fn export_records(&self) -> StoreResult<Vec<Record>> {
        self.records()
    }

    fn import_records(&self, records: &[Record]) -> StoreResult<()> {
        dump::check_all(records)?;
        // The lock creations take: nothing else writes accounts meanwhile (and sled is held by
        // this process alone).
        let _one_at_a_time = self
            .creating
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(holds) = dump::holdings(&self.records()?) {
            return Err(StoreError::NotEmpty { holds });
        }
        for record in records {
            self.import(record)?;
        }
        self.durable()
    }
    fn keyset(&self, name: &str) -> StoreResult<Option<super::Keyset>> {
        let key = format!("keyset:{name}");
        match self.meta.get(&key).map_err(backend("read key set"))? {
            Some(v) => decode_keyset(&v).map(Some),
            None => Ok(None),
        }
    }

    fn append_audit(&self, at_ms: i64, line: &str) -> StoreResult<()> {
        const ACTION: &str = "append audit record";
        // sled's ids only grow: two records of one millisecond keep their order.
        let id = self.db.generate_id().map_err(backend(ACTION))?;
        self.audit
            .insert(audit_key(at_ms, id), line.as_bytes())
            .map_err(backend(ACTION))?;
        // Not flushed here: sled flushes within half a second and at shutdown. A flush per
        // record would double the fsyncs of every sign-in; the audit file and log have a
        // record a crash takes from the last half second.
        Ok(())
    }

    fn audit_records(&self, since_ms: i64, limit: usize) -> StoreResult<Vec<(i64, String)>> {
        const ACTION: &str = "read audit records";
        let mut out = Vec::new();
        for item in self.audit.range(audit_key(since_ms, 0)..).take(limit) {
            let (k, v) = item.map_err(backend(ACTION))?;
            out.push(decode_audit(&k, &v)?);
        }
        Ok(out)
    }

    fn swap_keyset(&self, name: &str, expected: i64, data: &[u8]) -> StoreResult<bool> {
        const ACTION: &str = "write key set";
        let key = format!("keyset:{name}");
        let current = self.meta.get(&key).map_err(backend(ACTION))?;
        let stored = match &current {
            Some(v) => decode_keyset(v)?.version,
            None => 0,
        };
        if stored != expected {
            return Ok(false);
        }
        let mut new = (expected + 1).to_be_bytes().to_vec();
        new.extend_from_slice(data);
        // The compare is on the whole stored value, so a write between the read and here
        // (another thread) makes this one lose.
        let swapped = self
            .meta
            .compare_and_swap(&key, current, Some(new))
            .map_err(backend(ACTION))?
            .is_ok();
        if swapped {
            self.durable()?;
        }
        Ok(swapped)
    }
}

/// The key of an audit record: its time (unix ms, sign bit flipped so every `i64` sorts in
/// order as bytes), then a unique id, both big-endian.
fn audit_key(at_ms: i64, id: u64) -> [u8; 16] {
    let mut key = [0u8; 16];
    #[allow(clippy::cast_sign_loss)] // the bit pattern, reordered by the flipped sign bit
    let time = (at_ms as u64) ^ (1 << 63);
    key[..8].copy_from_slice(&time.to_be_bytes());
    key[8..].copy_from_slice(&id.to_be_bytes());
    key
}

/// An audit record's time and line, from its key and value.
fn decode_audit(k: &[u8], v: &[u8]) -> StoreResult<(i64, String)> {
    const ACTION: &str = "read audit records";
    let time = k
        .first_chunk::<8>()
        .ok_or_else(|| StoreError::backend(ACTION, "an audit key is shorter than 16 bytes"))?;
    #[allow(clippy::cast_possible_wrap)] // undoes audit_key's reordering
    let at_ms = (u64::from_be_bytes(*time) ^ (1 << 63)) as i64;
    let line = String::from_utf8(v.to_vec())
        .map_err(|_| StoreError::backend(ACTION, "an audit record is not UTF-8"))?;
    Ok((at_ms, line))
}

/// A stored key set: its version (8 bytes, big-endian), then its data.
fn decode_keyset(v: &[u8]) -> StoreResult<super::Keyset> {
    let Some((version, data)) = v.split_first_chunk::<8>() else {
        return Err(StoreError::backend(
            "read key set",
            "shorter than its version",
        ));
    };
    Ok(super::Keyset {
        version: i64::from_be_bytes(*version),
        data: data.to_vec(),
    })
}

impl SledStore {
    /// Everything stored, as [`Store::export_records`] returns it.
    fn records(&self) -> StoreResult<Vec<Record>> {
        const ACTION: &str = "export records";
        let identity = self.identity.read().clone();
        let mut out = vec![Record::DatabaseId {
            id: identity.id,
            adopted_ms: identity.adopted_ms,
        }];
        let pairs = |tree: &sled::Tree| -> StoreResult<Vec<(String, sled::IVec)>> {
            tree.iter()
                .map(|kv| {
                    let (k, v) = kv.map_err(backend(ACTION))?;
                    Ok((String::from_utf8_lossy(&k).into_owned(), v))
                })
                .collect()
        };
        for (key, value) in pairs(&self.meta)? {
            if let Some(name) = key.strip_prefix("secret:") {
                out.push(Record::Secret {
                    name: name.to_string(),
                    value: Bytes(value.to_vec()),
                });
            } else if let Some(name) = key.strip_prefix("keyset:") {
                out.push(Record::Keyset {
                    name: name.to_string(),
                    data: Bytes(decode_keyset(&value)?.data),
                });
            }
        }
        for item in self.audit.iter() {
            let (k, v) = item.map_err(backend("export records"))?;
            let (at_ms, line) = decode_audit(&k, &v)?;
            out.push(Record::Audit { at_ms, line });
        }
        for (_, v) in pairs(&self.users)? {
            out.push(Record::User(decode(ACTION, &v)?));
        }
        for (_, v) in pairs(&self.devices)? {
            out.push(Record::Device(decode(ACTION, &v)?));
        }
        for (id, v) in pairs(&self.executions)? {
            let (expires, state) = expiring(&v)?;
            out.push(Record::Execution {
                id,
                expires,
                state: Bytes(state.to_vec()),
            });
        }
        for (_, v) in pairs(&self.sessions)? {
            out.push(Record::Session(decode(ACTION, &v)?));
        }
        for (sid, v) in pairs(&self.revoked)? {
            let (expires, _) = expiring(&v)?;
            out.push(Record::Revocation { sid, expires });
        }
        for (username, v) in pairs(&self.user_revoked)? {
            let (since_ms, _) = expiring(&v)?;
            out.push(Record::UserRevocation { username, since_ms });
        }
        for (key, v) in pairs(&self.counters)? {
            let (end, count) = parse_counter(&v)
                .ok_or_else(|| StoreError::backend(ACTION, "a counter of fewer than 12 bytes"))?;
            match key.strip_prefix(SLIDE_PREFIX) {
                Some(key) => {
                    let times = parse_slide(&v);
                    let window = times.last().map_or(0, |last| end - last);
                    out.push(Record::FailureWindow {
                        key: key.to_string(),
                        window,
                        times,
                    });
                }
                None => out.push(Record::Counter {
                    key,
                    window_end: end,
                    count,
                }),
            }
        }
        for (hash, v) in pairs(&self.tickets)? {
            let (expires, data) = expiring(&v)?;
            out.push(Record::Ticket {
                hash,
                expires,
                data: Bytes(data.to_vec()),
            });
        }
        for (_, v) in pairs(&self.invitations)? {
            out.push(Record::Invitation(decode(ACTION, &v)?));
        }
        for (id, v) in pairs(&self.outbox)? {
            out.push(Record::Outbox {
                id,
                record: Bytes(v.to_vec()),
            });
        }
        for (_, v) in pairs(&self.bans_tree()?)? {
            out.push(Record::Ban(decode(ACTION, &v)?));
        }
        dump::sort(&mut out);
        Ok(out)
    }

    /// Writes one exported record back, as the trait's writes would have left it (not yet
    /// durable: [`Store::import_records`] flushes once at the end).
    fn import(&self, record: &Record) -> StoreResult<()> {
        const ACTION: &str = "import records";
        let put = |tree: &sled::Tree, key: &[u8], value: Vec<u8>| {
            tree.insert(key, value).map(|_| ()).map_err(backend(ACTION))
        };
        match record {
            Record::DatabaseId { id, adopted_ms } => {
                put(
                    &self.meta,
                    integrity::ID_KEY.as_bytes(),
                    id.as_bytes().to_vec(),
                )?;
                match adopted_ms {
                    Some(t) => put(
                        &self.meta,
                        integrity::ADOPTED_KEY.as_bytes(),
                        t.to_be_bytes().to_vec(),
                    )?,
                    None => {
                        self.meta
                            .remove(integrity::ADOPTED_KEY)
                            .map_err(backend(ACTION))?;
                    }
                }
                self.recorder.rebind(id);
                *self.identity.write() = DatabaseId {
                    id: id.clone(),
                    adopted_ms: *adopted_ms,
                };
            }
            Record::Secret { name, value } => put(
                &self.meta,
                format!("secret:{name}").as_bytes(),
                value.0.clone(),
            )?,
            Record::Keyset { name, data } => {
                let mut stored = 1i64.to_be_bytes().to_vec();
                stored.extend_from_slice(&data.0);
                put(&self.meta, format!("keyset:{name}").as_bytes(), stored)?;
            }
            Record::Audit { at_ms, line } => {
                let id = self.db.generate_id().map_err(backend(ACTION))?;
                put(
                    &self.audit,
                    &audit_key(*at_ms, id),
                    line.as_bytes().to_vec(),
                )?;
            }
            Record::User(user) => {
                if let Some(email) = &user.email {
                    put(
                        &self.emails,
                        email_key(email).as_bytes(),
                        user.username.as_bytes().to_vec(),
                    )?;
                }
                put(&self.users, user.username.as_bytes(), encode(ACTION, user)?)?;
                self.index_legacy_name(&user.username)?;
            }
            Record::Device(d) => put(
                &self.devices,
                device_key(&d.username, &d.id).as_bytes(),
                encode(ACTION, d)?,
            )?,
            Record::Execution { id, expires, state } => put(
                &self.executions,
                id.as_bytes(),
                with_expiry(*expires, &state.0),
            )?,
            Record::Session(s) => {
                put(&self.sessions, s.sid.as_bytes(), encode(ACTION, s)?)?;
                self.index_session(s)?;
            }
            Record::Revocation { sid, expires } => {
                put(
                    &self.revoked,
                    sid.as_bytes(),
                    expires.to_be_bytes().to_vec(),
                )?;
            }
            Record::UserRevocation { username, since_ms } => put(
                &self.user_revoked,
                username.as_bytes(),
                since_ms.to_be_bytes().to_vec(),
            )?,
            Record::Counter {
                key,
                window_end,
                count,
            } => {
                let mut v = window_end.to_be_bytes().to_vec();
                v.extend_from_slice(&count.to_be_bytes());
                put(&self.counters, key.as_bytes(), v)?;
            }
            Record::FailureWindow { key, window, times } => put(
                &self.counters,
                slide_key(key).as_bytes(),
                encode_slide(times, *window),
            )?,
            Record::Ticket {
                hash,
                expires,
                data,
            } => put(
                &self.tickets,
                hash.as_bytes(),
                with_expiry(*expires, &data.0),
            )?,
            Record::Invitation(i) => {
                put(&self.invitations, i.id.as_bytes(), encode(ACTION, i)?)?;
            }
            Record::Outbox { id, record } => put(&self.outbox, id.as_bytes(), record.0.clone())?,
            Record::Ban(b) => put(&self.bans_tree()?, b.subject.as_bytes(), encode(ACTION, b)?)?,
        }
        Ok(())
    }

    /// The bans, by subject (opened on use: sled keeps opened trees).
    fn bans_tree(&self) -> StoreResult<sled::Tree> {
        self.db.open_tree("bans").map_err(backend("open tree"))
    }
}

/// A value's expiry and payload, or an error naming a value too short to hold one.
fn expiring(v: &[u8]) -> StoreResult<(i64, &[u8])> {
    split_expiry(v)
        .ok_or_else(|| StoreError::backend("export records", "a record shorter than its expiry"))
}

/// Where a sliding window lives in the counters tree, apart from fixed-window counters.
fn slide_key(key: &str) -> String {
    format!("{SLIDE_PREFIX}{key}")
}

/// What a sliding window's key starts with in the counters tree.
const SLIDE_PREFIX: &str = "slide\0";

/// A sliding window: its end (newest failure + window) and count, as a fixed-window counter
/// is stored, then each failure time (8 bytes, big-endian), oldest first.
fn encode_slide(times: &[i64], window: i64) -> Vec<u8> {
    let end = times.last().copied().unwrap_or(0).saturating_add(window);
    let count = u32::try_from(times.len()).unwrap_or(u32::MAX);
    let mut out = Vec::with_capacity(12 + 8 * times.len());
    out.extend_from_slice(&end.to_be_bytes());
    out.extend_from_slice(&count.to_be_bytes());
    for t in times {
        out.extend_from_slice(&t.to_be_bytes());
    }
    out
}

fn parse_slide(v: &[u8]) -> Vec<i64> {
    v.get(12..)
        .unwrap_or_default()
        .chunks_exact(8)
        .filter_map(|c| c.try_into().ok().map(i64::from_be_bytes))
        .collect()
}

impl SledStore {
    /// Removes the identity and generation, as a database written before they existed.
    #[cfg(test)]
    pub(super) fn forget_identity(&self) {
        for key in [
            integrity::ID_KEY,
            integrity::GENERATION_KEY,
            integrity::ADOPTED_KEY,
        ] {
            self.meta.remove(key).unwrap();
        }
        self.db.flush().unwrap();
    }

    /// The live sessions of `username`: the index names them, the records say the rest.
    /// Index entries whose record is gone (revoked by another path, purged) are dropped.
    fn sessions_of(&self, username: &str, now: i64) -> StoreResult<Vec<SessionRecord>> {
        let action = "list sessions";
        let prefix = device_prefix(username);
        let mut out = Vec::new();
        for item in self.user_sessions.scan_prefix(&prefix) {
            let (k, v) = item.map_err(backend(action))?;
            let alive = split_expiry(&v).is_some_and(|(exp, _)| exp > now);
            let sid = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
            let record = match self.sessions.get(&sid).map_err(backend(action))? {
                Some(r) => Some(decode::<SessionRecord>(action, &r)?),
                None => None,
            };
            match record {
                Some(r) if alive && r.username == username => out.push(r),
                Some(_) if alive => {}
                _ => {
                    self.user_sessions.remove(k).map_err(backend(action))?;
                }
            }
        }
        out.sort_by(|a, b| (a.issued, &a.sid).cmp(&(b.issued, &b.sid)));
        Ok(out)
    }
}

/// Removes the records of `tree` whose end (read by `end_of`) is at or before `now`, and
/// those whose end cannot be read at all.
fn purge_tree(
    tree: &sled::Tree,
    now: i64,
    end_of: impl Fn(&[u8]) -> Option<i64>,
) -> StoreResult<usize> {
    let mut n = 0;
    for item in tree.iter() {
        let (k, v) = item.map_err(backend("scan for expired records"))?;
        if end_of(&v).is_none_or(|end| end <= now) {
            // Compare-and-swap: a record rewritten meanwhile (a counter bumped) stays.
            let gone = tree
                .compare_and_swap(&k, Some(&v), None as Option<&[u8]>)
                .map_err(backend("purge expired records"))?;
            if gone.is_ok() {
                n += 1;
            }
        }
    }
    Ok(n)
}

fn parse_counter(v: &[u8]) -> Option<(i64, u32)> {
    let (end, rest) = v.split_first_chunk::<8>()?;
    let count = rest.first_chunk::<4>()?;
    Some((i64::from_be_bytes(*end), u32::from_be_bytes(*count)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn the_database_is_readable_by_its_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("data").join("portcullis.db");
        let _store = SledStore::open(&db).unwrap();
        for d in [dir.path().join("data"), db] {
            let mode = std::fs::metadata(&d).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o700, "{}", d.display());
        }
    }

    #[test]
    fn accounts_stored_before_names_were_canonical_are_found_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        {
            // A database as an older version left it: a key as typed, no index.
            let s = SledStore::open(&path).unwrap();
            let mut old = User::new("Carol", 0);
            old.email = Some("carol@example.com".into());
            s.users
                .insert("Carol", serde_json::to_vec(&old).unwrap())
                .unwrap();
            s.emails.insert("carol@example.com", "Carol").unwrap();
            s.meta.remove("username_index:rfc8265").unwrap();
            s.legacy_names.clear().unwrap();
            s.durable().unwrap();
        }
        // sled's flusher thread may hold the file lock a moment after the first handle is
        // dropped (a new process never sees this: the old one's exit releases it).
        let s = (0..50)
            .find_map(|_| match SledStore::open(&path) {
                Err(StoreError::Locked { .. }) => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    None
                }
                other => Some(other),
            })
            .expect("the database unlocks")
            .unwrap();
        for typed in ["carol", "CAROL", "Carol"] {
            assert_eq!(
                s.user(typed).unwrap().map(|u| u.username).as_deref(),
                Some("Carol"),
                "{typed:?}"
            );
        }
        assert_eq!(
            s.user_by_email("Carol@Example.com")
                .unwrap()
                .map(|u| u.username)
                .as_deref(),
            Some("Carol")
        );
        assert!(s.remove_user("carol").unwrap());
        assert!(s.user("Carol").unwrap().is_none());
        assert!(s.user("carol").unwrap().is_none());
        assert!(s.user_by_email("carol@example.com").unwrap().is_none());
    }
}

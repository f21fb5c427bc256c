//! Revoked sessions, held in memory so the per-request check never reads disk. The store holds
//! the durable copy; this is loaded from it at start and written through on every revocation.
//!
//! # Layout
//! A million revocations must not cost a gigabyte: each entry is a 64-bit keyed hash of the
//! sid (or username) and its time, about 12 bytes a session and 16 a user, instead of a
//! `String` (24 bytes plus a heap block) in a `HashMap`. Entries sit in a sorted array with a
//! radix index on the top bits of the hash (so a lookup is one index read and a binary search
//! of about 8–16 keys, O(1) expected, O(log n) at worst), and revocations made since the last
//! compaction sit in a small hash map beside it; the maintenance thread's
//! [`RevocationList::prune`] (and a revocation, when that map has grown large) merges them in
//! and drops expired ones.
//!
//! # Security
//! The hash is SipHash-1-3 under a random 128-bit key drawn at every start
//! ([`std::collections::hash_map::RandomState`]); nothing outside the process knows it.
//! - A revoked sid or user is always found: its hash is stored, and the same input hashes the
//!   same way. Hashing can never let a revoked token through.
//! - Two different inputs with the same hash only ever refuse *more*: a token whose sid
//!   shares a revoked sid's hash is refused, and when two revocations share a hash the entry
//!   keeps the later expiry / the later `since` (the maximum), so neither is shortened. Sids
//!   are 18 random bytes chosen by the gateway and the key is secret and per process, so such
//!   a collision cannot be aimed at a victim, and by chance it happens to a given live session
//!   with probability n / 2^64 (5·10^-14 with a million revocations): a user signed out
//!   for no reason, not an attacker let in.

use parking_lot::{RwLock, RwLockUpgradableReadGuard};
use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};

/// Revocations made since the last compaction that trigger one from the revoking call itself,
/// at least; the maintenance thread compacts every minute anyway.
const RECENT_MIN: usize = 4096;

/// The revoked sessions and users, checked on every request. Times come from the caller (the
/// [`super::SessionService`]'s clock), so this holds no clock of its own.
pub struct RevocationList {
    keys: RandomState,
    /// sid hash -> when its token expires anyway (unix seconds, saturated into `u32`; after
    /// it the entry can go).
    sids: RwLock<Table<u32>>,
    /// username hash -> tokens issued at or before this instant (unix milliseconds) are dead.
    users: RwLock<Table<i64>>,
}

impl Default for RevocationList {
    fn default() -> Self {
        Self {
            keys: RandomState::new(),
            sids: RwLock::new(Table::default()),
            users: RwLock::new(Table::default()),
        }
    }
}

impl RevocationList {
    /// A list holding `sids` (sid, expiry in unix seconds) and `users` (username, revoked
    /// up to this unix millisecond), as [`crate::store::Store::revocations`] and
    /// [`crate::store::Store::user_revocations`] return them.
    pub fn load(sids: Vec<(String, i64)>, users: Vec<(String, i64)>) -> Self {
        let list = Self::default();
        let s = sids
            .iter()
            .map(|(sid, exp)| (list.hash(sid), expiry(*exp)))
            .collect();
        let u = users
            .iter()
            .map(|(user, since)| (list.hash(user), *since))
            .collect();
        *list.sids.write() = Table::build(s);
        *list.users.write() = Table::build(u);
        list
    }

    /// Loads the revocations still in force at `now` from `store`, one record at a time
    /// ([`crate::store::Store::for_each_revocation`]): no list of a million strings is built
    /// on the way.
    ///
    /// # Errors
    /// As the store's.
    pub fn from_store(
        store: &dyn crate::store::Store,
        now: i64,
    ) -> crate::store::StoreResult<Self> {
        let list = Self::default();
        let mut s = Vec::new();
        store.for_each_revocation(now, &mut |sid, exp| s.push((list.hash(sid), expiry(exp))))?;
        let mut u = Vec::new();
        store.for_each_user_revocation(&mut |user, since| u.push((list.hash(user), since)))?;
        *list.sids.write() = Table::build(s);
        *list.users.write() = Table::build(u);
        // The store's scan and the arrays sorted on the way leave freed memory in the
        // allocator: give it back once start-up is done, through whatever the binary installed
        // for its allocator (`crate::memory`).
        crate::memory::release_soon();
        Ok(list)
    }

    /// Adds the revocations in force at `now` in `store` that this list lacks (another
    /// gateway's, heard of late); returns how many it added. Each is added under its own short
    /// lock, and one already held (with an expiry or `since` at least as late) takes only a
    /// read lock, so requests go on while a large store is read.
    ///
    /// # Errors
    /// As the store's; those read before the error are kept.
    pub fn merge_from_store(
        &self,
        store: &dyn crate::store::Store,
        now: i64,
    ) -> crate::store::StoreResult<usize> {
        let mut added = 0;
        store.for_each_revocation(now, &mut |sid, exp| {
            let (h, e) = (self.hash(sid), expiry(exp));
            if self.sids.read().get(h).is_none_or(|held| held < e) {
                self.sids.write().insert(h, e);
                added += 1;
            }
        })?;
        store.for_each_user_revocation(&mut |user, since| {
            let h = self.hash(user);
            if self.users.read().get(h).is_none_or(|held| held < since) {
                self.users.write().insert(h, since);
                added += 1;
            }
        })?;
        Ok(added)
    }

    fn hash(&self, s: &str) -> u64 {
        let mut h = self.keys.build_hasher();
        h.write(s.as_bytes());
        h.finish()
    }

    /// Refuses the session `sid` until `expires` (unix seconds), when its token dies anyway.
    pub fn revoke_sid(&self, sid: &str, expires: i64) {
        self.sids.write().insert(self.hash(sid), expiry(expires));
    }

    /// Refuses every token of `username` issued at or before `since` (unix milliseconds).
    pub fn revoke_user(&self, username: &str, since: i64) {
        self.users.write().insert(self.hash(username), since);
    }

    /// The instant (unix milliseconds) up to which `username`'s tokens are refused, if ever.
    pub fn revoked_since(&self, username: &str) -> Option<i64> {
        self.users.read().get(self.hash(username))
    }

    /// Whether a token with this sid, subject and issue time (`iat`, unix milliseconds) has
    /// been revoked.
    pub fn is_revoked(&self, sid: &str, sub: &str, iat: i64) -> bool {
        if self.sids.read().get(self.hash(sid)).is_some() {
            return true;
        }
        self.revoked_since(sub).is_some_and(|since| iat <= since)
    }

    /// Forgets revocations whose tokens have expired anyway and compacts both tables; returns
    /// how many went. Requests go on reading while the new table is built; revocations wait
    /// for it.
    pub fn prune(&self, now: i64) -> usize {
        let gone = {
            let sids = self.sids.upgradable_read();
            let (table, gone) = sids.compacted(|exp| i64::from(*exp) > now);
            if table.is_some() || gone > 0 {
                let mut w = RwLockUpgradableReadGuard::upgrade(sids);
                if let Some(t) = table {
                    *w = t;
                }
            }
            gone
        };
        let users = self.users.upgradable_read();
        if let (Some(t), _) = users.compacted(|_| true) {
            *RwLockUpgradableReadGuard::upgrade(users) = t;
        }
        gone
    }

    /// How many sessions are revoked one by one.
    pub fn len(&self) -> usize {
        self.sids.read().len()
    }

    /// Whether no session is revoked one by one.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of heap both tables hold (their arrays and maps at capacity), for tests and
    /// reports.
    pub fn heap_bytes(&self) -> usize {
        self.sids.read().heap_bytes() + self.users.read().heap_bytes()
    }
}

/// An expiry in unix seconds as stored: saturated into `u32` (good until 2106; a later one is
/// kept until then, never dropped early).
fn expiry(exp: i64) -> u32 {
    u32::try_from(exp.max(0)).unwrap_or(u32::MAX)
}

/// Hashes and their values: a sorted array with a radix index, plus recent insertions.
struct Table<V> {
    /// Sorted, without duplicates.
    keys: Box<[u64]>,
    vals: Box<[V]>,
    /// `index[b]..index[b + 1]` is where keys whose top `bits` bits are `b` sit.
    index: Box<[u32]>,
    bits: u32,
    /// Keys not in `keys`, inserted since the last compaction.
    recent: HashMap<u64, V>,
}

impl<V> Default for Table<V> {
    fn default() -> Self {
        Self {
            keys: Box::new([]),
            vals: Box::new([]),
            index: Box::new([0, 0]),
            bits: 0,
            recent: HashMap::new(),
        }
    }
}

impl<V: Copy + Ord> Table<V> {
    /// A table of `pairs` (any order; of equal keys the greatest value stays).
    fn build(mut pairs: Vec<(u64, V)>) -> Self {
        pairs.sort_unstable();
        // Sorted by key then value: keep the last (greatest value) of each key.
        pairs.reverse();
        pairs.dedup_by_key(|p| p.0);
        pairs.reverse();
        Self::from_sorted(
            pairs.iter().map(|p| p.0).collect(),
            pairs.iter().map(|p| p.1).collect(),
        )
    }

    fn from_sorted(keys: Box<[u64]>, vals: Box<[V]>) -> Self {
        // About 8-16 keys per index slot.
        let n = keys.len();
        let bits = if n < 16 { 0 } else { n.ilog2() - 3 };
        let slots = 1usize << bits;
        let mut index = Vec::with_capacity(slots + 1);
        let mut at = 0usize;
        for b in 0..slots {
            while at < n && slot(keys[at], bits) < b {
                at += 1;
            }
            index.push(at as u32);
        }
        index.push(n as u32);
        Self {
            keys,
            vals,
            index: index.into_boxed_slice(),
            bits,
            recent: HashMap::new(),
        }
    }

    fn position(&self, key: u64) -> Option<usize> {
        let b = slot(key, self.bits);
        let (lo, hi) = (self.index[b] as usize, self.index[b + 1] as usize);
        self.keys[lo..hi].binary_search(&key).ok().map(|i| lo + i)
    }

    fn get(&self, key: u64) -> Option<V> {
        match self.position(key) {
            Some(i) => Some(self.vals[i]),
            None => self.recent.get(&key).copied(),
        }
    }

    /// Records `value` for `key`, keeping the greater of it and one already there (see the
    /// module's security note).
    fn insert(&mut self, key: u64, value: V) {
        if let Some(i) = self.position(key) {
            self.vals[i] = self.vals[i].max(value);
            return;
        }
        let v = self.recent.entry(key).or_insert(value);
        *v = (*v).max(value);
        if self.recent.len() >= RECENT_MIN.max(self.keys.len() / 8) {
            if let (Some(t), _) = self.compacted(|_| true) {
                *self = t;
            }
        }
    }

    /// The table with `recent` merged in and the entries `keep` refuses dropped, when that
    /// changes anything; and how many were dropped.
    fn compacted(&self, keep: impl Fn(&V) -> bool) -> (Option<Self>, usize) {
        let dropped = self.vals.iter().filter(|v| !keep(v)).count()
            + self.recent.values().filter(|v| !keep(v)).count();
        if dropped == 0 && self.recent.is_empty() {
            return (None, 0);
        }
        let mut recent: Vec<(u64, V)> = self
            .recent
            .iter()
            .filter(|(_, v)| keep(v))
            .map(|(k, v)| (*k, *v))
            .collect();
        recent.sort_unstable();
        let total = self.vals.iter().filter(|v| keep(v)).count() + recent.len();
        let mut keys = Vec::with_capacity(total);
        let mut vals = Vec::with_capacity(total);
        let mut old = self
            .keys
            .iter()
            .zip(self.vals.iter())
            .filter(|(_, v)| keep(v))
            .peekable();
        let mut new = recent.into_iter().peekable();
        loop {
            // `recent` holds no key of `keys`, so the two never tie.
            let take_old = match (old.peek(), new.peek()) {
                (Some((k, _)), Some((n, _))) => **k < *n,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => break,
            };
            let (k, v) = if take_old {
                old.next().map(|(k, v)| (*k, *v))
            } else {
                new.next()
            }
            .expect("peeked");
            keys.push(k);
            vals.push(v);
        }
        (
            Some(Self::from_sorted(
                keys.into_boxed_slice(),
                vals.into_boxed_slice(),
            )),
            dropped,
        )
    }

    fn len(&self) -> usize {
        self.keys.len() + self.recent.len()
    }

    fn heap_bytes(&self) -> usize {
        self.keys.len() * 8
            + self.vals.len() * std::mem::size_of::<V>()
            + self.index.len() * 4
            + self.recent.capacity() * (8 + std::mem::size_of::<V>() + 1)
    }
}

/// The index slot of `key`: its top `bits` bits.
fn slot(key: u64, bits: u32) -> usize {
    key.checked_shr(64 - bits).unwrap_or(0) as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn revoked_sid_and_user_are_refused_until_pruned() {
        let r = RevocationList::default();
        r.revoke_sid("s1", 100);
        r.revoke_user("bob", 50_000);
        assert!(r.is_revoked("s1", "alice", 10_000));
        assert!(r.is_revoked("s2", "bob", 50_000));
        assert!(!r.is_revoked("s2", "bob", 50_001));
        assert_eq!(r.prune(100), 1);
        assert!(!r.is_revoked("s1", "alice", 10_000));
    }

    fn sid(i: u64) -> String {
        use base64::Engine;
        let mut b = [0u8; 18];
        b[..8].copy_from_slice(&i.to_le_bytes());
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
    }

    /// Near spellings of a revoked sid or user are other sessions and users: only the exact
    /// bytes are refused (a hash of a normalised form would refuse or miss the wrong ones).
    #[test]
    fn only_the_exact_sid_and_user_are_refused() {
        let r = RevocationList::default();
        let revoked = "AbCdEfGhIjKlMnOpQrStUvWx";
        r.revoke_sid(revoked, i64::MAX);
        r.revoke_user("Bob", 1_000);
        for (sid, refused) in [
            (revoked, true),
            ("abcdefghijklmnopqrstuvwx", false),
            ("ABCDEFGHIJKLMNOPQRSTUVWX", false),
            ("AbCdEfGhIjKlMnOpQrStUvWx ", false),
            (" AbCdEfGhIjKlMnOpQrStUvWx", false),
            ("AbCdEfGhIjKlMnOpQrStUvWx=", false),
            ("AbCdEfGhIjKlMnOpQrStUvW", false),
            ("AbCdEfGhIjKlMnOpQrStUvWx\0", false),
            ("", false),
        ] {
            assert_eq!(r.is_revoked(sid, "alice", 0), refused, "sid {sid:?}");
        }
        for (user, refused) in [
            ("Bob", true),
            ("bob", false),
            ("BOB", false),
            ("Bob ", false),
            ("", false),
        ] {
            assert_eq!(r.is_revoked("x", user, 1_000), refused, "user {user:?}");
            assert_eq!(r.revoked_since(user).is_some(), refused, "user {user:?}");
        }
        assert!(
            !r.is_revoked("x", "Bob", 1_001),
            "issued after the revocation"
        );
    }

    /// Against a plain map of strings, through loading, revocations one by one (enough to
    /// trigger compactions from the revoking call), re-revocations with other times and
    /// pruning: the same answers for every sid and user, revoked or not.
    #[test]
    fn answers_as_a_map_of_strings_does_through_loads_compactions_and_prunes() {
        let mut sids: HashMap<String, i64> = HashMap::new();
        let mut users: HashMap<String, i64> = HashMap::new();
        let loaded: Vec<(String, i64)> = (0..20_000)
            .map(|i| (sid(i), 1_000 + (i as i64 % 500)))
            .collect();
        let loaded_users: Vec<(String, i64)> =
            (0..5_000).map(|i| (format!("user{i}"), i as i64)).collect();
        sids.extend(loaded.iter().cloned());
        users.extend(loaded_users.iter().cloned());
        let r = RevocationList::load(loaded, loaded_users);
        for i in 20_000..40_000u64 {
            r.revoke_sid(&sid(i), 1_000 + (i as i64 % 700));
            sids.insert(sid(i), 1_000 + (i as i64 % 700));
        }
        // Revoked again with a later expiry: the later one holds.
        for i in (0..40_000u64).step_by(7) {
            r.revoke_sid(&sid(i), 5_000);
            sids.insert(sid(i), 5_000);
        }
        for i in 4_000..9_000u64 {
            r.revoke_user(&format!("user{i}"), 10_000 + i as i64);
            users.insert(format!("user{i}"), 10_000 + i as i64);
        }
        let check = |r: &RevocationList, sids: &HashMap<String, i64>, what: &str| {
            assert_eq!(r.len(), sids.len(), "{what}");
            for i in 0..45_000u64 {
                assert_eq!(
                    r.is_revoked(&sid(i), "nobody", 0),
                    sids.contains_key(&sid(i)),
                    "{what}: sid {i}"
                );
            }
            for i in 0..10_000u64 {
                let u = format!("user{i}");
                assert_eq!(r.revoked_since(&u), users.get(&u).copied(), "{what}: {u}");
            }
        };
        check(&r, &sids, "after revoking");
        let gone = r.prune(1_300);
        let before = sids.len();
        sids.retain(|_, exp| *exp > 1_300);
        assert_eq!(gone, before - sids.len());
        check(&r, &sids, "after pruning");
        assert_eq!(r.prune(1_300), 0);
        r.revoke_sid(&sid(1), 9_000);
        sids.insert(sid(1), 9_000);
        check(&r, &sids, "revoked after pruning");
    }

    /// Through the gateway's own service over sled: a revoked session is refused by the next
    /// request, and after a restart that loads the compact list from the store (among many
    /// other revocations), still; the user's other session stands throughout.
    #[test]
    fn a_revoked_session_is_refused_at_once_and_after_a_restart() {
        use crate::session::{Factors, NewSession, SessionError, SessionService};
        use crate::store::{SledStore, Store};
        use std::sync::Arc;
        let dir = tempfile::tempdir().unwrap();
        let cfg = crate::config::SessionConfig {
            cookie_name: "s".into(),
            lifetime: std::time::Duration::from_secs(3600),
            cookie_domain: None,
            issuer: "portcullis".into(),
            flow_lifetime: std::time::Duration::from_secs(60),
            max_flows_per_client: crate::config::DEFAULT_MAX_FLOWS_PER_CLIENT,
        };
        let open = || -> (Arc<dyn Store>, SessionService) {
            let store: Arc<dyn Store> = Arc::new(SledStore::open(&dir.path().join("db")).unwrap());
            let service =
                SessionService::new(&cfg, dir.path().join("keys.json"), store.clone()).unwrap();
            (store, service)
        };
        let (store, service) = open();
        for i in 0..5_000 {
            store.revoke_session(&sid(i), i64::from(u32::MAX)).unwrap();
        }
        let alice = || NewSession {
            username: "alice".into(),
            name: "Alice".into(),
            email: "a@example.com".into(),
            groups: vec![],
            amr: vec!["password".into()],
            factors: Factors::PASSWORD,
            flows: vec!["f".into()],
            lifetime_secs: 600,
        };
        let (gone, claims) = service.issue(alice()).unwrap();
        let (kept, _) = service.issue(alice()).unwrap();
        assert!(service.verify(&gone).is_ok());
        service.revoke(&claims).unwrap();
        assert!(matches!(service.verify(&gone), Err(SessionError::Revoked)));
        assert!(service.verify(&kept).is_ok());
        drop(service);
        drop(store);
        let (_store, restarted) = open();
        assert!(matches!(
            restarted.verify(&gone),
            Err(SessionError::Revoked)
        ));
        assert!(restarted.verify(&kept).is_ok());
        assert_eq!(restarted.prune(), 0);
        assert!(restarted.is_revoked(&sid(4_999), "bob", 0));
        assert!(!restarted.is_revoked(&sid(5_000), "bob", 0));
    }

    /// The compact list: a million revoked sessions and a million revoked users in 30 MB, where
    /// maps of strings took about 200 MB, and a lookup searches one short slot of the index.
    #[test]
    fn a_million_revocations_are_held_compactly_and_looked_up_fast() {
        let n = 1_000_000u64;
        let r = RevocationList::load(
            (0..n).map(|i| (sid(i), 2_000_000_000)).collect(),
            (0..n).map(|i| (format!("user{i:07}"), 1_000)).collect(),
        );
        r.revoke_sid(&sid(n), 2_000_000_000);
        let bytes = r.heap_bytes();
        assert!(
            bytes < 30 * 1024 * 1024,
            "{bytes} bytes for a million of each"
        );
        // A lookup is one index read and a binary search of one slot: no slot is long.
        let widest = {
            let t = r.sids.read();
            t.index.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0)
        };
        assert!(widest <= 64, "an index slot holds {widest} keys");
        let probes: Vec<(String, String)> = (0..200_000u64)
            .map(|i| (sid(i * 10), format!("user{:07}", i % n)))
            .collect();
        let t = Instant::now();
        // The first half revoked, the rest not; users all revoked, tokens issued after.
        let hits = probes
            .iter()
            .filter(|(s, u)| r.is_revoked(s, u, 2_000))
            .count();
        let per = t.elapsed() / probes.len() as u32;
        assert_eq!(hits as u64, n / 10 + 1);
        // Printed, not asserted: test builds are unoptimised and the machine is shared.
        eprintln!(
            "{bytes} bytes; {per:?} per is_revoked (sid and user) at 1M each; widest slot {widest}"
        );
    }
}

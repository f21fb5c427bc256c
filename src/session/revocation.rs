//! Revoked sessions, held in memory so the per-request check never reads disk. The store holds
//! the durable copy; this is loaded from it at start and written through on every revocation.

use parking_lot::RwLock;
use std::collections::HashMap;

/// The revoked sessions and users, checked on every request. Times come from the caller (the
/// [`super::SessionService`]'s clock), so this holds no clock of its own.
#[derive(Default)]
pub struct RevocationList {
    /// sid -> when its token expires anyway (after which the entry can go).
    sids: RwLock<HashMap<String, i64>>,
    /// username -> tokens issued at or before this instant (milliseconds) are dead.
    users: RwLock<HashMap<String, i64>>,
}

impl RevocationList {
    /// A list holding `sids` (sid, expiry in unix seconds) and `users` (username, revoked
    /// up to this unix millisecond), as [`crate::store::Store::revocations`] and
    /// [`crate::store::Store::user_revocations`] return them.
    pub fn load(sids: Vec<(String, i64)>, users: Vec<(String, i64)>) -> Self {
        Self {
            sids: RwLock::new(sids.into_iter().collect()),
            users: RwLock::new(users.into_iter().collect()),
        }
    }

    /// Refuses the session `sid` until `expires` (unix seconds), when its token dies anyway.
    pub fn revoke_sid(&self, sid: &str, expires: i64) {
        self.sids.write().insert(sid.to_string(), expires);
    }

    /// Refuses every token of `username` issued at or before `since` (unix milliseconds).
    pub fn revoke_user(&self, username: &str, since: i64) {
        self.users.write().insert(username.to_string(), since);
    }

    /// The instant (unix milliseconds) up to which `username`'s tokens are refused, if ever.
    pub fn revoked_since(&self, username: &str) -> Option<i64> {
        self.users.read().get(username).copied()
    }

    /// Whether a token with this sid, subject and issue time (`iat`, unix milliseconds) has
    /// been revoked.
    pub fn is_revoked(&self, sid: &str, sub: &str, iat: i64) -> bool {
        if self.sids.read().contains_key(sid) {
            return true;
        }
        self.users
            .read()
            .get(sub)
            .is_some_and(|&since| iat <= since)
    }

    /// Forgets revocations whose tokens have expired anyway; returns how many.
    pub fn prune(&self, now: i64) -> usize {
        let mut sids = self.sids.write();
        let before = sids.len();
        sids.retain(|_, exp| *exp > now);
        before - sids.len()
    }

    /// How many sessions are revoked one by one.
    pub fn len(&self) -> usize {
        self.sids.read().len()
    }

    /// Whether no session is revoked one by one.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}

//! Where a session came from and when it was last seen. The per-request path only stores a
//! number into a cell it already holds; the store hears about it every few minutes.

use parking_lot::RwLock;
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

/// Where a session is issued: shown in the user's list of sessions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Seen {
    /// The client address, as the gateway trusts it.
    pub client: String,
    /// The browser, shortened ([`super::browser::label`]).
    pub browser: String,
}

/// One session's last-seen time (unix seconds) and the time last written to the store.
pub(super) struct SeenAt {
    at: AtomicI64,
    written: AtomicI64,
    /// The session's expiry: after it the cell is dropped.
    exp: i64,
}

impl SeenAt {
    /// Records a request at `now`. A relaxed load and, at most once a second, a store.
    pub(super) fn touch(&self, now: i64) {
        if self.at.load(Ordering::Relaxed) < now {
            self.at.store(now, Ordering::Relaxed);
        }
    }
}

/// Every session's [`SeenAt`], by sid. Written only when a token passes the full check for the
/// first time (already under a lock) and by the maintenance thread.
#[derive(Default)]
pub(super) struct LastSeen(RwLock<HashMap<Box<str>, Arc<SeenAt>>>);

impl LastSeen {
    /// The cell of session `sid` (expiring at `exp`), made on first use.
    pub(super) fn cell(&self, sid: &str, exp: i64) -> Arc<SeenAt> {
        if let Some(c) = self.0.read().get(sid) {
            return c.clone();
        }
        self.0
            .write()
            .entry(sid.into())
            .or_insert_with(|| {
                Arc::new(SeenAt {
                    at: AtomicI64::new(0),
                    written: AtomicI64::new(0),
                    exp,
                })
            })
            .clone()
    }

    /// When `sid` was last seen since the gateway started, if it was.
    pub(super) fn at(&self, sid: &str) -> Option<i64> {
        let at = self.0.read().get(sid)?.at.load(Ordering::Relaxed);
        (at > 0).then_some(at)
    }

    /// The (sid, time) of live sessions seen since their time was last written.
    pub(super) fn moved(&self, now: i64) -> Vec<(String, i64)> {
        self.0
            .read()
            .iter()
            .filter(|(_, c)| c.exp > now)
            .filter_map(|(sid, c)| {
                let at = c.at.load(Ordering::Relaxed);
                (at > c.written.load(Ordering::Relaxed)).then(|| (sid.to_string(), at))
            })
            .collect()
    }

    /// Marks these times written.
    pub(super) fn written(&self, done: &[(String, i64)]) {
        let map = self.0.read();
        for (sid, at) in done {
            if let Some(c) = map.get(sid.as_str()) {
                c.written.fetch_max(*at, Ordering::Relaxed);
            }
        }
    }

    /// Drops the cells of sessions that have expired by `now`.
    pub(super) fn prune(&self, now: i64) {
        self.0.write().retain(|_, c| c.exp > now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_time_is_handed_out_once_until_it_moves_and_expired_cells_go() {
        let seen = LastSeen::default();
        let a = seen.cell("a", 1_000);
        assert!(Arc::ptr_eq(&a, &seen.cell("a", 1_000)), "one cell per sid");
        assert_eq!(seen.at("a"), None, "not seen yet");
        a.touch(100);
        a.touch(90);
        assert_eq!(seen.at("a"), Some(100), "time never goes back");
        let moved = seen.moved(100);
        assert_eq!(moved, [("a".to_string(), 100)]);
        seen.written(&moved);
        assert!(seen.moved(100).is_empty(), "written once");
        a.touch(200);
        assert_eq!(seen.moved(200), [("a".to_string(), 200)]);
        assert!(
            seen.moved(1_000).is_empty(),
            "an expired session is not written"
        );
        seen.prune(1_000);
        assert_eq!(seen.at("a"), None);
    }
}

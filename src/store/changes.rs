//! The change feed: what other gateways on the same database changed in the state each one
//! holds in memory (revocations, bans), so every replica refuses a revoked session or a banned
//! client within a second while its per-request checks never query the database.
//!
//! A backend that several processes share (PostgreSQL) implements [`Store::watch_changes`];
//! sled and the in-memory store are one process's own, so their feed is [`ChangeFeed::silent`]:
//! that process made every change itself and applied it as it made it.
//!
//! [`Store::watch_changes`]: super::Store::watch_changes

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// A change to state held in memory, made by some gateway (possibly this one: applying one's
/// own change again is harmless, as every change below only ever adds or reloads).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Change {
    /// The session `sid` was revoked until `expires` (unix seconds).
    Session {
        /// The session id (not a token: it signs nothing and opens nothing).
        sid: String,
        /// When its token dies anyway (unix seconds).
        expires: i64,
    },
    /// Every session of `username` issued at or before `since_ms` (unix milliseconds) was
    /// revoked: a sign-out everywhere, a password change, a disabled or removed account.
    User {
        /// The account's stored name.
        username: String,
        /// The revocation's instant (unix milliseconds).
        since_ms: i64,
    },
    /// A ban was added, changed or lifted: the bans are to be read again from the store.
    Bans,
    /// Changes may have been missed (the feed was down, or a notice could not be read):
    /// revocations and bans are to be read again from the store.
    Resync,
}

impl Change {
    /// The change as a notice's text (JSON), at most `limit` bytes: a change that does not fit
    /// is sent as [`Change::Resync`], which every listener answers by reading the store.
    #[must_use]
    pub fn encode(&self, limit: usize) -> String {
        let text = serde_json::to_string(self).unwrap_or_default();
        if text.is_empty() || text.len() > limit {
            return r#"{"kind":"resync"}"#.to_string();
        }
        text
    }

    /// The change a notice's text says; [`Change::Resync`] for text that says none (sent by
    /// another version, or garbled): reading the store again is always correct.
    #[must_use]
    pub fn decode(text: &str) -> Self {
        serde_json::from_str(text).unwrap_or(Change::Resync)
    }
}

/// What applies changes heard on the feed to the memory of this process.
pub trait ChangeSink: Send + Sync + 'static {
    /// Applies `changes` (heard together, in order). Called from a thread of the feed's own,
    /// never from a request; it may read the store (a [`Change::Resync`] does).
    fn apply(&self, changes: &[Change]);
}

/// The state of a running feed, shared between its handle and its listener.
#[derive(Debug, Default)]
pub(crate) struct FeedState {
    stopped: AtomicBool,
    listening: AtomicBool,
    connects: AtomicU64,
    /// Tests: refuse to (re)connect, so the polling fallback is all there is.
    hold_reconnects: AtomicBool,
    wake: tokio::sync::Notify,
}

impl FeedState {
    /// Whether the handle was dropped: the listener ends.
    pub(crate) fn stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    /// Records whether the listener is connected and listening now; each time it starts
    /// listening counts one (re)connection.
    pub(crate) fn set_listening(&self, on: bool) {
        if on {
            self.connects.fetch_add(1, Ordering::SeqCst);
        }
        self.listening.store(on, Ordering::SeqCst);
    }

    /// Whether (re)connecting is held off (tests only ever set it).
    pub(crate) fn reconnects_held(&self) -> bool {
        self.hold_reconnects.load(Ordering::SeqCst)
    }

    /// Waits until the handle is dropped (returns at once if it was).
    pub(crate) async fn until_stopped(&self) {
        while !self.stopped() {
            self.wake.notified().await;
        }
    }
}

/// A running change feed; dropping it stops the listener. Keep it as long as the gateway runs.
#[derive(Debug)]
#[must_use = "dropping the feed stops it"]
pub struct ChangeFeed {
    state: Option<Arc<FeedState>>,
}

impl ChangeFeed {
    /// The feed of a store no other process writes: nothing to hear.
    pub fn silent() -> Self {
        Self { state: None }
    }

    /// The handle of a feed whose listener watches `state`.
    pub(crate) fn running(state: Arc<FeedState>) -> Self {
        Self { state: Some(state) }
    }

    /// Whether the listener is connected and listening now (false for a silent feed).
    #[must_use]
    pub fn listening(&self) -> bool {
        self.state
            .as_ref()
            .is_some_and(|s| s.listening.load(Ordering::SeqCst))
    }

    /// How many times the listener has started listening (its first connection included).
    #[must_use]
    pub fn connects(&self) -> u64 {
        self.state
            .as_ref()
            .map_or(0, |s| s.connects.load(Ordering::SeqCst))
    }

    /// Tests: while `held`, the listener does not (re)connect, and only polls.
    #[doc(hidden)]
    pub fn hold_reconnects(&self, held: bool) {
        if let Some(s) = &self.state {
            s.hold_reconnects.store(held, Ordering::SeqCst);
        }
    }
}

impl Drop for ChangeFeed {
    fn drop(&mut self) {
        if let Some(s) = &self.state {
            s.stopped.store(true, Ordering::SeqCst);
            s.wake.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Change;

    /// What a listener makes of every notice: the change sent, or a reload for anything else.
    #[test]
    fn notices_decode_to_the_change_sent_and_anything_else_to_a_reload() {
        let sent = [
            Change::Session {
                sid: "AbC-_9".into(),
                expires: 1_700_000_000,
            },
            Change::User {
                username: "Zoë \"x\"\n".into(),
                since_ms: 1_700_000_000_123,
            },
            Change::Bans,
            Change::Resync,
        ];
        for change in sent {
            assert_eq!(Change::decode(&change.encode(7_999)), change);
        }
        for garbled in [
            "",
            "{",
            "null",
            r#"{"kind":"session"}"#,
            r#"{"kind":"session","sid":"s","expires":"soon"}"#,
            r#"{"kind":"drop_everything"}"#,
            r#"{"kind":"user","username":7,"since_ms":1}"#,
        ] {
            assert_eq!(Change::decode(garbled), Change::Resync, "{garbled:?}");
        }
        // Too long for a notice: the listeners reload instead of missing it.
        let long = Change::User {
            username: "x".repeat(9_000),
            since_ms: 1,
        };
        assert_eq!(Change::decode(&long.encode(7_999)), Change::Resync);
    }
}

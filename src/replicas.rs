//! Several gateways on one database: what one replica revokes or bans, every other one
//! refuses within a second, while signed-in requests and ban checks still read memory only.
//!
//! The store's change feed ([`Store::watch_changes`]) hears every replica's revocations and
//! ban changes; [`Replica`] applies them to this gateway's [`SessionService`] (revoked sessions
//! and users, in memory) and [`Regulator`] (bans, read again from the store). A disabled or
//! removed account is refused the same way: disabling revokes its sessions, and that
//! revocation is what every replica hears. On sled the feed is silent: one process made every
//! change itself.
//!
//! # Security
//! A notice only ever adds a revocation or makes the replica read the store again: a forged or
//! garbled one cannot lift a revocation or a ban that the store still holds (a revocation
//! keeps its latest expiry and `since`). `NOTIFY` needs no privilege on the tables, only a
//! connection to the database: a role that may connect could sign users out of the replicas'
//! memory (until a restart), never let anyone in; grant `CONNECT` on the gateway's database
//! to the gateway's role only. Nothing heard is logged but counts.

use crate::regulation::Regulator;
use crate::session::SessionService;
use crate::store::{Change, ChangeFeed, ChangeSink, Store, StoreError};
use std::sync::Arc;

/// Applies the change feed to one gateway's memory.
pub struct Replica {
    sessions: Arc<SessionService>,
    regulator: Arc<Regulator>,
}

impl Replica {
    /// Starts hearing `store`'s changes and applying them to `sessions` and `regulator`; keep
    /// the returned feed for as long as the gateway runs.
    ///
    /// # Errors
    /// The store's, when its feed cannot start.
    pub fn watch(
        store: &dyn Store,
        sessions: Arc<SessionService>,
        regulator: Arc<Regulator>,
    ) -> Result<ChangeFeed, StoreError> {
        store.watch_changes(Arc::new(Self {
            sessions,
            regulator,
        }))
    }
}

impl ChangeSink for Replica {
    fn apply(&self, changes: &[Change]) {
        for change in changes {
            match change {
                Change::Session { sid, expires } => self.sessions.heard_revoked_sid(sid, *expires),
                Change::User { username, since_ms } => {
                    self.sessions.heard_revoked_user(username, *since_ms);
                }
                Change::Bans => {
                    if let Err(e) = self.regulator.reload_bans() {
                        tracing::warn!(error = %e, "reading the bans another gateway changed failed; the next change or reload tries again");
                    }
                }
                Change::Resync => {
                    match self.sessions.reload_revocations() {
                        Ok(added) => tracing::debug!(added, "revocations read again"),
                        Err(e) => {
                            tracing::warn!(error = %e, "reading the revocations again failed; the next reload tries again")
                        }
                    }
                    if let Err(e) = self.regulator.reload_bans() {
                        tracing::warn!(error = %e, "reading the bans again failed; the next reload tries again");
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;

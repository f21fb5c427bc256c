//! The audit log: one structured line per change a user or operator makes to an account (a
//! device renamed or removed, sessions signed out), under its own tracing target so it can be
//! kept apart from the rest (`PORTCULLIS_LOG=portcullis::audit=info`).
//!
//! # Security
//! Lines name the account, the action, what it acted on (a device or session id, never its
//! secret, address or token) and the client; never a code, password, CSRF token or cookie.

/// The tracing target of audit lines.
pub const AUDIT_TARGET: &str = "portcullis::audit";

/// One change, as the audit line records it.
pub struct Event<'a> {
    /// The account changed.
    pub user: &'a str,
    /// What was done: `device_rename`, `device_remove`, `session_sign_out`,
    /// `sessions_sign_out_others`.
    pub action: &'static str,
    /// What it was done to (a device id, a session id), or empty.
    pub target: &'a str,
    /// `done`, or why nothing was done (`refused_last_factor`, `needs_reauthentication`,
    /// `csrf`, `not_found`).
    pub outcome: &'static str,
    /// The client address the request came from.
    pub client: &'a str,
    /// How many other sessions the change ended.
    pub ended_sessions: usize,
}

/// Writes the audit line of `e` (always at `info`).
pub fn record(e: &Event<'_>) {
    tracing::info!(
        target: AUDIT_TARGET,
        user = %e.user,
        action = e.action,
        target_id = %e.target,
        outcome = e.outcome,
        client = %e.client,
        ended_sessions = e.ended_sessions,
        "audit"
    );
}

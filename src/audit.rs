//! The audit log: one structured record per security event (a sign-in that succeeded or failed,
//! a ban, a device added, renamed or removed, sessions ended, settings changed, the config
//! reloaded), under its own tracing target so it can be kept apart from the rest
//! (`PORTCULLIS_LOG=portcullis::audit=info`), and appended as one JSON line per event to
//! `[log] audit_file` when one is configured.
//!
//! Each record names the action, the account (`user`), the client's `address` and the
//! `outcome` (`success`, `failure`, `done`, or why nothing was done).
//!
//! # Security
//! Records name the account, the action, what it acted on (a device or session id, a stage,
//! never its secret, address or token) and the client; never a code, password, CSRF token or
//! cookie. Request-derived values (the username) are escaped in the text log by
//! [`crate::logging`] and JSON-escaped in the audit file, so a value cannot forge a record.
//! The audit file is created owner-only (0600) and an existing one is tightened to that.

use parking_lot::Mutex;
use std::io::Write;
use std::path::Path;

/// The tracing target of audit lines.
pub const AUDIT_TARGET: &str = "portcullis::audit";

/// One security event, as the audit line records it.
pub struct Event<'a> {
    /// The account concerned (as typed by the client for a failed sign-in).
    pub user: &'a str,
    /// What happened: `sign_in_success`, `sign_in_failure`, `device_add`, `device_rename`,
    /// `device_remove`, `session_sign_out`, `sessions_sign_out_others`, `settings_change`,
    /// `ban`, `config_reload`, ...
    pub action: &'static str,
    /// What it was done to (a device id, a session id, a stage name), or empty.
    pub target: &'a str,
    /// `success`, `failure`, `done`, or why nothing was done (`refused_last_factor`,
    /// `needs_reauthentication`, `csrf`, `not_found`).
    pub outcome: &'static str,
    /// The client address the request came from (empty for operator actions).
    pub client: &'a str,
    /// How many other sessions the change ended.
    pub ended_sessions: usize,
}

/// The open audit file, when `[log] audit_file` names one.
static FILE: Mutex<Option<std::fs::File>> = Mutex::new(None);

/// Appends every later record to `path` as JSON lines (or stops doing so with `None`). The
/// file is created with mode 0600, and an existing one tightened to it.
///
/// # Errors
/// The I/O error if the file cannot be opened for appending or its mode set.
pub fn set_file(path: Option<&Path>) -> std::io::Result<()> {
    let file = match path {
        None => None,
        Some(path) => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)?;
            }
            let mut opts = std::fs::OpenOptions::new();
            opts.create(true).append(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                opts.mode(0o600);
            }
            let file = opts.open(path)?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
            }
            Some(file)
        }
    };
    *FILE.lock() = file;
    Ok(())
}

/// Writes the audit record of `e` (the log line always at `info`; the JSON line when an audit
/// file is set).
pub fn record(e: &Event<'_>) {
    tracing::info!(
        target: AUDIT_TARGET,
        action = e.action,
        user = %e.user,
        address = %e.client,
        outcome = e.outcome,
        target_id = %e.target,
        ended_sessions = e.ended_sessions,
        "audit"
    );
    let mut file = FILE.lock();
    if let Some(f) = file.as_mut() {
        let mut line = json_line(e, std::time::SystemTime::now());
        line.push('\n');
        if let Err(err) = f.write_all(line.as_bytes()) {
            tracing::error!(error = %err, "the audit file could not be written");
        }
    }
}

/// The JSON line of `e` at `at`, without its newline.
fn json_line(e: &Event<'_>, at: std::time::SystemTime) -> String {
    serde_json::json!({
        "time": humantime::format_rfc3339_millis(at).to_string(),
        "action": e.action,
        "user": e.user,
        "address": e.client,
        "outcome": e.outcome,
        "target": e.target,
        "ended_sessions": e.ended_sessions,
    })
    .to_string()
}

/// Records a sign-in's end: `sign_in_success` with the flow's name, or `sign_in_failure` with
/// the stage that refused the answer.
pub fn sign_in(user: &str, client: &str, succeeded: bool, flow_or_stage: &str) {
    record(&Event {
        user,
        action: if succeeded {
            "sign_in_success"
        } else {
            "sign_in_failure"
        },
        target: flow_or_stage,
        outcome: if succeeded { "success" } else { "failure" },
        client,
        ended_sessions: 0,
    });
}

/// Records a device (authenticator) added to `user`'s account: `target` is its kind or id.
pub fn device_added(user: &str, client: &str, target: &str) {
    record(&Event {
        user,
        action: "device_add",
        target,
        outcome: "done",
        client,
        ended_sessions: 0,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_json_line_is_one_line_with_every_field_even_for_a_hostile_username() {
        let e = Event {
            user: "eve\n{\"action\":\"sign_in_success\",\"user\":\"admin\"}\u{2028}\r",
            action: "sign_in_failure",
            target: "password",
            outcome: "failure",
            client: "192.0.2.7",
            ended_sessions: 0,
        };
        let line = json_line(&e, std::time::UNIX_EPOCH);
        assert!(!line.contains('\n') && !line.contains('\r'), "{line}");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["user"], e.user);
        assert_eq!(v["action"], "sign_in_failure");
        assert_eq!(v["address"], "192.0.2.7");
        assert_eq!(v["outcome"], "failure");
        assert_eq!(v["target"], "password");
        assert_eq!(v["time"], "1970-01-01T00:00:00.000Z");
    }
}

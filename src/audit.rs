//! The audit log: one structured record per security event (a sign-in that succeeded or failed,
//! a ban, a device added, renamed or removed, sessions ended, settings changed, the config
//! reloaded), under its own tracing target so it can be kept apart from the rest
//! (`PORTCULLIS_LOG=portcullis::audit=info`), and appended as one JSON line per event to
//! `[log] audit_file` when one is configured, and to the store ([`set_store`]): there every
//! replica's records are in one place (`portcullis audit list`), kept
//! [`crate::store::AUDIT_RETENTION`] (90 days).
//!
//! A record reaches the store through a queue and one writer thread, never on the request
//! that made it: a slow or unreachable database delays no sign-in, and a failed write is
//! logged, not answered to the client. [`flush`] waits for the queue (at shutdown).
//! Each record names the action, the account (`user`), the client's `address` and the
//! `outcome` (`success`, `failure`, `done`, or why nothing was done).
//!
//! # Security
//! Records name the account, the action, what it acted on (a device or session id, a stage,
//! never its secret, address or token) and the client; never a code, password, CSRF token or
//! cookie. Request-derived values (the username) are escaped in the text log by
//! [`crate::logging`] and JSON-escaped in the audit file, so a value cannot forge a record.
//! The audit file is created owner-only (0600) and an existing one is tightened to that.

use crate::store::Store;
use parking_lot::Mutex;
use std::io::Write;
use std::path::Path;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

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

/// How many records may wait for the store writer; past that a record is logged and the file
/// gets it, but the store does not (the request never waits for the database).
const STORE_QUEUE: usize = 4096;

/// How long [`flush`] waits for the store writer.
const FLUSH_WAIT: Duration = Duration::from_secs(5);

/// What the store writer is asked to do.
enum Job {
    /// Append a record (at ms, JSON line).
    Append(i64, String),
    /// Say when every record queued before this one is written.
    Flush(SyncSender<()>),
}

/// The queue of the store writer, when [`set_store`] named a store.
static STORE: Mutex<Option<SyncSender<Job>>> = Mutex::new(None);

/// Appends every later record to `store` too (or stops doing so with `None`), through a queue
/// and a writer thread of its own. A previous store's writer finishes its queue and ends.
///
/// # Errors
/// The I/O error if the writer thread cannot be started.
pub fn set_store(store: Option<Arc<dyn Store>>) -> std::io::Result<()> {
    let sender = match store {
        None => None,
        Some(store) => {
            let (tx, rx) = sync_channel(STORE_QUEUE);
            std::thread::Builder::new()
                .name("audit-store".into())
                .spawn(move || write_to_store(store.as_ref(), &rx))?;
            Some(tx)
        }
    };
    *STORE.lock() = sender;
    Ok(())
}

/// The store writer: appends each queued record until the queue's sender is gone.
fn write_to_store(store: &dyn Store, jobs: &Receiver<Job>) {
    for job in jobs {
        match job {
            Job::Append(at_ms, line) => {
                // The store's error names the action and the database's reason; the line
                // (which holds no secret anyway) is not logged again.
                if let Err(e) = store.append_audit(at_ms, &line) {
                    tracing::error!(error = %e, "an audit record could not be written to the store");
                }
            }
            Job::Flush(done) => {
                let _ = done.send(());
            }
        }
    }
}

/// Waits (up to 5 s) until every record made so far is in the store; `false` when it is not
/// (no store set counts as done). For shutdown and tests.
pub fn flush() -> bool {
    let Some(sender) = STORE.lock().clone() else {
        return true;
    };
    let (tx, rx) = sync_channel(1);
    if sender.send(Job::Flush(tx)).is_err() {
        return false;
    }
    rx.recv_timeout(FLUSH_WAIT).is_ok()
}

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
    let sender = STORE.lock().clone();
    let mut file = FILE.lock();
    if file.is_none() && sender.is_none() {
        return;
    }
    let now = SystemTime::now();
    let mut line = json_line(e, now);
    if let Some(sender) = sender {
        let at_ms = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        match sender.try_send(Job::Append(at_ms, line.clone())) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => tracing::error!(
                action = e.action,
                "the audit store queue is full: this record is not stored (the audit line above has it)"
            ),
            Err(TrySendError::Disconnected(_)) => tracing::error!(
                action = e.action,
                "the audit store writer has stopped: this record is not stored"
            ),
        }
    }
    if let Some(f) = file.as_mut() {
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
    fn records_reach_the_store_in_order_once_set_and_not_after_it_is_unset() {
        let store: Arc<dyn Store> = Arc::new(crate::store::MemoryStore::new());
        let before = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_millis();
        set_store(Some(store.clone())).unwrap();
        // Other tests of this process may record too: only this test's users are counted.
        sign_in("audit-store-eve", "192.0.2.9", false, "password");
        sign_in("audit-store-eve", "192.0.2.9", true, "default");
        assert!(flush(), "the writer answers");
        set_store(None).unwrap();
        sign_in("audit-store-eve", "192.0.2.9", true, "after");
        let records = store.audit_records(0, 1000).unwrap();
        let mine: Vec<serde_json::Value> = records
            .iter()
            .map(|(_, l)| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|v| v["user"] == "audit-store-eve")
            .collect();
        let actions: Vec<&str> = mine.iter().map(|v| v["action"].as_str().unwrap()).collect();
        assert_eq!(actions, ["sign_in_failure", "sign_in_success"]);
        assert_eq!(mine[0]["address"], "192.0.2.9");
        assert_eq!(mine[0]["target"], "password");
        let at = u128::try_from(records[0].0).unwrap();
        assert!(at >= before, "stamped with the time it was made");
    }

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

//! `portcullis audit list`: the audit records kept in the store, every replica's in one place
//! (see [`crate::audit`]), oldest first.
//!
//! # Security
//! The records hold no secret (see [`crate::audit`]); they are printed as stored, one JSON
//! line each, so a hostile username stays inside its JSON string.

use super::fail;
use crate::config::Config;
use crate::store::StoreError;
use clap::Subcommand;
use std::io::Write;
use std::process::ExitCode;

#[derive(Subcommand)]
pub(crate) enum AuditCmd {
    /// Print the audit records kept in the store (90 days, every replica's), oldest first,
    /// one JSON line each. A sled database is held by a running gateway: stop it first, or
    /// read `[log] audit_file`; PostgreSQL is read while gateways run.
    List {
        /// Only records made in this last span ("1h", "7d"); all kept ones when left out.
        #[arg(long)]
        since: Option<String>,
        /// At most this many records (the oldest of the span).
        #[arg(long, default_value_t = 1000)]
        limit: usize,
    },
}

/// Runs an `audit` command.
pub(crate) fn run(config: &Config, cmd: AuditCmd) -> ExitCode {
    let AuditCmd::List { since, limit } = cmd;
    match list(config, since.as_deref(), limit) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

fn list(config: &Config, since: Option<&str>, limit: usize) -> Result<(), String> {
    let now_ms = crate::clock::Clock::now_ms(&crate::clock::SystemClock);
    let since_ms = match since {
        None => i64::MIN,
        Some(text) => {
            let span = crate::config::parse_duration(text).map_err(|e| format!("--since: {e}"))?;
            now_ms.saturating_sub(i64::try_from(span.as_millis()).unwrap_or(i64::MAX))
        }
    };
    let db = config.storage.describe();
    if !config.storage.exists() {
        return Err(format!(
            "no database at {db} (storage.path of {}); nothing was created",
            config.source.display()
        ));
    }
    let store = crate::store::open(&config.storage).map_err(|e| match e {
        StoreError::Locked { path } => format!(
            "the database {path} is held by a running gateway: a sled database is open in one \
             process at a time; stop the gateway first, or read the audit file (`[log] \
             audit_file`) or its log (target portcullis::audit)"
        ),
        other => format!("{other} (database {db})"),
    })?;
    let records = store
        .audit_records(since_ms, limit)
        .map_err(|e| format!("{e} (database {db})"))?;
    let mut out = std::io::stdout().lock();
    for (_, line) in &records {
        writeln!(out, "{line}").map_err(|e| format!("writing the records: {e}"))?;
    }
    out.flush()
        .map_err(|e| format!("writing the records: {e}"))?;
    if records.len() == limit && limit > 0 {
        eprintln!(
            "{limit} records shown (the limit); later ones may follow: raise --limit or narrow --since"
        );
    }
    Ok(())
}

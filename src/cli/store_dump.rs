//! `portcullis store export` and `store import`: every piece of state, and the device key, to a
//! dump file and back (see [`crate::store::dump`] for the format), to move a gateway between
//! sled and PostgreSQL or to back one up.
//!
//! # Security
//! A dump holds password hashes, sessions, the store's secrets and the device key: it is
//! written with mode 0600, never over an existing file unless `--force`, never to a terminal,
//! and nothing of it is printed.

use super::fail;
use crate::config::{Config, StorageBackend};
use crate::store::dump::{self, DeviceKeyRecord};
use crate::store::{Record, StoreError};
use clap::Subcommand;
use std::io::{IsTerminal, Read, Write};
use std::path::Path;
use std::process::ExitCode;

#[derive(Subcommand)]
pub(crate) enum StoreCmd {
    /// Write every piece of state the gateway keeps (users, devices, sessions, revocations,
    /// sign-ins in progress, counters, bans, invitations, queued mail, secrets) and the device
    /// key to a dump file, mode 0600. Stop a sled gateway first; PostgreSQL is read from one
    /// consistent snapshot while gateways run.
    Export {
        /// The dump file, or `-` for standard output (never a terminal).
        #[arg(long, default_value = "-")]
        to: String,
        /// Replace an existing dump file.
        #[arg(long)]
        force: bool,
    },
    /// Put a dump back into the database the config names, which must be empty (a new sled
    /// directory, or a PostgreSQL database no gateway has used); writes the device key file
    /// where `[storage] device_key_path` says. A damaged dump imports nothing.
    Import {
        /// The dump file, or `-` for standard input.
        #[arg(long)]
        from: String,
    },
}

/// Runs a `store` command.
pub(crate) fn run(config: &Config, cmd: StoreCmd) -> ExitCode {
    let done = match cmd {
        StoreCmd::Export { to, force } => export(config, &to, force),
        StoreCmd::Import { from } => import(config, &from),
    };
    match done {
        Ok(message) => {
            eprintln!("{message}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e),
    }
}

fn backend_name(config: &Config) -> &'static str {
    match config.storage.backend {
        StorageBackend::Sled => "sled",
        StorageBackend::Postgres(_) => "postgres",
    }
}

/// Opens the configured store, saying what to do when a running gateway holds it.
fn open(config: &Config) -> Result<std::sync::Arc<dyn crate::store::Store>, String> {
    let db = config.storage.describe();
    crate::store::open(&config.storage).map_err(|e| match e {
        StoreError::Locked { path } => format!(
            "the database {path} is held by a running gateway: stop it first (a sled database is \
             open in one process at a time, and a copy taken while it writes would not be \
             consistent); nothing was done"
        ),
        other => format!("{other} (database {db})"),
    })
}

fn export(config: &Config, to: &str, force: bool) -> Result<String, String> {
    let db = config.storage.describe();
    if !config.storage.exists() {
        return Err(format!(
            "no database at {db} (storage.path of {}); nothing was created",
            config.source.display()
        ));
    }
    let to_stdout = to == "-";
    if to_stdout && std::io::stdout().is_terminal() {
        return Err(
            "a dump holds password hashes, sessions and keys: it is not written to a terminal; \
             use --to FILE or redirect standard output"
                .into(),
        );
    }
    if !to_stdout && !force && Path::new(to).exists() {
        return Err(format!(
            "{to} exists; not overwriting it (use --force to replace it)"
        ));
    }
    let store = open(config)?;
    let records = store
        .export_records()
        .map_err(|e| format!("{e} (database {db})"))?;
    drop(store);
    let key_path = &config.storage.device_key_path;
    let key = crate::device_key::read_key_text(key_path).map_err(|e| e.to_string())?;
    let mut notes = Vec::new();
    let sealed = sealed_devices(&records);
    if key.is_none() && sealed > 0 {
        notes.push(format!(
            "warning: the device key {} is missing: the {sealed} TOTP device(s) in the dump cannot be used after an import without it",
            key_path.display()
        ));
    }
    let key = key.map(|k| DeviceKeyRecord {
        key: k.expose().to_string(),
    });
    let now = crate::clock::Clock::now(&crate::clock::SystemClock);
    let bytes = dump::write(backend_name(config), now, &records, key.as_ref())
        .map_err(|e| e.to_string())?;
    let dest = if to_stdout {
        let mut out = std::io::stdout().lock();
        out.write_all(&bytes)
            .and_then(|()| out.flush())
            .map_err(|e| format!("write the dump to standard output: {e}"))?;
        "standard output".to_string()
    } else {
        write_private(Path::new(to), &bytes, force)?;
        to.to_string()
    };
    let counts = dump::counts(
        key.iter()
            .map(|_| "device_key")
            .chain(records.iter().map(Record::kind)),
    );
    notes.push(format!(
        "exported {} from {db} to {dest}",
        dump::describe(&counts)
    ));
    notes.push(
        "the dump holds password hashes, sessions, secrets and the device key: keep it as secret as the database (a file is written with mode 0600)"
            .into(),
    );
    Ok(notes.join("\n"))
}

/// TOTP devices whose secret is sealed under the device key.
fn sealed_devices(records: &[Record]) -> usize {
    records
        .iter()
        .filter(|r| {
            matches!(r, Record::Device(d)
                if d.class == crate::store::DeviceClass::Totp && d.secret.is_some())
        })
        .count()
}

/// Writes `bytes` to `path` with mode 0600: a new file (never over an existing one) unless
/// `force`, when a temporary file replaces it whole.
fn write_private(path: &Path, bytes: &[u8], force: bool) -> Result<(), String> {
    let io = |e: std::io::Error| format!("write {}: {e}", path.display());
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let target = if force {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        path.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
    } else {
        path.to_path_buf()
    };
    opts.create_new(true);
    let mut f = opts.open(&target).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            format!(
                "{} exists; not overwriting it (use --force to replace it)",
                path.display()
            )
        } else {
            io(e)
        }
    })?;
    let written = f.write_all(bytes).and_then(|()| f.sync_all());
    if let Err(e) = written {
        let _ = std::fs::remove_file(&target);
        return Err(io(e));
    }
    if force {
        std::fs::rename(&target, path).map_err(|e| {
            let _ = std::fs::remove_file(&target);
            io(e)
        })?;
    }
    Ok(())
}

fn import(config: &Config, from: &str) -> Result<String, String> {
    let db = config.storage.describe();
    let mut bytes = Vec::new();
    let source = if from == "-" {
        std::io::stdin()
            .lock()
            .read_to_end(&mut bytes)
            .map_err(|e| format!("read standard input: {e}"))?;
        "standard input".to_string()
    } else {
        bytes = std::fs::read(from).map_err(|e| format!("read {from}: {e}"))?;
        from.to_string()
    };
    let dump = dump::read(&bytes).map_err(|e| format!("{source}: {e}; nothing was imported"))?;
    let key_path = &config.storage.device_key_path;
    // Before anything is written: a key file holding another key is never replaced.
    if let (Some(k), Some(existing)) = (
        &dump.device_key,
        crate::device_key::read_key_text(key_path).map_err(|e| e.to_string())?,
    ) {
        if !crate::secret::equal(existing.expose().as_bytes(), k.key.as_bytes()) {
            return Err(crate::device_key::DeviceKeyError::Conflict {
                path: key_path.clone(),
            }
            .to_string());
        }
    }
    let store = open(config)?;
    let wrote_key = match &dump.device_key {
        Some(k) => crate::device_key::install(key_path, &k.key).map_err(|e| e.to_string())?,
        None => false,
    };
    if let Err(e) = store
        .import_records(&dump.records)
        .and_then(|()| store.flush())
    {
        if wrote_key {
            let _ = std::fs::remove_file(key_path);
        }
        let hint = match (&e, &config.storage.backend) {
            (StoreError::NotEmpty { .. }, _) | (_, StorageBackend::Postgres(_)) => String::new(),
            (_, StorageBackend::Sled) => format!(
                "; the sled database {db} may hold part of the dump: delete that directory (and {}) before importing again",
                crate::store::integrity_record_path(&config.storage.path).display()
            ),
        };
        return Err(format!("{e} (database {db}){hint}"));
    }
    let mut notes = vec![format!(
        "imported {} from {source} (exported from {} at {}) into {db}",
        dump::describe(&dump.header.counts),
        dump.header.backend,
        dump.header.created
    )];
    match (&dump.device_key, wrote_key) {
        (Some(_), true) => notes.push(format!(
            "wrote the device key to {} (mode 0600)",
            key_path.display()
        )),
        (Some(_), false) => notes.push(format!(
            "the device key {} already holds the dump's key",
            key_path.display()
        )),
        (None, _) if sealed_devices(&dump.records) > 0 => notes.push(format!(
            "warning: the dump carries no device key: its TOTP devices work only if {} holds the key they were sealed under",
            key_path.display()
        )),
        (None, _) => {}
    }
    Ok(notes.join("\n"))
}

//! `[storage] backend`: sled on this machine (the default), or PostgreSQL shared by several
//! gateways (`backend = "postgres"`, `url`, `pool_size`, `ca_file`).
//!
//! # Security
//! The database password never sits in the config file or its URL: a config file is read by
//! more people and tools than a secret should be (backups, support bundles, `check-config`
//! output, a repository), and the URL is the kind of value that ends up in a log line. A URL
//! carrying one (`postgres://user:secret@host/db`, or `?password=`) is refused, with no
//! override; the password comes from the environment variable [`DATABASE_PASSWORD_ENV`]
//! (read once at start; systemd's `EnvironmentFile=` or a container's secret both set it).
//! A database that needs no password (peer or certificate authentication, a local socket)
//! needs no variable.
//!
//! TLS to the database is on with `sslmode=require` or `sslmode=verify-full` in the URL, or a
//! `ca_file`; the server's certificate is then always verified (against `ca_file`, else the
//! web's public roots) and its name checked, whatever the mode says: libpq's `require` would
//! take any certificate. `sslmode=prefer` and `allow` are refused: a machine in the path could
//! quietly turn TLS off.

use super::error::Problem;
use super::raw::{RawBackend, RawStorage};
use super::{PostgresStorage, StorageBackend};
use crate::secret::Secret;
use rustls::pki_types::pem::PemObject;
use std::path::PathBuf;

/// The environment variable the PostgreSQL password is read from.
pub const DATABASE_PASSWORD_ENV: &str = "PORTCULLIS_DATABASE_PASSWORD";

/// `pool_size` when unset: connections per gateway (PostgreSQL's default `max_connections`
/// of 100 leaves room for several replicas and an operator's session).
pub const DEFAULT_POOL_SIZE: usize = 16;

/// The most connections one gateway may hold.
const MAX_POOL_SIZE: u64 = 1_000;

type Checked<T> = Result<T, Problem>;

/// The validated backend of `[storage]`; `password` is the value of [`DATABASE_PASSWORD_ENV`].
pub(super) fn backend(raw: &RawStorage) -> Checked<StorageBackend> {
    match raw.backend {
        RawBackend::Sled => {
            for (key, set) in [
                ("url", raw.url.is_some()),
                ("pool_size", raw.pool_size.is_some()),
                ("ca_file", raw.ca_file.is_some()),
            ] {
                if set {
                    return Err(Problem::new(
                        format!("storage.{key}"),
                        "is for backend = \"postgres\"; the sled backend is storage.path",
                    ));
                }
            }
            Ok(StorageBackend::Sled)
        }
        RawBackend::Postgres => postgres(raw).map(StorageBackend::Postgres),
    }
}

fn postgres(raw: &RawStorage) -> Checked<PostgresStorage> {
    let problem = |reason: &str| Problem::new("storage.url", reason);
    let written = raw.url.as_deref().ok_or_else(|| {
        problem("is needed with backend = \"postgres\" (postgres://USER@HOST:PORT/DATABASE)")
    })?;
    let url = url::Url::parse(written.trim()).map_err(|e| {
        problem(&format!(
            "is not a URL ({e}); write postgres://USER@HOST:PORT/DATABASE"
        ))
    })?;
    if !matches!(url.scheme(), "postgres" | "postgresql") {
        return Err(problem("must start with postgres:// or postgresql://"));
    }
    // Never echo the URL: it may carry the very password it is refused for.
    if url.password().is_some() || url.query_pairs().any(|(k, _)| k == "password") {
        return Err(problem(&format!(
            "carries a password; give it in the environment variable {DATABASE_PASSWORD_ENV} instead, never in the config file"
        )));
    }
    if url.username().is_empty() && !url.query_pairs().any(|(k, _)| k == "user") {
        return Err(problem(
            "names no user (postgres://USER@HOST:PORT/DATABASE)",
        ));
    }
    let mut mode = None;
    let mut kept = url.clone();
    kept.query_pairs_mut().clear();
    let mut any = false;
    for (k, v) in url.query_pairs() {
        if k == "sslmode" {
            mode = Some(v.into_owned());
        } else {
            kept.query_pairs_mut().append_pair(&k, &v);
            any = true;
        }
    }
    if !any {
        kept.set_query(None);
    }
    let ca_file = raw.ca_file.as_ref().map(PathBuf::from);
    let tls = match mode.as_deref() {
        None => ca_file.is_some(),
        Some("disable") if ca_file.is_some() => {
            return Err(Problem::new(
                "storage.ca_file",
                "is set, but storage.url says sslmode=disable",
            ))
        }
        Some("disable") => false,
        Some("require" | "verify-full" | "verify-ca") => true,
        Some("prefer" | "allow") => {
            return Err(problem(
                "sslmode=prefer or allow would let a machine in the path turn TLS off; use sslmode=verify-full (or require, verified the same) or disable",
            ))
        }
        Some(_) => {
            return Err(problem(
                "sslmode must be disable, require or verify-full",
            ))
        }
    };
    // What the driver itself refuses (an unknown option, a bad port) refuses start here.
    kept.as_str()
        .parse::<tokio_postgres::Config>()
        .map_err(|e| problem(&format!("is not a PostgreSQL connection URL: {e}")))?;
    if let Some(path) = &ca_file {
        let n = rustls::pki_types::CertificateDer::pem_file_iter(path)
            .map_err(|e| {
                Problem::new(
                    "storage.ca_file",
                    format!("cannot read {}: {e}", path.display()),
                )
            })?
            .filter(Result::is_ok)
            .count();
        if n == 0 {
            return Err(Problem::new(
                "storage.ca_file",
                format!("{} holds no PEM certificate", path.display()),
            ));
        }
    }
    let pool_size = match raw.pool_size {
        None => DEFAULT_POOL_SIZE,
        Some(n @ 1..=MAX_POOL_SIZE) => usize::try_from(n).unwrap_or(DEFAULT_POOL_SIZE),
        Some(_) => {
            return Err(Problem::new(
                "storage.pool_size",
                format!("must be 1 to {MAX_POOL_SIZE}"),
            ))
        }
    };
    Ok(PostgresStorage {
        url: kept.to_string(),
        password: raw
            .password
            .clone()
            .filter(|p| !p.is_empty())
            .map(Secret::new),
        pool_size,
        tls,
        ca_file,
    })
}

#[cfg(test)]
mod tests {
    use super::super::{Config, ConfigError, StorageBackend};
    use std::path::Path;

    const BASE: &str = r#"
[[apps]]
name = "demo"
hosts = ["localhost"]
upstream = "builtin:whoami"
flow = "f"
[[flows]]
slug = "f"
designation = "authentication"
stages = ["id"]
[stages.id]
kind = "identification"
"#;

    fn load(storage: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_toml(
            &format!("[storage]\n{storage}\n{BASE}"),
            Path::new("/etc/portcullis/portcullis.toml"),
            env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        )
    }

    fn refused(storage: &str) -> (String, String) {
        match load(storage, &[]) {
            Err(e @ ConfigError::Invalid { .. }) => {
                (e.path().unwrap_or_default().to_string(), e.to_string())
            }
            Err(other) => panic!("{storage}: {other}"),
            Ok(_) => panic!("{storage}: accepted"),
        }
    }

    #[test]
    fn sled_stays_the_default() {
        let c = load("", &[]).unwrap();
        assert_eq!(c.storage.backend, StorageBackend::Sled);
    }

    #[test]
    fn postgres_takes_its_password_from_the_environment_only() {
        let c = load(
            "backend = \"postgres\"\nurl = \"postgres://portcullis@db.internal:5433/gate\"\npool_size = 4",
            &[("PORTCULLIS_DATABASE_PASSWORD", "s3cret pass")],
        )
        .unwrap();
        let StorageBackend::Postgres(pg) = &c.storage.backend else {
            panic!("{:?}", c.storage.backend)
        };
        assert_eq!(pg.url, "postgres://portcullis@db.internal:5433/gate");
        assert_eq!(pg.pool_size, 4);
        assert!(!pg.tls);
        assert_eq!(
            pg.password.as_ref().map(|p| p.expose().as_str()),
            Some("s3cret pass")
        );
        assert!(
            !format!("{c:?}").contains("s3cret"),
            "a debug print of the config shows the password"
        );
        let c = load(
            "backend = \"postgres\"\nurl = \"postgres://portcullis@db/gate?sslmode=verify-full&connect_timeout=5\"",
            &[],
        )
        .unwrap();
        let StorageBackend::Postgres(pg) = &c.storage.backend else {
            panic!()
        };
        assert!(pg.tls);
        assert!(pg.password.is_none());
        assert_eq!(pg.pool_size, super::DEFAULT_POOL_SIZE);
        assert_eq!(pg.url, "postgres://portcullis@db/gate?connect_timeout=5");
    }

    #[test]
    fn the_purge_interval_is_five_minutes_unless_set_and_a_bad_one_refuses_start() {
        let c = load("", &[]).unwrap();
        assert_eq!(
            c.storage.purge_interval,
            std::time::Duration::from_secs(300)
        );
        for (written, secs) in [("\"30s\"", 30), ("\"1h\"", 3600), ("\" 2m \"", 120)] {
            let c = load(&format!("purge_interval = {written}"), &[]).unwrap();
            assert_eq!(c.storage.purge_interval.as_secs(), secs, "{written}");
        }
        for (written, says) in [
            ("\"0s\"", "longer than zero"),
            ("\"soon\"", "not a duration"),
            ("\"-5m\"", "not a duration"),
            ("\"\"", "not a duration"),
            ("\"5\"", "not a duration"),
        ] {
            let (path, message) = refused(&format!("purge_interval = {written}"));
            assert_eq!(path, "storage.purge_interval", "{written}: {message}");
            assert!(message.contains(says), "{written}: {message}");
        }
    }

    #[test]
    fn bad_storage_settings_refuse_start_naming_the_key_and_never_the_password() {
        let pg = "backend = \"postgres\"\n";
        for (storage, key, says) in [
            (pg.to_string(), "storage.url", "is needed"),
            (
                format!("{pg}url = \"mysql://u@h/d\""),
                "storage.url",
                "postgres://",
            ),
            (
                format!("{pg}url = \"not a url\""),
                "storage.url",
                "not a URL",
            ),
            (
                format!("{pg}url = \"postgres://u:hunter2@h/d\""),
                "storage.url",
                "PORTCULLIS_DATABASE_PASSWORD",
            ),
            (
                format!("{pg}url = \"postgres://u@h/d?password=hunter2\""),
                "storage.url",
                "PORTCULLIS_DATABASE_PASSWORD",
            ),
            (
                format!("{pg}url = \"postgres://h/d\""),
                "storage.url",
                "no user",
            ),
            (
                format!("{pg}url = \"postgres://u@h/d?sslmode=prefer\""),
                "storage.url",
                "turn TLS off",
            ),
            (
                format!("{pg}url = \"postgres://u@h/d?sslmode=allow\""),
                "storage.url",
                "turn TLS off",
            ),
            (
                format!("{pg}url = \"postgres://u@h/d?sslmode=sometimes\""),
                "storage.url",
                "sslmode must be",
            ),
            (
                format!("{pg}url = \"postgres://u@h/d?frobnicate=1\""),
                "storage.url",
                "not a PostgreSQL connection URL",
            ),
            (
                format!("{pg}url = \"postgres://u@h/d\"\npool_size = 0"),
                "storage.pool_size",
                "1 to",
            ),
            (
                format!("{pg}url = \"postgres://u@h/d\"\npool_size = 5000"),
                "storage.pool_size",
                "1 to",
            ),
            (
                format!("{pg}url = \"postgres://u@h/d\"\nca_file = \"/nonexistent/ca.pem\""),
                "storage.ca_file",
                "cannot read",
            ),
            (
                format!(
                    "{pg}url = \"postgres://u@h/d?sslmode=disable\"\nca_file = \"/etc/hostname\""
                ),
                "storage.ca_file",
                "sslmode=disable",
            ),
            ("backend = \"mysql\"".to_string(), "storage.backend", ""),
            (
                "url = \"postgres://u@h/d\"".to_string(),
                "storage.url",
                "is for backend",
            ),
            ("pool_size = 3".to_string(), "storage.pool_size", "postgres"),
        ] {
            let (path, message) = refused(&storage);
            assert_eq!(path, key, "{storage}: {message}");
            assert!(message.contains(says), "{storage}: {message}");
            assert!(!message.contains("hunter2"), "{storage}: {message}");
        }
    }

    #[test]
    fn a_ca_file_turns_verified_tls_on() {
        let dir = tempfile::tempdir().unwrap();
        let ca = rcgen::generate_simple_self_signed(vec!["db.test".into()]).unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, ca.cert.pem()).unwrap();
        let c = load(
            &format!(
                "backend = \"postgres\"\nurl = \"postgres://u@db.test/d\"\nca_file = \"{}\"",
                path.display()
            ),
            &[],
        )
        .unwrap();
        let StorageBackend::Postgres(pg) = &c.storage.backend else {
            panic!()
        };
        assert!(pg.tls);
        assert_eq!(pg.ca_file.as_deref(), Some(path.as_path()));
        let (key, message) = refused(&format!(
            "backend = \"postgres\"\nurl = \"postgres://u@db.test/d\"\nca_file = \"{}\"",
            dir.path().display()
        ));
        assert_eq!(key, "storage.ca_file", "{message}");
    }
}

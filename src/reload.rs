//! Hot reload: the config file is read again on `SIGHUP` or `portcullis reload`, and apps,
//! rules, policies, flows, stages, templates, the pages and the TLS certificates are replaced
//! at once, between two requests.
//!
//! A config that does not load (or whose certificates, mail or SMS settings cannot be used)
//! is refused: the reason is logged and returned to `portcullis reload`, and the running
//! config stays in force. Settings only a restart can change (listeners, threads, storage,
//! session, password hashing, the admin socket) keep their running values; a reload that
//! changes them still applies the rest and names them as needing a restart.
//!
//! What a reload keeps: the database, the session service and signing keys (sessions stay
//! valid), the password pool, the execution locks, and the outbox. A request in flight
//! finishes under the config it started with (it holds its [`Served`]); a sign-in in flight
//! goes on under the new config when its flow still exists with the same stages, and
//! otherwise ends with a page asking to start again.

use crate::app::{AppError, Core};
use crate::config::{Config, ConfigError};
use crate::flow::Engine;
use crate::proxy::Served;
use crate::tls::{LiveCerts, SniResolver};
use arc_swap::ArcSwap;
use std::sync::{Arc, Mutex};

/// Why a reload was refused; the running config stays in force.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReloadError {
    /// The file does not load; the message names the file and the key.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A part cannot be built from it (a stage's mail or SMS settings).
    #[error(transparent)]
    Build(#[from] AppError),
    /// A certificate or key cannot serve.
    #[error("{0}")]
    Certificates(String),
}

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reloaded {
    /// Keys whose new value waits for a restart (the running value stays).
    pub needs_restart: Vec<&'static str>,
}

impl Reloaded {
    /// The line `portcullis reload` prints.
    pub fn message(&self) -> String {
        if self.needs_restart.is_empty() {
            "reloaded the configuration".into()
        } else {
            format!(
                "reloaded the configuration; these changes need a restart and are not applied: {}",
                self.needs_restart.join(", ")
            )
        }
    }
}

/// Replaces the running gateway's config-made parts from its config file.
pub struct Reloader {
    core: Core,
    /// The config in force; held locked while a reload runs, so two never interleave.
    running: Mutex<Arc<Config>>,
    served: Arc<ArcSwap<Served>>,
    certs: Option<Arc<LiveCerts>>,
}

impl Reloader {
    /// A reloader of `running` (read from `running.source`), swapping what the proxy serves in
    /// `served` and the TLS listeners' `certs`.
    pub(crate) fn new(
        running: Arc<Config>,
        core: Core,
        served: Arc<ArcSwap<Served>>,
        certs: Option<Arc<LiveCerts>>,
    ) -> Self {
        Self {
            core,
            running: Mutex::new(running),
            served,
            certs,
        }
    }

    /// The flow engine in force.
    pub(crate) fn engine(&self) -> Arc<Engine> {
        self.served.load().portal_parts().engine.clone()
    }

    /// Reads the config file again and puts it in force, or refuses it and keeps the running
    /// one. `by` says who asked (`SIGHUP`, `admin socket`), for the log and the audit line.
    ///
    /// # Errors
    /// [`ReloadError`] naming what is wrong with the new config.
    pub fn reload(&self, by: &str) -> Result<Reloaded, ReloadError> {
        // A panic elsewhere while holding the lock leaves the config it held, which is whole.
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        let result = self.replace(&running);
        let outcome = match &result {
            Ok((next, reloaded)) => {
                *running = next.clone();
                tracing::info!(
                    by,
                    config = %next.source.display(),
                    apps = next.apps.len(),
                    flows = next.flows.len(),
                    needs_restart = ?reloaded.needs_restart,
                    "configuration reloaded"
                );
                if !reloaded.needs_restart.is_empty() {
                    tracing::warn!(keys = ?reloaded.needs_restart, "configuration changes that need a restart were not applied");
                }
                "done"
            }
            Err(e) => {
                tracing::error!(by, error = %e, "configuration reload refused; the running configuration stays in force");
                "refused"
            }
        };
        crate::audit::record(&crate::audit::Event {
            user: "",
            action: "config_reload",
            target: &running.source.display().to_string(),
            outcome,
            client: by,
            ended_sessions: 0,
        });
        result.map(|(_, r)| r)
    }

    /// Builds every part from the file, then swaps them in; nothing changes on an error.
    fn replace(&self, running: &Config) -> Result<(Arc<Config>, Reloaded), ReloadError> {
        let mut next = Config::load(&running.source)?;
        let needs_restart = keep_fixed(running, &mut next);
        let next = Arc::new(next);
        let certs = match &self.certs {
            Some(_) => Some(
                SniResolver::new(&next.server.certificates)
                    .map_err(|e| ReloadError::Certificates(e.to_string()))?,
            ),
            None => None,
        };
        let previous = self.engine();
        let (gate, portal) = self.core.assemble(&next, Some(&previous))?;
        let served = Served::new(gate, portal);
        if let (Some(live), Some(certs)) = (&self.certs, certs) {
            live.replace(certs);
        }
        self.served.store(Arc::new(served));
        Ok((next, Reloaded { needs_restart }))
    }
}

/// Gives `next` the running values of the settings only a restart can change, and names the
/// ones that differed.
fn keep_fixed(running: &Config, next: &mut Config) -> Vec<&'static str> {
    let mut changed = Vec::new();
    macro_rules! keep {
        ($key:literal, $($field:ident).+) => {
            if running.$($field).+ != next.$($field).+ {
                changed.push($key);
                next.$($field).+ = running.$($field).+.clone();
            }
        };
    }
    keep!("server.listen", server.listen);
    keep!("server.tls_listen", server.tls_listen);
    keep!("server.threads", server.threads);
    keep!("server.upstream_ca_file", server.upstream_ca_file);
    keep!("storage", storage);
    keep!("session", session);
    keep!("passwords", passwords);
    keep!("password", password_policy);
    keep!("admin.socket", admin_socket);
    keep!(
        "server.header_timeout, body_timeout, max_header_bytes, max_connections_per_address",
        server.clients
    );
    keep!("server.drain_timeout", server.drain_timeout);
    keep!("metrics", metrics);
    keep!("regulation", regulation);
    keep!("log.format", log.format);
    keep!("log.audit_file", log.audit_file);
    changed
}

/// Reloads on every `SIGHUP` for as long as the gateway runs. The handler is in place when
/// this returns (so a `SIGHUP` right after start reloads rather than ending the process).
///
/// # Errors
/// The I/O error when the handler or its thread cannot be set up.
pub(crate) fn on_sighup(reloader: Arc<Reloader>) -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut hangups = rt.block_on(async { signal(SignalKind::hangup()) })?;
    std::thread::Builder::new()
        .name("portcullis-reload".into())
        .spawn(move || {
            rt.block_on(async move {
                while hangups.recv().await.is_some() {
                    let reloader = reloader.clone();
                    // Building the parts reads files; off the signal loop's thread.
                    let _ = tokio::task::spawn_blocking(move || reloader.reload("SIGHUP")).await;
                }
            })
        })?;
    Ok(())
}

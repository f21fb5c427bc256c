//! Running the gateway as an operator expects: `/.portcullis/health` and `/.portcullis/ready`,
//! the `[metrics] listen` admin listener serving `GET /metrics`, the graceful shutdown on
//! SIGTERM (stop accepting, drain requests in flight, write what is only in memory), and the
//! service manager's readiness notification (`sd_notify(3)`, for `Type=notify` units).

use crate::metrics;
use crate::reply::Response;
use crate::session::SessionService;
use crate::store::Store;
use async_trait::async_trait;
use http::StatusCode;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `/.portcullis/health`: answers `200` while the process serves.
pub const HEALTH: &str = "/.portcullis/health";
/// `/.portcullis/ready`: `200` when the database answers a read, `503` otherwise.
pub const READY: &str = "/.portcullis/ready";
/// The metrics listener's exposition path.
pub const METRICS: &str = "/metrics";

/// Set once a graceful shutdown has begun: `/.portcullis/ready` says so with `503`.
static DRAINING: AtomicBool = AtomicBool::new(false);

/// Whether a graceful shutdown has begun.
pub fn draining() -> bool {
    DRAINING.load(Ordering::Relaxed)
}

/// The liveness answer: the process is up and serving.
pub fn health() -> Response {
    json(StatusCode::OK, serde_json::json!({ "status": "live" }))
}

/// The readiness answer: `200` when the database answers ([`Store::check_ready`]: without
/// waiting on a remote database) and the gateway is not shutting down, `503` with a JSON `reason` otherwise. With `detailed` (the metrics
/// listener), delivery providers are listed with what is known of them (the last delivery's
/// result); a failing provider does not make the gateway unready, since signed-in traffic and
/// password sign-ins do not need it and every instance shares the provider (taking them all out
/// of a load balancer would stop everything).
///
/// # Security
/// Served on the public listener too, there without `detailed`: the answer names no provider,
/// path, address or error text (those go to the log and the metrics listener).
pub fn ready(store: &dyn Store, detailed: bool) -> Response {
    let providers: Vec<_> = metrics::providers()
        .into_iter()
        .map(|((channel, provider), s)| {
            serde_json::json!({
                "channel": channel,
                "provider": provider,
                "state": if s.ok { "ok" } else { "failing" },
                "failures_in_a_row": s.failures_in_a_row,
            })
        })
        .collect();
    let reason = if draining() {
        Some("shutting down")
    } else {
        match store.check_ready() {
            Ok(()) => None,
            Err(e) => {
                tracing::warn!(error = %e, "readiness check: the database did not answer a read");
                Some("the database did not answer a read")
            }
        }
    };
    let (status, mut body) = match reason {
        None => (
            StatusCode::OK,
            serde_json::json!({ "status": "ready", "store": "ok" }),
        ),
        Some(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({ "status": "unavailable", "reason": reason }),
        ),
    };
    if detailed {
        body["providers"] = providers.into();
    }
    json(status, body)
}

fn json(status: StatusCode, body: serde_json::Value) -> Response {
    Response::new(status, "application/json", body.to_string())
}

/// The `[metrics] listen` admin listener's app: `GET /metrics`, and health and readiness as
/// on the public listener; `404` for anything else.
pub struct MetricsApp {
    store: Arc<dyn Store>,
}

impl MetricsApp {
    /// The app answering readiness from `store`.
    pub fn new(store: Arc<dyn Store>) -> MetricsApp {
        MetricsApp { store }
    }

    /// The answer to `method path`.
    fn answer(&self, method: &http::Method, path: &str) -> Response {
        if method != http::Method::GET && method != http::Method::HEAD {
            return Response::text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n");
        }
        match path {
            METRICS => Response::new(StatusCode::OK, metrics::CONTENT_TYPE, metrics::render()),
            HEALTH => health(),
            READY => ready(self.store.as_ref(), true),
            _ => Response::text(StatusCode::NOT_FOUND, "not found\n"),
        }
    }
}

#[async_trait]
impl ServeHttp for MetricsApp {
    async fn response(&self, session: &mut ServerSession) -> http::Response<Vec<u8>> {
        let req = session.req_header();
        let resp = self.answer(&req.method, req.uri.path());
        let head = req.method == http::Method::HEAD;
        let mut out = http::Response::builder().status(resp.status);
        for (name, value) in &resp.headers {
            out = out.header(name, value);
        }
        let body = if head { Vec::new() } else { resp.body.to_vec() };
        out = out.header(http::header::CONTENT_LENGTH, resp.body.len());
        out.body(body).unwrap_or_else(|_| {
            let mut fallback = http::Response::new(Vec::new());
            *fallback.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            fallback
        })
    }
}

/// The gateway's life as the service manager sees it: says it is ready once the services run,
/// and on a graceful shutdown (SIGTERM) waits for the requests in flight (up to `drain`), writes
/// the sessions' last-seen times and the database, and ends the process.
pub struct Lifecycle {
    /// Whose last-seen times are written at the end.
    pub sessions: Arc<SessionService>,
    /// The database, flushed at the end.
    pub store: Arc<dyn Store>,
    /// The longest wait for requests in flight.
    pub drain: Duration,
}

#[async_trait]
impl BackgroundService for Lifecycle {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        sd_notify("READY=1");
        loop {
            if *shutdown.borrow() {
                break;
            }
            if shutdown.changed().await.is_err() {
                return;
            }
        }
        DRAINING.store(true, Ordering::Relaxed);
        sd_notify("STOPPING=1");
        // Pingora has stopped accepting and closes idle connections; requests already being
        // answered go on, each on a connection that closes after its answer.
        let started = Instant::now();
        tracing::info!(
            in_flight = metrics::in_flight(),
            drain_timeout_secs = self.drain.as_secs(),
            "shutting down: no new connections; waiting for requests in flight"
        );
        while metrics::in_flight() > 0 && started.elapsed() < self.drain {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let left = metrics::in_flight();
        if left > 0 {
            tracing::warn!(
                in_flight = left,
                "drain timeout reached; cutting the requests still in flight"
            );
        }
        finish(&self.sessions, self.store.as_ref());
        tracing::info!(
            drained_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            "portcullis stopped"
        );
        std::process::exit(0);
    }
}

/// What only memory holds, written before the process ends: the audit records queued for the
/// store, the sessions' last-seen times, then the database flushed to disk.
pub fn finish(sessions: &SessionService, store: &dyn Store) {
    if !crate::audit::flush() {
        tracing::warn!("audit records still queued for the store were not all written");
    }
    match sessions.flush_seen() {
        Ok(n) => tracing::info!(sessions = n, "recorded when sessions were last seen"),
        Err(e) => tracing::warn!(error = %e, "recording when sessions were last seen failed"),
    }
    if let Err(e) = store.flush() {
        tracing::warn!(error = %e, "flushing the database failed");
    }
}

/// Tells the service manager `state` (`READY=1`, `STOPPING=1`) over `$NOTIFY_SOCKET`, as
/// `sd_notify(3)` does; nothing when the variable is unset (not started as `Type=notify`).
pub fn sd_notify(state: &str) {
    use std::os::unix::net::UnixDatagram;
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let sent = UnixDatagram::unbound().and_then(|sock| {
        let bytes = std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str());
        match bytes.strip_prefix(b"@") {
            Some(name) => {
                use std::os::linux::net::SocketAddrExt;
                let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
                sock.send_to_addr(state.as_bytes(), &addr)
            }
            None => sock.send_to(state.as_bytes(), &path),
        }
    });
    if let Err(e) = sent {
        tracing::warn!(error = %e, state, "could not notify the service manager");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    #[test]
    fn the_metrics_listener_serves_metrics_health_and_readiness_only() {
        let app = MetricsApp::new(Arc::new(MemoryStore::default()));
        let get = http::Method::GET;
        let m = app.answer(&get, "/metrics");
        assert_eq!(m.status, StatusCode::OK);
        assert!(String::from_utf8_lossy(&m.body).contains("portcullis_build_info"));
        assert_eq!(app.answer(&get, HEALTH).status, StatusCode::OK);
        assert_eq!(app.answer(&get, READY).status, StatusCode::OK);
        for path in [
            "/",
            "/metrics/",
            "/METRICS",
            "/.portcullis/ping",
            "/metrics.json",
        ] {
            assert_eq!(
                app.answer(&get, path).status,
                StatusCode::NOT_FOUND,
                "{path}"
            );
        }
        assert_eq!(
            app.answer(&http::Method::POST, "/metrics").status,
            StatusCode::METHOD_NOT_ALLOWED
        );
    }

    #[test]
    fn readiness_answers_json_naming_the_store() {
        metrics::sent("sms", "generic", false);
        let r = ready(&MemoryStore::default(), true);
        assert_eq!(
            r.status,
            StatusCode::OK,
            "a failing provider leaves the gateway ready"
        );
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["status"], "ready");
        assert_eq!(v["store"], "ok");
        let providers = v["providers"].as_array().unwrap();
        assert!(providers
            .iter()
            .any(|p| p["provider"] == "generic" && p["state"] == "failing"));
        let public = ready(&MemoryStore::default(), false);
        let v: serde_json::Value = serde_json::from_slice(&public.body).unwrap();
        assert_eq!(v, serde_json::json!({ "status": "ready", "store": "ok" }));
    }

    /// The values of `key=` lines in a unit file (comments skipped).
    fn unit_values<'a>(unit: &'a str, key: &str) -> Vec<&'a str> {
        unit.lines()
            .map(str::trim)
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .collect()
    }

    #[test]
    fn the_systemd_unit_is_hardened_and_matches_what_the_gateway_does() {
        let unit = include_str!("../config/systemd/portcullis.service");
        let one = |key: &str| {
            let v = unit_values(unit, key);
            assert_eq!(v.len(), 1, "{key}: {v:?}");
            v[0]
        };
        // The gateway notifies (sd_notify above), drains on SIGTERM, reloads on SIGHUP.
        assert_eq!(one("Type"), "notify");
        assert!(one("ExecStart").ends_with(" serve"));
        assert_eq!(one("ExecReload"), "/bin/kill -HUP $MAINPID");
        assert_eq!(one("KillSignal"), "SIGTERM");
        let stop: u64 = one("TimeoutStopSec").parse().expect("seconds");
        assert!(
            stop > crate::config::DEFAULT_DRAIN.as_secs(),
            "systemd would kill the gateway during its default drain"
        );
        for (key, want) in [
            ("NoNewPrivileges", "yes"),
            ("ProtectSystem", "strict"),
            ("ProtectHome", "yes"),
            ("PrivateTmp", "yes"),
            ("PrivateDevices", "yes"),
            ("ReadWritePaths", "/var/lib/portcullis"),
            ("StateDirectory", "portcullis"),
            ("StateDirectoryMode", "0700"),
            ("CapabilityBoundingSet", "CAP_NET_BIND_SERVICE"),
            ("UMask", "0077"),
        ] {
            assert_eq!(one(key), want, "{key}");
        }
        let nofile: u64 = one("LimitNOFILE").parse().expect("a number");
        assert!(nofile >= 65536);
        let socket = include_str!("../config/systemd/portcullis.socket");
        assert!(!unit_values(socket, "ListenStream").is_empty());
    }
}

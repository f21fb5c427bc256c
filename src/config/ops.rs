//! `[metrics]` (the admin listener that serves Prometheus metrics) and `[server]
//! drain_timeout` (how long a graceful shutdown waits for requests in flight).

use super::error::Problem;
use serde::Deserialize;
use std::net::SocketAddr;
use std::time::Duration;

/// `[metrics]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMetrics {
    /// Where `GET /metrics` is served; off when absent.
    pub listen: Option<String>,
}

/// `[metrics]`: Prometheus metrics on an admin listener of their own.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetricsConfig {
    /// The admin listener serving `GET /metrics`, `/.portcullis/health` and
    /// `/.portcullis/ready`; `None` (the default) serves no metrics at all.
    pub listen: Option<SocketAddr>,
}

/// How long a graceful shutdown (SIGTERM) waits for requests in flight, unless
/// `[server] drain_timeout` says.
pub const DEFAULT_DRAIN: Duration = Duration::from_secs(30);

/// `[metrics]`, checked against the public listeners.
///
/// # Security
/// Metrics name apps, counts of failed sign-ins and bans: they are for operators. An address
/// that is (or overlaps, through `0.0.0.0` / `[::]` on the same port) a public `listen` or
/// `tls_listen` address is refused, so the metrics can never be served where the public
/// reaches the gateway.
pub(super) fn metrics(
    raw: &RawMetrics,
    listen: &[SocketAddr],
    tls_listen: &[SocketAddr],
) -> Result<MetricsConfig, Problem> {
    let Some(text) = &raw.listen else {
        return Ok(MetricsConfig::default());
    };
    let addr: SocketAddr = text.trim().parse().map_err(|_| {
        Problem::new(
            "metrics.listen",
            format!("`{text}` is not an address like \"127.0.0.1:9464\""),
        )
    })?;
    let public = [("server.listen", listen), ("server.tls_listen", tls_listen)];
    for (key, addrs) in public {
        for (i, a) in addrs.iter().enumerate() {
            if overlaps(*a, addr) {
                return Err(Problem::new(
                    "metrics.listen",
                    format!(
                        "`{addr}` is also a public address ({key}[{i}] = `{a}`); metrics are served only on an address of their own"
                    ),
                ));
            }
        }
    }
    Ok(MetricsConfig { listen: Some(addr) })
}

/// Whether two listening addresses would take the same connections: the same port, and the
/// same address or either one a wildcard.
fn overlaps(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port() && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

/// `[server] drain_timeout`: [`DEFAULT_DRAIN`] when absent.
pub(super) fn drain_timeout(raw: Option<&str>) -> Result<Duration, Problem> {
    match raw {
        None => Ok(DEFAULT_DRAIN),
        Some(text) => {
            let d = super::duration::parse(text)
                .map_err(|e| Problem::new("server.drain_timeout", e))?;
            if d > Duration::from_secs(3600) {
                return Err(Problem::new(
                    "server.drain_timeout",
                    format!("`{text}` is over an hour; a stop would wait that long"),
                ));
            }
            Ok(d)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(list: &[&str]) -> Vec<SocketAddr> {
        list.iter().map(|a| a.parse().unwrap()).collect()
    }

    #[test]
    fn metrics_are_off_by_default() {
        let m = metrics(&RawMetrics::default(), &addrs(&["127.0.0.1:9000"]), &[]);
        assert!(m.is_ok_and(|m| m.listen.is_none()));
    }

    #[test]
    fn a_metrics_address_that_a_public_listener_takes_is_refused() {
        let listen = addrs(&["127.0.0.1:9000", "[::1]:9001"]);
        let tls = addrs(&["0.0.0.0:8443"]);
        let cases = [
            ("127.0.0.1:9000", Some("server.listen[0]")),
            (" 127.0.0.1:9000 ", Some("server.listen[0]")),
            ("0.0.0.0:9000", Some("server.listen[0]")),
            ("[::]:9001", Some("server.listen[1]")),
            ("[::1]:9001", Some("server.listen[1]")),
            ("127.0.0.1:8443", Some("server.tls_listen[0]")),
            ("10.0.0.1:8443", Some("server.tls_listen[0]")),
            ("127.0.0.1:9464", None),
            ("127.0.0.2:9000", None),
            ("[::1]:9000", None),
        ];
        for (addr, refused_by) in cases {
            let raw = RawMetrics {
                listen: Some(addr.into()),
            };
            let got = metrics(&raw, &listen, &tls).map_err(|p| format!("{}: {}", p.path, p.reason));
            match (got, refused_by) {
                (Ok(m), None) => assert_eq!(m.listen, Some(addr.trim().parse().unwrap())),
                (Err(text), Some(key)) => {
                    assert!(
                        text.starts_with("metrics.listen") && text.contains(key),
                        "{addr}: {text}"
                    );
                }
                (got, want) => panic!("{addr}: got {got:?}, wanted refusal by {want:?}"),
            }
        }
        let bad = RawMetrics {
            listen: Some("localhost".into()),
        };
        assert!(metrics(&bad, &listen, &tls).is_err());
    }

    #[test]
    fn drain_timeout_defaults_to_thirty_seconds_and_is_bounded() {
        assert!(drain_timeout(None).is_ok_and(|d| d == DEFAULT_DRAIN));
        assert!(drain_timeout(Some("5s")).is_ok_and(|d| d == Duration::from_secs(5)));
        assert!(drain_timeout(Some("0s")).is_err());
        assert!(drain_timeout(Some("2h")).is_err());
        assert!(drain_timeout(Some("soon")).is_err());
    }
}

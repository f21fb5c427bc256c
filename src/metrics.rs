//! The gateway's Prometheus metrics: one process-wide registry of the families operators chart
//! (`portcullis_request_duration_seconds`, `portcullis_authn_total`, `portcullis_sends_total`,
//! `portcullis_bans`, `portcullis_access_decision_seconds`, ...), and the small functions the
//! rest of the gateway counts through. Served only on the `[metrics] listen` address
//! ([`crate::ops`]); nothing here touches a socket.
//!
//! Label values are `&'static str` from closed sets (outcomes, stage kinds, provider names) or
//! app names from the config, so a client cannot grow the number of series. The per-request
//! families are resolved once ([`RequestTimers`], the forward-auth table) so a request costs a
//! clock read, a lock-free counter or a short uncontended histogram lock, and no allocation.

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

/// Two labels, as name/value pairs.
type Labels2 = [(&'static str, &'static str); 2];
/// Three labels.
type Labels3 = [(&'static str, &'static str); 3];

/// The `portcullis_request_duration_seconds` family: labels are owned (app names come from
/// the config), but resolved once per app by [`RequestTimers`].
type RequestFamily = Family<[(&'static str, String); 2], Histogram, fn() -> Histogram>;

/// Request and upstream latencies: 0.5 ms to 10 s, in seconds.
const REQUEST_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// The access decision: 10 µs to 50 ms (a CEL policy or a GeoIP lookup at the top).
const DECISION_BUCKETS: &[f64] = &[
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05,
];

fn request_histogram() -> Histogram {
    Histogram::new(REQUEST_BUCKETS)
}

/// A histogram of durations that every worker thread updates without a lock: an observation is
/// three relaxed atomic additions (its bucket, the count, the sum in nanoseconds). The client
/// library's own histogram takes a mutex per observation, which all threads would contend for
/// on the per-request path.
#[derive(Clone, Debug)]
pub struct Histogram {
    inner: Arc<HistogramInner>,
}

#[derive(Debug)]
struct HistogramInner {
    /// Upper bounds in seconds, then `+Inf`; for the exposition.
    bounds: Vec<f64>,
    /// The same bounds in nanoseconds, without `+Inf`; for observing.
    bounds_ns: Vec<u64>,
    /// Observations per bucket (not cumulative), the last one `+Inf`.
    buckets: Vec<AtomicU64>,
    count: AtomicU64,
    sum_ns: AtomicU64,
}

impl Histogram {
    /// A histogram with these upper bounds (seconds, ascending).
    fn new(bounds: &[f64]) -> Histogram {
        let bounds_ns = bounds
            .iter()
            .map(|b| Duration::from_secs_f64(*b).as_nanos() as u64)
            .collect();
        let mut all = bounds.to_vec();
        all.push(f64::INFINITY);
        Histogram {
            inner: Arc::new(HistogramInner {
                buckets: all.iter().map(|_| AtomicU64::new(0)).collect(),
                bounds: all,
                bounds_ns,
                count: AtomicU64::new(0),
                sum_ns: AtomicU64::new(0),
            }),
        }
    }

    /// Records one duration.
    pub fn observe(&self, took: Duration) {
        let h = &self.inner;
        let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        let i = h.bounds_ns.partition_point(|b| *b < ns);
        if let Some(b) = h.buckets.get(i) {
            b.fetch_add(1, Ordering::Relaxed);
        }
        h.count.fetch_add(1, Ordering::Relaxed);
        h.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }
}

impl TypedMetric for Histogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Histogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let h = &self.inner;
        let buckets: Vec<(f64, u64)> = h
            .bounds
            .iter()
            .zip(&h.buckets)
            .map(|(b, n)| (*b, n.load(Ordering::Relaxed)))
            .collect();
        // The count is the buckets' total, so a scrape in the middle of an observation still
        // shows `le="+Inf"` equal to `_count`.
        let count = buckets.iter().map(|(_, n)| n).sum();
        let sum = h.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// What the gateway did with a request, as `portcullis_request_duration_seconds{outcome}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Let through to the app (a session allowed, or a bypass rule).
    Allowed,
    /// Sent to sign in (or to a step-up, or from HTTP to HTTPS).
    Redirected,
    /// Refused: a deny rule, a group, a policy, an unknown or malformed host.
    Denied,
    /// The gateway or the upstream failed (a 5xx answer).
    Error,
    /// One of the gateway's own endpoints: sign-in pages, forward-auth, ping, keys, health.
    Gateway,
}

impl Outcome {
    const ALL: [Outcome; 5] = [
        Outcome::Allowed,
        Outcome::Redirected,
        Outcome::Denied,
        Outcome::Error,
        Outcome::Gateway,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            Outcome::Redirected => "redirected",
            Outcome::Denied => "denied",
            Outcome::Error => "error",
            Outcome::Gateway => "gateway",
        }
    }

    /// The outcome of a request the proxy named `route_outcome` (its access-log outcome) and
    /// answered with `status` (0 when nothing was sent).
    pub fn of(route_outcome: &str, status: u16) -> Outcome {
        if status >= 500 || route_outcome == "upstream_failed" {
            return Outcome::Error;
        }
        match route_outcome {
            "allow" | "bypass" => Outcome::Allowed,
            "unauthenticated" | "step_up" | "to_https" => Outcome::Redirected,
            "denied" | "forbidden" | "refused" | "unknown_host" | "bad_host" => Outcome::Denied,
            _ => Outcome::Gateway,
        }
    }
}

/// `portcullis_authn_total{result}`: what one answer to a sign-in stage came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthnResult {
    /// The stage passed.
    Success,
    /// The answer was refused (a wrong password or code); the stage asks again.
    Failure,
    /// The sign-in ended without success (too many attempts, a deny stage).
    Ended,
}

impl AuthnResult {
    fn as_str(self) -> &'static str {
        match self {
            AuthnResult::Success => "success",
            AuthnResult::Failure => "failure",
            AuthnResult::Ended => "ended",
        }
    }
}

/// The forward-auth servers, in `portcullis_forward_auth_requests_total{server}` order.
const FA_SERVERS: [&str; 3] = ["nginx", "traefik", "caddy"];
/// The forward-auth results, in table order.
const FA_RESULTS: [&str; 6] = [
    "allowed",
    "unauthenticated",
    "denied",
    "bad_request",
    "limited",
    "error",
];

/// The last thing known of a delivery provider, for `/.portcullis/ready`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProviderState {
    /// Whether the last delivery through it succeeded.
    pub ok: bool,
    /// Deliveries that failed in a row (0 after a success).
    pub failures_in_a_row: u32,
}

/// Every metric family of the gateway, registered in one registry.
pub struct Metrics {
    registry: Registry,
    request_duration: RequestFamily,
    access_decision: Histogram,
    authn: Family<Labels2, Counter>,
    sends: Family<Labels3, Counter>,
    bans: Gauge,
    sessions_issued: Counter,
    forward_auth: Family<Labels2, Counter>,
    forward_auth_table: Vec<Counter>,
    in_flight: Gauge<i64, AtomicI64>,
    providers: parking_lot::Mutex<BTreeMap<(&'static str, &'static str), ProviderState>>,
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::default();
        let request_duration: RequestFamily = Family::new_with_constructor(request_histogram);
        registry.register(
            "portcullis_request_duration_seconds",
            "Time from a request's head to its answer, by app and outcome (allowed, redirected, denied, error, gateway)",
            request_duration.clone(),
        );
        let access_decision = Histogram::new(DECISION_BUCKETS);
        registry.register(
            "portcullis_access_decision_seconds",
            "Time the access decision takes (session check, rules, policies), proxy and forward-auth",
            access_decision.clone(),
        );
        let authn = Family::<Labels2, Counter>::default();
        registry.register(
            "portcullis_authn",
            "Answers to sign-in stages, by stage kind and result (success, failure, ended)",
            authn.clone(),
        );
        let sends = Family::<Labels3, Counter>::default();
        registry.register(
            "portcullis_sends",
            "Codes and links sent, by channel (email, sms), provider and result (ok, failed)",
            sends.clone(),
        );
        let bans = Gauge::default();
        registry.register(
            "portcullis_bans",
            "Users and addresses banned by regulation right now",
            bans.clone(),
        );
        let sessions_issued = Counter::default();
        registry.register(
            "portcullis_sessions_issued",
            "Sessions issued by completed sign-ins",
            sessions_issued.clone(),
        );
        let forward_auth = Family::<Labels2, Counter>::default();
        registry.register(
            "portcullis_forward_auth_requests",
            "Forward-auth calls, by server (nginx, traefik, caddy) and result",
            forward_auth.clone(),
        );
        let forward_auth_table = FA_SERVERS
            .iter()
            .flat_map(|s| FA_RESULTS.iter().map(move |r| (*s, *r)))
            .map(|(server, result)| {
                forward_auth.get_or_create_owned(&[("server", server), ("result", result)])
            })
            .collect();
        let in_flight = Gauge::<i64, AtomicI64>::default();
        registry.register(
            "portcullis_requests_in_flight",
            "Requests being answered right now",
            in_flight.clone(),
        );
        let build_info = Family::<Labels2, Gauge>::default();
        build_info
            .get_or_create(&[
                ("version", env!("CARGO_PKG_VERSION")),
                ("name", env!("CARGO_PKG_NAME")),
            ])
            .set(1);
        registry.register(
            "portcullis_build_info",
            "The running gateway's version (always 1)",
            build_info,
        );
        Metrics {
            registry,
            request_duration,
            access_decision,
            authn,
            sends,
            bans,
            sessions_issued,
            forward_auth,
            forward_auth_table,
            in_flight,
            providers: parking_lot::Mutex::new(BTreeMap::new()),
        }
    }
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

fn metrics() -> &'static Metrics {
    &METRICS
}

/// Every metric in Prometheus' text exposition format (OpenMetrics 1.0), as `GET /metrics`
/// answers it.
pub fn render() -> String {
    let mut out = String::with_capacity(8 * 1024);
    if encode(&mut out, &metrics().registry).is_err() {
        // Writing into a String cannot fail; should it, the scrape shows what was written.
        tracing::warn!("encoding the metrics failed");
    }
    out
}

/// The content type of [`render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Sets `portcullis_bans`, the number of users and addresses banned right now. The regulation
/// module calls it whenever its ban list changes (and once at start).
pub fn set_bans(n: i64) {
    metrics().bans.set(n);
}

/// Counts one answer to a sign-in stage of kind `stage` (`password`, `authenticator_email`, ...).
pub fn authn(stage: &'static str, result: AuthnResult) {
    metrics()
        .authn
        .get_or_create(&[("result", result.as_str()), ("stage", stage)])
        .inc();
}

/// Counts one code or link sent through `channel` (`email`, `sms`) by `provider` (`smtp`,
/// `twilio`, `generic`), and remembers how it went for `/.portcullis/ready`.
pub fn sent(channel: &'static str, provider: &'static str, ok: bool) {
    let m = metrics();
    let result = if ok { "ok" } else { "failed" };
    m.sends
        .get_or_create(&[
            ("channel", channel),
            ("provider", provider),
            ("result", result),
        ])
        .inc();
    let mut providers = m.providers.lock();
    let state = providers
        .entry((channel, provider))
        .or_insert(ProviderState {
            ok: true,
            failures_in_a_row: 0,
        });
    state.ok = ok;
    state.failures_in_a_row = if ok {
        0
    } else {
        state.failures_in_a_row.saturating_add(1)
    };
}

/// What is known of each delivery provider that has been used: `(channel, provider)` and its
/// last result.
pub fn providers() -> Vec<((&'static str, &'static str), ProviderState)> {
    metrics()
        .providers
        .lock()
        .iter()
        .map(|(k, v)| (*k, *v))
        .collect()
}

/// Counts one session issued by a completed sign-in.
pub fn session_issued() {
    metrics().sessions_issued.inc();
}

/// Counts one forward-auth call from `server` (`nginx`, `traefik`, `caddy`) answered with
/// `status`.
pub fn forward_auth(server: &'static str, status: u16) {
    let result = match status {
        200..=299 => 1,
        401 | 302 | 303 | 307 => 2,
        403 => 3,
        400 => 4,
        429 => 5,
        _ => 6,
    } - 1;
    let m = metrics();
    match FA_SERVERS.iter().position(|s| *s == server) {
        Some(s) => {
            if let Some(c) = m.forward_auth_table.get(s * FA_RESULTS.len() + result) {
                c.inc();
            }
        }
        None => {
            m.forward_auth
                .get_or_create(&[("server", server), ("result", FA_RESULTS[result])])
                .inc();
        }
    }
}

/// Records how long one access decision took.
pub fn access_decision(took: Duration) {
    metrics().access_decision.observe(took);
}

/// A request being answered: counted in `portcullis_requests_in_flight` from
/// [`InFlight::start`] until it is dropped. Graceful shutdown waits for the count to reach 0.
#[derive(Debug)]
pub struct InFlight(());

impl InFlight {
    /// Counts a request in.
    pub fn start() -> InFlight {
        metrics().in_flight.inc();
        InFlight(())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        metrics().in_flight.dec();
    }
}

/// Requests being answered right now.
pub fn in_flight() -> i64 {
    metrics().in_flight.get()
}

/// `portcullis_request_duration_seconds`, resolved once for a set of apps: one histogram per
/// (app, outcome), and one row for requests that reached no app (the gateway's own endpoints,
/// unknown hosts), whose `app` label is empty.
pub struct RequestTimers {
    /// `rows[0]` is for no app, `rows[i + 1]` for app `i`.
    rows: Vec<[Histogram; 5]>,
}

impl RequestTimers {
    /// The timers of the apps named `apps`, in config order.
    pub fn new<'a>(apps: impl IntoIterator<Item = &'a str>) -> RequestTimers {
        let family = &metrics().request_duration;
        let row = |app: &str| {
            Outcome::ALL.map(|o| {
                family.get_or_create_owned(&[
                    ("app", app.to_string()),
                    ("outcome", o.as_str().into()),
                ])
            })
        };
        let mut rows = vec![row("")];
        rows.extend(apps.into_iter().map(row));
        RequestTimers { rows }
    }

    /// Records a request of app `app` (its index; `None` for none) that took `took`.
    pub fn observe(&self, app: Option<usize>, outcome: Outcome, took: Duration) {
        let row = app.map_or(0, |i| i + 1);
        let col = Outcome::ALL.iter().position(|o| *o == outcome).unwrap_or(0);
        if let Some(h) = self.rows.get(row).and_then(|r| r.get(col)) {
            h.observe(took);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of the sample line that starts with `prefix` (name and labels as written).
    fn sample(text: &str, prefix: &str) -> Option<f64> {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    #[test]
    fn a_histogram_puts_each_duration_in_the_first_bucket_that_holds_it() {
        let h = Histogram::new(&[0.001, 0.01]);
        for ms in [0, 1, 2, 10, 11, 5000] {
            h.observe(Duration::from_millis(ms));
        }
        let got: Vec<u64> = h
            .inner
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        assert_eq!(
            got,
            vec![2, 2, 2],
            "le=1ms holds 0 and 1 ms; le=10ms 2 and 10; +Inf the rest"
        );
        assert_eq!(h.inner.count.load(Ordering::Relaxed), 6);
        let mut registry = Registry::default();
        registry.register("t_seconds", "test", h.clone());
        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        for line in [
            "t_seconds_sum 5.024",
            "t_seconds_count 6",
            "t_seconds_bucket{le=\"0.001\"} 2",
            "t_seconds_bucket{le=\"0.01\"} 4",
            "t_seconds_bucket{le=\"+Inf\"} 6",
        ] {
            assert!(text.contains(line), "{line} in:\n{text}");
        }
    }

    #[test]
    fn outcomes_follow_the_decision_and_a_server_error_is_an_error() {
        let cases = [
            ("allow", 200, Outcome::Allowed),
            ("bypass", 404, Outcome::Allowed),
            ("allow", 502, Outcome::Error),
            ("upstream_failed", 502, Outcome::Error),
            ("unauthenticated", 302, Outcome::Redirected),
            ("step_up", 302, Outcome::Redirected),
            ("to_https", 308, Outcome::Redirected),
            ("denied", 403, Outcome::Denied),
            ("forbidden", 403, Outcome::Denied),
            ("refused", 403, Outcome::Denied),
            ("unknown_host", 404, Outcome::Denied),
            ("bad_host", 400, Outcome::Denied),
            ("portal", 200, Outcome::Gateway),
            ("forward_auth", 401, Outcome::Gateway),
            ("portal", 500, Outcome::Error),
            ("none", 0, Outcome::Gateway),
        ];
        for (route, status, want) in cases {
            assert_eq!(Outcome::of(route, status), want, "{route} {status}");
        }
    }

    #[test]
    fn counted_events_show_in_the_exposition_with_their_labels() {
        let timers = RequestTimers::new(["wiki", "mail"]);
        timers.observe(Some(1), Outcome::Denied, Duration::from_millis(3));
        timers.observe(None, Outcome::Gateway, Duration::from_millis(1));
        authn("password", AuthnResult::Failure);
        sent("sms", "twilio", false);
        forward_auth("traefik", 403);
        forward_auth("nginx", 200);
        set_bans(7);
        let text = render();
        assert!(
            sample(
                &text,
                "portcullis_request_duration_seconds_count{app=\"mail\",outcome=\"denied\"}"
            )
            .is_some_and(|v| v >= 1.0),
            "{text}"
        );
        assert!(sample(
            &text,
            "portcullis_authn_total{result=\"failure\",stage=\"password\"}"
        )
        .is_some_and(|v| v >= 1.0));
        assert!(sample(
            &text,
            "portcullis_sends_total{channel=\"sms\",provider=\"twilio\",result=\"failed\"}"
        )
        .is_some_and(|v| v >= 1.0));
        assert!(sample(
            &text,
            "portcullis_forward_auth_requests_total{server=\"traefik\",result=\"denied\"}"
        )
        .is_some_and(|v| v >= 1.0));
        assert_eq!(sample(&text, "portcullis_bans "), Some(7.0));
        assert!(text.contains("portcullis_build_info{version=\""), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert!(providers()
            .iter()
            .any(|((c, p), s)| *c == "sms" && *p == "twilio" && !s.ok));
    }

    #[test]
    fn in_flight_requests_are_counted_until_dropped() {
        let before = in_flight();
        let a = InFlight::start();
        let b = InFlight::start();
        assert!(in_flight() >= before + 2);
        drop(a);
        drop(b);
    }

    /// The sample names of an exposition (`name` of `name{labels} value`).
    fn sample_names(text: &str) -> std::collections::BTreeSet<String> {
        text.lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .filter_map(|l| l.split(['{', ' ']).next())
            .map(str::to_string)
            .collect()
    }

    /// Every query string of a Grafana dashboard: panel `expr`s and template `query`s.
    fn queries(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    match (k.as_str(), v) {
                        ("expr" | "query" | "definition", serde_json::Value::String(q))
                            if q.contains('(') || q.contains("portcullis") =>
                        {
                            out.push(q.clone())
                        }
                        _ => queries(v, out),
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|i| queries(i, out)),
            _ => {}
        }
    }

    #[test]
    fn the_grafana_dashboard_charts_only_and_every_metric_the_gateway_exports() {
        // Every family with a sample, so the exposition names them all.
        RequestTimers::new(["app"]).observe(Some(0), Outcome::Allowed, Duration::from_millis(1));
        access_decision(Duration::from_micros(30));
        authn("password", AuthnResult::Success);
        sent("email", "smtp", true);
        forward_auth("caddy", 200);
        session_issued();
        let exported = sample_names(&render());
        let text = include_str!("../config/grafana/portcullis.json");
        let dashboard: serde_json::Value = serde_json::from_str(text).expect("valid JSON");
        assert_eq!(dashboard["uid"], "portcullis");
        let mut found = Vec::new();
        queries(&dashboard, &mut found);
        let name = regex::Regex::new(r"portcullis_[a-z0-9_]+").expect("regex");
        let mut charted = std::collections::BTreeSet::new();
        for q in &found {
            let names: Vec<&str> = name.find_iter(q).map(|m| m.as_str()).collect();
            assert!(!names.is_empty(), "a query names no gateway metric: {q}");
            for n in names {
                assert!(
                    exported.contains(n),
                    "`{n}` in `{q}` is not exported: {exported:?}"
                );
                charted.insert(
                    n.trim_end_matches("_bucket")
                        .trim_end_matches("_count")
                        .to_string(),
                );
            }
        }
        // Each family the gateway exports is on the dashboard.
        for family in [
            "portcullis_request_duration_seconds",
            "portcullis_access_decision_seconds",
            "portcullis_authn_total",
            "portcullis_sends_total",
            "portcullis_bans",
            "portcullis_sessions_issued_total",
            "portcullis_forward_auth_requests_total",
            "portcullis_requests_in_flight",
            "portcullis_build_info",
        ] {
            assert!(
                charted.contains(family),
                "{family} is not charted: {charted:?}"
            );
        }
    }
}

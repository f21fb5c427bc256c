//! Load generation for `portcullis bench` and the load bench: keep-alive HTTP/1.1 connections
//! sending a weighted mix of valid, expired and missing session cookies, closed-loop (as fast as
//! answers come) or open-loop at a fixed rate, with latency histograms per cookie kind.
//!
//! At a fixed rate, latency is measured from when a request was *due*, not when it was sent,
//! whenever the server's previous answer on the connection made it late, so a stalled server
//! shows up in the percentiles instead of silently lowering the rate.

mod hist;
pub mod http1;
mod login;
pub mod table;

pub use hist::Histogram;
pub use login::{login, LoginOptions};
pub use table::Row;

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Why a load run (or the sign-in before it) could not start. The message is for the operator.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The URL cannot be targeted (not `http://`, no host, does not resolve).
    #[error("target {url:?}: {reason}")]
    Target {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The `--mix` weights cannot be parsed.
    #[error("--mix {spec:?}: {reason}")]
    Mix {
        /// The spec as given.
        spec: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Arguments that do not go together (e.g. an `expired` share without a cookie).
    #[error("{0}")]
    Usage(String),
    /// The target refused or dropped the first connection.
    #[error("cannot reach {addr}: {source}")]
    Connect {
        /// The address connected to.
        addr: SocketAddr,
        /// The client's error.
        #[source]
        source: http1::ClientError,
    },
    /// Signing in through the JSON flow API failed; `reason` never holds the password.
    #[error("sign-in as {user:?}: {reason}")]
    Login {
        /// The username signed in as.
        user: String,
        /// What the flow answered or what failed.
        reason: String,
    },
}

/// Where the load goes: a plain `http://` URL, and the address to connect to.
#[derive(Debug, Clone)]
pub struct Target {
    /// The URL as given.
    pub url: String,
    /// The `Host` header: the URL's authority.
    pub authority: String,
    /// The request target sent on every request: the URL's path and query.
    pub path_and_query: String,
    /// Where connections go: the URL's host resolved, or `--connect`.
    pub addr: SocketAddr,
    /// `addr` was given (`--connect`): every host the tool talks to, the auth host of a
    /// sign-in included, is reached there, as behind one front proxy.
    pub pinned: bool,
}

impl Target {
    /// Parses `url`; `connect` overrides where to connect (the `Host` header stays the URL's),
    /// like curl's `--connect-to`, for a deployment whose name does not resolve from here.
    ///
    /// # Errors
    /// [`LoadError::Target`] for anything but a resolvable `http://` URL.
    pub fn parse(url: &str, connect: Option<SocketAddr>) -> Result<Target, LoadError> {
        let bad = |reason: &str| LoadError::Target {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        let parsed = url::Url::parse(url).map_err(|e| bad(&e.to_string()))?;
        match parsed.scheme() {
            "http" => {}
            "https" => {
                return Err(bad(
                    "https is not supported by the load tool's client (it measures the gateway, \
                     not TLS); target the gateway's plain-HTTP listener",
                ))
            }
            _ => return Err(bad("only http:// URLs can be targeted")),
        }
        let host = parsed.host_str().ok_or_else(|| bad("no host"))?;
        let port = parsed.port_or_known_default().unwrap_or(80);
        let authority = match parsed.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_string(),
        };
        let addr = match connect {
            Some(a) => a,
            None => (host.trim_matches(|c| c == '[' || c == ']'), port)
                .to_socket_addrs()
                .map_err(|e| bad(&format!("cannot resolve: {e}")))?
                .next()
                .ok_or_else(|| bad("the host resolves to no address"))?,
        };
        let mut path_and_query = parsed.path().to_string();
        if let Some(q) = parsed.query() {
            path_and_query.push('?');
            path_and_query.push_str(q);
        }
        Ok(Target {
            url: url.to_string(),
            authority,
            path_and_query,
            addr,
            pinned: connect.is_some(),
        })
    }

    /// `scheme://authority`, for the sign-in endpoints.
    pub fn origin(&self) -> String {
        format!("http://{}", self.authority)
    }
}

/// Which session cookie a request carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum CookieKind {
    /// A session cookie the gateway accepts.
    Valid,
    /// A session cookie past its `exp`: refused after the full verification work.
    Expired,
    /// No session cookie.
    Missing,
}

impl CookieKind {
    /// Every kind, in table order.
    pub(crate) const ALL: [CookieKind; 3] =
        [CookieKind::Valid, CookieKind::Expired, CookieKind::Missing];

    /// The kind's name in `--mix` and in the table.
    pub(crate) fn name(self) -> &'static str {
        match self {
            CookieKind::Valid => "valid",
            CookieKind::Expired => "expired",
            CookieKind::Missing => "missing",
        }
    }
}

/// Relative weights of the cookie kinds, from `valid=80,expired=10,missing=10`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Mix {
    /// Weight of requests with a valid cookie.
    pub(crate) valid: u32,
    /// Weight of requests with an expired cookie.
    pub(crate) expired: u32,
    /// Weight of requests without a cookie.
    pub(crate) missing: u32,
}

impl Mix {
    /// Parses `valid=N,expired=N,missing=N` (any subset, any order; missing kinds weigh 0).
    ///
    /// # Errors
    /// [`LoadError::Mix`] for unknown kinds, non-numbers, or all-zero weights.
    pub(crate) fn parse(spec: &str) -> Result<Mix, LoadError> {
        let bad = |reason: String| LoadError::Mix {
            spec: spec.to_string(),
            reason,
        };
        let mut mix = Mix {
            valid: 0,
            expired: 0,
            missing: 0,
        };
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| bad(format!("`{part}` is not kind=weight")))?;
            let v: u32 = v
                .trim()
                .parse()
                .map_err(|_| bad(format!("`{v}` is not a whole number")))?;
            match k.trim() {
                "valid" => mix.valid = v,
                "expired" => mix.expired = v,
                "missing" => mix.missing = v,
                other => {
                    return Err(bad(format!(
                        "unknown kind `{other}` (valid, expired, missing)"
                    )))
                }
            }
        }
        if mix.valid + mix.expired + mix.missing == 0 {
            return Err(bad("all weights are zero".into()));
        }
        Ok(mix)
    }

    /// The weight of kind `k`.
    pub(crate) fn weight(&self, k: CookieKind) -> u32 {
        match k {
            CookieKind::Valid => self.valid,
            CookieKind::Expired => self.expired,
            CookieKind::Missing => self.missing,
        }
    }

    /// A repeating sequence of kinds in proportion to the weights, interleaved (smooth weighted
    /// round-robin) so short runs see the mix too.
    fn schedule(&self) -> Vec<CookieKind> {
        let total: i64 = CookieKind::ALL
            .iter()
            .map(|&k| i64::from(self.weight(k)))
            .sum();
        let mut current = [0i64; 3];
        let mut out = Vec::with_capacity(total as usize);
        for _ in 0..total {
            for (c, k) in current.iter_mut().zip(CookieKind::ALL) {
                *c += i64::from(self.weight(k));
            }
            let Some((best, _)) = current
                .iter()
                .enumerate()
                .max_by_key(|(i, c)| (**c, -(*i as i64)))
            else {
                break;
            };
            current[best] -= total;
            out.push(CookieKind::ALL[best]);
        }
        out
    }
}

/// When a run ends.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Stop {
    /// After this long of measuring.
    After(Duration),
    /// After this many measured requests.
    Requests(u64),
}

/// Everything a run needs.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    /// Where the load goes.
    pub(crate) target: Target,
    /// Concurrent keep-alive connections.
    pub(crate) connections: usize,
    /// When the measured part ends.
    pub(crate) stop: Stop,
    /// Unmeasured time first, so connection set-up and cold caches do not count.
    pub(crate) warmup: Duration,
    /// Requests per second over all connections; `None` sends as fast as answers come.
    pub(crate) rate: Option<f64>,
    /// How long one request may take before it counts as an error and its connection is
    /// dropped: a stalled server must not stall the tool past its duration.
    pub(crate) timeout: Duration,
    /// Shares of requests per cookie kind.
    pub(crate) mix: Mix,
    /// The session cookie's name.
    pub(crate) cookie_name: String,
    /// The cookie value for [`CookieKind::Valid`] requests.
    pub(crate) valid_cookie: Option<String>,
    /// The cookie value for [`CookieKind::Expired`] requests.
    pub(crate) expired_cookie: Option<String>,
}

/// Results for one cookie kind.
#[derive(Clone, Default)]
pub(crate) struct KindStats {
    /// Latency of answered requests.
    pub(crate) latency: Histogram,
    /// Answers by status code.
    pub(crate) statuses: BTreeMap<u16, u64>,
    /// Requests that got no answer (connection error, timeout, malformed response).
    pub(crate) errors: u64,
}

impl KindStats {
    fn merge(&mut self, o: &KindStats) {
        self.latency.merge(&o.latency);
        for (s, n) in &o.statuses {
            *self.statuses.entry(*s).or_default() += n;
        }
        self.errors += o.errors;
    }

    /// Answered requests, whatever their status.
    pub(crate) fn requests(&self) -> u64 {
        self.statuses.values().sum()
    }
}

/// What a run measured.
pub(crate) struct Report {
    /// Length of the measured part.
    pub(crate) elapsed: Duration,
    /// Results per cookie kind in the mix.
    pub(crate) kinds: BTreeMap<CookieKind, KindStats>,
    /// Connections opened during the measured part (1 per connection = full keep-alive).
    pub(crate) connects: u64,
}

impl Report {
    /// Every kind's results merged.
    pub(crate) fn total(&self) -> KindStats {
        let mut t = KindStats::default();
        for k in self.kinds.values() {
            t.merge(k);
        }
        t
    }

    /// The table: one row for all requests, then one per cookie kind in the mix.
    pub(crate) fn rows(&self) -> Vec<Row> {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        let row = |name: &str, s: &KindStats| {
            let ms = |p| Some(s.latency.percentile(p).as_secs_f64() * 1e3);
            let mut note: Vec<String> = s
                .statuses
                .iter()
                .map(|(code, n)| format!("{code}x{n}"))
                .collect();
            if s.errors > 0 {
                note.push(format!("errors={}", s.errors));
            }
            Row {
                rps: Some(s.requests() as f64 / secs),
                p50_ms: ms(50.0),
                p99_ms: ms(99.0),
                p999_ms: ms(99.9),
                note: note.join(" "),
                ..Row::new(name)
            }
        };
        let mut rows = vec![row("all", &self.total())];
        for (k, s) in &self.kinds {
            rows.push(row(k.name(), s));
        }
        rows
    }
}

/// Live counters for progress display.
#[derive(Default)]
pub(crate) struct Progress {
    /// Measured requests answered so far (warm-up not counted).
    pub(crate) done: AtomicU64,
    /// Measured requests that failed so far.
    pub(crate) errors: AtomicU64,
}

const WARMUP: u8 = 0;
const MEASURE: u8 = 1;
const STOP: u8 = 2;

struct Shared {
    requests: BTreeMap<CookieKind, Vec<u8>>,
    schedule: Vec<CookieKind>,
    phase: AtomicU8,
    /// Requests still to send in [`Stop::Requests`] mode.
    budget: AtomicI64,
    connects: AtomicU64,
    progress: Arc<Progress>,
    addr: SocketAddr,
    /// Per-connection interval at a fixed rate.
    interval: Option<Duration>,
    connections: usize,
    timeout: Duration,
}

/// The JWT with its `exp` moved into the past and the signature left as is: the gateway does
/// the full verification work (header, key lookup, HMAC) and refuses it, as it would a token
/// that really expired. Used when no `--expired-cookie` is given.
pub(crate) fn expired_variant(token: &str) -> Option<String> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut parts = token.split('.');
    let (h, p, s) = (parts.next()?, parts.next()?, parts.next()?);
    let mut claims: serde_json::Value = serde_json::from_slice(&b64.decode(p).ok()?).ok()?;
    let obj = claims.as_object_mut()?;
    obj.insert("exp".into(), serde_json::json!(1_000_000_000));
    obj.insert("iat".into(), serde_json::json!(999_990_000));
    let p = b64.encode(serde_json::to_vec(&claims).ok()?);
    Some(format!("{h}.{p}.{s}"))
}

impl Plan {
    fn request(&self, kind: CookieKind) -> Result<Vec<u8>, LoadError> {
        let cookie = match kind {
            CookieKind::Valid => Some(self.valid_cookie.as_deref().ok_or_else(|| {
                LoadError::Usage("the mix has valid cookies: pass --cookie or --login".into())
            })?),
            CookieKind::Expired => Some(self.expired_cookie.as_deref().ok_or_else(|| {
                LoadError::Usage(
                    "the mix has expired cookies: pass --cookie, --login or --expired-cookie"
                        .into(),
                )
            })?),
            CookieKind::Missing => None,
        };
        let mut r = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: portcullis-bench\r\nAccept: */*\r\n",
            self.target.path_and_query, self.target.authority
        );
        if let Some(c) = cookie {
            r.push_str(&format!("Cookie: {}={c}\r\n", self.cookie_name));
        }
        r.push_str("\r\n");
        Ok(r.into_bytes())
    }
}

/// Runs the plan; `progress` is updated as requests complete.
///
/// # Errors
/// [`LoadError::Usage`] when the mix needs a cookie that was not given, [`LoadError::Connect`]
/// when the target cannot be reached at all.
pub(crate) async fn run(plan: &Plan, progress: Arc<Progress>) -> Result<Report, LoadError> {
    let mut requests = BTreeMap::new();
    for k in CookieKind::ALL {
        if plan.mix.weight(k) > 0 {
            requests.insert(k, plan.request(k)?);
        }
    }
    // Fail fast with a clear message rather than counting every request as an error.
    http1::Conn::connect(plan.target.addr)
        .await
        .map_err(|source| LoadError::Connect {
            addr: plan.target.addr,
            source,
        })?;
    let connections = plan.connections.max(1);
    let shared = Arc::new(Shared {
        requests,
        schedule: plan.mix.schedule(),
        phase: AtomicU8::new(if plan.warmup.is_zero() {
            MEASURE
        } else {
            WARMUP
        }),
        budget: AtomicI64::new(match plan.stop {
            Stop::Requests(n) => i64::try_from(n).unwrap_or(i64::MAX),
            Stop::After(_) => i64::MAX,
        }),
        connects: AtomicU64::new(0),
        progress,
        addr: plan.target.addr,
        interval: plan
            .rate
            .filter(|r| *r > 0.0)
            .map(|r| Duration::from_secs_f64(connections as f64 / r)),
        connections,
        timeout: plan.timeout,
    });
    let workers: Vec<_> = (0..connections)
        .map(|i| tokio::spawn(worker(i, shared.clone())))
        .collect();

    if !plan.warmup.is_zero() {
        tokio::time::sleep(plan.warmup).await;
        shared.phase.store(MEASURE, Ordering::SeqCst);
    }
    let started = Instant::now();
    match plan.stop {
        Stop::After(d) => {
            tokio::time::sleep(d).await;
            shared.phase.store(STOP, Ordering::SeqCst);
        }
        Stop::Requests(_) => {
            while shared.phase.load(Ordering::SeqCst) != STOP {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
    let mut kinds: BTreeMap<CookieKind, KindStats> = BTreeMap::new();
    for w in workers {
        // A worker that panicked (it has no code path that does) loses its share of results.
        if let Ok(stats) = w.await {
            for (k, s) in stats {
                kinds.entry(k).or_default().merge(&s);
            }
        }
    }
    // Up to here: requests in flight at the stop are counted, so their time is too. Each is
    // bounded by the timeout.
    let elapsed = started.elapsed();
    Ok(Report {
        elapsed,
        kinds,
        connects: shared.connects.load(Ordering::SeqCst),
    })
}

/// One connection's loop: pick the next cookie kind, wait for its slot at a fixed rate, send,
/// record. Only requests started in the measured phase are recorded.
async fn worker(id: usize, sh: Arc<Shared>) -> BTreeMap<CookieKind, KindStats> {
    let mut stats: BTreeMap<CookieKind, KindStats> = BTreeMap::new();
    let mut conn: Option<http1::Conn> = None;
    // Start each connection at a different place in the mix, so the mix holds at any instant.
    let mut slot = id.wrapping_mul(7919);
    let start = tokio::time::Instant::now();
    // Spread connections' first sends over one interval instead of a burst.
    let mut due = sh
        .interval
        .map(|iv| start + iv.mul_f64(id as f64 / sh.connections as f64));
    // When this connection's previous exchange ended.
    let mut last_done = start.into_std();
    loop {
        let kind = sh.schedule[slot % sh.schedule.len()];
        slot = slot.wrapping_add(1);
        let Some(request) = sh.requests.get(&kind) else {
            continue;
        };
        let intended = pace(&mut due, sh.interval, last_done).await;
        // Read after any wait for the slot, so nothing starts once the run has stopped.
        let phase = sh.phase.load(Ordering::Relaxed);
        if phase == STOP {
            break;
        }
        let measuring = phase == MEASURE;
        if measuring && sh.budget.fetch_sub(1, Ordering::Relaxed) <= 0 {
            sh.phase.store(STOP, Ordering::SeqCst);
            break;
        }
        let c = match conn.as_mut() {
            Some(c) => c,
            None => match tokio::time::timeout(sh.timeout, http1::Conn::connect(sh.addr)).await {
                Ok(Ok(c)) => {
                    if measuring {
                        sh.connects.fetch_add(1, Ordering::Relaxed);
                    }
                    conn.insert(c)
                }
                Ok(Err(_)) | Err(_) => {
                    if measuring {
                        count(&mut stats, &sh, kind, None);
                    }
                    // Back off a little: a refused connect returns at once.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let result = tokio::time::timeout(sh.timeout, c.roundtrip(request)).await;
        last_done = Instant::now();
        let answer = match result {
            Ok(Ok(reply)) => {
                if !reply.keep_alive {
                    conn = None;
                }
                Some((reply.status, last_done - intended))
            }
            // A failed or timed-out exchange leaves the connection in an unknown state.
            Ok(Err(_)) | Err(_) => {
                conn = None;
                None
            }
        };
        if measuring {
            count(&mut stats, &sh, kind, answer);
        }
    }
    stats
}

/// Waits for the next due time at a fixed rate (nothing to wait for otherwise) and returns
/// the instant the request's latency counts from.
async fn pace(
    due: &mut Option<tokio::time::Instant>,
    interval: Option<Duration>,
    last_done: Instant,
) -> Instant {
    let (Some(d), Some(iv)) = (due.as_mut(), interval) else {
        return Instant::now();
    };
    tokio::time::sleep_until(*d).await;
    let at = d.into_std();
    *d += iv;
    // Latency counts from when the request was due only if the server made it late: the
    // previous answer on this connection came after that. Otherwise the lateness is the
    // timer's (tokio's has 1 ms granularity), not the server's, and counting it would add up
    // to a millisecond to every request.
    if last_done > at {
        at
    } else {
        Instant::now()
    }
}

/// Counts one measured request: its status and latency when answered, an error otherwise.
fn count(
    stats: &mut BTreeMap<CookieKind, KindStats>,
    sh: &Shared,
    kind: CookieKind,
    answer: Option<(u16, Duration)>,
) {
    let s = stats.entry(kind).or_default();
    match answer {
        Some((status, latency)) => {
            s.latency.record(latency);
            *s.statuses.entry(status).or_default() += 1;
            sh.progress.done.fetch_add(1, Ordering::Relaxed);
        }
        None => {
            s.errors += 1;
            sh.progress.errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mix_parses_and_interleaves_in_proportion() {
        let m = Mix::parse("valid=80, expired=10,missing=10").unwrap();
        let s = m.schedule();
        assert_eq!(s.len(), 100);
        assert_eq!(s.iter().filter(|k| **k == CookieKind::Valid).count(), 80);
        assert_eq!(s.iter().filter(|k| **k == CookieKind::Missing).count(), 10);
        // Interleaved: no run of ten expired in a row.
        assert!(!s
            .windows(10)
            .any(|w| w.iter().all(|k| *k == CookieKind::Expired)));
        assert!(Mix::parse("valid=0").is_err());
        assert!(Mix::parse("stale=3").is_err());
        assert!(Mix::parse("valid=x").is_err());
    }

    #[test]
    fn targets_must_be_plain_http() {
        assert!(Target::parse("https://a.test/", None).is_err());
        let t = Target::parse(
            "http://app.test:9000/x?y=1",
            Some(([127, 0, 0, 1], 9).into()),
        )
        .unwrap();
        assert_eq!(t.authority, "app.test:9000");
        assert_eq!(t.path_and_query, "/x?y=1");
    }

    #[test]
    fn expired_variant_moves_exp_into_the_past() {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let p = b64.encode(br#"{"sub":"a","exp":99999999999}"#);
        let t = expired_variant(&format!("h.{p}.sig")).unwrap();
        let claims = t.split('.').nth(1).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&b64.decode(claims).unwrap()).unwrap();
        assert_eq!(v["exp"], 1_000_000_000);
        assert!(t.ends_with(".sig"));
    }

    #[tokio::test]
    async fn at_a_fixed_rate_latency_counts_from_the_due_time_only_when_the_server_was_late() {
        let iv = Duration::from_millis(20);
        let first = tokio::time::Instant::now() + iv;
        let mut due = Some(first);
        // The previous answer came before the slot: wait for it, count from the send.
        let before = Instant::now();
        let from = pace(&mut due, Some(iv), before).await;
        assert!(from >= first.into_std(), "sent before it was due");
        assert_eq!(due, Some(first + iv), "the next slot is one interval later");
        // The previous answer came after the slot was due: count from the slot.
        let late = Instant::now() + Duration::from_secs(60);
        let from = pace(&mut due, Some(iv), late).await;
        assert_eq!(from, (first + iv).into_std());
        assert_eq!(due, Some(first + iv * 2));
        // As fast as possible: no wait, count from now.
        let mut none = None;
        let t = Instant::now();
        assert!(pace(&mut none, None, late).await >= t);
        assert!(none.is_none());
    }
}

//! One access-rules table, run in proxy mode (tests/e2e/rules.rs) and through the forward-auth
//! endpoints, a real nginx and a real Caddy (tests/forward_auth/rules.rs): the same rules must give the same
//! answers whichever way a request reaches the gateway.

/// The app the rules protect.
pub const GRAFANA: &str = "grafana.example.test";

/// `[networks]` plus the grafana app with its rules; `upstream` and `flow` as the suite's.
/// The client address the rules see is the one the gateway trusts: loopback peers are trusted
/// proxies by default, so `X-Forwarded-For` names it.
pub fn rules_toml(upstream: &str, flow: &str) -> String {
    format!(
        r#"
[networks]
monitoring = ["10.9.0.0/16"]

[[apps]]
name = "grafana"
hosts = ["{GRAFANA}"]
upstream = "{upstream}"
flow = "{flow}"
default_policy = "deny"

[[apps.rules]]
resources = ["^/api/"]
networks = ["monitoring"]
policy = "bypass"

[[apps.rules]]
resources = ["^/ops/"]
subject = "group:admins"
policy = "one_factor"

[[apps.rules]]
methods = ["DELETE"]
policy = "deny"

[[apps.rules]]
resources = ["^/app/", "^/api/"]
policy = "one_factor"
"#
    )
}

/// Who asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    Anonymous,
    /// alice, in `admins`.
    Admin,
    /// bob, not in `admins`.
    Staff,
}

/// What the user notices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// The app answers.
    Passes,
    /// Sent to sign in (401 / redirect).
    SignIn,
    /// 403.
    Denied,
}

/// method, path, who, the client address (`X-Forwarded-For`), what is seen.
pub type Case = (&'static str, &'static str, Who, &'static str, Seen);

pub const CASES: &[Case] = &[
    // networks: bypass only from the monitoring network, as the gateway trusts it
    (
        "GET",
        "/api/health",
        Who::Anonymous,
        "10.9.1.1",
        Seen::Passes,
    ),
    (
        "GET",
        "/api/health",
        Who::Anonymous,
        "203.0.113.7",
        Seen::SignIn,
    ),
    (
        "GET",
        "/api/health",
        Who::Staff,
        "203.0.113.7",
        Seen::Passes,
    ),
    // a bent path never takes the bypass, and is judged as what it resolves to
    (
        "GET",
        "/api/..%2fapp/x",
        Who::Anonymous,
        "10.9.1.1",
        Seen::SignIn,
    ),
    (
        "GET",
        "/api/%2e%2e/ops/x",
        Who::Staff,
        "10.9.1.1",
        Seen::Denied,
    ),
    // subject
    ("GET", "/ops/x", Who::Admin, "203.0.113.7", Seen::Passes),
    ("GET", "/ops/x", Who::Staff, "203.0.113.7", Seen::Denied),
    ("GET", "/ops/x", Who::Anonymous, "203.0.113.7", Seen::SignIn),
    // methods
    ("DELETE", "/app/x", Who::Admin, "203.0.113.7", Seen::Denied),
    ("GET", "/app/x", Who::Staff, "203.0.113.7", Seen::Passes),
    ("GET", "/app/x", Who::Anonymous, "203.0.113.7", Seen::SignIn),
    // unmatched: the default policy denies, signed in or not
    ("GET", "/other", Who::Staff, "203.0.113.7", Seen::Denied),
    ("GET", "/other", Who::Anonymous, "203.0.113.7", Seen::Denied),
];

/// What a status says, for a case's `Seen`.
pub fn seen(status: u16) -> Option<Seen> {
    match status {
        200 => Some(Seen::Passes),
        401 | 302 | 303 => Some(Seen::SignIn),
        403 => Some(Seen::Denied),
        _ => None,
    }
}

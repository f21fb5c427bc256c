//! `portcullis access check`: what a user at an address would get for a URL, decided by the
//! same [`Gate::judge`] that `serve` runs for every request.

use crate::access::{AccessRequest, Decision, Gate, Matched, Verdict, Wanted};
use crate::clock::Clock;
use crate::config::{Config, Policy};
use crate::session::{Claims, Factors, SessionService};
use crate::store::{MemoryStore, Store};
use clap::Args;
use http::{HeaderMap, Method};
use std::net::IpAddr;
use std::process::ExitCode;
use std::sync::Arc;

/// `access check` arguments.
#[derive(Args)]
pub(crate) struct CheckArgs {
    /// The user, as stored (their groups are read from the database); anonymous without it.
    #[arg(long)]
    user: Option<String>,
    /// The client address, as the gateway would trust it (for rules with `networks`).
    #[arg(long)]
    ip: Option<IpAddr>,
    /// The request method.
    #[arg(long, default_value = "GET")]
    method: String,
    /// The factors the user's session proves (`password,email,sms`); default: what the app's
    /// flow asks for.
    #[arg(long, value_delimiter = ',')]
    factors: Option<Vec<String>>,
    /// How long ago the user signed in (`15m`); default: just now.
    #[arg(long)]
    age: Option<String>,
    /// The URL requested, e.g. `https://grafana.example.com/admin`.
    url: String,
}

/// Prints the app, the rule that matched, the verdict and what the user would be asked for.
/// Exit 0 when it could be judged, 1 for a bad argument or an unknown user.
pub(crate) fn check(config: Config, args: CheckArgs) -> ExitCode {
    match run(config, &args) {
        Ok(lines) => {
            for l in lines {
                println!("{l}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(config: Config, args: &CheckArgs) -> Result<Vec<String>, String> {
    let url = url::Url::parse(&args.url).map_err(|e| {
        format!(
            "`{}` is not a URL like https://app.example.com/path ({e})",
            args.url
        )
    })?;
    let host = url.host_str().ok_or("the URL has no host")?;
    let authority = match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    };
    let path_and_query = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_string(),
    };
    let method = Method::from_bytes(args.method.to_ascii_uppercase().as_bytes())
        .map_err(|_| format!("`{}` is not an HTTP method", args.method))?;
    let user = match &args.user {
        Some(u) => Some(super::read_user(&config, u)?),
        None => None,
    };
    let age = match &args.age {
        Some(a) => humantime::parse_duration(a)
            .map_err(|e| format!("--age `{a}` is not a duration like \"15m\" ({e})"))?,
        None => std::time::Duration::ZERO,
    };
    let config = Arc::new(config);
    // The gate verifies no cookie here (the session is given), but it needs keys to exist:
    // throwaway ones in a private folder, so nothing of the deployment's is read or written.
    let scratch = std::env::temp_dir().join(format!("portcullis-access-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).map_err(|e| format!("{}: {e}", scratch.display()))?;
    let sessions = SessionService::new(
        &config.session,
        scratch.join("keys.json"),
        Arc::new(MemoryStore::new()) as Arc<dyn Store>,
    );
    let _ = std::fs::remove_dir_all(&scratch);
    let sessions = Arc::new(sessions.map_err(|e| e.to_string())?);
    let gate = Gate::new(config.clone(), sessions);
    let headers = HeaderMap::new();
    let req = AccessRequest {
        method: &method,
        scheme: url.scheme(),
        authority: &authority,
        path: url.path(),
        path_and_query: &path_and_query,
        headers: &headers,
        client: args.ip,
    };
    let app = gate.app(&authority);
    let claims = match (&user, app) {
        (Some(u), Some(app)) => Some(Arc::new(session_of(
            &config,
            &app.flow,
            u,
            args.factors.as_deref(),
            age,
        )?)),
        _ => None,
    };
    let verdict = gate.judge(&req, || claims.clone());
    Ok(describe(&gate, &req, &verdict, args, &claims))
}

/// The session `user` would hold after completing `flow` `age` ago, proving `factors` (or
/// every factor the flow asks for).
fn session_of(
    config: &Config,
    flow: &str,
    user: &crate::admin::UserView,
    factors: Option<&[String]>,
    age: std::time::Duration,
) -> Result<Claims, String> {
    let stages = config
        .flow(flow)
        .map(|f| f.stages.clone())
        .unwrap_or_default();
    let proved =
        match factors {
            Some(names) => names.iter().filter(|n| !n.trim().is_empty()).try_fold(
                Factors::NONE,
                |acc, n| {
                    Factors::named(n.trim())
                        .map(|f| acc.with(f))
                        .ok_or_else(|| {
                            format!("--factors: `{n}` is not one of password, email, sms")
                        })
                },
            )?,
            None => stages
                .iter()
                .filter_map(|s| config.stages.get(s))
                .map(Factors::satisfying)
                .fold(Factors::NONE, Factors::with),
        };
    let now_ms = crate::clock::SystemClock.now_ms();
    let iat_ms = now_ms - i64::try_from(age.as_millis()).unwrap_or(i64::MAX / 2);
    Ok(Claims {
        sub: user.username.clone(),
        name: user.name.clone(),
        email: user.email.clone().unwrap_or_default(),
        groups: user.groups.clone(),
        amr: vec!["identification".into()],
        factors: proved.names().map(str::to_string).collect(),
        flows: Vec::new(),
        sid: "access-check".into(),
        iat: iat_ms.div_euclid(1000),
        exp: now_ms.div_euclid(1000) + 3600,
        iss: config.session.issuer.clone(),
        iat_ms,
        db: String::new(),
        identity: Default::default(),
        proof: Default::default(),
    })
}

fn describe(
    gate: &Gate,
    req: &AccessRequest<'_>,
    v: &Verdict<'_>,
    args: &CheckArgs,
    claims: &Option<Arc<Claims>>,
) -> Vec<String> {
    let mut out = Vec::new();
    let who = match claims {
        Some(c) => format!(
            "{} (groups: {}; factors: {}; signed in {} ago)",
            c.sub,
            if c.groups.is_empty() {
                "-".into()
            } else {
                c.groups.join(",")
            },
            c.proved().names().collect::<Vec<_>>().join(","),
            args.age.as_deref().unwrap_or("0s"),
        ),
        None => "anonymous".into(),
    };
    out.push(format!(
        "request: {} {} from {}",
        args.method.to_ascii_uppercase(),
        args.url,
        args.ip
            .map_or("an unknown address".into(), |ip| ip.to_string())
    ));
    out.push(format!("user: {who}"));
    let app = match &v.decision {
        Decision::UnknownHost => None,
        Decision::Bypass { app }
        | Decision::Allow { app, .. }
        | Decision::Unauthenticated { app, .. }
        | Decision::Denied { app, .. }
        | Decision::Refused { app, .. }
        | Decision::Forbidden { app, .. }
        | Decision::StepUp { app, .. } => Some(*app),
    };
    if let Some(app) = app {
        out.push(format!("app: {} (flow {})", app.name, app.flow));
    }
    out.push(format!(
        "rule: {}",
        match (v.matched, app) {
            (Matched::NoApp, _) | (_, None) => "none: no app serves this host".to_string(),
            (Matched::BypassKey, _) => "bypass (the app's `bypass` key)".to_string(),
            (Matched::Rule(i), Some(app)) => format!(
                "rules[{i}]: {}",
                app.access.rules.get(i).map_or("", |r| r.summary.as_str())
            ),
            (Matched::Default, Some(app)) => format!(
                "none matched: default_policy = {}",
                app.access.default_policy.as_str()
            ),
        }
    ));
    let verdict = match &v.decision {
        Decision::UnknownHost => "not found (404): no app serves this host",
        Decision::Bypass { .. } => "bypass: forwarded without a session",
        Decision::Allow { .. } => "allow: forwarded with the user's identity",
        Decision::Unauthenticated { .. } => "sign in: redirected to sign-in (401 for API calls)",
        Decision::Denied { .. } => "deny: 403",
        Decision::Refused { .. } => "refused: 403 (the app's policies)",
        Decision::Forbidden { .. } => "forbidden: 403 (not in the app's allowed_groups)",
        Decision::StepUp { .. } => "step up: sent to the app's flow (401 for API calls)",
    };
    out.push(format!("verdict: {verdict}"));
    if let (Decision::Unauthenticated { .. } | Decision::StepUp { .. }, Some(app)) =
        (&v.decision, app)
    {
        out.push(format!("sign-in: {}", gate.login_url_absolute(app, req)));
    }
    policy_lines(gate, req, v, app, claims, &mut out);
    for w in &v.wanted {
        out.push(format!(
            "asks for: {}",
            wanted(gate, app.map(|a| a.flow.as_str()), w)
        ));
    }
    if let Some(app) = app {
        if matches!(v.matched, Matched::Default) && app.access.default_policy == Policy::Deny {
            out.push("note: no rule matched this request".into());
        }
    }
    out
}

fn wanted(gate: &Gate, flow: Option<&str>, w: &Wanted) -> String {
    let names = |f: Factors| f.names().collect::<Vec<_>>().join(" or ");
    let stages = flow
        .and_then(|f| gate.config().flow(f))
        .map(|f| {
            f.stages
                .iter()
                .filter(|s| {
                    gate.config()
                        .stages
                        .get(*s)
                        .is_some_and(|st| !Factors::satisfying(st).is_empty())
                })
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    match w {
        Wanted::SignIn => format!(
            "a sign-in through flow {} (stages that ask for a factor: {stages})",
            flow.unwrap_or("-")
        ),
        Wanted::FlowFactors(f) => format!("the flow's missing factors: {}", names(*f)),
        Wanted::SecondFactor => "a second factor (two_factor)".into(),
        Wanted::Factors(f) => format!(
            "the factors {}",
            f.names().collect::<Vec<_>>().join(" and ")
        ),
        Wanted::Fresh(d) => format!(
            "a sign-in within the last {}: the flow's factors again ({stages})",
            humantime::format_duration(*d)
        ),
        Wanted::Group => {
            "membership of one of the app's allowed_groups (a sign-in cannot give it)".into()
        }
    }
}

/// The app's policies: each one's verdict, judged by the decision (or, when it stopped before
/// them, as they would judge this session), then the binding's result.
fn policy_lines(
    gate: &Gate,
    req: &AccessRequest<'_>,
    v: &Verdict<'_>,
    app: Option<&crate::config::AppConfig>,
    claims: &Option<Arc<Claims>>,
    out: &mut Vec<String>,
) {
    let Some(app) = app.filter(|a| !a.policies.is_empty()) else {
        return;
    };
    let (judged, note) = match (&v.policies, claims) {
        (Some(p), _) => (p.clone(), ""),
        (None, Some(c)) => match gate.app_policies(app, req, c) {
            Some(p) => (
                p,
                " (not reached: judged once the rest lets the session in)",
            ),
            None => return,
        },
        (None, None) => {
            out.push("app policies: not judged without a session".into());
            return;
        }
    };
    for (name, outcome) in &judged.outcomes {
        out.push(format!("app policy {name}: {}", outcome.as_str()));
    }
    out.push(if judged.passed {
        format!("app policies: pass{note}")
    } else {
        format!("app policies: refuse: {}{note}", judged.messages.join(" "))
    });
}

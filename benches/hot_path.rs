//! Micro-benchmarks of what one request costs inside the gateway, and of the sign-in pieces:
//! `cargo bench --bench hot_path` (add `-- --quick` for a fast pass, or a name filter).
//!
//! Everything is built the way the gateway builds it (`app::Parts::build` from a config), so
//! the numbers are for the real keys, store and rules, not for stand-ins. Groups:
//! - `session/`: cookie lookup, HS256 verification (the only algorithm session tokens may use:
//!   a session's first request, later ones, a refused token), issuing a session;
//! - `access/`: the one access decision, signed in and without a cookie;
//! - `rules/`: the same decision for an app with 1, 10 and 50 access rules, the last one
//!   matching (the worst case), beside the app without rules, and for an app with one
//!   expression policy bound to it (judged inline on every signed-in request);
//! - `headers/`: identity headers stripped and injected, the gateway's cookies removed;
//! - `assertion/`: the EdDSA identity assertion for apps with `assertion = true`;
//! - `forward_auth/`: an nginx `auth_request` answered for a signed-in user;
//! - `rd/`: return-address validation;
//! - `flow/`: one step of each cheap stage (identification, deny, prompt, user_login);
//! - `otp/`: one-time code generation, hash and verification;
//! - `argon2id/`: one hash with the configured parameters (what a password sign-in costs).

// `criterion_group!` defines an undocumented `pub fn benches`; a bench binary has no API.
#![allow(missing_docs)]

use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion};
use http::{HeaderMap, HeaderValue, Method};
use pingora::http::RequestHeader;
use portcullis::access::{AccessRequest, Decision, Gate};
use portcullis::app::Parts;
use portcullis::config::Config;
use portcullis::portal::{self, Response};
use portcullis::redirect::RedirectPolicy;
use portcullis::secret::SecretString;
use portcullis::session::{cookie, NewSession};
use portcullis::store::User;
use std::path::Path;
use std::sync::Arc;

const COOKIE: &str = "portcullis_session";
const FLOW_COOKIE: &str = "portcullis_flow";
const PASSWORD: &str = "correct horse";

/// The gateway's config for the benches. `cheap_passwords` makes argon2 near-free, for the
/// fixture whose flow steps need a password stage passed in their (untimed) set-up.
fn config(dir: &Path, cheap_passwords: bool) -> Config {
    config_with_rules(dir, cheap_passwords, "")
}

/// [`config`] with `rules` (`[[apps.rules]]` tables) added to the app.
fn config_with_rules(dir: &Path, cheap_passwords: bool, rules: &str) -> Config {
    let passwords = if cheap_passwords {
        "[passwords]\nmemory_kib = 8\niterations = 1\nparallelism = 1\ndanger_weak_hashing = true"
    } else {
        ""
    };
    let text = format!(
        r#"
{passwords}
[server]
listen = ["127.0.0.1:0"]
threads = 1
[storage]
path = "{d}/db"
[admin]
socket = "{d}/admin.sock"
[session]
cookie_name = "{COOKIE}"
[[apps]]
name = "app"
hosts = ["app.test"]
upstream = "127.0.0.1:9"
flow = "login"
bypass = ["^/public/"]
{rules}
[[flows]]
slug = "login"
title = "Sign in"
designation = "authentication"
stages = ["identify", "password", "login"]
[[flows]]
slug = "finish"
title = "Sign in"
designation = "authentication"
stages = ["identify", "password", "ask", "login"]
[[flows]]
slug = "refuse"
title = "Sign in"
designation = "authentication"
stages = ["identify", "no"]
[[flows]]
slug = "ask"
title = "Sign in"
designation = "authentication"
stages = ["ask", "identify", "login"]
[stages.no]
kind = "deny"
deny_message = "Not today."
[stages.ask]
kind = "prompt"
fields = [{{ key = "nickname", label = "Nickname", pattern = "^[a-z]+$" }}]
[stages.identify]
kind = "identification"
user_fields = ["username", "email"]
[stages.password]
kind = "password"
[stages.login]
kind = "user_login"
"#,
        d = dir.display()
    );
    match Config::from_toml(&text, &dir.join("bench.toml"), std::iter::empty()) {
        Ok(c) => c,
        Err(e) => panic!("bench config refused: {e}"),
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    parts: Parts,
    token: String,
    headers: HeaderMap,
    rt: tokio::runtime::Runtime,
}

/// Alice's session, as the user_login stage issues it.
fn new_session() -> NewSession {
    NewSession {
        username: "alice".into(),
        name: "Alice Example".into(),
        email: "alice@example.com".into(),
        groups: vec!["staff".into(), "admins".into()],
        amr: vec!["password".into()],
        factors: portcullis::session::Factors::PASSWORD,
        flows: vec!["login".into()],
        lifetime_secs: 3600,
    }
}

fn fixture(cheap_passwords: bool) -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let parts = Parts::build(config(dir.path(), cheap_passwords)).expect("gateway parts");
    let mut alice = User::new("alice", 0);
    alice.name = "Alice Example".into();
    alice.email = Some("alice@example.com".into());
    alice.groups = vec!["staff".into(), "admins".into()];
    alice.password_hash = Some(
        parts
            .passwords
            .hash_blocking(&SecretString::new(PASSWORD))
            .expect("hash"),
    );
    parts.store.put_user(&alice).expect("put user");
    let (token, _) = parts.sessions.issue(new_session()).expect("issue");
    let mut headers = HeaderMap::new();
    let cookies = format!("_ga=GA1.2.3; {COOKIE}={token}; theme=dark");
    headers.insert(
        http::header::COOKIE,
        HeaderValue::from_str(&cookies).expect("cookie"),
    );
    headers.insert(
        http::header::ACCEPT,
        HeaderValue::from_static("text/html,*/*"),
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    Fixture {
        _dir: dir,
        parts,
        token,
        headers,
        rt,
    }
}

fn session(c: &mut Criterion, f: &Fixture) {
    let sessions = &f.parts.sessions;
    c.bench_function("session/cookie_find", |b| {
        b.iter(|| cookie::find(black_box(&f.headers), COOKIE))
    });
    // A session's first request: the full check (decode, key lookup, HMAC, claims), on a token
    // never seen before.
    c.bench_function("session/jwt_verify_hs256_first", |b| {
        b.iter_batched(
            || sessions.issue(new_session()).expect("issue").0,
            |token| sessions.verify(black_box(&token)).expect("valid"),
            BatchSize::SmallInput,
        )
    });
    // Every later request: the verified token found again, expiry and revocation re-checked.
    c.bench_function("session/jwt_verify_hs256_again", |b| {
        b.iter(|| sessions.verify(black_box(&f.token)).expect("valid"))
    });
    // Refusals cost the same verification work (decode, key lookup, HMAC) before the verdict.
    let expired = f
        .parts
        .sessions
        .issue(NewSession {
            lifetime_secs: -3600,
            ..new_session()
        })
        .expect("issue")
        .0;
    c.bench_function("session/jwt_refuse_expired_hs256", |b| {
        b.iter(|| sessions.verify(black_box(&expired)).expect_err("expired"))
    });
    // What user_login does at the end of a sign-in: sign the JWT and record the session.
    c.bench_function("session/issue_hs256", |b| {
        b.iter(|| sessions.issue(new_session()).expect("issue"))
    });
    c.bench_function("session/find_and_verify", |b| {
        b.iter(|| {
            f.parts
                .gate
                .session(black_box(&f.headers))
                .expect("signed in")
        })
    });
}

fn access(c: &mut Criterion, f: &Fixture) {
    let gate = &f.parts.gate;
    let req = AccessRequest {
        method: &Method::GET,
        scheme: "http",
        authority: "app.test:9000",
        path: "/reports/2024",
        path_and_query: "/reports/2024?page=2",
        headers: &f.headers,
        client: Some(std::net::Ipv4Addr::LOCALHOST.into()),
    };
    c.bench_function("access/decide_signed_in", |b| {
        b.iter(|| match gate.decide(black_box(&req)) {
            Decision::Allow { claims, .. } => claims,
            other => panic!("not allowed: {other:?}"),
        })
    });
    let bare = HeaderMap::new();
    let anon = AccessRequest {
        headers: &bare,
        ..req
    };
    c.bench_function("access/decide_no_cookie", |b| {
        b.iter(|| gate.decide(black_box(&anon)))
    });
}

/// `[[apps.rules]]` for the rules benches: `n - 1` rules that do not match
/// `GET /reports/2024` (other paths, other methods, another network, a regex), then one
/// that does.
fn rules_text(n: usize) -> String {
    let mut t = String::new();
    for i in 0..n.saturating_sub(1) {
        let rule = match i % 4 {
            0 => format!("resources = [\"^/r{i}/\", \"^/s{i}/\"]\npolicy = \"deny\""),
            1 => format!("resources = [\"^/r{i}/\"]\nmethods = [\"POST\"]\npolicy = \"deny\""),
            2 => format!("networks = [\"10.{i}.0.0/16\"]\npolicy = \"bypass\""),
            _ => format!("resources = [\"^/r{i}/[0-9]+$\"]\npolicy = \"deny\""),
        };
        t.push_str(&format!("[[apps.rules]]\n{rule}\n"));
    }
    t.push_str("[[apps.rules]]\nresources = [\"^/reports/\"]\nmethods = [\"GET\", \"HEAD\"]\npolicy = \"one_factor\"\n");
    t
}

/// The signed-in decision with 1, 10 and 50 rules (the last matching), beside today's app
/// without rules. All in memory: the gates share the fixture's session service.
fn rules(c: &mut Criterion, f: &Fixture) {
    let req = AccessRequest {
        method: &Method::GET,
        scheme: "http",
        authority: "app.test:9000",
        path: "/reports/2024",
        path_and_query: "/reports/2024?page=2",
        headers: &f.headers,
        client: Some(std::net::Ipv4Addr::new(192, 0, 2, 7).into()),
    };
    let decide = |gate: &Gate| match gate.decide(black_box(&req)) {
        Decision::Allow { claims, .. } => claims,
        other => panic!("not allowed: {other:?}"),
    };
    c.bench_function("rules/decide_signed_in_no_rules", |b| {
        b.iter(|| decide(&f.parts.gate))
    });
    for n in [1, 10, 50] {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = config_with_rules(dir.path(), false, &rules_text(n));
        assert_eq!(config.apps[0].access.rules.len(), n);
        let gate = Gate::new(Arc::new(config), f.parts.sessions.clone());
        c.bench_function(&format!("rules/decide_signed_in_{n}_rules"), |b| {
            b.iter(|| decide(&gate))
        });
    }
    // An app with one expression policy: what every signed-in request of it pays on top.
    let dir = tempfile::tempdir().expect("temp dir");
    let policy = "policies = [\"staff\"]\n[policies.staff]\nkind = \"expression\"\nexpression = \"'staff' in user.groups && request.method in ['GET', 'HEAD']\"\n";
    let config = config_with_rules(dir.path(), false, policy);
    assert_eq!(config.apps[0].policies.policies.len(), 1);
    let gate = Gate::new(Arc::new(config), f.parts.sessions.clone());
    c.bench_function("rules/decide_signed_in_app_policy", |b| {
        b.iter(|| decide(&gate))
    });
}

/// What the proxy does to every allowed request's headers. `proxy::identity` is private, so
/// this makes the same Pingora calls it makes: remove every identity name, set four from the
/// claims, take the gateway's cookies out of `Cookie`.
fn headers(c: &mut Criterion, f: &Fixture) {
    let cfg = f.parts.gate.config();
    let claims = f.parts.gate.session(&f.headers).expect("signed in");
    let mut base = RequestHeader::build("GET", b"/reports/2024?page=2", None).expect("request");
    for (k, v) in [
        ("host", "app.test"),
        (
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0",
        ),
        ("accept", "text/html,*/*"),
        ("remote-user", "mallory"),
        ("x-forwarded-user", "mallory"),
    ] {
        base.insert_header(k, v).expect("header");
    }
    let cookies = format!("_ga=GA1.2.3; {COOKIE}={}; theme=dark", f.token);
    base.insert_header(http::header::COOKIE, cookies)
        .expect("cookie");
    let strip = |req: &mut RequestHeader| {
        for name in cfg.headers.all() {
            req.remove_header(name);
        }
    };
    // As `src/proxy/identity.rs` does it: names prepared once as shared bytes, values shared.
    let names = [
        &cfg.headers.user,
        &cfg.headers.name,
        &cfg.headers.email,
        &cfg.headers.groups,
    ]
    .map(|n| Bytes::copy_from_slice(n.as_str().as_bytes()));
    let values = claims.identity_values().expect("values").clone();
    let inject = |req: &mut RequestHeader| {
        for (name, value) in names.iter().zip(&values) {
            req.insert_header(name.clone(), value.clone())
                .expect("identity header");
        }
    };
    let strip_cookies = |req: &mut RequestHeader| {
        // As `src/proxy/identity.rs` does it: one pass, a new header only for mixed cookies.
        match cookie::without(&req.headers, &[COOKIE, FLOW_COOKIE]) {
            cookie::Upstream::Keep => {}
            cookie::Upstream::Remove => {
                req.remove_header(&http::header::COOKIE);
            }
            cookie::Upstream::Replace(rest) => req
                .insert_header(Bytes::from_static(b"Cookie"), rest)
                .expect("cookie"),
        }
    };
    let mut one = |name: &str, f: &dyn Fn(&mut RequestHeader)| {
        c.bench_function(name, |b| {
            b.iter_batched_ref(|| base.clone(), |req| f(req), BatchSize::SmallInput)
        });
    };
    one("headers/strip", &strip);
    one("headers/inject", &inject);
    one("headers/strip_cookies", &strip_cookies);
    one("headers/strip_inject_cookies", &|req| {
        strip(req);
        inject(req);
        strip_cookies(req);
    });
}

fn redirect(c: &mut Criterion) {
    use portcullis::config::{PublicOrigin, Scheme};
    let origins = ["app.test", "wiki.example.com", "grafana.example.com"]
        .map(|h| PublicOrigin::new(Scheme::Https, h, 443));
    let policy = RedirectPolicy::new(origins.iter());
    c.bench_function("rd/check_absolute_ok", |b| {
        b.iter(|| {
            policy
                .check(
                    black_box("https://wiki.example.com/page?x=1"),
                    "http://app.test",
                )
                .expect("allowed")
        })
    });
    c.bench_function("rd/check_relative_ok", |b| {
        b.iter(|| {
            policy
                .check(black_box("/reports/2024?page=2"), "http://app.test:9000")
                .expect("allowed")
        })
    });
    c.bench_function("rd/check_refused", |b| {
        b.iter(|| {
            policy.check(
                black_box("http://app.test@evil.example/"),
                "http://app.test",
            )
        })
    });
}

/// One request to the flow API (`Portal::handle` → `Engine` → render), as the proxy makes it.
fn call(f: &Fixture, method: &Method, slug: &str, headers: &HeaderMap, body: &[u8]) -> Response {
    let path = format!("/.portcullis/api/flow/{slug}");
    f.rt.block_on(f.parts.portal.handle(portal::Request {
        method,
        path: &path,
        query: (method == Method::GET).then_some("rd=%2Freports"),
        headers,
        body: Bytes::copy_from_slice(body),
        scheme: "http",
        authority: "app.test",
        client: "127.0.0.1",
    }))
}

/// A fresh execution of `slug`, answered with `answers` in turn: the headers (flow cookie,
/// JSON) for the next step.
fn start_flow(f: &Fixture, slug: &str, answers: &[&[u8]]) -> HeaderMap {
    let resp = call(f, &Method::GET, slug, &HeaderMap::new(), b"");
    let set = resp
        .headers
        .iter()
        .find(|(k, v)| {
            k == http::header::SET_COOKIE && v.as_bytes().starts_with(FLOW_COOKIE.as_bytes())
        })
        .and_then(|(_, v)| v.to_str().ok())
        .expect("flow cookie");
    let pair = set.split(';').next().unwrap_or_default().to_string();
    let mut h = HeaderMap::new();
    h.insert(
        http::header::COOKIE,
        HeaderValue::from_str(&pair).expect("cookie"),
    );
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    for answer in answers {
        let resp = call(f, &Method::POST, slug, &h, answer);
        assert!(resp.status.is_success(), "{slug}: {:?}", resp.body);
    }
    h
}

/// One flow step of each cheap stage through the JSON face, each on a fresh execution set up
/// (untimed) to just before it. A step includes loading and saving the execution in sled.
/// Run on the cheap-password fixture, so set-ups that pass a password stage stay fast.
fn flow(c: &mut Criterion, f: &Fixture) {
    let step = |c: &mut Criterion,
                name: &str,
                slug: &'static str,
                before: &[&[u8]],
                body: &'static [u8],
                expect: &'static str| {
        c.bench_function(name, |b| {
            b.iter_batched(
                || start_flow(f, slug, before),
                |headers| {
                    let resp = call(f, &Method::POST, slug, &headers, body);
                    assert!(
                        std::str::from_utf8(&resp.body).is_ok_and(|b| b.contains(expect)),
                        "{name}: {:?}",
                        resp.body
                    );
                },
                BatchSize::PerIteration,
            )
        });
    };
    let uid: &[u8] = br#"{"uid":"alice"}"#;
    let password = format!(r#"{{"password":"{PASSWORD}"}}"#);
    let password: &[u8] = password.as_bytes();
    let nickname: &[u8] = br#"{"nickname":"ally"}"#;
    // identification → the password challenge.
    step(
        c,
        "flow/identification_step",
        "login",
        &[],
        uid,
        "\"password\"",
    );
    // identification → deny runs at once → the flow is refused with its message.
    step(
        c,
        "flow/identification_deny_step",
        "refuse",
        &[],
        uid,
        "Not today.",
    );
    // prompt (one field, checked against a pattern) → the identification challenge.
    step(
        c,
        "flow/prompt_step",
        "ask",
        &[],
        nickname,
        "\"identification\"",
    );
    // prompt → user_login runs at once → session issued and recorded, redirect: user_login's
    // cost is this minus flow/prompt_step.
    step(
        c,
        "flow/prompt_user_login_step",
        "finish",
        &[uid, password],
        nickname,
        "\"redirect\"",
    );
}

/// The identity assertion (EdDSA) an app with `assertion = true` gets on every request:
/// normally served from the per-session cache, signed afresh once a minute.
fn assertion(c: &mut Criterion, f: &Fixture) {
    let claims = f.parts.gate.session(&f.headers).expect("signed in");
    let signer = f.parts.sessions.assertions();
    c.bench_function("assertion/eddsa_cached", |b| {
        b.iter(|| {
            signer
                .assertion(black_box(&claims), 0, "app")
                .expect("sign")
        })
    });
    let mut n = 0u64;
    c.bench_function("assertion/eddsa_sign", |b| {
        b.iter_batched_ref(
            || {
                n += 1;
                let mut fresh = (*claims).clone();
                fresh.sid = format!("bench-{n}");
                fresh
            },
            |fresh| signer.assertion(black_box(fresh), 0, "app").expect("sign"),
            BatchSize::SmallInput,
        )
    });
}

/// What `/.portcullis/auth/nginx` does for a signed-in `auth_request` subrequest: rebuild the
/// original request from nginx's headers, decide, answer with the identity headers.
fn forward_auth(c: &mut Criterion, f: &Fixture) {
    use portcullis::forward_auth::{handle, Arrived, Flavor};
    let mut headers = f.headers.clone();
    headers.insert(
        "x-original-url",
        HeaderValue::from_static("https://app.test/reports/2024?page=2"),
    );
    headers.insert("x-original-method", HeaderValue::from_static("GET"));
    let arrived = Arrived {
        method: &Method::GET,
        scheme: "http",
        authority: "auth.internal",
        path_and_query: "/.portcullis/auth/nginx",
        headers: &headers,
        client: Some(std::net::Ipv4Addr::LOCALHOST.into()),
    };
    c.bench_function("forward_auth/nginx_signed_in", |b| {
        b.iter(|| {
            let r = handle(
                &f.parts.gate,
                f.parts.portal.ui(),
                Flavor::Nginx,
                black_box(&arrived),
                true,
            );
            assert_eq!(r.status, http::StatusCode::OK);
            r
        })
    });
}

fn argon2(c: &mut Criterion, f: &Fixture) {
    let mut g = c.benchmark_group("argon2id");
    g.sample_size(10);
    let pw = SecretString::new("correct horse battery staple");
    g.bench_function("hash_configured_params", |b| {
        b.iter(|| f.parts.passwords.hash_blocking(&pw).expect("hash"))
    });
    g.finish();
}

fn otp(c: &mut Criterion) {
    use portcullis::flow::otp;
    let key = [7u8; 32];
    c.bench_function("otp/generate_hash_verify", |b| {
        b.iter(|| {
            let code = otp::generate_code(6);
            let stored = otp::hash_code(&key, "email:alice", code.expose());
            assert!(otp::verify_code(
                &key,
                "email:alice",
                black_box(code.expose()),
                &stored
            ));
        })
    });
}

fn all(c: &mut Criterion) {
    let f = fixture(false);
    session(c, &f);
    access(c, &f);
    rules(c, &f);
    headers(c, &f);
    redirect(c);
    assertion(c, &f);
    forward_auth(c, &f);
    flow(c, &fixture(true));
    otp(c);
    argon2(c, &f);
}

criterion_group!(benches, all);
criterion_main!(benches);

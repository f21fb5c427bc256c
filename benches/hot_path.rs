//! Micro-benchmarks of what one request costs inside the gateway, and of the sign-in pieces:
//! `cargo bench --bench hot_path`.
//!
//! Everything is built the way the gateway builds it (`app::Parts::build` from a config), so
//! the numbers are for the real keys, store and rules, not for stand-ins.

use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion};
use http::{HeaderMap, HeaderValue, Method};
use pingora::http::RequestHeader;
use portcullis::access::{AccessRequest, Decision};
use portcullis::app::Parts;
use portcullis::config::Config;
use portcullis::portal;
use portcullis::redirect::RedirectPolicy;
use portcullis::secret::SecretString;
use portcullis::session::{cookie, NewSession};
use portcullis::store::User;
use std::path::Path;

const COOKIE: &str = "portcullis_session";
const FLOW_COOKIE: &str = "portcullis_flow";

fn config(dir: &Path) -> Config {
    let text = format!(
        r#"
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
[[flows]]
slug = "login"
title = "Sign in"
designation = "authentication"
stages = ["identify", "password", "login"]
[[flows]]
slug = "quick"
title = "Sign in"
designation = "authentication"
stages = ["identify", "login"]
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

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let parts = Parts::build(config(dir.path())).expect("gateway parts");
    let mut alice = User::new("alice");
    alice.name = "Alice Example".into();
    alice.email = Some("alice@example.com".into());
    alice.groups = vec!["staff".into(), "admins".into()];
    alice.password_hash = Some(
        parts
            .passwords
            .hash_blocking(&SecretString::new("correct horse"))
            .expect("hash"),
    );
    parts.store.put_user(&alice).expect("put user");
    let (token, _) = parts
        .sessions
        .issue(NewSession {
            username: "alice".into(),
            name: alice.name.clone(),
            email: "alice@example.com".into(),
            groups: alice.groups.clone(),
            amr: vec!["password".into()],
            lifetime_secs: 3600,
        })
        .expect("issue");
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
    c.bench_function("session/jwt_verify_hs256", |b| {
        b.iter(|| sessions.verify(black_box(&f.token)).expect("valid"))
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
    c.bench_function("headers/strip_inject", |b| {
        b.iter_batched_ref(
            || base.clone(),
            |req| {
                for name in cfg.headers.all() {
                    req.remove_header(name);
                }
                let h = &cfg.headers;
                req.insert_header(h.user.clone(), claims.sub.as_str())
                    .expect("user");
                req.insert_header(h.name.clone(), claims.name.as_str())
                    .expect("name");
                req.insert_header(h.email.clone(), claims.email.as_str())
                    .expect("email");
                req.insert_header(h.groups.clone(), claims.groups.join(","))
                    .expect("groups");
                let names = [COOKIE, FLOW_COOKIE];
                if names
                    .iter()
                    .any(|n| cookie::find(&req.headers, n).is_some())
                {
                    match cookie::without(&req.headers, &names) {
                        Some(rest) => req
                            .insert_header(http::header::COOKIE, rest)
                            .expect("cookie"),
                        None => {
                            req.remove_header(&http::header::COOKIE);
                        }
                    }
                }
            },
            BatchSize::SmallInput,
        )
    });
}

fn redirect(c: &mut Criterion) {
    let hosts = ["app.test", "wiki.example.com", "grafana.example.com"];
    let policy = RedirectPolicy::new(hosts.into_iter(), Some("example.com"));
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

/// A fresh execution of `slug`, answered up to its first challenge: the flow cookie to send.
fn start_flow(f: &Fixture, slug: &str) -> HeaderMap {
    let headers = HeaderMap::new();
    let path = format!("/.portcullis/api/flow/{slug}");
    let resp = f.rt.block_on(f.parts.portal.handle(portal::Request {
        method: &Method::GET,
        path: &path,
        query: Some("rd=%2Freports"),
        headers: &headers,
        body: Bytes::new(),
        scheme: "http",
        authority: "app.test",
        client: "127.0.0.1",
    }));
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
    h
}

/// One flow step through the JSON face (`Portal::handle` → `Engine::submit` → render), each on a
/// fresh execution. The step includes loading and saving the execution in sled, which flushes.
fn flow(c: &mut Criterion, f: &Fixture) {
    let step = |c: &mut Criterion, name: &str, slug: &'static str, expect: &'static str| {
        let path = format!("/.portcullis/api/flow/{slug}");
        c.bench_function(name, |b| {
            b.iter_batched(
                || start_flow(f, slug),
                |headers| {
                    let resp = f.rt.block_on(f.parts.portal.handle(portal::Request {
                        method: &Method::POST,
                        path: &path,
                        query: None,
                        headers: &headers,
                        body: Bytes::from_static(br#"{"uid":"alice"}"#),
                        scheme: "http",
                        authority: "app.test",
                        client: "127.0.0.1",
                    }));
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
    // identification → the password challenge.
    step(c, "flow/identification_step", "login", "\"password\"");
    // identification → user_login runs at once → session issued, redirect.
    step(
        c,
        "flow/identification_user_login_step",
        "quick",
        "\"redirect\"",
    );
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
            let stored = otp::hash_code(&key, "email:alice", &code);
            assert!(otp::verify_code(
                &key,
                "email:alice",
                black_box(&code),
                &stored
            ));
        })
    });
}

fn all(c: &mut Criterion) {
    let f = fixture();
    session(c, &f);
    access(c, &f);
    headers(c, &f);
    redirect(c);
    flow(c, &f);
    otp(c);
    argon2(c, &f);
}

criterion_group!(benches, all);
criterion_main!(benches);

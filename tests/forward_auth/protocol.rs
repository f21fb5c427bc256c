//! The forward-auth endpoints spoken to directly, header for header as each proxy speaks:
//! Traefik (not packaged here, so emulated exactly), Caddy, nginx, and Authelia's paths. Also
//! the trusted-proxy rule, bypass paths, revocation, header names and the auth host's `rd`.

use crate::fronts::shipped;
use crate::harness::{self, Resp, Upstream};
use crate::support::*;
use serde_json::Value;

const TRAEFIK: &str = "/.portcullis/auth/traefik";
const CADDY: &str = "/.portcullis/auth/caddy";
const NGINX: &str = "/.portcullis/auth/nginx";
const AUTHELIA_NGINX: &str = "/api/authz/auth-request";
const AUTHELIA_TRAEFIK: &str = "/api/authz/forward-auth";

/// What a browser's page load looks like, and what fetch() sends.
const XHR: &[(&str, &str)] = &[
    ("accept", "application/json"),
    ("x-requested-with", "XMLHttpRequest"),
];
const PAGE: &[(&str, &str)] = &[("accept", ACCEPT_HTML)];

/// One forward-auth call to the gateway, the way a proxy makes it: to `host` (the Host header
/// the proxy sends; the gateway's own address for Traefik and nginx), with `headers`.
async fn call(gw: &Gateway, host: &str, path: &str, headers: &[(&str, &str)]) -> Resp {
    let c = Client::new(gw.addr());
    let url = if host.is_empty() {
        format!("http://127.0.0.1:{}{path}", gw.port)
    } else {
        c.url(host, path)
    };
    let mut rb = c.http.get(&url);
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    Resp::read(rb.send().await.unwrap_or_else(|e| panic!("GET {url}: {e}"))).await
}

/// Exactly the headers Traefik's ForwardAuth middleware adds for a request to
/// `proto://host uri` from `client`, followed by the client's own headers.
fn traefik_headers<'a>(
    method: &'a str,
    proto: &'a str,
    host: &'a str,
    uri: &'a str,
    client: &[(&'a str, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    let mut h = vec![
        ("x-forwarded-method", method),
        ("x-forwarded-proto", proto),
        ("x-forwarded-host", host),
        ("x-forwarded-uri", uri),
        ("x-forwarded-for", "203.0.113.7"),
        (
            "x-forwarded-port",
            if proto == "https" { "443" } else { "80" },
        ),
        ("x-forwarded-server", "traefik-1"),
        ("x-real-ip", "203.0.113.7"),
    ];
    h.extend_from_slice(client);
    h
}

/// The headers Caddy's `forward_auth` sends (it keeps the original Host, see [`call`]).
fn caddy_headers<'a>(
    method: &'a str,
    host: &'a str,
    uri: &'a str,
    client: &[(&'a str, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    let mut h = vec![
        ("x-forwarded-method", method),
        ("x-forwarded-uri", uri),
        ("x-forwarded-for", "203.0.113.7"),
        ("x-forwarded-proto", "http"),
        ("x-forwarded-host", host),
    ];
    h.extend_from_slice(client);
    h
}

/// Signs `user` in on the gateway itself (acting as the auth host) and returns the session
/// cookie as a `Cookie` header value.
async fn session_cookie(gw: &Gateway, user: &str, pw: &str) -> String {
    let c = Client::new(gw.addr());
    let page = c.url(WIKI, "/start");
    let r = c.page(&page).await;
    let login = assert_auth_redirect(&r, &page);
    let (_, resp) = api_sign_in(&c, &login, user, pw).await;
    let v = resp
        .set_cookie_value(SESSION_COOKIE)
        .unwrap_or_else(|| panic!("no session cookie: {}", resp.describe()));
    format!("{SESSION_COOKIE}={v}")
}

/// [`assert_let_in`] for alice, who is in `admins` and `staff`.
fn assert_alice_let_in(r: &Resp) {
    assert_let_in(
        r,
        "alice",
        "Alice Liddell",
        "alice@example.test",
        "admins,staff",
    );
}

/// A 200 that lets the request in: empty body, `Content-Length: 0` (nginx keeps the
/// connection), and the identity.
fn assert_let_in(r: &Resp, user: &str, name: &str, email: &str, groups: &str) {
    assert_eq!(r.status, 200, "expected to be let in: {}", r.describe());
    assert_eq!(r.body, "", "a 200 must have an empty body");
    assert_eq!(
        r.header("content-length").as_deref(),
        Some("0"),
        "{}",
        r.describe()
    );
    assert_eq!(r.header("remote-user").as_deref(), Some(user));
    assert_eq!(r.header("remote-name").as_deref(), Some(name));
    assert_eq!(r.header("remote-email").as_deref(), Some(email));
    assert_eq!(r.header("remote-groups").as_deref(), Some(groups));
}

fn assert_no_identity(r: &Resp) {
    for h in [
        "remote-user",
        "remote-name",
        "remote-email",
        "remote-groups",
    ] {
        assert!(r.header(h).is_none(), "{h} on {}", r.describe());
    }
}

/// Traefik's and Caddy's answer to a request that is not a page navigation: a 401 the page's
/// script can handle, never a (cross-origin) redirect.
fn assert_plain_401(r: &Resp) {
    assert_eq!(r.status, 401, "{}", r.describe());
    assert!(r.header("location").is_none(), "{}", r.describe());
}

/// The `rd` of a sign-in URL.
fn rd_of(login: &str) -> String {
    let u = url::Url::parse(login).unwrap_or_else(|e| panic!("{login:?}: {e}"));
    u.query_pairs()
        .find(|(k, _)| k == "rd")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| panic!("no rd in {login}"))
}

#[tokio::test]
async fn traefik_navigation_without_session_is_redirected_to_sign_in_with_rd() {
    let gw = Gateway::start(Opts::default()).await;
    let h = traefik_headers("GET", "https", WIKI, "/docs/a?b=1&c=%2F", PAGE);
    let r = call(&gw, "", TRAEFIK, &h).await;
    // The original request's scheme, host and URI all come from Traefik's headers.
    // Links use the configured origins (auth_url http://auth.example.test, the apps the
    // same): the forwarded scheme and port shape none of them.
    let login = assert_auth_redirect(&r, "http://wiki.example.test/docs/a?b=1&c=%2F");
    assert!(
        login.starts_with(&format!("http://{AUTH}/")),
        "sign-in not on the configured http://{AUTH}: {login}"
    );
}

#[tokio::test]
async fn traefik_requests_that_are_not_page_loads_get_401_not_a_redirect() {
    let gw = Gateway::start(Opts::default()).await;
    // fetch()/XHR.
    let h = traefik_headers("GET", "https", WIKI, "/api/items", XHR);
    let r = call(&gw, "", TRAEFIK, &h).await;
    assert_plain_401(&r);
    // A form POST, even from a page that accepts HTML: a redirect would lose the body.
    let h = traefik_headers("POST", "https", WIKI, "/save", PAGE);
    let r = call(&gw, "", TRAEFIK, &h).await;
    assert_plain_401(&r);
}

#[tokio::test]
async fn traefik_signed_in_user_is_let_in_with_identity_and_an_empty_200() {
    let gw = Gateway::start(Opts::default()).await;
    let cookie = session_cookie(&gw, "bob", BOB_PW).await;
    let client = [("accept", ACCEPT_HTML), ("cookie", cookie.as_str())];
    let h = traefik_headers("GET", "https", WIKI, "/docs", &client);
    let r = call(&gw, "", TRAEFIK, &h).await;
    assert_let_in(&r, "bob", "Bob Builder", "bob@example.test", "staff");
    // XHR with a session is let in too.
    let client = [("accept", "application/json"), ("cookie", cookie.as_str())];
    let h = traefik_headers("DELETE", "https", WIKI, "/api/items/3", &client);
    let r = call(&gw, "", TRAEFIK, &h).await;
    assert_let_in(&r, "bob", "Bob Builder", "bob@example.test", "staff");
}

#[tokio::test]
async fn traefik_user_outside_the_apps_groups_is_forbidden() {
    let gw = Gateway::start(Opts::default()).await;
    let bob = session_cookie(&gw, "bob", BOB_PW).await;
    let alice = session_cookie(&gw, "alice", ALICE_PW).await;
    let client = [("accept", ACCEPT_HTML), ("cookie", bob.as_str())];
    let h = traefik_headers("GET", "https", ADMIN, "/", &client);
    let r = call(&gw, "", TRAEFIK, &h).await;
    assert_eq!(r.status, 403, "bob on admin: {}", r.describe());
    assert_no_identity(&r);
    let client = [("accept", ACCEPT_HTML), ("cookie", alice.as_str())];
    let h = traefik_headers("GET", "https", ADMIN, "/", &client);
    let r = call(&gw, "", TRAEFIK, &h).await;
    assert_alice_let_in(&r);
}

#[tokio::test]
async fn forward_auth_for_a_host_no_app_protects_is_denied() {
    let gw = Gateway::start(Opts::default()).await;
    let alice = session_cookie(&gw, "alice", ALICE_PW).await;
    let client = [("accept", ACCEPT_HTML), ("cookie", alice.as_str())];
    let h = traefik_headers("GET", "https", "unknown.example.test", "/", &client);
    let r = call(&gw, "", TRAEFIK, &h).await;
    assert_eq!(r.status, 403, "{}", r.describe());
    assert_no_identity(&r);
}

#[tokio::test]
async fn caddy_endpoint_redirects_page_loads_401s_xhr_and_lets_members_in() {
    let gw = Gateway::start(Opts::default()).await;
    let host = format!("{WIKI}:8443");
    // Caddy keeps the original Host on the auth request.
    let h = caddy_headers("GET", &host, "/docs/a?b=1", PAGE);
    let r = call(&gw, WIKI, CADDY, &h).await;
    // The port the request came on shapes no link: both origins are the configured ones.
    let login = assert_auth_redirect(&r, "http://wiki.example.test/docs/a?b=1");
    assert!(
        login.starts_with(&format!("http://{AUTH}/")),
        "the auth host's configured origin: {login}"
    );
    let h = caddy_headers("GET", &host, "/api/x", XHR);
    assert_plain_401(&call(&gw, WIKI, CADDY, &h).await);

    let bob = session_cookie(&gw, "bob", BOB_PW).await;
    let client = [("accept", ACCEPT_HTML), ("cookie", bob.as_str())];
    let h = caddy_headers("GET", &host, "/docs", &client);
    let r = call(&gw, WIKI, CADDY, &h).await;
    assert_let_in(&r, "bob", "Bob Builder", "bob@example.test", "staff");
    let admin = format!("{ADMIN}:8443");
    let h = caddy_headers("GET", &admin, "/", &client);
    let r = call(&gw, ADMIN, CADDY, &h).await;
    assert_eq!(r.status, 403, "bob on admin: {}", r.describe());
}

#[tokio::test]
async fn nginx_endpoint_answers_401_with_the_sign_in_url_in_location() {
    let gw = Gateway::start(Opts::default()).await;
    let original = "http://wiki.example.test:8080/docs/a?b=1";
    let mut h = vec![
        ("x-original-url", original),
        ("x-original-method", "GET"),
        ("x-forwarded-for", "203.0.113.7"),
    ];
    h.extend_from_slice(PAGE);
    let r = call(&gw, "", NGINX, &h).await;
    // auth_request understands only 2xx/401/403: never a 302 here.
    assert_eq!(r.status, 401, "{}", r.describe());
    let login = r.location();
    assert!(
        login.starts_with(&format!("http://{AUTH}/.portcullis/flow/{FLOW}?")),
        "{login}"
    );
    // The app's configured origin, not the port in X-Original-URL.
    let configured = "http://wiki.example.test/docs/a?b=1";
    assert_eq!(rd_of(&login), configured);
    // The shipped nginx config redirects only when told to.
    assert_eq!(
        r.header("x-portcullis-redirect").as_deref(),
        Some(login.as_str())
    );

    // XHR: still 401 with Location (Authelia-style configs), but no redirect hint.
    let mut h = vec![("x-original-url", original), ("x-original-method", "GET")];
    h.extend_from_slice(XHR);
    let r = call(&gw, "", NGINX, &h).await;
    assert_eq!(r.status, 401, "{}", r.describe());
    assert_eq!(rd_of(&r.location()), configured);
    assert!(
        r.header("x-portcullis-redirect").is_none(),
        "{}",
        r.describe()
    );
    // A POST is not a navigation either.
    let mut h = vec![("x-original-url", original), ("x-original-method", "POST")];
    h.extend_from_slice(PAGE);
    let r = call(&gw, "", NGINX, &h).await;
    assert_eq!(r.status, 401, "{}", r.describe());
    assert!(r.header("x-portcullis-redirect").is_none());
}

#[tokio::test]
async fn nginx_endpoint_lets_members_in_and_forbids_others() {
    let gw = Gateway::start(Opts::default()).await;
    let bob = session_cookie(&gw, "bob", BOB_PW).await;
    let h = [
        ("x-original-url", "https://wiki.example.test/docs"),
        ("x-original-method", "GET"),
        ("accept", ACCEPT_HTML),
        ("cookie", bob.as_str()),
    ];
    let r = call(&gw, "", NGINX, &h).await;
    assert_let_in(&r, "bob", "Bob Builder", "bob@example.test", "staff");
    let h = [
        ("x-original-url", "https://admin.example.test/"),
        ("x-original-method", "GET"),
        ("accept", ACCEPT_HTML),
        ("cookie", bob.as_str()),
    ];
    let r = call(&gw, "", NGINX, &h).await;
    assert_eq!(r.status, 403, "bob on admin: {}", r.describe());
    assert_no_identity(&r);
}

#[tokio::test]
async fn nginx_endpoint_reads_original_uri_and_forwarded_host_without_original_url() {
    let gw = Gateway::start(Opts::default()).await;
    // The other way to configure nginx: X-Original-URI + X-Forwarded-Host/-Proto.
    let h = [
        ("x-original-uri", "/docs/a?b=1"),
        ("x-original-method", "GET"),
        ("x-forwarded-host", WIKI),
        ("x-forwarded-proto", "https"),
        ("accept", ACCEPT_HTML),
    ];
    let r = call(&gw, "", NGINX, &h).await;
    assert_eq!(r.status, 401, "{}", r.describe());
    // Scheme from config, not X-Forwarded-Proto.
    assert_eq!(rd_of(&r.location()), "http://wiki.example.test/docs/a?b=1");
    // The path counts: a bypass path is let in.
    let h = [
        ("x-original-uri", "/public/logo.png"),
        ("x-forwarded-host", WIKI),
        ("accept", ACCEPT_HTML),
    ];
    let r = call(&gw, "", NGINX, &h).await;
    assert_eq!(r.status, 200, "{}", r.describe());
    // The host counts: bob is refused on admin, let in on wiki.
    let bob = session_cookie(&gw, "bob", BOB_PW).await;
    for (host, status) in [(ADMIN, 403), (WIKI, 200)] {
        let h = [
            ("x-original-uri", "/"),
            ("x-forwarded-host", host),
            ("accept", ACCEPT_HTML),
            ("cookie", bob.as_str()),
        ];
        let r = call(&gw, "", NGINX, &h).await;
        assert_eq!(r.status, status, "bob on {host}: {}", r.describe());
    }
}

#[tokio::test]
async fn authelia_paths_answer_like_the_nginx_and_traefik_endpoints() {
    let gw = Gateway::start(Opts::default()).await;
    let original = "https://wiki.example.test/docs";
    // The return address is on the app's configured origin.
    let configured = "http://wiki.example.test/docs";
    let mut h = vec![("x-original-url", original), ("x-original-method", "GET")];
    h.extend_from_slice(PAGE);
    let r = call(&gw, "", AUTHELIA_NGINX, &h).await;
    assert_eq!(r.status, 401, "auth-request: {}", r.describe());
    assert_eq!(rd_of(&r.location()), configured);

    let h = traefik_headers("GET", "https", WIKI, "/docs", PAGE);
    let r = call(&gw, "", AUTHELIA_TRAEFIK, &h).await;
    assert_auth_redirect(&r, configured);
    let h = traefik_headers("GET", "https", WIKI, "/docs", XHR);
    assert_plain_401(&call(&gw, "", AUTHELIA_TRAEFIK, &h).await);

    let alice = session_cookie(&gw, "alice", ALICE_PW).await;
    let h = [
        ("x-original-url", "https://admin.example.test/"),
        ("accept", ACCEPT_HTML),
        ("cookie", alice.as_str()),
    ];
    let r = call(&gw, "", AUTHELIA_NGINX, &h).await;
    assert_alice_let_in(&r);
    let client = [("accept", ACCEPT_HTML), ("cookie", alice.as_str())];
    let h = traefik_headers("GET", "https", ADMIN, "/", &client);
    let r = call(&gw, "", AUTHELIA_TRAEFIK, &h).await;
    assert_alice_let_in(&r);
}

#[tokio::test]
async fn authelia_paths_on_an_app_host_belong_to_the_app() {
    let upstream = Upstream::start().await;
    let gw = Gateway::for_upstream(upstream.addr.to_string()).await;
    let alice = session_cookie(&gw, "alice", ALICE_PW).await;
    // The app's own /api/authz/... is proxied to the app (with the identity), not answered
    // as a forward-auth call.
    let r = call(
        &gw,
        WIKI,
        AUTHELIA_TRAEFIK,
        &[("accept", "application/json"), ("cookie", alice.as_str())],
    )
    .await;
    let echo = r.echo();
    assert_eq!(echo.path, AUTHELIA_TRAEFIK);
    assert_eq!(echo.header("remote-user"), Some("alice"));
}

#[tokio::test]
async fn forged_forwarded_headers_from_an_untrusted_address_are_ignored() {
    // The gateway trusts only 10.9.9.9; the test connects from 127.0.0.1.
    let gw = Gateway::start(Opts {
        trusted_proxies: Some(r#"["10.9.9.9/32"]"#.into()),
        ..Opts::default()
    })
    .await;
    let bob = session_cookie(&gw, "bob", BOB_PW).await;
    let client = [("accept", ACCEPT_HTML), ("cookie", bob.as_str())];

    // bob, refused on admin, asks about admin while claiming to ask about wiki (where he is
    // allowed): judged as it arrived, on admin.
    let h = traefik_headers("GET", "https", WIKI, "/", &client);
    let r = call(&gw, ADMIN, TRAEFIK, &h).await;
    assert_eq!(
        r.status,
        403,
        "forged X-Forwarded-Host believed: {}",
        r.describe()
    );
    let mut h = vec![("x-original-url", "https://wiki.example.test/")];
    h.extend_from_slice(&client);
    let r = call(&gw, ADMIN, NGINX, &h).await;
    assert_eq!(
        r.status,
        403,
        "forged X-Original-URL believed: {}",
        r.describe()
    );
    let mut h = vec![("x-original-uri", "/"), ("x-forwarded-host", WIKI)];
    h.extend_from_slice(&client);
    let r = call(&gw, ADMIN, NGINX, &h).await;
    assert_eq!(
        r.status,
        403,
        "forged X-Original-URI believed: {}",
        r.describe()
    );

    // An anonymous client claims a bypass path: the path that arrived is not one.
    let h = traefik_headers("GET", "https", WIKI, "/public/free", XHR);
    let r = call(&gw, WIKI, TRAEFIK, &h).await;
    assert_eq!(
        r.status,
        401,
        "forged X-Forwarded-Uri believed: {}",
        r.describe()
    );
    // And the sign-in URL names what arrived, not the forged scheme, host or URI.
    let h = traefik_headers("GET", "https", ADMIN, "/forged", PAGE);
    let r = call(&gw, WIKI, TRAEFIK, &h).await;
    // (On the app's configured origin, whatever port it arrived on.)
    let arrived = format!("http://{WIKI}{TRAEFIK}");
    assert_auth_redirect(&r, &arrived);
}

#[tokio::test]
async fn bypass_paths_are_let_in_by_forward_auth_without_identity() {
    let gw = Gateway::start(Opts::default()).await;
    for endpoint in [TRAEFIK, CADDY] {
        let h = traefik_headers("GET", "https", WIKI, "/public/info?x=1", XHR);
        let r = call(&gw, "", endpoint, &h).await;
        assert_eq!(r.status, 200, "{endpoint}: {}", r.describe());
        assert_eq!(r.body, "");
        assert_no_identity(&r);
        // The bypass is the configured pattern (`^/public/`), not a prefix of the text.
        let h = traefik_headers("GET", "https", WIKI, "/publicity", XHR);
        let r = call(&gw, "", endpoint, &h).await;
        assert_eq!(r.status, 401, "{endpoint}: {}", r.describe());
    }
    let h = [("x-original-url", "https://wiki.example.test/public/x")];
    let r = call(&gw, "", NGINX, &h).await;
    assert_eq!(r.status, 200, "nginx: {}", r.describe());
    assert_no_identity(&r);
}

#[tokio::test]
async fn revoked_sessions_are_refused_by_forward_auth() {
    let gw = Gateway::start(Opts::default()).await;
    let ask = |cookie: String| {
        let gw = &gw;
        async move {
            let client = [("accept", "application/json"), ("cookie", cookie.as_str())];
            let h = traefik_headers("GET", "https", WIKI, "/docs", &client);
            call(gw, "", TRAEFIK, &h).await
        }
    };

    // Logout at the auth host.
    let bob = session_cookie(&gw, "bob", BOB_PW).await;
    assert_eq!(ask(bob.clone()).await.status, 200);
    let c = Client::new(gw.addr());
    let r = c
        .http
        .post(c.url(AUTH, "/.portcullis/api/logout"))
        .header("cookie", &bob)
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "logout");
    let r = ask(bob).await;
    assert_plain_401(&r);

    // The account disabled by the operator while signed in.
    let alice = session_cookie(&gw, "alice", ALICE_PW).await;
    assert_eq!(ask(alice.clone()).await.status, 200);
    let out = harness::run_cli(
        vec![
            "--config".into(),
            gw.config_path.display().to_string(),
            "user".into(),
            "disable".into(),
            "alice".into(),
        ],
        None,
    )
    .await;
    assert!(out.ok(), "user disable: {}", out.all());
    let r = ask(alice).await;
    assert_plain_401(&r);
}

#[tokio::test]
async fn configured_identity_header_names_are_used_in_forward_auth_answers() {
    let gw = Gateway::start(Opts {
        extra: r#"
[headers]
user = "X-Auth-User"
name = "X-Auth-Name"
email = "X-Auth-Email"
groups = "X-Auth-Groups"
"#
        .into(),
        ..Opts::default()
    })
    .await;
    let bob = session_cookie(&gw, "bob", BOB_PW).await;
    let client = [("accept", ACCEPT_HTML), ("cookie", bob.as_str())];
    let h = traefik_headers("GET", "https", WIKI, "/", &client);
    let r = call(&gw, "", TRAEFIK, &h).await;
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(r.header("x-auth-user").as_deref(), Some("bob"));
    assert_eq!(r.header("x-auth-name").as_deref(), Some("Bob Builder"));
    assert_eq!(
        r.header("x-auth-email").as_deref(),
        Some("bob@example.test")
    );
    assert_eq!(r.header("x-auth-groups").as_deref(), Some("staff"));
    assert_no_identity(&r);
}

/// Where the auth host sends the browser after signing in, for a given `rd`.
async fn sign_in_destination(gw: &Gateway, rd: &str) -> String {
    let c = Client::new(gw.addr());
    let login = format!(
        "{}?rd={}",
        c.url(AUTH, &format!("/.portcullis/flow/{FLOW}")),
        harness::pct(rd)
    );
    let (done, _): (Value, _) = api_sign_in(&c, &login, "bob", BOB_PW).await;
    done["to"]
        .as_str()
        .unwrap_or_else(|| panic!("no destination: {done}"))
        .to_string()
}

#[tokio::test]
async fn auth_host_refuses_rd_to_hosts_it_does_not_protect_even_under_the_cookie_domain() {
    let gw = Gateway::start(Opts::default()).await;
    let ok = format!("http://{WIKI}/docs?x=1");
    assert_eq!(sign_in_destination(&gw, &ok).await, ok);
    for evil in [
        "http://evil.example/steal",
        "https://wiki.example.test.evil.example/",
        "https://notexample.test/",
        "//evil.example/x",
        "http://wiki.example.test@evil.example/",
        // Under the cookie domain, but no app there: maybe someone else's subdomain.
        "http://files.example.test/",
    ] {
        let to = sign_in_destination(&gw, evil).await;
        let host = url::Url::parse(&to)
            .ok()
            .and_then(|u| u.host_str().map(str::to_string));
        assert_eq!(
            host.as_deref(),
            Some(AUTH),
            "rd={evil} sent the browser to {to}"
        );
    }
}

/// A client like [`Client::new`] that adds `X-Forwarded-For: xff` to every request.
fn client_claiming(gw: &Gateway, xff: &str) -> Client {
    let jar = std::sync::Arc::new(reqwest::cookie::Jar::default());
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("x-forwarded-for", xff.parse().unwrap());
    let http = reqwest::Client::builder()
        .cookie_provider(jar.clone())
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .default_headers(headers)
        .resolve(WIKI, gw.addr())
        .resolve(AUTH, gw.addr())
        .build()
        .unwrap();
    Client {
        http,
        jar,
        port: gw.port,
    }
}

/// The gateway's "sign-in succeeded" log line for `user`.
fn sign_in_log_line(gw: &Gateway, user: &str) -> String {
    gw.logs()
        .lines()
        .find(|l| l.contains("sign-in succeeded") && l.contains(user))
        .unwrap_or_else(|| panic!("no sign-in log line for {user}:\n{}", gw.logs()))
        .to_string()
}

#[tokio::test]
async fn logged_client_address_is_the_forwarded_one_only_from_trusted_proxies() {
    // From a trusted proxy (loopback by default): the client it names.
    let gw = Gateway::start(Opts::default()).await;
    let c = client_claiming(&gw, "203.0.113.7");
    let page = c.url(WIKI, "/x");
    let login = assert_auth_redirect(&c.page(&page).await, &page);
    api_sign_in(&c, &login, "bob", BOB_PW).await;
    let line = sign_in_log_line(&gw, "bob");
    assert!(line.contains("203.0.113.7"), "{line}");

    // From anyone else: the socket's address, whatever the header claims.
    let gw = Gateway::start(Opts {
        trusted_proxies: Some(r#"["10.9.9.9/32"]"#.into()),
        ..Opts::default()
    })
    .await;
    let c = client_claiming(&gw, "203.0.113.66");
    let page = c.url(WIKI, "/x");
    let login = assert_auth_redirect(&c.page(&page).await, &page);
    api_sign_in(&c, &login, "bob", BOB_PW).await;
    let line = sign_in_log_line(&gw, "bob");
    assert!(
        !line.contains("203.0.113.66"),
        "forged address logged: {line}"
    );
    assert!(line.contains("127.0.0.1"), "{line}");
}

#[tokio::test]
async fn dot_segments_cannot_borrow_a_bypass_path() {
    let upstream = Upstream::start().await;
    let gw = Gateway::for_upstream(upstream.addr.to_string()).await;
    // `/public/` needs no sign-in; to the app, `/public/../private` is `/private`.
    for uri in [
        "/public/../private",
        "/public/%2E%2e/private",
        "/public\\..\\private",
    ] {
        let h = traefik_headers("GET", "https", WIKI, uri, XHR);
        let r = call(&gw, "", TRAEFIK, &h).await;
        assert_eq!(r.status, 401, "traefik {uri}: {}", r.describe());
        let h = [("x-original-uri", uri), ("x-forwarded-host", WIKI)];
        let r = call(&gw, "", NGINX, &h).await;
        assert_eq!(r.status, 401, "nginx {uri}: {}", r.describe());
    }
    // The gateway as the reverse proxy itself: the same rule, the app never reached.
    let host = format!("{WIKI}:{}", gw.port);
    for target in ["/public/../private", "/public/%2e%2e/private"] {
        let (status, text) =
            raw_get(gw.port, &host, target, &[("accept", "application/json")]).await;
        assert_eq!(status, 401, "{target}: {text}");
    }
    // A dot segment keeps even a harmless path from the bypass: browsers never send one.
    let (status, text) = raw_get(
        gw.port,
        &host,
        "/public/./info",
        &[("accept", "application/json")],
    )
    .await;
    assert_eq!(status, 401, "{text}");
    assert_eq!(upstream.hits(), 0, "the app was reached without signing in");
    let (status, text) = raw_get(gw.port, &host, "/public/info", &[]).await;
    assert_eq!(status, 200, "{text}");
}

#[tokio::test]
async fn traefik_example_asks_the_traefik_endpoint_and_copies_every_identity_header() {
    let example = shipped("traefik/dynamic.yml");
    let address = example
        .lines()
        .find_map(|l| l.trim().strip_prefix("address:"))
        .map(|a| a.trim().trim_matches('"').to_string())
        .expect("no forwardAuth address in the Traefik example");
    let path = url::Url::parse(&address)
        .unwrap_or_else(|e| panic!("address {address:?}: {e}"))
        .path()
        .to_string();
    let copied: Vec<String> = example
        .lines()
        .skip_while(|l| !l.contains("authResponseHeaders:"))
        .skip(1)
        .map_while(|l| {
            l.trim()
                .strip_prefix("- ")
                .map(|h| h.trim().to_ascii_lowercase())
        })
        .collect();

    let gw = Gateway::start(Opts::default()).await;
    let bob = session_cookie(&gw, "bob", BOB_PW).await;
    let client = [("accept", ACCEPT_HTML), ("cookie", bob.as_str())];
    let h = traefik_headers("GET", "https", WIKI, "/docs", &client);
    let r = call(&gw, "", &path, &h).await;
    assert_let_in(&r, "bob", "Bob Builder", "bob@example.test", "staff");
    for name in r
        .headers
        .keys()
        .filter(|n| n.as_str().starts_with("remote-"))
    {
        assert!(
            copied.iter().any(|c| c == name.as_str()),
            "the example does not copy {name} (copies {copied:?})"
        );
    }
    let h = traefik_headers("GET", "https", WIKI, "/docs", PAGE);
    assert_auth_redirect(
        &call(&gw, "", &path, &h).await,
        "http://wiki.example.test/docs",
    );
}

#[test]
fn traefik_example_removes_every_other_spelling_of_the_identity_headers() {
    let example = shipped("traefik/dynamic.yml");
    let removed: Vec<String> = example
        .lines()
        .skip_while(|l| !l.contains("customRequestHeaders:"))
        .skip(1)
        .map_while(|l| {
            l.trim()
                .strip_suffix(": \"\"")
                .map(|h| h.trim().to_ascii_lowercase())
        })
        .collect();
    for base in [
        "remote_user",
        "remote_name",
        "remote_email",
        "remote_groups",
    ] {
        assert!(
            removed.iter().any(|r| r == base),
            "{base} not removed: {removed:?}"
        );
    }
    for spelling in [
        "x-portcullis-assertion",
        "x_portcullis_assertion",
        "x-portcullis_assertion",
        "x_portcullis-assertion",
    ] {
        assert!(
            removed.iter().any(|r| r == spelling),
            "{spelling} not removed"
        );
    }
    let router = example
        .lines()
        .find(|l| l.contains("middlewares: [\"portcullis-strip\""))
        .is_some();
    assert!(router, "the app's router does not use portcullis-strip");
}

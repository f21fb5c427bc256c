//! Debian's Caddy in front of the gateway with the shipped `config/caddy/Caddyfile`
//! (`forward_auth` with `copy_headers`), only its placeholders substituted and a global options
//! block added for the test (no admin endpoint, no automatic HTTPS, loopback only).

use crate::harness::Upstream;
use crate::support::*;
use crate::walk::{app_gets_no_spoofed_identity_and_no_session_cookie, full_walk, sign_in_through};

async fn start_caddy(upstream: &Upstream, gw: &Gateway) -> Front {
    start_example(Kind::Caddy, &upstream.addr.to_string(), gw).await
}

#[tokio::test]
async fn caddy_example_config_signs_in_across_subdomains_and_passes_identity() {
    let upstream = Upstream::start().await;
    let gw = Gateway::for_upstream(upstream.addr.to_string()).await;
    let caddy = start_caddy(&upstream, &gw).await;
    let logs = || logs_of(&caddy, &gw);
    full_walk(caddy.port, &upstream, &gw, &logs).await;
}

#[tokio::test]
async fn caddy_dot_segments_cannot_borrow_a_bypass_path() {
    let upstream = Upstream::start().await;
    let gw = Gateway::for_upstream(upstream.addr.to_string()).await;
    let caddy = start_caddy(&upstream, &gw).await;
    // `/public/` needs no sign-in; `/public/../private/report` is `/private/report` to the app.
    let host = format!("{WIKI}:{}", caddy.port);
    for target in [
        "/public/../private/report",
        "/public/%2e%2e/private/report",
        "/public/./../private/report",
    ] {
        let (status, text) =
            raw_get(caddy.port, &host, target, &[("accept", "application/json")]).await;
        assert_eq!(
            upstream.hits(),
            0,
            "{target} reached the app without signing in: {text}\n{}",
            gw.logs()
        );
        assert_eq!(status, 401, "{target}: {text}");
    }
    // The real bypass path still passes.
    let (status, text) = raw_get(caddy.port, &host, "/public/info", &[]).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(upstream.hits(), 1);
}

#[tokio::test]
async fn caddy_example_passes_no_spoofed_identity_spelling_and_no_session_cookie() {
    let upstream = Upstream::start().await;
    let gw = Gateway::for_upstream(upstream.addr.to_string()).await;
    let caddy = start_caddy(&upstream, &gw).await;
    let logs = || logs_of(&caddy, &gw);
    app_gets_no_spoofed_identity_and_no_session_cookie(caddy.port, &upstream, &logs).await;
}

/// Caddy, like nginx, routes an absolute-form request on the request line's host: the decision
/// must be that app's, never the one the `Host` header names.
#[tokio::test]
async fn caddy_absolute_form_request_gets_no_other_apps_decision() {
    let upstream = Upstream::start().await;
    let gw = Gateway::for_upstream(upstream.addr.to_string()).await;
    let caddy = start_caddy(&upstream, &gw).await;
    let p = caddy.port;
    let (wiki, admin) = (format!("{WIKI}:{p}"), format!("{ADMIN}:{p}"));
    let bob = format!(
        "{SESSION_COOKIE}={}",
        sign_in_through(p, "bob", BOB_PW).await
    );
    let before = upstream.hits();
    let json = ("accept", "application/json");
    for (target, cookie) in [
        (format!("http://{admin}/public/x"), ""),
        (format!("http://{admin}/"), ""),
        (format!("http://{admin}/dash"), bob.as_str()),
    ] {
        let (status, text) = raw_try(p, &wiki, &target, &[json, ("cookie", cookie)]).await;
        assert_eq!(
            upstream.hits(),
            before,
            "{target} with Host {wiki} reached the app: {text}\n{}",
            gw.logs()
        );
        assert_ne!(status, Some(200), "{target}: {text}");
    }
}

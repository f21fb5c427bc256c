//! The scenario both real front proxies (nginx, Caddy) go through, with the example config.

use crate::harness::Upstream;
use crate::support::*;

/// Full sign-in through the front proxy at `front`: app page -> auth host -> sign-in -> back
/// with the shared cookie -> identity at the upstream; spoofed Remote-* dropped; 403 outside
/// the app's groups; XHR gets 401; logout at the auth host ends the session on the app.
pub async fn full_walk(front: u16, upstream: &Upstream, gw: &Gateway, logs: &dyn Fn() -> String) {
    let c = Client::new(([127, 0, 0, 1], front).into());
    let page = c.url(WIKI, "/docs/page?x=1");
    let spoof: &[(&str, &str)] = &[
        ("Remote-User", "mallory"),
        ("Remote-Groups", "admins"),
        ("Remote-Email", "m@evil.test"),
        ("Remote-Name", "Mallory"),
    ];

    // 1. Not signed in: a page load is sent to the auth host, nothing reaches the app.
    let before = upstream.hits();
    let r = c.get(&page, ACCEPT_HTML, spoof).await;
    let login = assert_auth_redirect(&r, &page);
    assert_eq!(
        upstream.hits(),
        before,
        "unauthenticated request reached the app"
    );

    // XHR/fetch: 401, never a redirect.
    let r = c.get(&page, "application/json", &[]).await;
    assert_eq!(
        r.status,
        401,
        "XHR expected 401: {}\n{}",
        r.describe(),
        logs()
    );

    // 2. The sign-in page on the auth host, through the front proxy.
    let r = c.page(&login).await;
    assert_eq!(r.status, 200, "sign-in page: {}\n{}", r.describe(), logs());
    assert!(
        r.body.contains("<form"),
        "sign-in page has no form: {}",
        r.body
    );

    // 3. Sign in through the JSON API on the auth host.
    let (done, resp) = api_sign_in(&c, &login, "bob", BOB_PW).await;
    assert_eq!(done["to"], page.as_str(), "back to the page: {done}");
    let line = resp
        .set_cookie(SESSION_COOKIE)
        .unwrap_or_else(|| panic!("no session cookie: {}", resp.describe()));
    let attrs = crate::harness::cookie_attrs(&line);
    assert_eq!(
        attrs.get("domain").map(|d| d.trim_start_matches('.')),
        Some(DOMAIN),
        "session cookie not shared across subdomains: {line}"
    );

    // 4. Back to the app: the upstream gets the identity, not the client's claims.
    let r = c.get(&page, ACCEPT_HTML, spoof).await;
    let echo = r.echo();
    assert_eq!(echo.path, "/docs/page?x=1");
    assert_eq!(
        echo.header("remote-user"),
        Some("bob"),
        "{:?}",
        echo.headers
    );
    assert_eq!(echo.header("remote-name"), Some("Bob Builder"));
    assert_eq!(echo.header("remote-email"), Some("bob@example.test"));
    assert_eq!(echo.header("remote-groups"), Some("staff"));

    // 5. Spoofing on a bypass path (Portcullis answers 200 without identity): no Remote-*.
    let r = c
        .get(&c.url(WIKI, "/public/info"), ACCEPT_HTML, spoof)
        .await;
    let echo = r.echo();
    for (k, v) in echo.remote_headers() {
        assert!(
            !v.contains("mallory") && !v.contains("admins") && !v.contains("evil"),
            "spoofed {k}: {v} reached the upstream on a bypass path"
        );
    }
    let anon = Client::new(([127, 0, 0, 1], front).into());
    let r = anon
        .get(&anon.url(WIKI, "/public/info"), ACCEPT_HTML, spoof)
        .await;
    let echo = r.echo();
    assert!(
        echo.remote_headers().is_empty(),
        "spoofed identity reached the upstream for an anonymous client: {:?}",
        echo.remote_headers()
    );

    // 6. The same session on another subdomain; bob is not in `admins`: 403.
    let before = upstream.hits();
    let r = c.page(&c.url(ADMIN, "/")).await;
    assert_eq!(r.status, 403, "bob on admin: {}", r.describe());
    assert_eq!(upstream.hits(), before, "forbidden request reached the app");

    // alice (in admins) signs in once at the auth host and is let into admin too.
    let a = Client::new(([127, 0, 0, 1], front).into());
    let admin_page = a.url(ADMIN, "/dash");
    let r = a.page(&admin_page).await;
    let login = assert_auth_redirect(&r, &admin_page);
    api_sign_in(&a, &login, "alice", ALICE_PW).await;
    let echo = a.page(&admin_page).await.echo();
    assert_eq!(echo.header("remote-user"), Some("alice"));
    assert_eq!(echo.header("remote-groups"), Some("admins,staff"));
    let echo = a.page(&a.url(WIKI, "/")).await.echo();
    assert_eq!(echo.header("remote-user"), Some("alice"), "SSO to wiki");
    assert_eq!(echo.header("remote-name"), Some("Alice Liddell"));
    assert_eq!(echo.header("remote-groups"), Some("admins,staff"));

    // 7. Logout at the auth host (JSON) ends the session on the apps.
    let r = c
        .post_json(
            &c.url(AUTH, "/.portcullis/api/logout"),
            &serde_json::json!({}),
        )
        .await;
    assert!(
        r.status < 400,
        "logout at the auth host: {}\n{}",
        r.describe(),
        logs()
    );
    // Keep presenting the old cookie (a stolen copy) even if the jar was cleared.
    let r = c.get(&page, "application/json", &[]).await;
    assert_eq!(r.status, 401, "after logout: {}", r.describe());
    let token_line = line.split(';').next().unwrap().to_string();
    let raw = Client::new(([127, 0, 0, 1], front).into());
    let r = raw
        .get(&page, "application/json", &[("cookie", &token_line)])
        .await;
    assert_eq!(
        r.status,
        401,
        "revoked token still accepted: {}",
        r.describe()
    );
    let _ = gw;
}

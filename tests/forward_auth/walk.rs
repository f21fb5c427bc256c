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

/// Signs `user` in through the front proxy at `front` (page -> auth host -> JSON sign-in) and
/// returns the session token.
pub async fn sign_in_through(front: u16, user: &str, pw: &str) -> String {
    let c = Client::new(([127, 0, 0, 1], front).into());
    let page = c.url(WIKI, "/docs");
    let r = c.page(&page).await;
    let login = assert_auth_redirect(&r, &page);
    let (_, resp) = api_sign_in(&c, &login, user, pw).await;
    resp.set_cookie_value(SESSION_COOKIE)
        .unwrap_or_else(|| panic!("no session cookie: {}", resp.describe()))
}

/// What the upstream echoed, out of a raw answer.
pub fn echo_of(answer: &str) -> crate::harness::Echo {
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or_default();
    let json = &body[body.find('{').unwrap_or(0)..body.rfind('}').map_or(0, |i| i + 1)];
    let v: serde_json::Value = serde_json::from_str(json)
        .unwrap_or_else(|e| panic!("no upstream echo in the answer ({e}): {answer}"));
    crate::harness::Echo::from_json(&v)
}

/// Client-sent spellings of the identity headers: underscores for hyphens, any case.
const SPOOFED: &[(&str, &str)] = &[
    ("Remote-User", "mallory"),
    ("Remote_User", "mallory"),
    ("remote_user", "mallory"),
    ("REMOTE_USER", "mallory"),
    ("Remote_Name", "Mallory"),
    ("remote_name", "Mallory"),
    ("Remote_Email", "m@evil.test"),
    ("REMOTE_EMAIL", "m@evil.test"),
    ("Remote_Groups", "admins"),
    ("remote_groups", "admins"),
    ("X-Portcullis-Assertion", "forged"),
    ("X_Portcullis_Assertion", "forged"),
    ("X-Portcullis_Assertion", "forged"),
    ("x_portcullis-assertion", "forged"),
];

const IDENTITY: &[&str] = &[
    "remote-user",
    "remote-name",
    "remote-email",
    "remote-groups",
    "x-portcullis-assertion",
];

/// The app behind the front proxy at `front` never receives a client-sent identity header in
/// any spelling, nor the session cookie; its own cookies still arrive, in order.
pub async fn app_gets_no_spoofed_identity_and_no_session_cookie(
    front: u16,
    upstream: &Upstream,
    logs: &dyn Fn() -> String,
) {
    let token = sign_in_through(front, "bob", BOB_PW).await;
    let s = format!("{SESSION_COOKIE}={token}");
    let host = format!("{WIKI}:{front}");
    let other_x: &[(&str, &str)] = &[("other", "1"), ("x", "2")];
    let layouts: Vec<(String, &[(&str, &str)])> = vec![
        (format!("other=1; {s}; x=2"), other_x),
        (format!("{s}; other=1; x=2"), other_x),
        (format!("other=1; x=2; {s}"), other_x),
        (format!("other=1;{s};x=2"), other_x),
        (format!("other=1; {s}; {s}; x=2"), other_x),
        (s.clone(), &[]),
    ];
    for (cookie, want) in &layouts {
        let mut headers = SPOOFED.to_vec();
        headers.push(("cookie", cookie.as_str()));
        headers.push(("accept", "application/json"));
        let (status, text) = raw_get(front, &host, "/docs", &headers).await;
        assert_eq!(status, 200, "Cookie: {cookie}: {text}\n{}", logs());
        let echo = echo_of(&text);
        assert!(
            !echo.raw.to_string().contains(&token),
            "the session token reached the app (Cookie: {cookie}): {:?}",
            echo.headers
        );
        let cookies = echo.cookies();
        let got: Vec<(&str, &str)> = cookies
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            &got,
            want,
            "Cookie: {cookie} arrived as {:?}",
            echo.header("cookie")
        );
        for (name, value) in &echo.headers {
            let canonical = name.replace('_', "-");
            if !IDENTITY.contains(&canonical.as_str()) {
                continue;
            }
            assert_eq!(
                name, &canonical,
                "a client-sent {name}: {value} reached the app"
            );
            assert!(
                !value.contains("mallory")
                    && !value.contains("admins")
                    && !value.contains("evil")
                    && !value.contains("forged"),
                "spoofed {name}: {value} reached the app"
            );
        }
        assert_eq!(echo.header("remote-user"), Some("bob"));
        assert_eq!(echo.header("remote-groups"), Some("staff"));
        assert_eq!(echo.header("x-portcullis-assertion"), None);
    }

    // Three copies: the cookie is still not passed (here nothing is).
    let cookie = format!("a=1; {s}; {s}; {s}");
    let (status, text) = raw_get(front, &host, "/docs", &[("cookie", cookie.as_str())]).await;
    assert_eq!(status, 200, "{text}");
    assert!(
        !text.contains(&token),
        "three copies: the token reached the app: {text}"
    );

    // Anonymous on a bypass path (Portcullis answers 200 without identity): nothing spoofed
    // survives, and a cookie named like the session's is not passed either.
    let before = upstream.hits();
    let mut headers = SPOOFED.to_vec();
    headers.push(("cookie", "other=1; portcullis_session=not-a-token-3c9; x=2"));
    let (status, text) = raw_get(front, &host, "/public/info", &headers).await;
    assert_eq!(status, 200, "{text}\n{}", logs());
    assert_eq!(upstream.hits(), before + 1);
    let echo = echo_of(&text);
    let leaked: Vec<_> = echo
        .headers
        .keys()
        .filter(|k| IDENTITY.contains(&k.replace('_', "-").as_str()))
        .collect();
    assert!(
        leaked.is_empty(),
        "identity headers on a bypass path: {leaked:?}"
    );
    assert!(!text.contains("not-a-token-3c9"), "{text}");
    assert_eq!(
        echo.cookies(),
        vec![("other".into(), "1".into()), ("x".into(), "2".into())]
    );
}

//! Redirect safety: `rd` is followed only to protected hosts; every trick falls back to the
//! app root of the host the sign-in happened on.

use crate::harness::*;

/// rd values as they appear in the query string (already percent-encoded where needed) and
/// what they decode to, for messages.
fn tricks() -> Vec<(String, &'static str)> {
    let enc = |s: &str| pct(s);
    vec![
        (enc("https://evil.example/"), "https://evil.example/"),
        (
            enc("http://evil.example/app.test"),
            "http://evil.example/app.test",
        ),
        (enc("//evil.example"), "//evil.example"),
        (enc("//evil.example/path"), "//evil.example/path"),
        (enc("/\\evil.example"), "/\\evil.example"),
        (enc("\\\\evil.example"), "\\\\evil.example"),
        (enc("/\\/evil.example"), "/\\/evil.example"),
        (enc("javascript:alert(1)"), "javascript:alert(1)"),
        (
            enc("JavaScript:alert(document.domain)//app.test"),
            "JavaScript:alert(...)",
        ),
        (
            enc("data:text/html,<script>alert(1)</script>"),
            "data:text/html,...",
        ),
        // Percent-encoded variants: the gateway decodes the query once and gets these.
        ("%252F%252Fevil.example".into(), "%2F%2Fevil.example"),
        ("%252f%252fevil.example".into(), "%2f%2fevil.example"),
        (
            "https%253A%252F%252Fevil.example%252F".into(),
            "https%3A%2F%2Fevil.example%2F",
        ),
        ("%255C%255Cevil.example".into(), "%5C%5Cevil.example"),
        (
            "%2F%5Cevil.example".into(),
            "/\\evil.example (single-encoded)",
        ),
        (
            "%2F%2Fevil.example".into(),
            "//evil.example (single-encoded)",
        ),
        // Userinfo tricks.
        (
            enc("http://app.test@evil.example/"),
            "http://app.test@evil.example/",
        ),
        (
            enc("http://evil.example\\@app.test/"),
            "http://evil.example\\@app.test/",
        ),
        (
            enc("http://app.test:80@evil.example/"),
            "http://app.test:80@evil.example/",
        ),
        (
            enc("http://user:pass@app.test/"),
            "http://user:pass@app.test/",
        ),
        // Look-alike hosts.
        (
            enc("http://app.test.evil.example/"),
            "http://app.test.evil.example/",
        ),
        (enc("http://evilapp.test/"), "http://evilapp.test/"),
        (enc("https:evil.example"), "https:evil.example"),
        (enc("http:/\\evil.example"), "http:/\\evil.example"),
        // Whitespace and control characters.
        (enc(" //evil.example"), " //evil.example"),
        (enc("/\t/evil.example"), "/<TAB>/evil.example"),
        (
            enc("http://evil.example\n.app.test/"),
            "http://evil.example<LF>.app.test/",
        ),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn open_redirect_tricks_fall_back_to_app_root_json() {
    let gw = Gateway::start().await;
    let mut failures = Vec::new();
    for (query, shown) in tricks() {
        let b = gw.browser();
        let s = api_sign_in_on(&b, APP, Some(&query), "alice", ALICE_PW).await;
        if s.to != gw.app_root() {
            failures.push(format!("rd={query} ({shown}) -> to={:?}", s.to));
        }
    }
    assert!(
        failures.is_empty(),
        "open redirects (want {}):\n{}",
        gw.app_root(),
        failures.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn open_redirect_tricks_fall_back_to_app_root_html() {
    let gw = Gateway::start().await;
    let mut failures = Vec::new();
    let mut tried = 0;
    for (query, shown) in tricks().into_iter().filter(|(_, s)| {
        [
            "https://evil.example/",
            "//evil.example",
            "/\\evil.example",
            "javascript:alert(1)",
            "%2F%2Fevil.example",
            "http://app.test@evil.example/",
            "http://evil.example\\@app.test/",
        ]
        .contains(s)
    }) {
        let b = gw.browser();
        let r = html_sign_in_from(
            &b,
            &format!("{}?rd={query}", flow_path()),
            "alice",
            ALICE_PW,
        )
        .await;
        let loc = r.location();
        if loc != gw.app_root() {
            failures.push(format!("rd={query} ({shown}) -> Location: {loc:?}"));
        }
        assert!(
            r.set_cookie_value(SESSION_COOKIE).is_some(),
            "sign-in itself must succeed"
        );
        tried += 1;
    }
    assert_eq!(tried, 7, "not every trick was tried");
    assert!(
        failures.is_empty(),
        "open redirects:\n{}",
        failures.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn fallback_is_the_root_of_the_host_signed_in_on() {
    let gw = Gateway::start().await;
    let b = gw.browser();
    let s = api_sign_in_on(
        &b,
        ADMIN_APP,
        Some(&pct("https://evil.example/")),
        "bob",
        BOB_PW,
    )
    .await;
    assert_eq!(s.to, gw.url_on(ADMIN_APP, "/"));
}

#[tokio::test(flavor = "multi_thread")]
async fn legitimate_rd_on_a_protected_host_is_followed() {
    let gw = Gateway::start().await;
    for (rd, to) in [
        (gw.url("/deep/link?a=1&b=two%20words"), None),
        (gw.url("/"), None),
        (gw.url_on(ADMIN_APP, "/panel"), None),
        // Another port on our host: followed, on the host's configured origin.
        (format!("http://{APP}/no-port"), Some(gw.url("/no-port"))),
    ] {
        let b = gw.browser();
        let s = api_sign_in_on(&b, APP, Some(&pct(&rd)), "alice", ALICE_PW).await;
        assert_eq!(s.to, to.unwrap_or(rd), "legit rd not followed");
    }
    // Through HTML, from the app's own 302.
    let b = gw.browser();
    let r = b.get_html("/deep/link?a=1").await;
    assert_eq!(r.status, 302);
    let r = html_sign_in_from(&b, &r.location_absolute(), "alice", ALICE_PW).await;
    assert_eq!(r.location(), gw.url("/deep/link?a=1"));
    let echo = b.get_html(&r.location()).await.echo();
    assert_eq!(echo.path, "/deep/link?a=1");
}

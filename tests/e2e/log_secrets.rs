//! Attacks through the real binary where the transport matters: with trace logging on
//! (`PORTCULLIS_LOG=trace`, Pingora's included), the gateway's log never holds a password
//! (right or wrong), a CSRF token, a flow or session cookie, a sign-in link's token or a
//! code; and form posts whose CSRF token is only in the query, or repeated, are judged by the
//! body alone.

use crate::harness::*;
use serde_json::json;

fn verbose() -> Setup {
    Setup {
        extra_toml: "[log]\naccess = true\n".into(),
        env: vec![("PORTCULLIS_LOG".into(), "trace".into())],
        ..Setup::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn with_every_log_level_on_no_secret_reaches_the_log() {
    let gw = Gateway::start_with(verbose()).await;
    let b = gw.browser();

    // HTML: identification, a wrong password, the right one.
    let first = form_page(&b.get_html(&b.url(&flow_path())).await);
    let flow_id = b
        .cookie(&b.url("/.portcullis/"), FLOW_COOKIE)
        .expect("a flow cookie");
    let r = submit(&b, &first, &[("uid", "alice")]).await;
    let pw_page = next_page(&b, &r).await;
    let r = submit(&b, &pw_page, &[("password", WRONG_PW)]).await;
    assert_eq!(r.status, 200, "{}", r.describe());
    let r = submit(&b, &pw_page, &[("password", ALICE_PW)]).await;
    assert_eq!(r.status, 303, "{}", r.describe());
    let session = r.set_cookie_value(SESSION_COOKIE).expect("a session");

    // CSRF tricks on a second sign-in; each is refused and none moves it on.
    let other = gw.browser();
    let page = form_page(&other.get_html(&other.url(&flow_path())).await);
    let with_query = format!("{}?csrf_token={}", page.action, pct(&page.csrf));
    type Case<'a> = (&'a str, String, Vec<(&'a str, &'a str)>);
    let cases: Vec<Case<'_>> = vec![
        (
            "token only in the query",
            with_query,
            vec![("stage", &page.stage), ("uid", "bob")],
        ),
        (
            "the right token, then a wrong one",
            page.action.clone(),
            vec![
                ("csrf_token", &page.csrf),
                ("csrf_token", "wrong"),
                ("stage", &page.stage),
                ("uid", "bob"),
            ],
        ),
        (
            "the other sign-in's token",
            page.action.clone(),
            vec![
                ("csrf_token", &first.csrf),
                ("stage", &page.stage),
                ("uid", "bob"),
            ],
        ),
        (
            "an empty token",
            page.action.clone(),
            vec![("csrf_token", ""), ("stage", &page.stage), ("uid", "bob")],
        ),
    ];
    for (what, url, fields) in &cases {
        let r = other.post_form(url, fields).await;
        assert_eq!(r.status, 403, "{what}: {}", r.describe());
        assert!(!r.body.contains(&page.csrf), "{what}: token echoed");
    }
    let again = form_page(&other.get_html(&other.url(&flow_path())).await);
    assert!(has_input(&again.html, "uid"), "still at identification");

    // JSON: a wrong password for bob, then an out-of-step post carrying his password.
    let api = gw.browser();
    api_start(&api, APP, None).await;
    let url = api.url(&api_path());
    let r = api.post_json(&url, &json!({ "uid": "bob" })).await;
    assert_eq!(r.status, 200, "{}", r.describe());
    let r = api
        .post_json(
            &url,
            &json!({ "password": BOB_PW, "uid": "bob", "stage": "login" }),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.describe());
    assert!(!r.body.contains(BOB_PW), "the password echoed: {}", r.body);
    let r = api.post_json(&url, &json!({ "password": [BOB_PW] })).await;
    assert_eq!(r.status, 400, "{}", r.describe());
    assert!(!r.body.contains(BOB_PW), "the password echoed: {}", r.body);

    // A sign-in link and a code in the query, on both link endpoints.
    let link_token = "LinkTokenSecretQ7w9e1r3t5y7u9i0";
    let r = b
        .get_html(&b.url(&format!("/.portcullis/link?token={link_token}&code=735194")))
        .await;
    assert_eq!(r.status, 410, "{}", r.describe());
    let r = b
        .post_form("/.portcullis/link", &[("token", link_token)])
        .await;
    assert_eq!(r.status, 410, "{}", r.describe());

    // The session on an app, and a sign-out with its CSRF token.
    let r = gw
        .raw()
        .get_with_token("/reports", &session, "application/json")
        .await;
    assert_eq!(r.status, 200, "{}", r.describe());
    let logout = b.get_html("/.portcullis/logout").await;
    let logout_csrf = input_value(&logout.body, "csrf_token").expect("a logout form");
    let r = b
        .post_form("/.portcullis/logout", &[("csrf_token", &logout_csrf)])
        .await;
    assert!(r.status < 400, "{}", r.describe());

    // The access line of the last request is written after the answer.
    poll_until(std::time::Duration::from_secs(5), || {
        gw.logs().matches("portcullis::access").count() >= 20
    })
    .await;
    let logs = gw.logs();
    assert!(
        logs.contains("DEBUG") || logs.contains("TRACE"),
        "the verbose levels are on"
    );
    let secrets = [
        ("password", ALICE_PW),
        ("wrong password", WRONG_PW),
        ("password sent out of step", BOB_PW),
        ("csrf token", first.csrf.as_str()),
        ("csrf token of the password page", pw_page.csrf.as_str()),
        ("csrf token of the second sign-in", page.csrf.as_str()),
        ("logout csrf token", logout_csrf.as_str()),
        ("flow cookie", flow_id.as_str()),
        ("session cookie", session.as_str()),
        ("link token", link_token),
        ("code", "735194"),
    ];
    for (what, secret) in secrets {
        assert!(!secret.is_empty(), "{what} was captured");
        if let Some(line) = logs.lines().find(|l| l.contains(secret)) {
            panic!("the {what} is in the log: {line}");
        }
    }
}

//! The HTML face of the sign-in flow: server-rendered forms, CSRF, landing on `rd`.

use crate::harness::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn html_sign_in_lands_on_rd_with_session_cookie() {
    let gw = Gateway::start().await;
    let b = gw.browser();

    // 1. The app redirects the browser to the flow.
    let r = b.get_html("/reports/2024?year=2024&view=full").await;
    assert_eq!(r.status, 302, "{}", r.describe());
    let flow_url = r.location_absolute();
    assert!(
        flow_url.starts_with(&gw.url(&format!("/.portcullis/flow/{FLOW}?rd="))),
        "{flow_url}"
    );

    // 2. The identification page: form, csrf, stage, uid field; the flow cookie is set.
    let first = b.get_html(&flow_url).await;
    let page = form_page(&first);
    assert!(has_post_form(&page.html), "no POST form:\n{}", page.html);
    assert!(has_input(&page.html, "uid"), "no uid field:\n{}", page.html);
    assert!(
        !has_input(&page.html, "password"),
        "password field too early:\n{}",
        page.html
    );
    let flow_cookie = first
        .set_cookie(FLOW_COOKIE)
        .unwrap_or_else(|| panic!("no flow cookie: {}", first.describe()));
    let attrs = cookie_attrs(&flow_cookie);
    assert_eq!(
        attrs.get("path").map(String::as_str),
        Some("/.portcullis"),
        "{flow_cookie}"
    );
    assert!(
        attrs.contains_key("httponly"),
        "flow cookie not HttpOnly: {flow_cookie}"
    );
    assert_eq!(
        attrs.get("samesite").map(|s| s.to_ascii_lowercase()),
        Some("lax".into()),
        "{flow_cookie}"
    );
    assert!(first.set_cookie(SESSION_COOKIE).is_none());

    // 3. uid -> 303 to the flow page, which now asks for the password.
    let r = submit(&b, &page, &[("uid", "alice")]).await;
    assert_eq!(r.status, 303, "{}", r.describe());
    assert!(
        r.location_absolute().starts_with(&gw.url(&flow_path())),
        "after uid: {}",
        r.location()
    );
    assert!(
        r.set_cookie(SESSION_COOKIE).is_none(),
        "session cookie before the password"
    );
    let page = next_page(&b, &r).await;
    assert!(
        has_input(&page.html, "password"),
        "no password field:\n{}",
        page.html
    );
    assert!(!has_input(&page.html, "uid"), "{}", page.html);

    // 4. password -> 303 to rd with the session cookie.
    let r = submit(&b, &page, &[("password", ALICE_PW)]).await;
    assert_eq!(r.status, 303, "{}", r.describe());
    assert_eq!(r.location(), gw.url("/reports/2024?year=2024&view=full"));
    let line = r
        .set_cookie(SESSION_COOKIE)
        .unwrap_or_else(|| panic!("{}", r.describe()));
    let attrs = cookie_attrs(&line);
    assert!(attrs.contains_key("httponly"), "{line}");
    assert_eq!(
        attrs.get("samesite").map(|s| s.to_ascii_lowercase()),
        Some("lax".into()),
        "{line}"
    );
    assert!(
        !attrs.contains_key("secure"),
        "Secure on plain http: {line}"
    );
    assert_eq!(attrs.get("path").map(String::as_str), Some("/"), "{line}");

    // 5. Landing on rd: the upstream sees alice.
    let r = b.get_html(&r.location()).await;
    let echo = r.echo();
    assert_eq!(echo.path, "/reports/2024?year=2024&view=full");
    assert_eq!(echo.header("remote-user"), Some("alice"));
    assert_eq!(echo.header("remote-groups"), Some("staff,ops"));
}

#[tokio::test(flavor = "multi_thread")]
async fn html_sign_in_with_email_as_identifier() {
    let gw = Gateway::start().await;
    let b = gw.browser();
    let r = html_sign_in_from(
        &b,
        &flow_path_rd(Some(&gw.url("/mail"))),
        "alice@example.com",
        ALICE_PW,
    )
    .await;
    assert_eq!(r.location(), gw.url("/mail"));
    let echo = b.get_html("/mail").await.echo();
    assert_eq!(echo.header("remote-user"), Some("alice"));
}

#[tokio::test(flavor = "multi_thread")]
async fn html_wrong_password_shows_error_then_right_password_signs_in() {
    let gw = Gateway::start().await;
    let b = gw.browser();
    let first = b.get_html(&flow_path_rd(Some(&gw.url("/after")))).await;
    let page = form_page(&first);
    let r = submit(&b, &page, &[("uid", "alice")]).await;
    let page = next_page(&b, &r).await;

    let r = submit(&b, &page, &[("password", WRONG_PW)]).await;
    assert_eq!(r.status, 200, "{}", r.describe());
    assert!(
        r.body.contains(INVALID_MSG),
        "no error on the page:\n{}",
        r.body
    );
    assert!(
        r.set_cookie(SESSION_COOKIE).is_none(),
        "session after a wrong password"
    );
    let again = form_page(&r);
    assert!(has_input(&again.html, "password"), "{}", again.html);
    assert!(
        !r.body.contains(WRONG_PW),
        "the typed password is echoed back"
    );

    let r = submit(&b, &again, &[("password", ALICE_PW)]).await;
    assert_eq!(r.status, 303, "{}", r.describe());
    assert_eq!(r.location(), gw.url("/after"));
    assert!(r.set_cookie_value(SESSION_COOKIE).is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn html_post_without_csrf_token_is_forbidden() {
    let gw = Gateway::start().await;
    let b = gw.browser();
    let page = form_page(&b.get_html(&flow_path()).await);
    let r = b
        .post_form(&page.action, &[("stage", &page.stage), ("uid", "alice")])
        .await;
    assert_eq!(r.status, 403, "{}", r.describe());

    // The execution did not move: still identification.
    let again = form_page(&b.get_html(&flow_path()).await);
    assert!(has_input(&again.html, "uid"), "{}", again.html);
    assert!(!has_input(&again.html, "password"), "{}", again.html);
}

#[tokio::test(flavor = "multi_thread")]
async fn html_post_with_wrong_csrf_token_is_forbidden() {
    let gw = Gateway::start().await;
    let b = gw.browser();
    let page = form_page(&b.get_html(&flow_path()).await);

    // Another execution's token is not this one's.
    let other = gw.browser();
    let other_page = form_page(&other.get_html(&flow_path()).await);
    assert_ne!(
        other_page.csrf, page.csrf,
        "two executions share a CSRF token"
    );

    for bad in [
        other_page.csrf.as_str(),
        "",
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    ] {
        let r = b
            .post_form(
                &page.action,
                &[
                    ("csrf_token", bad),
                    ("stage", &page.stage),
                    ("uid", "alice"),
                ],
            )
            .await;
        assert_eq!(r.status, 403, "csrf {bad:?}: {}", r.describe());
    }
    // Also at the password stage: a wrong token cannot submit a password.
    let r = submit(&b, &page, &[("uid", "alice")]).await;
    let pw_page = next_page(&b, &r).await;
    let r = b
        .post_form(
            &pw_page.action,
            &[
                ("csrf_token", &other_page.csrf),
                ("stage", &pw_page.stage),
                ("password", ALICE_PW),
            ],
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.describe());
    assert!(r.set_cookie(SESSION_COOKIE).is_none());
    // With the right token it goes on.
    let r = submit(&b, &pw_page, &[("password", ALICE_PW)]).await;
    assert_eq!(r.status, 303, "{}", r.describe());
    assert!(r.set_cookie_value(SESSION_COOKIE).is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn html_failed_attempts_cancel_the_execution() {
    let gw = Gateway::start().await;
    let b = gw.browser();
    let page = form_page(&b.get_html(&flow_path()).await);
    let r = submit(&b, &page, &[("uid", "alice")]).await;
    let mut page = next_page(&b, &r).await;
    let flow_id = b
        .cookie(&gw.url("/.portcullis/flow/x"), FLOW_COOKIE)
        .expect("flow cookie");

    for i in 1..MAX_FAILURES {
        let r = submit(&b, &page, &[("password", WRONG_PW)]).await;
        assert_eq!(r.status, 200, "attempt {i}: {}", r.describe());
        assert!(r.body.contains(INVALID_MSG), "attempt {i}:\n{}", r.body);
        page = form_page(&r);
    }
    let r = submit(&b, &page, &[("password", WRONG_PW)]).await;
    assert_eq!(r.status, 200, "last attempt: {}", r.describe());
    assert!(
        r.body.to_lowercase().contains("too many"),
        "the page must say the sign-in was cancelled:\n{}",
        r.body
    );
    assert!(
        !has_input(&r.body, "password"),
        "cancelled page still asks for a password"
    );

    // The cancelled execution cannot be finished, even with the right password and the old
    // flow cookie and csrf token.
    let raw = gw.raw();
    let resp = Resp::read(
        raw.http
            .post(gw.url(&flow_path()))
            .header("cookie", format!("{FLOW_COOKIE}={flow_id}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!(
                "csrf_token={}&stage={}&password={}",
                pct(&page.csrf),
                pct(&page.stage),
                pct(ALICE_PW)
            ))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(
        resp.set_cookie_value(SESSION_COOKIE).is_none(),
        "a cancelled execution issued a session: {}",
        resp.describe()
    );
    if resp.status == 303 {
        assert!(
            resp.location_absolute().starts_with(&gw.url(&flow_path())),
            "{}",
            resp.describe()
        );
    }

    // A new sign-in starts over at identification.
    let fresh = form_page(&b.get_html(&flow_path()).await);
    assert!(has_input(&fresh.html, "uid"), "{}", fresh.html);
}

#[tokio::test(flavor = "multi_thread")]
async fn html_replayed_identification_form_at_password_stage_starts_afresh_with_that_name() {
    let gw = Gateway::start().await;
    let b = gw.browser();
    let id_page = form_page(&b.get_html(&flow_path()).await);
    let r = submit(&b, &id_page, &[("uid", "alice")]).await;
    let pw_page = next_page(&b, &r).await;
    assert_ne!(
        id_page.stage, pw_page.stage,
        "both stages carry the same stage marker"
    );

    // Replay the identification form (its stage marker, its field) now that we are at password:
    // the person went Back to correct the name. The execution starts afresh as bob; nothing
    // of alice's remains in it, and nobody is signed in.
    let r = submit(&b, &id_page, &[("uid", "bob")]).await;
    assert_eq!(r.status, 303, "replayed identification: {}", r.describe());
    assert!(r.set_cookie(SESSION_COOKIE).is_none());
    assert!(r.set_cookie_value(FLOW_COOKIE).is_some(), "a new execution");

    // Skipping ahead is refused too: a fresh execution posting a password with the
    // identification stage marker.
    let b2 = gw.browser();
    let p2 = form_page(&b2.get_html(&flow_path()).await);
    let r = submit(&b2, &p2, &[("password", ALICE_PW)]).await;
    assert_eq!(
        r.status,
        400,
        "password at identification: {}",
        r.describe()
    );
    assert!(r.set_cookie(SESSION_COOKIE).is_none());

    // The new execution is at password, for bob: alice's password does not open it.
    let again = form_page(&b.get_html(&flow_path()).await);
    assert!(again.html.contains("Signing in as bob"), "{}", again.html);
    let r = submit(&b, &again, &[("password", ALICE_PW)]).await;
    assert_eq!(r.status, 200, "{}", r.describe());
    assert!(r.set_cookie(SESSION_COOKIE).is_none());
    let again = form_page(&r);
    let r = submit(&b, &again, &[("password", BOB_PW)]).await;
    assert_eq!(r.status, 303, "{}", r.describe());
    let echo = b.get_json("/me").await.echo();
    assert_eq!(echo.header("remote-user"), Some("bob"));
}

#[tokio::test(flavor = "multi_thread")]
async fn html_and_json_faces_share_one_execution() {
    let gw = Gateway::start().await;
    let b = gw.browser();
    // The browser lands on the HTML page (the redirect from the app)...
    let r = b.get_html("/shared?x=1").await;
    assert_eq!(r.status, 302);
    let page = form_page(&b.get_html(&r.location_absolute()).await);
    assert!(has_input(&page.html, "uid"));
    // ...identifies through HTML...
    let r = submit(&b, &page, &[("uid", "alice")]).await;
    assert_eq!(r.status, 303, "{}", r.describe());
    // ...and goes on in JSON with the same flow cookie.
    let r = b.get_json(&api_path()).await;
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(r.json()["component"], "password", "{}", r.body);
    let r = b
        .post_json(&api_path(), &json!({ "password": ALICE_PW }))
        .await;
    assert_eq!(r.status, 200, "{}", r.describe());
    let v = r.json();
    assert_eq!(v["component"], "redirect", "{v}");
    assert_eq!(v["to"], gw.url("/shared?x=1"), "{v}");
    assert_eq!(
        b.get_json("/shared?x=1").await.echo().header("remote-user"),
        Some("alice")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn html_expired_or_missing_execution_restarts_the_flow() {
    let gw = Gateway::start().await;
    let b = gw.browser();
    // A POST with no flow cookie at all: no session, back to a fresh flow page (or refused).
    let r = b
        .post_form(
            &flow_path(),
            &[("csrf_token", "x"), ("stage", "identify"), ("uid", "alice")],
        )
        .await;
    assert!(r.set_cookie_value(SESSION_COOKIE).is_none());
    assert!(
        r.status == 303 || r.status == 403 || r.status == 410 || r.status == 400,
        "{}",
        r.describe()
    );
    let page = form_page(&b.get_html(&flow_path()).await);
    assert!(has_input(&page.html, "uid"));
}

//! Deleting one's own account through an `unenrollment` flow, on both faces: the password
//! again, then the account, its devices and every session are gone, the browser is signed out,
//! and one audit line says so. Cross-site and out-of-step attempts delete nothing.

use crate::harness::*;
use serde_json::json;

const LEAVE: &str = "unenroll";
const LEAVE_NOW: &str = "unenroll-now";

fn setup() -> Setup {
    Setup {
        extra_toml: format!(
            r#"
[[flows]]
slug = "{LEAVE}"
title = "Delete your account"
designation = "unenrollment"
stages = ["identify", "password", "goodbye"]

[[flows]]
slug = "{LEAVE_NOW}"
title = "Delete your account"
designation = "unenrollment"
stages = ["goodbye"]

[stages.goodbye]
kind = "user_delete"
"#
        ),
        ..Setup::default()
    }
}

fn html(slug: &str) -> String {
    format!("/.portcullis/flow/{slug}")
}

fn api(slug: &str) -> String {
    format!("/.portcullis/api/flow/{slug}")
}

/// Whether the account `name` is still there, as the CLI sees it.
async fn exists(gw: &Gateway, name: &str) -> bool {
    let out = gw.cli(&["user", "list"], None).await;
    assert!(out.ok(), "{}", out.all());
    out.stdout
        .lines()
        .any(|l| l.split_whitespace().next() == Some(name))
}

#[tokio::test(flavor = "multi_thread")]
async fn html_deleting_an_account_asks_the_password_then_signs_out_everywhere() {
    let gw = Gateway::start_with(setup()).await;
    let b = gw.browser();
    let done = html_sign_in_from(&b, &flow_path(), "alice", ALICE_PW).await;
    assert_eq!(done.status, 303);
    let token = b.cookie(&gw.url("/"), SESSION_COOKIE).expect("session");
    // A second browser of alice's, signed in too.
    let (other, other_s) = alice_browser(&gw).await;
    assert!(exists(&gw, "alice").await);

    let page = form_page(
        &b.get_html(&format!("{}?rd={}", html(LEAVE), pct(&gw.url("/bye"))))
            .await,
    );
    assert!(has_input(&page.html, "password"), "{}", page.html);
    let r = submit(&b, &page, &[("password", WRONG_PW)]).await;
    assert_eq!(r.status, 200, "{}", r.describe());
    assert!(
        exists(&gw, "alice").await,
        "a wrong password deletes nothing"
    );
    let page = form_page(&r);
    let r = submit(&b, &page, &[("password", ALICE_PW)]).await;
    assert_eq!(r.status, 303, "{}", r.describe());
    assert_eq!(r.location_absolute(), gw.url("/bye"));
    let clear = r
        .set_cookie(SESSION_COOKIE)
        .expect("the session cookie is cleared");
    assert!(cookie_is_cleared(&clear), "{clear}");

    assert!(!exists(&gw, "alice").await);
    assert_token_refused(&gw, &token, "the deleting browser's session").await;
    assert_token_refused(&gw, &other_s.token, "another browser's session").await;
    assert_eq!(other.get_json("/x").await.status, 401);
    // Signing in as alice no longer works; bob is untouched.
    let r = b.get_json(&api_path()).await;
    assert_eq!(r.status, 200);
    b.post_json(&api_path(), &json!({ "uid": "alice" })).await;
    let r = b
        .post_json(&api_path(), &json!({ "password": ALICE_PW }))
        .await;
    assert_ne!(r.json()["component"], "redirect", "{}", r.body);
    assert!(exists(&gw, "bob").await);
    // One audit line, naming the user and never a secret.
    let logs = gw.logs();
    let line = logs
        .lines()
        .find(|l| l.contains("portcullis::audit") && l.contains("account_deleted"))
        .unwrap_or_else(|| panic!("no audit line:\n{logs}"));
    assert!(line.contains("alice"), "{line}");
    assert!(!logs.contains(ALICE_PW));
}

#[tokio::test(flavor = "multi_thread")]
async fn json_deleting_an_account_confirms_with_the_delete_action() {
    let gw = Gateway::start_with(setup()).await;
    let b = gw.browser();
    let s = api_sign_in(&b, "bob", BOB_PW).await;
    let r = b.get_json(&api(LEAVE_NOW)).await;
    assert_eq!(r.status, 200, "{}", r.describe());
    let v = r.json();
    assert_eq!(v["component"], "user_delete", "{v}");
    assert_eq!(v["actions"][0]["name"], "delete", "{v}");
    assert!(
        exists(&gw, "bob").await,
        "showing the question deletes nothing"
    );
    let r = b
        .post_json(&api(LEAVE_NOW), &json!({ "action": "delete" }))
        .await;
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(r.json()["component"], "redirect", "{}", r.body);
    let clear = r.set_cookie(SESSION_COOKIE).expect("cleared");
    assert!(cookie_is_cleared(&clear), "{clear}");
    assert!(!exists(&gw, "bob").await);
    assert_token_refused(&gw, &s.token, "bob's session").await;
}

/// What a page on another site, or a script without the flow's state, can make a signed-in
/// browser send, and that none of it deletes the account.
#[tokio::test(flavor = "multi_thread")]
async fn cross_site_and_out_of_step_requests_delete_nothing() {
    let gw = Gateway::start_with(setup()).await;
    let (b, s) = alice_browser(&gw).await;
    // A link or <img> to the flow: a page load shows the question and stops there.
    for path in [html(LEAVE_NOW), api(LEAVE_NOW)] {
        let r = b.get_html(&path).await;
        assert_eq!(r.status, 200, "{path}: {}", r.describe());
    }
    // (what is posted, to where, as what)
    let flow_html = gw.url(&html(LEAVE_NOW));
    let cases: Vec<(&str, reqwest::RequestBuilder)> = vec![
        (
            "a cross-site form without the CSRF token",
            b.http
                .post(&flow_html)
                .header("content-type", "application/x-www-form-urlencoded")
                .body("stage=goodbye&action=delete"),
        ),
        (
            "a form with a made-up CSRF token",
            b.http
                .post(&flow_html)
                .header("content-type", "application/x-www-form-urlencoded")
                .body("csrf_token=guess&stage=goodbye&action=delete"),
        ),
        (
            "the API as a form (no JSON content type)",
            b.http
                .post(gw.url(&api(LEAVE_NOW)))
                .header("content-type", "text/plain")
                .body(r#"{"action":"delete"}"#),
        ),
    ];
    for (what, rb) in cases {
        let r = b.send(rb).await;
        assert!(matches!(r.status, 403 | 415), "{what}: {}", r.describe());
        assert!(exists(&gw, "alice").await, "{what}");
    }
    // The password flow: answering the delete before the password is out of step.
    let r = b.get_json(&api(LEAVE)).await;
    assert_eq!(r.json()["component"], "password");
    for body in [
        json!({ "action": "delete" }),
        json!({ "stage": "goodbye", "action": "delete" }),
        json!({ "component": "user_delete", "action": "delete" }),
    ] {
        let r = b.post_json(&api(LEAVE), &body).await;
        assert_eq!(r.status, 400, "{body}: {}", r.describe());
        assert!(exists(&gw, "alice").await, "{body}");
    }
    // Without a session nothing starts: a visitor is sent to sign in.
    let nobody = gw.browser();
    let r = nobody
        .post_json(&api(LEAVE_NOW), &json!({ "action": "delete" }))
        .await;
    assert_eq!(r.status, 410, "{}", r.describe());
    assert_eq!(nobody.get_json(&api(LEAVE_NOW)).await.status, 401);
    assert!(exists(&gw, "alice").await);
    assert_token_accepted(&gw, &s.token, "alice is still signed in").await;
}

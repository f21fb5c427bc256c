//! A mistyped username never strands anyone: every step after identification offers "Not you?
//! Start over", and the identification form posted again (the browser's Back, a JSON client
//! going back) starts afresh with the new name instead of answering "Out of step".

use crate::harness::*;
use serde_json::{json, Value};

const START_OVER: &str = "Not you? Start over";

/// The page a person reaches after typing `uid` on the identification form of a flow started
/// towards `rd`: (the identification page, the page after it).
async fn identified_as(b: &Browser, rd: &str, uid: &str) -> (FormPage, FormPage) {
    let first = form_page(&b.get_html(&flow_path_rd(Some(rd))).await);
    assert!(has_input(&first.html, "uid"), "{}", first.html);
    assert!(
        !first.html.contains(START_OVER),
        "nothing to start over before identification:\n{}",
        first.html
    );
    let r = submit(b, &first, &[("uid", uid)]).await;
    let next = next_page(b, &r).await;
    assert!(
        next.html.contains(&format!("Signing in as {uid}")),
        "{}",
        next.html
    );
    (first, next)
}

/// The upstream sees `user` when this browser opens `url`.
async fn lands_as(b: &Browser, url: &str, user: &str) {
    let echo = b.get_html(url).await.echo();
    assert_eq!(echo.header("remote-user"), Some(user), "{url}");
}

#[tokio::test(flavor = "multi_thread")]
async fn identification_posted_again_after_moving_on_restarts_with_the_new_name() {
    let gw = Gateway::start().await;
    let b = gw.browser();
    let rd = gw.url("/wiki/page?x=1");
    let (first, password) = identified_as(&b, &rd, "bob").await;
    let old_flow = b.cookie(&gw.url("/.portcullis/flow/x"), FLOW_COOKIE);

    // Back shows the identification form again; the person types the right name.
    let r = submit(&b, &first, &[("uid", "alice")]).await;
    assert_eq!(r.status, 303, "not Out of step: {}", r.describe());
    assert!(
        r.set_cookie_value(FLOW_COOKIE).is_some(),
        "a new execution: {}",
        r.describe()
    );
    let page = next_page(&b, &r).await;
    assert!(
        page.html.contains("Signing in as alice") && has_input(&page.html, "password"),
        "{}",
        page.html
    );
    assert_ne!(
        b.cookie(&gw.url("/.portcullis/flow/x"), FLOW_COOKIE),
        old_flow
    );

    // The abandoned password page belongs to an execution that no longer exists.
    let r = submit(&b, &password, &[("password", BOB_PW)]).await;
    assert!(
        r.set_cookie_value(SESSION_COOKIE).is_none(),
        "the old page signed someone in: {}",
        r.describe()
    );

    let page = form_page(&b.get_html(&flow_path()).await);
    let r = submit(&b, &page, &[("password", ALICE_PW)]).await;
    assert_eq!(r.status, 303, "{}", r.describe());
    assert_eq!(r.location_absolute(), rd, "the same rd");
    lands_as(&b, &rd, "alice").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn json_client_going_back_to_identification_restarts_too() {
    let gw = Gateway::start().await;
    let rd = gw.url("/api/after");
    // Naming the stage, or naming the component: both restart with the new name.
    let table: [(&str, Value); 2] = [
        ("stage", json!({ "stage": "identify", "uid": "alice" })),
        (
            "component",
            json!({ "component": "identification", "uid": "alice" }),
        ),
    ];
    for (how, again) in table {
        let b = gw.browser();
        api_start(&b, APP, Some(&pct(&rd))).await;
        let r = b.post_json(&api_path(), &json!({ "uid": "bob" })).await;
        assert_eq!(r.json()["component"], "password", "{how}: {}", r.body);

        let r = b.post_json(&api_path(), &again).await;
        assert_eq!(r.status, 200, "{how}: {}", r.describe());
        let v = r.json();
        assert_eq!(v["component"], "password", "{how}: {v}");
        assert_eq!(v["info"], json!(["Signing in as alice"]), "{how}: {v}");
        assert!(r.set_cookie_value(FLOW_COOKIE).is_some(), "{how}");

        let r = b
            .post_json(&api_path(), &json!({ "password": ALICE_PW }))
            .await;
        assert_eq!(r.json()["to"], rd, "{how}: {}", r.body);
        lands_as(&b, &gw.url("/x"), "alice").await;
    }

    // Answers for a stage that is not identification are still out of step.
    let b = gw.browser();
    api_start(&b, APP, None).await;
    b.post_json(&api_path(), &json!({ "uid": "bob" })).await;
    for wrong in [
        json!({ "stage": "login", "uid": "alice" }),
        json!({ "stage": "nope", "uid": "alice" }),
        json!({ "stage": "no-such-stage", "uid": "alice" }),
        json!({ "component": "password", "uid": "alice" }),
        json!({ "uid": "alice" }),
    ] {
        let r = b.post_json(&api_path(), &wrong).await;
        assert_eq!(r.status, 400, "{wrong}: {}", r.describe());
        assert_eq!(r.json()["error"], "stage_mismatch", "{wrong}: {}", r.body);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn start_over_ends_the_execution_and_keeps_the_rd() {
    let gw = Gateway::start().await;
    let b = gw.browser();
    let rd = gw.url("/reports/q3");
    let (_, password) = identified_as(&b, &rd, "bob").await;
    assert!(
        password.html.contains(START_OVER),
        "the password page offers to start over:\n{}",
        password.html
    );

    let r = submit(&b, &password, &[("action", "start_over")]).await;
    assert_eq!(r.status, 303, "{}", r.describe());
    let page = next_page(&b, &r).await;
    assert!(has_input(&page.html, "uid"), "afresh:\n{}", page.html);
    assert!(!page.html.contains("bob"), "{}", page.html);

    // The old execution is gone: its page cannot be answered any more.
    let r = submit(&b, &password, &[("password", BOB_PW)]).await;
    assert!(
        r.set_cookie_value(SESSION_COOKIE).is_none(),
        "{}",
        r.describe()
    );

    let r = submit(&b, &page, &[("uid", "alice")]).await;
    let page = next_page(&b, &r).await;
    let r = submit(&b, &page, &[("password", ALICE_PW)]).await;
    assert_eq!(r.location_absolute(), rd, "the same rd: {}", r.describe());
    lands_as(&b, &rd, "alice").await;

    // JSON: the same action.
    let b = gw.browser();
    api_start(&b, APP, Some(&pct(&rd))).await;
    let v = b
        .post_json(&api_path(), &json!({ "uid": "bob" }))
        .await
        .json();
    let actions: Vec<&str> = v["actions"]
        .as_array()
        .map(|a| a.iter().filter_map(|x| x["name"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(actions, ["start_over"], "{v}");
    let r = b
        .post_json(&api_path(), &json!({ "action": "start_over" }))
        .await;
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(r.json()["component"], "identification", "{}", r.body);
    let s = api_finish(&b, APP, "alice", ALICE_PW).await;
    assert_eq!(s.to, rd);
}

#[tokio::test(flavor = "multi_thread")]
async fn reload_or_reopening_the_app_after_a_mistyped_name_still_offers_a_way_back() {
    let gw = Gateway::start().await;
    let b = gw.browser();
    let rd = gw.url("/dashboard");
    identified_as(&b, &rd, "bob").await;

    // Reload of the current step, and the app opened again: never "Out of step", always the
    // way to start over.
    let reload = b.get_html(&flow_path()).await;
    let r = b.get_html(&rd).await;
    assert_eq!(r.status, 302, "{}", r.describe());
    let reopened = b.get_html(&r.location_absolute()).await;
    for (what, r) in [("reload", reload), ("reopened app", reopened)] {
        assert_eq!(r.status, 200, "{what}: {}", r.describe());
        assert!(r.body.contains(START_OVER), "{what}:\n{}", r.body);
        assert!(!r.body.contains("Out of step"), "{what}:\n{}", r.body);
    }

    let page = form_page(&b.get_html(&flow_path()).await);
    let r = submit(&b, &page, &[("action", "start_over")]).await;
    let page = next_page(&b, &r).await;
    let r = submit(&b, &page, &[("uid", "alice")]).await;
    let page = next_page(&b, &r).await;
    let r = submit(&b, &page, &[("password", ALICE_PW)]).await;
    assert_eq!(r.location_absolute(), rd, "{}", r.describe());
    lands_as(&b, &rd, "alice").await;
}

//! Validation with a Duo device: an asynchronous push the user approves, then "I approved it
//! — continue" asking `auth_status`; or a passcode checked at once. Both faces.

use crate::harness::*;
use crate::stand_in::{DuoStandIn, Push, PASSCODE, SKEY};
use crate::support::*;
use serde_json::json;

/// A gateway where alice has enrolled Duo, and a browser at her validation step.
async fn at_validation(push: Push) -> (DuoStandIn, Gateway, Browser) {
    let duo = DuoStandIn::start().await;
    let gw = gateway(&duo).await;
    enrol_json(&gw, &duo, "alice", ALICE_PW).await;
    duo.set_push(push);
    let b = gw.browser();
    let v = past_password(&b, SIGNIN, "alice", ALICE_PW).await;
    assert_eq!(v["component"], "authenticator_validate", "{v}");
    assert_eq!(v["fields"][0]["name"], "passcode", "{v}");
    assert_eq!(action_names(&v)[0], "duo_push", "{v}");
    (duo, gw, b)
}

#[tokio::test]
async fn an_approved_push_signs_in() {
    let (duo, _gw, b) = at_validation(Push::Allow).await;
    let v = post(&b, SIGNIN, json!({ "action": "duo_push" })).await;
    assert_eq!(action_names(&v)[..2], ["duo_check", "duo_push"], "{v}");
    assert!(
        strings(&v, "info")
            .iter()
            .any(|i| i.contains("A push was sent")),
        "{v}"
    );
    let r = post_resp(&b, SIGNIN, json!({ "action": "duo_check" })).await;
    assert_signed_in(&r);
    assert_eq!(duo.calls("/auth/v2/auth_status").len(), 1);
}

#[tokio::test]
async fn a_denied_push_is_refused_and_another_can_be_sent() {
    let (duo, _gw, b) = at_validation(Push::Deny).await;
    post(&b, SIGNIN, json!({ "action": "duo_push" })).await;
    let v = post(&b, SIGNIN, json!({ "action": "duo_check" })).await;
    assert_eq!(
        strings(&v, "errors"),
        ["The push was denied: Login request denied."]
    );
    assert_eq!(
        action_names(&v)[0],
        "duo_push",
        "the denied push is gone: {v}"
    );
    // "Continue" on a denied push cannot pass: there is no push to ask about any more.
    duo.set_push(Push::Allow);
    let r = b
        .post_json(&b.url(&api(SIGNIN)), &json!({ "action": "duo_check" }))
        .await;
    assert_ne!(r.json()["component"], "redirect", "{}", r.describe());
    post(&b, SIGNIN, json!({ "action": "duo_push" })).await;
    let r = post_resp(&b, SIGNIN, json!({ "action": "duo_check" })).await;
    assert_signed_in(&r);
}

#[tokio::test]
async fn an_unanswered_push_waits_then_times_out() {
    let (_duo, _gw, b) = at_validation(Push::Timeout).await;
    post(&b, SIGNIN, json!({ "action": "duo_push" })).await;
    let v = post(&b, SIGNIN, json!({ "action": "duo_check" })).await;
    assert_eq!(
        strings(&v, "errors"),
        ["Not approved yet: approve the push in Duo Mobile, then continue."]
    );
    assert_eq!(action_names(&v)[0], "duo_check", "still waiting: {v}");
    let v = post(&b, SIGNIN, json!({ "action": "duo_check" })).await;
    assert_eq!(
        strings(&v, "errors"),
        ["The push timed out. Send another one, or type a passcode."]
    );
    assert_eq!(action_names(&v)[0], "duo_push", "{v}");
}

#[tokio::test]
async fn a_slow_approval_passes_at_the_next_check() {
    let (_duo, _gw, b) = at_validation(Push::Slow).await;
    post(&b, SIGNIN, json!({ "action": "duo_push" })).await;
    let v = post(&b, SIGNIN, json!({ "action": "duo_check" })).await;
    assert_eq!(strings(&v, "errors").len(), 1, "{v}");
    let r = post_resp(&b, SIGNIN, json!({ "action": "duo_check" })).await;
    assert_signed_in(&r);
}

#[tokio::test]
async fn a_right_passcode_signs_in_and_a_wrong_one_is_refused() {
    let (duo, gw, b) = at_validation(Push::Allow).await;
    let v = post(&b, SIGNIN, json!({ "passcode": "000000" })).await;
    assert_eq!(strings(&v, "errors"), ["That passcode was not accepted."]);
    let r = post_resp(&b, SIGNIN, json!({ "passcode": PASSCODE })).await;
    assert_signed_in(&r);
    let auth = duo.calls("/auth/v2/auth");
    assert!(
        auth.iter().all(|a| a.params["factor"] == "passcode"),
        "{auth:?}"
    );
    let logs = gw.logs();
    for secret in [PASSCODE, crate::stand_in::SKEY] {
        assert!(!logs.contains(secret), "{secret} in the log:\n{logs}");
    }
}

#[tokio::test]
async fn too_many_wrong_passcodes_end_the_sign_in() {
    let (_duo, _gw, b) = at_validation(Push::Allow).await;
    for _ in 0..2 {
        let v = post(&b, SIGNIN, json!({ "passcode": "000000" })).await;
        assert_eq!(v["component"], "authenticator_validate", "{v}");
    }
    let v = post(&b, SIGNIN, json!({ "passcode": "000000" })).await;
    assert_eq!(v["component"], "access_denied", "{v}");
}

#[tokio::test]
async fn html_push_and_continue_without_javascript() {
    let (_duo, _gw, b) = at_validation(Push::Allow).await;
    // A fresh browser through the pages.
    let b2 = _gw.browser();
    drop(b);
    let page = html_past_password(&b2, SIGNIN, "alice", ALICE_PW).await;
    assert!(has_button(&page.html, "duo_push"), "{}", page.html);
    assert!(has_input(&page.html, "passcode"), "{}", page.html);
    assert!(!page.html.contains("<script"), "no script");
    let r = submit(&b2, &page, &[("action", "duo_push")]).await;
    let page = html_after(&b2, &r).await;
    assert!(has_button(&page.html, "duo_check"), "{}", page.html);
    assert!(
        page.html.contains("I approved it — continue"),
        "{}",
        page.html
    );
    let r = submit(&b2, &page, &[("action", "duo_check")]).await;
    assert_eq!(r.status, 303, "{}", r.describe());
    assert!(
        r.set_cookie_value(SESSION_COOKIE).is_some(),
        "{}",
        r.describe()
    );
}

#[tokio::test]
async fn html_wrong_then_right_passcode() {
    let (_duo, gw, _b) = at_validation(Push::Deny).await;
    let b = gw.browser();
    let page = html_past_password(&b, SIGNIN, "alice", ALICE_PW).await;
    let r = submit(&b, &page, &[("passcode", "999999")]).await;
    let page = html_after(&b, &r).await;
    assert_eq!(page_errors(&page.html), ["That passcode was not accepted."]);
    let r = submit(&b, &page, &[("passcode", PASSCODE)]).await;
    assert_eq!(r.status, 303, "{}", r.describe());
    assert!(
        r.set_cookie_value(SESSION_COOKIE).is_some(),
        "{}",
        r.describe()
    );
}

#[tokio::test]
async fn a_user_without_a_duo_device_is_not_let_through() {
    let duo = DuoStandIn::start().await;
    let gw = gateway(&duo).await;
    let b = gw.browser();
    let v = past_password(&b, SIGNIN, "bob", BOB_PW).await;
    assert_eq!(v["component"], "access_denied", "{v}");
    assert!(
        duo.seen().is_empty(),
        "Duo is not asked about users without a device"
    );
}

/// Passcodes with characters that percent-encoding treats specially reach Duo signed right
/// (the stand-in recomputes the signature from the decoded form): each is judged as a wrong
/// passcode, never refused as a bad signature.
#[tokio::test]
async fn passcodes_with_awkward_characters_are_signed_as_duo_canonicalises_them() {
    // Seven wrong passcodes from one address: regulation (issue 14) would ban it after the
    // third and answer the next password with 429; this is about how passcodes are signed.
    let duo = DuoStandIn::start().await;
    let gw = Gateway::start_with(Setup {
        extra_toml: format!(
            "{}\n[regulation]\nmax_retries = 10\n",
            toml(&duo.host(), SKEY)
        ),
        ..Setup::default()
    })
    .await;
    enrol_json(&gw, &duo, "alice", ALICE_PW).await;
    duo.set_push(Push::Allow);
    for typed in ["12 34", "a&b=c", "ü€", "+%2B", "~._-*", "1\u{7f}2", "%00"] {
        // A sign-in each: three wrong passcodes end one.
        let b = gw.browser();
        past_password(&b, SIGNIN, "alice", ALICE_PW).await;
        let v = post(&b, SIGNIN, json!({ "passcode": typed })).await;
        assert_eq!(
            strings(&v, "errors"),
            ["That passcode was not accepted."],
            "{typed:?}: {v}"
        );
        let last = duo.seen().last().cloned().unwrap();
        assert!(last.verified, "{typed:?} signed wrong");
        assert_eq!(last.params["passcode"], typed, "{typed:?}");
    }
}

/// A push belongs to the sign-in that sent it: another sign-in of the same user pressing
/// "continue" gets nothing from it, and an approved push passes once.
#[tokio::test]
async fn a_push_approves_only_the_sign_in_that_sent_it() {
    let (duo, gw, a) = at_validation(Push::Allow).await;
    let b = gw.browser();
    past_password(&b, SIGNIN, "alice", ALICE_PW).await;
    post(&a, SIGNIN, json!({ "action": "duo_push" })).await;
    let v = post(&b, SIGNIN, json!({ "action": "duo_check" })).await;
    assert_eq!(v["component"], "authenticator_validate", "{v}");
    assert!(b.cookie(&b.url("/"), SESSION_COOKIE).is_none());
    let r = post_resp(&a, SIGNIN, json!({ "action": "duo_check" })).await;
    assert_signed_in(&r);
    // The approved push is spent with its execution: continuing again starts over.
    let r = post_resp(&a, SIGNIN, json!({ "action": "duo_check" })).await;
    assert_ne!(r.json()["component"], "redirect", "{}", r.describe());
    assert_eq!(duo.calls("/auth/v2/auth_status").len(), 1);
}

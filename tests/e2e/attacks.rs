//! Attacks on what sessions carry: a step-up stands in for the stages its session proved, so
//! it must stop standing in the moment that session is revoked (sign-out, password change).

use crate::harness::*;
use serde_json::json;

/// identify → password → prompt → TOTP check → login: the password-only session of the
/// default flow falls short of it (no TOTP), so it is stepped up, and the step-up stops at
/// the prompt (a stage that proves nothing): an execution can be held open on a session. The
/// TOTP check then skips for users without an authenticator app, so a held step-up cashes in.
const PROMPTED: &str = "prompted";

fn setup() -> Setup {
    Setup {
        extra_toml: format!(
            r#"
[[flows]]
slug = "{PROMPTED}"
title = "Sign in"
designation = "authentication"
stages = ["identify", "password", "ask", "app_code", "login"]

[stages.app_code]
kind = "authenticator_validate"
device_classes = ["totp"]
not_configured_action = "skip"

[stages.ask]
kind = "prompt"

[[stages.ask.fields]]
key = "nick"
label = "Nickname"
type = "text"
"#
        ),
        ..Setup::default()
    }
}

fn prompted_api() -> String {
    format!("/.portcullis/api/flow/{PROMPTED}")
}

/// A step-up of `b`'s session, held at the prompt (identification and password skipped).
async fn hold_step_up(b: &Browser) {
    let v = b.get_json(&prompted_api()).await.json();
    assert_eq!(
        v["component"], "prompt",
        "a step-up skips to the prompt: {v}"
    );
}

/// Answers the held step-up; returns the session token it hands out, if any.
async fn cash_in(b: &Browser) -> Option<String> {
    let r = b.post_json(&prompted_api(), &json!({ "nick": "x" })).await;
    r.set_cookie_value(SESSION_COOKIE)
}

/// How the session is ended while the step-up waits.
#[derive(Debug, Clone, Copy)]
enum Revoked {
    SignOut,
    PasswordChange,
    Disable,
}

#[tokio::test(flavor = "multi_thread")]
async fn a_step_up_held_open_does_not_outlive_the_session_it_carries() {
    let gw = Gateway::start_with(setup()).await;
    // The defence is worth asserting only if a live session does cash in.
    let (b, _) = alice_browser(&gw).await;
    hold_step_up(&b).await;
    let token = cash_in(&b)
        .await
        .expect("a live session's step-up issues a session");
    assert_token_accepted(&gw, &token, "live step-up").await;

    for how in [Revoked::SignOut, Revoked::PasswordChange, Revoked::Disable] {
        // Say a thief's copy of the cookie: a step-up started with it, then the owner signs
        // out, changes the password, or the admin disables the account.
        let (b, s) = alice_browser(&gw).await;
        hold_step_up(&b).await;
        match how {
            Revoked::SignOut => {
                let r = b.post_json("/.portcullis/api/logout", &json!({})).await;
                assert_eq!(r.status, 200, "{}", r.describe());
            }
            Revoked::PasswordChange => {
                let out = gw
                    .cli(&["user", "passwd", "alice"], Some(&format!("{ALICE_PW}\n")))
                    .await;
                assert!(out.ok(), "{}", out.all());
            }
            Revoked::Disable => {
                let out = gw.cli(&["user", "disable", "alice"], None).await;
                assert!(out.ok(), "{}", out.all());
            }
        }
        assert_token_refused(&gw, &s.token, &format!("{how:?}")).await;
        if let Some(t) = cash_in(&b).await {
            let r = gw
                .raw()
                .get_with_token("/secret", &t, "application/json")
                .await;
            assert_ne!(
                r.status, 200,
                "{how:?}: the step-up held open on a revoked session minted a working one"
            );
        }
        if matches!(how, Revoked::Disable) {
            let out = gw.cli(&["user", "enable", "alice"], None).await;
            assert!(out.ok(), "{}", out.all());
        }
    }
}

fn claims(token: &str) -> serde_json::Value {
    jwt_parts(token).1
}

/// What a step-up of alice's session can be bent into, and what it must give instead: a
/// re-posted identification (say as bob) or a start-over is a fresh sign-in that carries none
/// of alice's proofs; a form for a later stage is out of step; a session cookie swapped
/// between steps changes nothing (the step-up belongs to the session it started with).
#[tokio::test(flavor = "multi_thread")]
async fn a_step_up_cannot_be_bent_into_another_users_session_or_past_a_stage() {
    let gw = Gateway::start_with(setup()).await;
    let bob = api_sign_in(&gw.browser(), "bob", BOB_PW).await;

    // Re-post identification mid step-up, as bob: a fresh sign-in that wants bob's password.
    for how in ["component", "stage"] {
        let (b, _) = alice_browser(&gw).await;
        hold_step_up(&b).await;
        let body = match how {
            "component" => json!({ "component": "identification", "uid": "bob" }),
            _ => json!({ "stage": "identify", "uid": "bob" }),
        };
        let v = b.post_json(&prompted_api(), &body).await.json();
        assert_eq!(
            v["component"], "password",
            "{how}: bob's password is asked: {v}"
        );
        let r = b
            .post_json(&prompted_api(), &json!({ "password": ALICE_PW }))
            .await;
        assert_ne!(
            r.json()["component"],
            "prompt",
            "{how}: alice's password let the re-identified sign-in on as bob: {}",
            r.body
        );
        assert!(r.set_cookie_value(SESSION_COOKIE).is_none(), "{}", r.body);
    }

    // Start over mid step-up: identification again, nothing carried.
    let (b, _) = alice_browser(&gw).await;
    hold_step_up(&b).await;
    let v = b
        .post_json(&prompted_api(), &json!({ "action": "start_over" }))
        .await
        .json();
    assert_eq!(v["component"], "identification", "{v}");

    // Skip or replay stages: answers naming another stage are out of step.
    let (b, _) = alice_browser(&gw).await;
    hold_step_up(&b).await;
    for body in [
        json!({ "stage": "login" }),
        json!({ "stage": "password", "password": ALICE_PW }),
        json!({ "component": "password", "password": ALICE_PW }),
    ] {
        let r = b.post_json(&prompted_api(), &body).await;
        assert_eq!(r.status, 400, "{body}: {}", r.describe());
        assert!(r.set_cookie_value(SESSION_COOKIE).is_none());
    }

    // Swap the session cookie for bob's between the steps: the session issued is alice's
    // (the step-up's), with alice's flows, and bob's session is left as it was.
    b.add_cookie(&gw.url("/"), &format!("{SESSION_COOKIE}={}", bob.token));
    let token = cash_in(&b).await.expect("the step-up completes");
    let c = claims(&token);
    assert_eq!(c["sub"], "alice", "{c}");
    assert_eq!(c["flows"], json!([FLOW, PROMPTED]), "{c}");
    assert_eq!(c["factors"], json!(["password"]), "{c}");
    assert_token_accepted(&gw, &bob.token, "bob's session").await;
}

//! Duo in validation, in process: Duo's answers scripted on the HTTP-client port, so these
//! cover the class's choices (strongest first, `amr` values, the decoy) without a server; the
//! wire (signatures, the stand-in) is covered end to end in `tests/duo/`.

use super::rig::*;
use crate::clock::Clock;
use crate::flow::Step;
use crate::http_client::HttpReply;
use crate::session::Factors;
use crate::store::{Device, DeviceClass, Store};
use http::StatusCode;

const EXTRA: &str = r#"
[[flows]]
slug = "duo_mfa"
title = "Sign in"
designation = "authentication"
stages = ["identify", "password", "mfa_duo", "login"]
[[flows]]
slug = "duo_only"
title = "Sign in"
designation = "authentication"
stages = ["identify", "mfa_duo_only", "login"]
[stages.duo]
kind = "authenticator_duo"
api_hostname = "api-1234abcd.duosecurity.com"
client_id = "DIWJ8X6AEYOR5OMC6TQ1"
client_secret = "Zh5eGmUq9zpfQnyUIu5OL9iWoMMv5ZNmk3zLJ4Ep"
[stages.mfa_duo]
kind = "authenticator_validate"
device_classes = ["email", "duo"]
[stages.mfa_duo_only]
kind = "authenticator_validate"
device_classes = ["duo"]
not_configured_action = "deny"
"#;

fn ok(response: &str) -> Result<HttpReply, crate::http_client::HttpError> {
    Ok(HttpReply::new(
        StatusCode::OK,
        format!(r#"{{"stat":"OK","response":{response}}}"#),
    ))
}

fn duo_device(rig: &Rig, user: &str) {
    rig.world
        .store
        .put_device(&Device {
            id: "duo1".into(),
            username: user.into(),
            class: DeviceClass::Duo,
            name: "Duo Mobile".into(),
            address: user.into(),
            address_hash: None,
            stage: "duo".into(),
            created: rig.world.clock.now(),
            last_used: None,
            secret: Some("DUJZ2U4L80HT45MQ4EO1".into()),
        })
        .unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test]
async fn duo_is_offered_before_email_and_an_approved_push_earns_mca_and_mfa() {
    let rig = Rig::with(EXTRA, None);
    rig.user("alice", Some("alice@example.test")).await;
    rig.device("alice", "mail", DeviceClass::Email, "alice@example.test");
    duo_device(&rig, "alice");
    let (mut exec, view) = rig.signed_in_to("duo_mfa", "alice").await;
    let values: Vec<_> = challenge(&view).fields[0]
        .options
        .iter()
        .map(|o| o.value.clone())
        .collect();
    assert_eq!(values, ["duo1", "mail"], "Duo before e-mail");
    let view = rig.post(&mut exec, &[("device", "duo1")]).await;
    assert_eq!(field_names(&view), ["passcode"]);
    assert_eq!(rig.world.email.count(), 0, "choosing Duo sends nothing");
    assert!(rig.world.http.requests().is_empty(), "nor asks Duo yet");
    rig.world.http.push(ok(r#"{"txid":"tx-1"}"#));
    let view = rig.post(&mut exec, &[("action", "duo_push")]).await;
    let actions: Vec<_> = challenge(&view)
        .actions
        .iter()
        .map(|a| a.name.clone())
        .collect();
    assert_eq!(actions[..2], ["duo_check", "duo_push"]);
    rig.world.http.push(ok(
        r#"{"result":"allow","status":"allow","status_msg":"Success"}"#,
    ));
    let view = rig.post(&mut exec, &[("action", "duo_check")]).await;
    assert_eq!(
        signed_in(&view),
        [
            "identification",
            "password",
            "authenticator_validate",
            "mca",
            "mfa"
        ]
    );
    let Step::Done {
        login: Some(login), ..
    } = &view.step
    else {
        unreachable!()
    };
    assert!(login.factors.contains(Factors::DUO.with(Factors::PASSWORD)));
    let reqs = rig.world.http.requests();
    assert_eq!(reqs[0].url.path(), "/auth/v2/auth");
    assert_eq!(reqs[1].method, http::Method::GET);
    assert_eq!(
        reqs[1].url.as_str(),
        "https://api-1234abcd.duosecurity.com/auth/v2/auth_status?txid=tx-1"
    );
    drop(reqs);
    let used = rig.devices("alice").into_iter().find(|d| d.id == "duo1");
    assert_eq!(used.and_then(|d| d.last_used), Some(rig.world.clock.now()));
}

#[tokio::test]
async fn a_duo_passcode_earns_otp() {
    let rig = Rig::with(EXTRA, None);
    rig.user("alice", None).await;
    duo_device(&rig, "alice");
    let (mut exec, view) = rig.signed_in_to("duo_mfa", "alice").await;
    assert_eq!(
        field_names(&view),
        ["passcode"],
        "one device: asked at once"
    );
    rig.world.http.push(ok(
        r#"{"result":"allow","status":"allow","status_msg":"Success"}"#,
    ));
    let view = rig.post(&mut exec, &[("passcode", "123456")]).await;
    assert!(signed_in(&view).contains(&"otp".to_string()));
}

/// # Security
/// An account that does not exist gets the same Duo page and steps, and Duo is never asked.
#[tokio::test]
async fn an_unknown_account_sees_the_same_duo_steps_and_duo_is_never_asked() {
    let rig = Rig::with(EXTRA, None);
    rig.user("alice", None).await;
    duo_device(&rig, "alice");
    let (mut real, _) = rig.start("duo_only").await;
    let real_view = rig.post(&mut real, &[("uid", "alice")]).await;
    let (mut fake, _) = rig.start("duo_only").await;
    let fake_view = rig.post(&mut fake, &[("uid", "nobody")]).await;
    assert_eq!(challenge(&real_view), challenge(&fake_view));
    let view = rig.post(&mut fake, &[("action", "duo_push")]).await;
    let actions: Vec<_> = challenge(&view)
        .actions
        .iter()
        .map(|a| a.name.clone())
        .collect();
    assert_eq!(actions[..2], ["duo_check", "duo_push"]);
    let view = rig.post(&mut fake, &[("action", "duo_check")]).await;
    assert_eq!(component(&view), "authenticator_validate");
    let view = rig.post(&mut fake, &[("passcode", "123456")]).await;
    assert_eq!(challenge(&view).errors, ["That passcode was not accepted."]);
    assert!(
        rig.world.http.requests().is_empty(),
        "Duo is never asked for a decoy"
    );
}

/// # Security
/// Against push fatigue: pushes per sign-in are capped by `max_challenges_sent` (3 by
/// default), also across switching to another device and back; passcodes still work.
#[tokio::test]
async fn pushes_per_sign_in_are_capped_even_across_switching_devices() {
    let rig = Rig::with(EXTRA, None);
    rig.user("alice", Some("alice@example.test")).await;
    rig.device("alice", "mail", DeviceClass::Email, "alice@example.test");
    duo_device(&rig, "alice");
    let (mut exec, _) = rig.signed_in_to("duo_mfa", "alice").await;
    rig.post(&mut exec, &[("device", "duo1")]).await;
    for i in 0..2 {
        rig.world.http.push(ok(&format!(r#"{{"txid":"tx-{i}"}}"#)));
        let view = rig.post(&mut exec, &[("action", "duo_push")]).await;
        assert!(challenge(&view).errors.is_empty());
    }
    // Away to e-mail and back: the count stays.
    rig.post(&mut exec, &[("action", "choose")]).await;
    rig.post(&mut exec, &[("device", "duo1")]).await;
    rig.world.http.push(ok(r#"{"txid":"tx-2"}"#));
    let view = rig.post(&mut exec, &[("action", "duo_push")]).await;
    assert!(challenge(&view).errors.is_empty());
    let view = rig.post(&mut exec, &[("action", "duo_push")]).await;
    assert_eq!(challenge(&view).errors, [crate::flow::duo::PUSH_LIMIT]);
    let pushes = rig
        .world
        .http
        .requests()
        .iter()
        .filter(|r| r.url.path() == "/auth/v2/auth")
        .count();
    assert_eq!(pushes, 3, "the fourth push never reached Duo");
    rig.world.http.push(ok(
        r#"{"result":"allow","status":"allow","status_msg":"Success"}"#,
    ));
    let view = rig.post(&mut exec, &[("passcode", "123456")]).await;
    assert!(signed_in(&view).contains(&"otp".to_string()));
}

//! Stages without codes: identification, password, prompt, deny, user_login.

use super::rig::*;
use crate::flow::{FlowError, Step};
use crate::store::Store;

#[tokio::test]
async fn identification_asks_for_the_identifier_and_passes_for_any_name() {
    let rig = Rig::new();
    let (mut exec, view) = rig.start("login").await;
    assert_eq!(component(&view), "identification");
    assert_eq!(field_names(&view), ["uid"]);
    // An unknown name passes as a known one would: this step never tells which exist.
    let view = rig.post(&mut exec, &[("uid", "nobody")]).await;
    assert_eq!(component(&view), "password");
    assert_eq!(exec.uid.as_deref(), Some("nobody"));
    assert_eq!(exec.user, None);
}

#[tokio::test]
async fn identification_finds_the_account_by_email_and_keeps_its_stored_name() {
    let rig = Rig::new();
    rig.user("alice", Some("alice@example.test")).await;
    let (mut exec, _) = rig.start("login").await;
    rig.post(&mut exec, &[("uid", " ALICE@example.test ")])
        .await;
    assert_eq!(exec.user.as_deref(), Some("alice"));
}

#[tokio::test]
async fn an_empty_or_overlong_identifier_is_asked_again() {
    let rig = Rig::new();
    let (mut exec, _) = rig.start("login").await;
    let long = "a".repeat(257);
    for uid in ["", "   ", long.as_str()] {
        let view = rig.post(&mut exec, &[("uid", uid)]).await;
        assert_eq!(component(&view), "identification");
        assert_eq!(challenge(&view).errors, ["Enter your username or email."]);
    }
}

#[tokio::test]
async fn the_right_password_signs_in_with_password_in_amr() {
    let rig = Rig::new();
    rig.user("alice", None).await;
    let (_, view) = rig.signed_in_to("login", "alice").await;
    assert_eq!(signed_in(&view), ["identification", "password"]);
}

#[tokio::test]
async fn wrong_passwords_are_refused_then_the_sign_in_is_cancelled_at_the_limit() {
    let rig = Rig::new();
    rig.user("alice", None).await;
    let (mut exec, _) = rig.start("login").await;
    rig.post(&mut exec, &[("uid", "alice")]).await;
    for _ in 0..2 {
        let view = rig.post(&mut exec, &[("password", "wrong")]).await;
        assert_eq!(challenge(&view).errors, ["Invalid username or password."]);
        // The count survives the round trip through the store.
        exec = rig.reload(&exec).expect("still stored");
    }
    let view = rig.post(&mut exec, &[("password", PASSWORD)]).await;
    assert!(matches!(view.step, Step::Done { .. }), "{view:?}");
    let (mut exec, _) = rig.start("login").await;
    rig.post(&mut exec, &[("uid", "alice")]).await;
    for _ in 0..2 {
        rig.post(&mut exec, &[("password", "wrong")]).await;
    }
    let view = rig.post(&mut exec, &[("password", "wrong")]).await;
    assert_eq!(
        ended(&view),
        "Too many failed attempts. Start the sign-in again."
    );
    assert!(rig.reload(&exec).is_none(), "a cancelled execution is gone");
}

#[tokio::test]
async fn unknown_and_disabled_accounts_get_the_wrong_password_answer() {
    let rig = Rig::new();
    let mut bob = rig.user("bob", None).await;
    bob.active = false;
    rig.world.store.put_user(&bob).expect("store");
    for name in ["nobody", "bob"] {
        let (mut exec, _) = rig.start("login").await;
        rig.post(&mut exec, &[("uid", name)]).await;
        let view = rig.post(&mut exec, &[("password", PASSWORD)]).await;
        assert_eq!(
            challenge(&view).errors,
            ["Invalid username or password."],
            "{name}"
        );
    }
}

#[tokio::test]
async fn a_prompt_keeps_answers_and_takes_hidden_values_from_the_operator() {
    let rig = Rig::new();
    rig.user("alice", None).await;
    let (mut exec, view) = rig.signed_in_to("ask", "alice").await;
    assert_eq!(component(&view), "prompt");
    let view = rig
        .post(&mut exec, &[("nickname", "ali"), ("team", "root")])
        .await;
    assert_eq!(component(&view), "authenticator_sms");
    assert_eq!(
        exec.prompt_data.get("nickname").map(String::as_str),
        Some("ali")
    );
    assert_eq!(
        exec.prompt_data.get("team").map(String::as_str),
        Some("ops")
    );
}

#[tokio::test]
async fn a_prompt_refuses_missing_required_fields_and_pattern_mismatches() {
    let rig = Rig::new();
    rig.user("alice", None).await;
    let (mut exec, _) = rig.signed_in_to("ask", "alice").await;
    let cases: [(&[(&str, &str)], &str); 3] = [
        (&[], "Nickname is required."),
        (&[("nickname", "Ali")], "Lower-case letters only."),
        (
            &[("nickname", "ali"), ("phone", "call me")],
            "Phone is not a phone number.",
        ),
    ];
    for (fields, error) in cases {
        let view = rig.post(&mut exec, fields).await;
        assert_eq!(component(&view), "prompt");
        assert_eq!(challenge(&view).errors, [error]);
    }
    assert!(exec.prompt_data.is_empty());
}

#[tokio::test]
async fn deny_ends_the_flow_with_its_message() {
    let rig = Rig::new();
    let (mut exec, _) = rig.start("refuse").await;
    let view = rig.post(&mut exec, &[("uid", "alice")]).await;
    assert_eq!(ended(&view), "Not today.");
    assert!(rig.reload(&exec).is_none());
}

#[tokio::test]
async fn user_login_gives_no_session_when_nothing_proved_who_the_user_is() {
    let rig = Rig::new();
    rig.user("alice", None).await;
    let (mut exec, _) = rig.start("nothing_proved").await;
    let view = rig.post(&mut exec, &[("uid", "alice")]).await;
    assert_eq!(ended(&view), "Sign-in failed. Start again.");
}

#[tokio::test]
async fn user_login_refuses_an_account_disabled_during_the_sign_in() {
    let rig = Rig::new();
    let mut alice = rig.user("alice", Some("alice@example.test")).await;
    let (mut exec, _) = rig.signed_in_to("setup", "alice").await;
    alice.active = false;
    rig.world.store.put_user(&alice).expect("store");
    let code = rig.mailed_code();
    let view = rig.post(&mut exec, &[("code", &code)]).await;
    assert_eq!(ended(&view), "Sign-in failed. Start again.");
}

#[tokio::test]
async fn fields_of_another_stage_are_out_of_step() {
    let rig = Rig::new();
    rig.user("alice", None).await;
    let (mut exec, _) = rig.start("login").await;
    let cases: [&[(&str, &str)]; 3] = [
        &[("password", PASSWORD)],
        &[("uid", "alice"), ("stage", "password")],
        &[("uid", "alice"), ("component", "password")],
    ];
    for fields in cases {
        let err = rig.try_post(&mut exec, fields).await.expect_err("refused");
        assert!(matches!(err, FlowError::StageMismatch { .. }), "{err:?}");
    }
    assert_eq!(exec.stage, 0);
}

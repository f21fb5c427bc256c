//! `authenticator_sms`: numbers, texts, the pumping limits, failures.

use super::rig::*;
use crate::flow::delivery::{SMS_COOLDOWN, SMS_LIMIT_NUMBER, SMS_SEND_FAILED};
use crate::flow::Step;
use crate::store::{DeviceClass, Store};

const NUMBER: &str = "+41 79 123 45 67";
const E164: &str = "+41791234567";

#[tokio::test]
async fn setup_texts_a_code_to_the_normalised_number_and_enrols_it() {
    let rig = Rig::new();
    rig.user("alice", None).await;
    let (mut exec, view) = rig.signed_in_to("phone", "alice").await;
    assert_eq!(field_names(&view), ["phone"]);
    let view = rig.post(&mut exec, &[("phone", NUMBER)]).await;
    assert_eq!(field_names(&view), ["code"]);
    assert_eq!(rig.world.sms.sent()[0].to, E164);
    assert!(challenge(&view)
        .info
        .iter()
        .any(|l| l.contains("+41*******67")));
    let wrong = other_than(&rig.texted_code());
    let view = rig.post(&mut exec, &[("code", &wrong)]).await;
    assert_eq!(challenge(&view).errors.len(), 1);
    let view = rig.post(&mut exec, &[("code", &rig.texted_code())]).await;
    assert_eq!(
        signed_in(&view),
        [
            "identification",
            "password",
            "authenticator_sms",
            "sms",
            "mfa"
        ]
    );
    let devices = rig.devices("alice");
    assert_eq!(
        (devices[0].class, devices[0].address.as_str()),
        (DeviceClass::Sms, E164)
    );
    let alice = rig
        .world
        .store
        .user("alice")
        .expect("store")
        .expect("alice");
    assert_eq!(alice.phone.as_deref(), Some(E164));
}

#[tokio::test]
async fn numbers_the_stage_does_not_accept_are_refused_before_anything_is_sent() {
    let rig = Rig::new();
    rig.user("alice", None).await;
    let (mut exec, _) = rig.signed_in_to("phone", "alice").await;
    for bad in ["+33 6 12 34 56 78", "079 123 45 67", "+41 79 abc", ""] {
        let view = rig.post(&mut exec, &[("phone", bad)]).await;
        assert_eq!(field_names(&view), ["phone"], "{bad:?}");
        assert_eq!(challenge(&view).errors.len(), 1, "{bad:?}");
    }
    assert_eq!(rig.world.sms.attempts(), 0);
}

#[tokio::test]
async fn a_number_given_to_a_prompt_is_texted_without_asking_again() {
    let rig = Rig::new();
    rig.user("alice", None).await;
    let (mut exec, _) = rig.signed_in_to("ask", "alice").await;
    let view = rig
        .post(&mut exec, &[("nickname", "ali"), ("phone", NUMBER)])
        .await;
    assert_eq!(field_names(&view), ["code"]);
    assert_eq!(rig.world.sms.count(), 1);
}

#[tokio::test]
async fn a_refused_prompt_number_asks_for_another() {
    let rig = Rig::new();
    rig.user("alice", None).await;
    let (mut exec, _) = rig.signed_in_to("ask", "alice").await;
    let view = rig
        .post(
            &mut exec,
            &[("nickname", "ali"), ("phone", "+33 612 345 678")],
        )
        .await;
    assert_eq!(field_names(&view), ["phone"]);
    assert_eq!(challenge(&view).errors.len(), 1);
    assert_eq!(rig.world.sms.attempts(), 0);
}

#[tokio::test]
async fn resend_waits_for_the_cooldown_then_texts_a_new_code() {
    let rig = Rig::new();
    rig.user("alice", None).await;
    let (mut exec, _) = rig.signed_in_to("phone", "alice").await;
    rig.post(&mut exec, &[("phone", NUMBER)]).await;
    let view = rig.post(&mut exec, &[("action", "resend")]).await;
    assert_eq!(challenge(&view).errors, [SMS_COOLDOWN]);
    assert_eq!(rig.world.sms.count(), 1);
    rig.world.clock.advance_secs(30);
    let view = rig.post(&mut exec, &[("action", "resend")]).await;
    assert!(challenge(&view).errors.is_empty(), "{view:?}");
    assert_eq!(rig.world.sms.count(), 2);
    let view = rig.post(&mut exec, &[("code", &rig.texted_code())]).await;
    assert!(matches!(view.step, Step::Done { .. }));
}

#[tokio::test]
async fn the_per_number_limit_holds_across_sign_ins() {
    let rig = Rig::new();
    rig.user("alice", None).await;
    for _ in 0..2 {
        let (mut exec, _) = rig.signed_in_to("phone", "alice").await;
        rig.post(&mut exec, &[("phone", NUMBER)]).await;
        rig.world.clock.advance_secs(30);
        rig.post(&mut exec, &[("action", "resend")]).await;
        rig.world.clock.advance_secs(30);
    }
    assert_eq!(rig.world.sms.count(), 4);
    let (mut exec, _) = rig.signed_in_to("phone", "alice").await;
    let view = rig.post(&mut exec, &[("phone", NUMBER)]).await;
    assert_eq!(challenge(&view).errors, [SMS_LIMIT_NUMBER]);
    assert_eq!(rig.world.sms.count(), 4);
}

#[tokio::test]
async fn a_failed_text_leaves_no_code_and_a_later_retry_works() {
    let rig = Rig::new();
    rig.user("alice", None).await;
    let (mut exec, _) = rig.signed_in_to("phone", "alice").await;
    rig.world.sms.set_failing(true);
    let view = rig.post(&mut exec, &[("phone", NUMBER)]).await;
    assert_eq!(challenge(&view).errors, [SMS_SEND_FAILED]);
    assert!(field_names(&view).is_empty());
    rig.world.sms.set_failing(false);
    rig.world.clock.advance_secs(30);
    let view = rig.post(&mut exec, &[("action", "resend")]).await;
    assert_eq!(field_names(&view), ["code"]);
    let view = rig.post(&mut exec, &[("code", &rig.texted_code())]).await;
    assert!(matches!(view.step, Step::Done { .. }));
}

#[tokio::test]
async fn a_phone_offered_before_anything_proved_the_user_gets_no_text() {
    let rig = Rig::new();
    rig.user("alice", None).await;
    let (mut exec, _) = rig.start("phone_first").await;
    rig.post(&mut exec, &[("uid", "alice")]).await;
    let view = rig.post(&mut exec, &[("phone", NUMBER)]).await;
    assert_eq!(
        field_names(&view),
        ["code"],
        "the page looks like a real send"
    );
    assert_eq!(rig.world.sms.attempts(), 0);
    let view = rig.post(&mut exec, &[("code", "123456")]).await;
    assert_eq!(challenge(&view).errors.len(), 1);
    assert!(rig.devices("alice").is_empty());
}

/// The `token_expiry` of the rig's `sms` stage, in seconds.
const SMS_LIFETIME: i64 = 4 * 60;

#[tokio::test]
async fn a_texted_code_typed_when_the_stages_token_expiry_ends_is_expired_and_offers_a_new_one() {
    let rig = Rig::new();
    rig.user("alice", None).await;
    let (mut exec, _) = rig.signed_in_to("phone", "alice").await;
    rig.post(&mut exec, &[("phone", NUMBER)]).await;
    let code = rig.texted_code();
    rig.world.clock.advance_secs(SMS_LIFETIME);
    let view = rig.post(&mut exec, &[("code", &code)]).await;
    assert_eq!(
        challenge(&view).errors,
        ["That code has expired. Send a new one."]
    );
    assert!(field_names(&view).is_empty(), "no code box without a code");
    assert!(rig.devices("alice").is_empty());
    let view = rig.post(&mut exec, &[("action", "resend")]).await;
    assert!(challenge(&view).errors.is_empty(), "{view:?}");
    assert_eq!(rig.world.sms.count(), 2);
    let view = rig.post(&mut exec, &[("code", &rig.texted_code())]).await;
    assert!(matches!(view.step, Step::Done { .. }), "{view:?}");
    assert_eq!(rig.devices("alice")[0].address, E164);
}

#[tokio::test]
async fn a_texted_code_typed_just_before_the_stages_token_expiry_ends_still_works() {
    let rig = Rig::new();
    rig.user("alice", None).await;
    let (mut exec, _) = rig.signed_in_to("phone", "alice").await;
    rig.post(&mut exec, &[("phone", NUMBER)]).await;
    rig.world.clock.advance_secs(SMS_LIFETIME - 1);
    let view = rig.post(&mut exec, &[("code", &rig.texted_code())]).await;
    assert!(matches!(view.step, Step::Done { .. }), "{view:?}");
    assert_eq!(rig.devices("alice")[0].address, E164);
}

#[tokio::test]
async fn a_sent_texts_debug_names_the_number_but_never_its_code() {
    let rig = Rig::new();
    rig.user("alice", None).await;
    let (mut exec, _) = rig.signed_in_to("phone", "alice").await;
    rig.post(&mut exec, &[("phone", NUMBER)]).await;
    let code = rig.texted_code();
    let shown = format!("{:?}", rig.world.sms.sent()[0]);
    assert!(shown.contains(E164), "{shown}");
    assert!(!shown.contains(&code), "{shown}");
}

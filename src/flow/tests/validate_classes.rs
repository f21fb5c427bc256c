//! `authenticator_validate` across classes: strongest first, the remembered validation
//! (`last_validation_threshold`), a choice of setup stages, RFC 8176 `amr` values, and the
//! config keys that shape them.

use super::rig::*;
use crate::flow::stages::authenticator_validate::PICK_SETUP;
use crate::flow::Step;
use crate::session::Factors;
use crate::store::DeviceClass;

const EXTRA: &str = r#"
[[flows]]
slug = "remember"
title = "Sign in"
designation = "authentication"
stages = ["identify", "password", "mfa_remember", "login"]
[[flows]]
slug = "remember_only"
title = "Sign in"
designation = "authentication"
stages = ["identify", "mfa_remember", "login"]
[[flows]]
slug = "pick_setup"
title = "Sign in"
designation = "authentication"
stages = ["identify", "password", "mfa_pick", "login"]
[stages.mfa_remember]
kind = "authenticator_validate"
device_classes = ["email", "sms"]
last_validation_threshold = "minutes=5"
[stages.mfa_pick]
kind = "authenticator_validate"
device_classes = ["email", "sms"]
not_configured_action = "configure"
configuration_stages = ["email_setup", "sms"]
"#;

fn rig() -> Rig {
    Rig::with(EXTRA, None)
}

fn choice_labels(view: &crate::flow::View) -> Vec<String> {
    challenge(view).fields[0]
        .options
        .iter()
        .map(|o| o.label.clone())
        .collect()
}

#[tokio::test]
async fn the_stronger_class_is_offered_first_whatever_was_enrolled_first() {
    let rig = rig();
    rig.user("alice", None).await;
    rig.device("alice", "mail", DeviceClass::Email, "alice@example.test");
    rig.world.clock.advance_secs(60);
    rig.device("alice", "phone", DeviceClass::Sms, "+41791234567");
    let (_, view) = rig.signed_in_to("mfa", "alice").await;
    let values: Vec<_> = challenge(&view).fields[0]
        .options
        .iter()
        .map(|o| o.value.as_str())
        .collect();
    assert_eq!(values, ["phone", "mail"], "SMS before e-mail");
    assert!(
        choice_labels(&view)
            .iter()
            .all(|l| !l.contains("alice@example.test")),
        "addresses are masked in the list"
    );
}

#[tokio::test]
async fn a_texted_code_puts_sms_and_mfa_in_amr() {
    let rig = rig();
    rig.user("alice", None).await;
    rig.device("alice", "phone", DeviceClass::Sms, "+41791234567");
    let (mut exec, _) = rig.signed_in_to("mfa", "alice").await;
    let view = rig.post(&mut exec, &[("code", &rig.texted_code())]).await;
    assert_eq!(
        signed_in(&view),
        [
            "identification",
            "password",
            "authenticator_validate",
            "sms",
            "mfa"
        ]
    );
}

#[tokio::test]
async fn a_class_validated_within_the_threshold_is_not_asked_again_until_it_passes() {
    let rig = rig();
    rig.user("alice", None).await;
    rig.device("alice", "mail", DeviceClass::Email, "alice@example.test");
    let (mut exec, _) = rig.signed_in_to("remember", "alice").await;
    rig.post(&mut exec, &[("code", &rig.mailed_code())]).await;
    assert_eq!(rig.world.email.count(), 1);

    rig.world.clock.advance_secs(4 * 60);
    let (_, view) = rig.signed_in_to("remember", "alice").await;
    let Step::Done {
        login: Some(login), ..
    } = &view.step
    else {
        panic!("skipped within the threshold: {view:?}");
    };
    assert!(
        login.factors.meets(Factors::EMAIL),
        "the class still counts"
    );
    assert_eq!(rig.world.email.count(), 1, "nothing was sent");

    rig.world.clock.advance_secs(60);
    let (_, view) = rig.signed_in_to("remember", "alice").await;
    assert_eq!(field_names(&view), ["code"], "asked again once it passed");
    assert_eq!(rig.world.email.count(), 2);
}

#[tokio::test]
async fn a_remembered_validation_never_stands_in_for_the_only_proof() {
    let rig = rig();
    rig.user("alice", None).await;
    rig.device("alice", "mail", DeviceClass::Email, "alice@example.test");
    let (mut exec, _) = rig.signed_in_to("remember", "alice").await;
    rig.post(&mut exec, &[("code", &rig.mailed_code())]).await;
    // Only the username typed: the threshold must not let this through.
    let (mut exec, _) = rig.start("remember_only").await;
    let view = rig.post(&mut exec, &[("uid", "alice")]).await;
    assert_eq!(field_names(&view), ["code"]);
}

#[tokio::test]
async fn without_a_device_the_user_chooses_which_setup_stage_runs() {
    let rig = rig();
    rig.user("alice", Some("alice@example.test")).await;
    let (mut exec, view) = rig.signed_in_to("pick_setup", "alice").await;
    assert_eq!(field_names(&view), ["setup"]);
    assert_eq!(choice_labels(&view), ["Work email", "Phone"]);
    let view = rig.post(&mut exec, &[("setup", "password")]).await;
    assert_eq!(challenge(&view).errors, [PICK_SETUP]);
    let view = rig.post(&mut exec, &[("setup", "sms")]).await;
    assert_eq!(component(&view), "authenticator_sms");
    let mut exec = rig.reload(&exec).expect("the inline setup reads back");
    let view = rig.post(&mut exec, &[("phone", "+41791234567")]).await;
    assert_eq!(field_names(&view), ["code"]);
    let view = rig.post(&mut exec, &[("code", &rig.texted_code())]).await;
    let Step::Done {
        login: Some(login), ..
    } = &view.step
    else {
        panic!("{view:?}");
    };
    assert!(login.factors.meets(Factors::SMS));
    assert_eq!(rig.devices("alice")[0].class, DeviceClass::Sms);
}

#[test]
fn validation_keys_are_checked_and_named() {
    let stage = |body: &str| {
        format!(
            "[[flows]]\nslug = \"x\"\ntitle = \"X\"\ndesignation = \"authentication\"\nstages = [\"identify\", \"v\", \"login\"]\n[stages.v]\nkind = \"authenticator_validate\"\n{body}\n"
        )
    };
    let cases = [
        (
            "device_classes = [\"email\", \"webauthn\"]",
            "stages.v.device_classes[1]",
        ),
        ("device_classes = [\"carrier-pigeon\"]", "stages.v.device_classes[0]"),
        (
            "last_validation_threshold = \"seconds=29\"",
            "stages.v.last_validation_threshold",
        ),
        (
            "last_validation_threshold = \"fortnights=1\"",
            "stages.v.last_validation_threshold",
        ),
        (
            "webauthn_user_verification = \"always\"",
            "stages.v.webauthn_user_verification",
        ),
        (
            "not_configured_action = \"configure\"\nconfigure_stage = \"sms\"\nconfiguration_stages = [\"sms\"]\ndevice_classes = [\"sms\"]",
            "stages.v.configure_stage",
        ),
        (
            "not_configured_action = \"configure\"\nconfiguration_stages = [\"email_setup\", \"password\"]",
            "stages.v.configuration_stages[1]",
        ),
        (
            "not_configured_action = \"configure\"\nconfiguration_stages = []",
            "stages.v.configuration_stages",
        ),
        // Typed codes with no attempt limit: unlimited guessing.
        (
            "device_classes = [\"email\", \"totp\"]\nmax_allowed_attempts = 0",
            "stages.v.max_allowed_attempts",
        ),
        (
            "device_classes = [\"static\"]\nmax_allowed_attempts = 0",
            "stages.v.max_allowed_attempts",
        ),
    ];
    for (body, key) in cases {
        let err = Rig::config(&stage(body)).expect_err(body).to_string();
        assert!(err.contains(key), "{body}: {err}");
    }
    for ok in [
        "last_validation_threshold = \"seconds=0\"",
        "last_auth_threshold = \"hours=1;minutes=30\"",
        "last_validation_threshold = \"30s\"",
        "webauthn_user_verification = \"required\"",
    ] {
        Rig::config(&stage(ok)).unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
}

//! `authenticator_validate`: one device, a choice of several, none (configure, skip, deny),
//! and the decoy for accounts that cannot validate.

use super::rig::*;
use crate::flow::stages::authenticator_validate::{NOT_CONFIGURED, PICK_DEVICE};
use crate::flow::{Execution, Step};
use crate::session::Factors;
use crate::store::{DeviceClass, Store};

#[tokio::test]
async fn the_only_device_gets_the_code_at_once_and_proves_its_factor() {
    let rig = Rig::new();
    rig.user("alice", None).await;
    rig.device("alice", "d1", DeviceClass::Email, "alice@example.test");
    let (mut exec, view) = rig.signed_in_to("mfa", "alice").await;
    assert_eq!(component(&view), "authenticator_validate");
    assert_eq!(field_names(&view), ["code"]);
    assert_eq!(rig.world.email.sent()[0].to, "alice@example.test");
    let view = rig.post(&mut exec, &[("code", &rig.mailed_code())]).await;
    let Step::Done {
        login: Some(login), ..
    } = &view.step
    else {
        panic!("{view:?}");
    };
    assert_eq!(
        login.amr,
        [
            "identification",
            "password",
            "authenticator_validate",
            "mfa"
        ]
    );
    assert!(login.factors.meets(Factors::EMAIL) && login.factors.meets(Factors::PASSWORD));
    assert!(rig.devices("alice")[0].last_used.is_some());
}

#[tokio::test]
async fn with_two_devices_the_user_chooses_and_may_switch_to_the_other() {
    let rig = Rig::new();
    rig.user("alice", None).await;
    rig.device("alice", "mail", DeviceClass::Email, "alice@example.test");
    rig.device("alice", "phone", DeviceClass::Sms, "+41791234567");
    let (mut exec, view) = rig.signed_in_to("mfa", "alice").await;
    assert_eq!(field_names(&view), ["device"]);
    assert_eq!(rig.world.email.attempts() + rig.world.sms.attempts(), 0);
    let view = rig.post(&mut exec, &[("device", "elsewhere")]).await;
    assert_eq!(challenge(&view).errors, [PICK_DEVICE]);
    let view = rig.post(&mut exec, &[("device", "phone")]).await;
    assert_eq!(field_names(&view), ["code"]);
    assert!(challenge(&view).actions.iter().any(|a| a.name == "choose"));
    let texted = rig.texted_code();
    let view = rig.post(&mut exec, &[("action", "choose")]).await;
    assert_eq!(field_names(&view), ["device"]);
    rig.post(&mut exec, &[("device", "mail")]).await;
    // The code texted before the switch was withdrawn.
    if texted != rig.mailed_code() {
        let view = rig.post(&mut exec, &[("code", &texted)]).await;
        assert_eq!(challenge(&view).errors.len(), 1);
    }
    let view = rig.post(&mut exec, &[("code", &rig.mailed_code())]).await;
    let Step::Done {
        login: Some(login), ..
    } = &view.step
    else {
        panic!("{view:?}");
    };
    assert!(login.factors.meets(Factors::EMAIL) && !login.factors.meets(Factors::SMS));
}

#[tokio::test]
async fn without_a_device_the_setup_stage_runs_inline_and_enrols_one() {
    let rig = Rig::new();
    rig.user("alice", Some("alice@example.test")).await;
    let (mut exec, view) = rig.signed_in_to("mfa", "alice").await;
    assert_eq!(component(&view), "authenticator_email");
    assert_eq!(rig.world.email.count(), 1);
    let view = rig.post(&mut exec, &[("code", &rig.mailed_code())]).await;
    let Step::Done {
        login: Some(login), ..
    } = &view.step
    else {
        panic!("{view:?}");
    };
    assert_eq!(
        login.amr,
        [
            "identification",
            "password",
            "authenticator_validate",
            "mfa"
        ]
    );
    assert!(login.factors.meets(Factors::EMAIL));
    assert_eq!(rig.devices("alice").len(), 1);
}

#[tokio::test]
async fn without_a_device_skip_moves_on_and_deny_ends() {
    let rig = Rig::new();
    rig.user("alice", None).await;
    let (_, view) = rig.signed_in_to("mfa_skip", "alice").await;
    assert_eq!(signed_in(&view), ["identification", "password"]);
    let (_, view) = rig.signed_in_to("mfa_deny", "alice").await;
    assert_eq!(ended(&view), NOT_CONFIGURED);
}

#[tokio::test]
async fn unknown_and_disabled_accounts_see_a_code_page_and_nothing_is_sent() {
    let rig = Rig::new();
    let mut bob = rig.user("bob", None).await;
    rig.device("bob", "d1", DeviceClass::Email, "bob@example.test");
    bob.active = false;
    rig.world.store.put_user(&bob).expect("store");
    // The password stage stops both; the validation stage's decoy is reached directly here.
    for name in ["nobody", "bob"] {
        let (mut exec, _) = rig.start("mfa").await;
        rig.post(&mut exec, &[("uid", name)]).await;
        exec.stage = 2;
        exec.state = None;
        let view = rig.view(&mut exec).await;
        assert_eq!(field_names(&view), ["code"], "{name}");
        let view = rig.post(&mut exec, &[("code", "123456")]).await;
        assert_eq!(challenge(&view).errors.len(), 1, "{name}");
    }
    assert_eq!(rig.world.email.attempts(), 0);
}

/// Each class of device with the stage that enrolled it (see [`Rig::device`]), the `token_expiry`
/// of that stage in seconds (the validation stage sets none; its own default is 30 minutes) and
/// how the e-mail states it (`None`: a text does not state it).
const ENROLLED_BY: [(DeviceClass, &str, i64, Option<&str>); 2] = [
    (
        DeviceClass::Email,
        "alice@example.test",
        10 * 60,
        Some("10 minutes"),
    ),
    (DeviceClass::Sms, "+41791234567", 4 * 60, None),
];

/// Alice with her one device of `class` at the validation stage, its code sent; returns the code.
async fn validating_with(rig: &Rig, class: DeviceClass, address: &str) -> (Execution, String) {
    rig.user("alice", None).await;
    rig.device("alice", "d1", class, address);
    let (exec, view) = rig.signed_in_to("mfa", "alice").await;
    assert_eq!(field_names(&view), ["code"], "{class:?}");
    let code = match class {
        DeviceClass::Email => rig.mailed_code(),
        DeviceClass::Sms => rig.texted_code(),
        other => panic!("no code is sent to {other:?} devices"),
    };
    (exec, code)
}

#[tokio::test]
async fn a_devices_code_states_and_lives_for_the_enrolling_stages_lifetime() {
    for (class, address, lifetime, stated) in ENROLLED_BY {
        let rig = Rig::new();
        let (mut exec, code) = validating_with(&rig, class, address).await;
        if let Some(stated) = stated {
            let text = rig.world.email.sent()[0].text.expose().to_string();
            assert!(
                text.contains(&format!("valid for {stated}")),
                "the mail states the enrolling stage's lifetime: {text}"
            );
        }
        rig.world.clock.advance_secs(lifetime - 1);
        let view = rig.post(&mut exec, &[("code", &code)]).await;
        assert!(
            matches!(view.step, Step::Done { .. }),
            "{class:?}: {view:?}"
        );
    }
}

#[tokio::test]
async fn a_devices_code_typed_when_the_enrolling_stages_lifetime_ends_is_expired() {
    for (class, address, lifetime, _) in ENROLLED_BY {
        let rig = Rig::new();
        let (mut exec, code) = validating_with(&rig, class, address).await;
        rig.world.clock.advance_secs(lifetime);
        let view = rig.post(&mut exec, &[("code", &code)]).await;
        assert_eq!(
            challenge(&view).errors,
            ["That code has expired. Send a new one."],
            "{class:?}: the lifetime enforced is the one the enrolling stage promised"
        );
        assert!(field_names(&view).is_empty(), "{class:?}");
        assert!(rig.devices("alice")[0].last_used.is_none(), "{class:?}");
    }
}

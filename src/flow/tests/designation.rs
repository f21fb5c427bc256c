//! Who may start which flow, by its designation: sign-in flows for visitors (a signed-in user
//! only as a step-up), enrolment and recovery for visitors only, settings and unenrolment only
//! for a signed-in user, who is then the flow's pending user and never asked who they are.

use super::rig::*;
use crate::config::Designation;
use crate::flow::{Execution, FlowError, Step};
use crate::session::Claims;
use crate::store::DeviceClass;

const EXTRA: &str = r#"
[[flows]]
slug = "enrol"
designation = "enrollment"
stages = ["ask"]
[[flows]]
slug = "recover"
designation = "recovery"
stages = ["identify", "password", "login"]
[[flows]]
slug = "add_email"
title = "Add an email"
designation = "stage_configuration"
stages = ["identify", "email_setup"]
[[flows]]
slug = "leave"
designation = "unenrollment"
stages = ["identify", "password"]
"#;

fn rig() -> Rig {
    Rig::with(EXTRA, None)
}

/// A session of `sub` whose `amr` lists `amr`, issued now and valid for an hour.
fn session(rig: &Rig, sub: &str, amr: &[&str]) -> Claims {
    use crate::clock::Clock;
    let now = rig.world.clock.now();
    serde_json::from_value(serde_json::json!({
        "sub": sub,
        "amr": amr,
        "flows": ["login"],
        "sid": format!("sid-{sub}"),
        "iat": now,
        "exp": now + 3600,
        "iss": "test",
    }))
    .expect("claims")
}

fn signed_in(rig: &Rig, flow: &str, s: &Claims) -> Result<Execution, FlowError> {
    rig.engine
        .start_signed_in(flow, "https://app.example.test/x".into(), AT.client, s)
}

#[test]
fn each_designation_is_started_only_by_whom_it_is_for() {
    let rig = rig();
    let password = session(&rig, "alice", &["identification", "password"]);
    // (flow, its designation, a visitor may start it, a password session may start it)
    let table = [
        ("login", Designation::Authentication, true, false),
        ("mfa", Designation::Authentication, true, true),
        ("enrol", Designation::Enrollment, true, false),
        ("recover", Designation::Recovery, true, false),
        ("add_email", Designation::StageConfiguration, false, true),
        ("leave", Designation::Unenrollment, false, true),
    ];
    for (flow, designation, visitor, session) in table {
        assert_eq!(
            rig.engine.flow(flow).expect("flow").designation,
            designation
        );
        let v = rig.engine.start(flow, "/".into(), AT.client);
        match (visitor, v) {
            (true, Ok(_)) => {}
            (false, Err(FlowError::SignInRequired { flow: f })) => assert_eq!(f, flow),
            (want, got) => panic!("{flow}: visitor allowed {want}, got {got:?}"),
        }
        match (session, signed_in(&rig, flow, &password)) {
            (true, Ok(exec)) => assert_eq!(exec.user.as_deref(), Some("alice"), "{flow}"),
            (
                false,
                Err(FlowError::AlreadySignedIn {
                    flow: f,
                    designation: d,
                    rd,
                }),
            ) => {
                assert_eq!((f.as_str(), d), (flow, designation));
                assert_eq!(rd, "https://app.example.test/x", "{flow}: goes on to rd");
            }
            (want, got) => panic!("{flow}: signed-in allowed {want}, got {got:?}"),
        }
    }
}

#[tokio::test]
async fn a_sign_in_flow_steps_up_only_a_session_that_falls_short_of_it() {
    let rig = rig();
    rig.user("alice", Some("alice@example.test")).await;
    // A password session satisfies `login`, not `mfa` (a code from email or SMS).
    let s = session(&rig, "alice", &["identification", "password"]);
    assert!(matches!(
        signed_in(&rig, "login", &s),
        Err(FlowError::AlreadySignedIn { .. })
    ));
    let mut exec = signed_in(&rig, "mfa", &s).expect("a step-up");
    let view = rig.view(&mut exec).await;
    // Identification and password skipped; alice has no device yet, so the validation runs
    // its email setup inline.
    assert_eq!(component(&view), "authenticator_email");
    assert!(challenge(&view).info[0].contains("one more step"));
    // A re-authentication (a session too old for a rule) is carried without its factors:
    // everything is asked again.
    let bare = session(&rig, "alice", &["identification"]);
    let mut exec = signed_in(&rig, "login", &bare).expect("a re-authentication");
    let view = rig.view(&mut exec).await;
    assert_eq!(component(&view), "password");
    // A session that proves nothing at all meets a flow that asks nothing.
    assert!(matches!(
        signed_in(&rig, "nothing_proved", &bare),
        Err(FlowError::AlreadySignedIn { .. })
    ));
}

#[tokio::test]
async fn a_settings_flow_runs_for_the_signed_in_user_without_asking_who_they_are() {
    let rig = rig();
    rig.user("alice", None).await;
    let s = session(&rig, "alice", &["identification", "password"]);
    let mut exec = signed_in(&rig, "add_email", &s).expect("start");
    let view = rig.view(&mut exec).await;
    // Identification is skipped; the account has no address, and the user proved who they
    // are by their session, so they may type one.
    assert_eq!(component(&view), "authenticator_email");
    assert_eq!(field_names(&view), ["email"]);
    let c = challenge(&view);
    assert!(c.actions.iter().all(|a| a.name != "start_over"), "{c:?}");
    assert!(c.info.iter().all(|i| !i.contains("one more step")), "{c:?}");
    assert!(exec.authenticated());
    rig.post(&mut exec, &[("email", "alice@work.example")])
        .await;
    let view = rig.post(&mut exec, &[("code", &rig.mailed_code())]).await;
    let Step::Done { rd, login, .. } = &view.step else {
        panic!("{view:?}");
    };
    assert_eq!(rd, "https://app.example.test/x");
    assert!(
        login.is_none(),
        "no user_login: the session stays as it was"
    );
    let devices = rig.devices("alice");
    assert_eq!(devices.len(), 1);
    assert_eq!(devices[0].class, DeviceClass::Email);
    assert_eq!(devices[0].address, "alice@work.example");
}

#[tokio::test]
async fn a_flow_for_the_signed_in_user_cannot_be_turned_to_another_user() {
    let rig = rig();
    rig.user("alice", None).await;
    rig.user("bob", None).await;
    let s = session(&rig, "alice", &["identification", "password"]);
    // (what is posted, why it must fail)
    let attacks: [(&[(&str, &str)], &str); 4] = [
        (&[("action", "start_over")], "start over"),
        (
            &[("uid", "bob"), ("component", "identification")],
            "identify again (JSON)",
        ),
        (
            &[("uid", "bob"), ("stage", "identify")],
            "identify again (form)",
        ),
        (&[("uid", "bob")], "a bare uid"),
    ];
    for (fields, what) in attacks {
        let mut exec = signed_in(&rig, "leave", &s).expect("start");
        let view = rig.view(&mut exec).await;
        assert_eq!(component(&view), "password", "{what}");
        let err = rig.try_post(&mut exec, fields).await.expect_err(what);
        assert!(
            matches!(err, FlowError::StageMismatch { .. }),
            "{what}: {err}"
        );
        assert_eq!(exec.user.as_deref(), Some("alice"), "{what}");
        let back = rig.reload(&exec).expect("still there");
        assert_eq!(back.user.as_deref(), Some("alice"), "{what}");
    }
}

#[tokio::test]
async fn a_fresh_factor_asked_by_a_flow_for_the_signed_in_user_is_asked() {
    let rig = rig();
    rig.user("alice", None).await;
    // The session proved the password; the unenrolment flow asks for it again all the same.
    let s = session(&rig, "alice", &["identification", "password"]);
    let mut exec = signed_in(&rig, "leave", &s).expect("start");
    let view = rig.view(&mut exec).await;
    assert_eq!(component(&view), "password");
    let view = rig.post(&mut exec, &[("password", "wrong")]).await;
    assert_eq!(component(&view), "password");
    assert!(!challenge(&view).errors.is_empty());
    let view = rig.post(&mut exec, &[("password", PASSWORD)]).await;
    assert!(
        matches!(view.step, Step::Done { login: None, .. }),
        "{view:?}"
    );
}

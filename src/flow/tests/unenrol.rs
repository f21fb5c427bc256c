//! Unenrolment and signing out from a flow: `user_delete` deletes the signed-in user, their
//! devices and every session, only in answer to a post; `user_logout` ends the session.

use super::rig::*;
use crate::clock::Clock;
use crate::flow::{Caller, Execution, FlowError, Input, Step, View};
use crate::session::Claims;
use crate::store::{DeviceClass, Store};

const EXTRA: &str = r#"
[[flows]]
slug = "leave"
title = "Delete your account"
designation = "unenrollment"
stages = ["identify", "password", "goodbye"]
[[flows]]
slug = "leave_now"
designation = "unenrollment"
stages = ["goodbye"]
[[flows]]
slug = "sign_out"
designation = "stage_configuration"
stages = ["bye"]
[stages.goodbye]
kind = "user_delete"
[stages.bye]
kind = "user_logout"
"#;

/// The request of an answer: a post (a page load is [`AT`]).
const POST: Caller<'static> = Caller {
    method: "POST",
    ..AT
};

fn session(rig: &Rig, sub: &str) -> Claims {
    let now = rig.world.clock.now();
    serde_json::from_value(serde_json::json!({
        "sub": sub,
        "amr": ["identification", "password"],
        "flows": ["login"],
        "sid": format!("sid-{sub}"),
        "iat": now,
        "exp": now + 3600,
        "iss": "test",
    }))
    .expect("claims")
}

async fn alice(rig: &Rig) -> Claims {
    rig.user("alice", Some("alice@example.test")).await;
    rig.device("alice", "d1", DeviceClass::Email, "alice@example.test");
    rig.device("alice", "d2", DeviceClass::Sms, "+41790000001");
    session(rig, "alice")
}

async fn start(rig: &Rig, flow: &str, s: &Claims) -> (Execution, View) {
    let mut exec = rig
        .engine
        .start_signed_in(flow, "https://app.example.test/bye".into(), AT.client, s)
        .expect("start");
    let view = rig.view(&mut exec).await;
    (exec, view)
}

async fn post(rig: &Rig, exec: &mut Execution, fields: &[(&str, &str)]) -> Result<View, FlowError> {
    let input: Input = fields
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    rig.engine.submit(exec, input, POST).await
}

fn signed_out(view: &View) -> bool {
    matches!(
        view.step,
        Step::Done {
            login: None,
            signed_out: true,
            ..
        }
    )
}

fn gone(rig: &Rig, user: &str) -> bool {
    let s = &rig.world.store;
    s.user(user).expect("store").is_none()
        && s.devices(user).expect("store").is_empty()
        && s.user_revocations()
            .expect("store")
            .iter()
            .any(|(u, since)| u == user && *since >= rig.world.clock.now_ms())
}

#[tokio::test]
async fn the_password_answered_deletes_the_account_its_devices_and_sessions_at_once() {
    let rig = Rig::with(EXTRA, None);
    let s = alice(&rig).await;
    rig.user("bob", None).await;
    let (mut exec, view) = start(&rig, "leave", &s).await;
    assert_eq!(component(&view), "password", "never asked who they are");
    let view = post(&rig, &mut exec, &[("password", "wrong")])
        .await
        .expect("answer");
    assert_eq!(component(&view), "password");
    assert!(!gone(&rig, "alice"));
    let view = post(&rig, &mut exec, &[("password", PASSWORD)])
        .await
        .expect("answer");
    assert!(signed_out(&view), "{view:?}");
    let Step::Done { rd, .. } = &view.step else {
        unreachable!()
    };
    assert_eq!(rd, "https://app.example.test/bye");
    assert!(gone(&rig, "alice"));
    assert!(
        rig.world.store.user("bob").expect("store").is_some(),
        "nobody else"
    );
    assert!(rig.reload(&exec).is_none(), "the execution is over");
}

#[tokio::test]
async fn reached_by_a_page_load_the_deletion_waits_for_a_confirming_post() {
    let rig = Rig::with(EXTRA, None);
    let s = alice(&rig).await;
    let (mut exec, view) = start(&rig, "leave_now", &s).await;
    // A link or cross-site navigation only shows the question.
    assert_eq!(component(&view), "user_delete");
    let c = challenge(&view);
    assert!(c.fields.is_empty());
    assert_eq!(c.actions.len(), 1, "{c:?}");
    assert_eq!(c.actions[0].name, "delete");
    assert!(c.info[0].contains("alice"), "{c:?}");
    let view = rig.view(&mut exec).await;
    assert_eq!(component(&view), "user_delete", "a reload deletes nothing");
    assert!(!gone(&rig, "alice"));
    // A post without the button's action deletes nothing either.
    let view = post(&rig, &mut exec, &[]).await.expect("answer");
    assert_eq!(component(&view), "user_delete");
    assert!(!gone(&rig, "alice"));
    let view = post(&rig, &mut exec, &[("action", "delete")])
        .await
        .expect("answer");
    assert!(signed_out(&view), "{view:?}");
    assert!(gone(&rig, "alice"));
}

#[tokio::test]
async fn a_deletion_cannot_be_reached_out_of_step_or_replayed() {
    let rig = Rig::with(EXTRA, None);
    let s = alice(&rig).await;
    // (what is posted at the password stage)
    let attacks: [&[(&str, &str)]; 4] = [
        &[("action", "delete")],
        &[("stage", "goodbye"), ("action", "delete")],
        &[("component", "user_delete"), ("action", "delete")],
        &[("password", PASSWORD), ("action", "delete")],
    ];
    for fields in attacks {
        let (mut exec, _) = start(&rig, "leave", &s).await;
        let err = post(&rig, &mut exec, fields)
            .await
            .expect_err("out of step");
        assert!(
            matches!(err, FlowError::StageMismatch { .. }),
            "{fields:?}: {err}"
        );
        assert!(!gone(&rig, "alice"), "{fields:?}");
    }
    // The confirming post replayed after the deletion finds nothing to act on.
    let (mut exec, _) = start(&rig, "leave_now", &s).await;
    let id = exec.id.clone();
    post(&rig, &mut exec, &[("action", "delete")])
        .await
        .expect("deleted");
    assert!(rig
        .engine
        .resume(&id, "leave_now")
        .expect("store")
        .is_none());
    // And a visitor cannot start it at all.
    assert!(matches!(
        rig.engine.start("leave_now", "/".into(), AT.client),
        Err(FlowError::SignInRequired { .. })
    ));
}

#[tokio::test]
async fn user_logout_ends_the_flows_own_session_after_a_confirming_post() {
    let rig = Rig::with(EXTRA, None);
    let s = alice(&rig).await;
    let (mut exec, view) = start(&rig, "sign_out", &s).await;
    assert_eq!(component(&view), "user_logout");
    assert_eq!(challenge(&view).actions[0].name, "sign_out");
    let revoked = |rig: &Rig| {
        rig.world
            .store
            .revocations(0)
            .expect("store")
            .iter()
            .any(|(sid, _)| sid == "sid-alice")
    };
    assert!(!revoked(&rig), "a page load signs nobody out");
    let view = post(&rig, &mut exec, &[("action", "sign_out")])
        .await
        .expect("answer");
    assert!(signed_out(&view), "{view:?}");
    assert!(revoked(&rig));
    assert!(
        rig.world.store.user("alice").expect("store").is_some(),
        "only signed out"
    );
}

#[test]
fn user_delete_is_refused_outside_an_unenrollment_flow() {
    for designation in [
        "authentication",
        "enrollment",
        "recovery",
        "stage_configuration",
    ] {
        let extra = format!(
            "[[flows]]\nslug = \"bad\"\ndesignation = \"{designation}\"\nstages = [\"identify\", \"goodbye\"]\n[stages.goodbye]\nkind = \"user_delete\"\n"
        );
        let e = Rig::config(&extra).expect_err(designation);
        assert!(e.to_string().contains("unenrollment"), "{designation}: {e}");
        assert_eq!(e.path(), Some("flows[12].stages[1]"), "{designation}: {e}");
    }
}

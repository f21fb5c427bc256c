//! The engine itself: stored state that does not read back, expiry, races on one execution,
//! start over, step-up, and what an execution's `Debug` shows.

use super::rig::*;
use crate::flow::{Execution, FlowError, Step, EXPIRED};
use crate::session::{Claims, Factors};
use crate::store::Store;
use std::sync::Arc;

/// Rewrites the stored record of `exec` with `edit`.
fn tamper(rig: &Rig, exec: &Execution, edit: impl FnOnce(&mut serde_json::Value)) {
    let store = &rig.world.store;
    let bytes = store
        .execution(&exec.id, 0)
        .expect("store")
        .expect("stored");
    let mut value: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
    edit(&mut value);
    let bytes = serde_json::to_vec(&value).expect("json");
    store
        .put_execution(&exec.id, exec.expires, &bytes)
        .expect("store");
}

async fn ends_as_expired(rig: &Rig, exec: &Execution) {
    let mut back = rig
        .reload(exec)
        .expect("still stored until it is looked at");
    let view = rig.view(&mut back).await;
    assert_eq!(ended(&view), EXPIRED);
    assert!(
        rig.reload(exec).is_none(),
        "the spoiled execution is removed"
    );
}

#[tokio::test]
async fn a_stage_state_that_does_not_decode_ends_the_execution_never_resets_it() {
    let rig = Rig::new();
    rig.user("alice", Some("alice@example.test")).await;
    let (exec, _) = rig.signed_in_to("setup", "alice").await;
    // Counters reset to their defaults would give a fresh set of attempts; it must end instead.
    tamper(&rig, &exec, |v| {
        v["state"]["code"]["attempts"] = "many".into()
    });
    ends_as_expired(&rig, &exec).await;
}

#[tokio::test]
async fn a_state_of_an_unknown_kind_or_waiting_ends_the_execution() {
    let rig = Rig::new();
    rig.user("alice", None).await;
    let edits: [fn(&mut serde_json::Value); 3] = [
        |v| v["state"]["stage"] = "webauthn".into(),
        |v| v["state"]["waiting"] = "nothing_known".into(),
        |v| v["state"] = serde_json::json!({ "stage": "identification", "waiting": "uid" }),
    ];
    for edit in edits {
        let (mut exec, _) = rig.start("login").await;
        rig.post(&mut exec, &[("uid", "alice")]).await;
        tamper(&rig, &exec, edit);
        ends_as_expired(&rig, &exec).await;
    }
}

#[tokio::test]
async fn an_execution_stored_by_the_old_format_ends_as_expired() {
    let rig = Rig::new();
    let (mut exec, _) = rig.start("login").await;
    // Stored once an answer changed it (a page load alone stores nothing).
    rig.post(&mut exec, &[("uid", "alice")]).await;
    tamper(&rig, &exec, |v| {
        let o = v.as_object_mut().expect("object");
        o.remove("format");
        o.remove("state");
        o.insert("stage_state".into(), serde_json::json!({}));
    });
    ends_as_expired(&rig, &exec).await;
}

#[tokio::test]
async fn a_record_that_is_not_an_execution_ends_as_expired() {
    let rig = Rig::new();
    let (exec, _) = rig.start("login").await;
    for junk in [
        &b"not json"[..],
        b"[1,2]",
        br#"{"flow":"login","rd":"/x","stage":"one"}"#,
    ] {
        rig.world
            .store
            .put_execution(&exec.id, exec.expires, junk)
            .expect("store");
        let mut back = rig.reload(&exec).expect("readable enough to end");
        assert_eq!(back.flow, "login");
        let view = rig.view(&mut back).await;
        assert_eq!(ended(&view), EXPIRED);
    }
}

#[tokio::test]
async fn an_answer_to_a_spoiled_execution_ends_it_too() {
    let rig = Rig::new();
    let (mut exec, _) = rig.start("login").await;
    rig.post(&mut exec, &[("uid", "alice")]).await;
    tamper(&rig, &exec, |v| v["state"] = serde_json::json!(7));
    let mut back = rig.reload(&exec).expect("stored");
    let view = rig.post(&mut back, &[("password", PASSWORD)]).await;
    assert_eq!(ended(&view), EXPIRED);
}

#[tokio::test]
async fn an_execution_is_gone_once_the_clock_passes_its_lifetime() {
    let rig = Rig::new();
    let (mut exec, _) = rig.start("login").await;
    rig.post(&mut exec, &[("uid", "alice")]).await;
    rig.world.clock.advance_secs(30 * 60 - 1);
    assert!(rig.reload(&exec).is_some());
    rig.world.clock.advance_secs(1);
    assert!(rig.reload(&exec).is_none());
}

#[tokio::test]
async fn of_two_racing_answers_with_the_right_code_only_one_wins() {
    let rig = Arc::new(Rig::new());
    rig.user("alice", Some("alice@example.test")).await;
    let (exec, _) = rig.signed_in_to("setup", "alice").await;
    let code = rig.mailed_code();
    let race = |rig: Arc<Rig>, id: String, code: String| async move {
        // As the portal does: lock, load, answer, all under the lock.
        let _guard = rig.engine.lock(&id).await;
        let mut exec = rig.engine.resume(&id, "setup").expect("store")?;
        Some(rig.try_post(&mut exec, &[("code", &code)]).await)
    };
    let a = tokio::spawn(race(rig.clone(), exec.id.clone(), code.clone()));
    let b = tokio::spawn(race(rig.clone(), exec.id.clone(), code));
    let results = [a.await.expect("task"), b.await.expect("task")];
    let wins = results
        .iter()
        .filter(|r| matches!(r, Some(Ok(v)) if matches!(v.step, Step::Done { .. })))
        .count();
    assert_eq!(wins, 1, "{results:?}");
    assert!(
        results.iter().any(Option::is_none),
        "the loser finds the execution gone"
    );
}

#[tokio::test]
async fn of_two_racing_wrong_codes_both_are_counted() {
    let rig = Arc::new(Rig::new());
    rig.user("alice", Some("alice@example.test")).await;
    let (exec, _) = rig.signed_in_to("setup", "alice").await;
    let wrong = other_than(&rig.mailed_code());
    let mut tasks = Vec::new();
    for _ in 0..3 {
        let (rig, id, wrong) = (rig.clone(), exec.id.clone(), wrong.clone());
        tasks.push(tokio::spawn(async move {
            let _guard = rig.engine.lock(&id).await;
            let mut exec = rig.engine.resume(&id, "setup").expect("store")?;
            Some(rig.post(&mut exec, &[("code", &wrong)]).await)
        }));
    }
    let mut ends = 0;
    for t in tasks {
        if let Some(view) = t.await.expect("task") {
            ends += usize::from(matches!(view.step, Step::Ended { .. }));
        }
    }
    assert_eq!(ends, 1, "the third wrong code reaches the limit of 3");
    assert!(rig.reload(&exec).is_none());
}

#[tokio::test]
async fn start_over_gives_a_fresh_execution_at_identification() {
    let rig = Rig::new();
    rig.user("alice", None).await;
    let (mut exec, view) = rig.start("login").await;
    assert!(
        challenge(&view).actions.is_empty(),
        "nothing to start over yet"
    );
    let view = rig.post(&mut exec, &[("uid", "alice")]).await;
    assert!(challenge(&view)
        .actions
        .iter()
        .any(|a| a.name == "start_over"));
    let old = exec.id.clone();
    let view = rig.post(&mut exec, &[("action", "start_over")]).await;
    assert_eq!(component(&view), "identification");
    assert_ne!(exec.id, old);
    assert!(rig.engine.resume(&old, "login").expect("store").is_none());
    assert_eq!(exec.uid, None);
}

#[tokio::test]
async fn identification_answered_again_restarts_as_the_new_name() {
    let rig = Rig::new();
    rig.user("alice", None).await;
    rig.user("bob", None).await;
    let (mut exec, _) = rig.start("login").await;
    rig.post(&mut exec, &[("uid", "alice")]).await;
    let view = rig
        .post(
            &mut exec,
            &[("uid", "bob"), ("component", "identification")],
        )
        .await;
    assert_eq!(component(&view), "password");
    assert_eq!(exec.user.as_deref(), Some("bob"));
}

#[tokio::test]
async fn a_step_up_skips_what_the_session_proved_and_keeps_its_proofs() {
    let rig = Rig::new();
    rig.user("alice", Some("alice@example.test")).await;
    let now = exec_clock(&rig);
    let session: Claims = serde_json::from_value(serde_json::json!({
        "sub": "alice",
        "amr": ["identification", "password", "webauthn"],
        "flows": ["login"],
        "sid": "sid-1",
        "iat": now,
        "exp": now + 3600,
        "iss": "test",
    }))
    .expect("claims");
    let mut exec = rig
        .engine
        .start_signed_in("setup", "/".into(), AT.client, &session)
        .expect("start");
    let view = rig.view(&mut exec).await;
    assert_eq!(component(&view), "authenticator_email");
    assert!(challenge(&view).info[0].contains("one more step"));
    let view = rig.post(&mut exec, &[("code", &rig.mailed_code())]).await;
    let Step::Done {
        login: Some(login), ..
    } = &view.step
    else {
        panic!("{view:?}");
    };
    assert_eq!(
        login.amr,
        ["identification", "password", "authenticator_email", "mfa"]
    );
    assert_eq!(login.replaces.as_ref().map(|r| r.0.as_str()), Some("sid-1"));
    assert!(login.lifetime_secs <= 3600);
    assert!(login.factors.meets(Factors::EMAIL));
}

fn exec_clock(rig: &Rig) -> i64 {
    use crate::clock::Clock;
    rig.world.clock.now()
}

#[tokio::test]
async fn debug_of_an_execution_with_a_code_out_shows_no_csrf_code_or_hash() {
    let rig = Rig::new();
    rig.user("alice", Some("alice@example.test")).await;
    let (exec, _) = rig.signed_in_to("setup", "alice").await;
    let code = rig.mailed_code();
    let stored = rig
        .world
        .store
        .execution(&exec.id, 0)
        .expect("store")
        .expect("stored");
    let stored: serde_json::Value = serde_json::from_slice(&stored).expect("json");
    let hash = stored["state"]["code"]["outstanding"]["hash"]
        .as_str()
        .expect("a hash")
        .to_string();
    let printed = format!("{exec:?} {:#?}", exec);
    for secret in [exec.csrf.expose(), code.as_str(), hash.as_str()] {
        assert!(!secret.is_empty());
        assert!(!printed.contains(secret), "{secret} printed in {printed}");
    }
    assert!(
        printed.contains("alice"),
        "the rest is still there: {printed}"
    );
}

#[tokio::test]
async fn a_stage_answered_before_it_was_shown_is_reached_first() {
    let rig = Rig::new();
    rig.user("alice", None).await;
    let mut exec = rig
        .engine
        .start("login", "/".into(), AT.client)
        .expect("start");
    let view = rig.post(&mut exec, &[("uid", "alice")]).await;
    assert_eq!(component(&view), "password");
    let err = rig
        .try_post(&mut exec, &[("nonsense", "1")])
        .await
        .expect_err("refused");
    assert!(matches!(err, FlowError::StageMismatch { .. }));
}

#[tokio::test]
async fn debug_of_an_execution_waiting_for_a_link_shows_no_ticket_hash() {
    let rig = Rig::new();
    rig.user("alice", Some("alice@example.test")).await;
    let (exec, _) = rig.signed_in_to("link", "alice").await;
    let stored = rig
        .world
        .store
        .execution(&exec.id, 0)
        .expect("store")
        .expect("stored");
    let stored: serde_json::Value = serde_json::from_slice(&stored).expect("json");
    let ticket = stored["state"]["code"]["outstanding"]["ticket"]
        .as_str()
        .expect("a ticket");
    let token = rig.mailed_link_token();
    let printed = format!("{exec:?}");
    for secret in [ticket, token.expose(), exec.csrf.expose()] {
        assert!(!printed.contains(secret), "{secret} printed in {printed}");
    }
}

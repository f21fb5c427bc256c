//! Unfinished sign-ins do not fill the store: a page load stores nothing (the fresh execution
//! travels in the flow cookie), an answer stores it, a reload rewrites nothing, and one client
//! address has at most `[session] max_flows_per_client` stored at once.

use super::rig::*;
use crate::clock::Clock;
use crate::flow::pending::Live;
use crate::flow::{Engine, FlowError};
use crate::store::Store;
use crate::testing::TestWorld;

const RD: &str = "https://app.example.test/";

/// A rig whose addresses may each keep `max` executions.
fn capped(max: usize) -> Rig {
    let mut config = Rig::config("").unwrap_or_else(|e| panic!("{e}"));
    config.session.max_flows_per_client = max;
    let world = TestWorld::for_config(&config);
    let mut engine = Engine::new(&config, world.services.clone());
    engine.pace = std::sync::Arc::new(crate::flow::delivery::Pace::instant());
    Rig { engine, world }
}

#[tokio::test]
async fn a_page_load_stores_nothing_and_the_first_answer_stores_the_sign_in() {
    let rig = Rig::new();
    let (mut exec, view) = rig.start("login").await;
    assert_eq!(component(&view), "identification");
    assert!(exec.held() && !exec.stored(), "{exec:?}");
    assert!(
        rig.reload(&exec).is_none(),
        "a page load stored the sign-in"
    );
    // Reloading the page (the cookie brings the held start back) stores nothing either.
    let cookie = rig.engine.cookie_value(&exec);
    // Its steps take the lock of the id it will be stored under.
    assert_eq!(rig.engine.execution_id(&cookie), exec.id);
    assert_eq!(rig.engine.execution_id(&exec.id), exec.id);
    for _ in 0..3 {
        let mut again = rig
            .engine
            .resume_held(&cookie, "login", AT.client)
            .expect("store")
            .expect("the cookie holds the sign-in");
        assert_eq!(
            (&again.id, &again.rd, again.csrf.expose()),
            (&exec.id, &exec.rd, exec.csrf.expose())
        );
        rig.view(&mut again).await;
        assert_eq!(rig.engine.cookie_value(&again), cookie, "the same cookie");
    }
    assert!(rig.reload(&exec).is_none());
    // An empty answer changes nothing: still nothing stored.
    let view = rig.post(&mut exec, &[("uid", " ")]).await;
    assert!(!challenge(&view).errors.is_empty());
    assert!(rig.reload(&exec).is_none());
    // A real answer stores it under the same id; the cookie now names it.
    rig.post(&mut exec, &[("uid", "alice")]).await;
    assert!(exec.stored() && !exec.held());
    let back = rig.reload(&exec).expect("stored");
    assert_eq!(back.uid.as_deref(), Some("alice"));
    assert_eq!(rig.engine.cookie_value(&exec), exec.id);
    // The held cookie of before now resumes the stored sign-in, not a fresh one.
    let again = rig
        .engine
        .resume_held(&cookie, "login", AT.client)
        .expect("store")
        .expect("found");
    assert_eq!(again.uid.as_deref(), Some("alice"));
}

#[tokio::test]
async fn a_held_cookie_resumes_only_as_signed_for_its_flow_and_lifetime() {
    let rig = Rig::new();
    let (exec, _) = rig.start("login").await;
    let cookie = rig.engine.cookie_value(&exec);
    let resume = |value: &str, flow: &str| {
        rig.engine
            .resume_held(value, flow, AT.client)
            .expect("store")
    };
    assert!(resume(&cookie, "login").is_some());
    assert!(resume(&cookie, "mfa").is_none(), "another flow");
    let mut tampered = cookie.clone().into_bytes();
    let at = tampered.len() / 2;
    tampered[at] = if tampered[at] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).expect("ascii");
    for bad in [
        tampered.as_str(),
        "h.",
        "h.e30.",
        &cookie[..cookie.len() - 2],
    ] {
        assert!(resume(bad, "login").is_none(), "{bad}");
    }
    // A cookie of another gateway (another key) is refused.
    let other = Rig::new();
    let (theirs, _) = other.start("login").await;
    assert!(resume(&other.engine.cookie_value(&theirs), "login").is_none());
    rig.world.clock.advance_secs(30 * 60 - 1);
    assert!(resume(&cookie, "login").is_some());
    rig.world.clock.advance_secs(1);
    assert!(
        resume(&cookie, "login").is_none(),
        "expired with its lifetime"
    );
}

#[tokio::test]
async fn a_reload_of_a_stored_step_rewrites_nothing() {
    let rig = Rig::new();
    let (mut exec, _) = rig.start("login").await;
    rig.post(&mut exec, &[("uid", "alice")]).await;
    let mut back = rig.reload(&exec).expect("stored");
    // Gone from the store behind its back: a view that wrote would bring it back.
    rig.world.store.remove_execution(&exec.id).expect("store");
    rig.view(&mut back).await;
    assert!(rig.reload(&exec).is_none(), "a reload rewrote the sign-in");
}

#[tokio::test]
async fn one_address_keeps_at_most_its_cap_of_sign_ins_and_never_blocks_another() {
    let rig = capped(3);
    let mut stored = Vec::new();
    for _ in 0..3 {
        let (mut exec, _) = rig.start("login").await;
        rig.post(&mut exec, &[("uid", "alice")]).await;
        stored.push(exec);
    }
    // Page loads still work (they store nothing), but an answer that would store one more
    // is refused before anything runs.
    let (mut fourth, view) = rig.start("login").await;
    assert_eq!(component(&view), "identification");
    let err = rig
        .try_post(&mut fourth, &[("uid", "alice")])
        .await
        .expect_err("over the cap");
    let FlowError::TooManyFlows { max, retry_after } = err else {
        panic!("{err}");
    };
    assert_eq!(max, 3);
    assert!((1..=30 * 60).contains(&retry_after), "{retry_after}");
    assert!(rig.reload(&fourth).is_none());
    // Another address (and another /64) is not held up.
    for other in ["192.0.2.8", "2001:db8::1"] {
        let mut exec = rig.engine.start("login", RD.into(), other).expect("start");
        rig.view(&mut exec).await;
        rig.post(&mut exec, &[("uid", "bob")]).await;
        assert!(exec.stored(), "{other}");
    }
    // A sign-in that ends frees its slot.
    let mut first = stored.remove(0);
    rig.post(&mut first, &[("action", "start_over")]).await;
    rig.post(&mut fourth, &[("uid", "alice")]).await;
    assert!(fourth.stored());
    // So does one that expires.
    let mut fifth = rig
        .engine
        .start("login", RD.into(), AT.client)
        .expect("start");
    rig.view(&mut fifth).await;
    assert!(rig.try_post(&mut fifth, &[("uid", "alice")]).await.is_err());
    rig.world.clock.advance_secs(30 * 60);
    let mut sixth = rig
        .engine
        .start("login", RD.into(), AT.client)
        .expect("start");
    rig.view(&mut sixth).await;
    rig.post(&mut sixth, &[("uid", "alice")]).await;
    assert!(sixth.stored());
}

#[tokio::test]
async fn ten_thousand_page_loads_and_abandoned_answers_keep_the_store_small() {
    let rig = capped(50);
    for i in 0..10_000 {
        let (mut exec, _) = rig.start("login").await;
        if i % 10 == 0 {
            // Some go one step further and are abandoned there; most are refused at the cap.
            let _ = rig.try_post(&mut exec, &[("uid", "alice")]).await;
        }
    }
    let live = rig
        .world
        .store
        .purge_expired(rig.world.clock.now() + 30 * 60)
        .expect("purge");
    assert_eq!(live, 50, "only the capped answers were ever stored");
}

#[test]
fn live_counts_are_per_address() {
    let mut live = Live::default();
    assert!(live.reserve("192.0.2.1", "a", 10, 0, 1).is_ok());
    assert!(live.reserve("192.0.2.1", "b", 10, 0, 1).is_err());
    assert!(live.reserve("192.0.2.2", "b", 10, 0, 1).is_ok());
}

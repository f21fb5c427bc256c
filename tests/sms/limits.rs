//! The limits against SMS pumping: resend cooldown, per number, per user (across sign-ins),
//! per client address, the global hourly cap, and `max_challenges_sent`. Each is shown to the
//! user, logged, and no request reaches the provider once it is hit.

use crate::harness::*;
use crate::provider::SmsServer;
use crate::support::*;
use serde_json::{json, Value};

async fn resend(b: &Browser) -> Value {
    post(b, ENROL, json!({ "action": "resend" })).await
}

/// Resends and asserts it went out.
async fn resend_ok(b: &Browser, sms: &SmsServer) {
    let before = sms.count();
    let v = resend(b).await;
    assert!(errors(&v).is_empty(), "resend refused too early: {v}");
    sms.wait_for(before + 1).await;
}

/// Starts an enrolment and posts `number`; returns the answer.
async fn ask_for(gw: &Gateway, uid: &str, pw: &str, number: &str) -> (Browser, Value) {
    let b = gw.browser();
    let v = past_password(&b, ENROL, uid, pw).await;
    assert_asks_phone(&v);
    let v = post(&b, ENROL, json!({ "phone": number })).await;
    (b, v)
}

fn assert_refused(v: &Value, message: &str) {
    assert_eq!(v["component"], "authenticator_sms", "{v}");
    assert_eq!(errors(v), vec![message], "{v}");
}

fn assert_logged(gw: &Gateway, what: &str) {
    let logs = gw.logs();
    assert!(
        logs.lines()
            .any(|l| l.contains("limit") && l.contains(what)),
        "no log line about the {what} limit:\n{logs}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn resend_within_the_cooldown_is_refused_and_the_first_code_still_works() {
    let sms = SmsServer::start().await;
    let gw = Conf::new(twilio(&sms.base()))
        .sms("resend_cooldown", "\"30s\"")
        .start()
        .await;
    let (b, first) = start_enrol(&gw, &sms, "bob", BOB_PW, NUMBER).await;

    let v = resend(&b).await;
    assert_refused(&v, COOLDOWN);
    assert_eq!(
        sms.count(),
        1,
        "a resend within the cooldown reached the provider"
    );
    assert_logged(&gw, "cooldown");

    finish_with_code(&b, ENROL, &first.code()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sends_per_number_are_limited_whoever_asks() {
    let sms = SmsServer::start().await;
    let gw = Conf::new(twilio(&sms.base()))
        .sms("limit_per_number", "2")
        .start()
        .await;
    let (b, _) = start_enrol(&gw, &sms, "bob", BOB_PW, NUMBER).await;
    resend_ok(&b, &sms).await;
    assert_eq!(sms.count(), 2);

    let v = resend(&b).await;
    assert_refused(&v, LIMIT_NUMBER);
    assert_eq!(
        sms.count(),
        2,
        "a send over the per-number limit reached the provider"
    );
    assert_logged(&gw, "per_number");

    // Another account, the same number: still refused.
    let (_, v) = ask_for(&gw, "alice", ALICE_PW, NUMBER).await;
    assert_refused(&v, LIMIT_NUMBER);
    assert_eq!(sms.count(), 2);

    // Another number is fine.
    let (_, v) = ask_for(&gw, "alice", ALICE_PW, OTHER).await;
    assert!(errors(&v).is_empty(), "{v}");
    sms.wait_for(3).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sends_per_user_are_limited_across_sign_ins() {
    let sms = SmsServer::start().await;
    let gw = Conf::new(twilio(&sms.base()))
        .sms("limit_per_user", "2")
        .start()
        .await;
    let (b, _) = start_enrol(&gw, &sms, "bob", BOB_PW, NUMBER).await;
    resend_ok(&b, &sms).await;
    assert_eq!(sms.count(), 2);

    // A fresh execution (new client, new sign-in), another number: the account is spent.
    let (b2, v) = ask_for(&gw, "bob", BOB_PW, OTHER).await;
    assert_refused(&v, LIMIT_USER);
    assert_eq!(
        sms.count(),
        2,
        "a send over the per-user limit reached the provider"
    );
    let v = resend(&b2).await;
    assert_refused(&v, LIMIT_USER);
    assert_eq!(sms.count(), 2);
    assert_logged(&gw, "per_user");

    // Another account is not affected.
    let (_, v) = ask_for(&gw, "alice", ALICE_PW, OTHER).await;
    assert!(errors(&v).is_empty(), "{v}");
    sms.wait_for(3).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sends_per_client_address_are_limited_across_accounts() {
    let sms = SmsServer::start().await;
    let gw = Conf::new(twilio(&sms.base()))
        .sms("limit_per_client", "2")
        .start()
        .await;
    let (b, _) = start_enrol(&gw, &sms, "bob", BOB_PW, NUMBER).await;
    resend_ok(&b, &sms).await;
    assert_eq!(sms.count(), 2);

    // Same address (127.0.0.1), another account and another number.
    let (_, v) = ask_for(&gw, "alice", ALICE_PW, OTHER).await;
    assert_refused(&v, LIMIT_CLIENT);
    assert_eq!(
        sms.count(),
        2,
        "a send over the per-client limit reached the provider"
    );
    assert_logged(&gw, "per_client");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_global_hourly_cap_stops_all_sends() {
    let sms = SmsServer::start().await;
    let gw = Conf::new(twilio(&sms.base()))
        .sms("global_limit_per_hour", "1")
        .start()
        .await;
    let (b, first) = start_enrol(&gw, &sms, "bob", BOB_PW, NUMBER).await;

    let (_, v) = ask_for(&gw, "alice", ALICE_PW, OTHER).await;
    assert_refused(&v, LIMIT_GLOBAL);
    assert_eq!(
        sms.count(),
        1,
        "a send over the global cap reached the provider"
    );
    assert_logged(&gw, "global");

    // What was sent before the cap still works.
    finish_with_code(&b, ENROL, &first.code()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn max_challenges_sent_ends_resends_for_the_sign_in() {
    let sms = SmsServer::start().await;
    let gw = Conf::new(twilio(&sms.base()))
        .sms("max_challenges_sent", "2")
        .start()
        .await;
    let (b, _) = start_enrol(&gw, &sms, "bob", BOB_PW, NUMBER).await;
    resend_ok(&b, &sms).await;
    assert_eq!(sms.count(), 2);

    let v = resend(&b).await;
    assert_refused(&v, LIMIT_SENDS);
    assert_eq!(
        sms.count(),
        2,
        "a send over max_challenges_sent reached the provider"
    );
    assert_logged(&gw, "SMS");

    // The last code that went out still completes the enrolment.
    let last = sms.last();
    finish_with_code(&b, ENROL, &last.code()).await;
}

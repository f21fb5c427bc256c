//! A provider that answers 400 or 500, does not answer in time, or cannot be reached: the
//! send failed, the user is told and stays on the stage, the code that may have reached the
//! provider does not work, no device is stored, the operator's log names provider and status
//! but never the code — and a later send that works completes the enrolment.

use crate::harness::*;
use crate::provider::{Reply, SmsServer};
use crate::support::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// After the phone was posted and the send failed.
async fn assert_failed_send(gw: &Gateway, b: &Browser, v: &Value, leaked_code: Option<&str>) {
    assert_eq!(
        v["component"], "authenticator_sms",
        "stays on the stage: {v}"
    );
    assert_eq!(errors(v), vec![SEND_FAILED], "the user is told: {v}");
    // Nothing went out, so there is no code box (only the way to send again)...
    assert!(
        v["fields"].as_array().is_none_or(|f| f.is_empty()),
        "no code box after a failed send: {v}"
    );
    // ...and a code sent anyway (the provider may have seen it) is not taken as an answer.
    let code = leaked_code
        .map(str::to_string)
        .unwrap_or_else(|| "123456".into());
    let r = b
        .post_json(&b.url(&api(ENROL)), &json!({ "code": code }))
        .await;
    assert_eq!(r.status, 400, "{}", r.describe());
    assert_eq!(r.json()["error"], "stage_mismatch", "{}", r.describe());
    let r = b.get_json(&b.url(&api(ENROL))).await;
    assert_eq!(
        r.json()["component"],
        "authenticator_sms",
        "a code from a failed send let the user past the stage: {}",
        r.describe()
    );
    assert!(
        r.set_cookie_value(SESSION_COOKIE).is_none(),
        "a session after a failed send: {}",
        r.describe()
    );
    assert_eq!(
        user_phone(gw, "bob").await,
        "-",
        "no device after a failed send"
    );
    if let Some(c) = leaked_code {
        assert_log_free_of(gw, c);
    }
}

/// Asks again once the provider works; the new code completes the enrolment.
async fn retry_succeeds(gw: &Gateway, b: &Browser, sms: &SmsServer) {
    let before = sms.count();
    let v = post(b, ENROL, json!({ "action": "resend" })).await;
    assert_asks_code(&v, "authenticator_sms");
    assert!(
        errors(&v).is_empty(),
        "the retry worked but the page says: {v}"
    );
    let seen = sms.wait_for(before + 1).await;
    let req = seen[before].clone();
    assert_eq!(req.recipient(), NUMBER_E164);
    finish_with_code(b, ENROL, &req.code()).await;
    assert_eq!(user_phone(gw, "bob").await, NUMBER_E164);
}

/// The operator's log line about the failed send.
fn send_failure_line(gw: &Gateway) -> String {
    gw.logs()
        .lines()
        .find(|l| l.contains("could not be sent"))
        .unwrap_or_else(|| panic!("no log line about the failed send:\n{}", gw.logs()))
        .to_string()
}

async fn to_phone(gw: &Gateway) -> Browser {
    let b = gw.browser();
    let v = past_password(&b, ENROL, "bob", BOB_PW).await;
    assert_asks_phone(&v);
    b
}

#[tokio::test(flavor = "multi_thread")]
async fn twilio_400_is_a_failed_send_the_user_can_retry() {
    let sms = SmsServer::start().await;
    let gw = Conf::new(twilio(&sms.base())).start().await;
    sms.set_reply(Reply::Status(
        400,
        r#"{"code": 21211, "message": "The 'To' number is not valid.", "more_info": "https://www.twilio.com/docs/errors/21211"}"#.into(),
    ));
    let b = to_phone(&gw).await;
    let v = post(&b, ENROL, json!({ "phone": NUMBER })).await;
    let seen = sms.wait_for(1).await;
    let code = seen[0].code();
    assert_failed_send(&gw, &b, &v, Some(&code)).await;

    let logs = send_failure_line(&gw);
    assert!(
        logs.contains("twilio"),
        "the log does not name the provider:\n{logs}"
    );
    assert!(
        regex::Regex::new(r"(?i)status\D{0,3}400")
            .unwrap()
            .is_match(&logs),
        "the log does not name the status:\n{logs}"
    );
    assert!(
        logs.contains("21211"),
        "the log does not show the provider's answer:\n{logs}"
    );

    sms.set_reply(Reply::created());
    retry_succeeds(&gw, &b, &sms).await;

    // The HTML face tells the user the same way.
    sms.set_reply(Reply::Status(400, r#"{"code": 21211}"#.into()));
    let h = gw.browser();
    let page = html_past_password(&h, ENROL, "alice", ALICE_PW).await;
    let r = submit(&h, &page, &[("phone", OTHER)]).await;
    assert_eq!(
        r.status,
        200,
        "an error page, not a redirect: {}",
        r.describe()
    );
    assert_eq!(page_errors(&r.body), vec![SEND_FAILED]);
    assert!(r.set_cookie_value(SESSION_COOKIE).is_none());
    assert_eq!(user_phone(&gw, "alice").await, "-");
}

#[tokio::test(flavor = "multi_thread")]
async fn generic_500_is_a_failed_send_the_user_can_retry() {
    let sms = SmsServer::start().await;
    let url = format!("{}/send", sms.base());
    let gw = Conf::new(generic_bearer(&url, "tok")).start().await;
    sms.set_reply(Reply::Status(
        500,
        r#"{"error": "upstream-carrier-meltdown"}"#.into(),
    ));
    let b = to_phone(&gw).await;
    let v = post(&b, ENROL, json!({ "phone": NUMBER })).await;
    let seen = sms.wait_for(1).await;
    let code = seen[0].code();
    assert_failed_send(&gw, &b, &v, Some(&code)).await;

    let logs = send_failure_line(&gw);
    assert!(
        logs.contains("generic"),
        "the log does not name the provider:\n{logs}"
    );
    assert!(
        regex::Regex::new(r"(?i)status\D{0,3}500")
            .unwrap()
            .is_match(&logs),
        "the log does not name the status:\n{logs}"
    );
    assert!(
        logs.contains("upstream-carrier-meltdown"),
        "the log does not show the provider's answer:\n{logs}"
    );

    sms.set_reply(Reply::created());
    retry_succeeds(&gw, &b, &sms).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn provider_slower_than_the_timeout_is_a_failed_send_the_user_can_retry() {
    let sms = SmsServer::start().await;
    let url = format!("{}/send", sms.base());
    let gw = Conf::new(generic_bearer(&url, "tok"))
        .sms("timeout", "1")
        .start()
        .await;
    sms.set_reply(Reply::Delayed(
        Duration::from_secs(5),
        201,
        r#"{"ok": true}"#.into(),
    ));
    let b = to_phone(&gw).await;
    let t = Instant::now();
    let v = post(&b, ENROL, json!({ "phone": NUMBER })).await;
    let took = t.elapsed();
    assert!(
        took < Duration::from_millis(4500),
        "the gateway waited {took:?} for a provider with a 1 s timeout"
    );
    let seen = sms.wait_for(1).await;
    let code = seen[0].code();
    assert_failed_send(&gw, &b, &v, Some(&code)).await;

    let logs = send_failure_line(&gw);
    assert!(
        logs.contains("generic"),
        "the log does not name the provider:\n{logs}"
    );
    assert!(
        logs.to_lowercase().contains("timed out") || logs.to_lowercase().contains("timeout"),
        "the log does not say the provider timed out:\n{logs}"
    );

    sms.set_reply(Reply::created());
    retry_succeeds(&gw, &b, &sms).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_connection_is_a_failed_send_the_user_can_retry() {
    // Nothing listens on this port until the provider "comes back".
    let port = reserved_port();
    let gw = Conf::new(twilio(&format!("http://127.0.0.1:{port}")))
        .start()
        .await;
    let b = to_phone(&gw).await;
    let v = post(&b, ENROL, json!({ "phone": NUMBER })).await;
    assert_failed_send(&gw, &b, &v, None).await;

    let logs = send_failure_line(&gw);
    assert!(
        logs.contains("twilio"),
        "the log does not name the provider:\n{logs}"
    );
    assert!(
        logs.to_lowercase().contains("connect"),
        "the log does not say the connection failed:\n{logs}"
    );

    let sms = SmsServer::start_on(port).await;
    retry_succeeds(&gw, &b, &sms).await;
}

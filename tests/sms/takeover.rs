//! A flow that asks for a phone before anything proved who the user is must not let someone
//! enrol their own number on another account: nothing is texted, no code works, no session.

use crate::harness::BOB_PW;
use crate::provider::SmsServer;
use crate::support::*;
use serde_json::json;
use std::time::Duration;

const SMS_ONLY: &str = "sms-only";

#[tokio::test(flavor = "multi_thread")]
async fn phone_enrolment_before_any_proof_texts_nothing_and_signs_nobody_in() {
    let sms = SmsServer::start().await;
    let mut conf = Conf::new(twilio(&sms.base()));
    conf.extra.push_str(&format!(
        r#"
[[flows]]
slug = "{SMS_ONLY}"
title = "Sign in with your phone"
designation = "authentication"
stages = ["identify", "sms", "login"]
"#
    ));
    let gw = conf.start().await;

    // bob exists; the attacker names him and offers their own number.
    let b = gw.browser();
    let v = get(&b, SMS_ONLY).await;
    assert_eq!(v["component"], "identification", "{v}");
    let v = post(&b, SMS_ONLY, json!({ "uid": "bob" })).await;
    assert_asks_phone(&v);
    let v = post(&b, SMS_ONLY, json!({ "phone": NUMBER })).await;
    assert_eq!(v["component"], "authenticator_sms", "{v}");
    let v = post(&b, SMS_ONLY, json!({ "code": "000000" })).await;
    assert_ne!(
        v["component"], "redirect",
        "signed in with a guessed code: {v}"
    );

    // The gateway logs why it sends nothing where it would have sent: once that line is
    // there, the sign-in got as far as a send could go.
    crate::harness::poll_until(Duration::from_secs(10), || {
        gw.logs()
            .contains("phone enrolment before anything proved who the user is")
    })
    .await;
    assert_eq!(
        sms.count(),
        0,
        "a code was texted to a number nobody vouched for"
    );
    assert!(
        gw.logs()
            .contains("phone enrolment before anything proved who the user is"),
        "the operator is told why nothing was sent"
    );
    // And with a password first, the same enrolment works (the enrol flow of the other tests).
    enrol(&gw, &sms, "bob", BOB_PW, NUMBER).await;
}

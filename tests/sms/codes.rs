//! The codes an SMS carries: their length, their expiry (`token_expiry`) and the attempt limit
//! that holds across sign-ins (`max_allowed_attempts`).

use crate::harness::*;
use crate::provider::SmsServer;
use crate::support::*;
use serde_json::json;
use std::time::Duration;

const EXPIRED: &str = "That code has expired. Send a new one.";
const TOO_MANY: &str = "Too many attempts. Start the sign-in again.";

#[tokio::test(flavor = "multi_thread")]
async fn codes_have_the_configured_length_and_expire_after_token_expiry() {
    let sms = SmsServer::start().await;
    let gw = Conf::new(twilio(&sms.base()))
        .sms("code_length", "8")
        .sms("token_expiry", "\"4s\"")
        .start()
        .await;
    let (b, req) = start_enrol(&gw, &sms, "bob", BOB_PW, NUMBER).await;
    let code = req.code();
    assert_eq!(
        code.len(),
        8,
        "code_length = 8 but the SMS carried {code:?}"
    );
    assert_eq!(
        req.form_field("Body"),
        format!("Your Portcullis code is {code}")
    );

    tokio::time::sleep(Duration::from_millis(5200)).await;
    let v = post(&b, ENROL, json!({ "code": code })).await;
    assert_eq!(
        v["component"], "authenticator_sms",
        "an expired code passed: {v}"
    );
    assert_eq!(errors(&v), vec![EXPIRED], "{v}");
    assert_eq!(user_phone(&gw, "bob").await, "-");

    // A new code works at once.
    let v = post(&b, ENROL, json!({ "action": "resend" })).await;
    assert!(errors(&v).is_empty(), "{v}");
    let fresh = sms.wait_for(2).await[1].code();
    finish_with_code(&b, ENROL, &fresh).await;
    assert_eq!(user_phone(&gw, "bob").await, NUMBER_E164);
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_codes_are_limited_across_sign_ins() {
    let sms = SmsServer::start().await;
    let gw = Conf::new(twilio(&sms.base()))
        .sms("max_allowed_attempts", "2")
        .start()
        .await;

    let (b1, r1) = start_enrol(&gw, &sms, "bob", BOB_PW, NUMBER).await;
    let v = post(&b1, ENROL, json!({ "code": other_code(&r1.code()) })).await;
    assert_eq!(v["component"], "authenticator_sms", "{v}");
    assert!(!errors(&v).is_empty(), "a wrong code without an error: {v}");

    // A new sign-in does not reset the count: the second wrong code ends it.
    let (b2, r2) = start_enrol(&gw, &sms, "bob", BOB_PW, NUMBER).await;
    let v = post(&b2, ENROL, json!({ "code": other_code(&r2.code()) })).await;
    assert_eq!(v["component"], "access_denied", "{v}");
    assert_eq!(errors(&v), vec![TOO_MANY], "{v}");

    // Even the right code of a third sign-in is refused while the limit holds.
    let (b3, r3) = start_enrol(&gw, &sms, "bob", BOB_PW, NUMBER).await;
    let r = b3
        .post_json(&b3.url(&api(ENROL)), &json!({ "code": r3.code() }))
        .await;
    assert!(
        r.set_cookie_value(SESSION_COOKIE).is_none(),
        "the attempt limit did not hold across sign-ins: {}",
        r.describe()
    );
    assert_ne!(r.json()["component"], "redirect", "{}", r.body);
    assert_eq!(user_phone(&gw, "bob").await, "-");
}

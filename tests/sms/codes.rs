//! The codes an SMS carries: their length, their expiry (`token_expiry`) and the attempt limit
//! that holds across sign-ins (`max_allowed_attempts`).

use crate::harness::*;
use crate::provider::SmsServer;
use crate::support::*;
use serde_json::json;

const TOO_MANY: &str = "Too many attempts. Start the sign-in again.";

// Expiry after `token_expiry` (and a code typed a second before it still working) is tested
// in-process with a manual clock, no sleep: `flow::tests::sms::
// a_texted_code_typed_when_the_stages_token_expiry_ends_is_expired_and_offers_a_new_one` and
// `a_texted_code_typed_just_before_the_stages_token_expiry_ends_still_works`.
#[tokio::test(flavor = "multi_thread")]
async fn codes_have_the_configured_length_and_enrol_the_number() {
    let sms = SmsServer::start().await;
    let gw = Conf::new(twilio(&sms.base()))
        .sms("code_length", "8")
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
    assert_eq!(user_phone(&gw, "bob").await, "-");
    finish_with_code(&b, ENROL, &code).await;
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

//! `pattern` and `phone_pattern` must match the whole value, as HTML's `pattern` does (a
//! value that only starts like the pattern is refused), and a prompt's `email` and `tel`
//! fields are checked by the server, not only by the browser.

use crate::harness::*;
use crate::provider::SmsServer;
use crate::support::*;
use serde_json::json;

const TEAM_MESSAGE: &str = "Three lower-case letters.";

#[tokio::test(flavor = "multi_thread")]
async fn a_prompt_value_matching_only_a_prefix_of_the_pattern_is_refused() {
    let sms = SmsServer::start().await;
    let mut conf = Conf::new(twilio(&sms.base()));
    conf.prompt_fields = format!(
        r#"
[[stages.ask.fields]]
key = "team"
label = "Team"
pattern = "[a-z]{{3}}"
pattern_message = "{TEAM_MESSAGE}"
"#
    );
    let gw = conf.start().await;
    let b = gw.browser();
    let v = past_password(&b, PROMPTED, "bob", BOB_PW).await;
    assert_eq!(v["component"], "prompt", "{v}");

    for partial in ["abcd", "abc1", "xabc"] {
        let v = post(&b, PROMPTED, json!({ "team": partial })).await;
        assert_eq!(v["component"], "prompt", "{partial:?} passed: {v}");
        assert_eq!(errors(&v), vec![TEAM_MESSAGE], "for {partial:?}: {v}");
    }
    let v = post(&b, PROMPTED, json!({ "team": "abc" })).await;
    assert_asks_phone(&v);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_number_matching_only_a_prefix_of_phone_pattern_is_refused() {
    let sms = SmsServer::start().await;
    let gw = Conf::new(twilio(&sms.base()))
        .sms("phone_pattern", r#""\\+4179""#)
        .start()
        .await;
    let b = gw.browser();
    let v = past_password(&b, ENROL, "bob", BOB_PW).await;
    assert_asks_phone(&v);
    let v = post(&b, ENROL, json!({ "phone": NUMBER })).await;
    assert_asks_phone(&v);
    assert_eq!(errors(&v), vec![BAD_NUMBER], "{v}");
    assert_eq!(sms.count(), 0, "a refused number reached the provider");
}

#[tokio::test(flavor = "multi_thread")]
async fn prompt_email_and_tel_fields_are_checked_by_the_server() {
    let sms = SmsServer::start().await;
    let mut conf = Conf::new(twilio(&sms.base()));
    conf.prompt_fields = r#"
[[stages.ask.fields]]
key = "contact"
label = "Contact"
type = "email"

[[stages.ask.fields]]
key = "phone"
label = "Phone"
type = "tel"
"#
    .into();
    let gw = conf.start().await;
    let b = gw.browser();
    let v = past_password(&b, PROMPTED, "bob", BOB_PW).await;
    assert_eq!(v["component"], "prompt", "{v}");

    for bad in [
        "bob",
        "bob@",
        "@example.com",
        "bob@a@b",
        "bob smith@example.com",
    ] {
        let v = post(&b, PROMPTED, json!({ "contact": bad, "phone": NUMBER })).await;
        assert_eq!(v["component"], "prompt", "{bad:?} passed: {v}");
        assert_eq!(
            errors(&v),
            vec!["Contact is not an email address."],
            "for {bad:?}"
        );
    }
    for bad in ["call me", "+41 79 abc", "12"] {
        let v = post(
            &b,
            PROMPTED,
            json!({ "contact": "bob@example.com", "phone": bad }),
        )
        .await;
        assert_eq!(v["component"], "prompt", "{bad:?} passed: {v}");
        assert_eq!(
            errors(&v),
            vec!["Phone is not a phone number."],
            "for {bad:?}"
        );
    }
    assert_eq!(sms.count(), 0);

    let v = post(
        &b,
        PROMPTED,
        json!({ "contact": "bob@example.com", "phone": NUMBER }),
    )
    .await;
    assert_asks_code(&v, "authenticator_sms");
    let req = sms.wait_for(1).await[0].clone();
    assert_eq!(req.form_field("To"), NUMBER_E164);
}

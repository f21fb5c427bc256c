//! Later sign-ins validated by SMS (`authenticator_validate` with `device_classes` including
//! `sms`) through both faces, and the choice between an email and an SMS device.

use crate::harness::*;
use crate::provider::SmsServer;
use crate::support::*;
use serde_json::{json, Value};

fn assert_texted_to_stored_number(req: &crate::provider::Recorded) {
    assert_eq!(
        req.path,
        format!("/2010-04-01/Accounts/{SID}/Messages.json")
    );
    assert_eq!(
        req.form_field("To"),
        NUMBER_E164,
        "not texted to the stored number"
    );
    assert_eq!(req.form_field("From"), FROM);
    let code = req.code();
    assert_eq!(
        req.form_field("Body"),
        format!("Your Portcullis code is {code}")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn later_sign_in_is_validated_by_sms_through_the_json_api() {
    let sms = SmsServer::start().await;
    let gw = Conf::new(twilio(&sms.base())).start().await;
    let enrolled = enrol(&gw, &sms, "bob", BOB_PW, NUMBER).await;

    let b = gw.browser();
    let v = past_password(&b, SIGNIN, "bob", BOB_PW).await;
    assert_asks_code(&v, "authenticator_validate");
    assert!(errors(&v).is_empty(), "the validation send failed: {v}");
    let seen = sms.wait_for(2).await;
    assert_eq!(seen.len(), 2, "exactly one SMS for the sign-in");
    let req = seen[1].clone();
    assert_texted_to_stored_number(&req);
    let code = req.code();
    assert_ne!(code, enrolled.code(), "a fresh code for the sign-in");

    // A wrong code keeps the user on the stage; the right one signs in.
    let v = post(&b, SIGNIN, json!({ "code": other_code(&code) })).await;
    assert_eq!(v["component"], "authenticator_validate", "{v}");
    assert!(!errors(&v).is_empty(), "a wrong code without an error: {v}");

    // The code of the enrolment is not valid for this sign-in.
    let v = post(&b, SIGNIN, json!({ "code": enrolled.code() })).await;
    assert_eq!(v["component"], "authenticator_validate", "{v}");

    let r = b
        .post_json(&b.url(&api(SIGNIN)), &json!({ "code": code }))
        .await;
    assert_signed_in(&r);
    let token = r.set_cookie_value(SESSION_COOKIE).unwrap();
    let echo = assert_token_accepted(&gw, &token, "SMS-validated session").await;
    assert_eq!(echo.header("remote-user"), Some("bob"));
    assert_log_free_of(&gw, &code);
}

#[tokio::test(flavor = "multi_thread")]
async fn later_sign_in_is_validated_by_sms_through_html_forms_with_resend() {
    let sms = SmsServer::start().await;
    let gw = Conf::new(twilio(&sms.base())).start().await;
    enrol(&gw, &sms, "bob", BOB_PW, NUMBER).await;

    let b = gw.browser();
    let page = html_past_password(&b, SIGNIN, "bob", BOB_PW).await;
    assert!(
        page_errors(&page.html).is_empty(),
        "the validation send failed: {:?}",
        page_errors(&page.html)
    );
    assert!(
        has_input(&page.html, "code"),
        "no code input:\n{}",
        page.html
    );
    assert!(
        has_resend_button(&page.html),
        "no resend button (name=action value=resend):\n{}",
        page.html
    );
    let seen = sms.wait_for(2).await;
    assert_eq!(seen.len(), 2, "exactly one SMS for the sign-in");
    assert_texted_to_stored_number(&seen[1]);
    let first = seen[1].code();

    // Resend: a new SMS, the earlier code stops working.
    let r = submit(&b, &page, &[("action", "resend")]).await;
    let page = next_page(&b, &r).await;
    assert!(
        has_input(&page.html, "code"),
        "no code input:\n{}",
        page.html
    );
    let seen = sms.wait_for(3).await;
    assert_eq!(seen.len(), 3, "exactly one SMS for the resend");
    assert_texted_to_stored_number(&seen[2]);
    let second = seen[2].code();

    if first != second {
        let r = submit(&b, &page, &[("code", &first)]).await;
        assert_eq!(
            r.status,
            200,
            "a code replaced by a resend was accepted: {}",
            r.describe()
        );
        assert!(r.set_cookie_value(SESSION_COOKIE).is_none());
    }

    let r = submit(&b, &page, &[("code", &second)]).await;
    assert_eq!(r.status, 303, "the right code: {}", r.describe());
    let token = r
        .set_cookie_value(SESSION_COOKIE)
        .unwrap_or_else(|| panic!("no session cookie: {}", r.describe()));
    let echo = assert_token_accepted(&gw, &token, "SMS-validated session").await;
    assert_eq!(echo.header("remote-user"), Some("bob"));
}

/// The option of the device whose label contains `needle`.
fn option_with(v: &Value, needle: &str) -> String {
    let f = field(v, "device");
    f["options"]
        .as_array()
        .and_then(|o| {
            o.iter()
                .find(|o| o["label"].as_str().unwrap_or_default().contains(needle))
        })
        .and_then(|o| o["value"].as_str())
        .unwrap_or_else(|| panic!("no device option labelled {needle:?}: {v}"))
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn user_with_email_and_sms_devices_chooses_where_the_code_goes() {
    let smtp = SmtpSink::start();
    let sms = SmsServer::start().await;
    let both = r#"["email", "sms"]"#;
    let mut conf = Conf::new(twilio(&sms.base())).validate("device_classes", both);
    conf.smtp_port = Some(smtp.port);
    let gw = conf.start().await;

    // Enrol an email address, then a phone, in one flow.
    let b = gw.browser();
    let v = past_password(&b, BOTH, "bob", BOB_PW).await;
    assert_eq!(v["component"], "authenticator_email", "{v}");
    assert!(errors(&v).is_empty(), "{v}");
    let mails = smtp.wait_for(1).await;
    let v = post(&b, BOTH, json!({ "code": mail_code(&mails[0]) })).await;
    assert_asks_phone(&v);
    let v = post(&b, BOTH, json!({ "phone": NUMBER })).await;
    assert_asks_code(&v, "authenticator_sms");
    let req = sms.wait_for(1).await[0].clone();
    finish_with_code(&b, BOTH, &req.code()).await;

    // JSON: a choice of two devices, nothing sent before the user chooses.
    let b = gw.browser();
    let v = past_password(&b, SIGNIN, "bob", BOB_PW).await;
    assert_eq!(v["component"], "authenticator_validate", "{v}");
    let f = field(&v, "device");
    assert_eq!(f["type"], "choice", "{v}");
    assert_eq!(f["options"].as_array().map(Vec::len), Some(2), "{v}");
    let phone_id = option_with(&v, "Work phone");
    let mail_id = option_with(&v, "Mailbox");
    assert_eq!(sms.count(), 1, "sent before the user chose");
    assert_eq!(smtp.messages().len(), 1, "mailed before the user chose");

    // HTML: radio buttons; choosing the mailbox mails the code, texts nothing.
    let h = gw.browser();
    let page = html_past_password(&h, SIGNIN, "bob", BOB_PW).await;
    let mut values = radios(&page.html, "device");
    values.sort();
    let mut expected = vec![phone_id.clone(), mail_id.clone()];
    expected.sort();
    assert_eq!(values, expected, "radio choices:\n{}", page.html);
    let r = submit(&h, &page, &[("device", &mail_id)]).await;
    let page = next_page(&h, &r).await;
    assert!(
        has_input(&page.html, "code"),
        "no code input:\n{}",
        page.html
    );
    let mails = smtp.wait_for(2).await;
    assert_eq!(sms.count(), 1, "choosing the mailbox sent an SMS");
    let r = submit(&h, &page, &[("code", &mail_code(&mails[1]))]).await;
    assert_eq!(r.status, 303, "{}", r.describe());
    assert!(
        r.set_cookie_value(SESSION_COOKIE).is_some(),
        "{}",
        r.describe()
    );

    // Back to the JSON sign-in: choosing the phone texts the stored number only.
    let v = post(&b, SIGNIN, json!({ "device": phone_id })).await;
    assert_asks_code(&v, "authenticator_validate");
    assert!(
        errors(&v).is_empty(),
        "the SMS to the chosen phone failed: {v}"
    );
    let seen = sms.wait_for(2).await;
    assert_texted_to_stored_number(&seen[1]);
    assert_eq!(smtp.messages().len(), 2, "the email device got a code too");

    // The text does not arrive: the user goes back and picks the mailbox instead. The code
    // already texted stops working.
    let actions: Vec<&str> = v["actions"]
        .as_array()
        .map(|a| a.iter().filter_map(|x| x["name"].as_str()).collect())
        .unwrap_or_default();
    assert!(
        actions.contains(&"choose"),
        "no way back to the choice: {v}"
    );
    let v = post(&b, SIGNIN, json!({ "action": "choose" })).await;
    assert_eq!(field(&v, "device")["type"], "choice", "{v}");
    let v = post(&b, SIGNIN, json!({ "device": mail_id })).await;
    assert_asks_code(&v, "authenticator_validate");
    let mails = smtp.wait_for(3).await;
    let v = post(&b, SIGNIN, json!({ "code": seen[1].code() })).await;
    assert!(
        !errors(&v).is_empty(),
        "the code texted before switching still worked: {v}"
    );
    finish_with_code(&b, SIGNIN, &mail_code(&mails[2])).await;
}

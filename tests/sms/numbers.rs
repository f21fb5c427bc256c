//! Which numbers are accepted (E.164 after normalising, `allowed_prefixes`, `phone_pattern`),
//! and `verify_only`, which proves a number but keeps none.

use crate::harness::*;
use crate::provider::SmsServer;
use crate::support::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn numbers_outside_allowed_prefixes_are_refused_before_anything_is_sent() {
    let sms = SmsServer::start().await;
    let gw = Conf::new(twilio(&sms.base()))
        .sms("allowed_prefixes", r#"["+41", "+49"]"#)
        .start()
        .await;
    let b = gw.browser();
    let v = past_password(&b, ENROL, "bob", BOB_PW).await;
    assert_asks_phone(&v);

    for bad in [
        "+33 6 12 34 56 78", // another country
        "079 123 45 67",     // no region code
        "+41 79 12",         // too short
        "+41 79 abc 45 67",  // not digits
    ] {
        let v = post(&b, ENROL, json!({ "phone": bad })).await;
        assert_asks_phone(&v);
        assert_eq!(errors(&v), vec![BAD_NUMBER], "for {bad:?}: {v}");
    }
    assert_eq!(sms.count(), 0, "a refused number reached the provider");

    // The HTML face shows the same message and sends nothing either.
    let h = gw.browser();
    let page = html_past_password(&h, ENROL, "bob", BOB_PW).await;
    assert!(
        has_input(&page.html, "phone"),
        "no phone input:\n{}",
        page.html
    );
    let r = submit(&h, &page, &[("phone", "+33 6 12 34 56 78")]).await;
    assert_eq!(
        r.status,
        200,
        "an error page, not a redirect: {}",
        r.describe()
    );
    assert_eq!(page_errors(&r.body), vec![BAD_NUMBER], "message not shown");
    assert_eq!(sms.count(), 0, "a refused number reached the provider");

    // A number with an allowed prefix goes out, normalised.
    let v = post(&b, ENROL, json!({ "phone": OTHER })).await;
    assert_asks_code(&v, "authenticator_sms");
    let req = sms.wait_for(1).await[0].clone();
    assert_eq!(req.form_field("To"), OTHER_E164);
    finish_with_code(&b, ENROL, &req.code()).await;
    assert_eq!(user_phone(&gw, "bob").await, OTHER_E164);
}

#[tokio::test(flavor = "multi_thread")]
async fn numbers_not_matching_phone_pattern_get_the_configured_message() {
    let sms = SmsServer::start().await;
    let url = format!("{}/send", sms.base());
    let gw = Conf::new(generic_bearer(&url, "tok"))
        .sms("phone_pattern", r#""\\+417[5-9][0-9]{7}""#)
        .sms(
            "phone_error_message",
            r#""Only Swiss mobile numbers, please.""#,
        )
        .start()
        .await;
    let b = gw.browser();
    let v = past_password(&b, ENROL, "bob", BOB_PW).await;
    assert_asks_phone(&v);

    for bad in ["+41 44 668 18 00", OTHER, "0791234567"] {
        let v = post(&b, ENROL, json!({ "phone": bad })).await;
        assert_asks_phone(&v);
        assert_eq!(
            errors(&v),
            vec!["Only Swiss mobile numbers, please."],
            "for {bad:?}: {v}"
        );
    }
    assert_eq!(sms.count(), 0, "a refused number reached the provider");

    let v = post(&b, ENROL, json!({ "phone": "+41 (79) 123-45.67" })).await;
    assert_asks_code(&v, "authenticator_sms");
    let req = sms.wait_for(1).await[0].clone();
    assert_eq!(req.json()["To"], NUMBER_E164);
    finish_with_code(&b, ENROL, &req.code()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_only_keeps_no_number_and_validation_never_offers_it() {
    let sms = SmsServer::start().await;
    let gw = Conf::new(twilio(&sms.base()))
        .sms("verify_only", "true")
        .start()
        .await;

    let req = enrol(&gw, &sms, "bob", BOB_PW, NUMBER).await;
    assert_eq!(
        req.form_field("To"),
        NUMBER_E164,
        "the number is still verified"
    );
    assert_eq!(
        user_phone(&gw, "bob").await,
        "-",
        "verify_only stored the number on the account"
    );

    // A later sign-in that needs an SMS device finds none: denied, nothing sent.
    let b = gw.browser();
    let v = past_password(&b, SIGNIN, "bob", BOB_PW).await;
    assert_eq!(
        v["component"], "access_denied",
        "a verify-only device was offered for validation: {v}"
    );
    assert_eq!(errors(&v), vec![NOT_CONFIGURED], "{v}");
    assert_eq!(sms.count(), 1, "validation texted a verify-only number");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_phone_is_enrolled_through_the_html_forms() {
    let sms = SmsServer::start().await;
    let gw = Conf::new(twilio(&sms.base())).start().await;
    let b = gw.browser();
    let page = html_past_password(&b, ENROL, "bob", BOB_PW).await;
    let phone = inputs(&page.html)
        .into_iter()
        .find(|i| i.get("name").map(String::as_str) == Some("phone"))
        .unwrap_or_else(|| panic!("no phone input:\n{}", page.html));
    assert_eq!(
        phone.get("type").map(String::as_str),
        Some("tel"),
        "{phone:?}"
    );
    assert_eq!(sms.count(), 0, "texted before a number was given");

    let r = submit(&b, &page, &[("phone", NUMBER)]).await;
    let page = next_page(&b, &r).await;
    assert!(
        page_errors(&page.html).is_empty(),
        "{:?}",
        page_errors(&page.html)
    );
    assert!(
        has_input(&page.html, "code"),
        "no code input:\n{}",
        page.html
    );
    assert!(
        has_resend_button(&page.html),
        "no resend button:\n{}",
        page.html
    );
    let req = sms.wait_for(1).await[0].clone();
    assert_eq!(req.form_field("To"), NUMBER_E164);

    let r = submit(&b, &page, &[("code", &req.code())]).await;
    assert_eq!(r.status, 303, "{}", r.describe());
    assert!(
        r.set_cookie_value(SESSION_COOKIE).is_some(),
        "{}",
        r.describe()
    );
    assert_eq!(user_phone(&gw, "bob").await, NUMBER_E164);
}

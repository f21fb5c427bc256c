//! The prompt stage: its fields, `required` and `pattern` errors, and a `phone` answer that
//! the SMS setup stage uses instead of asking again.

use crate::harness::*;
use crate::provider::SmsServer;
use crate::support::*;
use serde_json::json;

const PATTERN_MESSAGE: &str = "Use the international format, starting with +";

#[tokio::test(flavor = "multi_thread")]
async fn phone_from_a_prompt_stage_is_texted_without_asking_again() {
    let sms = SmsServer::start().await;
    let gw = Conf::new(twilio(&sms.base())).start().await;
    let b = gw.browser();
    let v = past_password(&b, PROMPTED, "bob", BOB_PW).await;
    assert_eq!(v["component"], "prompt", "{v}");
    assert_eq!(field_names(&v), vec!["phone"], "{v}");
    let f = field(&v, "phone");
    assert_eq!(f["type"], "tel", "{v}");
    assert_eq!(f["label"], "Phone", "{v}");
    assert_eq!(f["required"], true, "{v}");
    assert_eq!(f["placeholder"], "+41 ...", "{v}");
    assert_eq!(sms.count(), 0);

    let v = post(&b, PROMPTED, json!({ "phone": NUMBER })).await;
    assert_asks_code(&v, "authenticator_sms");
    assert!(errors(&v).is_empty(), "{v}");
    let seen = sms.wait_for(1).await;
    assert_eq!(seen.len(), 1, "exactly one SMS");
    assert_eq!(seen[0].form_field("To"), NUMBER_E164);
    finish_with_code(&b, PROMPTED, &seen[0].code()).await;
    assert_eq!(user_phone(&gw, "bob").await, NUMBER_E164);
}

#[tokio::test(flavor = "multi_thread")]
async fn prompt_required_and_pattern_errors_keep_the_user_on_the_prompt() {
    let sms = SmsServer::start().await;
    let gw = Conf::new(twilio(&sms.base())).start().await;
    let b = gw.browser();
    let v = past_password(&b, PROMPTED, "bob", BOB_PW).await;
    assert_eq!(v["component"], "prompt", "{v}");

    let v = post(&b, PROMPTED, json!({ "phone": "   " })).await;
    assert_eq!(
        v["component"], "prompt",
        "an empty required field passed: {v}"
    );
    let e = errors(&v);
    assert_eq!(e.len(), 1, "{v}");
    assert!(
        e[0].contains("Phone") && e[0].to_lowercase().contains("required"),
        "the required error does not name the field: {v}"
    );

    let v = post(&b, PROMPTED, json!({ "phone": "079 123 45 67" })).await;
    assert_eq!(
        v["component"], "prompt",
        "a value against the pattern passed: {v}"
    );
    assert_eq!(errors(&v), vec![PATTERN_MESSAGE], "{v}");
    assert_eq!(sms.count(), 0, "an SMS went out from the prompt stage");

    // The HTML face: a tel input with its placeholder, the same errors on the page.
    let h = gw.browser();
    let page = html_past_password(&h, PROMPTED, "bob", BOB_PW).await;
    let input = inputs(&page.html)
        .into_iter()
        .find(|i| i.get("name").map(String::as_str) == Some("phone"))
        .unwrap_or_else(|| panic!("no phone input:\n{}", page.html));
    assert_eq!(
        input.get("type").map(String::as_str),
        Some("tel"),
        "{input:?}"
    );
    assert_eq!(
        input.get("placeholder").map(String::as_str),
        Some("+41 ..."),
        "{input:?}"
    );
    let r = submit(&h, &page, &[("phone", "")]).await;
    assert_eq!(r.status, 200, "{}", r.describe());
    let e = page_errors(&r.body);
    assert!(
        e.len() == 1 && e[0].contains("Phone") && e[0].contains("required"),
        "no required error on the page: {e:?}"
    );
    let r = submit(&h, &page, &[("phone", "0041 79 123 45 67")]).await;
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(
        page_errors(&r.body),
        vec![PATTERN_MESSAGE],
        "no pattern error"
    );
    assert_eq!(sms.count(), 0);

    // A valid answer moves on.
    let v = post(&b, PROMPTED, json!({ "phone": NUMBER })).await;
    assert_asks_code(&v, "authenticator_sms");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_prompt_phone_the_sms_stage_refuses_is_shown_with_the_error_and_asked_again() {
    let sms = SmsServer::start().await;
    let gw = Conf::new(twilio(&sms.base()))
        .sms("allowed_prefixes", r#"["+41"]"#)
        .start()
        .await;
    let b = gw.browser();
    let v = past_password(&b, PROMPTED, "bob", BOB_PW).await;
    assert_eq!(v["component"], "prompt", "{v}");

    // Passes the prompt's pattern, but not the SMS stage's prefixes.
    let v = post(&b, PROMPTED, json!({ "phone": OTHER })).await;
    assert_asks_phone(&v);
    assert_eq!(errors(&v), vec![BAD_NUMBER], "{v}");
    assert_eq!(
        sms.count(),
        0,
        "a refused prompt number reached the provider"
    );

    let v = post(&b, PROMPTED, json!({ "phone": NUMBER })).await;
    assert_asks_code(&v, "authenticator_sms");
    let req = sms.wait_for(1).await[0].clone();
    assert_eq!(req.form_field("To"), NUMBER_E164);
    finish_with_code(&b, PROMPTED, &req.code()).await;
    assert_eq!(user_phone(&gw, "bob").await, NUMBER_E164);
}

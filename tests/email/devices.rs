//! Several email devices: the validate stage lets the user choose where the code goes.

use crate::harness::{has_input, inputs, next_page, pct, submit};
use crate::smtp::{SmtpOpts, SmtpServer};
use crate::support::*;
use serde_json::{json, Value};

/// A flow that adds another address: identify → password → a prompt for it → a setup stage
/// that takes the address from that prompt → login.
const ADD_FLOW: &str = "add-email";

fn extra() -> String {
    format!(
        r#"
[[flows]]
slug = "{ADD_FLOW}"
title = "Add an address"
designation = "authentication"
stages = ["identify", "password", "ask_address", "email_add", "login"]

[stages.ask_address]
kind = "prompt"

[[stages.ask_address.fields]]
key = "new_email"
label = "Another address"
type = "email"

[stages.email_add]
kind = "authenticator_email"
friendly_name = "Second email"
email_source = "prompt:new_email"
"#
    )
}

/// alice with two devices: her account address (through the MFA flow) and
/// `alice@second.example` (through the add flow). Returns the number of messages used.
async fn two_devices(gw: &Gw, smtp: &SmtpServer) -> usize {
    let b = gw.browser();
    api_until_email(gw, &b, MFA_FLOW, "alice").await;
    let r = post_resp(&b, MFA_FLOW, json!({ "code": smtp.nth(1).await.code() })).await;
    assert_signed_in(gw, &r);

    let b = gw.browser();
    let r = b
        .get_json(&format!("{}?rd={}", api(ADD_FLOW), pct(&rd(gw))))
        .await;
    assert_eq!(r.status, 200, "{}", r.describe());
    post(&b, ADD_FLOW, json!({ "uid": "alice" })).await;
    let v = post(&b, ADD_FLOW, json!({ "password": PW })).await;
    assert_eq!(v["component"], "prompt", "{v}");
    let v = post(&b, ADD_FLOW, json!({ "new_email": "alice@second.example" })).await;
    assert_code_challenge(&v, "authenticator_email");
    let mail = smtp.nth(2).await;
    assert_eq!(mail.rcpt_tos, vec!["alice@second.example"]);
    let r = post_resp(&b, ADD_FLOW, json!({ "code": mail.code() })).await;
    assert_signed_in(gw, &r);
    2
}

fn options(v: &Value) -> Vec<(String, String)> {
    let field = v["fields"]
        .as_array()
        .and_then(|f| f.iter().find(|f| f["name"] == "device"))
        .unwrap_or_else(|| panic!("no device field: {v}"));
    assert_eq!(field["type"], "choice", "{v}");
    field["options"]
        .as_array()
        .unwrap_or_else(|| panic!("no options: {v}"))
        .iter()
        .map(|o| {
            (
                o["value"].as_str().unwrap_or_default().to_string(),
                o["label"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn with_two_devices_the_user_chooses_and_the_code_goes_to_the_chosen_one() {
    let smtp = SmtpServer::start(SmtpOpts::plain()).await;
    let mut spec = Spec::new(smtp.email_toml());
    spec.extra = extra();
    let gw = Gw::start(spec).await;
    let sent = two_devices(&gw, &smtp).await;

    let b = gw.browser();
    let v = api_until_email(&gw, &b, MFA_FLOW, "alice").await;
    assert_eq!(v["component"], "authenticator_validate", "{v}");
    assert_eq!(field_names(&v), vec!["device"], "a choice first: {v}");
    let opts = options(&v);
    assert_eq!(opts.len(), 2, "two devices offered: {v}");
    smtp.assert_no_more_than(sent, "nothing is sent before the choice")
        .await;
    let second = opts
        .iter()
        .find(|(_, label)| label.contains("@second.example"))
        .unwrap_or_else(|| panic!("no option for the second address: {v}"));
    assert!(
        !second.1.contains("alice@second.example"),
        "the address is masked in the label: {}",
        second.1
    );
    // An id that is not one of hers is refused.
    let v2 = post(&b, MFA_FLOW, json!({ "device": "not-a-device" })).await;
    assert_eq!(field_names(&v2), vec!["device"], "{v2}");
    assert!(!errors(&v2).is_empty(), "{v2}");

    let v = post(&b, MFA_FLOW, json!({ "device": second.0 })).await;
    assert_code_challenge(&v, "authenticator_validate");
    let mail = smtp.nth(sent + 1).await;
    assert_eq!(mail.rcpt_tos, vec!["alice@second.example"]);
    let r = post_resp(&b, MFA_FLOW, json!({ "code": mail.code() })).await;
    assert_signed_in(&gw, &r);
    assert_session_is(&b, &gw, "alice").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn html_device_choice_is_radio_buttons_and_sends_to_the_choice() {
    let smtp = SmtpServer::start(SmtpOpts::plain()).await;
    let mut spec = Spec::new(smtp.email_toml());
    spec.extra = extra();
    let gw = Gw::start(spec).await;
    let sent = two_devices(&gw, &smtp).await;

    let b = gw.browser();
    let first = html_page(&b, &format!("{}?rd={}", html_flow(MFA_FLOW), pct(&rd(&gw)))).await;
    let r = submit(&b, &first, &[("uid", "alice")]).await;
    let page = next_page(&b, &r).await;
    let r = submit(&b, &page, &[("password", PW)]).await;
    let page = next_page(&b, &r).await;
    let radios: Vec<String> = inputs(&page.html)
        .into_iter()
        .filter(|i| {
            i.get("name").map(String::as_str) == Some("device")
                && i.get("type").map(String::as_str) == Some("radio")
        })
        .map(|i| i.get("value").cloned().unwrap_or_default())
        .collect();
    assert_eq!(radios.len(), 2, "two radio buttons:\n{}", page.html);
    assert!(!has_input(&page.html, "code"), "{}", page.html);

    // Pick the account address by its (masked) label.
    let re = regex::Regex::new(
        r#"(?s)<input type="radio" name="device" value="([^"]+)"[^>]*>\s*([^<]+)</label>"#,
    )
    .unwrap();
    let labelled: Vec<(String, String)> = re
        .captures_iter(&page.html)
        .map(|c| (c[1].to_string(), c[2].trim().to_string()))
        .collect();
    assert_eq!(labelled.len(), 2, "labelled radios:\n{}", page.html);
    let (id, label) = labelled
        .iter()
        .find(|(_, l)| l.contains("al***@example.com"))
        .unwrap_or_else(|| panic!("no radio for the account address:\n{}", page.html));
    assert!(radios.contains(id), "{label}");
    let r = submit(&b, &page, &[("device", id)]).await;
    let page = next_page(&b, &r).await;
    assert!(has_input(&page.html, "code"), "{}", page.html);
    let mail = smtp.nth(sent + 1).await;
    assert_eq!(mail.rcpt_tos, vec!["alice@example.com"]);
    let r = submit(&b, &page, &[("code", &mail.code())]).await;
    assert_eq!(r.status, 303, "{}", r.describe());
    assert_eq!(r.location(), rd(&gw));
}

//! A generic provider's `mapping` builds its JSON payload with minijinja's `tojson`, so a site
//! title or message with a quote, a backslash or a newline still makes valid JSON.

use crate::harness::BOB_PW;
use crate::provider::SmsServer;
use crate::support::*;
use serde_json::json;

/// A title that breaks JSON built by pasting text between quotes.
const TITLE: &str = "Bob's \"Gate\" \\ North\nDesk";

#[tokio::test(flavor = "multi_thread")]
async fn a_tojson_mapping_makes_valid_json_from_a_site_title_with_quotes() {
    let sms = SmsServer::start().await;
    let url = format!("{}/send", sms.base());
    let mapping = r#"'''{"to": {{ device.phone_number|tojson }}, "text": {{ message|tojson }}, "otp": {{ token|tojson }}, "brand": {{ site_title|tojson }}}'''"#;
    let mut conf = Conf::new(generic_bearer(&url, "tok")).sms("mapping", mapping);
    // A JSON string is a valid TOML basic string (`\"`, `\\`, `\n`).
    let title = serde_json::to_string(TITLE).unwrap();
    conf.extra = format!("[ui]\nsite_title = {title}\n");
    let gw = conf.start().await;

    let (b, req) = start_enrol(&gw, &sms, "bob", BOB_PW, NUMBER).await;
    // `json()` panics if the body is not JSON.
    let v = req.json();
    let code = v["otp"]
        .as_str()
        .unwrap_or_else(|| panic!("no otp in the mapped payload: {v}"))
        .to_string();
    assert_eq!(
        v,
        json!({
            "to": NUMBER_E164,
            "text": format!("Your {TITLE} code is {code}"),
            "otp": code,
            "brand": TITLE,
        })
    );
    finish_with_code(&b, ENROL, &code).await;
}

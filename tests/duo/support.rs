//! The Duo tests' config (a setup flow, a sign-in flow validating Duo devices) and drivers for
//! both faces.
#![allow(dead_code)]

use crate::harness::*;
use crate::stand_in::{DuoStandIn, IKEY, SKEY};
use serde_json::{json, Value};

/// identify, password, Duo setup, login.
pub const SETUP: &str = "duo-setup";
/// identify, password, validation of Duo devices, login.
pub const SIGNIN: &str = "duo-signin";

pub const UNAVAILABLE: &str = "Duo is not answering right now. Wait a moment, then try again.";
pub const MISCONFIGURED: &str =
    "Duo could not be asked. Try again later or contact your administrator.";

/// The config for a stand-in at `host`, signing with `secret`.
pub fn toml(host: &str, secret: &str) -> String {
    format!(
        r#"
[[flows]]
slug = "{SETUP}"
title = "Add Duo"
designation = "authentication"
stages = ["identify", "password", "duo", "login"]

[[flows]]
slug = "{SIGNIN}"
title = "Sign in with Duo"
designation = "authentication"
stages = ["identify", "password", "validate", "login"]

[stages.duo]
kind = "authenticator_duo"
friendly_name = "Duo Mobile"
api_hostname = "{host}"
client_id = "{IKEY}"
client_secret = "{secret}"
timeout = 5
danger_plain_http = true

[stages.validate]
kind = "authenticator_validate"
device_classes = ["duo"]
not_configured_action = "deny"
max_allowed_attempts = 3
"#
    )
}

pub async fn gateway(duo: &DuoStandIn) -> Gateway {
    gateway_signing_with(duo, SKEY).await
}

pub async fn gateway_signing_with(duo: &DuoStandIn, secret: &str) -> Gateway {
    Gateway::start_with(Setup {
        extra_toml: toml(&duo.host(), secret),
        ..Setup::default()
    })
    .await
}

pub fn api(slug: &str) -> String {
    format!("/.portcullis/api/flow/{slug}")
}

pub fn html(slug: &str) -> String {
    format!("/.portcullis/flow/{slug}")
}

/// POSTs to the JSON flow; the answer must be 200 JSON.
pub async fn post(b: &Browser, slug: &str, body: Value) -> Value {
    let r = b.post_json(&b.url(&api(slug)), &body).await;
    assert_eq!(r.status, 200, "POST {body} to {slug}: {}", r.describe());
    r.json()
}

/// POSTs and returns the whole response (the last step sets the session cookie).
pub async fn post_resp(b: &Browser, slug: &str, body: Value) -> Resp {
    b.post_json(&b.url(&api(slug)), &body).await
}

/// Identification and password through the JSON face; returns the next challenge.
pub async fn past_password(b: &Browser, slug: &str, uid: &str, pw: &str) -> Value {
    let r = b.get_json(&b.url(&api(slug))).await;
    assert_eq!(r.json()["component"], "identification");
    post(b, slug, json!({ "uid": uid })).await;
    post(b, slug, json!({ "password": pw })).await
}

pub fn strings(v: &Value, key: &str) -> Vec<String> {
    v[key]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| e.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

pub fn action_names(v: &Value) -> Vec<String> {
    v["actions"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| e["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

pub fn assert_signed_in(r: &Resp) {
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(r.json()["component"], "redirect", "{}", r.describe());
    assert!(
        r.set_cookie_value(SESSION_COOKIE).is_some(),
        "{}",
        r.describe()
    );
}

/// Enrols `uid` through the JSON face: QR shown, activation checked too early, then done.
pub async fn enrol_json(gw: &Gateway, duo: &DuoStandIn, uid: &str, pw: &str) {
    let b = gw.browser();
    let v = past_password(&b, SETUP, uid, pw).await;
    assert_eq!(v["component"], "authenticator_duo", "{v}");
    assert_eq!(v["qr"], duo.activation_code(uid), "{v}");
    duo.activate(uid);
    let r = post_resp(&b, SETUP, json!({ "action": "duo_activated" })).await;
    assert_signed_in(&r);
}

/// The error lines of an HTML flow page.
pub fn page_errors(html: &str) -> Vec<String> {
    let block = regex::Regex::new(r#"(?is)<div class="errors"[^>]*>(.*?)</div>"#).unwrap();
    let p = regex::Regex::new(r"(?is)<p>(.*?)</p>").unwrap();
    match block.captures(html) {
        Some(c) => p
            .captures_iter(&c[1])
            .map(|m| m[1].trim().replace("&#x27;", "'").replace("&amp;", "&"))
            .collect(),
        None => Vec::new(),
    }
}

/// Whether the page has `<button name="action" value="VALUE">`.
pub fn has_button(html: &str, value: &str) -> bool {
    let re = regex::Regex::new(r#"(?is)<button\b[^>]*>"#).unwrap();
    let found = re.find_iter(html).any(|m| {
        let t = m.as_str();
        t.contains(r#"name="action""#) && t.contains(&format!(r#"value="{value}""#))
    });
    found
}

/// Identification and password through the HTML forms of `slug`; returns the next page.
pub async fn html_past_password(b: &Browser, slug: &str, uid: &str, pw: &str) -> FormPage {
    let first = b.get_html(&b.url(&html(slug))).await;
    let page = form_page(&first);
    let r = submit(b, &page, &[("uid", uid)]).await;
    let page = next_page(b, &r).await;
    let r = submit(b, &page, &[("password", pw)]).await;
    html_after(b, &r).await
}

/// The page after a form post: the 200 page with errors, or the page the 303 leads to.
pub async fn html_after(b: &Browser, r: &Resp) -> FormPage {
    if r.status == 200 {
        return form_page(r);
    }
    next_page(b, r).await
}

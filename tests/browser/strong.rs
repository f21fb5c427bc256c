//! The authenticator-app and recovery-code pages in a real browser: the QR code renders (an
//! inline SVG under the strict CSP, no script), a person types the code their app would show,
//! and recovery codes are shown once. Screenshots go to `target/screenshots/`.

use super::chrome::{Chrome, Options};
use super::harness::*;
use portcullis::flow::totp::{self, Algorithm, Params};
use serde_json::{json, Value};

const STRONG_APP: &str = "strong.test";

fn setup() -> Setup {
    Setup {
        extra_toml: format!(
            r#"
[[apps]]
name = "strong"
hosts = ["{STRONG_APP}"]
upstream = "builtin:whoami"
flow = "strong"

[[flows]]
slug = "strong"
title = "Sign in"
designation = "authentication"
stages = ["identify", "password", "second", "login"]

[stages.second]
kind = "authenticator_validate"
device_classes = ["totp", "static"]
not_configured_action = "configure"
configuration_stages = ["app", "codes"]

[stages.app]
kind = "authenticator_totp"

[stages.codes]
kind = "authenticator_static"
"#
        ),
        ..Setup::default()
    }
}

async fn script(chrome: &Chrome, js: &str) -> Value {
    chrome
        .cmd(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({ "script": js, "args": [] })),
        )
        .await
}

fn code_now(secret: &str, offset: i64) -> String {
    let raw = data_encoding::BASE32_NOPAD
        .decode(secret.as_bytes())
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let p = Params {
        digits: 6,
        period: 30,
        algorithm: Algorithm::Sha1,
    };
    totp::code(
        &raw,
        totp::step(now, 30).checked_add_signed(offset).unwrap(),
        &p,
    )
}

async fn password_step(chrome: &Chrome) {
    chrome.go(&format!("http://{STRONG_APP}/")).await;
    chrome.type_into("#f-uid", "alice").await;
    chrome.click("button[type=submit]").await;
    chrome
        .wait_text(|t| t.contains("Signing in as alice"))
        .await;
    chrome.type_into("#f-password", ALICE_PW).await;
    chrome.click("button[type=submit]").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_person_sets_up_an_authenticator_app_from_the_qr_page_then_signs_in_with_it() {
    let gw = Gateway::start_with(setup()).await;
    let chrome = Chrome::start_with(Options::mapping(&[(STRONG_APP, gw.port)])).await;
    password_step(&chrome).await;
    chrome
        .wait_text(|t| t.contains("Authenticator app") && t.contains("Recovery codes"))
        .await;
    // The first choice (the app) is checked already.
    chrome.click("button[type=submit]").await;
    chrome
        .wait_text(|t| t.contains("Set up your authenticator app"))
        .await;
    let qr = script(
        &chrome,
        "const s = document.querySelector('figure.totp svg'); const r = s && s.getBoundingClientRect();
         return { w: r ? r.width : 0, h: r ? r.height : 0, paths: s ? s.querySelectorAll('path').length : 0,
                  key: (document.querySelector('code.secret') || {}).textContent || '',
                  scripts: document.scripts.length }",
    )
    .await;
    chrome.screenshot("totp-setup").await;
    let html = script(&chrome, "return document.documentElement.outerHTML").await;
    assert!(
        qr["w"].as_f64().unwrap_or(0.0) >= 150.0,
        "the QR code renders: {qr}\n{html}"
    );
    assert_eq!(qr["w"], qr["h"], "square: {qr}");
    assert!(qr["paths"].as_u64().unwrap_or(0) >= 1, "{qr}");
    assert_eq!(qr["scripts"], 0, "no script on the page: {qr}");
    let key = qr["key"].as_str().unwrap().to_string();
    assert_eq!(key.len(), 32, "{qr}");
    chrome.screenshot("totp-setup").await;

    chrome.type_into("#f-code", &code_now(&key, 0)).await;
    chrome.click("button[type=submit]").await;
    chrome.wait_text(|t| t.contains("remote-user")).await;

    // A second browser signs in with the app's next code.
    let other = Chrome::start_with(Options::mapping(&[(STRONG_APP, gw.port)])).await;
    password_step(&other).await;
    other
        .wait_text(|t| t.contains("Enter the code from your authenticator app"))
        .await;
    other.screenshot("totp-validate").await;
    other.type_into("#f-code", &code_now(&key, 1)).await;
    other.click("button[type=submit]").await;
    let page = other.wait_text(|t| t.contains("remote-user")).await;
    assert!(page.contains("alice"), "{page}");
}

#[tokio::test(flavor = "multi_thread")]
async fn recovery_codes_are_shown_once_as_a_list_and_then_sign_in() {
    let gw = Gateway::start_with(setup()).await;
    let chrome = Chrome::start_with(Options::mapping(&[(STRONG_APP, gw.port)])).await;
    password_step(&chrome).await;
    chrome.wait_text(|t| t.contains("Recovery codes")).await;
    chrome.click("input[value=codes]").await;
    chrome.click("button[type=submit]").await;
    chrome
        .wait_text(|t| t.contains("Save your recovery codes"))
        .await;
    let codes = script(
        &chrome,
        "return [...document.querySelectorAll('ol.recovery-codes code')].map(c => c.textContent)",
    )
    .await;
    let codes: Vec<String> = serde_json::from_value(codes).unwrap();
    assert_eq!(codes.len(), 10);
    chrome.screenshot("recovery-codes").await;
    chrome.click("button[type=submit]").await;
    chrome.wait_text(|t| t.contains("remote-user")).await;

    let other = Chrome::start_with(Options::mapping(&[(STRONG_APP, gw.port)])).await;
    password_step(&other).await;
    other.wait_text(|t| t.contains("Use a recovery code")).await;
    other.type_into("#f-code", &codes[3]).await;
    other.click("button[type=submit]").await;
    let page = other
        .wait_text(|t| t.contains("9 recovery codes left"))
        .await;
    assert!(page.contains("9 recovery codes left"), "{page}");
    other.click("button[type=submit]").await;
    other.wait_text(|t| t.contains("remote-user")).await;
}

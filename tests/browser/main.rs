//! The sign-in pages in a real browser: headless Chromium driven over WebDriver (chromedriver),
//! against the real gateway binary and a real upstream. It proves what the HTTP-level tests
//! cannot: the forms work as a person uses them (labels, focus, submit buttons, redirects,
//! cookies) without any JavaScript of ours.

// A test crate has no API: `pub` in its modules only shares helpers between them.
#![allow(unreachable_pub)]
// Set-up helpers outside `#[test]` functions unwrap on purpose: a failed set-up is a failed test.
#![allow(clippy::unwrap_used)]

#[path = "../e2e/harness.rs"]
mod harness;

mod chrome;
mod pages;
mod strong;

#[path = "../forward_auth/support.rs"]
mod support;

#[path = "../forward_auth/fronts.rs"]
mod fronts;

mod modes;

mod passkeys;

mod links;
#[path = "../email/mail.rs"]
mod mail;
#[path = "../sms/provider.rs"]
mod provider;
mod replicas;
#[path = "../email/smtp.rs"]
mod smtp;
mod story;

use chrome::Chrome;
use harness::*;
use serde_json::Value;

/// Types `text` into the field `css` and submits its form.
async fn submit(chrome: &Chrome, css: &str, text: &str) {
    chrome.type_into(css, text).await;
    chrome.click("button[type=submit]").await;
}

/// Waits until the browser is on the app at `path` (path and query) and asserts the app was
/// told alice is signed in.
async fn assert_lands_as_alice(chrome: &Chrome, path: &str) {
    let at = chrome.wait_url(|u| u.ends_with(path)).await;
    assert!(at.ends_with(path), "landed on the page asked for: {at}");
    let page = chrome.wait_text(|t| t.contains("remote-user")).await;
    let echo: Value = serde_json::from_str(&page).expect("the upstream's JSON");
    assert_eq!(echo["headers"]["remote-user"], "alice", "{echo}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_person_signs_in_with_the_forms_and_lands_on_the_page_they_asked_for() {
    let gw = Gateway::start().await;
    let chrome = Chrome::start(gw.port).await;

    chrome
        .go(&format!("http://{APP}/reports/q3?year=2026"))
        .await;
    let at = chrome.url().await;
    assert!(
        at.contains("/.portcullis/flow/"),
        "sent to the sign-in page, got {at}"
    );
    assert_eq!(
        chrome.focused_id().await,
        "f-uid",
        "the first field has focus"
    );
    chrome.screenshot("signin-identification").await;

    submit(&chrome, "#f-uid", "alice").await;
    let page = chrome
        .wait_text(|t| t.contains("Signing in as alice"))
        .await;
    assert!(page.contains("Signing in as alice"), "{page}");
    assert_eq!(chrome.focused_id().await, "f-password");

    submit(&chrome, "#f-password", WRONG_PW).await;
    let page = chrome.wait_text(|t| t.contains(INVALID_MSG)).await;
    assert!(
        page.contains(INVALID_MSG),
        "wrong password is shown: {page}"
    );
    chrome.screenshot("signin-wrong-password").await;

    submit(&chrome, "#f-password", ALICE_PW).await;
    assert_lands_as_alice(&chrome, "/reports/q3?year=2026").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sign_out_confirm_page_ends_the_session_in_the_browser() {
    let gw = Gateway::start().await;
    let chrome = Chrome::start(gw.port).await;
    chrome.go(&format!("http://{APP}/")).await;
    submit(&chrome, "#f-uid", "alice").await;
    submit(&chrome, "#f-password", ALICE_PW).await;
    let at = chrome.wait_url(|u| !u.contains("/.portcullis/")).await;
    assert!(!at.contains("/.portcullis/"), "{at}");

    chrome.go(&format!("http://{APP}/.portcullis/logout")).await;
    let page = chrome.wait_text(|t| t.contains("signed in as alice")).await;
    assert!(page.contains("signed in as alice"), "{page}");
    chrome.click("button[type=submit]").await;
    let page = chrome
        .wait_text(|t| t.contains("You have signed out"))
        .await;
    assert!(page.contains("You have signed out"), "{page}");

    chrome.go(&format!("http://{APP}/reports")).await;
    assert!(
        chrome
            .wait_url(|u| u.contains("/.portcullis/flow/"))
            .await
            .contains("/.portcullis/flow/"),
        "signed out: back to sign-in"
    );
}

/// Empties a text field (Back may bring the page back with what was typed in it).
async fn clear(chrome: &Chrome, css: &str) {
    let e = chrome.find(css).await;
    chrome
        .cmd(
            reqwest::Method::POST,
            &format!("/element/{e}/clear"),
            Some(serde_json::json!({})),
        )
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn back_after_a_mistyped_username_lets_the_person_sign_in_as_themselves() {
    let gw = Gateway::start().await;
    let chrome = Chrome::start(gw.port).await;
    chrome.go(&format!("http://{APP}/notes/today")).await;
    submit(&chrome, "#f-uid", "bob").await;
    let page = chrome.wait_text(|t| t.contains("Signing in as bob")).await;
    assert!(page.contains("Signing in as bob"), "{page}");

    // The wrong name. The browser's Back shows either the identification form again (from its
    // back/forward cache) or, when it fetches the page anew, the step the sign-in is at, which
    // offers "Not you? Start over". Either way the person gets back to the name, never to
    // "Out of step".
    chrome
        .cmd(reqwest::Method::POST, "/back", Some(serde_json::json!({})))
        .await;
    let page = chrome
        .wait_text(|t| !t.is_empty() && (t.contains("Not you?") || !t.contains("bob")))
        .await;
    assert!(!page.contains("Out of step"), "{page}");
    if page.contains("Signing in as bob") {
        assert!(page.contains("Not you? Start over"), "{page}");
        chrome.click("button[value=start_over]").await;
        chrome.wait_text(|t| !t.contains("bob")).await;
    } else {
        clear(&chrome, "#f-uid").await;
    }
    submit(&chrome, "#f-uid", "alice").await;
    let page = chrome
        .wait_text(|t| t.contains("Signing in as alice"))
        .await;
    assert!(
        page.contains("Signing in as alice") && !page.contains("Out of step"),
        "the sign-in goes on as alice: {page}"
    );
    assert!(
        gw.logs().contains("sign-in started over"),
        "the execution for bob was ended, not continued"
    );
    submit(&chrome, "#f-password", ALICE_PW).await;
    assert_lands_as_alice(&chrome, "/notes/today").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn not_you_start_over_takes_the_person_back_to_the_name() {
    let gw = Gateway::start().await;
    let chrome = Chrome::start(gw.port).await;
    chrome.go(&format!("http://{APP}/notes/today")).await;
    submit(&chrome, "#f-uid", "bob").await;
    let page = chrome.wait_text(|t| t.contains("Signing in as bob")).await;
    assert!(page.contains("Not you? Start over"), "{page}");
    chrome.screenshot("signin-password-start-over").await;

    chrome.click("button[value=start_over]").await;
    let page = chrome
        .wait_text(|t| !t.contains("Signing in as bob") && !t.is_empty())
        .await;
    assert!(!page.contains("bob"), "afresh: {page}");
    assert_eq!(chrome.focused_id().await, "f-uid");
    submit(&chrome, "#f-uid", "alice").await;
    chrome
        .wait_text(|t| t.contains("Signing in as alice"))
        .await;
    submit(&chrome, "#f-password", ALICE_PW).await;
    assert_lands_as_alice(&chrome, "/notes/today").await;
}

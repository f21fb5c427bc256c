//! The sign-in pages in a real browser: headless Chromium driven over WebDriver (chromedriver),
//! against the real gateway binary and a real upstream. It proves what the HTTP-level tests
//! cannot: the forms work as a person uses them (labels, focus, submit buttons, redirects,
//! cookies) without any JavaScript of ours.

#[path = "../e2e/harness.rs"]
mod harness;

mod chrome;
mod pages;

use chrome::Chrome;
use harness::*;
use serde_json::Value;

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

    chrome.type_into("#f-uid", "alice").await;
    chrome.click("button[type=submit]").await;
    let page = chrome
        .wait_text(|t| t.contains("Signing in as alice"))
        .await;
    assert!(page.contains("Signing in as alice"), "{page}");
    assert_eq!(chrome.focused_id().await, "f-password");

    chrome.type_into("#f-password", WRONG_PW).await;
    chrome.click("button[type=submit]").await;
    let page = chrome.wait_text(|t| t.contains(INVALID_MSG)).await;
    assert!(
        page.contains(INVALID_MSG),
        "wrong password is shown: {page}"
    );
    chrome.screenshot("signin-wrong-password").await;

    chrome.type_into("#f-password", ALICE_PW).await;
    chrome.click("button[type=submit]").await;
    let at = chrome
        .wait_url(|u| u.ends_with("/reports/q3?year=2026"))
        .await;
    assert!(
        at.ends_with("/reports/q3?year=2026"),
        "landed on the page asked for: {at}"
    );
    let page = chrome.wait_text(|t| t.contains("remote-user")).await;
    let echo: Value = serde_json::from_str(&page).expect("the upstream's JSON");
    assert_eq!(echo["headers"]["remote-user"], "alice", "{echo}");
}

#[tokio::test(flavor = "multi_thread")]
async fn sign_out_confirm_page_ends_the_session_in_the_browser() {
    let gw = Gateway::start().await;
    let chrome = Chrome::start(gw.port).await;
    chrome.go(&format!("http://{APP}/")).await;
    chrome.type_into("#f-uid", "alice").await;
    chrome.click("button[type=submit]").await;
    chrome.type_into("#f-password", ALICE_PW).await;
    chrome.click("button[type=submit]").await;
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

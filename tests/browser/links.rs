//! Magic links in real browsers: a link opened in the browser that asked continues the
//! sign-in at once; opened on another browser (a phone), it shows who asked and signs in only
//! the browser that asked, after an explicit approval. Screenshots of the approval pages at
//! 390 px and 1280 px go to `target/screenshots/story/`.

use super::chrome::{Chrome, Options};
use super::harness::*;
use super::smtp::{SmtpOpts, SmtpServer};
use super::story::Shots;
use std::time::{Duration, Instant};

const BY_LINK: &str = "by-link";

async fn gateway(smtp: &SmtpServer) -> Gateway {
    Gateway::start_with(Setup {
        extra_toml: format!(
            r#"
[email]
{email}

[[flows]]
slug = "{BY_LINK}"
title = "Sign in"
designation = "authentication"
stages = ["identify", "password", "mail", "login"]

[stages.mail]
kind = "authenticator_email"
mode = "link"
friendly_name = "Work email"
"#,
            email = smtp.email_toml()
        ),
        ..Setup::default()
    })
    .await
}

async fn browser(gw: &Gateway) -> Chrome {
    let mut opts = Options::mapping(&[(APP, gw.port)]);
    opts.window = (1280, 900);
    Chrome::start_with(opts).await
}

/// Starts alice's sign-in on `chrome` up to the page that waits for the link.
async fn wait_for_link(chrome: &Chrome, rd: &str) {
    chrome
        .go(&format!(
            "http://{APP}/.portcullis/flow/{BY_LINK}?rd={}",
            pct(&format!("http://{APP}{rd}"))
        ))
        .await;
    chrome.type_into("#f-uid", "alice").await;
    chrome.click("button[type=submit]").await;
    chrome
        .wait_text(|t| t.contains("Signing in as alice"))
        .await;
    chrome.type_into("#f-password", ALICE_PW).await;
    chrome.click("button[type=submit]").await;
    let page = chrome.wait_text(|t| t.contains("Check your email")).await;
    assert!(page.contains("We sent a link"), "{page}");
}

/// Waits (up to 15 s: the waiting page looks again every 3 s) until `chrome` is at `path`.
async fn lands_on(chrome: &Chrome, path: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let at = chrome.url().await;
        if at.ends_with(path) || Instant::now() > deadline {
            return at;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_link_opened_on_a_phone_shows_who_asked_and_signs_in_only_the_laptop() {
    let smtp = SmtpServer::start(SmtpOpts::plain()).await;
    let gw = gateway(&smtp).await;
    let shots = Shots::new("links");
    let laptop = browser(&gw).await;
    wait_for_link(&laptop, "/reports").await;
    shots.take(&laptop, "link-waiting").await;
    let link = smtp.nth(1).await.link();

    // On the phone: who asked, and a choice; nothing signs the phone in.
    let phone = browser(&gw).await;
    phone.go(&link).await;
    let page = phone.wait_text(|t| t.contains("Was this you?")).await;
    for shown in ["Headless Chrome", "on Linux", "127.0.0.1", "just now"] {
        assert!(page.contains(shown), "{shown:?} not shown:\n{page}");
    }
    shots.take(&phone, "link-was-this-you").await;
    assert!(
        !laptop.url().await.ends_with("/reports"),
        "opening the link elsewhere passes nothing"
    );
    phone.click("button[value=approve]").await;
    let page = phone.wait_text(|t| t.contains("Sign-in approved")).await;
    assert!(page.contains("This browser is not signed in"), "{page}");
    shots.take(&phone, "link-approved").await;

    // The laptop's waiting page moves on by itself.
    let at = lands_on(&laptop, "/reports").await;
    assert!(at.ends_with("/reports"), "the laptop is signed in: {at}");
    let page = laptop.wait_text(|t| t.contains("remote-user")).await;
    assert!(page.contains("alice"), "{page}");

    // The phone is not.
    phone.go(&format!("http://{APP}/reports")).await;
    let at = phone.wait_url(|u| u.contains("/.portcullis/flow/")).await;
    assert!(
        at.contains("/.portcullis/flow/"),
        "the phone has no session: {at}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_link_opened_in_the_browser_that_asked_continues_at_once_and_a_declined_one_is_spent() {
    let smtp = SmtpServer::start(SmtpOpts::plain()).await;
    let gw = gateway(&smtp).await;
    let laptop = browser(&gw).await;
    wait_for_link(&laptop, "/notes").await;
    laptop.go(&smtp.nth(1).await.link()).await;
    let at = laptop.wait_url(|u| u.ends_with("/notes")).await;
    assert!(
        at.ends_with("/notes"),
        "continued at once, no question asked: {at}"
    );

    // A second sign-in, on another laptop, declined from the phone: spent, nobody signed in.
    let other = browser(&gw).await;
    wait_for_link(&other, "/elsewhere").await;
    let link = smtp.nth(2).await.link();
    let phone = browser(&gw).await;
    phone.go(&link).await;
    phone.wait_text(|t| t.contains("Was this you?")).await;
    phone.click("button[value=decline]").await;
    let page = phone.wait_text(|t| t.contains("Sign-in declined")).await;
    assert!(page.contains("Nobody can use this link now"), "{page}");
    phone.go(&link).await;
    let page = phone.wait_text(|t| t.contains("Link not valid")).await;
    assert!(page.contains("expired or was already used"), "{page}");
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(
        !other.url().await.ends_with("/elsewhere"),
        "a declined link signs nobody in"
    );
}

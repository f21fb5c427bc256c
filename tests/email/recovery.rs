//! The `email` (verification) stage and recovery flows against the real SMTP stand-in: mail
//! goes through the persisted outbox, so a server that is down or stalls never holds the page,
//! the message goes out once the server is back (also after a `kill -9` of the gateway), and
//! never twice; codes and links work once; an unknown account reads the same.

use crate::harness::{has_input, next_page, pct, submit, Browser, SESSION_COOKIE};
use crate::smtp::{Silent, SmtpOpts, SmtpServer};
use crate::support::*;
use portcullis::flow::totp::{self, Algorithm, Params};
use serde_json::json;
use std::time::{Duration, Instant};

const RECOVERY: &str = "recovery";
const RECOVERY_LINK: &str = "recovery-link";
const FORGOT: &str = "forgot";
const ON_ITS_WAY: &str = "A code is on its way to your email address.";

const EXTRA: &str = r#"
[[flows]]
slug = "recovery"
title = "Reset your password"
designation = "recovery"
stages = ["identify_r", "verify", "login"]

[[flows]]
slug = "recovery-link"
title = "Reset your password"
designation = "recovery"
stages = ["identify_r", "verify_link", "login"]

[[flows]]
slug = "forgot"
title = "Sign in"
designation = "authentication"
stages = ["identify_r", "password_r", "login"]

[stages.identify_r]
kind = "identification"
recovery_flow = "recovery"

[stages.password_r]
kind = "password"
recovery_flow = "recovery"

[stages.verify]
kind = "email"
mode = "code"
code_length = 6
subject = "Reset your password"

[stages.verify_link]
kind = "email"

[[flows]]
slug = "reset"
title = "Reset your password"
designation = "recovery"
stages = ["identify_r", "verify", "second_r", "new_password", "write", "login"]

[[flows]]
slug = "add-app"
title = "Add an authenticator app"
designation = "authentication"
stages = ["identify_r", "password_r", "app", "login"]

[stages.second_r]
kind = "authenticator_validate"
device_classes = ["totp", "static"]
not_configured_action = "skip"

[stages.app]
kind = "authenticator_totp"

[stages.new_password]
kind = "prompt"
fields = [{ key = "password", label = "New password", type = "password" }]
validation_policies = ["new_password"]

[stages.write]
kind = "user_write"
user_creation_mode = "never_create"

[policies.new_password]
kind = "password"
length_min = 12
check_zxcvbn = true
message = "Choose a stronger password."
"#;

/// A loopback port nothing listens on (yet).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

/// `[email]` keys for a server on `port` that may not be there.
fn email_at(port: u16) -> String {
    format!(
        "host = \"127.0.0.1\"\nport = {port}\ntimeout = 3\nfrom = \"portcullis@gateway.test\"\n"
    )
}

fn spec(email: String) -> Spec {
    Spec {
        extra: EXTRA.into(),
        ..Spec::new(email)
    }
}

/// Starts the JSON recovery flow and identifies as `uid`; returns the challenge and how long
/// the identification took.
async fn recover(gw: &Gw, b: &Browser, slug: &str, uid: &str) -> (serde_json::Value, Duration) {
    let r = b
        .get_json(&format!("{}?rd={}", api(slug), pct(&rd(gw))))
        .await;
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(r.json()["component"], "identification");
    let started = Instant::now();
    let v = post(b, slug, json!({ "uid": uid })).await;
    (v, started.elapsed())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_code_is_queued_while_smtp_is_down_and_delivered_by_the_outbox_when_it_is_back() {
    let port = free_port();
    let gw = Gw::start(spec(email_at(port))).await;
    let b = gw.browser();
    let (v, took) = recover(&gw, &b, RECOVERY, "alice").await;
    assert_code_challenge(&v, "email");
    assert!(info(&v).iter().any(|l| l.starts_with(ON_ITS_WAY)), "{v}");
    assert!(took < Duration::from_secs(2), "the page waited {took:?}");
    // The server comes up; the outbox's next retry delivers.
    let smtp = SmtpServer::start(SmtpOpts {
        port: Some(port),
        ..SmtpOpts::plain()
    })
    .await;
    let mail = smtp.nth(1).await;
    assert_eq!(mail.rcpt_tos, ["alice@example.com"]);
    assert_eq!(mail.subject(), "Reset your password");
    let code = mail.code();
    assert!(gw.logs().contains("will retry"), "{}", gw.logs());
    assert!(!gw.logs().contains(&code), "the code is never logged");
    let r = post_resp(&b, RECOVERY, json!({ "code": code })).await;
    let token = assert_signed_in(&gw, &r);
    assert_eq!(amr(&token), ["identification", "email"]);
    // Delivered once, and the code works once.
    tokio::time::sleep(Duration::from_secs(3)).await;
    smtp.assert_no_more_than(1, "after delivery").await;
    let other = gw.browser();
    let _ = recover(&gw, &other, RECOVERY, "alice").await;
    let v = post(&other, RECOVERY, json!({ "code": code })).await;
    assert_eq!(errors(&v), [WRONG_CODE], "a replayed code: {v}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stalling_smtp_server_never_holds_the_page_and_the_queue_delivers_afterwards() {
    let silent = Silent::start().await;
    let port = silent.port;
    let gw = Gw::start(spec(email_at(port))).await;
    let b = gw.browser();
    // HTML face: the page answers at once and says the message is on its way.
    let first = html_page(&b, &format!("{}?rd={}", html_flow(RECOVERY), pct(&rd(&gw)))).await;
    let started = Instant::now();
    let r = submit(&b, &first, &[("uid", "alice")]).await;
    let page = next_page(&b, &r).await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(has_input(&page.html, "code"), "{}", page.html);
    assert!(shows(&page.html, ON_ITS_WAY), "{}", page.html);
    // The stall ends in the server's timeout; the server is replaced by one that answers.
    let deadline = Instant::now() + Duration::from_secs(10);
    while silent.accepted() == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        silent.accepted() > 0,
        "the outbox tried the stalling server"
    );
    drop(silent);
    let smtp = SmtpServer::start(SmtpOpts {
        port: Some(port),
        ..SmtpOpts::plain()
    })
    .await;
    let code = smtp.nth(1).await.code();
    let r = submit(&b, &page, &[("code", code.as_str())]).await;
    assert_eq!(r.status, 303, "{}", r.describe());
    assert_eq!(r.header("location"), Some(rd(&gw)));
    assert!(r.set_cookie_value(crate::harness::SESSION_COOKIE).is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_message_queued_before_a_kill_9_is_delivered_after_the_restart_exactly_once() {
    let port = free_port();
    let mut gw = Gw::start(spec(email_at(port))).await;
    let b = gw.browser();
    let (v, _) = recover(&gw, &b, RECOVERY, "alice").await;
    assert_code_challenge(&v, "email");
    gw.stop();
    let smtp = SmtpServer::start(SmtpOpts {
        port: Some(port),
        ..SmtpOpts::plain()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    smtp.assert_no_more_than(0, "while the gateway is down")
        .await;
    gw.launch().await;
    let code = smtp.nth(1).await.code();
    // The sign-in itself survived the restart too.
    let r = post_resp(&b, RECOVERY, json!({ "code": code })).await;
    assert_signed_in(&gw, &r);
    // Restarted again: what was delivered is never sent again.
    gw.stop();
    gw.launch().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    smtp.assert_no_more_than(1, "after a second restart").await;
}

/// Killed in the middle of a send (the server took the connection and said nothing yet): the
/// message's claim died with the gateway, so the restarted one sends it at once, not after the
/// two-minute lease that guards a live sender.
#[tokio::test(flavor = "multi_thread")]
async fn a_message_being_sent_at_a_kill_9_is_delivered_at_once_after_the_restart() {
    let silent = Silent::start().await;
    let port = silent.port;
    let mut gw = Gw::start(spec(email_at(port))).await;
    let b = gw.browser();
    let (v, _) = recover(&gw, &b, RECOVERY, "alice").await;
    assert_code_challenge(&v, "email");
    let deadline = Instant::now() + Duration::from_secs(10);
    while silent.accepted() == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(silent.accepted() > 0, "the outbox was sending");
    gw.stop();
    drop(silent);
    let smtp = SmtpServer::start(SmtpOpts {
        port: Some(port),
        ..SmtpOpts::plain()
    })
    .await;
    gw.launch().await;
    let code = smtp.nth(1).await.code();
    let r = post_resp(&b, RECOVERY, json!({ "code": code })).await;
    assert_signed_in(&gw, &r);
    tokio::time::sleep(Duration::from_secs(2)).await;
    smtp.assert_no_more_than(1, "after the restart").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_or_disabled_account_sees_the_same_check_your_mail_page_and_nothing_is_sent() {
    let smtp = SmtpServer::start(SmtpOpts::plain()).await;
    let gw = Gw::start(spec(smtp.email_toml())).await;
    let (real, _) = recover(&gw, &gw.browser(), RECOVERY, "alice").await;
    smtp.nth(1).await;
    for uid in ["nobody", "nobody@example.com", "dave", "carol"] {
        let (v, _) = recover(&gw, &gw.browser(), RECOVERY, uid).await;
        assert_eq!(v, real, "{uid}");
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    smtp.assert_no_more_than(1, "decoys").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_recovery_link_works_once_and_invalid_links_end_the_waiting_page() {
    let smtp = SmtpServer::start(SmtpOpts::plain()).await;
    let gw = Gw::start(spec(smtp.email_toml())).await;
    let b = gw.browser();
    let (v, _) = recover(&gw, &b, RECOVERY_LINK, "alice").await;
    assert!(field_names(&v).is_empty(), "{v}");
    assert_eq!(v["poll"], 3, "{v}");
    let mail = smtp.nth(1).await;
    let token = mail.link_token();
    // Opened in the browser that asked: it continues at once.
    let r = b.get_html(&mail.link()).await;
    assert_eq!(r.status, 303, "same browser continues: {}", r.describe());
    let r = b.get_json(&api(RECOVERY_LINK)).await;
    assert_signed_in(&gw, &r);
    // Replayed: gone.
    let r = b.get_html(&mail.link()).await;
    assert_eq!(r.status, 410, "{}", r.describe());
    let r = b
        .post_form("/.portcullis/link", &[("token", token.as_str())])
        .await;
    assert_eq!(r.status, 410, "{}", r.describe());

    // max_allowed_attempts (3) counts links this browser opened that were not valid.
    let b = gw.browser();
    let _ = recover(&gw, &b, RECOVERY_LINK, "alice").await;
    for bad in ["x", token.as_str(), "also-not-a-link"] {
        let r = b.post_form("/.portcullis/link", &[("token", bad)]).await;
        assert_eq!(r.status, 410, "{bad}");
    }
    let r = b.get_json(&api(RECOVERY_LINK)).await;
    assert_ended(&r, TOO_MANY_ATTEMPTS);
}

#[tokio::test(flavor = "multi_thread")]
async fn identification_and_password_pages_offer_forgot_password() {
    let smtp = SmtpServer::start(SmtpOpts::plain()).await;
    let gw = Gw::start(spec(smtp.email_toml())).await;
    let b = gw.browser();
    let link = "<a href=\"/.portcullis/flow/recovery\">Forgot password?</a>";
    let first = html_page(&b, &format!("{}?rd={}", html_flow(FORGOT), pct(&rd(&gw)))).await;
    assert!(shows(&first.html, link), "{}", first.html);
    let r = submit(&b, &first, &[("uid", "alice")]).await;
    let page = next_page(&b, &r).await;
    assert!(has_input(&page.html, "password"), "{}", page.html);
    assert!(shows(&page.html, link), "{}", page.html);
    // JSON face: the same link, as data.
    let b = gw.browser();
    let v = get(&b, FORGOT).await;
    assert_eq!(v["links"][0]["href"], "/.portcullis/flow/recovery", "{v}");
    assert_eq!(v["links"][0]["label"], "Forgot password?", "{v}");
    // And the link leads to the recovery flow.
    let page = html_page(&b, &html_flow(RECOVERY)).await;
    assert!(shows(&page.html, "Reset your password"), "{}", page.html);
}

/// The TOTP code `offset` steps from now for the base32 `secret`.
fn totp_code(secret: &str, offset: i64) -> String {
    let raw = data_encoding::BASE32_NOPAD
        .decode(secret.as_bytes())
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let step = totp::step(now, 30).checked_add_signed(offset).unwrap();
    let six = Params {
        digits: 6,
        period: 30,
        algorithm: Algorithm::Sha1,
    };
    totp::code(&raw, step, &six)
}

#[tokio::test(flavor = "multi_thread")]
async fn recovery_asks_the_authenticator_app_checks_the_new_password_and_ends_every_old_session() {
    let smtp = SmtpServer::start(SmtpOpts::plain()).await;
    let gw = Gw::start(Spec {
        app_flow: FORGOT.into(),
        ..spec(smtp.email_toml())
    })
    .await;
    // Alice signs in and adds an authenticator app: this browser's session predates the
    // recovery.
    let old = gw.browser();
    let v = api_until_email(&gw, &old, "add-app", "alice").await;
    assert_eq!(v["component"], "password", "{v}");
    let v = post(&old, "add-app", json!({ "password": PW })).await;
    let secret = v["secret"]
        .as_str()
        .unwrap_or_else(|| panic!("{v}"))
        .to_string();
    let r = post_resp(&old, "add-app", json!({ "code": totp_code(&secret, 0) })).await;
    let old_token = assert_signed_in(&gw, &r);
    assert_session_is(&old, &gw, "alice").await;

    // She forgets her password: identification, the mailed code, then the app is asked for.
    let b = gw.browser();
    let (v, _) = recover(&gw, &b, "reset", "alice").await;
    assert_code_challenge(&v, "email");
    let code = smtp.nth(1).await.code();
    let v = post(&b, "reset", json!({ "code": code })).await;
    assert_eq!(
        v["component"], "authenticator_validate",
        "a fresh second factor: {v}"
    );
    let v = post(&b, "reset", json!({ "code": totp_code(&secret, 0) })).await;
    assert_eq!(
        errors(&v).len(),
        1,
        "the code already used at enrolment: {v}"
    );
    let v = post(&b, "reset", json!({ "code": totp_code(&secret, 1) })).await;
    assert_eq!(v["component"], "prompt", "{v}");
    // The new password is judged by the password policy.
    let v = post(&b, "reset", json!({ "password": "password" })).await;
    assert!(
        errors(&v)
            .iter()
            .any(|e| e.contains("Choose a stronger password.")),
        "{v}"
    );
    assert_eq!(v["component"], "prompt", "{v}");
    let new_pw = "Quartz-lantern-over-9-rivers";
    let r = post_resp(&b, "reset", json!({ "password": new_pw })).await;
    let token = assert_signed_in(&gw, &r);
    assert!(
        amr(&token).contains(&"email".to_string()),
        "{:?}",
        amr(&token)
    );

    // Every session from before is dead: the old cookie no longer opens the app.
    let r = old.get_json(&gw.url("/private")).await;
    assert_eq!(r.status, 401, "the old session: {}", r.describe());
    let stale = gw.browser();
    stale.add_cookie(&gw.url("/"), &format!("{SESSION_COOKIE}={old_token}"));
    let r = stale.get_json(&gw.url("/private")).await;
    assert_eq!(r.status, 401, "the old cookie elsewhere: {}", r.describe());
    // The old password is refused, the new one signs in.
    for (pw, ok) in [(PW, false), (new_pw, true)] {
        let c = gw.browser();
        let v = api_until_email(&gw, &c, FORGOT, "alice").await;
        assert_eq!(v["component"], "password", "{v}");
        let r = c.post_json(&api(FORGOT), &json!({ "password": pw })).await;
        assert_eq!(
            r.json()["component"] == "redirect",
            ok,
            "{pw}: {}",
            r.describe()
        );
    }
    assert!(
        !gw.logs().contains(new_pw),
        "the new password is never logged"
    );
    assert!(!gw.logs().contains(&code), "the code is never logged");
}

//! Link mode: the message carries a magic link bound to the browser that asked for it.
//! Opened in that browser (its flow cookie), the sign-in continues at once; opened anywhere
//! else, the page shows who asked and only an explicit, CSRF-protected approval lets the
//! browser that asked continue. The opening browser never gets a session from a link.
//! The phishing attacks on links are in [`crate::phish`].

use crate::harness::{
    has_input, input_value, next_page, pct, submit, Browser, Resp, SESSION_COOKIE,
};
use crate::smtp::{SmtpOpts, SmtpServer};
use crate::support::*;
use serde_json::json;

pub const LINK_CONFIRMED: &str = "Link confirmed";
pub const WAS_THIS_YOU: &str = "Was this you?";
pub const APPROVED: &str = "Sign-in approved";

pub fn link_spec(smtp: &SmtpServer) -> Spec {
    Spec::new(smtp.email_toml()).otp("mode = \"link\"")
}

/// Opens `link` in `b` (a browser other than the one that asked), reads the approval form
/// and posts `decision` with it.
pub async fn decide_in(b: &Browser, link: &str, decision: &str) -> Resp {
    let page = b.get_html(link).await;
    assert_eq!(page.status, 200, "{}", page.describe());
    assert!(page.body.contains(WAS_THIS_YOU), "{}", page.body);
    let token = input_value(&page.body, "token").expect("the form carries the token");
    let csrf = input_value(&page.body, "csrf_token").expect("the form carries a CSRF token");
    b.post_form(
        "/.portcullis/link",
        &[
            ("token", &token),
            ("csrf_token", &csrf),
            ("decision", decision),
        ],
    )
    .await
}

/// Approves `link` from `b`, another browser: it is told so and gets no session.
pub async fn approve_in(b: &Browser, link: &str) -> Resp {
    let r = decide_in(b, link, "approve").await;
    assert_eq!(r.status, 200, "{}", r.describe());
    assert!(r.body.contains(APPROVED), "{}", r.body);
    assert!(
        r.set_cookie_value(SESSION_COOKIE).is_none(),
        "the approving browser must not get a session: {}",
        r.describe()
    );
    r
}

/// Asserts a link challenge waiting for the link (no fields, resend offered).
fn assert_link_challenge(v: &serde_json::Value, component: &str) {
    assert_eq!(v["component"], component, "{v}");
    assert!(
        field_names(v).is_empty(),
        "link mode has nothing to type: {v}"
    );
    assert!(errors(v).is_empty(), "{v}");
    assert!(
        info(v)
            .iter()
            .any(|l| l.starts_with("We sent a link to the email address on your account.")),
        "info: {v}"
    );
    assert!(actions(v).contains(&"resend".to_string()), "{v}");
}

#[tokio::test(flavor = "multi_thread")]
async fn link_opened_in_the_same_browser_continues_the_sign_in() {
    let smtp = SmtpServer::start(SmtpOpts::plain()).await;
    let gw = Gw::start(link_spec(&smtp)).await;
    let b = gw.browser();

    let first = html_page(&b, &format!("{}?rd={}", html_flow(MFA_FLOW), pct(&rd(&gw)))).await;
    let r = submit(&b, &first, &[("uid", "alice")]).await;
    let page = next_page(&b, &r).await;
    let r = submit(&b, &page, &[("password", PW)]).await;
    let page = next_page(&b, &r).await;
    assert!(
        !has_input(&page.html, "code"),
        "no code box in link mode:\n{}",
        page.html
    );
    assert!(
        shows(
            &page.html,
            "We sent a link to the email address on your account."
        ),
        "{}",
        page.html
    );
    assert!(
        page.html.contains(r#"http-equiv="refresh""#),
        "the waiting page refreshes itself:\n{}",
        page.html
    );

    let mail = smtp.nth(1).await;
    assert_eq!(mail.rcpt_tos, vec!["alice@example.com"]);
    mail.assert_shape(SUBJECT);
    let link = mail.link();
    assert!(
        link.starts_with(&format!(
            "http://app.test:{}/.portcullis/link?token=",
            gw.port
        )),
        "link on the host the user signs in on: {link}"
    );
    assert!(
        mail.text().contains("2 minutes"),
        "link lifetime (link_ttl default 120 s) in the text:\n{}",
        mail.text()
    );

    // Opening the link in the browser that asked (same flow cookie) goes straight back to
    // the flow, no question asked...
    let r = b.get_html(&link).await;
    assert_eq!(r.status, 303, "{}", r.describe());
    assert!(r.set_cookie_value(SESSION_COOKIE).is_none());
    assert_eq!(r.location(), html_flow(MFA_FLOW), "{}", r.describe());
    // ...which completes the sign-in.
    let r = b.get_html(&r.location_absolute()).await;
    assert!(
        r.status == 302 || r.status == 303,
        "the flow completes: {}",
        r.describe()
    );
    assert_eq!(r.location(), rd(&gw));
    let token = r
        .set_cookie_value(SESSION_COOKIE)
        .unwrap_or_else(|| panic!("no session: {}", r.describe()));
    assert!(amr(&token).contains(&"password".to_string()) && amr(&token).len() >= 3);
    assert_session_is(&b, &gw, "alice").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn link_approved_in_another_browser_lets_the_original_client_continue() {
    let smtp = SmtpServer::start(SmtpOpts::plain()).await;
    let gw = Gw::start(link_spec(&smtp)).await;
    let b = gw.browser();
    let v = api_until_email(&gw, &b, MFA_FLOW, "alice").await;
    assert_link_challenge(&v, "authenticator_email");
    let mail = smtp.nth(1).await;

    // Before anyone confirms, polling keeps waiting.
    let v = get(&b, MFA_FLOW).await;
    assert_link_challenge(&v, "authenticator_email");

    let phone = gw.browser();
    approve_in(&phone, &mail.link()).await;
    let r = phone.get_json(&gw.url("/private")).await;
    assert_eq!(
        r.status,
        401,
        "the approving browser is not signed in: {}",
        r.describe()
    );

    // The original client polls and gets the redirect with its session.
    let r = b.get_json(&api(MFA_FLOW)).await;
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_signed_in(&gw, &r);
    assert_session_is(&b, &gw, "alice").await;

    // The device is saved: the next sign-in validates with a link to the same address.
    let b2 = gw.browser();
    let v = api_until_email(&gw, &b2, MFA_FLOW, "alice").await;
    assert_link_challenge(&v, "authenticator_validate");
    let mail2 = smtp.nth(2).await;
    assert_eq!(mail2.rcpt_tos, vec!["alice@example.com"]);
    approve_in(&gw.browser(), &mail2.link()).await;
    let r = b2.get_json(&api(MFA_FLOW)).await;
    assert_signed_in(&gw, &r);
}

#[tokio::test(flavor = "multi_thread")]
async fn link_get_elsewhere_does_not_consume_it_and_a_second_approval_is_gone() {
    let smtp = SmtpServer::start(SmtpOpts::plain()).await;
    let gw = Gw::start(link_spec(&smtp)).await;
    let b = gw.browser();
    api_until_email(&gw, &b, MFA_FLOW, "alice").await;
    let mail = smtp.nth(1).await;
    let link = mail.link();

    // A mail scanner prefetches the link, twice: nothing happens.
    let scanner = gw.browser();
    for _ in 0..2 {
        let r = scanner.get_html(&link).await;
        assert_eq!(
            r.status,
            200,
            "GET must not consume the link: {}",
            r.describe()
        );
    }
    let v = get(&b, MFA_FLOW).await;
    assert_link_challenge(&v, "authenticator_email");

    // The user then opens and approves it: works.
    let user = gw.browser();
    let page = user.get_html(&link).await;
    let csrf = input_value(&page.body, "csrf_token").expect("approval form");
    let approve = [
        ("token", mail.link_token()),
        ("csrf_token", csrf),
        ("decision", "approve".to_string()),
    ];
    let approve: Vec<(&str, &str)> = approve.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let r = user.post_form("/.portcullis/link", &approve).await;
    assert_eq!(r.status, 200, "{}", r.describe());

    // A second approval is refused, and so is opening it again.
    let r = user.post_form("/.portcullis/link", &approve).await;
    assert_eq!(r.status, 410, "second POST: {}", r.describe());
    let r = user.get_html(&link).await;
    assert_eq!(r.status, 410, "GET after confirmation: {}", r.describe());

    let r = b.get_json(&api(MFA_FLOW)).await;
    assert_signed_in(&gw, &r);
    // Used up: still gone after the sign-in consumed it, in every browser.
    let r = user.post_form("/.portcullis/link", &approve).await;
    assert_eq!(r.status, 410, "POST after use: {}", r.describe());
    let r = b.get_html(&link).await;
    assert_eq!(
        r.status,
        410,
        "GET in the browser that asked, after use: {}",
        r.describe()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn link_resend_invalidates_the_earlier_link() {
    let smtp = SmtpServer::start(SmtpOpts::plain()).await;
    let gw = Gw::start(link_spec(&smtp)).await;
    let b = gw.browser();
    api_until_email(&gw, &b, MFA_FLOW, "alice").await;
    let old = smtp.nth(1).await;
    let v = post(&b, MFA_FLOW, json!({ "action": "resend" })).await;
    assert!(
        info(&v)
            .iter()
            .any(|l| l == "A new link was sent. Links sent earlier no longer work."),
        "{v}"
    );
    let new = smtp.nth(2).await;
    assert_ne!(old.link_token(), new.link_token());

    let other = gw.browser();
    let r = other.get_html(&old.link()).await;
    assert_eq!(r.status, 410, "old link GET: {}", r.describe());
    let v = get(&b, MFA_FLOW).await;
    assert_eq!(v["component"], "authenticator_email", "still waiting: {v}");

    approve_in(&other, &new.link()).await;
    let r = b.get_json(&api(MFA_FLOW)).await;
    assert_signed_in(&gw, &r);
}

// A link's expiry after `link_ttl` is tested in-process with a manual clock, no sleep:
// `flow::tests::email::a_magic_link_opened_after_its_lifetime_is_gone` and
// `a_magic_link_opened_just_before_its_lifetime_ends_still_works`. That a link no longer
// pending answers 410 to GET and POST is proved above by `link_resend_invalidates_the_earlier_link`.

#[tokio::test(flavor = "multi_thread")]
async fn same_browser_without_continue_in_verify_window_gets_the_confirmed_page() {
    let smtp = SmtpServer::start(SmtpOpts::plain()).await;
    let gw = Gw::start(
        Spec::new(smtp.email_toml()).otp("mode = \"link\"\ncontinue_in_verify_window = false"),
    )
    .await;
    let b = gw.browser();
    api_until_email(&gw, &b, MFA_FLOW, "alice").await;
    let mail = smtp.nth(1).await;
    let r = b.get_html(&mail.link()).await;
    assert_eq!(r.status, 200, "{}", r.describe());
    assert!(r.body.contains(LINK_CONFIRMED), "{}", r.body);
    assert!(
        r.set_cookie_value(SESSION_COOKIE).is_none(),
        "{}",
        r.describe()
    );
    let r = b.get_json(&api(MFA_FLOW)).await;
    assert_signed_in(&gw, &r);
}

#[tokio::test(flavor = "multi_thread")]
async fn link_challenge_tells_api_clients_to_poll() {
    let smtp = SmtpServer::start(SmtpOpts::plain()).await;
    let gw = Gw::start(link_spec(&smtp)).await;
    let b = gw.browser();
    let v = api_until_email(&gw, &b, MFA_FLOW, "alice").await;
    assert_link_challenge(&v, "authenticator_email");
    assert_eq!(
        v["poll"], 3,
        "INTERFACE: the link challenge carries \"poll\": 3 for API clients: {v}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sign_in_on_an_unknown_host_is_refused_and_sends_no_link() {
    use crate::harness::EVIL;
    let smtp = SmtpServer::start(SmtpOpts::plain()).await;
    let mut spec = link_spec(&smtp);
    spec.app_flow = EMAIL_ONLY.into();
    let gw = Gw::start(spec).await;
    // A sign-in started with a forged Host would mail a link pointing at that host.
    let b = gw.browser();
    let url = b.url_on(EVIL, &api(EMAIL_ONLY));
    let r = b.get_json(&url).await;
    assert_eq!(r.status, 404, "flow on an unknown host: {}", r.describe());
    let r = b.post_json(&url, &json!({ "uid": "alice" })).await;
    assert_eq!(r.status, 404, "{}", r.describe());
    smtp.assert_no_more_than(0, "unknown host").await;

    // On the app's host the link points there.
    api_until_email(&gw, &b, EMAIL_ONLY, "alice").await;
    let link = smtp.nth(1).await.link();
    assert!(
        link.starts_with(&format!("http://app.test:{}/", gw.port)),
        "{link}"
    );
    assert!(
        !gw.logs().contains(&smtp.nth(1).await.link_token()),
        "the link token appears in the gateway's log"
    );
}

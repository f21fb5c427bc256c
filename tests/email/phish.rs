//! Magic links cannot be phished: a link completes a sign-in only in the browser that asked
//! for it. Opened elsewhere, it shows who asked (browser, address, how long ago) and needs an
//! explicit, CSRF-protected approval; the opening browser never gets a session from it; a
//! declined link is spent; a link replays nowhere; a link of one sign-in does nothing for
//! another sign-in's cookie.

use crate::harness::{input_value, Browser, Resp, APP, FLOW_COOKIE, SESSION_COOKIE};
use crate::link::{approve_in, decide_in, link_spec, APPROVED, WAS_THIS_YOU};
use crate::smtp::{SmtpOpts, SmtpServer};
use crate::support::*;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

/// The phisher's browser, as its User-Agent says.
const PHISHER_UA: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 Edg/120.0.2210.91";

/// A cookie-keeping client like [`Browser`] that sends `ua` as its User-Agent.
fn browser_with_agent(gw: &Gw, ua: &str) -> Browser {
    let jar = Arc::new(reqwest::cookie::Jar::default());
    let http = reqwest::Client::builder()
        .cookie_provider(jar.clone())
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .user_agent(ua)
        .timeout(Duration::from_secs(30))
        .resolve(APP, ([127, 0, 0, 1], gw.port).into())
        .build()
        .expect("client");
    Browser {
        http,
        jar,
        port: gw.port,
    }
}

/// Asserts `b`'s API sign-in still waits for its link.
async fn still_waiting(b: &Browser, slug: &str) {
    let r = b.get_json(&api(slug)).await;
    assert_eq!(r.status, 200, "{}", r.describe());
    let v = r.json();
    assert_eq!(v["poll"], 3, "still waiting for the link: {v}");
    assert!(
        r.set_cookie_value(SESSION_COOKIE).is_none(),
        "{}",
        r.describe()
    );
}

fn assert_no_session(r: &Resp) {
    assert!(
        r.set_cookie_value(SESSION_COOKIE).is_none(),
        "a session was handed out: {}",
        r.describe()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_link_opened_in_another_browser_shows_who_asked_and_signs_nobody_in() {
    let smtp = SmtpServer::start(SmtpOpts::plain()).await;
    let gw = Gw::start(link_spec(&smtp)).await;
    let phisher = browser_with_agent(&gw, PHISHER_UA);
    api_until_email(&gw, &phisher, MFA_FLOW, "alice").await;
    let link = smtp.nth(1).await.link();

    // The victim clicks the link in their own browser.
    let victim = gw.browser();
    let r = victim.get_html(&link).await;
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_no_session(&r);
    for shown in [
        WAS_THIS_YOU,
        "Edge 120 on Windows",
        "127.0.0.1",
        "just now",
        "Approve the sign-in on that other browser",
    ] {
        assert!(r.body.contains(shown), "{shown:?} not shown:\n{}", r.body);
    }
    assert!(
        !r.body.contains("Mozilla/5.0"),
        "the User-Agent is shown shortened:\n{}",
        r.body
    );
    assert!(input_value(&r.body, "csrf_token").is_some_and(|t| t.len() >= 32));
    // Seeing the page passes nothing.
    still_waiting(&phisher, MFA_FLOW).await;

    // The JSON face says the same.
    let r = victim
        .get_json(&gw.url(&format!(
            "/.portcullis/api/link?{}",
            link.split_once('?').expect("query").1
        )))
        .await;
    assert_eq!(r.status, 200, "{}", r.describe());
    let v = r.json();
    assert_eq!(v["status"], "approval_required", "{v}");
    assert_eq!(v["requested_by"]["browser"], "Edge 120 on Windows", "{v}");
    assert_eq!(v["requested_by"]["address"], "127.0.0.1", "{v}");
    assert_eq!(v["requested_by"]["ago"], "just now", "{v}");
    assert_eq!(v["actions"], json!(["approve", "decline"]), "{v}");
    assert_no_session(&r);
    // "3 minutes ago" and the like: `flow::requester` unit tests, with a fixed clock.
}

#[tokio::test(flavor = "multi_thread")]
async fn approving_in_another_browser_lets_only_the_browser_that_asked_continue() {
    let smtp = SmtpServer::start(SmtpOpts::plain()).await;
    let gw = Gw::start(link_spec(&smtp)).await;
    let asker = gw.browser();
    api_until_email(&gw, &asker, MFA_FLOW, "alice").await;
    let link = smtp.nth(1).await.link();

    let phone = gw.browser();
    let r = approve_in(&phone, &link).await;
    assert!(
        r.set_cookie(FLOW_COOKIE).is_none(),
        "the approving browser joins no sign-in: {}",
        r.describe()
    );
    // The approving browser has no session and no way into the waiting sign-in.
    assert_eq!(phone.get_json(&gw.url("/private")).await.status, 401);
    assert!(phone.cookie(&gw.url("/"), SESSION_COOKIE).is_none());
    let r = phone.get_json(&api(MFA_FLOW)).await;
    assert_eq!(r.json()["component"], "identification", "{}", r.body);

    let r = asker.get_json(&api(MFA_FLOW)).await;
    assert_signed_in(&gw, &r);
    assert_session_is(&asker, &gw, "alice").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn approving_through_the_api_lets_the_browser_that_asked_continue() {
    let smtp = SmtpServer::start(SmtpOpts::plain()).await;
    let gw = Gw::start(link_spec(&smtp)).await;
    let asker = gw.browser();
    api_until_email(&gw, &asker, MFA_FLOW, "alice").await;
    let token = smtp.nth(1).await.link_token();
    let other = gw.browser();

    // A form post is no API call; an unknown decision is refused and spends nothing.
    let r = other
        .post_form(
            "/.portcullis/api/link",
            &[("token", &token), ("decision", "approve")],
        )
        .await;
    assert_eq!(r.status, 415, "{}", r.describe());
    let r = other
        .post_json(
            &gw.url("/.portcullis/api/link"),
            &json!({ "token": token, "decision": "yes" }),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.describe());
    still_waiting(&asker, MFA_FLOW).await;

    let r = other
        .post_json(
            &gw.url("/.portcullis/api/link"),
            &json!({ "token": token, "decision": "approve" }),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(r.json()["status"], "approved", "{}", r.body);
    assert_no_session(&r);
    let r = other
        .post_json(
            &gw.url("/.portcullis/api/link"),
            &json!({ "token": token, "decision": "approve" }),
        )
        .await;
    assert_eq!(r.status, 410, "approved once: {}", r.describe());
    assert_eq!(r.json()["error"], "link_gone", "{}", r.body);
    assert_signed_in(&gw, &asker.get_json(&api(MFA_FLOW)).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_declined_link_is_spent_and_the_browser_that_asked_stays_stuck() {
    let smtp = SmtpServer::start(SmtpOpts::plain()).await;
    let gw = Gw::start(link_spec(&smtp)).await;
    let phisher = browser_with_agent(&gw, PHISHER_UA);
    api_until_email(&gw, &phisher, MFA_FLOW, "alice").await;
    let link = smtp.nth(1).await.link();

    let victim = gw.browser();
    let page = victim.get_html(&link).await;
    let csrf = input_value(&page.body, "csrf_token").expect("approval form");
    let r = decide_in(&victim, &link, "decline").await;
    assert_eq!(r.status, 200, "{}", r.describe());
    assert!(r.body.contains("Sign-in declined"), "{}", r.body);
    assert_no_session(&r);
    assert!(
        gw.logs().contains("sign-in link declined"),
        "the operator's log records the decline"
    );

    // Spent: neither the victim changing their mind, nor anyone else, can approve it now.
    let token = link.split_once("token=").expect("token").1.to_string();
    let r = victim
        .post_form(
            "/.portcullis/link",
            &[
                ("token", &token),
                ("csrf_token", &csrf),
                ("decision", "approve"),
            ],
        )
        .await;
    assert_eq!(r.status, 410, "{}", r.describe());
    assert_eq!(victim.get_html(&link).await.status, 410);
    let r = gw
        .browser()
        .post_json(
            &gw.url("/.portcullis/api/link"),
            &json!({ "token": token, "decision": "approve" }),
        )
        .await;
    assert_eq!(r.status, 410, "{}", r.describe());
    // Opening it in the phisher's own browser does not revive it either.
    assert_eq!(phisher.get_html(&link).await.status, 410);
    still_waiting(&phisher, MFA_FLOW).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_link_replays_nowhere_once_used() {
    let smtp = SmtpServer::start(SmtpOpts::plain()).await;
    let gw = Gw::start(link_spec(&smtp)).await;
    let asker = gw.browser();
    api_until_email(&gw, &asker, MFA_FLOW, "alice").await;
    let link = smtp.nth(1).await.link();
    // Opened in the browser that asked: the sign-in continues at once.
    let r = asker.get_html(&link).await;
    assert_eq!(r.status, 303, "{}", r.describe());
    assert_eq!(r.location(), html_flow(MFA_FLOW));
    assert_signed_in(&gw, &asker.get_json(&api(MFA_FLOW)).await);

    // Replayed in the same browser, in another, and through the API: gone everywhere.
    for b in [asker.clone(), gw.browser()] {
        let r = b.get_html(&link).await;
        assert_eq!(r.status, 410, "{}", r.describe());
        assert_no_session(&r);
        let r = b
            .get_json(&gw.url(&format!(
                "/.portcullis/api/link?{}",
                link.split_once('?').expect("query").1
            )))
            .await;
        assert_eq!(r.status, 410, "{}", r.describe());
    }
    // A second sign-in of the same user is not passed by the old link.
    let again = gw.browser();
    api_until_email(&gw, &again, MFA_FLOW, "alice").await;
    assert_eq!(again.get_html(&link).await.status, 410);
    still_waiting(&again, MFA_FLOW).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_link_of_one_sign_in_opened_with_another_sign_ins_cookie_passes_neither() {
    let smtp = SmtpServer::start(SmtpOpts::plain()).await;
    let gw = Gw::start(link_spec(&smtp)).await;
    // Execution A: the phisher's. Execution B: the victim's own sign-in, also waiting.
    let a = browser_with_agent(&gw, PHISHER_UA);
    api_until_email(&gw, &a, MFA_FLOW, "alice").await;
    let a_link = smtp.nth(1).await.link();
    let b = gw.browser();
    api_until_email(&gw, &b, MFA_FLOW, "alice").await;
    let b_link = smtp.nth(2).await.link();
    assert!(b.cookie(&gw.url("/.portcullis/"), FLOW_COOKIE).is_some());

    // A's link in B's browser: B's cookie names another execution, so this is "another
    // browser" for A, and nothing at all for B.
    let r = b.get_html(&a_link).await;
    assert_eq!(r.status, 200, "{}", r.describe());
    assert!(r.body.contains(WAS_THIS_YOU), "{}", r.body);
    assert!(r.body.contains("Edge 120 on Windows"), "{}", r.body);
    assert_no_session(&r);
    still_waiting(&b, MFA_FLOW).await;
    still_waiting(&a, MFA_FLOW).await;
    // Same through the API.
    let r = b
        .get_json(&gw.url(&format!(
            "/.portcullis/api/link?{}",
            a_link.split_once('?').expect("query").1
        )))
        .await;
    assert_eq!(r.json()["status"], "approval_required", "{}", r.body);
    still_waiting(&b, MFA_FLOW).await;

    // A cookie naming a made-up or another flow's execution is no better.
    let forged = gw.browser();
    for id in ["", "x", &"A".repeat(43), &"A".repeat(200)] {
        forged.add_cookie(
            &gw.url("/.portcullis/"),
            &format!("{FLOW_COOKIE}={id}; Path=/.portcullis"),
        );
        let r = forged.get_html(&a_link).await;
        assert_eq!(r.status, 200, "{id:?}: {}", r.describe());
        assert!(r.body.contains(WAS_THIS_YOU), "{id:?}: {}", r.body);
    }
    still_waiting(&a, MFA_FLOW).await;

    // B's own link in B's browser still works, and passes only B.
    let r = b.get_html(&b_link).await;
    assert_eq!(r.status, 303, "{}", r.describe());
    assert_signed_in(&gw, &b.get_json(&api(MFA_FLOW)).await);
    still_waiting(&a, MFA_FLOW).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_approval_post_without_its_csrf_token_is_refused() {
    let smtp = SmtpServer::start(SmtpOpts::plain()).await;
    let gw = Gw::start(link_spec(&smtp)).await;
    let asker = gw.browser();
    api_until_email(&gw, &asker, MFA_FLOW, "alice").await;
    let link = smtp.nth(1).await.link();
    let token = link.split_once("token=").expect("token").1.to_string();
    // Another sign-in's link, for a token bound to another link.
    let other_asker = gw.browser();
    api_until_email(&gw, &other_asker, MFA_FLOW, "alice").await;
    let other_link = smtp.nth(2).await.link();

    let victim = gw.browser();
    let page = victim.get_html(&link).await;
    let csrf = input_value(&page.body, "csrf_token").expect("approval form");
    let others_csrf =
        input_value(&victim.get_html(&other_link).await.body, "csrf_token").expect("approval form");
    assert_ne!(csrf, others_csrf, "a token is bound to its link");
    // A third browser that loaded the page has its own nonce, so its token is no good here.
    let third = gw.browser();
    let thirds_csrf =
        input_value(&third.get_html(&link).await.body, "csrf_token").expect("approval form");
    assert_ne!(csrf, thirds_csrf, "a token is bound to its browser");

    let upper = csrf.to_uppercase();
    let cut = csrf[..csrf.len() - 1].to_string();
    let cases: Vec<(&str, Vec<(&str, &str)>)> = vec![
        (
            "no CSRF token",
            vec![("token", &token), ("decision", "approve")],
        ),
        (
            "empty CSRF token",
            vec![
                ("token", &token),
                ("csrf_token", ""),
                ("decision", "approve"),
            ],
        ),
        (
            "another link's token",
            vec![
                ("token", &token),
                ("csrf_token", &others_csrf),
                ("decision", "approve"),
            ],
        ),
        (
            "another browser's token",
            vec![
                ("token", &token),
                ("csrf_token", &thirds_csrf),
                ("decision", "approve"),
            ],
        ),
        (
            "upper-cased",
            vec![
                ("token", &token),
                ("csrf_token", &upper),
                ("decision", "approve"),
            ],
        ),
        (
            "cut short",
            vec![
                ("token", &token),
                ("csrf_token", &cut),
                ("decision", "approve"),
            ],
        ),
        (
            "CSRF token twice",
            vec![
                ("token", &token),
                ("csrf_token", &csrf),
                ("csrf_token", &csrf),
                ("decision", "approve"),
            ],
        ),
    ];
    for (what, fields) in &cases {
        let r = victim.post_form("/.portcullis/link", fields).await;
        assert_eq!(r.status, 403, "{what}: {}", r.describe());
        assert_no_session(&r);
    }
    // The right token from a client without the page's cookie (a cross-site form post of a
    // stolen page) is refused too.
    let r = gw
        .browser()
        .post_form(
            "/.portcullis/link",
            &[
                ("token", &token),
                ("csrf_token", &csrf),
                ("decision", "approve"),
            ],
        )
        .await;
    assert_eq!(r.status, 403, "without the cookie: {}", r.describe());
    // None of it approved or spent the link.
    still_waiting(&asker, MFA_FLOW).await;

    let r = victim
        .post_form(
            "/.portcullis/link",
            &[
                ("token", &token),
                ("csrf_token", &csrf),
                ("decision", "approve"),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.describe());
    assert!(r.body.contains(APPROVED), "{}", r.body);
    assert_signed_in(&gw, &asker.get_json(&api(MFA_FLOW)).await);
    still_waiting(&other_asker, MFA_FLOW).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_api_client_opening_its_own_link_continues_at_once() {
    let smtp = SmtpServer::start(SmtpOpts::plain()).await;
    let gw = Gw::start(link_spec(&smtp)).await;
    let asker = gw.browser();
    api_until_email(&gw, &asker, MFA_FLOW, "alice").await;
    let link = smtp.nth(1).await.link();
    let query = link.split_once('?').expect("query").1;
    let r = asker
        .get_json(&gw.url(&format!("/.portcullis/api/link?{query}")))
        .await;
    assert_eq!(r.status, 200, "{}", r.describe());
    let v = r.json();
    assert_eq!(v["status"], "confirmed", "{v}");
    assert_eq!(v["continue"], api(MFA_FLOW), "{v}");
    assert_no_session(&r);
    assert_signed_in(&gw, &asker.get_json(&api(MFA_FLOW)).await);
}

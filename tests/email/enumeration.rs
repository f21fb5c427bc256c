//! Over HTTP, in both faces: an e-mail sign-in without a password answers an unknown name, a
//! disabled account, accounts without a device (with and without an address) and an account
//! with a device the same way, whatever `not_configured_action` says: status, body (the CSRF
//! token and the typed name aside) and time (within noise). The flow with a password first
//! does the same up to the password.

use crate::harness::{form_page, next_page, submit, Browser};
use crate::smtp::{SmtpOpts, SmtpServer};
use crate::support::*;
use serde_json::json;
use std::time::{Duration, Instant};

const EXTRA: &str = r#"
[[flows]]
slug = "email-deny"
title = "Sign in by email"
designation = "authentication"
stages = ["identify", "mfa_deny", "login"]
[[flows]]
slug = "email-skip"
title = "Sign in by email"
designation = "authentication"
stages = ["identify", "mfa_skip", "login"]
[stages.mfa_deny]
kind = "authenticator_validate"
device_classes = ["email"]
not_configured_action = "deny"
max_challenges_sent = 100
[stages.mfa_skip]
kind = "authenticator_validate"
device_classes = ["email"]
not_configured_action = "skip"
max_challenges_sent = 100
"#;

/// Each kind of account, by the name typed: an account with a device (alice, once enrolled),
/// none with an address (erin) and without one (carol), a disabled one (dave), none at all.
const KINDS: &[&str] = &["alice", "erin", "carol", "dave", "nobody-here"];

/// A status and a body, made comparable.
type Answer = (u16, String);

/// What the JSON face answers after the name, made comparable: the status and the body.
async fn json_face(b: &Browser, slug: &str, uid: &str) -> (u16, String, Duration) {
    let r = b.get_json(&api(slug)).await;
    assert_eq!(r.status, 200, "{}", r.describe());
    let started = Instant::now();
    let r = post_resp(b, slug, json!({ "uid": uid })).await;
    let took = started.elapsed();
    (r.status, r.body.replace(uid, "NAME"), took)
}

/// What the HTML face shows after the name: the status of the post and the next page, with
/// its CSRF token and the name made alike.
async fn html_face(b: &Browser, slug: &str, uid: &str) -> (u16, String) {
    let first = form_page(&b.get_html(&html_flow(slug)).await);
    let r = submit(b, &first, &[("uid", uid)]).await;
    let status = r.status;
    let page = next_page(b, &r).await;
    (
        status,
        page.html.replace(&page.csrf, "CSRF").replace(uid, "NAME"),
    )
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::test(flavor = "multi_thread")]
async fn every_kind_of_account_gets_the_same_answer_in_both_faces_for_every_action() {
    let smtp = SmtpServer::start(SmtpOpts::plain()).await;
    // Enough sends for every try of every kind (the limits themselves count decoys alike).
    let mut spec = Spec::new(smtp.email_toml()).otp("max_challenges_sent = 100");
    spec.users.push(user("erin", Some("erin@example.com")));
    spec.extra = EXTRA.into();
    let gw = Gw::start(spec).await;
    // alice enrols her address (email alone; `configure` runs the setup inline).
    let b = gw.browser();
    api_until_email(&gw, &b, EMAIL_ONLY, "alice").await;
    let code = smtp.nth(1).await.code();
    assert_signed_in(
        &gw,
        &post_resp(&b, EMAIL_ONLY, json!({ "code": code })).await,
    );

    let mut failures = Vec::new();
    for slug in [EMAIL_ONLY, "email-deny", "email-skip", MFA_FLOW] {
        let mut reference: Option<(&str, Answer, Answer)> = None;
        let mut times = Vec::new();
        for uid in KINDS {
            let mut took = Vec::new();
            let mut json_seen = None;
            for _ in 0..5 {
                let (status, body, t) = json_face(&gw.browser(), slug, uid).await;
                took.push(t);
                json_seen = Some((status, body));
            }
            let json_seen = json_seen.expect("answered");
            let html_seen = html_face(&gw.browser(), slug, uid).await;
            times.push((uid, median(took)));
            match &reference {
                None => reference = Some((uid, json_seen, html_seen)),
                Some((first, json_ref, html_ref)) => {
                    if &json_seen != json_ref {
                        failures.push(format!(
                            "{slug} JSON: {uid} {json_seen:?} != {first} {json_ref:?}"
                        ));
                    }
                    if &html_seen != html_ref {
                        failures.push(format!(
                            "{slug} HTML: {uid} differs from {first}:\n{}\n---\n{}",
                            html_seen.1, html_ref.1
                        ));
                    }
                }
            }
        }
        // Within noise: no kind answers systematically faster or slower (a decoy that skips
        // the write a real send makes, or sleeps where a real send does not).
        let fastest = times.iter().map(|t| t.1).min().expect("times");
        let slowest = times.iter().map(|t| t.1).max().expect("times");
        if slowest > fastest * 3 + Duration::from_millis(60) {
            failures.push(format!("{slug}: answer times differ: {times:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

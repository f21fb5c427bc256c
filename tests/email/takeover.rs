//! Flows without a password must not let anyone enrol their own address (or skip the second
//! factor) on someone else's account: before a stage proved who the user is, only the address
//! the account already has is trusted, and no session is issued without such a stage.

use crate::smtp::{SmtpOpts, SmtpServer};
use crate::support::*;
use serde_json::json;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn passwordless_flow_never_asks_for_an_address_for_an_account_without_one() {
    let smtp = SmtpServer::start(SmtpOpts::plain()).await;
    let gw = Gw::start(Spec::new(smtp.email_toml())).await;

    // carol has no address. An attacker who names her must not be offered a box to type
    // their own: the page reads like any other code page, and nothing is sent anywhere.
    for slug in [EMAIL_ONLY, SETUP_ONLY] {
        let b = gw.browser();
        let v = api_until_email(&gw, &b, slug, "carol").await;
        assert_eq!(
            field_names(&v),
            vec!["code"],
            "{slug}: an address was asked for before anything proved who the user is: {v}"
        );
        // Typing an address anyway is refused as input for this step.
        let r = b
            .post_json(&api(slug), &json!({ "email": "attacker@evil.test" }))
            .await;
        assert_eq!(r.status, 400, "{slug}: {}", r.describe());
        assert_eq!(r.json()["error"], "stage_mismatch", "{slug}: {}", r.body);
        // Every code is wrong; no session.
        let r = post_resp(&b, slug, json!({ "code": "000000" })).await;
        assert_ne!(r.json()["component"], "redirect", "{slug}: {}", r.body);
    }
    // The gateway logs why it sends nothing where it would have sent: once that line is
    // there, the sign-in got as far as a send could go.
    crate::harness::poll_until(Duration::from_secs(10), || {
        gw.logs().contains("nothing proved who the user is")
    })
    .await;
    assert_eq!(
        smtp.count(),
        0,
        "a message was sent for an account without an address"
    );
    let logs = gw.logs();
    assert!(
        logs.contains("nothing proved who the user is"),
        "the operator is told why nothing was sent:\n{logs}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn after_a_password_the_user_may_enrol_an_address_they_type() {
    let smtp = SmtpServer::start(SmtpOpts::plain()).await;
    let gw = Gw::start(Spec::new(smtp.email_toml())).await;
    let b = gw.browser();
    let v = api_until_email(&gw, &b, MFA_FLOW, "carol").await;
    assert_eq!(field_names(&v), vec!["email"], "{v}");
    let v = post(&b, MFA_FLOW, json!({ "email": "carol@example.org" })).await;
    assert_code_challenge(&v, "authenticator_email");
    let mail = smtp.nth(1).await;
    assert_eq!(mail.rcpt_tos, vec!["carol@example.org"]);
    let r = post_resp(&b, MFA_FLOW, json!({ "code": mail.code() })).await;
    assert_signed_in(&gw, &r);
}

#[tokio::test(flavor = "multi_thread")]
async fn skipped_validation_without_a_password_issues_no_session() {
    let smtp = SmtpServer::start(SmtpOpts::plain()).await;
    let spec = Spec {
        not_configured_action: "skip".into(),
        ..Spec::new(smtp.email_toml())
    };
    let gw = Gw::start(spec).await;
    // carol has no device: validation is skipped, and in the password-less flow nothing
    // else proves who she is.
    let b = gw.browser();
    let v = api_until_email(&gw, &b, EMAIL_ONLY, "carol").await;
    assert_ne!(v["component"], "redirect", "signed in by name alone: {v}");
    assert!(
        b.cookie(&rd(&gw), crate::harness::SESSION_COOKIE).is_none(),
        "a session cookie was issued without any proof"
    );
    // With the password first, the same skip signs her in.
    let b = gw.browser();
    let r = api_until_email(&gw, &b, MFA_FLOW, "carol").await;
    assert_eq!(r["component"], "redirect", "{r}");
}

//! Standalone email sign-in (no password stage) and disabled accounts with and without
//! `allow_inactive_accounts` / `activate_inactive_accounts`.

use crate::harness::SESSION_COOKIE;
use crate::smtp::{SmtpOpts, SmtpServer};
use crate::support::*;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread")]
async fn standalone_email_sign_in_enrols_then_validates_without_a_password() {
    let smtp = SmtpServer::start(SmtpOpts::plain()).await;
    let gw = Gw::start(app_flow(Spec::new(smtp.email_toml()), EMAIL_ONLY)).await;

    // identify → mfa (validate; no device, so setup runs inline) → login.
    let b = gw.browser();
    // The inline setup's page is shown as the validation's: word for word what an account
    // with a device (or an unknown one) sees.
    let v = api_until_email(&gw, &b, EMAIL_ONLY, "alice").await;
    assert_code_challenge(&v, "authenticator_validate");
    let mail = smtp.nth(1).await;
    assert_eq!(mail.rcpt_tos, vec!["alice@example.com"]);
    let r = post_resp(&b, EMAIL_ONLY, json!({ "code": mail.code() })).await;
    let token = assert_signed_in(&gw, &r);
    let amr = amr(&token);
    assert!(
        !amr.contains(&"password".to_string()),
        "no password stage ran: {amr:?}"
    );
    assert_session_is(&b, &gw, "alice").await;

    // Again, now with the saved device: validate only.
    let b2 = gw.browser();
    let v = api_until_email(&gw, &b2, EMAIL_ONLY, "alice").await;
    assert_code_challenge(&v, "authenticator_validate");
    let mail = smtp.nth(2).await;
    let r = post_resp(&b2, EMAIL_ONLY, json!({ "code": mail.code() })).await;
    let token = assert_signed_in(&gw, &r);
    assert_eq!(
        amr_without_login(&token),
        vec!["identification", "authenticator_validate"]
    );
    assert_session_is(&b2, &gw, "alice").await;

    // The user can also identify with the address itself.
    let b3 = gw.browser();
    let v = api_until_email(&gw, &b3, EMAIL_ONLY, "alice@example.com").await;
    assert_code_challenge(&v, "authenticator_validate");
    let mail = smtp.nth(3).await;
    let r = post_resp(&b3, EMAIL_ONLY, json!({ "code": mail.code() })).await;
    assert_signed_in(&gw, &r);
    assert_session_is(&b3, &gw, "alice").await;
}

/// The spec with app.test signing in through `flow`: a session from a flow without a password
/// does not open an app whose flow asks for one.
fn app_flow(spec: Spec, flow: &str) -> Spec {
    Spec {
        app_flow: flow.into(),
        ..spec
    }
}

fn amr_without_login(token: &str) -> Vec<String> {
    amr(token)
        .into_iter()
        .filter(|k| k != "user_login")
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn standalone_setup_stage_flow_signs_in_by_email() {
    let smtp = SmtpServer::start(SmtpOpts::plain()).await;
    let gw = Gw::start(app_flow(Spec::new(smtp.email_toml()), SETUP_ONLY)).await;
    let b = gw.browser();
    let v = api_until_email(&gw, &b, SETUP_ONLY, "alice").await;
    assert_code_challenge(&v, "authenticator_email");
    let mail = smtp.nth(1).await;
    let r = post_resp(&b, SETUP_ONLY, json!({ "code": mail.code() })).await;
    let token = assert_signed_in(&gw, &r);
    assert_eq!(
        amr_without_login(&token),
        vec!["identification", "authenticator_email"]
    );
    assert_session_is(&b, &gw, "alice").await;
}

/// The parts of a challenge an onlooker compares: component, fields, actions, errors, and
/// the info lines with the (masked) address blanked.
fn shape(v: &Value) -> Value {
    let re = regex::Regex::new(r"We sent a code to [^ ]+(?: [^.]+)?\.").unwrap();
    let info: Vec<String> = info(v)
        .iter()
        .map(|l| {
            re.replace_all(l, "We sent a code to <address>.")
                .into_owned()
        })
        .collect();
    json!({
        "component": v["component"],
        "fields": v["fields"],
        "actions": v["actions"],
        "errors": v["errors"],
        "info": info,
    })
}

/// Enrols alice's address over the email-only flow (so she has a device) and returns how
/// many messages that took.
async fn enrol_alice(gw: &Gw, smtp: &SmtpServer) -> usize {
    let b = gw.browser();
    api_until_email(gw, &b, EMAIL_ONLY, "alice").await;
    let n = smtp.count();
    let code = smtp.nth(n).await.code();
    let r = post_resp(&b, EMAIL_ONLY, json!({ "code": code })).await;
    assert_signed_in(gw, &r);
    n
}

#[tokio::test(flavor = "multi_thread")]
async fn disabled_account_gets_the_same_answer_and_nothing_is_sent() {
    let smtp = SmtpServer::start(SmtpOpts::plain()).await;
    let gw = Gw::start(Spec::new(smtp.email_toml())).await;
    let sent = enrol_alice(&gw, &smtp).await;

    // An active account with a device: the code goes out at once.
    let active = api_until_email(&gw, &gw.browser(), EMAIL_ONLY, "alice").await;
    assert_code_challenge(&active, "authenticator_validate");
    smtp.wait_for(sent + 1).await;

    let b = gw.browser();
    let disabled = api_until_email(&gw, &b, EMAIL_ONLY, "dave").await;
    assert_eq!(
        shape(&disabled),
        shape(&active),
        "a disabled account must get the same kind of answer as an active one:\ndisabled: {disabled}\nactive: {active}"
    );
    let unknown = api_until_email(&gw, &gw.browser(), EMAIL_ONLY, "nobody-here").await;
    assert_eq!(
        shape(&unknown),
        shape(&disabled),
        "unknown and disabled accounts look the same:\nunknown: {unknown}\ndisabled: {disabled}"
    );

    // Resend looks like a resend too; still nothing goes out.
    let v = post(&b, EMAIL_ONLY, json!({ "action": "resend" })).await;
    assert!(info(&v).iter().any(|l| l == RESENT), "{v}");
    smtp.assert_no_more_than(sent + 1, "disabled account (only alice's messages)")
        .await;
    assert!(
        smtp.messages()
            .iter()
            .all(|m| m.rcpt_tos == vec!["alice@example.com"]),
        "something was sent to dave"
    );

    // Every code is wrong.
    let r = post_resp(&b, EMAIL_ONLY, json!({ "code": "123456" })).await;
    let v = r.json();
    assert_eq!(errors(&v), vec![WRONG_CODE], "{v}");
    assert!(r.set_cookie_value(SESSION_COOKIE).is_none());
    let show = gw.user_show("dave").await;
    assert!(show.contains("active=false"), "{show}");
}

#[tokio::test(flavor = "multi_thread")]
async fn disabled_account_with_allow_inactive_gets_the_code_but_stays_disabled() {
    let smtp = SmtpServer::start(SmtpOpts::plain()).await;
    let gw = Gw::start(Spec::new(smtp.email_toml()).otp("allow_inactive_accounts = true")).await;
    let b = gw.browser();
    // The inline setup's page reads as the validation's (see enumeration.rs).
    let v = api_until_email(&gw, &b, EMAIL_ONLY, "dave").await;
    assert_code_challenge(&v, "authenticator_validate");
    let mail = smtp.nth(1).await;
    assert_eq!(mail.rcpt_tos, vec!["dave@example.com"]);
    let r = post_resp(&b, EMAIL_ONLY, json!({ "code": mail.code() })).await;
    let v = r.json();
    // The code is right (no wrong-code error), but a disabled account is not signed in.
    assert!(
        !errors(&v).iter().any(|e| e == WRONG_CODE),
        "the code sent to dave must be accepted: {v}"
    );
    assert!(
        r.set_cookie_value(SESSION_COOKIE).is_none(),
        "a disabled account got a session: {}",
        r.describe()
    );
    let show = gw.user_show("dave").await;
    assert!(show.contains("active=false"), "still disabled: {show}");
}

#[tokio::test(flavor = "multi_thread")]
async fn disabled_account_with_activate_inactive_is_activated_by_the_code() {
    let smtp = SmtpServer::start(SmtpOpts::plain()).await;
    let gw = Gw::start(app_flow(
        Spec::new(smtp.email_toml())
            .otp("allow_inactive_accounts = true\nactivate_inactive_accounts = true"),
        EMAIL_ONLY,
    ))
    .await;
    assert!(gw.user_show("dave").await.contains("active=false"));
    // Disabling dave revoked his sessions issued up to that millisecond; the session issued
    // below is later and stands (in process, without waiting:
    // `session::expiry_tests::a_user_revoked_and_signed_in_again_within_one_second_keeps_only_the_new_session`).
    let b = gw.browser();
    api_until_email(&gw, &b, EMAIL_ONLY, "dave").await;
    let mail = smtp.nth(1).await;
    assert_eq!(mail.rcpt_tos, vec!["dave@example.com"]);
    let r = post_resp(&b, EMAIL_ONLY, json!({ "code": mail.code() })).await;
    assert_signed_in(&gw, &r);
    assert_session_is(&b, &gw, "dave").await;
    let show = gw.user_show("dave").await;
    assert!(show.contains("active=true"), "activated: {show}");
}

#[tokio::test(flavor = "multi_thread")]
async fn disabled_account_with_activate_but_without_allow_gets_nothing() {
    let smtp = SmtpServer::start(SmtpOpts::plain()).await;
    let gw = Gw::start(Spec::new(smtp.email_toml()).otp("activate_inactive_accounts = true")).await;
    let b = gw.browser();
    let v = api_until_email(&gw, &b, EMAIL_ONLY, "dave").await;
    assert_eq!(
        field_names(&v),
        vec!["code"],
        "looks like a code was sent: {v}"
    );
    smtp.assert_no_more_than(0, "activate without allow").await;
    let r = post_resp(&b, EMAIL_ONLY, json!({ "code": "123456" })).await;
    assert!(r.set_cookie_value(SESSION_COOKIE).is_none());
    assert!(gw.user_show("dave").await.contains("active=false"));
}

#[tokio::test(flavor = "multi_thread")]
async fn disabled_account_info_line_reads_like_an_active_accounts() {
    let smtp = SmtpServer::start(SmtpOpts::plain()).await;
    let gw = Gw::start(Spec::new(smtp.email_toml())).await;
    enrol_alice(&gw, &smtp).await;

    let active = api_until_email(&gw, &gw.browser(), EMAIL_ONLY, "alice").await;
    let disabled = api_until_email(&gw, &gw.browser(), EMAIL_ONLY, "dave").await;
    let unknown = api_until_email(&gw, &gw.browser(), EMAIL_ONLY, "nobody-here").await;
    assert_eq!(
        info(&active),
        vec!["We sent a code to the email address on your account.".to_string()],
        "{active}"
    );
    assert_eq!(
        info(&disabled),
        info(&active),
        "a disabled account gives itself away: {disabled}"
    );
    assert_eq!(
        info(&unknown),
        info(&active),
        "an unknown account gives itself away: {unknown}"
    );
    assert_eq!(field_names(&disabled), field_names(&active));
}

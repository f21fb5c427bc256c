//! A device's codes follow the stage that enrolled it: the validation stage sends the kind
//! (code or link), length and lifetime that stage promised, unless it sets its own. And a
//! page never offers a code box when no code went out.

use crate::harness::{form_page, has_input, next_page, pct, submit, Browser, FormPage, Resp};
use crate::smtp::{SmtpOpts, SmtpServer};
use crate::support::*;
use serde_json::json;

/// The page a form post leads to: shown at once (with errors) or after its redirect.
async fn after(b: &Browser, r: &Resp) -> FormPage {
    if r.status == 303 {
        next_page(b, r).await
    } else {
        form_page(r)
    }
}

/// Enrols alice's account address through the MFA flow with a code of `len` digits
/// (message `n`).
async fn enrol_with_code(gw: &Gw, smtp: &SmtpServer, n: usize, len: usize) {
    let b = gw.browser();
    let v = api_until_email(gw, &b, MFA_FLOW, "alice").await;
    assert_code_challenge(&v, "authenticator_email");
    let r = post_resp(
        &b,
        MFA_FLOW,
        json!({ "code": smtp.nth(n).await.code_of_len(len) }),
    )
    .await;
    assert_signed_in(gw, &r);
}

#[tokio::test(flavor = "multi_thread")]
async fn validation_sends_a_link_when_the_enrolling_stage_uses_links() {
    let smtp = SmtpServer::start(SmtpOpts::plain()).await;
    let gw = Gw::start(Spec::new(smtp.email_toml()).setup_keys("mode = \"link\"")).await;

    // Enrolment by link.
    let b = gw.browser();
    let v = api_until_email(&gw, &b, MFA_FLOW, "alice").await;
    assert!(field_names(&v).is_empty(), "link mode at setup: {v}");
    // Opened in the browser that asked: confirmed at once.
    let r = b.get_html(&smtp.nth(1).await.link()).await;
    assert!(r.status == 200 || r.status == 303, "{}", r.describe());
    let r = b.get_json(&api(MFA_FLOW)).await;
    assert_signed_in(&gw, &r);

    // The next sign-in validates the same way: a link, no code box.
    let b = gw.browser();
    let v = api_until_email(&gw, &b, MFA_FLOW, "alice").await;
    assert_eq!(v["component"], "authenticator_validate", "{v}");
    assert!(
        field_names(&v).is_empty(),
        "the validation stage follows the enrolling stage's link mode: {v}"
    );
    assert_eq!(v["poll"], 3, "{v}");
    let mail = smtp.nth(2).await;
    let token = mail.link_token();
    assert!(!token.is_empty(), "a link was mailed:\n{}", mail.text());
    crate::link::approve_in(&gw.browser(), &mail.link()).await;
    let r = b.get_json(&api(MFA_FLOW)).await;
    assert_signed_in(&gw, &r);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mode_set_on_the_validation_stage_wins() {
    let smtp = SmtpServer::start(SmtpOpts::plain()).await;
    let gw = Gw::start(
        Spec::new(smtp.email_toml())
            .setup_keys("mode = \"link\"")
            .mfa_keys("mode = \"code\""),
    )
    .await;
    let b = gw.browser();
    api_until_email(&gw, &b, MFA_FLOW, "alice").await;
    b.get_html(&smtp.nth(1).await.link()).await;
    assert_signed_in(&gw, &b.get_json(&api(MFA_FLOW)).await);

    let b = gw.browser();
    let v = api_until_email(&gw, &b, MFA_FLOW, "alice").await;
    assert_code_challenge(&v, "authenticator_validate");
    let r = post_resp(&b, MFA_FLOW, json!({ "code": smtp.nth(2).await.code() })).await;
    assert_signed_in(&gw, &r);
}

// That the stated lifetime is the one enforced (a code typed when it ends is expired, a second
// before still works) is tested in-process with a manual clock, no sleep:
// `flow::tests::validate::a_devices_code_typed_when_the_enrolling_stages_lifetime_ends_is_expired`
// and `a_devices_code_states_and_lives_for_the_enrolling_stages_lifetime`.
#[tokio::test(flavor = "multi_thread")]
async fn a_later_sign_in_states_the_enrolling_stages_lifetime_and_uses_its_length() {
    let smtp = SmtpServer::start(SmtpOpts::plain()).await;
    // The validation stage sets no lifetime (its default would be 30 minutes).
    let gw = Gw::start(
        Spec::new(smtp.email_toml()).setup_keys("token_expiry = \"90s\"\ncode_length = 8"),
    )
    .await;
    enrol_with_code(&gw, &smtp, 1, 8).await;

    let b = gw.browser();
    let v = api_until_email(&gw, &b, MFA_FLOW, "alice").await;
    assert_code_challenge(&v, "authenticator_validate");
    let mail = smtp.nth(2).await;
    assert!(
        mail.text().contains("90 seconds"),
        "the mail states the enrolling stage's lifetime:\n{}",
        mail.text()
    );
    // The length follows the enrolling stage too.
    let r = post_resp(&b, MFA_FLOW, json!({ "code": mail.code_of_len(8) })).await;
    assert_signed_in(&gw, &r);
}

#[tokio::test(flavor = "multi_thread")]
async fn after_a_failed_send_no_code_box_is_shown_until_a_send_succeeds() {
    use crate::harness::reserved_port;
    // The relay is down when the sign-in starts.
    let port = reserved_port();
    let email = format!("host = \"127.0.0.1\"\nport = {port}\ntimeout = 5\n");
    let gw = Gw::start(Spec::new(email)).await;
    let b = gw.browser();

    let first = html_page(&b, &format!("{}?rd={}", html_flow(MFA_FLOW), pct(&rd(&gw)))).await;
    let r = submit(&b, &first, &[("uid", "alice")]).await;
    let page = next_page(&b, &r).await;
    let r = submit(&b, &page, &[("password", PW)]).await;
    let page = after(&b, &r).await;
    assert!(
        shows(&page_errors(&page.html), SEND_FAILED),
        "{}",
        page.html
    );
    assert!(
        !has_input(&page.html, "code"),
        "no code box after a failed send:\n{}",
        page.html
    );
    assert!(
        !page.html.contains("<button type=\"submit\">"),
        "only the retry button:\n{}",
        page.html
    );
    assert!(page.html.contains(r#"value="resend""#), "{}", page.html);

    // Retrying while it is still down: still no box.
    let r = submit(&b, &page, &[("action", "resend")]).await;
    let page = after(&b, &r).await;
    assert!(!has_input(&page.html, "code"), "{}", page.html);

    // A code typed anyway (an old tab) is not taken as an answer.
    let r = submit(&b, &page, &[("code", "123456")]).await;
    assert_eq!(r.status, 400, "{}", r.describe());

    // The relay comes up; the retry sends, and the box appears.
    let smtp = SmtpServer::start(SmtpOpts {
        port: Some(port),
        ..SmtpOpts::plain()
    })
    .await;
    let page = html_page(&b, &html_flow(MFA_FLOW)).await;
    let r = submit(&b, &page, &[("action", "resend")]).await;
    let page = after(&b, &r).await;
    assert!(
        has_input(&page.html, "code"),
        "the box once a code went out:\n{}",
        page.html
    );
    let r = submit(&b, &page, &[("code", &smtp.nth(1).await.code())]).await;
    assert!(
        r.status == 303 && r.location_absolute() == rd(&gw),
        "{}",
        r.describe()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn code_pages_ask_for_digits_offer_autofill_and_say_what_the_step_is() {
    let smtp = SmtpServer::start(SmtpOpts::plain()).await;
    let gw = Gw::start(Spec::new(smtp.email_toml())).await;
    let b = gw.browser();
    let first = html_page(&b, &format!("{}?rd={}", html_flow(MFA_FLOW), pct(&rd(&gw)))).await;
    let r = submit(&b, &first, &[("uid", "alice")]).await;
    let page = next_page(&b, &r).await;
    // The password page carries the name as typed, for password managers.
    assert!(
        page.html.contains(
            r#"<input type="text" name="username" value="alice" autocomplete="username" hidden>"#
        ),
        "{}",
        page.html
    );
    assert!(
        page.html.contains("<h1>Enter your password</h1>"),
        "{}",
        page.html
    );
    let r = submit(&b, &page, &[("password", PW), ("username", "alice")]).await;
    let page = after(&b, &r).await;
    let input = page
        .html
        .split(r#"<input id="f-code""#)
        .nth(1)
        .and_then(|rest| rest.split('>').next())
        .unwrap_or_else(|| panic!("no code box:\n{}", page.html));
    assert!(input.contains(r#"inputmode="numeric""#), "{input}");
    assert!(input.contains(r#"autocomplete="one-time-code""#), "{input}");
    assert!(
        page.html.contains("<h1>Check your email</h1>"),
        "{}",
        page.html
    );
    assert!(
        page.html
            .contains(r#"<button type="submit">Verify</button>"#),
        "{}",
        page.html
    );
    // The site title stays on the page.
    assert!(page.html.contains(SITE_TITLE), "{}", page.html);
    let r = submit(&b, &page, &[("code", &smtp.nth(1).await.code())]).await;
    assert_eq!(r.status, 303, "{}", r.describe());
}

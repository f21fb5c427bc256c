//! Enrolment through the HTML face and the JSON API, the device it saves, and the later
//! sign-ins that validate by email.

use crate::harness::{has_input, next_page, pct, submit, SESSION_COOKIE};
use crate::smtp::{SmtpOpts, SmtpServer};
use crate::support::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn html_setup_asks_for_an_address_sends_a_code_and_signs_in() {
    let smtp = SmtpServer::start(SmtpOpts::plain()).await;
    let gw = Gw::start(Spec::new(smtp.email_toml())).await;
    let b = gw.browser();

    let first = html_page(&b, &format!("{}?rd={}", html_flow(MFA_FLOW), pct(&rd(&gw)))).await;
    assert!(has_input(&first.html, "uid"), "{}", first.html);
    let r = submit(&b, &first, &[("uid", "carol")]).await;
    let page = next_page(&b, &r).await;
    assert!(has_input(&page.html, "password"), "{}", page.html);
    let r = submit(&b, &page, &[("password", PW)]).await;
    let page = next_page(&b, &r).await;
    // carol has no address on her account: she is asked for one, and nothing is sent yet.
    assert!(
        has_input(&page.html, "email"),
        "carol (no address) should be asked for one:\n{}",
        page.html
    );
    assert!(
        !has_input(&page.html, "code"),
        "no code box before an address is known:\n{}",
        page.html
    );
    assert_eq!(
        smtp.count(),
        0,
        "nothing may be sent before the address is typed"
    );

    let r = submit(&b, &page, &[("email", "carol.new@example.org")]).await;
    let page = next_page(&b, &r).await;
    assert!(has_input(&page.html, "code"), "code form:\n{}", page.html);
    assert!(
        shows(&page.html, "We sent a code to carol.new@example.org"),
        "the page says where the code went:\n{}",
        page.html
    );
    assert!(
        page.html.contains(r#"name="action""#) && page.html.contains(r#"value="resend""#),
        "the page offers a resend button:\n{}",
        page.html
    );

    let mail = smtp.nth(1).await;
    assert_eq!(mail.rcpt_tos, vec!["carol.new@example.org"]);
    assert_eq!(mail.mail_from, "portcullis@gateway.test");
    mail.assert_shape(SUBJECT);
    let code = mail.code();

    // A wrong code first: the same page again with the error.
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let r = submit(&b, &page, &[("code", wrong)]).await;
    assert_eq!(r.status, 200, "wrong code re-renders: {}", r.describe());
    assert!(
        shows(&page_errors(&r.body), WRONG_CODE),
        "wrong-code message on the page:\n{}",
        r.body
    );

    let r = submit(&b, &page, &[("code", &code)]).await;
    assert_eq!(r.status, 303, "right code: {}", r.describe());
    assert_eq!(r.location(), rd(&gw), "back to rd");
    let token = r
        .set_cookie_value(SESSION_COOKIE)
        .unwrap_or_else(|| panic!("no session cookie: {}", r.describe()));
    let amr = amr(&token);
    // The setup ran inline inside the validate stage, which is what the flow lists.
    assert!(
        amr.contains(&"password".to_string())
            && (amr.contains(&"authenticator_validate".to_string())
                || amr.contains(&"authenticator_email".to_string())),
        "amr {amr:?}"
    );
    assert_session_is(&b, &gw, "carol").await;

    // The address was saved on the account, which had none.
    let show = gw.user_show("carol").await;
    assert!(
        show.contains("email=carol.new@example.org"),
        "user show carol: {show}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn json_setup_sends_to_the_account_address_and_the_next_sign_in_validates_it() {
    let smtp = SmtpServer::start(SmtpOpts::plain()).await;
    let gw = Gw::start(Spec::new(smtp.email_toml())).await;

    // First sign-in: no device yet, so the setup stage runs inline and sends at once to the
    // address on the account, without asking for one.
    let b = gw.browser();
    let v = api_until_email(&gw, &b, MFA_FLOW, "alice").await;
    assert_code_challenge(&v, "authenticator_email");
    assert!(
        info(&v)
            .iter()
            .any(|l| l == "We sent a code to the email address on your account."),
        "info: {v}"
    );
    let mail = smtp.nth(1).await;
    assert_eq!(mail.rcpt_tos, vec!["alice@example.com"]);
    mail.assert_shape(SUBJECT);
    let text = mail.text();
    assert!(text.contains(SITE_TITLE), "site title in the text:\n{text}");
    assert!(text.contains("10 minutes"), "lifetime in the text:\n{text}");
    assert!(
        mail.html().contains(SITE_TITLE),
        "site title in the HTML:\n{}",
        mail.html()
    );
    let code = mail.code();

    let r = post_resp(&b, MFA_FLOW, json!({ "code": code })).await;
    let token = assert_signed_in(&gw, &r);
    assert!(
        amr(&token).contains(&"password".to_string()) && amr(&token).len() >= 3,
        "amr: {:?}",
        amr(&token)
    );
    assert_session_is(&b, &gw, "alice").await;
    assert!(
        !gw.logs().contains(&code),
        "the code appears in the gateway's log"
    );

    // Second sign-in, another client: the saved device is used by the validate stage, which
    // sends to the saved address at once.
    let b2 = gw.browser();
    let v = api_until_email(&gw, &b2, MFA_FLOW, "alice").await;
    assert_code_challenge(&v, "authenticator_validate");
    assert!(
        !field_names(&v).contains(&"email".to_string()),
        "no address asked: {v}"
    );
    let mail2 = smtp.nth(2).await;
    assert_eq!(mail2.rcpt_tos, vec!["alice@example.com"]);
    mail2.assert_shape(SUBJECT);
    let code2 = mail2.code();
    // The code from the enrolment is of no use here.
    if code2 != code {
        let v = post(&b2, MFA_FLOW, json!({ "code": code })).await;
        assert_eq!(errors(&v), vec![WRONG_CODE], "old code: {v}");
    }
    let r = post_resp(&b2, MFA_FLOW, json!({ "code": code2 })).await;
    let token = assert_signed_in(&gw, &r);
    assert!(
        amr(&token).contains(&"authenticator_validate".to_string()),
        "amr: {:?}",
        amr(&token)
    );
    assert_session_is(&b2, &gw, "alice").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn address_typed_during_json_setup_is_used_by_later_sign_ins_without_asking() {
    let smtp = SmtpServer::start(SmtpOpts::plain()).await;
    let gw = Gw::start(Spec::new(smtp.email_toml())).await;

    let b = gw.browser();
    let v = api_until_email(&gw, &b, MFA_FLOW, "carol").await;
    assert_eq!(v["component"], "authenticator_email", "{v}");
    assert_eq!(field_names(&v), vec!["email"], "asked for an address: {v}");
    let field = &v["fields"][0];
    assert_eq!(field["type"], "email", "{v}");

    // A bad address is refused before anything is sent.
    let v = post(&b, MFA_FLOW, json!({ "email": "not an address" })).await;
    assert_eq!(field_names(&v), vec!["email"], "{v}");
    assert!(!errors(&v).is_empty(), "bad address error: {v}");
    assert_eq!(smtp.count(), 0);

    let v = post(&b, MFA_FLOW, json!({ "email": "carol@mail.example" })).await;
    assert_code_challenge(&v, "authenticator_email");
    assert!(
        info(&v)
            .iter()
            .any(|l| l == "We sent a code to carol@mail.example."),
        "info: {v}"
    );
    let code = smtp.nth(1).await.code();
    let r = post_resp(&b, MFA_FLOW, json!({ "code": code })).await;
    assert_signed_in(&gw, &r);

    let b2 = gw.browser();
    let v = api_until_email(&gw, &b2, MFA_FLOW, "carol").await;
    assert_code_challenge(&v, "authenticator_validate");
    let mail = smtp.nth(2).await;
    assert_eq!(mail.rcpt_tos, vec!["carol@mail.example"]);
    let r = post_resp(&b2, MFA_FLOW, json!({ "code": mail.code() })).await;
    assert_signed_in(&gw, &r);
    assert_session_is(&b2, &gw, "carol").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn validate_with_deny_and_no_device_ends_the_sign_in_without_sending() {
    let smtp = SmtpServer::start(SmtpOpts::plain()).await;
    let mut spec = Spec::new(smtp.email_toml());
    spec.not_configured_action = "deny".into();
    let gw = Gw::start(spec).await;

    let b = gw.browser();
    let r = b
        .get_json(&format!("{}?rd={}", api(MFA_FLOW), pct(&rd(&gw))))
        .await;
    assert_eq!(r.status, 200);
    post(&b, MFA_FLOW, json!({ "uid": "alice" })).await;
    let r = post_resp(&b, MFA_FLOW, json!({ "password": PW })).await;
    let v = r.json();
    assert_eq!(v["component"], "access_denied", "{v}");
    assert!(r.set_cookie_value(SESSION_COOKIE).is_none());
    smtp.assert_no_more_than(0, "deny without a device").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn html_validate_sends_to_the_saved_device_and_signs_in() {
    let smtp = SmtpServer::start(SmtpOpts::plain()).await;
    let gw = Gw::start(Spec::new(smtp.email_toml())).await;

    // Enrol over the API first.
    let b = gw.browser();
    api_until_email(&gw, &b, MFA_FLOW, "alice").await;
    let code = smtp.nth(1).await.code();
    let r = post_resp(&b, MFA_FLOW, json!({ "code": code })).await;
    assert_signed_in(&gw, &r);

    // Then sign in through the HTML face: the validate stage sends at once.
    let b2 = gw.browser();
    let first = html_page(
        &b2,
        &format!("{}?rd={}", html_flow(MFA_FLOW), pct(&rd(&gw))),
    )
    .await;
    let r = submit(&b2, &first, &[("uid", "alice")]).await;
    let page = next_page(&b2, &r).await;
    let r = submit(&b2, &page, &[("password", PW)]).await;
    let page = next_page(&b2, &r).await;
    assert!(has_input(&page.html, "code"), "{}", page.html);
    assert!(!has_input(&page.html, "email"), "{}", page.html);
    assert!(
        shows(
            &page.html,
            "We sent a code to the email address on your account."
        ),
        "{}",
        page.html
    );
    let mail = smtp.nth(2).await;
    assert_eq!(mail.rcpt_tos, vec!["alice@example.com"]);
    let r = submit(&b2, &page, &[("code", &mail.code())]).await;
    assert_eq!(r.status, 303, "{}", r.describe());
    assert_eq!(r.location(), rd(&gw));
    assert!(r.set_cookie_value(SESSION_COOKIE).is_some());
    assert_session_is(&b2, &gw, "alice").await;
}

//! The SMTP connection: plain, STARTTLS, implicit TLS, AUTH, per-stage settings, environment
//! overrides, and every way delivery can fail (recipient refused, server down, server silent).

use crate::harness::{reserved_port, run_cli_blocking, Browser, DeadPort, SESSION_COOKIE};
use crate::smtp::{Security, Silent, SmtpOpts, SmtpServer, SMTP_PASSWORD, SMTP_USER};
use crate::support::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// Signs alice in on the MFA flow with the code of message `n`.
async fn finish_with_mail(gw: &Gw, b: &Browser, smtp: &SmtpServer, n: usize) {
    let mail = smtp.nth(n).await;
    assert_eq!(mail.rcpt_tos, vec!["alice@example.com"]);
    mail.assert_shape(SUBJECT);
    let r = post_resp(b, MFA_FLOW, json!({ "code": mail.code() })).await;
    assert_signed_in(gw, &r);
}

/// Asserts the challenge reports a failed send and offers a retry, and claims nothing was sent.
fn assert_send_failed(v: &Value, component: &str) {
    assert_eq!(v["component"], component, "{v}");
    assert_eq!(errors(v), vec![SEND_FAILED], "send failure shown: {v}");
    assert!(
        actions(v).contains(&"resend".to_string()),
        "a way to retry: {v}"
    );
    assert!(
        !info(v).iter().any(|l| l.starts_with("We sent")),
        "must not claim a message was sent: {v}"
    );
    assert!(
        field_names(v).is_empty(),
        "no code box until a send succeeds: {v}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn plain_smtp_delivers_from_the_configured_sender_with_the_stage_subject_and_length() {
    let smtp = SmtpServer::start(SmtpOpts::plain()).await;
    let gw = Gw::start(
        Spec::new(smtp.email_toml())
            .setup_keys("subject = \"Your Testing Portal code\"\ncode_length = 8"),
    )
    .await;
    let b = gw.browser();
    api_until_email(&gw, &b, MFA_FLOW, "alice").await;
    let mail = smtp.nth(1).await;
    mail.assert_shape("Your Testing Portal code");
    let code = mail.code_of_len(8);
    assert!(!mail.tls);
    assert_eq!(mail.auth_user, None);
    assert_eq!(mail.mail_from, "portcullis@gateway.test");
    assert!(
        mail.header("from")
            .is_some_and(|f| f.contains("portcullis@gateway.test")),
        "From header: {:?}",
        mail.header("from")
    );
    assert!(
        mail.header("to")
            .is_some_and(|f| f.contains("alice@example.com")),
        "To header: {:?}",
        mail.header("to")
    );
    let r = post_resp(&b, MFA_FLOW, json!({ "code": code })).await;
    assert_signed_in(&gw, &r);
}

#[tokio::test(flavor = "multi_thread")]
async fn starttls_delivers_the_code_over_tls() {
    // The server refuses MAIL before STARTTLS, so delivery proves the upgrade happened.
    let smtp = SmtpServer::start(SmtpOpts::with(Security::StartTls)).await;
    let gw = Gw::start(Spec::new(smtp.email_toml())).await;
    let b = gw.browser();
    let v = api_until_email(&gw, &b, MFA_FLOW, "alice").await;
    assert_code_challenge(&v, "authenticator_email");
    let mail = smtp.nth(1).await;
    assert!(mail.tls, "the message must have arrived after STARTTLS");
    finish_with_mail(&gw, &b, &smtp, 1).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn starttls_with_an_untrusted_certificate_fails_the_send() {
    let smtp = SmtpServer::start(SmtpOpts::with(Security::StartTls)).await;
    let email = smtp
        .email_toml()
        .lines()
        .filter(|l| !l.starts_with("ca_file"))
        .collect::<Vec<_>>()
        .join("\n");
    let gw = Gw::start(Spec::new(email)).await;
    let b = gw.browser();
    let v = api_until_email(&gw, &b, MFA_FLOW, "alice").await;
    assert_send_failed(&v, "authenticator_email");
    smtp.assert_no_more_than(0, "untrusted certificate").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn implicit_tls_delivers_the_code() {
    let smtp = SmtpServer::start(SmtpOpts::with(Security::Implicit)).await;
    let gw = Gw::start(Spec::new(smtp.email_toml())).await;
    let b = gw.browser();
    let v = api_until_email(&gw, &b, MFA_FLOW, "alice").await;
    assert_code_challenge(&v, "authenticator_email");
    let mail = smtp.nth(1).await;
    assert!(mail.tls, "implicit TLS session");
    finish_with_mail(&gw, &b, &smtp, 1).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn smtp_auth_with_username_and_password_over_starttls_delivers() {
    let smtp = SmtpServer::start(SmtpOpts {
        auth: true,
        ..SmtpOpts::with(Security::StartTls)
    })
    .await;
    let gw = Gw::start(Spec::new(smtp.email_toml())).await;
    let b = gw.browser();
    let v = api_until_email(&gw, &b, MFA_FLOW, "alice").await;
    assert_code_challenge(&v, "authenticator_email");
    let mail = smtp.nth(1).await;
    assert_eq!(mail.auth_user.as_deref(), Some(SMTP_USER));
    assert!(mail.tls);
    finish_with_mail(&gw, &b, &smtp, 1).await;
    assert!(
        !gw.logs().contains(SMTP_PASSWORD),
        "the SMTP password appears in the log"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn smtp_auth_over_implicit_tls_delivers() {
    let smtp = SmtpServer::start(SmtpOpts {
        auth: true,
        ..SmtpOpts::with(Security::Implicit)
    })
    .await;
    let gw = Gw::start(Spec::new(smtp.email_toml())).await;
    let b = gw.browser();
    api_until_email(&gw, &b, MFA_FLOW, "alice").await;
    let mail = smtp.nth(1).await;
    assert_eq!(mail.auth_user.as_deref(), Some(SMTP_USER));
    finish_with_mail(&gw, &b, &smtp, 1).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_smtp_password_fails_the_send_and_logs_it() {
    let smtp = SmtpServer::start(SmtpOpts {
        auth: true,
        ..SmtpOpts::with(Security::StartTls)
    })
    .await;
    let email = smtp
        .email_toml()
        .replace(SMTP_PASSWORD, "not-the-smtp-password");
    let gw = Gw::start(Spec::new(email)).await;
    let b = gw.browser();
    let v = api_until_email(&gw, &b, MFA_FLOW, "alice").await;
    assert_send_failed(&v, "authenticator_email");
    smtp.assert_no_more_than(0, "wrong SMTP password").await;
    let logs = gw.logs();
    assert!(
        logs.contains("could not be sent") && logs.contains(&smtp.port.to_string()),
        "the SMTP error is logged for the operator:\n{logs}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn stage_specific_connection_is_used_instead_of_the_global_one() {
    let smtp = SmtpServer::start(SmtpOpts::plain()).await;
    let dead_port = DeadPort::new();
    let dead = dead_port.port();
    let global = format!("host = \"127.0.0.1\"\nport = {dead}\ntimeout = 3\n");
    let spec = Spec::new(global).setup_keys(&format!(
        "use_global_settings = false\n{}",
        smtp.email_toml()
    ));
    let gw = Gw::start(spec).await;

    let b = gw.browser();
    let v = api_until_email(&gw, &b, MFA_FLOW, "alice").await;
    assert_code_challenge(&v, "authenticator_email");
    finish_with_mail(&gw, &b, &smtp, 1).await;

    // The device remembers its setup stage: validation sends over the same connection.
    let b2 = gw.browser();
    let v = api_until_email(&gw, &b2, MFA_FLOW, "alice").await;
    assert_code_challenge(&v, "authenticator_validate");
    finish_with_mail(&gw, &b2, &smtp, 2).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn env_overrides_point_the_gateway_at_the_relay() {
    let smtp = SmtpServer::start(SmtpOpts {
        auth: true,
        ..SmtpOpts::plain()
    })
    .await;
    let dead_port = DeadPort::new();
    let dead = dead_port.port();
    // The file names a host that does not exist, a dead port and a wrong password; the
    // environment has the real ones.
    let file = format!(
        "host = \"mail.invalid\"\nport = {dead}\ntimeout = 5\nusername = \"{SMTP_USER}\"\npassword = \"wrong-in-file\"\ndanger_plaintext_password = true\n"
    );
    let spec = Spec::new(file)
        .env("PORTCULLIS_EMAIL__HOST", "127.0.0.1")
        .env("PORTCULLIS_EMAIL__PORT", &smtp.port.to_string())
        .env("PORTCULLIS_EMAIL__PASSWORD", SMTP_PASSWORD);
    let gw = Gw::start(spec).await;
    let b = gw.browser();
    let v = api_until_email(&gw, &b, MFA_FLOW, "alice").await;
    assert_code_challenge(&v, "authenticator_email");
    let mail = smtp.nth(1).await;
    assert_eq!(mail.auth_user.as_deref(), Some(SMTP_USER));
    finish_with_mail(&gw, &b, &smtp, 1).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_recipient_shows_send_failure_and_saves_no_device() {
    let smtp = SmtpServer::start(SmtpOpts {
        refuse: vec!["alice@example.com".into(), "carol@refused.example".into()],
        ..SmtpOpts::plain()
    })
    .await;
    let gw = Gw::start(Spec::new(smtp.email_toml())).await;

    let b = gw.browser();
    let v = api_until_email(&gw, &b, MFA_FLOW, "alice").await;
    assert_send_failed(&v, "authenticator_email");
    // No code went out, so there is no code to type, and one sent anyway is not an answer.
    assert!(field_names(&v).is_empty(), "{v}");
    let r = b
        .post_json(&api(MFA_FLOW), &json!({ "code": "123456" }))
        .await;
    assert_eq!(r.status, 400, "{}", r.describe());
    assert_eq!(r.json()["error"], "stage_mismatch", "{}", r.describe());
    smtp.assert_no_more_than(0, "refused recipient").await;
    let logs = gw.logs();
    assert!(
        logs.contains("could not be sent") && logs.contains("no such user"),
        "the SMTP answer is logged for the operator:\n{logs}"
    );

    // No half-enrolled device: the next sign-in runs the setup again instead of validating.
    let v = api_until_email(&gw, &gw.browser(), MFA_FLOW, "alice").await;
    assert_send_failed(&v, "authenticator_email");

    // The same for an address typed in: not saved on the account, asked for again.
    let b = gw.browser();
    let v = api_until_email(&gw, &b, MFA_FLOW, "carol").await;
    assert_eq!(field_names(&v), vec!["email"], "{v}");
    let v = post(&b, MFA_FLOW, json!({ "email": "carol@refused.example" })).await;
    assert_send_failed(&v, "authenticator_email");
    let show = gw.user_show("carol").await;
    assert!(
        show.contains("email=-"),
        "address saved after a failed send: {show}"
    );
    let v = api_until_email(&gw, &gw.browser(), MFA_FLOW, "carol").await;
    assert_eq!(
        field_names(&v),
        vec!["email"],
        "carol is asked for an address again: {v}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn server_down_shows_send_failure_and_a_retry_succeeds_once_it_is_up() {
    let port = reserved_port();
    let email = format!("host = \"127.0.0.1\"\nport = {port}\ntimeout = 5\n");
    let gw = Gw::start(Spec::new(email)).await;
    let b = gw.browser();
    let v = api_until_email(&gw, &b, MFA_FLOW, "alice").await;
    assert_send_failed(&v, "authenticator_email");

    // The relay comes up on that port; the user presses "send a new code".
    let smtp = SmtpServer::start(SmtpOpts {
        port: Some(port),
        ..SmtpOpts::plain()
    })
    .await;
    let v = post(&b, MFA_FLOW, json!({ "action": "resend" })).await;
    assert_code_challenge(&v, "authenticator_email");
    finish_with_mail(&gw, &b, &smtp, 1).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn server_that_never_answers_fails_within_the_timeout() {
    let silent = Silent::start().await;
    let email = format!(
        "host = \"127.0.0.1\"\nport = {}\ntimeout = 2\n",
        silent.port
    );
    let gw = Gw::start(Spec::new(email)).await;
    let b = gw.browser();
    let r = b
        .get_json(&format!(
            "{}?rd={}",
            api(MFA_FLOW),
            crate::harness::pct(&rd(&gw))
        ))
        .await;
    assert_eq!(r.status, 200);
    post(&b, MFA_FLOW, json!({ "uid": "alice" })).await;

    // This answer triggers the send.
    let started = Instant::now();
    let r = post_resp(&b, MFA_FLOW, json!({ "password": PW })).await;
    let took = started.elapsed();
    let v = r.json();
    assert_send_failed(&v, "authenticator_email");
    assert!(silent.accepted() >= 1, "the gateway never connected");
    assert!(
        took >= Duration::from_millis(1500),
        "gave up after {took:?}: before the 2 s timeout, so not because of it"
    );
    assert!(
        took <= Duration::from_secs(7),
        "the user waited {took:?} with timeout = 2"
    );
    assert!(r.set_cookie_value(SESSION_COOKIE).is_none());

    // A retry fails the same way, in time.
    let started = Instant::now();
    let v = post(&b, MFA_FLOW, json!({ "action": "resend" })).await;
    assert!(started.elapsed() <= Duration::from_secs(7));
    assert_send_failed(&v, "authenticator_email");
}

fn check_config(config: &str) -> crate::harness::CliOut {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("portcullis.toml");
    std::fs::write(&path, config).unwrap();
    run_cli_blocking(
        &[
            "--config".into(),
            path.display().to_string(),
            "check-config".into(),
        ],
        None,
        &[],
    )
}

fn config_with(spec: &Spec) -> String {
    let dir = std::env::temp_dir().join("portcullis-email-unused.db");
    config_toml(
        reserved_port(),
        "127.0.0.1:9".parse().unwrap(),
        &dir.display().to_string(),
        spec,
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn use_tls_and_use_ssl_together_are_refused_with_the_key_named() {
    let base = "host = \"localhost\"\nport = 2525\n";
    // Sanity: the same config without the conflict is accepted.
    let ok = config_with(&Spec::new(format!("{base}use_tls = true\n")));
    let out = tokio::task::spawn_blocking(move || check_config(&ok))
        .await
        .unwrap();
    assert_eq!(out.code, Some(0), "valid config refused: {}", out.all());

    let global = config_with(&Spec::new(format!(
        "{base}use_tls = true\nuse_ssl = true\n"
    )));
    let out = tokio::task::spawn_blocking(move || check_config(&global))
        .await
        .unwrap();
    assert_eq!(out.code, Some(2), "{}", out.all());
    assert!(out.all().contains("email.use_ssl"), "{}", out.all());

    let stage = config_with(&Spec::new(base.into()).setup_keys(&format!(
        "use_global_settings = false\n{base}use_tls = true\nuse_ssl = true"
    )));
    let out = tokio::task::spawn_blocking(move || check_config(&stage))
        .await
        .unwrap();
    assert_eq!(out.code, Some(2), "{}", out.all());
    assert!(
        out.all().contains("stages.email_setup.use_ssl"),
        "{}",
        out.all()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn use_tls_and_use_ssl_from_the_environment_are_refused_too() {
    let spec = Spec::new("host = \"localhost\"\nport = 2525\nuse_tls = true\n".into());
    let config = config_with(&spec);
    let out = tokio::task::spawn_blocking(move || {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("portcullis.toml");
        std::fs::write(&path, config).unwrap();
        run_cli_blocking(
            &[
                "--config".into(),
                path.display().to_string(),
                "check-config".into(),
            ],
            None,
            &[("PORTCULLIS_EMAIL__USE_SSL", "true")],
        )
    })
    .await
    .unwrap();
    assert_eq!(out.code, Some(2), "{}", out.all());
    assert!(out.all().contains("email.use_ssl"), "{}", out.all());
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_sends_count_against_max_challenges_sent() {
    let port = reserved_port();
    let email = format!("host = \"127.0.0.1\"\nport = {port}\ntimeout = 5\n");
    let gw = Gw::start(Spec::new(email).otp("max_challenges_sent = 2")).await;
    let b = gw.browser();
    let v = api_until_email(&gw, &b, MFA_FLOW, "alice").await;
    assert_send_failed(&v, "authenticator_email");
    let v = post(&b, MFA_FLOW, json!({ "action": "resend" })).await;
    assert_send_failed(&v, "authenticator_email");

    // The relay is up now, but both sends of this sign-in were used.
    let smtp = SmtpServer::start(SmtpOpts {
        port: Some(port),
        ..SmtpOpts::plain()
    })
    .await;
    let v = post(&b, MFA_FLOW, json!({ "action": "resend" })).await;
    assert_eq!(errors(&v), vec![TOO_MANY_SENDS], "{v}");
    smtp.assert_no_more_than(0, "after two failed sends").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn html_face_shows_the_send_failure_with_a_retry_button() {
    use crate::harness::{next_page, pct, submit};
    let smtp = SmtpServer::start(SmtpOpts {
        refuse: vec!["alice@example.com".into()],
        ..SmtpOpts::plain()
    })
    .await;
    let gw = Gw::start(Spec::new(smtp.email_toml())).await;
    let b = gw.browser();
    let first = html_page(&b, &format!("{}?rd={}", html_flow(MFA_FLOW), pct(&rd(&gw)))).await;
    let r = submit(&b, &first, &[("uid", "alice")]).await;
    let page = next_page(&b, &r).await;
    let r = submit(&b, &page, &[("password", PW)]).await;
    // The send happens while rendering the next step; its failure is on that page.
    let shown = if r.status == 303 {
        b.get_html(&r.location_absolute()).await.body
    } else {
        r.body.clone()
    };
    assert!(
        shows(&page_errors(&shown), SEND_FAILED),
        "send failure on the page:\n{shown}"
    );
    assert!(
        shown.contains(r#"value="resend""#),
        "a retry button:\n{shown}"
    );
    assert!(
        !shows(&shown, "We sent a code"),
        "must not claim a code was sent:\n{shown}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn use_tls_against_a_server_without_starttls_fails_instead_of_sending_in_clear() {
    let smtp = SmtpServer::start(SmtpOpts::plain()).await;
    let gw = Gw::start(Spec::new(format!("{}use_tls = true\n", smtp.email_toml()))).await;
    let b = gw.browser();
    let v = api_until_email(&gw, &b, MFA_FLOW, "alice").await;
    assert_send_failed(&v, "authenticator_email");
    smtp.assert_no_more_than(0, "STARTTLS required but not offered")
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn operator_templates_replace_the_built_in_message() {
    let smtp = SmtpServer::start(SmtpOpts::plain()).await;
    let spec = Spec::new(smtp.email_toml());
    let tpl = tempfile::tempdir().unwrap();
    std::fs::write(
        tpl.path().join("email_code.txt"),
        "CUSTOM TEXT for {{ site_title }}\n\n{{ code }}\n\nvalid {{ lifetime }}\n",
    )
    .unwrap();
    std::fs::write(
        tpl.path().join("email_code.html"),
        "<p>CUSTOM HTML {{ code }}</p>\n",
    )
    .unwrap();
    let gw = Gw::prepare(spec).await;
    // [ui] templates points at the operator's folder.
    let config = std::fs::read_to_string(&gw.config_path).unwrap().replace(
        &format!("site_title = \"{SITE_TITLE}\"\n"),
        &format!(
            "site_title = \"{SITE_TITLE}\"\ntemplates = {}\n",
            crate::harness::toml_str(&tpl.path().display().to_string())
        ),
    );
    std::fs::write(&gw.config_path, config).unwrap();
    let mut gw = gw;
    gw.launch().await;
    let b = gw.browser();
    api_until_email(&gw, &b, MFA_FLOW, "alice").await;
    let mail = smtp.nth(1).await;
    mail.assert_shape(SUBJECT);
    assert!(
        mail.text()
            .contains(&format!("CUSTOM TEXT for {SITE_TITLE}")),
        "{}",
        mail.text()
    );
    assert!(mail.html().contains("CUSTOM HTML"), "{}", mail.html());
    let r = post_resp(&b, MFA_FLOW, json!({ "code": mail.code() })).await;
    assert_signed_in(&gw, &r);
}

#[tokio::test(flavor = "multi_thread")]
async fn limits_above_100_are_refused_with_the_key_named() {
    for (keys, key) in [
        (
            "max_challenges_sent = 101",
            "stages.email_setup.max_challenges_sent",
        ),
        (
            "max_allowed_attempts = 101",
            "stages.email_setup.max_allowed_attempts",
        ),
    ] {
        let config = config_with(&Spec::new("host = \"localhost\"\n".into()).setup_keys(keys));
        let out = tokio::task::spawn_blocking(move || check_config(&config))
            .await
            .unwrap();
        assert_eq!(out.code, Some(2), "{keys}: {}", out.all());
        assert!(out.all().contains(key), "{keys}: {}", out.all());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn link_that_could_not_be_sent_is_withdrawn_and_the_page_does_not_wait_for_it() {
    let smtp = SmtpServer::start(SmtpOpts {
        refuse: vec!["alice@example.com".into()],
        ..SmtpOpts::plain()
    })
    .await;
    let gw = Gw::start(Spec::new(smtp.email_toml()).otp("mode = \"link\"")).await;
    let b = gw.browser();
    let v = api_until_email(&gw, &b, MFA_FLOW, "alice").await;
    assert_send_failed(&v, "authenticator_email");
    assert!(
        v.get("poll").is_none(),
        "the page must not wait for a link that never went out: {v}"
    );
    // Retrying keeps saying so, and still nothing pretends to be on its way.
    let v = post(&b, MFA_FLOW, json!({ "action": "resend" })).await;
    assert_send_failed(&v, "authenticator_email");
    assert!(v.get("poll").is_none(), "{v}");
}

//! The exact requests each provider receives: Twilio's Messages API and the generic JSON
//! endpoint (bearer and basic auth), with the built-in text and with a custom mapping.

use crate::harness::*;
use crate::provider::{Recorded, SmsServer};
use crate::support::*;
use base64::Engine as _;
use serde_json::json;

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

fn form_keys(r: &Recorded) -> Vec<String> {
    let mut k: Vec<String> = r.form().into_iter().map(|(k, _)| k).collect();
    k.sort();
    k
}

fn assert_six_digits(code: &str) {
    assert!(
        code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()),
        "expected a 6-digit code, got {code:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn twilio_send_is_a_basic_auth_form_post_to_the_messages_api() {
    let sms = SmsServer::start().await;
    let gw = Conf::new(twilio(&sms.base())).start().await;

    let req = enrol(&gw, &sms, "bob", BOB_PW, NUMBER).await;

    assert_eq!(req.method, "POST");
    assert_eq!(
        req.path,
        format!("/2010-04-01/Accounts/{SID}/Messages.json")
    );
    assert!(
        req.header("content-type")
            .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded")),
        "content type: {:?}",
        req.header("content-type")
    );
    assert_eq!(
        req.header("authorization"),
        Some(basic(SID, TOKEN).as_str())
    );
    assert_eq!(
        form_keys(&req),
        vec!["Body", "From", "To"],
        "{:?}",
        req.body_text()
    );
    assert_eq!(req.form_field("To"), NUMBER_E164);
    assert_eq!(req.form_field("From"), FROM);
    let code = req.code();
    assert_six_digits(&code);
    assert_eq!(
        req.form_field("Body"),
        format!("Your Portcullis code is {code}")
    );

    assert_eq!(sms.count(), 1, "one enrolment, one SMS");
    assert_eq!(user_phone(&gw, "bob").await, NUMBER_E164);
    assert_log_free_of(&gw, &code);
}

#[tokio::test(flavor = "multi_thread")]
async fn generic_send_is_the_default_json_payload_with_a_bearer_token() {
    let sms = SmsServer::start().await;
    let url = format!("{}/api/v1/send", sms.base());
    let gw = Conf::new(generic_bearer(&url, "bearer-tok-123"))
        .start()
        .await;

    let req = enrol(&gw, &sms, "bob", BOB_PW, NUMBER).await;

    assert_eq!(req.method, "POST");
    assert_eq!(req.path, "/api/v1/send");
    assert!(
        req.header("content-type")
            .is_some_and(|c| c.starts_with("application/json")),
        "content type: {:?}",
        req.header("content-type")
    );
    assert_eq!(req.header("authorization"), Some("Bearer bearer-tok-123"));
    let code = req.code();
    assert_six_digits(&code);
    assert_eq!(
        req.json(),
        json!({
            "From": FROM,
            "To": NUMBER_E164,
            "Body": code,
            "Message": format!("Your Portcullis code is {code}"),
        })
    );
    assert_eq!(user_phone(&gw, "bob").await, NUMBER_E164);
    assert_log_free_of(&gw, &code);
}

#[tokio::test(flavor = "multi_thread")]
async fn generic_send_with_basic_auth_carries_username_and_password() {
    let sms = SmsServer::start().await;
    let url = format!("{}/send", sms.base());
    let gw = Conf::new(generic_basic(&url, "gateway-user", "gw-pass:word"))
        .start()
        .await;

    let req = enrol(&gw, &sms, "alice", ALICE_PW, OTHER).await;

    assert_eq!(req.path, "/send");
    assert_eq!(
        req.header("authorization"),
        Some(basic("gateway-user", "gw-pass:word").as_str())
    );
    let code = req.code();
    assert_eq!(
        req.json(),
        json!({
            "From": FROM,
            "To": OTHER_E164,
            "Body": code,
            "Message": format!("Your Portcullis code is {code}"),
        })
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn twilio_mapping_shapes_the_message_text() {
    let sms = SmsServer::start().await;
    let mut conf = Conf::new(twilio(&sms.base())).sms(
        "mapping",
        &toml_str(
            "{{ brand.branding_title }}: {{ token }} for {{ device.phone_number }} from {{ stage.from_number }} ({{ site_title }})",
        ),
    );
    conf.extra = "[ui]\nsite_title = \"Acme Gate\"\n".into();
    let gw = conf.start().await;

    let (b, req) = start_enrol(&gw, &sms, "bob", BOB_PW, NUMBER).await;

    assert_eq!(
        req.path,
        format!("/2010-04-01/Accounts/{SID}/Messages.json")
    );
    assert_eq!(
        req.header("authorization"),
        Some(basic(SID, TOKEN).as_str())
    );
    assert_eq!(req.form_field("To"), NUMBER_E164);
    assert_eq!(req.form_field("From"), FROM);
    let body = req.form_field("Body");
    let re =
        regex::Regex::new(r"^Acme Gate: (\d{6}) for \+41791234567 from \+15550001 \(Acme Gate\)$")
            .unwrap();
    let code = re
        .captures(&body)
        .unwrap_or_else(|| panic!("the mapped Body is not as configured: {body:?}"))[1]
        .to_string();
    finish_with_code(&b, ENROL, &code).await;
    assert_log_free_of(&gw, &code);
}

#[tokio::test(flavor = "multi_thread")]
async fn generic_mapping_is_the_whole_json_payload() {
    let sms = SmsServer::start().await;
    let url = format!("{}/send", sms.base());
    let mapping = r#"'''{"to": "{{ device.phone_number }}", "sender": "{{ stage.from_number }}", "text": "{{ message }}", "otp": "{{ token }}", "brand": "{{ brand.branding_title }}"}'''"#;
    let mut conf = Conf::new(generic_bearer(&url, "tok")).sms("mapping", mapping);
    conf.extra = "[ui]\nsite_title = \"Acme Gate\"\n".into();
    let gw = conf.start().await;

    let (b, req) = start_enrol(&gw, &sms, "bob", BOB_PW, NUMBER).await;

    assert_eq!(req.header("authorization"), Some("Bearer tok"));
    let v = req.json();
    let code = v["otp"]
        .as_str()
        .unwrap_or_else(|| panic!("no otp in the mapped payload: {v}"))
        .to_string();
    assert_six_digits(&code);
    assert_eq!(
        v,
        json!({
            "to": NUMBER_E164,
            "sender": FROM,
            "text": format!("Your Acme Gate code is {code}"),
            "otp": code,
            "brand": "Acme Gate",
        })
    );
    finish_with_code(&b, ENROL, &code).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn twilio_auth_token_can_come_from_the_environment() {
    const ENV_TOKEN: &str = "token-from-the-environment-77";
    let env = [("PORTCULLIS_STAGES__SMS__AUTH_TOKEN", ENV_TOKEN)];
    let sms = SmsServer::start().await;
    let mut provider = twilio(&sms.base());
    provider.remove("auth_token");
    let conf = Conf::new(provider);
    let gw = Gateway::prepare(Setup {
        users: Vec::new(),
        extra_toml: conf.toml(),
        ..Setup::default()
    })
    .await;
    let config = gw.config_path.display().to_string();

    // Without the variable the config is refused, naming the key.
    let args: Vec<String> = vec!["--config".into(), config.clone(), "check-config".into()];
    let a = args.clone();
    let out = tokio::task::spawn_blocking(move || run_cli_blocking(&a, None, &[]))
        .await
        .unwrap();
    assert!(!out.ok(), "a Twilio stage without a token was accepted");
    assert!(out.all().contains("auth_token"), "{}", out.all());
    let out = tokio::task::spawn_blocking(move || run_cli_blocking(&args, None, &env))
        .await
        .unwrap();
    assert!(
        out.ok(),
        "the token from the environment was not used: {}",
        out.all()
    );

    let add: Vec<String> = ["--config", &config, "user", "add", "bob", "--group", "g"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let out = tokio::task::spawn_blocking(move || {
        run_cli_blocking(&add, Some(&format!("{BOB_PW}\n")), &env)
    })
    .await
    .unwrap();
    assert!(out.ok(), "user add: {}", out.all());

    let mut gw = gw;
    gw.setup.env = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let gw = gw.launch().await;
    let b = gw.browser();

    let v = past_password(&b, ENROL, "bob", BOB_PW).await;
    assert_asks_phone(&v);
    let v = post(&b, ENROL, json!({ "phone": NUMBER })).await;
    assert_asks_code(&v, "authenticator_sms");
    let req = sms.wait_for(1).await[0].clone();
    assert_eq!(
        req.header("authorization"),
        Some(basic(SID, ENV_TOKEN).as_str())
    );
    assert!(
        !gw.logs().contains(ENV_TOKEN),
        "the gateway logged the auth token"
    );
    finish_with_code(&b, ENROL, &req.code()).await;
}

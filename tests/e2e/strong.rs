//! TOTP and recovery codes through the real gateway: setup on the HTML face (inline SVG QR,
//! base32 key, strict CSP) and the JSON face (`secret`, `otpauth_url`), validation with a code
//! computed from the shown secret, and `portcullis user recovery-codes`.

use crate::harness::*;
use portcullis::flow::totp::{self, Algorithm, Params};
use serde_json::{json, Value};

const EXTRA: &str = r#"
[[flows]]
slug = "add-app"
title = "Add an authenticator app"
designation = "authentication"
stages = ["identify", "password", "app", "login"]
[[flows]]
slug = "strong"
title = "Sign in"
designation = "authentication"
stages = ["identify", "password", "second", "login"]
[stages.app]
kind = "authenticator_totp"
[stages.codes]
kind = "authenticator_static"
token_count = 4
[stages.second]
kind = "authenticator_validate"
device_classes = ["totp", "static"]
not_configured_action = "deny"
"#;

const SIX: Params = Params {
    digits: 6,
    period: 30,
    algorithm: Algorithm::Sha1,
};

async fn gateway() -> Gateway {
    Gateway::start_with(Setup {
        extra_toml: EXTRA.into(),
        ..Setup::default()
    })
    .await
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The code `offset` steps from now for the base32 `secret`, as an app would show it.
fn code(secret: &str, offset: i64) -> String {
    let raw = data_encoding::BASE32_NOPAD
        .decode(secret.as_bytes())
        .unwrap();
    let step = totp::step(now(), 30).checked_add_signed(offset).unwrap();
    totp::code(&raw, step, &SIX)
}

fn api(slug: &str) -> String {
    format!("/.portcullis/api/flow/{slug}")
}

/// Identification and password on the JSON face of `slug`; the next challenge.
async fn signed_in_json(b: &Browser, slug: &str) -> Value {
    let r = b.get_json(&api(slug)).await;
    assert_eq!(r.status, 200, "{}", r.describe());
    b.post_json(&api(slug), &json!({ "uid": "alice" })).await;
    let r = b
        .post_json(&api(slug), &json!({ "password": ALICE_PW }))
        .await;
    assert_eq!(r.status, 200, "{}", r.describe());
    r.json()
}

#[tokio::test(flavor = "multi_thread")]
async fn totp_enrols_on_the_json_face_and_validates_with_a_computed_code_once() {
    let gw = gateway().await;
    let b = gw.browser();
    let v = signed_in_json(&b, "add-app").await;
    assert_eq!(v["component"], "authenticator_totp", "{v}");
    let secret = v["secret"]
        .as_str()
        .unwrap_or_else(|| panic!("{v}"))
        .to_string();
    let url = v["otpauth_url"].as_str().unwrap_or_else(|| panic!("{v}"));
    assert!(url.starts_with("otpauth://totp/"), "{url}");
    assert!(url.contains(&format!("secret={secret}&")), "{url}");
    assert!(
        !v.to_string().contains("<svg"),
        "the JSON face carries no markup"
    );
    let r = b
        .post_json(&api("add-app"), &json!({ "code": code(&secret, 0) }))
        .await;
    assert_eq!(r.json()["component"], "redirect", "{}", r.describe());

    // The next step's code (one step of skew): the enrolling step's code is used up.
    let b2 = gw.browser();
    let v = signed_in_json(&b2, "strong").await;
    assert_eq!(v["fields"][0]["name"], "code", "{v}");
    assert!(
        v.get("actions")
            .is_none_or(|a| !a.to_string().contains("resend")),
        "{v}"
    );
    let next = code(&secret, 1);
    let r = b2.post_json(&api("strong"), &json!({ "code": next })).await;
    assert_eq!(r.json()["component"], "redirect", "{}", r.describe());
    let session = r.set_cookie_value(SESSION_COOKIE).expect("session");
    let (_, claims) = jwt_parts(&session);
    let amr: Vec<&str> = claims["amr"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(amr.contains(&"otp") && amr.contains(&"mfa"), "{amr:?}");
    assert!(claims["factors"].to_string().contains("totp"), "{claims}");

    let b3 = gw.browser();
    signed_in_json(&b3, "strong").await;
    let r = b3.post_json(&api("strong"), &json!({ "code": next })).await;
    let v = r.json();
    assert_eq!(v["component"], "authenticator_validate", "{v}");
    assert!(
        v["errors"][0].as_str().unwrap().contains("already used"),
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn totp_setup_page_shows_an_inline_svg_qr_and_the_key_under_the_strict_csp() {
    let gw = gateway().await;
    let b = gw.browser();
    let first = b.get_html("/.portcullis/flow/add-app").await;
    let page = form_page(&first);
    let page = next_page(&b, &submit(&b, &page, &[("uid", "alice")]).await).await;
    let r = submit(&b, &page, &[("password", ALICE_PW)]).await;
    let page = next_page(&b, &r).await;
    assert!(page.html.contains("<svg role=\"img\""), "{}", page.html);
    assert!(!page.html.contains("<script"), "no script");
    assert!(!page.html.contains("<img"), "no image from elsewhere");
    let key = page
        .html
        .split("<code class=\"secret\">")
        .nth(1)
        .and_then(|s| s.split("</code>").next())
        .unwrap_or_else(|| panic!("no key shown:\n{}", page.html))
        .to_string();
    assert_eq!(key.len(), 32, "{key}");
    let shown = b.get_html(&page.url).await;
    let csp = shown.header("content-security-policy").unwrap_or_default();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    let r = submit(&b, &page, &[("code", &code(&key, 0))]).await;
    assert_eq!(r.status, 303, "{}", r.describe());
    assert!(
        r.set_cookie_value(SESSION_COOKIE).is_some(),
        "{}",
        r.describe()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn recovery_codes_from_the_cli_sign_in_once_each() {
    let gw = gateway().await;
    let out = gw.cli(&["user", "recovery-codes", "alice"], None).await;
    assert!(out.ok(), "{out:?}");
    let codes: Vec<String> = out
        .stdout
        .lines()
        .map(str::trim)
        .filter(|l| l.len() == 12 && l.bytes().all(|c| c.is_ascii_alphanumeric()))
        .map(str::to_string)
        .collect();
    assert_eq!(
        codes.len(),
        4,
        "count from the static stage: {}",
        out.stdout
    );

    let b = gw.browser();
    let v = signed_in_json(&b, "strong").await;
    assert_eq!(v["fields"][0]["label"], "Recovery code", "{v}");
    let r = b
        .post_json(&api("strong"), &json!({ "code": codes[0] }))
        .await;
    let v = r.json();
    assert!(
        v["info"].to_string().contains("3 recovery codes left"),
        "{v}"
    );
    let r = b
        .post_json(&api("strong"), &json!({ "continue": "yes" }))
        .await;
    assert_eq!(r.json()["component"], "redirect", "{}", r.describe());

    let b2 = gw.browser();
    signed_in_json(&b2, "strong").await;
    let r = b2
        .post_json(&api("strong"), &json!({ "code": codes[0] }))
        .await;
    assert_eq!(
        r.json()["errors"].as_array().map(Vec::len),
        Some(1),
        "used once"
    );

    // A new set replaces the old one.
    let again = gw.cli(&["user", "recovery-codes", "alice"], None).await;
    assert!(again.ok(), "{again:?}");
    let r = b2
        .post_json(&api("strong"), &json!({ "code": codes[1] }))
        .await;
    assert_eq!(
        r.json()["errors"].as_array().map(Vec::len),
        Some(1),
        "old set gone"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_or_damaged_device_key_with_totp_devices_stops_the_gateway_naming_the_file() {
    let mut gw = gateway().await;
    let key_file = gw.db_path.parent().unwrap().join("device-key.json");
    assert!(key_file.exists(), "created at the first start");
    let b = gw.browser();
    let v = signed_in_json(&b, "add-app").await;
    let secret = v["secret"].as_str().unwrap().to_string();
    let r = b
        .post_json(&api("add-app"), &json!({ "code": code(&secret, 0) }))
        .await;
    assert_eq!(r.json()["component"], "redirect", "{}", r.describe());
    gw.stop().await;

    // The same config on a port of its own (the harness holds the gateway's listener).
    let text = std::fs::read_to_string(&gw.config_path).unwrap();
    let own = text.replace(
        &format!("127.0.0.1:{}", gw.port),
        &format!("127.0.0.1:{}", reserved_port()),
    );
    assert_ne!(own, text, "the listen address was replaced");
    let other = gw.config_path.with_file_name("refusing.toml");
    std::fs::write(&other, own).unwrap();

    let kept = std::fs::read(&key_file).unwrap();
    std::fs::remove_file(&key_file).unwrap();
    let out = serve_must_refuse(&other);
    assert!(
        out.stderr.contains("device-key.json") && out.stderr.contains("missing"),
        "{out:?}"
    );
    assert!(!key_file.exists(), "no new key replaces the lost one");

    std::fs::write(&key_file, b"{\"key\": \"not a key\"}").unwrap();
    let out = serve_must_refuse(&other);
    assert!(
        out.stderr.contains("device-key.json") && out.stderr.contains("damaged"),
        "{out:?}"
    );
    assert!(
        !out.stderr.contains("not a key"),
        "never prints the file's content"
    );

    // Restored from the backup, the enrolled app works again.
    std::fs::write(&key_file, kept).unwrap();
    gw.start_again().await;
    let b = gw.browser();
    signed_in_json(&b, "strong").await;
    let r = b
        .post_json(&api("strong"), &json!({ "code": code(&secret, 1) }))
        .await;
    assert_eq!(r.json()["component"], "redirect", "{}", r.describe());
}

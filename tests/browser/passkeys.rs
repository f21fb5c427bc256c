//! Passkeys in a real browser: headless Chromium with WebDriver's virtual authenticator
//! (`/webauthn/authenticator`), through the gateway's real pages and its one script. The app
//! is served on `localhost`, the one plain-HTTP origin browsers run WebAuthn on.

use super::chrome::{Chrome, Options};
use super::harness::*;
use serde_json::{json, Value};

const PASSKEY_FLOW: &str = "passkeys";
const ENROL_FLOW: &str = "enrol-passkey";

/// `localhost` serves the whoami app behind a flow whose identification offers passkeys,
/// then asks for the password and a WebAuthn second factor; `enrol-passkey` adds a passkey
/// after the password. The relying party's origin names the port, written in after the
/// listener is bound.
fn setup(extra: &str) -> Setup {
    Setup {
        extra_toml: format!(
            r#"
[webauthn]
rp_id = "localhost"
origins = ["http://localhost:1"]

[[apps]]
name = "passkeys"
hosts = ["localhost"]
upstream = "builtin:whoami"
flow = "{PASSKEY_FLOW}"

[[flows]]
slug = "{PASSKEY_FLOW}"
designation = "authentication"
stages = ["pk-identify", "password", "pk-mfa", "login"]

[[flows]]
slug = "{ENROL_FLOW}"
designation = "authentication"
stages = ["identify", "password", "pk-setup", "login"]

[stages.pk-identify]
kind = "identification"
user_fields = ["username"]
webauthn_stage = "pk-mfa"

[stages.pk-mfa]
kind = "authenticator_validate"
device_classes = ["webauthn"]
not_configured_action = "configure"
configure_stage = "pk-setup"
webauthn_user_verification = "preferred"

[stages.pk-setup]
kind = "authenticator_webauthn"
user_verification = "required"
resident_key_requirement = "required"
friendly_name = "Laptop passkey"
{extra}
"#
        ),
        ..Setup::default()
    }
}

/// The gateway of [`setup`], with the origin's real port.
async fn gateway(extra: &str) -> Gateway {
    let gw = Gateway::prepare(setup(extra)).await;
    let text = std::fs::read_to_string(&gw.config_path).unwrap();
    let text = text.replace(
        "\"http://localhost:1\"",
        &format!("\"http://localhost:{}\"", gw.port),
    );
    std::fs::write(&gw.config_path, text).unwrap();
    gw.launch().await
}

/// A platform authenticator that stores passkeys and verifies the user (as a laptop's
/// fingerprint reader does, always saying yes).
async fn authenticator(chrome: &Chrome) -> String {
    let v = chrome
        .cmd(
            reqwest::Method::POST,
            "/webauthn/authenticator",
            Some(json!({
                "protocol": "ctap2",
                "transport": "internal",
                "hasResidentKey": true,
                "hasUserVerification": true,
                "isUserVerified": true,
                "isUserConsenting": true,
            })),
        )
        .await;
    v.as_str().expect("authenticator id").to_string()
}

async fn credentials(chrome: &Chrome, auth: &str) -> Vec<Value> {
    let v = chrome
        .cmd(
            reqwest::Method::GET,
            &format!("/webauthn/authenticator/{auth}/credentials"),
            None,
        )
        .await;
    v.as_array().cloned().unwrap_or_default()
}

async fn url_base(gw: &Gateway) -> String {
    format!("http://localhost:{}", gw.port)
}

/// Signs alice in with her password on the enrolment flow and adds a passkey on the real
/// setup page; returns the authenticator holding it.
async fn enrol_alice(gw: &Gateway, chrome: &Chrome) -> String {
    let auth = authenticator(chrome).await;
    let base = url_base(gw).await;
    chrome
        .go(&format!(
            "{base}/.portcullis/flow/{ENROL_FLOW}?rd=/enrolled"
        ))
        .await;
    chrome.type_into("#f-uid", "alice").await;
    chrome.click("button[type=submit]").await;
    chrome
        .wait_text(|t| t.contains("Signing in as alice"))
        .await;
    chrome.type_into("#f-password", ALICE_PW).await;
    chrome.click("button[type=submit]").await;
    let page = chrome.wait_text(|t| t.contains("Add a passkey")).await;
    assert!(page.contains("Create a passkey"), "{page}");
    assert!(
        !page.contains("needs JavaScript"),
        "with JavaScript on, the noscript note stays hidden: {page}"
    );
    chrome.screenshot("passkey-setup").await;
    chrome.click("#webauthn-start").await;
    let at = chrome.wait_url(|u| u.ends_with("/enrolled")).await;
    assert!(at.ends_with("/enrolled"), "registered and signed in: {at}");
    let creds = credentials(chrome, &auth).await;
    assert_eq!(
        creds.len(),
        1,
        "one passkey on the authenticator: {creds:?}"
    );
    assert_eq!(creds[0]["isResidentCredential"], true);
    assert_eq!(creds[0]["rpId"], "localhost");
    auth
}

/// Signs out on the gateway's sign-out page, as a person would.
async fn sign_out(gw: &Gateway, chrome: &Chrome) {
    let base = url_base(gw).await;
    chrome.go(&format!("{base}/.portcullis/logout")).await;
    chrome.wait_text(|t| t.contains("signed in as")).await;
    chrome.click("button[type=submit]").await;
    let page = chrome
        .wait_text(|t| t.contains("You have signed out"))
        .await;
    assert!(page.contains("You have signed out"), "{page}");
}

/// Takes the authenticator away (the person's laptop is closed) and returns its passkeys.
async fn detach(chrome: &Chrome, auth: &str) -> Vec<Value> {
    let creds = credentials(chrome, auth).await;
    chrome
        .cmd(
            reqwest::Method::DELETE,
            &format!("/webauthn/authenticator/{auth}"),
            None,
        )
        .await;
    creds
}

/// A new authenticator holding `creds`.
async fn attach(chrome: &Chrome, creds: &[Value]) -> String {
    let auth = authenticator(chrome).await;
    for c in creds {
        chrome
            .cmd(
                reqwest::Method::POST,
                &format!("/webauthn/authenticator/{auth}/credential"),
                Some(c.clone()),
            )
            .await;
    }
    auth
}

#[tokio::test(flavor = "multi_thread")]
async fn a_passkey_registered_on_the_setup_page_signs_in_without_a_password() {
    let gw = gateway("").await;
    let chrome = Chrome::start_with(Options::mapping(&[(APP, gw.port)])).await;
    let auth = enrol_alice(&gw, &chrome).await;
    assert!(
        gw.logs().contains("passkey registered"),
        "the device was stored after the verified registration"
    );
    let creds = detach(&chrome, &auth).await;

    // The sign-in page, no authenticator at hand yet: the button and the autofill hint.
    sign_out(&gw, &chrome).await;
    let base = url_base(&gw).await;
    chrome.go(&format!("{base}/reports?q=1")).await;
    let page = chrome
        .wait_text(|t| t.contains("Sign in with a passkey"))
        .await;
    assert!(page.contains("Sign in with a passkey"), "{page}");
    let hint = chrome
        .cmd(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({"script": "return document.getElementById('f-uid').getAttribute('autocomplete')", "args": []})),
        )
        .await;
    assert_eq!(
        hint, "username webauthn",
        "passkey autofill on the username field"
    );
    chrome.screenshot("passkey-signin").await;

    // The button: no name typed, no password, no second step.
    let auth = attach(&chrome, &creds).await;
    chrome.click("#webauthn-start").await;
    let at = chrome.wait_url(|u| u.ends_with("/reports?q=1")).await;
    assert!(
        at.ends_with("/reports?q=1"),
        "signed in by the passkey alone: {at}"
    );
    let page = chrome.wait_text(|t| t.contains("Alice")).await;
    assert!(
        page.contains("Hello, Alice A"),
        "the app sees alice: {page}"
    );
    let count = credentials(&chrome, &auth).await[0]["signCount"].as_u64();
    assert!(
        count >= Some(1),
        "the authenticator counted the signature: {count:?}"
    );

    // Autofill: with the passkey at hand, the browser offers it in the username field
    // (Chromium's virtual authenticator picks it at once).
    sign_out(&gw, &chrome).await;
    chrome.go(&format!("{base}/autofill")).await;
    let at = chrome.wait_url(|u| u.ends_with("/autofill")).await;
    assert!(
        at.ends_with("/autofill"),
        "signed in through autofill: {at}"
    );
    assert_eq!(gw.logs().matches("signed in with a passkey").count(), 2);
    assert!(!gw.logs().contains(ALICE_PW));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_passkey_whose_signature_counter_goes_back_is_refused() {
    let gw = gateway("").await;
    let chrome = Chrome::start_with(Options::mapping(&[(APP, gw.port)])).await;
    let auth = enrol_alice(&gw, &chrome).await;
    let base = url_base(&gw).await;

    // One good sign-in (through autofill) moves the stored counter up.
    sign_out(&gw, &chrome).await;
    chrome.go(&format!("{base}/one")).await;
    assert!(chrome
        .wait_url(|u| u.ends_with("/one"))
        .await
        .ends_with("/one"));

    // A copy of the key whose counter is behind: the same credential, signCount reset.
    let cred = credentials(&chrome, &auth).await.remove(0);
    let id = cred["credentialId"].as_str().unwrap().to_string();
    chrome
        .cmd(
            reqwest::Method::DELETE,
            &format!("/webauthn/authenticator/{auth}/credentials/{id}"),
            None,
        )
        .await;
    let mut copy = cred.clone();
    copy["signCount"] = json!(0);
    chrome
        .cmd(
            reqwest::Method::POST,
            &format!("/webauthn/authenticator/{auth}/credential"),
            Some(copy),
        )
        .await;

    sign_out(&gw, &chrome).await;
    chrome.go(&format!("{base}/two")).await;
    let page = chrome
        .wait_text(|t| t.contains("may have been copied"))
        .await;
    assert!(page.contains("may have been copied"), "{page}");
    chrome.screenshot("passkey-counter-refused").await;
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    assert!(
        !chrome.url().await.ends_with("/two"),
        "not signed in with the cloned key"
    );
    // The button tries again, and the copy is refused again.
    chrome.click("#webauthn-start").await;
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let page = chrome
        .wait_text(|t| t.contains("may have been copied"))
        .await;
    assert!(page.contains("may have been copied"), "{page}");
    assert!(!chrome.url().await.ends_with("/two"));
    let logs = gw.logs();
    assert!(
        logs.contains("signature counter did not increase"),
        "the refusal is logged"
    );
    assert!(
        !logs.contains(cred["privateKey"].as_str().unwrap()),
        "no key material in the log"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_passkey_pages_say_when_javascript_is_off_and_other_pages_load_no_script() {
    let gw = gateway("").await;
    let mut opts = Options::mapping(&[(APP, gw.port)]);
    opts.javascript = false;
    let chrome = Chrome::start_with(opts).await;
    let base = url_base(&gw).await;
    chrome.go(&format!("{base}/x")).await;
    let page = chrome.wait_text(|t| t.contains("needs JavaScript")).await;
    assert!(
        page.contains("Signing in with a passkey needs JavaScript"),
        "{page}"
    );
    assert!(
        !page.contains("Sign in with a passkey\n"),
        "the passkey button stays hidden without JavaScript: {page}"
    );

    // Over HTTP: the passkey page may load the gateway's script and nothing else; the
    // password page loads none.
    let b = Browser::new(gw.port);
    let first = b
        .get_html(&b.url_on("localhost", "/.portcullis/flow/passkeys?rd=/x"))
        .await;
    let csp = first.header("content-security-policy").unwrap_or_default();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(csp.contains("default-src 'none'"), "{csp}");
    let script_src: Vec<&str> = csp
        .split(';')
        .map(str::trim)
        .filter(|d| d.starts_with("script-src"))
        .collect();
    assert_eq!(
        script_src,
        ["script-src 'self'"],
        "no inline code, no other origin: {csp}"
    );
    assert!(first
        .body
        .contains("<script src=\"/.portcullis/webauthn.js\" defer></script>"));
    let js = b
        .get_html(&b.url_on("localhost", "/.portcullis/webauthn.js"))
        .await;
    assert_eq!(js.status, 200);
    assert!(
        js.content_type().starts_with("text/javascript"),
        "{}",
        js.content_type()
    );
    assert_eq!(
        js.header("x-content-type-options").as_deref(),
        Some("nosniff")
    );

    let plain = b
        .get_html(&b.url_on(APP, "/.portcullis/flow/default-authentication?rd=/"))
        .await;
    let csp = plain.header("content-security-policy").unwrap_or_default();
    assert!(!csp.contains("script-src"), "{csp}");
    assert!(!plain.body.contains("<script"), "{}", plain.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_json_face_carries_the_public_key_options_and_refuses_forged_answers() {
    // Three forged passkey answers from one address would trip regulation's address ban
    // (issue 14) before bob's sign-in below; the ban itself is tested in tests/e2e/regulation.rs.
    let gw = gateway("\n[regulation]\nmax_retries = 10\n").await;
    let b = Browser::new(gw.port);
    let api = |slug: &str| b.url_on("localhost", &format!("/.portcullis/api/flow/{slug}"));

    // Identification offers a discoverable sign-in with conditional mediation.
    let v = b
        .get_json(&format!("{}?rd=/x", api(PASSKEY_FLOW)))
        .await
        .json();
    assert_eq!(v["component"], "identification", "{v}");
    assert_eq!(v["webauthn"]["mode"], "get", "{v}");
    assert_eq!(v["webauthn"]["mediation"], "conditional", "{v}");
    let pk = &v["webauthn"]["publicKey"];
    assert_eq!(pk["rpId"], "localhost", "{v}");
    assert_eq!(pk["userVerification"], "required", "{v}");
    assert_eq!(pk["allowCredentials"], json!([]), "{v}");
    let first = pk["challenge"].as_str().unwrap().to_string();
    assert!(first.len() >= 43, "a 32-byte challenge: {first}");
    let fields: Vec<&str> = v["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["uid", "credential"], "{v}");

    // Forged and malformed answers are refused, each with a fresh challenge.
    let forged = [
        json!("not json"),
        json!({}),
        json!({"id": "AAAA", "rawId": "AAAA", "type": "public-key", "response": {
            "authenticatorData": "AAAA", "clientDataJSON": "AAAA", "signature": "AAAA",
            "userHandle": "YWxpY2U"}}),
    ];
    let mut seen = vec![first];
    for answer in forged {
        let body = match &answer {
            Value::String(s) => json!({ "credential": s }),
            other => json!({ "credential": other }),
        };
        let v = b.post_json(&api(PASSKEY_FLOW), &body).await.json();
        assert_eq!(v["component"], "identification", "{answer}: {v}");
        assert!(!v["errors"].as_array().unwrap().is_empty(), "{answer}: {v}");
        let c = v["webauthn"]["publicKey"]["challenge"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(
            !seen.contains(&c),
            "a spent challenge is never offered again"
        );
        seen.push(c);
    }

    // Bob has no passkey: after his password the validation runs the setup stage inline.
    let b2 = Browser::new(gw.port);
    b2.get_json(&format!("{}?rd=/x", api(PASSKEY_FLOW))).await;
    b2.post_json(&api(PASSKEY_FLOW), &json!({"uid": "bob"}))
        .await;
    let v = b2
        .post_json(&api(PASSKEY_FLOW), &json!({"password": BOB_PW}))
        .await
        .json();
    assert_eq!(v["component"], "authenticator_webauthn", "{v}");
    assert_eq!(v["webauthn"]["publicKey"]["user"]["name"], "bob", "{v}");

    // The setup stage, after the password, asks the browser to create a passkey for alice.
    let b = Browser::new(gw.port);
    b.get_json(&format!("{}?rd=/x", api(ENROL_FLOW))).await;
    b.post_json(&api(ENROL_FLOW), &json!({"uid": "alice"}))
        .await;
    let v = b
        .post_json(&api(ENROL_FLOW), &json!({"password": ALICE_PW}))
        .await
        .json();
    assert_eq!(v["component"], "authenticator_webauthn", "{v}");
    assert_eq!(v["title"], "Add a passkey", "{v}");
    assert_eq!(v["webauthn"]["mode"], "create", "{v}");
    let pk = &v["webauthn"]["publicKey"];
    assert_eq!(pk["rp"]["id"], "localhost", "{v}");
    assert_eq!(pk["user"]["name"], "alice", "{v}");
    assert_eq!(
        pk["authenticatorSelection"]["residentKey"], "required",
        "{v}"
    );
    assert_eq!(
        pk["authenticatorSelection"]["userVerification"], "required",
        "{v}"
    );
    assert_eq!(pk["attestation"], "none", "{v}");
    let v = b
        .post_json(&api(ENROL_FLOW), &json!({"credential": {"id": "x"}}))
        .await
        .json();
    assert_eq!(v["component"], "authenticator_webauthn", "{v}");
    assert!(
        v["errors"][0]
            .as_str()
            .unwrap()
            .contains("could not be checked"),
        "{v}"
    );
    assert_ne!(
        v["webauthn"]["publicKey"]["challenge"], pk["challenge"],
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_passkey_confirms_a_password_sign_in_as_the_second_factor() {
    let gw = gateway("").await;
    let chrome = Chrome::start_with(Options::mapping(&[(APP, gw.port)])).await;
    let auth = enrol_alice(&gw, &chrome).await;
    let creds = detach(&chrome, &auth).await;
    sign_out(&gw, &chrome).await;

    // Name and password first (no authenticator at hand, so autofill offers nothing).
    let base = url_base(&gw).await;
    chrome.go(&format!("{base}/second?f=1")).await;
    chrome.type_into("#f-uid", "alice").await;
    chrome.click("button[type=submit]").await;
    chrome
        .wait_text(|t| t.contains("Signing in as alice"))
        .await;
    chrome.type_into("#f-password", ALICE_PW).await;
    chrome.click("button[type=submit]").await;
    let page = chrome.wait_text(|t| t.contains("Use your passkey")).await;
    assert!(
        page.contains("Confirm it is you with your passkey"),
        "{page}"
    );
    assert!(
        !page.contains("Continue"),
        "the passkey button is the way on: {page}"
    );
    chrome.screenshot("passkey-second-factor").await;

    // A wrong passkey (another authenticator's) is refused and the page asks again.
    let stranger = authenticator(&chrome).await;
    chrome.click("#webauthn-start").await;
    let page = chrome
        .wait_text(|t| t.contains("Try again") || t.contains("did not work"))
        .await;
    assert!(!chrome.url().await.ends_with("/second?f=1"), "{page}");
    chrome
        .cmd(
            reqwest::Method::DELETE,
            &format!("/webauthn/authenticator/{stranger}"),
            None,
        )
        .await;

    // Alice's passkey.
    attach(&chrome, &creds).await;
    chrome.click("#webauthn-start").await;
    let at = chrome.wait_url(|u| u.ends_with("/second?f=1")).await;
    assert!(at.ends_with("/second?f=1"), "password then passkey: {at}");
    let page = chrome.wait_text(|t| t.contains("Alice")).await;
    assert!(page.contains("Hello, Alice A"), "{page}");
    assert!(gw.logs().contains("passkey validated"));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_authenticator_model_outside_device_type_restrictions_is_not_enrolled() {
    let strict = r#"
[[flows]]
slug = "enrol-strict"
designation = "authentication"
stages = ["identify", "password", "pk-setup-strict", "login"]

[stages.pk-setup-strict]
kind = "authenticator_webauthn"
resident_key_requirement = "required"
device_type_restrictions = ["cb69481e-8ff7-4039-93ec-0a2729a154a8"]
"#;
    let gw = gateway(strict).await;
    let chrome = Chrome::start_with(Options::mapping(&[(APP, gw.port)])).await;
    authenticator(&chrome).await;
    let base = url_base(&gw).await;
    chrome
        .go(&format!("{base}/.portcullis/flow/enrol-strict?rd=/in"))
        .await;
    chrome.type_into("#f-uid", "alice").await;
    chrome.click("button[type=submit]").await;
    chrome
        .wait_text(|t| t.contains("Signing in as alice"))
        .await;
    chrome.type_into("#f-password", ALICE_PW).await;
    chrome.click("button[type=submit]").await;
    chrome.wait_text(|t| t.contains("Create a passkey")).await;
    chrome.click("#webauthn-start").await;
    let page = chrome
        .wait_text(|t| t.contains("is not allowed here"))
        .await;
    assert!(
        page.contains("This kind of security key or passkey is not allowed here"),
        "{page}"
    );
    assert!(!chrome.url().await.ends_with("/in"), "not signed in");
    let logs = gw.logs();
    assert!(logs.contains("authenticator model not allowed"), "{logs}");
    assert!(!logs.contains("passkey registered"), "no device stored");
}

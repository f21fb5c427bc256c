//! Nothing a sign-in shows before the user proved who they are tells which accounts exist:
//! for every flow shape and every `not_configured_action`, an unknown name, a disabled account,
//! an account without a device and an account with one get the same pages, in both faces
//! (the JSON body and the HTML page), step after step. The passkey decoy names the same
//! credential at every load, as a real account does.

use super::rig::*;
use crate::flow::{Step, View};
use crate::store::{DeviceClass, Store};

const EXTRA: &str = r#"
[[flows]]
slug = "pw"
title = "Sign in"
designation = "authentication"
stages = ["identify", "password", "login"]
[[flows]]
slug = "mail_skip"
title = "Sign in"
designation = "authentication"
stages = ["identify", "mfa_skip", "login"]
[[flows]]
slug = "mail_deny"
title = "Sign in"
designation = "authentication"
stages = ["identify", "mfa_deny", "login"]
[[flows]]
slug = "mail_configure"
title = "Sign in"
designation = "authentication"
stages = ["identify", "mail_cfg", "login"]
[[flows]]
slug = "sms_skip"
title = "Sign in"
designation = "authentication"
stages = ["identify", "text_skip", "login"]
[[flows]]
slug = "sms_deny"
title = "Sign in"
designation = "authentication"
stages = ["identify", "text_deny", "login"]
[[flows]]
slug = "sms_configure"
title = "Sign in"
designation = "authentication"
stages = ["identify", "text_cfg", "login"]
[[flows]]
slug = "pw_mail_deny"
title = "Sign in"
designation = "authentication"
stages = ["identify", "password", "mfa_deny", "login"]
[[flows]]
slug = "pw_mail_configure"
title = "Sign in"
designation = "authentication"
stages = ["identify", "password", "mail_cfg", "login"]

[stages.mail_cfg]
kind = "authenticator_validate"
device_classes = ["email"]
not_configured_action = "configure"
configure_stage = "email_setup"
[stages.text_skip]
kind = "authenticator_validate"
device_classes = ["sms"]
not_configured_action = "skip"
[stages.text_deny]
kind = "authenticator_validate"
device_classes = ["sms"]
not_configured_action = "deny"
[stages.text_cfg]
kind = "authenticator_validate"
device_classes = ["sms"]
not_configured_action = "configure"
configure_stage = "sms"
"#;

/// The flow shapes: identification then password; a code by e-mail or SMS as the only factor
/// (validation with each `not_configured_action`, or the setup stage itself); password then
/// a code.
const FLOWS: &[&str] = &[
    "pw",
    "login",
    "mail_skip",
    "mail_deny",
    "mail_configure",
    "sms_skip",
    "sms_deny",
    "sms_configure",
    "email_first",
    "phone_first",
    "pw_mail_deny",
    "pw_mail_configure",
    "mfa_skip",
    "mfa_deny",
];

/// The account kinds, by the name each types.
const KINDS: &[&str] = &["zghost", "zdisabled", "zbare", "znormal"];

async fn world() -> Rig {
    let rig = Rig::with(EXTRA, None);
    // `zdisabled` and `znormal` have an e-mail and a phone device; `zbare` has an address and
    // a number on the account but no device; `zghost` does not exist. (Names no page holds.)
    for name in ["zdisabled", "zbare", "znormal"] {
        let mut u = rig.user(name, Some(&format!("{name}@example.test"))).await;
        u.phone = Some("+41791234567".into());
        u.active = name != "zdisabled";
        rig.world.store.put_user(&u).expect("store");
    }
    for name in ["zdisabled", "znormal"] {
        rig.device(
            name,
            "mail",
            DeviceClass::Email,
            &format!("{name}@example.test"),
        );
        rig.device(name, "text", DeviceClass::Sms, "+41791234567");
    }
    rig
}

/// What a step is (challenge, ended, done), its JSON body and its HTML page.
type Faces = (String, String, String);

/// What both faces show of `view`, with the typed name and the CSRF token made alike.
fn faces(view: &View, name: &str) -> Faces {
    let ui = crate::ui::Ui::plain();
    let (json, html) = match &view.step {
        Step::Challenge { stage, challenge } => (
            crate::ui::challenge_json(&view.flow, &view.title, stage, challenge).to_string(),
            ui.flow_page(&view.title, stage, challenge, "CSRF", "/action")
                .expect("render"),
        ),
        Step::Ended { message } => (
            crate::ui::ended_json(&view.flow, message).to_string(),
            ui.message(&view.title, message, None),
        ),
        Step::Done { .. } => ("done".into(), "done".into()),
    };
    let kind = match &view.step {
        Step::Challenge { .. } => "challenge",
        Step::Ended { .. } => "ended",
        Step::Done { .. } => "done",
    };
    (
        kind.to_string(),
        json.replace(name, "NAME"),
        html.replace(name, "NAME"),
    )
}

/// The wrong answer to the page `view` shows, if it asks for one.
fn wrong_answer(view: &View) -> Option<(&'static str, &'static str)> {
    let Step::Challenge { challenge, .. } = &view.step else {
        return None;
    };
    let names: Vec<&str> = challenge.fields.iter().map(|f| f.name.as_str()).collect();
    if names.contains(&"password") {
        Some(("password", "not the password"))
    } else if names.contains(&"code") {
        Some(("code", "000000"))
    } else {
        None
    }
}

#[tokio::test]
async fn every_flow_shape_and_action_shows_every_kind_of_account_the_same_pages() {
    let rig = world().await;
    let mut failures = Vec::new();
    for flow in FLOWS {
        let mut seen: Vec<(&str, Vec<Faces>)> = Vec::new();
        for name in KINDS {
            let (mut exec, first) = rig.start(flow).await;
            let mut pages = vec![faces(&first, name)];
            let after_name = rig.post(&mut exec, &[("uid", name)]).await;
            pages.push(faces(&after_name, name));
            if let Some((field, wrong)) = wrong_answer(&after_name) {
                let after_wrong = rig.post(&mut exec, &[(field, wrong)]).await;
                pages.push(faces(&after_wrong, name));
                // A reload of the page shows the same again (as the portal reloads it: from
                // the store; a sign-in the wrong answer ended is gone for every kind alike).
                pages.push(match rig.reload(&exec) {
                    Some(mut back) => faces(&rig.view(&mut back).await, name),
                    None => ("gone".into(), "gone".into(), String::new()),
                });
            }
            seen.push((name, pages));
        }
        let (first_kind, reference) = &seen[0];
        for (kind, pages) in &seen[1..] {
            if pages != reference {
                let step = pages
                    .iter()
                    .zip(reference)
                    .position(|(a, b)| a != b)
                    .unwrap_or(pages.len().min(reference.len()));
                failures.push(format!(
                    "flow {flow}: {kind} differs from {first_kind} at step {step}:\n  {kind}: {:?}\n  {first_kind}: {:?}",
                    pages.get(step).map(|p| (&p.0, &p.1)),
                    reference.get(step).map(|p| (&p.0, &p.1)),
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn after_a_password_an_account_without_a_device_gets_its_not_configured_action() {
    // Once the password proved who the user is, `deny` and `configure` apply as configured.
    let rig = world().await;
    let (mut exec, _) = rig.start("pw_mail_deny").await;
    rig.post(&mut exec, &[("uid", "zbare")]).await;
    let view = rig.post(&mut exec, &[("password", PASSWORD)]).await;
    assert_eq!(
        ended(&view),
        crate::flow::stages::authenticator_validate::NOT_CONFIGURED
    );
    let (mut exec, _) = rig.start("pw_mail_configure").await;
    rig.post(&mut exec, &[("uid", "zbare")]).await;
    let view = rig.post(&mut exec, &[("password", PASSWORD)]).await;
    assert_eq!(component(&view), "authenticator_email");
    // Before it, `configure` with one e-mail setup still sends to the account's own address
    // (signing in by e-mail alone), under this stage's page; `deny` shows the decoy.
    let sent = rig.world.email.sent().len();
    let (mut exec, _) = rig.start("mail_configure").await;
    let view = rig.post(&mut exec, &[("uid", "zbare")]).await;
    assert_eq!(component(&view), "authenticator_validate");
    assert_eq!(rig.world.email.sent().len(), sent + 1);
    let (mut exec, _) = rig.start("mail_deny").await;
    let view = rig.post(&mut exec, &[("uid", "zbare")]).await;
    assert_eq!(component(&view), "authenticator_validate");
    assert_eq!(
        rig.world.email.sent().len(),
        sent + 1,
        "the decoy sends nothing"
    );
}

const KEYS: &str = r#"
[webauthn]
rp_id = "example.test"
origins = ["https://auth.example.test"]
[[flows]]
slug = "key_deny"
title = "Sign in"
designation = "authentication"
stages = ["identify", "key_check", "login"]
[stages.key_check]
kind = "authenticator_validate"
device_classes = ["webauthn"]
not_configured_action = "deny"
"#;

/// The credential ids the passkey page for `uid` names, on `engine`.
async fn named_credentials(engine: &crate::flow::Engine, uid: &str) -> String {
    let mut exec = engine
        .start("key_deny", "https://app.example.test/".into(), AT.client)
        .expect("start");
    engine.view(&mut exec, AT).await.expect("view");
    let input = [("uid".to_string(), uid.to_string())].into_iter().collect();
    let view = engine.submit(&mut exec, input, AT).await.expect("submit");
    let options = challenge(&view)
        .webauthn
        .clone()
        .expect("a passkey ceremony");
    options["publicKey"]["allowCredentials"].to_string()
}

#[tokio::test]
async fn the_passkey_decoy_names_the_same_credential_at_every_load_and_after_a_restart() {
    let rig = Rig::with(KEYS, None);
    let mut off = rig.user("zdisabled", None).await;
    off.active = false;
    rig.world.store.put_user(&off).expect("store");
    for name in ["zghost", "zdisabled"] {
        let first = named_credentials(&rig.engine, name).await;
        assert!(first.contains("\"id\""), "{first}");
        assert_eq!(named_credentials(&rig.engine, name).await, first);
        // Typed in another spelling the store compares alike: the same, as a real account's.
        let upper = name.to_uppercase();
        assert_eq!(named_credentials(&rig.engine, &upper).await, first);
        // A restart: a new engine over the same database.
        let config = Rig::config(KEYS).expect("config");
        let restarted = crate::flow::Engine::new(&config, rig.world.services.clone());
        assert_eq!(named_credentials(&restarted, name).await, first);
    }
    // Different names, different credentials.
    assert_ne!(
        named_credentials(&rig.engine, "zghost").await,
        named_credentials(&rig.engine, "zghost2").await
    );
}

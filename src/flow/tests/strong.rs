//! TOTP and recovery codes: setup (secret shown, stored only after a valid code; codes shown
//! once), validation (skew, replay also under concurrency, wrong algorithm, single use,
//! regeneration), and a user with several classes choosing.

use super::rig::*;
use crate::flow::stages::authenticator_totp::SIGN_IN_FIRST;
use crate::flow::stages::authenticator_validate::{left_notice, REPLAYED};
use crate::flow::totp::{self, Algorithm, Params};
use crate::flow::{otp, Execution, Step, View};
use crate::session::Factors;
use crate::store::{DeviceClass, Store};
use std::sync::Arc;

const EXTRA: &str = r#"
[[flows]]
slug = "totp_setup"
title = "Add an app"
designation = "authentication"
stages = ["identify", "password", "totp", "login"]
[[flows]]
slug = "totp8_setup"
title = "Add an app"
designation = "authentication"
stages = ["identify", "password", "totp8", "login"]
[[flows]]
slug = "totp_first"
title = "Add an app"
designation = "authentication"
stages = ["identify", "totp", "login"]
[[flows]]
slug = "codes_setup"
title = "Recovery codes"
designation = "authentication"
stages = ["identify", "password", "codes", "login"]
[[flows]]
slug = "strong"
title = "Sign in"
designation = "authentication"
stages = ["identify", "password", "mfa_strong", "login"]
[stages.totp]
kind = "authenticator_totp"
[stages.totp8]
kind = "authenticator_totp"
friendly_name = "Work app"
digits = 8
algorithm = "sha256"
[stages.codes]
kind = "authenticator_static"
token_count = 5
[stages.mfa_strong]
kind = "authenticator_validate"
device_classes = ["email", "static", "totp"]
not_configured_action = "configure"
configuration_stages = ["totp", "codes"]
"#;

fn rig() -> Rig {
    Rig::with(EXTRA, None)
}

const SIX: Params = Params {
    digits: 6,
    period: 30,
    algorithm: Algorithm::Sha1,
};

fn now(rig: &Rig) -> i64 {
    use crate::clock::Clock;
    rig.world.clock.now()
}

/// The secret a setup page shows, decoded from its base32 text.
fn shown_secret(view: &View) -> Vec<u8> {
    let t = challenge(view)
        .totp
        .as_ref()
        .expect("a TOTP setup challenge");
    data_encoding::BASE32_NOPAD
        .decode(t.secret.as_bytes())
        .expect("base32")
}

/// The code `offset` steps from now, as the user's app would show it.
fn code_at(rig: &Rig, secret: &[u8], offset: i64, p: &Params) -> String {
    let step = totp::step(now(rig), p.period)
        .checked_add_signed(offset)
        .expect("step");
    totp::code(secret, step, p)
}

/// Alice with an authenticator app enrolled through `flow`; returns its secret.
async fn enrolled(rig: &Rig, flow: &str, p: &Params) -> Vec<u8> {
    rig.user("alice", Some("alice@example.test")).await;
    let (mut exec, view) = rig.signed_in_to(flow, "alice").await;
    let secret = shown_secret(&view);
    let view = rig
        .post(&mut exec, &[("code", &code_at(rig, &secret, 0, p))])
        .await;
    assert!(matches!(view.step, Step::Done { .. }), "{view:?}");
    secret
}

/// A new sign-in at the strong validation, waiting for the TOTP code.
async fn at_totp(rig: &Rig) -> Execution {
    let (exec, view) = rig.signed_in_to("strong", "alice").await;
    assert_eq!(field_names(&view), ["code"], "{view:?}");
    exec
}

fn done(view: &View) -> bool {
    matches!(view.step, Step::Done { login: Some(_), .. })
}

#[tokio::test]
async fn totp_setup_shows_the_secret_and_stores_the_device_only_after_a_valid_code() {
    let rig = rig();
    rig.user("alice", Some("alice@example.test")).await;
    let (mut exec, view) = rig.signed_in_to("totp_setup", "alice").await;
    assert_eq!(component(&view), "authenticator_totp");
    let t = challenge(&view).totp.clone().expect("totp");
    assert!(
        t.otpauth_url
            .starts_with("otpauth://totp/Portcullis:alice%40example%2Etest?secret=")
            || t.otpauth_url
                .starts_with("otpauth://totp/Portcullis:alice%40example.test?secret="),
        "{}",
        t.otpauth_url
    );
    assert!(t.otpauth_url.contains(&format!("secret={}", t.secret)));
    assert!(t
        .otpauth_url
        .contains("issuer=Portcullis&algorithm=SHA1&digits=6&period=30"));
    assert_eq!(
        challenge(&view).qr.as_deref(),
        Some(t.otpauth_url.as_str()),
        "the QR code carries the URL"
    );
    let secret = shown_secret(&view);
    assert_eq!(secret.len(), 20);
    // A reload shows the same secret (the page may be rendered any number of times).
    let again = rig.view(&mut exec).await;
    assert_eq!(shown_secret(&again), secret);

    let wrong = other_than(&code_at(&rig, &secret, 0, &SIX));
    let view = rig.post(&mut exec, &[("code", &wrong)]).await;
    assert_eq!(challenge(&view).errors, [otp::WRONG_CODE]);
    assert!(
        rig.devices("alice").is_empty(),
        "no device before a valid code"
    );

    let view = rig
        .post(&mut exec, &[("code", &code_at(&rig, &secret, 0, &SIX))])
        .await;
    let Step::Done {
        login: Some(login), ..
    } = &view.step
    else {
        panic!("{view:?}");
    };
    assert!(login.factors.meets(Factors::TOTP));
    let devices = rig.devices("alice");
    assert_eq!(devices.len(), 1);
    assert_eq!(devices[0].class, DeviceClass::Totp);
    let stored = devices[0].secret.clone().expect("material");
    assert!(
        !stored.contains(&t.secret) && !stored.contains(&totp::base32(&secret)[..16]),
        "the secret is sealed at rest"
    );
    let sealed = totp::Material::of(&devices[0]).expect("material").sealed;
    let opened = rig
        .world
        .services
        .device_key
        .open(&sealed, &totp::seal_context("alice", &devices[0].id))
        .expect("opens under the device key");
    assert_eq!(opened, secret);
}

#[tokio::test]
async fn totp_setup_needs_a_proof_first() {
    let rig = rig();
    rig.user("alice", None).await;
    let (mut exec, _) = rig.start("totp_first").await;
    let view = rig.post(&mut exec, &[("uid", "alice")]).await;
    assert_eq!(ended(&view), SIGN_IN_FIRST);
    assert!(rig.devices("alice").is_empty());
}

#[tokio::test]
async fn one_step_of_skew_is_accepted_and_two_are_refused() {
    let rig = rig();
    let secret = enrolled(&rig, "totp_setup", &SIX).await;
    for offset in [-1, 0, 1] {
        rig.world.clock.advance_secs(120);
        let mut exec = at_totp(&rig).await;
        let view = rig
            .post(
                &mut exec,
                &[("code", &code_at(&rig, &secret, offset, &SIX))],
            )
            .await;
        assert!(done(&view), "{offset}: {view:?}");
    }
    for offset in [-2, 2] {
        rig.world.clock.advance_secs(120);
        let mut exec = at_totp(&rig).await;
        let view = rig
            .post(
                &mut exec,
                &[("code", &code_at(&rig, &secret, offset, &SIX))],
            )
            .await;
        assert_eq!(challenge(&view).errors, [otp::WRONG_CODE], "{offset}");
    }
}

#[tokio::test]
async fn a_used_code_and_any_earlier_one_are_refused_as_replays() {
    let rig = rig();
    let secret = enrolled(&rig, "totp_setup", &SIX).await;
    // The code that confirmed the setup cannot be used again.
    let mut exec = at_totp(&rig).await;
    let view = rig
        .post(&mut exec, &[("code", &code_at(&rig, &secret, 0, &SIX))])
        .await;
    assert_eq!(challenge(&view).errors, [REPLAYED]);
    rig.world.clock.advance_secs(30);
    let code = code_at(&rig, &secret, 0, &SIX);
    let view = rig.post(&mut exec, &[("code", &code)]).await;
    assert!(done(&view), "{view:?}");
    let mut exec = at_totp(&rig).await;
    let view = rig.post(&mut exec, &[("code", &code)]).await;
    assert_eq!(
        challenge(&view).errors,
        [REPLAYED],
        "same code, next sign-in"
    );
    let earlier = code_at(&rig, &secret, -1, &SIX);
    let view = rig.post(&mut exec, &[("code", &earlier)]).await;
    assert_eq!(challenge(&view).errors, [REPLAYED], "an earlier step");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_concurrent_submissions_of_one_code_exactly_one_wins() {
    let rig = Arc::new(rig());
    let secret = enrolled(&rig, "totp_setup", &SIX).await;
    for round in 0..5 {
        // The losers' replays count as wrong codes; start each round below the limit.
        rig.world
            .store
            .reset_counter("otp:typed:fails:user:alice@192.0.2.7")
            .expect("store");
        rig.world.clock.advance_secs(30);
        let code = code_at(&rig, &secret, 0, &SIX);
        let mut tasks = Vec::new();
        for _ in 0..4 {
            let mut exec = at_totp(&rig).await;
            let (rig, code) = (rig.clone(), code.clone());
            tasks.push(tokio::spawn(async move {
                let view = rig.post(&mut exec, &[("code", &code)]).await;
                done(&view)
            }));
        }
        let mut wins = 0;
        for t in tasks {
            wins += usize::from(t.await.expect("task"));
        }
        assert_eq!(wins, 1, "round {round}");
    }
}

#[tokio::test]
async fn a_code_of_another_algorithm_is_refused() {
    let rig = rig();
    let sha256 = Params {
        digits: 8,
        period: 30,
        algorithm: Algorithm::Sha256,
    };
    rig.user("alice", Some("alice@example.test")).await;
    let (mut exec, view) = rig.signed_in_to("totp8_setup", "alice").await;
    let t = challenge(&view).totp.clone().expect("totp");
    assert!(t.otpauth_url.contains("algorithm=SHA256&digits=8"));
    let secret = shown_secret(&view);
    assert_eq!(secret.len(), 32);
    for wrong in [
        Params {
            algorithm: Algorithm::Sha1,
            ..sha256
        },
        Params {
            algorithm: Algorithm::Sha512,
            ..sha256
        },
        Params {
            digits: 6,
            ..sha256
        },
    ] {
        let view = rig
            .post(&mut exec, &[("code", &code_at(&rig, &secret, 0, &wrong))])
            .await;
        assert_eq!(challenge(&view).errors, [otp::WRONG_CODE], "{wrong:?}");
    }
    let view = rig
        .post(&mut exec, &[("code", &code_at(&rig, &secret, 0, &sha256))])
        .await;
    assert!(done(&view), "{view:?}");
}

/// Recovery codes issued to alice through the setup flow.
async fn issued_codes(rig: &Rig) -> Vec<String> {
    let (mut exec, view) = rig.signed_in_to("codes_setup", "alice").await;
    assert_eq!(component(&view), "authenticator_static");
    let codes = challenge(&view).recovery_codes.clone();
    assert_eq!(codes.len(), 5);
    let view = rig.post(&mut exec, &[("saved", "yes")]).await;
    assert!(done(&view), "{view:?}");
    codes
}

/// Signs alice in with recovery code `code`; returns the view after the code.
async fn with_recovery_code(rig: &Rig, code: &str) -> (Execution, View) {
    let (mut exec, view) = rig.signed_in_to("strong", "alice").await;
    let view = if field_names(&view) == ["device"] {
        rig.post(&mut exec, &[("device", "recovery-codes")]).await
    } else {
        view
    };
    assert_eq!(challenge(&view).fields[0].label, "Recovery code");
    let view = rig.post(&mut exec, &[("code", code)]).await;
    (exec, view)
}

#[tokio::test]
async fn recovery_codes_work_once_and_say_how_many_are_left() {
    let rig = rig();
    rig.user("alice", None).await;
    let codes = issued_codes(&rig).await;
    let stored = rig.devices("alice")[0].secret.clone().expect("material");
    assert!(
        codes.iter().all(|c| !stored.contains(c.as_str())),
        "stored hashed"
    );

    let (mut exec, view) = with_recovery_code(&rig, &codes[0].to_lowercase()).await;
    assert_eq!(challenge(&view).info, left_notice(4));
    assert!(!challenge(&view)
        .info
        .iter()
        .any(|l| l.starts_with("Warning")));
    let view = rig.post(&mut exec, &[("continue", "yes")]).await;
    let Step::Done {
        login: Some(login), ..
    } = &view.step
    else {
        panic!("{view:?}");
    };
    assert!(login.factors.meets(Factors::STATIC));

    let (_, view) = with_recovery_code(&rig, &codes[0]).await;
    assert_eq!(challenge(&view).errors, [otp::WRONG_CODE], "used once");

    for (i, code) in codes[1..4].iter().enumerate() {
        let (_, view) = with_recovery_code(&rig, code).await;
        let left = 3 - i;
        assert_eq!(challenge(&view).info, left_notice(left));
        assert_eq!(
            challenge(&view)
                .info
                .iter()
                .any(|l| l.starts_with("Warning")),
            left <= 2,
            "{left}"
        );
    }
}

#[tokio::test]
async fn a_new_set_of_recovery_codes_ends_the_old_one() {
    let rig = rig();
    rig.user("alice", None).await;
    let old = issued_codes(&rig).await;
    let new = issued_codes(&rig).await;
    assert_eq!(rig.devices("alice").len(), 1, "one set per user");
    let (_, view) = with_recovery_code(&rig, &old[0]).await;
    assert_eq!(challenge(&view).errors, [otp::WRONG_CODE]);
    let (_, view) = with_recovery_code(&rig, &new[0]).await;
    assert_eq!(challenge(&view).info, left_notice(4));
}

#[tokio::test]
async fn several_classes_are_offered_strongest_first_and_typed_ones_send_nothing() {
    let rig = rig();
    let secret = enrolled(&rig, "totp_setup", &SIX).await;
    issued_codes(&rig).await;
    rig.device("alice", "mail", DeviceClass::Email, "alice@example.test");
    let (mut exec, view) = rig.signed_in_to("strong", "alice").await;
    let options: Vec<_> = challenge(&view).fields[0]
        .options
        .iter()
        .map(|o| o.label.clone())
        .collect();
    assert_eq!(options.len(), 3);
    assert!(options[0].starts_with("Authenticator app"), "{options:?}");
    assert_eq!(options[1], "Recovery codes (5 left)");
    assert!(options[2].starts_with("email mail"), "{options:?}");
    let totp_id = challenge(&view).fields[0].options[0].value.clone();

    let view = rig.post(&mut exec, &[("device", "recovery-codes")]).await;
    assert_eq!(field_names(&view), ["code"]);
    let actions: Vec<_> = challenge(&view)
        .actions
        .iter()
        .map(|a| a.name.as_str())
        .collect();
    assert!(!actions.contains(&"resend"), "{actions:?}");
    assert!(actions.contains(&"choose"));
    let view = rig.post(&mut exec, &[("action", "choose")]).await;
    assert_eq!(field_names(&view), ["device"]);
    let view = rig.post(&mut exec, &[("device", &totp_id)]).await;
    assert_eq!(
        challenge(&view).title.as_deref(),
        Some("Enter the code from your authenticator app")
    );
    assert_eq!(rig.world.email.count(), 0, "nothing sent for typed classes");
    rig.world.clock.advance_secs(30);
    let view = rig
        .post(&mut exec, &[("code", &code_at(&rig, &secret, 0, &SIX))])
        .await;
    assert_eq!(
        signed_in(&view),
        [
            "identification",
            "password",
            "authenticator_validate",
            "otp",
            "mfa"
        ]
    );
}

#[tokio::test]
async fn without_a_device_the_user_picks_the_app_or_recovery_codes() {
    let rig = rig();
    rig.user("alice", None).await;
    let (mut exec, view) = rig.signed_in_to("strong", "alice").await;
    let labels: Vec<_> = challenge(&view).fields[0]
        .options
        .iter()
        .map(|o| o.label.as_str())
        .collect();
    assert_eq!(labels, ["Authenticator app", "Recovery codes"]);
    let view = rig.post(&mut exec, &[("setup", "totp")]).await;
    assert_eq!(component(&view), "authenticator_totp");
    let secret = shown_secret(&view);
    // As the next request finds it: the inline setup's state reads back from the store.
    let mut exec = rig.reload(&exec).expect("stored");
    assert_eq!(shown_secret(&rig.view(&mut exec).await), secret);
    let view = rig
        .post(&mut exec, &[("code", &code_at(&rig, &secret, 0, &SIX))])
        .await;
    let Step::Done {
        login: Some(login), ..
    } = &view.step
    else {
        panic!("{view:?}");
    };
    assert!(login.factors.meets(Factors::TOTP));
}

#[tokio::test]
async fn wrong_typed_codes_end_the_sign_in_at_the_attempt_limit() {
    let rig = rig();
    let secret = enrolled(&rig, "totp_setup", &SIX).await;
    let mut exec = at_totp(&rig).await;
    let wrong = other_than(&code_at(&rig, &secret, 0, &SIX));
    let wrong =
        if wrong == code_at(&rig, &secret, 1, &SIX) || wrong == code_at(&rig, &secret, -1, &SIX) {
            "999999".to_string()
        } else {
            wrong
        };
    let mut last = None;
    for _ in 0..3 {
        last = Some(rig.post(&mut exec, &[("code", &wrong)]).await);
    }
    assert_eq!(ended(&last.expect("posted")), otp::TOO_MANY_ATTEMPTS);
}

#[test]
fn setup_stage_keys_are_checked_and_named() {
    let cases = [
        (
            "kind = \"authenticator_totp\"\ndigits = 7",
            "stages.x.digits",
        ),
        (
            "kind = \"authenticator_totp\"\nperiod = 60",
            "stages.x.period",
        ),
        (
            "kind = \"authenticator_totp\"\nalgorithm = \"md5\"",
            "stages.x.algorithm",
        ),
        ("kind = \"authenticator_totp\"\nsecret = \"x\"", "secret"),
        (
            "kind = \"authenticator_static\"\ntoken_count = 0",
            "stages.x.token_count",
        ),
        (
            "kind = \"authenticator_static\"\ntoken_length = 6",
            "stages.x.token_length",
        ),
    ];
    for (body, key) in cases {
        let err = Rig::config(&format!("[stages.x]\n{body}\n"))
            .expect_err(body)
            .to_string();
        assert!(err.contains(key), "{body}: {err}");
    }
    for ok in [
        "kind = \"authenticator_totp\"\ndigits = 8\nalgorithm = \"SHA512\"",
        "kind = \"authenticator_static\"\ntoken_count = 50\ntoken_length = 8",
    ] {
        Rig::config(&format!("[stages.x]\n{ok}\n")).unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
}

#[tokio::test]
async fn another_users_recovery_code_and_mangled_ones_are_refused() {
    let rig = rig();
    rig.user("bob", None).await;
    let (mut exec, view) = rig.signed_in_to("codes_setup", "bob").await;
    let bobs = challenge(&view).recovery_codes.clone();
    rig.post(&mut exec, &[("saved", "yes")]).await;
    rig.user("alice", None).await;
    let alices = issued_codes(&rig).await;
    let first = &alices[0];
    let attacks = [
        bobs[0].clone(),
        format!("{first}X"),
        first[..11].to_string(),
        format!("{first}\0"),
        // One character off.
        format!(
            "{}{}",
            &first[..11],
            if first.ends_with('A') { 'B' } else { 'A' }
        ),
        String::new(),
        " ".into(),
    ];
    for attack in attacks {
        // Each try in a sign-in of its own, below the per-user limit.
        rig.world
            .store
            .reset_counter("otp:typed:fails:user:alice@192.0.2.7")
            .expect("store");
        let (_, view) = with_recovery_code(&rig, &attack).await;
        assert_eq!(challenge(&view).errors, [otp::WRONG_CODE], "{attack:?}");
    }
    // Spaces, dashes and lower case are how people copy codes: still the code.
    let spaced = format!(
        "{}-{} {}",
        &first[..4],
        &first[4..8],
        first[8..].to_lowercase()
    );
    let (_, view) = with_recovery_code(&rig, &spaced).await;
    assert_eq!(challenge(&view).info, left_notice(4));
}

#[tokio::test]
async fn an_unknown_account_gets_the_same_code_page_and_never_passes() {
    let rig = rig();
    let secret = enrolled(&rig, "totp_setup", &SIX).await;
    let (mut exec, _) = rig.start("strong").await;
    rig.post(&mut exec, &[("uid", "nobody")]).await;
    // The password stage stops an unknown name; reach the validation's decoy directly.
    exec.stage = 2;
    exec.state = None;
    let view = rig.view(&mut exec).await;
    assert_eq!(field_names(&view), ["code"]);
    rig.world.clock.advance_secs(30);
    let view = rig
        .post(&mut exec, &[("code", &code_at(&rig, &secret, 0, &SIX))])
        .await;
    assert_eq!(challenge(&view).errors, [otp::WRONG_CODE]);
}

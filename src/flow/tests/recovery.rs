//! The `email` (verification) stage, its outbox, recovery flows and the Curity options of the
//! email authenticator (registration, `intermediate_attribute`, link attempts).

use super::rig::*;
use crate::clock::Clock;
use crate::flow::{Caller, Step};
use crate::store::Store;
use std::sync::Arc;

const EXTRA: &str = r#"
[[flows]]
slug = "recover"
title = "Reset your password"
designation = "recovery"
stages = ["identify_r", "verify", "login"]
[[flows]]
slug = "recover_link"
title = "Reset your password"
designation = "recovery"
stages = ["identify_r", "verify_link", "login"]
[[flows]]
slug = "forgot"
title = "Sign in"
designation = "authentication"
stages = ["identify_r", "password_r", "login"]
[[flows]]
slug = "activate"
title = "Confirm"
designation = "enrollment"
stages = ["identify", "verify_activate", "login"]
[[flows]]
slug = "second_address"
title = "Add an address"
designation = "authentication"
stages = ["identify", "password", "ask_mail", "intermediate", "login"]

[[flows]]
slug = "register"
title = "Sign up by email"
designation = "enrollment"
stages = ["identify", "register_mail", "write_reg", "login"]

[stages.register_mail]
kind = "authenticator_email"
registration = true
[stages.write_reg]
kind = "user_write"

[stages.identify_r]
kind = "identification"
recovery_flow = "recover"
[stages.password_r]
kind = "password"
recovery_flow = "recover"
[stages.verify]
kind = "email"
mode = "code"
code_length = 6
token_expiry = "15m"
danger_long_token_expiry = true
max_allowed_attempts = 3
resend_cooldown = "30s"
[stages.verify_link]
kind = "email"
[stages.verify_activate]
kind = "email"
mode = "code"
code_length = 6
activate_user_on_success = true
[stages.ask_mail]
kind = "prompt"
fields = [{ key = "work_mail", label = "Work email", type = "email" }]
[stages.intermediate]
kind = "authenticator_email"
intermediate_attribute = "work_mail"
"#;

const STRANGER: Caller<'static> = Caller {
    client: "198.51.100.66",
    ..AT
};

fn rig() -> Rig {
    Rig::with(EXTRA, None)
}

/// Starts `flow` and identifies as `uid`.
async fn identified(
    rig: &Rig,
    flow: &str,
    uid: &str,
) -> (crate::flow::Execution, crate::flow::View) {
    let (mut exec, _) = rig.start(flow).await;
    let view = rig.post(&mut exec, &[("uid", uid)]).await;
    (exec, view)
}

async fn deliver(rig: &Rig) {
    rig.engine
        .deliver_queued()
        .await
        .unwrap_or_else(|e| panic!("outbox: {e}"));
}

fn queued(rig: &Rig) -> usize {
    rig.world.store.outbox().expect("outbox").len()
}

#[tokio::test]
async fn a_verification_code_is_queued_then_delivered_by_the_outbox_and_works_once() {
    let rig = rig();
    rig.user("alice", Some("alice@example.test")).await;
    let (mut exec, view) = identified(&rig, "recover", "alice").await;
    assert_eq!(component(&view), "email");
    assert_eq!(field_names(&view), ["code"]);
    let c = challenge(&view);
    assert!(c.info.iter().any(|l| l.contains("on its way")), "{c:?}");
    assert!(c.actions.iter().any(|a| a.name == "resend"), "{c:?}");
    // Nothing was sent while the user waited: the message is in the outbox.
    assert_eq!((rig.world.email.attempts(), queued(&rig)), (0, 1));
    deliver(&rig).await;
    assert_eq!(rig.world.email.count(), 1);
    assert_eq!(rig.world.email.sent()[0].to, "alice@example.test");
    assert_eq!(queued(&rig), 0, "a delivered message leaves the outbox");
    deliver(&rig).await;
    assert_eq!(rig.world.email.attempts(), 1, "never delivered twice");
    let code = rig.mailed_code();
    let view = rig.post(&mut exec, &[("code", &other_than(&code))]).await;
    assert_eq!(challenge(&view).errors, [crate::flow::otp::WRONG_CODE]);
    let view = rig.post(&mut exec, &[("code", &code)]).await;
    assert_eq!(signed_in(&view), ["identification", "email"]);
    // The same code in another execution is worthless.
    let (mut other, _) = identified(&rig, "recover", "alice").await;
    let view = rig.post(&mut other, &[("code", &code)]).await;
    assert_eq!(challenge(&view).errors, [crate::flow::otp::WRONG_CODE]);
}

#[tokio::test]
async fn a_failing_mail_server_leaves_the_message_queued_and_it_is_retried_with_backoff() {
    let rig = rig();
    rig.user("alice", Some("alice@example.test")).await;
    let (mut exec, view) = identified(&rig, "recover", "alice").await;
    assert!(
        challenge(&view).errors.is_empty(),
        "the page does not say it failed"
    );
    rig.world.email.set_failing(true);
    deliver(&rig).await;
    assert_eq!((rig.world.email.attempts(), queued(&rig)), (1, 1));
    // Not due yet: nothing is tried.
    rig.world.clock.advance_secs(1);
    deliver(&rig).await;
    assert_eq!(rig.world.email.attempts(), 1);
    rig.world.clock.advance_secs(1);
    deliver(&rig).await;
    assert_eq!(rig.world.email.attempts(), 2, "retried after 2 s");
    rig.world.clock.advance_secs(3);
    deliver(&rig).await;
    assert_eq!(rig.world.email.attempts(), 2, "then after 4 s");
    rig.world.email.set_failing(false);
    rig.world.clock.advance_secs(1);
    deliver(&rig).await;
    assert_eq!((rig.world.email.count(), queued(&rig)), (1, 0));
    let code = rig.mailed_code();
    let view = rig.post(&mut exec, &[("code", &code)]).await;
    assert!(matches!(view.step, Step::Done { .. }));
}

#[tokio::test]
async fn a_message_that_cannot_go_out_before_its_code_expires_is_dropped() {
    let rig = rig();
    rig.user("alice", Some("alice@example.test")).await;
    let _ = identified(&rig, "recover", "alice").await;
    rig.world.email.set_failing(true);
    deliver(&rig).await;
    rig.world.email.set_failing(false);
    rig.world.clock.advance_secs(15 * 60);
    deliver(&rig).await;
    assert_eq!((rig.world.email.count(), queued(&rig)), (0, 0));
}

#[tokio::test]
async fn an_unknown_or_disabled_account_gets_the_same_page_and_nothing_is_queued() {
    let rig = rig();
    rig.user("alice", Some("alice@example.test")).await;
    let mut off = rig.user("olga", Some("olga@example.test")).await;
    off.active = false;
    rig.world.store.put_user(&off).expect("store");
    rig.user("nomail", None).await;
    let (_, real) = identified(&rig, "recover", "alice").await;
    let sent = queued(&rig);
    for uid in ["nobody", "nobody@example.test", "olga", "nomail"] {
        let (mut exec, view) = identified(&rig, "recover", uid).await;
        assert_eq!(challenge(&view), challenge(&real), "{uid}");
        assert_eq!(queued(&rig), sent, "{uid}: nothing queued");
        let view = rig.post(&mut exec, &[("code", "123456")]).await;
        assert_eq!(
            challenge(&view).errors,
            [crate::flow::otp::WRONG_CODE],
            "{uid}"
        );
    }
}

#[tokio::test]
async fn a_stranger_guessing_codes_for_an_account_does_not_lock_its_owner_out() {
    let rig = rig();
    rig.user("alice", Some("alice@example.test")).await;
    let (mut owner, _) = identified(&rig, "recover", "alice").await;
    deliver(&rig).await;
    let code = rig.mailed_code();
    // A stranger starts recoveries for alice and guesses until every one ends.
    for _ in 0..3 {
        let mut exec = rig
            .engine
            .start(
                "recover",
                "https://app.example.test/".into(),
                STRANGER.client,
            )
            .expect("start");
        rig.engine.view(&mut exec, STRANGER).await.expect("view");
        let input = |k: &str, v: &str| [(k.to_string(), v.to_string())].into_iter().collect();
        rig.engine
            .submit(&mut exec, input("uid", "alice"), STRANGER)
            .await
            .expect("identify");
        // Each execution ends within three guesses (later ones at the first: the count is
        // kept per account and address).
        let mut outcome = None;
        for _ in 0..3 {
            let view = rig
                .engine
                .submit(&mut exec, input("code", &other_than(&code)), STRANGER)
                .await
                .expect("guess");
            if let Step::Ended { message } = view.step {
                outcome = Some(message);
                break;
            }
        }
        assert_eq!(
            outcome.as_deref(),
            Some(crate::flow::otp::TOO_MANY_ATTEMPTS)
        );
    }
    // Alice's own code still works.
    let view = rig.post(&mut owner, &[("code", &code)]).await;
    assert!(matches!(view.step, Step::Done { .. }), "{view:?}");
}

#[tokio::test]
async fn a_resend_is_rate_limited_and_withdraws_the_message_still_queued() {
    let rig = rig();
    rig.user("alice", Some("alice@example.test")).await;
    let (mut exec, _) = identified(&rig, "recover", "alice").await;
    let view = rig.post(&mut exec, &[("action", "resend")]).await;
    assert_eq!(
        challenge(&view).errors,
        [crate::flow::delivery::MAIL_COOLDOWN]
    );
    assert_eq!(queued(&rig), 1);
    rig.world.clock.advance_secs(30);
    let view = rig.post(&mut exec, &[("action", "resend")]).await;
    assert!(challenge(&view).errors.is_empty(), "{view:?}");
    assert_eq!(queued(&rig), 1, "the first message was withdrawn");
    deliver(&rig).await;
    assert_eq!(rig.world.email.count(), 1, "only the new message goes out");
    let code = rig.mailed_code();
    let view = rig.post(&mut exec, &[("code", &code)]).await;
    assert!(matches!(view.step, Step::Done { .. }));
}

#[tokio::test]
async fn a_verification_link_works_once_and_a_replay_is_refused() {
    let rig = rig();
    rig.user("alice", Some("alice@example.test")).await;
    let (mut exec, view) = identified(&rig, "recover_link", "alice").await;
    assert_eq!(challenge(&view).poll, Some(3));
    deliver(&rig).await;
    let token = rig.mailed_link_token();
    assert!(rig.engine.link_pending(&token).expect("pending"));
    assert!(rig.engine.confirm_link(&token).expect("confirm").is_some());
    let view = rig.view(&mut exec).await;
    assert_eq!(signed_in(&view), ["identification", "email"]);
    assert!(rig.engine.confirm_link(&token).expect("replay").is_none());
    assert!(!rig.engine.link_pending(&token).expect("gone"));
}

#[tokio::test]
async fn invalid_links_opened_in_the_browser_count_against_max_allowed_attempts() {
    // Curity: max_allowed_attempts limits link confirmations too. The authenticator's link
    // mode and the verification stage share the machine; both are checked.
    for (flow, uid, signed) in [
        ("link", "alice", true),
        ("recover_link", "alice", false),
        ("recover_link", "nobody", false),
    ] {
        let rig = rig();
        rig.user("alice", Some("alice@example.test")).await;
        let (mut exec, _) = if signed {
            rig.signed_in_to(flow, uid).await
        } else {
            identified(&rig, flow, uid).await
        };
        for _ in 0..2 {
            rig.engine.link_refused(&exec.id).expect("count");
            let view = rig.view(&mut exec).await;
            assert!(matches!(view.step, Step::Challenge { .. }), "{flow}/{uid}");
        }
        rig.engine.link_refused(&exec.id).expect("count");
        let view = rig.view(&mut exec).await;
        assert_eq!(
            ended(&view),
            crate::flow::otp::TOO_MANY_ATTEMPTS,
            "{flow}/{uid}"
        );
    }
}

#[tokio::test]
async fn activate_user_on_success_activates_the_pending_account() {
    let rig = rig();
    let mut bob = rig.user("bob", Some("bob@example.test")).await;
    bob.active = false;
    rig.world.store.put_user(&bob).expect("store");
    let (mut exec, view) = identified(&rig, "activate", "bob").await;
    assert_eq!(field_names(&view), ["code"]);
    deliver(&rig).await;
    let code = rig.mailed_code();
    let view = rig.post(&mut exec, &[("code", &code)]).await;
    assert!(
        matches!(view.step, Step::Done { login: Some(_), .. }),
        "{view:?}"
    );
    assert!(
        rig.world
            .store
            .user("bob")
            .expect("store")
            .expect("bob")
            .active
    );
}

#[tokio::test]
async fn identification_and_password_offer_forgot_password_leading_to_the_recovery_flow() {
    let rig = rig();
    rig.user("alice", Some("alice@example.test")).await;
    let (mut exec, view) = rig.start("forgot").await;
    let link = |view: &crate::flow::View| challenge(view).links.clone();
    assert_eq!(link(&view)[0].href, "/.portcullis/flow/recover");
    assert_eq!(link(&view)[0].label, "Forgot password?");
    let view = rig.post(&mut exec, &[("uid", "alice")]).await;
    assert_eq!(component(&view), "password");
    assert_eq!(link(&view)[0].href, "/.portcullis/flow/recover");
    let (_, view) = rig.start("login").await;
    assert!(link(&view).is_empty(), "not without recovery_flow");
}

#[tokio::test]
async fn recovery_flow_must_name_a_recovery_flow() {
    for (value, want) in [
        ("\"nope\"", "no flow with slug `nope`"),
        ("\"login\"", "needs designation = \"recovery\""),
    ] {
        let extra = EXTRA.replace(
            "kind = \"password\"\nrecovery_flow = \"recover\"",
            &format!("kind = \"password\"\nrecovery_flow = {value}"),
        );
        let e = Rig::config(&extra).expect_err("refused").to_string();
        assert!(e.contains("stages.password_r.recovery_flow"), "{e}");
        assert!(e.contains(want), "{e}");
    }
}

#[tokio::test]
async fn intermediate_attribute_takes_the_address_from_the_flow_after_a_first_factor() {
    let rig = rig();
    rig.user("alice", Some("alice@example.test")).await;
    let (mut exec, view) = rig.signed_in_to("second_address", "alice").await;
    assert_eq!(field_names(&view), ["work_mail"]);
    let view = rig
        .post(&mut exec, &[("work_mail", "alice@work.example")])
        .await;
    assert_eq!(field_names(&view), ["code"]);
    assert_eq!(rig.world.email.sent()[0].to, "alice@work.example");
    let code = rig.mailed_code();
    let view = rig.post(&mut exec, &[("code", &code)]).await;
    assert!(matches!(view.step, Step::Done { .. }));
}

#[test]
fn intermediate_attribute_as_the_first_factor_is_refused_naming_the_key() {
    let first = format!(
        "{EXTRA}\n[[flows]]\nslug = \"first\"\ndesignation = \"authentication\"\nstages = [\"identify\", \"ask_mail\", \"intermediate\", \"login\"]\n"
    );
    let e = Rig::config(&first).expect_err("refused").to_string();
    assert!(
        e.contains("stages.intermediate.intermediate_attribute"),
        "{e}"
    );
    assert!(e.contains("first factor"), "{e}");
    assert!(e.contains("`work_mail`"), "{e}");
    // Nothing before it sets the value.
    let unset = EXTRA.replace(
        "stages = [\"identify\", \"password\", \"ask_mail\", \"intermediate\", \"login\"]",
        "stages = [\"identify\", \"password\", \"intermediate\", \"login\"]",
    );
    let e = Rig::config(&unset).expect_err("refused").to_string();
    assert!(e.contains("puts `work_mail` in the flow"), "{e}");
}

#[test]
fn registration_mode_needs_a_user_write_stage_after_it() {
    let extra = format!(
        "{EXTRA}\n[[flows]]\nslug = \"register_alone\"\ndesignation = \"enrollment\"\nstages = [\"identify\", \"register_alone\", \"login\"]\n[stages.register_alone]\nkind = \"authenticator_email\"\nregistration = true\n"
    );
    let e = Rig::config(&extra).expect_err("refused").to_string();
    assert!(e.contains("stages.register_alone.registration"), "{e}");
    assert!(e.contains("user_write"), "{e}");
}

#[test]
fn a_verification_stage_refuses_unlimited_sends_or_attempts() {
    for key in ["max_challenges_sent", "max_allowed_attempts"] {
        let extra = EXTRA.replace(
            "[stages.verify_link]\nkind = \"email\"",
            &format!("[stages.verify_link]\nkind = \"email\"\n{key} = 0"),
        );
        let e = Rig::config(&extra).expect_err("refused").to_string();
        assert!(e.contains(&format!("stages.verify_link.{key}")), "{e}");
    }
}

#[tokio::test]
async fn registration_mode_creates_an_account_for_an_unknown_address_once_it_is_proved() {
    let rig = rig();
    rig.user("alice", Some("alice@example.test")).await;
    let (mut exec, view) = identified(&rig, "register", "new@example.test").await;
    assert_eq!(field_names(&view), ["code"]);
    // The page reads as a known account's does: the typed address is not shown back.
    let (_, known) = identified(&rig, "register", "alice").await;
    assert_eq!(challenge(&view).info, challenge(&known).info);
    let to: Vec<String> = rig
        .world
        .email
        .sent()
        .iter()
        .map(|m| m.to.clone())
        .collect();
    assert_eq!(to, ["new@example.test", "alice@example.test"]);
    let codes: Vec<String> = rig
        .world
        .email
        .sent()
        .iter()
        .map(|m| {
            m.text
                .expose()
                .split(|c: char| !c.is_ascii_digit())
                .find(|w| w.len() == 6)
                .expect("a code")
                .to_string()
        })
        .collect();
    let view = rig
        .post(&mut exec, &[("code", &other_than(&codes[0]))])
        .await;
    assert_eq!(challenge(&view).errors, [crate::flow::otp::WRONG_CODE]);
    assert!(rig
        .world
        .store
        .user("new@example.test")
        .expect("store")
        .is_none());
    let view = rig.post(&mut exec, &[("code", &codes[0])]).await;
    assert!(
        matches!(view.step, Step::Done { login: Some(_), .. }),
        "{view:?}"
    );
    let created = rig
        .world
        .store
        .user_by_email("new@example.test")
        .expect("store")
        .expect("the account was created");
    assert_eq!(created.email.as_deref(), Some("new@example.test"));
    // A typed name that is not an address is never sent anything.
    let before = rig.world.email.count();
    let (_, view) = identified(&rig, "register", "not-an-address").await;
    assert_eq!(field_names(&view), ["code"]);
    assert_eq!(rig.world.email.count(), before);
}

/// Attack: a stranger floods one mailbox by starting recoveries from many client addresses
/// (an IPv6 range gives plenty). The per-client limits alone never stop that; an account-wide
/// cap does, with the same words for a name that matches no account.
#[tokio::test]
async fn mail_flooding_one_account_from_many_addresses_is_capped_without_telling_who_exists() {
    let rig = rig();
    rig.user("alice", Some("alice@example.test")).await;
    let cap = 3 * crate::flow::delivery::ACCOUNT_SENDS_FACTOR as usize;
    for (uid, real) in [("alice", true), ("nobody@example.test", false)] {
        let before = queued(&rig);
        let mut errors = Vec::new();
        for i in 0..cap + 5 {
            let client = format!("2001:db8::{i:x}");
            let mut exec = rig
                .engine
                .start("recover", "https://app.example.test/".into(), &client)
                .expect("start");
            let at = Caller {
                client: &client,
                ..AT
            };
            rig.engine.view(&mut exec, at).await.expect("view");
            let input = [("uid".to_string(), uid.to_string())].into_iter().collect();
            let view = rig.engine.submit(&mut exec, input, at).await.expect("uid");
            errors.push(challenge(&view).errors.clone());
        }
        let sent = queued(&rig) - before;
        assert_eq!(sent, if real { cap } else { 0 }, "{uid}");
        assert!(errors[..cap].iter().all(Vec::is_empty), "{uid}: {errors:?}");
        for e in &errors[cap..] {
            assert_eq!(e, &[crate::flow::otp::TOO_MANY_FOR_ACCOUNT], "{uid}");
        }
    }
}

/// Attack: damaged outbox records in a real sled database (garbage bytes, a record whose sealed
/// parts do not open, one sealed for another id) neither stop the good message nor crash the
/// outbox; unreadable ones are dropped, unopenable ones wait out their expiry.
#[tokio::test]
async fn damaged_outbox_records_in_sled_do_not_stop_delivery_of_the_others() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sled = Arc::new(crate::store::SledStore::open(&dir.path().join("db")).expect("sled"));
    let config = Rig::config(EXTRA).expect("config");
    let mut world = crate::testing::TestWorld::for_config(&config);
    world.services.store = sled.clone();
    let mut engine = crate::flow::Engine::new(&config, world.services.clone());
    engine.pace = std::sync::Arc::new(crate::flow::delivery::Pace::instant());
    let rig = Rig { engine, world };
    let mut alice = crate::store::User::new("alice", 0);
    alice.email = Some("alice@example.test".into());
    sled.put_user(&alice).expect("user");
    let now = rig.world.clock.now();
    let expires = now + 600;
    let record = |sealed: &str| {
        serde_json::json!({"to": "victim@example.test", "subject": "x", "sealed": sealed,
            "route": "verify", "user": "user:alice", "expires": expires, "attempts": 0, "next": 0})
        .to_string()
    };
    // Older ids than the good message's, so they are tried first.
    let damaged: [(&str, Vec<u8>); 5] = [
        ("0000000000000000-garbage", vec![0xff, 0x00, 0xfe, b'{']),
        ("0000000000000000-empty", Vec::new()),
        ("0000000000000000-json", br#"{"to": 5}"#.to_vec()),
        (
            "0000000000000000-sealed",
            record("not-sealed-at-all").into_bytes(),
        ),
        ("0000000000000000-huge", vec![b'['; 1 << 20]),
    ];
    for (id, bytes) in &damaged {
        sled.put_outbox(id, bytes).expect("put");
    }
    let (mut exec, _) = identified(&rig, "recover", "alice").await;
    deliver(&rig).await;
    assert_eq!(rig.world.email.count(), 1, "the good message went out");
    assert_eq!(rig.world.email.sent()[0].to, "alice@example.test");
    let code = rig.mailed_code();
    let view = rig.post(&mut exec, &[("code", &code)]).await;
    assert!(matches!(view.step, Step::Done { .. }), "{view:?}");
    // Only the record that parses but does not open is left, and only until it expires.
    let left: Vec<String> = sled
        .outbox()
        .expect("outbox")
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(left, ["0000000000000000-sealed"]);
    rig.world.clock.advance(std::time::Duration::from_secs(601));
    deliver(&rig).await;
    assert!(sled.outbox().expect("outbox").is_empty());
    assert_eq!(rig.world.email.count(), 1);
}

const RESET: &str = r#"
[[flows]]
slug = "reset"
title = "Reset your password"
designation = "recovery"
stages = ["identify_r", "verify", "new_pw", "write_pw", "login"]
[stages.new_pw]
kind = "prompt"
fields = [{ key = "password", label = "New password", type = "password" }]
[stages.write_pw]
kind = "user_write"
user_creation_mode = "never_create"
"#;

/// Alice recovers her account through "reset" (the mailed code, then `new`).
async fn reset_password(rig: &Rig, new: &str) {
    let (mut exec, _) = identified(rig, "reset", "alice").await;
    deliver(rig).await;
    let code = rig.mailed_code();
    let view = rig.post(&mut exec, &[("code", &code)]).await;
    assert_eq!(component(&view), "prompt", "{view:?}");
    let view = rig.post(&mut exec, &[("password", new)]).await;
    assert!(
        signed_in(&view).contains(&"user_write".to_string()),
        "{view:?}"
    );
}

/// Attack: someone who knows the old password gets past it in a sign-in, holds that sign-in
/// open while the owner recovers the account, then finishes it (enrolling a phone of their
/// own, or just being signed in). A sign-in whose proofs predate the password change ends
/// like the sessions did; the recovery's own execution still signs in.
#[tokio::test]
async fn a_sign_in_held_open_across_a_password_reset_cannot_be_finished() {
    // (flow, what the attacker posts after the reset)
    let table: [(&str, &[(&str, &str)]); 3] = [
        ("phone", &[("phone", "+41 79 123 45 67")]),
        ("ask", &[("nickname", "m"), ("phone", "+41 79 123 45 67")]),
        ("login", &[]),
    ];
    for (flow, then) in table {
        let rig = Rig::with(&format!("{EXTRA}{RESET}"), None);
        rig.user("alice", Some("alice@example.test")).await;
        let (mut attacker, _) = rig.start(flow).await;
        rig.post(&mut attacker, &[("uid", "alice")]).await;
        if flow == "login" {
            // Held at the password stage, with the old password typed after the reset.
        } else {
            let view = rig.post(&mut attacker, &[("password", PASSWORD)]).await;
            assert!(
                matches!(view.step, Step::Challenge { .. }),
                "{flow}: {view:?}"
            );
        }
        rig.world.clock.advance(std::time::Duration::from_secs(2));
        reset_password(&rig, "Quartz-lantern-over-9-rivers").await;
        rig.world.clock.advance(std::time::Duration::from_secs(2));
        let view = if flow == "login" {
            rig.post(&mut attacker, &[("password", PASSWORD)]).await
        } else {
            rig.post(&mut attacker, then).await
        };
        assert!(
            !matches!(view.step, Step::Done { login: Some(_), .. }),
            "{flow}: signed in across the reset: {view:?}"
        );
        if flow != "login" {
            assert!(matches!(view.step, Step::Ended { .. }), "{flow}: {view:?}");
        }
        assert!(rig.devices("alice").is_empty(), "{flow}: no device added");
        assert_eq!(rig.world.sms.attempts(), 0, "{flow}: nothing texted");
    }
}

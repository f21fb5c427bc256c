//! The `email` (verification) stage, its outbox, recovery flows and the Curity options of the
//! email authenticator (registration, `intermediate_attribute`, link attempts).

use super::rig::*;
use crate::flow::{Caller, Step};
use crate::store::Store;

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

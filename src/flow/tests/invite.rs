//! `invitation`: enrolment by invitation, and the attacks on it (reuse, races, expiry,
//! withdrawal, another flow, forged tokens, data the visitor changes).

use super::enrol::signup;
use super::rig::*;
use crate::clock::Clock;
use crate::flow::stages::invitation::{issue, INVALID};
use crate::flow::stages::user_write::INVITED_ADDRESS_TAKEN;
use crate::flow::{Execution, View};
use crate::secret::SecretString;
use crate::store::{InvitationData, Store};

const INVITE: &str = r#"
[[flows]]
slug = "invited"
title = "Join"
designation = "enrollment"
stages = ["invite", "signup", "write", "login"]
[[flows]]
slug = "other_enroll"
title = "Join"
designation = "enrollment"
stages = ["invite", "signup", "write", "login"]
[[flows]]
slug = "open_signup"
title = "Join"
designation = "enrollment"
stages = ["invite_optional", "signup", "write", "login"]
[[flows]]
slug = "typed_token"
title = "Join"
designation = "enrollment"
stages = ["ask_token", "invite", "signup", "write", "login"]
[[flows]]
slug = "no_write"
title = "Join"
designation = "enrollment"
stages = ["invite", "identify", "password", "login"]

[stages.invite]
kind = "invitation"
[stages.invite_optional]
kind = "invitation"
continue_flow_without_invitation = true
[stages.ask_token]
kind = "prompt"
fields = [{ key = "token", label = "Invitation code" }]
"#;

fn rig() -> Rig {
    Rig::with(&format!("{}\n{INVITE}", super::enrol::ENROL), None)
}

/// An invitation for bob@example.com into `dev`, bound to `flow`, live for an hour.
fn invitation(rig: &Rig, flow: Option<&str>, single_use: bool) -> (String, SecretString) {
    invitation_for(rig, Some("bob@example.com"), flow, single_use)
}

/// An invitation into `dev` fixing `email` (any address when `None`).
fn invitation_for(
    rig: &Rig,
    email: Option<&str>,
    flow: Option<&str>,
    single_use: bool,
) -> (String, SecretString) {
    let fixed = InvitationData {
        email: email.map(str::to_string),
        groups: vec!["dev".into()],
        attributes: [("cohort".to_string(), "2026".to_string())].into(),
        ..Default::default()
    };
    let now = rig.world.clock.now();
    let (inv, token) = issue(fixed, flow.map(str::to_string), single_use, now, now + 3600);
    rig.world.store.put_invitation(&inv).unwrap();
    (inv.id, token)
}

/// `flow` opened from a link carrying `token` (as `?itoken=` does).
async fn open(rig: &Rig, flow: &str, token: Option<&str>) -> (Execution, View) {
    let mut exec = rig
        .engine
        .start(flow, "https://app.example.test/".into(), AT.client)
        .unwrap();
    exec.invitation_token = token.map(SecretString::new);
    let view = rig.view(&mut exec).await;
    (exec, view)
}

fn prefilled<'v>(view: &'v View, name: &str) -> Option<&'v str> {
    challenge(view)
        .fields
        .iter()
        .find(|f| f.name == name)
        .and_then(|f| f.value.as_deref())
}

#[tokio::test]
async fn an_invitation_link_enrols_with_its_fixed_data_and_is_spent() {
    let rig = rig();
    let (id, token) = invitation(&rig, Some("invited"), true);
    let (mut exec, view) = open(&rig, "invited", Some(token.expose())).await;
    assert_eq!(component(&view), "prompt");
    assert_eq!(prefilled(&view, "email"), Some("bob@example.com"));
    let view = rig.post(&mut exec, &signup("bob", "bob@example.com")).await;
    signed_in(&view);
    let bob = rig.world.store.user("bob").unwrap().expect("created");
    assert_eq!(bob.groups, ["dev"]);
    assert_eq!(bob.email.as_deref(), Some("bob@example.com"));
    assert_eq!(
        bob.attributes.get("cohort").map(String::as_str),
        Some("2026")
    );
    assert_eq!(bob.attributes.get("team").map(String::as_str), Some("dev"));
    let now = rig.world.clock.now();
    assert!(rig.world.store.invitation(&id, now).unwrap().is_none());
    // The same link again.
    let (_, view) = open(&rig, "invited", Some(token.expose())).await;
    assert_eq!(ended(&view), INVALID);
}

#[tokio::test]
async fn unusable_invitations_all_get_the_same_answer() {
    type Spoil = fn(&Rig, &str, &SecretString) -> String;
    let cases: &[(&str, Option<&str>, &str, Spoil)] = &[
        ("expired", None, "invited", |rig, _, t| {
            rig.world.clock.advance_secs(3600);
            t.expose().into()
        }),
        ("withdrawn", None, "invited", |rig, id, t| {
            rig.world.store.remove_invitation(id).unwrap();
            t.expose().into()
        }),
        (
            "for another flow",
            Some("other_enroll"),
            "invited",
            |_, _, t| t.expose().into(),
        ),
        ("forged secret", None, "invited", |_, id, _| {
            format!("{id}.{}", "A".repeat(32))
        }),
        (
            "another invitation's secret",
            None,
            "invited",
            |rig, id, _| {
                let (_, other) = invitation(rig, None, true);
                format!("{id}.{}", other.expose().split_once('.').unwrap().1)
            },
        ),
        ("truncated", None, "invited", |_, _, t| {
            t.expose()[..t.expose().len() - 1].into()
        }),
        ("id only", None, "invited", |_, id, _| id.into()),
        ("empty", None, "invited", |_, _, _| String::new()),
        ("padded", None, "invited", |_, _, t| {
            format!(" {} ", t.expose())
        }),
        ("no link at all", None, "invited", |_, _, _| "-".into()),
    ];
    for (what, bound, flow, spoil) in cases {
        let rig = rig();
        let (id, token) = invitation(&rig, *bound, true);
        let sent = spoil(&rig, &id, &token);
        let token = (sent != "-").then_some(sent.as_str());
        let (_, view) = open(&rig, flow, token).await;
        assert_eq!(ended(&view), INVALID, "{what}");
        assert_eq!(rig.world.store.user_count().unwrap(), 0, "{what}");
    }
}

#[tokio::test]
async fn without_continue_flow_without_invitation_an_open_sign_up_needs_none() {
    let rig = rig();
    let (mut exec, view) = open(&rig, "open_signup", None).await;
    assert_eq!(component(&view), "prompt");
    assert_eq!(prefilled(&view, "email"), None);
    let view = rig
        .post(&mut exec, &signup("carol", "carol@example.com"))
        .await;
    signed_in(&view);
    assert!(rig
        .world
        .store
        .user("carol")
        .unwrap()
        .unwrap()
        .groups
        .is_empty());
    // A bad token there is as good as none: no invitation data, no error.
    let (_, view) = open(&rig, "open_signup", Some("forged.token")).await;
    assert_eq!(component(&view), "prompt");
}

#[tokio::test]
async fn the_invitations_address_cannot_be_swapped_for_another() {
    let rig = rig();
    let (_, token) = invitation(&rig, None, true);
    let (mut exec, _) = open(&rig, "invited", Some(token.expose())).await;
    for typed in ["mallory@example.com", "bob@example.com.evil", ""] {
        let view = rig.post(&mut exec, &signup("bob", typed)).await;
        assert_eq!(component(&view), "prompt", "{typed:?}");
        assert!(
            challenge(&view)
                .errors
                .iter()
                .any(|e| e.contains("bob@example.com") || e.contains("required")),
            "{typed:?}: {:?}",
            challenge(&view).errors
        );
    }
    // Case and spaces are the same address.
    let view = rig
        .post(&mut exec, &signup("bob", " BOB@Example.com"))
        .await;
    signed_in(&view);
    let bob = rig.world.store.user("bob").unwrap().unwrap();
    assert_eq!(bob.email.as_deref(), Some("bob@example.com"));
}

#[tokio::test]
async fn an_invitation_for_an_address_with_an_account_ends_with_a_clear_message() {
    let rig = rig();
    rig.user("robert", Some("bob@example.com")).await;
    let (id, token) = invitation(&rig, None, true);
    let (mut exec, _) = open(&rig, "invited", Some(token.expose())).await;
    let view = rig.post(&mut exec, &signup("bob", "bob@example.com")).await;
    assert_eq!(ended(&view), INVITED_ADDRESS_TAKEN);
    let now = rig.world.clock.now();
    assert!(
        rig.world.store.invitation(&id, now).unwrap().is_some(),
        "not spent"
    );
}

#[tokio::test]
async fn two_sign_ups_racing_with_one_invitation_make_one_account() {
    let rig = rig();
    let (_, token) = invitation_for(&rig, None, None, true);
    // Both accepted the invitation: accepting does not spend it (an abandoned sign-up does
    // not burn it), writing the account does, once.
    let (mut first, _) = open(&rig, "invited", Some(token.expose())).await;
    let (mut second, _) = open(&rig, "invited", Some(token.expose())).await;
    let a = signup("bob", "bob@example.com");
    let b = signup("carol", "carol@example.com");
    let (va, vb) = tokio::join!(rig.post(&mut first, &a), rig.post(&mut second, &b));
    let done: Vec<bool> = [&va, &vb]
        .iter()
        .map(|v| matches!(v.step, crate::flow::Step::Done { .. }))
        .collect();
    assert_eq!(done.iter().filter(|d| **d).count(), 1, "{va:?} {vb:?}");
    let loser = if done[0] { &vb } else { &va };
    assert_eq!(ended(loser), INVALID);
    assert_eq!(rig.world.store.user_count().unwrap(), 1);
}

#[tokio::test]
async fn a_multi_use_invitation_enrols_several_until_withdrawn() {
    let rig = rig();
    let (id, token) = invitation_for(&rig, None, None, false);
    for name in ["bob", "carol"] {
        let (mut exec, _) = open(&rig, "invited", Some(token.expose())).await;
        let email = format!("{name}@example.com");
        let view = rig.post(&mut exec, &signup(name, &email)).await;
        signed_in(&view);
        let user = rig.world.store.user(name).unwrap().unwrap();
        assert_eq!(user.groups, ["dev"]);
    }
    rig.world.store.remove_invitation(&id).unwrap();
    let (_, view) = open(&rig, "invited", Some(token.expose())).await;
    assert_eq!(ended(&view), INVALID);
}

#[tokio::test]
async fn an_invitation_withdrawn_after_it_was_accepted_creates_nobody() {
    let rig = rig();
    let (id, token) = invitation(&rig, None, true);
    let (mut exec, _) = open(&rig, "invited", Some(token.expose())).await;
    rig.world.store.remove_invitation(&id).unwrap();
    let view = rig.post(&mut exec, &signup("bob", "bob@example.com")).await;
    assert_eq!(ended(&view), INVALID);
    assert_eq!(rig.world.store.user_count().unwrap(), 0);
}

#[tokio::test]
async fn a_token_typed_into_a_prompt_works_like_the_link() {
    let rig = rig();
    let (_, token) = invitation(&rig, None, true);
    let (mut exec, view) = open(&rig, "typed_token", None).await;
    assert_eq!(field_names(&view), ["token"]);
    let view = rig.post(&mut exec, &[("token", token.expose())]).await;
    assert_eq!(prefilled(&view, "email"), Some("bob@example.com"));
    let view = rig.post(&mut exec, &signup("bob", "bob@example.com")).await;
    signed_in(&view);
    let (mut exec, _) = open(&rig, "typed_token", None).await;
    let view = rig.post(&mut exec, &[("token", token.expose())]).await;
    assert_eq!(ended(&view), INVALID, "spent");
}

#[tokio::test]
async fn a_flow_without_user_write_spends_its_invitation_when_it_completes() {
    let rig = rig();
    rig.user("alice", None).await;
    let (id, token) = invitation(&rig, None, true);
    let (mut exec, _) = open(&rig, "no_write", Some(token.expose())).await;
    rig.post(&mut exec, &[("uid", "alice")]).await;
    let view = rig.post(&mut exec, &[("password", PASSWORD)]).await;
    signed_in(&view);
    let now = rig.world.clock.now();
    assert!(rig.world.store.invitation(&id, now).unwrap().is_none());
}

#[tokio::test]
async fn the_example_configs_enroll_flow_enrols_an_invited_colleague() {
    let path = std::path::Path::new("config/portcullis.toml");
    let text = std::fs::read_to_string(path).expect("the example config");
    let config = crate::config::Config::from_toml(&text, path, std::iter::empty())
        .expect("the example config loads");
    let world = crate::testing::TestWorld::for_config(&config);
    let engine = crate::flow::Engine::new(&config, world.services.clone());
    let rig = Rig { engine, world };
    let (_, token) = invitation(&rig, Some("enroll"), true);
    let (mut exec, view) = open(&rig, "enroll", Some(token.expose())).await;
    assert_eq!(prefilled(&view, "email"), Some("bob@example.com"));
    let pw = "a long enough passphrase";
    let view = rig
        .post(
            &mut exec,
            &[
                ("username", "bob"),
                ("email", "bob@example.com"),
                ("name", "Bob"),
                ("password", pw),
                ("password_repeat", pw),
            ],
        )
        .await;
    // The account exists, disabled, until Bob proves the address with the mailed code.
    assert_eq!(component(&view), "email", "{view:?}");
    assert!(
        challenge(&view)
            .actions
            .iter()
            .all(|a| a.name != "start_over"),
        "no \"Not you? Start over\" for the account just made"
    );
    assert!(!rig.world.store.user("bob").unwrap().unwrap().active);
    rig.engine.deliver_queued().await.expect("outbox");
    assert_eq!(rig.world.email.sent()[0].to, "bob@example.com");
    let mail = rig.world.email.sent()[0].text.expose().to_string();
    let code = mail
        .split_whitespace()
        .find(|w| w.len() == 8 && w.bytes().all(|b| b.is_ascii_digit()))
        .unwrap_or_else(|| panic!("no 8-digit code in {mail:?}"))
        .to_string();
    let view = rig.post(&mut exec, &[("code", &code)]).await;
    signed_in(&view);
    let bob = rig.world.store.user("bob").unwrap().unwrap();
    assert_eq!(bob.groups, ["dev"]);
    assert!(bob.active, "the proved address enables the account");
    let (_, view) = open(&rig, "enroll", None).await;
    assert_eq!(ended(&view), INVALID, "no invitation, no sign-up");
}

//! `user_write`: accounts created by enrolment, written by recovery and settings flows, and
//! refused names and addresses (with the same work either way).

use super::rig::*;
use crate::flow::stages::user_write::{CONTROL_CHARACTER, EMAIL_TAKEN, NO_ACCOUNT, USERNAME_TAKEN};
use crate::flow::{Engine, Step};
use crate::password::{PasswordError, PasswordHasher};
use crate::secret::SecretString;
use crate::store::Store;
use crate::testing::TestWorld;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub(super) const ENROL: &str = r#"
[[flows]]
slug = "enroll"
title = "Sign up"
designation = "enrollment"
stages = ["signup", "write", "login"]
[[flows]]
slug = "enroll_inactive"
title = "Sign up"
designation = "enrollment"
stages = ["signup", "write_inactive", "login"]
[[flows]]
slug = "change_password"
title = "New password"
designation = "authentication"
stages = ["identify", "password", "new_password", "write_existing", "login"]
[[flows]]
slug = "unproved_write"
title = "New password"
designation = "authentication"
stages = ["identify", "new_password", "write_existing", "login"]
[[flows]]
slug = "unproved_create"
title = "New password"
designation = "authentication"
stages = ["identify", "new_password", "write", "login"]
[[flows]]
slug = "never"
title = "Sign up"
designation = "enrollment"
stages = ["signup", "write_existing", "login"]

[stages.signup]
kind = "prompt"
fields = [
  { key = "username", label = "Username" },
  { key = "email", label = "Email", type = "email" },
  { key = "name", label = "Name", required = false },
  { key = "attributes.team", label = "Team", required = false },
  { key = "password", label = "Password", type = "password" },
  { key = "password_repeat", label = "Password (repeat)", type = "password" },
]
[stages.new_password]
kind = "prompt"
fields = [
  { key = "password", label = "New password", type = "password" },
  { key = "password_repeat", label = "Repeat", type = "password" },
]
[stages.write]
kind = "user_write"
[stages.write_inactive]
kind = "user_write"
create_users_as_inactive = true
create_users_group = "newcomers"
[stages.write_existing]
kind = "user_write"
user_creation_mode = "never_create"
"#;

pub(super) const NEW_PASSWORD: &str = "  a long new passphrase ";

pub(super) fn enrol_rig() -> Rig {
    Rig::with(ENROL, None)
}

/// The sign-up form's answers for `username` and `email`.
pub(super) fn signup<'a>(username: &'a str, email: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("username", username),
        ("email", email),
        ("name", "Bob Builder"),
        ("attributes.team", "dev"),
        ("password", NEW_PASSWORD),
        ("password_repeat", NEW_PASSWORD),
    ]
}

async fn verifies(rig: &Rig, user: &str, password: &str) -> bool {
    let hash = rig
        .world
        .store
        .user(user)
        .unwrap()
        .and_then(|u| u.password_hash);
    rig.world
        .services
        .passwords
        .verify(SecretString::new(password), hash)
        .await
}

#[tokio::test]
async fn enrolment_creates_the_account_from_the_prompt_and_signs_it_in() {
    let rig = enrol_rig();
    let (mut exec, view) = rig.start("enroll").await;
    assert_eq!(component(&view), "prompt");
    let view = rig.post(&mut exec, &signup("Bob", "bob@example.com")).await;
    let amr = signed_in(&view);
    assert!(amr.contains(&"user_write".to_string()), "{amr:?}");
    assert!(amr.contains(&"pwd".to_string()), "{amr:?}");
    let Step::Done {
        login: Some(login), ..
    } = &view.step
    else {
        unreachable!()
    };
    assert_eq!(login.user.username, "bob", "stored in canonical form");
    let bob = rig.world.store.user("bob").unwrap().expect("created");
    assert_eq!(bob.email.as_deref(), Some("bob@example.com"));
    assert_eq!(bob.name, "Bob Builder");
    assert_eq!(bob.attributes.get("team").map(String::as_str), Some("dev"));
    assert!(bob.active && bob.groups.is_empty());
    let hash = bob.password_hash.clone().expect("a password");
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    assert!(verifies(&rig, "bob", NEW_PASSWORD).await, "kept untrimmed");
    assert!(!verifies(&rig, "bob", NEW_PASSWORD.trim()).await);
}

#[tokio::test]
async fn taken_names_and_addresses_in_any_spelling_are_refused_and_asked_again() {
    let rig = enrol_rig();
    rig.user("alice", Some("alice@example.com")).await;
    rig.user("josé", Some("jose@example.com")).await;
    let cases: &[(&str, &str, &[&str], &str)] = &[
        (
            "Jose\u{301}",
            "new@example.com",
            &["username"],
            USERNAME_TAKEN,
        ),
        ("JOSÉ", "new@example.com", &["username"], USERNAME_TAKEN),
        (
            "Ａｌｉｃｅ",
            "new@example.com",
            &["username"],
            USERNAME_TAKEN,
        ),
        ("dave", "JOSE@EXAMPLE.COM", &["email"], EMAIL_TAKEN),
        ("alice", "new@example.com", &["username"], USERNAME_TAKEN),
        ("ALICE", "new@example.com", &["username"], USERNAME_TAKEN),
        (
            "ａｌｉｃｅ",
            "new@example.com",
            &["username"],
            USERNAME_TAKEN,
        ),
        (
            "Alice",
            "ALICE@Example.COM",
            &["username", "email"],
            USERNAME_TAKEN,
        ),
        ("carol", " Alice@example.com ", &["email"], EMAIL_TAKEN),
        (
            "ali\u{200B}ce",
            "new@example.com",
            &["username"],
            "not a valid username",
        ),
        (
            "al ice",
            "new@example.com",
            &["username"],
            "not a valid username",
        ),
    ];
    for (username, email, asked, error) in cases {
        let (mut exec, _) = rig.start("enroll").await;
        let view = rig.post(&mut exec, &signup(username, email)).await;
        assert_eq!(component(&view), "user_write", "{username:?} {email:?}");
        assert_eq!(field_names(&view), *asked, "{username:?} {email:?}");
        let errors = &challenge(&view).errors;
        assert!(
            errors.iter().any(|e| e.contains(error)),
            "{username:?} {email:?}: {errors:?}"
        );
        // The password waits as its hash only: the stored sign-in never holds it in clear.
        let stored = rig.world.store.execution(&exec.id, i64::MIN).unwrap();
        let stored = String::from_utf8(stored.expect("stored")).unwrap();
        assert!(!stored.contains(NEW_PASSWORD.trim()), "{stored}");
        assert!(stored.contains("$argon2id$"), "{stored}");
    }
    assert_eq!(
        rig.world.store.user_count().unwrap(),
        2,
        "nothing was created"
    );
    // Choosing another name then creates the account, with the password typed at first.
    let (mut exec, _) = rig.start("enroll").await;
    rig.post(&mut exec, &signup("alice", "carol@example.com"))
        .await;
    let view = rig.post(&mut exec, &[("username", "carol")]).await;
    signed_in(&view);
    assert!(verifies(&rig, "carol", NEW_PASSWORD).await);
    let alice = rig.world.store.user("alice").unwrap().unwrap();
    assert!(verifies(&rig, "alice", PASSWORD).await, "alice untouched");
    assert_eq!(alice.email.as_deref(), Some("alice@example.com"));
}

#[tokio::test]
async fn passwords_must_match_and_follow_the_password_rules() {
    let rig = enrol_rig();
    let (mut exec, _) = rig.start("enroll").await;
    let mut answers = signup("bob", "bob@example.com");
    answers[5] = ("password_repeat", "something else entirely");
    let view = rig.post(&mut exec, &answers).await;
    assert_eq!(component(&view), "prompt");
    assert_eq!(challenge(&view).errors, ["Passwords don't match."]);
    // `[password]` (8 characters at least) holds for flows too: asked again at user_write.
    let mut answers = signup("bob", "bob@example.com");
    answers[4] = ("password", "short");
    answers[5] = ("password_repeat", "short");
    let view = rig.post(&mut exec, &answers).await;
    assert_eq!(component(&view), "user_write");
    assert_eq!(field_names(&view), ["password", "password_repeat"]);
    assert!(rig.world.store.user("bob").unwrap().is_none());
    let view = rig
        .post(
            &mut exec,
            &[
                ("password", NEW_PASSWORD),
                ("password_repeat", NEW_PASSWORD),
            ],
        )
        .await;
    signed_in(&view);
    assert!(verifies(&rig, "bob", NEW_PASSWORD).await);
}

#[tokio::test]
async fn a_prompt_password_is_never_kept_in_prompt_data() {
    let rig = enrol_rig();
    rig.user("alice", None).await;
    let (mut exec, _) = rig.start("enroll").await;
    rig.post(&mut exec, &signup("alice", "a@example.com")).await;
    assert!(!exec.prompt_data.contains_key("password"), "{exec:?}");
    assert!(!exec.prompt_data.contains_key("password_repeat"));
    let reloaded = rig.reload(&exec).expect("waiting");
    assert!(reloaded.secrets.is_empty(), "secrets are never stored");
}

#[tokio::test]
async fn a_new_password_on_an_existing_account_ends_every_session_of_it() {
    let rig = enrol_rig();
    rig.user("alice", Some("alice@example.com")).await;
    assert!(rig.world.store.user_revocations().unwrap().is_empty());
    let (mut exec, view) = rig.signed_in_to("change_password", "alice").await;
    assert_eq!(component(&view), "prompt");
    let view = rig
        .post(
            &mut exec,
            &[
                ("password", NEW_PASSWORD),
                ("password_repeat", NEW_PASSWORD),
            ],
        )
        .await;
    signed_in(&view);
    assert!(verifies(&rig, "alice", NEW_PASSWORD).await);
    assert!(!verifies(&rig, "alice", PASSWORD).await);
    let revoked = rig.world.store.user_revocations().unwrap();
    assert_eq!(revoked.len(), 1);
    assert_eq!(revoked[0].0, "alice");
}

#[tokio::test]
async fn nobody_writes_an_account_they_only_named() {
    let rig = enrol_rig();
    rig.user("alice", Some("alice@example.com")).await;
    let (mut exec, _) = rig.start("unproved_write").await;
    rig.post(&mut exec, &[("uid", "alice")]).await;
    let view = rig
        .post(
            &mut exec,
            &[
                ("password", NEW_PASSWORD),
                ("password_repeat", NEW_PASSWORD),
            ],
        )
        .await;
    assert_eq!(ended(&view), NO_ACCOUNT);
    assert!(
        verifies(&rig, "alice", PASSWORD).await,
        "password unchanged"
    );
    assert!(rig.world.store.user_revocations().unwrap().is_empty());
    // Naming nobody creates nobody outside enrolment either.
    let (mut exec, _) = rig.start("unproved_create").await;
    rig.post(&mut exec, &[("uid", "mallory")]).await;
    let view = rig
        .post(
            &mut exec,
            &[
                ("password", NEW_PASSWORD),
                ("password_repeat", NEW_PASSWORD),
            ],
        )
        .await;
    assert_eq!(ended(&view), NO_ACCOUNT);
    assert!(rig.world.store.user("mallory").unwrap().is_none());
}

#[tokio::test]
async fn never_create_without_a_pending_user_ends_the_flow() {
    let rig = enrol_rig();
    let (mut exec, _) = rig.start("never").await;
    let view = rig.post(&mut exec, &signup("bob", "bob@example.com")).await;
    assert_eq!(ended(&view), NO_ACCOUNT);
    assert_eq!(rig.world.store.user_count().unwrap(), 0);
}

#[tokio::test]
async fn inactive_accounts_join_the_group_and_get_no_session() {
    let rig = enrol_rig();
    let (mut exec, _) = rig.start("enroll_inactive").await;
    let view = rig.post(&mut exec, &signup("bob", "bob@example.com")).await;
    assert_eq!(ended(&view), crate::flow::stages::SIGN_IN_FAILED);
    let bob = rig.world.store.user("bob").unwrap().expect("created");
    assert!(!bob.active);
    assert_eq!(bob.groups, ["newcomers"]);
}

#[test]
fn a_prompt_password_must_be_handed_straight_to_user_write() {
    let bad = r#"
[[flows]]
slug = "lost"
designation = "enrollment"
stages = ["asks", "login"]
[stages.asks]
kind = "prompt"
fields = [{ key = "password", label = "Password", type = "password" }]
"#;
    let e = Rig::config(bad).expect_err("refused").to_string();
    assert!(e.contains("user_write stage right after it"), "{e}");
    for (mode, ok) in [
        ("always_create", true),
        ("never_create", true),
        ("sometimes", false),
    ] {
        let cfg = format!("[stages.w]\nkind = \"user_write\"\nuser_creation_mode = \"{mode}\"\n");
        assert_eq!(Rig::config(&cfg).is_ok(), ok, "{mode}");
    }
    let cfg = "[stages.w]\nkind = \"user_write\"\ncreate_users_group = \"a,b\"\n";
    assert!(Rig::config(cfg).is_err(), "a comma splits Remote-Groups");
}

/// Hashes slowly and counts: the cost of argon2id, made visible.
struct SlowHasher {
    inner: Arc<dyn PasswordHasher>,
    hashes: AtomicUsize,
}

#[async_trait::async_trait]
impl PasswordHasher for SlowHasher {
    async fn hash(&self, password: SecretString) -> Result<String, PasswordError> {
        self.hashes.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(60)).await;
        self.inner.hash(password).await
    }

    async fn verify(&self, password: SecretString, hash: Option<String>) -> bool {
        self.inner.verify(password, hash).await
    }
}

#[tokio::test]
async fn a_taken_name_or_address_is_answered_after_the_same_work_as_a_free_one() {
    let config = Rig::config(ENROL).unwrap();
    let mut world = TestWorld::for_config(&config);
    let slow = Arc::new(SlowHasher {
        inner: world.services.passwords.clone(),
        hashes: AtomicUsize::new(0),
    });
    world.services.passwords = slow.clone();
    let engine = Engine::new(&config, world.services.clone());
    let rig = Rig { engine, world };
    rig.user("alice", Some("alice@example.com")).await;
    // The quickest of a few tries of each kind, so a busy machine's pauses do not count.
    let (mut taken, mut free) = (Duration::MAX, Duration::MAX);
    for round in 0..4 {
        let fresh = format!("free{round}");
        let fresh_email = format!("free{round}@example.com");
        let bob_email = format!("bob{round}@example.com");
        let cases = [
            ("alice", bob_email.as_str(), true),
            (fresh.as_str(), fresh_email.as_str(), false),
            ("bob", "alice@example.com", true),
        ];
        for (username, email, is_taken) in cases {
            let (mut exec, _) = rig.start("enroll").await;
            let before = slow.hashes.load(Ordering::SeqCst);
            let t = Instant::now();
            let view = rig.post(&mut exec, &signup(username, email)).await;
            let took = t.elapsed();
            assert_eq!(slow.hashes.load(Ordering::SeqCst) - before, 1, "{username}");
            assert_eq!(
                matches!(view.step, Step::Challenge { .. }),
                is_taken,
                "{username}"
            );
            assert!(
                took >= Duration::from_millis(60),
                "{username} skipped the hash"
            );
            let best = if is_taken { &mut taken } else { &mut free };
            *best = (*best).min(took);
        }
    }
    let (lo, hi) = (taken.min(free), taken.max(free));
    assert!(
        hi.as_secs_f64() < lo.as_secs_f64() * 1.5,
        "taken {taken:?}, free {free:?}"
    );
}

#[tokio::test]
async fn values_that_would_break_a_header_end_the_sign_up() {
    let rig = enrol_rig();
    for (key, value) in [
        ("name", "Bob\r\nRemote-Groups: admins"),
        ("name", "Bob\u{0}"),
        ("attributes.team", "dev\nops"),
    ] {
        let (mut exec, _) = rig.start("enroll").await;
        let mut answers = signup("bob", "bob@example.com");
        for a in answers.iter_mut().filter(|(k, _)| *k == key) {
            a.1 = value;
        }
        let view = rig.post(&mut exec, &answers).await;
        assert_eq!(ended(&view), CONTROL_CHARACTER, "{key} {value:?}");
        assert!(rig.world.store.user("bob").unwrap().is_none());
    }
}

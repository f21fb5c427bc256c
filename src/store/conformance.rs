//! One suite of behaviour every [`Store`] backend must show, run against each backend: what
//! the flow engine, the sessions and the admin commands rely on, whatever holds the data.

use super::{
    Ban, Device, DeviceClass, Invitation, MemoryStore, SessionRecord, SledStore, Store, User,
    KEYSET_DEVICE_CHECK, KEYSET_SESSION,
};
use std::sync::{Arc, Barrier};

/// A backend under test, with whatever must live as long as it (a temporary directory).
struct Subject {
    store: Arc<dyn Store>,
    _dir: Option<tempfile::TempDir>,
}

fn sled() -> Subject {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SledStore::open(&dir.path().join("db")).expect("open sled");
    Subject {
        store: Arc::new(store),
        _dir: Some(dir),
    }
}

/// A fresh database on the test process's PostgreSQL (started on first use).
fn postgres() -> Subject {
    let config = super::postgres::test_server::server().fresh_database();
    Subject {
        store: Arc::new(super::PgStore::connect(&config).expect("connect to postgres")),
        _dir: None,
    }
}

fn memory() -> Subject {
    Subject {
        store: Arc::new(MemoryStore::new()),
        _dir: None,
    }
}

/// Runs each named check against every backend, as `<backend>::<check>` tests.
macro_rules! conformance {
    ($($check:ident),* $(,)?) => {
        mod sled_backend {
            $( #[test] fn $check() { super::$check(&super::sled().store) } )*
        }
        mod memory_backend {
            $( #[test] fn $check() { super::$check(&super::memory().store) } )*
        }
        mod postgres_backend {
            $( #[test] fn $check() { super::$check(&super::postgres().store) } )*
        }
    };
}

conformance!(
    users_round_trip_are_listed_counted_and_removed,
    email_index_ignores_case_and_composition_and_follows_changes,
    any_spelling_of_a_name_finds_the_account,
    a_name_stored_in_another_spelling_is_found_by_its_canonical_form,
    a_canonical_account_wins_over_an_older_spelling_of_it,
    an_execution_expires_at_its_expiry_and_can_be_replaced_or_removed,
    a_revoked_session_is_listed_until_it_expires,
    a_user_revocation_is_replaced_by_a_later_one,
    devices_belong_to_one_user_in_id_order,
    removing_a_user_removes_their_devices_and_no_one_elses,
    a_device_swaps_only_from_what_is_stored,
    of_many_concurrent_swaps_from_one_record_exactly_one_wins,
    counters_count_within_a_fixed_window_then_restart,
    concurrent_bumps_are_all_counted,
    a_ticket_is_readable_until_it_expires_and_taken_once,
    one_of_many_concurrent_takers_gets_a_ticket,
    a_secret_is_created_once_even_under_races,
    purge_drops_what_has_expired_and_keeps_the_rest,
    creating_refuses_a_taken_name_in_any_spelling_or_a_taken_address,
    of_many_concurrent_creations_of_one_name_or_address_exactly_one_wins,
    an_invitation_is_readable_until_it_expires_listed_and_removed_once,
    one_of_many_concurrent_spenders_removes_an_invitation,
    purge_drops_expired_invitations_only,
    queued_mail_is_listed_rescheduled_only_from_what_is_stored_and_taken_once,
    a_users_sessions_are_listed_until_revoked_or_expired_and_never_anothers,
    last_seen_is_recorded_only_forward_and_only_for_recorded_sessions,
    a_flush_keeps_what_was_stored,
    updating_an_account_never_takes_another_accounts_address,
    of_many_accounts_racing_to_take_one_address_exactly_one_gets_it,
    a_database_has_one_identity_for_its_life_and_no_other_has_it,
    failures_slide_out_of_their_window_and_are_taken_back_one_at_a_time,
    concurrent_failures_each_see_a_distinct_count,
    bans_are_kept_until_they_end_or_are_lifted,
    a_key_set_is_replaced_only_from_the_version_read,
    of_many_replicas_storing_a_key_set_at_once_exactly_one_wins_each_round,
    a_shorter_ban_never_replaces_a_longer_one_in_force_but_an_operators_does,
    an_earlier_user_revocation_written_late_changes_nothing,
    an_execution_swaps_only_from_its_stored_state,
    of_many_concurrent_saves_from_one_execution_state_exactly_one_wins,
    audit_records_come_back_oldest_first_with_both_of_one_millisecond,
    audit_records_are_read_from_a_time_up_to_a_limit,
    audit_records_older_than_the_retention_are_purged,
);

fn user(name: &str, email: Option<&str>) -> User {
    let mut u = User::new(name, 0);
    u.email = email.map(str::to_string);
    u
}

fn names(users: Vec<User>) -> Vec<String> {
    users.into_iter().map(|u| u.username).collect()
}

fn found(s: &Arc<dyn Store>, typed: &str) -> Option<String> {
    s.user(typed).unwrap().map(|u| u.username)
}

fn by_email(s: &Arc<dyn Store>, typed: &str) -> Option<String> {
    s.user_by_email(typed).unwrap().map(|u| u.username)
}

fn users_round_trip_are_listed_counted_and_removed(s: &Arc<dyn Store>) {
    assert_eq!(s.user_count().unwrap(), 0);
    let mut bob = user("bob", None);
    bob.groups = vec!["staff".into()];
    bob.password_hash = Some("$argon2id$x".into());
    s.put_user(&bob).unwrap();
    s.put_user(&user("alice", None)).unwrap();
    assert_eq!(s.user("bob").unwrap().as_ref(), Some(&bob));
    assert_eq!(names(s.users().unwrap()), ["alice", "bob"]);
    assert_eq!(s.user_count().unwrap(), 2);
    bob.active = false;
    s.put_user(&bob).unwrap();
    assert!(!s.user("bob").unwrap().unwrap().active);
    assert_eq!(s.user_count().unwrap(), 2);
    assert!(s.remove_user("BOB").unwrap(), "removal finds any spelling");
    assert!(!s.remove_user("bob").unwrap());
    assert_eq!(names(s.users().unwrap()), ["alice"]);
    assert!(s.user("nobody").unwrap().is_none());
}

fn email_index_ignores_case_and_composition_and_follows_changes(s: &Arc<dyn Store>) {
    s.put_user(&user("alice", Some("Alice@Example.com")))
        .unwrap();
    // Composed é in the record; decomposed e + U+0301 typed.
    s.put_user(&user("jose", Some("josé@example.com"))).unwrap();
    for (typed, want) in [
        ("alice@example.com", Some("alice")),
        ("  ALICE@EXAMPLE.COM ", Some("alice")),
        ("JOSE\u{301}@example.com", Some("jose")),
        ("jose@example.com", None),
        ("", None),
    ] {
        assert_eq!(by_email(s, typed).as_deref(), want, "{typed:?}");
    }
    s.put_user(&user("alice", Some("new@example.com"))).unwrap();
    assert_eq!(by_email(s, "alice@example.com"), None);
    assert_eq!(by_email(s, "NEW@example.com").as_deref(), Some("alice"));
    s.put_user(&user("alice", None)).unwrap();
    assert_eq!(by_email(s, "new@example.com"), None);
    assert!(s.remove_user("jose").unwrap());
    assert_eq!(by_email(s, "josé@example.com"), None);
}

fn any_spelling_of_a_name_finds_the_account(s: &Arc<dyn Store>) {
    s.put_user(&user("émilie", None)).unwrap();
    for typed in [
        "émilie",
        "ÉMILIE",
        "E\u{301}milie",
        "Émilie",
        "ＥＭＩＬＩＥ",
    ] {
        let want = (typed != "ＥＭＩＬＩＥ").then_some("émilie");
        assert_eq!(found(s, typed).as_deref(), want, "{typed:?}");
    }
    for typed in ["emilie", "émilie x", "", "émilie\u{0}"] {
        assert_eq!(found(s, typed), None, "{typed:?}");
    }
}

fn a_name_stored_in_another_spelling_is_found_by_its_canonical_form(s: &Arc<dyn Store>) {
    s.put_user(&user("Carol", Some("carol@example.com")))
        .unwrap();
    for typed in ["carol", "CAROL", "Carol"] {
        assert_eq!(found(s, typed).as_deref(), Some("Carol"), "{typed:?}");
    }
    assert!(s.remove_user("carol").unwrap());
    for typed in ["carol", "Carol"] {
        assert_eq!(found(s, typed), None, "{typed:?}");
    }
    assert_eq!(by_email(s, "carol@example.com"), None);
    // The index entry went with the account: a new `carol` is not shadowed by it.
    s.put_user(&user("carol", None)).unwrap();
    assert_eq!(found(s, "CAROL").as_deref(), Some("carol"));
}

fn a_canonical_account_wins_over_an_older_spelling_of_it(s: &Arc<dyn Store>) {
    s.put_user(&user("dave", None)).unwrap();
    s.put_user(&user("Dave", None)).unwrap();
    assert_eq!(found(s, "DAVE").as_deref(), Some("dave"));
    assert_eq!(found(s, "Dave").as_deref(), Some("Dave"));
    assert!(s.remove_user("Dave").unwrap());
    assert_eq!(found(s, "Dave").as_deref(), Some("dave"));
}

fn an_execution_expires_at_its_expiry_and_can_be_replaced_or_removed(s: &Arc<dyn Store>) {
    s.put_execution("x", 100, b"one").unwrap();
    assert_eq!(s.execution("x", 99).unwrap().as_deref(), Some(&b"one"[..]));
    s.put_execution("x", 200, b"two").unwrap();
    assert_eq!(s.execution("x", 150).unwrap().as_deref(), Some(&b"two"[..]));
    assert_eq!(s.execution("x", 200).unwrap(), None, "dead at its expiry");
    // Once seen expired it stays gone, even asked about an earlier time.
    assert_eq!(s.execution("x", 150).unwrap(), None);
    s.put_execution("y", 100, b"").unwrap();
    assert_eq!(s.execution("y", 0).unwrap().as_deref(), Some(&b""[..]));
    s.remove_execution("y").unwrap();
    s.remove_execution("never").unwrap();
    assert_eq!(s.execution("y", 0).unwrap(), None);
}

fn session(sid: &str, expires: i64) -> SessionRecord {
    SessionRecord {
        sid: sid.into(),
        username: "alice".into(),
        issued: expires - 100,
        expires,
        client: "192.0.2.1".into(),
        browser: "Firefox 128 on Linux".into(),
        last_seen: None,
    }
}

fn a_revoked_session_is_listed_until_it_expires(s: &Arc<dyn Store>) {
    s.put_session(&session("s1", 1_000)).unwrap();
    s.put_session(&session("s2", 2_000)).unwrap();
    assert_eq!(s.session("s1").unwrap(), Some(session("s1", 1_000)));
    s.revoke_session("s1", 1_000).unwrap();
    s.revoke_session("s2", 2_000).unwrap();
    assert_eq!(
        s.session("s1").unwrap(),
        None,
        "a revoked session is not listed"
    );
    assert_eq!(
        s.revocations(999).unwrap(),
        [("s1".to_string(), 1_000), ("s2".to_string(), 2_000)]
    );
    assert_eq!(s.revocations(1_000).unwrap(), [("s2".to_string(), 2_000)]);
    assert_eq!(s.revocations(0).unwrap(), [("s2".to_string(), 2_000)]);
    assert_eq!(s.session("unknown").unwrap(), None);
}

fn a_user_revocation_is_replaced_by_a_later_one(s: &Arc<dyn Store>) {
    assert!(s.user_revocations().unwrap().is_empty());
    s.revoke_user_sessions("bob", 5_000).unwrap();
    s.revoke_user_sessions("alice", 1_000).unwrap();
    s.revoke_user_sessions("bob", 7_000).unwrap();
    let mut all = s.user_revocations().unwrap();
    all.sort();
    assert_eq!(
        all,
        [("alice".to_string(), 1_000), ("bob".to_string(), 7_000)]
    );
}

fn device(username: &str, id: &str) -> Device {
    Device {
        id: id.into(),
        username: username.into(),
        class: DeviceClass::Email,
        name: "Email".into(),
        address: format!("{username}@example.com"),
        address_hash: None,
        stage: "email-setup".into(),
        created: 1,
        last_used: None,
        secret: None,
    }
}

/// # Security
/// Devices are keyed by username: left behind, they would let whoever later gets the same name
/// sign in with the old holder's passkey, authenticator app or recovery codes.
fn removing_a_user_removes_their_devices_and_no_one_elses(s: &Arc<dyn Store>) {
    s.put_user(&user("alice", None)).unwrap();
    s.put_user(&user("al", None)).unwrap();
    s.put_device(&device("alice", "a")).unwrap();
    s.put_device(&device("alice", "b")).unwrap();
    s.put_device(&device("al", "x")).unwrap();
    assert!(s.remove_user("alice").unwrap());
    assert!(s.devices("alice").unwrap().is_empty());
    s.put_user(&user("alice", None)).unwrap();
    assert!(
        s.devices("alice").unwrap().is_empty(),
        "a new alice inherits nothing"
    );
    assert_eq!(s.devices("al").unwrap().len(), 1);
}

fn devices_belong_to_one_user_in_id_order(s: &Arc<dyn Store>) {
    s.put_device(&device("alice", "b")).unwrap();
    s.put_device(&device("alice", "a")).unwrap();
    s.put_device(&device("al", "x")).unwrap();
    s.put_device(&device("alice2", "y")).unwrap();
    let ids =
        |u: &str| -> Vec<String> { s.devices(u).unwrap().into_iter().map(|d| d.id).collect() };
    assert_eq!(ids("alice"), ["a", "b"]);
    assert_eq!(
        ids("al"),
        ["x"],
        "one user's devices never leak into another's"
    );
    assert!(ids("ali").is_empty());
    let mut used = device("alice", "a");
    used.last_used = Some(42);
    s.put_device(&used).unwrap();
    assert_eq!(s.devices("alice").unwrap()[0], used);
    assert!(s.remove_device("alice", "a").unwrap());
    assert!(!s.remove_device("alice", "a").unwrap());
    assert!(!s.remove_device("al", "b").unwrap());
    assert_eq!(ids("alice"), ["b"]);
}

fn a_device_swaps_only_from_what_is_stored(s: &Arc<dyn Store>) {
    let first = device("alice", "t");
    assert!(
        !s.swap_device(&first, &first).unwrap(),
        "nothing stored: nothing to swap"
    );
    s.put_device(&first).unwrap();
    let mut used = first.clone();
    used.last_used = Some(7);
    assert!(s.swap_device(&first, &used).unwrap());
    assert_eq!(s.devices("alice").unwrap(), [used.clone()]);
    let mut again = first.clone();
    again.last_used = Some(8);
    assert!(
        !s.swap_device(&first, &again).unwrap(),
        "a stale copy must not overwrite"
    );
    assert_eq!(s.devices("alice").unwrap(), [used]);
}

fn of_many_concurrent_swaps_from_one_record_exactly_one_wins(s: &Arc<dyn Store>) {
    let first = device("alice", "t");
    s.put_device(&first).unwrap();
    let wins: usize = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let (s, first) = (s.clone(), first.clone());
                scope.spawn(move || {
                    let mut next = first.clone();
                    next.last_used = Some(i);
                    usize::from(s.swap_device(&first, &next).unwrap())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert_eq!(wins, 1);
}

fn counters_count_within_a_fixed_window_then_restart(s: &Arc<dyn Store>) {
    assert_eq!(s.counter("k", 100).unwrap(), 0);
    assert_eq!(s.bump_counter("k", 10, 100).unwrap(), 1);
    assert_eq!(s.bump_counter("k", 10, 105).unwrap(), 2);
    // The window is fixed at its first hit: a later bump does not extend it.
    assert_eq!(s.bump_counter("k", 10, 109).unwrap(), 3);
    assert_eq!(s.counter("k", 109).unwrap(), 3);
    assert_eq!(
        s.counter("k", 110).unwrap(),
        0,
        "the window ends at first hit + window"
    );
    assert_eq!(s.bump_counter("k", 10, 111).unwrap(), 1);
    assert_eq!(s.counter("other", 111).unwrap(), 0);
    s.reset_counter("k").unwrap();
    s.reset_counter("never").unwrap();
    assert_eq!(s.counter("k", 111).unwrap(), 0);
    assert_eq!(s.bump_counter("k", 10, 112).unwrap(), 1);
}

/// Runs `f` on `n` threads released at once; returns their results.
fn at_once<T: Send + 'static>(
    s: &Arc<dyn Store>,
    n: usize,
    f: impl Fn(&dyn Store) -> T + Send + Sync + 'static,
) -> Vec<T> {
    let barrier = Arc::new(Barrier::new(n));
    let f = Arc::new(f);
    let threads: Vec<_> = (0..n)
        .map(|_| {
            let (s, barrier, f) = (s.clone(), barrier.clone(), f.clone());
            std::thread::spawn(move || {
                barrier.wait();
                f(s.as_ref())
            })
        })
        .collect();
    threads
        .into_iter()
        .map(|t| t.join().expect("thread"))
        .collect()
}

fn concurrent_bumps_are_all_counted(s: &Arc<dyn Store>) {
    let counts = at_once(s, 8, |s| {
        (0..25)
            .map(|_| s.bump_counter("busy", 60, 1_000).unwrap())
            .collect::<Vec<_>>()
    });
    let mut seen: Vec<u32> = counts.into_iter().flatten().collect();
    seen.sort_unstable();
    assert_eq!(
        seen,
        (1..=200).collect::<Vec<_>>(),
        "every count handed out once"
    );
    assert_eq!(s.counter("busy", 1_000).unwrap(), 200);
}

fn a_ticket_is_readable_until_it_expires_and_taken_once(s: &Arc<dyn Store>) {
    s.put_ticket("h", 200, b"data").unwrap();
    assert_eq!(s.ticket("h", 100).unwrap().as_deref(), Some(&b"data"[..]));
    assert_eq!(s.ticket("h", 199).unwrap().as_deref(), Some(&b"data"[..]));
    assert_eq!(s.ticket("h", 200).unwrap(), None, "dead at its expiry");
    assert_eq!(s.ticket("other", 100).unwrap(), None);
    assert!(s.take_ticket("h").unwrap());
    assert!(!s.take_ticket("h").unwrap());
    assert_eq!(s.ticket("h", 100).unwrap(), None);
}

fn one_of_many_concurrent_takers_gets_a_ticket(s: &Arc<dyn Store>) {
    for round in 0..5 {
        let hash = format!("race-{round}");
        s.put_ticket(&hash, i64::MAX, b"x").unwrap();
        let won = at_once(s, 8, move |s| s.take_ticket(&hash).unwrap());
        assert_eq!(
            won.iter().filter(|w| **w).count(),
            1,
            "round {round}: {won:?}"
        );
    }
}

fn a_secret_is_created_once_even_under_races(s: &Arc<dyn Store>) {
    let seen = at_once(s, 8, |s| s.secret("otp").unwrap());
    assert!(
        seen.windows(2).all(|w| w[0] == w[1]),
        "racing callers saw different secrets"
    );
    assert_eq!(s.secret("otp").unwrap(), seen[0]);
    assert_ne!(s.secret("other").unwrap(), seen[0]);
    assert_ne!(seen[0], [0u8; 32]);
}

fn purge_drops_what_has_expired_and_keeps_the_rest(s: &Arc<dyn Store>) {
    let now = 1_000_000;
    // Every `-old` record ends exactly at `now`: dead at its expiry, as when it is read.
    s.put_execution("old", now, b"{}").unwrap();
    s.put_execution("live", now + 60, b"{}").unwrap();
    s.put_session(&session("s-old", now)).unwrap();
    s.put_session(&session("s-live", now + 60)).unwrap();
    s.revoke_session("r-old", now).unwrap();
    s.revoke_session("r-live", now + 1).unwrap();
    s.put_ticket("t-old", now, b"x").unwrap();
    s.put_ticket("t-live", now + 1, b"x").unwrap();
    s.bump_counter("c-old", 10, now - 10).unwrap();
    s.bump_counter("c-live", 100, now - 20).unwrap();
    s.put_user(&user("alice", None)).unwrap();
    s.put_device(&device("alice", "d")).unwrap();
    s.revoke_user_sessions("alice", 1).unwrap();

    assert_eq!(s.purge_expired(now).unwrap(), 5);
    assert!(s.execution("live", now).unwrap().is_some());
    assert!(s.session("s-live").unwrap().is_some());
    assert!(s.session("s-old").unwrap().is_none());
    let live = [("r-live".to_string(), now + 1)];
    assert_eq!(s.revocations(now).unwrap(), live);
    assert_eq!(
        s.revocations(0).unwrap(),
        live,
        "a purged revocation is gone"
    );
    assert!(s.ticket("t-live", now).unwrap().is_some());
    assert!(
        s.ticket("t-old", 0).unwrap().is_none(),
        "a purged ticket is gone"
    );
    assert!(!s.take_ticket("t-old").unwrap());
    assert_eq!(s.counter("c-live", now).unwrap(), 1);
    let old = s.counter("c-old", now - 5).unwrap();
    assert_eq!(old, 0, "a purged counter is gone");
    // Records without an expiry are never purged.
    assert_eq!(s.user_count().unwrap(), 1);
    assert_eq!(s.devices("alice").unwrap().len(), 1);
    assert_eq!(s.user_revocations().unwrap().len(), 1);
    assert_eq!(s.purge_expired(now).unwrap(), 0);
}

fn creating_refuses_a_taken_name_in_any_spelling_or_a_taken_address(s: &Arc<dyn Store>) {
    let mut alice = user("alice", Some("Alice@Example.com"));
    alice.attributes.insert("team".into(), "core".into());
    assert!(s.create_user(&alice).unwrap());
    assert_eq!(s.user("alice").unwrap().as_ref(), Some(&alice));
    // Names are given to create_user canonical; a legacy spelling stored as typed is found too.
    s.put_user(&user("Carol", None)).unwrap();
    for (name, email) in [
        ("alice", None),
        ("alice", Some("new@example.com")),
        ("carol", None),
        ("bob", Some("alice@example.com")),
        ("bob", Some("  ALICE@example.COM ")),
    ] {
        assert!(
            !s.create_user(&user(name, email)).unwrap(),
            "{name} {email:?} was created"
        );
    }
    assert_eq!(by_email(s, "alice@example.com").as_deref(), Some("alice"));
    assert!(s.user("bob").unwrap().is_none(), "a refused creation wrote");
    assert!(s
        .create_user(&user("bob", Some("bob@example.com")))
        .unwrap());
    assert!(s.create_user(&user("dave", None)).unwrap());
}

fn of_many_concurrent_creations_of_one_name_or_address_exactly_one_wins(s: &Arc<dyn Store>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    for round in 0..4 {
        // Eight different names racing for one address.
        let next = Arc::new(AtomicUsize::new(0));
        let won = at_once(s, 8, move |s| {
            let name = format!("racer{round}-{}", next.fetch_add(1, Ordering::SeqCst));
            let email = format!("race{round}@example.com");
            s.create_user(&user(&name, Some(&email))).unwrap()
        });
        assert_eq!(won.iter().filter(|w| **w).count(), 1, "round {round}");
    }
    let won = at_once(s, 8, |s| s.create_user(&user("same", None)).unwrap());
    assert_eq!(won.iter().filter(|w| **w).count(), 1);
}

fn invitation(id: &str, expires: i64) -> Invitation {
    let fixed = super::InvitationData {
        email: Some(format!("{id}@example.com")),
        groups: vec!["dev".into()],
        ..Default::default()
    };
    Invitation {
        id: id.into(),
        token_hash: "ab".repeat(32),
        flow: Some("enroll".into()),
        fixed,
        single_use: true,
        created: 1,
        expires,
    }
}

fn an_invitation_is_readable_until_it_expires_listed_and_removed_once(s: &Arc<dyn Store>) {
    let inv = invitation("i1", 200);
    s.put_invitation(&inv).unwrap();
    s.put_invitation(&invitation("i0", 50)).unwrap();
    assert_eq!(s.invitation("i1", 100).unwrap().as_ref(), Some(&inv));
    assert_eq!(s.invitation("i1", 199).unwrap().as_ref(), Some(&inv));
    assert_eq!(s.invitation("i1", 200).unwrap(), None, "dead at its expiry");
    assert_eq!(s.invitation("other", 100).unwrap(), None);
    let ids: Vec<_> = s.invitations().unwrap().into_iter().map(|i| i.id).collect();
    assert_eq!(ids, ["i0", "i1"], "expired ones are listed until purged");
    assert!(s.remove_invitation("i1").unwrap());
    assert!(!s.remove_invitation("i1").unwrap());
    assert_eq!(s.invitation("i1", 100).unwrap(), None);
}

fn one_of_many_concurrent_spenders_removes_an_invitation(s: &Arc<dyn Store>) {
    for round in 0..5 {
        let id = format!("race-{round}");
        s.put_invitation(&invitation(&id, i64::MAX)).unwrap();
        let won = at_once(s, 8, move |s| s.remove_invitation(&id).unwrap());
        assert_eq!(won.iter().filter(|w| **w).count(), 1, "round {round}");
    }
}

fn purge_drops_expired_invitations_only(s: &Arc<dyn Store>) {
    s.put_invitation(&invitation("old", 100)).unwrap();
    s.put_invitation(&invitation("live", 101)).unwrap();
    assert_eq!(s.purge_expired(100).unwrap(), 1);
    let ids: Vec<_> = s.invitations().unwrap().into_iter().map(|i| i.id).collect();
    assert_eq!(ids, ["live"]);
}

fn queued_mail_is_listed_rescheduled_only_from_what_is_stored_and_taken_once(s: &Arc<dyn Store>) {
    assert!(s.outbox().unwrap().is_empty());
    s.put_outbox("b", b"second").unwrap();
    s.put_outbox("a", b"first").unwrap();
    let ids: Vec<_> = s.outbox().unwrap().into_iter().map(|(k, _)| k).collect();
    assert_eq!(ids, ["a", "b"]);
    assert!(!s.swap_outbox("a", b"stale", b"x").unwrap());
    assert!(s.swap_outbox("a", b"first", b"retry").unwrap());
    assert_eq!(s.outbox().unwrap()[0].1, b"retry");
    assert!(s.take_outbox("a").unwrap());
    assert!(!s.take_outbox("a").unwrap(), "taken once");
    // A reschedule after the message was taken does not bring it back.
    assert!(!s.swap_outbox("a", b"retry", b"again").unwrap());
    assert_eq!(s.outbox().unwrap().len(), 1);
    // Not an expiring record: purging leaves queued mail alone.
    s.purge_expired(i64::MAX).unwrap();
    assert_eq!(s.outbox().unwrap().len(), 1);
}

fn a_users_sessions_are_listed_until_revoked_or_expired_and_never_anothers(s: &Arc<dyn Store>) {
    let bobs = SessionRecord {
        username: "bob".into(),
        ..session("b1", 5_000)
    };
    // alice-2 shares a prefix with alice: the index must not mix them.
    let other_alice = SessionRecord {
        username: "alice-2".into(),
        ..session("x1", 5_000)
    };
    for r in [
        session("s2", 3_000),
        session("s1", 2_000),
        session("s3", 4_000),
        bobs.clone(),
        other_alice,
    ] {
        s.put_session(&r).unwrap();
    }
    let sids = |username: &str, now| -> Vec<String> {
        s.user_sessions(username, now)
            .unwrap()
            .into_iter()
            .map(|r| r.sid)
            .collect()
    };
    assert_eq!(sids("alice", 0), ["s1", "s2", "s3"], "oldest first");
    assert_eq!(
        s.user_sessions("alice", 0).unwrap()[0],
        session("s1", 2_000)
    );
    assert_eq!(sids("bob", 0), ["b1"]);
    assert!(sids("nobody", 0).is_empty());
    s.revoke_session("s2", 3_000).unwrap();
    assert_eq!(sids("alice", 0), ["s1", "s3"], "a revoked session is gone");
    assert_eq!(sids("alice", 2_000), ["s3"], "an expired one too");
    s.purge_expired(2_500).unwrap();
    assert_eq!(sids("alice", 0), ["s3"]);
    assert_eq!(sids("bob", 0), ["b1"]);
}

fn last_seen_is_recorded_only_forward_and_only_for_recorded_sessions(s: &Arc<dyn Store>) {
    s.put_session(&session("s1", 9_000)).unwrap();
    s.touch_sessions(&[("s1".into(), 500), ("gone".into(), 600)])
        .unwrap();
    assert_eq!(s.session("s1").unwrap().unwrap().last_seen, Some(500));
    s.touch_sessions(&[("s1".into(), 400)]).unwrap();
    assert_eq!(
        s.session("s1").unwrap().unwrap().last_seen,
        Some(500),
        "an older time never replaces a newer one"
    );
    assert_eq!(s.session("gone").unwrap(), None, "nothing is created");
    s.revoke_session("s1", 9_000).unwrap();
    s.touch_sessions(&[("s1".into(), 700)]).unwrap();
    assert_eq!(
        s.session("s1").unwrap(),
        None,
        "a revoked session stays gone"
    );
    assert!(s.user_sessions("alice", 0).unwrap().is_empty());
}

fn a_flush_keeps_what_was_stored(s: &Arc<dyn Store>) {
    s.put_user(&user("alice", None)).unwrap();
    s.touch_sessions(&[]).unwrap();
    s.flush().unwrap();
    assert!(s.user("alice").unwrap().is_some());
}

fn updating_an_account_never_takes_another_accounts_address(s: &Arc<dyn Store>) {
    s.put_user(&user("alice", Some("alice@example.com")))
        .unwrap();
    s.put_user(&user("bob", Some("bob@example.com"))).unwrap();
    // Another account's address, in any case or composition: refused, nothing changes.
    for taken in [
        "alice@example.com",
        "ALICE@Example.com",
        " alice@example.com ",
    ] {
        assert!(
            !s.update_user(&user("bob", Some(taken))).unwrap(),
            "{taken}"
        );
    }
    assert_eq!(
        found_by_email(s, "alice@example.com").as_deref(),
        Some("alice")
    );
    assert_eq!(found_by_email(s, "bob@example.com").as_deref(), Some("bob"));
    // Its own address again, a free one, or none: written, the index follows.
    assert!(s
        .update_user(&user("bob", Some("BOB@example.com")))
        .unwrap());
    assert!(s
        .update_user(&user("bob", Some("robert@example.com")))
        .unwrap());
    assert_eq!(
        found_by_email(s, "robert@example.com").as_deref(),
        Some("bob")
    );
    assert_eq!(found_by_email(s, "bob@example.com"), None);
    assert!(s.update_user(&user("bob", None)).unwrap());
    assert_eq!(found_by_email(s, "robert@example.com"), None);
    // An account that does not exist is not created by an update.
    assert!(!s
        .update_user(&user("carol", Some("carol@example.com")))
        .unwrap());
    assert!(s.user("carol").unwrap().is_none());
    assert_eq!(found_by_email(s, "carol@example.com"), None);
    // And a creation cannot take an address an update gave.
    assert!(s
        .update_user(&user("bob", Some("new@example.com")))
        .unwrap());
    assert!(!s
        .create_user(&user("dave", Some("new@example.com")))
        .unwrap());
}

fn found_by_email(s: &Arc<dyn Store>, email: &str) -> Option<String> {
    s.user_by_email(email).unwrap().map(|u| u.username)
}

fn of_many_accounts_racing_to_take_one_address_exactly_one_gets_it(s: &Arc<dyn Store>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    for i in 0..8 {
        s.put_user(&user(&format!("racer{i}"), None)).unwrap();
    }
    for round in 0..4 {
        let next = Arc::new(AtomicUsize::new(0));
        let won = at_once(s, 8, move |s| {
            let name = format!("racer{}", next.fetch_add(1, Ordering::SeqCst));
            s.update_user(&user(&name, Some(&format!("race{round}@example.com"))))
                .unwrap()
        });
        assert_eq!(won.iter().filter(|w| **w).count(), 1, "round {round}");
        let holder = found_by_email(s, &format!("race{round}@example.com")).expect("held");
        let account = s.user(&holder).unwrap().expect("exists");
        assert_eq!(
            account.email.as_deref(),
            Some(format!("race{round}@example.com").as_str())
        );
        // Give the addresses back for the next round.
        for i in 0..8 {
            s.update_user(&user(&format!("racer{i}"), None)).unwrap();
        }
    }
}

fn a_database_has_one_identity_for_its_life_and_no_other_has_it(s: &Arc<dyn Store>) {
    let id = s.database_id().unwrap();
    assert!(id.id.len() >= 16, "{id:?}");
    s.put_user(&user("alice", None)).unwrap();
    assert_eq!(s.database_id().unwrap(), id);
    let others = [sled(), memory(), postgres()];
    for other in &others {
        assert_ne!(other.store.database_id().unwrap().id, id.id);
    }
}

fn failures_slide_out_of_their_window_and_are_taken_back_one_at_a_time(s: &Arc<dyn Store>) {
    assert_eq!(s.slide_failure("k", 100, 1_000, 10).unwrap(), 1);
    assert_eq!(s.slide_failure("k", 100, 1_050, 10).unwrap(), 2);
    assert_eq!(s.slide_failure("other", 100, 1_050, 10).unwrap(), 1);
    assert_eq!(
        s.slide_failure("k", 100, 1_100, 10).unwrap(),
        2,
        "the failure at 1000 is out of the window at 1100 (sliding, not fixed)"
    );
    s.unslide_failure("k", 1_100).unwrap();
    s.unslide_failure("k", 4_242).unwrap();
    assert_eq!(s.slide_failure("k", 100, 1_120, 10).unwrap(), 2);
    // Read without writing: the same count at the same time, fewer once some slid out.
    assert_eq!(s.failures("k", 100, 1_120).unwrap(), 2);
    assert_eq!(s.failures("k", 100, 1_120).unwrap(), 2);
    assert_eq!(
        s.failures("k", 100, 1_150).unwrap(),
        1,
        "1050 is out at 1150"
    );
    assert_eq!(s.failures("k", 100, 1_220).unwrap(), 0);
    assert_eq!(s.failures("never", 100, 1_120).unwrap(), 0);
    for t in 0..20 {
        s.slide_failure("full", 1_000, 2_000 + t, 5).unwrap();
    }
    assert_eq!(
        s.slide_failure("full", 1_000, 2_100, 5).unwrap(),
        5,
        "at most `keep`"
    );
}

fn concurrent_failures_each_see_a_distinct_count(s: &Arc<dyn Store>) {
    let counts = at_once(s, 10, |s| {
        (0..5)
            .map(|_| s.slide_failure("busy", 60, 1_000, 1_000).unwrap())
            .collect::<Vec<_>>()
    });
    let mut seen: Vec<u32> = counts.into_iter().flatten().collect();
    seen.sort_unstable();
    assert_eq!(
        seen,
        (1..=50).collect::<Vec<_>>(),
        "every count handed out once"
    );
}

fn bans_are_kept_until_they_end_or_are_lifted(s: &Arc<dyn Store>) {
    let ban = |subject: &str, until: Option<i64>| Ban {
        subject: subject.into(),
        since: 100,
        until,
        reason: "failures".into(),
    };
    s.put_ban(&ban("ip:10.0.0.1", Some(500))).unwrap();
    s.put_ban(&ban("user:alice", None)).unwrap();
    s.put_ban(&ban("user:bob@10.0.0.2", Some(300))).unwrap();
    let subjects = |now| {
        s.bans(now)
            .unwrap()
            .into_iter()
            .map(|b| b.subject)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        subjects(200),
        ["ip:10.0.0.1", "user:alice", "user:bob@10.0.0.2"]
    );
    assert_eq!(
        subjects(300),
        ["ip:10.0.0.1", "user:alice"],
        "ended at its end"
    );
    s.put_ban(&ban("ip:10.0.0.1", Some(900))).unwrap();
    assert_eq!(s.bans(600).unwrap()[0].until, Some(900), "replaced");
    assert!(s.remove_ban("user:alice").unwrap());
    assert!(!s.remove_ban("user:alice").unwrap());
    assert_eq!(subjects(600), ["ip:10.0.0.1"]);
}

fn a_key_set_is_replaced_only_from_the_version_read(s: &Arc<dyn Store>) {
    assert_eq!(
        s.keyset(KEYSET_SESSION).unwrap(),
        None,
        "none before the first"
    );
    assert!(
        !s.swap_keyset(KEYSET_SESSION, 1, b"early").unwrap(),
        "no version 1 yet"
    );
    assert!(s.swap_keyset(KEYSET_SESSION, 0, b"first").unwrap());
    let stored = s.keyset(KEYSET_SESSION).unwrap().unwrap();
    assert_eq!((stored.version, &stored.data[..]), (1, &b"first"[..]));
    assert!(!s.swap_keyset(KEYSET_SESSION, 0, b"second first").unwrap());
    assert!(!s
        .swap_keyset(KEYSET_SESSION, 2, b"from the future")
        .unwrap());
    assert!(s.swap_keyset(KEYSET_SESSION, 1, b"rotated").unwrap());
    let stored = s.keyset(KEYSET_SESSION).unwrap().unwrap();
    assert_eq!((stored.version, &stored.data[..]), (2, &b"rotated"[..]));
    assert!(
        !s.swap_keyset(KEYSET_SESSION, 1, b"stale").unwrap(),
        "a stale writer loses"
    );
    assert_eq!(s.keyset(KEYSET_SESSION).unwrap().unwrap().data, b"rotated");
    assert_eq!(
        s.keyset(KEYSET_DEVICE_CHECK).unwrap(),
        None,
        "sets are apart"
    );
    // Binary data (a MAC, any byte) is kept as it is.
    let bytes: Vec<u8> = (0..=255).collect();
    assert!(s.swap_keyset(KEYSET_DEVICE_CHECK, 0, &bytes).unwrap());
    assert_eq!(s.keyset(KEYSET_DEVICE_CHECK).unwrap().unwrap().data, bytes);
    s.flush().unwrap();
    assert_eq!(s.keyset(KEYSET_SESSION).unwrap().unwrap().version, 2);
}

fn of_many_replicas_storing_a_key_set_at_once_exactly_one_wins_each_round(s: &Arc<dyn Store>) {
    for expected in 0..4 {
        let won = at_once(s, 8, move |s| {
            let mine = crate::secret::random_token(8);
            s.swap_keyset("race", expected, mine.as_bytes())
                .unwrap()
                .then_some(mine)
        });
        let winners: Vec<String> = won.into_iter().flatten().collect();
        assert_eq!(winners.len(), 1, "round {expected}: {winners:?}");
        let stored = s.keyset("race").unwrap().unwrap();
        assert_eq!(stored.version, expected + 1);
        assert_eq!(
            stored.data,
            winners[0].as_bytes(),
            "the winner's set is stored"
        );
    }
}

fn a_shorter_ban_never_replaces_a_longer_one_in_force_but_an_operators_does(s: &Arc<dyn Store>) {
    let ban = |since: i64, until: Option<i64>, reason: &str| Ban {
        subject: "ip:10.0.0.9".into(),
        since,
        until,
        reason: reason.into(),
    };
    let until = |now| s.bans(now).unwrap().first().and_then(|b| b.until);
    // Replica A bans for five minutes; replica B's two-second slow-down comes late.
    s.put_ban(&ban(100, Some(400), "failures")).unwrap();
    s.put_ban(&ban(101, Some(103), "slow-down")).unwrap();
    assert_eq!(until(104), Some(400), "the five-minute ban holds");
    s.put_ban(&ban(102, Some(400), "failures")).unwrap();
    assert_eq!(until(104), Some(400), "an equal one changes nothing");
    s.put_ban(&ban(103, Some(900), "failures")).unwrap();
    assert_eq!(until(104), Some(900), "a longer one replaces it");
    s.put_ban(&ban(104, None, "locked")).unwrap();
    s.put_ban(&ban(105, Some(2_000), "failures")).unwrap();
    assert!(
        s.bans(3_000)
            .unwrap()
            .first()
            .is_some_and(|b| b.until.is_none()),
        "a ban until lifted is never shortened by a sign-in failure"
    );
    s.put_ban(&ban(106, Some(200), Ban::OPERATOR)).unwrap();
    assert_eq!(until(150), Some(200), "an operator's ban replaces any");
    s.put_ban(&ban(300, Some(310), "slow-down")).unwrap();
    assert_eq!(until(305), Some(310), "a ban that ended is replaced");
}

fn an_earlier_user_revocation_written_late_changes_nothing(s: &Arc<dyn Store>) {
    // Replica A revokes at 7000 (password change); B's disable at 5000 is written after it.
    s.revoke_user_sessions("bob", 7_000).unwrap();
    s.revoke_user_sessions("bob", 5_000).unwrap();
    assert_eq!(s.user_revocations().unwrap(), [("bob".to_string(), 7_000)]);
    let mut streamed = Vec::new();
    s.for_each_user_revocation(&mut |u, since| streamed.push((u.to_string(), since)))
        .unwrap();
    assert_eq!(streamed, [("bob".to_string(), 7_000)]);
}

fn an_execution_swaps_only_from_its_stored_state(s: &Arc<dyn Store>) {
    assert!(
        !s.swap_execution("x", b"", b"new", 100).unwrap(),
        "nothing stored: nothing to swap, nothing created"
    );
    assert_eq!(s.execution("x", 0).unwrap(), None);
    s.put_execution("x", 100, b"step 1").unwrap();
    assert!(!s.swap_execution("x", b"step 0", b"stale", 100).unwrap());
    assert_eq!(
        s.execution("x", 0).unwrap().as_deref(),
        Some(&b"step 1"[..])
    );
    assert!(s.swap_execution("x", b"step 1", b"step 2", 150).unwrap());
    assert_eq!(
        s.execution("x", 120).unwrap().as_deref(),
        Some(&b"step 2"[..]),
        "the new expiry is kept"
    );
    assert!(
        !s.swap_execution("x", b"step 1", b"late", 150).unwrap(),
        "a second save from the same loaded state loses"
    );
    // Removed meanwhile (cancelled, finished): a late save does not bring it back.
    s.remove_execution("x").unwrap();
    assert!(!s
        .swap_execution("x", b"step 2", b"resurrected", 150)
        .unwrap());
    assert_eq!(s.execution("x", 0).unwrap(), None);
    // A swap to a dead record makes it gone for readers at once.
    s.put_execution("y", 100, b"last step").unwrap();
    assert!(s.swap_execution("y", b"last step", b"", 0).unwrap());
    assert_eq!(s.execution("y", 1).unwrap(), None);
    assert!(!s.swap_execution("y", b"last step", b"again", 100).unwrap());
}

fn of_many_concurrent_saves_from_one_execution_state_exactly_one_wins(s: &Arc<dyn Store>) {
    s.put_execution("race", 1_000, b"loaded").unwrap();
    let counter = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let saved = at_once(s, 8, move |s| {
        let i = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let new = format!("saved by {i}");
        s.swap_execution("race", b"loaded", new.as_bytes(), 1_000)
            .unwrap()
            .then_some(new)
    });
    let winners: Vec<_> = saved.into_iter().flatten().collect();
    assert_eq!(winners.len(), 1, "exactly one save wins: {winners:?}");
    assert_eq!(
        s.execution("race", 0).unwrap().as_deref(),
        Some(winners[0].as_bytes()),
        "the stored state is the winner's"
    );
}

fn audit_records_come_back_oldest_first_with_both_of_one_millisecond(s: &Arc<dyn Store>) {
    assert!(s.audit_records(0, 100).unwrap().is_empty());
    s.append_audit(2_000, "{\"action\":\"c\"}").unwrap();
    s.append_audit(1_000, "{\"action\":\"a\"}").unwrap();
    // Same millisecond, the later line first in byte order: append order must win.
    s.append_audit(1_500, "{\"action\":\"z\"}").unwrap();
    s.append_audit(1_500, "{\"action\":\"b\"}").unwrap();
    s.append_audit(1_500, "{\"action\":\"z\"}").unwrap();
    let got = s.audit_records(0, 100).unwrap();
    let want: Vec<(i64, String)> = [
        (1_000, "a"),
        (1_500, "z"),
        (1_500, "b"),
        (1_500, "z"),
        (2_000, "c"),
    ]
    .iter()
    .map(|(t, a)| (*t, format!("{{\"action\":\"{a}\"}}")))
    .collect();
    assert_eq!(got, want, "every record, oldest first, none of one ms lost");
    // A line with any character (quotes, non-ASCII, newline escapes) comes back as written.
    let odd = "{\"user\":\"\u{e9}ve \\n \u{2028} ' ; --\"}";
    s.append_audit(3_000, odd).unwrap();
    assert_eq!(
        s.audit_records(3_000, 1).unwrap(),
        vec![(3_000, odd.to_string())]
    );
}

fn audit_records_are_read_from_a_time_up_to_a_limit(s: &Arc<dyn Store>) {
    for t in 1..=10 {
        s.append_audit(t * 100, &format!("r{t}")).unwrap();
    }
    let lines = |since, limit| -> Vec<String> {
        s.audit_records(since, limit)
            .unwrap()
            .into_iter()
            .map(|(_, l)| l)
            .collect()
    };
    assert_eq!(
        lines(500, 100),
        ["r5", "r6", "r7", "r8", "r9", "r10"],
        "since is inclusive"
    );
    assert_eq!(lines(501, 2), ["r6", "r7"], "the limit keeps the oldest");
    assert_eq!(lines(0, 0), Vec::<String>::new());
    assert_eq!(lines(1_001, 10), Vec::<String>::new());
    assert_eq!(lines(i64::MIN, 1), ["r1"]);
}

fn audit_records_older_than_the_retention_are_purged(s: &Arc<dyn Store>) {
    let now = 1_000 * super::AUDIT_RETENTION / 999;
    let cutoff = now - super::AUDIT_RETENTION;
    s.append_audit(cutoff - 1, "old").unwrap();
    s.append_audit(cutoff, "exactly 90 days").unwrap();
    s.append_audit(cutoff + 1, "kept").unwrap();
    s.append_audit(now, "new").unwrap();
    assert_eq!(s.purge_expired(now).unwrap(), 2);
    let left: Vec<String> = s
        .audit_records(i64::MIN, 100)
        .unwrap()
        .into_iter()
        .map(|(_, l)| l)
        .collect();
    assert_eq!(left, ["kept", "new"]);
    assert_eq!(s.purge_expired(now).unwrap(), 0, "nothing left to purge");
}

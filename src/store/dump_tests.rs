//! Export and import on every backend: every kind of state moves between any two backends
//! and comes back record for record, behaving as before; an import never lands on a store
//! that holds state, and on PostgreSQL a failing import leaves nothing.

use super::dump::{self, Bytes, Record};
use super::{
    Ban, Device, DeviceClass, Invitation, InvitationData, MemoryStore, PgStore, SessionRecord,
    SledStore, Store, StoreError, User,
};
use std::sync::Arc;

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

fn postgres() -> Subject {
    let config = super::postgres::test_server::server().fresh_database();
    Subject {
        store: Arc::new(PgStore::connect(&config).expect("connect to postgres")),
        _dir: None,
    }
}

fn memory() -> Subject {
    Subject {
        store: Arc::new(MemoryStore::new()),
        _dir: None,
    }
}

/// Writes every kind of state the trait holds, expired-but-unpurged records included.
fn fill(s: &Arc<dyn Store>) {
    s.secret("csrf").unwrap();
    s.secret("cookie").unwrap();
    let mut alice = User::new("alice", 100);
    alice.email = Some("Alice@Example.com".into());
    alice.password_hash = Some("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into());
    alice.groups = vec!["admins".into()];
    alice.attributes.insert("team".into(), "blue".into());
    assert!(s.create_user(&alice).unwrap());
    // Stored before names were canonical: reached as `bob` through the rebuilt index.
    let mut bob = User::new("Bob", 101);
    bob.email = Some("bo\u{301}b@example.com".into());
    bob.active = false;
    s.put_user(&bob).unwrap();
    s.put_device(&Device {
        id: "d1".into(),
        username: "alice".into(),
        class: DeviceClass::Totp,
        name: "Phone".into(),
        address: String::new(),
        address_hash: None,
        stage: "totp".into(),
        created: 102,
        last_used: Some(150),
        secret: Some("xc1.sealed-material".into()),
    })
    .unwrap();
    s.put_device(&Device {
        id: "d2".into(),
        username: "alice".into(),
        class: DeviceClass::Email,
        name: "Email".into(),
        address: "alice@example.com".into(),
        address_hash: None,
        stage: "email".into(),
        created: 103,
        last_used: None,
        secret: None,
    })
    .unwrap();
    s.put_execution("live", 5_000, b"{\"stage\":1}").unwrap();
    s.put_execution("dead-not-purged", 10, &[0, 159, 146, 150])
        .unwrap();
    for (sid, user) in [("s1", "alice"), ("s2", "Bob"), ("s3", "alice")] {
        s.put_session(&SessionRecord {
            sid: sid.into(),
            username: user.into(),
            issued: 1_000,
            expires: 9_000,
            client: "192.0.2.7".into(),
            browser: "Firefox 128 on Linux".into(),
            last_seen: None,
        })
        .unwrap();
    }
    s.touch_sessions(&[("s1".into(), 1_500)]).unwrap();
    s.revoke_session("s3", 9_000).unwrap();
    s.revoke_user_sessions("Bob", 1_234_567).unwrap();
    for _ in 0..3 {
        s.bump_counter("sms:alice", 600, 1_000).unwrap();
    }
    s.slide_failure("password:alice", 300, 1_000, 10).unwrap();
    s.slide_failure("password:alice", 300, 1_010, 10).unwrap();
    s.put_ticket("h1", 5_000, &[0, 1, 2, 255]).unwrap();
    s.put_invitation(&Invitation {
        id: "inv1".into(),
        token_hash: "ab".repeat(32),
        flow: Some("enrol".into()),
        fixed: InvitationData {
            email: Some("new@example.com".into()),
            ..Default::default()
        },
        single_use: true,
        created: 1_000,
        expires: 90_000,
    })
    .unwrap();
    s.put_outbox("m1", b"{\"to\":\"alice@example.com\"}")
        .unwrap();
    s.put_ban(&Ban {
        subject: "ip:192.0.2.9".into(),
        since: 1_000,
        until: Some(50_000),
        reason: "failures".into(),
    })
    .unwrap();
    s.put_ban(&Ban {
        subject: "user:mallory".into(),
        since: 1_000,
        until: None,
        reason: "operator".into(),
    })
    .unwrap();
    // The signing keys and the device key's check value, rotated once (version 2).
    assert!(s
        .swap_keyset(crate::store::KEYSET_SESSION, 0, b"{\"active\":\"k1\"}")
        .unwrap());
    assert!(s
        .swap_keyset(crate::store::KEYSET_SESSION, 1, b"{\"active\":\"k2\"}")
        .unwrap());
    assert!(s
        .swap_keyset(crate::store::KEYSET_DEVICE_CHECK, 0, &[0, 1, 254, 255])
        .unwrap());
    // Two audit records of one millisecond: both move.
    s.append_audit(1_700_000_000_000, "{\"action\":\"sign_in_failure\"}")
        .unwrap();
    s.append_audit(1_700_000_000_000, "{\"action\":\"sign_in_success\"}")
        .unwrap();
}

fn kinds(records: &[Record]) -> Vec<&'static str> {
    let mut k: Vec<_> = records.iter().map(Record::kind).collect();
    k.dedup();
    k
}

/// Fill `from`, export, carry through the dump file, import into `to`, export again.
fn round_trip(from: fn() -> Subject, to: fn() -> Subject) {
    let (a, b) = (from(), to());
    fill(&a.store);
    let exported = a.store.export_records().unwrap();
    assert_eq!(
        kinds(&exported),
        [
            "database_id",
            "secret",
            "user",
            "device",
            "execution",
            "session",
            "revocation",
            "user_revocation",
            "counter",
            "failure_window",
            "ticket",
            "invitation",
            "outbox",
            "ban",
            "keyset",
            "audit"
        ],
        "every kind of state is exported"
    );
    let file = dump::write("test", 1, &exported, None).unwrap();
    let read = dump::read(&file).unwrap();
    assert_eq!(read.records, exported, "the dump file carries every record");

    b.store.import_records(&read.records).unwrap();
    let again = b.store.export_records().unwrap();
    assert_eq!(again.len(), exported.len());
    for (x, y) in exported.iter().zip(&again) {
        assert_eq!(x, y, "record for record");
    }

    // And it behaves as the source did.
    let s = &b.store;
    assert_eq!(s.database_id().unwrap(), a.store.database_id().unwrap());
    assert_eq!(s.secret("csrf").unwrap(), a.store.secret("csrf").unwrap());
    assert_eq!(
        s.audit_records(0, 10).unwrap().len(),
        2,
        "both audit records of one millisecond arrive"
    );
    let by_mail = |m: &str| s.user_by_email(m).unwrap().map(|u| u.username);
    assert_eq!(by_mail("alice@EXAMPLE.com").as_deref(), Some("alice"));
    assert_eq!(by_mail("bo\u{301}b@example.com").as_deref(), Some("Bob"));
    assert_eq!(
        s.user("bob").unwrap().map(|u| u.username).as_deref(),
        Some("Bob")
    );
    let listed: Vec<String> = s
        .user_sessions("alice", 2_000)
        .unwrap()
        .into_iter()
        .map(|r| r.sid)
        .collect();
    assert_eq!(listed, ["s1"], "revoked s3 stays revoked");
    assert_eq!(s.session("s1").unwrap().unwrap().last_seen, Some(1_500));
    assert!(s
        .revocations(2_000)
        .unwrap()
        .contains(&("s3".into(), 9_000)));
    assert_eq!(s.bump_counter("sms:alice", 600, 1_001).unwrap(), 4);
    assert_eq!(s.failures("password:alice", 300, 1_020).unwrap(), 2);
    assert_eq!(s.ticket("h1", 2_000).unwrap(), Some(vec![0, 1, 2, 255]));
    assert_eq!(
        s.execution("live", 2_000).unwrap().as_deref(),
        Some(&b"{\"stage\":1}"[..])
    );
    assert_eq!(s.devices("alice").unwrap().len(), 2);
    assert!(s.invitation("inv1", 2_000).unwrap().is_some());
    assert_eq!(s.bans(2_000).unwrap().len(), 2);
    assert_eq!(s.outbox().unwrap().len(), 1);
    // A name and an address still cannot be taken twice.
    let mut dup = User::new("ALICE", 1);
    dup.email = Some("other@example.com".into());
    assert!(!s.create_user(&dup).unwrap());
    let mut dup = User::new("dave", 1);
    dup.email = Some("alice@example.com".into());
    assert!(!s.create_user(&dup).unwrap());
}

fn refuses_a_store_that_holds_state(to: fn() -> Subject) {
    let source = memory();
    fill(&source.store);
    let records = source.store.export_records().unwrap();
    let target = to();
    target.store.put_user(&User::new("zoe", 1)).unwrap();
    target
        .store
        .put_ban(&Ban {
            subject: "ip:192.0.2.1".into(),
            since: 1,
            until: None,
            reason: "operator".into(),
        })
        .unwrap();
    let before = target.store.export_records().unwrap();
    let err = target.store.import_records(&records).unwrap_err();
    assert!(matches!(err, StoreError::NotEmpty { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("1 user") && msg.contains("1 ban"), "{msg}");
    assert_eq!(
        target.store.export_records().unwrap(),
        before,
        "nothing was imported"
    );
}

macro_rules! pairs {
    ($($name:ident: $from:ident -> $to:ident),* $(,)?) => {
        $( #[test] fn $name() { round_trip($from, $to) } )*
    };
}

pairs!(
    every_kind_of_state_moves_from_memory_to_sled: memory -> sled,
    every_kind_of_state_moves_from_memory_to_postgres: memory -> postgres,
    every_kind_of_state_moves_from_sled_to_memory: sled -> memory,
    every_kind_of_state_moves_from_sled_to_postgres: sled -> postgres,
    every_kind_of_state_moves_from_postgres_to_memory: postgres -> memory,
    every_kind_of_state_moves_from_postgres_to_sled: postgres -> sled,
);

#[test]
fn an_import_into_a_memory_store_holding_state_is_refused_and_writes_nothing() {
    refuses_a_store_that_holds_state(memory);
}

#[test]
fn an_import_into_a_sled_store_holding_state_is_refused_and_writes_nothing() {
    refuses_a_store_that_holds_state(sled);
}

#[test]
fn an_import_into_a_postgres_store_holding_state_is_refused_and_writes_nothing() {
    refuses_a_store_that_holds_state(postgres);
}

#[test]
fn a_postgres_import_that_fails_part_way_leaves_nothing() {
    let target = postgres();
    let id_before = target.store.database_id().unwrap();
    let records = vec![
        Record::DatabaseId {
            id: "imported".into(),
            adopted_ms: None,
        },
        Record::User(User::new("alice", 1)),
        Record::Execution {
            id: "x".into(),
            expires: 10,
            state: Bytes(vec![1]),
        },
        // The same key twice: the second insert fails, after the others were written.
        Record::Execution {
            id: "x".into(),
            expires: 10,
            state: Bytes(vec![2]),
        },
    ];
    assert!(target.store.import_records(&records).is_err());
    assert_eq!(
        target.store.export_records().unwrap(),
        vec![Record::DatabaseId {
            id: id_before.id.clone(),
            adopted_ms: None
        }],
        "all or nothing"
    );
    assert_eq!(target.store.database_id().unwrap(), id_before);
}

#[test]
fn a_bad_secret_or_a_second_identity_is_refused_before_anything_is_written() {
    for records in [
        vec![
            Record::User(User::new("alice", 1)),
            Record::Secret {
                name: "csrf".into(),
                value: Bytes(vec![1; 31]),
            },
        ],
        vec![
            Record::DatabaseId {
                id: "a".into(),
                adopted_ms: None,
            },
            Record::DatabaseId {
                id: "b".into(),
                adopted_ms: None,
            },
        ],
    ] {
        for subject in [memory(), sled()] {
            assert!(subject.store.import_records(&records).is_err());
            assert_eq!(subject.store.user_count().unwrap(), 0);
        }
    }
}

#[test]
fn a_sled_database_keeps_an_imported_identity_across_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let source = memory();
    fill(&source.store);
    let records = source.store.export_records().unwrap();
    {
        let s = SledStore::open(&path).unwrap();
        s.import_records(&records).unwrap();
    }
    // The integrity record follows the new identity: the database opens as itself.
    let reopened = (0..100)
        .find_map(|_| match SledStore::open(&path) {
            Err(StoreError::Locked { .. }) => {
                std::thread::sleep(std::time::Duration::from_millis(20));
                None
            }
            other => Some(other),
        })
        .expect("the database unlocks")
        .unwrap();
    assert_eq!(
        reopened.database_id().unwrap(),
        source.store.database_id().unwrap()
    );
    assert_eq!(reopened.export_records().unwrap(), records);
}

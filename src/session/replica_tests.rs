//! Several replicas on one PostgreSQL database, each with its own store handle and session
//! service: the signing keys they share through the store (issue 16, point 4).

use super::*;
use crate::store::{PgStore, KEYSET_SESSION};
use std::time::Duration;

fn cfg() -> SessionConfig {
    SessionConfig {
        cookie_name: "s".into(),
        lifetime: Duration::from_secs(3600),
        cookie_domain: None,
        issuer: "portcullis".into(),
        flow_lifetime: Duration::from_secs(60),
        max_flows_per_client: crate::config::DEFAULT_MAX_FLOWS_PER_CLIENT,
    }
}

/// A replica: its own connection pool to the database `db`, its own session service.
fn replica(db: &crate::config::PostgresStorage) -> SessionService {
    let store: Arc<dyn Store> = Arc::new(PgStore::connect(db).expect("connect"));
    SessionService::new(&cfg(), "/nonexistent/keys.json".into(), store).expect("start")
}

fn new_session() -> NewSession {
    NewSession {
        username: "alice".into(),
        name: "Alice".into(),
        email: String::new(),
        groups: vec![],
        amr: vec!["password".into()],
        factors: Factors::PASSWORD,
        flows: vec!["f".into()],
        lifetime_secs: 600,
    }
}

fn kid_of(token: &str) -> String {
    jsonwebtoken::decode_header(token).unwrap().kid.unwrap()
}

#[test]
fn tokens_verify_across_replicas_before_and_after_a_rotation_on_one() {
    let db = crate::store::pg_test_server::server().fresh_database();
    let a = replica(&db);
    let b = replica(&db);
    let (old, _) = a.issue(new_session()).unwrap();
    assert!(b.verify(&old).is_ok(), "issued on A, verified on B");

    let new_kid = a.rotate_keys(3600).unwrap();
    let (from_a, _) = a.issue(new_session()).unwrap();
    assert_eq!(kid_of(&from_a), new_kid);
    // B has not heard of the rotation: the unknown kid makes it read the keys again.
    assert!(
        b.verify(&from_a).is_ok(),
        "A's new token on B: {:?}",
        b.verify(&from_a).err()
    );
    let (from_b, _) = b.issue(new_session()).unwrap();
    assert_eq!(kid_of(&from_b), new_kid, "B signs with the new key too");
    assert!(a.verify(&from_b).is_ok(), "B's new token on A");
    // The retired key still honours what it signed, on both.
    for (name, r) in [("A", &a), ("B", &b)] {
        assert!(r.verify(&old).is_ok(), "old token on {name}");
    }
    // A token the retired key signs after its retirement (a leaked old key) is refused on B.
    let stored = KeyFile::stored(b.store.as_ref()).unwrap().unwrap().file;
    let retired = stored.keys.iter().find(|k| k.retired.is_some()).unwrap();
    let mut claims = (*b.verify(&old).unwrap()).clone();
    claims.iat = b.clock.now() + 5;
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(retired.kid.clone());
    let secret = keys::decode_secret(retired.secret.expose()).unwrap();
    let minted = jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(&secret),
    )
    .unwrap();
    assert!(b.verify(&minted).is_err(), "minted with the retired key");
}

#[test]
fn a_rotation_is_put_in_force_by_the_periodic_refresh() {
    let db = crate::store::pg_test_server::server().fresh_database();
    let a = replica(&db);
    let b = replica(&db);
    assert!(!b.refresh_keys().unwrap(), "nothing changed yet");
    let kid = a.rotate_keys(3600).unwrap();
    assert!(b.refresh_keys().unwrap());
    let (t, _) = b.issue(new_session()).unwrap();
    assert_eq!(kid_of(&t), kid);
}

#[test]
fn made_up_key_ids_read_the_store_at_most_once_a_second() {
    let db = crate::store::pg_test_server::server().fresh_database();
    let a = replica(&db);
    let b = replica(&db);
    let (tok, claims) = a.issue(new_session()).unwrap();
    assert!(b.verify(&tok).is_ok());
    // A token naming a made-up key: B reads the store once, and still refuses it.
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("made-up".into());
    let forged = jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(&[7; 32]),
    )
    .unwrap();
    assert!(matches!(b.verify(&forged), Err(SessionError::UnknownKey)));
    // Within the second, B does not read again, even for a real new key...
    a.rotate_keys(3600).unwrap();
    let (new, _) = a.issue(new_session()).unwrap();
    assert!(matches!(b.verify(&new), Err(SessionError::UnknownKey)));
    // ...and once it has passed, it does.
    std::thread::sleep(UNKNOWN_KID_RELOAD_EVERY + Duration::from_millis(100));
    assert!(b.verify(&new).is_ok());
}

#[test]
fn replicas_starting_together_on_an_empty_database_end_with_one_key_set() {
    let db = crate::store::pg_test_server::server().fresh_database();
    let barrier = Arc::new(std::sync::Barrier::new(4));
    let replicas: Vec<SessionService> = (0..4)
        .map(|_| {
            let (db, barrier) = (db.clone(), barrier.clone());
            std::thread::spawn(move || {
                let store: Arc<dyn Store> = Arc::new(PgStore::connect(&db).unwrap());
                barrier.wait();
                SessionService::new(&cfg(), "/nonexistent/keys.json".into(), store).unwrap()
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().unwrap())
        .collect();
    let stored = replicas[0].store.keyset(KEYSET_SESSION).unwrap().unwrap();
    assert_eq!(stored.version, 1, "one set stored, never replaced");
    let tokens: Vec<String> = replicas
        .iter()
        .map(|r| r.issue(new_session()).unwrap().0)
        .collect();
    let kid = kid_of(&tokens[0]);
    for (i, t) in tokens.iter().enumerate() {
        assert_eq!(kid_of(t), kid, "replica {i} signs with the one key");
        for r in &replicas {
            assert!(r.verify(t).is_ok());
        }
    }
}

//! Session and revocation expiry against a manual clock: time moves, nothing sleeps.

use super::*;
use crate::clock::ManualClock;
use crate::store::MemoryStore;
use std::time::Duration;

struct World {
    service: SessionService,
    clock: Arc<ManualClock>,
    store: Arc<MemoryStore>,
    _dir: tempfile::TempDir,
}

fn config() -> SessionConfig {
    SessionConfig {
        cookie_name: "s".into(),
        lifetime: Duration::from_secs(3600),
        cookie_domain: None,
        issuer: "portcullis".into(),
        flow_lifetime: Duration::from_secs(60),
        max_flows_per_client: crate::config::DEFAULT_MAX_FLOWS_PER_CLIENT,
    }
}

fn world() -> World {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = Arc::new(ManualClock::new(1_800_000_000));
    let store = Arc::new(MemoryStore::new());
    let service = SessionService::with_clock(
        &config(),
        dir.path().join("keys.json"),
        store.clone(),
        clock.clone(),
    )
    .expect("session service");
    World {
        service,
        clock,
        store,
        _dir: dir,
    }
}

impl World {
    /// Another service over the same keys, store and clock, as after a restart.
    fn restarted(&self) -> SessionService {
        SessionService::with_clock(
            &config(),
            self._dir.path().join("keys.json"),
            self.store.clone(),
            self.clock.clone(),
        )
        .expect("session service")
    }
}

fn alice(lifetime_secs: i64) -> NewSession {
    NewSession {
        username: "alice".into(),
        name: "Alice".into(),
        email: "a@example.com".into(),
        groups: vec!["staff".into()],
        amr: vec!["password".into()],
        factors: Factors::PASSWORD,
        flows: vec!["f".into()],
        lifetime_secs,
    }
}

fn is_expired(r: Result<Arc<Claims>, SessionError>) -> bool {
    matches!(r, Err(SessionError::Invalid(e))
        if matches!(e.kind(), jsonwebtoken::errors::ErrorKind::ExpiredSignature))
}

#[test]
fn issue_times_come_from_the_injected_clock() {
    let w = world();
    w.clock.set_ms(1_800_000_123_456);
    let (_, c) = w.service.issue(alice(60)).unwrap();
    assert_eq!(
        (c.iat, c.iat_ms, c.exp),
        (1_800_000_123, 1_800_000_123_456, 1_800_000_183)
    );
    let record = w.store.session(&c.sid).unwrap().unwrap();
    assert_eq!((record.issued, record.expires), (c.iat, c.exp));
}

#[test]
fn a_session_is_accepted_until_its_expiry_and_the_leeway_then_refused() {
    let w = world();
    let (cached, _) = w.service.issue(alice(60)).unwrap();
    let (fresh, _) = w.service.issue(alice(60)).unwrap();
    // `cached` is verified now, so later checks of it are answered from the cache; `fresh`
    // is first seen after the clock moved, so it goes through the full check.
    assert!(w.service.verify(&cached).is_ok());
    w.clock.advance_secs(60 + LEEWAY_SECS);
    assert!(w.service.verify(&cached).is_ok(), "within the leeway");
    w.clock.advance_secs(1);
    assert!(is_expired(w.service.verify(&cached)), "cached check");
    assert!(is_expired(w.service.verify(&fresh)), "full check");
    // A service that never saw the token refuses it too.
    assert!(is_expired(w.restarted().verify(&cached)));
}

#[test]
fn a_revocation_holds_until_the_token_would_have_expired_then_is_forgotten() {
    let w = world();
    let (tok, claims) = w.service.issue(alice(600)).unwrap();
    w.service.revoke(&claims).unwrap();
    assert!(matches!(w.service.verify(&tok), Err(SessionError::Revoked)));
    w.clock.advance_secs(599);
    assert_eq!(w.service.prune(), 0, "still needed a second before expiry");
    assert!(
        matches!(w.restarted().verify(&tok), Err(SessionError::Revoked)),
        "a restart loads the revocation from the store"
    );
    w.clock.advance_secs(1);
    assert_eq!(w.service.prune(), 1);
    assert!(w.store.revocations(w.clock.now()).unwrap().is_empty());
    // With the revocation gone, the token is refused for its age instead.
    w.clock.advance_secs(LEEWAY_SECS + 1);
    assert!(is_expired(w.service.verify(&tok)));
}

#[test]
fn a_user_revoked_and_signed_in_again_within_one_second_keeps_only_the_new_session() {
    let w = world();
    w.clock.set_ms(1_800_000_000_100);
    let (before, _) = w.service.issue(alice(600)).unwrap();
    w.clock.set_ms(1_800_000_000_400);
    w.service.revoke_user("alice").unwrap();
    w.clock.set_ms(1_800_000_000_700);
    let (after, _) = w.service.issue(alice(600)).unwrap();
    assert!(matches!(
        w.service.verify(&before),
        Err(SessionError::Revoked)
    ));
    assert!(w.service.verify(&after).is_ok());
    assert_eq!(
        w.store.user_revocations().unwrap(),
        [("alice".to_string(), 1_800_000_000_400)]
    );
    let restarted = w.restarted();
    assert!(matches!(
        restarted.verify(&before),
        Err(SessionError::Revoked)
    ));
    assert!(restarted.verify(&after).is_ok());
}

#[test]
fn assertions_are_dated_by_the_injected_clock_and_end_with_the_session() {
    use base64::Engine;
    let w = world();
    let (_, claims) = w.service.issue(alice(30)).unwrap();
    let token = w.service.assertions().assertion(&claims, 0, "app").unwrap();
    let payload = token.split('.').nth(1).unwrap();
    let body: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(body["iat"], w.clock.now());
    assert_eq!(
        body["exp"], claims.exp,
        "never outlives the session (30 s < 60 s)"
    );
}

/// Tokens signed with the real key whose `exp` is not a plain integer in the future: with the
/// expiry check moved out of jsonwebtoken, each must still be refused.
#[test]
fn signed_tokens_with_a_bad_or_past_expiry_are_refused() {
    let w = world();
    let now = w.clock.now();
    let (_, good) = w.service.issue(alice(600)).unwrap();
    let base = serde_json::to_value(&good).unwrap();
    let cases: Vec<(&str, Option<serde_json::Value>)> = vec![
        ("missing", None),
        ("string", Some(serde_json::json!((now + 600).to_string()))),
        ("float", Some(serde_json::json!((now + 600) as f64 + 0.5))),
        ("beyond i64", Some(serde_json::json!(u64::MAX))),
        ("negative", Some(serde_json::json!(-1))),
        ("zero", Some(serde_json::json!(0))),
        (
            "just past the leeway",
            Some(serde_json::json!(now - LEEWAY_SECS - 1)),
        ),
        ("null", Some(serde_json::Value::Null)),
    ];
    let ring = w.service.keyring.load();
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(ring.active_kid.clone());
    for (name, exp) in cases {
        let mut claims = base.clone();
        let map = claims.as_object_mut().unwrap();
        map.insert("sid".into(), serde_json::json!(format!("sid-{name}")));
        match exp {
            Some(v) => map.insert("exp".into(), v),
            None => map.remove("exp"),
        };
        let token = jsonwebtoken::encode(&header, &claims, &ring.encoding).unwrap();
        assert!(w.service.verify(&token).is_err(), "{name}: accepted");
    }
    // The same construction with a good expiry is accepted: the table tests the expiry alone.
    let token = jsonwebtoken::encode(&header, &base, &ring.encoding).unwrap();
    assert!(w.service.verify(&token).is_ok());
}

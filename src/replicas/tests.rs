//! Two gateways on one real PostgreSQL, in-process: each its own store handle (pool and
//! listener), session service and regulator, as two replicas hold them.

use super::Replica;
use crate::clock::{Clock, SystemClock};
use crate::config::{PostgresStorage, Regulation, SessionConfig};
use crate::regulation::{Regulator, Subject};
use crate::session::{Factors, NewSession, SessionError, SessionService};
use crate::store::test_server::server;
use crate::store::{ChangeFeed, PgStore, Store};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The promise: another replica's change is refused (or lifted) here within this.
const PROMISE: Duration = Duration::from_secs(1);

struct Gateway {
    pg: Arc<PgStore>,
    store: Arc<dyn Store>,
    sessions: Arc<SessionService>,
    regulator: Arc<Regulator>,
    feed: ChangeFeed,
}

/// A replica on `config` whose listener's `application_name` is `<name>-changes`, sharing
/// the keys file in `dir` with the others (as replicas share their keys).
fn gateway(config: &PostgresStorage, name: &str, dir: &std::path::Path) -> Gateway {
    let mut config = config.clone();
    config.url = format!("{}?application_name={name}", config.url);
    let pg = Arc::new(PgStore::connect(&config).expect("connect"));
    let store: Arc<dyn Store> = pg.clone();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let cfg = SessionConfig {
        cookie_name: "s".into(),
        lifetime: Duration::from_secs(3600),
        cookie_domain: None,
        issuer: "portcullis".into(),
        flow_lifetime: Duration::from_secs(60),
        max_flows_per_client: crate::config::DEFAULT_MAX_FLOWS_PER_CLIENT,
    };
    let sessions = Arc::new(
        SessionService::with_clock(&cfg, dir.join("keys.json"), store.clone(), clock.clone())
            .expect("sessions"),
    );
    let regulator =
        Arc::new(Regulator::new(Regulation::default(), store.clone(), clock).expect("regulator"));
    let feed = Replica::watch(store.as_ref(), sessions.clone(), regulator.clone()).expect("feed");
    wait_for("the listener to start", Duration::from_secs(10), || {
        feed.listening()
    });
    Gateway {
        pg,
        store,
        sessions,
        regulator,
        feed,
    }
}

/// Two replicas, `a` and `b`, on one fresh database; the database's name.
fn two_gateways(dir: &std::path::Path) -> (Gateway, Gateway, String) {
    let config = server().fresh_database();
    let database = config
        .url
        .rsplit('/')
        .next()
        .expect("a database")
        .to_string();
    let a = gateway(&config, "replica-a", dir);
    let b = gateway(&config, "replica-b", dir);
    (a, b, database)
}

/// Waits until `done` holds, at most `limit`; panics naming `what` otherwise. Returns how long
/// it took.
fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    loop {
        if done() {
            return start.elapsed();
        }
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn alice(username: &str) -> NewSession {
    NewSession {
        username: username.into(),
        name: "Alice".into(),
        email: String::new(),
        groups: vec![],
        amr: vec!["password".into()],
        factors: Factors::PASSWORD,
        flows: vec!["f".into()],
        lifetime_secs: 600,
    }
}

fn refused(g: &Gateway, token: &str) -> bool {
    matches!(g.sessions.verify(token), Err(SessionError::Revoked))
}

fn banned(g: &Gateway, account: Option<&str>, client: &str) -> bool {
    g.regulator
        .check(account, client, SystemClock.now())
        .is_err()
}

#[test]
fn a_sign_out_on_one_replica_is_refused_on_every_other_within_a_second() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, _) = two_gateways(dir.path());
    let (gone, claims) = a.sessions.issue(alice("alice")).unwrap();
    let (kept, _) = a.sessions.issue(alice("alice")).unwrap();
    // Signed in on A, passing on B (and cached there: the next check is memory only).
    for token in [&gone, &kept] {
        assert!(b.sessions.verify(token).is_ok());
        assert!(b.sessions.verify(token).is_ok());
    }
    a.sessions.revoke(&claims).unwrap();
    assert!(refused(&a, &gone), "at once where it was signed out");
    let took = wait_for("B refuses the signed-out session", PROMISE, || {
        refused(&b, &gone)
    });
    eprintln!("sign-out on A refused on B after {took:?}");
    assert!(b.sessions.verify(&kept).is_ok(), "the other session stands");
}

#[test]
fn a_user_signed_out_everywhere_or_disabled_on_one_replica_is_refused_on_every_other() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, _) = two_gateways(dir.path());
    let (alice_token, _) = a.sessions.issue(alice("alice")).unwrap();
    let (bob_token, _) = b.sessions.issue(alice("bob")).unwrap();
    let (carol_token, _) = a.sessions.issue(alice("carol")).unwrap();
    for t in [&alice_token, &bob_token, &carol_token] {
        assert!(a.sessions.verify(t).is_ok() && b.sessions.verify(t).is_ok());
    }
    // "Sign out everywhere" (or a password change) on A.
    a.sessions.revoke_user("alice").unwrap();
    wait_for("B refuses alice", PROMISE, || refused(&b, &alice_token));
    // `portcullis user disable bob` run against the database with no gateway of its own (the
    // admin command's offline path writes the store): both replicas refuse bob.
    a.store
        .revoke_user_sessions("bob", SystemClock.now_ms())
        .unwrap();
    wait_for("A and B refuse bob", PROMISE, || {
        refused(&a, &bob_token) && refused(&b, &bob_token)
    });
    assert!(b.sessions.verify(&carol_token).is_ok(), "carol untouched");
    // A new sign-in after the revocation stands on both.
    let (again, _) = b.sessions.issue(alice("alice")).unwrap();
    assert!(a.sessions.verify(&again).is_ok() && b.sessions.verify(&again).is_ok());
}

#[test]
fn with_the_listener_cut_a_revocation_meanwhile_is_refused_within_a_second_and_it_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, database) = two_gateways(dir.path());
    let (t1, c1) = a.sessions.issue(alice("alice")).unwrap();
    let (t2, c2) = a.sessions.issue(alice("alice")).unwrap();
    let (t3, _) = a.sessions.issue(alice("dave")).unwrap();
    for t in [&t1, &t2, &t3] {
        assert!(b.sessions.verify(t).is_ok());
    }
    assert_eq!(b.feed.connects(), 1);
    // B's listener connection is killed, and kept from coming back: polling is all B has.
    b.feed.hold_reconnects(true);
    server().admin(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = '{database}' AND application_name = 'replica-b-changes'"
    ));
    wait_for(
        "B notices its listener is gone",
        Duration::from_secs(5),
        || !b.feed.listening(),
    );
    assert!(a.feed.listening(), "A's listener was not touched");
    a.sessions.revoke(&c1).unwrap();
    a.sessions.revoke_user("dave").unwrap();
    let took = wait_for("B refuses, by polling", PROMISE, || {
        refused(&b, &t1) && refused(&b, &t3)
    });
    eprintln!("revocations on A refused on B (listener down) after {took:?}");
    assert!(b.sessions.verify(&t2).is_ok());
    // Let it reconnect: it listens again, and hears the next revocation.
    b.feed.hold_reconnects(false);
    wait_for("B's listener is back", Duration::from_secs(10), || {
        b.feed.listening()
    });
    assert_eq!(b.feed.connects(), 2);
    a.sessions.revoke(&c2).unwrap();
    wait_for("B refuses, listening again", PROMISE, || refused(&b, &t2));
}

#[test]
fn a_ban_earned_or_added_on_one_replica_is_enforced_on_another_and_lifted_there_too() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, _) = two_gateways(dir.path());
    let client = "192.0.2.10";
    let guess = |g: &Gateway| {
        let attempt = g
            .regulator
            .attempt(Some("alice"), client, SystemClock.now())
            .unwrap()
            .expect("admitted");
        g.regulator.failed(attempt).unwrap();
    };
    // max_retries = 3: two wrong passwords on A and one on B add up to a ban...
    guess(&a);
    guess(&a);
    assert!(!banned(&a, Some("alice"), client) && !banned(&b, Some("alice"), client));
    guess(&b);
    assert!(banned(&b, Some("alice"), client), "earned on B");
    // ...enforced on A, from memory, within a second.
    wait_for("A enforces B's ban", PROMISE, || {
        banned(&a, Some("alice"), client)
    });
    // An operator's ban on A (`portcullis bans add`) is enforced on B...
    let other = "198.51.100.7";
    assert!(!banned(&b, None, other));
    a.regulator
        .ban(
            Subject::Ip(other.into()),
            None,
            "operator",
            SystemClock.now(),
        )
        .unwrap();
    wait_for("B enforces A's ban", PROMISE, || banned(&b, None, other));
    // ...and lifting it on A lifts it on B.
    assert!(a.regulator.revoke(&Subject::Ip(other.into())).unwrap());
    wait_for("B lifts the ban", PROMISE, || !banned(&b, None, other));
    assert!(b.regulator.revoke(&Subject::Ip(client.into())).unwrap());
    wait_for("A lifts B's lift", PROMISE, || {
        !banned(&a, None, client) && banned(&a, Some("alice"), client)
    });
}

/// Executions left in the database, expired or not.
fn executions(g: &Gateway) -> i64 {
    let pool = g.pg.pool().clone();
    g.pg.block(async move {
        let c = pool.get().await.expect("connection");
        let row = c
            .query_one("SELECT count(*) FROM portcullis_executions", &[])
            .await
            .expect("count");
        Ok(row.get::<_, i64>(0))
    })
    .unwrap()
}

#[test]
fn expired_records_are_purged_every_purge_interval_by_one_replica_at_a_time() {
    use crate::app::Maintenance;
    let dir = tempfile::tempdir().unwrap();
    let (a, b, _) = two_gateways(dir.path());
    let now = SystemClock.now();
    for i in 0..20 {
        a.store
            .put_execution(&format!("gone{i}"), now - 1, b"state")
            .unwrap();
    }
    a.store.put_execution("alive", now + 600, b"state").unwrap();
    let every = Duration::from_secs(60);
    let t0 = std::time::Instant::now();
    let maintenance = |g: &Gateway| {
        Maintenance::new(
            g.store.clone(),
            g.sessions.clone(),
            g.regulator.clone(),
            every,
            t0,
        )
    };
    let (mut on_a, mut on_b) = (maintenance(&a), maintenance(&b));
    assert_eq!(on_a.tick(), every.min(Duration::from_secs(60)));
    // Before the interval has passed: nothing is purged.
    assert_eq!(on_a.round(t0 + every - Duration::from_secs(1)), None);
    assert_eq!(executions(&a), 21);
    // B is purging (it holds the purge lock): A's round, due now, leaves the work to it.
    let pool = b.pg.pool().clone();
    let holder =
        b.pg.block(async move {
            let c = pool.get().await.expect("connection");
            c.execute(
                "SELECT pg_advisory_lock($1)",
                &[&crate::store::pg_lock::PURGE],
            )
            .await
            .expect("lock");
            Ok(c)
        })
        .unwrap();
    assert_eq!(on_a.round(t0 + every), Some(0));
    assert_eq!(executions(&a), 21, "A purged while B held the lock");
    b.pg.block(async move {
        holder
            .execute(
                "SELECT pg_advisory_unlock($1)",
                &[&crate::store::pg_lock::PURGE],
            )
            .await
            .expect("unlock");
        Ok(())
    })
    .unwrap();
    // The lock free, B's round purges the expired ones, and only those; the next round of A
    // (one interval later) finds nothing left.
    assert_eq!(on_b.round(t0 + every), Some(20));
    assert_eq!(executions(&a), 1);
    assert_eq!(
        on_a.round(t0 + every + Duration::from_secs(1)),
        None,
        "not due"
    );
    assert_eq!(on_a.round(t0 + 2 * every), Some(0));
    assert!(a.store.execution("alive", now).unwrap().is_some());
}

#[test]
fn signed_in_requests_and_bans_are_judged_from_memory_with_the_database_gone() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, database) = two_gateways(dir.path());
    let (live, _) = a.sessions.issue(alice("alice")).unwrap();
    let (gone, claims) = a.sessions.issue(alice("alice")).unwrap();
    let (later, later_claims) = a.sessions.issue(alice("alice")).unwrap();
    a.sessions.revoke(&claims).unwrap();
    a.regulator
        .ban(
            Subject::Ip("203.0.113.9".into()),
            None,
            "operator",
            SystemClock.now(),
        )
        .unwrap();
    wait_for("B has heard", PROMISE, || {
        refused(&b, &gone) && banned(&b, None, "203.0.113.9")
    });
    assert!(b.sessions.verify(&live).is_ok() && b.sessions.verify(&later).is_ok());
    // The database refuses every connection and drops those open (the listener's too).
    server().admin(&format!(
        "ALTER DATABASE {database} ALLOW_CONNECTIONS false; \
         SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{database}'"
    ));
    wait_for("B's listener is down", Duration::from_secs(5), || {
        !b.feed.listening()
    });
    // Signed-in requests and ban checks are answered as before: memory only.
    let start = Instant::now();
    for _ in 0..1_000 {
        assert!(b.sessions.verify(&live).is_ok());
        assert!(refused(&b, &gone));
        assert!(banned(&b, None, "203.0.113.9") && !banned(&b, None, "203.0.113.10"));
    }
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "3000 checks took {:?}: they waited on the database",
        start.elapsed()
    );
    // The database back: the listener reconnects by itself and hears the next revocation.
    server().admin(&format!("ALTER DATABASE {database} ALLOW_CONNECTIONS true"));
    wait_for("B's listener is back", Duration::from_secs(10), || {
        b.feed.listening()
    });
    a.sessions.revoke(&later_claims).unwrap();
    wait_for("B refuses after the outage", PROMISE, || {
        refused(&b, &later)
    });
    assert!(b.sessions.verify(&live).is_ok());
}

/// Notices anyone who may connect to the database can send (`NOTIFY` needs no privilege on
/// the tables): garbled, from another version, or trying to shorten or lift what the store
/// holds. None lets a revoked session back in or lifts a ban; each is followed by a real
/// revocation, heard after it, so each was applied before the checks.
#[test]
fn forged_or_garbled_notices_never_lift_a_revocation_or_a_ban() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, _) = two_gateways(dir.path());
    let (live, _) = a.sessions.issue(alice("alice")).unwrap();
    let (gone, claims) = a.sessions.issue(alice("alice")).unwrap();
    let (dave, _) = a.sessions.issue(alice("dave")).unwrap();
    a.sessions.revoke(&claims).unwrap();
    a.sessions.revoke_user("dave").unwrap();
    let ip = "203.0.113.50";
    a.regulator
        .ban(Subject::Ip(ip.into()), None, "operator", SystemClock.now())
        .unwrap();
    wait_for("B has heard", PROMISE, || {
        refused(&b, &gone) && refused(&b, &dave) && banned(&b, None, ip)
    });
    let sid = claims.sid.clone();
    let forged = [
        String::new(),
        "{".into(),
        "null".into(),
        r#"{"kind":"resync"}"#.into(),
        r#"{"kind":"bans"}"#.into(),
        r#"{"kind":"unban","subject":"ip:203.0.113.50"}"#.into(),
        format!(r#"{{"kind":"session","sid":"{sid}","expires":0}}"#),
        format!(r#"{{"kind":"session","sid":"{sid}","expires":-1}}"#),
        r#"{"kind":"user","username":"dave","since_ms":0}"#.into(),
        r#"{"kind":"user","username":"dave","since_ms":-9223372036854775808}"#.into(),
        "x".repeat(7_999),
    ];
    let notify = |payload: String| {
        let pool = a.pg.pool().clone();
        a.pg.block(async move {
            let c = pool.get().await.expect("connection");
            c.execute("SELECT pg_notify('portcullis_changes', $1)", &[&payload])
                .await
                .expect("notify");
            Ok(())
        })
        .unwrap();
    };
    for payload in forged {
        let shown: String = payload.chars().take(60).collect();
        let (marker, m) = a.sessions.issue(alice("marker")).unwrap();
        assert!(b.sessions.verify(&marker).is_ok());
        notify(payload);
        a.sessions.revoke(&m).unwrap();
        wait_for("the marker after the notice", PROMISE, || {
            refused(&b, &marker)
        });
        assert!(refused(&b, &gone), "{shown}: the revoked session is back");
        assert!(refused(&b, &dave), "{shown}: the revoked user is back");
        assert!(banned(&b, None, ip), "{shown}: the ban was lifted");
        assert!(b.sessions.verify(&live).is_ok(), "{shown}");
    }
    // B prunes at its maintenance round: the revocation keeps its real expiry.
    b.sessions.prune();
    assert!(refused(&b, &gone));
}

/// The listener's connection takes the pool's TLS settings: with TLS configured it is
/// encrypted, and it hears revocations over it.
#[test]
fn the_listener_connects_with_the_pools_tls_settings() {
    let dir = tempfile::tempdir().unwrap();
    let plain = server().fresh_database();
    let database = plain
        .url
        .rsplit('/')
        .next()
        .expect("a database")
        .to_string();
    let tls = PostgresStorage {
        tls: true,
        ca_file: Some(server().ca_file().to_path_buf()),
        ..plain.clone()
    };
    let a = gateway(&plain, "plain-a", dir.path());
    let b = gateway(&tls, "tls-b", dir.path());
    let pool = a.pg.pool().clone();
    let listeners: Vec<(String, bool)> =
        a.pg.block(async move {
            let c = pool.get().await.expect("connection");
            let rows = c
                .query(
                    "SELECT a.application_name, s.ssl FROM pg_stat_activity a \
                     JOIN pg_stat_ssl s ON s.pid = a.pid \
                     WHERE a.datname = $1 AND a.application_name LIKE '%-changes' \
                     ORDER BY 1",
                    &[&database],
                )
                .await
                .expect("activity");
            Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
        })
        .unwrap();
    assert_eq!(
        listeners,
        vec![
            ("plain-a-changes".to_string(), false),
            ("tls-b-changes".to_string(), true)
        ]
    );
    let (token, claims) = a.sessions.issue(alice("alice")).unwrap();
    assert!(b.sessions.verify(&token).is_ok());
    a.sessions.revoke(&claims).unwrap();
    wait_for("B refuses over TLS", PROMISE, || refused(&b, &token));
}

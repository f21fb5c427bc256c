//! What only a shared database shows: several handles (as several gateways hold) on one
//! database, and the database's own guarantees. The behaviour every backend shares is in
//! `src/store/conformance.rs`, run here too.

use super::test_server::server;
use super::{lock, query_opt, PgStore};
use crate::config::PostgresStorage;
use crate::store::{Store, StoreError, User};
use std::sync::{Arc, Barrier};

/// Two handles on one fresh database, as two replicas would open it.
fn two_replicas() -> (Arc<PgStore>, Arc<PgStore>, PostgresStorage) {
    let config = server().fresh_database();
    let a = PgStore::connect(&config).expect("replica a");
    let b = PgStore::connect(&config).expect("replica b");
    (Arc::new(a), Arc::new(b), config)
}

/// Runs `per_thread` on `threads` threads of each handle, all released at once.
fn race<T: Send + 'static>(
    handles: &[Arc<PgStore>],
    threads: usize,
    per_thread: impl Fn(&PgStore) -> T + Send + Sync + 'static,
) -> Vec<T> {
    let barrier = Arc::new(Barrier::new(handles.len() * threads));
    let f = Arc::new(per_thread);
    let joins: Vec<_> = handles
        .iter()
        .flat_map(|h| std::iter::repeat_n(h.clone(), threads))
        .map(|h| {
            let (barrier, f) = (barrier.clone(), f.clone());
            std::thread::spawn(move || {
                barrier.wait();
                f(&h)
            })
        })
        .collect();
    joins
        .into_iter()
        .map(|j| j.join().expect("thread"))
        .collect()
}

#[test]
fn two_handles_on_one_database_see_each_others_writes() {
    let (a, b, _) = two_replicas();
    assert_eq!(a.database_id().unwrap(), b.database_id().unwrap());
    let mut alice = User::new("alice", 1);
    alice.email = Some("alice@example.com".into());
    assert!(a.create_user(&alice).unwrap());
    assert_eq!(b.user("ALICE").unwrap().as_ref(), Some(&alice));
    assert!(!b.create_user(&alice).unwrap(), "b sees the name a took");
    assert_eq!(
        b.user_by_email("Alice@Example.com")
            .unwrap()
            .map(|u| u.username),
        Some("alice".into())
    );
    a.put_execution("x", 100, b"state").unwrap();
    assert_eq!(
        b.execution("x", 50).unwrap().as_deref(),
        Some(&b"state"[..])
    );
    b.revoke_session("sid", 500).unwrap();
    assert_eq!(a.revocations(0).unwrap(), [("sid".to_string(), 500)]);
    a.put_ticket("t", 100, b"link").unwrap();
    assert!(b.take_ticket("t").unwrap());
    assert!(!a.take_ticket("t").unwrap(), "taken on b, gone on a");
    assert_eq!(a.secret("otp").unwrap(), b.secret("otp").unwrap());
    assert_eq!(a.bump_counter("k", 60, 0).unwrap(), 1);
    assert_eq!(b.bump_counter("k", 60, 1).unwrap(), 2);
    assert_eq!(a.slide_failure("f", 60, 0, 10).unwrap(), 1);
    assert_eq!(b.slide_failure("f", 60, 1, 10).unwrap(), 2);
    b.unslide_failure("f", 1).unwrap();
    assert_eq!(a.slide_failure("f", 60, 2, 10).unwrap(), 2);
}

#[test]
fn counters_bumped_from_two_replicas_at_once_lose_no_increment() {
    let (a, b, _) = two_replicas();
    // 2 replicas x 5 threads x 100 bumps, all at once.
    let counts = race(&[a.clone(), b.clone()], 5, |s| {
        (0..100)
            .map(|_| s.bump_counter("busy", 600, 1_000).unwrap())
            .collect::<Vec<_>>()
    });
    let mut seen: Vec<u32> = counts.into_iter().flatten().collect();
    seen.sort_unstable();
    assert_eq!(seen, (1..=1000).collect::<Vec<_>>(), "each count once");
    assert_eq!(a.counter("busy", 1_000).unwrap(), 1000);
    assert_eq!(b.counter("busy", 1_000).unwrap(), 1000);
    // Sliding failure windows too: every caller sees its own count.
    let counts = race(&[a.clone(), b.clone()], 4, |s| {
        (0..25)
            .map(|_| s.slide_failure("slide", 600, 1_000, 10_000).unwrap())
            .collect::<Vec<_>>()
    });
    let mut seen: Vec<u32> = counts.into_iter().flatten().collect();
    seen.sort_unstable();
    assert_eq!(seen, (1..=200).collect::<Vec<_>>());
}

#[test]
fn a_ticket_taken_on_two_replicas_at_once_is_taken_once() {
    let (a, b, _) = two_replicas();
    for round in 0..20 {
        let hash = format!("magic-{round}");
        a.put_ticket(&hash, i64::MAX, b"x").unwrap();
        let won = race(&[a.clone(), b.clone()], 2, move |s| {
            s.take_ticket(&hash).unwrap()
        });
        assert_eq!(won.iter().filter(|w| **w).count(), 1, "round {round}");
    }
    // And an invitation spent, a queued message delivered: once.
    a.put_invitation(&crate::store::Invitation {
        id: "inv".into(),
        token_hash: "ab".repeat(32),
        flow: None,
        fixed: Default::default(),
        single_use: true,
        created: 0,
        expires: i64::MAX,
    })
    .unwrap();
    a.put_outbox("m1", b"mail").unwrap();
    let won = race(&[a.clone(), b.clone()], 3, |s| {
        (
            s.remove_invitation("inv").unwrap(),
            s.take_outbox("m1").unwrap(),
        )
    });
    assert_eq!(won.iter().filter(|w| w.0).count(), 1);
    assert_eq!(won.iter().filter(|w| w.1).count(), 1);
}

#[test]
fn two_replicas_racing_for_one_address_give_it_to_one_account() {
    let (a, b, _) = two_replicas();
    for round in 0..5 {
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let won = race(&[a.clone(), b.clone()], 4, move |s| {
            let n = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut u = User::new(format!("r{round}-{n}"), 0);
            u.email = Some(format!("race{round}@example.com"));
            s.create_user(&u).unwrap()
        });
        assert_eq!(won.iter().filter(|w| **w).count(), 1, "round {round}");
    }
}

#[test]
fn replicas_starting_together_apply_the_migrations_once() {
    let config = server().fresh_database();
    let barrier = Arc::new(Barrier::new(4));
    let joins: Vec<_> = (0..4)
        .map(|_| {
            let (config, barrier) = (config.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                PgStore::connect(&config).map(|s| s.database_id().unwrap())
            })
        })
        .collect();
    let ids: Vec<_> = joins
        .into_iter()
        .map(|j| j.join().unwrap().expect("connect"))
        .collect();
    assert!(
        ids.windows(2).all(|w| w[0] == w[1]),
        "one identity: {ids:?}"
    );
    let store = PgStore::connect(&config).unwrap();
    let versions = store
        .block({
            let pool = store.pool().clone();
            async move {
                let c = pool.get().await.map_err(super::pool_err("test"))?;
                let rows = super::query(&c, "SELECT version FROM portcullis_schema", &[])
                    .await
                    .map_err(super::db("test"))?;
                Ok(rows.iter().map(|r| r.get::<_, i32>(0)).collect::<Vec<_>>())
            }
        })
        .unwrap();
    let want: Vec<i32> = super::migrate::MIGRATIONS.iter().map(|m| m.0).collect();
    assert_eq!(versions, want);
}

#[test]
fn a_schema_newer_than_the_gateway_is_refused() {
    let config = server().fresh_database();
    let store = PgStore::connect(&config).unwrap();
    store
        .block({
            let pool = store.pool().clone();
            async move {
                let c = pool.get().await.map_err(super::pool_err("test"))?;
                super::execute(
                    &c,
                    "INSERT INTO portcullis_schema (version, name) VALUES (9999, 'future')",
                    &[],
                )
                .await
                .map_err(super::db("test"))?;
                Ok(())
            }
        })
        .unwrap();
    drop(store);
    let Err(e) = PgStore::connect(&config) else {
        panic!("a newer schema was accepted")
    };
    assert!(
        e.to_string().contains("newer than this gateway knows"),
        "{e}"
    );
}

#[test]
fn a_wrong_password_is_refused_and_never_shown() {
    let mut config = server().fresh_database();
    config.password = Some(crate::secret::Secret::new("wrong-horse-battery".into()));
    let Err(e) = PgStore::connect(&config) else {
        panic!("a wrong password was accepted")
    };
    assert!(matches!(e, StoreError::Backend { .. }), "{e}");
    let text = format!("{e} {e:?}");
    assert!(!text.contains("wrong-horse-battery"), "{text}");
    assert!(text.contains("password authentication failed"), "{text}");
}

#[test]
fn a_call_from_inside_an_async_task_neither_panics_nor_deadlocks() {
    // Pingora's runtimes are current-thread: a store call made straight from a request task
    // must run there (the driver's I/O runs on the store's own threads).
    let config = server().fresh_database();
    let store = Arc::new(PgStore::connect(&config).unwrap());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let s = store.clone();
    let n = rt.block_on(async move {
        let tasks: Vec<_> = (0..4)
            .map(|_| {
                let s = s.clone();
                tokio::spawn(async move { s.bump_counter("in-task", 60, 0).unwrap() })
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    });
    assert_eq!(n.len(), 4);
    assert_eq!(store.counter("in-task", 0).unwrap(), 4);
    // Dropped inside a task too: shutting its runtime down must not panic there.
    rt.block_on(async move { drop(store) });
}

#[test]
fn keys_postgres_cannot_hold_are_absent_not_errors() {
    let store = PgStore::connect(&server().fresh_database()).unwrap();
    for key in ["nul\0here", "\0"] {
        assert!(store.user(key).unwrap().is_none(), "{key:?}");
        assert!(store.user_by_email(key).unwrap().is_none());
        assert!(store.session(key).unwrap().is_none());
        assert!(store.execution(key, 0).unwrap().is_none());
        assert!(!store.take_ticket(key).unwrap());
        assert!(!store.remove_ban(key).unwrap());
        assert_eq!(store.counter(key, 0).unwrap(), 0);
        assert!(store.put_ticket(key, 1, b"x").is_err());
    }
    // Values, unlike keys, may hold anything.
    let mut odd = User::new("odd", 0);
    odd.name = "nul\0inside \u{1F600} 'quoted' \"double\"".into();
    store.put_user(&odd).unwrap();
    assert_eq!(store.user("odd").unwrap(), Some(odd));
    store.put_execution("bin", 10, &[0, 255, 0, 1]).unwrap();
    assert_eq!(
        store.execution("bin", 0).unwrap().as_deref(),
        Some(&[0, 255, 0, 1][..])
    );
}

#[test]
fn one_replica_purges_at_a_time() {
    let (a, b, _) = two_replicas();
    a.put_execution("old", 10, b"x").unwrap();
    // Replica b holds the purge lock (as while it purges): a's purge leaves the work to it.
    let pool = b.pool().clone();
    let other = a.clone();
    let purged_meanwhile = b
        .block(async move {
            let mut c = pool.get().await.map_err(super::pool_err("test"))?;
            let tx = c.transaction().await.map_err(super::db("test"))?;
            query_opt(&tx, "SELECT pg_advisory_xact_lock($1)", &[&lock::PURGE])
                .await
                .map_err(super::db("test"))?;
            // A blocking call inside a task: fine for a test (a has its own runtime).
            let n = other.purge_expired(10)?;
            tx.rollback().await.map_err(super::db("test"))?;
            Ok(n)
        })
        .unwrap();
    assert_eq!(purged_meanwhile, 0);
    assert!(
        a.execution("old", 0).unwrap().is_some(),
        "left for the holder"
    );
    assert_eq!(a.purge_expired(10).unwrap(), 1, "the lock is free again");
    assert!(b.execution("old", 0).unwrap().is_none());
}

/// Whether the store's connections are encrypted, as the server sees them.
fn encrypted(store: &PgStore) -> bool {
    let pool = store.pool().clone();
    store
        .block(async move {
            let c = pool.get().await.map_err(super::pool_err("test"))?;
            let row = query_opt(
                &c,
                "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                &[],
            )
            .await
            .map_err(super::db("test"))?;
            Ok(row.is_some_and(|r| r.get::<_, bool>(0)))
        })
        .unwrap()
}

#[test]
fn tls_to_the_database_verifies_the_certificate_and_its_name() {
    let server = server();
    let plain = server.fresh_database();
    let store = PgStore::connect(&plain).unwrap();
    assert!(!encrypted(&store), "no TLS unless configured");
    drop(store);
    let verified = PostgresStorage {
        tls: true,
        ca_file: Some(server.ca_file().to_path_buf()),
        ..plain.clone()
    };
    for host in ["127.0.0.1", "localhost"] {
        let config = PostgresStorage {
            url: verified.url.replace("127.0.0.1", host),
            ..verified.clone()
        };
        let store = PgStore::connect(&config).expect(host);
        assert!(encrypted(&store), "{host}: TLS was configured");
        store.put_user(&User::new("tls", 0)).unwrap();
        assert!(store.user("tls").unwrap().is_some());
    }
    // Another CA, or the public roots (none of which signed the test CA): refused.
    let dir = tempfile::tempdir().unwrap();
    let other = dir.path().join("other-ca.pem");
    let stranger = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    std::fs::write(&other, stranger.cert.pem()).unwrap();
    for ca_file in [Some(other), None] {
        let config = PostgresStorage {
            ca_file: ca_file.clone(),
            ..verified.clone()
        };
        let Err(e) = PgStore::connect(&config) else {
            panic!("{ca_file:?}: an unverified certificate was accepted")
        };
        assert!(
            format!("{e:?}").contains("InvalidCertificate"),
            "{ca_file:?}: {e:?}"
        );
    }
    // The right CA and address, but a name the certificate does not carry.
    let config = PostgresStorage {
        url: format!(
            "{}?hostaddr=127.0.0.1",
            verified.url.replace("127.0.0.1", "db.example.test")
        ),
        ..verified.clone()
    };
    let Err(e) = PgStore::connect(&config) else {
        panic!("a certificate for another name was accepted")
    };
    assert!(format!("{e:?}").contains("InvalidCertificate"), "{e:?}");
}

#[test]
fn the_configured_backend_is_the_one_opened() {
    let config = server().fresh_database();
    let direct = PgStore::connect(&config).unwrap();
    let storage = crate::config::StorageConfig {
        path: "/nonexistent/portcullis.db".into(),
        keys_path: "/nonexistent/keys.json".into(),
        device_key_path: "/nonexistent/device-key.json".into(),
        backend: crate::config::StorageBackend::Postgres(config),
        purge_interval: crate::config::DEFAULT_PURGE_INTERVAL,
    };
    let opened = crate::store::open(&storage).unwrap();
    assert_eq!(opened.database_id().unwrap(), direct.database_id().unwrap());
    assert!(
        !std::path::Path::new("/nonexistent").exists(),
        "sled was opened"
    );
}

#[test]
fn revocations_stream_past_a_batch_in_order_and_expired_ones_are_dropped() {
    let (a, b, _) = two_replicas();
    // 2,500 session revocations (a few batches; every 5th already expired at 1_000) and
    // 2,100 user revocations, written in one statement each.
    let pool = a.pool().clone();
    a.block(async move {
        let c = pool.get().await.map_err(super::pool_err("test"))?;
        super::execute(
            &c,
            "INSERT INTO portcullis_revoked_sessions (sid, expires) \
             SELECT format('sid-%s', lpad(i::text, 5, '0')), \
                    CASE WHEN i % 5 = 0 THEN 500 ELSE 2000 + i END \
             FROM generate_series(1, 2500) AS i",
            &[],
        )
        .await
        .map_err(super::db("test"))?;
        super::execute(
            &c,
            "INSERT INTO portcullis_revoked_users (username, since_ms) \
             SELECT format('user-%s', lpad(i::text, 5, '0')), i FROM generate_series(1, 2100) AS i",
            &[],
        )
        .await
        .map_err(super::db("test"))?;
        Ok(())
    })
    .unwrap();
    let mut seen = Vec::new();
    b.for_each_revocation(1_000, &mut |sid, exp| seen.push((sid.to_string(), exp)))
        .unwrap();
    let want: Vec<(String, i64)> = (1..=2500_i64)
        .filter(|i| i % 5 != 0)
        .map(|i| (format!("sid-{i:05}"), 2000 + i))
        .collect();
    assert_eq!(seen.len(), 2000);
    assert_eq!(seen, want, "every revocation in force, once, in order");
    assert_eq!(
        a.revocations(1_000).unwrap(),
        want,
        "as revocations() lists them"
    );
    // The expired ones were dropped from the table.
    let mut again = 0;
    a.for_each_revocation(0, &mut |_, exp| {
        assert!(exp > 1_000);
        again += 1;
    })
    .unwrap();
    assert_eq!(again, 2000);
    let mut users = Vec::new();
    b.for_each_user_revocation(&mut |u, since| users.push((u.to_string(), since)))
        .unwrap();
    assert_eq!(users.len(), 2100);
    assert_eq!(users, a.user_revocations().unwrap());
    assert_eq!(users[1999], ("user-02000".to_string(), 2000));
}

#[test]
fn failures_are_read_across_replicas_without_being_counted() {
    let (a, b, _) = two_replicas();
    assert_eq!(b.failures("f", 60, 0).unwrap(), 0, "no window yet");
    for t in [0, 10, 20] {
        a.slide_failure("f", 60, t, 10).unwrap();
    }
    assert_eq!(b.failures("f", 60, 20).unwrap(), 3);
    assert_eq!(
        b.failures("f", 60, 20).unwrap(),
        3,
        "reading counts nothing"
    );
    assert_eq!(b.failures("f", 60, 60).unwrap(), 2, "the one at 0 slid out");
    assert_eq!(b.failures("f", 60, 80).unwrap(), 0);
    b.unslide_failure("f", 20).unwrap();
    assert_eq!(a.failures("f", 60, 20).unwrap(), 2);
    assert_eq!(a.failures("other", 60, 20).unwrap(), 0);
}

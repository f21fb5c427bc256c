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

/// Runs `sql` (statements without parameters) on a connection of `store`'s pool.
fn sql(store: &PgStore, sql: &'static str) {
    let pool = store.pool().clone();
    store
        .block(async move {
            let c = pool.get().await.map_err(super::pool_err("test"))?;
            c.batch_execute(sql).await.map_err(super::db("test"))
        })
        .unwrap();
}

#[test]
fn an_address_left_in_the_index_by_a_removed_account_is_free_for_the_next() {
    let (a, b, _) = two_replicas();
    // What a removal racing an address change could leave: an entry naming no account.
    sql(
        &a,
        "INSERT INTO portcullis_emails (email, username) VALUES ('carol@example.com', 'ghost')",
    );
    assert_eq!(b.user_by_email("Carol@example.com").unwrap(), None);
    let mut carol = User::new("carol", 1);
    carol.email = Some("carol@example.com".into());
    assert!(a.create_user(&carol).unwrap(), "the address is free");
    assert_eq!(
        b.user_by_email("carol@example.com")
            .unwrap()
            .map(|u| u.username),
        Some("carol".into())
    );
    let mut dave = User::new("dave", 1);
    assert!(b.create_user(&dave).unwrap());
    dave.email = Some("carol@example.com".into());
    assert!(!b.update_user(&dave).unwrap(), "carol holds it now");
}

#[test]
fn removing_an_account_drops_every_index_entry_naming_it() {
    let (a, b, _) = two_replicas();
    let mut erin = User::new("erin", 1);
    erin.email = Some("erin@example.com".into());
    assert!(a.create_user(&erin).unwrap());
    // An entry a concurrent address change left naming erin.
    sql(
        &a,
        "INSERT INTO portcullis_emails (email, username) VALUES ('old@example.com', 'erin')",
    );
    assert!(b.remove_user("erin").unwrap());
    // The same name signs up again: the stale address is no longer theirs.
    assert!(a.create_user(&User::new("erin", 2)).unwrap());
    assert_eq!(b.user_by_email("old@example.com").unwrap(), None);
    let mut frank = User::new("frank", 1);
    frank.email = Some("old@example.com".into());
    assert!(b.create_user(&frank).unwrap());
}

#[test]
fn an_update_racing_a_removal_never_brings_the_account_back() {
    let (a, b, _) = two_replicas();
    for round in 0..30 {
        let name = format!("racer{round}");
        let mut user = User::new(&name, 1);
        user.email = Some(format!("{name}@example.com"));
        assert!(a.create_user(&user).unwrap());
        let mut renamed = user.clone();
        renamed.name = "Updated".into();
        let (ua, ub) = (renamed.clone(), name.clone());
        let results = race(&[a.clone(), b.clone()], 1, move |s| {
            // Both handles run both: the first thread updates, the other removes.
            static TURN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            if TURN
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
                .is_multiple_of(2)
            {
                ("update", s.update_user(&ua).unwrap())
            } else {
                ("remove", s.remove_user(&ub).unwrap())
            }
        });
        let updated = results.contains(&("update", true));
        let removed = results.contains(&("remove", true));
        assert!(removed, "round {round}: the account existed");
        if updated {
            // The update came first, then the removal: the account is gone.
            assert_eq!(a.user(&name).unwrap(), None, "round {round}: came back");
        }
        assert_eq!(
            b.user_by_email(&format!("{name}@example.com")).unwrap(),
            None,
            "round {round}"
        );
    }
}

#[test]
fn a_secret_that_exists_is_read_without_writing() {
    let (a, b, _) = two_replicas();
    let first = a.secret("otp").unwrap();
    // Any write to the table fails from now on (a BEFORE trigger fires before ON CONFLICT).
    sql(
        &a,
        "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS \
         $$ BEGIN RAISE EXCEPTION 'written'; END $$; \
         CREATE TRIGGER refuse BEFORE INSERT OR UPDATE ON portcullis_secrets \
         FOR EACH ROW EXECUTE FUNCTION refuse();",
    );
    for _ in 0..3 {
        assert_eq!(b.secret("otp").unwrap(), first, "read, never rewritten");
    }
    assert!(
        b.secret("another").is_err(),
        "a new one is written (and refused here)"
    );
}

#[test]
fn the_test_servers_password_is_not_left_on_disk() {
    let server = server();
    let root = server.ca_file().parent().unwrap();
    assert!(
        !root.join("pw").exists(),
        "the superuser's password file outlived initdb"
    );
    // Nothing else in its folder holds the password in the clear, for any user to read.
    for entry in std::fs::read_dir(root).unwrap().flatten() {
        if entry.path().is_file() {
            let text = std::fs::read(entry.path()).unwrap_or_default();
            assert!(
                !String::from_utf8_lossy(&text).contains(server.password()),
                "{}",
                entry.path().display()
            );
        }
    }
}

/// A loopback TCP relay to the test server that can go silent, as a database whose machine
/// vanished looks to a gateway: connections stay open, nothing is answered.
struct Relay {
    port: u16,
    /// New connections are silent from the start while set.
    down: Arc<std::sync::atomic::AtomicBool>,
    /// One flag per connection made: silent once set.
    silenced: Arc<parking_lot::Mutex<Vec<Arc<std::sync::atomic::AtomicBool>>>>,
}

impl Relay {
    fn start() -> Relay {
        use std::sync::atomic::{AtomicBool, Ordering};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let down = Arc::new(AtomicBool::new(false));
        let silenced = Arc::new(parking_lot::Mutex::new(Vec::<Arc<AtomicBool>>::new()));
        let (d, s) = (down.clone(), silenced.clone());
        let upstream = server().port();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(db) = std::net::TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                let silent = Arc::new(AtomicBool::new(d.load(Ordering::SeqCst)));
                s.lock().push(silent.clone());
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), db.try_clone().unwrap()),
                    (db, client),
                ] {
                    let silent = silent.clone();
                    std::thread::spawn(move || {
                        use std::io::{Read, Write};
                        let mut buf = [0u8; 16 * 1024];
                        while let Ok(n) = from.read(&mut buf) {
                            if n == 0 {
                                break;
                            }
                            if !silent.load(Ordering::SeqCst) && to.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        Relay {
            port,
            down,
            silenced,
        }
    }

    /// `config`, reaching the database through this relay.
    fn through(&self, mut config: PostgresStorage) -> PostgresStorage {
        config.url = config.url.replace(
            &format!(":{}/", server().port()),
            &format!(":{}/", self.port),
        );
        config
    }

    /// Every connection made so far goes silent.
    fn silence_existing(&self) {
        for s in self.silenced.lock().iter() {
            s.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }

    /// The database stops answering: every connection, and every new one.
    fn cut(&self) {
        self.down.store(true, std::sync::atomic::Ordering::SeqCst);
        self.silence_existing();
    }

    /// New connections are answered again (the silent ones stay silent).
    fn restore(&self) {
        self.down.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

#[test]
fn a_call_cut_short_leaves_its_stuck_connection_to_no_one() {
    let relay = Relay::start();
    let mut config = relay.through(server().fresh_database());
    config.pool_size = 1;
    let store = PgStore::connect_within(&config, std::time::Duration::from_secs(1)).unwrap();
    store.put_execution("x", i64::MAX, b"state").unwrap();
    // The pool's one connection stops answering mid-life (new ones would be answered).
    relay.silence_existing();
    let started = std::time::Instant::now();
    assert!(store.execution("x", 0).is_err(), "no answer: an error");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    for _ in 0..3 {
        assert_eq!(
            store.execution("x", 0).unwrap().as_deref(),
            Some(&b"state"[..]),
            "the next calls get a connection that answers"
        );
    }
}

#[test]
fn readiness_answers_at_once_and_follows_the_database_down_and_up() {
    use http::StatusCode;
    let relay = Relay::start();
    let config = relay.through(server().fresh_database());
    let store: Arc<dyn Store> = Arc::new(PgStore::connect(&config).unwrap());
    let ready = |store: &Arc<dyn Store>| {
        let started = std::time::Instant::now();
        let answer = crate::ops::ready(store.as_ref(), false);
        let took = started.elapsed();
        assert!(
            took < std::time::Duration::from_millis(200),
            "/ready took {took:?}"
        );
        answer.status
    };
    // Waits (up to `within`) for `want`, each answer fast.
    let wait_for = |want: StatusCode, within: u64| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(within);
        loop {
            if ready(&store) == want {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "/ready never said {want}"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    };
    assert_eq!(ready(&store), StatusCode::OK);
    relay.cut();
    wait_for(StatusCode::SERVICE_UNAVAILABLE, 6);
    // A flood of readiness checks during the outage: every one answered at once.
    let flood: Vec<_> = (0..16)
        .map(|_| {
            let store = store.clone();
            std::thread::spawn(move || {
                (0..20)
                    .map(|_| crate::ops::ready(store.as_ref(), false).status)
                    .all(|s| s == StatusCode::SERVICE_UNAVAILABLE)
            })
        })
        .collect();
    let started = std::time::Instant::now();
    for f in flood {
        assert!(f.join().unwrap());
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
    relay.restore();
    wait_for(StatusCode::OK, 10);
    assert!(store.user("nobody").is_ok(), "and calls work again");
}

#[test]
fn a_locked_expired_row_neither_stops_nor_undoes_the_purge() {
    let config = server().fresh_database();
    let a = Arc::new(PgStore::connect_within(&config, std::time::Duration::from_secs(3)).unwrap());
    let b = PgStore::connect(&config).unwrap();
    a.put_execution("old", 10, b"x").unwrap();
    a.put_ticket("t", 10, b"x").unwrap();
    assert_eq!(a.bump_counter("busy", 10, 0).unwrap(), 1);
    assert_eq!(a.bump_counter("idle", 10, 0).unwrap(), 1);
    // A write in flight on b holds the expired counter "busy" for longer than a call lasts.
    let pool = b.pool().clone();
    let purger = a.clone();
    let (purged, took) = b
        .block(async move {
            let mut c = pool.get().await.map_err(super::pool_err("test"))?;
            let tx = c.transaction().await.map_err(super::db("test"))?;
            query_opt(
                &tx,
                "SELECT 1 FROM portcullis_counters WHERE key = 'busy' FOR UPDATE",
                &[],
            )
            .await
            .map_err(super::db("test"))?;
            let started = std::time::Instant::now();
            let n = purger.purge_expired(100);
            let took = started.elapsed();
            tx.rollback().await.map_err(super::db("test"))?;
            Ok((n, took))
        })
        .unwrap();
    assert_eq!(purged.unwrap(), 3, "all but the locked row");
    assert!(took < std::time::Duration::from_secs(2), "took {took:?}");
    assert!(a.execution("old", 0).unwrap().is_none());
    assert_eq!(a.counter("idle", 0).unwrap(), 0);
    assert_eq!(a.purge_expired(100).unwrap(), 1, "the next purge takes it");
    assert_eq!(b.purge_expired(100).unwrap(), 0, "the lock was given back");
}

#[test]
fn a_backlog_larger_than_a_batch_is_purged_whole() {
    let (a, _b, _) = two_replicas();
    sql(
        &a,
        "INSERT INTO portcullis_executions (id, expires, state) \
         SELECT 'e' || g, 10, '\\x00' FROM generate_series(1, 25000) g; \
         INSERT INTO portcullis_executions (id, expires, state) VALUES ('live', 1000, '\\x01')",
    );
    assert_eq!(a.purge_expired(100).unwrap(), 25_000);
    assert!(a.execution("live", 100).unwrap().is_some());
    assert_eq!(a.purge_expired(100).unwrap(), 0);
}

#[test]
fn a_migration_that_outlasts_a_call_still_finishes() {
    let config = server().fresh_database();
    let b = PgStore::connect(&config).unwrap();
    // Another replica holds the migration lock (as while it applies a long migration) for
    // longer than a call may last.
    let pool = b.pool().clone();
    let late = config.clone();
    let connected = b
        .block(async move {
            let mut c = pool.get().await.map_err(super::pool_err("test"))?;
            let tx = c.transaction().await.map_err(super::db("test"))?;
            query_opt(&tx, "SELECT pg_advisory_xact_lock($1)", &[&lock::MIGRATE])
                .await
                .map_err(super::db("test"))?;
            let starting = std::thread::spawn(move || {
                PgStore::connect_within(&late, std::time::Duration::from_secs(1)).map(|_| ())
            });
            tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
            tx.rollback().await.map_err(super::db("test"))?;
            Ok(starting.join().expect("thread"))
        })
        .unwrap();
    connected.expect("the replica started once the migration was done");
}

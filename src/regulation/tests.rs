//! The counting logic over an in-memory store and a manual clock.

use super::*;
use crate::clock::ManualClock;
use crate::store::MemoryStore;
use std::time::Duration;

const T0: i64 = 1_700_000_000;

struct Rig {
    store: Arc<dyn Store>,
    clock: Arc<ManualClock>,
    reg: Arc<Regulator>,
}

fn rig_with(cfg: Regulation) -> Rig {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let clock = Arc::new(ManualClock::new(T0));
    let reg = Arc::new(Regulator::new(cfg, store.clone(), clock.clone()).unwrap());
    Rig { store, clock, reg }
}

fn rig() -> Rig {
    rig_with(Regulation::default())
}

impl Rig {
    fn now(&self) -> i64 {
        self.clock.now()
    }

    /// One judged attempt: `Err` when refused unjudged.
    fn guess(&self, account: Option<&str>, client: &str, right: bool) -> Result<(), Refused> {
        let a = self.reg.attempt(account, client, self.now()).unwrap()?;
        if right {
            self.reg.passed(a).unwrap();
        } else {
            self.reg.failed(a).unwrap();
        }
        Ok(())
    }
}

#[test]
fn an_account_from_one_address_is_banned_after_max_retries_for_ban_time() {
    let r = rig();
    for _ in 0..3 {
        r.guess(Some("alice"), "10.0.0.1", false).unwrap();
    }
    let refused = r.guess(Some("alice"), "10.0.0.1", true).unwrap_err();
    assert_eq!(
        refused.retry_after, 300,
        "even the right password waits the ban out"
    );
    assert_eq!(
        r.reg.bans_in_force(),
        2,
        "the pair and (ip mode) the address"
    );
    r.clock.advance(Duration::from_secs(299));
    assert!(r.guess(Some("alice"), "10.0.0.1", true).is_err());
    r.clock.advance(Duration::from_secs(1));
    r.guess(Some("alice"), "10.0.0.1", true).unwrap();
    assert_eq!(r.reg.bans_in_force(), 0);
}

#[test]
fn right_answers_are_not_counted_and_failures_slide_out_of_find_time() {
    let r = rig();
    for _ in 0..10 {
        r.guess(Some("alice"), "10.0.0.1", true).unwrap();
    }
    r.guess(Some("alice"), "10.0.0.1", false).unwrap();
    r.guess(Some("alice"), "10.0.0.1", false).unwrap();
    r.clock.advance(Duration::from_secs(121));
    // The two failures before have slid out: three more are judged.
    for _ in 0..3 {
        r.guess(Some("alice"), "10.0.0.1", false).unwrap();
    }
    r.guess(Some("alice"), "10.0.0.1", true).unwrap_err();
}

#[test]
fn ip_mode_bans_an_address_guessing_at_many_accounts_and_user_mode_alone_does_not() {
    let r = rig();
    for name in ["a", "b", "c"] {
        r.guess(Some(name), "10.0.0.9", false).unwrap();
    }
    assert!(r.guess(Some("d"), "10.0.0.9", true).is_err());
    assert!(
        r.guess(None, "10.0.0.9", true).is_err(),
        "a passkey try too"
    );
    let user_only = rig_with(Regulation {
        ip: false,
        ..Regulation::default()
    });
    for name in ["a", "b", "c", "d"] {
        user_only.guess(Some(name), "10.0.0.9", false).unwrap();
    }
    user_only.guess(Some("e"), "10.0.0.9", true).unwrap();
}

#[test]
fn fifty_parallel_wrong_guesses_from_one_address_get_exactly_max_retries_judged() {
    let r = rig();
    let judged = std::sync::atomic::AtomicU32::new(0);
    let barrier = std::sync::Barrier::new(50);
    std::thread::scope(|s| {
        for _ in 0..50 {
            s.spawn(|| {
                barrier.wait();
                if r.guess(Some("alice"), "10.0.0.1", false).is_ok() {
                    judged.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
            });
        }
    });
    assert_eq!(judged.into_inner(), 3);
}

#[test]
fn guesses_spread_over_addresses_trip_the_account_counter_with_a_growing_delay() {
    let r = rig();
    let mut waits = Vec::new();
    for i in 1..=8 {
        let ip = format!("10.0.1.{i}");
        r.guess(Some("alice"), &ip, false).unwrap();
        // One wrong password from each address: no address nor pair is past its own limit,
        // but past the account's limit each address waits a doubling delay.
        waits.push(
            r.reg
                .check(Some("alice"), &ip, r.now())
                .err()
                .map(|e| e.retry_after),
        );
    }
    assert_eq!(
        waits,
        [
            None,
            None,
            None,
            Some(2),
            Some(4),
            Some(8),
            Some(16),
            Some(32)
        ]
    );
    // Another spelling of the name is the same account.
    assert!(r.reg.check(Some("ALICE"), "10.0.1.8", r.now()).is_err());
    // The owner, from an address that has not failed, is judged and signs in meanwhile.
    r.guess(Some("alice"), "192.168.1.7", true).unwrap();
    // The delay passes.
    r.clock.advance(Duration::from_secs(2));
    r.guess(Some("alice"), "10.0.1.4", false).unwrap();
}

#[test]
fn the_delay_never_exceeds_ban_time() {
    let r = rig_with(Regulation {
        ban_time: Duration::from_secs(10),
        find_time: Duration::from_secs(3600),
        ..Regulation::default()
    });
    for i in 1..=12 {
        r.guess(Some("bob"), &format!("10.0.2.{i}"), false).unwrap();
    }
    let wait = r.reg.check(Some("bob"), "10.0.2.12", r.now()).unwrap_err();
    assert_eq!(wait.retry_after, 10);
}

#[test]
fn the_account_locks_after_lock_after_consecutive_failures_until_an_operator_lifts_it() {
    let r = rig_with(Regulation {
        lock_after: 100,
        ..Regulation::default()
    });
    for i in 0..100 {
        let ip = format!("10.{}.{}.1", i / 250, i % 250);
        r.guess(Some("carol"), &ip, false).unwrap();
        r.clock.advance(Duration::from_secs(400));
    }
    // Locked from everywhere, also from an address that never failed, for good.
    let refused = r.guess(Some("carol"), "192.168.1.7", true).unwrap_err();
    assert_eq!(refused.retry_after, 300);
    r.clock.advance(Duration::from_secs(86_400));
    assert!(r.guess(Some("carol"), "192.168.1.7", true).is_err());
    let bans = r.reg.list().unwrap();
    assert!(bans
        .iter()
        .any(|b| b.subject == "user:carol" && b.until.is_none() && b.reason == "locked"));
    assert!(r.reg.revoke(&Subject::Account("carol".into())).unwrap());
    r.guess(Some("carol"), "192.168.1.7", true).unwrap();
    // Lifted, the count starts again: one more failure does not lock.
    r.guess(Some("carol"), "192.168.1.8", false).unwrap();
    r.guess(Some("carol"), "192.168.1.7", true).unwrap();
}

#[test]
fn a_completed_sign_in_starts_the_consecutive_count_again() {
    let r = rig_with(Regulation {
        lock_after: 5,
        ..Regulation::default()
    });
    for i in 0..4 {
        r.guess(Some("dave"), &format!("10.0.3.{i}"), false)
            .unwrap();
        r.clock.advance(Duration::from_secs(400));
    }
    r.reg.signed_in("dave").unwrap();
    for i in 0..4 {
        r.guess(Some("dave"), &format!("10.0.4.{i}"), false)
            .unwrap();
        r.clock.advance(Duration::from_secs(400));
    }
    r.guess(Some("dave"), "192.168.1.7", true).unwrap();
}

#[test]
fn parallel_guesses_from_many_addresses_never_pass_the_lock() {
    let r = rig_with(Regulation {
        lock_after: 20,
        ..Regulation::default()
    });
    let judged = std::sync::atomic::AtomicU32::new(0);
    let barrier = std::sync::Barrier::new(50);
    std::thread::scope(|s| {
        for i in 0..50 {
            let (judged, barrier, r) = (&judged, &barrier, &r);
            s.spawn(move || {
                barrier.wait();
                if r.guess(Some("erin"), &format!("10.9.0.{i}"), false).is_ok() {
                    judged.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
            });
        }
    });
    assert_eq!(judged.into_inner(), 20);
}

#[test]
fn bans_survive_a_restart_and_operators_add_and_lift_them() {
    let r = rig();
    for _ in 0..3 {
        r.guess(Some("alice"), "10.0.0.1", false).unwrap();
    }
    r.reg
        .ban(Subject::Ip("10.0.0.66".into()), None, "operator", r.now())
        .unwrap();
    let again = Regulator::new(Regulation::default(), r.store.clone(), r.clock.clone()).unwrap();
    assert_eq!(again.bans_in_force(), 3);
    assert!(again.check(Some("alice"), "10.0.0.1", r.now()).is_err());
    assert!(again.check(None, "10.0.0.66", r.now()).is_err());
    assert!(again.revoke(&Subject::Ip("10.0.0.66".into())).unwrap());
    assert!(!again.revoke(&Subject::Ip("10.0.0.66".into())).unwrap());
    assert!(again.check(None, "10.0.0.66", r.now()).is_ok());
    // Counters survive too: two failures before the restart, one after, and the pair is banned.
    r.guess(Some("bob"), "10.0.0.7", false).unwrap();
    r.guess(Some("bob"), "10.0.0.7", false).unwrap();
    let third = Regulator::new(Regulation::default(), r.store.clone(), r.clock.clone()).unwrap();
    let a = third
        .attempt(Some("bob"), "10.0.0.7", r.now())
        .unwrap()
        .unwrap();
    third.failed(a).unwrap();
    assert!(third.check(Some("bob"), "10.0.0.7", r.now()).is_err());
}

#[test]
fn regulation_off_counts_nothing_but_operator_bans_still_hold() {
    let r = rig_with(Regulation::off());
    for _ in 0..20 {
        r.guess(Some("alice"), "10.0.0.1", false).unwrap();
    }
    r.reg
        .ban(Subject::Account("alice".into()), None, "operator", r.now())
        .unwrap();
    assert!(r.guess(Some("alice"), "10.0.0.2", true).is_err());
}

#[test]
fn subjects_never_collide_whatever_the_identifier_holds() {
    let pair = Subject::Pair {
        account: "a".into(),
        ip: "b".into(),
    };
    let keys = [
        Subject::Account("a@b".into()).key(),
        Subject::Account("pair:b a".into()).key(),
        pair.key(),
        Subject::Ip("b a".into()).key(),
    ];
    let unique: std::collections::HashSet<_> = keys.iter().collect();
    assert_eq!(unique.len(), keys.len(), "{keys:?}");
}

#[test]
fn addresses_are_counted_as_ipv4_or_as_their_ipv6_64_however_they_are_written() {
    let cases = [
        ("192.0.2.1", "192.0.2.1"),
        ("::ffff:192.0.2.1", "192.0.2.1"),
        (" 192.0.2.1 ", "192.0.2.1"),
        ("2001:db8:1:2::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff:eeee:dddd:cccc", "2001:db8:1:2::/64"),
        ("2001:DB8:1:2:0:0:0:1", "2001:db8:1:2::/64"),
        ("::1", "::/64"),
        ("not an address", "not an address"),
    ];
    for (typed, key) in cases {
        assert_eq!(address_key(typed), key, "{typed}");
    }
}

#[test]
fn an_ipv6_attacker_rotating_addresses_in_one_64_is_banned_as_one() {
    let r = rig();
    for i in 1..=3 {
        r.guess(Some(&format!("user{i}")), &format!("2001:db8::{i}"), false)
            .unwrap();
    }
    assert!(r.guess(None, "2001:db8::ffff", true).is_err());
    r.guess(None, "2001:db8:0:1::1", true).unwrap();
    assert!(r
        .reg
        .list()
        .unwrap()
        .iter()
        .any(|b| b.subject == "ip:2001:db8::/64"));
}

#[test]
fn sixteen_right_answers_at_once_from_one_address_never_ban_it() {
    let r = rig();
    // Sixteen sign-ins at once from one address (an office behind one NAT), none judged yet.
    let held: Vec<_> = (0..16)
        .map(|i| {
            r.reg
                .attempt(Some(&format!("user{}", i % 2)), "10.0.0.9", r.now())
                .unwrap()
        })
        .collect();
    let (admitted, waiting): (Vec<_>, Vec<_>) = held.into_iter().partition(Result::is_ok);
    assert_eq!(admitted.len(), 3, "at most max_retries judged at once");
    for w in &waiting {
        assert_eq!(
            w.as_ref().unwrap_err().retry_after,
            BUSY_RETRY_SECS,
            "asked to wait, not banned"
        );
    }
    for a in admitted {
        r.reg.passed(a.unwrap()).unwrap();
    }
    assert_eq!(r.reg.bans_in_force(), 0);
    // Their turn comes: every one of them is judged now, and the address stays unbanned.
    for i in 0..16 {
        assert!(r
            .guess(Some(&format!("user{}", i % 2)), "10.0.0.9", true)
            .is_ok());
    }
    assert_eq!(r.reg.bans_in_force(), 0);
    assert!(r.reg.check(None, "10.0.0.9", r.now()).is_ok());
}

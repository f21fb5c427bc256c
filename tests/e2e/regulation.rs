//! Regulation (`[regulation]`, issue 14 point 1) over real HTTP: bans answer `429` with
//! `Retry-After` on both faces and read the same for real and made-up accounts; guesses are
//! counted before they are judged (50 in parallel never pass the limit); bans and counts
//! survive a restart; an attacker spread over many addresses (X-Forwarded-For through the
//! trusted loopback proxy, and distinct 127.0.0.x sources) trips the account counter while
//! the owner still signs in; `portcullis bans` works through the running gateway and offline.

use crate::harness::*;
use reqwest::cookie::Jar;
use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::json;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// Where requests come from: an X-Forwarded-For the loopback proxy is trusted to set, or a
/// loopback source address.
#[derive(Clone)]
struct Source {
    port: u16,
    xff: Option<String>,
    local: Option<[u8; 4]>,
}

impl Source {
    /// A fresh browser (no cookies: each sign-in is a new execution) from this source.
    fn browser(&self) -> Browser {
        let jar = Arc::new(Jar::default());
        let to: SocketAddr = ([127, 0, 0, 1], self.port).into();
        let mut headers = HeaderMap::new();
        if let Some(x) = &self.xff {
            headers.insert("x-forwarded-for", HeaderValue::from_str(x).unwrap());
        }
        let mut builder = reqwest::Client::builder()
            .cookie_provider(jar.clone())
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .resolve(APP, to)
            .default_headers(headers);
        if let Some(l) = self.local {
            builder = builder.local_address(IpAddr::from(l));
        }
        Browser {
            http: builder.build().unwrap(),
            jar,
            port: self.port,
        }
    }
}

fn browser_from(gw: &Gateway, xff: Option<&str>, local: Option<[u8; 4]>) -> Source {
    Source {
        port: gw.port,
        xff: xff.map(str::to_string),
        local,
    }
}

/// One JSON sign-in attempt in a fresh execution: the answer to the password, or the first
/// answer that was not a 200 (a banned address is refused at the identification already).
async fn api_guess(from: &Source, uid: &str, password: &str) -> Resp {
    let b = &from.browser();
    let url = b.url(&api_path());
    let r = b.get_json(&url).await;
    assert_eq!(r.status, 200, "{}", r.describe());
    let r = b.post_json(&url, &json!({ "uid": uid })).await;
    if r.status != 200 {
        return r;
    }
    b.post_json(&url, &json!({ "password": password })).await
}

/// The same through the HTML pages.
async fn html_guess(from: &Source, uid: &str, password: &str) -> Resp {
    let b = &from.browser();
    let first = b.get_html(&flow_path()).await;
    let page = form_page(&first);
    let r = submit(b, &page, &[("uid", uid)]).await;
    if r.status != 303 {
        return r;
    }
    let page = next_page(b, &r).await;
    submit(b, &page, &[("password", password)]).await
}

fn retry_after(r: &Resp) -> u64 {
    r.header("retry-after")
        .unwrap_or_else(|| panic!("no Retry-After: {}", r.describe()))
        .parse()
        .unwrap_or_else(|_| panic!("Retry-After not seconds: {}", r.describe()))
}

fn regulated(toml: &str) -> Setup {
    Setup {
        extra_toml: format!("\n[regulation]\n{toml}\n"),
        ..Setup::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn banned_guessers_get_429_with_retry_after_on_both_faces_whether_or_not_the_account_exists()
{
    let gw = Gateway::start().await;
    let mut bodies = Vec::new();
    for (face, uid, from) in [
        ("json", "alice", "198.51.100.1"),
        ("json", "nobody-here", "198.51.100.2"),
        // Other accounts: alice's account-wide count is past its limit by now, and would slow
        // every new address that fails on her.
        ("html", "bob", "198.51.100.3"),
        ("html", "nobody-else", "198.51.100.4"),
    ] {
        let b = browser_from(&gw, Some(from), None);
        let guess = || async {
            match face {
                "json" => api_guess(&b, uid, WRONG_PW).await,
                _ => html_guess(&b, uid, WRONG_PW).await,
            }
        };
        for i in 0..3 {
            let r = guess().await;
            assert_eq!(r.status, 200, "{face} {uid} guess {i}: {}", r.describe());
            assert!(r.body.contains(INVALID_MSG), "{}", r.body);
        }
        let r = guess().await;
        assert_eq!(r.status, 429, "{face} {uid}: {}", r.describe());
        let wait = retry_after(&r);
        assert!((295..=300).contains(&wait), "{face} {uid}: {wait}");
        assert!(r.body.contains("Too many failed attempts"), "{}", r.body);
        if face == "json" {
            assert_eq!(r.json()["error"], "too_many_attempts", "{}", r.body);
        }
        // Even the right password waits the ban out.
        let r = match face {
            "json" => api_guess(&b, uid, ALICE_PW).await,
            _ => html_guess(&b, uid, BOB_PW).await,
        };
        assert_eq!(r.status, 429, "{face} {uid}: {}", r.describe());
        let body = match face {
            "json" => {
                let mut v = r.json();
                v.as_object_mut().unwrap().remove("retry_after");
                v.to_string()
            }
            _ => r.body.clone(),
        };
        bodies.push((face, body));
    }
    // A real and a made-up account read the same.
    assert_eq!(bodies[0].1, bodies[1].1);
    assert_eq!(bodies[2].1, bodies[3].1);
}

#[tokio::test(flavor = "multi_thread")]
async fn fifty_parallel_wrong_guesses_from_one_address_get_three_judged() {
    let gw = Gateway::start().await;
    // Fifty sign-ins at the password step, then every password at once.
    let mut at_password = Vec::new();
    for _ in 0..50 {
        let b = browser_from(&gw, Some("198.51.100.50"), None).browser();
        let url = b.url(&api_path());
        b.get_json(&url).await;
        let r = b.post_json(&url, &json!({ "uid": "alice" })).await;
        assert_eq!(r.status, 200, "{}", r.describe());
        at_password.push(b);
    }
    let barrier = Arc::new(tokio::sync::Barrier::new(at_password.len()));
    let mut tasks = Vec::new();
    for b in at_password {
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            let url = b.url(&api_path());
            barrier.wait().await;
            b.post_json(&url, &json!({ "password": WRONG_PW }))
                .await
                .status
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    let judged = statuses.iter().filter(|s| **s == 200).count();
    let refused = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!((judged, refused), (3, 47), "{statuses:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn bans_and_failure_counts_survive_a_restart() {
    let mut gw = Gateway::start().await;
    let banned = browser_from(&gw, Some("198.51.100.10"), None);
    for _ in 0..3 {
        assert_eq!(api_guess(&banned, "bob", WRONG_PW).await.status, 200);
    }
    let counted = browser_from(&gw, Some("198.51.100.11"), None);
    for _ in 0..2 {
        assert_eq!(api_guess(&counted, "alice", WRONG_PW).await.status, 200);
    }
    gw.restart().await;
    let r = api_guess(&banned, "bob", BOB_PW).await;
    assert_eq!(
        r.status,
        429,
        "the ban outlived the restart: {}",
        r.describe()
    );
    assert!(retry_after(&r) <= 300);
    // Two failures before the restart, one after: the third is judged, the fourth is not.
    assert_eq!(api_guess(&counted, "alice", WRONG_PW).await.status, 200);
    let r = api_guess(&counted, "alice", ALICE_PW).await;
    assert_eq!(r.status, 429, "{}", r.describe());
}

#[tokio::test(flavor = "multi_thread")]
async fn guesses_spread_over_addresses_trip_the_account_counter_but_the_owner_signs_in() {
    let gw = Gateway::start().await;
    // Through the trusted proxy (X-Forwarded-For) and from distinct loopback sources: one
    // wrong password each, so no address and no (account, address) is past its own limit.
    let mut attackers: Vec<Source> = (1..=4)
        .map(|i| browser_from(&gw, Some(&format!("203.0.113.{i}")), None))
        .collect();
    attackers.extend((5..=8).map(|i| browser_from(&gw, None, Some([127, 0, 0, i]))));
    for b in &attackers {
        let r = api_guess(b, "alice", WRONG_PW).await;
        assert_eq!(r.status, 200, "{}", r.describe());
    }
    // Past the account's limit, each address that failed waits a delay that doubles with
    // every failure (2, 4, 8, 16, 32 s for the 4th to 8th); the longer ones are still running.
    let mut waits = Vec::new();
    for b in &attackers[5..] {
        let r = api_guess(b, "alice", WRONG_PW).await;
        assert_eq!(r.status, 429, "{}", r.describe());
        waits.push(retry_after(&r));
    }
    assert!(
        waits[0] <= 8 && waits[1] <= 16 && (17..=32).contains(&waits[2]),
        "{waits:?}"
    );
    // Alice, from her own address, signs in meanwhile.
    for alice in [
        browser_from(&gw, Some("192.0.2.44"), None),
        browser_from(&gw, None, Some([127, 0, 0, 44])),
    ] {
        let s = api_sign_in(&alice.browser(), "alice", ALICE_PW).await;
        assert!(!s.token.is_empty());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bans_cli_adds_lists_and_revokes_through_the_gateway_and_offline() {
    let mut gw = Gateway::start_with(regulated("max_retries = 5")).await;
    let from = browser_from(&gw, Some("198.51.100.99"), None);
    let out = gw
        .cli(&["bans", "add", "--ip", "198.51.100.99"], None)
        .await;
    assert!(out.ok(), "{}", out.all());
    assert!(out.stdout.contains("via running gateway"), "{}", out.all());
    let r = api_guess(&from, "alice", ALICE_PW).await;
    assert_eq!(
        r.status,
        429,
        "an operator's ban holds at once: {}",
        r.describe()
    );
    let out = gw.cli(&["bans", "list"], None).await;
    assert!(out.stdout.contains("ip:198.51.100.99"), "{}", out.all());
    assert!(out.stdout.contains("operator"), "{}", out.all());
    let out = gw
        .cli(&["bans", "revoke", "--ip", "198.51.100.99"], None)
        .await;
    assert!(out.ok(), "{}", out.all());
    api_sign_in(&from.browser(), "alice", ALICE_PW).await;
    let out = gw
        .cli(&["bans", "revoke", "--ip", "198.51.100.99"], None)
        .await;
    assert!(!out.ok(), "nothing to revoke: {}", out.all());
    for bad in [
        vec!["bans", "add"],
        vec!["bans", "add", "--ip", "not-an-address"],
        vec!["bans", "add", "--user", "alice", "--for", "soon"],
    ] {
        let out = gw.cli(&bad, None).await;
        assert!(!out.ok(), "{bad:?}: {}", out.all());
    }

    // Offline: straight on the database; the next start loads it.
    gw.stop().await;
    let out = gw
        .cli(&["bans", "add", "--user", "Alice", "--for", "1h"], None)
        .await;
    assert!(out.ok(), "{}", out.all());
    assert!(out.stdout.contains("gateway not running"), "{}", out.all());
    gw.start_again().await;
    let anywhere = browser_from(&gw, Some("192.0.2.200"), None);
    let r = api_guess(&anywhere, "alice", ALICE_PW).await;
    assert_eq!(r.status, 429, "{}", r.describe());
    let wait = retry_after(&r);
    assert!((3_500..=3_600).contains(&wait), "{wait}");
    let out = gw.cli(&["bans", "list"], None).await;
    assert!(out.stdout.contains("user:alice"), "{}", out.all());
    gw.stop().await;
    let out = gw.cli(&["bans", "revoke", "--user", "alice"], None).await;
    assert!(out.ok(), "{}", out.all());
    gw.start_again().await;
    api_sign_in(&anywhere.browser(), "alice", ALICE_PW).await;
    let logs = gw.logs();
    assert!(
        logs.contains("sign-in attempts banned") && logs.contains("sign-in ban lifted"),
        "logged:\n{logs}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn regulation_can_be_turned_off() {
    let gw = Gateway::start_with(regulated("max_retries = 0")).await;
    let b = browser_from(&gw, Some("198.51.100.77"), None);
    for _ in 0..6 {
        assert_eq!(api_guess(&b, "alice", WRONG_PW).await.status, 200);
    }
    api_sign_in(&b.browser(), "alice", ALICE_PW).await;
}

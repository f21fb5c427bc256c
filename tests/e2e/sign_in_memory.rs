//! Memory under sign-in load: storms of successful sign-ins (16 in flight), repeated, keep the
//! gateway's resident memory bounded. argon2's working memory (19 MiB a hash) is allocated once
//! per hashing thread; before, allocating and freeing it per hash on several threads grew the
//! resident set by up to ~1 MB per sign-in.
//!
//! CI runs 3 storms of 1,200; `PORTCULLIS_STORM=full` runs 5 storms of 3,600:
//! `PORTCULLIS_STORM=full cargo test --test e2e sign_in_storms -- --nocapture`.

use crate::harness::*;
use crate::slow_clients::rss_kib;
use reqwest::header::{ACCEPT, CONTENT_TYPE, COOKIE, SET_COOKIE};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Sign-ins in flight at once.
const IN_FLIGHT: usize = 16;
/// Most the resident set may grow over all storms, in KiB, besides the hashing threads' own
/// memory.
const BOUND_KIB: u64 = 50 * 1024;
/// Hashing threads of the test's gateway.
const HASHERS: u64 = 4;
/// argon2's memory per hash (the default cost), in KiB.
const HASH_KIB: u64 = 19 * 1024;

/// One sign-in through the JSON flow API, cookies kept by hand; whether it ended with a session.
async fn sign_in(http: &reqwest::Client, url: &str) -> Result<(), String> {
    let mut jar: BTreeMap<String, String> = BTreeMap::new();
    let step = |r: reqwest::Response, jar: &mut BTreeMap<String, String>| {
        for v in r.headers().get_all(SET_COOKIE) {
            let pair = v
                .to_str()
                .unwrap_or_default()
                .split(';')
                .next()
                .unwrap_or_default();
            if let Some((k, v)) = pair.split_once('=') {
                jar.insert(k.trim().into(), v.trim().into());
            }
        }
        r
    };
    let cookie = |jar: &BTreeMap<String, String>| {
        jar.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    };
    let r = http
        .get(url)
        .header(ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let v: Value = step(r, &mut jar).json().await.map_err(|e| e.to_string())?;
    if v["component"] != "identification" {
        return Err(format!("start: {v}"));
    }
    for (answer, next) in [
        (json!({ "uid": "alice" }), "password"),
        (json!({ "password": ALICE_PW }), "redirect"),
    ] {
        // Sixteen right passwords at once from one address: regulation judges at most
        // `max_retries` at a time and asks the rest to wait a second (429, no ban), as a
        // client behind one NAT would be asked.
        let mut tries = 0;
        let v: Value = loop {
            let r = http
                .post(url)
                .header(ACCEPT, "application/json")
                .header(CONTENT_TYPE, "application/json")
                .header(COOKIE, cookie(&jar))
                .body(answer.to_string())
                .send()
                .await
                .map_err(|e| e.to_string())?;
            let busy = r.status() == reqwest::StatusCode::TOO_MANY_REQUESTS
                && r.headers().get("retry-after").is_some_and(|v| v == "1");
            let v: Value = step(r, &mut jar).json().await.map_err(|e| e.to_string())?;
            tries += 1;
            if !busy || tries > 600 {
                break v;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        };
        if v["component"] != next {
            return Err(format!("expected {next}: {v}"));
        }
    }
    if jar.get(SESSION_COOKIE).is_none_or(|v| v.is_empty()) {
        return Err("no session cookie".into());
    }
    Ok(())
}

/// `n` sign-ins, [`IN_FLIGHT`] at a time; panics at the first that fails.
async fn storm(http: &reqwest::Client, url: &str, n: usize) {
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let workers: Vec<_> = (0..IN_FLIGHT)
        .map(|_| {
            let (http, url, next) = (http.clone(), url.to_string(), next.clone());
            tokio::spawn(async move {
                while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < n {
                    if let Err(e) = sign_in(&http, &url).await {
                        panic!("sign-in failed: {e}");
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sign_in_storms_keep_resident_memory_bounded() {
    let (storms, size) = match std::env::var("PORTCULLIS_STORM").as_deref() {
        Ok("full") => (5, 3600),
        _ => (3, 1200),
    };
    // Several hashing threads, as on a machine with more cores.
    let gw = Gateway::start_with(Setup {
        extra_toml: format!("\n[passwords]\nmax_concurrent_hashes = {HASHERS}\n"),
        ..Setup::default()
    })
    .await;
    let pid = gw.pid().unwrap();
    let addr = SocketAddr::from(([127, 0, 0, 1], gw.port));
    let http = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(60))
        .resolve(APP, addr)
        .build()
        .unwrap();
    let url = format!("http://{APP}:{}{}", gw.port, api_path());
    let baseline = rss_kib(pid);
    // Every hashing thread hashes once: each holds its memory from then on, by design.
    storm(&http, &url, 4 * IN_FLIGHT).await;
    let mut seen = vec![baseline, rss_kib(pid)];
    eprintln!(
        "after warm-up: RSS {} KiB (baseline {baseline} KiB)",
        seen[1]
    );
    for round in 1..=storms {
        let began = Instant::now();
        storm(&http, &url, size).await;
        let rss = rss_kib(pid);
        eprintln!(
            "storm {round}/{storms}: {size} sign-ins in {:.1} s, RSS {} KiB (baseline {baseline} KiB)",
            began.elapsed().as_secs_f64(),
            rss
        );
        seen.push(rss);
    }
    let most = seen.iter().copied().max().unwrap_or(baseline);
    assert!(
        most.saturating_sub(baseline) < BOUND_KIB + HASHERS * HASH_KIB,
        "resident memory grew from {baseline} KiB to {most} KiB over {storms} storms of {size} sign-ins \
         ({HASHERS} hashing threads of {HASH_KIB} KiB each are expected): {seen:?}"
    );
}

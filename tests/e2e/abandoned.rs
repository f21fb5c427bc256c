//! Unfinished sign-ins cannot fill the disk: a page load stores nothing (the fresh sign-in rides
//! in the flow cookie, signed), `rd` is capped at 2 KB with a clear 400, and one client address
//! keeps at most `[session] max_flows_per_client` (default 200) sign-ins stored, told with a
//! 429 when over while other addresses sign in as usual.

use crate::harness::*;
use reqwest::cookie::Jar;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Bytes under `dir`, recursively.
fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let Ok(meta) = entry.metadata() else { continue };
        if meta.is_dir() {
            total += dir_size(&entry.path());
        } else {
            total += meta.len();
        }
    }
    total
}

/// A browser whose requests come from `from` (any 127.0.0.0/8 address is loopback).
fn browser_at(port: u16, from: Ipv4Addr) -> Browser {
    let jar = Arc::new(Jar::default());
    let gw: SocketAddr = ([127, 0, 0, 1], port).into();
    let http = reqwest::Client::builder()
        .cookie_provider(jar.clone())
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .local_address(IpAddr::V4(from))
        .timeout(Duration::from_secs(30))
        .resolve(APP, gw)
        .build()
        .expect("client");
    Browser { http, jar, port }
}

/// A return address of about `len` bytes on the app.
fn long_rd(gw: &Gateway, len: usize) -> String {
    let base = gw.url("/wiki/page?q=");
    format!("{base}{}", "a".repeat(len.saturating_sub(base.len())))
}

#[tokio::test(flavor = "multi_thread")]
async fn ten_thousand_abandoned_sign_ins_from_one_address_leave_the_database_small() {
    let gw = Gateway::start().await;
    let before = dir_size(&gw.db_path);
    let rd = long_rd(&gw, 2000);
    let page = flow_path_rd(Some(&rd));

    // 10,000 page loads, each a new visitor (no cookie kept), 16 at a time.
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .resolve(APP, ([127, 0, 0, 1], gw.port).into())
        .build()
        .expect("client");
    let url = gw.url(&page);
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..16 {
        let (client, url) = (client.clone(), url.clone());
        tasks.spawn(async move {
            for i in (worker..10_000).step_by(16) {
                let r = client
                    .get(&url)
                    .header("accept", ACCEPT_HTML)
                    .send()
                    .await
                    .expect("GET");
                assert_eq!(r.status(), 200, "load {i}");
                let held = r
                    .headers()
                    .get_all("set-cookie")
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .any(|v| v.starts_with(&format!("{FLOW_COOKIE}=h.")));
                assert!(held, "load {i}: the flow cookie holds the sign-in");
                let _ = r.bytes().await;
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("worker");
    }

    // Then visitors who type a name and walk away: stored, up to the address's cap (200 by
    // default); the rest are told 429 with Retry-After and a message that says why.
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..8 {
        let (port, page) = (gw.port, page.clone());
        tasks.spawn(async move {
            let mut answers = Vec::new();
            for _ in (worker..210).step_by(8) {
                let b = Browser::new(port);
                let first = form_page(&b.get_html(&page).await);
                answers.push(submit(&b, &first, &[("uid", "alice")]).await);
            }
            answers
        });
    }
    let mut answers = Vec::new();
    while let Some(done) = tasks.join_next().await {
        answers.extend(done.expect("worker"));
    }
    let stored = answers.iter().filter(|r| r.status == 303).count();
    let refused: Vec<_> = answers.iter().filter(|r| r.status == 429).collect();
    assert_eq!(
        (stored, refused.len()),
        (200, 10),
        "{:?}",
        answers.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    for r in refused {
        let retry: i64 = r
            .header("retry-after")
            .and_then(|v| v.parse().ok())
            .expect("Retry-After");
        assert!((1..=1800).contains(&retry), "{retry}");
        assert!(
            r.body
                .contains("Too many sign-ins are under way from your network address"),
            "{}",
            r.body
        );
    }
    // The JSON face says the same, with a code.
    let b = gw.browser();
    api_start(&b, APP, None).await;
    let r = b
        .post_json(&gw.url(&api_path()), &serde_json::json!({"uid": "alice"}))
        .await;
    assert_eq!(r.status, 429, "{}", r.describe());
    assert_eq!(r.json()["error"], "too_many_sign_ins");
    assert!(r.header("retry-after").is_some());

    // Another address signs in as usual.
    let other = browser_at(gw.port, Ipv4Addr::new(127, 0, 0, 2));
    let first = form_page(&other.get_html(&flow_path_rd(Some(&gw.url("/x")))).await);
    let r = submit(&other, &first, &[("uid", "alice")]).await;
    let pw = next_page(&other, &r).await;
    let r = submit(&other, &pw, &[("password", &alice().password)]).await;
    assert_eq!(r.status, 303, "{}", r.describe());
    assert_eq!(r.location_absolute(), gw.url("/x"));
    assert!(r.set_cookie_value(SESSION_COOKIE).is_some());

    let after = dir_size(&gw.db_path);
    let grown = after.saturating_sub(before);
    eprintln!("database: {before} -> {after} bytes (+{grown})");
    assert!(
        grown < 6 * 1024 * 1024,
        "10,000 abandoned sign-ins grew the database by {grown} bytes"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_held_sign_in_keeps_its_csrf_and_return_address_and_forged_cookies_are_refused() {
    let gw = Gateway::start().await;
    let b = gw.browser();
    let rd = gw.url("/docs/a?b=c&d=%C3%A9");
    let first = form_page(&b.get_html(&flow_path_rd(Some(&rd))).await);
    let held = b
        .cookie(&gw.url(&flow_path()), FLOW_COOKIE)
        .expect("cookie");
    assert!(held.starts_with("h."), "{held}");
    // A reload keeps the same sign-in and token.
    let again = form_page(&b.get_html(&flow_path()).await);
    assert_eq!(again.csrf, first.csrf);
    // A wrong token is still refused.
    let r = submit(
        &b,
        &FormPage {
            csrf: "x".repeat(32),
            ..again
        },
        &[("uid", "alice")],
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.describe());
    // A forged held cookie (another return address) is no sign-in at all.
    let forger = gw.browser();
    let tampered = held.replacen('a', "b", 1);
    forger.add_cookie(&gw.url("/"), &format!("{FLOW_COOKIE}={tampered}; Path=/"));
    let r = forger
        .post_json(&gw.url(&api_path()), &serde_json::json!({"uid": "alice"}))
        .await;
    assert_eq!(r.status, 410, "{}", r.describe());
    assert_eq!(r.json()["error"], "execution_expired");
    // The real one goes through and returns where it was asked to.
    let r = submit(&b, &first, &[("uid", "alice")]).await;
    let stored = b
        .cookie(&gw.url(&flow_path()), FLOW_COOKIE)
        .expect("cookie");
    assert!(!stored.starts_with("h."), "stored now: {stored}");
    let pw = next_page(&b, &r).await;
    let r = submit(&b, &pw, &[("password", &alice().password)]).await;
    assert_eq!(r.status, 303, "{}", r.describe());
    assert_eq!(r.location_absolute(), rd);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_return_address_over_two_kilobytes_is_a_clear_400_on_both_faces() {
    let gw = Gateway::start().await;
    let b = gw.browser();
    let ok = long_rd(&gw, 2048);
    assert_eq!(ok.len(), 2048);
    form_page(&b.get_html(&flow_path_rd(Some(&ok))).await);
    for len in [2049, 4096, 8000] {
        let rd = long_rd(&gw, len);
        let r = b.get_html(&flow_path_rd(Some(&rd))).await;
        assert_eq!(r.status, 400, "{len}: {}", r.describe());
        assert!(r.body.contains("at most 2048 bytes"), "{len}: {}", r.body);
        assert!(r.set_cookie_value(FLOW_COOKIE).is_none());
        let r = b.get_json(&gw.url(&api_path_rd(Some(&rd)))).await;
        assert_eq!(r.status, 400, "{len}: {}", r.describe());
        assert_eq!(r.json()["error"], "rd_too_long");
    }
    // An app page whose address is too long to return to sends the browser to sign in
    // towards the app's root instead of into that 400.
    let long_path = format!("/wiki/{}", "b".repeat(3000));
    let r = b.get_html(&gw.url(&long_path)).await;
    assert_eq!(r.status, 302, "{}", r.describe());
    let login = r.location_absolute();
    assert!(
        login.ends_with(&format!("?rd={}", pct(&gw.url("/")))),
        "{login}"
    );
    form_page(&b.get_html(&login).await);
}

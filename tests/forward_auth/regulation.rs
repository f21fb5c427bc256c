//! Regulation (issue 14 point 1) at the forward-auth portal: the auth host's sign-in answers a
//! banned guesser `429` with `Retry-After`, reached directly and through nginx's shipped
//! example (which forwards the client's address as a trusted proxy).

use crate::harness::{Upstream, WRONG_PW};

use crate::support::*;
use serde_json::json;
use std::net::SocketAddr;

/// One JSON sign-in attempt for `uid` in a fresh execution, from `xff` when given (the
/// gateway trusts its loopback peer to say so): the password's answer.
async fn guess(
    to: SocketAddr,
    xff: Option<&str>,
    uid: &str,
    password: &str,
) -> crate::harness::Resp {
    let c = Client::new(to);
    let url = c.url(AUTH, &format!("/.portcullis/api/flow/{FLOW}"));
    let post = |body: serde_json::Value| {
        let mut rb = c
            .http
            .post(&url)
            .header("accept", "application/json")
            .json(&body);
        if let Some(x) = xff {
            rb = rb.header("x-forwarded-for", x);
        }
        rb
    };
    let r = c
        .get(
            &url,
            "application/json",
            &xff.map(|x| vec![("x-forwarded-for", x)])
                .unwrap_or_default(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.describe());
    let r = crate::harness::Resp::read(post(json!({ "uid": uid })).send().await.unwrap()).await;
    if r.status != 200 {
        return r;
    }
    crate::harness::Resp::read(post(json!({ "password": password })).send().await.unwrap()).await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_auth_portal_answers_banned_guessers_429_with_retry_after_directly_and_through_nginx() {
    let upstream = Upstream::start().await;
    let gw = Gateway::start(Opts::default()).await;
    let nginx = start_example(Kind::Nginx, &upstream.addr.to_string(), &gw).await;
    let via_nginx: SocketAddr = ([127, 0, 0, 1], nginx.port).into();
    // Directly from a forwarded address for alice; through nginx (the client is 127.0.0.1)
    // for bob: apart, so one round's counts do not reach the other.
    for (how, to, xff, uid, right) in [
        ("direct", gw.addr(), Some("198.51.100.8"), "alice", ALICE_PW),
        ("nginx", via_nginx, None, "bob", BOB_PW),
    ] {
        for i in 0..3 {
            let r = guess(to, xff, uid, WRONG_PW).await;
            assert_eq!(r.status, 200, "{how} guess {i}: {}", r.describe());
        }
        let r = guess(to, xff, uid, right).await;
        assert_eq!(r.status, 429, "{how}: {}", r.describe());
        let wait: u64 = r.header("retry-after").unwrap().parse().unwrap();
        assert!((1..=300).contains(&wait), "{how}: {wait}");
        assert_eq!(r.json()["error"], "too_many_attempts", "{how}: {}", r.body);
    }
}

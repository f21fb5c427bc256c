//! Duo rate-limiting, down, or refusing the gateway's signature: the user is told, can try
//! again, and nothing is stored or passed. And the stand-in itself refuses a bad signature.

use crate::harness::*;
use crate::stand_in::{self, DuoStandIn, Push, IKEY, SKEY};
use crate::support::*;
use base64::Engine as _;
use serde_json::json;
use std::collections::BTreeMap;

#[tokio::test]
async fn a_rate_limited_push_is_shown_and_can_be_retried() {
    let duo = DuoStandIn::start().await;
    let gw = gateway(&duo).await;
    enrol_json(&gw, &duo, "alice", ALICE_PW).await;
    duo.set_push(Push::Allow);
    let b = gw.browser();
    past_password(&b, SIGNIN, "alice", ALICE_PW).await;
    duo.rate_limit(1);
    let v = post(&b, SIGNIN, json!({ "action": "duo_push" })).await;
    assert_eq!(strings(&v, "errors"), [UNAVAILABLE]);
    assert_eq!(
        action_names(&v)[0],
        "duo_push",
        "the same step, to retry: {v}"
    );
    let v = post(&b, SIGNIN, json!({ "action": "duo_push" })).await;
    assert!(strings(&v, "errors").is_empty(), "{v}");
    // A 429 on the status check keeps the push: continuing again works.
    duo.rate_limit(1);
    let v = post(&b, SIGNIN, json!({ "action": "duo_check" })).await;
    assert_eq!(strings(&v, "errors"), [UNAVAILABLE]);
    assert_eq!(action_names(&v)[0], "duo_check", "{v}");
    let r = post_resp(&b, SIGNIN, json!({ "action": "duo_check" })).await;
    assert_signed_in(&r);
    assert!(
        gw.logs().contains("Duo unavailable"),
        "the operator sees why"
    );
}

#[tokio::test]
async fn a_rate_limited_enrolment_offers_try_again_on_the_page() {
    let duo = DuoStandIn::start().await;
    let gw = gateway(&duo).await;
    duo.rate_limit(1);
    let b = gw.browser();
    let page = html_past_password(&b, SETUP, "alice", ALICE_PW).await;
    assert_eq!(page_errors(&page.html), [UNAVAILABLE]);
    assert!(has_button(&page.html, "duo_retry"), "{}", page.html);
    let r = submit(&b, &page, &[("action", "duo_retry")]).await;
    let page = html_after(&b, &r).await;
    assert!(
        page.html.contains("<svg"),
        "the QR code after retrying:\n{}",
        page.html
    );
}

#[tokio::test]
async fn duo_down_is_told_to_the_user() {
    let duo = DuoStandIn::start().await;
    let host = duo.host();
    drop(duo);
    // Nothing listens there any more.
    let gw = Gateway::start_with(Setup {
        extra_toml: toml(&host, SKEY),
        ..Setup::default()
    })
    .await;
    let b = gw.browser();
    let v = past_password(&b, SETUP, "alice", ALICE_PW).await;
    assert_eq!(v["component"], "authenticator_duo", "{v}");
    assert_eq!(strings(&v, "errors"), [UNAVAILABLE]);
    assert_eq!(action_names(&v)[0], "duo_retry", "{v}");
}

#[tokio::test]
async fn requests_signed_with_the_wrong_key_are_refused_by_duo_and_the_user_is_told() {
    let duo = DuoStandIn::start().await;
    let gw = gateway_signing_with(&duo, "not-the-secret-key-0000000000000000000000").await;
    let b = gw.browser();
    let v = past_password(&b, SETUP, "alice", ALICE_PW).await;
    assert_eq!(strings(&v, "errors"), [MISCONFIGURED], "{v}");
    let seen = duo.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(!seen[0].verified, "the stand-in refused the signature");
    let logs = gw.logs();
    assert!(
        logs.contains("40103"),
        "the operator sees Duo's code:\n{logs}"
    );
    assert!(
        !logs.contains("not-the-secret-key"),
        "the key is never logged"
    );
}

/// The stand-in's own check: a request signed as documented passes, and each way of getting
/// it wrong is refused with Duo's 401.
#[tokio::test]
async fn the_stand_in_refuses_every_request_not_signed_as_documented() {
    let duo = DuoStandIn::start().await;
    duo.add_known_user("bob");
    let http = reqwest::Client::new();
    let date = "Tue, 21 Aug 2012 17:29:18 -0000";
    let host = duo.host();
    let params = BTreeMap::from([("username".to_string(), "bob".to_string())]);
    let good = stand_in::sign(
        SKEY,
        &stand_in::canonical(date, "POST", &host, "/auth/v2/preauth", &params),
    );
    let wrong_key = stand_in::sign(
        "another-key",
        &stand_in::canonical(date, "POST", &host, "/auth/v2/preauth", &params),
    );
    let other_path = stand_in::sign(
        SKEY,
        &stand_in::canonical(date, "POST", &host, "/auth/v2/enroll", &params),
    );
    // (ikey, signature, body, date header)
    let cases = [
        (IKEY, good.as_str(), "username=bob", Some(date), 200),
        (IKEY, wrong_key.as_str(), "username=bob", Some(date), 401),
        (IKEY, other_path.as_str(), "username=bob", Some(date), 401),
        (IKEY, good.as_str(), "username=alice", Some(date), 401),
        (IKEY, good.as_str(), "username=bob&extra=1", Some(date), 401),
        (
            "DIOTHERINTEGRATION00",
            good.as_str(),
            "username=bob",
            Some(date),
            401,
        ),
        (
            IKEY,
            good.as_str(),
            "username=bob",
            Some("Wed, 22 Aug 2012 17:29:18 -0000"),
            401,
        ),
        (IKEY, good.as_str(), "username=bob", None, 401),
    ];
    for (ikey, sig, body, date, want) in cases {
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{ikey}:{sig}"));
        let mut rb = http
            .post(format!("http://{host}/auth/v2/preauth"))
            .header("authorization", format!("Basic {auth}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.to_string());
        if let Some(d) = date {
            rb = rb.header("x-duo-date", d);
        }
        let r = rb.send().await.unwrap();
        let status = r.status().as_u16();
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(status, want, "{ikey} {body} {date:?}: {v}");
        if want == 401 {
            assert_eq!(v["stat"], "FAIL");
            assert_eq!(v["code"], 40103);
        } else {
            assert_eq!(v["response"]["result"], "auth", "{v}");
        }
    }
}

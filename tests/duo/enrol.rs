//! Enrolment: the activation code shown as a QR code drawn by the gateway, `enroll_status`
//! checked on demand, the device stored only once Duo says it is activated; an account Duo
//! already knows linked after an approved push.

use crate::harness::*;
use crate::stand_in::{DuoStandIn, Push};
use crate::support::*;
use serde_json::json;

#[tokio::test]
async fn json_enrolment_shows_the_activation_code_and_stores_the_device_once_activated() {
    let duo = DuoStandIn::start().await;
    let gw = gateway(&duo).await;
    let b = gw.browser();
    let v = past_password(&b, SETUP, "alice", ALICE_PW).await;
    assert_eq!(v["component"], "authenticator_duo", "{v}");
    assert_eq!(v["qr"], duo.activation_code("alice"), "{v}");
    assert!(
        v["link"]["href"]
            .as_str()
            .is_some_and(|h| h.starts_with("https://m-example.duosecurity.com/activate/")),
        "{v}"
    );
    assert_eq!(action_names(&v), ["duo_activated", "start_over"], "{v}");
    // Checked before the phone is activated: nothing stored, the same code shown again.
    let v = post(&b, SETUP, json!({ "action": "duo_activated" })).await;
    assert_eq!(
        strings(&v, "errors"),
        ["Duo Mobile is not activated yet: scan the code, then check again."]
    );
    assert_eq!(v["qr"], duo.activation_code("alice"));
    duo.activate("alice");
    let r = post_resp(&b, SETUP, json!({ "action": "duo_activated" })).await;
    assert_signed_in(&r);
    // The device was stored with Duo's user id: the next sign-in pushes to that user.
    let b = gw.browser();
    let v = past_password(&b, SIGNIN, "alice", ALICE_PW).await;
    assert_eq!(v["component"], "authenticator_validate", "{v}");
    post(&b, SIGNIN, json!({ "action": "duo_push" })).await;
    let auth = duo.calls("/auth/v2/auth");
    assert_eq!(auth.len(), 1);
    let user_id = duo.calls("/auth/v2/enroll")[0].params["username"].clone();
    assert_eq!(user_id, "alice");
    assert!(
        auth[0].params["user_id"].starts_with("DUJZ2U4L80HT45MQ4EO"),
        "{auth:?}"
    );
    assert_eq!(auth[0].params["async"], "1");
    assert_eq!(auth[0].params["factor"], "push");
    assert!(
        duo.seen().iter().all(|s| s.verified),
        "every request was signed right"
    );
    assert!(
        !gw.logs().contains(&duo.activation_code("alice")),
        "the activation code is never logged"
    );
}

#[tokio::test]
async fn html_enrolment_draws_the_qr_code_itself_and_loads_nothing_from_duo() {
    let duo = DuoStandIn::start().await;
    let gw = gateway(&duo).await;
    let b = gw.browser();
    let page = html_past_password(&b, SETUP, "alice", ALICE_PW).await;
    let qr = regex::Regex::new(r#"(?s)<div class="qr"><svg[^>]*>.*?</svg></div>"#).unwrap();
    assert!(
        qr.is_match(&page.html),
        "an inline SVG QR code:\n{}",
        page.html
    );
    assert!(!page.html.contains("<img src=\"http"), "no external image");
    assert!(
        !page.html.contains("frame/qr"),
        "Duo's barcode image is not used"
    );
    assert!(!page.html.contains("<script"), "no script");
    // Attribute values are HTML-escaped (`/` as `&#x2f;`), which browsers decode.
    let unescaped = page.html.replace("&#x2f;", "/");
    assert!(
        unescaped.contains("href=\"https://m-example.duosecurity.com/activate/"),
        "{}",
        page.html
    );
    assert!(has_button(&page.html, "duo_activated"), "{}", page.html);
    let r = submit(&b, &page, &[("action", "duo_activated")]).await;
    let page = html_after(&b, &r).await;
    assert_eq!(
        page_errors(&page.html),
        ["Duo Mobile is not activated yet: scan the code, then check again."]
    );
    duo.activate("alice");
    let r = submit(&b, &page, &[("action", "duo_activated")]).await;
    assert_eq!(r.status, 303, "{}", r.describe());
    assert!(
        r.set_cookie_value(SESSION_COOKIE).is_some(),
        "{}",
        r.describe()
    );
}

#[tokio::test]
async fn an_account_duo_already_knows_is_linked_after_an_approved_push() {
    let duo = DuoStandIn::start().await;
    duo.add_known_user("bob");
    let gw = gateway(&duo).await;
    let b = gw.browser();
    let v = past_password(&b, SETUP, "bob", BOB_PW).await;
    assert_eq!(v["component"], "authenticator_duo", "{v}");
    assert!(v.get("qr").is_none(), "nothing to activate: {v}");
    assert!(
        duo.calls("/auth/v2/enroll").is_empty(),
        "no second enrolment"
    );
    assert_eq!(action_names(&v)[0], "duo_push", "{v}");
    let v = post(&b, SETUP, json!({ "action": "duo_push" })).await;
    assert_eq!(action_names(&v)[0], "duo_check", "{v}");
    let r = post_resp(&b, SETUP, json!({ "action": "duo_check" })).await;
    assert_signed_in(&r);
    // Linked by username: validation asks Duo about "bob".
    let b = gw.browser();
    past_password(&b, SIGNIN, "bob", BOB_PW).await;
    duo.set_push(Push::Allow);
    post(&b, SIGNIN, json!({ "action": "duo_push" })).await;
    let r = post_resp(&b, SIGNIN, json!({ "action": "duo_check" })).await;
    assert_signed_in(&r);
    let auth = duo.calls("/auth/v2/auth");
    assert_eq!(auth.last().unwrap().params["username"], "bob", "{auth:?}");
}

#[tokio::test]
async fn a_denied_push_does_not_link_the_account() {
    let duo = DuoStandIn::start().await;
    duo.add_known_user("bob");
    duo.set_push(Push::Deny);
    let gw = gateway(&duo).await;
    let b = gw.browser();
    past_password(&b, SETUP, "bob", BOB_PW).await;
    post(&b, SETUP, json!({ "action": "duo_push" })).await;
    let v = post(&b, SETUP, json!({ "action": "duo_check" })).await;
    assert_eq!(
        strings(&v, "errors"),
        ["The push was denied: Login request denied."]
    );
    // No device: the sign-in flow has nothing to validate with.
    let b = gw.browser();
    let v = past_password(&b, SIGNIN, "bob", BOB_PW).await;
    assert_eq!(v["component"], "access_denied", "{v}");
}

/// An enrolment begun and left leaves a Duo user of that name without a device: Duo refuses
/// the name at the next `enroll`, so the gateway enrols under a name Duo picks, and the
/// device signs in through its user id.
#[tokio::test]
async fn an_enrolment_left_unfinished_can_be_started_again() {
    let duo = DuoStandIn::start().await;
    let gw = gateway(&duo).await;
    let first = gw.browser();
    let v = past_password(&first, SETUP, "alice", ALICE_PW).await;
    assert!(v["qr"].is_string(), "{v}");
    let b = gw.browser();
    let v = past_password(&b, SETUP, "alice", ALICE_PW).await;
    assert!(strings(&v, "errors").is_empty(), "{v}");
    let picked = duo.last_enrolled();
    assert_ne!(picked, "alice");
    assert_eq!(v["qr"], duo.activation_code(&picked), "{v}");
    duo.activate(&picked);
    let r = post_resp(&b, SETUP, json!({ "action": "duo_activated" })).await;
    assert_signed_in(&r);
    let b = gw.browser();
    past_password(&b, SIGNIN, "alice", ALICE_PW).await;
    let r = post_resp(&b, SIGNIN, json!({ "passcode": crate::stand_in::PASSCODE })).await;
    assert_signed_in(&r);
}

#[tokio::test]
async fn an_expired_activation_code_is_replaced_by_a_new_one() {
    let duo = DuoStandIn::start().await;
    let gw = gateway(&duo).await;
    let b = gw.browser();
    let v = past_password(&b, SETUP, "alice", ALICE_PW).await;
    let old = v["qr"].as_str().unwrap().to_string();
    duo.expire_activation("alice");
    let v = post(&b, SETUP, json!({ "action": "duo_activated" })).await;
    assert_eq!(
        strings(&v, "errors"),
        ["That activation code no longer works: scan this new one."]
    );
    let new = v["qr"].as_str().unwrap().to_string();
    assert_ne!(new, old);
    let picked = duo.last_enrolled();
    assert_eq!(new, duo.activation_code(&picked));
    duo.activate(&picked);
    let r = post_resp(&b, SETUP, json!({ "action": "duo_activated" })).await;
    assert_signed_in(&r);
}

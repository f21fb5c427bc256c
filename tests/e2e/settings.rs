//! The signed-in user's settings, through both faces (`/.portcullis/settings` and
//! `/.portcullis/api/settings`): what it lists, renaming and removing devices, the fresh sign-in
//! a removal needs, the last factor a flow needs, sessions signed out, and the attacks on all of
//! it (missing or forged CSRF tokens, another user's ids).

use crate::harness::*;
use reqwest::cookie::Jar;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

const PAGE: &str = "/.portcullis/settings";
const API: &str = "/.portcullis/api/settings";
const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
const IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1";

/// An app whose flow needs an email code (so alice's only email device must stay), a setup
/// stage with a configuration flow (an "Add" link), and `[settings] max_age`.
fn extra(max_age: &str) -> String {
    format!(
        r#"
[settings]
max_age = "{max_age}"
profile_flow = "edit-profile"

[[apps]]
name = "mail"
hosts = ["{EXTRA_APP}"]
upstream = "builtin:whoami"
flow = "mail-signin"

[[flows]]
slug = "mail-signin"
title = "Sign in"
designation = "authentication"
stages = ["identify", "password", "mail_mfa", "login"]

[[flows]]
slug = "add-app"
title = "Add an authenticator app"
designation = "stage_configuration"
stages = ["identify", "password", "app_setup", "login"]

[[flows]]
slug = "edit-profile"
title = "Edit your profile"
designation = "stage_configuration"
stages = ["password", "ask_profile", "write_profile"]

[stages.ask_profile]
kind = "prompt"
[[stages.ask_profile.fields]]
key = "name"
label = "Name"
type = "text"
required = true

[stages.write_profile]
kind = "user_write"
user_creation_mode = "never_create"

[stages.mail_mfa]
kind = "authenticator_validate"
device_classes = ["email"]
not_configured_action = "deny"

[stages.app_setup]
kind = "authenticator_totp"
friendly_name = "Authenticator app"
configure_flow = "add-app"
"#
    )
}

/// alice: an email device (the only one the mail app's flow takes), a phone and recovery
/// codes; bob: an email device. Written before the gateway starts.
fn put_devices(db: &std::path::Path) {
    use portcullis::store::{Device, DeviceClass, SledStore, Store};
    let store = SledStore::open(db).expect("open the database");
    let device = |id: &str, user: &str, class, name: &str, address: &str, secret| Device {
        id: id.into(),
        username: user.into(),
        class,
        name: name.into(),
        address: address.into(),
        address_hash: None,
        stage: "setup".into(),
        created: 1_764_600_000,
        last_used: None,
        secret,
    };
    let codes = json!({ "hashes": ["h1", "h2", "h3"] }).to_string();
    for d in [
        device(
            "dev-mail",
            "alice",
            DeviceClass::Email,
            "Email",
            "alice@example.com",
            None,
        ),
        device(
            "dev-phone",
            "alice",
            DeviceClass::Sms,
            "Work phone",
            "+41791234589",
            None,
        ),
        device(
            "dev-codes",
            "alice",
            DeviceClass::Static,
            "Recovery codes",
            "",
            Some(codes),
        ),
        device(
            "dev-bob",
            "bob",
            DeviceClass::Email,
            "Bob's mail",
            "bob@example.com",
            None,
        ),
    ] {
        store.put_device(&d).expect("put device");
    }
}

async fn gateway(max_age: &str) -> Gateway {
    let setup = Setup {
        extra_toml: extra(max_age),
        ..Setup::default()
    };
    let gw = Gateway::prepare(setup).await;
    put_devices(&gw.db_path);
    gw.launch().await
}

/// A cookie-keeping client, as [`Browser::new`], that says it is `ua`.
fn browser_as(gw: &Gateway, ua: &str) -> Browser {
    let jar = Arc::new(Jar::default());
    let addr: SocketAddr = ([127, 0, 0, 1], gw.port).into();
    let http = reqwest::Client::builder()
        .cookie_provider(jar.clone())
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .user_agent(ua)
        .timeout(Duration::from_secs(30))
        .resolve(APP, addr)
        .resolve(EXTRA_APP, addr)
        .build()
        .unwrap();
    Browser {
        http,
        jar,
        port: gw.port,
    }
}

async fn signed_in(gw: &Gateway, ua: &str, user: &str, pw: &str) -> (Browser, SignedIn) {
    let b = browser_as(gw, ua);
    let s = api_sign_in(&b, user, pw).await;
    (b, s)
}

async fn settings(b: &Browser) -> Value {
    let r = b.get_json(&b.url(API)).await;
    assert_eq!(r.status, 200, "{}", r.describe());
    r.json()
}

fn device<'a>(s: &'a Value, id: &str) -> Option<&'a Value> {
    s["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == id)
}

fn device_ids(s: &Value) -> Vec<String> {
    s["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_string())
        .collect()
}

/// Whether the browser's session still opens the app (else it is sent to sign in).
async fn still_signed_in(b: &Browser) -> bool {
    let r = b.get_html(&b.url("/")).await;
    match r.status {
        200 => true,
        302 => {
            assert!(
                r.location().contains("/.portcullis/flow/"),
                "{}",
                r.describe()
            );
            false
        }
        _ => panic!("unexpected answer: {}", r.describe()),
    }
}

async fn post_html(b: &Browser, fields: &[(&str, &str)]) -> Resp {
    b.post_form(&b.url(PAGE), fields).await
}

#[tokio::test(flavor = "multi_thread")]
async fn settings_list_profile_devices_add_links_and_sessions_through_both_faces() {
    let gw = gateway("5m").await;

    // Without a session: the page sends the browser to sign in and back; the API says 401.
    let anon = gw.browser();
    let r = anon.get_html(&anon.url(PAGE)).await;
    assert_eq!(r.status, 302, "{}", r.describe());
    let back = pct(&format!("http://{APP}:{}{PAGE}", gw.port));
    assert_eq!(
        r.location(),
        format!("/.portcullis/flow/{FLOW}?rd={back}"),
        "{}",
        r.describe()
    );
    let r = anon.get_json(&anon.url(API)).await;
    assert_eq!(r.status, 401, "{}", r.describe());
    assert_eq!(r.json()["error"], "unauthenticated");

    let (b, _) = signed_in(&gw, FIREFOX, "alice", ALICE_PW).await;
    let s = settings(&b).await;
    assert_eq!(s["profile"]["username"], "alice");
    assert_eq!(s["profile"]["email"], "alice@example.com");
    assert_eq!(s["profile"]["groups"], json!(["staff", "ops"]));
    assert_eq!(device_ids(&s), ["dev-codes", "dev-mail", "dev-phone"]);
    assert_eq!(
        device(&s, "dev-mail").unwrap()["address"],
        "al***@example.com"
    );
    assert_eq!(device(&s, "dev-phone").unwrap()["address"], "+41*******89");
    assert_eq!(device(&s, "dev-phone").unwrap()["created"], 1_764_600_000);
    assert_eq!(device(&s, "dev-codes").unwrap()["kind"], "Recovery codes");
    assert_eq!(s["recovery_codes_left"], 3);
    assert!(device(&s, "dev-mail").unwrap()["keep"].is_string(), "{s}");
    assert!(device(&s, "dev-phone").unwrap()["keep"].is_null(), "{s}");
    let add = &s["add"][0];
    assert_eq!(add["label"], "Add Authenticator app", "{s}");
    assert_eq!(
        add["href"],
        format!("/.portcullis/flow/add-app?rd={back}"),
        "{s}"
    );
    assert!(s["delete_account"].is_null(), "no unenrollment flow: {s}");
    let sessions = s["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 1, "{s}");
    assert_eq!(sessions[0]["browser"], "Firefox 128 on Linux");
    assert_eq!(sessions[0]["address"], "127.0.0.1");
    assert_eq!(sessions[0]["current"], true);
    assert!(!s["csrf_token"].as_str().unwrap().is_empty());
    // Devices show masked addresses, never their material; bob's are not listed.
    let devices = s["devices"].to_string();
    for secret in ["h1", "alice@example.com", "+41791234589"] {
        assert!(!devices.contains(secret), "{secret} in {devices}");
    }
    assert!(!s.to_string().contains("dev-bob"), "{s}");

    let r = b.get_html(&b.url(PAGE)).await;
    assert_eq!(r.status, 200, "{}", r.describe());
    let csp = r.header("content-security-policy").unwrap();
    assert!(!csp.contains("script-src"), "{csp}");
    assert!(!r.body.contains("<script"), "{}", r.body);
    for want in [
        "Your settings",
        "al***@example.com",
        "+41*******89",
        "Work phone",
        "Recovery codes left: <strong>3</strong>",
        "Add Authenticator app",
        "Firefox 128 on Linux",
        "This browser",
        "2025-12-01 14:40 UTC",
        "name=\"viewport\"",
    ] {
        assert!(r.body.contains(want), "{want} missing:\n{}", r.body);
    }
    assert_eq!(
        input_value(&r.body, "csrf_token").as_deref(),
        s["csrf_token"].as_str(),
        "one token for both faces"
    );
    // The last email device cannot be removed: no button, the reason instead.
    let mail = r.body.split("id=\"device-dev-mail\"").nth(1).unwrap();
    let mail = mail.split("</li>").next().unwrap();
    assert!(!mail.contains("value=\"remove\""), "{mail}");
    assert!(mail.contains("Signing in needs one of: Email"), "{mail}");
}

#[tokio::test(flavor = "multi_thread")]
async fn devices_are_renamed_through_both_faces_and_bad_names_change_nothing() {
    let gw = gateway("5m").await;
    let (b, _) = signed_in(&gw, FIREFOX, "alice", ALICE_PW).await;
    let csrf = settings(&b).await["csrf_token"]
        .as_str()
        .unwrap()
        .to_string();

    let r = post_html(
        &b,
        &[
            ("csrf_token", &csrf),
            ("action", "rename"),
            ("id", "dev-phone"),
            ("name", "  Old <b>phone</b> "),
        ],
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.describe());
    assert_eq!(r.location(), format!("{PAGE}?done=renamed"));
    let page = b.get_html(&b.url(&r.location())).await;
    assert!(
        page.body.contains("The device was renamed."),
        "{}",
        page.body
    );
    assert!(
        page.body.contains("Old &lt;b&gt;phone&lt;&#x2f;b&gt;"),
        "{}",
        page.body
    );
    assert_eq!(
        device(&settings(&b).await, "dev-phone").unwrap()["name"],
        "Old <b>phone</b>"
    );

    let r = b
        .post_json(
            &b.url(API),
            &json!({ "csrf_token": csrf, "action": "rename", "id": "dev-phone", "name": "Phone" }),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(r.json()["status"], "renamed");
    assert_eq!(
        device(&settings(&b).await, "dev-phone").unwrap()["name"],
        "Phone"
    );

    let long = "x".repeat(65);
    for bad in ["", "   ", "two\nlines", long.as_str()] {
        let r = b
            .post_json(
                &b.url(API),
                &json!({ "csrf_token": csrf, "action": "rename", "id": "dev-phone", "name": bad }),
            )
            .await;
        assert_eq!(r.status, 400, "{bad:?}: {}", r.describe());
        let r = post_html(
            &b,
            &[
                ("csrf_token", &csrf),
                ("action", "rename"),
                ("id", "dev-phone"),
                ("name", bad),
            ],
        )
        .await;
        assert_eq!(r.status, 400, "{bad:?}: {}", r.describe());
        assert!(r.body.contains("settings-error"), "{}", r.body);
    }
    assert_eq!(
        device(&settings(&b).await, "dev-phone").unwrap()["name"],
        "Phone"
    );
    assert!(
        gw.logs().contains("action=\"device_rename\"")
            || gw.logs().contains("action=device_rename"),
        "no audit line:\n{}",
        gw.logs()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_or_forged_csrf_token_is_refused_and_nothing_changes() {
    let gw = gateway("5m").await;
    let (b, _) = signed_in(&gw, FIREFOX, "alice", ALICE_PW).await;
    let (other, _) = signed_in(&gw, IPHONE, "alice", ALICE_PW).await;
    let (bob, _) = signed_in(&gw, FIREFOX, "bob", BOB_PW).await;
    let before = settings(&b).await;
    let csrf = before["csrf_token"].as_str().unwrap().to_string();
    let other_sid = before["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["current"] == false)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    // Tokens that are not this session's settings token.
    let others_token = settings(&other).await["csrf_token"]
        .as_str()
        .unwrap()
        .to_string();
    let bobs_token = settings(&bob).await["csrf_token"]
        .as_str()
        .unwrap()
        .to_string();
    let logout = b.get_html(&b.url("/.portcullis/logout")).await;
    let logout_token = input_value(&logout.body, "csrf_token").unwrap();
    let upper = csrf.to_uppercase();
    let short = csrf[..csrf.len() - 1].to_string();
    let forged: Vec<(&str, Option<&str>)> = vec![
        ("missing", None),
        ("empty", Some("")),
        ("another session's", Some(&others_token)),
        ("another user's", Some(&bobs_token)),
        ("the sign-out form's", Some(&logout_token)),
        ("upper-cased", Some(&upper)),
        ("one short", Some(&short)),
    ];
    let changes: [&[(&str, &str)]; 4] = [
        &[
            ("action", "rename"),
            ("id", "dev-phone"),
            ("name", "Hacked"),
        ],
        &[("action", "remove"), ("id", "dev-phone")],
        &[("action", "sign_out"), ("id", &other_sid)],
        &[("action", "sign_out_others")],
    ];
    for (what, token) in &forged {
        for change in changes {
            let mut fields: Vec<(&str, &str)> = change.to_vec();
            if let Some(t) = token {
                fields.push(("csrf_token", t));
            }
            let r = post_html(&b, &fields).await;
            assert_eq!(
                r.status,
                403,
                "HTML, {what} token, {change:?}: {}",
                r.describe()
            );
            let mut body = serde_json::Map::new();
            for (k, v) in &fields {
                body.insert(k.to_string(), json!(v));
            }
            let r = b.post_json(&b.url(API), &Value::Object(body)).await;
            assert_eq!(
                r.status,
                403,
                "JSON, {what} token, {change:?}: {}",
                r.describe()
            );
        }
    }
    // The API takes JSON only: the right token in a form body is not enough.
    let r = b
        .send(
            b.http
                .post(b.url(API))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(format!("csrf_token={csrf}&action=sign_out_others")),
        )
        .await;
    assert_eq!(r.status, 415, "{}", r.describe());
    // A token given twice is not guessed at.
    let r = post_html(
        &b,
        &[
            ("csrf_token", "x"),
            ("csrf_token", &csrf),
            ("action", "sign_out_others"),
        ],
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.describe());

    let after = settings(&b).await;
    assert_eq!(after["devices"], before["devices"], "nothing changed");
    assert_eq!(after["sessions"].as_array().unwrap().len(), 2);
    assert!(
        still_signed_in(&other).await,
        "the other session still works"
    );
    assert!(
        gw.logs().contains("outcome=\"csrf\"") || gw.logs().contains("outcome=csrf"),
        "{}",
        gw.logs()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn another_users_device_or_session_is_not_found_and_nothing_changes() {
    let gw = gateway("5m").await;
    let (b, _) = signed_in(&gw, FIREFOX, "alice", ALICE_PW).await;
    let (bob, _) = signed_in(&gw, FIREFOX, "bob", BOB_PW).await;
    let csrf = settings(&b).await["csrf_token"]
        .as_str()
        .unwrap()
        .to_string();
    let bobs = settings(&bob).await;
    let bob_sid = bobs["sessions"][0]["id"].as_str().unwrap().to_string();
    let ids = [
        "dev-bob",
        "dev-bob\0",
        "../dev-bob",
        "bob\0dev-bob",
        "",
        "DEV-PHONE",
    ];
    for id in ids {
        for action in ["rename", "remove"] {
            let r = b
                .post_json(
                    &b.url(API),
                    &json!({ "csrf_token": csrf, "action": action, "id": id, "name": "Mine now" }),
                )
                .await;
            assert_eq!(r.status, 404, "JSON {action} {id:?}: {}", r.describe());
            assert_eq!(r.json()["error"], "not_found");
            let r = post_html(
                &b,
                &[
                    ("csrf_token", &csrf),
                    ("action", action),
                    ("id", id),
                    ("name", "Mine now"),
                ],
            )
            .await;
            assert_eq!(r.status, 404, "HTML {action} {id:?}: {}", r.describe());
        }
    }
    for sid in [bob_sid.as_str(), "", "nonsense"] {
        let r = b
            .post_json(
                &b.url(API),
                &json!({ "csrf_token": csrf, "action": "sign_out", "id": sid }),
            )
            .await;
        assert_eq!(r.status, 404, "sign out {sid:?}: {}", r.describe());
    }
    assert_eq!(
        settings(&bob).await["devices"],
        bobs["devices"],
        "bob's device is untouched"
    );
    assert!(still_signed_in(&bob).await, "bob is still signed in");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_last_factor_a_flow_needs_cannot_be_removed() {
    let gw = gateway("5m").await;
    let (b, _) = signed_in(&gw, FIREFOX, "alice", ALICE_PW).await;
    let csrf = settings(&b).await["csrf_token"]
        .as_str()
        .unwrap()
        .to_string();
    let r = b
        .post_json(
            &b.url(API),
            &json!({ "csrf_token": csrf, "action": "remove", "id": "dev-mail" }),
        )
        .await;
    assert_eq!(r.status, 409, "{}", r.describe());
    assert_eq!(r.json()["error"], "last_factor");
    assert!(
        r.json()["message"].as_str().unwrap().contains("Email"),
        "{}",
        r.body
    );
    let r = post_html(
        &b,
        &[
            ("csrf_token", &csrf),
            ("action", "remove"),
            ("id", "dev-mail"),
        ],
    )
    .await;
    assert_eq!(r.status, 409, "{}", r.describe());
    assert!(r.body.contains("This is your last one"), "{}", r.body);
    assert!(
        device(&settings(&b).await, "dev-mail").is_some(),
        "still there"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn removing_a_device_needs_a_fresh_sign_in_and_signs_out_the_other_sessions() {
    let max_age = 4;
    let gw = gateway(&format!("{max_age}s")).await;
    let (a, first) = signed_in(&gw, FIREFOX, "alice", ALICE_PW).await;
    let (other, _) = signed_in(&gw, IPHONE, "alice", ALICE_PW).await;
    let (bob, _) = signed_in(&gw, FIREFOX, "bob", BOB_PW).await;
    tokio::time::sleep(Duration::from_millis(max_age * 1000 + 300)).await;

    // HTML: a stale sign-in is sent to confirm it is you, and back to confirm the removal.
    let s = settings(&a).await;
    assert_eq!(s["fresh"], false, "{s}");
    let csrf = s["csrf_token"].as_str().unwrap().to_string();
    let r = post_html(
        &a,
        &[
            ("csrf_token", &csrf),
            ("action", "remove"),
            ("id", "dev-phone"),
        ],
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.describe());
    let confirm = r.location();
    let back = format!("http://{APP}:{}{PAGE}?remove=dev-phone", gw.port);
    assert_eq!(
        confirm,
        format!("/.portcullis/flow/{FLOW}?rd={}", pct(&back))
    );
    assert!(
        device(&settings(&a).await, "dev-phone").is_some(),
        "not removed yet"
    );
    // Every factor is asked again: the password, though the session proved it.
    let page = form_page(&a.get_html(&confirm).await);
    assert!(has_input(&page.html, "password"), "{}", page.html);
    let r = submit(&a, &page, &[("password", ALICE_PW)]).await;
    assert_eq!(r.status, 303, "{}", r.describe());
    assert_eq!(r.location(), back);
    let renewed = r.set_cookie_value(SESSION_COOKIE).expect("a new session");
    assert_ne!(renewed, first.token);
    let page = a.get_html(&back).await;
    assert!(page.body.contains("id=\"confirm-remove\""), "{}", page.body);
    let csrf = input_value(&page.body, "csrf_token").unwrap();
    let r = post_html(
        &a,
        &[
            ("csrf_token", &csrf),
            ("action", "remove"),
            ("id", "dev-phone"),
        ],
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.describe());
    assert_eq!(r.location(), format!("{PAGE}?done=removed"));
    let s = settings(&a).await;
    assert!(device(&s, "dev-phone").is_none(), "{s}");
    assert!(
        !still_signed_in(&other).await,
        "the other browser is signed out"
    );
    assert_eq!(s["sessions"].as_array().unwrap().len(), 1, "{s}");
    assert!(
        still_signed_in(&bob).await,
        "another user's session is not touched"
    );
    // The session the confirmation replaced is dead too.
    let r = gw
        .raw()
        .get_with_token("/", &first.token, ACCEPT_HTML)
        .await;
    assert_eq!(r.status, 302, "{}", r.describe());

    // JSON: the same through the API faces.
    let (other, _) = signed_in(&gw, IPHONE, "alice", ALICE_PW).await;
    tokio::time::sleep(Duration::from_millis(max_age * 1000 + 300)).await;
    let csrf = settings(&a).await["csrf_token"]
        .as_str()
        .unwrap()
        .to_string();
    let r = a
        .post_json(
            &a.url(API),
            &json!({ "csrf_token": csrf, "action": "remove", "id": "dev-codes" }),
        )
        .await;
    assert_eq!(r.status, 401, "{}", r.describe());
    let v = r.json();
    assert_eq!(v["error"], "step_up_required");
    let api = v["api"].as_str().unwrap().to_string();
    let r = a.get_json(&a.url(&api)).await;
    assert_eq!(r.json()["component"], "password", "{}", r.body);
    let flow = api.split('?').next().unwrap();
    let r = a
        .post_json(&a.url(flow), &json!({ "password": ALICE_PW }))
        .await;
    assert_eq!(r.json()["component"], "redirect", "{}", r.body);
    let csrf = settings(&a).await["csrf_token"]
        .as_str()
        .unwrap()
        .to_string();
    let r = a
        .post_json(
            &a.url(API),
            &json!({ "csrf_token": csrf, "action": "remove", "id": "dev-codes" }),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(
        r.json(),
        json!({ "status": "removed", "ended_sessions": 1 })
    );
    assert!(!still_signed_in(&other).await);
    let s = settings(&a).await;
    assert_eq!(device_ids(&s), ["dev-mail"]);
    assert!(s["recovery_codes_left"].is_null(), "{s}");
    let logs = gw.logs();
    let removed: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("portcullis::audit") && l.contains("device_remove"))
        .collect();
    assert!(
        removed.iter().any(|l| l.contains("needs_reauthentication")),
        "{logs}"
    );
    assert!(
        removed
            .iter()
            .any(|l| l.contains("outcome=\"done\"") || l.contains("outcome=done")),
        "{logs}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sessions_are_listed_per_browser_and_a_signed_out_one_loses_access_at_once() {
    let gw = gateway("5m").await;
    let (a, _) = signed_in(&gw, FIREFOX, "alice", ALICE_PW).await;
    let (phone, _) = signed_in(&gw, IPHONE, "alice", ALICE_PW).await;
    assert!(still_signed_in(&phone).await);
    let s = settings(&a).await;
    let sessions = s["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 2, "{s}");
    let mine = sessions.iter().find(|x| x["current"] == true).unwrap();
    let theirs = sessions.iter().find(|x| x["current"] == false).unwrap();
    assert_eq!(mine["browser"], "Firefox 128 on Linux");
    assert_eq!(theirs["browser"], "Safari 17 on iPhone");
    assert!(theirs["last_seen"].as_i64().unwrap() >= theirs["created"].as_i64().unwrap());
    let page = a.get_html(&a.url(PAGE)).await;
    assert!(page.body.contains("Safari 17 on iPhone"), "{}", page.body);
    assert!(
        page.body.contains("Sign out everywhere else"),
        "{}",
        page.body
    );

    // Sign the phone out from the page: its very next request is sent to sign in.
    let csrf = s["csrf_token"].as_str().unwrap();
    let id = theirs["id"].as_str().unwrap();
    let r = post_html(
        &a,
        &[("csrf_token", csrf), ("action", "sign_out"), ("id", id)],
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.describe());
    assert_eq!(r.location(), format!("{PAGE}?done=signed_out"));
    assert!(!still_signed_in(&phone).await, "the phone lost access");
    assert_eq!(phone.get_json(&phone.url(API)).await.status, 401);
    assert!(still_signed_in(&a).await, "this browser did not");

    // All others through the API.
    let (p2, _) = signed_in(&gw, IPHONE, "alice", ALICE_PW).await;
    let (p3, _) = signed_in(&gw, IPHONE, "alice", ALICE_PW).await;
    let r = a
        .post_json(
            &a.url(API),
            &json!({ "csrf_token": csrf, "action": "sign_out_others" }),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(r.json()["ended_sessions"], 2);
    assert!(!still_signed_in(&p2).await && !still_signed_in(&p3).await);
    assert!(still_signed_in(&a).await);
    assert_eq!(settings(&a).await["sessions"].as_array().unwrap().len(), 1);

    // Signing out this browser from its own row clears its cookie.
    let s = settings(&a).await;
    let me = s["sessions"][0]["id"].as_str().unwrap().to_string();
    let r = a
        .post_json(
            &a.url(API),
            &json!({ "csrf_token": csrf, "action": "sign_out", "id": me }),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.describe());
    assert!(cookie_is_cleared(&r.set_cookie(SESSION_COOKIE).unwrap()));
    assert!(!still_signed_in(&a).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn add_runs_the_setup_stages_configuration_flow_for_the_signed_in_user_and_comes_back() {
    use portcullis::flow::totp::{self, Algorithm, Params};
    let gw = gateway("5m").await;
    let (b, _) = signed_in(&gw, FIREFOX, "alice", ALICE_PW).await;
    let s = settings(&b).await;
    let href = s["add"][0]["href"].as_str().unwrap().to_string();
    let back = format!("http://{APP}:{}{PAGE}", gw.port);

    // The configuration flow knows who is signed in: it asks for the password, never a name.
    let page = form_page(&b.get_html(&href).await);
    assert!(has_input(&page.html, "password"), "{}", page.html);
    assert!(!has_input(&page.html, "uid"), "{}", page.html);

    let api = href.replacen("/.portcullis/flow/", "/.portcullis/api/flow/", 1);
    let flow = api.split('?').next().unwrap().to_string();
    let r = b.get_json(&api).await;
    assert_eq!(r.json()["component"], "password", "{}", r.body);
    let r = b
        .post_json(&b.url(&flow), &json!({ "password": ALICE_PW }))
        .await;
    let v = r.json();
    assert_eq!(v["component"], "authenticator_totp", "{v}");
    let secret = data_encoding::BASE32_NOPAD
        .decode(v["secret"].as_str().unwrap().as_bytes())
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let six = Params {
        digits: 6,
        period: 30,
        algorithm: Algorithm::Sha1,
    };
    let code = totp::code(&secret, totp::step(now, 30), &six);
    let r = b.post_json(&b.url(&flow), &json!({ "code": code })).await;
    let v = r.json();
    assert_eq!(v["component"], "redirect", "{v}");
    assert_eq!(v["to"], back, "back to the settings page");
    let s = settings(&b).await;
    let added: Vec<&Value> = s["devices"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["class"] == "totp")
        .collect();
    assert_eq!(added.len(), 1, "{s}");
    assert_eq!(added[0]["name"], "Authenticator app");
}

#[tokio::test(flavor = "multi_thread")]
async fn edit_runs_the_profile_flow_for_the_signed_in_user_and_the_page_shows_the_new_name() {
    let gw = gateway("5m").await;
    let (b, _) = signed_in(&gw, FIREFOX, "alice", ALICE_PW).await;
    let s = settings(&b).await;
    let back = format!("http://{APP}:{}{PAGE}", gw.port);
    let edit = s["profile"]["edit"].as_str().unwrap().to_string();
    assert_eq!(
        edit,
        format!("/.portcullis/flow/edit-profile?rd={}", pct(&back))
    );
    let page = b.get_html(&b.url(PAGE)).await;
    assert!(page.body.contains("Edit name and email"), "{}", page.body);

    let page = form_page(&b.get_html(&edit).await);
    assert!(
        has_input(&page.html, "password"),
        "the flow asks for the password first"
    );
    let r = submit(&b, &page, &[("password", ALICE_PW)]).await;
    let page = next_page(&b, &r).await;
    assert!(has_input(&page.html, "name"), "{}", page.html);
    let r = submit(&b, &page, &[("name", "Alice Liddell")]).await;
    assert_eq!(r.status, 303, "{}", r.describe());
    assert_eq!(r.location(), back);
    let s = settings(&b).await;
    assert_eq!(s["profile"]["name"], "Alice Liddell", "{s}");
    assert_eq!(s["profile"]["username"], "alice");
}

/// Attack: names that look harmless on the page but are not what they seem (direction
/// overrides that reverse what follows, invisible characters, line separators, 10 kB) are
/// refused through both faces and change nothing; ordinary letters of any script are kept.
#[tokio::test(flavor = "multi_thread")]
async fn rename_refuses_direction_overrides_invisible_characters_and_huge_names() {
    let gw = gateway("5m").await;
    let (b, _) = signed_in(&gw, FIREFOX, "alice", ALICE_PW).await;
    let csrf = settings(&b).await["csrf_token"]
        .as_str()
        .unwrap()
        .to_string();
    let huge = "y".repeat(10 * 1024);
    let refused = [
        ("right-to-left override", "Phone\u{202E}exe.gnp"),
        ("left-to-right embedding", "\u{202A}Phone"),
        ("right-to-left isolate", "Phone\u{2067}x\u{2069}"),
        ("right-to-left mark", "\u{200F}Phone"),
        ("arabic letter mark", "Phone\u{061C}"),
        ("zero-width space", "Ph\u{200B}one"),
        ("zero-width joiner only", "\u{200D}"),
        ("word joiner", "Ph\u{2060}one"),
        ("byte order mark", "\u{FEFF}Phone"),
        ("line separator", "two\u{2028}lines"),
        ("paragraph separator", "two\u{2029}lines"),
        ("escape sequence", "Phone\u{1b}[31m"),
        ("nul", "Phone\0"),
        ("10 kB", huge.as_str()),
    ];
    for (what, name) in refused {
        let r = b
            .post_json(
                &b.url(API),
                &json!({ "csrf_token": csrf, "action": "rename", "id": "dev-phone", "name": name }),
            )
            .await;
        assert_eq!(r.status, 400, "JSON, {what}: {}", r.describe());
        let r = post_html(
            &b,
            &[
                ("csrf_token", &csrf),
                ("action", "rename"),
                ("id", "dev-phone"),
                ("name", name),
            ],
        )
        .await;
        assert_eq!(r.status, 400, "HTML, {what}: {}", r.describe());
        assert_eq!(
            device(&settings(&b).await, "dev-phone").unwrap()["name"],
            "Work phone",
            "{what}"
        );
    }
    // Names in any script (an Arabic or Hebrew word is not an override) are fine.
    for name in ["Téléphone", "هاتف العمل", "טלפון", "手机 📱", "Phone — old"]
    {
        let r = b
            .post_json(
                &b.url(API),
                &json!({ "csrf_token": csrf, "action": "rename", "id": "dev-phone", "name": name }),
            )
            .await;
        assert_eq!(r.status, 200, "{name}: {}", r.describe());
        assert_eq!(
            device(&settings(&b).await, "dev-phone").unwrap()["name"],
            name
        );
    }
}

/// Attack: a profile flow (stage_configuration) whose prompt asks username, email and name.
/// Through it alice tries to become bob, take bob's address (any spelling), and smuggle fields
/// the prompt does not ask for (groups, attributes). Nothing escalates; her name still changes.
#[tokio::test(flavor = "multi_thread")]
async fn a_profile_flow_cannot_rename_regroup_or_take_another_users_address() {
    let flow = "/.portcullis/api/flow/edit-all";
    let setup = Setup {
        extra_toml: r#"
[[flows]]
slug = "edit-all"
title = "Edit everything"
designation = "stage_configuration"
stages = ["password", "ask_all", "write_all"]

[stages.ask_all]
kind = "prompt"
[[stages.ask_all.fields]]
key = "username"
label = "Username"
type = "text"
required = false
[[stages.ask_all.fields]]
key = "email"
label = "Email"
type = "email"
required = false
[[stages.ask_all.fields]]
key = "name"
label = "Name"
type = "text"
required = false

[stages.write_all]
kind = "user_write"
user_creation_mode = "never_create"
"#
        .to_string(),
        ..Setup::default()
    };
    let gw = Gateway::start_with(setup).await;
    let (bob, _) = signed_in(&gw, FIREFOX, "bob", BOB_PW).await;
    let bob_before = settings(&bob).await["profile"].clone();
    let smuggled = json!({ "groups": "admins", "attributes.role": "admin", "attributes": "x" });
    // (what, the answers, whether the write is refused)
    let table = [
        (
            "another user's name",
            json!({ "username": "bob", "name": "Eve" }),
            true,
        ),
        (
            "another user's address",
            json!({ "email": "bob@example.com" }),
            true,
        ),
        (
            "it upper-cased",
            json!({ "email": "BOB@Example.COM" }),
            true,
        ),
        (
            "it with spaces",
            json!({ "email": " bob@example.com " }),
            true,
        ),
        ("a new name", json!({ "username": "alice2" }), true),
        (
            "her own name re-cased",
            json!({ "username": "Alice", "name": "Alice L" }),
            false,
        ),
    ];
    for (what, answers, refused) in table {
        // A fresh tab each time: a refused write leaves its execution waiting.
        let (b, _) = signed_in(&gw, FIREFOX, "alice", ALICE_PW).await;
        let r = b.get_json(flow).await;
        assert_eq!(r.json()["component"], "password", "{what}: {}", r.body);
        let r = b.post_json(flow, &json!({ "password": ALICE_PW })).await;
        assert_eq!(r.json()["component"], "prompt", "{what}: {}", r.body);
        // With fields the prompt does not ask for, the whole answer is refused.
        let mut body = answers.as_object().unwrap().clone();
        body.extend(smuggled.as_object().unwrap().clone());
        let r = b.post_json(flow, &serde_json::Value::Object(body)).await;
        assert_eq!(r.status, 400, "{what}, smuggled: {}", r.describe());
        assert_eq!(r.json()["error"], "stage_mismatch", "{what}");
        let r = b.post_json(flow, &answers).await;
        let done = r.json()["component"] == "redirect";
        assert_eq!(done, !refused, "{what}: {}", r.describe());
        // Whatever happened, alice is alice, in her groups, at her address; bob is untouched.
        let s = settings(&b).await;
        assert_eq!(s["profile"]["username"], "alice", "{what}: {s}");
        assert_eq!(s["profile"]["email"], "alice@example.com", "{what}: {s}");
        assert_eq!(
            s["profile"]["groups"],
            json!(["staff", "ops"]),
            "{what}: {s}"
        );
        assert_eq!(settings(&bob).await["profile"], bob_before, "{what}");
        if !refused {
            assert_eq!(s["profile"]["name"], "Alice L", "{what}: {s}");
        }
    }
}

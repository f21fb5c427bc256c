//! Several gateway processes on one PostgreSQL database (issue 16 point 6), the way an operator
//! runs them behind a load balancer: a session made on one replica passes on the others; a
//! sign-out on one is refused by the others within a second; a texted code sent through one is
//! taken by another, once; a ban earned on one holds on the others; a replica killed in the
//! middle of an enrolment loses nothing; the database restarted under load loses nothing that
//! was answered. Each test gets a fresh database of the test process's PostgreSQL (the restart
//! test a server of its own, as it stops it).

use crate::harness::*;
use crate::sms_provider::SmsServer;
use portcullis::flow::totp::{self, Algorithm, Params};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a revocation on one replica may take to be refused by the others (issue 16).
const PROPAGATION: Duration = Duration::from_secs(1);

fn api(slug: &str) -> String {
    format!("/.portcullis/api/flow/{slug}")
}

/// GETs `/secret` on app.test of `node` with the session `token` as a JSON client.
async fn with_token(node: &Replica, token: &str) -> Resp {
    node.raw()
        .get_with_token("/secret", token, "application/json")
        .await
}

/// Asserts `token` passes on `node`: the upstream gets the request with alice's identity.
async fn assert_passes_as_alice(node: &Replica, token: &str, what: &str) {
    let r = with_token(node, token).await;
    assert_eq!(
        r.status,
        200,
        "{what}: replica {} refused the session: {}",
        node.name,
        r.describe()
    );
    let echo = r.echo();
    assert_eq!(echo.header("remote-user"), Some("alice"), "{what}");
    assert_eq!(echo.header("remote-email"), Some("alice@example.com"));
    assert_eq!(echo.header("remote-groups"), Some("staff,ops"), "{what}");
}

/// Asserts `token` is refused on `node` the way a signed-out user sees it: 401
/// `unauthenticated` for a JSON client, a redirect to the sign-in for a navigation.
async fn assert_refused(node: &Replica, token: &str, what: &str) {
    let r = with_token(node, token).await;
    assert_eq!(r.status, 401, "{what} on {}: {}", node.name, r.describe());
    assert_eq!(r.json()["error"], "unauthenticated", "{what}: {}", r.body);
    let r = node
        .raw()
        .get_with_token("/secret", token, ACCEPT_HTML)
        .await;
    assert_eq!(r.status, 302, "{what} on {}: {}", node.name, r.describe());
    assert!(r.location().contains(&flow_path()), "{}", r.location());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_session_made_on_one_replica_passes_on_every_other() {
    let set = Replicas::start(3).await;
    let b = set[0].browser();
    let s = api_sign_in(&b, "alice", ALICE_PW).await;
    for node in &set.nodes {
        assert_passes_as_alice(node, &s.token, "signed in on A").await;
    }
    // The same browser, sent to B and C by the load balancer, is signed in there too.
    for node in &set.nodes[1..] {
        let r = same_browser_on(&b, node.port).get_json("/page").await;
        assert_eq!(
            r.echo().header("remote-user"),
            Some("alice"),
            "{}",
            node.name
        );
    }
    assert_eq!(set.upstream.hits(), 5);
}

#[tokio::test(flavor = "multi_thread")]
async fn signing_out_on_one_replica_is_refused_by_the_others_within_a_second() {
    let set = Replicas::start(3).await;
    let b = set[0].browser();
    let s = api_sign_in(&b, "alice", ALICE_PW).await;
    // Another session of alice's stays valid: a sign-out ends one session, not the user's.
    let other = api_sign_in(&set[2].browser(), "alice", ALICE_PW).await;
    for node in &set.nodes {
        assert_passes_as_alice(node, &s.token, "before the sign-out").await;
    }
    let on_b = same_browser_on(&b, set[1].port);
    let r = on_b.post_json("/.portcullis/api/logout", &json!({})).await;
    assert_eq!(r.status, 200, "sign-out on B: {}", r.describe());
    let signed_out = Instant::now();
    // B refuses at once; A and C within a second, polled every 50 ms.
    assert_refused(&set[1], &s.token, "signed out on B").await;
    for node in [&set[0], &set[2]] {
        assert_refused_within(node, &s.token, signed_out, "signed out on B").await;
    }
    for node in &set.nodes {
        assert_passes_as_alice(node, &other.token, "alice's other session").await;
    }
}

/// Polls `node` every 50 ms until it refuses `token`; asserts that happened within
/// [`PROPAGATION`] of `since`, and that the refusal is the one a signed-out user sees.
async fn assert_refused_within(node: &Replica, token: &str, since: Instant, what: &str) {
    let refused_after = loop {
        let r = with_token(node, token).await;
        if r.status == 401 {
            break since.elapsed();
        }
        assert_eq!(r.status, 200, "{what}: {}", r.describe());
        assert!(
            since.elapsed() < Duration::from_secs(5),
            "{what}: replica {} still honours the session after 5 s",
            node.name
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        refused_after < PROPAGATION,
        "{what}: replica {} refused the session only after {refused_after:?}",
        node.name
    );
    assert_refused(node, token, what).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn disabling_a_user_through_one_replica_ends_their_sessions_on_all_within_a_second() {
    let set = Replicas::start(3).await;
    let on_a = api_sign_in(&set[0].browser(), "alice", ALICE_PW).await;
    let on_c = api_sign_in(&set[2].browser(), "alice", ALICE_PW).await;
    let bob = api_sign_in(&set[1].browser(), "bob", BOB_PW).await;
    // The operator's command on B's machine (through B's admin socket).
    let out = set[1].cli(&["user", "disable", "alice"], None).await;
    assert!(out.ok(), "{}", out.all());
    let disabled = Instant::now();
    for node in &set.nodes {
        for token in [&on_a.token, &on_c.token] {
            assert_refused_within(node, token, disabled, "alice disabled on B").await;
        }
    }
    for node in &set.nodes {
        let r = with_token(node, &bob.token).await;
        assert_eq!(r.echo().header("remote-user"), Some("bob"), "{}", node.name);
        let b = node.browser();
        b.get_json(&api_path()).await;
        b.post_json(&api_path(), &json!({ "uid": "alice" })).await;
        let r = b
            .post_json(&api_path(), &json!({ "password": ALICE_PW }))
            .await;
        assert!(
            r.set_cookie_value(SESSION_COOKIE).is_none(),
            "a disabled user signed in on {}: {}",
            node.name,
            r.describe()
        );
    }
}

/// The SMS enrolment flow (identify, password, SMS setup, login) and Twilio at `sms`.
fn sms_setup(sms: &SmsServer) -> Setup {
    Setup {
        extra_toml: format!(
            r#"
[[flows]]
slug = "sms-enrol"
title = "Add a phone"
designation = "authentication"
stages = ["identify", "password", "sms", "login"]

[stages.sms]
kind = "authenticator_sms"
provider = "twilio"
account_sid = "AC0123456789abcdef0123456789abcdef"
auth_token = "twilio-auth-token-4242"
api_base = {base}
from_number = "+15550001"
timeout = 2
resend_cooldown = "0s"
"#,
            base = toml_str(&sms.base())
        ),
        ..Setup::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_code_texted_through_one_replica_is_taken_by_another_once() {
    let sms = SmsServer::start().await;
    let set = Replicas::start_with(3, sms_setup(&sms)).await;
    let slug = "sms-enrol";
    let on_a = set[0].browser();
    on_a.get_json(&api(slug)).await;
    on_a.post_json(&api(slug), &json!({ "uid": "alice" })).await;
    let r = on_a
        .post_json(&api(slug), &json!({ "password": ALICE_PW }))
        .await;
    assert_eq!(r.json()["component"], "authenticator_sms", "{}", r.body);
    let r = on_a
        .post_json(&api(slug), &json!({ "phone": "+41 79 123 45 67" }))
        .await;
    assert_eq!(r.json()["fields"][0]["name"], "code", "{}", r.body);
    let code = sms.wait_for(1).await[0].code();
    let flow_cookie = on_a
        .cookie(&on_a.url("/.portcullis/"), FLOW_COOKIE)
        .expect("a flow cookie");

    let on_b = same_browser_on(&on_a, set[1].port);
    let r = on_b.post_json(&api(slug), &json!({ "code": code })).await;
    assert_eq!(
        r.json()["component"],
        "redirect",
        "code on B: {}",
        r.describe()
    );
    let token = r.set_cookie_value(SESSION_COOKIE).expect("a session");
    assert_passes_as_alice(&set[2], &token, "enrolled through A and B").await;

    // The same answer again, on any replica, with the flow cookie it was sent with: no
    // second session.
    for node in &set.nodes {
        let replay = node.browser();
        replay.add_cookie(
            &replay.url("/"),
            &format!("{FLOW_COOKIE}={flow_cookie}; Path=/"),
        );
        let r = replay.post_json(&api(slug), &json!({ "code": code })).await;
        assert!(
            r.set_cookie_value(SESSION_COOKIE).is_none(),
            "a used code gave a session again on {}: {}",
            node.name,
            r.describe()
        );
        assert_ne!(r.status, 500, "{}", r.describe());
    }
    let out = set[2].cli(&["user", "devices", "alice"], None).await;
    assert!(out.ok(), "{}", out.all());
    assert_eq!(out.stdout.matches("sms").count(), 1, "{}", out.stdout);
    assert_eq!(sms.count(), 1, "one text for one enrolment");
    for node in &set.nodes {
        assert!(
            !node.logs().contains(&code),
            "{} logged the code",
            node.name
        );
    }
}

/// A fresh browser (no cookies) on `node` whose requests come, through the loopback proxy the
/// gateway trusts, from `from` (`X-Forwarded-For`).
fn browser_from(node: &Replica, from: &str) -> Browser {
    let jar = Arc::new(reqwest::cookie::Jar::default());
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("x-forwarded-for", from.parse().unwrap());
    let http = reqwest::Client::builder()
        .cookie_provider(jar.clone())
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .resolve(APP, ([127, 0, 0, 1], node.port).into())
        .default_headers(headers)
        .build()
        .unwrap();
    Browser {
        http,
        jar,
        port: node.port,
    }
}

/// One JSON sign-in attempt in a fresh execution on `node` from `from` as `uid`: the answer
/// to the password, or the first answer that was not a 200.
async fn guess(node: &Replica, from: &str, uid: &str, password: &str) -> Resp {
    let b = browser_from(node, from);
    let r = b.get_json(&api_path()).await;
    assert_eq!(r.status, 200, "{}", r.describe());
    let r = b.post_json(&api_path(), &json!({ "uid": uid })).await;
    if r.status != 200 {
        return r;
    }
    b.post_json(&api_path(), &json!({ "password": password }))
        .await
}

/// The same attempt through the HTML pages.
async fn html_guess(node: &Replica, from: &str, uid: &str, password: &str) -> Resp {
    let b = browser_from(node, from);
    let page = form_page(&b.get_html(&flow_path()).await);
    let r = submit(&b, &page, &[("uid", uid)]).await;
    if r.status != 303 {
        return r;
    }
    let page = next_page(&b, &r).await;
    submit(&b, &page, &[("password", password)]).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_ban_earned_with_wrong_passwords_on_one_replica_holds_on_the_others() {
    let set = Replicas::start(3).await;
    // Where each wrong password lands: all on A, or one on each replica (the count is the
    // database's, not a replica's).
    let cases: [(&str, &str, &str, [usize; 3]); 2] = [
        ("all on A", "198.51.100.1", "bob", [0, 0, 0]),
        ("one on each", "198.51.100.2", "alice", [0, 1, 2]),
    ];
    for (case, from, uid, order) in cases {
        let right = if uid == "bob" { BOB_PW } else { ALICE_PW };
        for (i, n) in order.into_iter().enumerate() {
            let r = guess(&set[n], from, uid, WRONG_PW).await;
            assert_eq!(
                r.status,
                200,
                "{case}: wrong password {i}: {}",
                r.describe()
            );
            assert!(r.body.contains(INVALID_MSG), "{}", r.body);
        }
        // What A answers now, B and C answer too, even to the right password.
        for node in &set.nodes {
            let r = guess(node, from, uid, right).await;
            assert_eq!(r.status, 429, "{case}: on {}: {}", node.name, r.describe());
            assert_eq!(r.json()["error"], "too_many_attempts", "{}", r.body);
            let wait: u64 = r.header("retry-after").unwrap().parse().unwrap();
            assert!((1..=300).contains(&wait), "{case}: Retry-After {wait}");
            assert!(r.set_cookie_value(SESSION_COOKIE).is_none());
            let r = html_guess(node, from, uid, right).await;
            assert_eq!(
                r.status,
                429,
                "{case}: HTML on {}: {}",
                node.name,
                r.describe()
            );
            assert!(r.body.contains("Too many failed attempts"), "{}", r.body);
        }
    }
    // Someone else, from elsewhere, signs in on any replica.
    for node in &set.nodes {
        let r = guess(node, "192.0.2.7", "alice", ALICE_PW).await;
        assert!(
            r.set_cookie_value(SESSION_COOKIE).is_some(),
            "{}",
            r.describe()
        );
    }
}

const TOTP_FLOWS: &str = r#"
[[flows]]
slug = "add-app"
title = "Add an authenticator app"
designation = "authentication"
stages = ["identify", "password", "app", "login"]
[[flows]]
slug = "strong"
title = "Sign in"
designation = "authentication"
stages = ["identify", "password", "second", "login"]
[stages.app]
kind = "authenticator_totp"
[stages.second]
kind = "authenticator_validate"
device_classes = ["totp"]
not_configured_action = "deny"
"#;

/// The code `offset` steps from now for the base32 `secret`, as an authenticator app shows it.
fn totp_code(secret: &str, offset: i64) -> String {
    let raw = data_encoding::BASE32_NOPAD
        .decode(secret.as_bytes())
        .unwrap();
    let step = totp::step(now(), 30).checked_add_signed(offset).unwrap();
    let six = Params {
        digits: 6,
        period: 30,
        algorithm: Algorithm::Sha1,
    };
    totp::code(&raw, step, &six)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replica_killed_during_an_enrolment_loses_nothing_and_the_user_finishes_on_another() {
    let mut set = Replicas::start_with(
        3,
        Setup {
            extra_toml: TOTP_FLOWS.into(),
            ..Setup::default()
        },
    )
    .await;
    let on_a = set[0].browser();
    on_a.get_json(&api("add-app")).await;
    on_a.post_json(&api("add-app"), &json!({ "uid": "alice" }))
        .await;
    let r = on_a
        .post_json(&api("add-app"), &json!({ "password": ALICE_PW }))
        .await;
    let v = r.json();
    assert_eq!(v["component"], "authenticator_totp", "{v}");
    let secret = v["secret"].as_str().unwrap().to_string();

    set[0].kill();
    // The load balancer sends the same browser to B: the same step, the same secret.
    let on_b = same_browser_on(&on_a, set[1].port);
    let v = on_b.get_json(&api("add-app")).await.json();
    assert_eq!(v["component"], "authenticator_totp", "after A died: {v}");
    assert_eq!(v["secret"], secret.as_str(), "B shows another secret");
    let r = on_b
        .post_json(&api("add-app"), &json!({ "code": totp_code(&secret, 0) }))
        .await;
    assert_eq!(r.json()["component"], "redirect", "{}", r.describe());
    let token = r.set_cookie_value(SESSION_COOKIE).expect("a session");
    assert_passes_as_alice(&set[2], &token, "enrolled on B after A died").await;

    let out = set[1].cli(&["user", "devices", "alice"], None).await;
    assert!(out.ok(), "{}", out.all());
    assert_eq!(
        out.stdout.matches("totp").count(),
        1,
        "one authenticator app for one enrolment: {}",
        out.stdout
    );
    // The app works on C (which has the same device key) for a sign-in, and A comes back to
    // the same state.
    let on_c = set[2].browser();
    on_c.get_json(&api("strong")).await;
    on_c.post_json(&api("strong"), &json!({ "uid": "alice" }))
        .await;
    let r = on_c
        .post_json(&api("strong"), &json!({ "password": ALICE_PW }))
        .await;
    assert_eq!(
        r.json()["component"],
        "authenticator_validate",
        "{}",
        r.body
    );
    let r = on_c
        .post_json(&api("strong"), &json!({ "code": totp_code(&secret, 1) }))
        .await;
    assert_eq!(r.json()["component"], "redirect", "{}", r.describe());
    set[0].start().await;
    assert_passes_as_alice(&set[0], &token, "A restarted").await;
}

/// Enrols an authenticator app for `uid` on `node` (the `add-app` flow); its base32 secret.
async fn enrol_totp(node: &Replica, uid: &str, pw: &str) -> String {
    let b = node.browser();
    b.get_json(&api("add-app")).await;
    b.post_json(&api("add-app"), &json!({ "uid": uid })).await;
    let v = b
        .post_json(&api("add-app"), &json!({ "password": pw }))
        .await
        .json();
    assert_eq!(v["component"], "authenticator_totp", "{v}");
    let secret = v["secret"].as_str().unwrap().to_string();
    let r = b
        .post_json(&api("add-app"), &json!({ "code": totp_code(&secret, 0) }))
        .await;
    assert_eq!(r.json()["component"], "redirect", "{}", r.describe());
    secret
}

/// The `strong` sign-in (password, then the app's `code`) on `node`; the answer to the code.
async fn totp_sign_in(node: &Replica, uid: &str, pw: &str, code: &str) -> Resp {
    let b = node.browser();
    b.get_json(&api("strong")).await;
    b.post_json(&api("strong"), &json!({ "uid": uid })).await;
    let r = b
        .post_json(&api("strong"), &json!({ "password": pw }))
        .await;
    assert_eq!(
        r.json()["component"],
        "authenticator_validate",
        "{}",
        r.body
    );
    b.post_json(&api("strong"), &json!({ "code": code })).await
}

/// Captures the flow cookie and posts `body` as the step that ends the sign-in.
async fn final_step(b: &Browser, body: &Value) -> (String, Resp) {
    let flow = b
        .cookie(&b.url("/.portcullis/"), FLOW_COOKIE)
        .expect("a flow cookie");
    (flow, b.post_json(&api_path(), body).await)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replayed_flow_step_is_refused_on_every_replica() {
    let set = Replicas::start(3).await;
    let b = set[0].browser();
    b.get_json(&api_path()).await;
    b.post_json(&api_path(), &json!({ "uid": "alice" })).await;
    let (flow, r) = final_step(&b, &json!({ "password": ALICE_PW })).await;
    assert!(
        r.set_cookie_value(SESSION_COOKIE).is_some(),
        "{}",
        r.describe()
    );
    // The finished step again, on each replica, as the flow cookie it was sent with, as JSON
    // and as a form.
    for node in &set.nodes {
        for face in ["json", "html"] {
            let replay = node.browser();
            replay.add_cookie(&replay.url("/"), &format!("{FLOW_COOKIE}={flow}; Path=/"));
            let r = match face {
                "json" => {
                    replay
                        .post_json(&api_path(), &json!({ "password": ALICE_PW }))
                        .await
                }
                _ => {
                    replay
                        .post_form(
                            &flow_path(),
                            &[("stage", "password"), ("password", ALICE_PW)],
                        )
                        .await
                }
            };
            assert!(
                r.set_cookie_value(SESSION_COOKIE).is_none(),
                "a replayed {face} step signed in on {}: {}",
                node.name,
                r.describe()
            );
            assert!(r.status < 500, "{face} on {}: {}", node.name, r.describe());
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replica_with_another_device_key_is_refused_and_the_others_go_on() {
    let mut set = Replicas::start(2).await;
    let s = api_sign_in(&set[0].browser(), "alice", ALICE_PW).await;
    // C with a device key of its own (made at its first start), as a forgotten copy gives.
    set.add().await;
    let out = set[2].start_must_fail().await;
    assert_ne!(out.code, Some(0), "{}", out.all());
    assert!(
        out.stderr
            .contains("every replica needs the same device key file"),
        "{}",
        out.all()
    );
    assert!(
        out.stderr.contains(&set[2].data_dir.display().to_string()),
        "the message names the file: {}",
        out.all()
    );
    for node in &set.nodes[..2] {
        assert_passes_as_alice(node, &s.token, "beside a refused replica").await;
    }
}

// ---------------------------------------------------------------------------------------------
// The database restarted under load
// ---------------------------------------------------------------------------------------------

/// What one request of the load got.
#[derive(Debug, Clone)]
struct Answer {
    at: Instant,
    what: &'static str,
    replica: usize,
    status: u16,
    took: Duration,
    body: String,
}

/// A finished sign-in: its session and the flow cookie of its last step.
#[derive(Debug, Clone)]
struct Made {
    token: String,
    flow: String,
}

/// One JSON sign-in of alice on `port` (the replica `replica`), each answer recorded; the
/// session when the last step answered one.
async fn load_sign_in(port: u16, replica: usize, log: &Mutex<Vec<Answer>>) -> Option<Made> {
    let b = Browser::new(port);
    let steps = [
        json!(null),
        json!({ "uid": "alice" }),
        json!({ "password": ALICE_PW }),
    ];
    let mut flow = String::new();
    for (i, body) in steps.iter().enumerate() {
        if i == 2 {
            flow = b
                .cookie(&b.url("/.portcullis/"), FLOW_COOKIE)
                .unwrap_or_default();
        }
        let started = Instant::now();
        let r = if body.is_null() {
            b.get_json(&api_path()).await
        } else {
            b.post_json(&api_path(), body).await
        };
        log.lock().unwrap().push(Answer {
            at: started,
            what: ["start", "uid", "password"][i],
            replica,
            status: r.status,
            took: started.elapsed(),
            body: r.body.chars().take(300).collect(),
        });
        if r.status != 200 {
            return None;
        }
        if i == 2 {
            return r
                .set_cookie_value(SESSION_COOKIE)
                .map(|token| Made { token, flow });
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread")]
async fn the_database_restarted_under_load_loses_nothing_answered_and_replicas_reconnect() {
    let server = tokio::task::block_in_place(portcullis::store::pg_test_server::dedicated);
    let set = Replicas::start_on(
        &server,
        2,
        Setup {
            extra_toml: TOTP_FLOWS.into(),
            ..Setup::default()
        },
    )
    .await;
    // Before the load: bob enrols an authenticator app on A and signs in with it on B.
    let secret = enrol_totp(&set[0], "bob", BOB_PW).await;
    let used_code = totp_code(&secret, 1);
    let r = totp_sign_in(&set[1], "bob", BOB_PW, &used_code).await;
    assert_eq!(r.json()["component"], "redirect", "{}", r.describe());
    let ports: Vec<u16> = set.nodes.iter().map(|n| n.port).collect();
    let log = Arc::new(Mutex::new(Vec::<Answer>::new()));
    let made = Arc::new(Mutex::new(Vec::<(Instant, Made)>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (log, made, stop) = (log.clone(), made.clone(), stop.clone());
        tokio::spawn(async move {
            let mut i = 0usize;
            while !stop.load(Ordering::SeqCst) {
                let replica = i % 2;
                if let Some(m) = load_sign_in(ports[replica], replica, &log).await {
                    made.lock().unwrap().push((Instant::now(), m));
                }
                // A signed-in request with the newest session, on the other replica: it never
                // needs the database.
                let newest = made.lock().unwrap().last().map(|(_, m)| m.token.clone());
                if let Some(token) = newest {
                    let other = 1 - replica;
                    let started = Instant::now();
                    let r = Raw::new(ports[other])
                        .get_with_token("/secret", &token, "application/json")
                        .await;
                    log.lock().unwrap().push(Answer {
                        at: started,
                        what: "signed-in",
                        replica: other,
                        status: r.status,
                        took: started.elapsed(),
                        body: r.body.chars().take(300).collect(),
                    });
                }
                i += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let count = |made: &Mutex<Vec<(Instant, Made)>>| made.lock().unwrap().len();
    assert!(
        poll_until(Duration::from_secs(30), || count(&made) >= 4).await,
        "the load made no sessions: {:?}",
        log.lock().unwrap()
    );
    let stopping = Instant::now();
    tokio::task::block_in_place(|| server.stop());
    let stopped = Instant::now();
    // The outage lasts until the load has been answered during it on both replicas.
    let answered_during = |log: &Mutex<Vec<Answer>>, replica: usize| {
        log.lock()
            .unwrap()
            .iter()
            .any(|a| a.at > stopped && a.replica == replica && a.what != "signed-in")
    };
    assert!(
        poll_until(Duration::from_secs(30), || answered_during(&log, 0)
            && answered_during(&log, 1))
        .await,
        "no answers while the database was down: {:?}",
        log.lock().unwrap()
    );
    // A person in a browser meanwhile: a page that says the service is unavailable.
    let b = set[0].browser();
    let first = b.get_html(&flow_path()).await;
    let r = if first.status == 200 {
        submit(&b, &form_page(&first), &[("uid", "alice")]).await
    } else {
        first
    };
    assert_eq!(r.status, 503, "HTML during the outage: {}", r.describe());
    assert!(
        r.content_type().starts_with("text/html"),
        "{}",
        r.describe()
    );
    assert!(!r.body.contains("panicked"), "{}", r.body);
    tokio::time::sleep(Duration::from_millis(500)).await;
    tokio::task::block_in_place(|| server.start_again());
    let restarted = Instant::now();
    let made_after = |made: &Mutex<Vec<(Instant, Made)>>| {
        made.lock()
            .unwrap()
            .iter()
            .filter(|(t, _)| *t > restarted)
            .count()
    };
    let reconnected = poll_until(Duration::from_secs(30), || made_after(&made) >= 6).await;
    stop.store(true, Ordering::SeqCst);
    load.await.unwrap();
    let log = log.lock().unwrap().clone();
    assert!(
        reconnected,
        "the replicas did not sign anyone in within 30 s of the database's restart: {:#?}",
        &log[log.len().saturating_sub(10)..]
    );

    for a in &log {
        // No hang, no crash: every answer came quickly and is a success or a clear 503.
        assert!(a.took < Duration::from_secs(5), "a slow answer: {a:?}");
        if a.what == "signed-in" {
            assert_eq!(
                a.status, 200,
                "a signed-in request needs no database: {a:?}"
            );
            continue;
        }
        match a.status {
            200 => {}
            503 => {
                assert!(
                    a.at > stopping && a.at < restarted + Duration::from_secs(10),
                    "a 503 outside the outage ({:?} after the stop, the restart {:?} after \
                     it): {a:?}\n{:#?}",
                    a.at.saturating_duration_since(stopped),
                    restarted - stopped,
                    log.iter()
                        .filter(|a| a.at > stopped)
                        .map(|a| (a.at - stopped, a.replica, a.what, a.status))
                        .collect::<Vec<_>>()
                );
                let v: Value = serde_json::from_str(&a.body)
                    .unwrap_or_else(|_| panic!("a 503 without a JSON body: {a:?}"));
                assert!(v["error"].is_string(), "{a:?}");
                assert!(!a.body.contains("panicked"), "{a:?}");
            }
            _ => panic!("neither a success nor a clear 503: {a:?}"),
        }
    }
    let outage: Vec<&Answer> = log.iter().filter(|a| a.status == 503).collect();
    assert!(!outage.is_empty(), "no 503 while the database was down");
    // After the first sign-in since the restart, every answer is good.
    let first_ok = made
        .lock()
        .unwrap()
        .iter()
        .map(|(t, _)| *t)
        .find(|t| *t > restarted);
    let first_ok = first_ok.unwrap();
    let late_failures: Vec<&Answer> = log
        .iter()
        .filter(|a| a.at > first_ok && a.status != 200)
        .collect();
    assert!(
        late_failures.is_empty(),
        "after reconnecting: {late_failures:#?}"
    );

    // The code accepted before the outage is still used on either replica.
    for node in &set.nodes {
        let r = totp_sign_in(node, "bob", BOB_PW, &used_code).await;
        let v = r.json();
        assert_eq!(
            v["component"], "authenticator_validate",
            "on {}: {v}",
            node.name
        );
        assert!(
            v["errors"][0]
                .as_str()
                .unwrap_or_default()
                .contains("already used"),
            "a code accepted before the restart, on {}: {v}",
            node.name
        );
    }
    // Every session answered, before or after the outage, passes on both replicas; its last
    // step, replayed on either, makes no second session.
    let made = made.lock().unwrap().clone();
    for (_, m) in &made {
        for node in &set.nodes {
            assert_passes_as_alice(node, &m.token, "a session answered during the load").await;
        }
    }
    for (_, m) in [made.first().unwrap(), made.last().unwrap()] {
        for node in &set.nodes {
            let replay = node.browser();
            replay.add_cookie(
                &replay.url("/"),
                &format!("{FLOW_COOKIE}={}; Path=/", m.flow),
            );
            let r = replay
                .post_json(&api_path(), &json!({ "password": ALICE_PW }))
                .await;
            assert!(
                r.set_cookie_value(SESSION_COOKIE).is_none(),
                "a replayed step after the restart: {}",
                r.describe()
            );
        }
    }
    // Sign-outs still reach the other replica after the reconnect.
    let (_, last) = made.last().unwrap();
    let r = Raw::new(set[1].port)
        .http
        .post(Raw::new(set[1].port).url("/.portcullis/api/logout"))
        .header("content-type", "application/json")
        .header("accept", "application/json")
        .header("cookie", format!("{SESSION_COOKIE}={}", last.token))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let signed_out = Instant::now();
    loop {
        let r = with_token(&set[0], &last.token).await;
        if r.status == 401 {
            break;
        }
        assert!(
            signed_out.elapsed() < PROPAGATION,
            "A still honours a session signed out on B after the database's restart: {}",
            r.describe()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

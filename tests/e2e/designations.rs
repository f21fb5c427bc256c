//! Who may start which flow, through both faces: a signed-in user is not signed in again, nor
//! enrolled or recovered; a visitor opening a flow for signed-in users signs in first and
//! comes back, then runs it as themselves without being asked who they are.

use crate::harness::*;
use serde_json::json;

const SETTINGS: &str = "check-password";
const LEAVE: &str = "leave";
const SIGNUP: &str = "signup";
const RECOVER: &str = "recover";

fn setup() -> Setup {
    Setup {
        extra_toml: format!(
            r#"
[[flows]]
slug = "{SETTINGS}"
title = "Confirm your password"
designation = "stage_configuration"
stages = ["identify", "password"]

[[flows]]
slug = "{LEAVE}"
title = "Delete your account"
designation = "unenrollment"
stages = ["identify", "password"]

[[flows]]
slug = "{SIGNUP}"
title = "Sign up"
designation = "enrollment"
stages = ["nickname"]

[[flows]]
slug = "{RECOVER}"
title = "Forgot password"
designation = "recovery"
stages = ["identify", "password", "login"]

[stages.nickname]
kind = "prompt"
fields = [{{ key = "nickname", label = "Nickname" }}]
"#
        ),
        ..Setup::default()
    }
}

fn html(slug: &str) -> String {
    format!("/.portcullis/flow/{slug}")
}

fn api(slug: &str) -> String {
    format!("/.portcullis/api/flow/{slug}")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_visitor_at_a_settings_flow_signs_in_first_and_comes_back_to_it_as_themselves() {
    let gw = Gateway::start_with(setup()).await;
    for slug in [SETTINGS, LEAVE] {
        let b = gw.browser();
        let rd = gw.url("/after");
        let r = b.get_html(&format!("{}?rd={}", html(slug), pct(&rd))).await;
        assert_eq!(r.status, 302, "{slug}: {}", r.describe());
        assert!(
            r.set_cookie(FLOW_COOKIE).is_none(),
            "{slug}: nothing started"
        );
        let login = r.location();
        let back = format!("{}?rd={}", gw.url(&html(slug)), pct(&rd));
        assert_eq!(
            login,
            format!("{}?rd={}", flow_path(), pct(&back)),
            "{slug}"
        );

        let done = html_sign_in_from(&b, &login, "alice", ALICE_PW).await;
        assert_eq!(done.location_absolute(), back, "{slug}: back to the flow");
        let page = form_page(&b.get_html(&back).await);
        // Straight to the password: never asked who they are, and no "start over".
        assert!(has_input(&page.html, "password"), "{slug}:\n{}", page.html);
        assert!(!has_input(&page.html, "uid"), "{slug}");
        assert!(!page.html.contains("start_over"), "{slug}:\n{}", page.html);
        assert!(!page.html.contains("one more step"), "{slug}");
        let r = submit(&b, &page, &[("password", ALICE_PW)]).await;
        assert_eq!(r.status, 303, "{slug}: {}", r.describe());
        assert_eq!(r.location_absolute(), rd, "{slug}");
        // Still signed in as alice.
        let echo = b.get_json("/who").await.echo();
        assert_eq!(echo.header("remote-user"), Some("alice"), "{slug}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn json_a_settings_flow_needs_a_session_then_runs_for_its_user() {
    let gw = Gateway::start_with(setup()).await;
    let b = gw.browser();
    let r = b.get_json(&api(SETTINGS)).await;
    assert_eq!(r.status, 401, "{}", r.describe());
    let v = r.json();
    assert_eq!(v["error"], "sign_in_required", "{v}");
    let login = v["login"].as_str().unwrap_or_default();
    assert!(login.starts_with(&format!("{}?rd=", flow_path())), "{v}");
    assert!(r.set_cookie(FLOW_COOKIE).is_none());
    // Posting to it without having started anything starts nothing.
    let r = b
        .post_json(&api(SETTINGS), &json!({ "uid": "alice" }))
        .await;
    assert_eq!(r.status, 410, "{}", r.describe());

    api_sign_in(&b, "alice", ALICE_PW).await;
    let r = b.get_json(&api(SETTINGS)).await;
    assert_eq!(r.status, 200, "{}", r.describe());
    let v = r.json();
    assert_eq!(v["component"], "password", "{v}");
    assert!(v.get("actions").is_none(), "no start over: {v}");
    let r = b
        .post_json(&api(SETTINGS), &json!({ "password": WRONG_PW }))
        .await;
    assert_eq!(r.json()["errors"][0], "Invalid username or password.");
    let r = b
        .post_json(&api(SETTINGS), &json!({ "password": ALICE_PW }))
        .await;
    assert_eq!(r.json()["component"], "redirect", "{}", r.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_signed_in_user_is_not_signed_in_enrolled_or_recovered_again() {
    let gw = Gateway::start_with(setup()).await;
    let (b, _) = alice_browser(&gw).await;
    let rd = gw.url("/dash");
    // (flow, HTML status, what the HTML page says or where it goes)
    let table = [
        (FLOW, 302, ""),
        (SIGNUP, 409, "Sign out to create another account"),
        (RECOVER, 409, "Change your password from your settings"),
    ];
    for (slug, status, says) in table {
        let r = b.get_html(&format!("{}?rd={}", html(slug), pct(&rd))).await;
        assert_eq!(r.status, status, "{slug}: {}", r.describe());
        assert!(
            r.set_cookie(FLOW_COOKIE).is_none(),
            "{slug}: nothing started"
        );
        if status == 302 {
            assert_eq!(r.location_absolute(), rd, "{slug}: goes on to rd");
        } else {
            assert!(r.body.contains(says), "{slug}: {}", r.body);
            assert!(
                r.body.contains(">Continue</a>"),
                "{slug}: a way on: {}",
                r.body
            );
        }
        let r = b.get_json(&format!("{}?rd={}", api(slug), pct(&rd))).await;
        assert_eq!(r.status, 409, "{slug}: {}", r.describe());
        let v = r.json();
        assert_eq!(v["error"], "already_signed_in", "{slug}: {v}");
        assert_eq!(v["to"], rd, "{slug}: {v}");
    }
    // Signed out, each of them starts.
    let r = b.post_json("/.portcullis/api/logout", &json!({})).await;
    assert_eq!(r.status, 200);
    for slug in [FLOW, SIGNUP, RECOVER] {
        let r = b.get_json(&api(slug)).await;
        assert_eq!(r.status, 200, "{slug}: {}", r.describe());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_settings_flow_goes_on_only_in_the_session_that_started_it() {
    let gw = Gateway::start_with(setup()).await;
    let (alice, _) = alice_browser(&gw).await;
    let r = alice.get_json(&api(LEAVE)).await;
    assert_eq!(r.json()["component"], "password");
    let flow = alice
        .cookie(&gw.url("/.portcullis/"), FLOW_COOKIE)
        .expect("flow cookie");

    // (who holds alice's flow cookie, what they have besides)
    let bob = gw.browser();
    api_sign_in(&bob, "bob", BOB_PW).await;
    let nobody = gw.browser();
    for (what, b) in [("bob's browser", &bob), ("no session", &nobody)] {
        b.add_cookie(
            &gw.url("/.portcullis/"),
            &format!("{FLOW_COOKIE}={flow}; Path=/.portcullis"),
        );
        let r = b
            .post_json(&api(LEAVE), &json!({ "password": ALICE_PW }))
            .await;
        assert_eq!(r.status, 410, "{what}: {}", r.describe());
    }
    // Signed out, alice's own execution is gone too.
    let r = alice.post_json("/.portcullis/api/logout", &json!({})).await;
    assert_eq!(r.status, 200);
    alice.add_cookie(
        &gw.url("/.portcullis/"),
        &format!("{FLOW_COOKIE}={flow}; Path=/.portcullis"),
    );
    let r = alice
        .post_json(&api(LEAVE), &json!({ "password": ALICE_PW }))
        .await;
    assert_eq!(r.status, 410, "after sign-out: {}", r.describe());
}

/// Attack: a tab whose session another tab signed out (from the settings page) keeps its
/// cookies. With them it can neither start a flow for signed-in users nor go on with one it
/// had started: nothing runs as the signed-out user, and the account stays.
#[tokio::test(flavor = "multi_thread")]
async fn a_session_signed_out_from_another_tab_cannot_start_or_go_on_with_a_settings_flow() {
    let gw = Gateway::start_with(setup()).await;
    let (stale, _) = alice_browser(&gw).await;
    let (other, _) = alice_browser(&gw).await;
    // The stale tab starts deleting the account, then the other tab signs it out.
    let r = stale.get_json(&api(LEAVE)).await;
    assert_eq!(r.json()["component"], "password", "{}", r.body);
    let s = other.get_json("/.portcullis/api/settings").await.json();
    let r = other
        .post_json(
            "/.portcullis/api/settings",
            &json!({ "csrf_token": s["csrf_token"], "action": "sign_out_others" }),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(r.json()["ended_sessions"], 1);

    let r = stale
        .post_json(&api(LEAVE), &json!({ "password": ALICE_PW }))
        .await;
    assert_ne!(r.status, 200, "went on after sign-out: {}", r.describe());
    assert!(!r.body.contains("\"redirect\""), "{}", r.body);
    // (face, flow): none starts for the signed-out session; each asks to sign in.
    for slug in [SETTINGS, LEAVE] {
        let r = stale.get_json(&api(slug)).await;
        assert_eq!(r.status, 401, "JSON {slug}: {}", r.describe());
        assert_eq!(r.json()["error"], "sign_in_required", "{slug}");
        let r = stale.get_html(&html(slug)).await;
        assert_eq!(r.status, 302, "HTML {slug}: {}", r.describe());
        assert!(
            r.location().starts_with(&format!("{}?rd=", flow_path())),
            "HTML {slug}: {}",
            r.describe()
        );
    }
    // alice still exists and her other tab is still signed in.
    let r = other.get_json("/.portcullis/api/settings").await;
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(r.json()["profile"]["username"], "alice");
}

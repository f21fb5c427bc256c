//! Sign-up end to end: `portcullis invite create` prints a link, the invited person enrols
//! through it in either face and lands signed in; the "Sign up" link of an identification
//! stage; and the attacks on invitations over the wire.

use crate::harness::*;
use serde_json::json;

const INVALID_INVITATION: &str = "This invitation is not valid";
const PW: &str = "Carol-new-passphrase-4242";

fn setup() -> Setup {
    Setup {
        extra_toml: r#"
[[flows]]
slug = "enroll"
title = "Sign up"
designation = "enrollment"
stages = ["invite", "signup", "write", "login"]

[[flows]]
slug = "open"
title = "Sign up"
designation = "enrollment"
stages = ["signup", "write", "login"]

[[flows]]
slug = "signin-or-up"
title = "Sign in"
designation = "authentication"
stages = ["identify_signup", "password", "login"]

[stages.identify_signup]
kind = "identification"
enrollment_flow = "open"

[stages.invite]
kind = "invitation"

[stages.signup]
kind = "prompt"
fields = [
  { key = "username", label = "Username" },
  { key = "email", label = "Email", type = "email" },
  { key = "password", label = "Password", type = "password" },
  { key = "password_repeat", label = "Password (repeat)", type = "password" },
]

[stages.write]
kind = "user_write"

[[flows]]
slug = "change-password"
title = "New password"
designation = "authentication"
stages = ["identify", "password", "new_password", "write_existing", "login"]

[stages.new_password]
kind = "prompt"
fields = [
  { key = "password", label = "New password", type = "password" },
  { key = "password_repeat", label = "Repeat", type = "password" },
]

[stages.write_existing]
kind = "user_write"
user_creation_mode = "never_create"
"#
        .into(),
        ..Setup::default()
    }
}

/// `invite create ...`: the link's path and query, and the invitation's id.
async fn invite(gw: &Gateway, args: &[&str]) -> (String, String) {
    let mut all = vec!["invite", "create"];
    all.extend_from_slice(args);
    let out = gw.cli(&all, None).await;
    assert!(out.ok(), "{}", out.all());
    let link = out
        .stdout
        .lines()
        .find(|l| l.contains("?itoken="))
        .unwrap_or_else(|| panic!("no link in {}", out.all()));
    let url = url::Url::parse(link.trim()).unwrap();
    let id = out
        .stdout
        .split_whitespace()
        .skip_while(|w| *w != "invitation")
        .nth(1)
        .unwrap_or_else(|| panic!("no id in {}", out.all()))
        .to_string();
    assert!(!gw.logs().contains(url.query().unwrap()), "token logged");
    (format!("{}?{}", url.path(), url.query().unwrap()), id)
}

fn value_of(v: &serde_json::Value, name: &str) -> Option<String> {
    v["fields"]
        .as_array()?
        .iter()
        .find(|f| f["name"] == name)?
        .get("value")?
        .as_str()
        .map(str::to_string)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_invited_colleague_signs_up_in_the_html_face_and_lands_signed_in() {
    let gw = Gateway::start_with(setup()).await;
    let (link, _) = invite(&gw, &["--email", "carol@example.com", "--group", "dev"]).await;
    assert!(
        link.starts_with("/.portcullis/flow/enroll?itoken="),
        "{link}"
    );
    let b = gw.browser();
    let page = form_page(&b.get_html(&b.url_on(APP, &link)).await);
    assert_eq!(
        input_value(&page.html, "email").as_deref(),
        Some("carol@example.com")
    );
    let r = submit(
        &b,
        &page,
        &[
            ("username", "Carol"),
            ("email", "carol@example.com"),
            ("password", PW),
            ("password_repeat", PW),
        ],
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.describe());
    assert!(r.set_cookie_value(SESSION_COOKIE).is_some(), "signed in");
    let echo = b.get_json(&b.url_on(APP, "/")).await.echo();
    assert_eq!(echo.header("remote-user"), Some("carol"));
    assert_eq!(echo.header("remote-email"), Some("carol@example.com"));
    assert_eq!(echo.header("remote-groups"), Some("dev"));
    // She signs in again with the password she chose.
    api_sign_in(&gw.browser(), "carol", PW).await;
    // The link is spent.
    let again = gw.browser().get_html(&b.url_on(APP, &link)).await;
    assert!(again.body.contains(INVALID_INVITATION), "{}", again.body);
    let listed = gw.cli(&["invite", "list"], None).await;
    assert!(
        listed.stdout.contains("0 invitation(s)"),
        "{}",
        listed.all()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_multi_use_invitation_works_in_the_json_face_until_revoked() {
    let gw = Gateway::start_with(setup()).await;
    let (link, id) = invite(&gw, &["--group", "dev", "--multi-use", "--expires", "2h"]).await;
    let api_link = link.replace("/.portcullis/flow/", "/.portcullis/api/flow/");
    for name in ["carol", "dave"] {
        let b = gw.browser();
        let v = b.get_json(&b.url_on(APP, &api_link)).await.json();
        assert_eq!(v["component"], "prompt", "{v}");
        let url = b.url_on(APP, "/.portcullis/api/flow/enroll");
        let email = format!("{name}@example.com");
        let r = b
            .post_json(
                &url,
                &json!({ "username": name, "email": email, "password": PW, "password_repeat": PW }),
            )
            .await;
        assert_eq!(r.json()["component"], "redirect", "{}", r.body);
        let echo = b.get_json(&b.url_on(APP, "/")).await.echo();
        assert_eq!(echo.header("remote-user"), Some(name));
    }
    let listed = gw.cli(&["invite", "list"], None).await;
    assert!(listed.stdout.contains(&id), "{}", listed.all());
    assert!(listed.stdout.contains("multi"), "{}", listed.all());
    let revoked = gw.cli(&["invite", "revoke", &id], None).await;
    assert!(revoked.ok(), "{}", revoked.all());
    let b = gw.browser();
    let v = b.get_json(&b.url_on(APP, &api_link)).await.json();
    assert_eq!(v["component"], "access_denied", "{v}");
    assert!(v["errors"][0]
        .as_str()
        .unwrap()
        .starts_with(INVALID_INVITATION));
    let again = gw.cli(&["invite", "revoke", &id], None).await;
    assert!(!again.ok(), "revoked twice: {}", again.all());
}

#[tokio::test(flavor = "multi_thread")]
async fn spoiled_links_and_taken_names_are_refused_over_the_wire() {
    let gw = Gateway::start_with(setup()).await;
    let (link, _) = invite(&gw, &["--email", "carol@example.com"]).await;
    let token = link.split_once("itoken=").unwrap().1.to_string();
    let (id, secret) = token.split_once('.').unwrap();
    let forged = [
        format!("{id}.{}", "A".repeat(secret.len())),
        format!("{id}.{}", secret.to_uppercase()),
        id.to_string(),
        format!("{token}x"),
        pct(&format!(" {token}")),
        "".into(),
    ];
    for t in &forged {
        let b = gw.browser();
        let v = b
            .get_json(&b.url_on(APP, &format!("/.portcullis/api/flow/enroll?itoken={t}")))
            .await
            .json();
        assert_eq!(v["component"], "access_denied", "{t}: {v}");
    }
    // The real link still works, and the invitation's address cannot be swapped.
    let b = gw.browser();
    let api = b.url_on(APP, "/.portcullis/api/flow/enroll");
    let v = b
        .get_json(&b.url_on(APP, &format!("/.portcullis/api/flow/enroll?itoken={token}")))
        .await
        .json();
    assert_eq!(value_of(&v, "email").as_deref(), Some("carol@example.com"));
    let fields = |u: &str, e: &str| json!({ "username": u, "email": e, "password": PW, "password_repeat": PW });
    let v = b
        .post_json(&api, &fields("carol", "mallory@example.com"))
        .await
        .json();
    assert_eq!(v["component"], "prompt", "{v}");
    assert!(
        v["errors"][0]
            .as_str()
            .unwrap()
            .contains("carol@example.com"),
        "{v}"
    );
    // alice is taken, in any spelling.
    for taken in ["alice", "ALICE", "ａｌｉｃｅ"] {
        let v = b
            .post_json(&api, &fields(taken, "carol@example.com"))
            .await
            .json();
        let v = if v["component"] == "user_write" {
            v
        } else {
            panic!("{taken}: {v}")
        };
        assert_eq!(v["fields"][0]["name"], "username", "{v}");
        assert!(v["errors"][0].as_str().unwrap().contains("taken"), "{v}");
        // Back to the prompt for the next spelling: start over from the link.
        b.get_json(&b.url_on(APP, &format!("/.portcullis/api/flow/enroll?itoken={token}")))
            .await;
    }
    let v = b
        .post_json(&api, &fields("carol", "carol@example.com"))
        .await
        .json();
    assert_eq!(v["component"], "redirect", "{v}");
    api_sign_in(&gw.browser(), "alice", ALICE_PW).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_identification_stage_offers_sign_up_in_both_faces() {
    let gw = Gateway::start_with(setup()).await;
    let b = gw.browser();
    let html = b
        .get_html(&b.url_on(APP, "/.portcullis/flow/signin-or-up"))
        .await;
    let body = html.body.replace("&#x2f;", "/");
    assert!(
        body.contains(r#"<a href="/.portcullis/flow/open?rd=http%3A%2F%2Fapp.test"#),
        "{body}"
    );
    assert!(html.body.contains(">Sign up</a>"), "{}", html.body);
    let v = gw
        .browser()
        .get_json(&b.url_on(APP, "/.portcullis/api/flow/signin-or-up"))
        .await
        .json();
    assert_eq!(v["links"][0]["label"], "Sign up", "{v}");
    let href = v["links"][0]["href"].as_str().unwrap().to_string();
    // The link starts an open sign-up that signs the new user in.
    let b = gw.browser();
    let page = form_page(&b.get_html(&b.url_on(APP, &href)).await);
    let r = submit(
        &b,
        &page,
        &[
            ("username", "erin"),
            ("email", "erin@example.com"),
            ("password", PW),
            ("password_repeat", PW),
        ],
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.describe());
    let echo = b.get_json(&b.url_on(APP, "/")).await.echo();
    assert_eq!(echo.header("remote-user"), Some("erin"));
    // The default flow has no such link.
    let plain = gw.browser().get_html(&b.url_on(APP, &flow_path())).await;
    assert!(!plain.body.contains("Sign up"), "{}", plain.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn invite_create_refuses_a_flow_without_an_invitation_stage_and_bad_input() {
    let gw = Gateway::start_with(setup()).await;
    for (args, says) in [
        (vec!["--flow", FLOW], "has no invitation stage"),
        (vec!["--flow", "nosuch"], "no flow `nosuch`"),
        (vec!["--expires", "soon"], "--expires"),
        (vec!["--group", "a,b"], "comma"),
        (vec!["--email", "not-an-address"], "not an email address"),
    ] {
        let mut all = vec!["invite", "create"];
        all.extend(args.iter().copied());
        let out = gw.cli(&all, None).await;
        assert!(!out.ok(), "{args:?}: {}", out.all());
        assert!(out.all().contains(says), "{args:?}: {}", out.all());
    }
    let listed = gw.cli(&["invite", "list"], None).await;
    assert!(
        listed.stdout.contains("0 invitation(s)"),
        "{}",
        listed.all()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn two_browsers_posting_one_single_use_link_at_once_make_one_account() {
    let gw = Gateway::start_with(setup()).await;
    let (link, _) = invite(&gw, &["--group", "dev"]).await;
    let api_link = link.replace("/.portcullis/flow/", "/.portcullis/api/flow/");
    let (a, b) = (gw.browser(), gw.browser());
    for br in [&a, &b] {
        let v = br.get_json(&br.url_on(APP, &api_link)).await.json();
        assert_eq!(v["component"], "prompt", "{v}");
    }
    let url = a.url_on(APP, "/.portcullis/api/flow/enroll");
    let body = |n: &str| json!({ "username": n, "email": format!("{n}@example.com"), "password": PW, "password_repeat": PW });
    let (body_a, body_b) = (body("carol"), body("dave"));
    let (ra, rb) = tokio::join!(a.post_json(&url, &body_a), b.post_json(&url, &body_b));
    let components = [
        ra.json()["component"].clone(),
        rb.json()["component"].clone(),
    ];
    let won = components.iter().filter(|c| **c == "redirect").count();
    assert_eq!(won, 1, "{} / {}", ra.body, rb.body);
    assert!(
        components.iter().any(|c| *c == "access_denied"),
        "{} / {}",
        ra.body,
        rb.body
    );
    let users = gw.cli(&["user", "list"], None).await;
    let made = ["carol", "dave"]
        .iter()
        .filter(|n| users.stdout.contains(&format!("{n}\t")))
        .count();
    assert_eq!(made, 1, "{}", users.all());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_password_written_by_a_flow_ends_the_users_other_sessions_at_once() {
    let gw = Gateway::start_with(setup()).await;
    let (_, before) = alice_browser(&gw).await;
    assert_token_accepted(&gw, &before.token, "alice's session").await;
    let b = gw.browser();
    let api = b.url_on(APP, "/.portcullis/api/flow/change-password");
    b.get_json(&api).await;
    b.post_json(&api, &json!({ "uid": "alice" })).await;
    let v = b
        .post_json(&api, &json!({ "password": ALICE_PW }))
        .await
        .json();
    assert_eq!(v["component"], "prompt", "{v}");
    let r = b
        .post_json(&api, &json!({ "password": PW, "password_repeat": PW }))
        .await;
    assert_eq!(r.json()["component"], "redirect", "{}", r.body);
    let fresh = r.set_cookie_value(SESSION_COOKIE).expect("a new session");
    assert_token_refused(&gw, &before.token, "the session from before the change").await;
    assert_token_accepted(&gw, &fresh, "the session the change issued").await;
    api_sign_in(&gw.browser(), "alice", PW).await;
    assert!(!gw.logs().contains(PW), "the new password is logged");
}

#[tokio::test(flavor = "multi_thread")]
async fn invitations_made_while_the_gateway_is_down_work_once_it_runs() {
    let gw = Gateway::prepare(setup()).await;
    let (link, id) = invite(&gw, &["--email", "carol@example.com", "--flow", "enroll"]).await;
    let listed = gw.cli(&["invite", "list"], None).await;
    assert!(listed.stdout.contains(&id), "{}", listed.all());
    assert!(
        listed.stdout.contains("gateway not running"),
        "{}",
        listed.all()
    );
    assert!(
        !listed.stdout.contains(link.split_once('.').unwrap().1),
        "the list shows no token: {}",
        listed.all()
    );
    let gw = gw.launch().await;
    let b = gw.browser();
    let api_link = link.replace("/.portcullis/flow/", "/.portcullis/api/flow/");
    let v = b.get_json(&b.url_on(APP, &api_link)).await.json();
    assert_eq!(
        value_of(&v, "email").as_deref(),
        Some("carol@example.com"),
        "{v}"
    );
}

/// Attack on invitations as the visitor holding one: replaying a spent link once its account
/// is gone, a link revoked while its form is open, and fields the prompt does not ask for
/// (groups, attributes) posted beside the answers. No account appears that the invitation
/// does not allow, and nobody gets a group the invitation did not name.
#[tokio::test(flavor = "multi_thread")]
async fn spent_revoked_and_padded_invitations_make_no_account_and_grant_no_group() {
    let gw = Gateway::start_with(setup()).await;
    let enroll = "/.portcullis/api/flow/enroll";
    let answers = |name: &str| {
        json!({
            "username": name, "email": format!("{name}@example.com"),
            "password": PW, "password_repeat": PW,
        })
    };
    let padded = |name: &str, extra: serde_json::Value| {
        let mut v = answers(name);
        v.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        v
    };
    // Padded answers: the account has the invitation's group only.
    let (link, _) = invite(&gw, &["--group", "dev"]).await;
    let api_link = link.replace("/.portcullis/flow/", "/.portcullis/api/flow/");
    let b = gw.browser();
    assert_eq!(
        b.get_json(&b.url_on(APP, &api_link)).await.json()["component"],
        "prompt"
    );
    // Fields the prompt does not ask for: the whole answer is refused, the form stays.
    for extra in [
        json!({ "groups": "admins" }),
        json!({ "group": "admins" }),
        json!({ "attributes.role": "admin" }),
        json!({ "attributes": "x" }),
    ] {
        let r = b
            .post_json(&b.url_on(APP, enroll), &padded("carol", extra.clone()))
            .await;
        assert_eq!(r.status, 400, "{extra}: {}", r.describe());
        assert_eq!(r.json()["error"], "stage_mismatch", "{extra}");
    }
    let r = b.post_json(&b.url_on(APP, enroll), &answers("carol")).await;
    assert_eq!(r.json()["component"], "redirect", "{}", r.body);
    let echo = b.get_json(&b.url_on(APP, "/")).await.echo();
    let groups = echo.header("remote-groups").unwrap_or_default().to_string();
    assert_eq!(
        groups,
        "dev",
        "padded groups: {}",
        echo.header("remote-groups").unwrap_or_default()
    );

    // The account is removed; the spent link, replayed, makes nothing again.
    let out = gw.cli(&["user", "remove", "carol"], None).await;
    assert!(out.ok(), "{}", out.all());
    let again = gw.browser();
    let v = again.get_json(&again.url_on(APP, &api_link)).await.json();
    assert_eq!(
        v["component"], "access_denied",
        "replayed after deletion: {v}"
    );
    let r = again
        .post_json(&again.url_on(APP, enroll), &answers("carol"))
        .await;
    assert_ne!(r.json()["component"], "redirect", "{}", r.body);

    // Revoked while the form is open: the answers make no account.
    let (link, id) = invite(&gw, &["--group", "admins"]).await;
    let api_link = link.replace("/.portcullis/flow/", "/.portcullis/api/flow/");
    let b = gw.browser();
    assert_eq!(
        b.get_json(&b.url_on(APP, &api_link)).await.json()["component"],
        "prompt"
    );
    let out = gw.cli(&["invite", "revoke", &id], None).await;
    assert!(out.ok(), "{}", out.all());
    let r = b
        .post_json(&b.url_on(APP, enroll), &answers("mallory"))
        .await;
    assert_ne!(
        r.json()["component"],
        "redirect",
        "revoked mid-flow: {}",
        r.body
    );
    let listed = gw.cli(&["user", "list"], None).await.stdout;
    for name in ["carol", "mallory"] {
        assert!(
            !listed
                .lines()
                .any(|l| l.split_whitespace().next() == Some(name)),
            "{name} exists:\n{listed}"
        );
    }
}

/// Attack: an enrollment started by a visitor, posted into from a signed-in browser (the
/// visitor's flow cookie copied over, or the same browser having signed in in another tab
/// meanwhile). A signed-in user is never enrolled again: no account is made and the session
/// stays who it was.
#[tokio::test(flavor = "multi_thread")]
async fn a_signed_in_browser_cannot_finish_a_visitors_enrollment() {
    let gw = Gateway::start_with(setup()).await;
    let open = "/.portcullis/api/flow/open";
    let answers = |name: &str| {
        json!({
            "username": name, "email": format!("{name}@example.com"),
            "password": PW, "password_repeat": PW,
        })
    };
    // (what, how the signed-in browser comes to hold a visitor's enrollment)
    for (i, what) in ["copied cookie", "signed in meanwhile"]
        .into_iter()
        .enumerate()
    {
        let name = format!("mallory{i}");
        let visitor = gw.browser();
        let r = visitor.get_json(&visitor.url_on(APP, open)).await;
        assert_eq!(r.json()["component"], "prompt", "{what}: {}", r.body);
        let flow = visitor
            .cookie(&gw.url("/.portcullis/"), FLOW_COOKIE)
            .expect("flow cookie");
        let b = if i == 0 {
            alice_browser(&gw).await.0
        } else {
            // Signing in in another tab; the enrollment tab's flow cookie is put back.
            api_sign_in(&visitor, "alice", ALICE_PW).await;
            visitor
        };
        b.add_cookie(
            &gw.url("/.portcullis/"),
            &format!("{FLOW_COOKIE}={flow}; Path=/.portcullis"),
        );
        let r = b.post_json(&b.url_on(APP, open), &answers(&name)).await;
        assert_ne!(
            r.json()["component"],
            "redirect",
            "{what}: {}",
            r.describe()
        );
        let listed = gw.cli(&["user", "list"], None).await.stdout;
        assert!(
            !listed
                .lines()
                .any(|l| l.split_whitespace().next() == Some(name.as_str())),
            "{what}: {name} was made:\n{listed}"
        );
        let echo = b.get_json(&b.url_on(APP, "/")).await.echo();
        assert_eq!(echo.header("remote-user"), Some("alice"), "{what}");
    }
}

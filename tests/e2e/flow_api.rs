//! The JSON executor API of the sign-in flow.

use crate::harness::*;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread")]
async fn json_sign_in_returns_redirect_to_rd_and_session_cookie() {
    let gw = Gateway::start().await;
    let b = gw.browser();
    let rd = gw.url("/dash/board?tab=1");

    let r = b.get_json(&api_path_rd(Some(&rd))).await;
    assert_eq!(r.status, 200, "{}", r.describe());
    assert!(
        r.content_type().starts_with("application/json"),
        "{}",
        r.content_type()
    );
    let v = r.json();
    assert_eq!(v["flow"], FLOW, "{v}");
    assert_eq!(v["component"], "identification", "{v}");
    assert_eq!(v["errors"], json!([]), "{v}");
    let fields = v["fields"]
        .as_array()
        .unwrap_or_else(|| panic!("no fields: {v}"));
    assert_eq!(fields.len(), 1, "{v}");
    assert_eq!(fields[0]["name"], "uid", "{v}");
    assert_eq!(fields[0]["type"], "text", "{v}");
    assert_eq!(fields[0]["required"], true, "{v}");
    assert!(
        fields[0]["label"].as_str().is_some_and(|l| !l.is_empty()),
        "{v}"
    );
    let flow_cookie = r
        .set_cookie(FLOW_COOKIE)
        .unwrap_or_else(|| panic!("no flow cookie: {}", r.describe()));
    assert!(
        cookie_attrs(&flow_cookie).contains_key("httponly"),
        "{flow_cookie}"
    );
    assert!(r.set_cookie(SESSION_COOKIE).is_none());

    let r = b.post_json(&api_path(), &json!({ "uid": "alice" })).await;
    assert_eq!(r.status, 200, "{}", r.describe());
    let v = r.json();
    assert_eq!(v["flow"], FLOW, "{v}");
    assert_eq!(v["component"], "password", "{v}");
    assert_eq!(v["errors"], json!([]), "{v}");
    assert_eq!(v["fields"][0]["name"], "password", "{v}");
    assert_eq!(v["fields"][0]["type"], "password", "{v}");
    assert!(r.set_cookie_value(SESSION_COOKIE).is_none());

    let r = b
        .post_json(&api_path(), &json!({ "password": ALICE_PW }))
        .await;
    assert_eq!(r.status, 200, "{}", r.describe());
    let v = r.json();
    assert_eq!(v["flow"], FLOW, "{v}");
    assert_eq!(v["component"], "redirect", "{v}");
    assert_eq!(v["to"], rd, "{v}");
    let line = r
        .set_cookie(SESSION_COOKIE)
        .unwrap_or_else(|| panic!("{}", r.describe()));
    let attrs = cookie_attrs(&line);
    assert!(attrs.contains_key("httponly"), "{line}");
    assert_eq!(
        attrs.get("samesite").map(|s| s.to_ascii_lowercase()),
        Some("lax".into()),
        "{line}"
    );

    let echo = b.get_json("/dash/board?tab=1").await.echo();
    assert_eq!(echo.header("remote-user"), Some("alice"));
    assert_eq!(echo.header("remote-name"), Some("Alice A"));
}

#[tokio::test(flavor = "multi_thread")]
async fn json_sign_in_without_rd_goes_to_app_root() {
    let gw = Gateway::start().await;
    let b = gw.browser();
    let s = api_sign_in(&b, "alice", ALICE_PW).await;
    assert_eq!(s.to, gw.app_root());
}

#[tokio::test(flavor = "multi_thread")]
async fn json_sign_in_with_email_identifier() {
    let gw = Gateway::start().await;
    let b = gw.browser();
    let s = api_sign_in(&b, "alice@example.com", ALICE_PW).await;
    assert_eq!(s.final_json["component"], "redirect");
    let echo = b.get_json("/x").await.echo();
    assert_eq!(echo.header("remote-user"), Some("alice"));
    assert_eq!(echo.header("remote-email"), Some("alice@example.com"));
}

#[tokio::test(flavor = "multi_thread")]
async fn json_wrong_password_stays_at_password_with_error() {
    let gw = Gateway::start().await;
    let b = gw.browser();
    api_start(&b, APP, None).await;
    let r = b.post_json(&api_path(), &json!({ "uid": "alice" })).await;
    assert_eq!(r.json()["component"], "password");
    let r = b
        .post_json(&api_path(), &json!({ "password": WRONG_PW }))
        .await;
    assert_eq!(r.status, 200, "{}", r.describe());
    let v = r.json();
    assert_eq!(v["component"], "password", "{v}");
    assert_eq!(v["errors"], json!(["Invalid username or password."]), "{v}");
    assert!(
        r.set_cookie_value(SESSION_COOKIE).is_none(),
        "session after a wrong password"
    );
    assert!(!r.body.contains(WRONG_PW));
    // Not signed in.
    let r = b.get_json("/x").await;
    assert_eq!(r.status, 401, "{}", r.describe());
    // The right password still works afterwards (below the cancel threshold).
    let r = b
        .post_json(&api_path(), &json!({ "password": ALICE_PW }))
        .await;
    assert_eq!(r.json()["component"], "redirect", "{}", r.body);
    assert_eq!(
        b.get_json("/x").await.echo().header("remote-user"),
        Some("alice")
    );
}

/// Replaces the identifier the client typed (echoed back, e.g. "Signing in as ...") so two
/// answers can be compared byte for byte.
fn normalise(body: &str, uid: &str) -> String {
    body.replace(uid, "<UID>")
}

/// Headers that may legitimately differ between two answers (dates, the new flow cookie).
fn comparable_headers(r: &Resp) -> Vec<(String, String)> {
    let mut h: Vec<(String, String)> = r
        .headers
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "date" | "set-cookie"))
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    h.sort();
    h
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_user_gets_byte_identical_answers_to_wrong_password() {
    // Five wrong passwords from one address would trip regulation's address ban (its own
    // answers are compared in tests/e2e/regulation.rs): this compares the flow's.
    let gw = Gateway::start_with(Setup {
        extra_toml: "[regulation]\nmax_retries = 10\n".into(),
        ..Setup::default()
    })
    .await;
    // Same length identifiers, so even the lengths would give nothing away.
    let (known, unknown) = ("alice", "zelda");
    let kb = gw.browser();
    let ub = gw.browser();
    api_start(&kb, APP, None).await;
    api_start(&ub, APP, None).await;

    // Identification: the same answer whether the user exists or not.
    let k1 = kb.post_json(&api_path(), &json!({ "uid": known })).await;
    let u1 = ub.post_json(&api_path(), &json!({ "uid": unknown })).await;
    assert_eq!(k1.status, 200, "{}", k1.describe());
    assert_eq!(u1.status, k1.status);
    assert_eq!(k1.json()["component"], "password", "{}", k1.body);
    assert_eq!(
        normalise(&u1.body, unknown),
        normalise(&k1.body, known),
        "identification answers differ for an existing and a non-existing user"
    );
    assert_eq!(comparable_headers(&u1), comparable_headers(&k1));
    assert_eq!(
        u1.set_cookies().len(),
        k1.set_cookies().len(),
        "{:?} vs {:?}",
        u1.set_cookies(),
        k1.set_cookies()
    );

    // Password: a wrong password for alice and any password for zelda answer the same.
    let k2 = kb
        .post_json(&api_path(), &json!({ "password": WRONG_PW }))
        .await;
    let u2 = ub
        .post_json(&api_path(), &json!({ "password": WRONG_PW }))
        .await;
    assert_eq!(k2.status, 200, "{}", k2.describe());
    assert_eq!(u2.status, k2.status, "{}", u2.describe());
    let kv = k2.json();
    assert_eq!(kv["component"], "password", "{kv}");
    assert_eq!(
        kv["errors"],
        json!(["Invalid username or password."]),
        "{kv}"
    );
    assert_eq!(
        normalise(&u2.body, unknown),
        normalise(&k2.body, known),
        "unknown user and wrong password answer differently"
    );
    assert_eq!(comparable_headers(&u2), comparable_headers(&k2));
    assert!(u2.set_cookie_value(SESSION_COOKIE).is_none());

    // Alice's real password does not open zelda's (non-existent) account either.
    let u3 = ub
        .post_json(&api_path(), &json!({ "password": ALICE_PW }))
        .await;
    assert_eq!(u3.status, 200, "{}", u3.describe());
    assert_eq!(u3.json()["component"], "password", "{}", u3.body);
    assert_eq!(
        u3.json()["errors"],
        json!(["Invalid username or password."])
    );
    assert!(u3.set_cookie_value(SESSION_COOKIE).is_none());

    // HTML face: the same page for both.
    let kh = gw.browser();
    let uh = gw.browser();
    let kp = form_page(&kh.get_html(&flow_path()).await);
    let up = form_page(&uh.get_html(&flow_path()).await);
    let kp = next_page(&kh, &submit(&kh, &kp, &[("uid", known)]).await).await;
    let up = next_page(&uh, &submit(&uh, &up, &[("uid", unknown)]).await).await;
    let strip_csrf = |p: &FormPage, uid: &str| normalise(&p.html.replace(&p.csrf, "<CSRF>"), uid);
    assert_eq!(strip_csrf(&up, unknown), strip_csrf(&kp, known));
    let kr = submit(&kh, &kp, &[("password", WRONG_PW)]).await;
    let ur = submit(&uh, &up, &[("password", WRONG_PW)]).await;
    assert_eq!(kr.status, 200);
    assert_eq!(ur.status, kr.status);
    assert!(kr.body.contains(INVALID_MSG));
    assert_eq!(
        normalise(&ur.body.replace(&up.csrf, "<CSRF>"), unknown),
        normalise(&kr.body.replace(&kp.csrf, "<CSRF>"), known)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_attempts_before_cancel_cancels_the_execution() {
    let gw = Gateway::start().await;
    let b = gw.browser();
    api_start(&b, APP, None).await;
    b.post_json(&api_path(), &json!({ "uid": "alice" })).await;
    let flow_id = b
        .cookie(&gw.url("/.portcullis/api/flow/x"), FLOW_COOKIE)
        .expect("flow cookie");

    for i in 1..MAX_FAILURES {
        let r = b
            .post_json(&api_path(), &json!({ "password": WRONG_PW }))
            .await;
        assert_eq!(r.status, 200, "{}", r.describe());
        let v = r.json();
        assert_eq!(v["component"], "password", "attempt {i}: {v}");
        assert_eq!(
            v["errors"],
            json!(["Invalid username or password."]),
            "attempt {i}: {v}"
        );
    }
    let r = b
        .post_json(&api_path(), &json!({ "password": WRONG_PW }))
        .await;
    assert_eq!(r.status, 200, "{}", r.describe());
    let v = r.json();
    assert_eq!(v["flow"], FLOW, "{v}");
    assert_eq!(
        v["component"], "access_denied",
        "attempt {MAX_FAILURES} must cancel: {v}"
    );
    let errors = v["errors"].as_array().unwrap_or_else(|| panic!("{v}"));
    assert!(!errors.is_empty(), "{v}");
    assert!(r.set_cookie_value(SESSION_COOKIE).is_none());

    // The right password on the cancelled execution does nothing, even replaying the old
    // flow cookie by hand.
    let raw = gw.raw();
    let resp = Resp::read(
        raw.http
            .post(gw.url(&api_path()))
            .header("cookie", format!("{FLOW_COOKIE}={flow_id}"))
            .header("content-type", "application/json")
            .body(json!({ "password": ALICE_PW }).to_string())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(
        resp.set_cookie_value(SESSION_COOKIE).is_none(),
        "{}",
        resp.describe()
    );
    assert_ne!(
        resp.json().get("component").and_then(Value::as_str),
        Some("redirect"),
        "{}",
        resp.describe()
    );
    assert_eq!(
        resp.status,
        410,
        "expected execution_expired: {}",
        resp.describe()
    );
    assert_eq!(resp.json()["error"], "execution_expired");

    // Same through the jar (the cancel cleared the flow cookie, or the execution is gone).
    let r = b
        .post_json(&api_path(), &json!({ "password": ALICE_PW }))
        .await;
    assert!(
        r.set_cookie_value(SESSION_COOKIE).is_none(),
        "{}",
        r.describe()
    );
    assert_ne!(
        r.json().get("component").and_then(Value::as_str),
        Some("redirect")
    );

    // A new execution starts over.
    let r = b.get_json(&api_path()).await;
    assert_eq!(r.json()["component"], "identification", "{}", r.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn stage_skipping_is_refused_with_stage_mismatch() {
    let gw = Gateway::start().await;
    let b = gw.browser();
    api_start(&b, APP, None).await;

    let r = b
        .post_json(&api_path(), &json!({ "password": ALICE_PW }))
        .await;
    assert_eq!(r.status, 400, "{}", r.describe());
    assert_eq!(r.json()["error"], "stage_mismatch", "{}", r.body);
    assert!(r.set_cookie_value(SESSION_COOKIE).is_none());

    // Answering both stages in one go is a skip too.
    let r = b
        .post_json(
            &api_path(),
            &json!({ "uid": "alice", "password": ALICE_PW }),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.describe());
    assert_eq!(r.json()["error"], "stage_mismatch", "{}", r.body);
    assert!(r.set_cookie_value(SESSION_COOKIE).is_none());

    // Still at identification, nobody signed in.
    let r = b.get_json(&api_path()).await;
    assert_eq!(r.json()["component"], "identification", "{}", r.body);
    assert_eq!(b.get_json("/x").await.status, 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn identification_replay_at_password_stage_is_refused() {
    let gw = Gateway::start().await;
    let b = gw.browser();
    api_start(&b, APP, None).await;
    let r = b.post_json(&api_path(), &json!({ "uid": "alice" })).await;
    assert_eq!(r.json()["component"], "password");

    // Replaying identification (to switch to bob after alice was identified) is refused.
    let r = b.post_json(&api_path(), &json!({ "uid": "bob" })).await;
    assert_eq!(r.status, 400, "{}", r.describe());
    assert_eq!(r.json()["error"], "stage_mismatch", "{}", r.body);

    // bob's password does not work for the alice execution...
    let r = b
        .post_json(&api_path(), &json!({ "password": BOB_PW }))
        .await;
    assert_eq!(r.json()["component"], "password", "{}", r.body);
    assert_eq!(r.json()["errors"], json!(["Invalid username or password."]));
    // ...alice's does, and the session is alice's.
    let r = b
        .post_json(&api_path(), &json!({ "password": ALICE_PW }))
        .await;
    assert_eq!(r.json()["component"], "redirect", "{}", r.body);
    assert_eq!(
        b.get_json("/x").await.echo().header("remote-user"),
        Some("alice")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn json_post_without_json_content_type_is_415() {
    let gw = Gateway::start().await;
    let b = gw.browser();
    api_start(&b, APP, None).await;
    for ct in [
        Some("application/x-www-form-urlencoded"),
        Some("text/plain"),
        Some("multipart/form-data; boundary=x"),
        None,
    ] {
        let mut rb = b.http.post(gw.url(&api_path())).body(r#"{"uid":"alice"}"#);
        if let Some(ct) = ct {
            rb = rb.header("content-type", ct);
        }
        let r = b.send(rb).await;
        assert_eq!(r.status, 415, "content type {ct:?}: {}", r.describe());
    }
    // With a charset parameter it is still JSON.
    let r = b
        .send(
            b.http
                .post(gw.url(&api_path()))
                .header("content-type", "application/json; charset=utf-8")
                .body(r#"{"uid":"alice"}"#),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(r.json()["component"], "password", "{}", r.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn json_post_without_live_execution_is_410() {
    let gw = Gateway::start().await;
    let b = gw.browser();
    let r = b.post_json(&api_path(), &json!({ "uid": "alice" })).await;
    assert_eq!(r.status, 410, "{}", r.describe());
    assert_eq!(r.json()["error"], "execution_expired", "{}", r.body);

    // A made-up flow cookie is no better.
    let raw = gw.raw();
    let r = Resp::read(
        raw.http
            .post(gw.url(&api_path()))
            .header(
                "cookie",
                format!("{FLOW_COOKIE}=made-up-execution-id-0123456789"),
            )
            .header("content-type", "application/json")
            .body(r#"{"uid":"alice"}"#)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 410, "{}", r.describe());
    assert_eq!(r.json()["error"], "execution_expired", "{}", r.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_flow_is_404() {
    let gw = Gateway::start().await;
    let b = gw.browser();
    let r = b.get_json("/.portcullis/api/flow/no-such-flow").await;
    assert_eq!(r.status, 404, "{}", r.describe());
    let r = b
        .post_json(
            "/.portcullis/api/flow/no-such-flow",
            &json!({ "uid": "alice" }),
        )
        .await;
    assert_eq!(r.status, 404, "{}", r.describe());
    let r = b.get_html("/.portcullis/flow/no-such-flow").await;
    assert_eq!(r.status, 404, "{}", r.describe());
}

#[tokio::test(flavor = "multi_thread")]
async fn execution_and_session_survive_a_gateway_restart() {
    let mut gw = Gateway::start().await;
    let b = gw.browser();
    api_start(&b, APP, Some(&pct(&gw.url("/after-restart?ok=1")))).await;
    let r = b.post_json(&api_path(), &json!({ "uid": "alice" })).await;
    assert_eq!(r.json()["component"], "password", "{}", r.body);
    let pid_before = gw.pid();

    gw.restart().await;
    assert_ne!(gw.pid(), pid_before, "the gateway process was not replaced");

    // Same cookie jar: the execution is still at the password stage, rd kept.
    let r = b.get_json(&api_path()).await;
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(
        r.json()["component"],
        "password",
        "execution lost in the restart: {}",
        r.body
    );
    let r = b
        .post_json(&api_path(), &json!({ "password": ALICE_PW }))
        .await;
    assert_eq!(r.status, 200, "{}", r.describe());
    let v = r.json();
    assert_eq!(v["component"], "redirect", "{v}");
    assert_eq!(v["to"], gw.url("/after-restart?ok=1"), "{v}");
    let echo = b.get_json("/after-restart?ok=1").await.echo();
    assert_eq!(echo.header("remote-user"), Some("alice"));

    // The session (signing key) survives a restart too.
    gw.restart().await;
    let echo = b.get_json("/still-signed-in").await.echo();
    assert_eq!(echo.header("remote-user"), Some("alice"));
}

/// The clock running past `flow_lifetime` is tested in process without sleeping
/// (`flow::tests::engine::an_execution_is_gone_once_the_clock_passes_its_lifetime`); this proves
/// what the binary answers once an execution is gone: a flow cookie naming an id the store no
/// longer has (the shape of a real one) is refused as expired, with no session.
#[tokio::test(flavor = "multi_thread")]
async fn a_flow_cookie_whose_execution_is_gone_is_refused_as_expired() {
    let gw = Gateway::start().await;
    let b = gw.browser();
    api_start(&b, APP, None).await;
    let real = b
        .cookie(&gw.url("/.portcullis/api/flow/x"), FLOW_COOKIE)
        .expect("flow cookie");
    let flow_id: String = real
        .chars()
        .map(|c| if c == 'A' { 'B' } else { 'A' })
        .collect();
    // Sent by hand: the browser would have dropped the cookie at its Max-Age already.
    let raw = gw.raw();
    let r = Resp::read(
        raw.http
            .post(gw.url(&api_path()))
            .header("cookie", format!("{FLOW_COOKIE}={flow_id}"))
            .header("content-type", "application/json")
            .body(json!({ "password": ALICE_PW }).to_string())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        r.status,
        410,
        "an expired execution was resumed: {}",
        r.describe()
    );
    assert_eq!(r.json()["error"], "execution_expired");
    assert!(r.set_cookie_value(SESSION_COOKIE).is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn parallel_wrong_passwords_get_no_more_tries_than_failed_attempts_before_cancel() {
    let gw = Gateway::start().await;
    let b = gw.browser();
    api_start(&b, APP, None).await;
    let r = b.post_json(&api_path(), &json!({ "uid": "alice" })).await;
    assert_eq!(r.json()["component"], "password");
    // Twelve guesses at once in one sign-in; the default allows 5 before it is cancelled.
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..12 {
        let b = b.clone();
        tasks.spawn(async move {
            let r = b
                .post_json(&api_path(), &json!({ "password": WRONG_PW }))
                .await;
            (
                r.status,
                r.json()["component"].as_str().unwrap_or("").to_string(),
            )
        });
    }
    let answers = tasks.join_all().await;
    let judged = answers
        .iter()
        .filter(|(s, c)| *s == 200 && c == "password")
        .count();
    assert!(
        judged <= 4,
        "{judged} guesses were judged and the sign-in went on (at most 4 may): {answers:?}"
    );
    // The sign-in is over: even the right password does not get in now.
    let r = b
        .post_json(&api_path(), &json!({ "password": ALICE_PW }))
        .await;
    assert_ne!(r.json()["component"], "redirect", "{}", r.body);
    assert!(r.set_cookie_value(SESSION_COOKIE).is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn json_and_html_faces_give_each_step_the_same_title() {
    let gw = Gateway::start().await;
    let b = gw.browser();
    let v = b.get_json(&api_path()).await.json();
    assert_eq!(v["title"], "Sign in", "{v}");
    let html = b.get_html(&flow_path()).await;
    assert!(html.body.contains("<h1>Sign in</h1>"), "{}", html.body);

    let v = b
        .post_json(&api_path(), &json!({ "uid": "alice" }))
        .await
        .json();
    assert_eq!(v["component"], "password", "{v}");
    assert_eq!(v["title"], "Enter your password", "{v}");
    let html = b.get_html(&flow_path()).await;
    assert!(
        html.body.contains("<h1>Enter your password</h1>"),
        "{}",
        html.body
    );
}

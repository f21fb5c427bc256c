//! Access rules in proxy mode (the shared table of tests/support/rules_table.rs) and
//! `portcullis access check`, which must say what `serve` does.

use crate::harness::*;
use crate::rules_table::*;

fn setup() -> Setup {
    Setup {
        extra_toml: rules_toml("builtin:whoami", FLOW),
        ..Setup::default()
    }
}

/// In this suite bob is in `admins`, alice is not.
async fn cookies(gw: &Gateway) -> (String, String) {
    let bob = api_sign_in(&gw.browser(), "bob", BOB_PW).await.token;
    let alice = api_sign_in(&gw.browser(), "alice", ALICE_PW).await.token;
    (
        format!("{SESSION_COOKIE}={bob}"),
        format!("{SESSION_COOKIE}={alice}"),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn the_rules_table_decides_in_proxy_mode() {
    let gw = Gateway::start_with(setup()).await;
    let (admin, staff) = cookies(&gw).await;
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], gw.port).into();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .resolve(GRAFANA, addr)
        .build()
        .expect("client");
    for &(method, path, who, client, want) in CASES {
        // The test client is on loopback, a trusted proxy by default: its X-Forwarded-For
        // names the client the rules see, as a real front proxy's would.
        let mut rb = http
            .request(
                method.parse().expect("method"),
                format!("http://{GRAFANA}:{}{path}", gw.port),
            )
            .header("accept", "application/json")
            .header("x-forwarded-for", client);
        match who {
            Who::Anonymous => {}
            Who::Admin => rb = rb.header("cookie", &admin),
            Who::Staff => rb = rb.header("cookie", &staff),
        }
        let r = Resp::read(rb.send().await.expect("request")).await;
        assert_eq!(
            seen(r.status),
            Some(want),
            "{method} {path} as {who:?} from {client}: {}",
            r.describe()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn access_check_prints_the_rule_the_verdict_and_what_is_asked_for() {
    let gw = Gateway::prepare(setup()).await;
    let url = format!("http://{GRAFANA}/api/health");
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["--ip", "10.9.1.1", &url],
            &[
                "user: anonymous",
                "app: grafana",
                "rule: rules[0]: resources=^/api/ networks=monitoring policy=bypass",
                "verdict: bypass",
            ],
        ),
        (
            &["--ip", "203.0.113.7", &url],
            &[
                "rule: rules[3]",
                "verdict: sign in",
                "asks for: a sign-in through flow default-authentication",
                "/.portcullis/flow/default-authentication?rd=http%3A%2F%2Fgrafana%2Eexample%2Etest",
            ],
        ),
        (
            &[
                "--user",
                "alice",
                "--ip",
                "203.0.113.7",
                "http://grafana.example.test/ops/x",
            ],
            &[
                "user: alice (groups: staff,ops",
                "none matched: default_policy = deny",
                "verdict: deny",
            ],
        ),
        (
            &["--user", "bob", "http://grafana.example.test/ops/x"],
            &[
                "user: bob (groups: admins",
                "rule: rules[1]: resources=^/ops/ subject=group:admins policy=one_factor",
                "verdict: allow",
            ],
        ),
        (
            &[
                "--user",
                "bob",
                "--method",
                "delete",
                "http://grafana.example.test/app/x",
            ],
            &[
                "request: DELETE",
                "rule: rules[2]: methods=DELETE policy=deny",
                "verdict: deny",
            ],
        ),
        (
            &["--user", "alice", "--factors", "", "http://app.test/x"],
            &[
                "app: demo",
                "default_policy = one_factor",
                "verdict: step up",
                "asks for: the flow's missing factors: password",
            ],
        ),
        (
            &["http://nowhere.test/"],
            &["rule: none: no app serves this host", "verdict: not found"],
        ),
    ];
    for (args, want) in cases {
        let mut all = vec!["access", "check"];
        all.extend_from_slice(args);
        let out = gw.cli(&all, None).await;
        assert!(out.ok(), "{args:?}: {}", out.all());
        for w in *want {
            assert!(
                out.stdout.contains(w),
                "{args:?}: no {w:?} in\n{}",
                out.stdout
            );
        }
    }
    // The same check against the running gateway reads the user through it.
    let gw = gw.launch().await;
    let out = gw
        .cli(
            &[
                "access",
                "check",
                "--user",
                "bob",
                "http://grafana.example.test/ops/x",
            ],
            None,
        )
        .await;
    assert!(out.stdout.contains("verdict: allow"), "{}", out.all());
    let out = gw
        .cli(
            &[
                "access",
                "check",
                "--user",
                "nobody",
                "http://grafana.example.test/",
            ],
            None,
        )
        .await;
    assert!(!out.ok(), "{}", out.all());
    assert!(out.stderr.contains("nobody"), "{}", out.all());
}

#[tokio::test(flavor = "multi_thread")]
async fn access_check_shows_a_max_age_step_up_for_an_old_sign_in() {
    let gw = Gateway::prepare(Setup {
        app_toml: "[[apps.rules]]\nresources = [\"^/admin\"]\npolicy = \"one_factor\"\nmax_age = \"10m\"\n".into(),
        ..Setup::default()
    })
    .await;
    let fresh = gw
        .cli(
            &[
                "access",
                "check",
                "--user",
                "alice",
                "--age",
                "5m",
                "http://app.test/admin",
            ],
            None,
        )
        .await;
    assert!(fresh.stdout.contains("verdict: allow"), "{}", fresh.all());
    let stale = gw
        .cli(
            &[
                "access",
                "check",
                "--user",
                "alice",
                "--age",
                "11m",
                "http://app.test/admin",
            ],
            None,
        )
        .await;
    assert!(stale.stdout.contains("verdict: step up"), "{}", stale.all());
    assert!(
        stale
            .stdout
            .contains("asks for: a sign-in within the last 10m"),
        "{}",
        stale.all()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_rule_refuses_the_config_naming_the_key() {
    let gw = Gateway::prepare(Setup::default()).await;
    let text = std::fs::read_to_string(&gw.config_path).expect("config");
    let bad = text.replacen(
        "bypass = [\"^/public/\"]\n",
        "bypass = [\"^/public/\"]\n[[apps.rules]]\nresources = [\"^/ok\", \"(\"]\npolicy = \"deny\"\n",
        1,
    );
    assert_ne!(bad, text);
    std::fs::write(&gw.config_path, bad).expect("write");
    let out = check_config(&gw.config_path);
    assert!(!out.ok(), "{}", out.all());
    assert!(
        out.stderr.contains("apps[0].rules[0].resources[1]") && out.stderr.contains("regex"),
        "{}",
        out.all()
    );
}

/// The whole `max_age` loop in the binary: a stale session is sent to step-up, which asks for
/// the password again (never a no-op that would mint a fresh token), then lets it back in.
/// The stale session is the user's own, signed again with the gateway's keys as if issued an
/// hour ago: no waiting for the clock (the edges of `max_age` are tested in process with a
/// manual clock, `access::rules_tests`).
#[tokio::test(flavor = "multi_thread")]
async fn a_session_older_than_max_age_must_prove_its_factors_again() {
    let gw = Gateway::start_with(Setup {
        app_toml: "[[apps.rules]]\nresources = [\"^/admin\"]\npolicy = \"one_factor\"\nmax_age = \"10m\"\n[[apps.rules]]\npolicy = \"one_factor\"\n".into(),
        ..Setup::default()
    })
    .await;
    let (b, _) = alice_browser(&gw).await;
    assert_eq!(b.get_json("/admin").await.status, 200, "fresh");
    let fresh = b
        .cookie(&gw.url("/admin"), SESSION_COOKIE)
        .expect("session cookie");
    let old = signed_an_hour_ago(&gw, &fresh);
    b.add_cookie(&gw.url("/"), &format!("{SESSION_COOKIE}={old}; Path=/"));
    assert_eq!(
        b.cookie(&gw.url("/admin"), SESSION_COOKIE).as_deref(),
        Some(old.as_str()),
        "the jar sends the old session"
    );
    assert_eq!(b.get_json("/other").await.status, 200, "no max_age there");
    let r = b.get_json("/admin").await;
    assert_eq!(r.status, 401, "{}", r.describe());
    assert_eq!(r.json()["error"], "step_up_required", "{}", r.body);
    let login = r.json()["login"].as_str().expect("login").to_string();
    let api = login.replacen("/.portcullis/flow/", "/.portcullis/api/flow/", 1);
    let v = b.get_json(&api).await.json();
    assert_eq!(
        v["component"], "password",
        "the step-up asks for the password again: {v}"
    );
    let r = b
        .post_json(&api_path(), &serde_json::json!({ "password": ALICE_PW }))
        .await;
    assert_eq!(r.json()["component"], "redirect", "{}", r.body);
    assert!(
        r.set_cookie_value(SESSION_COOKIE).is_some(),
        "a new session"
    );
    let r = b.get_json("/admin").await;
    assert_eq!(r.status, 200, "fresh again: {}", r.describe());
    assert_eq!(r.echo().header("remote-user"), Some("alice"));
}

/// `fresh`'s claims in a token issued an hour ago (lifetime two hours), signed with the
/// gateway's active key. (Re-signed rather than issued by a second `SessionService`: a token
/// carries the identity of the database that recorded it, and a service over another store
/// issues tokens the gateway refuses.)
fn signed_an_hour_ago(gw: &Gateway, fresh: &str) -> String {
    let (_, mut c) = jwt_parts(fresh);
    let hour_ago = now() - 3600;
    c["iat"] = serde_json::json!(hour_ago);
    c["iat_ms"] = serde_json::json!(hour_ago * 1000);
    c["exp"] = serde_json::json!(hour_ago + 7200);
    let keys = gw.keys();
    let key = keys.active_key();
    sign(
        jsonwebtoken::Algorithm::HS256,
        Some(&key.kid),
        &c,
        &key.secret,
    )
}

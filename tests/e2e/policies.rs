//! Policies end to end: a flow refused by its policy in both faces, and `portcullis flow
//! check` printing the plan a user gets.

use crate::harness::*;

/// A lab-only flow (the tests come from 127.0.0.1), a staff-only stage, and a stage that runs
/// only when a prompt is answered.
const POLICIES: &str = r#"
[policies.lab]
kind = "network"
cidrs = ["10.0.0.0/8"]
message = "Sign-in from the lab network only."
[policies.loopback]
kind = "network"
cidrs = ["127.0.0.0/8", "::1/128"]
[policies.staff]
kind = "expression"
expression = "user != null && 'staff' in user.groups"
message = "Staff only."

[[flows]]
slug = "lab"
title = "Lab sign-in"
designation = "authentication"
stages = ["identify", "password", "login"]
policies = ["lab"]

[[flows]]
slug = "guarded"
title = "Guarded sign-in"
designation = "authentication"
stages = ["identify", { stage = "nope", policies = ["staff"], negate = true, evaluate_on_plan = false, re_evaluate_policies = true }, "password", "login"]
policies = ["lab", "loopback"]
policy_engine_mode = "any"
"#;

fn setup() -> Setup {
    Setup {
        extra_toml: POLICIES.into(),
        ..Setup::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flow_refused_by_its_policy_shows_the_message_in_both_faces() {
    let gw = Gateway::start_with(setup()).await;
    let b = gw.browser();
    let r = b
        .get_json(&b.url_on(APP, "/.portcullis/api/flow/lab"))
        .await;
    assert_eq!(r.status, 200, "{}", r.describe());
    let v = r.json();
    assert_eq!(v["component"], "access_denied", "{v}");
    assert_eq!(v["errors"][0], "Sign-in from the lab network only.", "{v}");
    let r = b.get_html(&b.url_on(APP, "/.portcullis/flow/lab")).await;
    assert!(
        r.body.contains("Sign-in from the lab network only."),
        "{}",
        r.describe()
    );
    assert!(!r.body.contains("name=\"uid\""), "the form was shown");
    // `any`: the loopback policy lets the same client start the other flow.
    let r = b
        .get_json(&b.url_on(APP, "/.portcullis/api/flow/guarded"))
        .await;
    assert_eq!(r.json()["component"], "identification", "{}", r.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn flow_check_prints_each_bindings_verdict() {
    let gw = Gateway::prepare(setup()).await;
    let cases: &[(&[&str], &[&str])] = &[
        (
            &[
                "flow",
                "check",
                "guarded",
                "--user",
                "alice",
                "--ip",
                "127.0.0.1",
            ],
            &[
                "flow guarded for alice from 127.0.0.1",
                "start: allowed",
                "policy lab: fail",
                "policy loopback: pass",
                "stage 2 nope: skipped (evaluated when reached)",
                "policy staff: pass",
                "stage 3 password: runs (no policies)",
            ],
        ),
        (
            &[
                "flow",
                "check",
                "guarded",
                "--user",
                "bob",
                "--ip",
                "127.0.0.1",
            ],
            &["start: allowed", "stage 2 nope: runs", "policy staff: fail"],
        ),
        (
            &["flow", "check", "lab", "--ip", "192.0.2.1"],
            &[
                "flow lab for anonymous from 192.0.2.1",
                "start: refused: Sign-in from the lab network only.",
            ],
        ),
        (
            &["flow", "check", "lab", "--ip", "10.2.3.4"],
            &["start: allowed", "policy lab: pass"],
        ),
    ];
    for (args, expected) in cases {
        let out = gw.cli(args, None).await;
        assert!(out.ok(), "{args:?}: {}", out.all());
        for line in *expected {
            assert!(
                out.stdout.contains(line),
                "{args:?}: no {line:?} in\n{}",
                out.stdout
            );
        }
    }
    for (args, error) in [
        (&["flow", "check", "nosuch"][..], "no flow `nosuch`"),
        (
            &["flow", "check", "lab", "--ip", "10.0.0.1:80"][..],
            "not an IP address",
        ),
        (
            &["flow", "check", "lab", "--user", "mallory"][..],
            "no user `mallory`",
        ),
    ] {
        let out = gw.cli(args, None).await;
        assert!(!out.ok(), "{args:?} succeeded: {}", out.all());
        assert!(out.stderr.contains(error), "{args:?}: {}", out.all());
    }
    // With the gateway running (it holds the database), the user comes over its admin socket.
    let gw = gw.launch().await;
    let out = gw
        .cli(&["flow", "check", "guarded", "--user", "BOB"], None)
        .await;
    assert!(out.ok(), "{}", out.all());
    assert!(
        out.stdout.contains("flow guarded for bob from 127.0.0.1")
            && out.stdout.contains("stage 2 nope: runs"),
        "{}",
        out.stdout
    );
}

/// A network policy sees the client address the gateway trusts: forwarding headers count only
/// from `trusted_proxies`, so a client cannot claim the lab's address.
#[tokio::test(flavor = "multi_thread")]
async fn a_network_policy_cannot_be_passed_with_forged_forwarding_headers() {
    let forged: &[(&str, &str)] = &[
        ("x-forwarded-for", "10.1.2.3"),
        ("x-forwarded-for", "10.1.2.3, 10.9.9.9"),
        ("X-FORWARDED-FOR", "10.1.2.3"),
        ("forwarded", "for=10.1.2.3"),
        ("x-real-ip", "10.1.2.3"),
        ("true-client-ip", "10.1.2.3"),
    ];
    let gw = Gateway::start_with(Setup {
        server_toml: "trusted_proxies = []".into(),
        ..setup()
    })
    .await;
    let b = gw.browser();
    for (name, value) in forged {
        let r = b
            .send(
                b.http
                    .get(b.url_on(APP, "/.portcullis/api/flow/lab"))
                    .header("accept", "application/json")
                    .header(*name, *value),
            )
            .await;
        assert_eq!(
            r.json()["component"],
            "access_denied",
            "{name}: {value}: {}",
            r.body
        );
    }
    drop(gw);
    // From a trusted proxy (loopback, the default) the forwarded address is the client's.
    let gw = Gateway::start_with(setup()).await;
    let b = gw.browser();
    let r = b
        .send(
            b.http
                .get(b.url_on(APP, "/.portcullis/api/flow/lab"))
                .header("accept", "application/json")
                .header("x-forwarded-for", "10.1.2.3"),
        )
        .await;
    assert_eq!(r.json()["component"], "identification", "{}", r.body);
}

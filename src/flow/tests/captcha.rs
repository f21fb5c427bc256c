//! The captcha stage over a scripted verify endpoint: a token passes only when the provider
//! says so, for this host, this flow's action, within the score thresholds, and once; a verify
//! endpoint that is down or busy leaves the step to retry. With the reputation policy bound
//! to it, only a client with failed sign-ins sees it.

use super::rig::*;
use crate::flow::stages::captcha::{BUSY, FAILED, UNAVAILABLE, UNSOLVED};
use crate::flow::{Execution, Step, View};
use crate::http_client::{HttpBody, HttpError, HttpReply};
use http::StatusCode;
use serde_json::json;

const EXTRA: &str = r#"
[[flows]]
slug = "human"
designation = "authentication"
stages = ["identify", "turnstile", "password", "login"]
[[flows]]
slug = "scored"
designation = "authentication"
stages = ["identify", "v3", "password", "login"]
[[flows]]
slug = "scored_lenient"
designation = "authentication"
stages = ["identify", "v3_lenient", "password", "login"]
[[flows]]
slug = "suspicious"
designation = "authentication"
stages = ["identify", { stage = "turnstile", policies = ["reputation"], negate = true }, "password", "login"]
[policies.reputation]
kind = "reputation"
threshold = 2
[stages.turnstile]
kind = "captcha"
provider = "turnstile"
public_key = "1x00000000000000000000AA"
private_key = "turnstile-secret-5c1d"
api_url = "http://127.0.0.1:9/siteverify"
danger_plain_http = true
[stages.v3]
kind = "captcha"
provider = "recaptcha_v3"
public_key = "v3-site"
private_key = "v3-secret"
api_url = "https://verify.example.test/siteverify"
score_min_threshold = 0.5
[stages.v3_lenient]
kind = "captcha"
provider = "recaptcha_v3"
public_key = "v3-site"
private_key = "v3-secret"
api_url = "https://verify.example.test/siteverify"
error_on_invalid_score = false
"#;

fn rig() -> Rig {
    Rig::with(EXTRA, None)
}

fn says(rig: &Rig, v: serde_json::Value) {
    rig.world
        .http
        .push(Ok(HttpReply::new(StatusCode::OK, v.to_string())));
}

/// At the captcha of `flow`, as alice.
async fn at_captcha(rig: &Rig, flow: &str) -> (Execution, View) {
    let (mut exec, _) = rig.start(flow).await;
    let view = rig.post(&mut exec, &[("uid", "alice")]).await;
    (exec, view)
}

fn errors(view: &View) -> Vec<String> {
    challenge(view).errors.clone()
}

#[tokio::test]
async fn a_solved_captcha_passes_and_the_secret_and_token_go_to_the_verify_endpoint() {
    let rig = rig();
    rig.user("alice", None).await;
    let (mut exec, view) = at_captcha(&rig, "human").await;
    assert_eq!(component(&view), "captcha");
    assert_eq!(field_names(&view), ["cf-turnstile-response"]);
    let w = challenge(&view).captcha.clone().expect("a widget");
    assert_eq!(w.provider, "turnstile");
    assert_eq!(w.site_key, "1x00000000000000000000AA");
    assert_eq!(w.action, "human");
    assert!(w
        .csp_sources
        .contains(&"https://challenges.cloudflare.com".to_string()));
    says(
        &rig,
        json!({ "success": true, "hostname": "auth.example.test", "action": "human" }),
    );
    let view = rig
        .post(&mut exec, &[("cf-turnstile-response", "tok-1")])
        .await;
    assert_eq!(component(&view), "password");
    let requests = rig.world.http.requests();
    let r = requests.last().expect("a verify call");
    assert_eq!(r.url.as_str(), "http://127.0.0.1:9/siteverify");
    let HttpBody::Form(fields) = &r.body else {
        panic!("a form post: {r:?}");
    };
    let get = |k: &str| fields.iter().find(|(f, _)| f == k).map(|(_, v)| v.as_str());
    assert_eq!(get("secret"), Some("turnstile-secret-5c1d"));
    assert_eq!(get("response"), Some("tok-1"));
    assert_eq!(get("remoteip"), Some(AT.client));
}

#[tokio::test]
async fn refused_tokens_and_a_failing_verify_endpoint_leave_the_captcha_to_retry() {
    let rig = rig();
    rig.user("alice", None).await;
    // (what the verify endpoint answers, what the user is told)
    let ok = |v: serde_json::Value| Ok(HttpReply::new(StatusCode::OK, v.to_string()));
    let table: Vec<(Result<HttpReply, HttpError>, &str)> = vec![
        (
            ok(json!({ "success": false, "error-codes": ["invalid-input-response"] })),
            FAILED,
        ),
        (
            ok(json!({ "success": true, "hostname": "evil.example" })),
            FAILED,
        ),
        (
            ok(json!({ "success": true, "action": "other_flow" })),
            FAILED,
        ),
        (ok(json!({ "succes": true })), FAILED),
        (Err(HttpError::Connect("refused".into())), UNAVAILABLE),
        (Err(HttpError::Timeout), UNAVAILABLE),
        (Ok(HttpReply::new(StatusCode::TOO_MANY_REQUESTS, "")), BUSY),
        (
            Ok(HttpReply::new(StatusCode::BAD_GATEWAY, "<html>")),
            UNAVAILABLE,
        ),
        (ok(json!("yes")), UNAVAILABLE),
    ];
    for (i, (answer, told)) in table.into_iter().enumerate() {
        let (mut exec, _) = at_captcha(&rig, "human").await;
        rig.world.http.push(answer);
        let token = format!("tok-refused-{i}");
        let view = rig
            .post(&mut exec, &[("cf-turnstile-response", &token)])
            .await;
        assert_eq!(component(&view), "captcha", "case {i}");
        assert_eq!(errors(&view), [told], "case {i}");
        // Nothing is spoiled: a good token then passes.
        says(&rig, json!({ "success": true }));
        let view = rig
            .post(
                &mut exec,
                &[("cf-turnstile-response", &format!("good-{i}"))],
            )
            .await;
        assert_eq!(component(&view), "password", "case {i}: retry");
    }
    // No token at all is not even sent.
    let (mut exec, _) = at_captcha(&rig, "human").await;
    let before = rig.world.http.requests().len();
    let view = rig.post(&mut exec, &[("cf-turnstile-response", " ")]).await;
    assert_eq!(errors(&view), [UNSOLVED]);
    assert_eq!(rig.world.http.requests().len(), before);
}

#[tokio::test]
async fn a_token_is_taken_once_even_when_the_provider_says_yes_again() {
    let rig = rig();
    rig.user("alice", None).await;
    let (mut exec, _) = at_captcha(&rig, "human").await;
    says(&rig, json!({ "success": true }));
    let view = rig
        .post(&mut exec, &[("cf-turnstile-response", "once")])
        .await;
    assert_eq!(component(&view), "password");
    let (mut other, _) = at_captcha(&rig, "human").await;
    says(&rig, json!({ "success": true }));
    let view = rig
        .post(&mut other, &[("cf-turnstile-response", "once")])
        .await;
    assert_eq!(errors(&view), [FAILED]);
}

#[tokio::test]
async fn a_score_outside_the_thresholds_is_refused_or_only_kept_for_policies() {
    let rig = rig();
    rig.user("alice", None).await;
    let (mut exec, view) = at_captcha(&rig, "scored").await;
    assert_eq!(field_names(&view), ["g-recaptcha-response"]);
    assert!(
        !challenge(&view)
            .captcha
            .as_ref()
            .expect("widget")
            .interactive
    );
    says(
        &rig,
        json!({ "success": true, "score": 0.2, "action": "scored" }),
    );
    let view = rig
        .post(&mut exec, &[("g-recaptcha-response", "low")])
        .await;
    assert_eq!(errors(&view), [FAILED]);
    says(
        &rig,
        json!({ "success": true, "score": 0.9, "action": "scored" }),
    );
    let view = rig
        .post(&mut exec, &[("g-recaptcha-response", "high")])
        .await;
    assert_eq!(component(&view), "password");
    assert_eq!(
        exec.prompt_data.get("captcha_score").map(String::as_str),
        Some("0.9")
    );

    let (mut exec, _) = at_captcha(&rig, "scored_lenient").await;
    says(&rig, json!({ "success": true, "score": 0.1 }));
    let view = rig
        .post(&mut exec, &[("g-recaptcha-response", "low2")])
        .await;
    assert_eq!(
        component(&view),
        "password",
        "error_on_invalid_score = false"
    );
    assert_eq!(
        exec.prompt_data.get("captcha_score").map(String::as_str),
        Some("0.1")
    );
}

#[tokio::test]
async fn with_the_reputation_policy_only_a_client_with_failed_sign_ins_sees_the_captcha() {
    let rig = rig();
    rig.user("alice", None).await;
    // A clean client goes straight to the password.
    let (mut exec, _) = rig.start("suspicious").await;
    let view = rig.post(&mut exec, &[("uid", "alice")]).await;
    assert_eq!(component(&view), "password");
    for _ in 0..2 {
        rig.post(&mut exec, &[("password", "wrong")]).await;
    }
    // Two failures from this address: the next sign-in asks for the captcha first.
    let (mut exec, _) = rig.start("suspicious").await;
    let view = rig.post(&mut exec, &[("uid", "alice")]).await;
    assert_eq!(component(&view), "captcha");
    says(&rig, json!({ "success": true }));
    let view = rig
        .post(&mut exec, &[("cf-turnstile-response", "rep")])
        .await;
    assert_eq!(component(&view), "password");
    let view = rig.post(&mut exec, &[("password", PASSWORD)]).await;
    assert!(
        matches!(view.step, Step::Done { login: Some(_), .. }),
        "{view:?}"
    );
}

#[tokio::test]
async fn the_captcha_cannot_be_skipped_by_answering_the_password_first() {
    let rig = rig();
    rig.user("alice", None).await;
    // (what is posted at the captcha)
    let attacks: [&[(&str, &str)]; 4] = [
        &[("password", PASSWORD)],
        &[("stage", "password"), ("password", PASSWORD)],
        &[("component", "password"), ("password", PASSWORD)],
        &[("cf-turnstile-response", "x"), ("password", PASSWORD)],
    ];
    for fields in attacks {
        let (mut exec, _) = at_captcha(&rig, "human").await;
        let err = rig
            .try_post(&mut exec, fields)
            .await
            .expect_err("out of step");
        assert!(
            matches!(err, crate::flow::FlowError::StageMismatch { .. }),
            "{fields:?}: {err}"
        );
        let back = rig.reload(&exec).expect("stored");
        assert_eq!(back.stage, 1, "{fields:?}: still at the captcha");
    }
    assert!(rig.world.http.requests().is_empty(), "nothing verified");
}

/// Attacks on the verify answer of a reCAPTCHA v3 stage (`score_min_threshold = 0.5`): each
/// (what the provider answers, whether it passes). A v3 answer without a score would skip the
/// thresholds; provider error codes carrying markup never reach the page.
#[tokio::test]
async fn v3_answers_an_adversary_could_bring_are_judged_strictly() {
    let rig = rig();
    rig.user("alice", None).await;
    let table: Vec<(serde_json::Value, bool)> = vec![
        // Exactly at the threshold: passes (inclusive, as documented).
        (
            json!({ "success": true, "score": 0.5, "action": "scored" }),
            true,
        ),
        (
            json!({ "success": true, "score": 0.49999, "action": "scored" }),
            false,
        ),
        (
            json!({ "success": true, "score": 1.0, "action": "scored" }),
            true,
        ),
        (
            json!({ "success": true, "score": 1.0001, "action": "scored" }),
            false,
        ),
        (
            json!({ "success": true, "score": -1, "action": "scored" }),
            false,
        ),
        // No score on a v3 stage: refused, not passed unchecked.
        (json!({ "success": true, "action": "scored" }), false),
        (
            json!({ "success": true, "score": null, "action": "scored" }),
            false,
        ),
        // Another flow's action, or the action's case changed.
        (
            json!({ "success": true, "score": 0.9, "action": "human" }),
            false,
        ),
        (
            json!({ "success": true, "score": 0.9, "action": "SCORED" }),
            false,
        ),
        // Another site: a look-alike, a suffix, a trailing dot, an empty name.
        (
            json!({ "success": true, "score": 0.9, "action": "scored", "hostname": "auth.example.test.evil.example" }),
            false,
        ),
        (
            json!({ "success": true, "score": 0.9, "action": "scored", "hostname": "evil-auth.example.test" }),
            false,
        ),
        (
            json!({ "success": true, "score": 0.9, "action": "scored", "hostname": "auth.example.test." }),
            false,
        ),
        (
            json!({ "success": true, "score": 0.9, "action": "scored", "hostname": "" }),
            false,
        ),
        (
            json!({ "success": true, "score": 0.9, "action": "scored", "hostname": "AUTH.Example.TEST" }),
            true,
        ),
        // success spelled as a string: not the JSON expected.
        (
            json!({ "success": "true", "score": 0.9, "action": "scored" }),
            false,
        ),
        // Markup in the error codes: a plain refusal, nothing of it echoed.
        (
            json!({ "success": false, "error-codes": ["<script>alert(1)</script>", "<b>x</b>"] }),
            false,
        ),
    ];
    for (i, (answer, passes)) in table.into_iter().enumerate() {
        let (mut exec, _) = at_captcha(&rig, "scored").await;
        says(&rig, answer.clone());
        let token = format!("v3-attack-{i}");
        let view = rig
            .post(&mut exec, &[("g-recaptcha-response", &token)])
            .await;
        if passes {
            assert_eq!(component(&view), "password", "case {i}: {answer}");
            continue;
        }
        assert_eq!(component(&view), "captcha", "case {i}: {answer}");
        let errs = errors(&view);
        assert!(
            errs == [FAILED] || errs == [UNAVAILABLE],
            "case {i}: {answer}: {errs:?}"
        );
        let shown = format!("{:?}", challenge(&view));
        assert!(
            !shown.contains("<script>") && !shown.contains("<b>"),
            "case {i}"
        );
    }
}

//! The captcha stage end to end, against a stand-in of the provider's verify endpoint on
//! loopback: pass, fail, a score below the threshold, a replayed token, a token for another
//! host or action, a busy (429) and a down verify endpoint, through both faces; only the
//! captcha page's CSP lets the provider's script and frames in.

use crate::captcha_stand_in::{CaptchaStandIn, SECRET};
use crate::harness::*;
use serde_json::json;

const HUMAN: &str = "human";
const SCORED: &str = "scored";

fn setup(api_url: &str) -> Setup {
    Setup {
        extra_toml: format!(
            r#"
[[flows]]
slug = "{HUMAN}"
designation = "authentication"
stages = ["identify", "turnstile", "password", "login"]

[[flows]]
slug = "{SCORED}"
designation = "authentication"
stages = ["identify", "v3", "password", "login"]

[stages.turnstile]
kind = "captcha"
provider = "turnstile"
public_key = "0x4AAAAAAAstandin"
private_key = "{SECRET}"
api_url = "{api_url}"
danger_plain_http = true
timeout = 3

[stages.v3]
kind = "captcha"
provider = "recaptcha_v3"
public_key = "v3-site-key"
private_key = "{SECRET}"
api_url = "{api_url}"
danger_plain_http = true
score_min_threshold = 0.5
"#
        ),
        ..Setup::default()
    }
}

fn api(slug: &str) -> String {
    format!("/.portcullis/api/flow/{slug}")
}

/// A JSON execution of `slug` waiting at its captcha, as alice.
async fn at_captcha(b: &Browser, slug: &str) -> serde_json::Value {
    let r = b.get_json(&api(slug)).await;
    assert_eq!(r.status, 200, "{}", r.describe());
    let v = b
        .post_json(&api(slug), &json!({ "uid": "alice" }))
        .await
        .json();
    assert_eq!(v["component"], "captcha", "{v}");
    v
}

#[tokio::test(flavor = "multi_thread")]
async fn json_captcha_answers_pass_fail_low_score_replay_and_busy_as_the_provider_says() {
    let stand_in = CaptchaStandIn::start(APP).await;
    let gw = Gateway::start_with(setup(&stand_in.url())).await;
    let b = gw.browser();
    let v = at_captcha(&b, HUMAN).await;
    assert_eq!(v["captcha"]["provider"], "turnstile", "{v}");
    assert_eq!(v["captcha"]["site_key"], "0x4AAAAAAAstandin", "{v}");
    assert_eq!(
        v["captcha"]["response_field"], "cf-turnstile-response",
        "{v}"
    );
    assert_eq!(v["fields"][0]["name"], "cf-turnstile-response", "{v}");
    assert!(!v.to_string().contains(SECRET));

    // (flow, token, busy first, error shown or None when it passes)
    let refused = "The captcha check did not pass. Try again.";
    let busy = "Too many captcha checks right now. Wait a moment, then try again.";
    let field = |slug: &str| {
        if slug == HUMAN {
            "cf-turnstile-response"
        } else {
            "g-recaptcha-response"
        }
    };
    let table = [
        (HUMAN, "fail-1", false, Some(refused)),
        (HUMAN, "host-1", false, Some(refused)),
        (HUMAN, "act-1", false, Some(refused)),
        (HUMAN, "pass-1", true, Some(busy)),
        (HUMAN, "pass-2", false, None),
        (HUMAN, "pass-2", false, Some(refused)),
        (SCORED, "low-1", false, Some(refused)),
        (SCORED, "high-1", false, None),
    ];
    for (slug, token, limited, told) in table {
        let b = gw.browser();
        at_captcha(&b, slug).await;
        if limited {
            stand_in.rate_limit(1);
        }
        let r = b
            .post_json(&api(slug), &json!({ field(slug): token }))
            .await;
        assert_eq!(r.status, 200, "{token}: {}", r.describe());
        let v = r.json();
        match told {
            Some(message) => {
                assert_eq!(v["component"], "captcha", "{token}: {v}");
                assert_eq!(v["errors"], json!([message]), "{token}: {v}");
            }
            None => assert_eq!(v["component"], "password", "{token}: {v}"),
        }
    }
    // Every verify call carried the secret, the token and the client's address.
    let seen = stand_in.seen();
    assert!(seen
        .iter()
        .all(|f| f.get("secret").map(String::as_str) == Some(SECRET)));
    assert!(seen
        .iter()
        .all(|f| f.get("remoteip").is_some_and(|ip| ip == "127.0.0.1")));
    assert!(
        !gw.logs().contains(SECRET),
        "the secret key is never logged"
    );
    // A signed-in alice after a solved captcha.
    let b = gw.browser();
    at_captcha(&b, HUMAN).await;
    b.post_json(
        &api(HUMAN),
        &json!({ "cf-turnstile-response": "pass-final" }),
    )
    .await;
    let r = b
        .post_json(&api(HUMAN), &json!({ "password": ALICE_PW }))
        .await;
    assert_eq!(r.json()["component"], "redirect", "{}", r.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_verify_endpoint_that_is_down_tells_the_user_and_the_captcha_can_be_retried() {
    let dead = DeadPort::new();
    let gw = Gateway::start_with(setup(&format!(
        "http://127.0.0.1:{}/siteverify",
        dead.port()
    )))
    .await;
    let b = gw.browser();
    at_captcha(&b, HUMAN).await;
    for _ in 0..2 {
        let r = b
            .post_json(&api(HUMAN), &json!({ "cf-turnstile-response": "pass-1" }))
            .await;
        assert_eq!(r.status, 200, "{}", r.describe());
        let v = r.json();
        assert_eq!(v["component"], "captcha", "{v}");
        assert_eq!(
            v["errors"],
            json!(["The captcha could not be checked right now. Wait a moment, then try again."]),
            "{v}"
        );
    }
    assert!(b.cookie(&gw.url("/"), SESSION_COOKIE).is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn html_only_the_captcha_page_lets_the_providers_script_in_and_says_it_needs_javascript() {
    let stand_in = CaptchaStandIn::start(APP).await;
    let gw = Gateway::start_with(setup(&stand_in.url())).await;
    let b = gw.browser();
    let page = form_page(&b.get_html(&format!("/.portcullis/flow/{HUMAN}")).await);
    let r = submit(&b, &page, &[("uid", "alice")]).await;
    let next = b.get_html(&r.location_absolute()).await;
    assert_eq!(next.status, 200, "{}", next.describe());
    let csp = next.header("content-security-policy").unwrap_or_default();
    assert!(
        csp.contains("script-src 'self' https://challenges.cloudflare.com")
            && csp.contains("frame-src https://challenges.cloudflare.com"),
        "{csp}"
    );
    assert!(csp.contains("default-src 'none'"), "{csp}");
    let html = &next.body;
    assert!(
        html.contains(r#"class="cf-turnstile" data-sitekey="0x4AAAAAAAstandin""#),
        "{html}"
    );
    // (The template escapes `/` in attributes as `&#x2f;`, which the browser reads back.)
    let unescaped = html.replace("&#x2f;", "/");
    assert!(
        unescaped
            .contains(r#"<script src="https://challenges.cloudflare.com/turnstile/v0/api.js""#),
        "{html}"
    );
    assert!(
        html.contains("<noscript>") && html.contains("needs JavaScript"),
        "{html}"
    );
    // The widget's token arrives as a form field; then the password page is strict again.
    let page = form_page(&next);
    let r = submit(&b, &page, &[("cf-turnstile-response", "pass-html")]).await;
    let next = b.get_html(&r.location_absolute()).await;
    assert!(has_input(&next.body, "password"), "{}", next.body);
    let csp = next.header("content-security-policy").unwrap_or_default();
    assert!(
        !csp.contains("cloudflare") && !csp.contains("script-src"),
        "{csp}"
    );
    // The reCAPTCHA v3 page loads its script with the site key and the gateway's helper.
    let b = gw.browser();
    let page = form_page(&b.get_html(&format!("/.portcullis/flow/{SCORED}")).await);
    let r = submit(&b, &page, &[("uid", "alice")]).await;
    let next = b.get_html(&r.location_absolute()).await;
    let unescaped = next.body.replace("&#x2f;", "/");
    assert!(
        unescaped.contains("api.js?render=v3-site-key"),
        "{unescaped}"
    );
    assert!(
        unescaped.contains(r#"<script src="/.portcullis/captcha.js""#),
        "{unescaped}"
    );
    let js = b.get_html("/.portcullis/captcha.js").await;
    assert_eq!(js.status, 200);
    assert!(js.content_type().starts_with("text/javascript"));
}

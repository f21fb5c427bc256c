//! Sessions carry what proved them, and an app lets a session in only when it satisfies the
//! app's flow. app.test signs in with a password alone; secure.app.test's flow also asks for an email
//! code. A password session is sent from secure.app.test to a step-up that asks only for the code,
//! comes back to the page, and then opens both apps.

use crate::harness::{
    b64url, has_input, jwt_parts, pct, submit, Browser, Resp, Upstream, APP, SESSION_COOKIE,
};
use crate::smtp::{SmtpOpts, SmtpServer};
use crate::support::*;
use serde_json::{json, Value};

/// identify → password → login.
const PW_ONLY: &str = "pw-only";
/// The app whose flow asks for the code; under the cookie domain `app.test`, so the session
/// signed in on app.test reaches it.
const SECURE: &str = "secure.app.test";

fn spec(smtp: &SmtpServer, secure: &Upstream, nca: &str) -> Spec {
    let mut s = Spec::new(smtp.email_toml());
    s.app_flow = PW_ONLY.into();
    s.not_configured_action = nca.into();
    s.env
        .push(("PORTCULLIS_SESSION__COOKIE_DOMAIN".into(), APP.into()));
    s.extra = format!(
        r#"
[[flows]]
slug = "{PW_ONLY}"
title = "Sign in"
designation = "authentication"
stages = ["identify", "password", "login"]

[[apps]]
name = "secure"
hosts = ["{SECURE}"]
upstream = "{}"
flow = "{MFA_FLOW}"
"#,
        secure.addr
    );
    s
}

fn secure_url(gw: &Gw, path: &str) -> String {
    format!("http://{SECURE}:{}{path}", gw.port)
}

/// A cookie-keeping client for app.test and secure.app.test.
fn client(gw: &Gw) -> Browser {
    let jar = std::sync::Arc::new(reqwest::cookie::Jar::default());
    let at: std::net::SocketAddr = ([127, 0, 0, 1], gw.port).into();
    let http = reqwest::Client::builder()
        .cookie_provider(jar.clone())
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(std::time::Duration::from_secs(30))
        .resolve(APP, at)
        .resolve(SECURE, at)
        .build()
        .expect("client");
    Browser {
        http,
        jar,
        port: gw.port,
    }
}

/// A JSON sign-in through the password-only flow on app.test; returns the session token.
async fn password_session(b: &Browser, uid: &str) -> String {
    password_session_on(b, APP, uid).await
}

/// The same on `host`'s own sign-in path.
async fn password_session_on(b: &Browser, host: &str, uid: &str) -> String {
    let flow = b.url_on(host, &api(PW_ONLY));
    let r = b
        .get_json(&format!("{flow}?rd={}", pct(&b.url_on(host, "/a"))))
        .await;
    assert_eq!(r.json()["component"], "identification", "{}", r.body);
    let r = b.post_json(&flow, &json!({ "uid": uid })).await;
    assert_eq!(r.json()["component"], "password", "{}", r.body);
    let r = b.post_json(&flow, &json!({ "password": PW })).await;
    assert_eq!(r.json()["component"], "redirect", "{}", r.body);
    r.set_cookie_value(SESSION_COOKIE).expect("session cookie")
}

/// A client holding only this session token.
fn holding(gw: &Gw, token: &str) -> Browser {
    let b = client(gw);
    for host in [APP, SECURE] {
        b.add_cookie(
            &format!("http://{host}:{}/", gw.port),
            &format!("{SESSION_COOKIE}={token}"),
        );
    }
    b
}

/// Traefik's ForwardAuth question for `path` on extra.test, with this session.
async fn traefik(gw: &Gw, token: &str, path: &str, accept: &str) -> Resp {
    let b = gw.browser();
    b.send(
        b.http
            .get(format!(
                "http://127.0.0.1:{}/.portcullis/auth/traefik",
                gw.port
            ))
            .header("x-forwarded-proto", "http")
            .header("x-forwarded-host", format!("{SECURE}:{}", gw.port))
            .header("x-forwarded-uri", path)
            .header("x-forwarded-method", "GET")
            .header("accept", accept)
            .header("cookie", format!("{SESSION_COOKIE}={token}")),
    )
    .await
}

fn claim_list(token: &str, claim: &str) -> Vec<String> {
    let (_, claims) = jwt_parts(token);
    claims[claim]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The token with its claims replaced by `edit`'s and the original signature kept.
fn forged(token: &str, edit: impl Fn(&mut Value)) -> String {
    let (_, mut claims) = jwt_parts(token);
    edit(&mut claims);
    let mut parts = token.split('.');
    let (h, _, sig) = (parts.next().unwrap(), parts.next(), parts.next().unwrap());
    format!("{h}.{}.{sig}", b64url(claims.to_string().as_bytes()))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_password_session_is_stepped_up_with_only_the_email_code_and_then_opens_both_apps() {
    let smtp = SmtpServer::start(SmtpOpts::plain()).await;
    let secure = Upstream::start().await;
    let gw = Gw::start(spec(&smtp, &secure, "configure")).await;
    let b = client(&gw);
    let first = password_session(&b, "alice").await;
    assert_eq!(claim_list(&first, "flows"), [PW_ONLY]);
    assert_eq!(claim_list(&first, "factors"), ["password"]);
    assert_session_is(&b, &gw, "alice").await;

    // The app whose flow wants an email code refuses the password session: a page load is
    // sent to its flow, towards the page.
    let page = secure_url(&gw, "/reports/q3?year=2026");
    let r = b.get_html(&page).await;
    assert_eq!(r.status, 302, "{}", r.describe());
    let login = r.location_absolute();
    assert_eq!(
        login,
        secure_url(
            &gw,
            &format!("/.portcullis/flow/{MFA_FLOW}?rd={}", pct(&page))
        )
    );
    // An API call gets a 401 naming the step-up.
    let r = b.get_json(&secure_url(&gw, "/api/items")).await;
    assert_eq!(r.status, 401, "{}", r.describe());
    let v = r.json();
    assert_eq!(v["error"], "step_up_required", "{v}");
    assert!(
        v["login"]
            .as_str()
            .unwrap_or_default()
            .starts_with(&format!("/.portcullis/flow/{MFA_FLOW}?rd=")),
        "{v}"
    );
    // Forward-auth answers the same step-up.
    let r = traefik(&gw, &first, "/reports/q3", "text/html").await;
    assert_eq!(r.status, 302, "{}", r.describe());
    assert_eq!(
        r.location(),
        secure_url(
            &gw,
            &format!(
                "/.portcullis/flow/{MFA_FLOW}?rd={}",
                pct(&secure_url(&gw, "/reports/q3"))
            )
        )
    );
    let r = traefik(&gw, &first, "/api/items", "application/json").await;
    assert_eq!(r.status, 401, "{}", r.describe());
    assert_eq!(r.json()["error"], "step_up_required", "{}", r.body);
    assert_eq!(secure.hits(), 0, "nothing reached the app");

    // A token that claims more than it proved is refused by its signature, as no session.
    for (what, token) in [
        (
            "factors",
            forged(&first, |c| c["factors"] = json!(["password", "email"])),
        ),
        (
            "amr",
            forged(&first, |c| {
                c["amr"] = json!(["identification", "password", "authenticator_email"])
            }),
        ),
        (
            "flows",
            forged(&first, |c| c["flows"] = json!([PW_ONLY, MFA_FLOW])),
        ),
    ] {
        let r = holding(&gw, &token)
            .get_json(&secure_url(&gw, "/api/items"))
            .await;
        assert_eq!(r.status, 401, "{what}: {}", r.describe());
        assert_eq!(r.json()["error"], "unauthenticated", "{what}: {}", r.body);
        let r = traefik(&gw, &token, "/api/items", "application/json").await;
        assert_eq!(r.json()["error"], "unauthenticated", "{what}: {}", r.body);
        // Nor does it stand in for identification in a flow.
        let v = holding(&gw, &token).get_json(&api(MFA_FLOW)).await.json();
        assert_eq!(v["component"], "identification", "{what}: {v}");
    }
    assert_eq!(secure.hits(), 0);

    // The step-up knows the user: no identification, no password, only the code.
    let form = html_page(&b, &login).await;
    assert!(has_input(&form.html, "code"), "{}", form.html);
    assert!(
        !has_input(&form.html, "uid") && !has_input(&form.html, "password"),
        "asked again for what the session proves:\n{}",
        form.html
    );
    assert!(
        shows(&form.html, "asks for one more step to confirm it is you"),
        "{}",
        form.html
    );
    let mail = smtp.nth(1).await;
    assert_eq!(mail.rcpt_tos, vec!["alice@example.com"]);
    let r = submit(&b, &form, &[("code", &mail.code())]).await;
    assert_eq!(r.status, 303, "{}", r.describe());
    assert_eq!(r.location_absolute(), page, "back to the page");
    let stepped = r.set_cookie_value(SESSION_COOKIE).expect("a new session");
    let amr = claim_list(&stepped, "amr");
    for k in ["identification", "password", "authenticator_validate"] {
        assert!(amr.contains(&k.to_string()), "amr {amr:?}");
    }
    assert_eq!(claim_list(&stepped, "factors"), ["password", "email"]);
    assert_eq!(claim_list(&stepped, "flows"), [PW_ONLY, MFA_FLOW]);
    assert_eq!(jwt_parts(&stepped).1["sub"], "alice");
    assert!(
        jwt_parts(&stepped).1["exp"].as_i64() <= jwt_parts(&first).1["exp"].as_i64(),
        "the stepped-up session outlives the proofs it carries"
    );

    // The stepped-up session opens both apps, and forward-auth agrees.
    let echo = b.get_html(&page).await.echo();
    assert_eq!(echo.header("remote-user"), Some("alice"));
    assert_session_is(&b, &gw, "alice").await;
    let r = traefik(&gw, &stepped, "/reports/q3", "text/html").await;
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(r.header("remote-user").as_deref(), Some("alice"));
    // The session it replaced is revoked.
    let r = holding(&gw, &first).get_json(&gw.url("/private")).await;
    assert_eq!(r.status, 401, "{}", r.describe());
    let v = holding(&gw, &first).get_json(&api(MFA_FLOW)).await.json();
    assert_eq!(
        v["component"], "identification",
        "a revoked session proves nothing: {v}"
    );

    // A password-only flow run on the secure app's own host does not open it either: the
    // JSON face of the step-up asks only for the code (alice now has a device).
    let b2 = client(&gw);
    let token = password_session_on(&b2, SECURE, "alice").await;
    let r = b2.get_json(&secure_url(&gw, "/x")).await;
    assert_eq!(r.status, 401, "{}", r.describe());
    assert_eq!(r.json()["error"], "step_up_required", "{}", r.body);
    assert_eq!(claim_list(&token, "flows"), [PW_ONLY]);
    let r = b2
        .get_json(&format!(
            "{}?rd={}",
            api(MFA_FLOW),
            pct(&secure_url(&gw, "/x"))
        ))
        .await;
    let v = r.json();
    assert_eq!(v["component"], "authenticator_validate", "{v}");
    assert_eq!(field_names(&v), ["code"], "{v}");
    let mail = smtp.nth(2).await;
    let r = post_resp(&b2, MFA_FLOW, json!({ "code": mail.code() })).await;
    assert_eq!(r.json()["to"], secure_url(&gw, "/x"), "{}", r.body);
    let r = b2.get_json(&secure_url(&gw, "/x")).await;
    assert_eq!(r.echo().header("remote-user"), Some("alice"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flow_completed_without_a_device_is_not_sent_round_in_circles() {
    // carol has no address and the validation skips users without a device: the step-up has
    // nothing to ask, completes the app's flow, and the session is let in.
    let smtp = SmtpServer::start(SmtpOpts::plain()).await;
    let secure = Upstream::start().await;
    let gw = Gw::start(spec(&smtp, &secure, "skip")).await;
    let b = client(&gw);
    password_session(&b, "carol").await;

    let page = secure_url(&gw, "/home");
    let r = b.get_html(&page).await;
    assert_eq!(r.status, 302, "{}", r.describe());
    let r = b.get_html(&r.location_absolute()).await;
    assert_eq!(r.status, 302, "the step-up asks nothing: {}", r.describe());
    assert_eq!(r.location_absolute(), page);
    let token = r.set_cookie_value(SESSION_COOKIE).expect("a new session");
    assert_eq!(claim_list(&token, "factors"), ["password"]);
    assert_eq!(claim_list(&token, "flows"), [PW_ONLY, MFA_FLOW]);
    let echo = b.get_html(&page).await.echo();
    assert_eq!(echo.header("remote-user"), Some("carol"));
}

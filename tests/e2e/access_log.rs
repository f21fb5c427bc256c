//! The access log (`[log] access = true`): one line per request with app, user, status and
//! outcome, in the request's span; never a cookie, token, code or password. Off by default.

use crate::harness::*;
use std::time::{Duration, Instant};

const ACCESS: &str = "portcullis::access";

fn access_on() -> Setup {
    Setup {
        extra_toml: "[log]\naccess = true\n".into(),
        ..Setup::default()
    }
}

/// The access-log lines so far, once at least `n` are there (the `logging` phase runs after
/// the answer is sent).
async fn access_lines(gw: &Gateway, n: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let lines: Vec<String> = gw
            .logs()
            .lines()
            .filter(|l| l.contains(ACCESS))
            .map(str::to_string)
            .collect();
        if lines.len() >= n || Instant::now() > deadline {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A GET on `host` with the session `token` (cookies are host-only: the browser keeps them
/// for app.test alone).
async fn get_on(b: &Browser, host: &str, token: &str) -> Resp {
    let req = b
        .http
        .get(b.url_on(host, "/"))
        .header("accept", "application/json")
        .header("cookie", format!("{SESSION_COOKIE}={token}"));
    b.send(req).await
}

/// The one access line for `path` on `host` with `status`.
fn line_for<'a>(lines: &'a [String], host: &str, path: &str, status: u16) -> &'a str {
    lines
        .iter()
        .find(|l| {
            l.contains(&format!("host=\"{host}:"))
                && l.contains(&format!("path=\"{path}\""))
                && l.contains(&format!("status={status}"))
        })
        .unwrap_or_else(|| {
            panic!(
                "no access line for {host}{path} {status}:\n{}",
                lines.join("\n")
            )
        })
}

#[tokio::test(flavor = "multi_thread")]
async fn access_log_names_app_user_status_and_outcome_and_no_secret() {
    let gw = Gateway::start_with(access_on()).await;
    let b = gw.browser();
    // An HTML sign-in: a CSRF token, a flow cookie and a password travel.
    let first = b.get_html(&b.url(&flow_path())).await;
    let csrf = form_page(&first).csrf;
    let flow_id = b
        .cookie(&b.url("/.portcullis/"), FLOW_COOKIE)
        .unwrap_or_default();
    let done = html_sign_in_from(&b, &flow_path(), "alice", ALICE_PW).await;
    let token = done
        .set_cookie_value(SESSION_COOKIE)
        .expect("a session cookie");
    let app = b.get_json(&b.url("/reports?q=1")).await;
    assert_eq!(app.status, 200, "{}", app.describe());
    let denied = get_on(&b, ADMIN_APP, &token).await;
    assert_eq!(denied.status, 403, "{}", denied.describe());
    // A sign-in link's token and a code travel in the query; neither may be logged.
    let link_token = "LinkTokenSecret0123456789abcdef";
    b.get_html(&b.url(&format!("/.portcullis/link?token={link_token}&code=424242")))
        .await;
    let anon = gw.raw().get_with_token("/", "", "application/json").await;
    assert_eq!(anon.status, 401, "{}", anon.describe());

    // A Host that tries to forge fields of the line is refused and logged escaped.
    let forged = b
        .send(b.http.get(b.url("/")).header("host", "x\" user=\"admin"))
        .await;
    assert_eq!(forged.status, 400, "{}", forged.describe());
    // ping (the harness), 5 sign-in steps, 5 requests.
    let lines = access_lines(&gw, 11).await;
    let bad_host = lines
        .iter()
        .find(|l| l.contains("outcome=\"bad_host\""))
        .unwrap_or_else(|| panic!("no bad_host line:\n{}", lines.join("\n")));
    assert!(
        !bad_host.contains(" user=\"admin\""),
        "forged field: {bad_host}"
    );
    assert!(bad_host.contains("user=\"\""), "{bad_host}");
    let allowed = line_for(&lines, APP, "/reports", 200);
    for field in [
        "app=\"demo\"",
        "user=\"alice\"",
        "outcome=\"allow\"",
        "method=\"GET\"",
        "duration_us=",
    ] {
        assert!(allowed.contains(field), "{field} missing: {allowed}");
    }
    let forbidden = line_for(&lines, ADMIN_APP, "/", 403);
    assert!(
        forbidden.contains("user=\"alice\"") && forbidden.contains("outcome=\"forbidden\""),
        "{forbidden}"
    );
    let anonymous = line_for(&lines, APP, "/", 401);
    assert!(
        anonymous.contains("user=\"\"") && anonymous.contains("outcome=\"unauthenticated\""),
        "{anonymous}"
    );
    assert!(line_for(&lines, APP, "/.portcullis/link", 410).contains("outcome=\"portal\""));
    // Every line carries its own request id, in the request's span too.
    let ids: std::collections::BTreeSet<&str> = lines
        .iter()
        .filter_map(|l| l.split("request_id=").nth(2)?.split_whitespace().next())
        .collect();
    assert_eq!(
        ids.len(),
        lines.len(),
        "one id per request, in span and line:\n{}",
        lines.join("\n")
    );

    let logs = gw.logs();
    let secrets = [
        ("password", ALICE_PW),
        ("session cookie", token.as_str()),
        ("csrf token", csrf.as_str()),
        ("flow cookie", flow_id.as_str()),
        ("link token", link_token),
        ("code", "424242"),
        ("query", "q=1"),
    ];
    for (what, secret) in secrets {
        assert!(!secret.is_empty(), "{what} was captured");
        assert!(!logs.contains(secret), "the {what} is in the log:\n{logs}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn access_log_is_off_by_default_and_other_lines_carry_the_request_id() {
    let gw = Gateway::start().await;
    let (b, s) = alice_browser(&gw).await;
    let denied = get_on(&b, ADMIN_APP, &s.token).await;
    assert_eq!(denied.status, 403, "{}", denied.describe());
    let r = b.get_json(&b.url("/")).await;
    assert_eq!(r.status, 200, "{}", r.describe());
    let logs = gw.logs();
    assert!(
        !logs.contains(ACCESS),
        "access lines without [log] access:\n{logs}"
    );
    let denial = logs
        .lines()
        .find(|l| l.contains("access denied by allowed_groups"))
        .unwrap_or_else(|| panic!("no denial line:\n{logs}"));
    assert!(denial.contains("request{request_id="), "{denial}");
}

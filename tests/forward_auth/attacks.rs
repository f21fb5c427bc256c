//! A penetration tester's table against the forward-auth endpoints: how a proxy (or a client
//! whose headers a proxy passes along) can describe the original request so that it is judged
//! as another one. Each row names the attack and what must come back.

use crate::support::*;

const TRAEFIK: &str = "/.portcullis/auth/traefik";
const NGINX: &str = "/.portcullis/auth/nginx";
const COMPAT_TRAEFIK: &str = "/api/authz/forward-auth";
const COMPAT_NGINX: &str = "/api/authz/auth-request";

/// One forward-auth call from a trusted proxy (loopback), anonymous, as a page load.
async fn ask(gw: &Gateway, endpoint: &str, headers: &[(&str, &str)]) -> (Option<u16>, String) {
    let front = format!("127.0.0.1:{}", gw.port);
    let mut h = headers.to_vec();
    h.push(("accept", ACCEPT_HTML));
    raw_try(gw.port, &front, endpoint, &h).await
}

/// The host a redirect or sign-in URL leads to, as a browser reads it.
fn leads_to(url: &str) -> Option<String> {
    url::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
}

/// A described host that is not a plain `host[:port]` (userinfo, a path, a second host) is
/// never judged as the app its first characters name: with no auth host configured the
/// sign-in URL is built from it, and `wiki.example.test:1@evil.test` then sends the browser to
/// evil.test. The proxy mode refuses such a `Host` with 400; forward-auth now denies it.
#[tokio::test]
async fn a_described_host_with_userinfo_or_a_path_never_shapes_the_sign_in_url() {
    let gw = Gateway::start(Opts {
        auth_host: None,
        cookie_domain: None,
        ..Opts::default()
    })
    .await;
    let bent_hosts = [
        format!("{WIKI}:1@evil.test"),
        format!("{WIKI}:80@evil.test:80"),
        format!("{WIKI}:@evil.test"),
        format!("{WIKI}:1/@evil.test"),
        format!("{WIKI}:1#@evil.test"),
        format!("{WIKI}:1?@evil.test"),
        format!("{WIKI}:1\\@evil.test"),
        format!("{WIKI}:99999"),
        format!("{WIKI}:-1"),
    ];
    let mut failures = Vec::new();
    for host in &bent_hosts {
        for (endpoint, headers) in [
            (
                TRAEFIK,
                vec![
                    ("x-forwarded-host", host.as_str()),
                    ("x-forwarded-uri", "/secret"),
                    ("x-forwarded-proto", "http"),
                ],
            ),
            (
                COMPAT_TRAEFIK,
                vec![
                    ("x-forwarded-host", host.as_str()),
                    ("x-forwarded-uri", "/secret"),
                ],
            ),
            (
                NGINX,
                vec![
                    ("x-forwarded-host", host.as_str()),
                    ("x-original-uri", "/secret"),
                ],
            ),
            (
                COMPAT_NGINX,
                vec![
                    ("x-forwarded-host", host.as_str()),
                    ("x-original-uri", "/secret"),
                ],
            ),
        ] {
            let (status, text) = ask(&gw, endpoint, &headers).await;
            let bad_target = ["location:", "x-portcullis-redirect:"]
                .iter()
                .filter_map(|name| {
                    text.lines()
                        .find(|l| l.to_ascii_lowercase().starts_with(name))
                        .map(|l| l[name.len()..].trim().to_string())
                })
                .find(|u| leads_to(u).is_some_and(|h| h != WIKI));
            if status == Some(200) || bad_target.is_some() {
                failures.push(format!("{endpoint} {host:?} -> {status:?} {bad_target:?}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "described hosts that shaped the answer:\n{}\n{}",
        failures.join("\n"),
        gw.logs()
    );
}

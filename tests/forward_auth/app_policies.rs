//! Policies bound to apps (the table of tests/support/app_policies_table.rs) through the
//! Traefik and nginx forward-auth endpoints: the same verdicts and messages as in proxy mode,
//! the message as JSON for API clients and on the HTML page for browsers.

use crate::app_policies_table::*;
use crate::harness::Resp;
use crate::support::*;

/// Signs `user` in on the gateway and returns the session cookie as a `Cookie` value.
async fn cookie(gw: &Gateway, user: &str, pw: &str) -> String {
    let c = Client::new(gw.addr());
    let page = c.url(WIKI, "/start");
    let login = assert_auth_redirect(&c.page(&page).await, &page);
    let (_, resp) = api_sign_in(&c, &login, user, pw).await;
    let v = resp
        .set_cookie_value(SESSION_COOKIE)
        .expect("session cookie");
    format!("{SESSION_COOKIE}={v}")
}

/// The gateway, alice's cookie (in `admins` here) and bob's (not).
async fn gateway() -> (Gateway, String, String) {
    let gw = Gateway::start(Opts {
        extra: app_policies_toml("127.0.0.1:9", FLOW),
        ..Opts::default()
    })
    .await;
    let alice = cookie(&gw, "alice", ALICE_PW).await;
    let bob = cookie(&gw, "bob", BOB_PW).await;
    (gw, alice, bob)
}

async fn call(gw: &Gateway, endpoint: &str, accept: &str, headers: &[(&str, &str)]) -> Resp {
    let c = Client::new(gw.addr());
    let mut rb = c
        .http
        .get(format!("http://127.0.0.1:{}{endpoint}", gw.port))
        .header("accept", accept);
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    Resp::read(rb.send().await.expect("forward-auth call")).await
}

/// The headers Traefik (`traefik`) and nginx (`nginx`) send for a request.
fn described(
    host: &str,
    path: &str,
    from: &str,
    cookie: Option<&str>,
) -> [Vec<(String, String)>; 2] {
    let mut traefik = vec![
        ("x-forwarded-method".to_string(), "GET".to_string()),
        ("x-forwarded-proto".into(), "http".into()),
        ("x-forwarded-host".into(), host.into()),
        ("x-forwarded-uri".into(), path.into()),
        ("x-forwarded-for".into(), from.into()),
    ];
    let mut nginx = vec![
        ("x-original-url".to_string(), format!("http://{host}{path}")),
        ("x-original-method".into(), "GET".into()),
        ("x-forwarded-for".into(), from.into()),
    ];
    if let Some(c) = cookie {
        traefik.push(("cookie".into(), c.into()));
        nginx.push(("cookie".into(), c.into()));
    }
    [traefik, nginx]
}

#[tokio::test]
async fn app_policies_decide_the_same_through_the_traefik_and_nginx_endpoints() {
    let (gw, alice, bob) = gateway().await;
    for &(host, path, who, from, want, message) in CASES {
        let cookie = match who {
            Who::Anonymous => None,
            Who::Admin => Some(alice.as_str()),
            Who::Staff => Some(bob.as_str()),
        };
        let [traefik, nginx] = described(host, path, from, cookie);
        for (name, endpoint, headers) in [
            ("traefik", "/.portcullis/auth/traefik", &traefik),
            ("nginx", "/.portcullis/auth/nginx", &nginx),
        ] {
            let headers: Vec<(&str, &str)> = headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let r = call(&gw, endpoint, "application/json", &headers).await;
            let what = format!(
                "{name}: {host}{path} as {who:?} from {from}: {}",
                r.describe()
            );
            assert_eq!(seen(r.status), Some(want), "{what}");
            if let Some(m) = message {
                let v = r.json();
                assert_eq!(v["error"], "access_denied", "{what}");
                assert_eq!(v["message"], m, "{what}");
            }
        }
    }
}

#[tokio::test]
async fn a_refusing_app_policy_gives_forward_auth_the_html_page_with_its_message() {
    let (gw, _alice, bob) = gateway().await;
    let [traefik, _] = described(UK, "/x", "89.160.20.112", Some(&bob));
    let headers: Vec<(&str, &str)> = traefik
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let r = call(&gw, "/.portcullis/auth/traefik", ACCEPT_HTML, &headers).await;
    assert_eq!(r.status, 403, "{}", r.describe());
    assert!(
        r.content_type().starts_with("text/html"),
        "{}",
        r.describe()
    );
    assert!(
        r.body.contains("Only from the United Kingdom."),
        "{}",
        r.body
    );
    assert!(r.body.contains("signed in as bob"), "{}", r.body);
}

//! The access-rules table (tests/support/rules_table.rs) through the Traefik and nginx
//! forward-auth endpoints, and through a real nginx and a real Caddy with the shipped example
//! configs.

use crate::fronts::{Front, Kind, Site};
use crate::harness::{Resp, Upstream};
use crate::rules_table::*;
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

async fn gateway(upstream: &str) -> (Gateway, String, String) {
    let gw = Gateway::start(Opts {
        extra: rules_toml(upstream, FLOW),
        upstream: upstream.into(),
        ..Opts::default()
    })
    .await;
    let alice = cookie(&gw, "alice", ALICE_PW).await;
    let bob = cookie(&gw, "bob", BOB_PW).await;
    (gw, alice, bob)
}

fn who<'a>(w: Who, alice: &'a str, bob: &'a str) -> Option<&'a str> {
    match w {
        Who::Anonymous => None,
        Who::Admin => Some(alice),
        Who::Staff => Some(bob),
    }
}

async fn call(gw: &Gateway, endpoint: &str, headers: &[(&str, &str)]) -> Resp {
    let c = Client::new(gw.addr());
    let mut rb = c
        .http
        .get(format!("http://127.0.0.1:{}{endpoint}", gw.port))
        .header("accept", "application/json");
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    Resp::read(rb.send().await.expect("forward-auth call")).await
}

#[tokio::test]
async fn the_rules_table_decides_the_same_through_the_traefik_and_nginx_endpoints() {
    let (gw, alice, bob) = gateway("127.0.0.1:9").await;
    for &(method, path, w, client, want) in CASES {
        let cookie = who(w, &alice, &bob);
        let mut traefik = vec![
            ("x-forwarded-method", method),
            ("x-forwarded-proto", "http"),
            ("x-forwarded-host", GRAFANA),
            ("x-forwarded-uri", path),
            ("x-forwarded-for", client),
        ];
        let original = format!("http://{GRAFANA}{path}");
        let mut nginx = vec![
            ("x-original-url", original.as_str()),
            ("x-original-method", method),
            ("x-forwarded-for", client),
        ];
        if let Some(c) = cookie {
            traefik.push(("cookie", c));
            nginx.push(("cookie", c));
        }
        for (name, endpoint, headers) in [
            ("traefik", "/.portcullis/auth/traefik", &traefik),
            ("nginx", "/.portcullis/auth/nginx", &nginx),
        ] {
            let r = call(&gw, endpoint, headers).await;
            assert_eq!(
                seen(r.status),
                Some(want),
                "{name}: {method} {path} as {w:?} from {client}: {}",
                r.describe()
            );
        }
    }
}

#[tokio::test]
async fn the_rules_table_holds_through_a_real_nginx() {
    let upstream = Upstream::start().await;
    let (gw, alice, bob) = gateway(&upstream.addr.to_string()).await;
    let site = Site::new(
        &[WIKI, ADMIN, GRAFANA],
        AUTH,
        &upstream.addr.to_string(),
        &gw.addr().to_string(),
    );
    let nginx = Front::start(Kind::Nginx, &site).await;
    let front: std::net::SocketAddr = ([127, 0, 0, 1], nginx.port).into();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .resolve(GRAFANA, front)
        .build()
        .expect("client");
    // The client reaches nginx from loopback, outside the monitoring network: only the cases
    // from outside it apply.
    for &(method, path, w, client, want) in CASES.iter().filter(|c| c.3 != "10.9.1.1") {
        let mut rb = http
            .request(
                method.parse().expect("method"),
                format!("http://{GRAFANA}{path}"),
            )
            .header("accept", "application/json");
        if let Some(c) = who(w, &alice, &bob) {
            rb = rb.header("cookie", c);
        }
        let r = Resp::read(rb.send().await.expect("through nginx")).await;
        assert_eq!(
            seen(r.status),
            Some(want),
            "nginx: {method} {path} as {w:?} (client {client}): {}\n{}",
            r.describe(),
            logs_of(&nginx, &gw)
        );
    }
}

/// Sends `case` to the front on `port` as the client would (the session cookie of `w`, and
/// `X-Forwarded-For` naming `client` when `forward` is set) and says what it saw.
async fn through(
    http: &reqwest::Client,
    case: &Case,
    alice: &str,
    bob: &str,
    forward: bool,
) -> Resp {
    let &(method, path, w, client, _) = case;
    let mut rb = http
        .request(
            method.parse().expect("method"),
            format!("http://{GRAFANA}{path}"),
        )
        .header("accept", "application/json");
    if let Some(c) = who(w, alice, bob) {
        rb = rb.header("cookie", c);
    }
    if forward {
        rb = rb.header("x-forwarded-for", client);
    }
    Resp::read(rb.send().await.expect("through the front")).await
}

fn client_for(port: u16) -> reqwest::Client {
    let front: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .resolve(GRAFANA, front)
        .build()
        .expect("client")
}

/// The shipped Caddyfile's `forward_auth`, every row of the table. Caddy as shipped trusts no
/// proxy, so it replaces a client's `X-Forwarded-For` with the client's address: the rows from
/// the monitoring network are sent from loopback, where a claimed `10.9.1.1` must not take
/// the bypass. Behind a load balancer on loopback (`trusted_proxies`), Caddy passes the
/// balancer's `X-Forwarded-For` on (Caddy 2.6 takes `trusted_proxies` in `forward_auth`),
/// and every row, the monitoring network's too, gives the proxy's answer.
#[tokio::test]
async fn the_rules_table_holds_through_a_real_caddy() {
    let upstream = Upstream::start().await;
    let (gw, alice, bob) = gateway(&upstream.addr.to_string()).await;
    let site = Site::new(
        &[WIKI, ADMIN, GRAFANA],
        AUTH,
        &upstream.addr.to_string(),
        &gw.addr().to_string(),
    );
    // As shipped.
    let caddy = Front::start(Kind::Caddy, &site).await;
    let http = client_for(caddy.port);
    for case in CASES.iter().filter(|c| c.3 != "10.9.1.1") {
        let r = through(&http, case, &alice, &bob, false).await;
        let (method, path, w, client, want) = *case;
        assert_eq!(
            seen(r.status),
            Some(want),
            "caddy: {method} {path} as {w:?} (client {client}): {}\n{}",
            r.describe(),
            logs_of(&caddy, &gw)
        );
    }
    // A client that claims the monitoring network is not believed: Caddy drops its claim.
    for case in CASES.iter().filter(|c| c.3 == "10.9.1.1") {
        let r = through(&http, case, &alice, &bob, true).await;
        let (method, path, w, _, _) = *case;
        assert_ne!(
            seen(r.status),
            Some(Seen::Passes),
            "caddy believed a client's X-Forwarded-For: {method} {path} as {w:?}: {}",
            r.describe()
        );
    }
    drop(caddy);

    // Behind a balancer on loopback: every row.
    let site = site.caddy_forward_auth("\t\t\ttrusted_proxies 127.0.0.1/32 ::1/128");
    let caddy = Front::start(Kind::Caddy, &site).await;
    let http = client_for(caddy.port);
    for case in CASES {
        let r = through(&http, case, &alice, &bob, true).await;
        let (method, path, w, client, want) = *case;
        assert_eq!(
            seen(r.status),
            Some(want),
            "caddy behind a balancer: {method} {path} as {w:?} from {client}: {}\n{}",
            r.describe(),
            logs_of(&caddy, &gw)
        );
    }
}

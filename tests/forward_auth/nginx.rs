//! Debian's nginx in front of the gateway with the shipped `config/nginx/portcullis.conf`
//! (`auth_request`, `auth_request_set`, the 401 -> sign-in redirect), only its placeholders
//! substituted.

use crate::harness::Upstream;
use crate::support::*;
use crate::walk::{app_gets_no_spoofed_identity_and_no_session_cookie, full_walk, sign_in_through};

/// The shipped example in front of `gw`, both apps proxied to `upstream`.
async fn start_nginx(upstream: &Upstream, gw: &Gateway) -> Front {
    start_example(Kind::Nginx, &upstream.addr.to_string(), gw).await
}

/// The shipped example in front of `gw`: the wiki app proxied to `wiki`, the admin app to
/// `admin` (addresses), `http_extra` added to the `http { }` block.
async fn start_nginx_example(wiki: &str, admin: &str, gw: &Gateway, http_extra: &str) -> Front {
    let site = Site::new(&[WIKI, ADMIN], AUTH, wiki, &gw.addr().to_string())
        .upstream_for(ADMIN, admin)
        .nginx_http(http_extra);
    Front::start(Kind::Nginx, &site).await
}

#[tokio::test]
async fn nginx_example_config_signs_in_across_subdomains_and_passes_identity() {
    let upstream = Upstream::start().await;
    let gw = Gateway::for_upstream(upstream.addr.to_string()).await;
    let nginx = start_nginx(&upstream, &gw).await;
    let logs = || logs_of(&nginx, &gw);
    full_walk(nginx.port, &upstream, &gw, &logs).await;
}

#[tokio::test]
async fn nginx_request_with_an_odd_host_cannot_claim_a_bypass_path() {
    let upstream = Upstream::start().await;
    let gw = Gateway::for_upstream(upstream.addr.to_string()).await;
    let nginx = start_nginx(&upstream, &gw).await;
    // nginx accepts this Host and, matching no server_name, serves it with the first (the
    // protected app's) server block; the X-Original-URL it builds from it is not a valid URL.
    // The client's own X-Original-URI / X-Forwarded-Host, passed along by nginx, must not then
    // decide what is being asked for.
    let c = Client::new(([127, 0, 0, 1], nginx.port).into());
    let r = c
        .get(
            &format!("http://127.0.0.1:{}/private/report", nginx.port),
            ACCEPT_HTML,
            &[
                ("host", "wiki.example.test^"),
                ("x-original-uri", "/public/free"),
                ("x-forwarded-host", WIKI),
            ],
        )
        .await;
    assert_eq!(
        upstream.hits(),
        0,
        "reached the app without signing in: {}\n{}",
        r.describe(),
        gw.logs()
    );
    assert!(
        matches!(r.status, 401 | 403 | 302),
        "{}\n{}",
        r.describe(),
        nginx.logs()
    );
}

#[tokio::test]
async fn nginx_example_passes_no_spoofed_identity_spelling_and_no_session_cookie() {
    // nginx drops header names with `_` unless `underscores_in_headers on` is set; the example
    // must hold either way.
    for http_extra in ["", "underscores_in_headers on;"] {
        let upstream = Upstream::start().await;
        let gw = Gateway::for_upstream(upstream.addr.to_string()).await;
        let up = upstream.addr.to_string();
        let nginx = start_nginx_example(&up, &up, &gw, http_extra).await;
        let logs = || {
            format!(
                "[{http_extra}]\n--- nginx ---\n{}\n--- gateway ---\n{}",
                nginx.logs(),
                gw.logs()
            )
        };
        app_gets_no_spoofed_identity_and_no_session_cookie(nginx.port, &upstream, &logs).await;
    }
}

/// nginx picks the server block from an absolute-form target's host, not from `Host`.
#[tokio::test]
async fn nginx_absolute_form_request_gets_the_decision_of_the_app_nginx_routed_to() {
    // wiki: bypass `^/public/`; admin (grafana's part): allowed_groups = ["admins"]. Each app
    // has its own upstream, so what reached which app is known.
    let wiki_up = Upstream::start().await;
    let admin_up = Upstream::start().await;
    let gw = Gateway::for_upstream(wiki_up.addr.to_string()).await;
    let nginx = start_nginx_example(
        &wiki_up.addr.to_string(),
        &admin_up.addr.to_string(),
        &gw,
        "",
    )
    .await;
    let p = nginx.port;
    let (wiki, admin) = (format!("{WIKI}:{p}"), format!("{ADMIN}:{p}"));
    let logs = || logs_of(&nginx, &gw);
    let bob = format!(
        "{SESSION_COOKIE}={}",
        sign_in_through(p, "bob", BOB_PW).await
    );
    let json = ("accept", "application/json");

    // Anonymous, to admin, with wiki's Host and a path wiki lets through.
    for path in ["/public/x", "/public/info", "/"] {
        let target = format!("http://{admin}{path}");
        let (status, text) = raw_try(p, &wiki, &target, &[json]).await;
        assert_eq!(
            admin_up.hits(),
            0,
            "{target} with Host {wiki} reached admin anonymously: {text}\n{}",
            logs()
        );
        assert_ne!(status, Some(200), "{target}: {text}");
    }
    // bob (not in admins), to admin, with wiki's Host.
    let target = format!("http://{admin}/dash");
    let (status, text) = raw_try(p, &wiki, &target, &[json, ("cookie", bob.as_str())]).await;
    assert_eq!(
        admin_up.hits(),
        0,
        "bob reached admin through wiki's Host: {text}\n{}",
        logs()
    );
    assert_eq!(status, Some(403), "{text}");

    // The other way round, each app keeps its own decision: wiki's bypass on wiki, and wiki is
    // what the upstream is told it serves.
    let target = format!("http://{wiki}/public/x");
    let (status, text) = raw_get(p, &admin, &target, &[json]).await;
    assert_eq!(status, 200, "{text}\n{}", logs());
    let seen = wiki_up.seen();
    let last = seen.last().expect("wiki's upstream reached");
    assert_eq!(last.header("host"), Some(WIKI), "{:?}", last.headers);
    assert_eq!(admin_up.hits(), 0);

    // The endpoint itself: an X-Original-URL naming another host than the routed one is 400.
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    for (url, routed, want) in [
        (format!("http://{WIKI}/public/x"), ADMIN, 400),
        (format!("http://{ADMIN}/public/x"), WIKI, 400),
        (format!("http://{WIKI}:{p}/public/x"), WIKI, 200),
    ] {
        let r = http
            .get(format!(
                "http://127.0.0.1:{}/.portcullis/auth/nginx",
                gw.port
            ))
            .header("x-original-url", &url)
            .header("x-forwarded-host", routed)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), want, "{url} routed as {routed}");
    }
}

/// The shipped example keeps its connections to the gateway open between auth subrequests
/// (an `upstream` block with `keepalive`, HTTP/1.1, an empty `Connection`): thirty requests of
/// one client reach the gateway over at most two connections, not thirty.
#[tokio::test]
async fn nginx_example_keeps_its_connections_to_the_gateway_alive() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let upstream = Upstream::start().await;
    let gw = Gateway::for_upstream(upstream.addr.to_string()).await;
    // A relay in front of the gateway that counts the connections nginx opens.
    let relay = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let relay_addr = relay.local_addr().unwrap();
    let opened = Arc::new(AtomicUsize::new(0));
    let counter = opened.clone();
    let gw_addr = gw.addr();
    tokio::spawn(async move {
        while let Ok((mut down, _)) = relay.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                if let Ok(mut up) = tokio::net::TcpStream::connect(gw_addr).await {
                    let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
                }
            });
        }
    });
    let site = Site::new(
        &[WIKI, ADMIN],
        AUTH,
        &upstream.addr.to_string(),
        &relay_addr.to_string(),
    );
    let nginx = Front::start(Kind::Nginx, &site).await;
    let c = Client::new(([127, 0, 0, 1], nginx.port).into());
    let before = opened.load(Ordering::SeqCst);
    for i in 0..30 {
        // A bypass path: the gateway answers 200 without a session, nginx proxies upstream.
        let r = c
            .get(&c.url(WIKI, &format!("/public/{i}")), "text/plain", &[])
            .await;
        assert_eq!(r.status, 200, "{}\n{}", r.describe(), logs_of(&nginx, &gw));
    }
    let opened = opened.load(Ordering::SeqCst) - before;
    assert!(
        opened <= 2,
        "nginx opened {opened} connections to the gateway for 30 auth subrequests"
    );
}

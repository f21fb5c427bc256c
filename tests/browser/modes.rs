//! Every deployment mode the README documents, walked by a person in headless Chromium, with
//! JavaScript on and again with it off: open the app, follow the redirect to the sign-in page,
//! type into the forms, land on the app signed in (the upstream shows the identity), open a
//! second app under the cookie domain without signing in again, sign out, and find both apps
//! closed. Hosts are under one cookie domain (`example.test`) and resolve to the front door
//! by `--host-resolver-rules`; one gateway (and front proxy) per mode serves both walks.

use crate::chrome::{Chrome, Options};
use crate::fronts::{Front, Kind, Site};
use crate::harness::{self, Upstream};
use crate::support::{self, Opts, ADMIN, AUTH, WIKI};
use serde_json::Value;

/// One deployment as the browser sees it.
struct Mode {
    name: &'static str,
    /// Where the first app lives (as configured: the origin users reach it at).
    app: String,
    /// A second app under the cookie domain.
    second: String,
    /// The origin of the sign-in pages.
    signin: String,
    /// Host name -> port, what DNS and the front door's listener do in production.
    map: Vec<(String, u16)>,
    https: bool,
}

impl Mode {
    fn logout(&self) -> String {
        format!("{}/.portcullis/logout", self.signin)
    }
}

fn map_all(port: u16) -> Vec<(String, u16)> {
    [WIKI, ADMIN, AUTH]
        .iter()
        .map(|h| (h.to_string(), port))
        .collect()
}

/// The identity the upstream saw, from its JSON echo on the page.
fn remote_user(text: &str) -> Option<String> {
    let v: Value = serde_json::from_str(text).ok()?;
    v["headers"]["remote-user"].as_str().map(str::to_string)
}

async fn walk(mode: &Mode, javascript: bool) {
    let tag = format!("{}-{}", mode.name, if javascript { "js" } else { "no-js" });
    let chrome = Chrome::start_with(Options {
        map: mode.map.clone(),
        javascript,
        accept_dev_certificate: mode.https,
        ..Options::mapping(&[])
    })
    .await;

    // Open the app: sent to the sign-in page.
    let page = format!("{}/reports?year=2026", mode.app);
    chrome.go(&page).await;
    let at = chrome.wait_url(|u| u.contains("/.portcullis/flow/")).await;
    assert!(
        at.starts_with(&format!("{}/.portcullis/flow/", mode.signin)),
        "{tag}: not sent to the sign-in page at {}: {at}",
        mode.signin
    );

    // Type as a person does.
    chrome.type_into("#f-uid", "alice").await;
    chrome.click("button[type=submit]").await;
    chrome.type_into("#f-password", support::ALICE_PW).await;
    chrome.screenshot(&format!("mode-{tag}-password")).await;
    chrome.click("button[type=submit]").await;
    let at = chrome.wait_url(|u| u == page).await;
    let text = chrome.wait_text(|t| t.contains("remote-user")).await;
    assert_eq!(
        at, page,
        "{tag}: after the password the browser is not on the app:\n{text}"
    );
    assert_eq!(
        remote_user(&text).as_deref(),
        Some("alice"),
        "{tag}: the app does not see alice:\n{text}"
    );
    chrome.screenshot(&format!("mode-{tag}-signed-in")).await;

    // The second app: signed in already.
    let second = format!("{}/dash", mode.second);
    chrome.go(&second).await;
    let text = chrome.wait_text(|t| t.contains("remote-user")).await;
    assert_eq!(
        chrome.url().await,
        second,
        "{tag}: the second app asked for a sign-in again:\n{text}"
    );
    assert_eq!(
        remote_user(&text).as_deref(),
        Some("alice"),
        "{tag}: {text}"
    );

    // Sign out on the confirm page.
    chrome.go(&mode.logout()).await;
    let text = chrome.wait_text(|t| t.contains("signed in as alice")).await;
    assert!(text.contains("signed in as alice"), "{tag}: {text}");
    chrome.click("button[type=submit]").await;
    let text = chrome
        .wait_text(|t| t.contains("You have signed out"))
        .await;
    assert!(text.contains("You have signed out"), "{tag}: {text}");

    // Both apps closed again.
    for url in [&page, &second] {
        chrome.go(url).await;
        let at = chrome.wait_url(|u| u.contains("/.portcullis/flow/")).await;
        assert!(
            at.contains("/.portcullis/flow/"),
            "{tag}: {url} still open after signing out: {at}"
        );
    }
}

/// Both walks, JavaScript on and off, against one deployment.
async fn walk_both(mode: &Mode) {
    walk(mode, true).await;
    walk(mode, false).await;
}

fn origin(scheme: &str, host: &str) -> String {
    format!("{scheme}://{host}")
}

#[tokio::test(flavor = "multi_thread")]
async fn gateway_as_the_proxy_without_an_auth_host() {
    let up = Upstream::start().await;
    let gw = support::Gateway::start(Opts {
        auth_host: None,
        upstream: up.addr.to_string(),
        ..Opts::default()
    })
    .await;
    // No auth_url: the apps' origins default to the gateway's listener.
    let app = format!("http://{WIKI}:{}", gw.port);
    walk_both(&Mode {
        name: "proxy",
        signin: app.clone(),
        app,
        second: format!("http://{ADMIN}:{}", gw.port),
        map: map_all(gw.port),
        https: false,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn gateway_as_the_proxy_with_an_auth_host() {
    let up = Upstream::start().await;
    let gw = support::Gateway::for_upstream(up.addr.to_string()).await;
    walk_both(&Mode {
        name: "proxy-auth-host",
        app: origin("http", WIKI),
        second: origin("http", ADMIN),
        signin: origin("http", AUTH),
        map: map_all(gw.port),
        https: false,
    })
    .await;
}

async fn behind(kind: Kind, name: &'static str) {
    let up = Upstream::start().await;
    let gw = support::Gateway::for_upstream(up.addr.to_string()).await;
    let site = Site::new(
        &[WIKI, ADMIN],
        AUTH,
        &up.addr.to_string(),
        &gw.addr().to_string(),
    );
    let front = Front::start(kind, &site).await;
    walk_both(&Mode {
        name,
        app: origin("http", WIKI),
        second: origin("http", ADMIN),
        signin: origin("http", AUTH),
        map: map_all(front.port),
        https: false,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn behind_nginx_auth_request_with_the_shipped_config() {
    behind(Kind::Nginx, "nginx").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn behind_caddy_forward_auth_with_the_shipped_caddyfile() {
    behind(Kind::Caddy, "caddy").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn https_with_the_dev_certificate() {
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    let out = harness::run_cli(
        vec![
            "certs".into(),
            "dev".into(),
            "--out".into(),
            certs.display().to_string(),
        ],
        None,
    )
    .await;
    assert!(out.ok(), "certs dev: {}", out.all());
    let tls = harness::Listener::bind();
    let tls_port = tls.port();
    let gw = support::Gateway::start(Opts {
        upstream: up.addr.to_string(),
        auth_url: Some(format!("https://{AUTH}")),
        server_extra: format!(
            "tls_listen = [\"127.0.0.1:{tls_port}\"]\n[[server.certificates]]\ncert = {}\nkey = {}\n",
            harness::toml_str(&certs.join("dev.pem").display().to_string()),
            harness::toml_str(&certs.join("dev.key").display().to_string()),
        ),
        listeners: vec![tls.clone()],
        ..Opts::default()
    })
    .await;
    let _ = &gw;
    walk_both(&Mode {
        name: "https",
        app: origin("https", WIKI),
        second: origin("https", ADMIN),
        signin: origin("https", AUTH),
        map: map_all(tls_port),
        https: true,
    })
    .await;
}

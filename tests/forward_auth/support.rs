//! The gateway in forward-auth mode (auth host + cookie domain), clients for the test hosts,
//! and sign-in helpers that work through any front proxy.
#![allow(dead_code)]

pub use crate::fronts::{Front, Kind, Site};
use crate::harness::{self, Listener, Resp, Serve, UserSpec};
use reqwest::cookie::Jar;
use serde_json::{json, Value};
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::Arc;
use std::time::Duration;

pub const DOMAIN: &str = "example.test";
pub const WIKI: &str = "wiki.example.test";
pub const ADMIN: &str = "admin.example.test";
pub const AUTH: &str = "auth.example.test";
pub const FLOW: &str = "default-authentication";
pub const SESSION_COOKIE: &str = "portcullis_session";
pub const ACCEPT_HTML: &str = harness::ACCEPT_HTML;

pub const ALICE_PW: &str = "Alice-forward-auth-8812";
pub const BOB_PW: &str = "Bob-forward-auth-4471";

/// alice is in `admins`; bob is not.
pub fn users() -> Vec<UserSpec> {
    vec![
        UserSpec::new(
            "alice",
            "Alice Liddell",
            "alice@example.test",
            &["admins", "staff"],
            ALICE_PW,
        ),
        UserSpec::new("bob", "Bob Builder", "bob@example.test", &["staff"], BOB_PW),
    ]
}

/// Options of the gateway's config.
#[derive(Clone)]
pub struct Opts {
    /// `[server]` lines added verbatim (tls_listen, certificates, ...).
    pub server_extra: String,
    /// `None`: default (loopback).
    pub trusted_proxies: Option<String>,
    /// Written as `auth_url = "http://<auth_host>"`: the apps' origins then default to
    /// `http://<host>` too (port 80, which the test clients map to the real port).
    pub auth_host: Option<String>,
    /// `[server] auth_url` written as given; wins over `auth_host`.
    pub auth_url: Option<String>,
    pub cookie_domain: Option<String>,
    /// Extra `[[apps]]` and other tables appended verbatim.
    pub extra: String,
    /// Hosts of the two standard apps.
    pub wiki_hosts: Vec<String>,
    pub upstream: String,
    /// Listeners handed over besides the plain one (e.g. the `tls_listen` of `server_extra`).
    pub listeners: Vec<Listener>,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            server_extra: String::new(),
            trusted_proxies: None,
            auth_host: Some(AUTH.into()),
            auth_url: None,
            cookie_domain: Some(DOMAIN.into()),
            extra: String::new(),
            wiki_hosts: vec![WIKI.into()],
            upstream: String::new(),
            listeners: Vec::new(),
        }
    }
}

pub struct Gateway {
    pub dir: tempfile::TempDir,
    pub port: u16,
    /// The plain HTTP listener (`port`).
    pub listener: Listener,
    pub config_path: PathBuf,
    pub log_path: PathBuf,
    child: Option<Child>,
}

pub fn config_toml(port: u16, db: &Path, o: &Opts) -> String {
    let mut server = format!("listen = [\"127.0.0.1:{port}\"]\n");
    if let Some(t) = &o.trusted_proxies {
        server.push_str(&format!("trusted_proxies = {t}\n"));
    }
    if let Some(u) = &o.auth_url {
        server.push_str(&format!("auth_url = \"{u}\"\n"));
    } else if let Some(a) = &o.auth_host {
        // Users reach every host through the front door on the scheme's usual port; the
        // clients below connect wherever that is in the test (see `Client::new`).
        server.push_str(&format!("auth_url = \"http://{a}\"\n"));
    }
    // Plain keys first, then the server's sub-tables (certificates) last.
    server.push_str(&o.server_extra);
    let cookie_domain = o
        .cookie_domain
        .as_ref()
        .map(|d| format!("cookie_domain = \"{d}\"\n"))
        .unwrap_or_default();
    let hosts = o
        .wiki_hosts
        .iter()
        .map(|h| format!("\"{h}\""))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        r#"[server]
{server}
[storage]
path = {db}

[session]
cookie_name = "{SESSION_COOKIE}"
lifetime = "12h"
{cookie_domain}
[[apps]]
name = "wiki"
hosts = [{hosts}]
upstream = "{upstream}"
flow = "{FLOW}"
allowed_groups = []
bypass = ["^/public/"]

[[apps]]
name = "admin"
hosts = ["{ADMIN}"]
upstream = "{upstream}"
flow = "{FLOW}"
allowed_groups = ["admins"]
bypass = []

{extra}

[[flows]]
slug = "{FLOW}"
title = "Sign in"
designation = "authentication"
stages = ["identify", "password", "login"]

[stages.identify]
kind = "identification"
user_fields = ["username", "email"]

[stages.password]
kind = "password"

[stages.login]
kind = "user_login"
"#,
        db = harness::toml_str(&db.display().to_string()),
        upstream = o.upstream,
        extra = o.extra,
    )
}

impl Gateway {
    /// Writes the config, adds alice and bob, starts the gateway and waits for ping.
    pub async fn start(mut o: Opts) -> Gateway {
        if o.upstream.is_empty() {
            o.upstream = "127.0.0.1:9".into();
        }
        let dir = tempfile::Builder::new()
            .prefix("portcullis-fwd-")
            .tempdir()
            .expect("tempdir");
        Gateway::start_in(dir, o).await
    }

    /// [`Gateway::start`] with the default options, the apps proxied to `upstream`.
    pub async fn for_upstream(upstream: impl Into<String>) -> Gateway {
        Gateway::start(Opts {
            upstream: upstream.into(),
            ..Opts::default()
        })
        .await
    }

    pub async fn start_in(dir: tempfile::TempDir, o: Opts) -> Gateway {
        let db = dir.path().join("data").join("portcullis.db");
        fs::create_dir_all(db.parent().unwrap()).unwrap();
        let config_path = dir.path().join("portcullis.toml");
        let log_path = dir.path().join("gateway.log");
        let listener = Listener::bind();
        let port = listener.port();
        fs::write(&config_path, config_toml(port, &db, &o)).unwrap();
        for u in users() {
            let out = harness::add_user(&config_path, &u).await;
            assert!(out.ok(), "user add {}: {}", u.username, out.all());
        }
        let mut listeners = vec![listener.clone()];
        listeners.extend(o.listeners.iter().cloned());
        let child = Serve {
            args: vec!["--config".into(), config_path.clone().into()],
            listeners: &listeners,
            dir: dir.path(),
            env: &[],
            log: &log_path,
        }
        .start()
        .await;
        Gateway {
            dir,
            port,
            listener,
            config_path,
            log_path,
            child: Some(child),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        ([127, 0, 0, 1], self.port).into()
    }

    pub fn logs(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A browser-like client: keeps cookies, never follows redirects, resolves the test hosts to
/// `addr` (the front proxy, or the gateway itself).
#[derive(Clone)]
pub struct Client {
    pub http: reqwest::Client,
    pub jar: Arc<Jar>,
    pub port: u16,
}

impl Client {
    pub fn new(addr: SocketAddr) -> Client {
        let jar = Arc::new(Jar::default());
        let http = reqwest::Client::builder()
            .cookie_provider(jar.clone())
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .resolve(WIKI, addr)
            .resolve(ADMIN, addr)
            .resolve(AUTH, addr)
            .resolve("unknown.example.test", addr)
            .build()
            .unwrap();
        Client {
            http,
            jar,
            port: addr.port(),
        }
    }

    /// `http://host/path`: the URL a user types (port 80, as the configured origins say);
    /// the client connects to the front proxy's real port, as DNS and a listener on 80 would.
    pub fn url(&self, host: &str, path: &str) -> String {
        format!("http://{host}{path}")
    }

    pub async fn get(&self, url: &str, accept: &str, headers: &[(&str, &str)]) -> Resp {
        let mut rb = self.http.get(url).header("accept", accept);
        for (k, v) in headers {
            rb = rb.header(*k, *v);
        }
        Resp::read(rb.send().await.unwrap_or_else(|e| panic!("GET {url}: {e}"))).await
    }

    pub async fn page(&self, url: &str) -> Resp {
        self.get(url, ACCEPT_HTML, &[]).await
    }

    pub async fn post_json(&self, url: &str, body: &Value) -> Resp {
        let r = self
            .http
            .post(url)
            .header("accept", "application/json")
            .json(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {url}: {e}"));
        Resp::read(r).await
    }
}

/// Turns a flow page URL (`.../.portcullis/flow/<slug>?rd=...`) into its JSON API twin.
pub fn api_url(flow_url: &str) -> String {
    assert!(
        flow_url.contains("/.portcullis/flow/"),
        "not a flow URL: {flow_url}"
    );
    flow_url.replacen("/.portcullis/flow/", "/.portcullis/api/flow/", 1)
}

/// Signs in through the JSON API starting at the sign-in URL the app redirected to; returns
/// the final JSON step (`{"component":"redirect","to":...}`) and its response.
pub async fn api_sign_in(c: &Client, flow_url: &str, uid: &str, pw: &str) -> (Value, Resp) {
    let url = api_url(flow_url);
    let r = c.get(&url, "application/json", &[]).await;
    assert_eq!(r.status, 200, "GET {url}: {}", r.describe());
    assert_eq!(r.json()["component"], "identification", "{}", r.body);
    let post = url.split('?').next().unwrap().to_string();
    let r = c.post_json(&post, &json!({ "uid": uid })).await;
    assert_eq!(r.status, 200, "POST uid: {}", r.describe());
    assert_eq!(r.json()["component"], "password", "after uid: {}", r.body);
    let r = c.post_json(&post, &json!({ "password": pw })).await;
    assert_eq!(r.status, 200, "POST password: {}", r.describe());
    let v = r.json();
    assert_eq!(v["component"], "redirect", "after password: {v}");
    (v, r)
}

/// The sign-in URL a protected page redirects to, checked to be on the auth host with `rd`
/// naming the page.
pub fn assert_auth_redirect(r: &Resp, page_url: &str) -> String {
    assert_eq!(r.status, 302, "expected a redirect: {}", r.describe());
    let loc = r.location();
    let u = url::Url::parse(&loc).unwrap_or_else(|e| panic!("Location {loc:?} not absolute: {e}"));
    assert_eq!(
        u.host_str(),
        Some(AUTH),
        "sign-in not on the auth host: {loc}"
    );
    assert_eq!(u.path(), format!("/.portcullis/flow/{FLOW}"), "{loc}");
    let rd = u
        .query_pairs()
        .find(|(k, _)| k == "rd")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| panic!("no rd in {loc}"));
    assert_eq!(rd, page_url, "rd does not name the page: {loc}");
    loc
}

/// A tempdir named after what it holds.
pub fn tempdir(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new().prefix(prefix).tempdir().unwrap()
}

/// The shipped example of `kind` in front of `gw`: wiki and admin proxied to `upstream` (an
/// address), the auth host to the gateway.
pub async fn start_example(kind: Kind, upstream: &str, gw: &Gateway) -> Front {
    let site = Site::new(&[WIKI, ADMIN], AUTH, upstream, &gw.addr().to_string());
    Front::start(kind, &site).await
}

/// The front proxy's and the gateway's logs, for a failure message.
pub fn logs_of(front: &Front, gw: &Gateway) -> String {
    format!(
        "--- {:?} ---\n{}\n--- gateway ---\n{}",
        front.kind,
        front.logs(),
        gw.logs()
    )
}

/// What the static upstream serves: public files and protected ones, each with text found
/// nowhere else.
pub const PUBLIC_TEXT: &str = "PUBLIC-INFO-7d1f";
pub const SECRET_TEXT: &str = "SECRET-FILE-a91c";
pub const ADMIN_TEXT: &str = "ADMIN-PAGE-c44e";
pub const PRIVATE_TEXT: &str = "PRIVATE-NOTE-5b20";

/// A real nginx serving a directory (defaults: `merge_slashes on`, `%XX` decoded before dot
/// segments are resolved), the way a static app is served: `/public/info.txt` is meant to be
/// public, `/secret`, `/admin/index.html` and `/public/../private/note.txt` are not.
pub struct StaticSite {
    pub nginx: Front,
    pub root: tempfile::TempDir,
}

impl StaticSite {
    pub async fn start() -> StaticSite {
        let root_dir = tempdir("portcullis-static-");
        let root = root_dir.path();
        for (rel, text) in [
            ("public/info.txt", PUBLIC_TEXT),
            ("secret", SECRET_TEXT),
            ("admin/index.html", ADMIN_TEXT),
            ("private/note.txt", PRIVATE_TEXT),
        ] {
            let p = root.join(rel);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(&p, format!("{text}\n")).unwrap();
        }
        let r = root.display().to_string();
        let nginx = Front::nginx(
            |port| {
                format!(
                    "server {{\n    listen 127.0.0.1:{port} default_server;\n    root {r};\n    default_type text/plain;\n    location / {{ }}\n}}\n"
                )
            },
            "",
        )
        .await;
        StaticSite {
            nginx,
            root: root_dir,
        }
    }
}

/// Sends one HTTP/1.1 request exactly as written (no client-side URL normalisation: the
/// target goes on the wire byte for byte) and returns the response's status code and text.
pub async fn raw_get(
    port: u16,
    host: &str,
    target: &str,
    headers: &[(&str, &str)],
) -> (u16, String) {
    let (status, text) = raw_try(port, host, target, headers).await;
    let status = status.unwrap_or_else(|| panic!("not an HTTP answer: {text:?}"));
    (status, text)
}

/// [`raw_get`] for requests a server may refuse by closing the connection: the status is
/// `None` when no HTTP answer came.
pub async fn raw_try(
    port: u16,
    host: &str,
    target: &str,
    headers: &[(&str, &str)],
) -> (Option<u16>, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap_or_else(|e| panic!("connect {port}: {e}"));
    let mut req = format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    if let Err(e) = s.write_all(req.as_bytes()).await {
        return (None, format!("(write failed: {e})"));
    }
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut buf))
        .await
        .unwrap_or_else(|_| panic!("no complete answer to GET {target:?}"));
    if let (Err(e), true) = (read, buf.is_empty()) {
        return (None, format!("(read failed: {e})"));
    }
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .starts_with("HTTP/")
        .then(|| text.split(' ').nth(1).and_then(|s| s.parse().ok()))
        .flatten();
    (status, text)
}

//! One browser for every page test: headless Chromium driven over WebDriver (chromedriver),
//! with the test hosts mapped to loopback by `--host-resolver-rules`.

#![allow(dead_code)]

use super::harness::*;
use serde_json::{json, Value};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How to start the browser.
#[derive(Clone, Debug)]
pub struct Options {
    /// `(host, port)`: the host resolves to 127.0.0.1 and connections to it go to `port`, as
    /// DNS and a front proxy's listener would arrange in production.
    pub map: Vec<(String, u16)>,
    /// JavaScript on (the default) or off.
    pub javascript: bool,
    /// Window size in CSS pixels.
    pub window: (u32, u32),
    /// Accept the self-signed dev certificate (HTTPS tests).
    pub accept_dev_certificate: bool,
}

impl Options {
    pub fn mapping(map: &[(&str, u16)]) -> Options {
        Options {
            map: map.iter().map(|(h, p)| (h.to_string(), *p)).collect(),
            javascript: true,
            window: (1000, 800),
            accept_dev_certificate: false,
        }
    }

    fn args(&self, profile: &std::path::Path) -> Vec<String> {
        let rules = self
            .map
            .iter()
            .map(|(h, p)| format!("MAP {h} 127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(", ");
        let mut args: Vec<String> = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ]
        .into_iter()
        .map(String::from)
        .collect();
        args.push(format!("--window-size={},{}", self.window.0, self.window.1));
        args.push(format!("--user-data-dir={}", profile.display()));
        args.push(format!("--host-resolver-rules={rules}"));
        if self.accept_dev_certificate {
            args.push("--ignore-certificate-errors".into());
        }
        args
    }

    fn prefs(&self) -> Value {
        if self.javascript {
            json!({})
        } else {
            json!({ "profile.managed_default_content_settings.javascript": 2 })
        }
    }
}

pub const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A chromedriver process and one browser session in it.
pub struct Chrome {
    driver: Child,
    http: reqwest::Client,
    base: String,
    _profile: tempfile::TempDir,
}

impl Chrome {
    /// A browser whose test hosts ([`APP`], [`ADMIN_APP`]) resolve to the gateway.
    pub async fn start(gateway_port: u16) -> Chrome {
        Chrome::start_with(Options::mapping(&[
            (APP, gateway_port),
            (ADMIN_APP, gateway_port),
        ]))
        .await
    }

    /// A browser as `opts` describe it.
    pub async fn start_with(opts: Options) -> Chrome {
        let driver_bin = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .expect("chromedriver is not installed: run `bash .ci/setup`");
        let port = crate::harness::reserved_port();
        let driver = Command::new(driver_bin)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while http.get(format!("{base}/status")).send().await.is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not come up");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = tempfile::tempdir().unwrap();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": opts.args(profile.path()),
                "prefs": opts.prefs(),
            }
        }}});
        let r: Value = http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .await
            .expect("create browser session")
            .json()
            .await
            .unwrap();
        let id = r["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {r}"))
            .to_string();
        let chrome = Chrome {
            driver,
            http,
            base: format!("{base}/session/{id}"),
            _profile: profile,
        };
        // Look for elements for up to 5 s, as a person waits for a page to load.
        chrome
            .cmd(
                reqwest::Method::POST,
                "/timeouts",
                Some(json!({ "implicit": 5000 })),
            )
            .await;
        chrome
    }

    pub async fn cmd(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        self.try_cmd(method, path, body)
            .await
            .unwrap_or_else(|e| panic!("webdriver {path}: {e}"))
    }

    pub async fn try_cmd(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, String> {
        let mut rb = self.http.request(method, format!("{}{path}", self.base));
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let v: Value = rb.send().await.expect("webdriver").json().await.unwrap();
        match v["value"]["error"].as_str() {
            Some(err) => Err(format!("{err}: {}", v["value"]["message"])),
            None => Ok(v["value"].clone()),
        }
    }

    pub async fn go(&self, url: &str) {
        self.cmd(reqwest::Method::POST, "/url", Some(json!({ "url": url })))
            .await;
    }

    pub async fn find(&self, css: &str) -> String {
        let v = self
            .cmd(
                reqwest::Method::POST,
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        v[ELEMENT].as_str().unwrap().to_string()
    }

    pub async fn type_into(&self, css: &str, text: &str) {
        let e = self.find(css).await;
        self.cmd(
            reqwest::Method::POST,
            &format!("/element/{e}/value"),
            Some(json!({ "text": text })),
        )
        .await;
    }

    pub async fn click(&self, css: &str) {
        let e = self.find(css).await;
        self.cmd(
            reqwest::Method::POST,
            &format!("/element/{e}/click"),
            Some(json!({})),
        )
        .await;
    }

    /// Waits (up to 5 s) until the current URL satisfies `ok`, as a person waits for a page.
    pub async fn wait_url(&self, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let u = self.url().await;
            if ok(&u) || Instant::now() > deadline {
                return u;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn url(&self) -> String {
        self.cmd(reqwest::Method::GET, "/url", None)
            .await
            .as_str()
            .unwrap()
            .to_string()
    }

    /// The page's text once it satisfies `ok` (up to 10 s: a submitted form may still be
    /// loading its answer), or the last text seen.
    pub async fn wait_text(&self, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut last = String::new();
        loop {
            if let Ok(t) = self.try_text().await {
                if ok(&t) {
                    return t;
                }
                last = t;
            }
            if Instant::now() > deadline {
                return last;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The page's text; fails while a new page replaces the old one.
    pub async fn try_text(&self) -> Result<String, String> {
        let v = self
            .try_cmd(
                reqwest::Method::POST,
                "/element",
                Some(json!({"using": "css selector", "value": "body"})),
            )
            .await?;
        let body = v[ELEMENT].as_str().ok_or("no body element")?.to_string();
        let t = self
            .try_cmd(reqwest::Method::GET, &format!("/element/{body}/text"), None)
            .await?;
        Ok(t.as_str().unwrap_or_default().to_string())
    }

    /// The element that has keyboard focus, as its id.
    pub async fn focused_id(&self) -> String {
        let v = self
            .cmd(
                reqwest::Method::POST,
                "/execute/sync",
                Some(json!({"script": "return document.activeElement.id", "args": []})),
            )
            .await;
        v.as_str().unwrap_or_default().to_string()
    }

    pub async fn screenshot(&self, name: &str) {
        use base64::Engine;
        let v = self.cmd(reqwest::Method::GET, "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap())
            .unwrap();
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }
}

impl Drop for Chrome {
    fn drop(&mut self) {
        // End the WebDriver session first, so chromedriver closes the browser; killing only
        // the driver would leave Chromium running after the test.
        if let Some(rest) = self.base.strip_prefix("http://") {
            if let Some((addr, path)) = rest.split_once('/') {
                use std::io::{Read, Write};
                if let Ok(mut s) = std::net::TcpStream::connect(addr) {
                    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
                    let _ = write!(
                        s,
                        "DELETE /{path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
                    );
                    let mut sink = Vec::new();
                    let _ = s.read_to_end(&mut sink);
                }
            }
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

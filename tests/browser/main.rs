//! The sign-in pages in a real browser: headless Chromium driven over WebDriver (chromedriver),
//! against the real gateway binary and a real upstream. It proves what the HTTP-level tests
//! cannot: the forms work as a person uses them (labels, focus, submit buttons, redirects,
//! cookies) without any JavaScript of ours.

#[path = "../e2e/harness.rs"]
mod harness;

use harness::*;
use serde_json::{json, Value};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A chromedriver process and one browser session in it.
struct Chrome {
    driver: Child,
    http: reqwest::Client,
    base: String,
    _profile: tempfile::TempDir,
}

impl Chrome {
    async fn start(gateway_port: u16) -> Chrome {
        let driver_bin = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .expect("chromedriver is not installed: run `bash .ci/setup`");
        let port = free_port();
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
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--window-size=1000,800",
                    format!("--user-data-dir={}", profile.path().display()),
                    // The test hosts resolve to the gateway, as DNS would in production.
                    format!("--host-resolver-rules=MAP {APP} 127.0.0.1:{gateway_port}, MAP {ADMIN_APP} 127.0.0.1:{gateway_port}"),
                ]
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

    async fn cmd(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        self.try_cmd(method, path, body)
            .await
            .unwrap_or_else(|e| panic!("webdriver {path}: {e}"))
    }

    async fn try_cmd(
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

    async fn go(&self, url: &str) {
        self.cmd(reqwest::Method::POST, "/url", Some(json!({ "url": url })))
            .await;
    }

    async fn find(&self, css: &str) -> String {
        let v = self
            .cmd(
                reqwest::Method::POST,
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        v[ELEMENT].as_str().unwrap().to_string()
    }

    async fn type_into(&self, css: &str, text: &str) {
        let e = self.find(css).await;
        self.cmd(
            reqwest::Method::POST,
            &format!("/element/{e}/value"),
            Some(json!({ "text": text })),
        )
        .await;
    }

    async fn click(&self, css: &str) {
        let e = self.find(css).await;
        self.cmd(
            reqwest::Method::POST,
            &format!("/element/{e}/click"),
            Some(json!({})),
        )
        .await;
    }

    /// Waits (up to 5 s) until the current URL satisfies `ok`, as a person waits for a page.
    async fn wait_url(&self, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let u = self.url().await;
            if ok(&u) || Instant::now() > deadline {
                return u;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn url(&self) -> String {
        self.cmd(reqwest::Method::GET, "/url", None)
            .await
            .as_str()
            .unwrap()
            .to_string()
    }

    /// The page's text once it satisfies `ok` (up to 10 s: a submitted form may still be
    /// loading its answer), or the last text seen.
    async fn wait_text(&self, ok: impl Fn(&str) -> bool) -> String {
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
    async fn try_text(&self) -> Result<String, String> {
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
    async fn focused_id(&self) -> String {
        let v = self
            .cmd(
                reqwest::Method::POST,
                "/execute/sync",
                Some(json!({"script": "return document.activeElement.id", "args": []})),
            )
            .await;
        v.as_str().unwrap_or_default().to_string()
    }

    async fn screenshot(&self, name: &str) {
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

#[tokio::test(flavor = "multi_thread")]
async fn a_person_signs_in_with_the_forms_and_lands_on_the_page_they_asked_for() {
    let gw = Gateway::start().await;
    let chrome = Chrome::start(gw.port).await;

    chrome
        .go(&format!("http://{APP}/reports/q3?year=2026"))
        .await;
    let at = chrome.url().await;
    assert!(
        at.contains("/.portcullis/flow/"),
        "sent to the sign-in page, got {at}"
    );
    assert_eq!(
        chrome.focused_id().await,
        "f-uid",
        "the first field has focus"
    );
    chrome.screenshot("signin-identification").await;

    chrome.type_into("#f-uid", "alice").await;
    chrome.click("button[type=submit]").await;
    let page = chrome
        .wait_text(|t| t.contains("Signing in as alice"))
        .await;
    assert!(page.contains("Signing in as alice"), "{page}");
    assert_eq!(chrome.focused_id().await, "f-password");

    chrome.type_into("#f-password", WRONG_PW).await;
    chrome.click("button[type=submit]").await;
    let page = chrome.wait_text(|t| t.contains(INVALID_MSG)).await;
    assert!(
        page.contains(INVALID_MSG),
        "wrong password is shown: {page}"
    );
    chrome.screenshot("signin-wrong-password").await;

    chrome.type_into("#f-password", ALICE_PW).await;
    chrome.click("button[type=submit]").await;
    let at = chrome
        .wait_url(|u| u.ends_with("/reports/q3?year=2026"))
        .await;
    assert!(
        at.ends_with("/reports/q3?year=2026"),
        "landed on the page asked for: {at}"
    );
    let page = chrome.wait_text(|t| t.contains("remote-user")).await;
    let echo: Value = serde_json::from_str(&page).expect("the upstream's JSON");
    assert_eq!(echo["headers"]["remote-user"], "alice", "{echo}");
}

#[tokio::test(flavor = "multi_thread")]
async fn sign_out_confirm_page_ends_the_session_in_the_browser() {
    let gw = Gateway::start().await;
    let chrome = Chrome::start(gw.port).await;
    chrome.go(&format!("http://{APP}/")).await;
    chrome.type_into("#f-uid", "alice").await;
    chrome.click("button[type=submit]").await;
    chrome.type_into("#f-password", ALICE_PW).await;
    chrome.click("button[type=submit]").await;
    let at = chrome.wait_url(|u| !u.contains("/.portcullis/")).await;
    assert!(!at.contains("/.portcullis/"), "{at}");

    chrome.go(&format!("http://{APP}/.portcullis/logout")).await;
    let page = chrome.wait_text(|t| t.contains("signed in as alice")).await;
    assert!(page.contains("signed in as alice"), "{page}");
    chrome.click("button[type=submit]").await;
    let page = chrome
        .wait_text(|t| t.contains("You have signed out"))
        .await;
    assert!(page.contains("You have signed out"), "{page}");

    chrome.go(&format!("http://{APP}/reports")).await;
    assert!(
        chrome
            .wait_url(|u| u.contains("/.portcullis/flow/"))
            .await
            .contains("/.portcullis/flow/"),
        "signed out: back to sign-in"
    );
}

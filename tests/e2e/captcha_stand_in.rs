//! A stand-in for a captcha provider's verify endpoint (`siteverify`): a real HTTP/1.1 server
//! on a loopback port that reads the form the gateway posts (`secret`, `response`, `remoteip`)
//! and answers as Turnstile, hCaptcha and reCAPTCHA document, by the token's prefix:
//! `pass…` success for the gateway's host, `fail…` not solved, `low…` a score of 0.1,
//! `high…` 0.9, `host…` success for another host name, `act…` for another action. A token
//! seen before answers `timeout-or-duplicate`, as the providers do. It can be told to answer
//! 429 for a while.
#![allow(dead_code)]

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub const SECRET: &str = "stand-in-secret-3f9a";

#[derive(Default)]
struct State {
    /// Answer this many more requests with 429.
    limited: u32,
    used: Vec<String>,
    seen: Vec<BTreeMap<String, String>>,
}

pub struct CaptchaStandIn {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    host: String,
}

impl CaptchaStandIn {
    /// Answers for tokens solved on `host` (the gateway's host name).
    pub async fn start(host: &str) -> CaptchaStandIn {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State::default()));
        let (s, h) = (state.clone(), host.to_string());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (s, h) = (s.clone(), h.clone());
                tokio::spawn(async move {
                    let _ = connection(stream, s, &h).await;
                });
            }
        });
        CaptchaStandIn {
            addr,
            state,
            host: host.into(),
        }
    }

    /// The `api_url` that reaches it.
    pub fn url(&self) -> String {
        format!("http://{}/siteverify", self.addr)
    }

    /// The next `n` requests get 429.
    pub fn rate_limit(&self, n: u32) {
        self.state.lock().unwrap().limited = n;
    }

    /// The forms received so far.
    pub fn seen(&self) -> Vec<BTreeMap<String, String>> {
        self.state.lock().unwrap().seen.clone()
    }
}

fn verdict(st: &mut State, form: &BTreeMap<String, String>, host: &str) -> Value {
    if form.get("secret").map(String::as_str) != Some(SECRET) {
        return json!({ "success": false, "error-codes": ["invalid-input-secret"] });
    }
    let token = form.get("response").cloned().unwrap_or_default();
    if st.used.contains(&token) {
        return json!({ "success": false, "error-codes": ["timeout-or-duplicate"] });
    }
    st.used.push(token.clone());
    let ok = |extra: Value| {
        let mut v =
            json!({ "success": true, "hostname": host, "challenge_ts": "2026-01-01T00:00:00Z" });
        if let (Some(o), Value::Object(e)) = (v.as_object_mut(), extra) {
            o.extend(e);
        }
        v
    };
    match token.split('-').next().unwrap_or_default() {
        "pass" => ok(json!({})),
        "low" => ok(json!({ "score": 0.1 })),
        "high" => ok(json!({ "score": 0.9 })),
        "host" => ok(json!({ "hostname": "evil.example" })),
        "act" => ok(json!({ "action": "another_flow" })),
        _ => json!({ "success": false, "error-codes": ["invalid-input-response"] }),
    }
}

async fn connection(
    mut stream: TcpStream,
    state: Arc<Mutex<State>>,
    host: &str,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let (head_end, length) = loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..i]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            break (i + 4, length);
        }
    };
    while buf.len() < head_end + length {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = &buf[head_end..(head_end + length).min(buf.len())];
    let form: BTreeMap<String, String> = url::form_urlencoded::parse(body).into_owned().collect();
    let (status, answer) = {
        let mut st = state.lock().unwrap();
        st.seen.push(form.clone());
        if st.limited > 0 {
            st.limited -= 1;
            ("429 Too Many Requests", json!({ "error": "rate limited" }))
        } else {
            ("200 OK", verdict(&mut st, &form, host))
        }
    };
    let body = answer.to_string();
    let reply = format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(reply.as_bytes()).await?;
    stream.shutdown().await
}

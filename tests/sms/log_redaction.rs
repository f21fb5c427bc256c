//! What the operator's log shows of a failed send: a provider that echoes the request in its
//! error answer does not put the one-time code in the log, and a key in a generic provider's
//! URL query does not reach the log either — while provider and status are still named.

use crate::harness::*;
use crate::support::*;
use serde_json::json;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const API_KEY: &str = "key-in-the-query-5f2c9a";

/// A provider that answers every request with 400 and the request's own body, as some
/// gateways do in their error messages. Keeps the bodies it received.
struct EchoProvider {
    port: u16,
    bodies: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl EchoProvider {
    async fn start() -> EchoProvider {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let seen = bodies.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let seen = seen.clone();
                tokio::spawn(async move {
                    let _ = echo(stream, seen).await;
                });
            }
        });
        EchoProvider { port, bodies, task }
    }

    async fn wait_for_body(&self) -> String {
        for _ in 0..500 {
            if let Some(b) = self.bodies.lock().unwrap().first() {
                return b.clone();
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!("the provider received no request");
    }
}

impl Drop for EchoProvider {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One request (head, then `Content-Length` bytes), answered `400` with the same body.
async fn echo(mut stream: TcpStream, seen: Arc<Mutex<Vec<String>>>) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let (head_len, len) = loop {
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut hdrs = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut hdrs);
        if let Ok(httparse::Status::Complete(h)) = req.parse(&buf) {
            let len = req
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .and_then(|h| std::str::from_utf8(h.value).ok()?.trim().parse().ok())
                .unwrap_or(0usize);
            break (h, len);
        }
    };
    while buf.len() < head_len + len {
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = String::from_utf8_lossy(&buf[head_len..head_len + len]).into_owned();
    seen.lock().unwrap().push(body.clone());
    let answer = format!("{{\"error\":\"invalid request\",\"request\":{body}}}");
    let resp = format!(
        "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
        answer.len()
    );
    stream.write_all(resp.as_bytes()).await?;
    stream.shutdown().await
}

fn failure_line(gw: &Gateway) -> String {
    gw.logs()
        .lines()
        .find(|l| l.contains("could not be sent"))
        .unwrap_or_else(|| panic!("no log line about the failed send:\n{}", gw.logs()))
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_provider_echoing_the_code_in_its_400_answer_leaves_no_code_in_the_log() {
    let provider = EchoProvider::start().await;
    let url = format!("http://127.0.0.1:{}/send?api_key={API_KEY}", provider.port);
    let gw = Conf::new(generic_bearer(&url, "tok")).start().await;
    let b = gw.browser();
    let v = past_password(&b, ENROL, "bob", BOB_PW).await;
    assert_asks_phone(&v);
    let v = post(&b, ENROL, json!({ "phone": NUMBER })).await;
    assert_eq!(errors(&v), vec![SEND_FAILED], "{v}");

    let sent: serde_json::Value = serde_json::from_str(&provider.wait_for_body().await).unwrap();
    let code = sent["Body"]
        .as_str()
        .expect("the default payload's Body")
        .to_string();
    assert!(code.len() >= 4, "no code in {sent}");

    let line = failure_line(&gw);
    assert_log_free_of(&gw, &code);
    assert!(line.contains("generic"), "provider not named: {line}");
    assert!(line.contains("400"), "status not named: {line}");
    assert!(
        line.contains("invalid request") && line.contains("******"),
        "the provider's answer is not shown, redacted: {line}"
    );
    assert!(
        !gw.logs().contains(API_KEY),
        "the URL's key is in the log:\n{}",
        gw.logs()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_connection_does_not_log_the_key_in_the_provider_url() {
    // Nothing listens here: the request fails before any answer.
    let url = format!(
        "http://127.0.0.1:{}/send?api_key={API_KEY}",
        reserved_port()
    );
    let gw = Conf::new(generic_bearer(&url, "tok")).start().await;
    let b = gw.browser();
    let v = past_password(&b, ENROL, "bob", BOB_PW).await;
    assert_asks_phone(&v);
    let v = post(&b, ENROL, json!({ "phone": NUMBER })).await;
    assert_eq!(errors(&v), vec![SEND_FAILED], "{v}");

    let line = failure_line(&gw);
    assert!(line.contains("generic"), "provider not named: {line}");
    assert!(
        line.to_lowercase().contains("connect"),
        "the log does not say the connection failed: {line}"
    );
    assert!(
        !gw.logs().contains(API_KEY),
        "the URL's key is in the log:\n{}",
        gw.logs()
    );
}

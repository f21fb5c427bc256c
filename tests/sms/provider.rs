//! The stand-in for Twilio and for a generic SMS HTTP API: a real HTTP/1.1 server on a loopback
//! port (tokio + httparse), recording every request it receives and answering as told — a
//! status with a body, or only after a delay longer than the gateway's timeout.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One request as the provider received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    /// The request target (path and query).
    pub path: String,
    /// Header names lower-cased; repeated headers joined with ", ".
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as `application/x-www-form-urlencoded` fields, decoded, in order.
    pub fn form(&self) -> Vec<(String, String)> {
        url::form_urlencoded::parse(&self.body)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }

    /// One decoded form field (panics if it is missing or repeated).
    pub fn form_field(&self, name: &str) -> String {
        let values: Vec<String> = self
            .form()
            .into_iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v)
            .collect();
        assert_eq!(
            values.len(),
            1,
            "expected exactly one form field {name:?} in {:?}",
            self.body_text()
        );
        values[0].clone()
    }

    /// The body as JSON (panics if it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "the provider received a body that is not JSON ({e}): {}",
                self.body_text()
            )
        })
    }

    /// The one-time code this request carried: the last run of 4 or more digits in the Twilio
    /// `Body` field, or the generic payload's `Body`.
    pub fn code(&self) -> String {
        let text = if self
            .header("content-type")
            .is_some_and(|c| c.starts_with("application/json"))
        {
            let v = self.json();
            v["Body"]
                .as_str()
                .or_else(|| v["code"].as_str())
                .map(str::to_string)
                .unwrap_or_else(|| v.to_string())
        } else {
            self.form_field("Body")
        };
        let re = regex::Regex::new(r"\d{4,12}").unwrap();
        re.find_iter(&text)
            .last()
            .map(|m| m.as_str().to_string())
            .unwrap_or_else(|| panic!("no code in the SMS text {text:?}"))
    }
}

/// How the provider answers.
#[derive(Debug, Clone)]
pub enum Reply {
    /// This status and body, at once.
    Status(u16, String),
    /// This status and body, after the delay (longer than the gateway's timeout).
    Delayed(Duration, u16, String),
}

impl Reply {
    /// What Twilio answers to a message it accepted.
    pub fn created() -> Reply {
        Reply::Status(
            201,
            r#"{"sid":"SM0123456789abcdef","status":"queued"}"#.into(),
        )
    }
}

pub struct SmsServer {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Recorded>>>,
    reply: Arc<Mutex<Reply>>,
    task: tokio::task::JoinHandle<()>,
}

impl SmsServer {
    /// On an ephemeral loopback port, answering `201` until told otherwise.
    pub async fn start() -> SmsServer {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the SMS provider");
        SmsServer::serve(listener)
    }

    /// On a given port (one the gateway could not reach before: "the provider came back").
    pub async fn start_on(port: u16) -> SmsServer {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap_or_else(|e| panic!("bind the SMS provider on port {port}: {e}"));
        SmsServer::serve(listener)
    }

    fn serve(listener: TcpListener) -> SmsServer {
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let reply = Arc::new(Mutex::new(Reply::created()));
        let (s, r) = (seen.clone(), reply.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (s, r) = (s.clone(), r.clone());
                tokio::spawn(async move {
                    let _ = connection(stream, s, r).await;
                });
            }
        });
        SmsServer {
            addr,
            seen,
            reply,
            task,
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `http://127.0.0.1:<port>`
    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// How to answer from now on.
    pub fn set_reply(&self, r: Reply) {
        *self.reply.lock().unwrap() = r;
    }

    /// Every request received so far, in order.
    pub fn seen(&self) -> Vec<Recorded> {
        self.seen.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    /// The most recent request (panics if there is none).
    pub fn last(&self) -> Recorded {
        self.seen()
            .last()
            .cloned()
            .expect("the SMS provider received no request")
    }

    /// Waits (up to 10 s) until at least `n` requests have arrived.
    pub async fn wait_for(&self, n: usize) -> Vec<Recorded> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let seen = self.seen();
            if seen.len() >= n {
                return seen;
            }
            assert!(
                Instant::now() < deadline,
                "the SMS provider received {} request(s), expected {n}",
                seen.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for SmsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn connection(
    mut stream: TcpStream,
    seen: Arc<Mutex<Vec<Recorded>>>,
    reply: Arc<Mutex<Reply>>,
) -> std::io::Result<()> {
    let _ = stream.set_nodelay(true);
    let mut buf: Vec<u8> = Vec::new();
    loop {
        // The head: read until httparse has all of it.
        let (head_len, method, path, headers) = loop {
            let mut hdrs = [httparse::EMPTY_HEADER; 64];
            let mut req = httparse::Request::new(&mut hdrs);
            match req.parse(&buf) {
                Ok(httparse::Status::Complete(n)) => {
                    let headers = collect_headers(req.headers);
                    break (
                        n,
                        req.method.unwrap_or_default().to_string(),
                        req.path.unwrap_or_default().to_string(),
                        headers,
                    );
                }
                Ok(httparse::Status::Partial) => {}
                Err(e) => {
                    let _ = stream
                        .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                        .await;
                    return Err(std::io::Error::other(e.to_string()));
                }
            }
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        buf.drain(..head_len);
        let len: usize = headers
            .get("content-length")
            .and_then(|l| l.trim().parse().ok())
            .unwrap_or(0);
        if headers
            .get("transfer-encoding")
            .is_some_and(|t| t.to_ascii_lowercase().contains("chunked"))
        {
            let _ = stream
                .write_all(b"HTTP/1.1 411 Length Required\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                .await;
            return Ok(());
        }
        while buf.len() < len {
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let body: Vec<u8> = buf.drain(..len).collect();
        let close = headers
            .get("connection")
            .is_some_and(|c| c.eq_ignore_ascii_case("close"));
        seen.lock().unwrap().push(Recorded {
            method,
            path,
            headers,
            body,
        });

        let answer = reply.lock().unwrap().clone();
        let (status, text) = match answer {
            Reply::Status(s, b) => (s, b),
            Reply::Delayed(d, s, b) => {
                tokio::time::sleep(d).await;
                (s, b)
            }
        };
        let resp = format!(
            "HTTP/1.1 {status} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: {}\r\n\r\n{text}",
            reason(status),
            text.len(),
            if close { "close" } else { "keep-alive" }
        );
        stream.write_all(resp.as_bytes()).await?;
        stream.flush().await?;
        if close {
            return Ok(());
        }
    }
}

fn collect_headers(raw: &[httparse::Header<'_>]) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for h in raw {
        let k = h.name.to_ascii_lowercase();
        let v = String::from_utf8_lossy(h.value).trim().to_string();
        out.entry(k)
            .and_modify(|e| {
                e.push_str(", ");
                e.push_str(&v);
            })
            .or_insert(v);
    }
    out
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        400 => "Bad Request",
        401 => "Unauthorized",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

impl Recorded {
    /// The recipient: Twilio's form field `To`, or the default generic payload's `To`.
    pub fn recipient(&self) -> String {
        if self
            .header("content-type")
            .is_some_and(|c| c.starts_with("application/json"))
        {
            self.json()["To"].as_str().unwrap_or_default().to_string()
        } else {
            self.form_field("To")
        }
    }
}

//! A stand-in for Duo's Auth API v2: a real HTTP/1.1 server on a loopback port (tokio +
//! httparse) that checks every request's signature the way Duo documents it, recomputed here
//! from what arrived (the `X-Duo-Date` header, the method, the `Host` header, the path and the
//! decoded parameters), and refuses a request it cannot verify with Duo's 401 JSON. It answers
//! `preauth`, `enroll`, `enroll_status`, `auth` (push with `async=1`, passcode), `auth_status`
//! and `check` with Duo's documented shapes, and can be told to rate-limit (429).
//!
//! The canonicalisation here is written apart from the gateway's (byte by byte, not with the
//! `percent-encoding` crate), so a mistake in one is not repeated in the other.
#![allow(dead_code)]

use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha512;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub const IKEY: &str = "DIWJ8X6AEYOR5OMC6TQ1";
pub const SKEY: &str = "Zh5eGmUq9zpfQnyUIu5OL9iWoMMv5ZNmk3zLJ4Ep";
/// The passcode the stand-in accepts.
pub const PASSCODE: &str = "314159";

/// What a push's user does in Duo Mobile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Push {
    /// Approves at once.
    Allow,
    /// Denies.
    Deny,
    /// Never answers: `waiting` at the first status check, `timeout` after.
    Timeout,
    /// Answers only at the second status check (approves then).
    Slow,
}

/// One request as received, and whether its signature checked out.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub params: BTreeMap<String, String>,
    pub headers: BTreeMap<String, String>,
    pub verified: bool,
}

#[derive(Debug, Clone)]
struct DuoUser {
    user_id: String,
    username: String,
    activation_code: String,
    activated: bool,
}

#[derive(Default)]
struct State {
    users: Vec<DuoUser>,
    /// txid -> (user_id, status checks so far)
    txs: BTreeMap<String, (String, u32)>,
    push: Option<Push>,
    /// Answer this many more requests with 429.
    limited: u32,
    seen: Vec<Seen>,
    next: u32,
}

pub struct DuoStandIn {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl DuoStandIn {
    pub async fn start() -> DuoStandIn {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State {
            push: Some(Push::Allow),
            ..State::default()
        }));
        let s = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let s = s.clone();
                tokio::spawn(async move {
                    let _ = connection(stream, s).await;
                });
            }
        });
        DuoStandIn { addr, state, task }
    }

    /// `127.0.0.1:PORT`: the `api_hostname` that reaches it.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// How pushes are answered from now on.
    pub fn set_push(&self, p: Push) {
        self.state.lock().unwrap().push = Some(p);
    }

    /// The next `n` requests get 429.
    pub fn rate_limit(&self, n: u32) {
        self.state.lock().unwrap().limited = n;
    }

    /// A user Duo already has, with an activated phone (an account to link).
    pub fn add_known_user(&self, username: &str) {
        let mut st = self.state.lock().unwrap();
        st.next += 1;
        let n = st.next;
        st.users.push(DuoUser {
            user_id: format!("DUKNOWN{n}"),
            username: username.into(),
            activation_code: String::new(),
            activated: true,
        });
    }

    /// The user activates Duo Mobile with the code shown to them.
    pub fn activate(&self, username: &str) {
        let mut st = self.state.lock().unwrap();
        let u = st
            .users
            .iter_mut()
            .find(|u| u.username == username)
            .unwrap_or_else(|| panic!("Duo has no user {username}"));
        u.activated = true;
    }

    /// The activation code issued to `username` stops working (it expired).
    pub fn expire_activation(&self, username: &str) {
        let mut st = self.state.lock().unwrap();
        if let Some(u) = st.users.iter_mut().rev().find(|u| u.username == username) {
            u.activation_code = "duo://expired".into();
        }
    }

    /// The activation code issued to `username`.
    pub fn activation_code(&self, username: &str) -> String {
        let st = self.state.lock().unwrap();
        st.users
            .iter()
            .rev()
            .find(|u| u.username == username)
            .map(|u| u.activation_code.clone())
            .unwrap_or_else(|| panic!("Duo has no user {username}"))
    }

    /// The name of the user enrolled last (Duo picks one when the gateway sends none).
    pub fn last_enrolled(&self) -> String {
        let st = self.state.lock().unwrap();
        st.users
            .last()
            .map(|u| u.username.clone())
            .unwrap_or_default()
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }

    /// The requests to `path`.
    pub fn calls(&self, path: &str) -> Vec<Seen> {
        self.seen().into_iter().filter(|s| s.path == path).collect()
    }
}

impl Drop for DuoStandIn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// RFC 3986 percent-encoding: unreserved characters as they are, every other byte `%XX`.
fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Duo's canonical request for signature v2.
pub fn canonical(
    date: &str,
    method: &str,
    host: &str,
    path: &str,
    params: &BTreeMap<String, String>,
) -> String {
    let mut pairs: Vec<(String, String)> =
        params.iter().map(|(k, v)| (encode(k), encode(v))).collect();
    pairs.sort();
    let joined: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!(
        "{date}\n{}\n{}\n{path}\n{}",
        method.to_uppercase(),
        host.to_lowercase(),
        joined.join("&")
    )
}

pub fn sign(skey: &str, canon: &str) -> String {
    let mut mac = Hmac::<Sha512>::new_from_slice(skey.as_bytes()).unwrap();
    mac.update(canon.as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Whether the request carries `Authorization: Basic base64(IKEY:sig)` with the signature of
/// its canonical form under `SKEY`.
fn verify(
    method: &str,
    path: &str,
    headers: &BTreeMap<String, String>,
    params: &BTreeMap<String, String>,
) -> bool {
    let Some(date) = headers.get("x-duo-date").or_else(|| headers.get("date")) else {
        return false;
    };
    let Some(host) = headers.get("host") else {
        return false;
    };
    let Some(auth) = headers
        .get("authorization")
        .and_then(|a| a.strip_prefix("Basic "))
    else {
        return false;
    };
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(auth.trim()) else {
        return false;
    };
    let decoded = String::from_utf8_lossy(&decoded).into_owned();
    let Some((ikey, sig)) = decoded.split_once(':') else {
        return false;
    };
    let want = sign(SKEY, &canonical(date, method, host, path, params));
    ikey == IKEY && sig == want
}

fn ok(response: Value) -> (u16, Value) {
    (200, json!({"stat": "OK", "response": response}))
}

fn fail(status: u16, code: u32, message: &str) -> (u16, Value) {
    (
        status,
        json!({"stat": "FAIL", "code": code, "message": message}),
    )
}

fn answer(st: &mut State, method: &str, path: &str, p: &BTreeMap<String, String>) -> (u16, Value) {
    let user_of = |st: &State| -> Option<usize> {
        if let Some(id) = p.get("user_id") {
            return st.users.iter().position(|u| &u.user_id == id);
        }
        p.get("username")
            .and_then(|n| st.users.iter().rposition(|u| &u.username == n))
    };
    match (method, path) {
        ("GET", "/auth/v2/check") => ok(json!({"time": 1_700_000_000})),
        ("POST", "/auth/v2/preauth") => match user_of(st).map(|i| st.users[i].activated) {
            Some(true) => ok(json!({
                "result": "auth",
                "status_msg": "Account is active",
                "devices": [{"device": "DPFZRS9FB0D46QFTM891", "type": "phone",
                    "capabilities": ["auto", "push", "sms", "phone", "mobile_otp"],
                    "display_name": "iOS (XXX-XXX-0100)", "name": "", "number": "XXX-XXX-0100"}],
            })),
            _ => ok(json!({
                "result": "enroll",
                "status_msg": "Enroll an authentication device to proceed",
                "enroll_portal_url": "https://api-example.duosecurity.com/portal?code=48bac5d9393fb2c2",
            })),
        },
        ("POST", "/auth/v2/enroll") => {
            // As Duo: a name already taken is refused; without one, Duo picks a name.
            st.next += 1;
            let n = st.next;
            let username = match p.get("username") {
                Some(name) if st.users.iter().any(|u| &u.username == name) => {
                    return fail(
                        400,
                        40002,
                        "Invalid request parameters: username already exists",
                    );
                }
                Some(name) => name.clone(),
                None => format!("duo-picked-{n}"),
            };
            let user = DuoUser {
                user_id: format!("DUJZ2U4L80HT45MQ4EO{n}"),
                username,
                activation_code: format!(
                    "duo://7vHgeuZTxP{n}cFaDCQWfd-YXBpLWZpcnN0LmR1b3NlY3VyaXR5LmNvbQ"
                ),
                activated: false,
            };
            let r = json!({
                "activation_barcode": "https://api-example.duosecurity.com/frame/qr?value=8LIRa5danrICkhHtkLxi-cKLu2DWzDYCmBwBHY2YzW5ZYnYaRxA",
                "activation_code": user.activation_code,
                "activation_url": format!("https://m-example.duosecurity.com/activate/{n}"),
                "expiration": 1_700_000_900,
                "user_id": user.user_id,
                "username": user.username,
            });
            st.users.push(user);
            ok(r)
        }
        ("POST", "/auth/v2/enroll_status") => {
            let found = p
                .get("user_id")
                .and_then(|id| st.users.iter().find(|u| &u.user_id == id));
            match found {
                Some(u) if Some(&u.activation_code) != p.get("activation_code") => {
                    ok(json!("invalid"))
                }
                Some(u) if u.activated => ok(json!("success")),
                Some(_) => ok(json!("waiting")),
                None => ok(json!("invalid")),
            }
        }
        ("POST", "/auth/v2/auth") => {
            let Some(i) = user_of(st).filter(|i| st.users[*i].activated) else {
                return fail(400, 40002, "Invalid request parameters");
            };
            let user_id = st.users[i].user_id.clone();
            match p.get("factor").map(String::as_str) {
                Some("push") if p.get("async").map(String::as_str) == Some("1") => {
                    st.next += 1;
                    let txid = format!("45f7c92b-f45f-4862-8545-e0f58e78075{}", st.next);
                    st.txs.insert(txid.clone(), (user_id, 0));
                    ok(json!({"txid": txid}))
                }
                Some("passcode") if p.get("passcode").map(String::as_str) == Some(PASSCODE) => {
                    ok(json!({
                        "result": "allow", "status": "allow", "status_msg": "Success. Logging you in...",
                    }))
                }
                Some("passcode") => ok(json!({
                    "result": "deny", "status": "deny", "status_msg": "Incorrect passcode. Please try again.",
                })),
                _ => fail(400, 40002, "Invalid request parameters"),
            }
        }
        ("GET", "/auth/v2/auth_status") => {
            let push = st.push.unwrap_or(Push::Allow);
            let Some(tx) = p.get("txid").and_then(|t| st.txs.get_mut(t)) else {
                return fail(400, 40002, "Invalid request parameters");
            };
            tx.1 += 1;
            let waiting = json!({"result": "waiting", "status": "pushed", "status_msg": "Pushed a login request to your device..."});
            let allow = json!({"result": "allow", "status": "allow", "status_msg": "Success. Logging you in..."});
            match (push, tx.1) {
                (Push::Allow, _) | (Push::Slow, 2..) => ok(allow),
                (Push::Deny, _) => ok(
                    json!({"result": "deny", "status": "deny", "status_msg": "Login request denied."}),
                ),
                (Push::Timeout, 1) | (Push::Slow, _) => ok(waiting),
                (Push::Timeout, _) => ok(
                    json!({"result": "deny", "status": "timeout", "status_msg": "Login timed out."}),
                ),
            }
        }
        _ => fail(404, 40401, "Resource not found"),
    }
}

async fn connection(mut stream: TcpStream, state: Arc<Mutex<State>>) -> std::io::Result<()> {
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let (head_len, method, target, headers) = loop {
            let mut hdrs = [httparse::EMPTY_HEADER; 64];
            let mut req = httparse::Request::new(&mut hdrs);
            if let Ok(httparse::Status::Complete(n)) = req.parse(&buf) {
                let mut headers = BTreeMap::new();
                for h in req.headers.iter() {
                    headers.insert(
                        h.name.to_ascii_lowercase(),
                        String::from_utf8_lossy(h.value).trim().to_string(),
                    );
                }
                break (
                    n,
                    req.method.unwrap_or_default().to_string(),
                    req.path.unwrap_or_default().to_string(),
                    headers,
                );
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
            .and_then(|l| l.parse().ok())
            .unwrap_or(0);
        while buf.len() < len {
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let body: Vec<u8> = buf.drain(..len).collect();
        let (path, query) = target.split_once('?').unwrap_or((target.as_str(), ""));
        let raw = if method == "GET" {
            query.as_bytes()
        } else {
            &body[..]
        };
        let params: BTreeMap<String, String> = url::form_urlencoded::parse(raw)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let verified = verify(&method, path, &headers, &params);
        let (status, value) = {
            let mut st = state.lock().unwrap();
            st.seen.push(Seen {
                method: method.clone(),
                path: path.to_string(),
                params: params.clone(),
                headers: headers.clone(),
                verified,
            });
            if st.limited > 0 {
                st.limited -= 1;
                fail(429, 42901, "Too Many Requests")
            } else if !verified {
                fail(401, 40103, "Invalid signature in request credentials")
            } else {
                answer(&mut st, &method, path, &params)
            }
        };
        let text = value.to_string();
        let resp = format!(
            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{text}",
            text.len()
        );
        stream.write_all(resp.as_bytes()).await?;
        stream.flush().await?;
    }
}

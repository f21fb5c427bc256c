//! Shared harness for the end-to-end tests: a real upstream HTTP/1.1 server, the real
//! `portcullis` binary as a subprocess on ephemeral loopback ports, cookie-keeping clients that
//! never follow redirects, and helpers to drive the sign-in flows and forge tokens.
#![allow(dead_code)]

use base64::Engine as _;
use reqwest::cookie::{CookieStore, Jar};
use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

pub const BIN: &str = env!("CARGO_BIN_EXE_portcullis");

pub const APP: &str = "app.test";
pub const ADMIN_APP: &str = "admin.test";
pub const DOWN_APP: &str = "down.test";
pub const UNKNOWN: &str = "unknown.test";
/// Free for tests that add their own app in `Setup::extra_toml`.
pub const EXTRA_APP: &str = "extra.test";
pub const EVIL: &str = "evil.example";

pub const FLOW: &str = "default-authentication";
pub const SESSION_COOKIE: &str = "portcullis_session";
pub const FLOW_COOKIE: &str = "portcullis_flow";

pub const ALICE_PW: &str = "Alice-correct-horse-7731";
pub const BOB_PW: &str = "Bob-battery-staple-2468";
pub const WRONG_PW: &str = "not-the-password-0000";
pub const INVALID_MSG: &str = "Invalid username or password";

/// How many wrong passwords the default test config allows before cancelling.
pub const MAX_FAILURES: u32 = 3;

// ---------------------------------------------------------------------------------------------
// Ports
// ---------------------------------------------------------------------------------------------

/// A listening socket on 127.0.0.1, bound to port 0 by the test process and open for as long as
/// a clone of it lives. The servers the tests start inherit it ([`command_with_listeners`])
/// instead of binding a port of their own, so no other test can take the port in between, a
/// server started again (after a stop or a `kill -9`) gets the same port, and whatever answers
/// there is a server this test started. A connection made before the server runs waits in the
/// socket's backlog until the server accepts it.
#[derive(Clone, Debug)]
pub struct Listener(Arc<StdListener>);

impl Listener {
    pub fn bind() -> Listener {
        Listener(Arc::new(
            StdListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0"),
        ))
    }

    pub fn addr(&self) -> SocketAddr {
        self.0.local_addr().expect("local_addr")
    }

    pub fn port(&self) -> u16 {
        self.addr().port()
    }
}

/// How a server learns which of its inherited descriptors are listeners.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handover {
    /// systemd's socket activation (`LISTEN_PID`, `LISTEN_FDS`): `portcullis serve`.
    Systemd,
    /// nginx's own (`NGINX="3;4;"`, the variable its binary upgrade passes).
    Nginx,
    /// Not announced: the caller sets whatever variables it tests.
    Unannounced,
}

/// Most listeners one server is handed (a fixed bound: `pre_exec` must not allocate).
const MAX_HANDED: usize = 8;

/// A command running `program` with `listeners` as its descriptors 3, 4, ... in that order,
/// announced the `how` way. Add arguments, environment and stdio as to any [`Command`]; the
/// process id of the child is the server's.
pub fn command_with_listeners(
    program: impl AsRef<std::ffi::OsStr>,
    listeners: &[Listener],
    how: Handover,
) -> Command {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let n = listeners.len();
    assert!(n <= MAX_HANDED, "at most {MAX_HANDED} listeners");
    let mut cmd = match how {
        Handover::Systemd => {
            // LISTEN_PID must be the server's own pid: the shell's, which `exec` keeps.
            let mut c = Command::new("/bin/sh");
            c.arg("-c")
                .arg("LISTEN_PID=$$ exec \"$0\" \"$@\"")
                .arg(program.as_ref())
                .env("LISTEN_FDS", n.to_string());
            c
        }
        Handover::Nginx => {
            let mut c = Command::new(program);
            let fds: String = (0..n).map(|i| format!("{};", 3 + i)).collect();
            c.env("NGINX", fds);
            c
        }
        Handover::Unannounced => Command::new(program),
    };
    let mut raw = [-1; MAX_HANDED];
    for (slot, l) in raw.iter_mut().zip(listeners) {
        *slot = l.0.as_raw_fd();
    }
    let first_free = 3 + n as libc::c_int;
    // SAFETY: between fork and exec the closure calls only async-signal-safe functions (fcntl,
    // dup2, close) on descriptors it owns in the child, and allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            // First out of the way (above 3..3+n), so a source sitting on a target number is not
            // overwritten before it is moved; dup2 then clears close-on-exec on 3, 4, ...
            let mut high = [-1; MAX_HANDED];
            for i in 0..n {
                high[i] = libc::fcntl(raw[i], libc::F_DUPFD, first_free);
                if high[i] < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            for (i, fd) in high.iter().take(n).enumerate() {
                if libc::dup2(*fd, 3 + i as libc::c_int) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                libc::close(*fd);
            }
            Ok(())
        });
    }
    cmd
}

/// Waits until `child` answers `GET /.portcullis/ping` on `listener` with `200 pong`. Only
/// `child` can answer: the listener is this test's, held since before `child` started. Fails
/// when `child` exits first, or after 30 s.
pub async fn wait_for_ping(child: &mut Child, listener: &Listener) -> Result<(), String> {
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    // One request: it waits in the backlog until the server accepts it.
    let ping = http
        .get(format!(
            "http://127.0.0.1:{}/.portcullis/ping",
            listener.port()
        ))
        .timeout(Duration::from_secs(30))
        .send();
    tokio::pin!(ping);
    loop {
        tokio::select! {
            r = &mut ping => {
                let r = r.map_err(|e| format!("no answer to /.portcullis/ping: {e}"))?;
                let status = r.status().as_u16();
                let body = r.text().await.unwrap_or_default();
                return if status == 200 && body.trim() == "pong" {
                    Ok(())
                } else {
                    Err(format!("/.portcullis/ping answered {status}: {body:?}"))
                };
            }
            _ = tokio::time::sleep(Duration::from_millis(50)) => {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(format!("the server exited with {status} before answering"));
                }
            }
        }
    }
}

/// How to run `portcullis serve` for a test.
#[derive(Debug)]
pub struct Serve<'a> {
    /// Global arguments before `serve` (e.g. `--config PATH`).
    pub args: Vec<std::ffi::OsString>,
    /// The first one is plain HTTP: readiness is checked there.
    pub listeners: &'a [Listener],
    pub dir: &'a Path,
    pub env: &'a [(String, String)],
    /// stderr is appended here.
    pub log: &'a Path,
}

impl Serve<'_> {
    /// Starts `portcullis serve` on the listeners and waits until it answers ping; panics with
    /// the new log lines when it does not.
    pub async fn start(&self) -> Child {
        let before = fs::metadata(self.log).map(|m| m.len()).unwrap_or(0);
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log)
            .unwrap();
        let mut cmd = command_with_listeners(BIN, self.listeners, Handover::Systemd);
        cmd.args(&self.args)
            .arg("serve")
            .env_remove("PORTCULLIS_CONFIG")
            .env_remove("PORTCULLIS_LOG")
            .env_remove("RUST_LOG")
            .current_dir(self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        for (k, v) in self.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn portcullis serve");
        if let Err(reason) = wait_for_ping(&mut child, &self.listeners[0]).await {
            let _ = child.kill();
            let _ = child.wait();
            let logs = fs::read_to_string(self.log).unwrap_or_default();
            panic!(
                "gateway did not become ready: {reason}\n--- args ---\n{:?}\n--- stderr ---\n{}",
                self.args,
                logs.get(before as usize..).unwrap_or(&logs)
            );
        }
        child
    }
}

/// Polls `done` every 20 ms until it holds or `within` has passed; whether it held. For what
/// the gateway does after it answered (a log line written, a message stored); the caller
/// asserts on what it finds either way.
pub async fn poll_until(within: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A loopback port nobody else is given for the rest of this test run, for a server that binds
/// it itself (Caddy 2.6 and chromedriver cannot take a handed-over socket), for a config that is
/// only checked, or for a server that comes up later: a socket bound there with `SO_REUSEADDR`,
/// never listening, kept open. Connections to it are refused until a server (which sets
/// `SO_REUSEADDR` too, as Pingora, Go, Python's asyncio and Chromium do) listens there.
pub fn reserved_port() -> u16 {
    static HELD: Mutex<Vec<socket2::Socket>> = Mutex::new(Vec::new());
    let s =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    s.set_reuse_address(true).expect("SO_REUSEADDR");
    s.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .expect("bind 127.0.0.1:0");
    let port = s
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .expect("local_addr")
        .port();
    HELD.lock().unwrap().push(s);
    port
}

/// `portcullis check-config --config PATH`.
pub fn check_config(path: &Path) -> CliOut {
    run_cli_blocking(
        &[
            "check-config".into(),
            "--config".into(),
            path.display().to_string(),
        ],
        None,
        &[],
    )
}

/// Runs `serve` on a bad config: it must exit (code 2) within 10 s without answering.
pub fn serve_must_refuse(path: &Path) -> CliOut {
    let mut child = Command::new(BIN)
        .arg("serve")
        .arg("--config")
        .arg(path)
        .env_remove("PORTCULLIS_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "`serve` kept running on a bad config ({}):\nstderr: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    let out = child.wait_with_output().unwrap();
    CliOut {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A loopback port where nothing listens, reserved for as long as this value lives: the socket
/// is bound but never listens, so connections are refused, and no other test's server can be
/// handed the same port by the kernel and receive traffic meant for a dead server.
pub struct DeadPort(#[allow(dead_code)] tokio::net::TcpSocket, u16);

impl DeadPort {
    pub fn new() -> DeadPort {
        let s = tokio::net::TcpSocket::new_v4().expect("socket");
        s.bind(([127, 0, 0, 1], 0).into())
            .expect("bind 127.0.0.1:0");
        let port = s.local_addr().expect("local_addr").port();
        DeadPort(s, port)
    }

    pub fn port(&self) -> u16 {
        self.1
    }
}

// ---------------------------------------------------------------------------------------------
// The upstream: a real HTTP/1.1 server that echoes what it received as JSON
// ---------------------------------------------------------------------------------------------

/// What the upstream saw, as it reports it in its JSON answer.
#[derive(Debug, Clone)]
pub struct Echo {
    pub method: String,
    pub path: String,
    pub headers: BTreeMap<String, String>,
    pub body: String,
    pub raw: Value,
}

impl Echo {
    pub fn from_json(v: &Value) -> Echo {
        let headers = v["headers"]
            .as_object()
            .unwrap_or_else(|| panic!("upstream echo without headers: {v}"))
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
            .collect();
        Echo {
            method: v["method"].as_str().unwrap_or_default().to_string(),
            path: v["path"].as_str().unwrap_or_default().to_string(),
            headers,
            body: v["body"].as_str().unwrap_or_default().to_string(),
            raw: v.clone(),
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }

    /// The `Cookie` header split into (name, value) pairs.
    pub fn cookies(&self) -> Vec<(String, String)> {
        self.header("cookie")
            .map(|c| {
                c.split(';')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(|p| match p.split_once('=') {
                        Some((k, v)) => (k.to_string(), v.to_string()),
                        None => (p.to_string(), String::new()),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every header whose name starts with `remote-`.
    pub fn remote_headers(&self) -> BTreeMap<String, String> {
        self.headers
            .iter()
            .filter(|(k, _)| k.starts_with("remote-"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

pub struct Upstream {
    pub addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<Echo>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Upstream {
    pub async fn start() -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind upstream");
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (h, s) = (hits.clone(), seen.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (h, s) = (h.clone(), s.clone());
                tokio::spawn(async move {
                    let _ = serve_connection(stream, h, s).await;
                });
            }
        });
        Upstream {
            addr,
            hits,
            seen,
            task,
        }
    }

    /// Number of requests the upstream has answered.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// Every request the upstream received, in order.
    pub fn seen(&self) -> Vec<Echo> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn read_line(
    r: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
) -> std::io::Result<Option<String>> {
    let mut buf = Vec::new();
    let n = r.read_until(b'\n', &mut buf).await?;
    if n == 0 {
        return Ok(None);
    }
    while buf.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        buf.pop();
    }
    Ok(Some(String::from_utf8_lossy(&buf).into_owned()))
}

async fn serve_connection(
    stream: TcpStream,
    hits: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<Echo>>>,
) -> std::io::Result<()> {
    let _ = stream.set_nodelay(true);
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    loop {
        // Request line (skip stray empty lines between requests).
        let line = loop {
            match read_line(&mut r).await? {
                None => return Ok(()),
                Some(l) if l.is_empty() => continue,
                Some(l) => break l,
            }
        };
        let mut parts = line.splitn(3, ' ');
        let method = parts.next().unwrap_or_default().to_string();
        let target = parts.next().unwrap_or_default().to_string();
        let version = parts.next().unwrap_or("HTTP/1.1").to_string();

        let mut headers: BTreeMap<String, String> = BTreeMap::new();
        loop {
            let Some(h) = read_line(&mut r).await? else {
                return Ok(());
            };
            if h.is_empty() {
                break;
            }
            let Some((k, v)) = h.split_once(':') else {
                continue;
            };
            let k = k.trim().to_ascii_lowercase();
            let v = v.trim().to_string();
            headers
                .entry(k.clone())
                .and_modify(|e| {
                    e.push_str(if k == "cookie" { "; " } else { ", " });
                    e.push_str(&v);
                })
                .or_insert(v);
        }

        // Body: Content-Length or chunked.
        let mut body = Vec::new();
        let chunked = headers
            .get("transfer-encoding")
            .is_some_and(|t| t.to_ascii_lowercase().contains("chunked"));
        if chunked {
            loop {
                let Some(size_line) = read_line(&mut r).await? else {
                    return Ok(());
                };
                let size =
                    usize::from_str_radix(size_line.split(';').next().unwrap_or("0").trim(), 16)
                        .unwrap_or(0);
                if size == 0 {
                    // trailers until empty line
                    loop {
                        match read_line(&mut r).await? {
                            None => return Ok(()),
                            Some(l) if l.is_empty() => break,
                            Some(_) => {}
                        }
                    }
                    break;
                }
                let mut chunk = vec![0u8; size];
                r.read_exact(&mut chunk).await?;
                body.extend_from_slice(&chunk);
                let _ = read_line(&mut r).await?; // CRLF after the chunk
            }
        } else if let Some(len) = headers
            .get("content-length")
            .and_then(|l| l.trim().parse::<usize>().ok())
        {
            body = vec![0u8; len];
            r.read_exact(&mut body).await?;
        }

        let close = headers
            .get("connection")
            .is_some_and(|c| c.to_ascii_lowercase().contains("close"))
            || version.eq_ignore_ascii_case("HTTP/1.0");

        let echo = json!({
            "method": method,
            "path": target,
            "version": version,
            "headers": headers,
            "body": String::from_utf8_lossy(&body),
        });
        hits.fetch_add(1, Ordering::SeqCst);
        seen.lock().unwrap().push(Echo::from_json(&echo));

        let payload = echo.to_string();
        let resp = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nX-Upstream: echo\r\nConnection: {}\r\n\r\n",
            payload.len(),
            if close { "close" } else { "keep-alive" }
        );
        w.write_all(resp.as_bytes()).await?;
        if method != "HEAD" {
            w.write_all(payload.as_bytes()).await?;
        }
        w.flush().await?;
        if close {
            let _ = w.shutdown().await;
            return Ok(());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Responses
// ---------------------------------------------------------------------------------------------

/// A fully read response.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
    pub url: String,
}

impl Resp {
    pub async fn read(r: reqwest::Response) -> Resp {
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let url = r.url().to_string();
        let body = r.text().await.expect("read response body");
        Resp {
            status,
            headers,
            body,
            url,
        }
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    }

    pub fn content_type(&self) -> String {
        self.header("content-type").unwrap_or_default()
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| {
            panic!(
                "expected a JSON body from {} (status {}): {e}\nbody: {}",
                self.url, self.status, self.body
            )
        })
    }

    /// The upstream's echo (the response must come from the upstream).
    pub fn echo(&self) -> Echo {
        assert_eq!(
            self.status, 200,
            "expected the upstream's 200 for {}, got {}: {}",
            self.url, self.status, self.body
        );
        assert_eq!(
            self.header("x-upstream").as_deref(),
            Some("echo"),
            "response for {} did not come from the upstream: {}",
            self.url,
            self.body
        );
        Echo::from_json(&self.json())
    }

    pub fn location(&self) -> String {
        self.header("location").unwrap_or_else(|| {
            panic!(
                "no Location header on {} (status {}): {}",
                self.url, self.status, self.body
            )
        })
    }

    /// Location resolved against the request URL.
    pub fn location_absolute(&self) -> String {
        let base = url::Url::parse(&self.url).unwrap();
        base.join(&self.location()).unwrap().to_string()
    }

    /// All `Set-Cookie` lines.
    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect()
    }

    /// The `Set-Cookie` line for cookie `name`, if any.
    pub fn set_cookie(&self, name: &str) -> Option<String> {
        self.set_cookies().into_iter().find(|l| {
            l.split(';')
                .next()
                .is_some_and(|p| p.trim().split('=').next() == Some(name))
        })
    }

    /// The value set for cookie `name` (non-empty), if any.
    pub fn set_cookie_value(&self, name: &str) -> Option<String> {
        let line = self.set_cookie(name)?;
        let first = line.split(';').next()?.trim();
        let v = first
            .split_once('=')?
            .1
            .trim()
            .trim_matches('"')
            .to_string();
        (!v.is_empty()).then_some(v)
    }

    pub fn describe(&self) -> String {
        format!(
            "{} -> {} headers={:?} body={}",
            self.url, self.status, self.headers, self.body
        )
    }
}

/// Attributes of a `Set-Cookie` line, lower-cased names.
pub fn cookie_attrs(line: &str) -> BTreeMap<String, String> {
    line.split(';')
        .skip(1)
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (k.trim().to_ascii_lowercase(), v.trim().to_string()),
            None => (p.to_ascii_lowercase(), String::new()),
        })
        .collect()
}

/// Whether a `Set-Cookie` line deletes its cookie (empty value, Max-Age=0 or an expiry in the past).
pub fn cookie_is_cleared(line: &str) -> bool {
    let first = line.split(';').next().unwrap_or_default();
    let value = first
        .split_once('=')
        .map(|(_, v)| v.trim())
        .unwrap_or_default();
    let attrs = cookie_attrs(line);
    value.is_empty()
        || value == "\"\""
        || attrs
            .get("max-age")
            .is_some_and(|m| m.parse::<i64>().is_ok_and(|m| m <= 0))
        || attrs.get("expires").is_some_and(|e| e.contains("1970"))
}

// ---------------------------------------------------------------------------------------------
// HTML helpers
// ---------------------------------------------------------------------------------------------

fn html_unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#34;", "\"")
        .replace("&#x27;", "'")
        .replace("&#39;", "'")
        .replace("&#x2f;", "/")
        .replace("&#x2F;", "/")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// All `<input>` tags as attribute maps.
pub fn inputs(html: &str) -> Vec<BTreeMap<String, String>> {
    let tag = regex::Regex::new(r"(?is)<input\b[^>]*>").unwrap();
    let attr =
        regex::Regex::new(r#"(?is)([a-zA-Z_:-]+)\s*(?:=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+)))?"#)
            .unwrap();
    tag.find_iter(html)
        .map(|m| {
            let inner = &m.as_str()[6..m.as_str().len() - 1];
            attr.captures_iter(inner)
                .map(|c| {
                    let k = c[1].to_ascii_lowercase();
                    let v = c
                        .get(2)
                        .or(c.get(3))
                        .or(c.get(4))
                        .map(|v| html_unescape(v.as_str()))
                        .unwrap_or_default();
                    (k, v)
                })
                .collect()
        })
        .collect()
}

/// The value of the input named `name` (hidden or not).
pub fn input_value(html: &str, name: &str) -> Option<String> {
    inputs(html)
        .into_iter()
        .find(|i| i.get("name").map(String::as_str) == Some(name))
        .map(|i| i.get("value").cloned().unwrap_or_default())
}

pub fn has_input(html: &str, name: &str) -> bool {
    inputs(html)
        .iter()
        .any(|i| i.get("name").map(String::as_str) == Some(name))
}

/// The `action` of the first `<form method="post">`, if it has one.
pub fn post_form_action(html: &str) -> Option<String> {
    let form = regex::Regex::new(r"(?is)<form\b[^>]*>").unwrap();
    let action = regex::Regex::new(r#"(?is)\baction\s*=\s*"([^"]*)""#).unwrap();
    let method = regex::Regex::new(r#"(?is)\bmethod\s*=\s*"?post"?"#).unwrap();
    let found = form
        .find_iter(html)
        .map(|m| m.as_str())
        .find(|f| method.is_match(f))
        .and_then(|f| action.captures(f).map(|c| html_unescape(&c[1])));
    found
}

pub fn has_post_form(html: &str) -> bool {
    let re = regex::Regex::new(r#"(?is)<form\b[^>]*\bmethod\s*=\s*"?post"?"#).unwrap();
    re.is_match(html)
}

// ---------------------------------------------------------------------------------------------
// Clients
// ---------------------------------------------------------------------------------------------

/// A cookie-keeping client that never follows redirects and resolves the test hosts to the
/// gateway.
#[derive(Clone)]
pub struct Browser {
    pub http: reqwest::Client,
    pub jar: Arc<Jar>,
    pub port: u16,
}

pub const ACCEPT_HTML: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";

impl Browser {
    pub fn new(port: u16) -> Browser {
        let jar = Arc::new(Jar::default());
        let gw: SocketAddr = ([127, 0, 0, 1], port).into();
        let http = reqwest::Client::builder()
            .cookie_provider(jar.clone())
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .resolve(APP, gw)
            .resolve(ADMIN_APP, gw)
            .resolve(DOWN_APP, gw)
            .resolve(UNKNOWN, gw)
            .resolve(EVIL, gw)
            .resolve(EXTRA_APP, gw)
            .build()
            .expect("build reqwest client");
        Browser { http, jar, port }
    }

    /// `http://<host>:<port><path>`
    pub fn url_on(&self, host: &str, path: &str) -> String {
        format!("http://{host}:{}{path}", self.port)
    }

    /// `http://app.test:<port><path>`
    pub fn url(&self, path: &str) -> String {
        self.url_on(APP, path)
    }

    /// Absolute URL from a path or an absolute URL.
    pub fn abs(&self, path_or_url: &str) -> String {
        if path_or_url.starts_with("http://") || path_or_url.starts_with("https://") {
            path_or_url.to_string()
        } else {
            self.url(path_or_url)
        }
    }

    pub async fn send(&self, rb: reqwest::RequestBuilder) -> Resp {
        Resp::read(rb.send().await.expect("request to the gateway failed")).await
    }

    /// A browser navigation (Accept: text/html).
    pub async fn get_html(&self, url: &str) -> Resp {
        self.send(self.http.get(self.abs(url)).header("accept", ACCEPT_HTML))
            .await
    }

    /// A non-navigation GET (Accept: application/json).
    pub async fn get_json(&self, url: &str) -> Resp {
        self.send(
            self.http
                .get(self.abs(url))
                .header("accept", "application/json"),
        )
        .await
    }

    pub async fn post_json(&self, url: &str, body: &Value) -> Resp {
        self.send(
            self.http
                .post(self.abs(url))
                .header("accept", "application/json")
                .header("content-type", "application/json")
                .body(body.to_string()),
        )
        .await
    }

    pub async fn post_form(&self, url: &str, fields: &[(&str, &str)]) -> Resp {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields.iter())
            .finish();
        self.send(
            self.http
                .post(self.abs(url))
                .header("accept", ACCEPT_HTML)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body),
        )
        .await
    }

    /// Cookies the jar would send to `url`, as (name, value).
    pub fn cookies_for(&self, url: &str) -> Vec<(String, String)> {
        let u = url::Url::parse(&self.abs(url)).unwrap();
        self.jar
            .cookies(&u)
            .map(|h: HeaderValue| {
                h.to_str()
                    .unwrap_or_default()
                    .split(';')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .filter_map(|p| {
                        p.split_once('=')
                            .map(|(k, v)| (k.to_string(), v.to_string()))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn cookie(&self, url: &str, name: &str) -> Option<String> {
        self.cookies_for(url)
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }

    /// Puts a cookie into the jar for `url`.
    pub fn add_cookie(&self, url: &str, cookie: &str) {
        let u = url::Url::parse(&self.abs(url)).unwrap();
        self.jar.add_cookie_str(cookie, &u);
    }
}

/// A client with no cookie jar at all, for sending hand-made `Cookie` headers.
#[derive(Clone)]
pub struct Raw {
    pub http: reqwest::Client,
    pub port: u16,
}

impl Raw {
    pub fn new(port: u16) -> Raw {
        let gw: SocketAddr = ([127, 0, 0, 1], port).into();
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .resolve(APP, gw)
            .resolve(ADMIN_APP, gw)
            .resolve(DOWN_APP, gw)
            .resolve(UNKNOWN, gw)
            .resolve(EVIL, gw)
            .resolve(EXTRA_APP, gw)
            .build()
            .unwrap();
        Raw { http, port }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{APP}:{}{path}", self.port)
    }

    /// GET `path` on app.test with `Cookie: <session cookie>=<token>` and the given Accept.
    pub async fn get_with_token(&self, path: &str, token: &str, accept: &str) -> Resp {
        Resp::read(
            self.http
                .get(self.url(path))
                .header("accept", accept)
                .header("cookie", format!("{SESSION_COOKIE}={token}"))
                .send()
                .await
                .expect("request to the gateway failed"),
        )
        .await
    }
}

// ---------------------------------------------------------------------------------------------
// Users and config
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
pub struct UserSpec {
    pub username: String,
    pub name: String,
    pub email: String,
    pub groups: Vec<String>,
    pub password: String,
}

impl UserSpec {
    pub fn new(username: &str, name: &str, email: &str, groups: &[&str], password: &str) -> Self {
        UserSpec {
            username: username.into(),
            name: name.into(),
            email: email.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            password: password.into(),
        }
    }
}

pub fn alice() -> UserSpec {
    UserSpec::new(
        "alice",
        "Alice A",
        "alice@example.com",
        &["staff", "ops"],
        ALICE_PW,
    )
}

pub fn bob() -> UserSpec {
    UserSpec::new("bob", "Bob B", "bob@example.com", &["admins"], BOB_PW)
}

pub fn toml_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Parameters of the standard test config.
#[derive(Clone, Debug)]
pub struct Setup {
    pub users: Vec<UserSpec>,
    pub failed_attempts: u32,
    /// `[session] flow_lifetime`
    pub flow_lifetime: String,
    /// Appended verbatim to the config.
    pub extra_toml: String,
    /// Lines added to `[server]` (e.g. `auth_url`, `tls_listen`).
    pub server_toml: String,
    /// Lines added to the `app.test` app (e.g. `scheme`, `port`).
    pub app_toml: String,
    /// Listeners handed over besides the plain one (e.g. the `tls_listen` of `server_toml`).
    pub listeners: Vec<Listener>,
    /// Environment of `serve`.
    pub env: Vec<(String, String)>,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            users: vec![alice(), bob()],
            failed_attempts: MAX_FAILURES,
            flow_lifetime: "30m".into(),
            extra_toml: String::new(),
            server_toml: String::new(),
            app_toml: String::new(),
            listeners: Vec::new(),
            env: Vec::new(),
        }
    }
}

/// The standard test config:
/// - `app.test`  -> the echo upstream, bypass `^/public/`, no group restriction;
/// - `admin.test` -> the echo upstream, `allowed_groups = ["admins"]`;
/// - `down.test` -> a closed port, bypass everything (no session needed to reach the upstream).
pub fn config_toml(
    port: u16,
    upstream: SocketAddr,
    down_port: u16,
    db: &Path,
    setup: &Setup,
) -> String {
    format!(
        r#"# generated by the e2e harness
[server]
listen = ["127.0.0.1:{port}"]
{server_toml}

[storage]
path = {db}

[session]
cookie_name = "{SESSION_COOKIE}"
lifetime = "12h"
flow_lifetime = "{flow_lifetime}"

[[apps]]
name = "demo"
hosts = ["{APP}"]
upstream = "{upstream}"
flow = "{FLOW}"
allowed_groups = []
bypass = ["^/public/"]
{app_toml}

[[apps]]
name = "admin"
hosts = ["{ADMIN_APP}"]
upstream = "{upstream}"
flow = "{FLOW}"
allowed_groups = ["admins"]
bypass = []

[[apps]]
name = "down"
hosts = ["{DOWN_APP}"]
upstream = "127.0.0.1:{down_port}"
flow = "{FLOW}"
allowed_groups = []
bypass = ["^/"]

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
failed_attempts_before_cancel = {failed}

[stages.login]
kind = "user_login"
session_duration = "12h"

[stages.nope]
kind = "deny"
deny_message = "No entry"
{extra}
"#,
        db = toml_str(&db.display().to_string()),
        failed = setup.failed_attempts,
        flow_lifetime = setup.flow_lifetime,
        extra = setup.extra_toml,
        server_toml = setup.server_toml,
        app_toml = setup.app_toml,
    )
}

// ---------------------------------------------------------------------------------------------
// CLI
// ---------------------------------------------------------------------------------------------

#[derive(Debug)]
pub struct CliOut {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl CliOut {
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }

    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

/// Runs the binary with `args`, writing `stdin` (if any) to it; gives up after 60 s.
pub fn run_cli_blocking(args: &[String], stdin: Option<&str>, env: &[(&str, &str)]) -> CliOut {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_remove("PORTCULLIS_CONFIG")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn portcullis");
    if let Some(input) = stdin {
        let mut si = child.stdin.take().unwrap();
        let _ = si.write_all(input.as_bytes());
        drop(si);
    }
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(out) => out.expect("wait for portcullis"),
        Err(_) => {
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg(pid.to_string())
                .status();
            panic!("`portcullis {}` did not finish within 60 s", args.join(" "));
        }
    };
    CliOut {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

pub async fn run_cli(args: Vec<String>, stdin: Option<String>) -> CliOut {
    tokio::task::spawn_blocking(move || run_cli_blocking(&args, stdin.as_deref(), &[]))
        .await
        .unwrap()
}

/// `portcullis --config <config> user add ...` with the password on stdin.
pub async fn add_user(config: &Path, u: &UserSpec) -> CliOut {
    let mut args: Vec<String> = vec![
        "--config".into(),
        config.display().to_string(),
        "user".into(),
        "add".into(),
        u.username.clone(),
        "--name".into(),
        u.name.clone(),
        "--email".into(),
        u.email.clone(),
    ];
    for g in &u.groups {
        args.push("--group".into());
        args.push(g.clone());
    }
    run_cli(args, Some(format!("{}\n", u.password))).await
}

// ---------------------------------------------------------------------------------------------
// The gateway process
// ---------------------------------------------------------------------------------------------

pub struct Gateway {
    pub dir: tempfile::TempDir,
    pub port: u16,
    /// The plain HTTP listener (`port`), handed to every run of the gateway.
    pub listener: Listener,
    pub upstream: Upstream,
    pub config_path: PathBuf,
    pub db_path: PathBuf,
    pub log_path: PathBuf,
    pub down_port: u16,
    /// Keeps `down_port` reserved and refusing connections.
    _down: Arc<DeadPort>,
    pub setup: Setup,
    /// Output of the `user add` runs done before the first start.
    pub user_add_outputs: Vec<CliOut>,
    child: Option<Child>,
}

impl Gateway {
    /// The standard config with alice and bob, started and answering ping.
    pub async fn start() -> Gateway {
        Gateway::start_with(Setup::default()).await
    }

    pub async fn start_with(setup: Setup) -> Gateway {
        let gw = Gateway::prepare(setup).await;
        gw.launch().await
    }

    /// Writes the config and adds the users (gateway not running), without starting it.
    pub async fn prepare(setup: Setup) -> Gateway {
        let upstream = Upstream::start().await;
        let dir = tempfile::Builder::new()
            .prefix("portcullis-e2e-")
            .tempdir()
            .expect("tempdir");
        let listener = Listener::bind();
        let port = listener.port();
        let down = Arc::new(DeadPort::new());
        let down_port = down.port();
        let db_path = dir.path().join("data").join("portcullis.db");
        fs::create_dir_all(db_path.parent().unwrap()).unwrap();
        let config_path = dir.path().join("portcullis.toml");
        let log_path = dir.path().join("gateway.log");
        write_old_keys_file(&db_path.parent().unwrap().join("keys.json"));
        fs::write(
            &config_path,
            config_toml(port, upstream.addr, down_port, &db_path, &setup),
        )
        .unwrap();
        let mut gw = Gateway {
            dir,
            port,
            listener,
            upstream,
            config_path,
            db_path,
            log_path,
            down_port,
            _down: down,
            setup: setup.clone(),
            user_add_outputs: Vec::new(),
            child: None,
        };
        for u in &setup.users {
            let out = add_user(&gw.config_path, u).await;
            assert!(
                out.ok(),
                "`portcullis user add {}` failed ({:?}):\nstdout: {}\nstderr: {}",
                u.username,
                out.code,
                out.stdout,
                out.stderr
            );
            gw.user_add_outputs.push(out);
        }
        gw
    }

    /// Starts the process and waits until it answers ping.
    pub async fn launch(mut self) -> Gateway {
        self.start_process().await;
        self
    }

    async fn start_process(&mut self) {
        let mut listeners = vec![self.listener.clone()];
        listeners.extend(self.setup.listeners.iter().cloned());
        let child = Serve {
            args: vec!["--config".into(), self.config_path.clone().into()],
            listeners: &listeners,
            dir: self.dir.path(),
            env: &self.setup.env,
            log: &self.log_path,
        }
        .start()
        .await;
        self.child = Some(child);
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// `kill -9`: no shutdown at all.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops the gateway the way an operator would (SIGINT, Pingora's fast shutdown); SIGKILL
    /// if it is still running after 10 s.
    pub async fn stop(&mut self) {
        let Some(mut c) = self.child.take() else {
            return;
        };
        let pid = c.id();
        let _ = Command::new("kill")
            .arg("-INT")
            .arg(pid.to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(_)) = c.try_wait() {
                return;
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Starts again with the same config and database.
    pub async fn start_again(&mut self) {
        assert!(self.child.is_none(), "gateway is already running");
        self.start_process().await;
    }

    pub async fn restart(&mut self) {
        self.stop().await;
        self.start_again().await;
    }

    /// Everything the gateway wrote to stderr so far (all runs).
    pub fn logs(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub fn browser(&self) -> Browser {
        Browser::new(self.port)
    }

    pub fn raw(&self) -> Raw {
        Raw::new(self.port)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{APP}:{}{path}", self.port)
    }

    pub fn url_on(&self, host: &str, path: &str) -> String {
        format!("http://{host}:{}{path}", self.port)
    }

    /// `http://app.test:<port>/`
    pub fn app_root(&self) -> String {
        self.url("/")
    }

    /// The keys file the gateway imported into its store at its first start (the harness
    /// writes one, as a gateway of an earlier version left it): `keys.json.imported` once
    /// imported, `keys.json` before.
    pub fn keys_path(&self) -> PathBuf {
        let file = self.db_path.parent().unwrap().join("keys.json");
        let imported = portcullis::session::KeyFile::imported_path(&file);
        if imported.exists() {
            imported
        } else {
            file
        }
    }

    /// The signing keys the gateway started with (those of the imported keys file).
    pub fn keys(&self) -> Keys {
        Keys::load(&self.keys_path())
    }

    /// The signing keys in the gateway's store now (after rotations); the gateway must be
    /// stopped (sled is locked while it runs).
    pub fn stored_keys(&self) -> Keys {
        use portcullis::store::Store;
        let store = portcullis::store::SledStore::open(&self.db_path).expect("open the database");
        let set = store
            .keyset(portcullis::store::KEYSET_SESSION)
            .expect("read the key set")
            .expect("a key set is stored");
        Keys::parse(&String::from_utf8(set.data).unwrap(), "the stored key set")
    }

    /// `portcullis --config <ours> <args...>`
    pub async fn cli(&self, args: &[&str], stdin: Option<&str>) -> CliOut {
        let mut a: Vec<String> = vec!["--config".into(), self.config_path.display().to_string()];
        a.extend(args.iter().map(|s| s.to_string()));
        run_cli(a, stdin.map(str::to_string)).await
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.kill();
    }
}

// ---------------------------------------------------------------------------------------------
// Driving the flows
// ---------------------------------------------------------------------------------------------

pub fn flow_path() -> String {
    format!("/.portcullis/flow/{FLOW}")
}

pub fn api_path() -> String {
    format!("/.portcullis/api/flow/{FLOW}")
}

pub fn pct(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// `/.portcullis/api/flow/<slug>?rd=<rd>` (or without rd).
pub fn api_path_rd(rd: Option<&str>) -> String {
    match rd {
        Some(rd) => format!("{}?rd={}", api_path(), pct(rd)),
        None => api_path(),
    }
}

pub fn flow_path_rd(rd: Option<&str>) -> String {
    match rd {
        Some(rd) => format!("{}?rd={}", flow_path(), pct(rd)),
        None => flow_path(),
    }
}

/// The result of a completed JSON sign-in.
#[derive(Debug, Clone)]
pub struct SignedIn {
    /// `to` of the final `redirect` component.
    pub to: String,
    /// The session token (the session cookie's value).
    pub token: String,
    /// The final response's `Set-Cookie` line for the session cookie.
    pub cookie_line: String,
    pub final_json: Value,
}

/// Starts a JSON execution on `host` (GET with `?rd=`), asserting the identification challenge.
pub async fn api_start(b: &Browser, host: &str, rd_raw_query: Option<&str>) -> Resp {
    let url = match rd_raw_query {
        Some(q) => b.url_on(host, &format!("{}?rd={q}", api_path())),
        None => b.url_on(host, &api_path()),
    };
    let r = b.get_json(&url).await;
    assert_eq!(r.status, 200, "GET api flow: {}", r.describe());
    let v = r.json();
    assert_eq!(v["component"], "identification", "first challenge: {v}");
    r
}

/// Identify + password on an already-started execution; asserts success.
pub async fn api_finish(b: &Browser, host: &str, uid: &str, password: &str) -> SignedIn {
    let url = b.url_on(host, &api_path());
    let r = b.post_json(&url, &json!({ "uid": uid })).await;
    assert_eq!(r.status, 200, "POST uid: {}", r.describe());
    assert_eq!(r.json()["component"], "password", "after uid: {}", r.body);
    let r = b.post_json(&url, &json!({ "password": password })).await;
    assert_eq!(r.status, 200, "POST password: {}", r.describe());
    let v = r.json();
    assert_eq!(v["component"], "redirect", "after password: {v}");
    let cookie_line = r
        .set_cookie(SESSION_COOKIE)
        .unwrap_or_else(|| panic!("no session Set-Cookie on the final step: {}", r.describe()));
    let token = r
        .set_cookie_value(SESSION_COOKIE)
        .unwrap_or_else(|| panic!("empty session cookie: {cookie_line}"));
    SignedIn {
        to: v["to"].as_str().unwrap_or_default().to_string(),
        token,
        cookie_line,
        final_json: v,
    }
}

/// The whole JSON sign-in on `host`, with an optional (already percent-encoded) rd query value.
pub async fn api_sign_in_on(
    b: &Browser,
    host: &str,
    rd_query: Option<&str>,
    uid: &str,
    pw: &str,
) -> SignedIn {
    api_start(b, host, rd_query).await;
    api_finish(b, host, uid, pw).await
}

/// The whole JSON sign-in on app.test with no rd.
pub async fn api_sign_in(b: &Browser, uid: &str, pw: &str) -> SignedIn {
    api_sign_in_on(b, APP, None, uid, pw).await
}

/// A fresh client signed in as alice on app.test.
pub async fn alice_browser(gw: &Gateway) -> (Browser, SignedIn) {
    let b = gw.browser();
    let s = api_sign_in(&b, "alice", ALICE_PW).await;
    (b, s)
}

/// One HTML form page: its URL, csrf token, stage and the raw HTML.
#[derive(Debug, Clone)]
pub struct FormPage {
    pub url: String,
    pub action: String,
    pub csrf: String,
    pub stage: String,
    pub html: String,
}

/// Parses a flow page served at `url`.
pub fn form_page(r: &Resp) -> FormPage {
    assert_eq!(r.status, 200, "flow page: {}", r.describe());
    assert!(
        r.content_type().starts_with("text/html"),
        "flow page content type: {}",
        r.content_type()
    );
    let csrf = input_value(&r.body, "csrf_token")
        .unwrap_or_else(|| panic!("no csrf_token input on {}:\n{}", r.url, r.body));
    let stage = input_value(&r.body, "stage")
        .unwrap_or_else(|| panic!("no stage input on {}:\n{}", r.url, r.body));
    assert!(!csrf.is_empty(), "empty csrf_token on {}", r.url);
    let base = url::Url::parse(&r.url).unwrap();
    let action = post_form_action(&r.body)
        .filter(|a| !a.is_empty())
        .map(|a| base.join(&a).unwrap().to_string())
        .unwrap_or_else(|| r.url.clone());
    FormPage {
        url: r.url.clone(),
        action,
        csrf,
        stage,
        html: r.body.clone(),
    }
}

/// Submits a form page with its csrf token and stage plus `fields`.
pub async fn submit(b: &Browser, page: &FormPage, fields: &[(&str, &str)]) -> Resp {
    let mut all: Vec<(&str, &str)> = vec![("csrf_token", &page.csrf), ("stage", &page.stage)];
    all.extend_from_slice(fields);
    b.post_form(&page.action, &all).await
}

/// Follows a 303 after a form post to the next flow page.
pub async fn next_page(b: &Browser, r: &Resp) -> FormPage {
    assert_eq!(
        r.status,
        303,
        "expected 303 after the form post: {}",
        r.describe()
    );
    let next = r.location_absolute();
    let page = b.get_html(&next).await;
    form_page(&page)
}

/// The HTML sign-in starting from a flow page URL (path or absolute); returns the final 303.
pub async fn html_sign_in_from(b: &Browser, flow_url: &str, uid: &str, pw: &str) -> Resp {
    let first = b.get_html(flow_url).await;
    let page = form_page(&first);
    assert!(
        has_input(&page.html, "uid"),
        "identification page without uid field:\n{}",
        page.html
    );
    let r = submit(b, &page, &[("uid", uid)]).await;
    let page = next_page(b, &r).await;
    assert!(
        has_input(&page.html, "password"),
        "password page without password field:\n{}",
        page.html
    );
    let r = submit(b, &page, &[("password", pw)]).await;
    assert_eq!(r.status, 303, "final HTML step: {}", r.describe());
    r
}

// ---------------------------------------------------------------------------------------------
// Keys and tokens
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct Key {
    pub kid: String,
    pub alg: String,
    pub secret: Vec<u8>,
    pub raw: Value,
}

#[derive(Debug, Clone)]
pub struct Keys {
    pub active: String,
    pub keys: Vec<Key>,
    pub raw: Value,
}

/// Writes a keys file as a gateway of the version before keys lived in the store left it
/// (one HS256 key, no assertion key), 0600: the gateway imports it at its first start.
fn write_old_keys_file(path: &Path) {
    let kid = portcullis::secret::random_token(9);
    let secret = portcullis::secret::random_token(32);
    let file = serde_json::json!({
        "active": kid,
        "keys": [{ "kid": kid, "alg": "HS256", "secret": secret, "created": 0 }],
    });
    fs::write(path, serde_json::to_vec_pretty(&file).unwrap()).unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).unwrap();
}

pub fn b64_decode_lenient(s: &str) -> Vec<u8> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    URL_SAFE_NO_PAD
        .decode(s)
        .or_else(|_| URL_SAFE.decode(s))
        .or_else(|_| STANDARD.decode(s))
        .or_else(|_| STANDARD_NO_PAD.decode(s))
        .unwrap_or_else(|e| panic!("cannot base64-decode {s:?}: {e}"))
}

pub fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl Keys {
    pub fn load(path: &Path) -> Keys {
        let text = fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("cannot read keys file {}: {e}", path.display()));
        Keys::parse(&text, &path.display().to_string())
    }

    pub fn parse(text: &str, what: &str) -> Keys {
        let raw: Value = serde_json::from_str(text)
            .unwrap_or_else(|e| panic!("keys {what} is not JSON: {e}\n{text}"));
        let active = raw["active"]
            .as_str()
            .expect("keys.json: active")
            .to_string();
        let keys = raw["keys"]
            .as_array()
            .expect("keys.json: keys array")
            .iter()
            .map(|k| Key {
                kid: k["kid"].as_str().expect("key kid").to_string(),
                alg: k["alg"].as_str().unwrap_or("HS256").to_string(),
                secret: b64_decode_lenient(k["secret"].as_str().expect("key secret")),
                raw: k.clone(),
            })
            .collect();
        Keys { active, keys, raw }
    }

    pub fn active_key(&self) -> &Key {
        self.keys
            .iter()
            .find(|k| k.kid == self.active)
            .unwrap_or_else(|| panic!("active kid {} not among the keys", self.active))
    }
}

/// The decoded header and claims of a JWT (no verification).
pub fn jwt_parts(token: &str) -> (Value, Value) {
    let mut it = token.split('.');
    let h = it.next().expect("jwt header");
    let c = it.next().expect("jwt claims");
    let header: Value = serde_json::from_slice(&b64_decode_lenient(h)).expect("jwt header JSON");
    let claims: Value = serde_json::from_slice(&b64_decode_lenient(c)).expect("jwt claims JSON");
    (header, claims)
}

/// Signs `claims` with HMAC using jsonwebtoken, header `{alg, kid, typ: JWT}`.
pub fn sign(
    alg: jsonwebtoken::Algorithm,
    kid: Option<&str>,
    claims: &Value,
    secret: &[u8],
) -> String {
    let mut header = jsonwebtoken::Header::new(alg);
    header.kid = kid.map(str::to_string);
    jsonwebtoken::encode(
        &header,
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret),
    )
    .expect("sign token")
}

/// An unsigned token: header `{"alg":"none"...}`, the claims, and `signature` (may be empty).
pub fn unsigned_token(header: &Value, claims: &Value, signature: &str) -> String {
    format!(
        "{}.{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes()),
        signature
    )
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Asserts that a token is refused: a JSON request gets 401 with `unauthenticated`, a
/// navigation gets 302 to the flow, and nothing reaches the upstream.
pub async fn assert_token_refused(gw: &Gateway, token: &str, what: &str) {
    let raw = gw.raw();
    let before = gw.upstream.hits();
    let r = raw
        .get_with_token("/secret", token, "application/json")
        .await;
    assert_eq!(
        r.status,
        401,
        "{what}: expected 401 for a JSON request, got {}",
        r.describe()
    );
    assert_eq!(r.json()["error"], "unauthenticated", "{what}: {}", r.body);
    let r = raw.get_with_token("/secret", token, ACCEPT_HTML).await;
    assert_eq!(
        r.status,
        302,
        "{what}: expected 302 for a navigation, got {}",
        r.describe()
    );
    assert!(
        r.location().contains(&format!("/.portcullis/flow/{FLOW}")),
        "{what}: redirect not to the flow: {}",
        r.location()
    );
    assert_eq!(
        gw.upstream.hits(),
        before,
        "{what}: a request reached the upstream"
    );
}

/// Asserts that a token is accepted and returns what the upstream saw.
pub async fn assert_token_accepted(gw: &Gateway, token: &str, what: &str) -> Echo {
    let r = gw
        .raw()
        .get_with_token("/secret", token, "application/json")
        .await;
    assert_eq!(
        r.status,
        200,
        "{what}: expected the token to be accepted: {}",
        r.describe()
    );
    r.echo()
}

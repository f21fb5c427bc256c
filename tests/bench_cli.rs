//! End to end: `portcullis bench` against the real gateway binary in front of a real upstream.
//! It signs in with `--login` (password on stdin), sends a mix of valid, expired and missing
//! cookies and must report each kind's real answers; with `--cookie` and `-n` it sends exactly
//! that many requests; and it refuses, with exit code 2 and a message saying why, to run
//! without a target, against https, with a wrong password, or without a cookie its mix needs.

// A test crate has no API: `pub` in its modules only shares helpers between them.
#![allow(unreachable_pub)]
// Set-up helpers outside `#[test]` functions unwrap on purpose: a failed set-up is a failed test.
#![allow(clippy::unwrap_used)]

#[path = "forward_auth/fronts.rs"]
mod fronts;

use portcullis::loadgen::{login, LoginOptions, Target};
use portcullis::secret::SecretString;
use std::io::Write;
use std::net::{SocketAddr, TcpListener as StdListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const BIN: &str = env!("CARGO_BIN_EXE_portcullis");
const PASSWORD: &str = "Bench-cli-password-9182";
const COOKIE: &str = "portcullis_session";

/// An upstream that answers every request on a keep-alive connection with `200 upstream`.
async fn upstream() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..end + 4);
                        let r = b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nupstream";
                        if s.write_all(r).await.is_err() {
                            return;
                        }
                    }
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
            });
        }
    });
    addr
}

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn config(dir: &Path, port: u16, upstream: SocketAddr) -> String {
    let d = dir.display();
    format!(
        r#"
[server]
listen = ["127.0.0.1:{port}"]
threads = 1
[storage]
path = "{d}/db"
[admin]
socket = "{d}/admin.sock"
[session]
cookie_name = "{COOKIE}"
[[apps]]
name = "app"
hosts = ["127.0.0.1"]
upstream = "{upstream}"
flow = "default-authentication"
[[flows]]
slug = "default-authentication"
title = "Sign in"
designation = "authentication"
stages = ["identify", "password", "login"]
[stages.identify]
kind = "identification"
user_fields = ["username"]
[stages.password]
kind = "password"
[stages.login]
kind = "user_login"
"#
    )
}

fn run(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// `run` off the async runtime (the gateway's upstream lives on it).
async fn run_async(args: &[&str], stdin: &str) -> Output {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let stdin = stdin.to_string();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run(&args, &stdin)
    })
    .await
    .unwrap()
}

/// [`run_async`] with alice's password on stdin (for `--login alice`): the output, and its
/// stdout and stderr as text.
async fn run_as_alice(args: &[&str]) -> (Output, String, String) {
    let out = run_async(args, &format!("{PASSWORD}\n")).await;
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    (out, stdout, stderr)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The gateway with user `alice`, killed when dropped.
struct Gateway {
    child: Child,
    port: u16,
    upstream: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Gateway {
    async fn start() -> Gateway {
        Gateway::start_with(config).await
    }

    /// With the config `config(dir, port, upstream)` writes.
    async fn start_with(config: impl Fn(&Path, u16, SocketAddr) -> String) -> Gateway {
        let dir = tempfile::tempdir().unwrap();
        let up = upstream().await;
        let port = free_port();
        let cfg = dir.path().join("portcullis.toml");
        std::fs::write(&cfg, config(dir.path(), port, up)).unwrap();
        let cfg = cfg.display().to_string();

        let added = run(&["--config", &cfg, "user", "add", "alice"], PASSWORD);
        assert!(added.status.success(), "{added:?}");

        let child = Command::new(BIN)
            .args(["--config", &cfg, "serve"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let gw = Gateway {
            child,
            port,
            upstream: up,
            _dir: dir,
        };
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "gateway did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        gw
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/page", self.port)
    }
}

/// The table line whose first column is `name`.
fn row<'a>(table: &'a str, name: &str) -> &'a str {
    table
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("no `{name}` row in:\n{table}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_signs_in_and_reports_the_status_mix() {
    let gw = Gateway::start().await;
    let (out, stdout, stderr) = run_as_alice(&[
        "bench",
        &gw.url(),
        "--login",
        "alice",
        "--mix",
        "valid=60,expired=20,missing=20",
        "--connections",
        "4",
        "--duration",
        "1s",
        "--warmup",
        "200ms",
    ])
    .await;
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stderr.contains("signed in as alice"), "{stderr}");
    // Progress lines while it runs.
    assert!(stderr.contains("warming up"), "{stderr}");

    let header = stdout.lines().next().unwrap_or_default();
    for col in ["req/s", "p50 ms", "p99 ms", "p99.9 ms"] {
        assert!(header.contains(col), "{stdout}");
    }
    let all = row(&stdout, "all");
    let rps: f64 = all.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(rps > 0.0, "{stdout}");
    let valid = row(&stdout, "valid");
    assert!(
        valid.contains("200x") && !valid.contains("401x"),
        "{stdout}"
    );
    // An expired cookie is verified and refused like a missing one: 401 to an API client.
    for refused in ["expired", "missing"] {
        let r = row(&stdout, refused);
        assert!(r.contains("401x") && !r.contains("200x"), "{stdout}");
    }
    // The shares follow the mix (60/20/20) closely over a whole run.
    let count = |name: &str| -> f64 {
        let r = row(&stdout, name);
        r.split_whitespace()
            .filter_map(|w| w.split_once('x'))
            .filter_map(|(_, n)| n.parse::<f64>().ok())
            .sum()
    };
    let (v, e, m) = (count("valid"), count("expired"), count("missing"));
    let share = v / (v + e + m);
    assert!((0.5..0.7).contains(&share), "valid share {share}: {stdout}");

    // A wrong password is refused with the reason, before any load is sent.
    let out = run_async(
        &["bench", &gw.url(), "--login", "alice", "-d", "1s"],
        "not-the-password\n",
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(text(&out.stderr).contains("password refused"), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_with_a_cookie_sends_exactly_the_requests_asked_and_writes_json() {
    let gw = Gateway::start().await;
    let target = Target::parse(&gw.url(), None).unwrap();
    let token = login(
        &target,
        LoginOptions {
            user: "alice",
            password: SecretString::new(PASSWORD),
            flow: None,
            cookie_name: COOKIE,
        },
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("out.json");
    let out = run_async(
        &[
            "bench",
            &gw.url(),
            "--cookie",
            &format!("{COOKIE}={token}"),
            "-n",
            "300",
            "-c",
            "3",
            "--warmup",
            "0s",
            "--json",
            &json.display().to_string(),
        ],
        "",
    )
    .await;
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let rows = v["rows"].as_array().unwrap();
    let names: Vec<&str> = rows.iter().filter_map(|r| r["name"].as_str()).collect();
    assert_eq!(names, ["all", "valid"], "{v:#}");
    assert_eq!(rows[0]["note"], "200x300", "{v:#}");
    assert!(rows[0]["p99_ms"].as_f64().unwrap() > 0.0, "{v:#}");
    assert!(
        rows[0]["p50_ms"].as_f64().unwrap() <= rows[0]["p99_ms"].as_f64().unwrap(),
        "{v:#}"
    );
    assert_eq!(v["context"]["connections"], 3, "{v:#}");
    assert!(text(&out.stdout).contains("300 requests in"), "{out:?}");
}

#[test]
fn bench_refuses_to_run_without_a_target() {
    let out = run(&["bench", "--cookie", "x"], "");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(text(&out.stderr).contains("<URL>"), "{out:?}");
}

#[test]
fn bench_refuses_what_it_cannot_measure() {
    let port = free_port(); // nothing listens there
    let cases: [(&[&str], &str); 4] = [
        (&["bench", "https://127.0.0.1/"], "https is not supported"),
        (
            &["bench", "http://127.0.0.1:9/", "--mix", "valid=1"],
            "pass --cookie or --login",
        ),
        (
            &["bench", "http://127.0.0.1:9/", "--rate", "0"],
            "is not a positive number",
        ),
        (
            &["bench", &format!("http://127.0.0.1:{port}/"), "-d", "1s"],
            "cannot reach",
        ),
    ];
    for (args, says) in cases {
        let out = run(args, "");
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        assert!(text(&out.stderr).contains(says), "{args:?}: {out:?}");
    }
}

/// The forward-auth layout: apps and the auth host behind one front proxy on port 80 (as
/// `auth_url` says), the sign-in on the auth host.
fn front_config(dir: &Path, port: u16, upstream: SocketAddr) -> String {
    config(dir, port, upstream)
        .replace(
            "threads = 1\n",
            "threads = 1\nauth_url = \"http://auth.bench.test\"\n",
        )
        .replace("hosts = [\"127.0.0.1\"]", "hosts = [\"app.bench.test\"]")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_signs_in_on_the_auth_host_through_the_shipped_nginx_and_caddy() {
    let gw = Gateway::start_with(front_config).await;
    for kind in [fronts::Kind::Nginx, fronts::Kind::Caddy] {
        let site = fronts::Site::new(
            &["app.bench.test"],
            "auth.bench.test",
            &gw.upstream.to_string(),
            &format!("127.0.0.1:{}", gw.port),
        );
        let front = fronts::Front::start(kind, &site).await;
        let (out, stdout, stderr) = run_as_alice(&[
            "bench",
            "http://app.bench.test/page",
            "--connect",
            &format!("127.0.0.1:{}", front.port),
            "--login",
            "alice",
            "--mix",
            "valid=80,missing=20",
            "-c",
            "2",
            "--duration",
            "500ms",
            "--warmup",
            "0s",
        ])
        .await;
        assert!(
            out.status.success(),
            "{kind:?}: stdout:\n{stdout}\nstderr:\n{stderr}\n--- front ---\n{}",
            front.logs()
        );
        assert!(stderr.contains("signed in as alice"), "{kind:?}: {stderr}");
        let valid = row(&stdout, "valid");
        assert!(
            valid.contains("200x") && !valid.contains("401x"),
            "{kind:?}: the signed-in requests did not pass the front proxy:\n{stdout}"
        );
    }
}

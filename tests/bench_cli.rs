//! End to end: `portcullis bench` against the real gateway binary in front of a real upstream,
//! signing in with `--login` (password on stdin) and sending a mix of valid, expired and
//! missing cookies for about a second.

use std::io::Write;
use std::net::{SocketAddr, TcpListener as StdListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const BIN: &str = env!("CARGO_BIN_EXE_portcullis");
const PASSWORD: &str = "Bench-cli-password-9182";

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

struct Gateway(Child);

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
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
    let _gateway = Gateway(child);
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "gateway did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let url = format!("http://127.0.0.1:{port}/page");
    let out = tokio::task::spawn_blocking(move || {
        run(
            &[
                "bench",
                &url,
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
            ],
            &format!("{PASSWORD}\n"),
        )
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stderr.contains("signed in as alice"), "{stderr}");

    let all = row(&stdout, "all");
    let rps: f64 = all.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(rps > 0.0, "{stdout}");
    let valid = row(&stdout, "valid");
    assert!(
        valid.contains("200x") && !valid.contains("401x"),
        "{stdout}"
    );
    for refused in ["expired", "missing"] {
        let r = row(&stdout, refused);
        assert!(r.contains("401x") && !r.contains("200x"), "{stdout}");
    }
}

#[test]
fn bench_refuses_to_run_without_a_target() {
    let out = run(&["bench", "--cookie", "x"], "");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("<URL>"),
        "{out:?}"
    );
}

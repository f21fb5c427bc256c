//! Slow and heavy clients: request heads trickled byte by byte, oversized heads, many
//! connections from one address, slowloris at scale, memory after half-sent megabyte heads, and
//! dropped connections in the log.

use crate::harness::*;
use std::net::{IpAddr, SocketAddr};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

fn setup(server_toml: &str) -> Setup {
    Setup {
        server_toml: server_toml.into(),
        ..Setup::default()
    }
}

/// A connection to the gateway from `from` (any 127.0.0.0/8 address is this machine).
async fn connect_from(gw: SocketAddr, from: IpAddr) -> std::io::Result<TcpStream> {
    let sock = TcpSocket::new_v4()?;
    sock.bind(SocketAddr::new(from, 0))?;
    sock.connect(gw).await
}

fn local(last: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, last])
}

fn addr(gw: &Gateway) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], gw.port))
}

/// Everything the server sends until it closes, or until `within` has passed.
async fn answer(conn: &mut TcpStream, within: Duration) -> (String, Duration) {
    let start = Instant::now();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(within, conn.read_to_end(&mut out)).await;
    (String::from_utf8_lossy(&out).into_owned(), start.elapsed())
}

fn ping(host: &str) -> String {
    format!("GET /.portcullis/ping HTTP/1.1\r\nHost: {host}\r\n\r\n")
}

/// Reads one answer to [`ping`] on a kept-alive connection: everything up to its `pong`.
async fn read_pong(conn: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    let end = Instant::now() + Duration::from_secs(3);
    while !out.ends_with(b"pong") && Instant::now() < end {
        match tokio::time::timeout(Duration::from_secs(3), conn.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => out.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn no_error_lines(gw: &Gateway) {
    let logs = gw.logs();
    let errors: Vec<&str> = logs.lines().filter(|l| l.contains(" ERROR ")).collect();
    assert!(
        errors.is_empty(),
        "ERROR lines in the log:\n{}",
        errors.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_trickled_head_is_cut_at_the_deadline() {
    let gw = Gateway::start_with(setup("header_timeout = \"2s\"")).await;
    // (what is sent before the trickle, the byte trickled, whether a kept-alive request came first)
    let cases: [(&str, &[u8], bool); 4] = [
        (
            "GET /.portcullis/ping HTTP/1.1\r\n",
            b"X-Slow: a\r\n",
            false,
        ),
        ("", b"\r\n", false),
        ("", b"", false),
        (
            "GET /.portcullis/ping HTTP/1.1\r\nHost: app.test\r\n",
            b"X",
            true,
        ),
    ];
    for (start, trickle, kept_alive) in cases {
        let mut conn = connect_from(addr(&gw), local(1)).await.unwrap();
        if kept_alive {
            conn.write_all(ping(APP).as_bytes()).await.unwrap();
            let first = read_pong(&mut conn).await;
            assert!(
                first.starts_with("HTTP/1.1 200") && first.ends_with("pong"),
                "{first}"
            );
            // Idle between requests is the keep-alive timeout's business, not the head's.
            tokio::time::sleep(Duration::from_millis(2500)).await;
        }
        let began = Instant::now();
        conn.write_all(start.as_bytes()).await.unwrap();
        let mut trickled = 0;
        let (seen, _) = loop {
            if !trickle.is_empty()
                && conn
                    .write_all(&trickle[trickled % trickle.len()..][..1])
                    .await
                    .is_err()
            {
                break answer(&mut conn, Duration::from_secs(1)).await;
            }
            trickled += 1;
            let (seen, _) = answer(&mut conn, Duration::from_millis(200)).await;
            if !seen.is_empty() || began.elapsed() > Duration::from_secs(6) {
                break (seen, Duration::ZERO);
            }
        };
        let took = began.elapsed();
        assert!(
            seen.starts_with("HTTP/1.1 408 "),
            "{start:?} + {trickle:?}: {seen:?} after {took:?}"
        );
        assert!(
            took >= Duration::from_millis(1800) && took < Duration::from_millis(3500),
            "{start:?} + {trickle:?}: cut after {took:?}, the deadline is 2 s"
        );
    }
    // A head that arrives in time, even in pieces, is served.
    let mut conn = connect_from(addr(&gw), local(1)).await.unwrap();
    for piece in ping(APP).as_bytes().chunks(8) {
        conn.write_all(piece).await.unwrap();
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    assert!(read_pong(&mut conn).await.starts_with("HTTP/1.1 200"));
    no_error_lines(&gw);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_oversized_head_is_answered_431() {
    let gw = Gateway::start().await;
    let big = "a".repeat(33 * 1024);
    let many: String = (0..1700)
        .map(|i| format!("X-H{i}: 0123456789\r\n"))
        .collect();
    let fits = "b".repeat(30 * 1024);
    // (head, what the answer starts with)
    let cases = [
        (format!("GET /.portcullis/ping HTTP/1.1\r\nHost: {APP}\r\nX-Big: {big}\r\n\r\n"), "HTTP/1.1 431 "),
        (format!("GET /.portcullis/ping HTTP/1.1\r\nHost: {APP}\r\n{many}\r\n"), "HTTP/1.1 431 "),
        (format!("GET /.portcullis/ping?{big} HTTP/1.1\r\nHost: {APP}\r\n\r\n"), "HTTP/1.1 431 "),
        // Bare LF line endings count the same.
        (format!("GET /.portcullis/ping HTTP/1.1\nHost: {APP}\nX-Big: {big}\n\n"), "HTTP/1.1 431 "),
        // Never finished: refused as soon as it passes the cap, not when it ends.
        (format!("GET /.portcullis/ping HTTP/1.1\r\nHost: {APP}\r\nX-Big: {big}"), "HTTP/1.1 431 "),
        // Just under the cap is fine.
        (format!("GET /.portcullis/ping HTTP/1.1\r\nHost: {APP}\r\nConnection: close\r\nX-Fits: {fits}\r\n\r\n"), "HTTP/1.1 200 "),
    ];
    for (i, (head, want)) in cases.iter().enumerate() {
        let mut conn = connect_from(addr(&gw), local(1)).await.unwrap();
        let began = Instant::now();
        let _ = conn.write_all(head.as_bytes()).await;
        let (seen, _) = answer(&mut conn, Duration::from_secs(3)).await;
        assert!(
            seen.starts_with(want),
            "case {i}: {:?}",
            &seen[..seen.len().min(200)]
        );
        assert!(
            began.elapsed() < Duration::from_secs(3),
            "case {i}: not answered at once"
        );
    }
    // A kept-alive follow-up request is held to the same cap.
    let mut conn = connect_from(addr(&gw), local(1)).await.unwrap();
    conn.write_all(ping(APP).as_bytes()).await.unwrap();
    assert!(read_pong(&mut conn).await.starts_with("HTTP/1.1 200 "));
    let head = format!("GET /.portcullis/ping HTTP/1.1\r\nHost: {APP}\r\nX-Big: {big}\r\n\r\n");
    let _ = conn.write_all(head.as_bytes()).await;
    let (seen, _) = answer(&mut conn, Duration::from_secs(3)).await;
    assert!(seen.starts_with("HTTP/1.1 431 "), "{seen:?}");
    // The cap is configurable.
    let gw = Gateway::start_with(setup("max_header_bytes = 2048")).await;
    let mut conn = connect_from(addr(&gw), local(1)).await.unwrap();
    let head = format!(
        "GET /.portcullis/ping HTTP/1.1\r\nHost: {APP}\r\nX: {}\r\n\r\n",
        "c".repeat(2100)
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    let (seen, _) = answer(&mut conn, Duration::from_secs(3)).await;
    assert!(seen.starts_with("HTTP/1.1 431 "), "{seen}");
    no_error_lines(&gw);
}

#[tokio::test(flavor = "multi_thread")]
async fn one_address_holds_at_most_its_connection_cap() {
    // Loopback is trusted by default (a front proxy there is not capped): trust another address.
    let gw = Gateway::start_with(setup(
        "max_connections_per_address = 4\ntrusted_proxies = [\"127.0.0.9\"]",
    ))
    .await;
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(connect_from(addr(&gw), local(2)).await.unwrap());
    }
    // Let the gateway accept them all before the fifth arrives.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut fifth = connect_from(addr(&gw), local(2)).await.unwrap();
    let _ = fifth.write_all(ping(APP).as_bytes()).await;
    let (seen, _) = answer(&mut fifth, Duration::from_secs(3)).await;
    assert!(seen.starts_with("HTTP/1.1 429 "), "{seen:?}");
    // Another address is served meanwhile, and so are the held connections.
    let mut other = connect_from(addr(&gw), local(3)).await.unwrap();
    other.write_all(ping(APP).as_bytes()).await.unwrap();
    assert!(read_pong(&mut other).await.starts_with("HTTP/1.1 200"));
    held[0].write_all(ping(APP).as_bytes()).await.unwrap();
    assert!(read_pong(&mut held[0]).await.starts_with("HTTP/1.1 200"));
    // A closed connection gives its place back.
    drop(held.pop());
    let served = poll_until_async(Duration::from_secs(3), || async {
        let Ok(mut c) = connect_from(addr(&gw), local(2)).await else {
            return false;
        };
        let _ = c.write_all(ping(APP).as_bytes()).await;
        let (seen, _) = answer(&mut c, Duration::from_millis(500)).await;
        seen.starts_with("HTTP/1.1 200")
    })
    .await;
    assert!(served, "a freed place was not given back");
    // A trusted front proxy carries many clients: it is not capped.
    let mut proxied = Vec::new();
    for _ in 0..8 {
        proxied.push(connect_from(addr(&gw), local(9)).await.unwrap());
    }
    for c in &mut proxied {
        c.write_all(ping(APP).as_bytes()).await.unwrap();
        assert!(read_pong(c).await.starts_with("HTTP/1.1 200"));
    }
    no_error_lines(&gw);
}

async fn poll_until_async<F, Fut>(within: Duration, mut done: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let end = Instant::now() + within;
    while Instant::now() < end {
        if done().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_body_to_our_endpoints_is_cut_at_the_deadline() {
    let gw = Gateway::start_with(setup("body_timeout = \"2s\"")).await;
    let mut conn = connect_from(addr(&gw), local(1)).await.unwrap();
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: {APP}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"uid\"",
        api_path()
    );
    let began = Instant::now();
    conn.write_all(head.as_bytes()).await.unwrap();
    let mut seen = String::new();
    while began.elapsed() < Duration::from_secs(6) && seen.is_empty() {
        let _ = conn.write_all(b" ").await;
        seen = answer(&mut conn, Duration::from_millis(200)).await.0;
    }
    let took = began.elapsed();
    assert!(seen.starts_with("HTTP/1.1 408 "), "{seen:?} after {took:?}");
    assert!(took < Duration::from_millis(3500), "cut after {took:?}");
    no_error_lines(&gw);
}

#[tokio::test(flavor = "multi_thread")]
async fn dropped_connections_are_not_logged_as_errors() {
    let gw = Gateway::start().await;
    let post = |len: usize, sent: &str| {
        format!(
            "POST {} HTTP/1.1\r\nHost: {APP}\r\nContent-Type: application/json\r\nContent-Length: {len}\r\n\r\n{sent}",
            api_path()
        )
    };
    // (what is sent before the client goes, whether it resets instead of closing)
    let cases = [
        (
            "GET /.portcullis/ping HTTP/1.1\r\nHost: app.t".to_string(),
            false,
        ),
        (
            "GET /.portcullis/ping HTTP/1.1\r\nHost: app.t".to_string(),
            true,
        ),
        (post(100, "{\"ui"), false),
        (post(100, "{\"ui"), true),
        (
            format!("GET /public/x HTTP/1.1\r\nHost: {APP}\r\nContent-Length: 50\r\n\r\nabc"),
            false,
        ),
        (String::new(), true),
    ];
    for (sent, reset) in &cases {
        let conn = connect_from(addr(&gw), local(4)).await.unwrap();
        let mut conn = conn;
        conn.write_all(sent.as_bytes()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(150)).await;
        if *reset {
            socket2::SockRef::from(&conn)
                .set_linger(Some(Duration::ZERO))
                .unwrap();
        }
        drop(conn);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    no_error_lines(&gw);
}

/// `VmRSS` of process `pid`, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn memory_comes_back_after_800_half_sent_oversized_heads() {
    let gw = Gateway::start().await;
    let pid = gw.pid().unwrap();
    let target = addr(&gw);
    // Warm up the workers' allocations with ordinary traffic first.
    for _ in 0..50 {
        let mut c = connect_from(target, local(1)).await.unwrap();
        c.write_all(ping(APP).as_bytes()).await.unwrap();
        assert!(read_pong(&mut c).await.starts_with("HTTP/1.1 200"));
    }
    let before = rss_kib(pid);
    let line = format!("X-Pad: {}\r\n", "p".repeat(1000));
    let head: Arc<Vec<u8>> = Arc::new(
        format!(
            "GET / HTTP/1.1\r\nHost: {APP}\r\n{}",
            line.repeat(900 * 1024 / line.len())
        )
        .into_bytes(),
    );
    let peak = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..800u32)
        .map(|i| {
            let head = head.clone();
            tokio::spawn(async move {
                // Spread over addresses, under the per-address cap.
                let Ok(mut c) = connect_from(target, local(10 + (i % 20) as u8)).await else {
                    return;
                };
                for chunk in head.chunks(64 * 1024) {
                    if c.write_all(chunk).await.is_err() {
                        break;
                    }
                }
                // Half-sent: the head never ends; hold the connection a while.
                let _ = answer(&mut c, Duration::from_secs(3)).await;
            })
        })
        .collect();
    let sampler = {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                peak.fetch_max(rss_kib(pid) as usize, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    for t in tasks {
        t.await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    sampler.abort();
    let after = rss_kib(pid);
    let peak = peak.load(Ordering::Relaxed) as u64;
    eprintln!("gateway RSS: before {before} KiB, peak {peak} KiB, after {after} KiB");
    assert!(
        after.saturating_sub(before) < 30 * 1024,
        "RSS grew from {before} KiB to {after} KiB (peak {peak} KiB) after 800 oversized heads"
    );
    assert!(
        peak.saturating_sub(before) < 120 * 1024,
        "RSS peaked at {peak} KiB from {before} KiB: oversized heads were held"
    );
    // Still serving.
    let mut c = connect_from(target, local(1)).await.unwrap();
    c.write_all(ping(APP).as_bytes()).await.unwrap();
    assert!(read_pong(&mut c).await.starts_with("HTTP/1.1 200"));
    no_error_lines(&gw);
}

/// Raises this test process's own open-files limit to its hard limit (for 1,500 client
/// sockets) and returns the hard limit.
fn raise_own_fd_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local struct.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        lim.rlim_cur = lim.rlim_max;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
    }
    lim.rlim_max
}

/// Starts the prepared gateway the way a service manager with the common default would: a soft
/// open-files limit of 1024 (the hard limit stays).
async fn start_with_soft_fd_limit(gw: &Gateway, soft: u64) -> Child {
    use std::os::unix::process::CommandExt;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&gw.log_path)
        .unwrap();
    let mut cmd =
        command_with_listeners(BIN, std::slice::from_ref(&gw.listener), Handover::Systemd);
    cmd.arg("--config")
        .arg(&gw.config_path)
        .arg("serve")
        .env_remove("PORTCULLIS_CONFIG")
        .env_remove("PORTCULLIS_LOG")
        .env_remove("RUST_LOG")
        .current_dir(gw.dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    // SAFETY: only getrlimit/setrlimit (async-signal-safe) between fork and exec, no allocation.
    unsafe {
        cmd.pre_exec(move || {
            let mut lim = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            lim.rlim_cur = soft as libc::rlim_t;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    if let Err(e) = wait_for_ping(&mut child, &gw.listener).await {
        let _ = child.kill();
        panic!("gateway did not start: {e}\n{}", gw.logs());
    }
    child
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The trickling connections of the slowloris test.
const TRICKLERS: usize = 1500;

#[tokio::test(flavor = "multi_thread")]
async fn slowloris_with_1500_connections_leaves_normal_clients_served() {
    let hard = raise_own_fd_limit();
    assert!(
        hard >= 4000,
        "this test needs a hard open-files limit of 4000 or more, not {hard}"
    );
    let gw = Gateway::prepare(Setup::default()).await;
    let child = KillOnDrop(start_with_soft_fd_limit(&gw, 1024).await);
    let pid = child.0.id();
    let target = addr(&gw);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let open = Arc::new(AtomicUsize::new(0));
    let cut = Arc::new(AtomicUsize::new(0));
    // Each trickler sends a byte of an endless head every second; when cut, it comes back.
    let tricklers: Vec<_> = (0..TRICKLERS)
        .map(|i| {
            let (stop, open, cut) = (stop.clone(), open.clone(), cut.clone());
            tokio::spawn(async move {
                // Ramp up over ~3 s, 30 addresses of 50 connections each.
                tokio::time::sleep(Duration::from_millis((i as u64 * 2) % 3000)).await;
                let from = local(100 + (i % 30) as u8);
                while !stop.load(Ordering::Relaxed) {
                    let Ok(mut c) = connect_from(target, from).await else {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    };
                    open.fetch_add(1, Ordering::Relaxed);
                    let _ = c.write_all(b"GET / HTTP/1.1\r\nHost: app.test\r\n").await;
                    while !stop.load(Ordering::Relaxed) {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        if c.write_all(b"X").await.is_err() {
                            break;
                        }
                        let mut b = [0u8; 64];
                        if let Ok(Ok(n)) =
                            tokio::time::timeout(Duration::from_millis(1), c.read(&mut b)).await
                        {
                            if n == 0 || b.starts_with(b"HTTP/1.1 408") {
                                break;
                            }
                        }
                    }
                    open.fetch_sub(1, Ordering::Relaxed);
                    cut.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(4)).await;
    // A normal client, a new connection per request, 10 a second for 15 s.
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(2))
        .resolve(APP, target)
        .build()
        .unwrap();
    let url = format!("http://{APP}:{}/.portcullis/ping", gw.port);
    let (mut served, mut asked, mut most_fds) = (0, 0, 0);
    for _ in 0..150 {
        asked += 1;
        if let Ok(r) = client.get(&url).send().await {
            if r.status() == 200 && r.text().await.is_ok_and(|t| t == "pong") {
                served += 1;
            }
        }
        if let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
            most_fds = most_fds.max(fds.count());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let open_now = open.load(Ordering::Relaxed);
    let cut_total = cut.load(Ordering::Relaxed);
    for t in tricklers {
        t.abort();
    }
    eprintln!("slowloris: served {served}/{asked}, gateway fds at most {most_fds}, tricklers open {open_now}, cut {cut_total}");
    assert!(served * 100 >= asked * 99, "served {served} of {asked}");
    assert!(
        most_fds > 1100,
        "the attack never held more than {most_fds} descriptors"
    );
    assert!(
        cut_total >= TRICKLERS,
        "tricklers were not cut at the deadline: {cut_total}"
    );
    let logs = gw.logs();
    assert!(
        logs.lines()
            .any(|l| l.contains("open-files limit") && l.contains(&format!("soft={hard}"))),
        "the raised limit is not logged:\n{logs}"
    );
    no_error_lines(&gw);
}

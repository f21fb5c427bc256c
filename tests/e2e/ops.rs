//! Operating the gateway: Prometheus metrics on the `[metrics] listen` admin listener only,
//! `/.portcullis/health` and `/.portcullis/ready`, and the graceful shutdown on SIGTERM
//! (in-flight requests finish, new connections are refused, last-seen times are written, the
//! service manager is told).

use crate::harness::*;
use serde_json::json;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// A setup with the metrics listener on a port of its own; the port is returned.
fn with_metrics() -> (Setup, u16) {
    let port = reserved_port();
    let setup = Setup {
        extra_toml: format!("\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n"),
        ..Setup::default()
    };
    (setup, port)
}

/// Starts a gateway with the metrics listener and waits until that listener accepts too: the
/// harness waits for ping on the proxy's listener (handed over, answering at once), while the
/// metrics service binds its own address when its thread starts, a moment later (a scraper
/// retries the same way). Fails after 10 s.
async fn start_with_metrics() -> (Gateway, u16) {
    let (setup, mport) = with_metrics();
    let gw = Gateway::start_with(setup).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(("127.0.0.1", mport))
        .await
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "the metrics listener 127.0.0.1:{mport} never accepted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (gw, mport)
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// `GET http://127.0.0.1:<port><path>`: status, content type and body.
async fn get(port: u16, path: &str) -> (u16, String, String) {
    let r = client()
        .get(format!("http://127.0.0.1:{port}{path}"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {path} on {port}: {e}"));
    let status = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    (status, ct, r.text().await.unwrap_or_default())
}

/// Every sample of a scrape: `name{labels}` as written, and its value.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            Some((key.to_string(), value.parse().ok()?))
        })
        .collect()
}

async fn scrape(port: u16) -> BTreeMap<String, f64> {
    let (status, ct, body) = get(port, "/metrics").await;
    assert_eq!(status, 200, "{body}");
    assert!(ct.starts_with("application/openmetrics-text"), "{ct}");
    samples(&body)
}

/// How much the sample `key` grew between two scrapes (a missing sample counts as 0).
fn grew(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>, key: &str) -> f64 {
    after.get(key).copied().unwrap_or(0.0) - before.get(key).copied().unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_sign_ins_denials_and_forward_auth_calls() {
    let (gw, mport) = start_with_metrics().await;
    let before = scrape(mport).await;
    assert_eq!(
        before.get("portcullis_build_info{version=\"0.1.0\",name=\"portcullis\"}"),
        Some(&1.0),
        "{before:?}"
    );

    // A wrong password in one sign-in; then alice (not an admin) signs in.
    let guesser = gw.browser();
    api_start(&guesser, APP, None).await;
    let url = guesser.url_on(APP, &api_path());
    guesser.post_json(&url, &json!({ "uid": "bob" })).await;
    let wrong = guesser
        .post_json(&url, &json!({ "password": WRONG_PW }))
        .await;
    assert!(wrong.body.contains(INVALID_MSG), "{}", wrong.describe());
    let b = gw.browser();
    let alice = api_sign_in(&b, "alice", ALICE_PW).await;
    // Let in on app.test, denied on admin.test (admins only).
    let allowed = b.get_json(&b.url("/reports")).await;
    assert_eq!(allowed.status, 200, "{}", allowed.describe());
    // (Cookies are host-only: the session goes to admin.test by hand.)
    let denied = b
        .send(
            b.http
                .get(b.url_on(ADMIN_APP, "/"))
                .header("accept", "application/json")
                .header("cookie", format!("{SESSION_COOKIE}={}", alice.token)),
        )
        .await;
    assert_eq!(denied.status, 403, "{}", denied.describe());
    // Forward-auth calls from nginx: one with alice's session for app.test, one without.
    // (alice's browser holds her session cookie for app.test.)
    let ok = b
        .http
        .get(b.url_on(APP, "/.portcullis/auth/nginx"))
        .header("x-original-url", format!("http://{APP}/reports"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let anon = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(gw.url_on("127.0.0.1", "/.portcullis/auth/nginx"))
        .header("x-original-url", format!("http://{APP}/reports"))
        .send()
        .await
        .unwrap();
    assert_eq!(anon.status(), 401);

    let after = scrape(mport).await;
    let moved = [
        (
            "portcullis_authn_total{result=\"failure\",stage=\"password\"}",
            1.0,
        ),
        (
            "portcullis_authn_total{result=\"success\",stage=\"password\"}",
            1.0,
        ),
        (
            "portcullis_authn_total{result=\"success\",stage=\"identification\"}",
            2.0,
        ),
        ("portcullis_sessions_issued_total", 1.0),
        (
            "portcullis_request_duration_seconds_count{app=\"demo\",outcome=\"allowed\"}",
            1.0,
        ),
        (
            "portcullis_request_duration_seconds_count{app=\"admin\",outcome=\"denied\"}",
            1.0,
        ),
        (
            "portcullis_request_duration_seconds_count{app=\"\",outcome=\"gateway\"}",
            6.0,
        ),
        (
            "portcullis_forward_auth_requests_total{server=\"nginx\",result=\"allowed\"}",
            1.0,
        ),
        (
            "portcullis_forward_auth_requests_total{server=\"nginx\",result=\"unauthenticated\"}",
            1.0,
        ),
        ("portcullis_access_decision_seconds_count", 4.0),
    ];
    for (key, at_least) in moved {
        let d = grew(&before, &after, key);
        assert!(
            d >= at_least,
            "{key} grew by {d}, expected at least {at_least}:\n{after:#?}"
        );
    }
    assert_eq!(after.get("portcullis_bans"), Some(&0.0));
    // The exposition is the gateway's: scraping counts nothing as a request.
    assert_eq!(
        grew(
            &before,
            &after,
            "portcullis_request_duration_seconds_count{app=\"demo\",outcome=\"denied\"}"
        ),
        0.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_are_never_served_on_the_public_listener() {
    let (gw, mport) = start_with_metrics().await;
    let (status, _, body) = get(mport, "/metrics").await;
    assert_eq!(status, 200);
    assert!(body.contains("portcullis_build_info"));
    let hits = gw.upstream.hits();
    // On the public port every spelling is an app's path (proxied), the portal's (404) or an
    // unknown host's page: never the exposition.
    let tricks: &[(&str, &str)] = &[
        (APP, "/metrics"),
        (APP, "//metrics"),
        (APP, "/metrics?format=prometheus"),
        (APP, "/.portcullis/metrics"),
        (APP, "/%6Detrics"),
        (ADMIN_APP, "/metrics"),
        (UNKNOWN, "/metrics"),
        ("127.0.0.1", "/metrics"),
        ("localhost", "/metrics"),
    ];
    let raw = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for (host, path) in tricks {
        let r = raw
            .get(format!("http://127.0.0.1:{}{path}", gw.port))
            .header("host", format!("{host}:{}", gw.port))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let body = r.text().await.unwrap_or_default();
        assert!(
            !body.contains("portcullis_build_info") && !body.contains("# TYPE"),
            "{host}{path} answered {status} with the metrics:\n{body}"
        );
    }
    // The app's own /metrics reached the app (bypass-free app.test: sign-in first, so the
    // upstream saw nothing; the unauthenticated answer is a redirect, not metrics).
    assert_eq!(
        gw.upstream.hits(),
        hits,
        "nothing was proxied without a session"
    );
    let (signed_in, _) = alice_browser(&gw).await;
    let r = signed_in.get_json(&signed_in.url("/metrics")).await;
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(
        r.echo().path,
        "/metrics",
        "the app's own /metrics is proxied"
    );
    // The metrics listener serves nothing else.
    for path in [
        "/",
        "/.portcullis/flow/x",
        "/.portcullis/ping",
        "/metrics/x",
    ] {
        assert_eq!(get(mport, path).await.0, 404, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn health_and_readiness_answer_on_both_listeners() {
    let (gw, mport) = start_with_metrics().await;
    for port in [gw.port, mport] {
        for host in ["127.0.0.1", APP, UNKNOWN] {
            let r = client()
                .get(format!("http://127.0.0.1:{port}/.portcullis/health"))
                .header("host", host)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "health on {port} for {host}");
            let v: serde_json::Value = r.json().await.unwrap();
            assert_eq!(v["status"], "live");
        }
        let (status, ct, body) = get(port, "/.portcullis/ready").await;
        assert_eq!(status, 200, "{body}");
        assert!(ct.starts_with("application/json"), "{ct}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["status"], "ready", "{v}");
        assert_eq!(v["store"], "ok", "{v}");
        // Which delivery providers there are is told on the metrics listener only.
        assert_eq!(v.get("providers").is_some(), port == mport, "{v}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_busy_metrics_address_stops_the_start_naming_the_key() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("portcullis.toml");
    let setup = Setup {
        extra_toml: format!("\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n"),
        ..Setup::default()
    };
    let public = reserved_port();
    let upstream = std::net::SocketAddr::from(([127, 0, 0, 1], 9));
    let db = dir.path().join("data").join("portcullis.db");
    std::fs::write(&path, config_toml(public, upstream, 9, &db, &setup)).unwrap();
    let out = tokio::task::spawn_blocking(move || serve_must_refuse(&path))
        .await
        .unwrap();
    assert!(
        out.stderr.contains(&format!(
            "cannot listen on 127.0.0.1:{port} (metrics.listen)"
        )),
        "{}",
        out.stderr
    );
    drop(busy);
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_on_a_public_address_are_refused_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let port = reserved_port();
    let cases = [format!("127.0.0.1:{port}"), format!("0.0.0.0:{port}")];
    for addr in cases {
        let path = dir.path().join("portcullis.toml");
        let setup = Setup {
            extra_toml: format!("\n[metrics]\nlisten = \"{addr}\"\n"),
            ..Setup::default()
        };
        let upstream = std::net::SocketAddr::from(([127, 0, 0, 1], 9));
        let db = dir.path().join("data").join("portcullis.db");
        std::fs::write(&path, config_toml(port, upstream, 9, &db, &setup)).unwrap();
        let out = check_config(&path);
        assert!(!out.ok(), "{addr} accepted: {}", out.stdout);
        assert!(
            out.stderr.contains("metrics.listen") && out.stderr.contains("server.listen[0]"),
            "{addr}: {}",
            out.stderr
        );
    }
}

/// An upstream that answers each request after `delay`, and says when one arrived.
async fn slow_upstream(delay: Duration) -> (std::net::SocketAddr, tokio::sync::mpsc::Receiver<()>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = tx.send(()).await;
                tokio::time::sleep(delay).await;
                let body = "slow and done";
                let _ = stream
                    .write_all(
                        format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                            body.len()
                        )
                        .as_bytes(),
                    )
                    .await;
            });
        }
    });
    (addr, rx)
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_finishes_requests_in_flight_refuses_new_ones_and_writes_last_seen() {
    let (slow, mut arrived) = slow_upstream(Duration::from_millis(2500)).await;
    let mut setup = Setup {
        server_toml: "drain_timeout = \"20s\"".into(),
        extra_toml: format!(
            "\n[[apps]]\nname = \"slow\"\nhosts = [\"{EXTRA_APP}\"]\nupstream = \"{slow}\"\nflow = \"{FLOW}\"\nallowed_groups = []\nbypass = []\n"
        ),
        ..Setup::default()
    };
    let notify_dir = tempfile::tempdir().unwrap();
    let notify_path = notify_dir.path().join("notify.sock");
    let notify = std::os::unix::net::UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    setup.env = vec![("NOTIFY_SOCKET".into(), notify_path.display().to_string())];
    let mut gw = Gateway::prepare(setup).await;
    // The gateway alone holds its listening socket, so that closing it refuses connections.
    let public = std::mem::replace(&mut gw.listener, Listener::bind());
    let mut child = KillOnDrop(
        Serve {
            args: vec!["--config".into(), gw.config_path.clone().into()],
            listeners: std::slice::from_ref(&public),
            dir: gw.dir.path(),
            env: &gw.setup.env,
            log: &gw.log_path,
        }
        .start()
        .await,
    );
    drop(public);
    let child = &mut child.0;
    let mut msg = [0u8; 256];
    let n = notify.recv(&mut msg).expect("READY=1 from the gateway");
    assert_eq!(&msg[..n], b"READY=1");

    // Signed in; a second later (last seen moves in whole seconds) a slow request starts.
    let (b, signed_in) = alice_browser(&gw).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let slow_req = tokio::spawn({
        let req = b
            .http
            .get(b.url_on(EXTRA_APP, "/report"))
            .header("cookie", format!("{SESSION_COOKIE}={}", signed_in.token));
        async move {
            let r = req.send().await.expect("the in-flight request was cut");
            (r.status().as_u16(), r.text().await.unwrap_or_default())
        }
    });
    tokio::time::timeout(Duration::from_secs(10), arrived.recv())
        .await
        .expect("the slow request reached the upstream");

    let stopped_at = Instant::now();
    let term = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(term.success());
    let n = notify.recv(&mut msg).expect("STOPPING=1 from the gateway");
    assert_eq!(&msg[..n], b"STOPPING=1");

    // New connections are refused while the slow request is still being answered.
    let refused = poll_connect_refused(gw.port, Duration::from_secs(2)).await;
    assert!(refused, "a new connection was accepted during the drain");
    assert!(
        !slow_req.is_finished(),
        "the drain did not wait for the slow request"
    );

    let (status, body) = slow_req.await.unwrap();
    assert_eq!((status, body.as_str()), (200, "slow and done"));

    // The process ends soon after the last request, not at the drain timeout.
    let exited = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            stopped_at.elapsed() < Duration::from_secs(10),
            "still running after the drain:\n{}",
            gw.logs()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    assert!(exited.success(), "{exited:?}:\n{}", gw.logs());
    let logs = gw.logs();
    assert!(
        logs.contains("recorded when sessions were last seen sessions=1"),
        "{logs}"
    );

    // The last-seen time the slow request made is on disk.
    use portcullis::store::{SledStore, Store};
    let store = SledStore::open(&gw.db_path).expect("open the database after the stop");
    let sessions = store.user_sessions("alice", 0).unwrap();
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    let s = &sessions[0];
    assert!(
        s.last_seen.is_some_and(|t| t > s.issued),
        "last seen not written at shutdown: {s:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_longer_than_the_drain_timeout_does_not_hold_the_stop() {
    let (slow, mut arrived) = slow_upstream(Duration::from_secs(30)).await;
    let setup = Setup {
        server_toml: "drain_timeout = \"1s\"".into(),
        extra_toml: format!(
            "\n[[apps]]\nname = \"slow\"\nhosts = [\"{EXTRA_APP}\"]\nupstream = \"{slow}\"\nflow = \"{FLOW}\"\nallowed_groups = []\nbypass = [\"^/\"]\n"
        ),
        ..Setup::default()
    };
    let mut gw = Gateway::start_with(setup).await;
    let b = gw.browser();
    let stuck = tokio::spawn(b.http.get(b.url_on(EXTRA_APP, "/stuck")).send());
    tokio::time::timeout(Duration::from_secs(10), arrived.recv())
        .await
        .expect("the request reached the upstream");
    let pid = gw.pid().unwrap();
    let stopped_at = Instant::now();
    std::process::Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(
        poll_until(Duration::from_secs(8), || !gw.is_running()).await,
        "still running 8 s after SIGTERM with drain_timeout = 1s"
    );
    let took = stopped_at.elapsed();
    assert!(
        took >= Duration::from_millis(900),
        "did not wait for the drain: {took:?}"
    );
    assert!(
        stuck.await.unwrap().is_err(),
        "the cut request got an answer"
    );
    assert!(gw.logs().contains("drain timeout reached"), "{}", gw.logs());
}

/// Whether connecting to `port` is refused within `within`.
async fn poll_connect_refused(port: u16, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        match tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return true,
            _ if Instant::now() > deadline => return false,
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// A gateway process this test started itself, killed if the test ends early.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

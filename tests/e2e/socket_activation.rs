//! Socket activation: `serve` takes the listening sockets it is handed (`LISTEN_PID`,
//! `LISTEN_FDS`, fds 3, 4, ...; a systemd `.socket` unit) for the configured addresses they are
//! bound to, and refuses to start with a socket no listener of the config names.
//!
//! Every gateway of the end-to-end tests runs this way (the harness binds 127.0.0.1:0 and hands
//! it over); these tests pin down what the feature itself promises.

use crate::harness::*;
use std::fs;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// Runs `portcullis serve` for `gw`'s config with `listeners` as fds 3.. and `announce` as the
/// shell words that set the variables; waits (up to 10 s) for it to exit and returns its exit
/// code and stderr. Panics when it keeps running.
async fn serve_must_exit(gw: &Gateway, listeners: &[Listener], announce: &str) -> (i32, String) {
    let err = gw.dir.path().join("refused.stderr");
    let mut child = command_with_listeners("/bin/sh", listeners, Handover::Unannounced)
        .arg("-c")
        .arg(format!("{announce} exec \"$0\" \"$@\""))
        .arg(BIN)
        .arg("--config")
        .arg(&gw.config_path)
        .arg("serve")
        .env_remove("PORTCULLIS_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "`serve` kept running:\n{}",
                fs::read_to_string(&err).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    (
        status.code().unwrap_or(-1),
        fs::read_to_string(&err).unwrap_or_default(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_listens_on_an_inherited_socket_bound_to_port_0() {
    // The harness bound 127.0.0.1:0 in this process and keeps it listening; the config names the
    // port the kernel chose. A gateway that bound the address itself would have failed with
    // "in use", so an answer means it serves on the inherited socket.
    let gw = Gateway::start().await;
    let b = gw.browser();
    let r = b.get_json("/public/inherited").await;
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(r.echo().path, "/public/inherited");
    assert!(
        gw.logs().contains("inherited=1"),
        "the start line counts the inherited socket:\n{}",
        gw.logs()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_gateway_killed_and_started_again_serves_on_the_same_port() {
    let mut gw = Gateway::start().await;
    let (b, _) = alice_browser(&gw).await;
    let port = gw.port;
    gw.kill();
    gw.start_again().await;
    assert_eq!(gw.port, port);
    let echo = b.get_json("/after-kill").await.echo();
    assert_eq!(echo.header("remote-user"), Some("alice"));
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_refuses_an_inherited_socket_no_listener_names() {
    let gw = Gateway::prepare(Setup {
        users: vec![],
        ..Setup::default()
    })
    .await;
    let stray = Listener::bind();
    let (code, stderr) = serve_must_exit(
        &gw,
        &[gw.listener.clone(), stray.clone()],
        "LISTEN_PID=$$ LISTEN_FDS=2",
    )
    .await;
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains(&stray.addr().to_string()) && stderr.contains("fd 4"),
        "the error names the stray socket: {stderr}"
    );
    assert!(
        stderr.contains("matches no `server.listen` or `server.tls_listen` address"),
        "{stderr}"
    );
    // Refused before anything was opened: no database.
    assert!(!gw.db_path.exists(), "the database was created");
}

#[tokio::test(flavor = "multi_thread")]
async fn sockets_announced_for_another_process_are_not_taken() {
    // LISTEN_PID names someone else (pid 1): the descriptors are not ours to use, so serve binds
    // the configured address itself, which the test's socket holds.
    let gw = Gateway::prepare(Setup::default()).await;
    let (code, stderr) = serve_must_exit(
        &gw,
        std::slice::from_ref(&gw.listener),
        "LISTEN_PID=1 LISTEN_FDS=1",
    )
    .await;
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains(&format!("127.0.0.1:{}", gw.port)) && stderr.contains("in use"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_inherited_address_listed_twice_is_refused() {
    // Two entries for one handed-over socket would give Pingora one descriptor twice.
    let gw = Gateway::prepare(Setup {
        users: vec![],
        ..Setup::default()
    })
    .await;
    let addr = format!("\"127.0.0.1:{}\"", gw.port);
    let config = fs::read_to_string(&gw.config_path).unwrap().replacen(
        &format!("listen = [{addr}]"),
        &format!("listen = [{addr}, {addr}]"),
        1,
    );
    fs::write(&gw.config_path, config).unwrap();
    let (code, stderr) = serve_must_exit(
        &gw,
        std::slice::from_ref(&gw.listener),
        "LISTEN_PID=$$ LISTEN_FDS=1",
    )
    .await;
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("server.listen[1]") && stderr.contains("in use"),
        "{stderr}"
    );
}

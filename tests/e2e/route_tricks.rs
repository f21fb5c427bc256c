//! Request-target tricks through the real binary: an absolute-form target naming another app
//! than the `Host` header must not reach that app past its access rule.

use crate::harness::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Sends `head` (without the final blank line) on a fresh connection; the raw answer.
async fn raw(port: u16, head: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    s.write_all(format!("{head}\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_absolute_target_naming_another_app_than_the_host_never_reaches_it() {
    let gw = Gateway::start().await;
    let (_, alice) = alice_browser(&gw).await;
    let port = gw.port;
    let cookie = format!("Cookie: {SESSION_COOKIE}={}", alice.token);
    let cases = [
        format!("GET http://{ADMIN_APP}:{port}/secret HTTP/1.1\r\nHost: {APP}:{port}\r\n{cookie}"),
        format!("GET http://{ADMIN_APP}/secret HTTP/1.1\r\nHost: {APP}:{port}\r\n{cookie}"),
        format!("GET http://{APP}:{port}/secret HTTP/1.1\r\nHost: {ADMIN_APP}:{port}\r\n{cookie}"),
    ];
    for head in &cases {
        let answer = raw(port, head).await;
        let status = answer.lines().next().unwrap_or_default();
        assert!(
            status.starts_with("HTTP/1.1 4"),
            "{head:?} was answered {status:?}"
        );
        assert!(!answer.contains("/secret"), "{head:?} echoed: {answer}");
    }
    assert!(
        gw.upstream
            .seen()
            .iter()
            .all(|e| !e.path.contains("secret")),
        "an upstream saw a forged target: {:?}",
        gw.upstream.seen()
    );
}

//! The small fast upstream every proxy row forwards to: one thread, keep-alive HTTP/1.1, a fixed
//! 2-byte answer, so the proxies' own cost dominates. `GET /__stats` reports how many
//! connections and requests it has seen, which gives new upstream connections per request.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok";

#[derive(Default)]
struct Counters {
    connections: AtomicU64,
    requests: AtomicU64,
}

/// Serves until the process is killed.
pub(crate) fn run(listen: SocketAddr) -> std::io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = TcpListener::bind(listen).await?;
        let counters = Arc::new(Counters::default());
        loop {
            let (stream, _) = listener.accept().await?;
            counters.connections.fetch_add(1, Ordering::Relaxed);
            let c = counters.clone();
            tokio::spawn(async move {
                let _ = serve(stream, c).await;
            });
        }
    })
}

/// Answers every request on the connection; request bodies (Content-Length) are skipped.
async fn serve(mut s: TcpStream, c: Arc<Counters>) -> std::io::Result<()> {
    s.set_nodelay(true)?;
    let mut buf = Vec::with_capacity(8192);
    let mut chunk = [0u8; 8192];
    loop {
        while let Some(end) = find(&buf, b"\r\n\r\n") {
            let head = &buf[..end + 4];
            let body = content_length(head);
            if buf.len() < end + 4 + body {
                break;
            }
            let stats = head.starts_with(b"GET /__stats ");
            let close = head
                .to_ascii_lowercase()
                .windows(17)
                .any(|w| w == b"connection: close");
            buf.drain(..end + 4 + body);
            let n = c.requests.fetch_add(1, Ordering::Relaxed) + 1;
            if stats {
                let json = format!(
                    "{{\"connections\":{},\"requests\":{}}}",
                    c.connections.load(Ordering::Relaxed),
                    n - 1
                );
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{json}",
                    json.len()
                );
                s.write_all(resp.as_bytes()).await?;
            } else {
                s.write_all(OK).await?;
            }
            if close {
                return Ok(());
            }
        }
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn content_length(head: &[u8]) -> usize {
    let text = String::from_utf8_lossy(head);
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0)
}

//! WebSocket upgrades and streamed responses through the gateway as a reverse proxy: a signed-in
//! user's upgrade reaches a real WebSocket echo server and frames flow both ways; without a
//! session the upgrade is refused; a slow chunked response reaches the client as it is written.

use crate::support::{
    api_sign_in, assert_auth_redirect, Client, Gateway, ALICE_PW, SESSION_COOKIE, WIKI,
};
use base64::Engine;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

const IO_TIMEOUT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// WebSocket plumbing (RFC 6455), enough for an echo server and a client
// ---------------------------------------------------------------------------------------------

/// SHA-1, only for `Sec-WebSocket-Accept` (no sha1 crate in the tree).
fn sha1(data: &[u8]) -> [u8; 20] {
    let mut h: [u32; 5] = [
        0x6745_2301,
        0xEFCD_AB89,
        0x98BA_DCFE,
        0x1032_5476,
        0xC3D2_E1F0,
    ];
    let mut msg = data.to_vec();
    let bit_len = (data.len() as u64).wrapping_mul(8);
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bit_len.to_be_bytes());
    for block in msg.chunks(64) {
        let mut w = [0u32; 80];
        for (i, word) in block.chunks(4).enumerate() {
            w[i] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (i, wi) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5A82_7999),
                20..=39 => (b ^ c ^ d, 0x6ED9_EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1B_BCDC),
                _ => (b ^ c ^ d, 0xCA62_C1D6),
            };
            let t = a
                .rotate_left(5)
                .wrapping_add(f)
                .wrapping_add(e)
                .wrapping_add(k)
                .wrapping_add(*wi);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = t;
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d, e]) {
            *x = x.wrapping_add(y);
        }
    }
    let mut out = [0u8; 20];
    for (i, x) in h.iter().enumerate() {
        out[i * 4..i * 4 + 4].copy_from_slice(&x.to_be_bytes());
    }
    out
}

/// The `Sec-WebSocket-Accept` for a key.
fn ws_accept(key: &str) -> String {
    let mut input = key.as_bytes().to_vec();
    input.extend_from_slice(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    base64::engine::general_purpose::STANDARD.encode(sha1(&input))
}

/// A frame: opcode and unmasked payload.
#[derive(Debug, PartialEq)]
struct Frame {
    opcode: u8,
    payload: Vec<u8>,
}

const TEXT: u8 = 0x1;
const BINARY: u8 = 0x2;
const CLOSE: u8 = 0x8;

/// Encodes a final frame; clients must mask, servers must not.
fn encode_frame(opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = vec![0x80 | opcode];
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(mask_bit | n as u8),
        n if n <= 0xFFFF => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    match mask {
        Some(m) => {
            out.extend_from_slice(&m);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ m[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

/// Reads one frame; `Ok(None)` at a clean end of stream. Returns whether it was masked too.
async fn read_frame<R: AsyncReadExt + Unpin>(r: &mut R) -> std::io::Result<Option<(Frame, bool)>> {
    let mut head = [0u8; 2];
    match r.read_exact(&mut head).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let opcode = head[0] & 0x0F;
    let masked = head[1] & 0x80 != 0;
    let len = match head[1] & 0x7F {
        126 => {
            let mut b = [0u8; 2];
            r.read_exact(&mut b).await?;
            u64::from(u16::from_be_bytes(b))
        }
        127 => {
            let mut b = [0u8; 8];
            r.read_exact(&mut b).await?;
            u64::from_be_bytes(b)
        }
        n => u64::from(n),
    };
    let mut mask = [0u8; 4];
    if masked {
        r.read_exact(&mut mask).await?;
    }
    let mut payload = vec![0u8; usize::try_from(len).expect("frame length")];
    r.read_exact(&mut payload).await?;
    if masked {
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= mask[i % 4];
        }
    }
    Ok(Some((Frame { opcode, payload }, masked)))
}

/// Reads an HTTP head (request or response) up to the blank line, without reading past it.
async fn read_head<R: AsyncBufReadExt + Unpin>(
    r: &mut R,
) -> std::io::Result<(String, BTreeMap<String, String>)> {
    let mut first = String::new();
    r.read_line(&mut first).await?;
    let mut headers = BTreeMap::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).await? == 0 {
            break;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    Ok((first.trim_end().to_string(), headers))
}

/// A WebSocket echo server: completes the handshake for well-formed upgrades, echoes text and
/// binary frames, answers close. Records the request heads it saw.
struct WsEcho {
    addr: std::net::SocketAddr,
    seen: Arc<Mutex<Vec<BTreeMap<String, String>>>>,
    /// Frames from the client that were not masked (RFC 6455 requires masking; the proxy must
    /// pass frames through untouched).
    unmasked: Arc<AtomicUsize>,
    /// Frames the server received.
    frames: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl WsEcho {
    async fn start() -> WsEcho {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let unmasked = Arc::new(AtomicUsize::new(0));
        let frames = Arc::new(AtomicUsize::new(0));
        let (s, u, f) = (seen.clone(), unmasked.clone(), frames.clone());
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (s, u, f) = (s.clone(), u.clone(), f.clone());
                tokio::spawn(async move {
                    let _ = serve_ws(stream, s, u, f).await;
                });
            }
        });
        WsEcho {
            addr,
            seen,
            unmasked,
            frames,
            task,
        }
    }

    fn seen(&self) -> Vec<BTreeMap<String, String>> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for WsEcho {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve_ws(
    stream: TcpStream,
    seen: Arc<Mutex<Vec<BTreeMap<String, String>>>>,
    unmasked: Arc<AtomicUsize>,
    frames: Arc<AtomicUsize>,
) -> std::io::Result<()> {
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    let (_line, headers) = read_head(&mut r).await?;
    seen.lock().unwrap().push(headers.clone());
    let is_upgrade = headers
        .get("upgrade")
        .is_some_and(|u| u.eq_ignore_ascii_case("websocket"))
        && headers
            .get("connection")
            .is_some_and(|c| c.to_ascii_lowercase().contains("upgrade"));
    let key = headers.get("sec-websocket-key").filter(|_| is_upgrade);
    let Some(key) = key else {
        let body = "not a websocket upgrade\n";
        w.write_all(
            format!(
                "HTTP/1.1 400 Bad Request\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        )
        .await?;
        return Ok(());
    };
    let user = headers.get("remote-user").cloned().unwrap_or_default();
    // Known limitation of pingora 0.9.1 (cloudflare/pingora#946, fixes pending upstream): when
    // the upstream's 101 is read before the proxy has handled the upgrade request's own empty
    // body end, the tunnel is torn down right after the 101. A server across a real network
    // answers after that point; one on loopback often answers before it. Answering a little
    // later, as such a server would, keeps this test about what the gateway controls (the
    // session check, identity headers, frames both ways) rather than about that race.
    tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    w.write_all(
        format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {}\r\nX-Ws-Saw-User: {user}\r\n\r\n",
            ws_accept(key)
        )
        .as_bytes(),
    )
    .await?;
    w.flush().await?;
    while let Some((frame, masked)) = read_frame(&mut r).await? {
        frames.fetch_add(1, Ordering::SeqCst);
        if !masked {
            unmasked.fetch_add(1, Ordering::SeqCst);
        }
        match frame.opcode {
            TEXT | BINARY => {
                w.write_all(&encode_frame(frame.opcode, &frame.payload, None))
                    .await?
            }
            CLOSE => {
                w.write_all(&encode_frame(CLOSE, &frame.payload, None))
                    .await?;
                return Ok(());
            }
            _ => {}
        }
    }
    Ok(())
}

/// Sends a WebSocket upgrade for `path` on `host` to the gateway; returns the status line, the
/// response headers and the reader/writer for frames.
async fn upgrade(
    gw: &Gateway,
    path: &str,
    cookie: Option<&str>,
) -> (
    String,
    BTreeMap<String, String>,
    BufReader<tokio::net::tcp::OwnedReadHalf>,
    tokio::net::tcp::OwnedWriteHalf,
) {
    let stream = TcpStream::connect(gw.addr())
        .await
        .expect("connect gateway");
    let (r, mut w) = stream.into_split();
    let cookie = cookie
        .map(|c| format!("Cookie: {SESSION_COOKIE}={c}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {WIKI}:{}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {WS_KEY}\r\nSec-WebSocket-Version: 13\r\n\
         Origin: http://{WIKI}:{}\r\n{cookie}\r\n",
        gw.port, gw.port
    );
    w.write_all(req.as_bytes()).await.unwrap();
    let mut r = BufReader::new(r);
    let (line, headers) = tokio::time::timeout(IO_TIMEOUT, read_head(&mut r))
        .await
        .expect("no answer to the upgrade in time")
        .expect("read upgrade answer");
    (line, headers, r, w)
}

/// RFC 6455's sample key; its accept value is given in the RFC.
const WS_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const WS_KEY_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

fn status_of(line: &str) -> u16 {
    line.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not a status line: {line:?}"))
}

/// Signs alice in through the auth host; returns her session cookie value.
async fn alice_cookie(gw: &Gateway) -> String {
    let c = Client::new(gw.addr());
    let page = c.url(WIKI, "/");
    let r = c.page(&page).await;
    let login = assert_auth_redirect(&r, &page);
    let (_, done) = api_sign_in(&c, &login, "alice", ALICE_PW).await;
    done.set_cookie_value(SESSION_COOKIE)
        .unwrap_or_else(|| panic!("no session cookie: {}", done.describe()))
}

// ---------------------------------------------------------------------------------------------
// WebSocket
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn websocket_upgrade_of_a_signed_in_user_passes_through_and_frames_flow_both_ways() {
    assert_eq!(
        ws_accept(WS_KEY),
        WS_KEY_ACCEPT,
        "the test's SHA-1 is broken"
    );
    let ws = WsEcho::start().await;
    let gw = Gateway::for_upstream(ws.addr.to_string()).await;
    let cookie = alice_cookie(&gw).await;

    let (line, headers, mut r, mut w) = upgrade(&gw, "/socket/chat", Some(&cookie)).await;
    assert_eq!(
        status_of(&line),
        101,
        "upgrade refused: {line} {headers:?}\n{}",
        gw.logs()
    );
    assert_eq!(
        headers.get("upgrade").map(|u| u.to_ascii_lowercase()),
        Some("websocket".into()),
        "{headers:?}"
    );
    assert_eq!(
        headers.get("sec-websocket-accept").map(String::as_str),
        Some(WS_KEY_ACCEPT),
        "the handshake answer was altered: {headers:?}"
    );
    assert_eq!(
        headers.get("x-ws-saw-user").map(String::as_str),
        Some("alice"),
        "the WebSocket server did not get the identity: {headers:?}"
    );
    let seen = ws.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(
        !seen[0]
            .get("cookie")
            .is_some_and(|c| c.contains(SESSION_COOKIE)),
        "the session cookie leaked to the WebSocket server: {:?}",
        seen[0]
    );

    // A text frame and a longer binary one (16-bit length), echoed back over the tunnel.
    let text = b"hello through portcullis";
    w.write_all(&encode_frame(TEXT, text, Some([1, 2, 3, 4])))
        .await
        .unwrap();
    let (frame, masked) = tokio::time::timeout(IO_TIMEOUT, read_frame(&mut r))
        .await
        .expect("no echo within the timeout")
        .unwrap()
        .unwrap_or_else(|| {
            // Seen intermittently with pingora 0.9.1: when the upstream's 101 is read before
            // the upgrade request's own empty body end, that end tears the tunnel down
            // (cloudflare/pingora#946).
            panic!(
                "the tunnel closed right after the 101, before the first frame came back \
                 (frames that reached the WebSocket server: {})\n{}",
                ws.frames.load(Ordering::SeqCst),
                gw.logs()
            )
        });
    assert_eq!(
        frame,
        Frame {
            opcode: TEXT,
            payload: text.to_vec()
        }
    );
    assert!(!masked, "server frames arrive unmasked");
    let binary: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
    w.write_all(&encode_frame(BINARY, &binary, Some([9, 8, 7, 6])))
        .await
        .unwrap();
    let (frame, _) = tokio::time::timeout(IO_TIMEOUT, read_frame(&mut r))
        .await
        .expect("no binary echo within the timeout")
        .unwrap()
        .expect("tunnel closed before the binary echo");
    assert_eq!(frame.opcode, BINARY);
    assert_eq!(frame.payload, binary);
    assert_eq!(
        ws.unmasked.load(Ordering::SeqCst),
        0,
        "the proxy rewrote client frames"
    );

    // Closing handshake.
    w.write_all(&encode_frame(
        CLOSE,
        &1000u16.to_be_bytes(),
        Some([5, 5, 5, 5]),
    ))
    .await
    .unwrap();
    let (frame, _) = tokio::time::timeout(IO_TIMEOUT, read_frame(&mut r))
        .await
        .expect("no close answer")
        .unwrap()
        .expect("tunnel closed without a close frame");
    assert_eq!(frame.opcode, CLOSE);
}

#[tokio::test]
async fn websocket_upgrade_without_a_session_is_refused_before_the_upstream() {
    let ws = WsEcho::start().await;
    let gw = Gateway::for_upstream(ws.addr.to_string()).await;

    let (line, headers, _r, _w) = upgrade(&gw, "/socket/chat", None).await;
    assert_eq!(status_of(&line), 401, "{line} {headers:?}");
    assert!(
        !headers.contains_key("sec-websocket-accept"),
        "a handshake answer came back: {headers:?}"
    );

    // A forged session cookie fares no better.
    let (line, _, _r, _w) = upgrade(&gw, "/socket/chat", Some("forged.session.value")).await;
    assert_eq!(status_of(&line), 401, "{line}");
    assert!(
        ws.seen().is_empty(),
        "the upstream saw an unauthenticated upgrade: {:?}",
        ws.seen()
    );
}

// ---------------------------------------------------------------------------------------------
// Streamed responses
// ---------------------------------------------------------------------------------------------

/// An upstream that answers with a chunked body: the first chunk at once, the rest only after
/// `release` is notified (or 20 s pass), so a proxy that buffers cannot deliver the first chunk.
struct SlowUpstream {
    addr: std::net::SocketAddr,
    release: Arc<Notify>,
    finished: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

const FIRST: &str = "first part, sent at once\n";
const SECOND: &str = "second part, sent on release\n";

impl SlowUpstream {
    async fn start() -> SlowUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let release = Arc::new(Notify::new());
        let finished = Arc::new(AtomicBool::new(false));
        let (rel, fin) = (release.clone(), finished.clone());
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (rel, fin) = (rel.clone(), fin.clone());
                tokio::spawn(async move {
                    let _ = serve_slow(stream, rel, fin).await;
                });
            }
        });
        SlowUpstream {
            addr,
            release,
            finished,
            task,
        }
    }
}

impl Drop for SlowUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve_slow(
    stream: TcpStream,
    release: Arc<Notify>,
    finished: Arc<AtomicBool>,
) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    let (_line, _headers) = read_head(&mut r).await?;
    let chunk = |s: &str| format!("{:x}\r\n{s}\r\n", s.len());
    w.write_all(
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\
             Cache-Control: no-store\r\nConnection: close\r\n\r\n{}",
            chunk(FIRST)
        )
        .as_bytes(),
    )
    .await?;
    w.flush().await?;
    let _ = tokio::time::timeout(Duration::from_secs(20), release.notified()).await;
    w.write_all(format!("{}0\r\n\r\n", chunk(SECOND)).as_bytes())
        .await?;
    w.flush().await?;
    finished.store(true, Ordering::SeqCst);
    Ok(())
}

#[tokio::test]
async fn streamed_response_reaches_the_client_before_the_upstream_finishes() {
    let up = SlowUpstream::start().await;
    let gw = Gateway::for_upstream(up.addr.to_string()).await;
    let cookie = alice_cookie(&gw).await;

    let c = reqwest::Client::builder()
        .no_proxy()
        .resolve(WIKI, gw.addr())
        .build()
        .unwrap();
    let mut resp = tokio::time::timeout(
        IO_TIMEOUT,
        c.get(format!("http://{WIKI}:{}/events", gw.port))
            .header("cookie", format!("{SESSION_COOKIE}={cookie}"))
            .send(),
    )
    .await
    .expect("response head held back until the upstream finished")
    .expect("GET /events");
    assert_eq!(resp.status(), 200);

    // Read until the first part is in; the upstream is still holding the rest.
    let mut got = Vec::new();
    while !String::from_utf8_lossy(&got).contains(FIRST) {
        let chunk = tokio::time::timeout(IO_TIMEOUT, resp.chunk())
            .await
            .expect("the first chunk was held back: the proxy buffers the stream")
            .expect("read body")
            .expect("body ended before the first chunk");
        got.extend_from_slice(&chunk);
    }
    assert!(
        !up.finished.load(Ordering::SeqCst),
        "the upstream finished before the client had the first chunk"
    );
    assert_eq!(
        String::from_utf8_lossy(&got),
        FIRST,
        "more than the first part arrived early"
    );

    up.release.notify_one();
    while let Some(chunk) = tokio::time::timeout(IO_TIMEOUT, resp.chunk())
        .await
        .expect("the rest of the stream did not arrive")
        .expect("read body")
    {
        got.extend_from_slice(&chunk);
    }
    assert_eq!(String::from_utf8_lossy(&got), format!("{FIRST}{SECOND}"));
    assert!(up.finished.load(Ordering::SeqCst));
}

//! The connection intake in front of the proxy: each HTTP/1 request head is read here, under a
//! total deadline and a size cap, before Pingora parses it; connections are counted per client
//! address.
//!
//! Pingora alone restarts its read timeout at every byte and takes heads up to 1 MiB, so a
//! client trickling a byte every few seconds holds a connection (and a file descriptor) as long
//! as it likes, and half-sent megabyte heads hold their buffers. Here a head must be complete
//! within `[server] header_timeout` (`408` otherwise) and `max_header_bytes` (`431`), and one
//! address holds at most `max_connections_per_address` connections at once (`429` above). The
//! head read here is handed to Pingora as the session's already-read bytes (its pipelined
//! prefix): read once, parsed once, in the buffer Pingora would have allocated anyway. Kept-alive
//! follow-up requests go through the same reader. HTTP/2 connections (TLS with ALPN `h2`) are
//! counted and then handed over as they are: their headers are framed and bounded by HTTP/2.

use crate::config::ClientLimits;
use bytes::{BufMut, BytesMut};
use parking_lot::Mutex;
use pingora::apps::{HttpPersistentSettings, HttpServerApp, ServerApp};
use pingora::protocols::http::ServerSession;
use pingora::protocols::{Stream, ALPN};
use pingora::server::ShutdownWatch;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

/// How long a kept-alive connection may wait for its next request (Pingora's own default).
const KEEPALIVE_IDLE: Duration = Duration::from_secs(60);
/// A head's first allocation: the size Pingora's own reader starts with.
const HEAD_BUF: usize = 4096;
/// After a refusal, how long (and how much of) what the client still sends is read and dropped,
/// so the answer reaches it instead of being lost to a connection reset.
const LINGER: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 1 << 20;

/// Pingora's HTTP app (the proxy) behind the intake.
pub struct Intake<A> {
    inner: Arc<A>,
    limits: ClientLimits,
    /// Front proxies (`trusted_proxies`): many clients arrive through each, so they are not
    /// capped.
    exempt: Vec<ipnet::IpNet>,
    /// Open connections per client address (IPv6 per /64), only addresses with at least one.
    open: Mutex<HashMap<IpAddr, u32>>,
    answers: Answers,
}

/// The intake's own answers, written before Pingora has a session.
struct Answers {
    timeout: Vec<u8>,
    too_large: Vec<u8>,
    too_many: Vec<u8>,
}

impl Answers {
    fn new() -> Answers {
        let answer = |status: &str, body: &str| {
            format!(
                "HTTP/1.1 {status}\r\ncontent-type: text/plain; charset=utf-8\r\n\
                 content-length: {}\r\ncache-control: no-store\r\n\
                 x-content-type-options: nosniff\r\nconnection: close\r\n\r\n{body}",
                body.len()
            )
            .into_bytes()
        };
        Answers {
            timeout: answer("408 Request Timeout", "request not received in time\n"),
            too_large: answer(
                "431 Request Header Fields Too Large",
                "request header fields too large\n",
            ),
            too_many: answer(
                "429 Too Many Requests",
                "too many connections from your address\n",
            ),
        }
    }
}

/// Why reading a head ended without one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NoHead {
    /// The client closed or reset, a kept-alive connection stayed idle, or the server stops:
    /// closed without an answer.
    Gone,
    /// Not complete within `header_timeout`.
    TimedOut,
    /// Over `max_header_bytes`.
    TooLarge,
}

/// Whether a connection may go on, and the count it holds while it does.
enum Admission<'a> {
    Uncounted,
    Counted(#[allow(dead_code)] Slot<'a>),
    Refused,
}

/// One open connection counted against its address; given back when dropped.
struct Slot<'a> {
    open: &'a Mutex<HashMap<IpAddr, u32>>,
    key: IpAddr,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut open = self.open.lock();
        if let Some(n) = open.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.key);
            }
        }
    }
}

impl<A> Intake<A> {
    /// The intake in front of `inner`, with `limits`; connections from `trusted_proxies` are
    /// not capped.
    pub fn new(inner: A, limits: ClientLimits, trusted_proxies: Vec<ipnet::IpNet>) -> Self {
        Intake {
            inner: Arc::new(inner),
            limits,
            exempt: trusted_proxies,
            open: Mutex::new(HashMap::new()),
            answers: Answers::new(),
        }
    }

    /// Counts a new connection from `peer` against its address's cap.
    fn admit(&self, peer: Option<IpAddr>) -> Admission<'_> {
        let cap = self.limits.max_connections_per_address;
        let Some(ip) = peer.filter(|_| cap > 0) else {
            return Admission::Uncounted;
        };
        if self.exempt.iter().any(|net| net.contains(&ip)) {
            return Admission::Uncounted;
        }
        let key = address_key(ip);
        let mut open = self.open.lock();
        let n = open.entry(key).or_insert(0);
        if *n >= cap {
            return Admission::Refused;
        }
        *n += 1;
        Admission::Counted(Slot {
            open: &self.open,
            key,
        })
    }
}

/// The key a client address is counted under: IPv4 as it is, IPv6 by its /64 (what one
/// subscriber is usually given), an IPv4-mapped IPv6 address as the IPv4 one.
fn address_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(bits.into())
        }
        v4 => v4,
    }
}

fn peer_ip(stream: &Stream) -> Option<IpAddr> {
    let digest = stream.get_socket_digest()?;
    let addr = digest.peer_addr()?;
    addr.as_inet().map(|a| a.ip())
}

#[async_trait::async_trait]
impl<A> ServerApp for Intake<A>
where
    A: HttpServerApp + Send + Sync + 'static,
{
    async fn process_new(
        self: &Arc<Self>,
        mut stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let peer = peer_ip(&stream);
        let http1 = matches!(stream.selected_alpn_proto(), None | Some(ALPN::H1));
        let _slot = match self.admit(peer) {
            Admission::Refused => {
                tracing::debug!(
                    client = ?peer,
                    limit = self.limits.max_connections_per_address,
                    "connection refused: too many open from this address"
                );
                if http1 {
                    let mut buf = BytesMut::new();
                    refuse(&mut stream, &self.answers.too_many, &mut buf).await;
                }
                return None;
            }
            admitted => admitted,
        };
        if !http1 {
            return ServerApp::process_new(&self.inner, stream, shutdown).await;
        }
        self.serve_http1(stream, peer, shutdown).await;
        None
    }

    async fn cleanup(&self) {
        self.inner.http_cleanup().await;
    }
}

impl<A> Intake<A>
where
    A: HttpServerApp + Send + Sync + 'static,
{
    /// Serves one HTTP/1 connection: each request's head is read here, then the request is
    /// handed to the proxy with it; on until the connection is not kept alive.
    async fn serve_http1(
        &self,
        mut stream: Stream,
        peer: Option<IpAddr>,
        shutdown: &ShutdownWatch,
    ) {
        // `None` before the first request; then what the last one left for the next.
        let mut carried: Option<Option<HttpPersistentSettings>> = None;
        loop {
            let mut head = BytesMut::with_capacity(HEAD_BUF);
            let kept_alive = carried.is_some();
            if let Err(why) = self
                .read_head(&mut stream, &mut head, kept_alive, shutdown)
                .await
            {
                let answer = match why {
                    NoHead::Gone => {
                        tracing::debug!(client = ?peer, "connection closed before a request");
                        return;
                    }
                    NoHead::TimedOut => {
                        tracing::debug!(client = ?peer, limit = ?self.limits.header_timeout, "request head not complete in time; answered 408");
                        &self.answers.timeout
                    }
                    NoHead::TooLarge => {
                        tracing::debug!(client = ?peer, limit = self.limits.max_header_bytes, "request head too large; answered 431");
                        &self.answers.too_large
                    }
                };
                refuse(&mut stream, answer, &mut head).await;
                if why == NoHead::TooLarge {
                    drop((head, stream));
                    crate::memory::release_soon();
                }
                return;
            }
            let mut session = ServerSession::new_http1(stream);
            match carried.take() {
                // As Pingora sets up a connection's first session.
                None => {
                    session
                        .set_keepalive((!*shutdown.borrow()).then_some(KEEPALIVE_IDLE.as_secs()));
                    session.set_keepalive_reuses_remaining(
                        self.inner
                            .server_options()
                            .and_then(|o| o.keepalive_request_limit),
                    );
                }
                Some(Some(settings)) => settings.apply_to_session(&mut session),
                Some(None) => {}
            }
            session.set_pipelined_prefix(head);
            let Some(reused) = self.inner.process_new_http(session, shutdown).await else {
                return;
            };
            let (next, settings) = reused.consume();
            stream = next;
            carried = Some(settings);
        }
    }

    /// Reads one request head into `buf` (with whatever of the body came with it). A kept-alive
    /// connection first waits up to [`KEEPALIVE_IDLE`] for the next request to begin; the head's
    /// deadline runs from the connection's start or that first byte.
    async fn read_head(
        &self,
        stream: &mut Stream,
        buf: &mut BytesMut,
        kept_alive: bool,
        shutdown: &ShutdownWatch,
    ) -> Result<(), NoHead> {
        let max = self.limits.max_header_bytes;
        let mut deadline = (!kept_alive).then(|| Instant::now() + self.limits.header_timeout);
        let mut scan = HeadScan::default();
        let mut stop = shutdown.clone();
        if kept_alive && *stop.borrow() {
            return Err(NoHead::Gone);
        }
        loop {
            // Never more than one byte past the cap: an oversized head is never held whole, and
            // the buffer grows to at most that (not to the next power of two).
            let room = max + 1 - buf.len();
            if buf.len() == buf.capacity() {
                let grown = if buf.capacity() * 2 >= max {
                    max + 1
                } else {
                    (buf.capacity() * 2).max(HEAD_BUF)
                };
                let mut bigger = BytesMut::with_capacity(grown);
                bigger.extend_from_slice(buf);
                *buf = bigger;
            }
            let mut limited = (&mut *buf).limit(room);
            let read = stream.read_buf(&mut limited);
            let wait = deadline.unwrap_or_else(|| Instant::now() + KEEPALIVE_IDLE);
            let read = tokio::select! {
                biased;
                r = tokio::time::timeout_at(wait, read) => r,
                _ = stop.changed(), if kept_alive => return Err(NoHead::Gone),
            };
            match read {
                Err(_) if deadline.is_none() => return Err(NoHead::Gone),
                Err(_) => return Err(NoHead::TimedOut),
                Ok(Ok(0)) | Ok(Err(_)) => return Err(NoHead::Gone),
                Ok(Ok(_)) => {}
            }
            deadline.get_or_insert_with(|| Instant::now() + self.limits.header_timeout);
            match scan.end(buf) {
                Some(end) if end <= max => return Ok(()),
                Some(_) => return Err(NoHead::TooLarge),
                None if buf.len() > max => return Err(NoHead::TooLarge),
                None => {}
            }
        }
    }
}

/// Finds where a request head ends, across reads, looking at each byte once: at the first
/// empty line after the request line. Empty lines before the request line are skipped, as
/// HTTP/1.1 (and Pingora's parser) allow; a line may end in CRLF or a bare LF.
#[derive(Debug, Default)]
struct HeadScan {
    /// Where the request line starts, once a byte other than CR/LF has come.
    start: Option<usize>,
    /// How much has been looked at.
    scanned: usize,
}

impl HeadScan {
    /// The length of the head in `buf` (terminating empty line included), once it is complete.
    fn end(&mut self, buf: &[u8]) -> Option<usize> {
        let start = match self.start {
            Some(s) => s,
            None => {
                let Some(p) = buf[self.scanned..]
                    .iter()
                    .position(|&b| b != b'\r' && b != b'\n')
                else {
                    self.scanned = buf.len();
                    return None;
                };
                let s = self.scanned + p;
                self.start = Some(s);
                self.scanned = s;
                s
            }
        };
        // A terminator may straddle the last read: look two bytes back.
        let mut i = self.scanned.saturating_sub(2).max(start);
        self.scanned = buf.len();
        while let Some(p) = buf[i..].iter().position(|&b| b == b'\n') {
            let at = i + p;
            match (buf.get(at + 1), buf.get(at + 2)) {
                (Some(b'\n'), _) => return Some(at + 2),
                (Some(b'\r'), Some(b'\n')) => return Some(at + 3),
                _ => i = at + 1,
            }
        }
        None
    }
}

/// Writes `answer`, closes the sending side, and reads (into `buf`, dropping it) what the
/// client still sends for up to [`LINGER`], so the answer is read before the connection goes.
async fn refuse(stream: &mut Stream, answer: &[u8], buf: &mut BytesMut) {
    let end = Instant::now() + LINGER;
    let sent = tokio::time::timeout_at(end, async {
        stream.write_all(answer).await?;
        stream.flush().await?;
        AsyncWriteExt::shutdown(stream).await
    })
    .await;
    if !matches!(sent, Ok(Ok(()))) {
        return;
    }
    let mut drained = 0;
    while drained < LINGER_BYTES {
        buf.clear();
        match tokio::time::timeout_at(end, stream.read_buf(buf)).await {
            Ok(Ok(n)) if n > 0 => drained += n,
            _ => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `chunks` one by one; the head's length once complete, and after which chunk.
    fn scan(chunks: &[&[u8]]) -> Option<(usize, usize)> {
        let mut s = HeadScan::default();
        let mut buf = Vec::new();
        for (i, c) in chunks.iter().enumerate() {
            buf.extend_from_slice(c);
            if let Some(end) = s.end(&buf) {
                return Some((end, i));
            }
        }
        None
    }

    #[test]
    fn head_ends_at_the_first_empty_line_however_it_is_split() {
        let head = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        let n = head.len();
        for (chunks, want) in [
            (vec![&head[..]], Some((n, 0))),
            // Split at every place, the terminator included.
            (vec![&head[..n - 1], &head[n - 1..]], Some((n, 1))),
            (vec![&head[..n - 2], &head[n - 2..]], Some((n, 1))),
            (vec![&head[..n - 3], &head[n - 3..]], Some((n, 1))),
            (vec![&head[..n - 4], &head[n - 4..]], Some((n, 1))),
            // Bare LF line endings, and mixed.
            (vec![b"GET / HTTP/1.1\nHost: a\n\n"], Some((24, 0))),
            (vec![b"GET / HTTP/1.1\nHost: a\n", b"\r\n"], Some((25, 1))),
            (vec![b"GET / HTTP/1.1\r\nHost: a\n\n"], Some((25, 0))),
            // Empty lines before the request line are not its end.
            (
                vec![b"\r\n\r\n\n", b"GET / HTTP/1.1\r\n\r\n"],
                Some((23, 1)),
            ),
            (vec![b"\r\n", b"\r\n", b"\n"], None),
            // A body after the head is not part of it.
            (
                vec![b"POST / HTTP/1.1\r\nContent-Length: 4\r\n\r\nab\r\n"],
                Some((38, 0)),
            ),
            // Not complete: a CR alone is not a line end, nor a folded line.
            (vec![b"GET / HTTP/1.1\r\nHost: a\r\r\n"], None),
            (vec![b"GET / HTTP/1.1\r\nHost: a\r\n \r"], None),
            (vec![b"GET / HTTP/1.1\r\nHost: a\r\n"], None),
        ] {
            assert_eq!(scan(&chunks), want, "{chunks:?}");
        }
        // One byte at a time.
        let bytes: Vec<&[u8]> = head.chunks(1).collect();
        assert_eq!(scan(&bytes), Some((n, n - 1)));
    }

    #[test]
    fn addresses_are_counted_per_ipv4_address_and_ipv6_64() {
        let key = |s: &str| address_key(s.parse().unwrap()).to_string();
        for (addr, want) in [
            ("192.0.2.7", "192.0.2.7"),
            ("::ffff:192.0.2.7", "192.0.2.7"),
            ("2001:db8:1:2:aaaa:bbbb:cccc:dddd", "2001:db8:1:2::"),
            ("2001:db8:1:2::1", "2001:db8:1:2::"),
            ("2001:db8:1:3::1", "2001:db8:1:3::"),
            ("::1", "::"),
        ] {
            assert_eq!(key(addr), want, "{addr}");
        }
    }

    fn limits(cap: u32) -> ClientLimits {
        ClientLimits {
            max_connections_per_address: cap,
            ..ClientLimits::default()
        }
    }

    #[test]
    fn an_address_holds_at_most_its_cap_and_gets_slots_back() {
        let intake = Intake::new((), limits(2), vec!["10.0.0.0/8".parse().unwrap()]);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "2001:db8::1".parse().unwrap();
        let b_same_64: IpAddr = "2001:db8::2".parse().unwrap();
        let one = intake.admit(Some(a));
        let two = intake.admit(Some(a));
        assert!(matches!(intake.admit(Some(a)), Admission::Refused));
        // Other addresses, the trusted proxy and unknown peers are not affected.
        let b1 = intake.admit(Some(b));
        let _b2 = intake.admit(Some(b_same_64));
        assert!(matches!(intake.admit(Some(b)), Admission::Refused));
        for _ in 0..5 {
            assert!(matches!(
                intake.admit(Some("10.1.2.3".parse().unwrap())),
                Admission::Uncounted
            ));
            assert!(matches!(intake.admit(None), Admission::Uncounted));
        }
        drop(one);
        let three = intake.admit(Some(a));
        assert!(matches!(three, Admission::Counted(_)));
        drop((two, three, b1));
        assert_eq!(
            intake.open.lock().get(&a),
            None,
            "an idle address is forgotten"
        );
        // 0 turns the cap off.
        let open = Intake::new((), limits(0), Vec::new());
        for _ in 0..100 {
            assert!(matches!(open.admit(Some(a)), Admission::Uncounted));
        }
    }
}

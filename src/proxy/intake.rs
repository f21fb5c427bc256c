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

use super::route::authority;
use super::trace::{self, Trace};
use super::Served;
use crate::config::ClientLimits;
use crate::portal::PING;
use crate::reply::Response;
use arc_swap::ArcSwap;
use bytes::{BufMut, Bytes, BytesMut};
use parking_lot::Mutex;
use pingora::apps::{HttpPersistentSettings, HttpServerApp, ServerApp};
use pingora::http::RequestHeader;
use pingora::protocols::http::authority::validate_request_authority;
use pingora::protocols::http::date::get_cached_date;
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
    /// The gateway's configuration in force, for the answers the intake gives itself (see
    /// [`Intake::answering`]); `None`: every request goes to the proxy.
    lean: Option<Arc<ArcSwap<Served>>>,
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
            lean: None,
        }
    }

    /// Lets the intake answer the gateway's answer-only endpoints itself, from `live` (the
    /// same configuration the proxy serves): forward-auth calls, `ping`, `health` and `ready`
    /// in plain `GET`/`HEAD` requests without a body. See [`lean_head`] for what qualifies;
    /// anything else still goes to the proxy.
    #[must_use]
    pub fn answering(mut self, live: Arc<ArcSwap<Served>>) -> Self {
        self.lean = Some(live);
        self
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
    /// answered here (the answer-only endpoints, see [`Intake::answering`]) or handed to the
    /// proxy with it; on until the connection is not kept alive.
    async fn serve_http1(
        &self,
        mut stream: Stream,
        peer: Option<IpAddr>,
        shutdown: &ShutdownWatch,
    ) {
        // `None` before the proxy's first request; then what its last one left for the next.
        let mut carried: Option<Option<HttpPersistentSettings>> = None;
        // Whether a request was answered here on this connection: it is kept alive.
        let mut answered = false;
        // A request limit per connection is counted by Pingora's sessions alone.
        let lean = self.lean.as_ref().filter(|_| {
            self.inner
                .server_options()
                .and_then(|o| o.keepalive_request_limit)
                .is_none()
        });
        let mut head = BytesMut::with_capacity(HEAD_BUF);
        loop {
            let kept_alive = carried.is_some() || answered;
            let read = self
                .read_head(&mut stream, &mut head, kept_alive, shutdown)
                .await;
            let end = match read {
                Ok(end) => end,
                Err(why) => {
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
            };
            if let Some(live) = lean {
                match answer_here(live, &mut stream, head, end, peer, shutdown).await {
                    Here::Answered(Some(rest)) => {
                        answered = true;
                        head = rest;
                        continue;
                    }
                    Here::Answered(None) => return,
                    Here::Proxy(bytes) => head = bytes,
                }
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
            head = BytesMut::with_capacity(HEAD_BUF);
        }
    }

    /// Reads one request head into `buf` (with whatever of the body came with it), after what
    /// `buf` already holds (what was sent after the last request); the head's length. A kept-alive
    /// connection first waits up to [`KEEPALIVE_IDLE`] for the next request to begin; the head's
    /// deadline runs from the connection's start or that first byte.
    async fn read_head(
        &self,
        stream: &mut Stream,
        buf: &mut BytesMut,
        kept_alive: bool,
        shutdown: &ShutdownWatch,
    ) -> Result<usize, NoHead> {
        let max = self.limits.max_header_bytes;
        let mut deadline = (!kept_alive).then(|| Instant::now() + self.limits.header_timeout);
        let mut scan = HeadScan::default();
        let mut stop = shutdown.clone();
        if kept_alive && *stop.borrow() {
            return Err(NoHead::Gone);
        }
        // What came after the last request (pipelined) is the start of this one.
        if !buf.is_empty() {
            deadline.get_or_insert_with(|| Instant::now() + self.limits.header_timeout);
            match scan.end(buf) {
                Some(end) if end <= max => return Ok(end),
                Some(_) => return Err(NoHead::TooLarge),
                None if buf.len() > max => return Err(NoHead::TooLarge),
                None => {}
            }
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
                Some(end) if end <= max => return Ok(end),
                Some(_) => return Err(NoHead::TooLarge),
                None if buf.len() > max => return Err(NoHead::TooLarge),
                None => {}
            }
        }
    }
}

/// What became of a request the intake may answer itself.
enum Here {
    /// Answered: the connection goes on with what followed the head (the start of the next
    /// request, if any), or has been closed (`None`).
    Answered(Option<BytesMut>),
    /// Not one to answer here: the proxy serves it from these bytes, as they arrived.
    Proxy(BytesMut),
}

/// The request targets the intake answers itself start with one of these (the routes
/// [`Served::head_answer`] answers: forward-auth, Authelia's paths, `ping`, `health`, `ready`).
/// One look at the request line: everything else goes to the proxy unparsed.
const LEAN_TARGETS: [&[u8]; 5] = [
    b"/.portcullis/auth/",
    b"/api/authz/",
    PING.as_bytes(),
    crate::ops::HEALTH.as_bytes(),
    crate::ops::READY.as_bytes(),
];

/// Whether the head in `buf` may be one the intake answers: a `GET` or `HEAD` whose target
/// starts with one of [`LEAN_TARGETS`].
fn might_answer(buf: &[u8]) -> bool {
    let start = buf
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(buf.len());
    let line = &buf[start..];
    let Some(target) = line
        .strip_prefix(b"GET ")
        .or_else(|| line.strip_prefix(b"HEAD "))
    else {
        return false;
    };
    LEAN_TARGETS.iter().any(|p| target.starts_with(p))
}

/// At most this many header fields in a head answered here (nginx sends about ten).
const LEAN_MAX_HEADERS: usize = 64;

/// The request in `head` (exactly one complete head), when it is plain enough to answer
/// without the proxy, and whether the connection stays open after the answer.
///
/// # Security
/// Only what the proxy would read the same way: `GET` or `HEAD` (exactly so spelled) with an
/// origin-form target, HTTP/1.0 or 1.1, no body (no `Transfer-Encoding`, `Content-Length`
/// absent or a single `0`), no `Upgrade` or `Expect`, at most one `Host` and one `Connection`
/// (`close` and/or `keep-alive` only, not both), an authority Pingora accepts, and a head
/// `httparse` parses strictly (no obs-fold, no bare CR) to the very end the intake found.
/// Anything else, a request smuggling attempt included, is left to the proxy, which parses
/// it as it always has: the bytes stay where the next request will be read from only when
/// the request provably has no body.
fn lean_request(head: &Bytes) -> Option<(RequestHeader, bool)> {
    let mut fields = [httparse::EMPTY_HEADER; LEAN_MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut fields);
    match parsed.parse(head) {
        Ok(httparse::Status::Complete(n)) if n == head.len() => {}
        _ => return None,
    }
    let method = match parsed.method? {
        "GET" => http::Method::GET,
        "HEAD" => http::Method::HEAD,
        _ => return None,
    };
    let version = match parsed.version? {
        1 => http::Version::HTTP_11,
        0 => http::Version::HTTP_10,
        _ => return None,
    };
    let target = parsed.path?;
    if !target.starts_with('/') || target.contains('#') {
        return None;
    }
    let mut req =
        RequestHeader::build_no_case(method, target.as_bytes(), Some(parsed.headers.len())).ok()?;
    req.set_version(version);
    let mut connection = None;
    for field in parsed.headers.iter() {
        let name = field.name.as_bytes();
        let is = |n: &str| name.eq_ignore_ascii_case(n.as_bytes());
        if is("transfer-encoding") || is("upgrade") || is("expect") {
            return None;
        }
        if is("content-length")
            && (field.value != b"0" || req.headers.contains_key("content-length"))
        {
            return None;
        }
        if is("host") && req.headers.contains_key("host") {
            return None;
        }
        if is("connection") {
            if connection.is_some() {
                return None;
            }
            connection = Some(field.value);
        }
        let value = http::HeaderValue::from_maybe_shared(head.slice_ref(field.value)).ok()?;
        req.append_header(head.slice_ref(name), value).ok()?;
    }
    validate_request_authority(&req).ok()?;
    let keep_alive = keep_alive(version, connection)?;
    Some((req, keep_alive))
}

/// Whether the connection stays open after the answer, as Pingora decides it: HTTP/1.1 unless
/// `Connection: close`, HTTP/1.0 only with `Connection: keep-alive`. `None` (to the proxy)
/// for any other token, or both.
fn keep_alive(version: http::Version, connection: Option<&[u8]>) -> Option<bool> {
    let (mut close, mut keep) = (false, false);
    for token in connection.unwrap_or_default().split(|&b| b == b',') {
        let token = token.trim_ascii();
        if token.eq_ignore_ascii_case(b"close") {
            close = true;
        } else if token.eq_ignore_ascii_case(b"keep-alive") {
            keep = true;
        } else if !token.is_empty() {
            return None;
        }
    }
    match (close, keep) {
        (true, true) => None,
        (true, false) => Some(false),
        (false, true) => Some(true),
        (false, false) => Some(version == http::Version::HTTP_11),
    }
}

/// The bytes of a head split off and frozen, joined again with what followed it.
fn rejoin(head: Bytes, rest: BytesMut) -> BytesMut {
    match head.try_into_mut() {
        Ok(mut whole) => {
            whole.unsplit(rest);
            whole
        }
        Err(head) => {
            let mut whole = BytesMut::with_capacity(head.len() + rest.len());
            whole.extend_from_slice(&head);
            whole.extend_from_slice(&rest);
            whole
        }
    }
}

/// Answers the request whose head is the first `end` bytes of `buf` here when it is one of
/// the answer-only endpoints in a plain request ([`lean_request`], [`Served::head_answer`]):
/// the same route, decision, answer, headers, metrics and access-log line as the proxy's,
/// without a Pingora session. Anything else is handed back for the proxy, bytes untouched.
async fn answer_here(
    live: &ArcSwap<Served>,
    stream: &mut Stream,
    mut buf: BytesMut,
    end: usize,
    peer: Option<IpAddr>,
    shutdown: &ShutdownWatch,
) -> Here {
    if !might_answer(&buf[..end]) {
        return Here::Proxy(buf);
    }
    let rest = buf.split_off(end);
    let head = buf.freeze();
    let Some((mut req, keep_alive)) = lean_request(&head) else {
        return Here::Proxy(rejoin(head, rest));
    };
    let live = live.load_full();
    let tls = stream.get_ssl_digest().is_some();
    // As the proxy's `request_filter` begins.
    super::identity::strip(&mut req, &live.gate.config().headers);
    let route = live.router.route(&live.gate, &req, tls);
    if !Served::answers_from_head(&route) {
        drop(req);
        return Here::Proxy(rejoin(head, rest));
    }
    // As the proxy's `new_ctx`, `request_filter` and `logging` do for this request.
    let mut trace = Trace::new();
    let in_flight = crate::metrics::InFlight::start();
    trace.outcome = route.name();
    let Some(mut resp) = trace
        .span
        .in_scope(|| live.head_answer(&route, &req, peer, tls))
    else {
        drop(req);
        return Here::Proxy(rejoin(head, rest));
    };
    live.finish(&mut resp, tls);
    // As the proxy stops reusing connections once the server is shutting down.
    let keep_alive = keep_alive && !*shutdown.borrow();
    let mut out = Vec::with_capacity(256 + resp.body.len());
    wire(
        &mut out,
        &resp,
        req.method == http::Method::HEAD,
        keep_alive,
    );
    let sent = async {
        stream.write_all(&out).await?;
        stream.flush().await
    }
    .await;
    let status = resp.status.as_u16();
    live.timers.observe(
        None,
        crate::metrics::Outcome::of(trace.outcome, status),
        trace.started.elapsed(),
    );
    if live.access_log {
        trace::access(
            &trace,
            &trace::AccessLine {
                method: req.method.as_str(),
                host: authority(&req),
                path: req.uri.path(),
                app: "",
                user: "",
                status,
            },
        );
    }
    drop(in_flight);
    if let Err(e) = sent {
        let _in = trace.span.enter();
        tracing::debug!(error = %e, "the client went away");
        return Here::Answered(None);
    }
    if !keep_alive {
        let _ = AsyncWriteExt::shutdown(stream).await;
        return Here::Answered(None);
    }
    // What followed the head starts the next request, in what is left of this buffer.
    drop((req, head));
    let next = if rest.capacity() - rest.len() < HEAD_BUF / 4 {
        let mut fresh = BytesMut::with_capacity(HEAD_BUF.max(rest.len()));
        fresh.extend_from_slice(&rest);
        fresh
    } else {
        rest
    };
    Here::Answered(Some(next))
}

/// Writes `resp` as Pingora writes a gateway answer: the status line, the answer's headers
/// in order, `Content-Length`, `Date` and `Connection`, with Pingora's spelling of header
/// names; the body unless `head_only`.
fn wire(out: &mut Vec<u8>, resp: &Response, head_only: bool, keep_alive: bool) {
    fn field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(resp.status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(resp.status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in &resp.headers {
        field(out, titled(name).as_bytes(), value.as_bytes());
    }
    field(
        out,
        b"Content-Length",
        resp.body.len().to_string().as_bytes(),
    );
    field(out, b"Date", get_cached_date().as_bytes());
    let connection: &[u8] = if keep_alive { b"keep-alive" } else { b"close" };
    field(out, b"Connection", connection);
    out.extend_from_slice(b"\r\n");
    if !head_only {
        out.extend_from_slice(&resp.body);
    }
}

/// A header name as Pingora writes it: title case for the names it knows, else as given
/// (lower case).
fn titled(name: &http::HeaderName) -> &str {
    use http::header;
    match *name {
        header::ACCEPT_RANGES => "Accept-Ranges",
        header::AGE => "Age",
        header::CACHE_CONTROL => "Cache-Control",
        header::CONNECTION => "Connection",
        header::CONTENT_TYPE => "Content-Type",
        header::CONTENT_ENCODING => "Content-Encoding",
        header::CONTENT_LENGTH => "Content-Length",
        header::DATE => "Date",
        header::TRANSFER_ENCODING => "Transfer-Encoding",
        header::HOST => "Host",
        header::SERVER => "Server",
        header::SET_COOKIE => "Set-Cookie",
        _ => name.as_str(),
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

//! A minimal keep-alive HTTP/1.1 client connection for load generation: it writes prepared
//! request bytes and reads exactly one response (Content-Length, chunked, or until close),
//! without allocating per request. It is not a general client: no redirects, no TLS, no
//! pipelining; it only needs to cost the load tool less than the server costs to answer.

use bytes::{Buf, BytesMut};
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A response head larger than this is refused rather than buffered without end.
const MAX_HEAD: usize = 64 * 1024;

/// Why a request on a connection failed; the connection cannot be used again.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// Connecting, writing or reading failed.
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    /// The server closed the connection before a whole response arrived.
    #[error("the server closed the connection")]
    Closed,
    /// The response is not HTTP/1.1 the client can frame (or its head is too large).
    #[error("malformed response: {0}")]
    Malformed(&'static str),
}

/// What the load tool keeps of a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Reply {
    /// The status code.
    pub(crate) status: u16,
    /// Whether the connection can carry the next request.
    pub(crate) keep_alive: bool,
}

/// How the body of a response is delimited.
enum Framing {
    Length(usize),
    Chunked,
    UntilClose,
}

/// One client connection.
pub(crate) struct Conn {
    stream: TcpStream,
    buf: BytesMut,
}

impl Conn {
    /// A connection to `addr`, with Nagle's algorithm off.
    ///
    /// # Errors
    /// The connect error.
    pub(crate) async fn connect(addr: SocketAddr) -> Result<Conn, ClientError> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            buf: BytesMut::with_capacity(16 * 1024),
        })
    }

    /// Sends `request` (a complete HTTP/1.1 request) and reads the whole response.
    ///
    /// # Errors
    /// [`ClientError`] when the connection fails or the response cannot be parsed; the
    /// connection must then be dropped.
    pub(crate) async fn roundtrip(&mut self, request: &[u8]) -> Result<Reply, ClientError> {
        self.stream.write_all(request).await?;
        let (head_len, status, framing, mut keep_alive) = loop {
            if let Some(head) = parse_head(&self.buf)? {
                break head;
            }
            if self.buf.len() > MAX_HEAD {
                return Err(ClientError::Malformed("response head too large"));
            }
            self.fill().await?;
        };
        self.buf.advance(head_len);
        match framing {
            Framing::Length(n) => self.skip(n).await?,
            Framing::Chunked => self.skip_chunked().await?,
            Framing::UntilClose => {
                keep_alive = false;
                while self.stream.read_buf(&mut self.buf).await? > 0 {
                    self.buf.clear();
                }
            }
        }
        Ok(Reply { status, keep_alive })
    }

    async fn fill(&mut self) -> Result<(), ClientError> {
        if self.buf.capacity() - self.buf.len() < 4096 {
            self.buf.reserve(16 * 1024);
        }
        match self.stream.read_buf(&mut self.buf).await? {
            0 => Err(ClientError::Closed),
            _ => Ok(()),
        }
    }

    async fn skip(&mut self, mut n: usize) -> Result<(), ClientError> {
        loop {
            let take = n.min(self.buf.len());
            self.buf.advance(take);
            n -= take;
            if n == 0 {
                return Ok(());
            }
            self.fill().await?;
        }
    }

    /// Skips a chunked body: size lines, data, and the trailer section.
    async fn skip_chunked(&mut self) -> Result<(), ClientError> {
        loop {
            let line = self.line().await?;
            let size = line.split(|&b| b == b';').next().unwrap_or(&[]);
            let size = std::str::from_utf8(size)
                .ok()
                .and_then(|s| usize::from_str_radix(s.trim(), 16).ok())
                .ok_or(ClientError::Malformed("bad chunk size"))?;
            if size == 0 {
                // Trailers, ended by an empty line.
                while !self.line().await?.is_empty() {}
                return Ok(());
            }
            self.skip(size).await?;
            if !self.line().await?.is_empty() {
                return Err(ClientError::Malformed("chunk not followed by CRLF"));
            }
        }
    }

    /// The next line without its CRLF (consumed from the buffer).
    async fn line(&mut self) -> Result<Vec<u8>, ClientError> {
        loop {
            if let Some(pos) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = self.buf.split_to(pos + 2);
                return Ok(line[..pos].to_vec());
            }
            if self.buf.len() > MAX_HEAD {
                return Err(ClientError::Malformed("line too long"));
            }
            self.fill().await?;
        }
    }
}

/// The response head in `buf`, when complete: its length, status, body framing and whether
/// the server keeps the connection open.
fn parse_head(buf: &[u8]) -> Result<Option<(usize, u16, Framing, bool)>, ClientError> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut headers);
    let head_len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(ClientError::Malformed("unparsable response head")),
    };
    let status = resp.code.ok_or(ClientError::Malformed("no status"))?;
    let mut keep_alive = resp.version == Some(1);
    let mut framing = None;
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let n = std::str::from_utf8(h.value)
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .ok_or(ClientError::Malformed("bad content-length"))?;
            framing.get_or_insert(Framing::Length(n));
        } else if h.name.eq_ignore_ascii_case("transfer-encoding")
            && contains_token(h.value, b"chunked")
        {
            framing = Some(Framing::Chunked);
        } else if h.name.eq_ignore_ascii_case("connection") {
            if contains_token(h.value, b"close") {
                keep_alive = false;
            } else if contains_token(h.value, b"keep-alive") {
                keep_alive = true;
            }
        }
    }
    // Responses that never have a body, whatever their headers say.
    let bodiless = status / 100 == 1 || status == 204 || status == 304;
    let framing = match framing {
        _ if bodiless => Framing::Length(0),
        Some(f) => f,
        None => Framing::UntilClose,
    };
    Ok(Some((head_len, status, framing, keep_alive)))
}

fn contains_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A server that answers each of `replies` in turn on one connection.
    async fn serve(replies: Vec<&'static str>) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            for r in replies {
                let _ = s.read(&mut buf).await.unwrap();
                s.write_all(r.as_bytes()).await.unwrap();
            }
        });
        addr
    }

    #[tokio::test]
    async fn reads_length_chunked_and_close_delimited_responses() {
        let addr = serve(vec![
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
            "HTTP/1.1 401 Unauthorized\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n0\r\nX-T: 1\r\n\r\n",
            "HTTP/1.1 204 No Content\r\nContent-Length: 9\r\n\r\n",
            "HTTP/1.1 302 Found\r\nConnection: close\r\n\r\nbye",
        ])
        .await;
        let mut c = Conn::connect(addr).await.unwrap();
        let req = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        let r = c.roundtrip(req).await.unwrap();
        assert_eq!((r.status, r.keep_alive), (200, true));
        let r = c.roundtrip(req).await.unwrap();
        assert_eq!((r.status, r.keep_alive), (401, true));
        let r = c.roundtrip(req).await.unwrap();
        assert_eq!((r.status, r.keep_alive), (204, true));
        let r = c.roundtrip(req).await.unwrap();
        assert_eq!((r.status, r.keep_alive), (302, false));
    }
}

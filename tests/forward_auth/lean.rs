//! The answer-only endpoints (forward-auth, `ping`, `health`, `ready`) are answered by the
//! connection intake itself, without a Pingora session, when the request is plain; everything
//! else goes to the proxy as before. Raw TCP, byte for byte: keep-alive by HTTP version and
//! `Connection`, pipelined requests in one write, requests with a body, and the request
//! smuggling shapes (CL+TE, two CLs, obs-fold, absolute-form, duplicate Host, odd methods),
//! each answered once and in order, with the connection left usable or closed, never
//! desynchronised. Also the answers' headers and the access-log line.

use crate::harness;
use crate::support::*;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const NGINX: &str = "/.portcullis/auth/nginx";

/// One answer read off the wire.
#[derive(Debug)]
struct Answer {
    status: u16,
    /// Lower-cased names, values as sent.
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Reads `heads.len()` answers (`heads[i]`: the i-th answers a `HEAD`, so has no body), then
/// whether the server closed the connection (`None`: still open).
async fn read_answers(s: &mut TcpStream, heads: &[bool]) -> (Vec<Answer>, Vec<u8>, bool) {
    let mut buf = Vec::new();
    let mut answers = Vec::new();
    let mut closed = false;
    let mut chunk = [0u8; 8192];
    while answers.len() < heads.len() {
        if let Some((a, used)) = parse_answer(&buf, heads[answers.len()]) {
            answers.push(a);
            buf.drain(..used);
            continue;
        }
        match tokio::time::timeout(Duration::from_secs(10), s.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => break,
        }
    }
    if !closed {
        // Anything more (a stray answer) or the close comes now, or nothing does.
        match tokio::time::timeout(Duration::from_millis(400), s.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => closed = true,
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => {}
        }
    }
    (answers, buf, closed)
}

/// One answer at the start of `buf` and its length on the wire, once it is all there.
fn parse_answer(buf: &[u8], head_only: bool) -> Option<(Answer, usize)> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let text = String::from_utf8_lossy(&buf[..end]);
    let mut lines = text.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .map_or(0, |(_, v)| v.parse().unwrap_or(0));
    let len = if head_only { 0 } else { len };
    if buf.len() < end + len {
        return None;
    }
    let body = String::from_utf8_lossy(&buf[end..end + len]).into_owned();
    Some((
        Answer {
            status,
            headers,
            body,
        },
        end + len,
    ))
}

/// What one raw exchange must come to.
struct Case {
    name: &'static str,
    /// Sent in one write.
    send: String,
    /// The answers, in order: status, and whether it answers a `HEAD`.
    want: &'static [(u16, bool)],
    /// Whether the server then closes the connection; when it does not, a `ping` on the same
    /// connection must be answered next (nothing of the exchange is left to be misread).
    closed: bool,
    /// Text no answer may contain (a smuggled request's answer).
    absent: &'static [&'static str],
}

async fn run(port: u16, case: &Case) -> Vec<Answer> {
    let name = case.name;
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(case.send.as_bytes()).await.unwrap();
    let heads: Vec<bool> = case.want.iter().map(|w| w.1).collect();
    let (answers, extra, closed) = read_answers(&mut s, &heads).await;
    let got: Vec<u16> = answers.iter().map(|a| a.status).collect();
    let want: Vec<u16> = case.want.iter().map(|w| w.0).collect();
    assert_eq!(got, want, "{name}: statuses; answers {answers:?}");
    assert!(
        extra.is_empty(),
        "{name}: more than the answers wanted: {:?}",
        String::from_utf8_lossy(&extra)
    );
    for a in &answers {
        for bad in case.absent {
            assert!(
                !a.body.contains(bad) && !a.headers.iter().any(|(_, v)| v.contains(bad)),
                "{name}: an answer carries {bad:?}: {a:?}"
            );
        }
    }
    assert_eq!(closed, case.closed, "{name}: closed; answers {answers:?}");
    if !closed {
        s.write_all(b"GET /.portcullis/ping HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let (next, extra, _) = read_answers(&mut s, &[false]).await;
        assert!(
            next.len() == 1 && next[0].status == 200 && next[0].body == "pong",
            "{name}: the connection is not usable after the exchange: {next:?} {:?}",
            String::from_utf8_lossy(&extra)
        );
    }
    answers
}

/// nginx's auth subrequest as the shipped config makes it, for `url`, with `cookie`.
fn nginx_call(method: &str, version: &str, url: &str, cookie: &str, more: &str) -> String {
    format!(
        "{method} {NGINX} {version}\r\nHost: portcullis\r\nX-Original-URL: {url}\r\n\
         X-Forwarded-Host: {WIKI}\r\nX-Original-Method: GET\r\nX-Forwarded-For: 203.0.113.9\r\n\
         Accept: text/html\r\nCookie: {cookie}\r\n{more}\r\n"
    )
}

async fn alice_cookie(gw: &Gateway) -> String {
    let c = Client::new(gw.addr());
    let page = c.url(WIKI, "/start");
    let r = c.page(&page).await;
    let login = assert_auth_redirect(&r, &page);
    let (_, resp) = api_sign_in(&c, &login, "alice", ALICE_PW).await;
    let v = resp.set_cookie_value(SESSION_COOKIE).unwrap();
    format!("{SESSION_COOKIE}={v}")
}

#[tokio::test]
async fn answer_only_endpoints_keep_http_framing_and_refuse_smuggling() {
    let gw = Gateway::start(Opts {
        extra: "[log]\naccess = true\n".into(),
        ..Opts::default()
    })
    .await;
    let cookie = alice_cookie(&gw).await;
    let url = format!("http://{WIKI}/page");
    let ok = nginx_call("GET", "HTTP/1.1", &url, &cookie, "");
    let ping = "GET /.portcullis/ping HTTP/1.1\r\nHost: x\r\n\r\n";
    let app = format!("GET /page HTTP/1.1\r\nHost: {WIKI}\r\nAccept: application/json\r\n\r\n");
    let smuggled = "GET /.portcullis/ping HTTP/1.1\r\nHost: smuggled\r\n\r\n";
    let cases = vec![
        Case {
            name: "one call, kept alive",
            send: ok.clone(),
            want: &[(200, false)],
            closed: false,
            absent: &[],
        },
        Case {
            name: "three calls pipelined in one write",
            send: format!("{ok}{ok}{ok}"),
            want: &[(200, false), (200, false), (200, false)],
            closed: false,
            absent: &[],
        },
        Case {
            name: "a call, then a request for the app, pipelined",
            send: format!("{ok}{app}"),
            want: &[(200, false), (401, false)],
            closed: false,
            absent: &[],
        },
        Case {
            // The proxy (Pingora, pipelining off) answers the first and closes: what followed
            // is never read as part of anything.
            name: "a request for the app, then a call, pipelined",
            send: format!("{app}{ok}"),
            want: &[(401, false)],
            closed: true,
            absent: &[],
        },
        Case {
            name: "HTTP/1.0 closes",
            send: nginx_call("GET", "HTTP/1.0", &url, &cookie, ""),
            want: &[(200, false)],
            closed: true,
            absent: &[],
        },
        Case {
            name: "HTTP/1.0 with keep-alive stays",
            send: nginx_call(
                "GET",
                "HTTP/1.0",
                &url,
                &cookie,
                "Connection: keep-alive\r\n",
            ),
            want: &[(200, false)],
            closed: false,
            absent: &[],
        },
        Case {
            name: "Connection: close closes, what follows is not answered",
            send: format!(
                "{}{ping}",
                nginx_call("GET", "HTTP/1.1", &url, &cookie, "Connection: close\r\n")
            ),
            want: &[(200, false)],
            closed: true,
            absent: &["pong"],
        },
        Case {
            name: "HEAD has no body, the next request is read right",
            send: format!(
                "HEAD /.portcullis/ping HTTP/1.1\r\nHost: x\r\n\r\n{}",
                nginx_call("HEAD", "HTTP/1.1", &url, &cookie, "")
            ),
            want: &[(200, true), (200, true)],
            closed: false,
            absent: &["pong"],
        },
        Case {
            name: "Content-Length: 0",
            send: nginx_call("GET", "HTTP/1.1", &url, &cookie, "Content-Length: 0\r\n"),
            want: &[(200, false)],
            closed: false,
            absent: &[],
        },
        Case {
            // The proxy answers without reading the body, and closes.
            name: "a body is read as a body, not as a request",
            send: format!(
                "{}{smuggled}",
                nginx_call(
                    "GET",
                    "HTTP/1.1",
                    &url,
                    &cookie,
                    &format!("Content-Length: {}\r\n", smuggled.len())
                )
            ),
            want: &[(200, false)],
            closed: true,
            absent: &["pong"],
        },
        Case {
            name: "a chunked body is read as a body",
            send: format!(
                "{}{:x}\r\n{smuggled}\r\n0\r\n\r\n",
                nginx_call(
                    "GET",
                    "HTTP/1.1",
                    &url,
                    &cookie,
                    "Transfer-Encoding: chunked\r\n"
                ),
                smuggled.len()
            ),
            want: &[(200, false)],
            closed: true,
            absent: &["pong"],
        },
        Case {
            name: "CL and TE: chunked wins, the connection closes",
            send: format!(
                "{}0\r\n\r\n{smuggled}",
                nginx_call(
                    "GET",
                    "HTTP/1.1",
                    &url,
                    &cookie,
                    "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n"
                )
            ),
            want: &[(200, false)],
            closed: true,
            absent: &["pong"],
        },
        Case {
            name: "two different Content-Lengths",
            send: format!(
                "{}{smuggled}",
                nginx_call(
                    "GET",
                    "HTTP/1.1",
                    &url,
                    &cookie,
                    "Content-Length: 0\r\nContent-Length: 49\r\n"
                )
            ),
            want: &[(400, false)],
            closed: true,
            absent: &["pong"],
        },
        Case {
            name: "obs-fold",
            send: format!(
                "{}{smuggled}",
                nginx_call("GET", "HTTP/1.1", &url, &cookie, "X-Folded: a\r\n b\r\n")
            ),
            want: &[(400, false)],
            closed: true,
            absent: &["pong"],
        },
        Case {
            name: "duplicate Host",
            send: format!(
                "GET {NGINX} HTTP/1.1\r\nHost: a\r\nHost: b\r\nCookie: {cookie}\r\n\r\n{smuggled}"
            ),
            want: &[(400, false)],
            closed: true,
            absent: &["pong"],
        },
        Case {
            name: "absolute-form target",
            send: format!(
                "GET http://portcullis{NGINX} HTTP/1.1\r\nHost: portcullis\r\n\
                 X-Original-URL: {url}\r\nX-Forwarded-Host: {WIKI}\r\nCookie: {cookie}\r\n\r\n"
            ),
            want: &[(200, false)],
            closed: false,
            absent: &[],
        },
        Case {
            name: "lower-case method goes to the proxy",
            send: "get /.portcullis/ping HTTP/1.1\r\nHost: x\r\n\r\n".into(),
            want: &[(200, false)],
            closed: false,
            absent: &[],
        },
        Case {
            name: "bare LF line ends",
            send: "GET /.portcullis/ping HTTP/1.1\nHost: x\n\n".into(),
            want: &[(200, false)],
            closed: false,
            absent: &[],
        },
        Case {
            name: "Expect: 100-continue goes to the proxy",
            send: nginx_call("GET", "HTTP/1.1", &url, &cookie, "Expect: 100-continue\r\n"),
            want: &[(200, false)],
            closed: false,
            absent: &[],
        },
    ];
    for case in &cases {
        run(gw.port, case).await;
    }
}

#[tokio::test]
async fn answers_here_carry_the_proxys_headers_and_log_line() {
    let gw = Gateway::start(Opts {
        extra: "[log]\naccess = true\n".into(),
        ..Opts::default()
    })
    .await;
    let cookie = alice_cookie(&gw).await;
    let url = format!("http://{WIKI}/page");
    let case = Case {
        name: "identity headers",
        send: format!(
            "{}{}{}",
            // A client's own identity header is never believed.
            nginx_call("GET", "HTTP/1.1", &url, &cookie, "Remote-User: mallory\r\n"),
            nginx_call("GET", "HTTP/1.1", &url, "", "Remote_User: mallory\r\n"),
            "GET /.portcullis/health HTTP/1.1\r\nHost: x\r\n\r\n"
        ),
        want: &[(200, false), (401, false), (200, false)],
        closed: false,
        absent: &["mallory"],
    };
    let answers = run(gw.port, &case).await;
    let a = &answers[0];
    assert_eq!(a.header("remote-user"), Some("alice"), "{a:?}");
    assert_eq!(a.header("remote-groups"), Some("admins,staff"), "{a:?}");
    assert_eq!(a.header("content-length"), Some("0"), "{a:?}");
    assert_eq!(a.header("connection"), Some("keep-alive"), "{a:?}");
    assert!(a.header("date").is_some(), "{a:?}");
    let signin = &answers[1];
    assert!(
        signin
            .header("x-portcullis-redirect")
            .is_some_and(|l| l.contains("/.portcullis/flow/")),
        "{signin:?}"
    );
    assert_eq!(signin.header("remote-user"), None, "{signin:?}");
    assert!(answers[2].body.contains("live"), "{:?}", answers[2]);
    // One access-log line per request, as the proxy writes it.
    assert!(
        harness::poll_until(Duration::from_secs(5), || {
            let logs = gw.logs();
            logs.lines()
                .filter(|l| l.contains("access") && l.contains(NGINX))
                .count()
                >= 2
        })
        .await,
        "no access-log lines for the forward-auth calls: {}",
        gw.logs()
    );
    let logs = gw.logs();
    let line = logs
        .lines()
        .find(|l| l.contains("access") && l.contains(NGINX) && l.contains("status=200"))
        .unwrap_or_else(|| panic!("no access line with status 200: {logs}"));
    assert!(
        line.contains("outcome=\"forward_auth\"") && line.contains("request_id="),
        "{line}"
    );
    assert!(!logs.contains(&cookie), "the session cookie was logged");
}

/// A head sent a byte at a time is answered once complete.
#[tokio::test]
async fn a_trickled_head_is_answered() {
    let gw = Gateway::start(Opts::default()).await;
    let mut s = TcpStream::connect(("127.0.0.1", gw.port)).await.unwrap();
    for b in b"GET /.portcullis/ping HTTP/1.1\r\nHost: x\r\n\r\n" {
        s.write_all(&[*b]).await.unwrap();
        s.flush().await.unwrap();
    }
    let (answers, _, _) = read_answers(&mut s, &[false]).await;
    assert_eq!(answers.len(), 1);
    assert_eq!((answers[0].status, answers[0].body.as_str()), (200, "pong"));
}

//! The [`HttpClient`] adapter over reqwest (rustls): the one place outgoing HTTP is made.

use super::{HttpBody, HttpClient, HttpError, HttpReply, HttpRequest, MAX_REPLY_BYTES};
use async_trait::async_trait;

/// An [`HttpClient`] over one reqwest client, whose connection pool all requests share.
#[derive(Clone)]
pub struct ReqwestHttpClient {
    client: reqwest::Client,
}

impl ReqwestHttpClient {
    /// A client identifying itself as `portcullis/<version>`.
    ///
    /// # Errors
    /// [`HttpError::Request`] when the TLS backend cannot be set up.
    pub fn new() -> Result<Self, HttpError> {
        let client = reqwest::Client::builder()
            .user_agent(concat!("portcullis/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| HttpError::Request(e.to_string()))?;
        Ok(Self { client })
    }
}

/// What of a reqwest error is told: its message and causes, never the URL (its query may carry
/// a key).
fn failure(e: reqwest::Error) -> HttpError {
    if e.is_timeout() {
        return HttpError::Timeout;
    }
    let connect = e.is_connect();
    let e = e.without_url();
    // reqwest's own message is terse ("error sending request"); the causes say why.
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(&e);
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    if connect {
        HttpError::Connect(text)
    } else {
        HttpError::Request(text)
    }
}

#[async_trait]
impl HttpClient for ReqwestHttpClient {
    async fn post(&self, request: HttpRequest) -> Result<HttpReply, HttpError> {
        let HttpRequest {
            method,
            url,
            headers,
            body,
            timeout,
        } = request;
        let builder = self
            .client
            .request(method, url)
            .timeout(timeout)
            .headers(headers);
        let builder = match &body {
            HttpBody::Empty => builder,
            HttpBody::Form(fields) => builder.form(fields),
            HttpBody::Json(value) => builder.json(value),
        };
        let mut response = builder.send().await.map_err(failure)?;
        let status = response.status();
        let mut body = Vec::new();
        let mut truncated = false;
        while let Some(chunk) = response.chunk().await.map_err(failure)? {
            let room = MAX_REPLY_BYTES - body.len();
            if chunk.len() > room {
                body.extend_from_slice(&chunk[..room]);
                truncated = true;
                break;
            }
            body.extend_from_slice(&chunk);
        }
        Ok(HttpReply {
            status,
            body,
            truncated,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::StatusCode;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use tokio::sync::oneshot;

    /// A one-shot server on a loopback port: returns its base URL and the raw request it gets.
    /// It answers `reply` (a whole HTTP response), or never answers when `reply` is `None`.
    async fn server(reply: Option<Vec<u8>>) -> (url::Url, oneshot::Receiver<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = url::Url::parse(&format!("http://{}/", listener.local_addr().unwrap())).unwrap();
        let (tx, rx) = oneshot::channel();
        tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            let mut seen = Vec::new();
            let mut buf = [0u8; 4096];
            // Read the head, then as much body as Content-Length says.
            loop {
                let n = conn.read(&mut buf).await.unwrap();
                seen.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&seen).to_string();
                if let Some(end) = text.find("\r\n\r\n") {
                    let len = text
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap())
                        })
                        .unwrap_or(0);
                    if seen.len() >= end + 4 + len {
                        break;
                    }
                }
                if n == 0 {
                    break;
                }
            }
            let _ = tx.send(String::from_utf8_lossy(&seen).into_owned());
            match reply {
                Some(r) => {
                    // The client may hang up early (a cut answer): not this server's concern.
                    let _ = conn.write_all(&r).await;
                    let _ = conn.shutdown().await;
                }
                None => std::future::pending::<()>().await,
            }
        });
        (base, rx)
    }

    fn response(status: &str, body: &[u8]) -> Vec<u8> {
        let mut r = format!(
            "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        r.extend_from_slice(body);
        r
    }

    #[tokio::test]
    async fn a_form_post_carries_its_fields_and_credentials_and_reads_the_answer() {
        let (base, request) = server(Some(response("201 Created", b"{\"sid\":\"SM1\"}"))).await;
        let client = ReqwestHttpClient::new().unwrap();
        let url = base.join("Accounts/AC1/Messages.json").unwrap();
        let reply = client
            .post(
                HttpRequest::form(url, [("To", "+15550001"), ("Body", "code: 12 & 34")])
                    .basic_auth("AC1", Some("tok")),
            )
            .await
            .unwrap();
        assert_eq!(reply.status, StatusCode::CREATED);
        assert_eq!(reply.text(), "{\"sid\":\"SM1\"}");
        assert!(!reply.truncated);
        let seen = request.await.unwrap();
        assert!(
            seen.starts_with("POST /Accounts/AC1/Messages.json HTTP/1.1\r\n"),
            "{seen}"
        );
        let lower = seen.to_ascii_lowercase();
        assert!(
            lower.contains("content-type: application/x-www-form-urlencoded"),
            "{seen}"
        );
        assert!(seen.contains("authorization: Basic QUMxOnRvaw=="), "{seen}");
        assert!(lower.contains("user-agent: portcullis/"), "{seen}");
        assert!(
            seen.ends_with("To=%2B15550001&Body=code%3A+12+%26+34"),
            "{seen}"
        );
    }

    #[tokio::test]
    async fn a_json_post_sends_json_and_an_error_status_is_still_an_answer() {
        let (base, request) = server(Some(response("422 Unprocessable Entity", b"bad To"))).await;
        let client = ReqwestHttpClient::new().unwrap();
        let reply = client
            .post_json(
                base.join("send").unwrap(),
                http::HeaderMap::new(),
                serde_json::json!({"To": "+1", "Body": "123456"}),
            )
            .await
            .unwrap();
        assert_eq!(
            (reply.status.as_u16(), reply.text().as_str()),
            (422, "bad To")
        );
        let seen = request.await.unwrap();
        assert!(
            seen.to_ascii_lowercase()
                .contains("content-type: application/json"),
            "{seen}"
        );
        let body = &seen[seen.find("\r\n\r\n").unwrap() + 4..];
        let sent: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(sent, serde_json::json!({"To": "+1", "Body": "123456"}));
    }

    #[tokio::test]
    async fn a_huge_answer_is_cut_at_the_limit() {
        let body = vec![b'x'; MAX_REPLY_BYTES + 10_000];
        let (base, _request) = server(Some(response("200 OK", &body))).await;
        let reply = ReqwestHttpClient::new()
            .unwrap()
            .post(HttpRequest::json(base, serde_json::json!({})))
            .await
            .unwrap();
        assert_eq!(reply.body.len(), MAX_REPLY_BYTES);
        assert!(reply.truncated);
    }

    #[tokio::test]
    async fn a_silent_server_is_a_timeout() {
        let (base, _request) = server(None).await;
        let err = ReqwestHttpClient::new()
            .unwrap()
            .post(
                HttpRequest::json(base, serde_json::json!({})).timeout(Duration::from_millis(200)),
            )
            .await
            .unwrap_err();
        assert_eq!(err, HttpError::Timeout);
    }

    #[tokio::test]
    async fn a_refused_connection_is_told_without_the_url() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let url =
            url::Url::parse(&format!("http://127.0.0.1:{port}/send?api_key=SECRET42")).unwrap();
        let err = ReqwestHttpClient::new()
            .unwrap()
            .post(HttpRequest::form(url, [("a", "b")]))
            .await
            .unwrap_err();
        assert!(matches!(err, HttpError::Connect(_)), "{err:?}");
        let text = err.to_string();
        assert!(
            !text.contains("SECRET42") && !text.contains("/send"),
            "{text}"
        );
        assert!(text.starts_with("connection failed: "), "{text}");
    }
}

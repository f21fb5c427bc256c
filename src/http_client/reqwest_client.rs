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
            url,
            headers,
            body,
            timeout,
        } = request;
        let builder = self.client.post(url).timeout(timeout).headers(headers);
        let builder = match &body {
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

//! Outgoing HTTP requests behind the [`HttpClient`] port, so the code calling a provider (an SMS
//! API, and captcha and Duo verification to come) never sees reqwest and tests can answer for
//! the provider. The reqwest adapter is [`ReqwestHttpClient`].

mod reqwest_client;

pub use reqwest_client::ReqwestHttpClient;

use async_trait::async_trait;
use http::header::{HeaderName, HeaderValue, AUTHORIZATION};
use http::{HeaderMap, StatusCode};
use std::fmt;
use std::time::Duration;

/// The most of an answer's body that is read; the rest is dropped and
/// [`HttpReply::truncated`] says so. A provider's answer is a few hundred bytes.
pub const MAX_REPLY_BYTES: usize = 256 * 1024;

/// The body of a request.
#[derive(Clone, PartialEq)]
pub enum HttpBody {
    /// No body: a GET, whose parameters are in the URL's query.
    Empty,
    /// `application/x-www-form-urlencoded` fields, in order.
    Form(Vec<(String, String)>),
    /// `application/json`.
    Json(serde_json::Value),
}

/// One request to send: a POST with a body, or a GET ([`HttpRequest::get`]).
///
/// `Debug` shows the method, the URL's host and the header names only: the path, query,
/// header values and body may carry credentials or one-time codes.
#[derive(Clone)]
pub struct HttpRequest {
    /// `POST`, or `GET` for requests built with [`HttpRequest::get`].
    pub method: http::Method,
    /// Where to send it.
    pub url: url::Url,
    /// Extra headers (the body's content type is set from [`HttpRequest::body`]).
    pub headers: HeaderMap,
    /// What to send.
    pub body: HttpBody,
    /// The longest the whole exchange may take, connecting included.
    pub timeout: Duration,
}

/// How long a request may take when its builder is not told otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

impl HttpRequest {
    /// A form POST to `url`; returns the request, to be refined with the builder methods.
    pub fn form<K: Into<String>, V: Into<String>>(
        url: url::Url,
        fields: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        let fields = fields
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        Self::new(url, HttpBody::Form(fields))
    }

    /// A GET of `url` (its query carries any parameters).
    pub fn get(url: url::Url) -> Self {
        let mut r = Self::new(url, HttpBody::Empty);
        r.method = http::Method::GET;
        r
    }

    /// A JSON POST of `value` to `url`.
    pub fn json(url: url::Url, value: serde_json::Value) -> Self {
        Self::new(url, HttpBody::Json(value))
    }

    fn new(url: url::Url, body: HttpBody) -> Self {
        Self {
            method: http::Method::POST,
            url,
            headers: HeaderMap::new(),
            body,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Sets the timeout of the whole exchange.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Adds a header.
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.append(name, value);
        self
    }

    /// Sets `Authorization: Basic` from a username and an optional password.
    ///
    /// # Security
    /// The header is marked sensitive (HTTP/2 never indexes it) and never appears in `Debug`.
    pub fn basic_auth(self, username: &str, password: Option<&str>) -> Self {
        use base64::Engine;
        let pair = format!("{username}:{}", password.unwrap_or(""));
        let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
        self.authorization(&format!("Basic {encoded}"))
    }

    /// Sets `Authorization: Bearer token`.
    ///
    /// # Security
    /// As [`HttpRequest::basic_auth`].
    pub fn bearer_auth(self, token: &str) -> Self {
        self.authorization(&format!("Bearer {token}"))
    }

    fn authorization(mut self, value: &str) -> Self {
        // A credential with a control character cannot be sent; leaving the header out makes
        // the provider refuse, which the operator sees as a 401 in the log.
        if let Ok(mut v) = HeaderValue::from_str(value) {
            v.set_sensitive(true);
            self.headers.insert(AUTHORIZATION, v);
        }
        self
    }
}

impl fmt::Debug for HttpRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let body = match self.body {
            HttpBody::Empty => "none",
            HttpBody::Form(_) => "form",
            HttpBody::Json(_) => "json",
        };
        f.debug_struct("HttpRequest")
            .field("method", &self.method)
            .field("host", &self.url.host_str())
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("body", &body)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// An answer, whatever its status: deciding whether a 4xx is a failure is the caller's job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpReply {
    /// The status code.
    pub status: StatusCode,
    /// The body, at most [`MAX_REPLY_BYTES`] of it.
    pub body: Vec<u8>,
    /// Whether the body was longer than [`MAX_REPLY_BYTES`] and was cut.
    pub truncated: bool,
}

impl HttpReply {
    /// A reply with `status` and `body`, as a test double or an adapter builds it.
    pub fn new(status: StatusCode, body: impl Into<Vec<u8>>) -> Self {
        Self {
            status,
            body: body.into(),
            truncated: false,
        }
    }

    /// The body as text, invalid UTF-8 replaced.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON into `T`.
    ///
    /// # Errors
    /// The parse error.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }
}

/// Why no answer came. The text never holds the URL (its query may carry a key), a header or
/// the body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// No complete answer within the request's timeout.
    #[error("timed out")]
    Timeout,
    /// The connection (DNS, TCP, TLS) could not be made.
    #[error("connection failed: {0}")]
    Connect(String),
    /// Anything else: the request could not be sent or the answer read.
    #[error("request failed: {0}")]
    Request(String),
}

/// Sends HTTP requests. Held as `Arc<dyn HttpClient>` in the engine's services.
#[async_trait]
pub trait HttpClient: Send + Sync {
    /// Sends `request` (a POST, or the GET [`HttpRequest::get`] builds) and returns the
    /// answer, whatever its status.
    ///
    /// # Errors
    /// [`HttpError`] when no answer came.
    async fn post(&self, request: HttpRequest) -> Result<HttpReply, HttpError>;

    /// POSTs form `fields` to `url` with extra `headers`; see [`HttpClient::post`].
    ///
    /// # Errors
    /// As [`HttpClient::post`].
    async fn post_form(
        &self,
        url: url::Url,
        headers: HeaderMap,
        fields: Vec<(String, String)>,
    ) -> Result<HttpReply, HttpError> {
        let mut request = HttpRequest::form(url, fields);
        request.headers = headers;
        self.post(request).await
    }

    /// POSTs `value` as JSON to `url` with extra `headers`; see [`HttpClient::post`].
    ///
    /// # Errors
    /// As [`HttpClient::post`].
    async fn post_json(
        &self,
        url: url::Url,
        headers: HeaderMap,
        value: serde_json::Value,
    ) -> Result<HttpReply, HttpError> {
        let mut request = HttpRequest::json(url, value);
        request.headers = headers;
        self.post(request).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_of_a_request_shows_no_credential_path_or_body() {
        let url = url::Url::parse("https://api.example.com/send/KEY123?api_key=SECRETQ").unwrap();
        let r = HttpRequest::form(url.clone(), [("Body", "482913")])
            .basic_auth("AC1", Some("TOKEN-XYZ"));
        let b =
            HttpRequest::json(url, serde_json::json!({"code": "482913"})).bearer_auth("BEARER-ABC");
        for shown in [format!("{r:?}"), format!("{b:?}")] {
            for secret in [
                "KEY123",
                "SECRETQ",
                "482913",
                "TOKEN-XYZ",
                "BEARER-ABC",
                "QUMx",
            ] {
                assert!(!shown.contains(secret), "{secret} in {shown}");
            }
            assert!(shown.contains("api.example.com"), "{shown}");
            assert!(shown.contains("authorization"), "{shown}");
        }
    }

    #[test]
    fn basic_auth_is_base64_of_user_colon_password_and_sensitive() {
        let url = url::Url::parse("http://127.0.0.1/").unwrap();
        let r = HttpRequest::form(url.clone(), [("a", "b")]).basic_auth("user", Some("pa:ss"));
        let v = &r.headers[AUTHORIZATION];
        assert_eq!(v, "Basic dXNlcjpwYTpzcw==");
        assert!(v.is_sensitive());
        let none = HttpRequest::form(url.clone(), [("a", "b")]).basic_auth("user", None);
        assert_eq!(none.headers[AUTHORIZATION], "Basic dXNlcjo=");
        // A credential that cannot be a header value is left out, never sent mangled.
        let bad = HttpRequest::json(url, serde_json::json!({})).bearer_auth("a\nb");
        assert!(bad.headers.get(AUTHORIZATION).is_none());
    }
}

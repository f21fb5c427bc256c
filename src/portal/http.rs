//! Transport-neutral request and response for the gateway's own endpoints, so the handlers
//! know nothing of Pingora and can be driven by any listener.

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};

/// A request to a `/.portcullis/` endpoint.
pub struct Request<'a> {
    pub method: &'a Method,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
    pub body: Bytes,
    /// `http` or `https`, as the client reached us.
    pub scheme: &'a str,
    /// The Host the client used, with port if any.
    pub authority: &'a str,
    /// The client's address, for logs and limits.
    pub client: &'a str,
}

impl Request<'_> {
    pub fn tls(&self) -> bool {
        self.scheme == "https"
    }

    /// A query parameter, decoded.
    pub fn query_param(&self, name: &str) -> Option<String> {
        let q = self.query?;
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }

    /// The media type of the body, lower-cased, without parameters.
    pub fn content_type(&self) -> Option<String> {
        let v = self
            .headers
            .get(http::header::CONTENT_TYPE)?
            .to_str()
            .ok()?;
        Some(v.split(';').next().unwrap_or(v).trim().to_ascii_lowercase())
    }
}

/// The policy of a page whose forms may lead only to its own origin.
pub const STRICT_CSP: &str = "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The policy of the gateway's pages: [`STRICT_CSP`] with `form-action` naming exactly the
/// origins a form may lead to, `'self'` plus `origins` (every app's and the auth host's).
///
/// Chromium applies `form-action` to the redirects that follow a form post, so the sign-in
/// form on the auth host, answered with a `303` to the app, needs the app's origin listed;
/// with `'self'` alone the browser stays on the password page.
pub fn page_csp<'a>(origins: impl Iterator<Item = &'a crate::config::PublicOrigin>) -> HeaderValue {
    let mut sources: Vec<&str> = vec!["'self'"];
    for o in origins {
        if !sources.contains(&o.as_str()) {
            sources.push(o.as_str());
        }
    }
    let policy = STRICT_CSP.replace(
        "form-action 'self'",
        &format!("form-action {}", sources.join(" ")),
    );
    // Origins are validated DNS names or IPv4 addresses with a scheme and port: always a
    // valid header value. Should that ever fail, the strict policy is the safe answer.
    HeaderValue::from_str(&policy).unwrap_or(HeaderValue::from_static(STRICT_CSP))
}

/// A complete response.
#[derive(Debug)]
pub struct Response {
    pub status: StatusCode,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Bytes,
}

impl Response {
    pub fn new(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Self {
        let mut r = Self {
            status,
            headers: Vec::with_capacity(4),
            body: body.into(),
        };
        r.headers.push((
            http::header::CONTENT_TYPE,
            HeaderValue::from_static(content_type),
        ));
        r.headers.push((
            http::header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ));
        r
    }

    /// An HTML page. It carries [`STRICT_CSP`]; the gateway widens its `form-action` to the
    /// configured origins ([`page_csp`]) when it sends the page.
    pub fn html(status: StatusCode, body: impl Into<Bytes>) -> Self {
        let mut r = Self::new(status, "text/html; charset=utf-8", body);
        // Our pages embed nothing from elsewhere and must not be framed (clickjacking).
        r.headers.push((
            http::header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(STRICT_CSP),
        ));
        r.headers.push((
            http::header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ));
        r
    }

    pub fn json(status: StatusCode, v: &serde_json::Value) -> Self {
        Self::new(status, "application/json", v.to_string())
    }

    pub fn text(status: StatusCode, body: &'static str) -> Self {
        Self::new(
            status,
            "text/plain; charset=utf-8",
            Bytes::from_static(body.as_bytes()),
        )
    }

    /// A redirect; `303` after a form post, `302` otherwise.
    pub fn redirect(status: StatusCode, location: &str) -> Self {
        let mut r = Self::new(status, "text/plain; charset=utf-8", Bytes::new());
        if let Ok(v) = HeaderValue::from_str(location) {
            r.headers.push((http::header::LOCATION, v));
        }
        r
    }

    pub fn set_cookie(mut self, value: String) -> Self {
        if let Ok(v) = HeaderValue::from_str(&value) {
            self.headers.push((http::header::SET_COOKIE, v));
        }
        self
    }
}

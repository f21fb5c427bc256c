//! The transport-neutral request for the gateway's own endpoints, so the handlers know
//! nothing of Pingora and can be driven by any listener; they answer with a
//! [`crate::reply::Response`].

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method};

/// A request to a `/.portcullis/` endpoint.
pub struct Request<'a> {
    /// The method.
    pub method: &'a Method,
    /// The path, without query.
    pub path: &'a str,
    /// The query string, if any.
    pub query: Option<&'a str>,
    /// The headers, identity headers already stripped.
    pub headers: &'a HeaderMap,
    /// The whole body (at most [`super::MAX_BODY`]).
    pub body: Bytes,
    /// `http` or `https`, as the client reached us.
    pub scheme: &'a str,
    /// The Host the client used, with port if any.
    pub authority: &'a str,
    /// The client's address, for logs and limits.
    pub client: &'a str,
}

impl Request<'_> {
    /// Whether the client reached us over HTTPS.
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

/// The policy of the gateway's pages: `base` ([`crate::reply::STRICT_CSP`], or
/// [`crate::reply::SCRIPTED_CSP`] for a passkey page) with `form-action` naming exactly the
/// origins a form may lead to, `'self'` plus `origins` (every app's and the auth host's).
///
/// Chromium applies `form-action` to the redirects that follow a form post, so the sign-in
/// form on the auth host, answered with a `303` to the app, needs the app's origin listed;
/// with `'self'` alone the browser stays on the password page.
pub(super) fn page_csp<'a>(
    origins: impl Iterator<Item = &'a crate::config::PublicOrigin>,
    base: &'static str,
) -> HeaderValue {
    let mut sources: Vec<&str> = vec!["'self'"];
    for o in origins {
        if !sources.contains(&o.as_str()) {
            sources.push(o.as_str());
        }
    }
    let policy = base.replace(
        "form-action 'self'",
        &format!("form-action {}", sources.join(" ")),
    );
    // Origins are validated DNS names or IPv4 addresses with a scheme and port: always a
    // valid header value. Should that ever fail, the unwidened policy is the safe answer.
    HeaderValue::from_str(&policy).unwrap_or(HeaderValue::from_static(base))
}

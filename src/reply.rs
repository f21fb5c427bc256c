//! The transport-neutral HTTP answer every face of the gateway gives (the portal's pages, the
//! forward-auth verdicts, the proxy's own replies), and the answers the access decision shares
//! between the proxy and forward-auth. It knows no listener: the proxy writes it to Pingora.

use bytes::Bytes;
use http::{HeaderName, HeaderValue, StatusCode};
use serde_json::json;

/// The policy of a page whose forms may lead only to its own origin.
pub const STRICT_CSP: &str = "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The policy of a page that runs a WebAuthn ceremony: [`STRICT_CSP`] plus the gateway's own
/// scripts (`script-src 'self'`: the one script it serves, no inline code, no other origin).
pub const SCRIPTED_CSP: &str = "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; script-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// A complete response.
#[derive(Debug)]
pub struct Response {
    /// The status.
    pub status: StatusCode,
    /// The headers, in order (`Content-Length` is added when it is sent).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// The whole body.
    pub body: Bytes,
}

impl Response {
    /// A response of `content_type` that no cache keeps (`Cache-Control: no-store`).
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

    /// An HTML page that loads the gateway's WebAuthn script: as [`Response::html`], under
    /// [`SCRIPTED_CSP`].
    pub fn html_scripted(status: StatusCode, body: impl Into<Bytes>) -> Self {
        let mut r = Self::html(status, body);
        for (name, value) in &mut r.headers {
            if *name == http::header::CONTENT_SECURITY_POLICY {
                *value = HeaderValue::from_static(SCRIPTED_CSP);
            }
        }
        r
    }

    /// A JSON document.
    pub fn json(status: StatusCode, v: &serde_json::Value) -> Self {
        Self::new(status, "application/json", v.to_string())
    }

    /// Plain text.
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

    /// Adds a `Set-Cookie` header (dropped if `value` is no valid header value).
    pub fn set_cookie(mut self, value: String) -> Self {
        if let Ok(v) = HeaderValue::from_str(&value) {
            self.headers.push((http::header::SET_COOKIE, v));
        }
        self
    }
}

/// Not signed in: a redirect for a browser page load, a 401 with the sign-in URL otherwise.
pub fn unauthenticated(login: &str, navigation: bool) -> Response {
    if navigation {
        Response::redirect(StatusCode::FOUND, login)
    } else {
        Response::json(
            StatusCode::UNAUTHORIZED,
            &json!({ "error": "unauthenticated", "login": login }),
        )
    }
}

/// Signed in, but the app's flow asks for more than the session proves: a redirect to the
/// step-up sign-in for a page load, otherwise a 401 naming it (`login`), with its own `error`
/// so a client can tell "sign in again" from "confirm it is you".
pub fn step_up(login: &str, navigation: bool) -> Response {
    if navigation {
        Response::redirect(StatusCode::FOUND, login)
    } else {
        Response::json(
            StatusCode::UNAUTHORIZED,
            &json!({ "error": "step_up_required", "login": login }),
        )
    }
}

/// A JSON error body, `{"error": <code>, "message": <text>}`.
pub fn json_error(status: StatusCode, error: &str, message: &str) -> Response {
    Response::json(status, &json!({ "error": error, "message": message }))
}

/// Whether the client reads HTML (a browser): its `Accept` names `text/html`.
pub fn wants_html(headers: &http::HeaderMap) -> bool {
    headers
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"))
}

//! Forward-auth for nginx (`auth_request`), Traefik (`ForwardAuth`) and Caddy (`forward_auth`).
//! Each transport only reconstructs the original request from its proxy's headers and turns
//! the one access decision ([`crate::access`]) into the answer its proxy expects.

use crate::access::{is_navigation, is_plain_authority, AccessRequest, Decision, Gate};
use crate::reply::{self, Response};
use http::{HeaderMap, HeaderValue, Method, StatusCode};

/// Which proxy is asking, and so which headers describe the original request and which
/// answers it understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// `auth_request`: only 2xx, 401 and 403 are understood; 401 carries `Location`.
    Nginx,
    /// `ForwardAuth`: any non-2xx answer is returned to the browser as is.
    Traefik,
    /// `forward_auth`: like Traefik.
    Caddy,
}

impl Flavor {
    /// The server's name: `nginx`, `traefik` or `caddy`.
    pub fn as_str(self) -> &'static str {
        match self {
            Flavor::Nginx => "nginx",
            Flavor::Traefik => "traefik",
            Flavor::Caddy => "caddy",
        }
    }
}

/// The forward-auth endpoint for a path: ours, or Authelia's for drop-in compatibility.
pub fn route(path: &str) -> Option<Flavor> {
    match path {
        "/.portcullis/auth/nginx" | "/api/authz/auth-request" => Some(Flavor::Nginx),
        "/.portcullis/auth/traefik" | "/api/authz/forward-auth" => Some(Flavor::Traefik),
        "/.portcullis/auth/caddy" => Some(Flavor::Caddy),
        _ => None,
    }
}

/// Whether the path is one of Authelia's, which we only answer on hosts that are not
/// protected apps (so an app's own `/api/authz/...` still reaches the app).
pub fn is_compat_path(path: &str) -> bool {
    path.starts_with("/api/authz/")
}

/// The original request, owned (it is rebuilt from headers).
struct Original {
    method: Method,
    scheme: String,
    authority: String,
    path_and_query: String,
}

impl Original {
    fn path(&self) -> &str {
        self.path_and_query.split('?').next().unwrap_or("/")
    }
}

/// The request the forward-auth call itself is, judged as it arrived.
pub struct Arrived<'a> {
    /// Its method.
    pub method: &'a Method,
    /// `http` or `https`, as it reached us.
    pub scheme: &'a str,
    /// Its Host.
    pub authority: &'a str,
    /// Its target.
    pub path_and_query: &'a str,
    /// Its headers, which describe the original request.
    pub headers: &'a HeaderMap,
    /// The original client's address by the trusted-proxy rule (the peer's own, unless the
    /// peer is a trusted proxy naming one in `X-Forwarded-For`), for rules with `networks`.
    pub client: Option<std::net::IpAddr>,
}

/// Why a trusted proxy's description of the original request is not used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unusable {
    /// It sent none: the request is judged as it arrived.
    Absent,
    /// It sent one that describes no request (say a Host that nginx accepts but no URL parser
    /// does, or bytes that are not text); the value is the header. Denied: falling back to
    /// other headers, which the client may have set and the proxy passed along, would let the
    /// client choose what is judged.
    Malformed(&'static str),
    /// `X-Original-URL` names another host than the one nginx routed the request on
    /// (`X-Forwarded-Host`, `$host` in the shipped example). Refused with `400`.
    HostMismatch,
}

/// A header's trimmed text: `None` when absent or empty, `Malformed` when not text.
fn text<'a>(h: &'a HeaderMap, name: &'static str) -> Result<Option<&'a str>, Unusable> {
    match h.get(name).map(|v| v.to_str()) {
        None => Ok(None),
        Some(Ok(v)) => Ok(Some(v.trim()).filter(|v| !v.is_empty())),
        Some(Err(_)) => Err(Unusable::Malformed(name)),
    }
}

fn method(h: &HeaderMap, name: &'static str) -> Result<Method, Unusable> {
    match text(h, name)? {
        Some(m) => Method::from_bytes(m.as_bytes()).map_err(|_| Unusable::Malformed(name)),
        None => Ok(Method::GET),
    }
}

/// `X-Forwarded-Proto` as `http` or `https` (Traefik says `ws`/`wss` for WebSockets; a chain
/// of proxies may list several, the first being the client's).
fn scheme(h: &HeaderMap, arrived: &Arrived<'_>) -> Result<String, Unusable> {
    let Some(v) = text(h, "x-forwarded-proto")? else {
        return Ok(arrived.scheme.to_string());
    };
    match v.split(',').next().map(str::trim) {
        Some(p) if p.eq_ignore_ascii_case("http") || p.eq_ignore_ascii_case("ws") => {
            Ok("http".into())
        }
        Some(p) if p.eq_ignore_ascii_case("https") || p.eq_ignore_ascii_case("wss") => {
            Ok("https".into())
        }
        _ => Err(Unusable::Malformed("x-forwarded-proto")),
    }
}

/// A request target in origin form (`/path?query`).
fn origin_form(v: &str, name: &'static str) -> Result<String, Unusable> {
    if v.starts_with('/') {
        Ok(v.to_string())
    } else {
        Err(Unusable::Malformed(name))
    }
}

fn from_nginx(h: &HeaderMap, arrived: &Arrived<'_>) -> Result<Original, Unusable> {
    let method = method(h, "x-original-method")?;
    if let Some(raw) = text(h, "x-original-url")? {
        let bad = Unusable::Malformed("x-original-url");
        let u = url::Url::parse(raw).map_err(|_| bad)?;
        if !matches!(u.scheme(), "http" | "https") || !is_plain_authority(raw_authority(raw)) {
            return Err(bad);
        }
        let host = u.host_str().filter(|h| !h.is_empty()).ok_or(bad)?;
        if let Some(routed) = text(h, "x-forwarded-host")? {
            let url_host = host.trim_start_matches('[').trim_end_matches(']');
            if !url_host.eq_ignore_ascii_case(crate::access::host_of(routed)) {
                tracing::warn!(url_host, routed, "forward-auth: X-Original-URL names another host than the one nginx routed on; refused");
                return Err(Unusable::HostMismatch);
            }
        }
        let authority = match u.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_string(),
        };
        return Ok(Original {
            method,
            scheme: u.scheme().to_string(),
            authority,
            path_and_query: raw_path_and_query(raw).ok_or(bad)?,
        });
    }
    let Some(uri) = text(h, "x-original-uri")? else {
        return Err(Unusable::Absent);
    };
    Ok(Original {
        method,
        scheme: scheme(h, arrived)?,
        authority: match text(h, "x-forwarded-host")? {
            Some(host) => host,
            None => text(h, "host")?.unwrap_or(arrived.authority),
        }
        .to_string(),
        path_and_query: origin_form(uri, "x-original-uri")?,
    })
}

/// The authority of an absolute URL exactly as written.
///
/// # Security
/// Judged as written, as the path is: the URL parser decodes and maps a host
/// (`wiki%2eexample%2etest`, `%77iki...`, a tab inside it all become `wiki.example.test`) that
/// nginx routed as sent, to a catch-all server when it names none. Only a plain `host[:port]`,
/// which both read the same, describes a request.
fn raw_authority(url: &str) -> &str {
    let rest = url.split_once("://").map_or("", |(_, r)| r);
    &rest[..rest.find(['/', '?', '#', '\\']).unwrap_or(rest.len())]
}

/// The path and query of an absolute URL exactly as written, `/` when it has none.
///
/// # Security
/// Not the URL parser's path: it resolves dot segments (`/public//../secret` becomes
/// `/public/secret`) where nginx, merging slashes first, reads `/secret`. The decision must see
/// what was sent, so that [`crate::access::is_plain_path`] keeps such a path from a bypass rule.
fn raw_path_and_query(url: &str) -> Option<String> {
    let (_, rest) = url.split_once("://")?;
    // The authority ends at the first `/`, `?` or `#`; a `\` there is refused, as the URL
    // parser would have read it as a `/` and found another host than this split.
    let end = rest.find(['/', '?', '#', '\\']).unwrap_or(rest.len());
    let tail = &rest[end..];
    match tail.as_bytes().first() {
        None => Some("/".to_string()),
        Some(b'/') => Some(tail.to_string()),
        Some(b'?') => Some(format!("/{tail}")),
        _ => None,
    }
}

fn from_forwarded(h: &HeaderMap, arrived: &Arrived<'_>) -> Result<Original, Unusable> {
    let Some(authority) = text(h, "x-forwarded-host")? else {
        return Err(Unusable::Absent);
    };
    Ok(Original {
        method: method(h, "x-forwarded-method")?,
        scheme: scheme(h, arrived)?,
        authority: authority.to_string(),
        path_and_query: match text(h, "x-forwarded-uri")? {
            Some(uri) => origin_form(uri, "x-forwarded-uri")?,
            None => "/".to_string(),
        },
    })
}

/// Answers one forward-auth call. `trusted` says whether the caller is a trusted proxy: only
/// then are its headers believed. `ui` renders the page of a refusal by the app's policies
/// (Traefik and Caddy hand a non-2xx answer's body to the client; nginx shows its own).
pub fn handle(
    gate: &Gate,
    ui: &crate::ui::Ui,
    flavor: Flavor,
    arrived: &Arrived<'_>,
    trusted: bool,
) -> Response {
    let original = match original(flavor, arrived, trusted) {
        Ok(o) => o,
        Err(refusal) => return refusal,
    };
    let req = AccessRequest {
        method: &original.method,
        scheme: &original.scheme,
        authority: &original.authority,
        path: original.path(),
        path_and_query: &original.path_and_query,
        headers: arrived.headers,
        client: arrived.client,
    };
    let decision = gate.decide(&req);
    match decision {
        Decision::Allow { claims, .. } => allowed(gate, &claims),
        Decision::Bypass { .. } => empty(StatusCode::OK),
        // A step-up is answered the way the proxy in front expects a sign-in: its config sends
        // the browser to the URL given, which asks only for what the session lacks.
        Decision::Unauthenticated { app, .. } | Decision::StepUp { app, .. } => {
            let step_up = matches!(decision, Decision::StepUp { .. });
            let login = gate.login_url_absolute(app, &req);
            let navigation = is_navigation(&original.method, arrived.headers);
            sign_in(flavor, &login, navigation, step_up)
        }
        Decision::Denied { claims, .. } => {
            let user = claims.as_ref().map_or("-", |c| c.sub.as_str());
            tracing::info!(user, host = %original.authority, "forward-auth: access denied by a deny rule");
            empty(StatusCode::FORBIDDEN)
        }
        Decision::Refused {
            claims, messages, ..
        } => ui.refused(
            &claims.sub,
            &messages,
            crate::reply::wants_html(arrived.headers),
        ),
        Decision::Forbidden { claims, .. } => {
            tracing::info!(user = %claims.sub, host = %original.authority, "forward-auth: access denied by allowed_groups");
            empty(StatusCode::FORBIDDEN)
        }
        Decision::UnknownHost => {
            tracing::warn!(host = %original.authority, trusted, "forward-auth for a host no app is configured for; denied");
            empty(StatusCode::FORBIDDEN)
        }
    }
}

/// The original request: as a trusted proxy describes it, else as the call arrived. `Err`
/// is the refusal of a description that cannot be used.
fn original(flavor: Flavor, arrived: &Arrived<'_>, trusted: bool) -> Result<Original, Response> {
    let as_arrived = || Original {
        method: arrived.method.clone(),
        scheme: arrived.scheme.to_string(),
        authority: arrived.authority.to_string(),
        path_and_query: arrived.path_and_query.to_string(),
    };
    if !trusted {
        return Ok(as_arrived());
    }
    let told = match flavor {
        Flavor::Nginx => from_nginx(arrived.headers, arrived),
        Flavor::Traefik | Flavor::Caddy => from_forwarded(arrived.headers, arrived),
    };
    match told {
        // As the proxy mode refuses such a `Host`: `wiki.test:1@evil.test` would be judged
        // as wiki.test and shape the sign-in URL into one that leads to evil.test.
        Ok(original) if !is_plain_authority(&original.authority) => {
            tracing::warn!(
                ?flavor,
                "forward-auth: the described host is not a plain host[:port]; denied"
            );
            Err(empty(StatusCode::FORBIDDEN))
        }
        Ok(original) => Ok(original),
        Err(Unusable::Absent) => Ok(as_arrived()),
        Err(Unusable::HostMismatch) => Err(empty(StatusCode::BAD_REQUEST)),
        Err(Unusable::Malformed(header)) => {
            tracing::warn!(header, ?flavor, "forward-auth: the proxy described the original request with an unusable header; denied");
            Err(empty(StatusCode::FORBIDDEN))
        }
    }
}

/// `200` with the identity headers the proxy copies to the app.
fn allowed(gate: &Gate, claims: &crate::session::Claims) -> Response {
    let names = &gate.config().headers;
    let mut r = empty(StatusCode::OK);
    // The same values the proxy sends upstream, built once per session.
    if let Some([user, name, email, groups]) = claims.identity_values() {
        r.headers.extend([
            (names.user.clone(), user.clone()),
            (names.name.clone(), name.clone()),
            (names.email.clone(), email.clone()),
            (names.groups.clone(), groups.clone()),
        ]);
    }
    r
}

/// The way to the sign-in at `login`, as each proxy understands it.
fn sign_in(flavor: Flavor, login: &str, navigation: bool, step_up: bool) -> Response {
    match flavor {
        // `auth_request` understands only 401 here, so nginx's config must turn it into a
        // redirect itself. Location always carries the sign-in URL (Authelia's answer, for
        // configs written for it); [`REDIRECT_HEADER`] carries it only when a redirect is
        // right, so the shipped config can answer XHR/fetch with 401.
        Flavor::Nginx => {
            let r = with_location(empty(StatusCode::UNAUTHORIZED), login);
            if navigation {
                with_header(r, REDIRECT_HEADER, login)
            } else {
                r
            }
        }
        _ if navigation => Response::redirect(StatusCode::FOUND, login),
        _ if step_up => reply::step_up(login, false),
        _ => reply::unauthenticated(login, false),
    }
}

/// An empty answer: `Content-Length: 0` keeps nginx's upstream connection alive.
fn empty(status: StatusCode) -> Response {
    Response {
        status,
        headers: Vec::new(),
        body: bytes::Bytes::new(),
    }
}

/// On nginx's 401: the sign-in URL when the original request is a page navigation that
/// should be redirected there; absent for XHR/fetch, which should see the 401.
pub const REDIRECT_HEADER: http::HeaderName =
    http::HeaderName::from_static("x-portcullis-redirect");

fn with_location(r: Response, location: &str) -> Response {
    with_header(r, http::header::LOCATION, location)
}

fn with_header(mut r: Response, name: http::HeaderName, value: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(value) {
        r.headers.push((name, v));
    }
    r
}

#[cfg(test)]
mod props;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_ours_and_authelia_paths() {
        assert_eq!(route("/.portcullis/auth/nginx"), Some(Flavor::Nginx));
        assert_eq!(route("/api/authz/forward-auth"), Some(Flavor::Traefik));
        assert_eq!(route("/.portcullis/auth/caddy"), Some(Flavor::Caddy));
        assert_eq!(route("/other"), None);
    }

    fn arrived(h: &HeaderMap) -> Arrived<'_> {
        Arrived {
            method: &Method::GET,
            scheme: "http",
            authority: "127.0.0.1:9000",
            path_and_query: "/.portcullis/auth/nginx",
            headers: h,
            client: None,
        }
    }

    #[test]
    fn a_bad_original_url_is_not_replaced_by_other_headers() {
        let mut h = HeaderMap::new();
        // A Host nginx accepts, in a URL no parser does; the rest set by the client.
        h.insert("x-original-url", "http://wiki.test^/admin".parse().unwrap());
        h.insert("x-original-uri", "/public/x".parse().unwrap());
        h.insert("x-forwarded-host", "wiki.test".parse().unwrap());
        assert!(matches!(
            from_nginx(&h, &arrived(&h)),
            Err(Unusable::Malformed("x-original-url"))
        ));
        h.insert(
            "x-original-url",
            HeaderValue::from_bytes(b"http://wiki.test\xff/admin").unwrap(),
        );
        assert!(matches!(
            from_nginx(&h, &arrived(&h)),
            Err(Unusable::Malformed("x-original-url"))
        ));
        h.remove("x-original-url");
        let o = from_nginx(&h, &arrived(&h)).ok().unwrap();
        assert_eq!((o.authority.as_str(), o.path()), ("wiki.test", "/public/x"));
    }

    #[test]
    fn original_url_must_name_the_routed_host() {
        let mut h = HeaderMap::new();
        h.insert(
            "x-original-url",
            "http://wiki.test:8080/public/x".parse().unwrap(),
        );
        for routed in ["grafana.test", "wiki.test.evil", "wiki", "[::1]"] {
            h.insert("x-forwarded-host", routed.parse().unwrap());
            assert!(
                matches!(from_nginx(&h, &arrived(&h)), Err(Unusable::HostMismatch)),
                "{routed}"
            );
        }
        // The routed host has no port (`$host`); case does not matter.
        for routed in ["wiki.test", "WIKI.test", "wiki.test:8080"] {
            h.insert("x-forwarded-host", routed.parse().unwrap());
            let o = from_nginx(&h, &arrived(&h)).ok().unwrap();
            assert_eq!(o.authority, "wiki.test:8080", "{routed}");
        }
        h.insert("x-original-url", "http://[::1]:9/x".parse().unwrap());
        h.insert("x-forwarded-host", "[::1]".parse().unwrap());
        assert!(from_nginx(&h, &arrived(&h)).is_ok());
        // Without a routed host, the URL alone describes the request (older configs).
        h.remove("x-forwarded-host");
        assert!(from_nginx(&h, &arrived(&h)).is_ok());
    }

    #[test]
    fn original_url_path_is_judged_as_sent() {
        let mut h = HeaderMap::new();
        for (url, pq) in [
            ("http://wiki.test/public//../secret", "/public//../secret"),
            (
                "http://wiki.test/public/..%2fsecret?a=b",
                "/public/..%2fsecret?a=b",
            ),
            ("http://wiki.test/public/%2e%2e/x", "/public/%2e%2e/x"),
            ("https://wiki.test:1/./x", "/./x"),
            ("http://wiki.test", "/"),
            ("http://wiki.test?x=1", "/?x=1"),
        ] {
            h.insert("x-original-url", url.parse().unwrap());
            let o = from_nginx(&h, &arrived(&h)).ok().unwrap();
            assert_eq!(o.path_and_query, pq, "{url}");
        }
        h.insert(
            "x-original-url",
            "http://wiki.test\\@evil.test/x".parse().unwrap(),
        );
        assert!(from_nginx(&h, &arrived(&h)).is_err());
    }

    #[test]
    fn original_url_host_is_judged_as_written() {
        let mut h = HeaderMap::new();
        for bent in [
            "http://wiki%2etest/public/x",
            "http://%77iki.test/public/x",
            "http://wi\tki.test/public/x",
            "http://x@wiki.test/public/x",
            "http://0x7f.1/public/x",
        ] {
            h.insert("x-original-url", bent.parse().unwrap());
            assert!(
                matches!(
                    from_nginx(&h, &arrived(&h)),
                    Err(Unusable::Malformed("x-original-url"))
                ),
                "{bent:?}"
            );
        }
        for plain in [
            "http://WIKI.test/x",
            "https://wiki.test:8443?q",
            "http://[::1]:9/x",
        ] {
            h.insert("x-original-url", plain.parse().unwrap());
            assert!(from_nginx(&h, &arrived(&h)).is_ok(), "{plain}");
        }
    }

    #[test]
    fn forwarded_headers_must_describe_a_request() {
        let mut h = HeaderMap::new();
        assert!(matches!(
            from_forwarded(&h, &arrived(&h)),
            Err(Unusable::Absent)
        ));
        h.insert("x-forwarded-host", "wiki.test".parse().unwrap());
        h.insert("x-forwarded-proto", "wss".parse().unwrap());
        let o = from_forwarded(&h, &arrived(&h)).ok().unwrap();
        assert_eq!((o.scheme.as_str(), o.path()), ("https", "/"));
        h.insert("x-forwarded-uri", "http://evil/x".parse().unwrap());
        assert!(matches!(
            from_forwarded(&h, &arrived(&h)),
            Err(Unusable::Malformed("x-forwarded-uri"))
        ));
    }
}

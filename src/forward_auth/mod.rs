//! Forward-auth for nginx (`auth_request`), Traefik (`ForwardAuth`) and Caddy (`forward_auth`).
//! Each transport only reconstructs the original request from its proxy's headers and turns
//! the one access decision ([`crate::access`]) into the answer its proxy expects.

use crate::access::{is_navigation, AccessRequest, Decision, Gate};
use crate::forwarded::header;
use crate::portal::Response;
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
    pub method: &'a Method,
    pub scheme: &'a str,
    pub authority: &'a str,
    pub path_and_query: &'a str,
    pub headers: &'a HeaderMap,
}

fn from_nginx(h: &HeaderMap, arrived: &Arrived<'_>) -> Option<Original> {
    let method = header(h, "x-original-method")
        .and_then(|m| Method::from_bytes(m.as_bytes()).ok())
        .unwrap_or(Method::GET);
    if let Some(u) = header(h, "x-original-url").and_then(|u| url::Url::parse(u).ok()) {
        let authority = match (u.host_str(), u.port()) {
            (Some(host), Some(port)) => format!("{host}:{port}"),
            (Some(host), None) => host.to_string(),
            (None, _) => return None,
        };
        let mut pq = u.path().to_string();
        if let Some(q) = u.query() {
            pq.push('?');
            pq.push_str(q);
        }
        return Some(Original {
            method,
            scheme: u.scheme().to_string(),
            authority,
            path_and_query: pq,
        });
    }
    Some(Original {
        method,
        scheme: header(h, "x-forwarded-proto")
            .unwrap_or(arrived.scheme)
            .to_string(),
        authority: header(h, "x-forwarded-host")
            .or_else(|| header(h, "host"))
            .unwrap_or(arrived.authority)
            .to_string(),
        path_and_query: header(h, "x-original-uri")?.to_string(),
    })
}

fn from_forwarded(h: &HeaderMap, arrived: &Arrived<'_>) -> Option<Original> {
    Some(Original {
        method: header(h, "x-forwarded-method")
            .and_then(|m| Method::from_bytes(m.as_bytes()).ok())
            .unwrap_or(Method::GET),
        scheme: header(h, "x-forwarded-proto")
            .unwrap_or(arrived.scheme)
            .to_string(),
        authority: header(h, "x-forwarded-host")?.to_string(),
        path_and_query: header(h, "x-forwarded-uri").unwrap_or("/").to_string(),
    })
}

/// Answers one forward-auth call. `trusted` says whether the caller is a trusted proxy: only
/// then are its headers believed.
pub fn handle(gate: &Gate, flavor: Flavor, arrived: &Arrived<'_>, trusted: bool) -> Response {
    let as_arrived = || Original {
        method: arrived.method.clone(),
        scheme: arrived.scheme.to_string(),
        authority: arrived.authority.to_string(),
        path_and_query: arrived.path_and_query.to_string(),
    };
    let original = if trusted {
        match flavor {
            Flavor::Nginx => from_nginx(arrived.headers, arrived),
            Flavor::Traefik | Flavor::Caddy => from_forwarded(arrived.headers, arrived),
        }
        .unwrap_or_else(as_arrived)
    } else {
        as_arrived()
    };
    let req = AccessRequest {
        method: &original.method,
        scheme: &original.scheme,
        authority: &original.authority,
        path: original.path(),
        path_and_query: &original.path_and_query,
        headers: arrived.headers,
    };
    let decision = gate.decide(&req);
    match decision {
        Decision::Allow { claims, .. } => {
            let names = &gate.config().headers;
            let mut r = empty(StatusCode::OK);
            let mut put = |name: &http::HeaderName, v: &str| {
                if let Ok(v) = HeaderValue::from_str(v) {
                    r.headers.push((name.clone(), v));
                }
            };
            put(&names.user, &claims.sub);
            put(&names.name, &claims.name);
            put(&names.email, &claims.email);
            put(&names.groups, &claims.groups.join(","));
            r
        }
        Decision::Bypass { .. } => empty(StatusCode::OK),
        Decision::Unauthenticated { app, .. } => {
            let login = gate.login_url_absolute(app, &req);
            match flavor {
                // nginx turns this into a redirect with `error_page 401 =302 ...`; the
                // Location header lets its config use `$upstream_http_location`.
                Flavor::Nginx => with_location(empty(StatusCode::UNAUTHORIZED), &login),
                _ if is_navigation(&original.method, arrived.headers) => {
                    Response::redirect(StatusCode::FOUND, &login)
                }
                _ => crate::portal::pages::unauthenticated(&login, false),
            }
        }
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

/// An empty answer: `Content-Length: 0` keeps nginx's upstream connection alive.
fn empty(status: StatusCode) -> Response {
    Response {
        status,
        headers: Vec::new(),
        body: bytes::Bytes::new(),
    }
}

fn with_location(mut r: Response, location: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers.push((http::header::LOCATION, v));
    }
    r
}

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
}

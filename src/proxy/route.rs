//! Where a request goes, decided from its head alone: [`Route`], one variant per kind of
//! answer, so the proxy's `request_filter` is a match of one-liners.

use crate::access::{is_plain_authority, Gate};
use crate::forward_auth::{self, Flavor};
use crate::portal::{JWKS, PING, PREFIX};
use pingora::http::RequestHeader;

/// What the gateway does with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Route {
    /// `/.portcullis/ping`, on any host: `200 pong`.
    Ping,
    /// `/.portcullis/jwks.json`, on any host: the assertion keys.
    Jwks,
    /// A `Host` that is not a plain host name and port: `400`.
    BadHost,
    /// A forward-auth call from nginx, Traefik or Caddy.
    ForwardAuth(Flavor),
    /// Plain HTTP to one of our hosts with `redirect_http`: `308` to this location.
    ToHttps(String),
    /// A gateway endpoint under `/.portcullis/`.
    Portal,
    /// The auth host's root page.
    AuthHome,
    /// Anything else on the auth host: `404`.
    AuthNotFound,
    /// A request for an app (or an unknown host): the access decision says.
    App,
}

impl Route {
    /// The route's name, the access log's `outcome` for routes that need no decision.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Route::Ping => "ping",
            Route::Jwks => "jwks",
            Route::BadHost => "bad_host",
            Route::ForwardAuth(_) => "forward_auth",
            Route::ToHttps(_) => "to_https",
            Route::Portal => "portal",
            Route::AuthHome => "auth_home",
            Route::AuthNotFound => "not_found",
            Route::App => "app",
        }
    }
}

/// Where the proxy sends requests, prepared once from config.
pub(crate) struct Router {
    /// Where `redirect_http` sends plain-HTTP requests.
    pub(crate) https_port: Option<u16>,
}

impl Router {
    /// The route of a request whose identity headers are already stripped; `tls` says how it
    /// reached us.
    pub(crate) fn route(&self, gate: &Gate, req: &RequestHeader, tls: bool) -> Route {
        let path = req.uri.path();
        match path {
            PING => return Route::Ping,
            JWKS => return Route::Jwks,
            _ => {}
        }
        let host = authority(req);
        if !host.is_empty() && !is_plain_authority(host) {
            return Route::BadHost;
        }
        if let Some(flavor) = forward_auth::route(path) {
            // Authelia's paths are ours only on hosts that are not protected apps.
            if !forward_auth::is_compat_path(path) || gate.app(host).is_none() {
                return Route::ForwardAuth(flavor);
            }
        }
        if let Some(location) = self.https_location(gate, req, tls) {
            return Route::ToHttps(location);
        }
        if path.starts_with(PREFIX) {
            return Route::Portal;
        }
        match (gate.is_auth_host(host), path) {
            (true, "/") => Route::AuthHome,
            (true, _) => Route::AuthNotFound,
            (false, _) => Route::App,
        }
    }

    /// With `redirect_http`, plain-HTTP requests for our hosts go to the same path on the
    /// host's configured (HTTPS) origin; a host that is not ours gets no redirect (it is
    /// answered `404` further on), so no `Host` header shapes the target.
    fn https_location(&self, gate: &Gate, req: &RequestHeader, tls: bool) -> Option<String> {
        if tls {
            return None;
        }
        self.https_port?;
        let origin = gate.public_origin(authority(req))?;
        Some(format!("{origin}{}", path_and_query(req)))
    }
}

/// The Host the client asked for (HTTP/1 `Host`, or the HTTP/2 authority).
pub(crate) fn authority(req: &RequestHeader) -> &str {
    req.headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri.authority().map(|a| a.as_str()))
        .unwrap_or("")
}

/// The request target, `/` when it has none.
pub(crate) fn path_and_query(req: &RequestHeader) -> &str {
    req.uri.path_and_query().map_or("/", |p| p.as_str())
}

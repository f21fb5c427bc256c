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
    /// `/.portcullis/health`, on any host: `200` while the process serves.
    Health,
    /// `/.portcullis/ready`, on any host: `200` when the database answers, else `503`.
    Ready,
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
            Route::Health => "health",
            Route::Ready => "ready",
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
            crate::ops::HEALTH => return Route::Health,
            crate::ops::READY => return Route::Ready,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn head(method: &str, target: &str, host: Option<&str>) -> RequestHeader {
        let mut req = RequestHeader::build(method, target.as_bytes(), None).expect("request");
        if let Some(h) = host {
            req.insert_header("host", h).expect("host header");
        }
        req
    }

    #[test]
    fn requests_take_the_route_their_head_names() {
        let dir = tempfile::tempdir().expect("tempdir");
        let gate = crate::access::tests::gate(dir.path());
        let router = Router { https_port: None };
        let cases: &[(&str, Option<&str>, Route)] = &[
            ("/.portcullis/ping", Some("nowhere.test"), Route::Ping),
            ("/.portcullis/ping", Some("bad host"), Route::Ping),
            ("/.portcullis/jwks.json", None, Route::Jwks),
            ("/.portcullis/health", Some("wiki.test"), Route::Health),
            ("/.portcullis/ready", Some("bad host"), Route::Ready),
            ("/.portcullis/health/", Some("wiki.test"), Route::Portal),
            ("/.portcullis/ready?x=1", Some("wiki.test"), Route::Ready),
            // Metrics are never served on the public listener: an app's own path.
            ("/metrics", Some("wiki.test"), Route::App),
            ("/", Some("wiki.test"), Route::App),
            ("/", Some("WIKI.test:8080"), Route::App),
            ("/", None, Route::App),
            ("/x", Some("unknown.test"), Route::App),
            ("/.portcullis/flow/f", Some("wiki.test"), Route::Portal),
            (
                "/.portcullis/auth/nginx",
                Some("wiki.test"),
                Route::ForwardAuth(Flavor::Nginx),
            ),
            (
                "/.portcullis/auth/traefik",
                Some("x.test"),
                Route::ForwardAuth(Flavor::Traefik),
            ),
            (
                "/.portcullis/auth/caddy",
                Some("x.test"),
                Route::ForwardAuth(Flavor::Caddy),
            ),
            // Authelia's paths are the app's own on an app's host.
            ("/api/authz/auth-request", Some("wiki.test"), Route::App),
            (
                "/api/authz/auth-request",
                Some("auth.test"),
                Route::ForwardAuth(Flavor::Nginx),
            ),
            (
                "/api/authz/forward-auth",
                Some("auth.test"),
                Route::ForwardAuth(Flavor::Traefik),
            ),
            // Host header tricks are refused before anything looks at the host.
            ("/", Some("wiki.test@evil.example"), Route::BadHost),
            ("/", Some("wiki.test/evil"), Route::BadHost),
            ("/", Some("wiki.test:99999"), Route::BadHost),
            ("/", Some("wiki.test:"), Route::BadHost),
            ("/", Some("wiki.test evil"), Route::BadHost),
            (
                "/.portcullis/flow/f",
                Some("wiki.test\\evil"),
                Route::BadHost,
            ),
            ("/.portcullis/auth/nginx", Some("[::1"), Route::BadHost),
            // Near misses of the gateway's paths are the app's, never the portal's.
            ("/.PORTCULLIS/flow/f", Some("wiki.test"), Route::App),
            ("//.portcullis/ping", Some("wiki.test"), Route::App),
            ("/%2Eportcullis/flow/f", Some("wiki.test"), Route::App),
            ("/x/.portcullis/flow/f", Some("wiki.test"), Route::App),
            ("/.portcullis", Some("wiki.test"), Route::App),
            // The query is not the path.
            ("/.portcullis/ping?x=/", Some("wiki.test"), Route::Ping),
            ("/?p=/.portcullis/flow/f", Some("wiki.test"), Route::App),
        ];
        for (target, host, want) in cases {
            let got = router.route(&gate, &head("GET", target, *host), false);
            assert_eq!(&got, want, "{target} on {host:?}");
        }
    }

    #[test]
    fn plain_http_goes_to_https_only_for_our_hosts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let gate = crate::access::tests::gate(dir.path());
        let router = Router {
            https_port: Some(8443),
        };
        let req = head("GET", "/a?b=c", Some("wiki.test:9000"));
        let want = format!("{}/a?b=c", gate.config().apps[0].origin());
        assert_eq!(router.route(&gate, &req, false), Route::ToHttps(want));
        assert_eq!(router.route(&gate, &req, true), Route::App);
        let other = head("GET", "/a", Some("evil.example"));
        assert_eq!(router.route(&gate, &other, false), Route::App);
    }
}

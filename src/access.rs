//! The one access decision. The proxy and every forward-auth transport ask this; none of them
//! has rules of its own.

use crate::config::{AppConfig, Config, PublicOrigin};
use crate::session::{cookie, Claims, SessionService};
use http::{HeaderMap, Method};
use std::collections::HashMap;
use std::sync::Arc;

/// The request being judged, as the transport reconstructed it.
pub struct AccessRequest<'a> {
    pub method: &'a Method,
    /// Scheme of the original request: `http` or `https`.
    pub scheme: &'a str,
    /// Host as sent, possibly with a port (`app.test:9000`).
    pub authority: &'a str,
    pub path: &'a str,
    /// Path plus query, for the return address.
    pub path_and_query: &'a str,
    pub headers: &'a HeaderMap,
}

/// The verdict.
#[derive(Debug)]
pub enum Decision<'a> {
    /// No app serves this host: answer 404, never forward.
    UnknownHost,
    /// The path is public for this app: forward without identity.
    Bypass { app: &'a AppConfig },
    /// Signed in and allowed.
    Allow {
        app: &'a AppConfig,
        claims: Arc<Claims>,
    },
    /// Not signed in. `navigation` says whether to redirect (a browser page load) or answer 401.
    Unauthenticated {
        app: &'a AppConfig,
        login: String,
        navigation: bool,
    },
    /// Signed in, but not in the app's allowed groups.
    Forbidden {
        app: &'a AppConfig,
        claims: Arc<Claims>,
    },
}

/// Holds what the decision needs, prepared once.
pub struct Gate {
    config: Arc<Config>,
    by_host: HashMap<String, usize>,
    sessions: Arc<SessionService>,
}

impl Gate {
    pub fn new(config: Arc<Config>, sessions: Arc<SessionService>) -> Self {
        let by_host = config
            .apps
            .iter()
            .enumerate()
            .flat_map(|(i, a)| a.hosts.iter().map(move |h| (h.clone(), i)))
            .collect();
        Self {
            config,
            by_host,
            sessions,
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn sessions(&self) -> &SessionService {
        &self.sessions
    }

    /// The app for a host (with or without port).
    pub fn app(&self, authority: &str) -> Option<&AppConfig> {
        let host = host_of(authority);
        let idx = if host.bytes().any(|b| b.is_ascii_uppercase()) {
            self.by_host.get(&host.to_ascii_lowercase())
        } else {
            self.by_host.get(host)
        };
        idx.map(|&i| &self.config.apps[i])
    }

    /// The verified session carried by these headers, if any.
    pub fn session(&self, headers: &HeaderMap) -> Option<Arc<Claims>> {
        let token = cookie::find(headers, &self.config.session.cookie_name)?;
        match self.sessions.verify(token) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::debug!(reason = %e, "session cookie refused");
                None
            }
        }
    }

    pub fn decide<'s>(&'s self, req: &AccessRequest<'_>) -> Decision<'s> {
        let Some(app) = self.app(req.authority) else {
            return Decision::UnknownHost;
        };
        if normalized_path(req.path).is_some_and(|p| app.bypass.is_match(&p)) {
            return Decision::Bypass { app };
        }
        let Some(claims) = self.session(req.headers) else {
            return Decision::Unauthenticated {
                app,
                login: self.login_url(app, req),
                navigation: is_navigation(req.method, req.headers),
            };
        };
        if !app.allowed_groups.is_empty() && !claims.in_any_group(&app.allowed_groups) {
            return Decision::Forbidden { app, claims };
        }
        Decision::Allow { app, claims }
    }

    /// Where to sign in to reach this request: the app's flow, returning to the request. On
    /// the auth host when one is configured (single sign-on), else on the request's own host
    /// as a path.
    ///
    /// # Security
    /// Both the auth host's address and the return address (`rd`) are built from the
    /// configured public origins; the request contributes only its path and which of the
    /// app's configured hosts it named, so no `Host` header (or port in it) shapes the link.
    pub fn login_url(&self, app: &AppConfig, req: &AccessRequest<'_>) -> String {
        let original = format!("{}{}", request_origin(app, req), req.path_and_query);
        let path = format!(
            "/.portcullis/flow/{}?rd={}",
            app.flow,
            percent_encoding::utf8_percent_encode(&original, percent_encoding::NON_ALPHANUMERIC)
        );
        match &self.config.server.auth_url {
            Some(auth) => format!("{auth}{path}"),
            None => path,
        }
    }

    /// [`Gate::login_url`] as an absolute URL, for answers read by another proxy.
    pub fn login_url_absolute(&self, app: &AppConfig, req: &AccessRequest<'_>) -> String {
        let url = self.login_url(app, req);
        if url.starts_with('/') {
            format!("{}{url}", request_origin(app, req))
        } else {
            url
        }
    }

    /// Whether `authority` names the configured auth host.
    pub fn is_auth_host(&self, authority: &str) -> bool {
        self.config
            .server
            .auth_host
            .as_deref()
            .is_some_and(|h| h.eq_ignore_ascii_case(host_of(authority)))
    }

    /// The configured public origin of the host `authority` names (an app host or the auth
    /// host; any port in `authority` is ignored), or `None` for a host that is not ours.
    pub fn public_origin(&self, authority: &str) -> Option<&PublicOrigin> {
        if self.is_auth_host(authority) {
            return self.config.server.auth_url.as_ref();
        }
        let host = host_of(authority).to_ascii_lowercase();
        self.app(authority)?.origin_for(&host)
    }
}

/// The configured origin of the app host the request named, or the app's first one.
fn request_origin<'a>(app: &'a AppConfig, req: &AccessRequest<'_>) -> &'a PublicOrigin {
    app.origin_for(&host_of(req.authority).to_ascii_lowercase())
        .unwrap_or_else(|| app.origin())
}

/// The host part of an authority, without port or IPv6 brackets' port.
pub fn host_of(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    authority.split(':').next().unwrap_or(authority)
}

/// Whether a Host header (or HTTP/2 authority) is a plain `host[:port]`: a domain name or IP
/// literal in canonical form, no userinfo, a numeric port.
///
/// # Security
/// The authority becomes part of URLs the gateway hands out (the sign-in redirect, magic
/// links in email, the fallback after sign-in). A loosely read one such as
/// `app.test:1@evil.example` would route to `app.test` yet point those URLs at another host,
/// so anything else is refused before it is used.
pub fn is_plain_authority(authority: &str) -> bool {
    if authority.is_empty() || authority.len() > 255 {
        return false;
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p))
            if !h.is_empty() && !p.contains(']') && (!h.contains(':') || h.ends_with(']')) =>
        {
            (h, Some(p))
        }
        _ => (authority, None),
    };
    if port.is_some_and(|p| {
        p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) || p.parse::<u16>().is_err()
    }) {
        return false;
    }
    let parsed = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => v6.parse::<std::net::Ipv6Addr>().is_ok(),
        None => url::Host::parse(host).is_ok_and(|h| {
            !matches!(h, url::Host::Ipv6(_)) && h.to_string().eq_ignore_ascii_case(host)
        }),
    };
    parsed
}

/// The path as the app will read it: dot segments resolved (also spelled `%2e`), backslashes
/// read as slashes, the way URL parsers and most frameworks read it. Bypass rules match this
/// form, so `/public/../admin` cannot borrow the exemption of `/public/` (the request itself
/// goes to the app unchanged, and the app resolves it to `/admin`). `None` for something that
/// is not an origin-form path; it then matches no bypass rule.
pub fn normalized_path(path: &str) -> Option<String> {
    if !path.starts_with('/') {
        return None;
    }
    // `#` (and `?`, though a path has none) would end the path for the parser while the app
    // may read on: keep them as data.
    let escaped = path.replace('#', "%23").replace('?', "%3F");
    url::Url::parse(&format!("http://path.invalid{escaped}"))
        .ok()
        .map(|u| u.path().to_string())
}

/// A browser loading a page (which can follow a redirect to a sign-in form), as opposed to an
/// API call or XHR, which should get a 401 it can handle.
pub fn is_navigation(method: &Method, headers: &HeaderMap) -> bool {
    (method == Method::GET || method == Method::HEAD)
        && headers
            .get(http::header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("text/html"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_of_strips_port() {
        assert_eq!(host_of("app.test:9000"), "app.test");
        assert_eq!(host_of("app.test"), "app.test");
        assert_eq!(host_of("[::1]:80"), "::1");
    }

    #[test]
    fn only_plain_authorities_are_accepted() {
        for ok in [
            "app.test",
            "app.test:9000",
            "localhost",
            "127.0.0.1:80",
            "[::1]:9000",
            "[::1]",
            "App.Test",
        ] {
            assert!(is_plain_authority(ok), "{ok}");
        }
        for bad in [
            "",
            "app.test:1@evil.example",
            "user@app.test",
            "app.test:",
            "app.test:99999",
            "app.test:80x",
            "wiki.example.test^",
            "app.test/evil",
            "app.test\\evil",
            "app%2etest",
            "::1",
            "[::1",
            "app.test:80:80",
        ] {
            assert!(!is_plain_authority(bad), "{bad}");
        }
    }

    #[test]
    fn paths_are_judged_with_dot_segments_resolved() {
        for (raw, judged) in [
            ("/public/info", "/public/info"),
            ("/public/../admin", "/admin"),
            ("/public/%2e%2e/admin", "/admin"),
            ("/public/.%2E/admin", "/admin"),
            ("/public\\..\\admin", "/admin"),
            ("/public/./x", "/public/x"),
            ("/public/x#/../../admin", "/admin"),
            ("/public/x#y", "/public/x%23y"),
        ] {
            assert_eq!(normalized_path(raw).as_deref(), Some(judged), "{raw}");
        }
        assert_eq!(normalized_path("*"), None);
        assert_eq!(normalized_path("http://h/public/"), None);
    }

    #[test]
    fn only_html_get_is_navigation() {
        let mut h = HeaderMap::new();
        h.insert(http::header::ACCEPT, "text/html,*/*".parse().unwrap());
        assert!(is_navigation(&Method::GET, &h));
        assert!(!is_navigation(&Method::POST, &h));
        h.insert(http::header::ACCEPT, "application/json".parse().unwrap());
        assert!(!is_navigation(&Method::GET, &h));
    }
}

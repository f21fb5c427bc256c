//! Where a finished sign-in may send the browser. `rd` comes from the query string, so anyone
//! can craft it: it is followed only to hosts Portcullis protects (and the auth host), always
//! on their configured origin, and everything else falls back to the app's root. Other hosts under the cookie domain are not
//! enough: any subdomain may be someone else's.

/// The longest return address (`rd`) a sign-in takes, in bytes: a held execution carries it
/// in a cookie, and a stored one on disk.
pub const MAX_RD_BYTES: usize = 2048;

use crate::config::PublicOrigin;
use std::collections::HashMap;

/// The hosts a redirect may land on, each with its configured public origin.
#[derive(Debug, Clone)]
pub struct RedirectPolicy {
    origins: HashMap<String, String>,
}

impl RedirectPolicy {
    /// The allowed hosts are those of `origins`; a redirect to one of them always uses that
    /// host's configured origin.
    pub fn new<'a>(origins: impl Iterator<Item = &'a PublicOrigin>) -> Self {
        Self {
            origins: origins
                .map(|o| (o.host().to_string(), o.to_string()))
                .collect(),
        }
    }

    /// The URL to send the browser to: `rd` when it is safe, otherwise `fallback`.
    /// `origin` (`scheme://host[:port]`) resolves a same-site path such as `/reports?q=1`.
    pub fn resolve(&self, rd: Option<&str>, origin: &str, fallback: &str) -> String {
        rd.and_then(|rd| self.check(rd, origin))
            .unwrap_or_else(|| fallback.to_string())
    }

    /// `rd` normalised, if it is an http(s) URL on an allowed host with no tricks in it.
    pub fn check(&self, rd: &str, origin: &str) -> Option<String> {
        // Backslashes, whitespace and control characters are how parsers are made to disagree
        // about where a URL points; no legitimate return address contains them.
        if rd.is_empty()
            || rd.len() > 4096
            || rd
                .bytes()
                .any(|b| b == b'\\' || b.is_ascii_whitespace() || b.is_ascii_control())
        {
            return None;
        }
        let absolute = if rd.starts_with('/') {
            if rd.starts_with("//") {
                return None;
            }
            format!("{origin}{rd}")
        } else {
            rd.to_string()
        };
        let url = url::Url::parse(&absolute).ok()?;
        if !matches!(url.scheme(), "http" | "https")
            || !url.username().is_empty()
            || url.password().is_some()
        {
            return None;
        }
        let host = url.host_str()?.to_ascii_lowercase();
        // Scheme and port come from config, whatever `rd` said: the page's form-action
        // policy names exactly the configured origins, and a link never points elsewhere.
        let origin = self.origins.get(&host)?;
        Some(format!("{origin}{}", &url[url::Position::BeforePath..]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RedirectPolicy {
        use crate::config::Scheme;
        let origins = [
            PublicOrigin::new(Scheme::Http, "app.test", 9000),
            PublicOrigin::new(Scheme::Https, "wiki.example.com", 443),
            PublicOrigin::new(Scheme::Https, "auth.example.com", 443),
        ];
        RedirectPolicy::new(origins.iter())
    }

    #[test]
    fn protected_hosts_and_paths_are_followed_on_their_configured_origin() {
        let p = policy();
        assert_eq!(
            p.check("http://app.test:9000/x?y=1", "http://app.test:9000")
                .as_deref(),
            Some("http://app.test:9000/x?y=1")
        );
        assert_eq!(
            p.check("/reports", "http://app.test:9000").as_deref(),
            Some("http://app.test:9000/reports")
        );
        // Another port or scheme on a protected host: the configured origin, same path.
        for other in [
            "http://app.test/x?y=1",
            "http://app.test:8666/x?y=1",
            "https://app.test:9000/x?y=1",
            "http://APP.test:1/x?y=1",
        ] {
            assert_eq!(
                p.check(other, "http://app.test:9000").as_deref(),
                Some("http://app.test:9000/x?y=1"),
                "{other}"
            );
        }
        assert_eq!(
            p.check("http://wiki.example.com:8080/", "http://app.test")
                .as_deref(),
            Some("https://wiki.example.com/")
        );
        // Under the cookie domain but not protected: someone else's subdomain, maybe.
        assert!(p
            .check("https://grafana.example.com/", "http://app.test")
            .is_none());
    }

    #[test]
    fn open_redirect_tricks_are_refused() {
        let p = policy();
        for bad in [
            "https://evil.example/",
            "//evil.example",
            "/\\evil.example",
            "\\\\evil.example",
            "javascript:alert(1)",
            "%2F%2Fevil.example",
            "http://app.test@evil.example/",
            "http://evil.example\\@app.test/",
            "http://evil.example/.app.test",
            "https://notexample.com/",
            "https://example.com.evil.example/",
            "http://app.test\t.evil/",
            "data:text/html,hi",
        ] {
            assert_eq!(p.check(bad, "http://app.test"), None, "{bad}");
        }
    }
}

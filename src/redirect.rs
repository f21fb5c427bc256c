//! Where a finished sign-in may send the browser. `rd` comes from the query string, so anyone
//! can craft it: it is followed only to hosts Portcullis protects (and the auth host), and
//! everything else falls back to the app's root. Other hosts under the cookie domain are not
//! enough: any subdomain may be someone else's.

use std::collections::HashSet;

/// The hosts a redirect may land on.
#[derive(Debug, Clone)]
pub struct RedirectPolicy {
    hosts: HashSet<String>,
}

impl RedirectPolicy {
    pub fn new<'a>(hosts: impl Iterator<Item = &'a str>) -> Self {
        Self {
            hosts: hosts.map(str::to_ascii_lowercase).collect(),
        }
    }

    fn host_allowed(&self, host: &str) -> bool {
        self.hosts.contains(host)
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
        self.host_allowed(&host).then(|| url.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RedirectPolicy {
        RedirectPolicy::new(["app.test", "wiki.example.com", "auth.example.com"].into_iter())
    }

    #[test]
    fn protected_hosts_and_paths_are_followed() {
        let p = policy();
        assert_eq!(
            p.check("http://app.test/x?y=1", "http://app.test")
                .as_deref(),
            Some("http://app.test/x?y=1")
        );
        assert_eq!(
            p.check("/reports", "http://app.test:9000").as_deref(),
            Some("http://app.test:9000/reports")
        );
        assert!(p
            .check("https://wiki.example.com/", "http://app.test")
            .is_some());
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

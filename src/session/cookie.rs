//! Reading one cookie out of a request without allocating, and writing `Set-Cookie` values
//! with the attributes every Portcullis cookie needs.

use cookie::{Cookie, SameSite};
use http::header::COOKIE;
use http::HeaderMap;

/// The value of cookie `name`, looked up across every `Cookie` header. This runs on every
/// proxied request, so it borrows rather than parses into a jar.
///
/// # Security
/// When a client sends the name twice, the first one wins; the value is untrusted input until
/// verified (for the session cookie: [`super::SessionService::verify`]).
pub fn find<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let pair = pair.trim();
            let rest = pair.strip_prefix(name)?;
            rest.strip_prefix('=')
        })
}

/// The `Cookie` header with the named cookies removed, or `None` when nothing remains.
///
/// # Security
/// The proxy sends upstream only what this returns, so the gateway's own cookies (the session
/// token above all) never reach an app.
pub fn without(headers: &HeaderMap, names: &[&str]) -> Option<String> {
    let mut out = String::new();
    for pair in headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
    {
        let pair = pair.trim();
        if pair.is_empty() {
            continue;
        }
        let name = pair.split('=').next().unwrap_or(pair);
        if names.contains(&name) {
            continue;
        }
        if !out.is_empty() {
            out.push_str("; ");
        }
        out.push_str(pair);
    }
    (!out.is_empty()).then_some(out)
}

/// Attributes for a cookie Portcullis sets.
pub struct CookieSpec<'a> {
    /// The cookie's name.
    pub name: &'a str,
    /// The `Path` attribute.
    pub path: &'a str,
    /// The `Domain` attribute (shared across subdomains for single sign-on); host-only when
    /// `None`.
    pub domain: Option<&'a str>,
    /// Sent over TLS: mark it `Secure`.
    pub secure: bool,
}

impl CookieSpec<'_> {
    /// A `Set-Cookie` value: HttpOnly, SameSite=Lax, living `max_age` seconds.
    pub fn set(&self, value: &str, max_age: i64) -> String {
        let mut c = Cookie::build((self.name.to_string(), value.to_string()))
            .path(self.path.to_string())
            .http_only(true)
            .secure(self.secure)
            .same_site(SameSite::Lax)
            .max_age(cookie::time::Duration::seconds(max_age));
        if let Some(d) = self.domain {
            c = c.domain(d.to_string());
        }
        c.build().to_string()
    }

    /// A `Set-Cookie` value that deletes the cookie.
    pub fn clear(&self) -> String {
        self.set("", 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(v: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for s in v {
            h.append(COOKIE, HeaderValue::from_str(s).unwrap());
        }
        h
    }

    #[test]
    fn finds_cookie_among_others_and_across_headers() {
        let h = headers(&["a=1; sess=tok", "b=2"]);
        assert_eq!(find(&h, "sess"), Some("tok"));
        assert_eq!(find(&h, "b"), Some("2"));
        assert_eq!(find(&h, "ses"), None);
    }

    #[test]
    fn strips_only_named_cookies() {
        let h = headers(&["a=1; sess=tok; flow=x", "b=2"]);
        assert_eq!(without(&h, &["sess", "flow"]).as_deref(), Some("a=1; b=2"));
        assert_eq!(without(&headers(&["sess=1"]), &["sess"]), None);
    }

    #[test]
    fn set_cookie_has_security_attributes() {
        let s = CookieSpec {
            name: "n",
            path: "/",
            domain: None,
            secure: true,
        }
        .set("v", 60);
        assert!(
            s.contains("HttpOnly") && s.contains("Secure") && s.contains("SameSite=Lax"),
            "{s}"
        );
    }
}

//! Reading one cookie out of a request without allocating, and writing `Set-Cookie` values
//! with the attributes every Portcullis cookie needs.

use cookie::{Cookie, SameSite};
use http::header::COOKIE;
use http::{HeaderMap, HeaderValue};

/// The value of cookie `name`, looked up across every `Cookie` header. This runs on every
/// proxied request, so it borrows rather than parses into a jar.
///
/// Headers are read as bytes: another cookie holding bytes above ASCII (a browser sends UTF-8
/// values as they were set) does not hide the cookie asked for.
///
/// # Security
/// When a client sends the name twice, the first one wins; the value is untrusted input until
/// verified (for the session cookie: [`super::SessionService::verify`]).
pub fn find<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    pairs(headers).find_map(|pair| {
        let value = pair.strip_prefix(name.as_bytes())?.strip_prefix(b"=")?;
        std::str::from_utf8(value).ok()
    })
}

/// The `name=value` pairs of every `Cookie` header in order, trimmed of spaces, empty ones
/// skipped.
fn pairs(headers: &HeaderMap) -> impl Iterator<Item = &[u8]> {
    headers
        .get_all(COOKIE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b';'))
        .map(<[u8]>::trim_ascii)
        .filter(|pair| !pair.is_empty())
}

/// A pair's name: what comes before its first `=` (all of it when there is none).
fn name_of(pair: &[u8]) -> &[u8] {
    pair.split(|b| *b == b'=').next().unwrap_or(pair)
}

fn is_named(pair: &[u8], names: &[&str]) -> bool {
    let name = name_of(pair);
    names.iter().any(|n| n.as_bytes() == name)
}

/// What the `Cookie` headers become upstream once the named cookies are taken out
/// ([`without`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upstream {
    /// None of the named cookies is there: the headers go on as they are.
    Keep,
    /// Only named cookies are there: no `Cookie` header goes on.
    Remove,
    /// One `Cookie` header with the other cookies, `; `-separated, in the order sent.
    Replace(HeaderValue),
}

/// The `Cookie` headers with the named cookies removed. One pass over the headers; a new value
/// is built only when the named cookies sit among others (a browser signed in to the gateway
/// alone sends just the session cookie: that header is dropped, nothing is copied).
///
/// # Security
/// The proxy sends upstream only what this returns, so the gateway's own cookies (the session
/// token above all) never reach an app. A pair is named when its name, trimmed of spaces, is
/// one of `names` exactly; a header holding bytes above ASCII is read as bytes too, so no
/// cookie hides there.
pub fn without(headers: &HeaderMap, names: &[&str]) -> Upstream {
    let (mut ours, mut others) = (false, false);
    for pair in pairs(headers) {
        if is_named(pair, names) {
            ours = true;
        } else {
            others = true;
        }
        if ours && others {
            break;
        }
    }
    match (ours, others) {
        (false, _) => Upstream::Keep,
        (true, false) => Upstream::Remove,
        (true, true) => {
            let mut out = Vec::new();
            for pair in pairs(headers).filter(|p| !is_named(p, names)) {
                if !out.is_empty() {
                    out.extend_from_slice(b"; ");
                }
                out.extend_from_slice(pair);
            }
            // The pairs came from valid header values (no CR, LF or NUL), trimmed, and are
            // joined by `; `: the result is a valid value too.
            match HeaderValue::from_maybe_shared(bytes::Bytes::from(out)) {
                Ok(v) => Upstream::Replace(v),
                Err(_) => Upstream::Remove,
            }
        }
    }
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
        assert_eq!(
            without(&h, &["sess", "flow"]),
            Upstream::Replace(HeaderValue::from_static("a=1; b=2"))
        );
        assert_eq!(without(&headers(&["sess=1"]), &["sess"]), Upstream::Remove);
    }

    /// Every shape of `Cookie` headers a client may send, and what goes upstream: the
    /// session and flow cookies never, every other cookie always.
    #[test]
    fn without_table() {
        use Upstream::{Keep, Remove};
        let names = ["sess", "flow"];
        let replace = |s: &'static str| Upstream::Replace(HeaderValue::from_static(s));
        let cases: &[(&[&str], Upstream)] = &[
            // Only ours.
            (&["sess=tok"], Remove),
            (&["sess=tok; flow=f"], Remove),
            (&["sess=tok", "flow=f"], Remove),
            (&["  sess=tok  "], Remove),
            (&["sess=tok;"], Remove),
            (&[";; sess=tok ;;"], Remove),
            (&["sess="], Remove),
            (&["sess"], Remove),
            (&["sess=a", "sess=b"], Remove),
            // Ours first, in the middle, last.
            (&["sess=tok; a=1"], replace("a=1")),
            (&["a=1; sess=tok; b=2"], replace("a=1; b=2")),
            (&["a=1; b=2; sess=tok"], replace("a=1; b=2")),
            // Several headers.
            (&["a=1", "sess=tok", "b=2"], replace("a=1; b=2")),
            (&["sess=tok", "a=1"], replace("a=1")),
            (&["a=1; flow=f", "sess=tok; b=2"], replace("a=1; b=2")),
            // Spaces and empty pairs.
            (&["a=1 ;sess=tok;  b=2 "], replace("a=1; b=2")),
            (&["a=1;;; sess=tok;;"], replace("a=1")),
            (&["\ta=1;\tsess=tok"], replace("a=1")),
            // Names like ours but not ours.
            (&["xsess=1; sess2=2; sess_=3; Sess=4"], Keep),
            (&["xsess=1; sess=tok; sess2=2"], replace("xsess=1; sess2=2")),
            (&["a=sess=tok"], Keep),
            (&["sess =tok"], Keep),
            // Nothing of ours.
            (&["a=1"], Keep),
            (&["a=1", "b=2"], Keep),
            (&[""], Keep),
            (&[";;"], Keep),
            (&[], Keep),
        ];
        for (sent, want) in cases {
            let got = without(&headers(sent), &names);
            assert_eq!(&got, want, "Cookie headers {sent:?}");
        }
    }

    /// A header holding bytes above ASCII (a UTF-8 value another cookie set) neither hides our
    /// cookie from the gateway nor smuggles it upstream, and keeps its bytes.
    #[test]
    fn non_ascii_cookie_headers_are_read_as_bytes() {
        let mut h = HeaderMap::new();
        h.append(
            COOKIE,
            HeaderValue::from_bytes("pref=caf\u{e9}; sess=tok".as_bytes()).unwrap(),
        );
        assert_eq!(find(&h, "sess"), Some("tok"));
        assert_eq!(
            without(&h, &["sess"]),
            Upstream::Replace(HeaderValue::from_bytes("pref=caf\u{e9}".as_bytes()).unwrap())
        );
        assert_eq!(find(&h, "pref"), Some("caf\u{e9}"));
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

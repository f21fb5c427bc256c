//! Identity headers: stripped from every client request, set from the session for allowed ones.

use crate::config::IdentityHeaders;
use crate::session::{cookie, Claims};
use pingora::http::RequestHeader;

/// Removes every identity header a client may have sent, so only the gateway can set them.
///
/// # Security
/// Spellings with `_` for `-` (`Remote_User`) go too: CGI, WSGI, PHP and Rack read both as
/// `HTTP_REMOTE_USER`, so an app behind the gateway would take a client's `Remote_User` for
/// the real header.
pub(super) fn strip(req: &mut RequestHeader, names: &IdentityHeaders) {
    for name in names.all() {
        req.remove_header(name);
    }
    // Rare, so the common request pays one scan and no allocation.
    if !req.headers.keys().any(|k| k.as_str().contains('_')) {
        return;
    }
    let aliases: Vec<http::HeaderName> = req
        .headers
        .keys()
        .filter(|k| {
            let k = k.as_str();
            k.contains('_')
                && names.all().any(|n| {
                    n.as_str().len() == k.len()
                        && n.as_str()
                            .bytes()
                            .zip(k.bytes())
                            .all(|(a, b)| a == b || (a == b'-' && b == b'_'))
                })
        })
        .cloned()
        .collect();
    for name in aliases {
        req.remove_header(&name);
    }
}

/// The identity header names as Pingora takes them, prepared once per config: handing
/// Pingora a `HeaderName` makes it copy the name into a new buffer on every insert, handing it
/// these shares one.
pub(super) struct IdentityNames([bytes::Bytes; 4]);

impl IdentityNames {
    pub(super) fn new(names: &IdentityHeaders) -> Self {
        let name = |n: &http::HeaderName| bytes::Bytes::copy_from_slice(n.as_str().as_bytes());
        Self([
            name(&names.user),
            name(&names.name),
            name(&names.email),
            name(&names.groups),
        ])
    }
}

/// Sets the identity headers from a verified session.
///
/// # Errors
/// Pingora's error if a claim holds bytes not allowed in a header value.
pub(super) fn inject(
    req: &mut RequestHeader,
    names: &IdentityNames,
    claims: &Claims,
) -> pingora::Result<()> {
    let Some(values) = claims.identity_values() else {
        return Err(pingora::Error::explain(
            pingora::ErrorType::InternalError,
            "a session claim cannot be sent as a header value",
        ));
    };
    for (name, value) in names.0.iter().zip(values) {
        req.insert_header(name.clone(), value.clone())?;
    }
    Ok(())
}

/// Takes the gateway's own cookies out of the `Cookie` header; the upstream never sees the
/// session token. A header holding only them is dropped without building anything.
///
/// # Errors
/// Pingora's error if the remaining cookies cannot be set back (they came from a valid header).
pub(super) fn strip_cookies(req: &mut RequestHeader, names: &[&str]) -> pingora::Result<()> {
    match cookie::without(&req.headers, names) {
        cookie::Upstream::Keep => {}
        cookie::Upstream::Remove => {
            req.remove_header(&http::header::COOKIE);
        }
        cookie::Upstream::Replace(rest) => {
            req.insert_header(bytes::Bytes::from_static(b"Cookie"), rest)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The request head as the upstream receives it.
    fn wire(req: &RequestHeader) -> String {
        let mut buf = Vec::new();
        req.header_to_h1_wire(&mut buf);
        String::from_utf8(buf).unwrap()
    }

    fn request(cookies: &[&str]) -> RequestHeader {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.append_header("Host", "app.test").unwrap();
        for c in cookies {
            req.append_header("Cookie", *c).unwrap();
        }
        req
    }

    /// What reaches the upstream for every shape of `Cookie` headers: never the session or
    /// flow cookie, every other cookie, and no `Cookie` header at all when only ours came.
    #[test]
    fn only_the_gateways_cookies_are_taken_out() {
        let names = ["portcullis_session", "portcullis_flow"];
        let cases: &[(&[&str], Option<&str>)] = &[
            (&["portcullis_session=tok"], None),
            (&["portcullis_session=tok; portcullis_flow=f"], None),
            (&["portcullis_session=tok", "portcullis_flow=f"], None),
            (&[" portcullis_session=tok ;; "], None),
            (&["portcullis_session=tok; a=1"], Some("a=1")),
            (&["a=1; portcullis_session=tok; b=2"], Some("a=1; b=2")),
            (&["a=1; b=2; portcullis_session=tok"], Some("a=1; b=2")),
            (&["a=1", "portcullis_session=tok", "b=2"], Some("a=1; b=2")),
            (&["a=1 ;  portcullis_session=tok;;b=2"], Some("a=1; b=2")),
            (
                &["xportcullis_session=1; portcullis_session=tok; portcullis_session2=2"],
                Some("xportcullis_session=1; portcullis_session2=2"),
            ),
        ];
        for (sent, want) in cases {
            let mut req = request(sent);
            strip_cookies(&mut req, &names).unwrap();
            let head = wire(&req);
            assert!(
                !head.contains("=tok"),
                "{sent:?}: the session went upstream: {head}"
            );
            assert!(!head.contains("portcullis_flow"), "{sent:?}: {head}");
            let got: Vec<_> = req.headers.get_all(http::header::COOKIE).iter().collect();
            match want {
                None => assert!(got.is_empty(), "{sent:?}: {got:?}"),
                Some(w) => assert_eq!(got, [*w], "{sent:?}"),
            }
            assert!(head.starts_with("Host: app.test\r\n"), "{head}");
        }
        // Nothing of ours: the header goes on untouched, as the client spelled it.
        let mut req = request(&["a=1;b=2"]);
        strip_cookies(&mut req, &names).unwrap();
        assert_eq!(wire(&req), "Host: app.test\r\nCookie: a=1;b=2\r\n");
    }
}

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

/// Sets the identity headers from a verified session.
///
/// # Errors
/// Pingora's error if a claim holds bytes not allowed in a header value.
pub(super) fn inject(
    req: &mut RequestHeader,
    names: &IdentityHeaders,
    claims: &Claims,
) -> pingora::Result<()> {
    let Some([user, name, email, groups]) = claims.identity_values() else {
        return Err(pingora::Error::explain(
            pingora::ErrorType::InternalError,
            "a session claim cannot be sent as a header value",
        ));
    };
    req.insert_header(names.user.clone(), user.clone())?;
    req.insert_header(names.name.clone(), name.clone())?;
    req.insert_header(names.email.clone(), email.clone())?;
    req.insert_header(names.groups.clone(), groups.clone())?;
    Ok(())
}

/// Takes the gateway's own cookies out of the `Cookie` header; the upstream never sees the
/// session token.
///
/// # Errors
/// Pingora's error if the remaining cookies cannot be set back (they came from a valid header).
pub(super) fn strip_cookies(req: &mut RequestHeader, names: &[&str]) -> pingora::Result<()> {
    if !names
        .iter()
        .any(|n| cookie::find(&req.headers, n).is_some())
    {
        return Ok(());
    }
    match cookie::without(&req.headers, names) {
        Some(rest) => req.insert_header(http::header::COOKIE, rest)?,
        None => {
            req.remove_header(&http::header::COOKIE);
        }
    }
    Ok(())
}

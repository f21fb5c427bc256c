//! Identity headers: stripped from every client request, set from the session for allowed ones.

use crate::config::IdentityHeaders;
use crate::session::{cookie, Claims};
use pingora::http::RequestHeader;

/// Removes every identity header a client may have sent, so only the gateway can set them.
pub fn strip(req: &mut RequestHeader, names: &IdentityHeaders) {
    for name in names.all() {
        req.remove_header(name);
    }
}

/// Sets the identity headers from a verified session.
///
/// # Errors
/// Pingora's error if a claim holds bytes not allowed in a header value.
pub fn inject(
    req: &mut RequestHeader,
    names: &IdentityHeaders,
    claims: &Claims,
) -> pingora::Result<()> {
    req.insert_header(names.user.clone(), claims.sub.as_str())?;
    req.insert_header(names.name.clone(), claims.name.as_str())?;
    req.insert_header(names.email.clone(), claims.email.as_str())?;
    req.insert_header(names.groups.clone(), claims.groups.join(","))?;
    Ok(())
}

/// Takes the gateway's own cookies out of the `Cookie` header; the upstream never sees the
/// session token.
///
/// # Errors
/// Pingora's error if the remaining cookies cannot be set back (they came from a valid header).
pub fn strip_cookies(req: &mut RequestHeader, names: &[&str]) -> pingora::Result<()> {
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

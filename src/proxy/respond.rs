//! Writes a [`Response`] to a Pingora session: the one place gateway answers hit the wire.

use crate::reply::Response;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;

/// Sends a complete response; for `HEAD` only the headers.
///
/// # Errors
/// Pingora's error if the client has gone away.
pub(super) async fn send(session: &mut Session, resp: Response) -> pingora::Result<()> {
    let mut header = ResponseHeader::build(resp.status, Some(resp.headers.len() + 2))?;
    for (name, value) in resp.headers {
        header.append_header(name, value)?;
    }
    header.insert_header(http::header::CONTENT_LENGTH, resp.body.len())?;
    let head_only = session.req_header().method == http::Method::HEAD;
    let no_body = head_only || resp.body.is_empty();
    session
        .write_response_header(Box::new(header), no_body)
        .await?;
    if !no_body {
        session.write_response_body(Some(resp.body), true).await?;
    }
    Ok(())
}

//! Magic links from e-mail. Opening one (GET) only shows a confirm page: mail scanners that
//! prefetch links cannot burn or use them. The POST from that page confirms the link; the
//! waiting sign-in then consumes it.

use super::error::{respond, Face, PortalError};
use super::{Portal, Request, Response, FLOW_COOKIE};
use crate::secret::SecretString;
use crate::session::cookie;
use crate::ui::Link;
use http::StatusCode;

const GONE: &str =
    "This link has expired or was already used. Start signing in again to get a new one.";

fn token_from_query(req: &Request<'_>) -> Option<SecretString> {
    req.query_param("token")
        .filter(|t| !t.is_empty() && t.len() <= 128)
        .map(SecretString::new)
}

/// `GET /.portcullis/link?token=...`
pub(super) fn confirm_page(p: &Portal, req: &Request<'_>) -> Response {
    let Some(token) = token_from_query(req) else {
        return gone(p);
    };
    match p.engine.link_pending(&token) {
        Ok(true) => Response::html(StatusCode::OK, p.ui.link_confirm(&token)),
        Ok(false) => gone(p),
        Err(e) => respond(&p.ui, Face::Html, &PortalError::Link(e)),
    }
}

/// `POST /.portcullis/link` with the token from the confirm page's form.
pub(super) fn confirm(p: &Portal, req: &Request<'_>) -> Response {
    let token = serde_urlencoded::from_bytes::<Vec<(String, String)>>(&req.body)
        .ok()
        .and_then(|pairs| pairs.into_iter().find(|(k, _)| k == "token"))
        .map(|(_, v)| v)
        .filter(|t| !t.is_empty() && t.len() <= 128)
        .map(SecretString::new);
    let Some(token) = token else {
        return refused(p, req);
    };
    let ticket = match p.engine.confirm_link(&token) {
        Ok(Some(t)) => t,
        Ok(None) => return refused(p, req),
        Err(e) => return respond(&p.ui, Face::Html, &PortalError::Link(e)),
    };
    tracing::info!(client = %req.client, flow = %ticket.flow, "sign-in link confirmed");
    let same_browser = cookie::find(req.headers, FLOW_COOKIE)
        .is_some_and(|id| crate::secret::equal(id.as_bytes(), ticket.execution.as_bytes()));
    if same_browser && ticket.continue_in_verify_window {
        return Response::redirect(
            StatusCode::SEE_OTHER,
            &format!("/.portcullis/flow/{}", ticket.flow),
        );
    }
    Response::html(
        StatusCode::OK,
        p.ui.message(
            "Link confirmed",
            "You can close this tab: the window where you started signing in continues by itself.",
            None,
        ),
    )
}

/// A link that does not confirm. Opened in the browser of a sign-in waiting for a link, it
/// counts against that sign-in's `max_allowed_attempts` (Curity counts link confirmations as
/// attempts), so links cannot be tried without limit from the page that waits for one.
fn refused(p: &Portal, req: &Request<'_>) -> Response {
    if let Some(id) = cookie::find(req.headers, FLOW_COOKIE) {
        if let Err(e) = p.engine.link_refused(id) {
            tracing::warn!(error = %e, "could not count a refused link");
        }
    }
    gone(p)
}

fn gone(p: &Portal) -> Response {
    Response::html(
        StatusCode::GONE,
        p.ui.message(
            "Link not valid",
            GONE,
            Some(Link {
                href: "/",
                label: "Go to the application",
            }),
        ),
    )
}

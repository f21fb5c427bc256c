//! Signing out: revoke the session (its sid, in memory and on disk) and clear the cookie.
//! Both faces refuse cross-site triggers: the form carries a session-bound CSRF token, the
//! API demands a JSON content type.

use super::error::{respond, Face, PortalError};
use super::{Portal, Request, Response};
use crate::session::Claims;
use crate::ui::Link;
use http::StatusCode;
use serde_json::json;

/// `GET /.portcullis/logout`: a confirm page whose form posts, so a link or an `<img>` on
/// another site cannot sign anyone out.
pub(super) fn confirm(p: &Portal, req: &Request<'_>) -> Response {
    let Some(claims) = p.gate.session(req.headers) else {
        return signed_out_page(p, "You are not signed in.");
    };
    match p
        .ui
        .logout_page(&claims.sub, p.sessions.csrf_for(&claims.sid).expose())
    {
        Ok(page) => Response::html(StatusCode::OK, page),
        Err(e) => respond(&p.ui, Face::Html, &PortalError::Render(e)),
    }
}

/// `POST /.portcullis/logout` from the confirm page.
pub(super) fn html(p: &Portal, req: &Request<'_>) -> Response {
    let Some(claims) = p.gate.session(req.headers) else {
        return signed_out_page(p, "You are not signed in.")
            .set_cookie(p.session_cookie(req).clear());
    };
    let token = serde_urlencoded::from_bytes::<Vec<(String, String)>>(&req.body)
        .ok()
        .and_then(|pairs| pairs.into_iter().find(|(k, _)| k == "csrf_token"))
        .map(|(_, v)| v);
    let expected = p.sessions.csrf_for(&claims.sid);
    if !token.is_some_and(|t| crate::secret::equal(t.as_bytes(), expected.expose().as_bytes())) {
        let retry = "/.portcullis/logout".to_string();
        return respond(&p.ui, Face::Html, &PortalError::Csrf { retry });
    }
    if let Err(e) = revoke(p, req, &claims) {
        return respond(&p.ui, Face::Html, &e).set_cookie(p.session_cookie(req).clear());
    }
    signed_out_page(p, "You have signed out.").set_cookie(p.session_cookie(req).clear())
}

/// `POST /.portcullis/api/logout` with `Content-Type: application/json`.
pub(super) fn json(p: &Portal, req: &Request<'_>) -> Response {
    if req.content_type().as_deref() != Some("application/json") {
        return respond(&p.ui, Face::Json, &PortalError::NotJson);
    }
    if let Some(claims) = p.gate.session(req.headers) {
        if let Err(e) = revoke(p, req, &claims) {
            return respond(&p.ui, Face::Json, &e).set_cookie(p.session_cookie(req).clear());
        }
    }
    Response::json(StatusCode::OK, &json!({ "status": "signed_out" }))
        .set_cookie(p.session_cookie(req).clear())
}

/// Ends the session, durably before the answer: "signed out" is said only once a restart
/// cannot bring the session back.
///
/// # Errors
/// The store's failure; the in-memory revocation holds anyway (until a restart), and the
/// caller answers 503 rather than a sign-out that may not last.
fn revoke(p: &Portal, req: &Request<'_>, claims: &Claims) -> Result<(), PortalError> {
    let done = p.sessions.revoke(claims);
    crate::audit::record(&crate::audit::Event {
        user: &claims.sub,
        action: "session_revoke",
        target: &claims.sid,
        outcome: if done.is_ok() { "done" } else { "not_recorded" },
        client: req.client,
        ended_sessions: usize::from(done.is_ok()),
    });
    done?;
    tracing::info!(user = %claims.sub, client = %req.client, "signed out");
    Ok(())
}

fn signed_out_page(p: &Portal, message: &str) -> Response {
    Response::html(
        StatusCode::OK,
        p.ui.message(
            "Signed out",
            message,
            Some(Link {
                href: "/",
                label: "Back to the application",
            }),
        ),
    )
}

//! The signed-in user's own settings: `/.portcullis/settings` (a page of forms, no script)
//! and `/.portcullis/api/settings` (the same data as JSON). One function builds the data
//! ([`data::build`]); the two faces render it. Every change is a POST carrying the
//! session-bound settings CSRF token, is written to the audit log, and a removed factor ends
//! the user's other sessions.
//!
//! # Security
//! Everything acts on the session's own account only: a device or session id is looked up
//! among that account's, so another user's id is "not found" and changes nothing. Removing a
//! factor needs a sign-in no older than `[settings] max_age`; an older session is sent through
//! the confirmation flow first, which asks every factor again ([`confirms`]). The last device a
//! flow needs to sign in cannot be removed.

mod change;
mod data;

use super::error::{respond, Face, PortalError};
use super::{Portal, Request, Response};
use crate::session::Claims;
use crate::store::User;
use data::{build, store_error, Settings};
use http::{Method, StatusCode};
use serde_json::json;
use std::sync::Arc;

/// The HTML face.
pub const PAGE: &str = "/.portcullis/settings";
/// The JSON face.
pub const API: &str = "/.portcullis/api/settings";

/// Answers `PAGE` and `API`: GET shows, POST changes.
pub(super) fn handle(p: &Portal, req: &Request<'_>, face: Face) -> Response {
    match *req.method {
        Method::GET | Method::HEAD => show(p, req, face),
        Method::POST => change::change(p, req, face),
        _ => super::pages::method_not_allowed(&p.ui),
    }
}

/// Whether a flow start is the confirmation the settings page asked for: an authentication
/// flow returning to this page with a device to remove. Such a start asks every factor again.
pub(super) fn confirms(p: &Portal, slug: &str, rd: &str) -> bool {
    let authentication = p
        .engine
        .flow(slug)
        .is_some_and(|f| f.designation == crate::config::Designation::Authentication);
    authentication
        && url::Url::parse(rd)
            .is_ok_and(|u| u.path() == PAGE && u.query_pairs().any(|(k, _)| k == "remove"))
}

/// This page on the configured origin of the host the request came to.
pub(crate) fn page_url(p: &Portal, req: &Request<'_>) -> String {
    format!("{}{PAGE}", p.origin(req))
}

/// The verified session and its account (existing and active), or `None`.
fn signed_in(p: &Portal, req: &Request<'_>) -> Result<Option<(Arc<Claims>, User)>, PortalError> {
    let Some(claims) = p.gate.session(req.headers) else {
        return Ok(None);
    };
    let user = p
        .engine
        .services()
        .store
        .user(&claims.sub)
        .map_err(store_error)?;
    Ok(user.filter(|u| u.active).map(|u| (claims, u)))
}

/// Not signed in: a browser goes to sign in and comes back; the API answers 401.
fn sign_in_first(p: &Portal, req: &Request<'_>, face: Face) -> Response {
    let flow = p
        .gate
        .app(req.authority)
        .or_else(|| p.gate.config().apps.first())
        .map(|a| a.flow.as_str())
        .unwrap_or_default();
    let login = flow_url(flow, &page_url(p, req));
    match face {
        Face::Html if *req.method == Method::POST => {
            Response::redirect(StatusCode::SEE_OTHER, &login)
        }
        Face::Html => Response::redirect(StatusCode::FOUND, &login),
        Face::Json => Response::json(
            StatusCode::UNAUTHORIZED,
            &json!({ "error": "unauthenticated", "login": login }),
        ),
    }
}

fn flow_url(slug: &str, rd: &str) -> String {
    format!(
        "/.portcullis/flow/{slug}?rd={}",
        percent_encoding::utf8_percent_encode(rd, percent_encoding::NON_ALPHANUMERIC)
    )
}

fn show(p: &Portal, req: &Request<'_>, face: Face) -> Response {
    let (claims, user) = match signed_in(p, req) {
        Ok(Some(s)) => s,
        Ok(None) => return sign_in_first(p, req, face),
        Err(e) => return respond(&p.ui, face, &e),
    };
    let s = match build(p, req, &claims, &user) {
        Ok(s) => s,
        Err(e) => return respond(&p.ui, face, &e),
    };
    match face {
        Face::Json => match serde_json::to_value(&s) {
            Ok(v) => Response::json(StatusCode::OK, &v),
            Err(_) => respond(&p.ui, face, &PortalError::BadRequest("unencodable".into())),
        },
        Face::Html => {
            let notice = req.query_param("done").and_then(|d| notice(&d));
            // Back from confirming it is you: the removal waits for one more press.
            let confirm = req
                .query_param("remove")
                .filter(|_| s.fresh)
                .and_then(|id| s.devices.iter().find(|d| d.id == id && d.keep.is_none()));
            page(p, &s, StatusCode::OK, notice, None, confirm)
        }
    }
}

fn page(
    p: &Portal,
    s: &Settings,
    status: StatusCode,
    notice: Option<&str>,
    error: Option<&str>,
    confirm: Option<&data::DeviceItem>,
) -> Response {
    match p.ui.settings_page(s, notice, error, confirm) {
        Ok(html) => Response::html(status, html),
        Err(e) => respond(&p.ui, Face::Html, &PortalError::Render(e)),
    }
}

/// What a finished change tells the user on the page.
fn notice(done: &str) -> Option<&'static str> {
    Some(match done {
        "renamed" => "The device was renamed.",
        "removed" => "The device was removed, and your other sessions were signed out.",
        "signed_out" => "That session was signed out.",
        "signed_out_others" => "Every other session was signed out.",
        _ => return None,
    })
}

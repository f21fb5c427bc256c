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

mod data;

use super::error::{respond, Face, PortalError};
use super::{Portal, Request, Response};
use crate::audit::{self, Event};
use crate::session::Claims;
use crate::store::{Device, User};
use crate::ui::Link;
use data::{build, store_error, Settings};
use http::{Method, StatusCode};
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;

/// The HTML face.
pub const PAGE: &str = "/.portcullis/settings";
/// The JSON face.
pub const API: &str = "/.portcullis/api/settings";

/// The longest device name a user may give (characters).
const MAX_NAME: usize = 64;

/// Answers `PAGE` and `API`: GET shows, POST changes.
pub(super) fn handle(p: &Portal, req: &Request<'_>, face: Face) -> Response {
    match *req.method {
        Method::GET | Method::HEAD => show(p, req, face),
        Method::POST => change(p, req, face),
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

/// One change, as posted.
enum Change {
    Rename { id: String, name: String },
    Remove { id: String },
    SignOut { id: String },
    SignOutOthers,
}

impl Change {
    fn action(&self) -> &'static str {
        match self {
            Change::Rename { .. } => "device_rename",
            Change::Remove { .. } => "device_remove",
            Change::SignOut { .. } => "session_sign_out",
            Change::SignOutOthers => "sessions_sign_out_others",
        }
    }

    fn target(&self) -> &str {
        match self {
            Change::Rename { id, .. } | Change::Remove { id } | Change::SignOut { id } => id,
            Change::SignOutOthers => "",
        }
    }
}

/// What a change did.
enum Done {
    Renamed,
    Removed { ended: usize },
    SignedOut { current: bool },
    SignedOutOthers { ended: usize },
}

/// Why a change was not made.
enum Refused {
    /// A gateway error (CSRF, unreadable body, storage): answered by [`respond`].
    Portal(PortalError),
    /// No such device or session of this account.
    NotFound,
    /// The last device a flow needs.
    LastFactor(String),
    /// The sign-in is too old to remove a factor: confirm it is you at `html` (or `api`).
    Reauthenticate { html: String, api: String },
    /// A name that cannot be a device's.
    InvalidName(&'static str),
}

impl Refused {
    fn outcome(&self) -> &'static str {
        match self {
            Refused::Portal(PortalError::Csrf { .. }) => "csrf",
            Refused::Portal(_) => "failed",
            Refused::NotFound => "not_found",
            Refused::LastFactor(_) => "refused_last_factor",
            Refused::Reauthenticate { .. } => "needs_reauthentication",
            Refused::InvalidName(_) => "invalid",
        }
    }
}

impl From<PortalError> for Refused {
    fn from(e: PortalError) -> Self {
        Refused::Portal(e)
    }
}

fn change(p: &Portal, req: &Request<'_>, face: Face) -> Response {
    let (claims, user) = match signed_in(p, req) {
        Ok(Some(s)) => s,
        Ok(None) => return sign_in_first(p, req, face),
        Err(e) => return respond(&p.ui, face, &e),
    };
    let event = |action, target: &str, outcome, ended_sessions| {
        audit::record(&Event {
            user: &user.username,
            action,
            target,
            outcome,
            client: req.client,
            ended_sessions,
        })
    };
    let change = match fields(req, face).and_then(|f| checked(p, &claims, f)) {
        Ok(c) => c,
        Err(e) => {
            event("settings_change", "", e.outcome(), 0);
            return refused(p, req, face, &claims, &user, e);
        }
    };
    match apply(p, req, &claims, &user, &change) {
        Ok(done) => {
            let ended = match done {
                Done::Removed { ended } | Done::SignedOutOthers { ended } => ended,
                Done::SignedOut { current } => usize::from(!current),
                Done::Renamed => 0,
            };
            event(change.action(), change.target(), "done", ended);
            finished(p, req, face, done)
        }
        Err(e) => {
            event(change.action(), change.target(), e.outcome(), 0);
            refused(p, req, face, &claims, &user, e)
        }
    }
}

/// The posted fields: a form for the page, a JSON object for the API. A field given twice is
/// refused rather than guessed at.
fn fields(req: &Request<'_>, face: Face) -> Result<HashMap<String, String>, Refused> {
    let pairs: Vec<(String, String)> = match face {
        Face::Html => {
            serde_urlencoded::from_bytes(&req.body).map_err(|_| PortalError::MalformedForm {
                retry: PAGE.to_string(),
            })?
        }
        Face::Json => {
            // As for the flow API: a cross-site form cannot send this content type.
            if req.content_type().as_deref() != Some("application/json") {
                return Err(PortalError::NotJson.into());
            }
            let bad =
                || PortalError::BadRequest("the body must be a JSON object of strings".into());
            let v: serde_json::Value = serde_json::from_slice(&req.body).map_err(|_| bad())?;
            let serde_json::Value::Object(map) = v else {
                return Err(bad().into());
            };
            map.into_iter()
                .map(|(k, v)| match v {
                    serde_json::Value::String(s) => Ok((k, s)),
                    _ => Err(bad()),
                })
                .collect::<Result<_, _>>()?
        }
    };
    let mut out = HashMap::with_capacity(pairs.len());
    for (k, v) in pairs {
        if out.insert(k, v).is_some() {
            return Err(PortalError::BadRequest("a field was given twice".into()).into());
        }
    }
    Ok(out)
}

/// The change the fields ask for, once their CSRF token is this session's.
fn checked(p: &Portal, claims: &Claims, mut f: HashMap<String, String>) -> Result<Change, Refused> {
    let expected = p.sessions.settings_csrf(&claims.sid);
    let sent = f.remove("csrf_token").unwrap_or_default();
    if !crate::secret::equal(sent.as_bytes(), expected.expose().as_bytes()) {
        return Err(PortalError::Csrf {
            retry: PAGE.to_string(),
        }
        .into());
    }
    let mut take = |k: &str| f.remove(k).unwrap_or_default();
    let bad = |m: &str| Refused::Portal(PortalError::BadRequest(m.to_string()));
    let change = match take("action").as_str() {
        "rename" => Change::Rename {
            id: take("id"),
            name: take("name"),
        },
        "remove" => Change::Remove { id: take("id") },
        "sign_out" => Change::SignOut { id: take("id") },
        "sign_out_others" => Change::SignOutOthers,
        _ => {
            return Err(bad(
                "action must be rename, remove, sign_out or sign_out_others",
            ))
        }
    };
    Ok(change)
}

fn apply(
    p: &Portal,
    req: &Request<'_>,
    claims: &Claims,
    user: &User,
    change: &Change,
) -> Result<Done, Refused> {
    let store = &p.engine.services().store;
    let device = |id: &str| -> Result<(Vec<Device>, Device), Refused> {
        let all = store.devices(&user.username).map_err(store_error)?;
        let found = all.iter().find(|d| d.id == id).cloned();
        found.map(|d| (all, d)).ok_or(Refused::NotFound)
    };
    match change {
        Change::Rename { id, name } => {
            let name = valid_name(name)?;
            // A device in use changes under us (last used, a recovery code spent): swap from
            // what is stored, reading again when another write won.
            for _ in 0..3 {
                let (_, current) = device(id)?;
                let renamed = Device {
                    name: name.clone(),
                    ..current.clone()
                };
                if store.swap_device(&current, &renamed).map_err(store_error)? {
                    return Ok(Done::Renamed);
                }
            }
            Err(PortalError::BadRequest("the device is busy; try again".into()).into())
        }
        Change::Remove { id } => {
            let (all, d) = device(id)?;
            if let Some(why) = data::keep_reason(p, req, &all, &d) {
                return Err(Refused::LastFactor(why));
            }
            if !p.gate.fresh_for_settings(claims) {
                return Err(reauthenticate(p, req, id));
            }
            if !store
                .remove_device(&user.username, id)
                .map_err(store_error)?
            {
                return Err(Refused::NotFound);
            }
            let ended = sign_out_others(p, claims, &user.username)?;
            Ok(Done::Removed { ended })
        }
        Change::SignOut { id } => {
            let list = p
                .sessions
                .sessions_of(&user.username)
                .map_err(PortalError::from)?;
            let current = *id == claims.sid;
            let Some(s) = list.iter().find(|s| s.sid == *id) else {
                if current {
                    p.sessions.revoke(claims).map_err(PortalError::from)?;
                    return Ok(Done::SignedOut { current });
                }
                return Err(Refused::NotFound);
            };
            p.sessions
                .revoke_sid(&s.sid, s.expires)
                .map_err(PortalError::from)?;
            Ok(Done::SignedOut { current })
        }
        Change::SignOutOthers => {
            let ended = sign_out_others(p, claims, &user.username)?;
            Ok(Done::SignedOutOthers { ended })
        }
    }
}

/// Revokes every session of `username` but this one; returns how many.
fn sign_out_others(p: &Portal, claims: &Claims, username: &str) -> Result<usize, Refused> {
    let list = p
        .sessions
        .sessions_of(username)
        .map_err(PortalError::from)?;
    let mut ended = 0;
    for s in list.iter().filter(|s| s.sid != claims.sid) {
        p.sessions
            .revoke_sid(&s.sid, s.expires)
            .map_err(PortalError::from)?;
        ended += 1;
    }
    Ok(ended)
}

/// The confirmation flow, returning here to the removal of `id`.
fn reauthenticate(p: &Portal, req: &Request<'_>, id: &str) -> Refused {
    let slug = p
        .gate
        .reauthentication_flow(req.authority)
        .unwrap_or_default();
    let back = format!(
        "{}?remove={}",
        page_url(p, req),
        url::form_urlencoded::byte_serialize(id.as_bytes()).collect::<String>()
    );
    let html = flow_url(slug, &back);
    let api = html.replacen("/.portcullis/flow/", "/.portcullis/api/flow/", 1);
    Refused::Reauthenticate { html, api }
}

/// A device name as given, trimmed: 1 to [`MAX_NAME`] characters, no control characters.
fn valid_name(name: &str) -> Result<String, Refused> {
    let name = name.trim();
    if name.is_empty() {
        return Err(Refused::InvalidName("Give the device a name."));
    }
    if name.chars().count() > MAX_NAME || name.chars().any(char::is_control) {
        return Err(Refused::InvalidName(
            "A device name is at most 64 characters, on one line.",
        ));
    }
    Ok(name.to_string())
}

fn finished(p: &Portal, req: &Request<'_>, face: Face, done: Done) -> Response {
    let (status, ended, key) = match done {
        Done::Renamed => ("renamed", 0, "renamed"),
        Done::Removed { ended } => ("removed", ended, "removed"),
        Done::SignedOut { current: true } => {
            let cleared = p.session_cookie(req).clear();
            let resp = match face {
                Face::Json => Response::json(
                    StatusCode::OK,
                    &json!({ "status": "signed_out", "current": true }),
                ),
                Face::Html => Response::html(
                    StatusCode::OK,
                    p.ui.message(
                        "Signed out",
                        "You have signed out of this browser.",
                        Some(Link {
                            href: "/",
                            label: "Back to the application",
                        }),
                    ),
                ),
            };
            return resp.set_cookie(cleared);
        }
        Done::SignedOut { current: false } => ("signed_out", 1, "signed_out"),
        Done::SignedOutOthers { ended } => ("signed_out_others", ended, "signed_out_others"),
    };
    match face {
        Face::Json => Response::json(
            StatusCode::OK,
            &json!({ "status": status, "ended_sessions": ended }),
        ),
        Face::Html => Response::redirect(StatusCode::SEE_OTHER, &format!("{PAGE}?done={key}")),
    }
}

fn refused(
    p: &Portal,
    req: &Request<'_>,
    face: Face,
    claims: &Claims,
    user: &User,
    e: Refused,
) -> Response {
    let (status, code, message) = match e {
        Refused::Portal(e) => return respond(&p.ui, face, &e),
        Refused::Reauthenticate { html, api } => {
            return match face {
                Face::Html => Response::redirect(StatusCode::SEE_OTHER, &html),
                Face::Json => Response::json(
                    StatusCode::UNAUTHORIZED,
                    &json!({
                        "error": "step_up_required",
                        "message": "confirm it is you, then send the removal again",
                        "login": html,
                        "api": api,
                    }),
                ),
            };
        }
        Refused::NotFound => (
            StatusCode::NOT_FOUND,
            "not_found",
            "There is no such device or session on your account.".to_string(),
        ),
        Refused::LastFactor(why) => (StatusCode::CONFLICT, "last_factor", why),
        Refused::InvalidName(why) => (StatusCode::BAD_REQUEST, "bad_request", why.to_string()),
    };
    match face {
        Face::Json => super::pages::json_error(status, code, &message),
        Face::Html => match build(p, req, claims, user) {
            Ok(s) => page(p, &s, status, None, Some(&message), None),
            Err(e) => respond(&p.ui, face, &e),
        },
    }
}

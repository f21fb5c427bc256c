//! The changes the settings page makes: rename or remove a device, sign out one session or
//! every other. Each is checked (the session's CSRF token, the account's own ids, a fresh
//! sign-in and the last required factor for removals), carried out, and audited.

use super::data::{self, build, store_error};
use super::{flow_url, page, page_url, sign_in_first, signed_in, PAGE};
use crate::audit::{self, Event};
use crate::portal::error::{respond, Face, PortalError};
use crate::portal::{Portal, Request, Response};
use crate::session::Claims;
use crate::store::{Device, User};
use crate::ui::Link;
use http::StatusCode;
use serde_json::json;
use std::collections::HashMap;

/// The longest device name a user may give (characters).
const MAX_NAME: usize = 64;

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

pub(super) fn change(p: &Portal, req: &Request<'_>, face: Face) -> Response {
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
///
/// # Security
/// Nor any character that is invisible or changes how the rest of the line reads: direction
/// overrides, embeddings, isolates and marks (a name ending in U+202E shows reversed, "Phone"
/// can hide a different word), zero-width characters and line or paragraph separators.
fn valid_name(name: &str) -> Result<String, Refused> {
    let name = name.trim();
    if name.is_empty() {
        return Err(Refused::InvalidName("Give the device a name."));
    }
    if name.chars().count() > MAX_NAME || name.chars().any(|c| c.is_control() || hidden(c)) {
        return Err(Refused::InvalidName(
            "A device name is at most 64 characters, on one line.",
        ));
    }
    Ok(name.to_string())
}

/// Whether `c` is invisible or steers text direction (Unicode format characters a name
/// needs none of, and the line and paragraph separators).
fn hidden(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{061C}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{2028}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}'
            | '\u{FEFF}'
            | '\u{FFF9}'..='\u{FFFB}'
    )
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
        Face::Json => crate::portal::pages::json_error(status, code, &message),
        Face::Html => match build(p, req, claims, user) {
            Ok(s) => page(p, &s, status, None, Some(&message), None),
            Err(e) => respond(&p.ui, face, &e),
        },
    }
}

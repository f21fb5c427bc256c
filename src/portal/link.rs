//! Magic links from e-mail, bound to the browser that asked for them.
//!
//! Opened (GET) in the browser whose sign-in sent it (its flow cookie names the link's
//! execution), a link confirms at once and that browser goes on. Opened anywhere else, it
//! only shows who asked (browser, address, how long ago) and asks "Was this you?": a
//! CSRF-protected POST approves the sign-in of the browser that asked, or declines it (the
//! link is then spent). The browser that opened the link never gets a session from it. Mail
//! scanners that prefetch links carry no flow cookie: they only ever see that page.
//!
//! # Security
//! A phisher who starts a sign-in with a victim's name gets a link mailed to the victim; if
//! a click anywhere passed the sign-in, the victim's click would sign the phisher in. Here a
//! click in the victim's own browser does nothing to the phisher's sign-in: only an explicit
//! approval after seeing the phisher's browser, address and time does.

use super::error::{respond, Face, PortalError};
use super::{Portal, Request, Response, FLOW_COOKIE};
use crate::flow::otp::LinkTicket;
use crate::secret::SecretString;
use crate::session::cookie::{self, CookieSpec};
use crate::ui::Link;
use hmac::{Hmac, Mac};
use http::StatusCode;
use minijinja::context;
use serde_json::json;
use sha2::Sha256;

const GONE: &str =
    "This link has expired or was already used. Start signing in again to get a new one.";

/// The cookie holding this browser's approval nonce; the approval form's CSRF token is bound
/// to it and to the link.
const APPROVAL_COOKIE: &str = "portcullis_link";
/// How long the approval nonce cookie lives: longer than any link.
const APPROVAL_COOKIE_SECS: i64 = 24 * 3600;

const APPROVE: &str = "approve";
const DECLINE: &str = "decline";

fn valid_token(t: String) -> Option<SecretString> {
    Some(t)
        .filter(|t| !t.is_empty() && t.len() <= 128)
        .map(SecretString::new)
}

/// `GET /.portcullis/link?token=...` (HTML) and `GET /.portcullis/api/link?token=...` (JSON).
pub(super) fn open(p: &Portal, req: &Request<'_>, face: Face) -> Response {
    let Some(token) = req.query_param("token").and_then(valid_token) else {
        return refused(p, req, face);
    };
    let ticket = match p.engine.link_request(&token) {
        Ok(Some(t)) => t,
        Ok(None) => return refused(p, req, face),
        Err(e) => return respond(&p.ui, face, &PortalError::Link(e)),
    };
    if same_browser(req, &ticket) {
        return approve(p, req, face, &token);
    }
    let now = p.sessions.clock().now();
    let requester = &ticket.requester;
    match face {
        Face::Json => Response::json(
            StatusCode::OK,
            &json!({
                "status": "approval_required",
                "requested_by": {
                    "browser": requester.browser,
                    "address": requester.address,
                    "at": requester.at,
                    "ago": requester.ago(now),
                },
                "actions": [APPROVE, DECLINE],
            }),
        ),
        Face::Html => {
            let (nonce, fresh) = match cookie::find(req.headers, APPROVAL_COOKIE) {
                Some(n) if valid_nonce(n) => (n.to_string(), false),
                _ => (crate::secret::random_token(24), true),
            };
            let csrf = match csrf_for(p, &token, &nonce) {
                Ok(c) => c,
                Err(e) => return respond(&p.ui, face, &PortalError::Link(e)),
            };
            let shown = context! {
                browser => requester.browser,
                address => requester.address,
                ago => requester.ago(now),
            };
            let page = Response::html(StatusCode::OK, p.ui.link_approval(&token, &csrf, shown));
            if fresh {
                page.set_cookie(approval_cookie(req).set(&nonce, APPROVAL_COOKIE_SECS))
            } else {
                page
            }
        }
    }
}

/// `POST /.portcullis/link` (the approval form: `token`, `csrf_token`, `decision`) and
/// `POST /.portcullis/api/link` (`{"token", "decision"}` as JSON).
pub(super) fn decide(p: &Portal, req: &Request<'_>, face: Face) -> Response {
    let answer = match face {
        Face::Html => form_answer(p, req),
        Face::Json => json_answer(req),
    };
    let (token, decision) = match answer {
        Ok(Some(a)) => a,
        Ok(None) => return refused(p, req, face),
        Err(e) => return respond(&p.ui, face, &e),
    };
    match decision.as_str() {
        APPROVE => approve(p, req, face, &token),
        DECLINE => decline(p, req, face, &token),
        _ => respond(
            &p.ui,
            face,
            &PortalError::BadRequest("`decision` must be \"approve\" or \"decline\"".into()),
        ),
    }
}

/// The token and decision of a form post, once its CSRF token matched this browser's nonce
/// and the link; `None` when there is no usable token.
fn form_answer(
    p: &Portal,
    req: &Request<'_>,
) -> Result<Option<(SecretString, String)>, PortalError> {
    let retry = "/".to_string();
    let Ok(pairs) = serde_urlencoded::from_bytes::<Vec<(String, String)>>(&req.body) else {
        return Err(PortalError::MalformedForm { retry });
    };
    let field = |name: &str| {
        let mut values = pairs.iter().filter(|(k, _)| k == name).map(|(_, v)| v);
        // A field sent twice is not this page's form.
        match (values.next(), values.next()) {
            (Some(v), None) => Some(v.clone()),
            _ => None,
        }
    };
    let Some(token) = field("token").and_then(valid_token) else {
        return Ok(None);
    };
    // A link that is gone says so whatever else came with it.
    if p.engine
        .link_request(&token)
        .map_err(PortalError::Link)?
        .is_none()
    {
        return Ok(None);
    }
    let nonce = cookie::find(req.headers, APPROVAL_COOKIE).filter(|n| valid_nonce(n));
    let sent = field("csrf_token").unwrap_or_default();
    let matches = match nonce {
        Some(nonce) => {
            let expected = csrf_for(p, &token, nonce).map_err(PortalError::Link)?;
            !sent.is_empty() && crate::secret::equal(sent.as_bytes(), expected.expose().as_bytes())
        }
        None => false,
    };
    if !matches {
        return Err(PortalError::Csrf { retry });
    }
    Ok(Some((token, field("decision").unwrap_or_default())))
}

fn json_answer(req: &Request<'_>) -> Result<Option<(SecretString, String)>, PortalError> {
    // As for every API call, the JSON content type is the CSRF defence: a cross-site form
    // cannot send it without a CORS preflight, which is never granted.
    if req.content_type().as_deref() != Some("application/json") {
        return Err(PortalError::NotJson);
    }
    #[derive(serde::Deserialize)]
    struct Body {
        token: String,
        decision: String,
    }
    let body: Body = serde_json::from_slice(&req.body).map_err(|_| {
        PortalError::BadRequest("send {\"token\": \"...\", \"decision\": \"approve\"}".into())
    })?;
    Ok(valid_token(body.token).map(|t| (t, body.decision)))
}

/// Confirms the link: the browser that asked goes on. The one answered here goes on too
/// when it is that browser; any other is told to go back to it, and gets no session.
fn approve(p: &Portal, req: &Request<'_>, face: Face, token: &SecretString) -> Response {
    let ticket = match p.engine.confirm_link(token) {
        Ok(Some(t)) => t,
        Ok(None) => return refused(p, req, face),
        Err(e) => return respond(&p.ui, face, &PortalError::Link(e)),
    };
    let same = same_browser(req, &ticket);
    tracing::info!(client = %req.client, flow = %ticket.flow, same_browser = same, outcome = "approved", "sign-in link confirmed");
    let here = same && ticket.continue_in_verify_window;
    match face {
        Face::Json if here => Response::json(
            StatusCode::OK,
            &json!({ "status": "confirmed", "continue": format!("/.portcullis/api/flow/{}", ticket.flow) }),
        ),
        Face::Json if same => Response::json(StatusCode::OK, &json!({ "status": "confirmed" })),
        Face::Json => Response::json(StatusCode::OK, &json!({ "status": "approved" })),
        Face::Html if here => Response::redirect(
            StatusCode::SEE_OTHER,
            &format!("/.portcullis/flow/{}", ticket.flow),
        ),
        Face::Html if same => Response::html(
            StatusCode::OK,
            p.ui.message(
                "Link confirmed",
                "You can close this tab: the window where you started signing in continues by itself.",
                None,
            ),
        ),
        Face::Html => Response::html(
            StatusCode::OK,
            p.ui.message(
                "Sign-in approved",
                "The browser that asked continues by itself. This browser is not signed in.",
                None,
            ),
        ),
    }
}

fn decline(p: &Portal, req: &Request<'_>, face: Face, token: &SecretString) -> Response {
    let ticket = match p.engine.decline_link(token) {
        Ok(Some(t)) => t,
        Ok(None) => return refused(p, req, face),
        Err(e) => return respond(&p.ui, face, &PortalError::Link(e)),
    };
    tracing::warn!(client = %req.client, flow = %ticket.flow, requester = %ticket.requester.address, outcome = "declined", "sign-in link declined");
    match face {
        Face::Json => Response::json(StatusCode::OK, &json!({ "status": "declined" })),
        Face::Html => Response::html(
            StatusCode::OK,
            p.ui.message(
                "Sign-in declined",
                "Nobody can use this link now. If you did not try to sign in, someone may know your password: change it.",
                None,
            ),
        ),
    }
}

/// Whether the request comes from the browser whose sign-in sent the link: its flow cookie
/// names the link's execution.
fn same_browser(req: &Request<'_>, ticket: &LinkTicket) -> bool {
    cookie::find(req.headers, FLOW_COOKIE)
        .is_some_and(|id| crate::secret::equal(id.as_bytes(), ticket.execution.as_bytes()))
}

fn valid_nonce(n: &str) -> bool {
    (16..=64).contains(&n.len())
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The approval form's CSRF token: a keyed hash of the link and this browser's nonce, so
/// it is only valid from the browser that was shown the page, and only for that link.
fn csrf_for(
    p: &Portal,
    token: &SecretString,
    nonce: &str,
) -> Result<SecretString, crate::flow::FlowError> {
    let key = p.engine.services().store.secret("link-approval")?;
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&key)
        .unwrap_or_else(|_| unreachable!("HMAC accepts 32-byte keys"));
    mac.update(crate::flow::otp::hash_token(token).as_bytes());
    mac.update(b"\0");
    mac.update(nonce.as_bytes());
    let tag = mac.finalize().into_bytes();
    Ok(SecretString::new(
        tag.iter().map(|b| format!("{b:02x}")).collect::<String>(),
    ))
}

fn approval_cookie(req: &Request<'_>) -> CookieSpec<'static> {
    CookieSpec {
        name: APPROVAL_COOKIE,
        path: "/.portcullis/link",
        domain: None,
        secure: req.tls(),
    }
}

/// The answer to a link that is not (or no longer) valid: unknown, used, declined, expired.
/// Opened in the browser of a sign-in waiting for a link, it counts against that sign-in's
/// `max_allowed_attempts` (Curity counts link confirmations as attempts), so links cannot be
/// tried without limit from the page that waits for one.
fn refused(p: &Portal, req: &Request<'_>, face: Face) -> Response {
    if let Some(id) = cookie::find(req.headers, FLOW_COOKIE) {
        if let Err(e) = p.engine.link_refused(id) {
            tracing::warn!(error = %e, "could not count a refused link");
        }
    }
    gone(p, face)
}

fn gone(p: &Portal, face: Face) -> Response {
    if face == Face::Json {
        return Response::json(
            StatusCode::GONE,
            &json!({ "error": "link_gone", "message": GONE }),
        );
    }
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

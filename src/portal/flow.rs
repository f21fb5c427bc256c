//! The flow endpoints. Both faces load the execution the same way, hand the input to the one
//! engine, and differ only in how they render the resulting [`View`].

use super::pages::{internal_error, json_error};
use super::{Portal, Request, Response, FLOW_COOKIE};
use crate::flow::{Caller, Execution, FlowError, Input, Login, Step, View};
use crate::session::{cookie, NewSession};
use crate::ui::{challenge_json, ended_json, redirect_json, Link};
use http::{Method, StatusCode};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Face {
    Html,
    Json,
}

/// `/.portcullis/flow/<slug>`: server-rendered forms, CSRF-protected, no JavaScript needed.
pub async fn html(p: &Portal, req: &Request<'_>, slug: &str) -> Response {
    handle(p, req, slug, Face::Html).await
}

/// `/.portcullis/api/flow/<slug>`: the same steps as JSON.
pub async fn json(p: &Portal, req: &Request<'_>, slug: &str) -> Response {
    handle(p, req, slug, Face::Json).await
}

async fn handle(p: &Portal, req: &Request<'_>, slug: &str, face: Face) -> Response {
    if p.engine.flow(slug).is_none() {
        return match face {
            Face::Html => super::pages::not_found(&p.ui),
            Face::Json => json_error(StatusCode::NOT_FOUND, "unknown_flow", "no such flow"),
        };
    }
    // Magic links and same-site return addresses use the configured origin, not the Host.
    let origin = p.origin(req);
    let at = Caller {
        client: req.client,
        origin: &origin,
    };
    // One step of an execution at a time, from load to save (see `Engine::lock`).
    let _step = match cookie::find(req.headers, FLOW_COOKIE) {
        Some(id) => Some(p.engine.lock(id).await),
        None => None,
    };
    let existing = match resume(p, req, slug) {
        Ok(e) => e,
        Err(e) => return failure(p, face, &e),
    };
    if *req.method != Method::POST {
        // A page load that names where to go afterwards starts afresh when the sign-in under
        // way was for somewhere else (another app sent the user to the auth host), so the
        // user lands where they were going.
        let existing = existing.filter(|e| match req.query_param("rd") {
            Some(rd) => {
                p.redirects
                    .resolve(Some(&rd), &p.origin(req), &p.fallback(req))
                    == e.rd
            }
            None => true,
        });
        let (mut exec, fresh) = match existing {
            Some(e) => (e, false),
            None => match start(p, req, slug) {
                Ok(e) => (e, true),
                Err(e) => return failure(p, face, &e),
            },
        };
        return match p.engine.view(&mut exec, at).await {
            Ok(view) => render(p, req, face, &exec, view, fresh, false),
            Err(e) => failure(p, face, &e),
        };
    }

    let Some(mut exec) = existing else {
        return match face {
            // The sign-in expired between page load and submit: start over on a fresh page.
            Face::Html => Response::redirect(StatusCode::SEE_OTHER, &flow_path(slug)),
            Face::Json => json_error(
                StatusCode::GONE,
                "execution_expired",
                "this sign-in has expired or was never started; GET the flow to start again",
            ),
        };
    };
    let input = match face {
        Face::Html => form_input(p, req, &exec),
        Face::Json => json_input(req),
    };
    let input = match input {
        Ok(i) => i,
        Err(resp) => return *resp,
    };
    let before = exec.id.clone();
    match p.engine.submit(&mut exec, input, at).await {
        // A start-over (or a corrected identification) replaced the execution: hand out the
        // new one's cookie.
        Ok(view) => {
            let fresh = exec.id != before;
            render(p, req, face, &exec, view, fresh, true)
        }
        Err(FlowError::StageMismatch { expected }) => match face {
            Face::Json => json_error(
                StatusCode::BAD_REQUEST,
                "stage_mismatch",
                &format!("the response does not answer the current stage `{expected}`"),
            ),
            Face::Html => Response::html(
                StatusCode::BAD_REQUEST,
                p.ui.message(
                    "Out of step",
                    "That form was for another step of this sign-in.",
                    Some(Link {
                        href: &flow_path(slug),
                        label: "Continue signing in",
                    }),
                ),
            ),
        },
        Err(e) => failure(p, face, &e),
    }
}

fn flow_path(slug: &str) -> String {
    format!("/.portcullis/flow/{slug}")
}

fn resume(p: &Portal, req: &Request<'_>, slug: &str) -> Result<Option<Execution>, FlowError> {
    let exec = match cookie::find(req.headers, FLOW_COOKIE) {
        Some(id) if !id.is_empty() && id.len() <= 64 => p.engine.resume(id, slug)?,
        _ => None,
    };
    Ok(exec.filter(|e| carries_a_live_session(p, e)))
}

/// Whether a step-up's session still stands (a plain execution carries none).
///
/// # Security
/// A step-up stands in for the stages its session proved. Held open, it would otherwise outlive
/// a sign-out, a password change or the session's own end, and mint a fresh session from
/// proofs that were revoked: such an execution is treated as gone.
fn carries_a_live_session(p: &Portal, e: &Execution) -> bool {
    e.carried.as_ref().is_none_or(|c| {
        let user = e.user.as_deref().unwrap_or_default();
        c.exp > crate::clock::now() && !p.sessions.is_revoked(&c.sid, user, c.iat_ms)
    })
}

/// A new execution; a step-up of the session when the request carries a valid one (an app
/// whose flow asks for more than the session proves sent the user here).
fn start(p: &Portal, req: &Request<'_>, slug: &str) -> Result<Execution, FlowError> {
    let rd = p.redirects.resolve(
        req.query_param("rd").as_deref(),
        &p.origin(req),
        &p.fallback(req),
    );
    match p.gate.session(req.headers) {
        Some(session) => p.engine.start_signed_in(slug, rd, req.client, &session),
        None => p.engine.start(slug, rd, req.client),
    }
}

fn form_input(p: &Portal, req: &Request<'_>, exec: &Execution) -> Result<Input, Box<Response>> {
    let retry = flow_path(&exec.flow);
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(&req.body)
        .map_err(|_| Box::new(super::pages::malformed_form(&p.ui, &retry)))?;
    let mut input = Input::new();
    let mut csrf = None;
    for (k, v) in pairs {
        if k == "csrf_token" {
            csrf = Some(v);
        } else {
            input.insert(k, v);
        }
    }
    if !csrf.is_some_and(|c| crate::secret::equal(c.as_bytes(), exec.csrf.expose().as_bytes())) {
        return Err(Box::new(super::pages::csrf_failed(&p.ui, &retry)));
    }
    Ok(input)
}

fn json_input(req: &Request<'_>) -> Result<Input, Box<Response>> {
    // Requiring a JSON content type is the API's CSRF defence: a cross-site form cannot send
    // one without a CORS preflight, which we never grant.
    if req.content_type().as_deref() != Some("application/json") {
        return Err(Box::new(json_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the response as Content-Type: application/json",
        )));
    }
    let bad = |m: &str| Box::new(json_error(StatusCode::BAD_REQUEST, "bad_request", m));
    let value: serde_json::Value =
        serde_json::from_slice(&req.body).map_err(|_| bad("the body is not valid JSON"))?;
    let serde_json::Value::Object(map) = value else {
        return Err(bad("the body must be a JSON object of field values"));
    };
    let mut input = Input::new();
    for (k, v) in map {
        let v = match v {
            serde_json::Value::String(s) => s,
            serde_json::Value::Number(n) => n.to_string(),
            serde_json::Value::Bool(b) => b.to_string(),
            _ => return Err(bad(&format!("field `{k}` must be a string"))),
        };
        input.insert(k, v);
    }
    Ok(input)
}

fn render(
    p: &Portal,
    req: &Request<'_>,
    face: Face,
    exec: &Execution,
    view: View,
    fresh: bool,
    posted: bool,
) -> Response {
    let flow_cookie = p.flow_cookie(req);
    match view.step {
        Step::Challenge { stage, challenge } => {
            let mut resp = match face {
                Face::Json => Response::json(
                    StatusCode::OK,
                    &challenge_json(&view.flow, &view.title, &stage, &challenge),
                ),
                // After a successful post, redirect so a reload does not resubmit the form.
                Face::Html if posted && challenge.errors.is_empty() => {
                    Response::redirect(StatusCode::SEE_OTHER, &flow_path(&view.flow))
                }
                Face::Html => {
                    match p.ui.flow_page(
                        &view.title,
                        &stage,
                        &challenge,
                        exec.csrf.expose(),
                        &flow_path(&view.flow),
                    ) {
                        Ok(page) => Response::html(StatusCode::OK, page),
                        Err(e) => {
                            tracing::error!(error = %e, "flow page failed to render");
                            return internal_error(&p.ui);
                        }
                    }
                }
            };
            if fresh {
                let max_age = exec.expires - crate::clock::now();
                resp = resp.set_cookie(flow_cookie.set(&exec.id, max_age));
            }
            resp
        }
        Step::Done { rd, login } => {
            let mut resp = match face {
                Face::Json => Response::json(StatusCode::OK, &redirect_json(&view.flow, &rd)),
                Face::Html if posted => Response::redirect(StatusCode::SEE_OTHER, &rd),
                Face::Html => Response::redirect(StatusCode::FOUND, &rd),
            };
            if let Some(login) = login {
                match issue(p, req, &view.flow, login) {
                    Ok(cookie) => resp = resp.set_cookie(cookie),
                    Err(resp) => return resp,
                }
            }
            resp.set_cookie(flow_cookie.clear())
        }
        Step::Ended { message } => {
            let resp = match face {
                Face::Json => Response::json(StatusCode::OK, &ended_json(&view.flow, &message)),
                Face::Html => {
                    let restart = format!(
                        "{}?rd={}",
                        flow_path(&view.flow),
                        percent_encoding::utf8_percent_encode(
                            &exec.rd,
                            percent_encoding::NON_ALPHANUMERIC
                        )
                    );
                    Response::html(
                        StatusCode::OK,
                        p.ui.message(
                            &view.title,
                            &message,
                            Some(Link {
                                href: &restart,
                                label: "Start again",
                            }),
                        ),
                    )
                }
            };
            resp.set_cookie(flow_cookie.clear())
        }
    }
}

/// Signs the session for a completed flow; returns the `Set-Cookie` value.
fn issue(p: &Portal, req: &Request<'_>, flow: &str, login: Login) -> Result<String, Response> {
    let user = login.user;
    let issued = p.sessions.issue(NewSession {
        name: user.display_name().to_string(),
        email: user.email.clone().unwrap_or_default(),
        groups: user.groups.clone(),
        amr: login.amr,
        factors: login.factors,
        flows: login.flows,
        lifetime_secs: login.lifetime_secs,
        username: user.username.clone(),
    });
    match issued {
        Ok((token, _claims)) => {
            let step_up = login.replaces.is_some();
            if let Some((sid, exp)) = login.replaces {
                // The new cookie replaces the old session: a sign-out of the new one must not
                // leave the old token usable.
                if let Err(e) = p.sessions.revoke_sid(&sid, exp) {
                    tracing::warn!(error = %e, "could not record the revocation of a replaced session");
                }
            }
            tracing::info!(user = %user.username, client = %req.client, flow, step_up, outcome = "success", "sign-in succeeded");
            Ok(p.session_cookie(req).set(&token, login.lifetime_secs))
        }
        Err(e) => {
            tracing::error!(error = %e, user = %user.username, "could not issue a session");
            Err(internal_error(&p.ui))
        }
    }
}

fn failure(p: &Portal, face: Face, e: &FlowError) -> Response {
    tracing::error!(error = %e, "flow step failed");
    match face {
        Face::Html => internal_error(&p.ui),
        Face::Json => json_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the sign-in service hit an internal error; try again",
        ),
    }
}

//! The flow endpoints. Both faces load the execution the same way, hand the input to the one
//! engine, and differ only in how they render the resulting [`View`]; every error goes to
//! [`respond`], the one place it becomes a page or a JSON body.

use super::error::{flow_path, respond, Face, PortalError};
use super::{Portal, Request, Response, FLOW_COOKIE};
use crate::flow::{Caller, Challenge, Execution, FlowError, Input, Login, Step, View};
use crate::session::{cookie, NewSession};
use crate::ui::{challenge_json, ended_json, redirect_json, Link};
use http::{Method, StatusCode};

type Answer = Result<Response, PortalError>;

/// `/.portcullis/flow/<slug>`: server-rendered forms, CSRF-protected, no JavaScript needed.
pub(super) async fn html(p: &Portal, req: &Request<'_>, slug: &str) -> Response {
    handle(p, req, slug, Face::Html).await
}

/// `/.portcullis/api/flow/<slug>`: the same steps as JSON.
pub(super) async fn json(p: &Portal, req: &Request<'_>, slug: &str) -> Response {
    handle(p, req, slug, Face::Json).await
}

async fn handle(p: &Portal, req: &Request<'_>, slug: &str, face: Face) -> Response {
    let to = Answering { p, req, face };
    step(&to, slug)
        .await
        .unwrap_or_else(|e| respond(&p.ui, face, &e))
}

/// Who is answered, and how.
struct Answering<'r> {
    p: &'r Portal,
    req: &'r Request<'r>,
    face: Face,
}

fn in_flow(slug: &str) -> impl Fn(FlowError) -> PortalError + '_ {
    move |source| PortalError::Flow {
        slug: slug.to_string(),
        source,
    }
}

async fn step(to: &Answering<'_>, slug: &str) -> Answer {
    let (p, req) = (to.p, to.req);
    if p.engine.flow(slug).is_none() {
        return Err(PortalError::UnknownFlow(slug.to_string()));
    }
    // Magic links and same-site return addresses use the configured origin, not the Host.
    let origin = p.origin(req);
    let headers: Vec<(&str, &str)> = crate::flow::POLICY_HEADERS
        .iter()
        .filter_map(|&name| Some((name, req.headers.get(name)?.to_str().ok()?)))
        .collect();
    let at = Caller {
        client: req.client,
        origin: &origin,
        method: req.method.as_str(),
        headers: &headers,
    };
    // One step of an execution at a time, from load to save (see `Engine::lock`).
    let _step = match cookie::find(req.headers, FLOW_COOKIE) {
        Some(value) => Some(p.engine.lock(&p.engine.execution_id(value)).await),
        None => None,
    };
    let existing = resume(p, req, slug).map_err(in_flow(slug))?;
    if *req.method != Method::POST {
        return show(to, slug, existing, at).await;
    }
    let mut exec = existing.ok_or_else(|| PortalError::Expired(slug.to_string()))?;
    banned(p, req, &exec).map_err(in_flow(slug))?;
    let input = match to.face {
        Face::Html => form_input(req, &exec)?,
        Face::Json => json_input(req)?,
    };
    let view = p
        .engine
        .submit(&mut exec, input, at)
        .await
        .map_err(in_flow(slug))?;
    render(to, &exec, view, true).await
}

/// Whether regulation bans this client (or this client for the execution's account): checked
/// in memory before any answer is read, so a banned client costs no disk access or hashing.
///
/// # Errors
/// [`FlowError::Regulated`] with the seconds to wait.
fn banned(p: &Portal, req: &Request<'_>, exec: &Execution) -> Result<(), FlowError> {
    let account = crate::flow::regulated::account(exec);
    let now = p.sessions.clock().now();
    p.engine
        .services()
        .regulator
        .check(account, req.client, now)
        .map_err(|r| FlowError::Regulated {
            retry_after: r.retry_after,
        })
}

/// A page load: the execution under way, or a fresh one.
async fn show(
    to: &Answering<'_>,
    slug: &str,
    existing: Option<Execution>,
    at: Caller<'_>,
) -> Answer {
    // A page load that names where to go afterwards starts afresh when the sign-in under way
    // was for somewhere else (another app sent the user to the auth host), so the user lands
    // where they were going.
    let existing = existing.filter(|e| goes_to(to.p, to.req, e));
    // An invitation link always starts afresh: it is the invitation the visitor came with.
    let existing = existing.filter(|_| to.req.query_param(INVITATION_TOKEN).is_none());
    let mut exec = match existing {
        Some(e) => e,
        None => start(to.p, to.req, slug)?,
    };
    let view =
        to.p.engine
            .view(&mut exec, at)
            .await
            .map_err(in_flow(slug))?;
    render(to, &exec, view, false).await
}

/// Whether the execution returns where this request's `rd` (if any) asks to go.
fn goes_to(p: &Portal, req: &Request<'_>, e: &Execution) -> bool {
    req.query_param("rd").is_none_or(|rd| {
        p.redirects
            .resolve(Some(&rd), &p.origin(req), &p.fallback(req))
            == e.rd
    })
}

fn resume(p: &Portal, req: &Request<'_>, slug: &str) -> Result<Option<Execution>, FlowError> {
    let exec = match cookie::find(req.headers, FLOW_COOKIE) {
        // A page shown but never answered: the fresh start the cookie holds (signed).
        Some(held) if held.starts_with(crate::flow::pending::HELD) => {
            p.engine.resume_held(held, slug, req.client)?
        }
        Some(id) if !id.is_empty() && id.len() <= 64 => p.engine.resume(id, slug)?,
        _ => None,
    };
    Ok(exec.filter(|e| carries_a_live_session(p, e) && held_by_its_session(p, req, e)))
}

/// Whether a flow run for a signed-in user (settings, unenrolment) is continued by the browser
/// whose session started it, and a visitor's flow (enrolment, recovery) by a visitor.
///
/// # Security
/// Such an execution acts on the account of the session it carries; a flow cookie that ends
/// up beside another session (another user signed in, or none) must not act on it. An
/// enrolment or recovery that a signed-in browser goes on with (a visitor's flow cookie
/// copied beside a session, or the browser signed in from another tab meanwhile) is gone too,
/// as starting one there is refused: it would make a second account, or reset a password,
/// and silently swap the session for another user's.
fn held_by_its_session(p: &Portal, req: &Request<'_>, e: &Execution) -> bool {
    let visitors = p
        .engine
        .flow(&e.flow)
        .is_some_and(|f| f.designation.starter() == crate::config::Starter::Visitor);
    if visitors {
        return p.gate.session(req.headers).is_none();
    }
    if !p.engine.bound(e) {
        return true;
    }
    let Some(carried) = &e.carried else {
        return false;
    };
    p.gate
        .session(req.headers)
        .is_some_and(|s| crate::secret::equal(s.sid.as_bytes(), carried.sid.as_bytes()))
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
        c.exp > p.sessions.clock().now() && !p.sessions.is_revoked(&c.sid, user, c.iat_ms)
    })
}

/// A new execution, as the flow's designation allows (see [`crate::flow::Engine::start`] and
/// [`crate::flow::Engine::start_signed_in`]): with a valid session, a step-up of it (an app
/// whose flow asks for more than the session proves sent the user here) or a flow run for its
/// user; without one, a sign-in, enrolment or recovery.
///
/// # Errors
/// [`PortalError::SignInFirst`] when the flow needs a signed-in user and there is none; the
/// engine's refusals as [`PortalError::Flow`].
fn start(p: &Portal, req: &Request<'_>, slug: &str) -> Result<Execution, PortalError> {
    let mut exec = start_for(p, req, slug)?;
    // authentik's `?itoken=`: read by the flow's invitation stage, if it has one.
    exec.invitation_token = req
        .query_param(INVITATION_TOKEN)
        .filter(|t| !t.is_empty() && t.len() <= 128)
        .map(crate::secret::SecretString::new);
    Ok(exec)
}

/// The query parameter an invitation link carries its token in.
const INVITATION_TOKEN: &str = "itoken";

fn start_for(p: &Portal, req: &Request<'_>, slug: &str) -> Result<Execution, PortalError> {
    let asked = req.query_param("rd");
    let too_long = |rd: &str| rd.len() > crate::flow::MAX_RD_BYTES;
    if asked.as_deref().is_some_and(too_long) {
        return Err(PortalError::ReturnTooLong);
    }
    let rd = p
        .redirects
        .resolve(asked.as_deref(), &p.origin(req), &p.fallback(req));
    if too_long(&rd) {
        return Err(PortalError::ReturnTooLong);
    }
    let started = match p.gate.session(req.headers) {
        // The settings page sent the user to confirm a removal: every factor is asked again,
        // however fresh the session, so no confirmation mints a fresh session unproved.
        Some(session) if super::settings::confirms(p, slug, &rd) => {
            p.engine
                .start_signed_in(slug, rd, req.client, &crate::access::Gate::bare(&session))
        }
        // A session older than a rule's `max_age` that already satisfies the flow is
        // re-authenticated: only the identity is carried, every factor is asked again.
        Some(session) => match p.gate.reauthentication(slug, &session) {
            Some(bare) => p.engine.start_signed_in(slug, rd, req.client, &bare),
            None => p.engine.start_signed_in(slug, rd, req.client, &session),
        },
        None => p.engine.start(slug, rd, req.client),
    };
    match started {
        Err(FlowError::SignInRequired { flow }) => Err(PortalError::SignInFirst {
            login: sign_in_first(p, req, slug),
            flow,
        }),
        other => other.map_err(in_flow(slug)),
    }
}

/// Where a visitor without a session goes before a flow only a signed-in user may run: the
/// sign-in flow of the app on this host (else the first authentication flow), returning to
/// this very page.
fn sign_in_first(p: &Portal, req: &Request<'_>, slug: &str) -> String {
    let cfg = p.gate.config();
    let login = p
        .gate
        .app(req.authority)
        .map(|a| a.flow.as_str())
        .or_else(|| {
            cfg.flows
                .iter()
                .find(|f| f.designation == crate::config::Designation::Authentication)
                .map(|f| f.slug.as_str())
        })
        .unwrap_or_default();
    // Back to the HTML face of this flow, with the return address it was given (the JSON
    // face's caller is a script in a page of the same origin: the browser comes back there).
    let here = match req.query_param("rd") {
        Some(rd) => format!(
            "{}{}?rd={}",
            p.origin(req),
            flow_path(slug),
            percent_encoding::utf8_percent_encode(&rd, percent_encoding::NON_ALPHANUMERIC)
        ),
        None => format!("{}{}", p.origin(req), flow_path(slug)),
    };
    format!(
        "{}?rd={}",
        flow_path(login),
        percent_encoding::utf8_percent_encode(&here, percent_encoding::NON_ALPHANUMERIC)
    )
}

/// The form's fields, once its CSRF token matched the execution's.
fn form_input(req: &Request<'_>, exec: &Execution) -> Result<Input, PortalError> {
    let retry = flow_path(&exec.flow);
    let Ok(pairs) = serde_urlencoded::from_bytes::<Vec<(String, String)>>(&req.body) else {
        return Err(PortalError::MalformedForm { retry });
    };
    let mut input = Input::new();
    let mut csrf = None;
    for (k, v) in pairs {
        if k == "csrf_token" {
            csrf = Some(v);
        } else {
            input.insert(k, v);
        }
    }
    // An execution read back without a token (a record that did not decode) matches no post,
    // not even one whose token is empty.
    let expected = exec.csrf.expose().as_bytes();
    if expected.is_empty() || !csrf.is_some_and(|c| crate::secret::equal(c.as_bytes(), expected)) {
        return Err(PortalError::Csrf { retry });
    }
    Ok(input)
}

fn json_input(req: &Request<'_>) -> Result<Input, PortalError> {
    // Requiring a JSON content type is the API's CSRF defence: a cross-site form cannot send
    // one without a CORS preflight, which we never grant.
    if req.content_type().as_deref() != Some("application/json") {
        return Err(PortalError::NotJson);
    }
    let bad = |m: &str| PortalError::BadRequest(m.to_string());
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
            // A WebAuthn answer may come as the object `navigator.credentials` gave.
            v @ serde_json::Value::Object(_) if k == "credential" => v.to_string(),
            _ => return Err(bad(&format!("field `{k}` must be a string"))),
        };
        input.insert(k, v);
    }
    Ok(input)
}

/// The response for `view`. A waiting execution's cookie is set when it differs from the one
/// the request carried: a new execution, a start-over's, or a held one now stored.
async fn render(to: &Answering<'_>, exec: &Execution, view: View, posted: bool) -> Answer {
    let flow_cookie = to.p.flow_cookie(to.req);
    let View { flow, title, step } = view;
    let names = Names {
        flow: &flow,
        title: &title,
    };
    match step {
        Step::Challenge { stage, challenge } => {
            let resp = challenge_page(to, exec, names, &stage, &challenge, posted)?;
            let value = to.p.engine.cookie_value(exec);
            if cookie::find(to.req.headers, FLOW_COOKIE) == Some(value.as_str()) {
                return Ok(resp);
            }
            let max_age = exec.expires - to.p.sessions.clock().now();
            Ok(resp.set_cookie(flow_cookie.set(&value, max_age)))
        }
        Step::Done {
            rd,
            login,
            signed_out,
        } => {
            let resp = done(to.face, &flow, &rd, posted);
            let resp = match login {
                Some(login) => resp.set_cookie(issue(to.p, to.req, &flow, login).await?),
                None if signed_out => resp.set_cookie(sign_out(to.p, to.req)),
                None => resp,
            };
            Ok(resp.set_cookie(flow_cookie.clear()))
        }
        Step::Ended { message } => {
            Ok(ended(to, exec, names, &message).set_cookie(flow_cookie.clear()))
        }
    }
}

/// The flow's slug and title.
#[derive(Clone, Copy)]
struct Names<'a> {
    flow: &'a str,
    title: &'a str,
}

fn challenge_page(
    to: &Answering<'_>,
    exec: &Execution,
    view: Names<'_>,
    stage: &str,
    challenge: &Challenge,
    posted: bool,
) -> Answer {
    Ok(match to.face {
        Face::Json => Response::json(
            StatusCode::OK,
            &challenge_json(view.flow, view.title, stage, challenge),
        ),
        // After a successful post, redirect so a reload does not resubmit the form.
        Face::Html if posted && challenge.errors.is_empty() => {
            Response::redirect(StatusCode::SEE_OTHER, &flow_path(view.flow))
        }
        Face::Html => {
            let action = flow_path(view.flow);
            let page =
                to.p.ui
                    .flow_page(view.title, stage, challenge, exec.csrf.expose(), &action)?;
            // Only a page with a passkey ceremony may run the gateway's script; only a captcha
            // page its provider's.
            match (&challenge.webauthn, &challenge.captcha) {
                (_, Some(c)) => with_csp(
                    Response::html_scripted(StatusCode::OK, page),
                    to.p.captcha_csp(&c.csp_sources),
                ),
                (Some(_), None) => Response::html_scripted(StatusCode::OK, page),
                (None, None) => Response::html(StatusCode::OK, page),
            }
        }
    })
}

/// `resp` under the policy `csp` instead of its own.
fn with_csp(mut resp: Response, csp: http::HeaderValue) -> Response {
    for (name, value) in &mut resp.headers {
        if *name == http::header::CONTENT_SECURITY_POLICY {
            *value = csp.clone();
        }
    }
    resp
}

fn done(face: Face, flow: &str, rd: &str, posted: bool) -> Response {
    match face {
        Face::Json => Response::json(StatusCode::OK, &redirect_json(flow, rd)),
        Face::Html if posted => Response::redirect(StatusCode::SEE_OTHER, rd),
        Face::Html => Response::redirect(StatusCode::FOUND, rd),
    }
}

fn ended(to: &Answering<'_>, exec: &Execution, view: Names<'_>, message: &str) -> Response {
    if to.face == Face::Json {
        return Response::json(StatusCode::OK, &ended_json(view.flow, message));
    }
    let restart = format!(
        "{}?rd={}",
        flow_path(view.flow),
        percent_encoding::utf8_percent_encode(&exec.rd, percent_encoding::NON_ALPHANUMERIC)
    );
    let link = Link {
        href: &restart,
        label: "Start again",
    };
    Response::html(
        StatusCode::OK,
        to.p.ui.message(view.title, message, Some(link)),
    )
}

/// Ends the session the request carries, if it still stands (a `user_logout` or
/// `user_delete` stage already revoked the execution's own); returns the `Set-Cookie` value
/// that clears the session cookie.
fn sign_out(p: &Portal, req: &Request<'_>) -> String {
    if let Some(claims) = p.gate.session(req.headers) {
        if let Err(e) = p.sessions.revoke(&claims) {
            // The in-memory revocation already holds; only a restart could revive it.
            tracing::warn!(error = %e, "could not record the revocation of a signed-out session");
        }
    }
    p.session_cookie(req).clear()
}

/// Signs the session for a completed flow; returns the `Set-Cookie` value. The session's
/// record is written durably (an fsync) before the cookie is handed out, so the write runs
/// on the blocking pool: the async worker goes on serving signed-in traffic meanwhile.
async fn issue(
    p: &Portal,
    req: &Request<'_>,
    flow: &str,
    login: Login,
) -> Result<String, PortalError> {
    let user = login.user;
    let seen = crate::session::Seen {
        client: req.client.to_string(),
        browser: crate::session::browser::label(
            req.headers
                .get(http::header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default(),
        ),
    };
    let new = NewSession {
        name: user.display_name().to_string(),
        email: user.email.clone().unwrap_or_default(),
        groups: user.groups.clone(),
        amr: login.amr,
        factors: login.factors,
        flows: login.flows,
        lifetime_secs: login.lifetime_secs,
        username: user.username.clone(),
    };
    let sessions = p.sessions.clone();
    let (token, _claims) = tokio::task::spawn_blocking(move || sessions.issue_seen(new, &seen))
        .await
        .map_err(|e| PortalError::Flow {
            slug: flow.to_string(),
            source: FlowError::Interrupted(e),
        })??;
    let step_up = login.replaces.is_some();
    if let Some((sid, exp)) = login.replaces {
        // The new cookie replaces the old session: a sign-out of the new one must not leave
        // the old token usable.
        if let Err(e) = p.sessions.revoke_sid(&sid, exp) {
            tracing::warn!(error = %e, "could not record the revocation of a replaced session");
        }
    }
    tracing::info!(user = %user.username, client = %req.client, flow, step_up, outcome = "success", "sign-in succeeded");
    crate::audit::sign_in(&user.username, req.client, true, flow);
    Ok(p.session_cookie(req).set(&token, login.lifetime_secs))
}

#[cfg(test)]
mod props;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::SecretString;
    use http::HeaderMap;

    fn post(body: &'static str) -> (Method, HeaderMap, &'static str) {
        (Method::POST, HeaderMap::new(), body)
    }

    fn judged(exec: &Execution, body: &'static str) -> Result<Input, PortalError> {
        let (method, headers, body) = post(body);
        let req = Request {
            method: &method,
            path: "/.portcullis/flow/f",
            query: None,
            headers: &headers,
            body: bytes::Bytes::from_static(body.as_bytes()),
            scheme: "http",
            authority: "auth.test",
            client: "192.0.2.7",
        };
        form_input(&req, exec)
    }

    #[test]
    fn a_form_post_passes_only_with_its_executions_own_token_in_the_body() {
        // A record that did not decode comes back with no token: nothing matches it.
        let spoiled = Execution::decode("id", "f", b"not json");
        for body in ["csrf_token=", "", "csrf_token=&uid=a"] {
            let err = judged(&spoiled, body).expect_err("refused");
            assert!(matches!(err, PortalError::Csrf { .. }), "{body:?}: {err}");
        }
        let mut exec = Execution::decode("id", "f", b"not json");
        exec.csrf = SecretString::new("tok3n");
        let refused = [
            "uid=a",
            "csrf_token=&uid=a",
            "csrf_token=TOK3N&uid=a",
            "csrf_token=tok3&uid=a",
            "csrf_token=tok3nn&uid=a",
            "csrf_token=tok3n%00&uid=a",
            "csrf_token=%20tok3n&uid=a",
            "csrf_token=tok3n&csrf_token=x&uid=a",
            "csrf_tokens=tok3n&uid=a",
        ];
        for body in refused {
            let err = judged(&exec, body).expect_err("refused");
            assert!(matches!(err, PortalError::Csrf { .. }), "{body:?}: {err}");
        }
        let input = judged(&exec, "csrf_token=tok3n&uid=a").expect("accepted");
        assert_eq!(input.get("uid").map(String::as_str), Some("a"));
        assert!(
            !input.contains_key("csrf_token"),
            "the token is not a field"
        );
        let err = judged(&exec, "uid=%ZZ&csrf_token=tok3n").map(|_| ());
        assert!(
            err.is_ok() || matches!(err, Err(PortalError::MalformedForm { .. })),
            "{err:?}"
        );
    }
}

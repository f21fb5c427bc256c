//! The one place a gateway error becomes an answer: [`respond`] picks the status, the HTML
//! page or JSON body for the face that asked, and writes the one log line.

use super::pages::{csrf_failed, internal_error, json_error, malformed_form, unknown_flow};
use crate::config::Designation;
use crate::flow::FlowError;
use crate::reply::Response;
use crate::session::SessionError;
use crate::ui::{Link, Ui, UiError};
use http::StatusCode;

/// Who asked: a browser page (HTML forms) or the JSON API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Face {
    /// Server-rendered pages; errors are pages with a way on.
    Html,
    /// `/.portcullis/api/...`; errors are `{"error", "message"}` bodies.
    Json,
}

/// Why a request to a gateway endpoint was not answered as asked.
///
/// # Security
/// Messages name no secret: no code, token, CSRF token or password reaches them.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PortalError {
    /// No flow has this slug.
    #[error("no flow named `{0}`")]
    UnknownFlow(String),
    /// A submit for a sign-in that has expired or was never started.
    #[error("the sign-in of flow `{0}` has expired or was never started")]
    Expired(String),
    /// The engine refused or failed a step of flow `slug`.
    #[error("flow `{slug}`: {source}")]
    Flow {
        /// The flow's slug, for the page's way on.
        slug: String,
        /// What the engine said.
        #[source]
        source: FlowError,
    },
    /// Reading or confirming a sign-in link failed.
    #[error("sign-in link: {0}")]
    Link(#[source] FlowError),
    /// The flow is only for a signed-in user and the request has no session: sign in at
    /// `login`, which comes back to the flow.
    #[error("flow `{flow}` needs a signed-in user")]
    SignInFirst {
        /// The flow's slug.
        flow: String,
        /// The sign-in flow's address, returning here.
        login: String,
    },
    /// A page template failed.
    #[error(transparent)]
    Render(#[from] UiError),
    /// The session for a completed sign-in could not be signed.
    #[error("could not issue a session: {0}")]
    Session(#[from] SessionError),
    /// A form post whose CSRF token is missing or wrong; `retry` reloads the form.
    #[error("the form's CSRF token is missing or wrong")]
    Csrf {
        /// The page that issues a fresh form.
        retry: String,
    },
    /// A form body that could not be read; `retry` reloads the form.
    #[error("the form body could not be read")]
    MalformedForm {
        /// The page that issues a fresh form.
        retry: String,
    },
    /// An API call without `Content-Type: application/json`.
    #[error("the body is not declared as JSON")]
    NotJson,
    /// An API body that is not the JSON the endpoint takes.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// A sign-in asked to return to an address (`rd`) longer than a sign-in keeps.
    #[error(
        "the return address (rd) is longer than {} bytes",
        crate::flow::MAX_RD_BYTES
    )]
    ReturnTooLong,
}

/// What a client whose address has its fill of unfinished sign-ins is told.
const TOO_MANY_FLOWS: &str = "Too many sign-ins are under way from your network address. Finish one, or wait for one to expire, then try again.";
/// What a step another request answered first is told (two tabs, a double submit, two
/// replicas): nothing this answer did counts, and the sign-in goes on from the other one.
pub(crate) const ALREADY_ANSWERED: &str = "This step was already answered, in another tab or window or by a second click. Continue from where that answer left your sign-in.";
/// What a sign-in with a too long return address is told.
const RETURN_TOO_LONG: &str = "The address to return to after signing in (rd) is too long: at most 2048 bytes are kept. Open the application again from a shorter address.";

impl PortalError {
    /// Whether the database failed (a full disk, a failing device): nothing the client did,
    /// and nothing a retry fixes until the operator acts.
    #[must_use]
    pub fn storage_failing(&self) -> bool {
        matches!(
            self,
            PortalError::Flow {
                source: FlowError::Store(_),
                ..
            } | PortalError::Link(FlowError::Store(_))
                | PortalError::Session(SessionError::Store(_))
        )
    }

    /// The status the client gets.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        if self.storage_failing() {
            return StatusCode::SERVICE_UNAVAILABLE;
        }
        match self {
            PortalError::UnknownFlow(_) => StatusCode::NOT_FOUND,
            PortalError::Expired(_) => StatusCode::GONE,
            PortalError::Flow {
                source: FlowError::StageMismatch { .. },
                ..
            } => StatusCode::BAD_REQUEST,
            PortalError::Flow {
                source: FlowError::AlreadySignedIn { .. } | FlowError::AlreadyAnswered,
                ..
            } => StatusCode::CONFLICT,
            PortalError::Flow {
                source: FlowError::Regulated { .. },
                ..
            } => StatusCode::TOO_MANY_REQUESTS,
            PortalError::SignInFirst { .. } => StatusCode::UNAUTHORIZED,
            PortalError::Csrf { .. } => StatusCode::FORBIDDEN,
            PortalError::MalformedForm { .. }
            | PortalError::BadRequest(_)
            | PortalError::ReturnTooLong => StatusCode::BAD_REQUEST,
            PortalError::Flow {
                source: FlowError::TooManyFlows { .. },
                ..
            } => StatusCode::TOO_MANY_REQUESTS,
            PortalError::NotJson => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// Turns an error into its answer for `face` and logs it once: server errors at `error`,
/// the client's mistakes at `debug` (the access log counts them).
pub fn respond(ui: &Ui, face: Face, err: &PortalError) -> Response {
    if let PortalError::Flow {
        slug,
        source: FlowError::Regulated { retry_after },
    } = err
    {
        return too_many(ui, face, *retry_after, slug);
    }
    let status = err.status();
    if err.storage_failing() {
        tracing::error!(error = %err, status = status.as_u16(), "the database refuses writes (disk full? device failing?): sign-ins and account changes answer 503 until it is fixed; signed-in requests go on");
    } else if status.is_server_error() {
        tracing::error!(error = %err, status = status.as_u16(), "request failed");
    } else {
        tracing::debug!(error = %err, status = status.as_u16(), "request refused");
    }
    let resp = match face {
        Face::Html => page(ui, err),
        Face::Json => json(err),
    };
    match err {
        PortalError::Flow {
            source: FlowError::TooManyFlows { retry_after, .. },
            ..
        } => with_retry_after(resp, *retry_after),
        _ => resp,
    }
}

/// `resp` with `Retry-After: secs`.
fn with_retry_after(mut resp: Response, secs: i64) -> Response {
    if let Ok(v) = http::HeaderValue::from_str(&secs.max(1).to_string()) {
        resp.headers.push((http::header::RETRY_AFTER, v));
    }
    resp
}

/// The words of a regulation refusal, the same for every account, existing or not.
pub(crate) const TOO_MANY_ATTEMPTS: &str =
    "Too many failed attempts. Wait a moment, then try again.";

/// `429 Too Many Requests` with `Retry-After` (`[regulation]`), as a page or a JSON body.
///
/// # Security
/// Nothing in it depends on the account: a ban on a made-up name reads exactly as one on a
/// real account, apart from the seconds to wait.
pub(crate) fn too_many(ui: &Ui, face: Face, retry_after: u64, slug: &str) -> Response {
    tracing::debug!(status = 429, retry_after, "request refused by regulation");
    let status = StatusCode::TOO_MANY_REQUESTS;
    let mut r = match face {
        Face::Html => Response::html(
            status,
            ui.message(
                "Too many attempts",
                TOO_MANY_ATTEMPTS,
                Some(Link {
                    href: &flow_path(slug),
                    label: "Try again",
                }),
            ),
        ),
        Face::Json => Response::json(
            status,
            &serde_json::json!({
                "error": "too_many_attempts",
                "message": TOO_MANY_ATTEMPTS,
                "retry_after": retry_after,
            }),
        ),
    };
    r.headers.push((
        http::header::RETRY_AFTER,
        http::HeaderValue::from(retry_after),
    ));
    r
}

fn page(ui: &Ui, err: &PortalError) -> Response {
    match err {
        PortalError::UnknownFlow(_) => unknown_flow(ui),
        // The sign-in expired between page load and submit: start over on a fresh page.
        PortalError::Expired(slug) => Response::redirect(StatusCode::SEE_OTHER, &flow_path(slug)),
        PortalError::Flow {
            slug,
            source: FlowError::StageMismatch { .. },
        } => out_of_step(ui, slug),
        PortalError::Flow {
            source: FlowError::AlreadySignedIn {
                designation, rd, ..
            },
            ..
        } => already_signed_in(ui, *designation, rd),
        PortalError::SignInFirst { login, .. } => Response::redirect(StatusCode::FOUND, login),
        PortalError::Flow {
            slug,
            source: FlowError::AlreadyAnswered,
        } => Response::html(
            err.status(),
            ui.message(
                "Already answered",
                ALREADY_ANSWERED,
                Some(Link {
                    href: &flow_path(slug),
                    label: "Continue",
                }),
            ),
        ),
        PortalError::Csrf { retry } => csrf_failed(ui, retry),
        PortalError::MalformedForm { retry } => malformed_form(ui, retry),
        PortalError::ReturnTooLong => Response::html(
            err.status(),
            ui.message(
                "Return address too long",
                RETURN_TOO_LONG,
                Some(Link {
                    href: "/",
                    label: "Go to the start page",
                }),
            ),
        ),
        PortalError::Flow {
            slug,
            source: FlowError::TooManyFlows { .. },
        } => Response::html(
            err.status(),
            ui.message(
                "Too many sign-ins",
                TOO_MANY_FLOWS,
                Some(Link {
                    href: &flow_path(slug),
                    label: "Try again",
                }),
            ),
        ),
        e if e.status().is_client_error() => not_understood(ui, e.status()),
        e if e.storage_failing() => unavailable(ui),
        _ => internal_error(ui),
    }
}

/// A signed-in user at a flow not for them: a sign-in they need not make goes on to where
/// they were going; an enrolment or recovery says why it is refused.
fn already_signed_in(ui: &Ui, designation: Designation, rd: &str) -> Response {
    if designation == Designation::Authentication {
        return Response::redirect(StatusCode::FOUND, rd);
    }
    Response::html(
        StatusCode::CONFLICT,
        ui.message(
            "Already signed in",
            already_signed_in_message(designation),
            Some(Link {
                href: rd,
                label: "Continue",
            }),
        ),
    )
}

fn already_signed_in_message(designation: Designation) -> &'static str {
    match designation {
        Designation::Enrollment => "You are already signed in. Sign out to create another account.",
        Designation::Recovery => {
            "You are already signed in. Change your password from your settings instead."
        }
        _ => "You are already signed in.",
    }
}

fn not_understood(ui: &Ui, status: StatusCode) -> Response {
    Response::html(
        status,
        ui.message(
            "Request not understood",
            "What was sent is not what this address takes.",
            Some(Link {
                href: "/",
                label: "Go to the start page",
            }),
        ),
    )
}

fn json(err: &PortalError) -> Response {
    let (code, message) = match err {
        PortalError::UnknownFlow(_) => (
            "unknown_flow",
            "no such flow (a reload may have removed it); start again from the application"
                .to_string(),
        ),
        PortalError::Expired(_) => (
            "execution_expired",
            "this sign-in has expired or was never started; GET the flow to start again".into(),
        ),
        PortalError::Flow {
            source: e @ FlowError::StageMismatch { .. },
            ..
        } => ("stage_mismatch", e.to_string()),
        PortalError::Flow {
            source: FlowError::AlreadySignedIn {
                designation, rd, ..
            },
            ..
        } => {
            let body = serde_json::json!({
                "error": "already_signed_in",
                "message": already_signed_in_message(*designation),
                "to": rd,
            });
            return Response::json(err.status(), &body);
        }
        PortalError::Flow {
            slug,
            source: FlowError::AlreadyAnswered,
        } => {
            let body = serde_json::json!({
                "error": "already_answered",
                "message": ALREADY_ANSWERED,
                "continue": format!("/.portcullis/api/flow/{slug}"),
            });
            return Response::json(err.status(), &body);
        }
        PortalError::SignInFirst { login, .. } => {
            let body = serde_json::json!({
                "error": "sign_in_required",
                "message": "sign in first; the sign-in comes back to this flow",
                "login": login,
            });
            return Response::json(err.status(), &body);
        }
        PortalError::NotJson => (
            "unsupported_media_type",
            "send the response as Content-Type: application/json".into(),
        ),
        PortalError::BadRequest(m) => ("bad_request", m.clone()),
        PortalError::ReturnTooLong => ("rd_too_long", RETURN_TOO_LONG.into()),
        PortalError::Flow {
            source: FlowError::TooManyFlows { .. },
            ..
        } => ("too_many_sign_ins", TOO_MANY_FLOWS.into()),
        PortalError::Csrf { .. } | PortalError::MalformedForm { .. } => {
            ("bad_request", err.to_string())
        }
        e if e.storage_failing() => (
            "unavailable",
            "the sign-in service cannot record anything right now; try again later".into(),
        ),
        _ => (
            "internal",
            "the sign-in service hit an internal error; try again".into(),
        ),
    };
    json_error(err.status(), code, &message)
}

/// The database refuses writes: the page says to come back later, not that the user erred.
fn unavailable(ui: &Ui) -> Response {
    Response::html(
        StatusCode::SERVICE_UNAVAILABLE,
        ui.message(
            "Temporarily unavailable",
            "The sign-in service cannot record anything right now. Try again later; if it keeps happening, tell whoever runs this site.",
            Some(Link {
                href: "/",
                label: "Go to the start page",
            }),
        ),
    )
}

fn out_of_step(ui: &Ui, slug: &str) -> Response {
    Response::html(
        StatusCode::BAD_REQUEST,
        ui.message(
            "Out of step",
            "That form was for another step of this sign-in.",
            Some(Link {
                href: &flow_path(slug),
                label: "Continue signing in",
            }),
        ),
    )
}

/// The HTML face of a flow.
pub(crate) fn flow_path(slug: &str) -> String {
    format!("/.portcullis/flow/{slug}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mismatch() -> PortalError {
        PortalError::Flow {
            slug: "f".into(),
            source: FlowError::StageMismatch {
                expected: "password".into(),
            },
        }
    }

    #[test]
    fn each_error_has_one_status_on_both_faces() {
        let ui = Ui::plain();
        let cases: Vec<(PortalError, u16, u16)> = vec![
            (PortalError::UnknownFlow("x".into()), 404, 404),
            (PortalError::Expired("f".into()), 303, 410),
            (mismatch(), 400, 400),
            (PortalError::Csrf { retry: "/r".into() }, 403, 403),
            (PortalError::MalformedForm { retry: "/r".into() }, 400, 400),
            (PortalError::NotJson, 415, 415),
            (PortalError::BadRequest("no".into()), 400, 400),
            (
                PortalError::Link(FlowError::UnknownFlow("f".into())),
                500,
                500,
            ),
            (
                PortalError::Flow {
                    slug: "f".into(),
                    source: FlowError::Regulated { retry_after: 7 },
                },
                429,
                429,
            ),
        ];
        for (err, html, json) in cases {
            assert_eq!(
                respond(&ui, Face::Html, &err).status.as_u16(),
                html,
                "{err}"
            );
            assert_eq!(
                respond(&ui, Face::Json, &err).status.as_u16(),
                json,
                "{err}"
            );
        }
    }

    #[test]
    fn json_errors_name_a_code_and_never_the_internal_reason() {
        let err = PortalError::Link(FlowError::Stage {
            stage: "mail".into(),
            reason: "smtp said no".into(),
        });
        let r = respond(&Ui::plain(), Face::Json, &err);
        let body: serde_json::Value = serde_json::from_slice(&r.body).expect("json");
        assert_eq!(body["error"], "internal");
        assert!(!body.to_string().contains("smtp said no"));
        let r = respond(&Ui::plain(), Face::Json, &mismatch());
        let body: serde_json::Value = serde_json::from_slice(&r.body).expect("json");
        assert_eq!(body["error"], "stage_mismatch");
        assert_eq!(
            body["message"],
            "the response does not answer the current stage `password`"
        );
    }
}

#[cfg(test)]
mod already_answered_tests {
    use super::*;

    #[test]
    fn a_step_answered_elsewhere_is_a_409_that_says_continue_not_a_500() {
        let err = PortalError::Flow {
            slug: "login".into(),
            source: FlowError::AlreadyAnswered,
        };
        let page = respond(&Ui::plain(), Face::Html, &err);
        assert_eq!(page.status.as_u16(), 409);
        let html = String::from_utf8_lossy(&page.body);
        assert!(html.contains("was already answered"), "{html}");
        // Escaped as the templates escape every link.
        assert!(
            html.contains(r#"href="&#x2f;.portcullis&#x2f;flow&#x2f;login">Continue<"#),
            "{html}"
        );
        let api = respond(&Ui::plain(), Face::Json, &err);
        assert_eq!(api.status.as_u16(), 409);
        let body: serde_json::Value = serde_json::from_slice(&api.body).expect("json");
        assert_eq!(body["error"], "already_answered");
        assert_eq!(body["continue"], "/.portcullis/api/flow/login");
        assert!(!err.storage_failing(), "not logged as a database failure");
    }
}

#[cfg(test)]
mod regulation_tests {
    use super::*;

    #[test]
    fn a_regulation_refusal_is_429_with_retry_after_on_both_faces() {
        let err = PortalError::Flow {
            slug: "f".into(),
            source: FlowError::Regulated { retry_after: 42 },
        };
        for face in [Face::Html, Face::Json] {
            let r = respond(&Ui::plain(), face, &err);
            assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
            let retry = r
                .headers
                .iter()
                .find(|(k, _)| k == http::header::RETRY_AFTER)
                .map(|(_, v)| v.to_str().unwrap_or_default().to_string());
            assert_eq!(retry.as_deref(), Some("42"), "{face:?}");
            let body = String::from_utf8_lossy(&r.body);
            assert!(body.contains("Too many failed attempts"), "{body}");
        }
    }
}

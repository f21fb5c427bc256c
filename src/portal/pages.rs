//! Responses the gateway gives on its own behalf, shared by the proxy and the portal.

use super::Response;
use crate::ui::{Link, Ui};
use http::StatusCode;
use serde_json::json;

pub fn not_found(ui: &Ui) -> Response {
    Response::html(
        StatusCode::NOT_FOUND,
        ui.message(
            "Not found",
            "No application is served at this address. Check the link or ask whoever runs this site.",
            None,
        ),
    )
}

pub fn forbidden(ui: &Ui, user: &str) -> Response {
    Response::html(
        StatusCode::FORBIDDEN,
        ui.message(
            "Access denied",
            &format!("You are signed in as {user}, but this account may not use this application."),
            Some(Link {
                href: "/.portcullis/logout",
                label: "Sign in as someone else",
            }),
        ),
    )
}

pub fn bad_gateway(ui: &Ui) -> Response {
    Response::html(
        StatusCode::BAD_GATEWAY,
        ui.message(
            "Application unavailable",
            "The application behind this address is not answering. Try again in a moment.",
            None,
        ),
    )
}

pub fn internal_error(ui: &Ui) -> Response {
    Response::html(
        StatusCode::INTERNAL_SERVER_ERROR,
        ui.message(
            "Something went wrong",
            "The sign-in service hit an internal error. Try again; if it keeps happening, tell whoever runs this site.",
            None,
        ),
    )
}

/// Not signed in: a redirect for a browser page load, a 401 with the sign-in URL otherwise.
pub fn unauthenticated(login: &str, navigation: bool) -> Response {
    if navigation {
        Response::redirect(StatusCode::FOUND, login)
    } else {
        Response::json(
            StatusCode::UNAUTHORIZED,
            &json!({ "error": "unauthenticated", "login": login }),
        )
    }
}

/// Signed in, but the app's flow asks for more than the session proves: a redirect to the
/// step-up sign-in for a page load, otherwise a 401 naming it (`login`), with its own `error`
/// so a client can tell "sign in again" from "confirm it is you".
pub fn step_up(login: &str, navigation: bool) -> Response {
    if navigation {
        Response::redirect(StatusCode::FOUND, login)
    } else {
        Response::json(
            StatusCode::UNAUTHORIZED,
            &json!({ "error": "step_up_required", "login": login }),
        )
    }
}

pub fn json_error(status: StatusCode, error: &str, message: &str) -> Response {
    Response::json(status, &json!({ "error": error, "message": message }))
}

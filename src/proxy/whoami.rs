//! The built-in demo upstream (`upstream = "builtin:whoami"`): a page showing exactly what an
//! app behind the gateway would receive, so a newcomer sees a sign-in work with no app of
//! their own.

use crate::config::IdentityHeaders;
use crate::portal::{Face, PortalError};
use crate::reply::Response;
use crate::session::Claims;
use crate::ui::Ui;
use http::StatusCode;
use pingora::http::RequestHeader;

pub(super) fn page(
    ui: &Ui,
    req: &RequestHeader,
    claims: Option<&Claims>,
    names: &IdentityHeaders,
) -> Response {
    let mut headers: Vec<(String, String)> = Vec::new();
    if let Some(c) = claims {
        headers.push((names.user.to_string(), c.sub.clone()));
        headers.push((names.name.to_string(), c.name.clone()));
        headers.push((names.email.to_string(), c.email.clone()));
        headers.push((names.groups.to_string(), c.groups.join(",")));
    }
    for (name, value) in req.headers.iter() {
        if name == http::header::COOKIE {
            continue;
        }
        headers.push((
            name.to_string(),
            String::from_utf8_lossy(value.as_bytes()).into_owned(),
        ));
    }
    let path = req.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    match ui.whoami(
        req.method.as_str(),
        path,
        &headers,
        claims.map(|c| c.sub.as_str()),
        claims.map(|c| c.name.as_str()),
    ) {
        Ok(html) => Response::html(StatusCode::OK, html),
        Err(e) => crate::portal::respond(ui, Face::Html, &PortalError::Render(e)),
    }
}

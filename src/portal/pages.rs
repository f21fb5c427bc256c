//! Responses the gateway gives on its own behalf, shared by the proxy and the portal.

use super::Response;
use crate::ui::{Link, Ui};
use http::StatusCode;

/// Nothing here. On one of our hosts the way on is its start page; for a host that is not
/// ours the caller names where to go (`home`), if anywhere.
pub fn not_found(ui: &Ui) -> Response {
    not_found_with(
        ui,
        "There is nothing at this address. Check the link, or start from the application's home page.",
        Some(Link {
            href: "/",
            label: "Go to the start page",
        }),
    )
}

/// A sign-in flow this gateway does not offer (a mistyped link, or a flow a reload removed
/// while someone was in it): start again from the application.
pub fn unknown_flow(ui: &Ui) -> Response {
    not_found_with(
        ui,
        "This sign-in is not offered here, or no longer. Start again from the application you want to use.",
        Some(Link {
            href: "/",
            label: "Start again",
        }),
    )
}

/// No application is served under this host name.
pub fn unknown_host(ui: &Ui, home: Option<&str>) -> Response {
    not_found_with(
        ui,
        "No application is served at this address. Check the link or ask whoever runs this site.",
        home.map(|href| Link {
            href,
            label: "Go to the sign-in page",
        }),
    )
}

fn not_found_with(ui: &Ui, message: &str, link: Option<Link<'_>>) -> Response {
    Response::html(
        StatusCode::NOT_FOUND,
        ui.message("Page not found", message, link),
    )
}

/// A request body over the gateway's limit (forms are tiny, so this is no real sign-in).
pub fn payload_too_large(ui: &Ui) -> Response {
    Response::html(
        StatusCode::PAYLOAD_TOO_LARGE,
        ui.message(
            "Request too large",
            "What was sent is larger than any sign-in form. Go back and try again.",
            Some(Link {
                href: "/",
                label: "Go to the start page",
            }),
        ),
    )
}

/// A method this endpoint does not take.
pub fn method_not_allowed(ui: &Ui) -> Response {
    Response::html(
        StatusCode::METHOD_NOT_ALLOWED,
        ui.message(
            "Not possible here",
            "This address does not accept that kind of request.",
            Some(Link {
                href: "/",
                label: "Go to the start page",
            }),
        ),
    )
}

/// A form post whose CSRF token is missing or wrong: the page it came from is stale (or the
/// post came from another site). The way on reloads `retry`, which issues a fresh form.
pub fn csrf_failed(ui: &Ui, retry: &str) -> Response {
    Response::html(
        StatusCode::FORBIDDEN,
        ui.message(
            "Page out of date",
            "The form's security token is missing or wrong, so nothing was done. Reload the page and try again.",
            Some(Link {
                href: retry,
                label: "Reload the page",
            }),
        ),
    )
}

/// A form body that is not `application/x-www-form-urlencoded`.
pub fn malformed_form(ui: &Ui, retry: &str) -> Response {
    Response::html(
        StatusCode::BAD_REQUEST,
        ui.message(
            "Form not understood",
            "What was sent could not be read as this page's form.",
            Some(Link {
                href: retry,
                label: "Reload the page",
            }),
        ),
    )
}

/// The configured logo, for a year: its URL carries a version, so a new file is a new URL.
///
/// # Security
/// The logo is served from our own origin; an SVG opened directly could otherwise run script
/// there. The sandbox CSP, `nosniff` and the type found from the file's bytes at load keep it
/// an image.
pub fn logo(ui: &Ui) -> Response {
    let Some(logo) = ui.logo() else {
        return not_found(ui);
    };
    let mut r = Response::new(StatusCode::OK, logo.content_type, logo.bytes.clone());
    r.headers.retain(|(n, _)| n != http::header::CACHE_CONTROL);
    r.headers.push((
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("public, max-age=31536000, immutable"),
    ));
    r.headers.push((
        http::header::X_CONTENT_TYPE_OPTIONS,
        http::HeaderValue::from_static("nosniff"),
    ));
    r.headers.push((
        http::header::CONTENT_SECURITY_POLICY,
        http::HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; sandbox"),
    ));
    r
}

/// 403 for a request an access rule denies to everyone, signed in or not.
pub fn denied(ui: &Ui) -> Response {
    Response::html(
        StatusCode::FORBIDDEN,
        ui.message(
            "Access denied",
            "This address of the application is closed.",
            None,
        ),
    )
}

/// Signed in as `user`, who is not in the app's allowed groups (or whom a rule denies).
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

/// The upstream did not answer. The way on is the same address again (`retry`, a path of
/// this host; anything else falls back to `/`).
pub fn bad_gateway(ui: &Ui, retry: &str) -> Response {
    let same_host = retry.starts_with('/')
        && !retry.starts_with("//")
        && retry.bytes().all(|b| b.is_ascii_graphic() && b != b'\\');
    Response::html(
        StatusCode::BAD_GATEWAY,
        ui.message(
            "Application unavailable",
            "The application behind this address is not answering. Try again in a moment.",
            Some(Link {
                href: if same_host { retry } else { "/" },
                label: "Try again",
            }),
        ),
    )
}

/// Something failed on our side; the details are in the log.
pub fn internal_error(ui: &Ui) -> Response {
    Response::html(
        StatusCode::INTERNAL_SERVER_ERROR,
        ui.message(
            "Something went wrong",
            "The sign-in service hit an internal error. Try again; if it keeps happening, tell whoever runs this site.",
            Some(Link {
                href: "/",
                label: "Go to the start page",
            }),
        ),
    )
}

pub use crate::reply::{json_error, step_up, unauthenticated};

/// The pages' one script ([`crate::ui::WEBAUTHN_JS`]), for pages that run a WebAuthn
/// ceremony; served as JavaScript only (`nosniff`).
pub fn webauthn_js() -> Response {
    let mut r = Response::new(
        StatusCode::OK,
        "text/javascript; charset=utf-8",
        crate::ui::WEBAUTHN_JS,
    );
    r.headers.push((
        http::header::X_CONTENT_TYPE_OPTIONS,
        http::HeaderValue::from_static("nosniff"),
    ));
    r
}

/// The reCAPTCHA v3 helper ([`crate::ui::CAPTCHA_JS`]), for captcha pages; served as
/// JavaScript only (`nosniff`).
pub fn captcha_js() -> Response {
    let mut r = Response::new(
        StatusCode::OK,
        "text/javascript; charset=utf-8",
        crate::ui::CAPTCHA_JS,
    );
    r.headers.push((
        http::header::X_CONTENT_TYPE_OPTIONS,
        http::HeaderValue::from_static("nosniff"),
    ));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(r: &Response) -> String {
        String::from_utf8_lossy(&r.body).into_owned()
    }

    #[test]
    fn bad_gateway_retries_only_paths_of_this_host() {
        let ui = Ui::plain();
        let ok = bad_gateway(&ui, "/reports?q=1");
        assert!(
            body(&ok).contains("href=\"&#x2f;reports?q=1\""),
            "{}",
            body(&ok)
        );
        // Anything that a browser could read as another host goes to the start page.
        for evil in [
            "//evil.example/",
            "/\\evil.example/",
            "/\t/evil.example/",
            "/ /x",
            "javascript:alert(1)",
            "http://evil.example/",
            "",
        ] {
            let r = bad_gateway(&ui, evil);
            assert!(
                body(&r).contains("<a href=\"&#x2f;\">Try again</a>"),
                "{evil:?}: {}",
                body(&r)
            );
        }
    }

    #[test]
    fn gateway_pages_are_html_with_a_way_on() {
        let ui = Ui::plain();
        for (r, status) in [
            (not_found(&ui), 404),
            (unknown_host(&ui, Some("https://auth.example/")), 404),
            (payload_too_large(&ui), 413),
            (method_not_allowed(&ui), 405),
            (csrf_failed(&ui, "/.portcullis/flow/x"), 403),
            (malformed_form(&ui, "/.portcullis/flow/x"), 400),
            (bad_gateway(&ui, "/"), 502),
            (internal_error(&ui), 500),
        ] {
            assert_eq!(r.status.as_u16(), status);
            let ct = r
                .headers
                .iter()
                .find(|(n, _)| n == http::header::CONTENT_TYPE)
                .map(|(_, v)| v.to_str().unwrap_or_default().to_string());
            assert_eq!(ct.as_deref(), Some("text/html; charset=utf-8"));
            assert!(
                body(&r).contains("<p class=\"onward\"><a href="),
                "{}",
                body(&r)
            );
        }
    }
}

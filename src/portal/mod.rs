//! The gateway's own endpoints under `/.portcullis/`: the sign-in flows (HTML and JSON faces),
//! sign-out, and the pages the gateway answers with itself.

mod error;
mod flow;
mod http;
mod link;
mod logout;
pub mod pages;
pub mod settings;

pub use self::error::{respond, Face, PortalError};
pub use self::http::Request;
pub use crate::reply::{Response, SCRIPTED_CSP, STRICT_CSP};

use crate::access::Gate;
use crate::flow::Engine;
use crate::redirect::RedirectPolicy;
use crate::session::cookie::CookieSpec;
use crate::session::SessionService;
use crate::ui::Ui;
use ::http::Method;
use std::sync::Arc;

/// The prefix every gateway endpoint lives under; nothing below it reaches an upstream.
pub const PREFIX: &str = "/.portcullis/";
/// Answers `200 pong` on every host: the health check.
pub const PING: &str = "/.portcullis/ping";
/// Public keys for identity assertions.
pub const JWKS: &str = "/.portcullis/jwks.json";
/// Carries the flow execution id between steps.
pub const FLOW_COOKIE: &str = "portcullis_flow";

/// Largest request body a gateway endpoint reads (forms and JSON are tiny).
pub const MAX_BODY: usize = 64 * 1024;

/// The gateway's own endpoints, ready to answer [`Request`]s from any transport.
pub struct Portal {
    pub(crate) engine: Arc<Engine>,
    pub(crate) sessions: Arc<SessionService>,
    pub(crate) ui: Arc<Ui>,
    pub(crate) gate: Arc<Gate>,
    pub(crate) redirects: RedirectPolicy,
    csp: ::http::HeaderValue,
    scripted_csp: ::http::HeaderValue,
}

impl Portal {
    /// The endpoints over the engine, the sessions, the pages and the access decision; the
    /// redirect policy and the pages' CSP are built here once from `gate`'s config.
    pub fn new(
        engine: Arc<Engine>,
        sessions: Arc<SessionService>,
        ui: Arc<Ui>,
        gate: Arc<Gate>,
    ) -> Self {
        let cfg = gate.config();
        let redirects = RedirectPolicy::new(
            cfg.apps
                .iter()
                .flat_map(|a| a.origins.iter())
                .chain(cfg.server.auth_url.as_ref()),
        );
        let origins = || {
            cfg.apps
                .iter()
                .flat_map(|a| a.origins.iter())
                .chain(cfg.server.auth_url.as_ref())
        };
        let csp = http::page_csp(origins(), STRICT_CSP);
        let scripted_csp = http::page_csp(origins(), SCRIPTED_CSP);
        Self {
            engine,
            sessions,
            ui,
            gate,
            redirects,
            csp,
            scripted_csp,
        }
    }

    /// The `Content-Security-Policy` of every page the gateway serves, built once from
    /// config (see [`http::page_csp`]).
    pub fn csp(&self) -> &::http::HeaderValue {
        &self.csp
    }

    /// The policy of the pages that run a WebAuthn ceremony: [`Portal::csp`] plus
    /// `script-src 'self'`.
    pub fn scripted_csp(&self) -> &::http::HeaderValue {
        &self.scripted_csp
    }

    /// The policy of a captcha page: [`Portal::scripted_csp`] with the provider's `sources`
    /// added to `script-src` and as `frame-src`, for that page alone.
    pub(crate) fn captcha_csp(&self, sources: &[String]) -> ::http::HeaderValue {
        let base = self.scripted_csp.to_str().unwrap_or(SCRIPTED_CSP);
        let extra = sources.join(" ");
        let policy = base.replacen(
            "script-src 'self'",
            &format!("script-src 'self' {extra}; frame-src {extra}"),
            1,
        );
        // Sources are origins parsed from the config's URLs and fixed companions: always a
        // valid header value. Should that fail, the page goes without the widget's script.
        ::http::HeaderValue::from_str(&policy).unwrap_or_else(|_| self.scripted_csp.clone())
    }

    /// The pages.
    pub fn ui(&self) -> &Ui {
        &self.ui
    }

    /// Answers a request under [`PREFIX`].
    pub async fn handle(&self, req: Request<'_>) -> Response {
        let path = req.path;
        if let Some(slug) = path.strip_prefix("/.portcullis/flow/") {
            return match *req.method {
                Method::GET | Method::HEAD | Method::POST => flow::html(self, &req, slug).await,
                _ => self.method_not_allowed(),
            };
        }
        if let Some(slug) = path.strip_prefix("/.portcullis/api/flow/") {
            return match *req.method {
                Method::GET | Method::HEAD | Method::POST => flow::json(self, &req, slug).await,
                _ => self.method_not_allowed(),
            };
        }
        match (path, req.method) {
            ("/.portcullis/logout", &Method::GET) => logout::confirm(self, &req),
            ("/.portcullis/logout", &Method::POST) => logout::html(self, &req),
            ("/.portcullis/api/logout", &Method::POST) => logout::json(self, &req),
            ("/.portcullis/link", &Method::GET) => link::open(self, &req, Face::Html),
            ("/.portcullis/link", &Method::POST) => link::decide(self, &req, Face::Html),
            ("/.portcullis/api/link", &Method::GET) => link::open(self, &req, Face::Json),
            ("/.portcullis/api/link", &Method::POST) => link::decide(self, &req, Face::Json),
            (settings::PAGE, _) => settings::handle(self, &req, Face::Html),
            (settings::API, _) => settings::handle(self, &req, Face::Json),
            (crate::ui::LOGO_PATH, &Method::GET | &Method::HEAD) => pages::logo(&self.ui),
            (crate::ui::WEBAUTHN_JS_PATH, &Method::GET | &Method::HEAD) => pages::webauthn_js(),
            (crate::ui::CAPTCHA_JS_PATH, &Method::GET | &Method::HEAD) => pages::captcha_js(),
            _ => pages::not_found(&self.ui),
        }
    }

    fn method_not_allowed(&self) -> Response {
        pages::method_not_allowed(&self.ui)
    }

    /// The session cookie's attributes for this request.
    pub(crate) fn session_cookie(&self, req: &Request<'_>) -> CookieSpec<'_> {
        let cfg = &self.gate.config().session;
        CookieSpec {
            name: &cfg.cookie_name,
            path: "/",
            domain: cfg.cookie_domain.as_deref(),
            secure: req.tls(),
        }
    }

    pub(crate) fn flow_cookie(&self, req: &Request<'_>) -> CookieSpec<'static> {
        CookieSpec {
            name: FLOW_COOKIE,
            path: "/.portcullis",
            domain: None,
            secure: req.tls(),
        }
    }

    /// The configured public origin of the host the request came to (`scheme://host[:port]`),
    /// never the request's own Host or port. The proxy hands the portal only requests for
    /// our hosts; anything else gets the auth host's origin, or none (relative links).
    pub(crate) fn origin(&self, req: &Request<'_>) -> String {
        self.gate
            .public_origin(req.authority)
            .or(self.gate.config().server.auth_url.as_ref())
            .map(|o| o.to_string())
            .unwrap_or_default()
    }

    /// The app root of the host the request came to: where a bad or missing `rd` goes.
    pub(crate) fn fallback(&self, req: &Request<'_>) -> String {
        format!("{}/", self.origin(req))
    }
}

//! The Pingora face: route by host, strip client identity headers, ask the access decision,
//! answer gateway endpoints, and forward allowed requests with the user's identity.
//!
//! Phase methods stay short and delegate: [`route::Router`] says where a request goes, the
//! rules live in [`crate::access`], the endpoints in [`crate::portal`], and every phase runs in
//! the request's span ([`trace`]), whose `logging` phase writes the access log.

mod endpoints;
mod identity;
mod intake;
mod respond;
mod route;
mod trace;
mod upstream;
mod whoami;

pub use intake::Intake;
pub use trace::ACCESS_TARGET;

use crate::access::{AccessRequest, Decision, Gate};
use crate::forwarded::TrustedProxies;
use crate::portal::{pages, Portal, FLOW_COOKIE};
use crate::reply::{self, Response};
use crate::session::Claims;
use arc_swap::ArcSwap;
use async_trait::async_trait;
use http::StatusCode;
use pingora::http::RequestHeader;
use pingora::prelude::HttpPeer;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::{Error, ErrorSource, ErrorType};
use route::{authority, path_and_query, Route, Router};
use std::sync::Arc;
use tracing::Instrument;
use upstream::UpstreamSet;

/// Per-request state carried between Pingora's phases.
pub struct RequestCtx {
    /// The configuration this request is served under, taken once when it arrived: a reload
    /// while it is in flight does not change it halfway.
    live: Arc<Served>,
    app: Option<usize>,
    /// The session let in: its identity goes upstream.
    claims: Option<Arc<Claims>>,
    /// The session seen, let in or not: the access log's `user`.
    seen: Option<Arc<Claims>>,
    tls: bool,
    trace: trace::Trace,
    /// Counts the request in `portcullis_requests_in_flight` (graceful shutdown waits for it).
    _in_flight: crate::metrics::InFlight,
}

impl RequestCtx {
    fn scheme(&self) -> &'static str {
        if self.tls {
            "https"
        } else {
            "http"
        }
    }

    /// Notes the app and the session the access decision judged.
    fn judged(&mut self, app: usize, claims: &Arc<Claims>) {
        self.app = Some(app);
        self.seen = Some(claims.clone());
    }
}

/// The gateway as a Pingora proxy: every request is served by the [`Served`] in force when it
/// arrived, which a reload replaces (see [`crate::reload`]).
pub struct Gateway {
    live: Arc<ArcSwap<Served>>,
}

impl Gateway {
    /// The proxy over whatever `live` holds when each request arrives.
    pub fn new(live: Arc<ArcSwap<Served>>) -> Self {
        Self { live }
    }
}

/// Everything the proxy serves with that comes from the configuration: the access decision,
/// the portal and what is prepared from them. Built whole from one config, so a request never
/// sees half of one config and half of another.
pub struct Served {
    gate: Arc<Gate>,
    portal: Arc<Portal>,
    upstreams: Vec<UpstreamSet>,
    trusted: TrustedProxies,
    router: Router,
    /// The identity header names, ready for Pingora.
    identity: identity::IdentityNames,
    /// `Strict-Transport-Security` for HTTPS responses.
    hsts: Option<http::HeaderValue>,
    /// `[log] access`: one line per request.
    access_log: bool,
    /// `portcullis_request_duration_seconds`, resolved per app.
    timers: crate::metrics::RequestTimers,
    /// `[server] body_timeout`: a body for our own endpoints must arrive within it.
    body_timeout: std::time::Duration,
}

impl Served {
    /// The proxy's parts over the access decision and the portal, prepared from `gate`'s
    /// config.
    pub fn new(gate: Arc<Gate>, portal: Arc<Portal>) -> Self {
        let cfg = gate.config();
        let upstreams = cfg.apps.iter().map(UpstreamSet::new).collect();
        let trusted = TrustedProxies::new(cfg.server.trusted_proxies.clone());
        let https_port = cfg
            .server
            .redirect_http
            .then(|| cfg.server.tls_listen.first().map(|a| a.port()))
            .flatten();
        let hsts = cfg.server.hsts.clone();
        let access_log = cfg.log.access;
        let timers = crate::metrics::RequestTimers::new(cfg.apps.iter().map(|a| a.name.as_str()));
        let body_timeout = cfg.server.clients.body_timeout;
        let identity = identity::IdentityNames::new(&cfg.headers);
        Self {
            gate,
            portal,
            upstreams,
            trusted,
            router: Router { https_port },
            identity,
            hsts,
            access_log,
            timers,
            body_timeout,
        }
    }

    /// The portal (and through it the flow engine) this config serves.
    pub(crate) fn portal_parts(&self) -> &Arc<Portal> {
        &self.portal
    }

    fn peer_ip(session: &Session) -> Option<std::net::IpAddr> {
        session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip())
    }

    /// The real client address by the trusted-proxy rule, for logs and limits.
    fn client_ip(&self, session: &Session) -> String {
        match Self::peer_ip(session) {
            Some(ip) => self
                .trusted
                .client(ip, &session.req_header().headers)
                .to_string(),
            None => String::new(),
        }
    }

    /// Where the request goes, and what it does there: one arm per [`Route`].
    async fn filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> pingora::Result<bool> {
        identity::strip(session.req_header_mut(), &self.gate.config().headers);
        ctx.tls = is_tls(session);
        let route = self.router.route(&self.gate, session.req_header(), ctx.tls);
        ctx.trace.outcome = route.name();
        match route {
            Route::Ping => {
                self.reply(session, Response::text(StatusCode::OK, "pong"))
                    .await
            }
            Route::Jwks => self.jwks(session).await,
            Route::Health => self.reply(session, crate::ops::health()).await,
            Route::Ready => {
                let store = self.portal.engine.services().store.as_ref();
                let ready = crate::ops::ready(store, false);
                self.reply(session, ready).await
            }
            Route::BadHost => self.reply(session, bad_host()).await,
            Route::ForwardAuth(flavor) => self.forward_auth(session, flavor, ctx.scheme()).await,
            Route::ToHttps(to) => self.reply(session, permanent_redirect(&to)).await,
            Route::Portal => self.portal(session, ctx.scheme()).await,
            Route::AuthHome => self.auth_home(session).await,
            Route::AuthNotFound => {
                self.reply(session, pages::not_found(self.portal.ui()))
                    .await
            }
            Route::App => self.app(session, ctx).await,
        }
    }

    /// A request for an app: the access decision, then its answer or the way upstream.
    async fn app(&self, session: &mut Session, ctx: &mut RequestCtx) -> pingora::Result<bool> {
        let client =
            Self::peer_ip(session).map(|ip| self.trusted.client(ip, &session.req_header().headers));
        let decision =
            self.gate
                .decide(&access_request(session.req_header(), ctx.scheme(), client));
        ctx.trace.outcome = outcome(&decision);
        match self.refusal(decision, ctx, &session.req_header().headers) {
            Some(resp) => self.reply(session, resp).await,
            None => self.serve_builtin(session, ctx).await,
        }
    }

    /// The answer to a request the decision does not let through; `None` when it goes on
    /// (its app and identity noted in `ctx`).
    fn refusal(
        &self,
        decision: Decision<'_>,
        ctx: &mut RequestCtx,
        headers: &http::HeaderMap,
    ) -> Option<Response> {
        let ui = self.portal.ui();
        match decision {
            Decision::UnknownHost => Some(pages::unknown_host(ui, self.home().as_deref())),
            Decision::Unauthenticated {
                app,
                login,
                navigation,
            } => {
                ctx.app = Some(app.index);
                Some(reply::unauthenticated(&login, navigation))
            }
            Decision::StepUp {
                app,
                claims,
                login,
                navigation,
            } => {
                ctx.judged(app.index, &claims);
                tracing::info!(user = %claims.sub, app = %app.name, "session lacks a factor the app's flow requires; step-up");
                Some(reply::step_up(&login, navigation))
            }
            Decision::Denied { app, claims } => {
                ctx.app = Some(app.index);
                match claims {
                    Some(claims) => {
                        ctx.judged(app.index, &claims);
                        tracing::info!(user = %claims.sub, app = %app.name, "access denied by a deny rule");
                        Some(pages::forbidden(ui, &claims.sub))
                    }
                    None => {
                        tracing::info!(app = %app.name, "access denied by a deny rule");
                        Some(pages::denied(ui))
                    }
                }
            }
            Decision::Refused {
                app,
                claims,
                messages,
            } => {
                ctx.judged(app.index, &claims);
                Some(ui.refused(&claims.sub, &messages, reply::wants_html(headers)))
            }
            Decision::Forbidden { app, claims } => {
                ctx.judged(app.index, &claims);
                tracing::info!(user = %claims.sub, "access denied by allowed_groups");
                Some(pages::forbidden(ui, &claims.sub))
            }
            Decision::Bypass { app } => {
                ctx.app = Some(app.index);
                None
            }
            Decision::Allow { app, claims } => {
                ctx.judged(app.index, &claims);
                ctx.claims = Some(claims);
                None
            }
        }
    }
}

pub(crate) fn is_tls(session: &Session) -> bool {
    session.digest().is_some_and(|d| d.ssl_digest.is_some())
}

/// The access decision's view of a request.
fn access_request<'r>(
    req: &'r RequestHeader,
    scheme: &'r str,
    client: Option<std::net::IpAddr>,
) -> AccessRequest<'r> {
    AccessRequest {
        client,
        method: &req.method,
        scheme,
        authority: authority(req),
        path: req.uri.path(),
        path_and_query: path_and_query(req),
        headers: &req.headers,
    }
}

/// The access log's name for a decision.
fn outcome(d: &Decision<'_>) -> &'static str {
    match d {
        Decision::UnknownHost => "unknown_host",
        Decision::Bypass { .. } => "bypass",
        Decision::Allow { .. } => "allow",
        Decision::Unauthenticated { .. } => "unauthenticated",
        Decision::Forbidden { .. } => "forbidden",
        Decision::Denied { .. } => "denied",
        Decision::Refused { .. } => "refused",
        Decision::StepUp { .. } => "step_up",
    }
}

fn bad_host() -> Response {
    Response::text(StatusCode::BAD_REQUEST, "malformed Host header\n")
}

fn permanent_redirect(location: &str) -> Response {
    Response::redirect(StatusCode::PERMANENT_REDIRECT, location)
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> Self::CTX {
        RequestCtx {
            // The request's one look at the live configuration.
            live: self.live.load_full(),
            app: None,
            claims: None,
            seen: None,
            tls: false,
            trace: trace::Trace::new(),
            _in_flight: crate::metrics::InFlight::start(),
        }
    }

    async fn request_filter(
        &self,
        session: &mut Session,
        ctx: &mut Self::CTX,
    ) -> pingora::Result<bool> {
        let span = ctx.trace.span.clone();
        let live = ctx.live.clone();
        live.filter(session, ctx).instrument(span).await
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut Self::CTX,
    ) -> pingora::Result<Box<HttpPeer>> {
        ctx.app
            .and_then(|i| ctx.live.upstreams.get(i))
            .and_then(UpstreamSet::pick)
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "no upstream for this request"))
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut Self::CTX,
    ) -> pingora::Result<()> {
        // `upstream` is a copy of the client's request as `request_filter` left it, identity
        // headers already stripped there; only the session's are added here.
        let _in = ctx.trace.span.enter();
        ctx.live.identify(upstream, ctx)?;
        let cookies = [
            ctx.live.gate.config().session.cookie_name.as_str(),
            FLOW_COOKIE,
        ];
        identity::strip_cookies(upstream, &cookies)
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut pingora::http::ResponseHeader,
        ctx: &mut Self::CTX,
    ) -> pingora::Result<()> {
        if let Some(h) = ctx.live.hsts.as_ref().filter(|_| ctx.tls) {
            upstream_response.insert_header(http::header::STRICT_TRANSPORT_SECURITY, h.clone())?;
        }
        Ok(())
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut Self::CTX,
    ) -> FailToProxy {
        let span = ctx.trace.span.clone();
        let live = ctx.live.clone();
        live.failed(session, e, ctx).instrument(span).await
    }

    /// A client that went away (closed, reset, stopped reading) is routine: logged at debug
    /// here instead of as Pingora's error line.
    fn suppress_error_log(&self, _session: &Session, ctx: &Self::CTX, e: &Error) -> bool {
        let gone = client_gone(e);
        if gone {
            let _in = ctx.trace.span.enter();
            tracing::debug!(error = %e, "the client went away");
        }
        gone
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut Self::CTX) {
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        ctx.live.timers.observe(
            ctx.app,
            crate::metrics::Outcome::of(ctx.trace.outcome, status),
            ctx.trace.started.elapsed(),
        );
        if ctx.live.access_log {
            ctx.live.log_access(session, ctx);
        }
    }
}

impl Served {
    /// For apps on the built-in demo upstream, answers with the whoami page; otherwise lets the
    /// request go on upstream.
    async fn serve_builtin(
        &self,
        session: &mut Session,
        ctx: &RequestCtx,
    ) -> pingora::Result<bool> {
        let builtin = ctx
            .app
            .and_then(|i| self.upstreams.get(i))
            .is_some_and(UpstreamSet::is_builtin);
        if !builtin {
            return Ok(false);
        }
        let page = whoami::page(
            self.portal.ui(),
            session.req_header(),
            ctx.claims.as_deref(),
            &self.gate.config().headers,
        );
        self.reply(session, page).await
    }
}

impl Served {
    /// Adds the session's identity (and, for apps that want one, a signed assertion) to a
    /// request going upstream.
    fn identify(&self, upstream: &mut RequestHeader, ctx: &RequestCtx) -> pingora::Result<()> {
        let Some(claims) = &ctx.claims else {
            return Ok(());
        };
        let cfg = self.gate.config();
        identity::inject(upstream, &self.identity, claims)?;
        let Some(app) = ctx
            .app
            .and_then(|i| cfg.apps.get(i))
            .filter(|a| a.assertion)
        else {
            return Ok(());
        };
        let assertions = self.gate.sessions().assertions();
        match assertions.assertion(claims, app.index, &app.name) {
            Ok(token) => upstream.insert_header(crate::config::ASSERTION_HEADER.clone(), token),
            Err(e) => {
                tracing::error!(error = %e, app = %app.name, "could not sign an identity assertion");
                Ok(())
            }
        }
    }

    /// The answer to a request that could not be proxied: a page for a failed upstream,
    /// Pingora's error page for a bad request, nothing when the client went away.
    async fn failed(&self, session: &mut Session, e: &Error, ctx: &mut RequestCtx) -> FailToProxy {
        let code = failure_status(e);
        if code == 502 {
            ctx.trace.outcome = "upstream_failed";
            tracing::warn!(error = %e, "upstream failed");
            self.bad_gateway(session).await;
        } else if code > 0 && session.response_written().is_none() {
            let _ = session.respond_error(code).await;
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    async fn bad_gateway(&self, session: &mut Session) {
        if session.response_written().is_some() {
            return;
        }
        let page = pages::bad_gateway(self.portal.ui(), path_and_query(session.req_header()));
        // Pingora closes the client connection after a proxy failure; say so, so a pooling
        // client does not send its next request into a closed socket.
        if !session.is_http2() {
            session.set_keepalive(None);
        }
        let _ = respond::send(session, page).await;
    }

    /// The request's access-log line.
    fn log_access(&self, session: &Session, ctx: &RequestCtx) {
        let req = session.req_header();
        let apps = &self.gate.config().apps;
        trace::access(
            &ctx.trace,
            &trace::AccessLine {
                method: req.method.as_str(),
                host: authority(req),
                path: req.uri.path(),
                app: ctx
                    .app
                    .and_then(|i| apps.get(i))
                    .map_or("", |a| a.name.as_str()),
                user: ctx.seen.as_deref().map_or("", |c| c.sub.as_str()),
                status: session.response_written().map_or(0, |r| r.status.as_u16()),
            },
        );
    }
}

/// Whether `e` is the client's connection ending (closed, reset, timed out) rather than a fault
/// of ours or the upstream's.
fn client_gone(e: &Error) -> bool {
    *e.esource() == ErrorSource::Downstream
        && matches!(
            e.etype(),
            ErrorType::ReadError
                | ErrorType::WriteError
                | ErrorType::ConnectionClosed
                | ErrorType::ReadTimedout
                | ErrorType::WriteTimedout
        )
}

/// The status a proxy failure answers with: 502 for the upstream's (and our own) failures,
/// 400 for a bad request, 0 when the client is gone.
fn failure_status(e: &Error) -> u16 {
    match e.etype() {
        ErrorType::HTTPStatus(code) => *code,
        _ => match e.esource() {
            ErrorSource::Upstream => 502,
            ErrorSource::Downstream => match e.etype() {
                ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed => 0,
                _ => 400,
            },
            ErrorSource::Internal | ErrorSource::Unset => 502,
        },
    }
}

//! The Pingora face: route by host, strip client identity headers, ask the access decision,
//! answer gateway endpoints, and forward allowed requests with the user's identity.
//!
//! Phase methods stay short and delegate; the rules live in [`crate::access`] and the
//! endpoints in [`crate::portal`].

mod identity;
mod respond;
mod upstream;
mod whoami;

use crate::access::{AccessRequest, Decision, Gate};
use crate::forward_auth;
use crate::forwarded::TrustedProxies;
use crate::portal::{self, pages, Portal, FLOW_COOKIE, JWKS, MAX_BODY, PING, PREFIX};
use crate::session::Claims;
use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use http::StatusCode;
use pingora::http::RequestHeader;
use pingora::prelude::HttpPeer;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::{Error, ErrorSource, ErrorType};
use std::sync::Arc;
use upstream::UpstreamSet;

/// Per-request state carried between Pingora's phases.
#[derive(Default)]
pub struct RequestCtx {
    app: Option<usize>,
    claims: Option<std::sync::Arc<Claims>>,
    tls: bool,
}

/// The gateway as a Pingora proxy.
pub struct Gateway {
    gate: Arc<Gate>,
    portal: Arc<Portal>,
    upstreams: Vec<UpstreamSet>,
    trusted: TrustedProxies,
    /// Where `redirect_http` sends plain-HTTP requests.
    https_port: Option<u16>,
    /// `Strict-Transport-Security` for HTTPS responses.
    hsts: Option<http::HeaderValue>,
}

impl Gateway {
    pub fn new(gate: Arc<Gate>, portal: Arc<Portal>) -> Self {
        let cfg = gate.config();
        let upstreams = cfg.apps.iter().map(UpstreamSet::new).collect();
        let trusted = TrustedProxies::new(cfg.server.trusted_proxies.clone());
        let https_port = cfg
            .server
            .redirect_http
            .then(|| cfg.server.tls_listen.first().map(|a| a.port()))
            .flatten();
        let hsts = cfg
            .server
            .hsts
            .as_deref()
            .and_then(|v| http::HeaderValue::from_str(v).ok());
        Self {
            gate,
            portal,
            upstreams,
            trusted,
            https_port,
            hsts,
        }
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

    /// Answers a forward-auth call from nginx, Traefik or Caddy.
    async fn forward_auth(
        &self,
        session: &mut Session,
        flavor: forward_auth::Flavor,
        scheme: &str,
    ) -> pingora::Result<bool> {
        let trusted = Self::peer_ip(session).is_some_and(|ip| self.trusted.trusts(ip));
        let req = session.req_header();
        let resp = forward_auth::handle(
            &self.gate,
            flavor,
            &forward_auth::Arrived {
                method: &req.method,
                scheme,
                authority: authority(req),
                path_and_query: req.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"),
                headers: &req.headers,
            },
            trusted,
        );
        self.reply(session, resp).await
    }

    /// The public keys upstreams use to verify identity assertions.
    async fn jwks(&self, session: &mut Session) -> pingora::Result<bool> {
        let jwks = self.gate.sessions().assertions().jwks().to_string();
        let mut resp = portal::Response::new(StatusCode::OK, "application/jwk-set+json", jwks);
        resp.headers
            .retain(|(n, _)| n != http::header::CACHE_CONTROL);
        resp.headers.push((
            http::header::CACHE_CONTROL,
            http::HeaderValue::from_static("public, max-age=300"),
        ));
        self.reply(session, resp).await
    }

    /// The auth host's own root: who is signed in, with a way out.
    async fn auth_home(&self, session: &mut Session) -> pingora::Result<bool> {
        let ui = self.portal.ui();
        let page = match self.gate.session(&session.req_header().headers) {
            Some(c) => ui.message(
                "Signed in",
                &format!("You are signed in as {}.", c.sub),
                Some(crate::ui::Link {
                    href: "/.portcullis/logout",
                    label: "Sign out",
                }),
            ),
            None => {
                let flow = self.gate.config().apps.first().map(|a| a.flow.as_str());
                let href = format!("/.portcullis/flow/{}", flow.unwrap_or_default());
                ui.message(
                    "Not signed in",
                    "Open the application you want to use; it will send you here to sign in.",
                    flow.map(|_| crate::ui::Link {
                        href: &href,
                        label: "Sign in",
                    }),
                )
            }
        };
        self.reply(session, portal::Response::html(StatusCode::OK, page))
            .await
    }

    /// The sign-in service's home page, the way on from a host that is not ours: the auth
    /// host's root when one is configured (from `auth_url`, never from the request's `Host`).
    fn home(&self) -> Option<String> {
        let origin = self.gate.config().server.auth_url.as_ref()?;
        Some(format!("{}/", origin.as_str()))
    }

    /// With `redirect_http`, plain-HTTP requests for our hosts go to the same path on the
    /// host's configured (HTTPS) origin; a host that is not ours gets no redirect (it is
    /// answered `404` further on), so no `Host` header shapes the target.
    fn https_redirect(&self, req: &RequestHeader) -> Option<portal::Response> {
        self.https_port?;
        let origin = self.gate.public_origin(authority(req))?;
        let pq = req.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        Some(portal::Response::redirect(
            StatusCode::PERMANENT_REDIRECT,
            &format!("{origin}{pq}"),
        ))
    }

    async fn reply(
        &self,
        session: &mut Session,
        mut resp: portal::Response,
    ) -> pingora::Result<bool> {
        if let Some(h) = self.hsts.as_ref().filter(|_| is_tls(session)) {
            resp.headers
                .push((http::header::STRICT_TRANSPORT_SECURITY, h.clone()));
        }
        // Pages carry the strict policy; their forms may also lead to our configured origins.
        // Any other policy (the logo's sandbox) is kept as it is.
        for (name, value) in &mut resp.headers {
            if *name == http::header::CONTENT_SECURITY_POLICY
                && value.as_bytes() == portal::STRICT_CSP.as_bytes()
            {
                *value = self.portal.csp().clone();
            }
        }
        respond::send(session, resp).await?;
        Ok(true)
    }

    /// Hands a `/.portcullis/` request to the portal.
    async fn portal(&self, session: &mut Session, scheme: &str) -> pingora::Result<bool> {
        let authority = authority(session.req_header()).to_string();
        if self.gate.app(&authority).is_none() && !self.gate.is_auth_host(&authority) {
            let page = pages::unknown_host(self.portal.ui(), self.home().as_deref());
            return self.reply(session, page).await;
        }
        let body = match read_body(session).await? {
            Some(b) => b,
            None => {
                let resp = pages::payload_too_large(self.portal.ui());
                return self.reply(session, resp).await;
            }
        };
        let client = self.client_ip(session);
        let req = session.req_header();
        let resp = self
            .portal
            .handle(portal::Request {
                method: &req.method,
                path: req.uri.path(),
                query: req.uri.query(),
                headers: &req.headers,
                body,
                scheme,
                authority: &authority,
                client: &client,
            })
            .await;
        self.reply(session, resp).await
    }
}

/// The Host the client asked for (HTTP/1 `Host`, or the HTTP/2 authority).
fn authority(req: &RequestHeader) -> &str {
    req.headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri.authority().map(|a| a.as_str()))
        .unwrap_or("")
}

fn is_tls(session: &Session) -> bool {
    session.digest().is_some_and(|d| d.ssl_digest.is_some())
}

/// The whole request body, or `None` when it is over [`MAX_BODY`].
async fn read_body(session: &mut Session) -> pingora::Result<Option<Bytes>> {
    let mut buf = BytesMut::new();
    while let Some(chunk) = session.read_request_body().await? {
        if buf.len() + chunk.len() > MAX_BODY {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(Some(buf.freeze()))
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> Self::CTX {
        RequestCtx::default()
    }

    async fn request_filter(
        &self,
        session: &mut Session,
        ctx: &mut Self::CTX,
    ) -> pingora::Result<bool> {
        identity::strip(session.req_header_mut(), &self.gate.config().headers);
        let path = session.req_header().uri.path();
        if path == PING {
            return self
                .reply(session, portal::Response::text(StatusCode::OK, "pong"))
                .await;
        }
        if path == JWKS {
            return self.jwks(session).await;
        }
        let host = authority(session.req_header());
        if !host.is_empty() && !crate::access::is_plain_authority(host) {
            return self
                .reply(
                    session,
                    portal::Response::text(StatusCode::BAD_REQUEST, "malformed Host header\n"),
                )
                .await;
        }
        let tls = is_tls(session);
        ctx.tls = tls;
        let scheme = if tls { "https" } else { "http" };
        if let Some(flavor) = forward_auth::route(path) {
            let compat = forward_auth::is_compat_path(path);
            if !compat || self.gate.app(authority(session.req_header())).is_none() {
                return self.forward_auth(session, flavor, scheme).await;
            }
        }
        if !tls {
            if let Some(resp) = self.https_redirect(session.req_header()) {
                return self.reply(session, resp).await;
            }
        }
        if path.starts_with(PREFIX) {
            return self.portal(session, scheme).await;
        }
        if self.gate.is_auth_host(authority(session.req_header())) {
            if path == "/" {
                return self.auth_home(session).await;
            }
            return self
                .reply(session, pages::not_found(self.portal.ui()))
                .await;
        }

        let req = session.req_header();
        let decision = self.gate.decide(&AccessRequest {
            method: &req.method,
            scheme,
            authority: authority(req),
            path: req.uri.path(),
            path_and_query: req.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"),
            headers: &req.headers,
        });
        let ui = self.portal.ui();
        match decision {
            Decision::UnknownHost => {
                let page = pages::unknown_host(ui, self.home().as_deref());
                self.reply(session, page).await
            }
            Decision::Unauthenticated {
                login, navigation, ..
            } => {
                self.reply(session, pages::unauthenticated(&login, navigation))
                    .await
            }
            Decision::StepUp {
                app,
                claims,
                login,
                navigation,
            } => {
                tracing::info!(user = %claims.sub, app = %app.name, "session lacks a factor the app's flow requires; step-up");
                self.reply(session, pages::step_up(&login, navigation))
                    .await
            }
            Decision::Forbidden { claims, .. } => {
                tracing::info!(user = %claims.sub, "access denied by allowed_groups");
                self.reply(session, pages::forbidden(ui, &claims.sub)).await
            }
            Decision::Bypass { app } => {
                ctx.app = Some(app.index);
                self.serve_builtin(session, ctx).await
            }
            Decision::Allow { app, claims } => {
                ctx.app = Some(app.index);
                ctx.claims = Some(claims);
                self.serve_builtin(session, ctx).await
            }
        }
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut Self::CTX,
    ) -> pingora::Result<Box<HttpPeer>> {
        ctx.app
            .and_then(|i| self.upstreams.get(i))
            .and_then(UpstreamSet::pick)
            .map(Box::new)
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
        let cfg = self.gate.config();
        if let Some(claims) = &ctx.claims {
            identity::inject(upstream, &cfg.headers, claims)?;
            if let Some(app) = ctx
                .app
                .and_then(|i| cfg.apps.get(i))
                .filter(|a| a.assertion)
            {
                match self
                    .gate
                    .sessions()
                    .assertions()
                    .assertion(claims, app.index, &app.name)
                {
                    Ok(token) => {
                        upstream.insert_header(crate::config::ASSERTION_HEADER.clone(), token)?
                    }
                    Err(e) => {
                        tracing::error!(error = %e, app = %app.name, "could not sign an identity assertion")
                    }
                }
            }
        }
        identity::strip_cookies(upstream, &[cfg.session.cookie_name.as_str(), FLOW_COOKIE])
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut pingora::http::ResponseHeader,
        ctx: &mut Self::CTX,
    ) -> pingora::Result<()> {
        if let Some(h) = self.hsts.as_ref().filter(|_| ctx.tls) {
            upstream_response.insert_header(http::header::STRICT_TRANSPORT_SECURITY, h.clone())?;
        }
        Ok(())
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        _ctx: &mut Self::CTX,
    ) -> FailToProxy {
        let code = match e.etype() {
            ErrorType::HTTPStatus(code) => *code,
            _ => match e.esource() {
                ErrorSource::Upstream => 502,
                ErrorSource::Downstream => match e.etype() {
                    ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed => 0,
                    _ => 400,
                },
                ErrorSource::Internal | ErrorSource::Unset => 502,
            },
        };
        if code == 502 {
            tracing::warn!(error = %e, "upstream failed");
            if session.response_written().is_none() {
                let req = session.req_header();
                let retry = req.uri.path_and_query().map_or("/", |p| p.as_str());
                let page = pages::bad_gateway(self.portal.ui(), retry);
                // Pingora closes the client connection after a proxy failure; say so, so a
                // pooling client does not send its next request into a closed socket.
                if !session.is_http2() {
                    session.set_keepalive(None);
                }
                let _ = respond::send(session, page).await;
            }
        } else if code > 0 && session.response_written().is_none() {
            let _ = session.respond_error(code).await;
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }
}

impl Gateway {
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

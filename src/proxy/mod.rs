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
use crate::portal::{self, pages, Portal, FLOW_COOKIE, MAX_BODY, PING, PREFIX};
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
    claims: Option<Claims>,
}

/// The gateway as a Pingora proxy.
pub struct Gateway {
    gate: Arc<Gate>,
    portal: Arc<Portal>,
    upstreams: Vec<UpstreamSet>,
}

impl Gateway {
    pub fn new(gate: Arc<Gate>, portal: Arc<Portal>) -> Self {
        let upstreams = gate.config().apps.iter().map(UpstreamSet::new).collect();
        Self {
            gate,
            portal,
            upstreams,
        }
    }

    async fn reply(&self, session: &mut Session, resp: portal::Response) -> pingora::Result<bool> {
        respond::send(session, resp).await?;
        Ok(true)
    }

    /// Hands a `/.portcullis/` request to the portal.
    async fn portal(&self, session: &mut Session, scheme: &str) -> pingora::Result<bool> {
        let authority = authority(session.req_header()).to_string();
        if self.gate.app(&authority).is_none() {
            return self
                .reply(session, pages::not_found(self.portal.ui()))
                .await;
        }
        let body = match read_body(session).await? {
            Some(b) => b,
            None => {
                let resp = portal::Response::text(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "request body too large\n",
                );
                return self.reply(session, resp).await;
            }
        };
        let client = client_ip(session);
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

fn client_ip(session: &Session) -> String {
    session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip().to_string())
        .unwrap_or_default()
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
        let scheme = if is_tls(session) { "https" } else { "http" };
        if path.starts_with(PREFIX) {
            return self.portal(session, scheme).await;
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
            Decision::UnknownHost => self.reply(session, pages::not_found(ui)).await,
            Decision::Unauthenticated {
                login, navigation, ..
            } => {
                self.reply(session, pages::unauthenticated(&login, navigation))
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
        let cfg = self.gate.config();
        identity::strip(upstream, &cfg.headers);
        if let Some(claims) = &ctx.claims {
            identity::inject(upstream, &cfg.headers, claims)?;
        }
        identity::strip_cookies(upstream, &[cfg.session.cookie_name.as_str(), FLOW_COOKIE])
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
                let _ = respond::send(session, pages::bad_gateway(self.portal.ui())).await;
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
            ctx.claims.as_ref(),
            &self.gate.config().headers,
        );
        self.reply(session, page).await
    }
}

//! The answers the gateway gives itself, outside the access decision: forward-auth calls, the
//! assertion keys, the auth host's home page, the portal's endpoints, and the one writer of
//! them all ([`Served::reply`]).

use super::route::{authority, path_and_query, Route};
use super::{is_tls, respond, Served};
use crate::forward_auth;
use crate::portal::{pages, MAX_BODY};
use crate::reply::{self, Response};
use bytes::{Bytes, BytesMut};
use http::StatusCode;
use pingora::http::RequestHeader;
use pingora::proxy::Session;
use std::net::IpAddr;

impl Served {
    /// Answers a forward-auth call from nginx, Traefik or Caddy.
    pub(super) async fn forward_auth(
        &self,
        session: &mut Session,
        flavor: forward_auth::Flavor,
        scheme: &str,
    ) -> pingora::Result<bool> {
        let resp =
            self.forward_auth_answer(session.req_header(), Self::peer_ip(session), flavor, scheme);
        self.reply(session, resp).await
    }

    /// The answer to a forward-auth call whose head is `req`, from `peer`, counted in
    /// `portcullis_forward_auth_total`. The one implementation behind both transports: the
    /// proxy's session and the intake's own answer ([`super::intake`]).
    pub(super) fn forward_auth_answer(
        &self,
        req: &RequestHeader,
        peer: Option<IpAddr>,
        flavor: forward_auth::Flavor,
        scheme: &str,
    ) -> Response {
        let trusted = peer.is_some_and(|ip| self.trusted.trusts(ip));
        let client = peer.map(|ip| self.trusted.client(ip, &req.headers));
        let resp = forward_auth::handle(
            &self.gate,
            self.portal.ui(),
            flavor,
            &forward_auth::Arrived {
                method: &req.method,
                scheme,
                authority: authority(req),
                path_and_query: path_and_query(req),
                headers: &req.headers,
                client,
            },
            trusted,
        );
        crate::metrics::forward_auth(flavor.as_str(), resp.status.as_u16());
        resp
    }

    /// Whether [`Served::head_answer`] answers `route`.
    pub(super) fn answers_from_head(route: &Route) -> bool {
        matches!(
            route,
            Route::Ping | Route::Health | Route::Ready | Route::ForwardAuth(_)
        )
    }

    /// The answer of a route the gateway answers from the request's head alone, with no body
    /// to read and nothing to wait for (`ping`, `health`, `ready`, forward-auth); `None` for
    /// every other route. The intake serves these without a Pingora session.
    pub(super) fn head_answer(
        &self,
        route: &Route,
        req: &RequestHeader,
        peer: Option<IpAddr>,
        tls: bool,
    ) -> Option<Response> {
        Some(match route {
            Route::Ping => Response::text(StatusCode::OK, "pong"),
            Route::Health => crate::ops::health(),
            Route::Ready => {
                let store = self.portal.engine.services().store.as_ref();
                crate::ops::ready(store, false)
            }
            Route::ForwardAuth(flavor) => {
                let scheme = if tls { "https" } else { "http" };
                self.forward_auth_answer(req, peer, *flavor, scheme)
            }
            _ => return None,
        })
    }

    /// The public keys upstreams use to verify identity assertions.
    pub(super) async fn jwks(&self, session: &mut Session) -> pingora::Result<bool> {
        let jwks = self.gate.sessions().assertions().jwks().to_string();
        let mut resp = Response::new(StatusCode::OK, "application/jwk-set+json", jwks);
        resp.headers
            .retain(|(n, _)| n != http::header::CACHE_CONTROL);
        resp.headers.push((
            http::header::CACHE_CONTROL,
            http::HeaderValue::from_static("public, max-age=300"),
        ));
        self.reply(session, resp).await
    }

    /// The auth host's own root: who is signed in, with a way out.
    pub(super) async fn auth_home(&self, session: &mut Session) -> pingora::Result<bool> {
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
        self.reply(session, Response::html(StatusCode::OK, page))
            .await
    }

    /// The sign-in service's home page, the way on from a host that is not ours: the auth
    /// host's root when one is configured (from `auth_url`, never from the request's `Host`).
    pub(super) fn home(&self) -> Option<String> {
        let origin = self.gate.config().server.auth_url.as_ref()?;
        Some(format!("{}/", origin.as_str()))
    }

    /// What every gateway answer gets before it is sent, whichever way it is written: HSTS on
    /// HTTPS, and the pages' policy widened to our origins.
    pub(super) fn finish(&self, resp: &mut Response, tls: bool) {
        if let Some(h) = self.hsts.as_ref().filter(|_| tls) {
            resp.headers
                .push((http::header::STRICT_TRANSPORT_SECURITY, h.clone()));
        }
        // Pages carry the strict policy; their forms may also lead to our configured origins.
        // Any other policy (the logo's sandbox) is kept as it is.
        for (name, value) in &mut resp.headers {
            if *name != http::header::CONTENT_SECURITY_POLICY {
                continue;
            }
            if value.as_bytes() == reply::STRICT_CSP.as_bytes() {
                *value = self.portal.csp().clone();
            } else if value.as_bytes() == reply::SCRIPTED_CSP.as_bytes() {
                *value = self.portal.scripted_csp().clone();
            }
        }
    }

    /// Sends a gateway answer, with HSTS on HTTPS and the pages' policy widened to our origins.
    pub(super) async fn reply(
        &self,
        session: &mut Session,
        mut resp: Response,
    ) -> pingora::Result<bool> {
        self.finish(&mut resp, is_tls(session));
        // Failing to write is the client's connection ending, not a fault of ours.
        respond::send(session, resp)
            .await
            .map_err(|e| e.into_down())?;
        Ok(true)
    }

    /// Hands a `/.portcullis/` request to the portal.
    pub(super) async fn portal(
        &self,
        session: &mut Session,
        scheme: &str,
    ) -> pingora::Result<bool> {
        let authority = authority(session.req_header()).to_string();
        if self.gate.app(&authority).is_none() && !self.gate.is_auth_host(&authority) {
            let page = pages::unknown_host(self.portal.ui(), self.home().as_deref());
            return self.reply(session, page).await;
        }
        let Ok(body) = tokio::time::timeout(self.body_timeout, read_body(session)).await else {
            tracing::debug!(limit = ?self.body_timeout, "request body not complete in time; answered 408");
            session.set_keepalive(None);
            let resp = Response::text(
                StatusCode::REQUEST_TIMEOUT,
                "request not received in time\n",
            );
            return self.reply(session, resp).await;
        };
        let body = match body? {
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
            .handle(crate::portal::Request {
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

/// The whole request body, or `None` when it is over [`MAX_BODY`].
async fn read_body(session: &mut Session) -> pingora::Result<Option<Bytes>> {
    let mut buf = BytesMut::new();
    while let Some(chunk) = session
        .read_request_body()
        .await
        .map_err(|e| e.into_down())?
    {
        if buf.len() + chunk.len() > MAX_BODY {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(Some(buf.freeze()))
}

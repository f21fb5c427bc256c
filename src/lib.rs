//! Portcullis: an authentication gateway on Pingora.
//!
//! A request without a valid session is sent into a login flow run by the embedded flow engine
//! (state in sled); a completed flow issues a signed session cookie, and signed-in traffic is
//! forwarded with the user's identity in headers.
//!
//! Dependencies point one way: [`proxy`] → [`access`], [`portal`] → [`flow`], [`session`],
//! [`ui`] → [`store`].
#![forbid(unsafe_code)]

pub mod access;
pub(crate) mod admin;
// lint debt: removed at merge
#[allow(missing_docs, unreachable_pub, clippy::unwrap_used)]
pub mod app;
pub mod cli;
// lint debt: removed at merge
#[allow(missing_docs, unreachable_pub, clippy::unwrap_used)]
pub mod clock;
// lint debt: removed at merge
#[allow(missing_docs, unreachable_pub, clippy::unwrap_used)]
pub mod config;
// lint debt: removed at merge
#[allow(missing_docs, unreachable_pub, clippy::unwrap_used)]
pub mod flow;
// lint debt: removed at merge
#[allow(missing_docs, unreachable_pub, clippy::unwrap_used)]
pub mod forward_auth;
pub(crate) mod forwarded;
pub mod loadgen;
// lint debt: removed at merge
#[allow(missing_docs, unreachable_pub, clippy::unwrap_used)]
pub mod notify;
// lint debt: removed at merge
#[allow(missing_docs, unreachable_pub, clippy::unwrap_used)]
pub mod password;
// lint debt: removed at merge
#[allow(missing_docs, unreachable_pub, clippy::unwrap_used)]
pub mod portal;
// lint debt: removed at merge
#[allow(missing_docs, unreachable_pub, clippy::unwrap_used)]
pub mod proxy;
pub mod redirect;
// lint debt: removed at merge
#[allow(missing_docs, unreachable_pub, clippy::unwrap_used)]
pub mod secret;
pub mod session;
// lint debt: removed at merge
#[allow(missing_docs, unreachable_pub, clippy::unwrap_used)]
pub mod store;
pub mod templates;
pub(crate) mod tls;
// lint debt: removed at merge
#[allow(missing_docs, unreachable_pub, clippy::unwrap_used)]
pub mod ui;

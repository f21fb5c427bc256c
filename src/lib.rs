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
pub mod admin;
pub mod app;
pub mod cli;
pub mod clock;
pub mod config;
pub mod flow;
pub mod forward_auth;
pub mod forwarded;
pub mod loadgen;
pub mod notify;
pub mod password;
pub mod portal;
pub mod proxy;
pub mod redirect;
pub mod reply;
pub mod secret;
pub mod session;
pub mod store;
pub mod templates;
pub mod tls;
pub mod ui;

#[cfg(test)]
mod layers;

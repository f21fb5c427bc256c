//! Portcullis: an authentication gateway on Pingora.
//!
//! A request without a valid session is sent into a login flow run by the embedded flow engine
//! (state in sled); a completed flow issues a signed session cookie, and signed-in traffic is
//! forwarded with the user's identity in headers.
//!
//! Dependencies point one way: [`proxy`] → [`access`], [`portal`] → [`flow`], [`session`],
//! [`ui`] → [`store`].
//!
//! By job: [`app`] builds the parts from a [`config`] and runs the server; [`proxy`] and
//! [`forward_auth`] are the transports, both asking [`access`] for the one decision;
//! [`portal`] serves the sign-in pages and API over the [`flow`] engine; [`session`] issues
//! and verifies the cookie; [`store`] keeps users, devices and revocations; [`notify`] sends
//! codes; [`ui`] and [`templates`] render pages; [`cli`] (with the crate-private `admin`)
//! administers users and keys; [`loadgen`] drives `portcullis bench` and the load bench.
//!
//! The public API is what the binary, the benches and the tests use; the rest is
//! `pub(crate)`. Cargo.toml's `[lints]` table keeps it that way (`unreachable_pub`), documented
//! (`missing_docs`) and free of `unwrap()` outside tests (`clippy::unwrap_used`).
#![forbid(unsafe_code)]

pub mod access;
pub(crate) mod admin;
pub mod app;
pub mod audit;
pub mod cli;
pub mod clock;
pub mod config;
pub mod device_key;
pub mod files;
pub mod flow;
pub mod forward_auth;
pub(crate) mod forwarded;
pub mod http_client;
pub mod loadgen;
pub mod logging;
pub mod memory;
pub mod metrics;
pub mod notify;
pub mod ops;
pub mod password;
pub mod policy;
pub mod portal;
#[cfg(test)]
mod props;
pub mod proxy;
pub mod redirect;
pub mod regulation;
pub mod reload;
pub mod replicas;
pub mod reply;
pub mod secret;
pub mod session;
pub mod socket_activation;
pub mod store;
pub mod templates;
#[cfg(test)]
pub(crate) mod testing;
pub(crate) mod tls;
pub mod ui;

#[cfg(test)]
mod layers;

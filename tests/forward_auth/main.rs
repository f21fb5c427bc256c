//! Forward-auth end-to-end tests: Debian's nginx and Caddy in front of the real `portcullis`
//! binary, using the example configs shipped in `config/` (placeholders substituted), a real
//! upstream behind them; Traefik's protocol emulated header for header; TLS listeners, SNI,
//! HTTP/2, TLS upstreams; WebSocket upgrades and streamed responses through the proxy.

// A test crate has no API: `pub` in its modules only shares helpers between them.
#![allow(unreachable_pub)]
// Set-up helpers outside `#[test]` functions unwrap on purpose: a failed set-up is a failed test.
#![allow(clippy::unwrap_used)]

#[path = "../e2e/harness.rs"]
mod harness;

mod support;

#[path = "../support/rules_table.rs"]
mod rules_table;

#[path = "../support/app_policies_table.rs"]
mod app_policies_table;

mod app_policies;
mod attacks;
mod bent_paths;
mod caddy;
mod fronts;
mod lean;
mod nginx;
mod protocol;
mod regulation;
mod rules;
mod streaming;
mod tls;
mod walk;

//! End-to-end tests for Portcullis: the real `portcullis` binary in front of a real upstream
//! HTTP server, both on ephemeral loopback ports. One test target so the (slow) link happens once.

// A test crate has no API: `pub` in its modules only shares helpers between them.
#![allow(unreachable_pub)]
// Set-up helpers outside `#[test]` functions unwrap on purpose: a failed set-up is a failed test.
#![allow(clippy::unwrap_used)]

mod harness;

#[path = "../support/rules_table.rs"]
mod rules_table;

#[path = "../support/app_policies_table.rs"]
mod app_policies_table;

#[path = "../sms/provider.rs"]
mod sms_provider;

mod abandoned;
mod access_log;
mod app_policies;
mod assertion;
mod attacks;
mod captcha;
mod captcha_stand_in;
mod cli;
mod config;
mod designations;
mod enrol;
mod flow_api;
mod flow_html;
mod hygiene;
mod integrity;
mod links;
mod log_secrets;
mod ops;
mod password_policy;
mod policies;
mod proxy;
mod redirects;
mod regulation;
mod reload;
mod replicas;
mod route_tricks;
mod rules;
mod session;
mod settings;
mod sign_in_memory;
mod slow_clients;
mod socket_activation;
mod start_over;
mod store_dump;
mod strong;
mod unenrol;

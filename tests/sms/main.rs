//! End-to-end tests of the SMS second factor: the real `portcullis` binary in front of a real
//! upstream, with a real HTTP server on loopback standing in for Twilio and for a generic SMS
//! API (no mocked client). The tests read the codes from the requests the provider received.

// A test crate has no API: `pub` in its modules only shares helpers between them.
#![allow(unreachable_pub)]
// Set-up helpers outside `#[test]` functions unwrap on purpose: a failed set-up is a failed test.
#![allow(clippy::unwrap_used)]

#[path = "../e2e/harness.rs"]
mod harness;

mod provider;
mod support;

mod codes;
mod config_checks;
mod failures;
mod limits;
mod log_redaction;
mod mapping_json;
mod numbers;
mod prompt;
mod requests;
mod takeover;
mod validation;
mod whole_value_patterns;

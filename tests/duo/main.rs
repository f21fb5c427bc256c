//! End-to-end tests of the Duo factor: the real `portcullis` binary, reaching a real HTTP
//! server on loopback that stands in for Duo's Auth API v2 and verifies every request's
//! signature as Duo documents it. Both faces: the JSON API and the HTML pages.

// A test crate has no API: `pub` in its modules only shares helpers between them.
#![allow(unreachable_pub)]
// Set-up helpers outside `#[test]` functions unwrap on purpose: a failed set-up is a failed test.
#![allow(clippy::unwrap_used)]

#[path = "../e2e/harness.rs"]
mod harness;

mod stand_in;
mod support;

mod config;
mod enrol;
mod failures;
mod validate;

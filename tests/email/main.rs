//! End-to-end tests of the email second factor against a real SMTP server: Python's aiosmtpd
//! (`tests/support/smtp_server.py`) on a loopback port, plain, STARTTLS, implicit TLS and AUTH,
//! with certificates generated here by rcgen. The real `portcullis` binary runs in front of a
//! real upstream; the codes and links are read from the messages the SMTP server received.

// A test crate has no API: `pub` in its modules only shares helpers between them.
#![allow(unreachable_pub)]
// Set-up helpers outside `#[test]` functions unwrap on purpose: a failed set-up is a failed test.
#![allow(clippy::unwrap_used)]

#[path = "../e2e/harness.rs"]
mod harness;

mod mail;
mod smtp;
mod support;

mod devices;
mod enrolled_policy;
mod enumeration;
mod inactive;
mod limits;
mod link;
mod origin;
mod phish;
mod recovery;
mod setup;
mod step_up;
mod takeover;
mod transport;

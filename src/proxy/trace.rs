//! Per-request tracing: the request id, the span every phase runs in, and the access-log line
//! the `logging` phase writes (`[log] access = true`).
//!
//! # Security
//! The access log names the app, the user, the method, the host and the path, never the query
//! string (a sign-in link's token travels there), a header, a cookie or a body.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

/// The tracing target of access-log lines, for filtering (`PORTCULLIS_LOG=portcullis::access=info`).
pub const ACCESS_TARGET: &str = "portcullis::access";

/// A request id unique within this process and unlikely to repeat across restarts: a random
/// prefix chosen at start, then a counter. Cheap: a number, no system call and no allocation;
/// written out (16 hex digits) only when a log line shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RequestId(u64);

impl RequestId {
    pub(crate) fn next() -> RequestId {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        RequestId(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        static PREFIX: OnceLock<u32> = OnceLock::new();
        let prefix = PREFIX.get_or_init(rand::random::<u32>);
        write!(f, "{prefix:08x}{:08x}", self.0)
    }
}

/// What a request was, for its span and its access-log line.
pub(crate) struct Trace {
    /// The span every phase of the request runs in, carrying `request_id`.
    pub(crate) span: tracing::Span,
    pub(crate) id: RequestId,
    pub(crate) started: Instant,
    /// What the gateway did with it (`allow`, `unauthenticated`, `portal`, ...).
    pub(crate) outcome: &'static str,
}

impl Trace {
    pub(crate) fn new() -> Trace {
        let id = RequestId::next();
        Trace {
            span: tracing::info_span!("request", request_id = %id),
            id,
            started: Instant::now(),
            outcome: "none",
        }
    }
}

/// One access-log line's fields, all already free of secrets.
pub(crate) struct AccessLine<'a> {
    pub(crate) method: &'a str,
    pub(crate) host: &'a str,
    /// The path alone: the query may carry a sign-in link's token.
    pub(crate) path: &'a str,
    pub(crate) app: &'a str,
    pub(crate) user: &'a str,
    pub(crate) status: u16,
}

/// Writes the access-log line of a finished request.
pub(crate) fn access(trace: &Trace, line: &AccessLine<'_>) {
    tracing::info!(
        target: ACCESS_TARGET,
        parent: &trace.span,
        request_id = %trace.id,
        method = line.method,
        host = line.host,
        path = line.path,
        app = line.app,
        user = line.user,
        status = line.status,
        outcome = trace.outcome,
        duration_us = u64::try_from(trace.started.elapsed().as_micros()).unwrap_or(u64::MAX),
        "access"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_distinct_and_short() {
        let a = RequestId::next().to_string();
        let b = RequestId::next().to_string();
        assert_ne!(a, b);
        assert_eq!(a[..8], b[..8], "one prefix per process");
        assert_eq!(a.len(), 16);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
    }
}

//! Fuzz-style properties of the forward-auth transports' reading of their proxy's headers
//! (`X-Original-URL`, `X-Original-URI`, `X-Original-Method`, `X-Forwarded-Host`/`-Proto`/
//! `-Uri`/`-Method`, `Host`, and `Forwarded`, which is never believed): whatever a trusted
//! proxy passes along, the request judged has a plain `host[:port]`, an origin-form target and
//! an http(s) scheme, and an untrusted caller's headers are never read. More inputs:
//! `PORTCULLIS_FUZZ_CASES=100000 cargo test --lib forward_auth::props`.

use super::*;
use crate::props::{cases, tricky};
use proptest::prelude::*;

const NAMES: &[&str] = &[
    "x-original-url",
    "x-original-uri",
    "x-original-method",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-forwarded-uri",
    "x-forwarded-method",
    "host",
    "forwarded",
];

const PIECES: &[&str] = &[
    "http://",
    "https://",
    "HTTP://",
    "ws",
    "wss",
    "javascript:",
    "//",
    "/",
    "\\",
    "@",
    ":",
    "9000",
    "app.test",
    "APP.TEST",
    "evil.example",
    "app.test:1@evil.example",
    "%2e",
    "%2f",
    "%40",
    "..",
    ".",
    "?",
    "#",
    " ",
    "\t",
    "[::1]",
    "127.0.0.1",
    "GET",
    "POST",
    "for=1.2.3.4",
    "host=evil.example",
    ";",
    ",",
    "http",
    "https",
    "xn--",
    "\u{3002}",
];

fn headers() -> impl Strategy<Value = Vec<(&'static str, String)>> {
    prop::collection::vec((prop::sample::select(NAMES), tricky(PIECES)), 0..6)
}

fn map(pairs: &[(&'static str, String)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        if let Ok(v) = HeaderValue::from_bytes(v.as_bytes()) {
            h.append(*k, v);
        }
    }
    h
}

fn arrived(h: &HeaderMap) -> Arrived<'_> {
    Arrived {
        method: &Method::GET,
        scheme: "http",
        authority: "127.0.0.1:9000",
        path_and_query: "/.portcullis/auth/nginx",
        headers: h,
        client: None,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(2048), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn a_described_request_is_always_plain_or_refused(
        pairs in headers(),
        flavor in prop::sample::select(vec![Flavor::Nginx, Flavor::Traefik, Flavor::Caddy]),
    ) {
        let h = map(&pairs);
        let a = arrived(&h);
        match original(flavor, &a, true) {
            Ok(o) => {
                prop_assert!(is_plain_authority(&o.authority), "{flavor:?} {pairs:?} -> {}", o.authority);
                prop_assert!(o.path_and_query.starts_with('/'), "{pairs:?} -> {}", o.path_and_query);
                prop_assert!(matches!(o.scheme.as_str(), "http" | "https"), "{pairs:?} -> {}", o.scheme);
                // nginx: the URL's host is the one nginx routed on.
                // (An empty X-Original-URL is no description: the call is judged as it arrived.)
                let described = text(&h, "x-original-url").ok().flatten().is_some();
                if flavor == Flavor::Nginx && described {
                    if let Some(Ok(routed)) = h.get("x-forwarded-host").map(|v| v.to_str()) {
                        let routed = routed.trim();
                        if !routed.is_empty() {
                            let judged = crate::access::host_of(&o.authority).trim_start_matches('[').trim_end_matches(']');
                            prop_assert!(judged.eq_ignore_ascii_case(crate::access::host_of(routed)), "{pairs:?} -> {}", o.authority);
                        }
                    }
                }
            }
            Err(r) => prop_assert!(r.status.is_client_error(), "{pairs:?} -> {}", r.status),
        }
    }

    #[test]
    fn an_untrusted_callers_headers_are_never_read(
        pairs in headers(),
        flavor in prop::sample::select(vec![Flavor::Nginx, Flavor::Traefik, Flavor::Caddy]),
    ) {
        let h = map(&pairs);
        let a = arrived(&h);
        let Ok(o) = original(flavor, &a, false) else {
            return Err(TestCaseError::fail("an untrusted call was refused"));
        };
        prop_assert_eq!(o.authority, "127.0.0.1:9000");
        prop_assert_eq!(o.path_and_query, "/.portcullis/auth/nginx");
        prop_assert_eq!(o.method, Method::GET);
    }
}

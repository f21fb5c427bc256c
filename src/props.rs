//! Fuzz-style property tests of the parsers that read what a client sends, on the stable
//! toolchain (proptest): the session cookie and its JWT, the `rd` return address, the path
//! rules are judged on, and the client address from `X-Forwarded-For`. The forward-auth
//! headers and the sign-in form and JSON bodies have theirs beside their private parsers
//! (`forward_auth::props`, `portal::flow::props`), the flow engine in `flow::tests::props`.
//!
//! Each runs [`cases`] inputs in `cargo test` (a few seconds); more on demand:
//! `PORTCULLIS_FUZZ_CASES=100000 cargo test --lib props`.

use proptest::prelude::*;

/// Inputs per property: `PORTCULLIS_FUZZ_CASES`, else `default`.
pub(crate) fn cases(default: u32) -> u32 {
    std::env::var("PORTCULLIS_FUZZ_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
}

/// Strings built from the pieces parsers are tricked with, plus arbitrary text.
pub(crate) fn tricky(pieces: &'static [&'static str]) -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::collection::vec(prop::sample::select(pieces), 0..12).prop_map(|v| v.concat()),
        1 => any::<String>(),
        1 => "[ -~]{0,40}",
    ]
}

mod rd {
    use super::*;
    use crate::config::{PublicOrigin, Scheme};
    use crate::redirect::RedirectPolicy;

    const PIECES: &[&str] = &[
        "http:",
        "https:",
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
        "app.test.evil.example",
        "wiki.example.com",
        ".",
        "..",
        "%2f",
        "%2F",
        "%5c",
        "%40",
        "%00",
        "%0d%0a",
        "?",
        "#",
        "&",
        "=",
        "rd",
        " ",
        "\t",
        "\n",
        "\u{3002}",
        "\u{ff0e}",
        "xn--",
        "[::1]",
        "127.0.0.1",
        "user:pass@",
        "%252f",
        "\u{0}",
    ];

    fn policy() -> RedirectPolicy {
        let origins = [
            PublicOrigin::new(Scheme::Http, "app.test", 9000),
            PublicOrigin::new(Scheme::Https, "wiki.example.com", 443),
        ];
        RedirectPolicy::new(origins.iter())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: cases(2048), failure_persistence: None, ..ProptestConfig::default() })]

        /// Whatever `rd` is, the redirect is to a configured origin, with no userinfo and
        /// nothing a browser would read differently.
        #[test]
        fn an_accepted_rd_always_lands_on_a_configured_origin(rd in tricky(PIECES)) {
            let p = policy();
            if let Some(to) = p.check(&rd, "http://app.test:9000") {
                let ok = to.starts_with("http://app.test:9000/")
                    || to.starts_with("https://wiki.example.com/");
                prop_assert!(ok, "{rd:?} -> {to:?}");
                let url = url::Url::parse(&to).map_err(|e| TestCaseError::fail(format!("{to:?}: {e}")))?;
                prop_assert!(url.username().is_empty() && url.password().is_none(), "{to:?}");
                prop_assert!(matches!(url.host_str(), Some("app.test" | "wiki.example.com")), "{to:?}");
                prop_assert!(!to.bytes().any(|b| b == b'\\' || b.is_ascii_whitespace() || b.is_ascii_control()), "{to:?}");
                // Normalised: checking the answer again gives the answer.
                prop_assert_eq!(p.check(&to, "http://app.test:9000"), Some(to.clone()));
            }
        }
    }
}

mod paths {
    use super::*;
    use crate::access::{is_plain_path, judged_path};

    const PIECES: &[&str] = &[
        "/",
        "//",
        "admin",
        "public",
        ".",
        "..",
        "%2e",
        "%2E",
        "%2e%2e",
        "%2f",
        "%2F",
        "%5c",
        "\\",
        ";",
        ";x=1",
        "%3b",
        "%00",
        "#",
        "%23",
        "%61",
        "%25",
        "%252f",
        "%c0%ae",
        "%c0%af",
        "%e0%80%ae",
        "%",
        "%g",
        "é",
        "%c3%a9",
        "?",
        "x",
    ];

    proptest! {
        #![proptest_config(ProptestConfig { cases: cases(4096), failure_persistence: None, ..ProptestConfig::default() })]

        /// The judged path is absolute, resolved (no empty, `.` or `..` segment, no `\`,
        /// `;`, `#` or NUL) and a fixed point: judging it again changes nothing.
        #[test]
        fn the_judged_path_is_resolved_and_stable(tail in tricky(PIECES)) {
            let path = format!("/{tail}");
            let judged = judged_path(&path);
            prop_assert!(judged.starts_with('/'), "{path:?} -> {judged:?}");
            if judged.as_ref() != path {
                for bad in ['\\', ';', '#', '\0'] {
                    prop_assert!(!judged.contains(bad), "{path:?} -> {judged:?}");
                }
                let inner = judged.trim_end_matches('/');
                for seg in inner.split('/').skip(1) {
                    prop_assert!(!matches!(seg, "" | "." | ".."), "{path:?} -> {judged:?}");
                }
                if !judged.contains('%') {
                    let again = judged_path(&judged).into_owned();
                    prop_assert_eq!(again.as_str(), judged.as_ref(), "{:?}", path);
                }
            }
        }

        /// A path a bypass may see (plain) is judged as sent, and no plain path reads as
        /// another directory once decoded.
        #[test]
        fn a_plain_path_is_judged_as_it_was_sent(tail in tricky(PIECES)) {
            let path = format!("/{tail}");
            if is_plain_path(&path) && !path.contains('%') {
                let judged = judged_path(&path).into_owned();
                prop_assert_eq!(judged.as_str(), path.as_str());
            }
            if is_plain_path(&path) {
                // Decoding may change a segment's spelling, never how many there are.
                let judged = judged_path(&path);
                prop_assert_eq!(judged.matches('/').count(), path.matches('/').count(), "{:?} -> {:?}", path, judged);
            }
        }
    }
}

mod forwarded_for {
    use super::*;
    use crate::forwarded::TrustedProxies;
    use http::{HeaderMap, HeaderValue};
    use std::net::IpAddr;

    const PIECES: &[&str] = &[
        "10.0.0.1",
        "10.9.9.9",
        "127.0.0.1",
        "203.0.113.9",
        "198.51.100.7",
        "::1",
        "2001:db8::1",
        "[::1]",
        ",",
        ", ",
        " ",
        "unknown",
        "1.2.3.4:80",
        "::ffff:10.0.0.1",
        "for=",
        "\"",
    ];

    proptest! {
        #![proptest_config(ProptestConfig { cases: cases(2048), failure_persistence: None, ..ProptestConfig::default() })]

        /// The client is the peer unless the peer is trusted, and then an address named in
        /// `X-Forwarded-For` that is not itself a trusted proxy, or the peer.
        #[test]
        fn the_client_address_is_the_peer_or_an_untrusted_named_hop(
            values in prop::collection::vec(tricky(PIECES), 0..4),
            peer in prop::sample::select(vec!["127.0.0.1", "10.1.2.3", "203.0.113.50", "::1"]),
        ) {
            let trusted = TrustedProxies::new(vec![
                "127.0.0.0/8".parse().unwrap(),
                "10.0.0.0/8".parse().unwrap(),
            ]);
            let peer: IpAddr = peer.parse().unwrap();
            let mut headers = HeaderMap::new();
            for v in &values {
                if let Ok(v) = HeaderValue::from_str(v) {
                    headers.append("x-forwarded-for", v);
                }
            }
            let client = trusted.client(peer, &headers);
            if !trusted.trusts(peer) {
                prop_assert_eq!(client, peer);
            } else if client != peer {
                prop_assert!(!trusted.trusts(client), "{client} is a trusted proxy");
                let named = values.iter().any(|v| v.split(',').any(|s| s.trim().parse::<IpAddr>() == Ok(client)));
                prop_assert!(named, "{client} was not named in {values:?}");
            }
        }
    }
}

mod session_cookie {
    use super::*;
    use crate::config::SessionConfig;
    use crate::session::{cookie, Factors, NewSession, SessionService};
    use crate::store::{MemoryStore, Store};
    use base64::Engine as _;
    use http::{HeaderMap, HeaderValue};
    use std::sync::{Arc, OnceLock};
    use std::time::Duration;

    struct Fixture {
        _dir: tempfile::TempDir,
        sessions: SessionService,
        token: String,
    }

    fn fixture() -> &'static Fixture {
        static F: OnceLock<Fixture> = OnceLock::new();
        F.get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
            let cfg = SessionConfig {
                cookie_name: "s".into(),
                lifetime: Duration::from_secs(3600),
                cookie_domain: None,
                issuer: "portcullis".into(),
                flow_lifetime: Duration::from_secs(60),
                max_flows_per_client: crate::config::DEFAULT_MAX_FLOWS_PER_CLIENT,
            };
            let sessions = SessionService::new(&cfg, dir.path().join("keys.json"), store).unwrap();
            let (token, _) = sessions
                .issue(NewSession {
                    username: "alice".into(),
                    name: "Alice".into(),
                    email: "a@example.com".into(),
                    groups: vec!["staff".into()],
                    amr: vec!["password".into()],
                    factors: Factors::PASSWORD,
                    flows: vec!["f".into()],
                    lifetime_secs: 3600,
                })
                .unwrap();
            Fixture {
                _dir: dir,
                sessions,
                token,
            }
        })
    }

    const PIECES: &[&str] = &[
        "s=",
        "s",
        "=",
        ";",
        "; ",
        " ",
        "S=",
        "s2=",
        "eyJ",
        "eyJhbGciOiJub25lIn0",
        ".",
        "..",
        "\"",
        ",",
        "%3B",
        "e30",
        "AAAA",
        "-",
        "_",
    ];

    /// A token with one of its three parts replaced or edited.
    fn mutated() -> impl Strategy<Value = String> {
        (0usize..3, any::<prop::sample::Index>(), any::<u8>(), 0u8..4).prop_map(
            |(part, at, byte, how)| {
                let f = fixture();
                let mut parts: Vec<String> = f.token.split('.').map(str::to_string).collect();
                let p = &mut parts[part];
                let i = at.index(p.len().max(1)).min(p.len());
                match how {
                    0 => {
                        let c = char::from(
                            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
                                [usize::from(byte) % 64],
                        );
                        p.replace_range(i..(i + 1).min(p.len()), &c.to_string());
                    }
                    1 => p.truncate(i),
                    2 => p.insert(i, char::from(byte % 95 + 32)),
                    _ => {
                        let edited = base64::engine::general_purpose::URL_SAFE_NO_PAD
                            .decode(p.as_bytes())
                            .map(|mut bytes| {
                                let n = bytes.len().max(1);
                                if let Some(b) = bytes.get_mut(i % n) {
                                    *b ^= byte.max(1);
                                }
                                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
                            })
                            .unwrap_or_default();
                        *p = edited;
                    }
                }
                parts.join(".")
            },
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: cases(1024), failure_persistence: None, ..ProptestConfig::default() })]

        /// No cookie header made of arbitrary pieces carries a session.
        #[test]
        fn an_arbitrary_cookie_header_never_carries_a_session(value in tricky(PIECES)) {
            let f = fixture();
            let mut headers = HeaderMap::new();
            if let Ok(v) = HeaderValue::from_str(&value) {
                headers.insert(http::header::COOKIE, v);
            }
            if let Some(token) = cookie::find(&headers, "s") {
                prop_assert!(value.contains(token));
                prop_assert!(f.sessions.verify(token).is_err(), "{value:?}");
            }
        }

        /// An edited token is refused, unless the edit did not change what was signed (a
        /// non-canonical base64 spelling): then it carries exactly the original claims.
        #[test]
        fn an_edited_token_is_refused_or_means_the_same(token in mutated()) {
            let f = fixture();
            if let Ok(claims) = f.sessions.verify(&token) {
                let original = f.sessions.verify(&f.token).unwrap();
                prop_assert_eq!(claims.sid.clone(), original.sid.clone(), "{}", token);
                prop_assert_eq!(claims.sub.clone(), original.sub.clone());
                prop_assert_eq!(&claims.groups, &original.groups);
                prop_assert_eq!(claims.exp, original.exp);
            }
        }
    }
}

//! Fuzz-style properties of the sign-in API's input parsers: a form body is used only when
//! its (last) `csrf_token` is the execution's, and the token never reaches the stages; a JSON
//! body is used only when it is an object sent as `application/json`, and gives exactly its
//! string-like fields. Arbitrary bytes never panic either. More inputs:
//! `PORTCULLIS_FUZZ_CASES=100000 cargo test --lib portal::flow::props`.

use super::*;
use crate::props::{cases, tricky};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method};
use proptest::prelude::*;
use std::sync::OnceLock;

const CONFIG: &str = r#"
[server]
listen = ["127.0.0.1:0"]
[storage]
path = "/nonexistent/portcullis-props"
[[apps]]
name = "app"
hosts = ["app.example.test"]
upstream = "127.0.0.1:9"
flow = "login"
[[flows]]
slug = "login"
title = "Sign in"
designation = "authentication"
stages = ["identify", "password", "login"]
[stages.identify]
kind = "identification"
user_fields = ["username"]
[stages.password]
kind = "password"
[stages.login]
kind = "user_login"
"#;

/// One execution, started once (only its CSRF token matters here).
fn execution() -> &'static Execution {
    static EXEC: OnceLock<Execution> = OnceLock::new();
    EXEC.get_or_init(|| {
        let config = crate::config::Config::from_toml(
            CONFIG,
            std::path::Path::new("props.toml"),
            std::iter::empty(),
        )
        .unwrap();
        let world = crate::testing::TestWorld::for_config(&config);
        let engine = crate::flow::Engine::new(&config, world.services.clone());
        engine
            .start("login", "https://app.example.test/".into(), "192.0.2.1")
            .unwrap()
    })
}

fn request<'a>(headers: &'a HeaderMap, body: Vec<u8>) -> Request<'a> {
    Request {
        method: &Method::POST,
        path: "/.portcullis/api/flow/login",
        query: None,
        headers,
        body: Bytes::from(body),
        scheme: "https",
        authority: "auth.example.test",
        client: "192.0.2.1",
    }
}

const FORM_PIECES: &[&str] = &[
    "csrf_token",
    "csrf_token=",
    "CSRF_TOKEN=",
    "csrf%5Ftoken=",
    "uid=",
    "password=",
    "&",
    "=",
    "&&",
    "%",
    "%2",
    "%26",
    "%3D",
    "+",
    "%00",
    "\u{0}",
    "\u{ff}",
    "stage=",
    "TOKEN",
    "%TOKEN",
];

fn form_body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => tricky(FORM_PIECES).prop_map(|s| {
            let token = execution().csrf.expose();
            s.replace("TOKEN", token).into_bytes()
        }),
        1 => prop::collection::vec(any::<u8>(), 0..64),
    ]
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| Value::Number(n.into())),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(
                prop::sample::select(vec![
                    "uid",
                    "password",
                    "credential",
                    "code",
                    "stage",
                    "csrf_token",
                    "x"
                ])
                .prop_map(str::to_string),
                inner,
                0..4,
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(2048), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn a_form_is_used_only_with_the_executions_token_which_never_reaches_a_stage(body in form_body()) {
        let exec = execution();
        let headers = HeaderMap::new();
        let req = request(&headers, body.clone());
        if let Ok(input) = form_input(&req, exec) {
            prop_assert!(!input.contains_key("csrf_token"), "{body:?}");
            let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(&body)
                .map_err(|e| TestCaseError::fail(format!("accepted unparseable {body:?}: {e}")))?;
            let last = pairs.iter().rev().find(|(k, _)| k == "csrf_token").map(|(_, v)| v.as_str());
            prop_assert_eq!(last, Some(exec.csrf.expose()), "{:?}", body);
        }
    }

    #[test]
    fn a_json_body_gives_exactly_its_string_like_fields(
        value in json_value(),
        content_type in prop::sample::select(vec!["application/json", "Application/JSON; charset=utf-8", "text/plain", "application/x-www-form-urlencoded", ""]),
        garbage in prop::option::of(prop::collection::vec(any::<u8>(), 0..32)),
    ) {
        let mut headers = HeaderMap::new();
        if !content_type.is_empty() {
            headers.insert(http::header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        }
        let body = garbage.clone().unwrap_or_else(|| value.to_string().into_bytes());
        let req = request(&headers, body.clone());
        if let Ok(input) = json_input(&req) {
            prop_assert!(content_type.to_ascii_lowercase().starts_with("application/json"));
            let parsed: serde_json::Value = serde_json::from_slice(&body)
                .map_err(|e| TestCaseError::fail(format!("accepted non-JSON: {e}")))?;
            let Some(object) = parsed.as_object() else {
                return Err(TestCaseError::fail(format!("accepted a non-object: {parsed}")));
            };
            prop_assert_eq!(input.len(), object.len());
            for (k, v) in object {
                let got = input.get(k).map(String::as_str);
                let want = match v {
                    serde_json::Value::String(s) => s.clone(),
                    serde_json::Value::Object(_) if k == "credential" => v.to_string(),
                    other => other.to_string(),
                };
                prop_assert_eq!(got, Some(want.as_str()), "{}", k);
            }
        }
    }
}

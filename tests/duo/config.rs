//! The Duo stage's configuration as `check-config` sees it.

use crate::harness::*;
use crate::stand_in::SKEY;
use crate::support::toml;

fn check(extra: &str) -> CliOut {
    let dir = tempfile::tempdir().unwrap();
    let setup = Setup {
        extra_toml: extra.to_string(),
        ..Setup::default()
    };
    let text = config_toml(
        9,
        "127.0.0.1:9".parse().unwrap(),
        9,
        &dir.path().join("db"),
        &setup,
    );
    let path = dir.path().join("portcullis.toml");
    std::fs::write(&path, text).unwrap();
    check_config(&path)
}

#[test]
fn plain_http_is_accepted_for_a_loopback_stand_in_only() {
    let cases = [
        ("127.0.0.1:8443", true),
        ("[::1]:8443", true),
        ("api-1234abcd.duosecurity.com", false),
        ("192.168.1.10:80", false),
    ];
    for (host, ok) in cases {
        let out = check(&toml(host, SKEY));
        assert_eq!(out.ok(), ok, "{host}: {}", out.all());
        if !ok {
            assert!(
                out.all().contains("stages.duo.danger_plain_http"),
                "{}",
                out.all()
            );
        }
    }
}

#[test]
fn a_missing_secret_is_refused_and_names_the_variable() {
    let text = toml("127.0.0.1:8443", SKEY).replace(&format!("client_secret = \"{SKEY}\"\n"), "");
    let out = check(&text);
    assert!(!out.ok());
    assert!(
        out.all().contains("PORTCULLIS_STAGES__DUO__CLIENT_SECRET"),
        "{}",
        out.all()
    );
}

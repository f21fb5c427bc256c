//! SMS and second-factor settings that cannot work are refused by `check-config` and by
//! `serve` at start, naming the key path and the reason — instead of failing at the first
//! send, re-enrolling at every sign-in, or silently switching a limit off.

use crate::harness::*;
use crate::support::*;
use std::path::PathBuf;

/// The SMS tests' config around `conf` (Twilio at a closed port: nothing is sent here).
fn full_config(dir: &tempfile::TempDir, conf: &Conf) -> PathBuf {
    let db = dir.path().join("data").join("portcullis.db");
    let text = config_toml(
        reserved_port(),
        "127.0.0.1:9".parse().unwrap(),
        reserved_port(),
        &db,
        &Setup {
            extra_toml: conf.toml(),
            ..Setup::default()
        },
    );
    let p = dir.path().join("portcullis.toml");
    std::fs::write(&p, text).unwrap();
    p
}

fn base() -> Conf {
    Conf::new(twilio("http://127.0.0.1:9"))
}

/// A generic provider with exactly these extra keys (no auth unless given).
fn generic(extra: &[(&str, &str)]) -> Conf {
    let mut c = base();
    for k in ["account_sid", "auth_token", "api_base"] {
        c.sms.remove(k);
    }
    c = c
        .sms("provider", "\"generic\"")
        .sms("url", "\"http://127.0.0.1:9/send\"");
    for (k, v) in extra {
        c = c.sms(k, v);
    }
    c
}

/// `check-config` and `serve` both refuse `conf`, naming every string of `must_name`.
fn assert_refused(conf: &Conf, must_name: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let path = full_config(&dir, conf);
    let text = std::fs::read_to_string(&path).unwrap();
    let out = check_config(&path);
    assert!(
        !out.ok() && out.code.is_some(),
        "check-config accepted a bad config:\n{}\n--- config ---\n{text}",
        out.all()
    );
    assert!(!out.stdout.contains("config OK"), "stdout: {}", out.stdout);
    for needle in must_name {
        assert!(
            out.stderr.contains(needle),
            "check-config's error does not name {needle:?}:\n{}",
            out.all()
        );
    }
    let out = serve_must_refuse(&path);
    assert_eq!(out.code, Some(2), "serve on a bad config: {}", out.all());
    for needle in must_name {
        assert!(
            out.stderr.contains(needle),
            "serve's error does not name {needle:?}:\n{}",
            out.stderr
        );
    }
}

fn assert_accepted(conf: &Conf) {
    let dir = tempfile::tempdir().unwrap();
    let path = full_config(&dir, conf);
    let out = check_config(&path);
    assert!(
        out.ok() && out.stdout.contains("config OK"),
        "check-config refused a good config: {}\n--- config ---\n{}",
        out.all(),
        std::fs::read_to_string(&path).unwrap()
    );
}

async fn blocking(f: impl FnOnce() + Send + 'static) {
    tokio::task::spawn_blocking(f).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sms_test_config_and_its_sound_variants_are_accepted() {
    blocking(|| {
        assert_accepted(&base());
        assert_accepted(&generic(&[]));
        assert_accepted(&generic(&[("auth", "\"tok\"")]));
        assert_accepted(&generic(&[
            ("auth_type", "\"basic\""),
            ("auth", "\"user\""),
            ("auth_password", "\"pw\""),
        ]));
        // Validation that enrols an SMS device inline, and a one-second window.
        assert_accepted(
            &base()
                .validate("not_configured_action", "\"configure\"")
                .validate("configure_stage", "\"sms\"")
                .sms("limit_window", "\"1s\"")
                .sms("user_limit_window", "\"1s\""),
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn link_mode_validation_offering_sms_is_refused() {
    blocking(|| {
        assert_refused(
            &base().validate("mode", "\"link\""),
            &["stages.validate.device_classes[0]", "link", "sms"],
        );
        assert_refused(
            &base()
                .validate("mode", "\"link\"")
                .validate("device_classes", r#"["email", "sms"]"#),
            &["stages.validate.device_classes[1]"],
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn rate_windows_under_a_second_are_refused() {
    blocking(|| {
        assert_refused(
            &base().sms("limit_window", "\"500ms\""),
            &["stages.sms.limit_window", "one second"],
        );
        assert_refused(
            &base().sms("user_limit_window", "\"999ms\""),
            &["stages.sms.user_limit_window", "one second"],
        );
        assert_refused(
            &base().validate("user_limit_window", "\"10ms\""),
            &["stages.validate.user_limit_window", "one second"],
        );
        assert_refused(
            &base().sms("resend_cooldown", "\"300ms\""),
            &["stages.sms.resend_cooldown", "one second"],
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn integer_durations_beyond_u32_are_refused_not_truncated() {
    blocking(|| {
        // 2^32 + 1 minutes was cast to 1 minute.
        assert_refused(
            &base().sms("token_expiry", "4294967297"),
            &["stages.sms.token_expiry", "too large"],
        );
        assert_refused(
            &base().sms("timeout", "4294967298"),
            &["stages.sms.timeout", "too large"],
        );
        assert_refused(
            &base().validate("link_ttl", "4294967296"),
            &["stages.validate.link_ttl", "too large"],
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn generic_auth_settings_without_auth_or_of_unknown_type_are_refused() {
    blocking(|| {
        assert_refused(
            &generic(&[("auth_type", "\"basic\"")]),
            &["stages.sms.auth_type", "auth"],
        );
        assert_refused(
            &generic(&[("auth_password", "\"pw\"")]),
            &["stages.sms.auth_password", "auth"],
        );
        assert_refused(
            &generic(&[("auth_type", "\"digest\"")]),
            &["stages.sms.auth_type", "digest"],
        );
        assert_refused(
            &generic(&[("auth_type", "\"digest\""), ("auth", "\"tok\"")]),
            &["stages.sms.auth_type", "digest"],
        );
        // A password with a bearer token would never be sent.
        assert_refused(
            &generic(&[("auth", "\"tok\""), ("auth_password", "\"pw\"")]),
            &["stages.sms.auth_password", "basic"],
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn configure_stage_of_a_class_validation_does_not_accept_is_refused() {
    blocking(|| {
        assert_refused(
            &base()
                .validate("device_classes", r#"["email"]"#)
                .validate("not_configured_action", "\"configure\"")
                .validate("configure_stage", "\"sms\""),
            &["stages.validate.configure_stage", "sms"],
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn email_source_naming_a_field_no_prompt_asks_for_is_refused() {
    let email_stage = |key: &str| {
        format!(
            "\n[stages.mail]\nkind = \"authenticator_email\"\nemail_source = \"prompt:{key}\"\n"
        )
    };
    let mut bad = base();
    bad.extra = email_stage("nowhere");
    let mut good = base();
    // The SMS tests' prompt stage asks for `phone`.
    good.extra = email_stage("phone");
    blocking(move || {
        assert_refused(&bad, &["stages.mail.email_source", "nowhere"]);
        assert_accepted(&good);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_example_config_passes_check_config() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config/portcullis.toml");
    let out = tokio::task::spawn_blocking(move || check_config(&path))
        .await
        .unwrap();
    assert!(
        out.ok() && out.stdout.contains("config OK"),
        "{}",
        out.all()
    );
}

/// The example's SMS section with its TOML lines uncommented, with one of its two provider
/// blocks (`# Twilio:` or `# Any HTTP SMS gateway:`), the validation stage put into the
/// default flow.
fn example_with_sms_enabled(provider_block: &str) -> String {
    let text = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config/portcullis.toml"),
    )
    .unwrap();
    let start = text
        .find("# --- SMS as a second factor")
        .expect("the example has an SMS section");
    let rest = &text[start..];
    let section = &rest[..rest.find("\n\n").expect("the SMS section ends")];
    let toml_line = regex::Regex::new(r"^# (\[\[?[a-z_.]+\]\]?\s*$|[a-z_]+ = )").unwrap();
    let blocks = [
        "# Twilio:",
        "# Any HTTP SMS gateway:",
        "# Options for either provider:",
    ];
    assert!(blocks.iter().all(|b| section.contains(b)), "{section}");
    let mut enabled = String::new();
    let mut skipping = false;
    for line in section.lines() {
        if blocks.contains(&line) {
            skipping = blocks[..2].contains(&line) && line != provider_block;
        }
        if !skipping && toml_line.is_match(line) {
            enabled.push_str(&line[2..]);
            enabled.push('\n');
        }
    }
    let flow = "stages = [\"identify\", \"password\", \"login\"]";
    assert!(text.contains(flow), "the example's default flow changed");
    format!(
        "{}\n{enabled}",
        text.replacen(
            flow,
            "stages = [\"identify\", \"password\", \"mfa_sms\", \"login\"]",
            1
        )
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn the_example_sms_section_enrols_through_validation_and_passes_check_config() {
    for (block, provider) in [
        ("# Twilio:", "provider = \"twilio\""),
        ("# Any HTTP SMS gateway:", "provider = \"generic\""),
    ] {
        let text = example_with_sms_enabled(block);
        for needle in [
            "[stages.mfa_sms]",
            "not_configured_action = \"configure\"",
            "configure_stage = \"sms\"",
            "[stages.sms]",
            provider,
            "[stages.ask_phone]",
            "slug = \"add-phone\"",
        ] {
            assert!(text.contains(needle), "{needle:?} not enabled:\n{text}");
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("portcullis.toml");
        std::fs::write(&path, &text).unwrap();
        // The secrets come from the environment, as the example says.
        let out = tokio::task::spawn_blocking(move || {
            run_cli_blocking(
                &[
                    "check-config".into(),
                    "--config".into(),
                    path.display().to_string(),
                ],
                None,
                &[
                    ("PORTCULLIS_STAGES__SMS__AUTH_TOKEN", "twilio-token"),
                    ("PORTCULLIS_STAGES__SMS__AUTH", "gateway-token"),
                ],
            )
        })
        .await
        .unwrap();
        assert!(
            out.ok() && out.stdout.contains("config OK"),
            "{}\n--- config ---\n{text}",
            out.all()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_empty_token_or_username_for_the_generic_provider_is_refused() {
    blocking(|| {
        for (extra, must) in [
            (
                &[("auth_type", "\"bearer\""), ("auth", "\"\"")][..],
                &["stages.sms.auth", "bearer", "empty"][..],
            ),
            (&[("auth", "\"\"")][..], &["stages.sms.auth", "empty"][..]),
            (
                &[("auth", "\"   \"")][..],
                &["stages.sms.auth", "empty"][..],
            ),
            (
                &[
                    ("auth_type", "\"basic\""),
                    ("auth", "\"\""),
                    ("auth_password", "\"pw\""),
                ][..],
                &["stages.sms.auth", "basic", "empty"][..],
            ),
        ] {
            assert_refused(&generic(extra), must);
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_allowed_prefix_is_refused_with_the_list_it_is_in() {
    blocking(|| {
        for (list, index, bad) in [
            (r#"["+41", "0049"]"#, 1, "0049"),
            (r#"["41"]"#, 0, "41"),
            (r#"["+"]"#, 0, "+"),
            (r#"["+41 79"]"#, 0, "+41 79"),
            (r#"["+1234567890123456"]"#, 0, "+1234567890123456"),
        ] {
            let key = format!("stages.sms.allowed_prefixes[{index}]");
            assert_refused(
                &base().sms("allowed_prefixes", list),
                &[
                    key.as_str(),
                    bad,
                    "like \"+41\"",
                    &format!("allowed_prefixes is {list}"),
                ],
            );
        }
        assert_accepted(&base().sms("allowed_prefixes", r#"["+41", "+1", "+123456789012345"]"#));
    })
    .await;
}

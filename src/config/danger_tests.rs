//! Weak setups are refused naming their key, and each is allowed only through the explicit
//! `danger_*` key next to it.

use super::Config;
use std::path::Path;

/// A config of `body` alone.
fn load(body: &str) -> Result<Config, super::ConfigError> {
    Config::from_toml(body, Path::new("/etc/portcullis.toml"), std::iter::empty())
}

/// An email authenticator stage with its own (STARTTLS) connection and `keys`.
fn email_stage(keys: &str) -> String {
    format!("[stages.mail]\nkind = \"authenticator_email\"\nuse_global_settings = false\nhost = \"smtp.example.com\"\nuse_tls = true\n{keys}\n")
}

/// An SMS stage with `keys`.
fn sms_stage(keys: &str) -> String {
    format!("[stages.text]\nkind = \"authenticator_sms\"\nprovider = \"twilio\"\nfrom_number = \"+15550000000\"\naccount_sid = \"AC1\"\nauth_token = \"t\"\n{keys}\n")
}

/// A validation stage with `keys`.
fn validate_stage(keys: &str) -> String {
    format!(
        "[stages.check]\nkind = \"authenticator_validate\"\ndevice_classes = [\"email\"]\n{keys}\n"
    )
}

/// An email verification stage with `keys`.
fn verify_stage(keys: &str) -> String {
    format!("[stages.verify]\nkind = \"email\"\n{keys}\n")
}

/// Each weak setup: the config, the key its refusal names, and the danger key that allows it.
fn weak_setups() -> Vec<(String, &'static str, String)> {
    vec![
        (
            "[server]\ntrusted_proxies = [\"127.0.0.1\", \"0.0.0.0/0\"]\n".into(),
            "server.trusted_proxies[1]",
            "[server]\ndanger_trust_any_proxy = true\ntrusted_proxies = [\"127.0.0.1\", \"0.0.0.0/0\"]\n".into(),
        ),
        (
            "[server]\ntrusted_proxies = [\"::/0\"]\n".into(),
            "server.trusted_proxies[0]",
            "[server]\ntrusted_proxies = [\"::/0\"]\ndanger_trust_any_proxy = true\n".into(),
        ),
        // Halves of the internet, and the whole IPv4 internet as mapped IPv6 addresses.
        (
            "[server]\ntrusted_proxies = [\"0.0.0.0/1\", \"128.0.0.0/1\"]\n".into(),
            "server.trusted_proxies[0]",
            "[server]\ntrusted_proxies = [\"0.0.0.0/1\", \"128.0.0.0/1\"]\ndanger_trust_any_proxy = true\n".into(),
        ),
        (
            "[server]\ntrusted_proxies = [\"::ffff:0:0/96\"]\n".into(),
            "server.trusted_proxies[0]",
            "[server]\ntrusted_proxies = [\"::ffff:0:0/96\"]\ndanger_trust_any_proxy = true\n".into(),
        ),
        (
            "[server]\ntrusted_proxies = [\"2000::/3\"]\n".into(),
            "server.trusted_proxies[0]",
            "[server]\ntrusted_proxies = [\"2000::/3\"]\ndanger_trust_any_proxy = true\n".into(),
        ),
        (
            email_stage("token_expiry = \"11m\""),
            "stages.mail.token_expiry",
            email_stage("token_expiry = \"11m\"\ndanger_long_token_expiry = true"),
        ),
        // Minutes, as authentik writes them.
        (
            email_stage("token_expiry = 30"),
            "stages.mail.token_expiry",
            email_stage("token_expiry = 30\ndanger_long_token_expiry = true"),
        ),
        (
            sms_stage("token_expiry = \"1h\""),
            "stages.text.token_expiry",
            sms_stage("token_expiry = \"1h\"\ndanger_long_token_expiry = true"),
        ),
        (
            validate_stage("token_expiry = \"601s\""),
            "stages.check.token_expiry",
            validate_stage("token_expiry = \"601s\"\ndanger_long_token_expiry = true"),
        ),
        (
            verify_stage("token_expiry = 15"),
            "stages.verify.token_expiry",
            verify_stage("token_expiry = 15\ndanger_long_token_expiry = true"),
        ),
        (
            email_stage("max_allowed_attempts = 0"),
            "stages.mail.max_allowed_attempts",
            email_stage("max_allowed_attempts = 0\ndanger_unlimited_attempts = true"),
        ),
        (
            email_stage("max_challenges_sent = 0"),
            "stages.mail.max_challenges_sent",
            email_stage("max_challenges_sent = 0\ndanger_unlimited_attempts = true"),
        ),
        (
            sms_stage("max_allowed_attempts = 0"),
            "stages.text.max_allowed_attempts",
            sms_stage("max_allowed_attempts = 0\ndanger_unlimited_attempts = true"),
        ),
        (
            validate_stage("max_allowed_attempts = 0"),
            "stages.check.max_allowed_attempts",
            validate_stage("max_allowed_attempts = 0\ndanger_unlimited_attempts = true"),
        ),
        (
            "[passwords]\nmemory_kib = 19455\n".into(),
            "passwords.memory_kib",
            "[passwords]\nmemory_kib = 19455\ndanger_weak_hashing = true\n".into(),
        ),
        (
            "[passwords]\niterations = 1\n".into(),
            "passwords.iterations",
            "[passwords]\niterations = 1\ndanger_weak_hashing = true\n".into(),
        ),
        (
            "[passwords]\nmemory_kib = 64\niterations = 1\n".into(),
            "passwords.iterations",
            "[passwords]\nmemory_kib = 64\niterations = 1\ndanger_weak_hashing = true\n".into(),
        ),
        (
            "[email]\nusername = \"u\"\npassword = \"p\"\n".into(),
            "email.password",
            "[email]\nusername = \"u\"\npassword = \"p\"\ndanger_plaintext_password = true\n".into(),
        ),
        (
            "[stages.mail]\nkind = \"authenticator_email\"\nuse_global_settings = false\nhost = \"smtp.example.com\"\nusername = \"u\"\npassword = \"p\"\n".into(),
            "stages.mail.password",
            "[stages.mail]\nkind = \"authenticator_email\"\nuse_global_settings = false\nhost = \"smtp.example.com\"\nusername = \"u\"\npassword = \"p\"\ndanger_plaintext_password = true\n".into(),
        ),
        (
            verify_stage("use_global_settings = false\nusername = \"u\"\npassword = \"p\""),
            "stages.verify.password",
            verify_stage("use_global_settings = false\nusername = \"u\"\npassword = \"p\"\ndanger_plaintext_password = true"),
        ),
        (
            "[session]\ncookie_name = \"__Host-sso\"\ncookie_domain = \"example.com\"\n".into(),
            "session.cookie_domain",
            "[session]\ncookie_name = \"__Host-sso\"\ncookie_domain = \"example.com\"\ndanger_host_cookie_domain = true\n".into(),
        ),
        // Browsers match the prefix without regard to case.
        (
            "[session]\ncookie_name = \"__HOST-sso\"\ncookie_domain = \"example.com\"\n".into(),
            "session.cookie_domain",
            "[session]\ncookie_name = \"__HOST-sso\"\ncookie_domain = \"example.com\"\ndanger_host_cookie_domain = true\n".into(),
        ),
    ]
}

#[test]
fn each_weak_setup_is_refused_naming_its_key() {
    for (weak, key, _) in weak_setups() {
        let err = load(&weak).expect_err(&weak);
        assert_eq!(err.path(), Some(key), "{weak}: {err}");
        assert!(err.to_string().contains("danger_"), "{weak}: {err}");
    }
}

#[test]
fn each_weak_setup_is_allowed_by_its_danger_key() {
    for (_, key, allowed) in weak_setups() {
        if let Err(e) = load(&allowed) {
            panic!("{key}: {allowed}: {e}");
        }
    }
}

#[test]
fn a_danger_key_set_to_false_allows_nothing() {
    for (_, key, allowed) in weak_setups() {
        let off = allowed.replace("= true\n", "= false\n");
        if off.contains("danger_") && off != allowed {
            let err = load(&off).expect_err(&off);
            assert_eq!(err.path(), Some(key), "{off}: {err}");
        }
    }
}

#[test]
fn the_safe_neighbours_of_each_weak_setup_load() {
    for ok in [
        "[server]\ntrusted_proxies = [\"10.0.0.0/8\", \"fd00::/8\", \"::ffff:10.0.0.0/104\"]\n"
            .to_string(),
        email_stage("token_expiry = \"10m\"\nmax_allowed_attempts = 1\nmax_challenges_sent = 1"),
        email_stage("token_expiry = 10"),
        sms_stage("token_expiry = \"600s\""),
        "[passwords]\nmemory_kib = 19456\niterations = 2\n".into(),
        "[passwords]\nmemory_kib = 47104\niterations = 1\n".into(),
        "[passwords]\nmemory_kib = 7168\niterations = 5\n".into(),
        "[email]\nusername = \"u\"\npassword = \"p\"\nuse_tls = true\n".into(),
        "[email]\nusername = \"u\"\npassword = \"p\"\nuse_ssl = true\n".into(),
        // No password, nothing to leak: a local relay on port 25 stays fine.
        "[email]\nhost = \"localhost\"\n".into(),
        "[session]\ncookie_name = \"__Host-sso\"\n".into(),
        "[session]\ncookie_name = \"sso\"\ncookie_domain = \"example.com\"\n".into(),
    ] {
        if let Err(e) = load(&ok) {
            panic!("{ok}: {e}");
        }
    }
}

#[test]
fn a_code_lifetime_defaults_to_ten_minutes() {
    let c = load(&email_stage("")).expect("loads");
    let Some(super::StageConfig::AuthenticatorEmail(e)) = c.stages.get("mail") else {
        panic!("an email stage");
    };
    assert_eq!(e.otp.token_expiry, super::email::MAX_TOKEN_EXPIRY);
}

#[test]
fn the_shipped_configs_load() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    for name in ["portcullis.toml", "forward-auth.toml"] {
        if let Err(e) = Config::load(&dir.join(name)) {
            panic!("{name}: {e}");
        }
    }
}

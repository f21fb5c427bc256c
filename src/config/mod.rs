//! Loads the TOML file (plus `PORTCULLIS_<TABLE>__<KEY>` environment overrides), then turns the raw
//! structs into a validated [`Config`] where durations, regexes, addresses and header names are
//! already typed: nothing downstream parses configuration again.

mod duration;
mod email;
mod error;
mod raw;
mod server;
mod sms;
mod ui;
mod validate;

pub use duration::parse as parse_duration;
pub use email::OwnOtp;
pub use error::ConfigError;
pub use ui::{FooterLink, Logo, Rgb};

pub use crate::notify::{GenericAuth, SmsProvider, SmtpSecurity, SmtpSettings};
pub use crate::store::DeviceClass;
use http::HeaderName;
use regex::RegexSet;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Environment variables with this prefix override keys of the file: `PORTCULLIS_SESSION__LIFETIME`
/// sets `[session] lifetime`. Secrets can then stay out of the file.
pub const ENV_PREFIX: &str = "PORTCULLIS_";

/// The validated configuration of one gateway.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from, for messages.
    pub source: PathBuf,
    pub server: ServerConfig,
    pub storage: StorageConfig,
    pub session: SessionConfig,
    pub headers: IdentityHeaders,
    pub passwords: PasswordParams,
    pub admin_socket: PathBuf,
    pub ui: UiConfig,
    /// The global SMTP connection (`[email]`), used by stages with `use_global_settings`.
    pub email: SmtpSettings,
    pub apps: Vec<AppConfig>,
    pub flows: Vec<FlowConfig>,
    pub stages: BTreeMap<String, StageConfig>,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: Vec<SocketAddr>,
    pub threads: usize,
    /// HTTPS listeners (HTTP/2 and HTTP/1.1), using `certificates`.
    pub tls_listen: Vec<SocketAddr>,
    /// Certificates, chosen by SNI; the first is the default. Read and checked at load.
    pub certificates: Vec<Certificate>,
    /// Only requests from these networks may tell us the original request or client through
    /// `X-Forwarded-*` / `X-Original-*` headers.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// The host that serves sign-in for every app (single sign-on with `cookie_domain`).
    pub auth_host: Option<String>,
    /// Answer plain-HTTP requests with a redirect to HTTPS.
    pub redirect_http: bool,
    /// `Strict-Transport-Security` value sent on HTTPS responses.
    pub hsts: Option<String>,
    /// CA bundle for verifying HTTPS upstreams instead of the system roots.
    pub upstream_ca_file: Option<PathBuf>,
}

/// A certificate chain and key, already parsed, with the names it covers.
#[derive(Debug, Clone)]
pub struct Certificate {
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    pub chain: Vec<rustls::pki_types::CertificateDer<'static>>,
    /// DNS names from the certificate (subject alternative names), lower-case.
    pub names: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct StorageConfig {
    /// The sled database directory.
    pub path: PathBuf,
    /// The signing keys file (mode 0600), next to the database unless configured.
    pub keys_path: PathBuf,
}

#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub cookie_name: String,
    pub lifetime: Duration,
    /// When set, the session cookie is issued for this domain so every subdomain shares it.
    pub cookie_domain: Option<String>,
    pub issuer: String,
    /// How long an unfinished sign-in (a flow execution) stays valid.
    pub flow_lifetime: Duration,
}

/// The header names that carry identity upstream. All of them, plus `strip`, are removed from
/// every client request before anything else looks at it.
#[derive(Debug, Clone)]
pub struct IdentityHeaders {
    pub user: HeaderName,
    pub name: HeaderName,
    pub email: HeaderName,
    pub groups: HeaderName,
    pub strip: Vec<HeaderName>,
}

/// The header carrying the signed identity assertion to apps with `assertion = true`.
pub static ASSERTION_HEADER: HeaderName = HeaderName::from_static("x-portcullis-assertion");

impl IdentityHeaders {
    /// Every header name that must never pass from a client to an upstream.
    pub fn all(&self) -> impl Iterator<Item = &HeaderName> {
        [
            &self.user,
            &self.name,
            &self.email,
            &self.groups,
            &ASSERTION_HEADER,
        ]
        .into_iter()
        .chain(self.strip.iter())
    }
}

/// argon2id cost. Defaults are OWASP's minimum (19 MiB, 2 passes, 1 lane).
#[derive(Debug, Clone)]
pub struct PasswordParams {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
    /// Hashes run on a blocking pool capped at this many at once (default: the core count) so a
    /// storm of sign-ins cannot starve signed-in traffic.
    pub max_concurrent_hashes: usize,
}

#[derive(Debug, Clone)]
pub struct UiConfig {
    pub site_title: String,
    /// A folder whose templates replace the built-in ones of the same name.
    pub templates: Option<PathBuf>,
    /// Read once at load; served at `/.portcullis/logo`.
    pub logo: Option<Logo>,
    /// Buttons and links; `None` keeps the built-in blue.
    pub accent_color: Option<Rgb>,
    pub footer_links: Vec<FooterLink>,
}

#[derive(Debug, Clone)]
pub struct AppConfig {
    /// Position in [`Config::apps`], so per-app runtime state can be a plain vector.
    pub index: usize,
    pub name: String,
    /// Lower-case host names without port.
    pub hosts: Vec<String>,
    pub upstreams: Vec<Upstream>,
    pub flow: String,
    pub allowed_groups: Vec<String>,
    pub bypass: RegexSet,
    pub assertion: bool,
}

/// Where an app's traffic goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upstream {
    /// The demo page built into the gateway, which shows the identity headers it receives.
    Whoami,
    Http {
        addr: SocketAddr,
        tls: bool,
        /// The name sent as SNI and checked against the upstream's certificate.
        sni: String,
        /// The value for the upstream `Host` header when the upstream needs its own.
        host: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Designation {
    Authentication,
    Enrollment,
    StageConfiguration,
}

#[derive(Debug, Clone)]
pub struct FlowConfig {
    pub slug: String,
    pub title: String,
    pub designation: Designation,
    /// Stage names, in order, each a key of [`Config::stages`].
    pub stages: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserField {
    Username,
    Email,
}

/// A stage's validated options.
#[derive(Debug, Clone)]
pub enum StageConfig {
    Identification { user_fields: Vec<UserField> },
    Password { failed_attempts_before_cancel: u32 },
    UserLogin { session_duration: Duration },
    Deny { deny_message: String },
    AuthenticatorEmail(Box<EmailStageConfig>),
    AuthenticatorValidate(Box<ValidateStageConfig>),
    AuthenticatorSms(Box<SmsStageConfig>),
    Prompt(Box<PromptStageConfig>),
}

/// Limits against SMS pumping (toll fraud) and code guessing. Counted in the store, so they
/// hold across executions and restarts.
#[derive(Debug, Clone)]
pub struct SmsLimits {
    pub per_number: u32,
    pub per_user: u32,
    pub per_client: u32,
    pub window: Duration,
    pub global_per_hour: u32,
    pub resend_cooldown: Duration,
}

#[derive(Debug, Clone)]
pub struct SmsStageConfig {
    pub friendly_name: String,
    pub from_number: String,
    pub provider: SmsProvider,
    pub timeout: Duration,
    pub verify_only: bool,
    /// Twilio: the message text. Generic: the whole JSON payload.
    pub mapping: Option<String>,
    pub configure_flow: Option<String>,
    pub allowed_prefixes: Vec<String>,
    pub phone_pattern: Option<regex::Regex>,
    pub phone_error_message: String,
    pub limits: SmsLimits,
    pub otp: OtpPolicy,
}

/// A prompt stage's fields.
#[derive(Debug, Clone)]
pub struct PromptStageConfig {
    pub fields: Vec<PromptField>,
}

#[derive(Debug, Clone)]
pub struct PromptField {
    pub key: String,
    pub label: String,
    /// text, email, tel, password or hidden.
    pub kind: String,
    pub required: bool,
    pub placeholder: Option<String>,
    pub pattern: Option<regex::Regex>,
    pub pattern_message: String,
    pub value: Option<String>,
}

impl StageConfig {
    /// The stage kind as written in `kind = ...`.
    pub fn kind(&self) -> &'static str {
        match self {
            StageConfig::Identification { .. } => "identification",
            StageConfig::Password { .. } => "password",
            StageConfig::UserLogin { .. } => "user_login",
            StageConfig::Deny { .. } => "deny",
            StageConfig::AuthenticatorEmail(_) => "authenticator_email",
            StageConfig::AuthenticatorValidate(_) => "authenticator_validate",
            StageConfig::AuthenticatorSms(_) => "authenticator_sms",
            StageConfig::Prompt(_) => "prompt",
        }
    }
}

/// Whether the code travels as digits to type or as a link to open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtpMode {
    Code,
    Link,
}

/// One-time code policy (Curity's Email Authenticator options).
#[derive(Debug, Clone)]
pub struct OtpPolicy {
    pub mode: OtpMode,
    pub code_length: u32,
    pub token_expiry: Duration,
    /// Sends allowed per execution and per user within `user_limit_window`; 0 = unlimited.
    pub max_challenges_sent: u32,
    /// Wrong codes allowed per execution and per user within `user_limit_window`; 0 = unlimited.
    pub max_allowed_attempts: u32,
    pub allow_inactive_accounts: bool,
    pub activate_inactive_accounts: bool,
    pub link_ttl: Duration,
    pub continue_in_verify_window: bool,
    pub user_limit_window: Duration,
}

/// Where the setup stage gets the address from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EmailSource {
    /// The account's e-mail, or ask the user when it has none.
    Account,
    /// A field of an earlier prompt stage.
    Prompt(String),
}

#[derive(Debug, Clone)]
pub struct EmailStageConfig {
    /// A human name for the stage (logs, admin output).
    pub name: String,
    /// What users see for this kind of authenticator ("Email").
    pub friendly_name: String,
    /// Own SMTP settings, or `None` to use the global `[email]` ones.
    pub smtp: Option<SmtpSettings>,
    pub subject: String,
    pub configure_flow: Option<String>,
    pub email_source: EmailSource,
    pub otp: OtpPolicy,
}

/// What `authenticator_validate` does for a user without a device of the allowed classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotConfigured {
    Skip,
    Deny,
    Configure,
}

#[derive(Debug, Clone)]
pub struct ValidateStageConfig {
    pub device_classes: Vec<DeviceClass>,
    pub not_configured_action: NotConfigured,
    /// The setup stage run inline when `not_configured_action = "configure"`.
    pub configure_stage: Option<String>,
    pub otp: OtpPolicy,
    /// The code options set here; the rest follow the device's enrolling stage.
    pub own: OwnOtp,
}

impl Config {
    /// Reads, overlays the environment, and validates.
    ///
    /// # Errors
    /// [`ConfigError`] naming the key path and the reason for the first problem found.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: path.to_path_buf(),
            source,
        })?;
        Self::from_toml(&text, path, std::env::vars())
    }

    /// Validates config text as if read from `path`, with `env` as the environment.
    ///
    /// # Errors
    /// See [`Config::load`].
    pub fn from_toml(
        text: &str,
        path: &Path,
        env: impl Iterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let file: toml::Table = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            file: path.to_path_buf(),
            reason: e.to_string().trim().replace('\n', " "),
        })?;
        let overrides = env_overrides(env);
        // Overrides are typed by their text ("25" a number, "true" a boolean). When that type
        // is not what the key takes (a numeric password, a `+4179...` sender number), the
        // override is applied again as text; each at most once.
        let mut as_text = vec![false; overrides.len()];
        let raw: raw::RawConfig = loop {
            let mut value = file.clone();
            for (o, text) in overrides.iter().zip(&as_text) {
                let v = if *text {
                    toml::Value::String(o.text.clone())
                } else {
                    parse_env_value(&o.text)
                };
                set_path(&mut value, &o.parts, v);
            }
            match serde_path_to_error::deserialize(toml::Value::Table(value)) {
                Ok(raw) => break raw,
                Err(e) => {
                    let at = e.path().to_string();
                    let from_env = overrides.iter().position(|o| o.parts.join(".") == at);
                    if let Some(i) = from_env.filter(|i| !as_text[*i]) {
                        as_text[i] = true;
                        continue;
                    }
                    // Never echo a value that came from the environment: it may be a secret.
                    let reason = match from_env {
                        Some(i) => format!(
                            "the value of {} is not usable here: {}",
                            overrides[i].key,
                            without_values(&e.inner().to_string())
                        ),
                        None => e.inner().to_string(),
                    };
                    return Err(ConfigError::Invalid {
                        file: path.to_path_buf(),
                        path: at,
                        reason,
                    });
                }
            }
        };
        validate::validate(raw, path).map_err(|p| ConfigError::Invalid {
            file: path.to_path_buf(),
            path: p.path,
            reason: p.reason,
        })
    }

    /// The app serving `host` (lower-case, no port).
    pub fn app_for_host(&self, host: &str) -> Option<&AppConfig> {
        self.apps.iter().find(|a| a.hosts.iter().any(|h| h == host))
    }

    pub fn flow(&self, slug: &str) -> Option<&FlowConfig> {
        self.flows.iter().find(|f| f.slug == slug)
    }

    /// The longest a session can live: `[session] lifetime` or any `user_login`'s
    /// `session_duration`. A retired signing key must keep verifying that long.
    pub fn longest_session(&self) -> Duration {
        self.stages
            .values()
            .filter_map(|s| match s {
                StageConfig::UserLogin { session_duration } => Some(*session_duration),
                _ => None,
            })
            .fold(self.session.lifetime, Duration::max)
    }
}

/// One `PORTCULLIS_<TABLE>__<KEY>` variable: `PORTCULLIS_SESSION__LIFETIME=1h` sets
/// `[session] lifetime = "1h"`.
struct EnvOverride {
    key: String,
    parts: Vec<String>,
    text: String,
}

fn env_overrides(env: impl Iterator<Item = (String, String)>) -> Vec<EnvOverride> {
    let mut out: Vec<EnvOverride> = env
        .filter_map(|(key, text)| {
            let rest = key.strip_prefix(ENV_PREFIX)?;
            let parts: Vec<String> = rest.split("__").map(|p| p.to_ascii_lowercase()).collect();
            if parts.len() < 2 || parts.iter().any(|p| p.is_empty()) {
                return None;
            }
            Some(EnvOverride { key, parts, text })
        })
        .collect();
    // The environment's order is arbitrary; apply in a stable one.
    out.sort_by(|a, b| a.key.cmp(&b.key));
    out
}

/// A deserialisation message with the quoted values taken out (`invalid type: string "..."`).
fn without_values(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut quote: Option<char> = None;
    for c in message.chars() {
        match quote {
            Some(q) if c == q => {
                out.push('…');
                out.push(c);
                quote = None;
            }
            Some(_) => {}
            None if c == '"' || c == '`' => {
                out.push(c);
                quote = Some(c);
            }
            None => out.push(c),
        }
    }
    out
}

fn set_path(table: &mut toml::Table, parts: &[String], value: toml::Value) {
    let [first, rest @ ..] = parts else { return };
    if rest.is_empty() {
        table.insert(first.clone(), value);
        return;
    }
    let entry = table
        .entry(first.clone())
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    if let Some(inner) = entry.as_table_mut() {
        set_path(inner, rest, value);
    }
}

fn parse_env_value(val: &str) -> toml::Value {
    if let Ok(i) = val.parse::<i64>() {
        return toml::Value::Integer(i);
    }
    match val {
        "true" => toml::Value::Boolean(true),
        "false" => toml::Value::Boolean(false),
        _ => toml::Value::String(val.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example_with(env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let path = Path::new("config/portcullis.toml");
        let text = std::fs::read_to_string(path).expect("the example config");
        Config::from_toml(
            &text,
            path,
            env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        )
    }

    #[test]
    fn numeric_looking_secrets_from_the_environment_stay_text() {
        let c = example_with(&[
            ("PORTCULLIS_EMAIL__PASSWORD", "12345678"),
            ("PORTCULLIS_EMAIL__USERNAME", "true"),
            ("PORTCULLIS_EMAIL__PORT", "2525"),
        ])
        .expect("numeric-looking secrets are accepted");
        assert_eq!(c.email.port, 2525);
        assert_eq!(c.email.password.as_deref(), Some("12345678"));
        assert_eq!(c.email.username.as_deref(), Some("true"));
    }

    #[test]
    fn a_bad_value_from_the_environment_is_named_but_never_echoed() {
        let e = example_with(&[("PORTCULLIS_EMAIL__PORT", "secret-looking-99")])
            .expect_err("a port must be a number")
            .to_string();
        assert!(e.contains("email.port"), "{e}");
        assert!(e.contains("PORTCULLIS_EMAIL__PORT"), "{e}");
        assert!(!e.contains("secret-looking-99"), "{e}");
    }
}

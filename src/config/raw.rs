//! The config file as written: serde structs that mirror the TOML, nothing validated yet.
//!
//! Every table denies unknown keys so a typo is an error at start, not a silently ignored option.

use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub storage: RawStorage,
    #[serde(default)]
    pub session: RawSession,
    #[serde(default)]
    pub headers: RawHeaders,
    #[serde(default)]
    pub passwords: RawPasswords,
    #[serde(default)]
    pub admin: RawAdmin,
    #[serde(default)]
    pub ui: RawUi,
    /// The global SMTP connection (`use_global_settings = true` stages use it).
    #[serde(default)]
    pub email: Option<RawSmtp>,
    #[serde(default)]
    pub apps: Vec<RawApp>,
    #[serde(default)]
    pub flows: Vec<RawFlow>,
    #[serde(default)]
    pub stages: BTreeMap<String, RawStage>,
    /// `[policies.NAME]`: checks bound to flows and stages.
    #[serde(default)]
    pub policies: BTreeMap<String, super::policies::RawPolicy>,
    /// The policy for passwords an operator sets (`user add`, `user passwd`).
    #[serde(default)]
    pub password: RawPasswordPolicy,
    /// What the gateway logs (`[log]`).
    #[serde(default)]
    pub log: RawLog,
    /// Named networks (`[networks]`), for access rules and policies.
    #[serde(default)]
    pub networks: BTreeMap<String, Vec<String>>,
    /// The relying party of passkeys (`[webauthn]`).
    #[serde(default)]
    pub webauthn: Option<super::webauthn::RawWebauthn>,
    /// `[geoip]`: the country database behind `request.country`.
    pub geoip: Option<RawGeoIp>,
    /// `[settings]`: the user's settings page.
    #[serde(default)]
    pub settings: super::settings::RawSettings,
    /// `[metrics]`: the admin listener serving Prometheus metrics.
    #[serde(default)]
    pub metrics: super::ops::RawMetrics,
    /// `[regulation]`: bans after failed sign-in attempts.
    #[serde(default)]
    pub regulation: super::regulation::RawRegulation,
}

/// `[geoip]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGeoIp {
    /// A MaxMind database (`.mmdb`) with countries: GeoLite2-Country, GeoIP2-Country or City.
    pub database: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServer {
    #[serde(default = "default_listen")]
    pub listen: Vec<String>,
    /// Worker threads for the proxy; 0 means one per core.
    #[serde(default)]
    pub threads: usize,
    #[serde(default)]
    pub tls_listen: Vec<String>,
    #[serde(default)]
    pub certificates: Vec<RawCertificate>,
    pub trusted_proxies: Option<Vec<String>>,
    /// Allows a `trusted_proxies` entry that covers a large part of the internet (`0.0.0.0/0`).
    pub danger_trust_any_proxy: Option<bool>,
    /// Replaced by `auth_url`; read only to refuse it with a message saying so.
    pub auth_host: Option<String>,
    /// Where users reach the auth host: `https://auth.example.com[:port]`.
    pub auth_url: Option<String>,
    #[serde(default)]
    pub redirect_http: bool,
    pub hsts: Option<String>,
    pub upstream_ca_file: Option<String>,
    /// How long a graceful shutdown waits for requests in flight (`"30s"`).
    pub drain_timeout: Option<String>,
    /// Slow and heavy clients: the request head's total deadline (`"10s"`).
    pub header_timeout: Option<String>,
    /// The total deadline for a request body sent to the gateway's own endpoints.
    pub body_timeout: Option<String>,
    /// The largest request head (request line and headers), in bytes.
    pub max_header_bytes: Option<usize>,
    /// Connections one client address may hold open at once; 0 for no cap.
    pub max_connections_per_address: Option<u32>,
}

impl Default for RawServer {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            threads: 0,
            tls_listen: Vec::new(),
            certificates: Vec::new(),
            trusted_proxies: None,
            danger_trust_any_proxy: None,
            auth_host: None,
            auth_url: None,
            redirect_http: false,
            hsts: None,
            upstream_ca_file: None,
            drain_timeout: None,
            header_timeout: None,
            body_timeout: None,
            max_header_bytes: None,
            max_connections_per_address: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCertificate {
    pub cert: String,
    pub key: String,
}

fn default_listen() -> Vec<String> {
    vec!["127.0.0.1:9000".into()]
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStorage {
    #[serde(default = "default_storage_path")]
    pub path: String,
    /// The key device secrets (TOTP) are sealed under; next to the database by default.
    #[serde(default)]
    pub device_key_path: Option<String>,
    /// `sled` (the default) or `postgres`.
    #[serde(default)]
    pub backend: RawBackend,
    /// PostgreSQL: `postgres://USER@HOST:PORT/DATABASE`, never with a password.
    #[serde(default)]
    pub url: Option<String>,
    /// PostgreSQL: connections per gateway.
    #[serde(default)]
    pub pool_size: Option<u64>,
    /// PostgreSQL: the CA the server's certificate is verified against (turns TLS on).
    #[serde(default)]
    pub ca_file: Option<String>,
    /// How often expired records are purged (`"5m"`), on every backend.
    #[serde(default)]
    pub purge_interval: Option<String>,
    /// The value of `PORTCULLIS_DATABASE_PASSWORD`, set by `Config::from_toml`; never read
    /// from the file.
    #[serde(skip)]
    pub password: Option<String>,
}

/// `[storage] backend`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum RawBackend {
    #[default]
    Sled,
    Postgres,
}

impl Default for RawStorage {
    fn default() -> Self {
        Self {
            path: default_storage_path(),
            device_key_path: None,
            backend: RawBackend::Sled,
            url: None,
            pool_size: None,
            ca_file: None,
            purge_interval: None,
            password: None,
        }
    }
}

fn default_storage_path() -> String {
    "data/portcullis.db".into()
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSession {
    pub cookie_name: Option<String>,
    pub lifetime: Option<String>,
    pub cookie_domain: Option<String>,
    /// Allows a `__Host-` cookie name together with `cookie_domain` (browsers drop such a
    /// cookie).
    pub danger_host_cookie_domain: Option<bool>,
    pub issuer: Option<String>,
    pub flow_lifetime: Option<String>,
    pub keys_path: Option<String>,
    /// The most unfinished sign-ins one client address may have stored at once.
    pub max_flows_per_client: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHeaders {
    pub user: Option<String>,
    pub name: Option<String>,
    pub email: Option<String>,
    pub groups: Option<String>,
    /// Further header names that carry identity somewhere in the operator's stack; stripped from
    /// every client request like the four above.
    #[serde(default)]
    pub strip: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPasswords {
    pub memory_kib: Option<u32>,
    pub iterations: Option<u32>,
    pub parallelism: Option<u32>,
    pub max_concurrent_hashes: Option<usize>,
    /// Allows argon2 costs below OWASP's minimum.
    pub danger_weak_hashing: Option<bool>,
}

/// `[log]`: what the gateway logs besides errors and sign-ins.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLog {
    /// One access-log line per request.
    #[serde(default)]
    pub access: bool,
    /// `text` or `json`.
    #[serde(default)]
    pub format: super::LogFormat,
    /// The audit log's JSON-lines file, if any.
    pub audit_file: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAdmin {
    pub socket: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUi {
    pub site_title: Option<String>,
    pub templates: Option<String>,
    /// A PNG, JPEG, GIF, WebP or SVG file shown above every page.
    pub logo: Option<String>,
    /// `#rrggbb` for buttons and links.
    pub accent_color: Option<String>,
    #[serde(default)]
    pub footer_links: Vec<RawFooterLink>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFooterLink {
    pub label: String,
    pub url: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawApp {
    pub name: String,
    pub hosts: Vec<String>,
    pub upstream: RawUpstream,
    pub flow: String,
    #[serde(default)]
    pub allowed_groups: Vec<String>,
    #[serde(default)]
    pub bypass: Vec<String>,
    /// Add a short-lived signed identity assertion header for this app's upstream.
    #[serde(default)]
    pub assertion: bool,
    /// The scheme users reach the app with (`http` or `https`); see [`super::server`].
    pub scheme: Option<String>,
    /// The port users reach the app on; see [`super::server`].
    pub port: Option<u16>,
    /// Access rules (`[[apps.rules]]`), first match wins; see [`super::rules`].
    #[serde(default)]
    pub rules: Vec<super::rules::RawRule>,
    /// What applies when no rule matches.
    pub default_policy: Option<String>,
    /// Policies every request that needs a session must pass (as a flow's `policies`).
    #[serde(default)]
    pub policies: Vec<String>,
    pub policy_engine_mode: Option<String>,
    /// Inverts the app's binding (as a stage entry's `negate`).
    #[serde(default)]
    pub negate: bool,
}

/// One address or several (round-robin).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum RawUpstream {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFlow {
    pub slug: String,
    pub title: Option<String>,
    pub designation: String,
    pub stages: Vec<super::policies::RawStageEntry>,
    /// Who may start the flow.
    #[serde(default)]
    pub policies: Vec<String>,
    pub policy_engine_mode: Option<String>,
}

/// A stage definition; `kind` picks the variant so each kind only accepts its own options.
#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub(super) enum RawStage {
    Identification {
        #[serde(default)]
        user_fields: Option<Vec<String>>,
        #[serde(default)]
        webauthn_stage: Option<String>,
        #[serde(default)]
        enrollment_flow: Option<String>,
        /// authentik's `recovery_flow`: "Forgot password?" leads there.
        #[serde(default)]
        recovery_flow: Option<String>,
    },
    Password {
        #[serde(default)]
        failed_attempts_before_cancel: Option<u32>,
        /// authentik's `recovery_flow`: "Forgot password?" leads there.
        #[serde(default)]
        recovery_flow: Option<String>,
    },
    UserLogin {
        #[serde(default)]
        session_duration: Option<String>,
    },
    Deny {
        #[serde(default)]
        deny_message: Option<String>,
    },
    AuthenticatorEmail(Box<RawEmailStage>),
    AuthenticatorValidate(Box<RawValidateStage>),
    AuthenticatorSms(Box<RawSmsStage>),
    AuthenticatorDuo(Box<RawDuoStage>),
    Prompt(Box<RawPromptStage>),
    AuthenticatorTotp(RawTotpStage),
    AuthenticatorStatic(RawStaticStage),
    AuthenticatorWebauthn(Box<super::webauthn::RawWebauthnStage>),
    UserWrite(super::enrol::RawUserWriteStage),
    Invitation {
        #[serde(default)]
        continue_flow_without_invitation: Option<bool>,
    },
    UserDelete {},
    UserLogout {},
    Captcha(Box<super::captcha::RawCaptchaStage>),
    /// authentik's Email (verification) stage.
    Email(Box<RawVerifyStage>),
}

/// `kind = "email"`: authentik's Email stage options, plus the code options of the email
/// authenticator for `mode = "code"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawVerifyStage {
    pub use_global_settings: Option<bool>,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub use_tls: Option<bool>,
    pub use_ssl: Option<bool>,
    /// Allows a password sent over a connection with neither STARTTLS nor implicit TLS.
    pub danger_plaintext_password: Option<bool>,
    pub timeout: Option<toml::Value>,
    pub from: Option<String>,
    pub ca_file: Option<String>,
    pub subject: Option<String>,
    pub template: Option<String>,
    /// Minutes, or a duration string.
    pub token_expiry: Option<toml::Value>,
    pub activate_user_on_success: Option<bool>,
    pub mode: Option<String>,
    pub code_length: Option<u32>,
    pub max_challenges_sent: Option<u32>,
    pub max_allowed_attempts: Option<u32>,
    /// Allows a `token_expiry` over 10 minutes.
    pub danger_long_token_expiry: Option<bool>,
    pub user_limit_window: Option<String>,
    pub resend_cooldown: Option<String>,
}

/// authentik's TOTP setup stage.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTotpStage {
    pub friendly_name: Option<String>,
    pub configure_flow: Option<String>,
    pub digits: Option<u32>,
    pub period: Option<u64>,
    pub algorithm: Option<String>,
}

/// authentik's static (recovery code) setup stage.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStaticStage {
    pub friendly_name: Option<String>,
    pub configure_flow: Option<String>,
    pub token_count: Option<u32>,
    pub token_length: Option<u32>,
}

/// `kind = "authenticator_duo"`: Duo's Auth API (authentik's option names).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDuoStage {
    pub api_hostname: String,
    /// The integration key.
    pub client_id: String,
    /// The secret key; usually from `PORTCULLIS_STAGES__<NAME>__CLIENT_SECRET`.
    pub client_secret: Option<String>,
    pub friendly_name: Option<String>,
    pub configure_flow: Option<String>,
    /// Seconds, or a duration string.
    pub timeout: Option<toml::Value>,
    /// Reach `api_hostname` over plain HTTP: only for a loopback test stand-in.
    pub danger_plain_http: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSmsStage {
    pub provider: String,
    pub from_number: String,
    pub friendly_name: Option<String>,
    pub configure_flow: Option<String>,
    pub verify_only: Option<bool>,
    pub mapping: Option<String>,
    // Twilio
    pub account_sid: Option<String>,
    pub auth_token: Option<String>,
    pub api_base: Option<String>,
    // generic
    pub url: Option<String>,
    pub auth_type: Option<String>,
    pub auth: Option<String>,
    pub auth_password: Option<String>,
    /// Seconds, or a duration string.
    pub timeout: Option<toml::Value>,
    // which numbers
    pub allowed_prefixes: Option<Vec<String>>,
    pub phone_pattern: Option<String>,
    pub phone_error_message: Option<String>,
    // against pumping
    pub limit_per_number: Option<u32>,
    pub limit_per_user: Option<u32>,
    pub limit_per_client: Option<u32>,
    pub limit_window: Option<String>,
    pub global_limit_per_hour: Option<u32>,
    pub resend_cooldown: Option<String>,
    // code policy
    pub code_length: Option<u32>,
    pub token_expiry: Option<toml::Value>,
    pub max_challenges_sent: Option<u32>,
    pub max_allowed_attempts: Option<u32>,
    /// Allows `max_allowed_attempts = 0` or `max_challenges_sent = 0` (unlimited).
    pub danger_unlimited_attempts: Option<bool>,
    /// Allows a `token_expiry` over 10 minutes.
    pub danger_long_token_expiry: Option<bool>,
    pub user_limit_window: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPromptStage {
    pub fields: Vec<RawPromptField>,
    /// Policies the answers must pass (all of them); a failing one's message is shown as an
    /// error and the prompt asks again.
    #[serde(default)]
    pub validation_policies: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPromptField {
    pub key: String,
    pub label: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub required: Option<bool>,
    pub placeholder: Option<String>,
    pub pattern: Option<String>,
    pub pattern_message: Option<String>,
    /// The value of a hidden field.
    pub value: Option<String>,
}

/// SMTP connection settings, as in authentik's Email stage.
#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSmtp {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub use_tls: Option<bool>,
    pub use_ssl: Option<bool>,
    /// Allows a password sent over a connection with neither STARTTLS nor implicit TLS.
    pub danger_plaintext_password: Option<bool>,
    /// Seconds, or a duration string.
    pub timeout: Option<toml::Value>,
    pub from: Option<String>,
    pub ca_file: Option<String>,
}

/// One-time code / link options shared by the email stages (Curity's names). Both stage
/// structs repeat these fields (serde cannot combine `flatten` with `deny_unknown_fields`);
/// [`RawOtp::from`] gathers them.
#[derive(Debug, Default)]
pub(super) struct RawOtp {
    pub mode: Option<String>,
    pub code_length: Option<u32>,
    /// Minutes, or a duration string.
    pub token_expiry: Option<toml::Value>,
    pub max_challenges_sent: Option<u32>,
    pub max_allowed_attempts: Option<u32>,
    /// Allows `max_allowed_attempts = 0` or `max_challenges_sent = 0` (unlimited).
    pub danger_unlimited_attempts: Option<bool>,
    /// Allows a `token_expiry` over 10 minutes.
    pub danger_long_token_expiry: Option<bool>,
    pub allow_inactive_accounts: Option<bool>,
    pub activate_inactive_accounts: Option<bool>,
    /// Seconds, or a duration string.
    pub link_ttl: Option<toml::Value>,
    pub continue_in_verify_window: Option<bool>,
    /// The window per-user send and failure counts are kept over.
    pub user_limit_window: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEmailStage {
    /// Refused with a pointer to `friendly_name`: nothing reads it (a stage's name is its key).
    pub name: Option<String>,
    pub friendly_name: Option<String>,
    pub use_global_settings: Option<bool>,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub use_tls: Option<bool>,
    pub use_ssl: Option<bool>,
    /// Allows a password sent over a connection with neither STARTTLS nor implicit TLS.
    pub danger_plaintext_password: Option<bool>,
    pub timeout: Option<toml::Value>,
    pub from: Option<String>,
    pub ca_file: Option<String>,
    pub subject: Option<String>,
    pub configure_flow: Option<String>,
    pub email_source: Option<String>,
    /// Curity's `intermediate-attribute-name`: the address is this flow value.
    pub intermediate_attribute: Option<String>,
    /// Curity's registration mode (needs a `user_write` stage after it).
    pub registration: Option<bool>,
    pub mode: Option<String>,
    pub code_length: Option<u32>,
    pub token_expiry: Option<toml::Value>,
    pub max_challenges_sent: Option<u32>,
    pub max_allowed_attempts: Option<u32>,
    /// Allows `max_allowed_attempts = 0` or `max_challenges_sent = 0` (unlimited).
    pub danger_unlimited_attempts: Option<bool>,
    /// Allows a `token_expiry` over 10 minutes.
    pub danger_long_token_expiry: Option<bool>,
    pub allow_inactive_accounts: Option<bool>,
    pub activate_inactive_accounts: Option<bool>,
    pub link_ttl: Option<toml::Value>,
    pub continue_in_verify_window: Option<bool>,
    pub user_limit_window: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawValidateStage {
    pub device_classes: Option<Vec<String>>,
    pub not_configured_action: Option<String>,
    /// One setup stage (the older spelling of a one-entry `configuration_stages`).
    pub configure_stage: Option<String>,
    /// authentik's name: the setup stages a user without a device chooses from.
    pub configuration_stages: Option<Vec<String>>,
    /// authentik's `last_auth_threshold` format (`"hours=1;minutes=30"`) or a duration
    /// (`"90m"`); `"seconds=0"` (the default) never skips.
    #[serde(alias = "last_auth_threshold")]
    pub last_validation_threshold: Option<String>,
    /// `required`, `preferred` (default) or `discouraged`, for passkeys validated here.
    pub webauthn_user_verification: Option<String>,
    pub mode: Option<String>,
    pub code_length: Option<u32>,
    pub token_expiry: Option<toml::Value>,
    pub max_challenges_sent: Option<u32>,
    pub max_allowed_attempts: Option<u32>,
    /// Allows `max_allowed_attempts = 0` or `max_challenges_sent = 0` (unlimited).
    pub danger_unlimited_attempts: Option<bool>,
    /// Allows a `token_expiry` over 10 minutes.
    pub danger_long_token_expiry: Option<bool>,
    pub allow_inactive_accounts: Option<bool>,
    pub activate_inactive_accounts: Option<bool>,
    pub link_ttl: Option<toml::Value>,
    pub continue_in_verify_window: Option<bool>,
    pub user_limit_window: Option<String>,
}

macro_rules! otp_of {
    ($t:ty) => {
        impl $t {
            pub(crate) fn otp(&self) -> RawOtp {
                RawOtp {
                    mode: self.mode.clone(),
                    code_length: self.code_length,
                    token_expiry: self.token_expiry.clone(),
                    max_challenges_sent: self.max_challenges_sent,
                    max_allowed_attempts: self.max_allowed_attempts,
                    danger_unlimited_attempts: self.danger_unlimited_attempts,
                    danger_long_token_expiry: self.danger_long_token_expiry,
                    allow_inactive_accounts: self.allow_inactive_accounts,
                    activate_inactive_accounts: self.activate_inactive_accounts,
                    link_ttl: self.link_ttl.clone(),
                    continue_in_verify_window: self.continue_in_verify_window,
                    user_limit_window: self.user_limit_window.clone(),
                }
            }
        }
    };
}
otp_of!(RawEmailStage);
otp_of!(RawValidateStage);

/// `[password]`: what a new password must be. Lengths count Unicode characters (code points),
/// as NIST SP 800-63B counts them.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPasswordPolicy {
    pub min_length: Option<usize>,
    pub max_length: Option<usize>,
}

//! Loads the TOML file (plus `PORTCULLIS_<TABLE>__<KEY>` environment overrides), then turns the raw
//! structs into a validated [`Config`] where durations, regexes, addresses and header names are
//! already typed: nothing downstream parses configuration again.

mod captcha;
mod delivery;
mod duo;
mod duration;
mod email;
mod enrol;
mod env;
mod error;
mod ops;
mod path_index;
mod policies;
mod raw;
mod regulation;
mod rules;
mod server;
mod settings;
mod sms;
mod storage;
mod strong;
mod ui;
mod validate;
mod verify;
mod webauthn;

#[cfg(test)]
mod danger_tests;

pub use captcha::{CaptchaProvider, CaptchaStageConfig};
pub use duo::{DuoApi, DuoStageConfig};
pub use duration::parse as parse_duration;
pub use email::OwnOtp;
pub use enrol::{UserCreationMode, UserWriteStageConfig, PASSWORD_KEY};
pub use error::ConfigError;
pub use ops::{MetricsConfig, DEFAULT_DRAIN};
pub use path_index::{PathIndex, RuleSet, MAX_INDEXED};
pub use policies::StageBinding;
pub use regulation::{Regulation, NIST_MAX_CONSECUTIVE};
pub use rules::{
    AccessRules, DomainMatch, Networks, Policy, QueryMatch, QueryOp, Resources, Rule, RuleInput,
    Subject,
};
pub use settings::SettingsConfig;
pub use storage::{DATABASE_PASSWORD_ENV, DEFAULT_POOL_SIZE};
pub use strong::{TotpAlgorithm, TotpParams};
pub use ui::{FooterLink, Logo, Rgb};
pub use webauthn::{aaguid, Attachment, RelyingPartyConfig, ResidentKey, WebauthnStageConfig};

pub use delivery::{DeviceClass, GenericAuth, Mailbox, SmsProvider, SmtpSecurity, SmtpSettings};
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
    /// `[server]`: listeners, certificates, proxies, the auth host.
    pub server: ServerConfig,
    /// `[storage]`: the database and the signing keys file.
    pub storage: StorageConfig,
    /// `[session]`: the session cookie and lifetimes.
    pub session: SessionConfig,
    /// `[headers]`: the identity headers sent upstream.
    pub headers: IdentityHeaders,
    /// `[passwords]`: the argon2id cost.
    pub passwords: PasswordParams,
    /// What a password set by `user add` / `user passwd` must be (`[password]`).
    pub password_policy: PasswordPolicy,
    /// `[admin] socket`: where the admin commands reach the running gateway.
    pub admin_socket: PathBuf,
    /// `[ui]`: branding and templates.
    pub ui: UiConfig,
    /// The global SMTP connection (`[email]`), used by stages with `use_global_settings`.
    pub email: SmtpSettings,
    /// What the gateway logs (`[log]`).
    pub log: LogConfig,
    /// `[[apps]]`, in file order.
    pub apps: Vec<AppConfig>,
    /// `[[flows]]`, in file order.
    pub flows: Vec<FlowConfig>,
    /// `[stages.<name>]`, by name.
    pub stages: BTreeMap<String, StageConfig>,
    /// `[policies.<name>]`, compiled, by name.
    pub policies: BTreeMap<String, std::sync::Arc<crate::policy::Policy>>,
    /// `[networks]`: named sets of networks, for access rules and policies.
    pub networks: BTreeMap<String, Networks>,
    /// `[webauthn]`: the relying party of passkeys, when configured.
    pub webauthn: Option<std::sync::Arc<RelyingPartyConfig>>,
    /// `[geoip] database`, read once at load: what `request.country` is looked up in.
    pub geoip: Option<std::sync::Arc<crate::policy::GeoIp>>,
    /// `[settings]`: the user's settings page.
    pub settings: SettingsConfig,
    /// `[metrics]`: the admin listener serving Prometheus metrics, off by default.
    pub metrics: MetricsConfig,
    /// `[regulation]`: bans and slow-downs after failed sign-in attempts.
    pub regulation: Regulation,
}

/// `[server]`: where the gateway listens and how it is reached.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Plain-HTTP listeners.
    pub listen: Vec<SocketAddr>,
    /// Worker threads; 0 means one per core.
    pub threads: usize,
    /// HTTPS listeners (HTTP/2 and HTTP/1.1), using `certificates`.
    pub tls_listen: Vec<SocketAddr>,
    /// Certificates, chosen by SNI; the first is the default. Read and checked at load.
    pub certificates: Vec<Certificate>,
    /// Only requests from these networks may tell us the original request or client through
    /// `X-Forwarded-*` / `X-Original-*` headers.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// The host that serves sign-in for every app (single sign-on with `cookie_domain`):
    /// the host of `auth_url`, lower-case.
    pub auth_host: Option<String>,
    /// Where users reach the auth host (`[server] auth_url`). Every URL the gateway builds
    /// for it comes from here, never from a request.
    pub auth_url: Option<PublicOrigin>,
    /// Answer plain-HTTP requests with a redirect to HTTPS.
    pub redirect_http: bool,
    /// `Strict-Transport-Security` value sent on HTTPS responses, parsed at load.
    pub hsts: Option<http::HeaderValue>,
    /// CA bundle for verifying HTTPS upstreams instead of the system roots.
    pub upstream_ca_file: Option<PathBuf>,
    /// How long a graceful shutdown (SIGTERM) waits for requests in flight to finish.
    pub drain_timeout: std::time::Duration,
    /// Deadlines and caps for slow and heavy clients.
    pub clients: ClientLimits,
}

/// `[server]`'s limits on slow and heavy clients, enforced before a request reaches the proxy
/// (see `proxy::Intake`) and on the gateway's own endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientLimits {
    /// A request head (request line and headers) must arrive within this, counted from the
    /// connection's start or, on a kept-alive connection, from the request's first byte
    /// (`header_timeout`, default 10 s); `408` otherwise.
    pub header_timeout: std::time::Duration,
    /// A request body sent to the gateway's own endpoints (`/.portcullis/...`) must arrive
    /// within this (`body_timeout`, default 10 s); `408` otherwise.
    pub body_timeout: std::time::Duration,
    /// The largest request head, in bytes (`max_header_bytes`, default 32 KiB); `431` above.
    pub max_header_bytes: usize,
    /// Connections one client address (IPv6: one /64) may hold open at once
    /// (`max_connections_per_address`, default 256, 0 for no cap); `429` above. Connections
    /// from `trusted_proxies` are not capped.
    pub max_connections_per_address: u32,
}

impl Default for ClientLimits {
    fn default() -> Self {
        ClientLimits {
            header_timeout: std::time::Duration::from_secs(10),
            body_timeout: std::time::Duration::from_secs(10),
            max_header_bytes: 32 * 1024,
            max_connections_per_address: 256,
        }
    }
}

/// A certificate chain and key, already parsed, with the names it covers.
#[derive(Debug, Clone)]
pub struct Certificate {
    /// The certificate chain's file (PEM).
    pub cert_path: PathBuf,
    /// The private key's file (PEM).
    pub key_path: PathBuf,
    /// The chain, leaf first.
    pub chain: Vec<rustls::pki_types::CertificateDer<'static>>,
    /// DNS names from the certificate (subject alternative names), lower-case.
    pub names: Vec<String>,
}

/// `[log]`: what the gateway logs besides errors and sign-ins, and how.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogConfig {
    /// One structured line per request (`access = true`, or `PORTCULLIS_LOG__ACCESS=true`):
    /// app, user, status, outcome, duration and request id, under the tracing target
    /// `portcullis::access`. Never a cookie, token, code, password or query string.
    pub access: bool,
    /// How stderr lines are written: `text` (the default; every value escaped) or `json`
    /// (one JSON object per line).
    pub format: LogFormat,
    /// `[log] audit_file`: where the audit log of security events is also appended as JSON
    /// lines (created with mode 0600), or none.
    pub audit_file: Option<PathBuf>,
}

/// `[log] format`: the shape of the gateway's stderr lines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// `time LEVEL target: message field=value ...`, every value escaped.
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, the event's fields.
    Json,
}

/// `[storage]`: where state and keys live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageConfig {
    /// The sled database directory.
    pub path: PathBuf,
    /// The signing keys file (mode 0600), next to the database unless configured.
    pub keys_path: PathBuf,
    /// The device key file (mode 0600): device secrets (TOTP keys) are sealed under it, apart
    /// from the session keys. Next to the database unless `[storage] device_key_path` says.
    pub device_key_path: PathBuf,
    /// Where the state lives: sled at `path` (the default), or PostgreSQL.
    pub backend: StorageBackend,
    /// How often expired records (executions, sessions, revocations, tickets, counters,
    /// invitations) are purged from the store; on PostgreSQL one replica purges at a time.
    pub purge_interval: std::time::Duration,
}

/// `[storage] purge_interval` when unset.
pub const DEFAULT_PURGE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(300);

impl StorageConfig {
    /// The database as the command line names it: the sled directory, or `postgres <url>`
    /// (the URL holds no password: it comes from the environment).
    #[must_use]
    pub fn describe(&self) -> String {
        match &self.backend {
            StorageBackend::Sled => self.path.display().to_string(),
            StorageBackend::Postgres(pg) => format!("postgres {}", pg.url),
        }
    }

    /// Whether the database is there already: the sled directory exists. A PostgreSQL database
    /// is the server's, so it counts as there (connecting says when it is not); opening it
    /// creates only the schema.
    #[must_use]
    pub fn exists(&self) -> bool {
        match &self.backend {
            StorageBackend::Sled => self.path.exists(),
            StorageBackend::Postgres(_) => true,
        }
    }
}

/// `[storage] backend`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageBackend {
    /// The embedded sled database at `[storage] path`: one gateway.
    Sled,
    /// A PostgreSQL database several gateways share.
    Postgres(PostgresStorage),
}

/// `[storage] backend = "postgres"`: how to reach the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresStorage {
    /// `postgres://USER@HOST:PORT/DATABASE[?options]`, without a password or `sslmode`.
    pub url: String,
    /// From the environment variable [`DATABASE_PASSWORD_ENV`]; `None` when it is unset or
    /// empty (a database that needs none).
    pub password: Option<crate::secret::Secret<String>>,
    /// The most connections this gateway holds.
    pub pool_size: usize,
    /// TLS to the database, the server's certificate verified and its name checked.
    pub tls: bool,
    /// The CA the server's certificate must chain to; the web's public roots when unset.
    pub ca_file: Option<PathBuf>,
}

/// `[session]`: the session cookie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionConfig {
    /// The session cookie's name.
    pub cookie_name: String,
    /// How long a session lasts unless a `user_login` stage says otherwise.
    pub lifetime: Duration,
    /// When set, the session cookie is issued for this domain so every subdomain shares it.
    pub cookie_domain: Option<String>,
    /// The `iss` claim of session tokens.
    pub issuer: String,
    /// How long an unfinished sign-in (a flow execution) stays valid.
    pub flow_lifetime: Duration,
    /// The most unfinished sign-ins (stored executions) one client address may have at once
    /// (`max_flows_per_client`; IPv6 counted per /64). A page load stores none.
    pub max_flows_per_client: usize,
}

/// The default of `[session] max_flows_per_client`.
pub const DEFAULT_MAX_FLOWS_PER_CLIENT: usize = 200;

/// The header names that carry identity upstream. All of them, plus `strip`, are removed from
/// every client request before anything else looks at it.
#[derive(Debug, Clone)]
pub struct IdentityHeaders {
    /// Carries the username.
    pub user: HeaderName,
    /// Carries the display name.
    pub name: HeaderName,
    /// Carries the e-mail address.
    pub email: HeaderName,
    /// Carries the groups, comma-separated.
    pub groups: HeaderName,
    /// More headers removed from every client request.
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordParams {
    /// Memory per hash, in KiB.
    pub memory_kib: u32,
    /// Passes over the memory.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
    /// Hashes run on a blocking pool capped at this many at once (default: the core count) so a
    /// storm of sign-ins cannot starve signed-in traffic.
    pub max_concurrent_hashes: usize,
}

/// The rules a new password must follow (`[password]`), after NIST SP 800-63B: at least
/// `min_length` characters (default 8), at most `max_length` (default 64, never less), counted
/// in Unicode code points. Checked by [`PasswordPolicy::check`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordPolicy {
    /// The fewest characters allowed.
    pub min_length: usize,
    /// The most characters allowed.
    pub max_length: usize,
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        Self {
            min_length: 8,
            max_length: 64,
        }
    }
}

/// `[ui]`: what the gateway's pages look like.
#[derive(Debug, Clone)]
pub struct UiConfig {
    /// The name pages and messages show.
    pub site_title: String,
    /// A folder whose templates replace the built-in ones of the same name.
    pub templates: Option<PathBuf>,
    /// Read once at load; served at `/.portcullis/logo`.
    pub logo: Option<Logo>,
    /// Buttons and links; `None` keeps the built-in blue.
    pub accent_color: Option<Rgb>,
    /// Links at the foot of every page.
    pub footer_links: Vec<FooterLink>,
}

/// One `[[apps]]` entry: a protected application.
#[derive(Debug, Clone)]
pub struct AppConfig {
    /// Position in [`Config::apps`], so per-app runtime state can be a plain vector.
    pub index: usize,
    /// Its name (logs, assertion audience).
    pub name: String,
    /// Lower-case host names without port.
    pub hosts: Vec<String>,
    /// Where its traffic goes, round-robin.
    pub upstreams: Vec<Upstream>,
    /// The slug of the flow that signs users in for it.
    pub flow: String,
    /// When non-empty, only members of one of these groups get in.
    pub allowed_groups: Vec<String>,
    /// Paths that go upstream without a session (a shorthand for `bypass` rules placed
    /// before `rules`).
    pub bypass: RegexSet,
    /// `[[apps.rules]]` and `default_policy`.
    pub access: AccessRules,
    /// Whether it also gets a signed identity assertion.
    pub assertion: bool,
    /// `policies`, `policy_engine_mode`, `negate`: judged for every request that needs a
    /// session, once the session is otherwise let in; a failing binding answers 403 with the
    /// policies' messages.
    pub policies: crate::policy::Binding,
    /// Where users reach the app, one per entry of `hosts` (same order): the configured
    /// scheme and port with that host. The first is the app's public origin.
    pub origins: Vec<PublicOrigin>,
}

impl AppConfig {
    /// The app's public origin: its first host with the configured scheme and port.
    pub fn origin(&self) -> &PublicOrigin {
        // `hosts` is never empty (validated), and `origins` is built from it.
        &self.origins[0]
    }

    /// The public origin of one of the app's hosts (lower-case, no port).
    pub fn origin_for(&self, host: &str) -> Option<&PublicOrigin> {
        self.origins.iter().find(|o| o.host() == host)
    }
}

/// `http` or `https`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// Plain HTTP.
    Http,
    /// HTTP over TLS.
    Https,
}

impl Scheme {
    /// `http` or `https`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }

    /// 80 or 443.
    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
}

/// Where users reach a host, `scheme://host[:port]` (the port left out when it is the
/// scheme's default), built once from configuration.
///
/// # Security
/// Every absolute URL the gateway hands out (sign-in redirects, magic links, the return
/// address after sign-in, HTTPS redirects) starts with one of these, so no `Host` header,
/// port included, can point a link elsewhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicOrigin {
    scheme: Scheme,
    host: String,
    port: u16,
    text: String,
}

impl PublicOrigin {
    /// `host` must already be a lower-case DNS name or IPv4 address.
    pub fn new(scheme: Scheme, host: &str, port: u16) -> Self {
        let text = if port == scheme.default_port() {
            format!("{}://{host}", scheme.as_str())
        } else {
            format!("{}://{host}:{port}", scheme.as_str())
        };
        Self {
            scheme,
            host: host.to_string(),
            port,
            text,
        }
    }

    /// How it is reached.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// Lower-case, no port.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port users reach it on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `scheme://host[:port]`, no trailing slash.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl std::fmt::Display for PublicOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// Where an app's traffic goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upstream {
    /// The demo page built into the gateway, which shows the identity headers it receives.
    Whoami,
    /// An HTTP server.
    Http {
        /// Its address.
        addr: SocketAddr,
        /// Whether to speak TLS to it.
        tls: bool,
        /// The name sent as SNI and checked against the upstream's certificate.
        sni: String,
        /// The value for the upstream `Host` header when the upstream needs its own.
        host: String,
    },
}

/// What a flow is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Designation {
    /// Signing in.
    Authentication,
    /// Creating an account.
    Enrollment,
    /// Adding or changing a factor, by a signed-in user.
    StageConfiguration,
    /// Getting back into an account (a forgotten password), by a visitor without a session.
    Recovery,
    /// Deleting one's own account, by a signed-in user.
    Unenrollment,
}

impl Designation {
    /// As written in the config (`flow.designation` for policies).
    pub fn as_str(self) -> &'static str {
        match self {
            Designation::Authentication => "authentication",
            Designation::Enrollment => "enrollment",
            Designation::StageConfiguration => "stage_configuration",
            Designation::Recovery => "recovery",
            Designation::Unenrollment => "unenrollment",
        }
    }

    /// Every designation, in the order the config check lists them.
    pub const ALL: [Designation; 5] = [
        Designation::Authentication,
        Designation::Enrollment,
        Designation::Recovery,
        Designation::Unenrollment,
        Designation::StageConfiguration,
    ];

    /// The designation written `name` in the config; `None` for any other word.
    pub fn named(name: &str) -> Option<Designation> {
        Self::ALL.into_iter().find(|d| d.as_str() == name)
    }

    /// Who may start a flow of this designation (see [`Starter`]).
    pub fn starter(self) -> Starter {
        match self {
            Designation::Authentication => Starter::SignInOrStepUp,
            Designation::Enrollment | Designation::Recovery => Starter::Visitor,
            Designation::StageConfiguration | Designation::Unenrollment => Starter::SignedIn,
        }
    }
}

/// Who may start a flow, by its [`Designation`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Starter {
    /// Anyone without a session; a signed-in user only as a step-up (the session falls short
    /// of the flow, or is older than a rule allows).
    SignInOrStepUp,
    /// Only a visitor without a session (enrolment, recovery).
    Visitor,
    /// Only a signed-in user, who is the flow's pending user (stage configuration,
    /// unenrolment).
    SignedIn,
}

/// One `[[flows]]` entry: stages in order.
#[derive(Debug, Clone)]
pub struct FlowConfig {
    /// Its name in URLs (`/.portcullis/flow/<slug>`).
    pub slug: String,
    /// What its pages are titled.
    pub title: String,
    /// What it is for.
    pub designation: Designation,
    /// Stage names, in order, each a key of [`Config::stages`].
    pub stages: Vec<String>,
    /// Who may start the flow (`policies`, `policy_engine_mode`).
    pub policies: crate::policy::Binding,
    /// Per stage (parallel to `stages`), the policies that decide whether it runs.
    pub bindings: Vec<StageBinding>,
}

/// What users may identify with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserField {
    /// The username.
    Username,
    /// The e-mail address.
    Email,
}

/// A stage's validated options.
#[derive(Debug, Clone)]
pub enum StageConfig {
    /// Asks who is signing in.
    Identification {
        /// What users may identify with.
        user_fields: Vec<UserField>,
        /// `webauthn_stage`: offer "Sign in with a passkey" and passkey autofill.
        passkeys: Option<PasskeyLogin>,
        /// `enrollment_flow`: the enrollment flow (slug) a "Sign up" link starts.
        enrollment_flow: Option<String>,
        /// `recovery_flow`: the slug of a recovery flow, offered as "Forgot password?".
        recovery_flow: Option<String>,
    },
    /// Checks the password.
    Password {
        /// Wrong passwords before the sign-in is cancelled.
        failed_attempts_before_cancel: u32,
        /// `recovery_flow`: the slug of a recovery flow, offered as "Forgot password?".
        recovery_flow: Option<String>,
    },
    /// Issues the session.
    UserLogin {
        /// How long it lasts.
        session_duration: Duration,
    },
    /// Ends the flow with a message.
    Deny {
        /// What users see.
        deny_message: String,
    },
    /// Enrols an e-mail address.
    AuthenticatorEmail(Box<EmailStageConfig>),
    /// Asks for a code from an enrolled device.
    AuthenticatorValidate(Box<ValidateStageConfig>),
    /// Enrols a phone.
    AuthenticatorSms(Box<SmsStageConfig>),
    /// Enrols a Duo Mobile device, or links an account Duo already knows.
    AuthenticatorDuo(Box<DuoStageConfig>),
    /// Asks for fields.
    Prompt(Box<PromptStageConfig>),
    /// Enrols an authenticator app (TOTP).
    AuthenticatorTotp(TotpStageConfig),
    /// Issues a set of recovery codes.
    AuthenticatorStatic(StaticStageConfig),
    /// Enrols a passkey or security key.
    AuthenticatorWebauthn(Box<WebauthnStageConfig>),
    /// Writes what the flow gathered to the pending user, creating one when needed.
    UserWrite(Box<UserWriteStageConfig>),
    /// Accepts an invitation (`?itoken=` on the flow's link, or a prompt's `token`).
    Invitation {
        /// Without a valid invitation the flow goes on (without its data) instead of ending.
        continue_flow_without_invitation: bool,
    },
    /// Deletes the signed-in user's account (only in `unenrollment` flows).
    UserDelete,
    /// Ends the current session.
    UserLogout,
    /// Verifies the pending user's address by a link or code sent there (`kind = "email"`).
    Email(Box<EmailVerifyConfig>),
    /// A captcha solved in the browser and verified with its provider.
    Captcha(Box<CaptchaStageConfig>),
}

/// An `authenticator_totp` stage: enrols an authenticator app by one valid code.
#[derive(Debug, Clone)]
pub struct TotpStageConfig {
    /// What users see for this kind of authenticator ("Authenticator app").
    pub friendly_name: String,
    /// The flow (by slug) where users add or change this factor.
    pub configure_flow: Option<String>,
    /// How the device's codes are made: `digits` 6 or 8, `period` 30 s, `algorithm`.
    pub params: TotpParams,
}

/// An `authenticator_static` stage: issues `token_count` recovery codes of `token_length`.
#[derive(Debug, Clone)]
pub struct StaticStageConfig {
    /// What users see for this kind of authenticator ("Recovery codes").
    pub friendly_name: String,
    /// The flow (by slug) where users add or change this factor.
    pub configure_flow: Option<String>,
    /// Codes per set (default 10).
    pub token_count: u32,
    /// Characters per code (default 12).
    pub token_length: u32,
}

/// An identification stage's passkey sign-in (`webauthn_stage`): a discoverable-credential
/// ceremony that names the user and proves the factor at once.
#[derive(Debug, Clone)]
pub struct PasskeyLogin {
    /// `[webauthn]`.
    pub rp: std::sync::Arc<RelyingPartyConfig>,
    /// The validation stage named by `webauthn_stage` (it accepts `webauthn`).
    pub stage: String,
}

/// Limits against SMS pumping (toll fraud) and code guessing. Counted in the store, so they
/// hold across executions and restarts.
#[derive(Debug, Clone)]
pub struct SmsLimits {
    /// Sends to one number per `window`.
    pub per_number: u32,
    /// Sends for one user per `window`.
    pub per_user: u32,
    /// Sends from one client address per `window`.
    pub per_client: u32,
    /// The window the three counts above are kept over.
    pub window: Duration,
    /// Sends per hour across everyone.
    pub global_per_hour: u32,
    /// The least time between two sends to one number.
    pub resend_cooldown: Duration,
}

/// An `authenticator_sms` stage: enrols a phone by a code sent to it.
#[derive(Debug, Clone)]
pub struct SmsStageConfig {
    /// What users see for this kind of authenticator ("SMS").
    pub friendly_name: String,
    /// The sender number or name.
    pub from_number: String,
    /// The HTTP API that delivers.
    pub provider: SmsProvider,
    /// How long the provider may take.
    pub timeout: Duration,
    /// Keep only the number's hash: the device proves a number once and is never sent to.
    pub verify_only: bool,
    /// Twilio: the message text. Generic: the whole JSON payload.
    pub mapping: Option<String>,
    /// The flow (by slug) where users add or change this factor.
    pub configure_flow: Option<String>,
    /// Numbers must start with one of these (none: any).
    pub allowed_prefixes: Vec<String>,
    /// Numbers must match this (the whole normalised number).
    pub phone_pattern: Option<regex::Regex>,
    /// What users see for a number that is refused.
    pub phone_error_message: String,
    /// Limits against SMS pumping.
    pub limits: SmsLimits,
    /// The one-time code policy.
    pub otp: OtpPolicy,
}

/// A prompt stage's fields.
#[derive(Debug, Clone)]
pub struct PromptStageConfig {
    /// The fields, in order.
    pub fields: Vec<PromptField>,
    /// Policies the answers must pass (`validation_policies`, all of them), judged over the
    /// execution with the answers added to `flow.prompt_data`.
    pub validation_policies: crate::policy::Binding,
}

/// One field of a prompt stage.
#[derive(Debug, Clone)]
pub struct PromptField {
    /// The name later stages read it by.
    pub key: String,
    /// What users see beside it.
    pub label: String,
    /// text, email, tel, password or hidden.
    pub kind: String,
    /// Whether an empty answer is refused.
    pub required: bool,
    /// The hint shown in the empty field.
    pub placeholder: Option<String>,
    /// The whole answer must match this.
    pub pattern: Option<regex::Regex>,
    /// What users see when it does not.
    pub pattern_message: String,
    /// A preset value (hidden fields).
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
            StageConfig::AuthenticatorDuo(_) => "authenticator_duo",
            StageConfig::Prompt(_) => "prompt",
            StageConfig::AuthenticatorTotp(_) => "authenticator_totp",
            StageConfig::AuthenticatorStatic(_) => "authenticator_static",
            StageConfig::AuthenticatorWebauthn(_) => "authenticator_webauthn",
            StageConfig::UserWrite(_) => "user_write",
            StageConfig::Invitation { .. } => "invitation",
            StageConfig::UserDelete => "user_delete",
            StageConfig::UserLogout => "user_logout",
            StageConfig::Email(_) => "email",
            StageConfig::Captcha(_) => "captcha",
        }
    }

    /// A setup stage's `friendly_name` ("Authenticator app"); `None` for any other kind.
    pub fn friendly_name(&self) -> Option<&str> {
        match self {
            StageConfig::AuthenticatorEmail(c) => Some(&c.friendly_name),
            StageConfig::AuthenticatorSms(c) => Some(&c.friendly_name),
            StageConfig::AuthenticatorWebauthn(c) => Some(&c.friendly_name),
            StageConfig::AuthenticatorDuo(c) => Some(&c.friendly_name),
            StageConfig::AuthenticatorTotp(c) => Some(&c.friendly_name),
            StageConfig::AuthenticatorStatic(c) => Some(&c.friendly_name),
            _ => None,
        }
    }

    /// A setup stage's `configure_flow`: where a signed-in user adds or changes this factor
    /// (their settings page links it); `None` when unset or for any other kind.
    pub fn configure_flow(&self) -> Option<&str> {
        match self {
            StageConfig::AuthenticatorEmail(c) => c.configure_flow.as_deref(),
            StageConfig::AuthenticatorSms(c) => c.configure_flow.as_deref(),
            StageConfig::AuthenticatorWebauthn(c) => c.configure_flow.as_deref(),
            StageConfig::AuthenticatorDuo(c) => c.configure_flow.as_deref(),
            StageConfig::AuthenticatorTotp(c) => c.configure_flow.as_deref(),
            StageConfig::AuthenticatorStatic(c) => c.configure_flow.as_deref(),
            _ => None,
        }
    }

    /// The class of device this stage sets up, for the setup stages validation may run inline
    /// (`configuration_stages`); `None` for every other kind.
    pub fn enrols(&self) -> Option<DeviceClass> {
        match self {
            StageConfig::AuthenticatorEmail(_) => Some(DeviceClass::Email),
            StageConfig::AuthenticatorSms(_) => Some(DeviceClass::Sms),
            StageConfig::AuthenticatorWebauthn(_) => Some(DeviceClass::Webauthn),
            StageConfig::AuthenticatorDuo(_) => Some(DeviceClass::Duo),
            StageConfig::AuthenticatorTotp(_) => Some(DeviceClass::Totp),
            StageConfig::AuthenticatorStatic(_) => Some(DeviceClass::Static),
            StageConfig::Identification { .. }
            | StageConfig::Password { .. }
            | StageConfig::UserLogin { .. }
            | StageConfig::Deny { .. }
            | StageConfig::AuthenticatorValidate(_)
            | StageConfig::Prompt(_)
            | StageConfig::UserWrite(_)
            | StageConfig::Invitation { .. } => None,
            StageConfig::UserDelete | StageConfig::UserLogout | StageConfig::Email(_) => None,
            StageConfig::Captcha(_) => None,
        }
    }
}

/// Whether the code travels as digits to type or as a link to open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtpMode {
    /// Digits to type.
    Code,
    /// A link to open.
    Link,
}

/// One-time code policy (Curity's Email Authenticator options).
#[derive(Debug, Clone)]
pub struct OtpPolicy {
    /// A code to type or a link to open.
    pub mode: OtpMode,
    /// Digits in a code.
    pub code_length: u32,
    /// How long a code is valid.
    pub token_expiry: Duration,
    /// Sends allowed per execution and per user within `user_limit_window`; 0 = unlimited.
    pub max_challenges_sent: u32,
    /// Wrong codes allowed per execution and per user within `user_limit_window`; 0 = unlimited.
    pub max_allowed_attempts: u32,
    /// Send to disabled accounts too.
    pub allow_inactive_accounts: bool,
    /// Activate a disabled account when its code is used.
    pub activate_inactive_accounts: bool,
    /// How long a link works.
    pub link_ttl: Duration,
    /// Continue the sign-in in the tab that opened the link (same browser only).
    pub continue_in_verify_window: bool,
    /// The window per-user send and failure counts are kept over.
    pub user_limit_window: Duration,
}

/// Where the setup stage gets the address from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EmailSource {
    /// The account's e-mail, or ask the user when it has none.
    Account,
    /// A field of an earlier prompt stage.
    Prompt(String),
    /// Curity's `intermediate_attribute`: a value an earlier stage put in the flow (a prompt
    /// field, an invitation's data). Never the first factor: the config check refuses a flow
    /// where no stage proving who the user is comes before it.
    Intermediate(String),
}

/// An `email` stage (authentik's Email stage): verifies the pending user's address with a
/// link or a code, delivered in the background by the persisted outbox.
#[derive(Debug, Clone)]
pub struct EmailVerifyConfig {
    /// Own SMTP settings, or `None` to use the global `[email]` ones.
    pub smtp: Option<SmtpSettings>,
    /// The mail's subject.
    pub subject: String,
    /// The message template's base name: `<template>.txt` and `<template>.html`.
    pub template: String,
    /// Mark the pending user active once the address is proved.
    pub activate_user_on_success: bool,
    /// The least time between two sends in one execution.
    pub resend_cooldown: Duration,
    /// The link or code policy; `token_expiry` is the lifetime of both.
    pub otp: OtpPolicy,
}

/// An `authenticator_email` stage: enrols an address by a code or link sent to it.
#[derive(Debug, Clone)]
pub struct EmailStageConfig {
    /// What users see for this kind of authenticator ("Email").
    pub friendly_name: String,
    /// Own SMTP settings, or `None` to use the global `[email]` ones.
    pub smtp: Option<SmtpSettings>,
    /// The mail's subject.
    pub subject: String,
    /// The flow (by slug) where users add or change this factor.
    pub configure_flow: Option<String>,
    /// Where the address comes from.
    pub email_source: EmailSource,
    /// Curity's registration mode: an unknown user proves the address they identified with,
    /// and a later `user_write` stage creates the account with it.
    pub registration: bool,
    /// The one-time code policy.
    pub otp: OtpPolicy,
}

/// What `authenticator_validate` does for a user without a device of the allowed classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotConfigured {
    /// Let them through.
    Skip,
    /// End the sign-in.
    Deny,
    /// Run the setup stage inline.
    Configure,
}

/// WebAuthn user verification (PIN or biometric on the authenticator), as the WebAuthn
/// specification names its levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UserVerification {
    /// The authenticator must verify the user; one that cannot is refused.
    Required,
    /// Verify when the authenticator can.
    #[default]
    Preferred,
    /// Do not ask for verification.
    Discouraged,
}

impl UserVerification {
    /// The name as written in config and in WebAuthn options.
    pub fn as_str(self) -> &'static str {
        match self {
            UserVerification::Required => "required",
            UserVerification::Preferred => "preferred",
            UserVerification::Discouraged => "discouraged",
        }
    }
}

/// An `authenticator_validate` stage: asks for proof from one of the user's devices.
#[derive(Debug, Clone)]
pub struct ValidateStageConfig {
    /// The device kinds that count.
    pub device_classes: Vec<DeviceClass>,
    /// What to do for a user without one.
    pub not_configured_action: NotConfigured,
    /// The setup stages offered (run inline) when `not_configured_action = "configure"`;
    /// with more than one the user chooses. Each enrols a class of `device_classes`.
    pub configuration_stages: Vec<String>,
    /// Skip the stage when a device of an accepted class was validated this recently (zero:
    /// never skip). Only after another stage of the execution proved who the user is.
    pub last_validation_threshold: Duration,
    /// User verification asked of passkeys validated here.
    pub webauthn_user_verification: UserVerification,
    /// The one-time code policy.
    pub otp: OtpPolicy,
    /// The code options set here; the rest follow the device's enrolling stage.
    pub own: OwnOtp,
    /// `[webauthn]`, when `device_classes` has `webauthn`.
    pub webauthn: Option<std::sync::Arc<RelyingPartyConfig>>,
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
        let env: Vec<(String, String)> = env.collect();
        let password = env
            .iter()
            .find(|(k, _)| k == storage::DATABASE_PASSWORD_ENV)
            .map(|(_, v)| v.clone());
        let mut overrides = env::overrides(env.into_iter());
        let mut raw: raw::RawConfig = env::deserialize(&file, &mut overrides, path)?;
        raw.storage.password = password;
        validate::validate(raw, path).map_err(|p| env::problem(p, &overrides, path))
    }

    /// The app serving `host` (lower-case, no port).
    pub fn app_for_host(&self, host: &str) -> Option<&AppConfig> {
        self.apps.iter().find(|a| a.hosts.iter().any(|h| h == host))
    }

    /// The flow with this slug.
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
    fn the_example_demo_is_reached_at_localhost_9000_with_nothing_added() {
        let c = example_with(&[]).expect("the example config loads");
        assert_eq!(c.apps[0].origin().as_str(), "http://localhost:9000");
        assert_eq!(c.apps[0].origins[1].as_str(), "http://127.0.0.1:9000");
        assert!(c.server.auth_url.is_none());
    }

    #[test]
    fn app_origins_default_to_auth_url_else_the_listener() {
        // (The HTTPS-listener default is tested end to end: it needs a certificate file.)
        let cases = [
            ("", "", "http://localhost:9000"),
            (
                "auth_url = \"https://auth.example.com\"",
                "",
                "https://localhost",
            ),
            (
                "auth_url = \"http://auth.example.com:8080/\"",
                "",
                "http://localhost:8080",
            ),
            (
                "auth_url = \"https://auth.example.com\"",
                "scheme = \"http\"",
                "http://localhost",
            ),
            (
                "auth_url = \"https://auth.example.com\"",
                "port = 8443",
                "https://localhost:8443",
            ),
            ("", "scheme = \"https\"", "https://localhost"),
            ("", "scheme = \"http\"\nport = 80", "http://localhost"),
        ];
        let example = std::fs::read_to_string("config/portcullis.toml").unwrap();
        for (server, app, want) in cases {
            let text = example
                .replacen("[server]\n", &format!("[server]\n{server}\n"), 1)
                .replacen("[[apps]]\n", &format!("[[apps]]\n{app}\n"), 1);
            let c = Config::from_toml(
                &text,
                Path::new("config/portcullis.toml"),
                std::iter::empty(),
            )
            .unwrap_or_else(|e| panic!("{server} / {app}: {e}"));
            assert_eq!(c.apps[0].origin().as_str(), want, "{server} / {app}");
        }
    }

    #[test]
    fn a_configure_flow_must_name_a_stage_configuration_flow() {
        let example = std::fs::read_to_string("config/portcullis.toml").unwrap();
        let c = Config::from_toml(&example, Path::new("x.toml"), std::iter::empty()).unwrap();
        assert_eq!(
            c.stages["authenticator_app"].configure_flow(),
            Some("add-authenticator-app")
        );
        let flow = "slug = \"add-authenticator-app\"\ntitle = \"Add an authenticator app\"\ndesignation = \"stage_configuration\"";
        assert!(example.contains(flow));
        for (text, why) in [
            (
                example.replace(flow, &flow.replace("stage_configuration", "authentication")),
                "a configuration flow must be `stage_configuration`",
            ),
            (
                example.replace(
                    "configure_flow = \"add-authenticator-app\"",
                    "configure_flow = \"nowhere\"",
                ),
                "no flow with slug `nowhere`",
            ),
        ] {
            let e = Config::from_toml(&text, Path::new("x.toml"), std::iter::empty()).unwrap_err();
            let e = e.to_string();
            assert!(e.contains("stages.authenticator_app.configure_flow"), "{e}");
            assert!(e.contains(why), "{e}");
        }
    }

    #[test]
    fn the_example_passkey_section_loads_when_uncommented() {
        let example = std::fs::read_to_string("config/portcullis.toml").unwrap();
        let start = example.find("# [webauthn]").expect("the passkey section");
        let end = example.find("# --- end of passkeys").expect("its end");
        let section: String = example[start..end]
            .lines()
            .filter(|l| !l.starts_with("# #") && *l != "#")
            .map(|l| l.strip_prefix("# ").unwrap_or(l))
            .collect::<Vec<_>>()
            .join("\n");
        let text = example.replacen(
            "stages = [\"identify\", \"password\", \"login\"]",
            "stages = [\"identify_passkey\", \"password\", \"passkey_mfa\", \"login\"]",
            1,
        ) + "\n"
            + &section;
        let c = Config::from_toml(
            &text,
            Path::new("config/portcullis.toml"),
            std::iter::empty(),
        )
        .unwrap_or_else(|e| panic!("{e}\n{section}"));
        let rp = c.webauthn.expect("[webauthn]");
        assert_eq!(rp.id, "example.com");
        assert!(matches!(
            c.stages.get("identify_passkey"),
            Some(StageConfig::Identification { passkeys: Some(p), .. }) if p.stage == "passkey_mfa"
        ));
        let Some(StageConfig::AuthenticatorWebauthn(w)) = c.stages.get("passkey_setup") else {
            panic!("the setup stage");
        };
        assert_eq!(w.user_verification, UserVerification::Preferred);
        assert_eq!(w.resident_key_requirement, ResidentKey::Preferred);
        assert_eq!(w.authenticator_attachment, None);

        // Passkeys without [webauthn], or passkey sign-in naming a stage that does not take
        // them, are refused with the key to fix.
        let (a, b) = (
            text.rfind("\n[webauthn]").unwrap(),
            text.rfind("\n[stages.identify_passkey]").unwrap(),
        );
        let no_rp = format!("{}\n{}", &text[..a], &text[b..]);
        let e = Config::from_toml(&no_rp, Path::new("x.toml"), std::iter::empty()).unwrap_err();
        assert!(e.to_string().contains("[webauthn]"), "{e}");
        let at = text.rfind("webauthn_stage = \"passkey_mfa\"").unwrap();
        let wrong = format!(
            "{}webauthn_stage = \"password\"{}",
            &text[..at],
            &text[at + "webauthn_stage = \"passkey_mfa\"".len()..]
        );
        let e = Config::from_toml(&wrong, Path::new("x.toml"), std::iter::empty()).unwrap_err();
        assert!(e.to_string().contains("webauthn_stage"), "{e}");
    }

    #[test]
    fn numeric_looking_secrets_from_the_environment_stay_text() {
        let c = example_with(&[
            ("PORTCULLIS_EMAIL__PASSWORD", "12345678"),
            ("PORTCULLIS_EMAIL__USERNAME", "true"),
            ("PORTCULLIS_EMAIL__PORT", "2525"),
            ("PORTCULLIS_EMAIL__USE_TLS", "true"),
        ])
        .expect("numeric-looking secrets are accepted");
        assert_eq!(c.email.port, 2525);
        assert_eq!(
            c.email.password.as_ref().map(|p| p.expose().as_str()),
            Some("12345678")
        );
        assert_eq!(c.email.username.as_deref(), Some("true"));
    }

    /// Every secret a config can hold, as `(where, value)`.
    const SECRETS: [(&str, &str); 6] = [
        ("PORTCULLIS_EMAIL__PASSWORD", "global-smtp-pw-5e1c"),
        ("mail stage password", "stage-smtp-pw-77ab"),
        ("twilio auth_token", "twilio-token-9f3d"),
        ("generic bearer", "bearer-token-c0de"),
        ("generic basic password", "basic-pw-beef"),
        ("generic url key", "url-api-key-a11e"),
    ];

    #[test]
    fn a_printed_config_shows_no_secret() {
        let stages = format!(
            r#"
[stages.mail]
kind = "authenticator_email"
use_global_settings = false
host = "smtp.example.com"
username = "u"
password = "{}"
use_tls = true
[stages.twilio]
kind = "authenticator_sms"
provider = "twilio"
from_number = "+15550000000"
account_sid = "AC1"
auth_token = "{}"
[stages.bearer]
kind = "authenticator_sms"
provider = "generic"
from_number = "P"
url = "https://sms.example.com/send"
auth = "{}"
[stages.basic]
kind = "authenticator_sms"
provider = "generic"
from_number = "P"
url = "https://sms.example.com/send?key={}"
auth_type = "basic"
auth = "user"
auth_password = "{}"
"#,
            SECRETS[1].1, SECRETS[2].1, SECRETS[3].1, SECRETS[5].1, SECRETS[4].1
        );
        let path = Path::new("config/portcullis.toml");
        let text = std::fs::read_to_string(path).expect("the example config") + &stages;
        let env = [
            ("PORTCULLIS_EMAIL__USERNAME", "u"),
            ("PORTCULLIS_EMAIL__PASSWORD", SECRETS[0].1),
            ("PORTCULLIS_EMAIL__USE_TLS", "true"),
        ];
        let c = Config::from_toml(
            &text,
            path,
            env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        )
        .expect("the config with every secret loads");
        // The example's own stages (identify, password, login, the strong flow's
        // mfa_strong, authenticator_app, recovery_codes, the enroll flow's invite, signup,
        // write, verify_email, the recovery flow's recovery_email, recovery_factor,
        // new_password, write_password, unenroll's delete_account, edit-profile's ask_profile
        // and write_profile) plus the four added above.
        assert_eq!(
            c.stages.len(),
            21,
            "every secret-holding stage is in the Config"
        );
        let printed = format!("{c:?}");
        for (what, secret) in SECRETS {
            assert!(!printed.contains(secret), "{what} is printed: {printed}");
        }
        assert!(printed.contains("Secret(<redacted>)"));
    }

    #[test]
    fn the_example_ships_a_live_recovery_flow_linked_from_the_password_stage() {
        let c = example_with(&[]).expect("loads");
        let flow = c.flow("recovery").expect("the recovery flow");
        assert_eq!(flow.designation, Designation::Recovery);
        assert!(matches!(
            c.stages.get("password"),
            Some(StageConfig::Password { recovery_flow: Some(slug), .. }) if slug == "recovery"
        ));
        let Some(StageConfig::Email(e)) = c.stages.get(&flow.stages[1]) else {
            panic!("the second stage verifies the address");
        };
        assert_eq!(e.otp.token_expiry, Duration::from_secs(10 * 60));
        assert!(!e.activate_user_on_success);
    }

    #[test]
    fn the_access_log_is_off_unless_switched_on_in_the_file_or_the_environment() {
        assert!(!example_with(&[]).expect("loads").log.access);
        let on = example_with(&[("PORTCULLIS_LOG__ACCESS", "true")]).expect("loads");
        assert!(on.log.access);
        let path = Path::new("config/portcullis.toml");
        let text = std::fs::read_to_string(path).expect("the example config");
        let text = text.replacen("\naccess = false", "\naccess = true", 1);
        let c = Config::from_toml(&text, path, std::iter::empty()).expect("loads");
        assert!(c.log.access, "the example config has a [log] table");
        let bad = example_with(&[("PORTCULLIS_LOG__ACCES", "true")]);
        assert!(bad.is_err(), "a misspelt key is refused");
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

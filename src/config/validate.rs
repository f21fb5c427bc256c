//! Raw config -> validated [`Config`]: every cross-reference checked, every value typed.

use super::error::Problem;
use super::raw::{RawApp, RawConfig, RawStage, RawUpstream};
use super::*;
use std::collections::HashMap;
use std::net::ToSocketAddrs;

type Checked<T> = Result<T, Problem>;

/// A path from the config: absolute as written, or relative to the folder of the config file,
/// so the same file means the same places whatever directory the command runs from. `.` and
/// `..` are folded away so messages show the place plainly.
pub(super) fn resolve(base: &Path, written: &str) -> PathBuf {
    let p = Path::new(written);
    let joined = if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    };
    let mut out = PathBuf::new();
    for c in joined.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                if !out.pop() {
                    out.push(c);
                }
            }
            other => out.push(other),
        }
    }
    out
}

/// The folder relative paths in `file` are read against: the config file's own folder, made
/// absolute (symbolic links resolved when it exists) so messages and the running gateway name
/// one place.
pub(super) fn base_dir(file: &Path) -> PathBuf {
    let absolute = std::path::absolute(file).unwrap_or_else(|_| file.to_path_buf());
    let dir = absolute
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("/"));
    std::fs::canonicalize(&dir).unwrap_or(dir)
}

/// Rewrites every file or folder path of the raw config to an absolute one (see [`resolve`]),
/// before anything reads a file. A new path key must be listed here.
fn resolve_paths(raw: &mut RawConfig, base: &Path) {
    let fix = |s: &mut String| *s = resolve(base, s).display().to_string();
    let fix_opt = |s: &mut Option<String>| {
        if let Some(s) = s {
            fix(s);
        }
    };
    fix(&mut raw.storage.path);
    fix_opt(&mut raw.storage.ca_file);
    if let Some(g) = raw.geoip.as_mut() {
        fix(&mut g.database);
    }
    fix_opt(&mut raw.storage.device_key_path);
    fix_opt(&mut raw.session.keys_path);
    fix_opt(&mut raw.admin.socket);
    fix_opt(&mut raw.log.audit_file);
    fix_opt(&mut raw.ui.templates);
    fix_opt(&mut raw.ui.logo);
    fix_opt(&mut raw.server.upstream_ca_file);
    for c in &mut raw.server.certificates {
        fix(&mut c.cert);
        fix(&mut c.key);
    }
    if let Some(e) = raw.email.as_mut() {
        fix_opt(&mut e.ca_file);
    }
    for stage in raw.stages.values_mut() {
        if let RawStage::AuthenticatorEmail(e) = stage {
            fix_opt(&mut e.ca_file);
        }
        if let RawStage::Email(e) = stage {
            fix_opt(&mut e.ca_file);
        }
    }
    for policy in raw.policies.values_mut() {
        if let super::policies::RawPolicy::Password { hibp_directory, .. } = policy {
            fix_opt(hibp_directory);
        }
    }
}

pub(super) fn validate(mut raw: RawConfig, file: &Path) -> Checked<Config> {
    let base = base_dir(file);
    resolve_paths(&mut raw, &base);

    let listen = listen(&raw.server)?;
    let storage = storage(&raw)?;
    let data_dir = storage.path.parent().map(Path::to_path_buf);
    let data_dir = data_dir.unwrap_or_else(|| PathBuf::from("."));

    let session = session(&raw.session)?;
    let headers = headers(&raw.headers)?;
    let passwords = passwords(&raw.passwords)?;
    let password_policy = password_policy(&raw.password)?;
    let networks = super::rules::networks(&raw.networks)?;
    let policies = super::policies::policies(raw.policies, &networks)?;
    let site_title = raw
        .ui
        .site_title
        .clone()
        .unwrap_or_else(|| "Portcullis".into());
    let webauthn = super::webauthn::relying_party(raw.webauthn.take(), &site_title)?;
    let stages = raw
        .stages
        .into_iter()
        .map(|(name, st)| {
            let st = stage(
                &name,
                st,
                session.lifetime,
                &policies,
                webauthn.as_ref(),
                password_policy,
            )?;
            Ok((name.clone(), st))
        })
        .collect::<Checked<BTreeMap<_, _>>>()?;
    let flows = flows(&raw.flows, &stages, &policies)?;
    super::email::cross_check(&stages, &flows)?;
    super::enrol::cross_check(&stages, &flows)?;
    super::verify::cross_check(&stages, &flows)?;
    let geoip = super::policies::geoip(raw.geoip.as_ref(), &policies)?;
    let mut apps = apps(&raw.apps, &flows, &stages, &networks, &policies)?;
    let server = super::server::server(&raw.server, listen)?;
    super::server::public_origins(&raw.apps, &server, &mut apps)?;
    let email = super::email::smtp("email", &raw.email.unwrap_or_default())?;
    let settings = super::settings::settings(&raw.settings, &flows)?;
    let metrics = super::ops::metrics(&raw.metrics, &server.listen, &server.tls_listen)?;
    let regulation = super::regulation::regulation(&raw.regulation)?;

    Ok(Config {
        source: match file.file_name() {
            Some(name) => base.join(name),
            None => file.to_path_buf(),
        },
        server,
        storage,
        session,
        headers,
        passwords,
        password_policy,
        admin_socket: raw
            .admin
            .socket
            .map(PathBuf::from)
            .unwrap_or_else(|| data_dir.join("admin.sock")),
        ui: super::ui::ui(raw.ui, &base)?,
        email,
        log: LogConfig {
            access: raw.log.access,
            format: raw.log.format,
            audit_file: raw.log.audit_file.map(PathBuf::from),
        },
        apps,
        flows,
        stages,
        policies,
        networks,
        webauthn,
        geoip,
        settings,
        metrics,
        regulation,
    })
}

/// `[server] listen`: at least one address.
fn listen(raw: &super::raw::RawServer) -> Checked<Vec<SocketAddr>> {
    let listen = raw
        .listen
        .iter()
        .enumerate()
        .map(|(i, l)| {
            l.parse::<SocketAddr>().map_err(|_| {
                Problem::new(
                    format!("server.listen[{i}]"),
                    format!("`{l}` is not an address like \"127.0.0.1:9000\""),
                )
            })
        })
        .collect::<Checked<Vec<_>>>()?;
    if listen.is_empty() {
        return Err(Problem::new("server.listen", "needs at least one address"));
    }
    Ok(listen)
}

/// `[storage]`, the keys file next to the database unless `[session] keys_path` says.
fn storage(raw: &RawConfig) -> Checked<StorageConfig> {
    let path = PathBuf::from(&raw.storage.path);
    let data_dir = path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let keys_path = raw
        .session
        .keys_path
        .as_ref()
        .map(PathBuf::from)
        .unwrap_or_else(|| data_dir.join("keys.json"));
    let device_key_path = raw
        .storage
        .device_key_path
        .as_ref()
        .map(PathBuf::from)
        .unwrap_or_else(|| data_dir.join("device-key.json"));
    let purge_interval = match &raw.storage.purge_interval {
        Some(t) => {
            super::parse_duration(t).map_err(|m| Problem::new("storage.purge_interval", m))?
        }
        None => super::DEFAULT_PURGE_INTERVAL,
    };
    Ok(StorageConfig {
        path,
        keys_path,
        device_key_path,
        backend: super::storage::backend(&raw.storage)?,
        purge_interval,
    })
}

fn session(raw: &super::raw::RawSession) -> Checked<SessionConfig> {
    // Session and sign-in lifetimes are kept in whole seconds: under one second would be 0.
    let dur = |key: &str, v: &Option<String>, default: Duration| -> Checked<Duration> {
        match v {
            Some(t) => super::sms::whole_seconds(&format!("session.{key}"), t),
            None => Ok(default),
        }
    };
    let cookie_name = raw
        .cookie_name
        .clone()
        .unwrap_or_else(|| "portcullis_session".into());
    if cookie_name.is_empty()
        || !cookie_name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(Problem::new(
            "session.cookie_name",
            "use letters, digits, `_` and `-` only",
        ));
    }
    let cookie_domain = match &raw.cookie_domain {
        None => None,
        Some(d) => {
            let d = d.trim_start_matches('.').to_ascii_lowercase();
            if d.is_empty() || !d.contains('.') && d != "localhost" {
                return Err(Problem::new(
                    "session.cookie_domain",
                    "must be a domain such as \"example.com\"",
                ));
            }
            Some(d)
        }
    };
    // Browsers drop a `__Host-` cookie that names a domain (RFC 6265bis): no sign-in would
    // stick. The prefix is matched without regard to case, as browsers now do.
    let host_prefixed = cookie_name
        .get(..7)
        .is_some_and(|p| p.eq_ignore_ascii_case("__Host-"));
    if host_prefixed && cookie_domain.is_some() && !raw.danger_host_cookie_domain.unwrap_or(false) {
        return Err(Problem::new(
            "session.cookie_domain",
            "cannot be used with a `__Host-` cookie_name (browsers refuse such a cookie, and the prefix promises a cookie bound to one host); drop one of them, or set danger_host_cookie_domain = true next to it to allow this",
        ));
    }
    Ok(SessionConfig {
        cookie_name,
        lifetime: dur("lifetime", &raw.lifetime, Duration::from_secs(12 * 3600))?,
        cookie_domain,
        issuer: raw.issuer.clone().unwrap_or_else(|| "portcullis".into()),
        flow_lifetime: dur(
            "flow_lifetime",
            &raw.flow_lifetime,
            Duration::from_secs(30 * 60),
        )?,
        max_flows_per_client: match raw.max_flows_per_client {
            None => super::DEFAULT_MAX_FLOWS_PER_CLIENT,
            Some(0) => {
                return Err(Problem::new(
                    "session.max_flows_per_client",
                    "must be at least 1 (each sign-in under way from an address counts)",
                ))
            }
            Some(n) => n,
        },
    })
}

fn header_name(path: &str, v: &str) -> Checked<HeaderName> {
    HeaderName::from_bytes(v.as_bytes())
        .map_err(|_| Problem::new(path, format!("`{v}` is not a valid header name")))
}

fn headers(raw: &super::raw::RawHeaders) -> Checked<IdentityHeaders> {
    let pick = |key: &str, v: &Option<String>, default: &str| {
        header_name(&format!("headers.{key}"), v.as_deref().unwrap_or(default))
    };
    Ok(IdentityHeaders {
        user: pick("user", &raw.user, "Remote-User")?,
        name: pick("name", &raw.name, "Remote-Name")?,
        email: pick("email", &raw.email, "Remote-Email")?,
        groups: pick("groups", &raw.groups, "Remote-Groups")?,
        strip: raw
            .strip
            .iter()
            .enumerate()
            .map(|(i, h)| header_name(&format!("headers.strip[{i}]"), h))
            .collect::<Checked<_>>()?,
    })
}

/// OWASP's argon2id configurations of equal strength: (memory in KiB, passes), one lane.
const OWASP_ARGON2: [(u32, u32); 5] = [
    (47_104, 1),
    (19_456, 2),
    (12_288, 3),
    (9_216, 4),
    (7_168, 5),
];

fn passwords(raw: &super::raw::RawPasswords) -> Checked<PasswordParams> {
    let p = PasswordParams {
        memory_kib: raw.memory_kib.unwrap_or(19 * 1024),
        iterations: raw.iterations.unwrap_or(2),
        parallelism: raw.parallelism.unwrap_or(1),
        max_concurrent_hashes: raw.max_concurrent_hashes.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        }),
    };
    if p.memory_kib < 8 * p.parallelism.max(1) {
        return Err(Problem::new(
            "passwords.memory_kib",
            "must be at least 8 KiB per lane",
        ));
    }
    if p.iterations == 0 {
        return Err(Problem::new("passwords.iterations", "must be at least 1"));
    }
    if p.parallelism == 0 {
        return Err(Problem::new("passwords.parallelism", "must be at least 1"));
    }
    // # Security
    // OWASP's argon2id minimums (Password Storage Cheat Sheet), each equally strong: cheaper
    // hashes make an offline attack on a stolen database faster.
    let owasp = OWASP_ARGON2
        .iter()
        .any(|&(m, t)| p.memory_kib >= m && p.iterations >= t);
    if !owasp && !raw.danger_weak_hashing.unwrap_or(false) {
        let key = if p.iterations < 2 {
            "passwords.iterations"
        } else {
            "passwords.memory_kib"
        };
        return Err(Problem::new(
            key,
            format!(
                "argon2id with {} KiB and {} passes is below OWASP's minimum (19456 KiB with 2 passes, or 47104 with 1, 12288 with 3, 9216 with 4, 7168 with 5); raise it, or set danger_weak_hashing = true next to it to allow this",
                p.memory_kib, p.iterations
            ),
        ));
    }
    if p.max_concurrent_hashes == 0 {
        return Err(Problem::new(
            "passwords.max_concurrent_hashes",
            "must be at least 1",
        ));
    }
    Ok(p)
}

/// NIST SP 800-63B: verifiers should accept at least 64 characters; below that, a policy
/// would refuse the long passphrases people are told to choose.
const MAX_LENGTH_FLOOR: usize = 64;
/// Above this a password is no stronger, only more work for the hasher per attempt.
const MAX_LENGTH_CEILING: usize = 1024;

fn password_policy(raw: &super::raw::RawPasswordPolicy) -> Checked<PasswordPolicy> {
    let d = PasswordPolicy::default();
    let p = PasswordPolicy {
        min_length: raw.min_length.unwrap_or(d.min_length),
        max_length: raw.max_length.unwrap_or(d.max_length),
    };
    if p.min_length == 0 {
        return Err(Problem::new("password.min_length", "must be at least 1"));
    }
    if !(MAX_LENGTH_FLOOR..=MAX_LENGTH_CEILING).contains(&p.max_length) {
        return Err(Problem::new(
            "password.max_length",
            format!(
                "must be between {MAX_LENGTH_FLOOR} (NIST SP 800-63B: accept at least 64 characters) and {MAX_LENGTH_CEILING}"
            ),
        ));
    }
    if p.min_length > p.max_length {
        return Err(Problem::new(
            "password.min_length",
            format!(
                "{} is more than max_length ({})",
                p.min_length, p.max_length
            ),
        ));
    }
    Ok(p)
}

fn stage(
    name: &str,
    raw: RawStage,
    session_lifetime: Duration,
    policies: &BTreeMap<String, std::sync::Arc<crate::policy::Policy>>,
    rp: Option<&std::sync::Arc<RelyingPartyConfig>>,
    password_policy: PasswordPolicy,
) -> Checked<StageConfig> {
    let path = |key: &str| format!("stages.{name}.{key}");
    Ok(match raw {
        RawStage::Identification {
            user_fields,
            webauthn_stage,
            enrollment_flow,
            recovery_flow,
        } => {
            let fields = user_fields.unwrap_or_else(|| vec!["username".into(), "email".into()]);
            if fields.is_empty() {
                return Err(Problem::new(
                    path("user_fields"),
                    "needs \"username\", \"email\" or both",
                ));
            }
            let user_fields = fields
                .iter()
                .enumerate()
                .map(|(i, f)| match f.as_str() {
                    "username" => Ok(UserField::Username),
                    "email" => Ok(UserField::Email),
                    other => Err(Problem::new(
                        format!("stages.{name}.user_fields[{i}]"),
                        format!("`{other}` is not one of \"username\", \"email\""),
                    )),
                })
                .collect::<Checked<_>>()?;
            let passkeys = match webauthn_stage {
                Some(stage) => Some(PasskeyLogin {
                    rp: super::webauthn::needed(rp, &path("webauthn_stage"))?,
                    stage,
                }),
                None => None,
            };
            StageConfig::Identification {
                user_fields,
                passkeys,
                enrollment_flow,
                recovery_flow,
            }
        }
        RawStage::Password {
            failed_attempts_before_cancel,
            recovery_flow,
        } => {
            let n = failed_attempts_before_cancel.unwrap_or(5);
            if n == 0 {
                return Err(Problem::new(
                    path("failed_attempts_before_cancel"),
                    "must be at least 1",
                ));
            }
            StageConfig::Password {
                failed_attempts_before_cancel: n,
                recovery_flow,
            }
        }
        RawStage::UserLogin { session_duration } => StageConfig::UserLogin {
            session_duration: match session_duration {
                Some(t) => super::sms::whole_seconds(&path("session_duration"), &t)?,
                None => session_lifetime,
            },
        },
        RawStage::Deny { deny_message } => StageConfig::Deny {
            deny_message: deny_message.unwrap_or_else(|| "Access denied.".into()),
        },
        RawStage::AuthenticatorEmail(raw) => {
            StageConfig::AuthenticatorEmail(Box::new(super::email::email_stage(name, &raw)?))
        }
        RawStage::AuthenticatorSms(raw) => {
            StageConfig::AuthenticatorSms(Box::new(super::sms::sms_stage(name, &raw)?))
        }
        RawStage::AuthenticatorDuo(raw) => {
            StageConfig::AuthenticatorDuo(Box::new(super::duo::duo_stage(name, &raw)?))
        }
        RawStage::Prompt(raw) => {
            StageConfig::Prompt(Box::new(super::sms::prompt_stage(name, &raw, policies)?))
        }
        RawStage::AuthenticatorTotp(raw) => {
            StageConfig::AuthenticatorTotp(super::strong::totp_stage(name, &raw)?)
        }
        RawStage::AuthenticatorStatic(raw) => {
            StageConfig::AuthenticatorStatic(super::strong::static_stage(name, &raw)?)
        }
        RawStage::AuthenticatorValidate(raw) => StageConfig::AuthenticatorValidate(Box::new(
            super::email::validate_stage(name, &raw, rp)?,
        )),
        RawStage::AuthenticatorWebauthn(raw) => {
            StageConfig::AuthenticatorWebauthn(Box::new(super::webauthn::stage(name, &raw, rp)?))
        }
        RawStage::UserWrite(raw) => StageConfig::UserWrite(Box::new(
            super::enrol::user_write_stage(name, &raw, password_policy)?,
        )),
        RawStage::Invitation {
            continue_flow_without_invitation,
        } => StageConfig::Invitation {
            continue_flow_without_invitation: continue_flow_without_invitation.unwrap_or(false),
        },
        RawStage::UserDelete {} => StageConfig::UserDelete,
        RawStage::UserLogout {} => StageConfig::UserLogout,
        RawStage::Email(raw) => {
            StageConfig::Email(Box::new(super::verify::verify_stage(name, &raw)?))
        }
        RawStage::Captcha(raw) => {
            StageConfig::Captcha(Box::new(super::captcha::captcha_stage(name, &raw)?))
        }
    })
}

fn flows(
    raw: &[super::raw::RawFlow],
    stages: &BTreeMap<String, StageConfig>,
    policies: &BTreeMap<String, std::sync::Arc<crate::policy::Policy>>,
) -> Checked<Vec<FlowConfig>> {
    let mut seen = HashMap::new();
    let mut out = Vec::with_capacity(raw.len());
    for (i, f) in raw.iter().enumerate() {
        if f.slug.is_empty()
            || !f
                .slug
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        {
            return Err(Problem::new(
                format!("flows[{i}].slug"),
                "use lower-case letters, digits, `-` and `_` only",
            ));
        }
        if seen.insert(f.slug.clone(), i).is_some() {
            return Err(Problem::new(
                format!("flows[{i}].slug"),
                format!("flow `{}` is defined twice", f.slug),
            ));
        }
        let Some(designation) = Designation::named(&f.designation) else {
            let known: Vec<String> = Designation::ALL
                .iter()
                .map(|d| format!("\"{}\"", d.as_str()))
                .collect();
            return Err(Problem::new(
                format!("flows[{i}].designation"),
                format!("`{}` is not one of {}", f.designation, known.join(", ")),
            ));
        };
        if f.stages.is_empty() {
            return Err(Problem::new(
                format!("flows[{i}].stages"),
                "needs at least one stage",
            ));
        }
        let mut bindings = Vec::with_capacity(f.stages.len());
        for (j, entry) in f.stages.iter().enumerate() {
            let s = entry.stage();
            if !stages.contains_key(s) {
                return Err(Problem::new(
                    format!("flows[{i}].stages[{j}]"),
                    format!("no stage named `{s}` under [stages]"),
                ));
            }
            let path = format!("flows[{i}].stages[{j}]");
            // Deleting the pending user is for the signed-in user's own unenrolment only: in
            // any other flow the pending user is whoever was named at identification.
            if matches!(stages.get(s), Some(StageConfig::UserDelete))
                && designation != Designation::Unenrollment
            {
                return Err(Problem::new(
                    path,
                    format!(
                        "`{s}` is a user_delete stage: only an \"unenrollment\" flow may have one"
                    ),
                ));
            }
            bindings.push(super::policies::stage_binding(&path, entry, policies)?);
        }
        let flow_policies = super::policies::binding(
            &format!("flows[{i}].policies"),
            &f.policies,
            f.policy_engine_mode.as_deref(),
            false,
            policies,
        )?;
        out.push(FlowConfig {
            slug: f.slug.clone(),
            title: f.title.clone().unwrap_or_else(|| "Sign in".into()),
            designation,
            stages: f.stages.iter().map(|e| e.stage().to_string()).collect(),
            policies: flow_policies,
            bindings,
        });
    }
    Ok(out)
}

fn apps(
    raw: &[RawApp],
    flows: &[FlowConfig],
    stages: &BTreeMap<String, StageConfig>,
    networks: &BTreeMap<String, Networks>,
    policies: &BTreeMap<String, std::sync::Arc<crate::policy::Policy>>,
) -> Checked<Vec<AppConfig>> {
    let mut owner: HashMap<String, String> = HashMap::new();
    let mut names = HashMap::new();
    let mut out = Vec::with_capacity(raw.len());
    for (i, a) in raw.iter().enumerate() {
        if names.insert(a.name.clone(), i).is_some() {
            return Err(Problem::new(
                format!("apps[{i}].name"),
                format!("app `{}` is defined twice", a.name),
            ));
        }
        let hosts = app_hosts(i, a, &mut owner)?;
        let upstreams = app_upstreams(i, a)?;
        let Some(flow) = flows.iter().find(|f| f.slug == a.flow) else {
            return Err(Problem::new(
                format!("apps[{i}].flow"),
                format!("no flow with slug `{}` under [[flows]]", a.flow),
            ));
        };
        // An app sends visitors without a session to its flow: only a sign-in flow can let
        // them in (an enrolment or settings flow would refuse them or never sign them in).
        if flow.designation != Designation::Authentication {
            return Err(Problem::new(
                format!("apps[{i}].flow"),
                format!(
                    "flow `{}` is designated `{}`; an app needs an \"authentication\" flow",
                    a.flow,
                    flow.designation.as_str()
                ),
            ));
        }
        out.push(AppConfig {
            index: i,
            name: a.name.clone(),
            hosts,
            upstreams,
            flow: a.flow.clone(),
            allowed_groups: a.allowed_groups.clone(),
            bypass: app_bypass(i, a)?,
            access: super::rules::access_rules(
                i,
                &a.rules,
                a.default_policy.as_deref(),
                networks,
                flows.iter().find(|f| f.slug == a.flow),
                stages,
            )?,
            assertion: a.assertion,
            policies: super::policies::app_binding(i, a, policies)?,
            // Filled in by `server::public_origins` once `[server]` is known.
            origins: Vec::new(),
        });
    }
    Ok(out)
}

/// An app's hosts, lower-case; `owner` remembers which app took each host.
fn app_hosts(i: usize, a: &RawApp, owner: &mut HashMap<String, String>) -> Checked<Vec<String>> {
    if a.hosts.is_empty() {
        return Err(Problem::new(
            format!("apps[{i}].hosts"),
            "needs at least one host",
        ));
    }
    let mut hosts = Vec::with_capacity(a.hosts.len());
    for (j, h) in a.hosts.iter().enumerate() {
        let host = h.trim().to_ascii_lowercase();
        if host.is_empty() || host.contains(['/', ':', ' ', '@']) {
            return Err(Problem::new(
                format!("apps[{i}].hosts[{j}]"),
                format!("`{h}` is not a host name (no scheme, port or path)"),
            ));
        }
        if let Some(other) = owner.insert(host.clone(), a.name.clone()) {
            return Err(Problem::new(
                format!("apps[{i}].hosts[{j}]"),
                format!("host `{host}` is already used by app `{other}`"),
            ));
        }
        hosts.push(host);
    }
    Ok(hosts)
}

/// An app's upstreams, one or a list.
fn app_upstreams(i: usize, a: &RawApp) -> Checked<Vec<Upstream>> {
    let list: Vec<&String> = match &a.upstream {
        RawUpstream::One(s) => vec![s],
        RawUpstream::Many(v) => v.iter().collect(),
    };
    if list.is_empty() {
        return Err(Problem::new(
            format!("apps[{i}].upstream"),
            "needs at least one address",
        ));
    }
    list.iter()
        .enumerate()
        .map(|(j, u)| {
            let path = if matches!(a.upstream, RawUpstream::One(_)) {
                format!("apps[{i}].upstream")
            } else {
                format!("apps[{i}].upstream[{j}]")
            };
            upstream(u).map_err(|r| Problem::new(path, r))
        })
        .collect()
}

/// An app's bypass patterns, each checked alone first so an error names the bad one.
fn app_bypass(i: usize, a: &RawApp) -> Checked<RegexSet> {
    for (j, pattern) in a.bypass.iter().enumerate() {
        regex::Regex::new(pattern).map_err(|e| {
            Problem::new(
                format!("apps[{i}].bypass[{j}]"),
                format!("not a valid regex: {e}"),
            )
        })?;
    }
    RegexSet::new(&a.bypass).map_err(|e| Problem::new(format!("apps[{i}].bypass"), e.to_string()))
}

/// `builtin:whoami`, `host:port` (plain HTTP), `http://host[:port]` or `https://host[:port]`.
/// Names are resolved once here so no request waits on DNS.
pub(super) fn upstream(text: &str) -> Result<Upstream, String> {
    if text == "builtin:whoami" {
        return Ok(Upstream::Whoami);
    }
    let with_scheme = if text.contains("://") {
        text.to_string()
    } else {
        format!("http://{text}")
    };
    let url = url::Url::parse(&with_scheme)
        .map_err(|e| format!("`{text}` is not an upstream address ({e})"))?;
    let tls = match url.scheme() {
        "http" => false,
        "https" => true,
        other => {
            return Err(format!(
                "scheme `{other}` is not supported (use http or https)"
            ))
        }
    };
    if url.path() != "/" || url.query().is_some() {
        return Err(format!(
            "`{text}` must not have a path; requests keep their own"
        ));
    }
    let host = url
        .host_str()
        .ok_or_else(|| format!("`{text}` has no host"))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = url
        .port_or_known_default()
        .unwrap_or(if tls { 443 } else { 80 });
    let addr = (host.as_str(), port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve `{host}`: {e}"))?
        .next()
        .ok_or_else(|| format!("`{host}` resolves to no address"))?;
    let host_header = match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.clone(),
    };
    Ok(Upstream::Http {
        addr,
        tls,
        sni: host,
        host: host_header,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml(text, Path::new("test.toml"), std::iter::empty())
    }

    const BASE: &str = r#"
[[apps]]
name = "demo"
hosts = ["localhost"]
upstream = "builtin:whoami"
flow = "f"
[[flows]]
slug = "f"
designation = "authentication"
stages = ["id"]
[stages.id]
kind = "identification"
"#;

    #[test]
    fn relative_paths_are_read_from_the_config_folder() {
        let text = format!(
            "[storage]\npath = \"../state/db\"\n[admin]\nsocket = \"run/admin.sock\"\n[ui]\ntemplates = \"./tpl\"\n{BASE}"
        );
        let c = Config::from_toml(
            &text,
            Path::new("/etc/portcullis/main.toml"),
            std::iter::empty(),
        )
        .unwrap();
        assert_eq!(c.storage.path, Path::new("/etc/state/db"));
        assert_eq!(c.storage.keys_path, Path::new("/etc/state/keys.json"));
        assert_eq!(c.admin_socket, Path::new("/etc/portcullis/run/admin.sock"));
        assert_eq!(
            c.ui.templates.as_deref(),
            Some(Path::new("/etc/portcullis/tpl"))
        );
        assert_eq!(c.source, Path::new("/etc/portcullis/main.toml"));
        // Absolute paths stay as written; the default sits beside the config.
        let c = Config::from_toml(
            &format!("[storage]\npath = \"/var/lib/p/db\"\n{BASE}"),
            Path::new("/etc/portcullis/main.toml"),
            std::iter::empty(),
        )
        .unwrap();
        assert_eq!(c.storage.path, Path::new("/var/lib/p/db"));
        let c = Config::from_toml(BASE, Path::new("/srv/p/main.toml"), std::iter::empty()).unwrap();
        assert_eq!(c.storage.path, Path::new("/srv/p/data/portcullis.db"));
    }

    #[test]
    fn minimal_config_loads_with_defaults() {
        let c = load(BASE).unwrap();
        assert_eq!(c.session.cookie_name, "portcullis_session");
        assert_eq!(c.session.flow_lifetime, Duration::from_secs(1800));
        assert_eq!(c.apps[0].upstreams, vec![Upstream::Whoami]);
    }

    #[test]
    fn unknown_key_in_stage_is_named() {
        let e = load(&format!("{BASE}bogus = 1\n")).unwrap_err();
        assert_eq!(e.path(), Some("stages.id"), "{e}");
        assert!(e.to_string().contains("bogus"), "{e}");
    }

    #[test]
    fn upstream_forms_parse() {
        assert!(matches!(
            upstream("127.0.0.1:3000"),
            Ok(Upstream::Http { tls: false, .. })
        ));
        assert!(matches!(
            upstream("https://127.0.0.1"),
            Ok(Upstream::Http { tls: true, .. })
        ));
        assert!(upstream("ftp://x").is_err());
    }

    #[test]
    fn every_designation_loads_and_only_a_sign_in_flow_serves_an_app() {
        for d in Designation::ALL {
            let text = BASE.replacen(
                "designation = \"authentication\"",
                &format!("designation = \"{}\"", d.as_str()),
                1,
            );
            match (d, load(&text)) {
                (Designation::Authentication, Ok(c)) => {
                    assert_eq!(c.flows[0].designation, d);
                }
                (_, Err(e)) => {
                    assert_eq!(e.path(), Some("apps[0].flow"), "{e}");
                    assert!(e.to_string().contains(d.as_str()), "{e}");
                }
                (_, Ok(_)) => panic!("an app signed in by a `{}` flow", d.as_str()),
            }
            let other = format!(
                "{BASE}[[flows]]\nslug = \"g\"\ndesignation = \"{}\"\nstages = [\"id\"]\n",
                d.as_str()
            );
            let c = load(&other).unwrap_or_else(|e| panic!("{}: {e}", d.as_str()));
            assert_eq!(c.flow("g").map(|f| f.designation), Some(d));
        }
        let e = load(&BASE.replacen("\"authentication\"", "\"signup\"", 1)).unwrap_err();
        assert_eq!(e.path(), Some("flows[0].designation"), "{e}");
        assert!(e.to_string().contains("\"recovery\""), "{e}");
        assert!(e.to_string().contains("\"unenrollment\""), "{e}");
    }

    #[test]
    fn env_overrides_a_key() {
        let env = vec![("PORTCULLIS_SESSION__LIFETIME".to_string(), "1h".to_string())];
        let c = Config::from_toml(BASE, Path::new("t"), env.into_iter()).unwrap();
        assert_eq!(c.session.lifetime, Duration::from_secs(3600));
    }
}

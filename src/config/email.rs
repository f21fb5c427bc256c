//! Validation of the e-mail settings: the global `[email]` connection, the email stages and
//! the one-time code policy they share.

use super::error::Problem;
use super::raw::{RawEmailStage, RawOtp, RawSmtp, RawValidateStage};
use super::sms::{at_least_a_second, whole_seconds};
use super::*;
use crate::secret::Secret;

type Checked<T> = Result<T, Problem>;

/// A number of `unit`s, or a duration string. A number beyond `u32` is refused rather than
/// truncated (`4294967297` would otherwise become 1).
pub(super) fn duration_or(
    path: &str,
    v: &Option<toml::Value>,
    unit: Duration,
    default: Duration,
) -> Checked<Duration> {
    match v {
        None => Ok(default),
        Some(toml::Value::Integer(n)) if *n > 0 => u32::try_from(*n)
            .ok()
            .and_then(|n| unit.checked_mul(n))
            .ok_or_else(|| Problem::new(path, format!("`{n}` is too large"))),
        Some(toml::Value::String(s)) => parse_duration(s).map_err(|r| Problem::new(path, r)),
        Some(other) => Err(Problem::new(
            path,
            format!("`{other}` is not a positive number or a duration like \"30m\""),
        )),
    }
}

pub(super) fn smtp(path: &str, raw: &RawSmtp) -> Checked<SmtpSettings> {
    let use_tls = raw.use_tls.unwrap_or(false);
    let use_ssl = raw.use_ssl.unwrap_or(false);
    if use_tls && use_ssl {
        return Err(Problem::new(
            format!("{path}.use_ssl"),
            "use_tls (STARTTLS) and use_ssl (implicit TLS) cannot both be on; pick one",
        ));
    }
    let text = raw.from.as_deref().unwrap_or("system@portcullis.local");
    let Some(from) = Mailbox::parse(text) else {
        return Err(Problem::new(
            format!("{path}.from"),
            format!("`{text}` is not an email address"),
        ));
    };
    if raw.password.is_some() && raw.username.is_none() {
        return Err(Problem::new(
            format!("{path}.password"),
            "a password needs a username",
        ));
    }
    // # Security
    // Without STARTTLS or implicit TLS, the password crosses the network in the clear at
    // every connection (AUTH PLAIN/LOGIN are base64, not encryption).
    if raw.password.is_some()
        && !use_tls
        && !use_ssl
        && !raw.danger_plaintext_password.unwrap_or(false)
    {
        return Err(Problem::new(
            format!("{path}.password"),
            "would be sent in the clear: turn on use_tls (STARTTLS) or use_ssl (implicit TLS), or set danger_plaintext_password = true next to it to allow this",
        ));
    }
    Ok(SmtpSettings {
        host: raw.host.clone().unwrap_or_else(|| "localhost".into()),
        port: raw.port.unwrap_or(25),
        username: raw.username.clone(),
        password: raw.password.clone().map(Secret::new),
        security: if use_ssl {
            SmtpSecurity::Implicit
        } else if use_tls {
            SmtpSecurity::StartTls
        } else {
            SmtpSecurity::None
        },
        timeout: duration_or(
            &format!("{path}.timeout"),
            &raw.timeout,
            Duration::from_secs(1),
            Duration::from_secs(10),
        )?,
        from,
        ca_file: raw.ca_file.as_ref().map(PathBuf::from),
    })
}

/// The longest a one-time code or link may live without `danger_long_token_expiry`.
pub(crate) const MAX_TOKEN_EXPIRY: Duration = Duration::from_secs(10 * 60);

/// Refuses `0` (unlimited) for a send or attempt limit unless `danger_unlimited_attempts`.
fn bounded(path: String, n: u32, danger: Option<bool>) -> Checked<u32> {
    if n == 0 && !danger.unwrap_or(false) {
        return Err(Problem::new(
            path,
            "0 means unlimited, which leaves guessing (or sending) unbounded; give a limit, or set danger_unlimited_attempts = true next to it to allow this",
        ));
    }
    Ok(n)
}

pub(super) fn limit(path: String, v: Option<u32>, default: u32) -> Checked<u32> {
    let n = v.unwrap_or(default);
    if n > 100 {
        return Err(Problem::new(path, "must be between 0 (unlimited) and 100"));
    }
    Ok(n)
}

pub(super) fn otp(base: &str, raw: &RawOtp) -> Checked<OtpPolicy> {
    let path = |k: &str| format!("{base}.{k}");
    let mode = match raw.mode.as_deref().unwrap_or("code") {
        "code" => OtpMode::Code,
        "link" => OtpMode::Link,
        other => {
            return Err(Problem::new(
                path("mode"),
                format!("`{other}` is not one of \"code\", \"link\""),
            ))
        }
    };
    let code_length = raw.code_length.unwrap_or(6);
    if !(4..=12).contains(&code_length) {
        return Err(Problem::new(
            path("code_length"),
            "must be between 4 and 12 digits",
        ));
    }
    let token_expiry = at_least_a_second(
        &path("token_expiry"),
        duration_or(
            &path("token_expiry"),
            &raw.token_expiry,
            Duration::from_secs(60),
            MAX_TOKEN_EXPIRY,
        )?,
    )?;
    // # Security
    // A code that lives long gives guessing and a mailbox read later more time.
    if token_expiry > MAX_TOKEN_EXPIRY && !raw.danger_long_token_expiry.unwrap_or(false) {
        return Err(Problem::new(
            path("token_expiry"),
            "is over 10 minutes; shorten it, or set danger_long_token_expiry = true next to it to allow this",
        ));
    }
    let danger = raw.danger_unlimited_attempts;
    Ok(OtpPolicy {
        mode,
        code_length,
        token_expiry,
        max_challenges_sent: bounded(
            path("max_challenges_sent"),
            limit(path("max_challenges_sent"), raw.max_challenges_sent, 3)?,
            danger,
        )?,
        max_allowed_attempts: bounded(
            path("max_allowed_attempts"),
            limit(path("max_allowed_attempts"), raw.max_allowed_attempts, 3)?,
            danger,
        )?,
        allow_inactive_accounts: raw.allow_inactive_accounts.unwrap_or(false),
        activate_inactive_accounts: raw.activate_inactive_accounts.unwrap_or(false),
        link_ttl: at_least_a_second(
            &path("link_ttl"),
            duration_or(
                &path("link_ttl"),
                &raw.link_ttl,
                Duration::from_secs(1),
                Duration::from_secs(120),
            )?,
        )?,
        continue_in_verify_window: raw.continue_in_verify_window.unwrap_or(true),
        user_limit_window: match &raw.user_limit_window {
            Some(t) => whole_seconds(&path("user_limit_window"), t)?,
            None => Duration::from_secs(3600),
        },
    })
}

pub(super) fn email_stage(name: &str, raw: &RawEmailStage) -> Checked<EmailStageConfig> {
    let base = format!("stages.{name}");
    // Once parsed and never read: an operator who set it expected it to show somewhere.
    if raw.name.is_some() {
        return Err(Problem::new(
            format!("{base}.name"),
            format!(
                "is not read: a stage is named by its key ([stages.{name}]); the name users see for the devices it sets up is `friendly_name`"
            ),
        ));
    }
    let own = RawSmtp {
        host: raw.host.clone(),
        port: raw.port,
        username: raw.username.clone(),
        password: raw.password.clone(),
        use_tls: raw.use_tls,
        use_ssl: raw.use_ssl,
        danger_plaintext_password: raw.danger_plaintext_password,
        timeout: raw.timeout.clone(),
        from: raw.from.clone(),
        ca_file: raw.ca_file.clone(),
    };
    let smtp = own_smtp(&base, raw.use_global_settings, &own)?;
    let email_source = match (raw.email_source.as_deref(), &raw.intermediate_attribute) {
        (Some(_), Some(_)) => {
            return Err(Problem::new(
                format!("{base}.intermediate_attribute"),
                "set email_source or intermediate_attribute, not both",
            ))
        }
        (None, Some(key)) if key.trim().is_empty() => {
            return Err(Problem::new(
                format!("{base}.intermediate_attribute"),
                "needs the name of a value an earlier stage puts in the flow",
            ))
        }
        (None, Some(key)) => EmailSource::Intermediate(key.clone()),
        (source, None) => email_source(&base, source)?,
    };
    Ok(EmailStageConfig {
        friendly_name: raw.friendly_name.clone().unwrap_or_else(|| "Email".into()),
        smtp,
        subject: raw
            .subject
            .clone()
            .unwrap_or_else(|| "Portcullis sign-in code".into()),
        configure_flow: raw.configure_flow.clone(),
        email_source,
        registration: raw.registration.unwrap_or(false),
        otp: otp(&base, &raw.otp())?,
    })
}

/// The stage's own connection (`use_global_settings = false`), or `None` for the global one.
pub(super) fn own_smtp(
    base: &str,
    use_global_settings: Option<bool>,
    own: &RawSmtp,
) -> Checked<Option<SmtpSettings>> {
    let has_own = own.host.is_some()
        || own.port.is_some()
        || own.username.is_some()
        || own.password.is_some()
        || own.use_tls.is_some()
        || own.use_ssl.is_some()
        || own.timeout.is_some()
        || own.from.is_some()
        || own.ca_file.is_some();
    Ok(match use_global_settings {
        Some(true) | None if has_own => {
            return Err(Problem::new(
                format!("{base}.use_global_settings"),
                "this stage sets its own connection settings: set use_global_settings = false to use them",
            ))
        }
        Some(true) | None => None,
        Some(false) => Some(smtp(base, own)?),
    })
}

fn email_source(base: &str, source: Option<&str>) -> Checked<EmailSource> {
    Ok(match source {
        None | Some("account") => EmailSource::Account,
        Some(s) => match s.strip_prefix("prompt:") {
            Some(key) if !key.is_empty() => EmailSource::Prompt(key.to_string()),
            _ => {
                return Err(Problem::new(
                    format!("{base}.email_source"),
                    format!("`{s}` is not \"account\" or \"prompt:<field key>\""),
                ))
            }
        },
    })
}

/// Which code options a validation stage sets in its own table. The others follow the stage
/// that enrolled the device, so a code or link sent at sign-in is the kind, length and
/// lifetime its owner promised when it was set up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OwnOtp {
    /// `mode` is set here.
    pub mode: bool,
    /// `code_length` is set here.
    pub code_length: bool,
    /// `token_expiry` is set here.
    pub token_expiry: bool,
    /// `link_ttl` is set here.
    pub link_ttl: bool,
}

impl ValidateStageConfig {
    /// The policy for a device enrolled by a stage with policy `owner` (`None`: that stage is
    /// gone, so this stage's own values apply).
    pub fn policy_for(&self, owner: Option<&OtpPolicy>) -> OtpPolicy {
        let mut p = self.otp.clone();
        if let Some(o) = owner {
            if !self.own.mode {
                p.mode = o.mode;
            }
            if !self.own.code_length {
                p.code_length = o.code_length;
            }
            if !self.own.token_expiry {
                p.token_expiry = o.token_expiry;
            }
            if !self.own.link_ttl {
                p.link_ttl = o.link_ttl;
            }
        }
        p
    }
}

pub(super) fn validate_stage(
    name: &str,
    raw: &RawValidateStage,
    rp: Option<&std::sync::Arc<RelyingPartyConfig>>,
) -> Checked<ValidateStageConfig> {
    let base = format!("stages.{name}");
    let classes = raw
        .device_classes
        .clone()
        .unwrap_or_else(|| vec!["email".into()]);
    if classes.is_empty() {
        return Err(Problem::new(
            format!("{base}.device_classes"),
            "needs at least one class",
        ));
    }
    let device_classes = classes
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let key = format!("{base}.device_classes[{i}]");
            let class = DeviceClass::named(c).ok_or_else(|| {
                Problem::new(
                    &key,
                    format!(
                        "`{c}` is not one of \"email\", \"sms\", \"totp\", \"static\", \"webauthn\", \"duo\""
                    ),
                )
            })?;
            Ok(class)
        })
        .collect::<Checked<Vec<_>>>()?;
    let not_configured_action = match raw.not_configured_action.as_deref().unwrap_or("skip") {
        "skip" => NotConfigured::Skip,
        "deny" => NotConfigured::Deny,
        "configure" => NotConfigured::Configure,
        other => {
            return Err(Problem::new(
                format!("{base}.not_configured_action"),
                format!("`{other}` is not one of \"skip\", \"deny\", \"configure\""),
            ))
        }
    };
    let configuration_stages = match (&raw.configure_stage, &raw.configuration_stages) {
        (Some(_), Some(_)) => {
            return Err(Problem::new(
                format!("{base}.configure_stage"),
                "set configuration_stages or configure_stage, not both",
            ))
        }
        (Some(one), None) => vec![one.clone()],
        (None, Some(list)) => list.clone(),
        (None, None) => Vec::new(),
    };
    if not_configured_action == NotConfigured::Configure && configuration_stages.is_empty() {
        let key = if raw.configuration_stages.is_some() {
            "configuration_stages"
        } else {
            "configure_stage"
        };
        return Err(Problem::new(
            format!("{base}.{key}"),
            "not_configured_action = \"configure\" needs the name of a setup stage here",
        ));
    }
    let last_validation_threshold = match &raw.last_validation_threshold {
        None => Duration::ZERO,
        Some(text) => {
            let key = format!("{base}.last_validation_threshold");
            let d = super::duration::parse_timedelta(text).map_err(|m| Problem::new(&key, m))?;
            // # Security
            // Shorter than one TOTP period, a remembered validation would mostly let a replayed
            // submission of the same sign-in through; 30 s is the least that means anything.
            if !d.is_zero() && d < Duration::from_secs(30) {
                return Err(Problem::new(
                    key,
                    "must be at least 30 seconds (or \"seconds=0\" to always validate)",
                ));
            }
            d
        }
    };
    let webauthn_user_verification = match raw.webauthn_user_verification.as_deref() {
        None | Some("preferred") => UserVerification::Preferred,
        Some("required") => UserVerification::Required,
        Some("discouraged") => UserVerification::Discouraged,
        Some(other) => {
            return Err(Problem::new(
                format!("{base}.webauthn_user_verification"),
                format!("`{other}` is not one of \"required\", \"preferred\", \"discouraged\""),
            ))
        }
    };
    let otp = otp(&base, &raw.otp())?;
    // A text message carries a code, never a link: refused here rather than failing at the
    // first send to a phone.
    if otp.mode == OtpMode::Link {
        if let Some(i) = device_classes.iter().position(|c| *c == DeviceClass::Sms) {
            return Err(Problem::new(
                format!("{base}.device_classes[{i}]"),
                "mode = \"link\" cannot be used with \"sms\": a text message carries a code, not a link; use mode = \"code\" or validate SMS in a stage of its own",
            ));
        }
    }
    // # Security
    // Nothing is sent for an authenticator app or a recovery code, so only the attempt limit
    // stands between a stranger and a million guesses at a six-digit code.
    if otp.max_allowed_attempts == 0 {
        if let Some(c) = device_classes
            .iter()
            .find(|c| matches!(c, DeviceClass::Totp | DeviceClass::Static))
        {
            return Err(Problem::new(
                format!("{base}.max_allowed_attempts"),
                format!(
                    "0 (unlimited) cannot be used with \"{}\": codes typed from an app or a list would have no guessing limit",
                    c.as_str()
                ),
            ));
        }
    }
    let own = OwnOtp {
        mode: raw.mode.is_some(),
        code_length: raw.code_length.is_some(),
        token_expiry: raw.token_expiry.is_some(),
        link_ttl: raw.link_ttl.is_some(),
    };
    let webauthn = match device_classes
        .iter()
        .position(|c| *c == DeviceClass::Webauthn)
    {
        Some(i) => Some(super::webauthn::needed(
            rp,
            &format!("{base}.device_classes[{i}]"),
        )?),
        None => None,
    };
    Ok(ValidateStageConfig {
        device_classes,
        not_configured_action,
        configuration_stages,
        last_validation_threshold,
        webauthn_user_verification,
        otp,
        own,
        webauthn,
    })
}

/// Cross-references that need every stage and flow: `configure_stage` names a setup stage
/// of a class the validation accepts, `configure_flow` names a flow, `email_source =
/// "prompt:KEY"` names a field some prompt stage asks for.
pub(super) fn cross_check(
    stages: &BTreeMap<String, StageConfig>,
    flows: &[FlowConfig],
) -> Checked<()> {
    for (name, st) in stages {
        match st {
            StageConfig::AuthenticatorValidate(v) => {
                for (i, target) in v.configuration_stages.iter().enumerate() {
                    // Named as written: one `configure_stage`, or an entry of the list.
                    let key = if v.configuration_stages.len() == 1 {
                        format!("stages.{name}.configure_stage")
                    } else {
                        format!("stages.{name}.configuration_stages[{i}]")
                    };
                    let class = match stages.get(target) {
                        Some(st) => match st.enrols() {
                            Some(class) => class,
                            None => {
                                return Err(Problem::new(
                                    key,
                                    format!(
                                        "stage `{target}` is a {} stage, not an authenticator setup stage",
                                        st.kind()
                                    ),
                                ))
                            }
                        },
                        None => {
                            return Err(Problem::new(
                                key,
                                format!("no stage named `{target}` under [stages]"),
                            ))
                        }
                    };
                    // The device it enrols would not count for this validation, so the user
                    // would be sent to set one up again at every sign-in.
                    if !v.device_classes.contains(&class) {
                        return Err(Problem::new(
                            key,
                            format!(
                                "stage `{target}` sets up {} devices, but device_classes does not include \"{}\"",
                                class.as_str(),
                                class.as_str()
                            ),
                        ));
                    }
                }
            }
            StageConfig::Identification {
                passkeys: Some(p), ..
            } => {
                let accepts = matches!(stages.get(&p.stage), Some(StageConfig::AuthenticatorValidate(v)) if v.device_classes.contains(&DeviceClass::Webauthn));
                if !accepts {
                    return Err(Problem::new(
                        format!("stages.{name}.webauthn_stage"),
                        format!(
                            "`{}` must name an authenticator_validate stage whose device_classes include \"webauthn\"",
                            p.stage
                        ),
                    ));
                }
            }
            StageConfig::AuthenticatorEmail(e) => {
                if let EmailSource::Prompt(key) = &e.email_source {
                    let asked = stages.values().any(|s| match s {
                        StageConfig::Prompt(p) => p.fields.iter().any(|f| &f.key == key),
                        _ => false,
                    });
                    if !asked {
                        return Err(Problem::new(
                            format!("stages.{name}.email_source"),
                            format!("no prompt stage has a field with key `{key}`"),
                        ));
                    }
                }
            }
            _ => {}
        }
        configure_flow_check(name, st, flows)?;
    }
    Ok(())
}

/// A setup stage's `configure_flow` names a `stage_configuration` flow: the one a signed-in
/// user's settings page links, which runs for that user without asking who they are (an
/// authentication flow would refuse them as already signed in).
fn configure_flow_check(name: &str, st: &StageConfig, flows: &[FlowConfig]) -> Checked<()> {
    let Some(flow) = st.configure_flow() else {
        return Ok(());
    };
    let key = format!("stages.{name}.configure_flow");
    match flows.iter().find(|f| f.slug == flow) {
        None => Err(Problem::new(
            key,
            format!("no flow with slug `{flow}` under [[flows]]"),
        )),
        Some(f) if f.designation != super::Designation::StageConfiguration => Err(Problem::new(
            key,
            format!(
                "flow `{flow}` is designated `{}`; a configuration flow must be `stage_configuration`",
                f.designation.as_str()
            ),
        )),
        Some(_) => Ok(()),
    }
}

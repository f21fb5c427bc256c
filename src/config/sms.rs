//! Validation of the SMS setup stage (providers, accepted numbers, limits) and prompt stages.

use super::email::{duration_or, limit, otp};
use super::error::Problem;
use super::raw::{RawOtp, RawPromptStage, RawSmsStage};
use super::*;
use crate::secret::Secret;

type Checked<T> = Result<T, Problem>;

/// Twilio's public API, unless `api_base` points elsewhere (a region, or a test server).
pub(super) const TWILIO_API: &str = "https://api.twilio.com";
pub(super) const DEFAULT_PHONE_ERROR: &str = "Invalid phone number or missing region code";

fn url(path: String, v: &str) -> Checked<url::Url> {
    let u = url::Url::parse(v)
        .map_err(|e| Problem::new(path.clone(), format!("`{v}` is not a URL ({e})")))?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(Problem::new(path, "must be an http or https URL"));
    }
    Ok(u)
}

fn required<'a>(path: String, v: &'a Option<String>, why: &str) -> Checked<&'a String> {
    v.as_ref()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| Problem::new(path, why.to_string()))
}

/// The generic provider's credentials. `auth_type` and `auth_password` mean nothing without
/// `auth`, and `auth_password` nothing without basic auth: an operator who set them expects
/// them to be sent, so a config that would silently send no (or other) credentials is refused.
fn generic_auth(name: &str, raw: &RawSmsStage) -> Checked<GenericAuth> {
    let p = |k: &str| format!("stages.{name}.{k}");
    let kind = raw.auth_type.as_deref().unwrap_or("bearer");
    if !matches!(kind, "bearer" | "basic") {
        return Err(Problem::new(
            p("auth_type"),
            format!("`{kind}` is not one of \"basic\", \"bearer\""),
        ));
    }
    // An empty token is a mistake (an unset variable in a template, a missing secret), not a
    // request to send none: with bearer it would send `Authorization: Bearer ` and every SMS
    // would fail at the provider.
    if raw.auth.as_deref().is_some_and(|a| a.trim().is_empty()) {
        return Err(Problem::new(
            p("auth"),
            if kind == "basic" {
                "is empty: auth_type = \"basic\" needs the username here (or leave out auth, auth_type and auth_password to send no credentials)"
            } else {
                "is empty: auth_type = \"bearer\" sends it as the token (or leave out auth and auth_type to send no credentials)"
            },
        ));
    }
    let Some(auth) = &raw.auth else {
        if raw.auth_type.is_some() {
            return Err(Problem::new(
                p("auth_type"),
                "is set but `auth` (the token, or the basic-auth username) is not",
            ));
        }
        if raw.auth_password.is_some() {
            return Err(Problem::new(
                p("auth_password"),
                "is set but `auth` (the basic-auth username) is not",
            ));
        }
        return Ok(GenericAuth::None);
    };
    Ok(match kind {
        "basic" => GenericAuth::Basic {
            username: auth.clone(),
            password: raw.auth_password.clone().map(Secret::new),
        },
        _ => {
            if raw.auth_password.is_some() {
                return Err(Problem::new(
                    p("auth_password"),
                    "is only used with auth_type = \"basic\"",
                ));
            }
            GenericAuth::Bearer(Secret::new(auth.clone()))
        }
    })
}

/// Compiles an operator's `pattern`/`phone_pattern` so that it must match the whole value, as
/// HTML's `pattern` attribute does: `\+41` accepts "+41" only, not "+41 anything". The
/// pattern is compiled alone first, so a fragment such as `a)|(b` that is only valid once
/// wrapped is still refused.
pub(super) fn whole_value_regex(path: String, re: &str) -> Checked<regex::Regex> {
    regex::Regex::new(re)
        .map_err(|e| Problem::new(path.clone(), format!("not a valid regex: {e}")))?;
    regex::Regex::new(&format!("^(?:{re})$"))
        .map_err(|e| Problem::new(path, format!("not a valid regex: {e}")))
}

/// A duration string for something kept in whole seconds (a limit window, a lifetime).
/// Anything under a second would become 0 there: a zero-length limit window switches the
/// limit off, a zero lifetime ends at once.
pub(super) fn whole_seconds(path: &str, text: &str) -> Checked<Duration> {
    let d = parse_duration(text).map_err(|r| Problem::new(path, r))?;
    at_least_a_second(path, d)
}

/// Refuses a duration under one second: expiries, windows and cooldowns are kept in whole
/// seconds, where it would round down to zero.
pub(super) fn at_least_a_second(path: &str, d: Duration) -> Checked<Duration> {
    if d < Duration::from_secs(1) {
        return Err(Problem::new(
            path,
            format!("{d:?} is shorter than one second (counted in whole seconds, it would be 0)"),
        ));
    }
    Ok(d)
}

/// `["+41", "+49"]`, as written in the file.
fn prefix_list(prefixes: &[String]) -> String {
    let quoted: Vec<String> = prefixes.iter().map(|p| format!("{p:?}")).collect();
    format!("[{}]", quoted.join(", "))
}

pub(super) fn sms_stage(name: &str, raw: &RawSmsStage) -> Checked<SmsStageConfig> {
    let p = |k: &str| format!("stages.{name}.{k}");
    let provider = provider(name, raw)?;
    if let Some(m) = &raw.mapping {
        let mut env = minijinja::Environment::new();
        env.add_template("mapping", m)
            .map_err(|e| Problem::new(p("mapping"), format!("not a valid template: {e}")))?;
    }
    let allowed_prefixes = allowed_prefixes(name, raw)?;
    let phone_pattern = match &raw.phone_pattern {
        Some(re) => Some(whole_value_regex(p("phone_pattern"), re)?),
        None => None,
    };
    let policy = sms_otp(name, raw)?;
    let timeout = duration_or(
        &p("timeout"),
        &raw.timeout,
        Duration::from_secs(1),
        Duration::from_secs(10),
    )?;
    Ok(SmsStageConfig {
        friendly_name: raw.friendly_name.clone().unwrap_or_else(|| "SMS".into()),
        from_number: raw.from_number.clone(),
        provider,
        timeout,
        verify_only: raw.verify_only.unwrap_or(false),
        mapping: raw.mapping.clone(),
        configure_flow: raw.configure_flow.clone(),
        allowed_prefixes,
        phone_pattern,
        phone_error_message: raw
            .phone_error_message
            .clone()
            .unwrap_or_else(|| DEFAULT_PHONE_ERROR.into()),
        limits: sms_limits(name, raw)?,
        otp: policy,
    })
}

/// The provider and its credentials (kept as [`Secret`]s).
fn provider(name: &str, raw: &RawSmsStage) -> Checked<SmsProvider> {
    let p = |k: &str| format!("stages.{name}.{k}");
    match raw.provider.as_str() {
        "twilio" => Ok(SmsProvider::Twilio {
            account_sid: required(
                p("account_sid"),
                &raw.account_sid,
                "the Twilio provider needs the account SID",
            )?
            .clone(),
            auth_token: required(
                p("auth_token"),
                &raw.auth_token,
                "the Twilio provider needs the auth token",
            )
            .map(|t| Secret::new(t.clone()))?,
            api_base: url(p("api_base"), raw.api_base.as_deref().unwrap_or(TWILIO_API))?,
        }),
        "generic" => {
            let target = url(
                p("url"),
                required(p("url"), &raw.url, "the generic provider needs the API URL")?,
            )?;
            Ok(SmsProvider::Generic {
                url: Secret::new(target),
                auth: generic_auth(name, raw)?,
            })
        }
        other => Err(Problem::new(
            p("provider"),
            format!("`{other}` is not one of \"twilio\", \"generic\""),
        )),
    }
}

/// `allowed_prefixes`: each `+` and 1 to 15 digits.
fn allowed_prefixes(name: &str, raw: &RawSmsStage) -> Checked<Vec<String>> {
    let allowed_prefixes = raw.allowed_prefixes.clone().unwrap_or_default();
    for (i, prefix) in allowed_prefixes.iter().enumerate() {
        let digits = prefix.strip_prefix('+').unwrap_or_default();
        // E.164 numbers have at most 15 digits: a longer prefix matches no number.
        if digits.is_empty() || digits.len() > 15 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Problem::new(
                format!("stages.{name}.allowed_prefixes[{i}]"),
                format!(
                    "`{prefix}` is not a prefix: each is `+` and 1 to 15 digits, like \"+41\" (allowed_prefixes is {})",
                    prefix_list(&allowed_prefixes)
                ),
            ));
        }
    }
    Ok(allowed_prefixes)
}

/// The code policy: SMS carries codes only, so the link options do not apply.
fn sms_otp(name: &str, raw: &RawSmsStage) -> Checked<OtpPolicy> {
    otp(
        &format!("stages.{name}"),
        &RawOtp {
            mode: None,
            code_length: raw.code_length,
            token_expiry: raw.token_expiry.clone(),
            max_challenges_sent: raw.max_challenges_sent,
            max_allowed_attempts: raw.max_allowed_attempts,
            danger_unlimited_attempts: raw.danger_unlimited_attempts,
            danger_long_token_expiry: raw.danger_long_token_expiry,
            allow_inactive_accounts: None,
            activate_inactive_accounts: None,
            link_ttl: None,
            continue_in_verify_window: None,
            user_limit_window: raw.user_limit_window.clone(),
        },
    )
}

/// The limits against SMS pumping.
fn sms_limits(name: &str, raw: &RawSmsStage) -> Checked<SmsLimits> {
    let p = |k: &str| format!("stages.{name}.{k}");
    let window = match &raw.limit_window {
        Some(t) => whole_seconds(&p("limit_window"), t),
        None => Ok(Duration::from_secs(3600)),
    };
    Ok(SmsLimits {
        per_number: limit(p("limit_per_number"), raw.limit_per_number, 5)?,
        per_user: limit(p("limit_per_user"), raw.limit_per_user, 5)?,
        per_client: limit(p("limit_per_client"), raw.limit_per_client, 10)?,
        window: window?,
        global_per_hour: raw.global_limit_per_hour.unwrap_or(200),
        resend_cooldown: match &raw.resend_cooldown {
            // "0s" switches the cooldown off; anything else is kept in whole seconds.
            Some(t) => match humantime::parse_duration(t)
                .map_err(|e| Problem::new(p("resend_cooldown"), e.to_string()))?
            {
                d if d.is_zero() => d,
                d => at_least_a_second(&p("resend_cooldown"), d)?,
            },
            None => Duration::from_secs(30),
        },
    })
}

pub(super) fn prompt_stage(
    name: &str,
    raw: &RawPromptStage,
    policies: &BTreeMap<String, std::sync::Arc<crate::policy::Policy>>,
) -> Checked<PromptStageConfig> {
    if raw.fields.is_empty() {
        return Err(Problem::new(
            format!("stages.{name}.fields"),
            "needs at least one field",
        ));
    }
    let mut seen = std::collections::HashSet::new();
    let fields = raw
        .fields
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let p = |k: &str| format!("stages.{name}.fields[{i}].{k}");
            // `attributes.<key>` is written to the account's attributes by `user_write`.
            let bare = f.key.strip_prefix("attributes.").unwrap_or(&f.key);
            let key_ok = !bare.is_empty()
                && bare.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                && !matches!(f.key.as_str(), "stage" | "component" | "action" | "csrf_token");
            if !key_ok {
                return Err(Problem::new(p("key"), format!("`{}` is not usable as a field key (letters, digits, `_`, optionally after `attributes.`; not a reserved name)", f.key)));
            }
            if !seen.insert(f.key.clone()) {
                return Err(Problem::new(p("key"), format!("field `{}` appears twice", f.key)));
            }
            let kind = f.kind.clone().unwrap_or_else(|| "text".into());
            if !matches!(kind.as_str(), "text" | "email" | "tel" | "password" | "hidden") {
                return Err(Problem::new(p("type"), format!("`{kind}` is not one of text, email, tel, password, hidden")));
            }
            let pattern = match &f.pattern {
                Some(re) => Some(whole_value_regex(p("pattern"), re)?),
                None => None,
            };
            Ok(PromptField {
                key: f.key.clone(),
                label: f.label.clone().unwrap_or_else(|| f.key.clone()),
                kind,
                required: f.required.unwrap_or(true),
                placeholder: f.placeholder.clone(),
                pattern,
                pattern_message: f.pattern_message.clone().unwrap_or_else(|| "This value is not in the expected format.".into()),
                value: f.value.clone(),
            })
        })
        .collect::<Checked<Vec<_>>>()?;
    let validation_policies = super::policies::binding(
        &format!("stages.{name}.validation_policies"),
        &raw.validation_policies,
        None,
        false,
        policies,
    )?;
    Ok(PromptStageConfig {
        fields,
        validation_policies,
    })
}

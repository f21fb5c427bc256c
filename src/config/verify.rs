//! Validation of the `email` (verification) stage and of the recovery links and Curity
//! options that need the whole flow list: `recovery_flow` names a recovery flow, an
//! `intermediate_attribute` is never read by a first factor, and registration mode has a
//! `user_write` stage after it.

use super::email::{limit, otp, own_smtp};
use super::error::Problem;
use super::raw::{RawOtp, RawSmtp, RawVerifyStage};
use super::*;

type Checked<T> = Result<T, Problem>;

/// Kinds whose stage proves who the user is (config's view of `StageKind::authenticates`).
const PROVING: [&str; 7] = [
    "password",
    "authenticator_validate",
    "authenticator_email",
    "authenticator_sms",
    "authenticator_webauthn",
    "authenticator_duo",
    "email",
];

pub(super) fn verify_stage(name: &str, raw: &RawVerifyStage) -> Checked<EmailVerifyConfig> {
    let base = format!("stages.{name}");
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
    let template = raw
        .template
        .clone()
        .unwrap_or_else(|| "email_verify".into());
    // A base name of a file in the templates folder, never a path out of it.
    if template.is_empty()
        || !template
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(Problem::new(
            format!("{base}.template"),
            format!("`{template}` is not a template name (letters, digits, `_`, `-`; the files are <name>.txt and <name>.html)"),
        ));
    }
    // authentik's default: a link. Its lifetime is `token_expiry` (minutes), as is a code's.
    let mode = Some(raw.mode.clone().unwrap_or_else(|| "link".into()));
    let mut otp = otp(
        &base,
        &RawOtp {
            mode,
            code_length: Some(raw.code_length.unwrap_or(8)),
            token_expiry: raw.token_expiry.clone(),
            max_challenges_sent: raw.max_challenges_sent,
            max_allowed_attempts: raw.max_allowed_attempts,
            user_limit_window: raw.user_limit_window.clone(),
            danger_long_token_expiry: raw.danger_long_token_expiry,
            // Refused below whatever the key says: never unlimited here.
            danger_unlimited_attempts: Some(true),
            ..RawOtp::default()
        },
    )?;
    otp.link_ttl = otp.token_expiry;
    // Sends are what bound guessing here (each brings a fresh code): never unlimited.
    otp.max_challenges_sent = limit(
        format!("{base}.max_challenges_sent"),
        raw.max_challenges_sent,
        3,
    )?;
    if otp.max_challenges_sent == 0 || otp.max_allowed_attempts == 0 {
        let key = if otp.max_challenges_sent == 0 {
            "max_challenges_sent"
        } else {
            "max_allowed_attempts"
        };
        return Err(Problem::new(
            format!("{base}.{key}"),
            "0 (unlimited) cannot be used here: anyone may start a recovery for any account",
        ));
    }
    let resend_cooldown = match &raw.resend_cooldown {
        Some(t) => super::sms::whole_seconds(&format!("{base}.resend_cooldown"), t)?,
        None => Duration::from_secs(30),
    };
    Ok(EmailVerifyConfig {
        smtp,
        subject: raw
            .subject
            .clone()
            .unwrap_or_else(|| "Confirm your email address".into()),
        template,
        activate_user_on_success: raw.activate_user_on_success.unwrap_or(false),
        resend_cooldown,
        otp,
    })
}

/// The cross-references of this module's options (see the module docs).
pub(super) fn cross_check(
    stages: &BTreeMap<String, StageConfig>,
    flows: &[FlowConfig],
) -> Checked<()> {
    for (name, st) in stages {
        let recovery = match st {
            StageConfig::Identification { recovery_flow, .. }
            | StageConfig::Password { recovery_flow, .. } => recovery_flow.as_ref(),
            _ => None,
        };
        if let Some(slug) = recovery {
            let key = format!("stages.{name}.recovery_flow");
            match flows.iter().find(|f| &f.slug == slug) {
                None => {
                    return Err(Problem::new(
                        key,
                        format!("no flow with slug `{slug}` under [[flows]]"),
                    ))
                }
                Some(f) if f.designation != Designation::Recovery => {
                    return Err(Problem::new(
                        key,
                        format!(
                            "flow `{slug}` has designation = \"{}\"; a recovery flow needs designation = \"recovery\"",
                            f.designation.as_str()
                        ),
                    ))
                }
                Some(_) => {}
            }
        }
        if let StageConfig::AuthenticatorEmail(e) = st {
            for (i, flow) in flows.iter().enumerate() {
                for (j, _) in flow.stages.iter().enumerate().filter(|(_, s)| *s == name) {
                    let before = &flow.stages[..j];
                    if let EmailSource::Intermediate(attr) = &e.email_source {
                        intermediate(name, attr, before, stages, &flow.slug, i, j)?;
                    }
                    if e.registration && !followed_by_user_write(&flow.stages[j + 1..], stages) {
                        return Err(Problem::new(
                            format!("stages.{name}.registration"),
                            format!(
                                "flow `{}` (flows[{i}].stages[{j}]) has no user_write stage after this one: registration mode creates the account there",
                                flow.slug
                            ),
                        ));
                    }
                }
            }
        }
    }
    Ok(())
}

/// Curity: an intermediate attribute is never read by the first factor, and an earlier stage
/// must put it in the flow.
fn intermediate(
    name: &str,
    attr: &str,
    before: &[String],
    stages: &BTreeMap<String, StageConfig>,
    flow: &str,
    i: usize,
    j: usize,
) -> Checked<()> {
    let key = format!("stages.{name}.intermediate_attribute");
    let kinds = || {
        before
            .iter()
            .filter_map(|s| stages.get(s))
            .map(|s| s.kind())
    };
    if !kinds().any(|k| PROVING.contains(&k)) {
        return Err(Problem::new(
            key,
            format!(
                "`{attr}` cannot be used by the first factor: in flow `{flow}` (flows[{i}].stages[{j}]) no stage before `{name}` proves who the user is (put a password or another authenticator first, or use email_source = \"account\")"
            ),
        ));
    }
    let set_before = before
        .iter()
        .filter_map(|s| stages.get(s))
        .any(|s| match s {
            StageConfig::Prompt(p) => p.fields.iter().any(|f| f.key == attr),
            other => other.kind() == "invitation",
        });
    if !set_before {
        return Err(Problem::new(
            key,
            format!(
                "no stage before `{name}` in flow `{flow}` (flows[{i}].stages[{j}]) puts `{attr}` in the flow (a prompt field with key = \"{attr}\", or an invitation)"
            ),
        ));
    }
    Ok(())
}

fn followed_by_user_write(after: &[String], stages: &BTreeMap<String, StageConfig>) -> bool {
    after
        .iter()
        .filter_map(|s| stages.get(s))
        .any(|s| s.kind() == "user_write")
}

//! One module per stage kind; [`build`] turns a stage's config into the stage.

pub(crate) mod authenticator_duo;
pub(crate) mod authenticator_email;
pub(crate) mod authenticator_sms;
pub(crate) mod authenticator_static;
pub(crate) mod authenticator_totp;
pub(crate) mod authenticator_validate;
pub(crate) mod authenticator_webauthn;
pub(crate) mod captcha;
pub(crate) mod deny;
pub(crate) mod email;
pub(crate) mod identification;
pub(crate) mod invitation;
pub(crate) mod password;
pub(crate) mod prompt;
pub(crate) mod user_delete;
pub(crate) mod user_login;
pub(crate) mod user_logout;
pub(crate) mod user_write;

pub(crate) use user_login::FAILED as SIGN_IN_FAILED;

use super::step::Stage;
use crate::config::StageConfig;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Builds a stage from its config; `all` lets a validation stage build the setup stage it
/// runs inline.
pub(crate) fn build(cfg: &StageConfig, all: &BTreeMap<String, StageConfig>) -> Arc<dyn Stage> {
    match cfg {
        StageConfig::AuthenticatorEmail(c) => {
            Arc::new(authenticator_email::AuthenticatorEmail { cfg: (**c).clone() })
        }
        StageConfig::AuthenticatorSms(c) => {
            Arc::new(authenticator_sms::AuthenticatorSms { cfg: (**c).clone() })
        }
        StageConfig::AuthenticatorDuo(c) => {
            Arc::new(authenticator_duo::AuthenticatorDuo { cfg: (**c).clone() })
        }
        StageConfig::Prompt(c) => Arc::new(prompt::Prompt { cfg: (**c).clone() }),
        StageConfig::AuthenticatorTotp(c) => {
            Arc::new(authenticator_totp::AuthenticatorTotp { cfg: c.clone() })
        }
        StageConfig::AuthenticatorStatic(c) => {
            Arc::new(authenticator_static::AuthenticatorStatic { cfg: c.clone() })
        }
        StageConfig::AuthenticatorValidate(c) => {
            let configure = c
                .configuration_stages
                .iter()
                .filter_map(|target| {
                    let cfg = all.get(target)?;
                    // Only setup stages run inline (the config check refuses anything else).
                    cfg.enrols()?;
                    Some(authenticator_validate::Setup {
                        name: target.clone(),
                        label: setup_label(cfg),
                        stage: build(cfg, all),
                    })
                })
                .collect();
            Arc::new(authenticator_validate::AuthenticatorValidate::new(
                (**c).clone(),
                configure,
                all,
            ))
        }
        StageConfig::Identification {
            user_fields,
            passkeys,
            enrollment_flow,
            recovery_flow,
        } => Arc::new(
            identification::Identification::new(user_fields.clone(), passkeys.as_ref())
                .with_sign_up(enrollment_flow.clone())
                .with_recovery(recovery_flow.clone()),
        ),
        StageConfig::AuthenticatorWebauthn(c) => Arc::new(
            authenticator_webauthn::AuthenticatorWebauthn::new((**c).clone()),
        ),
        StageConfig::Password {
            failed_attempts_before_cancel,
            recovery_flow,
        } => Arc::new(password::Password {
            failed_attempts_before_cancel: *failed_attempts_before_cancel,
            recovery_flow: recovery_flow.clone(),
        }),
        StageConfig::UserLogin { session_duration } => Arc::new(user_login::UserLogin {
            session_duration: *session_duration,
        }),
        StageConfig::Deny { deny_message } => Arc::new(deny::Deny {
            message: deny_message.clone(),
        }),
        StageConfig::UserWrite(c) => Arc::new(user_write::UserWrite { cfg: (**c).clone() }),
        StageConfig::Invitation {
            continue_flow_without_invitation,
        } => Arc::new(invitation::InvitationStage {
            continue_without: *continue_flow_without_invitation,
        }),
        StageConfig::UserDelete => Arc::new(user_delete::UserDelete),
        StageConfig::UserLogout => Arc::new(user_logout::UserLogout),
        StageConfig::Email(c) => Arc::new(email::EmailVerify { cfg: (**c).clone() }),
        StageConfig::Captcha(c) => Arc::new(captcha::Captcha { cfg: (**c).clone() }),
    }
}

/// What a user choosing among setup stages sees for `cfg`: its `friendly_name`.
fn setup_label(cfg: &StageConfig) -> String {
    match cfg {
        StageConfig::AuthenticatorEmail(e) => e.friendly_name.clone(),
        StageConfig::AuthenticatorSms(e) => e.friendly_name.clone(),
        StageConfig::AuthenticatorWebauthn(e) => e.friendly_name.clone(),
        StageConfig::AuthenticatorDuo(e) => e.friendly_name.clone(),
        StageConfig::AuthenticatorTotp(e) => e.friendly_name.clone(),
        StageConfig::AuthenticatorStatic(e) => e.friendly_name.clone(),
        other => other.kind().to_string(),
    }
}

/// The "Forgot password?" link to the recovery flow `slug`, for identification and password
/// stages with `recovery_flow`.
pub(crate) fn forgot_password(slug: &str) -> crate::flow::Link {
    crate::flow::Link {
        href: format!("/.portcullis/flow/{slug}"),
        label: "Forgot password?".into(),
    }
}

//! One module per stage kind; [`build`] turns a stage's config into the stage.

pub(crate) mod authenticator_email;
pub(crate) mod authenticator_sms;
pub(crate) mod authenticator_validate;
pub(crate) mod authenticator_webauthn;
pub(crate) mod deny;
pub(crate) mod identification;
pub(crate) mod password;
pub(crate) mod prompt;
pub(crate) mod user_login;

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
        StageConfig::Prompt(c) => Arc::new(prompt::Prompt { cfg: (**c).clone() }),
        StageConfig::AuthenticatorValidate(c) => {
            let configure = c.configure_stage.as_ref().and_then(|target| {
                let stage: Arc<dyn Stage> = match all.get(target) {
                    Some(StageConfig::AuthenticatorEmail(e)) => {
                        Arc::new(authenticator_email::AuthenticatorEmail { cfg: (**e).clone() })
                    }
                    Some(StageConfig::AuthenticatorSms(e)) => {
                        Arc::new(authenticator_sms::AuthenticatorSms { cfg: (**e).clone() })
                    }
                    Some(StageConfig::AuthenticatorWebauthn(e)) => Arc::new(
                        authenticator_webauthn::AuthenticatorWebauthn::new((**e).clone()),
                    ),
                    _ => return None,
                };
                Some((target.clone(), stage))
            });
            Arc::new(authenticator_validate::AuthenticatorValidate::new(
                (**c).clone(),
                configure,
                all,
            ))
        }
        StageConfig::Identification {
            user_fields,
            passkeys,
        } => Arc::new(identification::Identification::new(
            user_fields.clone(),
            passkeys.as_ref(),
        )),
        StageConfig::AuthenticatorWebauthn(c) => Arc::new(
            authenticator_webauthn::AuthenticatorWebauthn::new((**c).clone()),
        ),
        StageConfig::Password {
            failed_attempts_before_cancel,
        } => Arc::new(password::Password {
            failed_attempts_before_cancel: *failed_attempts_before_cancel,
        }),
        StageConfig::UserLogin { session_duration } => Arc::new(user_login::UserLogin {
            session_duration: *session_duration,
        }),
        StageConfig::Deny { deny_message } => Arc::new(deny::Deny {
            message: deny_message.clone(),
        }),
    }
}

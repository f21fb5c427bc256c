//! One module per stage kind; [`build`] turns a stage's config into the stage.

mod authenticator_email;
mod authenticator_validate;
mod deny;
mod identification;
mod otp_step;
mod password;
mod user_login;

pub use password::{INVALID as INVALID_CREDENTIALS, TOO_MANY as TOO_MANY_ATTEMPTS};
pub use user_login::FAILED as SIGN_IN_FAILED;

use super::Stage;
use crate::config::StageConfig;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Builds a stage from its config; `all` lets a validation stage build the setup stage it
/// runs inline.
pub fn build(cfg: &StageConfig, all: &BTreeMap<String, StageConfig>) -> Arc<dyn Stage> {
    match cfg {
        StageConfig::AuthenticatorEmail(c) => {
            Arc::new(authenticator_email::AuthenticatorEmail { cfg: (**c).clone() })
        }
        StageConfig::AuthenticatorValidate(c) => {
            let configure = c
                .configure_stage
                .as_ref()
                .and_then(|target| match all.get(target) {
                    Some(StageConfig::AuthenticatorEmail(e)) => Some((
                        target.clone(),
                        Arc::new(authenticator_email::AuthenticatorEmail { cfg: (**e).clone() }),
                    )),
                    _ => None,
                });
            Arc::new(authenticator_validate::AuthenticatorValidate {
                cfg: (**c).clone(),
                configure,
            })
        }
        StageConfig::Identification { user_fields } => Arc::new(identification::Identification {
            user_fields: user_fields.clone(),
        }),
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

//! One module per stage kind; [`build`] turns a stage's config into the stage.

mod deny;
mod identification;
mod password;
mod user_login;

pub use password::{INVALID as INVALID_CREDENTIALS, TOO_MANY as TOO_MANY_ATTEMPTS};
pub use user_login::FAILED as SIGN_IN_FAILED;

use super::Stage;
use crate::config::StageConfig;
use std::sync::Arc;

pub fn build(cfg: &StageConfig) -> Arc<dyn Stage> {
    match cfg {
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

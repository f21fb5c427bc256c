//! The typed state of the current stage: one variant per stage kind, each an enum of what that
//! stage waits for. Stored inside the execution, tagged with the kind, under the execution's
//! format version; a state that does not decode ends the execution (see
//! [`super::Execution::spoiled`]), it never becomes a default.

use super::code::CodeState;
use super::stages::authenticator_duo::DuoSetupState;
use super::stages::authenticator_email::EmailState;
use super::stages::authenticator_sms::SmsState;
use super::stages::authenticator_static::StaticState;
use super::stages::authenticator_totp::TotpState;
use super::stages::authenticator_validate::ValidateState;
use super::stages::authenticator_webauthn::WebauthnState;
use super::stages::captcha::CaptchaState;
use super::stages::email::VerifyState;
use super::stages::identification::IdentificationState;
use super::stages::password::PasswordState;
use super::stages::prompt::PromptState;
use super::stages::user_delete::UserDeleteState;
use super::stages::user_logout::UserLogoutState;
use super::stages::user_write::UserWriteState;
use super::StageKind;
use serde::{Deserialize, Serialize};

/// What the current stage waits for.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "stage", rename_all = "snake_case")]
pub(crate) enum StageState {
    Identification(IdentificationState),
    Password(PasswordState),
    Prompt(PromptState),
    AuthenticatorEmail(EmailState),
    AuthenticatorSms(SmsState),
    AuthenticatorDuo(DuoSetupState),
    AuthenticatorValidate(ValidateState),
    AuthenticatorTotp(TotpState),
    AuthenticatorStatic(StaticState),
    AuthenticatorWebauthn(WebauthnState),
    UserWrite(UserWriteState),
    UserDelete(UserDeleteState),
    UserLogout(UserLogoutState),
    Email(VerifyState),
    Captcha(CaptchaState),
}

impl StageState {
    /// The stage kind this state belongs to.
    pub(crate) fn kind(&self) -> StageKind {
        match self {
            StageState::Identification(_) => StageKind::Identification,
            StageState::Password(_) => StageKind::Password,
            StageState::Prompt(_) => StageKind::Prompt,
            StageState::AuthenticatorEmail(_) => StageKind::AuthenticatorEmail,
            StageState::AuthenticatorSms(_) => StageKind::AuthenticatorSms,
            StageState::AuthenticatorDuo(_) => StageKind::AuthenticatorDuo,
            StageState::AuthenticatorValidate(_) => StageKind::AuthenticatorValidate,
            StageState::AuthenticatorTotp(_) => StageKind::AuthenticatorTotp,
            StageState::AuthenticatorStatic(_) => StageKind::AuthenticatorStatic,
            StageState::AuthenticatorWebauthn(_) => StageKind::AuthenticatorWebauthn,
            StageState::UserWrite(_) => StageKind::UserWrite,
            StageState::UserDelete(_) => StageKind::UserDelete,
            StageState::UserLogout(_) => StageKind::UserLogout,
            StageState::Email(_) => StageKind::Email,
            StageState::Captcha(_) => StageKind::Captcha,
        }
    }

    /// The one-time-code machine this state drives, if it is waiting for a code or link.
    pub(crate) fn code(&self) -> Option<&CodeState> {
        match self {
            StageState::AuthenticatorEmail(s) => s.code(),
            StageState::AuthenticatorSms(s) => s.code(),
            StageState::AuthenticatorValidate(s) => s.code(),
            StageState::Email(s) => s.code(),
            _ => None,
        }
    }

    /// As [`StageState::code`], to change.
    pub(crate) fn code_mut(&mut self) -> Option<&mut CodeState> {
        match self {
            StageState::AuthenticatorEmail(s) => s.code_mut(),
            StageState::AuthenticatorSms(s) => s.code_mut(),
            StageState::AuthenticatorValidate(s) => s.code_mut(),
            StageState::Email(s) => s.code_mut(),
            _ => None,
        }
    }
}

macro_rules! state_from {
    ($($ty:ty => $variant:ident),*) => {$(
        impl From<$ty> for StageState {
            fn from(s: $ty) -> Self {
                StageState::$variant(s)
            }
        }
    )*};
}

state_from!(
    IdentificationState => Identification,
    PasswordState => Password,
    PromptState => Prompt,
    EmailState => AuthenticatorEmail,
    SmsState => AuthenticatorSms,
    DuoSetupState => AuthenticatorDuo,
    ValidateState => AuthenticatorValidate,
    TotpState => AuthenticatorTotp,
    StaticState => AuthenticatorStatic,
    WebauthnState => AuthenticatorWebauthn,
    UserWriteState => UserWrite,
    UserDeleteState => UserDelete,
    UserLogoutState => UserLogout,
    VerifyState => Email,
    CaptchaState => Captcha
);

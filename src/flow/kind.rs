//! The stage kinds as a closed set: what the plan records as passed, what a session's `amr`
//! lists, and which of them prove who the user is.

use serde::{Deserialize, Serialize};

/// One kind of stage. Serialised under the names the config's `kind = ...` and the session's
/// `amr` use (`password`, `authenticator_email`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StageKind {
    /// Who is signing in.
    Identification,
    /// A password checked against the account's hash.
    Password,
    /// Operator-defined fields kept for later stages.
    Prompt,
    /// Enrols an e-mail address by a code or link sent there.
    AuthenticatorEmail,
    /// Enrols a phone number by a texted code.
    AuthenticatorSms,
    /// Enrols a passkey or security key (also recorded for a passkey sign-in).
    AuthenticatorWebauthn,
    /// Enrols a Duo Mobile device (or links a Duo account) through Duo's Auth API.
    AuthenticatorDuo,
    /// A code sent to one of the user's enrolled devices.
    AuthenticatorValidate,
    /// Ends the flow with a message.
    Deny,
    /// Ends the flow with a session.
    UserLogin,
    /// Enrols an authenticator app (TOTP) by one valid code.
    AuthenticatorTotp,
    /// Issues a set of recovery codes.
    AuthenticatorStatic,
    /// Writes prompt and invitation data to the pending user, creating one when needed.
    UserWrite,
    /// Accepts an invitation and carries its fixed data into the flow.
    Invitation,
    /// Deletes the signed-in user's account (unenrolment).
    UserDelete,
    /// Ends the current session.
    UserLogout,
    /// Verifies the pending user's address by a link or code (authentik's Email stage).
    Email,
    /// A captcha verified with its provider.
    Captcha,
}

/// Every kind, for parsing and tests.
const ALL: [StageKind; 18] = [
    StageKind::Identification,
    StageKind::Password,
    StageKind::Prompt,
    StageKind::AuthenticatorEmail,
    StageKind::AuthenticatorSms,
    StageKind::AuthenticatorWebauthn,
    StageKind::AuthenticatorDuo,
    StageKind::AuthenticatorValidate,
    StageKind::Deny,
    StageKind::UserLogin,
    StageKind::AuthenticatorTotp,
    StageKind::AuthenticatorStatic,
    StageKind::UserWrite,
    StageKind::Invitation,
    StageKind::UserDelete,
    StageKind::UserLogout,
    StageKind::Email,
    StageKind::Captcha,
];

impl StageKind {
    /// The kind's name: the challenge's `component`, the config's `kind`, the `amr` entry.
    pub fn as_str(self) -> &'static str {
        match self {
            StageKind::Identification => "identification",
            StageKind::Password => "password",
            StageKind::Prompt => "prompt",
            StageKind::AuthenticatorEmail => "authenticator_email",
            StageKind::AuthenticatorSms => "authenticator_sms",
            StageKind::AuthenticatorWebauthn => "authenticator_webauthn",
            StageKind::AuthenticatorDuo => "authenticator_duo",
            StageKind::AuthenticatorValidate => "authenticator_validate",
            StageKind::Deny => "deny",
            StageKind::UserLogin => "user_login",
            StageKind::AuthenticatorTotp => "authenticator_totp",
            StageKind::AuthenticatorStatic => "authenticator_static",
            StageKind::UserWrite => "user_write",
            StageKind::Invitation => "invitation",
            StageKind::UserDelete => "user_delete",
            StageKind::UserLogout => "user_logout",
            StageKind::Email => "email",
            StageKind::Captcha => "captcha",
        }
    }

    /// The kind named `name`; `None` for a name this version does not know.
    pub fn named(name: &str) -> Option<StageKind> {
        ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// Whether passing a stage of this kind proves who the user is: a password, or a code sent
    /// to a destination the account already had (or that was enrolled only after one of these).
    /// Identification, prompts and skips prove nothing; nor do the TOTP and recovery-code
    /// setup stages, which only run once the user proved who they are (they make a new secret
    /// rather than check one the account had).
    pub fn authenticates(self) -> bool {
        matches!(
            self,
            StageKind::Password
                | StageKind::AuthenticatorValidate
                | StageKind::AuthenticatorEmail
                | StageKind::AuthenticatorSms
                | StageKind::AuthenticatorWebauthn
                | StageKind::AuthenticatorDuo
                | StageKind::Email
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_serialise_under_their_config_names() {
        for k in ALL {
            let json = serde_json::to_string(&k).expect("serialises");
            assert_eq!(json, format!("\"{}\"", k.as_str()));
            assert_eq!(StageKind::named(k.as_str()), Some(k));
        }
        assert_eq!(StageKind::named("webauthn"), None);
    }

    #[test]
    fn only_proving_kinds_authenticate() {
        let proving: Vec<_> = ALL.into_iter().filter(|k| k.authenticates()).collect();
        assert_eq!(
            proving,
            [
                StageKind::Password,
                StageKind::AuthenticatorEmail,
                StageKind::AuthenticatorSms,
                StageKind::AuthenticatorWebauthn,
                StageKind::AuthenticatorDuo,
                StageKind::AuthenticatorValidate,
                StageKind::Email
            ]
        );
    }
}

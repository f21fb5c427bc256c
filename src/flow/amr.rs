//! The session's `amr` (RFC 8176 authentication method references): the stage kinds passed, as
//! before, then the RFC 8176 values the proofs earned, so access rules and upstreams can ask
//! for a method rather than a stage.
//!
//! | value | earned by |
//! |---|---|
//! | (none) | a `password` stage: its kind `password` already says so, and `pwd` beside it would only repeat it |
//! | `otp` | a TOTP code (RFC 8176 cites RFC 4226/6238 OTP devices; an e-mailed code or a recovery code earns no value, their `factors` entries say what they were) |
//! | `sms` | a code texted to a registered number (setup or validation) |
//! | `mca` | a Duo push approved on the phone: a second channel (a Duo passcode earns `otp`) |
//! | `hwk` / `swk` | a WebAuthn signature with a hardware- / software-bound key |
//! | `user` / `pin` | WebAuthn user presence / user verification (PIN or biometric) |
//! | `mfa` | the session holds two or more distinct factors |

use super::StageKind;
use crate::session::Factors;

/// Every RFC 8176 value this gateway writes.
const KNOWN: [&str; 8] = ["otp", "sms", "mca", "hwk", "swk", "user", "pin", "mfa"];

/// The values a passed stage of `kind` earns by itself (validation earns its device's
/// through [`super::step::Effect::Methods`]).
pub(super) fn of_kind(kind: StageKind) -> &'static [&'static str] {
    match kind {
        StageKind::AuthenticatorSms => &["sms"],
        _ => &[],
    }
}

/// Adds `new` values to `methods`, each once, in order.
pub(super) fn add(methods: &mut Vec<String>, new: &[&str]) {
    for m in new {
        if !methods.iter().any(|have| have == m) {
            methods.push((*m).to_string());
        }
    }
}

/// The RFC 8176 values of an earlier session's `amr`, carried into a step-up (`mfa` is worked
/// out again when the new session is issued).
pub(super) fn carried(amr: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for a in amr {
        if a != "mfa" && KNOWN.contains(&a.as_str()) {
            add(&mut out, &[a.as_str()]);
        }
    }
    out
}

/// The session's `amr`: stage kinds passed (each once, `user_login` left out), the methods,
/// and `mfa` when `factors` holds two or more.
pub(super) fn session(passed: &[StageKind], methods: &[String], factors: Factors) -> Vec<String> {
    let mut amr: Vec<String> = Vec::with_capacity(passed.len() + methods.len() + 1);
    for &kind in passed {
        if kind != StageKind::UserLogin && !amr.iter().any(|a| a == kind.as_str()) {
            amr.push(kind.as_str().to_string());
        }
    }
    for m in methods {
        if !amr.contains(m) {
            amr.push(m.clone());
        }
    }
    if factors.names().count() >= 2 {
        amr.push("mfa".into());
    }
    amr
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amr_lists_kinds_then_methods_and_mfa_for_two_factors() {
        let passed = [
            StageKind::Identification,
            StageKind::Password,
            StageKind::AuthenticatorValidate,
            StageKind::UserLogin,
        ];
        let methods = vec!["otp".to_string()];
        let two = Factors::PASSWORD.with(Factors::TOTP);
        assert_eq!(
            session(&passed, &methods, two),
            [
                "identification",
                "password",
                "authenticator_validate",
                "otp",
                "mfa"
            ]
        );
        assert!(!session(&passed, &methods, Factors::PASSWORD).contains(&"mfa".to_string()));
    }

    #[test]
    fn a_step_up_carries_known_methods_but_not_mfa_or_kinds() {
        let old: Vec<String> = ["password", "sms", "mfa", "otp", "made-up"]
            .map(String::from)
            .to_vec();
        assert_eq!(carried(&old), ["sms", "otp"]);
    }
}

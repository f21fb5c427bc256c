//! Factors: what a session proves about its holder (a password, a code sent to an email address,
//! a code sent to a phone), and what an app's flow requires of a session before it is let in.

use crate::config::{DeviceClass, StageConfig};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A set of factors, as bits. Small and `Copy`, so the access check compares two bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Factors(u8);

/// Each factor with the name it has in the session's `factors` claim.
const NAMES: [(Factors, &str); 8] = [
    (Factors::PASSWORD, "password"),
    (Factors::EMAIL, "email"),
    (Factors::SMS, "sms"),
    (Factors::TOTP, "totp"),
    (Factors::STATIC, "static"),
    (Factors::WEBAUTHN, "webauthn"),
    (Factors::DUO, "duo"),
    (Factors::PASSKEY, "passkey"),
];

impl Factors {
    /// No factor: what a session with no proof, or an unknown stage kind, holds.
    pub const NONE: Factors = Factors(0);
    /// A `password` stage passed.
    pub const PASSWORD: Factors = Factors(1);
    /// A code (or link) sent to an email address was answered.
    pub const EMAIL: Factors = Factors(2);
    /// A code sent to a phone was answered.
    pub const SMS: Factors = Factors(4);
    /// A code from an authenticator app (TOTP) was answered.
    pub const TOTP: Factors = Factors(8);
    /// A recovery code was used.
    pub const STATIC: Factors = Factors(16);
    /// A passkey or security key signed a challenge.
    pub const WEBAUTHN: Factors = Factors(32);
    /// Duo approved (push or passcode).
    pub const DUO: Factors = Factors(64);
    /// A passkey signed in by itself, with the user verified (PIN or biometrics) on the
    /// authenticator: a multi-factor proof that stands in for the password (always together
    /// with [`Factors::WEBAUTHN`]).
    pub const PASSKEY: Factors = Factors(128);

    /// Both sets together.
    #[must_use]
    pub const fn with(self, other: Factors) -> Factors {
        Factors(self.0 | other.0)
    }

    /// Whether the sets share a factor.
    pub const fn meets(self, other: Factors) -> bool {
        self.0 & other.0 != 0
    }

    /// Whether the set holds every factor of `other`.
    pub const fn contains(self, other: Factors) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether the set holds no factor.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The factor proved by a code sent through a device of this class.
    pub const fn of_class(class: DeviceClass) -> Factors {
        match class {
            DeviceClass::Email => Factors::EMAIL,
            DeviceClass::Sms => Factors::SMS,
            DeviceClass::Totp => Factors::TOTP,
            DeviceClass::Static => Factors::STATIC,
            DeviceClass::Webauthn => Factors::WEBAUTHN,
            DeviceClass::Duo => Factors::DUO,
        }
    }

    /// The factor a passed stage of this kind proves by itself. `authenticator_validate` proves
    /// the class of the device it used, which only the stage knows, so it is `NONE` here.
    pub fn of_kind(kind: &str) -> Factors {
        match kind {
            "password" => Factors::PASSWORD,
            "authenticator_email" | "email" => Factors::EMAIL,
            "authenticator_sms" => Factors::SMS,
            "authenticator_webauthn" => Factors::WEBAUTHN,
            "authenticator_duo" => Factors::DUO,
            "authenticator_totp" => Factors::TOTP,
            "authenticator_static" => Factors::STATIC,
            _ => Factors::NONE,
        }
    }

    /// A factor by its claim name; `None` for a name this version does not know.
    pub fn named(name: &str) -> Option<Factors> {
        NAMES.iter().find(|(_, n)| *n == name).map(|(f, _)| *f)
    }

    /// The claim names of the factors in the set, in a fixed order.
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        NAMES
            .into_iter()
            .filter(move |(f, _)| self.meets(*f))
            .map(|(_, n)| n)
    }

    /// The factors any one of which satisfies a stage (what a session must hold for the stage
    /// to be skipped, and for an app whose flow has it to let the session in): a `password`
    /// stage wants the password, a validation stage a code from one of its `device_classes`,
    /// an email or SMS setup stage a code of its own channel. Other stages prove nothing.
    pub fn satisfying(stage: &StageConfig) -> Factors {
        match stage {
            // A passwordless sign-in (a user-verified passkey at identification) satisfies
            // the password stage it skipped.
            StageConfig::Password { .. } => Factors::PASSWORD.with(Factors::PASSKEY),
            StageConfig::AuthenticatorValidate(v) => v
                .device_classes
                .iter()
                .fold(Factors::NONE, |acc, c| acc.with(Factors::of_class(*c))),
            StageConfig::AuthenticatorEmail(_) | StageConfig::Email(_) => Factors::EMAIL,
            StageConfig::AuthenticatorSms(_) => Factors::SMS,
            StageConfig::AuthenticatorWebauthn(_) => Factors::WEBAUTHN,
            StageConfig::AuthenticatorDuo(_) => Factors::DUO,
            StageConfig::AuthenticatorTotp(_) => Factors::TOTP,
            StageConfig::AuthenticatorStatic(_) => Factors::STATIC,
            StageConfig::Identification { .. }
            | StageConfig::Prompt(_)
            | StageConfig::UserLogin { .. }
            | StageConfig::Deny { .. }
            | StageConfig::UserWrite(_)
            | StageConfig::Invitation { .. }
            | StageConfig::UserDelete
            | StageConfig::UserLogout
            | StageConfig::Captcha(_) => Factors::NONE,
        }
    }
}

/// What a flow requires of a session: for each stage that proves something, the factors any one
/// of which satisfies it. Built once at startup; checking it allocates nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Requirement(Box<[Factors]>);

impl Requirement {
    /// The requirement of a flow made of these stage names (unknown names require nothing; the
    /// config check refuses them before this runs).
    pub fn of_flow(stages: &[String], all: &BTreeMap<String, StageConfig>) -> Requirement {
        Requirement(
            stages
                .iter()
                .filter_map(|s| all.get(s))
                .map(Factors::satisfying)
                .filter(|f| !f.is_empty())
                .collect(),
        )
    }

    /// Whether a session holding `have` satisfies every stage.
    pub fn met_by(&self, have: Factors) -> bool {
        self.0.iter().all(|need| have.meets(*need))
    }

    /// The factors of the unmet stages (for logs).
    pub fn missing(&self, have: Factors) -> Factors {
        self.0
            .iter()
            .filter(|need| !have.meets(**need))
            .fold(Factors::NONE, |acc, f| acc.with(*f))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let f = Factors::PASSWORD.with(Factors::SMS);
        let names: Vec<_> = f.names().collect();
        assert_eq!(names, ["password", "sms"]);
        let back = names
            .iter()
            .filter_map(|n| Factors::named(n))
            .fold(Factors::NONE, Factors::with);
        assert_eq!(back, f);
        assert_eq!(Factors::named("mfa"), None);
    }

    #[test]
    fn flows_require_a_factor_per_stage_that_proves_one() {
        let cfg = crate::config::Config::from_toml(
            r#"
[[apps]]
name = "demo"
hosts = ["localhost"]
upstream = "builtin:whoami"
flow = "strong"
[[flows]]
slug = "strong"
designation = "authentication"
stages = ["id", "ask", "pw", "mfa", "login"]
[[flows]]
slug = "weak"
designation = "authentication"
stages = ["id", "pw", "login"]
[stages.id]
kind = "identification"
[stages.ask]
kind = "prompt"
fields = [{ key = "nick", label = "Nickname", type = "text" }]
[stages.pw]
kind = "password"
[stages.mfa]
kind = "authenticator_validate"
device_classes = ["email"]
not_configured_action = "deny"
[stages.login]
kind = "user_login"
"#,
            std::path::Path::new("test.toml"),
            std::iter::empty(),
        )
        .expect("config");
        let of = |slug: &str| {
            let f = cfg.flows.iter().find(|f| f.slug == slug).expect("flow");
            Requirement::of_flow(&f.stages, &cfg.stages)
        };
        let pw_and_email = Factors::PASSWORD.with(Factors::EMAIL);
        let password = Factors::PASSWORD.with(Factors::PASSKEY);
        assert_eq!(
            of("strong"),
            Requirement(vec![password, Factors::EMAIL].into())
        );
        assert_eq!(of("weak"), Requirement(vec![password].into()));
        // A password-only session passes the weak flow, not the strong one.
        assert!(of("weak").met_by(Factors::PASSWORD));
        assert!(!of("strong").met_by(Factors::PASSWORD));
        assert!(!of("strong").met_by(Factors::EMAIL.with(Factors::SMS)));
        assert!(of("strong").met_by(pw_and_email));
    }

    #[test]
    fn a_passkey_sign_in_stands_in_for_the_password_and_webauthn_checks_only() {
        let cfg = crate::config::Config::from_toml(
            r#"
[webauthn]
rp_id = "localhost"
origins = ["http://localhost:9000"]
[[apps]]
name = "demo"
hosts = ["localhost"]
upstream = "builtin:whoami"
flow = "f"
[[flows]]
slug = "f"
designation = "authentication"
stages = ["id", "pw", "keys", "mail", "login"]
[stages.id]
kind = "identification"
webauthn_stage = "keys"
[stages.pw]
kind = "password"
[stages.keys]
kind = "authenticator_validate"
device_classes = ["webauthn", "email"]
[stages.mail]
kind = "authenticator_validate"
device_classes = ["email"]
[stages.login]
kind = "user_login"
"#,
            std::path::Path::new("test.toml"),
            std::iter::empty(),
        )
        .expect("config");
        let need = |s: &str| Factors::satisfying(&cfg.stages[s]);
        let passkey = Factors::WEBAUTHN.with(Factors::PASSKEY);
        assert!(
            need("pw").meets(passkey),
            "a passkey stands in for the password"
        );
        assert!(
            need("keys").meets(passkey),
            "and for a validation that takes webauthn"
        );
        assert!(!need("mail").meets(passkey), "not for an email code");
        assert!(
            !need("pw").meets(Factors::WEBAUTHN),
            "a security key as second factor is not a password"
        );
        let f = cfg.flows.iter().find(|f| f.slug == "f").expect("flow");
        let r = Requirement::of_flow(&f.stages, &cfg.stages);
        assert!(!r.met_by(passkey), "the email stage still wants its code");
        assert!(r.met_by(passkey.with(Factors::EMAIL)));
        assert_eq!(Factors::named("passkey"), Some(Factors::PASSKEY));
    }

    #[test]
    fn a_requirement_wants_one_factor_per_proving_stage() {
        let any_code = Factors::EMAIL.with(Factors::SMS);
        let r = Requirement(vec![Factors::PASSWORD, any_code].into());
        assert!(!r.met_by(Factors::PASSWORD));
        assert!(!r.met_by(Factors::EMAIL));
        assert!(r.met_by(Factors::PASSWORD.with(Factors::SMS)));
        assert!(r.met_by(Factors::PASSWORD.with(Factors::EMAIL)));
        assert_eq!(r.missing(Factors::PASSWORD), any_code);
        assert!(Requirement::default().met_by(Factors::NONE));
    }
}

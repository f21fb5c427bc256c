//! The WebAuthn ceremonies (registration, authentication, discoverable "passkey" sign-in) over
//! `webauthn-rs-core`: the one module that imports it. Each ceremony is a value started here,
//! kept in the execution's stage state, and consumed by its finish; the browser's part runs
//! in the gateway's `webauthn.js`.
//!
//! # Security
//! The core crate is the webauthn-rs project's own; its high-level wrapper would fix user
//! verification and resident keys, which `authenticator_webauthn` makes configurable. This
//! module keeps the invariants that wrapper keeps:
//! - the relying party id and origins come from config only;
//! - a ceremony's challenge is stored server-side in the execution and used once (every
//!   finish consumes the state; a retry starts a new ceremony);
//! - a credential id registered to anyone is refused for a new registration;
//! - signature counters must grow: a counter at or below the stored one is refused (a cloned
//!   authenticator) and logged without any key material;
//! - a passkey that signs in by itself must have verified the user.

use crate::config::{Attachment, RelyingPartyConfig, ResidentKey, UserVerification};
use crate::store::{Device, DeviceClass, User};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use webauthn_rs_core::error::WebauthnError;
use webauthn_rs_core::proto::{
    AttestationConveyancePreference, AuthenticationState, AuthenticatorAttachment, COSEAlgorithm,
    Credential, Mediation, PublicKeyCredential, RegisterPublicKeyCredential, RegistrationState,
    ResidentKeyRequirement, UserVerificationPolicy,
};
use webauthn_rs_core::WebauthnCore;

/// The most bytes a WebAuthn user handle may have.
const MAX_USER_HANDLE: usize = 64;

/// The ceremonies of one relying party.
pub(crate) struct RelyingParty {
    core: WebauthnCore,
}

/// A registration under way: the options the browser gets, and what checking its answer
/// needs.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Registration {
    /// `{"publicKey": {...}}` for `navigator.credentials.create`.
    pub(crate) options: serde_json::Value,
    state: RegistrationState,
}

/// An authentication under way (a second factor, or a passkey sign-in when discoverable).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Assertion {
    /// `{"publicKey": {...}, "mediation"?}` for `navigator.credentials.get`.
    pub(crate) options: serde_json::Value,
    state: AuthenticationState,
}

/// What a registration enrolled: the credential to store and the authenticator's model.
pub(crate) struct Registered {
    /// The credential, serialised for [`Device::secret`].
    pub(crate) secret: String,
}

/// Why a ceremony's answer was not accepted. The message is for the user; the reason is for
/// the log and never holds key material or the answer itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Not a credential at all (bad JSON, wrong shape).
    Malformed,
    /// The browser answered for another origin, challenge or relying party, or the signature
    /// did not verify.
    Invalid(&'static str),
    /// The user was not verified where this ceremony requires it.
    NotVerified,
    /// The authenticator's model is not in `device_type_restrictions`.
    DeviceType,
    /// The credential is already registered (to this account or another).
    Duplicate,
    /// No account has this credential.
    Unknown,
    /// The signature counter did not grow: a cloned authenticator, or a replayed answer.
    Counter,
    /// The account cannot hold a passkey (its name is longer than a user handle may be).
    Account,
}

impl Refused {
    /// What the page says.
    pub(crate) fn message(self) -> &'static str {
        match self {
            Refused::DeviceType => {
                "This kind of security key or passkey is not allowed here. Use another one."
            }
            Refused::Duplicate => "This passkey is already registered. Use another one.",
            Refused::NotVerified => {
                "Your passkey did not verify you (PIN, fingerprint or face). Try again."
            }
            Refused::Unknown => "This passkey is not registered here. Sign in another way.",
            Refused::Counter => {
                "This passkey was refused because it may have been copied. Use another way to sign in and contact whoever runs this site."
            }
            Refused::Account => "Passkeys cannot be used with this account.",
            Refused::Malformed | Refused::Invalid(_) => {
                "The passkey could not be checked. Try again."
            }
        }
    }

    /// What the log says.
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Refused::Malformed => "malformed credential",
            Refused::Invalid(why) => why,
            Refused::NotVerified => "user not verified",
            Refused::DeviceType => "authenticator model not allowed",
            Refused::Duplicate => "credential already registered",
            Refused::Unknown => "unknown credential",
            Refused::Counter => {
                "signature counter did not increase (possible cloned authenticator)"
            }
            Refused::Account => "username too long for a user handle",
        }
    }

    fn of(e: WebauthnError) -> Refused {
        match e {
            WebauthnError::UserNotVerified => Refused::NotVerified,
            WebauthnError::CredentialPossibleCompromise => Refused::Counter,
            WebauthnError::CredentialNotFound => Refused::Unknown,
            WebauthnError::InvalidRPOrigin => Refused::Invalid("origin not allowed"),
            WebauthnError::InvalidRPIDHash => Refused::Invalid("relying party id mismatch"),
            WebauthnError::MismatchedChallenge => Refused::Invalid("challenge mismatch"),
            WebauthnError::ParseNOMFailure
            | WebauthnError::ParseCBORFailure(_)
            | WebauthnError::ParseJSONFailure(_) => Refused::Malformed,
            _ => Refused::Invalid("ceremony check failed"),
        }
    }
}

/// The options a setup stage gives a registration.
pub(crate) struct RegisterOptions<'a> {
    pub(crate) user_verification: UserVerification,
    pub(crate) resident_key: ResidentKey,
    pub(crate) attachment: Option<Attachment>,
    /// The user's devices of every class; their WebAuthn credentials are excluded.
    pub(crate) existing: &'a [Device],
}

fn policy(uv: UserVerification) -> UserVerificationPolicy {
    match uv {
        UserVerification::Required => UserVerificationPolicy::Required,
        UserVerification::Preferred => UserVerificationPolicy::Preferred,
        UserVerification::Discouraged => UserVerificationPolicy::Discouraged_DO_NOT_USE,
    }
}

/// The credential a WebAuthn device holds; `None` for other classes or unreadable records.
pub(crate) fn credential(d: &Device) -> Option<Credential> {
    if d.class != DeviceClass::Webauthn {
        return None;
    }
    serde_json::from_str(d.secret.as_deref()?).ok()
}

/// The AAGUID (authenticator model) in a registration's attested credential data: after the
/// relying party id hash (32 bytes), the flags (1) and the counter (4), when the flags say
/// attested credential data follows (bit 6).
fn aaguid(attestation_object: &[u8]) -> Option<[u8; 16]> {
    use serde_cbor_2::Value;
    let Value::Map(map) = serde_cbor_2::from_slice::<Value>(attestation_object).ok()? else {
        return None;
    };
    let Some(Value::Bytes(auth_data)) = map.get(&Value::Text("authData".into())) else {
        return None;
    };
    if auth_data.get(32)? & 0x40 == 0 {
        return None;
    }
    auth_data.get(37..53)?.try_into().ok()
}

impl RelyingParty {
    /// The ceremonies of `rp`.
    pub(crate) fn new(rp: &Arc<RelyingPartyConfig>) -> Self {
        Self {
            core: WebauthnCore::new_unsafe_experts_only(
                &rp.name,
                &rp.id,
                rp.origins.clone(),
                rp.timeout,
                Some(false),
                Some(false),
            ),
        }
    }

    /// A registration for `user`, excluding the credentials they already have.
    ///
    /// # Errors
    /// [`Refused::Account`] when the username cannot be a user handle.
    pub(crate) fn start_registration(
        &self,
        user: &User,
        o: &RegisterOptions<'_>,
    ) -> Result<Registration, Refused> {
        // The user handle is the username: it is what the credential names the account by
        // when it signs in by itself, and the authenticator already shows it (`user.name`).
        let handle = user.username.as_bytes();
        if handle.is_empty() || handle.len() > MAX_USER_HANDLE {
            return Err(Refused::Account);
        }
        let exclude = o.existing.iter().filter_map(credential).map(|c| c.cred_id);
        let builder = self
            .core
            .new_challenge_register_builder(handle, &user.username, user.display_name())
            .map_err(|_| Refused::Account)?
            .attestation(AttestationConveyancePreference::None)
            .credential_algorithms(COSEAlgorithm::secure_algs())
            .user_verification_policy(policy(o.user_verification))
            .require_resident_key(o.resident_key == ResidentKey::Required)
            .authenticator_attachment(o.attachment.map(|a| match a {
                Attachment::Platform => AuthenticatorAttachment::Platform,
                Attachment::CrossPlatform => AuthenticatorAttachment::CrossPlatform,
            }))
            .exclude_credentials(Some(exclude.collect()))
            .reject_synchronised_authenticators(false);
        let (mut ccr, state) = self
            .core
            .generate_challenge_register(builder)
            .map_err(Refused::of)?;
        // The core only writes required or discouraged; "preferred" asks authenticators
        // that can store a passkey to do so. A hint to the browser, checked by nothing.
        if o.resident_key == ResidentKey::Preferred {
            if let Some(sel) = ccr.public_key.authenticator_selection.as_mut() {
                sel.resident_key = Some(ResidentKeyRequirement::Preferred);
            }
        }
        let options = serde_json::to_value(&ccr).map_err(|_| Refused::Malformed)?;
        Ok(Registration { options, state })
    }

    /// Checks the browser's answer `response` (JSON) to `reg`. `allowed` is the AAGUID
    /// allow-list (empty: any model); `taken` says whether a credential id is registered to
    /// anyone already.
    ///
    /// # Errors
    /// [`Refused`] with what was wrong.
    pub(crate) fn finish_registration(
        &self,
        reg: &Registration,
        response: &str,
        allowed: &[[u8; 16]],
        taken: impl Fn(&[u8]) -> bool,
    ) -> Result<Registered, Refused> {
        let answer: RegisterPublicKeyCredential =
            serde_json::from_str(response).map_err(|_| Refused::Malformed)?;
        let cred = self
            .core
            .register_credential(&answer, &reg.state, None)
            .map_err(Refused::of)?;
        // Without attestation the model is what the authenticator says it is: this keeps
        // honest devices of other models out, it does not stop a forged one.
        if !allowed.is_empty() {
            let model = aaguid(&answer.response.attestation_object);
            if !model.is_some_and(|m| allowed.contains(&m)) {
                return Err(Refused::DeviceType);
            }
        }
        if taken(&cred.cred_id) {
            return Err(Refused::Duplicate);
        }
        let secret = serde_json::to_string(&cred).map_err(|_| Refused::Malformed)?;
        Ok(Registered { secret })
    }

    /// An authentication with one of `devices` (their WebAuthn credentials), verifying the
    /// user as `uv` says.
    ///
    /// # Errors
    /// [`Refused::Unknown`] when none of them is a WebAuthn credential.
    pub(crate) fn start_assertion(
        &self,
        devices: &[Device],
        uv: UserVerification,
    ) -> Result<Assertion, Refused> {
        let creds: Vec<Credential> = devices.iter().filter_map(credential).collect();
        if creds.is_empty() {
            return Err(Refused::Unknown);
        }
        let builder = self
            .core
            .new_challenge_authenticate_builder(creds, Some(policy(uv)))
            .map_err(Refused::of)?
            .allow_backup_eligible_upgrade(true);
        let (rcr, state) = self
            .core
            .generate_challenge_authenticate(builder)
            .map_err(Refused::of)?;
        let options = serde_json::to_value(&rcr).map_err(|_| Refused::Malformed)?;
        Ok(Assertion { options, state })
    }

    /// What an unknown or ineligible account is shown instead of [`Self::start_assertion`]:
    /// the same options, naming the credential `id` that no authenticator has (see
    /// [`decoy_credential`]: the same for a name at every load, as a real account's is).
    ///
    /// # Errors
    /// Only if the core refuses its own options.
    pub(crate) fn start_decoy(
        &self,
        uv: UserVerification,
        id: [u8; 32],
    ) -> Result<Assertion, Refused> {
        use base64::Engine;
        let builder = self
            .core
            .new_challenge_authenticate_builder(Vec::new(), Some(policy(uv)))
            .map_err(Refused::of)?
            .allow_backup_eligible_upgrade(true);
        let (rcr, state) = self
            .core
            .generate_challenge_authenticate(builder)
            .map_err(Refused::of)?;
        let mut options = serde_json::to_value(&rcr).map_err(|_| Refused::Malformed)?;
        options["publicKey"]["allowCredentials"] = serde_json::json!([{
            "type": "public-key",
            "id": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(id),
        }]);
        Ok(Assertion { options, state })
    }

    /// A passkey sign-in: no user named yet, the browser offers the passkeys it has for this
    /// relying party (in the username field's autofill, or a dialog). The user must be
    /// verified.
    ///
    /// # Errors
    /// Only if the core refuses its own options.
    pub(crate) fn start_discoverable(&self) -> Result<Assertion, Refused> {
        let builder = self
            .core
            .new_challenge_authenticate_builder(Vec::new(), Some(UserVerificationPolicy::Required))
            .map_err(Refused::of)?
            .allow_backup_eligible_upgrade(true);
        let (mut rcr, state) = self
            .core
            .generate_challenge_authenticate(builder)
            .map_err(Refused::of)?;
        rcr.mediation = Some(Mediation::Conditional);
        let options = serde_json::to_value(&rcr).map_err(|_| Refused::Malformed)?;
        Ok(Assertion { options, state })
    }

    /// Checks the answer `response` (JSON) to `a` against the devices of the account it is
    /// for, and returns the device used with its counter and last use brought up to date,
    /// and the RFC 8176 `amr` values the signature earned (`hwk` for a device-bound key,
    /// `swk` for one that may be synced; `pin` when the user was verified, else `user`).
    /// For a discoverable sign-in the account is the one the credential names (see
    /// [`claimed_user`]); the caller passes its devices.
    ///
    /// # Errors
    /// [`Refused`] with what was wrong; [`Refused::Counter`] when the signature counter did
    /// not grow.
    pub(crate) fn finish_assertion(
        &self,
        a: &Assertion,
        response: &PublicKeyCredential,
        devices: &[Device],
        now: i64,
    ) -> Result<(Device, &'static [&'static str]), Refused> {
        let found = devices
            .iter()
            .filter_map(|d| credential(d).map(|c| (d, c)))
            .find(|(_, c)| c.cred_id.as_slice() == response.raw_id.as_slice());
        let Some((device, mut cred)) = found else {
            return Err(Refused::Unknown);
        };
        let result = self
            .core
            .authenticate_single_credential(response, &a.state, &cred)
            .map_err(Refused::of)?;
        if result.counter() > cred.counter {
            cred.counter = result.counter();
        }
        cred.backup_state = result.backup_state();
        cred.backup_eligible = result.backup_eligible();
        let methods: &'static [&'static str] =
            match (result.backup_eligible(), result.user_verified()) {
                (false, true) => &["hwk", "pin"],
                (false, false) => &["hwk", "user"],
                (true, true) => &["swk", "pin"],
                (true, false) => &["swk", "user"],
            };
        let secret = serde_json::to_string(&cred).map_err(|_| Refused::Malformed)?;
        let used = Device {
            secret: Some(secret),
            last_used: Some(now),
            ..device.clone()
        };
        Ok((used, methods))
    }
}

/// Reads a browser's answer to an authentication.
///
/// # Errors
/// [`Refused::Malformed`].
pub(crate) fn parse_assertion(response: &str) -> Result<PublicKeyCredential, Refused> {
    serde_json::from_str(response).map_err(|_| Refused::Malformed)
}

/// The account a discoverable answer names by its user handle (the username).
pub(crate) fn claimed_user(response: &PublicKeyCredential) -> Option<String> {
    let handle = response.get_user_unique_id()?;
    String::from_utf8(handle.to_vec()).ok()
}

/// The credential id the decoy names for the account `name` (as typed, or as stored for an
/// existing but ineligible account), keyed by the store's secret `key`.
///
/// # Security
/// A real account names its own credentials, the same at every page load and after every
/// restart; a random decoy id, new at each load, would tell an unknown name from a real one
/// in two loads. An HMAC of the name (in the form the store compares: usernames in their
/// RFC 8265 form, addresses trimmed, NFC, lower case) under a stored secret is as stable,
/// and without the secret nobody can tell it from a real id.
pub(crate) fn decoy_credential(key: &[u8; 32], name: &str) -> [u8; 32] {
    use hmac::{Hmac, Mac};
    use unicode_normalization::UnicodeNormalization;
    let name = name.trim();
    let compared = if name.contains('@') {
        name.nfc().collect::<String>().to_lowercase()
    } else {
        crate::store::canonical_username(name).unwrap_or_else(|| name.to_lowercase())
    };
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(key).expect("any key length");
    mac.update(b"webauthn-decoy\0");
    mac.update(compared.as_bytes());
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rp() -> RelyingParty {
        RelyingParty::new(&Arc::new(RelyingPartyConfig {
            id: "example.com".into(),
            name: "Example".into(),
            origins: vec![url::Url::parse("https://auth.example.com").unwrap()],
            timeout: std::time::Duration::from_secs(60),
        }))
    }

    #[test]
    fn registration_options_carry_the_configured_choices() {
        let user = User::new("alice", 0);
        let reg = rp()
            .start_registration(
                &user,
                &RegisterOptions {
                    user_verification: UserVerification::Required,
                    resident_key: ResidentKey::Preferred,
                    attachment: Some(Attachment::CrossPlatform),
                    existing: &[],
                },
            )
            .unwrap();
        let pk = &reg.options["publicKey"];
        assert_eq!(pk["rp"]["id"], "example.com");
        assert_eq!(pk["user"]["name"], "alice");
        let sel = &pk["authenticatorSelection"];
        assert_eq!(sel["userVerification"], "required");
        assert_eq!(sel["residentKey"], "preferred");
        assert_eq!(sel["authenticatorAttachment"], "cross-platform");
        assert!(pk["challenge"].as_str().is_some_and(|c| c.len() >= 40));
    }

    #[test]
    fn a_discoverable_sign_in_asks_for_conditional_mediation_and_verification() {
        let a = rp().start_discoverable().unwrap();
        assert_eq!(a.options["mediation"], "conditional");
        assert_eq!(a.options["publicKey"]["userVerification"], "required");
        assert_eq!(a.options["publicKey"]["rpId"], "example.com");
    }

    #[test]
    fn garbage_answers_are_refused_as_malformed() {
        let reg = rp()
            .start_registration(
                &User::new("alice", 0),
                &RegisterOptions {
                    user_verification: UserVerification::Preferred,
                    resident_key: ResidentKey::Discouraged,
                    attachment: None,
                    existing: &[],
                },
            )
            .unwrap();
        for bad in ["", "{}", "[1]", "{\"id\":\"x\"}"] {
            let got = rp().finish_registration(&reg, bad, &[], |_| false);
            assert_eq!(got.err(), Some(Refused::Malformed), "{bad:?}");
            assert_eq!(parse_assertion(bad).err(), Some(Refused::Malformed));
        }
    }

    #[test]
    fn aaguid_is_read_only_from_attested_credential_data() {
        use serde_cbor_2::Value;
        let object = |flags: u8| {
            let mut auth = vec![0u8; 32];
            auth.push(flags);
            auth.extend([0, 0, 0, 1]);
            auth.extend(1u8..=16);
            let mut m = std::collections::BTreeMap::new();
            m.insert(Value::Text("fmt".into()), Value::Text("none".into()));
            m.insert(Value::Text("authData".into()), Value::Bytes(auth));
            serde_cbor_2::to_vec(&Value::Map(m)).unwrap()
        };
        let want: [u8; 16] = core::array::from_fn(|i| i as u8 + 1);
        assert_eq!(aaguid(&object(0x41)), Some(want));
        assert_eq!(aaguid(&object(0x01)), None);
        assert_eq!(aaguid(b"not cbor"), None);
    }
}

//! `authenticator_webauthn`: enrols a passkey or security key. The registration ceremony's
//! state waits in the execution; the device is stored only once the browser's answer
//! verified against it.

use crate::config::WebauthnStageConfig;
use crate::flow::state::StageState;
use crate::flow::step::{mismatch, Cx, Effect, Stage, Transition};
use crate::flow::webauthn::{self, RegisterOptions, Registration, RelyingParty};
use crate::flow::{Challenge, Field, FlowError, Input, StageKind};
use crate::store::{Device, DeviceClass};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// The field the browser's answer comes back in (JSON, as `webauthn.js` or an API client
/// writes it).
pub(crate) const CREDENTIAL: &str = "credential";

/// What the page says when passkeys cannot be set up for this sign-in.
pub(crate) const NOT_SIGNED_IN: &str =
    "A passkey can only be added after you signed in. Start again.";

pub(crate) struct AuthenticatorWebauthn {
    cfg: WebauthnStageConfig,
    rp: RelyingParty,
}

/// Refused registrations in one execution before it ends.
///
/// # Security
/// Each answer costs a look at the user's devices and an attestation check; without a limit
/// one sign-in could be used to submit forged attestations for ever.
pub(crate) const MAX_REGISTRATION_FAILURES: u32 = 5;

/// What the page says when the limit is reached.
pub(crate) const TOO_MANY_REGISTRATIONS: &str =
    "Too many failed attempts to add a passkey. Start again.";

/// What a WebAuthn setup stage waits for.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "waiting", rename_all = "snake_case")]
pub(crate) enum WebauthnState {
    /// The browser's answer to this registration, after `failures` refused ones.
    Registering {
        ceremony: Registration,
        #[serde(default)]
        failures: u32,
    },
}

impl AuthenticatorWebauthn {
    pub(crate) fn new(cfg: WebauthnStageConfig) -> Self {
        let rp = RelyingParty::new(&cfg.rp);
        Self { cfg, rp }
    }

    /// A fresh registration for the execution's (proved) user, after `failures` refused ones.
    fn register(&self, cx: &Cx<'_>, failures: u32) -> Result<Transition, FlowError> {
        // # Security
        // The credential is the user's word until something proved who they are: before
        // that anyone could name an account and add their own passkey to it.
        let user = cx.user()?.filter(|u| u.active);
        let Some(user) = user.filter(|_| cx.exec.authenticated()) else {
            tracing::warn!(stage = cx.name, client = %cx.client, "passkey enrolment before anything proved who the user is: refused (put a password stage first)");
            return Ok(Transition::cancel(NOT_SIGNED_IN));
        };
        let existing = cx.services.store.devices(&user.username)?;
        let options = RegisterOptions {
            user_verification: self.cfg.user_verification,
            resident_key: self.cfg.resident_key_requirement,
            attachment: self.cfg.authenticator_attachment,
            existing: &existing,
        };
        match self.rp.start_registration(&user, &options) {
            Ok(ceremony) => Ok(Transition::stay(WebauthnState::Registering {
                ceremony,
                failures,
            })),
            Err(refused) => {
                tracing::warn!(stage = cx.name, user = %user.username, reason = refused.reason(), "passkey registration could not start");
                Ok(Transition::cancel(refused.message()))
            }
        }
    }
}

#[async_trait]
impl Stage for AuthenticatorWebauthn {
    fn kind(&self) -> StageKind {
        StageKind::AuthenticatorWebauthn
    }

    async fn enter(&self, cx: &Cx<'_>) -> Result<Transition, FlowError> {
        self.register(cx, 0)
    }

    fn challenge(&self, cx: &Cx<'_>, state: &StageState) -> Result<Challenge, FlowError> {
        let StageState::AuthenticatorWebauthn(WebauthnState::Registering { ceremony, .. }) = state
        else {
            return Err(mismatch(cx));
        };
        let field = Field::new(CREDENTIAL, "hidden", "Passkey");
        let mut c = Challenge::new(self.kind().as_str(), vec![field]).titled("Add a passkey");
        c.info.push(
            "Your browser will ask you to create a passkey: on this device (fingerprint, face or screen lock), on your phone, or on a security key.".into(),
        );
        c.webauthn = Some(serde_json::json!({
            "mode": "create",
            "publicKey": ceremony.options["publicKey"],
        }));
        Ok(c)
    }

    async fn submit(
        &self,
        cx: &Cx<'_>,
        state: StageState,
        input: &Input,
    ) -> Result<Transition, FlowError> {
        let StageState::AuthenticatorWebauthn(WebauthnState::Registering { ceremony, failures }) =
            state
        else {
            return Err(mismatch(cx));
        };
        let Some(answer) = input.get(CREDENTIAL).filter(|a| !a.trim().is_empty()) else {
            return Ok(Transition::stay(WebauthnState::Registering {
                ceremony,
                failures,
            }));
        };
        let Some(user) = cx.user()?.filter(|_| cx.exec.authenticated()) else {
            return Ok(Transition::cancel(NOT_SIGNED_IN));
        };
        let existing = cx.services.store.devices(&user.username)?;
        // A credential id names one key; the account's own list is where it must not be twice
        // (passkey sign-in finds the account by its user handle first).
        let taken = |id: &[u8]| {
            existing
                .iter()
                .filter_map(webauthn::credential)
                .any(|c| c.cred_id.as_slice() == id)
        };
        let registered = self.rp.finish_registration(
            &ceremony,
            answer,
            &self.cfg.device_type_restrictions,
            taken,
        );
        match registered {
            Ok(reg) => {
                let device = Device {
                    id: crate::secret::random_token(12),
                    username: user.username.clone(),
                    class: DeviceClass::Webauthn,
                    name: self.cfg.friendly_name.clone(),
                    address: String::new(),
                    address_hash: None,
                    stage: cx.name.to_string(),
                    created: cx.now,
                    last_used: None,
                    secret: Some(reg.secret),
                };
                tracing::info!(stage = cx.name, user = %user.username, device = %device.id, "passkey registered");
                Ok(Transition::pass().and(Effect::PutDevice(device)))
            }
            Err(refused) => {
                tracing::warn!(stage = cx.name, user = %user.username, client = %cx.client, reason = refused.reason(), "passkey registration refused");
                let failures = failures.saturating_add(1);
                if failures >= MAX_REGISTRATION_FAILURES {
                    tracing::info!(stage = cx.name, user = %user.username, client = %cx.client, "passkey enrolment ended after {failures} refused registrations");
                    return Ok(Transition::cancel(TOO_MANY_REGISTRATIONS));
                }
                // The challenge was spent: the next try is a new ceremony.
                let mut next = self.register(cx, failures)?;
                if let crate::flow::step::Next::Stay(_, errors) = &mut next.next {
                    errors.push(refused.message().into());
                }
                Ok(next)
            }
        }
    }
}

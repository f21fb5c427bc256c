//! `authenticator_totp`: enrols an authenticator app. A secret from the OS CSPRNG is shown as
//! a QR code (SVG made here) and as base32 text; the device is stored only once the app shows
//! one valid code, its secret sealed under the device key.

use crate::config::TotpStageConfig;
use crate::flow::state::StageState;
use crate::flow::step::{mismatch, Cx, Effect, Stage, Transition};
use crate::flow::totp::{self, Material};
use crate::flow::{otp, Challenge, Field, FlowError, Input, StageKind, TotpEnrolment};
use crate::secret::SecretString;
use crate::store::{Device, DeviceClass};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// Shown when the stage is reached before the user proved who they are.
pub(crate) const SIGN_IN_FIRST: &str =
    "Sign in before setting up a second factor. Start the sign-in again.";
/// Wrong codes allowed while setting up before the execution ends.
const MAX_ATTEMPTS: u32 = 10;

pub(crate) struct AuthenticatorTotp {
    pub(crate) cfg: TotpStageConfig,
}

/// What a TOTP setup stage waits for.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "waiting", rename_all = "snake_case")]
pub(crate) enum TotpState {
    /// The secret for device `id` is shown (kept sealed for that device, so the execution
    /// record holds no plain secret); waiting for one valid code.
    Confirming {
        id: String,
        sealed: String,
        attempts: u32,
    },
}

/// The user the stage enrols for, only once the execution proved who they are.
///
/// # Security
/// A setup stage makes a new factor for the account. Reached after only an identification,
/// it would let anyone who knows a username add their own authenticator, so it refuses.
pub(crate) fn enrolling_user(cx: &Cx<'_>) -> Result<Option<crate::store::User>, FlowError> {
    if !cx.exec.authenticated() {
        return Ok(None);
    }
    Ok(cx.user()?.filter(|u| u.active))
}

impl AuthenticatorTotp {
    fn secret(cx: &Cx<'_>, id: &str, sealed: &str) -> Result<Vec<u8>, FlowError> {
        let user = cx.exec.user.as_deref().unwrap_or_default();
        cx.services
            .device_key
            .open(sealed, &totp::seal_context(user, id))
            .map_err(|_| FlowError::Stage {
                stage: cx.name.to_string(),
                reason: "the secret being set up does not open under the device key".into(),
            })
    }
}

#[async_trait]
impl Stage for AuthenticatorTotp {
    fn kind(&self) -> StageKind {
        StageKind::AuthenticatorTotp
    }

    async fn enter(&self, cx: &Cx<'_>) -> Result<Transition, FlowError> {
        let Some(user) = enrolling_user(cx)? else {
            return Ok(Transition::cancel(SIGN_IN_FIRST));
        };
        let id = crate::secret::random_token(12);
        let secret = totp::new_secret(self.cfg.params.algorithm);
        let sealed = cx
            .services
            .device_key
            .seal(&secret, &totp::seal_context(&user.username, &id));
        Ok(Transition::stay(TotpState::Confirming {
            id,
            sealed,
            attempts: 0,
        }))
    }

    fn challenge(&self, cx: &Cx<'_>, state: &StageState) -> Result<Challenge, FlowError> {
        let StageState::AuthenticatorTotp(TotpState::Confirming { id, sealed, .. }) = state else {
            return Err(mismatch(cx));
        };
        let secret = Self::secret(cx, id, sealed)?;
        let user = cx.user()?;
        let account = user
            .as_ref()
            .map(|u| u.email.clone().unwrap_or_else(|| u.username.clone()))
            .unwrap_or_default();
        let issuer = &cx.services.site_title;
        let url = totp::otpauth_url(&secret, issuer, &account, &self.cfg.params);
        let field = Field::new("code", "text", "Code from the app").autocomplete("one-time-code");
        let mut c = Challenge::new(self.kind().as_str(), vec![field]);
        c.info.push(format!(
            "Scan this QR code with your authenticator app (or type the key), then enter the {}-digit code it shows.",
            self.cfg.params.digits
        ));
        // The page draws the URL as a QR code; an app scans it.
        c.qr = Some(url.clone());
        c.totp = Some(TotpEnrolment {
            secret: totp::base32(&secret),
            otpauth_url: url,
        });
        Ok(c.titled("Set up your authenticator app"))
    }

    async fn submit(
        &self,
        cx: &Cx<'_>,
        state: StageState,
        input: &Input,
    ) -> Result<Transition, FlowError> {
        let StageState::AuthenticatorTotp(TotpState::Confirming {
            id,
            sealed,
            attempts,
        }) = state
        else {
            return Err(mismatch(cx));
        };
        let Some(typed) = input.get("code").map(|c| SecretString::new(c.as_str())) else {
            return Ok(Transition::stay(TotpState::Confirming {
                id,
                sealed,
                attempts,
            }));
        };
        let secret = Self::secret(cx, &id, &sealed)?;
        let Some(step) = totp::matching_step(&secret, &typed, cx.now, &self.cfg.params) else {
            let attempts = attempts.saturating_add(1);
            if attempts >= MAX_ATTEMPTS {
                return Ok(Transition::cancel(otp::TOO_MANY_ATTEMPTS));
            }
            return Ok(Transition::refuse(
                TotpState::Confirming {
                    id,
                    sealed,
                    attempts,
                },
                otp::WRONG_CODE,
            ));
        };
        let username = cx.exec.user.clone().unwrap_or_default();
        // The confirming code's step counts as used: it cannot be replayed at validation.
        let material = Material {
            sealed,
            params: self.cfg.params,
            last_step: step,
        };
        let device = Device {
            id,
            username,
            class: DeviceClass::Totp,
            name: self.cfg.friendly_name.clone(),
            address: String::new(),
            address_hash: None,
            stage: cx.name.to_string(),
            created: cx.now,
            last_used: Some(cx.now),
            secret: material.to_stored(),
        };
        tracing::info!(user = %device.username, stage = cx.name, outcome = "enrolled", "authenticator app set up");
        Ok(Transition::pass().and(Effect::PutDevice(device)))
    }
}

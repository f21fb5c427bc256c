//! `authenticator_static`: issues a set of recovery codes, shown once; confirming that they
//! were saved stores them (hashed), replacing any earlier set.

use super::authenticator_totp::{enrolling_user, SIGN_IN_FIRST};
use crate::config::StaticStageConfig;
use crate::flow::recovery;
use crate::flow::state::StageState;
use crate::flow::step::{mismatch, Cx, Effect, Stage, Transition};
use crate::flow::{Challenge, Field, FlowError, Input, StageKind};
use crate::secret::SecretString;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub(crate) struct AuthenticatorStatic {
    pub(crate) cfg: StaticStageConfig,
}

/// What a recovery-code setup stage waits for.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "waiting", rename_all = "snake_case")]
pub(crate) enum StaticState {
    /// The new codes are shown until the user says they saved them; only then are they
    /// stored (hashed) and the old set replaced.
    Showing { codes: Vec<SecretString> },
}

#[async_trait]
impl Stage for AuthenticatorStatic {
    fn kind(&self) -> StageKind {
        StageKind::AuthenticatorStatic
    }

    async fn enter(&self, cx: &Cx<'_>) -> Result<Transition, FlowError> {
        if enrolling_user(cx)?.is_none() {
            return Ok(Transition::cancel(SIGN_IN_FIRST));
        }
        let codes = recovery::new_codes(self.cfg.token_count, self.cfg.token_length)
            .into_iter()
            .map(SecretString::new)
            .collect();
        Ok(Transition::stay(StaticState::Showing { codes }))
    }

    fn challenge(&self, cx: &Cx<'_>, state: &StageState) -> Result<Challenge, FlowError> {
        let StageState::AuthenticatorStatic(StaticState::Showing { codes }) = state else {
            return Err(mismatch(cx));
        };
        let saved = Field::new("saved", "hidden", "").value("yes");
        let mut c = Challenge::new(self.kind().as_str(), vec![saved]);
        c.info.push(format!(
            "Save these {} recovery codes somewhere safe (a password manager, or printed). Each works once, when you cannot use your other factors. They are shown only now; any earlier codes stop working when you continue.",
            codes.len()
        ));
        c.recovery_codes = codes.iter().map(|s| s.expose().to_string()).collect();
        Ok(c.titled("Save your recovery codes"))
    }

    async fn submit(
        &self,
        cx: &Cx<'_>,
        state: StageState,
        input: &Input,
    ) -> Result<Transition, FlowError> {
        let StageState::AuthenticatorStatic(StaticState::Showing { codes }) = state else {
            return Err(mismatch(cx));
        };
        if input.get("saved").map(String::as_str) != Some("yes") {
            return Ok(Transition::stay(StaticState::Showing { codes }));
        }
        let username = cx.exec.user.clone().unwrap_or_default();
        let key = cx.services.store.secret(recovery::HASH_SECRET)?;
        let material = recovery::Material {
            hashes: codes
                .iter()
                .map(|c| recovery::hash(&key, &username, c.expose()))
                .collect(),
        };
        let device = crate::store::Device {
            id: recovery::DEVICE_ID.into(),
            username,
            class: crate::store::DeviceClass::Static,
            name: self.cfg.friendly_name.clone(),
            address: String::new(),
            address_hash: None,
            stage: cx.name.to_string(),
            created: cx.now,
            last_used: None,
            secret: material.to_stored(),
        };
        tracing::info!(user = %device.username, stage = cx.name, count = codes.len(), outcome = "issued", "recovery codes issued");
        Ok(Transition::pass().and(Effect::PutDevice(device)))
    }
}

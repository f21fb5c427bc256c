//! TOTP in validation: a code from the user's authenticator app, ±1 step of skew, each time
//! step used once per device (also across concurrent submissions).

use super::class::{Answer, Class, ClassCx, Pending};
use super::typed;
use crate::flow::step::Effect;
use crate::flow::totp::{self, Material};
use crate::flow::{Challenge, FlowError, Input};
use crate::secret::SecretString;
use crate::store::Device;
use async_trait::async_trait;

pub(super) struct Totp;

/// Shown for a code of a time step already used at this device.
pub(crate) const REPLAYED: &str = "That code was already used. Wait for the next one in your app.";
/// Tries to record a step before giving up on a device that keeps changing underneath.
const SWAP_TRIES: usize = 3;

#[async_trait]
impl Class for Totp {
    /// A device whose material does not decode cannot be validated (it is not offered).
    fn usable(&self, device: &Device) -> bool {
        Material::of(device).is_some()
    }

    async fn begin(
        &self,
        cx: &ClassCx<'_>,
        _device: Option<&Device>,
    ) -> Result<(Pending, Vec<Effect>), FlowError> {
        Ok((typed::fresh(cx), Vec::new()))
    }

    fn challenge(&self, _cx: &ClassCx<'_>, _pending: &Pending) -> Result<Challenge, FlowError> {
        Ok(typed::challenge(
            "Code",
            "Open your authenticator app and enter the code it shows.".into(),
            "Enter the code from your authenticator app",
        ))
    }

    /// # Security
    /// The step a code matched must be later than the device's last used step, and is
    /// recorded by compare-and-swap of the device record: of two submissions of one code (or
    /// of two codes of the same or an earlier step) racing, exactly one passes.
    async fn submit(
        &self,
        cx: &ClassCx<'_>,
        device: Option<&Device>,
        pending: Pending,
        input: &Input,
    ) -> Result<Answer, FlowError> {
        let Pending::Typed(state) = pending else {
            return Err(crate::flow::step::mismatch(cx.cx));
        };
        let Some(code) = input.get("code").map(|c| SecretString::new(c.as_str())) else {
            return Ok(Answer::wait(Pending::Typed(state)));
        };
        let user_fails = match typed::count(cx)? {
            Ok(counted) => counted,
            Err(end) => return Ok(end),
        };
        let Some(mut current) = device.cloned() else {
            return Ok(typed::wrong(
                cx,
                state,
                user_fails,
                crate::flow::otp::WRONG_CODE,
            ));
        };
        let store = &cx.cx.services.store;
        for _ in 0..SWAP_TRIES {
            let Some(material) = Material::of(&current) else {
                return Err(broken(cx));
            };
            let secret = cx
                .cx
                .services
                .device_key
                .open(
                    &material.sealed,
                    &totp::seal_context(&current.username, &current.id),
                )
                .map_err(|_| broken(cx))?;
            let Some(step) = totp::matching_step(&secret, &code, cx.cx.now, &material.params)
            else {
                return Ok(typed::wrong(
                    cx,
                    state,
                    user_fails,
                    crate::flow::otp::WRONG_CODE,
                ));
            };
            if step <= material.last_step {
                return Ok(typed::wrong(cx, state, user_fails, REPLAYED));
            }
            let used = Device {
                last_used: Some(cx.cx.now),
                secret: Material {
                    last_step: step,
                    ..material
                }
                .to_stored(),
                ..current.clone()
            };
            if store.swap_device(&current, &used)? {
                typed::right(cx, user_fails)?;
                return Ok(Answer::Proved {
                    effects: Vec::new(),
                    methods: vec!["otp"],
                    notice: Vec::new(),
                });
            }
            // Changed since it was read (another submission used a step): judge again
            // against what is stored now.
            match store
                .devices(&current.username)?
                .into_iter()
                .find(|d| d.id == current.id)
            {
                Some(d) => current = d,
                None => return Ok(typed::wrong(cx, state, user_fails, REPLAYED)),
            }
        }
        Ok(typed::wrong(cx, state, user_fails, REPLAYED))
    }
}

fn broken(cx: &ClassCx<'_>) -> FlowError {
    FlowError::Stage {
        stage: cx.cx.name.to_string(),
        reason: "a TOTP device's secret does not open under the device key".into(),
    }
}

//! Recovery codes in validation: one of the user's codes, used up by compare-and-swap of the
//! device record; the user is told how many are left, and warned when few are.

use super::class::{Answer, Class, ClassCx, Pending};
use super::typed;
use crate::flow::recovery::{self, Material};
use crate::flow::step::Effect;
use crate::flow::{Challenge, FlowError, Input};
use crate::store::Device;
use async_trait::async_trait;

pub(super) struct Recovery;

/// Tries to remove a code before giving up on a set that keeps changing underneath.
const SWAP_TRIES: usize = 5;

/// What the user sees after using a code: how many are left, and a warning when few are.
pub(crate) fn left_notice(left: usize) -> Vec<String> {
    let mut lines = vec![match left {
        1 => "Recovery code accepted. You have 1 recovery code left.".to_string(),
        n => format!("Recovery code accepted. You have {n} recovery codes left."),
    }];
    if left <= recovery::FEW_LEFT {
        lines.push(
            "Warning: you are running out of recovery codes. Create a new set (or set up another factor) soon."
                .into(),
        );
    }
    lines
}

#[async_trait]
impl Class for Recovery {
    /// A set with no code left cannot be used (it is not offered).
    fn usable(&self, device: &Device) -> bool {
        Material::of(device).is_some_and(|m| !m.hashes.is_empty())
    }

    fn label(&self, device: &Device) -> String {
        let left = Material::of(device).map_or(0, |m| m.hashes.len());
        format!("{} ({left} left)", device.name)
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
            "Recovery code",
            "Enter one of your recovery codes. Each code works once.".into(),
            "Use a recovery code",
        ))
    }

    /// # Security
    /// The code's hash is removed from the stored set by compare-and-swap: of two
    /// submissions of one code racing, exactly one passes; the other finds it gone.
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
        let Some(code) = input.get("code") else {
            return Ok(Answer::wait(Pending::Typed(state)));
        };
        let user_fails = match typed::count(cx)? {
            Ok(counted) => counted,
            Err(end) => return Ok(end),
        };
        let wrong = crate::flow::otp::WRONG_CODE;
        let Some(mut current) = device.cloned() else {
            return Ok(typed::wrong(cx, state, user_fails, wrong));
        };
        let store = &cx.cx.services.store;
        let key = store.secret(recovery::HASH_SECRET)?;
        let h = recovery::hash(&key, &current.username, code);
        for _ in 0..SWAP_TRIES {
            let Some(left) = Material::of(&current).and_then(|m| m.without(&h)) else {
                return Ok(typed::wrong(cx, state, user_fails, wrong));
            };
            let count = left.hashes.len();
            let used = Device {
                last_used: Some(cx.cx.now),
                secret: left.to_stored(),
                ..current.clone()
            };
            if store.swap_device(&current, &used)? {
                typed::right(cx, user_fails)?;
                tracing::info!(user = %current.username, left = count, outcome = "success", "recovery code used");
                return Ok(Answer::Proved {
                    effects: Vec::new(),
                    methods: Vec::new(),
                    notice: left_notice(count),
                });
            }
            match store
                .devices(&current.username)?
                .into_iter()
                .find(|d| d.id == current.id)
            {
                Some(d) => current = d,
                None => return Ok(typed::wrong(cx, state, user_fails, wrong)),
            }
        }
        Ok(typed::wrong(cx, state, user_fails, wrong))
    }
}

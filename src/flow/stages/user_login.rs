//! `user_login`: marks the execution to end with a session for the identified user.

use crate::flow::state::StageState;
use crate::flow::step::{mismatch, Cx, Effect, Stage, Transition};
use crate::flow::{Challenge, FlowError, Input, StageKind};
use async_trait::async_trait;
use std::time::Duration;

pub(crate) const FAILED: &str = "Sign-in failed. Start again.";

pub(crate) struct UserLogin {
    pub(crate) session_duration: Duration,
}

#[async_trait]
impl Stage for UserLogin {
    fn kind(&self) -> StageKind {
        StageKind::UserLogin
    }

    fn interactive(&self) -> bool {
        false
    }

    async fn enter(&self, cx: &Cx<'_>) -> Result<Transition, FlowError> {
        // Only a resolved, active account gets a session; anything else means an earlier
        // stage let through someone it should not have, and the flow ends.
        if !cx.user()?.is_some_and(|u| u.active) {
            return Ok(Transition::cancel(FAILED));
        }
        let lifetime_secs = self.session_duration.as_secs() as i64;
        // A completed sign-in: the account's consecutive failures no longer count towards the
        // hard lock (NIST SP 800-63B 5.2.2).
        if let Some(account) = crate::flow::regulated::account(cx.exec) {
            cx.services.regulator.signed_in(account)?;
        }
        Ok(Transition::pass().and(Effect::Login { lifetime_secs }))
    }

    fn challenge(&self, cx: &Cx<'_>, _state: &StageState) -> Result<Challenge, FlowError> {
        Err(mismatch(cx))
    }

    async fn submit(
        &self,
        cx: &Cx<'_>,
        _state: StageState,
        _input: &Input,
    ) -> Result<Transition, FlowError> {
        Err(mismatch(cx))
    }
}

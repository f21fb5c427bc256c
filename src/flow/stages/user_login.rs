//! `user_login`: marks the execution to end with a session for the identified user.

use crate::flow::{Challenge, FlowError, Input, Outcome, Stage, StageContext};
use async_trait::async_trait;
use std::time::Duration;

pub const FAILED: &str = "Sign-in failed. Start again.";

pub struct UserLogin {
    pub session_duration: Duration,
}

#[async_trait]
impl Stage for UserLogin {
    fn kind(&self) -> &'static str {
        "user_login"
    }

    fn interactive(&self) -> bool {
        false
    }

    async fn challenge(&self, _cx: &mut StageContext<'_>) -> Result<Challenge, FlowError> {
        Ok(Challenge::new(self.kind(), Vec::new()))
    }

    async fn submit(
        &self,
        cx: &mut StageContext<'_>,
        _input: &Input,
    ) -> Result<Outcome, FlowError> {
        // Only a resolved, active account gets a session; anything else means an earlier
        // stage let through someone it should not have, and the flow ends.
        let active = match &cx.exec.user {
            Some(name) => cx.services.store.user(name)?.is_some_and(|u| u.active),
            None => false,
        };
        if !active {
            return Ok(Outcome::Cancel(FAILED.into()));
        }
        cx.exec.login = Some(self.session_duration.as_secs() as i64);
        Ok(Outcome::Pass)
    }
}

//! `user_logout`: ends the current session (its token revoked, the cookie cleared); the flow
//! goes on, and ends signed out.
//!
//! # Security
//! As with the gateway's own sign-out, only an answer to a post signs out: reached by a page
//! load (which a cross-site link can cause) the stage asks for a press of "Sign out" first.

use super::user_delete::posted;
use crate::flow::state::StageState;
use crate::flow::step::{mismatch, Cx, Effect, Stage, Transition};
use crate::flow::{Action, Challenge, FlowError, Input, StageKind};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// The action of the confirmation button.
pub(crate) const SIGN_OUT: &str = "sign_out";

/// What a `user_logout` stage waits for.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "waiting", rename_all = "snake_case")]
pub(crate) enum UserLogoutState {
    /// The user to press "Sign out".
    Confirm,
}

pub(crate) struct UserLogout;

#[async_trait]
impl Stage for UserLogout {
    fn kind(&self) -> StageKind {
        StageKind::UserLogout
    }

    async fn enter(&self, cx: &Cx<'_>) -> Result<Transition, FlowError> {
        if posted(cx) {
            return Ok(Transition::pass().and(Effect::EndSession));
        }
        Ok(Transition::stay(UserLogoutState::Confirm))
    }

    fn challenge(&self, cx: &Cx<'_>, state: &StageState) -> Result<Challenge, FlowError> {
        let StageState::UserLogout(UserLogoutState::Confirm) = state else {
            return Err(mismatch(cx));
        };
        let mut c = Challenge::new(self.kind().as_str(), Vec::new()).titled("Sign out");
        c.info.push("Sign out of this browser?".into());
        c.actions.push(Action {
            name: SIGN_OUT.into(),
            label: "Sign out".into(),
        });
        Ok(c)
    }

    async fn submit(
        &self,
        cx: &Cx<'_>,
        state: StageState,
        input: &Input,
    ) -> Result<Transition, FlowError> {
        let StageState::UserLogout(state) = state else {
            return Err(mismatch(cx));
        };
        if input.get("action").is_some_and(|a| a == SIGN_OUT) && posted(cx) {
            return Ok(Transition::pass().and(Effect::EndSession));
        }
        Ok(Transition::stay(state))
    }
}

//! `user_delete`: deletes the pending user (their account and every device), ends all their
//! sessions, and the flow ends signed out. Only in `unenrollment` flows (the config check
//! says so), which run for the signed-in user.
//!
//! # Security
//! The deletion happens only in answer to a post: reached in the answer to an earlier stage
//! (a password, a fresh second factor) it deletes at once, as authentik's stage does; reached
//! by a page load (a link, a cross-site navigation, which carries the `SameSite=Lax` session
//! cookie) it first asks the user to confirm with a button, whose form is CSRF-protected.

use crate::flow::state::StageState;
use crate::flow::step::{mismatch, Cx, Effect, Stage, Transition};
use crate::flow::{Action, Challenge, FlowError, Input, StageKind};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// The action of the confirmation button.
pub(crate) const DELETE: &str = "delete";
/// What the user sees when the flow cannot delete (no signed-in user to delete).
pub(crate) const REFUSED: &str = "Your account could not be deleted. Sign in and try again.";

/// What a `user_delete` stage waits for.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "waiting", rename_all = "snake_case")]
pub(crate) enum UserDeleteState {
    /// The user to press "Delete my account".
    Confirm,
}

pub(crate) struct UserDelete;

/// Whether this step answers a post (a form or a JSON answer), not a page load.
pub(crate) fn posted(cx: &Cx<'_>) -> bool {
    cx.at.method.eq_ignore_ascii_case("POST")
}

impl UserDelete {
    /// Delete now, if the execution runs for a signed-in user who proved who they are.
    fn delete(cx: &Cx<'_>) -> Transition {
        let Some(user) = cx.exec.user.clone() else {
            return Transition::cancel(REFUSED);
        };
        // Only a flow run for the holder of a session (unenrolment) may delete, and only the
        // session's own user: never an account named at an identification stage.
        let own = cx
            .exec
            .carried
            .as_ref()
            .is_some_and(|_| cx.designation == crate::config::Designation::Unenrollment);
        if !own || !cx.exec.authenticated() {
            tracing::warn!(flow = %cx.exec.flow, stage = cx.name, client = %cx.client, "user_delete reached without a signed-in user; nothing deleted");
            return Transition::cancel(REFUSED);
        }
        Transition::pass().and(Effect::DeleteUser(user))
    }
}

#[async_trait]
impl Stage for UserDelete {
    fn kind(&self) -> StageKind {
        StageKind::UserDelete
    }

    async fn enter(&self, cx: &Cx<'_>) -> Result<Transition, FlowError> {
        if posted(cx) {
            return Ok(Self::delete(cx));
        }
        Ok(Transition::stay(UserDeleteState::Confirm))
    }

    fn challenge(&self, cx: &Cx<'_>, state: &StageState) -> Result<Challenge, FlowError> {
        let StageState::UserDelete(UserDeleteState::Confirm) = state else {
            return Err(mismatch(cx));
        };
        let mut c = Challenge::new(self.kind().as_str(), Vec::new()).titled("Delete your account");
        c.info.push(format!(
            "This deletes the account {}, every device it signs in with, and signs it out everywhere. It cannot be undone.",
            cx.exec.user.as_deref().unwrap_or_default()
        ));
        c.actions.push(Action {
            name: DELETE.into(),
            label: "Delete my account".into(),
        });
        Ok(c)
    }

    async fn submit(
        &self,
        cx: &Cx<'_>,
        state: StageState,
        input: &Input,
    ) -> Result<Transition, FlowError> {
        let StageState::UserDelete(state) = state else {
            return Err(mismatch(cx));
        };
        if input.get("action").is_some_and(|a| a == DELETE) && posted(cx) {
            return Ok(Self::delete(cx));
        }
        Ok(Transition::stay(state))
    }
}

//! `password`: checks the identified user's password with argon2id. An unknown user, a
//! disabled one and a wrong password all get the same answer after the same work.

use crate::flow::state::StageState;
use crate::flow::step::{mismatch, Cx, Stage, Transition};
use crate::flow::{Challenge, Field, FlowError, Input, StageKind};
use crate::secret::SecretString;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub(crate) const INVALID: &str = "Invalid username or password.";
pub(crate) const TOO_MANY: &str = "Too many failed attempts. Start the sign-in again.";

pub(crate) struct Password {
    pub(crate) failed_attempts_before_cancel: u32,
    /// The recovery flow "Forgot password?" leads to.
    pub(crate) recovery_flow: Option<String>,
}

/// What a password stage waits for.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "waiting", rename_all = "snake_case")]
pub(crate) enum PasswordState {
    /// The password, after this many wrong ones in this execution.
    Password { failures: u32 },
}

#[async_trait]
impl Stage for Password {
    fn kind(&self) -> StageKind {
        StageKind::Password
    }

    async fn enter(&self, _cx: &Cx<'_>) -> Result<Transition, FlowError> {
        Ok(Transition::stay(PasswordState::Password { failures: 0 }))
    }

    fn challenge(&self, cx: &Cx<'_>, state: &StageState) -> Result<Challenge, FlowError> {
        let StageState::Password(PasswordState::Password { .. }) = state else {
            return Err(mismatch(cx));
        };
        let mut fields =
            vec![Field::new("password", "password", "Password").autocomplete("current-password")];
        if let Some(uid) = &cx.exec.uid {
            // The name as typed, in the same form, so password managers save and fill the pair.
            fields.push(
                Field::new("username", "hidden", "Username")
                    .value(uid.clone())
                    .autocomplete("username")
                    .optional(),
            );
        }
        let mut c = Challenge::new(self.kind().as_str(), fields);
        if let Some(uid) = &cx.exec.uid {
            c.info.push(format!("Signing in as {uid}"));
        }
        if let Some(slug) = &self.recovery_flow {
            c.links.push(super::forgot_password(slug));
        }
        Ok(c)
    }

    async fn submit(
        &self,
        cx: &Cx<'_>,
        state: StageState,
        input: &Input,
    ) -> Result<Transition, FlowError> {
        let StageState::Password(PasswordState::Password { failures }) = state else {
            return Err(mismatch(cx));
        };
        let typed = SecretString::new(input.get("password").cloned().unwrap_or_default());
        let hash = cx
            .user()?
            .filter(|u| u.active)
            .and_then(|u| u.password_hash);
        // Counted before the (slow) check, so parallel guesses cannot all pass a limit.
        let attempt = crate::flow::regulated::attempt(cx.services, cx.exec, cx.client, cx.now)?;
        let ok = cx.services.passwords.verify(typed, hash).await;
        crate::flow::regulated::settle(cx.services, attempt, ok)?;
        let uid = cx.exec.uid.as_deref().unwrap_or_default();
        if ok {
            tracing::debug!(user = %uid, client = %cx.client, "password accepted");
            return Ok(Transition::pass());
        }
        // Saturating: a count read back at the top of its range stays there, never wraps to 0.
        let failures = failures.saturating_add(1);
        crate::flow::policy::record_failure(cx.exec, cx.services, cx.client, cx.now)?;
        tracing::info!(user = %uid, client = %cx.client, outcome = "failure", stage = "password", "sign-in failed");
        crate::audit::sign_in(uid, cx.client, false, cx.name);
        if failures >= self.failed_attempts_before_cancel {
            tracing::info!(user = %uid, client = %cx.client, "sign-in cancelled after {failures} failed attempts");
            return Ok(Transition::cancel(TOO_MANY));
        }
        Ok(Transition::refuse(
            PasswordState::Password { failures },
            INVALID,
        ))
    }
}

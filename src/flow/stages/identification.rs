//! `identification`: who is signing in. It always passes, whether or not the account exists,
//! so this step never tells an attacker which identifiers are real.

use crate::config::UserField;
use crate::flow::state::StageState;
use crate::flow::step::{mismatch, Cx, Effect, Stage, Transition};
use crate::flow::{Challenge, Field, FlowError, Input, StageKind};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// What identification waits for.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "waiting", rename_all = "snake_case")]
pub(crate) enum IdentificationState {
    /// The identifier.
    Uid,
}

pub(crate) struct Identification {
    pub(crate) user_fields: Vec<UserField>,
}

impl Identification {
    fn label(&self) -> &'static str {
        let username = self.user_fields.contains(&UserField::Username);
        let email = self.user_fields.contains(&UserField::Email);
        match (username, email) {
            (true, true) => "Username or email",
            (false, true) => "Email",
            _ => "Username",
        }
    }

    /// The stored name of the account `uid` names. The store compares usernames in their
    /// RFC 8265 form (`ALICE`, `ａｌｉｃｅ` find `alice`) and addresses trimmed, NFC and lower
    /// case, so every spelling reaches one account, and what the rest of the flow, the session
    /// and `Remote-User` carry is the stored name, never the typed one.
    fn resolve(&self, cx: &Cx<'_>, uid: &str) -> Result<Option<String>, FlowError> {
        let store = &cx.services.store;
        for field in &self.user_fields {
            let found = match field {
                UserField::Username => store.user(uid)?,
                UserField::Email if uid.contains('@') => store.user_by_email(uid)?,
                UserField::Email => None,
            };
            if let Some(u) = found {
                return Ok(Some(u.username));
            }
        }
        Ok(None)
    }
}

#[async_trait]
impl Stage for Identification {
    fn kind(&self) -> StageKind {
        StageKind::Identification
    }

    async fn enter(&self, _cx: &Cx<'_>) -> Result<Transition, FlowError> {
        Ok(Transition::stay(IdentificationState::Uid))
    }

    fn challenge(&self, cx: &Cx<'_>, state: &StageState) -> Result<Challenge, FlowError> {
        let StageState::Identification(IdentificationState::Uid) = state else {
            return Err(mismatch(cx));
        };
        let kind = if self.user_fields == [UserField::Email] {
            "email"
        } else {
            "text"
        };
        Ok(Challenge::new(
            self.kind().as_str(),
            vec![Field::new("uid", kind, self.label()).autocomplete("username")],
        ))
    }

    async fn submit(
        &self,
        cx: &Cx<'_>,
        state: StageState,
        input: &Input,
    ) -> Result<Transition, FlowError> {
        let uid = input.get("uid").map(|s| s.trim()).unwrap_or_default();
        if uid.is_empty() || uid.len() > 256 {
            let error = format!("Enter your {}.", self.label().to_lowercase());
            return Ok(Transition::refuse(state, error));
        }
        let user = self.resolve(cx, uid)?;
        Ok(Transition::pass().and(Effect::Identify {
            uid: uid.to_string(),
            user,
        }))
    }
}

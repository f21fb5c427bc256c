//! `identification`: who is signing in. It always passes, whether or not the account exists,
//! so this step never tells an attacker which identifiers are real.

use crate::config::UserField;
use crate::flow::{Challenge, Field, FlowError, Input, Outcome, Stage, StageContext};
use async_trait::async_trait;

pub struct Identification {
    pub user_fields: Vec<UserField>,
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
    fn resolve(&self, cx: &StageContext<'_>, uid: &str) -> Result<Option<String>, FlowError> {
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
    fn kind(&self) -> &'static str {
        "identification"
    }

    async fn challenge(&self, _cx: &mut StageContext<'_>) -> Result<Challenge, FlowError> {
        let kind = if self.user_fields == [UserField::Email] {
            "email"
        } else {
            "text"
        };
        Ok(Challenge::new(
            self.kind(),
            vec![Field::new("uid", kind, self.label()).autocomplete("username")],
        ))
    }

    async fn submit(&self, cx: &mut StageContext<'_>, input: &Input) -> Result<Outcome, FlowError> {
        let uid = input.get("uid").map(|s| s.trim()).unwrap_or_default();
        if uid.is_empty() || uid.len() > 256 {
            return Ok(Outcome::Stay(vec![format!(
                "Enter your {}.",
                self.label().to_lowercase()
            )]));
        }
        cx.exec.user = self.resolve(cx, uid)?;
        cx.exec.uid = Some(uid.to_string());
        Ok(Outcome::Pass)
    }
}

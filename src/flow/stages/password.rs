//! `password`: checks the identified user's password with argon2id. An unknown user, a
//! disabled one and a wrong password all get the same answer after the same work.

use crate::flow::{Challenge, Field, FlowError, Input, Outcome, Stage, StageContext};
use crate::secret::SecretString;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub const INVALID: &str = "Invalid username or password.";
pub const TOO_MANY: &str = "Too many failed attempts. Start the sign-in again.";

pub struct Password {
    pub failed_attempts_before_cancel: u32,
}

#[derive(Default, Serialize, Deserialize)]
struct State {
    failures: u32,
}

#[async_trait]
impl Stage for Password {
    fn kind(&self) -> &'static str {
        "password"
    }

    async fn challenge(&self, cx: &mut StageContext<'_>) -> Result<Challenge, FlowError> {
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
        let mut c = Challenge::new(self.kind(), fields);
        if let Some(uid) = &cx.exec.uid {
            c.info.push(format!("Signing in as {uid}"));
        }
        Ok(c)
    }

    async fn submit(&self, cx: &mut StageContext<'_>, input: &Input) -> Result<Outcome, FlowError> {
        let typed = SecretString::new(input.get("password").cloned().unwrap_or_default());
        let user = match &cx.exec.user {
            Some(name) => cx.services.store.user(name)?,
            None => None,
        };
        let hash = user
            .as_ref()
            .filter(|u| u.active)
            .and_then(|u| u.password_hash.clone());
        let ok = cx.services.passwords.verify(typed, hash).await;
        let uid = cx.exec.uid.clone().unwrap_or_default();
        if ok {
            tracing::debug!(user = %uid, client = %cx.client, "password accepted");
            return Ok(Outcome::Pass);
        }
        let mut st: State = cx.state();
        st.failures += 1;
        cx.set_state(&st)?;
        tracing::info!(user = %uid, client = %cx.client, outcome = "failure", stage = "password", "sign-in failed");
        if st.failures >= self.failed_attempts_before_cancel {
            tracing::info!(user = %uid, client = %cx.client, "sign-in cancelled after {} failed attempts", st.failures);
            return Ok(Outcome::Cancel(TOO_MANY.into()));
        }
        Ok(Outcome::Stay(vec![INVALID.into()]))
    }
}

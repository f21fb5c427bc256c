//! `deny`: ends the flow with a message, for flows that must refuse (e.g. after a policy).

use crate::flow::{Challenge, FlowError, Input, Outcome, Stage, StageContext};
use async_trait::async_trait;

pub struct Deny {
    pub message: String,
}

#[async_trait]
impl Stage for Deny {
    fn kind(&self) -> &'static str {
        "deny"
    }

    fn interactive(&self) -> bool {
        false
    }

    async fn challenge(&self, _cx: &mut StageContext<'_>) -> Result<Challenge, FlowError> {
        Ok(Challenge::new(self.kind(), Vec::new()))
    }

    async fn submit(
        &self,
        _cx: &mut StageContext<'_>,
        _input: &Input,
    ) -> Result<Outcome, FlowError> {
        Ok(Outcome::Cancel(self.message.clone()))
    }
}

//! `deny`: ends the flow with a message, for flows that must refuse (e.g. after a policy).

use crate::flow::state::StageState;
use crate::flow::step::{mismatch, Cx, Stage, Transition};
use crate::flow::{Challenge, FlowError, Input, StageKind};
use async_trait::async_trait;

pub(crate) struct Deny {
    pub(crate) message: String,
}

#[async_trait]
impl Stage for Deny {
    fn kind(&self) -> StageKind {
        StageKind::Deny
    }

    fn interactive(&self) -> bool {
        false
    }

    async fn enter(&self, _cx: &Cx<'_>) -> Result<Transition, FlowError> {
        Ok(Transition::cancel(self.message.clone()))
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

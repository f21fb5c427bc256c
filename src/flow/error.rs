//! Why a flow step could not be taken.

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    #[error("no flow named `{0}`")]
    UnknownFlow(String),
    /// The response names a stage or field that is not the current stage's: a skip or a replay.
    #[error("the response does not answer the current stage `{expected}`")]
    StageMismatch { expected: String },
    #[error("a required field `{0}` is missing")]
    MissingField(String),
    #[error("the execution state could not be read: {0}")]
    Corrupt(#[from] serde_json::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("stage `{stage}` failed: {reason}")]
    Stage { stage: String, reason: String },
    /// A write handed to the blocking pool never reported back (the pool is shutting down).
    #[error("saving the sign-in did not complete: {0}")]
    Interrupted(#[from] tokio::task::JoinError),
}

//! Why a flow step could not be taken.

use crate::store::StoreError;

/// Why the engine could not take a step. Answers a user gives (a wrong password, a wrong code)
/// are not errors: they come back as a step with a message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FlowError {
    /// No flow is configured under this name.
    #[error("no flow named `{0}`")]
    UnknownFlow(String),
    /// The response names a stage or field that is not the current stage's: a skip or a replay.
    #[error("the response does not answer the current stage `{expected}`")]
    StageMismatch {
        /// The stage that may be answered now.
        expected: String,
    },
    /// A stage was handed a state of another kind (the engine checks first; a bug if seen).
    #[error("stage `{stage}` was given a state that is not its own")]
    StateMismatch {
        /// The configured stage name.
        stage: String,
    },
    /// A record could not be encoded or read.
    #[error("the execution state could not be read: {0}")]
    Corrupt(#[from] serde_json::Error),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stage could not do its part (no account to enrol a device for, a device gone).
    #[error("stage `{stage}` failed: {reason}")]
    Stage {
        /// The configured stage name.
        stage: String,
        /// For the operator's log; never a secret.
        reason: String,
    },
    /// The flow is only for a signed-in user (stage configuration, unenrolment) and the
    /// request carries no valid session: sign in first, then come back.
    #[error("flow `{flow}` needs a signed-in user")]
    SignInRequired {
        /// The flow's slug.
        flow: String,
    },
    /// A signed-in user started a flow that is not for them: an authentication flow their
    /// session already satisfies (nothing to step up), or an enrolment or recovery flow.
    #[error("flow `{flow}` is not for a signed-in user")]
    AlreadySignedIn {
        /// The flow's slug.
        flow: String,
        /// What the flow is for (the answer differs: a sign-in goes on to `rd`).
        designation: crate::config::Designation,
        /// Where the user was going (already validated).
        rd: String,
    },
    /// A write handed to the blocking pool never reported back (the pool is shutting down).
    #[error("saving the sign-in did not complete: {0}")]
    Interrupted(#[from] tokio::task::JoinError),
    /// The client's address already has as many unfinished sign-ins stored as
    /// `[session] max_flows_per_client` allows; one frees in `retry_after` seconds at most.
    #[error("too many unfinished sign-ins from this address (at most {max})")]
    TooManyFlows {
        /// The cap.
        max: usize,
        /// Seconds until the oldest of them expires.
        retry_after: i64,
    },
    /// Another request (on this gateway or another replica) answered this step of the
    /// execution first; nothing this one did counts. The user continues from where that
    /// answer left the sign-in.
    #[error("this step of the sign-in was already answered by another request")]
    AlreadyAnswered,
    /// Too many failed attempts (`[regulation]`): this client may try again in `retry_after`
    /// seconds. Says nothing about whether the account exists.
    #[error("too many failed attempts; retry after {retry_after} s")]
    Regulated {
        /// Seconds until the ban ends.
        retry_after: u64,
    },
}

//! One run of a flow for one browser: the state persisted between steps.

use crate::session::Factors;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// An execution's state. It is stored under an unguessable id carried in the flow cookie and
/// only ever moves forward: `stage` is the index of the one stage that may be answered.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Execution {
    #[serde(skip)]
    pub id: String,
    pub flow: String,
    /// Where to go when the flow completes; validated before it is stored.
    pub rd: String,
    pub stage: usize,
    pub created: i64,
    pub expires: i64,
    /// Binds HTML form posts to this execution.
    pub csrf: String,
    /// What the user typed to identify themselves.
    #[serde(default)]
    pub uid: Option<String>,
    /// The account `uid` resolved to, if any. Never shown to the user, so a wrong identifier
    /// and a wrong password look the same.
    #[serde(default)]
    pub user: Option<String>,
    /// Stage kinds passed, in order: the session's `amr`.
    #[serde(default)]
    pub passed: Vec<String>,
    /// Values collected by prompt stages, for later stages to use.
    #[serde(default)]
    pub prompt_data: BTreeMap<String, String>,
    /// Per-stage private state, keyed by stage name.
    #[serde(default)]
    pub stage_state: BTreeMap<String, serde_json::Value>,
    /// Set by `user_login`: the session to issue at the end, and for how long (seconds).
    #[serde(default)]
    pub login: Option<i64>,
    /// Client address the execution was started from (for limits and logs).
    #[serde(default)]
    pub client: String,
    /// The factors proved so far, those carried from a session included.
    #[serde(default)]
    pub factors: Factors,
    /// The session this execution steps up, when it was started by a signed-in user.
    #[serde(default)]
    pub carried: Option<Carried>,
}

/// What a step-up execution takes from the session it started with. The user is already
/// known (`uid`, `user` are the session's `sub`), identification is skipped, and so is every
/// stage one of these factors satisfies.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Carried {
    /// The session replaced (and revoked) once the step-up issues its own.
    pub sid: String,
    /// Its expiry: the new session never outlives the proofs it carries over.
    pub exp: i64,
    /// Its issue time in milliseconds, to find it revoked by a revocation of all the user's
    /// sessions (0 in executions that predate it: any such revocation then ends it).
    #[serde(default)]
    pub iat_ms: i64,
    pub factors: Factors,
    pub flows: Vec<String>,
}

/// Stage kinds whose pass proves who the user is: a password, or a code sent to a destination
/// the account already had (or that was enrolled only after one of these). Identification,
/// prompts and skips prove nothing.
const AUTHENTICATING: &[&str] = &[
    "password",
    "authenticator_validate",
    "authenticator_email",
    "authenticator_sms",
];

impl Execution {
    /// Whether a stage that proves who the user is has passed in this execution.
    ///
    /// # Security
    /// Setup stages accept a destination the user types (or gave to a prompt) only when this
    /// holds: otherwise anyone could name an account without an address, type their own, and
    /// sign in as it. And no session is issued without it.
    pub fn authenticated(&self) -> bool {
        self.passed
            .iter()
            .any(|k| AUTHENTICATING.contains(&k.as_str()))
    }
}

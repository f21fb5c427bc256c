//! One run of a flow for one browser: the state persisted between steps.

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
}

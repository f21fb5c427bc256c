//! The contract every stage kind fulfils, and what a stage may touch while it runs.

use super::{Challenge, Execution, FlowError};
use crate::clock::Clock;
use crate::config::SmsLimits;
use crate::http_client::HttpClient;
use crate::notify::{EmailSender, MessageTemplates, SmsSender};
use crate::password::PasswordHasher;
use crate::store::Store;
use async_trait::async_trait;
use serde::{de::DeserializeOwned, Serialize};
use std::collections::BTreeMap;
use std::collections::HashMap;
use std::sync::Arc;

/// Field values a user submitted, by field name. Values are taken as typed; stages trim what
/// they need to.
pub type Input = BTreeMap<String, String>;

/// The outside world a stage may use, injected so stages never reach for a global.
#[derive(Clone)]
pub struct Services {
    /// Where executions, users, devices, counters and tickets live.
    pub store: Arc<dyn Store>,
    /// Password hashing and checking (argon2id off the request workers).
    pub passwords: Arc<dyn PasswordHasher>,
    /// The time every expiry, window and timestamp is read from.
    pub clock: Arc<dyn Clock>,
    /// Outgoing HTTP, for provider verifications (captcha, Duo).
    pub http: Arc<dyn HttpClient>,
    /// E-mail delivery per setup stage name; validation reaches a device through the channel
    /// of the stage that enrolled it.
    pub email: HashMap<String, Arc<EmailChannel>>,
    /// The global `[email]` connection, for devices whose setup stage is gone.
    pub default_email: Arc<EmailChannel>,
    /// SMS delivery per SMS setup stage name.
    pub sms: HashMap<String, Arc<SmsChannel>>,
    pub templates: Arc<MessageTemplates>,
    pub site_title: String,
}

/// How to reach a phone: a provider plus the limits that protect it from pumping.
pub struct SmsChannel {
    pub sender: Arc<dyn SmsSender>,
    pub limits: SmsLimits,
}

/// How to reach an e-mail address: a sender plus the subject its messages carry.
pub struct EmailChannel {
    pub sender: Arc<dyn EmailSender>,
    pub subject: String,
}

impl Services {
    /// The channel for devices enrolled by `stage`.
    pub fn email_channel(&self, stage: &str) -> &Arc<EmailChannel> {
        self.email.get(stage).unwrap_or(&self.default_email)
    }

    /// The channel for phones enrolled by `stage`, or any SMS channel when that stage is gone.
    pub fn sms_channel(&self, stage: &str) -> Option<&Arc<SmsChannel>> {
        self.sms.get(stage).or_else(|| self.sms.values().next())
    }
}

/// What a stage sees during one step.
pub struct StageContext<'a> {
    pub exec: &'a mut Execution,
    pub services: &'a Services,
    /// The stage's configured name (its key under `[stages]`).
    pub name: &'a str,
    /// The client's address, for logs and limits.
    pub client: &'a str,
    /// `scheme://host[:port]` the user is signing in on, for links sent to them.
    pub origin: &'a str,
}

impl StageContext<'_> {
    /// This stage's private state in the execution, or its default.
    pub fn state<T: DeserializeOwned + Default>(&self) -> T {
        self.exec
            .stage_state
            .get(self.name)
            .and_then(|v| serde_json::from_value(v.clone()).ok())
            .unwrap_or_default()
    }

    pub fn set_state<T: Serialize>(&mut self, v: &T) -> Result<(), FlowError> {
        let v = serde_json::to_value(v)?;
        self.exec.stage_state.insert(self.name.to_string(), v);
        Ok(())
    }
}

/// A stage's verdict on a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Done; the flow moves to the next stage.
    Pass,
    /// Nothing to do for this user (e.g. no device to validate and `skip` configured): move on
    /// without recording the stage in `amr`.
    Skip,
    /// Not done; ask again, showing these errors.
    Stay(Vec<String>),
    /// The execution ends here with this message (too many attempts, access denied).
    Cancel(String),
}

/// One kind of step in a flow.
///
/// A stage presents a [`Challenge`] and judges the response. Stages that need no input
/// (`user_login`, `deny`) say so with [`Stage::interactive`] and are run by the engine as soon
/// as they are reached.
#[async_trait]
pub trait Stage: Send + Sync {
    /// The stage kind, shown as the challenge's `component` and recorded in `amr`.
    fn kind(&self) -> &'static str;

    fn interactive(&self) -> bool {
        true
    }

    /// The question for the current state. It may be asked repeatedly and must not consume
    /// anything the user has not answered yet.
    async fn challenge(&self, cx: &mut StageContext<'_>) -> Result<Challenge, FlowError>;

    /// Lets a stage finish without a response when something happened elsewhere (a magic link
    /// confirmed in another tab) or nothing is needed for this user. Asked before every
    /// challenge.
    async fn resume(&self, _cx: &mut StageContext<'_>) -> Result<Option<Outcome>, FlowError> {
        Ok(None)
    }

    /// Judges a response. Only called with input that the current challenge accepts.
    async fn submit(&self, cx: &mut StageContext<'_>, input: &Input) -> Result<Outcome, FlowError>;
}

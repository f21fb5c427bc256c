//! The outside world a stage may use ([`Services`]): the store, the password hasher, and the
//! channels codes travel by.

use super::FlowError;
use crate::clock::Clock;
use crate::config::SmsLimits;
use crate::http_client::HttpClient;
use crate::notify::{EmailSender, MessageTemplates, SmsSender};
use crate::password::PasswordHasher;
use crate::store::Store;
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
    /// The texts of the messages codes and links travel in.
    pub templates: Arc<MessageTemplates>,
    /// Named in messages ("your code for ...").
    pub site_title: String,
    /// Judges the policies bound to flows and stages.
    pub policies: Arc<dyn crate::policy::Judge>,
    /// Seals device secrets (TOTP keys) at rest, apart from the session keys.
    pub device_key: Arc<crate::device_key::DeviceKey>,
    /// Ends sessions (an account deleted, a sign-out from a flow).
    pub sessions: Arc<dyn SessionRevoker>,
    /// Counts failed passwords and codes and keeps the bans (`[regulation]`).
    pub regulator: Arc<crate::regulation::Regulator>,
}

/// Ends sessions at once, in the gateway's in-memory revocation list and its durable copy:
/// a stage that deletes an account, signs out, or changes a password uses this so no token
/// issued before keeps working.
pub trait SessionRevoker: Send + Sync {
    /// Ends every session of `username` issued until now.
    ///
    /// # Errors
    /// [`FlowError::Store`] when the revocation could not be made durable (the in-memory one
    /// holds anyway).
    fn revoke_user(&self, username: &str) -> Result<(), FlowError>;

    /// Ends the session `sid`, whose token is valid until `exp` (unix seconds).
    ///
    /// # Errors
    /// As [`SessionRevoker::revoke_user`].
    fn revoke_sid(&self, sid: &str, exp: i64) -> Result<(), FlowError>;

    /// The instant (unix milliseconds) up to which every session of `username` was ended, if
    /// ever: a sign-in started before it may not finish. Read from memory, no disk.
    fn revoked_since(&self, username: &str) -> Option<i64>;
}

impl SessionRevoker for crate::session::SessionService {
    fn revoke_user(&self, username: &str) -> Result<(), FlowError> {
        revoked(crate::session::SessionService::revoke_user(self, username))
    }

    fn revoke_sid(&self, sid: &str, exp: i64) -> Result<(), FlowError> {
        revoked(crate::session::SessionService::revoke_sid(self, sid, exp))
    }

    fn revoked_since(&self, username: &str) -> Option<i64> {
        crate::session::SessionService::revoked_since(self, username)
    }
}

fn revoked(r: Result<(), crate::session::SessionError>) -> Result<(), FlowError> {
    match r {
        Ok(()) => Ok(()),
        Err(crate::session::SessionError::Store(e)) => Err(FlowError::Store(e)),
        Err(e) => Err(FlowError::Stage {
            stage: "sessions".into(),
            reason: e.to_string(),
        }),
    }
}

/// How to reach a phone: a provider plus the limits that protect it from pumping.
pub struct SmsChannel {
    /// The provider.
    pub sender: Arc<dyn SmsSender>,
    /// Per number, user, client and global limits, counted in the store.
    pub limits: SmsLimits,
}

/// How to reach an e-mail address: a sender plus the subject its messages carry.
pub struct EmailChannel {
    /// The SMTP connection (or a test double).
    pub sender: Arc<dyn EmailSender>,
    /// The subject line.
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

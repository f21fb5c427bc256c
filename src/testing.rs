//! Test doubles for in-process tests: senders that record what they were asked to send and can
//! be told to fail or stall, an HTTP client that answers from a script, a cheap argon2 hasher,
//! and [`TestWorld`], the engine's [`Services`] over a [`MemoryStore`] and a [`ManualClock`].

// The doubles serve the tests of other modules; not every one is used by every build.
#![allow(dead_code)]

use crate::clock::ManualClock;
use crate::config::{Config, PasswordParams, SmsLimits, StageConfig};
use crate::flow::{EmailChannel, Services, SmsChannel};
use crate::http_client::{HttpClient, HttpError, HttpReply, HttpRequest};
use crate::notify::{
    EmailSender, MessageTemplates, NotifyError, OutgoingEmail, OutgoingSms, SmsSender,
};
use crate::password::PasswordHasherPool;
use crate::store::MemoryStore;
use async_trait::async_trait;
use parking_lot::{Mutex, MutexGuard};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::watch;

/// What a recording sender does with the next messages.
struct Recorder<M> {
    sent: Mutex<Vec<M>>,
    attempts: AtomicUsize,
    failing: AtomicBool,
    /// `true` while sends are held back; senders wait for it to turn `false`.
    stalled: watch::Sender<bool>,
}

impl<M> Default for Recorder<M> {
    fn default() -> Self {
        Self {
            sent: Mutex::new(Vec::new()),
            attempts: AtomicUsize::new(0),
            failing: AtomicBool::new(false),
            stalled: watch::channel(false).0,
        }
    }
}

impl<M> Recorder<M> {
    /// Counts the attempt, waits while stalled, then records `msg` or fails.
    async fn deliver(&self, msg: M) -> Result<(), ()> {
        self.attempts.fetch_add(1, Ordering::SeqCst);
        let mut rx = self.stalled.subscribe();
        // The sender lives as long as `self`, so the wait cannot end in an error.
        let _ = rx.wait_for(|stalled| !*stalled).await;
        if self.failing.load(Ordering::SeqCst) {
            return Err(());
        }
        self.sent.lock().push(msg);
        Ok(())
    }
}

macro_rules! recording_sender {
    ($name:ident, $msg:ty, $what:literal) => {
        #[doc = concat!("Records every ", $what, " it delivers; [`Self::set_failing`] makes sends fail, ")]
        #[doc = "[`Self::stall`] holds them until [`Self::release`]."]
        #[derive(Default)]
        pub(crate) struct $name {
            recorder: Recorder<$msg>,
        }

        impl $name {
            /// A sender that delivers everything.
            pub(crate) fn new() -> Arc<Self> {
                Arc::new(Self::default())
            }

            /// The messages delivered so far, oldest first.
            pub(crate) fn sent(&self) -> MutexGuard<'_, Vec<$msg>> {
                self.recorder.sent.lock()
            }

            /// How many messages were delivered.
            pub(crate) fn count(&self) -> usize {
                self.recorder.sent.lock().len()
            }

            /// How many sends were attempted, delivered, failed or still stalled.
            pub(crate) fn attempts(&self) -> usize {
                self.recorder.attempts.load(Ordering::SeqCst)
            }

            /// From now on sends fail (`true`) or deliver (`false`).
            pub(crate) fn set_failing(&self, failing: bool) {
                self.recorder.failing.store(failing, Ordering::SeqCst);
            }

            /// Holds every send (new and waiting) until [`Self::release`].
            pub(crate) fn stall(&self) {
                self.recorder.stalled.send_replace(true);
            }

            /// Lets held sends go on (to deliver or fail as set).
            pub(crate) fn release(&self) {
                self.recorder.stalled.send_replace(false);
            }
        }
    };
}

recording_sender!(RecordingEmailSender, OutgoingEmail, "e-mail");
recording_sender!(RecordingSmsSender, OutgoingSms, "SMS");

#[async_trait]
impl EmailSender for RecordingEmailSender {
    async fn send(&self, msg: OutgoingEmail) -> Result<(), NotifyError> {
        self.recorder
            .deliver(msg)
            .await
            .map_err(|()| NotifyError::Smtp {
                host: "test-smtp".into(),
                port: 25,
                reason: "told to fail".into(),
            })
    }
}

#[async_trait]
impl SmsSender for RecordingSmsSender {
    async fn send(&self, msg: OutgoingSms) -> Result<(), NotifyError> {
        self.recorder
            .deliver(msg)
            .await
            .map_err(|()| NotifyError::Sms {
                provider: "test",
                status: Some(503),
                reason: "told to fail".into(),
            })
    }
}

/// An [`HttpClient`] that records requests and answers from a queue; when the queue is empty
/// it answers `200` with an empty JSON object.
#[derive(Default)]
pub(crate) struct ScriptedHttpClient {
    requests: Mutex<Vec<HttpRequest>>,
    replies: Mutex<VecDeque<Result<HttpReply, HttpError>>>,
}

impl ScriptedHttpClient {
    /// A client with no scripted answers.
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Queues the answer to a later request.
    pub(crate) fn push(&self, reply: Result<HttpReply, HttpError>) {
        self.replies.lock().push_back(reply);
    }

    /// The requests made so far, oldest first.
    pub(crate) fn requests(&self) -> MutexGuard<'_, Vec<HttpRequest>> {
        self.requests.lock()
    }
}

#[async_trait]
impl HttpClient for ScriptedHttpClient {
    async fn post(&self, request: HttpRequest) -> Result<HttpReply, HttpError> {
        self.requests.lock().push(request);
        self.replies
            .lock()
            .pop_front()
            .unwrap_or_else(|| Ok(HttpReply::new(http::StatusCode::OK, "{}")))
    }
}

/// A real argon2id hasher at the lowest cost argon2 accepts: hashes in well under a
/// millisecond, and still refuses a wrong password.
pub(crate) fn cheap_passwords() -> PasswordHasherPool {
    PasswordHasherPool::new(&PasswordParams {
        memory_kib: 8,
        iterations: 1,
        parallelism: 1,
        max_concurrent_hashes: 2,
    })
    .unwrap_or_else(|e| panic!("cheap argon2 parameters: {e}"))
}

/// Limits that never get in a test's way unless it sets its own.
pub(crate) fn loose_sms_limits() -> SmsLimits {
    SmsLimits {
        per_number: 1_000,
        per_user: 1_000,
        per_client: 1_000,
        window: std::time::Duration::from_secs(3600),
        global_per_hour: 10_000,
        resend_cooldown: std::time::Duration::ZERO,
    }
}

/// Revokes straight into the store (no in-memory list): tests read the revocations back with
/// [`crate::store::Store::user_revocations`] and [`crate::store::Store::revocations`].
pub(crate) struct StoreRevoker {
    store: Arc<MemoryStore>,
    clock: Arc<ManualClock>,
}

impl crate::flow::SessionRevoker for StoreRevoker {
    fn revoke_user(&self, username: &str) -> Result<(), crate::flow::FlowError> {
        use crate::clock::Clock;
        use crate::store::Store;
        Ok(self
            .store
            .revoke_user_sessions(username, self.clock.now_ms())?)
    }

    fn revoked_since(&self, username: &str) -> Option<i64> {
        use crate::store::Store;
        self.store
            .user_revocations()
            .ok()?
            .into_iter()
            .filter(|(u, _)| u == username)
            .map(|(_, since)| since)
            .max()
    }

    fn revoke_sid(&self, sid: &str, exp: i64) -> Result<(), crate::flow::FlowError> {
        use crate::store::Store;
        Ok(self.store.revoke_session(sid, exp)?)
    }
}

/// The engine's [`Services`] wired to test doubles, with a handle on each double.
pub(crate) struct TestWorld {
    /// What to hand to the engine or a stage.
    pub(crate) services: Services,
    /// The store behind `services.store`.
    pub(crate) store: Arc<MemoryStore>,
    /// The clock behind `services.clock`; move it instead of sleeping.
    pub(crate) clock: Arc<ManualClock>,
    /// Every e-mail channel's sender.
    pub(crate) email: Arc<RecordingEmailSender>,
    /// Every SMS channel's sender.
    pub(crate) sms: Arc<RecordingSmsSender>,
    /// The client behind `services.http`.
    pub(crate) http: Arc<ScriptedHttpClient>,
}

impl TestWorld {
    /// Services over an empty [`MemoryStore`], a [`ManualClock`] at its default time, a cheap
    /// argon2 hasher, the built-in message templates, and no stage channels (e-mail goes to the
    /// default channel).
    pub(crate) fn new() -> Self {
        let store = Arc::new(MemoryStore::new());
        let clock = Arc::new(ManualClock::default());
        let email = RecordingEmailSender::new();
        let sms = RecordingSmsSender::new();
        let http = ScriptedHttpClient::new();
        let services = Services {
            store: store.clone(),
            passwords: Arc::new(cheap_passwords()),
            clock: clock.clone(),
            http: http.clone(),
            email: HashMap::new(),
            default_email: Arc::new(EmailChannel {
                sender: email.clone(),
                subject: "Portcullis sign-in code".into(),
            }),
            sms: HashMap::new(),
            templates: Arc::new(MessageTemplates::new(None)),
            site_title: "Portcullis".into(),
            policies: Arc::new(crate::policy::Evaluator::default()),
            device_key: Arc::new(crate::device_key::DeviceKey::generate()),
            sessions: Arc::new(StoreRevoker {
                store: store.clone(),
                clock: clock.clone(),
            }),
            // Off: flow tests count their own limits; regulation's tests turn it on.
            regulator: Arc::new(
                crate::regulation::Regulator::new(
                    crate::config::Regulation::off(),
                    store.clone(),
                    clock.clone(),
                )
                .expect("memory store"),
            ),
        };
        Self {
            services,
            store,
            clock,
            email,
            sms,
            http,
        }
    }

    /// As [`TestWorld::new`], with a channel for every e-mail and SMS setup stage of `config`
    /// (its subject and limits, the recording senders) and its site title.
    pub(crate) fn for_config(config: &Config) -> Self {
        let mut world = Self::new();
        for (name, stage) in &config.stages {
            match stage {
                StageConfig::AuthenticatorEmail(e) => world.add_email_stage(name, &e.subject),
                StageConfig::Email(e) => world.add_email_stage(name, &e.subject),
                StageConfig::AuthenticatorSms(s) => world.add_sms_stage(name, s.limits.clone()),
                _ => {}
            }
        }
        world.services.site_title = config.ui.site_title.clone();
        world
    }

    /// Adds an e-mail channel for setup stage `name`, delivering to [`TestWorld::email`].
    pub(crate) fn add_email_stage(&mut self, name: &str, subject: &str) {
        self.services.email.insert(
            name.to_string(),
            Arc::new(EmailChannel {
                sender: self.email.clone(),
                subject: subject.to_string(),
            }),
        );
    }

    /// Adds an SMS channel for setup stage `name`, delivering to [`TestWorld::sms`].
    pub(crate) fn add_sms_stage(&mut self, name: &str, limits: SmsLimits) {
        self.services.sms.insert(
            name.to_string(),
            Arc::new(SmsChannel {
                sender: self.sms.clone(),
                limits,
            }),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Clock;
    use crate::secret::SecretString;
    use crate::store::{Store, User};

    fn sms(to: &str) -> OutgoingSms {
        OutgoingSms {
            to: to.into(),
            token: SecretString::new("123456"),
            text: SecretString::new("code 123456"),
        }
    }

    #[tokio::test]
    async fn a_recording_sender_records_fails_and_stalls_when_told() {
        let s = RecordingSmsSender::new();
        s.send(sms("+1")).await.unwrap();
        s.set_failing(true);
        assert!(s.send(sms("+2")).await.is_err());
        s.set_failing(false);
        s.stall();
        let held = tokio::spawn({
            let s = s.clone();
            async move { s.send(sms("+3")).await }
        });
        tokio::task::yield_now().await;
        assert_eq!((s.count(), s.attempts()), (1, 3));
        assert!(!held.is_finished());
        s.release();
        held.await.unwrap().unwrap();
        let to: Vec<_> = s.sent().iter().map(|m| m.to.clone()).collect();
        assert_eq!(to, ["+1", "+3"]);
    }

    #[tokio::test]
    async fn the_test_world_shares_its_clock_store_and_a_real_hasher() {
        let w = TestWorld::new();
        w.clock.advance_secs(90);
        assert_eq!(w.services.clock.now(), w.clock.now());
        w.services.store.put_user(&User::new("alice", 0)).unwrap();
        assert_eq!(w.store.user_count().unwrap(), 1);
        let hash = w
            .services
            .passwords
            .hash(SecretString::new("correct horse"))
            .await
            .unwrap();
        assert!(hash.starts_with("$argon2id$"));
        let p = &w.services.passwords;
        assert!(
            p.verify(SecretString::new("correct horse"), Some(hash.clone()))
                .await
        );
        assert!(!p.verify(SecretString::new("wrong horse"), Some(hash)).await);
    }
}

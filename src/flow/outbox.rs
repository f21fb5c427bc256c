//! The outbox: mail the `email` (verification) stage queues instead of sending while the user
//! waits. Each message is persisted in the store before the page says it is on its way, and a
//! background task ([`super::Engine::run_outbox`]) delivers it, retrying with backoff while the
//! SMTP server is down or stalls, until the code or link it carries expires.
//!
//! # Security
//! A queued message carries a live code or link, so its parts are sealed under the device key
//! (XChaCha20-Poly1305, bound to the message id) while they wait in the database, and no log
//! line ever holds them. A message is taken out of the store (durably) as soon as the server
//! accepted it, so a restart never sends it again; one queued when the gateway stopped is
//! still there at the next start. Only a crash between the server's acceptance and that write
//! can repeat a message, never lose one.
//!
//! # Several replicas
//! Every replica runs a deliverer over the one outbox. A message is claimed before it is sent:
//! its record is swapped (from the bytes read) to a leased one, due again only when the lease
//! ends ([`LEASE_SECS`]), and only the replica whose swap won sends it. A replica killed
//! mid-send leaves the lease to run out, and the message is due again for any replica: it is
//! never lost, and sent twice only when the server accepted it just before the kill.
//!
//! A lease names the process that took it. Where one process holds the database (sled locks
//! its directory), a lease taken by another process was taken by one that is gone (killed
//! mid-send), so its message is due at once: a restarted gateway does not wait out the lease.

use super::code::{CodeCx, CodeState, Outstanding};
use super::delivery::{Issued, SEND_FAILED};
use super::{otp, FlowError, Services};
use crate::notify::OutgoingEmail;
use crate::secret::SecretString;
use serde::{Deserialize, Serialize};

/// The first retry waits this long; each later one twice as long as the one before.
const FIRST_RETRY_SECS: i64 = 2;
/// No retry waits longer than this.
const MAX_RETRY_SECS: i64 = 300;
/// A claimed message is due again this long after its claim, should its sender die.
pub(crate) const LEASE_SECS: i64 = 120;
/// A send is given up (a failed attempt, retried) after this long, well inside its lease: no
/// other replica sends a message while its claimant may still be sending it.
const SEND_LIMIT: std::time::Duration = std::time::Duration::from_secs(100);

/// A message waiting in the outbox.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct QueuedMail {
    to: String,
    subject: String,
    /// The text and HTML parts (JSON), sealed under the device key for `outbox:<id>`.
    sealed: String,
    /// The stage whose channel (SMTP connection) carries it.
    route: String,
    /// Who asked, for logs (`user:NAME`, never the code).
    user: String,
    /// Dropped undelivered from then on: what it carries no longer works.
    expires: i64,
    /// Failed delivery attempts so far.
    attempts: u32,
    /// Not tried again before this time.
    next: i64,
    /// The process ([`holder`]) that claimed it for a send, while it may be sending it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    leased_by: Option<String>,
}

/// This process's name on the leases it takes: random per start, so a restarted gateway
/// tells its predecessor's leases from its own.
fn holder() -> &'static str {
    static HOLDER: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HOLDER.get_or_init(|| crate::secret::random_token(12))
}

impl QueuedMail {
    /// Whether it waits: for its retry time, or for a live sender's lease to end. On a store
    /// only this process opens, a lease another process took died with it.
    fn waits(&self, now: i64, shared: bool) -> bool {
        let dead_lease = !shared && self.leased_by.as_deref().is_some_and(|h| h != holder());
        self.next > now && !dead_lease
    }
}

#[derive(Serialize, Deserialize)]
struct Parts {
    text: String,
    html: String,
}

fn context(id: &str) -> String {
    format!("outbox:{id}")
}

/// How long to wait after the `attempts`-th failure.
fn backoff(attempts: u32) -> i64 {
    let doublings = attempts.saturating_sub(1).min(16);
    (FIRST_RETRY_SECS << doublings).min(MAX_RETRY_SECS)
}

impl CodeState {
    /// Queues the message carrying `issued` in the outbox and wakes its sender; the
    /// outstanding code or link stays usable, and a resend or withdrawal takes the message
    /// back out if it has not gone yet.
    pub(crate) fn enqueue(&mut self, cx: &CodeCx<'_>, issued: &Issued) -> Result<(), &'static str> {
        let mail = self.render_mail(cx, issued)?;
        let expires = match &self.outstanding {
            Outstanding::Code { expires, .. } | Outstanding::Link { expires, .. } => *expires,
            Outstanding::Nothing => cx.now,
        };
        // Ordered by the time it was queued, so older messages go first.
        let id = format!("{:016x}-{}", cx.now, crate::secret::random_token(12));
        let parts = Parts {
            text: mail.text.expose().to_string(),
            html: mail.html.expose().to_string(),
        };
        let Ok(plain) = serde_json::to_vec(&parts) else {
            return Err(SEND_FAILED);
        };
        let record = QueuedMail {
            to: mail.to,
            subject: mail.subject,
            sealed: cx.services.device_key.seal(&plain, &context(&id)),
            route: self.route.clone(),
            user: Self::subject(cx.exec),
            expires,
            attempts: 0,
            next: cx.now,
            leased_by: None,
        };
        let stored = serde_json::to_vec(&record)
            .map_err(FlowError::from)
            .and_then(|bytes| Ok(cx.services.store.put_outbox(&id, &bytes)?));
        if let Err(e) = stored {
            tracing::error!(error = %e, stage = cx.stage, "could not queue an email");
            return Err(SEND_FAILED);
        }
        self.queued = Some(Box::new(super::code::Queued { id, at: cx.now }));
        cx.outbox.notify_one();
        tracing::info!(user = %record.user, client = %cx.client, stage = cx.stage, to = %otp::mask(&record.to), "email queued for delivery");
        Ok(())
    }
}

/// Tries every message that is due once, in the order they were queued: a delivered one
/// leaves the outbox, a failed one is rescheduled with backoff, an expired one is dropped.
/// Returns when the next message is due, if any is left.
///
/// # Errors
/// Storage errors reading the outbox (a failure on one message is logged and skipped).
pub(crate) async fn deliver_due(services: &Services) -> Result<Option<i64>, FlowError> {
    let mut next_due: Option<i64> = None;
    for (id, read) in services.store.outbox()? {
        let now = services.clock.now();
        let Ok(mail) = serde_json::from_slice::<QueuedMail>(&read) else {
            tracing::error!(message = %id, "a queued email cannot be read back; dropped");
            services.store.take_outbox(&id)?;
            continue;
        };
        if mail.expires <= now {
            tracing::warn!(message = %id, user = %mail.user, to = %otp::mask(&mail.to), attempts = mail.attempts, "a queued email expired before it could be delivered; dropped");
            services.store.take_outbox(&id)?;
            continue;
        }
        if mail.waits(now, services.store.shared()) {
            next_due = Some(next_due.map_or(mail.next, |n| n.min(mail.next)));
            continue;
        }
        // Claimed before it is sent: of the replicas that read this record, only the one
        // whose swap wins sends it; the others find it leased (or taken) and move on.
        let mail = QueuedMail {
            next: now + LEASE_SECS,
            leased_by: Some(holder().to_string()),
            ..mail
        };
        let bytes = serde_json::to_vec(&mail)?;
        if !services.store.swap_outbox(&id, &read, &bytes)? {
            continue;
        }
        let sent = tokio::time::timeout(SEND_LIMIT, deliver(services, &id, &mail))
            .await
            .unwrap_or_else(|_| Err("the send did not finish within its lease".into()));
        match sent {
            Ok(()) => {
                // Taken before anything else: a restart now never sends it again.
                services.store.take_outbox(&id)?;
                tracing::info!(message = %id, user = %mail.user, to = %otp::mask(&mail.to), retries = mail.attempts, "queued email delivered");
            }
            Err(reason) => {
                let attempts = mail.attempts.saturating_add(1);
                let next = services.clock.now() + backoff(attempts);
                tracing::warn!(message = %id, user = %mail.user, to = %otp::mask(&mail.to), attempts, retry_in = next - now, error = %reason, "queued email not delivered; will retry");
                let again = QueuedMail {
                    attempts,
                    next,
                    leased_by: None,
                    ..mail
                };
                let new = serde_json::to_vec(&again)?;
                // Withdrawn meanwhile (a resend): it stays gone.
                if services.store.swap_outbox(&id, &bytes, &new)? {
                    next_due = Some(next_due.map_or(next, |n| n.min(next)));
                }
            }
        }
    }
    Ok(next_due)
}

/// One delivery attempt; the error is for the operator's log (it never holds the parts).
async fn deliver(services: &Services, id: &str, mail: &QueuedMail) -> Result<(), String> {
    let plain = services
        .device_key
        .open(&mail.sealed, &context(id))
        .map_err(|_| "the sealed parts do not open under the device key".to_string())?;
    let parts: Parts =
        serde_json::from_slice(&plain).map_err(|_| "the parts do not decode".to_string())?;
    let channel = services.email_channel(&mail.route);
    let outgoing = OutgoingEmail {
        to: mail.to.clone(),
        subject: mail.subject.clone(),
        text: SecretString::new(parts.text),
        html: SecretString::new(parts.html),
    };
    channel
        .sender
        .send(outgoing)
        .await
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Clock;
    use crate::store::Store;
    use crate::testing::TestWorld;
    use std::sync::Arc;

    /// Queues a message to `to` as the e-mail stage would, sealed and due at once.
    fn queue(services: &Services, to: &str) {
        let now = services.clock.now();
        let id = format!("{now:016x}-{to}");
        let plain = serde_json::to_vec(&Parts {
            text: format!("Your code for {to}: 123456"),
            html: String::new(),
        })
        .expect("parts");
        let record = QueuedMail {
            to: to.into(),
            subject: format!("code for {to}"),
            sealed: services.device_key.seal(&plain, &context(&id)),
            route: String::new(),
            user: "user:alice".into(),
            expires: now + 600,
            attempts: 0,
            next: now,
            leased_by: None,
        };
        let bytes = serde_json::to_vec(&record).expect("record");
        services.store.put_outbox(&id, &bytes).expect("queue");
    }

    /// `world`'s services over `store` instead (another replica's handle on one database).
    fn over(world: &TestWorld, store: Arc<dyn Store>) -> Services {
        let mut services = world.services.clone();
        services.store = store;
        services
    }

    async fn until(what: &str, done: impl Fn() -> bool) {
        for _ in 0..2_000 {
            if done() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        panic!("timed out waiting for {what}");
    }

    /// Two deliverers (replicas) over one outbox, both reading it while the first is in the
    /// middle of a send: every message is sent once, none twice, none lost.
    async fn two_deliverers_send_each_message_exactly_once(
        world: &TestWorld,
        a: Services,
        b: Services,
    ) {
        for to in ["one@example.test", "two@example.test", "three@example.test"] {
            queue(&a, to);
        }
        let store = a.store.clone();
        world.email.stall();
        let first = tokio::spawn(async move { deliver_due(&a).await });
        until("the first send", || world.email.attempts() == 1).await;
        let second = tokio::spawn(async move { deliver_due(&b).await });
        until("the second send", || world.email.attempts() == 2).await;
        world.email.release();
        first.await.expect("task").expect("deliver a");
        second.await.expect("task").expect("deliver b");
        let mut sent: Vec<String> = world.email.sent().iter().map(|m| m.to.clone()).collect();
        sent.sort();
        assert_eq!(
            sent,
            ["one@example.test", "three@example.test", "two@example.test"],
            "each message once"
        );
        assert_eq!(world.email.attempts(), 3, "no message was even tried twice");
        assert!(store.outbox().expect("outbox").is_empty(), "all taken");
    }

    /// A deliverer killed mid-send holds its message only for the lease: the other replica
    /// leaves it alone until then, and sends it after.
    async fn a_killed_deliverers_lease_expires_and_another_sends_it(
        world: &TestWorld,
        a: Services,
        b: Services,
    ) {
        queue(&a, "alice@example.test");
        world.email.stall();
        let killed = tokio::spawn(async move { deliver_due(&a).await });
        until("the send", || world.email.attempts() == 1).await;
        killed.abort();
        assert!(killed.await.is_err(), "killed mid-send");
        world.email.release();
        let due = deliver_due(&b).await.expect("deliver b");
        assert_eq!(
            world.email.count(),
            0,
            "leased: not sent by another replica"
        );
        assert_eq!(due, Some(world.clock.now() + LEASE_SECS));
        assert_eq!(b.store.outbox().expect("outbox").len(), 1, "not lost");
        world.clock.advance_secs(LEASE_SECS);
        assert_eq!(deliver_due(&b).await.expect("deliver b"), None);
        let sent: Vec<String> = world.email.sent().iter().map(|m| m.to.clone()).collect();
        assert_eq!(sent, ["alice@example.test"]);
        assert!(b.store.outbox().expect("outbox").is_empty());
    }

    #[tokio::test]
    async fn two_memory_replicas_send_each_queued_message_exactly_once() {
        let world = TestWorld::new();
        let (a, b) = (world.services.clone(), world.services.clone());
        two_deliverers_send_each_message_exactly_once(&world, a, b).await;
    }

    #[tokio::test]
    async fn a_killed_memory_replicas_lease_expires_and_another_sends_it() {
        let world = TestWorld::new();
        let (a, b) = (world.services.clone(), world.services.clone());
        a_killed_deliverers_lease_expires_and_another_sends_it(&world, a, b).await;
    }

    async fn postgres_replicas(world: &TestWorld) -> (Services, Services) {
        // The test server and the store's own runtime block while they start: off this runtime.
        let (a, b) = tokio::task::spawn_blocking(|| {
            let config = crate::store::test_server::server().fresh_database();
            let connect = || -> Arc<dyn Store> {
                Arc::new(crate::store::PgStore::connect(&config).expect("connect"))
            };
            (connect(), connect())
        })
        .await
        .expect("connect");
        (over(world, a), over(world, b))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_postgres_replicas_send_each_queued_message_exactly_once() {
        let world = TestWorld::new();
        let (a, b) = postgres_replicas(&world).await;
        two_deliverers_send_each_message_exactly_once(&world, a, b).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_killed_postgres_replicas_lease_expires_and_another_sends_it() {
        let world = TestWorld::new();
        let (a, b) = postgres_replicas(&world).await;
        a_killed_deliverers_lease_expires_and_another_sends_it(&world, a, b).await;
    }

    /// A gateway killed mid-send over sled (one process per database) left a lease behind:
    /// the restarted gateway sends the message at once, not after the lease, and once.
    #[tokio::test]
    async fn a_lease_left_by_a_killed_gateway_on_sled_is_sent_at_once_by_the_next() {
        let world = TestWorld::new();
        let dir = tempfile::tempdir().expect("tempdir");
        let sled: Arc<dyn Store> =
            Arc::new(crate::store::SledStore::open(&dir.path().join("db")).expect("sled"));
        let services = over(&world, sled.clone());
        queue(&services, "alice@example.test");
        let (id, read) = sled.outbox().expect("outbox").remove(0);
        let mut mail: QueuedMail = serde_json::from_slice(&read).expect("record");
        // As the killed process left it: claimed by another holder, lease still running.
        mail.next = world.clock.now() + LEASE_SECS;
        mail.leased_by = Some("a-gateway-killed-mid-send".into());
        let leased = serde_json::to_vec(&mail).expect("record");
        assert!(sled.swap_outbox(&id, &read, &leased).expect("swap"));
        assert_eq!(deliver_due(&services).await.expect("deliver"), None);
        let sent: Vec<String> = world.email.sent().iter().map(|m| m.to.clone()).collect();
        assert_eq!(sent, ["alice@example.test"], "sent at once, once");
        assert!(sled.outbox().expect("outbox").is_empty(), "taken");
    }

    /// On sled this process's own live lease is still respected (a second deliverer in the
    /// same process leaves a message alone while the first is sending it).
    #[tokio::test]
    async fn on_sled_a_live_lease_of_this_process_is_respected() {
        let world = TestWorld::new();
        let dir = tempfile::tempdir().expect("tempdir");
        let sled: Arc<dyn Store> =
            Arc::new(crate::store::SledStore::open(&dir.path().join("db")).expect("sled"));
        let (a, b) = (over(&world, sled.clone()), over(&world, sled.clone()));
        queue(&a, "alice@example.test");
        world.email.stall();
        let first = tokio::spawn(async move { deliver_due(&a).await });
        until("the send", || world.email.attempts() == 1).await;
        let due = deliver_due(&b).await.expect("deliver b");
        assert_eq!(due, Some(world.clock.now() + LEASE_SECS));
        world.email.release();
        first.await.expect("task").expect("deliver a");
        assert_eq!(world.email.attempts(), 1, "tried once");
        assert!(sled.outbox().expect("outbox").is_empty(), "taken");
    }

    #[test]
    fn retries_back_off_doubling_up_to_five_minutes() {
        let waits: Vec<_> = (1..=10).map(backoff).collect();
        assert_eq!(waits, [2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        assert_eq!(backoff(u32::MAX), 300);
    }
}

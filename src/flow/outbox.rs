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
    for (id, bytes) in services.store.outbox()? {
        let now = services.clock.now();
        let Ok(mail) = serde_json::from_slice::<QueuedMail>(&bytes) else {
            tracing::error!(message = %id, "a queued email cannot be read back; dropped");
            services.store.take_outbox(&id)?;
            continue;
        };
        if mail.expires <= now {
            tracing::warn!(message = %id, user = %mail.user, to = %otp::mask(&mail.to), attempts = mail.attempts, "a queued email expired before it could be delivered; dropped");
            services.store.take_outbox(&id)?;
            continue;
        }
        if mail.next > now {
            next_due = Some(next_due.map_or(mail.next, |n| n.min(mail.next)));
            continue;
        }
        match deliver(services, &id, &mail).await {
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

    #[test]
    fn retries_back_off_doubling_up_to_five_minutes() {
        let waits: Vec<_> = (1..=10).map(backoff).collect();
        assert_eq!(waits, [2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        assert_eq!(backoff(u32::MAX), 300);
    }
}

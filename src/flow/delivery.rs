//! Sending for the code machine: the send limits (per execution, per user, and for SMS the
//! pumping limits), issuing the secret, rendering the message and handing it to the medium's
//! sender. A failed delivery withdraws what it issued. Decoys take as long as real sends.

use super::code::{CodeCx, CodeState, Delivery, Medium, Outstanding};
use super::otp::{self, LinkTicket};
use super::{FlowError, SmsChannel};
use crate::notify::{OutgoingEmail, OutgoingSms};
use crate::secret::SecretString;
use minijinja::context;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

pub(crate) const SEND_FAILED: &str =
    "We could not send the message just now. Check the address or try again in a moment.";
/// A resend asked for within the stage's `resend_cooldown`.
pub(crate) const MAIL_COOLDOWN: &str =
    "A message was just sent. Wait a little before asking for another.";
pub(crate) const SMS_SEND_FAILED: &str =
    "We could not send the text message just now. Try again in a moment.";
pub(crate) const SMS_COOLDOWN: &str =
    "A code was just sent. Wait a little before asking for another.";
pub(crate) const SMS_LIMIT_NUMBER: &str =
    "Too many codes were sent to this number. Try again later.";
pub(crate) const SMS_LIMIT_USER: &str =
    "Too many codes were sent for this account. Try again later.";
pub(crate) const SMS_LIMIT_CLIENT: &str =
    "Too many codes were requested from your network. Try again later.";
pub(crate) const SMS_LIMIT_GLOBAL: &str =
    "Text messages are temporarily unavailable. Try again later.";

/// With per-client limits (email verification), an account takes at most this many times
/// `max_challenges_sent` messages per window from all client addresses together.
pub(crate) const ACCOUNT_SENDS_FACTOR: u32 = 3;

/// How long real sends take, per medium, so a decoy can take as long.
///
/// # Security
/// A decoy (unknown or disabled account) sends nothing and would answer at once, while a real
/// account waits for the mail server: the difference would tell which accounts exist. Decoys
/// wait about as long as recent real sends did.
pub(crate) struct Pace {
    /// Microseconds, moving averages over recent successful sends.
    email: AtomicU64,
    sms: AtomicU64,
}

impl Pace {
    /// Starting at typical relay and provider times.
    pub(crate) fn new() -> Self {
        Pace {
            email: AtomicU64::new(150_000),
            sms: AtomicU64::new(300_000),
        }
    }

    /// Decoys answer at once: for tests, where every send is instant anyway.
    #[cfg(test)]
    pub(crate) fn instant() -> Self {
        Pace {
            email: AtomicU64::new(0),
            sms: AtomicU64::new(0),
        }
    }

    fn of(&self, medium: Medium) -> &AtomicU64 {
        match medium {
            Medium::Email => &self.email,
            Medium::Sms => &self.sms,
        }
    }

    fn record(&self, medium: Medium, took: Duration) {
        let avg = self.of(medium);
        let took = took.as_micros().min(30_000_000) as u64;
        let old = avg.load(Relaxed);
        avg.store(old - old / 8 + took / 8, Relaxed);
    }

    /// Waits about as long as a real send, with some jitter as real sends have.
    async fn imitate(&self, medium: Medium) {
        use rand::Rng;
        let avg = self.of(medium).load(Relaxed);
        if avg == 0 {
            return;
        }
        let jitter = rand::thread_rng().gen_range(0.8..1.2);
        tokio::time::sleep(Duration::from_micros((avg as f64 * jitter) as u64)).await;
    }
}

/// What a send issued: the secret to deliver.
pub(crate) enum Issued {
    Code(SecretString),
    /// The full URL of the link.
    Link(SecretString),
}

impl CodeState {
    /// Issues a code or link and delivers it, recording how it went in `last`. Limits and
    /// delivery failures become a [`Delivery::Refused`] with the message to show; the
    /// provider's error goes to the operator's log, never the code.
    ///
    /// # Errors
    /// Storage errors.
    pub(crate) async fn send(&mut self, cx: &CodeCx<'_>, resend: bool) -> Result<(), FlowError> {
        self.last = Some(match self.deliver(cx).await? {
            Ok(()) if resend => Delivery::Resent,
            Ok(()) => Delivery::Sent,
            Err(message) => Delivery::Refused {
                message: message.into(),
            },
        });
        Ok(())
    }

    async fn deliver(&mut self, cx: &CodeCx<'_>) -> Result<Result<(), &'static str>, FlowError> {
        let sms = match self.medium {
            Medium::Sms => match cx.services.sms_channel(&self.route) {
                Some(channel) => Some(channel.clone()),
                None => {
                    tracing::error!(stage = cx.stage, route = %self.route, "an SMS code is due but no SMS provider is configured");
                    return Ok(Err(SMS_SEND_FAILED));
                }
            },
            Medium::Email => None,
        };
        // Decoys go through the same SMS limits and counts as real sends, so "wait before
        // sending again" cannot tell them apart: one without a number under a stand-in for
        // it (see [`Self::limited_number`]).
        let pumped = sms.as_ref();
        if let Some(channel) = pumped {
            if let Some((limit, message)) = self.throttled(cx, channel)? {
                tracing::warn!(limit, user = %Self::subject(cx.exec), client = %cx.client, to = %otp::mask(&self.to), "SMS limit reached; nothing sent");
                return Ok(Err(message));
            }
        }
        let cooldown = self.rules.outbox.as_ref().map_or(0, |o| o.cooldown as i64);
        if self
            .queued
            .as_ref()
            .is_some_and(|q| cx.now < q.at.saturating_add(cooldown))
        {
            return Ok(Err(MAIL_COOLDOWN));
        }
        if self.account_capped(cx)? {
            tracing::warn!(user = %Self::subject(cx.exec), client = %cx.client, stage = cx.stage, "account-wide email verification send limit reached; nothing sent");
            return Ok(Err(otp::TOO_MANY_FOR_ACCOUNT));
        }
        let Some(issued) = self.issue(cx)? else {
            let (user, client, stage) = (Self::subject(cx.exec), cx.client, cx.stage);
            match self.medium {
                Medium::Email => tracing::info!(%user, %client, stage, "email send limit reached"),
                Medium::Sms => tracing::info!(%user, %client, stage, "SMS send limit reached"),
            }
            return Ok(Err(otp::TOO_MANY_SENDS));
        };
        if let Some(channel) = pumped {
            self.count_sms(cx, channel)?;
        }
        let queued = self.rules.outbox.is_some() && self.medium == Medium::Email;
        if self.decoy && queued {
            // The real path ends in one durable write of the outbox; so does this one. And a
            // decoy's resend is held back exactly as long.
            let id = crate::secret::random_token(16);
            cx.services.store.take_outbox(&id)?;
            self.queued = Some(Box::new(super::code::Queued { id, at: cx.now }));
            return Ok(Ok(()));
        }
        if self.decoy {
            cx.pace.imitate(self.medium).await;
            return Ok(Ok(()));
        }
        if queued {
            let queued = self.enqueue(cx, &issued);
            if queued.is_err() {
                self.withdraw(cx.services)?;
            }
            return Ok(queued);
        }
        let started = std::time::Instant::now();
        let result = match &sms {
            Some(channel) => self.text(cx, channel, issued).await,
            None => self.email(cx, &issued).await,
        };
        match result {
            Ok(()) => {
                cx.pace.record(self.medium, started.elapsed());
                let (user, client, stage) = (Self::subject(cx.exec), cx.client, cx.stage);
                let to = otp::mask(&self.to);
                match self.medium {
                    Medium::Email => {
                        tracing::info!(%user, %client, stage, %to, "sign-in email sent")
                    }
                    Medium::Sms => tracing::info!(%user, %client, stage, %to, "sign-in SMS sent"),
                }
            }
            // Never leave a code that did not arrive usable.
            Err(_) => self.withdraw(cx.services)?,
        }
        Ok(result)
    }

    /// Whether another send is allowed, per execution and per user.
    fn may_send(&self, cx: &CodeCx<'_>) -> Result<bool, FlowError> {
        let max = self.rules.max_sends;
        if max == 0 {
            return Ok(true);
        }
        if self.sends >= max {
            return Ok(false);
        }
        let key = self.counter_key("sends", &self.limited(cx));
        Ok(cx.services.store.counter(&key, cx.now)? < max)
    }

    /// With `per_client` limits (anyone may start a recovery for any account), whether the
    /// account has had [`ACCOUNT_SENDS_FACTOR`] times `max_sends` messages within the window
    /// from all client addresses together.
    ///
    /// # Security
    /// The per-client counts alone let a stranger with many addresses (an IPv6 range) flood
    /// the owner's mailbox. Decoys (unknown, disabled, address-less accounts) are counted under
    /// the typed identifier exactly as real accounts are, so the cap's message says nothing
    /// about whether the account exists.
    fn account_capped(&self, cx: &CodeCx<'_>) -> Result<bool, FlowError> {
        let max = self.rules.max_sends;
        if !self.rules.per_client || max == 0 {
            return Ok(false);
        }
        let key = self.counter_key("account-sends", &Self::subject(cx.exec));
        let cap = max.saturating_mul(ACCOUNT_SENDS_FACTOR);
        Ok(cx.services.store.counter(&key, cx.now)? >= cap)
    }

    /// Counts a send and creates a fresh secret, replacing any earlier one; `None` when a
    /// limit is reached. A failed delivery still counts (it may have reached the provider).
    fn issue(&mut self, cx: &CodeCx<'_>) -> Result<Option<Issued>, FlowError> {
        if !self.may_send(cx)? {
            return Ok(None);
        }
        let store = &cx.services.store;
        self.sends = self.sends.saturating_add(1);
        let key = self.counter_key("sends", &self.limited(cx));
        store.bump_counter(&key, self.rules.window as i64, cx.now)?;
        if self.rules.per_client {
            let account = self.counter_key("account-sends", &Self::subject(cx.exec));
            store.bump_counter(&account, self.rules.window as i64, cx.now)?;
        }
        self.withdraw(cx.services)?;
        if !self.rules.link {
            let code = otp::generate_code(self.rules.code_length);
            let hash = otp::hash_code(&store.secret("otp")?, &self.purpose(cx), code.expose());
            self.outstanding = Outstanding::Code {
                hash: SecretString::new(hash),
                expires: cx.now + self.rules.code_ttl as i64,
            };
            return Ok(Some(Issued::Code(code)));
        }
        let token = SecretString::new(crate::secret::random_token(32));
        let hash = otp::hash_token(&token);
        let ticket = LinkTicket {
            execution: cx.exec.id.clone(),
            flow: cx.exec.flow.clone(),
            stage: cx.stage.to_string(),
            confirmed: false,
            continue_in_verify_window: self.rules.continue_in_verify_window,
            requester: super::Requester::new(cx.user_agent, cx.client, cx.now),
        };
        let expires = cx.now + self.rules.link_ttl as i64;
        if !self.decoy {
            store.put_ticket(&hash, expires, &serde_json::to_vec(&ticket)?)?;
        }
        self.outstanding = Outstanding::Link {
            ticket: SecretString::new(hash),
            expires,
        };
        let url = format!("{}/.portcullis/link?token={}", cx.origin, token.expose());
        Ok(Some(Issued::Link(SecretString::new(url))))
    }

    /// The message carrying `issued`, rendered from the stage's template (or the channel's
    /// usual one), addressed and titled for the machine's channel.
    pub(crate) fn render_mail(
        &self,
        cx: &CodeCx<'_>,
        issued: &Issued,
    ) -> Result<OutgoingEmail, &'static str> {
        let services = cx.services;
        let lifetime = |secs| lifetime(Duration::from_secs(secs));
        let (base, vars) = match issued {
            Issued::Code(code) => (
                "email_code",
                context! { code => code.expose(), lifetime => lifetime(self.rules.code_ttl), site_title => services.site_title },
            ),
            Issued::Link(link) => (
                "email_link",
                context! { link => link.expose(), lifetime => lifetime(self.rules.link_ttl), site_title => services.site_title },
            ),
        };
        let base = self
            .rules
            .outbox
            .as_ref()
            .map_or(base, |o| o.template.as_str());
        let message = services.templates.email(base, &vars).map_err(|e| {
            tracing::error!(error = %e, stage = cx.stage, "email template failed");
            SEND_FAILED
        })?;
        let channel = services.email_channel(&self.route);
        Ok(OutgoingEmail {
            to: self.to.clone(),
            subject: channel.subject.clone(),
            text: message.text,
            html: message.html,
        })
    }

    async fn email(&self, cx: &CodeCx<'_>, issued: &Issued) -> Result<(), &'static str> {
        let mail = self.render_mail(cx, issued)?;
        let channel = cx.services.email_channel(&self.route);
        channel.sender.send(mail).await.map_err(|e| {
            tracing::error!(provider = "smtp", error = %e, stage = cx.stage, to = %otp::mask(&self.to), "sign-in email could not be sent");
            SEND_FAILED
        })
    }

    async fn text(
        &self,
        cx: &CodeCx<'_>,
        channel: &SmsChannel,
        issued: Issued,
    ) -> Result<(), &'static str> {
        let Issued::Code(code) = issued else {
            tracing::error!(stage = cx.stage, "SMS carries codes, not links");
            return Err(SMS_SEND_FAILED);
        };
        let services = cx.services;
        let vars = context! { token => code.expose(), code => code.expose(), site_title => services.site_title, lifetime => lifetime(Duration::from_secs(self.rules.code_ttl)) };
        let text = services
            .templates
            .render("sms_code.txt", &vars)
            .map_err(|e| {
                tracing::error!(error = %e, stage = cx.stage, "SMS template failed");
                SMS_SEND_FAILED
            })?;
        let sms = OutgoingSms {
            to: self.to.clone(),
            token: code,
            text: SecretString::new(text.trim()),
        };
        channel.sender.send(sms).await.map_err(|e| {
            tracing::error!(error = %e, stage = cx.stage, to = %otp::mask(&self.to), "sign-in SMS could not be sent");
            SMS_SEND_FAILED
        })
    }

    /// The first pumping limit a text to `to` would break: its name and the message to show.
    fn throttled(
        &self,
        cx: &CodeCx<'_>,
        channel: &SmsChannel,
    ) -> Result<Option<(&'static str, &'static str)>, FlowError> {
        let store = &cx.services.store;
        let l = &channel.limits;
        let over = |key: String, max: u32| -> Result<bool, FlowError> {
            Ok(max > 0 && store.counter(&key, cx.now)? >= max)
        };
        let number = &self.limited_number(cx);
        if !l.resend_cooldown.is_zero() && store.counter(&format!("sms:cool:{number}"), cx.now)? > 0
        {
            return Ok(Some(("cooldown", SMS_COOLDOWN)));
        }
        let checks = [
            (
                format!("sms:num:{number}"),
                l.per_number,
                "per_number",
                SMS_LIMIT_NUMBER,
            ),
            (
                format!("sms:user:{}", Self::subject(cx.exec)),
                l.per_user,
                "per_user",
                SMS_LIMIT_USER,
            ),
            (
                format!("sms:client:{}", cx.client),
                l.per_client,
                "per_client",
                SMS_LIMIT_CLIENT,
            ),
            (
                "sms:global".into(),
                l.global_per_hour,
                "global_per_hour",
                SMS_LIMIT_GLOBAL,
            ),
        ];
        for (key, max, limit, message) in checks {
            if over(key, max)? {
                return Ok(Some((limit, message)));
            }
        }
        Ok(None)
    }

    /// The number the per-number limits count: the real one, or for a decoy without one (an
    /// unknown name, an account without a phone) a stand-in keyed by the typed identifier.
    ///
    /// # Security
    /// A real account's second sign-in within `resend_cooldown` is told to wait; a made-up
    /// name must be told the same, or two sign-ins would show which names have a phone.
    fn limited_number(&self, cx: &CodeCx<'_>) -> String {
        if self.to.is_empty() {
            format!("decoy:{}", Self::subject(cx.exec))
        } else {
            self.to.clone()
        }
    }

    fn count_sms(&self, cx: &CodeCx<'_>, channel: &SmsChannel) -> Result<(), FlowError> {
        let store = &cx.services.store;
        let l = &channel.limits;
        let window = l.window.as_secs() as i64;
        let number = &self.limited_number(cx);
        if !l.resend_cooldown.is_zero() {
            let cool = l.resend_cooldown.as_secs().max(1) as i64;
            store.bump_counter(&format!("sms:cool:{number}"), cool, cx.now)?;
        }
        store.bump_counter(&format!("sms:num:{number}"), window, cx.now)?;
        let user = format!("sms:user:{}", Self::subject(cx.exec));
        store.bump_counter(&user, window, cx.now)?;
        store.bump_counter(&format!("sms:client:{}", cx.client), window, cx.now)?;
        store.bump_counter("sms:global", 3600, cx.now)?;
        Ok(())
    }
}

/// A human lifetime for messages: "30 minutes", "2 minutes", "90 seconds".
pub(crate) fn lifetime(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        s if s % 3600 == 0 && s >= 3600 => plural(s / 3600, "hour"),
        s if s % 60 == 0 && s >= 60 => plural(s / 60, "minute"),
        s => plural(s, "second"),
    }
}

fn plural(n: u64, unit: &str) -> String {
    if n == 1 {
        format!("1 {unit}")
    } else {
        format!("{n} {unit}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[tokio::test]
    async fn decoys_take_about_as_long_as_recent_real_sends() {
        let pace = Pace::new();
        for _ in 0..64 {
            pace.record(Medium::Email, Duration::from_millis(20));
        }
        let started = Instant::now();
        pace.imitate(Medium::Email).await;
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(15) && took < Duration::from_millis(100),
            "{took:?}"
        );
    }

    #[test]
    fn lifetimes_read_as_people_say_them() {
        assert_eq!(lifetime(Duration::from_secs(1800)), "30 minutes");
        assert_eq!(lifetime(Duration::from_secs(3600)), "1 hour");
        assert_eq!(lifetime(Duration::from_secs(90)), "90 seconds");
    }
}

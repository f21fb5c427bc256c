//! The part every one-time-code stage shares: send (or resend) to an address, ask for the code
//! or wait for the link, and judge the answer. Stages decide *where* to send and what success
//! means; this decides *how*.

use crate::config::{OtpMode, OtpPolicy};
use crate::flow::otp::{self, CodeVerdict, Issued, Otp, OtpState, SendRefused};
use crate::flow::{
    Action, Challenge, EmailChannel, Field, FlowError, Input, Outcome, SmsChannel, StageContext,
};
use crate::notify::{OutgoingEmail, OutgoingSms};
use minijinja::context;

/// How sending went, for the page.
pub enum Sent {
    Ok,
    /// Shown to the user; they can retry.
    Failed(String),
}

pub const SEND_FAILED: &str =
    "We could not send the message just now. Check the address or try again in a moment.";

/// A human lifetime for messages: "30 minutes", "2 minutes", "90 seconds".
pub fn lifetime(d: std::time::Duration) -> String {
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

/// How long real sends of one kind take, so a decoy can take as long.
///
/// # Security
/// A decoy (unknown or disabled account) sends nothing and would answer at once, while a real
/// account waits for the mail server: the difference would tell which accounts exist. Decoys
/// wait about as long as recent real sends did.
struct SendTime(std::sync::atomic::AtomicU64);

/// Microseconds, a moving average over recent successful sends; starts at a typical relay's.
static EMAIL_SEND: SendTime = SendTime(std::sync::atomic::AtomicU64::new(150_000));
static SMS_SEND: SendTime = SendTime(std::sync::atomic::AtomicU64::new(300_000));

impl SendTime {
    fn record(&self, took: std::time::Duration) {
        use std::sync::atomic::Ordering::Relaxed;
        let took = took.as_micros().min(30_000_000) as u64;
        let old = self.0.load(Relaxed);
        self.0.store(old - old / 8 + took / 8, Relaxed);
    }

    /// Waits about as long as a real send, with some jitter as real sends have.
    async fn imitate(&self) {
        use rand::Rng;
        let avg = self.0.load(std::sync::atomic::Ordering::Relaxed);
        let jitter = rand::thread_rng().gen_range(0.8..1.2);
        tokio::time::sleep(std::time::Duration::from_micros(
            (avg as f64 * jitter) as u64,
        ))
        .await;
    }
}

/// Issues a code or link and e-mails it to `to`. Limits and delivery failures come back as
/// [`Sent::Failed`] with the message to show; the SMTP error goes to the operator's log.
///
/// # Errors
/// Storage errors.
pub async fn send_email(
    cx: &mut StageContext<'_>,
    policy: &OtpPolicy,
    st: &mut OtpState,
    channel: &EmailChannel,
    to: &str,
) -> Result<Sent, FlowError> {
    let engine = Otp {
        policy,
        channel: "email",
    };
    let issued = match engine.issue(cx, st)? {
        Ok(i) => i,
        Err(SendRefused::Limit) => {
            tracing::info!(user = %Otp::subject(cx), client = %cx.client, stage = cx.name, "email send limit reached");
            return Ok(Sent::Failed(otp::TOO_MANY_SENDS.into()));
        }
    };
    if st.decoy {
        EMAIL_SEND.imitate().await;
        return Ok(Sent::Ok);
    }
    let (base, vars) = match &issued {
        Issued::Code(code) => (
            "email_code",
            context! { code => code, lifetime => lifetime(policy.token_expiry), site_title => cx.services.site_title },
        ),
        Issued::Link(link) => (
            "email_link",
            context! { link => link, lifetime => lifetime(policy.link_ttl), site_title => cx.services.site_title },
        ),
    };
    let message = match cx.services.templates.email(base, &vars) {
        Ok(m) => m,
        Err(e) => {
            tracing::error!(error = %e, stage = cx.name, "email template failed");
            st.withdraw(cx)?;
            return Ok(Sent::Failed(SEND_FAILED.into()));
        }
    };
    let started = std::time::Instant::now();
    let result = channel
        .sender
        .send(OutgoingEmail {
            to: to.to_string(),
            subject: channel.subject.clone(),
            text: message.text,
            html: message.html,
        })
        .await;
    match result {
        Ok(()) => {
            EMAIL_SEND.record(started.elapsed());
            tracing::info!(user = %Otp::subject(cx), client = %cx.client, stage = cx.name, to = %otp::mask(to), "sign-in email sent");
            Ok(Sent::Ok)
        }
        Err(e) => {
            // Never leave a code that did not arrive usable, and never log the code itself.
            st.withdraw(cx)?;
            tracing::error!(provider = "smtp", error = %e, stage = cx.name, to = %otp::mask(to), "sign-in email could not be sent");
            Ok(Sent::Failed(SEND_FAILED.into()))
        }
    }
}

/// How a code travels, for what the page says.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Email,
    Sms,
}

/// The challenge for an outstanding code or link.
///
/// The code field is shown only while a code is outstanding: after a send that failed (or a
/// code that expired) there is nothing to type, so the page offers only the way to send again.
pub fn code_challenge(
    component: &str,
    policy: &OtpPolicy,
    st: &OtpState,
    sent_to: &str,
    channel: Channel,
) -> Challenge {
    let outstanding = match policy.mode {
        OtpMode::Code => st.code_hash.is_some(),
        OtpMode::Link => st.link.is_some(),
    };
    let mut c = match policy.mode {
        OtpMode::Code if outstanding => {
            let mut c = Challenge::new(
                component,
                vec![Field::new("code", "text", "Code").autocomplete("one-time-code")],
            );
            c.info.push(format!("We sent a code to {sent_to}."));
            c
        }
        OtpMode::Link if outstanding => {
            let mut c = Challenge::new(component, Vec::new());
            c.info.push(format!(
                "We sent a link to {sent_to}. Open it to continue; this page moves on by itself once it is confirmed."
            ));
            c.poll = Some(3);
            c
        }
        _ => Challenge::new(component, Vec::new()),
    };
    c.title = Some(
        match (outstanding, channel, policy.mode) {
            (true, Channel::Email, _) => "Check your email",
            (true, Channel::Sms, _) => "Enter the code we texted you",
            (false, _, OtpMode::Code) => "Get a new code",
            (false, _, OtpMode::Link) => "Get a new link",
        }
        .into(),
    );
    c.actions.push(Action {
        name: "resend".into(),
        label: match policy.mode {
            OtpMode::Code => "Send a new code".into(),
            OtpMode::Link => "Send a new link".into(),
        },
    });
    c
}

/// What a response to a code challenge asked for.
pub enum Answer<'a> {
    Resend,
    Code(&'a str),
    /// Link mode has nothing to type; a plain submit just re-checks.
    Nothing,
}

pub fn answer(input: &Input) -> Answer<'_> {
    if input.get("action").is_some_and(|a| a == "resend") {
        return Answer::Resend;
    }
    match input.get("code") {
        Some(c) => Answer::Code(c.as_str()),
        None => Answer::Nothing,
    }
}

/// Judges a typed code.
///
/// # Errors
/// Storage errors.
pub fn check_code(
    cx: &mut StageContext<'_>,
    policy: &OtpPolicy,
    channel: &'static str,
    st: &mut OtpState,
    code: &str,
) -> Result<CodeVerdict, FlowError> {
    let verdict = Otp { policy, channel }.check(cx, st, code)?;
    if verdict != CodeVerdict::Valid {
        tracing::info!(user = %Otp::subject(cx), client = %cx.client, stage = cx.name, outcome = "failure", verdict = ?verdict, "one-time code refused");
    }
    Ok(verdict)
}

/// Whether the outstanding link was confirmed (and consumes it).
///
/// # Errors
/// Storage errors.
pub fn link_done(
    cx: &mut StageContext<'_>,
    policy: &OtpPolicy,
    channel: &'static str,
    st: &mut OtpState,
) -> Result<bool, FlowError> {
    if policy.mode != OtpMode::Link || st.decoy {
        return Ok(false);
    }
    Otp { policy, channel }.link_confirmed(cx, st)
}

pub const SMS_SEND_FAILED: &str =
    "We could not send the text message just now. Try again in a moment.";
pub const SMS_COOLDOWN: &str = "A code was just sent. Wait a little before asking for another.";
pub const SMS_LIMIT_NUMBER: &str = "Too many codes were sent to this number. Try again later.";
pub const SMS_LIMIT_USER: &str = "Too many codes were sent for this account. Try again later.";
pub const SMS_LIMIT_CLIENT: &str =
    "Too many codes were requested from your network. Try again later.";
pub const SMS_LIMIT_GLOBAL: &str = "Text messages are temporarily unavailable. Try again later.";

/// The first pumping limit `number` would break, with the message to show.
fn sms_throttled(
    cx: &StageContext<'_>,
    channel: &SmsChannel,
    number: &str,
) -> Result<Option<(&'static str, &'static str)>, FlowError> {
    let store = &cx.services.store;
    let now = crate::clock::now();
    let l = &channel.limits;
    let over = |key: String, max: u32| -> Result<bool, FlowError> {
        Ok(max > 0 && store.counter(&key, now)? >= max)
    };
    if !l.resend_cooldown.is_zero() && store.counter(&format!("sms:cool:{number}"), now)? > 0 {
        return Ok(Some(("cooldown", SMS_COOLDOWN)));
    }
    if over(format!("sms:num:{number}"), l.per_number)? {
        return Ok(Some(("per_number", SMS_LIMIT_NUMBER)));
    }
    if over(format!("sms:user:{}", Otp::subject(cx)), l.per_user)? {
        return Ok(Some(("per_user", SMS_LIMIT_USER)));
    }
    if over(format!("sms:client:{}", cx.client), l.per_client)? {
        return Ok(Some(("per_client", SMS_LIMIT_CLIENT)));
    }
    if over("sms:global".into(), l.global_per_hour)? {
        return Ok(Some(("global_per_hour", SMS_LIMIT_GLOBAL)));
    }
    Ok(None)
}

fn count_sms(cx: &StageContext<'_>, channel: &SmsChannel, number: &str) -> Result<(), FlowError> {
    let store = &cx.services.store;
    let now = crate::clock::now();
    let l = &channel.limits;
    let window = l.window.as_secs() as i64;
    if !l.resend_cooldown.is_zero() {
        store.bump_counter(
            &format!("sms:cool:{number}"),
            l.resend_cooldown.as_secs().max(1) as i64,
            now,
        )?;
    }
    store.bump_counter(&format!("sms:num:{number}"), window, now)?;
    store.bump_counter(&format!("sms:user:{}", Otp::subject(cx)), window, now)?;
    store.bump_counter(&format!("sms:client:{}", cx.client), window, now)?;
    store.bump_counter("sms:global", 3600, now)?;
    Ok(())
}

/// Issues a code and texts it to `number`, after the pumping limits. Limits and delivery
/// failures come back as [`Sent::Failed`]; the provider's answer goes to the operator's log.
///
/// # Errors
/// Storage errors.
pub async fn send_sms(
    cx: &mut StageContext<'_>,
    policy: &OtpPolicy,
    st: &mut OtpState,
    channel: &SmsChannel,
    number: &str,
) -> Result<Sent, FlowError> {
    // Decoys (unknown or disabled accounts) go through the same limits and counts as real
    // sends whenever there is a number, so "wait before sending again" cannot tell them apart.
    let counted = !st.decoy || !number.is_empty();
    if counted {
        if let Some((limit, message)) = sms_throttled(cx, channel, number)? {
            tracing::warn!(limit, user = %Otp::subject(cx), client = %cx.client, to = %otp::mask(number), "SMS limit reached; nothing sent");
            return Ok(Sent::Failed(message.into()));
        }
    }
    let engine = Otp {
        policy,
        channel: "sms",
    };
    let code = match engine.issue(cx, st)? {
        Ok(Issued::Code(c)) => c,
        Ok(Issued::Link(_)) => {
            return Err(FlowError::Stage {
                stage: cx.name.to_string(),
                reason: "SMS sends codes, not links".into(),
            })
        }
        Err(SendRefused::Limit) => {
            tracing::info!(user = %Otp::subject(cx), client = %cx.client, stage = cx.name, "SMS send limit reached");
            return Ok(Sent::Failed(otp::TOO_MANY_SENDS.into()));
        }
    };
    if counted {
        count_sms(cx, channel, number)?;
    }
    if st.decoy {
        SMS_SEND.imitate().await;
        return Ok(Sent::Ok);
    }
    let text = cx
        .services
        .templates
        .render(
            "sms_code.txt",
            &context! { token => code, code => code, site_title => cx.services.site_title, lifetime => lifetime(policy.token_expiry) },
        )
        .map(|t| t.trim().to_string());
    let text = match text {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, stage = cx.name, "SMS template failed");
            st.withdraw(cx)?;
            return Ok(Sent::Failed(SMS_SEND_FAILED.into()));
        }
    };
    let started = std::time::Instant::now();
    let result = channel
        .sender
        .send(OutgoingSms {
            to: number.to_string(),
            token: code,
            text,
        })
        .await;
    match result {
        Ok(()) => {
            SMS_SEND.record(started.elapsed());
            tracing::info!(user = %Otp::subject(cx), client = %cx.client, stage = cx.name, to = %otp::mask(number), "sign-in SMS sent");
            Ok(Sent::Ok)
        }
        Err(e) => {
            st.withdraw(cx)?;
            tracing::error!(error = %e, stage = cx.name, to = %otp::mask(number), "sign-in SMS could not be sent");
            Ok(Sent::Failed(SMS_SEND_FAILED.into()))
        }
    }
}

/// What a refused code leads to; `None` when the code was valid.
pub fn refused(verdict: CodeVerdict) -> Option<Outcome> {
    match verdict {
        CodeVerdict::Valid => None,
        CodeVerdict::Wrong => Some(Outcome::Stay(vec![otp::WRONG_CODE.into()])),
        CodeVerdict::Expired => Some(Outcome::Stay(vec![otp::EXPIRED_CODE.into()])),
        CodeVerdict::TooMany => Some(Outcome::Cancel(otp::TOO_MANY_ATTEMPTS.into())),
    }
}

/// The line shown after a successful resend.
pub fn resent_notice(mode: OtpMode) -> String {
    match mode {
        OtpMode::Code => otp::RESENT.into(),
        OtpMode::Link => otp::RESENT_LINK.into(),
    }
}

#[cfg(test)]
mod send_time_tests {
    use super::SendTime;
    use std::time::{Duration, Instant};

    #[tokio::test]
    async fn decoys_take_about_as_long_as_recent_real_sends() {
        let t = SendTime(std::sync::atomic::AtomicU64::new(150_000));
        for _ in 0..64 {
            t.record(Duration::from_millis(20));
        }
        let started = Instant::now();
        t.imitate().await;
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(15) && took < Duration::from_millis(100),
            "{took:?}"
        );
    }
}

#[cfg(test)]
mod challenge_tests {
    use super::*;
    use crate::config::{OtpMode, OtpPolicy};
    use std::time::Duration;

    fn policy(mode: OtpMode) -> OtpPolicy {
        OtpPolicy {
            mode,
            code_length: 6,
            token_expiry: Duration::from_secs(600),
            max_challenges_sent: 3,
            max_allowed_attempts: 3,
            allow_inactive_accounts: false,
            activate_inactive_accounts: false,
            link_ttl: Duration::from_secs(120),
            continue_in_verify_window: true,
            user_limit_window: Duration::from_secs(3600),
        }
    }

    #[test]
    fn code_field_is_shown_only_while_a_code_is_outstanding() {
        let p = policy(OtpMode::Code);
        let mut st = OtpState::default();
        for (channel, title) in [
            (Channel::Email, "Check your email"),
            (Channel::Sms, "Enter the code we texted you"),
        ] {
            // Nothing outstanding (a send failed, or the code expired): only a way to resend.
            st.code_hash = None;
            let c = code_challenge("authenticator_email", &p, &st, "x", channel);
            assert!(c.fields.is_empty(), "{c:?}");
            assert_eq!(c.actions[0].name, "resend");
            assert!(!c.info.iter().any(|l| l.starts_with("We sent")), "{c:?}");
            assert_eq!(c.title.as_deref(), Some("Get a new code"));

            st.code_hash = Some("h".into());
            let c = code_challenge("authenticator_email", &p, &st, "x", channel);
            assert_eq!(c.fields[0].name, "code");
            assert_eq!(c.fields[0].autocomplete, "one-time-code");
            assert_eq!(c.title.as_deref(), Some(title));
        }
    }

    #[test]
    fn link_page_waits_only_for_a_link_that_went_out() {
        let p = policy(OtpMode::Link);
        let mut st = OtpState::default();
        let c = code_challenge("authenticator_email", &p, &st, "x", Channel::Email);
        assert_eq!(c.poll, None);
        assert_eq!(c.title.as_deref(), Some("Get a new link"));
        st.link = Some("h".into());
        let c = code_challenge("authenticator_email", &p, &st, "x", Channel::Email);
        assert_eq!(c.poll, Some(3));
        assert_eq!(c.title.as_deref(), Some("Check your email"));
    }
}

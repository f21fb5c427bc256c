//! The one one-time-code machine. Every stage that sends a code or a link (email setup, SMS
//! setup, validation) keeps a [`CodeState`] in its own state and lets the engine drive it:
//! issue (CSPRNG, keyed hash), send with limits ([`super::delivery`]), verify with attempt
//! limits, resend, expire, and withdraw what a failed send issued. A new channel is a sender
//! behind [`Medium`], not a copy of this file.

use super::otp::{self, LinkTicket};
use super::{Action, Challenge, Execution, Field, FlowError, Services};
use crate::config::{OtpMode, OtpPolicy};
use crate::secret::SecretString;
use serde::{Deserialize, Serialize};

/// How a code travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Medium {
    Email,
    Sms,
}

impl Medium {
    /// The name counters and code hashes are kept apart by.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Medium::Email => "email",
            Medium::Sms => "sms",
        }
    }
}

/// The rules one code follows, copied from the stage's policy when the code state is made, so
/// a code keeps the length, lifetime and limits it was promised under.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Rules {
    pub(crate) link: bool,
    pub(crate) code_length: u32,
    pub(crate) code_ttl: u64,
    pub(crate) link_ttl: u64,
    /// Sends per execution and per (account, address) within `window`; 0 = unlimited.
    pub(crate) max_sends: u32,
    /// Wrong codes per execution and per (account, address) within `window`; 0 = unlimited.
    pub(crate) max_attempts: u32,
    pub(crate) window: u64,
    pub(crate) continue_in_verify_window: bool,
    /// Limits are counted per account *and client address* (anyone may start a sign-in or a
    /// recovery for any account: a stranger's wrong guesses or sends must not lock the owner
    /// out of their own mail or their second factor). Always set now; kept so a code state
    /// saved before it was reads the same.
    #[serde(default)]
    pub(crate) per_client: bool,
    /// Mail goes through the persisted outbox ([`super::outbox`]) and is retried there,
    /// instead of being sent while the user waits.
    #[serde(default)]
    pub(crate) outbox: Option<Box<Outboxed>>,
}

/// How a machine's mail goes through the outbox.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Outboxed {
    /// The message template's base name.
    pub(crate) template: String,
    /// Seconds between two sends of one execution; 0: none.
    pub(crate) cooldown: u64,
}

/// The message of a machine's last send, queued in the outbox.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Queued {
    /// Its outbox id.
    pub(crate) id: String,
    /// When it was queued (unix seconds), for the cooldown.
    pub(crate) at: i64,
}

impl Rules {
    /// The rules of `policy` for codes travelling by `medium` (a text message carries no link).
    pub(crate) fn of(policy: &OtpPolicy, medium: Medium) -> Rules {
        Rules {
            link: policy.mode == OtpMode::Link && medium == Medium::Email,
            code_length: policy.code_length,
            code_ttl: policy.token_expiry.as_secs(),
            link_ttl: policy.link_ttl.as_secs(),
            max_sends: policy.max_challenges_sent,
            max_attempts: policy.max_allowed_attempts,
            window: policy.user_limit_window.as_secs(),
            continue_in_verify_window: policy.continue_in_verify_window,
            // Per (account, address) for every code: a stranger's sends and wrong codes from
            // elsewhere never use up the owner's (regulation counts them account-wide).
            per_client: true,
            outbox: None,
        }
    }
}

/// What the user could answer right now.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "waiting", rename_all = "snake_case")]
pub(crate) enum Outstanding {
    /// Nothing: before the first send, after a failed one, after a used or expired code.
    Nothing,
    /// A code whose keyed hash is this, valid until `expires`.
    Code { hash: SecretString, expires: i64 },
    /// A magic link whose ticket is stored under this hash.
    Link { ticket: SecretString, expires: i64 },
}

/// How the last send went, for the page.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "delivery", rename_all = "snake_case")]
pub(crate) enum Delivery {
    Sent,
    /// Sent on request; the page says so until the next response.
    Resent,
    /// Nothing usable went out; the page offers to send again.
    Refused {
        message: String,
    },
}

/// One stage's codes: where they go, how many were sent and tried, what is outstanding.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct CodeState {
    pub(crate) medium: Medium,
    /// The setup stage whose sender (SMTP connection, SMS provider) carries the messages.
    pub(crate) route: String,
    /// The address or number; empty for a decoy without one.
    pub(crate) to: String,
    /// Nothing is really sent (unknown or ineligible account) and every code is wrong, while
    /// the pages and limits look exactly like a real send.
    pub(crate) decoy: bool,
    pub(crate) rules: Rules,
    pub(crate) sends: u32,
    pub(crate) attempts: u32,
    pub(crate) outstanding: Outstanding,
    pub(crate) last: Option<Delivery>,
    /// The message carrying the outstanding code or link, while it may be queued.
    #[serde(default)]
    pub(crate) queued: Option<Box<Queued>>,
}

/// What the machine may touch while it runs one effect.
pub(crate) struct CodeCx<'a> {
    pub(crate) services: &'a Services,
    pub(crate) exec: &'a Execution,
    /// The plan's stage the code answers (bound into its hash).
    pub(crate) stage: &'a str,
    pub(crate) client: &'a str,
    /// The User-Agent of the request that triggers a send, for the link's approval page.
    pub(crate) user_agent: &'a str,
    /// `scheme://host[:port]`, for links.
    pub(crate) origin: &'a str,
    pub(crate) now: i64,
    pub(crate) pace: &'a super::delivery::Pace,
    /// Wakes the outbox's sender when a message was queued.
    pub(crate) outbox: &'a tokio::sync::Notify,
}

/// What a waiting link page finds at its next look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LinkCheck {
    /// Nothing yet.
    Waiting,
    /// The link was confirmed (and is now used up).
    Confirmed,
    /// Too many failed link confirmations in this browser: the execution must end.
    TooMany,
}

/// The verdict on a typed code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Valid,
    Wrong,
    Expired,
    /// The attempt limit is reached (this attempt included): the execution must end.
    TooMany,
}

impl CodeState {
    /// A fresh machine for codes to `to`, nothing sent yet.
    pub(crate) fn new(medium: Medium, route: &str, to: String, policy: &OtpPolicy) -> Self {
        CodeState {
            medium,
            route: route.to_string(),
            to,
            decoy: false,
            rules: Rules::of(policy, medium),
            sends: 0,
            attempts: 0,
            outstanding: Outstanding::Nothing,
            last: None,
            queued: None,
        }
    }

    /// A machine that only pretends to send (see [`CodeState::decoy`]).
    pub(crate) fn decoy(medium: Medium, route: &str, to: String, policy: &OtpPolicy) -> Self {
        CodeState {
            decoy: true,
            ..Self::new(medium, route, to, policy)
        }
    }

    /// Who limits are counted against: the account, or what was typed when none matched (so a
    /// made-up name is limited exactly like a real one).
    pub(crate) fn subject(exec: &Execution) -> String {
        match (&exec.user, &exec.uid) {
            (Some(u), _) => format!("user:{u}"),
            (None, Some(uid)) => format!("uid:{}", uid.to_lowercase()),
            (None, None) => format!("exec:{}", exec.id),
        }
    }

    pub(crate) fn counter_key(&self, what: &str, subject: &str) -> String {
        if self.rules.per_client {
            return format!("otp:verify:{what}:{subject}");
        }
        format!("otp:{}:{what}:{subject}", self.medium.as_str())
    }

    /// Who this machine's send and attempt limits are counted against: the account (see
    /// [`CodeState::subject`]), and with `per_client` the client address too.
    pub(crate) fn limited(&self, cx: &CodeCx<'_>) -> String {
        let subject = Self::subject(cx.exec);
        if self.rules.per_client {
            return format!("{subject}@{}", cx.client);
        }
        subject
    }

    /// The counter of failed link confirmations made from the browser of `execution`.
    pub(crate) fn link_fails_key(execution: &str) -> String {
        format!("otp:link:fails:exec:{execution}")
    }

    /// Binds a code to this execution and stage: a code for one sign-in is useless in another.
    pub(crate) fn purpose(&self, cx: &CodeCx<'_>) -> String {
        format!("{}:{}:{}", self.medium.as_str(), cx.exec.id, cx.stage)
    }

    /// A response arrived: a "sent again" notice has been seen.
    pub(crate) fn quiet(&mut self) {
        if matches!(self.last, Some(Delivery::Resent)) {
            self.last = Some(Delivery::Sent);
        }
    }

    /// Whether a link is outstanding (the page then waits for it).
    pub(crate) fn awaits_link(&self) -> bool {
        // Decoys too: their waiting page must end at the link attempt limit as a real one does.
        matches!(self.outstanding, Outstanding::Link { .. })
    }

    /// Makes what the last send issued unusable: its code, and its magic link with the
    /// server-side ticket. Used when the message did not go out (so a page that says "send
    /// again" never sits beside a link that would still work) and when the user moves on to
    /// another device.
    ///
    /// # Errors
    /// Storage errors.
    pub(crate) fn withdraw(&mut self, services: &Services) -> Result<(), FlowError> {
        let old = std::mem::replace(&mut self.outstanding, Outstanding::Nothing);
        if let Outstanding::Link { ticket, .. } = old {
            services.store.take_ticket(ticket.expose())?;
        }
        // A message still queued would carry what no longer works: it never goes out.
        if let Some(q) = self.queued.take() {
            services.store.take_outbox(&q.id)?;
        }
        Ok(())
    }

    /// Judges a typed code; a valid one is used up.
    ///
    /// # Security
    /// The attempt is counted against the user before the code is looked at, atomically, so
    /// parallel guesses from several sign-ins cannot all pass a check made before any of them
    /// was counted. A right code resets that count. Comparison is constant-time on keyed
    /// hashes; a decoy never matches.
    ///
    /// # Errors
    /// Storage errors.
    pub(crate) fn verify(
        &mut self,
        cx: &CodeCx<'_>,
        code: &SecretString,
    ) -> Result<Verdict, FlowError> {
        let verdict = self.judge(cx, code)?;
        if verdict != Verdict::Valid {
            tracing::info!(user = %Self::subject(cx.exec), client = %cx.client, stage = cx.stage, outcome = "failure", verdict = ?verdict, "one-time code refused");
            crate::audit::sign_in(&Self::subject(cx.exec), cx.client, false, cx.stage);
        }
        Ok(verdict)
    }

    fn judge(&mut self, cx: &CodeCx<'_>, code: &SecretString) -> Result<Verdict, FlowError> {
        let store = &cx.services.store;
        let fails_key = self.counter_key("fails", &self.limited(cx));
        let max = self.rules.max_attempts;
        let user_fails = if max > 0 {
            let n = store.bump_counter(&fails_key, self.rules.window as i64, cx.now)?;
            if n > max {
                self.outstanding = Outstanding::Nothing;
                return Ok(Verdict::TooMany);
            }
            n
        } else {
            0
        };
        // Regulation counts the guess too (per address, per account, account-wide), before
        // it is judged.
        let attempt = super::regulated::attempt(cx.services, cx.exec, cx.client, cx.now)?;
        let (valid, expires) = match &self.outstanding {
            Outstanding::Code { hash, expires } if !self.decoy => {
                let key = store.secret("otp")?;
                let purpose = self.purpose(cx);
                let ok = otp::verify_code(&key, &purpose, code.expose(), hash.expose());
                (ok, *expires)
            }
            _ => (false, 0),
        };
        // A right code that expired was no guess: it is not held against the client.
        super::regulated::settle(cx.services, attempt, valid)?;
        if valid {
            self.outstanding = Outstanding::Nothing;
            if cx.now < expires {
                store.reset_counter(&fails_key)?;
                return Ok(Verdict::Valid);
            }
            return Ok(Verdict::Expired);
        }
        // Saturating: a count read back at the top of its range stays there, never wraps to 0.
        self.attempts = self.attempts.saturating_add(1);
        if max > 0 && (self.attempts >= max || user_fails >= max) {
            self.outstanding = Outstanding::Nothing;
            return Ok(Verdict::TooMany);
        }
        Ok(Verdict::Wrong)
    }

    /// Whether the outstanding link was confirmed in some tab; if so it is consumed (single
    /// use: of two racing consumers only the one that removes the ticket wins).
    ///
    /// # Security
    /// Curity's `max_allowed_attempts` counts link confirmations too: links this browser
    /// opened that were not valid (used, expired, mistyped; counted by
    /// [`super::Engine::link_refused`]) count as wrong codes do, and at the limit the link is
    /// withdrawn and the execution ends. Decoys count the same way.
    ///
    /// # Errors
    /// Storage or corrupt-record errors.
    pub(crate) fn link_confirmed(&mut self, cx: &CodeCx<'_>) -> Result<LinkCheck, FlowError> {
        let store = &cx.services.store;
        let max = self.rules.max_attempts;
        let refused = store.counter(&Self::link_fails_key(&cx.exec.id), cx.now)?;
        if max > 0 && self.attempts.saturating_add(refused) >= max {
            self.withdraw(cx.services)?;
            return Ok(LinkCheck::TooMany);
        }
        let Outstanding::Link { ticket, .. } = &self.outstanding else {
            return Ok(LinkCheck::Waiting);
        };
        if self.decoy {
            return Ok(LinkCheck::Waiting);
        }
        let Some(bytes) = store.ticket(ticket.expose(), cx.now)? else {
            return Ok(LinkCheck::Waiting);
        };
        let record: LinkTicket = serde_json::from_slice(&bytes)?;
        if !record.confirmed || record.execution != cx.exec.id {
            return Ok(LinkCheck::Waiting);
        }
        if !store.take_ticket(ticket.expose())? {
            return Ok(LinkCheck::Waiting);
        }
        self.outstanding = Outstanding::Nothing;
        self.queued = None;
        Ok(LinkCheck::Confirmed)
    }

    /// The challenge for this machine: a code box while a code is outstanding, a waiting page
    /// while a link is, and otherwise only the way to send again. `shown` names the
    /// destination as the page may show it. Pure: rendering never sends or counts.
    pub(crate) fn challenge(&self, component: &str, shown: &str) -> Challenge {
        let outstanding = !matches!(self.outstanding, Outstanding::Nothing);
        let mut c = match (&self.outstanding, self.rules.link) {
            (Outstanding::Code { .. }, _) => {
                let mut c = Challenge::new(
                    component,
                    vec![Field::new("code", "text", "Code").autocomplete("one-time-code")],
                );
                if self.rules.outbox.is_some() {
                    c.info.push(format!("A code is on its way to {shown}. It can take a few minutes to arrive; enter it here when it does."));
                } else {
                    c.info.push(format!("We sent a code to {shown}."));
                }
                c
            }
            (Outstanding::Link { .. }, _) => {
                let mut c = Challenge::new(component, Vec::new());
                if self.rules.outbox.is_some() {
                    c.info.push(format!(
                        "A link is on its way to {shown}. It can take a few minutes to arrive. Open it to continue; this page moves on by itself once it is confirmed."
                    ));
                } else {
                    c.info.push(format!(
                        "We sent a link to {shown}. Open it to continue; this page moves on by itself once it is confirmed."
                    ));
                }
                c.poll = Some(3);
                c
            }
            (Outstanding::Nothing, _) => Challenge::new(component, Vec::new()),
        };
        c.title = Some(
            match (outstanding, self.medium, self.rules.link) {
                (true, Medium::Email, _) => "Check your email",
                (true, Medium::Sms, _) => "Enter the code we texted you",
                (false, _, false) => "Get a new code",
                (false, _, true) => "Get a new link",
            }
            .into(),
        );
        c.actions.push(Action {
            name: RESEND.into(),
            label: if self.rules.link {
                "Send a new link".into()
            } else {
                "Send a new code".into()
            },
        });
        // Shown until the next response, so a redirect after the post does not lose it.
        match &self.last {
            Some(Delivery::Resent) if self.rules.link => c.info.push(otp::RESENT_LINK.into()),
            Some(Delivery::Resent) => c.info.push(otp::RESENT.into()),
            Some(Delivery::Refused { message }) => c.errors.push(message.clone()),
            Some(Delivery::Sent) | None => {}
        }
        c
    }
}

/// The action that asks for another code or link.
pub(crate) const RESEND: &str = "resend";

/// What a response to a code challenge asks for.
pub(crate) enum Answer {
    Resend,
    Code(SecretString),
    /// Link mode has nothing to type; a plain submit just re-checks.
    Nothing,
}

/// Reads a response to [`CodeState::challenge`].
pub(crate) fn answer(input: &super::Input) -> Answer {
    if input.get("action").is_some_and(|a| a == RESEND) {
        return Answer::Resend;
    }
    match input.get("code") {
        Some(c) => Answer::Code(SecretString::new(c.as_str())),
        None => Answer::Nothing,
    }
}

/// The message a refused code shows, and whether the execution ends.
pub(crate) fn refusal(verdict: Verdict) -> Option<(bool, &'static str)> {
    match verdict {
        Verdict::Valid => None,
        Verdict::Wrong => Some((false, otp::WRONG_CODE)),
        Verdict::Expired => Some((false, otp::EXPIRED_CODE)),
        Verdict::TooMany => Some((true, otp::TOO_MANY_ATTEMPTS)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::OtpMode;
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

    fn code(medium: Medium, mode: OtpMode, outstanding: Outstanding) -> CodeState {
        CodeState {
            outstanding,
            ..CodeState::new(medium, "s", "x".into(), &policy(mode))
        }
    }

    fn pending_code() -> Outstanding {
        Outstanding::Code {
            hash: SecretString::new("h"),
            expires: 1,
        }
    }

    #[test]
    fn the_code_box_shows_only_while_a_code_is_outstanding_with_the_mediums_title() {
        for (medium, title) in [
            (Medium::Email, "Check your email"),
            (Medium::Sms, "Enter the code we texted you"),
        ] {
            let c = code(medium, OtpMode::Code, Outstanding::Nothing).challenge("k", "x");
            assert!(c.fields.is_empty(), "{c:?}");
            assert_eq!(c.actions[0].name, RESEND);
            assert_eq!(c.title.as_deref(), Some("Get a new code"));
            let c = code(medium, OtpMode::Code, pending_code()).challenge("k", "x");
            assert_eq!(c.fields[0].name, "code");
            assert_eq!(c.fields[0].autocomplete, "one-time-code");
            assert_eq!(c.title.as_deref(), Some(title));
        }
    }

    #[test]
    fn a_link_page_waits_only_for_a_link_that_went_out_and_texts_never_carry_links() {
        let c = code(Medium::Email, OtpMode::Link, Outstanding::Nothing).challenge("k", "x");
        assert_eq!((c.poll, c.title.as_deref()), (None, Some("Get a new link")));
        let link = Outstanding::Link {
            ticket: SecretString::new("t"),
            expires: 1,
        };
        let c = code(Medium::Email, OtpMode::Link, link).challenge("k", "x");
        assert_eq!(
            (c.poll, c.title.as_deref()),
            (Some(3), Some("Check your email"))
        );
        assert!(!Rules::of(&policy(OtpMode::Link), Medium::Sms).link);
    }

    #[test]
    fn a_failed_send_shows_its_message_and_a_resend_says_so_until_quieted() {
        let mut st = code(Medium::Email, OtpMode::Code, Outstanding::Nothing);
        st.last = Some(Delivery::Refused {
            message: "nope".into(),
        });
        assert_eq!(st.challenge("k", "x").errors, ["nope"]);
        st.last = Some(Delivery::Resent);
        assert_eq!(st.challenge("k", "x").info, [otp::RESENT]);
        st.quiet();
        assert!(st.challenge("k", "x").info.is_empty());
    }
}

//! `email` (authentik's Email stage): proves the pending user's address with a link or a code
//! sent there. The message goes through the persisted outbox ([`crate::flow::outbox`]), so a
//! mail server that is down or stalls never holds the page: it says the message is on its way,
//! offers a resend (rate-limited), and the outbox retries in the background.
//!
//! # Security
//! Where it sends: the pending user's own address, or, for a user being enrolled (no account
//! named yet), the address a prompt or invitation put in the flow (`email`). An identifier
//! that names no account, an account without an address, and a disabled one (unless
//! `activate_user_on_success`) get exactly the same pages, limits and timing, and nothing is
//! sent, so a recovery flow never tells who has an account. Its limits are counted per
//! account and client address, apart from the sign-in codes', so a stranger starting
//! recoveries for someone cannot use up that person's attempts or second factor.

use crate::config::EmailVerifyConfig;
use crate::flow::code::{self, Answer, CodeState, Medium, Outboxed};
use crate::flow::state::StageState;
use crate::flow::step::{mismatch, Cx, Effect, Stage, Transition};
use crate::flow::{address, otp, Challenge, FlowError, Input, StageKind};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// How the pages name the destination, the same for every account (and for none).
pub(crate) const SHOWN: &str = "your email address";
/// The prompt (or invitation) value holding the address of a user being enrolled.
pub(crate) const PROMPT_KEY: &str = "email";

pub(crate) struct EmailVerify {
    pub(crate) cfg: EmailVerifyConfig,
}

/// What an email verification stage waits for.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "waiting", rename_all = "snake_case")]
pub(crate) enum VerifyState {
    /// The link or code sent (or, for a decoy, pretended to be sent).
    Code { code: CodeState },
}

impl VerifyState {
    pub(crate) fn code(&self) -> Option<&CodeState> {
        let VerifyState::Code { code } = self;
        Some(code)
    }

    pub(crate) fn code_mut(&mut self) -> Option<&mut CodeState> {
        let VerifyState::Code { code } = self;
        Some(code)
    }
}

impl EmailVerify {
    /// The address to verify, or why there is none (then a decoy runs).
    fn target(&self, cx: &Cx<'_>) -> Result<Result<String, &'static str>, FlowError> {
        if cx.exec.user.is_some() {
            let Some(user) = cx.user()? else {
                return Ok(Err("the account is gone"));
            };
            if !user.active && !self.cfg.activate_user_on_success {
                return Ok(Err("the account is disabled"));
            }
            return Ok(match user.email.filter(|a| address::valid(a)) {
                Some(a) => Ok(a),
                None => Err("the account has no email address"),
            });
        }
        if cx.exec.uid.is_some() {
            return Ok(Err("the identifier names no account"));
        }
        Ok(match cx.exec.prompt_data.get(PROMPT_KEY) {
            Some(a) if address::valid(a.trim()) => Ok(a.trim().to_string()),
            _ => Err("no account and no `email` value in the flow"),
        })
    }
}

#[async_trait]
impl Stage for EmailVerify {
    fn kind(&self) -> StageKind {
        StageKind::Email
    }

    async fn enter(&self, cx: &Cx<'_>) -> Result<Transition, FlowError> {
        let policy = &self.cfg.otp;
        let mut code = match self.target(cx)? {
            Ok(to) => CodeState::new(Medium::Email, cx.name, to, policy),
            Err(why) => {
                tracing::info!(stage = cx.name, client = %cx.client, reason = why, "email verification: nothing will be sent");
                CodeState::decoy(Medium::Email, cx.name, String::new(), policy)
            }
        };
        code.rules.per_client = true;
        code.rules.outbox = Some(Box::new(Outboxed {
            template: self.cfg.template.clone(),
            cooldown: self.cfg.resend_cooldown.as_secs(),
        }));
        Ok(Transition::stay(VerifyState::Code { code }).and(Effect::SendCode { resend: false }))
    }

    fn challenge(&self, cx: &Cx<'_>, state: &StageState) -> Result<Challenge, FlowError> {
        let StageState::Email(VerifyState::Code { code }) = state else {
            return Err(mismatch(cx));
        };
        Ok(code.challenge(self.kind().as_str(), SHOWN))
    }

    async fn submit(
        &self,
        cx: &Cx<'_>,
        state: StageState,
        input: &Input,
    ) -> Result<Transition, FlowError> {
        let StageState::Email(state) = state else {
            return Err(mismatch(cx));
        };
        Ok(match code::answer(input) {
            Answer::Resend => Transition::stay(state).and(Effect::SendCode { resend: true }),
            Answer::Code(typed) => Transition::stay(state).and(Effect::CheckCode(typed)),
            Answer::Nothing => Transition::stay(state),
        })
    }

    /// The address is proved: with `activate_user_on_success` the pending account becomes
    /// active, and an account without an address gets this one (a user being enrolled).
    async fn verified(&self, cx: &Cx<'_>, state: &StageState) -> Result<Vec<Effect>, FlowError> {
        let StageState::Email(VerifyState::Code { code }) = state else {
            return Err(mismatch(cx));
        };
        let Some(mut user) = cx.user()? else {
            tracing::info!(stage = cx.name, client = %cx.client, to = %otp::mask(&code.to), "email address verified for a user being enrolled");
            return Ok(Vec::new());
        };
        let mut changed = false;
        if user.email.is_none() && cx.services.store.user_by_email(&code.to)?.is_none() {
            user.email = Some(code.to.clone());
            changed = true;
        }
        if !user.active && self.cfg.activate_user_on_success {
            user.active = true;
            changed = true;
            tracing::info!(user = %user.username, "account activated by email verification");
        }
        tracing::info!(user = %user.username, client = %cx.client, stage = cx.name, to = %otp::mask(&code.to), "email address verified");
        Ok(if changed {
            vec![Effect::PutUser(user)]
        } else {
            Vec::new()
        })
    }
}

//! `authenticator_sms`: enrols a phone number. The number is normalised and checked against the
//! stage's rules before anything is sent; the device is saved only once the texted code comes
//! back. With `verify_only`, only a hash of the number is kept and the device is never offered
//! for validation.

use crate::config::SmsStageConfig;
use crate::flow::code::{self, Answer, CodeState, Medium};
use crate::flow::state::StageState;
use crate::flow::step::{mismatch, Cx, Effect, Stage, Transition};
use crate::flow::{otp, phone, Challenge, Field, FlowError, Input, StageKind};
use crate::store::{Device, DeviceClass};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// The prompt field an earlier prompt stage may have filled with the number.
pub(crate) const PROMPT_KEY: &str = "phone";

pub(crate) struct AuthenticatorSms {
    pub(crate) cfg: SmsStageConfig,
}

/// What an SMS setup stage waits for.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "waiting", rename_all = "snake_case")]
pub(crate) enum SmsState {
    /// A phone number; `refused` when the one a prompt gave was not accepted.
    Number { refused: bool },
    /// The code texted to the machine's number.
    Code { code: CodeState },
}

impl SmsState {
    pub(crate) fn code(&self) -> Option<&CodeState> {
        match self {
            SmsState::Code { code } => Some(code),
            SmsState::Number { .. } => None,
        }
    }

    pub(crate) fn code_mut(&mut self) -> Option<&mut CodeState> {
        match self {
            SmsState::Code { code } => Some(code),
            SmsState::Number { .. } => None,
        }
    }
}

impl AuthenticatorSms {
    /// Whether codes for this execution only pretend to go out: unknown or disabled accounts
    /// (the same pages, nothing sent), and any account before something proved who the user
    /// is (the number is the user's word; it would let anyone enrol their own phone on
    /// someone else's account).
    fn decoy(&self, cx: &Cx<'_>) -> Result<bool, FlowError> {
        if !cx.user()?.is_some_and(|u| u.active) {
            return Ok(true);
        }
        if !cx.exec.authenticated() {
            tracing::warn!(stage = cx.name, client = %cx.client, "phone enrolment before anything proved who the user is: nothing sent (put a password stage first)");
            return Ok(true);
        }
        Ok(false)
    }

    /// Codes to `number`, the first one sent at once.
    fn confirm(&self, cx: &Cx<'_>, number: String) -> Result<Transition, FlowError> {
        let make = if self.decoy(cx)? {
            CodeState::decoy
        } else {
            CodeState::new
        };
        let code = make(Medium::Sms, cx.name, number, &self.cfg.otp);
        Ok(Transition::stay(SmsState::Code { code }).and(Effect::SendCode { resend: false }))
    }

    fn phone_field(&self) -> Field {
        let mut f = Field::new(PROMPT_KEY, "tel", "Phone number").autocomplete("tel");
        f.placeholder = Some("+41 79 123 45 67".into());
        f
    }

    fn enrol(&self, cx: &Cx<'_>, number: &str) -> Result<Vec<Effect>, FlowError> {
        let Some(mut user) = cx.user()?.filter(|u| u.active) else {
            return Err(FlowError::Stage {
                stage: cx.name.to_string(),
                reason: "no account to enrol the phone for".into(),
            });
        };
        let store = &cx.services.store;
        // Keyed: there are only some 10^10 numbers, so a plain hash could be reversed by
        // trying them all; without the database's key nobody can.
        let hash = otp::hash_code(&store.secret("otp")?, "phone", number);
        let existing = store.devices(&user.username)?.into_iter().find(|d| {
            d.class == DeviceClass::Sms
                && (d.address == number || d.address_hash.as_deref() == Some(hash.as_str()))
        });
        let verify_only = self.cfg.verify_only;
        let device = match existing {
            Some(d) => Device {
                last_used: Some(cx.now),
                ..d
            },
            None => Device {
                id: crate::secret::random_token(9),
                username: user.username.clone(),
                class: DeviceClass::Sms,
                name: self.cfg.friendly_name.clone(),
                address: if verify_only {
                    String::new()
                } else {
                    number.to_string()
                },
                address_hash: verify_only.then(|| hash.clone()),
                stage: cx.name.to_string(),
                created: cx.now,
                last_used: Some(cx.now),
                secret: None,
            },
        };
        let mut effects = vec![Effect::PutDevice(device)];
        if !verify_only && user.phone.is_none() {
            user.phone = Some(number.to_string());
            effects.push(Effect::PutUser(user.clone()));
        }
        tracing::info!(user = %user.username, client = %cx.client, to = %otp::mask(number), verify_only, "SMS authenticator enrolled");
        Ok(effects)
    }
}

#[async_trait]
impl Stage for AuthenticatorSms {
    fn kind(&self) -> StageKind {
        StageKind::AuthenticatorSms
    }

    async fn enter(&self, cx: &Cx<'_>) -> Result<Transition, FlowError> {
        match cx.exec.prompt_data.get(PROMPT_KEY) {
            Some(raw) => match phone::accept(raw, &self.cfg) {
                Some(number) => self.confirm(cx, number),
                None => Ok(Transition::stay(SmsState::Number { refused: true })),
            },
            None => Ok(Transition::stay(SmsState::Number { refused: false })),
        }
    }

    fn challenge(&self, cx: &Cx<'_>, state: &StageState) -> Result<Challenge, FlowError> {
        let StageState::AuthenticatorSms(state) = state else {
            return Err(mismatch(cx));
        };
        match state {
            SmsState::Number { refused } => {
                let mut c = Challenge::new(self.kind().as_str(), vec![self.phone_field()])
                    .titled("Add your phone number");
                c.info.push(format!(
                    "Add {} as a way to confirm it is you: we will text a code to this number.",
                    self.cfg.friendly_name
                ));
                if *refused {
                    c.errors.push(self.cfg.phone_error_message.clone());
                }
                Ok(c)
            }
            SmsState::Code { code } => {
                Ok(code.challenge(self.kind().as_str(), &otp::mask(&code.to)))
            }
        }
    }

    async fn submit(
        &self,
        cx: &Cx<'_>,
        state: StageState,
        input: &Input,
    ) -> Result<Transition, FlowError> {
        let StageState::AuthenticatorSms(state) = state else {
            return Err(mismatch(cx));
        };
        if let SmsState::Number { .. } = state {
            let typed = input.get(PROMPT_KEY).map(String::as_str);
            let Some(number) = phone::accept(typed.unwrap_or_default(), &self.cfg) else {
                tracing::info!(client = %cx.client, stage = cx.name, "phone number refused");
                let error = self.cfg.phone_error_message.clone();
                return Ok(Transition::refuse(
                    SmsState::Number { refused: false },
                    error,
                ));
            };
            return self.confirm(cx, number);
        }
        Ok(match code::answer(input) {
            Answer::Resend => Transition::stay(state).and(Effect::SendCode { resend: true }),
            Answer::Code(typed) => Transition::stay(state).and(Effect::CheckCode(typed)),
            Answer::Nothing => Transition::stay(state),
        })
    }

    async fn verified(&self, cx: &Cx<'_>, state: &StageState) -> Result<Vec<Effect>, FlowError> {
        let StageState::AuthenticatorSms(SmsState::Code { code }) = state else {
            return Err(mismatch(cx));
        };
        self.enrol(cx, &code.to)
    }
}

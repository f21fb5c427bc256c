//! `authenticator_sms`: enrols a phone number. The number is normalised and checked against the
//! stage's rules before anything is sent; the device is saved only once the texted code comes
//! back. With `verify_only`, only a hash of the number is kept and the device is never offered
//! for validation.

use super::otp_step::{self, Answer, Sent};
use crate::config::SmsStageConfig;
use crate::flow::otp::{self, OtpState};
use crate::flow::{phone, Challenge, Field, FlowError, Input, Outcome, Stage, StageContext};
use crate::store::{Device, DeviceClass, User};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// The prompt field an earlier prompt stage may have filled with the number.
pub const PROMPT_KEY: &str = "phone";

pub struct AuthenticatorSms {
    pub cfg: SmsStageConfig,
}

#[derive(Default, Serialize, Deserialize)]
struct State {
    phone: Option<String>,
    otp: OtpState,
    notice: Option<String>,
    send_error: Option<String>,
    /// The number from the prompt stage was refused; ask for another.
    prompt_refused: bool,
}

impl AuthenticatorSms {
    fn user(&self, cx: &StageContext<'_>) -> Result<Option<User>, FlowError> {
        match &cx.exec.user {
            Some(name) => Ok(cx.services.store.user(name)?.filter(|u| u.active)),
            None => Ok(None),
        }
    }

    fn settle(&self, cx: &StageContext<'_>, st: &mut State) -> Result<(), FlowError> {
        if st.phone.is_some() || st.prompt_refused {
            return Ok(());
        }
        if let Some(raw) = cx.exec.prompt_data.get(PROMPT_KEY) {
            match phone::accept(raw, &self.cfg) {
                Some(n) => st.phone = Some(n),
                None => st.prompt_refused = true,
            }
        }
        if self.user(cx)?.is_none() {
            // Unknown or disabled account: the same pages, nothing sent.
            st.otp.decoy = true;
        } else if !cx.exec.authenticated() {
            // The number is the user's word; before they proved who they are it would let
            // anyone enrol their own phone on someone else's account.
            tracing::warn!(stage = cx.name, client = %cx.client, "phone enrolment before anything proved who the user is: nothing sent (put a password stage first)");
            st.otp.decoy = true;
        }
        Ok(())
    }

    async fn send(&self, cx: &mut StageContext<'_>, st: &mut State) -> Result<(), FlowError> {
        let number = st.phone.clone().unwrap_or_default();
        let Some(channel) = cx.services.sms.get(cx.name).cloned() else {
            st.send_error = Some(otp_step::SMS_SEND_FAILED.into());
            return Ok(());
        };
        st.send_error =
            match otp_step::send_sms(cx, &self.cfg.otp, &mut st.otp, &channel, &number).await? {
                Sent::Ok => None,
                Sent::Failed(m) => Some(m),
            };
        Ok(())
    }

    fn phone_field(&self) -> Field {
        let mut f = Field::new(PROMPT_KEY, "tel", "Phone number").autocomplete("tel");
        f.placeholder = Some("+41 79 123 45 67".into());
        f
    }

    fn enrol(&self, cx: &StageContext<'_>, number: &str) -> Result<(), FlowError> {
        let Some(mut user) = self.user(cx)? else {
            return Err(FlowError::Stage {
                stage: cx.name.to_string(),
                reason: "no account to enrol the phone for".into(),
            });
        };
        let store = &cx.services.store;
        let now = crate::clock::now();
        // Keyed: there are only some 10^10 numbers, so a plain hash could be reversed by
        // trying them all; without the database's key nobody can.
        let hash = otp::hash_code(&store.secret("otp")?, "phone", number);
        let existing = store.devices(&user.username)?.into_iter().find(|d| {
            d.class == DeviceClass::Sms
                && (d.address == number || d.address_hash.as_deref() == Some(hash.as_str()))
        });
        let device = match existing {
            Some(mut d) => {
                d.last_used = Some(now);
                d
            }
            None => Device {
                id: crate::secret::random_token(9),
                username: user.username.clone(),
                class: DeviceClass::Sms,
                name: self.cfg.friendly_name.clone(),
                address: if self.cfg.verify_only {
                    String::new()
                } else {
                    number.to_string()
                },
                address_hash: self.cfg.verify_only.then(|| hash.clone()),
                stage: cx.name.to_string(),
                created: now,
                last_used: Some(now),
            },
        };
        store.put_device(&device)?;
        if !self.cfg.verify_only && user.phone.is_none() {
            user.phone = Some(number.to_string());
            store.put_user(&user)?;
        }
        tracing::info!(user = %user.username, client = %cx.client, to = %otp::mask(number), verify_only = self.cfg.verify_only, "SMS authenticator enrolled");
        Ok(())
    }
}

#[async_trait]
impl Stage for AuthenticatorSms {
    fn kind(&self) -> &'static str {
        "authenticator_sms"
    }

    async fn challenge(&self, cx: &mut StageContext<'_>) -> Result<Challenge, FlowError> {
        let mut st: State = cx.state();
        self.settle(cx, &mut st)?;
        let Some(number) = st.phone.clone() else {
            let mut c = Challenge::new(self.kind(), vec![self.phone_field()])
                .titled("Add your phone number");
            c.info.push(format!(
                "Add {} as a way to confirm it is you: we will text a code to this number.",
                self.cfg.friendly_name
            ));
            if st.prompt_refused {
                c.errors.push(self.cfg.phone_error_message.clone());
            }
            cx.set_state(&st)?;
            return Ok(c);
        };
        if st.otp.sends == 0 && st.send_error.is_none() {
            self.send(cx, &mut st).await?;
        }
        let mut c = otp_step::code_challenge(
            self.kind(),
            &self.cfg.otp,
            &st.otp,
            &otp::mask(&number),
            otp_step::Channel::Sms,
        );
        // Shown until the next response, so a redirect after the post does not lose it.
        if let Some(n) = &st.notice {
            c.info.push(n.clone());
        }
        if let Some(e) = &st.send_error {
            c.errors.push(e.clone());
        }
        cx.set_state(&st)?;
        Ok(c)
    }

    async fn submit(&self, cx: &mut StageContext<'_>, input: &Input) -> Result<Outcome, FlowError> {
        let mut st: State = cx.state();
        st.notice = None;
        self.settle(cx, &mut st)?;
        if st.phone.is_none() {
            let typed = input
                .get(PROMPT_KEY)
                .map(String::as_str)
                .unwrap_or_default();
            let Some(number) = phone::accept(typed, &self.cfg) else {
                tracing::info!(client = %cx.client, stage = cx.name, "phone number refused");
                cx.set_state(&st)?;
                return Ok(Outcome::Stay(vec![self.cfg.phone_error_message.clone()]));
            };
            st.phone = Some(number);
            st.prompt_refused = false;
            self.send(cx, &mut st).await?;
            cx.set_state(&st)?;
            return Ok(Outcome::Stay(Vec::new()));
        }
        let outcome = match otp_step::answer(input) {
            Answer::Resend => {
                self.send(cx, &mut st).await?;
                if st.send_error.is_none() {
                    st.notice = Some(otp_step::resent_notice(self.cfg.otp.mode));
                }
                Outcome::Stay(Vec::new())
            }
            Answer::Nothing => Outcome::Stay(Vec::new()),
            Answer::Code(code) => {
                let verdict = otp_step::check_code(cx, &self.cfg.otp, "sms", &mut st.otp, code)?;
                match otp_step::refused(verdict) {
                    Some(outcome) => outcome,
                    None => {
                        let number = st.phone.clone().unwrap_or_default();
                        self.enrol(cx, &number)?;
                        Outcome::Pass
                    }
                }
            }
        };
        cx.set_state(&st)?;
        Ok(outcome)
    }
}

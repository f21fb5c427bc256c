//! Email and SMS in validation: a code (or link) sent to the device's address through the one
//! code machine, typed back and judged by the engine.

use super::class::{Answer, Class, ClassCx, Pending};
use crate::flow::code::{self, CodeState, Medium};
use crate::flow::step::Effect;
use crate::flow::{otp, Challenge, FlowError, Input};
use crate::store::Device;
use async_trait::async_trait;

/// A class whose codes travel by `medium`.
pub(super) struct Sent {
    medium: Medium,
}

impl Sent {
    pub(super) const EMAIL: Sent = Sent {
        medium: Medium::Email,
    };
    pub(super) const SMS: Sent = Sent {
        medium: Medium::Sms,
    };
}

#[async_trait]
impl Class for Sent {
    /// A verify-only SMS device kept only its number's hash: there is nowhere to send to.
    fn usable(&self, device: &Device) -> bool {
        !device.verify_only()
    }

    fn label(&self, d: &Device) -> String {
        let shown = otp::mask(&d.address);
        format!("{} ({shown})", d.name)
    }

    /// The first code goes out at once. The device remembers the stage that enrolled it, so
    /// the code travels the same way (that stage's SMTP connection or SMS provider) and
    /// follows the same policy as the one that verified it.
    async fn begin(
        &self,
        cx: &ClassCx<'_>,
        device: Option<&Device>,
    ) -> Result<(Pending, Vec<Effect>), FlowError> {
        let mut code = match device {
            Some(d) => CodeState::new(self.medium, &d.stage, d.address.clone(), &cx.policy),
            None => CodeState::decoy(self.medium, cx.decoy_route, String::new(), &cx.policy),
        };
        code.sends = cx.spent.sends;
        code.attempts = cx.spent.attempts;
        Ok((
            Pending::Sent(code),
            vec![Effect::SendCode { resend: false }],
        ))
    }

    fn challenge(&self, cx: &ClassCx<'_>, pending: &Pending) -> Result<Challenge, FlowError> {
        let Some(code) = pending.code() else {
            return Err(crate::flow::step::mismatch(cx.cx));
        };
        // The device is named as a kind, never by its address, so the page reads the same
        // for the decoy shown to unknown and disabled accounts.
        let shown = match self.medium {
            Medium::Sms => "the phone number on your account",
            Medium::Email => crate::flow::stages::authenticator_email::ACCOUNT_ADDRESS,
        };
        Ok(code.challenge(
            crate::flow::StageKind::AuthenticatorValidate.as_str(),
            shown,
        ))
    }

    async fn submit(
        &self,
        _cx: &ClassCx<'_>,
        _device: Option<&Device>,
        pending: Pending,
        input: &Input,
    ) -> Result<Answer, FlowError> {
        let effect = match code::answer(input) {
            code::Answer::Resend => Effect::SendCode { resend: true },
            code::Answer::Code(typed) => Effect::CheckCode(typed),
            code::Answer::Nothing => return Ok(Answer::wait(pending)),
        };
        Ok(Answer::Wait {
            pending,
            errors: Vec::new(),
            effects: vec![effect],
        })
    }

    /// RFC 8176 `sms`: "confirmation using SMS text message to the user at a registered
    /// number". It defines nothing for e-mail (its `otp` means HOTP/TOTP devices), so an
    /// e-mailed code earns no value; the `factors` claim still records `email`.
    fn code_methods(&self) -> &'static [&'static str] {
        match self.medium {
            Medium::Sms => &["sms"],
            Medium::Email => &[],
        }
    }
}

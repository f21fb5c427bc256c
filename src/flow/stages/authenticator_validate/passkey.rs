//! The `webauthn` class: a passkey or security key signs a challenge (the ceremony in
//! [`crate::flow::webauthn`]). The device is saved by compare-and-swap from the record the
//! answer was checked against, so two sign-ins racing with one key cannot both move its
//! counter from the same value.

use super::class::{Answer, Class, ClassCx, Pending};
use crate::flow::step::mismatch;
use crate::flow::webauthn::{self, Assertion, Refused, RelyingParty};
use crate::flow::{Challenge, Field, FlowError, Input};
use crate::store::Device;
use async_trait::async_trait;

/// The field the browser's answer comes back in.
const CREDENTIAL: &str = crate::flow::stages::authenticator_webauthn::CREDENTIAL;

pub(super) struct Passkey;

impl Passkey {
    fn rp(cx: &ClassCx<'_>) -> Result<RelyingParty, FlowError> {
        // Config refuses `webauthn` in device_classes without `[webauthn]`.
        match &cx.cfg.webauthn {
            Some(rp) => Ok(RelyingParty::new(rp)),
            None => Err(mismatch(cx.cx)),
        }
    }

    /// A fresh ceremony for `device`; for the decoy one that names a credential nobody has,
    /// so the page and its options look like a real account's.
    fn ceremony(cx: &ClassCx<'_>, device: Option<&Device>) -> Result<Assertion, FlowError> {
        let rp = Self::rp(cx)?;
        let uv = cx.cfg.webauthn_user_verification;
        let made = match device {
            Some(d) => rp.start_assertion(std::slice::from_ref(d), uv),
            None => {
                let exec = cx.cx.exec;
                let name = exec
                    .user
                    .as_deref()
                    .or(exec.uid.as_deref())
                    .unwrap_or_default();
                let key = cx.cx.services.store.secret("webauthn-decoy")?;
                rp.start_decoy(uv, webauthn::decoy_credential(&key, name))
            }
        };
        made.map_err(|refused| FlowError::Stage {
            stage: cx.cx.name.to_string(),
            reason: format!("passkey challenge: {}", refused.reason()),
        })
    }

    /// Checks `answer` against `device`, then stores the device from exactly the record it
    /// was checked against.
    fn judge(
        cx: &ClassCx<'_>,
        device: &Device,
        assertion: &Assertion,
        answer: &str,
    ) -> Result<Result<(Device, &'static [&'static str]), Refused>, FlowError> {
        let rp = Self::rp(cx)?;
        let response = match webauthn::parse_assertion(answer) {
            Ok(r) => r,
            Err(e) => return Ok(Err(e)),
        };
        let (used, methods) = match rp.finish_assertion(
            assertion,
            &response,
            std::slice::from_ref(device),
            cx.cx.now,
        ) {
            Ok(d) => d,
            Err(e) => return Ok(Err(e)),
        };
        if !cx.cx.services.store.swap_device(device, &used)? {
            return Ok(Err(Refused::Invalid("device changed during the check")));
        }
        Ok(Ok((used, methods)))
    }
}

#[async_trait]
impl Class for Passkey {
    fn usable(&self, device: &Device) -> bool {
        webauthn::credential(device).is_some()
    }

    async fn begin(
        &self,
        cx: &ClassCx<'_>,
        device: Option<&Device>,
    ) -> Result<(Pending, Vec<crate::flow::step::Effect>), FlowError> {
        let assertion = Self::ceremony(cx, device)?;
        Ok((Pending::Webauthn(assertion), Vec::new()))
    }

    fn challenge(&self, cx: &ClassCx<'_>, pending: &Pending) -> Result<Challenge, FlowError> {
        let Pending::Webauthn(assertion) = pending else {
            return Err(mismatch(cx.cx));
        };
        let field = Field::new(CREDENTIAL, "hidden", "Passkey");
        let mut c = Challenge::new(
            crate::flow::StageKind::AuthenticatorValidate.as_str(),
            vec![field],
        )
        .titled("Use your passkey");
        c.info.push(
            "Confirm it is you with your passkey or security key: your browser will ask for it."
                .into(),
        );
        c.webauthn = Some(serde_json::json!({
            "mode": "get",
            "publicKey": assertion.options["publicKey"],
        }));
        Ok(c)
    }

    async fn submit(
        &self,
        cx: &ClassCx<'_>,
        device: Option<&Device>,
        pending: Pending,
        input: &Input,
    ) -> Result<Answer, FlowError> {
        let Pending::Webauthn(assertion) = pending else {
            return Err(mismatch(cx.cx));
        };
        let Some(answer) = input.get(CREDENTIAL).filter(|a| !a.trim().is_empty()) else {
            return Ok(Answer::wait(Pending::Webauthn(assertion)));
        };
        // Counted by regulation before it is judged, like a password or a code.
        let attempt =
            crate::flow::regulated::attempt(cx.cx.services, cx.cx.exec, cx.cx.client, cx.cx.now)?;
        let verdict = match device {
            Some(d) => Self::judge(cx, d, &assertion, answer),
            // The decoy names a credential nobody has: every answer is refused alike.
            None => Ok(Err(Refused::Unknown)),
        };
        let right = matches!(verdict, Ok(Ok(_)));
        crate::flow::regulated::settle(cx.cx.services, attempt, right)?;
        let verdict = verdict?;
        match verdict {
            Ok((used, methods)) => {
                tracing::info!(stage = cx.cx.name, user = %used.username, device = %used.id, "passkey validated");
                Ok(Answer::Proved {
                    effects: Vec::new(),
                    methods: methods.to_vec(),
                    notice: Vec::new(),
                })
            }
            Err(refused) => {
                tracing::warn!(stage = cx.cx.name, client = %cx.cx.client, reason = refused.reason(), "passkey refused");
                // The challenge was spent: the next try is a new ceremony.
                let fresh = Self::ceremony(cx, device)?;
                Ok(Answer::Wait {
                    pending: Pending::Webauthn(fresh),
                    errors: vec![refused.message().into()],
                    effects: Vec::new(),
                })
            }
        }
    }
}

//! `authenticator_email`: enrols an e-mail address as a second factor. The user proves it by
//! typing the code sent there (or opening the link); only then is the device saved, so a
//! failed or abandoned attempt never leaves a half-enrolled device.

use crate::config::{EmailSource, EmailStageConfig};
use crate::flow::code::{self, Answer, CodeState, Medium};
use crate::flow::state::StageState;
use crate::flow::step::{mismatch, Cx, Effect, Stage, Transition};
use crate::flow::{address, otp, Challenge, Field, FlowError, Input, StageKind};
use crate::store::{Device, DeviceClass};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub(crate) const BAD_ADDRESS: &str = "Enter a valid email address.";
/// How pages refer to an address taken from the account.
pub(crate) const ACCOUNT_ADDRESS: &str = "the email address on your account";

pub(crate) struct AuthenticatorEmail {
    pub(crate) cfg: EmailStageConfig,
}

/// What an email setup stage waits for.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "waiting", rename_all = "snake_case")]
pub(crate) enum EmailState {
    /// The address to send codes to (the account has none the stage may use).
    Address,
    /// The code or link sent to the machine's address. `from_account`: the address came from
    /// the account (or this is a decoy), so pages never show it.
    Code { from_account: bool, code: CodeState },
}

impl EmailState {
    pub(crate) fn code(&self) -> Option<&CodeState> {
        match self {
            EmailState::Code { code, .. } => Some(code),
            EmailState::Address => None,
        }
    }

    pub(crate) fn code_mut(&mut self) -> Option<&mut CodeState> {
        match self {
            EmailState::Code { code, .. } => Some(code),
            EmailState::Address => None,
        }
    }
}

/// The flow has no value under the configured `intermediate_attribute`.
pub(crate) const NO_ATTRIBUTE: &str =
    "This step could not find the email address it needs. Start again.";

impl AuthenticatorEmail {
    /// Curity's registration mode: an identifier that names no account, typed as an email
    /// address, is sent a code there; proving it lets the flow's `user_write` create the
    /// account. Its pages read exactly as a sign-in's to an account's own address.
    fn registering(&self, cx: &Cx<'_>, known: bool) -> Option<Transition> {
        if !self.cfg.registration || known || cx.exec.user.is_some() {
            return None;
        }
        let typed = cx.exec.uid.as_deref().map(str::trim)?;
        if !address::valid(typed) {
            return None;
        }
        Some(self.confirm(cx, typed.to_string(), true, false))
    }

    /// Codes to `to`; `from_account` hides the address on the pages.
    fn confirm(&self, cx: &Cx<'_>, to: String, from_account: bool, decoy: bool) -> Transition {
        let make = if decoy {
            CodeState::decoy
        } else {
            CodeState::new
        };
        let code = make(Medium::Email, cx.name, to, &self.cfg.otp);
        Transition::stay(EmailState::Code { from_account, code })
            .and(Effect::SendCode { resend: false })
    }

    /// Enrols a device for `address`: the device (new, or the existing one marked used), and
    /// the account with the address filled in or activated where configured.
    fn enrol(&self, cx: &Cx<'_>, address: &str) -> Result<Vec<Effect>, FlowError> {
        let Some(mut user) = cx.user()? else {
            return Err(FlowError::Stage {
                stage: cx.name.to_string(),
                reason: "no account to enrol the address for".into(),
            });
        };
        let store = &cx.services.store;
        let existing = store
            .devices(&user.username)?
            .into_iter()
            .find(|d| d.class == DeviceClass::Email && d.address.eq_ignore_ascii_case(address));
        let device = match existing {
            Some(d) => Device {
                last_used: Some(cx.now),
                ..d
            },
            None => Device {
                id: crate::secret::random_token(9),
                username: user.username.clone(),
                class: DeviceClass::Email,
                name: self.cfg.friendly_name.clone(),
                address: address.to_string(),
                address_hash: None,
                stage: cx.name.to_string(),
                created: cx.now,
                last_used: Some(cx.now),
                secret: None,
            },
        };
        let mut effects = vec![Effect::PutDevice(device)];
        let mut changed = false;
        if user.email.is_none() && store.user_by_email(address)?.is_none() {
            user.email = Some(address.to_string());
            changed = true;
        }
        if !user.active && self.cfg.otp.activate_inactive_accounts {
            user.active = true;
            changed = true;
            tracing::info!(user = %user.username, "account activated by email confirmation");
        }
        tracing::info!(user = %user.username, client = %cx.client, to = %otp::mask(address), "email authenticator enrolled");
        if changed {
            effects.push(Effect::PutUser(user));
        }
        Ok(effects)
    }
}

#[async_trait]
impl Stage for AuthenticatorEmail {
    fn kind(&self) -> StageKind {
        StageKind::AuthenticatorEmail
    }

    /// Works out where codes go. Unknown accounts, and inactive ones unless allowed, get a
    /// decoy: the same pages, nothing sent, every code wrong.
    async fn enter(&self, cx: &Cx<'_>) -> Result<Transition, FlowError> {
        let user = cx.user()?;
        if let Some(t) = self.registering(cx, user.is_some()) {
            return Ok(t);
        }
        let eligible = user
            .as_ref()
            .is_some_and(|u| u.active || self.cfg.otp.allow_inactive_accounts);
        if !eligible {
            return Ok(self.confirm(cx, String::new(), true, true));
        }
        // An address the user supplies (typed here or given to a prompt) is trusted only
        // after they proved who they are; before that only the account's own address is.
        let authenticated = cx.exec.authenticated();
        let known = match &self.cfg.email_source {
            EmailSource::Prompt(_) | EmailSource::Intermediate(_) if !authenticated => None,
            EmailSource::Intermediate(key) => match cx.exec.prompt_data.get(key) {
                Some(a) if address::valid(a.trim()) => Some(a.trim().to_string()),
                _ => {
                    // Curity: the attribute is mandatory; the config check makes sure a stage
                    // before this one can set it, so this is a flow that did not.
                    tracing::error!(stage = cx.name, attribute = %key, "intermediate_attribute is missing from the flow or is not an email address");
                    return Ok(Transition::cancel(NO_ATTRIBUTE));
                }
            },
            EmailSource::Prompt(key) => cx.exec.prompt_data.get(key).cloned(),
            EmailSource::Account => user.and_then(|u| u.email),
        };
        if let Some(a) = known.filter(|a| address::valid(a)) {
            return Ok(self.confirm(cx, a, true, false));
        }
        if !authenticated {
            tracing::warn!(stage = cx.name, client = %cx.client, "no address on the account and nothing proved who the user is before this stage: nothing sent (put a password stage first, or give the account an email)");
            return Ok(self.confirm(cx, String::new(), true, true));
        }
        Ok(Transition::stay(EmailState::Address))
    }

    fn challenge(&self, cx: &Cx<'_>, state: &StageState) -> Result<Challenge, FlowError> {
        let StageState::AuthenticatorEmail(state) = state else {
            return Err(mismatch(cx));
        };
        match state {
            EmailState::Address => {
                let field = Field::new("email", "email", "Email address").autocomplete("email");
                let mut c = Challenge::new(self.kind().as_str(), vec![field])
                    .titled("Add your email address");
                c.info.push(format!(
                    "Add {} as a way to confirm it is you: we will send a code to this address.",
                    self.cfg.friendly_name
                ));
                Ok(c)
            }
            // An address the user typed is shown back; one from the account is not, so the
            // page for a real account and the decoy for an unknown or disabled one read the
            // same.
            EmailState::Code { from_account, code } => {
                let shown = if *from_account {
                    ACCOUNT_ADDRESS
                } else {
                    code.to.as_str()
                };
                Ok(code.challenge(self.kind().as_str(), shown))
            }
        }
    }

    async fn submit(
        &self,
        cx: &Cx<'_>,
        state: StageState,
        input: &Input,
    ) -> Result<Transition, FlowError> {
        let StageState::AuthenticatorEmail(state) = state else {
            return Err(mismatch(cx));
        };
        if let EmailState::Address = state {
            let typed = input.get("email").map(|s| s.trim()).unwrap_or_default();
            if !address::valid(typed) {
                return Ok(Transition::refuse(state, BAD_ADDRESS));
            }
            return Ok(self.confirm(cx, typed.to_string(), false, false));
        }
        Ok(match code::answer(input) {
            Answer::Resend => Transition::stay(state).and(Effect::SendCode { resend: true }),
            Answer::Code(typed) => Transition::stay(state).and(Effect::CheckCode(typed)),
            Answer::Nothing => Transition::stay(state),
        })
    }

    async fn verified(&self, cx: &Cx<'_>, state: &StageState) -> Result<Vec<Effect>, FlowError> {
        let StageState::AuthenticatorEmail(EmailState::Code { code, .. }) = state else {
            return Err(mismatch(cx));
        };
        if self.cfg.registration && cx.exec.user.is_none() {
            // Registration: the address is proved; the flow's user_write creates the account
            // with it (and the username typed, unless a prompt gave one).
            tracing::info!(stage = cx.name, client = %cx.client, to = %otp::mask(&code.to), "address proved for registration");
            let mut values = vec![("email".to_string(), code.to.clone())];
            if !cx.exec.prompt_data.contains_key("username") {
                values.push(("username".to_string(), code.to.clone()));
            }
            return Ok(vec![Effect::Remember(values)]);
        }
        self.enrol(cx, &code.to)
    }
}

//! `authenticator_email`: enrols an e-mail address as a second factor. The user proves it by
//! typing the code sent there (or opening the link); only then is the device saved, so a
//! failed or abandoned attempt never leaves a half-enrolled device.

use super::otp_step::{self, Answer, Sent};
use crate::config::{EmailSource, EmailStageConfig};
use crate::flow::otp::{self, OtpState};
use crate::flow::{Challenge, Field, FlowError, Input, Outcome, Stage, StageContext};
use crate::store::{Device, DeviceClass, User};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub const BAD_ADDRESS: &str = "Enter a valid email address.";
/// How pages refer to an address taken from the account.
pub const ACCOUNT_ADDRESS: &str = "the email address on your account";

pub struct AuthenticatorEmail {
    pub cfg: EmailStageConfig,
}

#[derive(Default, Serialize, Deserialize)]
struct State {
    /// The address codes go to, once known.
    address: Option<String>,
    /// Whether the address came from the account (then it is shown masked).
    from_account: bool,
    otp: OtpState,
    /// A line for the next page ("a new code was sent").
    notice: Option<String>,
    /// Set when the last send failed, so the page offers a retry instead of a code box.
    send_error: Option<String>,
}

impl AuthenticatorEmail {
    fn user(&self, cx: &StageContext<'_>) -> Result<Option<User>, FlowError> {
        match &cx.exec.user {
            Some(name) => Ok(cx.services.store.user(name)?),
            None => Ok(None),
        }
    }

    /// Works out where the code goes. Unknown accounts, and inactive ones unless allowed, get
    /// a decoy: the same pages, nothing sent, every code wrong.
    fn settle_address(&self, cx: &StageContext<'_>, st: &mut State) -> Result<(), FlowError> {
        if st.address.is_some() || st.otp.decoy {
            return Ok(());
        }
        let user = self.user(cx)?;
        let eligible = user
            .as_ref()
            .is_some_and(|u| u.active || self.cfg.otp.allow_inactive_accounts);
        if !eligible {
            st.otp.decoy = true;
            st.from_account = true;
            st.address = Some(String::new());
            return Ok(());
        }
        // An address the user supplies (typed here or given to a prompt) is trusted only
        // after they proved who they are; before that only the account's own address is.
        let authenticated = cx.exec.authenticated();
        let known = match &self.cfg.email_source {
            EmailSource::Prompt(key) if authenticated => cx.exec.prompt_data.get(key).cloned(),
            EmailSource::Prompt(_) => None,
            EmailSource::Account => user.and_then(|u| u.email),
        };
        if let Some(a) = known.filter(|a| valid_address(a)) {
            st.address = Some(a);
            st.from_account = true;
        } else if !authenticated {
            tracing::warn!(stage = cx.name, client = %cx.client, "no address on the account and nothing proved who the user is before this stage: nothing sent (put a password stage first, or give the account an email)");
            st.otp.decoy = true;
            st.from_account = true;
            st.address = Some(String::new());
        }
        Ok(())
    }

    /// How the page names the address. One the user typed is shown back; one from the account
    /// is not, so the page for a real account and the decoy for an unknown or disabled one
    /// read the same.
    fn shown_address(st: &State) -> String {
        match &st.address {
            Some(a) if !st.from_account => a.clone(),
            _ => ACCOUNT_ADDRESS.into(),
        }
    }

    async fn send(&self, cx: &mut StageContext<'_>, st: &mut State) -> Result<(), FlowError> {
        let to = st.address.clone().unwrap_or_default();
        let channel = cx.services.email_channel(cx.name).clone();
        st.send_error =
            match otp_step::send_email(cx, &self.cfg.otp, &mut st.otp, &channel, &to).await? {
                Sent::Ok => None,
                Sent::Failed(msg) => Some(msg),
            };
        Ok(())
    }

    /// The code or link came back: save the device, fill in the account's address when it had
    /// none, and activate the account when configured to.
    fn enrol(&self, cx: &mut StageContext<'_>, st: &State) -> Result<(), FlowError> {
        let (Some(mut user), Some(address)) = (self.user(cx)?, st.address.clone()) else {
            return Err(FlowError::Stage {
                stage: cx.name.to_string(),
                reason: "no account or address to enrol".into(),
            });
        };
        let store = &cx.services.store;
        let now = crate::clock::now();
        let existing = store
            .devices(&user.username)?
            .into_iter()
            .find(|d| d.class == DeviceClass::Email && d.address.eq_ignore_ascii_case(&address));
        let device = match existing {
            Some(mut d) => {
                d.last_used = Some(now);
                d
            }
            None => Device {
                id: crate::secret::random_token(9),
                username: user.username.clone(),
                class: DeviceClass::Email,
                name: self.cfg.friendly_name.clone(),
                address: address.clone(),
                address_hash: None,
                stage: cx.name.to_string(),
                created: now,
                last_used: Some(now),
            },
        };
        store.put_device(&device)?;
        let mut changed = false;
        if user.email.is_none() && store.user_by_email(&address)?.is_none() {
            user.email = Some(address.clone());
            changed = true;
        }
        if !user.active && self.cfg.otp.activate_inactive_accounts {
            user.active = true;
            changed = true;
            tracing::info!(user = %user.username, "account activated by email confirmation");
        }
        if changed {
            store.put_user(&user)?;
        }
        tracing::info!(user = %user.username, client = %cx.client, to = %otp::mask(&address), "email authenticator enrolled");
        Ok(())
    }
}

fn valid_address(a: &str) -> bool {
    a.len() <= 254 && a.parse::<lettre::Address>().is_ok()
}

#[async_trait]
impl Stage for AuthenticatorEmail {
    fn kind(&self) -> &'static str {
        "authenticator_email"
    }

    async fn resume(&self, cx: &mut StageContext<'_>) -> Result<Option<Outcome>, FlowError> {
        let mut st: State = cx.state();
        if !otp_step::link_done(cx, &self.cfg.otp, "email", &mut st.otp)? {
            return Ok(None);
        }
        self.enrol(cx, &st)?;
        cx.set_state(&st)?;
        Ok(Some(Outcome::Pass))
    }

    async fn challenge(&self, cx: &mut StageContext<'_>) -> Result<Challenge, FlowError> {
        let mut st: State = cx.state();
        self.settle_address(cx, &mut st)?;
        if st.address.is_none() {
            cx.set_state(&st)?;
            let mut c = Challenge::new(
                self.kind(),
                vec![Field::new("email", "email", "Email address").autocomplete("email")],
            )
            .titled("Add your email address");
            c.info.push(format!(
                "Add {} as a way to confirm it is you: we will send a code to this address.",
                self.cfg.friendly_name
            ));
            return Ok(c);
        }
        if st.otp.sends == 0 {
            self.send(cx, &mut st).await?;
        }
        let mut c = otp_step::code_challenge(
            self.kind(),
            &self.cfg.otp,
            &st.otp,
            &Self::shown_address(&st),
            otp_step::Channel::Email,
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
        if st.address.is_none() {
            let typed = input.get("email").map(|s| s.trim()).unwrap_or_default();
            if !valid_address(typed) {
                return Ok(Outcome::Stay(vec![BAD_ADDRESS.into()]));
            }
            st.address = Some(typed.to_string());
            st.from_account = false;
            self.send(cx, &mut st).await?;
            cx.set_state(&st)?;
            // A send failure is kept in the state and shown by the next challenge.
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
                let verdict = otp_step::check_code(cx, &self.cfg.otp, "email", &mut st.otp, code)?;
                match otp_step::refused(verdict) {
                    Some(outcome) => outcome,
                    None => {
                        self.enrol(cx, &st)?;
                        Outcome::Pass
                    }
                }
            }
        };
        cx.set_state(&st)?;
        Ok(outcome)
    }
}

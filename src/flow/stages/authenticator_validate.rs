//! `authenticator_validate`: asks for a code from one of the user's enrolled devices. With
//! several, the user picks one; with none, `not_configured_action` decides (skip, deny, or run
//! the setup stage inline).

use super::otp_step::{self, Answer, Sent};
use crate::config::{NotConfigured, OtpPolicy, StageConfig, ValidateStageConfig};
use crate::flow::otp::{self, OtpState};
use crate::flow::{Challenge, Choice, Field, FlowError, Input, Outcome, Stage, StageContext};
use crate::session::Factors;
use crate::store::{Device, DeviceClass};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

pub const NOT_CONFIGURED: &str =
    "This account has no second factor set up, so it cannot sign in here. Contact whoever runs this site.";
pub const PICK_DEVICE: &str = "Choose where to send the code.";
/// The action that goes back to the list of devices.
const CHOOSE_ANOTHER: &str = "choose";

pub struct AuthenticatorValidate {
    pub cfg: ValidateStageConfig,
    /// The setup stage run inline for users without a device, with its configured name.
    pub configure: Option<(String, Arc<dyn Stage>)>,
    /// The code policy of every setup stage, by name: a device's codes follow the stage that
    /// enrolled it where this stage does not set its own.
    owners: BTreeMap<String, OtpPolicy>,
    /// The setup stage whose policy the decoy (unknown or disabled account) follows.
    decoy_owner: Option<String>,
}

#[derive(Default, Serialize, Deserialize)]
struct State {
    /// The chosen device id (or `decoy`).
    device: Option<String>,
    otp: OtpState,
    notice: Option<String>,
    send_error: Option<String>,
}

const DECOY: &str = "decoy";

/// What the user may choose from.
enum Devices {
    Real(Vec<Device>),
    /// Unknown or ineligible account: one pretend device, so the pages look the same.
    Decoy,
}

impl AuthenticatorValidate {
    pub fn new(
        cfg: ValidateStageConfig,
        configure: Option<(String, Arc<dyn Stage>)>,
        all: &BTreeMap<String, StageConfig>,
    ) -> Self {
        let owners: BTreeMap<String, OtpPolicy> = all
            .iter()
            .filter_map(|(name, st)| match st {
                StageConfig::AuthenticatorEmail(e) => Some((name.clone(), e.otp.clone())),
                StageConfig::AuthenticatorSms(e) => Some((name.clone(), e.otp.clone())),
                _ => None,
            })
            .collect();
        // # Security
        // An unknown account must get the same page as a real one, so the decoy follows the
        // stage most devices come from: the one this stage enrols with, else the first setup
        // stage of the first accepted class.
        let decoy_owner = cfg.configure_stage.clone().or_else(|| {
            let class = cfg.device_classes.first()?;
            all.iter()
                .find(|(_, st)| {
                    matches!(
                        (st, class),
                        (StageConfig::AuthenticatorEmail(_), DeviceClass::Email)
                            | (StageConfig::AuthenticatorSms(_), DeviceClass::Sms)
                    )
                })
                .map(|(name, _)| name.clone())
        });
        Self {
            cfg,
            configure,
            owners,
            decoy_owner,
        }
    }

    /// The code policy for `device` (the decoy's when `None`).
    fn policy(&self, device: Option<&Device>) -> OtpPolicy {
        let owner = match device {
            Some(d) => Some(d.stage.as_str()),
            None => self.decoy_owner.as_deref(),
        };
        self.cfg.policy_for(owner.and_then(|o| self.owners.get(o)))
    }

    fn devices(&self, cx: &StageContext<'_>) -> Result<Devices, FlowError> {
        let user = match &cx.exec.user {
            Some(name) => cx.services.store.user(name)?,
            None => None,
        };
        let eligible = user
            .as_ref()
            .is_some_and(|u| u.active || self.cfg.otp.allow_inactive_accounts);
        let Some(user) = user.filter(|_| eligible) else {
            return Ok(Devices::Decoy);
        };
        let mut devices: Vec<Device> = cx
            .services
            .store
            .devices(&user.username)?
            .into_iter()
            .filter(|d| self.cfg.device_classes.contains(&d.class) && !d.verify_only())
            .collect();
        devices.sort_by_key(|d| d.created);
        Ok(Devices::Real(devices))
    }

    fn delegate<'c>(
        &'c self,
        cx: &'c mut StageContext<'_>,
    ) -> Option<(StageContext<'c>, &'c dyn Stage)> {
        let (name, stage) = self.configure.as_ref()?;
        Some((
            StageContext {
                exec: &mut *cx.exec,
                services: cx.services,
                name,
                client: cx.client,
                origin: cx.origin,
            },
            stage.as_ref(),
        ))
    }

    fn chosen<'d>(st: &State, devices: &'d [Device]) -> Option<&'d Device> {
        let id = st.device.as_deref()?;
        devices.iter().find(|d| d.id == id)
    }

    async fn send(
        &self,
        cx: &mut StageContext<'_>,
        st: &mut State,
        device: Option<&Device>,
    ) -> Result<(), FlowError> {
        let (to, stage) = match device {
            Some(d) => (d.address.clone(), d.stage.clone()),
            None => (String::new(), String::new()),
        };
        // The device remembers the stage that enrolled it, so the code travels the same way
        // (that stage's SMTP connection or SMS provider) as the one that verified it.
        let class = device.map(|d| d.class).unwrap_or(DeviceClass::Email);
        let policy = self.policy(device);
        let sent = match class {
            DeviceClass::Email => {
                let channel = cx.services.email_channel(&stage).clone();
                otp_step::send_email(cx, &policy, &mut st.otp, &channel, &to).await?
            }
            DeviceClass::Sms => match cx.services.sms_channel(&stage).cloned() {
                Some(channel) => {
                    otp_step::send_sms(cx, &policy, &mut st.otp, &channel, &to).await?
                }
                None => {
                    tracing::error!(stage = cx.name, device_stage = %stage, "an SMS device exists but no SMS provider is configured");
                    Sent::Failed(otp_step::SMS_SEND_FAILED.into())
                }
            },
        };
        st.send_error = match sent {
            Sent::Ok => None,
            Sent::Failed(m) => Some(m),
        };
        Ok(())
    }

    /// A validated device: note its use and the factor it proved, activate the account if
    /// configured.
    fn validated(&self, cx: &mut StageContext<'_>, device: &Device) -> Result<(), FlowError> {
        cx.exec.factors = cx.exec.factors.with(Factors::of_class(device.class));
        let store = &cx.services.store;
        let mut d = device.clone();
        d.last_used = Some(crate::clock::now());
        store.put_device(&d)?;
        if self.cfg.otp.activate_inactive_accounts {
            if let Some(mut u) = store.user(&device.username)?.filter(|u| !u.active) {
                u.active = true;
                store.put_user(&u)?;
                tracing::info!(user = %u.username, "account activated by a validated code");
            }
        }
        Ok(())
    }

    fn label(d: &Device) -> String {
        let shown = otp::mask(&d.address);
        format!("{} ({shown})", d.name)
    }
}

/// A setup stage run inline passed: its channel is the factor this validation proved.
fn proved_by_setup(cx: &mut StageContext<'_>, setup: &dyn Stage, outcome: &Outcome) {
    if *outcome == Outcome::Pass {
        cx.exec.factors = cx.exec.factors.with(Factors::of_kind(setup.kind()));
    }
}

#[async_trait]
impl Stage for AuthenticatorValidate {
    fn kind(&self) -> &'static str {
        "authenticator_validate"
    }

    async fn resume(&self, cx: &mut StageContext<'_>) -> Result<Option<Outcome>, FlowError> {
        let devices = match self.devices(cx)? {
            Devices::Decoy => return Ok(None),
            Devices::Real(d) => d,
        };
        if devices.is_empty() {
            return match self.cfg.not_configured_action {
                NotConfigured::Skip => Ok(Some(Outcome::Skip)),
                NotConfigured::Deny => Ok(Some(Outcome::Cancel(NOT_CONFIGURED.into()))),
                NotConfigured::Configure => match self.delegate(cx) {
                    Some((mut sub, stage)) => {
                        let outcome = stage.resume(&mut sub).await?;
                        Ok(outcome.inspect(|o| proved_by_setup(&mut sub, stage, o)))
                    }
                    None => Ok(Some(Outcome::Cancel(NOT_CONFIGURED.into()))),
                },
            };
        }
        let mut st: State = cx.state();
        let Some(device) = Self::chosen(&st, &devices).cloned() else {
            return Ok(None);
        };
        if !otp_step::link_done(cx, &self.policy(Some(&device)), "email", &mut st.otp)? {
            return Ok(None);
        }
        self.validated(cx, &device)?;
        cx.set_state(&st)?;
        Ok(Some(Outcome::Pass))
    }

    async fn challenge(&self, cx: &mut StageContext<'_>) -> Result<Challenge, FlowError> {
        let mut st: State = cx.state();
        let devices = match self.devices(cx)? {
            Devices::Decoy => {
                st.otp.decoy = true;
                st.device = Some(DECOY.into());
                Vec::new()
            }
            Devices::Real(d) if d.is_empty() => {
                if let Some((mut sub, stage)) = self.delegate(cx) {
                    return stage.challenge(&mut sub).await;
                }
                return Ok(Challenge::new(self.kind(), Vec::new()));
            }
            Devices::Real(d) => d,
        };
        if st.device.is_none() && devices.len() == 1 {
            st.device = Some(devices[0].id.clone());
        }
        if st.device.is_none() {
            let options = devices
                .iter()
                .map(|d| Choice {
                    value: d.id.clone(),
                    label: Self::label(d),
                })
                .collect();
            let mut c = Challenge::new(
                self.kind(),
                vec![Field::new("device", "choice", "Send the code to").choices(options)],
            );
            c.info.push(PICK_DEVICE.into());
            let c = c.titled("Choose how to confirm it is you");
            cx.set_state(&st)?;
            return Ok(c);
        }
        let device = Self::chosen(&st, &devices).cloned();
        if st.otp.sends == 0 {
            self.send(cx, &mut st, device.as_ref()).await?;
        }
        // The chosen device is named as the user labelled it, never by its address, so the
        // page reads the same for the decoy shown to unknown and disabled accounts.
        let (shown, channel) = match &device {
            Some(d) if d.class == DeviceClass::Sms => (
                "the phone number on your account".to_string(),
                otp_step::Channel::Sms,
            ),
            _ => (
                super::authenticator_email::ACCOUNT_ADDRESS.to_string(),
                otp_step::Channel::Email,
            ),
        };
        let mut c = otp_step::code_challenge(
            self.kind(),
            &self.policy(device.as_ref()),
            &st.otp,
            &shown,
            channel,
        );
        // With several devices the user can go back and pick another, e.g. when texts do not
        // arrive but email does.
        if devices.len() > 1 {
            c.actions.push(crate::flow::Action {
                name: CHOOSE_ANOTHER.into(),
                label: "Use another method".into(),
            });
        }
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
        let devices = match self.devices(cx)? {
            Devices::Decoy => Vec::new(),
            Devices::Real(d) if d.is_empty() => {
                return match self.delegate(cx) {
                    Some((mut sub, stage)) => {
                        let outcome = stage.submit(&mut sub, input).await?;
                        proved_by_setup(&mut sub, stage, &outcome);
                        Ok(outcome)
                    }
                    None => Ok(Outcome::Cancel(NOT_CONFIGURED.into())),
                };
            }
            Devices::Real(d) => d,
        };
        if let Some(id) = input.get("device") {
            if !devices.iter().any(|d| &d.id == id) {
                return Ok(Outcome::Stay(vec![PICK_DEVICE.into()]));
            }
            if st.device.as_deref() != Some(id.as_str()) {
                st.device = Some(id.clone());
                st.otp.withdraw(cx)?;
                let device = Self::chosen(&st, &devices).cloned();
                self.send(cx, &mut st, device.as_ref()).await?;
            }
            cx.set_state(&st)?;
            return Ok(Outcome::Stay(Vec::new()));
        }
        if input.get("action").is_some_and(|a| a == CHOOSE_ANOTHER) && devices.len() > 1 {
            st.device = None;
            st.send_error = None;
            st.otp.withdraw(cx)?;
            cx.set_state(&st)?;
            return Ok(Outcome::Stay(Vec::new()));
        }
        let device = Self::chosen(&st, &devices).cloned();
        let outcome = match otp_step::answer(input) {
            Answer::Resend => {
                self.send(cx, &mut st, device.as_ref()).await?;
                if st.send_error.is_none() {
                    st.notice = Some(otp_step::resent_notice(self.policy(device.as_ref()).mode));
                }
                Outcome::Stay(Vec::new())
            }
            Answer::Nothing => Outcome::Stay(Vec::new()),
            Answer::Code(code) => {
                let channel = match device.as_ref().map(|d| d.class) {
                    Some(DeviceClass::Sms) => "sms",
                    _ => "email",
                };
                let policy = self.policy(device.as_ref());
                let verdict = otp_step::check_code(cx, &policy, channel, &mut st.otp, code)?;
                match (otp_step::refused(verdict), &device) {
                    (Some(outcome), _) => outcome,
                    (None, Some(d)) => {
                        self.validated(cx, d)?;
                        Outcome::Pass
                    }
                    (None, None) => Outcome::Stay(vec![otp::WRONG_CODE.into()]),
                }
            }
        };
        cx.set_state(&st)?;
        Ok(outcome)
    }
}

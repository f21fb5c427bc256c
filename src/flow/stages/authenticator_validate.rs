//! `authenticator_validate`: asks for a code from one of the user's enrolled devices. With
//! several, the user picks one; with none, `not_configured_action` decides (skip, deny, or run
//! the setup stage inline).

use crate::config::{DuoApi, NotConfigured, OtpPolicy, StageConfig, ValidateStageConfig};
use crate::flow::code::{self, Answer, CodeState, Medium};
use crate::flow::duo::{Asked, DuoAsk, DuoCx};
use crate::flow::state::StageState;
use crate::flow::step::{mismatch, Cx, Effect, Next, Stage, Transition};
use crate::flow::{otp, Action, Challenge, Choice, Field, FlowError, Input, StageKind};
use crate::notify::duo::DuoUser;
use crate::session::Factors;
use crate::store::{Device, DeviceClass};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

pub(crate) const NOT_CONFIGURED: &str =
    "This account has no second factor set up, so it cannot sign in here. Contact whoever runs this site.";
pub(crate) const PICK_DEVICE: &str = "Choose where to send the code.";
/// The action that goes back to the list of devices.
const CHOOSE_ANOTHER: &str = "choose";

pub(crate) struct AuthenticatorValidate {
    cfg: ValidateStageConfig,
    /// The setup stage run inline for users without a device, with its configured name.
    configure: Option<(String, Arc<dyn Stage>)>,
    /// The code policy of every setup stage, by name: a device's codes follow the stage that
    /// enrolled it where this stage does not set its own.
    owners: BTreeMap<String, OtpPolicy>,
    /// The setup stage whose policy the decoy (unknown or disabled account) follows.
    decoy_owner: Option<String>,
    /// The Duo integration of every Duo setup stage, by name: a Duo device is asked about
    /// through the integration that enrolled it.
    duo: BTreeMap<String, DuoApi>,
}

/// What a validation stage waits for.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "waiting", rename_all = "snake_case")]
pub(crate) enum ValidateState {
    /// Several devices: which one the code goes to. `spent`: what earlier choices of this
    /// execution used up, carried into the next one.
    Choosing {
        choices: Vec<DeviceChoice>,
        #[serde(default)]
        spent: Spent,
    },
    /// The code sent to `device` (`None`: the pretend device shown to unknown and ineligible
    /// accounts); `choices` lets the user go back and pick another.
    Code {
        device: Option<String>,
        class: DeviceClass,
        choices: Vec<DeviceChoice>,
        code: CodeState,
    },
    /// No device yet: the configured setup stage runs inline, in this state.
    Enrolling { setup: Box<StageState> },
    /// Duo asked about `device`: a push approved or a passcode typed.
    Duo {
        device: String,
        choices: Vec<DeviceChoice>,
        ask: DuoAsk,
    },
}

/// Sends and wrong codes of this execution, across the devices it switched between.
///
/// # Security
/// Switching to another device (and back) must not give the execution a fresh set of sends
/// or attempts: the per-execution limits hold for the whole validation, as they did before
/// the code machine was per device.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub(crate) struct Spent {
    sends: u32,
    attempts: u32,
}

impl Spent {
    fn of(code: &CodeState) -> Spent {
        Spent {
            sends: code.sends,
            attempts: code.attempts,
        }
    }
}

/// One device as the choice list shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct DeviceChoice {
    id: String,
    label: String,
}

impl ValidateState {
    pub(crate) fn code(&self) -> Option<&CodeState> {
        match self {
            ValidateState::Code { code, .. } => Some(code),
            ValidateState::Enrolling { setup } => setup.code(),
            ValidateState::Choosing { .. } | ValidateState::Duo { .. } => None,
        }
    }

    pub(crate) fn code_mut(&mut self) -> Option<&mut CodeState> {
        match self {
            ValidateState::Code { code, .. } => Some(code),
            ValidateState::Enrolling { setup } => setup.code_mut(),
            ValidateState::Choosing { .. } | ValidateState::Duo { .. } => None,
        }
    }
}

/// The medium codes for a device of this class are sent by; `None` for classes the user
/// answers without a send.
fn sent_by(class: DeviceClass) -> Option<Medium> {
    match class {
        DeviceClass::Email => Some(Medium::Email),
        DeviceClass::Sms => Some(Medium::Sms),
        DeviceClass::Totp | DeviceClass::Static | DeviceClass::Webauthn | DeviceClass::Duo => None,
    }
}

/// What the user may choose from.
enum Devices {
    Real(Vec<Device>),
    /// Unknown or ineligible account: one pretend device, so the pages look the same.
    Decoy,
}

impl AuthenticatorValidate {
    pub(crate) fn new(
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
        let duo = all
            .iter()
            .filter_map(|(name, st)| match st {
                StageConfig::AuthenticatorDuo(d) => Some((name.clone(), d.api.clone())),
                _ => None,
            })
            .collect();
        Self {
            cfg,
            configure,
            owners,
            decoy_owner,
            duo,
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

    fn devices(&self, cx: &Cx<'_>) -> Result<Devices, FlowError> {
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
            .filter(|d| {
                self.cfg.device_classes.contains(&d.class)
                    && (sent_by(d.class).is_some() || self.asks_duo(d))
                    && !d.verify_only()
            })
            .collect();
        devices.sort_by_key(|d| d.created);
        Ok(Devices::Real(devices))
    }

    fn choices(devices: &[Device]) -> Vec<DeviceChoice> {
        devices
            .iter()
            .map(|d| DeviceChoice {
                id: d.id.clone(),
                label: Self::label(d),
            })
            .collect()
    }

    /// Whether `d` is a Duo device whose integration is still configured.
    fn asks_duo(&self, d: &Device) -> bool {
        d.class == DeviceClass::Duo && d.secret.is_some() && self.duo.contains_key(&d.stage)
    }

    /// The Duo check of `device`, nothing sent until the user asks for a push.
    fn ask_duo(device: &Device, choices: Vec<DeviceChoice>) -> Transition {
        let user = DuoUser::from_stored(device.secret.as_deref().unwrap_or_default());
        Transition::stay(ValidateState::Duo {
            device: device.id.clone(),
            choices,
            ask: DuoAsk::new(user),
        })
    }

    /// Codes to `device` (the decoy's when `None`), the first one sent at once. The device
    /// remembers the stage that enrolled it, so the code travels the same way (that stage's
    /// SMTP connection or SMS provider) and follows the same policy as the one that verified
    /// it.
    fn confirm(
        &self,
        device: Option<&Device>,
        choices: Vec<DeviceChoice>,
        spent: Spent,
    ) -> Transition {
        if let Some(d) = device.filter(|d| d.class == DeviceClass::Duo) {
            return Self::ask_duo(d, choices);
        }
        let policy = self.policy(device);
        let mut code = match device {
            Some(d) => {
                // `devices` keeps only classes codes are sent to.
                let medium = sent_by(d.class).unwrap_or(Medium::Email);
                CodeState::new(medium, &d.stage, d.address.clone(), &policy)
            }
            None => {
                let route = self.decoy_owner.as_deref().unwrap_or_default();
                CodeState::decoy(Medium::Email, route, String::new(), &policy)
            }
        };
        code.sends = spent.sends;
        code.attempts = spent.attempts;
        let state = ValidateState::Code {
            device: device.map(|d| d.id.clone()),
            class: device.map_or(DeviceClass::Email, |d| d.class),
            choices,
            code,
        };
        Transition::stay(state).and(Effect::SendCode { resend: false })
    }

    /// A validated device: the factor it proved, its use noted, the account activated if
    /// configured.
    fn validated(&self, cx: &Cx<'_>, id: &str) -> Result<Vec<Effect>, FlowError> {
        let Some(device) = cx
            .services
            .store
            .devices(cx.exec.user.as_deref().unwrap_or_default())?
            .into_iter()
            .find(|d| d.id == id)
        else {
            return Err(FlowError::Stage {
                stage: cx.name.to_string(),
                reason: "the validated device is gone".into(),
            });
        };
        let mut effects = vec![Effect::Prove(Factors::of_class(device.class))];
        if self.cfg.otp.activate_inactive_accounts {
            if let Some(mut u) = cx.user()?.filter(|u| !u.active) {
                u.active = true;
                tracing::info!(user = %u.username, "account activated by a validated code");
                effects.push(Effect::PutUser(u));
            }
        }
        effects.insert(
            1,
            Effect::PutDevice(Device {
                last_used: Some(cx.now),
                ..device
            }),
        );
        Ok(effects)
    }

    /// A step of the setup stage run inline, seen as this stage's: its state wrapped, and its
    /// pass proving its channel's factor.
    fn inline(&self, setup: &dyn Stage, t: Transition) -> Transition {
        let Transition { next, mut effects } = t;
        let next = match next {
            Next::Stay(state, errors) => Next::Stay(
                ValidateState::Enrolling {
                    setup: Box::new(state),
                }
                .into(),
                errors,
            ),
            Next::Pass => {
                effects.push(Effect::Prove(Factors::of_kind(setup.kind().as_str())));
                Next::Pass
            }
            other => other,
        };
        Transition { next, effects }
    }

    /// A Duo device's answer: pass with its factor proved, stay, or end.
    async fn answer_duo(
        &self,
        cx: &Cx<'_>,
        device: String,
        choices: Vec<DeviceChoice>,
        ask: DuoAsk,
        input: &Input,
    ) -> Result<Transition, FlowError> {
        let owner = self.devices(cx)?;
        let Devices::Real(devices) = owner else {
            return Err(mismatch(cx));
        };
        let Some(api) = devices
            .iter()
            .find(|d| d.id == device)
            .and_then(|d| self.duo.get(&d.stage))
        else {
            return Ok(Transition::cancel(NOT_CONFIGURED));
        };
        let duo = DuoCx {
            api,
            http: cx.services.http.as_ref(),
            now: cx.now,
            client: cx.client,
            max_attempts: self.cfg.otp.max_allowed_attempts,
        };
        match ask.answer(&duo, cx.name, input).await? {
            Asked::Approved => {
                let mut t = Transition::pass();
                t.effects = self.validated(cx, &device)?;
                Ok(t)
            }
            Asked::Stay(ask, errors) => Ok(Transition::to(Next::Stay(
                ValidateState::Duo {
                    device,
                    choices,
                    ask,
                }
                .into(),
                errors,
            ))),
            Asked::Cancel(message) => Ok(Transition::cancel(message)),
        }
    }

    fn label(d: &Device) -> String {
        if d.class == DeviceClass::Duo {
            return d.name.clone();
        }
        let shown = otp::mask(&d.address);
        format!("{} ({shown})", d.name)
    }
}

#[async_trait]
impl Stage for AuthenticatorValidate {
    fn kind(&self) -> StageKind {
        StageKind::AuthenticatorValidate
    }

    /// A validation state, and when it enrols inline, a state of the configured setup stage.
    fn owns(&self, state: &StageState) -> bool {
        match state {
            StageState::AuthenticatorValidate(ValidateState::Enrolling { setup }) => self
                .configure
                .as_ref()
                .is_some_and(|(_, stage)| stage.owns(setup)),
            other => other.kind() == self.kind(),
        }
    }

    async fn enter(&self, cx: &Cx<'_>) -> Result<Transition, FlowError> {
        let devices = match self.devices(cx)? {
            Devices::Decoy => return Ok(self.confirm(None, Vec::new(), Spent::default())),
            Devices::Real(d) => d,
        };
        match devices.as_slice() {
            [] => {}
            [one] => return Ok(self.confirm(Some(one), Vec::new(), Spent::default())),
            several => {
                let choices = Self::choices(several);
                let spent = Spent::default();
                return Ok(Transition::stay(ValidateState::Choosing { choices, spent }));
            }
        }
        match (self.cfg.not_configured_action, &self.configure) {
            (NotConfigured::Skip, _) => Ok(Transition::to(Next::Skip)),
            (NotConfigured::Configure, Some((name, setup))) => {
                let t = setup.enter(&cx.named(name)).await?;
                Ok(self.inline(setup.as_ref(), t))
            }
            (NotConfigured::Deny | NotConfigured::Configure, _) => {
                Ok(Transition::cancel(NOT_CONFIGURED))
            }
        }
    }

    fn challenge(&self, cx: &Cx<'_>, state: &StageState) -> Result<Challenge, FlowError> {
        let StageState::AuthenticatorValidate(state) = state else {
            return Err(mismatch(cx));
        };
        match state {
            ValidateState::Choosing { choices, .. } => {
                let options = choices
                    .iter()
                    .map(|d| Choice {
                        value: d.id.clone(),
                        label: d.label.clone(),
                    })
                    .collect();
                let field = Field::new("device", "choice", "Send the code to").choices(options);
                let mut c = Challenge::new(self.kind().as_str(), vec![field]);
                c.info.push(PICK_DEVICE.into());
                Ok(c.titled("Choose how to confirm it is you"))
            }
            ValidateState::Code {
                class,
                choices,
                code,
                ..
            } => {
                // The chosen device is named as a kind, never by its address, so the page
                // reads the same for the decoy shown to unknown and disabled accounts.
                let shown = match class {
                    DeviceClass::Sms => "the phone number on your account",
                    _ => super::authenticator_email::ACCOUNT_ADDRESS,
                };
                let mut c = code.challenge(self.kind().as_str(), shown);
                // With several devices the user can go back and pick another, e.g. when texts
                // do not arrive but email does.
                if choices.len() > 1 {
                    c.actions.push(Action {
                        name: CHOOSE_ANOTHER.into(),
                        label: "Use another method".into(),
                    });
                }
                Ok(c)
            }
            ValidateState::Enrolling { setup } => match &self.configure {
                Some((name, stage)) => stage.challenge(&cx.named(name), setup),
                None => Err(mismatch(cx)),
            },
            ValidateState::Duo { choices, ask, .. } => {
                let mut c = ask.challenge(self.kind().as_str(), "Duo");
                if choices.len() > 1 {
                    c.actions.push(Action {
                        name: CHOOSE_ANOTHER.into(),
                        label: "Use another method".into(),
                    });
                }
                Ok(c)
            }
        }
    }

    async fn submit(
        &self,
        cx: &Cx<'_>,
        state: StageState,
        input: &Input,
    ) -> Result<Transition, FlowError> {
        let StageState::AuthenticatorValidate(state) = state else {
            return Err(mismatch(cx));
        };
        match state {
            ValidateState::Enrolling { setup } => match &self.configure {
                Some((name, stage)) => {
                    let t = stage.submit(&cx.named(name), *setup, input).await?;
                    Ok(self.inline(stage.as_ref(), t))
                }
                None => Err(mismatch(cx)),
            },
            ValidateState::Choosing { choices, spent } => {
                let picked = input.get("device");
                let devices = match self.devices(cx)? {
                    Devices::Real(d) => d,
                    Devices::Decoy => Vec::new(),
                };
                let chosen = picked.and_then(|id| {
                    choices.iter().any(|c| &c.id == id).then_some(())?;
                    devices.iter().find(|d| &d.id == id)
                });
                match chosen {
                    Some(d) => Ok(self.confirm(Some(d), choices, spent)),
                    None if picked.is_some() => Ok(Transition::refuse(
                        ValidateState::Choosing { choices, spent },
                        PICK_DEVICE,
                    )),
                    None => Ok(Transition::stay(ValidateState::Choosing { choices, spent })),
                }
            }
            ValidateState::Duo { choices, .. }
                if input.get("action").is_some_and(|a| a == CHOOSE_ANOTHER)
                    && choices.len() > 1 =>
            {
                let spent = Spent::default();
                Ok(Transition::stay(ValidateState::Choosing { choices, spent }))
            }
            ValidateState::Duo {
                device,
                choices,
                ask,
            } => self.answer_duo(cx, device, choices, ask, input).await,
            ValidateState::Code { choices, code, .. }
                if input.get("action").is_some_and(|a| a == CHOOSE_ANOTHER)
                    && choices.len() > 1 =>
            {
                let spent = Spent::of(&code);
                let back = ValidateState::Choosing { choices, spent };
                Ok(Transition::stay(back).and(Effect::Withdraw(Box::new(code))))
            }
            state @ ValidateState::Code { .. } => Ok(match code::answer(input) {
                Answer::Resend => Transition::stay(state).and(Effect::SendCode { resend: true }),
                Answer::Code(typed) => Transition::stay(state).and(Effect::CheckCode(typed)),
                Answer::Nothing => Transition::stay(state),
            }),
        }
    }

    async fn verified(&self, cx: &Cx<'_>, state: &StageState) -> Result<Vec<Effect>, FlowError> {
        let StageState::AuthenticatorValidate(state) = state else {
            return Err(mismatch(cx));
        };
        match state {
            ValidateState::Code {
                device: Some(id), ..
            } => self.validated(cx, id),
            ValidateState::Enrolling { setup } => match &self.configure {
                Some((name, stage)) => {
                    let mut effects = stage.verified(&cx.named(name), setup).await?;
                    effects.push(Effect::Prove(Factors::of_kind(stage.kind().as_str())));
                    Ok(effects)
                }
                None => Err(mismatch(cx)),
            },
            // A decoy never verifies; fail closed if it somehow did.
            _ => Err(mismatch(cx)),
        }
    }
}

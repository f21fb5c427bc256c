//! `authenticator_validate`: asks for proof from one of the user's enrolled devices. With
//! several, the user picks one, strongest class first ([`DeviceClass::STRONGEST_FIRST`]);
//! with none, `not_configured_action` decides (skip, deny, or run a setup stage inline,
//! chosen among `configuration_stages` when there are several). A class validated within
//! `last_validation_threshold` (per user and class, read from the devices' `last_used` in the
//! store) is not asked again.
//!
//! # How a class plugs in
//! Everything that differs between classes sits behind [`class::Class`]: which stored devices
//! are usable, their label, what choosing one does first ([`class::Class::begin`]: send a
//! code, make a WebAuthn challenge, start a Duo push), the challenge while it waits (pure),
//! and the verdict on a response ([`class::Answer`]: wait with effects and errors, proved
//! with the `amr` values earned, or cancel). What a device waits for is a variant of
//! [`class::Pending`], stored in the execution. A new class is one module in this folder
//! implementing `Class`, one `Pending` variant and one arm in [`class::of`]; its setup stage
//! adds one arm to
//! [`crate::config::StageConfig::enrols`] so `configuration_stages` may name it. The stage
//! here records the factor ([`Factors::of_class`]), the `amr` values, and account activation.

mod class;
mod duo;
mod passkey;
mod recovery;
mod sent;
mod totp;
mod typed;

#[cfg(test)]
pub(crate) use recovery::left_notice;
#[cfg(test)]
pub(crate) use totp::REPLAYED;

use crate::config::{DuoApi, NotConfigured, OtpPolicy, StageConfig, ValidateStageConfig};
use crate::flow::code::CodeState;
use crate::flow::state::StageState;
use crate::flow::step::{mismatch, Cx, Effect, Next, Stage, Transition};
use crate::flow::{Action, Challenge, Choice, Field, FlowError, Input, StageKind};
use crate::session::Factors;
use crate::store::{Device, DeviceClass};
use async_trait::async_trait;
use class::{Answer, ClassCx, Pending, Spent};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Whether a validation stage could ask for `device` (an SMS device that kept only its
/// number's hash, or recovery codes all used, cannot): what the settings page counts when it
/// keeps a user from removing the last factor a flow needs.
pub(crate) fn validatable(device: &Device) -> bool {
    class::of(device.class).usable(device)
}

pub(crate) const NOT_CONFIGURED: &str =
    "This account has no second factor set up, so it cannot sign in here. Contact whoever runs this site.";
pub(crate) const PICK_DEVICE: &str = "Choose how to confirm it is you.";
pub(crate) const PICK_SETUP: &str = "Choose a second factor to set up.";
/// The action that goes back to the list of devices.
const CHOOSE_ANOTHER: &str = "choose";

/// A setup stage validation may run inline, with its configured name and what users see.
pub(crate) struct Setup {
    pub(crate) name: String,
    pub(crate) label: String,
    pub(crate) stage: Arc<dyn Stage>,
}

pub(crate) struct AuthenticatorValidate {
    cfg: ValidateStageConfig,
    /// The setup stages run inline for users without a device (`configuration_stages`).
    configure: Vec<Setup>,
    /// The code policy of every setup stage, by name: a device's codes follow the stage that
    /// enrolled it where this stage does not set its own.
    owners: BTreeMap<String, OtpPolicy>,
    /// The setup stage whose channel and policy the decoy (unknown or disabled account)
    /// follows, and the class it pretends to be.
    decoy_owner: Option<String>,
    decoy_class: DeviceClass,
    /// The Duo integration of every Duo setup stage, by name.
    duo: BTreeMap<String, DuoApi>,
}

/// What a validation stage waits for.
// One per execution, moved a handful of times per step: boxing the code machine would buy
// nothing measurable.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "waiting", rename_all = "snake_case")]
pub(crate) enum ValidateState {
    /// Several devices: which one to confirm with. `spent`: what earlier choices of this
    /// execution used up, carried into the next one.
    Choosing {
        choices: Vec<DeviceChoice>,
        #[serde(default)]
        spent: Spent,
    },
    /// The chosen `device` (`None`: the pretend device shown to unknown and ineligible
    /// accounts) waits for `pending`; `choices` lets the user go back and pick another.
    Answering {
        device: Option<String>,
        class: DeviceClass,
        choices: Vec<DeviceChoice>,
        pending: Pending,
    },
    /// Proved, with something to say first (recovery codes left): the next response moves on.
    Noticed { lines: Vec<String> },
    /// No device yet and several setup stages offered: which one to run.
    PickingSetup,
    /// No device yet: the setup stage named `setup_stage` runs inline, in `setup`. (Not
    /// `stage`: this record sits inside [`StageState`], whose tag is `stage`.)
    Enrolling {
        setup_stage: String,
        setup: Box<StageState>,
    },
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
            ValidateState::Answering { pending, .. } => pending.code(),
            ValidateState::Enrolling { setup, .. } => setup.code(),
            ValidateState::Choosing { .. }
            | ValidateState::PickingSetup
            | ValidateState::Noticed { .. } => None,
        }
    }

    pub(crate) fn code_mut(&mut self) -> Option<&mut CodeState> {
        match self {
            ValidateState::Answering { pending, .. } => pending.code_mut(),
            ValidateState::Enrolling { setup, .. } => setup.code_mut(),
            ValidateState::Choosing { .. }
            | ValidateState::PickingSetup
            | ValidateState::Noticed { .. } => None,
        }
    }
}

/// What the user may choose from.
enum Devices {
    /// Usable devices of accepted classes, strongest class first, then oldest first.
    Real(Vec<Device>),
    /// Unknown or ineligible account: one pretend device, so the pages look the same.
    Decoy,
}

impl AuthenticatorValidate {
    pub(crate) fn new(
        cfg: ValidateStageConfig,
        configure: Vec<Setup>,
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
        // stage most devices come from: the first one this stage enrols with, else the first
        // setup stage of the first accepted class.
        let decoy_class = cfg
            .configuration_stages
            .first()
            .and_then(|s| all.get(s)?.enrols())
            .or_else(|| cfg.device_classes.first().copied())
            .unwrap_or(DeviceClass::Email);
        let decoy_owner = cfg.configuration_stages.first().cloned().or_else(|| {
            all.iter()
                .find(|(_, st)| st.enrols() == Some(decoy_class))
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
            decoy_class,
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

    fn class_cx<'a>(
        &'a self,
        cx: &'a Cx<'a>,
        device: Option<&Device>,
        spent: Spent,
    ) -> ClassCx<'a> {
        ClassCx {
            cx,
            cfg: &self.cfg,
            policy: self.policy(device),
            spent,
            decoy_route: self.decoy_owner.as_deref().unwrap_or_default(),
            duo: &self.duo,
        }
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
            .filter(|d| self.cfg.device_classes.contains(&d.class) && class::of(d.class).usable(d))
            .collect();
        devices.sort_by_key(|d| (d.class.rank(), d.created));
        Ok(Devices::Real(devices))
    }

    /// The class validated within `last_validation_threshold`, if any (the strongest).
    ///
    /// # Security
    /// The threshold is per user and class, kept in the store (the devices' `last_used`), not
    /// per browser: whoever signs in as the user within the period skips this stage. So it
    /// applies only once another stage of this execution proved who the user is (a password,
    /// or a step-up's session), never to an execution that has only named an account.
    fn remembered(&self, cx: &Cx<'_>, devices: &[Device]) -> Option<DeviceClass> {
        let period = i64::try_from(self.cfg.last_validation_threshold.as_secs()).ok()?;
        if period == 0 || !cx.exec.authenticated() {
            return None;
        }
        devices
            .iter()
            .filter(|d| {
                d.last_used
                    .is_some_and(|at| at <= cx.now && cx.now - at < period)
            })
            .map(|d| d.class)
            .min_by_key(|c| c.rank())
    }

    fn choices(devices: &[Device]) -> Vec<DeviceChoice> {
        devices
            .iter()
            .map(|d| DeviceChoice {
                id: d.id.clone(),
                label: class::of(d.class).label(d),
            })
            .collect()
    }

    /// `device` (the decoy when `None`) was chosen: its class's first step.
    async fn begin(
        &self,
        cx: &Cx<'_>,
        device: Option<&Device>,
        choices: Vec<DeviceChoice>,
        spent: Spent,
    ) -> Result<Transition, FlowError> {
        let class = device.map_or(self.decoy_class, |d| d.class);
        let ccx = self.class_cx(cx, device, spent);
        let (pending, effects) = class::of(class).begin(&ccx, device).await?;
        let state = ValidateState::Answering {
            device: device.map(|d| d.id.clone()),
            class,
            choices,
            pending,
        };
        Ok(Transition {
            next: Next::Stay(state.into(), Vec::new()),
            effects,
        })
    }

    /// A class's verdict as this stage's transition.
    fn settle(
        &self,
        cx: &Cx<'_>,
        device: Option<&Device>,
        class: DeviceClass,
        choices: Vec<DeviceChoice>,
        answer: Answer,
    ) -> Result<Transition, FlowError> {
        match answer {
            Answer::Wait {
                pending,
                errors,
                effects,
            } => {
                let state = ValidateState::Answering {
                    device: device.map(|d| d.id.clone()),
                    class,
                    choices,
                    pending,
                };
                Ok(Transition {
                    next: Next::Stay(state.into(), errors),
                    effects,
                })
            }
            Answer::Proved {
                mut effects,
                methods,
                notice,
            } => {
                let Some(device) = device else {
                    // A decoy never proves anything; fail closed if a class said it did.
                    return Err(mismatch(cx));
                };
                effects.extend(self.proved(cx, device.class, methods)?);
                let next = if notice.is_empty() {
                    Next::Pass
                } else {
                    Next::Stay(ValidateState::Noticed { lines: notice }.into(), Vec::new())
                };
                Ok(Transition { next, effects })
            }
            Answer::Cancel(message) => Ok(Transition::cancel(message)),
        }
    }

    /// What a proof by a device of `class` records: the factor, the `amr` values, the
    /// account activated if configured.
    fn proved(
        &self,
        cx: &Cx<'_>,
        class: DeviceClass,
        methods: Vec<&'static str>,
    ) -> Result<Vec<Effect>, FlowError> {
        let mut effects = vec![
            Effect::Prove(Factors::of_class(class)),
            Effect::Methods(methods),
        ];
        if self.cfg.otp.activate_inactive_accounts {
            if let Some(mut u) = cx.user()?.filter(|u| !u.active) {
                u.active = true;
                tracing::info!(user = %u.username, "account activated by a validated device");
                effects.push(Effect::PutUser(u));
            }
        }
        Ok(effects)
    }

    /// The stored device `id` of the execution's user.
    fn device(cx: &Cx<'_>, id: &str) -> Result<Option<Device>, FlowError> {
        Ok(cx
            .services
            .store
            .devices(cx.exec.user.as_deref().unwrap_or_default())?
            .into_iter()
            .find(|d| d.id == id))
    }

    /// A code the engine judged valid for device `id`: its use noted, then [`Self::proved`].
    fn validated(&self, cx: &Cx<'_>, id: &str) -> Result<Vec<Effect>, FlowError> {
        let Some(device) = Self::device(cx, id)? else {
            return Err(FlowError::Stage {
                stage: cx.name.to_string(),
                reason: "the validated device is gone".into(),
            });
        };
        let methods = class::of(device.class).code_methods().to_vec();
        let mut effects = vec![Effect::PutDevice(Device {
            last_used: Some(cx.now),
            ..device.clone()
        })];
        effects.extend(self.proved(cx, device.class, methods)?);
        Ok(effects)
    }

    fn setup(&self, name: &str) -> Option<&Setup> {
        self.configure.iter().find(|s| s.name == name)
    }

    /// A step of the setup stage `name` run inline, seen as this stage's: its state wrapped,
    /// and its pass proving its channel's factor.
    fn inline(&self, name: &str, setup: &dyn Stage, t: Transition) -> Transition {
        let Transition { next, mut effects } = t;
        let next = match next {
            Next::Stay(state, errors) => Next::Stay(
                ValidateState::Enrolling {
                    setup_stage: name.to_string(),
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

    /// Runs the setup stage `name` inline from its start.
    async fn enrol(&self, cx: &Cx<'_>, setup: &Setup) -> Result<Transition, FlowError> {
        let t = setup.stage.enter(&cx.named(&setup.name)).await?;
        Ok(self.inline(&setup.name, setup.stage.as_ref(), t))
    }

    /// The user has no device and nothing proved who they are yet.
    ///
    /// # Security
    /// Such an account must look like every other: `deny` would end here, `skip` would end at
    /// the login (or show the next stage), and a setup page would differ from the code page an
    /// unknown or disabled account (the decoy) and an account with a device get. So it gets the
    /// decoy, except for the one e-mail setup `configure` runs: that one sends only to the
    /// address on the account (or is itself a decoy), and its code page is shown as this
    /// stage's (see [`Self::disguised`]), word for word the page of an e-mail device. Once a
    /// password (or a step-up's session) proved the user, `not_configured_action` applies.
    async fn unproved_without_device(&self, cx: &Cx<'_>) -> Result<Transition, FlowError> {
        if let (NotConfigured::Configure, [one]) =
            (self.cfg.not_configured_action, self.configure.as_slice())
        {
            if one.stage.kind() == StageKind::AuthenticatorEmail {
                return self.enrol(cx, one).await;
            }
        }
        tracing::warn!(user = cx.exec.user.as_deref().unwrap_or_default(), stage = cx.name, client = %cx.client, "account without a device before anything proved who the user is: shown the decoy, nothing sent (put a password stage first to let not_configured_action apply)");
        self.begin(cx, None, Vec::new(), Spent::default()).await
    }

    /// Whether the inline setup `setup` shows its pages as this stage's: an e-mail setup
    /// before anything proved who the user is (see [`Self::unproved_without_device`]).
    fn disguised(cx: &Cx<'_>, setup: &Setup) -> bool {
        !cx.exec.authenticated() && setup.stage.kind() == StageKind::AuthenticatorEmail
    }

    /// The user has no device: `not_configured_action`.
    async fn not_configured(&self, cx: &Cx<'_>) -> Result<Transition, FlowError> {
        match (self.cfg.not_configured_action, self.configure.as_slice()) {
            (NotConfigured::Skip, _) => Ok(Transition::to(Next::Skip)),
            (NotConfigured::Configure, [one]) => self.enrol(cx, one).await,
            (NotConfigured::Configure, [_, _, ..]) => {
                Ok(Transition::stay(ValidateState::PickingSetup))
            }
            (NotConfigured::Deny | NotConfigured::Configure, _) => {
                Ok(Transition::cancel(NOT_CONFIGURED))
            }
        }
    }
}

#[async_trait]
impl Stage for AuthenticatorValidate {
    fn kind(&self) -> StageKind {
        StageKind::AuthenticatorValidate
    }

    /// A validation state, and when it enrols inline, a state of the named setup stage.
    fn owns(&self, state: &StageState) -> bool {
        match state {
            StageState::AuthenticatorValidate(ValidateState::Enrolling { setup_stage, setup }) => {
                self.setup(setup_stage).is_some_and(|s| s.stage.owns(setup))
            }
            other => other.kind() == self.kind(),
        }
    }

    async fn enter(&self, cx: &Cx<'_>) -> Result<Transition, FlowError> {
        let devices = match self.devices(cx)? {
            Devices::Decoy => return self.begin(cx, None, Vec::new(), Spent::default()).await,
            Devices::Real(d) => d,
        };
        if let Some(class) = self.remembered(cx, &devices) {
            tracing::info!(
                user = cx.exec.user.as_deref().unwrap_or_default(),
                stage = cx.name,
                class = class.as_str(),
                outcome = "skipped",
                "validated within last_validation_threshold"
            );
            return Ok(Transition::pass().and(Effect::Prove(Factors::of_class(class))));
        }
        match devices.as_slice() {
            [] if !cx.exec.authenticated() => self.unproved_without_device(cx).await,
            [] => self.not_configured(cx).await,
            [one] => {
                self.begin(cx, Some(one), Vec::new(), Spent::default())
                    .await
            }
            several => {
                let choices = Self::choices(several);
                let spent = Spent::default();
                Ok(Transition::stay(ValidateState::Choosing { choices, spent }))
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
                let field = Field::new("device", "choice", "Confirm with").choices(options);
                let mut c = Challenge::new(self.kind().as_str(), vec![field]);
                c.info.push(PICK_DEVICE.into());
                Ok(c.titled("Choose how to confirm it is you"))
            }
            ValidateState::Answering {
                class,
                choices,
                pending,
                ..
            } => {
                let ccx = self.class_cx(cx, None, Spent::default());
                let mut c = class::of(*class).challenge(&ccx, pending)?;
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
            ValidateState::Noticed { lines } => {
                // A field, so the page has its Continue button beside "Start over".
                let next = Field::new("continue", "hidden", "").value("yes");
                let mut c = Challenge::new(self.kind().as_str(), vec![next]);
                c.info.clone_from(lines);
                Ok(c.titled("Signed in with a recovery code"))
            }
            ValidateState::PickingSetup => {
                let options = self
                    .configure
                    .iter()
                    .map(|s| Choice {
                        value: s.name.clone(),
                        label: s.label.clone(),
                    })
                    .collect();
                let field = Field::new("setup", "choice", "Set up").choices(options);
                let mut c = Challenge::new(self.kind().as_str(), vec![field]);
                c.info.push(PICK_SETUP.into());
                Ok(c.titled("Set up a second factor"))
            }
            ValidateState::Enrolling { setup_stage, setup } => match self.setup(setup_stage) {
                Some(s) => {
                    let mut c = s.stage.challenge(&cx.named(&s.name), setup)?;
                    if Self::disguised(cx, s) {
                        c.component = self.kind().as_str().into();
                    }
                    Ok(c)
                }
                None => Err(mismatch(cx)),
            },
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
            ValidateState::Enrolling { setup_stage, setup } => match self.setup(&setup_stage) {
                Some(s) => {
                    let t = s.stage.submit(&cx.named(&s.name), *setup, input).await?;
                    Ok(self.inline(&s.name, s.stage.as_ref(), t))
                }
                None => Err(mismatch(cx)),
            },
            // Already proved (its effects carried out): any response moves on.
            ValidateState::Noticed { .. } => Ok(Transition::pass()),
            ValidateState::PickingSetup => {
                let picked = input.get("setup").and_then(|n| self.setup(n));
                match picked {
                    Some(s) => self.enrol(cx, s).await,
                    None if input.contains_key("setup") => {
                        Ok(Transition::refuse(ValidateState::PickingSetup, PICK_SETUP))
                    }
                    None => Ok(Transition::stay(ValidateState::PickingSetup)),
                }
            }
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
                    Some(d) => self.begin(cx, Some(d), choices, spent).await,
                    None if picked.is_some() => Ok(Transition::refuse(
                        ValidateState::Choosing { choices, spent },
                        PICK_DEVICE,
                    )),
                    None => Ok(Transition::stay(ValidateState::Choosing { choices, spent })),
                }
            }
            ValidateState::Answering {
                choices, pending, ..
            } if input.get("action").is_some_and(|a| a == CHOOSE_ANOTHER) && choices.len() > 1 => {
                let spent = pending.spent();
                let back = ValidateState::Choosing { choices, spent };
                let t = Transition::stay(back);
                Ok(match pending.into_code() {
                    Some(code) => t.and(Effect::Withdraw(Box::new(code))),
                    None => t,
                })
            }
            ValidateState::Answering {
                device,
                class,
                choices,
                pending,
            } => {
                // The device as stored now: a class that changes its material (a TOTP step,
                // a recovery code) swaps from exactly this record.
                let stored = match &device {
                    Some(id) => match Self::device(cx, id)? {
                        Some(d) => Some(d),
                        None => {
                            return Err(FlowError::Stage {
                                stage: cx.name.to_string(),
                                reason: "the chosen device is gone".into(),
                            })
                        }
                    },
                    None => None,
                };
                let ccx = self.class_cx(cx, stored.as_ref(), pending.spent());
                let answer = class::of(class)
                    .submit(&ccx, stored.as_ref(), pending, input)
                    .await?;
                self.settle(cx, stored.as_ref(), class, choices, answer)
            }
        }
    }

    async fn verified(&self, cx: &Cx<'_>, state: &StageState) -> Result<Vec<Effect>, FlowError> {
        let StageState::AuthenticatorValidate(state) = state else {
            return Err(mismatch(cx));
        };
        match state {
            ValidateState::Answering {
                device: Some(id), ..
            } => self.validated(cx, id),
            ValidateState::Enrolling { setup_stage, setup } => match self.setup(setup_stage) {
                Some(s) => {
                    let mut effects = s.stage.verified(&cx.named(&s.name), setup).await?;
                    effects.push(Effect::Prove(Factors::of_kind(s.stage.kind().as_str())));
                    Ok(effects)
                }
                None => Err(mismatch(cx)),
            },
            // A decoy never verifies; fail closed if it somehow did.
            _ => Err(mismatch(cx)),
        }
    }
}
#[cfg(test)]
mod stored_state_tests {
    use super::*;
    use crate::flow::stages::prompt::PromptState;

    /// Every state is stored as JSON inside `StageState` (tagged `stage`) and read back on
    /// the next request; a field of the same name as a tag would make it unreadable.
    #[test]
    fn enrolling_state_reads_back_as_it_was_stored() {
        let inner = StageState::Prompt(PromptState::Fields { kept: Vec::new() });
        let st = StageState::AuthenticatorValidate(ValidateState::Enrolling {
            setup_stage: "email_setup".into(),
            setup: Box::new(inner),
        });
        let v = serde_json::to_value(Some(&st)).expect("serialise");
        let back = serde_json::from_value::<Option<StageState>>(v).expect("read back");
        let Some(StageState::AuthenticatorValidate(ValidateState::Enrolling {
            setup_stage, ..
        })) = back
        else {
            panic!("not the enrolling state: {back:?}");
        };
        assert_eq!(setup_stage, "email_setup");
    }
}

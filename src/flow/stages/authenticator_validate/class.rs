//! The per-class part of validation: one [`Class`] per [`DeviceClass`], reached through
//! [`of`]. The stage (`super`) lists devices, orders and offers them, remembers when a class
//! was last validated, and records factors and `amr`; a class only says how one chosen device
//! is asked and how an answer is judged.

use super::duo::Duo;
use super::recovery::Recovery;
use super::sent::Sent;
use super::totp::Totp;
use crate::config::{DuoApi, OtpPolicy, ValidateStageConfig};
use crate::flow::code::CodeState;
use crate::flow::duo::DuoAsk;
use crate::flow::step::{Cx, Effect};
use crate::flow::{Challenge, FlowError, Input};
use crate::store::{Device, DeviceClass};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What a chosen device waits for, one variant per kind of answer. Stored in the execution
/// (inside [`super::ValidateState::Answering`]), so every variant is plain data.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "answer", rename_all = "snake_case")]
pub(crate) enum Pending {
    /// A code or link sent through the one code machine (email, SMS): the engine sends it and
    /// judges the typed code ([`Effect::SendCode`], [`Effect::CheckCode`]).
    Sent(CodeState),
    /// A WebAuthn ceremony for the chosen passkey or security key (judged by the class).
    Webauthn(crate::flow::webauthn::Assertion),
    /// A Duo push or passcode, judged by Duo ([`crate::flow::duo`]).
    Duo(DuoAsk),
    /// A code the user reads off their own device or list (TOTP, recovery codes): nothing is
    /// sent; the class judges it, counting wrong ones.
    Typed(Typed),
}

/// Wrong codes typed at this device so far.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct Typed {
    pub(crate) attempts: u32,
}

impl Pending {
    /// The code machine the engine drives, for classes that send.
    pub(crate) fn code(&self) -> Option<&CodeState> {
        match self {
            Pending::Sent(c) => Some(c),
            Pending::Webauthn(_) => None,
            Pending::Duo(_) => None,
            Pending::Typed(_) => None,
        }
    }

    pub(crate) fn code_mut(&mut self) -> Option<&mut CodeState> {
        match self {
            Pending::Sent(c) => Some(c),
            Pending::Webauthn(_) => None,
            Pending::Duo(_) => None,
            Pending::Typed(_) => None,
        }
    }

    /// The code machine, taken out to be withdrawn when the user picks another device.
    pub(crate) fn into_code(self) -> Option<CodeState> {
        match self {
            Pending::Sent(c) => Some(c),
            Pending::Webauthn(_) => None,
            Pending::Duo(_) => None,
            Pending::Typed(_) => None,
        }
    }

    /// Sends and wrong answers so far, carried when the user switches devices.
    pub(crate) fn spent(&self) -> Spent {
        match self {
            Pending::Sent(c) => Spent {
                sends: c.sends,
                attempts: c.attempts,
            },
            Pending::Webauthn(_) => Spent::default(),
            Pending::Duo(ask) => Spent {
                sends: ask.pushes(),
                attempts: ask.attempts(),
            },
            Pending::Typed(t) => Spent {
                sends: 0,
                attempts: t.attempts,
            },
        }
    }
}

/// Sends and wrong answers of this execution, across the devices it switched between.
///
/// # Security
/// Switching to another device (and back) must not give the execution a fresh set of sends
/// or attempts: the per-execution limits hold for the whole validation.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub(crate) struct Spent {
    pub(crate) sends: u32,
    pub(crate) attempts: u32,
}

/// What a class sees while it asks and judges.
pub(crate) struct ClassCx<'a> {
    /// The step (execution, services, clock, stage name).
    pub(crate) cx: &'a Cx<'a>,
    /// The validation stage's options (`webauthn_user_verification` for passkeys).
    #[allow(dead_code)] // Read by the WebAuthn class, which lands on its own branch.
    pub(crate) cfg: &'a ValidateStageConfig,
    /// The one-time code policy for this device: the stage's own options over those of the
    /// setup stage that enrolled it.
    pub(crate) policy: OtpPolicy,
    /// What earlier choices of this execution used up.
    pub(crate) spent: Spent,
    /// The setup stage whose channel and policy the decoy imitates.
    pub(crate) decoy_route: &'a str,
    /// The Duo integration of every Duo setup stage, by name: a Duo device is asked about
    /// through the one that enrolled it.
    pub(crate) duo: &'a BTreeMap<String, DuoApi>,
}

/// A class's verdict on a response.
#[derive(Debug)]
pub(crate) enum Answer {
    /// Keep waiting in `pending`, showing `errors`; the engine carries out `effects` first
    /// (a code check decides the step itself: see [`Effect::CheckCode`]).
    Wait {
        pending: Pending,
        errors: Vec<String>,
        effects: Vec<Effect>,
    },
    /// The device proved the user. `effects` record its use (the class stores the device with
    /// `last_used = now`, by compare-and-swap where its material changed, so the
    /// `last_validation_threshold` sees it); `methods` are the RFC 8176 `amr` values earned.
    Proved {
        effects: Vec<Effect>,
        methods: Vec<&'static str>,
        /// Lines to show before the flow moves on (recovery codes left); empty moves on at once.
        notice: Vec<String>,
    },
    /// The execution ends with this message (attempt limit reached).
    Cancel(String),
}

impl Answer {
    /// Wait in `pending` with nothing to show or do.
    pub(crate) fn wait(pending: Pending) -> Answer {
        Answer::Wait {
            pending,
            errors: Vec::new(),
            effects: Vec::new(),
        }
    }
}

/// How validation asks one class of device. Implementations are stateless: what a device
/// waits for lives in a [`Pending`] variant of the class's own.
#[async_trait]
pub(crate) trait Class: Send + Sync {
    /// Whether a stored device of this class can be validated (an SMS device that kept only
    /// its number's hash cannot be texted).
    fn usable(&self, _device: &Device) -> bool {
        true
    }

    /// The device as the choice list shows it; never a secret.
    fn label(&self, device: &Device) -> String {
        device.name.clone()
    }

    /// The device was chosen (`None`: the decoy shown to unknown and ineligible accounts,
    /// which must look the same and never pass): what it waits for, and what to do first
    /// (send the first code).
    ///
    /// # Errors
    /// Storage errors.
    async fn begin(
        &self,
        cx: &ClassCx<'_>,
        device: Option<&Device>,
    ) -> Result<(Pending, Vec<Effect>), FlowError>;

    /// The question while waiting in `pending`. Pure: rendering sends, stores and counts
    /// nothing.
    ///
    /// # Errors
    /// [`FlowError::StateMismatch`] for another class's `pending`.
    fn challenge(&self, cx: &ClassCx<'_>, pending: &Pending) -> Result<Challenge, FlowError>;

    /// Judges a response (`device` as stored now; `None` for the decoy).
    ///
    /// # Errors
    /// Storage errors, [`FlowError::StateMismatch`].
    async fn submit(
        &self,
        cx: &ClassCx<'_>,
        device: Option<&Device>,
        pending: Pending,
        input: &Input,
    ) -> Result<Answer, FlowError>;

    /// The RFC 8176 `amr` values a code the engine judged valid earns (classes that send);
    /// classes that judge their own answers return them in [`Answer::Proved`].
    fn code_methods(&self) -> &'static [&'static str] {
        &[]
    }
}

/// The implementation of `class`. Adding a class is one module beside this one, one
/// [`Pending`] variant, and one arm here.
pub(crate) fn of(class: DeviceClass) -> &'static dyn Class {
    match class {
        DeviceClass::Email => &Sent::EMAIL,
        DeviceClass::Sms => &Sent::SMS,
        DeviceClass::Totp => &Totp,
        DeviceClass::Static => &Recovery,
        DeviceClass::Duo => &Duo,
        DeviceClass::Webauthn => &super::passkey::Passkey,
    }
}

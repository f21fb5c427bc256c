//! The contract every stage kind fulfils: it reads, decides and renders; the engine carries out
//! what it decided. A stage consumes its state and returns a [`Transition`]: the next state
//! (or pass, skip, cancel) and the [`Effect`]s to carry out, in order, exactly once.

use super::code::CodeState;
use super::state::StageState;
use super::{Challenge, Execution, FlowError, Input, Services, StageKind};
use crate::secret::SecretString;
use crate::session::Factors;
use crate::store::{Device, User};
use async_trait::async_trait;

/// What a stage sees while it decides: the execution (read-only), the services to read from,
/// and the moment.
pub(crate) struct Cx<'a> {
    pub(crate) exec: &'a Execution,
    pub(crate) services: &'a Services,
    /// The stage's configured name (its key under `[stages]`).
    pub(crate) name: &'a str,
    /// The client's address, for logs.
    pub(crate) client: &'a str,
    /// Unix seconds, from the engine's clock.
    pub(crate) now: i64,
    /// The request this step answers, for policies.
    pub(crate) at: super::Caller<'a>,
    /// What the flow is for, for policies (`flow.designation`).
    pub(crate) designation: crate::config::Designation,
}

impl<'a> Cx<'a> {
    /// What policies see of this step, with `extra` answers not yet in the execution.
    ///
    /// # Errors
    /// [`FlowError::Store`] looking the user up.
    pub(crate) fn facts(
        &self,
        extra: &[(String, String)],
    ) -> Result<crate::policy::Facts, FlowError> {
        let mut facts = super::policy::facts_of(
            self.exec,
            self.services,
            self.at,
            self.designation,
            self.now,
        )?;
        facts.flow.prompt_data.extend(extra.iter().cloned());
        Ok(facts)
    }

    /// The same moment seen by the stage `name` (a setup stage run inside a validation).
    pub(crate) fn named(&self, name: &'a str) -> Cx<'a> {
        Cx {
            exec: self.exec,
            services: self.services,
            name,
            client: self.client,
            now: self.now,
            at: self.at,
            designation: self.designation,
        }
    }

    /// The account the execution names, if it exists.
    ///
    /// # Errors
    /// Storage errors.
    pub(crate) fn user(&self) -> Result<Option<User>, FlowError> {
        match &self.exec.user {
            Some(name) => Ok(self.services.store.user(name)?),
            None => Ok(None),
        }
    }
}

/// Where a stage goes after a step.
// One per step, moved a handful of times: boxing the state would buy nothing measurable.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(crate) enum Next {
    /// Wait in this state, showing these errors with the next challenge.
    Stay(StageState, Vec<String>),
    /// Done; recorded as passed (for `amr`), the flow moves on.
    Pass,
    /// Nothing to do for this user: move on without recording the stage.
    Skip,
    /// The execution ends here with this message.
    Cancel(String),
}

/// Something a step wants done. The engine carries effects out in the order given, once, and
/// records their results (a send's delivery, a code's verdict) in the execution.
#[derive(Debug)]
pub(crate) enum Effect {
    /// The user says they are `uid`; `user` is the account that names, if any.
    Identify { uid: String, user: Option<String> },
    /// Keep prompt answers for later stages.
    Remember(Vec<(String, String)>),
    /// Add factors this step proved (validation proves its device's class).
    Prove(Factors),
    /// Record `kind` as passed too, for `amr` (a passkey at identification passes for the
    /// WebAuthn check it made).
    Passed(StageKind),
    /// Add RFC 8176 authentication method values (`otp`, `hwk`, ...) to the session's `amr`.
    Methods(Vec<&'static str>),
    /// End the flow with a session of this many seconds.
    Login { lifetime_secs: i64 },
    /// Issue a code or link for the code machine of the staying state and send it; `resend`
    /// makes the page say a new one went out.
    SendCode { resend: bool },
    /// Judge a typed code against the staying state's code machine. This counts the attempt,
    /// and the verdict decides the step: [`Stage::verified`] and pass, stay with an error, or
    /// cancel at the limit.
    CheckCode(SecretString),
    /// Make a code machine that is being left (another device chosen) unusable.
    Withdraw(Box<CodeState>),
    /// Save an enrolled or used device.
    PutDevice(Device),
    /// Save an account (an address filled in, an account activated).
    PutUser(User),
    /// Hand password answers to a `user_write` later in this step; never stored.
    Keep(Vec<(String, SecretString)>),
    /// This execution created the account it names (`user_write`): it may sign it in.
    Enrolled(String),
    /// An invitation was accepted: keep it, and show its fixed data in later prompts.
    Invited(Box<super::InvitationUse>),
    /// This execution spent its invitation.
    InvitationSpent,
    /// Delete this account and every device it enrolled, end all its sessions; the flow then
    /// ends signed out.
    DeleteUser(String),
    /// End the session the execution runs in; the flow then ends signed out.
    EndSession,
}

/// A stage's decision.
#[derive(Debug)]
pub(crate) struct Transition {
    pub(crate) next: Next,
    pub(crate) effects: Vec<Effect>,
}

impl Transition {
    /// Wait in `state`, with no errors and nothing to do.
    pub(crate) fn stay(state: impl Into<StageState>) -> Self {
        Self::to(Next::Stay(state.into(), Vec::new()))
    }

    /// Wait in `state`, showing `error`.
    pub(crate) fn refuse(state: impl Into<StageState>, error: impl Into<String>) -> Self {
        Self::to(Next::Stay(state.into(), vec![error.into()]))
    }

    pub(crate) fn to(next: Next) -> Self {
        Transition {
            next,
            effects: Vec::new(),
        }
    }

    pub(crate) fn pass() -> Self {
        Self::to(Next::Pass)
    }

    pub(crate) fn cancel(message: impl Into<String>) -> Self {
        Self::to(Next::Cancel(message.into()))
    }

    /// This transition, then `effect`.
    #[must_use]
    pub(crate) fn and(mut self, effect: Effect) -> Self {
        self.effects.push(effect);
        self
    }
}

/// One kind of step in a flow.
///
/// The engine calls [`Stage::enter`] once when the stage is reached, then
/// [`Stage::challenge`] whenever the page is shown and [`Stage::submit`] for each response.
/// Stages that need no input (`user_login`, `deny`) say so with [`Stage::interactive`]: their
/// `enter` decides at once.
#[async_trait]
pub(crate) trait Stage: Send + Sync {
    /// The stage kind, shown as the challenge's `component` and recorded in `amr`.
    fn kind(&self) -> StageKind;

    fn interactive(&self) -> bool {
        true
    }

    /// Whether `state` is one this stage can be in: its kind, and for a stage that nests
    /// another's state (validation running a setup stage inline), the nested one too. The
    /// engine ends an execution whose stored state fails this with [`super::EXPIRED`].
    fn owns(&self, state: &StageState) -> bool {
        state.kind() == self.kind()
    }

    /// Whether `state` is what entering this stage of a fresh execution always makes, with
    /// nothing in it a later step must find again (no challenge, no code sent). Such a page
    /// is shown without storing the execution (see [`super::pending`]).
    fn fresh(&self, _state: &StageState) -> bool {
        false
    }

    /// The stage is reached: what it waits for, and what to do first (send the first code).
    /// May read the store; never writes it, except `user_write`, whose decision is its write
    /// (the store settles a race for a name, an address or an invitation).
    ///
    /// # Errors
    /// Storage errors.
    async fn enter(&self, cx: &Cx<'_>) -> Result<Transition, FlowError>;

    /// The question for `state`. Pure: it may be asked any number of times (page reloads, a
    /// check of which fields a response may carry) and sends, stores and counts nothing.
    ///
    /// # Errors
    /// [`FlowError::StateMismatch`] when `state` belongs to another kind.
    fn challenge(&self, cx: &Cx<'_>, state: &StageState) -> Result<Challenge, FlowError>;

    /// Judges a response to `state`, consuming it. Only called with input that the current
    /// challenge accepts.
    ///
    /// # Errors
    /// Storage errors, [`FlowError::StateMismatch`].
    async fn submit(
        &self,
        cx: &Cx<'_>,
        state: StageState,
        input: &Input,
    ) -> Result<Transition, FlowError>;

    /// The code of `state`'s machine came back (typed, or a link confirmed): what to record
    /// before the stage passes. Stages without codes never get here.
    ///
    /// # Errors
    /// Storage errors.
    async fn verified(&self, _cx: &Cx<'_>, _state: &StageState) -> Result<Vec<Effect>, FlowError> {
        Ok(Vec::new())
    }
}

/// The error for a state of another stage kind.
pub(crate) fn mismatch(cx: &Cx<'_>) -> FlowError {
    FlowError::StateMismatch {
        stage: cx.name.to_string(),
    }
}

//! How the engine drives one step: reach stages (running those that need no input), carry out
//! what a stage decided, effect by effect and once, judge codes through the one code machine,
//! render the challenge, and persist.

use super::code::{self, CodeCx, CodeState, LinkCheck, Verdict};
use super::engine::{Caller, Engine, Login, Step};
use super::execution::{Spoiled, EXPIRED};
use super::state::StageState;
use super::step::{Cx, Effect, Next, Stage, Transition};
use super::{stages, Action, Execution, FlowError, Input, StageKind};
use crate::session::Factors;
use crate::store::User;

const START_OVER_LABEL: &str = "Not you? Start over";
/// Shown on every step of a step-up, so a signed-in user knows why they are asked again.
const STEP_UP_INFO: &str = "This application asks for one more step to confirm it is you.";

/// Told when a sign-in started before the user's password changed (or sessions were ended).
pub(crate) const OUTLIVED: &str =
    "Your account's password or sessions changed while you were signing in. Start again.";

/// Where a carried-out transition left the execution.
enum Moved {
    /// The stage waits (its state is back in the execution), with these errors to show.
    Stayed(Vec<String>),
    /// The stage is behind: passed or skipped.
    On,
    /// The execution ends with this message.
    Ended(String),
}

impl Engine {
    /// What a stage sees of this step.
    pub(super) fn cx<'a>(&'a self, exec: &'a Execution, name: &'a str, at: Caller<'a>) -> Cx<'a> {
        Cx {
            exec,
            services: &self.services,
            name,
            client: at.client,
            now: self.now(),
            at,
            designation: self
                .flow(&exec.flow)
                .map_or(crate::config::Designation::Authentication, |p| {
                    p.designation
                }),
        }
    }

    fn code_cx<'a>(&'a self, exec: &'a Execution, name: &'a str, at: Caller<'a>) -> CodeCx<'a> {
        CodeCx {
            services: &self.services,
            exec,
            stage: name,
            client: at.client,
            user_agent: at.user_agent(),
            origin: at.origin,
            now: self.now(),
            pace: &self.pace,
            outbox: &self.outbox,
        }
    }

    /// Runs stages until one needs the user or the flow ends; persists a waiting execution.
    pub(super) async fn advance(
        &self,
        exec: &mut Execution,
        at: Caller<'_>,
        mut errors: Vec<String>,
    ) -> Result<Step, FlowError> {
        if let Some(why) = exec.spoiled().cloned() {
            return Ok(self.spoil(exec, &why));
        }
        if self.outlived_its_flow(exec) {
            tracing::info!(flow = %exec.flow, "a sign-in outlived a reload that changed its flow; it ends and the user starts again");
            return Ok(self.ended(exec, super::execution::CHANGED.into()));
        }
        if self.outlived_a_revocation(exec)? {
            return Ok(self.ended(exec, OUTLIVED.into()));
        }
        if exec.planned.is_none() {
            if let Some(refusal) = self.make_plan(exec, at).await? {
                return Ok(self.ended(exec, refusal));
            }
        }
        let plan = self.plan(exec)?;
        loop {
            let Some((name, stage)) = self.current(plan, exec) else {
                return self.finish(exec).await;
            };
            let stage = stage.as_ref();
            if self.carried_past(exec, stage) || self.passkey_past(exec) {
                Self::move_on(exec);
                continue;
            }
            if exec.state.is_none() && self.skips_reached(exec, at).await? {
                Self::move_on(exec);
                continue;
            }
            if exec.state.is_none() {
                let entered = stage.enter(&self.cx(exec, name, at)).await?;
                match self.carry_out(exec, name, stage, at, entered).await? {
                    Moved::Stayed(mut more) => errors.append(&mut more),
                    Moved::On => continue,
                    Moved::Ended(message) => return Ok(self.ended(exec, message)),
                }
            }
            if !stage.interactive() {
                return Err(FlowError::Stage {
                    stage: name.to_string(),
                    reason: "a stage without input cannot ask again".into(),
                });
            }
            if !exec.state.as_ref().is_some_and(|s| stage.owns(s)) {
                return Ok(self.spoil(exec, &Spoiled::Misplaced));
            }
            match self.link_confirmed(exec, name, stage, at).await? {
                Some(Moved::Ended(message)) => return Ok(self.ended(exec, message)),
                Some(_) => continue,
                None => {}
            }
            return self.ask(exec, name, stage, at, errors).await;
        }
    }

    /// Whether every session of the execution's user was ended (a password change, a disabled
    /// or removed account) after it started, by something other than this execution.
    ///
    /// # Security
    /// Proofs made before such a revocation (the old password) are as void as the sessions
    /// they opened: a sign-in held open across a recovery must not finish, enrol a factor of
    /// the attacker's, or mint a fresh session. The recovery (or settings) execution that wrote
    /// the new password itself passed a `user_write` stage and goes on; one that deleted the
    /// account ends signed out as before.
    fn outlived_a_revocation(&self, exec: &Execution) -> Result<bool, FlowError> {
        let Some(user) = exec.user.as_deref() else {
            return Ok(false);
        };
        // This execution ended them itself: it wrote the password, or deleted the account.
        if exec.signed_out || exec.passed.contains(&StageKind::UserWrite) {
            return Ok(false);
        }
        // Nothing proved yet (an identifier typed): nothing to void, and no page that would
        // tell a disabled account from an unknown one.
        if exec.passed.iter().all(|k| *k == StageKind::Identification) {
            return Ok(false);
        }
        // `created` is in seconds: only a revocation from the next second on is surely later.
        let started_ms = exec.created.saturating_add(1).saturating_mul(1000);
        let revoked = self
            .services
            .sessions
            .revoked_since(user)
            .is_some_and(|since| since >= started_ms);
        if revoked {
            tracing::warn!(user, flow = %exec.flow, client = %exec.client, "a sign-in started before the user's sessions were ended; it ends too");
        }
        Ok(revoked)
    }

    /// Renders the current stage's challenge (pure) and saves the execution.
    async fn ask(
        &self,
        exec: &mut Execution,
        name: &str,
        stage: &dyn Stage,
        at: Caller<'_>,
        mut errors: Vec<String>,
    ) -> Result<Step, FlowError> {
        let Some(state) = exec.state.as_ref() else {
            return Err(FlowError::StateMismatch { stage: name.into() });
        };
        let mut challenge = stage.challenge(&self.cx(exec, name, at), state)?;
        challenge.errors.append(&mut errors);
        let bound = self.bound(exec);
        if exec.carried.is_some() && !bound {
            challenge.info.insert(0, STEP_UP_INFO.into());
        }
        // Not offered once this execution created the account it names: the user is who
        // they just signed up as, and starting over would strand the new account.
        if exec.uid.is_some()
            && exec.enrolled.is_none()
            && !bound
            && stage.kind() != StageKind::Identification
        {
            challenge.actions.push(Action {
                name: super::engine::START_OVER.into(),
                label: START_OVER_LABEL.into(),
            });
        }
        if !exec.stored() && self.fresh(exec, stage, state) {
            // Nothing an answer gave, nothing sent: what a fresh start makes again. The flow
            // cookie holds it; the store gets it once an answer changes it.
            exec.held = true;
        } else {
            self.save(exec).await?;
        }
        Ok(Step::Challenge {
            stage: name.to_string(),
            challenge,
        })
    }

    /// Hands a response to the current stage, carries out its decision and moves on.
    pub(super) async fn answer(
        &self,
        exec: &mut Execution,
        name: &str,
        stage: &dyn Stage,
        at: Caller<'_>,
        input: &Input,
    ) -> Result<Step, FlowError> {
        let Some(mut state) = exec.state.take() else {
            return Err(FlowError::StateMismatch { stage: name.into() });
        };
        if self.outlived_a_revocation(exec)? {
            return Ok(self.ended(exec, OUTLIVED.into()));
        }
        if let Some(code) = state.code_mut() {
            code.quiet();
        }
        let decided = stage.submit(&self.cx(exec, name, at), state, input).await?;
        match self.carry_out(exec, name, stage, at, decided).await? {
            Moved::Stayed(errors) => self.advance(exec, at, errors).await,
            Moved::On => self.advance(exec, at, Vec::new()).await,
            Moved::Ended(message) => Ok(self.ended(exec, message)),
        }
    }

    /// Whether a link for the waiting stage was confirmed elsewhere; if so the stage passes
    /// (or the execution ends) as if the code had been typed.
    async fn link_confirmed(
        &self,
        exec: &mut Execution,
        name: &str,
        stage: &dyn Stage,
        at: Caller<'_>,
    ) -> Result<Option<Moved>, FlowError> {
        if !exec
            .state
            .as_ref()
            .and_then(StageState::code)
            .is_some_and(CodeState::awaits_link)
        {
            return Ok(None);
        }
        let Some(mut state) = exec.state.take() else {
            return Ok(None);
        };
        let check = match state.code_mut() {
            Some(code) => code.link_confirmed(&self.code_cx(exec, name, at))?,
            None => LinkCheck::Waiting,
        };
        match check {
            LinkCheck::Confirmed => {}
            LinkCheck::Waiting => {
                exec.state = Some(state);
                return Ok(None);
            }
            LinkCheck::TooMany => {
                tracing::info!(user = %CodeState::subject(exec), client = %at.client, stage = name, outcome = "failure", "too many invalid links opened; sign-in ended");
                return Ok(Some(Moved::Ended(super::otp::TOO_MANY_ATTEMPTS.into())));
            }
        }
        let effects = stage.verified(&self.cx(exec, name, at), &state).await?;
        let passed = Transition {
            next: Next::Pass,
            effects,
        };
        self.carry_out(exec, name, stage, at, passed)
            .await
            .map(Some)
    }

    /// Carries out a transition's effects in order, then moves as it says.
    async fn carry_out(
        &self,
        exec: &mut Execution,
        name: &str,
        stage: &dyn Stage,
        at: Caller<'_>,
        t: Transition,
    ) -> Result<Moved, FlowError> {
        let Transition { mut next, effects } = t;
        for effect in effects {
            match effect {
                Effect::SendCode { resend } => {
                    let code = staying_code(&mut next, name)?;
                    code.send(&self.code_cx(exec, name, at), resend).await?;
                }
                Effect::CheckCode(typed) => {
                    let code = staying_code(&mut next, name)?;
                    let verdict = code.verify(&self.code_cx(exec, name, at), &typed)?;
                    next = self.judged(exec, name, stage, at, next, verdict).await?;
                }
                Effect::Withdraw(mut code) => code.withdraw(&self.services)?,
                other => self.record(exec, name, other)?,
            }
        }
        count_answer(stage.kind(), &next);
        Ok(match next {
            Next::Stay(state, errors) => {
                exec.state = Some(state);
                Moved::Stayed(errors)
            }
            Next::Pass => {
                Self::record_pass(exec, stage.kind());
                Moved::On
            }
            Next::Skip => {
                Self::move_on(exec);
                Moved::On
            }
            Next::Cancel(message) => Moved::Ended(message),
        })
    }

    /// What a code's verdict makes of the step: a valid code records what the stage says
    /// and passes; a refused one stays with its message, or ends at the attempt limit.
    async fn judged(
        &self,
        exec: &mut Execution,
        name: &str,
        stage: &dyn Stage,
        at: Caller<'_>,
        next: Next,
        verdict: Verdict,
    ) -> Result<Next, FlowError> {
        let Next::Stay(state, mut errors) = next else {
            return Ok(next);
        };
        match code::refusal(verdict) {
            Some((true, message)) => Ok(Next::Cancel(message.into())),
            Some((false, message)) => {
                errors.push(message.into());
                Ok(Next::Stay(state, errors))
            }
            None => {
                for effect in stage.verified(&self.cx(exec, name, at), &state).await? {
                    self.record(exec, name, effect)?;
                }
                Ok(Next::Pass)
            }
        }
    }

    /// Carries out an effect that touches only the execution or the store.
    fn record(&self, exec: &mut Execution, name: &str, effect: Effect) -> Result<(), FlowError> {
        let store = &self.services.store;
        match effect {
            Effect::Identify { uid, user } => {
                exec.uid = Some(uid);
                exec.user = user;
            }
            Effect::Remember(values) => exec.prompt_data.extend(values),
            Effect::Prove(f) => exec.factors = exec.factors.with(f),
            Effect::Passed(kind) => exec.passed.push(kind),
            Effect::Methods(methods) => super::amr::add(&mut exec.methods, &methods),
            Effect::Login { lifetime_secs } => exec.login = Some(lifetime_secs),
            Effect::PutDevice(d) => {
                store.put_device(&d)?;
                // A device made during this sign-in (an update of a validated one keeps its
                // older `created`).
                if d.created >= exec.created {
                    crate::audit::device_added(&d.username, &exec.client, &d.id);
                }
            }
            Effect::PutUser(u) => save_user(store.as_ref(), &u)?,
            Effect::Keep(secrets) => exec.secrets.extend(secrets),
            Effect::Enrolled(name) => exec.enrolled = Some(name),
            Effect::Invited(inv) => {
                let fixed = &inv.fixed;
                let shown = [("email", &fixed.email), ("name", &fixed.name)];
                for (k, v) in shown {
                    if let Some(v) = v {
                        exec.prompt_data.insert(k.to_string(), v.clone());
                    }
                }
                for (k, v) in &fixed.attributes {
                    exec.prompt_data
                        .insert(format!("attributes.{k}"), v.clone());
                }
                exec.invitation_token = None;
                exec.invitation = Some(*inv);
            }
            Effect::InvitationSpent => {
                if let Some(inv) = exec.invitation.as_mut() {
                    inv.spent = true;
                }
            }
            Effect::DeleteUser(username) => self.delete_user(exec, &username)?,
            Effect::EndSession => {
                if let Some(c) = &exec.carried {
                    self.services.sessions.revoke_sid(&c.sid, c.exp)?;
                }
                exec.signed_out = true;
                tracing::info!(user = exec.user.as_deref().unwrap_or_default(), flow = %exec.flow, client = %exec.client, "signed out by a user_logout stage");
            }
            Effect::SendCode { .. } | Effect::CheckCode(_) | Effect::Withdraw(_) => {
                return Err(FlowError::Stage {
                    stage: name.into(),
                    reason: "a code effect outside a waiting code state".into(),
                })
            }
        }
        Ok(())
    }

    /// Deletes `username` (the account, its e-mail index, every device) and ends every one of
    /// its sessions; the execution then ends signed out. One audit line.
    fn delete_user(&self, exec: &mut Execution, username: &str) -> Result<(), FlowError> {
        // Sessions first: should the removal fail, the user is signed out and can try again;
        // the other way round a failure would leave live sessions of a deleted account.
        self.services.sessions.revoke_user(username)?;
        let existed = self.services.store.remove_user(username)?;
        exec.signed_out = true;
        exec.login = None;
        tracing::info!(user = %username, flow = %exec.flow, client = %exec.client, existed, "account deleted by its owner; devices removed, sessions ended");
        crate::audit::record(&crate::audit::Event {
            user: username,
            action: "account_deleted",
            target: &exec.flow,
            outcome: "success",
            client: &exec.client,
            ended_sessions: 0,
        });
        Ok(())
    }

    /// A stage passed: record it for `amr`, add the factor it proves, move on.
    fn record_pass(exec: &mut Execution, kind: StageKind) {
        exec.passed.push(kind);
        super::amr::add(&mut exec.methods, super::amr::of_kind(kind));
        exec.factors = exec.factors.with(Factors::of_kind(kind.as_str()));
        Self::move_on(exec);
    }

    fn move_on(exec: &mut Execution) {
        exec.stage += 1;
        exec.state = None;
    }

    /// Whether an execution started with a session skips the current stage: identification
    /// (the user is the session's), and in a step-up any stage the carried factors satisfy.
    fn carried_past(&self, exec: &Execution, stage: &dyn Stage) -> bool {
        let Some(carried) = &exec.carried else {
            return false;
        };
        stage.kind() == StageKind::Identification
            || !self.bound(exec)
                && self
                    .flow(&exec.flow)
                    .and_then(|plan| plan.satisfied_by.get(exec.stage))
                    .is_some_and(|need| carried.factors.meets(*need))
    }

    /// Whether a passwordless sign-in skips the current stage: a user-verified passkey at
    /// identification stands in for the password and for a validation that accepts WebAuthn
    /// (each stage the proved factors satisfy), never for other checks (a TOTP-only
    /// validation, a prompt).
    fn passkey_past(&self, exec: &Execution) -> bool {
        exec.factors.meets(Factors::PASSKEY)
            && self
                .flow(&exec.flow)
                .and_then(|plan| plan.satisfied_by.get(exec.stage))
                .is_some_and(|need| need.meets(exec.factors))
    }

    async fn finish(&self, exec: &mut Execution) -> Result<Step, FlowError> {
        self.forget_off_worker(exec).await?;
        // A flow without a user_write spends its invitation when it completes.
        let unspent = exec.invitation.as_ref().filter(|i| !i.spent);
        if let Some(inv) = unspent {
            if !stages::invitation::spend_now(&self.services, inv, self.now())? {
                return Ok(Step::Ended {
                    message: stages::invitation::INVALID.into(),
                });
            }
        }
        if exec.login.is_some() && !exec.authenticated() {
            // A flow that never asked for proof (identification then login, or a validation
            // skipped for a user without devices) must not hand out a session.
            tracing::warn!(flow = %exec.flow, client = %exec.client, "flow reached user_login without an authenticating stage; no session issued");
            return Ok(Step::Ended {
                message: stages::SIGN_IN_FAILED.into(),
            });
        }
        if exec.signed_out {
            return Ok(Step::Done {
                rd: exec.rd.clone(),
                login: None,
                signed_out: true,
            });
        }
        let login = match (exec.login, &exec.user) {
            (Some(lifetime_secs), Some(name)) => match self.services.store.user(name)? {
                Some(user) if user.active => Some(self.login(exec, user, lifetime_secs)),
                _ => {
                    return Ok(Step::Ended {
                        message: stages::SIGN_IN_FAILED.into(),
                    })
                }
            },
            _ => None,
        };
        Ok(Step::Done {
            rd: exec.rd.clone(),
            login,
            signed_out: false,
        })
    }

    /// The session a completed execution earns. After a step-up it carries the old session's
    /// proofs and flows, and ends no later than the old one did.
    fn login(&self, exec: &Execution, user: User, lifetime_secs: i64) -> Login {
        // A flow run for the signed-in user proved only its own factors; the session it
        // replaces keeps the ones it had (a step-up already counts them).
        let factors = exec
            .carried
            .as_ref()
            .map_or(exec.factors, |c| exec.factors.with(c.factors));
        let amr = super::amr::session(&exec.passed, &exec.methods, factors);
        let mut flows = exec
            .carried
            .as_ref()
            .map(|c| c.flows.clone())
            .unwrap_or_default();
        if !flows.contains(&exec.flow) {
            flows.push(exec.flow.clone());
        }
        let (lifetime_secs, replaces) = match &exec.carried {
            Some(c) => (
                lifetime_secs.min(c.exp - self.now()).max(1),
                Some((c.sid.clone(), c.exp)),
            ),
            None => (lifetime_secs, None),
        };
        Login {
            user,
            amr,
            factors,
            flows,
            lifetime_secs,
            replaces,
        }
    }

    /// Ends an execution that cannot be read back, with one log line and [`EXPIRED`].
    /// Whether the flow `exec` runs in is gone or has other stages than when it started (a
    /// reload changed it).
    pub(super) fn outlived_its_flow(&self, exec: &Execution) -> bool {
        let Some(started) = &exec.stages else {
            return false;
        };
        self.flows
            .get(&exec.flow)
            .is_none_or(|plan| &plan.stages != started)
    }

    fn spoil(&self, exec: &Execution, why: &Spoiled) -> Step {
        tracing::warn!(flow = %exec.flow, reason = ?why, "a stored sign-in could not be read back; it ends and the user starts again");
        self.ended(exec, EXPIRED.into())
    }

    pub(super) fn ended(&self, exec: &Execution, message: String) -> Step {
        if let Err(e) = self.forget(exec) {
            tracing::warn!(error = %e, "could not remove an ended execution; it will expire");
        }
        Step::Ended { message }
    }

    /// Persists the execution durably (it must survive a restart). The write ends in an
    /// fsync, so it runs on the blocking pool: a storm of sign-ins then waits on the disk
    /// without holding the async workers that serve signed-in traffic.
    ///
    /// A step that changed nothing (a reload) writes nothing. The first write of an execution
    /// counts it against its address's cap (`[session] max_flows_per_client`).
    async fn save(&self, exec: &mut Execution) -> Result<(), FlowError> {
        let bytes = serde_json::to_vec(exec)?;
        if exec.saved.as_ref() == Some(&bytes) {
            return Ok(());
        }
        if !exec.stored() {
            self.count_stored(exec)?;
        }
        let store = self.services.store.clone();
        let (id, expires) = (exec.id.clone(), exec.expires);
        let (loaded, put) = (exec.saved.clone(), bytes.clone());
        let written = tokio::task::spawn_blocking(move || match loaded {
            // Only from the state this step started from: a step another request (another
            // replica) applied meanwhile, or a removal (a cancel, a finish), is never undone.
            Some(loaded) => store.swap_execution(&id, &loaded, &put, expires),
            None => store.put_execution(&id, expires, &put).map(|()| true),
        })
        .await??;
        if !written {
            tracing::info!(flow = %exec.flow, client = %exec.client, outcome = "already_answered", "a step lost the race to save its sign-in; it is not applied");
            return Err(FlowError::AlreadyAnswered);
        }
        exec.saved = Some(bytes);
        exec.held = false;
        Ok(())
    }

    /// Claims a stored execution for the step about to be taken, when other gateways share
    /// the store (the in-process [`Engine::lock`] serialises steps only within this one):
    /// the stored record is swapped, from the state this request loaded, to the same state one
    /// turn on. Of two replicas that loaded the same state only one claims it; the other
    /// fails with [`FlowError::AlreadyAnswered`] before it judges, sends or writes anything.
    ///
    /// # Security
    /// Without it, one code (a password, a TOTP step, an e-mailed code) sent in parallel to
    /// two replicas would be judged by both against the same stored state: both would pass,
    /// both could enrol a device or write the account, and attempt counts kept in the
    /// execution would count once. A claimant that dies mid-step leaves a record that is as
    /// good as the one it loaded (only the turn differs): the next request goes on from it.
    pub(super) async fn claim(&self, exec: &mut Execution) -> Result<(), FlowError> {
        if !exec.stored() || !self.services.store.shared() {
            return Ok(());
        }
        exec.turn = exec.turn.wrapping_add(1);
        self.save(exec).await
    }

    /// [`Engine::forget`], with the store's durable removal (an fsync) on the blocking pool,
    /// as [`Engine::save`] does: a finishing sign-in does not hold the async worker while the
    /// disk syncs.
    ///
    /// Where other gateways share the store, a stored execution is ended only from the state
    /// this step loaded (swapped to a dead, empty record that no reader returns and the purge
    /// drops): of two replicas finishing one execution only one issues its session; the other
    /// fails with [`FlowError::AlreadyAnswered`].
    async fn forget_off_worker(&self, exec: &Execution) -> Result<(), FlowError> {
        self.release(exec);
        let store = self.services.store.clone();
        let id = exec.id.clone();
        let loaded = exec.saved.clone().filter(|_| store.shared());
        let ended = tokio::task::spawn_blocking(move || match loaded {
            Some(loaded) => store.swap_execution(&id, &loaded, b"", 0),
            None => store.remove_execution(&id).map(|()| true),
        })
        .await??;
        if !ended {
            tracing::info!(flow = %exec.flow, client = %exec.client, outcome = "already_answered", "a finishing step lost the race to end its sign-in; no session from it");
            return Err(FlowError::AlreadyAnswered);
        }
        Ok(())
    }

    /// Whether `exec`, never stored, is still exactly what a fresh start of its flow makes of
    /// it at this stage: no step-up, no user named, nothing proved or remembered, and a stage
    /// state that entering the stage again makes alike ([`Stage::fresh`]).
    fn fresh(&self, exec: &Execution, stage: &dyn Stage, state: &StageState) -> bool {
        exec.carried.is_none()
            && exec.uid.is_none()
            && exec.user.is_none()
            && exec.passed.is_empty()
            && exec.methods.is_empty()
            && exec.prompt_data.is_empty()
            && exec.login.is_none()
            && exec.factors == Factors::NONE
            && exec.secrets.is_empty()
            && exec.enrolled.is_none()
            && exec.invitation.is_none()
            && !exec.signed_out
            && exec.spoiled().is_none()
            && stage.fresh(state)
    }
}

/// The code machine of the state a transition stays in.
/// `portcullis_authn_total`: a stage that passed, refused an answer (stays with an error) or
/// ended the sign-in. A stage that stays without an error (a code sent, a page shown again)
/// or is skipped judged nothing and is not counted.
fn count_answer(kind: StageKind, next: &Next) {
    use crate::metrics::AuthnResult;
    let result = match next {
        Next::Pass => AuthnResult::Success,
        Next::Stay(_, errors) if !errors.is_empty() => AuthnResult::Failure,
        Next::Cancel(_) => AuthnResult::Ended,
        Next::Stay(..) | Next::Skip => return,
    };
    crate::metrics::authn(kind.as_str(), result);
}

fn staying_code<'n>(next: &'n mut Next, name: &str) -> Result<&'n mut CodeState, FlowError> {
    match next {
        Next::Stay(state, _) => state.code_mut(),
        _ => None,
    }
    .ok_or_else(|| FlowError::Stage {
        stage: name.into(),
        reason: "a code effect outside a waiting code state".into(),
    })
}

/// Saves an account a stage changed (an address filled in, the account activated) through
/// [`Store::update_user`](crate::store::Store::update_user): an address another account took
/// since the stage looked (a sign-in on another replica) is not taken from it, the rest of the
/// change is kept, and an account removed meanwhile is not brought back.
fn save_user(store: &dyn crate::store::Store, user: &User) -> Result<(), crate::store::StoreError> {
    if store.update_user(user)? {
        return Ok(());
    }
    let Some(stored) = store.user(&user.username)? else {
        tracing::info!(user = %user.username, "account removed meanwhile: not saved");
        return Ok(());
    };
    if stored.username != user.username || stored.email == user.email {
        return Ok(());
    }
    let mut kept = user.clone();
    kept.email = stored.email;
    if store.update_user(&kept)? {
        tracing::info!(user = %user.username, "address taken by another account meanwhile: not given to this one");
    }
    Ok(())
}

#[cfg(test)]
mod save_user_tests {
    use super::save_user;
    use crate::store::{MemoryStore, Store, User};

    #[test]
    fn an_address_taken_meanwhile_stays_with_its_holder_and_the_rest_is_saved() {
        let store = MemoryStore::new();
        let mut alice = User::new("alice", 1);
        alice.active = false;
        assert!(store.create_user(&alice).unwrap());
        // The stage saw the address free; another replica gave it to bob before the save.
        let mut bob = User::new("bob", 1);
        bob.email = Some("shared@example.com".into());
        assert!(store.create_user(&bob).unwrap());
        let mut changed = alice.clone();
        changed.email = Some("shared@example.com".into());
        changed.active = true;
        save_user(&store, &changed).unwrap();
        let by_email = store.user_by_email("shared@example.com").unwrap();
        assert_eq!(by_email.map(|u| u.username), Some("bob".into()));
        let saved = store.user("alice").unwrap().unwrap();
        assert_eq!(saved.email, None);
        assert!(saved.active, "the activation is kept");
    }

    #[test]
    fn an_account_removed_meanwhile_is_not_brought_back() {
        let store = MemoryStore::new();
        let alice = User::new("alice", 1);
        assert!(store.create_user(&alice).unwrap());
        assert!(store.remove_user("alice").unwrap());
        let mut changed = alice.clone();
        changed.active = true;
        save_user(&store, &changed).unwrap();
        assert_eq!(store.user("alice").unwrap(), None);
    }
}

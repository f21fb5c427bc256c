//! Drives executions: finds the current stage, runs stages that need no input, judges
//! responses, and persists the state after every step.

use super::execution::Carried;
use super::stage::{Input, Outcome, Services, Stage, StageContext};
use super::{stages, Action, Challenge, Execution, FlowError};
use crate::config::{Config, Designation};
use crate::session::{Claims, Factors};
use crate::store::User;
use std::collections::HashMap;
use std::sync::Arc;

/// A configured flow: its stages in order.
#[derive(Debug, Clone)]
pub struct FlowPlan {
    pub slug: String,
    pub title: String,
    pub designation: Designation,
    pub stages: Vec<String>,
    /// Per stage, the factors any one of which satisfies it (see [`Factors::satisfying`]): a
    /// step-up execution skips the stages its session already satisfies.
    pub satisfied_by: Vec<Factors>,
}

/// Where an execution stands after a step.
#[derive(Debug)]
pub enum Step {
    /// Waiting for the user to answer this stage.
    Challenge { stage: String, challenge: Challenge },
    /// The flow completed: go to `rd`, with a session when a `user_login` stage ran.
    Done { rd: String, login: Option<Login> },
    /// The flow ended without success; the execution is gone.
    Ended { message: String },
}

/// The account a completed flow signs in, and how.
#[derive(Debug)]
pub struct Login {
    pub user: User,
    /// Stage kinds passed, for the session's `amr` (after a step-up, with the old session's).
    pub amr: Vec<String>,
    /// The factors proved (after a step-up, with the old session's).
    pub factors: Factors,
    /// The flows completed: the old session's, then this one.
    pub flows: Vec<String>,
    pub lifetime_secs: i64,
    /// The session a step-up replaces: its `sid` and `exp`, to revoke it.
    pub replaces: Option<(String, i64)>,
}

/// A step as both faces render it.
#[derive(Debug)]
pub struct View {
    pub flow: String,
    pub title: String,
    pub step: Step,
}

/// Who is asking, for logs, limits and links.
#[derive(Clone, Copy)]
pub struct Caller<'a> {
    pub client: &'a str,
    /// `scheme://host[:port]` of the request.
    pub origin: &'a str,
}

/// Meta keys a response may carry besides the stage's fields: they name what it answers.
const META_STAGE: &str = "stage";
const META_COMPONENT: &str = "component";

/// The action every step after identification offers: end this execution and start the flow
/// afresh (same `rd`), for a user who typed someone else's name.
pub const START_OVER: &str = "start_over";
const START_OVER_LABEL: &str = "Not you? Start over";
const IDENTIFICATION: &str = "identification";
/// Shown on every step of a step-up, so a signed-in user knows why they are asked again.
const STEP_UP_INFO: &str = "This application asks for one more step to confirm it is you.";

pub struct Engine {
    flows: HashMap<String, FlowPlan>,
    stages: HashMap<String, Arc<dyn Stage>>,
    services: Services,
    flow_lifetime: i64,
    /// Striped locks that serialise the steps of one execution (see [`Engine::lock`]).
    locks: Box<[tokio::sync::Mutex<()>]>,
    lock_hasher: std::collections::hash_map::RandomState,
}

/// How many execution locks there are; executions that share a stripe only wait for each
/// other, which is rare and harmless.
const LOCK_STRIPES: usize = 256;

impl Engine {
    pub fn new(cfg: &Config, services: Services) -> Self {
        let stages = cfg
            .stages
            .iter()
            .map(|(name, sc)| (name.clone(), stages::build(sc, &cfg.stages)))
            .collect();
        let flows = cfg
            .flows
            .iter()
            .map(|f| {
                (
                    f.slug.clone(),
                    FlowPlan {
                        slug: f.slug.clone(),
                        title: f.title.clone(),
                        designation: f.designation,
                        stages: f.stages.clone(),
                        satisfied_by: f
                            .stages
                            .iter()
                            .map(|s| cfg.stages.get(s).map_or(Factors::NONE, Factors::satisfying))
                            .collect(),
                    },
                )
            })
            .collect();
        Self {
            flows,
            stages,
            services,
            flow_lifetime: cfg.session.flow_lifetime.as_secs() as i64,
            locks: (0..LOCK_STRIPES)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
            lock_hasher: Default::default(),
        }
    }

    /// Holds off every other step of the execution `id` until the guard drops. Take it before
    /// loading an execution and keep it until the step is saved.
    ///
    /// # Security
    /// Without it, parallel answers would each read the same attempt count (multiplying
    /// `failed_attempts_before_cancel` and `max_allowed_attempts` by the concurrency), could
    /// both consume one single-use code, and a late save could bring back an execution that
    /// was just cancelled.
    pub async fn lock(&self, id: &str) -> tokio::sync::MutexGuard<'_, ()> {
        use std::hash::BuildHasher;
        let i = (self.lock_hasher.hash_one(id) as usize) % self.locks.len();
        self.locks[i].lock().await
    }

    pub fn flow(&self, slug: &str) -> Option<&FlowPlan> {
        self.flows.get(slug)
    }

    pub fn services(&self) -> &Services {
        &self.services
    }

    /// The execution a magic link belongs to, marked confirmed. Returns the ticket, or `None`
    /// when the link is unknown, used or expired.
    ///
    /// # Errors
    /// Storage or corrupt-record errors.
    pub fn confirm_link(&self, token: &str) -> Result<Option<super::otp::LinkTicket>, FlowError> {
        let store = &self.services.store;
        let hash = super::otp::hash_token(token);
        let now = crate::clock::now();
        let Some(bytes) = store.ticket(&hash, now)? else {
            return Ok(None);
        };
        let mut ticket: super::otp::LinkTicket = serde_json::from_slice(&bytes)?;
        if ticket.confirmed {
            return Ok(None);
        }
        ticket.confirmed = true;
        // Keep it until the waiting tab consumes it, but no longer than the execution lives.
        let expires = match store.execution(&ticket.execution, now)? {
            Some(b) => serde_json::from_slice::<Execution>(&b)?.expires,
            None => return Ok(None),
        };
        store.put_ticket(&hash, expires, &serde_json::to_vec(&ticket)?)?;
        Ok(Some(ticket))
    }

    /// Whether the link token exists and is still waiting to be confirmed (for the GET page).
    ///
    /// # Errors
    /// Storage or corrupt-record errors.
    pub fn link_pending(&self, token: &str) -> Result<bool, FlowError> {
        let hash = super::otp::hash_token(token);
        match self.services.store.ticket(&hash, crate::clock::now())? {
            Some(b) => Ok(!serde_json::from_slice::<super::otp::LinkTicket>(&b)?.confirmed),
            None => Ok(false),
        }
    }

    /// A new execution of `slug` that will end at `rd` (already validated by the caller). It is
    /// stored at its first [`Engine::view`].
    ///
    /// # Errors
    /// [`FlowError::UnknownFlow`].
    pub fn start(&self, slug: &str, rd: String, client: &str) -> Result<Execution, FlowError> {
        if !self.flows.contains_key(slug) {
            return Err(FlowError::UnknownFlow(slug.into()));
        }
        let now = crate::clock::now();
        Ok(Execution {
            id: crate::secret::random_token(32),
            flow: slug.into(),
            rd,
            stage: 0,
            created: now,
            expires: now + self.flow_lifetime,
            csrf: crate::secret::random_token(24),
            uid: None,
            user: None,
            passed: Vec::new(),
            prompt_data: Default::default(),
            stage_state: Default::default(),
            login: None,
            client: client.into(),
            factors: Factors::NONE,
            carried: None,
        })
    }

    /// A new execution of `slug` for the holder of a valid session: a step-up. The user is the
    /// session's, identification and every stage the session's factors satisfy are skipped,
    /// and the session issued at the end carries the old proofs plus the new ones. Flows not
    /// designated for authentication start as [`Engine::start`] does.
    ///
    /// # Security
    /// Only a verified, unrevoked session may be passed here: it stands in for the stages it
    /// skips. The user is still looked up (and must still be active) when the session is issued.
    ///
    /// # Errors
    /// [`FlowError::UnknownFlow`].
    pub fn start_signed_in(
        &self,
        slug: &str,
        rd: String,
        client: &str,
        session: &Claims,
    ) -> Result<Execution, FlowError> {
        let mut exec = self.start(slug, rd, client)?;
        let authentication = self
            .flows
            .get(slug)
            .is_some_and(|f| f.designation == Designation::Authentication);
        if !authentication {
            return Ok(exec);
        }
        let factors = session.proved();
        exec.uid = Some(session.sub.clone());
        exec.user = Some(session.sub.clone());
        exec.passed = session.amr.clone();
        exec.factors = factors;
        exec.carried = Some(Carried {
            sid: session.sid.clone(),
            exp: session.exp,
            iat_ms: session.issued_ms(),
            factors,
            flows: session.flows.clone(),
        });
        Ok(exec)
    }

    /// Ends `exec` and puts a fresh execution of the same flow, towards the same `rd`, in its
    /// place (a new id: the caller sets the new flow cookie). Never a step-up: whoever starts
    /// over is choosing who signs in.
    fn restart(&self, exec: &mut Execution) -> Result<(), FlowError> {
        let fresh = self.start(&exec.flow, exec.rd.clone(), &exec.client)?;
        if let Err(e) = self.services.store.remove_execution(&exec.id) {
            tracing::warn!(error = %e, "could not remove a restarted execution; it will expire");
        }
        tracing::info!(flow = %exec.flow, client = %exec.client, "sign-in started over");
        *exec = fresh;
        Ok(())
    }

    /// The live execution `id` of flow `slug`, if there is one.
    ///
    /// # Errors
    /// [`FlowError::Store`] or [`FlowError::Corrupt`].
    pub fn resume(&self, id: &str, slug: &str) -> Result<Option<Execution>, FlowError> {
        let Some(bytes) = self.services.store.execution(id, crate::clock::now())? else {
            return Ok(None);
        };
        let mut exec: Execution = serde_json::from_slice(&bytes)?;
        exec.id = id.to_string();
        Ok((exec.flow == slug).then_some(exec))
    }

    /// The current step, running any stages that need no input first.
    ///
    /// # Errors
    /// [`FlowError`] from storage or a stage.
    pub async fn view(&self, exec: &mut Execution, at: Caller<'_>) -> Result<View, FlowError> {
        let step = self.advance(exec, at, Vec::new()).await?;
        Ok(self.wrap(exec, step))
    }

    /// Judges a response to the current stage and moves on.
    ///
    /// # Errors
    /// [`FlowError::StageMismatch`] when the response is for another stage (a skip or a
    /// replay); otherwise as [`Engine::view`].
    pub async fn submit(
        &self,
        exec: &mut Execution,
        mut input: Input,
        at: Caller<'_>,
    ) -> Result<View, FlowError> {
        if input.get("action").is_some_and(|a| a == START_OVER) {
            self.restart(exec)?;
            let step = self.advance(exec, at, Vec::new()).await?;
            return Ok(self.wrap(exec, step));
        }
        if self.reidentifies(exec, &input)? {
            // The identification form again (Back, or a client going back) while the execution
            // is further on: the user is correcting who they are. Start afresh and answer its
            // identification with this input.
            self.restart(exec)?;
            self.advance(exec, at, Vec::new()).await?;
        }
        let plan = self.plan(exec)?;
        let Some((name, stage)) = self.current(plan, exec) else {
            let step = self.advance(exec, at, Vec::new()).await?;
            return Ok(self.wrap(exec, step));
        };
        let mismatch = || FlowError::StageMismatch {
            expected: name.to_string(),
        };
        if input.remove(META_STAGE).is_some_and(|s| s != name) {
            return Err(mismatch());
        }
        let component = input.remove(META_COMPONENT);
        let challenge = {
            let mut cx = self.context(exec, name, at);
            stage.challenge(&mut cx).await?
        };
        if !stage.interactive()
            || component.is_some_and(|c| c != challenge.component)
            || input.keys().any(|k| !challenge.accepts(k))
        {
            return Err(mismatch());
        }
        let outcome = {
            let mut cx = self.context(exec, name, at);
            stage.submit(&mut cx, &input).await?
        };
        let errors = match outcome {
            Outcome::Pass => {
                Self::record_pass(exec, stage.as_ref());
                Vec::new()
            }
            Outcome::Skip => {
                exec.stage += 1;
                Vec::new()
            }
            Outcome::Stay(errors) => errors,
            Outcome::Cancel(message) => return Ok(self.end(exec, message)),
        };
        let step = self.advance(exec, at, errors).await?;
        Ok(self.wrap(exec, step))
    }

    /// Whether `input` answers an identification stage of the flow while the execution has
    /// moved past identification (it names the stage, or in JSON the `identification`
    /// component, and the current stage is not one).
    fn reidentifies(&self, exec: &Execution, input: &Input) -> Result<bool, FlowError> {
        if exec.uid.is_none() {
            return Ok(false);
        }
        let plan = self.plan(exec)?;
        let is_identification = |name: &str| {
            self.stages
                .get(name)
                .is_some_and(|s| s.kind() == IDENTIFICATION)
        };
        let current = plan.stages.get(exec.stage).map(String::as_str);
        if current.is_some_and(is_identification) {
            return Ok(false);
        }
        Ok(match input.get(META_STAGE) {
            Some(named) => plan.stages.contains(named) && is_identification(named),
            None => input
                .get(META_COMPONENT)
                .is_some_and(|c| c == IDENTIFICATION),
        })
    }

    /// A stage passed: record it for `amr`, add the factor it proves, move on.
    fn record_pass(exec: &mut Execution, stage: &dyn Stage) {
        exec.passed.push(stage.kind().to_string());
        exec.factors = exec.factors.with(Factors::of_kind(stage.kind()));
        exec.stage += 1;
    }

    /// Whether a step-up execution skips the current stage: identification (the user is the
    /// session's) and any stage the carried factors satisfy.
    fn carried_past(&self, plan: &FlowPlan, exec: &Execution, stage: &dyn Stage) -> bool {
        let Some(carried) = &exec.carried else {
            return false;
        };
        stage.kind() == IDENTIFICATION
            || plan
                .satisfied_by
                .get(exec.stage)
                .is_some_and(|need| carried.factors.meets(*need))
    }

    fn plan(&self, exec: &Execution) -> Result<&FlowPlan, FlowError> {
        self.flows
            .get(&exec.flow)
            .ok_or_else(|| FlowError::UnknownFlow(exec.flow.clone()))
    }

    fn current<'a>(
        &'a self,
        plan: &'a FlowPlan,
        exec: &Execution,
    ) -> Option<(&'a str, &'a Arc<dyn Stage>)> {
        let name = plan.stages.get(exec.stage)?;
        Some((name.as_str(), self.stages.get(name)?))
    }

    fn context<'a>(
        &'a self,
        exec: &'a mut Execution,
        name: &'a str,
        at: Caller<'a>,
    ) -> StageContext<'a> {
        StageContext {
            exec,
            services: &self.services,
            name,
            client: at.client,
            origin: at.origin,
        }
    }

    /// Runs non-interactive stages until one needs the user or the flow ends; persists.
    async fn advance(
        &self,
        exec: &mut Execution,
        at: Caller<'_>,
        mut errors: Vec<String>,
    ) -> Result<Step, FlowError> {
        let plan = self.plan(exec)?;
        loop {
            let Some((name, stage)) = self.current(plan, exec) else {
                return self.finish(exec);
            };
            if self.carried_past(plan, exec, stage.as_ref()) {
                exec.stage += 1;
                continue;
            }
            let mut cx = self.context(exec, name, at);
            let outcome = if stage.interactive() {
                match stage.resume(&mut cx).await? {
                    Some(Outcome::Stay(_)) | None => {
                        let mut challenge = stage.challenge(&mut cx).await?;
                        challenge.errors.append(&mut errors);
                        if exec.carried.is_some() {
                            challenge.info.insert(0, STEP_UP_INFO.into());
                        }
                        if exec.uid.is_some() && stage.kind() != IDENTIFICATION {
                            challenge.actions.push(Action {
                                name: START_OVER.into(),
                                label: START_OVER_LABEL.into(),
                            });
                        }
                        self.save(exec).await?;
                        return Ok(Step::Challenge {
                            stage: name.to_string(),
                            challenge,
                        });
                    }
                    Some(outcome) => outcome,
                }
            } else {
                stage.submit(&mut cx, &Input::new()).await?
            };
            match outcome {
                Outcome::Pass => Self::record_pass(exec, stage.as_ref()),
                Outcome::Skip => exec.stage += 1,
                Outcome::Stay(_) => {
                    return Err(FlowError::Stage {
                        stage: name.to_string(),
                        reason: "a stage without input cannot ask again".into(),
                    })
                }
                Outcome::Cancel(message) => return Ok(self.ended(exec, message)),
            }
        }
    }

    fn finish(&self, exec: &mut Execution) -> Result<Step, FlowError> {
        self.services.store.remove_execution(&exec.id)?;
        if exec.login.is_some() && !exec.authenticated() {
            // A flow that never asked for proof (identification then login, or a validation
            // skipped for a user without devices) must not hand out a session.
            tracing::warn!(flow = %exec.flow, client = %exec.client, "flow reached user_login without an authenticating stage; no session issued");
            return Ok(Step::Ended {
                message: stages::SIGN_IN_FAILED.into(),
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
        })
    }

    /// The session a completed execution earns. After a step-up it carries the old session's
    /// proofs and flows, and ends no later than the old one did.
    fn login(&self, exec: &Execution, user: User, lifetime_secs: i64) -> Login {
        let mut amr: Vec<String> = Vec::with_capacity(exec.passed.len());
        for k in &exec.passed {
            if k != "user_login" && !amr.contains(k) {
                amr.push(k.clone());
            }
        }
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
                lifetime_secs.min(c.exp - crate::clock::now()).max(1),
                Some((c.sid.clone(), c.exp)),
            ),
            None => (lifetime_secs, None),
        };
        Login {
            user,
            amr,
            factors: exec.factors,
            flows,
            lifetime_secs,
            replaces,
        }
    }

    fn end(&self, exec: &Execution, message: String) -> View {
        let step = self.ended(exec, message);
        self.wrap(exec, step)
    }

    fn ended(&self, exec: &Execution, message: String) -> Step {
        if let Err(e) = self.services.store.remove_execution(&exec.id) {
            tracing::warn!(error = %e, "could not remove an ended execution; it will expire");
        }
        Step::Ended { message }
    }

    /// Persists the execution durably (it must survive a restart). The write ends in an
    /// fsync, so it runs on the blocking pool: a storm of sign-ins then waits on the disk
    /// without holding the async workers that serve signed-in traffic.
    async fn save(&self, exec: &Execution) -> Result<(), FlowError> {
        let bytes = serde_json::to_vec(exec)?;
        let store = self.services.store.clone();
        let (id, expires) = (exec.id.clone(), exec.expires);
        tokio::task::spawn_blocking(move || store.put_execution(&id, expires, &bytes)).await??;
        Ok(())
    }

    fn wrap(&self, exec: &Execution, step: Step) -> View {
        View {
            flow: exec.flow.clone(),
            title: self
                .flows
                .get(&exec.flow)
                .map(|f| f.title.clone())
                .unwrap_or_default(),
            step,
        }
    }
}

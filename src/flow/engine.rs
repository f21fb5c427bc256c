//! The engine's public face: flows by name, executions started, resumed, viewed and answered
//! one step at a time, magic links confirmed. How a step is driven is in [`super::drive`].

use super::delivery::Pace;
use super::execution::{Carried, FORMAT};
use super::stage::{Input, Services};
use super::step::Stage;
use super::{stages, Challenge, Execution, FlowError, StageKind};
use crate::config::{Config, Designation, FlowConfig, StageConfig, Starter};
use crate::secret::SecretString;
use crate::session::{Claims, Factors};
use crate::store::User;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// A configured flow: its stages in order. With an execution's `stage` index, `passed` kinds
/// and `user`, this is the plan of a sign-in: which stage is next, what has been proved, by
/// whom.
#[derive(Debug, Clone)]
pub struct FlowPlan {
    /// The name in `/.portcullis/flow/<slug>`.
    pub slug: String,
    /// The pages' title.
    pub title: String,
    /// What the flow is for; only authentication flows step up a session.
    pub designation: Designation,
    /// Stage names, in order.
    pub stages: Vec<String>,
    /// Per stage, the factors any one of which satisfies it (see [`Factors::satisfying`]): a
    /// step-up execution skips the stages its session already satisfies.
    pub satisfied_by: Vec<Factors>,
    /// Who may start the flow.
    pub policies: crate::policy::Binding,
    /// Per stage (parallel to `stages`), the policies that decide whether it runs.
    pub bindings: Vec<crate::config::StageBinding>,
}

impl FlowPlan {
    /// The plan of the configured flow `f` (its stages are keys of `stages`).
    pub fn new(f: &FlowConfig, stages: &BTreeMap<String, StageConfig>) -> FlowPlan {
        FlowPlan {
            slug: f.slug.clone(),
            title: f.title.clone(),
            designation: f.designation,
            stages: f.stages.clone(),
            satisfied_by: f
                .stages
                .iter()
                .map(|s| stages.get(s).map_or(Factors::NONE, Factors::satisfying))
                .collect(),
            policies: f.policies.clone(),
            bindings: f.bindings.clone(),
        }
    }
}

/// Where an execution stands after a step.
#[derive(Debug)]
pub enum Step {
    /// Waiting for the user to answer this stage.
    Challenge {
        /// The configured stage name, which a response may name to say what it answers.
        stage: String,
        /// What the stage asks.
        challenge: Challenge,
    },
    /// The flow completed: go to `rd`, with a session when a `user_login` stage ran.
    Done {
        /// Where to send the user.
        rd: String,
        /// The session to issue, if any.
        login: Option<Login>,
        /// A stage signed the user out (`user_logout`, `user_delete`): clear the session
        /// cookie and end the session the request carries. Never together with `login`.
        signed_out: bool,
    },
    /// The flow ended without success; the execution is gone.
    Ended {
        /// What to tell the user.
        message: String,
    },
}

/// The account a completed flow signs in, and how.
#[derive(Debug)]
pub struct Login {
    /// The account, as stored when the flow completed (active).
    pub user: User,
    /// Stage kinds passed, then RFC 8176 method values (`pwd`, `otp`, `sms`, `hwk`, `swk`,
    /// `user`, `pin`, and `mfa` for two factors or more), for the session's `amr` (after a
    /// step-up, with the old session's).
    pub amr: Vec<String>,
    /// The factors proved (after a step-up, with the old session's).
    pub factors: Factors,
    /// The flows completed: the old session's, then this one.
    pub flows: Vec<String>,
    /// How long the session lasts (after a step-up, no longer than the old one).
    pub lifetime_secs: i64,
    /// The session a step-up replaces: its `sid` and `exp`, to revoke it.
    pub replaces: Option<(String, i64)>,
}

/// A step as both faces render it.
#[derive(Debug)]
pub struct View {
    /// The flow's slug.
    pub flow: String,
    /// The flow's title.
    pub title: String,
    /// Where the execution stands.
    pub step: Step,
}

/// Who is asking, for logs, limits and links.
#[derive(Clone, Copy)]
pub struct Caller<'a> {
    /// The client's address.
    pub client: &'a str,
    /// `scheme://host[:port]` of the request.
    pub origin: &'a str,
    /// The request's method, for policies (`request.method`).
    pub method: &'a str,
    /// The request headers policies may read ([`super::POLICY_HEADERS`]), as sent.
    pub headers: &'a [(&'a str, &'a str)],
}

impl<'a> Caller<'a> {
    /// The request's User-Agent, empty when it sent none.
    pub fn user_agent(&self) -> &'a str {
        self.headers
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case("user-agent"))
            .map_or("", |(_, value)| value)
    }
}

/// Meta keys a response may carry besides the stage's fields: they name what it answers.
const META_STAGE: &str = "stage";
const META_COMPONENT: &str = "component";

/// The action every step after identification offers: end this execution and start the flow
/// afresh (same `rd`), for a user who typed someone else's name.
pub(crate) const START_OVER: &str = "start_over";

/// Runs the configured flows over the injected [`Services`].
pub struct Engine {
    pub(super) flows: HashMap<String, FlowPlan>,
    pub(super) stages: HashMap<String, Arc<dyn Stage>>,
    pub(super) services: Services,
    flow_lifetime: i64,
    /// Striped locks that serialise the steps of one execution (see [`Engine::lock`]); one
    /// set for every engine a reload makes ([`Engine::reconfigured`]).
    locks: Arc<[tokio::sync::Mutex<()>]>,
    lock_hasher: std::collections::hash_map::RandomState,
    /// How long real sends take, for decoys to take as long.
    pub(super) pace: Arc<Pace>,
    /// Wakes the outbox's sender ([`Engine::run_outbox`]) when mail is queued.
    pub(super) outbox: Arc<tokio::sync::Notify>,
    /// The most executions one client address may have stored at once
    /// (`[session] max_flows_per_client`).
    pub(super) max_per_client: usize,
    /// The stored executions of each address (see [`super::pending`]); one count for every
    /// engine a reload makes.
    live: Arc<std::sync::Mutex<super::pending::Live>>,
    /// The key of held flow cookies and CSRF tokens, read from the store at first use.
    held_key: Arc<std::sync::OnceLock<[u8; 32]>>,
}

/// How many execution locks there are; executions that share a stripe only wait for each
/// other, which is rare and harmless.
const LOCK_STRIPES: usize = 256;

impl Engine {
    /// The engine for `cfg`'s flows and stages (the config is validated: every stage a flow
    /// names exists).
    pub fn new(cfg: &Config, services: Services) -> Self {
        let stages = cfg
            .stages
            .iter()
            .map(|(name, sc)| (name.clone(), stages::build(sc, &cfg.stages)))
            .collect();
        let flows = cfg
            .flows
            .iter()
            .map(|f| (f.slug.clone(), FlowPlan::new(f, &cfg.stages)))
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
            pace: Arc::new(Pace::new()),
            outbox: Arc::new(tokio::sync::Notify::new()),
            max_per_client: cfg.session.max_flows_per_client,
            live: Default::default(),
            held_key: Default::default(),
        }
    }

    /// The engine for a reloaded `cfg` that carries on from this one: the same execution
    /// locks, send pace, outbox wake-up and per-address counts of stored executions, so a
    /// step racing a reload on the old engine and one on the new still wait for each other.
    ///
    /// # Security
    /// Fresh locks would let two answers to one execution, one on each engine, both read the
    /// same attempt count or consume the same code; a fresh count would let an address store
    /// its fill again after every reload.
    pub fn reconfigured(&self, cfg: &Config, services: Services) -> Self {
        Self {
            locks: self.locks.clone(),
            lock_hasher: self.lock_hasher.clone(),
            pace: self.pace.clone(),
            outbox: self.outbox.clone(),
            live: self.live.clone(),
            held_key: self.held_key.clone(),
            ..Self::new(cfg, services)
        }
    }

    /// The key held flow cookies and CSRF tokens are signed with: the store's secret
    /// `flow-held` (so they survive a restart). Should the store fail, a random key for this
    /// run: held sign-ins then only start again after a restart.
    fn held_key(&self) -> &[u8; 32] {
        self.held_key
            .get_or_init(|| match self.services.store.secret("flow-held") {
                Ok(k) => k,
                Err(e) => {
                    tracing::error!(error = %e, "could not read the flow cookie key; using one for this run only");
                    rand::random()
                }
            })
    }

    /// The flow cookie's value for `exec`: its id once stored, else the signed fresh start it
    /// is ([`Execution::held`]).
    pub fn cookie_value(&self, exec: &Execution) -> String {
        if exec.held() {
            super::pending::token(self.held_key(), exec)
        } else {
            exec.id.clone()
        }
    }

    /// The id of the execution a flow cookie names: the cookie itself, or the id a held one
    /// carries (so a step with the held cookie and one with the id cookie that followed it
    /// take the same lock).
    pub fn execution_id(&self, value: &str) -> String {
        if value.starts_with(super::pending::HELD) {
            if let Some((id, ..)) = super::pending::read(self.held_key(), value) {
                return id;
            }
        }
        value.to_string()
    }

    /// The execution a held flow cookie names for flow `slug`: the stored one when an answer
    /// already stored it, else the fresh start it holds, for `client` (the store is not
    /// touched). `None` when the cookie does not check out, is for another flow, or expired.
    ///
    /// # Errors
    /// [`FlowError::Store`].
    pub fn resume_held(
        &self,
        value: &str,
        slug: &str,
        client: &str,
    ) -> Result<Option<Execution>, FlowError> {
        let Some((id, flow, rd, created, invitation)) =
            super::pending::read(self.held_key(), value)
        else {
            return Ok(None);
        };
        if flow != slug {
            return Ok(None);
        }
        if let Some(stored) = self.resume(&id, slug)? {
            return Ok(Some(stored));
        }
        let now = self.now();
        let expires = created.saturating_add(self.flow_lifetime);
        if created > now || expires <= now {
            return Ok(None);
        }
        let Ok(mut exec) = self.start(slug, rd, client) else {
            return Ok(None);
        };
        exec.csrf = SecretString::new(super::pending::csrf(self.held_key(), &id));
        exec.id = id;
        exec.created = created;
        exec.expires = expires;
        exec.invitation_token = invitation.map(SecretString::new);
        exec.held = true;
        Ok(Some(exec))
    }

    /// Refuses a fresh execution of `client` when the address has its fill of stored ones.
    pub(super) fn room_for(&self, exec: &Execution) -> Result<(), FlowError> {
        if exec.stored() {
            return Ok(());
        }
        let full = self
            .live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .full(&exec.client, self.now(), self.max_per_client);
        match full {
            Some(retry_after) => Err(self.too_many(exec, retry_after)),
            None => Ok(()),
        }
    }

    fn too_many(&self, exec: &Execution, retry_after: i64) -> FlowError {
        tracing::warn!(client = %exec.client, flow = %exec.flow, max = self.max_per_client, "too many unfinished sign-ins from one address; refused");
        FlowError::TooManyFlows {
            max: self.max_per_client,
            retry_after,
        }
    }

    /// Counts `exec` as stored for its client, unless that address has its fill.
    pub(super) fn count_stored(&self, exec: &Execution) -> Result<(), FlowError> {
        let counted = self
            .live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .reserve(
                &exec.client,
                &exec.id,
                exec.expires,
                self.now(),
                self.max_per_client,
            );
        counted.map_err(|retry_after| self.too_many(exec, retry_after))
    }

    /// Removes `exec` from the store and from its address's count.
    pub(super) fn forget(&self, exec: &Execution) -> Result<(), FlowError> {
        self.release(exec);
        self.services.store.remove_execution(&exec.id)?;
        Ok(())
    }

    /// Takes `exec` out of its address's count.
    pub(super) fn release(&self, exec: &Execution) {
        self.live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .release(&exec.id);
    }

    /// Delivers queued mail for as long as the gateway runs: each message as soon as it is
    /// queued, failed ones again with backoff (see [`super::outbox`]). Messages queued before
    /// a restart are picked up at once.
    pub async fn run_outbox(self: std::sync::Arc<Self>) {
        Self::run_outbox_of(move || self.clone()).await
    }

    /// [`Engine::run_outbox`] over whichever engine `current` returns at each round: after a
    /// reload, mail goes out through the reloaded stages' connections.
    pub async fn run_outbox_of(current: impl Fn() -> Arc<Engine>) {
        loop {
            let engine = current();
            let now = engine.now();
            let wait = match super::outbox::deliver_due(&engine.services).await {
                Ok(Some(due)) => (due - now).clamp(1, 30),
                Ok(None) => 30,
                Err(e) => {
                    tracing::warn!(error = %e, "the outbox could not be read; trying again shortly");
                    5
                }
            };
            let outbox = engine.outbox.clone();
            drop(engine);
            tokio::select! {
                () = outbox.notified() => {}
                () = tokio::time::sleep(std::time::Duration::from_secs(wait as u64)) => {}
            }
        }
    }

    /// Delivers the queued mail that is due, once (what [`Engine::run_outbox`] repeats).
    /// Returns when the next message is due.
    ///
    /// # Errors
    /// Storage errors.
    pub async fn deliver_queued(&self) -> Result<Option<i64>, FlowError> {
        super::outbox::deliver_due(&self.services).await
    }

    /// A link opened in the browser of the execution `id` was not valid (used, expired or
    /// unknown): it counts against that execution's `max_allowed_attempts`, which its waiting
    /// page checks at its next look (see the code machine).
    ///
    /// # Errors
    /// Storage errors.
    pub fn link_refused(&self, id: &str) -> Result<(), FlowError> {
        let store = &self.services.store;
        let now = self.now();
        let Some(bytes) = store.execution(id, now)? else {
            return Ok(());
        };
        let exec = Execution::decode(id, "", &bytes);
        let awaits = exec
            .state
            .as_ref()
            .and_then(super::state::StageState::code)
            .is_some_and(|c| matches!(c.outstanding, super::code::Outstanding::Link { .. }));
        if awaits {
            let key = super::code::CodeState::link_fails_key(id);
            store.bump_counter(&key, (exec.expires - now).max(1), now)?;
        }
        Ok(())
    }

    /// Unix seconds now, from the engine's clock.
    pub(super) fn now(&self) -> i64 {
        self.services.clock.now()
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

    /// The flow named `slug`, if configured.
    pub fn flow(&self, slug: &str) -> Option<&FlowPlan> {
        self.flows.get(slug)
    }

    /// The services stages run over.
    pub fn services(&self) -> &Services {
        &self.services
    }

    /// The execution a magic link belongs to, marked confirmed: the waiting page then passes
    /// its stage at its next look (see the code machine). Returns the ticket, or `None`
    /// when the link is unknown, used or expired.
    ///
    /// # Errors
    /// Storage or corrupt-record errors.
    pub fn confirm_link(
        &self,
        token: &SecretString,
    ) -> Result<Option<super::otp::LinkTicket>, FlowError> {
        let store = &self.services.store;
        let hash = super::otp::hash_token(token);
        let now = self.now();
        let Some(bytes) = store.ticket(&hash, now)? else {
            return Ok(None);
        };
        let mut ticket: super::otp::LinkTicket = serde_json::from_slice(&bytes)?;
        if ticket.confirmed {
            return Ok(None);
        }
        ticket.confirmed = true;
        // Keep it until the waiting tab consumes it, but no longer than the execution lives.
        // A sign-in that cannot be read back only ends: its link is as gone as its sign-in.
        let expires = match store.execution(&ticket.execution, now)? {
            Some(b) => match Execution::decode(&ticket.execution, &ticket.flow, &b) {
                exec if exec.spoiled().is_none() => exec.expires,
                _ => return Ok(None),
            },
            None => return Ok(None),
        };
        // Taken, then written back confirmed: of a confirmation racing another, or a decline,
        // only the one that removes the pending ticket goes on.
        if !store.take_ticket(&hash)? {
            return Ok(None);
        }
        store.put_ticket(&hash, expires, &serde_json::to_vec(&ticket)?)?;
        Ok(Some(ticket))
    }

    /// Whether the link token exists and is still waiting to be confirmed (for the GET page).
    ///
    /// # Errors
    /// Storage or corrupt-record errors.
    pub fn link_pending(&self, token: &SecretString) -> Result<bool, FlowError> {
        Ok(self.link_request(token)?.is_some())
    }

    /// The ticket of a link still waiting to be confirmed: which execution it belongs to and
    /// who asked for it; `None` when it is unknown, used, declined or expired.
    ///
    /// # Errors
    /// Storage or corrupt-record errors.
    pub fn link_request(
        &self,
        token: &SecretString,
    ) -> Result<Option<super::otp::LinkTicket>, FlowError> {
        let hash = super::otp::hash_token(token);
        let Some(bytes) = self.services.store.ticket(&hash, self.now())? else {
            return Ok(None);
        };
        let ticket: super::otp::LinkTicket = serde_json::from_slice(&bytes)?;
        Ok(Some(ticket).filter(|t| !t.confirmed))
    }

    /// Spends a link still waiting to be confirmed without confirming it: the person who
    /// opened it says the sign-in was not theirs. The waiting sign-in never passes with it
    /// (it waits until it expires, or sends a new link). Returns the ticket it removed.
    ///
    /// # Errors
    /// Storage or corrupt-record errors.
    pub fn decline_link(
        &self,
        token: &SecretString,
    ) -> Result<Option<super::otp::LinkTicket>, FlowError> {
        let Some(ticket) = self.link_request(token)? else {
            return Ok(None);
        };
        let hash = super::otp::hash_token(token);
        // Of a decline racing a confirmation, only the one that removes the ticket counts.
        if !self.services.store.take_ticket(&hash)? {
            return Ok(None);
        }
        Ok(Some(ticket))
    }

    /// A new execution of `slug` for a visitor without a session, that will end at `rd`
    /// (already validated by the caller). It is stored at its first [`Engine::view`].
    ///
    /// # Errors
    /// [`FlowError::UnknownFlow`]; [`FlowError::SignInRequired`] for a flow only a signed-in
    /// user may start (`stage_configuration`, `unenrollment`).
    pub fn start(&self, slug: &str, rd: String, client: &str) -> Result<Execution, FlowError> {
        let plan = self.flow_named(slug)?;
        if plan.designation.starter() == Starter::SignedIn {
            return Err(FlowError::SignInRequired { flow: slug.into() });
        }
        Ok(self.blank(slug, rd, client))
    }

    /// An execution of `slug` at its first stage, whoever asks (the start rules are the
    /// callers').
    fn blank(&self, slug: &str, rd: String, client: &str) -> Execution {
        let now = self.now();
        let id = crate::secret::random_token(32);
        let csrf = super::pending::csrf(self.held_key(), &id);
        Execution {
            id,
            format: FORMAT,
            flow: slug.into(),
            rd,
            stage: 0,
            created: now,
            expires: now + self.flow_lifetime,
            csrf: SecretString::new(csrf),
            uid: None,
            user: None,
            passed: Vec::new(),
            methods: Vec::new(),
            prompt_data: Default::default(),
            state: None,
            login: None,
            planned: None,
            client: client.into(),
            stages: self.flows.get(slug).map(|p| p.stages.clone()),
            factors: Factors::NONE,
            carried: None,
            signed_out: false,
            spoiled: None,
            secrets: Default::default(),
            enrolled: None,
            invitation: None,
            invitation_token: None,
            turn: 0,
            saved: None,
            held: false,
        }
    }

    fn flow_named(&self, slug: &str) -> Result<&FlowPlan, FlowError> {
        self.flows
            .get(slug)
            .ok_or_else(|| FlowError::UnknownFlow(slug.into()))
    }

    /// A new execution of `slug` for the holder of a valid session, as the flow's designation
    /// allows:
    /// - `authentication`: a step-up, only when the session falls short of the flow (a stage
    ///   that proves a factor the session lacks; a re-authentication passes a session stripped
    ///   of its factors). Identification and every stage the session's factors satisfy are
    ///   skipped, and the session issued at the end carries the old proofs plus the new ones.
    /// - `stage_configuration`, `unenrollment`: the session's user is the pending user
    ///   (identification is skipped, [`Execution::authenticated`] holds so setup stages take a
    ///   typed destination); every other stage runs, none is skipped for the session's
    ///   factors (a fresh factor asked here is asked).
    /// - `enrollment`, `recovery`: refused.
    ///
    /// # Security
    /// Only a verified, unrevoked session may be passed here: it stands in for the stages it
    /// skips. The user is still looked up (and must still be active) when a session is issued.
    ///
    /// # Errors
    /// [`FlowError::UnknownFlow`]; [`FlowError::AlreadySignedIn`] for an authentication flow
    /// the session already satisfies, or an enrolment or recovery flow.
    pub fn start_signed_in(
        &self,
        slug: &str,
        rd: String,
        client: &str,
        session: &Claims,
    ) -> Result<Execution, FlowError> {
        let plan = self.flow_named(slug)?;
        let factors = session.proved();
        let refused = match plan.designation.starter() {
            Starter::Visitor => true,
            Starter::SignInOrStepUp => plan
                .satisfied_by
                .iter()
                .filter(|need| !need.is_empty())
                .all(|need| factors.meets(*need)),
            Starter::SignedIn => false,
        };
        if refused {
            return Err(FlowError::AlreadySignedIn {
                flow: slug.into(),
                designation: plan.designation,
                rd,
            });
        }
        let step_up = plan.designation.starter() == Starter::SignInOrStepUp;
        let mut exec = self.blank(slug, rd, client);
        exec.uid = Some(session.sub.clone());
        exec.user = Some(session.sub.clone());
        // Every `amr` entry was written by this gateway from a stage kind; one this version
        // does not know proves nothing here.
        exec.passed = session
            .amr
            .iter()
            .filter_map(|k| StageKind::named(k))
            .collect();
        exec.methods = super::amr::carried(&session.amr);
        // A step-up counts the session's factors as proved here (stages they satisfy are
        // skipped); a flow run for the signed-in user proves its own and only adds the
        // session's to a session it issues.
        exec.factors = if step_up { factors } else { Factors::NONE };
        exec.carried = Some(Carried {
            sid: session.sid.clone(),
            exp: session.exp,
            iat_ms: session.issued_ms(),
            factors,
            flows: session.flows.clone(),
        });
        Ok(exec)
    }

    /// Whether `exec` runs for the signed-in user of the session it carries, who may not be
    /// changed (a `stage_configuration` or `unenrollment` flow): no start-over, no
    /// identification, no stage skipped for the session's factors.
    pub fn bound(&self, exec: &Execution) -> bool {
        exec.carried.is_some()
            && self
                .flows
                .get(&exec.flow)
                .is_some_and(|p| p.designation.starter() == Starter::SignedIn)
    }

    /// Ends `exec` and puts a fresh execution of the same flow, towards the same `rd`, in its
    /// place (a new id: the caller sets the new flow cookie). Never a step-up: whoever starts
    /// over is choosing who signs in.
    pub(super) fn restart(&self, exec: &mut Execution) -> Result<(), FlowError> {
        if self.bound(exec) {
            // Only the signed-in user runs this flow: there is nobody else to start as.
            return Err(FlowError::StageMismatch {
                expected: self
                    .plan(exec)?
                    .stages
                    .get(exec.stage)
                    .cloned()
                    .unwrap_or_default(),
            });
        }
        let fresh = self.start(&exec.flow, exec.rd.clone(), &exec.client)?;
        if let Err(e) = self.forget(exec) {
            tracing::warn!(error = %e, "could not remove a restarted execution; it will expire");
        }
        tracing::info!(flow = %exec.flow, client = %exec.client, "sign-in started over");
        *exec = fresh;
        Ok(())
    }

    /// The live execution `id` of flow `slug`, if there is one. A stored execution that
    /// cannot be read back (another format, a state that does not decode) is returned too:
    /// its next view or submit ends it with [`super::EXPIRED`].
    ///
    /// # Errors
    /// [`FlowError::Store`].
    pub fn resume(&self, id: &str, slug: &str) -> Result<Option<Execution>, FlowError> {
        let Some(bytes) = self.services.store.execution(id, self.now())? else {
            return Ok(None);
        };
        let exec = Execution::decode(id, slug, &bytes);
        Ok((exec.flow == slug).then_some(exec))
    }

    /// The current step, running any stages that need no input first. Showing a step never
    /// sends, stores or counts anything: a reload shows the same page.
    ///
    /// # Errors
    /// [`FlowError`] from storage or a stage.
    pub async fn view(&self, exec: &mut Execution, at: Caller<'_>) -> Result<View, FlowError> {
        let step = self.advance(exec, at, Vec::new()).await?;
        Ok(self.wrap(exec, step))
    }

    /// Judges a response to the current stage, carries out what the stage decided, and moves
    /// on.
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
        if exec.spoiled().is_some() || self.outlived_its_flow(exec) {
            // Ended by the view, never judged against a stage the flow no longer has there.
            return self.view(exec, at).await;
        }
        // An answer to a sign-in the store does not hold yet will store it: refused up front
        // when the address has its fill, before anything is sent.
        self.room_for(exec)?;
        if input.get("action").is_some_and(|a| a == START_OVER) {
            self.restart(exec)?;
            return self.view(exec, at).await;
        }
        if self.reidentifies(exec, &input, at)? {
            // The identification form again (Back, or a client going back) while the execution
            // is further on: the user is correcting who they are. Start afresh and answer its
            // identification with this input.
            self.restart(exec)?;
            self.advance(exec, at, Vec::new()).await?;
        }
        if exec.state.is_none() {
            // Answered before the stage was ever shown: reach it first.
            self.advance(exec, at, Vec::new()).await?;
        }
        let plan = self.plan(exec)?;
        let Some((name, stage)) = self.current(plan, exec) else {
            return self.view(exec, at).await;
        };
        self.in_step(exec, name, stage.as_ref(), &mut input, at)?;
        // Only an answer to this step claims it: one out of step changes nothing stored.
        self.claim(exec).await?;
        let step = self.answer(exec, name, stage.as_ref(), at, &input).await?;
        Ok(self.wrap(exec, step))
    }

    /// Whether `input` answers the current challenge: it names no other stage or component and
    /// carries only fields (and actions) the challenge accepts. Strips the meta keys. The
    /// challenge is rendered to know, which is pure: nothing is sent or counted.
    fn in_step(
        &self,
        exec: &Execution,
        name: &str,
        stage: &dyn Stage,
        input: &mut Input,
        at: Caller<'_>,
    ) -> Result<(), FlowError> {
        let mismatch = || FlowError::StageMismatch {
            expected: name.to_string(),
        };
        if input.remove(META_STAGE).is_some_and(|s| s != name) {
            return Err(mismatch());
        }
        let component = input.remove(META_COMPONENT);
        let Some(state) = exec.state.as_ref() else {
            return Err(mismatch());
        };
        let challenge = stage.challenge(&self.cx(exec, name, at), state)?;
        if !stage.interactive()
            || component.is_some_and(|c| c != challenge.component)
            || input.keys().any(|k| !challenge.accepts(k))
        {
            return Err(mismatch());
        }
        Ok(())
    }

    /// Whether `input` answers an identification stage of the flow while the execution has
    /// moved past identification (it names the stage, or in JSON the `identification`
    /// component, and the current stage is not one) with only fields that stage takes.
    ///
    /// # Security
    /// The answer restarts the execution, so a stale or forged post that merely names the
    /// identification stage (a code beside `stage=identify`) must not: it would end the
    /// sign-in under way and leave its cookie pointing at nothing. It is out of step instead.
    fn reidentifies(
        &self,
        exec: &Execution,
        input: &Input,
        at: Caller<'_>,
    ) -> Result<bool, FlowError> {
        if exec.uid.is_none() || self.bound(exec) {
            return Ok(false);
        }
        let plan = self.plan(exec)?;
        let identification = |name: &str| {
            self.stages
                .get(name)
                .filter(|s| s.kind() == StageKind::Identification)
        };
        let current = plan.stages.get(exec.stage).map(String::as_str);
        if current.is_some_and(|name| identification(name).is_some()) {
            return Ok(false);
        }
        let named = match input.get(META_STAGE) {
            Some(named) if plan.stages.contains(named) => Some(named.as_str()),
            Some(_) => None,
            None if input
                .get(META_COMPONENT)
                .is_some_and(|c| c == StageKind::Identification.as_str()) =>
            {
                plan.stages
                    .iter()
                    .map(String::as_str)
                    .find(|name| identification(name).is_some())
            }
            None => None,
        };
        let Some((name, stage)) = named.and_then(|n| Some((n, identification(n)?))) else {
            return Ok(false);
        };
        let asked =
            super::state::StageState::from(stages::identification::IdentificationState::Uid {
                passkey: None,
            });
        let challenge = stage.challenge(&self.cx(exec, name, at), &asked)?;
        Ok(input
            .keys()
            .filter(|k| *k != META_STAGE && *k != META_COMPONENT)
            .all(|k| challenge.accepts(k)))
    }

    pub(super) fn plan(&self, exec: &Execution) -> Result<&FlowPlan, FlowError> {
        self.flows
            .get(&exec.flow)
            .ok_or_else(|| FlowError::UnknownFlow(exec.flow.clone()))
    }

    pub(super) fn current<'a>(
        &'a self,
        plan: &'a FlowPlan,
        exec: &Execution,
    ) -> Option<(&'a str, &'a Arc<dyn Stage>)> {
        let name = plan.stages.get(exec.stage)?;
        Some((name.as_str(), self.stages.get(name)?))
    }

    pub(super) fn wrap(&self, exec: &Execution, step: Step) -> View {
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

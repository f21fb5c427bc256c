//! Policies in the engine: who may start a flow (its binding, checked when the plan is made),
//! which stages the plan keeps (`evaluate_on_plan`), and whether a reached stage still runs
//! (`re_evaluate_policies`). Bindings are judged through the [`crate::policy::Judge`] port
//! over [`Facts`] the engine fills from the execution and the request.

use super::engine::{Caller, Engine, FlowPlan};
use super::{Execution, FlowError, Services};
use crate::config::Designation;
use crate::config::StageBinding;
use crate::policy::{Binding, Facts, Failures, FlowFacts, Judge, RequestFacts, UserFacts, Verdict};
use crate::store::User;
use std::collections::BTreeMap;

pub use crate::policy::POLICY_HEADERS;

/// What `portcullis flow check` prints: the flow's verdict, then each stage's.
#[derive(Debug)]
pub struct PlanCheck {
    /// Who may start the flow.
    pub flow: Verdict,
    /// Per stage, in order.
    pub stages: Vec<StageCheck>,
}

/// One stage of a [`PlanCheck`].
#[derive(Debug)]
pub struct StageCheck {
    /// The stage's name.
    pub stage: String,
    /// Whether its binding is evaluated when the plan is made.
    pub on_plan: bool,
    /// Whether its binding is evaluated when the stage is reached.
    pub when_reached: bool,
    /// Its binding's verdict; `None` when it binds no policies (it always runs).
    pub verdict: Option<Verdict>,
}

/// The user facts of an account.
pub fn user_facts(u: &User) -> UserFacts {
    let mut attributes = BTreeMap::new();
    if let Some(p) = &u.phone {
        attributes.insert("phone".to_string(), p.clone());
    }
    UserFacts {
        username: u.username.clone(),
        name: u.name.clone(),
        email: u.email.clone().unwrap_or_default(),
        groups: u.groups.clone(),
        attributes,
        is_active: u.active,
    }
}

fn flow_facts(plan: &FlowPlan) -> FlowFacts {
    FlowFacts {
        slug: plan.slug.clone(),
        designation: plan.designation.as_str().to_string(),
        ..Default::default()
    }
}

/// How long a failed sign-in counts for `reputation` policies, in seconds.
pub(crate) const REPUTATION_WINDOW: i64 = 3600;

fn ip_key(ip: &str) -> String {
    format!("rep:ip:{ip}")
}

fn user_key(user: &str) -> String {
    format!("rep:user:{user}")
}

/// The account a failure counts against: the resolved one, else the identifier typed.
fn account(exec: &Execution) -> Option<&str> {
    exec.user.as_deref().or(exec.uid.as_deref())
}

/// Records a failed sign-in (a wrong password) for `reputation` policies.
///
/// # Security
/// Anyone may type a wrong password for any name, so a policy with `check_username` lets a
/// stranger hold an account under its threshold (as authentik's does); `check_ip` alone
/// does not. Keys are bounded: identifiers are at most 256 characters, counters expire.
///
/// # Errors
/// [`FlowError::Store`].
pub(crate) fn record_failure(
    exec: &Execution,
    services: &Services,
    client: &str,
    now: i64,
) -> Result<(), FlowError> {
    let store = &services.store;
    store.bump_counter(&ip_key(client), REPUTATION_WINDOW, now)?;
    if let Some(user) = account(exec) {
        store.bump_counter(&user_key(user), REPUTATION_WINDOW, now)?;
    }
    Ok(())
}

/// What policies see of `exec` in the request `at`: the user it names (looked up now), the
/// request, the flow with its prompt data and passed stages, and `now`.
pub(crate) fn facts_of(
    exec: &Execution,
    services: &Services,
    at: Caller<'_>,
    designation: Designation,
    now: i64,
) -> Result<Facts, FlowError> {
    let user = match &exec.user {
        Some(name) => services.store.user(name)?.as_ref().map(user_facts),
        None => None,
    };
    let (host, path) = match url::Url::parse(&exec.rd) {
        Ok(u) => (
            u.host_str().unwrap_or_default().to_string(),
            u.path().to_string(),
        ),
        Err(_) => (String::new(), exec.rd.clone()),
    };
    let failures = Failures {
        ip: services.store.counter(&ip_key(at.client), now)?,
        user: match account(exec) {
            Some(u) => services.store.counter(&user_key(u), now)?,
            None => 0,
        },
    };
    Ok(Facts {
        failures,
        user,
        request: RequestFacts {
            ip: at.client.to_string(),
            host,
            path,
            method: at.method.to_string(),
            headers: at
                .headers
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
                .collect(),
        },
        flow: FlowFacts {
            slug: exec.flow.clone(),
            designation: designation.as_str().to_string(),
            prompt_data: exec.prompt_data.clone(),
            stages_passed: exec.passed.iter().map(|k| k.as_str().to_string()).collect(),
        },
        now,
    })
}

impl Engine {
    /// What policies see of `exec` in this request.
    fn facts(&self, plan: &FlowPlan, exec: &Execution, at: Caller<'_>) -> Result<Facts, FlowError> {
        facts_of(exec, &self.services, at, plan.designation, self.now())
    }

    async fn judge(&self, binding: &Binding, facts: &Facts) -> Verdict {
        self.services.policies.judge(binding, facts).await
    }

    /// Makes the plan at the execution's first step: the flow's own binding (who may start
    /// it), then every stage binding evaluated on plan. Returns the refusal to show when the
    /// flow's binding fails.
    pub(super) async fn make_plan(
        &self,
        exec: &mut Execution,
        at: Caller<'_>,
    ) -> Result<Option<String>, FlowError> {
        let plan = self.plan(exec)?;
        let facts = self.facts(plan, exec, at)?;
        let verdict = self.judge(&plan.policies, &facts).await;
        if !verdict.passed {
            tracing::info!(flow = %plan.slug, client = %at.client, outcomes = ?verdict.outcomes, "flow refused by its policies");
            return Ok(Some(verdict.messages.join(" ")));
        }
        let mut kept = Vec::with_capacity(plan.bindings.len());
        for (name, b) in plan.stages.iter().zip(&plan.bindings) {
            kept.push(
                self.keeps(&plan.slug, name, b, b.evaluate_on_plan, &facts)
                    .await,
            );
        }
        exec.planned = Some(kept);
        Ok(None)
    }

    /// Whether the stage the execution just reached is skipped: left out of the plan, or its
    /// binding fails when re-evaluated now.
    pub(super) async fn skips_reached(
        &self,
        exec: &Execution,
        at: Caller<'_>,
    ) -> Result<bool, FlowError> {
        let plan = self.plan(exec)?;
        if exec
            .planned
            .as_ref()
            .and_then(|p| p.get(exec.stage))
            .is_some_and(|kept| !kept)
        {
            return Ok(true);
        }
        let (Some(name), Some(b)) = (plan.stages.get(exec.stage), plan.bindings.get(exec.stage))
        else {
            return Ok(false);
        };
        if !b.re_evaluate_policies || b.binding.is_empty() {
            return Ok(false);
        }
        let facts = self.facts(plan, exec, at)?;
        Ok(!self.keeps(&plan.slug, name, b, true, &facts).await)
    }

    async fn keeps(
        &self,
        flow: &str,
        stage: &str,
        b: &StageBinding,
        now: bool,
        facts: &Facts,
    ) -> bool {
        if !now || b.binding.is_empty() {
            return true;
        }
        let verdict = self.judge(&b.binding, facts).await;
        if !verdict.passed {
            tracing::info!(flow, stage, outcomes = ?verdict.outcomes, "stage skipped by its policies");
        }
        verdict.passed
    }

    /// Every binding of flow `slug` judged by [`check_plan`] with this engine's judge and clock.
    ///
    /// # Errors
    /// [`FlowError::UnknownFlow`].
    pub async fn check(
        &self,
        slug: &str,
        user: Option<&User>,
        ip: &str,
    ) -> Result<PlanCheck, FlowError> {
        let plan = self
            .flow(slug)
            .ok_or_else(|| FlowError::UnknownFlow(slug.into()))?;
        Ok(check_plan(plan, self.services.policies.as_ref(), user, ip, self.now()).await)
    }
}

/// Every binding of `plan` judged for `user` from `ip` at `now`, as serving judges them at the
/// first step; bindings re-evaluated when their stage is reached are judged too, over what is
/// known now (the user; no prompt data yet). `reputation` policies count no failures here.
pub async fn check_plan(
    plan: &FlowPlan,
    judge: &dyn Judge,
    user: Option<&User>,
    ip: &str,
    now: i64,
) -> PlanCheck {
    let facts = Facts {
        user: user.map(user_facts),
        request: RequestFacts {
            ip: ip.to_string(),
            ..Default::default()
        },
        flow: flow_facts(plan),
        now,
        failures: Failures::default(),
    };
    let flow = judge.judge(&plan.policies, &facts).await;
    let mut stages = Vec::with_capacity(plan.stages.len());
    for (name, b) in plan.stages.iter().zip(&plan.bindings) {
        let verdict = if b.binding.is_empty() {
            None
        } else {
            Some(judge.judge(&b.binding, &facts).await)
        };
        stages.push(StageCheck {
            stage: name.clone(),
            on_plan: b.evaluate_on_plan,
            when_reached: b.re_evaluate_policies,
            verdict,
        });
    }
    PlanCheck { flow, stages }
}

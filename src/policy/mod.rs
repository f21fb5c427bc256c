//! Policies: named yes/no checks (`[policies.NAME]`) that decide who may start a flow and
//! which of its stages run. An `expression` policy is a CEL program compiled at config load;
//! a `network` policy matches the client address against CIDRs; a `password` policy judges a
//! prompt answer (static rules, zxcvbn, breached passwords). The flow engine asks through
//! the [`Judge`] port; [`Evaluator`] is the one implementation.

mod expression;
mod facts;
mod geoip;
mod password;

pub use expression::{Expression, MAX_EXPRESSION_BYTES};
pub use facts::{Facts, Failures, FlowFacts, RequestFacts, UserFacts};
pub use geoip::GeoIp;
pub use password::{
    sha1_upper_hex, BreachedList, PasswordRules, PasswordVerdict, TOO_WEAK, UNCHECKED,
};

use ipnet::IpNet;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

/// Request headers an expression may read as `request.headers` (lower-case names).
pub const POLICY_HEADERS: [&str; 3] = ["user-agent", "accept-language", "referer"];

/// What a policy is refused for at config load.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum PolicyError {
    /// The CEL source does not parse.
    #[error("does not parse: {0}")]
    Syntax(String),
    /// The program names a variable outside the documented context.
    #[error("unknown variable `{0}` (known: user, request, flow, time)")]
    UnknownVariable(String),
    /// The program is larger than the evaluation bound allows.
    #[error("too large: {0}")]
    TooLarge(String),
}

/// One configured policy.
#[derive(Debug)]
pub struct Policy {
    /// Its name under `[policies]`.
    pub name: String,
    /// Shown to the user when the policy fails (authentik's `ak_message`).
    pub message: Option<String>,
    /// What it checks.
    pub kind: PolicyKind,
}

/// What a policy checks.
#[derive(Debug)]
#[non_exhaustive]
pub enum PolicyKind {
    /// A CEL expression over [`Facts`] that must be `true`.
    Expression(Expression),
    /// The client address is in one of these networks.
    Network(Vec<IpNet>),
    /// A prompt answer meets these password rules.
    Password(PasswordRules),
    /// Fewer than `threshold` recent failed sign-ins from the client's address and/or for the
    /// account.
    Reputation {
        /// Count the address's failures.
        check_ip: bool,
        /// Count the account's failures.
        check_username: bool,
        /// The failures at which the policy fails.
        threshold: u32,
    },
}

/// How a binding's policies combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Every policy must pass (the default).
    #[default]
    All,
    /// One passing policy is enough.
    Any,
}

impl Mode {
    /// `"all"` or `"any"`.
    pub fn parse(s: &str) -> Option<Mode> {
        match s {
            "all" => Some(Mode::All),
            "any" => Some(Mode::Any),
            _ => None,
        }
    }
}

/// Policies bound to a flow or a stage, with how they combine.
#[derive(Debug, Clone, Default)]
pub struct Binding {
    /// The policies, in the configured order.
    pub policies: Vec<Arc<Policy>>,
    /// How their results combine.
    pub mode: Mode,
    /// Inverts the combined result (never an error: a policy that errors still denies).
    pub negate: bool,
}

impl Binding {
    /// Whether the binding has no policies (it always passes).
    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
    }
}

/// One policy's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It held.
    Pass,
    /// It did not hold.
    Fail,
    /// It could not be evaluated (a runtime error, a non-boolean result, the time bound); it
    /// denies whatever the binding's mode or negation.
    Error,
}

impl Outcome {
    /// `pass`, `fail` or `error`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Fail => "fail",
            Outcome::Error => "error",
        }
    }
}

/// A binding's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Whether the binding lets the user through.
    pub passed: bool,
    /// The messages of the policies that made it fail, to show the user.
    pub messages: Vec<String>,
    /// Each policy's outcome, by name, in order.
    pub outcomes: Vec<(String, Outcome)>,
}

/// What a refused user is told when no failing policy has a message.
pub const DENIED: &str = "Access denied.";

impl Verdict {
    /// Combines per-policy outcomes as `binding` says.
    pub fn combine(binding: &Binding, outcomes: Vec<(String, Outcome)>) -> Verdict {
        Self::combine_with_reasons(binding, outcomes, Vec::new())
    }

    /// As [`Verdict::combine`], with each policy's own reasons (in binding order; missing
    /// entries are none): a refusing policy shows its message, then its reasons; one that
    /// errored with a reason shows only the reason (the message may not fit the error).
    pub fn combine_with_reasons(
        binding: &Binding,
        outcomes: Vec<(String, Outcome)>,
        reasons: Vec<Vec<String>>,
    ) -> Verdict {
        if outcomes.is_empty() {
            return Verdict {
                passed: true,
                messages: Vec::new(),
                outcomes,
            };
        }
        let errored = outcomes.iter().any(|(_, o)| *o == Outcome::Error);
        let held = match binding.mode {
            Mode::All => outcomes.iter().all(|(_, o)| *o == Outcome::Pass),
            Mode::Any => outcomes.iter().any(|(_, o)| *o == Outcome::Pass),
        };
        let passed = !errored && (held != binding.negate);
        let mut messages = Vec::new();
        if !passed {
            let none = Vec::new();
            for (i, (policy, (_, o))) in binding.policies.iter().zip(&outcomes).enumerate() {
                // Negated, a passing policy is what refuses; otherwise a failing one is.
                let refusing = *o == Outcome::Error || ((*o == Outcome::Pass) == binding.negate);
                if !refusing {
                    continue;
                }
                let own = reasons.get(i).unwrap_or(&none);
                let message = policy
                    .message
                    .as_ref()
                    .filter(|_| *o != Outcome::Error || own.is_empty());
                // A negated binding refuses on a pass: the reasons of a pass explain nothing.
                let own = if *o == Outcome::Pass { &none } else { own };
                for m in message.into_iter().chain(own) {
                    if !messages.contains(m) {
                        messages.push(m.clone());
                    }
                }
            }
            if messages.is_empty() {
                messages.push(DENIED.into());
            }
        }
        Verdict {
            passed,
            messages,
            outcomes,
        }
    }
}

/// The port the flow engine evaluates bindings through.
#[async_trait::async_trait]
pub trait Judge: Send + Sync {
    /// Evaluates every policy of `binding` over `facts` and combines the outcomes.
    async fn judge(&self, binding: &Binding, facts: &Facts) -> Verdict;
}

/// Evaluates policies in process: for flows each expression on its own thread within a time
/// bound ([`Judge`]); for the access decision inline ([`Evaluator::judge_inline`]).
#[derive(Debug, Clone)]
pub struct Evaluator {
    limit: Duration,
    geoip: Option<Arc<GeoIp>>,
}

/// How long one expression may run before it counts as an error (and denies). Programs are
/// bounded at load (size, depth, nesting), so this is a backstop: generous enough that a busy
/// machine never denies a sound policy (50 ms did, in a debug build on two loaded cores).
pub const DEFAULT_TIME_LIMIT: Duration = Duration::from_secs(1);

impl Default for Evaluator {
    fn default() -> Self {
        Self::new(DEFAULT_TIME_LIMIT)
    }
}

impl Evaluator {
    /// An evaluator that gives each expression `limit` to finish.
    pub fn new(limit: Duration) -> Self {
        Self { limit, geoip: None }
    }

    /// This evaluator, looking `request.country` up in `geoip` (`""` without one).
    pub fn with_geoip(mut self, geoip: Option<Arc<GeoIp>>) -> Self {
        self.geoip = geoip;
        self
    }

    /// `request.country` for `e`: looked up only when `e` reads it and a database is set.
    fn country(&self, e: &Expression, facts: &Facts) -> String {
        match &self.geoip {
            Some(db) if e.reads_country() => db.country(&facts.request.ip),
            _ => String::new(),
        }
    }

    /// [`Judge::judge`] on the calling thread, for the access decision (policies bound to
    /// apps): every expression runs inline ([`Expression::evaluate_inline`] says why that is
    /// bounded). `password` and `reputation` policies are refused on apps at config load (no
    /// prompt answers; counters live in the store): here they error, and so deny.
    pub fn judge_inline(&self, binding: &Binding, facts: &Facts) -> Verdict {
        let outcomes = binding
            .policies
            .iter()
            .map(|p| (p.name.clone(), self.evaluate_inline(p, facts)))
            .collect();
        Verdict::combine(binding, outcomes)
    }

    fn evaluate_inline(&self, policy: &Policy, facts: &Facts) -> Outcome {
        match &policy.kind {
            PolicyKind::Network(nets) => network(&policy.name, nets, &facts.request.ip),
            PolicyKind::Expression(e) => {
                let country = self.country(e, facts);
                answer(&policy.name, e.evaluate_inline(facts, &country, self.limit))
            }
            PolicyKind::Password(_) | PolicyKind::Reputation { .. } => {
                tracing::warn!(policy = %policy.name, "this kind cannot be judged in the access decision; it denies");
                Outcome::Error
            }
        }
    }

    /// One policy's outcome. Errors are logged here, once, with the policy's name.
    pub async fn evaluate(&self, policy: &Policy, facts: &Facts) -> Outcome {
        self.assess(policy, facts).await.0
    }

    /// One policy's outcome with its reasons for the user (a password policy says which check
    /// failed; other kinds have none beyond their message).
    async fn assess(&self, policy: &Policy, facts: &Facts) -> (Outcome, Vec<String>) {
        let outcome = match &policy.kind {
            PolicyKind::Network(nets) => network(&policy.name, nets, &facts.request.ip),
            PolicyKind::Reputation {
                check_ip,
                check_username,
                threshold,
            } => {
                let f = facts.failures;
                if (*check_ip && f.ip >= *threshold) || (*check_username && f.user >= *threshold) {
                    Outcome::Fail
                } else {
                    Outcome::Pass
                }
            }
            PolicyKind::Password(rules) => return password(policy, rules, facts).await,
            PolicyKind::Expression(e) => {
                let country = self.country(e, facts);
                answer(&policy.name, e.evaluate(facts, &country, self.limit).await)
            }
        };
        (outcome, Vec::new())
    }
}

/// An expression's answer as an outcome; an error is logged here, once, with the name.
fn answer(name: &str, result: Result<bool, String>) -> Outcome {
    match result {
        Ok(true) => Outcome::Pass,
        Ok(false) => Outcome::Fail,
        Err(why) => {
            tracing::warn!(policy = %name, error = %why, "policy could not be evaluated; it denies");
            Outcome::Error
        }
    }
}

/// A password policy over its prompt answer, on the blocking pool (zxcvbn takes milliseconds,
/// the breached-password check reads a file). zxcvbn is told the user's username, name and
/// email (and their words), from the account or, before there is one, from the prompt's
/// answers.
async fn password(policy: &Policy, rules: &PasswordRules, facts: &Facts) -> (Outcome, Vec<String>) {
    let Some(pw) = facts.flow.prompt_data.get(&rules.field) else {
        return (Outcome::Fail, Vec::new());
    };
    let mut inputs: Vec<String> = Vec::new();
    if let Some(u) = &facts.user {
        inputs.extend([u.username.clone(), u.name.clone(), u.email.clone()]);
    }
    for key in ["username", "name", "email"] {
        inputs.extend(facts.flow.prompt_data.get(key).cloned());
    }
    // zxcvbn matches each input as one token: the name's words and the address's local part
    // (and its pieces) are tokens too, so `Jane.Doe` counts as the user's own name.
    let whole = std::mem::take(&mut inputs);
    for i in whole {
        let local = i.split('@').next().unwrap_or_default().to_string();
        inputs.extend(
            local
                .split(|c: char| c.is_whitespace() || matches!(c, '.' | '_' | '-' | '+'))
                .filter(|w| w.chars().count() >= 3)
                .map(str::to_string),
        );
        inputs.push(local);
        inputs.push(i);
    }
    inputs.retain(|i| !i.is_empty());
    inputs.sort();
    inputs.dedup();
    let (rules, pw, has_message) = (rules.clone(), pw.clone(), policy.message.is_some());
    let verdict = tokio::task::spawn_blocking(move || {
        let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        rules.check(&pw, &inputs, has_message)
    })
    .await;
    match verdict {
        Ok(PasswordVerdict::Pass) => (Outcome::Pass, Vec::new()),
        Ok(PasswordVerdict::Fail(reasons)) => (Outcome::Fail, reasons),
        Ok(PasswordVerdict::Unchecked(why)) => {
            tracing::warn!(policy = %policy.name, "password policy could not check the password; it denies");
            (Outcome::Error, vec![why])
        }
        Err(e) => {
            tracing::warn!(policy = %policy.name, error = %e, "password policy check failed; it denies");
            (Outcome::Error, Vec::new())
        }
    }
}

#[async_trait::async_trait]
impl Judge for Evaluator {
    async fn judge(&self, binding: &Binding, facts: &Facts) -> Verdict {
        let mut outcomes = Vec::with_capacity(binding.policies.len());
        let mut reasons = Vec::with_capacity(binding.policies.len());
        for p in &binding.policies {
            let (outcome, why) = self.assess(p, facts).await;
            outcomes.push((p.name.clone(), outcome));
            reasons.push(why);
        }
        Verdict::combine_with_reasons(binding, outcomes, reasons)
    }
}

fn network(name: &str, nets: &[IpNet], ip: &str) -> Outcome {
    let Ok(ip) = ip.parse::<IpAddr>() else {
        tracing::warn!(policy = %name, "client address is not an IP address; the network policy denies");
        return Outcome::Error;
    };
    // An IPv4 client seen through an IPv6 socket (::ffff:a.b.c.d) is matched as IPv4.
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    if nets.iter().any(|n| n.contains(&ip)) {
        Outcome::Pass
    } else {
        Outcome::Fail
    }
}

#[cfg(test)]
mod tests;

//! The one access decision. The proxy and every forward-auth transport ask this; none of them
//! has rules of its own.

use crate::config::{AppConfig, Config, Policy, PublicOrigin, Rule, RuleInput};
use crate::policy::{Evaluator, Facts, FlowFacts, RequestFacts, UserFacts};
use crate::session::{cookie, Claims, Factors, Requirement, SessionService};
use http::{HeaderMap, Method};
use std::borrow::Cow;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

/// The request being judged, as the transport reconstructed it.
pub struct AccessRequest<'a> {
    /// Method of the original request (a `GET` page load is redirected, an API call gets 401).
    pub method: &'a Method,
    /// Scheme of the original request: `http` or `https`.
    pub scheme: &'a str,
    /// Host as sent, possibly with a port (`app.test:9000`).
    pub authority: &'a str,
    /// Path without the query, matched against the app's bypass rules.
    pub path: &'a str,
    /// Path plus query, for the return address.
    pub path_and_query: &'a str,
    /// Headers of the original request: the session cookie and `Accept` are read from them.
    pub headers: &'a HeaderMap,
    /// The client address the gateway trusts (the socket's peer, or what a trusted proxy
    /// says; see `forwarded`), for rules with `networks`. `None` when unknown: such rules then
    /// do not match.
    pub client: Option<IpAddr>,
}

/// The verdict. Every variant but [`Decision::UnknownHost`] names the app the host belongs to;
/// `claims` is the verified session, `login` the sign-in URL (returning to the request), and
/// `navigation` whether to redirect there (a browser page load) rather than answer 401.
#[derive(Debug)]
pub enum Decision<'a> {
    /// No app serves this host: answer 404, never forward.
    UnknownHost,
    /// The path is public for this app: forward without identity.
    Bypass {
        /// The app the host belongs to.
        app: &'a AppConfig,
    },
    /// Signed in and allowed.
    Allow {
        /// The app the host belongs to.
        app: &'a AppConfig,
        /// The verified session, for the identity headers.
        claims: Arc<Claims>,
    },
    /// Not signed in. `navigation` says whether to redirect (a browser page load) or answer 401.
    Unauthenticated {
        /// The app the host belongs to.
        app: &'a AppConfig,
        /// Where to sign in, returning to this request.
        login: String,
        /// A browser page load: redirect to `login` rather than answer 401.
        navigation: bool,
    },
    /// A `deny` rule (or `default_policy = "deny"`) matched: 403, signed in or not.
    Denied {
        /// The app the host belongs to.
        app: &'a AppConfig,
        /// The verified session, when the request carried one (to name who is signed in).
        claims: Option<Arc<Claims>>,
    },
    /// Signed in and otherwise let in, but the app's `policies` refuse: 403, showing
    /// `messages` (the failing policies' `message`s, or `Access denied.`).
    Refused {
        /// The app the host belongs to.
        app: &'a AppConfig,
        /// The verified session, for the page naming who is signed in.
        claims: Arc<Claims>,
        /// What to tell the user.
        messages: Vec<String>,
    },
    /// Signed in, but not in the app's allowed groups.
    Forbidden {
        /// The app the host belongs to.
        app: &'a AppConfig,
        /// The verified session, for the page naming who is signed in.
        claims: Arc<Claims>,
    },
    /// Signed in, but the session lacks a factor the app's flow requires: send the user to the
    /// app's flow (`login`), which asks only for what is missing. Answered like
    /// [`Decision::Unauthenticated`] (redirect or 401), with its own error for API calls.
    StepUp {
        /// The app the host belongs to.
        app: &'a AppConfig,
        /// The verified session that falls short.
        claims: Arc<Claims>,
        /// Where to complete the app's flow, returning to this request.
        login: String,
        /// A browser page load: redirect to `login` rather than answer 401.
        navigation: bool,
    },
}

/// Which rule decided, for `portcullis access check` and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Matched {
    /// No app serves the host.
    NoApp,
    /// One of the app's `bypass` patterns (the shorthand for bypass rules placed first).
    BypassKey,
    /// `rules[i]` of the app.
    Rule(usize),
    /// No rule matched: the app's `default_policy`.
    Default,
}

/// What a session would have to add to be let in (empty when it is let in, or refused
/// outright).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wanted {
    /// A sign-in through the app's flow.
    SignIn,
    /// The factors of the app's flow the session lacks.
    FlowFactors(Factors),
    /// A second distinct factor (`two_factor`).
    SecondFactor,
    /// These factor classes (a rule's `factors`).
    Factors(Factors),
    /// A sign-in no older than this (a rule's `max_age`): the flow's factors asked again.
    Fresh(Duration),
    /// Membership of one of the app's `allowed_groups` (nothing a sign-in can give).
    Group,
}

/// A decision with what led to it.
#[derive(Debug)]
pub struct Verdict<'a> {
    /// The decision itself, as [`Gate::decide`] returns it.
    pub decision: Decision<'a>,
    /// The rule that decided.
    pub matched: Matched,
    /// What the session lacks (for `StepUp`, `Unauthenticated` and `Forbidden`).
    pub wanted: Vec<Wanted>,
    /// The verdict of the app's `policies`, when they were judged (a session otherwise let
    /// in); `None` when the app binds none or the decision came before them.
    pub policies: Option<crate::policy::Verdict>,
}

/// What a rule asks of a session beyond a sign-in, prepared once.
#[derive(Debug, Clone, Default)]
struct Needs {
    /// A rule's `factors`, all of them.
    factors: Factors,
    /// A rule's `max_age`, in milliseconds.
    max_age_ms: Option<i64>,
}

/// Holds what the decision needs, prepared once.
pub struct Gate {
    config: Arc<Config>,
    by_host: HashMap<String, usize>,
    sessions: Arc<SessionService>,
    /// Per app (by [`AppConfig::index`]), what its flow requires of a session.
    requirements: Vec<Requirement>,
    /// Per app, per rule, its `factors` and `max_age` as bits and milliseconds.
    needs: Vec<Vec<Needs>>,
    /// Per flow slug, the shortest `max_age` (ms) of a rule of an app that flow signs in.
    fresh_within: HashMap<String, i64>,
    /// Judges apps' `policies`, inline.
    evaluator: Evaluator,
}

impl Gate {
    /// Indexes the apps by host and works out what each app's flow requires of a session.
    pub fn new(config: Arc<Config>, sessions: Arc<SessionService>) -> Self {
        let by_host = config
            .apps
            .iter()
            .enumerate()
            .flat_map(|(i, a)| a.hosts.iter().map(move |h| (h.clone(), i)))
            .collect();
        let requirements = config
            .apps
            .iter()
            .map(|a| {
                let stages = config.flows.iter().find(|f| f.slug == a.flow);
                stages.map_or_else(Requirement::default, |f| {
                    Requirement::of_flow(&f.stages, &config.stages)
                })
            })
            .collect();
        let needs: Vec<Vec<Needs>> = config
            .apps
            .iter()
            .map(|a| a.access.rules.iter().map(needs_of).collect())
            .collect();
        let mut fresh_within: HashMap<String, i64> = HashMap::new();
        for (app, needs) in config.apps.iter().zip(&needs) {
            for ms in needs.iter().filter_map(|n: &Needs| n.max_age_ms) {
                let e = fresh_within.entry(app.flow.clone()).or_insert(ms);
                *e = (*e).min(ms);
            }
        }
        let evaluator = Evaluator::default().with_geoip(config.geoip.clone());
        Self {
            config,
            by_host,
            sessions,
            requirements,
            needs,
            fresh_within,
            evaluator,
        }
    }

    /// The validated config the gate was built from.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The session service that verifies cookies.
    pub(crate) fn sessions(&self) -> &SessionService {
        &self.sessions
    }

    /// The app for a host (with or without port).
    pub(crate) fn app(&self, authority: &str) -> Option<&AppConfig> {
        let host = host_of(authority);
        let idx = if host.bytes().any(|b| b.is_ascii_uppercase()) {
            self.by_host.get(&host.to_ascii_lowercase())
        } else {
            self.by_host.get(host)
        };
        idx.map(|&i| &self.config.apps[i])
    }

    /// The verified session carried by these headers, if any.
    pub fn session(&self, headers: &HeaderMap) -> Option<Arc<Claims>> {
        let token = cookie::find(headers, &self.config.session.cookie_name)?;
        match self.sessions.verify(token) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::debug!(reason = %e, "session cookie refused");
                None
            }
        }
    }

    /// The verdict on `req`: unknown host; else the app's `bypass` patterns, then its
    /// `[[apps.rules]]` in order (the first that matches decides), then its `default_policy`.
    /// A policy that needs a session then asks, in order: a valid session, the app's
    /// `allowed_groups`, the app's flow's factors, a second factor (`two_factor`), the rule's
    /// `factors`, its `max_age`, and last the app's `policies` (judged inline, see
    /// [`Gate::app_policies`]).
    ///
    /// # Security
    /// This is the only access rule: the proxy and every forward-auth transport act on its
    /// answer and must not forward on anything but [`Decision::Allow`] or
    /// [`Decision::Bypass`]. The caller builds `req` from the original request, and only
    /// from headers of a trusted proxy when the request came through one. Rules are matched
    /// on the normalised path ([`judged_path`]) and a `bypass` never applies to a path that is
    /// not plain ([`is_plain_path`]).
    pub fn decide<'s>(&'s self, req: &AccessRequest<'_>) -> Decision<'s> {
        let started = std::time::Instant::now();
        let decision = self.judge(req, || self.session(req.headers)).decision;
        crate::metrics::access_decision(started.elapsed());
        decision
    }

    /// [`Gate::decide`] with the rule that decided and what the session lacks, the session
    /// coming from `session` (called at most once, only when a rule needs it).
    /// `portcullis access check` calls this with the session a user would have.
    pub fn judge<'s>(
        &'s self,
        req: &AccessRequest<'_>,
        session: impl FnOnce() -> Option<Arc<Claims>>,
    ) -> Verdict<'s> {
        let mut session = Lazy::new(session);
        let Some(app) = self.app(req.authority) else {
            return verdict(Decision::UnknownHost, Matched::NoApp);
        };
        // Only a bypass needs to know (an app with neither bypass nor rules skips the scan).
        let rules = &app.access;
        let plain = (!app.bypass.is_empty()
            || !rules.rules.is_empty()
            || rules.default_policy == Policy::Bypass)
            && is_plain_path(req.path);
        if !app.bypass.is_empty() && plain && app.bypass.is_match(req.path) {
            return verdict(Decision::Bypass { app }, Matched::BypassKey);
        }
        if !rules.rules.is_empty() {
            // A plain path without escapes is its own normal form: no second scan.
            let path = if plain && !req.path.contains('%') {
                Cow::Borrowed(req.path)
            } else {
                judged_path(req.path)
            };
            let host = host_of(req.authority);
            let host: Cow<'_, str> = if host.bytes().any(|b| b.is_ascii_uppercase()) {
                Cow::Owned(host.to_ascii_lowercase())
            } else {
                Cow::Borrowed(host)
            };
            let input = RuleInput {
                host: &host,
                path: &path,
                plain,
                method: req.method,
                client: req.client,
            };
            let mut query = None;
            // Only the rules the path can match, in file order: the index narrows by the
            // rules' literal path starts, every criterion is still checked below.
            let candidates = rules.index.as_ref().map(|i| i.candidates(&path));
            let considered = rules
                .rules
                .iter()
                .enumerate()
                .filter(|(j, _)| candidates.as_ref().is_none_or(|c| c.contains(*j)));
            for (j, rule) in considered {
                if !rule.matches_request(&input) {
                    continue;
                }
                if !rule.query.is_empty()
                    && !rule.matches_query(query.get_or_insert_with(|| query_pairs(req)))
                {
                    continue;
                }
                if !rule.subject.is_empty() {
                    let Some(claims) = session.get() else {
                        // Who the user is decides whether the rule applies: sign in first.
                        return self.unauthenticated(app, req, Matched::Rule(j));
                    };
                    if !rule.matches_subject(&claims.sub, &claims.groups) {
                        continue;
                    }
                }
                let needs = self.needs.get(app.index).and_then(|n| n.get(j));
                return self.apply(
                    app,
                    req,
                    rule.policy,
                    needs,
                    plain,
                    Matched::Rule(j),
                    &mut session,
                );
            }
        }
        self.apply(
            app,
            req,
            rules.default_policy,
            None,
            plain,
            Matched::Default,
            &mut session,
        )
    }

    /// The answer of `policy` (with a rule's `needs`) for this request.
    #[allow(clippy::too_many_arguments)]
    fn apply<'s, F: FnOnce() -> Option<Arc<Claims>>>(
        &'s self,
        app: &'s AppConfig,
        req: &AccessRequest<'_>,
        policy: Policy,
        needs: Option<&Needs>,
        plain: bool,
        matched: Matched,
        session: &mut Lazy<F>,
    ) -> Verdict<'s> {
        match policy {
            // Only reached with a plain path from a rule; a `default_policy = "bypass"` is
            // never applied to a bent path, which is then judged as `one_factor`.
            Policy::Bypass if plain => return verdict(Decision::Bypass { app }, matched),
            Policy::Deny => {
                let claims = session.get();
                return verdict(Decision::Denied { app, claims }, matched);
            }
            Policy::Bypass | Policy::OneFactor | Policy::TwoFactor => {}
        }
        let Some(claims) = session.get() else {
            return self.unauthenticated(app, req, matched);
        };
        if !app.allowed_groups.is_empty() && !claims.in_any_group(&app.allowed_groups) {
            return Verdict {
                decision: Decision::Forbidden { app, claims },
                matched,
                wanted: vec![Wanted::Group],
                policies: None,
            };
        }
        let mut wanted = Vec::new();
        let have = claims.proved();
        if !self.satisfies(app, &claims) {
            let missing = self
                .requirements
                .get(app.index)
                .map_or(Factors::NONE, |r| r.missing(have));
            wanted.push(Wanted::FlowFactors(missing));
        }
        if policy == Policy::TwoFactor && have.names().count() < 2 {
            wanted.push(Wanted::SecondFactor);
        }
        if let Some(n) = needs {
            // A user-verified passkey stands in for the password, as at the flow's password
            // stage (which a passkey session skips): a rule naming `password` would otherwise
            // send such a session round between the app and its flow.
            let have = if have.meets(Factors::PASSKEY) {
                have.with(Factors::PASSWORD)
            } else {
                have
            };
            if !have.contains(n.factors) {
                wanted.push(Wanted::Factors(n.factors));
            }
            if let Some(max) = n.max_age_ms {
                let age = self.sessions.now_ms().saturating_sub(claims.issued_ms());
                if age > max {
                    let ms = u64::try_from(max).unwrap_or_default();
                    wanted.push(Wanted::Fresh(Duration::from_millis(ms)));
                }
            }
        }
        if wanted.is_empty() {
            let Some(judged) = self.app_policies(app, req, &claims) else {
                return verdict(Decision::Allow { app, claims }, matched);
            };
            let decision = if judged.passed {
                Decision::Allow { app, claims }
            } else {
                Decision::Refused {
                    app,
                    claims,
                    messages: judged.messages.clone(),
                }
            };
            return Verdict {
                decision,
                matched,
                wanted: Vec::new(),
                policies: Some(judged),
            };
        }
        Verdict {
            decision: Decision::StepUp {
                app,
                login: self.login_url(app, req),
                navigation: is_navigation(req.method, req.headers),
                claims,
            },
            matched,
            wanted,
            policies: None,
        }
    }

    /// The verdict of `app`'s `policies` on this request by this session; `None` when the app
    /// binds none (then nothing is built or run).
    ///
    /// # Security
    /// Runs on the request's own thread, off disk: expressions inline within the load-time
    /// bounds ([`crate::policy::Expression::evaluate_inline`]), networks against the client
    /// address the gateway trusts, the country from the in-memory `[geoip]` database and only
    /// for expressions that read it; kinds that need the store are refused on apps at load.
    /// `request.path` is the normalised path rules match, so a bent spelling cannot slip past
    /// a policy on the path. A policy that errors denies.
    pub fn app_policies(
        &self,
        app: &AppConfig,
        req: &AccessRequest<'_>,
        claims: &Claims,
    ) -> Option<crate::policy::Verdict> {
        if app.policies.is_empty() {
            return None;
        }
        let facts = self.facts(app, req, claims);
        let judged = self.evaluator.judge_inline(&app.policies, &facts);
        if !judged.passed {
            tracing::info!(user = %claims.sub, app = %app.name, outcomes = ?judged.outcomes, "access refused by the app's policies");
        }
        Some(judged)
    }

    /// What an app's policies see of a request by a signed-in user.
    fn facts(&self, app: &AppConfig, req: &AccessRequest<'_>, claims: &Claims) -> Facts {
        let flow = self.config.flow(&app.flow);
        Facts {
            user: Some(UserFacts {
                username: claims.sub.clone(),
                name: claims.name.clone(),
                email: claims.email.clone(),
                groups: claims.groups.clone(),
                attributes: Default::default(),
                is_active: true,
            }),
            request: RequestFacts {
                ip: req.client.map(|ip| ip.to_string()).unwrap_or_default(),
                host: host_of(req.authority).to_ascii_lowercase(),
                path: judged_path(req.path).into_owned(),
                method: req.method.as_str().to_string(),
                headers: crate::policy::POLICY_HEADERS
                    .iter()
                    .filter_map(|h| {
                        let v = req.headers.get(*h)?.to_str().ok()?;
                        Some((h.to_string(), v.to_string()))
                    })
                    .collect(),
            },
            flow: FlowFacts {
                slug: app.flow.clone(),
                designation: flow.map_or("", |f| f.designation.as_str()).to_string(),
                prompt_data: Default::default(),
                stages_passed: claims.amr.clone(),
            },
            now: self.sessions.now_ms().div_euclid(1000),
            failures: Default::default(),
        }
    }

    fn unauthenticated<'s>(
        &'s self,
        app: &'s AppConfig,
        req: &AccessRequest<'_>,
        matched: Matched,
    ) -> Verdict<'s> {
        Verdict {
            decision: Decision::Unauthenticated {
                app,
                login: self.login_url(app, req),
                navigation: is_navigation(req.method, req.headers),
            },
            matched,
            wanted: vec![Wanted::SignIn],
            policies: None,
        }
    }

    /// When a signed-in user starts flow `slug`, whether that is a re-authentication: the
    /// session already satisfies every stage of the flow that proves a factor, and it is
    /// older than the shortest `max_age` of a rule of an app signed in by this flow (what sent
    /// it back). Returns the session as a re-authentication carries it: the identity and the
    /// stages that prove nothing (identification, prompts), no factor; `None` when the
    /// step-up carries the session whole (as it always does for flows no `max_age` names).
    ///
    /// # Security
    /// Without this, a stale session could refresh itself through a step-up that proves
    /// nothing and mints a new token (a new `iat`), defeating every `max_age`.
    pub(crate) fn reauthentication(&self, slug: &str, claims: &Claims) -> Option<Claims> {
        let within = *self.fresh_within.get(slug)?;
        if self.sessions.now_ms().saturating_sub(claims.issued_ms()) <= within {
            return None;
        }
        let flow = self.config.flow(slug)?;
        let requirement = Requirement::of_flow(&flow.stages, &self.config.stages);
        if !requirement.met_by(claims.proved()) {
            return None;
        }
        Some(Self::bare(claims))
    }

    /// The session as a re-authentication carries it: the identity and the stages that prove
    /// nothing (identification, prompts), no factor, so every factor of the flow is asked.
    pub(crate) fn bare(claims: &Claims) -> Claims {
        let mut bare = Claims {
            identity: Default::default(),
            proof: Default::default(),
            ..claims.clone()
        };
        bare.factors.clear();
        bare.amr
            .retain(|k| matches!(k.as_str(), "identification" | "prompt"));
        bare
    }

    /// The flow that confirms a settings change for a request on `authority`:
    /// `[settings] reauthentication_flow`, else the app's flow, else the first app's.
    pub(crate) fn reauthentication_flow(&self, authority: &str) -> Option<&str> {
        let cfg = &self.config;
        cfg.settings
            .reauthentication_flow
            .as_deref()
            .or_else(|| self.app(authority).map(|a| a.flow.as_str()))
            .or_else(|| cfg.apps.first().map(|a| a.flow.as_str()))
    }

    /// Whether a session is recent enough to remove a factor (`[settings] max_age`).
    pub(crate) fn fresh_for_settings(&self, claims: &Claims) -> bool {
        let max = i64::try_from(self.config.settings.max_age.as_millis()).unwrap_or(i64::MAX);
        self.sessions.now_ms().saturating_sub(claims.issued_ms()) <= max
    }

    /// Whether a session may use `app`: it completed the app's flow, or proves a factor for
    /// every stage of that flow that asks for one. Two bit tests (the session's factor bits are
    /// built once per token), then at worst a few string compares; nothing allocated.
    ///
    /// # Security
    /// A session is only as good as the flow that made it: without this, a password-only
    /// sign-in on one app's host would open an app whose flow also asks for a code.
    pub(crate) fn satisfies(&self, app: &AppConfig, claims: &Claims) -> bool {
        self.requirements
            .get(app.index)
            .is_some_and(|r| r.met_by(claims.proved()))
            || claims.completed(&app.flow)
    }

    /// Where to sign in to reach this request: the app's flow, returning to the request. On
    /// the auth host when one is configured (single sign-on), else on the request's own host
    /// as a path.
    ///
    /// # Security
    /// Both the auth host's address and the return address (`rd`) are built from the
    /// configured public origins; the request contributes only its path and which of the
    /// app's configured hosts it named, so no `Host` header (or port in it) shapes the link.
    /// A request address longer than a sign-in keeps ([`crate::redirect::MAX_RD_BYTES`]) returns
    /// to the app's root instead, so the user signs in rather than meeting the flow's `400`.
    pub(crate) fn login_url(&self, app: &AppConfig, req: &AccessRequest<'_>) -> String {
        let mut original = format!("{}{}", request_origin(app, req), req.path_and_query);
        if original.len() > crate::redirect::MAX_RD_BYTES {
            original = format!("{}/", request_origin(app, req));
        }
        let path = format!(
            "/.portcullis/flow/{}?rd={}",
            app.flow,
            percent_encoding::utf8_percent_encode(&original, percent_encoding::NON_ALPHANUMERIC)
        );
        match &self.config.server.auth_url {
            Some(auth) => format!("{auth}{path}"),
            None => path,
        }
    }

    /// [`Gate::login_url`] as an absolute URL, for answers read by another proxy.
    pub(crate) fn login_url_absolute(&self, app: &AppConfig, req: &AccessRequest<'_>) -> String {
        let url = self.login_url(app, req);
        if url.starts_with('/') {
            format!("{}{url}", request_origin(app, req))
        } else {
            url
        }
    }

    /// Whether `authority` names the configured auth host.
    pub(crate) fn is_auth_host(&self, authority: &str) -> bool {
        self.config
            .server
            .auth_host
            .as_deref()
            .is_some_and(|h| h.eq_ignore_ascii_case(host_of(authority)))
    }

    /// The configured public origin of the host `authority` names (an app host or the auth
    /// host; any port in `authority` is ignored), or `None` for a host that is not ours.
    pub(crate) fn public_origin(&self, authority: &str) -> Option<&PublicOrigin> {
        if self.is_auth_host(authority) {
            return self.config.server.auth_url.as_ref();
        }
        let host = host_of(authority).to_ascii_lowercase();
        self.app(authority)?.origin_for(&host)
    }
}

/// A verdict with nothing wanted.
fn verdict(decision: Decision<'_>, matched: Matched) -> Verdict<'_> {
    Verdict {
        decision,
        matched,
        wanted: Vec::new(),
        policies: None,
    }
}

fn needs_of(rule: &Rule) -> Needs {
    Needs {
        factors: rule
            .factors
            .iter()
            .filter_map(|f| Factors::named(f))
            .fold(Factors::NONE, Factors::with),
        max_age_ms: rule
            .max_age
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
    }
}

/// A value computed on first use, at most once.
struct Lazy<F: FnOnce() -> Option<Arc<Claims>>> {
    make: Option<F>,
    value: Option<Arc<Claims>>,
}

impl<F: FnOnce() -> Option<Arc<Claims>>> Lazy<F> {
    fn new(make: F) -> Self {
        Self {
            make: Some(make),
            value: None,
        }
    }

    fn get(&mut self) -> Option<Arc<Claims>> {
        if let Some(make) = self.make.take() {
            self.value = make();
        }
        self.value.clone()
    }
}

/// The query's pairs, form-decoded (`a=1&b=x%20y`).
fn query_pairs(req: &AccessRequest<'_>) -> Vec<(String, String)> {
    let query = req.path_and_query.split_once('?').map_or("", |(_, q)| q);
    url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect()
}

/// The path rules are matched against: the path as sent when it is plain and has no
/// percent-escape (no copy), else
/// the path as an upstream that decodes and resolves it would read it: percent-escapes
/// decoded once, `\` read as `/`, `;` parameters and anything after `#` or a NUL dropped,
/// empty and `.` segments removed, `..` resolved.
///
/// # Security
/// A rule such as `^/admin` must catch `/x/../admin`, `/%61dmin` (plain, yet `/admin` to
/// every upstream) and `//admin` too, or a
/// bent spelling would fall through to a weaker rule. Bypass rules never see such a path
/// (see [`is_plain_path`]).
pub(crate) fn judged_path(path: &str) -> Cow<'_, str> {
    if !path.contains('%') && is_plain_path(path) {
        return Cow::Borrowed(path);
    }
    let b = path.as_bytes();
    let mut decoded = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let c = match b[i] {
            b'%' => match (
                b.get(i + 1).copied().and_then(hex),
                b.get(i + 2).copied().and_then(hex),
            ) {
                (Some(h), Some(l)) => {
                    i += 2;
                    h << 4 | l
                }
                _ => b'%',
            },
            c => c,
        };
        i += 1;
        match c {
            b'#' | 0 => break,
            b'\\' => decoded.push(b'/'),
            c => decoded.push(c),
        }
    }
    let text = String::from_utf8_lossy(&decoded);
    let mut segments: Vec<&str> = Vec::new();
    for seg in text.split('/') {
        let seg = seg.split(';').next().unwrap_or_default();
        match seg {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut out = String::with_capacity(text.len() + 1);
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    if out.is_empty() || text.ends_with('/') {
        out.push('/');
    }
    Cow::Owned(out)
}

/// The configured origin of the app host the request named, or the app's first one.
fn request_origin<'a>(app: &'a AppConfig, req: &AccessRequest<'_>) -> &'a PublicOrigin {
    app.origin_for(&host_of(req.authority).to_ascii_lowercase())
        .unwrap_or_else(|| app.origin())
}

/// The host part of an authority, without port or IPv6 brackets' port.
pub(crate) fn host_of(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    authority.split(':').next().unwrap_or(authority)
}

/// Whether a Host header (or HTTP/2 authority) is a plain `host[:port]`: a domain name or IP
/// literal in canonical form, no userinfo, a numeric port.
///
/// # Security
/// The authority becomes part of URLs the gateway hands out (the sign-in redirect, magic
/// links in email, the fallback after sign-in). A loosely read one such as
/// `app.test:1@evil.example` would route to `app.test` yet point those URLs at another host,
/// so anything else is refused before it is used.
pub(crate) fn is_plain_authority(authority: &str) -> bool {
    if authority.is_empty() || authority.len() > 255 {
        return false;
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p))
            if !h.is_empty() && !p.contains(']') && (!h.contains(':') || h.ends_with(']')) =>
        {
            (h, Some(p))
        }
        _ => (authority, None),
    };
    if port.is_some_and(|p| {
        p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) || p.parse::<u16>().is_err()
    }) {
        return false;
    }
    is_simple_domain(host) || parses_as_plain_host(host)
}

/// The full check of a host (without port): an IPv6 literal in brackets, or what
/// `url::Host::parse` reads back as written (no normalising of IPv4 forms, no IDNA change).
fn parses_as_plain_host(host: &str) -> bool {
    match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => v6.parse::<std::net::Ipv6Addr>().is_ok(),
        None => url::Host::parse(host).is_ok_and(|h| {
            !matches!(h, url::Host::Ipv6(_)) && h.to_string().eq_ignore_ascii_case(host)
        }),
    }
}

/// A host name every request for an app carries (`app.example.com`): ASCII letters, digits,
/// `-` and `.` in non-empty labels, no punycode label, and a last label that is not a number
/// (which the URL standard would read as an IPv4 address). `url::Host::parse` accepts each
/// such name as written, so [`is_plain_authority`] answers it without parsing (the parse
/// allocates twice; this runs on every request).
fn is_simple_domain(host: &str) -> bool {
    let name = host.strip_suffix('.').unwrap_or(host);
    let Some(last) = name.rsplit('.').next() else {
        return false;
    };
    !name.is_empty()
        && name
            .split('.')
            .all(|l| !l.is_empty() && !l.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("xn--")))
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        && !last.bytes().all(|b| b.is_ascii_digit())
        && !last.get(..2).is_some_and(|p| p.eq_ignore_ascii_case("0x"))
}

/// Whether `path` is plain enough for a `bypass` rule to be applied to it: an origin-form
/// path that every upstream reads the same way, so the text the rule matches is the resource
/// the upstream serves. Such a path starts with `/` and has
///
/// - no empty segment (`//`): nginx (`merge_slashes`) and others merge them, URL parsers keep
///   them, so `/public//../secret` is `/secret` to one and `/public/secret` to the other;
/// - no `.` or `..` segment: browsers resolve them before sending, so only crafted requests
///   carry one, and upstreams differ in what they resolve them against;
/// - no backslash, `;`, `#` or control byte (NUL included): a separator on some servers
///   (Windows, IIS), a path parameter on others (Tomcat, Spring: `/public/..;/secret`), the end
///   of the path or of the string on yet others;
/// - no percent-encoding of `/`, `\`, `.`, `%`, `;`, `?`, `#`, a control byte, or the
///   overlong UTF-8 lead bytes `0xC0`/`0xC1`, and no malformed `%`: nginx decodes `%2F` into
///   a separator before it resolves `..`, some stacks decode twice or split a decoded path at
///   `?`, old ones read `%c0%af` as `/`.
///
/// Any other percent-encoding (`%20`, `%C3%A9`) decodes to a character that is neither a
/// separator nor a dot, so it cannot move the path to another directory; rules match the path
/// as sent, without decoding.
///
/// # Security
/// A path that is not plain is never granted by a `bypass` rule: it is judged as protected
/// (sign-in, `allowed_groups`), not refused with `400`. Refusing would break signed-in users
/// of apps that use such paths on purpose (`%2F` inside a project name, `;jsessionid=`), and
/// it buys nothing: what matters is only that no anonymous request reaches a protected
/// resource by spelling its path so that the rule reads it as public. This runs in
/// [`Gate::decide`], so the proxy and every forward-auth transport share it. One pass over the
/// bytes, no allocation.
pub(crate) fn is_plain_path(path: &str) -> bool {
    let b = path.as_bytes();
    if b.first() != Some(&b'/') {
        return false;
    }
    // Start of the current segment (just after its `/`).
    let mut seg = 1;
    let mut i = 1;
    // The byte the previous `%XX` decoded to, while `%XX`s follow each other.
    let mut lead = 0u8;
    while i < b.len() {
        match b[i] {
            b'/' => {
                if !is_plain_segment(&b[seg..i]) || i == seg {
                    return false;
                }
                seg = i + 1;
            }
            b'%' => {
                let decoded = match (b.get(i + 1), b.get(i + 2)) {
                    (Some(&h), Some(&l)) => hex(h).zip(hex(l)).map(|(h, l)| h << 4 | l),
                    _ => None,
                };
                match decoded {
                    Some(d) if !is_bendable_byte(d) && !is_overlong(lead, d) => {
                        lead = d;
                        i += 2;
                    }
                    _ => return false,
                }
                i += 1;
                continue;
            }
            b'\\' | b';' | b'#' => return false,
            c if c.is_ascii_control() => return false,
            _ => {}
        }
        lead = 0;
        i += 1;
    }
    // The last segment may be empty (`/public/`), not a dot segment.
    is_plain_segment(&b[seg..])
}

/// Whether `d` after the lead byte `lead` starts an overlong (or out of range) UTF-8 form:
/// `%E0%80%AF` and `%F0%80%80%AF` are `/` to a decoder that does not check, as `%C0%AF` is.
fn is_overlong(lead: u8, d: u8) -> bool {
    (lead == 0xE0 && d < 0xA0) || (lead == 0xF0 && d < 0x90) || d >= 0xF5
}

/// Not `.` or `..`.
fn is_plain_segment(s: &[u8]) -> bool {
    !matches!(s, b"." | b"..")
}

/// A byte that must not arrive percent-encoded in a plain path (see [`is_plain_path`]).
fn is_bendable_byte(d: u8) -> bool {
    matches!(
        d,
        b'/' | b'\\' | b'.' | b'%' | b';' | b'?' | b'#' | 0xC0 | 0xC1
    ) || d.is_ascii_control()
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// A browser loading a page (which can follow a redirect to a sign-in form), as opposed to an
/// API call or XHR, which should get a 401 it can handle.
pub(crate) fn is_navigation(method: &Method, headers: &HeaderMap) -> bool {
    (method == Method::GET || method == Method::HEAD)
        && headers
            .get(http::header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("text/html"))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn host_of_strips_port() {
        assert_eq!(host_of("app.test:9000"), "app.test");
        assert_eq!(host_of("app.test"), "app.test");
        assert_eq!(host_of("[::1]:80"), "::1");
    }

    #[test]
    fn only_plain_authorities_are_accepted() {
        for ok in [
            "app.test",
            "app.test:9000",
            "localhost",
            "127.0.0.1:80",
            "[::1]:9000",
            "[::1]",
            "App.Test",
        ] {
            assert!(is_plain_authority(ok), "{ok}");
        }
        for bad in [
            "",
            "app.test:1@evil.example",
            "user@app.test",
            "app.test:",
            "app.test:99999",
            "app.test:80x",
            "wiki.example.test^",
            "app.test/evil",
            "app.test\\evil",
            "app%2etest",
            "::1",
            "[::1",
            "app.test:80:80",
        ] {
            assert!(!is_plain_authority(bad), "{bad}");
        }
    }

    /// The fast path answers only what the full parse would answer the same way.
    #[test]
    fn simple_domains_are_what_the_url_parser_accepts() {
        let hosts = [
            "app.test",
            "App.Example.COM",
            "a",
            "a-b.c-d",
            "-a.b-",
            "app.test.",
            "x1.y2",
            "1.2.3.4",
            "127.1",
            "0x7f.1",
            "a.0x1f",
            "a.0X",
            "a.123",
            "123",
            "a.1b",
            "xn--a.b",
            "a.XN--zz",
            "xn--nxasmq6b.com",
            "a..b",
            ".a",
            "a.",
            "..",
            ".",
            "",
            "a_b.c",
            "ä.de",
            "a%2eb",
            "a b",
            "0",
            "1e",
            "0xg.com",
            "é",
        ];
        for h in hosts {
            if is_simple_domain(h) {
                assert!(
                    parses_as_plain_host(h),
                    "{h:?}: fast path true, full parse false"
                );
            }
        }
        assert!(is_simple_domain("app.test") && is_simple_domain("App.Example.COM"));
        for h in ["1.2.3.4", "a.0x1f", "a.123", "xn--a.b", "a..b", "", "."] {
            assert!(!is_simple_domain(h), "{h:?} must take the full parse");
        }
    }

    #[test]
    fn only_plain_paths_can_be_bypass_paths() {
        for plain in [
            "/",
            "/public/",
            "/public/info.txt",
            "/public/a%20b/%C3%A9t%C3%A9.png",
            "/public/%E0%A4%B9%E0%A4%BF/%F0%9F%98%80/%E2%80%A5",
            "/public/x.tar.gz",
            "/public/...",
            "/public/.well-known/x",
            "/public/a..b",
            "/public/%41%7e",
            "/public/~user/@x:y,z+!$&'()*=",
        ] {
            assert!(is_plain_path(plain), "{plain}");
        }
        for bent in [
            "",
            "*",
            "public/x",
            "http://h/public/",
            "/public/..%2fsecret",
            "/public/..%2Fsecret",
            "/public/%2F../secret",
            "/public/%2f",
            "/public//../secret",
            "//public/x",
            "/public//x",
            "/public/x//",
            "/public/%2e%2e/secret",
            "/public/%2E%2E/secret",
            "/public/.%2e/secret",
            "/public/%2e/x",
            "/public/x%2ejs",
            "/public/..%5csecret",
            "/public/..%5Csecret",
            "/public/..\\secret",
            "/public\\..\\secret",
            "/public/..;/secret",
            "/public;x=1/info",
            "/public/%3b",
            "/public/secret%3F.png",
            "/public/x%23/y",
            "/public/..%00/secret",
            "/public/x\0",
            "/public/x\t",
            "/public/%0a",
            "/public/%7F",
            "/public/x#/../../secret",
            "/public/%252e%252e/secret",
            "/public/%c0%af../secret",
            "/public/%C1%9C",
            "/public/..%e0%80%afsecret",
            "/public/%E0%80%AE%E0%80%AE/x",
            "/public/..%f0%80%80%afsecret",
            "/public/%f8%80%80%80%af",
            "/public/%ff",
            "/public/%",
            "/public/%2",
            "/public/%zz",
            "/public/%u002f",
            "/public/../secret",
            "/public/./info",
            "/public/..",
            "/public/.",
            "/..",
        ] {
            assert!(!is_plain_path(bent), "{bent:?}");
        }
    }

    /// A gate with one app, `wiki.test`, whose bypass is `^/public/`.
    pub(crate) fn gate(dir: &std::path::Path) -> Gate {
        let text = format!(
            r#"
[server]
listen = ["127.0.0.1:1"]
[storage]
path = "{db}"
[[apps]]
name = "wiki"
hosts = ["wiki.test"]
upstream = "127.0.0.1:9"
flow = "f"
bypass = ["^/public/"]
[[flows]]
slug = "f"
title = "Sign in"
designation = "authentication"
stages = ["identify", "password", "login"]
[stages.identify]
kind = "identification"
user_fields = ["username"]
[stages.password]
kind = "password"
[stages.login]
kind = "user_login"
"#,
            db = dir.join("db").display()
        );
        let config = Config::from_toml(&text, &dir.join("p.toml"), std::iter::empty())
            .unwrap_or_else(|e| panic!("{e}"));
        let store: Arc<dyn crate::store::Store> =
            Arc::new(crate::store::SledStore::open(&dir.join("db")).unwrap());
        let sessions = SessionService::new(&config.session, dir.join("keys.json"), store).unwrap();
        Gate::new(Arc::new(config), Arc::new(sessions))
    }

    #[test]
    fn decide_grants_bypass_only_to_plain_paths_and_judges_the_rest_as_protected() {
        let dir = tempfile::tempdir().unwrap();
        let gate = gate(dir.path());
        let token = gate
            .sessions()
            .issue(crate::session::NewSession {
                username: "alice".into(),
                name: "Alice".into(),
                email: "a@example.com".into(),
                groups: vec![],
                // What this flow's sign-in records.
                amr: vec!["identification".into(), "password".into()],
                factors: crate::session::Factors::PASSWORD,
                flows: vec!["f".into()],
                lifetime_secs: 60,
            })
            .unwrap()
            .0;
        let anonymous = HeaderMap::new();
        let mut signed_in = HeaderMap::new();
        let cookie = format!("{}={token}", gate.config().session.cookie_name);
        signed_in.insert(http::header::COOKIE, cookie.parse().unwrap());
        let ask = |path: &str, headers: &HeaderMap| {
            let d = gate.decide(&AccessRequest {
                method: &Method::GET,
                scheme: "http",
                authority: "wiki.test",
                path,
                path_and_query: path,
                headers,
                client: None,
            });
            match d {
                Decision::Bypass { .. } => "bypass",
                Decision::Allow { .. } => "allow",
                Decision::Unauthenticated { .. } => "unauthenticated",
                _ => "other",
            }
        };
        assert_eq!(ask("/public/info.txt", &anonymous), "bypass");
        for bent in [
            "/public/..%2fsecret",
            "/public/%2F../secret",
            "/public//../secret",
            "/public/%2e%2e/secret",
            "/public/..%5csecret",
            "/public/..;/secret",
            "/public/..%00/secret",
            "/public/./info.txt",
        ] {
            assert_eq!(ask(bent, &anonymous), "unauthenticated", "{bent}");
            // Judged as protected, not refused: a signed-in user still gets through.
            assert_eq!(ask(bent, &signed_in), "allow", "{bent}");
        }
    }

    #[test]
    fn only_html_get_is_navigation() {
        let mut h = HeaderMap::new();
        h.insert(http::header::ACCEPT, "text/html,*/*".parse().unwrap());
        assert!(is_navigation(&Method::GET, &h));
        assert!(!is_navigation(&Method::POST, &h));
        h.insert(http::header::ACCEPT, "application/json".parse().unwrap());
        assert!(!is_navigation(&Method::GET, &h));
    }
}

#[cfg(test)]
pub(crate) mod rules_tests;

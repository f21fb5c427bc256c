//! Access rules: `[networks]`, each app's `[[apps.rules]]` and `default_policy`, parsed once at
//! load into typed matchers (regex sets, CIDRs, methods) that the access decision only runs.
//!
//! The keys follow Authelia's `access_control` (`domain`, `domain_regex`, `resources`,
//! `methods`, `networks`, `subject`, `query`, `policy`), so a rule list translates line by line.

use super::error::Problem;
use super::path_index::PathIndex;
use super::{FlowConfig, StageConfig};
use http::Method;
use ipnet::IpNet;
use regex::{Regex, RegexSet};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

type Checked<T> = Result<T, Problem>;

/// A set of networks (CIDRs or single addresses), as `[networks]` names them and rules and
/// policies use them. An IPv4-mapped IPv6 address counts as its IPv4 one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Networks {
    nets: Vec<IpNet>,
}

impl Networks {
    /// The networks listed.
    pub fn new(nets: Vec<IpNet>) -> Self {
        Self { nets }
    }

    /// Whether `ip` lies in one of the networks.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        self.nets.iter().any(|n| n.contains(&ip))
    }

    /// The networks, as listed.
    pub fn nets(&self) -> &[IpNet] {
        &self.nets
    }

    /// Parses `"10.0.0.0/8"`, `"192.0.2.7"` or `"::1"`; `None` for anything else.
    pub fn parse_one(text: &str) -> Option<IpNet> {
        let t = text.trim();
        t.parse::<IpNet>()
            .ok()
            .or_else(|| t.parse::<IpAddr>().ok().map(IpNet::from))
    }
}

/// What a rule (or an app's `default_policy`) grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Forward without a session (only ever to a plain path; see `access::is_plain_path`).
    Bypass,
    /// A session that satisfies the app's flow.
    OneFactor,
    /// As `OneFactor`, and the session proves at least two distinct factors.
    TwoFactor,
    /// Refused (403), signed in or not.
    Deny,
}

impl Policy {
    /// The name as written in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Bypass => "bypass",
            Policy::OneFactor => "one_factor",
            Policy::TwoFactor => "two_factor",
            Policy::Deny => "deny",
        }
    }

    fn parse(path: &str, text: &str) -> Checked<Policy> {
        match text {
            "bypass" => Ok(Policy::Bypass),
            "one_factor" => Ok(Policy::OneFactor),
            "two_factor" => Ok(Policy::TwoFactor),
            "deny" => Ok(Policy::Deny),
            other => Err(Problem::new(
                path,
                format!(
                    "`{other}` is not one of \"bypass\", \"one_factor\", \"two_factor\", \"deny\""
                ),
            )),
        }
    }
}

/// A `domain` entry: a host, or `*.example.com` for any subdomain (not the domain itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DomainMatch {
    /// Exactly this host (lower-case).
    Exact(String),
    /// Any host ending in this suffix (lower-case, with its leading dot).
    Suffix(String),
}

impl DomainMatch {
    fn matches(&self, host: &str) -> bool {
        match self {
            DomainMatch::Exact(h) => h == host,
            DomainMatch::Suffix(s) => host.len() > s.len() && host.ends_with(s.as_str()),
        }
    }
}

/// One `subject` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// `user:NAME`: the session's username.
    User(String),
    /// `group:NAME`: one of the session's groups.
    Group(String),
}

impl Subject {
    fn holds(&self, user: &str, groups: &[String]) -> bool {
        match self {
            Subject::User(u) => u == user,
            Subject::Group(g) => groups.iter().any(|x| x == g),
        }
    }
}

/// How one query parameter is judged.
#[derive(Debug, Clone)]
pub enum QueryOp {
    /// Present with exactly this value.
    Equal(String),
    /// Absent, or present with another value.
    NotEqual(String),
    /// Present (any value).
    Present,
    /// Absent.
    Absent,
    /// Present with a value the regex matches.
    Pattern(Regex),
    /// Absent, or present with a value the regex does not match.
    NotPattern(Regex),
}

/// One `query` matcher: a parameter name and what its value must be.
#[derive(Debug, Clone)]
pub struct QueryMatch {
    /// The parameter name (after form decoding).
    pub key: String,
    /// What it must be.
    pub op: QueryOp,
}

impl QueryMatch {
    /// Whether the decoded `pairs` of a query meet this matcher. Every value of a repeated
    /// key is looked at: `Equal`/`Pattern` want one that fits, the negations want none.
    fn holds(&self, pairs: &[(String, String)]) -> bool {
        let mut values = pairs.iter().filter(|(k, _)| *k == self.key).map(|(_, v)| v);
        match &self.op {
            QueryOp::Present => values.next().is_some(),
            QueryOp::Absent => values.next().is_none(),
            QueryOp::Equal(want) => values.any(|v| v == want),
            QueryOp::NotEqual(want) => values.all(|v| v != want),
            QueryOp::Pattern(re) => values.any(|v| re.is_match(v)),
            QueryOp::NotPattern(re) => values.all(|v| !re.is_match(v)),
        }
    }
}

/// The request as a rule sees it. `path` is already normalised (see `access::judged_path`).
#[derive(Debug, Clone, Copy)]
pub struct RuleInput<'a> {
    /// The host, lower-case, no port.
    pub host: &'a str,
    /// The normalised path, without the query.
    pub path: &'a str,
    /// Whether `path` is the request's path as sent (plain): only then may `bypass` match.
    pub plain: bool,
    /// The request method.
    pub method: &'a Method,
    /// The client address the gateway trusts, when known.
    pub client: Option<IpAddr>,
}

/// One `[[apps.rules]]` entry, validated. Every criterion given must hold for the rule to
/// match (an empty one is not checked); the first matching rule decides.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Its position in the app's `rules`.
    pub index: usize,
    /// `domain`: hosts and `*.` wildcards.
    pub domains: Vec<DomainMatch>,
    /// `domain_regex`, matched against the lower-case host.
    pub domain_regex: Option<RegexSet>,
    /// `resources`, matched against the normalised path.
    pub resources: Option<Resources>,
    /// `methods`, upper-case.
    pub methods: Vec<Method>,
    /// `networks`: CIDRs and `[networks]` names, together.
    pub networks: Option<Networks>,
    /// `subject`: any inner list (OR) whose entries all hold (AND). Empty: anyone.
    pub subject: Vec<Vec<Subject>>,
    /// `query`: any inner list (OR) whose matchers all hold (AND). Empty: any query.
    pub query: Vec<Vec<QueryMatch>>,
    /// What it grants.
    pub policy: Policy,
    /// Factor classes the session must have proved (`password`, `email`, `sms`).
    pub factors: Vec<String>,
    /// How recent the session's sign-in (or last step-up) must be.
    pub max_age: Option<Duration>,
    /// A one-line description for `portcullis access check` and logs.
    pub summary: String,
}

impl Rule {
    /// Whether the request-side criteria (all but `subject` and `query`) hold. A `bypass`
    /// rule never matches a path that is not plain.
    pub fn matches_request(&self, r: &RuleInput<'_>) -> bool {
        (self.policy != Policy::Bypass || r.plain)
            && (self.domains.is_empty() || self.domains.iter().any(|d| d.matches(r.host)))
            && self
                .domain_regex
                .as_ref()
                .is_none_or(|s| s.is_match(r.host))
            && self.resources.as_ref().is_none_or(|s| s.is_match(r.path))
            && (self.methods.is_empty() || self.methods.iter().any(|m| m == r.method))
            && self
                .networks
                .as_ref()
                .is_none_or(|n| r.client.is_some_and(|ip| n.contains(ip)))
    }

    /// Whether the query criterion holds for these decoded pairs.
    pub fn matches_query(&self, pairs: &[(String, String)]) -> bool {
        self.query.is_empty()
            || self
                .query
                .iter()
                .any(|all| all.iter().all(|q| q.holds(pairs)))
    }

    /// Whether the subject criterion holds for this user.
    pub fn matches_subject(&self, user: &str, groups: &[String]) -> bool {
        self.subject.is_empty()
            || self
                .subject
                .iter()
                .any(|all| all.iter().all(|s| s.holds(user, groups)))
    }
}

/// A rule's `resources`: the patterns that are only `^` and literal text are kept as prefixes
/// and compared without the regex engine (the common `^/api/` costs a `starts_with`); the
/// others run as one regex set.
#[derive(Debug, Clone)]
pub struct Resources {
    prefixes: Vec<String>,
    set: Option<RegexSet>,
    /// When every pattern is `^`-anchored, the literal starts they need.
    set_needs: Option<Vec<String>>,
}

/// The text after `^` when a pattern is `^` plus literal text (no regex syntax).
fn literal_prefix(p: &str) -> Option<&str> {
    p.strip_prefix('^').filter(|rest| {
        !rest
            .chars()
            .any(|c| "\\.+*?()|[]{}^$#&-~".contains(c) || c.is_whitespace())
    })
}

/// The literal text every match of a `^`-anchored pattern starts with (up to its first
/// regex syntax; a character a quantifier follows is left out), or `None` when there is none
/// or the pattern has an alternation (whose other branches are not anchored by the `^`).
fn required_prefix(p: &str) -> Option<String> {
    let rest = p.strip_prefix('^')?;
    if rest.contains('|') {
        return None;
    }
    let mut out = String::new();
    for c in rest.chars() {
        if "?*{".contains(c) {
            out.pop();
            break;
        }
        if "\\.+()[]^$#&-~".contains(c) || c.is_whitespace() {
            break;
        }
        out.push(c);
    }
    (!out.is_empty()).then_some(out)
}

impl Resources {
    fn new(all: RegexSet, patterns: Vec<&str>) -> Self {
        if patterns.iter().all(|p| literal_prefix(p).is_some()) {
            return Self {
                prefixes: patterns
                    .iter()
                    .filter_map(|p| literal_prefix(p))
                    .map(str::to_string)
                    .collect(),
                set: None,
                set_needs: None,
            };
        }
        Self {
            prefixes: Vec::new(),
            set: Some(all),
            set_needs: patterns
                .iter()
                .map(|p| required_prefix(p))
                .collect::<Option<Vec<_>>>(),
        }
    }

    /// The literal texts a matching path must start with one of, or `None` when some pattern
    /// has no literal start (any path may match it). For [`super::path_index::PathIndex`].
    pub fn required_starts(&self) -> Option<Vec<&str>> {
        let mut out: Vec<&str> = self.prefixes.iter().map(String::as_str).collect();
        if self.set.is_some() {
            out.extend(self.set_needs.as_ref()?.iter().map(String::as_str));
        }
        Some(out)
    }

    /// Whether one of the patterns matches `path`. A path that starts with none of the
    /// patterns' required prefixes skips the regex engine.
    pub fn is_match(&self, path: &str) -> bool {
        if self.prefixes.iter().any(|p| path.starts_with(p.as_str())) {
            return true;
        }
        let Some(set) = &self.set else { return false };
        if let Some(needs) = &self.set_needs {
            if !needs.iter().any(|n| path.starts_with(n.as_str())) {
                return false;
            }
        }
        set.is_match(path)
    }
}

/// An app's rules and what applies when none matches.
#[derive(Debug, Clone)]
pub struct AccessRules {
    /// `[[apps.rules]]`, in file order.
    pub rules: Vec<Rule>,
    /// `default_policy`: `one_factor` when the app has no rules, else `deny` unless set.
    pub default_policy: Policy,
    /// Whether any rule has a `query` criterion (the query is decoded only then).
    pub reads_query: bool,
    /// Which rules a path can match, by the rules' literal path starts (`None`: more rules
    /// than it indexes, scanned one by one).
    pub index: Option<PathIndex>,
}

impl Default for AccessRules {
    fn default() -> Self {
        Self {
            rules: Vec::new(),
            default_policy: Policy::OneFactor,
            reads_query: false,
            index: None,
        }
    }
}

/// `[networks]`: NAME = ["10.0.0.0/8", ...].
pub(super) fn networks(raw: &BTreeMap<String, Vec<String>>) -> Checked<BTreeMap<String, Networks>> {
    raw.iter()
        .map(|(name, list)| {
            let nets = list
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    Networks::parse_one(t).ok_or_else(|| {
                        Problem::new(
                            format!("networks.{name}[{i}]"),
                            format!("`{t}` is not a network like \"10.0.0.0/8\" or an address"),
                        )
                    })
                })
                .collect::<Checked<Vec<_>>>()?;
            Ok((name.clone(), Networks::new(nets)))
        })
        .collect()
}

/// A `[[apps.rules]]` entry as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRule {
    pub domain: Option<OneOrMany>,
    pub domain_regex: Option<OneOrMany>,
    pub resources: Option<OneOrMany>,
    pub methods: Option<OneOrMany>,
    pub networks: Option<OneOrMany>,
    pub subject: Option<RawSubject>,
    pub query: Option<RawQueryList>,
    pub policy: String,
    pub factors: Option<Vec<String>>,
    pub max_age: Option<String>,
}

/// A string or a list of strings.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn list(&self) -> Vec<&str> {
        match self {
            OneOrMany::One(s) => vec![s.as_str()],
            OneOrMany::Many(v) => v.iter().map(String::as_str).collect(),
        }
    }
}

/// `subject`: `"group:a"`, `["group:a", "user:b"]` (both), or `[["group:a"], ["user:b"]]`
/// (either); in a list mixing both forms each entry is one alternative.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum RawSubject {
    One(String),
    List(Vec<OneOrMany>),
}

/// `query`: `[{ key = "a" }]` (all of them) or `[[{ key = "a" }], [{ key = "b" }]]` (either).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum RawQueryList {
    All(Vec<RawQuery>),
    Any(Vec<Vec<RawQuery>>),
}

/// One query matcher as written (Authelia's `key`, `value`, `operator`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawQuery {
    pub key: String,
    pub value: Option<String>,
    pub operator: Option<String>,
}

/// An app's `rules` and `default_policy`, checked against `[networks]` and the app's flow.
pub(super) fn access_rules(
    app: usize,
    raw: &[RawRule],
    default_policy: Option<&str>,
    networks: &BTreeMap<String, Networks>,
    flow: Option<&FlowConfig>,
    stages: &BTreeMap<String, StageConfig>,
) -> Checked<AccessRules> {
    let default_policy = match default_policy {
        Some(p) => Policy::parse(&format!("apps[{app}].default_policy"), p)?,
        None if raw.is_empty() => Policy::OneFactor,
        None => Policy::Deny,
    };
    let proves = flow_factors(flow, stages);
    let rules = raw
        .iter()
        .enumerate()
        .map(|(j, r)| rule(&format!("apps[{app}].rules[{j}]"), j, r, networks, &proves))
        .collect::<Checked<Vec<_>>>()?;
    if default_policy == Policy::TwoFactor {
        two_factor_possible(&format!("apps[{app}].default_policy"), &proves)?;
    }
    Ok(AccessRules {
        reads_query: rules.iter().any(|r| !r.query.is_empty()),
        index: PathIndex::new(&rules),
        rules,
        default_policy,
    })
}

/// Per proving stage of the app's flow, the factor names any one of which satisfies it.
fn flow_factors(
    flow: Option<&FlowConfig>,
    stages: &BTreeMap<String, StageConfig>,
) -> Vec<Vec<&'static str>> {
    let Some(flow) = flow else { return Vec::new() };
    flow.stages
        .iter()
        .filter_map(|s| stages.get(s))
        .map(|s| match s {
            StageConfig::Password { .. } => vec!["password"],
            StageConfig::AuthenticatorEmail(_) => vec!["email"],
            StageConfig::AuthenticatorSms(_) => vec!["sms"],
            StageConfig::AuthenticatorDuo(_) => vec!["duo"],
            StageConfig::AuthenticatorValidate(v) => {
                v.device_classes.iter().map(|c| c.as_str()).collect()
            }
            _ => Vec::new(),
        })
        .filter(|f| !f.is_empty())
        .collect()
}

/// The known factor classes (the session's `factors` claim names).
const FACTORS: [&str; 8] = [
    "password", "email", "sms", "totp", "static", "webauthn", "duo", "passkey",
];

/// A rule sends a session that falls short to the app's flow; that flow must be able to give
/// what the rule wants, or the user would loop between the app and the flow.
fn two_factor_possible(path: &str, proves: &[Vec<&'static str>]) -> Checked<()> {
    let mut all: Vec<&str> = proves.iter().flatten().copied().collect();
    all.sort_unstable();
    all.dedup();
    if proves.len() < 2 || all.len() < 2 {
        return Err(Problem::new(
            path,
            "`two_factor` needs the app's flow to ask for two factors (a password and a code stage)",
        ));
    }
    Ok(())
}

fn rule(
    path: &str,
    index: usize,
    r: &RawRule,
    named: &BTreeMap<String, Networks>,
    proves: &[Vec<&'static str>],
) -> Checked<Rule> {
    let key = |k: &str| format!("{path}.{k}");
    let policy = Policy::parse(&key("policy"), &r.policy)?;
    let domains = r
        .domain
        .as_ref()
        .map(OneOrMany::list)
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(i, d)| domain(&format!("{}[{i}]", key("domain")), d))
        .collect::<Checked<Vec<_>>>()?;
    let domain_regex = regex_set(&key("domain_regex"), r.domain_regex.as_ref())?;
    let resources = regex_set(&key("resources"), r.resources.as_ref())?.map(|set| {
        Resources::new(
            set,
            r.resources
                .as_ref()
                .map(OneOrMany::list)
                .unwrap_or_default(),
        )
    });
    let methods = r
        .methods
        .as_ref()
        .map(OneOrMany::list)
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(i, m)| method(&format!("{}[{i}]", key("methods")), m))
        .collect::<Checked<Vec<_>>>()?;
    let networks = match &r.networks {
        None => None,
        Some(list) => Some(rule_networks(&key("networks"), &list.list(), named)?),
    };
    let subject = match &r.subject {
        None => Vec::new(),
        Some(s) => subject(&key("subject"), s)?,
    };
    let query = match &r.query {
        None => Vec::new(),
        Some(q) => query(&key("query"), q)?,
    };
    let factors = rule_factors(&key("factors"), r, proves)?;
    let max_age = match &r.max_age {
        None => None,
        Some(t) => Some(super::sms::whole_seconds(&key("max_age"), t)?),
    };
    policy_fits(path, policy, &factors, max_age, &subject, proves)?;
    let summary = summary(r);
    Ok(Rule {
        index,
        domains,
        domain_regex,
        resources,
        methods,
        networks,
        subject,
        query,
        policy,
        factors,
        max_age,
        summary,
    })
}

/// `"a", "b", "c"`, for messages naming the allowed values.
fn quoted_list(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("\"{n}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A rule's `factors`: known factor names, each one the app's flow can ask for alone.
fn rule_factors(key: &str, r: &RawRule, proves: &[Vec<&'static str>]) -> Checked<Vec<String>> {
    let factors = r.factors.clone().unwrap_or_default();
    for (i, f) in factors.iter().enumerate() {
        let at = format!("{key}[{i}]");
        if !FACTORS.contains(&f.as_str()) {
            return Err(Problem::new(
                at,
                format!("`{f}` is not one of {}", quoted_list(&FACTORS)),
            ));
        }
        // A stage only this factor satisfies: a session without it is then asked for it.
        if !proves.iter().any(|p| p.as_slice() == [f.as_str()]) {
            return Err(Problem::new(
                at,
                format!("the app's flow has no stage that asks for `{f}` alone, so a session without it could never get it"),
            ));
        }
    }
    Ok(factors)
}

/// Whether the rule's policy goes with its other keys: no `factors`/`max_age` on `bypass` or
/// `deny`, no subject on `bypass`, and `two_factor` only where the flow can ask for two.
fn policy_fits(
    path: &str,
    policy: Policy,
    factors: &[String],
    max_age: Option<std::time::Duration>,
    subject: &[Vec<Subject>],
    proves: &[Vec<&'static str>],
) -> Checked<()> {
    if matches!(policy, Policy::Bypass | Policy::Deny) && (!factors.is_empty() || max_age.is_some())
    {
        return Err(Problem::new(
            path,
            format!(
                "`factors` and `max_age` mean nothing with policy `{}`",
                policy.as_str()
            ),
        ));
    }
    if policy == Policy::Bypass && !subject.is_empty() {
        return Err(Problem::new(
            format!("{path}.subject"),
            "a `bypass` rule cannot have a subject: it lets requests through without a session",
        ));
    }
    if policy == Policy::TwoFactor {
        two_factor_possible(&format!("{path}.policy"), proves)?;
    }
    Ok(())
}

/// The rule as one line: its criteria and policy, as written.
fn summary(r: &RawRule) -> String {
    let mut parts = Vec::new();
    let mut list = |k: &str, v: Option<&OneOrMany>| {
        if let Some(v) = v {
            parts.push(format!("{k}={}", v.list().join(",")));
        }
    };
    list("domain", r.domain.as_ref());
    list("domain_regex", r.domain_regex.as_ref());
    list("resources", r.resources.as_ref());
    list("methods", r.methods.as_ref());
    list("networks", r.networks.as_ref());
    match &r.subject {
        None => {}
        Some(RawSubject::One(s)) => parts.push(format!("subject={s}")),
        Some(RawSubject::List(items)) => {
            let all = items.iter().all(|i| matches!(i, OneOrMany::One(_)));
            let alternatives: Vec<String> = items.iter().map(|i| i.list().join("&")).collect();
            parts.push(format!(
                "subject={}",
                alternatives.join(if all { "&" } else { "|" })
            ));
        }
    }
    if let Some(q) = &r.query {
        let one = |m: &RawQuery| match (&m.operator, &m.value) {
            (Some(op), Some(v)) => format!("{} {op} {v}", m.key),
            (Some(op), None) => format!("{} {op}", m.key),
            (None, Some(v)) => format!("{}={v}", m.key),
            (None, None) => format!("{} present", m.key),
        };
        let text = match q {
            RawQueryList::All(all) => all.iter().map(one).collect::<Vec<_>>().join("&"),
            RawQueryList::Any(any) => any
                .iter()
                .map(|g| g.iter().map(one).collect::<Vec<_>>().join("&"))
                .collect::<Vec<_>>()
                .join("|"),
        };
        parts.push(format!("query={text}"));
    }
    parts.push(format!("policy={}", r.policy));
    if let Some(f) = &r.factors {
        parts.push(format!("factors={}", f.join(",")));
    }
    if let Some(m) = &r.max_age {
        parts.push(format!("max_age={m}"));
    }
    parts.join(" ")
}

fn domain(path: &str, d: &str) -> Checked<DomainMatch> {
    let d = d.trim().to_ascii_lowercase();
    let bad = |why: &str| Problem::new(path, format!("`{d}` {why}"));
    if let Some(rest) = d.strip_prefix("*.") {
        if rest.is_empty() || rest.contains(['*', '/', ':', ' ', '@']) {
            return Err(bad("is not a domain like \"*.example.com\""));
        }
        return Ok(DomainMatch::Suffix(format!(".{rest}")));
    }
    if d.is_empty() || d.contains(['*', '/', ':', ' ', '@']) {
        return Err(bad(
            "is not a host name (no scheme, port, path or inner `*`)",
        ));
    }
    Ok(DomainMatch::Exact(d))
}

/// Each pattern checked alone first so an error names the bad one.
fn regex_set(path: &str, v: Option<&OneOrMany>) -> Checked<Option<RegexSet>> {
    let Some(v) = v else { return Ok(None) };
    let list = v.list();
    if list.is_empty() {
        return Err(Problem::new(
            path,
            "an empty list matches nothing; leave the key out",
        ));
    }
    for (i, p) in list.iter().enumerate() {
        Regex::new(p)
            .map_err(|e| Problem::new(format!("{path}[{i}]"), format!("not a valid regex: {e}")))?;
    }
    RegexSet::new(&list)
        .map(Some)
        .map_err(|e| Problem::new(path, e.to_string()))
}

fn method(path: &str, m: &str) -> Checked<Method> {
    let up = m.trim().to_ascii_uppercase();
    if up.is_empty() || !up.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(Problem::new(
            path,
            format!("`{m}` is not an HTTP method like \"GET\""),
        ));
    }
    Method::from_bytes(up.as_bytes())
        .map_err(|_| Problem::new(path, format!("`{m}` is not an HTTP method like \"GET\"")))
}

fn rule_networks(
    path: &str,
    list: &[&str],
    named: &BTreeMap<String, Networks>,
) -> Checked<Networks> {
    let mut nets = Vec::new();
    for (i, t) in list.iter().enumerate() {
        if let Some(n) = named.get(*t) {
            nets.extend_from_slice(n.nets());
        } else if let Some(n) = Networks::parse_one(t) {
            nets.push(n);
        } else {
            return Err(Problem::new(
                format!("{path}[{i}]"),
                format!(
                    "`{t}` is neither a network like \"10.0.0.0/8\" nor a name under [networks]"
                ),
            ));
        }
    }
    if nets.is_empty() {
        return Err(Problem::new(
            path,
            "an empty list matches nothing; leave the key out",
        ));
    }
    Ok(Networks::new(nets))
}

fn one_subject(path: &str, s: &str) -> Checked<Subject> {
    match s.split_once(':') {
        Some(("user", u)) if !u.is_empty() => Ok(Subject::User(u.to_string())),
        Some(("group", g)) if !g.is_empty() => Ok(Subject::Group(g.to_string())),
        _ => Err(Problem::new(
            path,
            format!("`{s}` is not \"user:NAME\" or \"group:NAME\""),
        )),
    }
}

fn subject(path: &str, s: &RawSubject) -> Checked<Vec<Vec<Subject>>> {
    let out = match s {
        RawSubject::One(one) => vec![vec![one_subject(path, one)?]],
        RawSubject::List(items) if items.iter().all(|i| matches!(i, OneOrMany::One(_))) => {
            // A flat list: every entry must hold.
            vec![items
                .iter()
                .enumerate()
                .map(|(i, it)| one_subject(&format!("{path}[{i}]"), it.list()[0]))
                .collect::<Checked<Vec<_>>>()?]
        }
        RawSubject::List(items) => items
            .iter()
            .enumerate()
            .map(|(i, it)| {
                it.list()
                    .iter()
                    .enumerate()
                    .map(|(j, s)| one_subject(&format!("{path}[{i}][{j}]"), s))
                    .collect::<Checked<Vec<_>>>()
            })
            .collect::<Checked<Vec<_>>>()?,
    };
    if out.is_empty() || out.iter().any(Vec::is_empty) {
        return Err(Problem::new(
            path,
            "an empty list matches nothing; leave the key out",
        ));
    }
    Ok(out)
}

fn query(path: &str, q: &RawQueryList) -> Checked<Vec<Vec<QueryMatch>>> {
    let groups: Vec<(String, &Vec<RawQuery>)> = match q {
        RawQueryList::All(all) => vec![(path.to_string(), all)],
        RawQueryList::Any(any) => any
            .iter()
            .enumerate()
            .map(|(i, g)| (format!("{path}[{i}]"), g))
            .collect(),
    };
    let out = groups
        .into_iter()
        .map(|(at, g)| {
            g.iter()
                .enumerate()
                .map(|(j, m)| query_match(&format!("{at}[{j}]"), m))
                .collect::<Checked<Vec<_>>>()
        })
        .collect::<Checked<Vec<_>>>()?;
    if out.is_empty() || out.iter().any(Vec::is_empty) {
        return Err(Problem::new(
            path,
            "an empty list matches nothing; leave the key out",
        ));
    }
    Ok(out)
}

fn query_match(path: &str, m: &RawQuery) -> Checked<QueryMatch> {
    let value = |op: &str| {
        m.value.clone().ok_or_else(|| {
            Problem::new(
                format!("{path}.value"),
                format!("operator `{op}` needs a value"),
            )
        })
    };
    let pattern = |op: &str| -> Checked<Regex> {
        let v = value(op)?;
        Regex::new(&v)
            .map_err(|e| Problem::new(format!("{path}.value"), format!("not a valid regex: {e}")))
    };
    // As Authelia: no operator means `equal` with a value, `present` without one.
    let op = match (m.operator.as_deref(), &m.value) {
        (None, Some(v)) => QueryOp::Equal(v.clone()),
        (None, None) => QueryOp::Present,
        (Some("equal"), _) => QueryOp::Equal(value("equal")?),
        (Some("not equal"), _) => QueryOp::NotEqual(value("not equal")?),
        (Some("present"), _) => QueryOp::Present,
        (Some("absent"), _) => QueryOp::Absent,
        (Some("pattern"), _) => QueryOp::Pattern(pattern("pattern")?),
        (Some("not pattern"), _) => QueryOp::NotPattern(pattern("not pattern")?),
        (Some(other), _) => {
            return Err(Problem::new(
                format!("{path}.operator"),
                format!("`{other}` is not one of \"equal\", \"not equal\", \"present\", \"absent\", \"pattern\", \"not pattern\""),
            ))
        }
    };
    if m.key.is_empty() {
        return Err(Problem::new(format!("{path}.key"), "must not be empty"));
    }
    Ok(QueryMatch {
        key: m.key.clone(),
        op,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resources(patterns: &[&str]) -> Resources {
        Resources::new(RegexSet::new(patterns).expect("set"), patterns.to_vec())
    }

    #[test]
    fn literal_prefixes_match_like_the_regexes_they_are() {
        let lit = resources(&["^/api/", "^/admin"]);
        assert!(lit.set.is_none(), "literal patterns skip the regex engine");
        let re = resources(&["^/api/", "^/a.min", "/x$"]);
        assert!(re.set.is_some());
        for path in [
            "/api/x",
            "/admin",
            "/administrators",
            "/apix",
            "/",
            "/x/api/",
            "/aXmin",
            "/q/x",
        ] {
            let set = RegexSet::new(["^/api/", "^/admin"]).expect("set");
            assert_eq!(lit.is_match(path), set.is_match(path), "{path}");
            let set = RegexSet::new(["^/api/", "^/a.min", "/x$"]).expect("set");
            assert_eq!(re.is_match(path), set.is_match(path), "{path}");
        }
    }

    #[test]
    fn networks_hold_mapped_ipv4_and_single_addresses() {
        let n = Networks::new(vec![
            Networks::parse_one("10.0.0.0/8").expect("cidr"),
            Networks::parse_one("2001:db8::1").expect("address"),
        ]);
        assert!(n.contains("10.2.3.4".parse().expect("ip")));
        assert!(n.contains("::ffff:10.2.3.4".parse().expect("ip")));
        assert!(n.contains("2001:db8::1".parse().expect("ip")));
        assert!(!n.contains("2001:db8::2".parse().expect("ip")));
        assert!(!n.contains("11.0.0.1".parse().expect("ip")));
        assert!(Networks::parse_one("10.0.0.0/33").is_none());
    }
}

//! What a policy sees: the user, the request, the flow and the time, as plain data (the
//! flow engine fills it; the CEL adapter turns it into values).

use cel::Value;
use std::collections::{BTreeMap, HashMap};

/// Everything an expression may read, by its top-level variable.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// `user`: the account identified so far, if any (`null` before identification).
    pub user: Option<UserFacts>,
    /// `request`: the request that reached the flow.
    pub request: RequestFacts,
    /// `flow`: the flow and how far the execution got.
    pub flow: FlowFacts,
    /// `time.now`: unix seconds.
    pub now: i64,
    /// Failed sign-ins recently recorded, for `reputation` policies (not shown to expressions).
    pub failures: Failures,
}

/// Failed sign-ins (wrong passwords) within the recording window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Failures {
    /// From the client's address.
    pub ip: u32,
    /// For the account (or the identifier typed, when it names none).
    pub user: u32,
}

/// `user.*`.
#[derive(Debug, Clone, Default)]
pub struct UserFacts {
    /// `user.username`.
    pub username: String,
    /// `user.name`.
    pub name: String,
    /// `user.email` (`""` when none).
    pub email: String,
    /// `user.groups`.
    pub groups: Vec<String>,
    /// `user.attributes` (`phone` when set).
    pub attributes: BTreeMap<String, String>,
    /// `user.is_active`.
    pub is_active: bool,
}

/// `request.*`.
#[derive(Debug, Clone, Default)]
pub struct RequestFacts {
    /// `request.ip`: the client address.
    pub ip: String,
    /// `request.host`: the host the flow is served on.
    pub host: String,
    /// `request.path`: the path of the page the user is going to (`rd`).
    pub path: String,
    /// `request.method`.
    pub method: String,
    /// `request.headers`: selected headers, lower-case names.
    pub headers: BTreeMap<String, String>,
}

/// `flow.*`.
#[derive(Debug, Clone, Default)]
pub struct FlowFacts {
    /// `flow.slug`.
    pub slug: String,
    /// `flow.designation`.
    pub designation: String,
    /// `flow.prompt_data`: what prompt stages collected.
    pub prompt_data: BTreeMap<String, String>,
    /// `flow.stages_passed`: kinds of the stages passed, in order.
    pub stages_passed: Vec<String>,
}

fn map(entries: Vec<(&str, Value)>) -> Value {
    let m: HashMap<String, Value> = entries
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    Value::from(m)
}

fn strings(m: &BTreeMap<String, String>) -> Value {
    let m: HashMap<String, Value> = m
        .iter()
        .map(|(k, v)| (k.clone(), Value::from(v.clone())))
        .collect();
    Value::from(m)
}

fn list(v: &[String]) -> Value {
    Value::from(v.to_vec())
}

impl Facts {
    /// The four top-level values, by name; `request.country` is `country` (looked up only
    /// for programs that read it).
    pub(super) fn to_values(&self, country: &str) -> Vec<(&'static str, Value)> {
        let user = match &self.user {
            None => Value::Null,
            Some(u) => map(vec![
                ("username", Value::from(u.username.clone())),
                ("name", Value::from(u.name.clone())),
                ("email", Value::from(u.email.clone())),
                ("groups", list(&u.groups)),
                ("attributes", strings(&u.attributes)),
                ("is_active", Value::Bool(u.is_active)),
            ]),
        };
        let r = &self.request;
        let request = map(vec![
            ("ip", Value::from(r.ip.clone())),
            ("host", Value::from(r.host.clone())),
            ("path", Value::from(r.path.clone())),
            ("method", Value::from(r.method.clone())),
            ("headers", strings(&r.headers)),
            ("country", Value::from(country.to_string())),
        ]);
        let f = &self.flow;
        let flow = map(vec![
            ("slug", Value::from(f.slug.clone())),
            ("designation", Value::from(f.designation.clone())),
            ("prompt_data", strings(&f.prompt_data)),
            ("stages_passed", list(&f.stages_passed)),
        ]);
        let time = map(vec![("now", Value::Int(self.now))]);
        vec![
            ("user", user),
            ("request", request),
            ("flow", flow),
            ("time", time),
        ]
    }
}

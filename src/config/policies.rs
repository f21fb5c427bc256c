//! `[policies.NAME]` and the bindings that use them: a flow's `policies` (who may start it),
//! a stage entry's `{ stage = "..", policies = [..], .. }` (whether the stage runs) and an
//! app's `policies` (who may use it). Expressions are compiled here, once; CIDRs parsed
//! here; the `[geoip]` database read here.

use super::error::Problem;
use crate::policy::{Binding, BreachedList, Expression, Mode, PasswordRules, Policy, PolicyKind};
use ipnet::IpNet;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;

type Checked<T> = Result<T, Problem>;

/// `[policies.NAME]` as written.
#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub(super) enum RawPolicy {
    Expression {
        expression: String,
        message: Option<String>,
    },
    Network {
        #[serde(default)]
        cidrs: Vec<String>,
        /// Names of `[networks]` entries.
        #[serde(default)]
        networks: Vec<String>,
        message: Option<String>,
    },
    Reputation {
        check_ip: Option<bool>,
        check_username: Option<bool>,
        threshold: u32,
        message: Option<String>,
    },
    Password {
        password_field: Option<String>,
        #[serde(default)]
        length_min: usize,
        #[serde(default)]
        amount_uppercase: usize,
        #[serde(default)]
        amount_lowercase: usize,
        #[serde(default)]
        amount_digits: usize,
        #[serde(default)]
        amount_symbols: usize,
        check_static_rules: Option<bool>,
        check_zxcvbn: Option<bool>,
        zxcvbn_score_threshold: Option<u8>,
        check_have_i_been_pwned: Option<bool>,
        hibp_allowed_count: Option<u64>,
        /// A folder of HIBP range files; made absolute against the config file's folder.
        hibp_directory: Option<String>,
        message: Option<String>,
    },
}

/// One entry of a flow's `stages`: a stage name, or a table binding policies to it.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum RawStageEntry {
    Name(String),
    Bound(RawStageBinding),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStageBinding {
    pub stage: String,
    #[serde(default)]
    pub policies: Vec<String>,
    #[serde(default)]
    pub negate: bool,
    pub policy_engine_mode: Option<String>,
    pub evaluate_on_plan: Option<bool>,
    pub re_evaluate_policies: Option<bool>,
}

impl RawStageEntry {
    pub(super) fn stage(&self) -> &str {
        match self {
            RawStageEntry::Name(s) => s,
            RawStageEntry::Bound(b) => &b.stage,
        }
    }
}

/// A flow's stage with the policies that decide whether it runs.
#[derive(Debug, Clone, Default)]
pub struct StageBinding {
    /// The policies; an empty binding always passes.
    pub binding: Binding,
    /// Evaluated when the plan is made (the flow's first step): a failing stage is left out.
    pub evaluate_on_plan: bool,
    /// Evaluated (again) when the stage is reached, over what the execution knows by then: a
    /// failing stage is skipped.
    pub re_evaluate_policies: bool,
}

/// `[policies]`: each compiled or parsed once.
pub(super) fn policies(
    raw: BTreeMap<String, RawPolicy>,
    named: &BTreeMap<String, super::Networks>,
) -> Checked<BTreeMap<String, Arc<Policy>>> {
    raw.into_iter()
        .map(|(name, p)| {
            let policy = policy(&name, p, named)?;
            Ok((name, Arc::new(policy)))
        })
        .collect()
}

fn policy(
    name: &str,
    raw: RawPolicy,
    named: &BTreeMap<String, super::Networks>,
) -> Checked<Policy> {
    let (kind, message) = match raw {
        RawPolicy::Expression {
            expression,
            message,
        } => {
            let e = Expression::compile(&expression)
                .map_err(|e| Problem::new(format!("policies.{name}.expression"), e.to_string()))?;
            (PolicyKind::Expression(e), message)
        }
        RawPolicy::Network {
            cidrs,
            networks,
            message,
        } => (
            PolicyKind::Network(network_list(name, &cidrs, &networks, named)?),
            message,
        ),
        RawPolicy::Reputation {
            check_ip,
            check_username,
            threshold,
            message,
        } => {
            let (check_ip, check_username) =
                (check_ip.unwrap_or(true), check_username.unwrap_or(true));
            if threshold == 0 || !(check_ip || check_username) {
                return Err(Problem::new(
                    format!("policies.{name}"),
                    "a reputation policy needs threshold >= 1 and check_ip or check_username",
                ));
            }
            (
                PolicyKind::Reputation {
                    check_ip,
                    check_username,
                    threshold,
                },
                message,
            )
        }
        RawPolicy::Password {
            password_field,
            length_min,
            amount_uppercase,
            amount_lowercase,
            amount_digits,
            amount_symbols,
            check_static_rules,
            check_zxcvbn,
            zxcvbn_score_threshold,
            check_have_i_been_pwned,
            hibp_allowed_count,
            hibp_directory,
            message,
        } => {
            let rules = PasswordRules {
                field: password_field.unwrap_or_else(|| "password".into()),
                check_static_rules: check_static_rules.unwrap_or(true),
                length_min,
                amount_uppercase,
                amount_lowercase,
                amount_digits,
                amount_symbols,
                zxcvbn_score_threshold: zxcvbn(name, check_zxcvbn, zxcvbn_score_threshold)?,
                breached: breached(
                    name,
                    check_have_i_been_pwned,
                    hibp_directory,
                    hibp_allowed_count,
                )?,
            };
            if !rules.checks_anything() {
                return Err(Problem::new(
                    format!("policies.{name}"),
                    "a password policy needs at least one rule (length_min, amount_*, check_zxcvbn, check_have_i_been_pwned)",
                ));
            }
            (PolicyKind::Password(rules), message)
        }
    };
    Ok(Policy {
        name: name.to_string(),
        message: message.filter(|m| !m.trim().is_empty()),
        kind,
    })
}

/// The zxcvbn threshold when zxcvbn is checked: `check_zxcvbn` (default: whether a threshold
/// is written), `zxcvbn_score_threshold` (authentik's default 2; a score at or below it fails).
fn zxcvbn(name: &str, check: Option<bool>, threshold: Option<u8>) -> Checked<Option<u8>> {
    if let Some(t @ 4..) = threshold {
        return Err(Problem::new(
            format!("policies.{name}.zxcvbn_score_threshold"),
            format!("{t} would refuse every password: zxcvbn scores 0 to 4, and a score at or below the threshold fails (use 0 to 3)"),
        ));
    }
    Ok(check
        .unwrap_or(threshold.is_some())
        .then_some(threshold.unwrap_or(2)))
}

/// The offline breached-password list: `check_have_i_been_pwned` (default: whether
/// `hibp_directory` is written), the folder (already absolute) and `hibp_allowed_count`
/// (default 0: a password seen once fails).
fn breached(
    name: &str,
    check: Option<bool>,
    dir: Option<String>,
    allowed: Option<u64>,
) -> Checked<Option<BreachedList>> {
    if !check.unwrap_or(dir.is_some()) {
        return Ok(None);
    }
    let key = format!("policies.{name}.hibp_directory");
    let Some(dir) = dir else {
        return Err(Problem::new(
            key,
            "check_have_i_been_pwned needs a folder of Have I Been Pwned range files (ABCDE.txt per SHA-1 prefix, as its downloader writes them); Portcullis never asks the online API",
        ));
    };
    let dir = std::path::PathBuf::from(dir);
    BreachedList::usable(&dir).map_err(|why| Problem::new(key, why))?;
    Ok(Some(BreachedList {
        dir,
        allowed_count: allowed.unwrap_or(0),
    }))
}

/// A network policy's `cidrs`, then the networks of the `[networks]` entries it names.
fn network_list(
    name: &str,
    cidrs: &[String],
    networks: &[String],
    named: &BTreeMap<String, super::Networks>,
) -> Checked<Vec<IpNet>> {
    if cidrs.is_empty() && networks.is_empty() {
        return Err(Problem::new(
            format!("policies.{name}.cidrs"),
            "needs at least one network (`cidrs`, or `networks` naming [networks] entries)",
        ));
    }
    let mut nets = cidrs
        .iter()
        .enumerate()
        .map(|(i, c)| {
            c.parse::<IpNet>().map_err(|_| {
                Problem::new(
                    format!("policies.{name}.cidrs[{i}]"),
                    format!("`{c}` is not a network like \"10.0.0.0/8\""),
                )
            })
        })
        .collect::<Checked<Vec<_>>>()?;
    for (i, n) in networks.iter().enumerate() {
        let Some(set) = named.get(n) else {
            return Err(Problem::new(
                format!("policies.{name}.networks[{i}]"),
                format!("no [networks] entry named `{n}`"),
            ));
        };
        nets.extend_from_slice(set.nets());
    }
    Ok(nets)
}

/// The binding of `names` at `path` (the key listing them; each a key of `[policies]`).
pub(super) fn binding(
    path: &str,
    names: &[String],
    mode: Option<&str>,
    negate: bool,
    all: &BTreeMap<String, Arc<Policy>>,
) -> Checked<Binding> {
    let mode = match mode {
        None => Mode::All,
        Some(m) => Mode::parse(m).ok_or_else(|| {
            Problem::new(
                format!("{}.policy_engine_mode", parent(path)),
                format!("`{m}` is not one of \"all\", \"any\""),
            )
        })?,
    };
    let policies = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            all.get(n).cloned().ok_or_else(|| {
                Problem::new(
                    format!("{path}[{i}]"),
                    format!("no policy named `{n}` under [policies]"),
                )
            })
        })
        .collect::<Checked<Vec<_>>>()?;
    if negate && policies.is_empty() {
        return Err(Problem::new(
            format!("{}.negate", parent(path)),
            "negates nothing: bind at least one policy",
        ));
    }
    Ok(Binding {
        policies,
        mode,
        negate,
    })
}

/// The binding of a flow's stage entry at `path`.
pub(super) fn stage_binding(
    path: &str,
    entry: &RawStageEntry,
    all: &BTreeMap<String, Arc<Policy>>,
) -> Checked<StageBinding> {
    let RawStageEntry::Bound(b) = entry else {
        return Ok(StageBinding::default());
    };
    let binding = binding(
        &format!("{path}.policies"),
        &b.policies,
        b.policy_engine_mode.as_deref(),
        b.negate,
        all,
    )?;
    let evaluate_on_plan = b.evaluate_on_plan.unwrap_or(true);
    let re_evaluate_policies = b.re_evaluate_policies.unwrap_or(false);
    if !binding.is_empty() && !evaluate_on_plan && !re_evaluate_policies {
        return Err(Problem::new(
            path,
            "its policies would never be evaluated: set evaluate_on_plan or re_evaluate_policies",
        ));
    }
    Ok(StageBinding {
        binding,
        evaluate_on_plan,
        re_evaluate_policies,
    })
}

/// The table a key belongs to: `flows[0]` for `flows[0].policies`.
fn parent(path: &str) -> &str {
    path.rsplit_once('.').map_or(path, |(p, _)| p)
}

/// An app's `policies`, `policy_engine_mode` and `negate`.
///
/// # Security
/// The access decision judges these for every signed-in request, inline and off disk. A
/// `reputation` policy reads failure counters kept in the store and a `password` policy reads
/// prompt answers no app request has, so binding either to an app is refused here, naming
/// the key (bind them to a flow or a stage instead).
pub(super) fn app_binding(
    i: usize,
    app: &super::raw::RawApp,
    all: &BTreeMap<String, Arc<Policy>>,
) -> Checked<Binding> {
    let b = binding(
        &format!("apps[{i}].policies"),
        &app.policies,
        app.policy_engine_mode.as_deref(),
        app.negate,
        all,
    )?;
    for (j, p) in b.policies.iter().enumerate() {
        let why = match p.kind {
            PolicyKind::Reputation { .. } => {
                "is a reputation policy: its counters live in the store, which the access decision never reads; bind it to a flow or a stage"
            }
            PolicyKind::Password(_) => {
                "is a password policy: it judges prompt answers, which an app request has none of; bind it to a prompt's validation_policies"
            }
            _ => continue,
        };
        return Err(Problem::new(
            format!("apps[{i}].policies[{j}]"),
            format!("`{}` {why}", p.name),
        ));
    }
    Ok(b)
}

/// `[geoip]`: the database, read whole now. Refused, naming `geoip.database`, when the file
/// cannot be read or is not a MaxMind database; and an expression that reads
/// `request.country` without a `[geoip]` database is refused naming it (it would always see
/// `""`, which silently opens a policy such as `!(request.country in ["XX"])`).
pub(super) fn geoip(
    raw: Option<&super::raw::RawGeoIp>,
    all: &BTreeMap<String, Arc<Policy>>,
) -> Checked<Option<Arc<crate::policy::GeoIp>>> {
    let Some(raw) = raw else {
        for (name, p) in all {
            if let PolicyKind::Expression(e) = &p.kind {
                if e.reads_country() {
                    return Err(Problem::new(
                        format!("policies.{name}.expression"),
                        "reads request.country, but no [geoip] database is configured",
                    ));
                }
            }
        }
        return Ok(None);
    };
    let db = crate::policy::GeoIp::open(std::path::Path::new(&raw.database))
        .map_err(|e| Problem::new("geoip.database", e))?;
    Ok(Some(Arc::new(db)))
}

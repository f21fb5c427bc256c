//! `portcullis flow check SLUG --user U --ip A`: the flow's plan for that user and address,
//! each binding judged by the same config, evaluator and code as `serve`.

use crate::admin::{self, Command};
use crate::config::Config;
use crate::flow::{check_plan, FlowPlan, PlanCheck};
use crate::policy::{Evaluator, Verdict};
use crate::store::{canonical_username, User};
use std::net::IpAddr;
use std::process::ExitCode;

/// Prints the plan of `slug` for `user` (anonymous when `None`) coming from `ip`.
pub(super) fn run(config: &Config, slug: &str, user: Option<&str>, ip: &str) -> ExitCode {
    let Some(flow) = config.flow(slug) else {
        return super::fail(&format!("no flow `{slug}` in {}", config.source.display()));
    };
    if ip.parse::<IpAddr>().is_err() {
        return super::fail(&format!("`{ip}` is not an IP address"));
    }
    let user = match user.map(|u| find_user(config, u)).transpose() {
        Ok(u) => u,
        Err(e) => return super::fail(&e),
    };
    let plan = FlowPlan::new(flow, &config.stages);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return super::fail(&format!("cannot start the evaluator: {e}")),
    };
    let now = crate::clock::now();
    let judge = Evaluator::default().with_geoip(config.geoip.clone());
    let checked = runtime.block_on(check_plan(&plan, &judge, user.as_ref(), ip, now));
    print!("{}", report(slug, user.as_ref(), ip, &checked));
    ExitCode::SUCCESS
}

/// The account `name`, from the running gateway when there is one, else from the database.
pub(super) fn find_user(config: &Config, name: &str) -> Result<User, String> {
    let username =
        canonical_username(name).ok_or_else(|| format!("`{name}` is not a valid username"))?;
    let cmd = Command::UserShow {
        username: username.clone(),
    };
    match admin::send_to_gateway(&config.admin_socket, &cmd) {
        Ok(Some(reply)) => {
            let Some(v) = reply.users.into_iter().next().filter(|_| reply.ok) else {
                return Err(reply.message);
            };
            let mut u = User::new(
                &v.username,
                crate::clock::Clock::now(&crate::clock::SystemClock),
            );
            u.name = v.name;
            u.email = v.email;
            u.phone = v.phone;
            u.groups = v.groups;
            u.active = v.active;
            return Ok(u);
        }
        Ok(None) => {}
        Err(e) => return Err(format!("the gateway's admin socket did not answer: {e}")),
    }
    let db = config.storage.describe();
    if !config.storage.exists() {
        return Err(format!("no database at {db}; nothing was created"));
    }
    let store = crate::store::open(&config.storage).map_err(|e| format!("{e} (database {db})"))?;
    store
        .user(&username)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("no user `{username}`"))
}

fn outcomes(out: &mut String, v: &Verdict) {
    for (name, o) in &v.outcomes {
        out.push_str(&format!("      policy {name}: {}\n", o.as_str()));
    }
}

/// The printed plan.
fn report(slug: &str, user: Option<&User>, ip: &str, c: &PlanCheck) -> String {
    let who = user.map_or("anonymous", |u| u.username.as_str());
    let mut out = format!("flow {slug} for {who} from {ip}\n");
    if c.flow.passed {
        out.push_str("  start: allowed\n");
    } else {
        out.push_str(&format!(
            "  start: refused: {}\n",
            c.flow.messages.join(" ")
        ));
    }
    outcomes(&mut out, &c.flow);
    for (i, s) in c.stages.iter().enumerate() {
        let line = match &s.verdict {
            None => "runs (no policies)".to_string(),
            Some(v) => {
                let when = match (s.on_plan, s.when_reached) {
                    (true, true) => "on plan and when reached",
                    (true, false) => "on plan",
                    _ => "when reached",
                };
                let verdict = if v.passed { "runs" } else { "skipped" };
                format!("{verdict} (evaluated {when})")
            }
        };
        out.push_str(&format!("  stage {} {}: {line}\n", i + 1, s.stage));
        if let Some(v) = &s.verdict {
            outcomes(&mut out, v);
        }
    }
    out
}

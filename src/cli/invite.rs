//! `portcullis invite create|list|revoke`: invitations to enrol, run inside the gateway when
//! it is running (over its admin socket) or on the database when it is not.

use super::{fail, printable, utc};
use crate::admin::{self, Admin, Command, InvitationView, Reply};
use crate::config::{Config, Designation, StageConfig};
use crate::password::PasswordHasherPool;
use crate::store::StoreError;
use clap::Subcommand;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Subcommand)]
pub(crate) enum InviteCmd {
    /// Issue an invitation and print its link (shown once: only a hash of it is kept).
    Create {
        /// The address the account gets (the visitor cannot change it).
        #[arg(long)]
        email: Option<String>,
        /// The display name the account gets.
        #[arg(long)]
        name: Option<String>,
        /// A group the account joins; repeat for several.
        #[arg(long = "group")]
        groups: Vec<String>,
        /// The flow the link opens and the only one the invitation works in (a flow with an
        /// invitation stage); the first enrollment flow with one when left out.
        #[arg(long)]
        flow: Option<String>,
        /// How long the invitation works ("7d", "12h").
        #[arg(long, default_value = "7d")]
        expires: String,
        /// Let it enrol any number of accounts until it expires (single use by default).
        #[arg(long)]
        multi_use: bool,
    },
    /// List the invitations: id, flow, address, groups, use, expiry.
    List,
    /// Withdraw an invitation by the id `invite list` shows.
    Revoke {
        /// The invitation's id.
        id: String,
    },
}

/// Runs an invite command and prints the result.
pub(crate) fn run(config: &Config, cmd: InviteCmd) -> ExitCode {
    let (command, slug) = match cmd {
        InviteCmd::Create {
            email,
            name,
            groups,
            flow,
            expires,
            multi_use,
        } => {
            let slug = match invitation_flow(config, flow.as_deref()) {
                Ok(s) => s,
                Err(e) => return fail(&e),
            };
            let lifetime = match crate::config::parse_duration(&expires) {
                Ok(d) => d,
                Err(e) => return fail(&format!("--expires: {e}")),
            };
            let command = Command::InviteCreate {
                email,
                name,
                groups,
                // Bound to the flow its link opens: it cannot open another one.
                flow: Some(slug.clone()),
                expires_in: i64::try_from(lifetime.as_secs()).unwrap_or(i64::MAX),
                single_use: !multi_use,
            };
            (command, Some(slug))
        }
        InviteCmd::List => (Command::InviteList, None),
        InviteCmd::Revoke { id } => (Command::InviteRevoke { id }, None),
    };
    let link_base = match &slug {
        Some(_) => match link_base(config) {
            Ok(b) => Some(b),
            Err(e) => return fail(&e),
        },
        None => None,
    };
    let creates = matches!(command, Command::InviteCreate { .. });
    let (reply, how) = match execute(config, command, creates) {
        Ok(r) => r,
        Err(e) => return fail(&e),
    };
    if !reply.ok {
        return fail(&reply.message);
    }
    if let (Some(token), Some(slug), Some(base)) = (&reply.token, &slug, &link_base) {
        for inv in &reply.invitations {
            println!("{}", describe(inv));
        }
        println!("{base}/.portcullis/flow/{slug}?itoken={}", token.expose());
        println!("(the link is shown once; {how})");
        return ExitCode::SUCCESS;
    }
    if !reply.invitations.is_empty() {
        print!("{}", table(&reply.invitations));
    }
    println!("{} ({how})", reply.message);
    ExitCode::SUCCESS
}

/// The flow an invitation opens: `wanted` when it has an invitation stage, else the first
/// enrollment flow (then any flow) that has one.
fn invitation_flow(config: &Config, wanted: Option<&str>) -> Result<String, String> {
    let invites = |f: &crate::config::FlowConfig| {
        f.stages
            .iter()
            .any(|s| matches!(config.stages.get(s), Some(StageConfig::Invitation { .. })))
    };
    if let Some(slug) = wanted {
        return match config.flows.iter().find(|f| f.slug == slug) {
            Some(f) if invites(f) => Ok(f.slug.clone()),
            Some(_) => Err(format!(
                "flow `{slug}` has no invitation stage: its link would not read the invitation"
            )),
            None => Err(format!("no flow `{slug}` in {}", config.source.display())),
        };
    }
    let with = |enrollment: bool| {
        config
            .flows
            .iter()
            .filter(|f| !enrollment || f.designation == Designation::Enrollment)
            .find(|f| invites(f))
    };
    with(true)
        .or_else(|| with(false))
        .map(|f| f.slug.clone())
        .ok_or_else(|| {
            format!(
                "no flow in {} has an invitation stage (kind = \"invitation\")",
                config.source.display()
            )
        })
}

/// Where links point: `[server] auth_url`, else the first app's public origin. Never a
/// request's Host: the CLI has none, and the link must be the configured address.
fn link_base(config: &Config) -> Result<String, String> {
    if let Some(url) = &config.server.auth_url {
        return Ok(url.to_string());
    }
    config
        .apps
        .first()
        .map(|a| a.origin().to_string())
        .ok_or_else(|| "set [server] auth_url: the link needs the gateway's public address".into())
}

/// Runs `cmd` in the gateway, or on the database when no gateway runs; returns the reply and
/// where it ran.
pub(super) fn execute(
    config: &Config,
    cmd: Command,
    creates: bool,
) -> Result<(Reply, String), String> {
    let db = config.storage.describe();
    match admin::send_to_gateway(&config.admin_socket, &cmd) {
        Ok(Some(reply)) => return Ok((reply, format!("via running gateway, database {db}"))),
        Ok(None) => {}
        Err(e) => {
            return Err(format!(
                "the gateway's admin socket {} did not answer: {e}",
                config.admin_socket.display()
            ))
        }
    }
    if !creates && !config.storage.exists() {
        return Err(format!("no database at {db}; nothing was created"));
    }
    let store = match crate::store::open(&config.storage) {
        Ok(s) => s,
        Err(StoreError::Locked { path }) => {
            return Err(format!(
                "the database {path} is held by a running gateway, but its admin socket {} is not reachable",
                config.admin_socket.display()
            ))
        }
        Err(e) => return Err(format!("{e} (database {db})")),
    };
    let admin = Admin {
        store,
        passwords: PasswordHasherPool::new(&config.passwords).map_err(|e| e.to_string())?,
        sessions: None,
        policy: config.password_policy,
        clock: Arc::new(crate::clock::SystemClock),
        reloader: None,
        regulator: None,
    };
    let reply = admin
        .execute(cmd)
        .map_err(|e| format!("{e} (database {db})"))?;
    Ok((reply, format!("gateway not running: database {db}")))
}

fn describe(i: &InvitationView) -> String {
    format!(
        "invitation {} for {}{}, {}, flow {}, expires {} UTC",
        i.id,
        i.email.as_deref().map_or("anyone".into(), printable),
        if i.groups.is_empty() {
            String::new()
        } else {
            format!(" (groups {})", printable(&i.groups.join(",")))
        },
        if i.single_use {
            "single use"
        } else {
            "multi-use"
        },
        i.flow.as_deref().unwrap_or("any"),
        utc(i.expires),
    )
}

fn table(invitations: &[InvitationView]) -> String {
    let now = crate::clock::now();
    let mut out = String::from("ID\tFLOW\tEMAIL\tGROUPS\tUSE\tEXPIRES (UTC)\n");
    for i in invitations {
        out.push_str(&format!(
            "{}\t{}\t{}\t{}\t{}\t{}{}\n",
            i.id,
            i.flow.as_deref().unwrap_or("-"),
            i.email.as_deref().map_or("-".into(), printable),
            if i.groups.is_empty() {
                "-".into()
            } else {
                printable(&i.groups.join(","))
            },
            if i.single_use { "single" } else { "multi" },
            utc(i.expires),
            if i.expires <= now { " (expired)" } else { "" },
        ));
    }
    out
}

//! `portcullis bans list|add|revoke`: the sign-in bans of `[regulation]`, run inside the
//! gateway when it is running (over its admin socket, so its in-memory bans change at once)
//! or on the database when it is not.

use super::fail;
use crate::admin::Command;
use crate::config::Config;
use clap::Subcommand;
use std::process::ExitCode;

#[derive(Subcommand)]
pub(crate) enum BansCmd {
    /// List the bans in force: subject, reason, since and until (unix seconds).
    List,
    /// Ban sign-in attempts on an account (`--user`), from an address (`--ip`), or on an
    /// account from one address (both).
    Add {
        /// The account, as typed at sign-in.
        #[arg(long)]
        user: Option<String>,
        /// The client address.
        #[arg(long)]
        ip: Option<String>,
        /// How long ("30m", "1d"); until revoked when left out.
        #[arg(long = "for")]
        duration: Option<String>,
    },
    /// Lift a ban (an account lock after 100 consecutive failures too).
    Revoke {
        /// The account.
        #[arg(long)]
        user: Option<String>,
        /// The client address.
        #[arg(long)]
        ip: Option<String>,
    },
}

/// Runs a bans command and prints the result.
pub(crate) fn run(config: &Config, cmd: BansCmd) -> ExitCode {
    let command = match cmd {
        BansCmd::List => Command::BansList,
        BansCmd::Add { user, ip, duration } => {
            let seconds = match duration.as_deref().map(crate::config::parse_duration) {
                None => None,
                Some(Ok(d)) => Some(i64::try_from(d.as_secs()).unwrap_or(i64::MAX)),
                Some(Err(e)) => return fail(&format!("--for: {e}")),
            };
            Command::BanAdd { user, ip, seconds }
        }
        BansCmd::Revoke { user, ip } => Command::BanRevoke { user, ip },
    };
    let (reply, how) = match super::invite::execute(config, command, false) {
        Ok(r) => r,
        Err(e) => return fail(&e),
    };
    if !reply.ok {
        return fail(&reply.message);
    }
    println!("{} ({how})", reply.message);
    ExitCode::SUCCESS
}

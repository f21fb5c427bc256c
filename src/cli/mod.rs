//! The command line: `serve`, `check-config`, user and key administration.

mod access;
mod audit;
mod bans;
mod bench;
mod flow_check;
mod invite;
mod password_input;
mod store_dump;

use crate::admin::{self, Admin, Command, Reply};
use crate::config::Config;
use crate::password::PasswordHasherPool;
use crate::session::KeyFile;
use crate::socket_activation::InheritedListeners;
use crate::store::{SledStore, Store, StoreError};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// The parsed command line: the config file and one subcommand. Build it with
/// [`clap::Parser::parse`] and hand it to [`run`].
#[derive(Parser)]
#[command(
    name = "portcullis",
    version,
    about = "An authentication gateway in front of web apps that have no login of their own"
)]
pub struct Cli {
    /// The config file.
    #[arg(
        long,
        global = true,
        env = "PORTCULLIS_CONFIG",
        default_value = "config/portcullis.toml"
    )]
    pub(crate) config: PathBuf,
    #[command(subcommand)]
    pub(crate) command: Cmd,
}

#[derive(Subcommand)]
pub(crate) enum Cmd {
    /// Run the gateway.
    Serve,
    /// Validate the config and exit: 0 when it is usable, 2 with the key and reason when not.
    CheckConfig,
    /// Make the running gateway read its config file again (as `SIGHUP` does): 0 when the
    /// new config is in force, 2 with the key and reason when it was refused (the running
    /// one then stays), 1 when no gateway answers.
    Reload,
    /// Manage users (works whether or not the gateway is running).
    #[command(subcommand)]
    User(UserCmd),
    /// Invite people to enrol: create, list and revoke invitation links (works whether or not
    /// the gateway is running).
    #[command(subcommand)]
    Invite(invite::InviteCmd),
    /// Hash a password read from stdin with the configured argon2id cost.
    HashPassword,
    /// Inspect flows.
    #[command(subcommand)]
    Flow(FlowCmd),
    /// Manage session signing keys.
    #[command(subcommand)]
    Keys(KeysCmd),
    /// The database's integrity (see README, "Database integrity and recovery").
    #[command(subcommand)]
    Storage(StorageCmd),
    /// Export all state to a dump file and import it into another database (move between
    /// sled and PostgreSQL, back up a gateway): see README, "Backup and moving to PostgreSQL".
    #[command(subcommand)]
    Store(store_dump::StoreCmd),
    /// Certificates for trying HTTPS.
    #[command(subcommand)]
    Certs(CertsCmd),
    /// Access rules: see what a request would get before deploying.
    #[command(subcommand)]
    Access(AccessCmd),
    /// Load a deployment (any URL) with valid, expired and missing session cookies and print
    /// requests per second and latency percentiles.
    Bench(Box<bench::BenchArgs>),
    /// Sign-in bans (`[regulation]`): list, add and revoke them, on an account, an address or
    /// both (works whether or not the gateway is running).
    #[command(subcommand)]
    Bans(bans::BansCmd),
    /// The audit records in the store, every replica's (kept 90 days).
    #[command(subcommand)]
    Audit(audit::AuditCmd),
}

#[derive(Subcommand)]
pub(crate) enum UserCmd {
    /// Add a user; the password is read from stdin (or a hidden prompt on a terminal).
    Add {
        username: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        email: Option<String>,
        #[arg(long)]
        phone: Option<String>,
        /// A group to put the user in; repeat for several.
        #[arg(long = "group")]
        groups: Vec<String>,
    },
    /// Set a user's password (read from stdin or a hidden prompt) and end their sessions.
    Passwd {
        username: String,
    },
    List,
    Show {
        username: String,
    },
    /// Disable a user and end their sessions.
    Disable {
        username: String,
    },
    Enable {
        username: String,
    },
    /// Remove a user and end their sessions.
    Remove {
        username: String,
    },
    /// List a user's second-factor devices: id, class, name, masked address, created, last used.
    Devices {
        username: String,
    },
    /// Remove one of a user's devices by the id `user devices` shows.
    DeviceRemove {
        username: String,
        id: String,
    },
    /// Issue a fresh set of recovery codes for a user who lost every factor (printed once;
    /// any earlier set stops working). Count and length follow the config's first
    /// `authenticator_static` stage (10 codes of 12 characters without one).
    RecoveryCodes {
        username: String,
    },
}

#[derive(Subcommand)]
pub(crate) enum CertsCmd {
    /// Write a self-signed certificate (dev.pem, dev.key) for localhost, 127.0.0.1, ::1 and
    /// `*.localhost`, plus every `--name`.
    Dev {
        /// The folder to write into.
        #[arg(long, default_value = "certs")]
        out: PathBuf,
        /// Another host name to cover, e.g. wiki.localhost (repeatable). Clients do not accept
        /// `*.localhost` for subdomains, so name them here.
        #[arg(long = "name")]
        names: Vec<String>,
    },
}

#[derive(Subcommand)]
pub(crate) enum FlowCmd {
    /// Print the flow's stage plan for a user and client address, with each policy binding's
    /// verdict, judged as `serve` judges them.
    Check {
        /// The flow's slug.
        slug: String,
        /// The account the user signs in as (anonymous when left out).
        #[arg(long)]
        user: Option<String>,
        /// The client's address.
        #[arg(long, default_value = "127.0.0.1")]
        ip: String,
    },
}

#[derive(Subcommand)]
pub(crate) enum AccessCmd {
    /// Print the rule that matches a request, the verdict and what the user would be asked
    /// for, decided by the same code as `serve`.
    Check(access::CheckArgs),
}

#[derive(Subcommand)]
pub(crate) enum KeysCmd {
    /// Add a new signing key and make it active; tokens signed with older keys keep working
    /// until they expire.
    Rotate,
}

#[derive(Subcommand)]
pub(crate) enum StorageCmd {
    /// Take the database as it is after the gateway refused it (lost writes, replaced, its
    /// integrity record missing): it gets a new identity, so every session issued before is
    /// signed out, and a new integrity record. Records sled cannot read are still refused.
    Accept,
}

/// Runs the parsed command line and returns the process's exit code: success, 2 for an
/// unusable config, bad arguments or a gateway that cannot start, 1 when a command failed.
/// `serve` serves on the `inherited` listening sockets (every other command drops, so closes,
/// them).
///
/// # Security
/// `serve` runs the gateway; the user commands change accounts directly in the database when
/// no gateway holds it, so whoever runs them needs (and has) the database's file permissions.
pub fn run(cli: Cli, inherited: InheritedListeners) -> ExitCode {
    // The load tool targets any deployment by URL and needs no local config, and dev
    // certificates are needed before a TLS config can load.
    let command = match cli.command {
        Cmd::Bench(args) => return bench::run(*args),
        Cmd::Certs(CertsCmd::Dev { out, names }) => return dev_certs(&out, &names),
        other => other,
    };
    let config = match Config::load(&cli.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            if matches!(command, Cmd::Reload) {
                eprintln!(
                    "the running gateway was not asked to reload; its configuration stays in force"
                );
            }
            return ExitCode::from(2);
        }
    };
    match command {
        Cmd::Bench(args) => bench::run(*args),
        Cmd::Certs(CertsCmd::Dev { out, names }) => dev_certs(&out, &names),
        Cmd::CheckConfig => match crate::app::check(&config) {
            Ok(()) => {
                println!("config OK: {}", cli.config.display());
                println!("database: {}", database_line(&config.storage));
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {}: {e}", cli.config.display());
                ExitCode::from(2)
            }
        },
        Cmd::Serve => match crate::app::serve(config, inherited) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!("{e}");
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        },
        Cmd::Reload => reload(&config),
        Cmd::HashPassword => hash_password(&config),
        Cmd::User(cmd) => {
            // Before a password is asked for: a command on accounts needs the database the
            // config names, and must not create an empty one somewhere else.
            if let Err(e) = database_for(&config, &cmd) {
                return fail(&e);
            }
            match user_command(&config, cmd) {
                Ok(cmd) => admin_command(&config, cmd),
                Err(e) => fail(&e),
            }
        }
        Cmd::Invite(cmd) => invite::run(&config, cmd),
        Cmd::Bans(cmd) => bans::run(&config, cmd),
        Cmd::Audit(cmd) => audit::run(&config, cmd),
        Cmd::Keys(KeysCmd::Rotate) => rotate_keys(&config),
        Cmd::Storage(StorageCmd::Accept) => accept_storage(&config),
        Cmd::Store(cmd) => store_dump::run(&config, cmd),
        Cmd::Flow(FlowCmd::Check { slug, user, ip }) => {
            flow_check::run(&config, &slug, user.as_deref(), &ip)
        }
        Cmd::Access(AccessCmd::Check(args)) => access::check(config, args),
    }
}

/// One user as stored: from the running gateway when there is one, else read from the
/// database (never created).
///
/// # Errors
/// A message naming the database when the user or the database is not there.
fn read_user(config: &Config, username: &str) -> Result<admin::UserView, String> {
    let cmd = Command::UserShow {
        username: username.to_string(),
    };
    let db = config.storage.describe();
    let reply = match admin::send_to_gateway(&config.admin_socket, &cmd) {
        Ok(Some(reply)) => reply,
        Ok(None) => {
            if !config.storage.exists() {
                return Err(format!("no database at {db}; nothing was created"));
            }
            let store =
                crate::store::open(&config.storage).map_err(|e| format!("{e} (database {db})"))?;
            let passwords =
                PasswordHasherPool::new(&config.passwords).map_err(|e| e.to_string())?;
            let admin = Admin {
                store,
                passwords,
                sessions: None,
                policy: config.password_policy,
                clock: Arc::new(crate::clock::SystemClock),
                reloader: None,
                regulator: None,
            };
            admin
                .execute(cmd)
                .map_err(|e| format!("{e} (database {db})"))?
        }
        Err(e) => {
            return Err(format!(
                "the gateway's admin socket {} did not answer: {e}",
                config.admin_socket.display()
            ))
        }
    };
    if !reply.ok {
        return Err(reply.message);
    }
    reply
        .users
        .into_iter()
        .next()
        .ok_or_else(|| format!("no user `{username}` (database {db})"))
}

/// Asks the running gateway to reload its config over the admin socket.
fn reload(config: &Config) -> ExitCode {
    match admin::send_to_gateway(&config.admin_socket, &Command::Reload) {
        Ok(Some(reply)) if reply.ok => {
            println!("{}", reply.message);
            ExitCode::SUCCESS
        }
        Ok(Some(reply)) => {
            eprintln!("error: {}", reply.message);
            ExitCode::from(2)
        }
        Ok(None) => fail(&format!(
            "no gateway is running (nothing listens on the admin socket {})",
            config.admin_socket.display()
        )),
        Err(e) => fail(&format!(
            "the gateway's admin socket {} did not answer: {e}",
            config.admin_socket.display()
        )),
    }
}

fn fail(msg: &str) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::FAILURE
}

fn user_command(config: &Config, cmd: UserCmd) -> Result<Command, String> {
    Ok(match cmd {
        UserCmd::Add {
            username,
            name,
            email,
            phone,
            groups,
        } => Command::UserAdd {
            password: password_input::read(&format!("Password for {username}: "))?,
            username,
            name,
            email,
            phone,
            groups,
        },
        UserCmd::Passwd { username } => Command::UserPasswd {
            password: password_input::read(&format!("New password for {username}: "))?,
            username,
        },
        UserCmd::List => Command::UserList,
        UserCmd::Show { username } => Command::UserShow { username },
        UserCmd::Disable { username } => Command::UserDisable { username },
        UserCmd::Enable { username } => Command::UserEnable { username },
        UserCmd::Remove { username } => Command::UserRemove { username },
        UserCmd::Devices { username } => Command::UserDevices { username },
        UserCmd::DeviceRemove { username, id } => Command::UserDeviceRemove { username, id },
        UserCmd::RecoveryCodes { username } => {
            let stage = config.stages.iter().find_map(|(name, st)| match st {
                crate::config::StageConfig::AuthenticatorStatic(s) => Some((name, s)),
                _ => None,
            });
            match stage {
                Some((stage, s)) => Command::UserRecoveryCodes {
                    username,
                    stage: stage.clone(),
                    name: s.friendly_name.clone(),
                    count: s.token_count,
                    length: s.token_length,
                },
                None => Command::UserRecoveryCodes {
                    username,
                    stage: "cli".into(),
                    name: "Recovery codes".into(),
                    count: 10,
                    length: 12,
                },
            }
        }
    })
}

/// Refuses a user command other than `user add` when the database the config names does not
/// exist: it would otherwise be created empty, and the command would find no users where the
/// real ones are (a config read from another folder, a mistyped `--config`).
fn database_for(config: &Config, cmd: &UserCmd) -> Result<(), String> {
    if matches!(cmd, UserCmd::Add { .. }) || config.storage.exists() {
        return Ok(());
    }
    Err(format!(
        "no database at {db} (storage.path of {config}); nothing was created. Check --config, or create the first user with `portcullis user add` (a gateway creates it at its first start)",
        db = config.storage.describe(),
        config = config.source.display(),
    ))
}

/// Sends the command to the running gateway, or runs it on the database when none runs, and
/// says which it did and the database's absolute path.
fn admin_command(config: &Config, cmd: Command) -> ExitCode {
    let db = config.storage.describe();
    match admin::send_to_gateway(&config.admin_socket, &cmd) {
        Ok(Some(reply)) => {
            return print_reply(&reply, &format!("via running gateway, database {db}"))
        }
        Ok(None) => {}
        Err(e) => {
            return fail(&format!(
                "the gateway's admin socket {} did not answer: {e}",
                config.admin_socket.display()
            ))
        }
    }
    if let Err(e) = admin::precheck(&cmd, &config.password_policy) {
        return fail(&e.to_string());
    }
    let read_only = matches!(
        cmd,
        Command::UserList | Command::UserShow { .. } | Command::UserDevices { .. }
    );
    let existed = config.storage.exists();
    if read_only && !existed {
        return fail(&format!("no database at {db}; nothing was created"));
    }
    let store = match crate::store::open(&config.storage) {
        Ok(s) => s,
        Err(StoreError::Locked { path }) => {
            return fail(&format!(
                "the database {path} is held by a running gateway, but its admin socket {} is not reachable",
                config.admin_socket.display()
            ))
        }
        Err(e) => return fail(&format!("{e} (database {db})")),
    };
    let passwords = match PasswordHasherPool::new(&config.passwords) {
        Ok(p) => p,
        Err(e) => return fail(&e.to_string()),
    };
    let admin = Admin {
        store,
        passwords,
        sessions: None,
        policy: config.password_policy,
        clock: Arc::new(crate::clock::SystemClock),
        reloader: None,
        regulator: None,
    };
    let how = if read_only {
        format!("gateway not running: read {db}")
    } else if !existed {
        format!("gateway not running: created the database {db}")
    } else {
        format!("gateway not running: wrote {db}")
    };
    match admin.execute(cmd) {
        Ok(reply) => print_reply(&reply, &how),
        Err(e) => fail(&format!("{e} (database {db})")),
    }
}

fn print_reply(reply: &Reply, how: &str) -> ExitCode {
    if !reply.ok {
        return fail(&reply.message);
    }
    for u in &reply.users {
        println!(
            "{}\tname={}\temail={}\tphone={}\tgroups={}\tactive={}\tpassword={}",
            u.username,
            u.name,
            u.email.as_deref().unwrap_or("-"),
            u.phone.as_deref().unwrap_or("-"),
            if u.groups.is_empty() {
                "-".to_string()
            } else {
                u.groups.join(",")
            },
            u.active,
            if u.has_password { "set" } else { "none" },
        );
    }
    if !reply.devices.is_empty() {
        print!("{}", devices_table(&reply.devices));
    }
    if !reply.message.is_empty() {
        println!("{} ({how})", reply.message);
    }
    ExitCode::SUCCESS
}

/// Devices as an aligned table, times in UTC.
fn devices_table(devices: &[admin::DeviceView]) -> String {
    let mut rows = vec![[
        "ID".to_string(),
        "CLASS".into(),
        "NAME".into(),
        "ADDRESS".into(),
        "CREATED (UTC)".into(),
        "LAST USED (UTC)".into(),
    ]];
    for d in devices {
        rows.push([
            d.id.clone(),
            d.class.clone(),
            printable(&d.name),
            d.address.as_deref().map_or("-".into(), printable),
            utc(d.created),
            d.last_used.map_or("never".into(), utc),
        ]);
    }
    let mut widths = [0usize; 6];
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in &rows {
        let line: Vec<String> = r
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// A name as typed, without control characters that would move the terminal's cursor.
fn printable(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// Unix seconds as `2026-12-01 16:51`, UTC.
fn utc(secs: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp(secs) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02}",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute()
        ),
        Err(_) => secs.to_string(),
    }
}

fn hash_password(config: &Config) -> ExitCode {
    let pw = match password_input::read("Password: ") {
        Ok(p) => p,
        Err(e) => return fail(&e),
    };
    let hasher = match PasswordHasherPool::new(&config.passwords) {
        Ok(h) => h,
        Err(e) => return fail(&e.to_string()),
    };
    match hasher.hash_blocking(&pw) {
        Ok(h) => {
            println!("{h}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e.to_string()),
    }
}

fn dev_certs(out: &std::path::Path, names: &[String]) -> ExitCode {
    match crate::tls::write_dev_certificate(out, names) {
        Ok((cert, key)) => {
            let mut covered = String::from("localhost, *.localhost, 127.0.0.1, ::1");
            for n in names {
                covered.push_str(", ");
                covered.push_str(n);
            }
            println!(
                "wrote {} and {} (self-signed for {covered})",
                cert.display(),
                key.display()
            );
            println!("use them with:\n  [server]\n  tls_listen = [\"127.0.0.1:9443\"]\n  [[server.certificates]]\n  cert = \"{}\"\n  key = \"{}\"", cert.display(), key.display());
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e),
    }
}

/// `keys rotate`: the key set lives in the store. On sled the running gateway holds the
/// database, so the command goes through its admin socket (or to the database when none runs);
/// on PostgreSQL it writes the store itself and tells the local gateway, if one runs, to put
/// the new keys in force at once (other replicas pick them up by themselves).
fn rotate_keys(config: &Config) -> ExitCode {
    let max_lifetime = i64::try_from(config.longest_session().as_secs()).unwrap_or(i64::MAX);
    if matches!(config.storage.backend, crate::config::StorageBackend::Sled) {
        if !config.storage.exists() {
            return fail(&format!(
                "no database at {} (from {}); nothing to rotate and nothing was created. Check --config; a gateway makes the keys at its first start",
                config.storage.describe(),
                config.source.display()
            ));
        }
        return admin_command(config, Command::KeysRotate { max_lifetime });
    }
    let store = match crate::store::open(&config.storage) {
        Ok(s) => s,
        Err(e) => return fail(&format!("{e} (database {})", config.storage.describe())),
    };
    let kid = match KeyFile::rotate(store.as_ref(), max_lifetime, &crate::clock::SystemClock) {
        Ok((kid, _)) => kid,
        Err(e) => return fail(&e.to_string()),
    };
    match admin::send_to_gateway(&config.admin_socket, &Command::KeysReload) {
        Ok(Some(r)) if r.ok => println!(
            "new signing key {kid} in the database (the local gateway put it in force; other replicas pick it up within {}s)",
            crate::session::KEYS_REFRESH_EVERY.as_secs()
        ),
        Ok(Some(r)) => {
            return fail(&format!(
                "stored new key {kid}, but the local gateway could not load it: {}",
                r.message
            ))
        }
        Ok(None) => println!(
            "new signing key {kid} in the database (no local gateway running; replicas pick it up within {}s)",
            crate::session::KEYS_REFRESH_EVERY.as_secs()
        ),
        Err(e) => {
            return fail(&format!(
                "stored new key {kid}, but the local gateway's admin socket failed: {e}"
            ))
        }
    }
    ExitCode::SUCCESS
}

/// `check-config`'s line about the database: where it is and whether it is there yet.
fn database_line(storage: &crate::config::StorageConfig) -> String {
    match &storage.backend {
        crate::config::StorageBackend::Sled => format!(
            "{} ({})",
            storage.path.display(),
            if storage.path.exists() {
                "exists"
            } else {
                "not there yet: created at the first start"
            }
        ),
        crate::config::StorageBackend::Postgres(pg) => format!(
            "postgres {} (pool of {}, TLS {}; the schema is applied at the first start)",
            pg.url,
            pg.pool_size,
            if pg.tls { "on" } else { "off" }
        ),
    }
}

/// `storage accept`: the database as it is, under a new identity.
fn accept_storage(config: &Config) -> ExitCode {
    if matches!(
        config.storage.backend,
        crate::config::StorageBackend::Postgres(_)
    ) {
        return fail("`storage accept` is for a sled database; a PostgreSQL database keeps its identity in the database itself");
    }
    let path = &config.storage.path;
    if !path.exists() {
        return fail(&format!(
            "no database at {}; nothing to accept (a gateway creates one at its first start)",
            path.display()
        ));
    }
    match SledStore::accept(path) {
        Ok(store) => {
            let users = store.user_count().unwrap_or(0);
            println!(
                "accepted the database at {} as it is ({users} user(s)); it has a new identity, so every session issued before is signed out; integrity record {}",
                path.display(),
                crate::store::integrity_record_path(path).display()
            );
            ExitCode::SUCCESS
        }
        Err(StoreError::Locked { path }) => fail(&format!(
            "the database {path} is held by a running gateway: stop it first"
        )),
        Err(e) => fail(&e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::StorageBackend;
    use crate::store::{test_server::server, PgStore, User};

    /// A config on a fresh PostgreSQL database, its sled path and admin socket in `dir`
    /// (neither there: no gateway runs).
    fn postgres_config(dir: &std::path::Path) -> (Config, PgStore) {
        let pg = server().fresh_database();
        let direct = PgStore::connect(&pg).expect("database");
        let mut config =
            Config::from_toml("", &dir.join("cli.toml"), std::iter::empty()).expect("empty config");
        config.storage.path = dir.join("portcullis.db");
        config.admin_socket = dir.join("admin.sock");
        config.storage.backend = StorageBackend::Postgres(pg);
        (config, direct)
    }

    #[test]
    fn user_invite_and_flow_commands_work_on_the_postgres_database_and_never_create_sled() {
        let dir = tempfile::tempdir().unwrap();
        let (config, direct) = postgres_config(dir.path());
        let mut alice = User::new("alice", 1);
        alice.email = Some("alice@example.com".into());
        assert!(direct.create_user(&alice).unwrap());

        // `user show` (no gateway running): read from PostgreSQL, not "no database at ...".
        database_for(&config, &UserCmd::List).expect("a postgres database is there");
        let shown = read_user(&config, "alice").expect("alice through store::open");
        assert_eq!(shown.username, "alice");
        assert_eq!(shown.email.as_deref(), Some("alice@example.com"));
        // `user disable` writes the shared database: another replica sees it.
        let _ = admin_command(
            &config,
            Command::UserDisable {
                username: "alice".into(),
            },
        );
        assert!(!direct.user("alice").unwrap().unwrap().active, "disabled");
        // `invite list` reads the same database (an empty list, not "no database at ...").
        let (reply, how) =
            invite::execute(&config, Command::InviteList, false).expect("invite list");
        assert!(reply.ok, "{}", reply.message);
        assert!(how.contains("postgres "), "{how}");
        // `flow check --user` finds the account there too.
        assert_eq!(
            flow_check::find_user(&config, "alice").unwrap().username,
            "alice"
        );
        assert!(
            !config.storage.path.exists(),
            "no sled database was created beside the config"
        );
    }

    #[test]
    fn check_config_names_the_backend_not_a_sled_path_for_postgres() {
        let dir = tempfile::tempdir().unwrap();
        let (config, _) = postgres_config(dir.path());
        let StorageBackend::Postgres(pg) = &config.storage.backend else {
            unreachable!()
        };
        let line = database_line(&config.storage);
        assert!(line.starts_with(&format!("postgres {}", pg.url)), "{line}");
        assert!(!line.contains("portcullis.db"), "{line}");
        assert_eq!(config.storage.describe(), format!("postgres {}", pg.url));
        let mut sled = config.storage.clone();
        sled.backend = StorageBackend::Sled;
        let line = database_line(&sled);
        assert!(
            line.contains("portcullis.db") && line.contains("not there yet"),
            "{line}"
        );
    }
}

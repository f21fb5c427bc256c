//! User and key administration: one set of commands, run either inside the gateway (reached
//! over its local socket) or directly against the database when no gateway holds it.

mod socket;

pub(crate) use socket::{send as send_to_gateway, serve as serve_socket};

use crate::config::PasswordPolicy;
use crate::password::{PasswordError, PasswordHasherPool};
use crate::secret::SecretString;
use crate::session::SessionService;
use crate::store::{new_username, Device, Store, StoreError, User};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// An administrative command. It can carry a password, held as a [`SecretString`]: `Debug`
/// redacts it, and it crosses the admin socket only inside the serialised command.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub(crate) enum Command {
    /// Add a user with a password; the username is stored in its canonical form.
    UserAdd {
        /// As typed; [`new_username`] checks and canonicalises it.
        username: String,
        /// Display name (`Remote-Name`); empty when `None`.
        name: Option<String>,
        /// Unique across users; where email codes and links go.
        email: Option<String>,
        /// Where SMS codes go.
        phone: Option<String>,
        /// Sent joined with commas in `Remote-Groups`, so none may contain a comma.
        groups: Vec<String>,
        /// Checked against the password policy, then hashed with argon2id.
        password: SecretString,
    },
    /// Set a user's password and end their sessions.
    UserPasswd {
        /// The user, in any form that canonicalises to theirs.
        username: String,
        /// Checked against the password policy, then hashed with argon2id.
        password: SecretString,
    },
    /// List every user.
    UserList,
    /// Show one user.
    UserShow {
        /// The user to show.
        username: String,
    },
    /// Refuse the user's sign-ins and end their sessions.
    UserDisable {
        /// The user to disable.
        username: String,
    },
    /// Let a disabled user sign in again.
    UserEnable {
        /// The user to enable.
        username: String,
    },
    /// Delete the user and end their sessions.
    UserRemove {
        /// The user to remove.
        username: String,
    },
    /// List a user's second-factor devices.
    UserDevices {
        /// Whose devices.
        username: String,
    },
    /// Remove one of a user's devices.
    UserDeviceRemove {
        /// Whose device.
        username: String,
        /// The device's id, as `user devices` lists it; another user's id is refused.
        id: String,
    },
    /// Re-read the session signing keys from the store (after `keys rotate` wrote them there).
    KeysReload,
    /// Rotate the session signing keys in the store: the active key is retired (it verifies
    /// the tokens it signed, which live at most `max_lifetime` seconds) and a new one signs.
    KeysRotate {
        /// The longest session lifetime of the config, in seconds.
        max_lifetime: i64,
    },
    /// Re-read the config file and put it in force, or refuse it and keep the running one.
    Reload,
    /// Issue a fresh set of recovery codes for a user who lost every factor, replacing any
    /// earlier set; the reply carries the codes (shown once).
    UserRecoveryCodes {
        /// The user.
        username: String,
        /// The recovery-code setup stage the set counts as enrolled by (its name under
        /// `[stages]`), or `cli` when the config has none.
        stage: String,
        /// What the user sees for the set ("Recovery codes").
        name: String,
        /// Codes in the set.
        count: u32,
        /// Characters per code.
        length: u32,
    },
    /// Issue an invitation; the reply carries its token (shown once: only its hash is kept).
    InviteCreate {
        /// The address the account gets.
        email: Option<String>,
        /// The display name the account gets.
        name: Option<String>,
        /// Groups the account joins.
        groups: Vec<String>,
        /// The only flow it works in (checked against the config by the CLI).
        flow: Option<String>,
        /// Seconds it stays valid.
        expires_in: i64,
        /// Spent by the first enrolment.
        single_use: bool,
    },
    /// List the invitations.
    InviteList,
    /// Withdraw an invitation by its id.
    InviteRevoke {
        /// The id `invite list` shows.
        id: String,
    },
    /// List the sign-in bans in force (`[regulation]`).
    BansList,
    /// Ban sign-in attempts: on an account (`user`), from an address (`ip`), or on an account
    /// from one address (both).
    BanAdd {
        /// The account, as typed at sign-in (compared lower-cased).
        user: Option<String>,
        /// The client address.
        ip: Option<String>,
        /// Seconds the ban lasts; `None`: until lifted.
        seconds: Option<i64>,
    },
    /// Lift a ban named as [`Command::BanAdd`] names it.
    BanRevoke {
        /// The account.
        user: Option<String>,
        /// The client address.
        ip: Option<String>,
    },
}

/// An invitation as shown to an operator: never its token or hash.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct InvitationView {
    /// What `invite revoke` takes.
    pub(crate) id: String,
    /// The flow it is bound to, if any.
    pub(crate) flow: Option<String>,
    /// The address it fixes.
    pub(crate) email: Option<String>,
    /// Groups it grants.
    pub(crate) groups: Vec<String>,
    /// Whether the first enrolment spends it.
    pub(crate) single_use: bool,
    /// Unix seconds.
    pub(crate) created: i64,
    /// Unix seconds.
    pub(crate) expires: i64,
}

/// A device as shown to an operator: never its secret material, and its address masked as the
/// sign-in pages show it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct DeviceView {
    /// The device's id (what `user device-remove` takes).
    pub(crate) id: String,
    /// Its class as stored: `email`, `sms`, `totp`, `static`, `webauthn`, `duo`.
    pub(crate) class: String,
    /// The name the user sees when choosing.
    pub(crate) name: String,
    /// The address codes go to, masked (`al***@example.com`); `None` when it has none.
    pub(crate) address: Option<String>,
    /// When it was enrolled, in unix seconds.
    pub(crate) created: i64,
    /// When it was last used to sign in, in unix seconds.
    pub(crate) last_used: Option<i64>,
}

impl From<&Device> for DeviceView {
    fn from(d: &Device) -> Self {
        Self {
            id: d.id.clone(),
            class: d.class.as_str().to_string(),
            name: d.name.clone(),
            address: if d.verify_only() {
                d.address_hash.as_ref().map(|_| "(verify only)".to_string())
            } else {
                Some(crate::flow::otp::mask(&d.address))
            },
            created: d.created,
            last_used: d.last_used,
        }
    }
}

/// A user as shown to an operator: everything but the hash.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct UserView {
    /// Canonical username.
    pub(crate) username: String,
    /// Display name, possibly empty.
    pub(crate) name: String,
    /// Email address, if any.
    pub(crate) email: Option<String>,
    /// Phone number, if any.
    pub(crate) phone: Option<String>,
    /// Group names.
    pub(crate) groups: Vec<String>,
    /// `false` once disabled: sign-ins are refused.
    pub(crate) active: bool,
    /// Whether a password hash is stored (never the hash itself).
    pub(crate) has_password: bool,
}

impl From<&User> for UserView {
    fn from(u: &User) -> Self {
        Self {
            username: u.username.clone(),
            name: u.name.clone(),
            email: u.email.clone(),
            phone: u.phone.clone(),
            groups: u.groups.clone(),
            active: u.active,
            has_password: u.password_hash.is_some(),
        }
    }
}

impl From<&crate::store::Invitation> for InvitationView {
    fn from(i: &crate::store::Invitation) -> Self {
        Self {
            id: i.id.clone(),
            flow: i.flow.clone(),
            email: i.fixed.email.clone(),
            groups: i.fixed.groups.clone(),
            single_use: i.single_use,
            created: i.created,
            expires: i.expires,
        }
    }
}

/// The answer to a command.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Reply {
    /// Whether the command succeeded.
    pub(crate) ok: bool,
    /// What was done, or why not, for the operator.
    pub(crate) message: String,
    /// The users listed or shown; empty for other commands.
    #[serde(default)]
    pub(crate) users: Vec<UserView>,
    /// The devices listed; empty for other commands.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) devices: Vec<DeviceView>,
    /// The invitations listed or created.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) invitations: Vec<InvitationView>,
    /// A new invitation's token, shown once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) token: Option<crate::secret::Secret<String>>,
}

/// Why a command was refused or failed. The message is shown to the operator as it is.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum AdminError {
    /// A field breaks a rule (username, group, email, password policy); the text names it.
    #[error("{0}")]
    Invalid(String),
    /// No user has this name.
    #[error("no user named `{0}`")]
    NoSuchUser(String),
    /// `user add` for a name that is taken (in its canonical form).
    #[error("a user named `{0}` already exists")]
    Exists(String),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Hashing the password failed.
    #[error(transparent)]
    Password(#[from] PasswordError),
    /// Reloading keys or revoking sessions through the live session service failed.
    #[error("session keys: {0}")]
    Keys(String),
    /// The new config was refused; the running one stays in force.
    #[error("reload refused, the running configuration stays in force: {0}")]
    Reload(String),
}

/// Runs commands against a store. Inside the gateway it also has the live session service, so
/// disabling a user cuts their sessions off at once.
pub(crate) struct Admin {
    /// Where users live.
    pub(crate) store: Arc<dyn Store>,
    /// Hashes new passwords with the configured argon2id cost.
    pub(crate) passwords: PasswordHasherPool,
    /// The running gateway's sessions, when the command runs inside it; `None` from the CLI,
    /// which then revokes through the store.
    pub(crate) sessions: Option<Arc<SessionService>>,
    /// The `[password]` rules new passwords are checked against.
    pub(crate) policy: PasswordPolicy,
    /// Where creation and revocation times are read: the gateway's clock inside it, the
    /// system clock from the CLI.
    pub(crate) clock: Arc<dyn crate::clock::Clock>,
    /// Reloads the running gateway's config; `None` from the CLI (nothing runs to reload).
    pub(crate) reloader: Option<Arc<crate::reload::Reloader>>,
    /// The running gateway's regulator, whose in-memory bans a ban command must change too;
    /// `None` from the CLI, which then works on the stored bans.
    pub(crate) regulator: Option<Arc<crate::regulation::Regulator>>,
}

/// Group names travel joined with commas in `Remote-Groups`: a comma inside one would make
/// an app read two groups (`staff,admins` is `staff` and `admins`), so it is refused, as are
/// control characters and surrounding spaces, which an app comparing names would not match.
fn valid_group(group: &str) -> Result<(), AdminError> {
    let problem = if group.is_empty() {
        Some("is empty")
    } else if group.contains(',') {
        Some("contains a comma (groups are sent joined with commas in Remote-Groups)")
    } else if group.chars().any(char::is_control) {
        Some("contains a control character")
    } else if group.trim() != group {
        Some("starts or ends with a space")
    } else {
        None
    };
    match problem {
        Some(p) => Err(AdminError::Invalid(format!(
            "group `{}` {p}",
            group.escape_debug()
        ))),
        None => Ok(()),
    }
}

/// A display name or phone number: any text but control characters, which cannot be sent in
/// a header and would break the user's every request.
fn valid_text(what: &str, v: &str) -> Result<(), AdminError> {
    if v.chars().any(char::is_control) {
        return Err(AdminError::Invalid(format!(
            "the {what} contains a control character"
        )));
    }
    Ok(())
}

fn valid_email(email: &str) -> Result<(), AdminError> {
    let parts: Vec<&str> = email.split('@').collect();
    if parts.len() == 2
        && !parts[0].is_empty()
        && parts[1].contains('.')
        && !email.contains(char::is_whitespace)
    {
        Ok(())
    } else {
        Err(AdminError::Invalid(format!(
            "`{email}` is not an email address"
        )))
    }
}

impl Admin {
    fn valid_password(&self, pw: &SecretString) -> Result<(), AdminError> {
        precheck_password(&self.policy, pw)
    }
}

fn precheck_password(policy: &PasswordPolicy, pw: &SecretString) -> Result<(), AdminError> {
    policy
        .check(pw.expose())
        .map_err(|v| AdminError::Invalid(v.to_string()))
}

fn check_new_user(
    groups: &[String],
    name: Option<&str>,
    phone: Option<&str>,
    email: Option<&str>,
) -> Result<(), AdminError> {
    for g in groups {
        valid_group(g)?;
    }
    if let Some(n) = name {
        valid_text("name", n)?;
    }
    if let Some(p) = phone {
        valid_text("phone number", p)?;
    }
    if let Some(e) = email {
        valid_email(e)?;
    }
    Ok(())
}

/// The checks of a command that need no database: the name, groups and other fields of a new
/// user, and the password policy. The CLI runs them before it opens (or creates) a database,
/// so a refused `user add` leaves nothing behind; [`Admin::execute`] runs them again.
///
/// # Errors
/// [`AdminError::Invalid`] naming the rule broken.
pub(crate) fn precheck(cmd: &Command, policy: &PasswordPolicy) -> Result<(), AdminError> {
    match cmd {
        Command::UserAdd {
            username,
            name,
            email,
            phone,
            groups,
            password,
        } => {
            new_username(username).map_err(AdminError::Invalid)?;
            check_new_user(groups, name.as_deref(), phone.as_deref(), email.as_deref())?;
            precheck_password(policy, password)
        }
        Command::UserPasswd { password, .. } => precheck_password(policy, password),
        _ => Ok(()),
    }
}

impl Admin {
    /// Runs one command and returns the reply for the operator.
    ///
    /// # Errors
    /// [`AdminError`] saying what was wrong. A refused command changes nothing; a failure to
    /// end sessions comes after the change itself was stored.
    ///
    /// # Security
    /// Whoever can call this administers every account: only the CLI (with access to the
    /// database) and the admin socket (mode 0600) reach it. Commands that take access away
    /// (`passwd`, `disable`, `remove`) also end the user's sessions.
    pub(crate) fn execute(&self, cmd: Command) -> Result<Reply, AdminError> {
        match cmd {
            Command::UserAdd {
                username,
                name,
                email,
                phone,
                groups,
                password,
            } => self.user_add(username, name, email, phone, groups, password),
            Command::UserPasswd { username, password } => self.user_passwd(&username, password),
            Command::UserList => self.user_list(),
            Command::UserShow { username } => {
                let user = self.existing(&username)?;
                Ok(Reply {
                    ok: true,
                    message: String::new(),
                    users: vec![UserView::from(&user)],
                    devices: Vec::new(),
                    invitations: Vec::new(),
                    token: None,
                })
            }
            Command::UserDisable { username } => self.user_disable(&username),
            Command::UserEnable { username } => {
                let mut user = self.existing(&username)?;
                user.active = true;
                self.store.put_user(&user)?;
                Ok(ok(format!("enabled user {}", user.username)))
            }
            Command::UserRemove { username } => self.user_remove(&username),
            Command::UserDevices { username } => self.user_devices(&username),
            Command::UserDeviceRemove { username, id } => self.user_device_remove(&username, &id),
            Command::KeysReload => self.keys_reload(),
            Command::KeysRotate { max_lifetime } => self.keys_rotate(max_lifetime),
            Command::Reload => self.reload(),
            Command::InviteCreate {
                email,
                name,
                groups,
                flow,
                expires_in,
                single_use,
            } => self.invite_create(
                crate::store::InvitationData {
                    email,
                    name,
                    groups,
                    attributes: Default::default(),
                },
                flow,
                expires_in,
                single_use,
            ),
            Command::InviteList => {
                let mut reply = ok(String::new());
                reply.invitations = self
                    .store
                    .invitations()?
                    .iter()
                    .map(InvitationView::from)
                    .collect();
                reply.message = format!("{} invitation(s)", reply.invitations.len());
                Ok(reply)
            }
            Command::InviteRevoke { id } => {
                if !self.store.remove_invitation(&id)? {
                    return Err(AdminError::Invalid(format!(
                        "no invitation with id `{}` (`portcullis invite list` shows them)",
                        id.escape_debug()
                    )));
                }
                tracing::info!(invitation = %id, outcome = "revoked", "invitation withdrawn by an operator");
                Ok(ok(format!("revoked invitation {id}")))
            }
            Command::BansList => self.bans_list(),
            Command::BanAdd { user, ip, seconds } => self.ban_add(user, ip, seconds),
            Command::BanRevoke { user, ip } => self.ban_revoke(user, ip),
            Command::UserRecoveryCodes {
                username,
                stage,
                name,
                count,
                length,
            } => {
                let user = self.existing(&username)?;
                let key = self.store.secret(crate::flow::recovery::HASH_SECRET)?;
                let (device, codes) = crate::flow::recovery::issue(
                    &key,
                    &user.username,
                    &name,
                    &stage,
                    count,
                    length,
                    self.clock.now(),
                );
                self.store.put_device(&device)?;
                tracing::info!(user = %user.username, count, outcome = "issued", "recovery codes issued by an operator");
                // The codes first, one a line; the sentence after them takes the "(via ...)"
                // the CLI appends.
                Ok(ok(format!(
                    "{}\nnew recovery codes for {}: give them to the user, they are not shown again; any earlier set no longer works",
                    codes.join("\n"),
                    user.username,
                )))
            }
        }
    }

    fn user_add(
        &self,
        typed: String,
        name: Option<String>,
        email: Option<String>,
        phone: Option<String>,
        groups: Vec<String>,
        password: SecretString,
    ) -> Result<Reply, AdminError> {
        let username = new_username(&typed).map_err(AdminError::Invalid)?;
        check_new_user(&groups, name.as_deref(), phone.as_deref(), email.as_deref())?;
        if let Some(e) = &email {
            if self.store.user_by_email(e)?.is_some() {
                return Err(AdminError::Invalid(format!(
                    "email `{e}` is already used by another user"
                )));
            }
        }
        self.valid_password(&password)?;
        // Finds `alice` for `Alice`, and an account stored before names were canonical.
        if let Some(existing) = self.store.user(&username)? {
            return Err(AdminError::Exists(existing.username));
        }
        let mut user = User::new(&username, self.clock.now());
        user.name = name.unwrap_or_default();
        user.email = email;
        user.phone = phone;
        user.groups = groups;
        user.password_hash = Some(self.passwords.hash_blocking(&password)?);
        self.store.put_user(&user)?;
        Ok(ok(if typed == username {
            format!("added user {username}")
        } else {
            format!("added user {username} (typed as {typed}; usernames are compared in this form)")
        }))
    }

    fn invite_create(
        &self,
        fixed: crate::store::InvitationData,
        flow: Option<String>,
        expires_in: i64,
        single_use: bool,
    ) -> Result<Reply, AdminError> {
        check_new_user(
            &fixed.groups,
            fixed.name.as_deref(),
            None,
            fixed.email.as_deref(),
        )?;
        if expires_in <= 0 {
            return Err(AdminError::Invalid("the lifetime must be positive".into()));
        }
        let now = self.clock.now();
        let (invitation, token) = crate::flow::stages::invitation::issue(
            fixed,
            flow,
            single_use,
            now,
            now.saturating_add(expires_in),
        );
        self.store.put_invitation(&invitation)?;
        tracing::info!(invitation = %invitation.id, single_use, outcome = "issued", "invitation issued by an operator");
        let mut reply = ok(format!("created invitation {}", invitation.id));
        reply.invitations = vec![InvitationView::from(&invitation)];
        reply.token = Some(crate::secret::Secret::new(token.expose().to_string()));
        Ok(reply)
    }

    fn user_passwd(&self, username: &str, password: SecretString) -> Result<Reply, AdminError> {
        let mut user = self.existing(username)?;
        self.valid_password(&password)?;
        user.password_hash = Some(self.passwords.hash_blocking(&password)?);
        self.store.put_user(&user)?;
        self.revoke_sessions(&user.username)?;
        Ok(ok(format!(
            "changed the password of {}; their sessions were ended",
            user.username
        )))
    }

    fn user_list(&self) -> Result<Reply, AdminError> {
        let mut users: Vec<UserView> = self.store.users()?.iter().map(UserView::from).collect();
        users.sort_by(|a, b| a.username.cmp(&b.username));
        Ok(Reply {
            ok: true,
            message: format!("{} user(s)", users.len()),
            users,
            devices: Vec::new(),
            invitations: Vec::new(),
            token: None,
        })
    }

    fn user_disable(&self, username: &str) -> Result<Reply, AdminError> {
        let mut user = self.existing(username)?;
        user.active = false;
        self.store.put_user(&user)?;
        self.revoke_sessions(&user.username)?;
        Ok(ok(format!(
            "disabled user {}; their sessions were ended",
            user.username
        )))
    }

    fn user_remove(&self, username: &str) -> Result<Reply, AdminError> {
        let user = self.existing(username)?;
        if !self.store.remove_user(&user.username)? {
            return Err(AdminError::NoSuchUser(username.to_string()));
        }
        self.revoke_sessions(&user.username)?;
        Ok(ok(format!(
            "removed user {}; their sessions were ended",
            user.username
        )))
    }

    fn user_devices(&self, username: &str) -> Result<Reply, AdminError> {
        let user = self.existing(username)?;
        let devices: Vec<DeviceView> = self
            .store
            .devices(&user.username)?
            .iter()
            .map(DeviceView::from)
            .collect();
        let mut reply = ok(format!("{} device(s) of {}", devices.len(), user.username));
        reply.devices = devices;
        Ok(reply)
    }

    /// # Security
    /// The store keys devices by owner and id, so an id of another user's device is not found
    /// under this user and nothing is removed.
    fn user_device_remove(&self, username: &str, id: &str) -> Result<Reply, AdminError> {
        let user = self.existing(username)?;
        if !self.store.remove_device(&user.username, id)? {
            return Err(AdminError::Invalid(format!(
                "{} has no device with id `{}` (`portcullis user devices {}` lists theirs)",
                user.username,
                id.escape_debug(),
                user.username
            )));
        }
        // As the settings page does: a session may have been opened with the device (a lost
        // phone, a key in the wrong hands); removing it ends them all.
        self.revoke_sessions(&user.username)?;
        Ok(ok(format!(
            "removed device {id} of {}; their sessions were ended",
            user.username
        )))
    }

    fn keys_reload(&self) -> Result<Reply, AdminError> {
        match &self.sessions {
            Some(s) => {
                s.reload_keys()
                    .map_err(|e| AdminError::Keys(e.to_string()))?;
                Ok(ok("reloaded session keys".into()))
            }
            None => Ok(ok("no running gateway to reload keys in".into())),
        }
    }

    fn keys_rotate(&self, max_lifetime: i64) -> Result<Reply, AdminError> {
        let keys = |e: &dyn std::fmt::Display| AdminError::Keys(e.to_string());
        let kid = match &self.sessions {
            Some(s) => s.rotate_keys(max_lifetime).map_err(|e| keys(&e))?,
            None => {
                crate::session::KeyFile::rotate(
                    self.store.as_ref(),
                    max_lifetime,
                    self.clock.as_ref(),
                )
                .map_err(|e| keys(&e))?
                .0
            }
        };
        Ok(ok(format!(
            "new signing key {kid}; the key it replaces verifies the tokens it signed until they expire"
        )))
    }

    fn reload(&self) -> Result<Reply, AdminError> {
        match &self.reloader {
            Some(r) => match r.reload("admin socket") {
                Ok(done) => Ok(ok(done.message())),
                Err(e) => Err(AdminError::Reload(e.to_string())),
            },
            None => Err(AdminError::Reload("no running gateway to reload".into())),
        }
    }

    fn existing(&self, username: &str) -> Result<User, AdminError> {
        self.store
            .user(username)?
            .ok_or_else(|| AdminError::NoSuchUser(username.to_string()))
    }

    fn revoke_sessions(&self, username: &str) -> Result<(), AdminError> {
        match &self.sessions {
            Some(s) => s
                .revoke_user(username)
                .map_err(|e| AdminError::Keys(e.to_string()))?,
            None => self
                .store
                .revoke_user_sessions(username, self.clock.now_ms())?,
        }
        crate::audit::record(&crate::audit::Event {
            user: username,
            action: "session_revoke",
            target: "",
            outcome: "done",
            client: "admin",
            ended_sessions: 0,
        });
        Ok(())
    }
}

/// `portcullis bans`: run on the gateway's own regulator, or on the stored bans offline.
impl Admin {
    fn regulator(&self) -> Result<Arc<crate::regulation::Regulator>, AdminError> {
        if let Some(r) = &self.regulator {
            return Ok(r.clone());
        }
        let r = crate::regulation::Regulator::new(
            crate::config::Regulation::default(),
            self.store.clone(),
            Arc::new(crate::clock::SystemClock),
        )?;
        Ok(Arc::new(r))
    }

    fn bans_list(&self) -> Result<Reply, AdminError> {
        let bans = self.regulator()?.list()?;
        let mut lines: Vec<String> = bans
            .iter()
            .map(|b| {
                let until = b
                    .until
                    .map_or_else(|| "until lifted".to_string(), |u| format!("until {u}"));
                format!(
                    "{}\t{}\tsince {}\t{until}",
                    b.subject.escape_debug(),
                    b.reason,
                    b.since
                )
            })
            .collect();
        lines.push(format!("{} ban(s) in force", bans.len()));
        Ok(ok(lines.join("\n")))
    }

    fn ban_add(
        &self,
        user: Option<String>,
        ip: Option<String>,
        seconds: Option<i64>,
    ) -> Result<Reply, AdminError> {
        let subject = ban_subject(user, ip)?;
        if seconds.is_some_and(|s| s <= 0) {
            return Err(AdminError::Invalid("--for must be longer than zero".into()));
        }
        let now = crate::clock::now();
        let until = seconds.map(|s| now.saturating_add(s));
        self.regulator()?
            .ban(subject.clone(), until, "operator", now)?;
        Ok(ok(format!("banned {}", subject.key().escape_debug())))
    }

    fn ban_revoke(&self, user: Option<String>, ip: Option<String>) -> Result<Reply, AdminError> {
        let subject = ban_subject(user, ip)?;
        if !self.regulator()?.revoke(&subject)? {
            return Err(AdminError::Invalid(format!(
                "no ban on {} (`portcullis bans list` shows them)",
                subject.key().escape_debug()
            )));
        }
        Ok(ok(format!(
            "lifted the ban on {}",
            subject.key().escape_debug()
        )))
    }
}

/// What a ban command names: an account, an address, or an account from an address.
fn ban_subject(
    user: Option<String>,
    ip: Option<String>,
) -> Result<crate::regulation::Subject, AdminError> {
    use crate::regulation::{account_key, Subject};
    let user = match user {
        Some(u) => {
            let u = account_key(&u);
            if u.is_empty() || u.chars().count() > 256 || u.chars().any(char::is_control) {
                return Err(AdminError::Invalid(
                    "--user must be 1 to 256 characters without control characters".into(),
                ));
            }
            Some(u)
        }
        None => None,
    };
    let ip = match ip {
        Some(a) => {
            let addr: std::net::IpAddr = a.trim().parse().map_err(|_| {
                AdminError::Invalid(format!("--ip `{}` is not an IP address", a.escape_debug()))
            })?;
            Some(crate::regulation::address_key(&addr.to_string()))
        }
        None => None,
    };
    match (user, ip) {
        (Some(account), Some(ip)) => Ok(Subject::Pair { account, ip }),
        (Some(account), None) => Ok(Subject::Account(account)),
        (None, Some(ip)) => Ok(Subject::Ip(ip)),
        (None, None) => Err(AdminError::Invalid("name --user, --ip or both".into())),
    }
}

fn ok(message: String) -> Reply {
    Reply {
        ok: true,
        message,
        users: Vec::new(),
        devices: Vec::new(),
        invitations: Vec::new(),
        token: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWORD: &str = "correct horse battery staple";

    fn with_password() -> [Command; 2] {
        [
            Command::UserAdd {
                username: "alice".into(),
                name: None,
                email: None,
                phone: None,
                groups: Vec::new(),
                password: SecretString::new(PASSWORD),
            },
            Command::UserPasswd {
                username: "alice".into(),
                password: SecretString::new(PASSWORD),
            },
        ]
    }

    #[test]
    fn a_commands_debug_names_the_user_but_never_the_password() {
        for cmd in with_password() {
            let shown = format!("{cmd:?}");
            assert!(shown.contains("alice"), "{shown}");
            assert!(!shown.contains(PASSWORD), "{shown}");
            assert!(!shown.contains("horse"), "{shown}");
        }
    }

    /// The admin socket carries the command as JSON: the password must survive the trip.
    #[test]
    fn a_command_keeps_its_password_across_the_admin_socket_encoding() {
        for cmd in with_password() {
            let line = serde_json::to_string(&cmd).expect("serialises");
            let back: Command = serde_json::from_str(&line).expect("deserialises");
            let (Command::UserAdd { password, .. } | Command::UserPasswd { password, .. }) = back
            else {
                panic!("{back:?}");
            };
            assert_eq!(password.expose(), PASSWORD);
        }
    }
}

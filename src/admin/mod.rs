//! User and key administration: one set of commands, run either inside the gateway (reached
//! over its local socket) or directly against the database when no gateway holds it.

mod socket;

pub use socket::{send as send_to_gateway, serve as serve_socket};

use crate::config::PasswordPolicy;
use crate::password::{PasswordError, PasswordHasherPool};
use crate::secret::SecretString;
use crate::session::SessionService;
use crate::store::{new_username, Store, StoreError, User};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// An administrative command. Not `Debug`: it can carry a password.
#[derive(Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Command {
    UserAdd {
        username: String,
        name: Option<String>,
        email: Option<String>,
        phone: Option<String>,
        groups: Vec<String>,
        password: String,
    },
    UserPasswd {
        username: String,
        password: String,
    },
    UserList,
    UserShow {
        username: String,
    },
    UserDisable {
        username: String,
    },
    UserEnable {
        username: String,
    },
    UserRemove {
        username: String,
    },
    KeysReload,
}

/// A user as shown to an operator: everything but the hash.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct UserView {
    pub username: String,
    pub name: String,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub groups: Vec<String>,
    pub active: bool,
    pub has_password: bool,
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

/// The answer to a command.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Reply {
    pub ok: bool,
    pub message: String,
    #[serde(default)]
    pub users: Vec<UserView>,
}

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{0}")]
    Invalid(String),
    #[error("no user named `{0}`")]
    NoSuchUser(String),
    #[error("a user named `{0}` already exists")]
    Exists(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Password(#[from] PasswordError),
    #[error("session keys: {0}")]
    Keys(String),
}

/// Runs commands against a store. Inside the gateway it also has the live session service, so
/// disabling a user cuts their sessions off at once.
pub struct Admin {
    pub store: Arc<dyn Store>,
    pub passwords: PasswordHasherPool,
    pub sessions: Option<Arc<SessionService>>,
    /// The `[password]` rules new passwords are checked against.
    pub policy: PasswordPolicy,
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
    fn valid_password(&self, pw: &str) -> Result<(), AdminError> {
        precheck_password(&self.policy, pw)
    }
}

fn precheck_password(policy: &PasswordPolicy, pw: &str) -> Result<(), AdminError> {
    policy
        .check(pw)
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
pub fn precheck(cmd: &Command, policy: &PasswordPolicy) -> Result<(), AdminError> {
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
    /// Runs one command.
    ///
    /// # Errors
    /// [`AdminError`] saying what was wrong; nothing is changed in that case.
    pub fn execute(&self, cmd: Command) -> Result<Reply, AdminError> {
        match cmd {
            Command::UserAdd {
                username,
                name,
                email,
                phone,
                groups,
                password,
            } => {
                let typed = username;
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
                let mut user = User::new(&username);
                user.name = name.unwrap_or_default();
                user.email = email;
                user.phone = phone;
                user.groups = groups;
                user.password_hash =
                    Some(self.passwords.hash_blocking(&SecretString::new(password))?);
                self.store.put_user(&user)?;
                Ok(ok(if typed == username {
                    format!("added user {username}")
                } else {
                    format!("added user {username} (typed as {typed}; usernames are compared in this form)")
                }))
            }
            Command::UserPasswd { username, password } => {
                let mut user = self.existing(&username)?;
                self.valid_password(&password)?;
                user.password_hash =
                    Some(self.passwords.hash_blocking(&SecretString::new(password))?);
                self.store.put_user(&user)?;
                self.revoke_sessions(&user.username)?;
                Ok(ok(format!(
                    "changed the password of {}; their sessions were ended",
                    user.username
                )))
            }
            Command::UserList => {
                let mut users: Vec<UserView> =
                    self.store.users()?.iter().map(UserView::from).collect();
                users.sort_by(|a, b| a.username.cmp(&b.username));
                Ok(Reply {
                    ok: true,
                    message: format!("{} user(s)", users.len()),
                    users,
                })
            }
            Command::UserShow { username } => {
                let user = self.existing(&username)?;
                Ok(Reply {
                    ok: true,
                    message: String::new(),
                    users: vec![UserView::from(&user)],
                })
            }
            Command::UserDisable { username } => {
                let mut user = self.existing(&username)?;
                user.active = false;
                self.store.put_user(&user)?;
                self.revoke_sessions(&user.username)?;
                Ok(ok(format!(
                    "disabled user {}; their sessions were ended",
                    user.username
                )))
            }
            Command::UserEnable { username } => {
                let mut user = self.existing(&username)?;
                user.active = true;
                self.store.put_user(&user)?;
                Ok(ok(format!("enabled user {}", user.username)))
            }
            Command::UserRemove { username } => {
                let user = self.existing(&username)?;
                if !self.store.remove_user(&user.username)? {
                    return Err(AdminError::NoSuchUser(username));
                }
                self.revoke_sessions(&user.username)?;
                Ok(ok(format!(
                    "removed user {}; their sessions were ended",
                    user.username
                )))
            }
            Command::KeysReload => match &self.sessions {
                Some(s) => {
                    s.reload_keys()
                        .map_err(|e| AdminError::Keys(e.to_string()))?;
                    Ok(ok("reloaded session keys".into()))
                }
                None => Ok(ok("no running gateway to reload keys in".into())),
            },
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
                .map_err(|e| AdminError::Keys(e.to_string())),
            None => Ok(self
                .store
                .revoke_user_sessions(username, crate::clock::now_ms())?),
        }
    }
}

fn ok(message: String) -> Reply {
    Reply {
        ok: true,
        message,
        users: Vec::new(),
    }
}

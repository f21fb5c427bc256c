//! User and key administration: one set of commands, run either inside the gateway (reached
//! over its local socket) or directly against the database when no gateway holds it.

mod socket;

pub use socket::{send as send_to_gateway, serve as serve_socket};

use crate::password::{PasswordError, PasswordHasherPool};
use crate::secret::SecretString;
use crate::session::SessionService;
use crate::store::{Store, StoreError, User};
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
}

fn valid_username(name: &str) -> Result<(), AdminError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@'));
    if ok {
        Ok(())
    } else {
        Err(AdminError::Invalid(format!(
            "`{name}` is not a valid username (1-64 of letters, digits, . _ - @)"
        )))
    }
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

fn valid_password(pw: &str) -> Result<(), AdminError> {
    if pw.is_empty() {
        return Err(AdminError::Invalid("the password is empty".into()));
    }
    if pw.len() > 1024 {
        return Err(AdminError::Invalid(
            "the password is longer than 1024 bytes".into(),
        ));
    }
    Ok(())
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
                valid_username(&username)?;
                if let Some(e) = &email {
                    valid_email(e)?;
                    if self.store.user_by_email(e)?.is_some() {
                        return Err(AdminError::Invalid(format!(
                            "email `{e}` is already used by another user"
                        )));
                    }
                }
                valid_password(&password)?;
                if self.store.user(&username)?.is_some() {
                    return Err(AdminError::Exists(username));
                }
                let mut user = User::new(&username);
                user.name = name.unwrap_or_default();
                user.email = email;
                user.phone = phone;
                user.groups = groups;
                user.password_hash =
                    Some(self.passwords.hash_blocking(&SecretString::new(password))?);
                self.store.put_user(&user)?;
                Ok(ok(format!("added user {username}")))
            }
            Command::UserPasswd { username, password } => {
                valid_password(&password)?;
                let mut user = self.existing(&username)?;
                user.password_hash =
                    Some(self.passwords.hash_blocking(&SecretString::new(password))?);
                self.store.put_user(&user)?;
                self.revoke_sessions(&username)?;
                Ok(ok(format!(
                    "changed the password of {username}; their sessions were ended"
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
                self.revoke_sessions(&username)?;
                Ok(ok(format!(
                    "disabled user {username}; their sessions were ended"
                )))
            }
            Command::UserEnable { username } => {
                let mut user = self.existing(&username)?;
                user.active = true;
                self.store.put_user(&user)?;
                Ok(ok(format!("enabled user {username}")))
            }
            Command::UserRemove { username } => {
                if !self.store.remove_user(&username)? {
                    return Err(AdminError::NoSuchUser(username));
                }
                self.revoke_sessions(&username)?;
                Ok(ok(format!(
                    "removed user {username}; their sessions were ended"
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

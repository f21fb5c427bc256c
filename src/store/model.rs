//! The records the gateway keeps: users and session bookkeeping.

use serde::{Deserialize, Serialize};

/// An account. `password_hash` is an argon2id PHC string; `None` means no password is set and
/// password stages always fail for this user.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct User {
    pub username: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub phone: Option<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default = "yes")]
    pub active: bool,
    #[serde(default)]
    pub password_hash: Option<String>,
    #[serde(default)]
    pub created: i64,
}

fn yes() -> bool {
    true
}

impl User {
    pub fn new(username: impl Into<String>) -> Self {
        Self {
            username: username.into(),
            name: String::new(),
            email: None,
            phone: None,
            groups: Vec::new(),
            active: true,
            password_hash: None,
            created: crate::clock::now(),
        }
    }

    /// The name to show: the display name, or the username when none is set.
    pub fn display_name(&self) -> &str {
        if self.name.is_empty() {
            &self.username
        } else {
            &self.name
        }
    }
}

/// A signed-in session, kept so it can be listed and revoked; the cookie itself is the JWT.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SessionRecord {
    pub sid: String,
    pub username: String,
    pub issued: i64,
    pub expires: i64,
}

/// The kind of second factor a device is: config's type, stored as its name.
pub use crate::config::DeviceClass;

/// A confirmed second factor: an address a code was sent to and came back from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Device {
    pub id: String,
    pub username: String,
    pub class: DeviceClass,
    /// What the user sees when choosing between devices ("Email", "Work phone").
    pub name: String,
    /// The address codes go to. Empty for verify-only devices, which keep only `address_hash`.
    pub address: String,
    /// SHA-256 of the normalised address, for verify-only devices.
    #[serde(default)]
    pub address_hash: Option<String>,
    /// The setup stage that enrolled it; its delivery settings are used to reach it again.
    pub stage: String,
    pub created: i64,
    #[serde(default)]
    pub last_used: Option<i64>,
}

impl Device {
    /// Verify-only devices proved an address once but cannot be sent to again.
    pub fn verify_only(&self) -> bool {
        self.address.is_empty()
    }
}

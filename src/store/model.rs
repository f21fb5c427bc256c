//! The records the gateway keeps: users and session bookkeeping.

use serde::{Deserialize, Serialize};

/// An account. `password_hash` is an argon2id PHC string; `None` means no password is set and
/// password stages always fail for this user.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct User {
    /// The canonical username ([`super::canonical_username`]): the account's key.
    pub username: String,
    /// Display name; empty when none is set.
    #[serde(default)]
    pub name: String,
    /// Email address, unique across users; where email codes and links go.
    #[serde(default)]
    pub email: Option<String>,
    /// Phone number, where SMS codes go.
    #[serde(default)]
    pub phone: Option<String>,
    /// Group names, checked against an app's `allowed_groups`.
    #[serde(default)]
    pub groups: Vec<String>,
    /// `false` once disabled: every sign-in is refused.
    #[serde(default = "yes")]
    pub active: bool,
    /// The argon2id PHC string, or `None` when no password is set.
    #[serde(default)]
    pub password_hash: Option<String>,
    /// When the account was created, in unix seconds.
    #[serde(default)]
    pub created: i64,
    /// Free-form attributes (`attributes.<key>` of a prompt or an invitation), kept for apps
    /// and policies; never a credential.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub attributes: std::collections::BTreeMap<String, String>,
}

fn yes() -> bool {
    true
}

impl User {
    /// An active account named `username` (already canonical), created at `created` (unix
    /// seconds, from the caller's [`crate::clock::Clock`]), with no name, address, group or
    /// password.
    pub fn new(username: impl Into<String>, created: i64) -> Self {
        Self {
            username: username.into(),
            name: String::new(),
            email: None,
            phone: None,
            groups: Vec::new(),
            active: true,
            password_hash: None,
            created,
            attributes: Default::default(),
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
    /// The session's id (the token's `sid`).
    pub sid: String,
    /// Whose session it is.
    pub username: String,
    /// Issue time, in unix seconds.
    pub issued: i64,
    /// Expiry, in unix seconds.
    pub expires: i64,
    /// The client address the session was issued to (as the gateway trusts it); empty in
    /// records written before it was kept.
    #[serde(default)]
    pub client: String,
    /// The browser that signed in, shortened from its `User-Agent` ("Firefox 128 on Linux");
    /// never the header itself. Empty in older records.
    #[serde(default)]
    pub browser: String,
    /// When a request last came with the session, in unix seconds, as last written (the
    /// gateway keeps the live value in memory and writes it every few minutes).
    #[serde(default)]
    pub last_seen: Option<i64>,
}

/// The kind of second factor a device is: config's type, stored as its name.
pub use crate::config::DeviceClass;

/// A confirmed second factor: an address a code was sent to and came back from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Device {
    /// A random id that names the device in forms and in the store.
    pub id: String,
    /// The owner's canonical username.
    pub username: String,
    /// How codes reach it.
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
    /// When it was enrolled, in unix seconds.
    pub created: i64,
    /// When a code sent to it last came back, in unix seconds.
    #[serde(default)]
    pub last_used: Option<i64>,
    /// Class-specific material, opaque to the store: for `totp` the secret sealed under the
    /// device key, for `static` the codes' hashes, for `webauthn` the credential, for `duo`
    /// Duo's user id. `None` for email and SMS devices, whose material is `address`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

impl Device {
    /// Verify-only devices proved an address once but cannot be sent to again.
    pub fn verify_only(&self) -> bool {
        self.address.is_empty()
    }
}

/// An invitation to enrol: a link an operator hands out (`portcullis invite create`). Its
/// token is `<id>.<secret>`; only the secret's SHA-256 is kept.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Invitation {
    /// A random public id: lists and `invite revoke` name it; the token starts with it.
    pub id: String,
    /// Hex SHA-256 of the token's secret part, compared in constant time.
    pub token_hash: String,
    /// The only flow (slug) it works in; `None` for any flow with an invitation stage.
    #[serde(default)]
    pub flow: Option<String>,
    /// What it writes into the account, whatever the visitor types.
    #[serde(default)]
    pub fixed: InvitationData,
    /// Spent by the first enrolment that uses it.
    pub single_use: bool,
    /// When it was made, in unix seconds.
    pub created: i64,
    /// When it stops working, in unix seconds (exclusive).
    pub expires: i64,
}

/// The fixed data an invitation carries into the account it enrols.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct InvitationData {
    /// The address the account gets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// The display name the account gets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Groups the account joins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// Attributes the account gets.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub attributes: std::collections::BTreeMap<String, String>,
}

impl InvitationData {
    /// Writes this data over what a visitor typed: the invitation wins.
    pub fn apply(
        &self,
        email: &mut Option<String>,
        name: &mut Option<String>,
        attributes: &mut std::collections::BTreeMap<String, String>,
    ) {
        if let Some(e) = &self.email {
            *email = Some(e.clone());
        }
        if let Some(n) = &self.name {
            *name = Some(n.clone());
        }
        attributes.extend(self.attributes.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
}

/// A ban on sign-in attempts (`[regulation]`, `portcullis bans`): a client address, an
/// account from one address, or an account from everywhere.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Ban {
    /// What is banned: `ip:<address>`, `user:<account>@<address>` or `user:<account>`.
    pub subject: String,
    /// When it was made, in unix seconds.
    pub since: i64,
    /// When it ends, in unix seconds (exclusive); `None`: until an operator lifts it.
    pub until: Option<i64>,
    /// Why: `failures`, `slow-down`, `locked` (100 consecutive failures) or `operator`.
    pub reason: String,
}

impl Ban {
    /// Whether the ban holds at `now`.
    #[must_use]
    pub fn in_force(&self, now: i64) -> bool {
        self.until.is_none_or(|u| u > now)
    }

    /// The reason of a ban an operator set (`portcullis bans add`).
    pub const OPERATOR: &'static str = "operator";

    /// Whether `new`, written over this ban, replaces it: an operator's ban always does; any
    /// other is dropped while this one is still in force at `new.since` and lasts at least as
    /// long (so a replica's short slow-down never cuts another replica's longer ban short).
    #[must_use]
    pub fn replaced_by(&self, new: &Ban) -> bool {
        let kept = match (self.until, new.until) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(old), Some(new)) => old >= new,
        };
        new.reason == Self::OPERATOR || !self.in_force(new.since) || !kept
    }
}

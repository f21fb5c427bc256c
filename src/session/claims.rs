//! What a session cookie says about its holder.

use serde::{Deserialize, Serialize};

/// The session JWT's claims. `amr` lists the stage kinds passed to get it; `sid` names the
/// session so it can be revoked before `exp`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    pub sub: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub email: String,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub amr: Vec<String>,
    pub sid: String,
    pub iat: i64,
    pub exp: i64,
    pub iss: String,
}

impl Claims {
    pub fn in_any_group(&self, allowed: &[String]) -> bool {
        self.groups.iter().any(|g| allowed.contains(g))
    }
}

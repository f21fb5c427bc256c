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
    /// Issue time in milliseconds, so a revocation in the same second as a sign-in is ordered
    /// correctly. Absent in tokens that predate it; then `iat` is taken at the end of its second.
    #[serde(default)]
    pub iat_ms: i64,
}

impl Claims {
    /// When the token was issued, in milliseconds.
    pub fn issued_ms(&self) -> i64 {
        if self.iat_ms > 0 {
            self.iat_ms
        } else {
            self.iat * 1000 + 999
        }
    }
}

impl Claims {
    pub fn in_any_group(&self, allowed: &[String]) -> bool {
        self.groups.iter().any(|g| allowed.contains(g))
    }
}

//! What a session cookie says about its holder.

use http::HeaderValue;
use serde::{Deserialize, Serialize};
use std::sync::OnceLock;

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
    /// The identity as header values, built on first use. A verified session is shared by
    /// all its requests, so the values are built once per session, not once per request.
    #[serde(skip)]
    pub(crate) identity: IdentityValues,
}

/// `sub`, `name`, `email` and the comma-joined `groups` as header values (`None` when one of
/// them holds bytes a header value cannot). Not part of what claims are: equal claims are
/// equal whether or not this has been built.
#[derive(Default, Clone)]
pub struct IdentityValues(OnceLock<Option<[HeaderValue; 4]>>);

impl PartialEq for IdentityValues {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for IdentityValues {}

impl std::fmt::Debug for IdentityValues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IdentityValues")
    }
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
    /// The identity as header values: user, name, email, groups (comma-separated).
    /// `None` when a claim holds bytes not allowed in a header value.
    pub fn identity_values(&self) -> Option<&[HeaderValue; 4]> {
        self.identity
            .0
            .get_or_init(|| {
                // Raw UTF-8 bytes: display names are often not ASCII ("José"), and header
                // values may carry such bytes; control characters are still refused.
                let value = |s: &str| HeaderValue::from_bytes(s.as_bytes()).ok();
                Some([
                    value(&self.sub)?,
                    value(&self.name)?,
                    value(&self.email)?,
                    value(&self.groups.join(","))?,
                ])
            })
            .as_ref()
    }

    pub fn in_any_group(&self, allowed: &[String]) -> bool {
        self.groups.iter().any(|g| allowed.contains(g))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(name: &str) -> Claims {
        Claims {
            sub: "jose".into(),
            name: name.into(),
            email: "jose@example.com".into(),
            groups: vec!["staff".into(), "ops".into()],
            amr: vec![],
            sid: "s".into(),
            iat: 0,
            exp: 0,
            iss: "portcullis".into(),
            iat_ms: 0,
            identity: Default::default(),
        }
    }

    #[test]
    fn identity_values_carry_utf8_names_and_joined_groups() {
        let c = claims("José Müller");
        let [user, name, _, groups] = c.identity_values().expect("values");
        assert_eq!(user, "jose");
        assert_eq!(name.as_bytes(), "José Müller".as_bytes());
        assert_eq!(groups, "staff,ops");
    }

    #[test]
    fn a_claim_with_a_line_break_is_never_a_header() {
        assert!(claims("Mallory\r\nRemote-User: admin")
            .identity_values()
            .is_none());
    }

    #[test]
    fn built_values_do_not_change_equality() {
        let a = claims("A");
        let b = a.clone();
        a.identity_values();
        assert_eq!(a, b);
    }
}

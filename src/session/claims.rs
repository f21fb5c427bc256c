//! What a session cookie says about its holder.

use super::Factors;
use http::HeaderValue;
use serde::{Deserialize, Serialize};
use std::sync::OnceLock;

/// The session JWT's claims. `amr` lists the stage kinds passed to get it, `factors` what they
/// proved, `flows` the flows completed to get it; `sid` names the session so it can be revoked
/// before `exp`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// The canonical username (`Remote-User`).
    pub sub: String,
    /// Display name (`Remote-Name`), possibly empty.
    #[serde(default)]
    pub name: String,
    /// Email address (`Remote-Email`), possibly empty.
    #[serde(default)]
    pub email: String,
    /// Group names (`Remote-Groups`, joined with commas), checked against `allowed_groups`.
    #[serde(default)]
    pub groups: Vec<String>,
    /// The stage kinds passed to get the session (`password`, `authenticator_email`, ...).
    #[serde(default)]
    pub amr: Vec<String>,
    /// The factors proved ([`Factors`] names: `password`, `email`, `sms`).
    #[serde(default)]
    pub factors: Vec<String>,
    /// The flow that issued the session first, then every flow a step-up completed on it.
    #[serde(default)]
    pub flows: Vec<String>,
    /// The session's id: what a revocation names.
    pub sid: String,
    /// Issue time, in seconds since the epoch.
    pub iat: i64,
    /// Expiry, in seconds since the epoch.
    pub exp: i64,
    /// The issuer the gateway signs with and requires.
    pub iss: String,
    /// Issue time in milliseconds, so a revocation in the same second as a sign-in is ordered
    /// correctly. Absent in tokens that predate it; then `iat` is taken at the end of its second.
    #[serde(default)]
    pub iat_ms: i64,
    /// The identity of the database that recorded the session
    /// ([`crate::store::DatabaseId`]): a token is good only with that database. Empty in
    /// tokens that predate it.
    #[serde(default)]
    pub db: String,
    /// The identity as header values, built on first use. A verified session is shared by
    /// all its requests, so the values are built once per session, not once per request.
    #[serde(skip)]
    pub(crate) identity: IdentityValues,
    /// [`Claims::proved`], built on first use like `identity`.
    #[serde(skip)]
    pub(crate) proof: ProofCache,
}

/// The factor bits of a session, built once per verified token. Not part of what claims are.
#[derive(Default, Clone)]
pub(crate) struct ProofCache(OnceLock<Factors>);

impl PartialEq for ProofCache {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for ProofCache {}

impl std::fmt::Debug for ProofCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProofCache")
    }
}

/// `sub`, `name`, `email` and the comma-joined `groups` as header values (`None` when one of
/// them holds bytes a header value cannot). Not part of what claims are: equal claims are
/// equal whether or not this has been built.
#[derive(Default, Clone)]
pub(crate) struct IdentityValues(OnceLock<Option<[HeaderValue; 4]>>);

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

    /// The factors this session proves: its `factors` claim, plus what the stage kinds in `amr`
    /// prove by themselves (tokens issued before the `factors` claim existed). Computed once
    /// per verified token; names this version does not know count for nothing.
    pub fn proved(&self) -> Factors {
        *self.proof.0.get_or_init(|| {
            let named = self.factors.iter().filter_map(|n| Factors::named(n));
            let kinds = self.amr.iter().map(|k| Factors::of_kind(k));
            named.chain(kinds).fold(Factors::NONE, Factors::with)
        })
    }

    /// Whether the session completed the flow `slug`.
    pub fn completed(&self, slug: &str) -> bool {
        self.flows.iter().any(|f| f == slug)
    }

    /// Whether the session holds at least one of the `allowed` groups (compared exactly).
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
            factors: vec![],
            flows: vec![],
            sid: "s".into(),
            iat: 0,
            exp: 0,
            iss: "portcullis".into(),
            iat_ms: 0,
            db: String::new(),
            identity: Default::default(),
            proof: Default::default(),
        }
    }

    #[test]
    fn proved_factors_come_from_the_claim_and_from_amr_kinds() {
        let mut c = claims("A");
        c.amr = vec![
            "identification".into(),
            "password".into(),
            "authenticator_validate".into(),
        ];
        c.factors = vec!["email".into(), "retina".into()];
        assert_eq!(c.proved(), Factors::PASSWORD.with(Factors::EMAIL));
        let mut old = claims("B");
        old.amr = vec!["identification".into(), "authenticator_validate".into()];
        assert_eq!(
            old.proved(),
            Factors::NONE,
            "a validation of unknown class proves nothing"
        );
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

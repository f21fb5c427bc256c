//! Signed identity assertions for upstreams that want to verify who a request is from rather
//! than trust a header: a short-lived EdDSA JWT with `aud` = the app, public keys published as
//! a JWKS. Signing costs tens of microseconds, so a token is reused for a session and app until
//! it is close to expiry.

use super::{Claims, KeyFile};
use crate::clock::{Clock, SystemClock};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use parking_lot::Mutex;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Arc;

/// How long an assertion is valid.
pub const LIFETIME_SECS: i64 = 60;
/// Re-sign when less than this is left, so upstreams never see one about to expire.
const REFRESH_SECS: i64 = 20;
/// Bound on cached assertions; past it the cache starts over.
const CACHE_LIMIT: usize = 100_000;

#[derive(Serialize)]
struct AssertionClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    name: &'a str,
    email: &'a str,
    groups: &'a [String],
    iat: i64,
    exp: i64,
}

/// Signs identity assertions with the newest Ed25519 key of the keys file and publishes every
/// key's public half, so upstreams keep verifying across a rotation.
pub struct AssertionSigner {
    kid: String,
    key: EncodingKey,
    jwks: String,
    issuer: String,
    cache: Mutex<HashMap<(String, usize), (String, i64)>>,
    /// Where `iat` and `exp` are read from.
    clock: Arc<dyn Clock>,
}

impl AssertionSigner {
    /// A signer over the newest assertion key in `file`, issuing as `issuer`.
    ///
    /// # Errors
    /// A message when the file holds no usable assertion key.
    pub fn new(file: &KeyFile, issuer: &str) -> Result<Self, String> {
        let last = file
            .assertion
            .last()
            .ok_or("no assertion key in the keys file")?;
        let key = EncodingKey::from_ed_pem(last.private_pem.expose().as_bytes())
            .map_err(|e| e.to_string())?;
        let keys: Vec<_> = file
            .assertion
            .iter()
            .map(|k| {
                serde_json::json!({
                    "kty": "OKP", "crv": "Ed25519", "x": k.public_x, "kid": k.kid,
                    "alg": "EdDSA", "use": "sig",
                })
            })
            .collect();
        Ok(Self {
            kid: last.kid.clone(),
            key,
            jwks: serde_json::json!({ "keys": keys }).to_string(),
            issuer: issuer.to_string(),
            cache: Mutex::new(HashMap::new()),
            clock: Arc::new(SystemClock),
        })
    }

    /// The same signer reading the time from `clock` (the system clock by default).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The public keys, as served at `/.portcullis/jwks.json`.
    pub fn jwks(&self) -> &str {
        &self.jwks
    }

    /// An assertion of `claims` for app `audience` (index `app` for the cache): a compact
    /// EdDSA JWT living [`LIFETIME_SECS`], never past the session's own `exp`.
    ///
    /// # Security
    /// The assertion carries the session's identity to an upstream: call it only for a session
    /// [`super::SessionService::verify`] accepted and for the app the request goes to, since
    /// `aud` is what stops one app replaying it at another.
    ///
    /// # Errors
    /// The signing error (not expected with a valid key).
    pub fn assertion(
        &self,
        claims: &Claims,
        app: usize,
        audience: &str,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        let now = self.clock.now();
        let key = (claims.sid.clone(), app);
        if let Some((token, exp)) = self.cache.lock().get(&key) {
            if exp - now > REFRESH_SECS {
                return Ok(token.clone());
            }
        }
        let exp = (now + LIFETIME_SECS).min(claims.exp);
        let body = AssertionClaims {
            iss: &self.issuer,
            sub: &claims.sub,
            aud: audience,
            name: &claims.name,
            email: &claims.email,
            groups: &claims.groups,
            iat: now,
            exp,
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        let token = jsonwebtoken::encode(&header, &body, &self.key)?;
        let mut cache = self.cache.lock();
        if cache.len() >= CACHE_LIMIT {
            cache.clear();
        }
        cache.insert(key, (token.clone(), exp));
        Ok(token)
    }
}

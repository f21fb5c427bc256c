//! Session cookies: issue a signed JWT at the end of a sign-in, verify it on every request,
//! revoke it at sign-out.

pub mod assertion;
pub mod browser;
mod claims;
pub mod cookie;
#[cfg(test)]
mod expiry_tests;
mod factors;
mod keys;
#[cfg(test)]
mod replica_tests;
mod revocation;
mod seen;

pub use assertion::AssertionSigner;
pub use claims::Claims;
pub use factors::{Factors, Requirement};
pub use keys::{AssertionKey, KeyError, KeyFile, Keyring, StoredKeys};
pub use revocation::RevocationList;
pub use seen::Seen;
use seen::{LastSeen, SeenAt};

use crate::clock::{Clock, SystemClock};
use crate::config::SessionConfig;
use crate::store::{SessionRecord, Store, StoreError};
use arc_swap::ArcSwap;
use hmac::{Hmac, Mac};
use jsonwebtoken::{Algorithm, Header, Validation};
use parking_lot::RwLock;
use sha2::Sha256;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Why a session cookie was not accepted. The reason goes to debug logs only: to the client
/// every one of them is simply "not signed in".
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The token's `kid` names no key of the keyring (rotated out, or forged).
    #[error("token signed with an unknown key")]
    UnknownKey,
    /// Malformed, wrong algorithm, bad signature, expired or another issuer.
    #[error("token rejected: {0}")]
    Invalid(#[from] jsonwebtoken::errors::Error),
    /// The session, or every session of its user up to a time, was revoked.
    #[error("session has been revoked")]
    Revoked,
    /// Signing a new token failed.
    #[error("cannot sign session: {0}")]
    Sign(jsonwebtoken::errors::Error),
    /// Recording a session or revocation failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The signing keys could not be read, stored or imported.
    #[error(transparent)]
    Keys(#[from] KeyError),
    /// The token was issued by another database than the one the gateway runs on (a database
    /// recreated or replaced since), whatever key signed it.
    #[error("token issued by another database")]
    OtherDatabase,
    /// A retired key signed the token, and no session recorded by this gateway matches it.
    #[error("token signed by a retired key for a session this gateway did not record")]
    Unrecorded,
}

/// What the sign-in established, to be turned into a cookie.
pub struct NewSession {
    /// The canonical username; becomes `sub`.
    pub username: String,
    /// Display name.
    pub name: String,
    /// Email address, possibly empty.
    pub email: String,
    /// The user's groups at sign-in.
    pub groups: Vec<String>,
    /// The stage kinds passed (see [`Claims::amr`]).
    pub amr: Vec<String>,
    /// The factors proved (see [`Claims::factors`]).
    pub factors: Factors,
    /// The flows completed to get it (see [`Claims::flows`]).
    pub flows: Vec<String>,
    /// Seconds until `exp` (the app's or the default session lifetime).
    pub lifetime_secs: i64,
}

/// How often the gateway reads the key set again to pick up what another replica changed
/// (retirements; a new key is picked up at once by the first token that names it).
pub const KEYS_REFRESH_EVERY: Duration = Duration::from_secs(30);

/// A verified token's claims and its session's last-seen cell.
type Verified = (Arc<Claims>, Arc<SeenAt>);

/// Seconds of clock skew tolerated on `exp`, by the full check and the cached one alike.
const LEEWAY_SECS: i64 = 5;

/// Bound on [`SessionService`]'s cache of verified tokens; past it the cache starts over. Only
/// tokens that passed the full check get in, so no client can fill it with made-up ones.
const VERIFIED_LIMIT: usize = 16_384;

/// The least time between two reloads of the key set caused by tokens naming a key this
/// replica does not know (a rotation on another replica): a flood of made-up key ids costs the
/// database one read a second at most.
pub const UNKNOWN_KID_RELOAD_EVERY: Duration = Duration::from_secs(1);

/// Issues and verifies session tokens with keys prepared once; verification is pure CPU plus
/// an in-memory revocation lookup.
pub struct SessionService {
    keyring: ArcSwap<Keyring>,
    assertions: ArcSwap<AssertionSigner>,
    /// The stored version of the key set in force.
    keys_version: AtomicI64,
    /// Serialises putting a key set in force, so an older one never replaces a newer one.
    keys_apply: parking_lot::Mutex<()>,
    /// When a token with an unknown key id last made the key set be read from the store.
    kid_reload: parking_lot::Mutex<Option<Instant>>,
    validation: Validation,
    revocations: RevocationList,
    store: Arc<dyn Store>,
    /// Where issue times, expiry checks and revocation times are read.
    clock: Arc<dyn Clock>,
    issuer: String,
    /// The database's identity: every token issued carries it, every token verified must.
    database: crate::store::DatabaseId,
    /// Tokens that passed the full check, with their claims. The same cookie comes with every
    /// request of a session, and decoding it and checking its HMAC again is most of what a
    /// signed-in request costs the gateway (about 4 µs against a few hundred ns for a lookup).
    /// A hit is still checked for expiry and revocation; a key change empties the cache.
    /// Each entry holds its session's last-seen cell, so a hit records the time with one
    /// atomic store and no lock.
    verified: RwLock<HashMap<Box<str>, Verified>>,
    /// When each session was last seen, in memory; written to the store every few minutes
    /// ([`SessionService::flush_seen`]), never on the request path.
    seen: LastSeen,
}

impl SessionService {
    /// Loads (or creates) the signing keys and the revocations; reads the time from the
    /// system clock. See [`SessionService::with_clock`].
    ///
    /// # Errors
    /// As [`SessionService::with_clock`].
    pub fn new(
        cfg: &SessionConfig,
        keys_path: PathBuf,
        store: Arc<dyn Store>,
    ) -> Result<Self, SessionError> {
        Self::with_clock(cfg, keys_path, store, Arc::new(SystemClock))
    }

    /// Loads the signing keys from the store (making them on the first start, or importing the
    /// keys file at `keys_path` an earlier version kept: see [`KeyFile::load_or_init`]) and the
    /// revocations still in force at `clock`'s now; returns a service that reads every time
    /// (issue, expiry, revocation) from `clock`.
    ///
    /// # Errors
    /// [`SessionError::Keys`] when the keys are unusable, [`SessionError::Store`] when
    /// revocations cannot be loaded.
    pub fn with_clock(
        cfg: &SessionConfig,
        keys_path: PathBuf,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, SessionError> {
        let stored = KeyFile::load_or_init(store.as_ref(), &keys_path, clock.as_ref())?;
        let now = clock.now();
        let revocations = RevocationList::from_store(store.as_ref(), now)?;
        let database = store.database_id()?;
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[&cfg.issuer]);
        validation.set_required_spec_claims(&["exp", "iat", "sub", "iss"]);
        validation.leeway = LEEWAY_SECS as u64;
        // jsonwebtoken would read the system clock; expiry is checked against `clock` instead
        // (see `verify_fully`).
        validation.validate_exp = false;
        let signer = Self::signer(&stored.file, &cfg.issuer, &clock)?;
        Ok(Self {
            keyring: ArcSwap::from_pointee(Keyring::from_file(&stored.file)),
            assertions: ArcSwap::from_pointee(signer),
            keys_version: AtomicI64::new(stored.version),
            keys_apply: parking_lot::Mutex::new(()),
            kid_reload: parking_lot::Mutex::new(None),
            validation,
            revocations,
            store,
            clock,
            issuer: cfg.issuer.clone(),
            database,
            verified: RwLock::new(HashMap::new()),
            seen: LastSeen::default(),
        })
    }

    fn signer(
        file: &KeyFile,
        issuer: &str,
        clock: &Arc<dyn Clock>,
    ) -> Result<AssertionSigner, KeyError> {
        Ok(AssertionSigner::new(file, issuer)
            .map_err(|reason| KeyError::Stored { reason })?
            .with_clock(clock.clone()))
    }

    /// Reads the key set from the store and puts it in force if it changed (a rotation here or
    /// on another replica); returns whether it did. The gateway calls it every
    /// [`KEYS_REFRESH_EVERY`], and on a token naming an unknown key.
    ///
    /// # Errors
    /// [`SessionError::Keys`] if the stored set is unreadable; the current keys stay in force.
    pub fn refresh_keys(&self) -> Result<bool, SessionError> {
        let Some(stored) = KeyFile::stored(self.store.as_ref())? else {
            return Err(KeyError::NoKeys.into());
        };
        self.apply_keys(stored)
    }

    /// Re-reads the key set from the store (the admin socket's `KeysReload`).
    ///
    /// # Errors
    /// As [`SessionService::refresh_keys`].
    pub fn reload_keys(&self) -> Result<(), SessionError> {
        self.refresh_keys().map(|_| ())
    }

    /// Rotates the stored key set ([`KeyFile::rotate`]: the active key is retired, a new one
    /// signs from now on, here at once and on other replicas at their next refresh) and puts
    /// it in force; returns the new key's id.
    ///
    /// # Errors
    /// [`SessionError::Keys`]; nothing changed then.
    pub fn rotate_keys(&self, max_lifetime: i64) -> Result<String, SessionError> {
        let (kid, stored) =
            KeyFile::rotate(self.store.as_ref(), max_lifetime, self.clock.as_ref())?;
        self.apply_keys(stored)?;
        Ok(kid)
    }

    /// Puts `stored` in force unless the keys in force are as new; returns whether it did.
    fn apply_keys(&self, stored: StoredKeys) -> Result<bool, SessionError> {
        let _one_at_a_time = self.keys_apply.lock();
        if stored.version <= self.keys_version.load(Ordering::Acquire) {
            return Ok(false);
        }
        let signer = Self::signer(&stored.file, &self.issuer, &self.clock)?;
        self.keyring
            .store(Arc::new(Keyring::from_file(&stored.file)));
        self.assertions.store(Arc::new(signer));
        self.keys_version.store(stored.version, Ordering::Release);
        // A key may have been retired: its tokens must go through the full check again.
        self.verified.write().clear();
        tracing::info!(version = stored.version, active = %stored.file.active, "session keys in force");
        Ok(true)
    }

    /// After a token named the key `kid` this replica does not know: reads the key set again
    /// unless that was done less than [`UNKNOWN_KID_RELOAD_EVERY`] ago; returns whether `kid`
    /// is known now.
    ///
    /// # Security
    /// Anyone can send a token with a made-up `kid`: the pace bounds what that costs the
    /// database, and a token is still verified in full against the reloaded keys.
    fn reload_for_unknown(&self, kid: &str) -> bool {
        let mut last = self.kid_reload.lock();
        // Another request may have reloaded while this one waited.
        if self.keyring.load().decoding.contains_key(kid) {
            return true;
        }
        if last.is_some_and(|at| at.elapsed() < UNKNOWN_KID_RELOAD_EVERY) {
            return false;
        }
        *last = Some(Instant::now());
        if let Err(e) = self.refresh_keys() {
            tracing::warn!(error = %e, "reloading the session keys failed");
        }
        self.keyring.load().decoding.contains_key(kid)
    }

    /// Now, in milliseconds, on the clock sessions are issued and checked by (what a rule's
    /// `max_age` is measured against).
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Signs a new session and records it; returns the token and its claims.
    ///
    /// # Errors
    /// [`SessionError::Sign`] or [`SessionError::Store`].
    pub fn issue(&self, s: NewSession) -> Result<(String, Claims), SessionError> {
        self.issue_seen(s, &Seen::default())
    }

    /// [`SessionService::issue`], recording where the session was issued (client address,
    /// browser) for the user's list of sessions.
    ///
    /// # Errors
    /// [`SessionError::Sign`] or [`SessionError::Store`].
    pub fn issue_seen(&self, s: NewSession, seen: &Seen) -> Result<(String, Claims), SessionError> {
        // A session issued after its user's sessions were revoked is newer than the
        // revocation, even within the same millisecond (a password set, then a sign-in).
        let now_ms = match self.revocations.revoked_since(&s.username) {
            Some(since) => self.clock.now_ms().max(since + 1),
            None => self.clock.now_ms(),
        };
        let now = now_ms.div_euclid(1000);
        let claims = Claims {
            sub: s.username,
            name: s.name,
            email: s.email,
            groups: s.groups,
            amr: s.amr,
            factors: s.factors.names().map(str::to_string).collect(),
            flows: s.flows,
            sid: crate::secret::random_token(18),
            iat: now,
            exp: now + s.lifetime_secs,
            iss: self.issuer.clone(),
            iat_ms: now_ms,
            db: self.database.id.clone(),
            identity: Default::default(),
            proof: Default::default(),
        };
        let ring = self.keyring.load();
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(ring.active_kid.clone());
        let token =
            jsonwebtoken::encode(&header, &claims, &ring.encoding).map_err(SessionError::Sign)?;
        self.store.put_session(&SessionRecord {
            sid: claims.sid.clone(),
            username: claims.sub.clone(),
            issued: claims.iat,
            expires: claims.exp,
            client: seen.client.clone(),
            browser: seen.browser.clone(),
            last_seen: Some(claims.iat),
        })?;
        crate::metrics::session_issued();
        Ok((token, claims))
    }

    /// Verifies a token: HS256 only, a known key id, a good signature, not expired, our
    /// issuer, not revoked. Never touches disk. A token seen before skips the decoding and the
    /// signature check (it is the same string that passed them), never the expiry and
    /// revocation checks.
    ///
    /// # Errors
    /// The [`SessionError`] saying why it was refused.
    pub fn verify(&self, token: &str) -> Result<Arc<Claims>, SessionError> {
        let now = self.clock.now();
        // One Arc clone under the read lock: the last-seen cell is touched in place.
        let cached = self.verified.read().get(token).and_then(|(c, seen)| {
            Self::alive_at(c.exp, now).then(|| {
                seen.touch(now);
                c.clone()
            })
        });
        if let Some(c) = cached {
            if self.revocations.is_revoked(&c.sid, &c.sub, c.issued_ms()) {
                return Err(SessionError::Revoked);
            }
            return Ok(c);
        }
        let c = Arc::new(self.verify_fully(token)?);
        let seen = self.seen.cell(&c.sid, c.exp);
        seen.touch(now);
        let mut verified = self.verified.write();
        if verified.len() >= VERIFIED_LIMIT {
            verified.clear();
        }
        verified.insert(token.into(), (c.clone(), seen));
        Ok(c)
    }

    /// The instant (unix milliseconds) up to which every session of `username` was ended,
    /// if ever (from the in-memory revocation list).
    pub fn revoked_since(&self, username: &str) -> Option<i64> {
        self.revocations.revoked_since(username)
    }

    /// The live sessions of `username`, oldest first, each with when it was last seen (the
    /// in-memory time when it is newer than the stored one).
    ///
    /// # Errors
    /// [`SessionError::Store`].
    pub fn sessions_of(&self, username: &str) -> Result<Vec<SessionRecord>, SessionError> {
        let now = self.clock.now();
        let mut list = self.store.user_sessions(username, now)?;
        list.retain(|r| {
            !self
                .revocations
                .is_revoked(&r.sid, &r.username, r.issued.saturating_mul(1000) + 999)
        });
        for r in &mut list {
            if let Some(at) = self.seen.at(&r.sid) {
                r.last_seen = Some(r.last_seen.map_or(at, |t| t.max(at)));
            }
        }
        Ok(list)
    }

    /// Writes the last-seen times that moved since the previous call to the store; forgets
    /// those of sessions that have expired. Called every few minutes off the request path.
    ///
    /// # Errors
    /// [`SessionError::Store`]; the times stay in memory and are written next time.
    pub fn flush_seen(&self) -> Result<usize, SessionError> {
        let moved = self.seen.moved(self.clock.now());
        if moved.is_empty() {
            return Ok(0);
        }
        self.store.touch_sessions(&moved)?;
        self.seen.written(&moved);
        Ok(moved.len())
    }

    /// The full check behind [`Self::verify`].
    fn verify_fully(&self, token: &str) -> Result<Claims, SessionError> {
        let header = jsonwebtoken::decode_header(token)?;
        let kid = header.kid.as_deref().ok_or(SessionError::UnknownKey)?;
        let mut ring = self.keyring.load_full();
        if !ring.decoding.contains_key(kid) && self.reload_for_unknown(kid) {
            ring = self.keyring.load_full();
        }
        let key = ring.decoding.get(kid).ok_or(SessionError::UnknownKey)?;
        let data = jsonwebtoken::decode::<Claims>(token, &key.key, &self.validation)?;
        let c = data.claims;
        if !self.alive(c.exp) {
            let expired = jsonwebtoken::errors::ErrorKind::ExpiredSignature;
            return Err(SessionError::Invalid(expired.into()));
        }
        if !key.admits(c.iat, c.exp) {
            return Err(SessionError::UnknownKey);
        }
        if !self.of_this_database(&c) {
            return Err(SessionError::OtherDatabase);
        }
        if self.revocations.is_revoked(&c.sid, &c.sub, c.issued_ms()) {
            return Err(SessionError::Revoked);
        }
        if key.retired.is_some() && !self.recorded(&c)? {
            return Err(SessionError::Unrecorded);
        }
        Ok(c)
    }

    /// Whether `c` was issued by the database the gateway runs on: it carries its identity,
    /// or it carries none and was issued before an older database was given one.
    ///
    /// # Security
    /// A database deleted and created again, or replaced, has a new identity: the tokens of
    /// the one before, signed by the same keys, are refused, as are its revocations that the
    /// new one no longer knows.
    fn of_this_database(&self, c: &Claims) -> bool {
        if c.db.is_empty() {
            return self
                .database
                .adopted_ms
                .is_some_and(|at| c.issued_ms() <= at);
        }
        c.db == self.database.id
    }

    /// Whether the gateway recorded the session `c` names, for the same user and times.
    ///
    /// # Security
    /// Asked only for tokens signed by a retired key, whose secret may have leaked since it
    /// was rotated out: such a key signs nothing new, so a token it verifies must be one of
    /// the sessions recorded when it was active. A leaked key minting a back-dated token
    /// makes up a sid no record has (or borrows a recorded sid, whose user and times it must
    /// then match exactly, which gives nothing the real token does not). This is one store
    /// read, on the rare path only: tokens of the current key never reach it, and a retired
    /// key's token reaches it once, as the verified cache keeps it afterwards.
    fn recorded(&self, c: &Claims) -> Result<bool, SessionError> {
        Ok(self
            .store
            .session(&c.sid)?
            .is_some_and(|r| r.username == c.sub && r.issued == c.iat && r.expires == c.exp))
    }

    /// Whether a token expiring at `exp` is still good now, [`LEEWAY_SECS`] of skew allowed.
    fn alive(&self, exp: i64) -> bool {
        Self::alive_at(exp, self.clock.now())
    }

    fn alive_at(exp: i64, now: i64) -> bool {
        exp >= now - LEEWAY_SECS
    }

    /// The clock this service reads; the gateway's one clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Revokes one session, durably and in memory, effective for the next request.
    ///
    /// # Errors
    /// [`SessionError::Store`]; the in-memory revocation holds anyway.
    pub fn revoke(&self, claims: &Claims) -> Result<(), SessionError> {
        self.revoke_sid(&claims.sid, claims.exp)
    }

    /// Whether the session `sid` of `sub`, issued at `issued_ms`, has been revoked.
    pub fn is_revoked(&self, sid: &str, sub: &str, issued_ms: i64) -> bool {
        self.revocations.is_revoked(sid, sub, issued_ms)
    }

    /// Revokes the session `sid` (valid until `exp`) when another replaces it, so the old
    /// token does not outlive a sign-out of the new one.
    ///
    /// # Errors
    /// [`SessionError::Store`]; the in-memory revocation holds anyway.
    pub fn revoke_sid(&self, sid: &str, exp: i64) -> Result<(), SessionError> {
        self.revocations.revoke_sid(sid, exp);
        self.store.revoke_session(sid, exp)?;
        Ok(())
    }

    /// Revokes every session of a user issued up to now.
    ///
    /// # Errors
    /// [`SessionError::Store`]; the in-memory revocation holds anyway.
    pub fn revoke_user(&self, username: &str) -> Result<(), SessionError> {
        let now = self.clock.now_ms();
        self.revocations.revoke_user(username, now);
        self.store.revoke_user_sessions(username, now)?;
        Ok(())
    }

    /// The identity-assertion signer for the current keys; a key reload swaps it, so hold the
    /// guard only for one signing.
    pub fn assertions(&self) -> arc_swap::Guard<Arc<AssertionSigner>> {
        self.assertions.load()
    }

    /// Forgets revocations of tokens that have expired anyway; returns how many were dropped.
    pub fn prune(&self) -> usize {
        let now = self.clock.now();
        self.seen.prune(now);
        self.revocations.prune(now)
    }

    /// A CSRF token bound to one session, for forms that act on it (sign-out). It is an HMAC
    /// of the sid, so it needs no storage and is useless for any other session.
    ///
    /// # Security
    /// Compare a submitted token with this in constant time. It changes with the signing keys,
    /// so a form rendered before `keys rotate` fails its check after the reload. A secret: read
    /// it with [`crate::secret::Secret::expose`] only to put it in the form and to compare.
    pub fn csrf_for(&self, sid: &str) -> crate::secret::Secret<String> {
        self.csrf_labelled(b"portcullis-logout:", sid)
    }

    /// A CSRF token bound to one session for the settings forms and API, as
    /// [`SessionService::csrf_for`] but under its own label: a sign-out token does not work
    /// there, nor the other way round.
    ///
    /// # Security
    /// As [`SessionService::csrf_for`].
    pub fn settings_csrf(&self, sid: &str) -> crate::secret::Secret<String> {
        self.csrf_labelled(b"portcullis-settings:", sid)
    }

    fn csrf_labelled(&self, label: &[u8], sid: &str) -> crate::secret::Secret<String> {
        let ring = self.keyring.load();
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(ring.mac_secret.expose())
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
        mac.update(label);
        mac.update(sid.as_bytes());
        use base64::Engine;
        crate::secret::Secret::new(
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SledStore;
    use std::time::Duration;

    fn service(dir: &std::path::Path) -> SessionService {
        let store: Arc<dyn Store> = Arc::new(SledStore::open(&dir.join("db")).unwrap());
        let cfg = SessionConfig {
            cookie_name: "s".into(),
            lifetime: Duration::from_secs(3600),
            cookie_domain: None,
            issuer: "portcullis".into(),
            flow_lifetime: Duration::from_secs(60),
            max_flows_per_client: crate::config::DEFAULT_MAX_FLOWS_PER_CLIENT,
        };
        SessionService::new(&cfg, dir.join("keys.json"), store).unwrap()
    }

    fn new_session() -> NewSession {
        NewSession {
            username: "alice".into(),
            name: "Alice".into(),
            email: "a@example.com".into(),
            groups: vec!["staff".into()],
            amr: vec!["password".into()],
            factors: Factors::PASSWORD,
            flows: vec!["f".into()],
            lifetime_secs: 60,
        }
    }

    #[test]
    fn issued_token_verifies_until_revoked() {
        let dir = tempfile::tempdir().unwrap();
        let s = service(dir.path());
        let (tok, claims) = s.issue(new_session()).unwrap();
        assert_eq!(*s.verify(&tok).unwrap(), claims);
        s.revoke(&claims).unwrap();
        assert!(matches!(s.verify(&tok), Err(SessionError::Revoked)));
    }

    #[test]
    fn old_key_still_verifies_after_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let s = service(dir.path());
        let (tok, _) = s.issue(new_session()).unwrap();
        KeyFile::rotate(s.store.as_ref(), 3600, &SystemClock).unwrap();
        s.reload_keys().unwrap();
        assert!(s.verify(&tok).is_ok());
        let (tok2, _) = s.issue(new_session()).unwrap();
        assert!(s.verify(&tok2).is_ok());
    }

    #[test]
    fn a_verified_token_is_still_refused_once_revoked_or_expired() {
        let dir = tempfile::tempdir().unwrap();
        let s = service(dir.path());
        // Twice each: the second verification is answered from the cache.
        let (tok, claims) = s.issue(new_session()).unwrap();
        assert_eq!(*s.verify(&tok).unwrap(), claims);
        assert_eq!(*s.verify(&tok).unwrap(), claims);
        s.revoke_user("alice").unwrap();
        assert!(matches!(s.verify(&tok), Err(SessionError::Revoked)));
        // Expired beyond the leeway: a cached entry does not outlive its token.
        let (old, claims) = s
            .issue(NewSession {
                lifetime_secs: -60,
                ..new_session()
            })
            .unwrap();
        let seen = s.seen.cell(&claims.sid, claims.exp);
        s.verified
            .write()
            .insert(old.as_str().into(), (Arc::new(claims), seen));
        assert!(matches!(s.verify(&old), Err(SessionError::Invalid(_))));
    }

    #[test]
    fn a_retired_key_is_checked_again_after_reload() {
        let dir = tempfile::tempdir().unwrap();
        let s = service(dir.path());
        let (tok, _) = s.issue(new_session()).unwrap();
        assert!(s.verify(&tok).is_ok());
        // A reload that finds the same key set changes nothing; a rotation empties the cache.
        s.reload_keys().unwrap();
        assert!(!s.verified.read().is_empty());
        s.rotate_keys(3600).unwrap();
        assert!(s.verified.read().is_empty());
        assert!(s.verify(&tok).is_ok());
    }

    #[test]
    fn a_session_issued_right_after_a_revocation_of_its_user_stands() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(crate::clock::ManualClock::new(1_000));
        let store: Arc<dyn Store> = Arc::new(crate::store::MemoryStore::new());
        let s = SessionService::with_clock(
            &SessionConfig {
                cookie_name: "s".into(),
                lifetime: std::time::Duration::from_secs(3600),
                cookie_domain: None,
                issuer: "portcullis".into(),
                flow_lifetime: std::time::Duration::from_secs(600),
                max_flows_per_client: crate::config::DEFAULT_MAX_FLOWS_PER_CLIENT,
            },
            dir.path().join("keys.json"),
            store,
            clock,
        )
        .unwrap();
        let (old, _) = s.issue(new_session()).unwrap();
        // Through the port the flow engine uses; the clock does not move at all.
        crate::flow::SessionRevoker::revoke_user(&s, "alice").unwrap();
        let (new, claims) = s.issue(new_session()).unwrap();
        assert!(matches!(s.verify(&old), Err(SessionError::Revoked)));
        assert!(
            s.verify(&new).is_ok(),
            "the new session outlives the revocation"
        );
        assert_eq!(claims.iat_ms, 1_000_001);
    }

    #[test]
    fn sessions_are_listed_with_where_they_came_from_and_last_seen_reaches_the_store_on_flush() {
        use crate::clock::ManualClock;
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(SledStore::open(&dir.path().join("db")).unwrap());
        let clock = Arc::new(ManualClock::default());
        let cfg = SessionConfig {
            cookie_name: "s".into(),
            lifetime: Duration::from_secs(3600),
            cookie_domain: None,
            issuer: "portcullis".into(),
            flow_lifetime: Duration::from_secs(60),
            max_flows_per_client: crate::config::DEFAULT_MAX_FLOWS_PER_CLIENT,
        };
        let s = SessionService::with_clock(
            &cfg,
            dir.path().join("keys.json"),
            store.clone(),
            clock.clone(),
        )
        .unwrap();
        let seen = Seen {
            client: "192.0.2.7".into(),
            browser: "Firefox 128 on Linux".into(),
        };
        let (a, ca) = s.issue_seen(new_session(), &seen).unwrap();
        let issued = clock.now();
        clock.advance_secs(1);
        let (_, cb) = s.issue_seen(new_session(), &Seen::default()).unwrap();
        let list = s.sessions_of("alice").unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(
            (list[0].sid.as_str(), list[0].client.as_str()),
            (ca.sid.as_str(), "192.0.2.7")
        );
        assert_eq!(list[0].browser, "Firefox 128 on Linux");
        assert_eq!(list[0].last_seen, Some(issued));

        // A request 30 s later: seen in memory at once, in the store only after a flush.
        clock.advance_secs(30);
        s.verify(&a).unwrap();
        s.verify(&a).unwrap();
        let later = clock.now();
        assert_eq!(s.sessions_of("alice").unwrap()[0].last_seen, Some(later));
        assert_eq!(
            store.session(&ca.sid).unwrap().unwrap().last_seen,
            Some(issued)
        );
        assert_eq!(s.flush_seen().unwrap(), 1);
        assert_eq!(
            store.session(&ca.sid).unwrap().unwrap().last_seen,
            Some(later)
        );
        assert_eq!(s.flush_seen().unwrap(), 0, "nothing moved since");

        // Revoked sessions leave the list, one by one or all at once.
        s.revoke_sid(&cb.sid, cb.exp).unwrap();
        let sids: Vec<String> = s
            .sessions_of("alice")
            .unwrap()
            .into_iter()
            .map(|r| r.sid)
            .collect();
        assert_eq!(sids, std::slice::from_ref(&ca.sid));
        clock.advance_secs(1);
        s.revoke_user("alice").unwrap();
        assert!(s.sessions_of("alice").unwrap().is_empty());
    }

    fn service_on(dir: &std::path::Path, store: Arc<dyn Store>) -> SessionService {
        let cfg = SessionConfig {
            cookie_name: "s".into(),
            lifetime: Duration::from_secs(3600),
            cookie_domain: None,
            issuer: "portcullis".into(),
            flow_lifetime: Duration::from_secs(60),
            max_flows_per_client: crate::config::DEFAULT_MAX_FLOWS_PER_CLIENT,
        };
        SessionService::new(&cfg, dir.join("keys.json"), store).unwrap()
    }

    /// `claims` signed with the key `kid` of the key set in `store`.
    fn signed_with(store: &dyn Store, kid: &str, claims: &Claims) -> String {
        let file = KeyFile::stored(store).unwrap().unwrap().file;
        let key = file.keys.iter().find(|k| k.kid == kid).unwrap();
        let secret = keys::decode_secret(key.secret.expose()).unwrap();
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(kid.to_string());
        jsonwebtoken::encode(
            &header,
            claims,
            &jsonwebtoken::EncodingKey::from_secret(&secret),
        )
        .unwrap()
    }

    #[test]
    fn a_token_of_another_database_is_refused_under_the_same_keys() {
        let dir = tempfile::tempdir().unwrap();
        let first_store = Arc::new(crate::store::MemoryStore::new());
        let first = service_on(dir.path(), first_store.clone());
        let (tok, claims) = first.issue(new_session()).unwrap();
        assert!(first.verify(&tok).is_ok());
        // The database recreated (a new one, its keys restored from the first): the old token
        // is refused, and so is its claims re-signed without the identity (a leaked key cannot
        // drop it).
        let keys = first_store
            .keyset(crate::store::KEYSET_SESSION)
            .unwrap()
            .unwrap();
        let second_store = Arc::new(crate::store::MemoryStore::new());
        assert!(second_store
            .swap_keyset(crate::store::KEYSET_SESSION, 0, &keys.data)
            .unwrap());
        let second = service_on(dir.path(), second_store.clone());
        assert!(matches!(
            second.verify(&tok),
            Err(SessionError::OtherDatabase)
        ));
        let active = KeyFile::stored(second_store.as_ref())
            .unwrap()
            .unwrap()
            .file
            .active;
        let bare = signed_with(
            second_store.as_ref(),
            &active,
            &Claims {
                db: String::new(),
                ..claims
            },
        );
        assert!(matches!(
            second.verify(&bare),
            Err(SessionError::OtherDatabase)
        ));
        let (fresh, _) = second.issue(new_session()).unwrap();
        assert!(second.verify(&fresh).is_ok());
    }

    #[test]
    fn a_retired_key_verifies_only_sessions_the_gateway_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(crate::store::MemoryStore::new());
        let s = service_on(dir.path(), store.clone());
        let (tok, real) = s.issue(new_session()).unwrap();
        let retired = KeyFile::stored(store.as_ref())
            .unwrap()
            .unwrap()
            .file
            .active;
        KeyFile::rotate(store.as_ref(), 3600, &SystemClock).unwrap();
        s.reload_keys().unwrap();
        assert!(s.verify(&tok).is_ok(), "the real session, recorded");
        // A leaked retired key: every way to mint a session with it that a real one does not
        // already give is refused.
        let minted: Vec<(&str, Claims)> = vec![
            (
                "a made-up sid, back-dated",
                Claims {
                    sid: "made-up-session-id".into(),
                    iat: real.iat - 60,
                    iat_ms: (real.iat - 60) * 1000,
                    ..real.clone()
                },
            ),
            (
                "the recorded sid for another user",
                Claims {
                    sub: "bob".into(),
                    ..real.clone()
                },
            ),
            (
                "the recorded sid with an earlier iat",
                Claims {
                    iat: real.iat - 1,
                    ..real.clone()
                },
            ),
            (
                "the recorded sid living shorter",
                Claims {
                    exp: real.exp - 1,
                    ..real.clone()
                },
            ),
        ];
        for (what, claims) in minted {
            let t = signed_with(store.as_ref(), &retired, &claims);
            assert!(
                matches!(s.verify(&t), Err(SessionError::Unrecorded)),
                "{what}: {:?}",
                s.verify(&t).map(|c| c.sid.clone())
            );
        }
        // The same claims re-signed exactly are the real session (nothing new is gained).
        let again = signed_with(store.as_ref(), &retired, &real);
        assert!(s.verify(&again).is_ok());
        // Once revoked, its record is gone and it is refused for that reason.
        s.revoke(&real).unwrap();
        assert!(s.verify(&tok).is_err());
        // A session of the current key needs no record: verification stays off the store.
        // (Its record dropped behind the service's back: the active key never asks.)
        let (current, c) = s.issue(new_session()).unwrap();
        s.store.revoke_session(&c.sid, c.exp).unwrap();
        assert!(s.store.session(&c.sid).unwrap().is_none());
        assert!(s.verify(&current).is_ok());
    }

    #[test]
    fn user_revocation_kills_earlier_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let s = service(dir.path());
        let (tok, _) = s.issue(new_session()).unwrap();
        s.revoke_user("alice").unwrap();
        assert!(s.verify(&tok).is_err());
    }
}

//! Fills a fresh sled database through the library's `Store` API before the gateway starts:
//! the bench user, and `n` users, session records, session revocations and user revocations,
//! so the scale rows show whether per-request cost grows with what is stored. It also issues
//! the valid session cookie the signed-in rows send, with the gateway's own `SessionService`.

use crate::procs::BoxError;
use portcullis::config::Config;
use portcullis::password::PasswordHasherPool;
use portcullis::secret::SecretString;
use portcullis::session::{NewSession, SessionService};
use portcullis::store::{SessionRecord, SledStore, Store, User};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const USER: &str = "bench";
pub const PASSWORD: &str = "bench-Password-4711";

/// Seeds `n` of each record kind (the bench user counts as one) and returns a valid token.
pub fn seed(config: &Config, n: u64) -> Result<(String, Duration), BoxError> {
    let started = Instant::now();
    let store: Arc<dyn Store> = Arc::new(SledStore::open(&config.storage.path)?);
    let passwords = PasswordHasherPool::new(&config.passwords)?;
    // One real hash shared by every seeded user: hashing a million passwords would take hours
    // and tells nothing about per-request cost.
    let hash = passwords.hash_blocking(&SecretString::new(PASSWORD))?;
    let mut me = User::new(USER);
    me.name = "Bench User".into();
    me.email = Some("bench@example.com".into());
    me.groups = vec!["staff".into()];
    me.password_hash = Some(hash.clone());
    store.put_user(&me)?;

    let now = portcullis::clock::now();
    let extra = n.saturating_sub(1);
    // Every write is durable (flushed) in the store; several writers overlap those flushes.
    let writers = 8u64;
    std::thread::scope(|scope| -> Result<(), BoxError> {
        let handles: Vec<_> = (0..writers)
            .map(|w| {
                let store = store.clone();
                let hash = hash.clone();
                scope.spawn(move || -> Result<(), String> {
                    let mut i = w;
                    while i < extra {
                        let name = format!("user{i:07}");
                        let mut u = User::new(name.clone());
                        u.email = Some(format!("{name}@example.com"));
                        u.password_hash = Some(hash.clone());
                        store.put_user(&u).map_err(|e| e.to_string())?;
                        store
                            .put_session(&SessionRecord {
                                sid: format!("sid-{i:07}"),
                                username: name.clone(),
                                issued: now,
                                expires: now + 86_400,
                            })
                            .map_err(|e| e.to_string())?;
                        store
                            .revoke_session(&format!("revoked-{i:07}"), now + 86_400)
                            .map_err(|e| e.to_string())?;
                        store
                            .revoke_user_sessions(&name, now)
                            .map_err(|e| e.to_string())?;
                        i += writers;
                    }
                    Ok(())
                })
            })
            .collect();
        for h in handles {
            h.join().map_err(|_| "a seeding thread panicked")??;
        }
        Ok(())
    })?;

    let sessions = SessionService::new(
        &config.session,
        config.storage.keys_path.clone(),
        store.clone(),
    )?;
    let (token, _) = sessions.issue(NewSession {
        username: USER.into(),
        name: me.name.clone(),
        email: "bench@example.com".into(),
        groups: me.groups.clone(),
        amr: vec!["password".into()],
        lifetime_secs: 12 * 3600,
    })?;
    Ok((token, started.elapsed()))
}

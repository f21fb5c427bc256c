//! The embedded default backend: one sled database, one tree per record kind.

use super::{SessionRecord, Store, StoreError, StoreResult, User};
use serde::{de::DeserializeOwned, Serialize};
use std::path::Path;

/// sled-backed [`Store`]. sled allows one process per database; a second open fails with
/// [`StoreError::Locked`].
pub struct SledStore {
    db: sled::Db,
    users: sled::Tree,
    emails: sled::Tree,
    executions: sled::Tree,
    sessions: sled::Tree,
    revoked: sled::Tree,
    user_revoked: sled::Tree,
}

fn backend(action: &'static str) -> impl FnOnce(sled::Error) -> StoreError {
    move |source| StoreError::Backend { action, source }
}

fn decode<T: DeserializeOwned>(action: &'static str, bytes: &[u8]) -> StoreResult<T> {
    serde_json::from_slice(bytes).map_err(|source| StoreError::Corrupt { action, source })
}

fn encode<T: Serialize>(action: &'static str, v: &T) -> StoreResult<Vec<u8>> {
    serde_json::to_vec(v).map_err(|source| StoreError::Corrupt { action, source })
}

/// Values with an expiry are stored as 8 big-endian bytes of unix time, then the payload.
fn with_expiry(expires: i64, data: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(8 + data.len());
    v.extend_from_slice(&expires.to_be_bytes());
    v.extend_from_slice(data);
    v
}

fn split_expiry(v: &[u8]) -> Option<(i64, &[u8])> {
    let (head, rest) = v.split_first_chunk::<8>()?;
    Some((i64::from_be_bytes(*head), rest))
}

impl SledStore {
    /// Opens (creating if needed) the database directory.
    ///
    /// # Errors
    /// [`StoreError::Locked`] when another process holds it, otherwise the backend error.
    pub fn open(path: &Path) -> StoreResult<Self> {
        if let Some(parent) = path.parent() {
            if !parent.as_os_str().is_empty() {
                let _ = std::fs::create_dir_all(parent);
            }
        }
        let db = sled::Config::new().path(path).open().map_err(|e| match e {
            sled::Error::Io(ref io) if io.kind() == std::io::ErrorKind::WouldBlock => {
                StoreError::Locked {
                    path: path.display().to_string(),
                }
            }
            sled::Error::Io(ref io) if io.to_string().contains("lock") => StoreError::Locked {
                path: path.display().to_string(),
            },
            other => StoreError::Backend {
                action: "open database",
                source: other,
            },
        })?;
        let tree = |name: &str| db.open_tree(name).map_err(backend("open tree"));
        Ok(Self {
            users: tree("users")?,
            emails: tree("users_by_email")?,
            executions: tree("executions")?,
            sessions: tree("sessions")?,
            revoked: tree("revoked_sessions")?,
            user_revoked: tree("revoked_users")?,
            db,
        })
    }

    fn durable(&self) -> StoreResult<()> {
        self.db.flush().map(|_| ()).map_err(backend("flush"))
    }
}

impl Store for SledStore {
    fn user(&self, username: &str) -> StoreResult<Option<User>> {
        match self.users.get(username).map_err(backend("read user"))? {
            Some(v) => Ok(Some(decode("read user", &v)?)),
            None => Ok(None),
        }
    }

    fn user_by_email(&self, email: &str) -> StoreResult<Option<User>> {
        let key = email.trim().to_lowercase();
        match self.emails.get(key).map_err(backend("read email index"))? {
            Some(name) => self.user(&String::from_utf8_lossy(&name)),
            None => Ok(None),
        }
    }

    fn put_user(&self, user: &User) -> StoreResult<()> {
        let old = self.user(&user.username)?;
        if let Some(old_email) = old.and_then(|o| o.email) {
            self.emails
                .remove(old_email.to_lowercase())
                .map_err(backend("update email index"))?;
        }
        if let Some(email) = &user.email {
            self.emails
                .insert(email.to_lowercase(), user.username.as_bytes())
                .map_err(backend("update email index"))?;
        }
        self.users
            .insert(&user.username, encode("write user", user)?)
            .map_err(backend("write user"))?;
        self.durable()
    }

    fn remove_user(&self, username: &str) -> StoreResult<bool> {
        let Some(old) = self.user(username)? else {
            return Ok(false);
        };
        if let Some(email) = old.email {
            self.emails
                .remove(email.to_lowercase())
                .map_err(backend("update email index"))?;
        }
        self.users
            .remove(username)
            .map_err(backend("remove user"))?;
        self.durable()?;
        Ok(true)
    }

    fn users(&self) -> StoreResult<Vec<User>> {
        self.users
            .iter()
            .values()
            .map(|v| decode("list users", &v.map_err(backend("list users"))?))
            .collect()
    }

    fn user_count(&self) -> StoreResult<usize> {
        Ok(self.users.len())
    }

    fn execution(&self, id: &str, now: i64) -> StoreResult<Option<Vec<u8>>> {
        let Some(v) = self.executions.get(id).map_err(backend("read execution"))? else {
            return Ok(None);
        };
        match split_expiry(&v) {
            Some((exp, data)) if exp > now => Ok(Some(data.to_vec())),
            _ => {
                self.executions
                    .remove(id)
                    .map_err(backend("expire execution"))?;
                Ok(None)
            }
        }
    }

    fn put_execution(&self, id: &str, expires: i64, state: &[u8]) -> StoreResult<()> {
        self.executions
            .insert(id, with_expiry(expires, state))
            .map_err(backend("write execution"))?;
        self.durable()
    }

    fn remove_execution(&self, id: &str) -> StoreResult<()> {
        self.executions
            .remove(id)
            .map_err(backend("remove execution"))?;
        self.durable()
    }

    fn purge_executions(&self, now: i64) -> StoreResult<usize> {
        let mut n = 0;
        for item in self.executions.iter() {
            let (k, v) = item.map_err(backend("scan executions"))?;
            if split_expiry(&v).is_none_or(|(exp, _)| exp <= now) {
                self.executions
                    .remove(k)
                    .map_err(backend("purge executions"))?;
                n += 1;
            }
        }
        Ok(n)
    }

    fn put_session(&self, session: &SessionRecord) -> StoreResult<()> {
        self.sessions
            .insert(&session.sid, encode("write session", session)?)
            .map_err(backend("write session"))?;
        Ok(())
    }

    fn session(&self, sid: &str) -> StoreResult<Option<SessionRecord>> {
        match self.sessions.get(sid).map_err(backend("read session"))? {
            Some(v) => Ok(Some(decode("read session", &v)?)),
            None => Ok(None),
        }
    }

    fn revoke_session(&self, sid: &str, expires: i64) -> StoreResult<()> {
        self.revoked
            .insert(sid, &expires.to_be_bytes())
            .map_err(backend("revoke session"))?;
        self.sessions
            .remove(sid)
            .map_err(backend("revoke session"))?;
        self.durable()
    }

    fn revocations(&self, now: i64) -> StoreResult<Vec<(String, i64)>> {
        let mut out = Vec::new();
        for item in self.revoked.iter() {
            let (k, v) = item.map_err(backend("load revocations"))?;
            let exp = split_expiry(&v).map(|(e, _)| e).unwrap_or(0);
            if exp > now {
                out.push((String::from_utf8_lossy(&k).into_owned(), exp));
            } else {
                self.revoked
                    .remove(k)
                    .map_err(backend("prune revocations"))?;
            }
        }
        Ok(out)
    }

    fn revoke_user_sessions(&self, username: &str, since: i64) -> StoreResult<()> {
        self.user_revoked
            .insert(username, &since.to_be_bytes())
            .map_err(backend("revoke user sessions"))?;
        self.durable()
    }

    fn user_revocations(&self) -> StoreResult<Vec<(String, i64)>> {
        self.user_revoked
            .iter()
            .map(|item| {
                let (k, v) = item.map_err(backend("load user revocations"))?;
                let since = split_expiry(&v).map(|(e, _)| e).unwrap_or(0);
                Ok((String::from_utf8_lossy(&k).into_owned(), since))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_round_trip_and_email_index_follows_changes() {
        let dir = tempfile::tempdir().unwrap();
        let s = SledStore::open(&dir.path().join("db")).unwrap();
        let mut u = User::new("alice");
        u.email = Some("Alice@Example.com".into());
        s.put_user(&u).unwrap();
        assert_eq!(
            s.user_by_email("alice@example.com")
                .unwrap()
                .unwrap()
                .username,
            "alice"
        );
        u.email = Some("new@example.com".into());
        s.put_user(&u).unwrap();
        assert!(s.user_by_email("alice@example.com").unwrap().is_none());
        assert!(s.remove_user("alice").unwrap());
        assert!(s.user_by_email("new@example.com").unwrap().is_none());
    }

    #[test]
    fn expired_execution_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let s = SledStore::open(&dir.path().join("db")).unwrap();
        s.put_execution("x", 100, b"state").unwrap();
        assert_eq!(
            s.execution("x", 99).unwrap().as_deref(),
            Some(&b"state"[..])
        );
        assert!(s.execution("x", 100).unwrap().is_none());
    }
}

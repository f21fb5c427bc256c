//! The sled database's integrity record: an identity and a high-water mark of durable writes,
//! kept in a file beside the database, checked at every open.
//!
//! sled checks a CRC on every message of its log, but when recovery meets a message that
//! fails it (garbage written over the file, a truncated file), it takes everything before as
//! the database and drops the rest without a word: 4 KiB of garbage at 10 % of the file left
//! 16 of 150 users, and revocations written later were gone. So the gateway keeps its own
//! account:
//!
//! - every durable write bumps a generation number kept in the database (in the `meta` tree,
//!   written before the flush, so it sits after the write in sled's log), and once the flush
//!   returned, the generation is copied to the record file beside the database. Recovery keeps
//!   a prefix of the log: a write lost to damage takes every later generation with it, so the
//!   database's generation falls below the record's.
//! - every page is read at open (sled checks each one's CRC): damage to pages recovery does
//!   not replay (those a snapshot covers) shows as a read error.
//! - the database carries a random identity, also in the record: another database put in its
//!   place (a copy from elsewhere, one created afresh after a file was deleted) does not match.
//!   Session tokens carry it too ([`crate::session`]), so a token issued by an earlier
//!   database is refused by a new one even under the same signing keys.
//!
//! A database directory that does not exist at all is created afresh (a new identity). Every
//! other mismatch refuses the open with [`StoreError::Damaged`], naming the path and what was
//! found; `portcullis storage accept` takes the database as it is under a new identity.

use super::{DatabaseId, StoreError, StoreResult};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The database's identity (16 random bytes, base64url) in the `meta` tree.
pub(super) const ID_KEY: &str = "integrity:database_id";
/// The generation (u64, big-endian) in the `meta` tree: bumped before every durable flush.
pub(super) const GENERATION_KEY: &str = "integrity:generation";
/// When an existing database was first given an identity (unix ms, big-endian): tokens
/// issued before then carry none.
pub(super) const ADOPTED_KEY: &str = "integrity:adopted_ms";

/// The record file's format version.
const FORMAT: u32 = 1;

/// What the record file holds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(super) struct Record {
    format: u32,
    /// The identity of the database this record belongs to.
    database_id: String,
    /// The highest generation known to be durable in the database.
    generation: u64,
    /// Records per tree counted at the last open (for the message when they went missing).
    counted: BTreeMap<String, u64>,
    /// When the counting happened (unix seconds).
    counted_at: i64,
}

/// The record file of the database at `db`: `<db>.integrity` beside it, so deleting or
/// replacing the database directory leaves it behind as evidence.
pub fn record_path(db: &Path) -> PathBuf {
    let name = db
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "db".into());
    db.with_file_name(format!("{name}.integrity"))
}

/// Keeps the record file in step with the database's durable generation.
pub(super) struct Recorder {
    path: PathBuf,
    /// Changed only by an import ([`Recorder::rebind`]).
    database_id: parking_lot::Mutex<String>,
    counted: BTreeMap<String, u64>,
    counted_at: i64,
    /// The generation last written to the file; held while writing, so concurrent flushes
    /// write it once, the highest first.
    written: parking_lot::Mutex<u64>,
}

impl Recorder {
    /// Records that everything up to `generation` is durable (called after a flush).
    pub(super) fn durable(&self, generation: u64) -> StoreResult<()> {
        let mut written = self.written.lock();
        if *written >= generation {
            return Ok(());
        }
        self.write(generation)?;
        *written = generation;
        Ok(())
    }

    /// The database takes the identity `id` (an import): the record names it from the next
    /// [`Recorder::durable`] on, which the caller makes after writing the identity.
    pub(super) fn rebind(&self, id: &str) {
        *self.database_id.lock() = id.to_string();
    }

    fn write(&self, generation: u64) -> StoreResult<()> {
        let record = Record {
            format: FORMAT,
            database_id: self.database_id.lock().clone(),
            generation,
            counted: self.counted.clone(),
            counted_at: self.counted_at,
        };
        write_record(&self.path, &record)
    }
}

/// Writes `record` atomically (temporary file, fsync, rename), owner-only.
fn write_record(path: &Path, record: &Record) -> StoreResult<()> {
    let io = |e: std::io::Error| StoreError::backend("write the integrity record", e);
    let tmp = path.with_extension("integrity.tmp");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp).map_err(io)?;
    let bytes = serde_json::to_vec_pretty(record).map_err(|e| io(std::io::Error::other(e)))?;
    f.write_all(&bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

fn read_record(path: &Path, db: &Path) -> StoreResult<Option<Record>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            damaged(
                db,
                format!(
                    "its integrity record {} is unreadable ({e}); restore it or the database from a backup, or run `portcullis storage accept`",
                    path.display()
                ),
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StoreError::backend("read the integrity record", e)),
    }
}

fn damaged(db: &Path, finding: String) -> StoreError {
    StoreError::Damaged {
        path: db.display().to_string(),
        finding,
    }
}

/// What to do with a database whose integrity does not check out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    /// Refuse it (every open but `storage accept`).
    Check,
    /// Take it as it is under a new identity, so every token issued before is refused
    /// (`portcullis storage accept`, after the operator looked at what was found).
    Accept,
}

/// Reads every record of every tree (sled checks each page's CRC on the way), then compares
/// the database with its record file. Returns what the store needs: the identity and the
/// recorder that keeps the file in step.
///
/// `created` says the database directory did not exist before this open.
///
/// # Errors
/// [`StoreError::Damaged`] naming `path` and what was found.
pub(super) fn check(
    db: &sled::Db,
    meta: &sled::Tree,
    path: &Path,
    created: bool,
    mode: Mode,
    now_ms: i64,
) -> StoreResult<(DatabaseId, Recorder)> {
    let counted = count(db, path)?;
    let record_path = record_path(path);
    let record = read_record(&record_path, path)?;
    let read = |key: &str| {
        meta.get(key)
            .map_err(|e| StoreError::backend("read the database's identity", e))
    };
    let id = read(ID_KEY)?.map(|v| String::from_utf8_lossy(&v).into_owned());
    let generation = read(GENERATION_KEY)?
        .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
        .map_or(0, u64::from_be_bytes);
    let adopted = read(ADOPTED_KEY)?
        .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
        .map(i64::from_be_bytes);
    let holds_data = counted
        .iter()
        .any(|(tree, n)| *n > 0 && tree != "meta" && tree != "__sled__default");

    let finding = match (&record, &id) {
        (_, _) if mode == Mode::Accept => None,
        (None, None) => None,
        (None, Some(id)) => Some(format!(
            "it has an identity ({id}) but its integrity record {} is missing: restore the record, or run `portcullis storage accept` to take the database as it is",
            record_path.display()
        )),
        (Some(_), None) if created => {
            tracing::warn!(
                database = %path.display(),
                record = %record_path.display(),
                "no database was there: created a new one; sessions issued by the one before it are refused"
            );
            None
        }
        (Some(r), None) => Some(format!(
            "it has no identity, but its integrity record {} says it had {} (generation {}): a file of the database was deleted or it was emptied{}",
            record_path.display(),
            r.database_id,
            r.generation,
            lost(&r.counted, &counted)
        )),
        (Some(r), Some(id)) if r.database_id != *id => Some(format!(
            "it is not the database this gateway ran with: its identity is {id}, the integrity record {} names {}; it was replaced",
            record_path.display(),
            r.database_id
        )),
        (Some(r), Some(_)) if generation < r.generation => Some(format!(
            "it lost writes: its last durable write is number {generation}, the integrity record {} says {} were made (garbage or a truncation made sled drop the end of its log, or an older copy was put in its place){}",
            record_path.display(),
            r.generation,
            lost(&r.counted, &counted)
        )),
        (Some(_), Some(_)) => None,
    };
    if let Some(finding) = finding {
        return Err(damaged(path, finding));
    }

    let write_meta = |key: &str, value: &[u8]| {
        meta.insert(key, value)
            .map(|_| ())
            .map_err(|e| StoreError::backend("write the database's identity", e))
    };
    let (id, adopted) = match (id, mode) {
        (Some(id), Mode::Check) => (id, adopted),
        (had, _) => {
            let fresh = crate::secret::random_token(16);
            // An existing database seen for the first time by a version that binds tokens to
            // it: its sessions carry no identity and stay good until they expire. A new or
            // accepted one starts with none of those.
            let adopted = (had.is_none() && mode == Mode::Check && holds_data).then_some(now_ms);
            write_meta(ID_KEY, fresh.as_bytes())?;
            match adopted {
                Some(t) => write_meta(ADOPTED_KEY, &t.to_be_bytes())?,
                None => {
                    meta.remove(ADOPTED_KEY)
                        .map_err(|e| StoreError::backend("write the database's identity", e))?;
                }
            }
            db.flush()
                .map_err(|e| StoreError::backend("write the database's identity", e))?;
            (fresh, adopted)
        }
    };
    let recorder = Recorder {
        path: record_path,
        database_id: parking_lot::Mutex::new(id.clone()),
        counted,
        counted_at: now_ms.div_euclid(1000),
        written: parking_lot::Mutex::new(generation),
    };
    recorder.write(generation)?;
    Ok((
        DatabaseId {
            id,
            adopted_ms: adopted,
        },
        recorder,
    ))
}

/// Reads every record of every tree; returns how many each holds.
fn count(db: &sled::Db, path: &Path) -> StoreResult<BTreeMap<String, u64>> {
    let scan = || -> StoreResult<BTreeMap<String, u64>> {
        let mut out = BTreeMap::new();
        for name in db.tree_names() {
            let label = String::from_utf8_lossy(&name).into_owned();
            let tree = db
                .open_tree(&name)
                .map_err(|e| damaged(path, format!("sled cannot open its tree `{label}`: {e}")))?;
            let mut n = 0u64;
            for item in tree.iter() {
                item.map_err(|e| {
                    damaged(
                        path,
                        format!("sled cannot read a record of its tree `{label}` (after {n} good ones): {e}"),
                    )
                })?;
                n += 1;
            }
            out.insert(label, n);
        }
        Ok(out)
    };
    // sled asserts on some shapes of damage rather than returning an error.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(scan)).unwrap_or_else(|panic| {
        let why = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        Err(damaged(
            path,
            format!("sled failed while reading it: {why}"),
        ))
    })
}

/// "; records per tree at the last start → now: users 150 → 16" for the trees that shrank.
fn lost(before: &BTreeMap<String, u64>, now: &BTreeMap<String, u64>) -> String {
    let fewer: Vec<String> = before
        .iter()
        .filter_map(|(tree, &was)| {
            let is = now.get(tree).copied().unwrap_or(0);
            (is < was).then(|| format!("{tree} {was} → {is}"))
        })
        .collect();
    if fewer.is_empty() {
        String::new()
    } else {
        format!("; records at the last start → now: {}", fewer.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{SledStore, Store, User};

    /// sled's flusher thread may hold the file lock a moment after a handle is dropped (a new
    /// process never sees this: the old one's exit releases it).
    fn reopen(path: &Path, how: fn(&Path) -> StoreResult<SledStore>) -> StoreResult<SledStore> {
        for _ in 0..100 {
            match how(path) {
                Err(StoreError::Locked { .. }) => {
                    std::thread::sleep(std::time::Duration::from_millis(20))
                }
                other => return other,
            }
        }
        panic!("{} stays locked", path.display())
    }

    /// A database with 150 users, closed.
    fn populated() -> (tempfile::TempDir, PathBuf, String) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("portcullis.db");
        let s = SledStore::open(&path).unwrap();
        for i in 0..150 {
            let mut u = User::new(format!("user{i:03}"), 0);
            u.password_hash = Some("$argon2id$".repeat(10));
            s.put_user(&u).unwrap();
        }
        let id = s.database_id().unwrap().id;
        drop(s);
        (dir, path, id)
    }

    fn refused(path: &Path) -> String {
        match reopen(path, SledStore::open) {
            Err(e @ StoreError::Damaged { .. }) => {
                let msg = e.to_string();
                assert!(msg.contains(&path.display().to_string()), "{msg}");
                msg
            }
            Err(e) => panic!("refused, but not as damaged: {e}"),
            Ok(s) => panic!(
                "opened a damaged database: {} users",
                s.users().map(|u| u.len()).unwrap_or(0)
            ),
        }
    }

    fn garbage_at(file: &Path, percent: u64) {
        let mut bytes = std::fs::read(file).unwrap();
        let at = bytes.len() * percent as usize / 100;
        let end = (at + 4096).min(bytes.len());
        bytes[at..end].fill(0x5a);
        std::fs::write(file, bytes).unwrap();
    }

    #[test]
    fn a_closed_database_opens_again_with_its_identity_and_all_its_records() {
        let (_dir, path, id) = populated();
        for _ in 0..3 {
            let s = reopen(&path, SledStore::open).unwrap();
            assert_eq!(s.database_id().unwrap().id, id);
            assert_eq!(s.users().unwrap().len(), 150);
            assert_eq!(
                s.database_id().unwrap().adopted_ms,
                None,
                "made with an identity"
            );
        }
    }

    #[test]
    fn damage_to_the_files_is_refused_naming_the_path_and_the_finding() {
        type Damage = fn(&Path);
        let cases: &[(&str, Damage, &str)] = &[
            (
                "garbage at 10 %",
                |p| garbage_at(&p.join("db"), 10),
                "lost writes",
            ),
            (
                "garbage at 50 %",
                |p| garbage_at(&p.join("db"), 50),
                "lost writes",
            ),
            (
                "garbage at 90 %",
                |p| garbage_at(&p.join("db"), 90),
                "lost writes",
            ),
            (
                "truncated to half",
                |p| {
                    let f = std::fs::OpenOptions::new()
                        .write(true)
                        .open(p.join("db"))
                        .unwrap();
                    let len = f.metadata().unwrap().len();
                    f.set_len(len / 2).unwrap();
                },
                "lost writes",
            ),
            (
                "data file deleted",
                |p| std::fs::remove_file(p.join("db")).unwrap(),
                "no identity",
            ),
            (
                "every file deleted, directory kept",
                |p| {
                    for e in std::fs::read_dir(p).unwrap() {
                        let e = e.unwrap().path();
                        if e.is_dir() {
                            std::fs::remove_dir_all(e).unwrap();
                        } else {
                            std::fs::remove_file(e).unwrap();
                        }
                    }
                },
                "no identity",
            ),
            (
                "integrity record deleted",
                |p| std::fs::remove_file(record_path(p)).unwrap(),
                "record",
            ),
            (
                "integrity record overwritten",
                |p| std::fs::write(record_path(p), b"\x00garbage").unwrap(),
                "unreadable",
            ),
        ];
        for (what, damage, finding) in cases {
            let (_dir, path, _) = populated();
            damage(&path);
            let msg = refused(&path);
            assert!(msg.contains(finding), "{what}: {msg}");
            // Refused again at the next try: the first refusal did not make it look healthy.
            let again = refused(&path);
            assert!(again.contains(finding), "{what}, second open: {again}");
        }
    }

    #[test]
    fn a_finding_of_lost_writes_names_the_trees_that_shrank() {
        let before = BTreeMap::from([("users".to_string(), 150), ("devices".to_string(), 4)]);
        let now = BTreeMap::from([("users".to_string(), 16), ("devices".to_string(), 4)]);
        assert_eq!(
            lost(&before, &now),
            "; records at the last start → now: users 150 → 16"
        );
        assert_eq!(lost(&before, &before), "");
    }

    #[test]
    fn garbage_anywhere_after_a_restart_is_refused_or_harmless() {
        for percent in [10, 30, 50, 70, 90] {
            let (_dir, path, _) = populated();
            drop(reopen(&path, SledStore::open).unwrap());
            garbage_at(&path.join("db"), percent);
            // Garbage over space sled no longer uses (older copies of rewritten pages)
            // damages nothing: then every record is there.
            match reopen(&path, SledStore::open) {
                Ok(s) => assert_eq!(s.users().unwrap().len(), 150, "{percent} %: fewer users"),
                Err(e) => assert!(matches!(e, StoreError::Damaged { .. }), "{percent} %: {e}"),
            }
        }
    }

    #[test]
    fn a_deleted_database_directory_starts_afresh_under_a_new_identity() {
        let (_dir, path, id) = populated();
        std::fs::remove_dir_all(&path).unwrap();
        let s = reopen(&path, SledStore::open).unwrap();
        let fresh = s.database_id().unwrap();
        assert_ne!(fresh.id, id);
        assert_eq!(fresh.adopted_ms, None, "no token of the old one is taken");
        assert_eq!(s.user_count().unwrap(), 0);
        drop(s);
        let s = reopen(&path, SledStore::open).unwrap();
        assert_eq!(
            s.database_id().unwrap(),
            fresh,
            "and is itself from then on"
        );
    }

    #[test]
    fn an_older_copy_or_another_database_put_in_place_is_refused_until_accepted() {
        let (dir, path, id) = populated();
        let copy = dir.path().join("copy");
        copy_dir(&path, &copy);
        {
            let s = reopen(&path, SledStore::open).unwrap();
            s.put_user(&User::new("later", 0)).unwrap();
        }
        std::fs::remove_dir_all(&path).unwrap();
        copy_dir(&copy, &path);
        let msg = refused(&path);
        assert!(msg.contains("lost writes"), "{msg}");

        let other = dir.path().join("other.db");
        drop(SledStore::open(&other).unwrap());
        std::fs::remove_dir_all(&path).unwrap();
        copy_dir(&other, &path);
        let msg = refused(&path);
        assert!(msg.contains("not the database"), "{msg}");

        let s = reopen(&path, SledStore::accept).unwrap();
        let accepted = s.database_id().unwrap();
        assert_ne!(accepted.id, id);
        assert_eq!(accepted.adopted_ms, None);
        drop(s);
        let s = reopen(&path, SledStore::open).unwrap();
        assert_eq!(s.database_id().unwrap(), accepted);
    }

    #[test]
    fn a_database_from_before_identities_is_adopted_and_its_tokens_honoured() {
        let (_dir, path, _) = populated();
        {
            let s = reopen(&path, SledStore::open).unwrap();
            s.forget_identity();
        }
        std::fs::remove_file(record_path(&path)).unwrap();
        let s = reopen(&path, SledStore::open).unwrap();
        assert!(s.database_id().unwrap().adopted_ms.is_some());
        assert_eq!(s.users().unwrap().len(), 150);
    }

    fn copy_dir(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let e = e.unwrap().path();
            let dest = to.join(e.file_name().unwrap());
            if e.is_dir() {
                copy_dir(&e, &dest);
            } else {
                std::fs::copy(&e, &dest).unwrap();
            }
        }
    }
}

//! Every piece of state a [`super::Store`] holds, one record at a time, and the dump file that
//! carries them between backends (`portcullis store export` / `store import`).
//!
//! # The dump format (version 1)
//! JSON lines, UTF-8, one object per line:
//!
//! 1. a header: `{"format":"portcullis-dump","version":1,"backend":"sled","created":<unix
//!    seconds>,"records":<n>,"counts":{"user":2,...}}`;
//! 2. `n` records, each an object whose `kind` names what it is (`database_id`, `device_key`,
//!    `secret`, `user`, `device`, `execution`, `session`, `revocation`, `user_revocation`,
//!    `counter`, `failure_window`, `ticket`, `invitation`, `outbox`, `ban`), its other fields
//!    the record's own (byte strings in standard base64);
//! 3. a trailer: `{"kind":"end","records":<n>,"sha256":"<hex>"}`, the SHA-256 of every record
//!    line (with its newline) in order.
//!
//! A reader refuses a header of another format or version, a line that does not parse (naming
//! its number), a record count or checksum that does not match (a truncated or edited dump),
//! and anything after the trailer: a damaged dump imports nothing.
//!
//! # Security
//! A dump holds password hashes, session records, one-time tickets, the store's secrets and
//! the device key that opens TOTP secrets: it is as secret as the database and the key file
//! together. Byte strings have a redacted `Debug`, so a record never prints them.

use super::{Ban, Device, Invitation, SessionRecord, User};
use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// The dump format's name in the header.
pub const FORMAT: &str = "portcullis-dump";
/// The dump format version this build writes and reads.
pub const VERSION: u32 = 1;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Bytes kept as they are, written as standard base64; `Debug` shows only the length.
#[derive(Clone, PartialEq, Eq)]
pub struct Bytes(pub Vec<u8>);

impl std::fmt::Debug for Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "<{} bytes>", self.0.len())
    }
}

impl Serialize for Bytes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&B64.encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        B64.decode(text.as_bytes())
            .map(Bytes)
            .map_err(|e| serde::de::Error::custom(format!("not base64: {e}")))
    }
}

/// One piece of stored state, as the backend holds it: expiry times, counts and sealed or
/// hashed material exactly as stored (nothing is re-hashed or re-sealed on the way). Indexes a
/// backend derives (the e-mail index, the index of names stored before they were canonical,
/// the per-user session index) are not records: importing the users and sessions rebuilds
/// them.
///
/// The signing keys join as one more kind once they live in the store (see the report of
/// issue 16, point 5): a variant here, its arm in each backend's `export_records` and
/// `import_records`, its rank in [`Record::rank`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Record {
    /// The database's identity, which session tokens carry: moved with the state, a token
    /// issued before the move is accepted after it.
    DatabaseId {
        /// The identity.
        id: String,
        /// When an existing database adopted it (unix milliseconds), if it did.
        #[serde(default)]
        adopted_ms: Option<i64>,
    },
    /// A named 32-byte secret ([`super::Store::secret`]).
    Secret {
        /// Its name.
        name: String,
        /// Its value.
        value: Bytes,
    },
    /// An account (its e-mail and legacy-name index entries are rebuilt on import).
    User(User),
    /// A second-factor device, its sealed or hashed material as stored.
    Device(Device),
    /// A flow execution's serialized state.
    Execution {
        /// Its id.
        id: String,
        /// Its expiry (unix seconds, exclusive).
        expires: i64,
        /// Its state.
        state: Bytes,
    },
    /// A recorded session (with when it was last seen).
    Session(SessionRecord),
    /// A revoked session.
    Revocation {
        /// The session's id.
        sid: String,
        /// Until when the revocation holds (unix seconds).
        expires: i64,
    },
    /// Tokens of a user issued at or before `since_ms` are refused.
    UserRevocation {
        /// The account.
        username: String,
        /// Unix milliseconds.
        since_ms: i64,
    },
    /// A fixed-window counter.
    Counter {
        /// Its key.
        key: String,
        /// When its window ends (unix seconds, exclusive).
        window_end: i64,
        /// Its count in that window.
        count: u32,
    },
    /// A sliding failure window.
    FailureWindow {
        /// Its key.
        key: String,
        /// Its length in seconds, as last recorded.
        window: i64,
        /// Each failure's time (unix seconds), oldest first.
        times: Vec<i64>,
    },
    /// A one-time ticket (a magic link, a code), under the hash of its secret.
    Ticket {
        /// The hash it is stored under.
        hash: String,
        /// Its expiry (unix seconds, exclusive).
        expires: i64,
        /// Its data.
        data: Bytes,
    },
    /// An invitation.
    Invitation(Invitation),
    /// A message waiting for delivery.
    Outbox {
        /// Its id.
        id: String,
        /// The queued record.
        record: Bytes,
    },
    /// A sign-in ban (ended ones included until they are dropped).
    Ban(Ban),
    /// A key set ([`super::Store::keyset`]: the session signing keys, the device key's check
    /// value) as stored; it starts again at version 1 in the target.
    Keyset {
        /// Its name.
        name: String,
        /// Its data.
        data: Bytes,
    },
    /// An audit record ([`super::Store::append_audit`]): when it was made and its JSON line.
    Audit {
        /// When it was made (unix milliseconds).
        at_ms: i64,
        /// The record's JSON line.
        line: String,
    },
}

impl Record {
    /// The `kind` this record has in a dump.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Self::DatabaseId { .. } => "database_id",
            Self::Secret { .. } => "secret",
            Self::User(_) => "user",
            Self::Device(_) => "device",
            Self::Execution { .. } => "execution",
            Self::Session(_) => "session",
            Self::Revocation { .. } => "revocation",
            Self::UserRevocation { .. } => "user_revocation",
            Self::Counter { .. } => "counter",
            Self::FailureWindow { .. } => "failure_window",
            Self::Ticket { .. } => "ticket",
            Self::Invitation(_) => "invitation",
            Self::Outbox { .. } => "outbox",
            Self::Ban(_) => "ban",
            Self::Keyset { .. } => "keyset",
            Self::Audit { .. } => "audit",
        }
    }

    /// Where the kind comes in a dump: the identity first, users before their devices.
    fn rank(&self) -> u8 {
        match self {
            Self::DatabaseId { .. } => 0,
            Self::Secret { .. } => 1,
            Self::User(_) => 2,
            Self::Device(_) => 3,
            Self::Execution { .. } => 4,
            Self::Session(_) => 5,
            Self::Revocation { .. } => 6,
            Self::UserRevocation { .. } => 7,
            Self::Counter { .. } => 8,
            Self::FailureWindow { .. } => 9,
            Self::Ticket { .. } => 10,
            Self::Invitation(_) => 11,
            Self::Outbox { .. } => 12,
            Self::Ban(_) => 13,
            Self::Keyset { .. } => 14,
            Self::Audit { .. } => 15,
        }
    }

    /// The record's key within its kind (a device's is its user's, NUL, its id).
    fn key(&self) -> std::borrow::Cow<'_, str> {
        use std::borrow::Cow::{Borrowed, Owned};
        match self {
            Self::DatabaseId { id, .. } => Borrowed(id),
            Self::Secret { name, .. } => Borrowed(name),
            Self::User(u) => Borrowed(&u.username),
            Self::Device(d) => Owned(super::device_key(&d.username, &d.id)),
            Self::Execution { id, .. } | Self::Outbox { id, .. } => Borrowed(id),
            Self::Session(s) => Borrowed(&s.sid),
            Self::Revocation { sid, .. } => Borrowed(sid),
            Self::UserRevocation { username, .. } => Borrowed(username),
            Self::Counter { key, .. } | Self::FailureWindow { key, .. } => Borrowed(key),
            Self::Ticket { hash, .. } => Borrowed(hash),
            Self::Invitation(i) => Borrowed(&i.id),
            Self::Ban(b) => Borrowed(&b.subject),
            Self::Keyset { name, .. } => Borrowed(name),
            // Zero-padded, so the records of a dump sort by time, then by line.
            Self::Audit { at_ms, line } => Owned(format!("{at_ms:020}{line}")),
        }
    }
}

impl Record {
    /// Checks what the type cannot say: a secret is 32 bytes, a failure window holds a time.
    ///
    /// # Errors
    /// What is wrong, for a message.
    pub fn check(&self) -> Result<(), String> {
        match self {
            Self::Secret { name, value } if value.0.len() != 32 => Err(format!(
                "the secret `{name}` is {} bytes, not 32",
                value.0.len()
            )),
            Self::FailureWindow { key, times, .. } if times.is_empty() => {
                Err(format!("the failure window `{key}` holds no failure"))
            }
            Self::Audit { at_ms, line } if line.contains('\0') => Err(format!(
                "the audit record made at {at_ms} holds a NUL character"
            )),
            _ => Ok(()),
        }
    }
}

/// Checks every record ([`Record::check`]) and that at most one is the identity, before a
/// backend writes any of them.
///
/// # Errors
/// [`super::StoreError::Backend`] saying which record is wrong.
pub fn check_all(records: &[Record]) -> super::StoreResult<()> {
    let bad = |msg: String| super::StoreError::backend("import records", msg);
    for r in records {
        r.check().map_err(bad)?;
    }
    let ids = records
        .iter()
        .filter(|r| matches!(r, Record::DatabaseId { .. }))
        .count();
    if ids > 1 {
        return Err(bad(format!(
            "{ids} database identities; a database has one"
        )));
    }
    Ok(())
}

/// Puts records in the one order every backend exports them in: by kind (the identity first,
/// users before devices), then by key in byte order. Two stores holding the same state export
/// equal lists.
pub fn sort(records: &mut [Record]) {
    records.sort_by(|a, b| {
        a.rank()
            .cmp(&b.rank())
            .then_with(|| a.key().as_bytes().cmp(b.key().as_bytes()))
    });
}

/// How many records of each kind `records` holds (kind -> count).
#[must_use]
pub fn counts<'a>(kinds: impl IntoIterator<Item = &'a str>) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for kind in kinds {
        *out.entry(kind.to_string()).or_insert(0) += 1;
    }
    out
}

/// "2 user, 1 session" from [`counts`]; "nothing" when empty.
#[must_use]
pub fn describe(counts: &BTreeMap<String, u64>) -> String {
    if counts.is_empty() {
        return "nothing".into();
    }
    counts
        .iter()
        .map(|(kind, n)| format!("{n} {kind}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What a store that is not empty holds, for [`super::StoreError::NotEmpty`]: every record
/// but the identity (a new database has one) counted by kind, or `None` when that is nothing.
#[must_use]
pub fn holdings(records: &[Record]) -> Option<String> {
    let held = counts(
        records
            .iter()
            .filter(|r| !matches!(r, Record::DatabaseId { .. }))
            .map(Record::kind),
    );
    (!held.is_empty()).then(|| describe(&held))
}

/// The device key file's key (base64url, as the file holds it): not store state, but needed to
/// open the TOTP secrets a dump carries, so it travels in the dump as a `device_key` record.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceKeyRecord {
    /// The key, as in the key file.
    pub key: String,
}

impl std::fmt::Debug for DeviceKeyRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DeviceKeyRecord(<redacted>)")
    }
}

/// The first line of a dump.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// Always [`FORMAT`].
    pub format: String,
    /// The format version ([`VERSION`]).
    pub version: u32,
    /// The backend it was exported from (`sled`, `postgres`, `memory`).
    pub backend: String,
    /// When it was written (unix seconds).
    pub created: i64,
    /// How many records follow (the device key included).
    pub records: u64,
    /// How many of each kind.
    pub counts: BTreeMap<String, u64>,
}

/// The last line of a dump.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Trailer {
    kind: String,
    records: u64,
    sha256: String,
}

/// What a dump holds once read and checked.
#[derive(Debug)]
pub struct Dump {
    /// Its header.
    pub header: Header,
    /// The store's records, in the dump's order.
    pub records: Vec<Record>,
    /// The device key, when the dump carries one.
    pub device_key: Option<DeviceKeyRecord>,
}

/// Why a dump could not be read; names the line (1-based) where it can.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DumpError {
    /// The dump is empty, or its first line is not a Portcullis dump header.
    #[error("line 1: not a Portcullis dump header ({0})")]
    NotADump(String),
    /// The dump's format version is not one this build reads.
    #[error("line 1: dump format version {found} is not one this portcullis reads (it reads version {VERSION}); use the portcullis version that wrote it, or a newer one")]
    Version {
        /// The version found.
        found: u32,
    },
    /// A line does not parse as a record.
    #[error("line {line}: {reason}")]
    Line {
        /// The line's number (1-based).
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// The dump ends early, or its records do not match its header or trailer.
    #[error("the dump is damaged or truncated: {0}")]
    Damaged(String),
    /// The dump could not be encoded.
    #[error("encode the dump: {0}")]
    Encode(#[from] serde_json::Error),
}

/// Writes a dump of `records` (and the device key, when given) exported from `backend` at
/// `created` (unix seconds): header, records, trailer, each line ending in `\n`.
///
/// # Errors
/// [`DumpError::Encode`] when a record does not serialize (it always does).
pub fn write(
    backend: &str,
    created: i64,
    records: &[Record],
    device_key: Option<&DeviceKeyRecord>,
) -> Result<Vec<u8>, DumpError> {
    #[derive(Serialize)]
    struct KeyLine<'a> {
        kind: &'static str,
        key: &'a str,
    }
    let mut lines: Vec<Vec<u8>> = Vec::with_capacity(records.len() + 1);
    if let Some(k) = device_key {
        lines.push(serde_json::to_vec(&KeyLine {
            kind: "device_key",
            key: &k.key,
        })?);
    }
    for r in records {
        lines.push(serde_json::to_vec(r)?);
    }
    let kinds = device_key
        .map(|_| "device_key")
        .into_iter()
        .chain(records.iter().map(Record::kind));
    let header = Header {
        format: FORMAT.into(),
        version: VERSION,
        backend: backend.into(),
        created,
        records: lines.len() as u64,
        counts: counts(kinds),
    };
    let mut out = serde_json::to_vec(&header)?;
    out.push(b'\n');
    let mut hash = Sha256::new();
    for line in &lines {
        hash.update(line);
        hash.update(b"\n");
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    let trailer = Trailer {
        kind: "end".into(),
        records: header.records,
        sha256: to_hex(&hash.finalize()),
    };
    out.extend_from_slice(&serde_json::to_vec(&trailer)?);
    out.push(b'\n');
    Ok(out)
}

/// Reads and checks a whole dump: nothing of it is used unless all of it is good.
///
/// # Errors
/// [`DumpError`] naming the bad line, or what does not match.
pub fn read(bytes: &[u8]) -> Result<Dump, DumpError> {
    let mut lines = bytes.split(|b| *b == b'\n').enumerate().peekable();
    let first = lines
        .next()
        .map(|(_, l)| l)
        .filter(|l| !l.is_empty())
        .ok_or_else(|| DumpError::NotADump("the dump is empty".into()))?;
    let value: serde_json::Value =
        serde_json::from_slice(first).map_err(|e| DumpError::NotADump(e.to_string()))?;
    if value.get("format").and_then(|f| f.as_str()) != Some(FORMAT) {
        return Err(DumpError::NotADump(format!("no \"format\":\"{FORMAT}\"")));
    }
    let version = value.get("version").and_then(serde_json::Value::as_u64);
    match version {
        Some(v) if v == u64::from(VERSION) => {}
        Some(v) => {
            return Err(DumpError::Version {
                found: u32::try_from(v).unwrap_or(u32::MAX),
            })
        }
        None => return Err(DumpError::NotADump("no version".into())),
    }
    let header: Header =
        serde_json::from_value(value).map_err(|e| DumpError::NotADump(e.to_string()))?;
    let mut records = Vec::new();
    let mut device_key = None;
    let mut hash = Sha256::new();
    let mut seen: u64 = 0;
    let mut trailer: Option<(usize, Trailer)> = None;
    while let Some((i, line)) = lines.next() {
        let number = i + 1;
        if line.is_empty() && lines.peek().is_none() {
            break;
        }
        if trailer.is_some() {
            return Err(DumpError::Line {
                line: number,
                reason: "something follows the dump's last line".into(),
            });
        }
        let bad = |reason: String| DumpError::Line {
            line: number,
            reason,
        };
        let value: serde_json::Value =
            serde_json::from_slice(line).map_err(|e| bad(format!("not a JSON record ({e})")))?;
        match value.get("kind").and_then(|k| k.as_str()) {
            Some("end") => {
                let t: Trailer = serde_json::from_value(value)
                    .map_err(|e| bad(format!("a damaged last line ({e})")))?;
                trailer = Some((number, t));
            }
            Some("device_key") => {
                let k: DeviceKeyRecord = serde_json::from_value(value)
                    .map_err(|e| bad(format!("a damaged device key record ({e})")))?;
                if device_key.replace(k).is_some() {
                    return Err(bad("a second device key".into()));
                }
                seen += 1;
            }
            Some(_) => {
                let r: Record = serde_json::from_value(value)
                    .map_err(|e| bad(format!("not a record this portcullis knows ({e})")))?;
                r.check().map_err(bad)?;
                records.push(r);
                seen += 1;
            }
            None => return Err(bad("a record without a \"kind\"".into())),
        }
        if trailer.is_none() {
            hash.update(line);
            hash.update(b"\n");
        }
    }
    let Some((_, trailer)) = trailer else {
        return Err(DumpError::Damaged(format!(
            "it ends after {seen} of the {} records its header announces, without its last line",
            header.records
        )));
    };
    if seen != header.records || trailer.records != header.records {
        return Err(DumpError::Damaged(format!(
            "it holds {seen} records, its header announces {} and its last line {}",
            header.records, trailer.records
        )));
    }
    if !crate::secret::equal(
        to_hex(&hash.finalize()).as_bytes(),
        trailer.sha256.as_bytes(),
    ) {
        return Err(DumpError::Damaged(
            "its checksum does not match its records: a line was changed".into(),
        ));
    }
    let found = counts(
        device_key
            .as_ref()
            .map(|_| "device_key")
            .into_iter()
            .chain(records.iter().map(Record::kind)),
    );
    if found != header.counts {
        return Err(DumpError::Damaged(format!(
            "it holds {}, its header announces {}",
            describe(&found),
            describe(&header.counts)
        )));
    }
    Ok(Dump {
        header,
        records,
        device_key,
    })
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> (Vec<Record>, DeviceKeyRecord) {
        let mut records = vec![
            Record::User(User::new("bob", 2)),
            Record::DatabaseId {
                id: "db1".into(),
                adopted_ms: Some(5),
            },
            Record::Secret {
                name: "csrf".into(),
                value: Bytes(vec![7; 32]),
            },
            Record::User(User::new("alice", 1)),
            Record::Ticket {
                hash: "h".into(),
                expires: 10,
                data: Bytes(vec![0, 255]),
            },
        ];
        sort(&mut records);
        (
            records,
            DeviceKeyRecord {
                key: "A".repeat(43),
            },
        )
    }

    #[test]
    fn a_dump_reads_back_what_was_written_in_one_order() {
        let (records, key) = sample();
        let kinds: Vec<_> = records.iter().map(Record::kind).collect();
        assert_eq!(kinds, ["database_id", "secret", "user", "user", "ticket"]);
        let bytes = write("sled", 42, &records, Some(&key)).unwrap();
        let dump = read(&bytes).unwrap();
        assert_eq!(dump.records, records);
        assert_eq!(dump.device_key, Some(key));
        assert_eq!(dump.header.backend, "sled");
        assert_eq!(dump.header.records, 6);
        assert_eq!(dump.header.counts.get("user"), Some(&2));
    }

    #[test]
    fn secrets_never_show_in_debug_output() {
        let (records, key) = sample();
        let shown = format!("{records:?} {key:?}");
        assert!(
            !shown.contains("AAAA") && !shown.contains("[7, 7"),
            "{shown}"
        );
        assert!(shown.contains("<32 bytes>"), "{shown}");
    }

    #[test]
    fn every_kind_of_damage_is_refused_naming_the_line_or_the_mismatch() {
        let (records, key) = sample();
        let good = String::from_utf8(write("sled", 42, &records, Some(&key)).unwrap()).unwrap();
        let lines: Vec<&str> = good.lines().collect();
        let with = |i: usize, new: &str| {
            let mut l = lines.clone();
            l[i] = new;
            l.join("\n") + "\n"
        };
        let short_secret = lines[3].replace(&B64.encode([7u8; 32]), &B64.encode([7u8; 31]));
        let cases: Vec<(&str, String, &str)> = vec![
            ("empty", String::new(), "line 1"),
            ("not a dump", "{\"a\":1}\n".into(), "line 1"),
            (
                "a newer version",
                with(0, &lines[0].replace("\"version\":1", "\"version\":2")),
                "version 2",
            ),
            ("garbage", with(2, "{{{"), "line 3"),
            ("unknown kind", with(2, "{\"kind\":\"dragon\"}"), "line 3"),
            ("no kind", with(2, "{\"id\":\"x\"}"), "line 3"),
            ("a 31-byte secret", with(3, &short_secret), "line 4"),
            ("cut at the end", lines[..6].join("\n") + "\n", "truncated"),
            (
                "cut mid-line",
                good[..good.len() - 10].to_string(),
                "line 8",
            ),
            (
                "a record dropped",
                [&lines[..4], &lines[5..]].concat().join("\n") + "\n",
                "holds 5 records",
            ),
            (
                "a value changed",
                with(5, &lines[5].replace("bob", "eve")),
                "checksum",
            ),
            (
                "a line after the end",
                good.clone() + "{\"kind\":\"ban\"}\n",
                "line 9",
            ),
            (
                "a second device key",
                with(4, lines[1]),
                "second device key",
            ),
        ];
        for (what, text, says) in cases {
            let err = read(text.as_bytes()).unwrap_err().to_string();
            assert!(err.contains(says), "{what}: expected {says:?} in {err}");
        }
    }
}

//! Every row as a [`Record`] and back: [`Store::export_records`] reads one `REPEATABLE READ`
//! snapshot, [`Store::import_records`] writes in one transaction (all or nothing).
//!
//! [`Store::export_records`]: crate::store::Store::export_records
//! [`Store::import_records`]: crate::store::Store::import_records

use super::{
    db, execute, json_col, lock, pool_err, query, session_from_row, storable, to_json, write_user,
    PgStore,
};
use crate::store::dump::{self, Bytes, Record};
use crate::store::{DatabaseId, StoreError, StoreResult};
use deadpool_postgres::GenericClient;
use std::time::Duration;

/// The longest a whole export or import may take.
const WHOLE_DATABASE: Duration = Duration::from_secs(30 * 60);

/// Every table that holds state, and the record kind its rows are, for the emptiness check.
const TABLES: &[(&str, &str)] = &[
    ("portcullis_secrets", "secret"),
    ("portcullis_users", "user"),
    ("portcullis_devices", "device"),
    ("portcullis_executions", "execution"),
    ("portcullis_sessions", "session"),
    ("portcullis_revoked_sessions", "revocation"),
    ("portcullis_revoked_users", "user_revocation"),
    ("portcullis_counters", "counter"),
    ("portcullis_failure_windows", "failure_window"),
    ("portcullis_tickets", "ticket"),
    ("portcullis_invitations", "invitation"),
    ("portcullis_outbox", "outbox"),
    ("portcullis_bans", "ban"),
    ("portcullis_keysets", "keyset"),
    ("portcullis_audit", "audit"),
];

/// The database's identity as `portcullis_meta` holds it.
pub(super) async fn read_identity<C: GenericClient>(c: &C) -> StoreResult<DatabaseId> {
    const ACTION: &str = "read database identity";
    let rows = query(
        c,
        "SELECT key, value FROM portcullis_meta \
         WHERE key IN ('database_id', 'database_adopted_ms')",
        &[],
    )
    .await
    .map_err(db(ACTION))?;
    let mut id = None;
    let mut adopted_ms = None;
    for r in &rows {
        let key: String = r.get(0);
        let value: String = r.get(1);
        match key.as_str() {
            "database_id" => id = Some(value),
            _ => {
                adopted_ms = Some(value.parse::<i64>().map_err(|_| {
                    StoreError::backend(ACTION, "database_adopted_ms is not a number")
                })?)
            }
        }
    }
    Ok(DatabaseId {
        id: id.ok_or_else(|| StoreError::backend(ACTION, "missing"))?,
        adopted_ms,
    })
}

impl PgStore {
    /// [`crate::store::Store::export_records`].
    pub(super) fn export_all(&self) -> StoreResult<Vec<Record>> {
        const ACTION: &str = "export records";
        self.run_within(ACTION, Some(WHOLE_DATABASE), |pool| async move {
            let mut c = pool.get().await.map_err(pool_err(ACTION))?;
            let tx = c
                .build_transaction()
                .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .await
                .map_err(db(ACTION))?;
            let out = read_all(&tx).await?;
            tx.commit().await.map_err(db(ACTION))?;
            Ok(out)
        })
    }

    /// [`crate::store::Store::import_records`].
    pub(super) fn import_all(&self, records: &[Record]) -> StoreResult<()> {
        const ACTION: &str = "import records";
        dump::check_all(records)?;
        if let Some(r) = records.iter().find(|r| !keys_storable(r)) {
            return Err(StoreError::backend(
                ACTION,
                format!(
                    "a {} record has a NUL character in its key, which PostgreSQL cannot store",
                    r.kind()
                ),
            ));
        }
        let records = records.to_vec();
        let identity = self.run_within(ACTION, Some(WHOLE_DATABASE), |pool| async move {
            let mut c = pool.get().await.map_err(pool_err(ACTION))?;
            let tx = c.transaction().await.map_err(db(ACTION))?;
            // No gateway writes while the import runs (theirs wait, then find the state
            // imported), and no account is created between the check and the writes.
            let tables: Vec<&str> = TABLES.iter().map(|(t, _)| *t).collect();
            execute(
                &tx,
                &format!(
                    "LOCK TABLE portcullis_meta, {} IN EXCLUSIVE MODE",
                    tables.join(", ")
                ),
                &[],
            )
            .await
            .map_err(db(ACTION))?;
            execute(&tx, "SELECT pg_advisory_xact_lock($1)", &[&lock::ACCOUNTS])
                .await
                .map_err(db(ACTION))?;
            if let Some(holds) = holdings(&tx).await? {
                return Err(StoreError::NotEmpty { holds });
            }
            for r in &records {
                write_record(&tx, r).await?;
            }
            let identity = read_identity(&tx).await?;
            tx.commit().await.map_err(db(ACTION))?;
            Ok(identity)
        })?;
        *self.identity.write() = identity;
        Ok(())
    }
}

/// Whether every key of `r` can be stored (PostgreSQL text holds no NUL).
fn keys_storable(r: &Record) -> bool {
    match r {
        Record::DatabaseId { id, .. } => storable(id),
        Record::Secret { name, .. } => storable(name),
        Record::User(u) => storable(&u.username),
        Record::Device(d) => storable(&d.username) && storable(&d.id),
        Record::Execution { id, .. } | Record::Outbox { id, .. } => storable(id),
        Record::Session(s) => storable(&s.sid) && storable(&s.username),
        Record::Revocation { sid, .. } => storable(sid),
        Record::UserRevocation { username, .. } => storable(username),
        Record::Counter { key, .. } | Record::FailureWindow { key, .. } => storable(key),
        Record::Ticket { hash, .. } => storable(hash),
        Record::Invitation(i) => storable(&i.id),
        Record::Ban(b) => storable(&b.subject),
        Record::Keyset { name, .. } => storable(name),
        Record::Audit { line, .. } => storable(line),
    }
}

/// What the database holds but its identity, by kind, when it holds anything.
async fn holdings<C: GenericClient>(c: &C) -> StoreResult<Option<String>> {
    let sql = TABLES
        .iter()
        .map(|(table, kind)| format!("SELECT '{kind}'::text, count(*) FROM {table}"))
        .collect::<Vec<_>>()
        .join(" UNION ALL ");
    let rows = query(c, &sql, &[])
        .await
        .map_err(db("check the target is empty"))?;
    let mut held = std::collections::BTreeMap::new();
    for r in &rows {
        let n: i64 = r.get(1);
        if n > 0 {
            held.insert(r.get::<_, String>(0), u64::try_from(n).unwrap_or(0));
        }
    }
    Ok((!held.is_empty()).then(|| dump::describe(&held)))
}

/// Every row, as records in [`dump::sort`] order.
async fn read_all<C: GenericClient>(c: &C) -> StoreResult<Vec<Record>> {
    const ACTION: &str = "export records";
    let rows = |sql: &'static str| async move { query(c, sql, &[]).await.map_err(db(ACTION)) };
    let identity = read_identity(c).await?;
    let mut out = vec![Record::DatabaseId {
        id: identity.id,
        adopted_ms: identity.adopted_ms,
    }];
    for r in rows("SELECT name, value FROM portcullis_secrets").await? {
        out.push(Record::Secret {
            name: r.get(0),
            value: Bytes(r.get(1)),
        });
    }
    for r in rows("SELECT data FROM portcullis_users").await? {
        out.push(Record::User(json_col(&r, 0, ACTION)?));
    }
    for r in rows("SELECT data FROM portcullis_devices").await? {
        out.push(Record::Device(json_col(&r, 0, ACTION)?));
    }
    for r in rows("SELECT id, expires, state FROM portcullis_executions").await? {
        out.push(Record::Execution {
            id: r.get(0),
            expires: r.get(1),
            state: Bytes(r.get(2)),
        });
    }
    for r in rows("SELECT data, last_seen FROM portcullis_sessions").await? {
        out.push(Record::Session(session_from_row(&r, ACTION)?));
    }
    for r in rows("SELECT sid, expires FROM portcullis_revoked_sessions").await? {
        out.push(Record::Revocation {
            sid: r.get(0),
            expires: r.get(1),
        });
    }
    for r in rows("SELECT username, since_ms FROM portcullis_revoked_users").await? {
        out.push(Record::UserRevocation {
            username: r.get(0),
            since_ms: r.get(1),
        });
    }
    for r in rows("SELECT key, window_end, count FROM portcullis_counters").await? {
        out.push(Record::Counter {
            key: r.get(0),
            window_end: r.get(1),
            count: super::count_u32(r.get(2)),
        });
    }
    for r in rows("SELECT key, window_secs, times FROM portcullis_failure_windows").await? {
        out.push(Record::FailureWindow {
            key: r.get(0),
            window: r.get(1),
            times: r.get(2),
        });
    }
    for r in rows("SELECT hash, expires, data FROM portcullis_tickets").await? {
        out.push(Record::Ticket {
            hash: r.get(0),
            expires: r.get(1),
            data: Bytes(r.get(2)),
        });
    }
    for r in rows("SELECT data FROM portcullis_invitations").await? {
        out.push(Record::Invitation(json_col(&r, 0, ACTION)?));
    }
    for r in rows("SELECT id, record FROM portcullis_outbox").await? {
        out.push(Record::Outbox {
            id: r.get(0),
            record: Bytes(r.get(1)),
        });
    }
    for r in rows("SELECT data FROM portcullis_bans").await? {
        out.push(Record::Ban(json_col(&r, 0, ACTION)?));
    }
    for r in rows("SELECT name, data FROM portcullis_keysets").await? {
        out.push(Record::Keyset {
            name: r.get(0),
            data: Bytes(r.get(1)),
        });
    }
    for r in rows("SELECT at_ms, line FROM portcullis_audit ORDER BY at_ms, id").await? {
        out.push(Record::Audit {
            at_ms: r.get(0),
            line: r.get(1),
        });
    }
    dump::sort(&mut out);
    Ok(out)
}

/// Inserts one record as the trait's writes would have stored it.
async fn write_record<C: GenericClient>(c: &C, record: &Record) -> StoreResult<()> {
    const ACTION: &str = "import records";
    let run = |sql: &'static str,
               params: Vec<Box<dyn tokio_postgres::types::ToSql + Sync + Send>>| async move {
        let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = params
            .iter()
            .map(|p| p.as_ref() as &(dyn tokio_postgres::types::ToSql + Sync))
            .collect();
        execute(c, sql, &refs).await.map(|_| ()).map_err(db(ACTION))
    };
    match record.clone() {
        Record::DatabaseId { id, adopted_ms } => {
            run(
                "INSERT INTO portcullis_meta (key, value) VALUES ('database_id', $1) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                vec![Box::new(id)],
            )
            .await?;
            match adopted_ms {
                Some(t) => {
                    run(
                        "INSERT INTO portcullis_meta (key, value) \
                         VALUES ('database_adopted_ms', $1) \
                         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                        vec![Box::new(t.to_string())],
                    )
                    .await?
                }
                None => {
                    run(
                        "DELETE FROM portcullis_meta WHERE key = 'database_adopted_ms'",
                        vec![],
                    )
                    .await?
                }
            }
        }
        Record::Secret { name, value } => {
            run(
                "INSERT INTO portcullis_secrets (name, value) VALUES ($1, $2)",
                vec![Box::new(name), Box::new(value.0)],
            )
            .await?
        }
        Record::User(user) => write_user(c, &user).await?,
        Record::Device(d) => {
            let data = to_json(&d, ACTION)?;
            run(
                "INSERT INTO portcullis_devices (username, id, data) VALUES ($1, $2, $3)",
                vec![Box::new(d.username), Box::new(d.id), Box::new(data)],
            )
            .await?
        }
        Record::Execution { id, expires, state } => {
            run(
                "INSERT INTO portcullis_executions (id, expires, state) VALUES ($1, $2, $3)",
                vec![Box::new(id), Box::new(expires), Box::new(state.0)],
            )
            .await?
        }
        Record::Session(s) => {
            let mut data = s.clone();
            data.last_seen = None;
            let data = to_json(&data, ACTION)?;
            run(
                "INSERT INTO portcullis_sessions \
                 (sid, username, issued, expires, last_seen, data) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
                vec![
                    Box::new(s.sid),
                    Box::new(s.username),
                    Box::new(s.issued),
                    Box::new(s.expires),
                    Box::new(s.last_seen),
                    Box::new(data),
                ],
            )
            .await?
        }
        Record::Revocation { sid, expires } => {
            run(
                "INSERT INTO portcullis_revoked_sessions (sid, expires) VALUES ($1, $2)",
                vec![Box::new(sid), Box::new(expires)],
            )
            .await?
        }
        Record::UserRevocation { username, since_ms } => {
            run(
                "INSERT INTO portcullis_revoked_users (username, since_ms) VALUES ($1, $2)",
                vec![Box::new(username), Box::new(since_ms)],
            )
            .await?
        }
        Record::Counter {
            key,
            window_end,
            count,
        } => {
            run(
                "INSERT INTO portcullis_counters (key, window_end, count) VALUES ($1, $2, $3)",
                vec![
                    Box::new(key),
                    Box::new(window_end),
                    Box::new(i64::from(count)),
                ],
            )
            .await?
        }
        Record::FailureWindow { key, window, times } => {
            // Kept until the window has passed its newest failure, as slide_failure keeps it.
            let expires = times.last().copied().unwrap_or(0).saturating_add(window);
            run(
                "INSERT INTO portcullis_failure_windows (key, window_secs, times, expires) \
                 VALUES ($1, $2, $3, $4)",
                vec![
                    Box::new(key),
                    Box::new(window),
                    Box::new(times),
                    Box::new(expires),
                ],
            )
            .await?
        }
        Record::Ticket {
            hash,
            expires,
            data,
        } => {
            run(
                "INSERT INTO portcullis_tickets (hash, expires, data) VALUES ($1, $2, $3)",
                vec![Box::new(hash), Box::new(expires), Box::new(data.0)],
            )
            .await?
        }
        Record::Invitation(i) => {
            let data = to_json(&i, ACTION)?;
            run(
                "INSERT INTO portcullis_invitations (id, expires, data) VALUES ($1, $2, $3)",
                vec![Box::new(i.id), Box::new(i.expires), Box::new(data)],
            )
            .await?
        }
        Record::Outbox { id, record } => {
            run(
                "INSERT INTO portcullis_outbox (id, record) VALUES ($1, $2)",
                vec![Box::new(id), Box::new(record.0)],
            )
            .await?
        }
        Record::Ban(b) => {
            let data = to_json(&b, ACTION)?;
            run(
                "INSERT INTO portcullis_bans (subject, until, data) VALUES ($1, $2, $3)",
                vec![Box::new(b.subject), Box::new(b.until), Box::new(data)],
            )
            .await?
        }
        Record::Keyset { name, data } => {
            run(
                "INSERT INTO portcullis_keysets (name, version, data) VALUES ($1, 1, $2)",
                vec![Box::new(name), Box::new(data.0)],
            )
            .await?
        }
        Record::Audit { at_ms, line } => {
            run(
                "INSERT INTO portcullis_audit (at_ms, line) VALUES ($1, $2)",
                vec![Box::new(at_ms), Box::new(line)],
            )
            .await?
        }
    }
    Ok(())
}

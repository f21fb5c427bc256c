//! Schema migrations: the SQL files of `migrations/` in the repository, compiled in, applied
//! in order at start, each recorded in `portcullis_schema`.
//!
//! All the missing ones are applied in one transaction under an advisory lock: replicas
//! starting together apply each once (the second waits, then finds nothing to do), and a
//! migration that fails leaves the schema as it was.

use super::{db, execute, lock, query_opt};
use crate::store::{StoreError, StoreResult};

/// Every migration, by version: `migrations/NNNN_name.sql`. Add new ones at the end; never
/// edit one that was released.
pub(super) const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "0001_init.sql",
        include_str!("../../../migrations/0001_init.sql"),
    ),
    (
        2,
        "0002_keys.sql",
        include_str!("../../../migrations/0002_keys.sql"),
    ),
    (
        3,
        "0003_audit.sql",
        include_str!("../../../migrations/0003_audit.sql"),
    ),
];

/// Applies the migrations the database lacks; returns how many it applied.
///
/// # Errors
/// The database's error, or [`StoreError::Backend`] when its schema is newer than this
/// gateway knows (a newer gateway migrated it: run that version).
pub(super) async fn apply(client: &mut deadpool_postgres::Object) -> StoreResult<usize> {
    const ACTION: &str = "apply migrations";
    let tx = client.transaction().await.map_err(db(ACTION))?;
    // A migration may rewrite a big table, and wait for another replica's: neither the
    // statement nor the lock timeout every other call has applies here.
    tx.batch_execute("SET LOCAL statement_timeout = 0; SET LOCAL lock_timeout = 0")
        .await
        .map_err(db(ACTION))?;
    execute(&tx, "SELECT pg_advisory_xact_lock($1)", &[&lock::MIGRATE])
        .await
        .map_err(db(ACTION))?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS portcullis_schema ( \
           version integer PRIMARY KEY, \
           name text NOT NULL, \
           applied_at timestamptz NOT NULL DEFAULT now())",
    )
    .await
    .map_err(db(ACTION))?;
    let current: i32 = query_opt(
        &tx,
        "SELECT coalesce(max(version), 0) FROM portcullis_schema",
        &[],
    )
    .await
    .map_err(db(ACTION))?
    .map_or(0, |r| r.get(0));
    let newest = MIGRATIONS.last().map_or(0, |m| m.0);
    if current > newest {
        return Err(StoreError::backend(
            ACTION,
            format!(
                "the database's schema is version {current}, newer than this gateway knows \
                 ({newest}): a newer Portcullis migrated it; run that version"
            ),
        ));
    }
    let mut applied = 0;
    for (version, name, sql) in MIGRATIONS.iter().filter(|m| m.0 > current) {
        tx.batch_execute(sql).await.map_err(db(ACTION))?;
        execute(
            &tx,
            "INSERT INTO portcullis_schema (version, name) VALUES ($1, $2)",
            &[version, name],
        )
        .await
        .map_err(db(ACTION))?;
        tracing::info!(version, name, "applied database migration");
        applied += 1;
    }
    tx.commit().await.map_err(db(ACTION))?;
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::MIGRATIONS;

    #[test]
    fn every_migration_file_is_compiled_in_once_in_version_order() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
        let mut files: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".sql"))
            .collect();
        files.sort();
        let listed: Vec<String> = MIGRATIONS.iter().map(|m| m.1.to_string()).collect();
        assert_eq!(files, listed, "a file in migrations/ is not in MIGRATIONS");
        for (i, (version, name, sql)) in MIGRATIONS.iter().enumerate() {
            assert_eq!(*version, i32::try_from(i + 1).unwrap(), "{name}");
            assert!(name.starts_with(&format!("{version:04}_")), "{name}");
            assert_eq!(
                *sql,
                std::fs::read_to_string(dir.join(name)).unwrap(),
                "{name}"
            );
        }
    }
}

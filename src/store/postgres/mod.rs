//! The PostgreSQL backend (`[storage] backend = "postgres"`): several gateways on one database.
//!
//! # How a synchronous [`Store`] call runs an async driver
//! The [`Store`] trait is synchronous (sled is), and the gateway calls it from everywhere: from
//! the blocking pool (the flow engine's execution writes) but mostly straight from async tasks
//! on Pingora's and the admin server's runtimes. The driver, `tokio-postgres` with a
//! `deadpool-postgres` pool, is async. So the store owns a small multi-threaded tokio runtime
//! of its own (two worker threads named `portcullis-pg`) on which every connection, its I/O and
//! every query runs. A trait method builds a `'static` future (it owns copies of its
//! arguments), spawns it on that runtime and waits for its answer on a plain
//! `std::sync::mpsc` channel.
//!
//! - No `block_on` ever runs on a caller's runtime: `Handle::block_on` or `block_in_place` would
//!   panic on a current-thread runtime (Pingora's) or inside an async task, and a future driven
//!   by the caller's thread could wait on I/O that only that same blocked thread would drive.
//!   The waiting caller parks on a channel; the I/O is driven by the store's own threads, which
//!   never wait on anything but the database, so nothing can wait on itself.
//! - The cost is what sled's calls already cost: the calling thread is blocked for the query
//!   (a loopback or LAN round trip, not an fsync of a local disk). Issue 16's third point keeps
//!   signed-in requests from querying at all.
//! - Every call is bounded: a connection is waited for at most [`POOL_WAIT`] and a whole call
//!   takes at most [`CALL_TIMEOUT`], after which it fails with [`StoreError::Backend`] (a
//!   transaction cut short is rolled back by the database), so a dead database never hangs a
//!   request forever.
//! - Dropping the store shuts the runtime down in the background: it may be dropped inside an
//!   async task, where a blocking shutdown would panic.
//!
//! # Atomicity between replicas
//! Every guarantee the trait makes must hold between gateways too, so none is a
//! read-modify-write in the gateway: counters and failure windows are one `INSERT … ON
//! CONFLICT … DO UPDATE … RETURNING`, a ticket, invitation or queued message is taken by one
//! `DELETE … RETURNING`, swaps are `UPDATE … WHERE` the stored value is still the expected one
//! (the device under `SELECT … FOR UPDATE`), and writes that land together (an account and its
//! e-mail index, a revocation and the session record it ends) are one transaction. Account
//! creations and e-mail changes take a transaction-scoped advisory lock, the database-wide
//! form of the lock sled's backend takes in-process.

mod dump;
mod listen;
mod migrate;
mod swap;
#[doc(hidden)]
pub mod test_server;
#[cfg(test)]
mod tests;

use super::username::canonical_username;
use super::{email_key, Ban, DatabaseId, Device, Invitation, SessionRecord, Store, StoreError};
use super::{Change, ChangeFeed, ChangeSink, StoreResult, User};
use crate::config::PostgresStorage;
use deadpool_postgres::{GenericClient, Manager, ManagerConfig, Pool, RecyclingMethod};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio_postgres::types::{Json, ToSql};
use tokio_postgres::Row;

/// The longest a call waits for a free connection of the pool.
pub(crate) const POOL_WAIT: Duration = Duration::from_secs(10);
/// The longest one store call may take, connection wait included.
pub(crate) const CALL_TIMEOUT: Duration = Duration::from_secs(20);
/// How long opening a connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest the database runs one statement of ours (`statement_timeout`), and waits for
/// a lock (`lock_timeout`): below [`CALL_TIMEOUT`], so the database itself ends work whose
/// caller has given up. Migrations lift both.
const STATEMENT_TIMEOUT_MS: u64 = 15_000;
const LOCK_TIMEOUT_MS: u64 = 10_000;
/// After this long without an acknowledgement of data sent (`TCP_USER_TIMEOUT`), or without
/// traffic and then unanswered keepalives, a connection to a vanished database is closed.
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(20);
const KEEPALIVE_IDLE: Duration = Duration::from_secs(30);
/// How often the readiness probe asks the database, and how long it waits for an answer.
const PROBE_EVERY: Duration = Duration::from_secs(1);
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Rows fetched per query when streaming revocations ([`Store::for_each_revocation`]).
const STREAM_BATCH: i64 = 1000;

/// Advisory lock keys (`pg_advisory_xact_lock`), one per kind of serialised work; the high
/// bits spell "portcull" so they are unlikely to meet another application's keys.
pub(crate) mod lock {
    /// Applying migrations.
    pub(crate) const MIGRATE: i64 = 0x706f_7274_6375_0001;
    /// Creating an account or changing an account's address.
    pub(crate) const ACCOUNTS: i64 = 0x706f_7274_6375_0002;
    /// The purge of expired rows: one replica at a time.
    pub(crate) const PURGE: i64 = 0x706f_7274_6375_0003;
}

/// A [`Store`] on PostgreSQL. Any number of gateways may open the same database at once.
pub struct PgStore {
    pool: Pool,
    /// The pool's connection settings, for the change feed's own connection.
    driver: tokio_postgres::Config,
    /// The pool's TLS connector (`None`: no TLS), for the change feed's own connection.
    tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
    /// The longest one call may take ([`CALL_TIMEOUT`]; shorter in tests).
    call_timeout: Duration,
    /// Connections whose call was cut short (by its timeout): never handed out again.
    cut_short: CutShortSet,
    /// Whether the database answered the background probe's last question (`/ready`).
    answering: Arc<AtomicBool>,
    /// The driver's own runtime; `None` only while dropping.
    runtime: Option<tokio::runtime::Runtime>,
    handle: tokio::runtime::Handle,
    /// Read at connect; replaced only by an import.
    identity: parking_lot::RwLock<DatabaseId>,
}

type PgError = tokio_postgres::Error;

fn db(action: &'static str) -> impl FnOnce(PgError) -> StoreError {
    move |e| StoreError::backend(action, e)
}

fn corrupt(action: &'static str) -> impl FnOnce(serde_json::Error) -> StoreError {
    move |source| StoreError::Corrupt { action, source }
}

/// PostgreSQL text cannot hold a NUL character, so no stored key has one: a key with one is
/// looked up as absent, and refused when written.
fn storable(key: &str) -> bool {
    !key.contains('\0')
}

fn unstorable(action: &'static str) -> StoreError {
    StoreError::backend(action, "a key with a NUL character cannot be stored")
}

async fn query<C: GenericClient>(
    c: &C,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<Row>, PgError> {
    let st = c.prepare_cached(sql).await?;
    c.query(&st, params).await
}

async fn query_opt<C: GenericClient>(
    c: &C,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Option<Row>, PgError> {
    let st = c.prepare_cached(sql).await?;
    c.query_opt(&st, params).await
}

async fn execute<C: GenericClient>(
    c: &C,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<u64, PgError> {
    let st = c.prepare_cached(sql).await?;
    c.execute(&st, params).await
}

fn json_col<T: serde::de::DeserializeOwned>(
    row: &Row,
    idx: usize,
    action: &'static str,
) -> StoreResult<T> {
    let v: Json<serde_json::Value> = row.try_get(idx).map_err(db(action))?;
    serde_json::from_value(v.0).map_err(corrupt(action))
}

fn to_json<T: serde::Serialize>(
    v: &T,
    action: &'static str,
) -> StoreResult<Json<serde_json::Value>> {
    serde_json::to_value(v).map(Json).map_err(corrupt(action))
}

fn count_u32(n: i64) -> u32 {
    u32::try_from(n.max(0)).unwrap_or(u32::MAX)
}

impl PgStore {
    /// Connects to the database `config` names, applies the migrations it lacks (one
    /// transaction, under an advisory lock, so replicas starting together apply them once) and
    /// reads the database's identity (made by the first gateway that opened it).
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the runtime cannot start, the database cannot be reached
    /// or refuses the credentials, or its schema is newer than this gateway knows.
    pub fn connect(config: &PostgresStorage) -> StoreResult<Self> {
        Self::connect_within(config, CALL_TIMEOUT)
    }

    /// As [`PgStore::connect`], each call bounded by `call_timeout`.
    fn connect_within(config: &PostgresStorage, call_timeout: Duration) -> StoreResult<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("portcullis-pg")
            .enable_all()
            .build()
            .map_err(|e| StoreError::backend("start the database runtime", e))?;
        let handle = runtime.handle().clone();
        let pg = driver_config(config).map_err(|e| StoreError::backend("read storage.url", e))?;
        let manager_config = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let tls = if config.tls {
            Some(tokio_postgres_rustls::MakeRustlsConnect::new(
                tls_client_config(config)
                    .map_err(|e| StoreError::backend("read storage.ca_file", e))?,
            ))
        } else {
            None
        };
        let driver = pg.clone();
        let (manager, probe) = match &tls {
            Some(tls) => (
                Manager::from_config(pg.clone(), tls.clone(), manager_config),
                Manager::from_config(pg, tls.clone(), ManagerConfig::default()),
            ),
            None => (
                Manager::from_config(pg.clone(), tokio_postgres::NoTls, manager_config),
                Manager::from_config(pg, tokio_postgres::NoTls, ManagerConfig::default()),
            ),
        };
        let cut_short = CutShortSet::default();
        let pool = Pool::builder(manager)
            .pre_recycle(cut_short.hook())
            .max_size(config.pool_size)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(POOL_WAIT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .recycle_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .map_err(|e| StoreError::backend("build the connection pool", e))?;
        let answering = Arc::new(AtomicBool::new(false));
        let store = Self {
            pool,
            driver,
            tls,
            call_timeout,
            cut_short,
            answering: answering.clone(),
            runtime: Some(runtime),
            handle,
            identity: parking_lot::RwLock::new(DatabaseId {
                id: String::new(),
                adopted_ms: None,
            }),
        };
        // No overall bound: a long migration (a big table rewritten) must be able to finish;
        // the wait for a connection is still bounded.
        store.run_within("apply migrations", None, |pool| async move {
            let mut client = pool
                .get()
                .await
                .map_err(|e| StoreError::backend("connect to the database", e))?;
            migrate::apply(&mut client).await
        })?;
        let identity = store.run("read database identity", |pool| async move {
            let client = pool
                .get()
                .await
                .map_err(pool_err("read database identity"))?;
            let fresh = crate::secret::random_token(16);
            execute(
                &client,
                "INSERT INTO portcullis_meta (key, value) VALUES ('database_id', $1) \
                 ON CONFLICT (key) DO NOTHING",
                &[&fresh],
            )
            .await
            .map_err(db("make database identity"))?;
            dump::read_identity(&client).await
        })?;
        *store.identity.write() = identity;
        let probe = Pool::builder(probe)
            .max_size(1)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .create_timeout(Some(PROBE_TIMEOUT))
            .recycle_timeout(Some(PROBE_TIMEOUT))
            .build()
            .map_err(|e| StoreError::backend("build the readiness probe", e))?;
        answering.store(true, Ordering::Relaxed);
        store
            .handle
            .spawn(probe_forever(probe, store.pool.clone(), answering));
        Ok(store)
    }

    /// Runs `job` (given the pool) on the store's runtime and waits for its answer on this
    /// thread, whatever thread this is (see the module's documentation).
    fn run<T, F, Fut>(&self, action: &'static str, job: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(Pool) -> Fut,
        Fut: Future<Output = StoreResult<T>> + Send + 'static,
    {
        self.run_within(action, Some(self.call_timeout), job)
    }

    /// As [`PgStore::run`], bounded by `limit` (`None`: not at all).
    fn run_within<T, F, Fut>(
        &self,
        action: &'static str,
        limit: Option<Duration>,
        job: F,
    ) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(Pool) -> Fut,
        Fut: Future<Output = StoreResult<T>> + Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let fut = job(self.pool.clone());
        self.handle.spawn(async move {
            let answer = match limit {
                None => fut.await,
                Some(limit) => match tokio::time::timeout(limit, fut).await {
                    Ok(answer) => answer,
                    Err(_) => Err(StoreError::backend(
                        action,
                        format!("no answer from the database in {limit:?}"),
                    )),
                },
            };
            let _ = tx.send(answer);
        });
        rx.recv()
            .unwrap_or_else(|_| Err(StoreError::backend(action, "the database runtime stopped")))
    }

    /// As [`PgStore::run`], with a pooled connection in hand.
    fn with<T, F, Fut>(&self, action: &'static str, job: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(deadpool_postgres::Object) -> Fut + Send + 'static,
        Fut: Future<Output = StoreResult<T>> + Send + 'static,
    {
        let cut_short = self.cut_short.clone();
        self.run(action, move |pool| async move {
            let client = pool.get().await.map_err(pool_err(action))?;
            // Dropped unfinished when the call times out: the connection may still owe the
            // answer to a statement sent on it, and would hand that wait to its next user.
            let guard = cut_short.guard(&client);
            let answer = job(client).await;
            guard.finished();
            answer
        })
    }

    /// Calls `each` with every (text, bigint) row `sql` yields, fetched in batches of
    /// [`STREAM_BATCH`] rows in key order (keyset paging: `sql` takes `$1` = the last key
    /// seen, `$2` = the batch size and, when `now` is given, `$3` = `now`), so a million rows
    /// never sit in memory at once and no connection is held while `each` runs on the calling
    /// thread.
    fn stream_pairs(
        &self,
        action: &'static str,
        sql: &'static str,
        now: Option<i64>,
        each: &mut dyn FnMut(&str, i64),
    ) -> StoreResult<()> {
        let mut after = String::new();
        loop {
            let from = std::mem::take(&mut after);
            let batch: Vec<(String, i64)> = self.with(action, move |c| async move {
                let rows = match now {
                    Some(now) => query(&c, sql, &[&from, &STREAM_BATCH, &now]).await,
                    None => query(&c, sql, &[&from, &STREAM_BATCH]).await,
                };
                Ok(rows
                    .map_err(db(action))?
                    .iter()
                    .map(|r| (r.get(0), r.get(1)))
                    .collect())
            })?;
            for (key, value) in &batch {
                each(key, *value);
            }
            let full = i64::try_from(batch.len()) == Ok(STREAM_BATCH);
            match batch.into_iter().last() {
                Some((last, _)) if full => after = last,
                _ => return Ok(()),
            }
        }
    }

    /// The pool, for tests that look at the tables.
    #[cfg(test)]
    pub(crate) fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Runs a test's own future on the store's runtime.
    #[cfg(test)]
    pub(crate) fn block<T: Send + 'static>(
        &self,
        fut: impl Future<Output = StoreResult<T>> + Send + 'static,
    ) -> StoreResult<T> {
        self.run("test", |_| fut)
    }
}

/// The connections of calls cut short, marked by their statement cache (one per connection,
/// held here so its address is not reused meanwhile); the pool's `pre_recycle` hook discards
/// a marked connection instead of handing it out.
#[derive(Clone, Default)]
struct CutShortSet(Arc<parking_lot::Mutex<Vec<Arc<deadpool_postgres::StatementCache>>>>);

impl CutShortSet {
    fn guard(&self, client: &deadpool_postgres::Object) -> CutShortGuard {
        CutShortGuard {
            set: self.clone(),
            cache: Some(client.statement_cache.clone()),
        }
    }

    fn hook(&self) -> deadpool_postgres::Hook {
        let set = self.clone();
        deadpool_postgres::Hook::sync_fn(move |client, _| {
            let mut marked = set.0.lock();
            match marked
                .iter()
                .position(|c| Arc::ptr_eq(c, &client.statement_cache))
            {
                Some(i) => {
                    marked.swap_remove(i);
                    Err(deadpool_postgres::HookError::message(
                        "its last call was cut short",
                    ))
                }
                None => Ok(()),
            }
        })
    }
}

/// Marks its connection cut short when dropped before [`CutShortGuard::finished`].
struct CutShortGuard {
    set: CutShortSet,
    cache: Option<Arc<deadpool_postgres::StatementCache>>,
}

impl CutShortGuard {
    fn finished(mut self) {
        self.cache = None;
    }
}

impl Drop for CutShortGuard {
    fn drop(&mut self) {
        if let Some(cache) = self.cache.take() {
            self.set.0.lock().push(cache);
        }
    }
}

/// Asks the database `SELECT 1` every [`PROBE_EVERY`] on a connection of its own (`probe`, a
/// pool of one, not the calls' pool: a pool busy with sign-ins is no outage), and records
/// whether it answered within [`PROBE_TIMEOUT`]; a connection that failed is dropped and a new
/// one made next time. When the database answers again after not answering, the idle
/// connections of `calls` are dropped.
async fn probe_forever(probe: Pool, calls: Pool, answering: Arc<AtomicBool>) {
    loop {
        let ok = match tokio::time::timeout(PROBE_TIMEOUT, probe.get()).await {
            Ok(Ok(c)) => {
                match tokio::time::timeout(PROBE_TIMEOUT, c.simple_query("SELECT 1")).await {
                    Ok(Ok(_)) => true,
                    _ => {
                        // It may owe an answer that never comes: a new one next time.
                        drop(deadpool_postgres::Object::take(c));
                        false
                    }
                }
            }
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "readiness probe: no connection to the database");
                false
            }
            Err(_) => false,
        };
        if answering.swap(ok, Ordering::Relaxed) != ok {
            if ok {
                // Idle connections from before the outage may never answer again (a database
                // that vanished closed nothing): the calls after it get new ones.
                calls.retain(|_, _| false);
                tracing::info!("the database answers again");
            } else {
                tracing::warn!("the database does not answer: not ready");
            }
        }
        tokio::time::sleep(PROBE_EVERY).await;
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// The driver's settings: the URL as configured, the password from the environment, TLS as
/// `[storage]` decided (always verified: see `src/config/storage.rs`).
fn driver_config(c: &PostgresStorage) -> Result<tokio_postgres::Config, String> {
    let mut pg: tokio_postgres::Config = c.url.parse().map_err(|e| format!("{e}"))?;
    if let Some(p) = &c.password {
        pg.password(p.expose().as_bytes());
    }
    pg.ssl_mode(if c.tls {
        tokio_postgres::config::SslMode::Require
    } else {
        tokio_postgres::config::SslMode::Disable
    });
    if pg.get_application_name().is_none() {
        pg.application_name("portcullis");
    }
    if pg.get_connect_timeout().is_none() {
        pg.connect_timeout(CONNECT_TIMEOUT);
    }
    // The database's own bounds on our statements, before the URL's options (which win).
    let ours =
        format!("-c statement_timeout={STATEMENT_TIMEOUT_MS} -c lock_timeout={LOCK_TIMEOUT_MS}");
    let options = match pg.get_options() {
        Some(theirs) => format!("{ours} {theirs}"),
        None => ours,
    };
    pg.options(options);
    // A vanished database (its machine gone, a cable cut) closes the connection, not
    // parks it: unless the URL chose otherwise.
    if pg.get_tcp_user_timeout().is_none() {
        pg.tcp_user_timeout(TCP_USER_TIMEOUT);
    }
    if pg.get_keepalives() && pg.get_keepalives_idle() > KEEPALIVE_IDLE {
        pg.keepalives_idle(KEEPALIVE_IDLE);
    }
    Ok(pg)
}

/// rustls for the database: the roots of `ca_file`, else the web's public roots; the server's
/// name is checked against its certificate (rustls always does).
fn tls_client_config(c: &PostgresStorage) -> Result<rustls::ClientConfig, String> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let mut roots = rustls::RootCertStore::empty();
    match &c.ca_file {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            for cert in certs {
                let cert = cert.map_err(|e| format!("{}: {e}", path.display()))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Announces `change` to every gateway's change feed when `tx` commits (`pg_notify` is
/// transactional: a rolled-back write announces nothing, and a listener that hears the notice
/// finds the write in the store).
///
/// # Security
/// The notice names a session id or an account, never a token, code or secret: anyone who may
/// `LISTEN` on the database can read it.
async fn announce<C: GenericClient>(tx: &C, change: &Change) -> StoreResult<()> {
    const ACTION: &str = "announce change";
    let payload = change.encode(listen::PAYLOAD_LIMIT);
    query(
        tx,
        "SELECT pg_notify($1, $2)",
        &[&listen::CHANNEL, &payload],
    )
    .await
    .map_err(db(ACTION))?;
    Ok(())
}

fn pool_err(action: &'static str) -> impl FnOnce(deadpool_postgres::PoolError) -> StoreError {
    move |e| StoreError::backend(action, e)
}

/// The account `username` names, as [`Store::user`] finds it: exactly, by its canonical form,
/// or through the index of names stored before they were canonical. One query.
async fn find_user<C: GenericClient>(c: &C, username: &str) -> StoreResult<Option<User>> {
    const ACTION: &str = "read user";
    if !storable(username) {
        return Ok(None);
    }
    let canonical = canonical_username(username).unwrap_or_else(|| username.to_string());
    let row = query_opt(
        c,
        "SELECT data FROM ( \
           SELECT 1 AS rank, data FROM portcullis_users WHERE username = $1 \
           UNION ALL SELECT 2, data FROM portcullis_users WHERE username = $2 \
           UNION ALL SELECT 3, u.data FROM portcullis_legacy_names l \
             JOIN portcullis_users u ON u.username = l.username WHERE l.canonical = $2 \
         ) found ORDER BY rank LIMIT 1",
        &[&username, &canonical],
    )
    .await
    .map_err(db(ACTION))?;
    row.map(|r| json_col(&r, 0, ACTION)).transpose()
}

/// The existing account holding `email` in the index (under its key, or as written before
/// keys were NFC-normalised).
async fn find_email_holder<C: GenericClient>(c: &C, email: &str) -> StoreResult<Option<String>> {
    let keys = email_keys(email);
    if keys.iter().any(|k| !storable(k)) {
        return Ok(None);
    }
    // Only entries of accounts that exist: one left behind by a removal (as sled's backend
    // ignores them) never keeps an address from its next owner.
    let row = query_opt(
        c,
        "SELECT e.username FROM portcullis_emails e \
         JOIN portcullis_users u ON u.username = e.username \
         WHERE e.email = ANY($1) ORDER BY e.email = $2 DESC LIMIT 1",
        &[&keys, &keys[0]],
    )
    .await
    .map_err(db("read email index"))?;
    row.map(|r| r.try_get(0).map_err(db("read email index")))
        .transpose()
}

/// The index keys an address may be stored under: its key first, then the older form.
fn email_keys(email: &str) -> Vec<String> {
    let key = email_key(email);
    let plain = email.trim().to_lowercase();
    if plain == key {
        vec![key]
    } else {
        vec![key, plain]
    }
}

/// Writes `user` (and its e-mail index entry) in the transaction `c`, as [`Store::put_user`].
async fn write_user<C: GenericClient>(c: &C, user: &User) -> StoreResult<()> {
    const ACTION: &str = "write user";
    if !storable(&user.username) {
        return Err(unstorable(ACTION));
    }
    let old = query_opt(
        c,
        "SELECT data FROM portcullis_users WHERE username = $1 FOR UPDATE",
        &[&user.username],
    )
    .await
    .map_err(db(ACTION))?;
    let old: Option<User> = old.map(|r| json_col(&r, 0, ACTION)).transpose()?;
    if let Some(old_email) = old.as_ref().and_then(|o| o.email.as_ref()) {
        execute(
            c,
            "DELETE FROM portcullis_emails WHERE email = ANY($1)",
            &[&email_keys(old_email)],
        )
        .await
        .map_err(db("update email index"))?;
    }
    if let Some(email) = &user.email {
        let key = email_key(email);
        if !storable(&key) {
            return Err(unstorable("update email index"));
        }
        execute(
            c,
            "INSERT INTO portcullis_emails (email, username) VALUES ($1, $2) \
             ON CONFLICT (email) DO UPDATE SET username = excluded.username",
            &[&key, &user.username],
        )
        .await
        .map_err(db("update email index"))?;
    }
    let data = to_json(user, ACTION)?;
    execute(
        c,
        "INSERT INTO portcullis_users (username, data) VALUES ($1, $2) \
         ON CONFLICT (username) DO UPDATE SET data = excluded.data",
        &[&user.username, &data],
    )
    .await
    .map_err(db(ACTION))?;
    if old.is_none() {
        index_legacy_name(c, &user.username).await?;
    }
    Ok(())
}

/// As the sled backend's: `raw` reachable under its canonical form when it is not that form
/// and no account holds it.
async fn index_legacy_name<C: GenericClient>(c: &C, raw: &str) -> StoreResult<()> {
    const ACTION: &str = "build username index";
    let Some(canonical) = canonical_username(raw) else {
        return Ok(());
    };
    if canonical == raw {
        return Ok(());
    }
    let row = query_opt(
        c,
        "WITH taken AS (SELECT 1 FROM portcullis_users WHERE username = $1), \
         ins AS (INSERT INTO portcullis_legacy_names (canonical, username) \
                 SELECT $1, $2 WHERE NOT EXISTS (SELECT 1 FROM taken) \
                 ON CONFLICT (canonical) DO NOTHING RETURNING username) \
         SELECT (SELECT username FROM ins) AS inserted, \
                (SELECT username FROM portcullis_legacy_names WHERE canonical = $1) AS held, \
                EXISTS (SELECT 1 FROM taken) AS taken",
        &[&canonical, &raw],
    )
    .await
    .map_err(db(ACTION))?;
    let indexed = row.is_some_and(|r| {
        let inserted: Option<String> = r.get(0);
        let held: Option<String> = r.get(1);
        let taken: bool = r.get(2);
        !taken && (inserted.as_deref() == Some(raw) || held.as_deref() == Some(raw))
    });
    if !indexed {
        tracing::warn!(user = %raw, canonical = %canonical, "two accounts have the same username once case is ignored; the one stored as typed is reached only by its exact name: remove or rename one");
    }
    Ok(())
}

/// Rows deleted per statement by [`Store::purge_expired`].
const PURGE_BATCH: i64 = 10_000;

/// Deletes the expired rows of every table, [`PURGE_BATCH`] at a time; how many.
async fn purge_batches(c: &deadpool_postgres::Object, now: i64) -> StoreResult<usize> {
    const ACTION: &str = "purge expired records";
    let mut n = 0u64;
    // Audit records go once older than the retention: their cutoff is `now` moved back by it.
    let audit_cutoff = now.saturating_sub(crate::store::AUDIT_RETENTION);
    for (table, expired, cutoff) in [
        ("portcullis_executions", "expires <= $1", now),
        ("portcullis_sessions", "expires <= $1", now),
        ("portcullis_revoked_sessions", "expires <= $1", now),
        ("portcullis_tickets", "expires <= $1", now),
        ("portcullis_counters", "window_end <= $1", now),
        ("portcullis_failure_windows", "expires <= $1", now),
        ("portcullis_invitations", "expires <= $1", now),
        ("portcullis_audit", "at_ms <= $1", audit_cutoff),
    ] {
        let sql = format!(
            "DELETE FROM {table} WHERE ctid = ANY(ARRAY( \
               SELECT ctid FROM {table} WHERE {expired} LIMIT $2 FOR UPDATE SKIP LOCKED))"
        );
        loop {
            let batch = execute(c, &sql, &[&cutoff, &PURGE_BATCH])
                .await
                .map_err(db(ACTION))?;
            n += batch;
            if batch < u64::try_from(PURGE_BATCH).unwrap_or(u64::MAX) {
                break;
            }
        }
    }
    Ok(usize::try_from(n).unwrap_or(usize::MAX))
}

fn session_from_row(row: &Row, action: &'static str) -> StoreResult<SessionRecord> {
    let mut s: SessionRecord = json_col(row, 0, action)?;
    s.last_seen = row.try_get(1).map_err(db(action))?;
    Ok(s)
}

impl Store for PgStore {
    fn check_ready(&self) -> StoreResult<()> {
        // What the background probe last saw: a readiness check never waits on the database.
        if self.answering.load(Ordering::Relaxed) {
            Ok(())
        } else {
            Err(StoreError::backend(
                "probe the database",
                format!("no answer to the last probe within {PROBE_TIMEOUT:?}"),
            ))
        }
    }

    fn user(&self, username: &str) -> StoreResult<Option<User>> {
        let username = username.to_string();
        self.with(
            "read user",
            |c| async move { find_user(&c, &username).await },
        )
    }

    fn user_by_email(&self, email: &str) -> StoreResult<Option<User>> {
        let email = email.to_string();
        self.with("read email index", |c| async move {
            let Some(name) = find_email_holder(&c, &email).await? else {
                return Ok(None);
            };
            let row = query_opt(
                &c,
                "SELECT data FROM portcullis_users WHERE username = $1",
                &[&name],
            )
            .await
            .map_err(db("read user"))?;
            row.map(|r| json_col(&r, 0, "read user")).transpose()
        })
    }

    fn put_user(&self, user: &User) -> StoreResult<()> {
        let user = user.clone();
        self.with("write user", |mut c| async move {
            let tx = c.transaction().await.map_err(db("write user"))?;
            write_user(&tx, &user).await?;
            tx.commit().await.map_err(db("write user"))
        })
    }

    fn remove_user(&self, username: &str) -> StoreResult<bool> {
        const ACTION: &str = "remove user";
        let username = username.to_string();
        self.with(ACTION, |mut c| async move {
            let tx = c.transaction().await.map_err(db(ACTION))?;
            // Serialised with creations and updates (which check the account exists under
            // this lock), and the row locked against put_user: an update never re-creates an
            // account removed meanwhile.
            execute(&tx, "SELECT pg_advisory_xact_lock($1)", &[&lock::ACCOUNTS])
                .await
                .map_err(db(ACTION))?;
            let Some(old) = find_user(&tx, &username).await? else {
                return Ok(false);
            };
            execute(
                &tx,
                "SELECT 1 FROM portcullis_users WHERE username = $1 FOR UPDATE",
                &[&old.username],
            )
            .await
            .map_err(db(ACTION))?;
            // Devices go with the account: a later account of that name inherits none.
            execute(
                &tx,
                "DELETE FROM portcullis_devices WHERE username = $1",
                &[&old.username],
            )
            .await
            .map_err(db("remove devices"))?;
            // Every index entry naming it, also one a concurrent address change left behind.
            execute(
                &tx,
                "DELETE FROM portcullis_emails WHERE username = $1",
                &[&old.username],
            )
            .await
            .map_err(db("update email index"))?;
            execute(
                &tx,
                "DELETE FROM portcullis_legacy_names WHERE username = $1",
                &[&old.username],
            )
            .await
            .map_err(db("update username index"))?;
            let n = execute(
                &tx,
                "DELETE FROM portcullis_users WHERE username = $1",
                &[&old.username],
            )
            .await
            .map_err(db(ACTION))?;
            tx.commit().await.map_err(db(ACTION))?;
            Ok(n == 1)
        })
    }

    fn users(&self) -> StoreResult<Vec<User>> {
        self.with("list users", |c| async move {
            query(
                &c,
                "SELECT data FROM portcullis_users ORDER BY username",
                &[],
            )
            .await
            .map_err(db("list users"))?
            .iter()
            .map(|r| json_col(r, 0, "list users"))
            .collect()
        })
    }

    fn user_count(&self) -> StoreResult<usize> {
        self.with("count users", |c| async move {
            let row = query_opt(&c, "SELECT count(*) FROM portcullis_users", &[])
                .await
                .map_err(db("count users"))?;
            let n: i64 = row.map_or(0, |r| r.get(0));
            Ok(usize::try_from(n).unwrap_or(0))
        })
    }

    fn execution(&self, id: &str, now: i64) -> StoreResult<Option<Vec<u8>>> {
        if !storable(id) {
            return Ok(None);
        }
        let id = id.to_string();
        self.with("read execution", move |c| async move {
            let row = query_opt(
                &c,
                "SELECT expires, state FROM portcullis_executions WHERE id = $1",
                &[&id],
            )
            .await
            .map_err(db("read execution"))?;
            let Some(row) = row else {
                return Ok(None);
            };
            let expires: i64 = row.get(0);
            if expires > now {
                return Ok(Some(row.get(1)));
            }
            // Seen dead once, gone for good (whatever `now` a later call passes).
            execute(
                &c,
                "DELETE FROM portcullis_executions WHERE id = $1 AND expires = $2",
                &[&id, &expires],
            )
            .await
            .map_err(db("expire execution"))?;
            Ok(None)
        })
    }

    fn put_execution(&self, id: &str, expires: i64, state: &[u8]) -> StoreResult<()> {
        if !storable(id) {
            return Err(unstorable("write execution"));
        }
        let (id, state) = (id.to_string(), state.to_vec());
        self.with("write execution", move |c| async move {
            execute(
                &c,
                "INSERT INTO portcullis_executions (id, expires, state) VALUES ($1, $2, $3) \
                 ON CONFLICT (id) DO UPDATE SET expires = excluded.expires, state = excluded.state",
                &[&id, &expires, &state],
            )
            .await
            .map_err(db("write execution"))?;
            Ok(())
        })
    }

    fn swap_execution(
        &self,
        id: &str,
        current: &[u8],
        new: &[u8],
        expires: i64,
    ) -> StoreResult<bool> {
        self.swap_execution_row(id, current, new, expires)
    }

    /// Several gateways run on one database.
    fn shared(&self) -> bool {
        true
    }

    fn remove_execution(&self, id: &str) -> StoreResult<()> {
        if !storable(id) {
            return Ok(());
        }
        let id = id.to_string();
        self.with("remove execution", |c| async move {
            execute(
                &c,
                "DELETE FROM portcullis_executions WHERE id = $1",
                &[&id],
            )
            .await
            .map_err(db("remove execution"))?;
            Ok(())
        })
    }

    fn purge_expired(&self, now: i64) -> StoreResult<usize> {
        const ACTION: &str = "purge expired records";
        // Table by table, in batches, each its own short transaction that skips rows locked
        // by a write in flight: a counter being bumped never waits on the purge nor the purge
        // on it, a backlog is worked off across calls (what was deleted stays deleted), and
        // no batch comes near the call's timeout.
        self.with(ACTION, move |c| async move {
            // One replica purges at a time; the others find the lock held and leave it to it.
            // Held by the session, so across the batches; released below, or with the
            // connection when it is discarded.
            let row = query_opt(&c, "SELECT pg_try_advisory_lock($1)", &[&lock::PURGE])
                .await
                .map_err(db(ACTION))?;
            if !row.is_some_and(|r| r.get::<_, bool>(0)) {
                return Ok(0);
            }
            let purged = purge_batches(&c, now).await;
            let unlocked = execute(&c, "SELECT pg_advisory_unlock($1)", &[&lock::PURGE]).await;
            if purged.is_err() || unlocked.is_err() {
                // The lock may still be held: the connection goes, and the lock with it.
                drop(deadpool_postgres::Object::take(c));
            }
            let n = purged?;
            unlocked.map_err(db(ACTION))?;
            Ok(n)
        })
    }

    fn put_session(&self, session: &SessionRecord) -> StoreResult<()> {
        const ACTION: &str = "write session";
        if !storable(&session.sid) || !storable(&session.username) {
            return Err(unstorable(ACTION));
        }
        let s = session.clone();
        self.with(ACTION, |c| async move {
            let mut record = s.clone();
            record.last_seen = None;
            let data = to_json(&record, ACTION)?;
            execute(
                &c,
                "INSERT INTO portcullis_sessions (sid, username, issued, expires, last_seen, data) \
                 VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (sid) DO UPDATE SET username = excluded.username, \
                   issued = excluded.issued, expires = excluded.expires, \
                   last_seen = excluded.last_seen, data = excluded.data",
                &[&s.sid, &s.username, &s.issued, &s.expires, &s.last_seen, &data],
            )
            .await
            .map_err(db(ACTION))?;
            Ok(())
        })
    }

    fn session(&self, sid: &str) -> StoreResult<Option<SessionRecord>> {
        if !storable(sid) {
            return Ok(None);
        }
        let sid = sid.to_string();
        self.with("read session", |c| async move {
            let row = query_opt(
                &c,
                "SELECT data, last_seen FROM portcullis_sessions WHERE sid = $1",
                &[&sid],
            )
            .await
            .map_err(db("read session"))?;
            row.map(|r| session_from_row(&r, "read session"))
                .transpose()
        })
    }

    fn revoke_session(&self, sid: &str, expires: i64) -> StoreResult<()> {
        const ACTION: &str = "revoke session";
        if !storable(sid) {
            return Err(unstorable(ACTION));
        }
        let sid = sid.to_string();
        self.with(ACTION, move |mut c| async move {
            let tx = c.transaction().await.map_err(db(ACTION))?;
            execute(
                &tx,
                "INSERT INTO portcullis_revoked_sessions (sid, expires) VALUES ($1, $2) \
                 ON CONFLICT (sid) DO UPDATE SET expires = excluded.expires",
                &[&sid, &expires],
            )
            .await
            .map_err(db(ACTION))?;
            execute(
                &tx,
                "DELETE FROM portcullis_sessions WHERE sid = $1",
                &[&sid],
            )
            .await
            .map_err(db(ACTION))?;
            announce(&tx, &Change::Session { sid, expires }).await?;
            tx.commit().await.map_err(db(ACTION))
        })
    }

    fn revocations(&self, now: i64) -> StoreResult<Vec<(String, i64)>> {
        const ACTION: &str = "load revocations";
        self.with(ACTION, move |c| async move {
            execute(
                &c,
                "DELETE FROM portcullis_revoked_sessions WHERE expires <= $1",
                &[&now],
            )
            .await
            .map_err(db("prune revocations"))?;
            Ok(query(
                &c,
                "SELECT sid, expires FROM portcullis_revoked_sessions WHERE expires > $1 \
                 ORDER BY sid",
                &[&now],
            )
            .await
            .map_err(db(ACTION))?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect())
        })
    }

    fn for_each_revocation(&self, now: i64, each: &mut dyn FnMut(&str, i64)) -> StoreResult<()> {
        self.with("prune revocations", move |c| async move {
            execute(
                &c,
                "DELETE FROM portcullis_revoked_sessions WHERE expires <= $1",
                &[&now],
            )
            .await
            .map_err(db("prune revocations"))?;
            Ok(())
        })?;
        self.stream_pairs(
            "load revocations",
            "SELECT sid, expires FROM portcullis_revoked_sessions \
             WHERE sid > $1 AND expires > $3 ORDER BY sid LIMIT $2",
            Some(now),
            each,
        )
    }

    fn for_each_user_revocation(&self, each: &mut dyn FnMut(&str, i64)) -> StoreResult<()> {
        self.stream_pairs(
            "load user revocations",
            "SELECT username, since_ms FROM portcullis_revoked_users \
             WHERE username > $1 ORDER BY username LIMIT $2",
            None,
            each,
        )
    }

    fn revoke_user_sessions(&self, username: &str, since: i64) -> StoreResult<()> {
        const ACTION: &str = "revoke user sessions";
        if !storable(username) {
            return Err(unstorable(ACTION));
        }
        let username = username.to_string();
        self.with(ACTION, move |mut c| async move {
            let tx = c.transaction().await.map_err(db(ACTION))?;
            execute(
                &tx,
                "INSERT INTO portcullis_revoked_users AS r (username, since_ms) VALUES ($1, $2) \
                 ON CONFLICT (username) DO UPDATE \
                   SET since_ms = greatest(r.since_ms, excluded.since_ms)",
                &[&username, &since],
            )
            .await
            .map_err(db(ACTION))?;
            let change = Change::User {
                username,
                since_ms: since,
            };
            announce(&tx, &change).await?;
            tx.commit().await.map_err(db(ACTION))
        })
    }

    fn user_revocations(&self) -> StoreResult<Vec<(String, i64)>> {
        const ACTION: &str = "load user revocations";
        self.with(ACTION, |c| async move {
            Ok(query(
                &c,
                "SELECT username, since_ms FROM portcullis_revoked_users ORDER BY username",
                &[],
            )
            .await
            .map_err(db(ACTION))?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect())
        })
    }

    fn devices(&self, username: &str) -> StoreResult<Vec<Device>> {
        if !storable(username) {
            return Ok(Vec::new());
        }
        let username = username.to_string();
        self.with("list devices", |c| async move {
            query(
                &c,
                "SELECT data FROM portcullis_devices WHERE username = $1 ORDER BY id",
                &[&username],
            )
            .await
            .map_err(db("list devices"))?
            .iter()
            .map(|r| json_col(r, 0, "list devices"))
            .collect()
        })
    }

    fn put_device(&self, device: &Device) -> StoreResult<()> {
        const ACTION: &str = "write device";
        if !storable(&device.username) || !storable(&device.id) {
            return Err(unstorable(ACTION));
        }
        let device = device.clone();
        self.with(ACTION, |c| async move {
            let data = to_json(&device, ACTION)?;
            execute(
                &c,
                "INSERT INTO portcullis_devices (username, id, data) VALUES ($1, $2, $3) \
                 ON CONFLICT (username, id) DO UPDATE SET data = excluded.data",
                &[&device.username, &device.id, &data],
            )
            .await
            .map_err(db(ACTION))?;
            Ok(())
        })
    }

    fn swap_device(&self, current: &Device, new: &Device) -> StoreResult<bool> {
        const ACTION: &str = "write device";
        if !storable(&current.username) || !storable(&current.id) {
            return Ok(false);
        }
        let (current, new) = (current.clone(), new.clone());
        self.with(ACTION, |mut c| async move {
            // The stored record is decoded and compared, as sled's backend does (a record
            // written by an older version still swaps when it decodes equal), under a row lock:
            // of several swappers from one record, the first to commit wins, the others then
            // read its record and find it changed.
            let tx = c.transaction().await.map_err(db(ACTION))?;
            let row = query_opt(
                &tx,
                "SELECT data FROM portcullis_devices WHERE username = $1 AND id = $2 FOR UPDATE",
                &[&current.username, &current.id],
            )
            .await
            .map_err(db("read device"))?;
            let Some(row) = row else {
                return Ok(false);
            };
            let stored: Device = json_col(&row, 0, "read device")?;
            if stored != current {
                return Ok(false);
            }
            let data = to_json(&new, ACTION)?;
            execute(
                &tx,
                "UPDATE portcullis_devices SET data = $3 WHERE username = $1 AND id = $2",
                &[&current.username, &current.id, &data],
            )
            .await
            .map_err(db(ACTION))?;
            tx.commit().await.map_err(db(ACTION))?;
            Ok(true)
        })
    }

    fn remove_device(&self, username: &str, id: &str) -> StoreResult<bool> {
        if !storable(username) || !storable(id) {
            return Ok(false);
        }
        let (username, id) = (username.to_string(), id.to_string());
        self.with("remove device", |c| async move {
            let n = execute(
                &c,
                "DELETE FROM portcullis_devices WHERE username = $1 AND id = $2",
                &[&username, &id],
            )
            .await
            .map_err(db("remove device"))?;
            Ok(n == 1)
        })
    }

    fn bump_counter(&self, key: &str, window: i64, now: i64) -> StoreResult<u32> {
        const ACTION: &str = "bump counter";
        if !storable(key) {
            return Err(unstorable(ACTION));
        }
        let key = key.to_string();
        self.with(ACTION, move |c| async move {
            // One statement: the database serialises concurrent bumps of one key on its row,
            // so every caller on every replica gets its own count.
            let row = query_opt(
                &c,
                "INSERT INTO portcullis_counters AS c (key, window_end, count) \
                 VALUES ($1, $3::bigint + $2::bigint, 1) \
                 ON CONFLICT (key) DO UPDATE SET \
                   count = CASE WHEN c.window_end > $3 THEN least(c.count + 1, 4294967295) \
                                ELSE 1 END, \
                   window_end = CASE WHEN c.window_end > $3 THEN c.window_end \
                                     ELSE excluded.window_end END \
                 RETURNING count",
                &[&key, &window, &now],
            )
            .await
            .map_err(db(ACTION))?;
            Ok(row.map_or(1, |r| count_u32(r.get(0))))
        })
    }

    fn counter(&self, key: &str, now: i64) -> StoreResult<u32> {
        if !storable(key) {
            return Ok(0);
        }
        let key = key.to_string();
        self.with("read counter", move |c| async move {
            let row = query_opt(
                &c,
                "SELECT count FROM portcullis_counters WHERE key = $1 AND window_end > $2",
                &[&key, &now],
            )
            .await
            .map_err(db("read counter"))?;
            Ok(row.map_or(0, |r| count_u32(r.get(0))))
        })
    }

    fn reset_counter(&self, key: &str) -> StoreResult<()> {
        if !storable(key) {
            return Ok(());
        }
        let key = key.to_string();
        self.with("reset counter", |c| async move {
            execute(
                &c,
                "DELETE FROM portcullis_counters WHERE key = $1",
                &[&key],
            )
            .await
            .map_err(db("reset counter"))?;
            Ok(())
        })
    }

    fn put_ticket(&self, hash: &str, expires: i64, data: &[u8]) -> StoreResult<()> {
        if !storable(hash) {
            return Err(unstorable("write ticket"));
        }
        let (hash, data) = (hash.to_string(), data.to_vec());
        self.with("write ticket", move |c| async move {
            execute(
                &c,
                "INSERT INTO portcullis_tickets (hash, expires, data) VALUES ($1, $2, $3) \
                 ON CONFLICT (hash) DO UPDATE SET expires = excluded.expires, data = excluded.data",
                &[&hash, &expires, &data],
            )
            .await
            .map_err(db("write ticket"))?;
            Ok(())
        })
    }

    fn ticket(&self, hash: &str, now: i64) -> StoreResult<Option<Vec<u8>>> {
        if !storable(hash) {
            return Ok(None);
        }
        let hash = hash.to_string();
        self.with("read ticket", move |c| async move {
            let row = query_opt(
                &c,
                "SELECT data FROM portcullis_tickets WHERE hash = $1 AND expires > $2",
                &[&hash, &now],
            )
            .await
            .map_err(db("read ticket"))?;
            Ok(row.map(|r| r.get(0)))
        })
    }

    fn take_ticket(&self, hash: &str) -> StoreResult<bool> {
        if !storable(hash) {
            return Ok(false);
        }
        let hash = hash.to_string();
        self.with("consume ticket", |c| async move {
            // One DELETE: of racing takers on any replica, one deletes the row, the others
            // find nothing left to delete.
            let n = execute(
                &c,
                "DELETE FROM portcullis_tickets WHERE hash = $1",
                &[&hash],
            )
            .await
            .map_err(db("consume ticket"))?;
            Ok(n == 1)
        })
    }

    fn secret(&self, name: &str) -> StoreResult<[u8; 32]> {
        if !storable(name) {
            return Err(unstorable("write secret"));
        }
        let name = name.to_string();
        self.with("read secret", |c| async move {
            // Made once, read on every use: one read, and a write only the first time.
            let existing = query_opt(
                &c,
                "SELECT value FROM portcullis_secrets WHERE name = $1",
                &[&name],
            )
            .await
            .map_err(db("read secret"))?;
            if let Some(row) = existing {
                let value: Vec<u8> = row.get(0);
                return <[u8; 32]>::try_from(value.as_slice())
                    .map_err(|_| StoreError::backend("read secret", "not 32 bytes"));
            }
            let mut fresh = [0u8; 32];
            rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut fresh);
            // Whoever inserts first wins; the read is a separate statement so it sees the
            // winner's row even when this insert waited on it (a statement's snapshot
            // predates a row committed while it waited).
            execute(
                &c,
                "INSERT INTO portcullis_secrets (name, value) VALUES ($1, $2) \
                 ON CONFLICT (name) DO NOTHING",
                &[&name, &&fresh[..]],
            )
            .await
            .map_err(db("write secret"))?;
            let row = query_opt(
                &c,
                "SELECT value FROM portcullis_secrets WHERE name = $1",
                &[&name],
            )
            .await
            .map_err(db("read secret"))?
            .ok_or_else(|| StoreError::backend("read secret", "missing after insert"))?;
            let value: Vec<u8> = row.get(0);
            <[u8; 32]>::try_from(value.as_slice())
                .map_err(|_| StoreError::backend("read secret", "not 32 bytes"))
        })
    }

    fn create_user(&self, user: &User) -> StoreResult<bool> {
        const ACTION: &str = "create user";
        let user = user.clone();
        self.with(ACTION, |mut c| async move {
            let tx = c.transaction().await.map_err(db(ACTION))?;
            // Checks and writes span three tables: account creations and address changes
            // take one database-wide lock, held until this transaction ends.
            execute(&tx, "SELECT pg_advisory_xact_lock($1)", &[&lock::ACCOUNTS])
                .await
                .map_err(db(ACTION))?;
            if find_user(&tx, &user.username).await?.is_some() {
                return Ok(false);
            }
            if let Some(email) = &user.email {
                if find_email_holder(&tx, email).await?.is_some() {
                    return Ok(false);
                }
            }
            write_user(&tx, &user).await?;
            tx.commit().await.map_err(db(ACTION))?;
            Ok(true)
        })
    }

    fn put_invitation(&self, invitation: &Invitation) -> StoreResult<()> {
        const ACTION: &str = "write invitation";
        if !storable(&invitation.id) {
            return Err(unstorable(ACTION));
        }
        let inv = invitation.clone();
        self.with(ACTION, |c| async move {
            let data = to_json(&inv, ACTION)?;
            execute(
                &c,
                "INSERT INTO portcullis_invitations (id, expires, data) VALUES ($1, $2, $3) \
                 ON CONFLICT (id) DO UPDATE SET expires = excluded.expires, data = excluded.data",
                &[&inv.id, &inv.expires, &data],
            )
            .await
            .map_err(db(ACTION))?;
            Ok(())
        })
    }

    fn invitation(&self, id: &str, now: i64) -> StoreResult<Option<Invitation>> {
        if !storable(id) {
            return Ok(None);
        }
        let id = id.to_string();
        self.with("read invitation", move |c| async move {
            let row = query_opt(
                &c,
                "SELECT data FROM portcullis_invitations WHERE id = $1 AND expires > $2",
                &[&id, &now],
            )
            .await
            .map_err(db("read invitation"))?;
            row.map(|r| json_col(&r, 0, "read invitation")).transpose()
        })
    }

    fn invitations(&self) -> StoreResult<Vec<Invitation>> {
        self.with("list invitations", |c| async move {
            query(
                &c,
                "SELECT data FROM portcullis_invitations ORDER BY id",
                &[],
            )
            .await
            .map_err(db("list invitations"))?
            .iter()
            .map(|r| json_col(r, 0, "list invitations"))
            .collect()
        })
    }

    fn remove_invitation(&self, id: &str) -> StoreResult<bool> {
        if !storable(id) {
            return Ok(false);
        }
        let id = id.to_string();
        self.with("remove invitation", |c| async move {
            let n = execute(
                &c,
                "DELETE FROM portcullis_invitations WHERE id = $1",
                &[&id],
            )
            .await
            .map_err(db("remove invitation"))?;
            Ok(n == 1)
        })
    }

    fn put_outbox(&self, id: &str, record: &[u8]) -> StoreResult<()> {
        if !storable(id) {
            return Err(unstorable("queue mail"));
        }
        let (id, record) = (id.to_string(), record.to_vec());
        self.with("queue mail", |c| async move {
            execute(
                &c,
                "INSERT INTO portcullis_outbox (id, record) VALUES ($1, $2) \
                 ON CONFLICT (id) DO UPDATE SET record = excluded.record",
                &[&id, &record],
            )
            .await
            .map_err(db("queue mail"))?;
            Ok(())
        })
    }

    fn outbox(&self) -> StoreResult<Vec<(String, Vec<u8>)>> {
        self.with("read outbox", |c| async move {
            Ok(query(
                &c,
                "SELECT id, record FROM portcullis_outbox ORDER BY id",
                &[],
            )
            .await
            .map_err(db("read outbox"))?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect())
        })
    }

    fn swap_outbox(&self, id: &str, current: &[u8], new: &[u8]) -> StoreResult<bool> {
        if !storable(id) {
            return Ok(false);
        }
        let (id, current, new) = (id.to_string(), current.to_vec(), new.to_vec());
        self.with("reschedule mail", |c| async move {
            let n = execute(
                &c,
                "UPDATE portcullis_outbox SET record = $3 WHERE id = $1 AND record = $2",
                &[&id, &current, &new],
            )
            .await
            .map_err(db("reschedule mail"))?;
            Ok(n == 1)
        })
    }

    fn take_outbox(&self, id: &str) -> StoreResult<bool> {
        if !storable(id) {
            return Ok(false);
        }
        let id = id.to_string();
        self.with("dequeue mail", |c| async move {
            let n = execute(&c, "DELETE FROM portcullis_outbox WHERE id = $1", &[&id])
                .await
                .map_err(db("dequeue mail"))?;
            Ok(n == 1)
        })
    }

    fn user_sessions(&self, username: &str, now: i64) -> StoreResult<Vec<SessionRecord>> {
        if !storable(username) {
            return Ok(Vec::new());
        }
        let username = username.to_string();
        self.with("list sessions", move |c| async move {
            query(
                &c,
                "SELECT data, last_seen FROM portcullis_sessions \
                 WHERE username = $1 AND expires > $2 ORDER BY issued, sid",
                &[&username, &now],
            )
            .await
            .map_err(db("list sessions"))?
            .iter()
            .map(|r| session_from_row(r, "list sessions"))
            .collect()
        })
    }

    fn touch_sessions(&self, seen: &[(String, i64)]) -> StoreResult<()> {
        // The latest time of each sid, so one statement sets each row once.
        let mut latest = std::collections::BTreeMap::<&str, i64>::new();
        for (sid, at) in seen.iter().filter(|(sid, _)| storable(sid)) {
            let slot = latest.entry(sid).or_insert(*at);
            *slot = (*slot).max(*at);
        }
        if latest.is_empty() {
            return Ok(());
        }
        let sids: Vec<String> = latest.keys().map(|s| (*s).to_string()).collect();
        let ats: Vec<i64> = latest.values().copied().collect();
        self.with("record last seen", |c| async move {
            // Only rows still there, and only forward: a late writer never moves it back.
            execute(
                &c,
                "UPDATE portcullis_sessions s SET last_seen = t.at \
                 FROM unnest($1::text[], $2::bigint[]) AS t(sid, at) \
                 WHERE s.sid = t.sid AND (s.last_seen IS NULL OR s.last_seen < t.at)",
                &[&sids, &ats],
            )
            .await
            .map_err(db("record last seen"))?;
            Ok(())
        })
    }

    fn flush(&self) -> StoreResult<()> {
        // Each write is committed (and so durable) when its call returns.
        Ok(())
    }

    fn update_user(&self, user: &User) -> StoreResult<bool> {
        const ACTION: &str = "update user";
        if !storable(&user.username) {
            return Ok(false);
        }
        let user = user.clone();
        self.with(ACTION, |mut c| async move {
            let tx = c.transaction().await.map_err(db(ACTION))?;
            execute(&tx, "SELECT pg_advisory_xact_lock($1)", &[&lock::ACCOUNTS])
                .await
                .map_err(db(ACTION))?;
            let exists = query_opt(
                &tx,
                "SELECT 1 FROM portcullis_users WHERE username = $1 FOR UPDATE",
                &[&user.username],
            )
            .await
            .map_err(db(ACTION))?
            .is_some();
            if !exists {
                return Ok(false);
            }
            if let Some(email) = &user.email {
                if find_email_holder(&tx, email)
                    .await?
                    .is_some_and(|holder| holder != user.username)
                {
                    return Ok(false);
                }
            }
            write_user(&tx, &user).await?;
            tx.commit().await.map_err(db(ACTION))?;
            Ok(true)
        })
    }

    fn database_id(&self) -> StoreResult<DatabaseId> {
        Ok(self.identity.read().clone())
    }

    fn slide_failure(&self, key: &str, window: i64, now: i64, keep: u32) -> StoreResult<u32> {
        const ACTION: &str = "count failure";
        if !storable(key) {
            return Err(unstorable(ACTION));
        }
        let key = key.to_string();
        let keep = i32::try_from(keep).unwrap_or(i32::MAX);
        self.with(ACTION, move |c| async move {
            let row = query_opt(
                &c,
                "INSERT INTO portcullis_failure_windows AS w (key, window_secs, times, expires) \
                 VALUES ($1, $2, ARRAY[$3::bigint], $3::bigint + $2::bigint) \
                 ON CONFLICT (key) DO UPDATE SET window_secs = $2, \
                   times = portcullis_slide(w.times, $2, $3, $4), \
                   expires = $3::bigint + $2::bigint \
                 RETURNING cardinality(times)",
                &[&key, &window, &now, &keep],
            )
            .await
            .map_err(db(ACTION))?;
            Ok(row.map_or(1, |r| count_u32(i64::from(r.get::<_, i32>(0)))))
        })
    }

    fn failures(&self, key: &str, window: i64, now: i64) -> StoreResult<u32> {
        const ACTION: &str = "read failures";
        if !storable(key) {
            return Ok(0);
        }
        let key = key.to_string();
        self.with(ACTION, move |c| async move {
            let row = query_opt(
                &c,
                "SELECT count(*) FROM portcullis_failure_windows w, unnest(w.times) AS t(at) \
                 WHERE w.key = $1 AND t.at > $3::bigint - $2::bigint",
                &[&key, &window, &now],
            )
            .await
            .map_err(db(ACTION))?;
            Ok(row.map_or(0, |r| count_u32(r.get::<_, i64>(0))))
        })
    }

    fn unslide_failure(&self, key: &str, at: i64) -> StoreResult<()> {
        const ACTION: &str = "take back failure";
        if !storable(key) {
            return Ok(());
        }
        let key = key.to_string();
        self.with(ACTION, move |c| async move {
            execute(
                &c,
                "UPDATE portcullis_failure_windows SET times = portcullis_unslide(times, $2) \
                 WHERE key = $1 AND $2 = ANY(times)",
                &[&key, &at],
            )
            .await
            .map_err(db(ACTION))?;
            execute(
                &c,
                "DELETE FROM portcullis_failure_windows WHERE key = $1 AND cardinality(times) = 0",
                &[&key],
            )
            .await
            .map_err(db(ACTION))?;
            Ok(())
        })
    }

    fn put_ban(&self, ban: &Ban) -> StoreResult<()> {
        const ACTION: &str = "write ban";
        if !storable(&ban.subject) {
            return Err(unstorable(ACTION));
        }
        let ban = ban.clone();
        self.with(ACTION, |mut c| async move {
            let data = to_json(&ban, ACTION)?;
            let tx = c.transaction().await.map_err(db(ACTION))?;
            let operator = ban.reason == Ban::OPERATOR;
            // Ban::replaced_by, decided on the row: of replicas banning one subject at once,
            // a shorter ban never replaces a longer one still in force (an operator's does).
            execute(
                &tx,
                "INSERT INTO portcullis_bans AS b (subject, until, data) VALUES ($1, $2, $3) \
                 ON CONFLICT (subject) DO UPDATE SET until = excluded.until, data = excluded.data \
                 WHERE $4 OR (b.until IS NOT NULL AND (b.until <= $5 \
                   OR excluded.until IS NULL OR excluded.until > b.until))",
                &[&ban.subject, &ban.until, &data, &operator, &ban.since],
            )
            .await
            .map_err(db(ACTION))?;
            announce(&tx, &Change::Bans).await?;
            tx.commit().await.map_err(db(ACTION))
        })
    }

    fn remove_ban(&self, subject: &str) -> StoreResult<bool> {
        if !storable(subject) {
            return Ok(false);
        }
        let subject = subject.to_string();
        self.with("lift ban", |mut c| async move {
            let tx = c.transaction().await.map_err(db("lift ban"))?;
            let n = execute(
                &tx,
                "DELETE FROM portcullis_bans WHERE subject = $1",
                &[&subject],
            )
            .await
            .map_err(db("lift ban"))?;
            if n == 1 {
                announce(&tx, &Change::Bans).await?;
            }
            tx.commit().await.map_err(db("lift ban"))?;
            Ok(n == 1)
        })
    }

    fn watch_changes(&self, sink: std::sync::Arc<dyn ChangeSink>) -> StoreResult<ChangeFeed> {
        listen::start(&self.handle, &self.driver, self.tls.clone(), sink)
    }

    fn bans(&self, now: i64) -> StoreResult<Vec<Ban>> {
        const ACTION: &str = "load bans";
        self.with(ACTION, move |c| async move {
            execute(&c, "DELETE FROM portcullis_bans WHERE until <= $1", &[&now])
                .await
                .map_err(db("drop ended ban"))?;
            query(
                &c,
                "SELECT data FROM portcullis_bans WHERE until IS NULL OR until > $1 \
                 ORDER BY subject",
                &[&now],
            )
            .await
            .map_err(db(ACTION))?
            .iter()
            .map(|r| json_col(r, 0, ACTION))
            .collect()
        })
    }

    fn keyset(&self, name: &str) -> StoreResult<Option<super::Keyset>> {
        const ACTION: &str = "read key set";
        if !storable(name) {
            return Ok(None);
        }
        let name = name.to_string();
        self.with(ACTION, move |c| async move {
            let row = query_opt(
                &c,
                "SELECT version, data FROM portcullis_keysets WHERE name = $1",
                &[&name],
            )
            .await
            .map_err(db(ACTION))?;
            Ok(row.map(|r| super::Keyset {
                version: r.get(0),
                data: r.get(1),
            }))
        })
    }

    fn swap_keyset(&self, name: &str, expected: i64, data: &[u8]) -> StoreResult<bool> {
        const ACTION: &str = "write key set";
        if !storable(name) {
            return Err(unstorable(ACTION));
        }
        let name = name.to_string();
        let data = data.to_vec();
        self.with(ACTION, move |c| async move {
            // The first set is an insert the primary key lets only one writer make; a later
            // one an update that finds the row only at the version its writer read (a writer
            // waiting on another's update sees the new version and matches nothing).
            let n = if expected == 0 {
                execute(
                    &c,
                    "INSERT INTO portcullis_keysets (name, version, data) VALUES ($1, 1, $2) \
                     ON CONFLICT (name) DO NOTHING",
                    &[&name, &data],
                )
                .await
            } else {
                execute(
                    &c,
                    "UPDATE portcullis_keysets SET version = version + 1, data = $3 \
                     WHERE name = $1 AND version = $2",
                    &[&name, &expected, &data],
                )
                .await
            }
            .map_err(db(ACTION))?;
            Ok(n == 1)
        })
    }

    fn append_audit(&self, at_ms: i64, line: &str) -> StoreResult<()> {
        const ACTION: &str = "append audit record";
        if !storable(line) {
            return Err(unstorable(ACTION));
        }
        let line = line.to_string();
        self.with(ACTION, move |c| async move {
            execute(
                &c,
                "INSERT INTO portcullis_audit (at_ms, line) VALUES ($1, $2)",
                &[&at_ms, &line],
            )
            .await
            .map_err(db(ACTION))?;
            Ok(())
        })
    }

    fn audit_records(&self, since_ms: i64, limit: usize) -> StoreResult<Vec<(i64, String)>> {
        const ACTION: &str = "read audit records";
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.with(ACTION, move |c| async move {
            let rows = query(
                &c,
                "SELECT at_ms, line FROM portcullis_audit WHERE at_ms >= $1 \
                 ORDER BY at_ms, id LIMIT $2",
                &[&since_ms, &limit],
            )
            .await
            .map_err(db(ACTION))?;
            Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
        })
    }

    fn export_records(&self) -> StoreResult<Vec<super::Record>> {
        self.export_all()
    }

    fn import_records(&self, records: &[super::Record]) -> StoreResult<()> {
        self.import_all(records)
    }
}

//! The change feed on PostgreSQL: one `LISTEN` connection per gateway, apart from the pool,
//! with a polling fallback while it is down.
//!
//! Writes that revoke or ban call `pg_notify` in their transaction (see `announce` in the
//! parent module). A listener task on the store's runtime holds a connection of its own (the
//! pool's settings and TLS, its `application_name` ending in `-changes`), `LISTEN`s, and
//! hands each notice to a thread of its own, which applies it through the [`ChangeSink`]
//! (the sink may read the store, which waits on the store's runtime: never from that
//! runtime's own threads).
//!
//! - After every (re)connection it `LISTEN`s first and then asks for a full reload
//!   ([`Change::Resync`]): whatever was announced while it was away is in the store by then.
//! - A lost connection (the server restarted, the backend terminated, no answer to the
//!   heartbeat) is reconnected with a backoff from [`MIN_BACKOFF`] to [`MAX_BACKOFF`]; until
//!   it is back, a reload is asked for every [`POLL_EVERY`], so a revocation made meanwhile
//!   is still applied within a second.
//! - Notices heard together are applied together, and the reloads among them done once.

use super::CONNECT_TIMEOUT;
use crate::store::{Change, ChangeFeed, ChangeSink, FeedState, StoreError, StoreResult};
use std::sync::Arc;
use std::time::Duration;
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::{AsyncMessage, Socket};

/// The notification channel every gateway listens on.
pub(crate) const CHANNEL: &str = "portcullis_changes";
/// The longest notice PostgreSQL carries is 7999 bytes; a longer change is sent as a reload.
pub(crate) const PAYLOAD_LIMIT: usize = 7_999;
/// How often the store is read while the listener is down: under the one second promised.
pub(crate) const POLL_EVERY: Duration = Duration::from_millis(400);
/// The first wait before reconnecting, doubled after each failure up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// The longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How long the connection may be quiet before it is asked whether it is still there.
const HEARTBEAT: Duration = Duration::from_secs(10);
/// How long the heartbeat's answer may take before the connection counts as lost.
const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(5);

/// Starts the listener on `runtime` with the pool's settings `driver` and `tls`, and the
/// thread that applies what it hears to `sink`.
///
/// # Errors
/// [`StoreError::Backend`] when the applying thread cannot be started.
pub(super) fn start(
    runtime: &tokio::runtime::Handle,
    driver: &tokio_postgres::Config,
    tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
    sink: Arc<dyn ChangeSink>,
) -> StoreResult<ChangeFeed> {
    let state = Arc::new(FeedState::default());
    let (tx, rx) = std::sync::mpsc::channel::<Change>();
    std::thread::Builder::new()
        .name("portcullis-changes".into())
        .spawn(move || apply_all(&rx, sink.as_ref()))
        .map_err(|e| StoreError::backend("start the change feed", e))?;
    let mut config = driver.clone();
    let name = format!(
        "{}-changes",
        driver.get_application_name().unwrap_or("portcullis")
    );
    config.application_name(&name);
    config.keepalives(true);
    config.keepalives_idle(HEARTBEAT);
    let task_state = state.clone();
    runtime.spawn(async move {
        match tls {
            Some(tls) => run(&config, tls, &task_state, &tx).await,
            None => run(&config, tokio_postgres::NoTls, &task_state, &tx).await,
        }
        task_state.set_listening(false);
    });
    Ok(ChangeFeed::running(state))
}

/// The applying thread: waits for a change, takes every other one already queued, and applies
/// them at once; ends when the listener does.
fn apply_all(rx: &std::sync::mpsc::Receiver<Change>, sink: &dyn ChangeSink) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        batch.extend(rx.try_iter());
        // One reload covers every reload asked, and a reload of bans any other.
        if batch.contains(&Change::Resync) {
            batch.retain(|c| !matches!(c, Change::Resync | Change::Bans));
            batch.push(Change::Resync);
        } else if batch.contains(&Change::Bans) {
            batch.retain(|c| *c != Change::Bans);
            batch.push(Change::Bans);
        }
        sink.apply(&batch);
    }
}

/// Listens, reconnecting with backoff and polling while down, until the feed is dropped.
async fn run<T>(
    config: &tokio_postgres::Config,
    tls: T,
    state: &FeedState,
    out: &std::sync::mpsc::Sender<Change>,
) where
    T: MakeTlsConnect<Socket> + Clone + Send + Sync + 'static,
    T::Stream: Send + 'static,
    T::TlsConnect: Send,
    <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
{
    let mut backoff = MIN_BACKOFF;
    loop {
        if state.stopped() {
            return;
        }
        if !state.reconnects_held() {
            match listen(config, tls.clone(), state, out).await {
                Ok(()) => return,
                Err((listened, e)) => {
                    state.set_listening(false);
                    if listened {
                        backoff = MIN_BACKOFF;
                    }
                    tracing::warn!(error = %e, retry_in = ?backoff, "the change feed lost its database connection; reading the store every {POLL_EVERY:?} until it is back");
                }
            }
        }
        // Down: read the store now (changes may have been missed) and then every POLL_EVERY
        // until the next attempt.
        let until = tokio::time::Instant::now() + backoff;
        loop {
            if out.send(Change::Resync).is_err() {
                return;
            }
            let left = until.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                break;
            }
            tokio::select! {
                () = tokio::time::sleep(left.min(POLL_EVERY)) => {}
                () = state.until_stopped() => return,
            }
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// One connection's life: connect, `LISTEN`, ask for a reload, then pass on every notice until
/// the connection is lost (`Err`, saying whether it had got as far as listening) or the feed
/// is dropped (`Ok`).
async fn listen<T>(
    config: &tokio_postgres::Config,
    tls: T,
    state: &FeedState,
    out: &std::sync::mpsc::Sender<Change>,
) -> Result<(), (bool, String)>
where
    T: MakeTlsConnect<Socket> + Send + Sync + 'static,
    T::Stream: Send + 'static,
    T::TlsConnect: Send,
    <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
{
    let lost = |e: &dyn std::fmt::Display| (false, e.to_string());
    let (client, mut connection) =
        match tokio::time::timeout(CONNECT_TIMEOUT, config.connect(tls)).await {
            Ok(Ok(pair)) => pair,
            Ok(Err(e)) => return Err(lost(&e)),
            Err(_) => return Err(lost(&"no connection within the connect timeout")),
        };
    // The connection is driven here; notices go to the loop below as they come.
    let (notices, mut heard) = tokio::sync::mpsc::unbounded_channel::<String>();
    let driver = tokio::spawn(async move {
        loop {
            match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(n))) => {
                    if notices.send(n.payload().to_string()).is_err() {
                        return "the listener stopped".to_string();
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return e.to_string(),
                None => return "the server closed the connection".to_string(),
            }
        }
    });
    let ended = async {
        let listened = tokio::time::timeout(
            HEARTBEAT_TIMEOUT,
            client.batch_execute(&format!("LISTEN {CHANNEL}")),
        )
        .await;
        match listened {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(lost(&e)),
            Err(_) => return Err(lost(&"LISTEN was not answered")),
        }
        state.set_listening(true);
        tracing::info!("the change feed is listening");
        // LISTEN first, then read: a change made before LISTEN took effect is in the store.
        if out.send(Change::Resync).is_err() {
            return Ok(());
        }
        loop {
            tokio::select! {
                notice = heard.recv() => match notice {
                    Some(text) => {
                        if out.send(Change::decode(&text)).is_err() {
                            return Ok(());
                        }
                    }
                    None => return Err((true, "the connection ended".to_string())),
                },
                () = tokio::time::sleep(HEARTBEAT) => {
                    match tokio::time::timeout(HEARTBEAT_TIMEOUT, client.simple_query("SELECT 1")).await {
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => return Err((true, e.to_string())),
                        Err(_) => return Err((true, "no answer to the heartbeat".to_string())),
                    }
                }
                () = state.until_stopped() => return Ok(()),
            }
        }
    }
    .await;
    drop(client);
    let ended = match ended {
        Err((listened, why)) if driver.is_finished() => {
            let cause = driver.await.unwrap_or_else(|e| e.to_string());
            Err((listened, format!("{why}: {cause}")))
        }
        other => {
            driver.abort();
            other
        }
    };
    ended
}

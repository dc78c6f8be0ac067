//! PostgreSQL: the one listening connection of an instance. Every write announces its
//! events with `pg_notify('task_events', …)` in its own statement (see `tasks::store`), so
//! this connection hears every instance's writes, its own included, in commit order.
//!
//! When the connection drops, the REST API keeps working; the listener reconnects with
//! backoff, and every open stream gets `reset`, since changes may have been missed.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use rocket::Shutdown;
use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};

use super::{event_of, Bus, ListenerState};
use crate::tasks::changes::{Committed, TaskChange};
use crate::tasks::model::Task;

const CHANNEL: &str = "task_events";
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
const CLEAN_EVERY: Duration = Duration::from_secs(60);

/// One notification, as the write statements build it.
#[derive(Debug, Deserialize)]
struct Announced {
    /// Event id.
    e: i64,
    /// `created`, `updated` or `deleted`.
    k: String,
    /// The task's owner.
    u: String,
    /// The task's id.
    id: i64,
    /// The task, unless it was too large for the notification.
    t: Option<Task>,
}

const BODY: &str = "SELECT body FROM task_event_bodies WHERE event_id = $1";
const CLEAN: &str =
    "DELETE FROM task_event_bodies WHERE created_at < now() - interval '10 minutes'";

/// Turns a notification into a committed change, reading a large task's body from the
/// table the write stored it in.
async fn committed(pool: &PgPool, payload: &str) -> Result<Committed, String> {
    let announced: Announced =
        serde_json::from_str(payload).map_err(|e| format!("unreadable notification: {e}"))?;
    let task = |task: Option<Task>| async {
        match task {
            Some(task) => Ok(task),
            None => {
                let body: String = sqlx::query_scalar(BODY)
                    .bind(announced.e)
                    .fetch_one(pool)
                    .await
                    .map_err(|e| format!("event body {} unreadable: {e}", announced.e))?;
                serde_json::from_str(&body).map_err(|e| format!("unreadable event body: {e}"))
            }
        }
    };
    let change = match announced.k.as_str() {
        "deleted" => TaskChange::Deleted {
            user_id: announced.u.clone(),
            id: announced.id,
        },
        "created" => TaskChange::Created(task(announced.t).await?),
        "updated" => TaskChange::Updated(task(announced.t).await?),
        other => return Err(format!("unknown event kind {other}")),
    };
    Ok(Committed {
        event_id: announced.e,
        change,
    })
}

/// The listener's own one-connection pool, so it never takes a connection the service's
/// requests need: `DATABASE_LISTEN_URL`, else the service pool's server.
pub fn listen_pool(pool: &PgPool, url: Option<&SecretString>) -> Result<PgPool, sqlx::Error> {
    let options = match url {
        Some(url) => url.expose_secret().parse::<PgConnectOptions>()?,
        None => (*pool.connect_options()).clone(),
    };
    Ok(PgPoolOptions::new()
        .max_connections(1)
        .min_connections(0)
        .acquire_timeout(Duration::from_secs(5))
        .connect_lazy_with(options))
}

/// Connects the listener and starts listening.
pub async fn connect(listen_pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(listen_pool).await?;
    // The listener reconnects itself on the next receive when its connection drops; this
    // loop does that instead, so it knows, and can reset the streams.
    listener.ignore_pool_close_event(true);
    listener.listen(CHANNEL).await?;
    Ok(listener)
}

/// Listens until shutdown, reconnecting with backoff. `first` is a listener already
/// connected at start, so streams opened right after start miss nothing.
pub async fn run(
    bus: Arc<Bus>,
    pool: PgPool,
    listen_pool: PgPool,
    mut first: Option<PgListener>,
    state: Arc<ListenerState>,
    mut shutdown: Shutdown,
) {
    let mut backoff = FIRST_BACKOFF;
    let mut connected_before = false;
    let mut clean = tokio::time::interval(CLEAN_EVERY);
    loop {
        let connecting = match first.take() {
            Some(listener) => Ok(listener),
            None => tokio::select! {
                listener = connect(&listen_pool) => listener,
                _ = &mut shutdown => return,
            },
        };
        let mut listener = match connecting {
            Ok(listener) => listener,
            Err(error) => {
                state.down();
                tracing::warn!(%error, retry_in_ms = backoff.as_millis() as u64, "event listener cannot connect");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = &mut shutdown => return,
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        backoff = FIRST_BACKOFF;
        if connected_before {
            bus.counters
                .listener_reconnects
                .fetch_add(1, Ordering::Relaxed);
        }
        // Whatever committed while no connection listened was missed.
        if connected_before {
            bus.reset_all();
        }
        connected_before = true;
        state.listening();
        tracing::info!("event listener is listening");
        loop {
            tokio::select! {
                received = listener.try_recv() => match received {
                    Ok(Some(notification)) => match committed(&pool, notification.payload()).await {
                        Ok(committed) => bus.publish(committed.change.user_id(), event_of(&committed)),
                        Err(error) => {
                            // A change was missed: every stream must refetch.
                            tracing::error!(%error, "an event could not be read");
                            bus.reset_all();
                        }
                    },
                    Ok(None) | Err(_) => break,
                },
                _ = clean.tick() => {
                    if let Err(error) = sqlx::query(CLEAN).execute(&pool).await {
                        tracing::warn!(%error, "old event bodies could not be deleted");
                    }
                }
                _ = &mut shutdown => return,
            }
        }
        state.down();
        bus.reset_all();
        tracing::warn!("event listener lost its connection; reconnecting");
    }
}

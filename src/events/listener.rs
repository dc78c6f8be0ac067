//! PostgreSQL: the one listening connection of an instance. Every write announces its
//! events in its own statement (the format is `tasks::announce`'s), so
//! this connection hears every instance's writes, its own included, in commit order.
//!
//! When the connection drops, the REST API keeps working; the listener reconnects with
//! backoff, and every open stream gets `reset`, since changes may have been missed.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use rocket::Shutdown;
use secrecy::{ExposeSecret as _, SecretString};
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};

use super::{event_of, Bus, ListenerState};
use crate::tasks::announce::{self, CHANNEL};

const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
const CLEAN_EVERY: Duration = Duration::from_secs(60);

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
                    Ok(Some(notification)) => match announce::decode(&pool, notification.payload()).await {
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
                    if let Err(error) = announce::prune(&pool).await {
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

//! PostgreSQL: how instances wake each other. After a write commits, its instance sends
//! one notification (outside any write's transaction, coalesced: at most one every
//! [`COALESCE`]) naming the users whose logs grew and how far; every instance's listener
//! hears it and wakes its feed for those users. Notifications only hurry delivery: the
//! feed's polling delivers every event without them.
//!
//! A listener can be connected and yet hear nothing (behind a transaction-mode pooler,
//! `LISTEN` lands on a server connection the pooler hands to someone else). So it sends
//! itself a probe, at start and every [`PROBE_EVERY`]; one it does not hear makes it
//! `deaf` in `/health/ready`, with one WARN saying what to do.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rocket::Shutdown;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};
use tokio::sync::Notify;

use super::{Bus, ListenerState};

/// The notification channel.
pub const CHANNEL: &str = "task_events";

const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// How often the listener checks that it hears.
const PROBE_EVERY: Duration = Duration::from_secs(30);
/// How soon a probe that could not be sent is sent again.
const PROBE_RETRY: Duration = Duration::from_secs(1);
/// How long a probe may take to come back before the listener counts as deaf.
const PROBE_WAIT: Duration = Duration::from_secs(2);
/// At most one wake-up notification per instance this often.
pub const COALESCE: Duration = Duration::from_millis(5);
/// A notification's payload must stay under PostgreSQL's 8,000 bytes; a longer list of
/// users becomes "every user".
const MAX_PAYLOAD: usize = 7_900;
/// A probe's payload starts with this; a wake-up's is a JSON list or `*`.
const PROBE_PREFIX: &str = "probe:";

/// The listener's own one-connection pool, so it never takes a connection the service's
/// requests need.
pub fn listen_pool(options: PgConnectOptions) -> PgPool {
    PgPoolOptions::new()
        .max_connections(1)
        .min_connections(0)
        .acquire_timeout(Duration::from_secs(5))
        .connect_lazy_with(options)
}

/// Connects the listener and starts listening.
pub async fn connect(listen_pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(listen_pool).await?;
    // The listener reconnects itself on the next receive when its connection drops; this
    // loop does that instead, so it knows, and can have the feed read everything.
    listener.ignore_pool_close_event(true);
    listener.listen(CHANNEL).await?;
    Ok(listener)
}

/// Wake-ups waiting to be sent: the users whose logs grew here, and how far.
#[derive(Default)]
pub struct Wakes {
    pending: Mutex<HashMap<String, i64>>,
    ready: Notify,
}

impl Wakes {
    /// `user`'s log reached `last_id` by a write of this instance.
    pub fn push(&self, user: &str, last_id: i64) {
        if let Ok(mut pending) = self.pending.lock() {
            let at = pending.entry(user.to_owned()).or_insert(last_id);
            *at = (*at).max(last_id);
        }
        self.ready.notify_one();
    }

    fn take(&self) -> HashMap<String, i64> {
        self.pending
            .lock()
            .map(|mut pending| std::mem::take(&mut *pending))
            .unwrap_or_default()
    }
}

/// A wake-up's payload: `[[user, last id], …]`, or `*` when that would not fit.
fn payload(pending: &HashMap<String, i64>) -> String {
    let listed: Vec<(&str, i64)> = pending.iter().map(|(u, id)| (u.as_str(), *id)).collect();
    match serde_json::to_string(&listed) {
        Ok(text) if text.len() <= MAX_PAYLOAD => text,
        _ => "*".to_owned(),
    }
}

async fn notify(pool: &PgPool, payload: &str) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(CHANNEL)
        .bind(payload)
        .execute(pool)
        .await
        .map(drop)
}

/// Sends the wake-ups of this instance's writes until shutdown, at most one every
/// [`COALESCE`], each in a transaction of its own (never a write's).
pub async fn send_wakes(wakes: Arc<Wakes>, pool: PgPool, mut shutdown: Shutdown) {
    let mut warned = false;
    loop {
        tokio::select! {
            _ = wakes.ready.notified() => {}
            _ = &mut shutdown => return,
        }
        let pending = wakes.take();
        if pending.is_empty() {
            continue;
        }
        match notify(&pool, &payload(&pending)).await {
            Ok(()) => warned = false,
            // Other instances still get these events by polling.
            Err(error) if !warned => {
                tracing::warn!(%error, "a wake-up notification could not be sent");
                warned = true;
            }
            Err(_) => {}
        }
        tokio::time::sleep(COALESCE).await;
    }
}

/// Hands a received payload to the bus.
fn received(bus: &Bus, payload: &str) {
    match serde_json::from_str::<Vec<(String, i64)>>(payload) {
        Ok(listed) => {
            for (user, last_id) in listed {
                bus.announce(&user, last_id);
            }
        }
        // `*`, or a payload this version does not know: read everyone.
        Err(_) => bus.announce_all(),
    }
}

/// Listens until shutdown, reconnecting with backoff and probing that it hears. `first` is
/// a listener already connected at start.
pub async fn run(
    bus: Arc<Bus>,
    pool: PgPool,
    listen_pool: PgPool,
    mut first: Option<PgListener>,
    state: Arc<ListenerState>,
    poll: Duration,
    mut shutdown: Shutdown,
) {
    let mut backoff = FIRST_BACKOFF;
    let mut connected_before = false;
    // Start-up already warned when the first probe went unheard.
    let warned_deaf = AtomicBool::new(state.name() == "deaf");
    loop {
        let probed_at_start = first.is_some();
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
            // Wake-ups sent while no connection listened were missed; the log has the
            // events.
            bus.announce_all();
        }
        // The listener connected at start was probed then; any other is probed now.
        let first_probe = if probed_at_start {
            tokio::time::Instant::now() + PROBE_EVERY
        } else {
            tokio::time::Instant::now()
        };
        connected_before = true;
        let mut probe = Probe::new();
        let mut probe_tick = tokio::time::interval_at(first_probe, PROBE_EVERY);
        loop {
            let due = probe.due;
            tokio::select! {
                received_at = listener.try_recv() => match received_at {
                    Ok(Some(notification)) => {
                        let payload = notification.payload();
                        match payload.strip_prefix(PROBE_PREFIX) {
                            Some(id) => {
                                if probe.heard(id) {
                                    state.heard();
                                    warned_deaf.store(false, Ordering::Relaxed);
                                }
                            }
                            None => received(&bus, payload),
                        }
                    }
                    Ok(None) | Err(_) => break,
                },
                _ = probe_tick.tick() => {
                    if let Err(error) = probe.send(&pool).await {
                        // The pool is failing (the database restarting, a pooler waiting to
                        // log in again): ask again soon, not a whole probe period later.
                        tracing::debug!(%error, "the listener's probe could not be sent");
                        probe_tick.reset_after(PROBE_RETRY);
                    }
                }
                _ = overdue(due) => {
                    probe.due = None;
                    state.deaf();
                    if !warned_deaf.swap(true, Ordering::Relaxed) {
                        warn_deaf(poll);
                    }
                }
                _ = &mut shutdown => return,
            }
        }
        state.down();
        tracing::warn!("event listener lost its connection; reconnecting");
    }
}

/// The listener's check that it hears: a notification of its own, awaited.
struct Probe {
    /// Unique per listener connection, so another instance's probe is not taken for ours.
    prefix: String,
    sent: u64,
    /// When the last probe sent must have come back.
    due: Option<tokio::time::Instant>,
}

impl Probe {
    fn new() -> Self {
        Self {
            prefix: uuid::Uuid::new_v4().simple().to_string(),
            sent: 0,
            due: None,
        }
    }

    async fn send(&mut self, pool: &PgPool) -> Result<(), sqlx::Error> {
        self.sent += 1;
        let payload = format!("{PROBE_PREFIX}{}:{}", self.prefix, self.sent);
        notify(pool, &payload).await?;
        if self.due.is_none() {
            self.due = Some(tokio::time::Instant::now() + PROBE_WAIT);
        }
        Ok(())
    }

    /// Whether `id` is this listener's latest probe (then it is no longer awaited).
    fn heard(&mut self, id: &str) -> bool {
        let mine = id
            .split_once(':')
            .is_some_and(|(prefix, n)| prefix == self.prefix && n == self.sent.to_string());
        if mine {
            self.due = None;
        }
        mine
    }
}

/// Resolves at `due`; never without one.
async fn overdue(due: Option<tokio::time::Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(due).await,
        None => std::future::pending().await,
    }
}

/// The one WARN line of a deaf listener, with what to do.
pub fn warn_deaf(poll: Duration) {
    tracing::warn!(
        poll_ms = poll.as_millis() as u64,
        "the event listener cannot hear notifications: its URL is a pooler that cannot \
         LISTEN. Set DATABASE_DIRECT_URL to a direct (non-pooled) host; until then events \
         arrive by polling, within EVENTS_POLL_MS"
    );
}

/// Whether a new listener hears its own probe within [`PROBE_WAIT`]; for start-up, so
/// `/health/ready` is right from the first request.
pub async fn hears(listener: &mut PgListener, pool: &PgPool) -> Result<bool, sqlx::Error> {
    let mut probe = Probe::new();
    probe.send(pool).await?;
    let deadline = tokio::time::Instant::now() + PROBE_WAIT;
    loop {
        match tokio::time::timeout_at(deadline, listener.try_recv()).await {
            Err(_) => return Ok(false),
            Ok(Err(error)) => return Err(error),
            Ok(Ok(None)) => return Ok(false),
            Ok(Ok(Some(notification))) => {
                if let Some(id) = notification.payload().strip_prefix(PROBE_PREFIX) {
                    if probe.heard(id) {
                        return Ok(true);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wake_up_names_users_and_positions_or_everyone() {
        let mut pending = HashMap::new();
        pending.insert("alice".to_owned(), 7);
        assert_eq!(payload(&pending), r#"[["alice",7]]"#);
        for n in 0..1000 {
            pending.insert(format!("user-{n}-with-a-long-identifier"), n);
        }
        assert_eq!(payload(&pending), "*");
    }
}

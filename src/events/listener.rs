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
//!
//! Every listener hears every instance's probes, which is how an instance knows whether
//! anyone else listens ([`Peers`]): a listener's first probe on a new connection says
//! `hello`, and every listening instance that hears one answers with a probe of its own.
//! An instance that hears and has heard no one else for a while sends no wake-ups: a
//! single instance (the usual small deployment) pays nothing for them.

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
/// Ends the payload of a listener's first probe on a new connection: other listeners answer.
const HELLO_SUFFIX: &str = ":hello";
/// How long after another instance's last probe it counts as listening: two missed probe
/// periods, and the time a probe may take.
const PEER_WINDOW: Duration = Duration::from_secs(2 * PROBE_EVERY.as_secs() + PROBE_WAIT.as_secs());

/// What this instance knows of other instances' listeners, from their probes.
#[derive(Default)]
pub struct Peers(Mutex<PeerView>);

#[derive(Default)]
struct PeerView {
    /// Since when this instance's listener has heard its own probes; `None` while it
    /// does not (then it hears no one's, and cannot tell whether anyone listens).
    hearing_since: Option<tokio::time::Instant>,
    /// When another instance's probe was last heard.
    peer_heard_at: Option<tokio::time::Instant>,
}

impl Peers {
    fn view(&self) -> std::sync::MutexGuard<'_, PeerView> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn hearing(&self) {
        let mut view = self.view();
        if view.hearing_since.is_none() {
            view.hearing_since = Some(tokio::time::Instant::now());
        }
    }

    fn not_hearing(&self) {
        self.view().hearing_since = None;
    }

    fn heard_peer(&self) {
        self.view().peer_heard_at = Some(tokio::time::Instant::now());
    }

    /// Whether a wake-up sent now may be heard by another instance: yes unless this
    /// instance's listener has heard its own probes for longer than answers to its hello
    /// take and has heard no other instance's probe within [`PEER_WINDOW`].
    pub fn may_be_heard(&self) -> bool {
        let view = self.view();
        match view.hearing_since {
            None => true,
            Some(since) => {
                since.elapsed() < PROBE_WAIT
                    || view
                        .peer_heard_at
                        .is_some_and(|at| at.elapsed() < PEER_WINDOW)
            }
        }
    }
}

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
/// [`COALESCE`], each in a transaction of its own (never a write's), while another
/// instance may hear them.
pub async fn send_wakes(
    wakes: Arc<Wakes>,
    peers: Arc<Peers>,
    bus: Arc<Bus>,
    pool: PgPool,
    mut shutdown: Shutdown,
) {
    let mut warned = false;
    loop {
        tokio::select! {
            _ = wakes.ready.notified() => {}
            _ = &mut shutdown => return,
        }
        let pending = wakes.take();
        if pending.is_empty() || !peers.may_be_heard() {
            continue;
        }
        bus.counters.wake_ups_sent.fetch_add(1, Ordering::Relaxed);
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
/// a listener already connected (and probed) at start, with its probe.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    bus: Arc<Bus>,
    pool: PgPool,
    listen_pool: PgPool,
    mut first: Option<(PgListener, Probe)>,
    state: Arc<ListenerState>,
    peers: Arc<Peers>,
    poll: Duration,
    mut shutdown: Shutdown,
) {
    let mut backoff = FIRST_BACKOFF;
    let mut connected_before = false;
    // Start-up already warned when the first probe went unheard.
    let warned_deaf = AtomicBool::new(state.name() == "deaf");
    loop {
        let connecting = match first.take() {
            Some((listener, probe)) => Ok((listener, probe, true)),
            None => tokio::select! {
                listener = connect(&listen_pool) => listener.map(|l| (l, Probe::new(), false)),
                _ = &mut shutdown => return,
            },
        };
        let (mut listener, mut probe, probed) = match connecting {
            Ok(connected) => connected,
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
        let first_probe = if probed {
            tokio::time::Instant::now() + PROBE_EVERY
        } else {
            tokio::time::Instant::now()
        };
        connected_before = true;
        let mut probe_tick = tokio::time::interval_at(first_probe, PROBE_EVERY);
        loop {
            let due = probe.due;
            tokio::select! {
                received_at = listener.try_recv() => match received_at {
                    Ok(Some(notification)) => {
                        let payload = notification.payload();
                        match payload.strip_prefix(PROBE_PREFIX).map(|id| probe.heard(id)) {
                            Some(Heard::Mine) => {
                                state.heard();
                                peers.hearing();
                                warned_deaf.store(false, Ordering::Relaxed);
                            }
                            Some(Heard::Peer { hello }) => {
                                peers.heard_peer();
                                // A listener that just connected learns that this one
                                // listens.
                                if hello {
                                    if let Err(error) = probe.send(&pool).await {
                                        tracing::debug!(%error, "a hello could not be answered");
                                    }
                                }
                            }
                            Some(Heard::Stale) => {}
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
                    peers.not_hearing();
                    if !warned_deaf.swap(true, Ordering::Relaxed) {
                        warn_deaf(poll);
                    }
                }
                _ = &mut shutdown => return,
            }
        }
        state.down();
        peers.not_hearing();
        tracing::warn!("event listener lost its connection; reconnecting");
    }
}

/// The listener's check that it hears: a notification of its own, awaited.
pub struct Probe {
    /// Unique per listener connection, so another instance's probe is not taken for ours.
    prefix: String,
    sent: u64,
    /// When the last probe sent must have come back.
    due: Option<tokio::time::Instant>,
}

/// Whose probe a listener heard.
#[derive(Debug, PartialEq, Eq)]
enum Heard {
    /// Its latest own: it hears.
    Mine,
    /// An earlier one of its own.
    Stale,
    /// Another listener's; `hello` when that one just connected.
    Peer { hello: bool },
}

impl Probe {
    fn new() -> Self {
        Self {
            prefix: uuid::Uuid::new_v4().simple().to_string(),
            sent: 0,
            due: None,
        }
    }

    /// Sends the next probe; the first on a connection says hello.
    async fn send(&mut self, pool: &PgPool) -> Result<(), sqlx::Error> {
        self.sent += 1;
        let hello = if self.sent == 1 { HELLO_SUFFIX } else { "" };
        let payload = format!("{PROBE_PREFIX}{}:{}{hello}", self.prefix, self.sent);
        notify(pool, &payload).await?;
        if self.due.is_none() {
            self.due = Some(tokio::time::Instant::now() + PROBE_WAIT);
        }
        Ok(())
    }

    /// Whose probe `id` (a payload after [`PROBE_PREFIX`]) is; this listener's latest is
    /// no longer awaited.
    fn heard(&mut self, id: &str) -> Heard {
        let (body, hello) = match id.strip_suffix(HELLO_SUFFIX) {
            Some(body) => (body, true),
            None => (id, false),
        };
        let (prefix, n) = body.split_once(':').unwrap_or((body, ""));
        if prefix != self.prefix {
            return Heard::Peer { hello };
        }
        if n != self.sent.to_string() {
            return Heard::Stale;
        }
        self.due = None;
        Heard::Mine
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

/// Whether a new listener hears its own probe within [`PROBE_WAIT`], with the probe; for
/// start-up, so `/health/ready` is right from the first request. Other instances' probes
/// heard meanwhile go to `peers`.
pub async fn hears(
    listener: &mut PgListener,
    pool: &PgPool,
    peers: &Peers,
) -> Result<(bool, Probe), sqlx::Error> {
    let mut probe = Probe::new();
    probe.send(pool).await?;
    let deadline = tokio::time::Instant::now() + PROBE_WAIT;
    loop {
        match tokio::time::timeout_at(deadline, listener.try_recv()).await {
            Err(_) | Ok(Ok(None)) => return Ok((false, probe)),
            Ok(Err(error)) => return Err(error),
            Ok(Ok(Some(notification))) => {
                match notification
                    .payload()
                    .strip_prefix(PROBE_PREFIX)
                    .map(|id| probe.heard(id))
                {
                    Some(Heard::Mine) => {
                        peers.hearing();
                        return Ok((true, probe));
                    }
                    Some(Heard::Peer { .. }) => peers.heard_peer(),
                    _ => {}
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

    #[test]
    fn a_probe_is_told_from_a_peers_and_a_hello_from_a_probe() {
        let mut mine = Probe::new();
        mine.sent = 2;
        mine.due = Some(tokio::time::Instant::now());
        let prefix = mine.prefix.clone();
        assert_eq!(mine.heard(&format!("{prefix}:1:hello")), Heard::Stale);
        assert!(mine.due.is_some(), "still awaited");
        assert_eq!(mine.heard(&format!("{prefix}:2")), Heard::Mine);
        assert_eq!(mine.due, None);
        assert_eq!(mine.heard("0123abcd:1:hello"), Heard::Peer { hello: true });
        assert_eq!(mine.heard("0123abcd:7"), Heard::Peer { hello: false });
        assert_eq!(mine.heard("garbage"), Heard::Peer { hello: false });
    }

    #[tokio::test(start_paused = true)]
    async fn wake_ups_go_out_only_while_another_listener_may_hear_them() {
        let peers = Peers::default();
        assert!(peers.may_be_heard(), "not hearing: no way to know");
        peers.hearing();
        assert!(
            peers.may_be_heard(),
            "answers to the hello may be on their way"
        );
        tokio::time::advance(PROBE_WAIT).await;
        assert!(!peers.may_be_heard(), "alone");
        peers.heard_peer();
        assert!(peers.may_be_heard());
        tokio::time::advance(PEER_WINDOW - Duration::from_secs(1)).await;
        assert!(peers.may_be_heard(), "a peer missing a probe still counts");
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(
            !peers.may_be_heard(),
            "a peer silent for two probe periods is gone"
        );
        peers.not_hearing();
        assert!(peers.may_be_heard(), "deaf or down: no way to know");
    }
}

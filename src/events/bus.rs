//! The per-user event bus of one instance: recent history for resuming, and the open
//! streams, each behind a bounded buffer.
//!
//! Invariants: events reach the bus in commit order (the SQLite commit step, or the one
//! PostgreSQL listener), and a stream sees, after what it replayed, every event published
//! after it subscribed, in that order: subscribing and publishing take the same lock. A
//! stream whose buffer is full is dropped (its client reconnects and resumes), so a slow
//! client never slows a writer or another stream.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

/// Events a user's history keeps at least (newest), while they are younger than
/// [`HISTORY_AGE`].
pub const HISTORY_LEN: usize = 128;
/// How long an event stays resumable.
pub const HISTORY_AGE: Duration = Duration::from_secs(10 * 60);
/// Frames a stream may have waiting before it is dropped as too slow.
pub const STREAM_BUFFER: usize = 64;

/// One task event, as every stream sends it.
#[derive(Debug, PartialEq, Eq)]
pub struct Event {
    /// The event id, from the database: the same on every instance.
    pub id: i64,
    /// `task.created`, `task.updated` or `task.deleted`.
    pub name: &'static str,
    /// The JSON data.
    pub data: String,
}

/// What a stream receives.
#[derive(Debug, Clone)]
pub enum Frame {
    /// A task event.
    Event(Arc<Event>),
    /// Changes may have been missed: the client should refetch.
    Reset,
}

/// How a new stream starts, after `ready`.
#[derive(Debug)]
pub enum Resume {
    /// No `Last-Event-ID`: only what comes next.
    Fresh,
    /// The events after the client's last one, in commit order (maybe none).
    Replay(Vec<Arc<Event>>),
    /// The client's last id is not held here (too old, never issued, or malformed).
    Reset,
}

/// Why a stream could not be opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The user has `max_per_user` streams open here.
    TooManyForUser,
    /// This instance has `max_streams` streams open.
    TooManyStreams,
}

#[derive(Default)]
struct UserState {
    history: VecDeque<(Instant, Arc<Event>)>,
    streams: Vec<(u64, mpsc::Sender<Frame>)>,
}

/// Counts since start, for the metrics.
#[derive(Default)]
pub(super) struct Counters {
    /// Events published to the bus.
    published: AtomicU64,
    /// Events handed to streams.
    delivered: AtomicU64,
    /// Streams dropped because their client did not read.
    dropped_slow: AtomicU64,
    /// Times the PostgreSQL listener connected again after losing its connection.
    pub(super) listener_reconnects: AtomicU64,
}

/// What the bus reports to the metrics: a level and counts since start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BusSnapshot {
    /// Streams open now.
    pub streams_open: u64,
    /// Events published to the bus.
    pub published: u64,
    /// Events handed to streams.
    pub delivered: u64,
    /// Streams dropped because their client did not read.
    pub dropped_slow: u64,
    /// Times the PostgreSQL listener connected again after losing its connection.
    pub listener_reconnects: u64,
}

/// The bus: managed state, shared by the route, the publishers and the pruner.
pub struct Bus {
    users: Mutex<HashMap<String, UserState>>,
    max_per_user: usize,
    max_streams: usize,
    open: AtomicUsize,
    next_stream: AtomicU64,
    pub(super) counters: Counters,
}

impl Bus {
    /// A bus with the given stream limits.
    pub fn new(max_per_user: usize, max_streams: usize) -> Self {
        Self {
            users: Mutex::new(HashMap::new()),
            max_per_user,
            max_streams,
            open: AtomicUsize::new(0),
            next_stream: AtomicU64::new(1),
            counters: Counters::default(),
        }
    }

    fn users(&self) -> MutexGuard<'_, HashMap<String, UserState>> {
        // A panic while the lock was held cannot leave the map half-updated in a way that
        // matters more than losing the whole bus would.
        self.users
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Streams open on this instance.
    pub fn open_streams(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// The bus's level and counts, for the metrics.
    pub fn snapshot(&self) -> BusSnapshot {
        let count = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        BusSnapshot {
            streams_open: u64::try_from(self.open_streams()).unwrap_or(u64::MAX),
            published: count(&self.counters.published),
            delivered: count(&self.counters.delivered),
            dropped_slow: count(&self.counters.dropped_slow),
            listener_reconnects: count(&self.counters.listener_reconnects),
        }
    }

    /// Records `event` of `user` and hands it to the user's streams; a stream whose buffer
    /// is full is dropped.
    pub fn publish(&self, user: &str, event: Event) {
        let event = Arc::new(event);
        let now = Instant::now();
        let mut users = self.users();
        let state = users.entry(user.to_owned()).or_default();
        state.history.push_back((now, event.clone()));
        trim(&mut state.history, now);
        self.counters.published.fetch_add(1, Ordering::Relaxed);
        let before = state.streams.len();
        state.streams.retain(
            |(_, stream)| match stream.try_send(Frame::Event(event.clone())) {
                Ok(()) => {
                    self.counters.delivered.fetch_add(1, Ordering::Relaxed);
                    true
                }
                Err(mpsc::error::TrySendError::Full(_)) => {
                    self.counters.dropped_slow.fetch_add(1, Ordering::Relaxed);
                    tracing::info!("an event stream was dropped: its client stopped reading");
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            },
        );
        let gone = before - state.streams.len();
        if gone > 0 {
            self.open.fetch_sub(gone, Ordering::Relaxed);
        }
    }

    /// Opens a stream of `user`'s events, resuming after `last_event_id` when given.
    pub fn subscribe(
        self: &Arc<Self>,
        user: &str,
        last_event_id: Option<&str>,
    ) -> Result<Subscription, Refused> {
        let mut users = self.users();
        let state = users.entry(user.to_owned()).or_default();
        state.streams.retain(|(_, stream)| !stream.is_closed());
        if state.streams.len() >= self.max_per_user {
            return Err(Refused::TooManyForUser);
        }
        if self.open.load(Ordering::Relaxed) >= self.max_streams {
            return Err(Refused::TooManyStreams);
        }
        trim(&mut state.history, Instant::now());
        let resume = match last_event_id.map(str::trim) {
            None => Resume::Fresh,
            Some(last) => match last
                .parse::<i64>()
                .ok()
                .and_then(|id| state.history.iter().position(|(_, event)| event.id == id))
            {
                Some(at) => Resume::Replay(
                    state
                        .history
                        .iter()
                        .skip(at + 1)
                        .map(|(_, event)| event.clone())
                        .collect(),
                ),
                None => Resume::Reset,
            },
        };
        let (sender, receiver) = mpsc::channel(STREAM_BUFFER);
        let id = self.next_stream.fetch_add(1, Ordering::Relaxed);
        state.streams.push((id, sender));
        self.open.fetch_add(1, Ordering::Relaxed);
        Ok(Subscription {
            resume,
            receiver,
            _open: OpenStream {
                bus: self.clone(),
                user: user.to_owned(),
                id,
            },
        })
    }

    /// Changes may have been missed (the listener reconnected): every stream gets
    /// `reset`, and no history is offered for resuming, since it may have gaps.
    pub fn reset_all(&self) {
        let mut users = self.users();
        for state in users.values_mut() {
            state.history.clear();
            for (_, stream) in &state.streams {
                // A full buffer already means the stream will be dropped and reconnect.
                let _ = stream.try_send(Frame::Reset);
            }
        }
    }

    /// Forgets users with no open stream whose history has aged out.
    pub fn prune(&self) {
        self.prune_at(Instant::now());
    }

    fn prune_at(&self, now: Instant) {
        let mut users = self.users();
        users.retain(|_, state| {
            trim(&mut state.history, now);
            !state.streams.is_empty() || !state.history.is_empty()
        });
    }

    /// Users the bus holds anything for.
    pub fn users_held(&self) -> usize {
        self.users().len()
    }

    fn close(&self, user: &str, id: u64) {
        let mut users = self.users();
        if let Some(state) = users.get_mut(user) {
            let before = state.streams.len();
            state.streams.retain(|(stream, _)| *stream != id);
            if state.streams.len() < before {
                self.open.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }
}

/// Keeps the newest [`HISTORY_LEN`] events and drops older ones past [`HISTORY_AGE`].
fn trim(history: &mut VecDeque<(Instant, Arc<Event>)>, now: Instant) {
    while history.len() > HISTORY_LEN {
        history.pop_front();
    }
    while history
        .front()
        .is_some_and(|(at, _)| now.duration_since(*at) > HISTORY_AGE)
    {
        history.pop_front();
    }
}

/// An open stream: how it starts, and its frames.
pub struct Subscription {
    /// What to send right after `ready`.
    pub resume: Resume,
    /// Frames as they are published; closed when the stream is dropped as too slow.
    pub receiver: mpsc::Receiver<Frame>,
    _open: OpenStream,
}

/// Counts the stream as open until it is dropped.
struct OpenStream {
    bus: Arc<Bus>,
    user: String,
    id: u64,
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.bus.close(&self.user, self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: i64) -> Event {
        Event {
            id,
            name: "task.updated",
            data: format!("{{\"id\":{id}}}"),
        }
    }

    fn ids(resume: &Resume) -> Option<Vec<i64>> {
        match resume {
            Resume::Replay(events) => Some(events.iter().map(|e| e.id).collect()),
            _ => None,
        }
    }

    #[test]
    fn a_stream_gets_only_its_users_events_in_order() {
        let bus = Arc::new(Bus::new(4, 100));
        let mut alice = bus
            .subscribe("alice", None)
            .ok()
            .unwrap_or_else(|| panic!("open"));
        bus.publish("bob", event(1));
        bus.publish("alice", event(3));
        bus.publish("alice", event(2));
        let mut got = Vec::new();
        while let Ok(Frame::Event(e)) = alice.receiver.try_recv() {
            got.push(e.id);
        }
        assert_eq!(got, [3, 2], "commit order, not id order");
    }

    #[test]
    fn resuming_replays_what_came_after_or_resets() {
        let bus = Arc::new(Bus::new(4, 100));
        for id in [5, 9, 7, 8] {
            bus.publish("alice", event(id));
        }
        let resumed = |last: Option<&str>| {
            bus.subscribe("alice", last)
                .map(|s| match s.resume {
                    Resume::Fresh => "fresh".to_owned(),
                    Resume::Reset => "reset".to_owned(),
                    ref replay => format!("{:?}", ids(replay).unwrap_or_default()),
                })
                .unwrap_or_default()
        };
        assert_eq!(resumed(None), "fresh");
        assert_eq!(resumed(Some("9")), "[7, 8]");
        assert_eq!(resumed(Some("8")), "[]");
        for unknown in ["6", "100", "abc", "", "-1"] {
            assert_eq!(resumed(Some(unknown)), "reset", "{unknown}");
        }
        bus.reset_all();
        assert_eq!(resumed(Some("9")), "reset", "no history after a reset");
    }

    #[test]
    fn limits_are_per_user_and_per_instance_and_closing_frees_a_slot() {
        let bus = Arc::new(Bus::new(2, 3));
        let first = bus.subscribe("alice", None);
        let _second = bus.subscribe("alice", None);
        assert!(matches!(
            bus.subscribe("alice", None),
            Err(Refused::TooManyForUser)
        ));
        let _bob = bus.subscribe("bob", None);
        assert!(matches!(
            bus.subscribe("carol", None),
            Err(Refused::TooManyStreams)
        ));
        assert_eq!(bus.open_streams(), 3);
        drop(first);
        assert_eq!(bus.open_streams(), 2);
        assert!(bus.subscribe("alice", None).is_ok());
    }

    #[test]
    fn a_stream_that_stops_reading_is_dropped_and_others_keep_receiving() {
        let bus = Arc::new(Bus::new(4, 100));
        let slow = bus
            .subscribe("alice", None)
            .ok()
            .unwrap_or_else(|| panic!("open"));
        let mut fast = bus
            .subscribe("alice", None)
            .ok()
            .unwrap_or_else(|| panic!("open"));
        for id in 0..(STREAM_BUFFER as i64 * 2) {
            bus.publish("alice", event(id));
            while fast.receiver.try_recv().is_ok() {}
        }
        assert_eq!(bus.snapshot().dropped_slow, 1);
        assert_eq!(bus.open_streams(), 1);
        drop(slow);
        bus.publish("alice", event(1000));
        assert!(matches!(fast.receiver.try_recv(), Ok(Frame::Event(e)) if e.id == 1000));
    }

    #[test]
    fn history_is_bounded_and_idle_users_are_forgotten() {
        let bus = Arc::new(Bus::new(4, 100));
        for id in 0..1000 {
            bus.publish("alice", event(id));
        }
        let replay = bus.subscribe("alice", Some("872")).map(|s| ids(&s.resume));
        assert_eq!(
            replay.ok().flatten().map(|ids| ids.len()),
            Some(HISTORY_LEN - 1)
        );
        assert!(matches!(
            bus.subscribe("alice", Some("100")).map(|s| s.resume),
            Ok(Resume::Reset)
        ));
        for user in 0..10_000 {
            bus.publish(&format!("user-{user}"), event(1));
        }
        assert_eq!(bus.users_held(), 10_001);
        bus.prune();
        assert_eq!(bus.users_held(), 10_001, "recent history is kept");
        let _open = bus.subscribe("user-7", None);
        bus.prune_at(Instant::now() + HISTORY_AGE + Duration::from_secs(1));
        assert_eq!(
            bus.users_held(),
            1,
            "only the user with an open stream is kept"
        );
    }
}
#[cfg(test)]
mod async_tests {
    use super::*;

    #[tokio::test]
    async fn a_subscriber_receives_through_the_channel() {
        let bus = Arc::new(Bus::new(4, 100));
        let sub = bus
            .subscribe("alice", None)
            .ok()
            .unwrap_or_else(|| panic!("open"));
        let Subscription { mut receiver, .. } = sub;
        bus.publish(
            "alice",
            Event {
                id: 1,
                name: "task.created",
                data: "{}".into(),
            },
        );
        let got = tokio::time::timeout(Duration::from_secs(1), receiver.recv()).await;
        assert!(matches!(got, Ok(Some(Frame::Event(_)))), "{got:?}");
    }
}

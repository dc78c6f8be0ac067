//! The per-user event bus of one instance: the open streams of each user, each behind a
//! bounded buffer, and how far each user's events were handed out.
//!
//! Invariants: only the feed (`super::feed`) publishes, one user's events in id order with
//! none skipped, so every stream sees, from the moment it subscribed, every later event of
//! its user in order (subscribing and publishing take the same lock). The log is the
//! history: nothing here is kept for a user without an open stream. A stream whose buffer
//! is full is dropped (its client reconnects and resumes from the log), so a slow reader
//! never slows a writer or another stream.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{mpsc, Notify};

/// Frames a stream may have waiting before it is dropped as too slow.
pub const STREAM_BUFFER: usize = 64;

/// One task event, as every stream sends it.
#[derive(Debug, PartialEq, Eq)]
pub struct Event {
    /// The event id: per user, from the log, the same on every instance.
    pub id: i64,
    /// `task.created`, `task.updated` or `task.deleted`.
    pub name: &'static str,
    /// The JSON data.
    pub data: String,
}

/// What a stream receives: the events of its user that one read of the log found, in id
/// order. Handed over together, so that a stream writes them to its socket in one go
/// rather than waking (and writing) once per event while the feed is still publishing.
pub type Frame = Arc<[Event]>;

/// Why a stream could not be opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The user has `max_per_user` streams open here.
    TooManyForUser,
    /// This instance has `max_streams` streams open.
    TooManyStreams,
}

struct UserState {
    /// The last event id handed to this user's streams.
    after: i64,
    /// The highest id a wake-up said the log reached, when above `after`: the feed reads
    /// this user at once.
    wanted: i64,
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
    /// Reads of the log by the feed.
    pub(super) log_reads: AtomicU64,
    /// Wake-up notifications sent to other instances.
    pub(super) wake_ups_sent: AtomicU64,
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
    /// Reads of the log by the feed.
    pub log_reads: u64,
    /// Wake-up notifications sent to other instances.
    pub wake_ups_sent: u64,
}

/// The bus: managed state, shared by the route, the feed and the wake-ups.
pub struct Bus {
    users: Mutex<HashMap<String, UserState>>,
    max_per_user: usize,
    max_streams: usize,
    open: AtomicUsize,
    next_stream: AtomicU64,
    /// Wakes the feed: a user's log grew, or every user must be read.
    wake: Notify,
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
            wake: Notify::new(),
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
            log_reads: count(&self.counters.log_reads),
            wake_ups_sent: count(&self.counters.wake_ups_sent),
        }
    }

    /// Hands `events` of `user` (in id order) to the user's streams, but for those handed
    /// out already (the feed may read an event twice; a stream never gets it twice); a
    /// stream whose buffer is full is dropped.
    pub fn publish(&self, user: &str, events: Vec<Event>) {
        let mut users = self.users();
        let Some(state) = users.get_mut(user) else {
            return;
        };
        let after = state.after;
        let fresh: Frame = events.into_iter().filter(|e| e.id > after).collect();
        let Some(last) = fresh.last() else {
            return;
        };
        state.after = last.id;
        let count = u64::try_from(fresh.len()).unwrap_or(u64::MAX);
        self.counters.published.fetch_add(count, Ordering::Relaxed);
        let before = state.streams.len();
        state
            .streams
            .retain(|(_, stream)| match stream.try_send(fresh.clone()) {
                Ok(()) => {
                    self.counters.delivered.fetch_add(count, Ordering::Relaxed);
                    true
                }
                Err(mpsc::error::TrySendError::Full(_)) => {
                    self.counters.dropped_slow.fetch_add(1, Ordering::Relaxed);
                    tracing::info!("an event stream was dropped: its client stopped reading");
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            });
        let gone = before - state.streams.len();
        if gone > 0 {
            self.open.fetch_sub(gone, Ordering::Relaxed);
        }
        if state.streams.is_empty() {
            users.remove(user);
        }
    }

    /// Opens a stream of `user`'s events. `head` is the user's last event id as read from
    /// the log just before: a user new to this bus is handed events after it. Returns the
    /// stream, which knows the last id handed out so far (events up to it are the log's to
    /// replay).
    pub fn subscribe(self: &Arc<Self>, user: &str, head: i64) -> Result<Subscription, Refused> {
        let mut users = self.users();
        let known = users.get_mut(user).map(|state| {
            state.streams.retain(|(_, stream)| !stream.is_closed());
            state.streams.len()
        });
        if known.unwrap_or(0) >= self.max_per_user {
            return Err(Refused::TooManyForUser);
        }
        if self.open.load(Ordering::Relaxed) >= self.max_streams {
            return Err(Refused::TooManyStreams);
        }
        let state = users.entry(user.to_owned()).or_insert_with(|| UserState {
            after: head,
            wanted: head,
            streams: Vec::new(),
        });
        let (sender, receiver) = mpsc::channel(STREAM_BUFFER);
        let id = self.next_stream.fetch_add(1, Ordering::Relaxed);
        state.streams.push((id, sender));
        let joined_at = state.after;
        self.open.fetch_add(1, Ordering::Relaxed);
        Ok(Subscription {
            joined_at,
            receiver,
            _open: OpenStream {
                bus: self.clone(),
                user: user.to_owned(),
                id,
            },
        })
    }

    /// A wake-up said `user`'s log reached `last_id`: when this instance has streams of
    /// that user and has not handed that far out, the feed reads the user at once.
    pub fn announce(&self, user: &str, last_id: i64) {
        let mut users = self.users();
        if let Some(state) = users.get_mut(user) {
            if last_id > state.after && last_id > state.wanted {
                state.wanted = last_id;
                drop(users);
                self.wake.notify_one();
            }
        }
    }

    /// Every user's log may have grown (a wake-up without positions, or one missed): the
    /// feed reads all users at once.
    pub fn announce_all(&self) {
        {
            let mut users = self.users();
            for state in users.values_mut() {
                state.wanted = i64::MAX;
            }
        }
        self.wake.notify_one();
    }

    /// Until a wake-up.
    pub(super) async fn woken(&self) {
        self.wake.notified().await;
    }

    /// Where each user with an open stream was handed out to: all of them, or (`all`
    /// false) those a wake-up named. Their wake-ups count as answered from here: one that
    /// comes while the feed reads names the user again.
    pub(super) fn positions(&self, all: bool) -> Vec<(String, i64)> {
        self.users()
            .iter_mut()
            .filter(|(_, state)| all || state.wanted > state.after)
            .map(|(user, state)| {
                state.wanted = state.after;
                (user.clone(), state.after)
            })
            .collect()
    }

    /// Where `users` were handed out to (those still with a stream).
    pub(super) fn positions_of(&self, users: &[String]) -> Vec<(String, i64)> {
        let all = self.users();
        users
            .iter()
            .filter_map(|user| all.get(user).map(|state| (user.clone(), state.after)))
            .collect()
    }

    /// Users with an open stream.
    #[cfg(test)]
    fn users_held(&self) -> usize {
        self.users().len()
    }

    /// Ends every stream of `user` on this instance (the user was deleted): their senders
    /// go, so each stream sees its end and closes.
    pub fn end_user(&self, user: &str) {
        let mut users = self.users();
        if let Some(state) = users.remove(user) {
            self.open.fetch_sub(state.streams.len(), Ordering::Relaxed);
        }
    }

    fn close(&self, user: &str, id: u64) {
        let mut users = self.users();
        if let Some(state) = users.get_mut(user) {
            let before = state.streams.len();
            state.streams.retain(|(stream, _)| *stream != id);
            if state.streams.len() < before {
                self.open.fetch_sub(1, Ordering::Relaxed);
            }
            if state.streams.is_empty() {
                users.remove(user);
            }
        }
    }
}

/// An open stream: its frames as they are published.
pub struct Subscription {
    /// The last id handed out to the user's streams when this one joined: later events
    /// come through `receiver`, earlier ones are the log's to replay.
    pub joined_at: i64,
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

    fn open(bus: &Arc<Bus>, user: &str, head: i64) -> Subscription {
        bus.subscribe(user, head)
            .ok()
            .unwrap_or_else(|| panic!("open"))
    }

    fn received(subscription: &mut Subscription) -> Vec<i64> {
        let mut got = Vec::new();
        while let Ok(frame) = subscription.receiver.try_recv() {
            got.extend(frame.iter().map(|e| e.id));
        }
        got
    }

    #[test]
    fn a_stream_gets_only_its_users_events_once_and_in_order() {
        let bus = Arc::new(Bus::new(4, 100));
        let mut alice = open(&bus, "alice", 2);
        let mut bob = open(&bus, "bob", 0);
        bus.publish("bob", vec![event(1)]);
        bus.publish("alice", vec![event(2), event(3)]);
        bus.publish("alice", vec![event(3), event(4)]);
        assert_eq!(received(&mut alice), [3, 4], "after the head, each once");
        assert_eq!(bus.snapshot().published, 3);
        assert_eq!(received(&mut bob), [1]);
        bus.publish("carol", vec![event(1)]);
        assert_eq!(
            bus.users_held(),
            2,
            "nothing is kept for a user without a stream"
        );
    }

    #[test]
    fn wake_ups_name_the_users_the_feed_reads() {
        let bus = Arc::new(Bus::new(4, 100));
        let _alice = open(&bus, "alice", 5);
        let _bob = open(&bus, "bob", 7);
        assert!(bus.positions(false).is_empty());
        bus.announce("alice", 5);
        bus.announce("nobody", 9);
        assert!(bus.positions(false).is_empty(), "nothing new, or no stream");
        bus.announce("alice", 6);
        assert_eq!(bus.positions(false), [("alice".to_owned(), 5)]);
        assert!(
            bus.positions(false).is_empty(),
            "a wake-up is answered once"
        );
        bus.announce("alice", 7);
        assert_eq!(
            bus.positions(false).len(),
            1,
            "one during the read names the user again"
        );
        bus.publish("alice", vec![event(6)]);
        bus.announce("alice", 6);
        assert!(bus.positions(false).is_empty(), "handed out that far");
        let mut all = bus.positions(true);
        all.sort();
        assert_eq!(all, [("alice".to_owned(), 6), ("bob".to_owned(), 7)]);
        bus.announce_all();
        assert_eq!(bus.positions(false).len(), 2);
        assert!(bus.positions(false).is_empty());
        assert_eq!(
            bus.positions_of(&["bob".to_owned(), "nobody".to_owned()]),
            [("bob".to_owned(), 7)]
        );
    }

    #[test]
    fn limits_are_per_user_and_per_instance_and_closing_frees_a_slot() {
        let bus = Arc::new(Bus::new(2, 3));
        let first = bus.subscribe("alice", 0);
        let _second = bus.subscribe("alice", 0);
        assert!(matches!(
            bus.subscribe("alice", 0),
            Err(Refused::TooManyForUser)
        ));
        let _bob = bus.subscribe("bob", 0);
        assert!(matches!(
            bus.subscribe("carol", 0),
            Err(Refused::TooManyStreams)
        ));
        assert_eq!(bus.open_streams(), 3);
        drop(first);
        assert_eq!(bus.open_streams(), 2);
        assert!(bus.subscribe("alice", 0).is_ok());
    }

    #[test]
    fn a_stream_that_stops_reading_is_dropped_and_others_keep_receiving() {
        let bus = Arc::new(Bus::new(4, 100));
        let slow = open(&bus, "alice", 0);
        let mut fast = open(&bus, "alice", 0);
        for id in 1..=(STREAM_BUFFER as i64 * 2) {
            bus.publish("alice", vec![event(id)]);
            while fast.receiver.try_recv().is_ok() {}
        }
        assert_eq!(bus.snapshot().dropped_slow, 1);
        assert_eq!(bus.open_streams(), 1);
        drop(slow);
        bus.publish("alice", vec![event(1000)]);
        assert!(matches!(fast.receiver.try_recv(), Ok(f) if f[0].id == 1000));
    }

    #[test]
    fn one_reads_events_of_a_user_are_one_frame_however_many() {
        let bus = Arc::new(Bus::new(4, 100));
        let mut alice = open(&bus, "alice", 0);
        let many = STREAM_BUFFER as i64 * 3;
        bus.publish("alice", (1..=many).map(event).collect());
        let frame = alice
            .receiver
            .try_recv()
            .ok()
            .unwrap_or_else(|| panic!("a frame"));
        assert_eq!(frame.len(), STREAM_BUFFER * 3);
        assert!(alice.receiver.try_recv().is_err(), "one frame");
        assert_eq!(bus.snapshot().dropped_slow, 0);
        assert_eq!(bus.snapshot().delivered, u64::try_from(many).unwrap_or(0));
    }

    #[tokio::test]
    async fn a_subscriber_receives_through_the_channel() {
        let bus = Arc::new(Bus::new(4, 100));
        let Subscription {
            mut receiver,
            _open,
            ..
        } = open(&bus, "alice", 0);
        bus.publish("alice", vec![event(1)]);
        let got = tokio::time::timeout(std::time::Duration::from_secs(1), receiver.recv()).await;
        assert!(matches!(got, Ok(Some(_))), "{got:?}");
    }
}

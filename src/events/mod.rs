//! Live task events: `GET /api/<user_id>/events`, a `text/event-stream` of the user's task
//! changes, resumable with `Last-Event-ID`.
//!
//! Where events come from: the event log (`tasks::log`), written by every write in its own
//! transaction. One feed per instance reads it ([`feed`]) for the users with open streams
//! here and publishes to the [`Bus`]: when woken (this instance's writes, through a change
//! sink; other instances' writes, through a PostgreSQL notification, see [`listener`]) and
//! every `EVENTS_POLL_MS`. A stream resumes by reading the log itself, so it resumes on any
//! instance, after any restart.
//!
//! Invariants: a stream only ever carries its own user's events, each once, in id order;
//! a stream that stops reading is dropped rather than slowing anyone; on shutdown every
//! stream ends at once.

mod bus;
mod feed;
mod listener;

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rocket::fairing::AdHoc;
use rocket::http::Header;
use rocket::request::{FromRequest, Outcome, Request};
use rocket::response::stream::{Event as SseEvent, EventStream};
use rocket::response::{self, Responder};
use rocket::{Shutdown, State};

use crate::auth::{authorize, credential, session_recheck, AuthedUser, SessionRecheck};
use crate::db::{AppPool, Db};
use crate::error::{fail_guard, ApiError};
use crate::tasks::changes::{Appended, ChangeSink};
use crate::tasks::log::{self, LoggedEvent};
use crate::tasks::writer::Writer;

pub use bus::{Bus, BusSnapshot, Event, Frame, Refused, STREAM_BUFFER};

/// The event a stream sends for a logged one; `None` for a kind this version does not
/// know.
pub fn event_of(logged: LoggedEvent) -> Option<Event> {
    let name = match logged.kind.as_str() {
        "created" => "task.created",
        "updated" => "task.updated",
        "deleted" => "task.deleted",
        _ => return None,
    };
    Some(Event {
        id: logged.id,
        name,
        data: logged.data,
    })
}

/// Hears of this instance's writes: wakes the feed for the user at once, and (PostgreSQL)
/// queues a wake-up for the other instances.
struct WakeOnWrite {
    bus: Arc<Bus>,
    others: Option<Arc<listener::Wakes>>,
}

impl ChangeSink for WakeOnWrite {
    fn appended(&self, appended: &Appended) {
        // Without a position, any read of the user goes far enough.
        let last_id = appended.last_id.unwrap_or(i64::MAX);
        self.bus.announce(&appended.user_id, last_id);
        if let Some(others) = &self.others {
            others.push(&appended.user_id, last_id);
        }
    }
}

/// Where this instance's events come from, for `/health/ready`.
#[derive(Default)]
pub struct ListenerState(AtomicU8);

impl ListenerState {
    const IN_PROCESS: u8 = 0;
    const CONNECTING: u8 = 1;
    const LISTENING: u8 = 2;
    const DOWN: u8 = 3;
    const DEAF: u8 = 4;

    fn set(&self, state: u8) {
        self.0.store(state, Ordering::Relaxed);
    }

    fn heard(&self) {
        self.set(Self::LISTENING);
    }

    fn deaf(&self) {
        self.set(Self::DEAF);
    }

    fn down(&self) {
        self.set(Self::DOWN);
    }

    /// `in_process` (SQLite: one instance, woken by its own writes), or the PostgreSQL
    /// listener's state: `connecting`, `listening` (it hears its own probe), `deaf`
    /// (connected, but its probe never came back: a pooler that cannot `LISTEN`), or `down`
    /// (reconnecting). Events are delivered in every state, by polling at worst.
    pub fn name(&self) -> &'static str {
        match self.0.load(Ordering::Relaxed) {
            Self::IN_PROCESS => "in_process",
            Self::CONNECTING => "connecting",
            Self::LISTENING => "listening",
            Self::DEAF => "deaf",
            _ => "down",
        }
    }
}

/// The user of a stream: verified like every `/api/` route, from `Authorization`, Better
/// Auth's cookie (when on: `EventSource` with `withCredentials`) or, because a browser's
/// `EventSource` cannot set headers, from `?access_token=` (on this route only; the access
/// log never records a query string).
pub struct StreamUser(AuthedUser, Option<SessionRecheck>);

#[rocket::async_trait]
impl<'r> FromRequest<'r> for StreamUser {
    type Error = ApiError;

    async fn from_request(request: &'r Request<'_>) -> Outcome<Self, Self::Error> {
        let access_token = request
            .query_value::<&str>("access_token")
            .and_then(Result::ok)
            .map(str::trim)
            .filter(|token| !token.is_empty());
        let credential = credential(request, access_token);
        let recheck = credential
            .as_ref()
            .ok()
            .and_then(|credential| session_recheck(request, *credential));
        match authorize(request, credential).await {
            Ok(user) => Outcome::Success(Self(user, recheck)),
            Err(error) => fail_guard(request, error),
        }
    }
}

/// The `Last-Event-ID` header, if any.
pub struct LastEventId(Option<String>);

#[rocket::async_trait]
impl<'r> FromRequest<'r> for LastEventId {
    type Error = std::convert::Infallible;

    async fn from_request(request: &'r Request<'_>) -> Outcome<Self, Self::Error> {
        Outcome::Success(Self(
            request
                .headers()
                .get_one("Last-Event-ID")
                .map(str::to_owned),
        ))
    }
}

/// The stream's settings, managed as state.
struct StreamSettings {
    heartbeat: Duration,
}

/// Bytes a stream's body is read in.
const STREAM_CHUNK: usize = 1024;

/// An event stream answer: no caching, no proxy buffering.
pub struct Streamed<R>(R);

impl<'r, R: Responder<'r, 'r>> Responder<'r, 'r> for Streamed<R> {
    fn respond_to(self, request: &'r Request<'_>) -> response::Result<'r> {
        let mut response = self.0.respond_to(request)?;
        // Events are small and a stream stays open for hours: a small read buffer per
        // stream (Rocket's default is 4 KiB) keeps a thousand of them cheap.
        response.set_max_chunk_size(STREAM_CHUNK);
        response.set_header(Header::new("Cache-Control", "no-store"));
        response.set_header(Header::new("X-Accel-Buffering", "no"));
        response.remove_header("Expires");
        Ok(response)
    }
}

fn sse(event: &Event) -> SseEvent {
    SseEvent::data(event.data.clone())
        .event(event.name)
        .id(event.id.to_string())
}

fn reset() -> SseEvent {
    SseEvent::data("{}").event("reset")
}

/// Events a stream reads from the log at a time while it catches up.
const REPLAY_PAGE: i64 = 256;

/// Where a new stream starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Start {
    /// After this id: what the log holds after it is replayed first.
    After(i64),
    /// The client's id is not one the log can resume from: `reset`, then what comes next.
    Reset,
}

/// Where a stream asking to resume after `last` starts, the user's log being at `head`:
/// after `last` when it was issued (not above `head`); `reset` when malformed or never
/// issued. (Whether the events after it are still held is known once they are read.)
fn start(last: Option<&str>, head: i64) -> Start {
    match last.map(str::trim) {
        None => Start::After(head),
        Some(text) => match text.parse::<i64>() {
            Ok(id) if (0..=head).contains(&id) => Start::After(id),
            _ => Start::Reset,
        },
    }
}

/// `GET /api/<user_id>/events`: the user's task events as they commit.
#[utoipa::path(
    get,
    path = "/api/{user_id}/events",
    tag = "events",
    summary = "Live task events (Server-Sent Events)",
    operation_id = "taskEvents",
    description = "A `text/event-stream` of the user's task changes. It opens with \
        `retry: 3000` and `event: ready` (data `{}`); then `task.created` and `task.updated` \
        (data: a `Task`, as the REST answers carry it) and `task.deleted` (data: a `TaskDeleted`), \
        each with an `id:`: per user, increasing in commit order with none skipped, the same on \
        every instance. A heartbeat comment comes at least every 15 s. Reconnecting with \
        `Last-Event-ID` (what `EventSource` sends by itself) or `?last_event_id=` replays that \
        user's events after that id from the event log, right after `ready`, on any instance \
        and after any restart; when the id is older than `EVENTS_RETENTION` (default 24 h), \
        never issued or malformed, `event: reset` (data `{}`) comes there instead: refetch. \
        At most `EVENTS_MAX_PER_USER` streams per user (429 `too_many_streams`).",
    params(
        ("user_id" = String, Path, description = "The token's `sub`"),
        ("access_token" = Option<String>, Query, description = "The bearer token, for `EventSource`, which cannot send headers; accepted on this route only, never logged"),
        ("last_event_id" = Option<String>, Query, description = "Resume after this event id (the `Last-Event-ID` header wins)"),
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this event id"),
    ),
    responses(
        (status = 200, description = "The event stream", content_type = "text/event-stream", body = String,
            example = "retry: 3000\nevent: ready\ndata: {}\n\nevent: task.updated\nid: 42\ndata: {\"id\":7,\"title\":\"…\"}\n\n"),
        (status = 429, description = "`too_many_streams`: the user has `EVENTS_MAX_PER_USER` streams open (or `rate_limited`)", body = crate::error::ErrorBody),
        (status = 503, description = "The database cannot be reached", body = crate::error::ErrorBody),
    ),
    security(("bearer" = []))
)]
#[get("/<user_id>/events?<last_event_id>")]
#[allow(clippy::too_many_arguments)]
async fn events(
    user_id: &str,
    user: StreamUser,
    last_event_id: Option<&str>,
    header: LastEventId,
    db: &Db,
    bus: &State<Arc<Bus>>,
    settings: &State<StreamSettings>,
    mut shutdown: Shutdown,
) -> Result<Streamed<EventStream![SseEvent + 'static]>, ApiError> {
    // The path's user is the guard's to check; the stream is the verified user's.
    let _ = user_id;
    let StreamUser(user, recheck) = user;
    let user = user.id().to_owned();
    let db: AppPool = (**db).clone();
    let head = log::head(&db, &user).await.map_err(ApiError::from)?;
    let start = start(header.0.as_deref().or(last_event_id), head);
    let subscription = bus
        .subscribe(&user, head)
        .map_err(|refused| match refused {
            Refused::TooManyForUser => ApiError::TooManyStreams,
            Refused::TooManyStreams => ApiError::Overloaded,
        })?;
    let heartbeat = settings.heartbeat;
    let stream = EventStream! {
        // Bound whole, so the stream owns it all (a closure would capture only the fields
        // it names, and the rest, which keeps the stream counted as open, would drop now).
        let subscription = subscription;
        let bus::Subscription { mut receiver, joined_at, .. } = subscription;
        yield SseEvent::data("{}").event("ready").with_retry(Duration::from_secs(3));
        // The last id this stream sent (or, after a reset, the position it starts from).
        let mut sent = match start {
            Start::After(after) => after,
            Start::Reset => {
                yield reset();
                head
            }
        };
        // Replay from the log: everything after `sent` up to now. The bus hands this
        // stream what is published from now on; what both give is sent once. A new stream
        // whose user's events were handed out no further than its start needs no replay:
        // all it wants comes through the bus.
        let mut resuming = matches!(start, Start::After(after) if after < head);
        let mut replaying = resuming || joined_at > sent;
        while replaying {
            // Boxed: held inline, the query's state would enlarge every open stream for
            // as long as it stays open.
            let page = match Box::pin(log::after(&db, &user, sent, REPLAY_PAGE)).await {
                Ok(page) => page,
                Err(error) => {
                    tracing::warn!(%error, "an event stream could not read the log; it resets");
                    yield reset();
                    break;
                }
            };
            if resuming && page.first().is_none_or(|first| first.id != sent + 1) {
                // The events after the client's id were deleted by the retention.
                // The client refetches now, which covers everything up to `head`.
                yield reset();
                sent = head;
                break;
            }
            resuming = false;
            replaying = i64::try_from(page.len()).unwrap_or(i64::MAX) >= REPLAY_PAGE;
            for event in page.into_iter().filter_map(event_of) {
                sent = event.id;
                yield sse(&event);
            }
        }
        // A stream signed in by a Better Auth session asks again whether it stands, once a
        // heartbeat period: a sign-out or a deleted user ends it on every instance.
        let mut recheck_tick = rocket::tokio::time::interval_at(
            rocket::tokio::time::Instant::now() + heartbeat,
            heartbeat,
        );
        loop {
            let frame = rocket::tokio::select! {
                frame = receiver.recv() => frame,
                _ = &mut shutdown => None,
                _ = recheck_tick.tick(), if recheck.is_some() => {
                    let standing = match &recheck {
                        Some(recheck) => recheck.still_valid(&user).await,
                        None => true,
                    };
                    if standing {
                        continue;
                    }
                    tracing::info!("an event stream ended: its session is gone");
                    None
                }
            };
            // Dropped as too slow, or shutting down: end; the client reconnects.
            let Some(frame) = frame else { break };
            for event in frame.iter() {
                if event.id <= sent {
                    continue;
                }
                if event.id > sent + 1 {
                    // Published before this stream caught up to it: the log has what lies
                    // between.
                    match Box::pin(log::after(&db, &user, sent, event.id - sent - 1)).await {
                        Ok(between) => {
                            for missed in between.into_iter().filter_map(event_of) {
                                yield sse(&missed);
                            }
                        }
                        Err(error) => {
                            tracing::warn!(%error, "an event stream could not read the log; it resets");
                            yield reset();
                        }
                    }
                }
                sent = event.id;
                yield sse(event);
            }
        }
    };
    Ok(Streamed(stream.heartbeat(heartbeat)))
}

/// The data of a `task.deleted` event (`task.created` and `task.updated` carry a `Task`).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct TaskDeleted {
    /// The deleted task's id.
    #[schema(minimum = 1)]
    pub id: i64,
}

/// The OpenAPI description of the event stream.
#[derive(utoipa::OpenApi)]
#[openapi(paths(events), components(schemas(TaskDeleted)))]
pub struct EventsApi;

/// The events module: the bus, where it is fed from, the stream route, and the pruning
/// of idle users.
pub fn stage() -> AdHoc {
    // The pool's own fairing runs in the round of ignite hooks after the stages, so the
    // set-up waits for that round too.
    AdHoc::on_ignite("Events", |rocket| async {
        rocket.attach(AdHoc::try_on_ignite("Events set-up", set_up))
    })
}

async fn set_up(
    rocket: rocket::Rocket<rocket::Build>,
) -> Result<rocket::Rocket<rocket::Build>, rocket::Rocket<rocket::Build>> {
    let Some((config, database)) =
        crate::config::of(&rocket, "events").map(|c| (c.events.clone(), c.database.clone()))
    else {
        return Err(rocket);
    };
    let bus = Arc::new(Bus::new(config.max_per_user, config.max_streams));
    let state = Arc::new(ListenerState::default());
    let peers = Arc::new(listener::Peers::default());
    let Some(db) = rocket.state::<Db>().map(|db| (**db).clone()) else {
        // The database fairing failed and said why (or was never attached, and the launch
        // fails naming this stage).
        return Err(rocket);
    };
    let Some(writer) = rocket.state::<Arc<Writer>>() else {
        tracing::error!("the events stage needs tasks::stage() attached before it");
        return Err(rocket);
    };
    // PostgreSQL: the listener connects (and checks that it hears) before the service
    // serves, when it can within a few seconds; otherwise it keeps trying in the
    // background. Events flow either way: the feed polls.
    let mut postgres = None;
    let mut others = None;
    if let AppPool::Postgres(pool) = &db {
        state.set(ListenerState::CONNECTING);
        let options = match crate::db::postgres::direct_options(&database) {
            Ok(options) => options,
            Err(error) => {
                tracing::error!(%error, "the event listener has no usable URL");
                return Err(rocket);
            }
        };
        // LISTEN through a transaction-mode pooler hears nothing, and leaves the server
        // connection listening for whichever client the pooler hands it to next: the
        // listener is not started there at all (the feed polls).
        let pooled =
            tokio::time::timeout(Duration::from_secs(5), crate::db::postgres::probe(&options))
                .await;
        let listening = if matches!(pooled, Ok(Ok(true))) {
            state.deaf();
            listener::warn_deaf(config.poll);
            None
        } else {
            let listen_pool = listener::listen_pool(options);
            let first = tokio::time::timeout(Duration::from_secs(5), async {
                let mut listener = listener::connect(&listen_pool).await?;
                let (hears, probe) = listener::hears(&mut listener, pool, &peers).await?;
                Ok::<_, sqlx::Error>((listener, probe, hears))
            })
            .await;
            let first = match first {
                Ok(Ok((listener, probe, hears))) => {
                    if hears {
                        state.heard();
                    } else {
                        state.deaf();
                        listener::warn_deaf(config.poll);
                    }
                    Some((listener, probe))
                }
                Ok(Err(error)) => {
                    tracing::warn!(%error, "event listener cannot connect yet; retrying in the background");
                    None
                }
                Err(_) => None,
            };
            Some((listen_pool, first))
        };
        let wakes = Arc::new(listener::Wakes::default());
        others = Some(wakes.clone());
        postgres = Some((pool.clone(), listening, wakes));
    }
    writer.hooks().register(Arc::new(WakeOnWrite {
        bus: bus.clone(),
        others,
    }));
    let at_liftoff = std::sync::Mutex::new(postgres);
    let liftoff_bus = bus.clone();
    let liftoff_state = state.clone();
    let (poll, retention) = (config.poll, config.retention);
    Ok(rocket
        .manage(bus)
        .manage(state)
        .manage(StreamSettings {
            heartbeat: config.heartbeat,
        })
        .mount("/api", crate::telemetry::traced(routes![events]))
        .attach(AdHoc::on_liftoff("Event feed", move |rocket| {
            Box::pin(async move {
                let shutdown = rocket.shutdown();
                tokio::spawn(feed::run(
                    liftoff_bus.clone(),
                    db.clone(),
                    poll,
                    shutdown.clone(),
                ));
                tokio::spawn(keep_retention(db, retention, shutdown.clone()));
                let taken = at_liftoff.lock().ok().and_then(|mut p| p.take());
                if let Some((pool, listening, wakes)) = taken {
                    // Sent even without a listener here: other instances may hear them.
                    tokio::spawn(listener::send_wakes(
                        wakes,
                        peers.clone(),
                        liftoff_bus.clone(),
                        pool.clone(),
                        shutdown.clone(),
                    ));
                    let Some((listen_pool, first)) = listening else {
                        return;
                    };
                    tokio::spawn(listener::run(
                        liftoff_bus,
                        pool,
                        listen_pool,
                        first,
                        liftoff_state,
                        peers,
                        poll,
                        shutdown,
                    ));
                }
            })
        })))
}

/// Events deleted by one statement of the retention, and statements per round at most.
pub use crate::db::prune::{BATCH as PRUNE_BATCH, ROUNDS as PRUNE_ROUNDS};
/// How often the retention runs at most.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// Deletes events older than `retention`, in bounded rounds, at start and every minute
/// (every quarter of a shorter retention, at least every second), until shutdown. Several
/// instances may do so at once.
async fn keep_retention(db: AppPool, retention: Duration, shutdown: Shutdown) {
    let every = (retention / 4).clamp(Duration::from_secs(1), PRUNE_EVERY);
    crate::periodic::every(every, shutdown, || async {
        let deleted = prune_round(&db, retention).await;
        if deleted > 0 {
            tracing::debug!(events = deleted, "events past the retention deleted");
        }
    })
    .await;
}

/// One round of the retention (see [`crate::db::prune::round`]): returns how many events
/// older than `retention` went.
pub async fn prune_round(db: &AppPool, retention: Duration) -> u64 {
    crate::db::prune::round("events", |batch| log::prune(db, retention, batch)).await
}

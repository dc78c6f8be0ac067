//! Live task events: `GET /api/<user_id>/events`, a `text/event-stream` of the user's task
//! changes, resumable with `Last-Event-ID`.
//!
//! Where events come from: on SQLite, the tasks store's commit step (this module registers
//! a change sink); on PostgreSQL, the one listening connection of this instance, which
//! hears every instance's writes, its own included (the sink is not registered there, so
//! there is one delivery path). Either way events reach the [`Bus`] in commit order.
//!
//! Invariants: a stream only ever carries its own user's events; a stream that stops
//! reading is dropped rather than slowing anyone; on shutdown every stream ends at once.

mod bus;
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
use rocket_db_pools::Database as _;

use crate::auth::{authorize, bearer_token, AuthedUser};
use crate::db::{AppPool, Db};
use crate::error::{fail_guard, ApiError};
use crate::tasks::changes::{ChangeSink, Committed, TaskChange};
use crate::tasks::writer::Writer;

pub use bus::{
    Bus, BusSnapshot, Event, Frame, Refused, Resume, HISTORY_AGE, HISTORY_LEN, STREAM_BUFFER,
};

/// The event of a committed change, as streams send it.
pub fn event_of(committed: &Committed) -> Event {
    let (name, data) = match &committed.change {
        TaskChange::Created(task) => ("task.created", task_json(task)),
        TaskChange::Updated(task) => ("task.updated", task_json(task)),
        TaskChange::Deleted { id, .. } => (
            "task.deleted",
            serde_json::to_string(&TaskDeleted { id: *id }).unwrap_or_else(|_| "{}".to_owned()),
        ),
    };
    Event {
        id: committed.event_id,
        name,
        data,
    }
}

fn task_json(task: &crate::tasks::model::Task) -> String {
    // A task always serializes (strings, numbers, booleans); an empty object would only
    // stand for a bug, and the client refetches on what it cannot read.
    serde_json::to_string(task).unwrap_or_else(|_| "{}".to_owned())
}

/// Feeds the bus from the tasks store's commit step (SQLite: the bus is in-process).
struct StoreSink(Arc<Bus>);

impl ChangeSink for StoreSink {
    fn committed(&self, changes: &[Committed]) {
        for committed in changes {
            self.0
                .publish(committed.change.user_id(), event_of(committed));
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

    fn set(&self, state: u8) {
        self.0.store(state, Ordering::Relaxed);
    }

    fn listening(&self) {
        self.set(Self::LISTENING);
    }

    fn down(&self) {
        self.set(Self::DOWN);
    }

    /// `in_process` (SQLite), `connecting`, `listening` or `down` (reconnecting).
    pub fn name(&self) -> &'static str {
        match self.0.load(Ordering::Relaxed) {
            Self::IN_PROCESS => "in_process",
            Self::CONNECTING => "connecting",
            Self::LISTENING => "listening",
            _ => "down",
        }
    }
}

/// The user of a stream: verified like every `/api/` route, from `Authorization` or,
/// because a browser's `EventSource` cannot set headers, from `?access_token=` (on this
/// route only; the access log never records a query string).
pub struct StreamUser(AuthedUser);

#[rocket::async_trait]
impl<'r> FromRequest<'r> for StreamUser {
    type Error = ApiError;

    async fn from_request(request: &'r Request<'_>) -> Outcome<Self, Self::Error> {
        let header = request.headers().get_one("Authorization");
        let token = match (header, request.query_value::<&str>("access_token")) {
            (None, Some(Ok(token))) if !token.trim().is_empty() => Ok(token.trim()),
            _ => bearer_token(header),
        };
        match authorize(request, token).await {
            Ok(user) => Outcome::Success(Self(user)),
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
        each with an `id:` that is the same on every instance, in commit order. A heartbeat \
        comment comes at least every 15 s. Reconnecting with `Last-Event-ID` (what \
        `EventSource` sends by itself) or `?last_event_id=` replays the events missed since \
        that id, right after `ready`; when they are no longer held (the last 128 events of \
        the last 10 minutes are), `event: reset` (data `{}`) comes there instead: refetch. \
        `reset` also comes when the instance may have missed changes. At most \
        `EVENTS_MAX_PER_USER` streams per user (429 `too_many_streams`).",
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
    ),
    security(("bearer" = []))
)]
#[get("/<user_id>/events?<last_event_id>")]
async fn events(
    user_id: &str,
    user: StreamUser,
    last_event_id: Option<&str>,
    header: LastEventId,
    bus: &State<Arc<Bus>>,
    settings: &State<StreamSettings>,
    mut shutdown: Shutdown,
) -> Result<Streamed<EventStream![SseEvent + 'static]>, ApiError> {
    // The path's user is the guard's to check; the stream is the verified user's.
    let _ = user_id;
    let last = header.0.as_deref().or(last_event_id);
    let subscription = bus
        .subscribe(user.0.id(), last)
        .map_err(|refused| match refused {
            Refused::TooManyForUser => ApiError::TooManyStreams,
            Refused::TooManyStreams => ApiError::Overloaded,
        })?;
    let heartbeat = settings.heartbeat;
    let stream = EventStream! {
        // Bound whole, so the stream owns it all (a closure would capture only the fields
        // it names, and the rest, which keeps the stream counted as open, would drop now).
        let subscription = subscription;
        let bus::Subscription { resume, mut receiver, .. } = subscription;
        yield SseEvent::data("{}").event("ready").with_retry(Duration::from_secs(3));
        match resume {
            Resume::Fresh => {}
            Resume::Replay(missed) => {
                for event in &missed {
                    yield sse(event);
                }
            }
            Resume::Reset => yield reset(),
        }
        loop {
            let frame = rocket::tokio::select! {
                frame = receiver.recv() => frame,
                _ = &mut shutdown => None,
            };
            match frame {
                Some(Frame::Event(event)) => yield sse(&event),
                Some(Frame::Reset) => yield reset(),
                // Dropped as too slow, or shutting down: end; the client reconnects.
                None => break,
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
    {
        let Some(config) = crate::config::of(&rocket, "events").map(|c| c.events.clone()) else {
            return Err(rocket);
        };
        let bus = Arc::new(Bus::new(config.max_per_user, config.max_streams));
        let state = Arc::new(ListenerState::default());
        let backend = match Db::fetch(&rocket) {
            Some(db) => db.backend(),
            None => {
                tracing::error!("the events stage needs db::stage() attached before it");
                return Err(rocket);
            }
        };
        // PostgreSQL: the listener connects before the service serves, when it can within
        // a few seconds, so a stream opened right after start misses nothing; otherwise it
        // keeps trying in the background while the REST API serves.
        let mut postgres = None;
        if backend == crate::db::Backend::Sqlite {
            let Some(writer) = rocket.state::<Writer>() else {
                tracing::error!("the events stage needs tasks::stage() attached before it");
                return Err(rocket);
            };
            writer.hooks().register(Arc::new(StoreSink(bus.clone())));
        } else if let Some(AppPool::Postgres(pool)) = Db::fetch(&rocket).map(|db| (**db).clone()) {
            state.set(ListenerState::CONNECTING);
            let listen_pool = match listener::listen_pool(&pool, config.listen_url.as_ref()) {
                Ok(listen_pool) => listen_pool,
                Err(error) => {
                    tracing::error!(%error, "DATABASE_LISTEN_URL is not usable");
                    return Err(rocket);
                }
            };
            let first =
                tokio::time::timeout(Duration::from_secs(5), listener::connect(&listen_pool)).await;
            let first = match first {
                Ok(Ok(listener)) => {
                    state.listening();
                    Some(listener)
                }
                Ok(Err(error)) => {
                    tracing::warn!(%error, "event listener cannot connect yet; retrying in the background");
                    None
                }
                Err(_) => None,
            };
            postgres = Some((pool, listen_pool, first));
        }
        let postgres_at_liftoff = std::sync::Mutex::new(postgres);
        let liftoff_bus = bus.clone();
        let liftoff_state = state.clone();
        Ok(rocket
            .manage(bus)
            .manage(state)
            .manage(StreamSettings {
                heartbeat: config.heartbeat,
            })
            .mount("/api", crate::telemetry::traced(routes![events]))
            .attach(AdHoc::on_liftoff("Event listener", move |rocket| {
                Box::pin(async move {
                    let shutdown = rocket.shutdown();
                    tokio::spawn(prune(liftoff_bus.clone(), shutdown.clone()));
                    let taken = postgres_at_liftoff.lock().ok().and_then(|mut p| p.take());
                    if let Some((pool, listen_pool, first)) = taken {
                        tokio::spawn(listener::run(
                            liftoff_bus,
                            pool,
                            listen_pool,
                            first,
                            liftoff_state,
                            shutdown,
                        ));
                    }
                })
            })))
    }
}

/// Forgets idle users every half minute, until shutdown.
async fn prune(bus: Arc<Bus>, mut shutdown: Shutdown) {
    let mut tick = tokio::time::interval(Duration::from_secs(30));
    loop {
        tokio::select! {
            _ = tick.tick() => bus.prune(),
            _ = &mut shutdown => return,
        }
    }
}

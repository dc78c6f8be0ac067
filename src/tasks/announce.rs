//! PostgreSQL's event wire format, owned here alone: how a write statement announces its
//! events (`pg_notify` on [`CHANNEL`], with a large task's body in `task_event_bodies`),
//! how a notification is read back into a [`Committed`] change, and how old bodies are
//! pruned. The writer builds its statements with [`announced!`]; the events module listens
//! and calls [`decode`] and [`prune`], never touching the table itself.

use serde::Deserialize;
use sqlx::postgres::PgPool;

use super::changes::{Committed, TaskChange};
use super::model::Task;

/// The notification channel, as a literal for the statements' texts.
macro_rules! channel {
    () => {
        "task_events"
    };
}
pub(crate) use channel;

/// The channel every write announces its events on.
pub const CHANNEL: &str = channel!();

/// A task row as the API shows it, as JSON built by PostgreSQL: the same fields, names and
/// formats as `Task`'s serialization (timestamps with microseconds and `Z`).
macro_rules! task_json {
    () => {
        "json_build_object('id', id, 'user_id', user_id, 'title', title, \
         'description', description, 'completed', completed, \
         'priority', CASE priority WHEN 1 THEN 'low' WHEN 2 THEN 'medium' ELSE 'high' END, \
         'category', category, \
         'due_date', to_char(due_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), \
         'created_at', to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), \
         'updated_at', to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'))"
    };
}

/// PostgreSQL: `$write` (a `… RETURNING` statement) with its events drawn and announced
/// in the same statement. Each changed row gets an id from `task_event_ids` and one
/// notification on [`CHANNEL`], `{"e": id, "k": kind, "u": user, "id": task, "t": task}`; a
/// task too large for a notification (8,000 bytes) is stored in `task_event_bodies`
/// instead, and its notification leaves `t` out. The rows come back with the task's
/// columns and `event_id` (the event texts stay in the database).
macro_rules! announced {
    ($kind:literal, $write:expr) => {
        concat!(
            "WITH changed AS (",
            $write,
            "), ev AS (SELECT changed.*, nextval('task_event_ids') AS event_id, ",
            $crate::tasks::announce::task_json!(),
            " AS body FROM changed), \
             msg AS (SELECT ev.*, json_build_object('e', event_id, 'k', '",
            $kind,
            "', 'u', user_id, 'id', id, 't', body)::text AS full_msg FROM ev), \
             stored AS (INSERT INTO task_event_bodies (event_id, body) \
               SELECT event_id, body::text FROM msg WHERE octet_length(full_msg) > 7900) \
             SELECT ",
            $crate::tasks::sql::task_columns!(),
            ", event_id, pg_notify('",
            $crate::tasks::announce::channel!(),
            "', CASE WHEN octet_length(full_msg) > 7900 \
               THEN json_build_object('e', event_id, 'k', '",
            $kind,
            "', 'u', user_id, 'id', id)::text ELSE full_msg END) AS announced FROM msg"
        )
    };
}

/// [`announced!`] for deletes, whose events carry only the task id.
macro_rules! announced_deletes {
    ($write:expr) => {
        concat!(
            "WITH changed AS (",
            $write,
            "), ev AS (SELECT changed.*, nextval('task_event_ids') AS event_id FROM changed) \
             SELECT ev.*, pg_notify('",
            $crate::tasks::announce::channel!(),
            "', json_build_object('e', event_id, \
               'k', 'deleted', 'u', user_id, 'id', id)::text) AS announced FROM ev"
        )
    };
}

pub(crate) use {announced, announced_deletes, task_json};

/// One notification, as [`announced!`] builds it.
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
const PRUNE: &str =
    "DELETE FROM task_event_bodies WHERE created_at < now() - interval '10 minutes'";

/// Why a notification could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The payload or a stored body is not what [`announced!`] writes.
    #[error("unreadable event: {0}")]
    Format(#[from] serde_json::Error),
    /// The event's kind is not one a write announces.
    #[error("unknown event kind {0}")]
    Kind(String),
    /// A large task's body could not be read from the database.
    #[error("event body {event_id} unreadable: {source}")]
    Body {
        /// The event whose body was wanted.
        event_id: i64,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
}

/// Turns a notification's payload into the committed change it announces, reading a large
/// task's body from the table the write stored it in.
pub async fn decode(pool: &PgPool, payload: &str) -> Result<Committed, DecodeError> {
    let announced: Announced = serde_json::from_str(payload)?;
    let event_id = announced.e;
    let task = |task: Option<Task>| async move {
        match task {
            Some(task) => Ok::<_, DecodeError>(task),
            None => {
                let body: String = sqlx::query_scalar(BODY)
                    .bind(event_id)
                    .fetch_one(pool)
                    .await
                    .map_err(|source| DecodeError::Body { event_id, source })?;
                Ok(serde_json::from_str(&body)?)
            }
        }
    };
    let change = match announced.k.as_str() {
        "deleted" => TaskChange::Deleted {
            user_id: announced.u,
            id: announced.id,
        },
        "created" => TaskChange::Created(task(announced.t).await?),
        "updated" => TaskChange::Updated(task(announced.t).await?),
        other => return Err(DecodeError::Kind(other.to_owned())),
    };
    Ok(Committed { event_id, change })
}

/// Deletes the stored bodies of events old enough that no listener still needs them.
pub async fn prune(pool: &PgPool) -> Result<(), sqlx::Error> {
    sqlx::query(PRUNE).execute(pool).await.map(drop)
}

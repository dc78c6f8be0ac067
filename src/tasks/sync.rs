//! Incremental sync for offline clients: `GET /api/<user_id>/changes`. The cursor is an
//! event id of the user's log (the same numbers the event stream sends), so a full sync's
//! cursor matches its snapshot exactly, and a sync from a cursor is a range read of the log:
//! each task changed after it once, in the state of its last event there, and each deleted
//! one as a tombstone.

use std::collections::HashMap;

use rocket::serde::json::Json;
use rocket::{get, Route};
use serde::Serialize;
use serde_json::value::RawValue;

use crate::auth::AuthedUser;
use crate::db::{AppPool, Db};
use crate::error::{ApiError, ErrorBody};

use super::log::{self, LoggedEvent};
use super::model::Task;
use super::row::TaskRow;
use super::sql::task_columns;

/// Changes per page when `limit` is not given.
pub const DEFAULT_LIMIT: i64 = 500;
/// The largest `limit`.
pub const MAX_LIMIT: i64 = 1000;

/// One change: a task in its latest state, or a deleted task's id.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum Change {
    /// A task created or changed (in its state as of the page's cursor).
    Task {
        /// The task, exactly as the REST answers carry it.
        #[schema(value_type = Task)]
        task: Box<RawValue>,
    },
    /// A task deleted.
    Deleted {
        /// The deleted task's id.
        id: i64,
        /// Always `true`.
        deleted: bool,
    },
}

/// A page of changes and the cursor to continue from.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(example = json!({"changes": [{"task": {"id": 7, "user_id": "usr_8fJ2",
    "title": "Buy groceries", "description": null, "completed": false, "priority": "medium",
    "category": null, "due_date": null, "created_at": "2026-11-22T10:00:00.123456Z",
    "updated_at": "2026-11-22T10:00:00.123456Z"}}, {"id": 3, "deleted": true}],
    "cursor": 1042, "has_more": false}))]
pub struct Changes {
    /// Without `since`: every task. With it: what changed after it, each task once.
    pub changes: Vec<Change>,
    /// Where this answer leaves the client: pass it as `since` next, or as `Last-Event-ID`
    /// to the event stream.
    pub cursor: i64,
    /// More changes wait after `cursor`: ask again from it.
    pub has_more: bool,
}

#[derive(serde::Deserialize)]
struct Id {
    id: i64,
}

/// The task id an event is about (its data names it either way).
fn task_id(event: &LoggedEvent) -> Option<i64> {
    serde_json::from_str::<Id>(&event.data).ok().map(|t| t.id)
}

/// `events` (consecutive, oldest first) as changes: each task once, at its last event, in
/// the order of those last events.
fn fold(events: Vec<LoggedEvent>) -> Result<Vec<Change>, ApiError> {
    let mut last: HashMap<i64, usize> = HashMap::new();
    for (at, event) in events.iter().enumerate() {
        if let Some(id) = task_id(event) {
            last.insert(id, at);
        }
    }
    let mut changes = Vec::with_capacity(last.len());
    for (at, event) in events.into_iter().enumerate() {
        let Some(id) = task_id(&event) else { continue };
        if last.get(&id) != Some(&at) {
            continue;
        }
        changes.push(match event.kind.as_str() {
            "deleted" => Change::Deleted { id, deleted: true },
            _ => Change::Task {
                task: RawValue::from_string(event.data)
                    .map_err(|e| ApiError::Internal(e.into()))?,
            },
        });
    }
    Ok(changes)
}

const ALL_TASKS: &str = concat!(
    "SELECT ",
    task_columns!(),
    " FROM tasks WHERE user_id = $1 ORDER BY id"
);

/// Every task of the user and the log's head, read from one snapshot.
async fn snapshot(db: &AppPool, user: &str) -> Result<(Vec<Task>, i64), ApiError> {
    let (rows, head): (Vec<TaskRow>, i64) = match db {
        AppPool::Postgres(pool) => {
            // One snapshot for both reads: the head matches the tasks exactly.
            let mut tx = pool
                .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                .await?;
            let head = log::head_in(&mut tx, user).await?;
            let rows = sqlx::query_as(ALL_TASKS)
                .bind(user)
                .fetch_all(&mut *tx)
                .await?;
            tx.commit().await?;
            (rows, head)
        }
        AppPool::Sqlite(pool) => {
            // A read transaction in WAL mode sees one snapshot from its first read on.
            let mut tx = pool.begin().await?;
            let rows = sqlx::query_as(ALL_TASKS)
                .bind(user)
                .fetch_all(&mut *tx)
                .await?;
            let head = log::head_in_sqlite(&mut tx, user).await?;
            tx.commit().await?;
            (rows, head)
        }
    };
    let tasks = rows
        .into_iter()
        .map(Task::try_from)
        .collect::<Result<_, _>>()?;
    Ok((tasks, head))
}

/// The changes after `since`, at most `limit` events' worth.
async fn after(db: &AppPool, user: &str, since: i64, limit: i64) -> Result<Changes, ApiError> {
    let head = log::head(db, user).await?;
    if !(0..=head).contains(&since) {
        return Err(ApiError::CursorExpired);
    }
    if since == head {
        return Ok(Changes {
            changes: Vec::new(),
            cursor: since,
            has_more: false,
        });
    }
    let mut events = log::after(db, user, since, limit + 1).await?;
    // Ids are gapless per user: a first event that is not the next id means the ones
    // between were deleted by the retention.
    if events.first().is_none_or(|first| first.id != since + 1) {
        return Err(ApiError::CursorExpired);
    }
    let has_more = i64::try_from(events.len()).unwrap_or(i64::MAX) > limit;
    events.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    let cursor = events.last().map_or(since, |event| event.id);
    Ok(Changes {
        changes: fold(events)?,
        cursor,
        has_more,
    })
}

/// `GET /api/<user_id>/changes`: a full sync, or the changes after a cursor.
#[utoipa::path(
    get,
    path = "/api/{user_id}/changes",
    tag = "sync",
    summary = "Sync: every task, or what changed after a cursor",
    operation_id = "syncChanges",
    description = "Without `since`: every task of the user (each as `{\"task\": …}`) and the \
        `cursor` that matches that snapshot exactly. With `since`: what changed after it, each \
        changed task once in its latest state and each deleted one as `{\"id\": n, \"deleted\": \
        true}`, oldest change first, with the new `cursor` and `has_more` (then ask again from \
        the new cursor). A cursor is an event id of the user's log: pass it to the event stream \
        as `Last-Event-ID` to go on live with nothing missed. A cursor older than the log's \
        retention (`EVENTS_RETENTION`), or one never issued, is 410 `cursor_expired`: sync \
        from scratch.",
    params(
        ("user_id" = String, Path, description = "The token's `sub`"),
        ("since" = Option<i64>, Query, description = "The cursor of the last sync (or the last event id seen)"),
        ("limit" = Option<i64>, Query, description = "Events read per page with `since`, 1–1000 (default 500); a page holds at most that many changes"),
    ),
    responses(
        (status = 200, description = "The changes and the cursor", body = Changes),
        (status = 410, description = "The cursor cannot be continued: sync from scratch", body = ErrorBody),
        (status = 422, description = "`limit` is out of range", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[get("/<user_id>/changes?<since>&<limit>")]
#[tracing::instrument(name = "tasks.changes", level = "debug", skip_all, fields(user = %user_id))]
async fn changes(
    user_id: &str,
    user: AuthedUser,
    since: Option<&str>,
    limit: Option<&str>,
    db: &Db,
) -> Result<Json<Changes>, ApiError> {
    let limit = match limit {
        None => DEFAULT_LIMIT,
        Some(text) => super::query::whole_number_in(text.trim(), 1..=MAX_LIMIT)
            .map_err(|message| ApiError::field("limit", message))?,
    };
    let Some(since) = since else {
        let (tasks, cursor) = snapshot(db, user.id()).await?;
        let changes = tasks
            .iter()
            .map(|task| {
                serde_json::value::to_raw_value(task)
                    .map(|task| Change::Task { task })
                    .map_err(|e| ApiError::Internal(e.into()))
            })
            .collect::<Result<_, _>>()?;
        return Ok(Json(Changes {
            changes,
            cursor,
            has_more: false,
        }));
    };
    // Not a number: not a cursor this service issued.
    let since = since
        .trim()
        .parse::<i64>()
        .map_err(|_| ApiError::CursorExpired)?;
    Ok(Json(after(db, user.id(), since, limit).await?))
}

/// The sync routes, to be mounted under `/api`.
pub fn routes() -> Vec<Route> {
    rocket::routes![changes]
}

/// The sync part of the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(changes), components(schemas(Changes, Change)))]
pub struct SyncApi;

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: i64, kind: &str, task: i64) -> LoggedEvent {
        LoggedEvent {
            user_id: "u".into(),
            id,
            kind: kind.into(),
            data: format!("{{\"id\":{task},\"title\":\"t{id}\"}}"),
        }
    }

    #[test]
    fn each_task_once_at_its_last_event_in_that_order() -> Result<(), ApiError> {
        let changes = fold(vec![
            event(1, "created", 10),
            event(2, "created", 11),
            event(3, "updated", 10),
            event(4, "deleted", 11),
            event(5, "created", 12),
        ])?;
        let text = serde_json::to_string(&changes).map_err(|e| ApiError::Internal(e.into()))?;
        assert_eq!(
            text,
            r#"[{"task":{"id":10,"title":"t3"}},{"id":11,"deleted":true},{"task":{"id":12,"title":"t5"}}]"#
        );
        Ok(())
    }
}

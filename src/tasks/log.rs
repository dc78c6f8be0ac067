//! The event log's format, owned here alone: how a write appends its events (PostgreSQL: in
//! the write's own statement, [`logged_one!`]; SQLite: [`sqlite_logged!`] and [`APPEND_DELETES`], in the write's transaction),
//! how the log is read (one user's events after an id, or many users' at once), and how old
//! events are deleted. The writer appends; the events module reads through this file and
//! never touches the tables itself.
//!
//! Invariant: for each user, ids increase in commit order with no gap (a rolled-back write
//! gives its ids back), so reading `id > n` for a user never misses a later commit. On
//! PostgreSQL each user's ids come from the user's counter row, taken by the write and held
//! to its commit; on SQLite, which has one writer, from the log's own highest id of the
//! user (the retention keeps each user's newest event).

use std::time::Duration;

use crate::db::{on_pool, AppPool};

/// A task's JSON exactly as the API serializes it (`Task`'s field order and formats:
/// timestamps with microseconds and `Z`), built by PostgreSQL from the row `$row`.
/// `row_to_json` writes no spaces, as serde does.
macro_rules! task_json {
    ($row:literal) => {
        concat!(
            "(SELECT row_to_json(j)::text FROM (SELECT ",
            $row,
            ".id, ",
            $row,
            ".user_id, ",
            $row,
            ".title, ",
            $row,
            ".description, ",
            $row,
            ".completed, ",
            $row,
            ".completed AS is_completed, CASE ",
            $row,
            ".priority WHEN 1 THEN 'low' WHEN 2 THEN 'medium' ELSE 'high' END AS priority, ",
            $row,
            ".category, to_char(",
            $row,
            ".due_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') AS due_date, \
             to_char(",
            $row,
            ".created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') AS created_at, \
             to_char(",
            $row,
            ".updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') AS updated_at) j)"
        )
    };
}

/// PostgreSQL: the data of a `deleted` event of task id `$id`: `{"id":n}`.
macro_rules! deleted_json {
    ($id:literal) => {
        concat!(
            "(SELECT row_to_json(j)::text FROM (SELECT ",
            $id,
            " AS id) j)"
        )
    };
}

/// SQLite: the same.
macro_rules! sqlite_deleted_json {
    ($id:literal) => {
        concat!("json_object('id', ", $id, ")")
    };
}

/// PostgreSQL: `$write` (a `… RETURNING` statement of one user's tasks) with its events
/// appended in the same statement: the user's counter moves by the number of changed rows
/// (its row lock orders the user's writes), each row gets the next id, in task id order,
/// and one log row whose data is `$data` (an expression over the row `numbered`). The
/// rows come back with `event_id`.
macro_rules! logged_with {
    ($kind:literal, $write:expr, $returning:expr, $data:expr) => {
        concat!(
            "WITH changed AS (",
            $write,
            "), counted AS (INSERT INTO task_event_counters AS c (user_id, last_id) \
               SELECT user_id, (SELECT last_id FROM task_event_floor) + count(*) \
               FROM changed GROUP BY user_id \
               ON CONFLICT (user_id) DO UPDATE SET last_id = c.last_id + (SELECT count(*) FROM changed) \
               RETURNING user_id, last_id), \
             numbered AS (SELECT changed.*, \
               counted.last_id - count(*) OVER () + row_number() OVER (ORDER BY changed.id) AS event_id \
               FROM changed JOIN counted USING (user_id)), \
             appended AS (INSERT INTO task_events (user_id, id, kind, task_id, data) \
               SELECT user_id, event_id, '",
            $kind,
            "', id, ",
            $data,
            " FROM numbered) \
             SELECT ",
            $returning,
            ", event_id FROM numbered"
        )
    };
}

/// PostgreSQL: [`logged_with!`] for a write of at most one task (every write but the bulk
/// clear): the same, without the counting and numbering a write of many rows needs, which
/// PostgreSQL would otherwise plan and run for each write.
macro_rules! logged_one_with {
    ($kind:literal, $write:expr, $returning:expr, $data:expr) => {
        concat!(
            "WITH changed AS (",
            $write,
            "), numbered AS (INSERT INTO task_event_counters AS c (user_id, last_id) \
               SELECT user_id, (SELECT last_id FROM task_event_floor) + 1 FROM changed \
               ON CONFLICT (user_id) DO UPDATE SET last_id = c.last_id + 1 \
               RETURNING last_id AS event_id), \
             appended AS (INSERT INTO task_events (user_id, id, kind, task_id, data) \
               SELECT changed.user_id, numbered.event_id, '",
            $kind,
            "', changed.id, ",
            $data,
            " FROM changed, numbered) \
             SELECT ",
            $returning,
            ", numbered.event_id FROM changed, numbered"
        )
    };
}

/// [`logged_one_with!`] for a write that returns one task row (`created` or `updated`).
macro_rules! logged_one {
    ($kind:literal, $write:expr) => {
        $crate::tasks::log::logged_one_with!(
            $kind,
            $write,
            "changed.*",
            $crate::tasks::log::task_json!("changed")
        )
    };
}

/// [`logged_one_with!`] for deleting one task (`RETURNING id, user_id`).
macro_rules! logged_delete_one {
    ($write:expr) => {
        $crate::tasks::log::logged_one_with!(
            "deleted",
            $write,
            "changed.id, changed.user_id",
            $crate::tasks::log::deleted_json!("changed.id")
        )
    };
}

/// [`logged_with!`] for deletes (`RETURNING id, user_id`), whose data is `{"id":n}`.
macro_rules! logged_deletes {
    ($write:expr) => {
        $crate::tasks::log::logged_with!(
            "deleted",
            $write,
            "id, user_id",
            $crate::tasks::log::deleted_json!("numbered.id")
        )
    };
}

pub(crate) use {
    deleted_json, logged_delete_one, logged_deletes, logged_one, logged_one_with, logged_with,
    task_json,
};

/// SQLite: the UTC timestamp text in `$col` (as the driver stores it:
/// `2026-01-02T03:04:05.123456+00:00`, any number of fraction digits) as the API writes it,
/// with six fraction digits and `Z`.
macro_rules! sqlite_time {
    ($col:literal) => {
        concat!(
            "CASE WHEN ",
            $col,
            " IS NULL THEN NULL ELSE replace(substr(",
            $col,
            ", 1, 19), ' ', 'T') \
             || '.' || substr(CASE WHEN substr(",
            $col,
            ", 20, 1) = '.' THEN substr(substr(",
            $col,
            ", 21), 1, length(substr(",
            $col,
            ", 21)) - length(ltrim(substr(",
            $col,
            ", 21), '0123456789'))) ELSE '' END || '000000', 1, 6) || 'Z' END"
        )
    };
}

/// SQLite: the task row `t` as the API serializes it (`Task`'s field order and formats).
macro_rules! sqlite_task_json {
    () => {
        concat!(
            "json_object('id', t.id, 'user_id', t.user_id, 'title', t.title, \
             'description', t.description, \
             'completed', json(CASE WHEN t.completed THEN 'true' ELSE 'false' END), \
             'is_completed', json(CASE WHEN t.completed THEN 'true' ELSE 'false' END), \
             'priority', CASE t.priority WHEN 1 THEN 'low' WHEN 2 THEN 'medium' ELSE 'high' END, \
             'category', t.category, 'due_date', ",
            $crate::tasks::log::sqlite_time!("t.due_at"),
            ", 'created_at', ",
            $crate::tasks::log::sqlite_time!("t.created_at"),
            ", 'updated_at', ",
            $crate::tasks::log::sqlite_time!("t.updated_at"),
            ")"
        )
    };
}

/// SQLite: user `$user`'s next event id. One writer appends, so the log's own highest id
/// is the user's last (the retention keeps each user's newest event); a user with none
/// starts above the floor.
macro_rules! sqlite_next_id {
    ($user:literal) => {
        concat!(
            "COALESCE((SELECT max(id) FROM task_events WHERE user_id = ",
            $user,
            "), (SELECT last_id FROM task_event_floor WHERE id = 1)) + 1"
        )
    };
}

/// SQLite: a write of at most one task with its event appended and its commit, in one
/// round trip: the write (`… RETURNING`), then, when it changed a row (`changes()`), the
/// log row of task `$task` of user `$user`.
macro_rules! sqlite_logged {
    ($kind:literal, $write:expr, $user:literal, $task:literal) => {
        concat!(
            "BEGIN IMMEDIATE; ",
            $write,
            "; INSERT INTO task_events (user_id, id, kind, task_id, data, created_at) \
               SELECT t.user_id, ",
            $crate::tasks::log::sqlite_next_id!($user),
            ", '",
            $kind,
            "', t.id, ",
            $crate::tasks::log::sqlite_task_json!(),
            // The write's own time (its `updated_at`), rather than the column's default,
            // which SQLite would format anew for each write.
            ", t.updated_at FROM tasks t WHERE t.id = ",
            $task,
            " AND changes() > 0; COMMIT"
        )
    };
}

/// [`sqlite_logged!`] for deleting task `$1` of user `$2`; its data is `{"id":n}`.
macro_rules! sqlite_logged_delete {
    ($write:expr) => {
        concat!(
            "BEGIN IMMEDIATE; ",
            $write,
            "; INSERT INTO task_events (user_id, id, kind, task_id, data) \
               SELECT $2, ",
            $crate::tasks::log::sqlite_next_id!("$2"),
            ", 'deleted', $1, ",
            $crate::tasks::log::sqlite_deleted_json!("$1"),
            " WHERE changes() > 0; COMMIT"
        )
    };
}

pub(crate) use {
    sqlite_deleted_json, sqlite_logged, sqlite_logged_delete, sqlite_next_id, sqlite_task_json,
    sqlite_time,
};

/// SQLite: appends the events of a delete of many tasks (the bulk clear) and commits its
/// transaction (begun by the write): one `deleted` event of user `$1` for each task id in
/// the JSON array `$2`, in order. The user's new last id comes back. (SQLite reads a
/// statement's source rows before it inserts any when both are the same table, so the
/// next id is read once.)
pub(super) const APPEND_DELETES: &str = concat!(
    "INSERT INTO task_events (user_id, id, kind, task_id, data) \
      SELECT $1, ",
    sqlite_next_id!("$1"),
    " + e.key, 'deleted', e.value, ",
    sqlite_deleted_json!("e.value"),
    " FROM json_each($2) e; \
    SELECT max(id) FROM task_events WHERE user_id = $1; \
    COMMIT"
);

/// One event of the log.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct LoggedEvent {
    /// Whose task changed.
    pub user_id: String,
    /// The event's id: per user, gapless, in commit order.
    pub id: i64,
    /// `created`, `updated` or `deleted`.
    pub kind: String,
    /// The event's JSON data, as a stream sends it.
    pub data: String,
}

/// PostgreSQL: the user's last event id (the position of "now"): their counter, or, for a
/// user who never wrote, the floor every user's first id is above.
const HEAD_POSTGRES: &str = "SELECT COALESCE(\
    (SELECT last_id FROM task_event_counters WHERE user_id = $1), \
    (SELECT last_id FROM task_event_floor WHERE id = 1))";

/// SQLite: the same, from the log itself (see [`sqlite_next_id!`]).
const HEAD_SQLITE: &str = concat!("SELECT ", sqlite_next_id!("$1"), " - 1");

const AFTER: &str = "SELECT user_id, id, kind, data FROM task_events \
    WHERE user_id = $1 AND id > $2 ORDER BY id LIMIT $3";

/// PostgreSQL: every listed user's events after their position, at most `$3` each, one
/// index range per user.
const AFTER_MANY_POSTGRES: &str = "SELECT e.user_id, e.id, e.kind, e.data \
    FROM unnest($1::text[], $2::int8[]) AS w(user_id, after) \
    CROSS JOIN LATERAL (SELECT user_id, id, kind, data FROM task_events \
      WHERE user_id = w.user_id AND id > w.after ORDER BY id LIMIT $3) e \
    ORDER BY e.user_id, e.id";

/// SQLite: every listed user's events after their position (`$1`: `[[user, after], …]`),
/// at most `$2` in all, each user's in order.
const AFTER_MANY_SQLITE: &str = "SELECT e.user_id, e.id, e.kind, e.data \
    FROM json_each($1) w JOIN task_events e \
      ON e.user_id = json_extract(w.value, '$[0]') AND e.id > json_extract(w.value, '$[1]') \
    ORDER BY e.user_id, e.id LIMIT $2";

/// PostgreSQL: up to `$2` events older than `$1` seconds (found through the BRIN index),
/// skipping rows another instance is deleting.
const PRUNE_POSTGRES: &str = "DELETE FROM task_events WHERE ctid = ANY(ARRAY(\
    SELECT ctid FROM task_events WHERE created_at < now() - make_interval(secs => $1) \
    LIMIT $2 FOR UPDATE SKIP LOCKED))";

/// SQLite: those of the oldest `$2` events (by rowid: the one writer appends in time
/// order) that are older than `$1` seconds, except each user's newest (the user's last
/// id, see [`sqlite_next_id!`]).
const PRUNE_SQLITE: &str = "DELETE FROM task_events WHERE rowid IN (\
    SELECT rowid FROM task_events ORDER BY rowid LIMIT $2) \
    AND created_at < strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-' || $1 || ' seconds') \
    AND id < (SELECT max(id) FROM task_events newest WHERE newest.user_id = task_events.user_id)";

/// The user's last event id: events after it are yet to come.
pub async fn head(db: &AppPool, user: &str) -> Result<i64, sqlx::Error> {
    let head = match db {
        AppPool::Postgres(_) => HEAD_POSTGRES,
        AppPool::Sqlite(_) => HEAD_SQLITE,
    };
    on_pool!(db, |p| sqlx::query_scalar(head)
        .bind(user)
        .fetch_one(p)
        .await)
}

/// [`head`] on a PostgreSQL connection (inside a transaction whose snapshot it shares).
pub async fn head_in(conn: &mut sqlx::PgConnection, user: &str) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(HEAD_POSTGRES)
        .bind(user)
        .fetch_one(conn)
        .await
}

/// [`head`] on a SQLite connection (inside a transaction whose snapshot it shares).
pub async fn head_in_sqlite(
    conn: &mut sqlx::SqliteConnection,
    user: &str,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(HEAD_SQLITE)
        .bind(user)
        .fetch_one(conn)
        .await
}

/// The user's events after `after`, oldest first, at most `limit`.
pub async fn after(
    db: &AppPool,
    user: &str,
    after: i64,
    limit: i64,
) -> Result<Vec<LoggedEvent>, sqlx::Error> {
    on_pool!(db, |p| sqlx::query_as(AFTER)
        .bind(user)
        .bind(after)
        .bind(limit)
        .fetch_all(p)
        .await)
}

/// Each listed user's events after their position, in each user's order: one query,
/// whatever the number of users. At most `limit` events per user on PostgreSQL, and in all
/// on SQLite; either way each user's part is a prefix of what is there, so reading again
/// from the new positions continues it.
pub async fn after_many(
    db: &AppPool,
    positions: &[(String, i64)],
    limit: i64,
) -> Result<Vec<LoggedEvent>, sqlx::Error> {
    if positions.is_empty() {
        return Ok(Vec::new());
    }
    match db {
        AppPool::Postgres(p) => {
            let (users, afters): (Vec<&str>, Vec<i64>) = positions
                .iter()
                .map(|(user, after)| (user.as_str(), *after))
                .unzip();
            sqlx::query_as(AFTER_MANY_POSTGRES)
                .bind(users)
                .bind(afters)
                .bind(limit)
                .fetch_all(p)
                .await
        }
        AppPool::Sqlite(p) => {
            let listed = serde_json::to_string(positions)
                .map_err(|error| sqlx::Error::Encode(Box::new(error)))?;
            sqlx::query_as(AFTER_MANY_SQLITE)
                .bind(listed)
                .bind(limit)
                .fetch_all(p)
                .await
        }
    }
}

/// Deletes up to `batch` events older than `retention`, oldest first; returns how many
/// went. Takes no lock beyond the rows it deletes (on PostgreSQL it skips rows another
/// instance is deleting), so instances may prune at once.
pub async fn prune(db: &AppPool, retention: Duration, batch: i64) -> Result<u64, sqlx::Error> {
    match db {
        AppPool::Postgres(p) => sqlx::query(PRUNE_POSTGRES)
            .bind(retention.as_secs_f64())
            .bind(batch)
            .execute(p)
            .await
            .map(|done| done.rows_affected()),
        AppPool::Sqlite(p) => sqlx::query(PRUNE_SQLITE)
            .bind(retention.as_secs_f64())
            .bind(batch)
            .execute(p)
            .await
            .map(|done| done.rows_affected()),
    }
}

//! Task SQL: one statement text per operation, run on either backend through `on_pool!`.
//!
//! Invariant: every statement filters by the verified user's id, so another user's task is
//! indistinguishable from a missing one. Every write is one statement (atomic by itself),
//! moves `updated_at` and `version`, and ends in [`commit`], the one place that runs a
//! write, draws its event ids, and hands what changed ([`TaskChange`]) to the registered
//! sinks once it committed: no write can bypass it.
//!
//! On PostgreSQL each write statement also announces its events (`pg_notify`, see
//! `announced!`), so a notification exists exactly when the write committed.
//! (The start-up fill of the search columns, in `search`, changes no task field a client
//! sees, so it is not a change.)

use chrono::{DateTime, Utc};
use sqlx::sqlite::{SqliteConnection, SqliteRow};
use sqlx::{ConnectOptions as _, Connection as _};

use crate::auth::AuthedUser;
use crate::db::AppPool;
use crate::error::ApiError;
use crate::on_pool;
use crate::time::now;

pub use super::changes::TaskChange;
use super::changes::{ChangeHooks, Committed, EventIdBlock, SqliteWriter};
use super::etag::Precondition;
use super::model::{NewTask, Priority, Task, TaskChanges, TaskId};
use super::query::{Arg, ListQuery, ListStatement};
use super::search::fold;

const GET: &str = concat!(
    "SELECT ",
    task_columns!(),
    " FROM tasks WHERE id = $1 AND user_id = $2"
);

macro_rules! insert {
    () => {
        concat!(
            "INSERT INTO tasks (user_id, title, description, completed, priority, category, \
             due_at, created_at, updated_at, search_title, search_description) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING ",
            task_columns!()
        )
    };
}

/// `AND` the stored version is one of the comma-separated list bound at `$n`, or the
/// list is NULL (any version). Plain SQL that both dialects run the same way.
macro_rules! version_in {
    ($n:literal) => {
        concat!(
            " AND ($",
            $n,
            " IS NULL OR (',' || $",
            $n,
            " || ',') LIKE ('%,' || CAST(version AS TEXT) || ',%'))"
        )
    };
}

// `CASE WHEN $flag THEN $value ELSE column END` tells "keep" from "set to null".
macro_rules! update {
    () => {
        concat!(
            "UPDATE tasks SET title = COALESCE($3, title), \
     description = CASE WHEN $4 THEN $5 ELSE description END, \
     completed = COALESCE($6, completed), \
     priority = COALESCE($7, priority), \
     category = CASE WHEN $8 THEN $9 ELSE category END, \
     due_at = CASE WHEN $10 THEN $11 ELSE due_at END, \
     search_title = COALESCE($13, search_title), \
     search_description = CASE WHEN $4 THEN $14 ELSE search_description END, \
     updated_at = $12, version = version + 1 \
     WHERE id = $1 AND user_id = $2",
            version_in!(15),
            " RETURNING ",
            task_columns!()
        )
    };
}

// One statement: the row lock makes concurrent toggles apply one after the other.
macro_rules! set_completed {
    () => {
        concat!(
            "UPDATE tasks SET completed = COALESCE($3, NOT completed), updated_at = $4, \
     version = version + 1 WHERE id = $1 AND user_id = $2",
            version_in!(5),
            " RETURNING ",
            task_columns!()
        )
    };
}

macro_rules! delete {
    () => {
        concat!(
            "DELETE FROM tasks WHERE id = $1 AND user_id = $2",
            version_in!(3),
            " RETURNING id, user_id"
        )
    };
}

macro_rules! delete_completed {
    () => {
        "DELETE FROM tasks WHERE user_id = $1 AND completed = TRUE RETURNING id, user_id"
    };
}

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
/// `pg_notify('task_events', {"e": id, "k": kind, "u": user, "id": task, "t": task})`; a
/// task too large for a notification (8,000 bytes) is stored in `task_event_bodies`
/// instead, and its notification leaves `t` out. The rows come back with the task's
/// columns and `event_id` (the event texts stay in the database).
macro_rules! announced {
    ($kind:literal, $write:expr) => {
        concat!(
            "WITH changed AS (",
            $write,
            "), ev AS (SELECT changed.*, nextval('task_event_ids') AS event_id, ",
            task_json!(),
            " AS body FROM changed), \
             msg AS (SELECT ev.*, json_build_object('e', event_id, 'k', '",
            $kind,
            "', 'u', user_id, 'id', id, 't', body)::text AS full_msg FROM ev), \
             stored AS (INSERT INTO task_event_bodies (event_id, body) \
               SELECT event_id, body::text FROM msg WHERE octet_length(full_msg) > 7900) \
             SELECT ",
            task_columns!(),
            ", event_id, pg_notify('task_events', CASE WHEN octet_length(full_msg) > 7900 \
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
             SELECT ev.*, pg_notify('task_events', json_build_object('e', event_id, \
               'k', 'deleted', 'u', user_id, 'id', id)::text) AS announced FROM ev"
        )
    };
}

/// SQLite: a single-row write and its commit as one round trip to the connection's thread
/// (a transaction of its own, so a failed commit is an error, not a lost write).
macro_rules! one_trip {
    ($write:expr) => {
        concat!("BEGIN IMMEDIATE; ", $write, "; COMMIT")
    };
}

/// SQLite: event ids drawn per statement; see [`EventIdBlock`].
const EVENT_ID_BLOCK: i64 = 256;

/// SQLite: draws `$1` event ids in the write's transaction; the last one comes back.
macro_rules! draw_event_ids {
    () => {
        "UPDATE task_event_seq SET last_id = last_id + $1 WHERE id = 1 RETURNING last_id"
    };
}
const DRAW_EVENT_IDS: &str = draw_event_ids!();
const DRAW_EVENT_IDS_ONE_TRIP: &str = one_trip!(draw_event_ids!());

const EXISTS: &str = "SELECT COUNT(*) FROM tasks WHERE id = $1 AND user_id = $2";

/// The SQL form of a precondition (see `version_in!`): NULL for any version, else the
/// versions comma-separated; an empty text matches no version.
fn versions_arg(precondition: &Precondition) -> Arg {
    match precondition {
        Precondition::Any => Arg::OptText(None),
        Precondition::Versions(versions) => Arg::OptText(Some(
            versions
                .iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(","),
        )),
    }
}

/// A task's columns, read by position: [`task_columns!`] come first, in that order, in every
/// statement that returns tasks. Read by name, each field of a page cost a hash lookup.
struct TaskRow {
    id: i64,
    user_id: String,
    title: String,
    description: Option<String>,
    completed: bool,
    priority: i16,
    category: Option<String>,
    due_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    version: i64,
}

/// The number of columns [`TaskRow`] reads; a statement's own columns follow them.
const TASK_COLUMNS: usize = 11;

impl<'r, R> sqlx::FromRow<'r, R> for TaskRow
where
    R: sqlx::Row,
    usize: sqlx::ColumnIndex<R>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i16: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    bool: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    DateTime<Utc>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    fn from_row(row: &'r R) -> Result<Self, sqlx::Error> {
        Ok(Self {
            id: row.try_get(0)?,
            user_id: row.try_get(1)?,
            title: row.try_get(2)?,
            description: row.try_get(3)?,
            completed: row.try_get(4)?,
            priority: row.try_get(5)?,
            category: row.try_get(6)?,
            due_at: row.try_get(7)?,
            created_at: row.try_get(8)?,
            updated_at: row.try_get(9)?,
            version: row.try_get(10)?,
        })
    }
}

impl TryFrom<TaskRow> for Task {
    type Error = ApiError;

    fn try_from(row: TaskRow) -> Result<Self, ApiError> {
        let priority = Priority::from_rank(row.priority).ok_or_else(|| {
            ApiError::Internal(anyhow::anyhow!(
                "task {} has an unknown priority rank {}",
                row.id,
                row.priority
            ))
        })?;
        Ok(Task {
            id: row.id,
            user_id: row.user_id,
            title: row.title,
            description: row.description,
            completed: row.completed,
            priority,
            category: row.category,
            due_at: row.due_at,
            created_at: row.created_at,
            updated_at: row.updated_at,
            version: row.version,
        })
    }
}

/// Binds arguments ([`Arg`]) in order to a query of either backend; exported for the plan
/// tests, which run the very statements [`ListStatement`] makes.
#[macro_export]
macro_rules! bind_args {
    ($query:expr, $args:expr) => {{
        let mut query = $query;
        for arg in $args {
            query = match arg {
                $crate::tasks::query::Arg::Text(v) => query.bind(v.clone()),
                $crate::tasks::query::Arg::Bool(v) => query.bind(*v),
                $crate::tasks::query::Arg::Small(v) => query.bind(*v),
                $crate::tasks::query::Arg::Int(v) => query.bind(*v),
                $crate::tasks::query::Arg::Time(v) => query.bind(*v),
                $crate::tasks::query::Arg::OptText(v) => query.bind(v.clone()),
                $crate::tasks::query::Arg::OptBool(v) => query.bind(*v),
                $crate::tasks::query::Arg::OptSmall(v) => query.bind(*v),
                $crate::tasks::query::Arg::OptTime(v) => query.bind(*v),
            };
        }
        query
    }};
}

struct ListRow {
    task: TaskRow,
    total_count: i64,
}

impl<'r, R> sqlx::FromRow<'r, R> for ListRow
where
    R: sqlx::Row,
    TaskRow: sqlx::FromRow<'r, R>,
    usize: sqlx::ColumnIndex<R>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    fn from_row(row: &'r R) -> Result<Self, sqlx::Error> {
        Ok(Self {
            task: TaskRow::from_row(row)?,
            total_count: row.try_get(TASK_COLUMNS)?,
        })
    }
}

/// One page of a list and the number of tasks matching its filters.
#[derive(Debug)]
pub struct Page {
    /// The tasks of this page.
    pub tasks: Vec<Task>,
    /// Tasks matching the filters, on every page.
    pub total: i64,
}

/// A page of the user's tasks matching `query`: one statement, the total counted by an
/// uncorrelated subquery (run once, and from an index alone where one fits) beside the
/// page's rows, which the matching index yields already in order.
#[tracing::instrument(level = "debug", skip_all, fields(user = %user.id()))]
pub async fn list(db: &AppPool, user: &AuthedUser, query: &ListQuery) -> Result<Page, ApiError> {
    let statement = ListStatement::new(query, now());
    let rows: Vec<ListRow> = on_pool!(db, |p| crate::bind_args!(
        sqlx::query_as(&statement.sql).bind(user.id()),
        &statement.args
    )
    .fetch_all(p)
    .await)?;
    let total = match rows.first() {
        Some(row) => row.total_count,
        None if query.offset > 0 => {
            let count_sql = statement.count_sql();
            on_pool!(db, |p| crate::bind_args!(
                sqlx::query_scalar::<_, i64>(&count_sql).bind(user.id()),
                &statement.args[..statement.filter_args]
            )
            .fetch_one(p)
            .await)?
        }
        None => 0,
    };
    let tasks = rows
        .into_iter()
        .map(|row| Task::try_from(row.task))
        .collect::<Result<_, _>>()?;
    Ok(Page { tasks, total })
}

/// One task of the user, or `None` (also when it belongs to someone else).
#[tracing::instrument(level = "debug", skip_all, fields(user = %user.id(), id = id.get()))]
pub async fn get(db: &AppPool, user: &AuthedUser, id: TaskId) -> Result<Option<Task>, ApiError> {
    let row: Option<TaskRow> = on_pool!(db, |p| sqlx::query_as(GET)
        .bind(id.get())
        .bind(user.id())
        .fetch_optional(p)
        .await)?;
    row.map(Task::try_from).transpose()
}

/// One write: its statement (per dialect), its arguments, and what its rows mean.
struct Write {
    sqlite: SqliteWrite,
    postgres: &'static str,
    args: Vec<Arg>,
    kind: WriteKind,
}

/// How SQLite runs a write.
#[derive(Clone, Copy)]
enum SqliteWrite {
    /// A write of at most one row, in [`one_trip!`] form: with its commit, in one round trip.
    OneTrip(&'static str),
    /// A write of any number of rows, run in a transaction.
    InTransaction(&'static str),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum WriteKind {
    /// Returns the created task rows.
    Create,
    /// Returns the updated task rows.
    Update,
    /// Returns `id, user_id` of the deleted rows.
    Delete,
}

#[derive(sqlx::FromRow)]
struct DeletedRow {
    id: i64,
    user_id: String,
}

/// A row of a PostgreSQL write, with the id of the event announced for it.
#[derive(sqlx::FromRow)]
struct AnnouncedRow<T> {
    #[sqlx(flatten)]
    row: T,
    event_id: i64,
}

impl WriteKind {
    fn task_change(self, task: Task) -> TaskChange {
        match self {
            Self::Create => TaskChange::Created(task),
            _ => TaskChange::Updated(task),
        }
    }
}

/// The changes of a write's returned task rows.
fn task_changes(kind: WriteKind, rows: Vec<TaskRow>) -> Result<Vec<TaskChange>, ApiError> {
    rows.into_iter()
        .map(|row| Task::try_from(row).map(|task| kind.task_change(task)))
        .collect()
}

fn deleted(row: DeletedRow) -> TaskChange {
    TaskChange::Deleted {
        user_id: row.user_id,
        id: row.id,
    }
}

/// The commit step of every write: runs it, draws its event ids in it, and hands what
/// changed to the sinks once it committed; returns the changes in statement order.
///
/// SQLite takes event ids from the block drawn ahead and tells the sinks before the next
/// write may commit, so they hear of changes in commit order. A single-row write runs with
/// its commit as one round trip (its id is drawn beforehand, when the block is used up); a
/// write of many rows runs in a transaction that draws the next block when it needs one.
/// PostgreSQL runs one statement that also announces the events (one round trip).
async fn commit(
    db: &AppPool,
    hooks: &ChangeHooks,
    write: Write,
) -> Result<Vec<TaskChange>, ApiError> {
    let committed = match db {
        AppPool::Sqlite(p) => {
            let mut writer = hooks.sqlite_writer.lock().await;
            let SqliteWriter { conn, ids } = &mut *writer;
            // Taken out while in use: if this future were dropped mid-write, the
            // connection (and any transaction it left open) is closed with it.
            let mut taken = match conn.take() {
                Some(open) => open,
                None => p.connect_options().connect().await?,
            };
            let outcome = match write.sqlite {
                SqliteWrite::OneTrip(sql) => sqlite_single(&mut taken, ids, &write, sql).await,
                SqliteWrite::InTransaction(sql) => sqlite_many(&mut taken, ids, &write, sql).await,
            };
            let committed = match outcome {
                Ok(committed) => committed,
                Err(Failed { error, clean }) => {
                    if clean {
                        *conn = Some(taken);
                    }
                    return Err(error);
                }
            };
            *conn = Some(taken);
            hooks.notify(&committed);
            committed
        }
        AppPool::Postgres(p) => {
            macro_rules! query {
                () => {
                    crate::bind_args!(sqlx::query_as(write.postgres), &write.args)
                };
            }
            let committed: Vec<Committed> = if write.kind == WriteKind::Delete {
                let rows: Vec<AnnouncedRow<DeletedRow>> = query!().fetch_all(p).await?;
                rows.into_iter()
                    .map(|r| Committed {
                        event_id: r.event_id,
                        change: deleted(r.row),
                    })
                    .collect()
            } else {
                let rows: Vec<AnnouncedRow<TaskRow>> = query!().fetch_all(p).await?;
                rows.into_iter()
                    .map(|r| {
                        Task::try_from(r.row).map(|task| Committed {
                            event_id: r.event_id,
                            change: write.kind.task_change(task),
                        })
                    })
                    .collect::<Result<_, _>>()?
            };
            hooks.notify(&committed);
            committed
        }
    };
    Ok(committed.into_iter().map(|c| c.change).collect())
}

/// SQLite: a write that changes at most one row, with its commit, in one round trip.
async fn sqlite_single(
    conn: &mut SqliteConnection,
    ids: &mut EventIdBlock,
    write: &Write,
    sql: &'static str,
) -> Result<Vec<Committed>, Failed> {
    if ids.remaining() == 0 {
        // Drawn and committed before the write: if the write then fails, the block stays
        // good for the next one.
        let last: Vec<(i64,)> =
            one_trip(conn, DRAW_EVENT_IDS_ONE_TRIP, &[Arg::Int(EVENT_ID_BLOCK)]).await?;
        let (last,) = last.first().copied().ok_or_else(|| {
            Failed::clean(ApiError::Internal(anyhow::anyhow!(
                "drawing event ids returned no row"
            )))
        })?;
        *ids = EventIdBlock::ending_at(last, EVENT_ID_BLOCK);
    }
    let changes: Vec<TaskChange> = if write.kind == WriteKind::Delete {
        let rows: Vec<DeletedRow> = one_trip(conn, sql, &write.args).await?;
        rows.into_iter().map(deleted).collect()
    } else {
        let rows: Vec<TaskRow> = one_trip(conn, sql, &write.args).await?;
        task_changes(write.kind, rows).map_err(Failed::clean)?
    };
    let drawn = i64::try_from(changes.len()).unwrap_or(i64::MAX);
    if drawn > ids.remaining() {
        // Each of these writes names one task by its key, so this cannot happen; were it
        // to, the ids after the block's end could belong to the next block.
        return Err(Failed::clean(ApiError::Internal(anyhow::anyhow!(
            "a single-row write changed {drawn} rows"
        ))));
    }
    Ok((ids.take(drawn)..)
        .zip(changes)
        .map(|(event_id, change)| Committed { event_id, change })
        .collect())
}

/// SQLite: a write of any number of rows, in a transaction that also draws the next block
/// of event ids when this one runs short (a rolled-back draw is not used).
async fn sqlite_many(
    conn: &mut SqliteConnection,
    ids: &mut EventIdBlock,
    write: &Write,
    sql: &'static str,
) -> Result<Vec<Committed>, Failed> {
    // A transaction dropped on an error rolls back when the connection is next used.
    let mut tx = conn.begin().await.map_err(Failed::clean)?;
    macro_rules! query {
        () => {
            crate::bind_args!(sqlx::query_as(sql), &write.args)
        };
    }
    let changes: Vec<TaskChange> = if write.kind == WriteKind::Delete {
        let rows: Vec<DeletedRow> = query!().fetch_all(&mut *tx).await.map_err(Failed::clean)?;
        rows.into_iter().map(deleted).collect()
    } else {
        let rows: Vec<TaskRow> = query!().fetch_all(&mut *tx).await.map_err(Failed::clean)?;
        task_changes(write.kind, rows).map_err(Failed::clean)?
    };
    let drawn = i64::try_from(changes.len()).unwrap_or(i64::MAX);
    // Changed only once the write committed: a rolled-back draw is not used.
    let mut block = *ids;
    if block.remaining() < drawn {
        let size = drawn.max(EVENT_ID_BLOCK);
        let last: i64 = sqlx::query_scalar(DRAW_EVENT_IDS)
            .bind(size)
            .fetch_one(&mut *tx)
            .await
            .map_err(Failed::clean)?;
        block = EventIdBlock::ending_at(last, size);
    }
    let first = block.take(drawn);
    tx.commit().await.map_err(Failed::clean)?;
    *ids = block;
    Ok((first..)
        .zip(changes)
        .map(|(event_id, change)| Committed { event_id, change })
        .collect())
}

/// Runs a [`one_trip!`] statement and returns its rows. When it fails, its transaction is
/// rolled back; when even that fails, the connection is not clean.
async fn one_trip<T>(
    conn: &mut SqliteConnection,
    sql: &'static str,
    args: &[Arg],
) -> Result<Vec<T>, Failed>
where
    T: for<'r> sqlx::FromRow<'r, SqliteRow> + Send + Unpin,
{
    match crate::bind_args!(sqlx::query_as::<_, T>(sql), args)
        .fetch_all(&mut *conn)
        .await
    {
        Ok(rows) => Ok(rows),
        Err(error) => {
            let clean = sqlx::query("ROLLBACK").execute(&mut *conn).await.is_ok();
            Err(Failed {
                error: error.into(),
                clean,
            })
        }
    }
}

/// A SQLite write that failed, and whether its connection is fit for the next one.
struct Failed {
    error: ApiError,
    clean: bool,
}

impl Failed {
    fn clean(error: impl Into<ApiError>) -> Self {
        Self {
            error: error.into(),
            clean: true,
        }
    }
}

/// Creates a task owned by the user.
#[tracing::instrument(level = "debug", skip_all, fields(user = %user.id()))]
pub async fn create(
    db: &AppPool,
    hooks: &ChangeHooks,
    user: &AuthedUser,
    task: NewTask,
) -> Result<Task, ApiError> {
    let at = now();
    let args = vec![
        /* $1 user_id */ Arg::Text(user.id().to_owned()),
        /* $2 title */ Arg::Text(task.title.as_str().to_owned()),
        /* $3 description */ Arg::OptText(task.description.clone()),
        /* $4 completed */ Arg::Bool(task.completed),
        /* $5 priority */ Arg::Small(task.priority.rank()),
        /* $6 category */ Arg::OptText(task.category.clone()),
        /* $7 due_at */ Arg::OptTime(task.due_at),
        /* $8 created_at */ Arg::Time(at),
        /* $9 updated_at */ Arg::Time(at),
        /* $10 search_title */ Arg::Text(fold(task.title.as_str())),
        /* $11 search_description */ Arg::OptText(task.description.as_deref().map(fold)),
    ];
    let write = Write {
        sqlite: SqliteWrite::OneTrip(one_trip!(insert!())),
        postgres: announced!("created", insert!()),
        args,
        kind: WriteKind::Create,
    };
    match commit(db, hooks, write).await?.pop() {
        Some(TaskChange::Created(task)) => Ok(task),
        _ => Err(ApiError::Internal(anyhow::anyhow!(
            "INSERT returned no row"
        ))),
    }
}

/// The task one conditional write of task `id` changed; when it changed none: 412 when
/// the task is there (so its version was not one the client named), else `None` for the
/// caller's 404.
async fn changed_one(
    db: &AppPool,
    user: &AuthedUser,
    id: TaskId,
    precondition: &Precondition,
    changes: Vec<TaskChange>,
) -> Result<Option<TaskChange>, ApiError> {
    if let Some(change) = changes.into_iter().next() {
        return Ok(Some(change));
    }
    if *precondition == Precondition::Any {
        return Ok(None);
    }
    let found: i64 = on_pool!(db, |p| sqlx::query_scalar(EXISTS)
        .bind(id.get())
        .bind(user.id())
        .fetch_one(p)
        .await)?;
    if found > 0 {
        Err(ApiError::PreconditionFailed)
    } else {
        Ok(None)
    }
}

/// The updated task of a conditional write, `None` when there was no such task.
async fn updated(
    db: &AppPool,
    hooks: &ChangeHooks,
    user: &AuthedUser,
    id: TaskId,
    precondition: &Precondition,
    write: Write,
) -> Result<Option<Task>, ApiError> {
    let changes = commit(db, hooks, write).await?;
    match changed_one(db, user, id, precondition, changes).await? {
        Some(TaskChange::Updated(task)) => Ok(Some(task)),
        Some(other) => Err(ApiError::Internal(anyhow::anyhow!(
            "an update reported {other:?}"
        ))),
        None => Ok(None),
    }
}

/// Applies `changes` to one task of the user under `precondition`. `None` when there is
/// no such task; 412 when the version does not match.
#[tracing::instrument(level = "debug", skip_all, fields(user = %user.id(), id = id.get()))]
pub async fn update(
    db: &AppPool,
    hooks: &ChangeHooks,
    user: &AuthedUser,
    id: TaskId,
    changes: TaskChanges,
    precondition: &Precondition,
) -> Result<Option<Task>, ApiError> {
    let search_description = changes
        .description
        .as_ref()
        .and_then(|d| d.as_deref().map(fold));
    let args = vec![
        /* $1 id */ Arg::Int(id.get()),
        /* $2 user_id */ Arg::Text(user.id().to_owned()),
        /* $3 title, or keep */
        Arg::OptText(changes.title.as_ref().map(|t| t.as_str().to_owned())),
        /* $4 set description? */ Arg::Bool(changes.description.is_some()),
        /* $5 description */ Arg::OptText(changes.description.clone().flatten()),
        /* $6 completed, or keep */ Arg::OptBool(changes.completed),
        /* $7 priority, or keep */ Arg::OptSmall(changes.priority.map(Priority::rank)),
        /* $8 set category? */ Arg::Bool(changes.category.is_some()),
        /* $9 category */ Arg::OptText(changes.category.clone().flatten()),
        /* $10 set due_at? */ Arg::Bool(changes.due_at.is_some()),
        /* $11 due_at */ Arg::OptTime(changes.due_at.flatten()),
        /* $12 updated_at */ Arg::Time(now()),
        /* $13 search_title, or keep */
        Arg::OptText(changes.title.as_ref().map(|t| fold(t.as_str()))),
        /* $14 search_description */ Arg::OptText(search_description),
        /* $15 versions */ versions_arg(precondition),
    ];
    let write = Write {
        sqlite: SqliteWrite::OneTrip(one_trip!(update!())),
        postgres: announced!("updated", update!()),
        args,
        kind: WriteKind::Update,
    };
    updated(db, hooks, user, id, precondition, write).await
}

/// Sets `completed` to `value`, or flips it when `value` is `None`, atomically; the
/// precondition and outcomes are those of [`update`].
#[tracing::instrument(level = "debug", skip_all, fields(user = %user.id(), id = id.get()))]
pub async fn set_completed(
    db: &AppPool,
    hooks: &ChangeHooks,
    user: &AuthedUser,
    id: TaskId,
    value: Option<bool>,
    precondition: &Precondition,
) -> Result<Option<Task>, ApiError> {
    let args = vec![
        /* $1 id */ Arg::Int(id.get()),
        /* $2 user_id */ Arg::Text(user.id().to_owned()),
        /* $3 completed, or flip */ Arg::OptBool(value),
        /* $4 updated_at */ Arg::Time(now()),
        /* $5 versions */ versions_arg(precondition),
    ];
    let write = Write {
        sqlite: SqliteWrite::OneTrip(one_trip!(set_completed!())),
        postgres: announced!("updated", set_completed!()),
        args,
        kind: WriteKind::Update,
    };
    updated(db, hooks, user, id, precondition, write).await
}

/// Deletes one task of the user under `precondition`; `false` when there was no such
/// task.
#[tracing::instrument(level = "debug", skip_all, fields(user = %user.id(), id = id.get()))]
pub async fn delete(
    db: &AppPool,
    hooks: &ChangeHooks,
    user: &AuthedUser,
    id: TaskId,
    precondition: &Precondition,
) -> Result<bool, ApiError> {
    let args = vec![
        /* $1 id */ Arg::Int(id.get()),
        /* $2 user_id */ Arg::Text(user.id().to_owned()),
        /* $3 versions */ versions_arg(precondition),
    ];
    let write = Write {
        sqlite: SqliteWrite::OneTrip(one_trip!(delete!())),
        postgres: announced_deletes!(delete!()),
        args,
        kind: WriteKind::Delete,
    };
    let changes = commit(db, hooks, write).await?;
    Ok(changed_one(db, user, id, precondition, changes)
        .await?
        .is_some())
}

/// Deletes every completed task of the user and returns how many went.
#[tracing::instrument(level = "debug", skip_all, fields(user = %user.id()))]
pub async fn delete_completed(
    db: &AppPool,
    hooks: &ChangeHooks,
    user: &AuthedUser,
) -> Result<u64, ApiError> {
    let write = Write {
        sqlite: SqliteWrite::InTransaction(delete_completed!()),
        postgres: announced_deletes!(delete_completed!()),
        args: vec![/* $1 user_id */ Arg::Text(user.id().to_owned())],
        kind: WriteKind::Delete,
    };
    let deleted = commit(db, hooks, write).await?.len();
    Ok(u64::try_from(deleted).unwrap_or(u64::MAX))
}

// One round trip: per-category counts; totals are their sums.
const COUNTS_BY_CATEGORY: &str = "SELECT category, COUNT(*) AS total, \
     COALESCE(SUM(CASE WHEN completed THEN 1 ELSE 0 END), 0) AS completed, \
     COALESCE(SUM(CASE WHEN NOT completed AND due_at < $2 THEN 1 ELSE 0 END), 0) AS overdue, \
     COALESCE(SUM(CASE WHEN priority = 1 THEN 1 ELSE 0 END), 0) AS low, \
     COALESCE(SUM(CASE WHEN priority = 2 THEN 1 ELSE 0 END), 0) AS medium, \
     COALESCE(SUM(CASE WHEN priority = 3 THEN 1 ELSE 0 END), 0) AS high \
     FROM tasks WHERE user_id = $1 GROUP BY category";

/// Task counts of one category (`None`: tasks without a category).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct CategoryCounts {
    /// The category.
    pub category: Option<String>,
    /// Tasks in it.
    pub total: i64,
    /// Completed tasks.
    pub completed: i64,
    /// Pending tasks due before `now`.
    pub overdue: i64,
    /// Low-priority tasks.
    pub low: i64,
    /// Medium-priority tasks.
    pub medium: i64,
    /// High-priority tasks.
    pub high: i64,
}

/// The user's task counts per category, with overdue measured against `now`.
#[tracing::instrument(level = "debug", skip_all, fields(user = %user.id()))]
pub async fn counts_by_category(
    db: &AppPool,
    user: &AuthedUser,
    now: DateTime<Utc>,
) -> Result<Vec<CategoryCounts>, ApiError> {
    let rows = on_pool!(db, |p| sqlx::query_as(COUNTS_BY_CATEGORY)
        .bind(user.id())
        .bind(now)
        .fetch_all(p)
        .await)?;
    Ok(rows)
}

/// How many tasks each list of the dashboard overview holds at most.
pub const OVERVIEW_LIST_MAX: i64 = 10;

// One round trip for the overview's three lists, each its own ordered, limited subquery
// read through the list indexes: due soon, overdue, recently completed.
macro_rules! overview_list {
    ($list:literal, $filter:literal, $order:literal) => {
        concat!(
            "SELECT * FROM (SELECT ",
            task_columns!(),
            ", ",
            $list,
            " AS list FROM tasks WHERE user_id = $1 AND ",
            $filter,
            " ORDER BY ",
            $order,
            " LIMIT $4) AS l",
            $list
        )
    };
}

/// The statement of the overview's lists (public for the plan test).
pub const OVERVIEW_LISTS: &str = concat!(
    overview_list!(
        "1",
        "completed = FALSE AND due_at >= $2 AND due_at <= $3",
        "due_at ASC, id ASC"
    ),
    " UNION ALL ",
    overview_list!(
        "2",
        "completed = FALSE AND due_at < $2",
        "due_at ASC, id ASC"
    ),
    " UNION ALL ",
    overview_list!("3", "completed = TRUE", "updated_at DESC, id DESC")
);

#[derive(sqlx::FromRow)]
struct OverviewRow {
    #[sqlx(flatten)]
    task: TaskRow,
    list: i32,
}

/// The dashboard's lists of the user's tasks, measured against `now`.
#[derive(Debug, Default)]
pub struct OverviewLists {
    /// Pending tasks due from `now` to `until`, soonest first.
    pub due_soon: Vec<Task>,
    /// Pending tasks due before `now`, most overdue first.
    pub overdue: Vec<Task>,
    /// Completed tasks, most recently updated first.
    pub recently_completed: Vec<Task>,
}

/// The dashboard's three lists in one statement, each at most [`OVERVIEW_LIST_MAX`] long.
#[tracing::instrument(level = "debug", skip_all, fields(user = %user.id()))]
pub async fn overview_lists(
    db: &AppPool,
    user: &AuthedUser,
    now: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<OverviewLists, ApiError> {
    let rows: Vec<OverviewRow> = on_pool!(db, |p| sqlx::query_as(OVERVIEW_LISTS)
        .bind(user.id())
        .bind(now)
        .bind(until)
        .bind(OVERVIEW_LIST_MAX)
        .fetch_all(p)
        .await)?;
    let mut lists = OverviewLists::default();
    for row in rows {
        let task = Task::try_from(row.task)?;
        match row.list {
            1 => lists.due_soon.push(task),
            2 => lists.overdue.push(task),
            _ => lists.recently_completed.push(task),
        }
    }
    // A UNION ALL keeps each subquery's rows but not, by contract, their order.
    lists.due_soon.sort_by_key(|t| (t.due_at, t.id));
    lists.overdue.sort_by_key(|t| (t.due_at, t.id));
    lists
        .recently_completed
        .sort_by_key(|t| std::cmp::Reverse((t.updated_at, t.id)));
    Ok(lists)
}

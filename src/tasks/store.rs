//! Task SQL: one statement text per operation, run on either backend through `on_pool!`.
//!
//! Invariant: every statement filters by the verified user's id, so another user's task is
//! indistinguishable from a missing one. Every write is one statement (atomic by itself)
//! and moves `updated_at` and `version`.

use chrono::{DateTime, Utc};

use crate::auth::AuthedUser;
use crate::db::AppPool;
use crate::error::ApiError;
use crate::on_pool;

use super::model::{now, NewTask, Priority, Task, TaskChanges};
use super::query::{Arg, ListQuery};
use super::search::fold;

/// A task id from the path: a positive integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskId(i64);

impl TaskId {
    /// The id's value.
    pub fn get(self) -> i64 {
        self.0
    }
}

/// A path id that is not a positive integer.
#[derive(Debug, Clone, Copy)]
pub struct InvalidTaskId;

impl From<InvalidTaskId> for ApiError {
    fn from(_: InvalidTaskId) -> Self {
        ApiError::field("id", "Task id must be a positive integer")
    }
}

impl<'a> rocket::request::FromParam<'a> for TaskId {
    type Error = InvalidTaskId;

    fn from_param(param: &'a str) -> Result<Self, Self::Error> {
        match param.parse::<i64>() {
            Ok(id) if id > 0 => Ok(Self(id)),
            _ => Err(InvalidTaskId),
        }
    }
}

macro_rules! columns {
    () => {
        "id, user_id, title, description, completed, priority, category, due_at, \
         created_at, updated_at, version"
    };
}

const GET: &str = concat!(
    "SELECT ",
    columns!(),
    " FROM tasks WHERE id = $1 AND user_id = $2"
);

const INSERT: &str = concat!(
    "INSERT INTO tasks (user_id, title, description, completed, priority, category, due_at, \
     created_at, updated_at, search_title, search_description) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING ",
    columns!()
);

/// `AND` the stored version is one of the comma-separated list bound at `$n`, or the
/// list is NULL (no `If-Match`). Plain SQL that both dialects run the same way.
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
const UPDATE: &str = concat!(
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
    columns!()
);

// One statement: the row lock makes concurrent toggles apply one after the other.
const SET_COMPLETED: &str = concat!(
    "UPDATE tasks SET completed = COALESCE($3, NOT completed), updated_at = $4, \
     version = version + 1 WHERE id = $1 AND user_id = $2",
    version_in!(5),
    " RETURNING ",
    columns!()
);

const DELETE: &str = concat!(
    "DELETE FROM tasks WHERE id = $1 AND user_id = $2",
    version_in!(3)
);

const EXISTS: &str = "SELECT COUNT(*) FROM tasks WHERE id = $1 AND user_id = $2";

const DELETE_COMPLETED: &str = "DELETE FROM tasks WHERE user_id = $1 AND completed = TRUE";

#[derive(sqlx::FromRow)]
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

fn to_task(row: Option<TaskRow>) -> Result<Option<Task>, ApiError> {
    row.map(Task::try_from).transpose()
}

/// Binds list arguments ([`Arg`]) in order to a query of either backend; exported for the
/// plan tests, which run the very statements [`ListStatement`] makes.
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
            };
        }
        query
    }};
}

#[derive(sqlx::FromRow)]
struct ListRow {
    #[sqlx(flatten)]
    task: TaskRow,
    total_count: i64,
}

/// One page of a list and the number of tasks matching its filters.
#[derive(Debug)]
pub struct Page {
    /// The tasks of this page.
    pub tasks: Vec<Task>,
    /// Tasks matching the filters, on every page.
    pub total: i64,
}

/// The statement of one list page (the user id is `$1`), built once per request. Public so
/// the plan tests and benchmarks examine the very text the service runs.
#[derive(Debug)]
pub struct ListStatement {
    /// The page with its total (the count rides on every row).
    pub sql: String,
    /// The filter after `user_id = $1`, for the count past the last page.
    filter: String,
    /// The arguments from `$2` on: the filter's, then `LIMIT` and `OFFSET`.
    pub args: Vec<Arg>,
    /// How many of `args` belong to the filter.
    filter_args: usize,
}

impl ListStatement {
    /// Builds the statement of `query`, with `now` for the overdue filter.
    pub fn new(query: &ListQuery, now: DateTime<Utc>) -> Self {
        let (filter, mut args) = query.filter(now);
        let first_page_arg = args.len() + 2;
        let sql = format!(
            concat!(
                "SELECT ",
                columns!(),
                ", (SELECT COUNT(*) FROM tasks WHERE user_id = $1{filter}) AS total_count \
                 FROM tasks WHERE user_id = $1{filter}{order} LIMIT ${limit} OFFSET ${offset}"
            ),
            filter = filter,
            order = query.order_by(),
            limit = first_page_arg,
            offset = first_page_arg + 1
        );
        let filter_args = args.len();
        args.extend([Arg::Int(query.limit), Arg::Int(query.offset)]);
        Self {
            sql,
            filter,
            args,
            filter_args,
        }
    }

    /// The count alone, for a page past the end, which has no row to carry it.
    fn count_sql(&self) -> String {
        format!(
            "SELECT COUNT(*) FROM tasks WHERE user_id = $1{}",
            self.filter
        )
    }
}

/// A page of the user's tasks matching `query`: one statement, the total counted by an
/// uncorrelated subquery (run once, and from an index alone where one fits) beside the
/// page's rows, which the matching index yields already in order.
#[tracing::instrument(skip_all, fields(user = %user.id()))]
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
#[tracing::instrument(skip_all, fields(user = %user.id(), id = id.get()))]
pub async fn get(db: &AppPool, user: &AuthedUser, id: TaskId) -> Result<Option<Task>, ApiError> {
    let row: Option<TaskRow> = on_pool!(db, |p| sqlx::query_as(GET)
        .bind(id.get())
        .bind(user.id())
        .fetch_optional(p)
        .await)?;
    to_task(row)
}

/// Runs one `RETURNING` statement and yields its row, if any. On SQLite inside a
/// transaction, which makes it commit a `RETURNING` write reliably; on PostgreSQL alone,
/// where one statement is atomic by itself: one round trip instead of three.
macro_rules! write_returning {
    ($db:expr, $query:expr) => {
        match $db {
            AppPool::Sqlite(p) => {
                async {
                    let mut tx = p.begin().await?;
                    let row: Option<TaskRow> = $query.fetch_optional(&mut *tx).await?;
                    tx.commit().await?;
                    Ok::<_, sqlx::Error>(row)
                }
                .await
            }
            AppPool::Postgres(p) => $query.fetch_optional(p).await,
        }
    };
}

/// Creates a task owned by the user.
#[tracing::instrument(skip_all, fields(user = %user.id()))]
pub async fn create(db: &AppPool, user: &AuthedUser, task: NewTask) -> Result<Task, ApiError> {
    let at = now();
    let row = write_returning!(
        db,
        sqlx::query_as(INSERT)
            .bind(user.id())
            .bind(task.title.as_str())
            .bind(task.description.as_deref())
            .bind(task.completed)
            .bind(task.priority.rank())
            .bind(task.category.as_deref())
            .bind(task.due_at)
            .bind(at)
            .bind(at)
            .bind(fold(task.title.as_str()))
            .bind(task.description.as_deref().map(fold))
    )?;
    to_task(row)?.ok_or_else(|| ApiError::Internal(anyhow::anyhow!("INSERT returned no row")))
}

/// After a conditional write matched no row: 412 when the task is there (so its version
/// was not one the client named), else `None` for the caller's 404.
async fn stale_or_missing<T>(
    db: &AppPool,
    user: &AuthedUser,
    id: TaskId,
    expected: Option<&str>,
) -> Result<Option<T>, ApiError> {
    if expected.is_none() {
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

/// Applies `changes` to one task of the user if its version is in `expected` (a
/// comma-separated list; `None`: any). `None` when there is no such task; 412 when the
/// version does not match.
#[tracing::instrument(skip_all, fields(user = %user.id(), id = id.get()))]
pub async fn update(
    db: &AppPool,
    user: &AuthedUser,
    id: TaskId,
    changes: TaskChanges,
    expected: Option<&str>,
) -> Result<Option<Task>, ApiError> {
    let search_description = changes
        .description
        .as_ref()
        .and_then(|d| d.as_deref().map(fold));
    let row = write_returning!(
        db,
        sqlx::query_as(UPDATE)
            .bind(id.get())
            .bind(user.id())
            .bind(changes.title.as_ref().map(|t| t.as_str()))
            .bind(changes.description.is_some())
            .bind(changes.description.flatten())
            .bind(changes.completed)
            .bind(changes.priority.map(Priority::rank))
            .bind(changes.category.is_some())
            .bind(changes.category.flatten())
            .bind(changes.due_at.is_some())
            .bind(changes.due_at.flatten())
            .bind(now())
            .bind(changes.title.as_ref().map(|t| fold(t.as_str())))
            .bind(search_description)
            .bind(expected)
    )?;
    match row {
        Some(row) => Task::try_from(row).map(Some),
        None => stale_or_missing(db, user, id, expected).await,
    }
}

/// Sets `completed` to `value`, or flips it when `value` is `None`, atomically; the
/// version check and outcomes are those of [`update`].
#[tracing::instrument(skip_all, fields(user = %user.id(), id = id.get()))]
pub async fn set_completed(
    db: &AppPool,
    user: &AuthedUser,
    id: TaskId,
    value: Option<bool>,
    expected: Option<&str>,
) -> Result<Option<Task>, ApiError> {
    let row = write_returning!(
        db,
        sqlx::query_as(SET_COMPLETED)
            .bind(id.get())
            .bind(user.id())
            .bind(value)
            .bind(now())
            .bind(expected)
    )?;
    match row {
        Some(row) => Task::try_from(row).map(Some),
        None => stale_or_missing(db, user, id, expected).await,
    }
}

/// Deletes one task of the user, under the same version check as [`update`]; `false`
/// when there was no such task.
#[tracing::instrument(skip_all, fields(user = %user.id(), id = id.get()))]
pub async fn delete(
    db: &AppPool,
    user: &AuthedUser,
    id: TaskId,
    expected: Option<&str>,
) -> Result<bool, ApiError> {
    let deleted = on_pool!(db, |p| sqlx::query(DELETE)
        .bind(id.get())
        .bind(user.id())
        .bind(expected)
        .execute(p)
        .await
        .map(|done| done.rows_affected()))?;
    if deleted > 0 {
        return Ok(true);
    }
    stale_or_missing::<()>(db, user, id, expected).await?;
    Ok(false)
}

/// Deletes every completed task of the user and returns how many went.
#[tracing::instrument(skip_all, fields(user = %user.id()))]
pub async fn delete_completed(db: &AppPool, user: &AuthedUser) -> Result<u64, ApiError> {
    let deleted = on_pool!(db, |p| sqlx::query(DELETE_COMPLETED)
        .bind(user.id())
        .execute(p)
        .await
        .map(|done| done.rows_affected()))?;
    Ok(deleted)
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
#[tracing::instrument(skip_all, fields(user = %user.id()))]
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

//! Task reads and writes: one statement per operation, run on either backend through
//! `on_pool!`, every write through the one commit step ([`super::writer::commit`]).
//!
//! Invariant: every statement filters by the verified user's id, so another user's task is
//! indistinguishable from a missing one. Every write is one statement (atomic by itself),
//! moves `updated_at` and `version`, and ends in the commit step, which draws its event ids
//! and appends what changed to the event log in the write's own transaction: no write can
//! bypass it (see [`super::log`]). (The start-up fill of the search columns, in `search`,
//! changes no task field a client sees, so it is not a change.)

pub use super::changes::TaskChange;
use super::etag::Precondition;
use super::log::{
    logged_delete_one, logged_deletes, logged_one, sqlite_logged, sqlite_logged_delete,
};
use super::model::{NewTask, Priority, Task, TaskChanges, TaskId, TaskView};
use super::query::{ListQuery, ListStatement};
use super::row::{self, TaskRow};
use super::search::fold;
use super::sql::{
    self, begun, delete, delete_completed, insert, set_completed, update, user_arguments_for,
    versions_arg, Arg,
};
use super::writer::{commit, on_scope, Scope, SqliteWrite, Write, WriteKind, Writer};
use crate::auth::AuthedUser;
use crate::db::{on_pool, AppPool};
use crate::error::ApiError;
use crate::time::now;

/// One page of a list and the number of tasks matching its filters.
pub struct Page {
    /// The rows of this page.
    pub rows: PageRows,
    /// Tasks matching the filters, on every page.
    pub total: i64,
}

/// A list page's rows as the backend returned them, read into JSON by
/// [`PageRows::views`] with their texts borrowed, not copied.
pub enum PageRows {
    /// PostgreSQL's rows.
    Postgres(Vec<sqlx::postgres::PgRow>),
    /// SQLite's rows.
    Sqlite(Vec<sqlx::sqlite::SqliteRow>),
}

impl PageRows {
    /// Each row's task, as its JSON is written.
    pub(crate) fn views(&self) -> Result<Vec<TaskView<'_>>, ApiError> {
        match self {
            Self::Postgres(rows) => rows.iter().map(row::view).collect(),
            Self::Sqlite(rows) => rows.iter().map(row::view).collect(),
        }
    }

    /// The total count the first row carries, if there is a row.
    fn total(&self) -> Result<Option<i64>, sqlx::Error> {
        match self {
            Self::Postgres(rows) => rows.first().map(row::after_task).transpose(),
            Self::Sqlite(rows) => rows.first().map(row::after_task).transpose(),
        }
    }
}

/// A page of the user's tasks matching `query`: one statement, the total counted by an
/// uncorrelated subquery (run once, and from an index alone where one fits) beside the
/// page's rows, which the matching index yields already in order.
#[tracing::instrument(level = "debug", skip_all, fields(user = %user.id()))]
pub async fn list(db: &AppPool, user: &AuthedUser, query: &ListQuery) -> Result<Page, ApiError> {
    let statement = ListStatement::new(query, now());
    let rows = match db {
        AppPool::Postgres(p) => PageRows::Postgres(
            sqlx::query_with(
                &statement.sql,
                user_arguments_for(p, user.id(), &statement.args)?,
            )
            .fetch_all(p)
            .await?,
        ),
        AppPool::Sqlite(p) => PageRows::Sqlite(
            sqlx::query_with(
                &statement.sql,
                user_arguments_for(p, user.id(), &statement.args)?,
            )
            .fetch_all(p)
            .await?,
        ),
    };
    let total = match rows.total()? {
        Some(total) => total,
        None if query.offset > 0 => {
            let count_sql = statement.count_sql();
            on_pool!(db, |p| sqlx::query_scalar_with::<_, i64, _>(
                &count_sql,
                user_arguments_for(p, user.id(), &statement.args[..statement.filter_args])?
            )
            .fetch_one(p)
            .await)?
        }
        None => 0,
    };
    Ok(Page { rows, total })
}

/// One task of the user, or `None` (also when it belongs to someone else).
#[tracing::instrument(level = "debug", skip_all, fields(user = %user.id(), id = id.get()))]
pub async fn get(db: &AppPool, user: &AuthedUser, id: TaskId) -> Result<Option<Task>, ApiError> {
    let row: Option<TaskRow> = on_pool!(db, |p| sqlx::query_as(sql::GET)
        .bind(id.get())
        .bind(user.id())
        .fetch_optional(p)
        .await)?;
    row.map(Task::try_from).transpose()
}

/// [`get`] in `scope`: inside a keyed write's transaction, on its connection.
pub async fn get_in(
    scope: &mut Scope,
    user: &AuthedUser,
    id: TaskId,
) -> Result<Option<Task>, ApiError> {
    let row: Option<TaskRow> = on_scope!(scope, |c| sqlx::query_as(sql::GET)
        .bind(id.get())
        .bind(user.id())
        .fetch_optional(c)
        .await)?;
    row.map(Task::try_from).transpose()
}

/// Creates a task owned by the user.
#[tracing::instrument(level = "debug", skip_all, fields(user = %user.id()))]
pub async fn create(
    scope: &mut Scope,
    writer: &Writer,
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
        sqlite: SqliteWrite::Logged(sqlite_logged!(
            "created",
            insert!(),
            "$1",
            "last_insert_rowid()"
        )),
        postgres: logged_one!("created", insert!()),
        args,
        kind: WriteKind::Create,
    };
    match commit(scope, writer, write).await?.pop() {
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
    scope: &mut Scope,
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
    let found: i64 = on_scope!(scope, |c| sqlx::query_scalar(sql::EXISTS)
        .bind(id.get())
        .bind(user.id())
        .fetch_one(c)
        .await)?;
    if found > 0 {
        Err(ApiError::PreconditionFailed)
    } else {
        Ok(None)
    }
}

/// The updated task of a conditional write, `None` when there was no such task.
async fn updated(
    scope: &mut Scope,
    writer: &Writer,
    user: &AuthedUser,
    id: TaskId,
    precondition: &Precondition,
    write: Write,
) -> Result<Option<Task>, ApiError> {
    let changes = commit(scope, writer, write).await?;
    match changed_one(scope, user, id, precondition, changes).await? {
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
    scope: &mut Scope,
    writer: &Writer,
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
        sqlite: SqliteWrite::Logged(sqlite_logged!("updated", update!(), "$2", "$1")),
        postgres: logged_one!("updated", update!()),
        args,
        kind: WriteKind::Update,
    };
    updated(scope, writer, user, id, precondition, write).await
}

/// Sets `completed` to `value`, or flips it when `value` is `None`, atomically; the
/// precondition and outcomes are those of [`update`].
#[tracing::instrument(level = "debug", skip_all, fields(user = %user.id(), id = id.get()))]
pub async fn set_completed(
    scope: &mut Scope,
    writer: &Writer,
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
        sqlite: SqliteWrite::Logged(sqlite_logged!("updated", set_completed!(), "$2", "$1")),
        postgres: logged_one!("updated", set_completed!()),
        args,
        kind: WriteKind::Update,
    };
    updated(scope, writer, user, id, precondition, write).await
}

/// Deletes one task of the user under `precondition`; `false` when there was no such
/// task.
#[tracing::instrument(level = "debug", skip_all, fields(user = %user.id(), id = id.get()))]
pub async fn delete(
    scope: &mut Scope,
    writer: &Writer,
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
        sqlite: SqliteWrite::Logged(sqlite_logged_delete!(delete!())),
        postgres: logged_delete_one!(delete!()),
        args,
        kind: WriteKind::Delete,
    };
    let changes = commit(scope, writer, write).await?;
    Ok(changed_one(scope, user, id, precondition, changes)
        .await?
        .is_some())
}

/// Deletes every completed task of the user and returns how many went.
#[tracing::instrument(level = "debug", skip_all, fields(user = %user.id()))]
pub async fn delete_completed(
    scope: &mut Scope,
    writer: &Writer,
    user: &AuthedUser,
) -> Result<u64, ApiError> {
    let write = Write {
        sqlite: SqliteWrite::DeleteMany(begun!(delete_completed!())),
        postgres: logged_deletes!(delete_completed!()),
        args: vec![/* $1 user_id */ Arg::Text(user.id().to_owned())],
        kind: WriteKind::Delete,
    };
    let deleted = commit(scope, writer, write).await?.len();
    Ok(u64::try_from(deleted).unwrap_or(u64::MAX))
}

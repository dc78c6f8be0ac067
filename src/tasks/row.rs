//! A task row as the statements return it, read by position into the API's [`Task`].

use chrono::{DateTime, Utc};

use super::model::{Priority, Task, TaskView};
use crate::error::ApiError;

/// A task's columns, read by position: [`super::sql::task_columns!`] come first, in that order, in every
/// statement that returns tasks. Read by name, each field of a page cost a hash lookup.
/// Its texts are `String`s, or `&str`s borrowed from the row where a list page is written
/// straight from its rows ([`view`]).
pub(crate) struct TaskRow<S = String> {
    id: i64,
    pub(super) user_id: S,
    title: S,
    description: Option<S>,
    completed: bool,
    priority: i16,
    category: Option<S>,
    due_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    version: i64,
}

/// The number of columns [`TaskRow`] reads; a statement's own columns follow them.
const TASK_COLUMNS: usize = 11;

impl<'r, R, S> sqlx::FromRow<'r, R> for TaskRow<S>
where
    R: sqlx::Row,
    usize: sqlx::ColumnIndex<R>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i16: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    bool: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    S: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    DateTime<Utc>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    // Unchecked: the statements and their columns are fixed (and tested on both
    // databases), so the driver's type check of each of a page's 220 fields buys nothing.
    fn from_row(row: &'r R) -> Result<Self, sqlx::Error> {
        Ok(Self {
            id: row.try_get_unchecked(0)?,
            user_id: row.try_get_unchecked(1)?,
            title: row.try_get_unchecked(2)?,
            description: row.try_get_unchecked(3)?,
            completed: row.try_get_unchecked(4)?,
            priority: row.try_get_unchecked(5)?,
            category: row.try_get_unchecked(6)?,
            due_at: row.try_get_unchecked(7)?,
            created_at: row.try_get_unchecked(8)?,
            updated_at: row.try_get_unchecked(9)?,
            version: row.try_get_unchecked(10)?,
        })
    }
}

impl TryFrom<TaskRow> for Task {
    type Error = ApiError;

    fn try_from(row: TaskRow) -> Result<Self, ApiError> {
        let priority = priority(row.id, row.priority)?;
        Ok(Task {
            id: row.id,
            user_id: row.user_id,
            title: row.title,
            description: row.description,
            completed: row.completed,
            is_completed: row.completed,
            priority,
            category: row.category,
            due_at: row.due_at,
            created_at: row.created_at,
            updated_at: row.updated_at,
            version: row.version,
        })
    }
}

/// A list row's task as its JSON, its texts borrowed from the row: a page is written
/// without an owned copy of each of its texts.
pub(crate) fn view<'r, R>(row: &'r R) -> Result<TaskView<'r>, ApiError>
where
    R: sqlx::Row,
    TaskRow<&'r str>: sqlx::FromRow<'r, R>,
{
    let row = <TaskRow<&'r str> as sqlx::FromRow<'r, R>>::from_row(row)?;
    Ok(TaskView {
        id: row.id,
        user_id: row.user_id,
        title: row.title,
        description: row.description,
        completed: row.completed,
        is_completed: row.completed,
        priority: priority(row.id, row.priority)?,
        category: row.category,
        due_at: row.due_at,
        created_at: row.created_at,
        updated_at: row.updated_at,
    })
}

/// The one column a statement returns after the task's own (a list's total count, the
/// overview's list number).
pub(crate) fn after_task<'r, R, T>(row: &'r R) -> Result<T, sqlx::Error>
where
    R: sqlx::Row,
    usize: sqlx::ColumnIndex<R>,
    T: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    row.try_get(TASK_COLUMNS)
}

/// A stored priority rank as the API's priority.
fn priority(id: i64, rank: i16) -> Result<Priority, ApiError> {
    Priority::from_rank(rank).ok_or_else(|| {
        ApiError::Internal(anyhow::anyhow!(
            "task {id} has an unknown priority rank {rank}"
        ))
    })
}

/// A task and the one column a statement returns after the task's own ([`after_task`]).
pub(crate) struct TaskWith<T> {
    pub(crate) task: TaskRow,
    pub(crate) extra: T,
}

impl<'r, R, T> sqlx::FromRow<'r, R> for TaskWith<T>
where
    R: sqlx::Row,
    TaskRow: sqlx::FromRow<'r, R>,
    usize: sqlx::ColumnIndex<R>,
    T: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    fn from_row(row: &'r R) -> Result<Self, sqlx::Error> {
        Ok(Self {
            task: TaskRow::from_row(row)?,
            extra: after_task(row)?,
        })
    }
}

/// What a delete returns of each row.
#[derive(sqlx::FromRow)]
pub(super) struct DeletedRow {
    pub(super) id: i64,
    pub(super) user_id: String,
}

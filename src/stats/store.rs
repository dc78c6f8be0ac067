//! The statistics' SQL: per-category counts and the dashboard's three lists, each one
//! statement over the user's tasks.

use chrono::{DateTime, Utc};

use crate::auth::AuthedUser;
use crate::db::{on_pool, AppPool};
use crate::error::ApiError;
use crate::tasks::model::Task;
use crate::tasks::row::TaskWith;
use crate::tasks::sql::task_columns;

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
    let rows: Vec<TaskWith<i32>> = on_pool!(db, |p| sqlx::query_as(OVERVIEW_LISTS)
        .bind(user.id())
        .bind(now)
        .bind(until)
        .bind(OVERVIEW_LIST_MAX)
        .fetch_all(p)
        .await)?;
    let mut lists = OverviewLists::default();
    for row in rows {
        let task = Task::try_from(row.task)?;
        match row.extra {
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

//! Per-user statistics: `GET /api/<user_id>/stats`, computed by the database in one round
//! trip (counts per category) and summed here.

use rocket::fairing::AdHoc;
use rocket::serde::json::Json;
use serde::Serialize;

use self::store::CategoryCounts;
use crate::auth::AuthedUser;
use crate::db::Db;
use crate::error::ApiError;
use crate::tasks::model::Task;
use crate::time::now;

pub mod store;

/// The OpenAPI description of the statistics route.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(get, overview),
    components(schemas(Stats, ByPriority, ByCategory, Overview))
)]
pub struct StatsApi;

/// Counts by priority.
#[derive(Debug, Default, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct ByPriority {
    /// Low.
    pub low: i64,
    /// Medium.
    pub medium: i64,
    /// High.
    pub high: i64,
}

/// Counts of one category.
#[derive(Debug, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct ByCategory {
    /// The category, `null` for tasks without one.
    pub category: Option<String>,
    /// Tasks in it.
    pub total: i64,
    /// Completed tasks in it.
    pub completed: i64,
}

/// The statistics answer.
#[derive(Debug, Default, Serialize, PartialEq, utoipa::ToSchema)]
#[schema(example = json!({"total": 12, "completed": 5, "pending": 7, "overdue": 2, "completion_rate": 0.4167,
    "by_priority": {"low": 3, "medium": 6, "high": 3},
    "by_category": [{"category": "work", "total": 8, "completed": 3}, {"category": null, "total": 4, "completed": 2}]}))]
pub struct Stats {
    /// All tasks.
    pub total: i64,
    /// Completed tasks.
    pub completed: i64,
    /// Tasks not completed.
    pub pending: i64,
    /// Pending tasks whose `due_at` is in the past.
    pub overdue: i64,
    /// `completed / total`, 0 to 1 rounded to 4 decimals (0 without tasks).
    pub completion_rate: f64,
    /// Counts by priority.
    pub by_priority: ByPriority,
    /// Counts by category, largest first, tasks without a category last.
    pub by_category: Vec<ByCategory>,
}

impl Stats {
    /// Sums per-category counts into the whole picture.
    pub fn from_counts(mut counts: Vec<CategoryCounts>) -> Self {
        counts.sort_by(|a, b| {
            (a.category.is_none(), -a.total, &a.category).cmp(&(
                b.category.is_none(),
                -b.total,
                &b.category,
            ))
        });
        let mut stats = Stats::default();
        for c in &counts {
            stats.total += c.total;
            stats.completed += c.completed;
            stats.overdue += c.overdue;
            stats.by_priority.low += c.low;
            stats.by_priority.medium += c.medium;
            stats.by_priority.high += c.high;
        }
        stats.pending = stats.total - stats.completed;
        if stats.total > 0 {
            #[allow(clippy::cast_precision_loss)] // task counts are far below 2^52
            let rate = stats.completed as f64 / stats.total as f64;
            stats.completion_rate = (rate * 10_000.0).round() / 10_000.0;
        }
        stats.by_category = counts
            .into_iter()
            .map(|c| ByCategory {
                category: c.category,
                total: c.total,
                completed: c.completed,
            })
            .collect();
        stats
    }
}

/// `GET /api/<user_id>/stats`.
#[utoipa::path(
    get,
    path = "/api/{user_id}/stats",
    tag = "stats",
    summary = "The user's task statistics",
    operation_id = "getStats",
    description = "Computed by the database in one round trip. `overdue` counts pending tasks whose \
        `due_at` is in the past; `completion_rate` is 0 to 1 (0 without tasks).",
    params(("user_id" = String, Path, description = "The token's `sub`")),
    responses((status = 200, description = "The statistics", body = Stats)),
    security(("bearer" = []))
)]
#[get("/<user_id>/stats")]
#[tracing::instrument(name = "stats.get", level = "debug", skip_all, fields(user = %user_id))]
async fn get(user_id: &str, user: AuthedUser, db: &Db) -> Result<Json<Stats>, ApiError> {
    let counts = store::counts_by_category(db, &user, now()).await?;
    Ok(Json(Stats::from_counts(counts)))
}

/// The dashboard overview answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Overview {
    /// Exactly the statistics of `GET /api/{user_id}/stats`.
    pub stats: Stats,
    /// Pending tasks due from now to 7 days ahead, soonest first, at most 10.
    pub due_soon: Vec<Task>,
    /// Pending tasks due in the past, most overdue first, at most 10.
    pub overdue: Vec<Task>,
    /// Completed tasks, most recently updated first, at most 10.
    pub recently_completed: Vec<Task>,
}

/// How far ahead "due soon" looks.
const DUE_SOON: chrono::Duration = chrono::Duration::days(7);

/// `GET /api/<user_id>/dashboard/overview`.
#[utoipa::path(
    get,
    path = "/api/{user_id}/dashboard/overview",
    tag = "stats",
    summary = "The dashboard: statistics and short lists",
    operation_id = "getDashboardOverview",
    description = "Two database round trips: the statistics, and the three lists in one \
        statement. `due_soon`: pending tasks due from now to 7 days ahead, soonest first; \
        `overdue`: pending tasks due in the past, most overdue first; `recently_completed`: \
        completed tasks, most recently updated first; at most 10 each.",
    params(("user_id" = String, Path, description = "The token's `sub`")),
    responses((status = 200, description = "The overview", body = Overview)),
    security(("bearer" = []))
)]
#[get("/<user_id>/dashboard/overview")]
#[tracing::instrument(name = "stats.overview", level = "debug", skip_all, fields(user = %user_id))]
async fn overview(user_id: &str, user: AuthedUser, db: &Db) -> Result<Json<Overview>, ApiError> {
    let now = now();
    let counts = store::counts_by_category(db, &user, now).await?;
    let lists = store::overview_lists(db, &user, now, now + DUE_SOON).await?;
    Ok(Json(Overview {
        stats: Stats::from_counts(counts),
        due_soon: lists.due_soon,
        overdue: lists.overdue,
        recently_completed: lists.recently_completed,
    }))
}

/// The statistics module: the statistics and the dashboard overview.
pub fn stage() -> AdHoc {
    AdHoc::on_ignite("Statistics", |rocket| async {
        rocket.mount("/api", crate::telemetry::traced(routes![get, overview]))
    })
}

//! Per-user statistics: `GET /api/<user_id>/stats`, computed by the database in one round
//! trip (counts per category) and summed here.

use rocket::fairing::AdHoc;
use rocket::serde::json::Json;
use serde::Serialize;

use crate::auth::AuthedUser;
use crate::db::Db;
use crate::error::ApiError;
use crate::tasks::store::{self, CategoryCounts};
use crate::time::now;

/// The OpenAPI description of the statistics route.
#[derive(utoipa::OpenApi)]
#[openapi(paths(get), components(schemas(Stats, ByPriority, ByCategory)))]
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
#[tracing::instrument(name = "stats.get", skip_all, fields(user = %user_id))]
async fn get(user_id: &str, user: AuthedUser, db: &Db) -> Result<Json<Stats>, ApiError> {
    let counts = store::counts_by_category(db, &user, now()).await?;
    Ok(Json(Stats::from_counts(counts)))
}

/// The statistics module.
pub fn stage() -> AdHoc {
    AdHoc::on_ignite("Statistics", |rocket| async {
        rocket.mount("/api", crate::telemetry::traced(routes![get]))
    })
}

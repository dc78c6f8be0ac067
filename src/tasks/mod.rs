//! Tasks: the model, its SQL and its routes under `/api/<user_id>/tasks`.

pub mod changes;
pub mod etag;
pub mod idempotency;
pub mod log;
pub mod model;
pub mod query;
mod routes;
pub(crate) mod row;
pub mod search;
pub mod sql;
pub mod store;
pub mod sync;
pub mod writer;

pub use routes::TasksApi;

use rocket::fairing::AdHoc;

use crate::db::AppPool;

/// What the tasks module needs done once the migrations ran: fill the search columns of
/// tasks stored before they existed. Run by `startup::prepare`.
pub async fn start_up(db: &AppPool) -> Result<(), sqlx::Error> {
    let filled = search::backfill(db).await?;
    if filled > 0 {
        tracing::info!(tasks = filled, "search columns filled in for older tasks");
    }
    Ok(())
}

/// The statements that erase every row of one user (`$1`) this module keeps in `backend`'s
/// dialect: tasks, their events (and, on PostgreSQL, the user's event counter), and
/// idempotency keys. The accounts module runs them inside the transaction that deletes
/// the user, so the user and their data go together.
pub fn erase_user(backend: crate::db::Backend) -> &'static [&'static str] {
    const COMMON: [&str; 3] = [
        "DELETE FROM tasks WHERE user_id = $1",
        "DELETE FROM task_events WHERE user_id = $1",
        "DELETE FROM idempotency_keys WHERE user_id = $1",
    ];
    const POSTGRES: [&str; 4] = [
        COMMON[0],
        COMMON[1],
        COMMON[2],
        "DELETE FROM task_event_counters WHERE user_id = $1",
    ];
    match backend {
        crate::db::Backend::Postgres => &POSTGRES,
        crate::db::Backend::Sqlite => &COMMON,
    }
}

/// The tasks module: the writer's state (and, on SQLite, its WAL checkpoints), the routes
/// under `/api`, and the pruning of expired idempotency keys.
pub fn stage() -> AdHoc {
    AdHoc::on_ignite("Tasks", |rocket| async {
        rocket
            .manage(std::sync::Arc::new(writer::Writer::default()))
            .mount("/api", crate::telemetry::traced(routes::routes()))
            .mount("/api", crate::telemetry::traced(sync::routes()))
            .attach(AdHoc::on_liftoff("Idempotency keys", |rocket| {
                Box::pin(async move {
                    if let Some(db) = rocket.state::<crate::db::Db>() {
                        tokio::spawn(idempotency::keep_pruned((**db).clone(), rocket.shutdown()));
                    }
                })
            }))
            .attach(AdHoc::on_liftoff("SQLite checkpoints", |rocket| {
                Box::pin(async move {
                    let db = rocket.state::<crate::db::Db>();
                    let writer = rocket.state::<std::sync::Arc<writer::Writer>>();
                    if let (Some(db), Some(writer)) = (db, writer) {
                        tokio::spawn(writer::keep_checkpointed(
                            (**db).clone(),
                            writer.clone(),
                            rocket.shutdown(),
                        ));
                    }
                })
            }))
    })
}

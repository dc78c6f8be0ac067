//! Tasks: the model, its SQL and its routes under `/api/<user_id>/tasks`.

/// The columns of a task row, in the order every statement returns them.
#[macro_export]
#[doc(hidden)]
macro_rules! task_columns {
    () => {
        "id, user_id, title, description, completed, priority, category, due_at, \
         created_at, updated_at, version"
    };
}

pub mod changes;
pub mod etag;
pub mod model;
pub mod query;
mod routes;
pub mod search;
pub mod store;

pub use routes::TasksApi;

use rocket::fairing::AdHoc;
use rocket::{Build, Rocket};
use rocket_db_pools::Database as _;

use crate::db::{AppPool, Db};

/// What the tasks module needs done once the migrations ran: fill the search columns of
/// tasks stored before they existed. The `migrate` command runs it too.
pub async fn start_up(db: &AppPool) -> Result<(), sqlx::Error> {
    let filled = search::backfill(db).await?;
    if filled > 0 {
        tracing::info!(tasks = filled, "search columns filled in for older tasks");
    }
    Ok(())
}

async fn start_up_stage(rocket: Rocket<Build>) -> Result<Rocket<Build>, Rocket<Build>> {
    let Some(config) = crate::config::of(&rocket, "tasks") else {
        return Err(rocket);
    };
    if !config.migrate_on_start {
        return Ok(rocket);
    }
    let Some(db) = Db::fetch(&rocket) else {
        tracing::error!("the tasks stage needs db::stage() attached before it");
        return Err(rocket);
    };
    match start_up(db).await {
        Ok(()) => Ok(rocket),
        Err(error) => {
            tracing::error!(%error, "filling in the search columns failed");
            Err(rocket)
        }
    }
}

/// The tasks module: mounts its routes under `/api`, and fills the search columns after
/// the migrations (attached by `db::stage()` before it, so they run first).
pub fn stage() -> AdHoc {
    AdHoc::on_ignite("Tasks", |rocket| async {
        rocket
            .manage(changes::ChangeHooks::default())
            .mount("/api", crate::telemetry::traced(routes::routes()))
            .attach(AdHoc::try_on_ignite("Tasks start-up", start_up_stage))
    })
}

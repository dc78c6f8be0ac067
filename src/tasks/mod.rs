//! Tasks: the model, its SQL and its routes under `/api/<user_id>/tasks`.

pub mod etag;
pub mod model;
pub mod query;
mod routes;
pub mod search;
pub mod store;

pub use routes::TasksApi;

use rocket::fairing::AdHoc;

/// The tasks module: mounts its routes under `/api`.
pub fn stage() -> AdHoc {
    AdHoc::on_ignite("Tasks", |rocket| async {
        rocket.mount("/api", crate::telemetry::traced(routes::routes()))
    })
}

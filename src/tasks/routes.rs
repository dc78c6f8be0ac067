//! Task routes, mounted under `/api`. Each handler: parse → one store call → response.
//!
//! `AuthedUser` comes first in every signature: Rocket runs request guards before path
//! and body guards, which gives the contract's 401 → 403 → 404/422 order.

use rocket::http::{RawStr, Status};
use rocket::response::status::Created;
use rocket::serde::json::Json;
use rocket::Route;
use serde::Serialize;

use crate::auth::AuthedUser;
use crate::db::Db;
use crate::error::{ApiError, JsonObject, OptionalJsonObject};

use super::model::{InputMode, NewTask, Task, TaskChanges};
use super::store::{self, InvalidTaskId, TaskId};

const NO_SUCH_TASK: ApiError = ApiError::NotFound("Task not found");

type TaskIdParam = Result<TaskId, InvalidTaskId>;

fn found(task: Option<Task>) -> Result<Json<Task>, ApiError> {
    task.map(Json).ok_or(NO_SUCH_TASK)
}

/// `GET /api/<user_id>/tasks`: the user's tasks, newest first.
#[get("/<user_id>/tasks")]
#[tracing::instrument(name = "tasks.list", skip_all, fields(user = %user_id))]
async fn list(user_id: &str, user: AuthedUser, db: &Db) -> Result<Json<Vec<Task>>, ApiError> {
    Ok(Json(store::list(db, &user).await?))
}

/// `POST /api/<user_id>/tasks`: creates a task; 201 with `Location`.
#[post("/<user_id>/tasks", data = "<body>")]
#[tracing::instrument(name = "tasks.create", skip_all, fields(user = %user_id))]
async fn create(
    user_id: &str,
    user: AuthedUser,
    db: &Db,
    body: JsonObject,
) -> Result<Created<Json<Task>>, ApiError> {
    let new_task = NewTask::parse(&body.0)?;
    let task = store::create(db, &user, new_task).await?;
    let location = format!(
        "/api/{}/tasks/{}",
        RawStr::new(user.id()).percent_encode(),
        task.id
    );
    Ok(Created::new(location).body(Json(task)))
}

/// `GET /api/<user_id>/tasks/<id>`: one task.
#[get("/<user_id>/tasks/<id>")]
#[tracing::instrument(name = "tasks.get", skip_all, fields(user = %user_id))]
async fn get(
    user_id: &str,
    user: AuthedUser,
    id: TaskIdParam,
    db: &Db,
) -> Result<Json<Task>, ApiError> {
    found(store::get(db, &user, id?).await?)
}

async fn apply(
    user: &AuthedUser,
    db: &Db,
    id: TaskIdParam,
    body: &JsonObject,
    mode: InputMode,
) -> Result<Json<Task>, ApiError> {
    let id = id?;
    let changes = TaskChanges::parse(&body.0, mode)?;
    if changes.is_empty() {
        return found(store::get(db, user, id).await?);
    }
    found(store::update(db, user, id, changes).await?)
}

/// `PUT /api/<user_id>/tasks/<id>`: `title` required; absent optional fields keep their
/// value, explicit `null` clears.
#[put("/<user_id>/tasks/<id>", data = "<body>")]
#[tracing::instrument(name = "tasks.replace", skip_all, fields(user = %user_id))]
async fn replace(
    user_id: &str,
    user: AuthedUser,
    id: TaskIdParam,
    db: &Db,
    body: JsonObject,
) -> Result<Json<Task>, ApiError> {
    apply(&user, db, id, &body, InputMode::Replace).await
}

/// `PATCH /api/<user_id>/tasks/<id>`: JSON merge patch of the writable fields.
#[patch("/<user_id>/tasks/<id>", data = "<body>")]
#[tracing::instrument(name = "tasks.patch", skip_all, fields(user = %user_id))]
async fn patch(
    user_id: &str,
    user: AuthedUser,
    id: TaskIdParam,
    db: &Db,
    body: JsonObject,
) -> Result<Json<Task>, ApiError> {
    apply(&user, db, id, &body, InputMode::Patch).await
}

/// `PATCH /api/<user_id>/tasks/<id>/complete`: no body toggles; `{"completed": b}` sets.
#[patch("/<user_id>/tasks/<id>/complete", data = "<body>")]
#[tracing::instrument(name = "tasks.complete", skip_all, fields(user = %user_id))]
async fn complete(
    user_id: &str,
    user: AuthedUser,
    id: TaskIdParam,
    db: &Db,
    body: OptionalJsonObject,
) -> Result<Json<Task>, ApiError> {
    let id = id?;
    let value = match body.0 {
        None => None,
        Some(object) => match object.get("completed") {
            Some(serde_json::Value::Bool(value)) => Some(*value),
            None => None,
            Some(_) => {
                return Err(ApiError::field(
                    "completed",
                    "Completed must be true or false",
                ))
            }
        },
    };
    found(store::set_completed(db, &user, id, value).await?)
}

/// `DELETE /api/<user_id>/tasks/<id>`: 204 with no body.
#[delete("/<user_id>/tasks/<id>")]
#[tracing::instrument(name = "tasks.delete", skip_all, fields(user = %user_id))]
async fn delete(
    user_id: &str,
    user: AuthedUser,
    id: TaskIdParam,
    db: &Db,
) -> Result<Status, ApiError> {
    if store::delete(db, &user, id?).await? {
        Ok(Status::NoContent)
    } else {
        Err(NO_SUCH_TASK)
    }
}

/// The answer of a bulk delete.
#[derive(Debug, Serialize)]
pub struct Deleted {
    /// How many tasks were deleted.
    pub deleted: u64,
}

/// `DELETE /api/<user_id>/tasks?completed=true`: clears the user's completed tasks.
#[delete("/<user_id>/tasks?<completed>")]
#[tracing::instrument(name = "tasks.clear_completed", skip_all, fields(user = %user_id))]
async fn clear_completed(
    user_id: &str,
    user: AuthedUser,
    completed: Option<&str>,
    db: &Db,
) -> Result<Json<Deleted>, ApiError> {
    if completed != Some("true") {
        return Err(ApiError::field(
            "completed",
            "Only completed tasks can be cleared: send completed=true",
        ));
    }
    let deleted = store::delete_completed(db, &user).await?;
    Ok(Json(Deleted { deleted }))
}

/// Every task route, to be mounted under `/api`.
pub fn routes() -> Vec<Route> {
    routes![
        list,
        create,
        get,
        replace,
        patch,
        complete,
        delete,
        clear_completed
    ]
}

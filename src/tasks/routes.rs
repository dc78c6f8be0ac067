//! Task routes, mounted under `/api`. Each handler: parse → one store call → response.
//!
//! `AuthedUser` comes first in every signature: Rocket runs request guards before path
//! and body guards, which gives the contract's 401 → 403 → 404/422 order.

use rocket::http::uri::Origin;
use rocket::http::{RawStr, Status};
use rocket::request::Request;
use rocket::response::status::Created;
use rocket::response::{self, Responder, Response};
use rocket::serde::json::Json;
use rocket::Route;
use serde::Serialize;

use crate::auth::AuthedUser;
use crate::db::Db;
use crate::error::{ApiError, JsonObject, OptionalJsonObject};

use super::etag::{etag, IfMatch, IfNoneMatch, Tagged};
use super::model::{InputMode, NewTask, Task, TaskChanges};
use super::query::{ListParams, ListQuery};
use super::store::{self, InvalidTaskId, TaskId};

const NO_SUCH_TASK: ApiError = ApiError::NotFound("Task not found");

type TaskIdParam = Result<TaskId, InvalidTaskId>;

fn found(task: Option<Task>) -> Result<Tagged, ApiError> {
    task.map(Tagged::Task).ok_or(NO_SUCH_TASK)
}

/// A list answer: the tasks, `X-Total-Count` and an RFC 8288 `Link` for next / prev.
pub struct TaskPage {
    tasks: Vec<Task>,
    total: i64,
    link: Option<String>,
}

impl<'r> Responder<'r, 'static> for TaskPage {
    fn respond_to(self, request: &'r Request<'_>) -> response::Result<'static> {
        let mut response = Response::build_from(Json(self.tasks).respond_to(request)?);
        response.raw_header("X-Total-Count", self.total.to_string());
        if let Some(link) = self.link {
            response.raw_header("Link", link);
        }
        response.ok()
    }
}

/// The `Link` header: the request's own query with `limit` and `offset` replaced.
fn page_links(uri: &Origin<'_>, query: &ListQuery, total: i64) -> Option<String> {
    let kept: Vec<&str> = uri
        .query()
        .map(|q| q.as_str().split('&'))
        .into_iter()
        .flatten()
        .filter(|p| !p.is_empty() && !p.starts_with("limit=") && !p.starts_with("offset="))
        .collect();
    let link = |offset: i64, rel: &str| {
        let mut params = kept.clone();
        let page = format!("limit={}&offset={offset}", query.limit);
        params.push(&page);
        format!("<{}?{}>; rel=\"{rel}\"", uri.path(), params.join("&"))
    };
    let mut links = Vec::new();
    if query.offset + query.limit < total {
        links.push(link(query.offset + query.limit, "next"));
    }
    if query.offset > 0 {
        links.push(link((query.offset - query.limit).max(0), "prev"));
    }
    (!links.is_empty()).then(|| links.join(", "))
}

/// `GET /api/<user_id>/tasks`: the user's tasks, filtered, sorted and paged.
#[get("/<user_id>/tasks?<params..>")]
#[tracing::instrument(name = "tasks.list", skip_all, fields(user = %user_id))]
async fn list(
    user_id: &str,
    user: AuthedUser,
    params: ListParams,
    uri: &Origin<'_>,
    db: &Db,
) -> Result<TaskPage, ApiError> {
    let query = params.parse()?;
    let page = store::list(db, &user, &query).await?;
    Ok(TaskPage {
        link: page_links(uri, &query, page.total),
        tasks: page.tasks,
        total: page.total,
    })
}

/// `POST /api/<user_id>/tasks`: creates a task; 201 with `Location` and `ETag`.
#[post("/<user_id>/tasks", data = "<body>")]
#[tracing::instrument(name = "tasks.create", skip_all, fields(user = %user_id))]
async fn create(
    user_id: &str,
    user: AuthedUser,
    db: &Db,
    body: JsonObject,
) -> Result<Created<Tagged>, ApiError> {
    let new_task = NewTask::parse(&body.0)?;
    let task = store::create(db, &user, new_task).await?;
    let location = format!(
        "/api/{}/tasks/{}",
        RawStr::new(user.id()).percent_encode(),
        task.id
    );
    Ok(Created::new(location).body(Tagged::Task(task)))
}

/// `GET /api/<user_id>/tasks/<id>`: one task with its `ETag`; 304 when `If-None-Match`
/// names the current one.
#[get("/<user_id>/tasks/<id>")]
#[tracing::instrument(name = "tasks.get", skip_all, fields(user = %user_id))]
async fn get(
    user_id: &str,
    user: AuthedUser,
    id: TaskIdParam,
    if_none_match: IfNoneMatch,
    db: &Db,
) -> Result<Tagged, ApiError> {
    let task = store::get(db, &user, id?).await?.ok_or(NO_SUCH_TASK)?;
    if if_none_match.has(&task) {
        return Ok(Tagged::NotModified(etag(&task)));
    }
    Ok(Tagged::Task(task))
}

async fn apply(
    user: &AuthedUser,
    db: &Db,
    id: TaskIdParam,
    if_match: &IfMatch,
    body: &JsonObject,
    mode: InputMode,
) -> Result<Tagged, ApiError> {
    let id = id?;
    let changes = TaskChanges::parse(&body.0, mode)?;
    if changes.is_empty() {
        // Nothing is written, so the precondition is checked against a plain read.
        let task = store::get(db, user, id).await?.ok_or(NO_SUCH_TASK)?;
        if !if_match.matches(&task) {
            return Err(ApiError::PreconditionFailed);
        }
        return Ok(Tagged::Task(task));
    }
    let expected = if_match.versions(id);
    found(store::update(db, user, id, changes, expected.as_deref()).await?)
}

/// `PUT /api/<user_id>/tasks/<id>`: `title` required; absent optional fields keep their
/// value, explicit `null` clears.
#[put("/<user_id>/tasks/<id>", data = "<body>")]
#[tracing::instrument(name = "tasks.replace", skip_all, fields(user = %user_id))]
async fn replace(
    user_id: &str,
    user: AuthedUser,
    id: TaskIdParam,
    if_match: IfMatch,
    db: &Db,
    body: JsonObject,
) -> Result<Tagged, ApiError> {
    apply(&user, db, id, &if_match, &body, InputMode::Replace).await
}

/// `PATCH /api/<user_id>/tasks/<id>`: JSON merge patch of the writable fields.
#[patch("/<user_id>/tasks/<id>", data = "<body>")]
#[tracing::instrument(name = "tasks.patch", skip_all, fields(user = %user_id))]
async fn patch(
    user_id: &str,
    user: AuthedUser,
    id: TaskIdParam,
    if_match: IfMatch,
    db: &Db,
    body: JsonObject,
) -> Result<Tagged, ApiError> {
    apply(&user, db, id, &if_match, &body, InputMode::Patch).await
}

/// `PATCH /api/<user_id>/tasks/<id>/complete`: no body toggles; `{"completed": b}` sets.
#[patch("/<user_id>/tasks/<id>/complete", data = "<body>")]
#[tracing::instrument(name = "tasks.complete", skip_all, fields(user = %user_id))]
async fn complete(
    user_id: &str,
    user: AuthedUser,
    id: TaskIdParam,
    if_match: IfMatch,
    db: &Db,
    body: OptionalJsonObject,
) -> Result<Tagged, ApiError> {
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
    let expected = if_match.versions(id);
    found(store::set_completed(db, &user, id, value, expected.as_deref()).await?)
}

/// `DELETE /api/<user_id>/tasks/<id>`: 204 with no body.
#[delete("/<user_id>/tasks/<id>")]
#[tracing::instrument(name = "tasks.delete", skip_all, fields(user = %user_id))]
async fn delete(
    user_id: &str,
    user: AuthedUser,
    id: TaskIdParam,
    if_match: IfMatch,
    db: &Db,
) -> Result<Status, ApiError> {
    let id = id?;
    if store::delete(db, &user, id, if_match.versions(id).as_deref()).await? {
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

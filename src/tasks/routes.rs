//! Task routes, mounted under `/api`. Each handler: parse → one store call → response.
//!
//! `AuthedUser` comes first in every signature: Rocket runs request guards before path
//! and body guards, which gives the contract's 401 → 403 → 404/422 order.

use rocket::http::uri::Origin;
use rocket::http::ContentType;
use rocket::request::Request;
use rocket::response::{self, Responder, Response};
use std::sync::Arc;

use rocket::{Route, State};
use serde::Serialize;

use crate::auth::AuthedUser;
use crate::body::{BodyErrors, JsonObject, OptionalJsonObject};
use crate::db::Db;
use crate::error::ApiError;

use super::etag::{etag, IfMatch, IfMatchHeader, IfNoneMatch, Tagged};
use super::idempotency::{self, Answer, IdempotencyKey, Work};
use super::model::{
    parse_completion, CompleteBody, InputMode, InvalidTaskId, NewTask, Priority, Task, TaskChanges,
    TaskId, TaskPath, TaskView,
};
use super::query::{ListParams, ListQuery, SortField, SortOrder, StatusFilter};
use super::store;
use super::writer::Writer;
#[allow(unused_imports)]
use crate::error::ErrorBody;

const NO_SUCH_TASK: ApiError = ApiError::NotFound("Task not found");

type TaskIdParam = Result<TaskId, InvalidTaskId>;

/// A list answer: the tasks, `X-Total-Count` and an RFC 8288 `Link` for next / prev.
pub struct TaskPage {
    /// The page's rows, written as JSON straight from them.
    rows: store::PageRows,
    total: i64,
    link: Option<String>,
}

impl<'r> Responder<'r, 'static> for TaskPage {
    fn respond_to(self, request: &'r Request<'_>) -> response::Result<'static> {
        let envelope = request
            .rocket()
            .state::<crate::config::AppConfig>()
            .and_then(|config| config.list_envelope);
        let json = match page_json(&self.rows, envelope, self.total) {
            Ok(json) => json,
            Err(error) => return error.respond_to(request),
        };
        let mut response = Response::build();
        response
            .header(ContentType::JSON)
            .sized_body(json.len(), std::io::Cursor::new(json));
        response.raw_header("X-Total-Count", self.total.to_string());
        if let Some(link) = self.link {
            response.raw_header("Link", link);
        }
        response.ok()
    }
}

/// A page's JSON: the array of its tasks, or that array in `LIST_ENVELOPE`'s object.
fn page_json(
    rows: &store::PageRows,
    envelope: Option<&'static str>,
    total: i64,
) -> Result<Vec<u8>, ApiError> {
    let tasks = rows.views()?;
    // Sized up front (a task is a few hundred bytes of JSON): the buffer is not grown and
    // copied again and again as the page is written.
    let mut json = Vec::with_capacity(64 + tasks.len() * 400);
    match envelope {
        None => serde_json::to_writer(&mut json, &tasks),
        Some(key) => serde_json::to_writer(
            &mut json,
            &Enveloped {
                key,
                tasks: &tasks,
                total,
            },
        ),
    }
    .map_err(|e| ApiError::Internal(e.into()))?;
    Ok(json)
}

/// A list answer as `LIST_ENVELOPE` shapes it: `{"<key>": [...], "total": n}`.
struct Enveloped<'a> {
    key: &'static str,
    tasks: &'a [TaskView<'a>],
    total: i64,
}

impl Serialize for Enveloped<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap as _;
        let mut map = serializer.serialize_map(Some(2))?;
        map.serialize_entry(self.key, self.tasks)?;
        map.serialize_entry("total", &self.total)?;
        map.end()
    }
}

/// The `Link` header: the request's own query with `limit` and `offset` replaced.
fn page_links(
    uri: &Origin<'_>,
    user: &AuthedUser,
    query: &ListQuery,
    total: i64,
) -> Option<String> {
    let path = format!("{}/tasks", user.api_base());
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
        format!("<{path}?{}>; rel=\"{rel}\"", params.join("&"))
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
#[utoipa::path(
    get,
    path = "/api/{user_id}/tasks",
    tag = "tasks",
    summary = "List the user's tasks",
    operation_id = "listTasks",
    description = "Filters combine with AND. Default order: `created_at` newest first, ties broken \
        by `id`, so paging never repeats or skips a task. A parameter given twice, or an unknown \
        value of a known parameter, is a 422 naming it.",
    params(
        ("user_id" = String, Path, description = "The token's `sub`", example = "usr_8fJ2"),
        ListParams,
    ),
    responses(
        (status = 200, description = "One page of tasks", body = [Task],
            headers(
                ("X-Total-Count" = i64, description = "Tasks matching the filters, on every page"),
                ("Link" = String, description = "RFC 8288 `next` / `prev` page URLs, when there are such pages"),
            )),
        (status = 422, description = "A parameter breaks a rule; `field_errors` names it", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[get("/<user_id>/tasks?<params..>")]
#[tracing::instrument(name = "tasks.list", level = "debug", skip_all, fields(user = %user_id))]
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
        link: page_links(uri, &user, &query, page.total),
        rows: page.rows,
        total: page.total,
    })
}

/// `POST /api/<user_id>/tasks`: creates a task; 201 with `Location` and `ETag`.
#[utoipa::path(
    post,
    path = "/api/{user_id}/tasks",
    tag = "tasks",
    summary = "Create a task",
    operation_id = "createTask",
    description = "A `user_id` in the body is ignored: the task belongs to the path's user.",
    params(("user_id" = String, Path, description = "The token's `sub`")),
    request_body(content = NewTask, content_type = "application/json"),
    responses(
        (status = 201, description = "Created", body = Task,
            headers(("Location" = String, description = "The new task's URL"), ("ETag" = String, description = "The task's entity tag"))),
        (status = 422, description = "Fields break rules; `field_errors` names each", body = ErrorBody),
        BodyErrors,
    ),
    security(("bearer" = []))
)]
#[post("/<user_id>/tasks", data = "<body>")]
#[tracing::instrument(name = "tasks.create", level = "debug", skip_all, fields(user = %user_id))]
async fn create(
    user_id: &str,
    user: AuthedUser,
    db: &Db,
    writer: &State<Arc<Writer>>,
    key: IdempotencyKey,
    uri: &Origin<'_>,
    body: JsonObject,
) -> Result<Answer, ApiError> {
    let new_task = NewTask::parse(&body.0)?;
    let fingerprint = || idempotency::fingerprint("POST", &uri.to_string(), Some(&body.0));
    let (shared, owner) = (Arc::clone(writer), user.clone());
    let work: Work = Box::new(move |scope| {
        Box::pin(async move {
            let task = store::create(scope, &shared, &owner, new_task).await?;
            let location = format!("{}/tasks/{}", owner.api_base(), task.id);
            Answer::task(201, &task, Some(location))
        })
    });
    idempotency::run(db, writer, &user, key, fingerprint, work).await
}

/// `GET /api/<user_id>/tasks/<id>`: one task with its `ETag`; 304 when `If-None-Match`
/// names the current one.
#[utoipa::path(
    get,
    path = "/api/{user_id}/tasks/{id}",
    tag = "tasks",
    summary = "Read a task",
    operation_id = "getTask",
    params(
        TaskPath,
        ("If-None-Match" = Option<String>, Header, description = "An `ETag` the client holds: 304 when it is current"),
    ),
    responses(
        (status = 200, description = "The task", body = Task, headers(("ETag" = String, description = "The task's entity tag"))),
        (status = 304, description = "The client's copy is current (no body)", headers(("ETag" = String))),
        (status = 404, description = "No such task for this user", body = ErrorBody),
        (status = 422, description = "The id is not a positive integer", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[get("/<user_id>/tasks/<id>")]
#[tracing::instrument(name = "tasks.get", level = "debug", skip_all, fields(user = %user_id))]
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

/// A PUT or PATCH of one task, run once per `Idempotency-Key`.
#[allow(clippy::too_many_arguments)]
async fn apply(
    method: &str,
    uri: &Origin<'_>,
    user: AuthedUser,
    db: &Db,
    writer: &State<Arc<Writer>>,
    key: IdempotencyKey,
    id: TaskIdParam,
    if_match: IfMatch,
    body: JsonObject,
    mode: InputMode,
) -> Result<Answer, ApiError> {
    let id = id?;
    let changes = TaskChanges::parse(&body.0, mode)?;
    let fingerprint = || idempotency::fingerprint(method, &uri.to_string(), Some(&body.0));
    let (shared, owner) = (Arc::clone(writer), user.clone());
    let work: Work = Box::new(move |scope| {
        Box::pin(async move {
            let task = if changes.is_empty() {
                // Nothing is written, so the precondition is checked against a plain read.
                let task = store::get_in(scope, &owner, id)
                    .await?
                    .ok_or(NO_SUCH_TASK)?;
                if !if_match.matches(&task) {
                    return Err(ApiError::PreconditionFailed);
                }
                task
            } else {
                let precondition = if_match.precondition(id);
                store::update(scope, &shared, &owner, id, changes, &precondition)
                    .await?
                    .ok_or(NO_SUCH_TASK)?
            };
            Answer::task(200, &task, None)
        })
    });
    idempotency::run(db, writer, &user, key, fingerprint, work).await
}

/// `PUT /api/<user_id>/tasks/<id>`: `title` required; absent optional fields keep their
/// value, explicit `null` clears.
#[utoipa::path(
    put,
    path = "/api/{user_id}/tasks/{id}",
    tag = "tasks",
    summary = "Replace a task",
    operation_id = "replaceTask",
    description = "`title` is required; absent optional fields keep their value; explicit `null` clears.",
    params(
        TaskPath,
        IfMatchHeader,
    ),
    request_body(content = NewTask, content_type = "application/json"),
    responses(
        (status = 200, description = "The updated task", body = Task, headers(("ETag" = String))),
        TaskWriteErrors,
        BodyErrors,
    ),
    security(("bearer" = []))
)]
#[put("/<user_id>/tasks/<id>", data = "<body>")]
#[tracing::instrument(name = "tasks.replace", level = "debug", skip_all, fields(user = %user_id))]
#[allow(clippy::too_many_arguments)]
async fn replace(
    user_id: &str,
    user: AuthedUser,
    id: TaskIdParam,
    if_match: IfMatch,
    db: &Db,
    writer: &State<Arc<Writer>>,
    key: IdempotencyKey,
    uri: &Origin<'_>,
    body: JsonObject,
) -> Result<Answer, ApiError> {
    apply(
        "PUT",
        uri,
        user,
        db,
        writer,
        key,
        id,
        if_match,
        body,
        InputMode::Replace,
    )
    .await
}

/// `PATCH /api/<user_id>/tasks/<id>`: JSON merge patch of the writable fields.
#[utoipa::path(
    patch,
    path = "/api/{user_id}/tasks/{id}",
    tag = "tasks",
    summary = "Change some fields of a task (JSON merge patch)",
    operation_id = "patchTask",
    params(
        TaskPath,
        IfMatchHeader,
    ),
    request_body(content(
        (TaskChanges = "application/merge-patch+json"),
        (TaskChanges = "application/json"),
    )),
    responses(
        (status = 200, description = "The updated task", body = Task, headers(("ETag" = String))),
        TaskWriteErrors,
        BodyErrors,
    ),
    security(("bearer" = []))
)]
#[patch("/<user_id>/tasks/<id>", data = "<body>")]
#[tracing::instrument(name = "tasks.patch", level = "debug", skip_all, fields(user = %user_id))]
#[allow(clippy::too_many_arguments)]
async fn patch(
    user_id: &str,
    user: AuthedUser,
    id: TaskIdParam,
    if_match: IfMatch,
    db: &Db,
    writer: &State<Arc<Writer>>,
    key: IdempotencyKey,
    uri: &Origin<'_>,
    body: JsonObject,
) -> Result<Answer, ApiError> {
    apply(
        "PATCH",
        uri,
        user,
        db,
        writer,
        key,
        id,
        if_match,
        body,
        InputMode::Patch,
    )
    .await
}

/// `PATCH /api/<user_id>/tasks/<id>/complete`: no body toggles; `{"completed": b}` sets.
#[utoipa::path(
    patch,
    path = "/api/{user_id}/tasks/{id}/complete",
    tag = "tasks",
    summary = "Toggle or set completion",
    operation_id = "completeTask",
    description = "No body flips `completed` atomically (n concurrent toggles flip it n times); \
        `{\"completed\": true|false}` sets it.",
    params(
        TaskPath,
        IfMatchHeader,
    ),
    request_body(content = Option<CompleteBody>, content_type = "application/json"),
    responses(
        (status = 200, description = "The updated task", body = Task, headers(("ETag" = String))),
        TaskWriteErrors,
        BodyErrors,
    ),
    security(("bearer" = []))
)]
#[patch("/<user_id>/tasks/<id>/complete", data = "<body>")]
#[tracing::instrument(name = "tasks.complete", level = "debug", skip_all, fields(user = %user_id))]
#[allow(clippy::too_many_arguments)]
async fn complete(
    user_id: &str,
    user: AuthedUser,
    id: TaskIdParam,
    if_match: IfMatch,
    db: &Db,
    writer: &State<Arc<Writer>>,
    key: IdempotencyKey,
    uri: &Origin<'_>,
    body: OptionalJsonObject,
) -> Result<Answer, ApiError> {
    let id = id?;
    let value = parse_completion(body.0.as_ref())?;
    let fingerprint = || idempotency::fingerprint("PATCH", &uri.to_string(), body.0.as_ref());
    let (shared, owner) = (Arc::clone(writer), user.clone());
    let work: Work = Box::new(move |scope| {
        Box::pin(async move {
            let precondition = if_match.precondition(id);
            let task = store::set_completed(scope, &shared, &owner, id, value, &precondition)
                .await?
                .ok_or(NO_SUCH_TASK)?;
            Answer::task(200, &task, None)
        })
    });
    idempotency::run(db, writer, &user, key, fingerprint, work).await
}

/// `DELETE /api/<user_id>/tasks/<id>`: 204 with no body.
#[utoipa::path(
    delete,
    path = "/api/{user_id}/tasks/{id}",
    tag = "tasks",
    summary = "Delete a task",
    operation_id = "deleteTask",
    params(
        TaskPath,
        IfMatchHeader,
    ),
    responses(
        (status = 204, description = "Deleted (no body)"),
        TaskWriteErrors,
    ),
    security(("bearer" = []))
)]
#[delete("/<user_id>/tasks/<id>")]
#[tracing::instrument(name = "tasks.delete", level = "debug", skip_all, fields(user = %user_id))]
#[allow(clippy::too_many_arguments)]
async fn delete(
    user_id: &str,
    user: AuthedUser,
    id: TaskIdParam,
    if_match: IfMatch,
    db: &Db,
    writer: &State<Arc<Writer>>,
    key: IdempotencyKey,
    uri: &Origin<'_>,
) -> Result<Answer, ApiError> {
    let id = id?;
    let fingerprint = || idempotency::fingerprint("DELETE", &uri.to_string(), None);
    let (shared, owner) = (Arc::clone(writer), user.clone());
    let work: Work = Box::new(move |scope| {
        Box::pin(async move {
            let precondition = if_match.precondition(id);
            if store::delete(scope, &shared, &owner, id, &precondition).await? {
                Ok(Answer::empty(204))
            } else {
                Err(NO_SUCH_TASK)
            }
        })
    });
    idempotency::run(db, writer, &user, key, fingerprint, work).await
}

/// The answers a write to one task can fail with besides the body's and the shared ones.
/// Documentation only, like [`BodyErrors`]: never constructed.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum TaskWriteErrors {
    /// `not_found`.
    #[response(status = 404, description = "`not_found`: no such task for this user")]
    NotFound(ErrorBody),
    /// `precondition_failed`.
    #[response(
        status = 412,
        description = "`precondition_failed`: `If-Match` names an outdated version; nothing was written"
    )]
    Stale(ErrorBody),
    /// `validation_error`.
    #[response(
        status = 422,
        description = "`validation_error`: the id is not a positive integer, or a field breaks a rule; `field_errors` names each"
    )]
    Invalid(ErrorBody),
}

/// The answer of a bulk delete.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Deleted {
    /// How many tasks were deleted.
    pub deleted: u64,
}

/// `DELETE /api/<user_id>/tasks?completed=true`: clears the user's completed tasks.
#[utoipa::path(
    delete,
    path = "/api/{user_id}/tasks",
    tag = "tasks",
    summary = "Clear the user's completed tasks",
    operation_id = "clearCompletedTasks",
    description = "One statement. Without `completed=true` nothing is deleted and the answer is 422.",
    params(
        ("user_id" = String, Path, description = "The token's `sub`"),
        ("completed" = bool, Query, description = "Must be `true`"),
    ),
    responses(
        (status = 200, description = "How many were deleted", body = Deleted, example = json!({"deleted": 3})),
        (status = 422, description = "`completed=true` is missing", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[delete("/<user_id>/tasks?<completed>")]
#[tracing::instrument(name = "tasks.clear_completed", level = "debug", skip_all, fields(user = %user_id))]
async fn clear_completed(
    user_id: &str,
    user: AuthedUser,
    completed: Option<&str>,
    db: &Db,
    writer: &State<Arc<Writer>>,
    key: IdempotencyKey,
    uri: &Origin<'_>,
) -> Result<Answer, ApiError> {
    if completed != Some("true") {
        return Err(ApiError::field(
            "completed",
            "Only completed tasks can be cleared: send completed=true",
        ));
    }
    let fingerprint = || idempotency::fingerprint("DELETE", &uri.to_string(), None);
    let (shared, owner) = (Arc::clone(writer), user.clone());
    let work: Work = Box::new(move |scope| {
        Box::pin(async move {
            let deleted = store::delete_completed(scope, &shared, &owner).await?;
            Answer::json(&Deleted { deleted })
        })
    });
    idempotency::run(db, writer, &user, key, fingerprint, work).await
}

/// The OpenAPI description of the task routes.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(list, create, get, replace, patch, complete, delete, clear_completed),
    components(schemas(
        Task,
        NewTask,
        TaskChanges,
        CompleteBody,
        Deleted,
        Priority,
        StatusFilter,
        SortField,
        SortOrder
    ))
)]
pub struct TasksApi;

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

//! The OpenAPI 3.1 document (utoipa) at `/openapi.json`, and Swagger UI at `/docs` from the
//! assets compiled into the binary (nothing is fetched at build or run time).
//!
//! Each module describes its own routes (`TasksApi`, `StatsApi`, …); [`document`] merges
//! them and adds what every route shares: the bearer scheme, the error responses any
//! `/api/` call can meet, and the `X-Request-Id` / `RateLimit-*` headers.

use std::io::Cursor;
use std::sync::{Arc, OnceLock};

use rocket::fairing::AdHoc;
use rocket::http::ContentType;
use rocket::response::{self, Responder};
use rocket::{Request, State};
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::schema::{ObjectBuilder, Ref, Type};
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::{ContentBuilder, OpenApi as Document, RefOr};
use utoipa::OpenApi;
use utoipa_swagger_ui::{Config, SwaggerUi};

use crate::error::{ApiError, ErrorBody, ErrorCode};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "todo-api",
        description = "The backend of a multi-user todo app. Every `/api/{user_id}/…` call needs \
            `Authorization: Bearer <token>` whose user is `{user_id}`: a Better Auth `jwt()` token \
            (verified with its JWKS), an HS256 token signed with `BETTER_AUTH_SECRET` \
            (`todo-api token --sub alice` prints one), or with `BETTER_AUTH_SESSIONS=on` a Better \
            Auth session token, raw or in its signed cookie form `TOKEN.SIGNATURE` (a value with \
            exactly two dots is read as a JWT, any other as a session token). The token-scoped \
            twins (`/api/tasks`, …) act for the token's user. Checks run 401 → 403 → 404/422. Every \
            error has the `ErrorBody` shape. A task id that belongs to another user answers 404, \
            exactly like a missing one."
    ),
    components(schemas(ErrorBody, ErrorCode)),
    tags(
        (name = "tasks", description = "The user's tasks"),
        (name = "stats", description = "Statistics"),
        (name = "events", description = "Live task events (Server-Sent Events)"),
        (name = "sync", description = "Incremental sync for offline clients"),
        (name = "health", description = "Probes for the hosting platform"),
        (name = "operations", description = "Operator endpoints"),
        (name = "accounts", description = "Better Auth's email-and-password server, with \
            `BETTER_AUTH_SERVER=on` (the debug default). Its answers are Better Auth's: errors are \
            `AuthError` (`{message, code}`), an unknown path or method is an empty 404. Every \
            route also answers under `/api/v1/auth/`. Every answer that sets a live session \
            cookie carries `set-auth-token` (the signed token, for `Authorization: Bearer`)"),
    )
)]
struct Base;

fn error_response(description: &str, extra_header: Option<(&str, &str)>) -> RefOr<Response> {
    let mut response = ResponseBuilder::new().description(description).content(
        "application/json",
        ContentBuilder::new()
            .schema(Some(Ref::from_schema_name("ErrorBody")))
            .build(),
    );
    if let Some((name, text)) = extra_header {
        response = response.header(name, string_header(text));
    }
    RefOr::T(response.build())
}

fn string_header(description: &str) -> utoipa::openapi::header::Header {
    HeaderBuilder::new()
        .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
        .description(Some(description))
        .build()
}

/// The operations of a path item, for passes over every operation.
fn operations_mut(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.patch,
    ]
    .into_iter()
    .flatten()
}

/// Every write takes an `Idempotency-Key` and may answer 409 for it, or replay an answer.
fn add_idempotency(item: &mut PathItem) {
    use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
    use utoipa::openapi::Required;
    let writes = [
        &mut item.post,
        &mut item.put,
        &mut item.patch,
        &mut item.delete,
    ];
    for operation in writes.into_iter().flatten() {
        let key = ParameterBuilder::new()
            .name("Idempotency-Key")
            .parameter_in(ParameterIn::Header)
            .required(Required::False)
            .description(Some(
                "Makes the write safe to retry: 1–255 printable ASCII characters. The first \
                 request with a key runs and its answer is kept 24 hours for the user; a repeat \
                 with the same request gets that answer again (`Idempotent-Replayed: true`) and \
                 writes nothing; the same key with another request is 422; a repeat while the \
                 first runs is 409 `idempotency_key_in_use`",
            ))
            .schema(Some(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .min_length(Some(1))
                    .max_length(Some(255)),
            ))
            .build();
        operation
            .parameters
            .get_or_insert_with(Vec::new)
            .push(RefOr::T(key));
        operation.responses.responses.insert(
            "409".to_owned(),
            error_response(
                "`idempotency_key_in_use`: a request with this `Idempotency-Key` is still running",
                None,
            ),
        );
    }
}

/// Adds the bearer scheme, the shared error responses and the shared headers.
fn add_shared_parts(doc: &mut Document) {
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some(
                    "A Better Auth JWT (`jwt()` plugin or HS256 with the shared secret), a Better \
                     Auth session token when `BETTER_AUTH_SESSIONS=on`, or `todo-api token --sub \
                     <user>` in development",
                ))
                .build(),
        ),
    );
    components.add_security_scheme(
        "session_cookie",
        SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
            "better-auth.session_token",
            "Better Auth's signed session cookie, when `BETTER_AUTH_COOKIES=on` (its name \
             follows `BETTER_AUTH_COOKIE_PREFIX`; the `__Secure-` form too). Used only when no \
             Authorization header is sent. A POST, PUT, PATCH or DELETE it authenticates must \
             come from an origin in `ALLOWED_ORIGINS` (else 403 `origin_not_allowed`)",
        ))),
    );
    components.add_security_scheme(
        "session_token",
        SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
            "better-auth.session_token",
            "The session cookie the accounts routes set (`__Secure-` over https); on these \
             routes `Authorization: Bearer` with a session token works as well",
        ))),
    );
    for (path, item) in doc.paths.paths.iter_mut() {
        // The accounts routes answer in Better Auth's shape, documented route by route.
        if path.starts_with("/api/auth/") {
            for operation in operations_mut(item) {
                operation
                    .responses
                    .responses
                    .entry("500".to_owned())
                    .or_insert_with(|| {
                        RefOr::T(
                            ResponseBuilder::new()
                                .description("`INTERNAL_SERVER_ERROR`; the log has the detail")
                                .content(
                                    "application/json",
                                    ContentBuilder::new()
                                        .schema(Some(Ref::from_schema_name("AuthError")))
                                        .build(),
                                )
                                .build(),
                        )
                    });
                for response in operation.responses.responses.values_mut() {
                    if let RefOr::T(response) = response {
                        response.headers.insert(
                            "X-Request-Id".to_owned(),
                            RefOr::T(string_header("The request's id (the client's, if sane)")),
                        );
                    }
                }
            }
            continue;
        }
        let api = path.starts_with("/api/");
        if api {
            add_idempotency(item);
        }
        for operation in operations_mut(item) {
            let bearer_only = operation.security.as_ref().is_some_and(|requirements| {
                requirements.len() == 1
                    && requirements[0] == SecurityRequirement::new("bearer", Vec::<String>::new())
            });
            if api && bearer_only {
                if let Some(requirements) = operation.security.as_mut() {
                    requirements.push(SecurityRequirement::new(
                        "session_cookie",
                        Vec::<String>::new(),
                    ));
                }
            }
            let responses = &mut operation.responses.responses;
            for response in responses.values_mut() {
                if let RefOr::T(response) = response {
                    response.headers.insert(
                        "X-Request-Id".to_owned(),
                        RefOr::T(string_header("The request's id (the client's, if sane)")),
                    );
                    if api {
                        for (name, text) in [
                            (
                                "RateLimit-Limit",
                                "Requests per minute allowed to this user",
                            ),
                            ("RateLimit-Remaining", "Requests left now"),
                            (
                                "RateLimit-Reset",
                                "Seconds until the allowance is full again",
                            ),
                        ] {
                            response
                                .headers
                                .insert(name.to_owned(), RefOr::T(string_header(text)));
                        }
                    }
                }
            }
            let mut shared = vec![(
                "500",
                error_response("Anything unexpected; the log has the detail", None),
            )];
            if api {
                shared.extend([
                    (
                        "401",
                        error_response(
                            "`auth_required` (no bearer token) or `invalid_token` (bad signature, \
                             expired, unknown key, wrong issuer or audience; an unknown, \
                             signed-out or expired session)",
                            Some(("WWW-Authenticate", "`Bearer`")),
                        ),
                    ),
                    (
                        "403",
                        error_response("`forbidden`: the path names another user", None),
                    ),
                    (
                        "429",
                        error_response(
                            "`rate_limited`: over the per-user limit",
                            Some(("Retry-After", "Seconds to wait")),
                        ),
                    ),
                ]);
            }
            shared.push((
                "503",
                error_response(
                    "`service_unavailable`: the database, Better Auth's keys or its session table \
                     cannot be reached",
                    Some(("Retry-After", "Seconds to wait")),
                ),
            ));
            for (status, response) in shared {
                responses.entry(status.to_owned()).or_insert(response);
            }
        }
    }
}

/// Documents every `/api/{user_id}/…` operation again under its token-scoped path
/// (`/api/…`, and `/api/dashboard/stats` for the statistics): the same operation, acting for
/// the token's user, without the `user_id` parameter.
fn add_token_scoped_twins(doc: &mut Document) {
    let mut twins = Vec::new();
    for (path, item) in &doc.paths.paths {
        let Some(rest) = path.strip_prefix("/api/{user_id}/") else {
            continue;
        };
        let mut item = item.clone();
        for operation in operations_mut(&mut item) {
            if let Some(parameters) = &mut operation.parameters {
                parameters.retain(|parameter| {
                    !matches!(parameter, RefOr::T(parameter) if parameter.name == "user_id")
                });
            }
            operation.operation_id = operation
                .operation_id
                .as_ref()
                .map(|id| format!("{id}ForToken"));
            let summary = operation.summary.clone().unwrap_or_default();
            operation.summary = Some(format!("{summary} (the token's user)"));
        }
        if rest == "stats" {
            let mut dashboard = item.clone();
            for operation in [&mut dashboard.get].into_iter().flatten() {
                operation.operation_id = Some("getDashboardStatsForToken".to_owned());
            }
            twins.push(("/api/dashboard/stats".to_owned(), dashboard));
        }
        twins.push((format!("/api/{rest}"), item));
    }
    doc.paths.paths.extend(twins);
}

/// The whole OpenAPI document of the service.
pub fn document() -> Document {
    let mut doc = Base::openapi();
    doc.merge(crate::tasks::TasksApi::openapi());
    doc.merge(crate::stats::StatsApi::openapi());
    doc.merge(crate::events::EventsApi::openapi());
    doc.merge(crate::tasks::sync::SyncApi::openapi());
    doc.merge(crate::health::HealthApi::openapi());
    doc.merge(crate::metrics::MetricsApi::openapi());
    doc.merge(crate::accounts::AccountsApi::openapi());
    add_token_scoped_twins(&mut doc);
    add_shared_parts(&mut doc);
    doc
}

/// The document as served: built and serialized on its first request, then answered from
/// those bytes. Swagger UI's own route would hold the document's tree (a few MiB of maps,
/// in each of Rocket's copies of the route) and clone it whole for every request; built
/// at start-up, the tree's memory would stay with every instance, most of which never
/// serve it.
#[derive(Default)]
struct Served(OnceLock<Arc<[u8]>>);

/// One answer of the document.
struct Json(Arc<[u8]>);

impl<'r> Responder<'r, 'static> for Json {
    fn respond_to(self, _: &'r Request<'_>) -> response::Result<'static> {
        rocket::Response::build()
            .header(ContentType::JSON)
            .sized_body(self.0.len(), Cursor::new(self.0))
            .ok()
    }
}

#[rocket::get("/openapi.json")]
fn served(served: &State<Served>) -> Result<Json, ApiError> {
    if let Some(json) = served.0.get() {
        return Ok(Json(json.clone()));
    }
    let json: Arc<[u8]> = serde_json::to_vec(&document())
        .map_err(|error| anyhow::Error::new(error).context("rendering the OpenAPI document"))?
        .into();
    // Two first requests at once both render it; the first to finish is kept.
    Ok(Json(served.0.get_or_init(|| json).clone()))
}

/// The docs module: `/openapi.json` and Swagger UI at `/docs`.
pub fn stage() -> AdHoc {
    AdHoc::on_ignite("API docs", |rocket| async {
        // The config names the document's url, so the crate mounts no route of its own for it.
        let ui = SwaggerUi::new("/docs/<_..>").config(
            Config::new(["/openapi.json"])
                .persist_authorization(true)
                .try_it_out_enabled(true)
                .display_request_duration(true),
        );
        rocket
            .manage(Served::default())
            .mount("/", crate::telemetry::traced(rocket::routes![served]))
            .mount("/", crate::telemetry::traced(ui))
    })
}

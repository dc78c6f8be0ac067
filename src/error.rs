//! The one error type of the API, its JSON rendering, the catchers that give everything
//! Rocket answers by itself the same shape, and the JSON body data guards.
//!
//! Invariant: a client only ever sees `{detail, error_code, field_errors}`; the cause of a
//! 5xx goes to the log, never into the body.

use std::collections::BTreeMap;
use std::io::Cursor;
use std::sync::Mutex;

use rocket::data::{Data, FromData, Outcome as DataOutcome, ToByteUnit};
use rocket::fairing::{AdHoc, Fairing, Info, Kind};
use rocket::http::uri::Origin;
use rocket::http::{ContentType, Header, Method, Status};
use rocket::request::Request;
use rocket::response::{self, Responder, Response};
use rocket::route::{Handler, Outcome as RouteOutcome, Route};
use serde::Serialize;
use serde_json::{Map, Value};

/// Field name → messages, rendered as `field_errors`.
pub type FieldErrors = BTreeMap<String, Vec<String>>;

/// Collects field errors while a whole input is checked, so a client learns every problem at once.
#[derive(Debug, Default)]
pub struct FieldErrorsBuilder(FieldErrors);

impl FieldErrorsBuilder {
    /// Records one message for `field`.
    pub fn add(&mut self, field: &str, message: impl Into<String>) {
        self.0
            .entry(field.to_owned())
            .or_default()
            .push(message.into());
    }

    /// Unwraps a field result, recording its error and yielding `None` on failure.
    pub fn check<T>(&mut self, field: &str, result: Result<T, String>) -> Option<T> {
        result.map_err(|message| self.add(field, message)).ok()
    }

    /// `Ok(())` when nothing was recorded, else a 422 naming every field.
    pub fn finish(self) -> Result<(), ApiError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ApiError::Validation(self.0))
        }
    }
}

/// Every way a request can fail, one variant per row of the contract's error table.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the body is not JSON, or not a JSON object.
    #[error("malformed JSON body: {0}")]
    MalformedJson(String),
    /// 401: no bearer token.
    #[error("authentication required: {0}")]
    AuthRequired(&'static str),
    /// 401: a token that does not verify.
    #[error("invalid token")]
    InvalidToken,
    /// 403: the path names another user.
    #[error("forbidden")]
    Forbidden,
    /// 403: a CORS preflight from an origin that is not allowed (or not an origin at all),
    /// or asking for a method or header that is not allowed.
    #[error("CORS preflight refused")]
    OriginRefused,
    /// 404: no such task for this user, or no such route.
    #[error("not found: {0}")]
    NotFound(&'static str),
    /// 414: the request's URI is over [`MAX_URI_BYTES`].
    #[error("URI too long")]
    UriTooLong,
    /// 431: the request's headers are over [`MAX_HEADERS`] or [`MAX_HEADER_BYTES`].
    #[error("request headers too large")]
    HeadersTooLarge,
    /// 412: `If-Match` does not match.
    #[error("precondition failed")]
    PreconditionFailed,
    /// 413: the body is over the limit.
    #[error("payload too large")]
    PayloadTooLarge {
        /// The limit, in bytes.
        limit: u64,
    },
    /// 415: the body is not JSON by its content type.
    #[error("unsupported media type")]
    UnsupportedMediaType,
    /// 422: fields or query parameters that break a rule.
    #[error("validation failed: {0:?}")]
    Validation(FieldErrors),
    /// 429: over the per-user limit.
    #[error("rate limited")]
    RateLimited {
        /// Seconds until the client may retry.
        retry_after: u64,
    },
    /// 429: the user already has the most event streams open.
    #[error("too many event streams")]
    TooManyStreams,
    /// 503: the database cannot be reached.
    #[error("database unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    /// 422: the database refused a value the input checks let through.
    #[error("the database refused a value: {source}")]
    Refused {
        /// The field at fault, when the database said which.
        field: Option<&'static str>,
        /// The driver's error, for the log only.
        #[source]
        source: sqlx::Error,
    },
    /// 503: no key to check the token with can be had from the key source right now. Not
    /// a 401, so a frontend does not sign its user out for the service's outage.
    #[error("signing keys unavailable")]
    KeysUnavailable {
        /// Seconds until the key source is tried again.
        retry_after: u64,
    },
    /// 503: Better Auth's session table cannot be asked now. Not a 401, for the same
    /// reason as [`ApiError::KeysUnavailable`].
    #[error("session store unavailable")]
    SessionsUnavailable,
    /// 503: the service cannot serve now, with no more precise cause.
    #[error("service unavailable")]
    Overloaded,
    /// Another 4xx Rocket answered by itself (a 405, a 400 for a URI it cannot parse).
    #[error("request refused with {0}")]
    ClientError(Status),
    /// 500: anything unexpected.
    #[error("internal error: {0:#}")]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    /// A 422 for a single field.
    pub fn field(field: &str, message: impl Into<String>) -> Self {
        let mut errors = FieldErrorsBuilder::default();
        errors.add(field, message);
        Self::Validation(errors.0)
    }

    /// The HTTP status of this error.
    pub fn status(&self) -> Status {
        match self {
            Self::MalformedJson(_) => Status::BadRequest,
            Self::AuthRequired(_) | Self::InvalidToken => Status::Unauthorized,
            Self::Forbidden | Self::OriginRefused => Status::Forbidden,
            Self::NotFound(_) => Status::NotFound,
            Self::PreconditionFailed => Status::PreconditionFailed,
            Self::UriTooLong => Status::UriTooLong,
            Self::HeadersTooLarge => Status::RequestHeaderFieldsTooLarge,
            Self::PayloadTooLarge { .. } => Status::PayloadTooLarge,
            Self::UnsupportedMediaType => Status::UnsupportedMediaType,
            Self::Validation(_) | Self::Refused { .. } => Status::UnprocessableEntity,
            Self::RateLimited { .. } | Self::TooManyStreams => Status::TooManyRequests,
            Self::Unavailable(_)
            | Self::KeysUnavailable { .. }
            | Self::SessionsUnavailable
            | Self::Overloaded => Status::ServiceUnavailable,
            Self::ClientError(status) => *status,
            Self::Internal(_) => Status::InternalServerError,
        }
    }

    /// The contract's `error_code`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::MalformedJson(_) => "malformed_json",
            Self::AuthRequired(_) => "auth_required",
            Self::InvalidToken => "invalid_token",
            Self::Forbidden | Self::OriginRefused => "forbidden",
            Self::NotFound(_) => "not_found",
            Self::PreconditionFailed => "precondition_failed",
            Self::UriTooLong => "uri_too_long",
            Self::HeadersTooLarge => "headers_too_large",
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::Validation(_) | Self::Refused { .. } => "validation_error",
            Self::RateLimited { .. } => "rate_limited",
            Self::TooManyStreams => "too_many_streams",
            Self::Unavailable(_)
            | Self::KeysUnavailable { .. }
            | Self::SessionsUnavailable
            | Self::Overloaded => "service_unavailable",
            Self::ClientError(status) if status.code == 405 => "method_not_allowed",
            Self::ClientError(_) => "bad_request",
            Self::Internal(_) => "internal_error",
        }
    }

    /// The public part of the error: what the client may see.
    pub fn public(&self) -> PublicError {
        let detail = match self {
            Self::MalformedJson(reason) => format!("Request body is not valid JSON: {reason}"),
            Self::AuthRequired(reason) => (*reason).to_owned(),
            Self::InvalidToken => "Token is invalid or expired".to_owned(),
            Self::Forbidden => "You may only access your own tasks".to_owned(),
            Self::OriginRefused => {
                "This origin, method or header is not allowed to call the API (CORS)".to_owned()
            }
            Self::NotFound(what) => (*what).to_owned(),
            Self::PreconditionFailed => {
                "The task has changed since it was read (If-Match)".to_owned()
            }
            Self::UriTooLong => format!("Request URI is longer than {MAX_URI_BYTES} bytes"),
            Self::HeadersTooLarge => format!(
                "Request has more than {MAX_HEADERS} headers or {} KiB of them",
                MAX_HEADER_BYTES / 1024
            ),
            Self::PayloadTooLarge { limit } => {
                format!("Request body is larger than {} KiB", limit / 1024)
            }
            Self::UnsupportedMediaType => "Request body must be application/json".to_owned(),
            Self::Validation(_) => "Request has invalid fields".to_owned(),
            Self::Refused { .. } => "The database refused a value of the request".to_owned(),
            Self::RateLimited { .. } => "Too many requests; slow down".to_owned(),
            Self::TooManyStreams => {
                "Too many event streams are open for this user; close one first".to_owned()
            }
            Self::Unavailable(_) => "The database is unavailable; try again shortly".to_owned(),
            Self::KeysUnavailable { .. } => {
                "Sign-in keys cannot be loaded right now; try again shortly".to_owned()
            }
            Self::Overloaded => "The service is unavailable; try again shortly".to_owned(),
            Self::SessionsUnavailable => {
                "Sessions cannot be checked right now; try again shortly".to_owned()
            }
            Self::ClientError(status) if status.code == 405 => "Method not allowed".to_owned(),
            Self::ClientError(_) => "The request was refused".to_owned(),
            Self::Internal(_) => "An unexpected error occurred".to_owned(),
        };
        PublicError {
            status: self.status(),
            body: ErrorBody {
                detail,
                error_code: self.code(),
                field_errors: match self {
                    Self::Validation(errors) => errors.clone(),
                    Self::Refused {
                        field: Some(field), ..
                    } => FieldErrors::from([(
                        (*field).to_owned(),
                        vec!["The database refused this value".to_owned()],
                    )]),
                    _ => FieldErrors::new(),
                },
            },
            retry_after: match self {
                Self::RateLimited { retry_after } | Self::KeysUnavailable { retry_after } => {
                    Some(*retry_after)
                }
                Self::Unavailable(_) | Self::Overloaded | Self::SessionsUnavailable => Some(5),
                _ => None,
            },
        }
    }

    /// The error Rocket's own status codes stand for, when no guard said more: the
    /// variant of that status where there is one, so each message is written once.
    pub fn for_status(status: Status) -> PublicError {
        let error = match status.code {
            401 => Self::AuthRequired("Authentication required"),
            403 => Self::Forbidden,
            404 => Self::NotFound("No such resource"),
            412 => Self::PreconditionFailed,
            413 => Self::PayloadTooLarge {
                limit: DEFAULT_BODY_LIMIT,
            },
            414 => Self::UriTooLong,
            415 => Self::UnsupportedMediaType,
            422 => Self::Validation(FieldErrors::new()),
            429 => Self::RateLimited { retry_after: 1 },
            431 => Self::HeadersTooLarge,
            503 => Self::Overloaded,
            400..=499 => Self::ClientError(status),
            _ => Self::Internal(anyhow::anyhow!("status {status} without an error")),
        };
        error.public()
    }

    fn log(&self) {
        match self {
            Self::Unavailable(error) => tracing::error!(error = %error, "database unavailable"),
            Self::Refused { field, source } => {
                let sqlstate = match source {
                    sqlx::Error::Database(db) => db.code().map(|c| c.into_owned()),
                    _ => None,
                };
                // The message may quote the value; the code and field say enough.
                tracing::warn!(?sqlstate, field, "the database refused a value")
            }
            Self::Internal(error) => {
                tracing::error!(error = format!("{error:#}"), "internal error")
            }
            _ => {}
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        match classify(&error) {
            DbErrorClass::Unavailable => Self::Unavailable(error),
            DbErrorClass::Refused(field) => Self::Refused {
                field,
                source: error,
            },
            DbErrorClass::Unexpected => Self::Internal(anyhow::Error::new(error)),
        }
    }
}

/// What a database error means for the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbErrorClass {
    /// The database cannot serve now (connection, pool, resources): 503, and the service
    /// recovers by itself.
    Unavailable,
    /// The database refused a value (a data exception or a constraint): 422, naming the
    /// field when the error tells which.
    Refused(Option<&'static str>),
    /// Anything else (a wrong query, a decoding bug): 500.
    Unexpected,
}

/// Classifies a database error by its class, never by its message alone.
pub fn classify(error: &sqlx::Error) -> DbErrorClass {
    match error {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        // The wire conversation broke off (e.g. a connection cut mid-handshake).
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => DbErrorClass::Unavailable,
        // A value the driver could not encode for the database is bad input too.
        sqlx::Error::Encode(_) => DbErrorClass::Refused(None),
        sqlx::Error::Database(db) => {
            let field = || field_named_in(db.as_ref());
            let code = db.code().unwrap_or_default();
            if db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>().is_some() {
                classify_postgres(&code, field)
            } else {
                match code.parse::<i64>() {
                    Ok(code) => classify_sqlite(code, field),
                    Err(_) => DbErrorClass::Unexpected,
                }
            }
        }
        _ => DbErrorClass::Unexpected,
    }
}

/// Classifies a PostgreSQL SQLSTATE; `field` is asked only for refusals.
pub fn classify_postgres(
    sqlstate: &str,
    field: impl FnOnce() -> Option<&'static str>,
) -> DbErrorClass {
    match sqlstate.get(..2).unwrap_or_default() {
        // Connection exception; insufficient resources.
        "08" | "53" => DbErrorClass::Unavailable,
        // Admin or crash shutdown, "cannot connect now".
        "57" if matches!(sqlstate, "57P01" | "57P02" | "57P03") => DbErrorClass::Unavailable,
        // Data exception; integrity constraint violation.
        "22" | "23" => DbErrorClass::Refused(field()),
        _ => DbErrorClass::Unexpected,
    }
}

/// Classifies a SQLite result code (primary or extended: the primary code is its low
/// byte); `field` is asked only for refusals.
pub fn classify_sqlite(code: i64, field: impl FnOnce() -> Option<&'static str>) -> DbErrorClass {
    match code & 0xff {
        // BUSY, LOCKED, NOMEM, READONLY, IOERR, FULL, CANTOPEN, PROTOCOL.
        5 | 6 | 7 | 8 | 10 | 13 | 14 | 15 => DbErrorClass::Unavailable,
        // TOOBIG, CONSTRAINT, MISMATCH, RANGE.
        18 | 19 | 20 | 25 => DbErrorClass::Refused(field()),
        _ => DbErrorClass::Unexpected,
    }
}

/// The task field a refusal names: PostgreSQL gives the constraint and column, SQLite only
/// its message (`CHECK constraint failed: length(title) …`).
fn field_named_in(error: &dyn sqlx::error::DatabaseError) -> Option<&'static str> {
    const FIELDS: [&str; 7] = [
        "user_id",
        "description",
        "category",
        "priority",
        "completed",
        "due_at",
        "title",
    ];
    let mut text = error.message().to_owned();
    if let Some(constraint) = error.constraint() {
        text.push(' ');
        text.push_str(constraint);
    }
    if let Some(pg) = error.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
        if let Some(column) = pg.column() {
            text.push(' ');
            text.push_str(column);
        }
    }
    FIELDS.into_iter().find(|field| text.contains(field))
}

/// The body of every error response.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
#[schema(example = json!({"detail": "Request has invalid fields", "error_code": "validation_error",
    "field_errors": {"title": ["Title is required and cannot be empty"]}}))]
pub struct ErrorBody {
    /// A human-readable message.
    pub detail: String,
    /// A stable machine-readable code: `malformed_json`, `auth_required`, `invalid_token`,
    /// `forbidden`, `not_found`, `precondition_failed`, `payload_too_large`,
    /// `unsupported_media_type`, `validation_error`, `rate_limited`, `internal_error`,
    /// `service_unavailable`.
    #[schema(value_type = String)]
    pub error_code: &'static str,
    /// Field name → messages; empty (never null) when no field is at fault.
    #[schema(value_type = std::collections::BTreeMap<String, Vec<String>>)]
    pub field_errors: FieldErrors,
}

/// The answers of the JSON body guards ([`JsonObject`], [`OptionalJsonObject`]), for the
/// OpenAPI description of every route that takes a body. Documentation only.
#[derive(utoipa::IntoResponses)]
pub enum BodyErrors {
    /// `malformed_json`.
    #[response(
        status = 400,
        description = "`malformed_json`: not JSON, or not an object"
    )]
    Malformed(ErrorBody),
    /// `payload_too_large`.
    #[response(
        status = 413,
        description = "`payload_too_large`: body over the size limit"
    )]
    TooLarge(ErrorBody),
    /// `unsupported_media_type`.
    #[response(status = 415, description = "`unsupported_media_type`: not JSON")]
    MediaType(ErrorBody),
}

/// What a client is told about an error: status, body and the headers that go with it.
#[derive(Debug, Clone)]
pub struct PublicError {
    status: Status,
    body: ErrorBody,
    retry_after: Option<u64>,
}

impl PublicError {
    /// Stashes this error for the catcher: guards cannot hand errors to catchers directly.
    pub fn stash(self, request: &Request<'_>) {
        let slot = request.local_cache(|| StashedError(Mutex::new(None)));
        if let Ok(mut slot) = slot.0.lock() {
            *slot = Some(self);
        }
    }

    fn take_stashed(request: &Request<'_>) -> Option<Self> {
        let slot = request.local_cache(|| StashedError(Mutex::new(None)));
        slot.0.lock().ok().and_then(|mut slot| slot.take())
    }
}

struct StashedError(Mutex<Option<PublicError>>);

impl<'r> Responder<'r, 'static> for PublicError {
    fn respond_to(self, _: &'r Request<'_>) -> response::Result<'static> {
        let json = serde_json::to_vec(&self.body).map_err(|_| Status::InternalServerError)?;
        let mut response = Response::build();
        response
            .status(self.status)
            .header(ContentType::JSON)
            .header(Header::new("Cache-Control", "no-store"))
            .sized_body(json.len(), Cursor::new(json));
        if self.status == Status::Unauthorized {
            response.header(Header::new("WWW-Authenticate", "Bearer"));
        }
        if let Some(seconds) = self.retry_after {
            response.header(Header::new("Retry-After", seconds.to_string()));
        }
        response.ok()
    }
}

impl<'r> Responder<'r, 'static> for ApiError {
    fn respond_to(self, request: &'r Request<'_>) -> response::Result<'static> {
        self.log();
        self.public().respond_to(request)
    }
}

/// Fails a guard with `error`: logs it, stashes its public part for the catcher.
pub fn fail_guard<T, E, F>(
    request: &Request<'_>,
    error: ApiError,
) -> rocket::outcome::Outcome<T, (Status, E), F>
where
    E: From<ApiError>,
{
    error.log();
    let status = error.status();
    error.public().stash(request);
    rocket::outcome::Outcome::Error((status, E::from(error)))
}

#[catch(default)]
fn any_status(status: Status, request: &Request<'_>) -> PublicError {
    match PublicError::take_stashed(request) {
        Some(error) => error,
        None => {
            if status.code >= 500 {
                tracing::error!(status = status.code, "request failed without an API error");
            }
            ApiError::for_status(status)
        }
    }
}

/// Longest request URI (path and query) the service reads.
pub const MAX_URI_BYTES: usize = 8 * 1024;
/// Most request headers the service reads.
pub const MAX_HEADERS: usize = 100;
/// Most bytes of request header names and values the service reads.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;

/// Where [`answer_early`] sends a request.
const EARLY_ROUTE: &str = "/_refused";

/// Answers `request` with `error` from a request fairing, which cannot answer by itself:
/// the error is stashed for the catcher, and the request goes to a route that fails with
/// its status, so no guard or handler of the original route runs.
pub fn answer_early(request: &mut Request<'_>, error: ApiError) {
    error.log();
    error.public().stash(request);
    request.set_method(Method::Get);
    request.set_uri(Origin::path_only(EARLY_ROUTE));
}

/// The route behind [`answer_early`]: fails with the stashed error's status, or 404 when
/// called directly.
#[derive(Clone)]
struct EarlyAnswer;

#[rocket::async_trait]
impl Handler for EarlyAnswer {
    async fn handle<'r>(&self, request: &'r Request<'_>, _: Data<'r>) -> RouteOutcome<'r> {
        let slot = request.local_cache(|| StashedError(Mutex::new(None)));
        let status = slot
            .0
            .lock()
            .ok()
            .and_then(|slot| slot.as_ref().map(|error| error.status));
        RouteOutcome::Error(status.unwrap_or(Status::NotFound))
    }
}

/// Refuses request heads over the service's limits with the contract's body, before any
/// route runs. (hyper refuses heads over its own, larger limits with a bare 431.)
struct HeadLimits;

#[rocket::async_trait]
impl Fairing for HeadLimits {
    fn info(&self) -> Info {
        Info {
            name: "Request head limits",
            kind: Kind::Request,
        }
    }

    async fn on_request(&self, request: &mut Request<'_>, _: &mut Data<'_>) {
        let uri = request.uri();
        let uri_bytes = uri.path().len() + uri.query().map_or(0, |q| q.len() + 1);
        let headers = request.headers();
        let header_bytes: usize = headers
            .iter()
            .map(|h| h.name().as_str().len() + h.value().len())
            .sum();
        if uri_bytes > MAX_URI_BYTES {
            answer_early(request, ApiError::UriTooLong);
        } else if headers.len() > MAX_HEADERS || header_bytes > MAX_HEADER_BYTES {
            answer_early(request, ApiError::HeadersTooLarge);
        }
    }
}

/// Registers the catcher that renders every status Rocket answers itself as the JSON
/// shape, the request head limits, and the route that answers refusals made early.
pub fn stage() -> AdHoc {
    AdHoc::on_ignite("Error catchers", |rocket| async {
        rocket
            .attach(HeadLimits)
            .mount(
                "/",
                crate::telemetry::traced(vec![Route::new(Method::Get, EARLY_ROUTE, EarlyAnswer)]),
            )
            .register("/", catchers![any_status])
    })
}

/// A JSON object body: checks the content type (415), size (413) and syntax (400).
#[derive(Debug)]
pub struct JsonObject(pub Map<String, Value>);

/// Like [`JsonObject`], but an empty body is allowed and yields `None`.
#[derive(Debug)]
pub struct OptionalJsonObject(pub Option<Map<String, Value>>);

/// The body size limit when Rocket.toml does not set `limits.json`.
pub const DEFAULT_BODY_LIMIT: u64 = 64 * 1024;

async fn read_json_object(
    request: &Request<'_>,
    data: Data<'_>,
) -> Result<Option<Map<String, Value>>, ApiError> {
    if let Some(content_type) = request.content_type() {
        let media = content_type.media_type();
        let is_json = media.top() == "application"
            && (media.sub() == "json" || media.sub().as_str().ends_with("+json"));
        if !is_json {
            return Err(ApiError::UnsupportedMediaType);
        }
    }
    let limit = request
        .limits()
        .get("json")
        .unwrap_or_else(|| DEFAULT_BODY_LIMIT.bytes());
    let bytes =
        data.open(limit).into_bytes().await.map_err(|e| {
            ApiError::Internal(anyhow::Error::new(e).context("reading request body"))
        })?;
    if !bytes.is_complete() {
        return Err(ApiError::PayloadTooLarge {
            limit: limit.as_u64(),
        });
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(map)) => Ok(Some(map)),
        Ok(_) => Err(ApiError::MalformedJson("expected a JSON object".to_owned())),
        Err(e) => Err(ApiError::MalformedJson(format!(
            "{} at line {} column {}",
            match e.classify() {
                serde_json::error::Category::Eof => "unexpected end of input",
                _ => "syntax error",
            },
            e.line(),
            e.column()
        ))),
    }
}

#[rocket::async_trait]
impl<'r> FromData<'r> for OptionalJsonObject {
    type Error = ApiError;

    async fn from_data(request: &'r Request<'_>, data: Data<'r>) -> DataOutcome<'r, Self> {
        match read_json_object(request, data).await {
            Ok(object) => DataOutcome::Success(Self(object)),
            Err(error) => fail_guard(request, error),
        }
    }
}

#[rocket::async_trait]
impl<'r> FromData<'r> for JsonObject {
    type Error = ApiError;

    async fn from_data(request: &'r Request<'_>, data: Data<'r>) -> DataOutcome<'r, Self> {
        match read_json_object(request, data).await {
            Ok(Some(object)) => DataOutcome::Success(Self(object)),
            Ok(None) => fail_guard(
                request,
                ApiError::MalformedJson("the body is empty; expected a JSON object".to_owned()),
            ),
            Err(error) => fail_guard(request, error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_errors_never_show_their_cause() {
        let error = ApiError::Internal(anyhow::anyhow!("SELECT secret FROM users at src/x.rs:1"));
        let public = error.public();
        assert_eq!(public.status, Status::InternalServerError);
        assert_eq!(public.body.error_code, "internal_error");
        assert_eq!(public.body.detail, "An unexpected error occurred");
        assert!(public.body.field_errors.is_empty());
    }

    #[test]
    fn unavailable_database_errors_are_503_with_retry_after() {
        let public = ApiError::from(sqlx::Error::PoolTimedOut).public();
        assert_eq!(public.status, Status::ServiceUnavailable);
        assert_eq!(public.body.error_code, "service_unavailable");
        assert_eq!(public.retry_after, Some(5));
        let public = ApiError::from(sqlx::Error::RowNotFound).public();
        assert_eq!(public.status, Status::InternalServerError);
    }

    #[test]
    fn database_codes_are_classified_by_their_class() {
        use DbErrorClass::*;
        let title = || Some("title");
        for (sqlstate, expected) in [
            // Connection, resources, shutdown: all-digit codes too.
            ("08006", Unavailable),
            ("08001", Unavailable),
            ("08P01", Unavailable),
            ("53300", Unavailable),
            ("53100", Unavailable),
            ("57P01", Unavailable),
            ("57P02", Unavailable),
            ("57P03", Unavailable),
            // Data exceptions and constraint violations.
            ("22021", Refused(Some("title"))),
            ("22001", Refused(Some("title"))),
            ("22P02", Refused(Some("title"))),
            ("23514", Refused(Some("title"))),
            ("23505", Refused(Some("title"))),
            // Anything else.
            ("42P01", Unexpected),
            ("42601", Unexpected),
            ("57014", Unexpected),
            ("57P04", Unexpected),
            ("XX000", Unexpected),
            ("", Unexpected),
        ] {
            assert_eq!(
                classify_postgres(sqlstate, title),
                expected,
                "SQLSTATE {sqlstate}"
            );
        }
        for (code, expected) in [
            (5, Unavailable),
            (517, Unavailable),
            (6, Unavailable),
            (10, Unavailable),
            (13, Unavailable),
            (14, Unavailable),
            (19, Refused(Some("title"))),
            (275, Refused(Some("title"))),
            (1299, Refused(Some("title"))),
            (2067, Refused(Some("title"))),
            (18, Refused(Some("title"))),
            (20, Refused(Some("title"))),
            (1, Unexpected),
            (11, Unexpected),
        ] {
            assert_eq!(classify_sqlite(code, title), expected, "SQLite code {code}");
        }
    }

    #[test]
    fn a_refused_value_is_a_422_naming_its_field_and_never_quoting_the_database() {
        let error = ApiError::Refused {
            field: Some("title"),
            source: sqlx::Error::Protocol("CHECK constraint failed: length(title)".into()),
        };
        let public = error.public();
        assert_eq!(public.status, Status::UnprocessableEntity);
        assert_eq!(public.body.error_code, "validation_error");
        assert_eq!(
            public.body.field_errors.keys().collect::<Vec<_>>(),
            ["title"]
        );
        assert!(!public.body.detail.contains("CHECK"));
        assert_eq!(public.retry_after, None);
        let public = ApiError::from(sqlx::Error::Encode("bad".into())).public();
        assert_eq!(public.status, Status::UnprocessableEntity);
        assert!(public.body.field_errors.is_empty());
    }
}

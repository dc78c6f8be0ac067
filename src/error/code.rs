//! The contract's error codes and the body every error answer has.

use rocket::http::Status;
use serde::Serialize;

use super::FieldErrors;

/// The contract's `error_code`s: every one the service can answer, each with its status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// 400: the body is not JSON, or not an object.
    MalformedJson,
    /// 400: a request the HTTP layer cannot read.
    BadRequest,
    /// 401: no token.
    AuthRequired,
    /// 401: a bad, expired or unverifiable token.
    InvalidToken,
    /// 403: the path names another user, or a CORS preflight is refused.
    Forbidden,
    /// 403: a cookie-authenticated write from an origin not allowed (the forgery rule).
    OriginNotAllowed,
    /// 404: no such task for this user, or no such route.
    NotFound,
    /// 405: the path exists, the method does not.
    MethodNotAllowed,
    /// 409: a request with the same `Idempotency-Key` is still running.
    IdempotencyKeyInUse,
    /// 410: a sync cursor past the event log's retention, or one never issued.
    CursorExpired,
    /// 412: `If-Match` does not match.
    PreconditionFailed,
    /// 413: the body is over the limit.
    PayloadTooLarge,
    /// 414: the request target is over the limit.
    UriTooLong,
    /// 415: a body that is not JSON.
    UnsupportedMediaType,
    /// 422: a field or query parameter breaks a rule.
    ValidationError,
    /// 429: over the per-user rate limit.
    RateLimited,
    /// 429: the user has the most event streams open.
    TooManyStreams,
    /// 431: too many request headers, or too many bytes of them.
    HeadersTooLarge,
    /// 500: anything unexpected.
    InternalError,
    /// 503: the database, the keys or the session store cannot be reached.
    ServiceUnavailable,
}

impl ErrorCode {
    /// Every code, in the order of the docs' error table.
    pub const ALL: [ErrorCode; 20] = [
        Self::MalformedJson,
        Self::BadRequest,
        Self::AuthRequired,
        Self::InvalidToken,
        Self::Forbidden,
        Self::OriginNotAllowed,
        Self::NotFound,
        Self::MethodNotAllowed,
        Self::IdempotencyKeyInUse,
        Self::CursorExpired,
        Self::PreconditionFailed,
        Self::PayloadTooLarge,
        Self::UriTooLong,
        Self::UnsupportedMediaType,
        Self::ValidationError,
        Self::RateLimited,
        Self::TooManyStreams,
        Self::HeadersTooLarge,
        Self::InternalError,
        Self::ServiceUnavailable,
    ];

    /// The code as the body spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MalformedJson => "malformed_json",
            Self::BadRequest => "bad_request",
            Self::AuthRequired => "auth_required",
            Self::InvalidToken => "invalid_token",
            Self::Forbidden => "forbidden",
            Self::OriginNotAllowed => "origin_not_allowed",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::IdempotencyKeyInUse => "idempotency_key_in_use",
            Self::CursorExpired => "cursor_expired",
            Self::PreconditionFailed => "precondition_failed",
            Self::PayloadTooLarge => "payload_too_large",
            Self::UriTooLong => "uri_too_long",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::ValidationError => "validation_error",
            Self::RateLimited => "rate_limited",
            Self::TooManyStreams => "too_many_streams",
            Self::HeadersTooLarge => "headers_too_large",
            Self::InternalError => "internal_error",
            Self::ServiceUnavailable => "service_unavailable",
        }
    }

    /// The HTTP status every answer with this code has.
    pub fn status(self) -> Status {
        match self {
            Self::MalformedJson | Self::BadRequest => Status::BadRequest,
            Self::AuthRequired | Self::InvalidToken => Status::Unauthorized,
            Self::Forbidden | Self::OriginNotAllowed => Status::Forbidden,
            Self::NotFound => Status::NotFound,
            Self::MethodNotAllowed => Status::MethodNotAllowed,
            Self::IdempotencyKeyInUse => Status::Conflict,
            Self::CursorExpired => Status::Gone,
            Self::PreconditionFailed => Status::PreconditionFailed,
            Self::PayloadTooLarge => Status::PayloadTooLarge,
            Self::UriTooLong => Status::UriTooLong,
            Self::UnsupportedMediaType => Status::UnsupportedMediaType,
            Self::ValidationError => Status::UnprocessableEntity,
            Self::RateLimited | Self::TooManyStreams => Status::TooManyRequests,
            Self::HeadersTooLarge => Status::RequestHeaderFieldsTooLarge,
            Self::InternalError => Status::InternalServerError,
            Self::ServiceUnavailable => Status::ServiceUnavailable,
        }
    }
}

/// The body of every error response.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
#[schema(example = json!({"detail": "Request has invalid fields", "error_code": "validation_error",
    "field_errors": {"title": ["Title is required and cannot be empty"]}}))]
pub struct ErrorBody {
    /// A human-readable message.
    pub detail: String,
    /// A stable machine-readable code; the API reference's error table lists each.
    pub error_code: ErrorCode,
    /// Field name → messages; empty (never null) when no field is at fault.
    #[schema(value_type = std::collections::BTreeMap<String, Vec<String>>)]
    pub field_errors: FieldErrors,
}

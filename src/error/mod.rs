//! The one error type of the API, its JSON rendering, and the catcher that gives everything
//! Rocket answers by itself the same shape.
//!
//! Invariant: a client only ever sees `{detail, error_code, field_errors}`; the cause of a
//! 5xx goes to the log, never into the body.

use std::borrow::Cow;
use std::collections::BTreeMap;

use rocket::http::Status;

use crate::db::errors::{classify, DbErrorClass};

mod code;
mod render;

pub use code::{ErrorBody, ErrorCode};
pub use render::{answer_early, fail_guard, stage, PublicError};

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
    /// 403: a write authenticated by Better Auth's cookie from an origin that is not
    /// allowed (or with no origin and not same-origin): possibly a forged request.
    #[error("cookie-authenticated write from an origin that is not allowed")]
    OriginNotAllowed,
    /// 403: a CORS preflight from an origin that is not allowed (or not an origin at all),
    /// or asking for a method or header that is not allowed.
    #[error("CORS preflight refused")]
    OriginRefused,
    /// 409: the first request with this `Idempotency-Key` is still running.
    #[error("idempotency key in use")]
    IdempotencyKeyInUse,
    /// 410: a sync cursor the log cannot continue from (past retention, or never issued).
    #[error("sync cursor expired")]
    CursorExpired,
    /// 404: no such task for this user, or no such route.
    #[error("not found: {0}")]
    NotFound(&'static str),
    /// 414: the request's URI is over the limit.
    #[error("URI too long")]
    UriTooLong {
        /// The limit, in bytes.
        limit: usize,
    },
    /// 431: the request's headers are over the limits.
    #[error("request headers too large")]
    HeadersTooLarge {
        /// The most headers read.
        max_headers: usize,
        /// The most bytes of headers read.
        max_bytes: usize,
    },
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

    /// A database error; a refusal names the first of `fields` (column names of the
    /// module that ran the statement) the database mentioned.
    pub fn from_db(error: sqlx::Error, fields: &[&'static str]) -> Self {
        match classify(&error, fields) {
            DbErrorClass::Unavailable => Self::Unavailable(error),
            DbErrorClass::Refused(field) => Self::Refused {
                field,
                source: error,
            },
            DbErrorClass::Unexpected => Self::Internal(anyhow::Error::new(error)),
        }
    }

    /// The one table of the errors: each variant's code (which fixes its status) and the
    /// message its client reads.
    fn entry(&self) -> (ErrorCode, Cow<'static, str>) {
        use ErrorCode as C;
        match self {
            Self::MalformedJson(reason) => (
                C::MalformedJson,
                format!("Request body is not valid JSON: {reason}").into(),
            ),
            Self::AuthRequired(reason) => (C::AuthRequired, (*reason).into()),
            Self::InvalidToken => (C::InvalidToken, "Token is invalid or expired".into()),
            Self::Forbidden => (C::Forbidden, "You may only access your own tasks".into()),
            Self::OriginNotAllowed => (
                C::OriginNotAllowed,
                "A request signed in by cookie may change data only from an allowed origin \
                 (ALLOWED_ORIGINS); send its Origin, or use an Authorization header"
                    .into(),
            ),
            Self::OriginRefused => (
                C::Forbidden,
                "This origin, method or header is not allowed to call the API (CORS)".into(),
            ),
            Self::NotFound(what) => (C::NotFound, (*what).into()),
            Self::IdempotencyKeyInUse => (
                C::IdempotencyKeyInUse,
                "A request with this Idempotency-Key is still running: retry when it is done"
                    .into(),
            ),
            Self::CursorExpired => (
                C::CursorExpired,
                "This cursor cannot be continued (older than the event log's retention, or not \
                 one this service issued): sync from scratch, without `since`"
                    .into(),
            ),
            Self::PreconditionFailed => (
                C::PreconditionFailed,
                "The task has changed since it was read (If-Match)".into(),
            ),
            Self::UriTooLong { limit } => (
                C::UriTooLong,
                format!("Request URI is longer than {limit} bytes").into(),
            ),
            Self::HeadersTooLarge {
                max_headers,
                max_bytes,
            } => (
                C::HeadersTooLarge,
                format!(
                    "Request has more than {max_headers} headers or {} KiB of them",
                    max_bytes / 1024
                )
                .into(),
            ),
            Self::PayloadTooLarge { limit } => (
                C::PayloadTooLarge,
                format!("Request body is larger than {} KiB", limit / 1024).into(),
            ),
            Self::UnsupportedMediaType => (
                C::UnsupportedMediaType,
                "Request body must be application/json".into(),
            ),
            Self::Validation(_) => (C::ValidationError, "Request has invalid fields".into()),
            Self::Refused { .. } => (
                C::ValidationError,
                "The database refused a value of the request".into(),
            ),
            Self::RateLimited { .. } => (C::RateLimited, "Too many requests; slow down".into()),
            Self::TooManyStreams => (
                C::TooManyStreams,
                "Too many event streams are open for this user; close one first".into(),
            ),
            Self::Unavailable(_) => (
                C::ServiceUnavailable,
                "The database is unavailable; try again shortly".into(),
            ),
            Self::KeysUnavailable { .. } => (
                C::ServiceUnavailable,
                "Sign-in keys cannot be loaded right now; try again shortly".into(),
            ),
            Self::SessionsUnavailable => (
                C::ServiceUnavailable,
                "Sessions cannot be checked right now; try again shortly".into(),
            ),
            Self::Overloaded => (
                C::ServiceUnavailable,
                "The service is unavailable; try again shortly".into(),
            ),
            Self::ClientError(status) => match status.code {
                405 => (C::MethodNotAllowed, "Method not allowed".into()),
                413 => (C::PayloadTooLarge, "Request body is too large".into()),
                414 => (C::UriTooLong, "Request URI is too long".into()),
                431 => (C::HeadersTooLarge, "Request headers are too large".into()),
                _ => (C::BadRequest, "The request was refused".into()),
            },
            Self::Internal(_) => (C::InternalError, "An unexpected error occurred".into()),
        }
    }

    /// The HTTP status of this error.
    pub fn status(&self) -> Status {
        self.entry().0.status()
    }

    /// The contract's `error_code`.
    pub fn code(&self) -> ErrorCode {
        self.entry().0
    }

    /// The public part of the error: what the client may see.
    pub fn public(&self) -> PublicError {
        let (code, detail) = self.entry();
        PublicError {
            status: code.status(),
            body: ErrorBody {
                detail: detail.into_owned(),
                error_code: code,
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
            415 => Self::UnsupportedMediaType,
            422 => Self::Validation(FieldErrors::new()),
            429 => Self::RateLimited { retry_after: 1 },
            503 => Self::Overloaded,
            400..=499 => Self::ClientError(status),
            _ => Self::Internal(anyhow::anyhow!("status {status} without an error")),
        };
        error.public()
    }

    pub(super) fn log(&self) {
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

/// The body of the answer to a connection over the server's cap, which the HTTP server
/// sends before any route could run.
pub fn over_capacity_body() -> String {
    serde_json::to_string(&ApiError::Overloaded.public().body).unwrap_or_default()
}

/// A database error of a statement whose columns a refusal would not name.
impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        Self::from_db(error, &[])
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
        assert_eq!(public.body.error_code, ErrorCode::InternalError);
        assert_eq!(public.body.detail, "An unexpected error occurred");
        assert!(public.body.field_errors.is_empty());
    }

    #[test]
    fn unavailable_database_errors_are_503_with_retry_after() {
        let public = ApiError::from(sqlx::Error::PoolTimedOut).public();
        assert_eq!(public.status, Status::ServiceUnavailable);
        assert_eq!(public.body.error_code, ErrorCode::ServiceUnavailable);
        assert_eq!(public.retry_after, Some(5));
        let public = ApiError::from(sqlx::Error::RowNotFound).public();
        assert_eq!(public.status, Status::InternalServerError);
    }

    #[test]
    fn a_refused_value_is_a_422_naming_its_field_and_never_quoting_the_database() {
        let error = ApiError::Refused {
            field: Some("title"),
            source: sqlx::Error::Protocol("CHECK constraint failed: length(title)".into()),
        };
        let public = error.public();
        assert_eq!(public.status, Status::UnprocessableEntity);
        assert_eq!(public.body.error_code, ErrorCode::ValidationError);
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

    #[test]
    fn every_error_code_is_listed_once_and_spelled_as_it_serializes() {
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::ALL {
            assert!(seen.insert(code.as_str()), "{code:?} twice");
            assert_eq!(
                serde_json::to_value(code).ok(),
                Some(serde_json::Value::from(code.as_str()))
            );
        }
        // A code added to the enum but not to ALL moves the last discriminant.
        assert_eq!(
            ErrorCode::ServiceUnavailable as usize + 1,
            ErrorCode::ALL.len()
        );
    }
}

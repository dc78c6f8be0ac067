//! Answers in Better Auth's shape: JSON bodies (`application/json`, no charset), errors as
//! `{"message", "code"}`, each cookie its own `Set-Cookie`, and, as Better Auth's bearer
//! plugin adds them, `set-auth-token` with the signed token whenever a live session cookie
//! is set.

use rocket::http::{ContentType, Status};
use rocket::request::Request;
use rocket::response::{self, Responder, Response};
use serde_json::Value;

use crate::db::errors::DbErrorClass;

/// One answer of the accounts routes.
#[derive(Debug)]
pub struct Reply {
    status: Status,
    /// `None`: an empty body without a content type (Better Auth's 404).
    body: Option<Value>,
    cookies: Vec<String>,
    headers: Vec<(&'static str, String)>,
    /// The signed session token of a live session cookie this answer sets.
    auth_token: Option<String>,
}

impl Reply {
    /// A 200 with `body` as JSON.
    pub fn ok(body: &impl serde::Serialize) -> Self {
        Self::json(Status::Ok, body)
    }

    /// `status` with `body` as JSON.
    pub fn json(status: Status, body: &impl serde::Serialize) -> Self {
        let body = serde_json::to_value(body).unwrap_or(Value::Null);
        Self {
            status,
            body: Some(body),
            cookies: Vec::new(),
            headers: Vec::new(),
            auth_token: None,
        }
    }

    /// A Better Auth error: `{"message", "code"}`.
    pub fn error(status: Status, code: &str, message: &str) -> Self {
        Self::json(
            status,
            &serde_json::json!({"message": message, "code": code}),
        )
    }

    /// A Better Auth error with a message and no code.
    pub fn message(status: Status, message: &str) -> Self {
        Self::json(status, &serde_json::json!({ "message": message }))
    }

    /// A zod-style validation error: `[body.<field>] <problem>`.
    pub fn validation(problem: String) -> Self {
        Self::error(Status::BadRequest, "VALIDATION_ERROR", &problem)
    }

    /// 401 `UNAUTHORIZED`, as the session middlewares answer.
    pub fn unauthorized() -> Self {
        Self::error(Status::Unauthorized, "UNAUTHORIZED", "Unauthorized")
    }

    /// Better Auth's 404: no body, no content type.
    pub fn not_found() -> Self {
        Self {
            status: Status::NotFound,
            body: None,
            cookies: Vec::new(),
            headers: Vec::new(),
            auth_token: None,
        }
    }

    /// 429 after a limit, with `Retry-After` and Better Auth's `X-Retry-After`.
    pub fn too_many(seconds: u64) -> Self {
        Self::message(
            Status::TooManyRequests,
            "Too many requests. Please try again later.",
        )
        .header("X-Retry-After", seconds.to_string())
        .header("Retry-After", seconds.to_string())
    }

    /// 503 when no password hash can be computed now.
    pub fn busy(seconds: u64) -> Self {
        Self::error(
            Status::ServiceUnavailable,
            "SERVICE_UNAVAILABLE",
            "The service is busy. Please try again later.",
        )
        .header("Retry-After", seconds.to_string())
    }

    /// A database error, as the service classifies them everywhere: 503 when the database
    /// cannot serve now, 400 for a value it refused, else 500 (the log has the detail).
    pub fn database(error: &sqlx::Error) -> Self {
        match crate::db::errors::classify(error, &[]) {
            DbErrorClass::Unavailable => {
                tracing::warn!(%error, "accounts: the database cannot serve now");
                Self::error(
                    Status::ServiceUnavailable,
                    "SERVICE_UNAVAILABLE",
                    "The database cannot be reached. Please try again later.",
                )
                .header("Retry-After", "1".to_owned())
            }
            DbErrorClass::Refused(_) => {
                tracing::warn!(%error, "accounts: the database refused a value");
                Self::error(
                    Status::BadRequest,
                    "VALIDATION_ERROR",
                    "A value was refused",
                )
            }
            DbErrorClass::Unexpected => {
                tracing::error!(%error, "accounts: a database operation failed");
                Self::error(
                    Status::InternalServerError,
                    "INTERNAL_SERVER_ERROR",
                    "Internal server error",
                )
            }
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: &'static str, value: String) -> Self {
        self.headers.push((name, value));
        self
    }

    /// Adds `Set-Cookie` values.
    pub fn cookies(mut self, cookies: impl IntoIterator<Item = String>) -> Self {
        self.cookies.extend(cookies);
        self
    }

    /// Adds the live session cookie, with its signed token for `set-auth-token`.
    pub fn session_cookie(mut self, cookie: String, signed_token: String) -> Self {
        self.cookies.push(cookie);
        self.auth_token = Some(signed_token);
        self
    }

    /// The signed token this answer hands out, if any.
    pub fn auth_token(&self) -> Option<&str> {
        self.auth_token.as_deref()
    }

    /// Adds fields to a JSON object body (the compatibility names' `access_token`).
    pub fn with_fields(mut self, fields: &[(&str, Value)]) -> Self {
        if let Some(Value::Object(object)) = &mut self.body {
            for (name, value) in fields {
                object.insert((*name).to_owned(), value.clone());
            }
        }
        self
    }
}

impl<'r> Responder<'r, 'static> for Reply {
    fn respond_to(self, _: &'r Request<'_>) -> response::Result<'static> {
        let mut response = Response::build();
        response.status(self.status);
        if let Some(body) = self.body {
            let body = body.to_string();
            response.header(ContentType::JSON);
            response.sized_body(body.len(), std::io::Cursor::new(body));
        }
        for cookie in self.cookies {
            response.raw_header_adjoin("Set-Cookie", cookie);
        }
        for (name, value) in self.headers {
            response.raw_header_adjoin(name, value);
        }
        if let Some(token) = self.auth_token {
            response.raw_header("set-auth-token", token);
            response.raw_header("Access-Control-Expose-Headers", "set-auth-token");
        }
        response.ok()
    }
}

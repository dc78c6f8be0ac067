//! The JSON body data guards: a body is JSON by its content type (415), within the size
//! limit (413), and a JSON object (400), checked before any handler runs.

use rocket::data::{Data, FromData, Outcome as DataOutcome, ToByteUnit};
use rocket::request::Request;
use serde_json::{Map, Value};

use crate::error::{fail_guard, ApiError, ErrorBody};

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

/// A JSON object body: checks the content type (415), size (413) and syntax (400).
#[derive(Debug)]
pub struct JsonObject(pub Map<String, Value>);

/// Like [`JsonObject`], but an empty body is allowed and yields `None`.
#[derive(Debug)]
pub struct OptionalJsonObject(pub Option<Map<String, Value>>);

/// Rewrites a JSON body before any handler reads it (the compatibility module registers
/// one: other names for the same fields). Given the request and the body as read (`None`:
/// empty), it returns the body the handler sees, or the refusal to answer instead.
pub struct BodyRewrite(
    #[allow(clippy::type_complexity)]
    pub  Box<
        dyn Fn(
                &Request<'_>,
                Option<Map<String, Value>>,
            ) -> Result<Option<Map<String, Value>>, ApiError>
            + Send
            + Sync,
    >,
);

/// The body after the registered [`BodyRewrite`], if any.
fn rewritten(
    request: &Request<'_>,
    body: Option<Map<String, Value>>,
) -> Result<Option<Map<String, Value>>, ApiError> {
    match request.rocket().state::<BodyRewrite>() {
        Some(rewrite) => (rewrite.0)(request, body),
        None => Ok(body),
    }
}

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
        match read_json_object(request, data)
            .await
            .and_then(|object| rewritten(request, object))
        {
            Ok(object) => DataOutcome::Success(Self(object)),
            Err(error) => fail_guard(request, error),
        }
    }
}

#[rocket::async_trait]
impl<'r> FromData<'r> for JsonObject {
    type Error = ApiError;

    async fn from_data(request: &'r Request<'_>, data: Data<'r>) -> DataOutcome<'r, Self> {
        match read_json_object(request, data)
            .await
            .and_then(|object| rewritten(request, object))
        {
            Ok(Some(object)) => DataOutcome::Success(Self(object)),
            Ok(None) => fail_guard(
                request,
                ApiError::MalformedJson("the body is empty; expected a JSON object".to_owned()),
            ),
            Err(error) => fail_guard(request, error),
        }
    }
}

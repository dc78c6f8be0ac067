//! `Idempotency-Key` on every write: the first request with a key runs and its answer
//! (status, `Location`, `ETag`, body) is kept in the database for 24 hours per user; a
//! repeat with the same key and the same request gets that answer again and writes nothing;
//! the same key with another request is 422; a repeat while the first runs is 409.
//!
//! The first request's work runs to its end in a task of its own: a client that hangs up
//! (the answer lost on a bad network) does not stop it between the write and the keeping
//! of its answer, so the retry finds the answer.

use std::future::Future;
use std::io::Cursor;
use std::time::Duration;

use rocket::http::{ContentType, Header, Status};
use rocket::request::{FromRequest, Outcome, Request};
use rocket::response::{self, Responder, Response};
use sha2::{Digest, Sha256};

use crate::auth::AuthedUser;
use crate::db::{on_pool, AppPool};
use crate::error::{fail_guard, ApiError};

use super::model::Task;

/// How long an answer is kept.
pub const KEEP: Duration = Duration::from_secs(24 * 3600);
/// The header.
pub const HEADER: &str = "Idempotency-Key";

/// The request's `Idempotency-Key`, if it sent one (1–255 printable ASCII characters).
#[derive(Debug, Clone)]
pub struct IdempotencyKey(Option<String>);

fn invalid_key() -> ApiError {
    ApiError::field(HEADER, "must be 1 to 255 printable ASCII characters")
}

#[rocket::async_trait]
impl<'r> FromRequest<'r> for IdempotencyKey {
    type Error = ApiError;

    async fn from_request(request: &'r Request<'_>) -> Outcome<Self, Self::Error> {
        let mut values = request.headers().get(HEADER);
        let Some(value) = values.next() else {
            return Outcome::Success(Self(None));
        };
        let printable = |b: u8| (0x20..0x7f).contains(&b);
        if values.next().is_some()
            || value.is_empty()
            || value.len() > 255
            || !value.bytes().all(printable)
        {
            return fail_guard(request, invalid_key());
        }
        Outcome::Success(Self(Some(value.to_owned())))
    }
}

/// A write's answer, as sent and as kept.
#[derive(Debug, Clone, Default)]
pub struct Answer {
    status: u16,
    location: Option<String>,
    etag: Option<String>,
    body: Option<String>,
    replayed: bool,
}

impl Answer {
    /// `status` with the task (and its `ETag`), and `location` if given.
    pub fn task(status: u16, task: &Task, location: Option<String>) -> Result<Self, ApiError> {
        Ok(Self {
            status,
            location,
            etag: Some(super::etag::etag(task)),
            body: Some(serde_json::to_string(task).map_err(|e| ApiError::Internal(e.into()))?),
            replayed: false,
        })
    }

    /// 200 with `value` as JSON.
    pub fn json(value: &impl serde::Serialize) -> Result<Self, ApiError> {
        Ok(Self {
            status: 200,
            body: Some(serde_json::to_string(value).map_err(|e| ApiError::Internal(e.into()))?),
            ..Self::default()
        })
    }

    /// A status without a body (204).
    pub fn empty(status: u16) -> Self {
        Self {
            status,
            ..Self::default()
        }
    }
}

impl<'r> Responder<'r, 'static> for Answer {
    fn respond_to(self, _: &'r Request<'_>) -> response::Result<'static> {
        let mut response = Response::build();
        response.status(Status::new(self.status));
        if let Some(location) = self.location {
            response.header(Header::new("Location", location));
        }
        if let Some(etag) = self.etag {
            response.header(Header::new("ETag", etag));
        }
        if self.replayed {
            response.header(Header::new("Idempotent-Replayed", "true"));
        }
        if let Some(body) = self.body {
            response
                .header(ContentType::JSON)
                .sized_body(body.len(), Cursor::new(body));
        }
        response.ok()
    }
}

/// The request's fingerprint: its method, path and query, and body.
pub fn fingerprint(
    method: &str,
    uri: &str,
    body: Option<&serde_json::Map<String, serde_json::Value>>,
) -> String {
    let mut hash = Sha256::new();
    hash.update(method.as_bytes());
    hash.update(b" ");
    hash.update(uri.as_bytes());
    hash.update(b"\n");
    if let Some(body) = body {
        // The map orders its keys: the same JSON object gives the same text.
        hash.update(serde_json::to_string(body).unwrap_or_default().as_bytes());
    }
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

const CLAIM: &str = "INSERT INTO idempotency_keys (user_id, key, fingerprint) VALUES ($1, $2, $3) \
    ON CONFLICT (user_id, key) DO NOTHING";
const RECORD: &str =
    "UPDATE idempotency_keys SET status = $3, location = $4, etag = $5, body = $6 \
    WHERE user_id = $1 AND key = $2";
const RELEASE: &str = "DELETE FROM idempotency_keys WHERE user_id = $1 AND key = $2";
const LOOKUP: &str = "SELECT fingerprint, status, location, etag, body FROM idempotency_keys \
    WHERE user_id = $1 AND key = $2";
const EXPIRE_ONE_POSTGRES: &str = "DELETE FROM idempotency_keys WHERE user_id = $1 AND key = $2 \
    AND created_at < now() - make_interval(secs => $3)";
const EXPIRE_ONE_SQLITE: &str = "DELETE FROM idempotency_keys WHERE user_id = $1 AND key = $2 \
    AND created_at < strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-' || $3 || ' seconds')";
const PRUNE_POSTGRES: &str = "DELETE FROM idempotency_keys WHERE ctid = ANY(ARRAY(\
    SELECT ctid FROM idempotency_keys WHERE created_at < now() - make_interval(secs => $1) \
    LIMIT $2 FOR UPDATE SKIP LOCKED))";
const PRUNE_SQLITE: &str = "DELETE FROM idempotency_keys WHERE rowid IN (\
    SELECT rowid FROM idempotency_keys \
    WHERE created_at < strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-' || $1 || ' seconds') LIMIT $2)";

type Kept = (
    String,
    Option<i32>,
    Option<String>,
    Option<String>,
    Option<String>,
);

async fn claim(
    db: &AppPool,
    user: &str,
    key: &str,
    fingerprint: &str,
) -> Result<bool, sqlx::Error> {
    let done = on_pool!(db, |p| sqlx::query(CLAIM)
        .bind(user)
        .bind(key)
        .bind(fingerprint)
        .execute(p)
        .await
        .map(|done| done.rows_affected()))?;
    Ok(done == 1)
}

/// Keeps the answer of the request that claimed the key; a failure of the service (5xx)
/// gives the key back, so a retry runs again.
async fn record(db: &AppPool, user: &str, key: &str, result: &Result<Answer, ApiError>) {
    let kept = match result {
        Ok(answer) => Some((
            answer.status,
            answer.location.clone(),
            answer.etag.clone(),
            answer.body.clone(),
        )),
        Err(error) => {
            let (status, body) = error.public().status_and_json();
            (status < 500).then_some((status, None, None, Some(body)))
        }
    };
    let done = match kept {
        Some((status, location, etag, body)) => on_pool!(db, |p| sqlx::query(RECORD)
            .bind(user)
            .bind(key)
            .bind(i32::from(status))
            .bind(location)
            .bind(etag)
            .bind(body)
            .execute(p)
            .await
            .map(drop)),
        None => on_pool!(db, |p| sqlx::query(RELEASE)
            .bind(user)
            .bind(key)
            .execute(p)
            .await
            .map(drop)),
    };
    if let Err(error) = done {
        tracing::error!(%error, "the answer of a keyed write could not be kept");
    }
}

/// Runs `work` once per `key` of `user`: without a key, just runs it (the request is not
/// even fingerprinted); the first request with a key runs it and keeps its answer; a
/// repeat gets that answer (or 422, or 409).
pub async fn run<F>(
    db: &AppPool,
    user: &AuthedUser,
    key: IdempotencyKey,
    fingerprint: impl FnOnce() -> String,
    work: F,
) -> Result<Answer, ApiError>
where
    F: Future<Output = Result<Answer, ApiError>> + Send + 'static,
{
    let Some(key) = key.0 else {
        return work.await;
    };
    let fingerprint = fingerprint();
    let user_id = user.id().to_owned();
    for _ in 0..2 {
        if claim(db, &user_id, &key, &fingerprint).await? {
            let (db, user_id, key) = (db.clone(), user_id.clone(), key.clone());
            let task = tokio::spawn(async move {
                let result = work.await;
                record(&db, &user_id, &key, &result).await;
                result
            });
            return task
                .await
                .map_err(|e| ApiError::Internal(anyhow::anyhow!("a keyed write stopped: {e}")))?;
        }
        // Past the 24 hours but not yet pruned: the key is free again. Checked before the
        // lookup, so a key the pruning deletes in between is found gone, not taken for
        // a live one.
        let expire = match db {
            AppPool::Postgres(_) => EXPIRE_ONE_POSTGRES,
            AppPool::Sqlite(_) => EXPIRE_ONE_SQLITE,
        };
        let expired = on_pool!(db, |p| sqlx::query(expire)
            .bind(&user_id)
            .bind(&key)
            .bind(KEEP.as_secs_f64())
            .execute(p)
            .await
            .map(|done| done.rows_affected()))?;
        if expired > 0 {
            continue;
        }
        let kept: Option<Kept> = on_pool!(db, |p| sqlx::query_as(LOOKUP)
            .bind(&user_id)
            .bind(&key)
            .fetch_optional(p)
            .await)?;
        let Some((kept_fingerprint, status, location, etag, body)) = kept else {
            continue; // released (the first failed) or pruned meanwhile: claim again
        };
        if kept_fingerprint != fingerprint {
            return Err(ApiError::field(
                HEADER,
                "was already used for a different request",
            ));
        }
        let Some(status) = status else {
            return Err(ApiError::IdempotencyKeyInUse);
        };
        return Ok(Answer {
            status: u16::try_from(status).unwrap_or(500),
            location,
            etag,
            body,
            replayed: true,
        });
    }
    Err(ApiError::IdempotencyKeyInUse)
}

/// Deletes up to `batch` keys older than [`KEEP`]; returns how many went.
pub async fn prune(db: &AppPool, batch: i64) -> Result<u64, sqlx::Error> {
    let sql = match db {
        AppPool::Postgres(_) => PRUNE_POSTGRES,
        AppPool::Sqlite(_) => PRUNE_SQLITE,
    };
    on_pool!(db, |p| sqlx::query(sql)
        .bind(KEEP.as_secs_f64())
        .bind(batch)
        .execute(p)
        .await
        .map(|done| done.rows_affected()))
}

/// Prunes expired keys in bounded rounds (see [`crate::db::prune`]), at start and every
/// minute, until shutdown.
pub async fn keep_pruned(db: AppPool, shutdown: rocket::Shutdown) {
    crate::periodic::every(Duration::from_secs(60), shutdown, || async {
        crate::db::prune::round("idempotency keys", |batch| prune(&db, batch)).await;
    })
    .await;
}

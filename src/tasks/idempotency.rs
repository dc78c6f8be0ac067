//! `Idempotency-Key` on every write: the first request with a key runs and its answer
//! (status, `Location`, `ETag`, body) is kept in the database for 24 hours per user; a
//! repeat with the same key and the same request gets that answer again and writes nothing;
//! the same key with another request is 422; a repeat while the first runs waits for it
//! (409 only when it runs longer than [`writer::LOCK_WAIT`]).
//!
//! Invariant: the key's claim, the write, its events and the answer commit in one
//! transaction, or none of them does. No state of a key outlives that transaction, so a
//! crash at any point leaves either the answer (the retry replays it) or nothing (the
//! retry runs as the first). The work runs to its end in a task of its own, so a client
//! that hangs up does not roll back a write whose answer it may yet ask for again.

use std::io::Cursor;
use std::sync::Arc;
use std::time::Duration;

use rocket::futures::future::BoxFuture;
use rocket::http::{ContentType, Header, Status};
use rocket::request::{FromRequest, Outcome, Request};
use rocket::response::{self, Responder, Response};
use sha2::{Digest, Sha256};

use crate::auth::AuthedUser;
use crate::db::{on_pool, AppPool, Backend};
use crate::error::{fail_guard, ApiError};

use super::model::Task;
use super::writer::{self, on_txn, Interruption, Point, Scope, Txn, Writer};

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
/// The answer kept on its own, for a write whose transaction could not keep it (a 4xx
/// answer: nothing was written).
const KEEP_ALONE: &str = "INSERT INTO idempotency_keys \
    (user_id, key, fingerprint, status, location, etag, body) VALUES ($1, $2, $3, $4, $5, $6, $7) \
    ON CONFLICT (user_id, key) DO NOTHING";
const FREE: &str = "DELETE FROM idempotency_keys WHERE user_id = $1 AND key = $2";
/// A kept key, and whether it is free again: past [`KEEP`], or a claim without an answer
/// that an earlier version of the service (which committed claim, write and answer apart)
/// left behind more than a minute ago.
const LOOKUP_POSTGRES: &str = "SELECT fingerprint, status, location, etag, body, \
    (created_at < now() - make_interval(secs => $3) \
     OR (status IS NULL AND created_at < now() - interval '60 seconds')) AS free \
    FROM idempotency_keys WHERE user_id = $1 AND key = $2";
const LOOKUP_SQLITE: &str = "SELECT fingerprint, status, location, etag, body, \
    (created_at < strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-' || $3 || ' seconds') \
     OR (status IS NULL AND created_at < strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-60 seconds'))) AS free \
    FROM idempotency_keys WHERE user_id = $1 AND key = $2";
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
    bool,
);

/// What the claim of a key found.
enum Claim {
    /// The key is this request's: run the write.
    Ours,
    /// The key's answer (replayed), or why there is none to give (422, 409).
    Taken(Result<Answer, ApiError>),
}

/// PostgreSQL's code for a lock wait that ran out ([`writer::LOCK_WAIT`]).
const LOCK_NOT_AVAILABLE: &str = "55P03";

async fn insert_claim(
    txn: &mut Txn,
    user: &str,
    key: &str,
    fingerprint: &str,
) -> Result<bool, sqlx::Error> {
    let done = on_txn!(txn, |c| sqlx::query(CLAIM)
        .bind(user)
        .bind(key)
        .bind(fingerprint)
        .execute(c)
        .await
        .map(|done| done.rows_affected()))?;
    Ok(done == 1)
}

/// Claims `key` inside the write's transaction. While another transaction holds a claim
/// of the same key (its request still running), PostgreSQL waits for it to end, up to
/// [`writer::LOCK_WAIT`]: a committed claim is then found with its answer, a rolled-back
/// one is gone and this request claims the key. (SQLite: the one writer orders them.)
async fn claim(
    txn: &mut Txn,
    backend: Backend,
    user: &str,
    key: &str,
    fingerprint: &str,
) -> Result<Claim, sqlx::Error> {
    if insert_claim(txn, user, key, fingerprint).await? {
        return Ok(Claim::Ours);
    }
    let lookup = match backend {
        Backend::Postgres => LOOKUP_POSTGRES,
        Backend::Sqlite => LOOKUP_SQLITE,
    };
    let kept: Option<Kept> = on_txn!(txn, |c| sqlx::query_as(lookup)
        .bind(user)
        .bind(key)
        .bind(KEEP.as_secs_f64())
        .fetch_optional(c)
        .await)?;
    let (kept_fingerprint, status, location, etag, body) = match kept {
        Some((fingerprint, status, location, etag, body, false)) => {
            (fingerprint, status, location, etag, body)
        }
        free => {
            if free.is_some() {
                on_txn!(txn, |c| sqlx::query(FREE)
                    .bind(user)
                    .bind(key)
                    .execute(c)
                    .await
                    .map(drop))?;
            }
            // Free, or gone (deleted with its user, or pruned) since the claim was tried.
            return Ok(if insert_claim(txn, user, key, fingerprint).await? {
                Claim::Ours
            } else {
                Claim::Taken(Err(ApiError::IdempotencyKeyInUse))
            });
        }
    };
    if kept_fingerprint != fingerprint {
        return Ok(Claim::Taken(Err(ApiError::field(
            HEADER,
            "was already used for a different request",
        ))));
    }
    let Some(status) = status else {
        return Ok(Claim::Taken(Err(ApiError::IdempotencyKeyInUse)));
    };
    Ok(Claim::Taken(Ok(Answer {
        status: u16::try_from(status).unwrap_or(500),
        location,
        etag,
        body,
        replayed: true,
    })))
}

/// What is kept of a write's outcome: the answer, or a client error's status and body; a
/// failure of the service (5xx) is not kept, so a retry runs again.
type KeptAnswer = (u16, Option<String>, Option<String>, Option<String>);

fn to_keep(result: &Result<Answer, ApiError>) -> Option<KeptAnswer> {
    match result {
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
    }
}

async fn record(
    txn: &mut Txn,
    user: &str,
    key: &str,
    kept: &KeptAnswer,
) -> Result<(), sqlx::Error> {
    let (status, location, etag, body) = kept;
    on_txn!(txn, |c| sqlx::query(RECORD)
        .bind(user)
        .bind(key)
        .bind(i32::from(*status))
        .bind(location)
        .bind(etag)
        .bind(body)
        .execute(c)
        .await
        .map(drop))
}

/// Keeps a client error's answer on its own, after its transaction could not: nothing
/// was written, so a failure here costs only the replay (the retry runs again).
async fn keep_alone(db: &AppPool, user: &str, key: &str, fingerprint: &str, kept: &KeptAnswer) {
    let (status, location, etag, body) = kept;
    let done = on_pool!(db, |p| sqlx::query(KEEP_ALONE)
        .bind(user)
        .bind(key)
        .bind(fingerprint)
        .bind(i32::from(*status))
        .bind(location)
        .bind(etag)
        .bind(body)
        .execute(p)
        .await
        .map(drop));
    if let Err(error) = done {
        tracing::warn!(%error, "a keyed write's refusal could not be kept; a retry runs again");
    }
}

/// A keyed write's work: runs in the scope it is given (the keyed write's transaction).
pub type Work =
    Box<dyn for<'s> FnOnce(&'s mut Scope) -> BoxFuture<'s, Result<Answer, ApiError>> + Send>;

/// Runs `work` once per `key` of `user`: without a key, just runs it, each write
/// committing by itself (the request is not even fingerprinted); with a key, in one
/// transaction with the key's claim and the keeping of its answer, so that they commit
/// together or not at all. A repeat gets the kept answer (or 422, or 409).
pub async fn run(
    db: &AppPool,
    writer: &Arc<Writer>,
    user: &AuthedUser,
    key: IdempotencyKey,
    fingerprint: impl FnOnce() -> String,
    work: Work,
) -> Result<Answer, ApiError> {
    let Some(key) = key.0 else {
        let mut scope = Scope::Alone(db.clone());
        return work(&mut scope).await;
    };
    let fingerprint = fingerprint();
    let (db, writer, user_id) = (db.clone(), Arc::clone(writer), user.id().to_owned());
    tokio::spawn(async move { keyed(&db, &writer, &user_id, &key, &fingerprint, work).await })
        .await
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("a keyed write stopped: {e}")))?
}

/// The failure a keyed write's client sees when its work was stopped at a point (tests).
fn stopped() -> ApiError {
    ApiError::Unavailable(sqlx::Error::WorkerCrashed)
}

/// Applies a test's interruption at `point`; `true` when the write is to stop there.
async fn interrupted(txn: &mut Txn, point: Point, key: &str) -> bool {
    match txn.interruption(point, key) {
        None => false,
        Some(Interruption::Abort) => true,
        Some(Interruption::Cut) => {
            txn.cut().await;
            false
        }
        Some(Interruption::Pause(wait)) => {
            tokio::time::sleep(wait).await;
            false
        }
    }
}

/// One keyed write: claim, write, answer and commit, in one transaction.
async fn keyed(
    db: &AppPool,
    writer: &Arc<Writer>,
    user: &str,
    key: &str,
    fingerprint: &str,
    work: Work,
) -> Result<Answer, ApiError> {
    let mut txn = writer::begin(db, writer).await?;
    match claim(&mut txn, db.backend(), user, key, fingerprint).await {
        Ok(Claim::Ours) => {}
        Ok(Claim::Taken(answer)) => {
            txn.rollback().await;
            return answer;
        }
        Err(error) => {
            txn.rollback().await;
            let waited_out = error
                .as_database_error()
                .and_then(|e| e.code())
                .is_some_and(|code| code == LOCK_NOT_AVAILABLE);
            return Err(if waited_out {
                ApiError::IdempotencyKeyInUse
            } else {
                error.into()
            });
        }
    }
    if interrupted(&mut txn, Point::Claimed, key).await {
        return Err(stopped());
    }
    let mut scope = Scope::Within(txn);
    let result = work(&mut scope).await;
    let Scope::Within(mut txn) = scope else {
        return Err(ApiError::Internal(anyhow::anyhow!(
            "a keyed write left its transaction"
        )));
    };
    if interrupted(&mut txn, Point::Written, key).await {
        return Err(stopped());
    }
    let Some(kept) = to_keep(&result) else {
        txn.rollback().await;
        return result;
    };
    if let Err(error) = record(&mut txn, user, key, &kept).await {
        txn.rollback().await;
        return match result {
            // A refusal wrote nothing (and may have broken the transaction on PostgreSQL):
            // its answer is kept on its own.
            Err(refusal) => {
                keep_alone(db, user, key, fingerprint, &kept).await;
                Err(refusal)
            }
            // The write went with the transaction: the client's retry runs it again.
            Ok(_) => Err(error.into()),
        };
    }
    if interrupted(&mut txn, Point::Kept, key).await {
        return Err(stopped());
    }
    // A commit that fails (or whose acknowledgement is lost) leaves either everything or
    // nothing: the retry replays the answer or runs the write.
    txn.commit().await?;
    result
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

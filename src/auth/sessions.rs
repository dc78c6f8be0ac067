//! Better Auth session tokens: a bearer value that is not a JWT is looked up in Better
//! Auth's `session` table, on the database Better Auth writes.
//!
//! Invariants:
//! - a session is trusted for at most the configured cache time and never past its
//!   `expiresAt`, so a sign-out (row deleted) or an expiry is honoured within that time;
//! - a token that cannot be one (wrong shape, bad cookie signature) never reaches the
//!   database; unknown tokens are remembered briefly, lookups run on a small pool of their
//!   own with a bounded queue, so a flood of random tokens cannot take connections from
//!   the service's own pool nor queue without end;
//! - raw tokens are neither logged nor kept: the cache is keyed by their SHA-256.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use hmac::{Hmac, Mac};
use secrecy::ExposeSecret as _;
use sha2::Sha256;
use tokio::sync::Semaphore;

use super::refusal::{Refusal, TokenError};
use super::verdicts::{key_of, Verdicts};
use crate::config::SessionsConfig;
use crate::db::{AppPool, Backend, DatabaseConfig};

/// Connections the lookups may hold; also how many run at once.
const POOL_SIZE: u32 = 4;
/// Lookups that may wait for a connection; one more is refused at once with a 503.
const MAX_WAITING: usize = 256;
/// Longest wait for a connection before a lookup gives up with a 503.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long an unknown or expired token is answered from memory. A session token is only
/// handed out after its row is written, so an unknown one never turns valid later.
const NEGATIVE_TTL: Duration = Duration::from_secs(10);
/// Entries the cache holds before expired ones are dropped (all of them, if none expired).
const CACHE_CAPACITY: usize = 65_536;
/// Shortest time between two looks for a table that was missing.
const RECHECK_INTERVAL: Duration = Duration::from_secs(1);
/// The token characters Better Auth and its adapters generate (base62, sometimes
/// base64url), and the lengths accepted; anything else is refused before any lookup.
const TOKEN_LENGTHS: std::ops::RangeInclusive<usize> = 16..=256;

/// What `/health/ready` says about the session table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SessionStoreStatus {
    /// The table was found with the columns it needs.
    Ok,
    /// The table does not exist (yet): session tokens get 503 until it does.
    TableMissing,
    /// The table exists without a token, user or expiry column this service recognises.
    ColumnsMissing,
    /// The database could not be asked.
    Unreachable,
}

/// The lookup statement, once the table's columns are known.
#[derive(Debug)]
enum Schema {
    /// Shared, so a lookup takes it without copying the text.
    Ready(Arc<str>),
    NotReady {
        status: SessionStoreStatus,
        checked: Instant,
    },
}

/// How session lookups ended since start, for `/metrics`.
#[derive(Debug, Default)]
struct LookupCounts {
    /// Answered from the verdict cache.
    cached: AtomicU64,
    /// Answered by the database (a session found or not).
    database: AtomicU64,
    /// Refused with 503: too many lookups waiting, or no connection in time.
    busy: AtomicU64,
    /// Refused with 503: the table is missing or the database failed.
    unavailable: AtomicU64,
}

/// The session store: its own pool, the detected schema and the verdict cache.
pub struct Sessions {
    pool: AppPool,
    table: String,
    key: Option<Hmac<Sha256>>,
    cache_ttl: Duration,
    schema: Mutex<Schema>,
    /// The user of a token, or `None` for an unknown or expired one.
    cache: Verdicts<Option<Arc<str>>>,
    lookups: Semaphore,
    waiting: AtomicUsize,
    counts: LookupCounts,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions")
            .field("table", &self.table)
            .field("cache_ttl", &self.cache_ttl)
            .finish_non_exhaustive()
    }
}

/// A cookie signature in any of the forms Better Auth hands out: standard base64 with or
/// without padding, or base64url.
fn decode_signature(signature: &str) -> Option<Vec<u8>> {
    let normalized: String = signature
        .trim_end_matches('=')
        .chars()
        .map(|c| match c {
            '-' => '+',
            '_' => '/',
            c => c,
        })
        .collect();
    base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(normalized)
        .ok()
}

fn token_shape_ok(token: &str) -> bool {
    TOKEN_LENGTHS.contains(&token.len())
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Seconds since the epoch from an SQLite value of any type Better Auth's adapters write
/// (see [`crate::time::parse_stored`]).
fn sqlite_epoch(kind: &str, text: &str) -> Option<f64> {
    match kind {
        "integer" | "real" | "text" => {
            crate::time::parse_stored(text).map(|at| at.timestamp_micros() as f64 / 1e6)
        }
        _ => None,
    }
}

fn quote(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

fn is_missing_relation(error: &sqlx::Error) -> bool {
    match error.as_database_error() {
        Some(db) => {
            matches!(db.code().as_deref(), Some("42P01" | "42703"))
                || db.message().starts_with("no such table")
                || db.message().starts_with("no such column")
        }
        None => false,
    }
}

impl Sessions {
    /// Prepares the store for `config`; `own` is the service's database, used when
    /// Better Auth's is not named. Connects lazily: a database that is down at start only
    /// delays the first lookup.
    pub async fn new(
        config: &SessionsConfig,
        own: &DatabaseConfig,
        secret: Option<&secrecy::SecretString>,
    ) -> Result<Self, String> {
        let url = config.database_url.as_ref().unwrap_or(&own.url);
        let setting = if config.database_url.is_some() {
            "BETTER_AUTH_DATABASE_URL"
        } else {
            "DATABASE_URL"
        };
        let mut settings =
            DatabaseConfig::other(url, setting, POOL_SIZE, ACQUIRE_TIMEOUT).map_err(|e| e.0)?;
        if config.database_url.is_none() {
            settings.prepared_statements = own.prepared_statements;
        }
        let pool = AppPool::open(&settings, setting)
            .await
            .map_err(|e| format!("{setting}: {e}"))?;
        let key = secret
            .map(|secret| Hmac::<Sha256>::new_from_slice(secret.expose_secret().as_bytes()))
            .transpose()
            .map_err(|_| "BETTER_AUTH_SECRET cannot key HMAC-SHA256".to_owned())?;
        Ok(Self {
            pool,
            table: config.table.clone(),
            key,
            cache_ttl: config.cache_ttl,
            schema: Mutex::new(Schema::NotReady {
                status: SessionStoreStatus::Unreachable,
                // Due at once.
                checked: Instant::now()
                    .checked_sub(RECHECK_INTERVAL)
                    .unwrap_or_else(Instant::now),
            }),
            cache: Verdicts::new(CACHE_CAPACITY),
            lookups: Semaphore::new(POOL_SIZE as usize),
            waiting: AtomicUsize::new(0),
            counts: LookupCounts::default(),
        })
    }

    /// Looks for the table and its columns now, and logs what was found.
    pub async fn detect(&self) -> SessionStoreStatus {
        let detected = self.read_schema().await;
        let status = match &detected {
            Ok(Ok(_)) => SessionStoreStatus::Ok,
            Ok(Err(status)) => *status,
            Err(error) => {
                tracing::warn!(%error, "session table: the database cannot be reached");
                SessionStoreStatus::Unreachable
            }
        };
        match status {
            SessionStoreStatus::Ok => {
                tracing::info!(table = %self.table, "session tokens: table found")
            }
            SessionStoreStatus::TableMissing => {
                tracing::warn!(table = %self.table, "session tokens: the table does not exist; they get 503 until it does (run Better Auth's migrations)")
            }
            SessionStoreStatus::ColumnsMissing => {
                tracing::warn!(table = %self.table, "session tokens: the table has no token, userId/user_id or expiresAt/expires_at column")
            }
            SessionStoreStatus::Unreachable => {}
        }
        let schema = match detected {
            Ok(Ok(query)) => Schema::Ready(Arc::from(query)),
            _ => Schema::NotReady {
                status,
                checked: Instant::now(),
            },
        };
        *self.schema.lock().unwrap_or_else(|e| e.into_inner()) = schema;
        status
    }

    /// The state now, looking for a missing table again when a look is due (at most once
    /// a second): tables made after this store started (by the accounts module, or by
    /// Better Auth's migrations) show up without waiting for a lookup.
    pub async fn current_status(&self) -> SessionStoreStatus {
        let _ = self.query().await;
        self.status()
    }

    /// The state `/health/ready` reports.
    pub fn status(&self) -> SessionStoreStatus {
        match &*self.schema.lock().unwrap_or_else(|e| e.into_inner()) {
            Schema::Ready(_) => SessionStoreStatus::Ok,
            Schema::NotReady { status, .. } => *status,
        }
    }

    /// The lookup statement, or the columns' status when they are not all there.
    async fn read_schema(&self) -> Result<Result<String, SessionStoreStatus>, sqlx::Error> {
        let (schema_name, table) = match self.table.split_once('.') {
            Some((schema, table)) => (Some(schema), table),
            None => (None, self.table.as_str()),
        };
        let qualified = match schema_name {
            Some(schema) => format!("{}.{}", quote(schema), quote(table)),
            None => quote(table),
        };
        let columns: Vec<String> = match &self.pool {
            AppPool::Postgres(pool) => {
                sqlx::query_scalar(
                    "SELECT attname::text FROM pg_attribute \
                     WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped",
                )
                .bind(&qualified)
                .fetch_all(pool)
                .await?
            }
            AppPool::Sqlite(pool) => {
                sqlx::query_scalar("SELECT name FROM pragma_table_info(?1)")
                    .bind(table)
                    .fetch_all(pool)
                    .await?
            }
        };
        if columns.is_empty() {
            return Ok(Err(SessionStoreStatus::TableMissing));
        }
        let pick = |names: &[&str]| {
            names
                .iter()
                .find(|name| columns.iter().any(|c| c == *name))
                .map(|name| quote(name))
        };
        let (Some(token), Some(user), Some(expires)) = (
            pick(&["token"]),
            pick(&["userId", "user_id"]),
            pick(&["expiresAt", "expires_at"]),
        ) else {
            return Ok(Err(SessionStoreStatus::ColumnsMissing));
        };
        Ok(Ok(match self.pool.backend() {
            Backend::Postgres => format!(
                "SELECT CAST({user} AS text), CAST(EXTRACT(EPOCH FROM {expires}) AS float8), \
                 CAST(NULL AS text) FROM {qualified} WHERE {token} = $1 LIMIT 1"
            ),
            Backend::Sqlite => format!(
                "SELECT CAST({user} AS TEXT), CAST(NULL AS REAL), typeof({expires}) || ':' || \
                 CAST({expires} AS TEXT) FROM {qualified} WHERE {token} = ?1 LIMIT 1"
            ),
        }))
    }

    /// The lookup statement, looking for the table again (at most once a second) while it
    /// is missing.
    async fn query(&self) -> Result<Arc<str>, Refusal> {
        let due = match &*self.schema.lock().unwrap_or_else(|e| e.into_inner()) {
            Schema::Ready(query) => return Ok(Arc::clone(query)),
            Schema::NotReady { checked, .. } => checked.elapsed() >= RECHECK_INTERVAL,
        };
        if due && self.detect().await == SessionStoreStatus::Ok {
            if let Schema::Ready(query) = &*self.schema.lock().unwrap_or_else(|e| e.into_inner()) {
                return Ok(Arc::clone(query));
            }
        }
        Err(Refusal::SessionsUnavailable)
    }

    /// The user of `token` (a raw or signed session token), or why not.
    pub async fn verify(&self, token: &str) -> Result<String, Refusal> {
        let decoded;
        let mut token = token;
        if token.contains('%') {
            decoded = percent_encoding::percent_decode_str(token)
                .decode_utf8()
                .map_err(|_| TokenError::Malformed)?;
            token = &decoded;
        }
        if let Some((value, signature)) = token.split_once('.') {
            let key = self.key.as_ref().ok_or(TokenError::Signature)?;
            let signature = decode_signature(signature).ok_or(TokenError::Signature)?;
            let mut mac = key.clone();
            mac.update(value.as_bytes());
            mac.verify_slice(&signature)
                .map_err(|_| TokenError::Signature)?;
            token = value;
        }
        if !token_shape_ok(token) {
            return Err(TokenError::Malformed.into());
        }
        let key = key_of(token);
        if let Some(user) = self.cache.get(&key) {
            self.counts.cached.fetch_add(1, Ordering::Relaxed);
            return user
                .map(|u| u.to_string())
                .ok_or(TokenError::UnknownSession.into());
        }
        let row = self.fetch(token).await?;
        self.counts.database.fetch_add(1, Ordering::Relaxed);
        let now_epoch = crate::time::now().timestamp_micros() as f64 / 1e6;
        let verdict = match row {
            None => Err(TokenError::UnknownSession),
            Some((_, None)) => Err(TokenError::Claims),
            Some((_, Some(expires))) if expires <= now_epoch => Err(TokenError::Expired),
            Some((user, Some(_))) if user.trim().is_empty() || user.contains('\0') => {
                Err(TokenError::Subject)
            }
            Some((user, Some(expires))) => Ok((user, expires - now_epoch)),
        };
        match verdict {
            Ok((user, left)) => {
                let trust = self.cache_ttl.min(Duration::from_secs_f64(left.max(0.0)));
                self.cache
                    .remember(key, Some(Arc::from(user.as_str())), trust);
                Ok(user)
            }
            Err(reason) => {
                self.cache.remember(key, None, NEGATIVE_TTL);
                Err(reason.into())
            }
        }
    }

    /// Session lookups since start by how they ended: `cached`, `database` (a session
    /// found or not), `busy` and `unavailable` (both answered 503).
    pub fn lookup_counts(&self) -> [(&'static str, u64); 4] {
        let counts = &self.counts;
        [
            ("cached", counts.cached.load(Ordering::Relaxed)),
            ("database", counts.database.load(Ordering::Relaxed)),
            ("busy", counts.busy.load(Ordering::Relaxed)),
            ("unavailable", counts.unavailable.load(Ordering::Relaxed)),
        ]
    }

    /// The session row's user and expiry (seconds since the epoch), through the bounded
    /// queue.
    async fn fetch(&self, token: &str) -> Result<Option<(String, Option<f64>)>, Refusal> {
        let query = self.query().await.inspect_err(|_| {
            self.counts.unavailable.fetch_add(1, Ordering::Relaxed);
        })?;
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= MAX_WAITING {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            self.counts.busy.fetch_add(1, Ordering::Relaxed);
            tracing::warn!("session lookup refused: too many lookups waiting");
            return Err(Refusal::SessionsUnavailable);
        }
        let permit = tokio::time::timeout(ACQUIRE_TIMEOUT, self.lookups.acquire()).await;
        self.waiting.fetch_sub(1, Ordering::AcqRel);
        let Ok(Ok(_permit)) = permit else {
            self.counts.busy.fetch_add(1, Ordering::Relaxed);
            tracing::warn!("session lookup refused: no connection within the timeout");
            return Err(Refusal::SessionsUnavailable);
        };
        type Row = (Option<String>, Option<f64>, Option<String>);
        let row: Result<Option<Row>, sqlx::Error> = crate::db::on_pool!(&self.pool, |p| {
            sqlx::query_as(&query).bind(token).fetch_optional(p).await
        });
        match row {
            Ok(None) => Ok(None),
            Ok(Some((user, epoch, sqlite_value))) => {
                let expires = epoch.or_else(|| {
                    let (kind, text) = sqlite_value.as_deref()?.split_once(':')?;
                    sqlite_epoch(kind, text)
                });
                Ok(Some((user.unwrap_or_default(), expires)))
            }
            Err(error) => {
                if is_missing_relation(&error) {
                    // Dropped or renamed since it was found: look again on the next lookup.
                    *self.schema.lock().unwrap_or_else(|e| e.into_inner()) = Schema::NotReady {
                        status: SessionStoreStatus::TableMissing,
                        checked: Instant::now(),
                    };
                }
                self.counts.unavailable.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%error, "session lookup failed");
                Err(Refusal::SessionsUnavailable)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_decode_in_every_form_better_auth_uses() {
        let bytes: Vec<u8> = (0u8..32)
            .map(|b| b.wrapping_mul(37).wrapping_add(250))
            .collect();
        let standard = base64::engine::general_purpose::STANDARD.encode(&bytes);
        assert!(standard.contains('+') || standard.contains('/'));
        let url = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&bytes);
        for form in [
            standard.clone(),
            standard.trim_end_matches('=').to_owned(),
            url,
        ] {
            assert_eq!(
                decode_signature(&form).as_deref(),
                Some(&bytes[..]),
                "{form}"
            );
        }
        assert_eq!(decode_signature("not base64!"), None);
    }

    #[test]
    fn token_shapes() {
        assert!(token_shape_ok("AbCdEfGhIjKlMnOpQrStUvWxYz012345"));
        assert!(token_shape_ok("abc-def_ghi-jkl-mno"));
        for bad in [
            "short",
            "has space in it and is long",
            "ünïcödé-ünïcödé-ü",
            "",
        ] {
            assert!(!token_shape_ok(bad), "{bad:?}");
        }
        assert!(!token_shape_ok(&"a".repeat(257)));
    }

    #[test]
    fn sqlite_expiry_values_in_each_adapter_form() {
        let iso = sqlite_epoch("text", "2026-12-02T10:00:00.500Z");
        assert_eq!(iso, Some(1_796_205_600.5));
        assert_eq!(
            sqlite_epoch("text", "2026-12-02 10:00:00"),
            Some(1_796_205_600.0)
        );
        assert_eq!(
            sqlite_epoch("integer", "1796205600500"),
            Some(1_796_205_600.5)
        );
        assert_eq!(sqlite_epoch("integer", "1796205600"), Some(1_796_205_600.0));
        assert_eq!(
            sqlite_epoch("real", "1796205600.25"),
            Some(1_796_205_600.25)
        );
        assert_eq!(sqlite_epoch("text", "tomorrow"), None);
        assert_eq!(sqlite_epoch("null", ""), None);
    }
}

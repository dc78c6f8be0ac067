//! Better Auth's tables, created where absent, exactly as Better Auth 1.7's migrator makes
//! them (so its CLI, run before or after, finds nothing to change), and the sign-in
//! limits' counters, which are this service's own.

use crate::db::{on_pool, AppPool};

/// PostgreSQL: Better Auth's DDL, `IF NOT EXISTS` added.
const POSTGRES: &[&str] = &[
    "create table if not exists \"user\" (\"id\" text not null primary key, \"name\" text not null, \"email\" text not null unique, \"emailVerified\" boolean not null, \"image\" text, \"createdAt\" timestamptz default CURRENT_TIMESTAMP not null, \"updatedAt\" timestamptz default CURRENT_TIMESTAMP not null)",
    "create table if not exists \"session\" (\"id\" text not null primary key, \"expiresAt\" timestamptz not null, \"token\" text not null unique, \"createdAt\" timestamptz default CURRENT_TIMESTAMP not null, \"updatedAt\" timestamptz not null, \"ipAddress\" text, \"userAgent\" text, \"userId\" text not null references \"user\" (\"id\") on delete cascade)",
    "create table if not exists \"account\" (\"id\" text not null primary key, \"accountId\" text not null, \"providerId\" text not null, \"userId\" text not null references \"user\" (\"id\") on delete cascade, \"accessToken\" text, \"refreshToken\" text, \"idToken\" text, \"accessTokenExpiresAt\" timestamptz, \"refreshTokenExpiresAt\" timestamptz, \"scope\" text, \"password\" text, \"createdAt\" timestamptz default CURRENT_TIMESTAMP not null, \"updatedAt\" timestamptz not null)",
    "create table if not exists \"verification\" (\"id\" text not null primary key, \"identifier\" text not null, \"value\" text not null, \"expiresAt\" timestamptz not null, \"createdAt\" timestamptz default CURRENT_TIMESTAMP not null, \"updatedAt\" timestamptz default CURRENT_TIMESTAMP not null)",
    "create index if not exists \"session_userId_idx\" on \"session\" (\"userId\")",
    "create index if not exists \"account_userId_idx\" on \"account\" (\"userId\")",
    "create index if not exists \"verification_identifier_idx\" on \"verification\" (\"identifier\")",
    "CREATE TABLE IF NOT EXISTS auth_limits (key TEXT PRIMARY KEY, count BIGINT NOT NULL, window_start BIGINT NOT NULL)",
];

/// SQLite: Better Auth's DDL (dates as `date`, holding ISO text; booleans as integers).
const SQLITE: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS \"user\" (\"id\" text not null primary key, \"name\" text not null, \"email\" text not null unique, \"emailVerified\" integer not null, \"image\" text, \"createdAt\" date not null, \"updatedAt\" date not null)",
    "CREATE TABLE IF NOT EXISTS \"session\" (\"id\" text not null primary key, \"expiresAt\" date not null, \"token\" text not null unique, \"createdAt\" date not null, \"updatedAt\" date not null, \"ipAddress\" text, \"userAgent\" text, \"userId\" text not null references \"user\" (\"id\") on delete cascade)",
    "CREATE TABLE IF NOT EXISTS \"account\" (\"id\" text not null primary key, \"accountId\" text not null, \"providerId\" text not null, \"userId\" text not null references \"user\" (\"id\") on delete cascade, \"accessToken\" text, \"refreshToken\" text, \"idToken\" text, \"accessTokenExpiresAt\" date, \"refreshTokenExpiresAt\" date, \"scope\" text, \"password\" text, \"createdAt\" date not null, \"updatedAt\" date not null)",
    "CREATE TABLE IF NOT EXISTS \"verification\" (\"id\" text not null primary key, \"identifier\" text not null, \"value\" text not null, \"expiresAt\" date not null, \"createdAt\" date not null, \"updatedAt\" date not null)",
    "CREATE INDEX IF NOT EXISTS \"session_userId_idx\" on \"session\" (\"userId\")",
    "CREATE INDEX IF NOT EXISTS \"account_userId_idx\" on \"account\" (\"userId\")",
    "CREATE INDEX IF NOT EXISTS \"verification_identifier_idx\" on \"verification\" (\"identifier\")",
    "CREATE TABLE IF NOT EXISTS auth_limits (key TEXT PRIMARY KEY, count INTEGER NOT NULL, window_start INTEGER NOT NULL)",
];

/// A fixed advisory lock key, so instances starting together create the tables once.
const LOCK_KEY: i64 = 0x6163_636f_756e_7473;

/// Creates whatever of the tables is missing, in one transaction.
pub async fn ensure(pool: &AppPool) -> Result<(), sqlx::Error> {
    match pool {
        AppPool::Postgres(p) => {
            let mut tx = p.begin().await?;
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(LOCK_KEY)
                .execute(&mut *tx)
                .await?;
            for sql in POSTGRES {
                sqlx::query(sql).execute(&mut *tx).await?;
            }
            tx.commit().await
        }
        AppPool::Sqlite(p) => {
            let mut tx = p.begin_with("BEGIN IMMEDIATE").await?;
            for sql in SQLITE {
                sqlx::query(sql).execute(&mut *tx).await?;
            }
            tx.commit().await
        }
    }
}

/// Whether `account` has Better Auth's newer `issuer` column.
pub async fn has_issuer_column(pool: &AppPool) -> Result<bool, sqlx::Error> {
    let columns: Vec<String> = match pool {
        AppPool::Postgres(p) => {
            sqlx::query_scalar(
                "SELECT attname::text FROM pg_attribute \
                 WHERE attrelid = to_regclass('\"account\"') AND attnum > 0 AND NOT attisdropped",
            )
            .fetch_all(p)
            .await?
        }
        AppPool::Sqlite(p) => {
            sqlx::query_scalar("SELECT name FROM pragma_table_info('account')")
                .fetch_all(p)
                .await?
        }
    };
    Ok(columns.iter().any(|c| c == "issuer"))
}

/// Deletes counters whose window ended before `before_ms`.
pub async fn prune_limits(pool: &AppPool, before_ms: i64) -> Result<u64, sqlx::Error> {
    on_pool!(pool, |p| sqlx::query(
        "DELETE FROM auth_limits WHERE window_start < $1"
    )
    .bind(before_ms)
    .execute(p)
    .await
    .map(|r| r.rows_affected()))
}

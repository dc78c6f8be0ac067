//! Better Auth's tables, read and written as Better Auth does: `"user"`, `"session"`,
//! `"account"` with quoted camelCase columns, one SQL text per operation for both
//! databases. A user's rows are only ever written in one transaction per change.

use sqlx::{Postgres, Sqlite};

use super::ids::generate_id;
use super::stamp::Stamp;
use crate::db::{on_pool, AppPool};

/// The insert of `$session`, its values bound (one text for every place that stores one).
macro_rules! insert_session {
    ($session:expr) => {
        sqlx::query(INSERT_SESSION)
            .bind(&$session.id)
            .bind($session.expires_at)
            .bind(&$session.token)
            .bind($session.created_at)
            .bind($session.updated_at)
            .bind(&$session.ip_address)
            .bind(&$session.user_agent)
            .bind(&$session.user_id)
    };
}

/// A user as Better Auth answers it (its keys in Better Auth's order).
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub name: String,
    pub email: String,
    pub email_verified: bool,
    pub image: Option<String>,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Stamp,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Stamp,
    pub id: String,
}

/// A session as Better Auth answers it (its keys in Better Auth's order).
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Session {
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: Stamp,
    pub token: String,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Stamp,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Stamp,
    pub ip_address: Option<String>,
    pub user_agent: Option<String>,
    pub user_id: String,
    pub id: String,
}

impl Session {
    /// A new session of `user_id`, lasting `lifetime_secs`.
    pub fn new(user_id: &str, lifetime_secs: i64, ip: &str, user_agent: &str) -> Self {
        let now = Stamp::now();
        Self {
            expires_at: now.plus_secs(lifetime_secs),
            token: generate_id(),
            created_at: now,
            updated_at: now,
            ip_address: Some(ip.to_owned()),
            user_agent: Some(user_agent.to_owned()),
            user_id: user_id.to_owned(),
            id: generate_id(),
        }
    }
}

type UserTuple = (String, String, String, bool, Option<String>, Stamp, Stamp);
type SessionTuple = (
    String,
    String,
    String,
    Stamp,
    Stamp,
    Stamp,
    Option<String>,
    Option<String>,
);

fn user_of((id, name, email, email_verified, image, created_at, updated_at): UserTuple) -> User {
    User {
        name,
        email,
        email_verified,
        image,
        created_at,
        updated_at,
        id,
    }
}

fn session_of(
    (id, token, user_id, expires_at, created_at, updated_at, ip_address, user_agent): SessionTuple,
) -> Session {
    Session {
        expires_at,
        token,
        created_at,
        updated_at,
        ip_address,
        user_agent,
        user_id,
        id,
    }
}

const USER_COLUMNS: &str = "u.\"id\", u.\"name\", u.\"email\", u.\"emailVerified\", u.\"image\", \
                            u.\"createdAt\", u.\"updatedAt\"";
const SESSION_COLUMNS: &str = "s.\"id\", s.\"token\", s.\"userId\", s.\"expiresAt\", \
                               s.\"createdAt\", s.\"updatedAt\", s.\"ipAddress\", s.\"userAgent\"";

/// How a write transaction starts: SQLite takes the write lock at once, so a transaction
/// that reads first never fails to upgrade beside the tasks' writer.
trait WriteBegin {
    const BEGIN: &'static str;
}
impl WriteBegin for sqlx::Pool<Sqlite> {
    const BEGIN: &'static str = "BEGIN IMMEDIATE";
}
impl WriteBegin for sqlx::Pool<Postgres> {
    const BEGIN: &'static str = "BEGIN";
}
fn begin_sql<P: WriteBegin>(_: &P) -> &'static str {
    P::BEGIN
}

/// Whether `error` is a unique violation (the email taken by a concurrent sign-up).
pub fn is_unique_violation(error: &sqlx::Error) -> bool {
    error
        .as_database_error()
        .is_some_and(|db| matches!(db.kind(), sqlx::error::ErrorKind::UniqueViolation))
}

/// The store: Better Auth's database, and whether its `account` table has the `issuer`
/// column of Better Auth's newer schema.
#[derive(Debug, Clone)]
pub struct Store {
    pub pool: AppPool,
    pub issuer_column: bool,
    /// Whether Better Auth's tables share the service's database, so a user's tasks can
    /// be deleted in the user's own transaction.
    pub shares_tasks_database: bool,
}

impl Store {
    /// The user with `email` (already lowercased) and the password of its credential
    /// account, if it has one.
    pub async fn user_by_email(
        &self,
        email: &str,
    ) -> Result<Option<(User, Option<String>)>, sqlx::Error> {
        let sql = format!(
            "SELECT {USER_COLUMNS}, a.\"password\" FROM \"user\" u \
             LEFT JOIN \"account\" a ON a.\"userId\" = u.\"id\" \
             AND a.\"providerId\" = 'credential' AND a.\"accountId\" = u.\"id\" \
             WHERE u.\"email\" = $1 ORDER BY a.\"password\" IS NULL LIMIT 1"
        );
        type Row = (
            String,
            String,
            String,
            bool,
            Option<String>,
            Stamp,
            Stamp,
            Option<String>,
        );
        let row: Option<Row> = on_pool!(&self.pool, |p| sqlx::query_as(&sql)
            .bind(email)
            .fetch_optional(p)
            .await)?;
        Ok(row.map(
            |(id, name, email, verified, image, created, updated, password)| {
                (
                    user_of((id, name, email, verified, image, created, updated)),
                    password,
                )
            },
        ))
    }

    /// The password of `user_id`'s credential account: `None` without one.
    pub async fn credential_password(
        &self,
        user_id: &str,
    ) -> Result<Option<Option<String>>, sqlx::Error> {
        let sql = "SELECT \"password\" FROM \"account\" WHERE \"providerId\" = 'credential' \
                   AND \"accountId\" = $1 AND \"userId\" = $1 LIMIT 1";
        let row: Option<(Option<String>,)> = on_pool!(&self.pool, |p| sqlx::query_as(sql)
            .bind(user_id)
            .fetch_optional(p)
            .await)?;
        Ok(row.map(|(password,)| password))
    }

    /// Creates the user, its credential account and (unless `None`) a session, in one
    /// transaction.
    pub async fn create_user(
        &self,
        user: &User,
        hash: &str,
        session: Option<&Session>,
    ) -> Result<(), sqlx::Error> {
        let insert_user = "INSERT INTO \"user\" (\"id\", \"name\", \"email\", \"emailVerified\", \
                           \"image\", \"createdAt\", \"updatedAt\") VALUES ($1, $2, $3, $4, $5, $6, $7)";
        let insert_account = if self.issuer_column {
            "INSERT INTO \"account\" (\"id\", \"accountId\", \"providerId\", \"userId\", \"password\", \
             \"createdAt\", \"updatedAt\", \"issuer\") VALUES ($1, $2, 'credential', $2, $3, $4, $4, 'local:credential')"
        } else {
            "INSERT INTO \"account\" (\"id\", \"accountId\", \"providerId\", \"userId\", \"password\", \
             \"createdAt\", \"updatedAt\") VALUES ($1, $2, 'credential', $2, $3, $4, $4)"
        };
        on_pool!(&self.pool, |p| {
            let mut tx = p.begin_with(begin_sql(p)).await?;
            sqlx::query(insert_user)
                .bind(&user.id)
                .bind(&user.name)
                .bind(&user.email)
                .bind(user.email_verified)
                .bind(&user.image)
                .bind(user.created_at)
                .bind(user.updated_at)
                .execute(&mut *tx)
                .await?;
            sqlx::query(insert_account)
                .bind(generate_id())
                .bind(&user.id)
                .bind(hash)
                .bind(user.created_at)
                .execute(&mut *tx)
                .await?;
            if let Some(session) = session {
                insert_session!(session).execute(&mut *tx).await?;
            }
            tx.commit().await
        })
    }

    /// Stores a new session.
    pub async fn create_session(&self, session: &Session) -> Result<(), sqlx::Error> {
        on_pool!(&self.pool, |p| insert_session!(session)
            .execute(p)
            .await
            .map(drop))
    }

    /// The session with `token` and its user.
    pub async fn session(&self, token: &str) -> Result<Option<(Session, User)>, sqlx::Error> {
        let sql = format!(
            "SELECT {SESSION_COLUMNS}, {USER_COLUMNS} FROM \"session\" s \
             JOIN \"user\" u ON u.\"id\" = s.\"userId\" WHERE s.\"token\" = $1 LIMIT 1"
        );
        type Row = (
            String,
            String,
            String,
            Stamp,
            Stamp,
            Stamp,
            Option<String>,
            Option<String>,
            String,
            String,
            String,
            bool,
            Option<String>,
            Stamp,
            Stamp,
        );
        let row: Option<Row> = on_pool!(&self.pool, |p| sqlx::query_as(&sql)
            .bind(token)
            .fetch_optional(p)
            .await)?;
        Ok(row.map(|r| {
            (
                session_of((r.0, r.1, r.2, r.3, r.4, r.5, r.6, r.7)),
                user_of((r.8, r.9, r.10, r.11, r.12, r.13, r.14)),
            )
        }))
    }

    /// Moves the session's expiry; false when it is gone.
    pub async fn refresh(
        &self,
        token: &str,
        expires_at: Stamp,
        now: Stamp,
    ) -> Result<bool, sqlx::Error> {
        let sql =
            "UPDATE \"session\" SET \"expiresAt\" = $1, \"updatedAt\" = $2 WHERE \"token\" = $3";
        let done = on_pool!(&self.pool, |p| sqlx::query(sql)
            .bind(expires_at)
            .bind(now)
            .bind(token)
            .execute(p)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(done > 0)
    }

    /// Deletes the session with `token` (of `user_id`, when given).
    pub async fn delete_session(
        &self,
        token: &str,
        user_id: Option<&str>,
    ) -> Result<(), sqlx::Error> {
        on_pool!(&self.pool, |p| match user_id {
            None => sqlx::query("DELETE FROM \"session\" WHERE \"token\" = $1")
                .bind(token)
                .execute(p)
                .await
                .map(drop),
            Some(user) =>
                sqlx::query("DELETE FROM \"session\" WHERE \"token\" = $1 AND \"userId\" = $2")
                    .bind(token)
                    .bind(user)
                    .execute(p)
                    .await
                    .map(drop),
        })
    }

    /// Deletes every session of `user_id` but the one with `keep`, if given.
    pub async fn delete_sessions(
        &self,
        user_id: &str,
        keep: Option<&str>,
    ) -> Result<(), sqlx::Error> {
        on_pool!(&self.pool, |p| sqlx::query(
            "DELETE FROM \"session\" WHERE \"userId\" = $1 AND \"token\" <> $2"
        )
        .bind(user_id)
        .bind(keep.unwrap_or(""))
        .execute(p)
        .await
        .map(drop))
    }

    /// Every session of `user_id` that has not expired.
    pub async fn sessions_of(&self, user_id: &str) -> Result<Vec<Session>, sqlx::Error> {
        let sql = format!("SELECT {SESSION_COLUMNS} FROM \"session\" s WHERE s.\"userId\" = $1");
        let rows: Vec<SessionTuple> = on_pool!(&self.pool, |p| sqlx::query_as(&sql)
            .bind(user_id)
            .fetch_all(p)
            .await)?;
        let now = Stamp::now();
        let mut sessions: Vec<Session> = rows
            .into_iter()
            .map(session_of)
            .filter(|s| s.expires_at > now)
            .collect();
        sessions.sort_by_key(|s| s.created_at);
        Ok(sessions)
    }

    /// Sets the user's name and/or image.
    pub async fn update_user(
        &self,
        user_id: &str,
        name: Option<&str>,
        image: Option<Option<&str>>,
        now: Stamp,
    ) -> Result<(), sqlx::Error> {
        let sql = "UPDATE \"user\" SET \"name\" = CASE WHEN $1 THEN $2 ELSE \"name\" END, \
                   \"image\" = CASE WHEN $3 THEN $4 ELSE \"image\" END, \"updatedAt\" = $5 \
                   WHERE \"id\" = $6";
        on_pool!(&self.pool, |p| sqlx::query(sql)
            .bind(name.is_some())
            .bind(name.unwrap_or_default())
            .bind(image.is_some())
            .bind(image.flatten())
            .bind(now)
            .bind(user_id)
            .execute(p)
            .await
            .map(drop))
    }

    /// Sets the credential password; with `new_session`, every session of the user goes
    /// and that one is stored instead, in the same transaction.
    pub async fn change_password(
        &self,
        user_id: &str,
        hash: &str,
        new_session: Option<&Session>,
    ) -> Result<(), sqlx::Error> {
        let update = "UPDATE \"account\" SET \"password\" = $1, \"updatedAt\" = $2 \
                      WHERE \"providerId\" = 'credential' AND \"accountId\" = $3 AND \"userId\" = $3";
        on_pool!(&self.pool, |p| {
            let mut tx = p.begin_with(begin_sql(p)).await?;
            if new_session.is_some() {
                sqlx::query("DELETE FROM \"session\" WHERE \"userId\" = $1")
                    .bind(user_id)
                    .execute(&mut *tx)
                    .await?;
            }
            sqlx::query(update)
                .bind(hash)
                .bind(Stamp::now())
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
            if let Some(session) = new_session {
                insert_session!(session).execute(&mut *tx).await?;
            }
            tx.commit().await
        })
    }

    /// Deletes the user: sessions, accounts, the user, and in the same transaction every
    /// statement of `also` (`$1` = the user id), the user's data elsewhere in this database.
    pub async fn delete_user(&self, user_id: &str, also: &[&str]) -> Result<(), sqlx::Error> {
        on_pool!(&self.pool, |p| {
            let mut tx = p.begin_with(begin_sql(p)).await?;
            for sql in also.iter().copied().chain([
                "DELETE FROM \"session\" WHERE \"userId\" = $1",
                "DELETE FROM \"account\" WHERE \"userId\" = $1",
                "DELETE FROM \"user\" WHERE \"id\" = $1",
            ]) {
                sqlx::query(sql).bind(user_id).execute(&mut *tx).await?;
            }
            tx.commit().await
        })
    }
}

const INSERT_SESSION: &str =
    "INSERT INTO \"session\" (\"id\", \"expiresAt\", \"token\", \"createdAt\", \
                              \"updatedAt\", \"ipAddress\", \"userAgent\", \"userId\") \
                              VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";

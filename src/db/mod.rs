//! The database: one pool type over SQLite or PostgreSQL, chosen by the URL's scheme at
//! start, owned by a `rocket_db_pools` fairing; embedded migrations per dialect.
//!
//! Store functions write one SQL text and let [`on_pool!`] compile it once per backend, so
//! both databases run the same statement with native types.

use std::str::FromStr;
use std::time::Duration;

use rocket::fairing::AdHoc;
use rocket::figment::Figment;
use rocket_db_pools::Database;
use secrecy::ExposeSecret as _;
use sqlx::pool::PoolOptions;
use sqlx::postgres::PgPool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqliteSynchronous};
use sqlx::Connection as _;

pub mod errors;
pub mod postgres;
pub mod prune;

pub use crate::config::{Backend, DatabaseConfig, SqliteDurability, UnknownScheme};

/// Runs `$body` with `$p` bound to the concrete sqlx pool of either backend.
macro_rules! on_pool {
    ($pool:expr, |$p:ident| $body:expr) => {
        match $pool {
            $crate::db::AppPool::Sqlite($p) => $body,
            $crate::db::AppPool::Postgres($p) => $body,
        }
    };
}
pub(crate) use on_pool;

/// The service's pool: a cheap, reference-counted handle to either backend's pool.
#[derive(Debug, Clone)]
pub enum AppPool {
    /// SQLite.
    Sqlite(SqlitePool),
    /// PostgreSQL.
    Postgres(PgPool),
}

/// The database fairing and request guard (`&Db`).
#[derive(Database)]
#[database("todo")]
pub struct Db(AppPool);

/// Why the pool could not be created. Never carries the URL (it may hold a password).
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// A setting under `databases.todo` is missing or wrong.
    #[error("{0}")]
    Config(String),
    /// The database refused or failed an operation.
    #[error("{context}: {source}")]
    Sqlx {
        /// What was being done.
        context: &'static str,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// A migration failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// The pool options of `settings`, at most `cap` connections.
fn pool_options<DB: sqlx::Database>(settings: &DatabaseConfig, cap: u32) -> PoolOptions<DB> {
    let max = settings.max_connections.clamp(1, cap);
    PoolOptions::new()
        .max_connections(max)
        .min_connections(settings.min_connections.min(max))
        .acquire_timeout(settings.acquire_timeout)
        .idle_timeout(settings.idle_timeout)
        // A ping on every checkout would double the round trips; only connections that
        // sat idle long enough to have been dropped by a proxy are checked first.
        .test_before_acquire(false)
        .before_acquire(|conn: &mut DB::Connection, meta| {
            Box::pin(async move {
                if meta.idle_for > Duration::from_secs(30) {
                    conn.ping().await?;
                }
                Ok(true)
            })
        })
}

impl AppPool {
    /// Creates the pool without opening its connections: a database that is down at start
    /// only delays the first queries, and the pool reconnects by itself after an outage.
    /// On PostgreSQL it first decides whether named prepared statements can be kept (see
    /// [`postgres::decide`]); `setting` names the URL in errors and logs.
    pub async fn open(settings: &DatabaseConfig, setting: &str) -> Result<Self, DbError> {
        let url = settings.url.expose_secret();
        match settings.backend {
            Backend::Sqlite => {
                let options = SqliteConnectOptions::from_str(url)
                    .map_err(|_| {
                        DbError::Config(format!("{setting} is not a valid sqlite:// URL"))
                    })?
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(match settings.sqlite_synchronous {
                        SqliteDurability::Full => SqliteSynchronous::Full,
                        SqliteDurability::Normal => SqliteSynchronous::Normal,
                    })
                    .foreign_keys(true)
                    .busy_timeout(settings.acquire_timeout);
                create_parent_dir(options.get_filename())?;
                Ok(Self::Sqlite(
                    pool_options(settings, sqlite_connections()).connect_lazy_with(options),
                ))
            }
            Backend::Postgres => {
                let (options, named_later) = postgres::pool_options(settings, setting).await?;
                let pool = pool_options(settings, u32::MAX).connect_lazy_with(options);
                if let Some(named) = named_later {
                    tokio::spawn(postgres::settle_later(
                        pool.clone(),
                        named,
                        setting.to_owned(),
                    ));
                }
                Ok(Self::Postgres(pool))
            }
        }
    }

    /// Which backend this pool talks to.
    pub fn backend(&self) -> Backend {
        match self {
            Self::Sqlite(_) => Backend::Sqlite,
            Self::Postgres(_) => Backend::Postgres,
        }
    }

    /// Applies the embedded migrations of this pool's dialect. On PostgreSQL they run on
    /// the direct host (see [`postgres::direct_options`]) in one transaction that holds a
    /// transaction-level advisory lock: instances starting together migrate once, and
    /// nothing outlives the transaction, so even a transaction-mode pooler serves it.
    pub async fn migrate(&self, settings: &DatabaseConfig) -> Result<(), DbError> {
        match self {
            Self::Sqlite(pool) => sqlx::migrate!("./migrations/sqlite").run(pool).await?,
            Self::Postgres(_) => {
                // Unnamed statements: the direct URL may yet be a pooler, and a one-off
                // run gains nothing from a statement cache.
                let direct = postgres::direct_options(settings)?.statement_cache_capacity(0);
                let sqlx_error = |context| move |source| DbError::Sqlx { context, source };
                let mut conn = sqlx::postgres::PgConnection::connect_with(&direct)
                    .await
                    .map_err(sqlx_error(
                        "connecting to the database's direct host for the migrations",
                    ))?;
                let mut tx = conn
                    .begin()
                    .await
                    .map_err(sqlx_error("starting the migrations"))?;
                let database: String = sqlx::query_scalar("SELECT current_database()")
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(sqlx_error("starting the migrations"))?;
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(migration_lock(&database))
                    .execute(&mut *tx)
                    .await
                    .map_err(sqlx_error("waiting for another instance's migrations"))?;
                let mut migrator = sqlx::migrate!("./migrations/postgres");
                migrator.set_locking(false);
                migrator.run_direct(&mut *tx).await?;
                tx.commit()
                    .await
                    .map_err(sqlx_error("committing the migrations"))?;
                let _ = conn.close().await;
            }
        }
        Ok(())
    }

    /// Checks that the database answers, within `timeout`.
    pub async fn ping(&self, timeout: Duration) -> Result<(), sqlx::Error> {
        let query =
            async { on_pool!(self, |p| sqlx::query("SELECT 1").execute(p).await.map(drop)) };
        tokio::time::timeout(timeout, query)
            .await
            .unwrap_or(Err(sqlx::Error::PoolTimedOut))
    }

    /// Closes the pool, waiting for connections in use to come back. For after the server
    /// has answered its last request.
    pub async fn close(&self) {
        on_pool!(self, |p| p.close().await);
    }

    /// Connections open and idle, for health and metrics.
    pub fn size_and_idle(&self) -> (u32, usize) {
        on_pool!(self, |p| (p.size(), p.num_idle()))
    }
}

/// The migrations' advisory lock key: sqlx's own for `database` (which earlier versions of
/// the service took as a session lock), so an instance of either kind waits for the other.
fn migration_lock(database: &str) -> i64 {
    const CRC_IEEE: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);
    0x3d32_ad9e * i64::from(CRC_IEEE.checksum(database.as_bytes()))
}

/// The most SQLite connections worth holding in the pool, which reads (writes go through
/// one more connection of their own, see `tasks::store`): reads can use no more than the
/// cores. Each connection is a thread with its own page cache (up to 2 MiB), so more cost
/// memory and, under load, speed: 15 connections on 2 cores served a tenth fewer lists
/// than 4, with 9 MB more resident (scripts/load).
fn sqlite_connections() -> u32 {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    u32::try_from(cores.saturating_mul(2))
        .unwrap_or(u32::MAX)
        .max(4)
}

fn create_parent_dir(path: &std::path::Path) -> Result<(), DbError> {
    let name = path.to_string_lossy();
    if name.is_empty() || name == ":memory:" {
        return Ok(());
    }
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => std::fs::create_dir_all(parent)
            .map_err(|e| DbError::Config(format!("cannot create the SQLite folder: {e}"))),
        _ => Ok(()),
    }
}

#[rocket::async_trait]
impl rocket_db_pools::Pool for AppPool {
    type Connection = AppPool;
    type Error = DbError;

    async fn init(figment: &Figment) -> Result<Self, Self::Error> {
        let settings =
            DatabaseConfig::from_pool_figment(figment).map_err(|error| DbError::Config(error.0))?;
        Self::open(&settings, "DATABASE_URL").await
    }

    async fn get(&self) -> Result<Self::Connection, Self::Error> {
        Ok(self.clone())
    }

    /// rocket_db_pools calls this from its shutdown fairing, when shutdown *starts*: closing
    /// then would fail every request still waiting for a connection. The pool stays open
    /// until the server has drained; [`AppPool::close`] closes it after that.
    async fn close(&self) {}
}

/// The database module: the pool fairing. (The migrations run in `startup`.)
pub fn stage() -> AdHoc {
    AdHoc::on_ignite("Database", |rocket| async { rocket.attach(Db::init()) })
}

#[cfg(test)]
mod tests {
    #[test]
    fn both_dialects_have_the_same_migrations() {
        let names = |dir: &str| {
            let mut names: Vec<String> = std::fs::read_dir(dir)
                .into_iter()
                .flatten()
                .flatten()
                .map(|entry| entry.file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            names
        };
        let sqlite = names(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/sqlite"));
        let postgres = names(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres"));
        assert!(!sqlite.is_empty());
        assert_eq!(sqlite, postgres);
    }
}

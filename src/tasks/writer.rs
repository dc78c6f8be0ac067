//! The one commit step of every write: runs the write with its events appended to the log
//! (`super::log`) in the same transaction, and tells the registered sinks once it
//! committed. Its state (the SQLite writer's connection) is private to this file; the
//! store reaches it only through [`commit`] and [`begin`], and the SQLite checkpoints
//! ([`keep_checkpointed`]) hold it for their last step.
//!
//! A write runs in a [`Scope`]: alone, committing by itself, or inside a [`Txn`] that
//! the idempotency layer opened so that the key, the write, its events and the answer
//! commit together (`super::idempotency`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use sqlx::sqlite::{SqliteConnection, SqlitePool, SqliteRow};
use sqlx::{ConnectOptions as _, Sqlite};
use tokio::sync::OwnedMutexGuard;

use super::changes::{Appended, ChangeHooks, TaskChange};
use super::log;
use super::model::Task;
use super::row::{DeletedRow, TaskRow};
use super::sql::{self, Arg, BindArgs as _};
use crate::db::AppPool;
use crate::error::ApiError;
use crate::periodic::Throttle;

/// The commit step's state, managed by `tasks::stage()`: who hears of committed changes
/// and, on SQLite, the one writer at a time.
#[derive(Default)]
pub struct Writer {
    hooks: ChangeHooks,
    /// SQLite: one write at a time, through one connection.
    sqlite: Arc<tokio::sync::Mutex<SqliteWriter>>,
    /// SQLite: written since the WAL was last checkpointed ([`keep_checkpointed`]).
    wrote: AtomicBool,
    /// Tests only: where keyed writes are interrupted ([`Writer::interrupt_with`]).
    interrupt: OnceLock<Box<Interrupt>>,
}

/// A point between the statements of a keyed write's transaction.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Point {
    /// The key is claimed; the write has not run.
    Claimed,
    /// The write ran; its answer is not kept yet.
    Written,
    /// The answer is kept; the transaction has not committed.
    Kept,
}

/// What happens to a keyed write at a [`Point`].
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interruption {
    /// The write stops there, as if its process had died: the transaction goes, the
    /// client gets no answer of the write's own (a 503).
    Abort,
    /// The database connection is cut there; the write goes on and meets the failure.
    Cut,
    /// The write waits there, holding its transaction.
    Pause(Duration),
}

/// Decides, for a point and an `Idempotency-Key`, whether a keyed write is interrupted.
#[doc(hidden)]
pub type Interrupt = dyn Fn(Point, &str) -> Option<Interruption> + Send + Sync;

/// What the writer reports to the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriterSnapshot {
    /// SQLite: whether the writer's connection (outside the pool) is open. A write in
    /// progress holds it, so a held lock counts as open.
    pub sqlite_writer_open: bool,
}

impl Writer {
    /// The sinks that hear of every committed change; for start-up.
    pub fn hooks(&self) -> &ChangeHooks {
        &self.hooks
    }

    /// Tests only: interrupts keyed writes where `interrupt` says, to show what a crash or a
    /// cut connection at each point leaves behind. Set once; never set in service.
    #[doc(hidden)]
    pub fn interrupt_with(&self, interrupt: Box<Interrupt>) {
        let _ = self.interrupt.set(interrupt);
    }

    /// SQLite: the writer connection's `PRAGMA synchronous` (0 off, 1 normal, 2 full, 3
    /// extra), for tests and diagnostics; `None` on PostgreSQL.
    #[doc(hidden)]
    pub async fn sqlite_synchronous(&self, db: &AppPool) -> Result<Option<i64>, sqlx::Error> {
        let AppPool::Sqlite(pool) = db else {
            return Ok(None);
        };
        let mut held = self.sqlite.lock().await;
        let mut conn = match held.conn.take() {
            Some(open) => open,
            None => writer_connection(pool).await?,
        };
        let level = sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(&mut conn)
            .await;
        held.conn = Some(conn);
        level.map(Some)
    }

    fn interruption(&self, point: Point, key: &str) -> Option<Interruption> {
        self.interrupt.get().and_then(|decide| decide(point, key))
    }

    /// The writer's state, for the metrics.
    pub fn snapshot(&self) -> WriterSnapshot {
        WriterSnapshot {
            sqlite_writer_open: self
                .sqlite
                .try_lock()
                .map_or(true, |writer| writer.conn.is_some()),
        }
    }
}

/// One write: its statement (per dialect), its arguments, and what its rows mean.
pub(super) struct Write {
    /// SQLite: how the write runs.
    pub(super) sqlite: SqliteWrite,
    /// PostgreSQL: the write in [`super::log::logged_one!`] (or `logged_deletes!`) form, one statement.
    pub(super) postgres: &'static str,
    pub(super) args: Vec<Arg>,
    pub(super) kind: WriteKind,
}

/// How SQLite runs a write.
#[derive(Clone, Copy)]
pub(super) enum SqliteWrite {
    /// A write of at most one task with its event appended and its commit, in one round
    /// trip ([`super::log::sqlite_logged!`]).
    Logged(&'static str),
    /// A delete of any number of tasks in [`sql::begun!`] form: the commit step appends
    /// their events ([`log::APPEND_DELETES`]) and commits, a second round trip.
    DeleteMany(&'static str),
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum WriteKind {
    /// Returns the created task rows.
    Create,
    /// Returns the updated task rows.
    Update,
    /// Returns `id, user_id` of the deleted rows.
    Delete,
}

impl WriteKind {
    fn task_change(self, task: Task) -> TaskChange {
        match self {
            Self::Create => TaskChange::Created(task),
            _ => TaskChange::Updated(task),
        }
    }
}

/// A row of a PostgreSQL write, with the id of the event appended for it.
#[derive(sqlx::FromRow)]
struct LoggedRow<T> {
    #[sqlx(flatten)]
    row: T,
    event_id: i64,
}

/// The changes of a write's returned task rows.
fn task_changes(kind: WriteKind, rows: Vec<TaskRow>) -> Result<Vec<TaskChange>, ApiError> {
    rows.into_iter()
        .map(|row| Task::try_from(row).map(|task| kind.task_change(task)))
        .collect()
}

fn deleted(row: DeletedRow) -> TaskChange {
    TaskChange::Deleted {
        user_id: row.user_id,
        id: row.id,
    }
}

/// Where a write's statements run.
pub enum Scope {
    /// Each write in a transaction of its own, committed before [`commit`] returns.
    Alone(AppPool),
    /// Inside a keyed write's transaction ([`begin`]), committed by its owner.
    Within(Txn),
}

/// A transaction a keyed write opened with [`begin`]: on PostgreSQL a pooled connection's,
/// on SQLite the one writer's (held until the transaction ends). The sinks hear of its
/// writes when it commits ([`Txn::commit`]); dropped without a commit, it rolls back.
pub struct Txn {
    conn: TxnConn,
    /// The events its writes appended, told to the sinks once it commits.
    appended: Option<Appended>,
    writer: Arc<Writer>,
}

enum TxnConn {
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
    Sqlite {
        held: OwnedMutexGuard<SqliteWriter>,
        /// `None` once cut: the transaction is gone with its connection.
        conn: Option<SqliteConnection>,
    },
}

/// A transaction's connection, to run a statement on.
pub enum TxnConnection<'t> {
    /// PostgreSQL.
    Postgres(&'t mut sqlx::PgConnection),
    /// SQLite.
    Sqlite(&'t mut SqliteConnection),
}

/// Runs `$body` with `$c` bound to an executor of the scope (`&mut Scope`): the pool of
/// either backend, or the open transaction's connection.
macro_rules! on_scope {
    ($scope:expr, |$c:ident| $body:expr) => {
        match $scope {
            $crate::tasks::writer::Scope::Alone($crate::db::AppPool::Sqlite(pool)) => {
                let $c = &*pool;
                $body
            }
            $crate::tasks::writer::Scope::Alone($crate::db::AppPool::Postgres(pool)) => {
                let $c = &*pool;
                $body
            }
            $crate::tasks::writer::Scope::Within(txn) => {
                $crate::tasks::writer::on_txn!(txn, |$c| $body)
            }
        }
    };
}

/// Runs `$body` with `$c` bound to the connection of the open transaction `$txn`.
macro_rules! on_txn {
    ($txn:expr, |$c:ident| $body:expr) => {
        match $txn.connection() {
            Err(error) => Err(error),
            Ok($crate::tasks::writer::TxnConnection::Postgres($c)) => $body,
            Ok($crate::tasks::writer::TxnConnection::Sqlite($c)) => $body,
        }
    };
}
pub(crate) use {on_scope, on_txn};

/// How long a keyed write waits for a lock (PostgreSQL: above all for the same key's
/// first request to commit) before it gives up.
pub const LOCK_WAIT: Duration = Duration::from_secs(5);

/// Opens a transaction for a keyed write: on PostgreSQL on a pooled connection, its lock
/// waits bounded by [`LOCK_WAIT`]; on SQLite on the one writer's connection, held until
/// the transaction ends, so the writes of others wait for it as for any write.
pub async fn begin(db: &AppPool, writer: &Arc<Writer>) -> Result<Txn, sqlx::Error> {
    let conn = match db {
        AppPool::Postgres(p) => TxnConn::Postgres(
            p.begin_with(format!(
                "BEGIN; SET LOCAL lock_timeout = '{}ms'",
                LOCK_WAIT.as_millis()
            ))
            .await?,
        ),
        AppPool::Sqlite(p) => {
            let mut held = Arc::clone(&writer.sqlite).lock_owned().await;
            let mut conn = match held.conn.take() {
                Some(open) => open,
                None => writer_connection(p).await?,
            };
            writer.wrote.store(true, Ordering::Relaxed);
            sqlx::query("BEGIN IMMEDIATE").execute(&mut conn).await?;
            TxnConn::Sqlite {
                held,
                conn: Some(conn),
            }
        }
    };
    Ok(Txn {
        conn,
        appended: None,
        writer: Arc::clone(writer),
    })
}

impl Txn {
    /// The connection to run a statement on; an error once the connection was cut.
    pub fn connection(&mut self) -> Result<TxnConnection<'_>, sqlx::Error> {
        match &mut self.conn {
            TxnConn::Postgres(tx) => Ok(TxnConnection::Postgres(tx)),
            TxnConn::Sqlite { conn: Some(c), .. } => Ok(TxnConnection::Sqlite(c)),
            TxnConn::Sqlite { conn: None, .. } => Err(sqlx::Error::WorkerCrashed),
        }
    }

    /// Where a keyed write is interrupted, for tests ([`Writer::interrupt_with`]).
    pub(super) fn interruption(&self, point: Point, key: &str) -> Option<Interruption> {
        self.writer.interruption(point, key)
    }

    /// Cuts the transaction's connection, as a network failure or a database restart
    /// would: whatever runs on it next fails, and nothing of it commits.
    pub(super) async fn cut(&mut self) {
        match &mut self.conn {
            TxnConn::Postgres(tx) => {
                let _ = sqlx::query("SELECT pg_terminate_backend(pg_backend_pid())")
                    .execute(&mut **tx)
                    .await;
            }
            TxnConn::Sqlite { conn, .. } => {
                if let Some(conn) = conn.take() {
                    let _ = sqlx::Connection::close(conn).await;
                }
            }
        }
    }

    /// Commits; then tells the sinks of its writes. On failure nothing of it is kept.
    pub(super) async fn commit(mut self) -> Result<(), sqlx::Error> {
        match &mut self.conn {
            TxnConn::Postgres(_) => {
                let TxnConn::Postgres(tx) = self.conn else {
                    unreachable!("matched above")
                };
                tx.commit().await?;
            }
            TxnConn::Sqlite { held, conn } => {
                let mut open = conn.take().ok_or(sqlx::Error::WorkerCrashed)?;
                // On failure the connection is dropped (closed), which rolls back.
                sqlx::query("COMMIT").execute(&mut open).await?;
                held.conn = Some(open);
            }
        }
        if let Some(appended) = self.appended.take() {
            self.writer.hooks.notify(&appended);
        }
        Ok(())
    }

    /// Rolls back. A connection that cannot roll back is closed, which does it.
    pub(super) async fn rollback(self) {
        match self.conn {
            TxnConn::Postgres(tx) => {
                let _ = tx.rollback().await;
            }
            TxnConn::Sqlite { mut held, conn } => {
                if let Some(mut open) = conn {
                    if sqlx::query("ROLLBACK").execute(&mut open).await.is_ok() {
                        held.conn = Some(open);
                    }
                }
            }
        }
    }

    fn note(&mut self, appended: Appended) {
        match &mut self.appended {
            Some(noted) if noted.user_id == appended.user_id => {
                noted.last_id = match (noted.last_id, appended.last_id) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    _ => None,
                };
            }
            _ => self.appended = Some(appended),
        }
    }
}

/// The commit step of every write: runs it with its events appended to the log in the
/// same transaction, and once it committed tells the sinks how far the user's log now
/// goes; returns the changes in statement order. Within a keyed write's transaction it
/// runs there, and the sinks hear of it when that commits.
///
/// PostgreSQL runs one statement that writes and appends (one round trip). SQLite runs a
/// write of one task with its append and commit in one round trip, a write of many in two;
/// one write at a time, through one connection.
pub(super) async fn commit(
    scope: &mut Scope,
    writer: &Writer,
    write: Write,
) -> Result<Vec<TaskChange>, ApiError> {
    let (changes, appended) = match scope {
        Scope::Alone(AppPool::Sqlite(p)) => {
            let mut held = writer.sqlite.lock().await;
            // Taken out while in use: if this future were dropped mid-write, the
            // connection (and any transaction it left open) is closed with it.
            let mut taken = match held.conn.take() {
                Some(open) => open,
                None => writer_connection(p).await?,
            };
            let outcome = sqlite_write(&mut taken, &write, false).await;
            writer.wrote.store(true, Ordering::Relaxed);
            let (changes, appended) = match outcome {
                Ok(done) => done,
                Err(Failed { error, clean }) => {
                    if clean {
                        held.conn = Some(taken);
                    }
                    return Err(error);
                }
            };
            held.conn = Some(taken);
            (changes, appended)
        }
        Scope::Alone(AppPool::Postgres(p)) => postgres_write(&*p, &write).await?,
        Scope::Within(txn) => {
            let done = match txn.connection().map_err(refusal)? {
                TxnConnection::Postgres(c) => postgres_write(c, &write).await?,
                TxnConnection::Sqlite(c) => sqlite_write(c, &write, true)
                    .await
                    .map_err(|failed| failed.error)?,
            };
            if let Some(appended) = done.1 {
                txn.note(appended);
            }
            return Ok(done.0);
        }
    };
    if let Some(appended) = appended {
        writer.hooks.notify(&appended);
    }
    Ok(changes)
}

/// PostgreSQL: runs the write's one statement, which writes and appends its events.
async fn postgres_write<'e, E>(
    executor: E,
    write: &Write,
) -> Result<(Vec<TaskChange>, Option<Appended>), ApiError>
where
    E: sqlx::Executor<'e, Database = sqlx::Postgres>,
{
    let args = sqlx::Postgres::arguments(&write.args).map_err(refusal)?;
    let mut last: Option<(String, i64)> = None;
    let mut track = |user: &str, event_id: i64| {
        if last.as_ref().is_none_or(|(_, id)| *id < event_id) {
            last = Some((user.to_owned(), event_id));
        }
    };
    let changes: Vec<TaskChange> = if write.kind == WriteKind::Delete {
        let rows: Vec<LoggedRow<DeletedRow>> = sqlx::query_as_with(write.postgres, args)
            .fetch_all(executor)
            .await
            .map_err(refusal)?;
        rows.into_iter()
            .map(|r| {
                track(&r.row.user_id, r.event_id);
                deleted(r.row)
            })
            .collect()
    } else {
        let rows: Vec<LoggedRow<TaskRow>> = sqlx::query_as_with(write.postgres, args)
            .fetch_all(executor)
            .await
            .map_err(refusal)?;
        rows.into_iter()
            .map(|r| {
                track(&r.row.user_id, r.event_id);
                Task::try_from(r.row).map(|task| write.kind.task_change(task))
            })
            .collect::<Result<_, _>>()?
    };
    let appended = last.map(|(user_id, last_id)| Appended {
        user_id,
        last_id: Some(last_id),
    });
    Ok((changes, appended))
}

/// SQLite: `sql` without the `BEGIN IMMEDIATE` and `COMMIT` it carries, to run inside a
/// transaction already open.
fn within(sql: &'static str) -> &'static str {
    let sql = sql.strip_prefix("BEGIN IMMEDIATE; ").unwrap_or(sql);
    sql.strip_suffix("; COMMIT").unwrap_or(sql)
}

/// SQLite: runs the write with its events appended and commits: one round trip for a
/// write of at most one task, two for a delete of many. `inside` a transaction already
/// open, it neither begins nor commits nor rolls back: its owner does.
async fn sqlite_write(
    conn: &mut SqliteConnection,
    write: &Write,
    inside: bool,
) -> Result<(Vec<TaskChange>, Option<Appended>), Failed> {
    let sql = match write.sqlite {
        SqliteWrite::Logged(sql) | SqliteWrite::DeleteMany(sql) => sql,
    };
    let sql = if inside { within(sql) } else { sql };
    let changes: Vec<TaskChange> = if write.kind == WriteKind::Delete {
        let rows: Vec<DeletedRow> = in_transaction(conn, sql, &write.args, inside).await?;
        rows.into_iter().map(deleted).collect()
    } else {
        let rows: Vec<TaskRow> = in_transaction(conn, sql, &write.args, inside).await?;
        match (task_changes(write.kind, rows), write.sqlite) {
            (Ok(changes), _) => changes,
            (Err(error), _) if inside => return Err(Failed::clean(error)),
            (Err(error), SqliteWrite::DeleteMany(_)) => return Err(rolled_back(conn, error).await),
            // Committed already; the row could not be read back.
            (Err(error), SqliteWrite::Logged(_)) => return Err(Failed::clean(error)),
        }
    };
    let user_id = changes.first().map(|c| c.user_id().to_owned());
    if let SqliteWrite::Logged(_) = write.sqlite {
        // The statement appended the event (and committed); the feed reads how far.
        return Ok((
            changes,
            user_id.map(|user_id| Appended {
                user_id,
                last_id: None,
            }),
        ));
    }
    let Some(user_id) = user_id else {
        if !inside {
            sqlx::query("ROLLBACK")
                .execute(&mut *conn)
                .await
                .map_err(|e| Failed {
                    error: refusal(e),
                    clean: false,
                })?;
        }
        return Ok((changes, None));
    };
    let ids = changes
        .iter()
        .filter_map(|change| match change {
            TaskChange::Deleted { id, .. } => Some(id.to_string()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join(",");
    let args = [Arg::Text(user_id.clone()), Arg::Text(format!("[{ids}]"))];
    let append = if inside {
        within(log::APPEND_DELETES)
    } else {
        log::APPEND_DELETES
    };
    let last: Vec<(i64,)> = in_transaction(conn, append, &args, inside).await?;
    let Some((last_id,)) = last.first().copied() else {
        return Err(Failed {
            error: ApiError::Internal(anyhow::anyhow!("appending events returned no id")),
            clean: false,
        });
    };
    Ok((
        changes,
        Some(Appended {
            user_id,
            last_id: Some(last_id),
        }),
    ))
}

/// Runs a statement inside the open write transaction and returns its rows; when it
/// fails, the transaction is rolled back (when even that fails, the connection is not
/// clean), unless it runs `inside` a keyed write's transaction, whose owner decides.
async fn in_transaction<T>(
    conn: &mut SqliteConnection,
    sql: &'static str,
    args: &[Arg],
    inside: bool,
) -> Result<Vec<T>, Failed>
where
    T: for<'r> sqlx::FromRow<'r, SqliteRow> + Send + Unpin,
{
    let args = Sqlite::arguments(args).map_err(Failed::db)?;
    match sqlx::query_as_with::<_, T, _>(sql, args)
        .fetch_all(&mut *conn)
        .await
    {
        Ok(rows) => Ok(rows),
        Err(error) if inside => Err(Failed::db(error)),
        Err(error) => Err(rolled_back(conn, refusal(error)).await),
    }
}

/// Rolls the write's transaction back after `error`.
async fn rolled_back(conn: &mut SqliteConnection, error: ApiError) -> Failed {
    let clean = sqlx::query("ROLLBACK").execute(&mut *conn).await.is_ok();
    Failed { error, clean }
}

/// A SQLite write that failed, and whether its connection is fit for the next one.
struct Failed {
    error: ApiError,
    clean: bool,
}

impl Failed {
    fn clean(error: ApiError) -> Self {
        Self { error, clean: true }
    }

    fn db(error: sqlx::Error) -> Self {
        Self::clean(refusal(error))
    }
}

/// A write's database error, a refusal naming the task column it was about.
fn refusal(error: sqlx::Error) -> ApiError {
    ApiError::from_db(error, &sql::COLUMNS)
}

/// SQLite: how often the WAL is checkpointed, when something was written since.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);

/// SQLite: the WAL file is cut back to this size when it starts over after a burst.
const WAL_SIZE_LIMIT: &str = "67108864";

/// SQLite: the writer's connection. It never checkpoints the WAL itself: SQLite's
/// automatic checkpoint runs inside the commit that crosses 1,000 pages and syncs the
/// database file there, so every hundredth write or so waited about 10 ms, and every
/// write queued behind it too. [`keep_checkpointed`] does it beside the writes instead.
async fn writer_connection(pool: &SqlitePool) -> Result<SqliteConnection, sqlx::Error> {
    (*pool.connect_options())
        .clone()
        .pragma("wal_autocheckpoint", "0")
        .pragma("journal_size_limit", WAL_SIZE_LIMIT)
        .connect()
        .await
}

/// SQLite: checkpoints the WAL every [`CHECKPOINT_EVERY`] while there are writes, on a
/// pool connection, in two steps. First in `PASSIVE` mode, which waits for no reader or
/// writer: the bulk of the pages is copied and the database file synced while the writes
/// go on. Then once more with the writer held, which copies only what was written during
/// the first step: with every frame in the database file, the next write starts the WAL
/// over. (Without that moment the WAL never starts over while writes keep coming, and
/// grows by every write: 1.7 GB in 10 s of creates.) Returns at shutdown; on PostgreSQL at
/// once.
pub async fn keep_checkpointed(db: AppPool, writer: Arc<Writer>, shutdown: rocket::Shutdown) {
    let AppPool::Sqlite(pool) = db else {
        return;
    };
    let warn = Throttle::new(Duration::from_secs(60));
    crate::periodic::every(CHECKPOINT_EVERY, shutdown, || {
        let (pool, writer, warn) = (&pool, &writer, &warn);
        async move {
            if !writer.wrote.swap(false, Ordering::Relaxed) {
                return;
            }
            if let Err(error) = checkpoint(pool, writer).await {
                writer.wrote.store(true, Ordering::Relaxed);
                if warn.ready() {
                    tracing::warn!(%error, "the SQLite WAL could not be checkpointed; retrying");
                }
            }
        }
    })
    .await;
}

/// Frames the last step, with the writer held, may be left to copy: the first step runs
/// again (up to [`UNHELD_ROUNDS`] times) while more were written during the one before.
const HELD_FRAMES: i64 = 64;
/// Checkpoints beside the writes before the one with the writer held.
const UNHELD_ROUNDS: usize = 4;

/// One checkpoint of [`keep_checkpointed`]'s two steps.
async fn checkpoint(pool: &SqlitePool, writer: &Writer) -> Result<(), sqlx::Error> {
    // `(busy, frames in the WAL, frames copied into the database file)`.
    const CHECKPOINT: &str = "PRAGMA wal_checkpoint(PASSIVE)";
    // Taken first: the writer is never held while waiting for the pool.
    let mut conn = pool.acquire().await?;
    // The WAL's length at each round's start: what it grew by since the round before was
    // written while that round ran, and the next round (or the held one) copies it.
    let mut before: Option<i64> = None;
    for _ in 0..UNHELD_ROUNDS {
        let (_, frames, _): (i64, i64, i64) =
            sqlx::query_as(CHECKPOINT).fetch_one(&mut *conn).await?;
        if before.is_some_and(|before| frames - before <= HELD_FRAMES) {
            break;
        }
        before = Some(frames);
    }
    let _writes_wait = writer.sqlite.lock().await;
    sqlx::query(CHECKPOINT).execute(&mut *conn).await?;
    Ok(())
}

/// SQLite: what the one writer at a time holds.
#[derive(Default)]
struct SqliteWriter {
    /// Every write goes through this one connection (opened on first use, closed after a
    /// failure it could not roll back): SQLite discards a connection's page cache whenever
    /// another connection wrote, so writes spread over the pool would each read their
    /// pages again.
    conn: Option<sqlx::SqliteConnection>,
}

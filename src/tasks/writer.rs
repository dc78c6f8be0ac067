//! The one commit step of every write: runs the write with its events appended to the log
//! (`super::log`) in the same transaction, and tells the registered sinks once it
//! committed. Its state (the SQLite writer's connection) is private to this file; the
//! store reaches it only through [`commit`], and the SQLite checkpoints
//! ([`keep_checkpointed`]) hold it for their last step.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnection, SqlitePool, SqliteRow};
use sqlx::{ConnectOptions as _, Sqlite};

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
    sqlite: tokio::sync::Mutex<SqliteWriter>,
    /// SQLite: written since the WAL was last checkpointed ([`keep_checkpointed`]).
    wrote: AtomicBool,
}

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

/// The commit step of every write: runs it with its events appended to the log in the
/// same transaction, and once it committed tells the sinks how far the user's log now
/// goes; returns the changes in statement order.
///
/// PostgreSQL runs one statement that writes and appends (one round trip). SQLite runs a
/// write of one task with its append and commit in one round trip, a write of many in two;
/// one write at a time, through one connection.
pub(super) async fn commit(
    db: &AppPool,
    writer: &Writer,
    write: Write,
) -> Result<Vec<TaskChange>, ApiError> {
    let (changes, appended) = match db {
        AppPool::Sqlite(p) => {
            let mut held = writer.sqlite.lock().await;
            // Taken out while in use: if this future were dropped mid-write, the
            // connection (and any transaction it left open) is closed with it.
            let mut taken = match held.conn.take() {
                Some(open) => open,
                None => writer_connection(p).await?,
            };
            let outcome = sqlite_write(&mut taken, &write).await;
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
        AppPool::Postgres(p) => {
            macro_rules! query {
                () => {
                    sqlx::query_as_with(
                        write.postgres,
                        sqlx::Postgres::arguments(&write.args).map_err(refusal)?,
                    )
                };
            }
            let mut last: Option<(String, i64)> = None;
            let mut track = |user: &str, event_id: i64| {
                if last.as_ref().is_none_or(|(_, id)| *id < event_id) {
                    last = Some((user.to_owned(), event_id));
                }
            };
            let changes: Vec<TaskChange> = if write.kind == WriteKind::Delete {
                let rows: Vec<LoggedRow<DeletedRow>> =
                    query!().fetch_all(p).await.map_err(refusal)?;
                rows.into_iter()
                    .map(|r| {
                        track(&r.row.user_id, r.event_id);
                        deleted(r.row)
                    })
                    .collect()
            } else {
                let rows: Vec<LoggedRow<TaskRow>> = query!().fetch_all(p).await.map_err(refusal)?;
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
            (changes, appended)
        }
    };
    if let Some(appended) = appended {
        writer.hooks.notify(&appended);
    }
    Ok(changes)
}

/// SQLite: runs the write with its events appended and commits: one round trip for a
/// write of at most one task, two for a delete of many.
async fn sqlite_write(
    conn: &mut SqliteConnection,
    write: &Write,
) -> Result<(Vec<TaskChange>, Option<Appended>), Failed> {
    let sql = match write.sqlite {
        SqliteWrite::Logged(sql) | SqliteWrite::DeleteMany(sql) => sql,
    };
    let changes: Vec<TaskChange> = if write.kind == WriteKind::Delete {
        let rows: Vec<DeletedRow> = in_transaction(conn, sql, &write.args).await?;
        rows.into_iter().map(deleted).collect()
    } else {
        let rows: Vec<TaskRow> = in_transaction(conn, sql, &write.args).await?;
        match (task_changes(write.kind, rows), write.sqlite) {
            (Ok(changes), _) => changes,
            (Err(error), SqliteWrite::DeleteMany(_)) => return Err(rolled_back(conn, error).await),
            // Committed already; the row could not be read back.
            (Err(error), SqliteWrite::Logged(_)) => return Err(Failed::clean(error)),
        }
    };
    let user_id = changes.first().map(|c| c.user_id().to_owned());
    if let SqliteWrite::Logged(_) = write.sqlite {
        // The statement appended the event and committed; the feed reads how far.
        return Ok((
            changes,
            user_id.map(|user_id| Appended {
                user_id,
                last_id: None,
            }),
        ));
    }
    let Some(user_id) = user_id else {
        sqlx::query("ROLLBACK")
            .execute(&mut *conn)
            .await
            .map_err(|e| Failed {
                error: refusal(e),
                clean: false,
            })?;
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
    let last: Vec<(i64,)> = in_transaction(conn, log::APPEND_DELETES, &args).await?;
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
/// clean).
async fn in_transaction<T>(
    conn: &mut SqliteConnection,
    sql: &'static str,
    args: &[Arg],
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

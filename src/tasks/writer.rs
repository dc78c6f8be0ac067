//! The one commit step of every write: runs the write, draws its event ids in it, and hands
//! what changed to the registered sinks once it committed. Its state (the SQLite writer's
//! connection and id block) is private to this file; the store reaches it only through
//! [`commit`].

use sqlx::sqlite::{SqliteConnection, SqliteRow};
use sqlx::{ConnectOptions as _, Connection as _, Sqlite};

use super::changes::{ChangeHooks, Committed, TaskChange};
use super::model::Task;
use super::row::{DeletedRow, TaskRow};
use super::sql::{self, Arg, BindArgs as _};
use crate::db::AppPool;
use crate::error::ApiError;

/// SQLite: event ids drawn per statement; see [`EventIdBlock`].
const EVENT_ID_BLOCK: i64 = 256;

/// The commit step's state, managed by `tasks::stage()`: who hears of committed changes
/// and, on SQLite, the one writer at a time.
#[derive(Default)]
pub struct Writer {
    hooks: ChangeHooks,
    /// SQLite: held from a write's start until its sinks were told, so they hear of
    /// changes in commit order (PostgreSQL orders its notifications itself).
    sqlite: tokio::sync::Mutex<SqliteWriter>,
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
    pub(super) sqlite: SqliteWrite,
    pub(super) postgres: &'static str,
    pub(super) args: Vec<Arg>,
    pub(super) kind: WriteKind,
}

/// How SQLite runs a write.
#[derive(Clone, Copy)]
pub(super) enum SqliteWrite {
    /// A write of at most one row, in [`sql::one_trip!`] form: with its commit, in one round trip.
    OneTrip(&'static str),
    /// A write of any number of rows, run in a transaction.
    InTransaction(&'static str),
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

/// A row of a PostgreSQL write, with the id of the event announced for it.
#[derive(sqlx::FromRow)]
struct AnnouncedRow<T> {
    #[sqlx(flatten)]
    row: T,
    event_id: i64,
}

impl WriteKind {
    fn task_change(self, task: Task) -> TaskChange {
        match self {
            Self::Create => TaskChange::Created(task),
            _ => TaskChange::Updated(task),
        }
    }
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

/// The commit step of every write: runs it, draws its event ids in it, and hands what
/// changed to the sinks once it committed; returns the changes in statement order.
///
/// SQLite takes event ids from the block drawn ahead and tells the sinks before the next
/// write may commit, so they hear of changes in commit order. A single-row write runs with
/// its commit as one round trip (its id is drawn beforehand, when the block is used up); a
/// write of many rows runs in a transaction that draws the next block when it needs one.
/// PostgreSQL runs one statement that also announces the events (one round trip).
pub(super) async fn commit(
    db: &AppPool,
    writer: &Writer,
    write: Write,
) -> Result<Vec<TaskChange>, ApiError> {
    let committed = match db {
        AppPool::Sqlite(p) => {
            let mut held = writer.sqlite.lock().await;
            let SqliteWriter { conn, ids } = &mut *held;
            // Taken out while in use: if this future were dropped mid-write, the
            // connection (and any transaction it left open) is closed with it.
            let mut taken = match conn.take() {
                Some(open) => open,
                None => p.connect_options().connect().await?,
            };
            let outcome = match write.sqlite {
                SqliteWrite::OneTrip(sql) => sqlite_single(&mut taken, ids, &write, sql).await,
                SqliteWrite::InTransaction(sql) => sqlite_many(&mut taken, ids, &write, sql).await,
            };
            let committed = match outcome {
                Ok(committed) => committed,
                Err(Failed { error, clean }) => {
                    if clean {
                        *conn = Some(taken);
                    }
                    return Err(error);
                }
            };
            *conn = Some(taken);
            writer.hooks.notify(&committed);
            committed
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
            let committed: Vec<Committed> = if write.kind == WriteKind::Delete {
                let rows: Vec<AnnouncedRow<DeletedRow>> =
                    query!().fetch_all(p).await.map_err(refusal)?;
                rows.into_iter()
                    .map(|r| Committed {
                        event_id: r.event_id,
                        change: deleted(r.row),
                    })
                    .collect()
            } else {
                let rows: Vec<AnnouncedRow<TaskRow>> =
                    query!().fetch_all(p).await.map_err(refusal)?;
                rows.into_iter()
                    .map(|r| {
                        Task::try_from(r.row).map(|task| Committed {
                            event_id: r.event_id,
                            change: write.kind.task_change(task),
                        })
                    })
                    .collect::<Result<_, _>>()?
            };
            writer.hooks.notify(&committed);
            committed
        }
    };
    Ok(committed.into_iter().map(|c| c.change).collect())
}

/// SQLite: a write that changes at most one row, with its commit, in one round trip.
async fn sqlite_single(
    conn: &mut SqliteConnection,
    ids: &mut EventIdBlock,
    write: &Write,
    sql: &'static str,
) -> Result<Vec<Committed>, Failed> {
    if ids.remaining() == 0 {
        // Drawn and committed before the write: if the write then fails, the block stays
        // good for the next one.
        let last: Vec<(i64,)> = one_trip(
            conn,
            sql::DRAW_EVENT_IDS_ONE_TRIP,
            &[Arg::Int(EVENT_ID_BLOCK)],
        )
        .await?;
        let (last,) = last.first().copied().ok_or_else(|| {
            Failed::clean(ApiError::Internal(anyhow::anyhow!(
                "drawing event ids returned no row"
            )))
        })?;
        *ids = EventIdBlock::ending_at(last, EVENT_ID_BLOCK);
    }
    let changes: Vec<TaskChange> = if write.kind == WriteKind::Delete {
        let rows: Vec<DeletedRow> = one_trip(conn, sql, &write.args).await?;
        rows.into_iter().map(deleted).collect()
    } else {
        let rows: Vec<TaskRow> = one_trip(conn, sql, &write.args).await?;
        task_changes(write.kind, rows).map_err(Failed::clean)?
    };
    let drawn = i64::try_from(changes.len()).unwrap_or(i64::MAX);
    if drawn > ids.remaining() {
        // Each of these writes names one task by its key, so this cannot happen; were it
        // to, the ids after the block's end could belong to the next block.
        return Err(Failed::clean(ApiError::Internal(anyhow::anyhow!(
            "a single-row write changed {drawn} rows"
        ))));
    }
    Ok((ids.take(drawn)..)
        .zip(changes)
        .map(|(event_id, change)| Committed { event_id, change })
        .collect())
}

/// SQLite: a write of any number of rows, in a transaction that also draws the next block
/// of event ids when this one runs short (a rolled-back draw is not used).
async fn sqlite_many(
    conn: &mut SqliteConnection,
    ids: &mut EventIdBlock,
    write: &Write,
    sql: &'static str,
) -> Result<Vec<Committed>, Failed> {
    // A transaction dropped on an error rolls back when the connection is next used.
    let mut tx = conn.begin().await.map_err(Failed::db)?;
    macro_rules! query {
        () => {
            sqlx::query_as_with(sql, Sqlite::arguments(&write.args).map_err(Failed::db)?)
        };
    }
    let changes: Vec<TaskChange> = if write.kind == WriteKind::Delete {
        let rows: Vec<DeletedRow> = query!().fetch_all(&mut *tx).await.map_err(Failed::db)?;
        rows.into_iter().map(deleted).collect()
    } else {
        let rows: Vec<TaskRow> = query!().fetch_all(&mut *tx).await.map_err(Failed::db)?;
        task_changes(write.kind, rows).map_err(Failed::clean)?
    };
    let drawn = i64::try_from(changes.len()).unwrap_or(i64::MAX);
    // Changed only once the write committed: a rolled-back draw is not used.
    let mut block = *ids;
    if block.remaining() < drawn {
        let size = drawn.max(EVENT_ID_BLOCK);
        let last: i64 = sqlx::query_scalar(sql::DRAW_EVENT_IDS)
            .bind(size)
            .fetch_one(&mut *tx)
            .await
            .map_err(Failed::db)?;
        block = EventIdBlock::ending_at(last, size);
    }
    let first = block.take(drawn);
    tx.commit().await.map_err(Failed::db)?;
    *ids = block;
    Ok((first..)
        .zip(changes)
        .map(|(event_id, change)| Committed { event_id, change })
        .collect())
}

/// Runs a [`sql::one_trip!`] statement and returns its rows. When it fails, its transaction is
/// rolled back; when even that fails, the connection is not clean.
async fn one_trip<T>(
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
        Err(error) => {
            let clean = sqlx::query("ROLLBACK").execute(&mut *conn).await.is_ok();
            Err(Failed {
                error: refusal(error),
                clean,
            })
        }
    }
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

/// SQLite: what the one writer at a time holds.
#[derive(Default)]
struct SqliteWriter {
    /// Every write goes through this one connection (opened on first use, closed after a
    /// failure it could not roll back): SQLite discards a connection's page cache whenever
    /// another connection wrote, so writes spread over the pool would each read their
    /// pages again.
    conn: Option<sqlx::SqliteConnection>,
    /// Event ids drawn and not used yet.
    ids: EventIdBlock,
}

/// SQLite: event ids drawn from `task_event_seq` ahead of use, so most writes need no
/// statement for their ids. Ids stay increasing in commit order (only this process writes
/// the file's events); a restart discards the rest of a block, leaving a gap, never a
/// repeat.
#[derive(Debug, Clone, Copy)]
struct EventIdBlock {
    /// The next unused id.
    next: i64,
    /// The last id of the block; `next > end` when it is used up.
    end: i64,
}

impl Default for EventIdBlock {
    /// Empty: the first write draws a block.
    fn default() -> Self {
        Self { next: 1, end: 0 }
    }
}

impl EventIdBlock {
    /// The block of `size` ids whose last one is `last`.
    fn ending_at(last: i64, size: i64) -> Self {
        Self {
            next: last.saturating_sub(size).saturating_add(1),
            end: last,
        }
    }

    /// How many ids are left.
    fn remaining(&self) -> i64 {
        self.end.saturating_sub(self.next).saturating_add(1).max(0)
    }

    /// Takes the next `n` ids (at most [`Self::remaining`]); returns the first.
    fn take(&mut self, n: i64) -> i64 {
        let first = self.next;
        self.next = self.next.saturating_add(n);
        first
    }
}

#[cfg(test)]
mod tests {
    use super::EventIdBlock;

    #[test]
    fn an_event_id_block_hands_out_its_ids_in_order_and_then_none() {
        let empty = EventIdBlock::default();
        assert_eq!(empty.remaining(), 0, "the first write draws a block");
        let mut block = EventIdBlock::ending_at(512, 256);
        assert_eq!(block.remaining(), 256);
        assert_eq!(block.take(1), 257);
        assert_eq!(block.take(0), 258, "taking none leaves the next id");
        assert_eq!(block.take(254), 258);
        assert_eq!(block.remaining(), 1);
        assert_eq!(block.take(1), 512);
        assert_eq!(block.remaining(), 0);
    }
}

//! What a committed write changed, and who hears of it: the seam live events plug into.
//!
//! `tasks` defines the change and calls every registered [`ChangeSink`] from the store's
//! one commit step, after the write committed; a module that wants changes (`events`)
//! registers a sink at start. Nothing here knows who listens.

use std::sync::{Arc, RwLock};

use super::model::Task;

/// What one committed write changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskChange {
    /// A task was created; it is as the API shows it.
    Created(Task),
    /// A task was replaced, patched or completed; it is as the API shows it now.
    Updated(Task),
    /// A task was deleted.
    Deleted {
        /// Its owner.
        user_id: String,
        /// Its id.
        id: i64,
    },
}

impl TaskChange {
    /// The user whose task changed.
    pub fn user_id(&self) -> &str {
        match self {
            Self::Created(task) | Self::Updated(task) => &task.user_id,
            Self::Deleted { user_id, .. } => user_id,
        }
    }
}

/// A change and the id of its event, drawn from the database in the write itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    /// The event id: the same on every instance.
    pub event_id: i64,
    /// What changed.
    pub change: TaskChange,
}

/// Hears of every committed change, in commit order.
pub trait ChangeSink: Send + Sync {
    /// Called once per committed write (a bulk clear: once, with every deleted task).
    /// Must not block: it runs on the writer's path.
    fn committed(&self, changes: &[Committed]);
}

/// The registered sinks, managed by `tasks::stage()`.
#[derive(Default)]
pub struct ChangeHooks {
    sinks: RwLock<Vec<Arc<dyn ChangeSink>>>,
    /// SQLite: held from a write's start until its sinks were told, so they hear of
    /// changes in commit order (PostgreSQL orders its notifications itself); it guards
    /// the writer's connection and the block of event ids this process drew.
    pub(super) sqlite_writer: tokio::sync::Mutex<SqliteWriter>,
}

/// SQLite: what the one writer at a time holds.
#[derive(Default)]
pub(super) struct SqliteWriter {
    /// Every write goes through this one connection (opened on first use, closed after a
    /// failure it could not roll back): SQLite discards a connection's page cache whenever
    /// another connection wrote, so writes spread over the pool would each read their
    /// pages again.
    pub(super) conn: Option<sqlx::SqliteConnection>,
    /// Event ids drawn and not used yet.
    pub(super) ids: EventIdBlock,
}

/// SQLite: event ids drawn from `task_event_seq` ahead of use, so most writes need no
/// statement for their ids. Ids stay increasing in commit order (only this process writes
/// the file's events); a restart discards the rest of a block, leaving a gap, never a
/// repeat.
#[derive(Debug, Clone, Copy)]
pub(super) struct EventIdBlock {
    /// The next unused id.
    pub(super) next: i64,
    /// The last id of the block; `next > end` when it is used up.
    pub(super) end: i64,
}

impl Default for EventIdBlock {
    /// Empty: the first write draws a block.
    fn default() -> Self {
        Self { next: 1, end: 0 }
    }
}

impl EventIdBlock {
    /// The block of `size` ids whose last one is `last`.
    pub(super) fn ending_at(last: i64, size: i64) -> Self {
        Self {
            next: last.saturating_sub(size).saturating_add(1),
            end: last,
        }
    }

    /// How many ids are left.
    pub(super) fn remaining(&self) -> i64 {
        self.end.saturating_sub(self.next).saturating_add(1).max(0)
    }

    /// Takes the next `n` ids (at most [`Self::remaining`]); returns the first.
    pub(super) fn take(&mut self, n: i64) -> i64 {
        let first = self.next;
        self.next = self.next.saturating_add(n);
        first
    }
}

impl ChangeHooks {
    /// Adds a sink; for start-up.
    pub fn register(&self, sink: Arc<dyn ChangeSink>) {
        if let Ok(mut sinks) = self.sinks.write() {
            sinks.push(sink);
        }
    }

    /// SQLite: whether the writer's connection (outside the pool) is open. A write in
    /// progress holds it, so a held lock counts as open.
    pub fn sqlite_writer_open(&self) -> bool {
        self.sqlite_writer
            .try_lock()
            .map_or(true, |writer| writer.conn.is_some())
    }

    pub(super) fn notify(&self, changes: &[Committed]) {
        if changes.is_empty() {
            return;
        }
        if let Ok(sinks) = self.sinks.read() {
            for sink in sinks.iter() {
                sink.committed(changes);
            }
        }
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

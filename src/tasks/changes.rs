//! What a committed write changed, and who hears of it: the seam live events plug into.
//!
//! `tasks` defines the change and calls every registered [`ChangeSink`] from its one
//! commit step (`writer`), after the write committed; a module that wants changes (`events`)
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

/// The registered sinks, held by the writer ([`super::writer::Writer::hooks`]).
#[derive(Default)]
pub struct ChangeHooks {
    sinks: RwLock<Vec<Arc<dyn ChangeSink>>>,
}

impl ChangeHooks {
    /// Adds a sink; for start-up.
    pub fn register(&self, sink: Arc<dyn ChangeSink>) {
        if let Ok(mut sinks) = self.sinks.write() {
            sinks.push(sink);
        }
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

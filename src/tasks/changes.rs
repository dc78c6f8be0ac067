//! What a committed write changed, and who hears of it: the seam live events plug into.
//!
//! The events themselves are in the log (`super::log`); after a write committed, the one
//! commit step (`writer`) tells every registered [`ChangeSink`] how far the user's log now
//! goes, so a module that delivers events (`events`) can read it at once rather than at its
//! next poll. Nothing here knows who listens.

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

/// A committed write's events were appended to the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// Whose log grew.
    pub user_id: String,
    /// The user's last event id after the write, when the write read it back (PostgreSQL
    /// does; SQLite's one-round-trip writes do not).
    pub last_id: Option<i64>,
}

/// Hears of every committed write.
pub trait ChangeSink: Send + Sync {
    /// Called once per committed write that appended events. Must not block: it runs on
    /// the writer's path.
    fn appended(&self, appended: &Appended);
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

    pub(super) fn notify(&self, appended: &Appended) {
        if let Ok(sinks) = self.sinks.read() {
            for sink in sinks.iter() {
                sink.appended(appended);
            }
        }
    }
}

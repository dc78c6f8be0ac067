//! The feed: the one task of an instance that reads the event log and publishes to the
//! bus. It reads when woken (this instance's own writes, a notification from another
//! instance) and every poll interval whatever happens, so events arrive even where no
//! notification can (a pooler that cannot `LISTEN`, a listener that is deaf or down).
//!
//! One query per read, whatever the number of streams: the users with open streams and
//! their positions, each user's events after it (ids are gapless per user, so nothing
//! committed later can be skipped). When woken for some users, only those are read.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use rocket::Shutdown;

use super::{event_of, Bus, Event};
use crate::db::AppPool;
use crate::periodic::Throttle;
use crate::tasks::log;

/// Events read per user (PostgreSQL) or in all (SQLite) by one query; more are read by the
/// next query at once.
const BATCH: i64 = 512;

/// How often a failing read is logged at most.
const WARN_EVERY: Duration = Duration::from_secs(30);

/// Reads and publishes until shutdown.
pub async fn run(bus: Arc<Bus>, db: AppPool, poll: Duration, mut shutdown: Shutdown) {
    let mut tick = tokio::time::interval(poll);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let warn = Throttle::new(WARN_EVERY);
    loop {
        let all = tokio::select! {
            _ = tick.tick() => true,
            _ = bus.woken() => false,
            _ = &mut shutdown => return,
        };
        if let Err(error) = read(&bus, &db, all).await {
            if warn.ready() {
                tracing::warn!(%error, "the event log could not be read; retrying");
            }
        }
    }
}

/// Reads every user with a stream (`all`) or those a wake-up named, until each is read to
/// the log's end, and publishes what came.
async fn read(bus: &Bus, db: &AppPool, all: bool) -> Result<(), sqlx::Error> {
    let mut positions = bus.positions(all);
    while !positions.is_empty() {
        bus.counters.log_reads.fetch_add(1, Ordering::Relaxed);
        let events = log::after_many(db, &positions, BATCH).await?;
        // Users whose part was cut by the batch are read again at once.
        let cut_all = i64::try_from(events.len()).unwrap_or(i64::MAX) >= BATCH;
        let mut more: Vec<String> = Vec::new();
        // Each user's events (the query returns them by user, in id order) are published
        // together.
        let mut batch: Vec<Event> = Vec::new();
        let mut rows = 0_usize;
        let mut current: Option<String> = None;
        for row in events {
            if current.as_deref() != Some(row.user_id.as_str()) {
                if let Some(user) = current.take() {
                    publish(bus, &user, std::mem::take(&mut batch), rows, &mut more);
                }
                current = Some(row.user_id.clone());
                rows = 0;
            }
            rows += 1;
            match event_of(row) {
                Some(event) => batch.push(event),
                None => tracing::error!(
                    user = current.as_deref().unwrap_or_default(),
                    "an event of an unknown kind was skipped"
                ),
            }
        }
        if let Some(user) = current {
            publish(bus, &user, batch, rows, &mut more);
        }
        if cut_all {
            // SQLite's limit is over all users: those after the cut got nothing yet.
            more = positions.into_iter().map(|(user, _)| user).collect();
        }
        positions = bus.positions_of(&more);
    }
    Ok(())
}

/// Publishes one user's events of a read (`rows` of the log); a user whose part the batch
/// limit cut is read again.
fn publish(bus: &Bus, user: &str, events: Vec<Event>, rows: usize, more: &mut Vec<String>) {
    if i64::try_from(rows).unwrap_or(i64::MAX) >= BATCH {
        more.push(user.to_owned());
    }
    bus.publish(user, events);
}

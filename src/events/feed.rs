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
use std::time::{Duration, Instant};

use rocket::Shutdown;

use super::{event_of, Bus};
use crate::db::AppPool;
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
    let mut warned: Option<Instant> = None;
    loop {
        let all = tokio::select! {
            _ = tick.tick() => true,
            _ = bus.woken() => false,
            _ = &mut shutdown => return,
        };
        if let Err(error) = read(&bus, &db, all).await {
            if warned.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
                tracing::warn!(%error, "the event log could not be read; retrying");
                warned = Some(Instant::now());
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
        let mut count = 0_i64;
        let mut current: Option<String> = None;
        for event in events {
            if current.as_deref() != Some(event.user_id.as_str()) {
                count = 0;
                current = Some(event.user_id.clone());
            }
            count += 1;
            if count == BATCH {
                more.push(event.user_id.clone());
            }
            let user = event.user_id.clone();
            match event_of(event) {
                Some(event) => bus.publish(&user, event),
                None => tracing::error!(user = %user, "an event of an unknown kind was skipped"),
            }
        }
        if cut_all {
            // SQLite's limit is over all users: those after the cut got nothing yet.
            more = positions.into_iter().map(|(user, _)| user).collect();
        }
        positions = bus.positions_of(&more);
    }
    Ok(())
}

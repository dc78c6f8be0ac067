//! Work that repeats until shutdown: [`every`] runs a round at once and then periodically
//! (the retention of events and idempotency keys, the SQLite WAL's checkpoints), and
//! [`Throttle`] keeps a failure that repeats every round (or every read of the event log)
//! from filling the log.

use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rocket::Shutdown;

/// Runs `round` at once and then every `every` until shutdown; a round that overran is
/// followed by the next one period later, not by rounds to catch up.
pub async fn every<F, Fut>(every: Duration, mut shutdown: Shutdown, mut round: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            // Shutdown first: a task first polled after shutdown (a busy runtime) would
            // otherwise be as likely to start a round, beside whatever runs after it.
            biased;
            _ = &mut shutdown => return,
            _ = tick.tick() => {}
        }
        round().await;
    }
}

/// Lets something through the first time and then at most once per period: a warning
/// that would repeat at every failed round is logged once per period instead.
#[derive(Debug)]
pub struct Throttle {
    period: Duration,
    last: Mutex<Option<Instant>>,
}

impl Throttle {
    /// A throttle that lets through at most once per `period`.
    pub const fn new(period: Duration) -> Self {
        Self {
            period,
            last: Mutex::new(None),
        }
    }

    /// Whether to go ahead now (and if so, the period starts again).
    pub fn ready(&self) -> bool {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if last.is_some_and(|at| now.duration_since(at) < self.period) {
            return false;
        }
        *last = Some(now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_throttle_lets_through_once_per_period() {
        let hourly = Throttle::new(Duration::from_secs(3600));
        assert!(hourly.ready(), "the first time goes through");
        assert!(!hourly.ready(), "again within the period does not");
        assert!(!hourly.ready());
        let always = Throttle::new(Duration::ZERO);
        assert!(
            always.ready() && always.ready(),
            "past the period it goes through again"
        );
    }
}

//! Per-user rate limiting: `RATE_LIMIT_PER_MINUTE` requests per verified user, as a GCRA
//! bucket (governor) that refills one request every `60 / limit` seconds, with the
//! `RateLimit-*` headers on every answer to a verified user and 429 + `Retry-After` past it.
//!
//! Invariants: only verified users are counted (the auth guard calls [`Limiter::check`]),
//! so health probes, docs and CORS preflights never are; one user's bucket never affects
//! another's; keys idle for a whole window are forgotten, so memory follows the users of
//! the last minute, not every user ever seen.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};
use rocket::fairing::{AdHoc, Fairing, Info, Kind};
use rocket::http::Header;
use rocket::{Request, Response};

type Keyed =
    RateLimiter<String, DashMapStateStore<String>, DefaultClock, StateInformationMiddleware>;

/// How often idle keys are dropped.
const PRUNE_EVERY: Duration = Duration::from_secs(30);

/// The outcome of one check, kept for the response headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Requests per window.
    pub limit: u32,
    /// Requests left right now.
    pub remaining: u32,
    /// Seconds until the bucket is full again.
    pub reset_secs: u64,
    /// `Some(seconds to wait)` when this request is refused.
    pub retry_after: Option<u64>,
}

/// The per-user limiter, managed as Rocket state when limiting is on; clones share state.
#[derive(Clone)]
pub struct Limiter {
    limit: NonZeroU32,
    per_request: Duration,
    keyed: Arc<Keyed>,
}

fn ceil_secs(duration: Duration) -> u64 {
    duration.as_secs_f64().ceil() as u64
}

impl Limiter {
    /// `per_minute` requests per user per minute, all of them usable in a burst.
    pub fn per_minute(per_minute: NonZeroU32) -> Self {
        Self::with_quota(Quota::per_minute(per_minute))
    }

    fn with_quota(quota: Quota) -> Self {
        Self {
            limit: quota.burst_size(),
            per_request: quota.replenish_interval(),
            keyed: Arc::new(
                RateLimiter::dashmap(quota).with_middleware::<StateInformationMiddleware>(),
            ),
        }
    }

    /// Counts one request of `user`.
    pub fn check(&self, user: &str) -> Decision {
        let limit = self.limit.get();
        let per_request = self.per_request;
        match self.keyed.check_key(&user.to_owned()) {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity();
                let used = limit.saturating_sub(remaining);
                Decision {
                    limit,
                    remaining,
                    reset_secs: ceil_secs(per_request * used),
                    retry_after: None,
                }
            }
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.keyed.clock().now());
                Decision {
                    limit,
                    remaining: 0,
                    reset_secs: ceil_secs(per_request * limit),
                    retry_after: Some(ceil_secs(wait).max(1)),
                }
            }
        }
    }

    /// Forgets users whose bucket has refilled: they are indistinguishable from new ones.
    pub fn prune(&self) {
        self.keyed.retain_recent();
        self.keyed.shrink_to_fit();
    }

    /// Users currently remembered.
    pub fn tracked_users(&self) -> usize {
        self.keyed.len()
    }
}

/// Adds the `RateLimit-*` headers to answers that went through a check.
struct Headers;

#[rocket::async_trait]
impl Fairing for Headers {
    fn info(&self) -> Info {
        Info {
            name: "RateLimit headers",
            kind: Kind::Response,
        }
    }

    async fn on_response<'r>(&self, request: &'r Request<'_>, response: &mut Response<'r>) {
        if let Some(decision) = request.local_cache(|| None::<Decision>) {
            response.set_header(Header::new("RateLimit-Limit", decision.limit.to_string()));
            response.set_header(Header::new(
                "RateLimit-Remaining",
                decision.remaining.to_string(),
            ));
            response.set_header(Header::new(
                "RateLimit-Reset",
                decision.reset_secs.to_string(),
            ));
        }
    }
}

/// Counts a request of `user` if limiting is on: `Err(retry_after)` when over the limit.
/// The decision is kept for the response headers.
pub fn check(request: &Request<'_>, user: &str) -> Result<(), u64> {
    let Some(limiter) = request.rocket().state::<Limiter>() else {
        return Ok(());
    };
    let decision = limiter.check(user);
    request.local_cache(|| Some(decision));
    match decision.retry_after {
        Some(seconds) => Err(seconds),
        None => Ok(()),
    }
}

/// The rate-limit module: the limiter (unless `RATE_LIMIT_PER_MINUTE=0`), its headers, and
/// a background task that forgets idle users.
pub fn stage() -> AdHoc {
    AdHoc::try_on_ignite("Rate limiting", |rocket| async {
        let Some(config) = crate::config::of(&rocket, "rate limiting") else {
            return Err(rocket);
        };
        let Some(per_minute) = NonZeroU32::new(config.rate_limit_per_minute) else {
            tracing::info!("rate limiting is off");
            return Ok(rocket);
        };
        Ok(rocket
            .manage(Limiter::per_minute(per_minute))
            .attach(Headers)
            .attach(AdHoc::on_liftoff("Rate limit pruning", |rocket| {
                Box::pin(async move {
                    let mut shutdown = rocket.shutdown();
                    let Some(limiter) = rocket.state::<Limiter>().cloned() else {
                        return;
                    };
                    tokio::spawn(async move {
                        let mut tick = tokio::time::interval(PRUNE_EVERY);
                        loop {
                            tokio::select! {
                                _ = tick.tick() => {}
                                _ = &mut shutdown => return,
                            }
                            limiter.prune();
                        }
                    });
                })
            })))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_user_has_an_own_bucket() {
        let limiter = Limiter::per_minute(NonZeroU32::MIN.saturating_add(2));
        let remaining: Vec<u32> = (0..3).map(|_| limiter.check("alice").remaining).collect();
        assert_eq!(remaining, [2, 1, 0]);
        let refused = limiter.check("alice");
        assert_eq!(refused.remaining, 0);
        assert!(
            refused.retry_after.is_some_and(|s| (1..=20).contains(&s)),
            "{refused:?}"
        );
        let bob = limiter.check("bob");
        assert_eq!(
            (bob.remaining, bob.retry_after),
            (2, None),
            "alice's burst leaves bob alone"
        );
    }

    #[test]
    fn idle_users_are_forgotten() {
        let limiter = Limiter::with_quota(Quota::per_second(NonZeroU32::MIN.saturating_add(999)));
        for user in 0..100_000 {
            limiter.check(&format!("user-{user}"));
        }
        assert_eq!(limiter.tracked_users(), 100_000);
        std::thread::sleep(Duration::from_millis(20));
        limiter.prune();
        assert_eq!(
            limiter.tracked_users(),
            0,
            "every bucket refilled, every key dropped"
        );
    }
}

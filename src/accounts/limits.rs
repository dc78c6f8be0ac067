//! Sign-in limits counted in the database, so they hold across every instance: requests
//! to sign in (and, apart, to sign up) per client address per 10 s, and failed sign-ins
//! per email per 15 minutes. Each counter is one row with a fixed window, moved by one
//! atomic upsert.

use std::net::IpAddr;

use rocket::Request;

use crate::db::{on_pool, AppPool};

/// The window of the per-address limit: Better Auth's.
pub const ADDRESS_WINDOW_MS: i64 = 10_000;
/// The window of the per-account limit.
pub const ACCOUNT_WINDOW_MS: i64 = 15 * 60_000;

const HIT: &str = "INSERT INTO auth_limits (key, count, window_start) VALUES ($1, 1, $2) \
                   ON CONFLICT (key) DO UPDATE SET \
                   count = CASE WHEN auth_limits.window_start <= $3 THEN 1 ELSE auth_limits.count + 1 END, \
                   window_start = CASE WHEN auth_limits.window_start <= $3 THEN $2 ELSE auth_limits.window_start END \
                   RETURNING count, window_start";

fn now_ms() -> i64 {
    crate::time::now().timestamp_millis()
}

/// Whole seconds until a window that started at `start` ends (at least 1).
fn seconds_left(start: i64, window_ms: i64, now: i64) -> u64 {
    let left = (start + window_ms - now).max(1);
    u64::try_from((left + 999) / 1000).unwrap_or(1)
}

/// Counts one request against `key`; `Err(seconds)` when it is over `max` in the window.
pub async fn hit(
    pool: &AppPool,
    key: &str,
    window_ms: i64,
    max: u32,
) -> Result<Result<(), u64>, sqlx::Error> {
    let now = now_ms();
    let (count, start): (i64, i64) = on_pool!(pool, |p| sqlx::query_as(HIT)
        .bind(key)
        .bind(now)
        .bind(now - window_ms)
        .fetch_one(p)
        .await)?;
    if count > i64::from(max) {
        Ok(Err(seconds_left(start, window_ms, now)))
    } else {
        Ok(Ok(()))
    }
}

/// Whether `key` has reached `max` in its window: `Err(seconds)` until the window ends.
pub async fn over(
    pool: &AppPool,
    key: &str,
    window_ms: i64,
    max: u32,
) -> Result<Result<(), u64>, sqlx::Error> {
    let now = now_ms();
    let row: Option<(i64, i64)> = on_pool!(pool, |p| sqlx::query_as(
        "SELECT count, window_start FROM auth_limits WHERE key = $1"
    )
    .bind(key)
    .fetch_optional(p)
    .await)?;
    Ok(match row {
        Some((count, start)) if start > now - window_ms && count >= i64::from(max) => {
            Err(seconds_left(start, window_ms, now))
        }
        _ => Ok(()),
    })
}

/// Forgets `key` (an account's failures, after a successful sign-in).
pub async fn clear(pool: &AppPool, key: &str) -> Result<(), sqlx::Error> {
    on_pool!(pool, |p| sqlx::query(
        "DELETE FROM auth_limits WHERE key = $1"
    )
    .bind(key)
    .execute(p)
    .await
    .map(drop))
}

/// The client's address: the connection's peer or, when `header` is set, the last hop
/// that header names (the one the proxy in front of the service added). IPv6 addresses
/// count by their /64, as one host usually holds the whole block.
pub fn client_address(request: &Request<'_>, header: Option<&str>) -> String {
    let from_header = header.and_then(|name| {
        let value = request.headers().get(name).last()?;
        let last = value.rsplit(',').next()?.trim();
        let last = last.trim_start_matches('[');
        let last = last.split(']').next().unwrap_or(last);
        last.parse::<IpAddr>()
            .ok()
            .or_else(|| last.parse::<std::net::SocketAddr>().ok().map(|a| a.ip()))
    });
    match from_header.or_else(|| request.remote().map(|r| r.ip())) {
        Some(ip) => normalize(ip),
        None => String::new(),
    }
}

fn normalize(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_count_by_host_or_by_their_64_block() {
        assert_eq!(
            normalize("10.9.9.9".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))),
            "10.9.9.9"
        );
        assert_eq!(
            normalize("2001:db8::1".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))),
            "2001:db8:0:0::/64"
        );
        assert_eq!(
            normalize(
                "::ffff:1.2.3.4"
                    .parse()
                    .unwrap_or(IpAddr::from([0, 0, 0, 0]))
            ),
            "1.2.3.4"
        );
    }

    #[test]
    fn the_time_left_rounds_up_to_whole_seconds() {
        assert_eq!(seconds_left(0, 10_000, 1), 10);
        assert_eq!(seconds_left(0, 10_000, 9_999), 1);
        assert_eq!(seconds_left(0, 10_000, 20_000), 1);
    }
}

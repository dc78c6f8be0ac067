//! Time as the service stores and shows it: UTC, truncated to microseconds (what both
//! databases keep), written as RFC 3339 with a `Z` suffix. Any module may use it.

use chrono::{DateTime, SecondsFormat, SubsecRound, Utc};
use serde::Serializer;

/// The current time as stored: UTC, truncated to microseconds.
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// Parses an RFC 3339 timestamp with any offset into UTC, truncated to microseconds so
/// SQLite and PostgreSQL store and return the same value.
pub fn parse_timestamp(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text.trim())
        .ok()
        .map(|at| at.with_timezone(&Utc).trunc_subsecs(6))
}

/// Reads a timestamp in any form Better Auth's adapters store on SQLite: ISO 8601 text
/// with or without an offset (Kysely; no offset means UTC), or a number of milliseconds
/// (Prisma) or seconds (Drizzle) since the epoch. Microsecond precision.
pub fn parse_stored(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if let Ok(number) = text.parse::<f64>() {
        // Milliseconds since 1970 pass 1e11 in 1973; seconds reach it in 5138.
        let micros = if number.abs() >= 1e11 {
            number * 1e3
        } else {
            number * 1e6
        };
        return micros
            .is_finite()
            .then(|| DateTime::from_timestamp_micros(micros.round() as i64))
            .flatten();
    }
    if let Some(at) = parse_timestamp(text) {
        return Some(at);
    }
    ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"]
        .iter()
        .find_map(|format| chrono::NaiveDateTime::parse_from_str(text, format).ok())
        .map(|at| at.and_utc().trunc_subsecs(6))
}

/// Formats a timestamp as the contract's RFC 3339 UTC with a `Z` suffix and microseconds.
pub fn format_time(at: &DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Serializes a timestamp with [`format_time`] (`#[serde(serialize_with)]`).
pub fn serialize_time<S: Serializer>(at: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&format_time(at))
}

/// Serializes an optional timestamp with [`format_time`], `None` as `null`.
pub fn serialize_optional_time<S: Serializer>(
    at: &Option<DateTime<Utc>>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match at {
        Some(at) => serialize_time(at, serializer),
        None => serializer.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_accept_any_offset_and_come_out_in_utc_microseconds() {
        let at = parse_timestamp("2026-12-01T18:00:00.1234567+01:00");
        assert_eq!(
            at.map(|at| format_time(&at)),
            Some("2026-12-01T17:00:00.123456Z".to_owned())
        );
        assert_eq!(parse_timestamp("2026-12-01"), None);
        assert_eq!(now().timestamp_subsec_nanos() % 1000, 0);
    }
}

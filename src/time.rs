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
    with_time_text(at, str::to_owned)
}

/// Serializes a timestamp with [`format_time`] (`#[serde(serialize_with)]`).
pub fn serialize_time<S: Serializer>(at: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    with_time_text(at, |text| serializer.serialize_str(text))
}

/// Hands [`format_time`]'s text to `use_text`. For the years 0001 to 9999 without a leap
/// second it is written digit by digit into a buffer on the stack, with no allocation and
/// none of chrono's formatting machinery (a list page formats 60 of them); chrono writes
/// the rest. The two are byte for byte the same (a test compares them).
fn with_time_text<R>(at: &DateTime<Utc>, use_text: impl FnOnce(&str) -> R) -> R {
    use chrono::{Datelike as _, Timelike as _};
    // Each accessor of a `DateTime` converts it to local time first; the naive UTC value's
    // accessors read its fields.
    let at_utc = at.naive_utc();
    let year = at_utc.year();
    let nanos = at_utc.nanosecond();
    if !(1..=9999).contains(&year) || nanos >= 1_000_000_000 {
        return use_text(&at.to_rfc3339_opts(SecondsFormat::Micros, true));
    }
    let mut text = *b"0000-00-00T00:00:00.000000Z";
    let mut put = |offset: usize, value: u32, digits: usize| {
        let mut value = value;
        for i in (0..digits).rev() {
            // A digit is below 10: the cast cannot truncate.
            text[offset + i] = b'0' + (value % 10) as u8;
            value /= 10;
        }
    };
    put(0, year.unsigned_abs(), 4);
    put(5, at_utc.month(), 2);
    put(8, at_utc.day(), 2);
    put(11, at_utc.hour(), 2);
    put(14, at_utc.minute(), 2);
    put(17, at_utc.second(), 2);
    put(20, nanos / 1000, 6);
    match std::str::from_utf8(&text) {
        Ok(text) => use_text(text),
        // Digits and the pattern's ASCII only: not reached.
        Err(_) => use_text(&at.to_rfc3339_opts(SecondsFormat::Micros, true)),
    }
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

    #[test]
    fn the_fast_format_is_chronos_byte_for_byte() {
        let chrono = |at: &DateTime<Utc>| at.to_rfc3339_opts(SecondsFormat::Micros, true);
        let mut seconds: i64 = -62_135_596_800; // 0001-01-01T00:00:00Z
        let last: i64 = 253_402_300_799; // 9999-12-31T23:59:59Z
        let mut step: i64 = 1;
        while seconds <= last {
            for nanos in [0, 1_000, 999_999_000, 123_456_789, 500_000] {
                let at = DateTime::from_timestamp(seconds, nanos)
                    .unwrap_or_else(|| panic!("{seconds} is in range"));
                assert_eq!(format_time(&at), chrono(&at), "{seconds} {nanos}");
            }
            seconds += step;
            step = step * 3 + 7;
            if step > 86_400 * 400 {
                step = 12_345;
            }
        }
        for edge in [last, -62_135_596_800, 0, 951_782_400 /* 2000-02-29 */] {
            let at = DateTime::from_timestamp(edge, 999_999_999)
                .unwrap_or_else(|| panic!("{edge} is in range"));
            assert_eq!(format_time(&at), chrono(&at));
        }
        // Outside the fast path's years, chrono's form.
        for outside in [-62_135_596_801, 253_402_300_800] {
            let at = DateTime::from_timestamp(outside, 0)
                .unwrap_or_else(|| panic!("{outside} is in range"));
            assert_eq!(format_time(&at), chrono(&at));
        }
    }
}

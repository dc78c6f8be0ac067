//! A timestamp as Better Auth keeps it in each database: `timestamptz` on PostgreSQL; on
//! SQLite the ISO text JavaScript's `Date.toJSON()` gives (`2026-12-07T06:52:49.311Z`),
//! which is what Better Auth's own adapter writes, read back also from whole
//! milliseconds or seconds as other adapters write them. Milliseconds are the precision
//! throughout, as a JavaScript `Date` has.

use chrono::{DateTime, SubsecRound as _, Utc};
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgTypeInfo, PgValueRef};
use sqlx::sqlite::{SqliteArgumentValue, SqliteTypeInfo, SqliteValueRef};
use sqlx::{Decode, Encode, Postgres, Sqlite, Type};

/// A moment, at millisecond precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Stamp(pub DateTime<Utc>);

impl Stamp {
    /// Now, in milliseconds.
    pub fn now() -> Self {
        Self(crate::time::now().trunc_subsecs(3))
    }

    /// `seconds` from this moment.
    pub fn plus_secs(self, seconds: i64) -> Self {
        Self(self.0 + chrono::Duration::seconds(seconds))
    }

    /// `Date.toJSON()`'s form: UTC, three fractional digits, `Z`.
    pub fn to_json(self) -> String {
        self.0.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
    }

    /// Reads the forms Better Auth's adapters write on SQLite.
    pub fn parse(text: &str) -> Option<Self> {
        crate::time::parse_stored(text).map(|at| Self(at.trunc_subsecs(3)))
    }
}

impl serde::Serialize for Stamp {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_json())
    }
}

impl Type<Postgres> for Stamp {
    fn type_info() -> PgTypeInfo {
        <DateTime<Utc> as Type<Postgres>>::type_info()
    }

    fn compatible(ty: &PgTypeInfo) -> bool {
        <DateTime<Utc> as Type<Postgres>>::compatible(ty)
    }
}

impl Encode<'_, Postgres> for Stamp {
    fn encode_by_ref(
        &self,
        buf: &mut sqlx::postgres::PgArgumentBuffer,
    ) -> Result<IsNull, BoxDynError> {
        <DateTime<Utc> as Encode<Postgres>>::encode_by_ref(&self.0, buf)
    }
}

impl<'r> Decode<'r, Postgres> for Stamp {
    fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
        <DateTime<Utc> as Decode<Postgres>>::decode(value).map(|at| Self(at.trunc_subsecs(3)))
    }
}

impl Type<Sqlite> for Stamp {
    fn type_info() -> SqliteTypeInfo {
        <String as Type<Sqlite>>::type_info()
    }

    fn compatible(_: &SqliteTypeInfo) -> bool {
        // Text or a number, whatever the column was declared as: read by `parse`.
        true
    }
}

impl<'q> Encode<'q, Sqlite> for Stamp {
    fn encode_by_ref(&self, buf: &mut Vec<SqliteArgumentValue<'q>>) -> Result<IsNull, BoxDynError> {
        <String as Encode<Sqlite>>::encode(self.to_json(), buf)
    }
}

impl<'r> Decode<'r, Sqlite> for Stamp {
    fn decode(value: SqliteValueRef<'r>) -> Result<Self, BoxDynError> {
        let text = <String as Decode<Sqlite>>::decode(value)?;
        Self::parse(&text).ok_or_else(|| "not a timestamp Better Auth writes".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_adapter_form_reads_as_the_same_moment() {
        let iso = Stamp::parse("2026-12-02T10:00:00.500Z");
        assert_eq!(
            iso.map(Stamp::to_json).as_deref(),
            Some("2026-12-02T10:00:00.500Z")
        );
        assert_eq!(Stamp::parse("1796205600500"), iso);
        assert_eq!(
            Stamp::parse("2026-12-02 10:00:00")
                .map(Stamp::to_json)
                .as_deref(),
            Some("2026-12-02T10:00:00.000Z")
        );
        assert_eq!(Stamp::parse("tomorrow"), None);
    }
}

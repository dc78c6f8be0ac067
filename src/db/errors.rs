//! What a database error means for a client: the database cannot serve now (503), it
//! refused a value (422), or something unexpected happened (500). Classified by the
//! error's class (SQLSTATE, SQLite result code), never by its message alone.

/// What a database error means for the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbErrorClass {
    /// The database cannot serve now (connection, pool, resources): 503, and the service
    /// recovers by itself.
    Unavailable,
    /// The database refused a value (a data exception or a constraint): 422, naming the
    /// field when the error tells which.
    Refused(Option<&'static str>),
    /// Anything else (a wrong query, a decoding bug): 500.
    Unexpected,
}

/// Classifies a database error by its class, never by its message alone. A refusal names
/// the first of `fields` (column names, handed in by the module that owns the columns)
/// that the error mentions.
pub fn classify(error: &sqlx::Error, fields: &[&'static str]) -> DbErrorClass {
    match error {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        // The wire conversation broke off (e.g. a connection cut mid-handshake).
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => DbErrorClass::Unavailable,
        // A value the driver could not encode for the database is bad input too.
        sqlx::Error::Encode(_) => DbErrorClass::Refused(None),
        sqlx::Error::Database(db) => {
            let field = || field_named_in(db.as_ref(), fields);
            let code = db.code().unwrap_or_default();
            if db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>().is_some() {
                classify_postgres(&code, field)
            } else {
                match code.parse::<i64>() {
                    Ok(code) => classify_sqlite(code, field),
                    Err(_) => DbErrorClass::Unexpected,
                }
            }
        }
        _ => DbErrorClass::Unexpected,
    }
}

/// Classifies a PostgreSQL SQLSTATE; `field` is asked only for refusals.
pub fn classify_postgres(
    sqlstate: &str,
    field: impl FnOnce() -> Option<&'static str>,
) -> DbErrorClass {
    match sqlstate.get(..2).unwrap_or_default() {
        // Connection exception; insufficient resources.
        "08" | "53" => DbErrorClass::Unavailable,
        // Admin or crash shutdown, "cannot connect now".
        "57" if matches!(sqlstate, "57P01" | "57P02" | "57P03") => DbErrorClass::Unavailable,
        // A lock wait that ran out (a keyed write's bounded wait): try again shortly.
        "55" if sqlstate == "55P03" => DbErrorClass::Unavailable,
        // Data exception; integrity constraint violation.
        "22" | "23" => DbErrorClass::Refused(field()),
        _ => DbErrorClass::Unexpected,
    }
}

/// Classifies a SQLite result code (primary or extended: the primary code is its low
/// byte); `field` is asked only for refusals.
pub fn classify_sqlite(code: i64, field: impl FnOnce() -> Option<&'static str>) -> DbErrorClass {
    match code & 0xff {
        // BUSY, LOCKED, NOMEM, READONLY, IOERR, FULL, CANTOPEN, PROTOCOL.
        5 | 6 | 7 | 8 | 10 | 13 | 14 | 15 => DbErrorClass::Unavailable,
        // TOOBIG, CONSTRAINT, MISMATCH, RANGE.
        18 | 19 | 20 | 25 => DbErrorClass::Refused(field()),
        _ => DbErrorClass::Unexpected,
    }
}

/// The field a refusal names: PostgreSQL gives the constraint and column, SQLite only its
/// message (`CHECK constraint failed: length(title) …`).
fn field_named_in(
    error: &dyn sqlx::error::DatabaseError,
    fields: &[&'static str],
) -> Option<&'static str> {
    let mut text = error.message().to_owned();
    if let Some(constraint) = error.constraint() {
        text.push(' ');
        text.push_str(constraint);
    }
    if let Some(pg) = error.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
        if let Some(column) = pg.column() {
            text.push(' ');
            text.push_str(column);
        }
    }
    fields.iter().copied().find(|field| text.contains(field))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_codes_are_classified_by_their_class() {
        use DbErrorClass::*;
        let title = || Some("title");
        for (sqlstate, expected) in [
            // Connection, resources, shutdown: all-digit codes too.
            ("08006", Unavailable),
            ("08001", Unavailable),
            ("08P01", Unavailable),
            ("53300", Unavailable),
            ("53100", Unavailable),
            ("57P01", Unavailable),
            ("57P02", Unavailable),
            ("57P03", Unavailable),
            // Data exceptions and constraint violations.
            ("22021", Refused(Some("title"))),
            ("22001", Refused(Some("title"))),
            ("22P02", Refused(Some("title"))),
            ("23514", Refused(Some("title"))),
            ("23505", Refused(Some("title"))),
            // Anything else.
            ("42P01", Unexpected),
            ("42601", Unexpected),
            ("57014", Unexpected),
            ("57P04", Unexpected),
            ("XX000", Unexpected),
            ("", Unexpected),
        ] {
            assert_eq!(
                classify_postgres(sqlstate, title),
                expected,
                "SQLSTATE {sqlstate}"
            );
        }
        for (code, expected) in [
            (5, Unavailable),
            (517, Unavailable),
            (6, Unavailable),
            (10, Unavailable),
            (13, Unavailable),
            (14, Unavailable),
            (19, Refused(Some("title"))),
            (275, Refused(Some("title"))),
            (1299, Refused(Some("title"))),
            (2067, Refused(Some("title"))),
            (18, Refused(Some("title"))),
            (20, Refused(Some("title"))),
            (1, Unexpected),
            (11, Unexpected),
        ] {
            assert_eq!(classify_sqlite(code, title), expected, "SQLite code {code}");
        }
    }
}

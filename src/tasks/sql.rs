//! The task statements' SQL texts: one text per operation that both dialects run, built at
//! compile time from the few pieces they share. Nothing here runs a query.

use sqlx::Arguments as _;

use chrono::{DateTime, Utc};

use super::etag::Precondition;

/// The columns of a task row, in the order every statement returns them (see
/// [`super::row::TaskRow`], which reads them by position).
macro_rules! task_columns {
    () => {
        "id, user_id, title, description, completed, priority, category, due_at, \
         created_at, updated_at, version"
    };
}
pub(crate) use task_columns;

/// A value bound to a statement.
#[derive(Debug, Clone)]
pub enum Arg {
    /// Text.
    Text(String),
    /// Boolean.
    Bool(bool),
    /// Small integer (priority rank).
    Small(i16),
    /// Integer (limit, offset).
    Int(i64),
    /// Timestamp.
    Time(DateTime<Utc>),
    /// Text or NULL.
    OptText(Option<String>),
    /// Boolean or NULL.
    OptBool(Option<bool>),
    /// Small integer or NULL.
    OptSmall(Option<i16>),
    /// Timestamp or NULL.
    OptTime(Option<DateTime<Utc>>),
}

/// A backend whose statement arguments can be built from [`Arg`]s: both are.
pub trait BindArgs: sqlx::Database {
    /// The arguments `$1`, `$2`, … of a statement, in order; an error is a value the
    /// driver cannot encode.
    fn arguments<'q>(
        args: impl IntoIterator<Item = &'q Arg>,
    ) -> Result<Self::Arguments<'q>, sqlx::Error> {
        Self::add_args(Self::Arguments::default(), args)
    }

    /// [`Self::arguments`] of a statement whose `$1` is the user's id, borrowed.
    fn user_arguments<'q>(
        user: &'q str,
        args: impl IntoIterator<Item = &'q Arg>,
    ) -> Result<Self::Arguments<'q>, sqlx::Error>;

    /// `out` with `args` added in order.
    fn add_args<'q>(
        out: Self::Arguments<'q>,
        args: impl IntoIterator<Item = &'q Arg>,
    ) -> Result<Self::Arguments<'q>, sqlx::Error>;
}

macro_rules! bind_args_for {
    ($db:ty) => {
        impl BindArgs for $db {
            fn user_arguments<'q>(
                user: &'q str,
                args: impl IntoIterator<Item = &'q Arg>,
            ) -> Result<Self::Arguments<'q>, sqlx::Error> {
                let mut out = <Self as sqlx::Database>::Arguments::<'q>::default();
                out.add(user).map_err(sqlx::Error::Encode)?;
                Self::add_args(out, args)
            }

            fn add_args<'q>(
                mut out: Self::Arguments<'q>,
                args: impl IntoIterator<Item = &'q Arg>,
            ) -> Result<Self::Arguments<'q>, sqlx::Error> {
                for arg in args {
                    match arg {
                        Arg::Text(v) => out.add(v.as_str()),
                        Arg::Bool(v) => out.add(*v),
                        Arg::Small(v) => out.add(*v),
                        Arg::Int(v) => out.add(*v),
                        Arg::Time(v) => out.add(*v),
                        Arg::OptText(v) => out.add(v.as_deref()),
                        Arg::OptBool(v) => out.add(*v),
                        Arg::OptSmall(v) => out.add(*v),
                        Arg::OptTime(v) => out.add(*v),
                    }
                    .map_err(sqlx::Error::Encode)?;
                }
                Ok(out)
            }
        }
    };
}
bind_args_for!(sqlx::Sqlite);
bind_args_for!(sqlx::Postgres);

/// [`BindArgs::user_arguments`] of a statement run on `_pool`'s backend (the pool only
/// picks the type).
pub fn user_arguments_for<'q, DB: BindArgs>(
    _pool: &sqlx::Pool<DB>,
    user: &'q str,
    args: impl IntoIterator<Item = &'q Arg>,
) -> Result<DB::Arguments<'q>, sqlx::Error> {
    DB::user_arguments(user, args)
}

/// The columns a database refusal of a task write may name, as the 422's field.
pub const COLUMNS: [&str; 7] = [
    "user_id",
    "description",
    "category",
    "priority",
    "completed",
    "due_at",
    "title",
];

pub(super) const GET: &str = concat!(
    "SELECT ",
    task_columns!(),
    " FROM tasks WHERE id = $1 AND user_id = $2"
);

pub(super) const EXISTS: &str = "SELECT COUNT(*) FROM tasks WHERE id = $1 AND user_id = $2";

macro_rules! insert {
    () => {
        concat!(
            "INSERT INTO tasks (user_id, title, description, completed, priority, category, \
             due_at, created_at, updated_at, search_title, search_description) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING ",
            $crate::tasks::sql::task_columns!()
        )
    };
}
pub(super) use insert;

/// `AND` the stored version is one of the comma-separated list bound at `$n`, or the
/// list is NULL (any version). Plain SQL that both dialects run the same way.
macro_rules! version_in {
    ($n:literal) => {
        concat!(
            " AND ($",
            $n,
            " IS NULL OR (',' || $",
            $n,
            " || ',') LIKE ('%,' || CAST(version AS TEXT) || ',%'))"
        )
    };
}
pub(super) use version_in;

// `CASE WHEN $flag THEN $value ELSE column END` tells "keep" from "set to null".
macro_rules! update {
    () => {
        concat!(
            "UPDATE tasks SET title = COALESCE($3, title), \
     description = CASE WHEN $4 THEN $5 ELSE description END, \
     completed = COALESCE($6, completed), \
     priority = COALESCE($7, priority), \
     category = CASE WHEN $8 THEN $9 ELSE category END, \
     due_at = CASE WHEN $10 THEN $11 ELSE due_at END, \
     search_title = COALESCE($13, search_title), \
     search_description = CASE WHEN $4 THEN $14 ELSE search_description END, \
     updated_at = $12, version = version + 1 \
     WHERE id = $1 AND user_id = $2",
            $crate::tasks::sql::version_in!(15),
            " RETURNING ",
            $crate::tasks::sql::task_columns!()
        )
    };
}
pub(super) use update;

// One statement: the row lock makes concurrent toggles apply one after the other.
macro_rules! set_completed {
    () => {
        concat!(
            "UPDATE tasks SET completed = COALESCE($3, NOT completed), updated_at = $4, \
     version = version + 1 WHERE id = $1 AND user_id = $2",
            $crate::tasks::sql::version_in!(5),
            " RETURNING ",
            $crate::tasks::sql::task_columns!()
        )
    };
}
pub(super) use set_completed;

macro_rules! delete {
    () => {
        concat!(
            "DELETE FROM tasks WHERE id = $1 AND user_id = $2",
            $crate::tasks::sql::version_in!(3),
            " RETURNING id, user_id"
        )
    };
}
pub(super) use delete;

macro_rules! delete_completed {
    () => {
        "DELETE FROM tasks WHERE user_id = $1 AND completed = TRUE RETURNING id, user_id"
    };
}
pub(super) use delete_completed;

/// SQLite: a write that begins its own transaction (the commit step appends its events
/// and commits it), in one round trip to the connection's thread.
macro_rules! begun {
    ($write:expr) => {
        concat!("BEGIN IMMEDIATE; ", $write)
    };
}
pub(super) use begun;

/// The SQL form of a precondition (see `version_in!`): NULL for any version, else the
/// versions comma-separated; an empty text matches no version.
pub(super) fn versions_arg(precondition: &Precondition) -> Arg {
    match precondition {
        Precondition::Any => Arg::OptText(None),
        Precondition::Versions(versions) => Arg::OptText(Some(
            versions
                .iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(","),
        )),
    }
}

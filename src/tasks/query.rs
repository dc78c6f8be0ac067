//! List query parameters: parsed into a typed [`ListQuery`], then turned into one SQL
//! statement whose text comes only from fixed fragments; every value is bound.

use chrono::{DateTime, Utc};

use crate::error::{ApiError, FieldErrorsBuilder};

use super::model::{Priority, CATEGORY_MAX, NUL_MESSAGE};
use super::search::{contains_pattern, fold};
use super::sql::Arg;
use crate::time::parse_timestamp;

/// Largest and default page size.
pub const MAX_LIMIT: i64 = 1000;
/// Longest search text: no task field is longer.
pub const MAX_SEARCH: usize = 1000;

/// The raw query string parameters of `GET /api/<user_id>/tasks`. Each is collected as a
/// list, so a parameter given twice is reported rather than silently dropped.
#[derive(Debug, Default, FromForm)]
pub struct ListParams {
    completed: Vec<String>,
    status: Vec<String>,
    priority: Vec<String>,
    category: Vec<String>,
    q: Vec<String>,
    due_before: Vec<String>,
    due_after: Vec<String>,
    overdue: Vec<String>,
    sort: Vec<String>,
    order: Vec<String>,
    limit: Vec<String>,
    offset: Vec<String>,
}

impl utoipa::IntoParams for ListParams {
    /// The list's query parameters, their limits taken from the constants the parser uses.
    fn into_params(
        _: impl Fn() -> Option<utoipa::openapi::path::ParameterIn>,
    ) -> Vec<utoipa::openapi::path::Parameter> {
        use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
        use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, Ref, SchemaFormat, Type};
        use utoipa::openapi::{RefOr, Required, Schema};

        let param = |name: &str, description: &str, schema: RefOr<Schema>| {
            ParameterBuilder::new()
                .name(name)
                .parameter_in(ParameterIn::Query)
                .required(Required::False)
                .description(Some(description))
                .schema(Some(schema))
                .build()
        };
        let of = |t: Type| ObjectBuilder::new().schema_type(t);
        let named = |name: &str| RefOr::Ref(Ref::from_schema_name(name));
        let time = || {
            of(Type::String)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
                .into()
        };
        vec![
            param(
                "completed",
                "Only completed (`true`) or pending (`false`) tasks",
                of(Type::Boolean).into(),
            ),
            param(
                "status",
                "Same as `completed`, frontend style",
                named("StatusFilter"),
            ),
            param(
                "priority",
                "Only tasks of this priority; given more than once, of any of them",
                named("Priority"),
            ),
            param(
                "category",
                "Only tasks of this category (exact)",
                of(Type::String)
                    .min_length(Some(1))
                    .max_length(Some(CATEGORY_MAX))
                    .into(),
            ),
            param(
                "q",
                "Case-insensitive substring of title or description (any letter; `%` and `_` \
                 literal)",
                of(Type::String).max_length(Some(MAX_SEARCH)).into(),
            ),
            param(
                "due_before",
                "Only tasks due strictly before (RFC 3339; encode `+` as `%2B`)",
                time(),
            ),
            param(
                "due_after",
                "Only tasks due strictly after (RFC 3339)",
                time(),
            ),
            param(
                "overdue",
                "`true`: pending tasks due in the past; `false`: all others",
                of(Type::Boolean).into(),
            ),
            param(
                "sort",
                "Sort field (default `created_at`)",
                named("SortField"),
            ),
            param(
                "order",
                "Default: `desc` for the time fields, `asc` for the others",
                named("SortOrder"),
            ),
            param(
                "limit",
                "Page size (default: the largest)",
                of(Type::Integer)
                    .minimum(Some(1))
                    .maximum(Some(MAX_LIMIT))
                    .into(),
            ),
            param(
                "offset",
                "Tasks skipped (default 0)",
                of(Type::Integer).minimum(Some(0)).into(),
            ),
        ]
    }
}

/// The parameters, each given at most once.
#[derive(Debug, Default)]
struct Single {
    completed: Option<String>,
    status: Option<String>,
    category: Option<String>,
    q: Option<String>,
    due_before: Option<String>,
    due_after: Option<String>,
    overdue: Option<String>,
    sort: Option<String>,
    order: Option<String>,
    limit: Option<String>,
    offset: Option<String>,
}

fn single(errors: &mut FieldErrorsBuilder, name: &str, values: &[String]) -> Option<String> {
    if values.len() > 1 {
        errors.add(name, "must be given at most once");
    }
    values.first().cloned()
}

/// A value of a list parameter: a fixed set of names, each parsed and documented from
/// one table.
trait Named: Sized + Copy + 'static {
    const NAMES: &'static [(&'static str, Self)];

    fn parse(name: &str) -> Option<Self> {
        Self::NAMES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, value)| *value)
    }

    fn one_of() -> String {
        let names: Vec<&str> = Self::NAMES.iter().map(|(n, _)| *n).collect();
        format!("must be one of: {}", names.join(", "))
    }
}

/// The `status` filter: completion, frontend style.
#[derive(Debug, Clone, Copy, PartialEq, Eq, utoipa::ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum StatusFilter {
    /// Every task.
    All,
    /// Tasks not completed.
    Pending,
    /// Completed tasks.
    Completed,
}

impl Named for StatusFilter {
    const NAMES: &'static [(&'static str, Self)] = &[
        ("all", Self::All),
        ("pending", Self::Pending),
        ("completed", Self::Completed),
    ];
}

impl StatusFilter {
    /// The completion state this status selects (`None`: any).
    fn completed(self) -> Option<bool> {
        match self {
            Self::All => None,
            Self::Pending => Some(false),
            Self::Completed => Some(true),
        }
    }
}

/// A sortable field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, utoipa::ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum SortField {
    /// Creation time (the default; newest first unless `order=asc`).
    CreatedAt,
    /// Time of the last change (newest first unless `order=asc`).
    UpdatedAt,
    /// Title, folded as the search folds it, in code point order (A → Z).
    Title,
    /// Priority, low → medium → high.
    Priority,
    /// Due date (soonest first); tasks without one come last either way. `due_at` is
    /// accepted too.
    #[schema(rename = "due_date")]
    DueAt,
    /// Completion: pending tasks first (ascending), newest first within each.
    Status,
}

impl Named for SortField {
    const NAMES: &'static [(&'static str, Self)] = &[
        ("created_at", Self::CreatedAt),
        ("updated_at", Self::UpdatedAt),
        ("title", Self::Title),
        ("priority", Self::Priority),
        ("due_date", Self::DueAt),
        ("due_at", Self::DueAt),
        ("status", Self::Status),
    ];
}

/// The sort direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, utoipa::ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum SortOrder {
    /// Ascending.
    Asc,
    /// Descending.
    Desc,
}

impl Named for SortOrder {
    const NAMES: &'static [(&'static str, Self)] = &[("asc", Self::Asc), ("desc", Self::Desc)];
}

/// A validated list query.
#[derive(Debug, Clone)]
pub struct ListQuery {
    /// Completion filter.
    pub completed: Option<bool>,
    /// Priority filter: any of these (none: every priority).
    pub priorities: Vec<Priority>,
    /// Exact category filter.
    pub category: Option<String>,
    /// Case-insensitive substring of title or description, already folded.
    pub q: Option<String>,
    /// Only tasks due strictly before this.
    pub due_before: Option<DateTime<Utc>>,
    /// Only tasks due strictly after this.
    pub due_after: Option<DateTime<Utc>>,
    /// Only overdue (`true`) or only not overdue (`false`) tasks.
    pub overdue: Option<bool>,
    /// Sort field.
    pub sort: SortField,
    /// Descending order.
    pub descending: bool,
    /// Page size.
    pub limit: i64,
    /// Tasks skipped.
    pub offset: i64,
}

fn parse_bool(value: &str) -> Result<bool, String> {
    match value {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err("must be true or false".to_owned()),
    }
}

impl ListParams {
    /// Validates every parameter, reporting all problems at once.
    pub fn parse(&self) -> Result<ListQuery, ApiError> {
        let mut errors = FieldErrorsBuilder::default();
        let this = &Single {
            completed: single(&mut errors, "completed", &self.completed),
            status: single(&mut errors, "status", &self.status),
            category: single(&mut errors, "category", &self.category),
            q: single(&mut errors, "q", &self.q),
            due_before: single(&mut errors, "due_before", &self.due_before),
            due_after: single(&mut errors, "due_after", &self.due_after),
            overdue: single(&mut errors, "overdue", &self.overdue),
            sort: single(&mut errors, "sort", &self.sort),
            order: single(&mut errors, "order", &self.order),
            limit: single(&mut errors, "limit", &self.limit),
            offset: single(&mut errors, "offset", &self.offset),
        };
        let mut check =
            |name: &str, value: &Option<String>, parse: &dyn Fn(&str) -> Result<(), String>| {
                if let Some(value) = value {
                    // No parameter has a use for U+0000, and the database cannot hold it.
                    let checked = if value.contains('\0') {
                        Err(NUL_MESSAGE.to_owned())
                    } else {
                        parse(value.trim())
                    };
                    if let Err(message) = checked {
                        errors.add(name, message);
                    }
                }
            };
        check("completed", &this.completed, &|v| parse_bool(v).map(drop));
        check("status", &this.status, &|v| {
            StatusFilter::parse(v)
                .map(drop)
                .ok_or_else(StatusFilter::one_of)
        });
        // Given more than once, any of the values (a multi-select).
        for value in &self.priority {
            check("priority", &Some(value.clone()), &|v| {
                Priority::parse(v)
                    .map(drop)
                    .ok_or_else(|| "must be one of: low, medium, high".to_owned())
            });
        }
        check("category", &this.category, &|v| {
            if v.is_empty() || v.chars().count() > CATEGORY_MAX {
                Err(format!("must be 1 to {CATEGORY_MAX} characters"))
            } else {
                Ok(())
            }
        });
        check("q", &this.q, &|v| {
            if v.chars().count() > MAX_SEARCH {
                Err(format!("must be at most {MAX_SEARCH} characters"))
            } else {
                Ok(())
            }
        });
        for (name, value) in [
            ("due_before", &this.due_before),
            ("due_after", &this.due_after),
        ] {
            check(name, value, &|v| {
                parse_timestamp(v)
                    .map(drop)
                    .ok_or_else(|| "must be an RFC 3339 timestamp".to_owned())
            });
        }
        check("overdue", &this.overdue, &|v| parse_bool(v).map(drop));
        check("sort", &this.sort, &|v| {
            SortField::parse(v).map(drop).ok_or_else(SortField::one_of)
        });
        check("order", &this.order, &|v| {
            SortOrder::parse(v).map(drop).ok_or_else(SortOrder::one_of)
        });
        check("limit", &this.limit, &|v| {
            whole_number_in(v, 1..=MAX_LIMIT).map(drop)
        });
        check("offset", &this.offset, &|v| match v.parse::<i64>() {
            Ok(n) if n >= 0 => Ok(()),
            _ => Err("must be a whole number of at least 0".to_owned()),
        });
        errors.finish()?;

        let by_status = text(&this.status)
            .and_then(StatusFilter::parse)
            .and_then(StatusFilter::completed);
        let sort = text(&this.sort)
            .and_then(SortField::parse)
            .unwrap_or(SortField::CreatedAt);
        Ok(ListQuery {
            completed: text(&this.completed)
                .and_then(|v| parse_bool(v).ok())
                .or(by_status),
            priorities: {
                let mut any: Vec<Priority> = self
                    .priority
                    .iter()
                    .filter_map(|v| Priority::parse(v.trim()))
                    .collect();
                any.sort_by_key(|p| p.rank());
                any.dedup();
                any
            },
            category: text(&this.category).map(str::to_owned),
            // An empty search box searches for nothing in particular.
            q: text(&this.q).filter(|v| !v.is_empty()).map(fold),
            due_before: text(&this.due_before).and_then(parse_timestamp),
            due_after: text(&this.due_after).and_then(parse_timestamp),
            overdue: text(&this.overdue).and_then(|v| parse_bool(v).ok()),
            sort,
            // created_at and updated_at default to newest first; the others to ascending.
            descending: match text(&this.order).and_then(SortOrder::parse) {
                Some(order) => order == SortOrder::Desc,
                None => matches!(sort, SortField::CreatedAt | SortField::UpdatedAt),
            },
            limit: text(&this.limit)
                .and_then(|v| v.parse().ok())
                .unwrap_or(MAX_LIMIT),
            offset: text(&this.offset).and_then(|v| v.parse().ok()).unwrap_or(0),
        })
    }
}

fn text(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim)
}

impl ListQuery {
    /// The `WHERE` clause (after `user_id = $1`) and its arguments, numbered from `$2`.
    pub fn filter(&self, now: DateTime<Utc>) -> (String, Vec<Arg>) {
        let mut sql = String::new();
        let mut args = Vec::new();
        let mut push = |clause: &str, arg: Arg| {
            args.push(arg);
            sql.push_str(&clause.replace('?', &format!("${}", args.len() + 1)));
        };
        if let Some(completed) = self.completed {
            push(" AND completed = ?", Arg::Bool(completed));
        }
        match self.priorities.as_slice() {
            [] => {}
            [one] => push(" AND priority = ?", Arg::Small(one.rank())),
            many => {
                let last = many.len() - 1;
                for (n, priority) in many.iter().enumerate() {
                    let clause = match n {
                        0 => " AND priority IN (?",
                        n if n == last => ", ?)",
                        _ => ", ?",
                    };
                    push(clause, Arg::Small(priority.rank()));
                }
            }
        }
        if let Some(category) = &self.category {
            push(" AND category = ?", Arg::Text(category.clone()));
        }
        if let Some(q) = &self.q {
            // Rows written before the search columns existed fall back to lower() until
            // the start-up backfill reaches them.
            push(
                " AND (COALESCE(search_title, lower(title)) LIKE ? ESCAPE '\\' \
                 OR COALESCE(search_description, lower(description)) LIKE ? ESCAPE '\\')",
                Arg::Text(contains_pattern(q)),
            );
        }
        if let Some(before) = self.due_before {
            push(" AND due_at < ?", Arg::Time(before));
        }
        if let Some(after) = self.due_after {
            push(" AND due_at > ?", Arg::Time(after));
        }
        match self.overdue {
            Some(true) => push(" AND completed = FALSE AND due_at < ?", Arg::Time(now)),
            Some(false) => push(
                " AND NOT (completed = FALSE AND due_at IS NOT NULL AND due_at < ?)",
                Arg::Time(now),
            ),
            None => {}
        }
        (sql, args)
    }

    /// The `ORDER BY` clause: a fixed text per field and direction, `id` breaking ties.
    pub fn order_by(&self) -> &'static str {
        use SortField::*;
        match (self.sort, self.descending) {
            (CreatedAt, false) => " ORDER BY created_at ASC, id ASC",
            (CreatedAt, true) => " ORDER BY created_at DESC, id DESC",
            (UpdatedAt, false) => " ORDER BY updated_at ASC, id ASC",
            (UpdatedAt, true) => " ORDER BY updated_at DESC, id DESC",
            // The folded title, so case does not split the order; its collation is the
            // code point order on both databases (migration 0004).
            (Title, false) => " ORDER BY search_title ASC, id ASC",
            (Title, true) => " ORDER BY search_title DESC, id DESC",
            (Priority, false) => " ORDER BY priority ASC, id ASC",
            (Priority, true) => " ORDER BY priority DESC, id DESC",
            // (due_at IS NULL) puts tasks without a due date last in both directions.
            (DueAt, false) => " ORDER BY (due_at IS NULL) ASC, due_at ASC, id ASC",
            (DueAt, true) => " ORDER BY (due_at IS NULL) ASC, due_at DESC, id DESC",
            (Status, false) => " ORDER BY completed ASC, created_at DESC, id DESC",
            (Status, true) => " ORDER BY completed DESC, created_at DESC, id DESC",
        }
    }
}

/// The statement of one list page (the user id is `$1`), built once per request. Public so
/// the plan tests and benchmarks examine the very text the service runs.
#[derive(Debug)]
pub struct ListStatement {
    /// The page with its total (the count rides on every row).
    pub sql: String,
    /// The filter after `user_id = $1`, for the count past the last page.
    filter: String,
    /// The arguments from `$2` on: the filter's, then `LIMIT` and `OFFSET`.
    pub args: Vec<Arg>,
    /// How many of `args` belong to the filter.
    pub filter_args: usize,
}

impl ListStatement {
    /// Builds the statement of `query`, with `now` for the overdue filter.
    pub fn new(query: &ListQuery, now: DateTime<Utc>) -> Self {
        let (filter, mut args) = query.filter(now);
        let first_page_arg = args.len() + 2;
        let sql = format!(
            concat!(
                "SELECT ",
                super::sql::task_columns!(),
                ", (SELECT COUNT(*) FROM tasks WHERE user_id = $1{filter}) AS total_count \
                 FROM tasks WHERE user_id = $1{filter}{order} LIMIT ${limit} OFFSET ${offset}"
            ),
            filter = filter,
            order = query.order_by(),
            limit = first_page_arg,
            offset = first_page_arg + 1
        );
        let filter_args = args.len();
        args.extend([Arg::Int(query.limit), Arg::Int(query.offset)]);
        Self {
            sql,
            filter,
            args,
            filter_args,
        }
    }

    /// The count alone, for a page past the end, which has no row to carry it.
    pub fn count_sql(&self) -> String {
        format!(
            "SELECT COUNT(*) FROM tasks WHERE user_id = $1{}",
            self.filter
        )
    }
}

/// `text` as a whole number within `range`, or what a 422 says of it.
pub fn whole_number_in(text: &str, range: std::ops::RangeInclusive<i64>) -> Result<i64, String> {
    match text.parse::<i64>() {
        Ok(n) if range.contains(&n) => Ok(n),
        _ => Err(format!(
            "must be a whole number from {} to {}",
            range.start(),
            range.end()
        )),
    }
}

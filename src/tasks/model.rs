//! Task domain and wire types. Input is parsed field by field from the JSON object, so a
//! client learns every broken rule at once and a value that exists here is valid.

use chrono::{DateTime, Datelike as _, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{ApiError, FieldErrorsBuilder};
use crate::time::{parse_timestamp, serialize_optional_time, serialize_time};

/// Longest title, in Unicode scalar values.
pub const TITLE_MAX: usize = 200;
/// Longest description, in Unicode scalar values.
pub const DESCRIPTION_MAX: usize = 1000;
/// Longest category, in Unicode scalar values.
pub const CATEGORY_MAX: usize = 100;

/// Why a text holding U+0000 is refused: PostgreSQL cannot store it, and SQLite's
/// `length()` stops at it, so the two databases would disagree about the same value.
pub const NUL_MESSAGE: &str = "must not contain the NUL character (U+0000)";

/// Refuses a text value holding U+0000, for `what` ("Title", "q", …).
pub fn refuse_nul(what: &str, text: &str) -> Result<(), String> {
    if text.contains('\0') {
        Err(format!("{what} {NUL_MESSAGE}"))
    } else {
        Ok(())
    }
}

/// A task id from the path: a positive integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskId(i64);

impl TaskId {
    /// The id's value.
    pub fn get(self) -> i64 {
        self.0
    }
}

/// A path id that is not a positive integer.
#[derive(Debug, Clone, Copy)]
pub struct InvalidTaskId;

impl From<InvalidTaskId> for ApiError {
    fn from(_: InvalidTaskId) -> Self {
        ApiError::field("id", "Task id must be a positive integer")
    }
}

impl<'a> rocket::request::FromParam<'a> for TaskId {
    type Error = InvalidTaskId;

    fn from_param(param: &'a str) -> Result<Self, Self::Error> {
        match param.parse::<i64>() {
            Ok(id) if id > 0 => Ok(Self(id)),
            _ => Err(InvalidTaskId),
        }
    }
}

/// A task's priority; sorts low < medium < high.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    Default,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    /// Low.
    Low,
    /// Medium (the default).
    #[default]
    Medium,
    /// High.
    High,
}

impl Priority {
    /// The stored rank (1, 2, 3), which sorts in the contract's order.
    pub fn rank(self) -> i16 {
        match self {
            Self::Low => 1,
            Self::Medium => 2,
            Self::High => 3,
        }
    }

    /// The priority of a stored rank.
    pub fn from_rank(rank: i16) -> Option<Self> {
        match rank {
            1 => Some(Self::Low),
            2 => Some(Self::Medium),
            3 => Some(Self::High),
            _ => None,
        }
    }

    /// Parses the wire name (`low`, `medium`, `high`) or rank (`1`, `2`, `3`).
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "low" | "1" => Some(Self::Low),
            "medium" | "2" => Some(Self::Medium),
            "high" | "3" => Some(Self::High),
            _ => None,
        }
    }
}

/// A trimmed title of 1 to 200 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Title(String);

impl Title {
    /// Parses a JSON value into a title.
    pub fn parse(value: &Value) -> Result<Self, String> {
        let Value::String(raw) = value else {
            return Err(if value.is_null() {
                "Title is required and cannot be empty".to_owned()
            } else {
                "Title must be a string".to_owned()
            });
        };
        refuse_nul("Title", raw)?;
        let title = raw.trim();
        if title.is_empty() {
            return Err("Title is required and cannot be empty".to_owned());
        }
        if title.chars().count() > TITLE_MAX {
            return Err(format!("Title must be at most {TITLE_MAX} characters"));
        }
        Ok(Self(title.to_owned()))
    }

    /// The title text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn parse_description(value: &Value) -> Result<Option<String>, String> {
    match value {
        Value::Null => Ok(None),
        Value::String(text) if text.contains('\0') => Err(format!("Description {NUL_MESSAGE}")),
        Value::String(text) if text.chars().count() <= DESCRIPTION_MAX => Ok(Some(text.clone())),
        Value::String(_) => Err(format!(
            "Description must be at most {DESCRIPTION_MAX} characters"
        )),
        _ => Err("Description must be a string or null".to_owned()),
    }
}

fn parse_category(value: &Value) -> Result<Option<String>, String> {
    match value {
        Value::Null => Ok(None),
        Value::String(text) => {
            refuse_nul("Category", text)?;
            let text = text.trim();
            let chars = text.chars().count();
            if chars == 0 || chars > CATEGORY_MAX {
                Err(format!(
                    "Category must be 1 to {CATEGORY_MAX} characters, or null"
                ))
            } else {
                Ok(Some(text.to_owned()))
            }
        }
        _ => Err("Category must be a string or null".to_owned()),
    }
}

fn parse_completed(value: &Value) -> Result<bool, String> {
    value
        .as_bool()
        .ok_or_else(|| "Completed must be true or false".to_owned())
}

fn parse_priority(value: &Value) -> Result<Priority, String> {
    let priority = match value {
        Value::String(name) => Priority::parse(name),
        // Frontends written for numbered priorities send 1, 2 or 3.
        Value::Number(rank) => rank
            .as_i64()
            .and_then(|rank| i16::try_from(rank).ok())
            .and_then(Priority::from_rank),
        _ => None,
    };
    priority.ok_or_else(|| "Priority must be one of: low, medium, high (or 1, 2, 3)".to_owned())
}

fn parse_due_at(value: &Value) -> Result<Option<DateTime<Utc>>, String> {
    match value {
        Value::Null => Ok(None),
        Value::String(text) => {
            let at = parse_timestamp(text).ok_or_else(|| {
                "Due date must be an RFC 3339 timestamp such as 2026-12-01T17:00:00Z".to_owned()
            })?;
            // Answers write it in UTC with four year digits, and PostgreSQL has no year 0.
            if !(1..=9999).contains(&at.year()) {
                return Err("Due date must fall in the years 0001 to 9999 in UTC".to_owned());
            }
            Ok(Some(at))
        }
        _ => Err("Due date must be an RFC 3339 timestamp string or null".to_owned()),
    }
}

/// How a body is read: what is required and what absence means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputMode {
    /// POST: `title` required, absent fields take their defaults.
    Create,
    /// PUT: `title` required, absent optional fields keep their value.
    Replace,
    /// PATCH (merge patch): any subset; absent fields keep their value.
    Patch,
}

/// The changes a body asks for. `None` keeps the stored value; for nullable fields
/// `Some(None)` clears it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskChanges {
    /// New title.
    pub title: Option<Title>,
    /// New description, or `Some(None)` to clear it.
    pub description: Option<Option<String>>,
    /// New completion state.
    pub completed: Option<bool>,
    /// New priority.
    pub priority: Option<Priority>,
    /// New category, or `Some(None)` to clear it.
    pub category: Option<Option<String>>,
    /// New due date, or `Some(None)` to clear it.
    pub due_at: Option<Option<DateTime<Utc>>>,
}

impl TaskChanges {
    /// Parses a JSON object body; unknown fields (such as `user_id` or `id`) are ignored.
    pub fn parse(body: &Map<String, Value>, mode: InputMode) -> Result<Self, ApiError> {
        let mut errors = FieldErrorsBuilder::default();
        let title = match body.get("title") {
            Some(value) => errors.check("title", Title::parse(value)),
            None if mode == InputMode::Patch => None,
            None => {
                errors.add("title", "Title is required and cannot be empty");
                None
            }
        };
        let description = field(body, &mut errors, "description", parse_description);
        let category = field(body, &mut errors, "category", parse_category);
        let completed = field(body, &mut errors, "completed", parse_completed);
        let priority = field(body, &mut errors, "priority", parse_priority);
        // `due_date` is the field's name; `due_at` is accepted as another name for it.
        let due_date = field(body, &mut errors, "due_date", parse_due_at);
        let due_at = field(body, &mut errors, "due_at", parse_due_at);
        if let (Some(a), Some(b)) = (&due_date, &due_at) {
            if a != b {
                errors.add(
                    "due_date",
                    "due_date and due_at name the same field: give one, or the same instant",
                );
            }
        }
        let due_at = due_date.or(due_at);
        errors.finish()?;
        Ok(Self {
            title,
            description,
            completed,
            priority,
            category,
            due_at,
        })
    }

    /// Whether the body asked for no change at all.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// Parses `body[name]` when present, recording a failure under `name`.
fn field<T>(
    body: &Map<String, Value>,
    errors: &mut FieldErrorsBuilder,
    name: &str,
    parse: fn(&Value) -> Result<T, String>,
) -> Option<T> {
    body.get(name)
        .and_then(|value| errors.check(name, parse(value)))
}

/// What `PATCH …/complete` asks for: `None` flips `completed`, `Some(b)` sets it.
pub fn parse_completion(body: Option<&Map<String, Value>>) -> Result<Option<bool>, ApiError> {
    match body.and_then(|body| body.get("completed")) {
        None => Ok(None),
        Some(value) => parse_completed(value)
            .map(Some)
            .map_err(|message| ApiError::field("completed", message)),
    }
}

/// A validated new task.
#[derive(Debug, Clone)]
pub struct NewTask {
    /// Title.
    pub title: Title,
    /// Description.
    pub description: Option<String>,
    /// Completion state.
    pub completed: bool,
    /// Priority.
    pub priority: Priority,
    /// Category.
    pub category: Option<String>,
    /// Due date.
    pub due_at: Option<DateTime<Utc>>,
}

impl NewTask {
    /// Parses a POST body.
    pub fn parse(body: &Map<String, Value>) -> Result<Self, ApiError> {
        let changes = TaskChanges::parse(body, InputMode::Create)?;
        let title = changes
            .title
            .ok_or_else(|| ApiError::field("title", "Title is required and cannot be empty"))?;
        Ok(Self {
            title,
            description: changes.description.flatten(),
            completed: changes.completed.unwrap_or(false),
            priority: changes.priority.unwrap_or_default(),
            category: changes.category.flatten(),
            due_at: changes.due_at.flatten(),
        })
    }
}

/// The JSON schema of a task body: `POST` and `PUT` (`title` required) or a merge patch
/// (any subset; `"title": null` refused). Its limits are the constants the parser checks.
fn body_schema(patch: bool) -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, Ref, SchemaFormat, Type};
    use utoipa::openapi::RefOr;

    let text = |min: usize, max: usize, nullable: bool, description: &str| {
        let kind = if nullable {
            utoipa::openapi::schema::SchemaType::from_iter([Type::String, Type::Null])
        } else {
            utoipa::openapi::schema::SchemaType::Type(Type::String)
        };
        ObjectBuilder::new()
            .schema_type(kind)
            .min_length((min > 0).then_some(min))
            .max_length(Some(max))
            .description(Some(description))
    };
    let mut body = ObjectBuilder::new()
        .schema_type(Type::Object)
        .property(
            "title",
            text(
                1,
                TITLE_MAX,
                false,
                "Trimmed; never `null`. Any character but U+0000.",
            ),
        )
        .property(
            "description",
            text(0, DESCRIPTION_MAX, true, "`null` clears it."),
        )
        .property(
            "completed",
            ObjectBuilder::new()
                .schema_type(Type::Boolean)
                .description(Some(if patch {
                    "Completion state."
                } else {
                    "Default `false`."
                })),
        )
        .property("priority", RefOr::Ref(Ref::from_schema_name("Priority")))
        .property(
            "category",
            text(1, CATEGORY_MAX, true, "Trimmed; `null` clears it."),
        )
        .property(
            "due_date",
            ObjectBuilder::new()
                .schema_type(utoipa::openapi::schema::SchemaType::from_iter([
                    Type::String,
                    Type::Null,
                ]))
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
                .description(Some(
                    "RFC 3339 with any offset; stored and returned in UTC; `null` clears it. \
                     `due_at` is accepted as another name for it.",
                )),
        );
    if patch {
        body = body.description(Some(
            "A JSON merge patch: any subset of the writable fields; `null` clears a nullable \
             field. Unknown fields are ignored.",
        ));
    } else {
        body = body.required("title").description(Some(
            "The writable fields. Absent optional fields take their default (POST) or keep \
             their value (PUT); unknown fields (such as `user_id`) are ignored.",
        ));
    }
    body.into()
}

impl utoipa::PartialSchema for NewTask {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        body_schema(false)
    }
}

impl utoipa::ToSchema for NewTask {
    fn name() -> std::borrow::Cow<'static, str> {
        "TaskInput".into()
    }
}

impl utoipa::PartialSchema for TaskChanges {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        body_schema(true)
    }
}

impl utoipa::ToSchema for TaskChanges {
    fn name() -> std::borrow::Cow<'static, str> {
        "TaskPatch".into()
    }
}

/// The path of one task. Documentation only: the routes take `<user_id>` and `<id>`.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct TaskPath {
    /// The token's `sub`.
    pub user_id: String,
    /// Task id.
    #[param(minimum = 1)]
    pub id: i64,
}

/// The body `PATCH …/complete` may carry. Documentation only.
#[derive(utoipa::ToSchema)]
pub struct CompleteBody {
    /// The state to set.
    pub completed: bool,
}

/// A task as the API returns it (and as an event notification carries it back). It is
/// written through [`TaskView`], the one definition of a task's JSON.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[schema(example = json!({"id": 42, "user_id": "usr_8fJ2", "title": "Buy groceries",
    "description": "Milk, eggs, bread", "completed": false, "is_completed": false, "priority": "medium", "category": "home",
    "due_date": "2026-12-01T17:00:00Z", "created_at": "2026-11-22T10:00:00.123456Z",
    "updated_at": "2026-11-22T10:00:00.123456Z"}))]
pub struct Task {
    /// Id, unique across users.
    #[schema(minimum = 1)]
    pub id: i64,
    /// Owner.
    pub user_id: String,
    /// Title.
    pub title: String,
    /// Description.
    pub description: Option<String>,
    /// Completion state.
    pub completed: bool,
    /// The same as `completed`, under the name frontends written for other backends read.
    #[serde(default)]
    #[schema(read_only)]
    pub is_completed: bool,
    /// Priority.
    pub priority: Priority,
    /// Category.
    pub category: Option<String>,
    /// Due date: any offset in, UTC out, within the years 0001 to 9999 in UTC.
    #[serde(rename = "due_date")]
    #[schema(rename = "due_date")]
    pub due_at: Option<DateTime<Utc>>,
    /// Creation time; never changes.
    pub created_at: DateTime<Utc>,
    /// Time of the last change.
    pub updated_at: DateTime<Utc>,
    /// Bumped by every change; the ETag.
    #[serde(skip)]
    pub version: i64,
}

/// A task's JSON, with its texts borrowed: from a [`Task`], or straight from a list page's
/// rows, which then need no owned copy of each text (`super::row::view`).
#[derive(Serialize)]
pub(crate) struct TaskView<'a> {
    pub(crate) id: i64,
    pub(crate) user_id: &'a str,
    pub(crate) title: &'a str,
    pub(crate) description: Option<&'a str>,
    pub(crate) completed: bool,
    pub(crate) is_completed: bool,
    pub(crate) priority: Priority,
    pub(crate) category: Option<&'a str>,
    #[serde(rename = "due_date", serialize_with = "serialize_optional_time")]
    pub(crate) due_at: Option<DateTime<Utc>>,
    #[serde(serialize_with = "serialize_time")]
    pub(crate) created_at: DateTime<Utc>,
    #[serde(serialize_with = "serialize_time")]
    pub(crate) updated_at: DateTime<Utc>,
}

impl Serialize for Task {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        TaskView {
            id: self.id,
            user_id: &self.user_id,
            title: &self.title,
            description: self.description.as_deref(),
            completed: self.completed,
            is_completed: self.is_completed,
            priority: self.priority,
            category: self.category.as_deref(),
            due_at: self.due_at,
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
        .serialize(serializer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    }

    fn any_json() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            any::<f64>().prop_map(|n| json!(n)),
            "\\PC{0,260}".prop_map(Value::String),
            Just(json!("2026-12-01T17:00:00+01:00")),
            prop::sample::select(vec!["low", "medium", "high", " work "]).prop_map(|s| json!(s)),
        ];
        leaf.prop_recursive(2, 8, 3, |inner| {
            prop::collection::vec(inner, 0..3).prop_map(Value::Array)
        })
    }

    proptest::proptest! {
        #[test]
        fn any_body_is_parsed_or_refused_without_panicking(
            fields in proptest::collection::btree_map(
                proptest::sample::select(vec!["title", "description", "completed", "priority", "category", "due_at", "user_id", "id", "x"]),
                any_json(),
                0..7,
            )
        ) {
            let body: Map<String, Value> = fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
            // Either a valid task, or a 422 that names only fields of the body.
            let named_fields_only = |error: ApiError| match error {
                ApiError::Validation(errors) => {
                    !errors.is_empty() && errors.keys().all(|field| {
                        body.contains_key(field.as_str()) || field == "title"
                    })
                }
                _ => false,
            };
            match NewTask::parse(&body) {
                Ok(task) => {
                    let title = task.title.as_str();
                    proptest::prop_assert_eq!(title.trim(), title);
                    proptest::prop_assert!((1..=TITLE_MAX).contains(&title.chars().count()));
                    proptest::prop_assert!(!title.contains('\0'));
                }
                Err(error) => proptest::prop_assert!(named_fields_only(error)),
            }
            for mode in [InputMode::Create, InputMode::Replace, InputMode::Patch] {
                match TaskChanges::parse(&body, mode) {
                    Ok(changes) => {
                        if let Some(title) = &changes.title {
                            proptest::prop_assert!(!title.as_str().is_empty());
                        }
                        proptest::prop_assert!(mode == InputMode::Patch || changes.title.is_some());
                    }
                    Err(error) => proptest::prop_assert!(named_fields_only(error)),
                }
            }
        }
    }

    #[test]
    fn titles_are_trimmed_and_counted_in_characters() {
        assert_eq!(
            Title::parse(&json!("  hi  ")).map(|t| t.0),
            Ok("hi".to_owned())
        );
        assert!(Title::parse(&json!("é".repeat(200))).is_ok());
        assert!(Title::parse(&json!("é".repeat(201))).is_err());
        assert!(Title::parse(&json!("   ")).is_err());
        assert!(Title::parse(&json!(5)).is_err());
        assert!(Title::parse(&Value::Null).is_err());
    }

    #[test]
    fn every_broken_field_is_reported_at_once() {
        let body = object(
            json!({"title": "", "priority": "urgent", "completed": "yes",
                                 "due_at": "tomorrow", "category": "", "description": 3}),
        );
        let Err(ApiError::Validation(errors)) = NewTask::parse(&body) else {
            panic!("expected a validation error");
        };
        let fields: Vec<&str> = errors.keys().map(String::as_str).collect();
        assert_eq!(
            fields,
            [
                "category",
                "completed",
                "description",
                "due_at",
                "priority",
                "title"
            ]
        );
    }

    #[test]
    fn patch_distinguishes_absent_from_null() {
        let changes = TaskChanges::parse(&object(json!({"category": null})), InputMode::Patch)
            .unwrap_or_default();
        assert_eq!(changes.category, Some(None));
        assert_eq!(changes.description, None);
        assert!(TaskChanges::parse(&object(json!({"title": null})), InputMode::Patch).is_err());
        assert!(
            TaskChanges::parse(&object(json!({})), InputMode::Patch).is_ok_and(|c| c.is_empty())
        );
    }
}

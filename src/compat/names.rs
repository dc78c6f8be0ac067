//! The other names of routes and list parameters, mapped onto the canonical ones: pure
//! functions of the request line, so each row of the table is tested on its own.

use std::borrow::Cow;

use rocket::http::Method;

use crate::error::{ApiError, FieldErrorsBuilder};

/// What a route alias implies for the body of the canonical `PATCH …/complete`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Implied {
    /// A toggle: no body, whatever was sent.
    Toggle,
    /// `completed` set to this value.
    Set(bool),
    /// `completed` from the body's `status` (`PATCH …/status`).
    FromStatus,
}

/// A request line mapped onto the canonical API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapped {
    /// The method (an alias may change it).
    pub method: Method,
    /// The path, still percent-encoded.
    pub path: String,
    /// What the alias implies for the body.
    pub implied: Option<Implied>,
}

/// The canonical method and path of `method path` when it uses another name for a route
/// under `/api/`; `None` when it is canonical already (or not under `/api/`).
pub fn route(method: Method, path: &str) -> Option<Mapped> {
    let rest = path.strip_prefix("/api/")?;
    let mut segments: Vec<&str> = rest.split('/').collect();
    let mut changed = false;
    // `/api/v1/…`: `v1` is a version, never a user id.
    if segments.len() > 1 && segments[0] == "v1" {
        segments.remove(0);
        changed = true;
    }
    // `todos` for `tasks`: after the user id, or right after `/api/` (token-scoped); a
    // user id comes first, so `/api/todos/tasks` stays the tasks of a user named `todos`.
    let resource = match segments.as_slice() {
        [_, "todos" | "tasks", ..] => Some(1),
        ["todos" | "tasks", ..] => Some(0),
        _ => None,
    };
    if let Some(at) = resource {
        if segments[at] == "todos" {
            segments[at] = "tasks";
            changed = true;
        }
    }
    let mut method = method;
    let mut implied = None;
    if let Some(at) = resource {
        match &segments[at..] {
            // Statistics under the tasks: `/api/tasks/stats`, `/api/{user}/tasks/stats`.
            ["tasks", "stats"] => {
                segments.remove(at);
                changed = true;
            }
            ["tasks", _, action] => {
                let found = match (method, *action) {
                    (Method::Patch, "toggle" | "toggle-status" | "toggle-complete") => {
                        Some(Implied::Toggle)
                    }
                    (Method::Post, "complete") => Some(Implied::Set(true)),
                    (Method::Post, "uncomplete") => Some(Implied::Set(false)),
                    (Method::Patch, "status") => Some(Implied::FromStatus),
                    _ => None,
                };
                if let Some(found) = found {
                    segments[at + 2] = "complete";
                    method = Method::Patch;
                    implied = Some(found);
                    changed = true;
                }
            }
            _ => {}
        }
    }
    changed.then(|| Mapped {
        method,
        path: format!("/api/{}", segments.join("/")),
        implied,
    })
}

/// Whether the canonical `path` is a task list (`/api/{user}/tasks` or `/api/tasks`).
pub fn is_list(path: &str) -> bool {
    let Some(rest) = path.strip_prefix("/api/") else {
        return false;
    };
    matches!(
        rest.split('/').collect::<Vec<_>>().as_slice(),
        ["tasks"] | [_, "tasks"]
    )
}

/// Whether the canonical `path` takes a task body (create, replace, patch, complete).
pub fn takes_task_body(path: &str) -> bool {
    let Some(rest) = path.strip_prefix("/api/") else {
        return false;
    };
    let segments: Vec<&str> = rest.split('/').collect();
    let after = match segments.as_slice() {
        ["tasks", ..] => &segments[1..],
        [_, "tasks", ..] => &segments[2..],
        _ => return false,
    };
    matches!(after, [] | [_] | [_, "complete"])
}

/// The list's canonical parameters.
pub const CANONICAL: [&str; 12] = [
    "completed",
    "status",
    "priority",
    "category",
    "q",
    "due_before",
    "due_after",
    "overdue",
    "sort",
    "order",
    "limit",
    "offset",
];

/// Other list parameter names and the canonical name each stands for (`page` is worked
/// out against `limit` apart).
pub const ALIASES: [(&str, &str); 10] = [
    ("search", "q"),
    ("sort_by", "sort"),
    ("sortBy", "sort"),
    ("sort_order", "order"),
    ("sortOrder", "order"),
    ("status_filter", "status"),
    ("filter_status", "status"),
    ("is_completed", "completed"),
    ("skip", "offset"),
    ("page", "offset"),
];

/// Parameters the list does not read but other parts of the service do.
const ELSEWHERE: [&str; 1] = ["access_token"];

/// The default page size a `page` without `limit` pages by.
const DEFAULT_LIMIT: i64 = crate::tasks::query::MAX_LIMIT;

/// A list query mapped onto the canonical names.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Query {
    /// The canonical pairs, in order, when anything changed (`None`: the query is
    /// canonical as sent).
    pub pairs: Option<Vec<(String, String)>>,
    /// The names the list does not know (nor any alias), for the warning.
    pub unknown: Vec<String>,
}

/// Maps a list query's decoded `pairs` onto the canonical names and values. When two
/// names for one thing are given and disagree, 422 naming both.
pub fn list_query(pairs: &[(Cow<'_, str>, Cow<'_, str>)]) -> Result<Query, ApiError> {
    let mut out: Vec<(String, String, &str)> = Vec::with_capacity(pairs.len());
    let mut unknown = Vec::new();
    let mut changed = false;
    let mut page: Option<&str> = None;
    for (name, value) in pairs {
        let (canonical, given) = match ALIASES.iter().find(|(alias, _)| *alias == name) {
            Some((_, "offset")) if name == "page" => {
                page = Some(value);
                changed = true;
                continue;
            }
            Some((alias, canonical)) => (*canonical, *alias),
            None => match CANONICAL.iter().find(|c| **c == name) {
                Some(canonical) => (*canonical, *canonical),
                None => {
                    if !ELSEWHERE.contains(&name.as_ref()) {
                        unknown.push(name.to_string());
                    }
                    out.push((name.to_string(), value.to_string(), ""));
                    continue;
                }
            },
        };
        let normalized = value_of(canonical, value);
        changed |= given != canonical || normalized != value.as_ref();
        out.push((canonical.to_owned(), normalized.into_owned(), given));
    }
    // `sort` values that carry a direction: `-field`, `field:asc`.
    let mut directions = Vec::new();
    for (name, value, given) in &mut out {
        if name != "sort" {
            continue;
        }
        let (field, order) = if let Some(field) = value.strip_prefix('-') {
            (field.to_owned(), "desc")
        } else if let Some((field, order)) = value.rsplit_once(':') {
            match order.to_ascii_lowercase().as_str() {
                "asc" => (field.to_owned(), "asc"),
                "desc" => (field.to_owned(), "desc"),
                _ => continue,
            }
        } else {
            continue;
        };
        *value = sort_field(&field).into_owned();
        directions.push(("order".to_owned(), order.to_owned(), *given));
        changed = true;
    }
    out.extend(directions);
    if let Some(page) = page {
        let limit = out
            .iter()
            .find(|(name, _, _)| name == "limit")
            .and_then(|(_, v, _)| v.trim().parse::<i64>().ok())
            .unwrap_or(DEFAULT_LIMIT);
        let page = page
            .trim()
            .parse::<i64>()
            .ok()
            .filter(|page| *page >= 1)
            .ok_or_else(|| ApiError::field("page", "must be a whole number of at least 1"))?;
        let offset = (page - 1).saturating_mul(limit.max(1));
        out.push(("offset".to_owned(), offset.to_string(), "page"));
    }
    conflicts(&out)?;
    if !changed {
        return Ok(Query {
            pairs: None,
            unknown,
        });
    }
    // One pair per meaning: an alias that agrees with another name for the same thing
    // goes (a repeated canonical name stays repeated, for its own check).
    let mut pairs: Vec<(String, String)> = Vec::with_capacity(out.len());
    let mut seen: Vec<(&str, &str)> = Vec::new();
    for (name, value, given) in &out {
        if !given.is_empty() {
            if seen.iter().any(|(n, g)| *n == name && *g != *given) {
                continue;
            }
            seen.push((name, given));
        }
        pairs.push((name.clone(), value.clone()));
    }
    Ok(Query {
        pairs: Some(pairs),
        unknown,
    })
}

/// 422 for two names of one thing that disagree, naming both.
fn conflicts(out: &[(String, String, &str)]) -> Result<(), ApiError> {
    let mut errors = FieldErrorsBuilder::default();
    for (n, (name, value, given)) in out.iter().enumerate() {
        // A repeated `priority` is a multi-select, not a disagreement.
        if given.is_empty() || name == "priority" {
            continue;
        }
        for (other_name, other_value, other_given) in &out[n + 1..] {
            if other_name == name && other_given != given && other_value != value {
                let message = format!("{given} and {other_given} disagree; give one of them");
                errors.add(given, message.clone());
                errors.add(other_given, message);
            }
        }
    }
    errors.finish()
}

/// A list parameter's value in its canonical form, when the other forms are accepted.
fn value_of<'v>(canonical: &str, value: &'v str) -> Cow<'v, str> {
    match canonical {
        "status" => Cow::Borrowed(status(value).unwrap_or(value)),
        "priority" => priority(value),
        "sort" => sort_field(value),
        "due_before" | "due_after" => date(value),
        _ => Cow::Borrowed(value),
    }
}

/// The canonical status filter of `value`: any case; `active` is pending, `done` and
/// `complete` completed.
pub fn status(value: &str) -> Option<&'static str> {
    match value.trim().to_ascii_lowercase().as_str() {
        "all" => Some("all"),
        "pending" | "active" => Some("pending"),
        "completed" | "done" | "complete" => Some("completed"),
        _ => None,
    }
}

/// A priority in any case, `urgent` and `critical` meaning `high`.
pub fn priority(value: &str) -> Cow<'_, str> {
    let lower = value.trim().to_ascii_lowercase();
    match lower.as_str() {
        "urgent" | "critical" => Cow::Borrowed("high"),
        "low" | "medium" | "high" if lower != value => Cow::Owned(lower),
        _ => Cow::Borrowed(value),
    }
}

/// A sort field in camelCase (`createdAt`, `updatedAt`, `dueDate`).
fn sort_field(value: &str) -> Cow<'_, str> {
    match value {
        "createdAt" => Cow::Borrowed("created_at"),
        "updatedAt" => Cow::Borrowed("updated_at"),
        "dueDate" => Cow::Borrowed("due_date"),
        _ => Cow::Borrowed(value),
    }
}

/// A date alone (`2026-12-01`: midnight UTC) or a date and time without an offset
/// (`2026-12-01T17:00`, UTC) as an RFC 3339 timestamp; anything else as it is.
pub fn date(value: &str) -> Cow<'_, str> {
    let bytes = value.as_bytes();
    let digits = |range: std::ops::Range<usize>| {
        bytes
            .get(range)
            .is_some_and(|part| part.iter().all(u8::is_ascii_digit))
    };
    let is_date = bytes.len() >= 10
        && digits(0..4)
        && bytes[4] == b'-'
        && digits(5..7)
        && bytes[7] == b'-'
        && digits(8..10);
    if !is_date {
        return Cow::Borrowed(value);
    }
    if bytes.len() == 10 {
        return Cow::Owned(format!("{value}T00:00:00Z"));
    }
    // `THH:MM`, then optionally `:SS` and a fraction, and no offset.
    let time = bytes.len() >= 16
        && matches!(bytes[10], b'T' | b't')
        && digits(11..13)
        && bytes[13] == b':'
        && digits(14..16);
    if !time {
        return Cow::Borrowed(value);
    }
    match &bytes[16..] {
        [] => Cow::Owned(format!("{value}:00Z")),
        [b':', rest @ ..] => {
            let fraction_ok = match rest {
                [a, b] => a.is_ascii_digit() && b.is_ascii_digit(),
                [a, b, b'.', fraction @ ..] => {
                    a.is_ascii_digit()
                        && b.is_ascii_digit()
                        && !fraction.is_empty()
                        && fraction.iter().all(u8::is_ascii_digit)
                }
                _ => false,
            };
            if fraction_ok {
                Cow::Owned(format!("{value}Z"))
            } else {
                Cow::Borrowed(value)
            }
        }
        _ => Cow::Borrowed(value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapped(method: Method, path: &str) -> Option<(Method, String, Option<Implied>)> {
        route(method, path).map(|m| (m.method, m.path, m.implied))
    }

    #[test]
    fn route_aliases_map_onto_the_canonical_routes() {
        use Method::*;
        assert_eq!(mapped(Get, "/api/alice/tasks"), None);
        assert_eq!(mapped(Get, "/api/tasks/7"), None);
        assert_eq!(
            mapped(Get, "/api/v1/alice/tasks"),
            Some((Get, "/api/alice/tasks".into(), None))
        );
        assert_eq!(
            mapped(Get, "/api/v1/todos"),
            Some((Get, "/api/tasks".into(), None))
        );
        assert_eq!(
            mapped(Delete, "/api/alice/todos/3"),
            Some((Delete, "/api/alice/tasks/3".into(), None))
        );
        assert_eq!(
            mapped(Get, "/api/tasks/stats"),
            Some((Get, "/api/stats".into(), None))
        );
        assert_eq!(
            mapped(Get, "/api/v1/alice/todos/stats"),
            Some((Get, "/api/alice/stats".into(), None))
        );
        for action in ["toggle", "toggle-status", "toggle-complete"] {
            assert_eq!(
                mapped(Patch, &format!("/api/alice/tasks/3/{action}")),
                Some((
                    Patch,
                    "/api/alice/tasks/3/complete".into(),
                    Some(Implied::Toggle)
                ))
            );
        }
        assert_eq!(
            mapped(Post, "/api/todos/3/complete"),
            Some((
                Patch,
                "/api/tasks/3/complete".into(),
                Some(Implied::Set(true))
            ))
        );
        assert_eq!(
            mapped(Post, "/api/u/tasks/3/uncomplete"),
            Some((
                Patch,
                "/api/u/tasks/3/complete".into(),
                Some(Implied::Set(false))
            ))
        );
        assert_eq!(
            mapped(Patch, "/api/u/tasks/3/status"),
            Some((
                Patch,
                "/api/u/tasks/3/complete".into(),
                Some(Implied::FromStatus)
            ))
        );
        assert_eq!(mapped(Get, "/api/todos/tasks"), None, "a user named todos");
        assert_eq!(
            mapped(Get, "/api/todos/todos/4"),
            Some((Get, "/api/todos/tasks/4".into(), None))
        );
        // Not an alias: left for the canonical routes to answer.
        assert_eq!(mapped(Get, "/api/u/tasks/3/toggle"), None);
        assert_eq!(mapped(Get, "/health"), None);
        assert_eq!(mapped(Get, "/api/v1"), None);
    }

    fn query(pairs: &[(&str, &str)]) -> Result<Query, ApiError> {
        let pairs: Vec<_> = pairs
            .iter()
            .map(|(n, v)| (Cow::Borrowed(*n), Cow::Borrowed(*v)))
            .collect();
        list_query(&pairs)
    }

    fn pairs(pairs: &[(&str, &str)]) -> Option<Vec<(String, String)>> {
        Some(
            pairs
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect(),
        )
    }

    #[test]
    fn list_aliases_and_values_map_onto_the_canonical_ones() {
        assert_eq!(
            query(&[("q", "milk"), ("limit", "5")])
                .map(|q| q.pairs)
                .ok()
                .flatten(),
            None
        );
        assert_eq!(
            query(&[
                ("search", "milk"),
                ("sort_by", "createdAt"),
                ("sortOrder", "asc")
            ])
            .map(|q| q.pairs)
            .ok()
            .flatten(),
            pairs(&[("q", "milk"), ("sort", "created_at"), ("order", "asc")])
        );
        assert_eq!(
            query(&[("sort", "-dueDate")])
                .map(|q| q.pairs)
                .ok()
                .flatten(),
            pairs(&[("sort", "due_date"), ("order", "desc")])
        );
        assert_eq!(
            query(&[("sortBy", "priority:asc")])
                .map(|q| q.pairs)
                .ok()
                .flatten(),
            pairs(&[("sort", "priority"), ("order", "asc")])
        );
        assert_eq!(
            query(&[
                ("status_filter", "DONE"),
                ("priority", "Urgent"),
                ("priority", "low")
            ])
            .map(|q| q.pairs)
            .ok()
            .flatten(),
            pairs(&[
                ("status", "completed"),
                ("priority", "high"),
                ("priority", "low")
            ])
        );
        assert_eq!(
            query(&[("page", "3"), ("limit", "10")])
                .map(|q| q.pairs)
                .ok()
                .flatten(),
            pairs(&[("limit", "10"), ("offset", "20")])
        );
        assert_eq!(
            query(&[("due_before", "2026-12-01")])
                .map(|q| q.pairs)
                .ok()
                .flatten(),
            pairs(&[("due_before", "2026-12-01T00:00:00Z")])
        );
        // An alias that agrees with its canonical name is dropped; disagreeing is 422.
        assert_eq!(
            query(&[("q", "a"), ("search", "a")])
                .map(|q| q.pairs)
                .ok()
                .flatten(),
            pairs(&[("q", "a")])
        );
        let answer = query(&[("skip", "5"), ("offset", "6")])
            .err()
            .map(|e| e.public().status_and_json());
        let body: Option<serde_json::Value> = answer
            .as_ref()
            .and_then(|(_, body)| serde_json::from_str(body).ok());
        assert_eq!(answer.map(|(status, _)| status), Some(422));
        assert!(body.is_some_and(
            |b| b["field_errors"]["skip"].is_array() && b["field_errors"]["offset"].is_array()
        ));
        assert!(query(&[("sort", "-title"), ("order", "asc")]).is_err());
        assert!(query(&[("page", "0")]).is_err());
        assert_eq!(
            query(&[("colour", "red"), ("access_token", "t")])
                .map(|q| q.unknown)
                .ok(),
            Some(vec!["colour".to_owned()])
        );
    }

    #[test]
    fn dates_without_an_offset_are_utc() {
        assert_eq!(date("2026-12-01"), "2026-12-01T00:00:00Z");
        assert_eq!(date("2026-12-01T17:00"), "2026-12-01T17:00:00Z");
        assert_eq!(date("2026-12-01T17:00:30"), "2026-12-01T17:00:30Z");
        assert_eq!(date("2026-12-01T17:00:30.25"), "2026-12-01T17:00:30.25Z");
        assert_eq!(
            date("2026-12-01T17:00:00+02:00"),
            "2026-12-01T17:00:00+02:00"
        );
        assert_eq!(date("2026-12-01T17:00:00Z"), "2026-12-01T17:00:00Z");
        assert_eq!(date("tomorrow"), "tomorrow");
    }
}

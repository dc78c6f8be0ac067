//! The other names and formats of a task body's fields, mapped onto the canonical ones
//! before the task routes read the body.

use serde_json::{Map, Value};

use super::names::{self, Implied};
use crate::error::{ApiError, FieldErrorsBuilder};

/// Other names of the completion field (a boolean).
const COMPLETED: [&str; 2] = ["is_completed", "completion_status"];
/// Other names of the due date field.
/// (`due_at` is the core's own other name, compared there by instant.)
const DUE_DATE: [&str; 4] = [
    "dueDate",
    "due_datetime",
    "deadline",
    "target_completion_date",
];

/// `body` with the other names of its fields under the canonical ones and their values in
/// the canonical formats, and what the route alias implied (`implied`) applied. When two
/// names of one field disagree: 422 naming both.
pub fn task_body(
    body: Option<Map<String, Value>>,
    implied: Option<Implied>,
) -> Result<Option<Map<String, Value>>, ApiError> {
    match implied {
        Some(Implied::Toggle) => return Ok(None),
        Some(Implied::Set(value)) => {
            let mut set = Map::new();
            set.insert("completed".to_owned(), Value::Bool(value));
            return Ok(Some(set));
        }
        Some(Implied::FromStatus) => return from_status(body.as_ref()).map(Some),
        None => {}
    }
    let Some(mut body) = body else {
        return Ok(None);
    };
    let mut errors = FieldErrorsBuilder::default();
    // `completion_status` is the completion only when it is a boolean: other frontends
    // send a word there, which means something else.
    let completion: Vec<&str> = COMPLETED
        .into_iter()
        .filter(|name| name == &"is_completed" || body.get(*name).is_some_and(Value::is_boolean))
        .collect();
    merge(&mut body, "completed", &completion, &mut errors);
    merge(&mut body, "due_date", &DUE_DATE, &mut errors);
    errors.finish()?;
    for (field, canonical) in [
        (
            "due_date",
            names::date as fn(&str) -> std::borrow::Cow<'_, str>,
        ),
        // `due_at` is the core's own other name; its value takes the same formats.
        ("due_at", names::date),
        ("priority", names::priority),
    ] {
        if let Some(Value::String(sent)) = body.get(field) {
            let value = canonical(sent);
            if value != sent.as_str() {
                let value = value.into_owned();
                body.insert(field.to_owned(), Value::String(value));
            }
        }
    }
    Ok(Some(body))
}

/// Moves the fields of `body` named in `aliases` under `canonical`; two names with
/// different values are reported, naming both.
fn merge(
    body: &mut Map<String, Value>,
    canonical: &str,
    aliases: &[&str],
    errors: &mut FieldErrorsBuilder,
) {
    let mut found: Vec<(&str, Value)> = Vec::new();
    if let Some(value) = body.get(canonical) {
        found.push((canonical, value.clone()));
    }
    for alias in aliases {
        if let Some(value) = body.remove(*alias) {
            found.push((alias, value));
        }
    }
    let Some((first_name, first)) = found.first().cloned() else {
        return;
    };
    // Two texts of one instant agree.
    let normal = |value: &Value| match value {
        Value::String(text) => {
            let text = names::date(text);
            match crate::time::parse_timestamp(&text) {
                Some(at) => Value::String(at.to_rfc3339()),
                None => Value::String(text.into_owned()),
            }
        }
        other => other.clone(),
    };
    for (name, value) in &found[1..] {
        if normal(value) != normal(&first) {
            let message = format!("{first_name} and {name} disagree; give one of them");
            errors.add(first_name, message.clone());
            errors.add(name, message);
        }
    }
    body.insert(canonical.to_owned(), first);
}

/// The body of `PATCH …/status`: `{"status": "completed"|"pending"}` (or the status
/// filter's other words) as the completion to set.
fn from_status(body: Option<&Map<String, Value>>) -> Result<Map<String, Value>, ApiError> {
    let completed = match body.and_then(|body| body.get("status")) {
        Some(Value::String(word)) => match names::status(word) {
            Some("completed") => true,
            Some("pending") => false,
            _ => {
                return Err(ApiError::field(
                    "status",
                    "must be completed or pending (or done, complete, active)",
                ))
            }
        },
        _ => {
            return Err(ApiError::field(
                "status",
                "is required: completed or pending",
            ))
        }
    };
    let mut set = Map::new();
    set.insert("completed".to_owned(), Value::Bool(completed));
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The mapped body (`Some(None)`: no body), `None` for a refusal.
    fn mapped(body: Value) -> Option<Option<Value>> {
        let Value::Object(body) = body else {
            return None;
        };
        task_body(Some(body), None)
            .ok()
            .map(|b| b.map(Value::Object))
    }

    #[test]
    fn other_field_names_and_formats_map_onto_the_canonical_ones() {
        assert_eq!(
            mapped(json!({"title": "t", "is_completed": true})),
            Some(Some(json!({"title": "t", "completed": true})))
        );
        assert_eq!(
            mapped(json!({"completion_status": false})),
            Some(Some(json!({"completed": false})))
        );
        // A word there means something else: left alone (and so ignored).
        assert_eq!(
            mapped(json!({"completion_status": "in progress"})),
            Some(Some(json!({"completion_status": "in progress"})))
        );
        for name in DUE_DATE {
            assert_eq!(
                mapped(json!({ name: "2026-12-01" })),
                Some(Some(json!({"due_date": "2026-12-01T00:00:00Z"})))
            );
        }
        assert_eq!(
            mapped(json!({"due_date": "2026-12-01T17:00", "priority": "URGENT"})),
            Some(Some(
                json!({"due_date": "2026-12-01T17:00:00Z", "priority": "high"})
            ))
        );
        assert_eq!(
            mapped(json!({"completed": true, "is_completed": true})),
            Some(Some(json!({"completed": true})))
        );
        assert_eq!(
            mapped(json!({"completed": true, "is_completed": false})),
            None
        );
        assert_eq!(
            mapped(json!({"dueDate": "2026-12-01", "deadline": "2026-12-02"})),
            None
        );
        assert_eq!(
            mapped(json!({"dueDate": "2026-12-01T02:00:00+02:00", "due_date": "2026-12-01"})),
            Some(Some(json!({"due_date": "2026-12-01T00:00:00Z"})))
        );
    }

    #[test]
    fn route_aliases_imply_their_bodies() {
        let sent = Some(Map::from_iter([("completed".to_owned(), json!(true))]));
        assert_eq!(task_body(sent, Some(Implied::Toggle)).ok(), Some(None));
        assert_eq!(
            task_body(None, Some(Implied::Set(false))).ok(),
            Some(Some(Map::from_iter([(
                "completed".to_owned(),
                json!(false)
            )])))
        );
        let status = |word: &str| {
            task_body(
                Some(Map::from_iter([("status".to_owned(), json!(word))])),
                Some(Implied::FromStatus),
            )
        };
        let completed = |word: &str| status(word).ok().flatten().map(|b| b["completed"].clone());
        assert_eq!(completed("done"), Some(json!(true)));
        assert_eq!(completed("Pending"), Some(json!(false)));
        assert!(status("later").is_err());
        assert!(task_body(None, Some(Implied::FromStatus)).is_err());
    }
}

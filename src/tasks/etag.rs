//! Entity tags and the conditional requests built on them (RFC 9110 §8.8.3, §13).
//!
//! A task's tag is `"<id>-<version>"`: `version` moves on every change in the same
//! statement as the change, so the tag differs after every update, however close in time.
//! `If-Match` is handed to the database as a list of versions and checked in the `WHERE`
//! clause of the write itself, so two writers holding the same tag cannot both win.

use rocket::http::Header;
use rocket::request::{FromRequest, Outcome, Request};
use rocket::response::{self, Responder, Response};
use rocket::serde::json::Json;

use super::model::{Task, TaskId};

/// The strong entity tag of a task in its current state.
pub fn etag(task: &Task) -> String {
    format!("\"{}-{}\"", task.id, task.version)
}

/// One entity tag of a conditional header.
#[derive(Debug, Clone, PartialEq, Eq)]
struct EntityTag {
    weak: bool,
    opaque: String,
}

/// The parsed value of `If-Match` or `If-None-Match`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum TagList {
    /// `*`: any current representation.
    Any,
    /// A list of tags; malformed members are dropped, so they match nothing.
    Tags(Vec<EntityTag>),
}

impl TagList {
    fn parse(value: &str) -> Self {
        if value.trim() == "*" {
            return Self::Any;
        }
        let mut tags = Vec::new();
        let mut rest = value;
        loop {
            rest = rest.trim_start_matches(|c: char| c == ',' || c.is_ascii_whitespace());
            if rest.is_empty() {
                break;
            }
            let weak = rest.starts_with("W/");
            if weak {
                rest = &rest[2..];
            }
            let Some(quoted) = rest.strip_prefix('"') else {
                break;
            };
            let Some(end) = quoted.find('"') else {
                break;
            };
            tags.push(EntityTag {
                weak,
                opaque: quoted[..end].to_owned(),
            });
            rest = &quoted[end + 1..];
        }
        Self::Tags(tags)
    }

    fn from_request(request: &Request<'_>, name: &str) -> Option<Self> {
        let values: Vec<&str> = request.headers().get(name).collect();
        (!values.is_empty()).then(|| Self::parse(&values.join(",")))
    }
}

/// The versions of task `id` that a list of tags names; strong tags only.
fn versions(tags: &[EntityTag], id: i64, strong_only: bool) -> impl Iterator<Item = i64> + '_ {
    let prefix = format!("{id}-");
    tags.iter()
        .filter(move |tag| !(strong_only && tag.weak))
        .filter_map(move |tag| tag.opaque.strip_prefix(&prefix)?.parse().ok())
}

/// The `If-Match` parameter of every conditional write, for the OpenAPI description.
/// Documentation only: the routes read the header through [`IfMatch`].
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
pub struct IfMatchHeader {
    /// Write only if the task's `ETag` is one of these (`*`: if it exists); otherwise 412
    /// `precondition_failed` and nothing is written.
    #[param(rename = "If-Match")]
    pub if_match: Option<String>,
}

/// The condition a write is made under: what `If-Match` asks, for one task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Precondition {
    /// No `If-Match`, or `If-Match: *`: the write applies to the task as it is.
    Any,
    /// Only if the task's version is one of these; an empty list matches nothing (the
    /// header named only other tasks' or malformed tags).
    Versions(Vec<i64>),
}

/// The `If-Match` header of a write, if any.
#[derive(Debug, Clone, Default)]
pub struct IfMatch(Option<TagList>);

impl IfMatch {
    /// The condition this header sets for a write to task `id` (strong comparison).
    pub fn precondition(&self, id: TaskId) -> Precondition {
        match &self.0 {
            None | Some(TagList::Any) => Precondition::Any,
            Some(TagList::Tags(tags)) => {
                Precondition::Versions(versions(tags, id.get(), true).collect())
            }
        }
    }

    /// Whether `task` in its current state satisfies the header (strong comparison).
    pub fn matches(&self, task: &Task) -> bool {
        match &self.0 {
            None | Some(TagList::Any) => true,
            Some(TagList::Tags(tags)) => versions(tags, task.id, true).any(|v| v == task.version),
        }
    }
}

#[rocket::async_trait]
impl<'r> FromRequest<'r> for IfMatch {
    type Error = std::convert::Infallible;

    async fn from_request(request: &'r Request<'_>) -> Outcome<Self, Self::Error> {
        Outcome::Success(Self(TagList::from_request(request, "If-Match")))
    }
}

/// The `If-None-Match` header of a read, if any.
#[derive(Debug, Clone, Default)]
pub struct IfNoneMatch(Option<TagList>);

impl IfNoneMatch {
    /// Whether the client already has `task` in its current state (weak comparison).
    pub fn has(&self, task: &Task) -> bool {
        match &self.0 {
            None => false,
            Some(TagList::Any) => true,
            Some(TagList::Tags(tags)) => versions(tags, task.id, false).any(|v| v == task.version),
        }
    }
}

#[rocket::async_trait]
impl<'r> FromRequest<'r> for IfNoneMatch {
    type Error = std::convert::Infallible;

    async fn from_request(request: &'r Request<'_>) -> Outcome<Self, Self::Error> {
        Outcome::Success(Self(TagList::from_request(request, "If-None-Match")))
    }
}

/// A task answer with its `ETag`, or a bodiless 304 when the client's copy is current.
#[derive(Debug)]
pub enum Tagged {
    /// 200 (or the status of a wrapping responder) with the task as JSON.
    Task(Task),
    /// 304 Not Modified.
    NotModified(String),
}

impl<'r> Responder<'r, 'static> for Tagged {
    fn respond_to(self, request: &'r Request<'_>) -> response::Result<'static> {
        match self {
            Self::Task(task) => {
                let tag = etag(&task);
                Response::build_from(Json(task).respond_to(request)?)
                    .header(Header::new("ETag", tag))
                    .ok()
            }
            Self::NotModified(tag) => Response::build()
                .status(rocket::http::Status::NotModified)
                .header(Header::new("ETag", tag))
                .ok(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tasks::model::InvalidTaskId;

    fn tags(list: &[(bool, &str)]) -> TagList {
        TagList::Tags(
            list.iter()
                .map(|(weak, opaque)| EntityTag {
                    weak: *weak,
                    opaque: (*opaque).to_owned(),
                })
                .collect(),
        )
    }

    #[test]
    fn tag_lists_parse_like_rfc_9110() {
        assert_eq!(TagList::parse(" * "), TagList::Any);
        assert_eq!(
            TagList::parse(r#""7-2", W/"7-3" ,"a,b""#),
            tags(&[(false, "7-2"), (true, "7-3"), (false, "a,b")])
        );
        assert_eq!(
            TagList::parse("7-2"),
            tags(&[]),
            "unquoted tags match nothing"
        );
        assert_eq!(
            TagList::parse(r#""7-2", "unterminated"#),
            tags(&[(false, "7-2")])
        );
    }

    proptest::proptest! {
        #[test]
        fn any_header_parses_without_panicking(header in "\\PC{0,60}") {
            let _ = TagList::parse(&header);
        }

        #[test]
        fn a_task_s_own_tag_always_matches(id in 1..i64::MAX, version in 1..i64::MAX, noise in "[a-z0-9 ]{0,8}") {
            let task_id = <TaskId as rocket::request::FromParam>::from_param(&id.to_string()).map_err(|_| proptest::test_runner::TestCaseError::fail("id"))?;
            let header = format!("\"{noise}\", \"{id}-{version}\"");
            let precondition = IfMatch(Some(TagList::parse(&header))).precondition(task_id);
            proptest::prop_assert_eq!(precondition, Precondition::Versions(vec![version]));
        }
    }

    #[test]
    fn if_match_names_only_strong_versions_of_the_same_task() -> Result<(), InvalidTaskId> {
        let id = <TaskId as rocket::request::FromParam>::from_param("7")?;
        let header = IfMatch(Some(TagList::parse(r#""7-2", W/"7-3", "8-4", "7-x""#)));
        assert_eq!(header.precondition(id), Precondition::Versions(vec![2]));
        assert_eq!(
            IfMatch(Some(TagList::Any)).precondition(id),
            Precondition::Any
        );
        assert_eq!(IfMatch(None).precondition(id), Precondition::Any);
        assert_eq!(
            IfMatch(Some(TagList::parse("junk"))).precondition(id),
            Precondition::Versions(Vec::new()),
            "a header naming no version of this task matches nothing"
        );
        Ok(())
    }
}

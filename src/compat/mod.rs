//! The names that frontends written for other backends use for the same things: routes
//! (`/api/v1/…`, `todos`, `…/toggle`, `POST …/complete`, `…/tasks/stats`), list parameters
//! (`search`, `sort_by`, `skip`, `page`, …) and their values, and task body fields
//! (`is_completed`, `dueDate`, dates without an offset, `URGENT`). A request fairing maps
//! them onto the canonical API before routing, and a body rewrite before the task routes
//! read a body, so the core keeps one name for each thing and never imports this module.
//! The table of every name is in `docs/api.md` ("Compatibility names").
//!
//! Invariant: a name is accepted only where it means the same thing in every frontend
//! that uses it; two names for one thing that disagree are a 422 naming both; nothing the
//! canonical API accepts changes meaning.

pub mod body;
pub mod names;

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::Mutex;

use rocket::fairing::{AdHoc, Fairing, Info, Kind};
use rocket::http::uri::Origin;
use rocket::{Data, Request};

use crate::body::BodyRewrite;
use crate::error::answer_early;
use names::Implied;

/// What the fairing learnt of a request, for the body rewrite.
#[derive(Debug, Clone, Copy, Default)]
struct Seen {
    /// The (canonical) route takes a task body.
    task_body: bool,
    /// What a route alias implied for the body.
    implied: Option<Implied>,
}

/// The names already warned about, so each is logged once; bounded, so that a client
/// sending ever new names cannot grow it.
static WARNED: Mutex<Option<HashSet<String>>> = Mutex::new(None);
const WARNED_MAX: usize = 256;

fn warn_once(name: &str) {
    let Ok(mut warned) = WARNED.lock() else {
        return;
    };
    let warned = warned.get_or_insert_with(HashSet::new);
    if warned.len() >= WARNED_MAX || !warned.insert(name.to_owned()) {
        return;
    }
    let accepted: Vec<&str> = names::CANONICAL
        .iter()
        .copied()
        .chain(names::ALIASES.iter().map(|(alias, _)| *alias))
        .collect();
    tracing::warn!(
        parameter = %name,
        accepted = %accepted.join(", "),
        "a task list was asked with a parameter it does not know; it is ignored"
    );
}

/// Maps other names onto the canonical routes and list parameters.
pub struct Names;

#[rocket::async_trait]
impl Fairing for Names {
    fn info(&self) -> Info {
        Info {
            name: "Compatibility names",
            kind: Kind::Request,
        }
    }

    async fn on_request(&self, request: &mut Request<'_>, _: &mut Data<'_>) {
        if !request.uri().path().as_str().starts_with("/api/") {
            return;
        }
        let mapped = names::route(request.method(), request.uri().path().as_str());
        let (method, path, implied) = match mapped {
            Some(mapped) => (mapped.method, Cow::Owned(mapped.path), mapped.implied),
            None => (
                request.method(),
                Cow::Borrowed(request.uri().path().as_str()),
                None,
            ),
        };
        let task_body = names::takes_task_body(&path);
        let mut query: Option<String> = None;
        let mut refusal = None;
        if method == rocket::http::Method::Get && names::is_list(&path) {
            if let Some(raw) = request.uri().query() {
                let pairs: Vec<(Cow<'_, str>, Cow<'_, str>)> = raw
                    .segments()
                    .map(|(name, value)| (Cow::Borrowed(name), Cow::Borrowed(value)))
                    .collect();
                match names::list_query(&pairs) {
                    Ok(canonical) => {
                        for name in &canonical.unknown {
                            warn_once(name);
                        }
                        query = canonical.pairs.map(|pairs| {
                            url::form_urlencoded::Serializer::new(String::new())
                                .extend_pairs(pairs)
                                .finish()
                        });
                    }
                    Err(error) => refusal = Some(error),
                }
            }
        }
        if let Some(refusal) = refusal {
            drop(path);
            answer_early(request, refusal);
            return;
        }
        let rewrite = match (&path, query) {
            (Cow::Borrowed(_), None) => None,
            (path, query) => {
                let mut target = path.to_string();
                match query {
                    Some(query) => {
                        target.push('?');
                        target.push_str(&query);
                    }
                    None => {
                        if let Some(sent) = request.uri().query() {
                            target.push('?');
                            target.push_str(sent.as_str());
                        }
                    }
                }
                Some(target)
            }
        };
        if let Some(target) = rewrite {
            if let Ok(origin) = Origin::parse_owned(target) {
                request.set_method(method);
                request.set_uri(origin);
            }
        }
        if task_body {
            request.local_cache(|| Seen { task_body, implied });
        }
    }
}

/// The body rewrite of the task routes (see [`body::task_body`]).
fn rewrite_task_body(
    request: &Request<'_>,
    body: Option<serde_json::Map<String, serde_json::Value>>,
) -> Result<Option<serde_json::Map<String, serde_json::Value>>, crate::error::ApiError> {
    let seen = request.local_cache(Seen::default);
    if !seen.task_body {
        return Ok(body);
    }
    body::task_body(body, seen.implied)
}

/// The compatibility module: the fairing and the task body rewrite.
pub fn stage() -> AdHoc {
    AdHoc::on_ignite("Compatibility names", |rocket| async {
        rocket
            .attach(Names)
            .manage(BodyRewrite(Box::new(rewrite_task_body)))
    })
}

//! Token-scoped routes: `/api/tasks…`, `/api/stats`, `/api/dashboard/…`, `/api/events` and
//! `/api/changes`
//! act for the token's user, for frontends written for a backend that takes the user from
//! the token alone. They are not a second set of handlers: before routing, such a request
//! is rewritten into its `/api/{user_id}/…` twin, naming the user its token claims, and is
//! then served (and verified, 401 → 403 → …) exactly like the twin. The claim is read
//! unverified only to pick the path; `AuthedUser` verifies the token as always, so a
//! forged claim gets the 401 it would get anywhere.
//!
//! The words `tasks`, `stats`, `events`, `dashboard` and `changes` right after `/api/` are therefore
//! never read as a user id.

use rocket::fairing::{Fairing, Info, Kind};
use rocket::http::uri::Origin;
use rocket::http::RawStr;
use rocket::{Data, Request};

/// The first path segments after `/api/` that make a route token-scoped.
const SCOPED: [&str; 5] = ["tasks", "stats", "events", "dashboard", "changes"];

/// Stands for the user when the request carries no readable token: the twin then answers
/// 401 like every route without a valid token.
const NO_USER: &str = "-";

/// Marks a request that came in on a token-scoped route.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokenScoped(pub bool);

#[derive(serde::Deserialize)]
struct Subject {
    sub: Option<String>,
}

/// The `sub` a token claims, unverified; `None` for anything that is not a JWT with one.
fn claimed_subject(token: &str) -> Option<String> {
    jsonwebtoken::dangerous::insecure_decode_claims::<Subject>(token)
        .ok()?
        .sub
        .filter(|sub| !sub.is_empty())
}

fn credential_of<'r>(request: &'r Request<'_>) -> Option<super::Credential<'r>> {
    let access_token = request
        .query_value::<&'r str>("access_token")
        .and_then(Result::ok);
    super::credential(request, access_token).ok()
}

/// A session token's (or cookie's) user, verified (a session token claims nothing by
/// itself). The verdict is kept for the guard, which then does not ask the store again.
async fn session_user(request: &Request<'_>, credential: super::Credential<'_>) -> Option<String> {
    let verifier = request.rocket().state::<super::Verifier>()?;
    verifier.sessions()?;
    let verdict = super::verify(verifier, credential).await;
    let user = verdict.as_ref().ok().cloned();
    request.local_cache(|| super::Verdict(Some(verdict)));
    user
}

/// The `/api/{user}/…` twin of a token-scoped path, if `path` is one.
fn twin(path: &str, user: &str) -> Option<String> {
    let rest = path.strip_prefix("/api/")?;
    let first = rest.split('/').next()?;
    if !SCOPED.contains(&first) {
        return None;
    }
    // `/api/dashboard/stats` is the same as `/api/stats`.
    let rest = if rest == "dashboard/stats" {
        "stats"
    } else {
        rest
    };
    Some(format!(
        "/api/{}/{rest}",
        RawStr::new(user).percent_encode()
    ))
}

/// Rewrites token-scoped requests into their `/api/{user_id}/…` twins.
pub struct Rewrite;

#[rocket::async_trait]
impl Fairing for Rewrite {
    fn info(&self) -> Info {
        Info {
            name: "Token-scoped routes",
            kind: Kind::Request,
        }
    }

    async fn on_request(&self, request: &mut Request<'_>, _: &mut Data<'_>) {
        // Decided by the path alone first: every other request pays nothing more.
        if twin(request.uri().path().as_str(), NO_USER).is_none() {
            return;
        }
        let user = match credential_of(request) {
            Some(credential)
                if credential.source == super::Source::Header
                    && super::is_jwt(credential.token) =>
            {
                claimed_subject(credential.token)
            }
            Some(credential) => session_user(request, credential).await,
            None => None,
        }
        .unwrap_or_else(|| NO_USER.to_owned());
        let Some(mut target) = twin(request.uri().path().as_str(), &user) else {
            return;
        };
        if let Some(query) = request.uri().query() {
            target.push('?');
            target.push_str(query.as_str());
        }
        if let Ok(origin) = Origin::parse_owned(target) {
            request.local_cache(|| TokenScoped(true));
            request.set_uri(origin);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scoped_paths_have_a_twin_and_others_none() {
        assert_eq!(
            twin("/api/tasks", "alice").as_deref(),
            Some("/api/alice/tasks")
        );
        assert_eq!(
            twin("/api/tasks/7/complete", "a b").as_deref(),
            Some("/api/a%20b/tasks/7/complete")
        );
        assert_eq!(
            twin("/api/dashboard/stats", "u").as_deref(),
            Some("/api/u/stats")
        );
        assert_eq!(
            twin("/api/dashboard/overview", "u").as_deref(),
            Some("/api/u/dashboard/overview")
        );
        assert_eq!(twin("/api/events", "u").as_deref(), Some("/api/u/events"));
        assert_eq!(
            twin("/api/tasks", "tasks").as_deref(),
            Some("/api/tasks/tasks")
        );
        for other in [
            "/api/alice/tasks",
            "/api",
            "/api/",
            "/health",
            "/api/taskss",
        ] {
            assert_eq!(twin(other, "u"), None, "{other}");
        }
    }

    #[test]
    fn only_a_jwt_with_a_subject_names_a_user() {
        let token = crate::auth::mint_hs256("secret-secret-secret-secret-secret-1", "alice", 60);
        assert_eq!(
            token.ok().and_then(|t| claimed_subject(&t)).as_deref(),
            Some("alice")
        );
        for junk in ["", "abc", "a.b.c", "....", "eyJhbGciOiJub25lIn0.e30."] {
            assert_eq!(claimed_subject(junk), None, "{junk}");
        }
    }
}

//! Authentication and authorization: the [`Verifier`] built once at start and the
//! [`AuthedUser`] request guard.
//!
//! Invariant: an [`AuthedUser`] exists only for a request whose bearer token verified and
//! whose path `<user_id>` equals the token's `sub`. It has no public constructor, so a
//! function that takes one cannot be reached by an unverified request.

mod cookie;
mod jwks;
mod refusal;
mod scoped;
mod sessions;
mod verdicts;
mod verifier;

use rocket::fairing::AdHoc;
use rocket::request::{FromRequest, Outcome, Request};
use rocket::{Ignite, Rocket, Sentinel};

use crate::error::{fail_guard, ApiError};

pub use cookie::{credential, Cookies, Credential, Source};
pub use jwks::JwksStatus;
pub use refusal::{Refusal, TokenError};
pub use sessions::{SessionStoreStatus, Sessions};
pub use verifier::{is_jwt, mint_hs256, Verifier};

/// The verified user whose tasks this request may touch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthedUser {
    id: String,
    token_scoped: bool,
}

impl AuthedUser {
    /// The user id (the token's `sub`, equal to the path's `<user_id>`).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The path the request's family of routes starts with: `/api` for a token-scoped
    /// request, `/api/{user_id}` otherwise. `Location` and `Link` stay in that family.
    pub fn api_base(&self) -> String {
        if self.token_scoped {
            "/api".to_owned()
        } else {
            format!(
                "/api/{}",
                rocket::http::RawStr::new(&self.id).percent_encode()
            )
        }
    }
}

/// Extracts the token of an `Authorization: Bearer <token>` header (scheme case-insensitive).
pub fn bearer_token(header: Option<&str>) -> Result<&str, ApiError> {
    let header = header.ok_or(ApiError::AuthRequired(
        "Authentication required: send Authorization: Bearer <token>",
    ))?;
    let (scheme, token) = header.trim().split_once(' ').ok_or(ApiError::AuthRequired(
        "Authorization header must be: Bearer <token>",
    ))?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(ApiError::AuthRequired(
            "Authorization header must be: Bearer <token>",
        ));
    }
    Ok(token)
}

/// The matched route's path segment named `<name>`, found by name, not position, so the
/// guard keeps working when mount points or routes change.
fn path_param<'r>(request: &'r Request<'_>, name: &str) -> Option<&'r str> {
    let route = request.route()?;
    let index = route
        .uri
        .unmounted_origin
        .path()
        .segments()
        .position(|segment| {
            segment.strip_prefix('<').and_then(|s| s.strip_suffix('>')) == Some(name)
        })?;
    request.routed_segment(index)
}

/// A token's verdict, kept for the rest of the request: the token-scoped rewrite needs a
/// session token's user before routing, and the guard must not ask the store twice.
struct Verdict(Option<Result<String, Refusal>>);

async fn verify_once(
    request: &Request<'_>,
    verifier: &Verifier,
    credential: Credential<'_>,
) -> Result<String, Refusal> {
    if let Verdict(Some(verdict)) = request.local_cache(|| Verdict(None)) {
        return verdict.clone();
    }
    verify(verifier, credential).await
}

/// Verifies a credential: a header's token as a JWT or a session token; a cookie only in
/// Better Auth's signed form, as a session token.
async fn verify(verifier: &Verifier, credential: Credential<'_>) -> Result<String, Refusal> {
    match credential.source {
        Source::Header => verifier.verify(credential.token).await,
        Source::Cookie => {
            cookie::check_signed_form(credential.token)?;
            match verifier.sessions() {
                Some(sessions) => sessions.verify(credential.token).await,
                None => Err(TokenError::SessionsOff.into()),
            }
        }
    }
}

/// The Better Auth session a long-lived request (an event stream) was signed in with, to
/// be checked again while it lasts: a session signed out, revoked, expired or deleted with
/// its user then ends the stream, on every instance (within the session cache time).
pub struct SessionRecheck {
    sessions: std::sync::Arc<Sessions>,
    token: String,
}

impl SessionRecheck {
    /// Whether the session still stands for `user`. Only a refusal says no: a store that
    /// cannot be asked right now keeps the stream open.
    pub async fn still_valid(&self, user: &str) -> bool {
        match self.sessions.verify(&self.token).await {
            Ok(owner) => owner == user,
            Err(Refusal::Invalid(_)) => false,
            Err(_) => true,
        }
    }
}

/// What to check again later, when `credential` is a Better Auth session (a JWT needs
/// nothing: it is self-contained until its `exp`).
pub fn session_recheck(
    request: &Request<'_>,
    credential: Credential<'_>,
) -> Option<SessionRecheck> {
    if credential.source == Source::Header && is_jwt(credential.token) {
        return None;
    }
    let sessions = request.rocket().state::<Verifier>()?.shared_sessions()?;
    Some(SessionRecheck {
        sessions,
        token: credential.token.to_owned(),
    })
}

/// Checks the credential, the forgery rule (for a cookie) and the path owner; shared by
/// every way a token can arrive.
pub async fn authorize(
    request: &Request<'_>,
    credential: Result<Credential<'_>, ApiError>,
) -> Result<AuthedUser, ApiError> {
    let verifier = request
        .rocket()
        .state::<Verifier>()
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("auth::stage() is not attached")))?;
    let credential = credential?;
    let sub =
        verify_once(request, verifier, credential)
            .await
            .map_err(|refusal| match refusal {
                Refusal::Invalid(reason) => {
                    tracing::warn!(%reason, "token refused");
                    ApiError::InvalidToken
                }
                Refusal::KeysUnavailable { retry_after } => {
                    tracing::warn!("token not checked: no signing keys can be fetched");
                    ApiError::KeysUnavailable { retry_after }
                }
                Refusal::SessionsUnavailable => {
                    tracing::warn!("token not checked: the session store cannot be asked");
                    ApiError::SessionsUnavailable
                }
            })?;
    if credential.source == Source::Cookie
        && !request
            .rocket()
            .state::<Cookies>()
            .is_some_and(|cookies| cookies.allows(request))
    {
        tracing::warn!(
            origin = request.headers().get_one("Origin").unwrap_or("-"),
            "cookie-authenticated write refused: its origin is not allowed"
        );
        return Err(ApiError::OriginNotAllowed);
    }
    let path_user = path_param(request, "user_id").ok_or_else(|| {
        ApiError::Internal(anyhow::anyhow!(
            "AuthedUser used on a route without <user_id>"
        ))
    })?;
    request.local_cache(|| crate::telemetry::LoggedUser(Some(sub.clone())));
    crate::ratelimit::check(request, &sub)
        .map_err(|retry_after| ApiError::RateLimited { retry_after })?;
    if path_user != sub {
        tracing::warn!(token_user = %sub, path_user = %path_user, "path user is not the token's user");
        return Err(ApiError::Forbidden);
    }
    let token_scoped = request.local_cache(scoped::TokenScoped::default).0;
    Ok(AuthedUser {
        id: sub,
        token_scoped,
    })
}

#[rocket::async_trait]
impl<'r> FromRequest<'r> for AuthedUser {
    type Error = ApiError;

    async fn from_request(request: &'r Request<'_>) -> Outcome<Self, Self::Error> {
        match authorize(request, credential(request, None)).await {
            Ok(user) => Outcome::Success(user),
            Err(error) => fail_guard(request, error),
        }
    }
}

impl Sentinel for AuthedUser {
    fn abort(rocket: &Rocket<Ignite>) -> bool {
        rocket.state::<Verifier>().is_none()
    }
}

/// Looks for the session table once every module's start-up work ran (the accounts
/// module creates it): reported by /health/ready; a missing table is looked for again on
/// use, so Better Auth's migrations may also run after this start.
async fn find_session_table(rocket: Rocket<rocket::Build>) -> Rocket<rocket::Build> {
    if let Some(sessions) = rocket.state::<Verifier>().and_then(Verifier::sessions) {
        let detect = sessions.detect();
        if tokio::time::timeout(std::time::Duration::from_secs(5), detect)
            .await
            .is_err()
        {
            tracing::warn!("session table: no answer from the database within 5 s");
        }
    }
    rocket
}

/// The auth module: builds the verifier from the validated configuration.
pub fn stage() -> AdHoc {
    AdHoc::try_on_ignite("Authentication", |rocket| async {
        let Some(config) = crate::config::of(&rocket, "authentication") else {
            return Err(rocket);
        };
        let sessions = match &config.auth.sessions {
            None => None,
            Some(sessions) => {
                match Sessions::new(sessions, &config.database, config.auth.secret.as_ref()).await {
                    Ok(store) => Some(store),
                    Err(error) => {
                        tracing::error!(%error, "session tokens cannot be set up");
                        return Err(rocket);
                    }
                }
            }
        };
        match Verifier::new(&config.auth) {
            Ok(verifier) => {
                let verifier = match sessions {
                    Some(sessions) => verifier.with_sessions(sessions),
                    None => verifier,
                };
                if let Some(jwks) = &config.auth.jwks {
                    let plain = url::Url::parse(&jwks.url).is_ok_and(|url| {
                        url.scheme() == "http"
                            && !matches!(url.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"))
                    });
                    if plain {
                        tracing::warn!(url = %jwks.url, "signing keys are fetched over plain http; use https outside a private network");
                    }
                }
                tracing::info!(
                    hs256 = config.auth.secret.is_some(),
                    jwks = config.auth.jwks.as_ref().map(|j| j.url.as_str()),
                    sessions = config.auth.sessions.as_ref().map(|s| s.table.as_str()),
                    "token verification ready"
                );
                let cookies = config.auth.cookie_prefix.as_ref().map(|prefix| {
                    tracing::info!(prefix = %prefix, "Better Auth's session cookie accepted");
                    Cookies::new(prefix, config.allowed_origins.clone())
                });
                let rocket = match cookies {
                    Some(cookies) => rocket.manage(cookies),
                    None => rocket,
                };
                Ok(rocket
                    .manage(verifier)
                    .attach(scoped::Rewrite)
                    .attach(AdHoc::on_ignite("Session table", find_session_table)))
            }
            Err(error) => {
                tracing::error!(%error, "cannot build the JWKS client");
                Err(rocket)
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_scheme_is_case_insensitive_and_required() {
        assert_eq!(bearer_token(Some("Bearer abc")).ok(), Some("abc"));
        assert_eq!(bearer_token(Some("bearer abc")).ok(), Some("abc"));
        assert_eq!(bearer_token(Some("BEARER   abc ")).ok(), Some("abc"));
        for bad in [
            None,
            Some(""),
            Some("Bearer"),
            Some("Bearer "),
            Some("Basic abc"),
            Some("abc"),
        ] {
            assert!(
                matches!(bearer_token(bad), Err(ApiError::AuthRequired(_))),
                "{bad:?} should be refused"
            );
        }
    }
}

//! Better Auth's email-and-password routes under `/api/auth` (`/api/v1/auth` maps onto it), with
//! the original design's short names and the names frontends written for FastAPI
//! backends use. Each handler follows Better Auth's processing order: the address limit,
//! the body, the origin check, validation, then its own work.

use rocket::data::{Data, ToByteUnit as _};
use rocket::http::Status;
use rocket::request::{FromRequest, Outcome, Request};
use rocket::{Route, State};
use serde_json::{json, Map, Value};

use super::cookies::{self, is_https, Name};
use super::password::{js_length, Busy, MAX_LENGTH, MIN_LENGTH};
use super::reply::Reply;
use super::stamp::Stamp;
use super::store::{is_unique_violation, Session, User};
use super::{limits, Accounts};

/// Largest body read, as everywhere in the service.
const BODY_LIMIT: u64 = 64 * 1024;

/// What a handler needs of the request, read once.
pub struct Caller {
    origin: Option<String>,
    referer: Option<String>,
    sec_fetch_site: Option<String>,
    sec_fetch_mode: Option<String>,
    sec_fetch_dest: Option<String>,
    has_cookie: bool,
    secure: bool,
    own_origin: Option<String>,
    /// The session token the request carries, its signature checked.
    token: Option<String>,
    dont_remember: bool,
    content_type: Option<String>,
    address: String,
    user_agent: String,
}

#[rocket::async_trait]
impl<'r> FromRequest<'r> for Caller {
    type Error = std::convert::Infallible;

    async fn from_request(request: &'r Request<'_>) -> Outcome<Self, Self::Error> {
        let Some(accounts) = request.rocket().state::<Accounts>() else {
            return Outcome::Forward(Status::NotFound);
        };
        let headers = request.headers();
        let text = |name: &str| headers.get_one(name).map(str::to_owned);
        let secure = is_https(request);
        let own_origin = headers
            .get_one("Host")
            .map(|host| format!("{}://{host}", if secure { "https" } else { "http" }));
        let bearer = headers.get_one("Authorization").and_then(|value| {
            let (scheme, token) = value.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        });
        // As Better Auth's bearer plugin: a signed token is checked; a raw one stands as
        // it is. An invalid one is ignored, and the cookie decides.
        let from_bearer = bearer.and_then(|token| {
            if token.contains('.') {
                let decoded = percent_encoding::percent_decode_str(token)
                    .decode_utf8()
                    .ok()?;
                accounts.jar.verify(&decoded).map(str::to_owned)
            } else {
                Some(token.to_owned())
            }
        });
        let token = from_bearer.or_else(|| accounts.jar.read(request, Name::SessionToken));
        let dont_remember = accounts.jar.read(request, Name::DontRemember).is_some();
        Outcome::Success(Caller {
            origin: text("Origin"),
            referer: text("Referer"),
            sec_fetch_site: text("Sec-Fetch-Site"),
            sec_fetch_mode: text("Sec-Fetch-Mode"),
            sec_fetch_dest: text("Sec-Fetch-Dest"),
            has_cookie: headers.contains("Cookie"),
            secure,
            own_origin,
            token,
            dont_remember,
            content_type: request.content_type().map(|ct| ct.media_type().to_string()),
            address: limits::client_address(request, accounts.client_ip_header.as_deref()),
            user_agent: headers.get_one("User-Agent").unwrap_or_default().to_owned(),
        })
    }
}

// ---------------------------------------------------------------------------------------
// Bodies and validation.

/// zod's name for a JSON value's type.
fn kind(value: Option<&Value>) -> &'static str {
    match value {
        None => "undefined",
        Some(Value::Null) => "null",
        Some(Value::Bool(_)) => "boolean",
        Some(Value::Number(_)) => "number",
        Some(Value::String(_)) => "string",
        Some(Value::Array(_)) => "array",
        Some(Value::Object(_)) => "object",
    }
}

fn expected(field: &str, wanted: &str, got: Option<&Value>) -> Reply {
    Reply::validation(format!(
        "[body.{field}] Invalid input: expected {wanted}, received {}",
        kind(got)
    ))
}

/// A request body, as an object.
struct Body(Map<String, Value>);

impl Body {
    fn string(&self, field: &str) -> Result<String, Reply> {
        self.optional_string(field)?
            .ok_or_else(|| expected(field, "string", None))
    }

    fn optional_string(&self, field: &str) -> Result<Option<String>, Reply> {
        match self.0.get(field) {
            None => Ok(None),
            Some(Value::String(text)) if text.contains('\0') => Err(Reply::validation(format!(
                "[body.{field}] Invalid input: must not contain NUL"
            ))),
            Some(Value::String(text)) => Ok(Some(text.clone())),
            other => Err(expected(field, "string", other)),
        }
    }

    fn optional_bool(&self, field: &str) -> Result<Option<bool>, Reply> {
        match self.0.get(field) {
            None => Ok(None),
            Some(Value::Bool(value)) => Ok(Some(*value)),
            other => Err(expected(field, "boolean", other)),
        }
    }
}

/// Reads the body: JSON (or, where `form` allows, a urlencoded form), at most 64 KiB.
/// An empty body is `None`.
async fn read_body(data: Data<'_>, caller: &Caller, form: bool) -> Result<Option<Body>, Reply> {
    let bytes = data
        .open((BODY_LIMIT + 1).bytes())
        .into_bytes()
        .await
        .map_err(|_| {
            Reply::error(
                Status::BadRequest,
                "BAD_REQUEST",
                "The request body could not be read",
            )
        })?;
    if !bytes.is_complete() || bytes.len() as u64 > BODY_LIMIT {
        return Err(Reply::error(
            Status::PayloadTooLarge,
            "PAYLOAD_TOO_LARGE",
            "Request body is too large",
        ));
    }
    let bytes = bytes.into_inner();
    if bytes.is_empty() {
        return Ok(None);
    }
    let media = caller.content_type.as_deref().unwrap_or_default();
    if form && media == "application/x-www-form-urlencoded" {
        let mut map = Map::new();
        for (key, value) in url::form_urlencoded::parse(&bytes) {
            map.entry(key.into_owned())
                .or_insert_with(|| Value::String(value.into_owned()));
        }
        return Ok(Some(Body(map)));
    }
    if media != "application/json" {
        return Err(Reply::error(
            Status::UnsupportedMediaType,
            "UNSUPPORTED_MEDIA_TYPE",
            "Unsupported media type",
        ));
    }
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(map)) => Ok(Some(Body(map))),
        Ok(other) => Err(Reply::validation(format!(
            "[body] Invalid input: expected object, received {}",
            kind(Some(&other))
        ))),
        Err(_) => Err(Reply::error(
            Status::BadRequest,
            "INVALID_JSON",
            "Invalid JSON in request body",
        )),
    }
}

/// A body that must be there.
fn required(body: Option<Body>) -> Result<Body, Reply> {
    body.ok_or_else(|| {
        Reply::validation("[body] Invalid input: expected object, received undefined".to_owned())
    })
}

/// zod 4's `z.email()`:
/// `^(?:[A-Za-z0-9_'+\-]+\.)*[A-Za-z0-9_'+\-]*[A-Za-z0-9_+-]@(?:[A-Za-z0-9][A-Za-z0-9\-]*\.)+[A-Za-z]{2,}$`.
pub fn is_email(text: &str) -> bool {
    let Some((local, domain)) = text.split_once('@') else {
        return false;
    };
    let local_char = |c: char| c.is_ascii_alphanumeric() || "_'+-".contains(c);
    let segments: Vec<&str> = local.split('.').collect();
    let (last, leading) = match segments.split_last() {
        Some(split) => split,
        None => return false,
    };
    if leading
        .iter()
        .any(|s| s.is_empty() || !s.chars().all(local_char))
        || last.is_empty()
        || !last.chars().all(local_char)
        || last.ends_with('\'')
    {
        return false;
    }
    let labels: Vec<&str> = domain.split('.').collect();
    let Some((tld, rest)) = labels.split_last() else {
        return false;
    };
    !rest.is_empty()
        && rest.iter().all(|label| {
            label.starts_with(|c: char| c.is_ascii_alphanumeric())
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
        && tld.len() >= 2
        && tld.chars().all(|c| c.is_ascii_alphabetic())
}

// ---------------------------------------------------------------------------------------
// The origin check.

fn origin_of(url: &str) -> Option<String> {
    let url = url::Url::parse(url).ok()?;
    let origin = url.origin();
    origin.is_tuple().then(|| origin.ascii_serialization())
}

impl Accounts {
    fn trusts(&self, caller: &Caller, origin: &str) -> bool {
        self.trusted_origins.iter().any(|o| o == origin)
            || caller
                .own_origin
                .as_deref()
                .is_some_and(|own| origin_of(own).as_deref() == Some(origin) || own == origin)
    }

    /// Better Auth's origin check: the request's `Origin` (else its `Referer`'s) must be
    /// trusted.
    fn check_origin(&self, caller: &Caller) -> Result<(), Reply> {
        let origin = match caller.origin.as_deref() {
            Some("null")
                if caller
                    .sec_fetch_site
                    .as_deref()
                    .is_some_and(|s| s.eq_ignore_ascii_case("same-origin")) =>
            {
                caller.own_origin.clone()
            }
            Some("null") => None,
            Some(origin) => Some(origin.to_owned()),
            None => caller.referer.as_deref().and_then(origin_of),
        };
        let Some(origin) = origin else {
            return Err(Reply::error(
                Status::Forbidden,
                "MISSING_OR_NULL_ORIGIN",
                "Missing or null Origin",
            ));
        };
        let normalized = origin_of(&origin).unwrap_or(origin);
        if self.trusts(caller, &normalized) {
            Ok(())
        } else {
            tracing::warn!(origin = %normalized, "accounts: a request from an untrusted origin was refused");
            Err(Reply::error(
                Status::Forbidden,
                "INVALID_ORIGIN",
                "Invalid origin",
            ))
        }
    }

    /// Every request but GET: checked when it carries cookies. Sign-in and sign-up
    /// (`form_csrf`) also when a browser's `Sec-Fetch-*` or an `Origin`/`Referer` is there.
    fn origin_rules(&self, caller: &Caller, form_csrf: bool) -> Result<(), Reply> {
        if caller.has_cookie {
            return self.check_origin(caller);
        }
        if !form_csrf {
            return Ok(());
        }
        let fetch = [
            &caller.sec_fetch_site,
            &caller.sec_fetch_mode,
            &caller.sec_fetch_dest,
        ];
        if fetch.iter().any(|h| h.is_some()) {
            let cross_site = caller
                .sec_fetch_site
                .as_deref()
                .is_some_and(|s| s.eq_ignore_ascii_case("cross-site"));
            let navigate = caller
                .sec_fetch_mode
                .as_deref()
                .is_some_and(|m| m.eq_ignore_ascii_case("navigate"));
            if cross_site && navigate {
                return Err(Reply::error(
                    Status::Forbidden,
                    "CROSS_SITE_NAVIGATION_LOGIN_BLOCKED",
                    "Cross-site navigation login blocked. This request appears to be a CSRF attack.",
                ));
            }
            return self.check_origin(caller);
        }
        if caller.origin.is_some() || caller.referer.is_some() {
            return self.check_origin(caller);
        }
        Ok(())
    }

    /// A `callbackURL` must be a trusted origin's URL or a safe relative path.
    fn check_callback(&self, caller: &Caller, url: Option<&str>) -> Result<(), Reply> {
        let Some(url) = url else { return Ok(()) };
        let lower = url.to_ascii_lowercase();
        let relative_ok = url.starts_with('/')
            && !url.starts_with("//")
            && !url.contains('\\')
            && !lower.contains("%2f")
            && !lower.contains("%5c")
            && !url.chars().any(char::is_control);
        let absolute_ok = origin_of(url).is_some_and(|origin| self.trusts(caller, &origin));
        if relative_ok || absolute_ok {
            Ok(())
        } else {
            Err(Reply::error(
                Status::Forbidden,
                "INVALID_CALLBACK_URL",
                "Invalid callbackURL",
            ))
        }
    }

    /// The per-address limit of `path` (`/sign-in` or `/sign-up`).
    async fn limit_address(&self, caller: &Caller, path: &str) -> Result<(), Reply> {
        if self.attempts_per_address == 0 {
            return Ok(());
        }
        let key = format!("addr:{}|{path}", caller.address);
        match limits::hit(
            &self.store.pool,
            &key,
            limits::ADDRESS_WINDOW_MS,
            self.attempts_per_address,
        )
        .await
        {
            Ok(Ok(())) => Ok(()),
            Ok(Err(seconds)) => Err(Reply::too_many(seconds)),
            Err(error) => Err(Reply::database(&error)),
        }
    }

    /// The session cookie (with its signed token for `set-auth-token`).
    fn session_cookie(&self, reply: Reply, caller: &Caller, token: &str, remember: bool) -> Reply {
        let max_age = remember.then_some(cookies::EXPIRES_IN_SECS);
        let cookie = self
            .jar
            .set(Name::SessionToken, token, max_age, caller.secure);
        reply.session_cookie(cookie, self.jar.sign(token))
    }
}

impl Accounts {
    /// The stored hash of the user's credential account, else 400
    /// `CREDENTIAL_ACCOUNT_NOT_FOUND`.
    async fn credential_password(&self, user_id: &str) -> Result<String, Reply> {
        self.store
            .credential_password(user_id)
            .await
            .map_err(|e| Reply::database(&e))?
            .flatten()
            .ok_or_else(|| {
                Reply::error(
                    Status::BadRequest,
                    "CREDENTIAL_ACCOUNT_NOT_FOUND",
                    "Credential account not found",
                )
            })
    }

    /// `password` against `stored`, else 400 `INVALID_PASSWORD`.
    async fn check_password(&self, password: &str, stored: &str) -> Result<(), Reply> {
        if self
            .hasher
            .verify(password, Some(stored))
            .await
            .map_err(busy)?
        {
            Ok(())
        } else {
            Err(Reply::error(
                Status::BadRequest,
                "INVALID_PASSWORD",
                "Invalid password",
            ))
        }
    }
}

fn busy(Busy::RetryAfter(seconds): Busy) -> Reply {
    Reply::busy(seconds)
}

// ---------------------------------------------------------------------------------------
// The current session.

/// The request's session, after the expiry and (when due) the sliding refresh.
struct Current {
    session: Session,
    user: User,
    /// `Set-Cookie` values of a refresh.
    cookies: Vec<String>,
    /// The signed token a refresh handed out again.
    signed: Option<String>,
}

enum Lookup {
    Found(Box<Current>),
    /// No session: `clear` when a cookie named one that is gone or expired.
    Missing {
        clear: bool,
    },
}

impl Accounts {
    async fn current(&self, caller: &Caller, refresh: bool) -> Result<Lookup, Reply> {
        let Some(token) = caller.token.as_deref() else {
            return Ok(Lookup::Missing { clear: false });
        };
        let found = self
            .store
            .session(token)
            .await
            .map_err(|e| Reply::database(&e))?;
        let Some((session, user)) = found else {
            return Ok(Lookup::Missing { clear: true });
        };
        let now = Stamp::now();
        if session.expires_at <= now {
            if let Err(error) = self.store.delete_session(token, None).await {
                tracing::warn!(%error, "accounts: an expired session could not be deleted");
            }
            return Ok(Lookup::Missing { clear: true });
        }
        let mut current = Current {
            session,
            user,
            cookies: Vec::new(),
            signed: None,
        };
        let due = current
            .session
            .expires_at
            .plus_secs(cookies::UPDATE_AGE_SECS - cookies::EXPIRES_IN_SECS)
            <= now;
        if refresh && due && !caller.dont_remember {
            self.renew(caller, &mut current).await?;
        }
        Ok(Lookup::Found(Box::new(current)))
    }

    /// Moves the session's expiry to now + 7 days and sets its cookie again.
    async fn renew(&self, caller: &Caller, current: &mut Current) -> Result<(), Reply> {
        let now = Stamp::now();
        let expires_at = now.plus_secs(cookies::EXPIRES_IN_SECS);
        let token = current.session.token.clone();
        let moved = self
            .store
            .refresh(&token, expires_at, now)
            .await
            .map_err(|e| Reply::database(&e))?;
        if !moved {
            return Err(Reply::error(
                Status::Unauthorized,
                "FAILED_TO_GET_SESSION",
                "Failed to get session",
            )
            .cookies(self.jar.expire_all(caller.secure)));
        }
        current.session.expires_at = expires_at;
        current.session.updated_at = now;
        let max_age = (!caller.dont_remember).then_some(cookies::EXPIRES_IN_SECS);
        current.cookies.push(
            self.jar
                .set(Name::SessionToken, &token, max_age, caller.secure),
        );
        current.signed = Some(self.jar.sign(&token));
        Ok(())
    }

    /// The session a protected route needs, else 401 `UNAUTHORIZED`.
    async fn required(&self, caller: &Caller) -> Result<Current, Reply> {
        match self.current(caller, true).await? {
            Lookup::Found(current) => Ok(*current),
            Lookup::Missing { .. } => Err(Reply::unauthorized()),
        }
    }
}

/// `reply` with the cookies a refresh set along the way.
fn with_refresh(reply: Reply, current: &Current) -> Reply {
    match &current.signed {
        Some(signed) if reply.auth_token().is_none() => {
            let mut cookies = current.cookies.clone();
            let first = cookies.remove(0);
            reply.session_cookie(first, signed.clone()).cookies(cookies)
        }
        _ => reply,
    }
}

fn session_body(current: &Current) -> Value {
    json!({ "session": current.session, "user": current.user })
}

// ---------------------------------------------------------------------------------------
// Sign-up and sign-in.

/// Which names a request came in by: Better Auth's, or a FastAPI-style frontend's, whose
/// answers also carry `access_token` and `token_type`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Flavour {
    BetterAuth,
    AccessToken,
}

/// A successful sign-in or sign-up's answer, with `access_token` for `flavour`'s names.
fn add_access_token(reply: Reply, flavour: Flavour) -> Reply {
    match (flavour, reply.auth_token().map(str::to_owned)) {
        (Flavour::AccessToken, Some(token)) => reply.with_fields(&[
            ("access_token", Value::String(token)),
            ("token_type", Value::String("bearer".to_owned())),
        ]),
        _ => reply,
    }
}

async fn sign_up(
    accounts: &Accounts,
    caller: &Caller,
    data: Data<'_>,
    flavour: Flavour,
) -> Result<Reply, Reply> {
    let reply = sign_up_inner(accounts, caller, data).await?;
    Ok(add_access_token(reply, flavour))
}

async fn sign_up_inner(
    accounts: &Accounts,
    caller: &Caller,
    data: Data<'_>,
) -> Result<Reply, Reply> {
    accounts.limit_address(caller, "/sign-up").await?;
    let body = read_body(data, caller, true).await?;
    accounts.origin_rules(caller, true)?;
    let body = required(body)?;
    let name = body.string("name")?;
    let email = body.string("email")?;
    if !is_email(&email) {
        return Err(Reply::validation(
            "[body.email] Invalid email address".to_owned(),
        ));
    }
    let password = body.string("password")?;
    let image = match body.0.get("image") {
        Some(Value::Null) => None,
        _ => body.optional_string("image")?,
    };
    let callback = body.optional_string("callbackURL")?;
    let remember = body.optional_bool("rememberMe")?.unwrap_or(true);
    accounts.check_callback(caller, callback.as_deref())?;
    if js_length(&password) < MIN_LENGTH {
        return Err(Reply::error(
            Status::BadRequest,
            "PASSWORD_TOO_SHORT",
            "Password too short",
        ));
    }
    if js_length(&password) > MAX_LENGTH {
        return Err(Reply::error(
            Status::BadRequest,
            "PASSWORD_TOO_LONG",
            "Password too long",
        ));
    }
    let email = email.to_lowercase();
    let exists = || {
        Reply::error(
            Status::UnprocessableEntity,
            "USER_ALREADY_EXISTS_USE_ANOTHER_EMAIL",
            "User already exists. Use another email.",
        )
    };
    if accounts
        .store
        .user_by_email(&email)
        .await
        .map_err(|e| Reply::database(&e))?
        .is_some()
    {
        return Err(exists());
    }
    let hash = accounts.hasher.hash(&password).await.map_err(busy)?;
    let now = Stamp::now();
    let user = User {
        name,
        email,
        email_verified: false,
        image,
        created_at: now,
        updated_at: now,
        id: super::ids::generate_id(),
    };
    let lifetime = if remember {
        cookies::EXPIRES_IN_SECS
    } else {
        cookies::SHORT_EXPIRES_IN_SECS
    };
    let session = Session::new(&user.id, lifetime, &caller.address, &caller.user_agent);
    match accounts
        .store
        .create_user(&user, &hash, Some(&session))
        .await
    {
        Ok(()) => {}
        // Two sign-ups with one email at once: the second finds the first's row.
        Err(error) if is_unique_violation(&error) => return Err(exists()),
        Err(error) => return Err(Reply::database(&error)),
    }
    tracing::info!(user = %user.id, "accounts: a user signed up");
    let reply = Reply::ok(&json!({ "token": session.token, "user": user }));
    Ok(remember_cookies(
        accounts,
        caller,
        reply,
        &session.token,
        remember,
    ))
}

/// The session cookie, with `dont_remember` set (or cleared) as `remember` says.
fn remember_cookies(
    accounts: &Accounts,
    caller: &Caller,
    reply: Reply,
    token: &str,
    remember: bool,
) -> Reply {
    let reply = accounts.session_cookie(reply, caller, token, remember);
    if !remember {
        reply.cookies([accounts
            .jar
            .set(Name::DontRemember, "true", None, caller.secure)])
    } else if caller.dont_remember {
        reply.cookies([accounts.jar.expire(Name::DontRemember, caller.secure)])
    } else {
        reply
    }
}

async fn sign_in(
    accounts: &Accounts,
    caller: &Caller,
    data: Data<'_>,
    flavour: Flavour,
) -> Result<Reply, Reply> {
    let reply = sign_in_inner(accounts, caller, data, flavour).await?;
    Ok(add_access_token(reply, flavour))
}

async fn sign_in_inner(
    accounts: &Accounts,
    caller: &Caller,
    data: Data<'_>,
    flavour: Flavour,
) -> Result<Reply, Reply> {
    accounts.limit_address(caller, "/sign-in").await?;
    let body = read_body(data, caller, true).await?;
    accounts.origin_rules(caller, true)?;
    let mut body = required(body)?;
    // OAuth2's password form names the email `username`.
    if flavour == Flavour::AccessToken && !body.0.contains_key("email") {
        if let Some(username) = body.0.remove("username") {
            body.0.insert("email".to_owned(), username);
        }
    }
    let email = body.string("email")?;
    let password = body.string("password")?;
    let callback = body.optional_string("callbackURL")?;
    let remember = body.optional_bool("rememberMe")?.unwrap_or(true);
    accounts.check_callback(caller, callback.as_deref())?;
    if !is_email(&email) {
        return Err(Reply::error(
            Status::BadRequest,
            "INVALID_EMAIL",
            "Invalid email",
        ));
    }
    if js_length(&password) > MAX_LENGTH {
        return Err(Reply::error(
            Status::BadRequest,
            "PASSWORD_TOO_LONG",
            "Password too long",
        ));
    }
    let email = email.to_lowercase();
    let failures_key = format!("fail:{email}");
    if accounts.failures_per_account > 0 {
        match limits::over(
            &accounts.store.pool,
            &failures_key,
            limits::ACCOUNT_WINDOW_MS,
            accounts.failures_per_account,
        )
        .await
        {
            Ok(Ok(())) => {}
            Ok(Err(seconds)) => {
                tracing::warn!("accounts: sign-in refused: too many failures for this account");
                return Err(Reply::too_many(seconds));
            }
            Err(error) => return Err(Reply::database(&error)),
        }
    }
    let found = accounts
        .store
        .user_by_email(&email)
        .await
        .map_err(|e| Reply::database(&e))?;
    let stored = found.as_ref().and_then(|(_, password)| password.as_deref());
    // An unknown email costs the same hash as a wrong password.
    let matches = accounts
        .hasher
        .verify(&password, stored)
        .await
        .map_err(busy)?;
    let user = match found {
        Some((user, _)) if matches => user,
        _ => {
            if accounts.failures_per_account > 0 {
                if let Err(error) = limits::hit(
                    &accounts.store.pool,
                    &failures_key,
                    limits::ACCOUNT_WINDOW_MS,
                    u32::MAX,
                )
                .await
                {
                    tracing::warn!(%error, "accounts: a failed sign-in could not be counted");
                }
            }
            return Err(Reply::error(
                Status::Unauthorized,
                "INVALID_EMAIL_OR_PASSWORD",
                "Invalid email or password",
            ));
        }
    };
    if accounts.failures_per_account > 0 {
        if let Err(error) = limits::clear(&accounts.store.pool, &failures_key).await {
            tracing::warn!(%error, "accounts: an account's failure count could not be cleared");
        }
    }
    let lifetime = if remember {
        cookies::EXPIRES_IN_SECS
    } else {
        cookies::SHORT_EXPIRES_IN_SECS
    };
    let session = Session::new(&user.id, lifetime, &caller.address, &caller.user_agent);
    accounts
        .store
        .create_session(&session)
        .await
        .map_err(|e| Reply::database(&e))?;
    let mut body = Map::new();
    body.insert("redirect".to_owned(), Value::Bool(callback.is_some()));
    body.insert("token".to_owned(), Value::String(session.token.clone()));
    if let Some(url) = &callback {
        body.insert("url".to_owned(), Value::String(url.clone()));
    }
    body.insert(
        "user".to_owned(),
        serde_json::to_value(&user).unwrap_or(Value::Null),
    );
    let mut reply = Reply::ok(&Value::Object(body));
    if let Some(url) = callback {
        reply = reply.header("Location", url);
    }
    Ok(remember_cookies(
        accounts,
        caller,
        reply,
        &session.token,
        remember,
    ))
}

// ---------------------------------------------------------------------------------------
// Routes.

#[utoipa::path(post, path = "/api/auth/sign-up/email", tag = "accounts", operation_id = "signUpEmail",
    summary = "Creates a user with an email and password, and signs them in",
    request_body(content = SignUpRequest, description = "JSON, or a urlencoded form"),
    responses(
        (status = 200, description = "`{token, user}`; the session cookie and `set-auth-token`", body = SignUpAnswer),
        (status = 400, description = "`VALIDATION_ERROR`, `PASSWORD_TOO_SHORT`, `PASSWORD_TOO_LONG`, `INVALID_JSON`", body = AuthError),
        (status = 403, description = "`INVALID_ORIGIN`, `MISSING_OR_NULL_ORIGIN`, `CROSS_SITE_NAVIGATION_LOGIN_BLOCKED`, `INVALID_CALLBACK_URL`", body = AuthError),
        (status = 413, description = "`PAYLOAD_TOO_LARGE`: over 64 KiB", body = AuthError),
        (status = 415, description = "`UNSUPPORTED_MEDIA_TYPE`", body = AuthError),
        (status = 422, description = "`USER_ALREADY_EXISTS_USE_ANOTHER_EMAIL`", body = AuthError),
        (status = 429, description = "Over `AUTH_ATTEMPTS_PER_ADDRESS`; `Retry-After`, `X-Retry-After`", body = AuthError),
        (status = 503, description = "`SERVICE_UNAVAILABLE`: the hashing queue is full, or the database cannot be reached; `Retry-After`", body = AuthError),
    ))]
#[post("/sign-up/email", data = "<data>")]
async fn sign_up_email(
    accounts: &State<Accounts>,
    caller: Caller,
    data: Data<'_>,
) -> Result<Reply, Reply> {
    sign_up(accounts, &caller, data, Flavour::BetterAuth).await
}

#[utoipa::path(post, path = "/api/auth/sign-in/email", tag = "accounts", operation_id = "signInEmail",
    summary = "Signs in with an email and password",
    request_body(content = SignInRequest, description = "JSON, or a urlencoded form"),
    responses(
        (status = 200, description = "`{redirect, token, url?, user}`; the session cookie and `set-auth-token` (`Location` with a `callbackURL`)", body = SignInAnswer),
        (status = 400, description = "`VALIDATION_ERROR`, `INVALID_EMAIL`, `PASSWORD_TOO_LONG`", body = AuthError),
        (status = 401, description = "`INVALID_EMAIL_OR_PASSWORD`: an unknown email and a wrong password alike", body = AuthError),
        (status = 403, description = "`INVALID_ORIGIN`, `MISSING_OR_NULL_ORIGIN`, `CROSS_SITE_NAVIGATION_LOGIN_BLOCKED`, `INVALID_CALLBACK_URL`", body = AuthError),
        (status = 429, description = "Over `AUTH_ATTEMPTS_PER_ADDRESS` or `AUTH_FAILURES_PER_ACCOUNT`; `Retry-After`, `X-Retry-After`", body = AuthError),
        (status = 503, description = "`SERVICE_UNAVAILABLE`: the hashing queue is full; `Retry-After`", body = AuthError),
    ))]
#[post("/sign-in/email", data = "<data>")]
async fn sign_in_email(
    accounts: &State<Accounts>,
    caller: Caller,
    data: Data<'_>,
) -> Result<Reply, Reply> {
    sign_in(accounts, &caller, data, Flavour::BetterAuth).await
}

async fn sign_out_inner(
    accounts: &Accounts,
    caller: &Caller,
    data: Data<'_>,
) -> Result<Reply, Reply> {
    read_body(data, caller, false).await?;
    accounts.origin_rules(caller, false)?;
    if let Some(token) = &caller.token {
        if let Err(error) = accounts.store.delete_session(token, None).await {
            tracing::warn!(%error, "accounts: a session could not be deleted at sign-out");
        }
    }
    Ok(Reply::ok(&json!({"success": true})).cookies(accounts.jar.expire_all(caller.secure)))
}

#[utoipa::path(post, path = "/api/auth/sign-out", tag = "accounts", operation_id = "signOut",
    summary = "Ends the request's session and expires its cookies",
    responses(
        (status = 200, description = "`{\"success\": true}`, always", body = Success),
        (status = 403, description = "With a cookie: `MISSING_OR_NULL_ORIGIN` or `INVALID_ORIGIN`", body = AuthError),
    ),
    security(("session_token" = []), ("bearer" = [])))]
#[post("/sign-out", data = "<data>")]
async fn sign_out(
    accounts: &State<Accounts>,
    caller: Caller,
    data: Data<'_>,
) -> Result<Reply, Reply> {
    sign_out_inner(accounts, &caller, data).await
}

async fn get_session_inner(
    accounts: &Accounts,
    caller: &Caller,
    refresh: bool,
) -> Result<Reply, Reply> {
    Ok(match accounts.current(caller, refresh).await? {
        Lookup::Found(current) => with_refresh(Reply::ok(&session_body(&current)), &current),
        Lookup::Missing { clear } => {
            let reply = Reply::ok(&Value::Null);
            if clear {
                reply.cookies(accounts.jar.expire_all(caller.secure))
            } else {
                reply
            }
        }
    })
}

fn no_store(reply: Reply) -> Reply {
    reply
        .header("Cache-Control", "no-store".to_owned())
        .header("Pragma", "no-cache".to_owned())
}

async fn list_sessions(accounts: &Accounts, caller: &Caller) -> Result<Reply, Reply> {
    let current = accounts.required(caller).await?;
    let age = Stamp::now().0 - current.session.created_at.0;
    if age.num_seconds() >= cookies::FRESH_AGE_SECS {
        return Err(with_refresh(
            Reply::error(
                Status::Forbidden,
                "SESSION_NOT_FRESH",
                "Session is not fresh",
            ),
            &current,
        ));
    }
    let sessions = accounts
        .store
        .sessions_of(&current.user.id)
        .await
        .map_err(|e| Reply::database(&e))?;
    Ok(with_refresh(Reply::ok(&sessions), &current))
}

async fn me(accounts: &Accounts, caller: &Caller) -> Result<Reply, Reply> {
    let current = accounts.required(caller).await?;
    Ok(with_refresh(Reply::ok(&current.user), &current))
}

#[utoipa::path(post, path = "/api/auth/get-session", tag = "accounts", operation_id = "postGetSession",
    summary = "Better Auth's deferred session refresh, which this server does not use",
    responses((status = 405, description = "`METHOD_NOT_ALLOWED_DEFER_SESSION_REQUIRED`", body = AuthError)))]
#[post("/get-session")]
fn post_get_session() -> Reply {
    Reply::error(
        Status::MethodNotAllowed,
        "METHOD_NOT_ALLOWED_DEFER_SESSION_REQUIRED",
        "POST method requires deferSessionRefresh to be enabled in session config",
    )
}

async fn refresh_inner(
    accounts: &Accounts,
    caller: &Caller,
    data: Data<'_>,
) -> Result<Reply, Reply> {
    read_body(data, caller, false).await?;
    accounts.origin_rules(caller, false)?;
    let mut current = match accounts.current(caller, false).await? {
        Lookup::Found(current) => *current,
        Lookup::Missing { .. } => return Err(Reply::unauthorized()),
    };
    accounts.renew(caller, &mut current).await?;
    Ok(no_store(with_refresh(
        Reply::ok(&session_body(&current)),
        &current,
    )))
}

/// A protected POST: its body, the origin check and the session.
async fn protected(
    accounts: &Accounts,
    caller: &Caller,
    data: Data<'_>,
) -> Result<(Option<Body>, Current), Reply> {
    let body = read_body(data, caller, false).await?;
    accounts.origin_rules(caller, false)?;
    let current = accounts.required(caller).await?;
    Ok((body, current))
}

#[utoipa::path(post, path = "/api/auth/revoke-session", tag = "accounts", operation_id = "revokeSession",
    summary = "Ends one of the user's sessions (answers the same for any token)",
    request_body = RevokeSessionRequest,
    responses(
        (status = 200, description = "`{\"status\": true}`", body = StatusAnswer),
        (status = 400, description = "`VALIDATION_ERROR`", body = AuthError),
        (status = 401, description = "`UNAUTHORIZED`", body = AuthError),
    ),
    security(("session_token" = []), ("bearer" = [])))]
#[post("/revoke-session", data = "<data>")]
async fn revoke_session(
    accounts: &State<Accounts>,
    caller: Caller,
    data: Data<'_>,
) -> Result<Reply, Reply> {
    let (body, current) = protected(accounts, &caller, data).await?;
    let token = required(body)?.string("token")?;
    accounts
        .store
        .delete_session(&token, Some(&current.user.id))
        .await
        .map_err(|e| Reply::database(&e))?;
    let reply = Reply::ok(&json!({"status": true}));
    Ok(if token == current.session.token {
        reply.cookies(accounts.jar.expire_all(caller.secure))
    } else {
        with_refresh(reply, &current)
    })
}

#[utoipa::path(post, path = "/api/auth/revoke-sessions", tag = "accounts", operation_id = "revokeSessions",
    summary = "Ends every session of the user, this one included",
    responses(
        (status = 200, description = "`{\"status\": true}`; the cookies expired", body = StatusAnswer),
        (status = 401, description = "`UNAUTHORIZED`", body = AuthError),
    ),
    security(("session_token" = []), ("bearer" = [])))]
#[post("/revoke-sessions", data = "<data>")]
async fn revoke_sessions(
    accounts: &State<Accounts>,
    caller: Caller,
    data: Data<'_>,
) -> Result<Reply, Reply> {
    let (_, current) = protected(accounts, &caller, data).await?;
    accounts
        .store
        .delete_sessions(&current.user.id, None)
        .await
        .map_err(|e| Reply::database(&e))?;
    Ok(Reply::ok(&json!({"status": true})).cookies(accounts.jar.expire_all(caller.secure)))
}

#[utoipa::path(post, path = "/api/auth/revoke-other-sessions", tag = "accounts", operation_id = "revokeOtherSessions",
    summary = "Ends every session of the user but this one",
    responses(
        (status = 200, description = "`{\"status\": true}`", body = StatusAnswer),
        (status = 401, description = "`UNAUTHORIZED`", body = AuthError),
    ),
    security(("session_token" = []), ("bearer" = [])))]
#[post("/revoke-other-sessions", data = "<data>")]
async fn revoke_other_sessions(
    accounts: &State<Accounts>,
    caller: Caller,
    data: Data<'_>,
) -> Result<Reply, Reply> {
    let (_, current) = protected(accounts, &caller, data).await?;
    accounts
        .store
        .delete_sessions(&current.user.id, Some(&current.session.token))
        .await
        .map_err(|e| Reply::database(&e))?;
    Ok(with_refresh(Reply::ok(&json!({"status": true})), &current))
}

#[utoipa::path(post, path = "/api/auth/update-user", tag = "accounts", operation_id = "updateUser",
    summary = "Sets the user's name and/or image",
    request_body = UpdateUserRequest,
    responses(
        (status = 200, description = "`{\"status\": true}`; the session cookie set again", body = StatusAnswer),
        (status = 400, description = "`EMAIL_CAN_NOT_BE_UPDATED`, `BODY_MUST_BE_AN_OBJECT`, `VALIDATION_ERROR`, or `{\"message\": \"No fields to update\"}`", body = AuthError),
        (status = 401, description = "`UNAUTHORIZED`", body = AuthError),
    ),
    security(("session_token" = []), ("bearer" = [])))]
#[post("/update-user", data = "<data>")]
async fn update_user(
    accounts: &State<Accounts>,
    caller: Caller,
    data: Data<'_>,
) -> Result<Reply, Reply> {
    let (body, current) = protected(accounts, &caller, data).await?;
    let Some(body) = body else {
        return Err(Reply::error(
            Status::BadRequest,
            "BODY_MUST_BE_AN_OBJECT",
            "Body must be an object",
        ));
    };
    if body.0.contains_key("email") {
        return Err(Reply::error(
            Status::BadRequest,
            "EMAIL_CAN_NOT_BE_UPDATED",
            "Email can not be updated",
        ));
    }
    let name = body.optional_string("name")?;
    let image = match body.0.get("image") {
        None => None,
        Some(Value::Null) => Some(None),
        Some(_) => Some(body.optional_string("image")?),
    };
    if name.is_none() && image.is_none() {
        return Err(Reply::message(Status::BadRequest, "No fields to update"));
    }
    accounts
        .store
        .update_user(
            &current.user.id,
            name.as_deref(),
            image.as_ref().map(|i| i.as_deref()),
            Stamp::now(),
        )
        .await
        .map_err(|e| Reply::database(&e))?;
    let reply = Reply::ok(&json!({"status": true}));
    Ok(accounts.session_cookie(
        reply,
        &caller,
        &current.session.token,
        !caller.dont_remember,
    ))
}

#[utoipa::path(post, path = "/api/auth/change-password", tag = "accounts", operation_id = "changePassword",
    summary = "Changes the password (optionally ending every other session)",
    request_body = ChangePasswordRequest,
    responses(
        (status = 200, description = "`{token, user}`: `token` is the new session's when every other session was ended, else null", body = ChangePasswordAnswer),
        (status = 400, description = "`PASSWORD_TOO_SHORT`, `PASSWORD_TOO_LONG`, `CREDENTIAL_ACCOUNT_NOT_FOUND`, `INVALID_PASSWORD`, `VALIDATION_ERROR`", body = AuthError),
        (status = 401, description = "`UNAUTHORIZED`", body = AuthError),
        (status = 503, description = "`SERVICE_UNAVAILABLE`: the hashing queue is full; `Retry-After`", body = AuthError),
    ),
    security(("session_token" = []), ("bearer" = [])))]
#[post("/change-password", data = "<data>")]
async fn change_password(
    accounts: &State<Accounts>,
    caller: Caller,
    data: Data<'_>,
) -> Result<Reply, Reply> {
    let (body, current) = protected(accounts, &caller, data).await?;
    let body = required(body)?;
    let new_password = body.string("newPassword")?;
    let current_password = body.string("currentPassword")?;
    let revoke = body.optional_bool("revokeOtherSessions")?.unwrap_or(false);
    if js_length(&new_password) < MIN_LENGTH {
        return Err(Reply::error(
            Status::BadRequest,
            "PASSWORD_TOO_SHORT",
            "Password too short",
        ));
    }
    if js_length(&new_password) > MAX_LENGTH || js_length(&current_password) > MAX_LENGTH {
        return Err(Reply::error(
            Status::BadRequest,
            "PASSWORD_TOO_LONG",
            "Password too long",
        ));
    }
    let stored = accounts.credential_password(&current.user.id).await?;
    let hash = accounts.hasher.hash(&new_password).await.map_err(busy)?;
    accounts.check_password(&current_password, &stored).await?;
    let session = revoke.then(|| {
        let lifetime = if caller.dont_remember {
            cookies::SHORT_EXPIRES_IN_SECS
        } else {
            cookies::EXPIRES_IN_SECS
        };
        Session::new(
            &current.user.id,
            lifetime,
            &caller.address,
            &caller.user_agent,
        )
    });
    accounts
        .store
        .change_password(&current.user.id, &hash, session.as_ref())
        .await
        .map_err(|e| Reply::database(&e))?;
    let token = session.as_ref().map(|s| s.token.clone());
    let reply = Reply::ok(&json!({"token": token, "user": current.user}));
    Ok(match token {
        Some(token) => accounts.session_cookie(reply, &caller, &token, !caller.dont_remember),
        None => with_refresh(reply, &current),
    })
}

#[utoipa::path(post, path = "/api/auth/delete-user", tag = "accounts", operation_id = "deleteUser",
    summary = "Deletes the user with their sessions, accounts, tasks, events and idempotency keys; their event streams end",
    request_body = DeleteUserRequest,
    responses(
        (status = 200, description = "`{\"success\": true, \"message\": \"User deleted\"}`; the cookies expired", body = DeleteUserAnswer),
        (status = 400, description = "`INVALID_PASSWORD`, `CREDENTIAL_ACCOUNT_NOT_FOUND`, `SESSION_EXPIRED` (no password and a session over a day old), `PASSWORD_TOO_LONG`", body = AuthError),
        (status = 401, description = "`UNAUTHORIZED`", body = AuthError),
    ),
    security(("session_token" = []), ("bearer" = [])))]
#[post("/delete-user", data = "<data>")]
async fn delete_user(
    accounts: &State<Accounts>,
    bus: Option<&State<std::sync::Arc<crate::events::Bus>>>,
    caller: Caller,
    data: Data<'_>,
) -> Result<Reply, Reply> {
    let (body, current) = protected(accounts, &caller, data).await?;
    let body = body.unwrap_or(Body(Map::new()));
    let password = body.optional_string("password")?;
    body.optional_string("token")?;
    let callback = body.optional_string("callbackURL")?;
    accounts.check_callback(&caller, callback.as_deref())?;
    match password {
        Some(password) => {
            if js_length(&password) > MAX_LENGTH {
                return Err(Reply::error(
                    Status::BadRequest,
                    "PASSWORD_TOO_LONG",
                    "Password too long",
                ));
            }
            let stored = accounts.credential_password(&current.user.id).await?;
            accounts.check_password(&password, &stored).await?;
        }
        None => {
            let age = Stamp::now().0 - current.session.created_at.0;
            if age.num_seconds() >= cookies::FRESH_AGE_SECS {
                return Err(Reply::error(
                    Status::BadRequest,
                    "SESSION_EXPIRED",
                    "Session expired. Re-authenticate to perform this action.",
                ));
            }
        }
    }
    accounts
        .delete_user(&current.user.id, bus.map(|b| &***b))
        .await
        .map_err(|e| Reply::database(&e))?;
    Ok(
        Reply::ok(&json!({"success": true, "message": "User deleted"}))
            .cookies(accounts.jar.expire_all(caller.secure)),
    )
}

/// `?disableRefresh` (zod's coerced boolean: any non-empty value, `false` included, means
/// true); `disableCookieCache` needs nothing, as these routes never use a session cache.
async fn get_session_route(
    accounts: &Accounts,
    caller: &Caller,
    disable_refresh: Option<&str>,
) -> Result<Reply, Reply> {
    let refresh = disable_refresh.is_none_or(str::is_empty);
    get_session_inner(accounts, caller, refresh)
        .await
        .map(no_store)
}

#[utoipa::path(get, path = "/api/auth/get-session", tag = "accounts", operation_id = "getSession",
    summary = "The request's session and its user, or null (renewed once a day old)",
    params(("disableRefresh" = Option<String>, Query, description = "Any non-empty value: do not renew")),
    responses(
        (status = 200, description = "`{session, user}`, or `null` without a live session; `Cache-Control: no-store`", body = Option<SessionAndUser>),
        (status = 401, description = "`FAILED_TO_GET_SESSION`: deleted while being renewed", body = AuthError),
    ),
    security(("session_token" = []), ("bearer" = [])))]
#[get("/get-session?<disableRefresh>")]
#[allow(non_snake_case)]
async fn get_session(
    disableRefresh: Option<&str>,
    accounts: &State<Accounts>,
    caller: Caller,
) -> Result<Reply, Reply> {
    get_session_route(accounts, &caller, disableRefresh).await
}

#[utoipa::path(get, path = "/api/auth/session", tag = "accounts", operation_id = "getSessionShort",
    summary = "The original design's name of get-session",
    params(("disableRefresh" = Option<String>, Query, description = "Any non-empty value: do not renew")),
    responses((status = 200, description = "As get-session", body = Option<SessionAndUser>)),
    security(("session_token" = []), ("bearer" = [])))]
#[get("/session?<disableRefresh>")]
#[allow(non_snake_case)]
async fn session(
    disableRefresh: Option<&str>,
    accounts: &State<Accounts>,
    caller: Caller,
) -> Result<Reply, Reply> {
    get_session_route(accounts, &caller, disableRefresh).await
}

#[utoipa::path(get, path = "/api/auth/list-sessions", tag = "accounts", operation_id = "listSessions",
    summary = "The user's live sessions (each with its token)",
    responses(
        (status = 200, description = "The sessions", body = [Session]),
        (status = 401, description = "`UNAUTHORIZED`: no session", body = AuthError),
        (status = 403, description = "`SESSION_NOT_FRESH`: signed in over a day ago", body = AuthError),
    ),
    security(("session_token" = []), ("bearer" = [])))]
#[get("/list-sessions")]
async fn list_sessions_route(accounts: &State<Accounts>, caller: Caller) -> Result<Reply, Reply> {
    list_sessions(accounts, &caller).await
}

#[utoipa::path(get, path = "/api/auth/me", tag = "accounts", operation_id = "me",
    summary = "The signed-in user",
    responses(
        (status = 200, description = "The user", body = User),
        (status = 401, description = "`UNAUTHORIZED`: no session", body = AuthError),
    ),
    security(("session_token" = []), ("bearer" = [])))]
#[get("/me")]
async fn me_route(accounts: &State<Accounts>, caller: Caller) -> Result<Reply, Reply> {
    me(accounts, &caller).await
}

#[utoipa::path(get, path = "/api/auth/ok", tag = "accounts", operation_id = "authOk",
    summary = "The accounts module answers",
    responses((status = 200, description = "`{\"ok\": true}`", body = OkAnswer)))]
#[get("/ok")]
fn ok() -> Reply {
    Reply::ok(&json!({"ok": true}))
}

#[utoipa::path(post, path = "/api/auth/signup", tag = "accounts", operation_id = "signupShort",
    summary = "Sign-up under the original design's name, with `access_token`",
    request_body = SignUpRequest,
    responses((status = 200, description = "As sign-up/email, plus `access_token` and `token_type`", body = TokenAnswer)))]
#[post("/signup", data = "<data>")]
async fn signup(
    accounts: &State<Accounts>,
    caller: Caller,
    data: Data<'_>,
) -> Result<Reply, Reply> {
    sign_up(accounts, &caller, data, Flavour::AccessToken).await
}

#[utoipa::path(post, path = "/api/auth/register", tag = "accounts", operation_id = "register",
    summary = "Sign-up as FastAPI-style frontends name it",
    request_body = SignUpRequest,
    responses((status = 200, description = "As sign-up/email, plus `access_token` and `token_type`", body = TokenAnswer)))]
#[post("/register", data = "<data>")]
async fn register(
    accounts: &State<Accounts>,
    caller: Caller,
    data: Data<'_>,
) -> Result<Reply, Reply> {
    sign_up(accounts, &caller, data, Flavour::AccessToken).await
}

#[utoipa::path(post, path = "/api/auth/login", tag = "accounts", operation_id = "login",
    summary = "Sign-in under the original design's name, with `access_token`",
    request_body(content = SignInRequest, description = "JSON, or an OAuth2 password form with `username`"),
    responses((status = 200, description = "As sign-in/email, plus `access_token` and `token_type`", body = TokenAnswer)))]
#[post("/login", data = "<data>")]
async fn login(accounts: &State<Accounts>, caller: Caller, data: Data<'_>) -> Result<Reply, Reply> {
    sign_in(accounts, &caller, data, Flavour::AccessToken).await
}

#[utoipa::path(post, path = "/api/auth/signin", tag = "accounts", operation_id = "signin",
    summary = "Sign-in as FastAPI-style frontends name it",
    request_body(content = SignInRequest, description = "JSON, or an OAuth2 password form with `username`"),
    responses((status = 200, description = "As sign-in/email, plus `access_token` and `token_type`", body = TokenAnswer)))]
#[post("/signin", data = "<data>")]
async fn signin(
    accounts: &State<Accounts>,
    caller: Caller,
    data: Data<'_>,
) -> Result<Reply, Reply> {
    sign_in(accounts, &caller, data, Flavour::AccessToken).await
}

#[utoipa::path(post, path = "/api/auth/token", tag = "accounts", operation_id = "token",
    summary = "Sign-in as an OAuth2 password flow's token endpoint",
    request_body(content = SignInRequest, description = "JSON, or an OAuth2 password form with `username`"),
    responses((status = 200, description = "As sign-in/email, plus `access_token` and `token_type`", body = TokenAnswer)))]
#[post("/token", data = "<data>")]
async fn token(accounts: &State<Accounts>, caller: Caller, data: Data<'_>) -> Result<Reply, Reply> {
    sign_in(accounts, &caller, data, Flavour::AccessToken).await
}

#[utoipa::path(post, path = "/api/auth/logout", tag = "accounts", operation_id = "logout",
    summary = "The original design's name of sign-out",
    responses((status = 200, description = "`{\"success\": true}`", body = Success)),
    security(("session_token" = []), ("bearer" = [])))]
#[post("/logout", data = "<data>")]
async fn logout(
    accounts: &State<Accounts>,
    caller: Caller,
    data: Data<'_>,
) -> Result<Reply, Reply> {
    sign_out_inner(accounts, &caller, data).await
}

#[utoipa::path(post, path = "/api/auth/refresh", tag = "accounts", operation_id = "refresh",
    summary = "Renews the session now: the same token, expiresAt now + 7 days, the cookie set again",
    responses(
        (status = 200, description = "`{session, user}`", body = SessionAndUser),
        (status = 401, description = "`UNAUTHORIZED`: no session", body = AuthError),
    ),
    security(("session_token" = []), ("bearer" = [])))]
#[post("/refresh", data = "<data>")]
async fn refresh(
    accounts: &State<Accounts>,
    caller: Caller,
    data: Data<'_>,
) -> Result<Reply, Reply> {
    refresh_inner(accounts, &caller, data).await
}

/// Better Auth answers an unknown path or method with an empty 404.
#[get("/<_..>", rank = 20)]
fn unknown_get() -> Reply {
    Reply::not_found()
}
#[post("/<_..>", rank = 20)]
fn unknown_post() -> Reply {
    Reply::not_found()
}
#[put("/<_..>", rank = 20)]
fn unknown_put() -> Reply {
    Reply::not_found()
}
#[patch("/<_..>", rank = 20)]
fn unknown_patch() -> Reply {
    Reply::not_found()
}
#[delete("/<_..>", rank = 20)]
fn unknown_delete() -> Reply {
    Reply::not_found()
}

// ---------------------------------------------------------------------------------------
// The OpenAPI description (the bodies as Better Auth's client sends and reads them).

/// Better Auth's error: `message`, and `code` for a client to branch on.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct AuthError {
    message: String,
    code: Option<String>,
}

/// `POST /sign-up/email`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code, non_snake_case)]
pub struct SignUpRequest {
    name: String,
    /// Lowercased before it is stored.
    email: String,
    /// 8 to 128 UTF-16 code units.
    password: String,
    image: Option<String>,
    /// A trusted origin's URL or a relative path.
    callbackURL: Option<String>,
    /// `false`: a one-day session in a browser-session cookie.
    rememberMe: Option<bool>,
}

/// `POST /sign-in/email`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code, non_snake_case)]
pub struct SignInRequest {
    email: String,
    password: String,
    callbackURL: Option<String>,
    rememberMe: Option<bool>,
}

/// `POST /revoke-session`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct RevokeSessionRequest {
    token: String,
}

/// `POST /update-user`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct UpdateUserRequest {
    name: Option<String>,
    /// `null` clears it.
    image: Option<String>,
}

/// `POST /change-password`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code, non_snake_case)]
pub struct ChangePasswordRequest {
    currentPassword: String,
    newPassword: String,
    revokeOtherSessions: Option<bool>,
}

/// `POST /delete-user`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct DeleteUserRequest {
    /// Required unless the session is under a day old.
    password: Option<String>,
}

/// A sign-up's answer.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct SignUpAnswer {
    /// The session token (`set-auth-token` has its signed form).
    token: String,
    user: User,
}

/// A sign-in's answer.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct SignInAnswer {
    /// Whether `url` is there (a `callbackURL` was given).
    redirect: bool,
    token: String,
    url: Option<String>,
    user: User,
}

/// The compatibility names' sign-in and sign-up answer: Better Auth's, plus a bearer token.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct TokenAnswer {
    token: String,
    user: User,
    /// The signed session token: send it as `Authorization: Bearer`.
    access_token: String,
    /// `bearer`.
    token_type: String,
}

/// A change-password's answer.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct ChangePasswordAnswer {
    token: Option<String>,
    user: User,
}

/// A session and its user.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct SessionAndUser {
    session: Session,
    user: User,
}

/// `{"status": true}`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct StatusAnswer {
    status: bool,
}

/// `{"success": true}`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct Success {
    success: bool,
}

/// `{"success": true, "message": "User deleted"}`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct DeleteUserAnswer {
    success: bool,
    message: String,
}

/// `{"ok": true}`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct OkAnswer {
    ok: bool,
}

/// The OpenAPI description of the accounts routes (`BETTER_AUTH_SERVER=on`).
#[derive(utoipa::OpenApi)]
#[openapi(paths(
    sign_up_email,
    sign_in_email,
    sign_out,
    post_get_session,
    get_session,
    session,
    list_sessions_route,
    me_route,
    ok,
    revoke_session,
    revoke_sessions,
    revoke_other_sessions,
    update_user,
    change_password,
    delete_user,
    signup,
    register,
    login,
    signin,
    token,
    logout,
    refresh,
))]
pub struct AccountsApi;

/// Every route of the module, mounted under `/api/auth` (`/api/v1/auth` maps onto it).
pub fn routes() -> Vec<Route> {
    routes![
        sign_up_email,
        sign_in_email,
        sign_out,
        post_get_session,
        get_session,
        session,
        list_sessions_route,
        me_route,
        ok,
        signup,
        register,
        login,
        signin,
        token,
        logout,
        refresh,
        revoke_session,
        revoke_sessions,
        revoke_other_sessions,
        update_user,
        change_password,
        delete_user,
        unknown_get,
        unknown_post,
        unknown_put,
        unknown_patch,
        unknown_delete,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_checked_as_zod_checks_them() {
        for good in [
            "alice@example.com",
            "a.b+c@x-y.example.org",
            "o'neil@example.io",
            "A@B.CO",
        ] {
            assert!(is_email(good), "{good}");
        }
        for bad in [
            "",
            " alice@example.com",
            "alice@example",
            "alice@@example.com",
            "alice.@example.com",
            ".alice@example.com",
            "o'@example.com",
            "alice@-x.com",
            "alice@example.c",
            "alice@example.c0m",
            "alice@[127.0.0.1]",
            "ä@example.com",
        ] {
            assert!(!is_email(bad), "{bad}");
        }
    }
}

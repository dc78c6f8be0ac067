//! Configuration: one figment (Rocket.toml profile, `ROCKET_*`, then the service's own
//! variable names) and one validated [`AppConfig`] extracted from it.
//!
//! Invariant: an [`AppConfig`] only exists when every setting passed validation, and its
//! `Debug` output never contains the secret.

use std::time::Duration;

use rocket::fairing::AdHoc;
use rocket::figment::Figment;
use rocket::{Phase, Rocket};
use secrecy::SecretString;
use serde::Deserialize;

mod database;
mod variables;

pub use database::{
    neon_direct_host, Backend, ConnectionsConfig, DatabaseConfig, PreparedStatements,
    SqliteDurability, UnknownScheme,
};
use variables::{describe_figment_error, VARIABLES};
pub use variables::{figment, figment_with_env, names as variable_names};

/// The secret used when none is configured in the debug profile. Release refuses it.
pub const DEV_SECRET: &str = "INSECURE-DEV-SECRET-do-not-use-in-production-0123456789";

/// Shortest accepted `BETTER_AUTH_SECRET`, in characters.
pub const MIN_SECRET_CHARS: usize = 32;

/// A configuration problem, as one line that names the setting at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("configuration error: {0}")]
pub struct ConfigError(pub String);

impl ConfigError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines (the debug default).
    Text,
    /// One JSON object per line (the release default).
    Json,
}

/// Logging settings, needed before Rocket starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// A `tracing` filter directive such as `info` or `todo_api=debug`.
    pub level: String,
    /// Text or JSON.
    pub format: LogFormat,
}

/// Token verification settings. At least one of `secret` and `jwks` is set.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// The HS256 shared secret (`BETTER_AUTH_SECRET`); `None` turns HS256 off.
    pub secret: Option<SecretString>,
    /// Whether the secret is the marked development secret.
    pub dev_secret: bool,
    /// Clock leeway for `exp` and `nbf`, in seconds.
    pub leeway_secs: u64,
    /// Better Auth's published keys (`BETTER_AUTH_URL`); `None` turns JWKS off.
    pub jwks: Option<JwksConfig>,
    /// Better Auth session tokens (`BETTER_AUTH_SESSIONS=on`); `None` turns them off.
    pub sessions: Option<SessionsConfig>,
    /// Better Auth's session cookie (`BETTER_AUTH_COOKIES=on`): its prefix
    /// (`BETTER_AUTH_COOKIE_PREFIX`, Better Auth's `advanced.cookiePrefix`); `None` turns
    /// cookies off. Only with session tokens and a secret (the cookie is signed with it).
    pub cookie_prefix: Option<String>,
}

/// Where Better Auth's sessions are and how long a verified one is trusted.
#[derive(Debug, Clone)]
pub struct SessionsConfig {
    /// Better Auth's database (`BETTER_AUTH_DATABASE_URL`); `None`: the service's own.
    pub database_url: Option<SecretString>,
    /// The session table, optionally schema-qualified (`BETTER_AUTH_SESSION_TABLE`).
    pub table: String,
    /// Longest time a verified session is trusted without asking the table again.
    pub cache_ttl: Duration,
}

/// Where Better Auth's keys are and what its tokens must say.
#[derive(Debug, Clone, PartialEq)]
pub struct JwksConfig {
    /// The JWKS document's URL.
    pub url: String,
    /// The required `iss`.
    pub issuer: String,
    /// The required `aud`.
    pub audience: String,
    /// Shortest time between two fetches (unknown `kid`s, retries after a failure).
    pub refetch_interval: Duration,
    /// How long fetched keys are used before they are fetched again.
    pub cache_ttl: Duration,
    /// How long one fetch may take.
    pub fetch_timeout: Duration,
}

/// The validated configuration of the service, managed as Rocket state.
#[derive(Debug, Clone)]
pub struct AppConfig {
    /// The port the service listens on.
    pub port: u16,
    /// The service's database.
    pub database: DatabaseConfig,
    /// Whether embedded migrations (and each module's start-up work) run at start.
    pub migrate_on_start: bool,
    /// Limits on client connections (read by the HTTP server itself).
    pub connections: ConnectionsConfig,
    /// Token verification.
    pub auth: AuthConfig,
    /// Origins allowed by CORS, exactly as the browser sends them.
    pub allowed_origins: Vec<String>,
    /// Logging.
    pub log: LogConfig,
    /// Requests per verified user per minute; 0 turns limiting off.
    pub rate_limit_per_minute: u32,
    /// Whether `/metrics` is served.
    pub metrics_enabled: bool,
    /// The event streams.
    pub events: EventsConfig,
    /// Better Auth's email-and-password server (`BETTER_AUTH_SERVER=on`); `None`: off.
    pub accounts: Option<AccountsConfig>,
    /// How list answers are shaped (`LIST_ENVELOPE`): `None` a bare array, else the key of
    /// the array in `{"<key>": [...], "total": n}`.
    pub list_envelope: Option<&'static str>,
}

/// The accounts module's settings (`BETTER_AUTH_SERVER=on`).
#[derive(Debug, Clone)]
pub struct AccountsConfig {
    /// Better Auth's database (`BETTER_AUTH_DATABASE_URL`); `None`: the service's own.
    pub database_url: Option<SecretString>,
    /// Sign-in (and apart, sign-up) requests per client address per 10 s; 0: no limit.
    pub attempts_per_address: u32,
    /// Failed sign-ins per email per 15 minutes; 0: no limit.
    pub failures_per_account: u32,
    /// The proxy header naming the client's address (its last hop); `None`: the peer.
    pub client_ip_header: Option<String>,
    /// Password hashes computed at once.
    pub hashes_at_once: usize,
}

/// Event stream settings.
#[derive(Debug, Clone)]
pub struct EventsConfig {
    /// Open streams one user may hold on this instance.
    pub max_per_user: usize,
    /// Open streams on this instance.
    pub max_streams: usize,
    /// Longest silence on a stream before a heartbeat comment.
    pub heartbeat: Duration,
    /// How often the feed reads the event log whatever wakes it (`EVENTS_POLL_MS`).
    pub poll: Duration,
    /// How long events stay in the log, resumable (`EVENTS_RETENTION`).
    pub retention: Duration,
}

#[derive(Deserialize, Default)]
struct RawConfig {
    #[serde(default)]
    auth: RawAuth,
    #[serde(default)]
    cors: RawCors,
    migrate_on_start: Option<bool>,
    #[serde(default)]
    rate_limit: RawRateLimit,
    #[serde(default)]
    metrics: RawMetrics,
    #[serde(default)]
    events: RawEvents,
    list_envelope: Option<String>,
}

#[derive(Deserialize, Default)]
struct RawEvents {
    max_per_user: Option<u64>,
    max_streams: Option<u64>,
    heartbeat_secs: Option<f64>,
    poll_ms: Option<u64>,
    retention: Option<rocket::figment::value::Value>,
}

#[derive(Deserialize, Default)]
struct RawRateLimit {
    per_minute: Option<u32>,
}

#[derive(Deserialize, Default)]
struct RawMetrics {
    enabled: Option<bool>,
}

#[derive(Deserialize, Default)]
struct RawAuth {
    secret: Option<String>,
    leeway_secs: Option<u64>,
    better_auth_url: Option<String>,
    jwks_url: Option<String>,
    issuer: Option<String>,
    audience: Option<String>,
    jwks_refetch_secs: Option<f64>,
    jwks_cache_ttl_secs: Option<f64>,
    jwks_timeout_secs: Option<f64>,
    sessions: Option<bool>,
    session_database_url: Option<String>,
    session_table: Option<String>,
    session_cache_secs: Option<u64>,
    cookies: Option<bool>,
    cookie_prefix: Option<String>,
    server: Option<bool>,
    attempts_per_address: Option<u32>,
    failures_per_account: Option<u32>,
    client_ip_header: Option<String>,
    password_hashes_at_once: Option<u64>,
}

#[derive(Deserialize, Default)]
struct RawCors {
    allowed_origins: Option<OneOrMany>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

const DEFAULT_ORIGINS: &str = "http://localhost:3000,http://127.0.0.1:3000";

impl AppConfig {
    /// Extracts and validates the configuration of the figment's selected profile.
    pub fn from_figment(figment: &Figment) -> Result<Self, ConfigError> {
        let release = figment.profile() == "release";
        let mut raw: RawConfig = figment
            .extract()
            .map_err(|e| ConfigError::new(describe_figment_error(&e)))?;

        let database = DatabaseConfig::from_pool_figment(&figment.focus("databases.todo"))?;
        let connections = ConnectionsConfig::from_figment(figment)?;

        let server = raw.auth.server.unwrap_or(false);
        if server {
            // The server's sessions work on every task route, by header and by cookie.
            raw.auth.sessions = Some(true);
            raw.auth.cookies = Some(true);
        }
        let jwks = JwksConfig::from_raw(&raw.auth)?;
        let sessions = SessionsConfig::from_raw(&raw.auth)?;
        let secret =
            match raw.auth.secret.as_deref().filter(|s| !s.is_empty()) {
                Some(secret) => Some(secret.to_owned()),
                None if release && (jwks.is_some() || sessions.is_some()) => None,
                None if release => return Err(ConfigError::new(
                    "BETTER_AUTH_SECRET (at least 32 characters) or BETTER_AUTH_URL must be set",
                )),
                // Debug keeps HS256 on, so `todo-api token` works beside a local Better Auth.
                None => Some(DEV_SECRET.to_owned()),
            };
        if let Some(secret) = &secret {
            if secret.chars().count() < MIN_SECRET_CHARS {
                return Err(ConfigError::new(format!(
                    "BETTER_AUTH_SECRET must be at least {MIN_SECRET_CHARS} characters"
                )));
            }
        }
        let dev_secret = secret.as_deref() == Some(DEV_SECRET);
        if dev_secret && release {
            return Err(ConfigError::new(
                "BETTER_AUTH_SECRET is the development secret; set a real one for release",
            ));
        }

        if server && secret.is_none() {
            return Err(ConfigError::new(
                "BETTER_AUTH_SERVER=on needs BETTER_AUTH_SECRET (its cookies are signed with it)",
            ));
        }
        let cookie_prefix = cookie_prefix(&raw.auth, sessions.is_some(), secret.is_some())?;
        let accounts = server
            .then(|| AccountsConfig::from_raw(&raw.auth))
            .transpose()?;

        let origins = match raw.cors.allowed_origins {
            None => split_origins(DEFAULT_ORIGINS),
            Some(OneOrMany::One(list)) => split_origins(&list),
            Some(OneOrMany::Many(list)) => list.iter().map(|o| o.trim().to_owned()).collect(),
        };
        let allowed_origins = origins
            .into_iter()
            .map(|origin| validate_origin(&origin))
            .collect::<Result<Vec<_>, _>>()?;

        let port = figment
            .extract_inner::<u16>("port")
            .map_err(|e| ConfigError::new(describe_figment_error(&e)))?;
        Ok(Self {
            port,
            database,
            migrate_on_start: raw.migrate_on_start.unwrap_or(true),
            connections,
            auth: AuthConfig {
                secret: secret.map(SecretString::from),
                dev_secret,
                leeway_secs: raw.auth.leeway_secs.unwrap_or(30),
                jwks,
                sessions,
                cookie_prefix,
            },
            allowed_origins,
            log: LogConfig::from_figment(figment)?,
            rate_limit_per_minute: raw.rate_limit.per_minute.unwrap_or(100),
            metrics_enabled: raw.metrics.enabled.unwrap_or(!release),
            events: EventsConfig::from_raw(raw.events)?,
            accounts,
            list_envelope: list_envelope(raw.list_envelope.as_deref())?,
        })
    }

    /// The names of the settings that came from the environment, for the start-up log.
    pub fn settings_from_env() -> Vec<&'static str> {
        VARIABLES
            .iter()
            .map(|variable| variable.name)
            .chain(["ROCKET_PROFILE"])
            .filter(|name| std::env::var_os(name).is_some_and(|v| !v.is_empty()))
            .collect()
    }
}

/// `LIST_ENVELOPE`: `array` (the default) or the key a list's array goes under.
fn list_envelope(value: Option<&str>) -> Result<Option<&'static str>, ConfigError> {
    match value.map(|v| v.trim().to_ascii_lowercase()).as_deref() {
        None | Some("" | "array") => Ok(None),
        Some("tasks") => Ok(Some("tasks")),
        Some("items") => Ok(Some("items")),
        Some("data") => Ok(Some("data")),
        Some(_) => Err(ConfigError::new(
            "LIST_ENVELOPE must be array, tasks, items or data",
        )),
    }
}

/// An `http` or `https` URL with a host, or a one-line error naming `name`.
fn http_url(name: &str, raw: &str) -> Result<url::Url, ConfigError> {
    let invalid = || ConfigError::new(format!("{name} must be an http:// or https:// URL"));
    let url = url::Url::parse(raw.trim()).map_err(|_| invalid())?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(invalid());
    }
    Ok(url)
}

fn seconds(name: &str, value: Option<f64>, default: f64) -> Result<Duration, ConfigError> {
    let secs = value.unwrap_or(default);
    if secs.is_finite() && secs > 0.0 && secs < 1e9 {
        Ok(Duration::from_secs_f64(secs))
    } else {
        Err(ConfigError::new(format!(
            "{name} must be a number of seconds above 0"
        )))
    }
}

/// How long events stay resumable unless `EVENTS_RETENTION` says otherwise.
const DEFAULT_RETENTION: Duration = Duration::from_secs(24 * 60 * 60);

/// A retention: a number of seconds, or a number with `s`, `m`, `h` or `d`; above 0.
fn retention(value: &rocket::figment::value::Value) -> Option<Duration> {
    let text = match value {
        rocket::figment::value::Value::Num(_, number) => number.to_f64()?.to_string(),
        rocket::figment::value::Value::String(_, text) => text.trim().to_owned(),
        _ => return None,
    };
    let split = text
        .find(|c: char| c.is_ascii_alphabetic())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.trim().parse().ok()?;
    let scale = match unit.trim() {
        "" | "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        "d" => 86_400.0,
        _ => return None,
    };
    let secs = number * scale;
    (secs.is_finite() && secs > 0.0 && secs < 1e10).then(|| Duration::from_secs_f64(secs))
}

impl EventsConfig {
    fn from_raw(raw: RawEvents) -> Result<Self, ConfigError> {
        let count = |value: Option<u64>, default: usize| {
            value.map_or(default, |v| usize::try_from(v).unwrap_or(usize::MAX).max(1))
        };
        let poll_ms = raw.poll_ms.unwrap_or(1000);
        if !(10..=3_600_000).contains(&poll_ms) {
            return Err(ConfigError::new(
                "EVENTS_POLL_MS must be a number of milliseconds from 10 to 3600000",
            ));
        }
        Ok(Self {
            max_per_user: count(raw.max_per_user, 16),
            max_streams: count(raw.max_streams, 10_000),
            heartbeat: seconds("events.heartbeat_secs", raw.heartbeat_secs, 15.0)?,
            poll: Duration::from_millis(poll_ms),
            retention: match raw.retention {
                None => DEFAULT_RETENTION,
                Some(value) => retention(&value).ok_or_else(|| {
                    ConfigError::new(
                        "EVENTS_RETENTION must be a duration such as 24h, 90m, 3600s or 2d \
                         (a bare number is seconds), above 0",
                    )
                })?,
            },
        })
    }
}

/// The cookie prefix when `BETTER_AUTH_COOKIES=on`, checked against what cookies need.
fn cookie_prefix(
    raw: &RawAuth,
    sessions: bool,
    secret: bool,
) -> Result<Option<String>, ConfigError> {
    if !raw.cookies.unwrap_or(false) {
        return Ok(None);
    }
    if !sessions {
        return Err(ConfigError::new(
            "BETTER_AUTH_COOKIES=on needs BETTER_AUTH_SESSIONS=on (the cookie holds a session token)",
        ));
    }
    if !secret {
        return Err(ConfigError::new(
            "BETTER_AUTH_COOKIES=on needs BETTER_AUTH_SECRET (the cookie is signed with it)",
        ));
    }
    let prefix = raw
        .cookie_prefix
        .as_deref()
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .unwrap_or("better-auth");
    // A cookie name's characters (RFC 6265 token), short.
    let token_char = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if prefix.len() > 64 || !prefix.chars().all(token_char) {
        return Err(ConfigError::new(
            "BETTER_AUTH_COOKIE_PREFIX must be a cookie name prefix (letters, digits, - _ .), at most 64 characters",
        ));
    }
    Ok(Some(prefix.to_owned()))
}

impl AccountsConfig {
    fn from_raw(raw: &RawAuth) -> Result<Self, ConfigError> {
        let header = raw
            .client_ip_header
            .as_deref()
            .map(str::trim)
            .filter(|h| !h.is_empty());
        if let Some(header) = header {
            let token_char = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
            if header.len() > 64 || !header.chars().all(token_char) {
                return Err(ConfigError::new(
                    "CLIENT_IP_HEADER must be a header name such as X-Forwarded-For",
                ));
            }
        }
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Ok(Self {
            database_url: raw
                .session_database_url
                .as_deref()
                .map(str::trim)
                .filter(|url| !url.is_empty())
                .map(|url| SecretString::from(url.to_owned())),
            attempts_per_address: raw.attempts_per_address.unwrap_or(3),
            failures_per_account: raw.failures_per_account.unwrap_or(10),
            client_ip_header: header.map(str::to_owned),
            hashes_at_once: raw
                .password_hashes_at_once
                .map_or(cores, |n| usize::try_from(n).unwrap_or(cores).max(1)),
        })
    }
}

impl SessionsConfig {
    fn from_raw(raw: &RawAuth) -> Result<Option<Self>, ConfigError> {
        if !raw.sessions.unwrap_or(false) {
            return Ok(None);
        }
        let database_url = raw
            .session_database_url
            .as_deref()
            .map(str::trim)
            .filter(|url| !url.is_empty());
        if let Some(url) = database_url {
            Backend::from_url(url).map_err(|_| {
                ConfigError::new(
                    "BETTER_AUTH_DATABASE_URL must start with sqlite:// or postgres://",
                )
            })?;
        }
        let table = raw
            .session_table
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .unwrap_or("session");
        let identifier = |part: &str| {
            let mut chars = part.chars();
            chars
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
                && part.len() <= 63
        };
        let parts: Vec<&str> = table.split('.').collect();
        if parts.len() > 2 || !parts.iter().all(|part| identifier(part)) {
            return Err(ConfigError::new(
                "BETTER_AUTH_SESSION_TABLE must be a table name (letters, digits, _), optionally schema.table",
            ));
        }
        Ok(Some(Self {
            database_url: database_url.map(|url| SecretString::from(url.to_owned())),
            table: table.to_owned(),
            cache_ttl: Duration::from_secs(raw.session_cache_secs.unwrap_or(5)),
        }))
    }
}

impl JwksConfig {
    /// JWKS is on when `BETTER_AUTH_URL` or `BETTER_AUTH_JWKS_URL` is set; `iss` and `aud`
    /// default to the origin of `BETTER_AUTH_URL`, which is what Better Auth writes.
    fn from_raw(raw: &RawAuth) -> Result<Option<Self>, ConfigError> {
        let text = |v: &Option<String>| {
            v.as_deref()
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        let base = text(&raw.better_auth_url)
            .map(|url| http_url("BETTER_AUTH_URL", &url))
            .transpose()?;
        let url = match (text(&raw.jwks_url), &base) {
            (Some(url), _) => http_url("BETTER_AUTH_JWKS_URL", &url)?.to_string(),
            (None, Some(base)) => format!("{}/api/auth/jwks", base.as_str().trim_end_matches('/')),
            (None, None) => return Ok(None),
        };
        let origin = base.map(|base| base.origin().ascii_serialization());
        let required = |value: Option<String>, name: &str| {
            value.or_else(|| origin.clone()).ok_or_else(|| {
                ConfigError::new(format!(
                    "{name} must be set when BETTER_AUTH_JWKS_URL is used without BETTER_AUTH_URL"
                ))
            })
        };
        Ok(Some(Self {
            url,
            issuer: required(text(&raw.issuer), "JWT_ISSUER")?,
            audience: required(text(&raw.audience), "JWT_AUDIENCE")?,
            refetch_interval: seconds("JWKS_REFETCH_SECS", raw.jwks_refetch_secs, 30.0)?,
            cache_ttl: seconds("JWKS_CACHE_TTL_SECS", raw.jwks_cache_ttl_secs, 600.0)?,
            fetch_timeout: seconds("auth.jwks_timeout_secs", raw.jwks_timeout_secs, 5.0)?,
        }))
    }
}

impl LogConfig {
    /// Reads `log.level` and `log.format`, defaulting by profile.
    pub fn from_figment(figment: &Figment) -> Result<Self, ConfigError> {
        let level = figment
            .extract_inner::<String>("logging.level")
            .unwrap_or_else(|_| "info".to_owned());
        if tracing_subscriber::EnvFilter::try_new(&level).is_err() {
            return Err(ConfigError::new(
                "LOG_LEVEL must be a level (error, warn, info, debug, trace) or a filter",
            ));
        }
        let format = match figment.extract_inner::<String>("logging.format") {
            Ok(format) => match format.trim().to_ascii_lowercase().as_str() {
                "text" => LogFormat::Text,
                "json" => LogFormat::Json,
                _ => return Err(ConfigError::new("LOG_FORMAT must be text or json")),
            },
            Err(_) if figment.profile() == "release" => LogFormat::Json,
            Err(_) => LogFormat::Text,
        };
        Ok(Self { level, format })
    }
}

fn split_origins(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|origin| !origin.is_empty())
        .map(str::to_owned)
        .collect()
}

fn validate_origin(origin: &str) -> Result<String, ConfigError> {
    let invalid = || {
        ConfigError::new(format!(
            "ALLOWED_ORIGINS has an invalid origin {origin:?}: use scheme://host[:port], never *"
        ))
    };
    let url = url::Url::parse(origin).map_err(|_| invalid())?;
    let is_bare_origin = matches!(url.scheme(), "http" | "https")
        && url.host_str().is_some()
        && url.path() == "/"
        && url.query().is_none()
        && !origin.ends_with('/');
    if !is_bare_origin {
        return Err(invalid());
    }
    Ok(url.origin().ascii_serialization())
}

/// The validated configuration, for the stages attached after `config::stage()`. `None`
/// (after logging which stage asked) when the configuration stage is missing: the asking
/// stage then refuses to start, so no feature quietly turns itself off.
pub fn of<'a, P: Phase>(rocket: &'a Rocket<P>, stage: &str) -> Option<&'a AppConfig> {
    let config = rocket.state::<AppConfig>();
    if config.is_none() {
        tracing::error!("the {stage} stage needs config::stage() attached before it");
    }
    config
}

/// The configuration fairing: validates once at ignite and manages [`AppConfig`].
pub fn stage() -> AdHoc {
    AdHoc::try_on_ignite("Configuration", |rocket| async move {
        match AppConfig::from_figment(rocket.figment()) {
            Ok(config) => {
                if config.auth.dev_secret {
                    tracing::warn!(
                        "using the built-in development secret: never do this in production"
                    );
                }
                Ok(rocket.manage(config))
            }
            Err(error) => {
                tracing::error!("{error}");
                Err(rocket)
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_normalised_and_wildcards_refused() {
        assert_eq!(
            validate_origin("http://localhost:3000"),
            Ok("http://localhost:3000".to_owned())
        );
        assert_eq!(
            validate_origin("https://app.example.com"),
            Ok("https://app.example.com".to_owned())
        );
        for bad in [
            "*",
            "localhost:3000",
            "http://x.com/path",
            "http://x.com/",
            "ftp://x.com",
        ] {
            assert!(validate_origin(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn secret_debug_output_hides_the_value() {
        let secret = SecretString::from("super-secret-value");
        assert!(!format!("{secret:?}").contains("super-secret-value"));
    }
}

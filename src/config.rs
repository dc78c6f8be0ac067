//! Configuration: one figment (Rocket.toml profile, `ROCKET_*`, then the service's own
//! variable names) and one validated [`AppConfig`] extracted from it.
//!
//! Invariant: an [`AppConfig`] only exists when every setting passed validation, and its
//! `Debug` output never contains the secret.

use std::fmt;

use rocket::fairing::AdHoc;
use rocket::figment::providers::{Format, Serialized, Toml};
use rocket::figment::value::{Dict, Value};
use rocket::figment::{Figment, Profile};
use serde::Deserialize;

/// The secret used when none is configured in the debug profile. Release refuses it.
pub const DEV_SECRET: &str = "INSECURE-DEV-SECRET-do-not-use-in-production-0123456789";

const EMBEDDED_ROCKET_TOML: &str = include_str!("../Rocket.toml");

/// Shortest accepted `BETTER_AUTH_SECRET`, in characters.
pub const MIN_SECRET_CHARS: usize = 32;

/// A configuration problem, as one line that names the setting at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("configuration error: {0}")]
pub struct ConfigError(pub String);

impl ConfigError {
    fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

/// Builds the service's figment from Rocket.toml, `ROCKET_*` and the process environment.
pub fn figment() -> Result<Figment, ConfigError> {
    figment_with_env(|name| std::env::var(name).ok())
}

/// Like [`figment`], reading variables through `env` (tests pass a fixed map).
pub fn figment_with_env(env: impl Fn(&str) -> Option<String>) -> Result<Figment, ConfigError> {
    let env = |name: &str| env(name).filter(|value| !value.trim().is_empty());
    let mut overrides = Dict::new();
    let mut set = |key: &str, value: Value| {
        overrides.insert(key.to_owned(), value);
    };

    if let Some(url) = env("DATABASE_URL").or_else(|| env("NEON_DB_URL")) {
        set("databases.todo.url", url.into());
    }
    if let Some(secret) = env("BETTER_AUTH_SECRET") {
        set("auth.secret", secret.into());
    }
    if let Some(origins) = env("ALLOWED_ORIGINS") {
        set("cors.allowed_origins", origins.into());
    }
    if let Some(level) = env("LOG_LEVEL") {
        set("logging.level", level.into());
    }
    if let Some(format) = env("LOG_FORMAT") {
        set("logging.format", format.into());
    }
    if let Some(port) = env("PORT") {
        set("port", parse_number::<u16>("PORT", &port, 1)?.into());
    }
    if let Some(max) = env("DB_MAX_CONNECTIONS") {
        let max = parse_number::<u32>("DB_MAX_CONNECTIONS", &max, 1)?;
        set("databases.todo.max_connections", max.into());
    }
    if let Some(min) = env("DB_MIN_CONNECTIONS") {
        let min = parse_number::<u32>("DB_MIN_CONNECTIONS", &min, 0)?;
        set("databases.todo.min_connections", min.into());
    }
    if let Some(migrate) = env("MIGRATE_ON_START") {
        let migrate = match migrate.trim().to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => true,
            "0" | "false" | "no" | "off" => false,
            _ => return Err(ConfigError::new("MIGRATE_ON_START must be true or false")),
        };
        set("migrate_on_start", migrate.into());
    }

    // Rocket.toml is also compiled in, beneath the file on disk: the binary keeps its
    // profile defaults when started from another folder or shipped without the file.
    let mut figment = rocket::Config::figment().join(Toml::string(EMBEDDED_ROCKET_TOML).nested());
    for (key, value) in overrides {
        figment = figment.merge(Serialized::global(&key, value));
    }
    Ok(figment)
}

fn parse_number<T>(name: &str, raw: &str, min: T) -> Result<T, ConfigError>
where
    T: std::str::FromStr + PartialOrd + fmt::Display,
{
    match raw.trim().parse::<T>() {
        Ok(value) if value >= min => Ok(value),
        _ => Err(ConfigError::new(format!(
            "{name} must be a whole number of at least {min}"
        ))),
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

/// A secret that never shows in `Debug` output or logs.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// The secret's value, for the verifier and the token command only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// Token verification settings.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// The HS256 shared secret (`BETTER_AUTH_SECRET`).
    pub secret: Secret,
    /// Whether the secret is the marked development secret.
    pub dev_secret: bool,
    /// Clock leeway for `exp` and `nbf`, in seconds.
    pub leeway_secs: u64,
}

/// The validated configuration of the service, managed as Rocket state.
#[derive(Debug, Clone)]
pub struct AppConfig {
    /// The selected profile (`debug` or `release`).
    pub profile: Profile,
    /// Token verification.
    pub auth: AuthConfig,
    /// Origins allowed by CORS, exactly as the browser sends them.
    pub allowed_origins: Vec<String>,
    /// Logging.
    pub log: LogConfig,
    /// Whether embedded migrations run at start.
    pub migrate_on_start: bool,
}

#[derive(Deserialize, Default)]
struct RawConfig {
    #[serde(default)]
    auth: RawAuth,
    #[serde(default)]
    cors: RawCors,
    #[serde(default)]
    databases: RawDatabases,
    migrate_on_start: Option<bool>,
}

#[derive(Deserialize, Default)]
struct RawAuth {
    secret: Option<String>,
    leeway_secs: Option<u64>,
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

#[derive(Deserialize, Default)]
struct RawDatabases {
    todo: Option<RawDatabase>,
}

#[derive(Deserialize, Default)]
struct RawDatabase {
    url: Option<String>,
}

const DEFAULT_ORIGINS: &str = "http://localhost:3000,http://127.0.0.1:3000";

impl AppConfig {
    /// Extracts and validates the configuration of the figment's selected profile.
    pub fn from_figment(figment: &Figment) -> Result<Self, ConfigError> {
        let profile = figment.profile().clone();
        let release = profile == "release";
        let raw: RawConfig = figment
            .extract()
            .map_err(|e| ConfigError::new(describe_figment_error(&e)))?;

        let url = raw
            .databases
            .todo
            .and_then(|db| db.url)
            .filter(|url| !url.trim().is_empty());
        match url {
            None => {
                return Err(ConfigError::new(
                    "DATABASE_URL (or NEON_DB_URL) must be set: sqlite://PATH or postgres://…",
                ))
            }
            Some(url) => crate::db::Backend::from_url(&url).map(drop)?,
        }

        let secret = match raw.auth.secret.filter(|s| !s.is_empty()) {
            Some(secret) => secret,
            None if release => {
                return Err(ConfigError::new(
                    "BETTER_AUTH_SECRET must be set (at least 32 characters)",
                ))
            }
            None => DEV_SECRET.to_owned(),
        };
        if secret.chars().count() < MIN_SECRET_CHARS {
            return Err(ConfigError::new(format!(
                "BETTER_AUTH_SECRET must be at least {MIN_SECRET_CHARS} characters"
            )));
        }
        let dev_secret = secret == DEV_SECRET;
        if dev_secret && release {
            return Err(ConfigError::new(
                "BETTER_AUTH_SECRET is the development secret; set a real one for release",
            ));
        }

        let origins = match raw.cors.allowed_origins {
            None => split_origins(DEFAULT_ORIGINS),
            Some(OneOrMany::One(list)) => split_origins(&list),
            Some(OneOrMany::Many(list)) => list.iter().map(|o| o.trim().to_owned()).collect(),
        };
        let allowed_origins = origins
            .into_iter()
            .map(|origin| validate_origin(&origin))
            .collect::<Result<Vec<_>, _>>()?;

        Ok(Self {
            profile,
            auth: AuthConfig {
                secret: Secret(secret),
                dev_secret,
                leeway_secs: raw.auth.leeway_secs.unwrap_or(30),
            },
            allowed_origins,
            log: LogConfig::from_figment(figment)?,
            migrate_on_start: raw.migrate_on_start.unwrap_or(true),
        })
    }

    /// The names of the settings that came from the environment, for the start-up log.
    pub fn settings_from_env() -> Vec<&'static str> {
        const NAMES: [&str; 11] = [
            "DATABASE_URL",
            "NEON_DB_URL",
            "BETTER_AUTH_SECRET",
            "ALLOWED_ORIGINS",
            "PORT",
            "LOG_LEVEL",
            "LOG_FORMAT",
            "DB_MAX_CONNECTIONS",
            "DB_MIN_CONNECTIONS",
            "MIGRATE_ON_START",
            "ROCKET_PROFILE",
        ];
        NAMES
            .into_iter()
            .filter(|name| std::env::var_os(name).is_some_and(|v| !v.is_empty()))
            .collect()
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

/// Names the setting behind a figment error without echoing its value.
fn describe_figment_error(error: &rocket::figment::Error) -> String {
    let key = error.path.join(".");
    let name = match key.as_str() {
        "databases.todo.url" => "DATABASE_URL",
        "auth.secret" => "BETTER_AUTH_SECRET",
        "cors.allowed_origins" => "ALLOWED_ORIGINS",
        "migrate_on_start" => "MIGRATE_ON_START",
        "" => "Rocket.toml",
        other => other,
    };
    format!("{name} has an invalid value ({})", error.kind)
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
        let secret = Secret("super-secret-value".to_owned());
        assert!(!format!("{secret:?}").contains("super-secret-value"));
    }
}

//! The environment variables the service reads, and the one figment they are merged into:
//! Rocket's defaults, Rocket.toml (compiled in, then the file), `ROCKET_*`, then these.

use rocket::figment::providers::{Env, Format, Serialized, Toml};
use rocket::figment::value::Value;
use rocket::figment::{Figment, Profile};

use super::database::ConnectionsConfig;
use super::ConfigError;

const EMBEDDED_ROCKET_TOML: &str = include_str!("../../Rocket.toml");

/// Builds the service's figment from Rocket.toml, `ROCKET_*` and the process environment.
pub fn figment() -> Result<Figment, ConfigError> {
    figment_with_env(|name| std::env::var(name).ok())
}

/// How an environment variable's text becomes a figment value.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Text,
    /// A whole number from `min` to `max`.
    Number {
        min: u64,
        max: u64,
    },
    Bool,
    /// A number of seconds above zero; fractions allowed.
    Seconds,
}

/// A whole number of at least `min`, up to `u32::MAX`.
const fn at_least(min: u64) -> Kind {
    Kind::Number {
        min,
        max: u32::MAX as u64,
    }
}

/// One environment variable the service reads: its name, the figment key it sets, and
/// how its text is read.
pub(super) struct Variable {
    pub(super) name: &'static str,
    pub(super) key: &'static str,
    kind: Kind,
}

const fn var(name: &'static str, key: &'static str, kind: Kind) -> Variable {
    Variable { name, key, kind }
}

/// Every variable the service reads (the configuration reference lists each; a test keeps
/// the two in step). Later rows win, so `DATABASE_URL` overrides
/// `NEON_DB_URL`; a figment error at a key is reported under the last row's name.
pub(super) const VARIABLES: &[Variable] = &[
    var("NEON_DB_URL", "databases.todo.url", Kind::Text),
    var("DATABASE_URL", "databases.todo.url", Kind::Text),
    var("BETTER_AUTH_SECRET", "auth.secret", Kind::Text),
    var("BETTER_AUTH_URL", "auth.better_auth_url", Kind::Text),
    var("BETTER_AUTH_JWKS_URL", "auth.jwks_url", Kind::Text),
    var("JWT_ISSUER", "auth.issuer", Kind::Text),
    var("JWT_AUDIENCE", "auth.audience", Kind::Text),
    var("BETTER_AUTH_SESSIONS", "auth.sessions", Kind::Bool),
    var("BETTER_AUTH_COOKIES", "auth.cookies", Kind::Bool),
    var(
        "BETTER_AUTH_COOKIE_PREFIX",
        "auth.cookie_prefix",
        Kind::Text,
    ),
    var(
        "BETTER_AUTH_DATABASE_URL",
        "auth.session_database_url",
        Kind::Text,
    ),
    var(
        "BETTER_AUTH_SESSION_TABLE",
        "auth.session_table",
        Kind::Text,
    ),
    var(
        "BETTER_AUTH_SESSION_CACHE_SECS",
        "auth.session_cache_secs",
        Kind::Number {
            min: 0,
            max: 86_400,
        },
    ),
    var("JWT_LEEWAY_SECS", "auth.leeway_secs", at_least(0)),
    var("JWKS_REFETCH_SECS", "auth.jwks_refetch_secs", Kind::Seconds),
    var(
        "JWKS_CACHE_TTL_SECS",
        "auth.jwks_cache_ttl_secs",
        Kind::Seconds,
    ),
    var("ALLOWED_ORIGINS", "cors.allowed_origins", Kind::Text),
    var("LOG_LEVEL", "logging.level", Kind::Text),
    var("LOG_FORMAT", "logging.format", Kind::Text),
    var(
        "PORT",
        "port",
        Kind::Number {
            min: 1,
            max: u16::MAX as u64,
        },
    ),
    var(
        "DB_MAX_CONNECTIONS",
        "databases.todo.max_connections",
        at_least(1),
    ),
    var(
        "DB_MIN_CONNECTIONS",
        "databases.todo.min_connections",
        at_least(0),
    ),
    var("MIGRATE_ON_START", "migrate_on_start", Kind::Bool),
    var("SHUTDOWN_GRACE_SECS", "shutdown.grace", at_least(0)),
    var(
        "RATE_LIMIT_PER_MINUTE",
        "rate_limit.per_minute",
        at_least(0),
    ),
    var("METRICS_ENABLED", "metrics.enabled", Kind::Bool),
    var(
        "HEADER_READ_TIMEOUT_SECS",
        "connections.header_read_timeout",
        at_least(0),
    ),
    var("MAX_CONNECTIONS", "connections.max", at_least(1)),
    var(
        "DATABASE_DIRECT_URL",
        "databases.todo.direct_url",
        Kind::Text,
    ),
    var(
        "DATABASE_LISTEN_URL",
        "databases.todo.listen_url",
        Kind::Text,
    ),
    var(
        "DATABASE_PREPARED_STATEMENTS",
        "databases.todo.prepared_statements",
        Kind::Text,
    ),
    var("LIST_ENVELOPE", "list_envelope", Kind::Text),
    var(
        "SQLITE_SYNCHRONOUS",
        "databases.todo.sqlite_synchronous",
        Kind::Text,
    ),
    var("BETTER_AUTH_SERVER", "auth.server", Kind::Bool),
    var(
        "AUTH_ATTEMPTS_PER_ADDRESS",
        "auth.attempts_per_address",
        at_least(0),
    ),
    var(
        "AUTH_FAILURES_PER_ACCOUNT",
        "auth.failures_per_account",
        at_least(0),
    ),
    var("CLIENT_IP_HEADER", "auth.client_ip_header", Kind::Text),
    var(
        "PASSWORD_HASHES_AT_ONCE",
        "auth.password_hashes_at_once",
        Kind::Number { min: 1, max: 1024 },
    ),
    var("EVENTS_POLL_MS", "events.poll_ms", at_least(10)),
    var("EVENTS_RETENTION", "events.retention", Kind::Text),
    var("EVENTS_MAX_PER_USER", "events.max_per_user", at_least(1)),
    var("EVENTS_MAX_STREAMS", "events.max_streams", at_least(1)),
];

/// Like [`figment`], reading variables through `env` (tests pass a fixed map).
pub fn figment_with_env(env: impl Fn(&str) -> Option<String>) -> Result<Figment, ConfigError> {
    // Rocket's own layers, with Rocket.toml compiled in between its defaults and the file
    // on disk: the binary keeps the project's settings (log level, body limits, grace
    // period, …) when started from another folder or shipped without the file, as the
    // container image is. (Joined beneath Rocket's defaults instead, Rocket's would win.)
    let mut figment = Figment::from(rocket::Config::default())
        .merge(Toml::string(EMBEDDED_ROCKET_TOML).nested())
        .merge(Toml::file(Env::var_or("ROCKET_CONFIG", "Rocket.toml")).nested())
        .merge(Env::prefixed("ROCKET_").ignore(&["PROFILE"]).global())
        .select(Profile::from_env_or(
            "ROCKET_PROFILE",
            rocket::Config::DEFAULT_PROFILE,
        ));
    for Variable { name, key, kind } in VARIABLES {
        let Some(raw) = env(name).filter(|value| !value.trim().is_empty()) else {
            continue;
        };
        let value: Value = match kind {
            Kind::Text => raw.into(),
            Kind::Number { min, max } => parse_number(name, &raw, *min, *max)?.into(),
            Kind::Bool => match raw.trim().to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => true.into(),
                "0" | "false" | "no" | "off" => false.into(),
                _ => return Err(ConfigError::new(format!("{name} must be true or false"))),
            },
            Kind::Seconds => match raw.trim().parse::<f64>() {
                Ok(secs) if secs > 0.0 && secs.is_finite() => secs.into(),
                _ => {
                    return Err(ConfigError::new(format!(
                        "{name} must be a number of seconds above 0"
                    )))
                }
            },
        };
        figment = figment.merge(Serialized::global(key, value));
    }
    // The connection limits' defaults live in `ConnectionsConfig`; the framework reads
    // the table as it is, so it is filled in beneath every other source.
    Ok(figment.join(Serialized::global(
        "connections",
        ConnectionsConfig::default(),
    )))
}

fn parse_number(name: &str, raw: &str, min: u64, max: u64) -> Result<u64, ConfigError> {
    match raw.trim().parse::<u64>() {
        Ok(value) if (min..=max).contains(&value) => Ok(value),
        _ => Err(ConfigError::new(format!(
            "{name} must be a whole number from {min} to {max}"
        ))),
    }
}

/// Names the setting behind a figment error without echoing its value: the variable
/// that sets its key (from [`VARIABLES`]), else the key itself.
pub(super) fn describe_figment_error(error: &rocket::figment::Error) -> String {
    let key = error.path.join(".");
    let name = VARIABLES
        .iter()
        .rev()
        .find(|variable| variable.key == key)
        .map_or(key.as_str(), |variable| variable.name);
    let name = if name.is_empty() { "Rocket.toml" } else { name };
    format!("{name} has an invalid value ({})", error.kind)
}

/// The names of every variable the service reads, for the configuration reference's test.
pub fn names() -> impl Iterator<Item = &'static str> {
    VARIABLES.iter().map(|variable| variable.name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_a_variable_sets_is_named_in_errors() {
        for variable in VARIABLES {
            let error = rocket::figment::Error::from("bad".to_owned()).with_path(variable.key);
            let described = describe_figment_error(&error);
            // The last row for a key names it (DATABASE_URL over NEON_DB_URL).
            let last = VARIABLES.iter().rev().find(|v| v.key == variable.key);
            assert!(
                last.is_some_and(|last| described.starts_with(last.name)),
                "{described}"
            );
        }
    }
}

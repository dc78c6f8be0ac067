//! The database and connection settings: which database a URL names, the pool's bounds,
//! and the limits the HTTP server puts on client connections.

use std::time::Duration;

use rocket::figment::Figment;
use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Serialize};

use super::ConfigError;

/// A database URL of a scheme the service does not speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("DATABASE_URL must start with sqlite:// or postgres:// (other schemes are not supported)")]
pub struct UnknownScheme;

/// Which database a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// An embedded SQLite file (`sqlite://PATH`).
    Sqlite,
    /// A PostgreSQL server (`postgres://…` or `postgresql://…`).
    Postgres,
}

impl Backend {
    /// Picks the backend from the URL scheme; anything else is refused, never guessed.
    pub fn from_url(url: &str) -> Result<Self, UnknownScheme> {
        let scheme = url
            .split(':')
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        match scheme.as_str() {
            "sqlite" => Ok(Self::Sqlite),
            "postgres" | "postgresql" => Ok(Self::Postgres),
            _ => Err(UnknownScheme),
        }
    }
}

/// A database to connect to, and the bounds of its pool. Its `Debug` output hides the URL
/// (it may hold a password).
#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    /// The URL.
    pub url: SecretString,
    /// Which database the URL names.
    pub backend: Backend,
    /// Most connections the pool opens.
    pub max_connections: u32,
    /// Connections the pool keeps open.
    pub min_connections: u32,
    /// How long a query waits for a connection (and SQLite for its write lock) before 503.
    pub acquire_timeout: Duration,
    /// How long a connection may sit idle before it is closed.
    pub idle_timeout: Option<Duration>,
    /// A direct (non-pooled) PostgreSQL URL for what needs a session of its own
    /// (migrations, `LISTEN`): `DATABASE_DIRECT_URL`, or its older name
    /// `DATABASE_LISTEN_URL`. `None`: derived from `url` (see [`DatabaseConfig::direct_url`]).
    pub direct_url: Option<SecretString>,
    /// Whether queries use named prepared statements (`DATABASE_PREPARED_STATEMENTS`).
    pub prepared_statements: PreparedStatements,
    /// SQLite: when a commit reaches the disk (`SQLITE_SYNCHRONOUS`).
    pub sqlite_synchronous: SqliteDurability,
}

/// SQLite: how far a commit is synced before it returns (WAL mode, `PRAGMA synchronous`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqliteDurability {
    /// `FULL`: every commit syncs the WAL, so an answered write survives a power loss or a
    /// crash of the host.
    Full,
    /// `NORMAL`: the WAL is synced only at checkpoints; an answered write survives a crash
    /// of the service, but the last ones can vanish in a power loss or a crash of the host.
    Normal,
}

impl SqliteDurability {
    fn parse(value: Option<&str>) -> Result<Self, ConfigError> {
        match value.map(|v| v.trim().to_ascii_lowercase()).as_deref() {
            None | Some("" | "full") => Ok(Self::Full),
            Some("normal") => Ok(Self::Normal),
            Some(_) => Err(ConfigError::new(
                "SQLITE_SYNCHRONOUS must be full or normal",
            )),
        }
    }
}

/// Whether PostgreSQL queries are prepared once per connection under a name and reused
/// (`on`), or sent as one unnamed statement each, in one round trip (`off`), which every
/// transaction-mode pooler serves. `auto` decides at start (see `db::postgres`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreparedStatements {
    /// Decide from the host and a probe of the connection.
    Auto,
    /// Named statements, cached per connection.
    On,
    /// One unnamed statement per query.
    Off,
}

impl PreparedStatements {
    fn parse(value: Option<&str>) -> Result<Self, ConfigError> {
        match value.map(|v| v.trim().to_ascii_lowercase()).as_deref() {
            None | Some("" | "auto") => Ok(Self::Auto),
            Some("on" | "true" | "1" | "yes") => Ok(Self::On),
            Some("off" | "false" | "0" | "no") => Ok(Self::Off),
            Some(_) => Err(ConfigError::new(
                "DATABASE_PREPARED_STATEMENTS must be auto, on or off",
            )),
        }
    }
}

/// `databases.todo` as Rocket.toml and the variables write it (rocket_db_pools' keys).
#[derive(Deserialize)]
struct RawDatabase {
    url: Option<String>,
    max_connections: Option<u32>,
    min_connections: Option<u32>,
    connect_timeout: Option<u64>,
    idle_timeout: Option<u64>,
    direct_url: Option<String>,
    listen_url: Option<String>,
    prepared_statements: Option<String>,
    sqlite_synchronous: Option<String>,
}

fn named_url(url: Option<String>) -> Option<String> {
    url.map(|url| url.trim().to_owned())
        .filter(|url| !url.is_empty())
}

/// Neon's pooled host name (`ep-name-123-pooler.region.aws.neon.tech`) without `-pooler`:
/// its direct host. `None` for any other host.
pub fn neon_direct_host(host: &str) -> Option<String> {
    let (first, rest) = host.split_once('.')?;
    let direct = first.strip_suffix("-pooler")?;
    (!direct.is_empty() && rest.ends_with(".neon.tech")).then(|| format!("{direct}.{rest}"))
}

impl DatabaseConfig {
    /// The pool settings of the figment focused on `databases.todo` (what rocket_db_pools
    /// hands the pool it opens), validated.
    pub fn from_pool_figment(figment: &Figment) -> Result<Self, ConfigError> {
        let raw: RawDatabase = figment.extract().map_err(|e| {
            ConfigError::new(format!(
                "databases.todo: invalid setting {}",
                e.path.join(".")
            ))
        })?;
        let url = raw
            .url
            .map(|url| url.trim().to_owned())
            .filter(|url| !url.is_empty())
            .ok_or_else(|| {
                ConfigError::new(
                    "DATABASE_URL (or NEON_DB_URL) must be set: sqlite://PATH or postgres://…",
                )
            })?;
        let backend = Backend::from_url(&url).map_err(|e| ConfigError::new(e.to_string()))?;
        let max_connections = raw.max_connections.unwrap_or(15).max(1);
        let direct_url = match (named_url(raw.direct_url), named_url(raw.listen_url)) {
            (Some(url), _) => Some(("DATABASE_DIRECT_URL", url)),
            (None, Some(url)) => Some(("DATABASE_LISTEN_URL", url)),
            (None, None) => None,
        };
        if let Some((name, direct)) = &direct_url {
            if Backend::from_url(direct) != Ok(Backend::Postgres) {
                return Err(ConfigError::new(format!(
                    "{name} must be a postgres:// URL (a direct, non-pooled one)"
                )));
            }
        }
        Ok(Self {
            url: SecretString::from(url),
            backend,
            max_connections,
            min_connections: raw.min_connections.unwrap_or(0).min(max_connections),
            acquire_timeout: Duration::from_secs(raw.connect_timeout.unwrap_or(3).max(1)),
            idle_timeout: raw.idle_timeout.map(Duration::from_secs),
            direct_url: direct_url.map(|(_, url)| SecretString::from(url)),
            prepared_statements: PreparedStatements::parse(raw.prepared_statements.as_deref())?,
            sqlite_synchronous: SqliteDurability::parse(raw.sqlite_synchronous.as_deref())?,
        })
    }

    /// A small pool of its own on another database (`url`), named `setting` in errors.
    pub fn other(
        url: &SecretString,
        setting: &str,
        max_connections: u32,
        acquire_timeout: Duration,
    ) -> Result<Self, ConfigError> {
        let backend = Backend::from_url(url.expose_secret()).map_err(|_| {
            ConfigError::new(format!(
                "{setting} must start with sqlite:// or postgres://"
            ))
        })?;
        Ok(Self {
            url: url.clone(),
            backend,
            max_connections,
            min_connections: 0,
            acquire_timeout,
            idle_timeout: Some(Duration::from_secs(300)),
            direct_url: None,
            prepared_statements: PreparedStatements::Auto,
            sqlite_synchronous: SqliteDurability::Full,
        })
    }
}

/// Limits on client connections, read by the HTTP server from the figment's `connections`
/// table; these are their defaults (see `figment_with_env`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ConnectionsConfig {
    /// Seconds a client has to send a request's headers (also the idle time allowed
    /// between keep-alive requests); 0 turns it off.
    pub header_read_timeout: u64,
    /// Open connections per instance; one more is answered 503 and closed.
    pub max: u64,
    /// Headers the HTTP parser reads; more is a bare 431.
    pub max_headers: u64,
    /// The HTTP parser's read buffer, so the largest request head; larger is a bare 431.
    pub max_header_bytes: u64,
    /// Serve h2c (HTTP/2 with prior knowledge) beside HTTP/1.1.
    pub http2: bool,
}

impl Default for ConnectionsConfig {
    fn default() -> Self {
        Self {
            header_read_timeout: 10,
            max: 10_000,
            max_headers: 200,
            max_header_bytes: 128 * 1024,
            http2: false,
        }
    }
}

impl ConnectionsConfig {
    /// The figment's `connections` table, validated.
    pub fn from_figment(figment: &Figment) -> Result<Self, ConfigError> {
        let limits: Self = figment
            .extract_inner("connections")
            .map_err(|e| ConfigError::new(super::describe_figment_error(&e)))?;
        if limits.max == 0 {
            return Err(ConfigError::new("MAX_CONNECTIONS must be at least 1"));
        }
        Ok(limits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_follows_the_url_scheme() {
        assert_eq!(
            Backend::from_url("sqlite://data/x.db").ok(),
            Some(Backend::Sqlite)
        );
        assert_eq!(
            Backend::from_url("postgres://u@h/db").ok(),
            Some(Backend::Postgres)
        );
        assert_eq!(
            Backend::from_url("postgresql://u@h/db").ok(),
            Some(Backend::Postgres)
        );
        assert!(Backend::from_url("mysql://u@h/db").is_err());
        assert!(Backend::from_url("data/x.db").is_err());
    }

    #[test]
    fn a_neon_pooled_host_gives_its_direct_host() {
        assert_eq!(
            neon_direct_host("ep-cool-darkness-123456-pooler.us-east-2.aws.neon.tech").as_deref(),
            Some("ep-cool-darkness-123456.us-east-2.aws.neon.tech")
        );
        for other in [
            "ep-cool-darkness-123456.us-east-2.aws.neon.tech",
            "localhost",
            "-pooler.x.neon.tech",
            "db-pooler.example.com",
        ] {
            assert_eq!(neon_direct_host(other), None, "{other}");
        }
    }

    #[test]
    fn prepared_statements_setting() {
        assert_eq!(
            PreparedStatements::parse(None),
            Ok(PreparedStatements::Auto)
        );
        assert_eq!(
            PreparedStatements::parse(Some(" OFF ")),
            Ok(PreparedStatements::Off)
        );
        assert_eq!(
            PreparedStatements::parse(Some("on")),
            Ok(PreparedStatements::On)
        );
        assert!(PreparedStatements::parse(Some("sometimes")).is_err());
    }
}

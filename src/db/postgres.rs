//! PostgreSQL connections as production reaches them: through a transaction-mode pooler
//! (PgBouncer, Supabase's pooler, Neon's `-pooler` host), over TLS.
//!
//! A transaction-mode pooler hands each transaction (each statement, outside one) to
//! whichever server connection is free, so nothing may outlive it: no named prepared
//! statement (sqlx names and caches them per connection), no session lock, no `LISTEN`.
//! With prepared statements off, every query is one unnamed statement sent in one round
//! trip (the vendored sqlx-postgres, see its PATCHED.md); what needs a session uses the
//! direct host.

use std::str::FromStr;
use std::time::Duration;

use secrecy::ExposeSecret as _;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgSslMode};
use sqlx::{Connection as _, Row as _};

use super::DbError;
use crate::config::{neon_direct_host, DatabaseConfig, PreparedStatements};

/// URL parameters the driver does not know, taken out before it parses the URL (it would
/// log each as ignored) and answered here instead.
const OWN_PARAMETERS: [&str; 2] = ["channel_binding", "pgbouncer"];

/// A PostgreSQL URL's connection options, and what it asked for that the driver does not
/// read itself.
pub struct Parsed {
    /// The driver's options.
    pub options: PgConnectOptions,
    /// `channel_binding=require` was asked for.
    pub channel_binding_required: bool,
    /// `pgbouncer=true` (Prisma's convention for a transaction-mode pooler).
    pub pgbouncer: bool,
}

/// Parses `url` (named `setting` in errors, which never carry the URL).
pub fn parse(url: &str, setting: &str) -> Result<Parsed, DbError> {
    let invalid = || DbError::Config(format!("{setting} is not a valid postgres:// URL"));
    let mut parsed = url::Url::parse(url).map_err(|_| invalid())?;
    let mut channel_binding_required = false;
    let mut pgbouncer = false;
    let kept: Vec<(String, String)> = parsed
        .query_pairs()
        .filter_map(|(key, value)| {
            match key.as_ref() {
                "channel_binding" => channel_binding_required = value == "require",
                "pgbouncer" => pgbouncer = value == "true",
                _ => return Some((key.into_owned(), value.into_owned())),
            }
            None
        })
        .collect();
    if parsed
        .query_pairs()
        .any(|(key, _)| OWN_PARAMETERS.contains(&key.as_ref()))
    {
        if kept.is_empty() {
            parsed.set_query(None);
        } else {
            parsed.query_pairs_mut().clear().extend_pairs(kept);
        }
    }
    let options = PgConnectOptions::from_str(parsed.as_str()).map_err(|_| invalid())?;
    Ok(Parsed {
        options,
        channel_binding_required,
        pgbouncer,
    })
}

/// What protects a connection with these options, in words for the start-up log.
pub fn protection(options: &PgConnectOptions) -> &'static str {
    match options.get_ssl_mode() {
        PgSslMode::VerifyFull => {
            "TLS, with the server's certificate and host name verified (sslmode=verify-full)"
        }
        PgSslMode::VerifyCa => {
            "TLS, with the server's certificate verified but not its host name (sslmode=verify-ca)"
        }
        PgSslMode::Require => {
            "TLS without verifying who answers (sslmode=require; use sslmode=verify-full to verify the server)"
        }
        PgSslMode::Prefer | PgSslMode::Allow => {
            "TLS only if the server offers it, unverified (use sslmode=verify-full)"
        }
        PgSslMode::Disable => "nothing (sslmode=disable)",
    }
}

/// Says once, at start, that `channel_binding=require` cannot be honoured and what
/// protects the connection instead. The connection is not refused: Neon's own connection
/// strings carry the parameter.
pub fn warn_channel_binding(setting: &str, options: &PgConnectOptions) {
    tracing::warn!(
        "{setting} asks for channel_binding=require, which the PostgreSQL driver cannot do \
         (it has no SCRAM channel binding); the connection is protected by {} instead",
        protection(options)
    );
}

/// The options of the direct (non-pooled) host, for migrations and `LISTEN`:
/// `DATABASE_DIRECT_URL` when set; else, for Neon's pooled host, the same without
/// `-pooler`; else the pool's own.
pub fn direct_options(settings: &DatabaseConfig) -> Result<PgConnectOptions, DbError> {
    if let Some(url) = &settings.direct_url {
        return Ok(parse(url.expose_secret(), "DATABASE_DIRECT_URL")?.options);
    }
    let options = parse(settings.url.expose_secret(), "DATABASE_URL")?.options;
    Ok(match neon_direct_host(options.get_host()) {
        Some(host) => options.host(&host),
        None => options,
    })
}

/// Whether the pool keeps named prepared statements, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Statements {
    /// Named statements, cached per connection.
    pub named: bool,
    /// Why, for the start-up log.
    pub reason: &'static str,
    /// Whether the choice is final: not when the probe could not reach the server (the
    /// choice is then made again once it answers, see [`settle_later`]).
    pub settled: bool,
}

/// Decides [`Statements`] for a pool on `parsed`: the setting when it is `on` or `off`;
/// else from the host (Supabase's transaction pooler, `pgbouncer=true`, Neon's pooler,
/// which keeps them); else by asking the server what a pooler would show (see [`probe`]).
pub async fn decide(settings: &DatabaseConfig, parsed: &Parsed) -> Statements {
    let named = |named, reason| Statements {
        named,
        reason,
        settled: true,
    };
    match settings.prepared_statements {
        PreparedStatements::On => return named(true, "DATABASE_PREPARED_STATEMENTS=on"),
        PreparedStatements::Off => return named(false, "DATABASE_PREPARED_STATEMENTS=off"),
        PreparedStatements::Auto => {}
    }
    let host = parsed.options.get_host().to_ascii_lowercase();
    if parsed.pgbouncer {
        return named(false, "the URL says pgbouncer=true");
    }
    if host.ends_with(".pooler.supabase.com") && parsed.options.get_port() == 6543 {
        return named(false, "Supabase's transaction pooler (port 6543)");
    }
    if neon_direct_host(&host).is_some() {
        return named(true, "Neon's pooler keeps prepared statements");
    }
    let probed = tokio::time::timeout(
        settings.acquire_timeout.max(Duration::from_secs(2)),
        probe(&parsed.options),
    )
    .await;
    match probed {
        Ok(Ok(true)) => named(false, "a transaction-mode pooler answered the probe"),
        Ok(Ok(false)) => named(true, "the probe found a session of its own"),
        Ok(Err(error)) => {
            tracing::warn!(
                %error,
                "cannot tell whether DATABASE_URL is a transaction-mode pooler; queries use \
                 unnamed statements, which work everywhere (set DATABASE_PREPARED_STATEMENTS=on \
                 for a direct connection)"
            );
            Statements {
                settled: false,
                ..named(false, "the probe could not connect")
            }
        }
        Err(_) => Statements {
            settled: false,
            ..named(false, "the probe timed out")
        },
    }
}

/// Rounds of [`probe`] before it concludes a session of its own.
const PROBE_ROUNDS: usize = 12;

/// Whether `options` lead to a transaction-mode pooler. Two clients, A and B: A reads its
/// server process id; B opens a transaction (holding its server) and reads its own; A
/// reads again. A session of one's own never changes process and never shares it; behind
/// a transaction-mode pooler, B gets the server A just released (a pooler reuses the most
/// recent one), or A, with that server held by B, moves to another.
pub async fn probe(options: &PgConnectOptions) -> Result<bool, sqlx::Error> {
    let options = options.clone().statement_cache_capacity(0);
    let mut a = PgConnection::connect_with(&options).await?;
    let mut b = PgConnection::connect_with(&options).await?;
    let pid = "SELECT pg_backend_pid()";
    let mut pooled = false;
    // A's first server: on a session of its own, every one of A's queries runs there.
    let mut own: Option<i32> = None;
    // A pooler busy with other clients (instances restarting under load) can hand A the
    // same server again several times running: only many rounds without a sign of one
    // make a session of its own.
    for _ in 0..PROBE_ROUNDS {
        let first: i32 = sqlx::query(pid).fetch_one(&mut a).await?.try_get(0)?;
        let mut held = b.begin().await?;
        let other: i32 = sqlx::query(pid).fetch_one(&mut *held).await?.try_get(0)?;
        let again: i32 = sqlx::query(pid).fetch_one(&mut a).await?.try_get(0)?;
        held.rollback().await?;
        let moved = own.is_some_and(|own| own != first);
        own = own.or(Some(first));
        if other == first || again != first || moved {
            pooled = true;
            break;
        }
    }
    let _ = a.close().await;
    let _ = b.close().await;
    Ok(pooled)
}

/// One connection at start when the server's certificate is to be verified: a certificate
/// that does not verify (wrong authority, wrong host name) stops the start with one line
/// naming the setting. A server that does not answer yet does not: the pool connects when
/// it can.
async fn check_certificate(
    options: &PgConnectOptions,
    setting: &str,
    timeout: Duration,
) -> Result<(), DbError> {
    let options = options.clone().statement_cache_capacity(0);
    let connected = tokio::time::timeout(
        timeout.max(Duration::from_secs(2)),
        PgConnection::connect_with(&options),
    )
    .await;
    match connected {
        Ok(Ok(conn)) => {
            let _ = conn.close().await;
            Ok(())
        }
        Ok(Err(error)) if is_certificate_error(&error) => Err(DbError::Config(format!(
            "{setting}: the database server's TLS certificate was refused ({}): {error}",
            match options.get_ssl_mode() {
                PgSslMode::VerifyCa => "sslmode=verify-ca",
                _ => "sslmode=verify-full",
            }
        ))),
        Ok(Err(error)) => {
            tracing::warn!(%error, "{setting}: cannot connect yet to check the server's certificate");
            Ok(())
        }
        Err(_) => Ok(()),
    }
}

/// Whether `error` is TLS refusing the server (the driver reports a handshake that failed
/// as an I/O error carrying rustls' own).
fn is_certificate_error(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Tls(_) => true,
        sqlx::Error::Io(io) => io
            .get_ref()
            .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some()),
        _ => false,
    }
}

/// The pool's connection options for `settings`, with prepared statements decided; and,
/// when the probe could not reach the server, the options with named statements, to
/// switch to if a later probe finds a session of its own (see [`settle_later`]).
pub async fn pool_options(
    settings: &DatabaseConfig,
    setting: &str,
) -> Result<(PgConnectOptions, Option<PgConnectOptions>), DbError> {
    let parsed = parse(settings.url.expose_secret(), setting)?;
    if parsed.channel_binding_required {
        warn_channel_binding(setting, &parsed.options);
    }
    if matches!(
        parsed.options.get_ssl_mode(),
        PgSslMode::VerifyCa | PgSslMode::VerifyFull
    ) {
        check_certificate(&parsed.options, setting, settings.acquire_timeout).await?;
    }
    let statements = decide(settings, &parsed).await;
    tracing::info!(
        named_prepared_statements = statements.named,
        reason = statements.reason,
        protection = protection(&parsed.options),
        "{setting}: PostgreSQL connection settings"
    );
    Ok(if statements.named {
        (parsed.options, None)
    } else {
        // The vendored driver sends each query as one unnamed statement when its cache is off.
        let unnamed = parsed.options.clone().statement_cache_capacity(0);
        (unnamed, (!statements.settled).then_some(parsed.options))
    })
}

/// For a pool whose start-up probe could not reach the server (it was down, or a
/// serverless database still waking): probes again, after 1 s and then less and less
/// often, until the server answers; a session of its own then turns named statements on
/// for the pool's new connections (those open already stay unnamed, which works anywhere).
pub async fn settle_later(pool: sqlx::PgPool, named: PgConnectOptions, setting: String) {
    let mut wait = Duration::from_secs(1);
    loop {
        tokio::time::sleep(wait).await;
        if pool.is_closed() {
            return;
        }
        match tokio::time::timeout(Duration::from_secs(10), probe(&named)).await {
            Ok(Ok(false)) => {
                pool.set_connect_options(named);
                tracing::info!(
                    named_prepared_statements = true,
                    "{setting}: the server answers now, with a session of its own: named prepared statements on"
                );
                return;
            }
            Ok(Ok(true)) => {
                tracing::info!(
                    named_prepared_statements = false,
                    "{setting}: the server answers now, through a transaction-mode pooler: unnamed statements stay"
                );
                return;
            }
            Ok(Err(_)) | Err(_) => wait = (wait * 2).min(Duration::from_secs(30)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_parameters_are_taken_out_and_the_rest_kept() -> Result<(), DbError> {
        let parsed = parse(
            "postgres://u:p@ep-x-pooler.eu.aws.neon.tech/db?sslmode=require&channel_binding=require",
            "DATABASE_URL",
        )?;
        assert!(parsed.channel_binding_required);
        assert!(!parsed.pgbouncer);
        assert!(matches!(parsed.options.get_ssl_mode(), PgSslMode::Require));
        assert_eq!(parsed.options.get_database(), Some("db"));

        let parsed = parse("postgres://u@h:6432/db?pgbouncer=true", "X")?;
        assert!(parsed.pgbouncer);
        assert!(!parsed.channel_binding_required);
        assert_eq!(parsed.options.get_port(), 6432);

        let parsed = parse("postgres://u@h/db?channel_binding=prefer", "X")?;
        assert!(!parsed.channel_binding_required);
        Ok(())
    }

    #[test]
    fn a_bad_url_names_the_setting_and_not_the_url() {
        let error = parse("postgres://u:secret@[bad/db", "DATABASE_DIRECT_URL")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.contains("DATABASE_DIRECT_URL"), "{error}");
        assert!(!error.contains("secret"), "{error}");
    }
}

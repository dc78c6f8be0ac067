//! The `todo-api` command line: `serve` (the default), `migrate` and `token`.

use std::io::Write as _;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use rocket_db_pools::Database as _;
use secrecy::ExposeSecret as _;
use todo_api::config::{self, AppConfig};
use todo_api::db::AppPool;
use todo_api::{auth, telemetry};

/// mimalloc instead of the system allocator: under load, glibc's malloc spent about a sixth
/// of the service's CPU, much of it contending for its arenas between worker threads
/// (measured with scripts/load; see docs/performance.md). Built without transparent huge
/// pages (`no_thp`): with them, resident memory grows in 2 MiB steps (38 MB under load
/// against 29 MB).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "todo-api", version, about = "Multi-user todo API")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API (the default).
    Serve,
    /// Apply the database migrations and exit.
    Migrate,
    /// Probe `/health/live` of the service on this machine (for container health checks).
    Healthcheck,
    /// Print the OpenAPI document (JSON), e.g. to generate a typed client.
    Openapi,
    /// Print an HS256 token for a user, signed with the configured secret.
    Token {
        /// The user id (the token's `sub`).
        #[arg(long)]
        sub: String,
        /// How long the token is valid: 90s, 15m, 1h, 7d.
        #[arg(long, default_value = "1h", value_parser = parse_ttl)]
        ttl: u64,
    },
}

fn parse_ttl(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (number, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let scale = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err("use a number with s, m, h or d, such as 15m or 1h".to_owned()),
    };
    number
        .parse::<u64>()
        .ok()
        .filter(|n| *n > 0)
        .and_then(|n| n.checked_mul(scale))
        .ok_or_else(|| "use a positive number with s, m, h or d, such as 15m or 1h".to_owned())
}

/// `GET /health/live` on loopback with the project's HTTP client; the image needs no curl.
async fn healthcheck(port: u16) -> Result<(), String> {
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(3))
        .build()
        .map_err(|e| e.to_string())?;
    let response = client
        .get(format!("http://127.0.0.1:{port}/health/live"))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if response.status() == reqwest::StatusCode::OK {
        Ok(())
    } else {
        Err(format!("answered {}", response.status()))
    }
}

fn print_openapi() -> ExitCode {
    match todo_api::openapi::document().to_pretty_json() {
        Ok(json) => {
            if writeln!(std::io::stdout(), "{json}").is_err() {
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("could not render the document: {error}");
            ExitCode::FAILURE
        }
    }
}

#[rocket::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // The document depends on no setting: print it without asking for any.
    if matches!(cli.command, Some(Command::Openapi)) {
        return print_openapi();
    }
    let loaded = config::figment()
        .and_then(|figment| AppConfig::from_figment(&figment).map(|config| (figment, config)));
    let (figment, config) = match loaded {
        Ok(loaded) => loaded,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::FAILURE;
        }
    };
    telemetry::init(&config.log);

    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => match todo_api::rocket(figment).launch().await {
            Ok(rocket) => {
                // Every request has been answered: now the pool may close.
                if let Some(db) = todo_api::db::Db::fetch(&rocket) {
                    db.close().await;
                }
                ExitCode::SUCCESS
            }
            Err(error) => {
                // A fairing that failed has said why, in one line of its own.
                if !matches!(error.kind(), rocket::error::ErrorKind::FailedFairings(_)) {
                    tracing::error!("{error}");
                }
                ExitCode::FAILURE
            }
        },
        Command::Migrate => {
            let migrated = async {
                let pool = AppPool::open(&config.database, "DATABASE_URL").await?;
                todo_api::startup::prepare(&pool, &config.database).await?;
                Ok::<_, todo_api::db::DbError>(pool)
            };
            match migrated.await {
                Ok(pool) => match todo_api::accounts::migrate(&config, &pool).await {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(error) => {
                        tracing::error!(%error, "migrations failed");
                        ExitCode::FAILURE
                    }
                },
                Err(error) => {
                    tracing::error!(%error, "migrations failed");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Healthcheck => {
            let port = config.port;
            match healthcheck(port).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("unhealthy: {error}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Openapi => print_openapi(),
        Command::Token { sub, ttl } => {
            let Some(secret) = &config.auth.secret else {
                eprintln!("token needs BETTER_AUTH_SECRET: it signs HS256 tokens with it");
                return ExitCode::FAILURE;
            };
            match auth::mint_hs256(secret.expose_secret(), &sub, ttl) {
                Ok(token) => {
                    if writeln!(std::io::stdout(), "{token}").is_err() {
                        return ExitCode::FAILURE;
                    }
                    ExitCode::SUCCESS
                }
                Err(error) => {
                    eprintln!("could not sign a token: {error}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

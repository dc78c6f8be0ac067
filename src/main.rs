//! The `todo-api` command line: `serve` (the default), `migrate` and `token`.

use std::io::Write as _;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use todo_api::config::{self, AppConfig};
use todo_api::db::{AppPool, PoolSettings};
use todo_api::{auth, telemetry};

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
    let (number, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len()));
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

#[rocket::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
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
            Ok(_) => ExitCode::SUCCESS,
            Err(error) => {
                tracing::error!("{error}");
                ExitCode::FAILURE
            }
        },
        Command::Migrate => {
            let migrated = async {
                let settings = PoolSettings::from_figment(&figment.focus("databases.todo"))?;
                let pool = AppPool::connect_lazy(&settings)?;
                pool.migrate().await
            };
            match migrated.await {
                Ok(()) => {
                    tracing::info!("migrations applied");
                    ExitCode::SUCCESS
                }
                Err(error) => {
                    tracing::error!(%error, "migrations failed");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Token { sub, ttl } => {
            match auth::mint_hs256(config.auth.secret.expose(), &sub, ttl) {
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

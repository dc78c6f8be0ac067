//! Logging: the `tracing` subscriber (text in debug, JSON in release) and the access log,
//! one line per request with method, route template, status and latency.
//!
//! Invariant: the access log never records the query string or headers, where tokens live.

use std::time::Instant;

use rocket::fairing::{AdHoc, Fairing, Info, Kind};
use rocket::{Data, Request, Response};
use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

/// Installs the global subscriber. Call once, before Rocket starts; later calls are no-ops.
pub fn init(config: &LogConfig) {
    // Driver chatter stays at warn unless asked for by name.
    let directives = format!("{},hyper=warn,sqlx=warn", config.level);
    let filter = EnvFilter::try_new(&directives).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stdout);
    let result = match config.format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
        LogFormat::Text => builder.with_ansi(false).try_init(),
    };
    // Already installed (tests, or a second call): keep the first subscriber.
    drop(result);
}

struct StartedAt(Option<Instant>);

struct AccessLog;

#[rocket::async_trait]
impl Fairing for AccessLog {
    fn info(&self) -> Info {
        Info {
            name: "Access log",
            kind: Kind::Request | Kind::Response,
        }
    }

    async fn on_request(&self, request: &mut Request<'_>, _: &mut Data<'_>) {
        request.local_cache(|| StartedAt(Some(Instant::now())));
    }

    async fn on_response<'r>(&self, request: &'r Request<'_>, response: &mut Response<'r>) {
        let latency_ms = request
            .local_cache(|| StartedAt(None))
            .0
            .map(|started| started.elapsed().as_secs_f64() * 1000.0)
            .unwrap_or_default();
        let route = request
            .route()
            .map(|route| route.uri.origin.path().to_string())
            .unwrap_or_else(|| "-".to_owned());
        let status = response.status().code;
        let method = request.method().as_str();
        if status >= 500 {
            tracing::error!(target: "todo_api::access", method, route, status, latency_ms, "request");
        } else {
            tracing::info!(target: "todo_api::access", method, route, status, latency_ms, "request");
        }
    }
}

/// The telemetry module: the access log fairing and a start-up line.
pub fn stage() -> AdHoc {
    AdHoc::on_ignite("Telemetry", |rocket| async {
        rocket
            .attach(AccessLog)
            .attach(AdHoc::on_liftoff("Start-up log", |rocket| {
                Box::pin(async move {
                    let config = rocket.config();
                    tracing::info!(
                        address = %config.address,
                        port = config.port,
                        profile = %rocket.figment().profile(),
                        settings_from_env = ?crate::config::AppConfig::settings_from_env(),
                        "todo-api {} listening",
                        env!("CARGO_PKG_VERSION"),
                    );
                })
            }))
    })
}

//! Prometheus metrics at `/metrics` (text format): requests by route and status, latency
//! by route, the database pool, rate-limited requests and JWKS fetches. On by default in
//! debug, off in release unless `METRICS_ENABLED=true`.
//!
//! Invariant: labels are route templates and status codes, never raw paths, user ids or
//! query strings, so the number of series stays fixed whatever clients send.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};
use rocket::fairing::{AdHoc, Fairing, Info, Kind};
use rocket::http::ContentType;
use rocket::{Request, Response, State};

use crate::auth::Verifier;
use crate::db::Db;

/// The OpenAPI description of `/metrics`.
#[derive(utoipa::OpenApi)]
#[openapi(paths(scrape))]
pub struct MetricsApi;

/// The service's metrics, managed as Rocket state when enabled.
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    pool: IntGaugeVec,
    rate_limited: IntCounter,
    jwks_fetches: IntGaugeVec,
    events: IntGaugeVec,
    session_lookups: IntGaugeVec,
}

impl Metrics {
    /// Registers every metric in a fresh registry.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new_custom(Some("todo_api".to_owned()), None)?;
        let requests = IntCounterVec::new(
            Opts::new("http_requests_total", "HTTP requests answered"),
            &["method", "route", "status"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "Time from request to response head",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            &["method", "route"],
        )?;
        let pool = IntGaugeVec::new(
            Opts::new("db_pool_connections", "Database pool connections"),
            &["state"],
        )?;
        let rate_limited = IntCounter::new(
            "rate_limited_total",
            "Requests refused by the per-user rate limit",
        )?;
        let jwks_fetches = IntGaugeVec::new(
            Opts::new("jwks_fetch_attempts", "JWKS fetch attempts since start"),
            &["source"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        registry.register(Box::new(pool.clone()))?;
        registry.register(Box::new(rate_limited.clone()))?;
        let events = IntGaugeVec::new(
            Opts::new(
                "events",
                "Event streams: open streams, and since start the events published and \
                 delivered, streams dropped for not reading, listener reconnects",
            ),
            &["what"],
        )?;
        let session_lookups = IntGaugeVec::new(
            Opts::new(
                "session_lookups",
                "Better Auth session token lookups since start, by outcome: cached, database, \
                 busy and unavailable (both answered 503)",
            ),
            &["outcome"],
        )?;
        registry.register(Box::new(jwks_fetches.clone()))?;
        registry.register(Box::new(events.clone()))?;
        registry.register(Box::new(session_lookups.clone()))?;
        Ok(Self {
            registry,
            requests,
            latency,
            pool,
            rate_limited,
            jwks_fetches,
            events,
            session_lookups,
        })
    }
}

struct Recorder;

#[rocket::async_trait]
impl Fairing for Recorder {
    fn info(&self) -> Info {
        Info {
            name: "Metrics",
            kind: Kind::Response,
        }
    }

    async fn on_response<'r>(&self, request: &'r Request<'_>, response: &mut Response<'r>) {
        let Some(metrics) = request.rocket().state::<Metrics>() else {
            return;
        };
        let route = crate::telemetry::route_template(request);
        let method = request.method().as_str();
        let status = response.status().code;
        metrics
            .requests
            .with_label_values(&[method, route, &status.to_string()])
            .inc();
        if status == 429 {
            metrics.rate_limited.inc();
        }
        if let Some(elapsed) = crate::telemetry::elapsed(request) {
            metrics
                .latency
                .with_label_values(&[method, route])
                .observe(elapsed.as_secs_f64());
        }
    }
}

/// The Prometheus text exposition.
pub struct Exposition(Vec<u8>);

impl<'r> rocket::response::Responder<'r, 'static> for Exposition {
    fn respond_to(self, _: &'r Request<'_>) -> rocket::response::Result<'static> {
        Response::build()
            .header(ContentType::new("text", "plain").with_params(("version", "0.0.4")))
            .sized_body(self.0.len(), std::io::Cursor::new(self.0))
            .ok()
    }
}

/// `GET /metrics`: gauges are read at scrape time.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    summary = "Prometheus metrics (when METRICS_ENABLED)",
    operation_id = "metrics",
    responses((status = 200, description = "Prometheus text format 0.0.4", body = String, content_type = "text/plain"))
)]
#[get("/metrics")]
fn scrape(
    metrics: &State<Metrics>,
    db: &Db,
    writer: &State<crate::tasks::writer::Writer>,
    verifier: &State<Verifier>,
    bus: Option<&State<std::sync::Arc<crate::events::Bus>>>,
) -> Exposition {
    if let Some(bus) = bus {
        let events = bus.snapshot();
        for (what, value) in [
            ("streams_open", events.streams_open),
            ("published", events.published),
            ("delivered", events.delivered),
            ("streams_dropped_slow", events.dropped_slow),
            ("listener_reconnects", events.listener_reconnects),
            ("log_reads", events.log_reads),
        ] {
            metrics
                .events
                .with_label_values(&[what])
                .set(i64::try_from(value).unwrap_or(i64::MAX));
        }
    }
    let (size, idle) = db.size_and_idle();
    metrics
        .pool
        .with_label_values(&["open"])
        .set(i64::from(size));
    metrics
        .pool
        .with_label_values(&["idle"])
        .set(i64::try_from(idle).unwrap_or(i64::MAX));
    if db.backend() == crate::db::Backend::Sqlite {
        metrics
            .pool
            .with_label_values(&["writer"])
            .set(i64::from(writer.snapshot().sqlite_writer_open));
    }
    metrics
        .jwks_fetches
        .with_label_values(&["better_auth"])
        .set(i64::try_from(verifier.jwks_fetch_count()).unwrap_or(i64::MAX));
    if let Some(sessions) = verifier.sessions() {
        for (outcome, count) in sessions.lookup_counts() {
            metrics
                .session_lookups
                .with_label_values(&[outcome])
                .set(i64::try_from(count).unwrap_or(i64::MAX));
        }
    }
    let mut body = Vec::new();
    if let Err(error) = TextEncoder::new().encode(&metrics.registry.gather(), &mut body) {
        tracing::error!(%error, "metrics could not be encoded");
    }
    Exposition(body)
}

/// The metrics module: the recorder and `/metrics`, when enabled.
pub fn stage() -> AdHoc {
    AdHoc::try_on_ignite("Metrics", |rocket| async {
        let Some(config) = crate::config::of(&rocket, "metrics") else {
            return Err(rocket);
        };
        if !config.metrics_enabled {
            return Ok(rocket);
        }
        match Metrics::new() {
            Ok(metrics) => Ok(rocket
                .manage(metrics)
                .attach(Recorder)
                .mount("/", crate::telemetry::traced(routes![scrape]))),
            Err(error) => {
                tracing::error!(%error, "metrics could not be registered");
                Err(rocket)
            }
        }
    })
}

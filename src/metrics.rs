//! Prometheus metrics at `/metrics` (text format): requests by route and status, latency
//! by route, the database pool, rate-limited requests, JWKS fetches, session lookups and
//! the event streams (docs/operations.md lists every series). On by default in
//! debug, off in release unless `METRICS_ENABLED=true`.
//!
//! Invariant: labels are route templates and status codes, never raw paths, user ids or
//! query strings, so the number of series stays fixed whatever clients send.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
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

/// The service's metrics, managed as Rocket state when enabled. Counters count, gauges
/// hold levels; no series mixes the two. Counts kept elsewhere since start (the event bus,
/// session lookups, JWKS fetches) are carried into counters at scrape time: they only grow
/// while the process runs, and start again at 0 with it, which is what Prometheus' `rate()`
/// expects of a counter.
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    pool: IntGaugeVec,
    /// SQLite only.
    sqlite_writer: Option<IntGauge>,
    rate_limited: IntCounter,
    jwks_fetches: IntCounterVec,
    streams_open: IntGauge,
    events: IntCounterVec,
    listener: IntGaugeVec,
    session_lookups: IntCounterVec,
    /// One scrape at a time carries counts into counters (two at once would add twice).
    carrying: std::sync::Mutex<()>,
}

/// The event listener's states, one gauge each (1 for the current one).
const LISTENER_STATES: [&str; 5] = ["in_process", "connecting", "listening", "deaf", "down"];

impl Metrics {
    /// Registers every metric in a fresh registry (the SQLite writer's on SQLite only).
    pub fn new(backend: crate::db::Backend) -> Result<Self, prometheus::Error> {
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
            Opts::new(
                "db_pool_connections",
                "Database pool connections now, by state (in_use + idle = open)",
            ),
            &["state"],
        )?;
        let sqlite_writer = IntGauge::new(
            "db_sqlite_writer_connections",
            "SQLite: the write connection, open (1) or not yet (0)",
        )?;
        let rate_limited = IntCounter::new(
            "rate_limited_total",
            "Requests refused by the per-user rate limit",
        )?;
        let jwks_fetches = IntCounterVec::new(
            Opts::new(
                "jwks_fetch_attempts_total",
                "JWKS fetch attempts, successful or not",
            ),
            &["source"],
        )?;
        let streams_open = IntGauge::new("event_streams_open", "Event streams open now")?;
        let events = IntCounterVec::new(
            Opts::new(
                "events_total",
                "Event stream activity, by what happened: published (to this instance's \
                 streams' users), delivered (handed to a stream), streams_dropped_slow (a \
                 client that did not read), listener_reconnects, log_reads (reads of the \
                 event log by the feed), wake_ups_sent (notifications to other instances)",
            ),
            &["what"],
        )?;
        let listener = IntGaugeVec::new(
            Opts::new(
                "event_listener_state",
                "The PostgreSQL event listener's state: 1 for the current one, else 0",
            ),
            &["state"],
        )?;
        let session_lookups = IntCounterVec::new(
            Opts::new(
                "session_lookups_total",
                "Better Auth session token lookups, by outcome: cached, database, busy and \
                 unavailable (both answered 503)",
            ),
            &["outcome"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        registry.register(Box::new(pool.clone()))?;
        let sqlite_writer = if backend == crate::db::Backend::Sqlite {
            registry.register(Box::new(sqlite_writer.clone()))?;
            Some(sqlite_writer)
        } else {
            None
        };
        registry.register(Box::new(rate_limited.clone()))?;
        registry.register(Box::new(jwks_fetches.clone()))?;
        registry.register(Box::new(streams_open.clone()))?;
        registry.register(Box::new(events.clone()))?;
        registry.register(Box::new(listener.clone()))?;
        registry.register(Box::new(session_lookups.clone()))?;
        Ok(Self {
            registry,
            requests,
            latency,
            pool,
            sqlite_writer,
            rate_limited,
            jwks_fetches,
            streams_open,
            events,
            listener,
            session_lookups,
            carrying: std::sync::Mutex::new(()),
        })
    }
}

/// Brings `counter` up to `count`, a count since start kept elsewhere.
fn carry(counter: &IntCounter, count: u64) {
    let behind = count.saturating_sub(counter.get());
    if behind > 0 {
        counter.inc_by(behind);
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

/// `GET /metrics`: gauges are read, and counts kept elsewhere carried into counters, at
/// scrape time.
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
    writer: &State<std::sync::Arc<crate::tasks::writer::Writer>>,
    verifier: &State<Verifier>,
    bus: Option<&State<std::sync::Arc<crate::events::Bus>>>,
    listener: Option<&State<std::sync::Arc<crate::events::ListenerState>>>,
) -> Exposition {
    {
        let _one_at_a_time = metrics.carrying.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(bus) = bus {
            let events = bus.snapshot();
            metrics
                .streams_open
                .set(i64::try_from(events.streams_open).unwrap_or(i64::MAX));
            for (what, count) in [
                ("published", events.published),
                ("delivered", events.delivered),
                ("streams_dropped_slow", events.dropped_slow),
                ("listener_reconnects", events.listener_reconnects),
                ("log_reads", events.log_reads),
                ("wake_ups_sent", events.wake_ups_sent),
            ] {
                carry(&metrics.events.with_label_values(&[what]), count);
            }
        }
        carry(
            &metrics.jwks_fetches.with_label_values(&["better_auth"]),
            verifier.jwks_fetch_count(),
        );
        if let Some(sessions) = verifier.sessions() {
            for (outcome, count) in sessions.lookup_counts() {
                carry(
                    &metrics.session_lookups.with_label_values(&[outcome]),
                    count,
                );
            }
        }
    }
    if let Some(listener) = listener {
        let now = listener.name();
        for state in LISTENER_STATES {
            metrics
                .listener
                .with_label_values(&[state])
                .set(i64::from(state == now));
        }
    }
    let (size, idle) = db.size_and_idle();
    let idle = u32::try_from(idle).unwrap_or(u32::MAX).min(size);
    metrics
        .pool
        .with_label_values(&["in_use"])
        .set(i64::from(size - idle));
    metrics
        .pool
        .with_label_values(&["idle"])
        .set(i64::from(idle));
    if let Some(gauge) = &metrics.sqlite_writer {
        gauge.set(i64::from(writer.snapshot().sqlite_writer_open));
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
        match Metrics::new(config.database.backend) {
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

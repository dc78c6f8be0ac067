//! Health probes: `/health` (process, database, version), `/health/live` (process only) and
//! `/health/ready` (database reachable within a short timeout; the JWKS key source's state
//! reported beside it, never failing the probe: keys are fetched on demand and kept).

use std::time::Duration;

use rocket::fairing::AdHoc;
use rocket::serde::json::Json;
use serde::Serialize;

use rocket::State;

use std::sync::Arc;

use crate::auth::{JwksStatus, SessionStoreStatus, Verifier};
use crate::db::Db;
#[allow(unused_imports)] // named in the OpenAPI attributes
use crate::error::ErrorBody;
use crate::error::{ApiError, PublicError};
use crate::events::{Bus, ListenerState};

/// How long a probe waits for the database.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The OpenAPI description of the health probes.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(health, live, ready),
    components(schemas(Health, JwksStatus, EventsStatus, SessionStoreStatus))
)]
pub struct HealthApi;

/// A healthy answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Health {
    /// `ok`.
    pub status: &'static str,
    /// `ok`, or absent for the liveness probe.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<&'static str>,
    /// The JWKS key source, on `/health/ready` when JWKS is on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwks: Option<JwksStatus>,
    /// The event streams, on `/health/ready`: reported, never failing the probe (the REST
    /// API works while the listener reconnects).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events: Option<EventsStatus>,
    /// Better Auth's session table, on `/health/ready` when session tokens are on.
    /// Reported, never failing the probe (JWTs keep working; a missing table is looked
    /// for again on use).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sessions: Option<SessionStoreStatus>,
    /// The service version.
    pub version: &'static str,
}

async fn check_database(db: &Db) -> Result<(), PublicError> {
    db.ping(PROBE_TIMEOUT).await.map_err(|error| {
        tracing::error!(%error, "health check: database unreachable");
        ApiError::Unavailable(error).public()
    })
}

fn healthy(database: Option<&'static str>) -> Json<Health> {
    Json(Health {
        status: "ok",
        database,
        jwks: None,
        events: None,
        sessions: None,
        version: env!("CARGO_PKG_VERSION"),
    })
}

#[utoipa::path(
    get,
    path = "/health",
    tag = "health",
    summary = "Process and database",
    operation_id = "health",
    responses(
        (status = 200, description = "Healthy", body = Health, example = json!({"status": "ok", "database": "ok", "version": "0.1.0"})),
        (status = 503, description = "The database cannot be reached", body = ErrorBody),
    )
)]
#[get("/health")]
async fn health(db: &Db) -> Result<Json<Health>, PublicError> {
    check_database(db).await?;
    Ok(healthy(Some("ok")))
}

#[utoipa::path(
    get,
    path = "/health/live",
    tag = "health",
    summary = "Liveness: the process answers (no dependency is checked)",
    operation_id = "healthLive",
    responses((status = 200, description = "Alive", body = Health))
)]
#[get("/health/live")]
fn live() -> Json<Health> {
    healthy(None)
}

#[utoipa::path(
    get,
    path = "/health/ready",
    tag = "health",
    summary = "Readiness: the database answers; the JWKS key source is reported, never fatal",
    operation_id = "healthReady",
    responses(
        (status = 200, description = "Ready", body = Health),
        (status = 503, description = "The database cannot be reached", body = ErrorBody),
    )
)]
#[get("/health/ready")]
async fn ready(
    db: &Db,
    verifier: &State<Verifier>,
    listener: Option<&State<Arc<ListenerState>>>,
    bus: Option<&State<Arc<Bus>>>,
) -> Result<Json<Health>, PublicError> {
    let mut answer = health(db).await?;
    answer.jwks = verifier.jwks_status();
    answer.sessions = match verifier.sessions() {
        Some(sessions) => Some(sessions.current_status().await),
        None => None,
    };
    answer.events = listener.zip(bus).map(|(listener, bus)| EventsStatus {
        listener: listener.name(),
        streams: bus.open_streams(),
    });
    Ok(answer)
}

/// The event streams' state.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EventsStatus {
    /// Where wake-ups come from: `in_process` (SQLite), or the PostgreSQL listener's state:
    /// `connecting`, `listening`, `deaf` (connected, but it does not hear its own probe: a
    /// pooler that cannot `LISTEN`; set `DATABASE_DIRECT_URL`), `down` (reconnecting).
    /// Events are delivered in every state, by polling the log at worst.
    pub listener: &'static str,
    /// Streams open on this instance.
    pub streams: usize,
}

/// The health module.
pub fn stage() -> AdHoc {
    AdHoc::on_ignite("Health", |rocket| async {
        rocket.mount("/", crate::telemetry::traced(routes![health, live, ready]))
    })
}

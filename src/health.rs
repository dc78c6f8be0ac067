//! Health probes: `/health` (process, database, version), `/health/live` (process only) and
//! `/health/ready` (database reachable within a short timeout; the JWKS key source's state
//! reported beside it, never failing the probe: keys are fetched on demand and kept).

use std::time::Duration;

use rocket::fairing::AdHoc;
use rocket::serde::json::Json;
use serde::Serialize;

use rocket::State;

use crate::auth::{JwksStatus, Verifier};
use crate::db::Db;
use crate::error::{ApiError, PublicError};

/// How long a probe waits for the database.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// A healthy answer.
#[derive(Debug, Serialize)]
pub struct Health {
    /// `ok`.
    pub status: &'static str,
    /// `ok`, or absent for the liveness probe.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<&'static str>,
    /// The JWKS key source, on `/health/ready` when JWKS is on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwks: Option<JwksStatus>,
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
        version: env!("CARGO_PKG_VERSION"),
    })
}

#[get("/health")]
async fn health(db: &Db) -> Result<Json<Health>, PublicError> {
    check_database(db).await?;
    Ok(healthy(Some("ok")))
}

#[get("/health/live")]
fn live() -> Json<Health> {
    healthy(None)
}

#[get("/health/ready")]
async fn ready(db: &Db, verifier: &State<Verifier>) -> Result<Json<Health>, PublicError> {
    let mut answer = health(db).await?;
    answer.jwks = verifier.jwks_status();
    Ok(answer)
}

/// The health module.
pub fn stage() -> AdHoc {
    AdHoc::on_ignite("Health", |rocket| async {
        rocket.mount("/", crate::telemetry::traced(routes![health, live, ready]))
    })
}

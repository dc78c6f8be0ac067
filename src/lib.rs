//! todo-api: the backend of a multi-user todo app.
//!
//! The service is a list of modules, each attached as one Rocket stage. Read [`rocket`] to
//! see all of it.

#[macro_use]
extern crate rocket;

pub mod accounts;
pub mod auth;
pub mod body;
pub mod compat;
pub mod config;
pub mod cors;
pub mod db;
pub mod error;
pub mod events;
pub mod health;
pub mod limits;
pub mod metrics;
pub mod openapi;
pub mod periodic;
pub mod ratelimit;
pub mod startup;
pub mod stats;
pub mod tasks;
pub mod telemetry;
pub mod time;

use rocket::figment::Figment;
use rocket::{Build, Rocket};

/// Builds the service from `figment` (see [`config::figment`]).
pub fn rocket(figment: Figment) -> Rocket<Build> {
    // The HTTP server answers a connection over the cap by itself, with this body.
    let figment = figment.merge(("connections.refusal_body", error::over_capacity_body()));
    rocket::custom(figment)
        .attach(config::stage())
        .attach(telemetry::stage())
        .attach(db::stage())
        .attach(startup::stage())
        // Before the token-scoped rewrite (auth), which it hands canonical paths.
        .attach(compat::stage())
        .attach(accounts::stage())
        .attach(auth::stage())
        .attach(ratelimit::stage())
        .attach(cors::stage())
        .attach(tasks::stage())
        .attach(stats::stage())
        .attach(events::stage())
        .attach(health::stage())
        .attach(metrics::stage())
        .attach(openapi::stage())
        .attach(limits::stage())
        .attach(error::stage())
}

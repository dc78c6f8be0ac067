//! Integration tests: one binary (one link step), every database test on both databases.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod helpers;

mod accounts;
mod answers;
mod auth;
mod compat;
mod concurrency;
mod config;
mod connections;
mod cookies;
mod cors;
mod docs;
mod errors;
mod etags;
mod events;
mod hardening;
mod health;
mod idempotency;
mod jwks;
mod lifecycle;
mod metrics;
mod migrations;
mod openapi;
mod outage;
mod plans;
mod pool;
mod poolers;
mod promises;
mod ratelimit;
mod scoped;
mod seed;
mod sessions;
mod stats;
mod surface;
mod sync;
mod tasks_crud;
mod tasks_list;
mod tls;

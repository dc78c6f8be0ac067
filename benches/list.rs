//! A page of 20 from a user with 10,000 tasks against one from a user with 20, for each
//! list shape, through the whole service in process (routing, auth, SQL, JSON).
//!
//! SQLite always; PostgreSQL too when `BENCH_DATABASE_URL` names a server (`scripts/bench`
//! starts one). Every run seeds a fresh database: 45 other users with 2,000 tasks each,
//! one user with 10,000 and one with 20. The production log subscriber is installed (JSON
//! at info, written to a sink), so the access log's cost is paid as in production.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/api/seed.rs"]
mod seed;

use criterion::{criterion_group, criterion_main, Criterion};
use rocket::figment::providers::Serialized;
use rocket::http::{Header, Status};
use rocket::local::blocking::Client;
use sqlx::Connection;
use todo_api::db::AppPool;

const SECRET: &str = "bench-secret-that-is-long-enough-for-hs256-0123456789";

/// Each shape matches rows for both users (the seed varies every field independently),
/// and each page's length is checked before it is timed.
const BENCH_SHAPES: &[&str] = &[
    "",
    "priority=high&category=work",
    "completed=false&sort=title",
    "sort=due_at",
    "sort=updated_at",
    "q=task%201",
];

fn databases(
    runtime: &tokio::runtime::Runtime,
) -> Vec<(&'static str, String, Option<tempfile::TempDir>)> {
    let dir = tempfile::tempdir().unwrap();
    let mut out = vec![(
        "sqlite",
        format!("sqlite://{}/bench.db", dir.path().display()),
        Some(dir),
    )];
    if let Ok(server) = std::env::var("BENCH_DATABASE_URL") {
        let name = format!("bench_{}", uuid::Uuid::new_v4().simple());
        runtime.block_on(async {
            let mut conn = sqlx::PgConnection::connect(&server).await.unwrap();
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&mut conn)
                .await
                .unwrap();
        });
        let mut url = url::Url::parse(&server).unwrap();
        url.set_path(&format!("/{name}"));
        out.push(("postgres", url.to_string(), None));
    }
    out
}

fn list(c: &mut Criterion) {
    todo_api::telemetry::init_with_writer(
        &todo_api::config::LogConfig {
            level: "info".to_owned(),
            format: todo_api::config::LogFormat::Json,
        },
        std::io::sink,
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();
    for (backend, url, _dir) in databases(&runtime) {
        let figment = todo_api::config::figment_with_env(|_| None)
            .unwrap()
            .merge(Serialized::global("databases.todo.url", &url))
            .merge(Serialized::global("auth.secret", SECRET))
            // The limiter runs (its cost is part of every request) but never refuses.
            .merge(Serialized::global("rate_limit.per_minute", 1_000_000_000));
        let client = Client::tracked(todo_api::rocket(figment)).unwrap();
        runtime.block_on(async {
            let pool = if backend == "sqlite" {
                AppPool::Sqlite(sqlx::SqlitePool::connect(&url).await.unwrap())
            } else {
                AppPool::Postgres(sqlx::PgPool::connect(&url).await.unwrap())
            };
            let others: Vec<String> = (0..45).map(|i| format!("user{i}")).collect();
            seed::seed(&pool, &others, 2000).await.unwrap();
            seed::seed(&pool, &["big".to_owned()], 10_000)
                .await
                .unwrap();
            seed::seed(&pool, &["small".to_owned()], 20).await.unwrap();
        });
        let mut group = c.benchmark_group(format!("list_page_of_20/{backend}"));
        for user in ["small", "big"] {
            let token = todo_api::auth::mint_hs256(SECRET, user, 3600).unwrap();
            for shape in BENCH_SHAPES {
                let uri = format!("/api/{user}/tasks?limit=20&{shape}");
                let label = if shape.is_empty() { "default" } else { shape };
                let first = client
                    .get(uri.as_str())
                    .header(Header::new("Authorization", format!("Bearer {token}")))
                    .dispatch();
                assert_eq!(first.status(), Status::Ok);
                let total: usize = first
                    .headers()
                    .get_one("X-Total-Count")
                    .and_then(|t| t.parse().ok())
                    .expect("X-Total-Count");
                let page: Vec<serde_json::Value> = first.into_json().unwrap();
                assert!(total > 0, "{user}/{label} matches no task");
                assert_eq!(page.len(), total.min(20), "{user}/{label}");
                group.bench_function(format!("{user}/{label}"), |b| {
                    b.iter(|| {
                        let response = client
                            .get(uri.as_str())
                            .header(Header::new("Authorization", format!("Bearer {token}")))
                            .dispatch();
                        assert_eq!(response.status(), Status::Ok);
                        response.into_bytes().unwrap()
                    })
                });
            }
        }
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(3));
    targets = list
}
criterion_main!(benches);

//! PostgreSQL behind a transaction-mode pooler (PgBouncer 1.18, `pool_mode = transaction`,
//! started by `scripts/test`): the service tells it from a direct connection, and
//! instances starting together through it migrate once and all serve. The suites' CRUD,
//! list, statistics, session-token and event cases also run through it (their `pgbouncer`
//! cases).

use rocket::http::Status;
use serde_json::json;
use sqlx::postgres::PgConnectOptions;
use sqlx::Connection as _;

use crate::helpers::{pgbouncer_url, postgres_url, through_pooler, Backend, TestApp, TestDatabase};
use rocket::figment::providers::Serialized;

fn servers() -> Option<(String, String)> {
    Some((postgres_url()?, pgbouncer_url()?))
}

#[rocket::async_test]
async fn the_probe_tells_a_transaction_pooler_from_a_direct_connection() {
    let Some((_, bouncer)) = servers() else {
        return;
    };
    let database = TestDatabase::fresh(Backend::Postgres).await;
    let pooled = through_pooler(&database.url, &bouncer);
    let direct: PgConnectOptions = database.url.parse().unwrap();
    let through: PgConnectOptions = pooled.parse().unwrap();
    // More than once: the answer must not depend on which server the pooler hands out.
    for _ in 0..5 {
        assert!(
            !todo_api::db::postgres::probe(&direct).await.unwrap(),
            "direct"
        );
        assert!(
            todo_api::db::postgres::probe(&through).await.unwrap(),
            "through PgBouncer"
        );
    }
}

/// Three instances start at the same moment on one empty database through the pooler:
/// the migrations run once (a transaction-level lock, so even through the pooler itself),
/// and every instance serves. Once with the direct URL given, once with none (a self-hosted
/// PgBouncer whose operator set only `DATABASE_URL`).
#[rocket::async_test]
async fn instances_starting_together_through_the_pooler_migrate_once_and_all_serve() {
    let Some((_, bouncer)) = servers() else {
        return;
    };
    for with_direct_url in [true, false] {
        let database = TestDatabase::fresh(Backend::Postgres).await;
        let pooled = through_pooler(&database.url, &bouncer);
        let start = || {
            let (pooled, direct) = (pooled.clone(), database.url.clone());
            async move {
                let mut existing = TestDatabase::existing(&direct);
                existing.pooled_url = Some(pooled);
                TestApp::spawn_on(existing, move |f| {
                    if with_direct_url {
                        f
                    } else {
                        // The pooled URL is all the service is given.
                        f.merge(Serialized::global("databases.todo.direct_url", ""))
                    }
                })
                .await
            }
        };
        let (a, b, c) = tokio::join!(start(), start(), start());
        let mut conn = sqlx::PgConnection::connect(&database.url).await.unwrap();
        let migrations =
            std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres"))
                .unwrap()
                .count() as i64;
        let (rows, versions): (i64, i64) = sqlx::query_as(
            "SELECT count(*), count(DISTINCT version) FROM _sqlx_migrations WHERE success",
        )
        .fetch_one(&mut conn)
        .await
        .unwrap();
        assert_eq!(
            (rows, versions),
            (migrations, migrations),
            "direct URL given: {with_direct_url}"
        );
        for (n, app) in [&a, &b, &c].into_iter().enumerate() {
            let created = app
                .as_user("alice")
                .post("tasks", &json!({"title": format!("from instance {n}")}))
                .await;
            assert_eq!(created.status, Status::Created, "instance {n}");
        }
        let listed = a.as_user("alice").get("tasks").await;
        assert_eq!(listed.json().as_array().unwrap().len(), 3);
    }
}

/// A pool whose start-up probe could not reach the server (down, or a serverless database
/// still waking) starts with unnamed statements, and turns named ones on once a later probe
/// finds a session of its own.
#[rocket::async_test]
async fn a_pool_that_could_not_probe_at_start_turns_named_statements_on_later() {
    let Some((server, _)) = servers() else { return };
    let database = TestDatabase::fresh(Backend::Postgres).await;
    // A port where nothing listens yet.
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let mut url = url::Url::parse(&database.url).unwrap();
    url.set_port(Some(port)).unwrap();
    let settings = todo_api::config::DatabaseConfig::other(
        &secrecy::SecretString::from(url.to_string()),
        "DATABASE_URL",
        2,
        std::time::Duration::from_secs(1),
    )
    .unwrap();
    let pool = todo_api::db::AppPool::open(&settings, "DATABASE_URL")
        .await
        .unwrap();
    let todo_api::db::AppPool::Postgres(pool) = pool else {
        panic!("a PostgreSQL pool")
    };
    let named = |pool: &sqlx::PgPool| {
        !format!("{:?}", pool.connect_options()).contains("statement_cache_capacity: 0")
    };
    assert!(!named(&pool), "unreachable at start: unnamed statements");

    // The server comes up on that port (a forwarder to the test server).
    let target: PgConnectOptions = server.parse().unwrap();
    let target = (target.get_host().to_owned(), target.get_port());
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let forwarder = tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let target = target.clone();
            tokio::spawn(async move {
                if let Ok(mut upstream) = tokio::net::TcpStream::connect(target).await {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                }
            });
        }
    });
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
    while !named(&pool) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "named statements never turned on"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // And the pool serves with them.
    let one: i32 = sqlx::query_scalar("SELECT 1")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(one, 1);
    pool.close().await;
    forwarder.abort();
}

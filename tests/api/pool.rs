//! The pool takes a PostgreSQL connection back without a round trip unless it has something
//! to flush (vendor/sqlx-core/PATCHED.md). What that round trip used to guarantee still
//! holds: a dropped transaction is rolled back at once, and a result dropped half-read does
//! not reach the connection's next query.

use rocket::futures::TryStreamExt as _;
use sqlx::Connection as _;

use crate::helpers::{Backend, TestDatabase};

#[rocket::async_test]
async fn a_returned_connection_rolls_back_a_dropped_transaction_and_drains_a_dropped_result() {
    if crate::helpers::postgres_url().is_none() {
        return;
    }
    let database = TestDatabase::fresh(Backend::Postgres).await;
    let db_url = &database.url;
    // One connection, so every step below goes through the one that was given back.
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(db_url)
        .await
        .unwrap();
    sqlx::query("CREATE TABLE counters (id INT PRIMARY KEY, n INT NOT NULL)")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("INSERT INTO counters VALUES (1, 0)")
        .execute(&pool)
        .await
        .unwrap();

    {
        let mut tx = pool.begin().await.unwrap();
        sqlx::query("UPDATE counters SET n = 1 WHERE id = 1")
            .execute(&mut *tx)
            .await
            .unwrap();
        // Dropped without a commit, while it holds the row's lock.
    }
    // Nobody uses the pool now: the rollback must run on the way back into it, or the
    // row stays locked until the connection's next query.
    let mut other = sqlx::PgConnection::connect(db_url).await.unwrap();
    sqlx::query("SET lock_timeout = '3s'")
        .execute(&mut other)
        .await
        .unwrap();
    sqlx::query("UPDATE counters SET n = 2 WHERE id = 1")
        .execute(&mut other)
        .await
        .expect("the dropped transaction was rolled back and its lock released");

    {
        let mut rows =
            sqlx::query_scalar::<_, i32>("SELECT g FROM generate_series(1, 100000) g").fetch(&pool);
        assert_eq!(rows.try_next().await.unwrap(), Some(1));
        // Dropped with most of its rows still to come.
    }
    let n: i32 = sqlx::query_scalar("SELECT n FROM counters WHERE id = 1")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        n, 2,
        "the next query reads its own answer, not the dropped result's rows"
    );
}

/// SQLite's writer never checkpoints the WAL inside its own commits (SQLite's automatic
/// checkpoint synced the database file inside every hundredth write or so, and every write
/// queued behind it waited): a task beside the writer copies the WAL into the database
/// file within moments of the writes, well before the 1,000 pages that would have set off
/// the automatic one.
#[rocket::async_test]
async fn sqlite_writes_are_checkpointed_beside_the_writer() {
    let app = crate::helpers::TestApp::spawn(Backend::Sqlite).await;
    let path = app.db_url.trim_start_matches("sqlite://").to_owned();
    let size = || std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    app.create_task("alice", serde_json::json!({"title": "first"}))
        .await;
    let settle = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let mut before = size();
    // The first write's own pages reach the file first.
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let now = size();
        if now == before || std::time::Instant::now() > settle {
            break;
        }
        before = now;
    }
    let description = "d".repeat(900);
    for n in 0..40 {
        app.create_task(
            "alice",
            serde_json::json!({"title": format!("task {n}"), "description": description}),
        )
        .await;
    }
    let wal = std::fs::metadata(format!("{path}-wal"))
        .map(|m| m.len())
        .unwrap_or(0);
    assert!(
        wal < 1_000 * 4096,
        "40 writes stay under the automatic checkpoint's 1,000 pages (the WAL is {wal} bytes)"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while size() <= before {
        assert!(
            std::time::Instant::now() < deadline,
            "the WAL was not checkpointed into the database file ({before} bytes)"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Under writes that never pause, the WAL still starts over: the checkpoint's last step
/// holds the writer for a moment, so no frame is left uncopied when the next write begins
/// (a WAL only ever checkpointed beside the writes grew by every write, 1.7 GB in 10 s).
#[rocket::async_test]
async fn sqlite_wal_stays_bounded_under_writes_that_never_pause() {
    let app = crate::helpers::TestApp::spawn(Backend::Sqlite).await;
    let path = app.db_url.trim_start_matches("sqlite://").to_owned();
    let description = "d".repeat(900);
    let writes = 1_000;
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let app = &app;
            let description = &description;
            async move {
                for n in 0..writes / 4 {
                    app.create_task(
                        "alice",
                        serde_json::json!({"title": format!("task {w}-{n}"), "description": description}),
                    )
                    .await;
                }
            }
        })
        .collect();
    rocket::futures::future::join_all(writers).await;
    let wal = std::fs::metadata(format!("{path}-wal"))
        .map(|m| m.len())
        .unwrap_or(0);
    let database = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    // Each of these writes adds a dozen pages or more to the WAL (the task, its indexes, the
    // event log): 64 MB in all, measured, had the WAL never started over. Started over, it
    // holds what was written between two checkpoints (17.5 MB once, in a full run of the
    // suite, which loads the machine).
    assert!(
        wal < 32 * 1024 * 1024,
        "the WAL is {wal} bytes after {writes} writes (the database file: {database})"
    );
}

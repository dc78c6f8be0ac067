//! Upgrades: a database written by an older release moves forward at start-up with every
//! row it holds, and without rewriting what it need not.

use serde_json::Value;

use crate::helpers::{
    self, on_both_backends, on_pool, raw_http, AppPool, LiveServer, TestDatabase,
};

/// PostgreSQL: the storage file of the tasks table and of each of its indexes, by name.
async fn storage(pool: &AppPool) -> Vec<(String, i64)> {
    match pool {
        AppPool::Postgres(p) => sqlx::query_as(
            "SELECT c.relname::text, c.relfilenode::int8 FROM pg_class c \
             WHERE c.oid = 'tasks'::regclass \
                OR c.oid IN (SELECT indexrelid FROM pg_index WHERE indrelid = 'tasks'::regclass) \
             ORDER BY 1",
        )
        .fetch_all(p)
        .await
        .unwrap(),
        AppPool::Sqlite(_) => Vec::new(),
    }
}

on_both_backends! {
    async fn moving_the_checks_onto_domains_keeps_every_row_and_rewrites_no_table(backend) {
        let database = TestDatabase::fresh(backend).await;
        let pool = helpers::pool_of(&database.url).await;
        helpers::migrate_before(&pool, 8).await;
        let insert = "INSERT INTO tasks (user_id, title, description, priority, category, created_at, updated_at, \
                      search_title, search_description) \
                      VALUES ('alice', 'written before', 'kept', 3, 'work', '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z', \
                      'written before', 'kept')";
        on_pool!(&pool, |p| sqlx::query(insert).execute(p).await.map(drop)).unwrap();
        let stored = storage(&pool).await;

        let server = LiveServer::start_on(database, |f| f).await;
        let token = todo_api::auth::mint_hs256(helpers::TEST_SECRET, "alice", 600).unwrap();
        let (status, _, body) = raw_http(server.port, &format!(
            "GET /api/alice/tasks HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n")).await;
        assert_eq!(status, 200, "{body}");
        let tasks: Value = serde_json::from_str(&body).unwrap();
        let task = &tasks[0];
        assert_eq!(
            (task["title"].as_str(), task["description"].as_str(), task["priority"].as_str(), task["category"].as_str()),
            (Some("written before"), Some("kept"), Some("high"), Some("work")),
            "{body}"
        );
        // Only the due-date index is rebuilt: its expression is re-planned with the new
        // column type. The table and every other index keep their storage.
        let moved: Vec<_> = storage(&pool).await.into_iter().filter(|entry| !stored.contains(entry)).map(|(name, _)| name).collect();
        if matches!(pool, AppPool::Postgres(_)) {
            assert_eq!(stored.len(), 10, "the table and its nine indexes: {stored:?}");
            assert_eq!(moved, ["tasks_user_due_idx"], "rewritten by the migration");
        }
        server.stop().await;
    }
}

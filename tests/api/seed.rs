//! Bulk test data, shared by the plan tests and the list benchmark: many tasks per user,
//! inserted by one statement per user, with spread-out priorities, categories and dates.

use todo_api::db::AppPool;
use todo_api::on_pool;

const SEED: &str = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $2) \
    INSERT INTO tasks (user_id, title, search_title, description, search_description, priority, \
                       completed, category, due_at, created_at, updated_at) \
    SELECT $1, 'Task ' || i, 'task ' || i, 'notes ' || (i % 97), 'notes ' || (i % 97), 1 + i % 3, \
           i % 4 = 0, CASE i % 3 WHEN 0 THEN 'work' WHEN 1 THEN 'home' ELSE NULL END, \
           CASE WHEN i % 5 = 0 THEN NULL ELSE $3 END, $3, $3 FROM n";

/// Inserts `count` tasks for each of `users`, then refreshes the planner's statistics and,
/// on PostgreSQL, the visibility map (as autovacuum does in steady state), so counts can be
/// answered from an index alone.
pub async fn seed(pool: &AppPool, users: &[String], count: i64) -> Result<(), sqlx::Error> {
    let at = chrono::Utc::now();
    for user in users {
        on_pool!(pool, |p| sqlx::query(SEED)
            .bind(user)
            .bind(count)
            .bind(at)
            .execute(p)
            .await
            .map(drop))?;
    }
    match pool {
        AppPool::Sqlite(p) => sqlx::query("ANALYZE").execute(p).await.map(drop)?,
        AppPool::Postgres(p) => sqlx::query("VACUUM ANALYZE tasks")
            .execute(p)
            .await
            .map(drop)?,
    }
    Ok(())
}

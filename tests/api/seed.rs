//! Bulk test data, shared by the plan tests and the list benchmark: many tasks per user,
//! inserted by one statement per user. Priorities, categories, completion and dates vary
//! independently of each other (steps of 3, 5, 4 and 7919 through `i`), so every filter
//! combination matches some rows and every sort has distinct keys: tasks created a minute
//! apart, updated up to a day later, due over about a year around now (every sixth none).

use todo_api::db::AppPool;

/// Priorities, categories, completion and dates vary independently of each other (steps
/// of 3, 5, 4 and 7 through `i`), so every filter combination matches some rows and every
/// sort has distinct keys: creation one minute apart, updates up to a day later, due dates
/// spread over about a year around now, every sixth missing.
macro_rules! seed_sql {
    ($due:literal, $created:literal, $updated:literal) => {
        concat!(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $2) \
             INSERT INTO tasks (user_id, title, search_title, description, search_description, \
                                priority, completed, category, due_at, created_at, updated_at) \
             SELECT $1, 'Task ' || i, 'task ' || i, 'notes ' || (i % 97), 'notes ' || (i % 97), \
                    1 + i % 3, i % 4 = 0, \
                    CASE i % 5 WHEN 0 THEN 'work' WHEN 1 THEN 'home' WHEN 2 THEN 'errands' END, \
                    CASE WHEN i % 6 = 0 THEN NULL ELSE ",
            $due,
            " END, ",
            $created,
            ", ",
            $updated,
            " FROM n"
        )
    };
}

const SEED_POSTGRES: &str = seed_sql!(
    "$3 + ((i * 7919) % 8760 - 4380) * INTERVAL '1 hour'",
    "$3 - i * INTERVAL '1 minute'",
    "$3 - i * INTERVAL '1 minute' + ((i * 104729) % 1440) * INTERVAL '1 minute'"
);

/// SQLite keeps timestamps as RFC 3339 text, as the service writes them.
const SEED_SQLITE: &str = seed_sql!(
    "strftime('%Y-%m-%dT%H:%M:%S+00:00', $3, ((i * 7919) % 8760 - 4380) || ' hours')",
    "strftime('%Y-%m-%dT%H:%M:%S+00:00', $3, (-i) || ' minutes')",
    "strftime('%Y-%m-%dT%H:%M:%S+00:00', $3, ((i * 104729) % 1440 - i) || ' minutes')"
);

/// Inserts `count` tasks for each of `users`, then refreshes the planner's statistics and,
/// on PostgreSQL, the visibility map (as autovacuum does in steady state), so counts can be
/// answered from an index alone.
pub async fn seed(pool: &AppPool, users: &[String], count: i64) -> Result<(), sqlx::Error> {
    let at = chrono::Utc::now();
    for user in users {
        // One statement per dialect, so each arm binds its own.
        macro_rules! run {
            ($sql:expr, $p:expr) => {
                sqlx::query($sql)
                    .bind(user)
                    .bind(count)
                    .bind(at)
                    .execute($p)
                    .await
                    .map(drop)?
            };
        }
        match pool {
            AppPool::Sqlite(p) => run!(SEED_SQLITE, p),
            AppPool::Postgres(p) => run!(SEED_POSTGRES, p),
        }
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

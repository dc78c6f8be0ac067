//! Query plans: with one user holding 10,000 tasks among 100,000, every list shape reads
//! that user's rows through an index, never the whole table, on both databases.

use rocket::form::Form;
use todo_api::tasks::query::ListParams;
use todo_api::tasks::query::ListStatement;
use todo_api::tasks::sql::{Arg, BindArgs as _};

use crate::helpers::{on_both_databases, AppPool};
use crate::seed::seed;

/// Every list shape the API offers: the default, each filter, each sort, and a mix.
pub const SHAPES: &[&str] = &[
    "",
    "order=asc",
    "completed=false",
    "status=completed",
    "priority=high",
    "category=work",
    "q=task 99",
    "due_before=2030-01-01T00:00:00Z",
    "due_after=2020-01-01T00:00:00Z",
    "overdue=true",
    "sort=updated_at",
    "sort=title",
    "sort=title&order=desc",
    "sort=priority",
    "sort=due_at",
    "sort=due_at&order=desc",
    "sort=due_date",
    "completed=false&priority=high&category=work&sort=due_at",
];

/// The plan of `sql` with `args` bound, one step per line.
async fn explain(pool: &AppPool, sql: &str, args: &[Arg]) -> String {
    match pool {
        AppPool::Sqlite(p) => {
            // EXPLAIN QUERY PLAN rows are (id, parent, notused, detail).
            let text = format!("EXPLAIN QUERY PLAN {sql}");
            let rows: Vec<(i64, i64, i64, String)> =
                sqlx::query_as_with(&text, sqlx::Sqlite::arguments(args).unwrap())
                    .fetch_all(p)
                    .await
                    .unwrap();
            rows.into_iter().map(|r| r.3).collect::<Vec<_>>().join("\n")
        }
        AppPool::Postgres(p) => {
            let text = format!("EXPLAIN {sql}");
            let rows: Vec<String> =
                sqlx::query_scalar_with(&text, sqlx::Postgres::arguments(args).unwrap())
                    .fetch_all(p)
                    .await
                    .unwrap();
            rows.join("\n")
        }
    }
}

/// The plan of the statement the service runs for `shape`.
async fn plan(pool: &AppPool, user: &str, shape: &str) -> String {
    let query = Form::<ListParams>::parse(shape).unwrap().parse().unwrap();
    let ListStatement { sql, args, .. } = ListStatement::new(&query, chrono::Utc::now());
    let mut all = vec![Arg::Text(user.to_owned())];
    all.extend(args);
    explain(pool, &sql, &all).await
}

fn full_scan(plan: &str) -> bool {
    plan.lines()
        .any(|l| l.contains("Seq Scan") || l.trim_start().starts_with("SCAN tasks"))
}

on_both_databases! {
    async fn every_list_shape_reads_one_user_through_an_index(app) {
        let pool = app.pool().await;
        let others: Vec<String> = (0..45).map(|i| format!("user{i}")).collect();
        seed(&pool, &others, 2000).await.unwrap();
        seed(&pool, &["big".to_owned()], 10_000).await.unwrap();
        for shape in SHAPES {
            let plan = plan(&pool, "big", shape).await;
            if std::env::var_os("SHOW_PLANS").is_some() { eprintln!("== {shape}\n{plan}"); }
            assert!(!full_scan(&plan), "{shape:?} scans the whole table:\n{plan}");
            assert!(plan.contains("tasks_user_") || plan.contains("Index"), "{shape:?}:\n{plan}");
        }
        // The dashboard's three lists: each reads the user's rows through an index too.
        let now = chrono::Utc::now();
        let args = [Arg::Text("big".to_owned()), Arg::Time(now), Arg::Time(now + chrono::Duration::days(7)), Arg::Int(10)];
        let plan = explain(&pool, todo_api::stats::store::OVERVIEW_LISTS, &args).await;
        assert!(!full_scan(&plan), "the overview scans the whole table:\n{plan}");
        // The search fill runs at every start: finding nothing to fill must not scan the table.
        let plan = explain(&pool, todo_api::tasks::search::UNFOLDED, &[Arg::Int(500)]).await;
        // Scanning that partial index reads only rows still to fill.
        let table_scan = plan.contains("Seq Scan") || plan.lines().any(|l| l.trim() == "SCAN tasks");
        assert!(!table_scan && plan.contains("tasks_search_unfilled_idx"), "start-up fill:\n{plan}");
    }
}

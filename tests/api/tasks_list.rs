//! Listing: filters, sort, paging, and the 422 for unknown values.

use rocket::http::{Method, Status};
use serde_json::{json, Value};

use crate::helpers::{on_both_databases, Pool, TestApp};

async fn titles(app: &TestApp, query: &str) -> Vec<String> {
    let response = app
        .call(
            "alice",
            Method::Get,
            &format!("/api/alice/tasks?{query}"),
            None,
        )
        .await;
    assert_eq!(response.status, Status::Ok, "{query}: {}", response.text);
    response
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["title"].as_str().unwrap().to_owned())
        .collect()
}

async fn seed(app: &TestApp) {
    for body in [
        json!({"title": "a", "priority": "low", "category": "work", "due_at": "2020-01-01T00:00:00Z"}),
        json!({"title": "b", "priority": "high", "category": "work", "completed": true, "due_at": "2020-06-01T00:00:00Z"}),
        json!({"title": "c", "priority": "medium", "category": "home", "due_at": "2999-01-01T00:00:00Z"}),
        json!({"title": "d", "priority": "high"}),
    ] {
        app.create_task("alice", body).await;
    }
    app.create_task("bob", json!({"title": "bob", "priority": "high"}))
        .await;
}

on_both_databases! {
    async fn filters_combine_with_and(app) {
        seed(&app).await;
        assert_eq!(titles(&app, "").await, ["d", "c", "b", "a"]);
        assert_eq!(titles(&app, "completed=true").await, ["b"]);
        assert_eq!(titles(&app, "completed=false").await, ["d", "c", "a"]);
        assert_eq!(titles(&app, "status=pending").await, ["d", "c", "a"]);
        assert_eq!(titles(&app, "status=completed").await, ["b"]);
        assert_eq!(titles(&app, "status=all").await, ["d", "c", "b", "a"]);
        assert_eq!(titles(&app, "priority=high").await, ["d", "b"]);
        assert_eq!(titles(&app, "category=work").await, ["b", "a"]);
        assert_eq!(titles(&app, "due_before=2021-01-01T00:00:00Z").await, ["b", "a"]);
        assert_eq!(titles(&app, "due_after=2020-03-01T00:00:00%2B00:00").await, ["c", "b"]);
        assert_eq!(titles(&app, "overdue=true").await, ["a"]);
        assert_eq!(titles(&app, "overdue=false").await, ["d", "c", "b"]);
        assert_eq!(titles(&app, "category=work&priority=high&completed=true").await, ["b"]);
        assert_eq!(titles(&app, "category=work&status=pending&priority=high").await, Vec::<String>::new());
        assert_eq!(titles(&app, "unknown_parameter=1").await, ["d", "c", "b", "a"]);
    }

    async fn sorting_follows_the_contract(app) {
        seed(&app).await;
        assert_eq!(titles(&app, "order=asc").await, ["a", "b", "c", "d"]);
        assert_eq!(titles(&app, "sort=title").await, ["a", "b", "c", "d"]);
        assert_eq!(titles(&app, "sort=title&order=desc").await, ["d", "c", "b", "a"]);
        assert_eq!(titles(&app, "sort=priority").await, ["a", "c", "b", "d"], "low, medium, high; ties by id");
        assert_eq!(titles(&app, "sort=priority&order=desc").await, ["d", "b", "c", "a"]);
        assert_eq!(titles(&app, "sort=due_at").await, ["a", "b", "c", "d"], "no due date last");
        assert_eq!(titles(&app, "sort=due_at&order=desc").await, ["c", "b", "a", "d"], "no due date last");
        app.call("alice", Method::Patch, "/api/alice/tasks/1", Some(&json!({"title": "a"}))).await;
        assert_eq!(titles(&app, "sort=updated_at").await[0], "a", "most recently updated first");
    }

    async fn paging_sets_total_count_and_links(app) {
        for i in 0..5 {
            app.create_task("alice", json!({"title": format!("t{i}"), "priority": "high"})).await;
        }
        let response = app.call("alice", Method::Get, "/api/alice/tasks?priority=high&limit=2&offset=2", None).await;
        assert_eq!(response.header("X-Total-Count"), Some("5"));
        let titles: Vec<Value> = response.json().as_array().unwrap().iter().map(|t| t["title"].clone()).collect();
        assert_eq!(titles, [json!("t2"), json!("t1")]);
        let link = response.header("Link").unwrap();
        assert!(link.contains("</api/alice/tasks?priority=high&limit=2&offset=4>; rel=\"next\""), "{link}");
        assert!(link.contains("</api/alice/tasks?priority=high&limit=2&offset=0>; rel=\"prev\""), "{link}");
        let last = app.call("alice", Method::Get, "/api/alice/tasks?limit=2&offset=4", None).await;
        assert!(!last.header("Link").unwrap().contains("next"));
        let beyond = app.call("alice", Method::Get, "/api/alice/tasks?limit=2&offset=50", None).await;
        assert_eq!(beyond.json(), json!([]));
        assert_eq!(beyond.header("X-Total-Count"), Some("5"));
        let empty = app.call("bob", Method::Get, "/api/bob/tasks", None).await;
        assert_eq!(empty.header("X-Total-Count"), Some("0"));
        assert_eq!(empty.header("Link"), None);
    }

    async fn paging_through_ties_sees_every_task_once(app) {
        for i in 0..45 {
            app.create_task("alice", json!({"title": format!("t{i}")})).await;
        }
        // Give every task one of three creation times, so pages cut through ties.
        let times = ["2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z", "2026-01-03T00:00:00Z"];
        for (i, at) in times.iter().enumerate() {
            let at = chrono::DateTime::parse_from_rfc3339(at).unwrap().with_timezone(&chrono::Utc);
            let sql = "UPDATE tasks SET created_at = $1 WHERE id % 3 = $2";
            match TestApp::pool(&app).await {
                Pool::Sqlite(p) => { sqlx::query(sql).bind(at).bind(i as i64).execute(&p).await.unwrap(); }
                Pool::Postgres(p) => { sqlx::query(sql).bind(at).bind(i as i64).execute(&p).await.unwrap(); }
            }
        }
        let mut seen = Vec::new();
        let mut offset = 0;
        loop {
            let page = app.call("alice", Method::Get, &format!("/api/alice/tasks?limit=7&offset={offset}"), None).await;
            let ids: Vec<i64> = page.json().as_array().unwrap().iter().map(|t| t["id"].as_i64().unwrap()).collect();
            if ids.is_empty() { break; }
            seen.extend(ids);
            offset += 7;
        }
        let mut sorted = seen.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(seen.len(), 45, "every task once");
        assert_eq!(sorted.len(), 45, "no task twice");
    }

    async fn unknown_values_of_known_parameters_are_422(app) {
        for (query, field) in [
            ("sort=banana", "sort"), ("order=up", "order"), ("limit=0", "limit"), ("limit=1001", "limit"),
            ("limit=ten", "limit"), ("offset=-1", "offset"), ("completed=yes", "completed"),
            ("status=done", "status"), ("priority=urgent", "priority"), ("due_before=tomorrow", "due_before"),
            ("due_after=2026-13-01T00:00:00Z", "due_after"), ("overdue=1", "overdue"),
        ] {
            let response = app.call("alice", Method::Get, &format!("/api/alice/tasks?{query}"), None).await;
            assert_eq!(response.status, Status::UnprocessableEntity, "{query}");
            assert!(response.json()["field_errors"][field].is_array(), "{query}: {}", response.text);
        }
        let response = app.call("alice", Method::Get, "/api/alice/tasks?sort=banana&limit=0", None).await;
        let errors = response.json()["field_errors"].clone();
        assert!(errors["sort"].is_array() && errors["limit"].is_array(), "all reported: {errors}");
    }
}

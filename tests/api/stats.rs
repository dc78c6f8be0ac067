//! Statistics, checked against tasks the test created.

use rocket::http::Status;
use serde_json::json;

use crate::helpers::on_every_database;

on_every_database! {
    async fn stats_of_a_user_without_tasks_are_zero(app) {
        let response = app.as_user("alice").get("stats").await;
        assert_eq!(response.status, Status::Ok);
        assert_eq!(response.json(), json!({"total": 0, "completed": 0, "pending": 0, "overdue": 0,
            "completion_rate": 0.0, "by_priority": {"low": 0, "medium": 0, "high": 0}, "by_category": []}));
    }

    async fn stats_count_the_users_tasks(app) {
        let past = "2020-01-01T00:00:00Z";
        let future = "2999-01-01T00:00:00Z";
        for body in [
            json!({"title": "a", "category": "work", "priority": "high", "due_at": past}),
            json!({"title": "b", "category": "work", "priority": "high", "due_at": past, "completed": true}),
            json!({"title": "c", "category": "work", "due_at": future}),
            json!({"title": "d", "category": "home", "priority": "low", "completed": true}),
            json!({"title": "e", "due_at": past}),
            json!({"title": "f", "completed": true}),
        ] {
            app.create_task("alice", body).await;
        }
        app.create_task("bob", json!({"title": "not counted", "due_at": past})).await;
        let stats = app.as_user("alice").get("stats").await.json();
        assert_eq!(stats["total"], 6);
        assert_eq!(stats["completed"], 3);
        assert_eq!(stats["pending"], 3);
        assert_eq!(stats["overdue"], 2, "pending and past due: a and e");
        assert_eq!(stats["completion_rate"], 0.5);
        assert_eq!(stats["by_priority"], json!({"low": 1, "medium": 3, "high": 2}));
        assert_eq!(stats["by_category"], json!([
            {"category": "work", "total": 3, "completed": 1},
            {"category": "home", "total": 1, "completed": 1},
            {"category": null, "total": 2, "completed": 1},
        ]));
    }

    async fn completion_rate_is_rounded_to_four_decimals(app) {
        for completed in [true, false, false] {
            app.create_task("alice", json!({"title": "t", "completed": completed})).await;
        }
        let stats = app.as_user("alice").get("stats").await.json();
        assert_eq!(stats["completion_rate"], 0.3333);
    }

    async fn stats_need_the_right_user(app) {
        let anonymous = app.anonymous().get("/api/alice/stats").await;
        assert_eq!(anonymous.status, Status::Unauthorized);
        assert_eq!(anonymous.error_code(), "auth_required");
        let other = app.as_user("bob").get("/api/alice/stats").await;
        assert_eq!(other.status, Status::Forbidden);
        assert_eq!(other.error_code(), "forbidden");
    }
}

on_every_database! {
    async fn the_dashboard_overview_has_the_stats_and_three_short_lists(app) {
        let day = chrono::Duration::days(1);
        let now = chrono::Utc::now();
        let at = |offset: chrono::Duration| (now + offset).to_rfc3339();
        // 12 pending tasks due in the next days, 12 overdue, 12 completed, and others.
        for i in 0..12i32 {
            app.create_task("alice", json!({"title": format!("soon {i}"), "due_date": at(day * (i % 6) + chrono::Duration::hours(1 + i64::from(i)))})).await;
            app.create_task("alice", json!({"title": format!("late {i}"), "due_date": at(-(day * (i + 1)))})).await;
            let done = app.create_task("alice", json!({"title": format!("done {i}"), "due_date": at(-day)})).await;
            app.as_user("alice").patch(&format!("tasks/{}/complete", done["id"]), None).await;
        }
        app.create_task("alice", json!({"title": "far", "due_date": at(day * 30)})).await;
        app.create_task("alice", json!({"title": "no date"})).await;
        app.create_task("bob", json!({"title": "bob's", "due_date": at(day)})).await;

        let response = app.as_user("alice").get("dashboard/overview").await;
        assert_eq!(response.status, Status::Ok, "{}", response.text);
        let overview = response.json();
        let stats = app.as_user("alice").get("stats").await.json();
        assert_eq!(overview["stats"], stats, "exactly the statistics");
        let list = |name: &str| overview[name].as_array().unwrap().clone();
        let titles = |name: &str| list(name).iter().map(|t| t["title"].as_str().unwrap().to_owned()).collect::<Vec<_>>();
        for name in ["due_soon", "overdue", "recently_completed"] {
            assert_eq!(list(name).len(), 10, "{name}: at most 10");
        }
        let due = |name: &str| list(name).iter().map(|t| t["due_date"].as_str().unwrap().to_owned()).collect::<Vec<_>>();
        let mut sorted = due("due_soon");
        sorted.sort();
        assert_eq!(due("due_soon"), sorted, "soonest first");
        assert!(titles("due_soon").iter().all(|t| t.starts_with("soon")));
        let mut sorted = due("overdue");
        sorted.sort();
        assert_eq!(due("overdue"), sorted, "most overdue first");
        assert_eq!(titles("overdue")[0], "late 11");
        assert!(titles("overdue").iter().all(|t| t.starts_with("late")), "completed tasks are not overdue");
        assert!(list("recently_completed").iter().all(|t| t["completed"] == true));
        assert_eq!(titles("recently_completed")[0], "done 11", "most recently updated first");
        assert!(list("due_soon").iter().chain(list("overdue").iter()).all(|t| t["user_id"] == "alice"));
        let task = &list("due_soon")[0];
        let fetched = app.as_user("alice").get(&format!("tasks/{}", task["id"])).await.json();
        assert_eq!(task, &fetched, "full task objects");

        let empty = app.as_user("carol").get("dashboard/overview").await.json();
        assert_eq!(empty["due_soon"], json!([]));
        assert_eq!(empty["stats"]["total"], 0);
        let other = app.with_token(&app.token("bob")).get("/api/alice/dashboard/overview").await;
        assert_eq!(other.status, Status::Forbidden);
        assert_eq!(other.error_code(), "forbidden");
    }
}

//! Statistics, checked against tasks the test created.

use rocket::http::{Method, Status};
use serde_json::json;

use crate::helpers::on_both_databases;

on_both_databases! {
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
        let anonymous = app.request(Method::Get, "/api/alice/stats", None, None).await;
        assert_eq!(anonymous.status, Status::Unauthorized);
        assert_eq!(anonymous.error_code(), "auth_required");
        let other = app.as_user("bob").get("/api/alice/stats").await;
        assert_eq!(other.status, Status::Forbidden);
        assert_eq!(other.error_code(), "forbidden");
    }
}

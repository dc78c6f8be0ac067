//! Token-scoped routes: `/api/tasks…`, `/api/stats`, `/api/dashboard/…` and `/api/events`
//! act for the token's user, with the same answers as their `/api/{user_id}/…` twins;
//! `Location` and `Link` stay in the family the request used.

use rocket::http::{Method, Status};
use serde_json::{json, Value};

use crate::helpers::on_every_database;

on_every_database! {
    async fn token_scoped_routes_act_for_the_tokens_user(app) {
        let token = app.token("alice");
        let call = |method: Method, path: &'static str, body: Option<Value>| {
            let token = token.clone();
            let app = &app;
            async move { app.with_token(&token).send(method, path, body.as_ref(), &[]).await }
        };
        let created = call(Method::Post, "/api/tasks", Some(json!({"title": "mine", "priority": 3}))).await;
        assert_eq!(created.status, Status::Created, "{}", created.text);
        let task = created.json();
        let id = task["id"].as_i64().unwrap();
        assert_eq!(task["user_id"], "alice");
        assert_eq!(created.header("Location"), Some(format!("/api/tasks/{id}").as_str()), "Location stays in the family");
        let twin = app.as_user("alice").get(&format!("tasks/{id}")).await;
        assert_eq!(twin.json(), task, "the same task through the twin");

        let one = app.with_token(&token).get(&format!("/api/tasks/{id}")).await;
        assert_eq!(one.json(), task);
        let toggled = app.with_token(&token).patch(&format!("/api/tasks/{id}/complete"), None).await;
        assert_eq!(toggled.json()["completed"], true);
        for i in 0..3 {
            app.create_task("alice", json!({"title": format!("more {i}")})).await;
        }
        app.create_task("bob", json!({"title": "bob's"})).await;
        let page = app.with_token(&token).get("/api/tasks?limit=2&sort=title").await;
        assert_eq!(page.status, Status::Ok);
        assert_eq!(page.header("X-Total-Count"), Some("4"));
        let link = page.header("Link").unwrap();
        assert!(link.starts_with("</api/tasks?sort=title&limit=2&offset=2>"), "Link stays in the family: {link}");
        let list = page.json();
        assert!(list.as_array().unwrap().iter().all(|t| t["user_id"] == "alice"));

        let stats = app.as_user("alice").get("stats").await.json();
        for path in ["/api/stats", "/api/dashboard/stats"] {
            assert_eq!(app.with_token(&token).get(path).await.json(), stats, "{path}");
        }
        let overview = app.with_token(&token).get("/api/dashboard/overview").await;
        assert_eq!(overview.status, Status::Ok);
        assert_eq!(overview.json()["stats"], stats);

        let deleted = app.with_token(&token).delete(&format!("/api/tasks/{id}")).await;
        assert_eq!(deleted.status, Status::NoContent);
        let cleared = app.with_token(&token).delete("/api/tasks?completed=true").await;
        assert_eq!(cleared.json(), json!({"deleted": 0}));
    }

    async fn token_scoped_routes_refuse_like_their_twins(app) {
        for path in ["/api/tasks", "/api/tasks/1", "/api/stats", "/api/dashboard/overview", "/api/events"] {
            let anonymous = app.anonymous().get(path).await;
            assert_eq!(anonymous.status, Status::Unauthorized, "{path}");
            assert_eq!(anonymous.error_code(), "auth_required");
            let junk = app.with_token("not-a-token").get(path).await;
            assert_eq!(junk.status, Status::Unauthorized, "{path}");
            assert_eq!(junk.error_code(), "invalid_token");
        }
        // A token whose claim is forged: the path picked from it is not trusted.
        let forged = crate::helpers::unsigned(&json!({"alg": "HS256", "typ": "JWT"}), &json!({"sub": "bob", "exp": 4_000_000_000u64}), "AAAA");
        let response = app.with_token(&forged).get("/api/tasks").await;
        assert_eq!(response.status, Status::Unauthorized);
        assert_eq!(response.error_code(), "invalid_token");
        let bobs = app.create_task("bob", json!({"title": "bob's"})).await;
        let other = app.with_token(&app.token("alice")).get(&format!("/api/tasks/{}", bobs["id"])).await;
        assert_eq!(other.status, Status::NotFound, "another user's task is a 404 here too");
        assert_eq!(other.error_code(), "not_found");
    }

    async fn the_words_tasks_stats_events_and_dashboard_are_never_user_ids(app) {
        // A user whose id is "tasks" uses the token-scoped family.
        let token = app.token("tasks");
        let created = app.with_token(&token).post("/api/tasks", &json!({"title": "of the user tasks"})).await;
        assert_eq!(created.status, Status::Created);
        assert_eq!(created.json()["user_id"], "tasks");
        let listed = app.with_token(&token).get("/api/tasks").await.json();
        assert_eq!(listed.as_array().map(Vec::len), Some(1));
        // /api/tasks/tasks is the task whose id is "tasks" of the token's user: a 422.
        let odd = app.with_token(&app.token("alice")).get("/api/tasks/tasks").await;
        assert_eq!(odd.status, Status::UnprocessableEntity);
        assert!(odd.json()["field_errors"]["id"].is_array());
        // Alice's own routes are untouched.
        let alices = app.as_user("alice").get("tasks").await;
        assert_eq!(alices.status, Status::Ok);
        assert_eq!(alices.json(), json!([]));
    }
}

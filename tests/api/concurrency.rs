//! Concurrent use: many users at once, and atomic toggles.

use rocket::futures::future::join_all;
use rocket::http::Status;
use serde_json::json;

use crate::helpers::on_every_database;

on_every_database! {
    async fn a_hundred_mixed_requests_from_twenty_users_all_succeed(app) {
        let users: Vec<String> = (0..20).map(|i| format!("user{i}")).collect();
        let mut seeds = Vec::new();
        for user in &users {
            seeds.push(app.create_task(user, json!({"title": "seed"})).await["id"].as_i64().unwrap());
        }
        let requests = (0..100).map(|i| {
            let user = &users[i % 20];
            let seed = seeds[i % 20];
            let app = &app;
            async move {
                let response = match i / 20 {
                    0..=2 => app.as_user(user).post(&format!("/api/{user}/tasks"), &json!({"title": format!("task {i}")})).await,
                    3 => app.as_user(user).get(&format!("/api/{user}/tasks")).await,
                    _ => app.as_user(user).patch(&format!("/api/{user}/tasks/{seed}/complete"), None).await,
                };
                (i, user.clone(), response)
            }
        });
        let responses = join_all(requests).await;
        let mut created = Vec::new();
        for (i, user, response) in responses {
            assert!(response.status.code < 300, "request {i}: {} {}", response.status, response.text);
            if response.status == Status::Created {
                created.push((user, response.json()));
            }
        }
        assert_eq!(created.len(), 60);
        for (user, task) in &created {
            let fetched = app.as_user(user).get(&format!("/api/{user}/tasks/{}", task["id"])).await;
            assert_eq!(fetched.status, Status::Ok);
            assert_eq!(fetched.json()["title"], task["title"]);
        }
        for (user, seed) in users.iter().zip(&seeds) {
            let list = app.as_user(user).get(&format!("/api/{user}/tasks")).await.json();
            assert_eq!(list.as_array().map(Vec::len), Some(4), "{user}: seed + 3 created");
            let seed = app.as_user(user).get(&format!("/api/{user}/tasks/{seed}")).await.json();
            assert_eq!(seed["completed"], true, "{user}: toggled exactly once");
        }
    }

    async fn concurrent_toggles_never_lose_a_flip(app) {
        let task = app.create_task("alice", json!({"title": "flip me"})).await;
        let path = format!("/api/alice/tasks/{}/complete", task["id"]);
        let flips = 25;
        let alice = app.as_user("alice");
        let responses = join_all((0..flips).map(|_| alice.patch(&path, None))).await;
        assert!(responses.iter().all(|r| r.status == Status::Ok));
        let after = app.as_user("alice").get(&format!("tasks/{}", task["id"])).await.json();
        assert_eq!(after["completed"], flips % 2 == 1, "{flips} flips from false");
        let trues = responses.iter().filter(|r| r.json()["completed"] == true).count();
        assert_eq!(trues, 13, "each toggle saw the previous one's result");
    }
}

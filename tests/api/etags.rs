//! ETags and conditional requests: 304 on a current `If-None-Match`, 412 on a stale
//! `If-Match`, and the check applied atomically with the write.

use rocket::futures::future::join_all;
use rocket::http::{Method, Status};
use serde_json::json;

use crate::helpers::{on_both_databases, TestApp};

async fn tag_of(app: &TestApp, path: &str) -> String {
    let response = app.as_user("alice").get(path).await;
    assert_eq!(response.status, Status::Ok, "{}", response.text);
    response
        .header("ETag")
        .expect("every task answer has an ETag")
        .to_owned()
}

on_both_databases! {
    async fn every_task_answer_carries_a_strong_etag_that_moves_on_each_change(app) {
        let created = app.as_user("alice").post("tasks", &json!({"title": "t"})).await;
        assert_eq!(created.status, Status::Created);
        let path = format!("/api/alice/tasks/{}", created.json()["id"]);
        let first = created.header("ETag").expect("201 has an ETag").to_owned();
        assert!(first.starts_with('"') && first.ends_with('"'), "strong tag: {first}");
        assert_eq!(tag_of(&app, &path).await, first);

        // Several changes within the same millisecond still give distinct tags.
        let mut seen = vec![first];
        for body in [json!({"title": "u"}), json!({"title": "u"}), json!({"priority": "high"})] {
            let response = app.as_user("alice").patch(&path, Some(&body)).await;
            assert_eq!(response.status, Status::Ok);
            let tag = response.header("ETag").unwrap().to_owned();
            assert!(!seen.contains(&tag), "{tag} repeats one of {seen:?}");
            assert_eq!(tag_of(&app, &path).await, tag);
            seen.push(tag);
        }
        let toggled = app.as_user("alice").patch(&format!("{path}/complete"), None).await;
        assert!(!seen.contains(&toggled.header("ETag").unwrap().to_owned()));
        let replaced = app.as_user("alice").put(&path, &json!({"title": "v"})).await;
        assert_ne!(replaced.header("ETag"), toggled.header("ETag"));
    }

    async fn if_none_match_answers_304_without_a_body(app) {
        let task = app.create_task("alice", json!({"title": "t"})).await;
        let path = format!("/api/alice/tasks/{}", task["id"]);
        let tag = tag_of(&app, &path).await;

        for header in [tag.clone(), format!("W/{tag}"), format!("\"x\", {tag}"), "*".to_owned()] {
            let response = app.as_user("alice").send(Method::Get, &path, None, &[("If-None-Match", &header)]).await;
            assert_eq!(response.status, Status::NotModified, "If-None-Match: {header}");
            assert!(response.text.is_empty());
            assert_eq!(response.header("ETag"), Some(tag.as_str()));
        }
        let stale = app.as_user("alice").send(Method::Get, &path, None, &[("If-None-Match", "\"1-999\"")]).await;
        assert_eq!(stale.status, Status::Ok);
        assert_eq!(stale.json()["title"], "t");

        app.as_user("alice").patch(&path, Some(&json!({"title": "changed"}))).await;
        let after_change = app.as_user("alice").send(Method::Get, &path, None, &[("If-None-Match", &tag)]).await;
        assert_eq!(after_change.status, Status::Ok, "a changed task is sent again");
        assert_eq!(after_change.json()["title"], "changed");

        // Conditional headers never get past the 404 of another user's task.
        let bobs = app.create_task("bob", json!({"title": "b"})).await;
        let response = app.as_user("alice").send(Method::Get, &format!("/api/alice/tasks/{}", bobs["id"]), None, &[("If-None-Match", "*")]).await;
        assert_eq!(response.status, Status::NotFound);
        assert_eq!(response.error_code(), "not_found");
    }

    async fn if_match_guards_every_write(app) {
        let task = app.create_task("alice", json!({"title": "t"})).await;
        let id = task["id"].as_i64().unwrap();
        let path = format!("/api/alice/tasks/{id}");
        let stale = tag_of(&app, &path).await;
        let current = app.as_user("alice").patch(&path, Some(&json!({"title": "t2"}))).await.header("ETag").unwrap().to_owned();

        let writes = [
            (Method::Put, path.clone(), Some(json!({"title": "lost"}))),
            (Method::Patch, path.clone(), Some(json!({"title": "lost"}))),
            (Method::Patch, path.clone(), Some(json!({}))),
            (Method::Patch, format!("{path}/complete"), None),
            (Method::Delete, path.clone(), None),
        ];
        let refused = [stale.clone(), format!("W/{current}"), format!("\"{}-{}\"", id + 1, 2), "garbage".to_owned()];
        for (method, target, body) in &writes {
            for header in &refused {
                let response = app.as_user("alice").send(*method, target, body.as_ref(), &[("If-Match", header)]).await;
                assert_eq!(response.status, Status::PreconditionFailed, "{method} {target} If-Match: {header}");
                assert_eq!(response.error_code(), "precondition_failed");
            }
        }
        let unchanged = app.as_user("alice").get(&path).await;
        assert_eq!(unchanged.json()["title"], "t2");
        assert_eq!(unchanged.json()["completed"], false);
        assert_eq!(unchanged.header("ETag"), Some(current.as_str()), "refused writes change nothing");

        let ok = app.as_user("alice").send(Method::Patch, &path, Some(&json!({"title": "t3"})), &[("If-Match", &format!("{stale}, {current}"))]).await;
        assert_eq!(ok.status, Status::Ok, "any listed tag may match");
        let current = ok.header("ETag").unwrap().to_owned();
        let ok = app.as_user("alice").send(Method::Patch, &format!("{path}/complete"), None, &[("If-Match", &current)]).await;
        assert_eq!(ok.status, Status::Ok);
        assert_eq!(ok.json()["completed"], true);
        let ok = app.as_user("alice").send(Method::Put, &path, Some(&json!({"title": "t4"})), &[("If-Match", "*")]).await;
        assert_eq!(ok.status, Status::Ok);
        let current = ok.header("ETag").unwrap().to_owned();
        let deleted = app.as_user("alice").send(Method::Delete, &path, None, &[("If-Match", &current)]).await;
        assert_eq!(deleted.status, Status::NoContent);

        // Without the task there is nothing to precondition: 404, as without the header.
        for (method, target, body) in &writes {
            let response = app.as_user("alice").send(*method, target, body.as_ref(), &[("If-Match", &current)]).await;
            assert_eq!(response.status, Status::NotFound, "{method} {target}");
            assert_eq!(response.error_code(), "not_found");
        }
    }

    async fn concurrent_writes_with_the_same_if_match_have_one_winner(app) {
        let task = app.create_task("alice", json!({"title": "race"})).await;
        let path = format!("/api/alice/tasks/{}", task["id"]);
        for round in 0..3 {
            let tag = tag_of(&app, &path).await;
            let writers = 8;
            let responses = join_all((0..writers).map(|i| {
                let body = json!({"title": format!("round {round} writer {i}")});
                let (app, path, tag) = (&app, &path, &tag);
                async move { app.as_user("alice").send(Method::Patch, path, Some(&body), &[("If-Match", tag)]).await }
            }))
            .await;
            let winners: Vec<_> = responses.iter().filter(|r| r.status == Status::Ok).collect();
            assert_eq!(winners.len(), 1, "round {round}: exactly one writer wins");
            assert!(responses.iter().all(|r| r.status == Status::Ok || r.status == Status::PreconditionFailed));
            let stored = app.as_user("alice").get(&path).await;
            assert_eq!(stored.json()["title"], winners[0].json()["title"]);
            assert_eq!(stored.header("ETag"), winners[0].header("ETag"));
        }
        let tag = tag_of(&app, &path).await;
        let headers = [("If-Match", tag.as_str())];
        let alice = app.as_user("alice");
        let deletes = join_all((0..4).map(|_| alice.send(Method::Delete, &path, None, &headers))).await;
        assert_eq!(deletes.iter().filter(|r| r.status == Status::NoContent).count(), 1);
    }
}

//! The task endpoints' acceptance scenarios and user isolation on every endpoint.

use rocket::http::{Method, Status};
use serde_json::{json, Value};

use crate::helpers::on_every_database;

on_every_database! {
    async fn a_new_user_has_an_empty_list(app) {
        let response = app.as_user("alice").get("tasks").await;
        assert_eq!(response.status, Status::Ok);
        assert_eq!(response.json(), json!([]));
    }

    async fn create_answers_201_with_location_and_every_field(app) {
        let body = json!({"title": "  Buy groceries  ", "description": "Milk, eggs, bread",
                          "priority": "high", "category": " home ",
                          "due_date": "2026-12-01T18:00:00+01:00", "user_id": "mallory", "id": 7});
        let response = app.as_user("alice").post("tasks", &body).await;
        assert_eq!(response.status, Status::Created);
        let task = response.json();
        let id = task["id"].as_i64().unwrap();
        assert_eq!(response.header("Location"), Some(format!("/api/alice/tasks/{id}").as_str()));
        assert_eq!(task["user_id"], "alice", "a user_id in the body is ignored");
        assert_eq!(task["title"], "Buy groceries");
        assert_eq!(task["description"], "Milk, eggs, bread");
        assert_eq!(task["completed"], false);
        assert_eq!(task["priority"], "high");
        assert_eq!(task["category"], "home");
        assert_eq!(task["due_date"], "2026-12-01T17:00:00.000000Z");
        assert_eq!(task["created_at"], task["updated_at"]);
        assert!(task["created_at"].as_str().unwrap().ends_with('Z'));

        let fetched = app.as_user("alice").get(&format!("tasks/{id}")).await;
        assert_eq!(fetched.status, Status::Ok);
        assert_eq!(fetched.json(), task);
    }

    async fn create_applies_defaults(app) {
        let task = app.create_task("alice", json!({"title": "Minimal"})).await;
        assert_eq!(task["description"], Value::Null);
        assert_eq!(task["completed"], false);
        assert_eq!(task["priority"], "medium");
        assert_eq!(task["category"], Value::Null);
        assert_eq!(task["due_date"], Value::Null);
    }

    async fn list_returns_the_users_tasks_newest_first(app) {
        let first = app.create_task("alice", json!({"title": "first"})).await;
        let second = app.create_task("alice", json!({"title": "second"})).await;
        app.create_task("bob", json!({"title": "not alice's"})).await;
        let list = app.as_user("alice").get("tasks").await.json();
        assert_eq!(list, json!([second, first]));
    }

    async fn each_field_rule_answers_422_naming_the_field(app) {
        let cases: Vec<(Value, &str, &str)> = vec![
            (json!({}), "title", "title is required"),
            (json!({"title": ""}), "title", "empty title"),
            (json!({"title": "   "}), "title", "blank title"),
            (json!({"title": null}), "title", "null title"),
            (json!({"title": 42}), "title", "title not a string"),
            (json!({"title": "x".repeat(201)}), "title", "title over 200 characters"),
            (json!({"title": "é".repeat(201)}), "title", "201 two-byte characters"),
            (json!({"title": "ok", "description": "d".repeat(1001)}), "description", "long description"),
            (json!({"title": "ok", "description": 5}), "description", "description not a string"),
            (json!({"title": "ok", "completed": "yes"}), "completed", "completed not a boolean"),
            (json!({"title": "ok", "priority": "asap"}), "priority", "unknown priority"),
            (json!({"title": "ok", "priority": "highest"}), "priority", "no such priority in any case"),
            (json!({"title": "ok", "category": ""}), "category", "empty category"),
            (json!({"title": "ok", "category": "c".repeat(101)}), "category", "long category"),
            (json!({"title": "ok", "due_at": "next friday"}), "due_at", "due_at not RFC 3339"),
            (json!({"title": "ok", "due_at": "2026-12-32"}), "due_at", "due_at not a date"),
            (json!({"title": "ok", "due_date": "0000-06-01T00:00:00Z"}), "due_date", "year 0"),
            (json!({"title": "ok", "due_date": "0001-01-01T00:30:00+01:00"}), "due_date", "year 0 in UTC"),
            (json!({"title": "ok", "due_date": "9999-12-31T23:30:00-01:00"}), "due_date", "year 10000 in UTC"),
        ];
        for (body, field, reason) in cases {
            let response = app.as_user("alice").post("tasks", &body).await;
            assert_eq!(response.status, Status::UnprocessableEntity, "{reason}");
            assert_eq!(response.error_code(), "validation_error", "{reason}");
            let errors = response.json()["field_errors"].clone();
            assert!(errors[field].as_array().is_some_and(|m| !m.is_empty()), "{reason}: {errors}");
        }
        let list = app.as_user("alice").get("tasks").await.json();
        assert_eq!(list, json!([]), "nothing invalid was stored");
    }

    async fn limits_count_characters_not_bytes(app) {
        let title = "é".repeat(200);
        let task = app.create_task("alice", json!({"title": title, "description": "ü".repeat(1000),
                                                   "category": "ñ".repeat(100)})).await;
        assert_eq!(task["title"].as_str().unwrap().chars().count(), 200);
        let emoji = app.create_task("alice", json!({"title": "🦀".repeat(200)})).await;
        assert_eq!(emoji["title"].as_str().unwrap().chars().count(), 200);
    }

    async fn all_broken_fields_are_reported_together(app) {
        let body = json!({"title": "", "priority": "x", "due_at": 3});
        let response = app.as_user("alice").post("tasks", &body).await;
        let errors = response.json()["field_errors"].clone();
        for field in ["title", "priority", "due_at"] {
            assert!(errors.get(field).is_some(), "{field} missing from {errors}");
        }
    }

    async fn put_replaces_keeps_absent_fields_and_clears_nulls(app) {
        let task = app.create_task("alice", json!({"title": "t", "description": "d", "category": "c",
                                                   "priority": "low", "due_at": "2026-12-01T17:00:00Z"})).await;
        let path = format!("/api/alice/tasks/{}", task["id"]);
        let body = json!({"title": " new title ", "description": null, "completed": true});
        let response = app.as_user("alice").put(&path, &body).await;
        assert_eq!(response.status, Status::Ok);
        let updated = response.json();
        assert_eq!(updated["title"], "new title");
        assert_eq!(updated["description"], Value::Null, "explicit null clears");
        assert_eq!(updated["completed"], true);
        assert_eq!(updated["category"], "c", "absent keeps");
        assert_eq!(updated["priority"], "low", "absent keeps");
        assert_eq!(updated["due_date"], task["due_date"], "absent keeps");
        assert_eq!(updated["created_at"], task["created_at"], "created_at never changes");
        assert!(updated["updated_at"].as_str() > task["updated_at"].as_str(), "updated_at moves");
        let fetched = app.as_user("alice").get(&path).await.json();
        assert_eq!(fetched, updated);
    }

    async fn put_requires_a_valid_title(app) {
        let task = app.create_task("alice", json!({"title": "keep me"})).await;
        let path = format!("/api/alice/tasks/{}", task["id"]);
        for body in [json!({"completed": true}), json!({"title": ""}), json!({"title": "x".repeat(201)})] {
            let response = app.as_user("alice").put(&path, &body).await;
            assert_eq!(response.status, Status::UnprocessableEntity, "{body}");
            assert!(response.json()["field_errors"]["title"].is_array());
        }
        let fetched = app.as_user("alice").get(&path).await.json();
        assert_eq!(fetched, task, "a refused update changes nothing");
    }

    async fn patch_changes_only_the_given_fields(app) {
        let task = app.create_task("alice", json!({"title": "t", "category": "c", "priority": "high"})).await;
        let path = format!("/api/alice/tasks/{}", task["id"]);
        let response = app.as_user("alice").patch(&path, Some(&json!({"category": null}))).await;
        assert_eq!(response.status, Status::Ok);
        let patched = response.json();
        assert_eq!(patched["category"], Value::Null);
        assert_eq!(patched["title"], "t");
        assert_eq!(patched["priority"], "high");
        let response = app.as_user("alice").patch(&path, Some(&json!({"title": null}))).await;
        assert_eq!(response.status, Status::UnprocessableEntity);
        assert_eq!(response.error_code(), "validation_error");
    }

    async fn complete_toggles_both_ways_and_sets(app) {
        let task = app.create_task("alice", json!({"title": "t"})).await;
        let path = format!("/api/alice/tasks/{}/complete", task["id"]);
        let on = app.as_user("alice").patch(&path, None).await;
        assert_eq!(on.status, Status::Ok);
        assert_eq!(on.json()["completed"], true);
        assert!(on.json()["updated_at"].as_str() > task["updated_at"].as_str());
        let off = app.as_user("alice").patch(&path, None).await;
        assert_eq!(off.json()["completed"], false);
        for value in [true, true, false, false] {
            let set = app.as_user("alice").patch(&path, Some(&json!({"completed": value}))).await;
            assert_eq!(set.status, Status::Ok);
            assert_eq!(set.json()["completed"], value, "setting is idempotent");
        }
        let bad = app.as_user("alice").patch(&path, Some(&json!({"completed": "yes"}))).await;
        assert_eq!(bad.status, Status::UnprocessableEntity);
        assert!(bad.json()["field_errors"]["completed"].is_array());
    }

    async fn delete_answers_204_with_no_body_then_404(app) {
        let task = app.create_task("alice", json!({"title": "t"})).await;
        let path = format!("/api/alice/tasks/{}", task["id"]);
        let response = app.as_user("alice").delete(&path).await;
        assert_eq!(response.status, Status::NoContent);
        assert!(response.text.is_empty());
        let again = app.as_user("alice").delete(&path).await;
        assert_eq!(again.status, Status::NotFound);
        assert_eq!(again.error_code(), "not_found");
        let get = app.as_user("alice").get(&path).await;
        assert_eq!(get.status, Status::NotFound);
        assert_eq!(get.error_code(), "not_found");
    }

    async fn clearing_completed_tasks_needs_completed_true(app) {
        let done = app.create_task("alice", json!({"title": "done", "completed": true})).await;
        let open = app.create_task("alice", json!({"title": "open"})).await;
        app.create_task("bob", json!({"title": "bob's done", "completed": true})).await;
        for path in ["/api/alice/tasks", "/api/alice/tasks?completed=false"] {
            let refused = app.as_user("alice").delete(path).await;
            assert_eq!(refused.status, Status::UnprocessableEntity, "{path}");
            assert_eq!(refused.error_code(), "validation_error");
        }
        let cleared = app.as_user("alice").delete("tasks?completed=true").await;
        assert_eq!(cleared.status, Status::Ok);
        assert_eq!(cleared.json(), json!({"deleted": 1}));
        let list = app.as_user("alice").get("tasks").await.json();
        assert_eq!(list, json!([open]));
        let gone = app.as_user("alice").get(&format!("tasks/{}", done["id"])).await;
        assert_eq!(gone.status, Status::NotFound);
        assert_eq!(gone.error_code(), "not_found");
        let bobs = app.as_user("bob").get("tasks").await.json();
        assert_eq!(bobs.as_array().map(Vec::len), Some(1), "other users keep theirs");
    }

    async fn another_users_task_is_a_404_on_every_endpoint(app) {
        let task = app.create_task("alice", json!({"title": "private"})).await;
        let id = task["id"].as_i64().unwrap();
        let missing = id + 1000;
        let body = json!({"title": "hijacked", "completed": true});
        for (method, suffix, body) in [
            (Method::Get, "", None),
            (Method::Put, "", Some(&body)),
            (Method::Patch, "", Some(&body)),
            (Method::Patch, "/complete", None),
            (Method::Delete, "", None),
        ] {
            let theirs = app.as_user("bob").send(method, &format!("/api/bob/tasks/{id}{suffix}"), body, &[]).await;
            let nobodys = app.as_user("bob").send(method, &format!("/api/bob/tasks/{missing}{suffix}"), body, &[]).await;
            assert_eq!(theirs.status, Status::NotFound, "{method} {suffix}");
            assert_eq!(theirs.error_code(), "not_found");
            assert_eq!(theirs.text, nobodys.text, "{method} {suffix}: indistinguishable from missing");
        }
        let bobs = app.as_user("bob").get("tasks").await.json();
        assert_eq!(bobs, json!([]));
        let cleared = app.as_user("bob").delete("tasks?completed=true").await.json();
        assert_eq!(cleared, json!({"deleted": 0}));
        let untouched = app.as_user("alice").get(&format!("tasks/{id}")).await.json();
        assert_eq!(untouched, task, "alice's task is untouched");
    }

    async fn a_bad_task_id_is_a_422_after_auth(app) {
        for id in ["abc", "0", "-3", "99999999999999999999"] {
            let response = app.as_user("alice").get(&format!("tasks/{id}")).await;
            assert_eq!(response.status, Status::UnprocessableEntity, "{id}");
            assert!(response.json()["field_errors"]["id"].is_array());
            let anonymous = app.anonymous().get(&format!("/api/alice/tasks/{id}")).await;
            assert_eq!(anonymous.status, Status::Unauthorized, "{id}: 401 comes first");
            assert_eq!(anonymous.error_code(), "auth_required");
        }
    }

    async fn user_ids_with_reserved_characters_work(app) {
        let user = "usr_8fJ2@example.com";
        let token = app.token(user);
        let path = "/api/usr_8fJ2%40example.com/tasks";
        let created = app.with_token(&token).post(path, &json!({"title": "t"})).await;
        assert_eq!(created.status, Status::Created, "{}", created.text);
        assert_eq!(created.json()["user_id"], user);
        let location = created.header("Location").unwrap().to_owned();
        let fetched = app.with_token(&token).get(&location).await;
        assert_eq!(fetched.status, Status::Ok, "{location}");
    }

    async fn due_date_is_the_field_and_due_at_another_name_for_it(app) {
        let at = "2026-12-01T17:00:00.000000Z";
        for body in [json!({"title": "a", "due_date": at}), json!({"title": "b", "due_at": at}),
                     json!({"title": "c", "due_date": at, "due_at": "2026-12-01T18:00:00+01:00"})] {
            let task = app.create_task("alice", body.clone()).await;
            assert_eq!(task["due_date"], at, "{body}");
            assert!(task.get("due_at").is_none(), "answers name it due_date only");
        }
        let conflict = app.as_user("alice").post("tasks", &json!({"title": "d", "due_date": at, "due_at": null})).await;
        assert_eq!(conflict.status, Status::UnprocessableEntity);
        assert_eq!(conflict.error_code(), "validation_error");
        assert!(conflict.json()["field_errors"]["due_date"].is_array(), "{}", conflict.text);
        let task = app.create_task("alice", json!({"title": "e"})).await;
        let path = format!("tasks/{}", task["id"]);
        let patched = app.as_user("alice").patch(&path, Some(&json!({"due_date": "2027-01-01T00:00:00Z"}))).await;
        assert_eq!(patched.json()["due_date"], "2027-01-01T00:00:00.000000Z");
        let cleared = app.as_user("alice").patch(&path, Some(&json!({"due_at": null}))).await;
        assert_eq!(cleared.json()["due_date"], Value::Null);
        let listed: Vec<Value> = app.as_user("alice").get("tasks?sort=due_date").await.json().as_array().unwrap().clone();
        let via_alias: Vec<Value> = app.as_user("alice").get("tasks?sort=due_at").await.json().as_array().unwrap().clone();
        assert_eq!(listed, via_alias);
        assert_eq!(listed.last().map(|t| t["due_date"].clone()), Some(Value::Null), "no due date last");
    }

    async fn priority_accepts_1_2_3_on_input(app) {
        for (rank, name) in [(1, "low"), (2, "medium"), (3, "high")] {
            let task = app.create_task("alice", json!({"title": "p", "priority": rank})).await;
            assert_eq!(task["priority"], name);
            let listed = app.as_user("alice").get(&format!("tasks?priority={rank}")).await.json();
            assert!(listed.as_array().unwrap().iter().all(|t| t["priority"] == name));
        }
        for bad in [json!(0), json!(4), json!(2.5), json!("asap"), json!(true)] {
            let response = app.as_user("alice").post("tasks", &json!({"title": "p", "priority": bad})).await;
            assert_eq!(response.status, Status::UnprocessableEntity, "{bad}");
            assert!(response.json()["field_errors"]["priority"].is_array());
        }
    }
}

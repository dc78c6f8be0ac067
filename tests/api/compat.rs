//! The compatibility names: every row of `docs/api.md`'s table, each alias against its
//! canonical form (the same answer); the 422s when two names disagree; `LIST_ENVELOPE`;
//! the WARN line for an unknown list parameter.

use std::collections::BTreeSet;

use rocket::figment::providers::Serialized;
use rocket::http::{Method, Status};
use serde_json::{json, Value};

use crate::helpers::*;

/// The "what" column of the compatibility table in `docs/api.md`.
fn documented_rows() -> BTreeSet<String> {
    let docs =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/api.md")).unwrap();
    let table = docs
        .split("### Compatibility names")
        .nth(1)
        .expect("docs/api.md has the compatibility table");
    table
        .lines()
        .skip_while(|line| !line.starts_with("| what |"))
        .skip(2)
        .take_while(|line| line.starts_with('|'))
        .map(|line| line.split('|').nth(1).unwrap().trim().to_owned())
        .collect()
}

/// A task's JSON without what differs between two tasks made alike.
fn shape(task: &Value) -> Value {
    let mut task = task.clone();
    if let Some(object) = task.as_object_mut() {
        for volatile in ["id", "created_at", "updated_at", "title"] {
            object.remove(volatile);
        }
    }
    task
}

/// Seven tasks of `user` to list, filter and sort.
async fn seed(app: &TestApp, user: &str) {
    for (title, completed, priority, due) in [
        ("Buy milk", false, "low", Some("2026-12-01T09:00:00Z")),
        ("Walk dog", true, "high", Some("2026-12-01T18:00:00Z")),
        ("Pay rent", false, "high", Some("2026-12-03T12:00:00Z")),
        ("Read book", true, "medium", None),
        ("milk again", false, "medium", Some("2026-11-30T08:00:00Z")),
        ("Call mum", false, "low", None),
        ("File taxes", true, "high", Some("2026-12-10T00:00:00Z")),
    ] {
        let made = app
            .as_user(user)
            .post("tasks", &json!({"title": title, "completed": completed, "priority": priority, "due_date": due}))
            .await;
        assert_eq!(made.status, Status::Created, "{}", made.text);
    }
}

on_every_database! {
    async fn every_compatibility_name_answers_as_its_canonical_form(app) {
        seed(&app, "alice").await;
        let alice = app.as_user("alice");
        let mut covered = BTreeSet::new();

        // Reads: the alias and the canonical request get the same status, headers' total
        // and body.
        let reads: &[(&str, &str, &str)] = &[
            ("search", "tasks?search=MILK", "tasks?q=milk"),
            ("sort field", "tasks?sort_by=createdAt", "tasks?sort=created_at"),
            ("sort field", "tasks?sortBy=updatedAt&order=asc", "tasks?sort=updated_at&order=asc"),
            ("sort field", "tasks?sort=-dueDate", "tasks?sort=due_date&order=desc"),
            ("sort field", "tasks?sort=priority:asc", "tasks?sort=priority&order=asc"),
            ("sort field", "tasks?sort_by=title:desc", "tasks?sort=title&order=desc"),
            ("sort direction", "tasks?sort=title&sort_order=desc", "tasks?sort=title&order=desc"),
            ("sort direction", "tasks?sort=title&sortOrder=asc", "tasks?sort=title&order=asc"),
            ("status filter", "tasks?status_filter=DONE", "tasks?status=completed"),
            ("status filter", "tasks?filter_status=active", "tasks?status=pending"),
            ("status filter", "tasks?status=Complete", "tasks?status=completed"),
            ("completion filter", "tasks?is_completed=true", "tasks?completed=true"),
            ("offset", "tasks?skip=2&limit=2", "tasks?offset=2&limit=2"),
            ("offset", "tasks?page=2&limit=3", "tasks?offset=3&limit=3"),
            ("offset", "tasks?page=1", "tasks?offset=0"),
            ("priority values", "tasks?priority=HIGH", "tasks?priority=high"),
            ("priority values", "tasks?priority=urgent", "tasks?priority=high"),
            ("priority values", "tasks?priority=Critical", "tasks?priority=high"),
            ("due date format", "tasks?due_before=2026-12-02", "tasks?due_before=2026-12-02T00:00:00Z"),
            ("due date format", "tasks?due_after=2026-12-01T12:00", "tasks?due_after=2026-12-01T12:00:00Z"),
            ("path prefix", "/api/v1/alice/tasks?sort=title", "/api/alice/tasks?sort=title"),
            ("path prefix", "/api/v1/tasks?sort=title", "/api/tasks?sort=title"),
            ("resource", "todos?sort=title", "tasks?sort=title"),
            ("resource", "/api/todos", "/api/tasks"),
            ("resource", "/api/v1/todos?search=milk", "/api/tasks?q=milk"),
            ("statistics", "tasks/stats", "stats"),
            ("statistics", "/api/tasks/stats", "/api/stats"),
            ("statistics", "/api/v1/alice/todos/stats", "/api/alice/stats"),
        ];
        for (row, alias, canonical) in reads {
            let (a, c) = (alice.get(alias).await, alice.get(canonical).await);
            assert_eq!(c.status, Status::Ok, "{canonical}: {}", c.text);
            assert_eq!((a.status, a.json()), (c.status, c.json()), "{row}: {alias} against {canonical}");
            assert_eq!(a.header("X-Total-Count"), c.header("X-Total-Count"), "{alias}");
            covered.insert(*row);
        }
        // What the canonical names do that has no other spelling: several priorities, the
        // status sort, and a todo read by id.
        let titles = |answer: &TestResponse| -> Vec<String> {
            answer.json().as_array().unwrap().iter().map(|t| t["title"].as_str().unwrap().to_owned()).collect()
        };
        let either = alice.get("tasks?priority=low&priority=HIGH&sort=title").await;
        assert_eq!(titles(&either), ["Buy milk", "Call mum", "File taxes", "Pay rent", "Walk dog"]);
        assert_eq!(either.header("X-Total-Count"), Some("5"));
        covered.insert("priority filter");
        let by_status = alice.get("tasks?sort=status").await.json();
        let flags: Vec<bool> = by_status.as_array().unwrap().iter().map(|t| t["completed"].as_bool().unwrap()).collect();
        assert_eq!(flags, [false, false, false, false, true, true, true], "pending first");
        let reversed = alice.get("tasks?sortBy=status&sortOrder=desc").await.json();
        assert_eq!(reversed.as_array().unwrap()[0]["completed"], true);

        // Writes: the alias on one task, the canonical form on its twin; the same answer.
        let alice = &alice;
        let twins = |completed: bool| async move {
            let body = json!({"title": "twin", "completed": completed, "priority": "medium"});
            let a = alice.post("tasks", &body).await.json()["id"].as_i64().unwrap();
            let b = alice.post("tasks", &body).await.json()["id"].as_i64().unwrap();
            (a, b)
        };
        type Write<'a> = (&'a str, Method, &'a str, Option<Value>, Method, &'a str, Option<Value>, bool);
        let writes: Vec<Write> = vec![
            ("completion field (bodies)", Method::Patch, "tasks/{}", Some(json!({"is_completed": true})), Method::Patch, "tasks/{}", Some(json!({"completed": true})), false),
            ("completion field (bodies)", Method::Patch, "tasks/{}", Some(json!({"completion_status": true})), Method::Patch, "tasks/{}", Some(json!({"completed": true})), false),
            // Sets, does not toggle.
            ("completion field (bodies)", Method::Patch, "tasks/{}/complete", Some(json!({"is_completed": false})), Method::Patch, "tasks/{}/complete", Some(json!({"completed": false})), false),
            ("due date field (bodies)", Method::Patch, "tasks/{}", Some(json!({"dueDate": "2026-12-01T17:00:00Z"})), Method::Patch, "tasks/{}", Some(json!({"due_date": "2026-12-01T17:00:00Z"})), false),
            ("due date field (bodies)", Method::Put, "tasks/{}", Some(json!({"title": "twin", "due_datetime": "2026-12-01T17:00:00+01:00"})), Method::Put, "tasks/{}", Some(json!({"title": "twin", "due_date": "2026-12-01T16:00:00Z"})), false),
            ("due date field (bodies)", Method::Patch, "tasks/{}", Some(json!({"deadline": "2026-12-02T00:00:00Z"})), Method::Patch, "tasks/{}", Some(json!({"due_date": "2026-12-02T00:00:00Z"})), false),
            ("due date field (bodies)", Method::Patch, "tasks/{}", Some(json!({"target_completion_date": "2026-12-03T00:00:00Z"})), Method::Patch, "tasks/{}", Some(json!({"due_date": "2026-12-03T00:00:00Z"})), false),
            ("due date field (bodies)", Method::Patch, "tasks/{}", Some(json!({"due_at": "2026-12-04T00:00:00Z"})), Method::Patch, "tasks/{}", Some(json!({"due_date": "2026-12-04T00:00:00Z"})), false),
            ("due date format", Method::Patch, "tasks/{}", Some(json!({"due_date": "2026-12-01"})), Method::Patch, "tasks/{}", Some(json!({"due_date": "2026-12-01T00:00:00Z"})), false),
            ("due date format", Method::Patch, "tasks/{}", Some(json!({"dueDate": "2026-12-01T17:30"})), Method::Patch, "tasks/{}", Some(json!({"due_date": "2026-12-01T17:30:00Z"})), false),
            ("priority values", Method::Patch, "tasks/{}", Some(json!({"priority": "URGENT"})), Method::Patch, "tasks/{}", Some(json!({"priority": "high"})), false),
            ("priority values", Method::Patch, "tasks/{}", Some(json!({"priority": "Low"})), Method::Patch, "tasks/{}", Some(json!({"priority": "low"})), false),
            ("toggle", Method::Patch, "tasks/{}/toggle", None, Method::Patch, "tasks/{}/complete", None, false),
            ("toggle", Method::Patch, "tasks/{}/toggle-status", None, Method::Patch, "tasks/{}/complete", None, true),
            ("toggle", Method::Patch, "/api/v1/todos/{}/toggle-complete", Some(json!({})), Method::Patch, "/api/tasks/{}/complete", None, false),
            ("set", Method::Post, "tasks/{}/complete", None, Method::Patch, "tasks/{}/complete", Some(json!({"completed": true})), false),
            ("set", Method::Post, "tasks/{}/complete", None, Method::Patch, "tasks/{}/complete", Some(json!({"completed": true})), true),
            ("set", Method::Post, "/api/todos/{}/uncomplete", None, Method::Patch, "/api/tasks/{}/complete", Some(json!({"completed": false})), true),
            ("set", Method::Patch, "tasks/{}/status", Some(json!({"status": "completed"})), Method::Patch, "tasks/{}/complete", Some(json!({"completed": true})), false),
            ("set", Method::Patch, "tasks/{}/status", Some(json!({"status": "active"})), Method::Patch, "tasks/{}/complete", Some(json!({"completed": false})), true),
            ("resource", Method::Delete, "todos/{}", None, Method::Delete, "tasks/{}", None, false),
            ("path prefix", Method::Patch, "/api/v1/alice/tasks/{}", Some(json!({"title": "twin"})), Method::Patch, "/api/alice/tasks/{}", Some(json!({"title": "twin"})), false),
        ];
        for (row, am, ap, abody, cm, cp, cbody, completed) in writes {
            let (a, b) = twins(completed).await;
            let (ap, cp) = (ap.replace("{}", &a.to_string()), cp.replace("{}", &b.to_string()));
            let aliased = alice.send(am, &ap, abody.as_ref(), &[]).await;
            let canonical = alice.send(cm, &cp, cbody.as_ref(), &[]).await;
            assert!(canonical.status.code < 300, "{cm} {cp}: {}", canonical.text);
            assert_eq!(aliased.status, canonical.status, "{row}: {am} {ap}: {}", aliased.text);
            assert_eq!(shape(&aliased.json()), shape(&canonical.json()), "{row}: {am} {ap}");
            let (a_now, b_now) = (alice.get(&format!("tasks/{a}")).await, alice.get(&format!("tasks/{b}")).await);
            assert_eq!((a_now.status, shape(&a_now.json())), (b_now.status, shape(&b_now.json())), "{row}: {ap}: stored alike");
            covered.insert(row);
        }
        // Creates with the other names.
        for (row, aliased, canonical) in [
            ("completion field (bodies)", json!({"title": "c", "is_completed": true}), json!({"title": "c", "completed": true})),
            ("due date field (bodies)", json!({"title": "c", "dueDate": "2026-12-01"}), json!({"title": "c", "due_date": "2026-12-01T00:00:00Z"})),
            ("priority values", json!({"title": "c", "priority": "critical"}), json!({"title": "c", "priority": "high"})),
        ] {
            let (a, c) = (alice.post("todos", &aliased).await, alice.post("tasks", &canonical).await);
            assert_eq!((a.status, shape(&a.json())), (c.status, shape(&c.json())), "{row}: {aliased}");
        }
        // Answers carry `is_completed` beside `completed`.
        let one = alice.get("tasks?limit=1").await.json()[0].clone();
        assert_eq!(one["is_completed"], one["completed"]);

        // Sign-in: the FastAPI-style routes, under /api/v1/auth too (the accounts tests
        // cover each); here, the token they give works on the compatibility routes.
        let server = LiveServer::start_on(TestDatabase::existing(&app.db_url), |f| {
            f.merge(Serialized::global("auth.server", true))
                .merge(Serialized::global("auth.attempts_per_address", 0))
        }).await;
        let http = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{}", server.port);
        let send_json = |url: String, body: Value, token: Option<&str>| {
            let mut request = http.post(url).header("Content-Type", "application/json").body(body.to_string());
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            request.send()
        };
        let read = |text: String| serde_json::from_str::<Value>(&text).unwrap();
        let up = read(send_json(format!("{base}/api/v1/auth/register"),
            json!({"email": "fa@example.com", "password": "correct horse battery", "name": "Fa"}), None)
            .await.unwrap().text().await.unwrap());
        assert_eq!(up["token_type"], "bearer", "{up}");
        let form = http.post(format!("{base}/api/v1/auth/login"))
            .form(&[("username", "fa@example.com"), ("password", "correct horse battery")])
            .send().await.unwrap();
        assert_eq!(form.status().as_u16(), 200);
        let access = read(form.text().await.unwrap())["access_token"].as_str().unwrap().to_owned();
        let made = send_json(format!("{base}/api/v1/todos"),
            json!({"title": "from a FastAPI frontend", "dueDate": "2026-12-24"}), Some(&access)).await.unwrap();
        assert_eq!(made.status().as_u16(), 201);
        let made = read(made.text().await.unwrap());
        assert_eq!((made["user_id"].clone(), made["due_date"].clone()), (up["user"]["id"].clone(), json!("2026-12-24T00:00:00.000000Z")));
        let me = read(http.get(format!("{base}/api/v1/auth/me")).bearer_auth(&access).send().await.unwrap().text().await.unwrap());
        assert_eq!(me["email"], "fa@example.com");
        server.stop().await;
        covered.insert("sign-in (with `BETTER_AUTH_SERVER=on`)");

        let covered: BTreeSet<String> = covered.into_iter().map(str::to_owned).collect();
        assert_eq!(covered, documented_rows(), "every row of the table, and only those, is tested");
    }

    async fn two_names_that_disagree_are_a_422_naming_both(app) {
        seed(&app, "alice").await;
        let alice = app.as_user("alice");
        let id = alice.get("tasks?limit=1").await.json()[0]["id"].as_i64().unwrap();
        let task = format!("tasks/{id}");
        for (path, names) in [
            ("tasks?search=milk&q=rent", ["search", "q"]),
            ("tasks?sort_by=title&sort=priority", ["sort_by", "sort"]),
            ("tasks?sort=-title&order=asc", ["sort", "order"]),
            ("tasks?sortOrder=asc&sort_order=desc", ["sortOrder", "sort_order"]),
            ("tasks?status_filter=done&status=pending", ["status_filter", "status"]),
            ("tasks?is_completed=true&completed=false", ["is_completed", "completed"]),
            ("tasks?skip=1&offset=2", ["skip", "offset"]),
            ("tasks?page=2&limit=2&offset=0", ["page", "offset"]),
        ] {
            let refused = alice.get(path).await;
            assert_eq!(refused.status, Status::UnprocessableEntity, "{path}: {}", refused.text);
            for name in names {
                assert!(refused.json()["field_errors"][name].is_array(), "{path}: {}", refused.text);
            }
        }
        for (body, names) in [
            (json!({"completed": true, "is_completed": false}), ["completed", "is_completed"]),
            (json!({"is_completed": true, "completion_status": false}), ["is_completed", "completion_status"]),
            (json!({"dueDate": "2026-12-01", "deadline": "2026-12-02"}), ["dueDate", "deadline"]),
            (json!({"due_date": "2026-12-01T00:00:00Z", "due_datetime": "2026-12-01T01:00"}), ["due_date", "due_datetime"]),
        ] {
            let refused = alice.patch(&task, Some(&body)).await;
            assert_eq!(refused.status, Status::UnprocessableEntity, "{body}: {}", refused.text);
            for name in names {
                assert!(refused.json()["field_errors"][name].is_array(), "{body}: {}", refused.text);
            }
        }
        // Agreeing names are one: no 422.
        assert_eq!(alice.get("tasks?search=milk&q=milk").await.status, Status::Ok);
        assert_eq!(alice.patch(&task, Some(&json!({"completed": true, "is_completed": true}))).await.status, Status::Ok);
        // Values no row lists keep their 422.
        for path in ["tasks?status=finished", "tasks?priority=asap", "tasks?sort=deadline", "tasks?due_before=soon", "tasks?page=0"] {
            assert_eq!(alice.get(path).await.status, Status::UnprocessableEntity, "{path}");
        }
        assert_eq!(alice.patch(&format!("{task}/status"), Some(&json!({"status": "later"}))).await.status, Status::UnprocessableEntity);
    }
}

on_every_backend! {
    async fn the_list_envelope_wraps_every_list_in_both_families(backend) {
    for key in ["tasks", "items", "data"] {
        let app = TestApp::spawn_with(backend, |f| f.merge(Serialized::global("list_envelope", key))).await;
        seed(&app, "alice").await;
        let alice = app.as_user("alice");
        for path in ["tasks?limit=2", "/api/tasks?limit=2", "/api/v1/alice/todos?limit=2", "/api/v1/tasks?limit=2"] {
            let answer = alice.get(path).await;
            assert_eq!(answer.status, Status::Ok, "{path}");
            let body = answer.json();
            assert_eq!(body.as_object().unwrap().len(), 2, "{body}");
            assert_eq!(body[key].as_array().unwrap().len(), 2, "{key}: {path}");
            assert_eq!(body["total"], 7);
            assert_eq!(answer.header("X-Total-Count"), Some("7"));
            assert!(answer.header("Link").is_some_and(|l| l.contains("rel=\"next\"")));
            // Compact, as every answer: the key, then the total.
            assert!(answer.text.starts_with(&format!("{{\"{key}\":[{{")) && answer.text.ends_with("}],\"total\":7}"), "{}", answer.text);
        }
        // Only task lists: a task, the statistics stay as they are.
        let stats = alice.get("stats").await.json();
        assert_eq!(stats["total"], 7);
        assert!(stats.get(key).is_none());
    }
    // Unset or `array`: the bare array.
    let app = TestApp::spawn_with(backend, |f| f.merge(Serialized::global("list_envelope", "array"))).await;
    seed(&app, "alice").await;
    assert!(app.as_user("alice").get("tasks").await.json().is_array());
    }
}

on_both_backends! {
    async fn an_unknown_list_parameter_is_logged_once_by_name(backend) {
        let database = TestDatabase::fresh(backend).await;
        let served = Served::start(&database.url, &[("LOG_LEVEL", "warn")]).await;
        let token = todo_api::auth::mint_hs256(TEST_SECRET, "alice", 600).unwrap();
        let http = reqwest::Client::new();
        for query in ["colour=red", "colour=blue&search=x", "size=2&colour=red"] {
            let answer = http
                .get(format!(
                    "http://127.0.0.1:{}/api/alice/tasks?{query}",
                    served.port
                ))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap();
            assert_eq!(
                answer.status().as_u16(),
                200,
                "unknown names are still ignored"
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let warned: Vec<Value> = served
            .log_lines()
            .into_iter()
            .filter(|line| line["level"] == "WARN" && line.get("parameter").is_some())
            .collect();
        let names: Vec<&str> = warned
            .iter()
            .map(|l| l["parameter"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["colour", "size"], "one line per name: {warned:?}");
        let accepted = warned[0]["accepted"].as_str().unwrap();
        assert!(
            accepted.contains("q") && accepted.contains("search") && accepted.contains("sort_by"),
            "{accepted}"
        );
        drop(served);
    }
}

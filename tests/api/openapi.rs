//! The OpenAPI document against the code: its paths and methods are exactly the mounted
//! routes, its schemas accept the real answers, and the docs are served.

use std::collections::BTreeSet;

use rocket::http::Status;
use serde_json::{json, Value};

use crate::helpers::{on_both_databases, TestApp, TestResponse};

fn document() -> Value {
    serde_json::to_value(todo_api::openapi::document()).unwrap()
}

/// Checks `response`'s body against the schema the document gives for it.
fn assert_documented(doc: &Value, path: &str, method: &str, response: &TestResponse) {
    let status = response.status.code.to_string();
    let documented = &doc["paths"][path][method]["responses"][&status];
    assert!(
        documented.is_object(),
        "{method} {path} answered {status}, which is not documented"
    );
    let Some(content) = documented["content"].as_object() else {
        assert!(
            response.text.is_empty(),
            "{method} {path} {status}: undocumented body {}",
            response.text
        );
        return;
    };
    let media = response
        .header("Content-Type")
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .to_owned();
    let schema = &content
        .get(&media)
        .unwrap_or_else(|| panic!("{method} {path} {status}: {media} not documented"))["schema"];
    if media != "application/json" {
        return;
    }
    let mut root = schema.clone();
    root["$schema"] = json!("https://json-schema.org/draft/2020-12/schema");
    root["components"] = doc["components"].clone();
    let validator = jsonschema::validator_for(&root).unwrap();
    let body: Value = serde_json::from_str(&response.text).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&body)
        .map(|e| e.to_string())
        .collect();
    assert!(
        errors.is_empty(),
        "{method} {path} {status}: {errors:?}\n{body}"
    );
}

#[rocket::async_test]
async fn the_document_lists_exactly_the_mounted_routes() {
    // With the accounts routes on, as `cargo run` has them.
    let app = TestApp::spawn_with(crate::helpers::Backend::Sqlite, |figment| {
        figment.merge(rocket::figment::providers::Serialized::global(
            "auth.server",
            true,
        ))
    })
    .await;
    let mounted: BTreeSet<(String, String)> = app
        .client
        .rocket()
        .routes()
        // The docs themselves, and the routes refusals made before routing are answered
        // through (rocket_cors', and the error module's).
        .filter(|route| {
            let path = route.uri.path();
            !path.starts_with("/docs")
                && path != "/openapi.json"
                // The accounts routes' mirror, and the empty 404 of any other path there.
                && !path.starts_with("/api/v1/auth/")
                && !path.starts_with("/api/auth/<_")
                && !path.starts_with("/cors/")
                && path != "/_refused"
        })
        .map(|route| {
            let path = route
                .uri
                .path()
                .split('/')
                .map(
                    |segment| match segment.strip_prefix('<').and_then(|s| s.strip_suffix('>')) {
                        Some(name) => format!("{{{name}}}"),
                        None => segment.to_owned(),
                    },
                )
                .collect::<Vec<_>>()
                .join("/");
            (path, route.method.as_str().to_ascii_lowercase())
        })
        .collect();
    let doc = document();
    let documented: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .filter(|k| ["get", "put", "post", "delete", "patch"].contains(&k.as_str()))
                .map(move |method| (path.clone(), method.clone()))
        })
        .collect();
    // Token-scoped paths are served by rewriting into their `/api/{user_id}/…` twins, so
    // they are documented but not mounted; each must have its twin.
    let token_scoped = |path: &str| {
        path.strip_prefix("/api/").is_some_and(|rest| {
            ["tasks", "stats", "events", "dashboard", "changes"]
                .iter()
                .any(|w| rest == *w || rest.starts_with(&format!("{w}/")))
        })
    };
    for (path, method) in documented.iter().filter(|(path, _)| token_scoped(path)) {
        let twin = if path == "/api/dashboard/stats" {
            "/api/{user_id}/stats".to_owned()
        } else {
            path.replacen("/api/", "/api/{user_id}/", 1)
        };
        assert!(
            mounted.contains(&(twin.clone(), method.clone())),
            "{method} {path} has no mounted twin {twin}"
        );
    }
    let documented: BTreeSet<(String, String)> = documented
        .into_iter()
        .filter(|(path, _)| !token_scoped(path))
        .collect();
    assert_eq!(
        mounted, documented,
        "mounted routes and documented operations differ"
    );
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    let cookie = &doc["components"]["securitySchemes"]["session_cookie"];
    assert_eq!(
        (cookie["type"].as_str(), cookie["in"].as_str()),
        (Some("apiKey"), Some("cookie"))
    );
    assert_eq!(cookie["name"], "better-auth.session_token");
    for (path, method) in &documented {
        let operation = &doc["paths"][path][method];
        let responses = operation["responses"].as_object().unwrap();
        assert!(responses.contains_key("500"), "{method} {path}");
        if path.starts_with("/api/auth/") {
            // Better Auth's routes: their own errors and ways in, documented one by one.
            assert!(operation["tags"] == json!(["accounts"]), "{method} {path}");
        } else if path.starts_with("/api/") {
            assert_eq!(
                operation["security"],
                json!([{"bearer": []}, {"session_cookie": []}]),
                "{method} {path}"
            );
            for status in ["401", "403", "429", "503"] {
                assert_eq!(
                    responses[status]["content"]["application/json"]["schema"]["$ref"],
                    "#/components/schemas/ErrorBody",
                    "{method} {path} {status}"
                );
            }
        }
    }
}

on_both_databases! {
    async fn documented_schemas_accept_the_real_answers(app) {
        let doc = document();
        let tasks = "/api/{user_id}/tasks";
        let task = "/api/{user_id}/tasks/{id}";

        let created = app.as_user("alice").post("tasks", &json!({"title": "Buy groceries", "description": "Milk", "priority": "high", "category": "home", "due_at": "2026-12-01T17:00:00+01:00"})).await;
        assert_documented(&doc, tasks, "post", &created);
        let bare = app.as_user("alice").post("tasks", &json!({"title": "bare"})).await;
        assert_documented(&doc, tasks, "post", &bare);
        let id = created.json()["id"].as_i64().unwrap();
        let one = format!("/api/alice/tasks/{id}");
        let checks: Vec<(&str, &str, TestResponse)> = vec![
            (tasks, "get", app.as_user("alice").get("tasks?sort=due_at&limit=1").await),
            (task, "get", app.as_user("alice").get(&one).await),
            (task, "put", app.as_user("alice").put(&one, &json!({"title": "Buy bread", "description": null})).await),
            (task, "patch", app.as_user("alice").patch(&one, Some(&json!({"category": null}))).await),
            ("/api/{user_id}/tasks/{id}/complete", "patch", app.as_user("alice").patch(&format!("{one}/complete"), None).await),
            ("/api/{user_id}/stats", "get", app.as_user("alice").get("stats").await),
            (tasks, "delete", app.as_user("alice").delete("tasks?completed=true").await),
            (task, "get", app.as_user("alice").get("tasks/99999").await),
            (task, "put", app.as_user("alice").put(&format!("/api/alice/tasks/{}", bare.json()["id"]), &json!({"title": ""})).await),
            (tasks, "post", app.as_user("alice").post("tasks", &json!([1])).await),
            (tasks, "get", app.anonymous().get("/api/alice/tasks").await),
            (tasks, "get", app.as_user("bob").get("/api/alice/tasks").await),
            (tasks, "get", app.as_user("alice").get("tasks?sort=banana").await),
            (task, "delete", app.as_user("alice").delete(&format!("/api/alice/tasks/{}", bare.json()["id"])).await),
            ("/health", "get", app.anonymous().get("/health").await),
            ("/health/live", "get", app.anonymous().get("/health/live").await),
            ("/health/ready", "get", app.anonymous().get("/health/ready").await),
            ("/metrics", "get", app.anonymous().get("/metrics").await),
        ];
        let statuses: BTreeSet<u16> = checks.iter().map(|(_, _, r)| r.status.code).collect();
        assert_eq!(statuses, BTreeSet::from([200, 204, 400, 401, 403, 404, 422]), "the sample covers these answers");
        for (path, method, response) in &checks {
            assert_documented(&doc, path, method, response);
        }
    }
}

#[rocket::async_test]
async fn docs_and_the_document_are_served() {
    let app = TestApp::spawn(crate::helpers::Backend::Sqlite).await;
    let served = app.anonymous().get("/openapi.json").await;
    assert_eq!(served.status, Status::Ok);
    assert_eq!(served.header("content-type"), Some("application/json"));
    assert_eq!(served.json(), document());
    // Served from the bytes rendered by the first request: the same text on every request.
    let compact = serde_json::to_string(&todo_api::openapi::document()).unwrap();
    assert_eq!(served.text, compact);
    assert_eq!(app.anonymous().get("/openapi.json").await.text, compact);
    let page = app.anonymous().get("/docs/").await;
    assert_eq!(page.status, Status::Ok);
    assert!(page.text.contains("swagger-ui"), "{}", page.text);
    for asset in [
        "/docs/swagger-ui-bundle.js",
        "/docs/swagger-ui.css",
        "/docs/swagger-initializer.js",
    ] {
        let response = app.anonymous().get(asset).await;
        assert_eq!(response.status, Status::Ok, "{asset}");
        assert!(response.text.len() > 100, "{asset}");
    }
    let initializer = app.anonymous().get("/docs/swagger-initializer.js").await;
    assert!(
        initializer.text.contains("\"url\": \"/openapi.json\""),
        "{}",
        initializer.text
    );
    assert!(initializer.text.contains("persistAuthorization"));
}

#[test]
fn the_openapi_command_prints_the_document() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_todo-api"))
        .env_clear()
        .env("ROCKET_PROFILE", "release")
        .arg("openapi")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "needs no configuration: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let printed: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(printed, document());
}

/// Every `$ref` in `value`.
fn refs(value: &Value, found: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("$ref", Value::String(target)) => found.push(target.clone()),
                    _ => refs(value, found),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| refs(item, found)),
        _ => {}
    }
}

#[test]
fn every_ref_resolves() {
    let doc = document();
    let mut found = Vec::new();
    refs(&doc, &mut found);
    assert!(found.len() > 20, "{found:?}");
    for target in found {
        let pointer = target
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("{target} is not local"));
        assert!(doc.pointer(pointer).is_some(), "{target} does not resolve");
    }
}

#[test]
fn the_document_is_valid_openapi_3_1() {
    // The OpenAPI Initiative's schema of 3.1 documents (2022-10-07), kept as a fixture.
    let schema: Value =
        serde_json::from_str(include_str!("../fixtures/openapi-3.1-schema.json")).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let doc = document();
    let errors: Vec<String> = validator
        .iter_errors(&doc)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
    // The validator itself catches a broken document.
    let mut broken = doc.clone();
    broken["paths"]["/health"]["get"]["responses"] = json!("none");
    assert!(!validator.is_valid(&broken));
}

#[test]
fn documented_limits_are_the_constants() {
    use todo_api::tasks::model::{CATEGORY_MAX, DESCRIPTION_MAX, TITLE_MAX};
    use todo_api::tasks::query::{MAX_LIMIT, MAX_SEARCH};
    let doc = document();
    let schemas = &doc["components"]["schemas"];
    for body in ["TaskInput", "TaskPatch"] {
        let properties = &schemas[body]["properties"];
        assert_eq!(properties["title"]["maxLength"], json!(TITLE_MAX), "{body}");
        assert_eq!(properties["title"]["minLength"], json!(1), "{body}");
        assert_eq!(
            properties["description"]["maxLength"],
            json!(DESCRIPTION_MAX),
            "{body}"
        );
        assert_eq!(
            properties["category"]["maxLength"],
            json!(CATEGORY_MAX),
            "{body}"
        );
    }
    assert_eq!(schemas["TaskInput"]["required"], json!(["title"]));
    assert!(schemas["TaskPatch"].get("required").is_none());
    let parameters = doc["paths"]["/api/{user_id}/tasks"]["get"]["parameters"]
        .as_array()
        .unwrap();
    let param = |name: &str| {
        parameters
            .iter()
            .find(|p| p["name"] == name)
            .map(|p| p["schema"].clone())
            .unwrap_or_else(|| panic!("no {name}"))
    };
    assert_eq!(param("limit")["maximum"], json!(MAX_LIMIT));
    assert_eq!(param("limit")["minimum"], json!(1));
    assert_eq!(param("q")["maxLength"], json!(MAX_SEARCH));
    assert_eq!(param("category")["maxLength"], json!(CATEGORY_MAX));
    for (name, schema) in [
        ("status", "StatusFilter"),
        ("sort", "SortField"),
        ("order", "SortOrder"),
    ] {
        assert_eq!(
            param(name)["$ref"],
            json!(format!("#/components/schemas/{schema}"))
        );
    }
    assert_eq!(
        schemas["SortField"]["enum"],
        json!([
            "created_at",
            "updated_at",
            "title",
            "priority",
            "due_date",
            "status"
        ])
    );
    assert_eq!(schemas["Task"]["properties"]["id"]["minimum"], json!(1));
    // What `/health/ready` may say of Better Auth's session table.
    let sessions = serde_json::to_string(&schemas["SessionStoreStatus"]).unwrap();
    for status in ["ok", "table_missing", "columns_missing", "unreachable"] {
        assert!(
            sessions.contains(&format!("\"{status}\"")),
            "{status}: {sessions}"
        );
    }
    assert!(
        serde_json::to_string(&schemas["Health"]["properties"]["sessions"])
            .unwrap()
            .contains("#/components/schemas/SessionStoreStatus"),
        "{}",
        schemas["Health"]["properties"]["sessions"]
    );
    assert!(
        schemas["Task"]["properties"].get("due_date").is_some(),
        "the task's due date is due_date"
    );
    assert!(schemas["TaskInput"]["properties"].get("due_date").is_some());
    let id = doc["paths"]["/api/{user_id}/tasks/{id}"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "id")
        .unwrap();
    assert_eq!(id["schema"]["minimum"], json!(1));
}

/// Every write under `/api/` documents the `Idempotency-Key` header and its 409 (a repeat
/// while the first request runs), as API.md promises.
#[test]
fn every_write_documents_idempotency_key_and_its_409() {
    let doc = document();
    let resolve = |value: &Value| -> Value {
        match value["$ref"].as_str() {
            Some(reference) => {
                let pointer = reference.trim_start_matches('#');
                doc.pointer(pointer)
                    .cloned()
                    .unwrap_or_else(|| panic!("{reference} does not resolve"))
            }
            None => value.clone(),
        }
    };
    let mut writes = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        // The accounts routes are Better Auth's, which takes no Idempotency-Key.
        if !path.starts_with("/api/") || path.starts_with("/api/auth/") {
            continue;
        }
        for method in ["post", "put", "patch", "delete"] {
            let Some(operation) = item.get(method) else {
                continue;
            };
            writes += 1;
            let parameters: Vec<Value> = operation["parameters"]
                .as_array()
                .map(|all| all.iter().map(&resolve).collect())
                .unwrap_or_default();
            assert!(
                parameters
                    .iter()
                    .any(|p| p["name"] == "Idempotency-Key" && p["in"] == "header"),
                "{method} {path}: no Idempotency-Key header"
            );
            assert!(
                operation["responses"]["409"].is_object(),
                "{method} {path}: no 409"
            );
        }
    }
    assert!(writes >= 8, "only {writes} writes found");
}

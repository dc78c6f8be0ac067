//! Every status the service or Rocket produces carries the contract's error body.

use rocket::http::{ContentType, Header, Status};
use serde_json::json;

use crate::helpers::{on_both_databases, read, TestApp, TestResponse};

async fn post_raw(app: &TestApp, content_type: Option<ContentType>, body: Vec<u8>) -> TestResponse {
    let mut request = app.client.post("/api/alice/tasks");
    request.add_header(Header::new(
        "Authorization",
        format!("Bearer {}", app.token("alice")),
    ));
    if let Some(content_type) = content_type {
        request.add_header(content_type);
    }
    request.set_body(body);
    read(request.dispatch().await).await
}

async fn assert_nothing_stored(app: &TestApp) {
    let list = app.as_user("alice").get("/api/alice/tasks").await.json();
    assert_eq!(list, json!([]));
}

on_both_databases! {
    async fn malformed_json_is_a_400(app) {
        for body in [&b"{\"title\": "[..], b"{title: 'x'}", b"[1, 2]", b"\"a string\"", b"42", b"   ", b""] {
            let response = post_raw(&app, Some(ContentType::JSON), body.to_vec()).await;
            assert_eq!(response.status, Status::BadRequest, "{:?}", String::from_utf8_lossy(body));
            assert_eq!(response.error_code(), "malformed_json");
        }
        assert_nothing_stored(&app).await;
    }

    async fn a_body_over_64_kib_is_a_413(app) {
        let body = json!({"title": "big", "description": "x".repeat(70 * 1024)}).to_string();
        let response = post_raw(&app, Some(ContentType::JSON), body.into_bytes()).await;
        assert_eq!(response.status, Status::PayloadTooLarge);
        assert_eq!(response.error_code(), "payload_too_large");
        assert_nothing_stored(&app).await;
    }

    async fn a_non_json_content_type_is_a_415(app) {
        let body = json!({"title": "x"}).to_string().into_bytes();
        for content_type in [ContentType::Plain, ContentType::Form, ContentType::XML] {
            let response = post_raw(&app, Some(content_type.clone()), body.clone()).await;
            assert_eq!(response.status, Status::UnsupportedMediaType, "{content_type}");
            assert_eq!(response.error_code(), "unsupported_media_type");
        }
        assert_nothing_stored(&app).await;
        // No content type at all is read as JSON; so is merge-patch+json.
        let response = post_raw(&app, None, body.clone()).await;
        assert_eq!(response.status, Status::Created);
        let merge_patch = ContentType::new("application", "merge-patch+json");
        let id = response.json()["id"].clone();
        let mut request = app.client.patch(format!("/api/alice/tasks/{id}"));
        request.add_header(Header::new("Authorization", format!("Bearer {}", app.token("alice"))));
        request.add_header(merge_patch);
        request.set_body(json!({"priority": "low"}).to_string());
        let patched = read(request.dispatch().await).await;
        assert_eq!(patched.status, Status::Ok, "{}", patched.text);
        assert_eq!(patched.json()["priority"], "low");
    }

    async fn unknown_routes_are_a_json_404(app) {
        for path in ["/", "/nope", "/api", "/api/alice", "/api/alice/tasks/1/2/3", "/health/nope"] {
            let response = app.anonymous().get(path).await;
            assert_eq!(response.status, Status::NotFound, "{path}");
            assert_eq!(response.error_code(), "not_found", "{path}");
            assert_eq!(response.header("Content-Type"), Some("application/json"));
        }
        let response = app.as_user("alice").post("tasks/1", &json!({})).await;
        assert_eq!(response.status, Status::NotFound, "an unsupported method on a known path");
        assert_eq!(response.error_code(), "not_found");
        assert_error_body_has_no_internals(&response);
    }

    async fn validation_errors_name_fields_in_an_object(app) {
        let response = app.as_user("alice").post("tasks", &json!({"title": ""})).await;
        assert_eq!(response.error_code(), "validation_error");
        assert_eq!(response.json()["field_errors"], json!({"title": ["Title is required and cannot be empty"]}));
        let ok_error = app.as_user("alice").get("tasks/999").await;
        assert_eq!(ok_error.json()["field_errors"], json!({}), "empty object, never null");
    }
}

fn assert_error_body_has_no_internals(response: &TestResponse) {
    for needle in ["SELECT", "sqlx", "panicked", "src/", ".rs", "Bearer "] {
        assert!(
            !response.text.contains(needle),
            "{needle} leaked: {}",
            response.text
        );
    }
}

//! `/metrics`: Prometheus text with request counts and latency by route template and
//! status, the pool, and rate-limited requests; off when `METRICS_ENABLED=false`.

use rocket::figment::providers::Serialized;
use rocket::http::Status;

use crate::helpers::{on_both_backends, Backend, TestApp};

fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|line| line.starts_with(series) && line[series.len()..].starts_with(' '))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

on_both_backends! {
    async fn metrics_count_requests_by_route_and_status(backend) {
        let app = TestApp::spawn_with(backend, |f| f.merge(Serialized::global("rate_limit.per_minute", 3))).await;
        for _ in 0..2 {
            app.as_user("alice").get("tasks").await;
        }
        app.as_user("alice").get("tasks/999").await;
        let limited = app.as_user("alice").get("tasks").await;
        assert_eq!(limited.status, Status::TooManyRequests);
        assert_eq!(limited.error_code(), "rate_limited");
        app.anonymous().get("/nowhere/secret-path").await;

        let response = app.anonymous().get("/metrics").await;
        assert_eq!(response.status, Status::Ok);
        assert!(response.header("Content-Type").unwrap().starts_with("text/plain"));
        let text = response.text;
        assert_eq!(value(&text, r#"todo_api_http_requests_total{method="GET",route="/api/<user_id>/tasks",status="200"}"#), Some(2.0), "{text}");
        assert_eq!(value(&text, r#"todo_api_http_requests_total{method="GET",route="/api/<user_id>/tasks/<id>",status="404"}"#), Some(1.0));
        assert_eq!(value(&text, r#"todo_api_http_requests_total{method="GET",route="/api/<user_id>/tasks",status="429"}"#), Some(1.0));
        assert_eq!(value(&text, r#"todo_api_http_requests_total{method="GET",route="unmatched",status="404"}"#), Some(1.0));
        assert_eq!(value(&text, "todo_api_rate_limited_total"), Some(1.0));
        assert_eq!(value(&text, r#"todo_api_http_request_duration_seconds_count{method="GET",route="/api/<user_id>/tasks"}"#), Some(3.0));
        assert!(value(&text, r#"todo_api_http_request_duration_seconds_bucket{method="GET",route="/api/<user_id>/tasks",le="5"}"#).is_some());
        assert!(value(&text, r#"todo_api_db_pool_connections{state="open"}"#).is_some_and(|n| n >= 1.0));
        assert!(value(&text, r#"todo_api_db_pool_connections{state="idle"}"#).is_some());
        // SQLite writes through one more connection, opened by the first write.
        let writer = r#"todo_api_db_pool_connections{state="writer"}"#;
        if backend == Backend::Sqlite {
            assert_eq!(value(&text, writer), Some(0.0), "no write yet: {text}");
            assert_eq!(app.as_user("bob").post("tasks", &serde_json::json!({"title": "a"})).await.status, Status::Created);
            let text = app.anonymous().get("/metrics").await.text;
            assert_eq!(value(&text, writer), Some(1.0), "{text}");
        } else {
            assert_eq!(value(&text, writer), None, "PostgreSQL has no writer connection");
        }
        assert!(!text.contains("todo_api_session_lookups"), "session tokens are off");
        assert!(!text.contains("alice") && !text.contains("secret-path"), "no user ids or raw paths in labels");
    }

    async fn metrics_can_be_switched_off(backend) {
        let app = TestApp::spawn_with(backend, |f| f.merge(Serialized::global("metrics.enabled", false))).await;
        let response = app.anonymous().get("/metrics").await;
        assert_eq!(response.status, Status::NotFound);
        assert_eq!(response.error_code(), "not_found");
    }
}

//! Per-user rate limiting: `RateLimit-*` headers on answers to verified users, 429 with
//! `Retry-After` past the limit, one user's burst never throttling another, and nothing
//! counted for probes, preflights or unverified requests.

use rocket::figment::providers::Serialized;
use rocket::http::Status;

use crate::helpers::{on_both_backends, TestApp};

async fn limited_app(backend: crate::helpers::Backend, per_minute: u32) -> TestApp {
    TestApp::spawn_with(backend, |f| {
        f.merge(Serialized::global("rate_limit.per_minute", per_minute))
    })
    .await
}

on_both_backends! {
    async fn a_user_over_the_limit_gets_429_and_others_carry_on(backend) {
        let app = limited_app(backend, 5).await;
        for remaining in (0..5).rev() {
            let response = app.as_user("alice").get("tasks").await;
            assert_eq!(response.status, Status::Ok);
            assert_eq!(response.header("RateLimit-Limit"), Some("5"));
            assert_eq!(response.header("RateLimit-Remaining"), Some(remaining.to_string().as_str()));
            let reset: u64 = response.header("RateLimit-Reset").unwrap().parse().unwrap();
            assert!(reset <= 60, "reset {reset}");
        }
        let refused = app.as_user("alice").post("tasks", &serde_json::json!({"title": "x"})).await;
        assert_eq!(refused.status, Status::TooManyRequests);
        assert_eq!(refused.error_code(), "rate_limited");
        let retry: u64 = refused.header("Retry-After").unwrap().parse().unwrap();
        assert!((1..=12).contains(&retry), "one request refills in 12 s: {retry}");
        assert_eq!(refused.header("RateLimit-Remaining"), Some("0"));
        let listed = app.client.get("/api/alice/tasks").dispatch().await;
        assert_eq!(listed.status(), Status::Unauthorized, "unverified requests are not counted");
        assert!(listed.headers().get_one("RateLimit-Limit").is_none());

        let bob = app.as_user("bob").get("tasks").await;
        assert_eq!(bob.status, Status::Ok, "alice's burst leaves bob alone");
        assert_eq!(bob.header("RateLimit-Remaining"), Some("4"));
        let stats = app.as_user("bob").get("stats").await;
        assert_eq!(stats.header("RateLimit-Remaining"), Some("3"), "every /api route counts");

        for _ in 0..20 {
            let probe = app.anonymous().get("/health/live").await;
            assert_eq!(probe.status, Status::Ok, "probes are never limited");
            assert!(probe.header("RateLimit-Limit").is_none());
            let preflight = app.client.options("/api/alice/tasks")
                .header(rocket::http::Header::new("Origin", "http://localhost:3000"))
                .header(rocket::http::Header::new("Access-Control-Request-Method", "GET"))
                .dispatch().await;
            assert!(preflight.status().code < 300, "preflights are never limited: {}", preflight.status());
        }
        let still = app.as_user("alice").get("tasks").await;
        assert_eq!(still.status, Status::TooManyRequests, "the bucket refills with time only");
        assert_eq!(still.error_code(), "rate_limited");
    }

    async fn zero_turns_limiting_off(backend) {
        let app = limited_app(backend, 0).await;
        for _ in 0..30 {
            let response = app.as_user("alice").get("tasks").await;
            assert_eq!(response.status, Status::Ok);
            assert!(response.header("RateLimit-Limit").is_none());
        }
    }
}

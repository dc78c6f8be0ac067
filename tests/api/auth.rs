//! The bearer token rules: every refused token is a 401 with the contract's body and
//! `WWW-Authenticate: Bearer`; a path naming another user is a 403; 401 comes before 403,
//! which comes before 404 and 422.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rocket::http::{Header as HttpHeader, Method, Status};
use serde_json::{json, Value};

use crate::helpers::{on_both_databases, unsigned, TestApp, TEST_SECRET};

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn sign(claims: &Value, secret: &str, alg: Algorithm) -> String {
    jsonwebtoken::encode(
        &Header::new(alg),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

/// Tokens that must be refused, each with the reason.
fn bad_tokens() -> Vec<(String, &'static str)> {
    let valid = json!({"sub": "alice", "exp": now() + 600});
    let hs256 = |claims: Value| sign(&claims, TEST_SECRET, Algorithm::HS256);
    let good_signature = hs256(valid.clone()).rsplit('.').next().unwrap().to_owned();
    vec![
        (
            hs256(json!({"sub": "alice", "exp": now() - 120})),
            "expired beyond the leeway",
        ),
        (
            hs256(json!({"sub": "alice", "exp": now() + 600, "nbf": now() + 120})),
            "not yet valid",
        ),
        (hs256(json!({"sub": "alice"})), "no exp"),
        (hs256(json!({"exp": now() + 600})), "no sub"),
        (hs256(json!({"sub": "", "exp": now() + 600})), "empty sub"),
        (
            hs256(json!({"sub": 42, "exp": now() + 600})),
            "sub not a string",
        ),
        (
            hs256(json!({"sub": "alice", "exp": "tomorrow"})),
            "exp not a number",
        ),
        (
            sign(
                &valid,
                "another-secret-that-is-also-long-enough-0123",
                Algorithm::HS256,
            ),
            "wrong secret",
        ),
        (
            sign(&valid, TEST_SECRET, Algorithm::HS512),
            "HS512: algorithm is pinned to HS256",
        ),
        (
            unsigned(&json!({"alg": "none", "typ": "JWT"}), &valid, ""),
            "alg none",
        ),
        (unsigned(&json!({"alg": "None"}), &valid, ""), "alg None"),
        (
            unsigned(
                &json!({"alg": "RS256", "typ": "JWT"}),
                &valid,
                &good_signature,
            ),
            "RS256 header over an HMAC signature",
        ),
        (
            unsigned(
                &json!({"alg": "HS256"}),
                &json!({"sub": "mallory", "exp": now() + 600}),
                &good_signature,
            ),
            "claims swapped under a valid signature",
        ),
        ("not-a-jwt".to_owned(), "garbage"),
        ("a.b.c".to_owned(), "three garbage parts"),
    ]
}

fn assert_401(response: &crate::helpers::TestResponse, code: &str, reason: &str) {
    assert_eq!(
        response.status,
        Status::Unauthorized,
        "{reason}: {}",
        response.text
    );
    assert_eq!(response.error_code(), code, "{reason}");
    assert_eq!(
        response.header("WWW-Authenticate"),
        Some("Bearer"),
        "{reason}"
    );
    assert!(
        !response.text.contains("eyJ"),
        "{reason}: the body never echoes a token"
    );
}

async fn raw(app: &TestApp, authorization: &str, path: &str) -> crate::helpers::TestResponse {
    let mut request = app.client.get(path.to_owned());
    request.add_header(HttpHeader::new("Authorization", authorization.to_owned()));
    crate::helpers::read(request.dispatch().await).await
}

on_both_databases! {
    async fn every_refused_token_is_a_401_invalid_token(app) {
        for (token, reason) in bad_tokens() {
            let response = app.with_token(&token).get("/api/alice/tasks").await;
            assert_401(&response, "invalid_token", reason);
        }
    }

    async fn a_missing_or_non_bearer_header_is_auth_required(app) {
        let token = app.token("alice");
        let none = app.anonymous().get("/api/alice/tasks").await;
        assert_401(&none, "auth_required", "no header");
        for header in [format!("Basic {token}"), format!("Token {token}"), token.clone(), "Bearer".to_owned(), "Bearer   ".to_owned()] {
            assert_401(&raw(&app, &header, "/api/alice/tasks").await, "auth_required", &header);
        }
        let in_query = app.anonymous().get(&format!("/api/alice/tasks?access_token={token}")).await;
        assert_401(&in_query, "auth_required", "a token in the query string is not accepted");
        for cookie in [format!("token={token}"), format!("better-auth.session_token={token}"), format!("Authorization=Bearer {token}")] {
            let in_cookie = app.anonymous().send(Method::Get, "/api/alice/tasks", None, &[("Cookie", &cookie)]).await;
            assert_401(&in_cookie, "auth_required", "a token in a cookie is not accepted");
        }
    }

    async fn the_bearer_scheme_is_case_insensitive(app) {
        let token = app.token("alice");
        for scheme in ["bearer", "BEARER", "Bearer", "bEaReR"] {
            let response = raw(&app, &format!("{scheme} {token}"), "/api/alice/tasks").await;
            assert_eq!(response.status, Status::Ok, "{scheme}");
        }
    }

    async fn a_token_verified_before_is_still_refused_once_it_expires(app) {
        // The verifier keeps tokens that passed; a kept one must stop passing at its `exp`
        // plus the leeway (30 s), exactly as one seen for the first time.
        let token = sign(&json!({"sub": "alice", "exp": now() - 28}), TEST_SECRET, Algorithm::HS256);
        for round in 0..2 {
            let response = app.with_token(&token).get("/api/alice/tasks").await;
            assert_eq!(response.status, Status::Ok, "round {round}: {}", response.text);
        }
        let other = app.with_token(&token).get("/api/bob/tasks").await;
        assert_eq!(other.status, Status::Forbidden, "a kept token is still alice's only");
        tokio::time::sleep(std::time::Duration::from_millis(3100)).await;
        assert_401(&app.with_token(&token).get("/api/alice/tasks").await, "invalid_token", "kept, then expired");
        // A token that differs from a kept one by its signature alone is checked afresh.
        let mut forged = token.clone();
        forged.push('A');
        assert_401(&app.with_token(&forged).get("/api/alice/tasks").await, "invalid_token", "forged");
    }

    async fn a_token_within_the_clock_leeway_is_accepted(app) {
        let claims = json!({"sub": "alice", "exp": now() - 10, "nbf": now() + 10, "iat": now()});
        let token = sign(&claims, TEST_SECRET, Algorithm::HS256);
        let response = app.with_token(&token).get("/api/alice/tasks").await;
        assert_eq!(response.status, Status::Ok, "{}", response.text);
    }

    async fn every_endpoint_needs_a_token_and_the_right_user(app) {
        let task = app.create_task("alice", json!({"title": "t"})).await;
        let id = task["id"].as_i64().unwrap();
        let body = json!({"title": "x"});
        let endpoints: Vec<(Method, String, Option<&Value>)> = vec![
            (Method::Get, "/api/alice/tasks".into(), None),
            (Method::Post, "/api/alice/tasks".into(), Some(&body)),
            (Method::Delete, "/api/alice/tasks?completed=true".into(), None),
            (Method::Get, format!("/api/alice/tasks/{id}"), None),
            (Method::Put, format!("/api/alice/tasks/{id}"), Some(&body)),
            (Method::Patch, format!("/api/alice/tasks/{id}"), Some(&body)),
            (Method::Patch, format!("/api/alice/tasks/{id}/complete"), None),
            (Method::Delete, format!("/api/alice/tasks/{id}"), None),
        ];
        let bob = app.token("bob");
        for (method, path, body) in &endpoints {
            let anonymous = app.anonymous().send(*method, path, *body, &[]).await;
            assert_401(&anonymous, "auth_required", path);
            let expired = sign(&json!({"sub": "alice", "exp": now() - 300}), TEST_SECRET, Algorithm::HS256);
            assert_401(&app.with_token(&expired).send(*method, path, *body, &[]).await, "invalid_token", path);
            let forbidden = app.with_token(&bob).send(*method, path, *body, &[]).await;
            assert_eq!(forbidden.status, Status::Forbidden, "{method} {path}");
            assert_eq!(forbidden.error_code(), "forbidden");
        }
        let after = app.as_user("alice").get(&format!("tasks/{id}")).await.json();
        assert_eq!(after, task, "no refused request changed anything");
    }

    async fn checks_run_401_then_403_then_404_or_422(app) {
        let bob = app.token("bob");
        // Invalid body and unknown id, but no token: 401.
        let response = app.anonymous().put("/api/alice/tasks/999999", &json!({"title": ""})).await;
        assert_eq!(response.status, Status::Unauthorized);
        assert_eq!(response.error_code(), "auth_required");
        // Token for another user: 403 before 404 / 422.
        let response = app.with_token(&bob).put("/api/alice/tasks/999999", &json!({"title": ""})).await;
        assert_eq!(response.status, Status::Forbidden);
        assert_eq!(response.error_code(), "forbidden");
        let response = app.with_token(&bob).get("/api/alice/tasks/abc").await;
        assert_eq!(response.status, Status::Forbidden);
        assert_eq!(response.error_code(), "forbidden");
        // The right user: now 404 and 422 are reported.
        let response = app.as_user("bob").get("tasks/999999").await;
        assert_eq!(response.status, Status::NotFound);
        assert_eq!(response.error_code(), "not_found");
        let response = app.as_user("bob").post("tasks", &json!({"title": ""})).await;
        assert_eq!(response.status, Status::UnprocessableEntity);
        assert_eq!(response.error_code(), "validation_error");
    }
}

//! CORS over a real socket, as a browser sees it.

use rocket::figment::providers::Serialized;

use crate::helpers::{
    assert_error_shape, on_both_backends, raw_http, Backend, LiveServer, TEST_SECRET,
};

const ALLOWED: &str = "http://localhost:3000";

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

fn preflight(origin: &str, method: &str, headers: &str) -> String {
    format!(
        "OPTIONS /api/alice/tasks/1 HTTP/1.1\r\nHost: localhost\r\nOrigin: {origin}\r\n\
         Access-Control-Request-Method: {method}\r\nAccess-Control-Request-Headers: {headers}\r\n\
         Connection: close\r\n\r\n"
    )
}

on_both_backends! {
    async fn preflight_from_an_allowed_origin_lists_methods_and_headers(backend) {
        let server = LiveServer::start(backend, |f| f).await;
        for method in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
            let (status, headers, _) = raw_http(server.port,
                &preflight(ALLOWED, method, "authorization, content-type, if-match, if-none-match, idempotency-key")).await;
            assert!(status == 200 || status == 204, "{method}: {status}");
            assert_eq!(header(&headers, "access-control-allow-origin"), Some(ALLOWED));
            let methods = header(&headers, "access-control-allow-methods").unwrap_or_default();
            assert!(methods.contains(method), "{method} not in {methods}");
            let allowed = header(&headers, "access-control-allow-headers").unwrap_or_default().to_ascii_lowercase();
            for h in ["authorization", "content-type", "if-match", "if-none-match", "idempotency-key"] {
                assert!(allowed.contains(h), "{h} not in {allowed}");
            }
            assert!(header(&headers, "vary").is_some_and(|v| v.contains("Origin")));
        }
        server.stop().await;
    }

    async fn preflight_from_another_origin_gets_no_allow_origin(backend) {
        let server = LiveServer::start(backend, |f| f).await;
        let (status, headers, body) = raw_http(server.port, &preflight("https://evil.example", "DELETE", "authorization")).await;
        assert!(status >= 400, "{status}");
        assert_eq!(header(&headers, "access-control-allow-origin"), None);
        crate::helpers::assert_error_shape(&serde_json::from_str(&body).unwrap_or_default());
        server.stop().await;
    }

    async fn actual_requests_expose_headers_only_to_allowed_origins(backend) {
        let server = LiveServer::start(backend, |f| f).await;
        let request = |origin: &str| format!(
            "GET /health HTTP/1.1\r\nHost: localhost\r\nOrigin: {origin}\r\nConnection: close\r\n\r\n");
        let (status, headers, _) = raw_http(server.port, &request(ALLOWED)).await;
        assert_eq!(status, 200);
        assert_eq!(header(&headers, "access-control-allow-origin"), Some(ALLOWED));
        assert!(header(&headers, "vary").is_some_and(|v| v.contains("Origin")));
        let exposed = header(&headers, "access-control-expose-headers").unwrap_or_default().to_ascii_lowercase();
        for h in ["etag", "location", "link", "x-total-count", "ratelimit-limit", "ratelimit-remaining", "ratelimit-reset", "x-request-id", "retry-after", "idempotent-replayed"] {
            assert!(exposed.contains(h), "{h} not exposed: {exposed}");
        }
        let (status, headers, _) = raw_http(server.port, &request("https://evil.example")).await;
        assert_eq!(status, 200, "the response itself is unchanged");
        assert_eq!(header(&headers, "access-control-allow-origin"), None);
        assert!(headers.iter().all(|(n, _)| !n.starts_with("access-control-")));
        server.stop().await;
    }

    async fn allowed_origins_come_from_the_configuration(backend) {
        let server = LiveServer::start(backend, |f| f.merge(rocket::figment::providers::Serialized::global(
            "cors.allowed_origins", "https://app.example.com"))).await;
        let (_, headers, _) = raw_http(server.port, &preflight("https://app.example.com", "GET", "authorization")).await;
        assert_eq!(header(&headers, "access-control-allow-origin"), Some("https://app.example.com"));
        let (_, headers, _) = raw_http(server.port, &preflight(ALLOWED, "GET", "authorization")).await;
        assert_eq!(header(&headers, "access-control-allow-origin"), None, "the default is replaced");
        server.stop().await;
    }

    async fn a_malformed_origin_is_refused_like_any_other_unlisted_origin(backend) {
        let server = LiveServer::start(backend, |f| f).await;
        for origin in ["http://localhost:3000.evil.example", "null", "not an origin", "http://", "http://localhost:3000/path", "HTTP://LOCALHOST:3000"] {
            let (status, headers, body) = raw_http(server.port, &preflight(origin, "PATCH", "authorization")).await;
            assert_eq!(status, 403, "{origin}: {body}");
            assert_error_shape(&serde_json::from_str(&body).unwrap_or_default());
            assert_eq!(header(&headers, "access-control-allow-origin"), None, "{origin}");
            assert!(header(&headers, "vary").is_some_and(|v| v.contains("Origin")));
            let (status, headers, _) = raw_http(server.port, &format!(
                "GET /health HTTP/1.1\r\nHost: localhost\r\nOrigin: {origin}\r\nConnection: close\r\n\r\n")).await;
            assert_eq!(status, 200, "a simple request gets its normal answer: {origin}");
            assert_eq!(header(&headers, "access-control-allow-origin"), None, "{origin}");
        }
        server.stop().await;
    }

    async fn a_preflight_asking_for_a_method_or_header_not_allowed_is_a_403(backend) {
        let server = LiveServer::start(backend, |f| f).await;
        for (method, headers) in [("TRACE", "authorization"), ("CONNECT", "authorization"), ("GET", "x-not-allowed"), ("PATCH", "authorization, cookie2")] {
            let (status, response_headers, body) = raw_http(server.port, &preflight(ALLOWED, method, headers)).await;
            assert_eq!(status, 403, "{method} {headers}: {body}");
            let body: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            assert_error_shape(&body);
            assert_eq!(body["error_code"], "forbidden");
            assert!(header(&response_headers, "access-control-allow-methods").is_none());
        }
        server.stop().await;
    }

    async fn error_answers_carry_cors_headers_for_an_allowed_origin(backend) {
        let server = LiveServer::start(backend, |f| f.merge(Serialized::global("rate_limit.per_minute", 1))).await;
        let token = todo_api::auth::mint_hs256(TEST_SECRET, "alice", 600).unwrap();
        let get = |auth: &str| format!(
            "GET /api/alice/tasks HTTP/1.1\r\nHost: localhost\r\nOrigin: {ALLOWED}\r\n{auth}Connection: close\r\n\r\n");
        let bearer = format!("Authorization: Bearer {token}\r\n");
        let (status, _, _) = raw_http(server.port, &get(&bearer)).await;
        assert_eq!(status, 200);
        for (auth, expected) in [("", 401), ("Authorization: Bearer junk\r\n", 401), (bearer.as_str(), 429)] {
            let (status, headers, body) = raw_http(server.port, &get(auth)).await;
            assert_eq!(status, expected, "{body}");
            assert_eq!(header(&headers, "access-control-allow-origin"), Some(ALLOWED), "{status}");
            assert_eq!(header(&headers, "access-control-allow-credentials"), Some("true"), "credentials in every mode");
            let exposed = header(&headers, "access-control-expose-headers").unwrap_or_default().to_ascii_lowercase();
            assert!(exposed.contains("retry-after") && exposed.contains("ratelimit-reset"), "{exposed}");
            if status == 429 {
                assert!(header(&headers, "retry-after").is_some());
            }
        }
        server.stop().await;
    }

    async fn vary_origin_is_sent_with_no_origin_and_with_a_foreign_one(backend) {
        let server = LiveServer::start(backend, |f| f).await;
        for origin in ["", "Origin: https://evil.example\r\n"] {
            for path in ["/health", "/api/alice/tasks", "/nowhere"] {
                let (_, headers, _) = raw_http(server.port, &format!(
                    "GET {path} HTTP/1.1\r\nHost: localhost\r\n{origin}Connection: close\r\n\r\n")).await;
                assert!(header(&headers, "vary").is_some_and(|v| v.contains("Origin")), "{path} {origin:?}: {headers:?}");
                assert_eq!(header(&headers, "access-control-allow-origin"), None);
            }
        }
        server.stop().await;
    }
}

/// A 503 (the database is unreachable) is readable by a browser on an allowed origin:
/// `Retry-After` is exposed. PostgreSQL at a port nothing listens on; on SQLite, another
/// connection holds the write lock past the pool's wait.
#[rocket::async_test]
async fn a_503_carries_cors_headers_and_an_exposed_retry_after() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        if backend == Backend::Postgres && crate::helpers::postgres_url().is_none() {
            continue;
        }
        let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let dead_url = format!(
            "postgres://postgres@127.0.0.1:{}/none",
            dead.local_addr().unwrap().port()
        );
        drop(dead);
        let server = LiveServer::start(backend, |f| {
            let f = f.merge(Serialized::global("databases.todo.connect_timeout", 1));
            if backend == Backend::Postgres {
                f.merge(Serialized::global("databases.todo.url", &dead_url))
                    .merge(Serialized::global("migrate_on_start", false))
            } else {
                f
            }
        })
        .await;
        let token = todo_api::auth::mint_hs256(TEST_SECRET, "alice", 600).unwrap();
        let body = r#"{"title": "x"}"#;
        let request = format!(
            "POST /api/alice/tasks HTTP/1.1\r\nHost: localhost\r\nOrigin: {ALLOWED}\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
        let holder = if backend == Backend::Sqlite {
            Some(crate::helpers::hold_sqlite_write_lock(&server.db_url).await)
        } else {
            None
        };
        let (status, headers, answer) = raw_http(server.port, &request).await;
        drop(holder);
        assert_eq!(status, 503, "{backend:?}: {answer}");
        assert_error_shape(&serde_json::from_str(&answer).unwrap_or_default());
        assert_eq!(
            header(&headers, "access-control-allow-origin"),
            Some(ALLOWED)
        );
        assert!(header(&headers, "retry-after").is_some());
        let exposed = header(&headers, "access-control-expose-headers")
            .unwrap_or_default()
            .to_ascii_lowercase();
        assert!(exposed.contains("retry-after"), "{exposed}");
        server.stop().await;
    }
}

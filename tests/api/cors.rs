//! CORS over a real socket, as a browser sees it.

use crate::helpers::{on_both_backends, raw_http, LiveServer};

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
                &preflight(ALLOWED, method, "authorization, content-type, if-match, if-none-match")).await;
            assert!(status == 200 || status == 204, "{method}: {status}");
            assert_eq!(header(&headers, "access-control-allow-origin"), Some(ALLOWED));
            let methods = header(&headers, "access-control-allow-methods").unwrap_or_default();
            assert!(methods.contains(method), "{method} not in {methods}");
            let allowed = header(&headers, "access-control-allow-headers").unwrap_or_default().to_ascii_lowercase();
            for h in ["authorization", "content-type", "if-match", "if-none-match"] {
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
        for h in ["etag", "location", "link", "x-total-count", "ratelimit-limit", "ratelimit-remaining", "ratelimit-reset", "x-request-id", "retry-after"] {
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
}

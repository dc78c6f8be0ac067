//! Slow and hostile clients over real sockets: a client that trickles its headers or sends
//! nothing is dropped after the header-read timeout, connections past the cap get a 503 and
//! are closed, and oversized heads and deeply nested JSON get a 4xx in the error shape.

use std::time::{Duration, Instant};

use rocket::figment::providers::Serialized;
use rocket::figment::Figment;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{assert_error_shape, on_both_backends, raw_http, LiveServer, TEST_SECRET};

fn with_connections(figment: Figment, header_read_timeout: u64, max: u64) -> Figment {
    figment
        .merge(Serialized::global(
            "connections.header_read_timeout",
            header_read_timeout,
        ))
        .merge(Serialized::global("connections.max", max))
}

/// Reads until the server closes `stream`, within `limit`; `None` when it stays open.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<Vec<u8>> {
    let mut seen = Vec::new();
    let deadline = Instant::now() + limit;
    loop {
        let mut buf = [0u8; 4096];
        let left = deadline.checked_duration_since(Instant::now())?;
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(seen),
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
            Err(_) => return None,
        }
    }
}

fn status_and_body(raw: &[u8]) -> (u16, String) {
    let text = String::from_utf8_lossy(raw);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, body)| body)
        .to_owned();
    (status, body)
}

fn assert_error_body(body: &str, code: &str) {
    let body: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    assert_error_shape(&body);
    assert_eq!(body["error_code"], code, "{body}");
}

on_both_backends! {
    async fn clients_that_trickle_headers_or_send_nothing_are_dropped(backend) {
        let server = LiveServer::start(backend, |f| with_connections(f, 1, 1000)).await;
        let port = server.port;
        let mut silent = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let mut trickler = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        trickler.write_all(b"GET /health HTTP/1.1\r\n").await.unwrap();
        let trickle = tokio::spawn(async move {
            let started = Instant::now();
            // One header byte every 200 ms: never a whole head.
            while started.elapsed() < Duration::from_secs(10) {
                if trickler.write_all(b"X").await.is_err() {
                    return started.elapsed();
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            started.elapsed()
        });
        // Meanwhile, others are served.
        let (status, _, _) = raw_http(port, "GET /health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
        assert_eq!(status, 200);
        assert!(closed_within(&mut silent, Duration::from_secs(5)).await.is_some(), "a silent client is dropped");
        let trickled_for = trickle.await.unwrap();
        assert!(trickled_for < Duration::from_secs(6), "a trickling client is dropped: {trickled_for:?}");
        let (status, _, _) = raw_http(port, "GET /health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
        assert_eq!(status, 200);
        server.stop().await;
    }

    async fn past_the_connection_cap_a_new_connection_gets_503_and_is_closed(backend) {
        let server = LiveServer::start(backend, |f| with_connections(f, 30, 4)).await;
        let port = server.port;
        let mut idle = Vec::new();
        for _ in 0..4 {
            idle.push(TcpStream::connect(("127.0.0.1", port)).await.unwrap());
        }
        // The server accepts in the background: wait until a fifth is refused.
        let deadline = Instant::now() + Duration::from_secs(10);
        let (status, body) = loop {
            let mut extra = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
            if let Some(raw) = closed_within(&mut extra, Duration::from_millis(500)).await {
                if !raw.is_empty() {
                    break status_and_body(&raw);
                }
            }
            assert!(Instant::now() < deadline, "no connection was refused past the cap");
        };
        assert_eq!(status, 503);
        assert_error_body(&body, "service_unavailable");
        drop(idle);
        // The slots come back when the idle connections go.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (status, _, _) = raw_http(port, "GET /health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
            if status == 200 {
                break;
            }
            assert!(Instant::now() < deadline, "still refused: {status}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        server.stop().await;
    }

    async fn oversized_heads_and_deep_json_get_a_4xx_in_the_error_shape(backend) {
        let server = LiveServer::start(backend, |f| f).await;
        let port = server.port;
        let long_uri = format!("GET /api/alice/tasks?q={} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", "a".repeat(10 * 1024));
        let (status, _, body) = raw_http(port, &long_uri).await;
        assert_eq!(status, 414);
        assert_error_body(&body, "uri_too_long");

        let many: String = (0..150).map(|i| format!("X-Filler-{i}: {i}\r\n")).collect();
        let (status, _, body) = raw_http(port, &format!("GET /health/live HTTP/1.1\r\nHost: x\r\n{many}Connection: close\r\n\r\n")).await;
        assert_eq!(status, 431);
        assert_error_body(&body, "headers_too_large");

        let large = format!("GET /health/live HTTP/1.1\r\nHost: x\r\nX-Large: {}\r\nConnection: close\r\n\r\n", "b".repeat(40 * 1024));
        let (status, _, body) = raw_http(port, &large).await;
        assert_eq!(status, 431);
        assert_error_body(&body, "headers_too_large");

        // Past hyper's own buffer the answer is hyper's bare 431, and the connection closes.
        let huge = format!("GET /health/live HTTP/1.1\r\nHost: x\r\nX-Huge: {}\r\n\r\n", "c".repeat(300 * 1024));
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let _ = stream.write_all(huge.as_bytes()).await;
        let raw = closed_within(&mut stream, Duration::from_secs(5)).await.expect("the connection is closed");
        assert_eq!(status_and_body(&raw).0, 431);

        let token = todo_api::auth::mint_hs256(TEST_SECRET, "alice", 600).unwrap();
        for body in ["[".repeat(50_000), "{\"a\":".repeat(10_000)] {
            let request = format!(
                "POST /api/alice/tasks HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
            let (status, _, answer) = raw_http(port, &request).await;
            assert_eq!(status, 400, "{answer}");
            assert_error_body(&answer, "malformed_json");
        }
        let (status, _, _) = raw_http(port, "GET /health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
        assert_eq!(status, 200, "still serving");
        server.stop().await;
    }
}

//! The real binary over a real socket: request ids and JSON access logs, and a graceful
//! shutdown on SIGTERM that lets a request in flight finish.

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use crate::helpers::on_pool;
use rocket::http::{Method, Status};

use crate::helpers::{
    on_both_backends, on_both_databases, raw_http, AppPool, Backend, Served, TestDatabase,
    TEST_SECRET,
};

fn sigterm(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// What a connection made during the drain gets.
#[derive(Debug, PartialEq, Eq)]
enum DrainAnswer {
    /// The listener is closed: the connection is refused at once.
    Refused,
    /// An HTTP answer (any status), then the connection closes.
    Answered(u16),
    /// Accepted, then closed or reset with no answer (a connection that raced the
    /// listener's closing).
    Reset,
    /// Accepted, then neither answered nor closed in time.
    Hung,
}

async fn connect_during_drain(port: u16) -> DrainAnswer {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return DrainAnswer::Refused;
    };
    let _ = stream
        .write_all(b"GET /health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await;
    let mut buf = Vec::new();
    match tokio::time::timeout(Duration::from_secs(3), stream.read_to_end(&mut buf)).await {
        Ok(_) if buf.starts_with(b"HTTP/1.1 ") => {
            DrainAnswer::Answered(String::from_utf8_lossy(&buf[9..12]).parse().unwrap_or(0))
        }
        Ok(_) => DrainAnswer::Reset,
        Err(_) => DrainAnswer::Hung,
    }
}

on_both_backends! {
    async fn sigterm_answers_every_request_in_flight_then_exits_0(backend) {
        let database = TestDatabase::fresh(backend).await;
        let db_url = database.url.clone();
        // 30 creates: 15 hold the pool's 15 connections, blocked by a lock; 15 wait for a
        // connection. Waits (the SQLite busy timeout and the pool's) are raised to 30 s, so a
        // busy machine cannot turn a wait into a 503.
        let served = Served::start(&db_url, &[
            ("ROCKET_DATABASES", "{todo={connect_timeout=30}}"),
            ("DB_MAX_CONNECTIONS", "15"),
        ]).await;
        let token = todo_api::auth::mint_hs256(TEST_SECRET, "alice", 600).unwrap();
        let pool = if backend == Backend::Sqlite {
            AppPool::Sqlite(sqlx::SqlitePool::connect(&db_url).await.unwrap())
        } else {
            AppPool::Postgres(sqlx::PgPool::connect(&db_url).await.unwrap())
        };
        let lock = if backend == Backend::Sqlite { "BEGIN IMMEDIATE" } else { "LOCK TABLE tasks IN EXCLUSIVE MODE" };
        let in_flight = on_pool!(&pool, |p| {
            let mut conn = p.acquire().await.unwrap().detach();
            if backend == Backend::Postgres {
                sqlx::query("BEGIN").execute(&mut conn).await.unwrap();
            }
            sqlx::query(lock).execute(&mut conn).await.unwrap();

            let port = served.port;
            let in_flight: Vec<_> = (0..30).map(|i| {
                let request = format!(
                    "POST /api/alice/tasks?access_token=QUERY-SECRET-VALUE HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
                     X-Request-Id: shutdown-test-{i}\r\nContent-Type: application/json\r\nContent-Length: 22\r\nConnection: close\r\n\r\n\
                     {{\"title\": \"in flight\"}}"
                );
                tokio::spawn(async move { raw_http(port, &request).await })
            }).collect();
            // Every request is in: its access line is not written yet, but the pool is full.
            let deadline = Instant::now() + Duration::from_secs(20);
            if backend == Backend::Postgres {
                loop {
                    let waiting: i64 = sqlx::query_scalar(
                        "SELECT COUNT(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%INSERT INTO tasks%'"
                    // Not on the lock's own connection: inside its transaction the view
                    // would show one snapshot.
                    ).fetch_one(p).await.unwrap();
                    if waiting == 15 { break; }
                    assert!(Instant::now() < deadline, "{waiting} creates wait on the lock");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
            assert!(in_flight.iter().all(|r| !r.is_finished()), "the creates wait for the lock or a connection");

            sigterm(&served.child);
            // The shutdown has begun once its log line is out.
            let deadline = Instant::now() + Duration::from_secs(10);
            while !served.stdout.lock().unwrap().contains("shutting down") {
                assert!(Instant::now() < deadline, "the shutdown starts");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            // A connection made now is refused or answered at once, never left hanging;
            // one that raced the listener's closing may be reset, then the next is refused.
            let during = loop {
                let during = connect_during_drain(served.port).await;
                if during != DrainAnswer::Reset {
                    break during;
                }
                assert!(Instant::now() < deadline, "connections during the drain are reset");
            };
            assert!(matches!(during, DrainAnswer::Refused | DrainAnswer::Answered(503)), "a connection during the drain: {during:?}");

            // The lock is held about 2 s after SIGTERM in all.
            tokio::time::sleep(Duration::from_millis(1500)).await;
            assert!(in_flight.iter().all(|r| !r.is_finished()), "nothing was answered early (with a 503)");
            sqlx::query("COMMIT").execute(&mut conn).await.unwrap();
            in_flight
        });
        for (i, request) in in_flight.into_iter().enumerate() {
            let (status, headers, body) = request.await.unwrap();
            assert_eq!(status, 201, "request {i} in flight completes: {body}");
            let id = format!("shutdown-test-{i}");
            assert!(headers.iter().any(|(n, v)| n == "x-request-id" && *v == id));
        }

        let (exit, stdout) = served.wait(Duration::from_secs(20)).await;
        assert!(exit.success(), "exit status {exit:?}");
        assert!(stdout.contains("shutting down"), "{stdout}");
        assert!(!stdout.contains(&token) && !stdout.contains("QUERY-SECRET-VALUE"), "a token was logged");
        let stored: i64 = on_pool!(&pool, |p| sqlx::query_scalar("SELECT COUNT(*) FROM tasks").fetch_one(p).await.unwrap());
        assert_eq!(stored, 30, "every task written during shutdown is kept");
    }

    async fn a_stop_writes_out_the_access_line_of_every_request_answered(backend) {
        // However busy the instance was just before SIGTERM, every answered request has
        // its line by the time the process exits.
        let database = TestDatabase::fresh(backend).await;
        let served = Served::start(&database.url, &[]).await;
        let token = todo_api::auth::mint_hs256(TEST_SECRET, "alice", 600).unwrap();
        let port = served.port;
        let clients: Vec<_> = (0..8)
            .map(|client| {
                let token = token.clone();
                tokio::spawn(async move {
                    for n in 0..40 {
                        let (status, _, _) = raw_http(port, &format!(
                            "GET /api/alice/tasks HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
                             X-Request-Id: burst-{client}-{n}\r\nConnection: close\r\n\r\n")).await;
                        // Answered (past the rate limit too: a 429 has its line as well).
                        assert!(status == 200 || status == 429, "{status}");
                    }
                })
            })
            .collect();
        for client in clients {
            client.await.unwrap();
        }
        sigterm(&served.child);
        let (status, out) = served.wait(Duration::from_secs(15)).await;
        assert!(status.success(), "{status:?}");
        let mut logged: Vec<String> = out
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|l| l["request_id"].as_str().filter(|id| id.starts_with("burst-")).map(str::to_owned))
            .collect();
        logged.sort();
        logged.dedup();
        assert_eq!(logged.len(), 320, "one access line per answered request, each once");
    }

    async fn json_access_logs_carry_the_request_id_and_user_but_no_token(backend) {
        let database = TestDatabase::fresh(backend).await;
        let db_url = database.url.clone();
        let served = Served::start(&db_url, &[]).await;
        let token = todo_api::auth::mint_hs256(TEST_SECRET, "alice", 600).unwrap();
        let (status, headers, _) = raw_http(
            served.port,
            &format!("GET /api/alice/tasks?status=pending&access_token=QUERY-SECRET-VALUE HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nX-Request-Id: log-test-7\r\nConnection: close\r\n\r\n"),
        ).await;
        assert_eq!(status, 200);
        assert!(headers.iter().any(|(n, v)| n == "x-request-id" && v == "log-test-7"));
        let (status, headers, _) = raw_http(served.port, "GET /api/alice/tasks HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer nope\r\nConnection: close\r\n\r\n").await;
        assert_eq!(status, 401);
        let generated = headers.iter().find(|(n, _)| n == "x-request-id").map(|(_, v)| v.clone()).unwrap();
        for (origin, id, expected) in [("http://localhost:3000", "preflight-ok", 204), ("http://localhost:3000.evil.example", "preflight-bad", 403)] {
            let (status, _, _) = raw_http(served.port, &format!(
                "OPTIONS /api/alice/tasks/1 HTTP/1.1\r\nHost: x\r\nOrigin: {origin}\r\nAccess-Control-Request-Method: PATCH\r\n\
                 X-Request-Id: {id}\r\nConnection: close\r\n\r\n")).await;
            assert_eq!(status, expected, "{origin}");
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while !served.log_lines().iter().any(|l| l["request_id"] == "preflight-bad") {
            assert!(Instant::now() < deadline, "the access lines are written");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        let lines = served.log_lines();
        let access = lines.iter().find(|l| l["request_id"] == "log-test-7").unwrap_or_else(|| panic!("no access line in {lines:?}"));
        assert_eq!(access["method"], "GET");
        assert_eq!(access["route"], "/api/<user_id>/tasks", "the route template, not the path or query");
        assert_eq!(access["status"], 200);
        assert_eq!(access["user"], "alice");
        assert!(access["latency_ms"].is_number());
        for (id, status) in [("preflight-ok", 204), ("preflight-bad", 403)] {
            let line = lines.iter().find(|l| l["request_id"] == id).unwrap_or_else(|| panic!("no access line for {id}"));
            assert_eq!(line["status"], status, "the access log records what was answered: {line}");
            assert_eq!(line["method"], "OPTIONS");
        }
        let refused = lines.iter().find(|l| l["message"] == "token refused").expect("the refusal is logged");
        assert_eq!(refused["spans"][0]["request_id"], generated.as_str(), "lines inside the handler name the request");
        assert!(lines.iter().any(|l| l["request_id"] == generated.as_str() && l["status"] == 401));
        let started = lines.iter().find(|l| l["message"].as_str().is_some_and(|m| m.contains("listening"))).expect("a start-up line");
        let names: Vec<&str> = started["settings_from_env"].as_str().unwrap_or_default().split('"').filter(|n| n.chars().all(|c| c.is_ascii_uppercase() || c == '_') && !n.is_empty()).collect();
        for name in ["DATABASE_URL", "BETTER_AUTH_SECRET", "PORT", "LOG_FORMAT", "ROCKET_PROFILE"] {
            assert!(names.contains(&name), "the start-up line names {name}: {started}");
        }
        let all = served.stdout.lock().unwrap().clone();
        assert!(!all.contains(&token) && !all.contains("QUERY-SECRET-VALUE") && !all.contains("Bearer"), "{all}");
        assert!(!all.contains(TEST_SECRET) && !all.contains(&db_url), "a setting's value was logged: {all}");
    }
}

on_both_databases! {
    async fn every_answer_carries_a_request_id(app) {
        let headers = [("X-Request-Id", "client-id_1.2:3")];
        for (method, path, token) in [
            (Method::Get, "/health/live", None),
            (Method::Get, "/api/alice/tasks", Some(app.token("alice"))),
            (Method::Get, "/api/alice/tasks", None),
            (Method::Get, "/api/bob/tasks", Some(app.token("alice"))),
            (Method::Get, "/nowhere", None),
        ] {
            let echoed = app.bearer(token.as_deref()).send(method, path, None, &headers).await;
            assert_eq!(echoed.header("X-Request-Id"), Some("client-id_1.2:3"), "{path} {}", echoed.status);
            let made = app.bearer(token.as_deref()).send(method, path, None, &[]).await;
            let id = made.header("X-Request-Id").expect("an id is made when none is sent");
            assert!(id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
        }
        let other = app.anonymous().get("/health/live").await;
        let another = app.anonymous().get("/health/live").await;
        assert_ne!(other.header("X-Request-Id"), another.header("X-Request-Id"));
        let unsafe_id = app.anonymous().send(Method::Get, "/health/live", None, &[("X-Request-Id", "has spaces and \"quotes\"")]).await;
        assert_eq!(unsafe_id.status, Status::Ok);
        assert_eq!(unsafe_id.header("X-Request-Id").map(str::len), Some(32), "an unsafe id is replaced");
    }
}

#[rocket::get("/untraced")]
fn untraced() -> &'static str {
    "no request span"
}

/// Every route runs inside a request span: start-up refuses a route mounted without one.
#[rocket::async_test]
async fn a_route_mounted_without_its_request_span_stops_start_up() {
    let database = TestDatabase::fresh(Backend::Sqlite).await;
    let url = database.url.clone();
    let bare =
        todo_api::rocket(crate::helpers::base_figment(&url)).mount("/", rocket::routes![untraced]);
    let error = bare
        .ignite()
        .await
        .expect_err("an untraced route is refused");
    // Reading the kind marks the error handled (an unhandled one panics when dropped).
    assert!(matches!(
        error.kind(),
        rocket::error::ErrorKind::FailedFairings(failed) if failed.iter().any(|f| f.name == "Request spans")
    ));
    let wrapped = todo_api::rocket(crate::helpers::base_figment(&url))
        .mount("/", todo_api::telemetry::traced(rocket::routes![untraced]));
    assert!(wrapped.ignite().await.is_ok());
}

/// Started from a folder without Rocket.toml (as the container image is), the binary keeps
/// the project's settings compiled into it, not Rocket's own defaults: its own logger stays
/// off (it would print request URIs, `access_token` values included) and the body limit
/// is 64 KiB.
#[rocket::async_test]
async fn the_compiled_in_settings_hold_outside_the_project_folder() {
    let database = TestDatabase::fresh(Backend::Sqlite).await;
    let db_url = database.url.clone();
    let elsewhere = tempfile::tempdir().unwrap();
    let served = Served::start_in(
        Some(elsewhere.path()),
        &db_url,
        &[("ROCKET_PROFILE", "debug"), ("LOG_FORMAT", "text")],
    )
    .await;
    let token = todo_api::auth::mint_hs256(TEST_SECRET, "alice", 600).unwrap();
    let (status, _, _) = raw_http(served.port, &format!(
        "GET /api/alice/tasks?access_token=QUERY-SECRET-VALUE HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n")).await;
    assert_eq!(status, 200);
    let body = format!("{{\"title\": \"{}\"}}", "x".repeat(70 * 1024));
    let (status, _, _) = raw_http(served.port, &format!(
        "POST /api/alice/tasks HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())).await;
    assert_eq!(
        status, 413,
        "the 64 KiB limit of Rocket.toml, not Rocket's 1 MiB"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !served.stdout.lock().unwrap().contains("todo_api::access") {
        assert!(Instant::now() < deadline, "the access lines are written");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stdout = served.stdout.lock().unwrap().clone();
    assert!(
        !stdout.contains("QUERY-SECRET-VALUE") && !stdout.contains(&token),
        "{stdout}"
    );
    assert!(
        !stdout.contains("Rocket has launched"),
        "Rocket's own logger is off: {stdout}"
    );
    drop(database);
}

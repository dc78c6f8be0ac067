//! A database that cannot be reached gives a quick 503, and the service recovers by itself.
//! PostgreSQL goes away behind a TCP proxy the test controls; SQLite is made unwritable by
//! another process holding its write lock.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rocket::http::{Method, Status};
use serde_json::json;
use sqlx::Connection;
use tokio::net::{TcpListener, TcpStream};

use crate::helpers::{assert_error_shape, postgres_url, Backend, TestApp, TestDatabase};

/// A loopback TCP proxy that can drop every connection and refuse new ones.
struct Proxy {
    port: u16,
    up: Arc<AtomicBool>,
    connections: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Proxy {
    async fn start(upstream: (String, u16)) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let connections: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>> = Arc::default();
        let (flag, list) = (up.clone(), connections.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !flag.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let upstream = upstream.clone();
                let handle = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                list.lock().unwrap().push(handle);
            }
        });
        Proxy {
            port,
            up,
            connections,
        }
    }

    fn down(&self) {
        self.up.store(false, Ordering::SeqCst);
        for connection in self.connections.lock().unwrap().drain(..) {
            connection.abort();
        }
    }

    fn up(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

async fn assert_503_quickly(
    app: &TestApp,
    method: Method,
    path: &str,
    body: Option<&serde_json::Value>,
) {
    let started = Instant::now();
    let response = app.as_user("alice").send(method, path, body, &[]).await;
    assert_eq!(
        response.status,
        Status::ServiceUnavailable,
        "{path}: {}",
        response.text
    );
    assert_eq!(response.error_code(), "service_unavailable");
    assert!(response.header("Retry-After").is_some());
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "503 took {:?}",
        started.elapsed()
    );
}

async fn eventually_ok(app: &TestApp, path: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let response = app
            .as_user("alice")
            .post(path, &json!({"title": "after"}))
            .await;
        if response.status == Status::Created {
            return response.json();
        }
        assert!(
            Instant::now() < deadline,
            "no recovery: {} {}",
            response.status,
            response.text
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits for a write to succeed again ("after"), then checks that the task from before the
/// outage is intact and that nothing refused during it was half-written.
async fn recovers_with_nothing_lost(app: &TestApp, before: &serde_json::Value) {
    eventually_ok(app, "/api/alice/tasks").await;
    let list = app.as_user("alice").get("/api/alice/tasks").await.json();
    let titles: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["title"].as_str())
        .collect();
    assert_eq!(
        titles,
        ["after", "before"],
        "nothing was lost or half-written: {list}"
    );
    assert_eq!(&list[1], before);
}

#[rocket::async_test]
async fn postgres_outage_is_a_503_then_recovers() {
    if postgres_url().is_none() {
        return;
    }
    let database = TestDatabase::fresh(Backend::Postgres).await;
    let parsed = url::Url::parse(&database.url).unwrap();
    let proxy = Proxy::start((
        parsed.host_str().unwrap().to_owned(),
        parsed.port().unwrap_or(5432),
    ))
    .await;
    let mut via_proxy = parsed.clone();
    via_proxy.set_host(Some("127.0.0.1")).unwrap();
    via_proxy.set_port(Some(proxy.port)).unwrap();
    let app = TestApp::spawn_on(TestDatabase::existing(via_proxy.as_str()), |f| f).await;
    let before = app.create_task("alice", json!({"title": "before"})).await;

    proxy.down();
    assert_503_quickly(
        &app,
        Method::Post,
        "/api/alice/tasks",
        Some(&json!({"title": "lost?"})),
    )
    .await;
    assert_503_quickly(&app, Method::Get, "/api/alice/tasks", None).await;
    let ready = app.anonymous().get("/health/ready").await;
    assert_eq!(ready.status, Status::ServiceUnavailable);
    assert_error_shape(&ready.json());
    let live = app.anonymous().get("/health/live").await;
    assert_eq!(live.status, Status::Ok, "the process itself is alive");

    proxy.up();
    recovers_with_nothing_lost(&app, &before).await;
}

#[rocket::async_test]
async fn sqlite_write_lock_held_elsewhere_is_a_503_then_recovers() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let before = app.create_task("alice", json!({"title": "before"})).await;

    let mut other = crate::helpers::hold_sqlite_write_lock(&app.db_url).await;
    assert_503_quickly(
        &app,
        Method::Post,
        "/api/alice/tasks",
        Some(&json!({"title": "lost?"})),
    )
    .await;
    let read = app.as_user("alice").get("/api/alice/tasks").await;
    assert_eq!(
        read.status,
        Status::Ok,
        "readers are not blocked in WAL mode"
    );

    sqlx::query("ROLLBACK").execute(&mut other).await.unwrap();
    other.close().await.unwrap();
    recovers_with_nothing_lost(&app, &before).await;
}

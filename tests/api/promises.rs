//! Promises of the contract and README that no other test checks: the default page size,
//! auth order against body errors, `/health` during an outage, the rate-limit header values
//! through the real variable, configuration defaults, strict due-date bounds, ignored body
//! fields, and the JWT leeway.

use std::collections::HashMap;

use crate::helpers::on_pool;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rocket::figment::providers::Serialized;
use rocket::http::{ContentType, Header as HttpHeader, Method, Status};
use rocket::local::asynchronous::Client;
use serde_json::{json, Value};
use todo_api::config::{figment_with_env, AppConfig};

use crate::helpers::{
    base_figment, on_both_backends, on_both_databases, read, Backend, TestApp, TestDatabase,
    TEST_SECRET,
};

fn hs256(claims: &Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(TEST_SECRET.as_bytes()),
    )
    .unwrap()
}

fn expired_secs_ago(secs: i64) -> String {
    let now = chrono::Utc::now().timestamp();
    hs256(&json!({"sub": "alice", "exp": now - secs, "iat": now - 3600}))
}

fn ids(list: &Value) -> Vec<i64> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_i64().unwrap())
        .collect()
}

on_both_databases! {
    async fn the_default_limit_is_1000_with_a_link_to_the_next_page(app) {
        let sql = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1005) \
            INSERT INTO tasks (user_id, title, search_title, created_at, updated_at) \
            SELECT 'alice', 'task ' || i, 'task ' || i, $1, $1 FROM n";
        on_pool!(&app.pool().await, |p| sqlx::query(sql).bind(chrono::Utc::now()).execute(p).await.map(drop).unwrap());
        let page = app.as_user("alice").get("tasks").await;
        assert_eq!(page.status, Status::Ok);
        assert_eq!(page.json().as_array().map(Vec::len), Some(1000));
        assert_eq!(page.header("X-Total-Count"), Some("1005"));
        let link = page.header("Link").expect("a Link header");
        assert!(link.contains("limit=1000&offset=1000>; rel=\"next\""), "{link}");
        assert!(!link.contains("rel=\"prev\""), "{link}");
    }

    async fn no_token_is_a_401_whatever_the_body(app) {
        let big = format!("{{\"title\": \"{}\"}}", "x".repeat(70 * 1024));
        for (content_type, body) in [
            (ContentType::JSON, "{\"title\": ".to_owned()),
            (ContentType::JSON, big),
            (ContentType::Plain, "hello".to_owned()),
            (ContentType::JSON, "[1]".to_owned()),
        ] {
            for path in ["/api/alice/tasks", "/api/alice/tasks/1"] {
                let method = if path.ends_with("tasks") { Method::Post } else { Method::Put };
                let mut request = app.client.req(method, path);
                request.add_header(content_type.clone());
                request.set_body(body.clone());
                let response = read(request.dispatch().await).await;
                assert_eq!(response.status, Status::Unauthorized, "{path} {content_type}");
                assert_eq!(response.error_code(), "auth_required");
            }
        }
    }

    async fn the_wrong_user_is_a_403_before_any_412_or_422(app) {
        let task = app.create_task("alice", json!({"title": "mine"})).await;
        let path = format!("/api/alice/tasks/{}", task["id"]);
        let bob = app.token("bob");
        for (method, body, if_match) in [
            (Method::Put, Some(json!({"title": ""})), "\"1-999\""),
            (Method::Patch, Some(json!({"priority": "urgent"})), "\"1-999\""),
            (Method::Delete, None, "\"1-999\""),
            (Method::Patch, None, "\"bogus\""),
        ] {
            let path = if body.is_none() && method == Method::Patch { format!("{path}/complete") } else { path.clone() };
            let response = app.with_token(&bob).send(method, &path, body.as_ref(), &[("If-Match", if_match)]).await;
            assert_eq!(response.status, Status::Forbidden, "{method} {path}");
            assert_eq!(response.error_code(), "forbidden");
        }
        let unchanged = app.as_user("alice").get(&path).await.json();
        assert_eq!(unchanged, task);
    }

    async fn due_bounds_are_strict_and_updated_at_sorts_both_ways(app) {
        let at = "2026-06-01T12:00:00Z";
        let on = app.create_task("alice", json!({"title": "on", "due_at": at})).await;
        let before = app.create_task("alice", json!({"title": "before", "due_at": "2026-06-01T11:59:59.999999Z"})).await;
        let after = app.create_task("alice", json!({"title": "after", "due_at": "2026-06-01T12:00:00.000001Z"})).await;
        let list = |query: String| {
            let app = &app;
            async move { app.as_user("alice").get(&format!("tasks?{query}")).await.json() }
        };
        assert_eq!(ids(&list(format!("due_before={at}")).await), [before["id"].as_i64().unwrap()]);
        assert_eq!(ids(&list(format!("due_after={at}")).await), [after["id"].as_i64().unwrap()]);
        assert_eq!(ids(&list("due_before=2026-06-01T13:00:00%2B01:00".to_owned()).await), [before["id"].as_i64().unwrap()], "the same instant at another offset");

        // Touch in the order after, on, before: updated_at ascending follows it.
        for task in [&after, &on, &before] {
            let path = format!("/api/alice/tasks/{}", task["id"]);
            assert_eq!(app.as_user("alice").patch(&path, Some(&json!({"priority": "low"}))).await.status, Status::Ok);
        }
        let touched = [after["id"].as_i64().unwrap(), on["id"].as_i64().unwrap(), before["id"].as_i64().unwrap()];
        assert_eq!(ids(&list("sort=updated_at&order=asc".to_owned()).await), touched);
        let mut newest_first = touched;
        newest_first.reverse();
        assert_eq!(ids(&list("sort=updated_at&order=desc".to_owned()).await), newest_first);
        assert_eq!(ids(&list("sort=updated_at".to_owned()).await), newest_first, "newest first by default");
    }

    async fn a_user_id_in_a_put_or_patch_body_is_ignored(app) {
        let task = app.create_task("alice", json!({"title": "mine", "user_id": "bob"})).await;
        assert_eq!(task["user_id"], "alice");
        let path = format!("/api/alice/tasks/{}", task["id"]);
        for method in [Method::Put, Method::Patch] {
            let response = app.as_user("alice").send(method, &path, Some(&json!({"title": "still mine", "user_id": "bob", "id": 99999})), &[]).await;
            assert_eq!(response.status, Status::Ok);
            assert_eq!(response.json()["user_id"], "alice");
            assert_eq!(response.json()["id"], task["id"]);
        }
        let bobs = app.as_user("bob").get("tasks").await.json();
        assert_eq!(bobs, json!([]));
    }

    async fn clearing_without_completed_true_is_a_422_naming_completed(app) {
        app.create_task("alice", json!({"title": "done", "completed": true})).await;
        for path in ["/api/alice/tasks", "/api/alice/tasks?completed=false", "/api/alice/tasks?completed=yes"] {
            let response = app.as_user("alice").delete(path).await;
            assert_eq!(response.status, Status::UnprocessableEntity, "{path}");
            assert_eq!(response.error_code(), "validation_error");
            assert!(response.json()["field_errors"]["completed"].is_array(), "{path}: {}", response.text);
        }
        assert_eq!(app.as_user("alice").get("tasks").await.json().as_array().map(Vec::len), Some(1));
    }

    async fn the_jwt_leeway_is_30_seconds(app) {
        let accepted = app.with_token(&expired_secs_ago(25)).get("/api/alice/tasks").await;
        assert_eq!(accepted.status, Status::Ok, "expired 25 s ago: {}", accepted.text);
        let refused = app.with_token(&expired_secs_ago(35)).get("/api/alice/tasks").await;
        assert_eq!(refused.status, Status::Unauthorized, "expired 35 s ago");
        assert_eq!(refused.error_code(), "invalid_token");
    }
}

on_both_backends! {
    async fn jwt_leeway_secs_is_honoured(backend) {
        let app = TestApp::spawn_with(backend, |f| f.merge(Serialized::global("auth.leeway_secs", 5))).await;
        let refused = app.with_token(&expired_secs_ago(25)).get("/api/alice/tasks").await;
        assert_eq!(refused.status, Status::Unauthorized);
        assert_eq!(refused.error_code(), "invalid_token");
        let accepted = app.with_token(&expired_secs_ago(2)).get("/api/alice/tasks").await;
        assert_eq!(accepted.status, Status::Ok);
    }

    async fn health_answers_503_in_the_error_shape_while_the_database_is_down(backend) {
        let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = match backend {
            Backend::Postgres => format!("postgres://postgres@127.0.0.1:{}/none", dead.local_addr().unwrap().port()),
            // A file SQLite cannot create.
            Backend::Sqlite => "sqlite:///proc/todo-api-cannot-be-here.db".to_owned(),
        };
        drop(dead);
        let figment = base_figment(&url)
            .merge(Serialized::global("migrate_on_start", false))
            .merge(Serialized::global("databases.todo.connect_timeout", 1));
        let client = Client::tracked(todo_api::rocket(figment)).await.expect("the service starts without its database");
        for path in ["/health", "/health/ready"] {
            let response = read(client.get(path).dispatch().await).await;
            assert_eq!(response.status, Status::ServiceUnavailable, "{path}: {}", response.text);
            assert_eq!(response.error_code(), "service_unavailable");
            assert!(response.header("Retry-After").is_some());
        }
        let live = read(client.get("/health/live").dispatch().await).await;
        assert_eq!(live.status, Status::Ok, "liveness does not depend on the database");
    }

    async fn rate_limit_headers_follow_the_real_variable(backend) {
        let database = TestDatabase::fresh(backend).await;
        let url = database.url.clone();
        let vars = HashMap::from([("RATE_LIMIT_PER_MINUTE", "3"), ("BETTER_AUTH_SECRET", TEST_SECRET)]);
        let figment = figment_with_env(|name| vars.get(name).map(|v| (*v).to_owned()))
            .unwrap()
            .merge(Serialized::global("databases.todo.url", &url));
        let client = Client::tracked(todo_api::rocket(figment)).await.unwrap();
        let token = todo_api::auth::mint_hs256(TEST_SECRET, "alice", 600).unwrap();
        let get = || {
            let mut request = client.get("/api/alice/tasks");
            request.add_header(HttpHeader::new("Authorization", format!("Bearer {token}")));
            request
        };
        for (remaining, reset) in [("2", "20"), ("1", "40"), ("0", "60")] {
            let response = read(get().dispatch().await).await;
            assert_eq!(response.status, Status::Ok);
            assert_eq!(response.header("RateLimit-Limit"), Some("3"));
            assert_eq!(response.header("RateLimit-Remaining"), Some(remaining));
            let got: u64 = response.header("RateLimit-Reset").unwrap().parse().unwrap();
            let want: u64 = reset.parse().unwrap();
            assert!(got <= want && got + 1 >= want, "RateLimit-Reset {got}, about {want}");
        }
        let refused = read(get().dispatch().await).await;
        assert_eq!(refused.status, Status::TooManyRequests);
        assert_eq!(refused.error_code(), "rate_limited");
        assert_eq!(refused.header("RateLimit-Remaining"), Some("0"));
        assert_eq!(refused.header("RateLimit-Reset"), Some("60"));
        let retry: u64 = refused.header("Retry-After").unwrap().parse().unwrap();
        assert!((19..=20).contains(&retry), "one request refills in 20 s: {retry}");
    }

    async fn neon_db_url_is_the_database_used(backend) {
        let database = TestDatabase::fresh(backend).await;
        let url = database.url.clone();
        let vars = HashMap::from([("NEON_DB_URL", url.as_str()), ("BETTER_AUTH_SECRET", TEST_SECRET)]);
        let figment = figment_with_env(|name| vars.get(name).map(|v| (*v).to_owned())).unwrap();
        let client = Client::tracked(todo_api::rocket(figment)).await.unwrap();
        let mut request = client.post("/api/alice/tasks");
        request.add_header(HttpHeader::new("Authorization", format!("Bearer {}", todo_api::auth::mint_hs256(TEST_SECRET, "alice", 600).unwrap())));
        request.add_header(ContentType::JSON);
        request.set_body(r#"{"title": "in neon"}"#);
        assert_eq!(read(request.dispatch().await).await.status, Status::Created);
        let direct = TestApp::spawn_on(TestDatabase::existing(&url), |f| f).await;
        let stored = direct.as_user("alice").get("/api/alice/tasks").await.json();
        assert_eq!(stored[0]["title"], "in neon", "the task is in the NEON_DB_URL database");
    }
}

#[test]
fn configuration_defaults_are_the_documented_ones() {
    let figment = figment_with_env(|_| None).unwrap().select("debug");
    let config = AppConfig::from_figment(&figment).unwrap();
    assert_eq!(config.rate_limit_per_minute, 100);
    assert!(config.migrate_on_start);
    assert_eq!(figment.extract_inner::<u16>("port").unwrap(), 8000);
    assert_eq!(
        figment
            .extract_inner::<u32>("databases.todo.max_connections")
            .unwrap(),
        15
    );
    assert_eq!(
        figment
            .extract_inner::<u32>("databases.todo.min_connections")
            .unwrap(),
        5
    );
    assert_eq!(
        figment
            .extract_inner::<String>("databases.todo.url")
            .unwrap(),
        "sqlite://data/todo.db",
        "the SQLite file under data/"
    );
    assert_eq!(
        figment
            .extract_inner::<u64>("connections.header_read_timeout")
            .unwrap(),
        10
    );
    assert_eq!(
        figment.extract_inner::<u64>("connections.max").unwrap(),
        10_000
    );
    let release = figment_with_env(|_| None).unwrap().select("release");
    assert_eq!(release.extract_inner::<u16>("port").unwrap(), 8000);
    assert_eq!(
        release.extract_inner::<String>("address").unwrap(),
        "0.0.0.0"
    );
    // Both set: DATABASE_URL wins.
    let vars = HashMap::from([
        ("NEON_DB_URL", "postgres://neon/x"),
        ("DATABASE_URL", "sqlite://other.db"),
    ]);
    let both = figment_with_env(|name| vars.get(name).map(|v| (*v).to_owned())).unwrap();
    assert_eq!(
        both.extract_inner::<String>("databases.todo.url").unwrap(),
        "sqlite://other.db"
    );
    let vars = HashMap::from([("HEADER_READ_TIMEOUT_SECS", "3"), ("MAX_CONNECTIONS", "50")]);
    let set = figment_with_env(|name| vars.get(name).map(|v| (*v).to_owned())).unwrap();
    assert_eq!(
        set.extract_inner::<u64>("connections.header_read_timeout")
            .unwrap(),
        3
    );
    assert_eq!(set.extract_inner::<u64>("connections.max").unwrap(), 50);
}

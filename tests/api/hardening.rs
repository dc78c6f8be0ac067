//! Bad input never becomes a 500 or a false outage: NUL in text, values the database
//! refuses, database errors classified by their class, and a real 500 end to end.

use crate::helpers::on_pool;
use rocket::http::{Method, Status};
use serde_json::{json, Value};
use todo_api::db::errors::{classify, DbErrorClass};
use todo_api::tasks::sql::COLUMNS;

use crate::helpers::{on_both_databases, AppPool, TestApp, TestResponse};

fn assert_field_error(response: &TestResponse, field: &str) {
    assert_eq!(
        response.status,
        Status::UnprocessableEntity,
        "{field}: {}",
        response.text
    );
    assert_eq!(response.error_code(), "validation_error");
    let messages = &response.json()["field_errors"][field];
    assert!(
        messages.as_array().is_some_and(|m| !m.is_empty()),
        "{field} is named: {}",
        response.text
    );
}

async fn titles(app: &TestApp, user: &str) -> Vec<Value> {
    app.as_user(user)
        .get(&format!("/api/{user}/tasks"))
        .await
        .json()
        .as_array()
        .map(|tasks| tasks.iter().map(|t| t["title"].clone()).collect())
        .unwrap_or_default()
}

async fn database_error(pool: &AppPool, sql: &str) -> sqlx::Error {
    on_pool!(pool, |p| sqlx::query(sql).execute(p).await.expect_err(sql))
}

on_both_databases! {
    async fn nul_in_any_text_field_is_a_422_naming_it_and_stores_nothing(app) {
        for (field, body) in [
            ("title", json!({"title": "\u{0}"})),
            ("title", json!({"title": "a\u{0}b"})),
            ("description", json!({"title": "ok", "description": "line\u{0}"})),
            ("category", json!({"title": "ok", "category": "\u{0}work"})),
        ] {
            let response = app.as_user("alice").post("tasks", &body).await;
            assert_field_error(&response, field);
        }
        assert_eq!(titles(&app, "alice").await, Vec::<Value>::new(), "nothing was stored");

        let task = app.create_task("alice", json!({"title": "keep me", "category": "home"})).await;
        let path = format!("/api/alice/tasks/{}", task["id"]);
        for (method, body, field) in [
            (Method::Put, json!({"title": "x\u{0}"}), "title"),
            (Method::Patch, json!({"description": "\u{0}"}), "description"),
            (Method::Patch, json!({"category": "a\u{0}"}), "category"),
        ] {
            let response = app.as_user("alice").send(method, &path, Some(&body), &[]).await;
            assert_field_error(&response, field);
        }
        let stored = app.as_user("alice").get(&path).await.json();
        assert_eq!(stored, task, "the task is unchanged");
    }

    async fn nul_in_a_query_parameter_is_a_422_naming_it(app) {
        app.create_task("alice", json!({"title": "findable"})).await;
        for (query, field) in [
            ("q=%00", "q"),
            ("q=find%00able", "q"),
            ("category=%00", "category"),
            ("sort=title%00", "sort"),
            ("status=all%00", "status"),
            ("due_before=2026-01-01T00:00:00Z%00", "due_before"),
        ] {
            let response = app.as_user("alice").get(&format!("tasks?{query}")).await;
            assert_field_error(&response, field);
        }
    }

    async fn a_token_whose_subject_holds_nul_is_refused(app) {
        let token = todo_api::auth::mint_hs256(crate::helpers::TEST_SECRET, "a\u{0}b", 600).unwrap();
        let response = app.with_token(&token).get("/api/a%00b/tasks").await;
        assert_eq!(response.status, Status::Unauthorized, "{}", response.text);
        assert_eq!(response.error_code(), "invalid_token");
    }

    async fn database_errors_are_classified_by_class(app) {
        let pool = app.pool().await;
        let now = "'2026-01-01T00:00:00Z'";
        // A constraint violation names its field.
        let too_long = format!(
            "INSERT INTO tasks (user_id, title, created_at, updated_at) VALUES ('u', '{}', {now}, {now})",
            "x".repeat(201)
        );
        assert_eq!(classify(&database_error(&pool, &too_long).await, &COLUMNS), DbErrorClass::Refused(Some("title")));
        let bad_priority = format!(
            "INSERT INTO tasks (user_id, title, priority, created_at, updated_at) VALUES ('u', 't', 9, {now}, {now})"
        );
        assert_eq!(classify(&database_error(&pool, &bad_priority).await, &COLUMNS), DbErrorClass::Refused(Some("priority")));
        let no_user = format!("INSERT INTO tasks (title, created_at, updated_at) VALUES ('t', {now}, {now})");
        assert_eq!(classify(&database_error(&pool, &no_user).await, &COLUMNS), DbErrorClass::Refused(Some("user_id")));
        // Every column rule holds for inserts and for updates of a stored row alike
        // (PostgreSQL keeps them on domains, SQLite on the table).
        on_pool!(&pool, |p| sqlx::query(&format!(
            "INSERT INTO tasks (user_id, title, created_at, updated_at) VALUES ('u', 'kept', {now}, {now})"
        ))
        .execute(p)
        .await
        .map(drop))
        .unwrap();
        let long_description = "x".repeat(1001);
        for (values, field) in [
            (format!("('', 't', {now}, {now})"), "user_id"),
            (format!("('{}', 't', {now}, {now})", "u".repeat(256)), "user_id"),
            (format!("('u', '', {now}, {now})"), "title"),
        ] {
            let insert = format!("INSERT INTO tasks (user_id, title, created_at, updated_at) VALUES {values}");
            assert_eq!(classify(&database_error(&pool, &insert).await, &COLUMNS), DbErrorClass::Refused(Some(field)), "{insert}");
        }
        for (set, field) in [
            ("title = ''".to_owned(), "title"),
            (format!("title = '{}'", "x".repeat(201)), "title"),
            (format!("description = '{long_description}'"), "description"),
            ("category = ''".to_owned(), "category"),
            (format!("category = '{}'", "c".repeat(101)), "category"),
            ("priority = 0".to_owned(), "priority"),
            ("priority = 4".to_owned(), "priority"),
            ("user_id = ''".to_owned(), "user_id"),
        ] {
            let update = format!("UPDATE tasks SET {set} WHERE title = 'kept'");
            assert_eq!(classify(&database_error(&pool, &update).await, &COLUMNS), DbErrorClass::Refused(Some(field)), "{update}");
        }
        let refused_kind = "INSERT INTO task_events (user_id, id, kind, task_id, data) VALUES ('u', 1, 'renamed', 1, '{}')";
        assert!(matches!(classify(&database_error(&pool, refused_kind).await, &COLUMNS), DbErrorClass::Refused(_)));
        // What the rules allow is stored.
        let allowed = format!(
            "UPDATE tasks SET title = '{}', description = '{}', category = '{}', priority = 3 WHERE title = 'kept'",
            "t".repeat(200), "d".repeat(1000), "c".repeat(100)
        );
        let updated = on_pool!(&pool, |p| sqlx::query(&allowed).execute(p).await.map(|r| r.rows_affected())).unwrap();
        assert_eq!(updated, 1, "values at the limits are allowed");
        // A data exception: a value of the wrong type (SQLite: a text row id).
        let data = if matches!(pool, AppPool::Postgres(_)) {
            "SELECT CAST('abc' AS INTEGER)".to_owned()
        } else {
            format!("INSERT INTO tasks (id, user_id, title, created_at, updated_at) VALUES ('abc', 'u', 't', {now}, {now})")
        };
        assert!(matches!(classify(&database_error(&pool, &data).await, &COLUMNS), DbErrorClass::Refused(_)));
        // A broken statement is unexpected: a 500, not a 503.
        for sql in ["SELECT * FROM no_such_table", "SELEC 1"] {
            assert_eq!(classify(&database_error(&pool, sql).await, &COLUMNS), DbErrorClass::Unexpected, "{sql}");
        }
        // An outage: PostgreSQL ending the session (57P01); SQLite busy (5).
        let outage = match &pool {
            AppPool::Postgres(p) => sqlx::query("SELECT pg_terminate_backend(pg_backend_pid())")
                .execute(p)
                .await
                .expect_err("the session ends"),
            AppPool::Sqlite(p) => {
                use sqlx::Connection as _;
                let mut holder = p.acquire().await.unwrap();
                sqlx::query("BEGIN IMMEDIATE").execute(&mut *holder).await.unwrap();
                let options: sqlx::sqlite::SqliteConnectOptions = app.db_url.parse().unwrap();
                let mut other = sqlx::SqliteConnection::connect_with(&options.busy_timeout(std::time::Duration::ZERO)).await.unwrap();
                let error = sqlx::query(&bad_priority.replace(", 9,", ", 2,")).execute(&mut other).await.expect_err("busy");
                sqlx::query("ROLLBACK").execute(&mut *holder).await.unwrap();
                error
            }
        };
        assert_eq!(classify(&outage, &COLUMNS), DbErrorClass::Unavailable, "{outage}");
    }

    async fn nul_reaching_the_database_is_a_422_not_an_outage(app) {
        // Past the input checks (as a future field might be), the database's own refusal
        // of U+0000 is bad input, never "the database is unavailable".
        let pool = app.pool().await;
        let error = on_pool!(&pool, |p| sqlx::query(
            "INSERT INTO tasks (user_id, title, created_at, updated_at) VALUES ($1, $2, $3, $3)"
        )
        .bind("u")
        .bind("\u{0}")
        .bind(chrono::Utc::now())
        .execute(p)
        .await
        .expect_err("NUL is refused"));
        assert!(matches!(classify(&error, &COLUMNS), DbErrorClass::Refused(_)), "{error:?}");
        let public = todo_api::error::ApiError::from(error);
        assert_eq!(public.status(), Status::UnprocessableEntity);
    }

    async fn an_unexpected_database_error_is_a_generic_500_end_to_end(app) {
        app.create_task("alice", json!({"title": "before"})).await;
        let pool = app.pool().await;
        on_pool!(&pool, |p| sqlx::query("ALTER TABLE tasks RENAME TO tasks_elsewhere").execute(p).await.map(drop).unwrap());
        let response = app.as_user("alice").get("tasks").await;
        assert_eq!(response.status, Status::InternalServerError, "{}", response.text);
        assert_eq!(response.error_code(), "internal_error");
        assert_eq!(response.json()["detail"], "An unexpected error occurred");
        assert_eq!(response.json()["field_errors"], json!({}));
        assert!(response.header("Retry-After").is_none(), "not an outage");
        for needle in ["tasks", "SELECT", "relation", "sqlx", "/", ".rs"] {
            assert!(!response.text.contains(needle), "{needle} leaked: {}", response.text);
        }
        let created = app.as_user("alice").post("tasks", &json!({"title": "x"})).await;
        assert_eq!(created.status, Status::InternalServerError);
        on_pool!(&pool, |p| sqlx::query("ALTER TABLE tasks_elsewhere RENAME TO tasks").execute(p).await.map(drop).unwrap());
        assert_eq!(titles(&app, "alice").await, [json!("before")]);
    }
}

//! PostgreSQL over TLS against the test server, which `scripts/test` starts with a
//! certificate for `localhost` from a certificate authority of its own (`TEST_PG_TLS_DIR`):
//! verify-full and verify-ca with the right and a wrong authority or host name, require,
//! and Neon's `channel_binding=require`, which the driver cannot honour.

use std::path::PathBuf;
use std::process::Command;

use rocket::http::Status;
use serde_json::json;

use crate::helpers::{postgres_url, Backend, TestApp, TestDatabase};

fn tls_dir() -> Option<PathBuf> {
    postgres_url()?;
    match std::env::var("TEST_PG_TLS_DIR") {
        Ok(dir) if !dir.is_empty() => Some(PathBuf::from(dir)),
        _ if std::env::var("REQUIRE_POSTGRES").as_deref() == Ok("1") => {
            panic!("REQUIRE_POSTGRES=1 but TEST_PG_TLS_DIR is not set (scripts/test sets it)")
        }
        _ => None,
    }
}

/// `database`'s URL on `host`, with `params`.
fn url_on(database: &TestDatabase, host: &str, params: &str) -> String {
    let mut url = url::Url::parse(&database.url).unwrap();
    url.set_host(Some(host)).unwrap();
    url.set_query(Some(params));
    url.to_string()
}

fn ca(dir: &std::path::Path, name: &str) -> String {
    dir.join(name).display().to_string()
}

async fn serves(url: String) -> Result<(), String> {
    let database = TestDatabase::existing(&url);
    let figment = database.figment();
    match rocket::local::asynchronous::Client::tracked(todo_api::rocket(figment)).await {
        Ok(client) => {
            let app = TestApp::from_client(client, database);
            let created = app
                .as_user("alice")
                .post("tasks", &json!({"title": "over TLS"}))
                .await;
            assert_eq!(created.status, Status::Created);
            Ok(())
        }
        Err(error) => Err(error.to_string()),
    }
}

/// The binary's `migrate` command on `url`: whether it succeeded, and its output's lines.
fn migrate(url: &str) -> (bool, Vec<String>) {
    let output = Command::new(env!("CARGO_BIN_EXE_todo-api"))
        .env_clear()
        .env("DATABASE_URL", url)
        .env("LOG_FORMAT", "text")
        .env("LOG_LEVEL", "warn")
        .arg("migrate")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (
        output.status.success(),
        text.lines()
            .map(str::to_owned)
            .filter(|l| !l.trim().is_empty())
            .collect(),
    )
}

#[rocket::async_test]
async fn verified_tls_serves_with_the_right_authority_and_host_only() {
    let Some(dir) = tls_dir() else { return };
    let database = TestDatabase::fresh(Backend::Postgres).await;
    let (good, other) = (ca(&dir, "ca.pem"), ca(&dir, "other-ca.pem"));

    for url in [
        url_on(
            &database,
            "localhost",
            &format!("sslmode=verify-full&sslrootcert={good}"),
        ),
        // verify-ca checks the authority, not the name.
        url_on(
            &database,
            "127.0.0.1",
            &format!("sslmode=verify-ca&sslrootcert={good}"),
        ),
        url_on(&database, "127.0.0.1", "sslmode=require"),
    ] {
        serves(url.clone())
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}"));
    }

    for (url, why) in [
        (
            url_on(
                &database,
                "127.0.0.1",
                &format!("sslmode=verify-full&sslrootcert={good}"),
            ),
            "the certificate names localhost only",
        ),
        (
            url_on(
                &database,
                "localhost",
                &format!("sslmode=verify-full&sslrootcert={other}"),
            ),
            "another authority",
        ),
        (
            url_on(
                &database,
                "127.0.0.1",
                &format!("sslmode=verify-ca&sslrootcert={other}"),
            ),
            "another authority",
        ),
    ] {
        assert!(serves(url.clone()).await.is_err(), "{why}: {url}");
        let (ok, lines) = migrate(&url);
        assert!(!ok, "{why}: {lines:?}");
        assert_eq!(lines.len(), 1, "{why}: one line: {lines:?}");
        assert!(
            lines[0].contains("DATABASE_URL") && lines[0].contains("certificate"),
            "{lines:?}"
        );
    }
}

#[rocket::async_test]
async fn channel_binding_require_is_named_with_what_protects_the_connection_instead() {
    let Some(dir) = tls_dir() else { return };
    let database = TestDatabase::fresh(Backend::Postgres).await;
    let good = ca(&dir, "ca.pem");
    let url = url_on(
        &database,
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={good}&channel_binding=require"),
    );
    let (ok, lines) = migrate(&url);
    assert!(ok, "{lines:?}");
    let named: Vec<_> = lines
        .iter()
        .filter(|l| l.contains("channel_binding"))
        .collect();
    assert_eq!(named.len(), 1, "{lines:?}");
    assert!(named[0].contains("verify-full"), "{named:?}");
    assert!(
        !lines.iter().any(|l| l.contains("unrecognized")),
        "{lines:?}"
    );

    let url = url_on(
        &database,
        "127.0.0.1",
        "sslmode=require&channel_binding=require",
    );
    let (ok, lines) = migrate(&url);
    assert!(ok, "{lines:?}");
    let named: Vec<_> = lines
        .iter()
        .filter(|l| l.contains("channel_binding"))
        .collect();
    assert_eq!(named.len(), 1, "{lines:?}");
    assert!(named[0].contains("without verifying"), "{named:?}");
    // A working connection, serving.
    serves(url).await.unwrap();
}

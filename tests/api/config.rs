//! Configuration: debug needs nothing; release refuses missing or weak settings with one
//! line naming the variable; the contract's variable names override Rocket.toml.

use std::collections::HashMap;
use std::process::Command;

use todo_api::config::{figment_with_env, AppConfig, LogFormat, SqliteDurability, DEV_SECRET};

const GOOD_SECRET: &str = "a-production-secret-with-more-than-32-chars";

fn load(profile: &str, vars: &[(&str, &str)]) -> Result<AppConfig, String> {
    let vars: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let figment = figment_with_env(|name| vars.get(name).cloned()).map_err(|e| e.to_string())?;
    AppConfig::from_figment(&figment.select(profile)).map_err(|e| e.to_string())
}

fn refused(profile: &str, vars: &[(&str, &str)], variable: &str) {
    let error = load(profile, vars).expect_err("the configuration must be refused");
    assert!(error.contains(variable), "{error:?} should name {variable}");
    assert_eq!(error.lines().count(), 1, "one line: {error:?}");
    for value in [
        "db.example.com",
        "pw@",
        GOOD_SECRET,
        "too-short",
        "eighty",
        "xml",
    ] {
        assert!(!error.contains(value), "{error:?} echoes a value");
    }
}

#[test]
fn debug_starts_with_nothing_set() {
    let config = load("debug", &[]).unwrap();
    assert!(config.auth.dev_secret);
    assert_eq!(
        config
            .auth
            .secret
            .as_ref()
            .map(secrecy::ExposeSecret::expose_secret),
        Some(DEV_SECRET)
    );
    assert!(config.metrics_enabled, "/metrics is on in debug");
    assert_eq!(config.log.format, LogFormat::Text);
    assert_eq!(
        config.allowed_origins,
        ["http://localhost:3000", "http://127.0.0.1:3000"]
    );
}

#[test]
fn release_refuses_missing_and_weak_settings() {
    let url = (
        "DATABASE_URL",
        "postgres://u:pw@db.example.com/app?sslmode=require",
    );
    refused(
        "release",
        &[("BETTER_AUTH_SECRET", GOOD_SECRET)],
        "DATABASE_URL",
    );
    refused("release", &[url], "BETTER_AUTH_SECRET");
    refused(
        "release",
        &[url, ("BETTER_AUTH_SECRET", "too-short")],
        "BETTER_AUTH_SECRET",
    );
    refused(
        "release",
        &[url, ("BETTER_AUTH_SECRET", &"x".repeat(31))],
        "BETTER_AUTH_SECRET",
    );
    refused(
        "release",
        &[url, ("BETTER_AUTH_SECRET", DEV_SECRET)],
        "BETTER_AUTH_SECRET",
    );
    refused(
        "release",
        &[
            ("DATABASE_URL", "mysql://x/y"),
            ("BETTER_AUTH_SECRET", GOOD_SECRET),
        ],
        "DATABASE_URL",
    );
    refused(
        "debug",
        &[("BETTER_AUTH_SECRET", "short")],
        "BETTER_AUTH_SECRET",
    );
    refused("debug", &[("PORT", "eighty")], "PORT");
    refused("debug", &[("PORT", "70000")], "PORT");
    refused(
        "debug",
        &[("DB_MAX_CONNECTIONS", "0")],
        "DB_MAX_CONNECTIONS",
    );
    refused("debug", &[("ALLOWED_ORIGINS", "*")], "ALLOWED_ORIGINS");
    refused("debug", &[("LOG_FORMAT", "xml")], "LOG_FORMAT");
}

#[test]
fn release_accepts_a_complete_configuration() {
    let config = load(
        "release",
        &[
            (
                "NEON_DB_URL",
                "postgres://u:pw@ep-x.neon.tech/app?sslmode=require",
            ),
            ("BETTER_AUTH_SECRET", GOOD_SECRET),
            (
                "ALLOWED_ORIGINS",
                "https://app.example.com, https://www.example.com",
            ),
        ],
    )
    .unwrap();
    assert!(!config.auth.dev_secret);
    assert_eq!(config.log.format, LogFormat::Json);
    assert!(
        !config.metrics_enabled,
        "/metrics is off in release by default"
    );
    assert_eq!(config.rate_limit_per_minute, 100);
    assert_eq!(
        config.allowed_origins,
        ["https://app.example.com", "https://www.example.com"]
    );
}

#[test]
fn environment_names_override_rocket_toml() {
    let vars: HashMap<&str, &str> = HashMap::from([
        ("PORT", "7860"),
        ("DATABASE_URL", "sqlite://from-database-url.db"),
        ("NEON_DB_URL", "postgres://ignored/when-database-url-is-set"),
        ("DB_MAX_CONNECTIONS", "7"),
        ("DB_MIN_CONNECTIONS", "2"),
        ("LOG_LEVEL", "debug"),
    ]);
    let figment = figment_with_env(|name| vars.get(name).map(|v| (*v).to_owned())).unwrap();
    assert_eq!(figment.extract_inner::<u16>("port").unwrap(), 7860);
    assert_eq!(
        figment
            .extract_inner::<String>("databases.todo.url")
            .unwrap(),
        "sqlite://from-database-url.db"
    );
    assert_eq!(
        figment
            .extract_inner::<u32>("databases.todo.max_connections")
            .unwrap(),
        7
    );
    assert_eq!(
        figment
            .extract_inner::<u32>("databases.todo.min_connections")
            .unwrap(),
        2
    );
    let config = AppConfig::from_figment(&figment).unwrap();
    assert_eq!(config.log.level, "debug");
    let release = figment_with_env(|_| None).unwrap().select("release");
    assert_eq!(
        release.extract_inner::<String>("address").unwrap(),
        "0.0.0.0"
    );
}

#[rocket::async_test]
async fn igniting_release_with_a_weak_secret_fails() {
    let figment = figment_with_env(|name| match name {
        "DATABASE_URL" => Some("sqlite::memory:".to_owned()),
        "BETTER_AUTH_SECRET" => Some("weak".to_owned()),
        _ => None,
    })
    .unwrap()
    .select("release");
    let error = todo_api::rocket(figment)
        .ignite()
        .await
        .expect_err("release must refuse a weak secret");
    assert!(
        matches!(error.kind(), rocket::error::ErrorKind::FailedFairings(_)),
        "{error}"
    );
}

#[test]
fn the_binary_refuses_to_start_with_one_line_naming_the_variable() {
    let output = Command::new(env!("CARGO_BIN_EXE_todo-api"))
        .env_clear()
        .env("ROCKET_PROFILE", "release")
        .env("DATABASE_URL", "postgres://u:secretpw@127.0.0.1:1/db")
        .env("BETTER_AUTH_SECRET", "short-secret")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("BETTER_AUTH_SECRET"), "{stderr}");
    assert!(
        !stderr.contains("short-secret") && !stderr.contains("secretpw"),
        "{stderr}"
    );
}

#[rocket::async_test]
async fn the_token_command_prints_a_token_the_service_accepts() {
    let output = Command::new(env!("CARGO_BIN_EXE_todo-api"))
        .env_clear()
        .env("BETTER_AUTH_SECRET", crate::helpers::TEST_SECRET)
        .env("DATABASE_URL", "sqlite::memory:")
        .args(["token", "--sub", "alice", "--ttl", "15m"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let token = String::from_utf8(output.stdout).unwrap();
    let figment = crate::helpers::base_figment("sqlite::memory:");
    let config = AppConfig::from_figment(&figment).unwrap();
    let verifier = todo_api::auth::Verifier::new(&config.auth).unwrap();
    assert_eq!(verifier.verify(token.trim()).await, Ok("alice".to_owned()));
}

#[test]
fn better_auth_url_turns_jwks_on_with_its_origin_as_issuer_and_audience() {
    let db = ("DATABASE_URL", "postgres://u:pw@db.example.com/app");
    let config = load(
        "release",
        &[db, ("BETTER_AUTH_URL", "https://auth.example.com:8443/")],
    )
    .unwrap();
    assert!(
        config.auth.secret.is_none(),
        "HS256 stays off without a secret"
    );
    let jwks = config.auth.jwks.unwrap();
    assert_eq!(jwks.url, "https://auth.example.com:8443/api/auth/jwks");
    assert_eq!(jwks.issuer, "https://auth.example.com:8443");
    assert_eq!(jwks.audience, "https://auth.example.com:8443");
    assert_eq!(jwks.refetch_interval, std::time::Duration::from_secs(30));
    assert_eq!(jwks.cache_ttl, std::time::Duration::from_secs(600));

    let config = load(
        "release",
        &[
            db,
            ("BETTER_AUTH_SECRET", GOOD_SECRET),
            ("BETTER_AUTH_URL", "https://app.example.com"),
            ("BETTER_AUTH_JWKS_URL", "https://keys.example.com/jwks.json"),
            ("JWT_AUDIENCE", "todo-api"),
            ("JWKS_REFETCH_SECS", "5"),
            ("JWKS_CACHE_TTL_SECS", "60"),
        ],
    )
    .unwrap();
    assert!(config.auth.secret.is_some(), "both modes at once");
    let jwks = config.auth.jwks.unwrap();
    assert_eq!(jwks.url, "https://keys.example.com/jwks.json");
    assert_eq!(jwks.issuer, "https://app.example.com");
    assert_eq!(jwks.audience, "todo-api");
    assert_eq!(jwks.refetch_interval, std::time::Duration::from_secs(5));
    assert_eq!(jwks.cache_ttl, std::time::Duration::from_secs(60));

    assert!(
        load("debug", &[]).unwrap().auth.jwks.is_none(),
        "JWKS is off by default"
    );
}

#[test]
fn jwks_settings_are_checked() {
    let db = ("DATABASE_URL", "postgres://u:pw@db.example.com/app");
    refused("release", &[db], "BETTER_AUTH_URL");
    refused(
        "release",
        &[db, ("BETTER_AUTH_URL", "auth.example.com")],
        "BETTER_AUTH_URL",
    );
    refused(
        "release",
        &[db, ("BETTER_AUTH_URL", "ftp://auth.example.com")],
        "BETTER_AUTH_URL",
    );
    refused(
        "release",
        &[
            db,
            ("BETTER_AUTH_JWKS_URL", "https://keys.example.com/jwks"),
        ],
        "JWT_ISSUER",
    );
    refused(
        "release",
        &[
            db,
            ("BETTER_AUTH_URL", "https://a.example.com"),
            ("JWKS_REFETCH_SECS", "0"),
        ],
        "JWKS_REFETCH_SECS",
    );
    refused(
        "release",
        &[
            db,
            ("BETTER_AUTH_URL", "https://a.example.com"),
            ("JWKS_CACHE_TTL_SECS", "soon"),
        ],
        "JWKS_CACHE_TTL_SECS",
    );
}

#[test]
fn session_settings_are_checked() {
    let db = ("DATABASE_URL", "postgres://u:pw@db.example.com/app");
    let on = ("BETTER_AUTH_SESSIONS", "on");
    // Sessions alone are a way to verify tokens: release needs no secret then.
    let config = load("release", &[db, on]).expect("sessions alone are enough");
    let sessions = config.auth.sessions.expect("sessions on");
    assert_eq!(sessions.table, "session");
    assert_eq!(sessions.cache_ttl, std::time::Duration::from_secs(5));
    assert!(
        sessions.database_url.is_none(),
        "the service's own database"
    );
    assert!(config.auth.secret.is_none());
    let config = load(
        "release",
        &[
            db,
            on,
            ("BETTER_AUTH_SESSION_TABLE", "auth.sessions"),
            ("BETTER_AUTH_SESSION_CACHE_SECS", "0"),
            (
                "BETTER_AUTH_DATABASE_URL",
                "postgres://ba:pw@db.example.com/auth",
            ),
        ],
    )
    .unwrap();
    let sessions = config.auth.sessions.unwrap();
    assert_eq!(sessions.table, "auth.sessions");
    assert!(sessions.cache_ttl.is_zero());
    assert!(sessions.database_url.is_some());
    assert!(load(
        "release",
        &[
            db,
            ("BETTER_AUTH_SESSIONS", "off"),
            ("BETTER_AUTH_SECRET", GOOD_SECRET)
        ]
    )
    .unwrap()
    .auth
    .sessions
    .is_none());

    refused(
        "release",
        &[db, ("BETTER_AUTH_SESSIONS", "xml")],
        "BETTER_AUTH_SESSIONS",
    );
    refused(
        "release",
        &[
            db,
            on,
            (
                "BETTER_AUTH_DATABASE_URL",
                "mysql://u:pw@db.example.com/auth",
            ),
        ],
        "BETTER_AUTH_DATABASE_URL",
    );
    for table in [
        "session; DROP TABLE tasks",
        "a.b.c",
        "1session",
        "\"session\"",
    ] {
        refused(
            "release",
            &[db, on, ("BETTER_AUTH_SESSION_TABLE", table)],
            "BETTER_AUTH_SESSION_TABLE",
        );
    }
    for secs in ["-1", "eighty", "86401"] {
        refused(
            "release",
            &[db, on, ("BETTER_AUTH_SESSION_CACHE_SECS", secs)],
            "BETTER_AUTH_SESSION_CACHE_SECS",
        );
    }
}

#[test]
fn event_settings_are_checked() {
    use std::time::Duration;
    let db = ("DATABASE_URL", "postgres://u:pw@db.example.com/app");
    let secret = ("BETTER_AUTH_SECRET", GOOD_SECRET);
    let events = load("release", &[db, secret]).unwrap().events;
    assert_eq!(events.poll, Duration::from_millis(1000));
    assert_eq!(events.retention, Duration::from_secs(24 * 3600));
    for (text, secs) in [
        ("90m", 5400),
        ("2d", 172_800),
        ("3600", 3600),
        ("3600s", 3600),
        ("1h", 3600),
    ] {
        let events = load("release", &[db, secret, ("EVENTS_RETENTION", text)])
            .unwrap()
            .events;
        assert_eq!(events.retention, Duration::from_secs(secs), "{text}");
    }
    let events = load("release", &[db, secret, ("EVENTS_POLL_MS", "250")])
        .unwrap()
        .events;
    assert_eq!(events.poll, Duration::from_millis(250));
    for retention in ["eighty", "0s", "-1h", "3w"] {
        refused(
            "release",
            &[db, secret, ("EVENTS_RETENTION", retention)],
            "EVENTS_RETENTION",
        );
    }
    refused(
        "release",
        &[db, secret, ("EVENTS_POLL_MS", "5")],
        "EVENTS_POLL_MS",
    );
    assert!(load("release", &[db, secret])
        .unwrap()
        .database
        .direct_url
        .is_none());
    // Prepared statements: auto by default; on, off; anything else named.
    use todo_api::config::PreparedStatements;
    assert_eq!(
        load("release", &[db, secret])
            .unwrap()
            .database
            .prepared_statements,
        PreparedStatements::Auto
    );
    assert_eq!(
        load(
            "release",
            &[db, secret, ("DATABASE_PREPARED_STATEMENTS", "off")]
        )
        .unwrap()
        .database
        .prepared_statements,
        PreparedStatements::Off
    );
    refused(
        "release",
        &[db, secret, ("DATABASE_PREPARED_STATEMENTS", "maybe")],
        "DATABASE_PREPARED_STATEMENTS",
    );
    // The direct URL, or its older name; the newer one wins.
    let direct = "postgres://u:pw@direct.example.com/app";
    for name in ["DATABASE_DIRECT_URL", "DATABASE_LISTEN_URL"] {
        let database = load("release", &[db, secret, (name, direct)])
            .unwrap()
            .database;
        assert!(database.direct_url.is_some(), "{name}");
        refused(
            "release",
            &[db, secret, (name, "mysql://db.example.com/x")],
            name,
        );
    }
}

#[test]
fn cookie_settings_are_checked() {
    let db = ("DATABASE_URL", "postgres://u:pw@db.example.com/app");
    let secret = ("BETTER_AUTH_SECRET", GOOD_SECRET);
    let sessions = ("BETTER_AUTH_SESSIONS", "on");
    let cookies = ("BETTER_AUTH_COOKIES", "on");
    assert_eq!(
        load("release", &[db, secret, sessions])
            .unwrap()
            .auth
            .cookie_prefix,
        None
    );
    assert_eq!(
        load("release", &[db, secret, sessions, cookies])
            .unwrap()
            .auth
            .cookie_prefix
            .as_deref(),
        Some("better-auth")
    );
    assert_eq!(
        load(
            "release",
            &[
                db,
                secret,
                sessions,
                cookies,
                ("BETTER_AUTH_COOKIE_PREFIX", "my-app")
            ]
        )
        .unwrap()
        .auth
        .cookie_prefix
        .as_deref(),
        Some("my-app")
    );
    // The cookie holds a session token, signed with the secret: both are needed.
    refused("release", &[db, secret, cookies], "BETTER_AUTH_SESSIONS");
    refused(
        "release",
        &[
            db,
            sessions,
            cookies,
            ("BETTER_AUTH_URL", "https://auth.example.com"),
        ],
        "BETTER_AUTH_SECRET",
    );
    for prefix in ["my app", "a;b", "x=y"] {
        refused(
            "release",
            &[
                db,
                secret,
                sessions,
                cookies,
                ("BETTER_AUTH_COOKIE_PREFIX", prefix),
            ],
            "BETTER_AUTH_COOKIE_PREFIX",
        );
    }
}

#[test]
fn list_envelope_and_sqlite_synchronous_take_only_their_values() {
    let db = ("DATABASE_URL", "sqlite://data/x.db");
    let secret = ("BETTER_AUTH_SECRET", GOOD_SECRET);
    for (value, key) in [
        (None, None),
        (Some("array"), None),
        (Some("tasks"), Some("tasks")),
        (Some("Items"), Some("items")),
        (Some("data"), Some("data")),
    ] {
        let mut vars = vec![db, secret];
        vars.extend(value.map(|v| ("LIST_ENVELOPE", v)));
        assert_eq!(
            load("release", &vars).unwrap().list_envelope,
            key,
            "{value:?}"
        );
    }
    refused(
        "release",
        &[db, secret, ("LIST_ENVELOPE", "results")],
        "LIST_ENVELOPE",
    );
    for (value, level) in [
        (None, SqliteDurability::Full),
        (Some("normal"), SqliteDurability::Normal),
        (Some("FULL"), SqliteDurability::Full),
    ] {
        let mut vars = vec![db, secret];
        vars.extend(value.map(|v| ("SQLITE_SYNCHRONOUS", v)));
        assert_eq!(
            load("release", &vars).unwrap().database.sqlite_synchronous,
            level,
            "{value:?}"
        );
    }
    refused(
        "release",
        &[db, secret, ("SQLITE_SYNCHRONOUS", "off")],
        "SQLITE_SYNCHRONOUS",
    );
}

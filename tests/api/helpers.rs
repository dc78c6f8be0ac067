//! The test harness: one fresh database per test (a temporary SQLite file, or a new
//! PostgreSQL database on the server named by `TEST_DATABASE_URL`), the service built from
//! the real figment, and helpers that speak the API.

use std::sync::Once;

use rocket::figment::providers::Serialized;
use rocket::figment::Figment;
use rocket::http::{ContentType, Header, Method, Status};
use rocket::local::asynchronous::Client;
use serde_json::Value;
use sqlx::Connection;
pub use todo_api::db::AppPool;

/// Runs `$body` with `$p` bound to the concrete sqlx pool of either backend.
macro_rules! on_pool {
    ($pool:expr, |$p:ident| $body:expr) => {
        match $pool {
            $crate::helpers::AppPool::Sqlite($p) => $body,
            $crate::helpers::AppPool::Postgres($p) => $body,
        }
    };
}
pub(crate) use on_pool;

/// The HS256 secret every test service uses.
pub const TEST_SECRET: &str = "test-secret-that-is-long-enough-for-hs256-0123456789";

/// Which database a test case runs on: the service's own.
pub use todo_api::db::Backend;

/// The cases of one test body: SQLite and PostgreSQL, and with `pooler` a third,
/// `pgbouncer`: PostgreSQL reached through PgBouncer in transaction mode
/// (`TEST_PGBOUNCER_URL`), the service told nothing about it (it finds out itself) except
/// the direct URL for migrations and `LISTEN`. `app` bodies get a `TestApp` on a fresh
/// database; `backend` bodies get the `Backend` and start the service themselves.
macro_rules! test_cases {
    ($pooler:ident, $kind:ident; $(async fn $name:ident($arg:ident) $body:block)*) => {$(
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[rocket::async_test]
            async fn sqlite() {
                $crate::helpers::test_case!($kind, $arg, $crate::helpers::Backend::Sqlite, $body);
            }

            #[rocket::async_test]
            async fn postgres() {
                if $crate::helpers::postgres_url().is_none() { return; }
                $crate::helpers::test_case!($kind, $arg, $crate::helpers::Backend::Postgres, $body);
            }

            $crate::helpers::pooler_case!($pooler, $kind, $arg, $body);
        }
    )*};
}
pub(crate) use test_cases;

/// One case's body: `$arg` bound to a `TestApp` on a fresh database of `$backend`, or to
/// the backend itself.
macro_rules! test_case {
    (app, $arg:ident, $backend:expr, $body:block) => {
        let $arg = $crate::helpers::TestApp::spawn($backend).await;
        $body
    };
    (backend, $arg:ident, $backend:expr, $body:block) => {
        let $arg = $backend;
        $body
    };
}
pub(crate) use test_case;

/// The `pgbouncer` case, for `pooler` test sets.
macro_rules! pooler_case {
    (pooler, $kind:ident, $arg:ident, $body:block) => {
        #[rocket::async_test]
        async fn pgbouncer() {
            if $crate::helpers::postgres_url().is_none() {
                return;
            }
            if $crate::helpers::pgbouncer_url().is_none() {
                return;
            }
            $crate::helpers::THROUGH_POOLER
                .scope(true, async move {
                    $crate::helpers::test_case!(
                        $kind,
                        $arg,
                        $crate::helpers::Backend::Postgres,
                        $body
                    );
                })
                .await
        }
    };
    (direct, $kind:ident, $arg:ident, $body:block) => {};
}
pub(crate) use pooler_case;

/// Runs each test body once on SQLite and once on PostgreSQL, each in its own database.
macro_rules! on_both_databases {
    ($($tests:tt)*) => { $crate::helpers::test_cases!(direct, app; $($tests)*); };
}
pub(crate) use on_both_databases;

/// Like `on_both_databases!`, plus the `pgbouncer` case (see `test_cases!`).
macro_rules! on_every_database {
    ($($tests:tt)*) => { $crate::helpers::test_cases!(pooler, app; $($tests)*); };
}
pub(crate) use on_every_database;

/// Like `on_both_databases!`, for tests that start the service themselves (real sockets).
macro_rules! on_both_backends {
    ($($tests:tt)*) => { $crate::helpers::test_cases!(direct, backend; $($tests)*); };
}
pub(crate) use on_both_backends;

/// Like `on_both_backends!`, plus the `pgbouncer` case (see `test_cases!`).
macro_rules! on_every_backend {
    ($($tests:tt)*) => { $crate::helpers::test_cases!(pooler, backend; $($tests)*); };
}
pub(crate) use on_every_backend;

tokio::task_local! {
    /// Set for a test's `pgbouncer` case: the PostgreSQL databases it creates are served
    /// to the service through the pooler.
    pub static THROUGH_POOLER: bool;
}

fn init_tracing() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            todo_api::telemetry::init(&todo_api::config::LogConfig {
                level: std::env::var("TEST_LOG").unwrap_or_else(|_| "debug".into()),
                format: todo_api::config::LogFormat::Text,
            });
        }
    });
}

/// The PostgreSQL server's URL. Without one the PostgreSQL case fails, unless
/// `SKIP_POSTGRES=1` asked to skip it: then `None`, and the skip is recorded for
/// `scripts/test` to count (a passing test's output is never shown, so a skip must not
/// hide there).
pub fn postgres_url() -> Option<String> {
    match std::env::var("TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var("REQUIRE_POSTGRES").as_deref() == Ok("1") => {
            panic!("REQUIRE_POSTGRES=1 but TEST_DATABASE_URL is not set")
        }
        _ if std::env::var("SKIP_POSTGRES").as_deref() == Ok("1") => {
            record_skip();
            None
        }
        _ => panic!(
            "TEST_DATABASE_URL is not set: run scripts/test (it starts a PostgreSQL), \
             or set SKIP_POSTGRES=1 to skip the PostgreSQL cases"
        ),
    }
}

/// A PgBouncer in transaction mode in front of the PostgreSQL server (any database name
/// passes through). Like [`postgres_url`]: without one the case fails, unless
/// `SKIP_POSTGRES=1`, or PgBouncer is not installed and `REQUIRE_POSTGRES` is not set.
pub fn pgbouncer_url() -> Option<String> {
    match std::env::var("TEST_PGBOUNCER_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var("REQUIRE_POSTGRES").as_deref() == Ok("1") => {
            panic!("REQUIRE_POSTGRES=1 but TEST_PGBOUNCER_URL is not set")
        }
        _ => {
            record_skip();
            None
        }
    }
}

/// `database_url`'s database, reached through the pooler at `pooler_url`.
pub fn through_pooler(database_url: &str, pooler_url: &str) -> String {
    let database = url::Url::parse(database_url).expect("a database URL");
    let mut pooled = url::Url::parse(pooler_url).expect("a pooler URL");
    pooled.set_path(database.path());
    pooled.to_string()
}

fn record_skip() {
    use std::io::Write as _;
    let Some(path) = std::env::var_os("POSTGRES_SKIP_LOG") else {
        return;
    };
    let name = std::thread::current().name().unwrap_or("a test").to_owned();
    if let Ok(mut log) = std::fs::OpenOptions::new().append(true).open(path) {
        let _ = writeln!(log, "{name}");
    }
}

/// A test's database: its URL, and what goes with it when the test ends (the SQLite file's
/// folder, or the PostgreSQL database, dropped so a long run cannot fill the disk).
pub struct TestDatabase {
    /// The database itself (what a test's own SQL connects to).
    pub url: String,
    /// The URL the service gets, when not `url`: the same database through PgBouncer.
    pub pooled_url: Option<String>,
    owned: Owned,
}

enum Owned {
    Nothing,
    Folder(#[allow(dead_code)] tempfile::TempDir),
    Postgres { server: String, name: String },
}

impl TestDatabase {
    /// A new empty database of `backend` (PostgreSQL must be configured).
    pub async fn fresh(backend: Backend) -> TestDatabase {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                TestDatabase {
                    url: format!("sqlite://{}/todo.db", dir.path().display()),
                    pooled_url: None,
                    owned: Owned::Folder(dir),
                }
            }
            Backend::Postgres => {
                let server = postgres_url().expect("TEST_DATABASE_URL");
                let mut database = Self::create_postgres(&server, "").await;
                if THROUGH_POOLER.try_with(|on| *on).unwrap_or(false) {
                    let bouncer = pgbouncer_url().expect("TEST_PGBOUNCER_URL");
                    database.pooled_url = Some(through_pooler(&database.url, &bouncer));
                }
                database
            }
        }
    }

    /// A new database on the PostgreSQL server at `server`, `options` appended to its
    /// `CREATE DATABASE`.
    pub async fn create_postgres(server: &str, options: &str) -> TestDatabase {
        let name = format!("t_{}", uuid::Uuid::new_v4().simple());
        let mut conn = sqlx::PgConnection::connect(server)
            .await
            .expect("connect to TEST_DATABASE_URL");
        sqlx::query(&format!("CREATE DATABASE {name} {options}"))
            .execute(&mut conn)
            .await
            .expect("create test database");
        conn.close().await.ok();
        let mut url = url::Url::parse(server).expect("TEST_DATABASE_URL is a URL");
        url.set_path(&format!("/{name}"));
        TestDatabase {
            url: url.to_string(),
            pooled_url: None,
            owned: Owned::Postgres {
                server: server.to_owned(),
                name,
            },
        }
    }

    /// A database another owner keeps, as a second instance (or a restart) uses it.
    pub fn existing(url: &str) -> TestDatabase {
        TestDatabase {
            url: url.to_owned(),
            pooled_url: None,
            owned: Owned::Nothing,
        }
    }

    /// The figment a service on this database starts from (see [`base_figment`]).
    pub fn figment(&self) -> Figment {
        match &self.pooled_url {
            None => base_figment(&self.url),
            Some(pooled) => base_figment(pooled)
                .merge(Serialized::global("databases.todo.direct_url", &self.url)),
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let Owned::Postgres { server, name } = &self.owned else {
            return;
        };
        let (server, name) = (server.clone(), name.clone());
        // Drop runs inside the test's runtime, which cannot be blocked on: a thread with a
        // runtime of its own drops the database (FORCE ends the service's leftover sessions).
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let mut conn = sqlx::PgConnection::connect(&server).await?;
                sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut conn)
                    .await?;
                conn.close().await
            })?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) && !std::thread::panicking() {
            panic!("the test database {} was not dropped", self.url);
        }
    }
}

/// The figment every test service starts from: Rocket.toml's debug profile, no process
/// environment, the test secret and `url`.
pub fn base_figment(url: &str) -> Figment {
    todo_api::config::figment_with_env(|_| None)
        .expect("figment")
        .merge(Serialized::global("databases.todo.url", url))
        .merge(Serialized::global("databases.todo.min_connections", 0))
        .merge(Serialized::global("databases.todo.max_connections", 10))
        .merge(Serialized::global("auth.secret", TEST_SECRET))
        // Off unless a test turns it on: the debug profile's accounts server implies
        // session tokens and cookies, which most tests leave off.
        .merge(Serialized::global("auth.server", false))
        .merge(Serialized::global("shutdown.ctrlc", false))
        // High enough for every test's requests, so the limiter runs without refusing.
        .merge(Serialized::global("rate_limit.per_minute", 1_000_000))
}

/// A token of three base64url parts with the given header, claims and signature text.
pub fn unsigned(header: &Value, claims: &Value, signature: &str) -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        signature
    )
}

/// A service under test with its own database.
pub struct TestApp {
    pub client: Client,
    pub db_url: String,
    // Declared after the client, so the service stops before its database goes.
    _database: TestDatabase,
}

/// A response, read whole.
pub struct TestResponse {
    pub status: Status,
    pub headers: Vec<(String, String)>,
    pub text: String,
}

impl TestResponse {
    /// The body as JSON (`Value::Null` when empty or not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or(Value::Null)
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The contract's `error_code`, after checking the whole error shape.
    pub fn error_code(&self) -> String {
        assert_error_shape(&self.json());
        self.json()["error_code"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

/// Asserts `body` is exactly `{detail, error_code, field_errors}` with the right types.
pub fn assert_error_shape(body: &Value) {
    let object = body
        .as_object()
        .unwrap_or_else(|| panic!("error body is not an object: {body}"));
    let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        ["detail", "error_code", "field_errors"],
        "error body {body}"
    );
    assert!(
        object["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{body}"
    );
    assert!(
        object["error_code"].as_str().is_some_and(|c| !c.is_empty()),
        "{body}"
    );
    assert!(object["field_errors"].is_object(), "{body}");
}

impl TestApp {
    /// A service a test ignited itself, on `database`.
    pub fn from_client(client: Client, database: TestDatabase) -> TestApp {
        TestApp {
            client,
            db_url: database.url.clone(),
            _database: database,
        }
    }

    /// A service on a fresh database of `backend` (PostgreSQL must be configured).
    pub async fn spawn(backend: Backend) -> TestApp {
        Self::spawn_with(backend, |figment| figment).await
    }

    /// A service on a fresh database, with `adjust` applied to its figment.
    pub async fn spawn_with(backend: Backend, adjust: impl FnOnce(Figment) -> Figment) -> TestApp {
        Self::spawn_on(TestDatabase::fresh(backend).await, adjust).await
    }

    /// A service on a database the test prepared (or another service's, as after a
    /// restart: [`TestDatabase::existing`]), with `adjust` applied to its figment.
    pub async fn spawn_on(
        database: TestDatabase,
        adjust: impl FnOnce(Figment) -> Figment,
    ) -> TestApp {
        init_tracing();
        let figment = adjust(database.figment());
        let client = Client::tracked(todo_api::rocket(figment))
            .await
            .expect("the service ignites");
        TestApp {
            client,
            db_url: database.url.clone(),
            _database: database,
        }
    }

    /// A valid token for `user`, valid for an hour.
    pub fn token(&self, user: &str) -> String {
        todo_api::auth::mint_hs256(TEST_SECRET, user, 3600).expect("token")
    }

    /// Requests as `user` (with a valid token), to paths under `/api/{user}/`
    /// (`app.as_user("alice").get("tasks")`) or to whole paths.
    pub fn as_user(&self, user: &str) -> Caller<'_> {
        Caller {
            app: self,
            user: Some(user.to_owned()),
            token: Some(self.token(user)),
        }
    }

    /// Requests that carry `token` as a bearer token, to whole paths.
    pub fn with_token(&self, token: &str) -> Caller<'_> {
        self.bearer(Some(token))
    }

    /// Requests that carry no credentials, to whole paths.
    pub fn anonymous(&self) -> Caller<'_> {
        self.bearer(None)
    }

    /// Requests with a bearer token when there is one, to whole paths.
    pub fn bearer(&self, token: Option<&str>) -> Caller<'_> {
        Caller {
            app: self,
            user: None,
            token: token.map(str::to_owned),
        }
    }

    /// Creates a task for `user`, asserting 201, and returns it.
    pub async fn create_task(&self, user: &str, body: Value) -> Value {
        let response = self.as_user(user).post("tasks", &body).await;
        assert_eq!(response.status, Status::Created, "{}", response.text);
        response.json()
    }
}

/// Reads a local response whole.
pub async fn read(response: rocket::local::asynchronous::LocalResponse<'_>) -> TestResponse {
    let status = response.status();
    let headers = response
        .headers()
        .iter()
        .map(|h| (h.name().to_string(), h.value().to_string()))
        .collect();
    let text = response.into_string().await.unwrap_or_default();
    TestResponse {
        status,
        headers,
        text,
    }
}

/// A raw HTTP/1.1 exchange over a real socket: returns status, headers and body.
pub async fn raw_http(port: u16, request: &str) -> (u16, Vec<(String, String)>, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.expect("read");
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers, body.to_owned())
}

/// A service listening on a real loopback socket.
pub struct LiveServer {
    pub port: u16,
    pub db_url: String,
    shutdown: rocket::Shutdown,
    task: tokio::task::JoinHandle<()>,
    _database: TestDatabase,
}

impl LiveServer {
    /// Launches the service on an ephemeral port.
    pub async fn start(backend: Backend, adjust: impl FnOnce(Figment) -> Figment) -> LiveServer {
        Self::start_on(TestDatabase::fresh(backend).await, adjust).await
    }

    /// Launches the service on an existing database, as a second instance would run.
    pub async fn start_on(
        database: TestDatabase,
        adjust: impl FnOnce(Figment) -> Figment,
    ) -> LiveServer {
        init_tracing();
        let db_url = database.url.clone();
        let figment = adjust(
            database
                .figment()
                .merge(Serialized::global("port", 0))
                .merge(Serialized::global("address", "127.0.0.1")),
        );
        let (port_tx, port_rx) = tokio::sync::oneshot::channel();
        let port_tx = std::sync::Mutex::new(Some(port_tx));
        let rocket = todo_api::rocket(figment).attach(rocket::fairing::AdHoc::on_liftoff(
            "test port",
            move |rocket| {
                Box::pin(async move {
                    if let Some(tx) = port_tx.lock().ok().and_then(|mut tx| tx.take()) {
                        let _ = tx.send(rocket.config().port);
                    }
                })
            },
        ));
        let rocket = rocket.ignite().await.expect("the service ignites");
        let shutdown = rocket.shutdown();
        let task = tokio::spawn(async move {
            let _ = rocket.launch().await;
        });
        let port = port_rx.await.expect("the service lifts off");
        LiveServer {
            port,
            db_url,
            shutdown,
            task,
            _database: database,
        }
    }

    /// Stops the service and waits for it.
    pub async fn stop(self) {
        self.shutdown.notify();
        let _ = self.task.await;
    }
}

impl TestApp {
    /// A direct connection pool to this test's database, for arranging data the API
    /// cannot set (timestamps, rows from before a migration).
    pub async fn pool(&self) -> AppPool {
        pool_of(&self.db_url).await
    }
}

/// Applies the migrations of `pool`'s dialect that come before `version`, as an older
/// release left its database.
pub async fn migrate_before(pool: &AppPool, version: i64) {
    let before = |migrator: sqlx::migrate::Migrator| {
        let kept: Vec<_> = migrator
            .migrations
            .iter()
            .filter(|m| m.version < version)
            .cloned()
            .collect();
        sqlx::migrate::Migrator {
            migrations: std::borrow::Cow::Owned(kept),
            ..migrator
        }
    };
    match pool {
        AppPool::Sqlite(p) => before(sqlx::migrate!("./migrations/sqlite")).run(p).await,
        AppPool::Postgres(p) => before(sqlx::migrate!("./migrations/postgres")).run(p).await,
    }
    .unwrap();
}

/// A direct connection pool to the database at `db_url` (a SQLite file is created if
/// missing), for arranging data before or beside a service.
pub async fn pool_of(db_url: &str) -> AppPool {
    match Backend::from_url(db_url).expect("a sqlite:// or postgres:// URL") {
        Backend::Sqlite => {
            use std::str::FromStr as _;
            let options = sqlx::sqlite::SqliteConnectOptions::from_str(db_url)
                .unwrap()
                .create_if_missing(true);
            AppPool::Sqlite(sqlx::SqlitePool::connect_with(options).await.unwrap())
        }
        Backend::Postgres => AppPool::Postgres(sqlx::PgPool::connect(db_url).await.unwrap()),
    }
}

/// Holds the SQLite database's write lock until dropped, as another process writing would.
pub async fn hold_sqlite_write_lock(db_url: &str) -> sqlx::SqliteConnection {
    let mut conn = sqlx::SqliteConnection::connect(db_url).await.unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut conn)
        .await
        .unwrap();
    conn
}

/// Requests with one set of credentials (see [`TestApp::as_user`], [`TestApp::with_token`],
/// [`TestApp::anonymous`]).
pub struct Caller<'a> {
    app: &'a TestApp,
    user: Option<String>,
    token: Option<String>,
}

impl Caller<'_> {
    /// A path that starts with `/` is taken as it is; any other is under `/api/{user}/`.
    fn path(&self, relative: &str) -> String {
        match &self.user {
            _ if relative.starts_with('/') => relative.to_owned(),
            Some(user) => format!("/api/{user}/{relative}"),
            None => panic!("{relative:?} needs a user: call as_user, or give a whole path"),
        }
    }

    /// `method` on `path`, with an optional JSON body and extra headers.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> TestResponse {
        let mut request = self.app.client.req(method, self.path(path));
        for (name, value) in headers {
            request.add_header(Header::new(name.to_string(), value.to_string()));
        }
        if let Some(token) = &self.token {
            request.add_header(Header::new("Authorization", format!("Bearer {token}")));
        }
        if let Some(body) = body {
            request.add_header(ContentType::JSON);
            request.set_body(body.to_string());
        }
        read(request.dispatch().await).await
    }

    /// `GET`.
    pub async fn get(&self, path: &str) -> TestResponse {
        self.send(Method::Get, path, None, &[]).await
    }

    /// `POST` with a JSON body.
    pub async fn post(&self, path: &str, body: &Value) -> TestResponse {
        self.send(Method::Post, path, Some(body), &[]).await
    }

    /// `PUT` with a JSON body.
    pub async fn put(&self, path: &str, body: &Value) -> TestResponse {
        self.send(Method::Put, path, Some(body), &[]).await
    }

    /// `PATCH` with an optional JSON body.
    pub async fn patch(&self, path: &str, body: Option<&Value>) -> TestResponse {
        self.send(Method::Patch, path, body, &[]).await
    }

    /// `DELETE`.
    pub async fn delete(&self, path: &str) -> TestResponse {
        self.send(Method::Delete, path, None, &[]).await
    }
}

/// The binary serving on a free loopback port, its stdout collected.
pub struct Served {
    pub child: std::process::Child,
    pub port: u16,
    pub stdout: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Served {
    pub async fn start(db_url: &str, extra_env: &[(&str, &str)]) -> Served {
        Self::start_in(None, db_url, extra_env).await
    }

    /// [`Served::start`] in the folder `dir` (the binary's own Rocket.toml is not there).
    pub async fn start_in(
        dir: Option<&std::path::Path>,
        db_url: &str,
        extra_env: &[(&str, &str)],
    ) -> Served {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_todo-api"));
        if let Some(dir) = dir {
            command.current_dir(dir);
        }
        let mut child = command
            .env_clear()
            .env("ROCKET_PROFILE", "release")
            .env("ROCKET_ADDRESS", "127.0.0.1")
            .env("PORT", port.to_string())
            .env("DATABASE_URL", db_url)
            .env("BETTER_AUTH_SECRET", TEST_SECRET)
            .env("LOG_FORMAT", "json")
            .env("SHUTDOWN_GRACE_SECS", "5")
            .envs(extra_env.iter().copied())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let mut pipe = child.stdout.take().unwrap();
        let sink = stdout.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = std::io::Read::read(&mut pipe, &mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let started = std::time::Instant::now();
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                started.elapsed() < std::time::Duration::from_secs(20),
                "the service did not start"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        Served {
            child,
            port,
            stdout,
        }
    }

    pub fn log_lines(&self) -> Vec<Value> {
        self.stdout
            .lock()
            .unwrap()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    pub async fn wait(mut self, limit: std::time::Duration) -> (std::process::ExitStatus, String) {
        let started = std::time::Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                return (status, self.stdout.lock().unwrap().clone());
            }
            assert!(
                started.elapsed() < limit,
                "the service did not exit within {limit:?}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

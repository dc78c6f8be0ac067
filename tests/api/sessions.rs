//! Better Auth session tokens: looked up in Better Auth's session table on the shared
//! database. The first group writes the table itself, in the shapes Better Auth's adapters
//! create; the second runs a real Better Auth server (scripts/better-auth) on the test's
//! database and signs users up, in and out over its HTTP API.

use std::io::BufRead as _;
use std::time::Duration;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use rocket::figment::providers::Serialized;
use rocket::figment::Figment;
use rocket::http::Status;
use serde_json::{json, Value};
use sha2::Sha256;

use crate::helpers::*;

/// Session tokens on, with a cache of `cache_secs`.
fn sessions_on(cache_secs: u64) -> impl FnOnce(Figment) -> Figment {
    move |figment| {
        figment
            .merge(Serialized::global("auth.sessions", true))
            .merge(Serialized::global("auth.session_cache_secs", cache_secs))
    }
}

/// The cookie form of `token`: `TOKEN.SIGNATURE`, HMAC-SHA256 with the shared secret in
/// standard base64, as Better Auth signs its session cookie.
fn signed(token: &str, secret: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(token.as_bytes());
    let signature = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    format!("{token}.{signature}")
}

fn random_token() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// A session table's layout: its name, its user and expiry columns.
struct Layout {
    table: &'static str,
    user: &'static str,
    expires: &'static str,
}

/// Better Auth's default: `session` with camelCase columns.
const CAMEL: Layout = Layout {
    table: "session",
    user: "userId",
    expires: "expiresAt",
};

async fn execute(db_url: &str, sql: &str) {
    crate::helpers::on_pool!(&pool_of(db_url).await, |p| drop(
        sqlx::query(sql).execute(p).await.unwrap()
    ));
}

/// A service with session tokens on (cache `cache_secs`) on a fresh database that already
/// has a session table of `layout`, as when Better Auth's migrations ran first.
async fn spawn_with_table(
    backend: Backend,
    layout: &Layout,
    epoch_ms: bool,
    cache_secs: u64,
) -> TestApp {
    let database = TestDatabase::fresh(backend).await;
    create_table(&database.url, layout, epoch_ms).await;
    let table = layout.table;
    TestApp::spawn_on(database, move |figment| {
        sessions_on(cache_secs)(figment).merge(Serialized::global("auth.session_table", table))
    })
    .await
}

/// Creates the table as Better Auth's migrations do: `timestamptz` on PostgreSQL; on SQLite
/// a `date` column holding ISO text (Kysely), or with `epoch_ms` whole milliseconds (Prisma).
async fn create_table(db_url: &str, layout: &Layout, epoch_ms: bool) {
    let Layout {
        table,
        user,
        expires,
    } = layout;
    let expires_type = match (db_url.starts_with("sqlite"), epoch_ms) {
        (false, _) => "timestamptz",
        (true, false) => "date",
        (true, true) => "integer",
    };
    execute(
        db_url,
        &format!(
            "CREATE TABLE \"{table}\" (\"id\" text PRIMARY KEY, \"{expires}\" {expires_type} NOT NULL, \
             \"token\" text NOT NULL UNIQUE, \"{user}\" text NOT NULL)"
        ),
    )
    .await;
}

/// Writes a session of `user` with `token`, expiring `expires_in` seconds from now (negative:
/// already expired), in the representation `create_table` chose.
async fn insert_session(db_url: &str, layout: &Layout, token: &str, user: &str, expires_in: i64) {
    let Layout {
        table,
        user: user_column,
        expires,
    } = layout;
    let at = chrono::Utc::now() + chrono::Duration::seconds(expires_in);
    let pool = pool_of(db_url).await;
    let sql = format!(
        "INSERT INTO \"{table}\" (\"id\", \"{expires}\", \"token\", \"{user_column}\") VALUES ($1, $2, $3, $4)"
    );
    match &pool {
        AppPool::Postgres(p) => {
            sqlx::query(&sql)
                .bind(random_token())
                .bind(at)
                .bind(token)
                .bind(user)
                .execute(p)
                .await
                .unwrap();
        }
        AppPool::Sqlite(p) => {
            let integer: bool = sqlx::query_scalar(&format!(
                "SELECT type = 'integer' FROM pragma_table_info('{table}') WHERE name = '{expires}'"
            ))
            .fetch_one(p)
            .await
            .unwrap();
            let query = sqlx::query(&sql).bind(random_token());
            let query = if integer {
                query.bind(at.timestamp_millis())
            } else {
                query.bind(at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
            };
            query.bind(token).bind(user).execute(p).await.unwrap();
        }
    }
}

async fn status_of(app: &TestApp, path: &str, token: &str) -> TestResponse {
    app.with_token(token).get(path).await
}

/// `todo_api_session_lookups_total` from `/metrics`: cached, database, busy, unavailable.
async fn lookup_counts(app: &TestApp) -> [u64; 4] {
    let text = app.anonymous().get("/metrics").await.text;
    ["cached", "database", "busy", "unavailable"].map(|outcome| {
        let series = format!("todo_api_session_lookups_total{{outcome=\"{outcome}\"}} ");
        text.lines()
            .find_map(|line| line.strip_prefix(&series))
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no {series}in:\n{text}"))
    })
}

/// PostgreSQL only: SQLite's readers never wait for a writer, so nothing outside the
/// service can hold its lookups.
#[rocket::async_test]
async fn a_lookup_that_finds_no_connection_in_time_is_503_and_counted_busy() {
    use sqlx::Connection as _;
    if postgres_url().is_none() {
        return;
    }
    let app = spawn_with_table(Backend::Postgres, &CAMEL, false, 60).await;
    // The table is found first, so what follows waits only on the lock below.
    let first = status_of(&app, "/api/alice/tasks", &random_token()).await;
    assert_eq!(first.status, Status::Unauthorized);

    let mut locker = sqlx::PgConnection::connect(&app.db_url).await.unwrap();
    sqlx::query("BEGIN").execute(&mut locker).await.unwrap();
    sqlx::query("LOCK TABLE \"session\" IN ACCESS EXCLUSIVE MODE")
        .execute(&mut locker)
        .await
        .unwrap();
    // Four lookups take every connection of the sessions pool and wait on the lock; the
    // fifth finds no connection within its 2 s and is refused, while the others go on.
    let tokens: Vec<String> = (0..5).map(|_| random_token()).collect();
    let lookups = rocket::futures::future::join_all(
        tokens
            .iter()
            .map(|token| async { status_of(&app, "/api/alice/tasks", token).await.status }),
    );
    let release = async {
        tokio::time::sleep(Duration::from_secs(3)).await;
        sqlx::query("ROLLBACK").execute(&mut locker).await.unwrap();
    };
    let (statuses, ()) = tokio::join!(lookups, release);
    let refused = statuses
        .iter()
        .filter(|s| **s == Status::ServiceUnavailable)
        .count();
    let unknown = statuses
        .iter()
        .filter(|s| **s == Status::Unauthorized)
        .count();
    assert_eq!((refused, unknown), (1, 4), "{statuses:?}");
    assert_eq!(lookup_counts(&app).await, [0, 5, 1, 0]);
}

on_every_backend! {
    async fn raw_and_signed_session_tokens_act_for_the_sessions_user(backend) {
        let app = spawn_with_table(backend, &CAMEL, false, 5).await;
        let token = random_token();
        insert_session(&app.db_url, &CAMEL, &token, "alice", 3600).await;

        let cookie = signed(&token, TEST_SECRET);
        let (value, signature) = cookie.split_once('.').unwrap();
        let forms = [
            token.clone(),
            cookie.clone(),
            // As it sits in the cookie, URL-encoded; and as the bearer plugin strips one `=`.
            format!("{value}.{}", urlencoding(signature)),
            format!("{value}.{}", signature.trim_end_matches('=')),
        ];
        for form in &forms {
            let own = status_of(&app, "/api/alice/tasks", form).await;
            assert_eq!(own.status, Status::Ok, "{form}: {}", own.text);
            let other = status_of(&app, "/api/bob/tasks", form).await;
            assert_eq!(other.status, Status::Forbidden, "{form}");
            assert_eq!(other.error_code(), "forbidden");
        }

        // The token-scoped routes take the user from the session.
        let created = app
            .with_token(&token).post("/api/tasks", &json!({"title": "from a session"}))
            .await;
        assert_eq!(created.status, Status::Created, "{}", created.text);
        assert_eq!(created.json()["user_id"], "alice");
        assert!(created.header("Location").unwrap().starts_with("/api/tasks/"));
        let listed = status_of(&app, "/api/tasks", &cookie).await;
        assert_eq!(listed.status, Status::Ok);
        assert_eq!(listed.json()[0]["title"], "from a session");
        let stats = status_of(&app, "/api/dashboard/stats", &token).await;
        assert_eq!(stats.json()["total"], 1, "{}", stats.text);

        // A signature made with another secret, a tampered token, garbage: 401.
        let forged = signed(&token, "another-secret-that-is-long-enough-000000");
        let tampered = format!("{}X.{}", value, signature);
        for bad in [forged.as_str(), tampered.as_str(), "not a token", "x.y", "%zz%zz"] {
            let refused = status_of(&app, "/api/alice/tasks", bad).await;
            assert_eq!(refused.status, Status::Unauthorized, "{bad}");
            assert_eq!(refused.error_code(), "invalid_token");
            assert!(!refused.text.contains(&token), "the token is not echoed");
            let scoped = status_of(&app, "/api/tasks", bad).await;
            assert_eq!(scoped.status, Status::Unauthorized, "{bad}");
        }
    }

    async fn a_session_token_opens_the_event_stream_as_a_header_or_an_access_token(backend) {
        use crate::events::Stream;
        let database = TestDatabase::fresh(backend).await;
        create_table(&database.url, &CAMEL, false).await;
        let token = random_token();
        insert_session(&database.url, &CAMEL, &token, "alice", 3600).await;
        let server = LiveServer::start_on(database, sessions_on(5)).await;
        let port = server.port;
        let cookie = urlencoding(&signed(&token, TEST_SECRET));
        let mut streams = Vec::new();
        for (path, header) in [
            (format!("/api/alice/events?access_token={token}"), String::new()),
            (format!("/api/alice/events?access_token={cookie}"), String::new()),
            ("/api/alice/events".to_owned(), format!("Authorization: Bearer {token}\r\n")),
            (format!("/api/events?access_token={token}"), String::new()),
        ] {
            let mut stream = Stream::open(port, &path, &header).await;
            assert_eq!(stream.status, 200, "{path}");
            assert_eq!(stream.event().await.and_then(|f| f.event).as_deref(), Some("ready"), "{path}");
            streams.push(stream);
        }
        assert_eq!(Stream::open(port, &format!("/api/bob/events?access_token={token}"), "").await.status, 403);
        assert_eq!(Stream::open(port, &format!("/api/alice/events?access_token={}", random_token()), "").await.status, 401);

        let body = json!({"title": "from a session"}).to_string();
        let (status, _, text) = raw_http(port, &format!(
            "POST /api/tasks HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())).await;
        assert_eq!(status, 201, "{text}");
        let created: Value = serde_json::from_str(&text).unwrap();
        for stream in &mut streams {
            let frame = stream.event().await.expect("the create");
            assert_eq!(frame.event.as_deref(), Some("task.created"));
            assert_eq!(frame.json(), created);
        }
        server.stop().await;
    }

    async fn signed_out_and_expired_sessions_are_refused(backend) {
        let app = spawn_with_table(backend, &CAMEL, false, 0).await;
        let (gone, expired, expiring) = (random_token(), random_token(), random_token());
        insert_session(&app.db_url, &CAMEL, &gone, "alice", 3600).await;
        insert_session(&app.db_url, &CAMEL, &expired, "alice", -1).await;
        assert_eq!(status_of(&app, "/api/alice/tasks", &gone).await.status, Status::Ok);
        let refused = status_of(&app, "/api/alice/tasks", &expired).await;
        assert_eq!(refused.status, Status::Unauthorized);
        assert_eq!(refused.error_code(), "invalid_token");

        // Signing out deletes the row: with no cache, the next request is refused.
        execute(&app.db_url, &format!("DELETE FROM \"session\" WHERE \"token\" = '{gone}'")).await;
        assert_eq!(status_of(&app, "/api/alice/tasks", &gone).await.status, Status::Unauthorized);

        // Expiring the row (as Better Auth does on sign-out elsewhere, or time does).
        insert_session(&app.db_url, &CAMEL, &expiring, "alice", 3600).await;
        assert_eq!(status_of(&app, "/api/alice/tasks", &expiring).await.status, Status::Ok);
        let past = if app.db_url.starts_with("sqlite") {
            "'2020-01-01T00:00:00.000Z'"
        } else {
            "now() - interval '1 second'"
        };
        execute(&app.db_url, &format!("UPDATE \"session\" SET \"expiresAt\" = {past} WHERE \"token\" = '{expiring}'")).await;
        assert_eq!(status_of(&app, "/api/alice/tasks", &expiring).await.status, Status::Unauthorized);
    }

    async fn a_verified_session_is_trusted_for_the_cache_time_and_never_past_its_expiry(backend) {
        let app = spawn_with_table(backend, &CAMEL, false, 1).await;
        let (token, short) = (random_token(), random_token());
        insert_session(&app.db_url, &CAMEL, &token, "alice", 3600).await;
        insert_session(&app.db_url, &CAMEL, &short, "alice", 1).await;
        assert_eq!(status_of(&app, "/api/alice/tasks", &token).await.status, Status::Ok);
        assert_eq!(status_of(&app, "/api/alice/tasks", &short).await.status, Status::Ok);
        execute(&app.db_url, "DELETE FROM \"session\"").await;
        // Within the cache time the verdict stands (the table is not asked)...
        assert_eq!(status_of(&app, "/api/alice/tasks", &token).await.status, Status::Ok);
        tokio::time::sleep(Duration::from_millis(1300)).await;
        // ...and after it the deletion is seen, as is the short session's expiry.
        assert_eq!(status_of(&app, "/api/alice/tasks", &token).await.status, Status::Unauthorized);
        assert_eq!(status_of(&app, "/api/alice/tasks", &short).await.status, Status::Unauthorized);
    }

    async fn snake_case_columns_and_another_table_name_are_recognised(backend) {
        let layout = Layout { table: "auth_sessions", user: "user_id", expires: "expires_at" };
        // Whole milliseconds on SQLite, as Prisma writes dates.
        let app = spawn_with_table(backend, &layout, true, 0).await;
        let (token, expired) = (random_token(), random_token());
        insert_session(&app.db_url, &layout, &token, "carol", 600).await;
        insert_session(&app.db_url, &layout, &expired, "carol", -5).await;
        let ok = status_of(&app, "/api/carol/tasks", &token).await;
        assert_eq!(ok.status, Status::Ok, "{}", ok.text);
        assert_eq!(status_of(&app, "/api/carol/tasks", &expired).await.status, Status::Unauthorized);
    }

    async fn a_missing_table_is_reported_and_answers_503_until_it_exists(backend) {
        let app = TestApp::spawn_with(backend, sessions_on(0)).await;
        let ready = app.anonymous().get("/health/ready").await;
        assert_eq!(ready.status, Status::Ok);
        assert_eq!(ready.json()["sessions"], "table_missing", "{}", ready.text);

        let token = random_token();
        let unavailable = status_of(&app, "/api/alice/tasks", &token).await;
        assert_eq!(unavailable.status, Status::ServiceUnavailable);
        assert_eq!(unavailable.error_code(), "service_unavailable");
        assert_eq!(unavailable.header("Retry-After"), Some("5"));
        // Refused before any lookup: the wrong shape, a bad signature.
        for bad in ["bad token!", signed(&token, "another-secret-that-is-long-enough-000000").as_str()] {
            assert_eq!(status_of(&app, "/api/alice/tasks", bad).await.status, Status::Unauthorized, "{bad}");
        }
        // JWTs do not depend on the table.
        assert_eq!(app.as_user("alice").get("/api/alice/tasks").await.status, Status::Ok);

        create_table(&app.db_url, &CAMEL, false).await;
        insert_session(&app.db_url, &CAMEL, &token, "alice", 600).await;
        // Looked for again at most once a second.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert_eq!(status_of(&app, "/api/alice/tasks", &token).await.status, Status::Ok);
        let ready = app.anonymous().get("/health/ready").await;
        assert_eq!(ready.json()["sessions"], "ok");
    }

    async fn session_lookups_are_counted_by_outcome_in_the_metrics(backend) {
        let app = spawn_with_table(backend, &CAMEL, false, 60).await;
        let counts = || lookup_counts(&app);
        assert_eq!(counts().await, [0, 0, 0, 0]);
        let known = random_token();
        insert_session(&app.db_url, &CAMEL, &known, "alice", 600).await;
        let unknown = random_token();
        for token in [&known, &known, &unknown, &unknown] {
            status_of(&app, "/api/alice/tasks", token).await;
        }
        // Refused before any lookup, and JWTs never look.
        assert_eq!(status_of(&app, "/api/alice/tasks", "bad token!").await.status, Status::Unauthorized);
        assert_eq!(app.as_user("alice").get("/api/alice/tasks").await.status, Status::Ok);
        assert_eq!(counts().await, [2, 2, 0, 0], "each token asked the database once");

        execute(&app.db_url, "DROP TABLE \"session\"").await;
        let gone = status_of(&app, "/api/alice/tasks", &random_token()).await;
        assert_eq!(gone.status, Status::ServiceUnavailable);
        assert_eq!(counts().await, [2, 2, 0, 1]);
    }

    async fn unknown_tokens_are_remembered_and_a_flood_leaves_other_users_served(backend) {
        let app = spawn_with_table(backend, &CAMEL, false, 0).await;
        let late = random_token();
        assert_eq!(status_of(&app, "/api/alice/tasks", &late).await.status, Status::Unauthorized);
        // Unknown a moment ago: answered from memory, the table is not asked again.
        insert_session(&app.db_url, &CAMEL, &late, "alice", 600).await;
        assert_eq!(status_of(&app, "/api/alice/tasks", &late).await.status, Status::Unauthorized);

        let flood = (0..400).map(|_| {
            let app = &app;
            async move { status_of(app, "/api/alice/tasks", &random_token()).await.status }
        });
        let users = (0..40).map(|i| {
            let app = &app;
            async move {
                app.as_user(&format!("user{i}")).get(&format!("/api/user{i}/tasks"))
                    .await
                    .status
            }
        });
        let (flood, users) = tokio::join!(
            rocket::futures::future::join_all(flood),
            rocket::futures::future::join_all(users)
        );
        assert!(users.iter().all(|s| *s == Status::Ok), "{users:?}");
        assert!(
            flood.iter().all(|s| matches!(s.code, 401 | 503)),
            "{:?}",
            flood.iter().filter(|s| !matches!(s.code, 401 | 503)).collect::<Vec<_>>()
        );
    }
}

on_every_database! {
    async fn without_sessions_on_a_value_that_is_not_a_jwt_is_refused(app) {
        create_table(&app.db_url, &CAMEL, false).await;
        let token = random_token();
        insert_session(&app.db_url, &CAMEL, &token, "alice", 600).await;
        let refused = status_of(&app, "/api/alice/tasks", &token).await;
        assert_eq!(refused.status, Status::Unauthorized);
        assert_eq!(refused.error_code(), "invalid_token");
        let ready = app.anonymous().get("/health/ready").await;
        assert!(ready.json().get("sessions").is_none(), "{}", ready.text);
    }
}

fn urlencoding(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// A real Better Auth server (scripts/better-auth/server.mjs) on a test's database.
pub(crate) struct BetterAuth {
    pub(crate) url: String,
    child: std::process::Child,
}

impl Drop for BetterAuth {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The server's entry point: `BETTER_AUTH_TEST_SERVER` (set by scripts/test), else the
/// checkout's own install.
fn better_auth_entry() -> std::path::PathBuf {
    let entry = std::env::var_os("BETTER_AUTH_TEST_SERVER")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/better-auth/server.mjs")
        });
    let installed = entry.with_file_name("node_modules").join("better-auth");
    assert!(
        installed.exists(),
        "the Better Auth test server is not installed: run scripts/test, or scripts/better-auth-server install"
    );
    entry
}

impl BetterAuth {
    pub(crate) async fn start(db_url: &str, fields: &str) -> BetterAuth {
        let entry = better_auth_entry();
        let mut child = std::process::Command::new("node")
            .arg(entry)
            .env("DATABASE_URL", db_url)
            .env("BETTER_AUTH_SECRET", TEST_SECRET)
            .env("FIELDS", fields)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("node runs");
        let stdout = child.stdout.take().unwrap();
        let url = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            std::io::BufReader::new(stdout)
                .read_line(&mut line)
                .map(|_| line)
        })
        .await
        .unwrap()
        .unwrap();
        let url = url.trim().to_owned();
        assert!(
            url.starts_with("http://127.0.0.1:"),
            "Better Auth did not start: {url:?}"
        );
        BetterAuth { url, child }
    }

    /// Calls Better Auth's API; returns the status, the `set-auth-token` header and the body.
    pub(crate) async fn post(
        &self,
        path: &str,
        bearer: Option<&str>,
        body: Value,
    ) -> (u16, Option<String>, Value) {
        let (status, signed, _, body) = self.call(path, bearer, body).await;
        (status, signed, body)
    }

    /// Like [`Self::post`], with the session cookie Better Auth set (`Set-Cookie:
    /// better-auth.session_token=…`, its value as sent) third.
    pub(crate) async fn call(
        &self,
        path: &str,
        bearer: Option<&str>,
        body: Value,
    ) -> (u16, Option<String>, Option<String>, Value) {
        let mut request = reqwest::Client::new()
            .post(format!("{}/api/auth/{path}", self.url))
            .header("Content-Type", "application/json")
            .header("Origin", &self.url)
            .body(body.to_string());
        if let Some(bearer) = bearer {
            request = request.header("Authorization", format!("Bearer {bearer}"));
        }
        let response = request.send().await.expect("Better Auth answers");
        let status = response.status().as_u16();
        let signed = response
            .headers()
            .get("set-auth-token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let cookie = response
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|v| v.strip_prefix("better-auth.session_token="))
            .map(|v| v.split(';').next().unwrap_or_default().to_owned());
        let text = response.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        (status, signed, cookie, body)
    }
}

async fn with_better_auth(backend: Backend, fields: &'static str) {
    // Better Auth creates its tables in the service's database before the service starts.
    let database = TestDatabase::fresh(backend).await;
    let auth = BetterAuth::start(&database.url, fields).await;
    let app = TestApp::spawn_on(database, sessions_on(0)).await;
    let ready = app.anonymous().get("/health/ready").await;
    assert_eq!(ready.json()["sessions"], "ok", "{}", ready.text);

    let (status, signed, body) = auth
        .post(
            "sign-up/email",
            None,
            json!({"email": "ada@example.com", "password": "correct horse battery", "name": "Ada"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let token = body["token"].as_str().expect("a session token").to_owned();
    let user = body["user"]["id"].as_str().expect("a user id").to_owned();
    let signed = signed.expect("the bearer plugin's set-auth-token");
    assert!(signed.starts_with(&format!("{token}.")), "{signed}");

    // The raw token (getSession().session.token) and the signed one (set-auth-token).
    for form in [&token, &signed] {
        let own = status_of(&app, &format!("/api/{user}/tasks"), form).await;
        assert_eq!(own.status, Status::Ok, "{}", own.text);
        assert_eq!(
            status_of(&app, "/api/someone-else/tasks", form)
                .await
                .status,
            Status::Forbidden
        );
    }
    let created = app
        .with_token(&signed)
        .post(
            "/api/tasks",
            &json!({"title": "via Better Auth", "priority": 3}),
        )
        .await;
    assert_eq!(created.status, Status::Created, "{}", created.text);
    assert_eq!(created.json()["user_id"], user.as_str());
    assert_eq!(created.json()["priority"], "high");

    // Sign out through Better Auth: the session row goes, the token is refused.
    let (status, _, body) = auth.post("sign-out", Some(&signed), json!({})).await;
    assert_eq!(status, 200, "{body}");
    for form in [&token, &signed] {
        let refused = status_of(&app, "/api/tasks", form).await;
        assert_eq!(refused.status, Status::Unauthorized, "{form}");
    }

    // Sign in again: a new session, accepted; then expired in the table: refused.
    let (status, signed, body) = auth
        .post(
            "sign-in/email",
            None,
            json!({"email": "ada@example.com", "password": "correct horse battery"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let token = body["token"].as_str().unwrap().to_owned();
    let listed = status_of(&app, "/api/tasks", &token).await;
    assert_eq!(listed.status, Status::Ok);
    assert_eq!(listed.json()[0]["title"], "via Better Auth");
    assert_eq!(
        status_of(&app, "/api/tasks", &signed.unwrap()).await.status,
        Status::Ok
    );
    let (table, column) = if fields == "snake_case" {
        ("session", "expires_at")
    } else {
        ("session", "expiresAt")
    };
    let past = if app.db_url.starts_with("sqlite") {
        "'2020-01-01T00:00:00.000Z'"
    } else {
        "now() - interval '1 minute'"
    };
    execute(
        &app.db_url,
        &format!("UPDATE \"{table}\" SET \"{column}\" = {past}"),
    )
    .await;
    assert_eq!(
        status_of(&app, "/api/tasks", &token).await.status,
        Status::Unauthorized
    );
}

on_every_backend! {
    async fn a_real_better_auth_server_signs_users_in_and_out(backend) {
        with_better_auth(backend, "camelCase").await;
    }

    async fn a_real_better_auth_server_with_snake_case_session_columns(backend) {
        with_better_auth(backend, "snake_case").await;
    }
}

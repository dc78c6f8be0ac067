//! `Idempotency-Key` on every write: a repeat gets the first answer and writes nothing; the
//! same key with another request is 422; a repeat while the first runs is 409; keys are per
//! user, kept in the database, and pruned after 24 hours.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rocket::figment::providers::Serialized;
use rocket::http::{Method, Status};
use serde_json::{json, Value};
use todo_api::db::AppPool;
use todo_api::tasks::writer::{Interruption, Point, Writer, LOCK_WAIT};
use tokio::io::AsyncWriteExt as _;

use crate::helpers::*;

async fn keyed(
    app: &TestApp,
    user: &str,
    method: Method,
    path: &str,
    body: Option<&Value>,
    key: &str,
) -> TestResponse {
    app.as_user(user)
        .send(method, path, body, &[("Idempotency-Key", key)])
        .await
}

async fn count(app: &TestApp, user: &str) -> usize {
    app.as_user(user)
        .get("tasks?limit=100")
        .await
        .json()
        .as_array()
        .unwrap()
        .len()
}

on_every_database! {
    async fn a_repeated_write_gets_the_first_answer_and_writes_nothing(app) {
        let body = json!({"title": "once"});
        let first = keyed(&app, "alice", Method::Post, "tasks", Some(&body), "create-1").await;
        assert_eq!(first.status, Status::Created, "{}", first.text);
        assert_eq!(first.header("Idempotent-Replayed"), None);
        let again = keyed(&app, "alice", Method::Post, "tasks", Some(&body), "create-1").await;
        assert_eq!(again.status, Status::Created);
        assert_eq!(again.header("Idempotent-Replayed"), Some("true"));
        assert_eq!(again.json(), first.json());
        assert_eq!(again.header("Location"), first.header("Location"));
        assert_eq!(again.header("ETag"), first.header("ETag"));
        assert_eq!(count(&app, "alice").await, 1);
        // Without a key nothing changes: two creates, two tasks.
        app.as_user("alice").post("tasks", &body).await;
        app.as_user("alice").post("tasks", &body).await;
        assert_eq!(count(&app, "alice").await, 3);

        // Every kind of write.
        let id = first.json()["id"].as_i64().unwrap();
        let task = format!("tasks/{id}");
        let put = json!({"title": "replaced"});
        let patch = json!({"title": "patched"});
        for (method, path, body, key) in [
            (Method::Put, task.clone(), Some(&put), "put-1"),
            (Method::Patch, task.clone(), Some(&patch), "patch-1"),
            (Method::Patch, format!("{task}/complete"), None, "toggle-1"),
        ] {
            let first = keyed(&app, "alice", method, &path, body, key).await;
            assert_eq!(first.status, Status::Ok, "{method} {path}: {}", first.text);
            let again = keyed(&app, "alice", method, &path, body, key).await;
            assert_eq!(again.status, Status::Ok);
            assert_eq!(again.header("Idempotent-Replayed"), Some("true"));
            assert_eq!(again.json(), first.json(), "{method} {path}");
        }
        // The toggle ran once: the task is completed, not toggled back.
        assert_eq!(app.as_user("alice").get(&task).await.json()["completed"], true);
        let cleared = keyed(&app, "alice", Method::Delete, "tasks?completed=true", None, "clear-1").await;
        assert_eq!(cleared.json(), json!({"deleted": 1}));
        let again = keyed(&app, "alice", Method::Delete, "tasks?completed=true", None, "clear-1").await;
        assert_eq!((again.status, again.json()), (Status::Ok, json!({"deleted": 1})));
        let other = app.as_user("alice").get("tasks").await.json()[0]["id"].as_i64().unwrap();
        let deleted = keyed(&app, "alice", Method::Delete, &format!("tasks/{other}"), None, "delete-1").await;
        assert_eq!(deleted.status, Status::NoContent);
        let again = keyed(&app, "alice", Method::Delete, &format!("tasks/{other}"), None, "delete-1").await;
        assert_eq!(again.status, Status::NoContent, "the first answer, not a 404");
        assert_eq!(again.header("Idempotent-Replayed"), Some("true"));
        assert_eq!(count(&app, "alice").await, 1);
    }

    async fn the_same_key_for_another_request_is_422_and_a_running_one_is_409(app) {
        let first = keyed(&app, "alice", Method::Post, "tasks", Some(&json!({"title": "a"})), "k").await;
        assert_eq!(first.status, Status::Created);
        for (method, path, body) in [
            (Method::Post, "tasks".to_owned(), Some(json!({"title": "b"}))),
            (Method::Patch, format!("tasks/{}", first.json()["id"]), Some(json!({"title": "a"}))),
        ] {
            let refused = keyed(&app, "alice", method, &path, body.as_ref(), "k").await;
            assert_eq!(refused.status, Status::UnprocessableEntity, "{method} {path}");
            assert!(refused.json()["field_errors"]["Idempotency-Key"].is_array(), "{}", refused.text);
        }
        for bad in ["x".repeat(256), "caf\u{e9}".to_owned()] {
            let refused = keyed(&app, "alice", Method::Post, "tasks", Some(&json!({"title": "c"})), &bad).await;
            assert_eq!(refused.status, Status::UnprocessableEntity);
        }

        // A first request still running (its claim, with no answer yet): 409, nothing written.
        let body = json!({"title": "running"});
        let fingerprint = todo_api::tasks::idempotency::fingerprint("POST", "/api/alice/tasks", body.as_object());
        on_pool!(&pool_of(&app.db_url).await, |p| drop(
            sqlx::query("INSERT INTO idempotency_keys (user_id, key, fingerprint) VALUES ('alice', 'busy', $1)")
                .bind(&fingerprint).execute(p).await.unwrap()
        ));
        let busy = keyed(&app, "alice", Method::Post, "tasks", Some(&body), "busy").await;
        assert_eq!(busy.status, Status::Conflict);
        assert_eq!(busy.error_code(), "idempotency_key_in_use");
        assert_eq!(count(&app, "alice").await, 1);

        // Repeats sent at once: one task, every answer the first one or a 409.
        let body = json!({"title": "raced"});
        let send = || keyed(&app, "alice", Method::Post, "tasks", Some(&body), "race");
        let (a, b, c) = tokio::join!(send(), send(), send());
        let created: Vec<_> = [&a, &b, &c].into_iter().filter(|r| r.status == Status::Created).collect();
        assert!(!created.is_empty());
        for r in [&a, &b, &c] {
            assert!(r.status == Status::Created || r.status == Status::Conflict, "{}", r.status);
        }
        assert!(created.windows(2).all(|w| w[0].json() == w[1].json()));
        assert_eq!(count(&app, "alice").await, 2);

        // Keys belong to their user: Bob's "k" is his own.
        let bob = keyed(&app, "bob", Method::Post, "tasks", Some(&json!({"title": "a"})), "k").await;
        assert_eq!(bob.status, Status::Created);
        assert_eq!(bob.header("Idempotent-Replayed"), None);
        assert_eq!(bob.json()["user_id"], "bob");
    }

    async fn keys_expire_after_a_day_and_are_pruned(app) {
        let pool = pool_of(&app.db_url).await;
        let past = if app.db_url.starts_with("sqlite") { "'2020-01-01T00:00:00.000Z'" } else { "now() - interval '25 hours'" };
        on_pool!(&pool, |p| drop(
            sqlx::query(&format!("INSERT INTO idempotency_keys (user_id, key, fingerprint, status, body, created_at) \
                VALUES ('alice', 'old', 'another request', 201, '{{}}', {past}), ('alice', 'older', 'x', 200, '{{}}', {past})"))
                .execute(p).await.unwrap()
        ));
        // Past its day, a key is free again even before the pruning.
        let fresh = keyed(&app, "alice", Method::Post, "tasks", Some(&json!({"title": "new"})), "old").await;
        assert_eq!(fresh.status, Status::Created, "{}", fresh.text);
        assert_eq!(fresh.header("Idempotent-Replayed"), None);
        // (The service's own pruning may have run first: either way the old one goes.)
        todo_api::tasks::idempotency::prune(&pool, 1000).await.unwrap();
        let left: Vec<String> = on_pool!(&pool, |p| sqlx::query_scalar("SELECT key FROM idempotency_keys").fetch_all(p).await.unwrap());
        assert_eq!(left, vec!["old".to_owned()], "the day-old one went, the fresh one stays");
    }
}

/// A TCP proxy in front of `port` that forwards one connection's request, waits for the
/// first bytes of the answer (so the write has committed) and then cuts both sides: the
/// client never gets the answer.
async fn answer_losing_proxy(port: u16) -> u16 {
    use tokio::io::AsyncReadExt as _;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let Ok((mut client, _)) = listener.accept().await else {
            return;
        };
        let mut server = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let (mut buffer, mut answer) = (vec![0_u8; 65536], [0_u8; 1]);
        loop {
            tokio::select! {
                read = client.read(&mut buffer) => match read {
                    Ok(n) if n > 0 => server.write_all(&buffer[..n]).await.unwrap(),
                    _ => return,
                },
                read = server.read(&mut answer) => {
                    // The answer has begun: the write committed. Lose it.
                    let _ = read;
                    return;
                }
            }
        }
    });
    proxy_port
}

on_both_backends! {
    async fn a_create_whose_answer_was_lost_is_retried_to_one_task_and_the_same_answer(backend) {
        let server = LiveServer::start(backend, |f| f).await;
        let token = todo_api::auth::mint_hs256(TEST_SECRET, "alice", 600).unwrap();
        let body = json!({"title": "sent once"}).to_string();
        let client = reqwest::Client::new();
        let create = |port: u16| client.post(format!("http://127.0.0.1:{port}/api/alice/tasks"))
            .bearer_auth(&token)
            .header("Content-Type", "application/json")
            .header("Idempotency-Key", "lost-1")
            .body(body.clone())
            .send();
        let proxy = answer_losing_proxy(server.port).await;
        assert!(create(proxy).await.is_err(), "the answer is lost on the way");
        // The retry, straight to the service: the first answer, and one task.
        let retried = create(server.port).await.unwrap();
        assert_eq!(retried.status(), 201);
        assert_eq!(retried.headers().get("idempotent-replayed").map(|v| v.to_str().unwrap()), Some("true"));
        let first: Value = serde_json::from_str(&retried.text().await.unwrap()).unwrap();
        assert_eq!(first["title"], "sent once");
        let listed = client.get(format!("http://127.0.0.1:{}/api/alice/tasks", server.port))
            .bearer_auth(&token).send().await.unwrap().text().await.unwrap();
        let listed: Value = serde_json::from_str(&listed).unwrap();
        assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
        assert_eq!(listed[0], first);

        // Kept in the database: another instance on it replays the same answer.
        let other = LiveServer::start_on(TestDatabase::existing(&server.db_url), |f| f).await;
        let elsewhere = create(other.port).await.unwrap();
        assert_eq!(elsewhere.status(), 201);
        let again: Value = serde_json::from_str(&elsewhere.text().await.unwrap()).unwrap();
        assert_eq!(again, first);
        other.stop().await;
        server.stop().await;
    }
}

/// The service's writer, to interrupt its keyed writes.
fn writer_of(app: &TestApp) -> &Arc<Writer> {
    app.client
        .rocket()
        .state::<Arc<Writer>>()
        .expect("the tasks stage manages the writer")
}

/// Interruptions armed per key, each taken (so fired once) at its point: the retry of the
/// same key runs through.
#[derive(Clone, Default)]
struct Armed(Arc<Mutex<HashMap<String, (Point, Interruption)>>>);

impl Armed {
    fn install(app: &TestApp) -> Armed {
        let armed = Armed::default();
        let shared = armed.clone();
        writer_of(app).interrupt_with(Box::new(move |point, key| {
            let mut armed = shared.0.lock().unwrap();
            match armed.get(key) {
                Some((at, what)) if *at == point => {
                    let what = *what;
                    armed.remove(key);
                    Some(what)
                }
                _ => None,
            }
        }));
        armed
    }

    fn arm(&self, key: &str, point: Point, what: Interruption) {
        self.0.lock().unwrap().insert(key.to_owned(), (point, what));
    }

    fn fired(&self, key: &str) -> bool {
        !self.0.lock().unwrap().contains_key(key)
    }
}

/// What a user's data is: their tasks as listed, their events, their kept keys.
async fn state_of(app: &TestApp, pool: &AppPool, user: &str) -> (Value, i64, i64) {
    let tasks = app.as_user(user).get("tasks?limit=100").await.json();
    let count = |table: &'static str| {
        let sql = format!("SELECT count(*) FROM {table} WHERE user_id = $1");
        async move {
            let n: i64 = on_pool!(pool, |p| sqlx::query_scalar(&sql)
                .bind(user)
                .fetch_one(p)
                .await
                .unwrap());
            n
        }
    };
    (
        tasks,
        count("task_events").await,
        count("idempotency_keys").await,
    )
}

const KINDS: [&str; 6] = ["create", "replace", "patch", "toggle", "delete", "clear"];
const POINTS: [Point; 3] = [Point::Claimed, Point::Written, Point::Kept];

/// A fresh task of `user` (completed, for the bulk clear) and the keyed request of `kind`
/// on it: its method, path, body and the status it answers.
async fn request_of(
    app: &TestApp,
    user: &str,
    kind: &str,
) -> (Method, String, Option<Value>, Status) {
    let created = app
        .as_user(user)
        .post(
            "tasks",
            &json!({"title": "before", "completed": kind == "clear"}),
        )
        .await;
    assert_eq!(created.status, Status::Created);
    let task = format!("tasks/{}", created.json()["id"]);
    match kind {
        "create" => (
            Method::Post,
            "tasks".into(),
            Some(json!({"title": "made once"})),
            Status::Created,
        ),
        "replace" => (
            Method::Put,
            task,
            Some(json!({"title": "replaced once"})),
            Status::Ok,
        ),
        "patch" => (
            Method::Patch,
            task,
            Some(json!({"title": "patched once"})),
            Status::Ok,
        ),
        "toggle" => (Method::Patch, format!("{task}/complete"), None, Status::Ok),
        "delete" => (Method::Delete, task, None, Status::NoContent),
        "clear" => (
            Method::Delete,
            "tasks?completed=true".into(),
            None,
            Status::Ok,
        ),
        _ => unreachable!(),
    }
}

/// The one effect `kind` has on a user whose state was `before`.
fn effect_of(kind: &str, before: &Value, after: &Value) {
    let (before, after) = (before.as_array().unwrap(), after.as_array().unwrap());
    match kind {
        "create" => {
            assert_eq!(after.len(), before.len() + 1);
            assert_eq!(
                after.iter().filter(|t| t["title"] == "made once").count(),
                1
            );
        }
        "replace" | "patch" => {
            assert_eq!(after.len(), 1);
            assert_eq!(
                after[0]["title"],
                if kind == "replace" {
                    "replaced once"
                } else {
                    "patched once"
                }
            );
        }
        "toggle" => {
            assert_eq!(after.len(), 1);
            assert_eq!(
                after[0]["completed"],
                !before[0]["completed"].as_bool().unwrap(),
                "flipped once"
            );
        }
        "delete" | "clear" => assert_eq!(after.len(), 0),
        _ => unreachable!(),
    }
}

on_every_database! {
    async fn a_keyed_write_stopped_anywhere_leaves_nothing_and_its_retry_has_one_effect(app) {
        let armed = Armed::install(&app);
        let pool = app.pool().await;
        let mut case = 0;
        for kind in KINDS {
            for point in POINTS {
                for what in [Interruption::Abort, Interruption::Cut] {
                    case += 1;
                    let user = format!("u{case}");
                    let label = format!("{kind} stopped at {point:?} by {what:?}");
                    let (method, path, body, ok) = request_of(&app, &user, kind).await;
                    let before = state_of(&app, &pool, &user).await;
                    let key = format!("key-{case}");
                    armed.arm(&key, point, what);
                    let first = keyed(&app, &user, method, &path, body.as_ref(), &key).await;
                    assert!(armed.fired(&key), "{label}: the interruption fired");
                    assert_eq!(first.status, Status::ServiceUnavailable, "{label}: {}", first.text);
                    assert_eq!(state_of(&app, &pool, &user).await, before, "{label}: nothing of it is left");

                    // The retry runs as the first: one effect, its event, its answer kept.
                    let retried = keyed(&app, &user, method, &path, body.as_ref(), &key).await;
                    assert_eq!(retried.status, ok, "{label}: {}", retried.text);
                    assert_eq!(retried.header("Idempotent-Replayed"), None, "{label}");
                    let after = state_of(&app, &pool, &user).await;
                    effect_of(kind, &before.0, &after.0);
                    assert_eq!(after.1, before.1 + 1, "{label}: one event");
                    assert_eq!(after.2, 1, "{label}: the key is kept with its answer");
                    let again = keyed(&app, &user, method, &path, body.as_ref(), &key).await;
                    assert_eq!((again.status, again.header("Idempotent-Replayed")), (ok, Some("true")), "{label}");
                    assert_eq!(again.text, retried.text, "{label}");
                    assert_eq!(state_of(&app, &pool, &user).await, after, "{label}: the replay wrote nothing");
                }
            }
        }
    }

    async fn repeats_racing_the_first_wait_for_its_commit_and_replay_it(app) {
        let armed = Armed::install(&app);
        let body = json!({"title": "raced"});
        armed.arm("race", Point::Written, Interruption::Pause(Duration::from_millis(400)));
        let first = keyed(&app, "alice", Method::Post, "tasks", Some(&body), "race");
        let repeat = || async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            keyed(&app, "alice", Method::Post, "tasks", Some(&body), "race").await
        };
        let (first, second, third) = tokio::join!(first, repeat(), repeat());
        assert!(armed.fired("race"));
        for (answer, replayed) in [(&first, None), (&second, Some("true")), (&third, Some("true"))] {
            assert_eq!(answer.status, Status::Created, "{}", answer.text);
            assert_eq!(answer.header("Idempotent-Replayed"), replayed);
            assert_eq!(answer.text, first.text);
        }
        assert_eq!(count(&app, "alice").await, 1);
    }

    async fn a_refused_keyed_write_keeps_its_refusal_and_writes_nothing(app) {
        let pool = app.pool().await;
        // 404 and 412 are answers too: kept, replayed, and nothing written.
        let missing = keyed(&app, "alice", Method::Patch, "tasks/999/complete", None, "nope").await;
        assert_eq!(missing.status, Status::NotFound);
        let again = keyed(&app, "alice", Method::Patch, "tasks/999/complete", None, "nope").await;
        assert_eq!((again.status, again.header("Idempotent-Replayed")), (Status::NotFound, Some("true")));
        assert_eq!(again.text, missing.text);
        let (tasks, events, keys) = state_of(&app, &pool, "alice").await;
        assert_eq!((tasks, events, keys), (json!([]), 0, 1));
    }
}

on_every_database! {
    async fn a_repeat_waits_for_a_running_first_only_so_long(app) {
        let armed = Armed::install(&app);
        let pool = app.pool().await;
        let body = json!({"title": "slow"});
        let hold = LOCK_WAIT + Duration::from_millis(1500);
        armed.arm("slow", Point::Written, Interruption::Pause(hold));
        let first = keyed(&app, "alice", Method::Post, "tasks", Some(&body), "slow");
        let repeat = async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            keyed(&app, "alice", Method::Post, "tasks", Some(&body), "slow").await
        };
        let (first, repeat) = tokio::join!(first, repeat);
        assert_eq!(first.status, Status::Created, "{}", first.text);
        match pool {
            // PostgreSQL: the repeat waited LOCK_WAIT for the first's commit, then 409.
            AppPool::Postgres(_) => {
                assert_eq!(repeat.status, Status::Conflict, "{}", repeat.text);
                assert_eq!(repeat.error_code(), "idempotency_key_in_use");
            }
            // SQLite: every write waits for the one writer, so the repeat replays.
            AppPool::Sqlite(_) => {
                assert_eq!(repeat.status, Status::Created);
                assert_eq!(repeat.header("Idempotent-Replayed"), Some("true"));
            }
        }
        let after = keyed(&app, "alice", Method::Post, "tasks", Some(&body), "slow").await;
        assert_eq!((after.status, after.header("Idempotent-Replayed")), (Status::Created, Some("true")));
        assert_eq!(after.text, first.text);
        assert_eq!(count(&app, "alice").await, 1);
    }
}

#[rocket::async_test]
async fn sqlite_commits_reach_the_disk_unless_told_otherwise() {
    for (setting, level) in [(None, 2), (Some("normal"), 1), (Some("FULL"), 2)] {
        let app = TestApp::spawn_with(Backend::Sqlite, |f| match setting {
            Some(value) => f.merge(Serialized::global(
                "databases.todo.sqlite_synchronous",
                value,
            )),
            None => f,
        })
        .await;
        // The service's own pool (its connections' settings), not one of the test's.
        let pool: AppPool = (**app.client.rocket().state::<todo_api::db::Db>().unwrap()).clone();
        let writer = writer_of(&app).sqlite_synchronous(&pool).await.unwrap();
        assert_eq!(
            writer,
            Some(level),
            "SQLITE_SYNCHRONOUS={setting:?}: the writer"
        );
        let AppPool::Sqlite(p) = &pool else {
            unreachable!()
        };
        let read: i64 = sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(p)
            .await
            .unwrap();
        assert_eq!(read, level, "SQLITE_SYNCHRONOUS={setting:?}: the pool");
    }
}

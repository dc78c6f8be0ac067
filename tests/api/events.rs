//! Live task events over a real socket: what a stream sends, in which order, to whom;
//! resuming; limits; slow readers; shutdown.

use std::time::{Duration, Instant};

use rocket::figment::providers::Serialized;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::helpers::on_pool;

use crate::helpers::{
    self, on_both_backends, on_every_backend, raw_http, Backend, LiveServer, TestDatabase,
    TEST_SECRET,
};

/// One server-sent event (or comment) as read off the wire.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Frame {
    pub event: Option<String>,
    pub id: Option<String>,
    pub data: Option<String>,
    pub retry: Option<String>,
    pub comment: bool,
}

impl Frame {
    pub fn json(&self) -> Value {
        self.data
            .as_deref()
            .and_then(|d| serde_json::from_str(d).ok())
            .unwrap_or(Value::Null)
    }
}

/// An open event stream.
pub struct Stream {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    reader: BufReader<TcpStream>,
}

pub fn token(user: &str) -> String {
    todo_api::auth::mint_hs256(TEST_SECRET, user, 600).unwrap()
}

impl Stream {
    /// Opens `path` (with extra header lines) and reads the answer's head.
    pub async fn open(port: u16, path: &str, headers: &str) -> Stream {
        let mut socket = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        socket
            .write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n{headers}\r\n").as_bytes())
            .await
            .unwrap();
        let mut reader = BufReader::new(socket);
        let mut line = String::new();
        reader.read_line(&mut line).await.unwrap();
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let mut head = Vec::new();
        loop {
            line.clear();
            reader.read_line(&mut line).await.unwrap();
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((n, v)) = l.split_once(':') {
                head.push((n.trim().to_ascii_lowercase(), v.trim().to_owned()));
            }
        }
        Stream {
            status,
            headers: head,
            reader,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The next event or comment, within `limit`; `None` at the end of the stream or on
    /// time-out. (HTTP/1.0: the body is the stream itself, with no chunk framing.)
    pub async fn next(&mut self, limit: Duration) -> Option<Frame> {
        let deadline = Instant::now() + limit;
        let mut frame = Frame::default();
        let mut any = false;
        loop {
            let mut line = String::new();
            let left = deadline.checked_duration_since(Instant::now())?;
            let read = tokio::time::timeout(left, self.reader.read_line(&mut line))
                .await
                .ok()?
                .ok()?;
            if read == 0 {
                return None;
            }
            let line = line.trim_end_matches(['\r', '\n']);
            if line.is_empty() {
                if any {
                    return Some(frame);
                }
                continue;
            }
            if line.starts_with(':') {
                // A comment (the heartbeat) stands alone, with or without a blank line.
                if !any {
                    return Some(Frame {
                        comment: true,
                        ..Frame::default()
                    });
                }
                continue;
            }
            any = true;
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value).to_owned();
            match field {
                "event" => frame.event = Some(value),
                "id" => frame.id = Some(value),
                "data" => frame.data = Some(value),
                "retry" => frame.retry = Some(value),
                _ => {}
            }
        }
    }

    /// The next event that is not a heartbeat comment.
    pub async fn event(&mut self) -> Option<Frame> {
        loop {
            let frame = self.next(Duration::from_secs(10)).await?;
            if frame.event.is_some() || frame.data.is_some() {
                return Some(frame);
            }
        }
    }
}

async fn api(port: u16, user: &str, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let (status, _, text) = raw_http(port, &format!(
        "{method} /api/{user}/{path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}", token(user), body.len())).await;
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn bearer(user: &str) -> String {
    format!("Authorization: Bearer {}\r\n", token(user))
}

on_every_backend! {
    async fn a_stream_opens_with_ready_then_carries_every_write_of_its_user_in_order(backend) {
        let server = LiveServer::start(backend, |f| f).await;
        let port = server.port;
        let mut alice = Stream::open(port, "/api/alice/events", &bearer("alice")).await;
        assert_eq!(alice.status, 200);
        assert!(alice.header("content-type").is_some_and(|v| v.starts_with("text/event-stream")));
        assert_eq!(alice.header("cache-control"), Some("no-store"));
        assert_eq!(alice.header("x-accel-buffering"), Some("no"));
        let ready = alice.event().await.expect("ready");
        assert_eq!(ready.event.as_deref(), Some("ready"));
        assert_eq!(ready.retry.as_deref(), Some("3000"));
        assert_eq!(ready.json(), json!({}));
        let mut bob = Stream::open(port, "/api/bob/events", &bearer("bob")).await;
        assert_eq!(bob.event().await.and_then(|f| f.event).as_deref(), Some("ready"));

        let (status, created) = api(port, "alice", "POST", "tasks", Some(json!({"title": "one", "description": "tab\there \u{1}", "due_date": "0001-01-01T00:00:00Z"}))).await;
        assert_eq!(status, 201);
        let id = created["id"].as_i64().unwrap();
        // The first and the last instant a due date may hold: events render them as REST does.
        assert_eq!(created["due_date"], "0001-01-01T00:00:00.000000Z");
        let (_, done) = api(port, "alice", "PATCH", &format!("tasks/{id}/complete"), None).await;
        let (_, patched) = api(port, "alice", "PATCH", &format!("tasks/{id}"), Some(json!({"category": "home", "due_date": "9999-12-31T23:59:59.999999Z"}))).await;
        let (_, replaced) = api(port, "alice", "PUT", &format!("tasks/{id}"), Some(json!({"title": "one, again"}))).await;
        let (_, second) = api(port, "alice", "POST", "tasks", Some(json!({"title": "two", "completed": true}))).await;
        assert_eq!(api(port, "alice", "DELETE", &format!("tasks/{id}"), None).await.0, 204);
        let (_, cleared) = api(port, "alice", "DELETE", "tasks?completed=true", None).await;
        assert_eq!(cleared, json!({"deleted": 1}));
        // Failed writes send nothing.
        assert_eq!(api(port, "alice", "PATCH", "tasks/999999", Some(json!({"title": "x"}))).await.0, 404);
        assert_eq!(api(port, "alice", "POST", "tasks", Some(json!({"title": ""}))).await.0, 422);
        let (_, other) = api(port, "bob", "POST", "tasks", Some(json!({"title": "bob's"}))).await;

        let expected = [
            ("task.created", created),
            ("task.updated", done),
            ("task.updated", patched),
            ("task.updated", replaced),
            ("task.created", second.clone()),
            ("task.deleted", json!({"id": id})),
            ("task.deleted", json!({"id": second["id"]})),
        ];
        let mut ids = Vec::new();
        for (name, data) in expected {
            let frame = alice.event().await.unwrap_or_else(|| panic!("no {name}"));
            assert_eq!(frame.event.as_deref(), Some(name));
            assert_eq!(frame.json(), data, "{name}: the task exactly as the REST answer");
            ids.push(frame.id.clone().expect("an id"));
        }
        let ids: Vec<i64> = ids.iter().map(|id| id.parse().unwrap()).collect();
        assert!(ids.windows(2).all(|w| w[1] == w[0] + 1), "one user's ids count up by one: {ids:?}");
        let bobs = bob.event().await.expect("bob's event");
        assert_eq!(bobs.json(), other, "bob sees only his own");
        assert!(alice.next(Duration::from_millis(500)).await.is_none_or(|f| f.comment), "nothing more for alice");
        server.stop().await;
    }

    async fn a_write_the_database_refuses_sends_nothing_and_leaves_every_connection_clean(backend) {
        // A trigger refuses one title, so the write fails inside its transaction, after
        // the statement started: the transaction must be rolled back before its
        // connection is reused, and no event may go out for it.
        let server = LiveServer::start(backend, |f| f).await;
        let port = server.port;
        let pool = helpers::pool_of(&server.db_url).await;
        let trigger: &[&str] = match backend {
            Backend::Sqlite => &["CREATE TRIGGER refuse_boom BEFORE UPDATE ON tasks WHEN NEW.title = 'boom' \
                                  BEGIN SELECT RAISE(ABORT, 'refused'); END"],
            Backend::Postgres => &[
                "CREATE FUNCTION refuse_boom() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
                 IF NEW.title = 'boom' THEN RAISE EXCEPTION 'refused' USING ERRCODE = 'check_violation'; END IF; \
                 RETURN NEW; END $$",
                "CREATE TRIGGER refuse_boom BEFORE UPDATE ON tasks FOR EACH ROW EXECUTE FUNCTION refuse_boom()",
            ],
        };
        for sql in trigger {
            on_pool!(&pool, |p| sqlx::query(sql).execute(p).await.map(drop)).unwrap();
        }
        let mut stream = Stream::open(port, "/api/alice/events", &bearer("alice")).await;
        stream.event().await.expect("ready");
        let (_, task) = api(port, "alice", "POST", "tasks", Some(json!({"title": "kept"}))).await;
        let created = stream.event().await.expect("created");
        let path = format!("tasks/{}", task["id"]);
        let (status, body) = api(port, "alice", "PATCH", &path, Some(json!({"title": "boom"}))).await;
        assert_eq!(status, 422, "{body}");
        assert_eq!(body["error_code"], "validation_error", "{body}");
        // A connection left inside the failed transaction would refuse the next write
        // (SQLite writes through one connection) or hold the write lock; more writes than
        // the pool has connections cover PostgreSQL's.
        let mut last = created.id.unwrap().parse::<i64>().unwrap();
        for n in 0..20 {
            let (status, updated) = api(port, "alice", "PATCH", &path, Some(json!({"title": format!("kept {n}")}))).await;
            assert_eq!(status, 200, "write {n} after the refused one: {updated}");
            let frame = stream.event().await.expect("an event per write");
            assert_eq!(frame.json(), updated, "write {n}: no event for the refused write");
            let id: i64 = frame.id.unwrap().parse().unwrap();
            assert_eq!(id, last + 1, "the refused write left no gap");
            last = id;
        }
        let (_, read) = api(port, "alice", "GET", &path, None).await;
        assert_eq!(read["title"], "kept 19");
        assert!(stream.next(Duration::from_millis(300)).await.is_none_or(|f| f.comment), "nothing more");
        server.stop().await;
    }

    async fn resuming_replays_what_was_missed_and_an_unknown_id_resets(backend) {
        let server = LiveServer::start(backend, |f| f).await;
        let port = server.port;
        let mut first = Stream::open(port, "/api/alice/events", &bearer("alice")).await;
        first.event().await.expect("ready");
        let (_, a) = api(port, "alice", "POST", "tasks", Some(json!({"title": "a"}))).await;
        let seen = first.event().await.expect("a");
        drop(first);
        let (_, b) = api(port, "alice", "POST", "tasks", Some(json!({"title": "b"}))).await;
        let (_, c) = api(port, "alice", "PATCH", &format!("tasks/{}", a["id"]), Some(json!({"title": "a2"}))).await;
        let last = seen.id.unwrap();
        for (path, header) in [
            ("/api/alice/events".to_owned(), format!("{}Last-Event-ID: {last}\r\n", bearer("alice"))),
            (format!("/api/alice/events?last_event_id={last}&access_token={}", token("alice")), String::new()),
        ] {
            let mut resumed = Stream::open(port, &path, &header).await;
            assert_eq!(resumed.status, 200);
            assert_eq!(resumed.event().await.and_then(|f| f.event).as_deref(), Some("ready"));
            assert_eq!(resumed.event().await.map(|f| f.json()), Some(b.clone()), "the missed create first");
            assert_eq!(resumed.event().await.map(|f| f.json()), Some(c.clone()), "then the missed update");
        }
        for unknown in ["999999999", "abc", "-1"] {
            let mut reset = Stream::open(port, "/api/alice/events", &format!("{}Last-Event-ID: {unknown}\r\n", bearer("alice"))).await;
            assert_eq!(reset.event().await.and_then(|f| f.event).as_deref(), Some("ready"));
            let frame = reset.event().await.expect("reset");
            assert_eq!(frame.event.as_deref(), Some("reset"), "{unknown}");
            assert_eq!(frame.json(), json!({}));
        }
        server.stop().await;
    }

    async fn event_ids_keep_increasing_across_a_restart(backend) {
        // Ids come from the database's log: a restart neither skips nor repeats one, and a
        // client resumes from the log on the restarted instance.
        let database = TestDatabase::fresh(backend).await;
        let mut ids: Vec<i64> = Vec::new();
        for run in 0..2 {
            let server = LiveServer::start_on(TestDatabase::existing(&database.url), |f| f).await;
            if run == 1 {
                // After the restart, a client resumes from the log.
                let resume = format!("{}Last-Event-ID: {}\r\n", bearer("alice"), ids[0]);
                let mut resumed = Stream::open(server.port, "/api/alice/events", &resume).await;
                resumed.event().await.expect("ready");
                let replayed = resumed.event().await.expect("the missed event");
                assert_eq!(replayed.id, Some(ids[1].to_string()), "replayed after a restart");
            }
            let mut stream = Stream::open(server.port, "/api/alice/events", &bearer("alice")).await;
            stream.event().await.expect("ready");
            for title in ["one", "two"] {
                api(server.port, "alice", "POST", "tasks", Some(json!({"title": title}))).await;
                let id: i64 = stream.event().await.and_then(|f| f.id).unwrap().parse().unwrap();
                ids.push(id);
            }
            drop(stream);
            server.stop().await;
        }
        assert!(ids.windows(2).all(|w| w[1] == w[0] + 1), "{ids:?}");
    }

    async fn access_token_is_accepted_on_the_stream_only(backend) {
        let server = LiveServer::start(backend, |f| f).await;
        let port = server.port;
        let ok = Stream::open(port, &format!("/api/alice/events?access_token={}", token("alice")), "").await;
        assert_eq!(ok.status, 200);
        let (status, _, body) = raw_http(port, &format!("GET /api/alice/tasks?access_token={} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", token("alice"))).await;
        assert_eq!(status, 401, "other routes ignore access_token: {body}");
        for (query, expected, code) in [
            (format!("access_token={}", token("bob")), 403, "forbidden"),
            ("access_token=garbage".to_owned(), 401, "invalid_token"),
            (format!("access_token={}", crate::helpers::unsigned(&json!({"alg": "HS256", "typ": "JWT"}), &json!({"sub": "alice", "exp": 1}), "x")), 401, "invalid_token"),
            (String::new(), 401, "auth_required"),
        ] {
            let (status, headers, body) = raw_http(port, &format!("GET /api/alice/events?{query} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")).await;
            assert_eq!(status, expected, "{query}: {body}");
            let body: Value = serde_json::from_str(&body).unwrap_or_default();
            crate::helpers::assert_error_shape(&body);
            assert_eq!(body["error_code"], code);
            assert!(headers.iter().any(|(n, v)| n == "content-type" && v == "application/json"), "JSON before any stream");
        }
        server.stop().await;
    }

    async fn heartbeats_keep_a_quiet_stream_alive(backend) {
        let server = LiveServer::start(backend, |f| f.merge(Serialized::global("events.heartbeat_secs", 0.3))).await;
        let mut stream = Stream::open(server.port, "/api/alice/events", &bearer("alice")).await;
        stream.event().await.expect("ready");
        let mut comments = 0;
        let deadline = Instant::now() + Duration::from_secs(5);
        while comments < 2 && Instant::now() < deadline {
            if stream.next(Duration::from_secs(2)).await.is_some_and(|f| f.comment) {
                comments += 1;
            }
        }
        assert_eq!(comments, 2, "heartbeat comments on a quiet stream");
        server.stop().await;
    }

    async fn a_user_may_hold_only_so_many_streams_and_a_closed_one_frees_its_place_at_once(backend) {
        // The default limit and heartbeat: a closed stream is noticed by its socket, not
        // by its next write.
        let server = LiveServer::start(backend, |f| f).await;
        let port = server.port;
        let mut open = Vec::new();
        for _ in 0..16 {
            let mut stream = Stream::open(port, "/api/alice/events", &bearer("alice")).await;
            assert_eq!(stream.status, 200);
            stream.event().await.expect("ready");
            open.push(stream);
        }
        let (status, _, body) = raw_http(port, &format!("GET /api/alice/events HTTP/1.1\r\nHost: x\r\n{}Connection: close\r\n\r\n", bearer("alice"))).await;
        assert_eq!(status, 429, "{body}");
        assert_eq!(serde_json::from_str::<Value>(&body).unwrap_or_default()["error_code"], "too_many_streams");
        let bob = Stream::open(port, "/api/bob/events", &bearer("bob")).await;
        assert_eq!(bob.status, 200, "another user is not limited by alice's streams");
        drop(open.pop());
        let closed = Instant::now();
        loop {
            let again = Stream::open(port, "/api/alice/events", &bearer("alice")).await;
            if again.status == 200 {
                break;
            }
            assert!(closed.elapsed() < Duration::from_secs(2), "a closed stream frees its place within 2 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        server.stop().await;
    }

    async fn ids_keep_increasing_across_the_move_to_the_event_log(backend) {
        // A database as it was before the log: ids came from one global counter, here at
        // 5000. A client may still hold one of them.
        let database = TestDatabase::fresh(backend).await;
        let pool = helpers::pool_of(&database.url).await;
        helpers::migrate_before(&pool, 6).await;
        match &pool {
            helpers::AppPool::Sqlite(p) => {
                sqlx::query("UPDATE task_event_seq SET last_id = 5000").execute(p).await.unwrap();
            }
            helpers::AppPool::Postgres(p) => {
                sqlx::query("SELECT setval('task_event_ids', 5000)").execute(p).await.unwrap();
            }
        }
        let server = LiveServer::start_on(database, |f| f).await;
        let old = format!("{}Last-Event-ID: 4990\r\n", bearer("alice"));
        let mut resumed = Stream::open(server.port, "/api/alice/events", &old).await;
        resumed.event().await.expect("ready");
        assert_eq!(resumed.event().await.and_then(|f| f.event).as_deref(), Some("reset"), "an old id is not replayed");
        api(server.port, "alice", "POST", "tasks", Some(json!({"title": "new"}))).await;
        let id: i64 = resumed.event().await.and_then(|f| f.id).unwrap().parse().unwrap();
        assert!(id > 5000, "above every id issued before the log: {id}");
        server.stop().await;
    }

    async fn a_bulk_clear_sends_one_event_per_task_with_consecutive_ids(backend) {
        let server = LiveServer::start(backend, |f| f).await;
        let port = server.port;
        let mut stream = Stream::open(port, "/api/alice/events", &bearer("alice")).await;
        stream.event().await.expect("ready");
        let mut done = Vec::new();
        for n in 0..3 {
            let (_, task) = api(port, "alice", "POST", "tasks", Some(json!({"title": format!("t{n}"), "completed": true}))).await;
            done.push(task["id"].as_i64().unwrap());
        }
        let mut ids: Vec<i64> = Vec::new();
        for _ in 0..3 {
            ids.push(stream.event().await.and_then(|f| f.id).unwrap().parse().unwrap());
        }
        let (_, cleared) = api(port, "alice", "DELETE", "tasks?completed=true", None).await;
        assert_eq!(cleared, json!({"deleted": 3}));
        let mut deleted = Vec::new();
        for _ in 0..3 {
            let frame = stream.event().await.expect("a deleted event");
            assert_eq!(frame.event.as_deref(), Some("task.deleted"));
            deleted.push(frame.json()["id"].as_i64().unwrap());
            ids.push(frame.id.unwrap().parse().unwrap());
        }
        assert!(ids.windows(2).all(|w| w[1] == w[0] + 1), "{ids:?}");
        deleted.sort_unstable();
        assert_eq!(deleted, done);
        let (_, after) = api(port, "alice", "POST", "tasks", Some(json!({"title": "after"}))).await;
        let frame = stream.event().await.expect("the next event");
        assert_eq!(frame.json(), after);
        assert_eq!(frame.id.as_deref().unwrap().parse::<i64>().unwrap(), ids[5] + 1);
        server.stop().await;
    }

    async fn racing_writes_of_one_user_arrive_once_each_in_id_order(backend) {
        let server = LiveServer::start(backend, |f| f).await;
        let port = server.port;
        let mut stream = Stream::open(port, "/api/alice/events", &bearer("alice")).await;
        stream.event().await.expect("ready");
        let created = rocket::futures::future::join_all((0..20).map(|n| api(port, "alice", "POST", "tasks", Some(json!({"title": format!("t{n}")}))))).await;
        let mut expected: Vec<i64> = created.iter().map(|(status, task)| {
            assert_eq!(*status, 201);
            task["id"].as_i64().unwrap()
        }).collect();
        let mut got = Vec::new();
        let mut ids = Vec::new();
        for _ in 0..20 {
            let frame = stream.event().await.expect("an event per write");
            ids.push(frame.id.clone().unwrap().parse::<i64>().unwrap());
            got.push(frame.json()["id"].as_i64().unwrap());
        }
        assert!(ids.windows(2).all(|w| w[1] == w[0] + 1), "{ids:?}");
        got.sort_unstable();
        expected.sort_unstable();
        assert_eq!(got, expected, "each write once");
        assert!(stream.next(Duration::from_millis(300)).await.is_none_or(|f| f.comment), "nothing more");
        server.stop().await;
    }

    async fn the_retention_deletes_old_events_and_keeps_what_a_stream_needs(backend) {
        let server = LiveServer::start(backend, |f| f.merge(Serialized::global("events.retention", "2s"))).await;
        let port = server.port;
        let mut stream = Stream::open(port, "/api/alice/events", &bearer("alice")).await;
        stream.event().await.expect("ready");
        let mut ids = Vec::new();
        for title in ["a", "b", "c"] {
            api(port, "alice", "POST", "tasks", Some(json!({"title": title}))).await;
            ids.push(stream.event().await.and_then(|f| f.id).unwrap());
        }
        drop(stream);
        let pool = helpers::pool_of(&server.db_url).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        let b: i64 = ids[1].parse().unwrap();
        loop {
            let left: i64 = on_pool!(&pool, |p| sqlx::query_scalar("SELECT COUNT(*) FROM task_events WHERE id <= $1").bind(b).fetch_one(p).await).unwrap();
            if left == 0 {
                break;
            }
            assert!(Instant::now() < deadline, "events past the retention are deleted");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let (_, d) = api(port, "alice", "POST", "tasks", Some(json!({"title": "d"}))).await;
        // From `a`: `b` is gone, so the client must refetch.
        let mut from_a = Stream::open(port, "/api/alice/events", &format!("{}Last-Event-ID: {}\r\n", bearer("alice"), ids[0])).await;
        from_a.event().await.expect("ready");
        assert_eq!(from_a.event().await.and_then(|f| f.event).as_deref(), Some("reset"));
        // From `c`: what comes after it is within the retention, so it is replayed.
        let mut from_c = Stream::open(port, "/api/alice/events", &format!("{}Last-Event-ID: {}\r\n", bearer("alice"), ids[2])).await;
        from_c.event().await.expect("ready");
        let replayed = from_c.event().await.expect("d");
        assert_eq!(replayed.event.as_deref(), Some("task.created"));
        assert_eq!(replayed.json(), d);
        server.stop().await;
    }

    async fn streams_end_at_once_on_shutdown(backend) {
        let server = LiveServer::start(backend, |f| f).await;
        let mut streams = Vec::new();
        for user in ["alice", "bob", "carol"] {
            let mut stream = Stream::open(server.port, &format!("/api/{user}/events"), &bearer(user)).await;
            stream.event().await.expect("ready");
            streams.push(stream);
        }
        let started = Instant::now();
        server.stop().await;
        assert!(started.elapsed() < Duration::from_secs(3), "shutdown took {:?}", started.elapsed());
        for mut stream in streams {
            assert!(stream.next(Duration::from_secs(2)).await.is_none_or(|f| f.comment), "the stream ended");
        }
    }
}

on_both_backends! {
    async fn one_round_of_the_retention_deletes_a_bounded_number_of_events_and_nothing_newer(backend) {
        // The schema from a service, which then stops (its own retention must not run beside
        // the rounds measured here).
        let database = TestDatabase::fresh(backend).await;
        LiveServer::start_on(TestDatabase::existing(&database.url), |f| f).await.stop().await;
        let pool = helpers::pool_of(&database.url).await;
        let batch = todo_api::events::PRUNE_BATCH;
        let rounds = i64::try_from(todo_api::events::PRUNE_ROUNDS).unwrap();
        let bound = batch * rounds;
        // More old events than one round may delete, then one recent event of the same user
        // (SQLite keeps each user's newest event whatever its age).
        let old = bound + batch / 2;
        let seed = match backend {
            Backend::Postgres => "INSERT INTO task_events (user_id, id, kind, task_id, data, created_at) \
                SELECT 'old', n, 'created', n, '{}', now() - interval '2 days' FROM generate_series(1, $1) AS n"
                .to_owned(),
            Backend::Sqlite => "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $1) \
                INSERT INTO task_events (user_id, id, kind, task_id, data, created_at) \
                SELECT 'old', i, 'created', i, '{}', strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-2 days') FROM n"
                .to_owned(),
        };
        on_pool!(&pool, |p| sqlx::query(&seed).bind(old).execute(p).await.map(drop)).unwrap();
        on_pool!(&pool, |p| sqlx::query("INSERT INTO task_events (user_id, id, kind, task_id, data) VALUES ('old', $1, 'created', 1, '{}')")
            .bind(old + 1).execute(p).await.map(drop)).unwrap();
        let left = || async {
            on_pool!(&pool, |p| sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM task_events WHERE user_id = 'old'").fetch_one(p).await).unwrap()
        };
        let retention = Duration::from_secs(3600);
        assert_eq!(left().await, old + 1, "{backend:?}: seeded");
        let first = todo_api::events::prune_round(&pool, retention).await;
        assert_eq!(i64::try_from(first).unwrap(), bound, "{backend:?}: one round deletes at most {bound}");
        assert_eq!(left().await, old - bound + 1);
        let second = todo_api::events::prune_round(&pool, retention).await;
        assert_eq!(i64::try_from(second).unwrap(), old - bound, "{backend:?}: the next round the rest");
        let kept: Vec<i64> = on_pool!(&pool, |p| sqlx::query_scalar("SELECT id FROM task_events WHERE user_id = 'old'").fetch_all(p).await).unwrap();
        assert_eq!(kept, [old + 1], "{backend:?}: the recent event stays");
        assert_eq!(todo_api::events::prune_round(&pool, retention).await, 0);
        on_pool!(&pool, |p| p.close().await);
    }
}

/// A task at every field's limit, in 4-byte characters and in characters JSON escapes as
/// `\u00XX`, reaches a stream whole on both databases (on PostgreSQL such a task is too
/// large for a notification, so it travels through the event table).
#[rocket::async_test]
async fn the_largest_tasks_arrive_whole() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        if backend == Backend::Postgres && crate::helpers::postgres_url().is_none() {
            continue;
        }
        let server = LiveServer::start(backend, |f| f).await;
        let port = server.port;
        let mut stream = Stream::open(port, "/api/alice/events", &bearer("alice")).await;
        stream.event().await.expect("ready");
        for c in ['😀', '\u{1}'] {
            let body = json!({"title": c.to_string().repeat(200), "description": c.to_string().repeat(1000), "category": c.to_string().repeat(100)});
            let (status, created) = api(port, "alice", "POST", "tasks", Some(body)).await;
            assert_eq!(status, 201);
            let frame = stream.event().await.expect("the event");
            assert_eq!(frame.event.as_deref(), Some("task.created"));
            assert_eq!(frame.json(), created, "{backend:?} {c:?}");
        }
        server.stop().await;
    }
}

/// PostgreSQL: two instances on one database; a write through one reaches a stream held by
/// the other, with the same event id a stream on the first sees.
#[rocket::async_test]
async fn a_write_through_one_instance_reaches_streams_on_another() {
    if crate::helpers::postgres_url().is_none() {
        return;
    }
    let first = LiveServer::start(Backend::Postgres, |f| f).await;
    let second = LiveServer::start_on(TestDatabase::existing(&first.db_url), |f| f).await;
    let mut on_first = Stream::open(first.port, "/api/alice/events", &bearer("alice")).await;
    let mut on_second = Stream::open(second.port, "/api/alice/events", &bearer("alice")).await;
    on_first.event().await.expect("ready");
    on_second.event().await.expect("ready");
    let (_, created) = api(
        first.port,
        "alice",
        "POST",
        "tasks",
        Some(json!({"title": "from the first"})),
    )
    .await;
    let (_, updated) = api(
        second.port,
        "alice",
        "PATCH",
        &format!("tasks/{}", created["id"]),
        Some(json!({"priority": "high"})),
    )
    .await;
    let mut on_first_ids = Vec::new();
    for (n, stream) in [&mut on_first, &mut on_second].into_iter().enumerate() {
        let a = stream.event().await.expect("created");
        let b = stream.event().await.expect("updated");
        if n == 0 {
            on_first_ids = vec![a.id.clone().unwrap(), b.id.clone().unwrap()];
        } else {
            assert_eq!(
                vec![a.id.clone().unwrap(), b.id.clone().unwrap()],
                on_first_ids,
                "the same ids on both"
            );
        }
        assert_eq!(
            (a.event.as_deref(), a.json()),
            (Some("task.created"), created.clone())
        );
        assert_eq!(
            (b.event.as_deref(), b.json()),
            (Some("task.updated"), updated.clone())
        );
    }
    // A client of the first resumes on the second, from the log.
    let first_id = on_first_ids[0].clone();
    let resume = format!("{}Last-Event-ID: {first_id}\r\n", bearer("alice"));
    let mut resumed = Stream::open(second.port, "/api/alice/events", &resume).await;
    resumed.event().await.expect("ready");
    let replayed = resumed.event().await.expect("the update");
    assert_eq!(replayed.id.as_ref(), Some(&on_first_ids[1]));
    assert_eq!(replayed.json(), updated);
    second.stop().await;
    first.stop().await;
}

/// PostgreSQL: ends the other sessions of the database at `db_url` for which `which` (a
/// condition on `pg_stat_activity`) holds, as an outage would; returns how many.
async fn cut_sessions(db_url: &str, which: &str) -> i64 {
    use sqlx::Connection as _;
    let mut admin = sqlx::PgConnection::connect(db_url).await.unwrap();
    let cut = sqlx::query_scalar(&format!(
        "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid() AND ({which})"
    ))
    .fetch_one(&mut admin)
    .await
    .unwrap();
    admin.close().await.ok();
    cut
}

/// PostgreSQL: every session of the service's database is cut under open streams (what a
/// restart of PostgreSQL does to the service): the streams stay open, nothing is lost, no
/// `reset`, and writes after it arrive.
#[rocket::async_test]
async fn cutting_every_database_session_loses_no_event() {
    if crate::helpers::postgres_url().is_none() {
        return;
    }
    let server = LiveServer::start(Backend::Postgres, |f| {
        f.merge(Serialized::global("events.poll_ms", 300))
    })
    .await;
    let port = server.port;
    let mut stream = Stream::open(port, "/api/alice/events", &bearer("alice")).await;
    stream.event().await.expect("ready");
    let (_, before) = api(
        port,
        "alice",
        "POST",
        "tasks",
        Some(json!({"title": "before"})),
    )
    .await;
    assert_eq!(stream.event().await.map(|f| f.json()), Some(before));
    let cut = cut_sessions(&server.db_url, "TRUE").await;
    assert!(cut >= 2, "the pool's and the listener's sessions: {cut}");
    let deadline = Instant::now() + Duration::from_secs(20);
    let after = loop {
        let (status, created) = api(
            port,
            "alice",
            "POST",
            "tasks",
            Some(json!({"title": "after"})),
        )
        .await;
        if status == 201 {
            break created;
        }
        assert!(Instant::now() < deadline, "writes work again: {status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let frame = stream.event().await.expect("the write after the cut");
    assert_eq!(frame.event.as_deref(), Some("task.created"), "no reset");
    assert_eq!(frame.json(), after);
    server.stop().await;
}

/// PostgreSQL: a session elsewhere that wrote and then sits idle in its transaction
/// holds back no event; and a write that began first but commits after a later write of
/// another user sends its event once, to its user only.
#[rocket::async_test]
async fn events_flow_past_idle_transactions_and_out_of_order_commits() {
    use sqlx::Connection as _;
    if crate::helpers::postgres_url().is_none() {
        return;
    }
    let server = LiveServer::start(Backend::Postgres, |f| f).await;
    let port = server.port;
    let (_, slow) = api(
        port,
        "alice",
        "POST",
        "tasks",
        Some(json!({"title": "slow"})),
    )
    .await;
    let mut idle = sqlx::PgConnection::connect(&server.db_url).await.unwrap();
    sqlx::query("BEGIN").execute(&mut idle).await.unwrap();
    sqlx::query("CREATE TEMP TABLE held (n INT)")
        .execute(&mut idle)
        .await
        .unwrap();
    sqlx::query("INSERT INTO held VALUES (1)")
        .execute(&mut idle)
        .await
        .unwrap();
    let mut alice = Stream::open(port, "/api/alice/events", &bearer("alice")).await;
    let mut bob = Stream::open(port, "/api/bob/events", &bearer("bob")).await;
    alice.event().await.expect("ready");
    bob.event().await.expect("ready");
    // Alice's update waits on a row lock taken by another session, so it starts first and
    // commits after bob's create.
    let mut locker = sqlx::PgConnection::connect(&server.db_url).await.unwrap();
    sqlx::query("BEGIN").execute(&mut locker).await.unwrap();
    sqlx::query("SELECT 1 FROM tasks WHERE id = $1 FOR UPDATE")
        .bind(slow["id"].as_i64().unwrap())
        .execute(&mut locker)
        .await
        .unwrap();
    let path = format!("tasks/{}", slow["id"]);
    let waiting = tokio::spawn(async move {
        api(
            port,
            "alice",
            "PATCH",
            &path,
            Some(json!({"title": "slow, done"})),
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, bobs) = api(port, "bob", "POST", "tasks", Some(json!({"title": "fast"}))).await;
    let frame = bob.event().await.expect("bob's create");
    assert_eq!(frame.json(), bobs);
    sqlx::query("COMMIT").execute(&mut locker).await.unwrap();
    let (status, updated) = waiting.await.unwrap();
    assert_eq!(status, 200);
    let frame = alice.event().await.expect("alice's update");
    assert_eq!(frame.json(), updated);
    assert!(
        alice
            .next(Duration::from_millis(300))
            .await
            .is_none_or(|f| f.comment),
        "once"
    );
    assert!(
        bob.next(Duration::from_millis(300))
            .await
            .is_none_or(|f| f.comment),
        "bob sees only his"
    );
    sqlx::query("ROLLBACK").execute(&mut idle).await.unwrap();
    server.stop().await;
}

/// PostgreSQL: when the listening connection is cut, nothing is lost and no stream gets
/// `reset` (the log has every event): a write made while no connection listens arrives,
/// and once the listener is back it hears again.
#[rocket::async_test]
async fn a_lost_listener_loses_nothing() {
    if crate::helpers::postgres_url().is_none() {
        return;
    }
    let server = LiveServer::start(Backend::Postgres, |f| {
        f.merge(Serialized::global("events.poll_ms", 300))
    })
    .await;
    let port = server.port;
    let mut stream = Stream::open(port, "/api/alice/events", &bearer("alice")).await;
    stream.event().await.expect("ready");
    let cut = cut_sessions(&server.db_url, "query LIKE 'LISTEN%'").await;
    assert_eq!(cut, 1, "one listening connection per instance");
    let mut expected = Vec::new();
    for title in ["during", "after"] {
        let (status, created) = api(
            port,
            "alice",
            "POST",
            "tasks",
            Some(json!({"title": title})),
        )
        .await;
        assert_eq!(status, 201, "the REST API works");
        expected.push(created);
    }
    for created in &expected {
        let frame = stream.event().await.expect("the event");
        assert_eq!(frame.event.as_deref(), Some("task.created"), "no reset");
        assert_eq!(&frame.json(), created);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, _, body) = raw_http(
            port,
            "GET /health/ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        let listener = serde_json::from_str::<Value>(&body).unwrap()["events"]["listener"].clone();
        if listener == "listening" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the listener is back: {listener}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    server.stop().await;
}

on_both_backends! {
    async fn metrics_and_readiness_report_the_streams(backend) {
        let server = LiveServer::start(backend, |f| f).await;
        let port = server.port;
        let mut stream = Stream::open(port, "/api/alice/events", &bearer("alice")).await;
        stream.event().await.expect("ready");
        api(port, "alice", "POST", "tasks", Some(json!({"title": "counted"}))).await;
        stream.event().await.expect("the event");
        let (_, _, text) = raw_http(port, "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
        let value = |what: &str| {
            let series = format!("todo_api_events_total{{what=\"{what}\"}} ");
            text.lines().find_map(|l| l.strip_prefix(series.as_str())).and_then(|v| v.parse::<i64>().ok())
        };
        let open = text.lines().find_map(|l| l.strip_prefix("todo_api_event_streams_open "));
        assert_eq!(open, Some("1"), "{text}");
        assert_eq!(value("published"), Some(1));
        assert_eq!(value("delivered"), Some(1));
        assert_eq!(value("streams_dropped_slow"), Some(0));
        assert_eq!(value("listener_reconnects"), Some(0));
        let (_, _, body) = raw_http(port, "GET /health/ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
        let ready: Value = serde_json::from_str(&body).unwrap();
        let expected = if backend == Backend::Sqlite { "in_process" } else { "listening" };
        assert_eq!(ready["events"], json!({"listener": expected, "streams": 1}));
        let state = format!("todo_api_event_listener_state{{state=\"{expected}\"}} 1");
        assert!(text.lines().any(|l| l == state), "{text}");
        server.stop().await;
    }
}

on_both_backends! {
    async fn an_event_source_from_an_allowed_origin_may_read_the_stream(backend) {
        let server = LiveServer::start(backend, |f| f).await;
        let origin = "Origin: http://localhost:3000\r\n";
        let mut stream = Stream::open(server.port, &format!("/api/alice/events?access_token={}", token("alice")), origin).await;
        assert_eq!(stream.status, 200);
        assert_eq!(stream.header("access-control-allow-origin"), Some("http://localhost:3000"));
        assert_eq!(stream.header("access-control-allow-credentials"), Some("true"), "credentials in every mode");
        assert_eq!(stream.event().await.and_then(|f| f.event).as_deref(), Some("ready"));
        // With a header-capable client, the preflight allows Authorization and Last-Event-ID.
        let (status, headers, _) = raw_http(server.port, &format!(
            "OPTIONS /api/alice/events HTTP/1.1\r\nHost: x\r\n{origin}Access-Control-Request-Method: GET\r\n\
             Access-Control-Request-Headers: authorization, last-event-id\r\nConnection: close\r\n\r\n")).await;
        assert!(status == 200 || status == 204, "{status}");
        let allowed = headers.iter().find(|(n, _)| n == "access-control-allow-headers").map(|(_, v)| v.to_ascii_lowercase()).unwrap_or_default();
        assert!(allowed.contains("last-event-id") && allowed.contains("authorization"), "{allowed}");
        server.stop().await;
    }
}

on_both_backends! {
    async fn a_client_that_stops_reading_is_dropped_while_others_keep_receiving(backend) {
        let server = LiveServer::start(backend, |f| f).await;
        let port = server.port;
        // A reader that never reads, with a small receive buffer so the server's writes
        // back up soon.
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let mut slow = socket.connect(([127, 0, 0, 1], port).into()).await.unwrap();
        slow.write_all(format!("GET /api/alice/events HTTP/1.0\r\nHost: x\r\n{}\r\n", bearer("alice")).as_bytes()).await.unwrap();
        let mut fast = Stream::open(port, "/api/alice/events", &bearer("alice")).await;
        fast.event().await.expect("ready");
        // Events of about 4 KiB: enough of them to fill every buffer on the way (the
        // server's socket buffer grows to some hundreds of KiB on loopback).
        let big = "😀".repeat(1000);
        let dropped = || async {
            let (_, _, metrics) = raw_http(port, "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
            metrics.lines().find_map(|l| l.strip_prefix("todo_api_events_total{what=\"streams_dropped_slow\"} ")).and_then(|v| v.parse::<i64>().ok())
        };
        // Events of about 4 KiB, until every buffer on the way to the slow reader is full
        // (the server's socket buffer grows to some hundreds of KiB on loopback).
        let mut n = 0;
        while dropped().await == Some(0) {
            assert!(n < 3000, "the slow stream is never dropped");
            for _ in 0..100 {
                let (status, _) = api(port, "alice", "POST", "tasks", Some(json!({"title": format!("t{n}"), "description": big}))).await;
                assert_eq!(status, 201, "writers are never slowed or refused");
                let frame = fast.event().await.expect("the fast reader keeps receiving");
                assert_eq!(frame.json()["title"], format!("t{n}"));
                n += 1;
            }
        }
        assert_eq!(dropped().await, Some(1), "the slow stream was dropped, and only it");
        // Once it reads again, it finds the end of its stream (and reconnects, as EventSource does).
        let mut sink = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), tokio::io::AsyncReadExt::read_to_end(&mut slow, &mut sink)).await;
        assert!(matches!(read, Ok(Ok(_))), "the dropped stream ends");
        server.stop().await;
    }
}

on_both_backends! {
    async fn the_token_scoped_stream_is_the_same_stream(backend) {
        let server = LiveServer::start(backend, |f| f).await;
        let port = server.port;
        let mut scoped = Stream::open(port, &format!("/api/events?access_token={}", token("alice")), "").await;
        let mut by_header = Stream::open(port, "/api/events", &bearer("alice")).await;
        for stream in [&mut scoped, &mut by_header] {
            assert_eq!(stream.status, 200);
            assert_eq!(stream.event().await.and_then(|f| f.event).as_deref(), Some("ready"));
        }
        let (_, created) = api(port, "alice", "POST", "tasks", Some(json!({"title": "both"}))).await;
        for stream in [&mut scoped, &mut by_header] {
            assert_eq!(stream.event().await.map(|f| f.json()), Some(created.clone()));
        }
        server.stop().await;
    }
}

on_both_backends! {
    async fn an_instance_holds_at_most_events_max_streams(backend) {
        let server = LiveServer::start(backend, |f| f.merge(Serialized::global("events.max_streams", 2))).await;
        let port = server.port;
        let _alice = Stream::open(port, "/api/alice/events", &bearer("alice")).await;
        let _bob = Stream::open(port, "/api/bob/events", &bearer("bob")).await;
        let (status, headers, body) = raw_http(port, &format!("GET /api/carol/events HTTP/1.1\r\nHost: x\r\n{}Connection: close\r\n\r\n", bearer("carol"))).await;
        assert_eq!(status, 503, "{body}");
        let body: Value = serde_json::from_str(&body).unwrap_or_default();
        crate::helpers::assert_error_shape(&body);
        assert_eq!(body["error_code"], "service_unavailable");
        assert!(headers.iter().any(|(n, _)| n == "retry-after"));
        server.stop().await;
    }

    async fn opening_a_stream_counts_once_against_the_rate_limit(backend) {
        let server = LiveServer::start(backend, |f| f.merge(Serialized::global("rate_limit.per_minute", 3))).await;
        let port = server.port;
        let mut stream = Stream::open(port, "/api/alice/events", &bearer("alice")).await;
        assert_eq!(stream.header("ratelimit-remaining"), Some("2"), "the stream counted once");
        stream.event().await.expect("ready");
        // Events on the open stream are not requests: the next call has one fewer left.
        let (status, headers, _) = raw_http(port, &format!("GET /api/alice/tasks HTTP/1.1\r\nHost: x\r\n{}Connection: close\r\n\r\n", bearer("alice"))).await;
        assert_eq!(status, 200);
        assert!(headers.iter().any(|(n, v)| n == "ratelimit-remaining" && v == "1"), "{headers:?}");
        server.stop().await;
    }
}

/// PostgreSQL with PgBouncer: a fresh database and its URL through the pooler; `None`
/// when the tests run without them.
async fn database_and_pooler() -> Option<(TestDatabase, String)> {
    crate::helpers::postgres_url()?;
    let bouncer = crate::helpers::pgbouncer_url()?;
    let database = TestDatabase::fresh(Backend::Postgres).await;
    let pooled = crate::helpers::through_pooler(&database.url, &bouncer);
    Some((database, pooled))
}

/// What `/health/ready` says of the event listener.
async fn listener_state(port: u16) -> Value {
    let (_, _, body) = raw_http(
        port,
        "GET /health/ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    serde_json::from_str::<Value>(&body).unwrap_or_default()["events"]["listener"].clone()
}

/// PostgreSQL: a listener behind a transaction-mode pooler (PgBouncer) hears nothing. It
/// says so (`deaf`), and events still arrive, by polling, within the poll interval.
#[rocket::async_test]
async fn a_listener_behind_a_transaction_pooler_is_deaf_and_events_still_arrive() {
    let Some((database, pooled)) = database_and_pooler().await else {
        return;
    };
    let server = LiveServer::start_on(database, move |f| {
        f.merge(Serialized::global("databases.todo.direct_url", pooled))
            .merge(Serialized::global("events.poll_ms", 200))
    })
    .await;
    let port = server.port;
    assert_eq!(listener_state(port).await, "deaf");
    let mut stream = Stream::open(port, "/api/alice/events", &bearer("alice")).await;
    stream.event().await.expect("ready");
    // A write through another instance (direct), which this one hears of only by polling.
    let other = LiveServer::start_on(TestDatabase::existing(&server.db_url), |f| f).await;
    for n in 0..3 {
        let (_, created) = api(
            other.port,
            "alice",
            "POST",
            "tasks",
            Some(json!({"title": format!("polled {n}")})),
        )
        .await;
        let started = Instant::now();
        let frame = stream.event().await.expect("the event, by polling");
        assert_eq!(frame.json(), created);
        assert!(
            started.elapsed() < Duration::from_millis(1500),
            "within the poll interval: {:?}",
            started.elapsed()
        );
    }
    other.stop().await;
    server.stop().await;
}

/// PostgreSQL, the real binary: a listener URL that is a transaction pooler is said once at
/// WARN, with what to do, however long the service runs, and `/health/ready` keeps saying
/// `deaf`.
#[rocket::async_test]
async fn a_deaf_listener_warns_once() {
    let Some((database, pooled)) = database_and_pooler().await else {
        return;
    };
    let served = helpers::Served::start(
        &database.url,
        &[("DATABASE_DIRECT_URL", &pooled), ("EVENTS_POLL_MS", "100")],
    )
    .await;
    let mut stream = Stream::open(served.port, "/api/alice/events", &bearer("alice")).await;
    stream.event().await.expect("ready");
    // Several seconds of work: polls, writes, readiness checks.
    for n in 0..6 {
        let (status, _) = api(
            served.port,
            "alice",
            "POST",
            "tasks",
            Some(json!({"title": format!("t{n}")})),
        )
        .await;
        assert_eq!(status, 201);
        assert_eq!(
            stream.event().await.and_then(|f| f.event).as_deref(),
            Some("task.created")
        );
        assert_eq!(listener_state(served.port).await, "deaf");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let lines = served.log_lines();
    let deaf: Vec<&Value> = lines
        .iter()
        .filter(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.contains("cannot hear notifications"))
        })
        .collect();
    assert_eq!(deaf.len(), 1, "{deaf:?}");
    assert_eq!(deaf[0]["level"], "WARN");
    let said = deaf[0]["message"].as_str().unwrap();
    assert!(
        said.contains("DATABASE_DIRECT_URL") && said.contains("EVENTS_POLL_MS"),
        "{said}"
    );
    assert!(
        !said.contains(&pooled) && !lines.iter().any(|l| l.to_string().contains("secret")),
        "no URL or secret: {said}"
    );
}

/// The wake-ups (every notification but the listeners' probes) `channel` hears `within`.
async fn wake_ups(channel: &mut sqlx::postgres::PgListener, within: Duration) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + within;
    let mut heard = Vec::new();
    while let Ok(Ok(Some(n))) = tokio::time::timeout_at(deadline, channel.try_recv()).await {
        if !n.payload().starts_with("probe:") {
            heard.push(n.payload().to_owned());
        }
    }
    heard
}

/// PostgreSQL: an instance that is alone sends no wake-ups (nobody would hear them); once
/// another instance starts listening it hears that one's hello and wakes it at once.
/// Polling is an hour away, so only a wake-up can bring the second instance the event.
#[rocket::async_test]
async fn wake_ups_go_out_only_when_another_instance_listens() {
    if crate::helpers::postgres_url().is_none() {
        return;
    }
    let an_hour =
        |f: rocket::figment::Figment| f.merge(Serialized::global("events.poll_ms", 3_600_000));
    let first = LiveServer::start(Backend::Postgres, an_hour).await;
    // What the channel carries, as any listener hears it (this one never probes, so the
    // instances cannot know of it).
    let mut channel = sqlx::postgres::PgListener::connect(&first.db_url)
        .await
        .unwrap();
    channel.listen("task_events").await.unwrap();
    // Past the time answers to the first instance's hello could take.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let (status, _) = api(
        first.port,
        "alice",
        "POST",
        "tasks",
        Some(json!({"title": "alone"})),
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(
        wake_ups(&mut channel, Duration::from_millis(800)).await,
        Vec::<String>::new(),
        "alone: no wake-up"
    );

    let second = LiveServer::start_on(TestDatabase::existing(&first.db_url), an_hour).await;
    let mut stream = Stream::open(second.port, "/api/alice/events", &bearer("alice")).await;
    stream.event().await.expect("ready");
    let (_, created) = api(
        first.port,
        "alice",
        "POST",
        "tasks",
        Some(json!({"title": "heard"})),
    )
    .await;
    let frame = stream.event().await.expect("the event, by a wake-up");
    assert_eq!(frame.json(), created);
    let heard = wake_ups(&mut channel, Duration::from_millis(300)).await;
    assert!(heard.iter().any(|p| p.contains("alice")), "{heard:?}");
    let metrics = raw_http(
        first.port,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await
    .2;
    assert!(
        metrics.contains("todo_api_events_total{what=\"wake_ups_sent\"} 1\n"),
        "{metrics}"
    );
    second.stop().await;
    first.stop().await;
}

/// PostgreSQL: a wake-up for every user (`*`: what a wake-up too long for one notification
/// becomes) makes each instance read the whole log at once. Polling is an hour away here,
/// so only the wake-up can bring the event another instance wrote.
#[rocket::async_test]
async fn a_wake_up_for_every_user_makes_the_feed_read_the_log_at_once() {
    if crate::helpers::postgres_url().is_none() {
        return;
    }
    let server = LiveServer::start(Backend::Postgres, |f| {
        f.merge(Serialized::global("events.poll_ms", 3_600_000))
    })
    .await;
    let mut stream = Stream::open(server.port, "/api/alice/events", &bearer("alice")).await;
    stream.event().await.expect("ready");
    let todo_api::db::AppPool::Postgres(pool) = crate::helpers::pool_of(&server.db_url).await
    else {
        panic!("a PostgreSQL pool")
    };
    // An event written elsewhere (as another instance's write appends it), then `*`.
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO task_event_counters (user_id, last_id) \
         VALUES ('alice', (SELECT last_id FROM task_event_floor WHERE id = 1) + 1) \
         ON CONFLICT (user_id) DO UPDATE SET last_id = task_event_counters.last_id + 1 \
         RETURNING last_id",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO task_events (user_id, id, kind, task_id, data) \
         VALUES ('alice', $1, 'created', 999, '{\"id\":999,\"title\":\"from elsewhere\"}')",
    )
    .bind(id)
    .execute(&pool)
    .await
    .unwrap();
    let started = Instant::now();
    sqlx::query("SELECT pg_notify('task_events', $1)")
        .bind(WAKE_EVERYONE)
        .execute(&pool)
        .await
        .unwrap();
    let frame = stream.event().await.expect("the event, woken by `*`");
    assert_eq!(frame.json()["title"], "from elsewhere");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    server.stop().await;
}

/// The payload of a wake-up for every user.
const WAKE_EVERYONE: &str = "*";

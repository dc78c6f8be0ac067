//! Incremental sync (`GET /api/{user_id}/changes`): a second device that syncs from its last
//! cursor at random points always ends with exactly the server's tasks; a full sync's cursor
//! matches its snapshot while writes run; cursors that cannot be continued are 410.

use std::collections::BTreeMap;

use proptest::prelude::*;
use proptest::strategy::ValueTree as _;
use proptest::test_runner::TestRunner;
use rocket::http::Status;
use serde_json::{json, Value};

use crate::helpers::*;

/// A device's copy of the user's tasks, kept by syncing.
#[derive(Default)]
struct Device {
    tasks: BTreeMap<i64, Value>,
    cursor: Option<i64>,
}

impl Device {
    /// Syncs: from scratch without a cursor, else page by page from it (`limit` per page).
    async fn sync(&mut self, app: &TestApp, user: &str, limit: u32) {
        loop {
            let path = match self.cursor {
                None => "changes".to_owned(),
                Some(cursor) => format!("changes?since={cursor}&limit={limit}"),
            };
            let answer = app.as_user(user).get(&path).await;
            assert_eq!(answer.status, Status::Ok, "{path}: {}", answer.text);
            let body = answer.json();
            if self.cursor.is_none() {
                self.tasks.clear();
            }
            for change in body["changes"].as_array().unwrap() {
                if change["deleted"] == true {
                    self.tasks.remove(&change["id"].as_i64().unwrap());
                } else {
                    let task = change["task"].clone();
                    self.tasks.insert(task["id"].as_i64().unwrap(), task);
                }
            }
            self.cursor = Some(body["cursor"].as_i64().unwrap());
            if body["has_more"] != true {
                return;
            }
        }
    }
}

/// The server's tasks of `user`, by id.
async fn server_tasks(app: &TestApp, user: &str) -> BTreeMap<i64, Value> {
    let listed = app.as_user(user).get("tasks?limit=100").await;
    assert_eq!(listed.status, Status::Ok);
    listed
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["id"].as_i64().unwrap(), t.clone()))
        .collect()
}

#[derive(Debug, Clone)]
enum Op {
    Create,
    Edit(usize),
    Toggle(usize),
    Delete(usize),
    ClearCompleted,
    Sync(u32),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => Just(Op::Create),
        2 => any::<usize>().prop_map(Op::Edit),
        2 => any::<usize>().prop_map(Op::Toggle),
        1 => any::<usize>().prop_map(Op::Delete),
        1 => Just(Op::ClearCompleted),
        2 => (1_u32..5).prop_map(Op::Sync),
    ]
}

on_every_database! {
    async fn a_device_syncing_from_its_cursor_always_has_the_servers_tasks(app) {
        // Generated cases (no shrinking: each runs against the live service).
        let mut runner = TestRunner::deterministic();
        let strategy = proptest::collection::vec(op(), 10..40);
        for case in 0..6 {
            let user = format!("sync-{case}");
            let ops = strategy.new_tree(&mut runner).unwrap().current();
            let mut device = Device::default();
            let mut n = 0;
            for op in &ops {
                let ids: Vec<i64> = server_tasks(&app, &user).await.keys().copied().collect();
                let pick = |i: &usize| ids.get(i % ids.len().max(1)).copied();
                let caller = app.as_user(&user);
                match op {
                    Op::Create => {
                        n += 1;
                        assert_eq!(caller.post("tasks", &json!({"title": format!("task {n}")})).await.status, Status::Created);
                    }
                    Op::Edit(i) => if let Some(id) = pick(i) {
                        n += 1;
                        caller.patch(&format!("tasks/{id}"), Some(&json!({"title": format!("edit {n}")}))).await;
                    },
                    Op::Toggle(i) => if let Some(id) = pick(i) {
                        caller.patch(&format!("tasks/{id}/complete"), None).await;
                    },
                    Op::Delete(i) => if let Some(id) = pick(i) {
                        caller.delete(&format!("tasks/{id}")).await;
                    },
                    Op::ClearCompleted => {
                        caller.delete("tasks?completed=true").await;
                    }
                    Op::Sync(limit) => {
                        device.sync(&app, &user, *limit).await;
                        assert_eq!(device.tasks, server_tasks(&app, &user).await, "case {case}, after {op:?} in {ops:?}");
                    }
                }
            }
            device.sync(&app, &user, 3).await;
            assert_eq!(device.tasks, server_tasks(&app, &user).await, "case {case}: {ops:?}");
        }
    }

    async fn the_snapshots_cursor_matches_it_while_writes_run(app) {
        let done = std::sync::atomic::AtomicBool::new(false);
        let writer = async {
            for n in 0..60 {
                let created = app.as_user("alice").post("tasks", &json!({"title": format!("w{n}")})).await;
                assert_eq!(created.status, Status::Created);
            }
            done.store(true, std::sync::atomic::Ordering::SeqCst);
        };
        let syncer = async {
            let mut checked = 0;
            // Snapshots until the writes are over (the last one sees them all).
            loop {
                let last = done.load(std::sync::atomic::Ordering::SeqCst);
                let snapshot = app.as_user("alice").get("changes").await.json();
                let cursor = snapshot["cursor"].as_i64().unwrap();
                let held: Vec<i64> = snapshot["changes"].as_array().unwrap().iter()
                    .map(|c| c["task"]["id"].as_i64().unwrap()).collect();
                // What the log has after the cursor was not in the snapshot: no task is
                // created twice, so a created task there must not be one it already held.
                let after = app.as_user("alice").get(&format!("changes?since={cursor}&limit=1000")).await.json();
                for change in after["changes"].as_array().unwrap() {
                    let id = change["task"]["id"].as_i64().unwrap();
                    assert!(!held.contains(&id), "task {id} is in the snapshot and after its cursor {cursor}");
                }
                checked += held.len();
                if last {
                    break;
                }
                tokio::task::yield_now().await;
            }
            checked
        };
        let ((), checked) = tokio::join!(writer, syncer);
        assert!(checked > 0);
        let mut device = Device::default();
        device.sync(&app, "alice", 7).await;
        assert_eq!(device.tasks.len(), 60);
        assert_eq!(device.tasks, server_tasks(&app, "alice").await);
    }

    async fn cursors_that_cannot_be_continued_are_410_and_never_cross_users(app) {
        let alice = app.as_user("alice");
        for n in 0..5 {
            alice.post("tasks", &json!({"title": format!("a{n}")})).await;
        }
        let head = alice.get("changes").await.json()["cursor"].as_i64().unwrap();
        for since in [format!("{}", head + 1), "-1".to_owned(), "abc".to_owned(), "1e3".to_owned()] {
            let refused = alice.get(&format!("changes?since={since}")).await;
            assert_eq!(refused.status, Status::Gone, "{since}");
            assert_eq!(refused.error_code(), "cursor_expired");
            assert_error_shape(&refused.json());
        }
        for limit in ["0", "1001", "x"] {
            let refused = alice.get(&format!("changes?since={head}&limit={limit}")).await;
            assert_eq!(refused.status, Status::UnprocessableEntity, "{limit}");
            assert!(refused.json()["field_errors"]["limit"].is_array());
        }
        // The cursor at the head: nothing new.
        let idle = alice.get(&format!("changes?since={head}")).await.json();
        assert_eq!(idle, json!({"changes": [], "cursor": head, "has_more": false}));

        // Bob, from Alice's cursor: never Alice's tasks.
        app.as_user("bob").post("tasks", &json!({"title": "bob's"})).await;
        let bob = app.as_user("bob").get(&format!("changes?since={}", head - 3)).await;
        assert!(!bob.text.contains("\"a"), "{}", bob.text);

        // Events deleted by the retention: the cursor before them cannot be continued.
        let first = alice.get("changes?since=0&limit=1").await;
        let start = if first.status == Status::Ok { 0 } else { head - 5 };
        on_pool!(&pool_of(&app.db_url).await, |p| drop(
            sqlx::query("DELETE FROM task_events WHERE user_id = 'alice' AND id <= (SELECT min(id) + 1 FROM task_events WHERE user_id = 'alice')")
                .execute(p).await.unwrap()
        ));
        let gone = alice.get(&format!("changes?since={start}")).await;
        assert_eq!(gone.status, Status::Gone, "{}", gone.text);
        // A full sync always works, and its cursor continues.
        let fresh = alice.get("changes").await.json();
        assert_eq!(fresh["changes"].as_array().unwrap().len(), 5);
        assert_eq!(alice.get(&format!("changes?since={}", fresh["cursor"])).await.status, Status::Ok);
        // The token-scoped twin is the same route.
        let token = todo_api::auth::mint_hs256(TEST_SECRET, "alice", 600).unwrap();
        let scoped = app.with_token(&token).get("/api/changes").await;
        assert_eq!(scoped.json()["cursor"], fresh["cursor"]);
    }
}

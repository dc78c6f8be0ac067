//! The recorded answer set: fixed data (ids, texts, times and versions alike on every
//! database) and a set of reads whose every status, header and body byte is compared with
//! `tests/fixtures/answers.txt`. It holds the answers still while their code is made cheaper,
//! and it holds SQLite and PostgreSQL to the same bytes. `RECORD_ANSWERS=1` writes the file
//! afresh (then review its diff: every change in it is a change of the API).

use chrono::{DateTime, Duration, Utc};
use rocket::http::Status;
use serde_json::json;

use crate::helpers::*;

const RECORDED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/answers.txt");

/// Headers that differ between two runs of the same requests, left out of the record.
const VOLATILE: &[&str] = &[
    "x-request-id",
    "date",
    "ratelimit-remaining",
    "ratelimit-reset",
];

/// The reads recorded, as one user sees them.
const READS: &[&str] = &[
    "tasks",
    "tasks?limit=3",
    "tasks?limit=3&offset=3",
    "tasks?limit=2&offset=6",
    "tasks?offset=50",
    "tasks?sort=title",
    "tasks?sort=title&order=asc",
    "tasks?sort=priority&order=desc",
    "tasks?sort=due_date&order=asc",
    "tasks?sort=updated_at",
    "tasks?sort=status",
    "tasks?status=completed",
    "tasks?status=pending&sort=created_at&order=asc",
    "tasks?completed=false&priority=high",
    "tasks?priority=low&priority=high",
    "tasks?category=home",
    "tasks?q=milk",
    "tasks?q=%C3%A9t%C3%A9",
    "tasks?due_before=2090-01-01T00:00:00Z",
    "tasks?overdue=true",
    "tasks/1",
    "tasks/2",
    "tasks/999",
    "tasks?sort=nonsense",
    "stats",
];

/// Seven tasks of alice, two of bob, made through the API; then their times set.
async fn arrange(app: &TestApp) {
    let alice = app.as_user("alice");
    for body in [
        json!({"title": "Buy milk", "priority": "low", "category": "home", "due_date": "2020-03-01T09:00:00Z"}),
        json!({"title": "Walk the dog", "description": "Round the \"park\"\nand back", "priority": "high", "completed": true}),
        json!({"title": "Pay rent", "priority": "high", "category": "money", "due_date": "2090-12-03T12:00:00+02:00"}),
        json!({"title": "Read Été by Colette", "description": "été, 夏, 🌞", "priority": "medium"}),
        json!({"title": "milk again", "category": "home", "due_date": "2020-11-30T08:00:00Z"}),
        json!({"title": "Call mum", "priority": "low", "description": ""}),
        json!({"title": "File taxes <2025> & more", "priority": "high", "category": "money", "completed": true, "due_date": "2089-04-15T23:59:59.123456Z"}),
    ] {
        let made = alice.post("tasks", &body).await;
        assert_eq!(made.status, Status::Created, "{}", made.text);
    }
    let bob = app.as_user("bob");
    for title in ["Bob's milk", "Bob's rent"] {
        let made = bob
            .post("tasks", &json!({"title": title, "priority": "high"}))
            .await;
        assert_eq!(made.status, Status::Created, "{}", made.text);
    }
    // Versions above 1 and a completion changed twice.
    assert_eq!(
        alice
            .patch("tasks/3", Some(&json!({"title": "Pay the rent"})))
            .await
            .status,
        Status::Ok
    );
    assert_eq!(
        alice.patch("tasks/5/complete", None).await.status,
        Status::Ok
    );
    assert_eq!(
        alice.patch("tasks/5/complete", None).await.status,
        Status::Ok
    );

    let start: DateTime<Utc> = "2026-06-01T08:00:00.250000Z".parse().unwrap();
    let pool = pool_of(&app.db_url).await;
    for id in 1..=9i64 {
        let created = start + Duration::minutes(37 * id);
        // Not in id order, so that `updated_at` sorts otherwise than `created_at`.
        let updated = created + Duration::seconds(((id * 7919) % 13) * 3600 + id);
        let changed = on_pool!(&pool, |p| sqlx::query(
            "UPDATE tasks SET created_at = $1, updated_at = $2 WHERE id = $3"
        )
        .bind(created)
        .bind(updated)
        .bind(id)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))
        .unwrap();
        assert_eq!(changed, 1, "task {id}");
    }
}

/// One answer as recorded: the request, the status, the headers by name, the body.
fn record(request: &str, answer: &TestResponse) -> String {
    let mut headers: Vec<(String, &str)> = answer
        .headers
        .iter()
        .map(|(name, value)| (name.to_ascii_lowercase(), value.as_str()))
        .filter(|(name, _)| !VOLATILE.contains(&name.as_str()))
        .collect();
    headers.sort();
    let mut out = format!("GET {request}\n{}\n", answer.status.code);
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\n"));
    }
    out.push_str(&answer.text);
    out.push_str("\n\n");
    out
}

on_every_database! {
    async fn the_answers_are_the_recorded_ones_byte_for_byte(app) {
        arrange(&app).await;
        let alice = app.as_user("alice");
        let mut answers = String::new();
        for request in READS {
            answers.push_str(&record(request, &alice.get(request).await));
        }
        if std::env::var_os("RECORD_ANSWERS").is_some() {
            // Written whole and renamed into place: the other databases' cases read it
            // meanwhile.
            let dir = std::path::Path::new(RECORDED).parent().unwrap();
            let mut file = tempfile::NamedTempFile::new_in(dir).unwrap();
            std::io::Write::write_all(&mut file, answers.as_bytes()).unwrap();
            file.persist(RECORDED).unwrap();
        }
        let recorded = std::fs::read_to_string(RECORDED).unwrap();
        if answers != recorded {
            // The first differing byte, with some of what surrounds it.
            let at = answers
                .bytes()
                .zip(recorded.bytes())
                .position(|(a, b)| a != b)
                .unwrap_or(answers.len().min(recorded.len()));
            let line = answers.as_bytes()[..at].iter().filter(|b| **b == b'\n').count() + 1;
            let around = |text: &str| -> String {
                let from = at.saturating_sub(60);
                let to = (at + 60).min(text.len());
                String::from_utf8_lossy(&text.as_bytes()[from..to]).into_owned()
            };
            panic!(
                "answer differs from tests/fixtures/answers.txt at line {line}:\n  now:      {:?}\n  recorded: {:?}",
                around(&answers),
                around(&recorded)
            );
        }
    }
}

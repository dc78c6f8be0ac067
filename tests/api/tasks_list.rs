//! Listing: filters, sort, paging, and the 422 for unknown values.

use rocket::http::Status;
use serde_json::{json, Value};

use crate::helpers::on_pool;

use crate::helpers::{on_every_database, TestApp, TestDatabase};

async fn titles(app: &TestApp, query: &str) -> Vec<String> {
    let response = app
        .as_user("alice")
        .get(&format!("/api/alice/tasks?{query}"))
        .await;
    assert_eq!(response.status, Status::Ok, "{query}: {}", response.text);
    response
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["title"].as_str().unwrap().to_owned())
        .collect()
}

async fn seed(app: &TestApp) {
    for body in [
        json!({"title": "a", "priority": "low", "category": "work", "due_at": "2020-01-01T00:00:00Z"}),
        json!({"title": "b", "priority": "high", "category": "work", "completed": true, "due_at": "2020-06-01T00:00:00Z"}),
        json!({"title": "c", "priority": "medium", "category": "home", "due_at": "2999-01-01T00:00:00Z"}),
        json!({"title": "d", "priority": "high"}),
    ] {
        app.create_task("alice", body).await;
    }
    app.create_task("bob", json!({"title": "bob", "priority": "high"}))
        .await;
}

/// Inserts `count` tasks for `user` in one statement, with few distinct values per field.
async fn seed_many(app: &TestApp, user: &str, count: i64) {
    let sql = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $2) \
        INSERT INTO tasks (user_id, title, search_title, priority, completed, category, due_at, created_at, updated_at) \
        SELECT $1, 'task ' || (i % 50), 'task ' || (i % 50), 1 + i % 3, i % 4 = 0, \
               CASE WHEN i % 2 = 0 THEN 'work' ELSE NULL END, \
               CASE WHEN i % 5 = 0 THEN NULL WHEN i % 5 < 3 THEN $3 ELSE $4 END, \
               CASE i % 3 WHEN 0 THEN $3 WHEN 1 THEN $4 ELSE $5 END, $5 FROM n";
    let day = |d: u32| {
        chrono::NaiveDate::from_ymd_opt(2026, 1, d)
            .unwrap()
            .and_hms_opt(0, 0, 0)
            .unwrap()
            .and_utc()
    };
    on_pool!(&app.pool().await, |p| sqlx::query(sql)
        .bind(user)
        .bind(count)
        .bind(day(1))
        .bind(day(2))
        .bind(day(3))
        .execute(p)
        .await
        .map(drop)
        .unwrap());
}

/// Titles from letters whose case round-trips one to one (Latin, Greek, Cyrillic), the
/// LIKE wildcards and the escape character; each with a substring of it, some letters
/// upper-cased. Generated deterministically, so a failure repeats.
fn search_cases() -> Vec<(String, String)> {
    use proptest::strategy::{Strategy, ValueTree};
    use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
    const LETTERS: &str = "abcxyzABCXYZ019 %_\\-'éèÉÜüñÑåÅøØçÇαβγΩωжЖяЯ";
    let letters: Vec<char> = LETTERS.chars().collect();
    let strategy = (
        proptest::collection::vec(proptest::sample::select(letters), 2..30),
        0.0..1.0f64,
        0.0..1.0f64,
        proptest::collection::vec(proptest::bool::ANY, 30),
    );
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::deterministic_rng(RngAlgorithm::ChaCha),
    );
    (0..40)
        .map(|i| {
            let (chars, a, b, upper) = strategy.new_tree(&mut runner).unwrap().current();
            // A unique prefix keeps titles distinct; the title is trimmed by the API, so keep its ends.
            let title: String = format!("t{i} {} e", chars.iter().collect::<String>());
            let body: Vec<char> = title.chars().collect();
            let start = ((a * body.len() as f64) as usize).min(body.len() - 1);
            let len = 1 + ((b * (body.len() - start) as f64) as usize).min(body.len() - start - 1);
            let needle: String = body[start..start + len]
                .iter()
                .zip(upper.iter().cycle())
                .map(|(c, up)| {
                    if *up {
                        c.to_uppercase().next().unwrap_or(*c)
                    } else {
                        *c
                    }
                })
                .collect();
            (title, needle)
        })
        .collect()
}

on_every_database! {
    async fn filters_combine_with_and(app) {
        seed(&app).await;
        assert_eq!(titles(&app, "").await, ["d", "c", "b", "a"]);
        assert_eq!(titles(&app, "completed=true").await, ["b"]);
        assert_eq!(titles(&app, "completed=false").await, ["d", "c", "a"]);
        assert_eq!(titles(&app, "status=pending").await, ["d", "c", "a"]);
        assert_eq!(titles(&app, "status=completed").await, ["b"]);
        assert_eq!(titles(&app, "status=all").await, ["d", "c", "b", "a"]);
        assert_eq!(titles(&app, "priority=high").await, ["d", "b"]);
        assert_eq!(titles(&app, "category=work").await, ["b", "a"]);
        assert_eq!(titles(&app, "due_before=2021-01-01T00:00:00Z").await, ["b", "a"]);
        assert_eq!(titles(&app, "due_after=2020-03-01T00:00:00%2B00:00").await, ["c", "b"]);
        assert_eq!(titles(&app, "overdue=true").await, ["a"]);
        assert_eq!(titles(&app, "overdue=false").await, ["d", "c", "b"]);
        assert_eq!(titles(&app, "category=work&priority=high&completed=true").await, ["b"]);
        assert_eq!(titles(&app, "category=work&status=pending&priority=high").await, Vec::<String>::new());
        assert_eq!(titles(&app, "unknown_parameter=1").await, ["d", "c", "b", "a"]);
    }

    async fn sorting_follows_the_contract(app) {
        seed(&app).await;
        assert_eq!(titles(&app, "order=asc").await, ["a", "b", "c", "d"]);
        assert_eq!(titles(&app, "sort=title").await, ["a", "b", "c", "d"]);
        assert_eq!(titles(&app, "sort=title&order=desc").await, ["d", "c", "b", "a"]);
        assert_eq!(titles(&app, "sort=priority").await, ["a", "c", "b", "d"], "low, medium, high; ties by id");
        assert_eq!(titles(&app, "sort=priority&order=desc").await, ["d", "b", "c", "a"]);
        assert_eq!(titles(&app, "sort=due_at").await, ["a", "b", "c", "d"], "no due date last");
        assert_eq!(titles(&app, "sort=due_at&order=desc").await, ["c", "b", "a", "d"], "no due date last");
        app.as_user("alice").patch("tasks/1", Some(&json!({"title": "a"}))).await;
        assert_eq!(titles(&app, "sort=updated_at").await[0], "a", "most recently updated first");
    }

    async fn paging_sets_total_count_and_links(app) {
        for i in 0..5 {
            app.create_task("alice", json!({"title": format!("t{i}"), "priority": "high"})).await;
        }
        let response = app.as_user("alice").get("tasks?priority=high&limit=2&offset=2").await;
        assert_eq!(response.header("X-Total-Count"), Some("5"));
        let titles: Vec<Value> = response.json().as_array().unwrap().iter().map(|t| t["title"].clone()).collect();
        assert_eq!(titles, [json!("t2"), json!("t1")]);
        let link = response.header("Link").unwrap();
        assert!(link.contains("</api/alice/tasks?priority=high&limit=2&offset=4>; rel=\"next\""), "{link}");
        assert!(link.contains("</api/alice/tasks?priority=high&limit=2&offset=0>; rel=\"prev\""), "{link}");
        let last = app.as_user("alice").get("tasks?limit=2&offset=4").await;
        assert!(!last.header("Link").unwrap().contains("next"));
        let beyond = app.as_user("alice").get("tasks?limit=2&offset=50").await;
        assert_eq!(beyond.json(), json!([]));
        assert_eq!(beyond.header("X-Total-Count"), Some("5"));
        let empty = app.as_user("bob").get("tasks").await;
        assert_eq!(empty.header("X-Total-Count"), Some("0"));
        assert_eq!(empty.header("Link"), None);
    }

    async fn paging_through_2500_tasks_with_ties_sees_each_exactly_once(app) {
        // Three creation times, fifty titles, three priorities, some without due dates:
        // every sort has long runs of ties for the id to break.
        seed_many(&app, "alice", 2500).await;
        seed_many(&app, "bob", 300).await;
        for (query, limit) in [
            ("", 97), ("order=asc", 250), ("sort=title", 100), ("sort=priority&order=desc", 333),
            ("sort=due_at", 128), ("sort=due_at&order=desc", 500), ("sort=updated_at", 1000),
            ("completed=false&sort=priority", 101),
        ] {
            let mut seen = Vec::new();
            let mut next = Some(format!("/api/alice/tasks?{query}&limit={limit}&offset=0"));
            let mut total = None;
            while let Some(url) = next.take() {
                let page = app.as_user("alice").get(&url).await;
                assert_eq!(page.status, Status::Ok, "{url}");
                total = page.header("X-Total-Count").map(str::to_owned);
                seen.extend(page.json().as_array().unwrap().iter().map(|t| t["id"].as_i64().unwrap()));
                next = page.header("Link").and_then(|link| {
                    link.split(", ").find(|l| l.ends_with("rel=\"next\"")).map(|l| l[1..l.find('>').unwrap()].to_owned())
                });
            }
            let expected: usize = if query.contains("completed=false") { 1875 } else { 2500 };
            assert_eq!(total.as_deref(), Some(expected.to_string().as_str()), "{query}");
            assert_eq!(seen.len(), expected, "{query}: every task once, following Link next");
            let mut unique = seen.clone();
            unique.sort_unstable();
            unique.dedup();
            assert_eq!(unique.len(), expected, "{query}: no task twice");
        }
    }

    async fn search_is_case_insensitive_for_any_letter(app) {
        for (title, description) in [
            ("École de musique", None),
            ("ÉCOLE", None),
            ("ecole", None),
            ("Visit", Some("the E\u{301}cole tomorrow")),
            ("50% off", Some("at the Straße shop")),
            ("5_0 off", None),
            ("Ünïcödé", Some("ÇA VA")),
        ] {
            app.create_task("alice", json!({"title": title, "description": description})).await;
        }
        app.create_task("bob", json!({"title": "école for bob"})).await;
        assert_eq!(titles(&app, "q=%C3%A9cole&sort=title").await, ["Visit", "ÉCOLE", "École de musique"]);
        assert_eq!(titles(&app, "q=%C3%89COLE&sort=title").await, ["Visit", "ÉCOLE", "École de musique"]);
        assert_eq!(titles(&app, "q=ecole").await, ["ecole"], "accents are letters, not case");
        assert_eq!(titles(&app, "q=%25").await, ["50% off"], "% is literal");
        assert_eq!(titles(&app, "q=_").await, ["5_0 off"], "_ is literal");
        assert_eq!(titles(&app, "q=STRASSE").await, Vec::<String>::new());
        assert_eq!(titles(&app, "q=stra%C3%9Fe").await, ["50% off"]);
        assert_eq!(titles(&app, "q=%C3%BCn%C3%AFc").await, ["Ünïcödé"]);
        assert_eq!(titles(&app, "q=%C3%A7a%20va").await, ["Ünïcödé"]);
        assert_eq!(titles(&app, "q=off&sort=title").await, ["50% off", "5_0 off"]);
        assert_eq!(titles(&app, "q=").await.len(), 7, "an empty search filters nothing");
        assert_eq!(titles(&app, "q=off&priority=high").await, Vec::<String>::new(), "AND with other filters");

        // Edits keep the search in step with the text.
        let id = app.create_task("alice", json!({"title": "plain"})).await["id"].clone();
        app.as_user("alice").patch(&format!("tasks/{id}"), Some(&json!({"title": "ÅNGSTRÖM", "description": "ÖL"}))).await;
        assert_eq!(titles(&app, "q=%C3%A5ngstr").await, ["ÅNGSTRÖM"]);
        assert_eq!(titles(&app, "q=%C3%B6l").await, ["ÅNGSTRÖM"]);
        app.as_user("alice").patch(&format!("tasks/{id}"), Some(&json!({"description": null}))).await;
        assert_eq!(titles(&app, "q=%C3%B6l").await, Vec::<String>::new(), "a cleared description no longer matches");

        let long = "x".repeat(1001);
        let response = app.as_user("alice").get(&format!("tasks?q={long}")).await;
        assert_eq!(response.status, Status::UnprocessableEntity);
        assert!(response.json()["field_errors"]["q"].is_array());
    }

    async fn any_substring_in_any_case_finds_its_task(app) {
        let cases = search_cases();
        for (title, _) in &cases {
            app.create_task("alice", json!({"title": title})).await;
        }
        for (title, needle) in &cases {
            let trimmed = needle.trim();
            if trimmed.is_empty() {
                continue;
            }
            let query: String = url::form_urlencoded::byte_serialize(trimmed.as_bytes()).collect();
            let found = titles(&app, &format!("q={query}")).await;
            assert!(found.contains(title), "q={trimmed:?} should find {title:?}, found {found:?}");
            for other in &found {
                assert!(other.to_lowercase().contains(&trimmed.to_lowercase()), "q={trimmed:?} found {other:?}");
            }
        }
    }

    async fn tasks_stored_before_the_search_columns_are_found_after_restart(app) {
        let at = chrono::Utc::now();
        let sql = "INSERT INTO tasks (user_id, title, description, priority, created_at, updated_at) \
                   VALUES ('alice', 'Ångström', 'ÉTÉ', 2, $1, $1)";
        on_pool!(&app.pool().await, |p| sqlx::query(sql).bind(at).execute(p).await.map(drop).unwrap());
        // A restart runs the migrations, which fill in the search columns.
        let restarted = TestApp::spawn_on(TestDatabase::existing(&app.db_url), |f| f).await;
        assert_eq!(titles(&restarted, "q=%C3%A5ngstr%C3%B6m").await, ["Ångström"]);
        assert_eq!(titles(&restarted, "q=%C3%A9t%C3%A9").await, ["Ångström"]);
    }

    async fn unknown_values_of_known_parameters_are_422(app) {
        for (query, field) in [
            ("sort=banana", "sort"), ("order=up", "order"), ("limit=0", "limit"), ("limit=1001", "limit"),
            ("limit=ten", "limit"), ("offset=-1", "offset"), ("completed=yes", "completed"),
            ("status=finished", "status"), ("priority=asap", "priority"), ("due_before=tomorrow", "due_before"),
            ("due_after=2026-13-01T00:00:00Z", "due_after"), ("overdue=1", "overdue"),
            ("category=", "category"), ("q=a&q=b", "q"), ("completed=true&completed=false", "completed"),
        ] {
            let response = app.as_user("alice").get(&format!("tasks?{query}")).await;
            assert_eq!(response.status, Status::UnprocessableEntity, "{query}");
            assert!(response.json()["field_errors"][field].is_array(), "{query}: {}", response.text);
        }
        let response = app.as_user("alice").get("tasks?sort=banana&limit=0").await;
        let errors = response.json()["field_errors"].clone();
        assert!(errors["sort"].is_array() && errors["limit"].is_array(), "all reported: {errors}");
    }
}

/// Titles whose order differs between code point order and a language collation.
const MIXED_TITLES: [&str; 11] = [
    "banana",
    "Apple",
    "apple pie",
    "Éclair",
    "eclair",
    "Zebra",
    "zèbre",
    "ábc",
    "ABC",
    "abc",
    "Ωmega",
];

/// The contract's title order: folded title in code point order, then id.
async fn assert_title_order(app: &TestApp) {
    let mut created = Vec::new();
    for title in MIXED_TITLES {
        let task = app.create_task("alice", json!({"title": title})).await;
        created.push((
            todo_api::tasks::search::fold(title),
            task["id"].as_i64().unwrap(),
            title.to_owned(),
        ));
    }
    created.sort();
    let ascending: Vec<String> = created.iter().map(|(_, _, t)| t.clone()).collect();
    assert_eq!(titles(app, "sort=title").await, ascending);
    let mut descending = ascending.clone();
    descending.reverse();
    assert_eq!(titles(app, "sort=title&order=desc").await, descending);
    // Paging through the order sees the same sequence.
    let mut paged = Vec::new();
    for offset in (0..MIXED_TITLES.len()).step_by(4) {
        paged.extend(titles(app, &format!("sort=title&limit=4&offset={offset}")).await);
    }
    assert_eq!(paged, ascending);
}

on_every_database! {
    async fn sort_by_title_folds_case_and_orders_by_code_point(app) {
        assert_title_order(&app).await;
        assert_eq!(titles(&app, "sort=title").await[..3], ["ABC", "abc", "Apple"], "case never splits the order");
    }
}

/// A hosted PostgreSQL created with a language collation orders titles exactly as SQLite.
#[rocket::async_test]
async fn sort_by_title_is_the_same_under_a_language_collation() {
    let Some(server) = crate::helpers::postgres_url() else {
        return;
    };
    let database = TestDatabase::create_postgres(
        &server,
        "TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'",
    )
    .await;
    let app = TestApp::spawn_on(database, |f| f).await;
    assert_title_order(&app).await;
}

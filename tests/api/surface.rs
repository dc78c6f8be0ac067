//! The class-level test: generated requests over the whole HTTP surface (every mounted
//! route, with generated methods, path segments, query strings, headers and bodies). Nothing
//! answers 500, every error is the contract's JSON shape, and no 503 comes while the
//! database is up.
//!
//! Seeded and bounded: `SURFACE_CASES` requests per database (default 150), from the seed
//! `SURFACE_SEED` (default fixed), so a failure repeats. A longer run:
//! `SURFACE_CASES=20000 scripts/test surface`.

use proptest::prelude::*;
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use rocket::http::{Header, Method, Status};
use serde_json::{json, Value};

use crate::helpers::{assert_error_shape, on_both_databases, read};

/// One generated request.
#[derive(Debug, Clone)]
struct Case {
    method: Method,
    path: String,
    query: Vec<(String, String)>,
    headers: Vec<(&'static str, String)>,
    body: Option<Vec<u8>>,
}

impl Case {
    fn uri(&self) -> String {
        if self.query.is_empty() {
            return self.path.clone();
        }
        let query: Vec<String> = self.query.iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!("{}?{}", self.path, query.join("&"))
    }
}

/// Path segments: ordinary, reserved, percent-encoded junk, NUL, invalid UTF-8, huge.
fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => Just("alice".to_owned()),
        1 => Just("bob".to_owned()),
        1 => prop::sample::select(vec![
            "tasks", "stats", "events", "dashboard", "health", "..", ".", "%2e%2e", "%00", "a%00b",
            "%FF", "%C3%28", "%2F", "%20", "%25", "~", "alice%20", "ALICE", "@", "%E2%80%AE",
        ]).prop_map(str::to_owned),
        1 => "[a-zA-Z0-9_.~-]{1,40}",
        1 => (300usize..3000).prop_map(|n| "u".repeat(n)),
    ]
}

fn task_id() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (1i64..6).prop_map(|n| n.to_string()),
        1 => prop::sample::select(vec![
            "0", "-1", "abc", "1e3", "1.5", "%00", "%FF", "99999999999999999999", "9223372036854775807",
            "9223372036854775808", "+1", " 1", "0x10", "1%20", "",
        ]).prop_map(str::to_owned),
        1 => any::<i64>().prop_map(|n| n.to_string()),
    ]
}

fn path() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => (segment()).prop_map(|u| format!("/api/{u}/tasks")),
        6 => (segment(), task_id()).prop_map(|(u, id)| format!("/api/{u}/tasks/{id}")),
        4 => (segment(), task_id()).prop_map(|(u, id)| format!("/api/{u}/tasks/{id}/complete")),
        2 => segment().prop_map(|u| format!("/api/{u}/stats")),
        2 => segment().prop_map(|u| format!("/api/{u}/dashboard/overview")),
        2 => segment().prop_map(|u| format!("/api/{u}/events")),
        1 => prop::sample::select(vec![
            "/health", "/health/live", "/health/ready", "/openapi.json", "/docs/", "/metrics", "/",
            "/api", "/api/", "/api/tasks", "/cors/403", "/_refused", "/api/alice/tasks/1/2/3",
        ]).prop_map(str::to_owned),
        1 => "(/[a-zA-Z0-9%._-]{0,12}){1,5}",
    ]
}

fn query_value() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec![
            "true", "false", "all", "pending", "completed", "low", "medium", "high", "work",
            "title", "priority", "due_at", "created_at", "updated_at", "asc", "desc", "1", "0",
            "-1", "1000", "1001", "2026-12-01T17:00:00Z", "2026-12-01T17:00:00%2B01:00", "",
        ]).prop_map(str::to_owned),
        2 => prop::sample::select(vec![
            "%00", "a%00", "%FF", "%C3%28", "%E0%80%80", "%", "%%", "%2", "+", "%2B", "%26", "%3D",
            "99999999999999999999", "1e308", "NaN", "null", "%0A", "%0D%0A",
        ]).prop_map(str::to_owned),
        1 => "[a-zA-Z0-9 _.%-]{0,20}".prop_map(|v| v.replace(' ', "+")),
        1 => (1000usize..4000).prop_map(|n| "q".repeat(n)),
    ]
}

fn query() -> impl Strategy<Value = Vec<(String, String)>> {
    let key = prop_oneof![
        8 => prop::sample::select(vec![
            "completed", "status", "priority", "category", "q", "due_before", "due_after",
            "overdue", "sort", "order", "limit", "offset",
        ]).prop_map(str::to_owned),
        1 => prop::sample::select(vec!["unknown", "access_token", "last_event_id", "%00", "", "limit%00", "a[b]"])
            .prop_map(str::to_owned),
    ];
    prop::collection::vec((key, query_value()), 0..5)
}

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|n| json!(n)),
        Just(json!(u64::MAX)),
        "\\PC{0,40}".prop_map(Value::String),
        Just(json!("\u{0}")),
        Just(json!("a\u{0}b\\\"\n\t\u{1}")),
        Just(json!("x".repeat(1001))),
        prop::sample::select(vec!["low", "medium", "high", "2026-12-01T17:00:00Z", " t "])
            .prop_map(|s| json!(s)),
    ];
    leaf.prop_recursive(3, 12, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,12}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn body() -> impl Strategy<Value = Option<Vec<u8>>> {
    let field = prop::sample::select(vec![
        "title",
        "description",
        "completed",
        "priority",
        "category",
        "due_at",
        "user_id",
        "id",
    ]);
    prop_oneof![
        3 => Just(None),
        4 => prop::collection::btree_map(field, any_json(), 0..6).prop_map(|m| {
            Some(Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()).to_string().into_bytes())
        }),
        1 => any_json().prop_map(|v| Some(v.to_string().into_bytes())),
        1 => prop::sample::select(vec![
            "[".repeat(5000), "{\"a\":".repeat(3000), "{\"title\": ".to_owned(), "not json".to_owned(),
            "{\"title\": \"\\u0000\"}".to_owned(), "{\"title\": \"\\ud800\"}".to_owned(),
            "{\"title\": 1e999}".to_owned(), "\u{feff}{}".to_owned(), "x".repeat(70 * 1024),
        ]).prop_map(|s| Some(s.into_bytes())),
        1 => prop::collection::vec(any::<u8>(), 0..200).prop_map(Some),
    ]
}

fn headers(tokens: Vec<String>) -> impl Strategy<Value = Vec<(&'static str, String)>> {
    let authorization = prop_oneof![
        6 => prop::sample::select(tokens).prop_map(|t| format!("Bearer {t}")),
        1 => prop::sample::select(vec![
            "Bearer", "Bearer ", "Basic YWxpY2U6cHc=", "bearer x.y.z", "Bearer a.b", "Bearer ....",
            "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJhbGljZSJ9.", "Token abc",
        ]).prop_map(str::to_owned),
    ];
    let origin = prop::sample::select(vec![
        "http://localhost:3000",
        "http://localhost:3000.evil.example",
        "null",
        "https://evil.example",
        "http://",
        "::::",
        "http://localhost:99999",
    ])
    .prop_map(str::to_owned);
    let tag = prop::sample::select(vec![
        "*",
        "\"1-1\"",
        "W/\"1-1\"",
        "\"1-1\", \"2-3\"",
        "junk",
        "\"",
        "\"\"",
        ",,,",
        "\"99999999999999999999-1\"",
    ])
    .prop_map(str::to_owned);
    let content_type = prop::sample::select(vec![
        "application/json",
        "application/merge-patch+json",
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/json; charset=latin1",
        "garbage",
        "application/",
    ])
    .prop_map(str::to_owned);
    (
        prop::option::weighted(0.9, authorization),
        prop::option::of(origin),
        prop::option::weighted(0.2, tag.clone()),
        prop::option::weighted(0.2, tag),
        prop::option::weighted(0.7, content_type),
        prop::option::weighted(0.1, "[ -~]{0,40}"),
        prop::option::weighted(
            0.2,
            prop_oneof![
                prop::sample::select(vec![
                    "1",
                    "0",
                    "-1",
                    "99999999999999999999",
                    "abc",
                    "",
                    " 7 "
                ])
                .prop_map(str::to_owned),
                "[ -~]{0,30}",
            ],
        ),
    )
        .prop_map(
            |(auth, origin, if_match, if_none_match, content_type, junk, last_event_id)| {
                let mut headers = Vec::new();
                let named = [
                    ("Authorization", auth),
                    ("Origin", origin),
                    ("If-Match", if_match),
                    ("If-None-Match", if_none_match),
                    ("Content-Type", content_type),
                    ("X-Request-Id", junk),
                    ("Last-Event-ID", last_event_id),
                ];
                for (name, value) in named {
                    if let Some(value) = value {
                        headers.push((name, value));
                    }
                }
                headers
            },
        )
}

fn case(tokens: Vec<String>) -> impl Strategy<Value = Case> {
    let method = prop::sample::select(vec![
        Method::Get,
        Method::Get,
        Method::Post,
        Method::Put,
        Method::Patch,
        Method::Patch,
        Method::Delete,
        Method::Options,
        Method::Head,
    ]);
    (method, path(), query(), headers(tokens), body()).prop_map(
        |(method, path, query, headers, body)| Case {
            method,
            path,
            query,
            headers,
            body,
        },
    )
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The generated cases, the same for the same seed.
fn cases(tokens: Vec<String>) -> Vec<Case> {
    let count = env_number("SURFACE_CASES", 150);
    let seed = env_number("SURFACE_SEED", 0x5eed_2026);
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &bytes);
    let mut runner = TestRunner::new_with_rng(Config::default(), rng);
    let strategy = case(tokens);
    (0..count)
        .map(|_| strategy.new_tree(&mut runner).expect("a case").current())
        .collect()
}

on_both_databases! {
    async fn generated_requests_never_answer_500_and_every_error_has_the_shape(app) {
        // Some tasks, so generated ids 1–5 hit real rows of alice's (and one of bob's).
        for i in 0..4 {
            app.create_task("alice", json!({"title": format!("task {i}"), "completed": i % 2 == 0})).await;
        }
        app.create_task("bob", json!({"title": "bob's"})).await;
        let expired = {
            let now = chrono::Utc::now().timestamp();
            jsonwebtoken::encode(
                &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
                &json!({"sub": "alice", "exp": now - 600}),
                &jsonwebtoken::EncodingKey::from_secret(crate::helpers::TEST_SECRET.as_bytes()),
            ).unwrap()
        };
        let tokens = vec![app.token("alice"), app.token("alice"), app.token("bob"), app.token("a\u{0}b"), expired];
        let cases = cases(tokens);
        let mut seen = std::collections::BTreeMap::<u16, usize>::new();
        for (n, case) in cases.iter().enumerate() {
            let mut request = app.client.req(case.method, case.uri());
            for (name, value) in &case.headers {
                request.add_header(Header::new(*name, value.clone()));
            }
            if let Some(body) = &case.body {
                request.set_body(body.clone());
            }
            let dispatched = request.dispatch().await;
            // An event stream that opened never ends: its status and headers are the answer.
            let response = if dispatched.status() == Status::Ok && case.path.ends_with("/events") {
                crate::helpers::TestResponse {
                    status: dispatched.status(),
                    headers: Vec::new(),
                    text: String::new(),
                }
            } else {
                read(dispatched).await
            };
            *seen.entry(response.status.code).or_default() += 1;
            let context = || format!("case {n}: {} {} {:?} body {:?} -> {} {}",
                case.method, case.uri(), case.headers, case.body.as_ref().map(|b| String::from_utf8_lossy(&b[..b.len().min(200)]).into_owned()),
                response.status, response.text);
            assert_ne!(response.status, Status::InternalServerError, "{}", context());
            assert_ne!(response.status, Status::ServiceUnavailable, "no outage while the database is up: {}", context());
            if response.status.code >= 400 && case.method != Method::Head {
                let body: Value = serde_json::from_str(&response.text).unwrap_or(Value::Null);
                assert!(body.is_object(), "{}", context());
                assert_error_shape(&body);
                assert_eq!(response.header("Content-Type"), Some("application/json"), "{}", context());
            }
        }
        println!("surface: {} cases, statuses {seen:?}", cases.len());
        assert!(seen.keys().any(|s| *s < 300) && seen.keys().any(|s| *s >= 400), "the cases reach both answers and refusals: {seen:?}");
    }
}

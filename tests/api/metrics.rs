//! `/metrics`: Prometheus text with request counts and latency by route template and
//! status, the pool, and rate-limited requests; off when `METRICS_ENABLED=false`.

use rocket::figment::providers::Serialized;
use rocket::http::Status;

use crate::helpers::{on_both_backends, on_every_database, Backend, TestApp};

fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|line| line.starts_with(series) && line[series.len()..].starts_with(' '))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

on_both_backends! {
    async fn metrics_count_requests_by_route_and_status(backend) {
        let app = TestApp::spawn_with(backend, |f| f.merge(Serialized::global("rate_limit.per_minute", 3))).await;
        for _ in 0..2 {
            app.as_user("alice").get("tasks").await;
        }
        app.as_user("alice").get("tasks/999").await;
        let limited = app.as_user("alice").get("tasks").await;
        assert_eq!(limited.status, Status::TooManyRequests);
        assert_eq!(limited.error_code(), "rate_limited");
        app.anonymous().get("/nowhere/secret-path").await;

        let response = app.anonymous().get("/metrics").await;
        assert_eq!(response.status, Status::Ok);
        assert!(response.header("Content-Type").unwrap().starts_with("text/plain"));
        let text = response.text;
        assert_eq!(value(&text, r#"todo_api_http_requests_total{method="GET",route="/api/<user_id>/tasks",status="200"}"#), Some(2.0), "{text}");
        assert_eq!(value(&text, r#"todo_api_http_requests_total{method="GET",route="/api/<user_id>/tasks/<id>",status="404"}"#), Some(1.0));
        assert_eq!(value(&text, r#"todo_api_http_requests_total{method="GET",route="/api/<user_id>/tasks",status="429"}"#), Some(1.0));
        assert_eq!(value(&text, r#"todo_api_http_requests_total{method="GET",route="unmatched",status="404"}"#), Some(1.0));
        assert_eq!(value(&text, "todo_api_rate_limited_total"), Some(1.0));
        assert_eq!(value(&text, r#"todo_api_http_request_duration_seconds_count{method="GET",route="/api/<user_id>/tasks"}"#), Some(3.0));
        assert!(value(&text, r#"todo_api_http_request_duration_seconds_bucket{method="GET",route="/api/<user_id>/tasks",le="5"}"#).is_some());
        let in_use = value(&text, r#"todo_api_db_pool_connections{state="in_use"}"#).unwrap();
        let idle = value(&text, r#"todo_api_db_pool_connections{state="idle"}"#).unwrap();
        assert!(in_use + idle >= 1.0, "{text}");
        // SQLite writes through one more connection, opened by the first write.
        let writer = "todo_api_db_sqlite_writer_connections";
        if backend == Backend::Sqlite {
            assert_eq!(value(&text, writer), Some(0.0), "no write yet: {text}");
            assert_eq!(app.as_user("bob").post("tasks", &serde_json::json!({"title": "a"})).await.status, Status::Created);
            let text = app.anonymous().get("/metrics").await.text;
            assert_eq!(value(&text, writer), Some(1.0), "{text}");
        } else {
            assert_eq!(value(&text, writer), None, "PostgreSQL has no writer connection");
        }
        assert!(!text.contains("todo_api_session_lookups"), "session tokens are off");
        assert!(!text.contains("todo_api_db_pool_connections{state=\"open\"}"), "open = in_use + idle");
        assert!(!text.contains("alice") && !text.contains("secret-path"), "no user ids or raw paths in labels");
    }

    async fn metrics_can_be_switched_off(backend) {
        let app = TestApp::spawn_with(backend, |f| f.merge(Serialized::global("metrics.enabled", false))).await;
        let response = app.anonymous().get("/metrics").await;
        assert_eq!(response.status, Status::NotFound);
        assert_eq!(response.error_code(), "not_found");
    }
}

/// One sample: its family, type, labels (`k=v,…`, sorted) and value.
type Sample = (String, &'static str, String, f64);

/// `/metrics` read by a Prometheus text-format parser: `(family, type, labels, value)` of
/// every sample (a histogram's value is its count), and each family's help.
fn scrape_parsed(text: &str) -> (Vec<Sample>, std::collections::HashMap<String, String>) {
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("valid Prometheus text");
    let histograms: Vec<String> = scrape
        .samples
        .iter()
        .filter(|s| matches!(s.value, prometheus_parse::Value::Histogram(_)))
        .map(|s| s.metric.clone())
        .collect();
    // The parser gathers a histogram's buckets under its name, and leaves its `_sum` and
    // `_count` lines as samples of their own.
    let part_of_a_histogram = |name: &str| {
        ["_sum", "_count"].iter().any(|suffix| {
            name.strip_suffix(suffix)
                .is_some_and(|base| histograms.iter().any(|h| h == base))
        })
    };
    let samples = scrape
        .samples
        .into_iter()
        .filter(|s| !part_of_a_histogram(&s.metric))
        .map(|s| {
            let (kind, value) = match s.value {
                prometheus_parse::Value::Counter(v) => ("counter", v),
                prometheus_parse::Value::Gauge(v) => ("gauge", v),
                prometheus_parse::Value::Histogram(buckets) => {
                    ("histogram", buckets.last().map_or(0.0, |b| b.count))
                }
                prometheus_parse::Value::Summary(_) => ("summary", 0.0),
                prometheus_parse::Value::Untyped(v) => ("untyped", v),
            };
            let mut labels: Vec<String> =
                s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            labels.sort();
            (s.metric, kind, labels.join(","), value)
        })
        .collect();
    (samples, scrape.docs)
}

on_every_database! {
    async fn every_series_follows_prometheus_conventions_and_counters_only_grow(app) {
        // Sessions on, so their lookups are counted (a token nobody issued: one lookup).
        let app = TestApp::spawn_on(
            crate::helpers::TestDatabase::existing(&app.db_url),
            |f| f.merge(Serialized::global("auth.sessions", true)),
        )
        .await;
        let before_text = app.anonymous().get("/metrics").await.text;
        app.as_user("alice").post("tasks", &serde_json::json!({"title": "counted"})).await;
        app.as_user("alice").get("tasks").await;
        app.with_token("not-a-session-anyone-issued").get("/api/alice/tasks").await;
        let after_text = app.anonymous().get("/metrics").await.text;
        let (before, _) = scrape_parsed(&before_text);
        let (after, docs) = scrape_parsed(&after_text);

        // Levels are gauges; counts are counters named `_total`; durations are histograms
        // in seconds. Every family is the service's own and documented.
        let gauges = [
            "todo_api_db_pool_connections",
            "todo_api_db_sqlite_writer_connections",
            "todo_api_event_streams_open",
            "todo_api_event_listener_state",
        ];
        let mut families = std::collections::BTreeSet::new();
        for (name, kind, labels, value) in &after {
            families.insert(name.clone());
            assert!(name.starts_with("todo_api_"), "{name}");
            assert!(docs.get(name).is_some_and(|h| !h.is_empty()), "{name} has help");
            match *kind {
                "counter" => assert!(name.ends_with("_total"), "counter {name}"),
                "gauge" => {
                    assert!(gauges.contains(&name.as_str()), "gauge {name}{{{labels}}} is a level");
                    assert!(!name.ends_with("_total"), "{name}");
                }
                "histogram" => assert!(name.ends_with("_seconds"), "histogram {name}"),
                other => panic!("{name} is {other}"),
            }
            assert!(*value >= 0.0, "{name}{{{labels}}} = {value}");
        }
        for family in [
            "todo_api_http_requests_total",
            "todo_api_http_request_duration_seconds",
            "todo_api_db_pool_connections",
            "todo_api_rate_limited_total",
            "todo_api_jwks_fetch_attempts_total",
            "todo_api_event_streams_open",
            "todo_api_events_total",
            "todo_api_event_listener_state",
            "todo_api_session_lookups_total",
        ] {
            assert!(families.contains(family), "{family} in {families:?}");
        }

        // Counters never go down between scrapes, and the ones this test moved went up.
        let find = |samples: &[Sample], name: &str, labels: &str| {
            samples.iter().find(|(n, _, l, _)| n == name && l == labels).map(|s| s.3)
        };
        for (name, kind, labels, value) in &after {
            if *kind == "counter" {
                let earlier = find(&before, name, labels).unwrap_or(0.0);
                assert!(*value >= earlier, "{name}{{{labels}}}: {earlier} then {value}");
            }
        }
        let created = "method=POST,route=/api/<user_id>/tasks,status=201";
        assert_eq!(find(&after, "todo_api_http_requests_total", created), Some(1.0));
        assert_eq!(find(&before, "todo_api_http_requests_total", created), None);
        // The made-up token was looked up once (no session table here: `unavailable`).
        let lookups = |samples: &[Sample]| -> f64 {
            samples.iter().filter(|s| s.0 == "todo_api_session_lookups_total").map(|s| s.3).sum()
        };
        assert_eq!(lookups(&after), lookups(&before) + 1.0, "{after_text}");
        // One listener state at a time.
        let states: f64 = after
            .iter()
            .filter(|(n, ..)| n == "todo_api_event_listener_state")
            .map(|s| s.3)
            .sum();
        assert_eq!(states, 1.0, "{after_text}");
    }
}

//! Better Auth's session cookie (`BETTER_AUTH_COOKIES=on`), with a real Better Auth server
//! signing users up and in and handing out its cookie: the cookie alone works on both route
//! families, bad or stale ones are 401, the forgery rule refuses writes from other origins
//! (and writes nothing), an `Authorization` header always decides, CORS grants credentials
//! to listed origins only, and the event stream opens and resumes on the cookie alone.

use std::time::Duration;

use rocket::figment::providers::Serialized;
use rocket::figment::Figment;
use rocket::http::{Method, Status};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::helpers::*;
use crate::sessions::BetterAuth;

const APP: &str = "http://app.example.com";

fn cookies_on(figment: Figment) -> Figment {
    figment
        .merge(Serialized::global("auth.sessions", true))
        .merge(Serialized::global("auth.session_cache_secs", 0))
        .merge(Serialized::global("auth.cookies", true))
        .merge(Serialized::global("cors.allowed_origins", APP))
}

fn cookie(value: &str) -> String {
    format!("better-auth.session_token={value}")
}

/// A Better Auth user signed up on a fresh database, and a service on that database with
/// cookies on: (Better Auth, the service, the user's id, the cookie's value as set).
async fn signed_up(backend: Backend) -> (BetterAuth, TestApp, String, String) {
    let database = TestDatabase::fresh(backend).await;
    let auth = BetterAuth::start(&database.url, "camelCase").await;
    let app = TestApp::spawn_on(database, cookies_on).await;
    let (status, _, cookie, body) = auth
        .call(
            "sign-up/email",
            None,
            json!({"email": "grace@example.com", "password": "correct horse battery", "name": "Grace"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let user = body["user"]["id"].as_str().unwrap().to_owned();
    let cookie = cookie.expect("Better Auth sets its session cookie");
    (auth, app, user, cookie)
}

async fn by_cookie(
    app: &TestApp,
    method: Method,
    path: &str,
    value: &str,
    body: Option<&Value>,
    extra: &[(&str, &str)],
) -> TestResponse {
    let cookie = cookie(value);
    let mut headers = vec![("Cookie", cookie.as_str())];
    headers.extend_from_slice(extra);
    app.anonymous().send(method, path, body, &headers).await
}

async fn titles(app: &TestApp, user: &str, value: &str) -> Vec<Value> {
    let listed = by_cookie(
        app,
        Method::Get,
        &format!("/api/{user}/tasks"),
        value,
        None,
        &[],
    )
    .await;
    assert_eq!(listed.status, Status::Ok, "{}", listed.text);
    listed
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["title"].clone())
        .collect()
}

on_every_backend! {
    async fn the_session_cookie_alone_signs_a_user_in_on_both_route_families(backend) {
        let (auth, app, user, value) = signed_up(backend).await;
        let origin = [("Origin", APP)];

        // Both route families, reads and writes (from the allowed origin).
        let own = format!("/api/{user}/tasks");
        assert_eq!(by_cookie(&app, Method::Get, &own, &value, None, &[]).await.status, Status::Ok);
        assert_eq!(by_cookie(&app, Method::Get, "/api/tasks", &value, None, &[]).await.status, Status::Ok);
        let created = by_cookie(&app, Method::Post, &own, &value, Some(&json!({"title": "by cookie"})), &origin).await;
        assert_eq!(created.status, Status::Created, "{}", created.text);
        assert_eq!(created.json()["user_id"], user.as_str());
        let scoped = by_cookie(&app, Method::Post, "/api/tasks", &value, Some(&json!({"title": "scoped"})), &origin).await;
        assert_eq!(scoped.status, Status::Created, "{}", scoped.text);
        assert_eq!(scoped.header("Location").map(|l| l.starts_with("/api/tasks/")), Some(true));
        assert_eq!(by_cookie(&app, Method::Get, "/api/stats", &value, None, &[]).await.status, Status::Ok);

        // Another user's path.
        let other = by_cookie(&app, Method::Get, "/api/someone-else/tasks", &value, None, &[]).await;
        assert_eq!(other.status, Status::Forbidden);
        assert_eq!(other.error_code(), "forbidden");

        // The `__Secure-` name (Better Auth's on https) is the same cookie.
        let secure = format!("__Secure-better-auth.session_token={value}");
        let listed = app.anonymous().send(Method::Get, "/api/tasks", None, &[("Cookie", &secure)]).await;
        assert_eq!(listed.status, Status::Ok);

        // A tampered signature, an unsigned token and a made-up value: 401 before any lookup.
        let decoded = percent_encoding::percent_decode_str(&value).decode_utf8().unwrap().into_owned();
        let (token, signature) = decoded.split_once('.').unwrap();
        let mut flipped = signature.to_owned().into_bytes();
        flipped[0] = if flipped[0] == b'A' { b'B' } else { b'A' };
        let tampered = format!("{token}.{}", String::from_utf8(flipped).unwrap());
        for bad in [tampered.as_str(), token, "not-a-session"] {
            let refused = by_cookie(&app, Method::Get, "/api/tasks", bad, None, &[]).await;
            assert_eq!(refused.status, Status::Unauthorized, "{bad}");
            assert_eq!(refused.error_code(), "invalid_token");
        }

        // The Authorization header decides whenever it is there: a good header with a bad
        // cookie works, a bad header with a good cookie is 401.
        let jwt = todo_api::auth::mint_hs256(TEST_SECRET, &user, 600).unwrap();
        let both = app.anonymous().send(Method::Get, "/api/tasks", None, &[
            ("Cookie", &cookie(&tampered)), ("Authorization", &format!("Bearer {jwt}"))]).await;
        assert_eq!(both.status, Status::Ok);
        let both = app.anonymous().send(Method::Get, "/api/tasks", None, &[
            ("Cookie", &cookie(&value)), ("Authorization", "Bearer junk")]).await;
        assert_eq!(both.status, Status::Unauthorized);

        // Signed out through Better Auth: the cookie is refused.
        let (status, _, body) = auth.post("sign-out", Some(&decoded), json!({})).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(by_cookie(&app, Method::Get, "/api/tasks", &value, None, &[]).await.status, Status::Unauthorized);

        // Signed in again, then expired in the table: refused.
        let (status, _, value, body) = auth
            .call("sign-in/email", None, json!({"email": "grace@example.com", "password": "correct horse battery"}))
            .await;
        assert_eq!(status, 200, "{body}");
        let value = value.unwrap();
        assert_eq!(titles(&app, &user, &value).await.len(), 2);
        let past = if app.db_url.starts_with("sqlite") { "'2020-01-01T00:00:00.000Z'" } else { "now() - interval '1 minute'" };
        crate::helpers::on_pool!(&pool_of(&app.db_url).await, |p| drop(
            sqlx::query(&format!("UPDATE session SET \"expiresAt\" = {past}")).execute(p).await.unwrap()
        ));
        assert_eq!(by_cookie(&app, Method::Get, "/api/tasks", &value, None, &[]).await.status, Status::Unauthorized);
    }

    async fn a_cookie_write_from_another_origin_is_refused_and_changes_nothing(backend) {
        let (_auth, app, user, value) = signed_up(backend).await;
        let own = format!("/api/{user}/tasks");
        let created = by_cookie(&app, Method::Post, &own, &value, Some(&json!({"title": "kept"})), &[("Origin", APP)]).await;
        assert_eq!(created.status, Status::Created);
        let id = created.json()["id"].as_i64().unwrap();
        let task = format!("{own}/{id}");

        let attempts: [(Method, String, Option<Value>); 5] = [
            (Method::Post, own.clone(), Some(json!({"title": "forged"}))),
            (Method::Put, task.clone(), Some(json!({"title": "forged", "completed": true}))),
            (Method::Patch, task.clone(), Some(json!({"title": "forged"}))),
            (Method::Patch, format!("{task}/complete"), None),
            (Method::Delete, task.clone(), None),
        ];
        let forged_from: [&[(&str, &str)]; 6] = [
            &[("Origin", "http://evil.example.com")],
            &[("Origin", "http://app.example.com.evil.example")],
            &[("Origin", "null")],
            &[("Origin", "not an origin")],
            &[("Sec-Fetch-Site", "cross-site")],
            &[],
        ];
        for (method, path, body) in &attempts {
            for headers in forged_from {
                let refused = by_cookie(&app, *method, path, &value, body.as_ref(), headers).await;
                assert_eq!(refused.status, Status::Forbidden, "{method} {path} {headers:?}");
                assert_eq!(refused.error_code(), "origin_not_allowed");
                assert_error_shape(&refused.json());
            }
        }
        // Nothing was written: the one task, unchanged.
        let listed = by_cookie(&app, Method::Get, &own, &value, None, &[]).await.json();
        assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
        assert_eq!(listed[0]["title"], "kept");
        assert_eq!(listed[0]["completed"], false);

        // The same writes from the listed origin (or same-origin without one) succeed.
        let allowed: [&[(&str, &str)]; 2] = [&[("Origin", APP)], &[("Sec-Fetch-Site", "same-origin")]];
        let patched = by_cookie(&app, Method::Patch, &task, &value, Some(&json!({"title": "edited"})), allowed[1]).await;
        assert_eq!(patched.status, Status::Ok, "{}", patched.text);
        for (method, path, body) in &attempts {
            let answered = by_cookie(&app, *method, path, &value, body.as_ref(), allowed[0]).await;
            assert!(answered.status.code < 300, "{method} {path}: {}", answered.text);
        }

        // A header-authenticated write is not subject to the rule.
        let jwt = todo_api::auth::mint_hs256(TEST_SECRET, &user, 600).unwrap();
        let header = app.with_token(&jwt).send(Method::Post, &own, Some(&json!({"title": "by header"})),
            &[("Origin", "http://evil.example.com")]).await;
        assert_eq!(header.status, Status::Created);
    }

    async fn with_cookies_off_or_another_prefix_the_cookie_is_not_a_way_in(backend) {
        let (_auth, app, user, value) = signed_up(backend).await;
        let own = format!("/api/{user}/tasks");
        let off = TestApp::spawn_on(TestDatabase::existing(&app.db_url), |f| {
            f.merge(Serialized::global("auth.sessions", true))
        })
        .await;
        let refused = by_cookie(&off, Method::Get, &own, &value, None, &[]).await;
        assert_eq!(refused.status, Status::Unauthorized);
        assert_eq!(refused.error_code(), "auth_required");

        let prefixed = TestApp::spawn_on(TestDatabase::existing(&app.db_url), |f| {
            cookies_on(f).merge(Serialized::global("auth.cookie_prefix", "myapp"))
        })
        .await;
        assert_eq!(by_cookie(&prefixed, Method::Get, &own, &value, None, &[]).await.status, Status::Unauthorized);
        let named = format!("myapp.session_token={value}");
        let listed = prefixed.anonymous().send(Method::Get, &own, None, &[("Cookie", &named)]).await;
        assert_eq!(listed.status, Status::Ok, "{}", listed.text);
    }

    async fn cors_grants_credentials_to_listed_origins_only_with_cookies_on(backend) {
        let (_auth, app, user, value) = signed_up(backend).await;
        let own = format!("/api/{user}/tasks");
        let header = |r: &TestResponse, name: &str| r.header(name).map(str::to_owned);
        let listed = by_cookie(&app, Method::Get, &own, &value, None, &[("Origin", APP)]).await;
        assert_eq!(header(&listed, "Access-Control-Allow-Origin").as_deref(), Some(APP));
        assert_eq!(header(&listed, "Access-Control-Allow-Credentials").as_deref(), Some("true"));
        let preflight = app.anonymous().send(Method::Options, &own, None, &[
            ("Origin", APP), ("Access-Control-Request-Method", "POST"),
            ("Access-Control-Request-Headers", "content-type")]).await;
        assert!(preflight.status.code < 300, "{}", preflight.text);
        assert_eq!(header(&preflight, "Access-Control-Allow-Credentials").as_deref(), Some("true"));
        // Another origin's read is answered, but with no grant its page cannot read it.
        let foreign = by_cookie(&app, Method::Get, &own, &value, None, &[("Origin", "http://evil.example.com")]).await;
        assert_eq!(foreign.status, Status::Ok);
        assert_eq!(header(&foreign, "Access-Control-Allow-Origin"), None);
        assert_eq!(header(&foreign, "Access-Control-Allow-Credentials"), None);
    }
}

/// Reads from `stream` until `text` has arrived (or panics after 10 s); returns all read.
async fn read_until(stream: &mut tokio::net::TcpStream, seen: &mut String, text: &str) {
    let mut buffer = [0_u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !seen.contains(text) {
        let n = tokio::time::timeout_at(deadline, stream.read(&mut buffer))
            .await
            .unwrap_or_else(|_| panic!("no {text:?} in {seen:?}"))
            .unwrap();
        assert!(n > 0, "the stream ended before {text:?}: {seen:?}");
        seen.push_str(&String::from_utf8_lossy(&buffer[..n]));
    }
}

async fn open_stream(
    port: u16,
    value: &str,
    last_event_id: Option<&str>,
) -> (tokio::net::TcpStream, String) {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let resume = last_event_id
        .map(|id| format!("Last-Event-ID: {id}\r\n"))
        .unwrap_or_default();
    let request = format!(
        // HTTP/1.0: the body arrives as it is, without chunk framing to read around.
        "GET /api/events HTTP/1.0\r\nHost: x\r\nOrigin: {APP}\r\nAccept: text/event-stream\r\n\
         Cookie: {}\r\n{resume}\r\n",
        cookie(value)
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut seen = String::new();
    read_until(&mut stream, &mut seen, "event:ready").await;
    (stream, seen)
}

on_both_backends! {
    async fn the_event_stream_opens_and_resumes_on_the_cookie_alone(backend) {
        let database = TestDatabase::fresh(backend).await;
        let auth = BetterAuth::start(&database.url, "camelCase").await;
        let server = LiveServer::start_on(database, cookies_on).await;
        let (status, _, value, body) = auth
            .call("sign-up/email", None, json!({"email": "lin@example.com", "password": "correct horse battery", "name": "Lin"}))
            .await;
        assert_eq!(status, 200, "{body}");
        let value = value.unwrap();

        let (mut stream, mut seen) = open_stream(server.port, &value, None).await;
        assert!(seen.starts_with("HTTP/1.0 200") || seen.starts_with("HTTP/1.1 200"), "{seen}");
        let head = seen.to_ascii_lowercase();
        assert!(head.contains(&format!("access-control-allow-origin: {APP}")), "{seen}");
        assert!(head.contains("access-control-allow-credentials: true"), "{seen}");

        let client = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{}", server.port);
        let create = |title: &'static str| {
            client.post(format!("{base}/api/tasks"))
                .header("Cookie", cookie(&value))
                .header("Origin", APP)
                .header("Content-Type", "application/json")
                .body(json!({"title": title}).to_string())
                .send()
        };
        assert_eq!(create("first").await.unwrap().status(), 201);
        read_until(&mut stream, &mut seen, "\"first\"").await;
        let id_line = seen.lines().rev().find(|l| l.starts_with("id:")).unwrap().to_owned();
        let first_id = id_line.trim_start_matches("id:").trim().to_owned();
        drop(stream);

        // Missed while away, then replayed on resuming with Last-Event-ID.
        assert_eq!(create("second").await.unwrap().status(), 201);
        let (mut resumed, mut seen) = open_stream(server.port, &value, Some(&first_id)).await;
        read_until(&mut resumed, &mut seen, "\"second\"").await;
        assert!(!seen.contains("\"first\""), "nothing before the id is sent again: {seen}");
        assert!(!seen.contains("event:reset"), "{seen}");
        server.stop().await;
    }
}

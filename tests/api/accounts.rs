//! Accounts: the service as Better Auth's email-and-password server, over real HTTP, on
//! both databases; and side by side with a real Better Auth server (scripts/better-auth)
//! on the same database and secret.

use std::collections::BTreeMap;

use rocket::figment::providers::Serialized;
use rocket::figment::Figment;
use serde_json::{json, Value};

use crate::helpers::*;
use crate::sessions::BetterAuth;

/// The server on, sessions trusted for no time (so a sign-out shows at once), the limits
/// set by the test.
fn server_on(attempts: u32, failures: u32) -> impl FnOnce(Figment) -> Figment {
    move |figment| {
        figment
            .merge(Serialized::global("auth.server", true))
            .merge(Serialized::global("auth.session_cache_secs", 0))
            .merge(Serialized::global("auth.attempts_per_address", attempts))
            .merge(Serialized::global("auth.failures_per_account", failures))
    }
}

/// Headers sent, then the status and code expected.
type OriginCase<'a> = (&'a [(&'a str, &'a str)], u16, &'a str);
/// A request sent to both servers: method, path, body, headers.
type Comparison<'a> = (&'a str, &'a str, Option<Value>, Vec<(&'a str, &'a str)>);

/// An answer, read whole.
pub(crate) struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Value,
    pub text: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every `Set-Cookie`, by cookie name.
    fn cookies(&self) -> BTreeMap<String, String> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("set-cookie"))
            .filter_map(|(_, v)| v.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
            .collect()
    }

    /// The session cookie's value as set, for a `Cookie` header.
    fn session_cookie(&self) -> Option<String> {
        self.cookies()
            .get("better-auth.session_token")
            .map(|v| v.split(';').next().unwrap_or_default().to_owned())
            .filter(|v| !v.is_empty())
    }

    fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or_default()
    }
}

/// Calls `base` + `path`.
pub(crate) async fn call(
    base: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
    headers: &[(&str, &str)],
) -> Answer {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut request = client.request(method.parse().unwrap(), format!("{base}{path}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if let Some(body) = body {
        request = request
            .header("Content-Type", "application/json")
            .body(body.to_string());
    }
    let response = request.send().await.expect("an answer");
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or_default().to_owned()))
        .collect();
    let text = response.text().await.unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Answer {
        status,
        headers,
        body,
        text,
    }
}

fn base(server: &LiveServer) -> String {
    format!("http://127.0.0.1:{}", server.port)
}

async fn count(db_url: &str, sql: &str) -> i64 {
    let pool = pool_of(db_url).await;
    on_pool!(&pool, |p| sqlx::query_scalar::<_, i64>(sql)
        .fetch_one(p)
        .await
        .unwrap())
}

async fn execute(db_url: &str, sql: &str) {
    let pool = pool_of(db_url).await;
    on_pool!(&pool, |p| drop(sqlx::query(sql).execute(p).await.unwrap()));
}

fn sign_up_body(email: &str) -> Value {
    json!({"name": "Ada", "email": email, "password": "correct horse battery"})
}

on_both_backends! {
    async fn sign_up_sign_in_get_session_tasks_and_sign_out(backend) {
        let server = LiveServer::start(backend, server_on(0, 0)).await;
        let api = base(&server);
        let up = call(&api, "POST", "/api/auth/sign-up/email", Some(&json!({
            "name": "Ada", "email": "Ada@Example.COM", "password": "correct horse battery"
        })), &[]).await;
        assert_eq!(up.status, 200, "{}", up.text);
        assert_eq!(up.header("content-type"), Some("application/json"));
        let user = up.body["user"]["id"].as_str().unwrap().to_owned();
        assert_eq!(user.len(), 32);
        assert_eq!(up.body["user"]["email"], "ada@example.com");
        assert_eq!(up.body["user"]["emailVerified"], false);
        assert_eq!(up.body["user"]["image"], Value::Null);
        let token = up.body["token"].as_str().unwrap().to_owned();
        let cookie = up.cookies()["better-auth.session_token"].clone();
        assert!(cookie.ends_with("; Max-Age=604800; Path=/; HttpOnly; SameSite=Lax"), "{cookie}");
        let signed = up.header("set-auth-token").unwrap().to_owned();
        assert!(signed.starts_with(&format!("{token}.")) && signed.len() == token.len() + 45, "{signed}");
        assert_eq!(up.header("access-control-expose-headers"), Some("set-auth-token"));
        // Stored as Better Auth stores it: a credential account with a scrypt hash.
        assert_eq!(count(&server.db_url, &format!(
            "SELECT count(*) FROM \"account\" WHERE \"providerId\" = 'credential' AND \"accountId\" = '{user}' AND length(\"password\") = 161"
        )).await, 1);

        let session_cookie = up.session_cookie().unwrap();
        let cookie_header = format!("better-auth.session_token={session_cookie}");
        let got = call(&api, "GET", "/api/auth/get-session", None, &[("Cookie", &cookie_header)]).await;
        assert_eq!(got.status, 200);
        assert_eq!(got.header("cache-control"), Some("no-store"));
        assert_eq!(got.body["session"]["token"], token.as_str());
        assert_eq!(got.body["user"]["id"], user.as_str());
        assert!(got.cookies().is_empty(), "a fresh session is not refreshed");

        // The session works on the task routes: the signed token, the raw one, the cookie.
        for (name, value) in [
            ("Authorization", format!("Bearer {signed}")),
            ("Authorization", format!("Bearer {token}")),
            ("Cookie", cookie_header.clone()),
        ] {
            let listed = call(&api, "GET", "/api/tasks", None, &[(name, &value)]).await;
            assert_eq!(listed.status, 200, "{name}: {}", listed.text);
        }
        let created = call(&api, "POST", &format!("/api/{user}/tasks"), Some(&json!({"title": "mine"})),
            &[("Authorization", &format!("Bearer {signed}"))]).await;
        assert_eq!(created.status, 201, "{}", created.text);

        // Wrong password and unknown email: the same answer.
        for email in ["ada@example.com", "nobody@example.com"] {
            let refused = call(&api, "POST", "/api/auth/sign-in/email",
                Some(&json!({"email": email, "password": "not the password"})), &[]).await;
            assert_eq!(refused.status, 401);
            assert_eq!(refused.text, r#"{"code":"INVALID_EMAIL_OR_PASSWORD","message":"Invalid email or password"}"#);
        }
        let in_ = call(&api, "POST", "/api/auth/sign-in/email",
            Some(&json!({"email": "ADA@example.com", "password": "correct horse battery"})), &[]).await;
        assert_eq!(in_.status, 200, "{}", in_.text);
        assert_eq!(in_.body["redirect"], false);
        assert!(in_.body.get("url").is_none());

        // Sign-out with the cookie needs a trusted origin; then the session is gone.
        let forged = call(&api, "POST", "/api/auth/sign-out", Some(&json!({})), &[("Cookie", &cookie_header)]).await;
        assert_eq!((forged.status, forged.code()), (403, "MISSING_OR_NULL_ORIGIN"));
        let evil = call(&api, "POST", "/api/auth/sign-out", Some(&json!({})),
            &[("Cookie", &cookie_header), ("Origin", "http://evil.example")]).await;
        assert_eq!((evil.status, evil.code()), (403, "INVALID_ORIGIN"));
        let out = call(&api, "POST", "/api/auth/sign-out", Some(&json!({})),
            &[("Cookie", &cookie_header), ("Origin", "http://localhost:3000")]).await;
        assert_eq!(out.status, 200);
        assert_eq!(out.body, json!({"success": true}));
        let out_cookies = out.cookies();
        let expired: Vec<&String> = out_cookies.values().collect();
        assert_eq!(expired.len(), 3);
        assert!(expired.iter().all(|c| c.starts_with("; Max-Age=0; Path=/; HttpOnly; SameSite=Lax")), "{expired:?}");
        assert!(out.header("set-auth-token").is_none());
        let gone = call(&api, "GET", "/api/auth/get-session", None, &[("Cookie", &cookie_header)]).await;
        assert_eq!((gone.status, gone.text.as_str()), (200, "null"));
        let refused = call(&api, "GET", "/api/tasks", None, &[("Authorization", &format!("Bearer {signed}"))]).await;
        assert_eq!(refused.status, 401);
        server.stop().await;
    }

    async fn bad_input_gets_a_4xx_in_better_auths_shape_and_writes_nothing(backend) {
        let server = LiveServer::start(backend, server_on(0, 0)).await;
        let api = base(&server);
        let long = "😀".repeat(65);
        let huge = "x".repeat(70_000);
        let cases: Vec<(Value, u16, &str)> = vec![
            (json!({"email": "a@example.com", "password": "password123"}), 400, "VALIDATION_ERROR"),
            (json!({"name": 5, "email": "a@example.com", "password": "password123"}), 400, "VALIDATION_ERROR"),
            (json!({"name": "A", "email": "not-an-email", "password": "password123"}), 400, "VALIDATION_ERROR"),
            (json!({"name": "A", "email": " a@example.com", "password": "password123"}), 400, "VALIDATION_ERROR"),
            (json!({"name": "A\u{0}", "email": "a@example.com", "password": "password123"}), 400, "VALIDATION_ERROR"),
            (json!({"name": "A", "email": "a@example.com", "password": "short"}), 400, "PASSWORD_TOO_SHORT"),
            (json!({"name": "A", "email": "a@example.com", "password": long}), 400, "PASSWORD_TOO_LONG"),
            (json!({"name": "A", "email": "a@example.com", "password": "password123", "rememberMe": "no"}), 400, "VALIDATION_ERROR"),
            (json!({"name": "A", "email": "a@example.com", "password": "password123", "callbackURL": "https://evil.example/x"}), 403, "INVALID_CALLBACK_URL"),
            (json!({"name": huge, "email": "a@example.com", "password": "password123"}), 413, "PAYLOAD_TOO_LARGE"),
            (json!([1, 2]), 400, "VALIDATION_ERROR"),
        ];
        for (body, status, code) in cases {
            let answer = call(&api, "POST", "/api/auth/sign-up/email", Some(&body), &[]).await;
            assert_eq!((answer.status, answer.code()), (status, code), "{body:.80}: {}", answer.text);
            assert!(answer.body["message"].as_str().is_some_and(|m| !m.is_empty()));
        }
        let not_json = reqwest::Client::new().post(format!("{api}/api/auth/sign-up/email"))
            .header("Content-Type", "application/json").body("{nope").send().await.unwrap();
        assert_eq!(not_json.status().as_u16(), 400);
        let text = reqwest::Client::new().post(format!("{api}/api/auth/sign-up/email"))
            .header("Content-Type", "text/plain").body("hello").send().await.unwrap();
        assert_eq!(text.status().as_u16(), 415);
        let bad_email = call(&api, "POST", "/api/auth/sign-in/email",
            Some(&json!({"email": "nope", "password": "password123"})), &[]).await;
        assert_eq!((bad_email.status, bad_email.code()), (400, "INVALID_EMAIL"));
        assert_eq!(count(&server.db_url, "SELECT count(*) FROM \"user\"").await, 0);
        assert_eq!(count(&server.db_url, "SELECT count(*) FROM \"session\"").await, 0);

        let unknown = call(&api, "GET", "/api/auth/nothing-here", None, &[]).await;
        assert_eq!((unknown.status, unknown.text.as_str()), (404, ""));
        assert!(unknown.header("content-type").is_none());
        assert_eq!(call(&api, "GET", "/api/auth/sign-in/email", None, &[]).await.status, 404);
        let ok = call(&api, "GET", "/api/auth/ok", None, &[]).await;
        assert_eq!(ok.body, json!({"ok": true}));
        server.stop().await;
    }

    async fn concurrent_duplicate_sign_ups_make_one_user(backend) {
        let server = LiveServer::start(backend, server_on(0, 0)).await;
        let api = base(&server);
        let body = sign_up_body("twin@example.com");
        let answers = futures_join(8, || call(&api, "POST", "/api/auth/sign-up/email", Some(&body), &[])).await;
        let statuses: Vec<u16> = answers.iter().map(|a| a.status).collect();
        assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1, "{statuses:?}");
        for answer in answers.iter().filter(|a| a.status != 200) {
            assert_eq!((answer.status, answer.code()), (422, "USER_ALREADY_EXISTS_USE_ANOTHER_EMAIL"));
        }
        assert_eq!(count(&server.db_url, "SELECT count(*) FROM \"user\"").await, 1);
        assert_eq!(count(&server.db_url, "SELECT count(*) FROM \"account\"").await, 1);
        server.stop().await;
    }

    async fn remember_me_false_refresh_and_the_short_names(backend) {
        let server = LiveServer::start(backend, server_on(0, 0)).await;
        let api = base(&server);
        let up = call(&api, "POST", "/api/auth/signup", Some(&sign_up_body("bo@example.com")), &[]).await;
        assert_eq!(up.status, 200, "{}", up.text);
        assert_eq!(up.body["token_type"], "bearer");
        let access = up.body["access_token"].as_str().unwrap().to_owned();
        assert_eq!(Some(access.as_str()), up.header("set-auth-token"));
        let me = call(&api, "GET", "/api/auth/me", None, &[("Authorization", &format!("Bearer {access}"))]).await;
        assert_eq!(me.body["email"], "bo@example.com");
        assert_eq!(call(&api, "GET", "/api/v1/auth/me", None, &[]).await.status, 401);

        // rememberMe: false: a browser-session cookie, dont_remember set, one day.
        let short = call(&api, "POST", "/api/auth/sign-in/email", Some(&json!({
            "email": "bo@example.com", "password": "correct horse battery", "rememberMe": false
        })), &[]).await;
        assert_eq!(short.status, 200);
        let cookies = short.cookies();
        assert_eq!(cookies["better-auth.session_token"].split_once("; ").unwrap().1, "Path=/; HttpOnly; SameSite=Lax");
        let remember = cookies["better-auth.dont_remember"].clone();
        assert!(remember.starts_with("true.") && remember.ends_with("; Path=/; HttpOnly; SameSite=Lax"), "{remember}");
        let token = short.body["token"].as_str().unwrap().to_owned();
        let days = if server.db_url.starts_with("sqlite") {
            count(&server.db_url, &format!("SELECT CAST(julianday(\"expiresAt\") - julianday(\"createdAt\") + 0.5 AS INTEGER) FROM \"session\" WHERE \"token\" = '{token}'")).await
        } else {
            count(&server.db_url, &format!("SELECT CAST(round(EXTRACT(EPOCH FROM \"expiresAt\" - \"createdAt\") / 86400) AS BIGINT) FROM \"session\" WHERE \"token\" = '{token}'")).await
        };
        assert_eq!(days, 1);

        // An old session is renewed by get-session (not with dont_remember), and by /refresh.
        let login = call(&api, "POST", "/api/auth/login", Some(&json!({
            "email": "bo@example.com", "password": "correct horse battery"
        })), &[]).await;
        assert_eq!(login.body["token_type"], "bearer");
        let token = login.body["token"].as_str().unwrap().to_owned();
        let cookie = format!("better-auth.session_token={}", login.session_cookie().unwrap());
        let soon = if server.db_url.starts_with("sqlite") {
            "strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '+2 days')".to_owned()
        } else {
            "now() + interval '2 days'".to_owned()
        };
        execute(&server.db_url, &format!("UPDATE \"session\" SET \"expiresAt\" = {soon} WHERE \"token\" = '{token}'")).await;
        let with_flag = format!("{cookie}; better-auth.dont_remember={}", remember.split(';').next().unwrap());
        let kept = call(&api, "GET", "/api/auth/session", None, &[("Cookie", &with_flag)]).await;
        assert!(kept.cookies().is_empty(), "dont_remember: never refreshed");
        let refreshed = call(&api, "GET", "/api/auth/get-session", None, &[("Cookie", &cookie)]).await;
        assert_eq!(refreshed.status, 200);
        assert!(refreshed.cookies()["better-auth.session_token"].contains("Max-Age=604800"));
        assert_eq!(refreshed.session_cookie(), login.session_cookie(), "the same token");
        let expires = refreshed.body["session"]["expiresAt"].as_str().unwrap().to_owned();
        assert!(expires > chrono::Utc::now().checked_add_days(chrono::Days::new(6)).unwrap().to_rfc3339(), "{expires}");
        let renewed = call(&api, "POST", "/api/auth/refresh", None, &[("Authorization", &format!("Bearer {token}"))]).await;
        assert_eq!(renewed.status, 200, "{}", renewed.text);
        assert_eq!(renewed.body["session"]["token"], token.as_str());
        assert!(renewed.header("set-auth-token").is_some());
        assert_eq!(call(&api, "POST", "/api/auth/refresh", None, &[]).await.code(), "UNAUTHORIZED");

        // An OAuth2 password form with `username`, under /api/v1.
        let form = reqwest::Client::new().post(format!("{api}/api/v1/auth/token"))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body("username=bo%40example.com&password=correct+horse+battery").send().await.unwrap();
        assert_eq!(form.status().as_u16(), 200);
        let body: Value = serde_json::from_str(&form.text().await.unwrap()).unwrap();
        let access = body["access_token"].as_str().unwrap();
        let listed = call(&api, "GET", "/api/tasks", None, &[("Authorization", &format!("Bearer {access}"))]).await;
        assert_eq!(listed.status, 200);
        let out = call(&api, "POST", "/api/auth/logout", None, &[("Authorization", &format!("Bearer {access}"))]).await;
        assert_eq!(out.body, json!({"success": true}));
        assert_eq!(call(&api, "GET", "/api/tasks", None, &[("Authorization", &format!("Bearer {access}"))]).await.status, 401);
        server.stop().await;
    }

    async fn sessions_are_listed_revoked_and_the_password_changed(backend) {
        let server = LiveServer::start(backend, server_on(0, 0)).await;
        let api = base(&server);
        let up = call(&api, "POST", "/api/auth/sign-up/email", Some(&sign_up_body("cy@example.com")), &[]).await;
        let first = format!("Bearer {}", up.body["token"].as_str().unwrap());
        let cy = json!({"email": "cy@example.com", "password": "correct horse battery"});
        let sign_in = || call(&api, "POST", "/api/auth/sign-in/email", Some(&cy), &[]);
        let second = sign_in().await;
        let second_token = second.body["token"].as_str().unwrap().to_owned();
        let listed = call(&api, "GET", "/api/auth/list-sessions", None, &[("Authorization", &first)]).await;
        assert_eq!(listed.body.as_array().map(Vec::len), Some(2), "{}", listed.text);

        let updated = call(&api, "POST", "/api/auth/update-user", Some(&json!({"name": "Cy", "image": "https://img/c.png"})), &[("Authorization", &first)]).await;
        assert_eq!(updated.body, json!({"status": true}));
        let email = call(&api, "POST", "/api/auth/update-user", Some(&json!({"email": "x@example.com"})), &[("Authorization", &first)]).await;
        assert_eq!(email.code(), "EMAIL_CAN_NOT_BE_UPDATED");
        let nothing = call(&api, "POST", "/api/auth/update-user", Some(&json!({})), &[("Authorization", &first)]).await;
        assert_eq!((nothing.status, nothing.text.as_str()), (400, r#"{"message":"No fields to update"}"#));
        let me = call(&api, "GET", "/api/auth/get-session", None, &[("Authorization", &first)]).await;
        assert_eq!((me.body["user"]["name"].as_str(), me.body["user"]["image"].as_str()), (Some("Cy"), Some("https://img/c.png")));

        let revoked = call(&api, "POST", "/api/auth/revoke-session", Some(&json!({"token": second_token})), &[("Authorization", &first)]).await;
        assert_eq!(revoked.body, json!({"status": true}));
        assert_eq!(call(&api, "GET", "/api/tasks", None, &[("Authorization", &format!("Bearer {second_token}"))]).await.status, 401);

        let wrong = call(&api, "POST", "/api/auth/change-password", Some(&json!({
            "currentPassword": "not it at all", "newPassword": "a new password"
        })), &[("Authorization", &first)]).await;
        assert_eq!((wrong.status, wrong.code()), (400, "INVALID_PASSWORD"));
        let third = sign_in().await;
        let changed = call(&api, "POST", "/api/auth/change-password", Some(&json!({
            "currentPassword": "correct horse battery", "newPassword": "a new password", "revokeOtherSessions": true
        })), &[("Authorization", &first)]).await;
        assert_eq!(changed.status, 200, "{}", changed.text);
        let fresh = changed.body["token"].as_str().unwrap().to_owned();
        assert!(changed.header("set-auth-token").is_some_and(|t| t.starts_with(&fresh)));
        for old in [&first, &format!("Bearer {}", third.body["token"].as_str().unwrap())] {
            assert_eq!(call(&api, "GET", "/api/tasks", None, &[("Authorization", old)]).await.status, 401);
        }
        assert_eq!(sign_in().await.status, 401);
        let again = call(&api, "POST", "/api/auth/sign-in/email",
            Some(&json!({"email": "cy@example.com", "password": "a new password"})), &[]).await;
        assert_eq!(again.status, 200);
        let others = call(&api, "POST", "/api/auth/revoke-other-sessions", None, &[("Authorization", &format!("Bearer {fresh}"))]).await;
        assert_eq!(others.body, json!({"status": true}));
        assert_eq!(call(&api, "GET", "/api/tasks", None, &[("Authorization", &format!("Bearer {}", again.body["token"].as_str().unwrap()))]).await.status, 401);
        let all = call(&api, "POST", "/api/auth/revoke-sessions", None, &[("Authorization", &format!("Bearer {fresh}"))]).await;
        assert_eq!(all.cookies().len(), 3);
        assert_eq!(count(&server.db_url, "SELECT count(*) FROM \"session\"").await, 0);

        // An old session cannot list sessions.
        let old = sign_in_with(&api, "cy@example.com", "a new password").await;
        let past = if server.db_url.starts_with("sqlite") {
            "'2020-01-01T00:00:00.000Z'"
        } else {
            "'2020-01-01T00:00:00Z'"
        };
        execute(&server.db_url, &format!("UPDATE \"session\" SET \"createdAt\" = {past}")).await;
        let stale = call(&api, "GET", "/api/auth/list-sessions", None, &[("Authorization", &old)]).await;
        assert_eq!((stale.status, stale.code()), (403, "SESSION_NOT_FRESH"));
        server.stop().await;
    }

    async fn delete_user_takes_the_tasks_events_and_keys_and_ends_the_streams(backend) {
        let server = LiveServer::start(backend, server_on(0, 0)).await;
        let api = base(&server);
        let up = call(&api, "POST", "/api/auth/sign-up/email", Some(&sign_up_body("di@example.com")), &[]).await;
        let bearer = format!("Bearer {}", up.header("set-auth-token").unwrap());
        let user = up.body["user"]["id"].as_str().unwrap().to_owned();
        for title in ["one", "two"] {
            let created = call(&api, "POST", "/api/tasks", Some(&json!({"title": title})),
                &[("Authorization", &bearer), ("Idempotency-Key", title)]).await;
            assert_eq!(created.status, 201);
        }
        let mut stream = reqwest::Client::new().get(format!("{api}/api/events"))
            .header("Authorization", &bearer).send().await.unwrap();
        assert_eq!(stream.status().as_u16(), 200);
        let first = stream.chunk().await.unwrap().unwrap_or_default();
        assert!(String::from_utf8_lossy(&first).contains("ready"));
        // A second instance on the same database, whose stream learns of it by checking
        // its session again (once a heartbeat period).
        let other = LiveServer::start_on(TestDatabase::existing(&server.db_url), |figment| {
            server_on(0, 0)(figment).merge(Serialized::global("events.heartbeat_secs", 0.3))
        }).await;
        let mut elsewhere = reqwest::Client::new().get(format!("{}/api/events", base(&other)))
            .header("Authorization", &bearer).send().await.unwrap();
        assert_eq!(elsewhere.status().as_u16(), 200);
        let first = elsewhere.chunk().await.unwrap().unwrap_or_default();
        assert!(String::from_utf8_lossy(&first).contains("ready"));
        // Still open across several checks while the session stands.
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        let open = tokio::time::timeout(std::time::Duration::from_millis(500), elsewhere.chunk()).await;
        assert!(!matches!(open, Ok(Ok(None)) | Ok(Err(_))), "ended while its session stood");

        let wrong = call(&api, "POST", "/api/auth/delete-user", Some(&json!({"password": "wrong password"})), &[("Authorization", &bearer)]).await;
        assert_eq!((wrong.status, wrong.code()), (400, "INVALID_PASSWORD"));
        let deleted = call(&api, "POST", "/api/auth/delete-user", Some(&json!({"password": "correct horse battery"})), &[("Authorization", &bearer)]).await;
        assert_eq!(deleted.status, 200, "{}", deleted.text);
        assert_eq!(deleted.body, json!({"success": true, "message": "User deleted"}));
        let mut tables = vec!["tasks", "task_events", "idempotency_keys"];
        if backend == Backend::Postgres {
            tables.push("task_event_counters");
        }
        for table in tables {
            assert_eq!(count(&server.db_url, &format!("SELECT count(*) FROM {table} WHERE user_id = '{user}'")).await, 0, "{table}");
        }
        for table in ["\"user\"", "\"session\"", "\"account\""] {
            assert_eq!(count(&server.db_url, &format!("SELECT count(*) FROM {table}")).await, 0, "{table}");
        }
        for (stream, which) in [(&mut stream, "here"), (&mut elsewhere, "on the other instance")] {
            let ended = tokio::time::timeout(std::time::Duration::from_secs(5), async {
                while let Ok(Some(_)) = stream.chunk().await {}
            }).await;
            assert!(ended.is_ok(), "the user's event stream {which} ended");
        }
        other.stop().await;
        server.stop().await;
    }

    async fn the_origin_rules_of_sign_in(backend) {
        let server = LiveServer::start(backend, server_on(0, 0)).await;
        let api = base(&server);
        call(&api, "POST", "/api/auth/sign-up/email", Some(&sign_up_body("ed@example.com")), &[]).await;
        let body = json!({"email": "ed@example.com", "password": "correct horse battery"});
        let own = format!("http://127.0.0.1:{}", server.port);
        let cases: &[OriginCase] = &[
            (&[], 200, ""),
            (&[("Origin", "http://localhost:3000")], 200, ""),
            (&[("Origin", own.as_str())], 200, ""),
            (&[("Origin", "http://evil.example")], 403, "INVALID_ORIGIN"),
            (&[("Referer", "http://evil.example/page")], 403, "INVALID_ORIGIN"),
            (&[("Sec-Fetch-Site", "cross-site"), ("Sec-Fetch-Mode", "navigate")], 403, "CROSS_SITE_NAVIGATION_LOGIN_BLOCKED"),
            (&[("Sec-Fetch-Site", "same-site"), ("Sec-Fetch-Mode", "cors")], 403, "MISSING_OR_NULL_ORIGIN"),
            (&[("Cookie", "unrelated=1")], 403, "MISSING_OR_NULL_ORIGIN"),
        ];
        for (headers, status, code) in cases {
            let answer = call(&api, "POST", "/api/auth/sign-in/email", Some(&body), headers).await;
            assert_eq!((answer.status, answer.code()), (*status, *code), "{headers:?}");
        }
        // Over https (a proxy says so): the __Secure- name and Secure.
        let secure = call(&api, "POST", "/api/auth/sign-in/email", Some(&body), &[("X-Forwarded-Proto", "https")]).await;
        let cookie = &secure.cookies()["__Secure-better-auth.session_token"];
        assert!(cookie.ends_with("; Max-Age=604800; Path=/; HttpOnly; Secure; SameSite=Lax"), "{cookie}");
        server.stop().await;
    }
}

async fn sign_in_with(api: &str, email: &str, password: &str) -> String {
    let answer = call(
        api,
        "POST",
        "/api/auth/sign-in/email",
        Some(&json!({"email": email, "password": password})),
        &[],
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    format!("Bearer {}", answer.body["token"].as_str().unwrap())
}

/// `n` calls of `make` at once.
async fn futures_join<F, Fut>(n: usize, make: F) -> Vec<Answer>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Answer>,
{
    rocket::futures::future::join_all((0..n).map(|_| make())).await
}

/// What two servers' answers must agree on: the status, the error code, and each cookie's
/// name and attributes (not its value).
fn shape(answer: &Answer) -> (u16, String, BTreeMap<String, String>) {
    let cookies = answer
        .cookies()
        .into_iter()
        .map(|(name, value)| {
            let attributes = value
                .split_once(';')
                .map(|(_, a)| a.trim().to_owned())
                .unwrap_or_default();
            let live = !value.starts_with(';');
            (
                name,
                format!("{}{attributes}", if live { "value; " } else { "empty; " }),
            )
        })
        .collect();
    (answer.status, answer.code().to_owned(), cookies)
}

on_both_backends! {
    async fn users_passwords_and_sessions_work_on_a_real_better_auth_server_and_here(backend) {
        // Better Auth makes its tables first; the service finds them and creates nothing.
        let database = TestDatabase::fresh(backend).await;
        let node = BetterAuth::start(&database.url, "camelCase").await;
        let server = LiveServer::start_on(database, server_on(0, 0)).await;
        let api = base(&server);
        let password = "correct horse battery";

        // Signed up there, signed in here; and the reverse.
        let (status, _, body) = node.post("sign-up/email", None, sign_up_body("there@example.com")).await;
        assert_eq!(status, 200, "{body}");
        let here = call(&api, "POST", "/api/auth/sign-in/email", Some(&json!({"email": "there@example.com", "password": password})), &[]).await;
        assert_eq!(here.status, 200, "{}", here.text);
        assert_eq!(here.body["user"]["id"], body["user"]["id"]);
        let up = call(&api, "POST", "/api/auth/sign-up/email", Some(&sign_up_body("here@example.com")), &[]).await;
        assert_eq!(up.status, 200);
        let (status, node_signed, there) = node.post("sign-in/email", None, json!({"email": "here@example.com", "password": password})).await;
        assert_eq!(status, 200, "{there}");
        assert_eq!(there["user"]["id"], up.body["user"]["id"]);
        assert_eq!(there["user"]["createdAt"], up.body["user"]["createdAt"]);

        // A cookie from either server is the other's session.
        let our_cookie = format!("better-auth.session_token={}", here.session_cookie().unwrap());
        let at_node = call(&node.url, "GET", "/api/auth/get-session", None, &[("Cookie", &our_cookie)]).await;
        assert_eq!(at_node.body["user"]["email"], "there@example.com", "{}", at_node.text);
        assert_eq!(at_node.body["session"]["token"], here.body["token"]);
        let node_signed = node_signed.unwrap();
        let node_cookie = format!("better-auth.session_token={}", urlencoding(&node_signed));
        let at_service = call(&api, "GET", "/api/auth/get-session", None, &[("Cookie", &node_cookie)]).await;
        assert_eq!(at_service.body["user"]["email"], "here@example.com", "{}", at_service.text);
        assert_eq!(at_service.body["session"]["expiresAt"], at_node_session(&node, &node_cookie).await["session"]["expiresAt"]);
        for (name, value) in [("Cookie", node_cookie.clone()), ("Authorization", format!("Bearer {node_signed}"))] {
            assert_eq!(call(&api, "GET", "/api/tasks", None, &[(name, &value)]).await.status, 200, "{name}");
        }

        // A password changed here works there, and the reverse.
        let changed = call(&api, "POST", "/api/auth/change-password", Some(&json!({
            "currentPassword": password, "newPassword": "changed on the service"
        })), &[("Authorization", &format!("Bearer {}", here.body["token"].as_str().unwrap()))]).await;
        assert_eq!(changed.status, 200, "{}", changed.text);
        let (status, _, _) = node.post("sign-in/email", None, json!({"email": "there@example.com", "password": "changed on the service"})).await;
        assert_eq!(status, 200);
        let (status, _, body) = node.post("change-password", Some(&node_signed), json!({
            "currentPassword": password, "newPassword": "changed on node"
        })).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(sign_in_status(&api, "here@example.com", "changed on node").await, 200);
        assert_eq!(sign_in_status(&api, "here@example.com", password).await, 401);

        // A sign-out there ends the session here (sessions are trusted for 0 s here).
        let (status, _, _) = node.post("sign-out", Some(&node_signed), json!({})).await;
        assert_eq!(status, 200);
        assert_eq!(call(&api, "GET", "/api/tasks", None, &[("Authorization", &format!("Bearer {node_signed}"))]).await.status, 401);
        assert_eq!(call(&api, "GET", "/api/auth/get-session", None, &[("Cookie", &node_cookie)]).await.text, "null");
        // And one here ends it there.
        let out = call(&api, "POST", "/api/auth/sign-out", None, &[("Authorization", &format!("Bearer {}", here.body["token"].as_str().unwrap()))]).await;
        assert_eq!(out.status, 200);
        assert_eq!(call(&node.url, "GET", "/api/auth/get-session", None, &[("Cookie", &our_cookie)]).await.text, "null");

        // The same requests to both: the same statuses, codes and cookie attributes.
        let both = |email: &str, password: &str| json!({"email": email, "password": password});
        let cases: Vec<Comparison> = vec![
            ("POST", "/api/auth/sign-up/email", Some(json!({"email": "new@example.com", "name": "N"})), vec![]),
            ("POST", "/api/auth/sign-up/email", Some(json!({"email": "new@example.com", "name": "N", "password": "short"})), vec![]),
            ("POST", "/api/auth/sign-up/email", Some(json!({"email": "new@example.com", "name": "N", "password": "😀".repeat(65)})), vec![]),
            ("POST", "/api/auth/sign-up/email", Some(json!({"email": "not-an-email", "name": "N", "password": "password123"})), vec![]),
            ("POST", "/api/auth/sign-up/email", Some(json!({"email": "THERE@example.com", "name": "N", "password": "password123"})), vec![]),
            ("POST", "/api/auth/sign-in/email", Some(both("there@example.com", "wrong password")), vec![]),
            ("POST", "/api/auth/sign-in/email", Some(both("nobody@example.com", "wrong password")), vec![]),
            ("POST", "/api/auth/sign-in/email", Some(both("nope", "wrong password")), vec![]),
            ("POST", "/api/auth/sign-in/email", Some(json!({"email": "there@example.com", "password": "x", "rememberMe": "no"})), vec![]),
            ("POST", "/api/auth/sign-in/email", Some(both("there@example.com", "changed on the service")), vec![]),
            ("POST", "/api/auth/sign-in/email", Some(json!({"email": "there@example.com", "password": "changed on the service", "rememberMe": false})), vec![]),
            ("POST", "/api/auth/sign-in/email", Some(both("there@example.com", "changed on the service")), vec![("Origin", "http://evil.example")]),
            ("POST", "/api/auth/sign-in/email", Some(both("there@example.com", "changed on the service")), vec![("Sec-Fetch-Site", "cross-site"), ("Sec-Fetch-Mode", "navigate")]),
            ("POST", "/api/auth/sign-out", Some(json!({})), vec![]),
            ("GET", "/api/auth/get-session", None, vec![]),
            ("GET", "/api/auth/list-sessions", None, vec![]),
            ("POST", "/api/auth/update-user", Some(json!({"name": "X"})), vec![]),
            ("POST", "/api/auth/revoke-sessions", Some(json!({})), vec![]),
            ("GET", "/api/auth/ok", None, vec![]),
            ("GET", "/api/auth/no-such-route", None, vec![]),
            ("GET", "/api/auth/sign-in/email", None, vec![]),
        ];
        for (method, path, body, headers) in &cases {
            let ours = call(&api, method, path, body.as_ref(), headers).await;
            let theirs = call(&node.url, method, path, body.as_ref(), headers).await;
            assert_eq!(shape(&ours), shape(&theirs), "{method} {path} {body:?} {headers:?}: ours {} / Better Auth's {}", ours.text, theirs.text);
        }
        server.stop().await;
    }
}

async fn at_node_session(node: &BetterAuth, cookie: &str) -> Value {
    call(
        &node.url,
        "GET",
        "/api/auth/get-session",
        None,
        &[("Cookie", cookie)],
    )
    .await
    .body
}

async fn sign_in_status(api: &str, email: &str, password: &str) -> u16 {
    call(
        api,
        "POST",
        "/api/auth/sign-in/email",
        Some(&json!({"email": email, "password": password})),
        &[],
    )
    .await
    .status
}

fn urlencoding(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

on_both_backends! {
    async fn the_sign_in_limits_hold_across_two_instances(backend) {
        let database = TestDatabase::fresh(backend).await;
        let url = database.url.clone();
        let first = LiveServer::start_on(database, server_on(3, 4)).await;
        let second = LiveServer::start_on(TestDatabase::existing(&url), server_on(3, 4)).await;
        let apis = [base(&first), base(&second)];
        let up = call(&apis[0], "POST", "/api/auth/sign-up/email", Some(&sign_up_body("fi@example.com")), &[]).await;
        assert_eq!(up.status, 200);
        // Per address: 3 sign-ins per 10 s in total, whichever instance is asked.
        let mut statuses = Vec::new();
        for i in 0..8 {
            let answer = call(&apis[i % 2], "POST", "/api/auth/sign-in/email",
                Some(&json!({"email": "nobody@example.com", "password": "whatever it is"})), &[]).await;
            if answer.status == 429 {
                let retry: u64 = answer.header("retry-after").unwrap().parse().unwrap();
                assert!((1..=10).contains(&retry), "{retry}");
                assert_eq!(answer.header("x-retry-after"), answer.header("retry-after"));
                assert_eq!(answer.text, r#"{"message":"Too many requests. Please try again later."}"#);
            }
            statuses.push(answer.status);
        }
        assert_eq!(statuses.iter().filter(|s| **s != 429).count(), 3, "{statuses:?}");
        // Sign-ups are counted apart.
        let other = call(&apis[1], "POST", "/api/auth/sign-up/email", Some(&sign_up_body("fo@example.com")), &[]).await;
        assert_eq!(other.status, 200);

        // Per account: after 4 failures, the right password is refused too.
        execute(&url, "DELETE FROM auth_limits WHERE key LIKE 'addr:%'").await;
        let mut failures = 0;
        for i in 0..6 {
            execute(&url, "DELETE FROM auth_limits WHERE key LIKE 'addr:%'").await;
            let answer = call(&apis[i % 2], "POST", "/api/auth/sign-in/email",
                Some(&json!({"email": "fi@example.com", "password": "wrong password"})), &[]).await;
            if answer.status == 401 {
                failures += 1;
            } else {
                assert_eq!(answer.status, 429, "{}", answer.text);
            }
        }
        assert_eq!(failures, 4);
        execute(&url, "DELETE FROM auth_limits WHERE key LIKE 'addr:%'").await;
        assert_eq!(sign_in_status(&apis[0], "fi@example.com", "correct horse battery").await, 429);
        first.stop().await;
        second.stop().await;
    }

    async fn a_hashing_flood_gets_503_or_429_never_500_and_tasks_keep_answering(backend) {
        let server = LiveServer::start(backend, |figment| {
            server_on(0, 0)(figment).merge(Serialized::global("auth.password_hashes_at_once", 1))
        }).await;
        let api = base(&server);
        call(&api, "POST", "/api/auth/sign-up/email", Some(&sign_up_body("fl@example.com")), &[]).await;
        let token = todo_api::auth::mint_hs256(TEST_SECRET, "someone", 600).unwrap();
        let bearer = format!("Bearer {token}");
        let fl = json!({"email": "fl@example.com", "password": "correct horse battery"});
        let flood = futures_join(200, || call(&api, "POST", "/api/auth/sign-in/email", Some(&fl), &[]));
        let tasks = async {
            let started = std::time::Instant::now();
            let listed = call(&api, "GET", "/api/tasks", None, &[("Authorization", &bearer)]).await;
            (listed.status, started.elapsed())
        };
        let (answers, (listed, took)) = tokio::join!(flood, tasks);
        assert_eq!(listed, 200);
        assert!(took < std::time::Duration::from_secs(2), "the task route waited {took:?}");
        let mut by_status = BTreeMap::new();
        for answer in &answers {
            *by_status.entry(answer.status).or_insert(0) += 1;
            if answer.status == 503 {
                assert!(answer.header("retry-after").is_some());
            }
        }
        assert!(by_status.keys().all(|s| [200, 503].contains(s)), "{by_status:?}");
        assert!(by_status.contains_key(&503), "a queue of 16 cannot hold 200: {by_status:?}");
        server.stop().await;
    }
}

on_both_backends! {
    async fn the_client_address_header_and_tampered_or_expired_sessions(backend) {
        let server = LiveServer::start(backend, |figment| {
            server_on(1, 0)(figment).merge(Serialized::global("auth.client_ip_header", "X-Forwarded-For"))
        }).await;
        let api = base(&server);
        // The last hop of the named header is the client: one bucket per address.
        let nobody = json!({"email": "nobody@example.com", "password": "whatever it is"});
        let sign_in_from = |hops: &'static str| {
            let (api, nobody) = (&api, &nobody);
            async move {
                call(api, "POST", "/api/auth/sign-in/email", Some(nobody), &[("X-Forwarded-For", hops)]).await.status
            }
        };
        assert_eq!(sign_in_from("1.1.1.1, 10.0.0.1").await, 401);
        assert_eq!(sign_in_from("2.2.2.2, 10.0.0.1").await, 429, "the same last hop");
        assert_eq!(sign_in_from("1.1.1.1, 10.0.0.2").await, 401, "another last hop");
        let up = call(&api, "POST", "/api/auth/sign-up/email", Some(&sign_up_body("gi@example.com")),
            &[("X-Forwarded-For", "10.0.0.9")]).await;
        assert_eq!(up.status, 200, "{}", up.text);
        let cookie = format!("better-auth.session_token={}", up.session_cookie().unwrap());
        let session = call(&api, "GET", "/api/auth/get-session", None, &[("Cookie", &cookie)]).await;
        assert_eq!(session.body["session"]["ipAddress"], "10.0.0.9");

        // A tampered signature: no session, and nothing cleared.
        let tampered = format!("{}AAAA%3D", cookie.trim_end_matches("%3D").trim_end_matches(|c: char| c != '.'));
        let answer = call(&api, "GET", "/api/auth/get-session", None, &[("Cookie", &tampered)]).await;
        assert_eq!((answer.status, answer.text.as_str()), (200, "null"));
        assert!(answer.cookies().is_empty());
        assert_eq!(call(&api, "GET", "/api/tasks", None, &[("Cookie", &tampered)]).await.status, 401);

        // Expired: no session, the cookies cleared, the row deleted.
        let past = if server.db_url.starts_with("sqlite") { "'2020-01-01T00:00:00.000Z'" } else { "'2020-01-01T00:00:00Z'" };
        execute(&server.db_url, &format!("UPDATE \"session\" SET \"expiresAt\" = {past}")).await;
        let expired = call(&api, "GET", "/api/auth/get-session", None, &[("Cookie", &cookie)]).await;
        assert_eq!(expired.text, "null");
        assert_eq!(expired.cookies().len(), 3);
        assert_eq!(count(&server.db_url, "SELECT count(*) FROM \"session\"").await, 0);
        assert_eq!(call(&api, "POST", "/api/auth/refresh", None, &[("Cookie", &cookie), ("Origin", "http://localhost:3000")]).await.status, 401);
        server.stop().await;
    }
}

on_both_backends! {
    async fn tables_the_service_made_serve_a_better_auth_server_started_after_it(backend) {
        let server = LiveServer::start(backend, server_on(0, 0)).await;
        let api = base(&server);
        let up = call(&api, "POST", "/api/auth/sign-up/email", Some(&sign_up_body("first@example.com")), &[]).await;
        assert_eq!(up.status, 200);
        let columns = |table: &str| {
            if server.db_url.starts_with("sqlite") {
                format!("SELECT count(*) FROM pragma_table_info('{table}')")
            } else {
                format!("SELECT count(*) FROM information_schema.columns WHERE table_name = '{table}'")
            }
        };
        let before = count(&server.db_url, &columns("account")).await;
        // Better Auth's migrations run at its start: they find the tables as they want them.
        let node = BetterAuth::start(&server.db_url, "camelCase").await;
        assert_eq!(count(&server.db_url, &columns("account")).await, before, "Better Auth changed nothing");
        let (status, _, body) = node.post("sign-in/email", None,
            json!({"email": "first@example.com", "password": "correct horse battery"})).await;
        assert_eq!(status, 200, "{body}");
        let (status, _, body) = node.post("sign-up/email", None, sign_up_body("second@example.com")).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(sign_in_status(&api, "second@example.com", "correct horse battery").await, 200);
        drop(node);
        server.stop().await;
    }
}

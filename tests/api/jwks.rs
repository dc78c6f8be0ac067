//! Better Auth tokens verified with keys from a JWKS served over real HTTP on loopback:
//! Ed25519, RSA (RS256 and PS256) and P-256 keys generated here, rotation, refetch
//! limiting, a key source that is down or broken, and the attacks the contract names.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rocket::figment::providers::Serialized;
use rocket::figment::Figment;
use rocket::futures::future::join_all;
use rocket::http::Status;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{on_both_backends, unsigned, Backend, TestApp, TestResponse, TEST_SECRET};

/// A signing key of the kind Better Auth can be configured with, and its public JWK.
#[derive(Clone)]
pub struct TestKey {
    pub kid: String,
    pub alg: Algorithm,
    encoding: EncodingKey,
    pub jwk: Value,
    /// The raw public key bytes (for the algorithm-confusion attack).
    pub public_bytes: Vec<u8>,
}

impl TestKey {
    fn ed25519(kid: &str) -> TestKey {
        use ed25519_dalek::pkcs8::EncodePrivateKey;
        let key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
        let public = key.verifying_key().to_bytes().to_vec();
        TestKey {
            kid: kid.to_owned(),
            alg: Algorithm::EdDSA,
            encoding: EncodingKey::from_ed_der(key.to_pkcs8_der().unwrap().as_bytes()),
            // As Better Auth publishes it: no `use`, no `alg`.
            jwk: json!({"kty": "OKP", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode(&public), "kid": kid}),
            public_bytes: public,
        }
    }

    fn p256(kid: &str) -> TestKey {
        use p256::elliptic_curve::sec1::ToEncodedPoint;
        use p256::pkcs8::EncodePrivateKey;
        let key = p256::SecretKey::random(&mut rand::rngs::OsRng);
        let point = key.public_key().to_encoded_point(false);
        TestKey {
            kid: kid.to_owned(),
            alg: Algorithm::ES256,
            encoding: EncodingKey::from_ec_der(key.to_pkcs8_der().unwrap().as_bytes()),
            jwk: json!({"kty": "EC", "crv": "P-256", "alg": "ES256", "kid": kid,
                        "x": URL_SAFE_NO_PAD.encode(point.x().unwrap()),
                        "y": URL_SAFE_NO_PAD.encode(point.y().unwrap())}),
            public_bytes: point.as_bytes().to_vec(),
        }
    }

    /// The RSA key pair is made once per test run (RSA key generation is slow).
    fn rsa(kid: &str, alg: Option<Algorithm>) -> TestKey {
        use rsa::pkcs1::EncodeRsaPrivateKey;
        use rsa::traits::PublicKeyParts;
        static RSA: OnceLock<rsa::RsaPrivateKey> = OnceLock::new();
        let key =
            RSA.get_or_init(|| rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).unwrap());
        let n = key.n().to_bytes_be();
        let mut jwk = json!({"kty": "RSA", "kid": kid, "use": "sig",
                             "n": URL_SAFE_NO_PAD.encode(&n),
                             "e": URL_SAFE_NO_PAD.encode(key.e().to_bytes_be())});
        if let Some(alg) = alg {
            jwk["alg"] = json!(format!("{alg:?}"));
        }
        TestKey {
            kid: kid.to_owned(),
            alg: alg.unwrap_or(Algorithm::RS256),
            encoding: EncodingKey::from_rsa_der(key.to_pkcs1_der().unwrap().as_bytes()),
            jwk,
            public_bytes: n,
        }
    }

    /// Signs `claims` with a header like Better Auth's: `alg` and `kid`, no `typ`.
    pub fn sign(&self, claims: &Value) -> String {
        self.sign_with(claims, |_| {})
    }

    fn sign_with(&self, claims: &Value, adjust: impl FnOnce(&mut Header)) -> String {
        let mut header = Header::new(self.alg);
        header.typ = None;
        header.kid = Some(self.kid.clone());
        adjust(&mut header);
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
    }
}

/// A JWKS endpoint on loopback that counts its requests; what it answers can be changed.
pub struct KeyServer {
    pub port: u16,
    answer: Arc<Mutex<(u16, String)>>,
    hits: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl KeyServer {
    pub async fn start(keys: &[&TestKey]) -> KeyServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let answer = Arc::new(Mutex::new((200, String::new())));
        let hits = Arc::new(AtomicUsize::new(0));
        let (answer2, hits2) = (answer.clone(), hits.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let (answer, hits) = (answer2.clone(), hits2.clone());
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    let path_ok = request.starts_with(b"GET /api/auth/jwks ");
                    hits.fetch_add(1, Ordering::SeqCst);
                    let (status, body) = if path_ok {
                        answer.lock().unwrap().clone()
                    } else {
                        (404, String::new())
                    };
                    let response = format!(
                        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = stream.write_all(response.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        let server = KeyServer {
            port,
            answer,
            hits,
            task,
        };
        server.publish(keys);
        server
    }

    /// Better Auth's base URL (and so the tokens' `iss` and `aud`).
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn publish(&self, keys: &[&TestKey]) {
        let keys: Vec<&Value> = keys.iter().map(|k| &k.jwk).collect();
        *self.answer.lock().unwrap() = (200, json!({ "keys": keys }).to_string());
    }

    pub fn answer(&self, status: u16, body: &str) {
        *self.answer.lock().unwrap() = (status, body.to_owned());
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for KeyServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// The claims of a Better Auth `jwt()` access token for `sub`.
pub fn better_auth_claims(server: &KeyServer, sub: &str) -> Value {
    let iat = now();
    json!({
        "sub": sub, "iss": server.base_url(), "aud": server.base_url(), "iat": iat, "exp": iat + 900,
        "id": sub, "email": format!("{sub}@example.com"), "name": "Alice Example",
        "emailVerified": true, "image": null, "createdAt": "2026-11-01T09:00:00.000Z",
    })
}

/// The service with JWKS on, pointed at `server`, HS256 on too unless `jwks_only`.
async fn spawn(
    backend: Backend,
    server: &KeyServer,
    jwks_only: bool,
    adjust: impl FnOnce(Figment) -> Figment,
) -> TestApp {
    let url = server.base_url();
    TestApp::spawn_with(backend, move |figment| {
        let figment = figment
            .merge(Serialized::global("auth.better_auth_url", url))
            .merge(Serialized::global("auth.jwks_refetch_secs", 0.2))
            .merge(Serialized::global("auth.jwks_timeout_secs", 2.0));
        let figment = if jwks_only {
            figment
                .merge(Serialized::global("auth.secret", ""))
                .select("release")
        } else {
            figment
        };
        adjust(figment)
    })
    .await
}

async fn get_tasks(app: &TestApp, user: &str, token: &str) -> TestResponse {
    app.with_token(token)
        .get(&format!("/api/{user}/tasks"))
        .await
}

fn assert_invalid_token(response: &TestResponse, what: &str) {
    assert_eq!(
        response.status,
        Status::Unauthorized,
        "{what}: {}",
        response.text
    );
    assert_eq!(response.error_code(), "invalid_token", "{what}");
    assert_eq!(
        response.header("WWW-Authenticate"),
        Some("Bearer"),
        "{what}"
    );
}

on_both_backends! {
    async fn a_better_auth_token_works_for_its_own_user_only(backend) {
        let key = TestKey::ed25519("ba-key-1");
        let server = KeyServer::start(&[&key]).await;
        let app = spawn(backend, &server, false, |f| f).await;
        assert_eq!(server.hits(), 0, "keys are fetched on first need, not at start");

        let token = key.sign(&better_auth_claims(&server, "usr_8fJ2"));
        let created = app.with_token(&token).post("/api/usr_8fJ2/tasks", &json!({"title": "from Better Auth"})).await;
        assert_eq!(created.status, Status::Created, "{}", created.text);
        let listed = get_tasks(&app, "usr_8fJ2", &token).await;
        assert_eq!(listed.status, Status::Ok);
        assert_eq!(listed.json()[0]["title"], "from Better Auth");
        let other = get_tasks(&app, "someone_else", &token).await;
        assert_eq!(other.status, Status::Forbidden);
        assert_eq!(other.error_code(), "forbidden");
        assert_eq!(server.hits(), 1, "one fetch serves every later token");

        // The shared-secret mode keeps working beside JWKS.
        let hs = app.as_user("usr_8fJ2").get("tasks").await;
        assert_eq!(hs.status, Status::Ok);
        assert_eq!(hs.json()[0]["title"], "from Better Auth");
    }

    async fn rsa_pss_and_p256_keys_verify_with_their_own_algorithm(backend) {
        let rs = TestKey::rsa("rsa-rs256", Some(Algorithm::RS256));
        let ps = TestKey::rsa("rsa-ps256", Some(Algorithm::PS256));
        let es = TestKey::p256("ec-1");
        let mut any_rsa = TestKey::rsa("rsa-any", None);
        let server = KeyServer::start(&[&rs, &ps, &es, &any_rsa]).await;
        let app = spawn(backend, &server, true, |f| f).await;
        for key in [&rs, &ps, &es, &any_rsa] {
            let response = get_tasks(&app, "alice", &key.sign(&better_auth_claims(&server, "alice"))).await;
            assert_eq!(response.status, Status::Ok, "{:?} {}: {}", key.alg, key.kid, response.text);
        }
        // An RSA JWK without `alg` serves both RSA signature schemes.
        any_rsa.alg = Algorithm::PS256;
        let response = get_tasks(&app, "alice", &any_rsa.sign(&better_auth_claims(&server, "alice"))).await;
        assert_eq!(response.status, Status::Ok);
    }

    async fn attacks_are_refused_with_401(backend) {
        let key = TestKey::ed25519("ba-key");
        let rs = TestKey::rsa("rsa-rs256", Some(Algorithm::RS256));
        let es = TestKey::p256("ec-key");
        let server = KeyServer::start(&[&key, &rs, &es]).await;
        let attacker_server = KeyServer::start(&[]).await;
        let app = spawn(backend, &server, true, |f| f).await;
        let claims = better_auth_claims(&server, "alice");
        assert_eq!(get_tasks(&app, "alice", &key.sign(&claims)).await.status, Status::Ok, "the genuine token passes");

        let mut attacker = TestKey::ed25519("attacker");
        attacker_server.publish(&[&attacker]);
        let hmac = |secret: &[u8], header: Header| jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(secret)).unwrap();
        let mut hs_header = Header::new(Algorithm::HS256);
        hs_header.kid = Some(key.kid.clone());
        let x_text = key.jwk["x"].as_str().unwrap().to_owned();
        let mut impostor = TestKey::ed25519("ba-key");
        let mut wrong_alg = rs.clone();
        wrong_alg.alg = Algorithm::PS256;
        let mut es_as_ed = es.clone();
        es_as_ed.kid = key.kid.clone();
        let with = |claims_patch: Value| {
            let mut c = claims.clone();
            c.as_object_mut().unwrap().extend(claims_patch.as_object().unwrap().clone());
            key.sign(&c)
        };
        let without = |field: &str| {
            let mut c = claims.clone();
            c.as_object_mut().unwrap().remove(field);
            key.sign(&c)
        };
        let cases: Vec<(String, &str)> = vec![
            (unsigned(&json!({"alg": "none", "kid": key.kid}), &claims, ""), "alg none"),
            (unsigned(&json!({"alg": "EdDSA", "kid": key.kid}), &claims, ""), "no signature"),
            (hmac(TEST_SECRET.as_bytes(), Header::new(Algorithm::HS256)), "HS256 when only JWKS is on"),
            (hmac(&key.public_bytes, hs_header.clone()), "HS256 keyed with the Ed25519 public key"),
            (hmac(x_text.as_bytes(), hs_header.clone()), "HS256 keyed with the JWK's x text"),
            (hmac(key.jwk.to_string().as_bytes(), hs_header.clone()), "HS256 keyed with the JWK JSON"),
            (hmac(&rs.public_bytes, hs_header), "HS256 keyed with the RSA modulus"),
            (wrong_alg.sign(&claims), "PS256 header over a key whose JWK says RS256"),
            (es_as_ed.sign(&claims), "ES256 signature naming an Ed25519 kid"),
            (attacker.sign_with(&claims, |h| h.jku = Some(format!("{}/api/auth/jwks", attacker_server.base_url()))), "jku to the attacker's keys"),
            (attacker.sign_with(&claims, |h| h.x5u = Some(format!("{}/api/auth/jwks", attacker_server.base_url()))), "x5u to the attacker's keys"),
            (attacker.sign_with(&claims, |h| h.jwk = Some(serde_json::from_value(attacker.jwk.clone()).unwrap())), "embedded jwk"),
            (key.sign_with(&claims, |h| h.jku = Some(server.base_url())), "jku even beside a known kid"),
            (key.sign_with(&claims, |h| h.crit = Some(vec!["exp".into()])), "crit"),
            (impostor.sign(&claims), "valid signature from a key not in the JWKS, reusing a known kid"),
            ({ impostor.kid = "unknown-kid".into(); impostor.sign(&claims) }, "valid signature from a key not in the JWKS"),
            ({ attacker.kid = key.kid.clone(); attacker.sign_with(&claims, |h| h.kid = None) }, "no kid, foreign key"),
            (with(json!({"iss": "https://evil.example"})), "wrong iss"),
            (with(json!({"aud": "https://evil.example"})), "wrong aud"),
            (with(json!({"aud": [ "https://evil.example" ]})), "wrong aud list"),
            (without("aud"), "no aud"),
            (without("iss"), "no iss"),
            (without("exp"), "no exp"),
            (with(json!({"exp": now() - 120})), "expired"),
            (with(json!({"nbf": now() + 600})), "not yet valid"),
            (with(json!({"sub": ""})), "empty sub"),
            (key.sign_with(&claims, |h| h.typ = Some("session+jwt".into())), "another kind of Better Auth JWT"),
        ];
        for (token, what) in &cases {
            assert_invalid_token(&get_tasks(&app, "alice", token).await, what);
        }
        assert_eq!(attacker_server.hits(), 0, "nothing named in a token is ever fetched");
    }

    async fn rotated_keys_verify_after_the_refetch_and_removed_keys_stop(backend) {
        let old = TestKey::ed25519("key-old");
        let new = TestKey::ed25519("key-new");
        let server = KeyServer::start(&[&old]).await;
        let app = spawn(backend, &server, true, |f| f.merge(Serialized::global("auth.jwks_cache_ttl_secs", 1.5))).await;
        let claims = better_auth_claims(&server, "alice");
        assert_eq!(get_tasks(&app, "alice", &old.sign(&claims)).await.status, Status::Ok);

        // Better Auth restarted with a new key: its kid is unknown, so the keys are fetched again.
        server.publish(&[&old, &new]);
        // Refetches are at least 0.2 s apart: poll until the one after the interval.
        until(|| async { get_tasks(&app, "alice", &new.sign(&claims)).await.status == Status::Ok }, "new key after refetch").await;
        assert_eq!(get_tasks(&app, "alice", &old.sign(&claims)).await.status, Status::Ok, "old key still published");
        let fetches = server.hits();
        assert_eq!(fetches, 2);

        // The old key is withdrawn; once the cache lifetime is over it stops verifying.
        server.publish(&[&new]);
        until(|| async { get_tasks(&app, "alice", &old.sign(&claims)).await.status == Status::Unauthorized }, "withdrawn key refused once the cache expires").await;
        assert_invalid_token(&get_tasks(&app, "alice", &old.sign(&claims)).await, "withdrawn key");
        assert_eq!(get_tasks(&app, "alice", &new.sign(&claims)).await.status, Status::Ok);
        assert_eq!(server.hits(), fetches + 1, "one refresh at expiry");
    }

    async fn unknown_kids_cannot_make_the_service_hammer_better_auth(backend) {
        let key = TestKey::ed25519("real");
        let server = KeyServer::start(&[&key]).await;
        let app = spawn(backend, &server, true, |f| f.merge(Serialized::global("auth.jwks_refetch_secs", 60))).await;
        let claims = better_auth_claims(&server, "alice");
        let forged: Vec<String> = (0..40).map(|i| {
            let mut k = TestKey::ed25519(&format!("forged-{i}"));
            k.kid = format!("forged-{i}");
            k.sign(&claims)
        }).collect();
        let responses = join_all(forged.iter().map(|t| get_tasks(&app, "alice", t))).await;
        for response in &responses {
            assert_invalid_token(response, "forged kid");
        }
        for token in &forged {
            assert_invalid_token(&get_tasks(&app, "alice", token).await, "forged kid, again");
        }
        assert_eq!(server.hits(), 1, "80 unknown kids, one fetch in the refetch interval");
        assert_eq!(get_tasks(&app, "alice", &key.sign(&claims)).await.status, Status::Ok);
    }

    async fn a_key_source_that_is_down_gives_503_and_recovers(backend) {
        let key = TestKey::ed25519("k");
        let server = KeyServer::start(&[&key]).await;
        server.answer(500, "{\"error\": \"boom\"}");
        let app = spawn(backend, &server, true, |f| f).await;
        let token = key.sign(&better_auth_claims(&server, "alice"));

        let down = get_tasks(&app, "alice", &token).await;
        assert_eq!(down.status, Status::ServiceUnavailable, "{}", down.text);
        assert_eq!(down.error_code(), "service_unavailable");
        let retry: u64 = down.header("Retry-After").unwrap().parse().unwrap();
        assert!((1..=30).contains(&retry), "Retry-After {retry}");
        let ready = app.anonymous().get("/health/ready").await;
        assert_eq!(ready.status, Status::Ok, "readiness does not fail on the key source");
        assert_eq!(ready.json()["jwks"]["state"], "unavailable");

        for (status, body) in [(200, "<html>not json</html>"), (200, "{\"keys\": 3}"), (404, "")] {
            server.answer(status, body);
            // Every answer until the next fetch has seen this body is a 503 too.
            let fetched = server.hits();
            until(|| async {
                let response = get_tasks(&app, "alice", &token).await;
                assert_eq!(response.status, Status::ServiceUnavailable, "{status} {body}");
                server.hits() > fetched
            }, "the key source is asked again").await;
        }

        server.publish(&[&key]);
        until(|| async { get_tasks(&app, "alice", &token).await.status == Status::Ok }, "recovers by itself").await;
        let ready = app.anonymous().get("/health/ready").await;
        assert_eq!(ready.json()["jwks"]["state"], "ok");
        assert_eq!(ready.json()["jwks"]["keys"], 1);

        // Once keys are held, an outage keeps them: known keys still verify.
        server.answer(500, "");
        let unknown = TestKey::ed25519("brand-new").sign(&better_auth_claims(&server, "alice"));
        // Once the refetch interval has passed, the unknown kid makes a fetch, which fails.
        until(|| async { get_tasks(&app, "alice", &unknown).await.status == Status::ServiceUnavailable }, "a new kid cannot be checked now").await;
        assert_eq!(get_tasks(&app, "alice", &token).await.status, Status::Ok, "held keys still verify");
    }

    async fn an_unreachable_key_source_does_not_stop_the_service(backend) {
        // A port that nothing listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let url = format!("http://127.0.0.1:{port}");
        let key = TestKey::ed25519("k");
        let claims = json!({"sub": "alice", "iss": url, "aud": url, "iat": now(), "exp": now() + 900});
        let app = TestApp::spawn_with(backend, move |f| f.merge(Serialized::global("auth.better_auth_url", url))).await;
        let live = app.anonymous().get("/health/live").await;
        assert_eq!(live.status, Status::Ok);
        let response = get_tasks(&app, "alice", &key.sign(&claims)).await;
        assert_eq!(response.status, Status::ServiceUnavailable, "{}", response.text);
        assert!(response.header("Retry-After").is_some());
        let hs = app.as_user("alice").get("tasks").await;
        assert_eq!(hs.status, Status::Ok, "HS256 does not depend on the key source");
    }
}

/// Polls `check` until it holds, failing after 10 s: waits for a state, not a duration.
async fn until<F, Fut>(mut check: F, what: &str)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting: {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

//! Token verification cost: the service's `Verifier` against the bare signature check of
//! the same token by the same crate (a prepared key and validation), for HS256 and EdDSA.
//! Target: the service costs at most 1.5× the bare check, so key parsing and the JWKS
//! lookup must stay off the per-request path.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use criterion::{criterion_group, criterion_main, Criterion};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rocket::futures::FutureExt as _;
use serde_json::json;
use todo_api::auth::Verifier;
use todo_api::config::{AuthConfig, JwksConfig};

/// The claim the service reads, so both sides deserialise the same thing.
#[derive(serde::Deserialize)]
struct Sub {
    #[allow(dead_code)]
    sub: String,
}

const SECRET: &str = "bench-secret-that-is-long-enough-for-hs256-0123456789";

/// Serves `document` to every request on a loopback port, from a plain thread.
fn serve(document: String) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0u8; 2048];
            let _ = stream.read(&mut buf);
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{document}",
                document.len()
            );
        }
    });
    port
}

fn verify(c: &mut Criterion) {
    use ed25519_dalek::pkcs8::EncodePrivateKey;
    let ed = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
    let x = URL_SAFE_NO_PAD.encode(ed.verifying_key().to_bytes());
    let port =
        serve(json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": x, "kid": "k1"}]}).to_string());
    let origin = format!("http://127.0.0.1:{port}");
    let config = AuthConfig {
        secret: Some(secrecy::SecretString::from(SECRET)),
        dev_secret: false,
        leeway_secs: 30,
        jwks: Some(JwksConfig {
            url: format!("{origin}/api/auth/jwks"),
            issuer: origin.clone(),
            audience: origin.clone(),
            refetch_interval: Duration::from_secs(30),
            cache_ttl: Duration::from_secs(3600),
            fetch_timeout: Duration::from_secs(5),
        }),
        sessions: None,
        cookie_prefix: None,
    };
    let verifier = Verifier::new(&config).unwrap();

    let now = jsonwebtoken::get_current_timestamp();
    let claims = json!({"sub": "usr_8fJ2", "iss": origin, "aud": origin, "iat": now, "exp": now + 3600,
                        "email": "alice@example.com", "name": "Alice"});
    let hs_token = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    let mut ed_header = Header::new(Algorithm::EdDSA);
    ed_header.typ = None;
    ed_header.kid = Some("k1".to_owned());
    let ed_token = jsonwebtoken::encode(
        &ed_header,
        &claims,
        &EncodingKey::from_ed_der(ed.to_pkcs8_der().unwrap().as_bytes()),
    )
    .unwrap();

    // The first EdDSA token fetches the keys (reqwest needs a Tokio runtime for that);
    // every later one finds them cached and never waits (`now_or_never` would panic).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    assert_eq!(
        runtime.block_on(verifier.verify(&ed_token)).unwrap(),
        "usr_8fJ2"
    );
    assert_eq!(
        verifier.verify(&hs_token).now_or_never().unwrap().unwrap(),
        "usr_8fJ2"
    );

    let mut hs_validation = Validation::new(Algorithm::HS256);
    hs_validation.set_required_spec_claims(&["exp"]);
    hs_validation.validate_aud = false;
    let hs_key = DecodingKey::from_secret(SECRET.as_bytes());
    let mut ed_validation = Validation::new(Algorithm::EdDSA);
    ed_validation.set_issuer(&[&origin]);
    ed_validation.set_audience(&[&origin]);
    ed_validation.set_required_spec_claims(&["exp", "iss", "aud"]);
    let ed_key = DecodingKey::from_ed_components(&x).unwrap();

    let mut group = c.benchmark_group("verify");
    group.bench_function("hs256/service", |b| {
        b.iter(|| verifier.verify(&hs_token).now_or_never().unwrap().unwrap())
    });
    group.bench_function("hs256/bare", |b| {
        b.iter(|| jsonwebtoken::decode::<Sub>(&hs_token, &hs_key, &hs_validation).unwrap())
    });
    group.bench_function("eddsa/service", |b| {
        b.iter(|| verifier.verify(&ed_token).now_or_never().unwrap().unwrap())
    });
    group.bench_function("eddsa/bare", |b| {
        b.iter(|| jsonwebtoken::decode::<Sub>(&ed_token, &ed_key, &ed_validation).unwrap())
    });
    group.finish();
}

criterion_group!(benches, verify);
criterion_main!(benches);

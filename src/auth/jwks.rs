//! Better Auth's published keys: fetched on first need, parsed once, cached, and fetched
//! again when they expire or a token names a key the cache does not hold.
//!
//! Invariants:
//! - a key is only used with an algorithm its JWK allows (its `alg`, or its key type's
//!   family when `alg` is absent); symmetric (`oct`) keys are never taken from a JWKS;
//! - fetches are single-flight and at least `refetch_interval` apart, whatever tokens
//!   arrive, so forged `kid`s cannot make the service hammer Better Auth;
//! - a failed fetch keeps the keys already held.

use std::sync::{Arc, RwLock};
use std::time::Instant;

use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, KeyOperations, PublicKeyUse,
};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Serialize;

use crate::config::JwksConfig;

/// Largest JWKS document read; Better Auth's holds a handful of keys.
const MAX_DOCUMENT_BYTES: usize = 256 * 1024;

/// The asymmetric algorithms a JWKS key may serve.
pub const JWKS_ALGORITHMS: [Algorithm; 4] = [
    Algorithm::EdDSA,
    Algorithm::RS256,
    Algorithm::PS256,
    Algorithm::ES256,
];

/// One usable public key.
pub struct Key {
    kid: Option<String>,
    algorithms: &'static [Algorithm],
    decoding: DecodingKey,
}

impl Key {
    /// The key, ready for the signature check.
    pub fn decoding(&self) -> &DecodingKey {
        &self.decoding
    }

    /// Whether this key may check a signature made with `alg`.
    pub fn allows(&self, alg: Algorithm) -> bool {
        self.algorithms.contains(&alg)
    }

    /// Turns a JWK into a key, or says why it cannot be used.
    fn from_jwk(jwk: &Jwk) -> Result<Self, &'static str> {
        if matches!(&jwk.common.public_key_use, Some(u) if *u != PublicKeyUse::Signature) {
            return Err("its use is not sig");
        }
        if let Some(ops) = &jwk.common.key_operations {
            if !ops.contains(&KeyOperations::Verify) {
                return Err("its key_ops lack verify");
            }
        }
        let family: &'static [Algorithm] = match &jwk.algorithm {
            AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
                &[Algorithm::EdDSA]
            }
            AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => {
                &[Algorithm::ES256]
            }
            AlgorithmParameters::RSA(_) => &[Algorithm::RS256, Algorithm::PS256],
            AlgorithmParameters::OctetKey(_) => return Err("symmetric keys are never accepted"),
            _ => return Err("its key type or curve is not supported"),
        };
        let algorithms: &'static [Algorithm] = match jwk.common.key_algorithm {
            None => family,
            Some(named) => {
                let alg = match named {
                    KeyAlgorithm::EdDSA => Algorithm::EdDSA,
                    KeyAlgorithm::RS256 => Algorithm::RS256,
                    KeyAlgorithm::PS256 => Algorithm::PS256,
                    KeyAlgorithm::ES256 => Algorithm::ES256,
                    _ => return Err("its alg is not supported"),
                };
                let position = family
                    .iter()
                    .position(|a| *a == alg)
                    .ok_or("its alg does not fit its key type")?;
                &family[position..=position]
            }
        };
        let decoding = DecodingKey::from_jwk(jwk).map_err(|_| "its parameters are invalid")?;
        Ok(Self {
            kid: jwk.common.key_id.clone(),
            algorithms,
            decoding,
        })
    }
}

/// The keys of one fetched JWKS document.
#[derive(Default)]
pub struct KeySet {
    keys: Vec<Key>,
}

/// What a key set holds for a token's `kid` and `alg`.
pub enum Lookup<'a> {
    /// Keys that may check the token (usually one).
    Found(Vec<&'a Key>),
    /// The `kid` is known, but none of its keys allows the token's algorithm.
    WrongAlgorithm,
    /// No key by that `kid` (or, without a `kid`, none for that algorithm).
    Unknown,
}

impl KeySet {
    /// Parses a JWKS document, keeping every usable key and skipping the rest.
    pub fn parse(document: &[u8]) -> Result<Self, String> {
        #[derive(serde::Deserialize)]
        struct Document {
            keys: Vec<serde_json::Value>,
        }
        let document: Document =
            serde_json::from_slice(document).map_err(|e| format!("not a JWKS document: {e}"))?;
        let mut keys = Vec::with_capacity(document.keys.len());
        for value in document.keys {
            let kid = value.get("kid").and_then(|k| k.as_str()).map(str::to_owned);
            match serde_json::from_value::<Jwk>(value)
                .map_err(|_| "it is not a valid JWK")
                .and_then(|jwk| Key::from_jwk(&jwk))
            {
                Ok(key) => keys.push(key),
                Err(reason) => tracing::warn!(kid = ?kid, reason, "JWKS key skipped"),
            }
        }
        Ok(Self { keys })
    }

    /// The keys for a token's `kid` and `alg`.
    pub fn lookup(&self, kid: Option<&str>, alg: Algorithm) -> Lookup<'_> {
        let named: Vec<&Key> = self
            .keys
            .iter()
            .filter(|key| kid.is_none() || key.kid.as_deref() == kid)
            .collect();
        if named.is_empty() {
            return Lookup::Unknown;
        }
        let usable: Vec<&Key> = named.into_iter().filter(|key| key.allows(alg)).collect();
        match (usable.is_empty(), kid.is_some()) {
            (false, _) => Lookup::Found(usable),
            (true, true) => Lookup::WrongAlgorithm,
            (true, false) => Lookup::Unknown,
        }
    }

    /// How many usable keys the set holds.
    pub fn len(&self) -> usize {
        self.keys.len()
    }
}

#[derive(Default)]
struct CacheState {
    keys: Arc<KeySet>,
    fetched_at: Option<Instant>,
    attempted_at: Option<Instant>,
    last_error: Option<String>,
    fetches: u64,
}

/// The key source's state, for `/health/ready`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct JwksStatus {
    /// `not_fetched`, `ok`, `stale` (last refresh failed; older keys in use) or
    /// `unavailable` (no keys could be fetched yet).
    pub state: &'static str,
    /// Usable keys held.
    pub keys: usize,
    /// Seconds since the last successful fetch.
    pub age_secs: Option<u64>,
}

/// The JWKS cache of one service instance.
pub struct Jwks {
    config: JwksConfig,
    client: reqwest::Client,
    state: RwLock<CacheState>,
    fetching: tokio::sync::Mutex<()>,
}

/// The current keys and whether they may be used without a refresh first.
pub struct Snapshot {
    /// The keys.
    pub keys: Arc<KeySet>,
    /// Fetched within the cache lifetime.
    pub fresh: bool,
}

impl Jwks {
    /// A cache for `config`'s key source; nothing is fetched until a token needs a key.
    pub fn new(config: JwksConfig) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(config.fetch_timeout)
            .connect_timeout(config.fetch_timeout)
            // A JWKS that redirects elsewhere is not followed: keys come from the one URL.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("todo-api/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            config,
            client,
            state: RwLock::new(CacheState::default()),
            fetching: tokio::sync::Mutex::new(()),
        })
    }

    fn read<T>(&self, f: impl FnOnce(&CacheState) -> T) -> T {
        match self.state.read() {
            Ok(state) => f(&state),
            Err(poisoned) => f(&poisoned.into_inner()),
        }
    }

    fn write(&self, f: impl FnOnce(&mut CacheState)) {
        match self.state.write() {
            Ok(mut state) => f(&mut state),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    /// The keys held now.
    pub fn snapshot(&self) -> Snapshot {
        self.read(|state| Snapshot {
            keys: Arc::clone(&state.keys),
            fresh: state
                .fetched_at
                .is_some_and(|at| at.elapsed() < self.config.cache_ttl),
        })
    }

    /// Whether the last fetch attempt failed.
    pub fn last_fetch_failed(&self) -> bool {
        self.read(|state| state.last_error.is_some())
    }

    /// Seconds until the next fetch may be tried (at least 1): the `Retry-After` of a 503.
    pub fn retry_after_secs(&self) -> u64 {
        let wait = self.read(|state| {
            state
                .attempted_at
                .map(|at| self.config.refetch_interval.saturating_sub(at.elapsed()))
                .unwrap_or_default()
        });
        wait.as_secs_f64().ceil().max(1.0) as u64
    }

    /// Completed fetch attempts, successful or not.
    pub fn fetch_count(&self) -> u64 {
        self.read(|state| state.fetches)
    }

    /// The state for health reports.
    pub fn status(&self) -> JwksStatus {
        self.read(|state| JwksStatus {
            state: match (&state.fetched_at, &state.last_error) {
                (None, None) => "not_fetched",
                (None, Some(_)) => "unavailable",
                (Some(_), Some(_)) => "stale",
                (Some(_), None) => "ok",
            },
            keys: state.keys.len(),
            age_secs: state.fetched_at.map(|at| at.elapsed().as_secs()),
        })
    }

    /// Fetches the document again unless the last attempt was under `refetch_interval`
    /// ago. Concurrent callers wait for one fetch instead of starting their own.
    pub async fn refresh(&self) {
        let due = |state: &CacheState| {
            state
                .attempted_at
                .is_none_or(|at| at.elapsed() >= self.config.refetch_interval)
        };
        if !self.read(due) {
            return;
        }
        let _one_at_a_time = self.fetching.lock().await;
        if !self.read(due) {
            return;
        }
        let result = self.fetch().await;
        self.write(|state| {
            state.attempted_at = Some(Instant::now());
            state.fetches += 1;
            match result {
                Ok(keys) => {
                    tracing::info!(keys = keys.len(), "JWKS fetched");
                    state.keys = Arc::new(keys);
                    state.fetched_at = state.attempted_at;
                    state.last_error = None;
                }
                Err(error) => {
                    tracing::error!(%error, url = %self.config.url, "JWKS fetch failed; keeping the keys held");
                    state.last_error = Some(error);
                }
            }
        });
    }

    async fn fetch(&self) -> Result<KeySet, String> {
        let mut response = self
            .client
            .get(&self.config.url)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| format!("request failed: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("answered {}", response.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| format!("reading the body failed: {e}"))?
        {
            if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
                return Err(format!("document is over {MAX_DOCUMENT_BYTES} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        KeySet::parse(&body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED_KEY: &str = r#"{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","kid":"ed"}"#;

    fn set(keys: &[&str]) -> KeySet {
        let document = format!(r#"{{"keys":[{}]}}"#, keys.join(","));
        KeySet::parse(document.as_bytes()).unwrap_or_default()
    }

    #[test]
    fn keys_serve_only_their_own_algorithm() {
        let keys = set(&[ED_KEY]);
        assert!(
            matches!(keys.lookup(Some("ed"), Algorithm::EdDSA), Lookup::Found(k) if k.len() == 1)
        );
        assert!(matches!(
            keys.lookup(Some("ed"), Algorithm::ES256),
            Lookup::WrongAlgorithm
        ));
        assert!(matches!(
            keys.lookup(Some("other"), Algorithm::EdDSA),
            Lookup::Unknown
        ));
        assert!(matches!(
            keys.lookup(None, Algorithm::EdDSA),
            Lookup::Found(_)
        ));
        assert!(matches!(
            keys.lookup(None, Algorithm::RS256),
            Lookup::Unknown
        ));
    }

    #[test]
    fn unusable_keys_are_skipped_not_fatal() {
        let keys = set(&[
            ED_KEY,
            r#"{"kty":"oct","k":"c2VjcmV0","kid":"hmac"}"#,
            r#"{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","kid":"enc","use":"enc"}"#,
            r#"{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","kid":"rs","alg":"RS256"}"#,
            r#"{"kty":"EC","crv":"P-384","x":"AA","y":"AA","kid":"p384"}"#,
            r#"{"nonsense":true}"#,
        ]);
        assert_eq!(keys.len(), 1);
        assert!(KeySet::parse(b"[]").is_err());
        assert!(KeySet::parse(b"{\"keys\": 5}").is_err());
        assert!(KeySet::parse(b"<html>").is_err());
    }
}

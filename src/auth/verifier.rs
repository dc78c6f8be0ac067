//! Token verification. Keys and validation rules are prepared once at start (JWKS keys
//! once per fetch); verifying a token is a header parse, a lookup, a signature check and a
//! few comparisons.
//!
//! Invariants:
//! - the algorithm comes from this configuration, never from the token: HS256 tokens are
//!   only checked against the shared secret, asymmetric ones only against JWKS keys whose
//!   JWK allows that algorithm;
//! - header parameters that point at other keys (`jku`, `jwk`, `x5u`, `x5c`) or demand
//!   extensions (`crit`) refuse the token; nothing in a token is ever fetched.

use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::ExposeSecret as _;
use serde::{Deserialize, Serialize};

use super::jwks::{Jwks, JwksStatus, Lookup, JWKS_ALGORITHMS};
use super::refusal::{Refusal, TokenError};
use super::sessions::Sessions;
use super::verdicts::{key_of, Verdicts};
use crate::config::AuthConfig;

#[derive(Deserialize)]
struct Claims {
    sub: Option<String>,
    /// Seconds since 1970; present and a whole number in every token that passed the
    /// validation (it requires `exp`).
    exp: Option<u64>,
}

/// HS256 tokens already verified: the same bytes verify the same way again until they
/// expire (the secret does not change while the service runs), so a client sending its
/// token with every request pays for the signature check, the base64 and the JSON once.
/// Only tokens that passed are remembered, so only a holder of the secret can add one.
/// Tokens checked against JWKS are not: a key the set drops must stop verifying at once.
const VERIFIED_CAPACITY: usize = 4096;

/// How long a token that just passed may be trusted without a second look:
/// jsonwebtoken holds it expired once `exp < now - leeway` in whole seconds, that is from
/// the second `exp + leeway + 1` on (`nbf` needs no second look: time only moves on).
fn trusted_for(exp: u64, leeway: u64) -> Duration {
    let expired_at = Duration::from_secs(exp.saturating_add(leeway).saturating_add(1));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    expired_at.saturating_sub(now)
}

/// The claims the `token` command writes.
#[derive(Serialize)]
struct MintedClaims<'a> {
    sub: &'a str,
    iat: u64,
    exp: u64,
}

/// The `typ` values of an access token; anything else (Better Auth's cookie-cache JWTs,
/// ID tokens, logout tokens) is refused. Absent is fine: Better Auth sets none.
fn access_token_type(typ: Option<&str>) -> bool {
    typ.is_none_or(|t| t.eq_ignore_ascii_case("JWT") || t.eq_ignore_ascii_case("at+jwt"))
}

/// A bearer value with exactly two dots is a JWT; any other is a session token.
pub fn is_jwt(token: &str) -> bool {
    token.bytes().filter(|b| *b == b'.').count() == 2
}

/// The JWKS half of the verifier: the key cache and one validation per algorithm.
struct JwksVerifier {
    jwks: Jwks,
    validations: Vec<(Algorithm, Validation)>,
}

impl JwksVerifier {
    fn validation(&self, alg: Algorithm) -> Option<&Validation> {
        self.validations
            .iter()
            .find(|(a, _)| *a == alg)
            .map(|(_, v)| v)
    }

    async fn verify(&self, token: &str, header: &Header) -> Result<Claims, Refusal> {
        let validation = self.validation(header.alg).ok_or(TokenError::Algorithm)?;
        let kid = header.kid.as_deref();
        let mut snapshot = self.jwks.snapshot();
        if !snapshot.fresh {
            self.jwks.refresh().await;
            snapshot = self.jwks.snapshot();
        }
        if matches!(snapshot.keys.lookup(kid, header.alg), Lookup::Unknown) {
            // A new key (rotation, or Better Auth restarted): fetch, at most once per interval.
            self.jwks.refresh().await;
            snapshot = self.jwks.snapshot();
        }
        let keys = match snapshot.keys.lookup(kid, header.alg) {
            Lookup::Found(keys) => keys,
            Lookup::WrongAlgorithm => return Err(TokenError::Algorithm.into()),
            Lookup::Unknown if self.jwks.last_fetch_failed() => {
                return Err(Refusal::KeysUnavailable {
                    retry_after: self.jwks.retry_after_secs(),
                })
            }
            Lookup::Unknown => return Err(TokenError::UnknownKey.into()),
        };
        let mut refusal = TokenError::Signature;
        for key in keys {
            match jsonwebtoken::decode::<Claims>(token, key.decoding(), validation) {
                Ok(data) => return Ok(data.claims),
                // Without a `kid` several keys may be tried; report the most telling reason.
                Err(error) => refusal = TokenError::from(error),
            }
        }
        Err(refusal.into())
    }
}

/// Verifies bearer tokens. Built once at start and managed as Rocket state.
pub struct Verifier {
    hs256: Option<(DecodingKey, Validation)>,
    /// The user of each HS256 token verified lately (see [`VERIFIED_CAPACITY`]).
    verified: Verdicts<Arc<str>>,
    jwks: Option<JwksVerifier>,
    sessions: Option<Arc<Sessions>>,
}

impl Verifier {
    /// Prepares the keys and validation rules of `config`.
    pub fn new(config: &AuthConfig) -> Result<Self, reqwest::Error> {
        let validation = |alg: Algorithm| {
            let mut validation = Validation::new(alg);
            validation.leeway = config.leeway_secs;
            validation.validate_exp = true;
            validation.validate_nbf = true;
            validation.validate_aud = false;
            validation.set_required_spec_claims(&["exp"]);
            validation
        };
        let hs256 = config.secret.as_ref().map(|secret| {
            (
                DecodingKey::from_secret(secret.expose_secret().as_bytes()),
                validation(Algorithm::HS256),
            )
        });
        let jwks = match &config.jwks {
            None => None,
            Some(jwks) => Some(JwksVerifier {
                validations: JWKS_ALGORITHMS
                    .iter()
                    .map(|alg| {
                        let mut v = validation(*alg);
                        v.set_issuer(&[&jwks.issuer]);
                        v.set_audience(&[&jwks.audience]);
                        v.validate_aud = true;
                        v.set_required_spec_claims(&["exp", "iss", "aud"]);
                        (*alg, v)
                    })
                    .collect(),
                jwks: Jwks::new(jwks.clone())?,
            }),
        };
        Ok(Self {
            hs256,
            verified: Verdicts::new(VERIFIED_CAPACITY),
            jwks,
            sessions: None,
        })
    }

    /// Accepts Better Auth session tokens, looked up in `sessions`.
    pub fn with_sessions(mut self, sessions: Sessions) -> Self {
        self.sessions = Some(Arc::new(sessions));
        self
    }

    /// The session store, when session tokens are on.
    pub fn sessions(&self) -> Option<&Sessions> {
        self.sessions.as_deref()
    }

    /// The session store, shared, for work that outlives a request (an event stream
    /// checking its session again).
    pub fn shared_sessions(&self) -> Option<Arc<Sessions>> {
        self.sessions.clone()
    }

    /// Verifies `token` (a JWT, or with sessions on any other value as a session token) and
    /// returns its user id.
    pub async fn verify(&self, token: &str) -> Result<String, Refusal> {
        if !is_jwt(token) {
            return match &self.sessions {
                Some(sessions) => sessions.verify(token).await,
                None => Err(TokenError::SessionsOff.into()),
            };
        }
        self.verify_jwt(token).await
    }

    async fn verify_jwt(&self, token: &str) -> Result<String, Refusal> {
        // Only HS256 tokens are remembered: without the shared secret there is none to find.
        let key = self.hs256.as_ref().map(|_| key_of(token));
        if let Some(sub) = key.as_ref().and_then(|key| self.verified.get(key)) {
            return Ok(sub.to_string());
        }
        let header = jsonwebtoken::decode_header(token).map_err(TokenError::from)?;
        if header.jku.is_some()
            || header.jwk.is_some()
            || header.x5u.is_some()
            || header.x5c.is_some()
            || header.crit.is_some()
        {
            return Err(TokenError::HeaderParameter.into());
        }
        if !access_token_type(header.typ.as_deref()) {
            return Err(TokenError::Type.into());
        }
        let (claims, remember) = match (header.alg, &self.hs256, &self.jwks) {
            (Algorithm::HS256, Some((secret, validation)), _) => {
                let claims = jsonwebtoken::decode::<Claims>(token, secret, validation)
                    .map_err(TokenError::from)?
                    .claims;
                let trust = claims.exp.map(|exp| trusted_for(exp, validation.leeway));
                (claims, trust)
            }
            (alg, _, Some(jwks)) if JWKS_ALGORITHMS.contains(&alg) => {
                (jwks.verify(token, &header).await?, None)
            }
            _ => return Err(TokenError::Algorithm.into()),
        };
        match claims.sub {
            Some(sub) if !sub.trim().is_empty() && !sub.contains('\0') => {
                if let (Some(key), Some(trust)) = (key, remember) {
                    self.verified.remember(key, Arc::from(sub.as_str()), trust);
                }
                Ok(sub)
            }
            _ => Err(TokenError::Subject.into()),
        }
    }

    /// The JWKS key source's state, when JWKS is on.
    pub fn jwks_status(&self) -> Option<JwksStatus> {
        self.jwks.as_ref().map(|j| j.jwks.status())
    }

    /// JWKS fetch attempts so far (0 when JWKS is off).
    pub fn jwks_fetch_count(&self) -> u64 {
        self.jwks.as_ref().map_or(0, |j| j.jwks.fetch_count())
    }
}

/// Mints an HS256 token for `sub`, valid for `ttl_secs`: the `token` command's output.
pub fn mint_hs256(
    secret: &str,
    sub: &str,
    ttl_secs: u64,
) -> Result<String, jsonwebtoken::errors::Error> {
    let now = jsonwebtoken::get_current_timestamp();
    let claims = MintedClaims {
        sub,
        iat: now,
        exp: now.saturating_add(ttl_secs),
    };
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
}

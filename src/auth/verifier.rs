//! Token verification. Keys and validation rules are prepared once at start; verifying a
//! token is a signature check plus a few comparisons.
//!
//! Invariant: the algorithm comes from this configuration, never from the token's header.

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::config::AuthConfig;

/// Why a token was refused. Logged at WARN; the client only learns "invalid token".
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not three base64url parts with a JSON header and claims.
    #[error("malformed token")]
    Malformed,
    /// The header's algorithm is not one this service accepts.
    #[error("algorithm not accepted")]
    Algorithm,
    /// The signature does not match.
    #[error("bad signature")]
    Signature,
    /// `exp` is in the past (beyond the leeway).
    #[error("token expired")]
    Expired,
    /// `nbf` is in the future (beyond the leeway).
    #[error("token not yet valid")]
    NotYetValid,
    /// A required claim is missing or has the wrong type.
    #[error("missing or invalid claim")]
    Claims,
    /// `sub` is missing or empty.
    #[error("missing subject")]
    Subject,
}

impl From<jsonwebtoken::errors::Error> for TokenError {
    fn from(error: jsonwebtoken::errors::Error) -> Self {
        match error.kind() {
            ErrorKind::InvalidSignature => Self::Signature,
            ErrorKind::InvalidAlgorithm
            | ErrorKind::InvalidAlgorithmName
            | ErrorKind::InvalidKeyFormat => Self::Algorithm,
            ErrorKind::ExpiredSignature => Self::Expired,
            ErrorKind::ImmatureSignature => Self::NotYetValid,
            ErrorKind::MissingRequiredClaim(_)
            | ErrorKind::InvalidAudience
            | ErrorKind::InvalidIssuer
            | ErrorKind::InvalidSubject
            | ErrorKind::Json(_) => Self::Claims,
            _ => Self::Malformed,
        }
    }
}

#[derive(Deserialize)]
struct Claims {
    sub: Option<String>,
}

/// The claims the `token` command writes.
#[derive(Serialize)]
struct MintedClaims<'a> {
    sub: &'a str,
    iat: u64,
    exp: u64,
}

/// Verifies bearer tokens. Built once at start and managed as Rocket state.
pub struct Verifier {
    hs256_key: DecodingKey,
    hs256: Validation,
}

impl Verifier {
    /// Prepares the keys and validation rules of `config`.
    pub fn new(config: &AuthConfig) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = config.leeway_secs;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["exp"]);
        Self {
            hs256_key: DecodingKey::from_secret(config.secret.expose().as_bytes()),
            hs256: validation,
        }
    }

    /// Verifies `token` and returns its subject (the user id).
    pub fn verify(&self, token: &str) -> Result<String, TokenError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.hs256_key, &self.hs256)?;
        match data.claims.sub {
            Some(sub) if !sub.trim().is_empty() => Ok(sub),
            _ => Err(TokenError::Subject),
        }
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

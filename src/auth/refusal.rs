//! Why a token was refused: the outcome every way of verifying shares (JWT, JWKS, session).

use jsonwebtoken::errors::ErrorKind;

/// Why a token was refused. Logged at WARN; the client only learns "invalid token".
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not three base64url parts with a JSON header and claims.
    #[error("malformed token")]
    Malformed,
    /// The header's algorithm is not one this service accepts (in this configuration).
    #[error("algorithm not accepted")]
    Algorithm,
    /// The header names other keys or critical extensions.
    #[error("header parameter not accepted")]
    HeaderParameter,
    /// The header's `typ` says this is not an access token.
    #[error("token type not accepted")]
    Type,
    /// No JWKS key has the token's `kid`, even after a refetch.
    #[error("unknown signing key")]
    UnknownKey,
    /// The signature does not match.
    #[error("bad signature")]
    Signature,
    /// `exp` is in the past (beyond the leeway).
    #[error("token expired")]
    Expired,
    /// `nbf` is in the future (beyond the leeway).
    #[error("token not yet valid")]
    NotYetValid,
    /// `iss` is not the configured issuer.
    #[error("wrong issuer")]
    Issuer,
    /// `aud` is not the configured audience.
    #[error("wrong audience")]
    Audience,
    /// A required claim is missing or has the wrong type.
    #[error("missing or invalid claim")]
    Claims,
    /// `sub` is missing, empty, or holds U+0000 (no database can store such a user id).
    #[error("missing subject")]
    Subject,
    /// A session token that names no session: never issued, or signed out.
    #[error("unknown or signed-out session")]
    UnknownSession,
    /// Not a JWT, and session tokens are off.
    #[error("not a JWT, and session tokens are not accepted (BETTER_AUTH_SESSIONS is off)")]
    SessionsOff,
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
            ErrorKind::InvalidIssuer => Self::Issuer,
            ErrorKind::InvalidAudience => Self::Audience,
            ErrorKind::MissingRequiredClaim(_) | ErrorKind::InvalidSubject | ErrorKind::Json(_) => {
                Self::Claims
            }
            _ => Self::Malformed,
        }
    }
}

/// The outcome of a refused verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The token is not acceptable: 401.
    #[error("{0}")]
    Invalid(#[from] TokenError),
    /// No key to check it with can be had now: 503, try again after `retry_after` seconds.
    #[error("signing keys unavailable")]
    KeysUnavailable {
        /// Seconds until the key source is tried again.
        retry_after: u64,
    },
    /// The session store cannot be asked now (database down, table missing, too many
    /// lookups waiting): 503.
    #[error("session store unavailable")]
    SessionsUnavailable,
}

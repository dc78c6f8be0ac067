//! Better Auth's cookies: names, the signed value (`TOKEN.SIGNATURE`, HMAC-SHA256 with the
//! secret in padded standard base64, percent-encoded as JavaScript's `encodeURIComponent`
//! does), their attributes and the way a `Cookie` header is read.
//!
//! The service knows it is reached over https when the request says so through
//! `X-Forwarded-Proto: https` (or `Forwarded: proto=https`), as TLS-terminating proxies and
//! hosting platforms set it: then, as Better Auth does with an https base URL, every
//! cookie is named `__Secure-…` and marked `Secure`. A client that fakes the header only
//! gets cookies its own browser will not send back over http.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use rocket::Request;
use sha2::Sha256;

/// The session cookie's `Max-Age` and a session's lifetime: 7 days (`session.expiresIn`).
pub const EXPIRES_IN_SECS: i64 = 604_800;
/// How old a session's last refresh must be before `get-session` renews it: 1 day.
pub const UPDATE_AGE_SECS: i64 = 86_400;
/// A session's lifetime when signed in with `rememberMe: false`: 1 day.
pub const SHORT_EXPIRES_IN_SECS: i64 = 86_400;
/// How long after its creation a session counts as fresh (`session.freshAge`): 1 day.
pub const FRESH_AGE_SECS: i64 = 86_400;

/// The signing key and the cookies' names.
#[derive(Clone)]
pub struct CookieJar {
    key: Hmac<Sha256>,
    prefix: String,
}

impl std::fmt::Debug for CookieJar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CookieJar")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// The three cookies Better Auth sets and expires together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Name {
    /// `session_token`: the signed session token.
    SessionToken,
    /// `session_data`: Better Auth's cookie cache (never written here, only expired).
    SessionData,
    /// `dont_remember`: the signed `true` of a `rememberMe: false` sign-in.
    DontRemember,
}

impl Name {
    fn suffix(self) -> &'static str {
        match self {
            Self::SessionToken => "session_token",
            Self::SessionData => "session_data",
            Self::DontRemember => "dont_remember",
        }
    }
}

/// Whether the request reached the service over https (see the module's notes).
pub fn is_https(request: &Request<'_>) -> bool {
    let headers = request.headers();
    if let Some(proto) = headers.get_one("X-Forwarded-Proto") {
        return proto
            .split(',')
            .next()
            .is_some_and(|p| p.trim().eq_ignore_ascii_case("https"));
    }
    headers.get_one("Forwarded").is_some_and(|forwarded| {
        forwarded
            .split(',')
            .next()
            .unwrap_or_default()
            .split(';')
            .filter_map(|pair| pair.trim().split_once('='))
            .any(|(k, v)| {
                k.eq_ignore_ascii_case("proto") && v.trim_matches('"').eq_ignore_ascii_case("https")
            })
    })
}

/// JavaScript's `encodeURIComponent`.
pub fn encode_component(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

impl CookieJar {
    /// Cookies signed with `secret`, named with `prefix` (Better Auth's `cookiePrefix`).
    pub fn new(secret: &str, prefix: &str) -> Result<Self, String> {
        let key = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
            .map_err(|_| "BETTER_AUTH_SECRET cannot key HMAC-SHA256".to_owned())?;
        Ok(Self {
            key,
            prefix: prefix.to_owned(),
        })
    }

    /// The cookie's name, `__Secure-` first over https.
    pub fn name(&self, name: Name, secure: bool) -> String {
        let base = format!("{}.{}", self.prefix, name.suffix());
        if secure {
            format!("__Secure-{base}")
        } else {
            base
        }
    }

    /// The padded standard base64 HMAC of `value`: 44 characters.
    pub fn signature(&self, value: &str) -> String {
        let mut mac = self.key.clone();
        mac.update(value.as_bytes());
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    }

    /// `value.SIGNATURE`, as `set-auth-token` carries it (not percent-encoded).
    pub fn sign(&self, value: &str) -> String {
        format!("{value}.{}", self.signature(value))
    }

    /// The value a signed form (`value.SIGNATURE`, already percent-decoded) vouches for,
    /// checked as Better Auth checks it: the signature is the text after the last dot,
    /// exactly 44 characters of standard base64 ending in `=`.
    pub fn verify<'a>(&self, signed: &'a str) -> Option<&'a str> {
        let dot = signed.rfind('.')?;
        if dot < 1 {
            return None;
        }
        let (value, signature) = (&signed[..dot], &signed[dot + 1..]);
        if signature.len() != 44 || !signature.ends_with('=') {
            return None;
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(signature)
            .ok()?;
        let mut mac = self.key.clone();
        mac.update(value.as_bytes());
        mac.verify_slice(&bytes).ok()?;
        Some(value)
    }

    /// A `Set-Cookie` value for `name` holding `value` signed; `max_age` `None` makes it
    /// a browser-session cookie.
    pub fn set(&self, name: Name, value: &str, max_age: Option<i64>, secure: bool) -> String {
        let encoded = encode_component(&self.sign(value));
        serialize(&self.name(name, secure), &encoded, max_age, secure)
    }

    /// A `Set-Cookie` value that expires `name`.
    pub fn expire(&self, name: Name, secure: bool) -> String {
        serialize(&self.name(name, secure), "", Some(0), secure)
    }

    /// The three `Set-Cookie` values that sign a browser out, in Better Auth's order.
    pub fn expire_all(&self, secure: bool) -> Vec<String> {
        [Name::SessionToken, Name::SessionData, Name::DontRemember]
            .into_iter()
            .map(|name| self.expire(name, secure))
            .collect()
    }

    /// The verified value of cookie `name` in `request`, if it has one.
    pub fn read(&self, request: &Request<'_>, name: Name) -> Option<String> {
        let wanted = self.name(name, is_https(request));
        let raw = cookie_value(request, &wanted)?;
        let decoded = if raw.contains('%') {
            percent_encoding::percent_decode_str(raw)
                .decode_utf8()
                .map(|text| text.into_owned())
                .unwrap_or_else(|_| raw.to_owned())
        } else {
            raw.to_owned()
        };
        self.verify(&decoded).map(str::to_owned)
    }
}

/// Better Auth's attribute order: `Max-Age`, `Path`, `HttpOnly`, `Secure`, `SameSite`.
fn serialize(name: &str, value: &str, max_age: Option<i64>, secure: bool) -> String {
    let mut cookie = format!("{name}={value}");
    if let Some(max_age) = max_age {
        cookie.push_str(&format!("; Max-Age={max_age}"));
    }
    cookie.push_str("; Path=/; HttpOnly");
    if secure {
        cookie.push_str("; Secure");
    }
    cookie.push_str("; SameSite=Lax");
    cookie
}

/// The raw value of cookie `name`: pairs split on `;`, key and value at the first `=`,
/// both trimmed, surrounding quotes dropped; the first occurrence wins.
pub fn cookie_value<'r>(request: &'r Request<'_>, name: &str) -> Option<&'r str> {
    request
        .headers()
        .get("Cookie")
        .flat_map(|header| header.split(';'))
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| key.trim() == name)
        .map(|(_, value)| {
            let value = value.trim();
            value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(value)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "test-secret-0123456789-abcdefghijklmnopqrstuvwxyz";

    #[test]
    fn cookies_match_better_auths_test_vectors() {
        let jar = CookieJar::new(SECRET, "better-auth").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            jar.set(Name::SessionToken, "i69GQHi2nrwhU59XMrtbHkhtOxedAZW0", Some(604_800), false),
            "better-auth.session_token=i69GQHi2nrwhU59XMrtbHkhtOxedAZW0.D5F1OwHb%2Ffzxi1XHTqNqHJqUqINY8NaLUULO%2BNw%2BmC8%3D; Max-Age=604800; Path=/; HttpOnly; SameSite=Lax"
        );
        assert_eq!(
            jar.set(Name::DontRemember, "true", None, false),
            "better-auth.dont_remember=true.0R39059RJMlqy6vRfLQM%2B9OejOdzDaSFqtRZ3UvvW0o%3D; Path=/; HttpOnly; SameSite=Lax"
        );
        assert_eq!(
            jar.expire(Name::SessionData, true),
            "__Secure-better-auth.session_data=; Max-Age=0; Path=/; HttpOnly; Secure; SameSite=Lax"
        );
    }

    #[test]
    fn only_a_well_formed_signature_verifies() {
        let jar = CookieJar::new(SECRET, "better-auth").unwrap_or_else(|e| panic!("{e}"));
        let signed = jar.sign("i69GQHi2nrwhU59XMrtbHkhtOxedAZW0");
        assert_eq!(
            jar.verify(&signed),
            Some("i69GQHi2nrwhU59XMrtbHkhtOxedAZW0")
        );
        let unpadded = signed.trim_end_matches('=');
        assert_eq!(jar.verify(unpadded), None);
        assert_eq!(jar.verify("i69GQHi2nrwhU59XMrtbHkhtOxedAZW0.AAAA"), None);
        assert_eq!(
            jar.verify(".D5F1OwHb/fzxi1XHTqNqHJqUqINY8NaLUULO+Nw+mC8="),
            None
        );
        let other = CookieJar::new("another-secret-0123456789-abcdefghijk", "better-auth")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(other.verify(&signed), None);
    }

    #[test]
    fn components_are_encoded_as_javascript_does() {
        assert_eq!(encode_component("a+b/c=d.e_f-g~h"), "a%2Bb%2Fc%3Dd.e_f-g~h");
    }
}

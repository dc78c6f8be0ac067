//! Better Auth's session cookie as a way in (`BETTER_AUTH_COOKIES=on`), and the rule that
//! keeps other sites from using it: a browser sends the cookie with any request to this
//! service, forged ones included, so a request it authenticates may change something only
//! when it comes from an allowed origin.

use rocket::http::Method;
use rocket::Request;

use super::Refusal;
use super::TokenError;

/// Where a request's credential came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// `Authorization: Bearer …` (or, on the event stream, `?access_token=`).
    Header,
    /// Better Auth's session cookie.
    Cookie,
}

/// A request's credential: the token and where it came from.
#[derive(Debug, Clone, Copy)]
pub struct Credential<'r> {
    /// The token as sent.
    pub token: &'r str,
    /// Where it came from.
    pub source: Source,
}

/// The cookie settings, managed as state when cookies are on.
pub struct Cookies {
    /// `__Secure-{prefix}.session_token` (Better Auth's name on https) and
    /// `{prefix}.session_token`, in the order they are looked for.
    names: [String; 2],
    /// `ALLOWED_ORIGINS`, exactly as browsers send them.
    allowed_origins: Vec<String>,
}

impl Cookies {
    /// The settings for cookies named with `prefix`, writes allowed from `allowed_origins`.
    pub fn new(prefix: &str, allowed_origins: Vec<String>) -> Self {
        Self {
            names: [
                format!("__Secure-{prefix}.session_token"),
                format!("{prefix}.session_token"),
            ],
            allowed_origins,
        }
    }

    /// The session cookie's value as sent (percent-encoded), if the request has one. Read
    /// from the `Cookie` headers themselves: the value is checked by its signature, so it
    /// is taken byte for byte, never decoded or rewritten on the way.
    pub fn value<'r>(&self, request: &'r Request<'_>) -> Option<&'r str> {
        let pairs = || {
            request
                .headers()
                .get("Cookie")
                .flat_map(|header| header.split(';'))
                .filter_map(|pair| pair.trim().split_once('='))
        };
        self.names.iter().find_map(|name| {
            pairs()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.trim_matches('"'))
                .filter(|value| !value.is_empty())
        })
    }

    /// Whether a request authenticated by the cookie may go on. Reads (GET, HEAD,
    /// OPTIONS) always may: another origin's page gets no CORS grant and cannot read the
    /// answer. Anything else must name an allowed `Origin`; without one (some browsers
    /// leave it off same-origin requests) `Sec-Fetch-Site` must say `same-origin`. A
    /// malformed or `null` origin is simply not an allowed one.
    pub fn allows(&self, request: &Request<'_>) -> bool {
        if matches!(
            request.method(),
            Method::Get | Method::Head | Method::Options
        ) {
            return true;
        }
        let headers = request.headers();
        match headers.get_one("Origin") {
            Some(origin) => self.allowed_origins.iter().any(|allowed| allowed == origin),
            None => headers
                .get_one("Sec-Fetch-Site")
                .is_some_and(|site| site.eq_ignore_ascii_case("same-origin")),
        }
    }
}

/// The request's credential. `Authorization`, when present, alone decides (a bad header
/// is a 401 whatever cookie comes with it); `access_token` (where a route accepts one)
/// stands in for it; else Better Auth's cookie, when cookies are on.
pub fn credential<'r>(
    request: &'r Request<'_>,
    access_token: Option<&'r str>,
) -> Result<Credential<'r>, crate::error::ApiError> {
    let header = request.headers().get_one("Authorization");
    if header.is_none() {
        if let Some(token) = access_token {
            return Ok(Credential {
                token,
                source: Source::Header,
            });
        }
        let cookie = request
            .rocket()
            .state::<Cookies>()
            .and_then(|cookies| cookies.value(request));
        if let Some(token) = cookie {
            return Ok(Credential {
                token,
                source: Source::Cookie,
            });
        }
    }
    super::bearer_token(header).map(|token| Credential {
        token,
        source: Source::Header,
    })
}

/// A cookie's value is Better Auth's signed form (`TOKEN.SIGNATURE`, percent-encoded):
/// anything else (an unsigned token, a JWT) is refused before any lookup.
pub fn check_signed_form(value: &str) -> Result<(), Refusal> {
    let dots = value.bytes().filter(|b| *b == b'.').count();
    if dots == 1 {
        Ok(())
    } else {
        Err(TokenError::Signature.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_signed_form_is_a_cookie_value() {
        assert!(check_signed_form("abc.c2lnbmF0dXJl").is_ok());
        assert!(check_signed_form("abc.c2ln%2BbmF0dXJl%3D").is_ok());
        assert!(check_signed_form("unsigned-token").is_err());
        assert!(check_signed_form("a.b.c").is_err());
    }
}

//! CORS with rocket_cors: exact origins from `ALLOWED_ORIGINS`, the contract's methods and
//! headers, and the response headers a frontend needs to read.
//!
//! rocket_cors' fairing answers a request from an unlisted origin with 403. That is right
//! for a preflight, but a plain request from elsewhere (a same-origin page, a server) should
//! just get no `Access-Control-Allow-Origin`; the wrapper below lets those pass untouched.
//!
//! Invariant: an `Origin` is compared as an exact string with the listed ones, before
//! rocket_cors parses it, so a malformed one (`http://host:3000.evil`) is just another
//! unlisted origin: its preflight gets the contract's 403, never rocket_cors' 500.

use std::collections::HashSet;

use rocket::fairing::{self, AdHoc, Fairing, Info, Kind};
use rocket::http::Method as HttpMethod;
use rocket::{Build, Data, Request, Response, Rocket};
use rocket_cors::{AllowedHeaders, AllowedOrigins, Cors, CorsOptions, Method};

use crate::error::{answer_early, ApiError};

/// Request headers a browser may send.
pub const ALLOWED_HEADERS: [&str; 6] = [
    "Authorization",
    "Content-Type",
    "If-Match",
    "If-None-Match",
    "Last-Event-ID",
    "Idempotency-Key",
];

/// Response headers a browser may read.
pub const EXPOSED_HEADERS: [&str; 11] = [
    "ETag",
    "Idempotent-Replayed",
    "X-Request-Id",
    "Location",
    "Link",
    "X-Total-Count",
    "RateLimit-Limit",
    "RateLimit-Remaining",
    "RateLimit-Reset",
    "Retry-After",
    // Better Auth's bearer plugin: the signed session token of a sign-in.
    "set-auth-token",
];

/// Builds the rocket_cors configuration for `origins`. They get
/// `Access-Control-Allow-Credentials: true` in every mode: frontends send `credentials:
/// "include"` with a bearer token too, and a browser refuses the answer without it.
/// Cookies still authenticate only with BETTER_AUTH_COOKIES=on, and cookie writes only
/// from listed origins (the forgery rule).
pub fn cors(origins: &[String]) -> Result<Cors, rocket_cors::Error> {
    let methods = [
        HttpMethod::Get,
        HttpMethod::Post,
        HttpMethod::Put,
        HttpMethod::Patch,
        HttpMethod::Delete,
        HttpMethod::Options,
        HttpMethod::Head,
    ];
    CorsOptions {
        allowed_origins: AllowedOrigins::some_exact(origins),
        allowed_methods: methods.into_iter().map(Method::from).collect(),
        allowed_headers: AllowedHeaders::some(&ALLOWED_HEADERS),
        allow_credentials: true,
        expose_headers: EXPOSED_HEADERS.iter().map(|h| (*h).to_owned()).collect(),
        max_age: Some(600),
        ..CorsOptions::default()
    }
    .to_cors()
}

/// rocket_cors, except that non-preflight requests from unlisted origins pass untouched.
struct CorsFairing {
    inner: Cors,
    origins: HashSet<String>,
}

/// Marks a request the inner fairing did not see.
struct Bypassed(bool);

impl CorsFairing {
    fn is_listed(&self, request: &Request<'_>) -> Option<bool> {
        let origin = request.headers().get_one("Origin")?;
        Some(self.origins.contains(origin))
    }
}

#[rocket::async_trait]
impl Fairing for CorsFairing {
    fn info(&self) -> Info {
        Info {
            name: "CORS",
            kind: Kind::Ignite | Kind::Request | Kind::Response,
        }
    }

    async fn on_ignite(&self, rocket: Rocket<Build>) -> fairing::Result {
        self.inner.on_ignite(rocket).await
    }

    async fn on_request(&self, request: &mut Request<'_>, data: &mut Data<'_>) {
        let preflight = request.method() == HttpMethod::Options;
        if self.is_listed(request) == Some(false) {
            request.local_cache(|| Bypassed(true));
            if preflight {
                answer_early(request, ApiError::OriginRefused);
            }
            return;
        }
        request.local_cache(|| Bypassed(false));
        self.inner.on_request(request, data).await;
        if preflight && request.uri().path().starts_with("/cors/") {
            // rocket_cors refused a listed origin's preflight (a method or header that is
            // not allowed): same answer, with the contract's body.
            answer_early(request, ApiError::OriginRefused);
        }
    }

    async fn on_response<'r>(&self, request: &'r Request<'_>, response: &mut Response<'r>) {
        if !request.local_cache(|| Bypassed(true)).0 {
            self.inner.on_response(request, response).await;
        }
        // Whether CORS headers appear depends on Origin, so caches must key on it.
        let vary = response
            .headers()
            .get("Vary")
            .collect::<Vec<_>>()
            .join(", ");
        if !vary
            .split(',')
            .any(|v| v.trim().eq_ignore_ascii_case("origin"))
        {
            let vary = if vary.is_empty() {
                "Origin".to_owned()
            } else {
                format!("{vary}, Origin")
            };
            response.set_raw_header("Vary", vary);
        }
    }
}

/// The CORS module: needs the validated origins from `config::stage()`.
pub fn stage() -> AdHoc {
    AdHoc::try_on_ignite("CORS", |rocket| async {
        let Some(origins) = crate::config::of(&rocket, "CORS").map(|c| c.allowed_origins.clone())
        else {
            return Err(rocket);
        };
        match cors(&origins) {
            Ok(inner) => Ok(rocket.attach(CorsFairing {
                inner,
                origins: origins.into_iter().collect(),
            })),
            Err(error) => {
                tracing::error!(%error, "invalid CORS configuration");
                Err(rocket)
            }
        }
    })
}

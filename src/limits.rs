//! The request head limits: a URI over [`MAX_URI_BYTES`] is a 414, more than
//! [`MAX_HEADERS`] headers or [`MAX_HEADER_BYTES`] of them a 431, answered in the
//! contract's shape before any route runs.

use rocket::data::Data;
use rocket::fairing::{AdHoc, Fairing, Info, Kind};
use rocket::request::Request;

use crate::error::{answer_early, ApiError};

/// Longest request URI (path and query) the service reads.
pub const MAX_URI_BYTES: usize = 8 * 1024;
/// Most request headers the service reads.
pub const MAX_HEADERS: usize = 100;
/// Most bytes of request header names and values the service reads.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;

/// Refuses request heads over the service's limits with the contract's body, before any
/// route runs. (hyper refuses heads over its own, larger limits with a bare 431.)
struct HeadLimits;

#[rocket::async_trait]
impl Fairing for HeadLimits {
    fn info(&self) -> Info {
        Info {
            name: "Request head limits",
            kind: Kind::Request,
        }
    }

    async fn on_request(&self, request: &mut Request<'_>, _: &mut Data<'_>) {
        let uri = request.uri();
        let uri_bytes = uri.path().len() + uri.query().map_or(0, |q| q.len() + 1);
        let headers = request.headers();
        let header_bytes: usize = headers
            .iter()
            .map(|h| h.name().as_str().len() + h.value().len())
            .sum();
        if uri_bytes > MAX_URI_BYTES {
            answer_early(
                request,
                ApiError::UriTooLong {
                    limit: MAX_URI_BYTES,
                },
            );
        } else if headers.len() > MAX_HEADERS || header_bytes > MAX_HEADER_BYTES {
            answer_early(
                request,
                ApiError::HeadersTooLarge {
                    max_headers: MAX_HEADERS,
                    max_bytes: MAX_HEADER_BYTES,
                },
            );
        }
    }
}

/// The head limits module.
pub fn stage() -> AdHoc {
    AdHoc::on_ignite("Request head limits", |rocket| async {
        rocket.attach(HeadLimits)
    })
}

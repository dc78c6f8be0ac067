//! How an error reaches the client: the responder, the stash that carries a guard's error to
//! the catcher, the catcher for everything Rocket answers itself, and early answers from
//! request fairings.

use std::io::Cursor;
use std::sync::Mutex;

use rocket::data::Data;
use rocket::fairing::AdHoc;
use rocket::http::uri::Origin;
use rocket::http::{ContentType, Header, Method, Status};
use rocket::request::Request;
use rocket::response::{self, Responder, Response};
use rocket::route::{Handler, Outcome as RouteOutcome, Route};

use super::{ApiError, ErrorBody};

/// What a client is told about an error: status, body and the headers that go with it.
#[derive(Debug, Clone)]
pub struct PublicError {
    pub(super) status: Status,
    pub(super) body: ErrorBody,
    pub(super) retry_after: Option<u64>,
}

impl PublicError {
    /// Stashes this error for the catcher: guards cannot hand errors to catchers directly.
    pub fn stash(self, request: &Request<'_>) {
        let slot = request.local_cache(|| StashedError(Mutex::new(None)));
        if let Ok(mut slot) = slot.0.lock() {
            *slot = Some(self);
        }
    }

    fn take_stashed(request: &Request<'_>) -> Option<Self> {
        let slot = request.local_cache(|| StashedError(Mutex::new(None)));
        slot.0.lock().ok().and_then(|mut slot| slot.take())
    }
}

struct StashedError(Mutex<Option<PublicError>>);

impl PublicError {
    /// The status code and the JSON body, as an answer to keep and send again.
    pub fn status_and_json(&self) -> (u16, String) {
        (
            self.status.code,
            serde_json::to_string(&self.body).unwrap_or_default(),
        )
    }
}

impl<'r> Responder<'r, 'static> for PublicError {
    fn respond_to(self, _: &'r Request<'_>) -> response::Result<'static> {
        let json = serde_json::to_vec(&self.body).map_err(|_| Status::InternalServerError)?;
        let mut response = Response::build();
        response
            .status(self.status)
            .header(ContentType::JSON)
            .header(Header::new("Cache-Control", "no-store"))
            .sized_body(json.len(), Cursor::new(json));
        if self.status == Status::Unauthorized {
            response.header(Header::new("WWW-Authenticate", "Bearer"));
        }
        if let Some(seconds) = self.retry_after {
            response.header(Header::new("Retry-After", seconds.to_string()));
        }
        response.ok()
    }
}

impl<'r> Responder<'r, 'static> for ApiError {
    fn respond_to(self, request: &'r Request<'_>) -> response::Result<'static> {
        self.log();
        self.public().respond_to(request)
    }
}

/// Fails a guard with `error`: logs it, stashes its public part for the catcher.
pub fn fail_guard<T, E, F>(
    request: &Request<'_>,
    error: ApiError,
) -> rocket::outcome::Outcome<T, (Status, E), F>
where
    E: From<ApiError>,
{
    error.log();
    // One pass over the error table: the public part carries the status.
    let public = error.public();
    let status = public.status;
    public.stash(request);
    rocket::outcome::Outcome::Error((status, E::from(error)))
}

#[catch(default)]
fn any_status(status: Status, request: &Request<'_>) -> PublicError {
    match PublicError::take_stashed(request) {
        Some(error) => error,
        None => {
            if status.code >= 500 {
                tracing::error!(status = status.code, "request failed without an API error");
            }
            ApiError::for_status(status)
        }
    }
}

/// Where [`answer_early`] sends a request.
const EARLY_ROUTE: &str = "/_refused";

/// Answers `request` with `error` from a request fairing, which cannot answer by itself:
/// the error is stashed for the catcher, and the request goes to a route that fails with
/// its status, so no guard or handler of the original route runs.
pub fn answer_early(request: &mut Request<'_>, error: ApiError) {
    error.log();
    error.public().stash(request);
    request.set_method(Method::Get);
    request.set_uri(Origin::path_only(EARLY_ROUTE));
}

/// The route behind [`answer_early`]: fails with the stashed error's status, or 404 when
/// called directly.
#[derive(Clone)]
struct EarlyAnswer;

#[rocket::async_trait]
impl Handler for EarlyAnswer {
    async fn handle<'r>(&self, request: &'r Request<'_>, _: Data<'r>) -> RouteOutcome<'r> {
        let slot = request.local_cache(|| StashedError(Mutex::new(None)));
        let status = slot
            .0
            .lock()
            .ok()
            .and_then(|slot| slot.as_ref().map(|error| error.status));
        RouteOutcome::Error(status.unwrap_or(Status::NotFound))
    }
}

/// Registers the catcher that renders every status Rocket answers itself as the JSON
/// shape, and the route that answers refusals made early.
pub fn stage() -> AdHoc {
    AdHoc::on_ignite("Error catchers", |rocket| async {
        rocket
            .mount(
                "/",
                crate::telemetry::traced(vec![Route::new(Method::Get, EARLY_ROUTE, EarlyAnswer)]),
            )
            .register("/", catchers![any_status])
    })
}

//! Logging: the `tracing` subscriber (text in debug, JSON in release), request ids, and the
//! access log: one line per request with method, route template, status, latency, user and
//! request id.
//!
//! Every route handler runs inside a `request` span carrying the request id (see
//! [`traced`]), so every line logged while a request is handled names it.
//!
//! Invariant: the access log never records the query string or headers, where tokens live.

use std::time::{Duration, Instant};

use rocket::fairing::{AdHoc, Fairing, Info, Kind};
use rocket::http::{Header, Method};
use rocket::route::{Handler, Outcome, Route};
use rocket::{Build, Data, Request, Response, Rocket};
use tracing::Instrument as _;
use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

/// Installs the global subscriber. Call once, before Rocket starts; later calls are no-ops.
pub fn init(config: &LogConfig) {
    init_with_writer(config, std::io::stdout);
}

/// [`init`] writing to `writer`: the list benchmark pays for formatting every line as
/// production does, without filling its own output.
pub fn init_with_writer<W>(config: &LogConfig, writer: W)
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    // Driver chatter stays at warn unless asked for by name.
    let directives = format!("{},hyper=warn,sqlx=warn", config.level);
    let filter = EnvFilter::try_new(&directives).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    let result = match config.format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            // The outermost span is the request's: its id rides on every line.
            .with_span_list(true)
            .try_init(),
        LogFormat::Text => builder.with_ansi(false).try_init(),
    };
    // Already installed (tests, or a second call): keep the first subscriber.
    drop(result);
}

struct StartedAt(Option<Instant>);

/// The method as the client sent it: a request answered early is rerouted as a `GET`.
struct SentMethod(Option<Method>);

/// The matched route's template (`/api/<user_id>/tasks`), never the path as sent:
/// `unmatched` when no route matched. Borrowed from the route, so nothing is allocated.
pub fn route_template<'r>(request: &'r Request<'_>) -> &'r str {
    request
        .route()
        .map_or("unmatched", |route| route.uri.origin.path().as_str())
}

/// Time since the request arrived (measured from the access log's request hook).
pub fn elapsed(request: &Request<'_>) -> Option<Duration> {
    request
        .local_cache(|| StartedAt(None))
        .0
        .map(|started| started.elapsed())
}

/// The id of one request: the client's `X-Request-Id` when it is sane, else a new one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

impl RequestId {
    /// The id of `request` (made on first use if the fairing did not run).
    pub fn of<'r>(request: &'r Request<'_>) -> &'r str {
        &request.local_cache(|| RequestId(new_request_id())).0
    }
}

/// A random (v4) UUID. uuid's `fast-rng` draws it from a generator the OS seeds; without
/// it, every id is a `getrandom` system call, one per request.
fn new_request_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Whether a client's request id may be echoed and logged: short, and only characters
/// that cannot break a log line or a header.
fn sane_request_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// The verified user of a request, for the access log (set by the auth guard).
#[derive(Debug, Clone, Default)]
pub struct LoggedUser(pub Option<String>);

/// What [`traced`] appends to a route's name, so the start-up check can tell.
const TRACED_MARK: &str = " (traced)";

/// Wraps every handler of `routes` in a `request` span carrying the request id, method and
/// route template, so everything the handler and its guards log names the request. Every
/// module mounts its routes through this; start-up fails when one is mounted without it.
pub fn traced(routes: impl Into<Vec<Route>>) -> Vec<Route> {
    routes
        .into()
        .into_iter()
        .map(|mut route| {
            route.handler = Box::new(Traced(route.handler));
            let name = route.name.as_deref().unwrap_or("route");
            route.name = Some(format!("{name}{TRACED_MARK}").into());
            route
        })
        .collect()
}

/// Whether `route` runs inside a request span.
pub fn is_traced(route: &Route) -> bool {
    route
        .name
        .as_deref()
        .is_some_and(|name| name.ends_with(TRACED_MARK))
}

/// Refuses to start when a mounted route was not wrapped by [`traced`]: its requests
/// would log without their request id. rocket_cors' internal route is its own.
async fn check_traced(rocket: Rocket<Build>) -> Result<Rocket<Build>, Rocket<Build>> {
    let untraced: Vec<String> = rocket
        .routes()
        .filter(|route| !is_traced(route) && !route.uri.base().starts_with("/cors"))
        .map(|route| format!("{} {}", route.method, route.uri))
        .collect();
    if untraced.is_empty() {
        Ok(rocket)
    } else {
        tracing::error!(
            ?untraced,
            "routes mounted without telemetry::traced: their log lines would have no request id"
        );
        Err(rocket)
    }
}

#[derive(Clone)]
struct Traced(Box<dyn Handler>);

#[rocket::async_trait]
impl Handler for Traced {
    async fn handle<'r>(&self, request: &'r Request<'_>, data: Data<'r>) -> Outcome<'r> {
        let span = tracing::info_span!(
            "request",
            request_id = RequestId::of(request),
            method = request.method().as_str(),
            route = route_template(request),
        );
        self.0.handle(request, data).instrument(span).await
    }
}

/// Stamps each request with its arrival time and id, before any other fairing runs.
struct RequestStart;

/// Writes the access line. Attached after every other stage, so its response hook runs
/// last and logs what the client really gets (a preflight rocket_cors turned into 204).
struct AccessLog;

#[rocket::async_trait]
impl Fairing for RequestStart {
    fn info(&self) -> Info {
        Info {
            name: "Request start",
            kind: Kind::Request,
        }
    }

    async fn on_request(&self, request: &mut Request<'_>, _: &mut Data<'_>) {
        request.local_cache(|| StartedAt(Some(Instant::now())));
        let method = request.method();
        request.local_cache(|| SentMethod(Some(method)));
        let id = request
            .headers()
            .get_one("X-Request-Id")
            .map(str::trim)
            .filter(|id| sane_request_id(id))
            .map_or_else(new_request_id, str::to_owned);
        request.local_cache(|| RequestId(id));
    }
}

#[rocket::async_trait]
impl Fairing for AccessLog {
    fn info(&self) -> Info {
        Info {
            name: "Access log",
            kind: Kind::Response,
        }
    }

    async fn on_response<'r>(&self, request: &'r Request<'_>, response: &mut Response<'r>) {
        let latency_ms = elapsed(request).map_or(0.0, |d| d.as_secs_f64() * 1000.0);
        let route = route_template(request);
        let status = response.status().code;
        let method = request
            .local_cache(|| SentMethod(None))
            .0
            .unwrap_or_else(|| request.method())
            .as_str();
        let request_id = RequestId::of(request);
        let user = request.local_cache(LoggedUser::default).0.as_deref();
        response.set_header(Header::new("X-Request-Id", request_id.to_owned()));
        if status >= 500 {
            tracing::error!(target: "todo_api::access", method, route, status, latency_ms, user, request_id, "request");
        } else {
            tracing::info!(target: "todo_api::access", method, route, status, latency_ms, user, request_id, "request");
        }
    }
}

/// The telemetry module: request ids, the access log fairing and a start-up line.
pub fn stage() -> AdHoc {
    AdHoc::on_ignite("Telemetry", |rocket| async {
        rocket
            .attach(RequestStart)
            // An ignite hook attached while igniting runs after every stage attached
            // before ignition, so the access log's response hook comes after theirs.
            .attach(AdHoc::on_ignite("Access log", |rocket| async {
                rocket
                    .attach(AccessLog)
                    .attach(AdHoc::try_on_ignite("Request spans", check_traced))
            }))
            .attach(AdHoc::on_liftoff("Start-up log", |rocket| {
                Box::pin(async move {
                    let config = rocket.config();
                    tracing::info!(
                        address = %config.address,
                        port = config.port,
                        profile = %rocket.figment().profile(),
                        settings_from_env = ?crate::config::AppConfig::settings_from_env(),
                        "todo-api {} listening",
                        env!("CARGO_PKG_VERSION"),
                    );
                })
            }))
            .attach(AdHoc::on_shutdown("Shutdown log", |rocket| {
                Box::pin(async move {
                    tracing::info!(
                        grace_secs = rocket.config().shutdown.grace,
                        "shutting down: no new connections; requests in flight may finish"
                    );
                })
            }))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sane_request_ids_are_kept() {
        assert!(sane_request_id("3f2a9c1e-77b1-4c1e-9d7e-0b1f6a2c9e10"));
        assert!(sane_request_id("req_01HZX.4:a"));
        for bad in [
            "",
            "has space",
            "new\nline",
            "quote\"",
            "é",
            &"a".repeat(129),
        ] {
            assert!(!sane_request_id(bad), "{bad:?}");
        }
    }
}

use std::io;
use std::sync::Arc;
use std::time::Duration;
use std::pin::{pin, Pin};

use yansi::Paint;
use bytes::Bytes;
// todo-api patch begin: response bodies over a futures channel; hyper's own HTTP/1 server
// with a timer (see `serve`).
use tokio::sync::oneshot;
use tokio::time::sleep;
use futures::stream::StreamExt;
use futures::future::{FutureExt, Future, BoxFuture};
use http_body_util::{Either, Empty, StreamBody};
// A sized body is handed to hyper whole (see `_send_response`).
use http_body_util::Full;
use hyper_util::rt::TokioIo;

use hyper_util::rt::TokioTimer;
#[cfg(feature = "http2")]
use hyper_util::rt::TokioExecutor;
#[cfg(feature = "http2")]
use hyper_util::server::conn::auto::Builder;
// todo-api patch end

use crate::{route, Rocket, Orbit, Request, Response, Data, Config};
use crate::form::Form;
use crate::outcome::Outcome;
use crate::error::{Error, ErrorKind};
use crate::ext::{AsyncReadExt, CancellableListener};
use crate::request::ConnectionMeta;
use crate::data::IoHandler;

use crate::http::{hyper, uncased, Method, Status, Header};
use crate::http::hyper::body::Frame;
use crate::http::private::{TcpListener, Listener, Connection, Incoming};

// A token returned to force the execution of one method before another.
pub(crate) struct RequestToken;

type HttpBody = Either<
    // todo-api patch begin: beside no body, a sized body whole, which hyper writes with the
    // head in one system call; and a futures channel, not tokio's, whose first block of 32
    // slots (about 3 KiB) would be held for as long as a response streams.
    Either<Empty<Bytes>, Full<Bytes>>,
    StreamBody<BodyFrames>,
    // todo-api patch end
>;

// todo-api patch begin: the largest sized body sent whole rather than streamed.
const WHOLE_BODY_MAX: usize = 1 << 20;

// A response body's frames, and a signal held with them: dropped
// when the connection drops the body, so the writer of a long-lived body (an event
// stream) learns its client left at once, not at its next write.
#[derive(Debug)]
struct BodyFrames {
    frames: futures::channel::mpsc::Receiver<io::Result<Frame<Bytes>>>,
    _held: Option<futures::channel::oneshot::Receiver<()>>,
}

impl futures::Stream for BodyFrames {
    type Item = io::Result<Frame<Bytes>>;

    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.frames.poll_next_unpin(cx)
    }
}
// todo-api patch end

async fn handle<Fut, T, F>(name: Option<&str>, run: F) -> Option<T>
    where F: FnOnce() -> Fut, Fut: Future<Output = T>,
{
    use std::panic::AssertUnwindSafe;

    macro_rules! panic_info {
        ($name:expr, $e:expr) => {{
            match $name {
                Some(name) => error_!("Handler {} panicked.", name.primary()),
                None => error_!("A handler panicked.")
            };

            info_!("This is an application bug.");
            info_!("A panic in Rust must be treated as an exceptional event.");
            info_!("Panicking is not a suitable error handling mechanism.");
            info_!("Unwinding, the result of a panic, is an expensive operation.");
            info_!("Panics will degrade application performance.");
            info_!("Instead of panicking, return `Option` and/or `Result`.");
            info_!("Values of either type can be returned directly from handlers.");
            warn_!("A panic is treated as an internal server error.");
            $e
        }}
    }

    let run = AssertUnwindSafe(run);
    let fut = std::panic::catch_unwind(move || run())
        .map_err(|e| panic_info!(name, e))
        .ok()?;

    AssertUnwindSafe(fut)
        .catch_unwind()
        .await
        .map_err(|e| panic_info!(name, e))
        .ok()
}

// This function tries to hide all of the Hyper-ness from Rocket. It essentially
// converts Hyper types into Rocket types, then calls the `dispatch` function,
// which knows nothing about Hyper. Because responding depends on the
// `HyperResponse` type, this function does the actual response processing.
// todo-api patch begin: the request head copied out of the connection's read buffer.
/// hyper hands over header values and the URI as slices of the connection's 8 KiB read
/// buffer, so the request, which lives as long as its response streams, would keep that
/// buffer alive beside the new one hyper takes for the next read. The head is copied (a few
/// hundred bytes) and the buffer is freed or reused at once.
fn detach_head(mut parts: hyper::request::Parts) -> hyper::request::Parts {
    for value in parts.headers.values_mut() {
        let sensitive = value.is_sensitive();
        if let Ok(mut owned) = hyper::HeaderValue::from_bytes(value.as_bytes()) {
            owned.set_sensitive(sensitive);
            *value = owned;
        }
    }
    if let Ok(uri) = hyper::Uri::try_from(parts.uri.to_string()) {
        parts.uri = uri;
    }
    // Nothing in Rocket reads hyper's extensions (the upgrade was taken out before); the
    // one left, the header case map, also points into the read buffer.
    parts.extensions = Default::default();
    parts
}
// todo-api patch end

async fn hyper_service_fn(
    rocket: Arc<Rocket<Orbit>>,
    conn: ConnectionMeta,
    mut hyp_req: hyper::Request<hyper::Body>,
) -> Result<hyper::Response<HttpBody>, io::Error> {
    // This future must return a hyper::Response, but the response body might
    // borrow from the request. Instead, write the body in another future that
    // sends the response metadata (and a body channel) prior.
    let (tx, rx) = oneshot::channel();
    let version = hyp_req.version();

    #[cfg(not(broken_fmt))]
    debug!("received request: {:#?}", hyp_req);

    // todo-api patch begin: the request runs in the connection's task (see below).
    let request = Box::pin(async move {
    // todo-api patch end
        // We move the request next, so get the upgrade future now.
        let pending_upgrade = hyper::upgrade::on(&mut hyp_req);

        // Convert a Hyper request into a Rocket request.
        let (h_parts, mut h_body) = hyp_req.into_parts();
        // todo-api patch begin: the request head owns its bytes (see `detach_head`).
        let h_parts = detach_head(h_parts);
        // todo-api patch end
        match Request::from_hyp(&rocket, &h_parts, Some(conn)) {
            Ok(mut req) => {
                // Convert into Rocket `Data`, dispatch request, write response.
                let mut data = Data::from(&mut h_body);
                // todo-api patch begin: boxed, so their large states are freed once they
                // are done instead of sizing this task for as long as a response streams.
                let token = Box::pin(rocket.preprocess_request(&mut req, &mut data)).await;
                let mut response = Box::pin(rocket.dispatch(token, &req, data)).await;
                // todo-api patch end
                let upgrade = response.take_upgrade(req.headers().get("upgrade"));
                if let Ok(Some((proto, handler))) = upgrade {
                    rocket.handle_upgrade(response, proto, handler, pending_upgrade, tx, version)
                        .await;
                } else {
                    if upgrade.is_err() {
                        warn_!("Request wants upgrade but no I/O handler matched.");
                        info_!("Request is not being upgraded.");
                    }

                    rocket.send_response(response, tx, version).await;
                }
            },
            Err(e) => {
                warn!("Bad incoming HTTP request.");
                e.errors.iter().for_each(|e| warn_!("Error: {}.", e));
                warn_!("Dispatching salvaged request to catcher: {}.", e.request);

                let response = rocket.handle_error(Status::BadRequest, &e.request).await;
                rocket.send_response(response, tx, version).await;
            }
        }
    });

    // todo-api patch begin: the request runs in the connection's task.
    // Upstream spawns a task per request and awaits the response over the channel: a task
    // cell, a wake-up of another worker and a hand-over back for every request. The request's
    // future is polled here instead until the response is handed over; only one that goes on
    // after that (a body streamed from the request's future) is then spawned to finish on
    // its own. A panic that escapes is caught as the spawned task's was: the connection gets
    // an error in place of the response.
    let request = std::panic::AssertUnwindSafe(request).catch_unwind();
    match futures::future::select(request, rx).await {
        futures::future::Either::Left((finished, rx)) => {
            if finished.is_err() {
                error_!("A request's processing panicked.");
            }
            rx.await.map_err(|e| io::Error::new(io::ErrorKind::BrokenPipe, e))
        }
        futures::future::Either::Right((response, request)) => {
            tokio::spawn(async move {
                if request.await.is_err() {
                    error_!("A request's processing panicked.");
                }
            });
            response.map_err(|e| io::Error::new(io::ErrorKind::BrokenPipe, e))
        }
    }
    // todo-api patch end
}

impl Rocket<Orbit> {
    /// Wrapper around `_send_response` to log a success or error.
    #[inline]
    async fn send_response(
        &self,
        response: Response<'_>,
        tx: oneshot::Sender<hyper::Response<HttpBody>>,
        version: hyper::Version,
    ) {
        let remote_hungup = |e: &io::Error| match e.kind() {
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted => true,
            _ => false,
        };

        match self._send_response(response, tx, version).await {
            Ok(()) => info_!("{}", "Response succeeded.".green()),
            Err(e) if remote_hungup(&e) => warn_!("Remote left: {}.", e),
            Err(e) => warn_!("Failed to write response: {}.", e),
        }
    }

    /// Attempts to create a hyper response from `response` and send it to `tx`.
    #[inline]
    async fn _send_response(
        &self,
        mut response: Response<'_>,
        tx: oneshot::Sender<hyper::Response<HttpBody>>,
        version: hyper::Version,
    ) -> io::Result<()> {
        if response.headers().contains("Transfer-Encoding") {
            response.remove_header("Content-Length");
        } else if let Some(size) = response.body_mut().size().await {
            response.set_raw_header("Content-Length", size.to_string());
        }

        let mut hyp_res = hyper::Response::builder();

        hyp_res = hyp_res.status(response.status().code);
        for header in response.headers().iter() {
            let name = header.name.as_str();
            let value = header.value.as_bytes();
            hyp_res = hyp_res.header(name, value);
        }

        let send_headers = |body| {
            let hyp_response = hyp_res.body(body)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;

            #[cfg(not(broken_fmt))]
            debug!("sending response: {:#?}", hyp_response);

            tx.send(hyp_response).map_err(|_| {
                let msg = "client disconnect before response started";
                io::Error::new(io::ErrorKind::BrokenPipe, msg)
            })
        };

        // Send empty HTTP/2 responses with just the headers. An empty DATA
        // frame makes h2 reject a 304 with a nonzero Content-Length.
        if version == hyper::Version::HTTP_2 && response.body().is_empty() {
            // todo-api patch begin: (the nested `Either`, see `HttpBody`)
            return send_headers(Either::Left(Either::Left(Empty::new())));
            // todo-api patch end
        }

        // todo-api patch begin: a sized body that is not empty (JSON answers: already in
        // memory) goes to hyper whole with the head, so the connection writes both in one
        // `writev` and no frame crosses a channel; larger ones stream as before.
        if let Some(size) = response.body().preset_size() {
            if size > 0 && size <= WHOLE_BODY_MAX {
                // Room for the whole body and the read that finds its end: no regrowth.
                let mut bytes = Vec::with_capacity(size + 32);
                tokio::io::AsyncReadExt::read_to_end(response.body_mut(), &mut bytes).await?;
                return send_headers(Either::Left(Either::Right(Full::new(Bytes::from(bytes)))));
            }
        }
        // todo-api patch end

        // For HTTP/1, use a channel even without a body. Hyper otherwise
        // removes Content-Length from 304 responses.
        // todo-api patch begin: a futures channel (see `HttpBody`), and a signal that
        // the connection dropped the body: a long-lived body (an event stream) would
        // otherwise notice its client left only at its next write.
        // Only a body of unknown size (a stream) carries the signal: a sized one is
        // written at once.
        let (mut sender, receiver) = futures::channel::mpsc::channel(0);
        let (mut body_alive, body_held) = match response.body().preset_size() {
            Some(_) => (None, None),
            None => {
                let (alive, held) = futures::channel::oneshot::channel::<()>();
                (Some(alive), Some(held))
            }
        };
        let hyp_body = StreamBody::new(BodyFrames { frames: receiver, _held: body_held });
        // todo-api patch end
        send_headers(Either::Right(hyp_body))?;

        let body = response.body_mut();
        let max_chunk_size = body.max_chunk_size();
        let mut stream = body.into_bytes_stream(max_chunk_size);
        // todo-api patch begin: stop reading the body once the connection dropped it.
        loop {
            let next = match body_alive.as_mut() {
                Some(alive) => tokio::select! {
                    next = stream.next() => next,
                    _ = alive.cancellation() => {
                        let msg = "client disconnected during the response body";
                        return Err(io::Error::new(io::ErrorKind::BrokenPipe, msg));
                    }
                },
                None => stream.next().await,
            };
            let Some(next) = next else { break };
            futures::SinkExt::send(&mut sender, Ok(Frame::data(next?))).await
                .map_err(|e| io::Error::new(io::ErrorKind::BrokenPipe, e))?;
        }
        // todo-api patch end

        Ok(())
    }

    async fn handle_upgrade<'r>(
        &self,
        mut response: Response<'r>,
        proto: uncased::Uncased<'r>,
        io_handler: Pin<Box<dyn IoHandler + 'r>>,
        pending_upgrade: hyper::upgrade::OnUpgrade,
        tx: oneshot::Sender<hyper::Response<HttpBody>>,
        version: hyper::Version,
    ) {
        info_!("Upgrading connection to {}.", Paint::white(&proto).bold());
        response.set_status(Status::SwitchingProtocols);
        response.set_raw_header("Connection", "Upgrade");
        response.set_raw_header("Upgrade", proto.clone().into_cow());
        self.send_response(response, tx, version).await;

        match pending_upgrade.await {
            Ok(io_stream) => {
                info_!("Upgrade successful.");
                if let Err(e) = io_handler.io(io_stream.into()).await {
                    if e.kind() == io::ErrorKind::BrokenPipe {
                        warn!("Upgraded {} I/O handler was closed.", proto);
                    } else {
                        error!("Upgraded {} I/O handler failed: {}", proto, e);
                    }
                }
            },
            Err(e) => {
                warn!("Response indicated upgrade, but upgrade failed.");
                warn_!("Upgrade error: {}", e);
            }
        }
    }

    /// Preprocess the request for Rocket things. Currently, this means:
    ///
    ///   * Rewriting the method in the request if _method form field exists.
    ///   * Run the request fairings.
    ///
    /// Keep this in-sync with derive_form when preprocessing form fields.
    pub(crate) async fn preprocess_request(
        &self,
        req: &mut Request<'_>,
        data: &mut Data<'_>
    ) -> RequestToken {
        // Check if this is a form and if the form contains the special _method
        // field which we use to reinterpret the request's method.
        let (min_len, max_len) = ("_method=get".len(), "_method=delete".len());
        let peek_buffer = data.peek(max_len).await;
        let is_form = req.content_type().map_or(false, |ct| ct.is_form());

        if is_form && req.method() == Method::Post && peek_buffer.len() >= min_len {
            let method = std::str::from_utf8(peek_buffer).ok()
                .and_then(|raw_form| Form::values(raw_form).next())
                .filter(|field| field.name == "_method")
                .and_then(|field| field.value.parse().ok());

            if let Some(method) = method {
                req._set_method(method);
            }
        }

        // Run request fairings.
        self.fairings.handle_request(req, data).await;

        RequestToken
    }

    #[inline]
    pub(crate) async fn dispatch<'s, 'r: 's>(
        &'s self,
        _token: RequestToken,
        request: &'r Request<'s>,
        data: Data<'r>
    ) -> Response<'r> {
        info!("{}:", request);

        // Remember if the request is `HEAD` for later body stripping.
        let was_head_request = request.method() == Method::Head;

        // Route the request and run the user's handlers.
        let mut response = self.route_and_process(request, data).await;

        // Add a default 'Server' header if it isn't already there.
        // TODO: If removing Hyper, write out `Date` header too.
        if let Some(ident) = request.rocket().config.ident.as_str() {
            if !response.headers().contains("Server") {
                response.set_header(Header::new("Server", ident));
            }
        }

        // Run the response fairings.
        self.fairings.handle_response(request, &mut response).await;

        if response.status() == Status::NoContent {
            // A 204 response must not have a body or either framing header.
            response.remove_header("Content-Length");
            response.remove_header("Transfer-Encoding");
            *response.body_mut() = crate::response::Body::unsized_none();
        } else if was_head_request || response.status() == Status::NotModified {
            // HEAD and 304 responses have no body, but can have a length.
            response.strip_body();
        }

        response
    }

    async fn route_and_process<'s, 'r: 's>(
        &'s self,
        request: &'r Request<'s>,
        data: Data<'r>
    ) -> Response<'r> {
        let mut response = match self.route(request, data).await {
            Outcome::Success(response) => response,
            Outcome::Forward((data, _)) if request.method() == Method::Head => {
                info_!("Autohandling {} request.", "HEAD".primary().bold());

                // Dispatch the request again with Method `GET`.
                request._set_method(Method::Get);
                match self.route(request, data).await {
                    Outcome::Success(response) => response,
                    Outcome::Error(status) => self.handle_error(status, request).await,
                    Outcome::Forward((_, status)) => self.handle_error(status, request).await,
                }
            }
            Outcome::Forward((_, status)) => self.handle_error(status, request).await,
            Outcome::Error(status) => self.handle_error(status, request).await,
        };

        // Set the cookies. Note that error responses will only include cookies
        // set by the error handler. See `handle_error` for more.
        let delta_jar = request.cookies().take_delta_jar();
        for cookie in delta_jar.delta() {
            response.adjoin_header(cookie);
        }

        response
    }

    /// Tries to find a `Responder` for a given `request`. It does this by
    /// routing the request and calling the handler for each matching route
    /// until one of the handlers returns success or error, or there are no
    /// additional routes to try (forward). The corresponding outcome for each
    /// condition is returned.
    #[inline]
    async fn route<'s, 'r: 's>(
        &'s self,
        request: &'r Request<'s>,
        mut data: Data<'r>,
    ) -> route::Outcome<'r> {
        // Go through all matching routes until we fail or succeed or run out of
        // routes to try, in which case we forward with the last status.
        let mut status = Status::NotFound;
        for route in self.router.route(request) {
            // Retrieve and set the requests parameters.
            info_!("Matched: {}", route);
            request.set_route(route);

            let name = route.name.as_deref();
            let outcome = handle(name, || route.handler.handle(request, data)).await
                .unwrap_or(Outcome::Error(Status::InternalServerError));

            // Check if the request processing completed (Some) or if the
            // request needs to be forwarded. If it does, continue the loop
            // (None) to try again.
            info_!("{}", outcome.log_display());
            match outcome {
                o@Outcome::Success(_) | o@Outcome::Error(_) => return o,
                Outcome::Forward(forwarded) => (data, status) = forwarded,
            }
        }

        error_!("No matching routes for {}.", request);
        Outcome::Forward((data, status))
    }

    /// Invokes the handler with `req` for catcher with status `status`.
    ///
    /// In order of preference, invoked handler is:
    ///   * the user's registered handler for `status`
    ///   * the user's registered `default` handler
    ///   * Rocket's default handler for `status`
    ///
    /// Return `Ok(result)` if the handler succeeded. Returns `Ok(Some(Status))`
    /// if the handler ran to completion but failed. Returns `Ok(None)` if the
    /// handler panicked while executing.
    async fn invoke_catcher<'s, 'r: 's>(
        &'s self,
        status: Status,
        req: &'r Request<'s>
    ) -> Result<Response<'r>, Option<Status>> {
        // For now, we reset the delta state to prevent any modifications
        // from earlier, unsuccessful paths from being reflected in error
        // response. We may wish to relax this in the future.
        req.cookies().reset_delta();

        if let Some(catcher) = self.router.catch(status, req) {
            warn_!("Responding with registered {} catcher.", catcher);
            let name = catcher.name.as_deref();
            handle(name, || catcher.handler.handle(status, req)).await
                .map(|result| result.map_err(Some))
                .unwrap_or_else(|| Err(None))
        } else {
            let code = status.code.blue().bold();
            warn_!("No {} catcher registered. Using Rocket default.", code);
            Ok(crate::catcher::default_handler(status, req))
        }
    }

    // Invokes the catcher for `status`. Returns the response on success.
    //
    // On catcher error, the 500 error catcher is attempted. If _that_ errors,
    // the (infallible) default 500 error cather is used.
    pub(crate) async fn handle_error<'s, 'r: 's>(
        &'s self,
        mut status: Status,
        req: &'r Request<'s>
    ) -> Response<'r> {
        // Dispatch to the `status` catcher.
        if let Ok(r) = self.invoke_catcher(status, req).await {
            return r;
        }

        // If it fails and it's not a 500, try the 500 catcher.
        if status != Status::InternalServerError {
            error_!("Catcher failed. Attempting 500 error catcher.");
            status = Status::InternalServerError;
            if let Ok(r) = self.invoke_catcher(status, req).await {
                return r;
            }
        }

        // If it failed again or if it was already a 500, use Rocket's default.
        error_!("{} catcher failed. Using Rocket default 500.", status.code);
        crate::catcher::default_handler(Status::InternalServerError, req)
    }

    pub(crate) async fn default_tcp_http_server<C>(mut self, ready: C) -> Result<Self, Error>
        where C: for<'a> Fn(&'a Self) -> BoxFuture<'a, ()>
    {
        use std::net::ToSocketAddrs;

        // Determine the address we're going to serve on.
        let addr = format!("{}:{}", self.config.address, self.config.port);
        let mut addr = addr.to_socket_addrs()
            .map(|mut addrs| addrs.next().expect(">= 1 socket addr"))
            .map_err(|e| Error::new(ErrorKind::Io(e)))?;

        #[cfg(feature = "tls")]
        if self.config.tls_enabled() {
            if let Some(ref config) = self.config.tls {
                use crate::http::tls::TlsListener;

                let conf = config.to_native_config().map_err(ErrorKind::Io)?;
                let l = TlsListener::bind(addr, conf).await.map_err(ErrorKind::Bind)?;
                addr = l.local_addr().unwrap_or(addr);
                self.config.address = addr.ip();
                self.config.port = addr.port();
                ready(&mut self).await;
                return self.http_server(l).await;
            }
        }

        let l = TcpListener::bind(addr).await.map_err(ErrorKind::Bind)?;
        addr = l.local_addr().unwrap_or(addr);
        self.config.address = addr.ip();
        self.config.port = addr.port();
        ready(&mut self).await;
        self.http_server(l).await
    }

    // TODO.async: Solidify the Listener APIs and make this function public
    pub(crate) async fn http_server<L>(self, listener: L) -> Result<Self, Error>
        where L: Listener + Send, <L as Listener>::Connection: Send + Unpin + 'static
    {
        // Emit a warning if we're not running inside of Rocket's async runtime.
        if self.config.profile == Config::DEBUG_PROFILE {
            tokio::task::spawn_blocking(|| {
                let this  = std::thread::current();
                if !this.name().map_or(false, |s| s.starts_with("rocket-worker")) {
                    warn!("Rocket is executing inside of a custom runtime.");
                    info_!("Rocket's runtime is enabled via `#[rocket::main]` or `#[launch]`.");
                    info_!("Forced shutdown is disabled. Runtime settings may be suboptimal.");
                }
            });
        }

        // Set up cancellable I/O from the given listener. Shutdown occurs when
        // `Shutdown` (`TripWire`) resolves. This can occur directly through a
        // notification or indirectly through an external signal which, when
        // received, results in triggering the notify.
        let shutdown = self.shutdown();
        let sig_stream = self.config.shutdown.signal_stream();
        let grace = self.config.shutdown.grace as u64;
        let mercy = self.config.shutdown.mercy as u64;

        // Start a task that listens for external signals and notifies shutdown.
        if let Some(mut stream) = sig_stream {
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                while let Some(sig) = stream.next().await {
                    if shutdown.0.tripped() {
                        warn!("Received {}. Shutdown already in progress.", sig);
                    } else {
                        warn!("Received {}. Requesting shutdown.", sig);
                    }

                    shutdown.0.trip();
                }
            });
        }

        let rocket = Arc::new(self);
        let listener = CancellableListener::new(shutdown.clone(), listener, grace, mercy);
        let server = rocket.clone().serve(listener);

        // This deserves some explanation.
        //
        // This is largely to deal with Hyper's dreadful and largely nonexistent
        // handling of shutdown, in general, nevermind graceful.
        //
        // When Hyper receives a "graceful shutdown" request, it stops accepting
        // new requests. That's it. It continues to process existing requests
        // and outgoing responses forever and never cancels them. As a result,
        // Rocket must take it upon itself to cancel any existing I/O.
        //
        // To do so, Rocket wraps all connections in a `CancellableIo` struct,
        // an internal structure that gracefully closes I/O when it receives a
        // signal. That signal is the `shutdown` future. When the future
        // resolves, `CancellableIo` begins to terminate in grace, mercy, and
        // finally force close phases. Since all connections are wrapped in
        // `CancellableIo`, this eventually ends all I/O.
        //
        // At that point, unless a user spawned an infinite, stand-alone task
        // that isn't monitoring `Shutdown`, all tasks should resolve. This
        // means that all instances of the shared `Arc<Rocket>` are dropped and
        // we can return the owned instance of `Rocket`.
        //
        // The accept loop, however, resolves as soon as shutdown is requested,
        // without waiting for the connection tasks or their ongoing responses.
        // That is, `server` resolves even when there are running tasks that are
        // generating a response. So, `server` resolving implies little to
        // nothing about the state of connections. As a result, we depend on the
        // timing of grace + mercy + some buffer to determine when all
        // connections should be closed, thus all tasks should be complete, thus
        // all references to `Arc<Rocket>` should be dropped and we can get a
        // unique reference.
        tokio::pin!(server);
        tokio::select! {
            biased;

            _ = shutdown => {
                // Run shutdown fairings. We compute `sleep()` for grace periods
                // beforehand to ensure we don't add shutdown fairing completion
                // time, which is arbitrary, to these periods.
                info!("Shutdown requested. Waiting for pending I/O...");
                let grace_timer = sleep(Duration::from_secs(grace));
                let mercy_timer = sleep(Duration::from_secs(grace + mercy));
                let shutdown_timer = sleep(Duration::from_secs(grace + mercy + 1));
                rocket.fairings.handle_shutdown(&*rocket).await;

                tokio::pin!(grace_timer, mercy_timer, shutdown_timer);
                tokio::select! {
                    biased;

                    result = &mut server => {
                        if let Err(e) = result {
                            warn!("Server failed while shutting down: {}", e);
                            return Err(Error::shutdown(rocket.clone(), e));
                        }

                        // todo-api patch begin: end as soon as the last connection is
                        // done, not only when a whole period has passed.
                        for timer in [&mut grace_timer, &mut mercy_timer, &mut shutdown_timer] {
                            while Arc::strong_count(&rocket) != 1 {
                                tokio::select! {
                                    _ = timer.as_mut() => break,
                                    _ = sleep(Duration::from_millis(20)) => {}
                                }
                            }
                        }
                        // todo-api patch end
                        match Arc::try_unwrap(rocket) {
                            Ok(rocket) => {
                                info!("Graceful shutdown completed successfully.");
                                Ok(rocket)
                            }
                            Err(rocket) => {
                                warn!("Shutdown failed: outstanding background I/O.");
                                Err(Error::shutdown(rocket, None))
                            }
                        }
                    }
                    _ = &mut shutdown_timer => {
                        warn!("Shutdown failed: server executing after timeouts.");
                        return Err(Error::shutdown(rocket.clone(), None));
                    },
                }
            }
            result = &mut server => {
                match result {
                    Ok(()) => {
                        info!("Server shutdown nominally.");
                        Ok(Arc::try_unwrap(rocket).map_err(|r| Error::shutdown(r, None))?)
                    }
                    Err(e) => {
                        info!("Server failed prior to shutdown: {}:", e);
                        Err(Error::shutdown(rocket.clone(), e))
                    }
                }
            }
        }
    }

    async fn serve<L>(self: Arc<Self>, listener: L) -> io::Result<()>
        where L: Listener + Send,
              L::Connection: Send + Unpin + 'static
    {
        // todo-api patch begin: limits against slow and hostile clients, and a cap on open
        // connections (see PATCHED.md).
        let limits = ConnLimits::from_figment(self.figment());
        let keep_alive = self.config.keep_alive;

        // todo-api patch: HTTP/1 is served by hyper's own HTTP/1 server unless h2c is asked
        // for: the auto builder's version sniffing waits for a client's first bytes with no
        // deadline, so a client that connects and sends nothing would never be dropped.
        let mut h1 = hyper::server::conn::http1::Builder::new();
        h1.keep_alive(keep_alive != 0).preserve_header_case(true);
        limits.http1(&mut h1);
        let h1 = Arc::new(h1);

        #[cfg(feature = "http2")]
        let auto = limits.http2.then(|| {
            let mut builder = Builder::new(TokioExecutor::new());
            let mut http1 = builder.http1();
            http1.keep_alive(keep_alive != 0).preserve_header_case(true).timer(TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout);
            if let Some(max) = limits.max_headers {
                http1.max_headers(max);
            }
            if let Some(max) = limits.max_buf_size {
                http1.max_buf_size(max);
            }
            builder.http2()
                .max_concurrent_streams(None)
                .max_header_list_size(16 << 20)
                .timer(TokioTimer::new())
                .keep_alive_timeout(Duration::from_secs(20))
                .keep_alive_interval(match keep_alive {
                    0 => None,
                    n => Some(Duration::from_secs(n as u64)),
                });
            Arc::new(builder)
        });

        let incoming = Incoming::new(listener).nodelay(true).take_until(self.shutdown());
        let mut incoming = pin!(incoming);

        let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
        let refusal: Arc<str> = limits.refusal_body.as_deref().unwrap_or("").into();
        while let Some(conn) = incoming.next().await.transpose()? {
            // todo-api patch: at the connection cap, answer 503 and close instead of
            // serving, so a flood of idle connections cannot take every descriptor.
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                tokio::spawn(refuse_connection(conn, refusal.clone()));
                continue;
            };
            let rocket = self.clone();
            let h1 = h1.clone();
            #[cfg(feature = "http2")]
            let auto = auto.clone();
            let shutdown = rocket.shutdown();
            tokio::spawn(async move {
                let _slot = slot;
                let connection = ConnectionMeta {
                    remote: conn.peer_address(),
                    client_certificates: conn.peer_certificates(),
                };
                let service = hyper::service::service_fn(move |req| {
                    hyper_service_fn(rocket.clone(), connection.clone(), req)
                });

                let io = TokioIo::new(conn);
                // Boxed: the task would otherwise be sized for the largest of the protocol
                // futures (the auto builder's holds HTTP/1 and HTTP/2 state) on every
                // connection, for as long as the connection lives.
                macro_rules! drive {
                    ($server:expr) => {{
                        let mut server = Box::pin($server);
                        let result = tokio::select! {
                            biased;
                            _ = shutdown => {
                                server.as_mut().graceful_shutdown();
                                server.await
                            },
                            result = &mut server => result,
                        };
                        result.map_err(|e| -> Box<dyn std::error::Error + Send + Sync> { e.into() })
                    }};
                }

                #[cfg(feature = "http2")]
                let result = match auto {
                    Some(auto) => drive!(auto.serve_connection_with_upgrades(io, service)),
                    None => drive!(h1.serve_connection(io, service).with_upgrades()),
                };
                #[cfg(not(feature = "http2"))]
                let result = drive!(h1.serve_connection(io, service).with_upgrades());

                if let Err(e) = result {
                    warn!("Connection failed: {}", e);
                    let mut source = e.source();
                    while let Some(e) = source {
                        warn_!("Error: {}", e);
                        source = e.source();
                    }
                }
            });
        }
        // todo-api patch end

        Ok(())
    }
}

// todo-api patch begin: connection limits, and the answer past the cap.

/// Connection limits, from the figment's `connections` table; a key that is not set
/// keeps upstream's behaviour (no header deadline, no cap, hyper's own limits).
struct ConnLimits {
    header_read_timeout: Option<Duration>,
    max_connections: usize,
    max_headers: Option<usize>,
    max_buf_size: Option<usize>,
    #[cfg_attr(not(feature = "http2"), allow(dead_code))]
    http2: bool,
    /// The answer to a connection over the cap: `connections.refusal_body`, sent as JSON
    /// when set, else an empty body.
    refusal_body: Option<String>,
}

impl ConnLimits {
    fn from_figment(figment: &figment::Figment) -> Self {
        let get = |key: &str| figment.extract_inner::<u64>(&format!("connections.{key}")).ok();
        ConnLimits {
            header_read_timeout: get("header_read_timeout")
                .filter(|secs| *secs > 0)
                .map(Duration::from_secs),
            max_connections: get("max")
                .map_or(tokio::sync::Semaphore::MAX_PERMITS, |max| {
                    (max.max(1) as usize).min(tokio::sync::Semaphore::MAX_PERMITS)
                }),
            max_headers: get("max_headers").map(|n| n.clamp(1, 10_000) as usize),
            // hyper's floor for its read buffer is 8 KiB.
            max_buf_size: get("max_header_bytes").map(|n| n.max(8192) as usize),
            http2: figment.extract_inner::<bool>("connections.http2").unwrap_or(false),
            refusal_body: figment.extract_inner::<String>("connections.refusal_body").ok(),
        }
    }

    fn http1(&self, h1: &mut hyper::server::conn::http1::Builder) {
        h1.timer(TokioTimer::new()).header_read_timeout(self.header_read_timeout);
        if let Some(max) = self.max_headers {
            h1.max_headers(max);
        }
        if let Some(max) = self.max_buf_size {
            h1.max_buf_size(max);
        }
    }
}

/// The answer of a connection over the cap: 503 and `connection: close`.
async fn refuse_connection<C: Connection + Send + Unpin + 'static>(conn: C, body: Arc<str>) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt};

    let content_type = if body.is_empty() { "" } else { "content-type: application/json\r\n" };
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\n{content_type}retry-after: 1\r\n\
         connection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut conn = conn;
    let answer = async {
        conn.write_all(response.as_bytes()).await?;
        conn.shutdown().await?;
        // Read what the client sends until it closes too: closing with unread bytes
        // would reset the connection and could discard the answer before it is read.
        let mut sink = [0u8; 1024];
        while conn.read(&mut sink).await? > 0 {}
        Ok::<_, io::Error>(())
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), answer).await;
}
// todo-api patch end

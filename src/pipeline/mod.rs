//! The request path: every request on the main listener, start to finish, as named stages.
//!
//! ```text
//! handle ─► TokenReview path?  ─► tokenreview::handle
//!        └─► normalize ─► route ─► extract ─► authenticate ─► authorize ─► forward
//!                              └─ anonymous route, no token ─────────────► forward
//! ```
//!
//! Each stage is a room of its own whose doc says when it runs and what it may change.
//! Every error becomes a response from `response`, and no response body or log line carries a
//! token. A request answered from its connection's memo does all its work before its future
//! is first polled; the future then only waits for the upstream (`cold` says why, and what
//! keeps it so).

use std::convert::Infallible;
use std::future::{ready, Future};
use std::sync::Arc;
use std::time::Instant;

use futures_util::future::{self, FutureExt};
use http::{Request, Response};
use hyper::body::Incoming;

use crate::auth::{Accepted, TokenMemo};
use crate::authz::{Decision, Route};
use crate::cold::out_of_line;
use crate::response::{self, Body};
use crate::runtime::{Runtime, Shared};
use crate::token::Bearer;
use crate::tokenreview;
use crate::upstream::{Downstream, Upstream};

pub mod access;
pub mod authenticate;
pub mod authorize;
pub mod extract;
pub mod forward;
pub mod normalize;

/// What one worker thread serves with: the process's shared state, the runtime it was built
/// for, and that runtime's upstream client of this thread (its own connection pool: no
/// cross-thread locking). A new runtime means a new `Worker`, swapped in whole.
pub struct Worker {
    pub shared: Arc<Shared>,
    pub runtime: Arc<Runtime>,
    pub upstream: Option<Upstream>,
}

impl Worker {
    /// The worker for the current runtime.
    pub fn new(shared: Arc<Shared>) -> Worker {
        let runtime = shared.runtime.load_full();
        Worker::with_runtime(shared, runtime)
    }

    /// The worker for `runtime`: its own upstream client, built from the runtime's settings.
    pub fn with_runtime(shared: Arc<Shared>, runtime: Arc<Runtime>) -> Worker {
        let upstream = runtime.upstream.as_ref().map(Upstream::new);
        Worker {
            shared,
            runtime,
            upstream,
        }
    }
}

/// What the request path keeps per client connection.
pub struct Peer {
    /// The connection's last accepted token.
    pub memo: TokenMemo,
    /// The client's address, and for HTTP/1 its own upstream connection and timeout.
    pub downstream: Downstream,
}

impl Peer {
    pub fn new(downstream: Downstream) -> Peer {
        Peer {
            memo: TokenMemo::default(),
            downstream,
        }
    }
}

/// Entry point for every request on the main listener.
pub fn handle<'a>(
    worker: &'a Worker,
    peer: &'a Peer,
    req: Request<Incoming>,
) -> impl Future<Output = Result<Response<Body>, Infallible>> + Send + 'a {
    let rt = &*worker.runtime;
    let grpc = normalize::is_grpc(&req);
    if normalize::oversized_header(req.headers(), rt.config.server.max_header_bytes) {
        return future::Either::Left(ready(Ok(response::header_too_large())));
    }
    let started = Instant::now();
    let access = rt.config.log.access.then(|| access::begin(&req));
    let resp = if tokenreview::serves(&rt.config.tokenreview, &req) {
        future::Either::Left(out_of_line(tokenreview::handle(
            &rt.auth,
            &rt.config.tokenreview,
            req,
            rt.config.server.request_body_timeout,
        )))
    } else {
        future::Either::Right(proxy(worker, peer, req))
    };
    let m = &worker.shared.metrics;
    future::Either::Right(resp.map(move |mut resp| {
        if grpc {
            resp = response::grpc(resp);
        }
        let took = started.elapsed();
        m.duration.record(took.as_secs_f64());
        if let Some(entry) = access {
            access::end(entry, &resp, took);
        }
        Ok(resp)
    }))
}

/// A request to proxy: normalize → route → extract → authenticate → authorize → forward.
/// With a token the connection's memo answers, all of it runs now, on the stack; other tokens
/// take the boxed path through the shared cache or a verification. `CONNECT` is refused
/// first. The route is found before the token is read: an anonymous route's request without a
/// token is forwarded with no identity; one with a token is authenticated like any other.
fn proxy<'a>(
    worker: &'a Worker,
    peer: &'a Peer,
    mut req: Request<Incoming>,
) -> impl Future<Output = Response<Body>> + Send + 'a {
    let m = &worker.shared.metrics;
    if normalize::is_connect(req.method()) {
        return future::Either::Left(ready(response::connect_refused()));
    }
    let Some(upstream) = &worker.upstream else {
        return future::Either::Left(ready(response::not_found()));
    };
    normalize::strip_spoofable(req.headers_mut(), !peer.downstream.trusted);
    if let Err(e) = normalize::path(&mut req) {
        return future::Either::Left(ready(normalize::refused(e, m)));
    }
    let route = worker.runtime.authz.route(req.method(), req.uri().path());
    let token = match extract::bearer(req.headers()) {
        Bearer::Token(t) => t,
        Bearer::Missing if route.is_some_and(|r| r.anonymous) => {
            return future::Either::Right(future::Either::Left(authorize_and_forward(
                worker, upstream, peer, req, route, None,
            )));
        }
        no_token => return future::Either::Left(ready(extract::refused(no_token, m))),
    };
    match authenticate::remembered(&worker.runtime.auth, token, &peer.memo) {
        Some(accepted) => future::Either::Right(future::Either::Left(authorize_and_forward(
            worker,
            upstream,
            peer,
            req,
            route,
            Some(accepted),
        ))),
        None => future::Either::Right(future::Either::Right(out_of_line(verify_then_forward(
            worker, upstream, peer, req, route,
        )))),
    }
}

/// The path of a token the connection's memo did not answer.
async fn verify_then_forward<'a>(
    worker: &'a Worker,
    upstream: &'a Upstream,
    peer: &'a Peer,
    req: Request<Incoming>,
    route: Option<&'a Route>,
) -> Response<Body> {
    let m = &worker.shared.metrics;
    let token = match extract::bearer(req.headers()) {
        Bearer::Token(t) => t,
        // Not reached: proxy() found exactly one bearer token in these same headers.
        no_token => return extract::refused(no_token, m),
    };
    let accepted = match authenticate::verify(&worker.runtime.auth, token, &peer.memo).await {
        Ok(a) => a,
        Err(e) => return authenticate::refused(token, e, m),
    };
    authorize_and_forward(worker, upstream, peer, req, route, Some(accepted)).await
}

/// Authorize a request (`caller: None`: an anonymous route's request without a token), then
/// forward it.
fn authorize_and_forward<'a>(
    worker: &'a Worker,
    upstream: &'a Upstream,
    peer: &'a Peer,
    req: Request<Incoming>,
    route: Option<&'a Route>,
    caller: Option<Accepted>,
) -> impl Future<Output = Response<Body>> + Send + 'a {
    let decision = match &caller {
        Some((verified, _)) => authorize::decide(&worker.runtime.authz, route, verified, &req),
        None => {
            authorize::anonymous(route);
            Decision::Allow
        }
    };
    match decision {
        Decision::Allow => future::Either::Left(send(worker, upstream, peer, req, caller)),
        Decision::Deny => future::Either::Right(future::Either::Left(ready(authorize::denied()))),
        Decision::Review(route) => future::Either::Right(future::Either::Right(out_of_line(
            review_then_forward(worker, upstream, peer, req, route, caller),
        ))),
    }
}

/// A route whose SubjectAccessReview decides: ask, then forward or refuse.
async fn review_then_forward<'a>(
    worker: &'a Worker,
    upstream: &'a Upstream,
    peer: &'a Peer,
    req: Request<Incoming>,
    route: &'a Route,
    caller: Option<Accepted>,
) -> Response<Body> {
    let Some((verified, _)) = &caller else {
        // Not reached: only an authenticated caller's decision can be a review.
        return authorize::denied();
    };
    match authorize::review(&worker.runtime.authz, route, verified, &req).await {
        Ok(true) => send(worker, upstream, peer, req, caller).await,
        Ok(false) => authorize::denied(),
        Err(e) => authorize::unavailable(e),
    }
}

fn send<'a>(
    worker: &'a Worker,
    upstream: &'a Upstream,
    peer: &'a Peer,
    req: Request<Incoming>,
    caller: Option<Accepted>,
) -> impl Future<Output = Response<Body>> + Send + 'a {
    forward::send(
        upstream,
        &worker.shared.metrics,
        req,
        caller,
        &peer.downstream,
        forward::SendOptions {
            body_timeout: worker.runtime.config.server.request_body_timeout,
            access: worker.runtime.config.log.access,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of the future a request function returns, from its type alone.
    fn future_size<'a, F: Future>(_: fn(&'a Worker, &'a Peer, Request<Incoming>) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    /// Every request's future lives in its connection's memory, which a keep-alive client
    /// comes back to only after the other connections' requests have run: its size is memory
    /// the request touches cold. Written as nested `async fn`s, each keeping its own copy of
    /// its arguments, the path's future took 3,184 bytes in a test build; with the work done
    /// before the future and the wait built from combinators, 352. A layer of `async fn`
    /// added to the path fails this first.
    #[test]
    fn the_request_future_stays_small() {
        let size = future_size(handle);
        assert!(size <= 1024, "the request future is {size} bytes");
    }
}

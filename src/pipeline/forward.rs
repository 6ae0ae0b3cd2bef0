//! Stage 5, forward: runs last, for a request that is authenticated and authorized. The
//! request is rewritten for the upstream (hop-by-hop headers out, `Host` and
//! `X-Forwarded-*`, identity headers in, the token kept or dropped per mode) and handed over
//! at once; the returned future only waits for the response head, whose body then streams
//! back. No response within `upstream.timeout` is 504; no connection, 502. A request body
//! that fails on the client's side fails the exchange too, but is the client's: 408 when it
//! stalled past `server.request_body_timeout`, 400 when it was malformed, never counted as an
//! upstream failure.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::FutureExt;
use http::{Request, Response};
use http_body_util::Either;
use hyper::body::Incoming;

use crate::auth::Accepted;
use crate::metrics::RequestMetrics;
use crate::request_body::{self, BodyFailure, BodyOutcome};
use crate::response::{self, Body};
use crate::upstream::{Downstream, Upstream, UpstreamError};

/// Send the request upstream; the future resolves to the response to give the client.
/// `body_timeout`: `server.request_body_timeout`.
pub fn send<'a>(
    upstream: &'a Upstream,
    m: &'a RequestMetrics,
    req: Request<Incoming>,
    (verified, token_headers): Accepted,
    conn: &'a Downstream,
    body_timeout: Duration,
) -> impl Future<Output = Response<Body>> + Send + 'a {
    let (req, body) = request_body::watch(req, body_timeout);
    let sending = upstream.forward(req, &verified.principal.headers, token_headers, conn);
    sending.map(move |r| match r {
        Ok(resp) => {
            m.ok.increment(1);
            m.upstream_status(resp.status());
            resp.map(Either::Left)
        }
        Err(e) => failed(m, e, body),
    })
}

#[cold]
#[inline(never)]
fn failed(m: &RequestMetrics, e: UpstreamError, body: Option<Arc<BodyOutcome>>) -> Response<Body> {
    match body.and_then(|b| b.failure()) {
        Some(BodyFailure::Stalled) => return response::request_body_timeout(),
        Some(BodyFailure::Broken) => return response::bad_request_body(),
        None => {}
    }
    m.upstream_failed();
    match e {
        UpstreamError::Timeout => response::upstream_timeout(),
        UpstreamError::Unreachable => response::upstream_unreachable(),
        UpstreamError::Failed => response::upstream_failed(),
    }
}

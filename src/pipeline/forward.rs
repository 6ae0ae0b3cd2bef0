//! Stage 5, forward: runs last, for a request that is authenticated and authorized. The
//! request is rewritten for the upstream (hop-by-hop headers out, `Host` and
//! `X-Forwarded-*`, identity headers in, the token kept or dropped per mode) and handed over
//! at once; the returned future only waits for the response head, whose body then streams
//! back. No response within `upstream.timeout` is 504; no connection, 502. A request body
//! that fails on the client's side fails the exchange too, but is the client's: 408 when it
//! stalled past `server.request_body_timeout`, 400 when it was malformed, never counted as an
//! upstream failure.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::FutureExt;
use http::{Request, Response};
use http_body_util::Either;
use hyper::body::Incoming;

use crate::auth::{Accepted, Principal};
use crate::identity::TokenHeaderValues;
use crate::metrics::RequestMetrics;
use crate::request_body::{self, BodyFailure, BodyOutcome};
use crate::response::{self, Body};
use crate::upstream::{Downstream, Upstream, UpstreamError};

/// How a request is sent: `server.request_body_timeout`, and whether the access log is on
/// (then the response carries the caller, [`Caller`]).
#[derive(Clone, Copy)]
pub struct SendOptions {
    pub body_timeout: Duration,
    pub access: bool,
}

/// Send the request upstream for `caller` (`None`: an anonymous route's request without a
/// token, forwarded with no identity headers); the future resolves to the response to give
/// the client.
pub fn send<'a>(
    upstream: &'a Upstream,
    m: &'a RequestMetrics,
    req: Request<Incoming>,
    caller: Option<Accepted>,
    conn: &'a Downstream,
    opts: SendOptions,
) -> impl Future<Output = Response<Body>> + Send + 'a {
    let (req, body) = request_body::watch(req, opts.body_timeout);
    let (verified, token_headers) = match caller {
        Some((v, t)) => (Some(v), t),
        None => (None, TokenHeaderValues::default()),
    };
    let identity = verified
        .as_ref()
        .map_or(&[][..], |v| &v.principal.headers[..]);
    let sending = upstream.forward(req, identity, token_headers, conn);
    let caller = verified
        .filter(|_| opts.access)
        .map(|v| Caller(v.principal.clone()));
    sending.map(move |r| {
        let mut resp = match r {
            Ok(resp) => {
                m.ok.increment(1);
                m.upstream_status(resp.status());
                resp.map(Either::Left)
            }
            Err(e) => failed(m, upstream, e, body),
        };
        if let Some(c) = caller {
            resp.extensions_mut().insert(c);
        }
        resp
    })
}

/// Who a forwarded request was made for, for the access log.
#[derive(Clone)]
pub struct Caller(pub Arc<Principal>);

#[cold]
#[inline(never)]
fn failed(
    m: &RequestMetrics,
    upstream: &Upstream,
    e: UpstreamError,
    body: Option<Arc<BodyOutcome>>,
) -> Response<Body> {
    match body.and_then(|b| b.failure()) {
        Some(BodyFailure::Stalled) => return response::request_body_timeout(),
        Some(BodyFailure::Broken) => return response::bad_request_body(),
        None => {}
    }
    m.upstream_failed();
    if let Some(suppressed) = WARNINGS.admit() {
        tracing::warn!(upstream = %upstream.authority(), cause = %e, suppressed, "upstream request failed");
    }
    match e {
        UpstreamError::Timeout => response::upstream_timeout(),
        UpstreamError::Unreachable => response::upstream_unreachable(),
        UpstreamError::Failed => response::upstream_failed(),
    }
}

/// At most one upstream-failure warning a second; the next one says how many were held back.
struct RateLimit {
    /// The second (since the Unix epoch) of the last warning.
    last: AtomicU64,
    suppressed: AtomicU64,
}

static WARNINGS: RateLimit = RateLimit {
    last: AtomicU64::new(0),
    suppressed: AtomicU64::new(0),
};

impl RateLimit {
    /// `Some(held back since the last one)` when a warning may be logged now.
    fn admit(&self) -> Option<u64> {
        let now = crate::verify::now_unix().max(0) as u64;
        let last = self.last.load(Ordering::Relaxed);
        if now > last
            && self
                .last
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            return Some(self.suppressed.swap(0, Ordering::AcqRel));
        }
        self.suppressed.fetch_add(1, Ordering::Relaxed);
        None
    }
}

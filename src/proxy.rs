//! One request, start to finish: route (TokenReview or proxy), strip spoofable identity
//! headers, extract the bearer, authenticate, forward. Every error becomes a response here, in
//! one place, and no response body or log line ever carries a token.

use std::convert::Infallible;
use std::future::{ready, Future};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, LazyLock};
use std::time::Instant;

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use futures_util::future::{self, FutureExt};
use http::header::{CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use metrics::{counter, histogram, Counter, Histogram};

use crate::auth::{AuthError, Authenticator, Outcome};
use crate::config::Config;
use crate::forward::{self, Peer, Upstream, UpstreamError};
use crate::identity::TokenHeaderValues;
use crate::metrics as m;
use crate::token::{self, Bearer};
use crate::tokenreview;
use crate::verify::Reject;

/// Response body: the upstream's streamed body, or a small one of our own.
pub type Body = Either<Incoming, Full<Bytes>>;

/// Everything every worker shares.
pub struct Shared {
    pub config: Config,
    pub auth: Authenticator,
    pub shutting_down: AtomicBool,
    /// The proxy's own bearer for impersonate mode, re-read when `upstream.token_file` changes.
    pub proxy_token: Arc<ArcSwapOption<HeaderValue>>,
    pub metrics: RequestMetrics,
}

/// Pre-registered request metric handles.
pub struct RequestMetrics {
    ok: Counter,
    missing_token: Counter,
    rejected: Counter,
    unavailable: Counter,
    upstream_error: Counter,
    duration: Histogram,
    class: [Counter; 5],
}

impl RequestMetrics {
    pub fn new() -> RequestMetrics {
        let r = |v: &'static str| counter!(m::REQUESTS_TOTAL, "result" => v);
        let c = |v: &'static str| counter!(m::UPSTREAM_RESPONSES_TOTAL, "class" => v);
        RequestMetrics {
            ok: r("ok"),
            missing_token: r("missing_token"),
            rejected: r("rejected"),
            unavailable: r("unavailable"),
            upstream_error: r("upstream_error"),
            duration: histogram!(m::REQUEST_DURATION_SECONDS),
            class: [c("2xx"), c("3xx"), c("4xx"), c("5xx"), c("error")],
        }
    }

    fn upstream_status(&self, status: StatusCode) {
        let i = match status.as_u16() {
            200..=299 => 0,
            300..=399 => 1,
            400..=499 => 2,
            _ => 3,
        };
        self.class[i].increment(1);
    }
}

impl Default for RequestMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// What a worker thread owns: the shared state and its own upstream connection pool.
pub struct Worker {
    pub shared: Arc<Shared>,
    pub upstream: Option<Upstream>,
}

const REALM: &str = "Bearer realm=\"tokenreview-proxy\"";

/// `WWW-Authenticate` values per reason, built once.
static INVALID_TOKEN: LazyLock<Vec<HeaderValue>> = LazyLock::new(|| {
    Reject::ALL
        .iter()
        .map(|r| {
            HeaderValue::from_str(&format!(
                "{REALM}, error=\"invalid_token\", error_description=\"{}\"",
                r.as_str()
            ))
            .unwrap_or_else(|_| HeaderValue::from_static(REALM))
        })
        .collect()
});

#[cold]
#[inline(never)]
pub fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut r = Response::new(Either::Right(Full::new(Bytes::from_static(
        body.as_bytes(),
    ))));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

pub fn json(status: StatusCode, body: Vec<u8>) -> Response<Body> {
    let mut r = Response::new(Either::Right(Full::new(Bytes::from(body))));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

#[cold]
#[inline(never)]
pub fn missing_token() -> Response<Body> {
    let mut r = text(StatusCode::UNAUTHORIZED, "missing bearer token\n");
    r.headers_mut()
        .insert(WWW_AUTHENTICATE, HeaderValue::from_static(REALM));
    r
}

#[cold]
#[inline(never)]
pub fn rejected(reason: Reject) -> Response<Body> {
    if reason == Reject::TooLarge {
        return text(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "request header fields too large\n",
        );
    }
    let mut r = text(StatusCode::UNAUTHORIZED, reject_body(reason));
    r.headers_mut()
        .insert(WWW_AUTHENTICATE, INVALID_TOKEN[reason as usize].clone());
    r
}

fn reject_body(reason: Reject) -> &'static str {
    match reason {
        Reject::Malformed => "invalid token: malformed\n",
        Reject::TooLarge => "invalid token: too_large\n",
        Reject::UnsupportedAlgorithm => "invalid token: unsupported_algorithm\n",
        Reject::ForbiddenHeader => "invalid token: forbidden_header\n",
        Reject::UnknownIssuer => "invalid token: unknown_issuer\n",
        Reject::UnknownKey => "invalid token: unknown_key\n",
        Reject::BadSignature => "invalid token: bad_signature\n",
        Reject::Expired => "invalid token: expired\n",
        Reject::NotYetValid => "invalid token: not_yet_valid\n",
        Reject::IssuedInFuture => "invalid token: issued_in_future\n",
        Reject::LifetimeExceeded => "invalid token: lifetime_exceeded\n",
        Reject::AudienceMismatch => "invalid token: audience_mismatch\n",
        Reject::InvalidClaims => "invalid token: invalid_claims\n",
        Reject::LegacyToken => "invalid token: legacy_token\n",
    }
}

#[cold]
#[inline(never)]
pub fn unavailable() -> Response<Body> {
    let mut r = text(
        StatusCode::SERVICE_UNAVAILABLE,
        "no usable keys for this token's issuer yet\n",
    );
    r.headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from_static("5"));
    r
}

/// Entry point for every request on the main listener. Like [`proxy`], it does its work
/// before the returned future is first polled; the future waits for what is left.
pub fn handle<'a>(
    worker: &'a Worker,
    peer: &'a Peer,
    req: Request<Incoming>,
) -> impl Future<Output = Result<Response<Body>, Infallible>> + Send + 'a {
    let shared = &*worker.shared;
    // hyper bounds the whole head (at least 8 KiB); SPEC bounds each header line.
    let max = shared.config.server.max_header_bytes;
    if req
        .headers()
        .iter()
        .any(|(n, v)| n.as_str().len() + 2 + v.len() > max)
    {
        return future::Either::Left(ready(Ok(text(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "request header fields too large\n",
        ))));
    }
    let started = Instant::now();
    let resp = if shared.config.tokenreview.enabled
        && req.method() == Method::POST
        && tokenreview::is_tokenreview_path(req.uri().path())
    {
        // Boxed: a rare, large future that every proxied request's future would carry.
        future::Either::Left(crate::out_of_line(tokenreview::handle(shared, req)))
    } else {
        future::Either::Right(proxy(worker, peer, req))
    };
    future::Either::Right(resp.map(move |resp| {
        shared
            .metrics
            .duration
            .record(started.elapsed().as_secs_f64());
        Ok(resp)
    }))
}

/// A request to proxy. Everything up to handing the request to the upstream connection runs
/// before the returned future is first polled, on the stack: for a token the connection's
/// memo answers (the common case) that is all of it, and the future only waits for the
/// response (see [`Upstream::forward`] for why that matters). Other tokens take the boxed
/// full path.
fn proxy<'a>(
    worker: &'a Worker,
    peer: &'a Peer,
    mut req: Request<Incoming>,
) -> impl Future<Output = Response<Body>> + Send + 'a {
    let shared = &*worker.shared;
    let m = &shared.metrics;
    let Some(upstream) = &worker.upstream else {
        return future::Either::Left(ready(text(StatusCode::NOT_FOUND, "not found\n")));
    };
    forward::strip_spoofable(req.headers_mut());
    let auth = match token::extract(req.headers()) {
        Bearer::Missing => {
            m.missing_token.increment(1);
            return future::Either::Left(ready(missing_token()));
        }
        Bearer::Ambiguous => {
            m.rejected.increment(1);
            return future::Either::Left(ready(text(
                StatusCode::BAD_REQUEST,
                "more than one Authorization header\n",
            )));
        }
        Bearer::Token(t) => shared.auth.memo_hit(t, &peer.memo),
    };
    match auth {
        Some(auth) => future::Either::Right(future::Either::Left(send_accepted(
            upstream, m, req, auth, peer,
        ))),
        // The full path (shared cache or verification) is a future of several KiB: boxed.
        None => future::Either::Right(future::Either::Right(crate::out_of_line(
            authenticate_and_send(shared, upstream, peer, req),
        ))),
    }
}

/// The path of a token the connection's memo did not answer: the shared cache, or a
/// verification, then the memo updated; then forward.
async fn authenticate_and_send(
    shared: &Shared,
    upstream: &Upstream,
    peer: &Peer,
    req: Request<Incoming>,
) -> Response<Body> {
    let Bearer::Token(t) = token::extract(req.headers()) else {
        // Not reached: proxy() found exactly one bearer token in these same headers.
        return missing_token();
    };
    let auth = match shared.auth.authenticate_and_remember(t, &peer.memo).await {
        Ok(a) => a,
        Err(e) => return auth_failed(shared, t, e),
    };
    send_accepted(upstream, &shared.metrics, req, auth, peer).await
}

/// Send an authenticated request upstream ([`Upstream::forward`]): handed over at once, the
/// returned future waits for the response.
fn send_accepted<'a>(
    upstream: &'a Upstream,
    m: &'a RequestMetrics,
    req: Request<Incoming>,
    (outcome, token_headers): (Arc<Outcome>, TokenHeaderValues),
    peer: &'a Peer,
) -> impl Future<Output = Response<Body>> + Send + 'a {
    let Outcome::Accepted(verified) = &*outcome else {
        // authenticate() returns rejections as Err; this arm cannot be reached.
        m.rejected.increment(1);
        return future::Either::Left(ready(rejected(Reject::InvalidClaims)));
    };
    let sending = upstream.forward(req, &verified.principal.headers, token_headers, peer);
    future::Either::Right(sending.map(move |r| match r {
        Ok(resp) => {
            m.ok.increment(1);
            m.upstream_status(resp.status());
            resp.map(Either::Left)
        }
        Err(e) => upstream_failed(m, e),
    }))
}

// The failure paths below are kept out of line (`#[cold]`, never inlined): the request future
// is one function, and their code inside it spread its hot path over more instruction-cache
// lines (callgrind's cache simulation counted 60 misses per cached request in it).

#[cold]
#[inline(never)]
fn auth_failed(shared: &Shared, token: &str, e: AuthError) -> Response<Body> {
    let m = &shared.metrics;
    match e {
        AuthError::Rejected { reason, issuer } => {
            m.rejected.increment(1);
            tracing::debug!(token_fingerprint = %token::fingerprint(token), reason = reason.as_str(), issuer = shared.auth.issuer_name(issuer), "token rejected");
            rejected(reason)
        }
        AuthError::Unavailable { issuer } => {
            m.unavailable.increment(1);
            tracing::debug!(
                issuer = shared.auth.issuer_name(Some(issuer)),
                "no usable keys"
            );
            unavailable()
        }
    }
}

#[cold]
#[inline(never)]
fn upstream_failed(m: &RequestMetrics, e: UpstreamError) -> Response<Body> {
    m.upstream_error.increment(1);
    m.class[4].increment(1);
    match e {
        UpstreamError::Timeout => text(StatusCode::GATEWAY_TIMEOUT, "upstream timed out\n"),
        UpstreamError::Unreachable => text(StatusCode::BAD_GATEWAY, "upstream unreachable\n"),
        UpstreamError::Failed => text(StatusCode::BAD_GATEWAY, "upstream request failed\n"),
    }
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

//! A client's request body on its way in, watched: a wait for its next bytes longer than
//! `server.request_body_timeout` ends it with an error (the client gets 408), and a body that
//! fails on the client's side (a malformed chunk, a client gone) is recorded as such, so the
//! forward stage answers 400 or 408 instead of blaming the upstream (502).
//!
//! Used by TokenReview (collecting its body) and the forward stage (streaming it upstream).
//! A request without a body is not wrapped: no timer, no allocation.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tokio::time::{Instant, Sleep};

use crate::metrics::REQUEST_BODY_TIMEOUTS_TOTAL;

/// A request body as the upstream client sends it.
pub enum RequestBody {
    /// No body to watch (the request had none).
    Plain(Incoming),
    Watched(Watched),
}

/// How a watched body failed on the client's side, if it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFailure {
    /// The client's bytes did not make a valid body, or the client went away mid-body.
    Broken,
    /// No bytes for `server.request_body_timeout` while the body was being read.
    Stalled,
}

/// What became of a watched body, shared between the body (which records it) and the one who
/// answers the request (which reads it once the body is gone).
#[derive(Default)]
pub struct BodyOutcome(AtomicU8);

const FINE: u8 = 0;
const BROKEN: u8 = 1;
const STALLED: u8 = 2;

impl BodyOutcome {
    pub fn failure(&self) -> Option<BodyFailure> {
        match self.0.load(Ordering::Acquire) {
            BROKEN => Some(BodyFailure::Broken),
            STALLED => Some(BodyFailure::Stalled),
            _ => None,
        }
    }
}

/// The error a watched body ends with.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("request body failed: {0}")]
    Client(#[source] hyper::Error),
    #[error("no request body bytes within server.request_body_timeout")]
    Stalled,
}

/// `req` with its body watched, and where its failure will be recorded; a request without a
/// body (`is_end_stream`) passes as it is, with no outcome to read.
pub fn watch(
    req: Request<Incoming>,
    timeout: Duration,
) -> (Request<RequestBody>, Option<Arc<BodyOutcome>>) {
    if req.body().is_end_stream() {
        return (req.map(RequestBody::Plain), None);
    }
    let (parts, body) = req.into_parts();
    let (body, outcome) = Watched::new(body, timeout);
    (
        Request::from_parts(parts, RequestBody::Watched(body)),
        Some(outcome),
    )
}

/// A body whose waits between frames are bounded by `timeout`. The timer is made at the first
/// wait and re-armed at the first wait after each frame, so time its reader spends elsewhere
/// (an upstream not reading yet) never counts against the client.
pub struct Watched {
    inner: Incoming,
    timeout: Duration,
    stall: Option<Pin<Box<Sleep>>>,
    /// A frame arrived since the timer was armed.
    rearm: bool,
    outcome: Arc<BodyOutcome>,
}

impl Watched {
    pub fn new(inner: Incoming, timeout: Duration) -> (Watched, Arc<BodyOutcome>) {
        let outcome = Arc::new(BodyOutcome::default());
        let body = Watched {
            inner,
            timeout,
            stall: None,
            rearm: false,
            outcome: outcome.clone(),
        };
        (body, outcome)
    }

    fn failed(&self) -> bool {
        self.outcome.0.load(Ordering::Relaxed) != FINE
    }
}

#[cold]
#[inline(never)]
fn stalled(outcome: &BodyOutcome) -> BodyError {
    outcome.0.store(STALLED, Ordering::Release);
    metrics::counter!(REQUEST_BODY_TIMEOUTS_TOTAL).increment(1);
    BodyError::Stalled
}

#[cold]
#[inline(never)]
fn broken(outcome: &BodyOutcome, e: hyper::Error) -> BodyError {
    outcome.0.store(BROKEN, Ordering::Release);
    BodyError::Client(e)
}

impl Body for Watched {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        if this.failed() {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(broken(&this.outcome, e)))),
            Poll::Ready(frame) => {
                this.rearm = true;
                Poll::Ready(frame.map(|f| f.map_err(BodyError::Client)))
            }
            Poll::Pending => {
                if this.stall.is_none() || this.rearm {
                    let deadline = Instant::now() + this.timeout;
                    if let Some(s) = &mut this.stall {
                        s.as_mut().reset(deadline);
                    } else {
                        this.stall = Some(Box::pin(tokio::time::sleep_until(deadline)));
                    }
                    this.rearm = false;
                }
                match this.stall.as_mut().map(|s| s.as_mut().poll(cx)) {
                    Some(Poll::Ready(())) => Poll::Ready(Some(Err(stalled(&this.outcome)))),
                    _ => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.failed() || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.get_mut() {
            RequestBody::Plain(b) => Pin::new(b)
                .poll_frame(cx)
                .map(|f| f.map(|f| f.map_err(BodyError::Client))),
            RequestBody::Watched(b) => Pin::new(b).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Plain(b) => b.is_end_stream(),
            RequestBody::Watched(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Plain(b) => b.size_hint(),
            RequestBody::Watched(b) => b.size_hint(),
        }
    }
}

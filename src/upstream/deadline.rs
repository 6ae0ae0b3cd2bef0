//! The upstream timeout of HTTP/1 client connections, kept on the connection's tick instead
//! of a timer per request. Used by the upstream client (`within`) and the listener's tick
//! (`check`).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// The upstream timeout of an HTTP/1 client connection's requests, kept without a timer per
/// request: a request in [`Self::within`] is numbered and marked waiting (two stores), and the
/// connection's periodic tick ([`Self::check`], in `listener::drive`) marks it expired once it
/// has waited `timeout`. hyper's HTTP/1 dispatcher polls a connection's in-flight request
/// future whenever it polls the connection (behaviour, not a documented guarantee: the 504
/// tests would hang until the upstream answers if that changed), so the request sees the mark
/// on the tick's next loop turn and ends (504).
/// A timer per request (armed, then cancelled) cost measurably more: BENCHMARKS.md.
/// HTTP/2 streams run concurrently in tasks of their own and keep a timer each.
#[derive(Default)]
pub struct UpstreamDeadline {
    /// Requests started so far; the waiting one (if any) is number `started`.
    started: AtomicU32,
    waiting: AtomicBool,
    /// The number of a request whose wait passed the timeout (0: none).
    expired: AtomicU32,
}

/// What the tick last saw: which request was waiting, and since when (one tick late at most).
#[derive(Default)]
pub struct DeadlineWatch(Option<(u32, Instant)>);

impl UpstreamDeadline {
    /// Run `fut` (the upstream call) to completion, or until the tick marks it expired
    /// (`None`). The wait counts from this call.
    pub fn within<F: Future>(&self, fut: F) -> Within<'_, F> {
        let n = self.started.load(Ordering::Relaxed).wrapping_add(1).max(1);
        self.started.store(n, Ordering::Relaxed);
        self.waiting.store(true, Ordering::Release);
        Within {
            fut,
            n,
            done: NotWaiting(self),
        }
    }

    /// Called on the connection's tick: mark the waiting request expired once it has waited
    /// `timeout` (noticed up to one tick late, and started counting up to one tick late).
    pub fn check(&self, watch: &mut DeadlineWatch, timeout: Duration) {
        if !self.waiting.load(Ordering::Acquire) {
            watch.0 = None;
            return;
        }
        let n = self.started.load(Ordering::Relaxed);
        match watch.0 {
            Some((seen, since)) if seen == n => {
                if since.elapsed() >= timeout {
                    self.expired.store(n, Ordering::Release);
                }
            }
            _ => watch.0 = Some((n, Instant::now())),
        }
    }
}

pin_project_lite::pin_project! {
    /// [`UpstreamDeadline::within`]'s future.
    pub struct Within<'a, F> {
        #[pin]
        fut: F,
        // The request's number.
        n: u32,
        done: NotWaiting<'a>,
    }
}

impl<F: Future> Future for Within<'_, F> {
    type Output = Option<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        match this.fut.poll(cx) {
            Poll::Ready(v) => Poll::Ready(Some(v)),
            Poll::Pending if this.done.0.expired.load(Ordering::Acquire) == *this.n => {
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Clears `waiting` however the upstream call ends (answered, expired, or dropped).
struct NotWaiting<'a>(&'a UpstreamDeadline);

impl Drop for NotWaiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.store(false, Ordering::Release);
    }
}

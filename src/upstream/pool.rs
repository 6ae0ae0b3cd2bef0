//! Upstream connections for HTTP/2 clients' requests: one small pool per worker thread, with a
//! hard bound (`upstream.max_connections`). A request first takes a permit, then an idle
//! connection or a new one; the connection comes back, and then the permit, when the response
//! body ends. A body dropped before its end closes its connection instead (HTTP/1 cannot drop
//! half a response). So a worker never has more than `max_connections` upstream connections
//! for HTTP/2 clients, busy and idle together, and requests beyond it wait for one.
//!
//! Not hyper-util's pooled client: it has no such bound (one HTTP/2 client connection's 256
//! streams to a slow path opened 256 upstream connections), and a semaphore in front of it
//! still lets it open a connection while another is on its way back to the pool.

use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::SendRequest;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::request_body::RequestBody;

type Sender = SendRequest<RequestBody>;

/// Idle connections are closed after this long unused (as hyper-util's pool did here).
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Pool {
    permits: Arc<Semaphore>,
    idle: Mutex<Idle>,
}

#[derive(Default)]
struct Idle {
    /// Most recently used last.
    conns: Vec<(Sender, Instant)>,
    /// A task is closing connections idle past [`IDLE_TIMEOUT`].
    reaping: bool,
}

impl Pool {
    pub fn new(max_connections: usize) -> Arc<Pool> {
        Arc::new(Pool {
            permits: Arc::new(Semaphore::new(max_connections)),
            idle: Mutex::default(),
        })
    }

    fn idle(&self) -> MutexGuard<'_, Idle> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wait for a connection slot.
    pub async fn lease(self: &Arc<Pool>) -> Lease {
        // The semaphore is never closed, so this never fails; the `None` is only a type.
        let permit = self.permits.clone().acquire_owned().await.ok();
        Lease {
            pool: self.clone(),
            permit,
        }
    }

    fn put(self: &Arc<Pool>, sender: Sender) {
        let mut idle = self.idle();
        idle.conns.push((sender, Instant::now()));
        // Bodies end on the worker's runtime; one dropped as it shuts down needs no reaper.
        if !idle.reaping {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                idle.reaping = true;
                rt.spawn(reap(Arc::downgrade(self)));
            }
        }
    }
}

/// Close connections idle past [`IDLE_TIMEOUT`]; end once none are idle (or the pool is gone).
async fn reap(pool: Weak<Pool>) {
    loop {
        tokio::time::sleep(IDLE_TIMEOUT / 4).await;
        let Some(pool) = pool.upgrade() else { return };
        let mut idle = pool.idle();
        idle.conns
            .retain(|(s, since)| !s.is_closed() && since.elapsed() < IDLE_TIMEOUT);
        if idle.conns.is_empty() {
            idle.reaping = false;
            return;
        }
    }
}

/// A request's right to one upstream connection of the pool.
pub struct Lease {
    pool: Arc<Pool>,
    permit: Option<OwnedSemaphorePermit>,
}

impl Lease {
    /// An idle connection that is ready for a request, if the pool has one; closed and stale
    /// ones are dropped on the way.
    pub async fn idle_connection(&self) -> Option<Sender> {
        loop {
            let popped = self.pool.idle().conns.pop();
            let (mut sender, since) = popped?;
            if sender.is_closed() || since.elapsed() >= IDLE_TIMEOUT {
                continue;
            }
            if sender.ready().await.is_ok() {
                return Some(sender);
            }
        }
    }

    /// The response body, holding this lease and the connection it came over until it ends.
    pub fn body(self, inner: Incoming, sender: Sender) -> UpstreamBody {
        UpstreamBody {
            inner,
            lease: Some(Box::new((self, sender))),
        }
    }

    /// The body ended (`reusable`) or was dropped: the connection goes back to the pool or is
    /// closed, then the permit is released (so its next holder finds the connection).
    fn finish(self, sender: Sender, reusable: bool) {
        let Lease { pool, permit } = self;
        if reusable {
            pool.put(sender);
        } else {
            drop(sender);
        }
        drop(permit);
    }
}

/// An upstream response's body as the client gets it. For an HTTP/2 client's request it also
/// holds the pool's connection and permit until it ends.
pub struct UpstreamBody {
    inner: Incoming,
    lease: Option<Box<(Lease, Sender)>>,
}

impl UpstreamBody {
    /// A body over a connection of the client's own (an HTTP/1 client's).
    pub fn new(inner: Incoming) -> UpstreamBody {
        UpstreamBody { inner, lease: None }
    }

    fn release(&mut self, reusable: bool) {
        if let Some(lease) = self.lease.take() {
            let (lease, sender) = *lease;
            lease.finish(sender, reusable);
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    #[inline]
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if this.lease.is_some() {
            match &polled {
                Poll::Ready(None) => this.release(true),
                Poll::Ready(Some(Ok(_))) if this.inner.is_end_stream() => this.release(true),
                Poll::Ready(Some(Err(_))) => this.release(false),
                _ => {}
            }
        }
        polled
    }

    #[inline]
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    #[inline]
    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        // An empty body may never be polled: it ended all the same.
        let ended = self.inner.is_end_stream();
        self.release(ended);
    }
}

//! The upstream HTTP/1 connection of one downstream HTTP/1 connection, driven inside the
//! downstream connection's task: by the request's future until the response head arrives,
//! then by the response body while it streams.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1;
use hyper_rustls::MaybeHttpsStream;
use hyper_util::rt::TokioIo;

use super::Peer;

type Sender = http1::SendRequest<Incoming>;
type Connection = http1::Connection<MaybeHttpsStream<TokioIo<tokio::net::TcpStream>>, Incoming>;

/// The upstream HTTP/1 connection that belongs to one downstream HTTP/1 connection. HTTP/1
/// serves one request at a time, so a downstream connection never needs more than one
/// upstream connection, and needs no pool: no pool lock, no pool map lookup, no idle list. It
/// closes when the downstream connection does. An upstream that closes it first is handled by
/// reconnecting on the next request.
///
/// The connection has no task of its own: it is driven inside the downstream connection's
/// task, by the request's future while it waits for the response head, then by the response
/// body ([`UpstreamBody`]) while that streams to the client. Between requests nothing polls
/// it. A task of its own cost a task wake-up (scheduling, and a poll of hyper's client
/// dispatcher) for each of: the request handed over, the response head, the body wanted, the
/// body data.
pub(super) struct Dedicated {
    pub(super) sender: Sender,
    conn: Pin<Box<Connection>>,
    /// What the connection's polls register to be woken with ([`Gate`]).
    gate: Arc<Gate>,
    gate_waker: Waker,
}

impl Dedicated {
    pub(super) fn new(sender: Sender, conn: Connection) -> Dedicated {
        let gate = Arc::new(Gate::default());
        Dedicated {
            sender,
            conn: Box::pin(conn),
            gate_waker: Waker::from(gate.clone()),
            gate,
        }
    }

    /// Poll the connection on behalf of the task polling `cx`.
    fn poll_conn(&mut self, cx: &mut Context<'_>) -> Poll<hyper::Result<()>> {
        self.gate.follow(cx.waker());
        self.conn
            .as_mut()
            .poll(&mut Context::from_waker(&self.gate_waker))
    }
}

/// The waker a dedicated connection is polled with: it wakes the downstream connection's
/// task, except while shut. It is shut while the response body is polled just before the
/// connection is: that poll tells the connection the body is wanted, which would otherwise
/// wake the task again for nothing (the connection is polled right after anyway, and sees it).
/// Every wake-up saved is a poll of the whole downstream connection.
#[derive(Default)]
struct Gate {
    task: std::sync::Mutex<Option<Waker>>,
    shut: AtomicBool,
}

impl Gate {
    fn follow(&self, waker: &Waker) {
        if let Ok(mut task) = self.task.lock() {
            match &*task {
                Some(w) if w.will_wake(waker) => {}
                _ => *task = Some(waker.clone()),
            }
        }
    }
}

impl std::task::Wake for Gate {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if self.shut.load(Ordering::Acquire) {
            return;
        }
        if let Ok(task) = self.task.lock() {
            if let Some(w) = &*task {
                w.wake_by_ref();
            }
        }
    }
}

/// Where a downstream connection's [`Dedicated`] upstream connection waits between requests.
/// It is only ever put back idle (ready for the next request).
#[derive(Default)]
pub struct UpstreamSlot(std::sync::Mutex<Option<Dedicated>>);

impl UpstreamSlot {
    pub(super) fn take(&self) -> Option<Dedicated> {
        self.0.lock().ok().and_then(|mut s| s.take())
    }

    fn put(&self, upstream: Dedicated) {
        if let Ok(mut s) = self.0.lock() {
            *s = Some(upstream);
        }
    }
}

/// A dedicated connection lent to one response body while it streams.
pub(super) struct Lease {
    pub(super) upstream: Dedicated,
    pub(super) peer: Arc<Peer>,
}

impl Lease {
    /// Back into the slot when idle (the usual case: the body ended, so the response was read
    /// whole and the request written whole). Otherwise the exchange is unfinished (the client
    /// went away mid-body, or the upstream answered before reading the whole request body):
    /// the connection gets a task of its own to finish or fail, is never reused, and the
    /// next request opens a new one.
    fn release(self) {
        if self.upstream.sender.is_ready() {
            self.peer.upstream.put(self.upstream);
        } else if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let conn = self.upstream.conn;
            drop(self.upstream.sender);
            rt.spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!(error = %e, "upstream connection ended with an error");
                }
            });
        }
    }
}

/// The upstream's response body as the client gets it. For an HTTP/1 client it also drives
/// the client's own upstream connection until the body ends, then puts the connection back.
pub struct UpstreamBody {
    body: Incoming,
    lease: Option<Lease>,
}

impl UpstreamBody {
    pub(super) fn new(body: Incoming, lease: Option<Lease>) -> UpstreamBody {
        UpstreamBody { body, lease }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        let Some(lease) = &mut this.lease else {
            return Pin::new(&mut this.body).poll_frame(cx);
        };
        // Only the connection, polled right here, puts frames into `body`: so `body` is
        // polled without a waker (a wake-up from it would only poll this task again for
        // nothing), and the connection's own waits (its socket) wake this task.
        let mut quiet = Context::from_waker(Waker::noop());
        let gate = &lease.upstream.gate;
        gate.shut.store(true, Ordering::Release);
        let frame = Pin::new(&mut this.body).poll_frame(&mut quiet);
        gate.shut.store(false, Ordering::Release);
        if frame.is_ready() {
            return frame;
        }
        // Nothing buffered: let the connection read (the poll above told it the body is
        // wanted), then look again.
        if lease.upstream.poll_conn(cx).is_ready() {
            // Closed or failed: what it delivered (or its error) is in `body`, and `body`
            // now waits on nothing but itself.
            this.lease = None;
            return Pin::new(&mut this.body).poll_frame(cx);
        }
        Pin::new(&mut this.body).poll_frame(&mut quiet)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        if let Some(lease) = self.lease.take() {
            lease.release();
        }
    }
}

/// How an exchange on a dedicated connection ended without a response.
pub(super) enum ExchangeError {
    /// The request was handed back unsent: the upstream had closed the idle connection.
    Unsent(Box<Request<Incoming>>),
    Failed,
}

/// Send `req` on a dedicated connection and drive the connection until the response head
/// arrives. The connection comes back with the response unless it ended meanwhile.
pub(super) async fn exchange(
    upstream: Dedicated,
    req: Request<Incoming>,
) -> Result<(Response<Incoming>, Option<Dedicated>), ExchangeError> {
    let mut upstream = Some(upstream);
    // The gate is shut while the request is queued: the connection, polled next, takes it.
    let Some(response) = upstream.as_mut().map(|u| {
        u.gate.shut.store(true, Ordering::Release);
        let response = u.sender.try_send_request(req);
        u.gate.shut.store(false, Ordering::Release);
        response
    }) else {
        return Err(ExchangeError::Failed);
    };
    let mut response = std::pin::pin!(response);
    // Only the connection, polled right here, settles `response`: so `response` is polled
    // without a waker (its wake-up would only poll this task again for nothing), and the
    // connection's own waits (its socket, the request body) wake this task.
    let r = std::future::poll_fn(|cx| {
        let mut quiet = Context::from_waker(Waker::noop());
        if let Some(u) = &mut upstream {
            if u.poll_conn(cx).is_ready() {
                // Ended (closed or failed). Dropping it settles the request: an error, with
                // the request itself if it was never written.
                upstream = None;
            }
        }
        response.as_mut().poll(&mut quiet)
    })
    .await;
    match r {
        Ok(resp) => Ok((resp, upstream)),
        Err(mut e) => match e.take_message() {
            Some(unsent) => Err(ExchangeError::Unsent(Box::new(unsent))),
            None => {
                tracing::debug!(error = %e.error(), "upstream request failed");
                Err(ExchangeError::Failed)
            }
        },
    }
}

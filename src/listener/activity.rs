//! What a connection's tick watches: its activity (bytes moved, requests in flight and
//! started, a head pending), and from it the header read timeout and the gone-client check.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The header read timeout, checked on the connection's tick. A head is pending when bytes
/// arrived while no request was in flight and no request has started since; for the first
/// request, from the connection's start. Between requests, a silent keep-alive connection has
/// no pending head: `idle_timeout` governs it. HTTP/2 connections are not watched (hyper has
/// no per-stream header timeout either); `idle_timeout` and the keep-alive pings govern them.
/// One edge differs from hyper's own timer: request-body bytes still arriving after the
/// handler has answered (an upstream that responds before reading the whole body) count as a
/// head starting, so such an upload is cut off after `header_read_timeout`.
pub(super) struct HeadWatch {
    /// Requests started as of the last tick.
    started: u32,
    /// When the pending head was first seen (a tick late at most).
    pending_since: Option<Instant>,
}

impl HeadWatch {
    pub(super) fn new(accepted: Instant) -> HeadWatch {
        HeadWatch {
            started: 0,
            pending_since: Some(accepted),
        }
    }

    pub(super) fn overdue(&mut self, activity: &Activity, timeout: Duration) -> bool {
        let started = activity.started.load(Ordering::Acquire);
        if started != self.started {
            self.started = started;
            self.pending_since = None;
        }
        if activity.http2.load(Ordering::Relaxed)
            || activity.in_flight.load(Ordering::Acquire) != 0
            || !activity.head_pending.load(Ordering::Acquire)
        {
            self.pending_since = None;
            return false;
        }
        self.pending_since
            .get_or_insert_with(Instant::now)
            .elapsed()
            >= timeout
    }
}

/// The gone-client check (HTTP/1). hyper no longer reads while a request waits on the
/// upstream (`half_close`), so a client that closes meanwhile is found here: once the same
/// request has been in flight over a whole tick, the tick asks the stream to look at the
/// socket's readiness (`Activity::probe`), and the stream ends the connection if the client has
/// closed or reset it. The request's future is dropped with the connection, which cancels the upstream
/// request, as hyper's own check did, one to two ticks later. Answers that arrive sooner still
/// reach a client that has only shut down its sending side. HTTP/2 reads all along and needs
/// none of this.
#[derive(Default)]
pub(super) struct GoneWatch {
    /// Requests started as of the last tick, if one was in flight then.
    in_flight_at: Option<u32>,
}

impl GoneWatch {
    pub(super) fn check(&mut self, activity: &Activity) {
        let now = (activity.in_flight.load(Ordering::Acquire) != 0
            && !activity.http2.load(Ordering::Relaxed))
        .then(|| activity.started.load(Ordering::Acquire));
        if now.is_some() && now == self.in_flight_at {
            activity.probe.store(true, Ordering::Release);
        }
        self.in_flight_at = now;
    }
}

/// Whether the connection moved a byte since the last idle check, how many requests are being
/// handled and have started, and whether a request head is pending. Flags and counters, not
/// timestamps: reading the clock on every read and write cost more than the rest of this
/// wrapper; the checks run on a tick and keep the time themselves.
pub(super) struct Activity {
    pub(super) moved: AtomicBool,
    pub(super) in_flight: AtomicUsize,
    /// Requests whose head has arrived whole (the service was called).
    pub(super) started: AtomicU32,
    /// Bytes arrived while no request was in flight, and no request started since. True from
    /// the start: the first head is timed from the connection's start.
    pub(super) head_pending: AtomicBool,
    /// The connection speaks HTTP/2 (ALPN, or the h2c preface): no head watch.
    pub(super) http2: AtomicBool,
    /// Set by the tick's `GoneWatch`: the stream checks the socket on its next flush.
    pub(super) probe: AtomicBool,
}

impl Activity {
    pub(super) fn new() -> Activity {
        Activity {
            moved: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            started: AtomicU32::new(0),
            head_pending: AtomicBool::new(true),
            http2: AtomicBool::new(false),
            probe: AtomicBool::new(false),
        }
    }

    pub(super) fn set_http2(&self) {
        self.http2.store(true, Ordering::Relaxed);
    }

    /// Bytes were read. While no request is in flight they can only be (part of) a head.
    pub(super) fn read(&self) {
        self.moved.store(true, Ordering::Relaxed);
        if self.in_flight.load(Ordering::Relaxed) == 0 {
            self.head_pending.store(true, Ordering::Relaxed);
        }
    }

    pub(super) fn touch(&self) {
        self.moved.store(true, Ordering::Relaxed);
    }

    /// How long the connection has been quiet, as seen from the idle check's ticks
    /// (`quiet_since` is the check's own record; precision: one tick).
    pub(super) fn idle_for(&self, quiet_since: &mut Instant) -> Duration {
        if self.moved.swap(false, Ordering::Relaxed) {
            *quiet_since = Instant::now();
        }
        quiet_since.elapsed()
    }
}

pub(super) struct InFlight(Arc<Activity>);

impl InFlight {
    pub(super) fn enter(a: Arc<Activity>) -> InFlight {
        a.in_flight.fetch_add(1, Ordering::AcqRel);
        a.head_pending.store(false, Ordering::Relaxed);
        a.started.fetch_add(1, Ordering::Release);
        InFlight(a)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.0.touch();
    }
}

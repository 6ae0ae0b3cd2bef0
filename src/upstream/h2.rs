//! The HTTP/2 upstream connection of a worker thread (SPEC section 14: `upstream.protocol =
//! "http2"`, or `"auto"` when an `https` upstream chooses `h2` by ALPN): one multiplexed
//! connection, opened on first use and again after it closes, carrying every request of that
//! worker (HTTP/1 and HTTP/2 clients alike). gRPC needs it: trailers, streams both ways.

use std::sync::Mutex;

use super::dial::H2Sender;

#[derive(Default)]
pub(super) struct H2Conn {
    current: Mutex<Option<H2Sender>>,
    /// Held while a connection is being opened, so that concurrent requests wait for it
    /// instead of each opening one.
    connecting: tokio::sync::Mutex<()>,
}

impl H2Conn {
    /// The open connection, if any (a clone of its sender: a reference count).
    pub(super) fn current(&self) -> Option<H2Sender> {
        let mut c = self.current.lock().unwrap_or_else(|e| e.into_inner());
        match &*c {
            Some(s) if !s.is_closed() => Some(s.clone()),
            Some(_) => {
                *c = None;
                None
            }
            None => None,
        }
    }

    pub(super) fn set(&self, sender: Option<H2Sender>) {
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = sender;
    }

    /// The right to open the connection; whoever waited for it checks [`Self::current`] again.
    pub(super) async fn connecting(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.connecting.lock().await
    }
}

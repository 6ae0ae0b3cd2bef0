//! HTTP/2 to the upstream (SPEC section 14: `upstream.protocol = "http2"`, or `"auto"` when an
//! `https` upstream chooses `h2` by ALPN): one multiplexed connection per worker thread,
//! opened on first use and again after it closes, carrying every request of that worker
//! (HTTP/1 and HTTP/2 clients alike). gRPC needs it: trailers, streams both ways.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};

use super::{Upstream, UpstreamError};
use crate::request_body::RequestBody;

pub(super) type H2Sender = http2::SendRequest<RequestBody>;

/// A new upstream connection, in the protocol it speaks.
pub(super) enum Connected {
    H1(http1::SendRequest<RequestBody>),
    H2(H2Sender),
}

/// A worker's HTTP/2 upstream connection.
#[derive(Default)]
pub(super) struct H2Conn {
    current: Mutex<Option<H2Sender>>,
    /// Held while a connection is being opened, so that concurrent requests wait for it
    /// instead of each opening one.
    connecting: tokio::sync::Mutex<()>,
    /// `auto` with an `https` upstream: its last new connection chose `h2` by ALPN.
    chosen: AtomicBool,
}

impl H2Conn {
    /// The open connection, if any.
    fn current(&self) -> Option<H2Sender> {
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

    fn set(&self, sender: Option<H2Sender>) {
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = sender;
    }

    /// Did the upstream choose HTTP/2 on the last connection (`auto`)?
    pub(super) fn chosen(&self) -> bool {
        self.chosen.load(Ordering::Relaxed)
    }

    pub(super) fn choose(&self, h2: bool) {
        self.chosen.store(h2, Ordering::Relaxed);
    }
}

impl Upstream {
    /// Send a request (in HTTP/2 form) over the worker's HTTP/2 connection, opening one if
    /// there is none. A request the connection handed back unsent (it was closing) is sent
    /// once more on a new one. Should a new connection (`auto`) come back HTTP/1.1, the
    /// request goes over it in HTTP/1.1 form.
    pub(super) async fn send_h2(
        &self,
        mut req: Request<RequestBody>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let mut fresh = false;
        loop {
            let mut sender = match self.h2.current() {
                Some(s) => s,
                None => {
                    fresh = true;
                    match self.open_h2().await? {
                        Connected::H2(s) => s,
                        Connected::H1(s) => return send_h1_once(s, self.to_h1(req)).await,
                    }
                }
            };
            match sender.try_send_request(req).await {
                Ok(resp) => return Ok(resp),
                Err(mut e) => match e.take_message() {
                    Some(unsent) if !fresh => {
                        tracing::debug!(error = %e.error(), "upstream HTTP/2 connection closing; reconnecting");
                        self.h2.set(None);
                        req = unsent;
                    }
                    _ => {
                        tracing::debug!(error = %e.error(), "upstream request failed");
                        return Err(UpstreamError::Failed);
                    }
                },
            }
        }
    }

    /// Send over an HTTP/2 connection that was just opened by a request that expected
    /// HTTP/1.1 (`auto`: the upstream chose `h2`); it becomes the worker's HTTP/2 connection.
    pub(super) async fn send_on_new_h2(
        &self,
        sender: H2Sender,
        req: Request<RequestBody>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        self.h2.set(Some(sender.clone()));
        let mut sender = sender;
        sender.send_request(self.to_h2(req)).await.map_err(|e| {
            tracing::debug!(error = %e, "upstream request failed");
            UpstreamError::Failed
        })
    }

    /// Open the worker's HTTP/2 connection, or wait for the request already opening it.
    async fn open_h2(&self) -> Result<Connected, UpstreamError> {
        let _turn = self.h2.connecting.lock().await;
        if let Some(s) = self.h2.current() {
            return Ok(Connected::H2(s));
        }
        let c = self.connect().await?;
        if let Connected::H2(s) = &c {
            self.h2.set(Some(s.clone()));
        }
        Ok(c)
    }
}

async fn send_h1_once(
    mut sender: http1::SendRequest<RequestBody>,
    req: Request<RequestBody>,
) -> Result<Response<Incoming>, UpstreamError> {
    sender.ready().await.map_err(|_| UpstreamError::Failed)?;
    sender.send_request(req).await.map_err(|e| {
        tracing::debug!(error = %e, "upstream request failed");
        UpstreamError::Failed
    })
}

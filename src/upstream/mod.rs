//! The upstream client: an authenticated request rewritten for the upstream (SPEC section 6)
//! and sent, its response head handed back. Bodies stream both ways untouched (the client's
//! watched on the way: `request_body`).
//!
//! HTTP/1 clients send one request at a time, so each downstream HTTP/1 connection gets an
//! upstream connection of its own ([`UpstreamSlot`]): no pool lock, no pool lookup. HTTP/2
//! clients multiplex and go through the worker's own pool, bounded by
//! `upstream.max_connections` (`pool.rs`). Over HTTP/2 (`upstream.protocol`, SPEC section
//! 14) every request of a worker shares one multiplexed connection instead (`h2.rs`). Protocol
//! upgrades get a connection of their own and become a tunnel (`upgrade.rs`). New connections
//! come from `dial.rs`; the request as the upstream sees it from `rewrite.rs`. Settings are
//! built once from the config ([`UpstreamSettings`]); each worker thread makes its client from
//! them.

use std::future::{ready, Future};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use futures_util::future::{Either, FutureExt};
use http::header::{HeaderName, HeaderValue};
use http::uri::{Authority, Scheme};
use http::{Request, Response, Version};
use hyper::body::Incoming;

use crate::cold::out_of_line;
use crate::config::{IdentityMode, UpstreamConfig, UpstreamProtocol};
use crate::identity::{TokenHeaderNames, TokenHeaderValues};
use crate::request_body::RequestBody;
use crate::tls;

mod deadline;
mod dial;
mod error;
mod h2;
mod headers;
mod pool;
mod rewrite;
mod upgrade;

pub use deadline::{DeadlineWatch, UpstreamDeadline};
use dial::{Connected, Dialer, H1Sender as Sender, H2Sender};
pub use error::UpstreamError;
use h2::H2Conn;
pub use headers::{is_grpc, strip_hop_by_hop};
use pool::Pool;
pub use pool::UpstreamBody;
use rewrite::{Hop, Rewrite};

/// The upstream's response head as the client gets it (hop-by-hop headers gone), or why there
/// is none (`None`: the upstream timeout passed).
fn response_head<B>(
    sent: Option<Result<Response<B>, UpstreamError>>,
) -> Result<Response<B>, UpstreamError> {
    let mut resp = sent.ok_or(UpstreamError::Timeout)??;
    strip_hop_by_hop(resp.headers_mut());
    Ok(resp)
}

/// The upstream HTTP/1 connection that belongs to one downstream HTTP/1 connection, idle
/// between requests. HTTP/1 serves one request at a time, so a downstream connection never
/// needs more than one upstream connection, and needs no pool: no pool lock, no pool map
/// lookup, no idle list. It closes when the downstream connection does. An upstream that closes
/// it first is handled by reconnecting on the next request.
#[derive(Default)]
pub struct UpstreamSlot(std::sync::Mutex<Option<Sender>>);

impl UpstreamSlot {
    fn take(&self) -> Option<Sender> {
        self.0.lock().ok().and_then(|mut s| s.take())
    }

    fn put(&self, sender: Sender) {
        if let Ok(mut s) = self.0.lock() {
            *s = Some(sender);
        }
    }
}

/// What the upstream side needs of one downstream connection: the client's address for
/// `X-Forwarded-*`, and for HTTP/1 its own upstream connection and upstream timeout.
pub struct Downstream {
    /// The client's IP, as a header value built once per connection.
    pub ip: HeaderValue,
    pub tls: bool,
    /// The peer is in `server.trusted_proxies`: its forwarding headers are kept and appended
    /// to (else the normalize stage removed them).
    pub trusted: bool,
    pub slot: UpstreamSlot,
    pub deadline: UpstreamDeadline,
}

impl Downstream {
    pub fn new(ip: HeaderValue, tls: bool, trusted: bool) -> Downstream {
        Downstream {
            ip,
            tls,
            trusted,
            slot: Default::default(),
            deadline: Default::default(),
        }
    }
}

/// Everything `[upstream]` decides, checked and built once: the TLS client configuration, the
/// URL's parts, the identity mode.
#[derive(Clone)]
pub struct UpstreamSettings {
    tls: rustls::ClientConfig,
    connect_timeout: Duration,
    scheme: Scheme,
    authority: Authority,
    /// The upstream URL's path without trailing slash ("" when none).
    base_path: String,
    host: HeaderValue,
    mode: IdentityMode,
    forward_token: bool,
    timeout: Duration,
    max_connections: usize,
    protocol: UpstreamProtocol,
    proxy_token: Arc<ArcSwapOption<HeaderValue>>,
}

impl UpstreamSettings {
    /// `proxy_token`: the proxy's own bearer for impersonate mode, kept fresh elsewhere.
    pub fn new(
        cfg: &UpstreamConfig,
        proxy_token: Arc<ArcSwapOption<HeaderValue>>,
    ) -> Result<UpstreamSettings, tls::TlsError> {
        let client_cert = cfg
            .client_cert
            .as_ref()
            .map(|(c, k)| (c.as_path(), k.as_path()));
        let tls = tls::client_config(cfg.ca_file.as_deref(), client_cert)?;
        let scheme = cfg.url.scheme().cloned().unwrap_or(Scheme::HTTP);
        let authority = cfg
            .url
            .authority()
            .cloned()
            .ok_or_else(|| tls::TlsError::Config("upstream.url has no host".into()))?;
        let host = HeaderValue::from_str(authority.as_str())
            .map_err(|_| tls::TlsError::Config("upstream.url host is not a valid Host".into()))?;
        Ok(UpstreamSettings {
            tls,
            connect_timeout: cfg.connect_timeout,
            scheme,
            authority,
            base_path: cfg.url.path().trim_end_matches('/').to_string(),
            host,
            mode: cfg.identity_headers,
            forward_token: cfg.forward_token,
            timeout: cfg.timeout,
            max_connections: cfg.max_connections,
            protocol: cfg.protocol,
            proxy_token,
        })
    }

    /// How long a request may wait for the upstream's response head.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}

/// The upstream of one worker thread. Requests from HTTP/1 clients go over their downstream
/// connection's own upstream connection ([`UpstreamSlot`]); requests from HTTP/2 clients, which
/// multiplex, go through this worker's own bounded connection pool (no cross-thread locking).
pub struct Upstream {
    dialer: Dialer,
    rewrite: Rewrite,
    pool: Arc<Pool>,
    timeout: Duration,
    /// The HTTP/2 connection (`protocol = "http2"`, or `auto` and ALPN chose `h2`).
    h2: H2Conn,
}

impl Upstream {
    /// One worker thread's client (its connection tasks run on the runtime that sends).
    pub fn new(s: &UpstreamSettings) -> Upstream {
        Upstream {
            dialer: Dialer::new(
                &s.tls,
                s.connect_timeout,
                s.protocol,
                s.scheme.clone(),
                s.authority.clone(),
            ),
            rewrite: Rewrite {
                scheme: s.scheme.clone(),
                authority: s.authority.clone(),
                base_path: s.base_path.clone(),
                host: s.host.clone(),
                mode: s.mode,
                forward_token: s.forward_token,
                proxy_token: s.proxy_token.clone(),
                token_header_names: TokenHeaderNames::new(s.mode),
                grpc_token_header_names: TokenHeaderNames::grpc(s.mode),
            },
            pool: Pool::new(s.max_connections),
            timeout: s.timeout,
            h2: H2Conn::default(),
        }
    }

    /// How long a request may wait for the upstream's response head.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The upstream's `host[:port]`, for logs.
    pub fn authority(&self) -> &Authority {
        &self.rewrite.authority
    }

    /// Rewrite an authenticated request for the upstream and send it. The caller has already
    /// stripped spoofable identity headers.
    ///
    /// The request is rewritten, and on an HTTP/1 client's idle upstream connection (the
    /// common case) handed over, before the returned future is first polled. That future is
    /// then only the wait for the response, a few combinators deep, not nested `async fn`s:
    /// each of those keeps its own copy of what it was called with, and the request's future
    /// lives in the connection's memory, which a keep-alive client comes back to only after
    /// the other connections' requests have run (cold in the cache). The rarer paths (a new
    /// upstream connection, an HTTP/2 client's pooled request, a rewrite error) are boxed.
    pub fn forward<'a>(
        &'a self,
        req: Request<RequestBody>,
        identity_headers: &[(HeaderName, HeaderValue)],
        token_headers: TokenHeaderValues,
        conn: &'a Downstream,
    ) -> impl Future<Output = Result<Response<UpstreamBody>, UpstreamError>> + Send + 'a {
        // HTTP/1 clients send one request at a time: they get their own upstream connection.
        let dedicated = req.version() <= Version::HTTP_11;
        let upgrade = upgrade::wanted(&req);
        // Upgrades exist only in HTTP/1.1.
        let h2 = upgrade.is_none() && self.dialer.speaks_h2();
        let hop = Hop {
            ip: &conn.ip,
            tls: conn.tls,
            trusted: conn.trusted,
        };
        let rewritten = self
            .rewrite
            .rewrite(req, identity_headers, token_headers, hop, h2);
        let req = match rewritten {
            Ok(req) => req,
            Err(e) => return Either::Right(out_of_line(ready(Err(e)))),
        };
        if let Some(protocol) = upgrade {
            let exchange = upgrade::exchange(&self.dialer, self.timeout, req, protocol);
            return Either::Right(out_of_line(exchange));
        }
        if h2 {
            return Either::Right(out_of_line(async move {
                let sending = self.send_h2(req);
                let sent = if dedicated {
                    conn.deadline.within(sending).await
                } else {
                    tokio::time::timeout(self.timeout, sending).await.ok()
                };
                response_head(sent).map(|r| r.map(UpstreamBody::new))
            }));
        }
        if !dedicated {
            // The wait for a free pooled connection counts towards the upstream timeout.
            return Either::Right(out_of_line(async move {
                let sent = tokio::time::timeout(self.timeout, self.send_pooled(req)).await;
                response_head(sent.ok())
            }));
        }
        let slot = &conn.slot;
        match slot.take() {
            Some(mut sender) if sender.is_ready() => {
                // hyper queues the request now; the future only waits for the response.
                let response = sender.try_send_request(req);
                slot.put(sender);
                let response = response.then(move |r| match r {
                    Ok(resp) => Either::Left(ready(Ok(resp))),
                    // Handed back unsent: the upstream closed this idle connection just now.
                    Err(mut e) => match e.take_message() {
                        Some(unsent) => Either::Right(out_of_line(self.send_fresh(unsent, slot))),
                        None => {
                            tracing::debug!(error = %e.error(), "upstream request failed");
                            Either::Left(ready(Err(UpstreamError::Failed)))
                        }
                    },
                });
                Either::Left(
                    conn.deadline
                        .within(response)
                        .map(|sent| response_head(sent).map(|r| r.map(UpstreamBody::new))),
                )
            }
            // No connection yet, or one still busy after a timed-out request, or closed by
            // the upstream: dropping it closes it, and a new one is opened.
            _ => Either::Right(out_of_line(async move {
                let sent = conn.deadline.within(self.send_fresh(req, slot)).await;
                response_head(sent).map(|r| r.map(UpstreamBody::new))
            })),
        }
    }

    /// Send an HTTP/2 client's request over a connection of the worker's pool, waiting for one
    /// while `upstream.max_connections` are busy. The response body holds the connection until
    /// it ends.
    async fn send_pooled(
        &self,
        mut req: Request<RequestBody>,
    ) -> Result<Response<UpstreamBody>, UpstreamError> {
        let lease = self.pool.lease().await;
        loop {
            let (mut sender, reused) = match lease.idle_connection().await {
                Some(s) => (s, true),
                None => match self.ready_connection().await? {
                    Connected::H1(s) => (s, false),
                    Connected::H2(s) => {
                        drop(lease);
                        let resp = self.send_on_new_h2(s, req).await?;
                        return Ok(resp.map(UpstreamBody::new));
                    }
                },
            };
            match sender.try_send_request(req).await {
                Ok(resp) => return Ok(resp.map(|body| lease.body(body, sender))),
                Err(mut e) => match e.take_message() {
                    // Handed back unsent: the upstream closed this idle connection just now.
                    Some(unsent) if reused => req = unsent,
                    _ => {
                        tracing::debug!(error = %e.error(), "upstream request failed");
                        return Err(UpstreamError::Failed);
                    }
                },
            }
        }
    }

    /// Open a new upstream connection for this downstream connection and send on it.
    async fn send_fresh(
        &self,
        req: Request<RequestBody>,
        slot: &UpstreamSlot,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let mut sender = match self.ready_connection().await? {
            Connected::H1(s) => s,
            Connected::H2(s) => return self.send_on_new_h2(s, req).await,
        };
        let response = sender.try_send_request(req);
        slot.put(sender);
        response.await.map_err(|e| {
            tracing::debug!(error = %e.error(), "upstream request failed");
            UpstreamError::Failed
        })
    }

    /// A new upstream connection, ready for a request.
    async fn ready_connection(&self) -> Result<Connected, UpstreamError> {
        let mut c = self.dialer.connect().await?;
        if let Connected::H1(sender) = &mut c {
            sender.ready().await.map_err(|e| {
                tracing::debug!(error = %e, "upstream connection closed before the request");
                UpstreamError::Failed
            })?;
        }
        Ok(c)
    }

    /// Send a request (in HTTP/2 form) over the worker's HTTP/2 connection, opening one if
    /// there is none. A request the connection handed back unsent (it was closing) is sent
    /// once more on a new one. Should a new connection (`auto`) come back HTTP/1.1, the
    /// request goes over it in HTTP/1.1 form.
    async fn send_h2(
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
                        Connected::H1(mut s) => {
                            s.ready().await.map_err(|_| UpstreamError::Failed)?;
                            let sent = s.send_request(self.rewrite.to_h1(req)).await;
                            return sent.map_err(|e| {
                                tracing::debug!(error = %e, "upstream request failed");
                                UpstreamError::Failed
                            });
                        }
                    }
                }
            };
            match sender.try_send_request(req).await {
                Ok(resp) => return Ok(resp),
                Err(mut e) => match e.take_message() {
                    Some(unsent) if !fresh => {
                        tracing::debug!(error = %e.error(), "upstream HTTP/2 connection closing");
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

    /// Open the worker's HTTP/2 connection, or wait for the request already opening it.
    async fn open_h2(&self) -> Result<Connected, UpstreamError> {
        let _turn = self.h2.connecting().await;
        if let Some(s) = self.h2.current() {
            return Ok(Connected::H2(s));
        }
        let c = self.dialer.connect().await?;
        if let Connected::H2(s) = &c {
            self.h2.set(Some(s.clone()));
        }
        Ok(c)
    }

    /// Send over an HTTP/2 connection just opened for a request in HTTP/1.1 form (`auto`:
    /// the upstream chose `h2` by ALPN); it becomes the worker's HTTP/2 connection.
    async fn send_on_new_h2(
        &self,
        mut sender: H2Sender,
        req: Request<RequestBody>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        self.h2.set(Some(sender.clone()));
        sender
            .send_request(self.rewrite.to_h2(req))
            .await
            .map_err(|e| {
                tracing::debug!(error = %e, "upstream request failed");
                UpstreamError::Failed
            })
    }
}

//! New upstream connections: TCP (and TLS) with the ALPN that `upstream.protocol` calls for,
//! then the HTTP/1.1 or HTTP/2 handshake, the connection's task spawned on the worker's
//! runtime.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use http::uri::{Authority, PathAndQuery, Scheme};
use http::Uri;
use hyper::client::conn::{http1, http2};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::{Connection, HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tower_service::Service;

use super::error::UpstreamError;
use crate::config::UpstreamProtocol;
use crate::request_body::RequestBody;

type Connector = HttpsConnector<HttpConnector>;
pub(super) type H1Sender = http1::SendRequest<RequestBody>;
pub(super) type H2Sender = http2::SendRequest<RequestBody>;
pub(super) type Io = <Connector as Service<Uri>>::Response;

/// A new upstream connection, in the protocol it speaks.
pub(super) enum Connected {
    H1(H1Sender),
    H2(H2Sender),
}

/// Opens connections to one upstream.
pub(super) struct Dialer {
    connector: Connector,
    /// HTTP/1.1 only (ALPN included): for upgrades, which only HTTP/1.1 has.
    http1_connector: Connector,
    protocol: UpstreamProtocol,
    /// `auto` with an `https` upstream: HTTP/2 if its ALPN says so.
    alpn: bool,
    /// With `alpn`: the last new connection chose `h2`.
    chosen_h2: AtomicBool,
    /// `scheme://authority/`, what the connector is called with.
    target: Uri,
}

impl Dialer {
    pub(super) fn new(
        tls: &rustls::ClientConfig,
        connect_timeout: Duration,
        protocol: UpstreamProtocol,
        scheme: Scheme,
        authority: Authority,
    ) -> Dialer {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(connect_timeout));
        let builder = || {
            hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(tls.clone())
                .https_or_http()
        };
        let alpn = protocol == UpstreamProtocol::Auto && scheme == Scheme::HTTPS;
        let http1_connector = builder().enable_http1().wrap_connector(http.clone());
        let connector = match protocol {
            UpstreamProtocol::Http2 => builder().enable_http2().wrap_connector(http),
            UpstreamProtocol::Auto if alpn => {
                builder().enable_http1().enable_http2().wrap_connector(http)
            }
            _ => http1_connector.clone(),
        };
        let mut target = http::uri::Parts::default();
        target.scheme = Some(scheme);
        target.authority = Some(authority);
        target.path_and_query = Some(PathAndQuery::from_static("/"));
        Dialer {
            connector,
            http1_connector,
            protocol,
            alpn,
            chosen_h2: AtomicBool::new(false),
            // Scheme, authority and "/" always make a URI (the authority was checked).
            target: Uri::from_parts(target).unwrap_or_default(),
        }
    }

    /// Do requests go over HTTP/2: `protocol = "http2"`, or `auto` and the upstream chose it?
    #[inline]
    pub(super) fn speaks_h2(&self) -> bool {
        self.protocol == UpstreamProtocol::Http2
            || (self.alpn && self.chosen_h2.load(Ordering::Relaxed))
    }

    /// A new TCP (and TLS) connection; `http1_only` offers only `http/1.1` by ALPN.
    pub(super) async fn io(&self, http1_only: bool) -> Result<Io, UpstreamError> {
        let mut connector = if http1_only {
            self.http1_connector.clone()
        } else {
            self.connector.clone()
        };
        async {
            std::future::poll_fn(|cx| connector.poll_ready(cx)).await?;
            connector.call(self.target.clone()).await
        }
        .await
        .map_err(|e| {
            tracing::debug!(error = %e, "upstream connect failed");
            UpstreamError::Unreachable
        })
    }

    /// A new upstream connection: HTTP/2 for `protocol = "http2"` or when ALPN chose `h2`,
    /// else HTTP/1.1.
    pub(super) async fn connect(&self) -> Result<Connected, UpstreamError> {
        let io = self.io(false).await?;
        let h2 = match self.protocol {
            UpstreamProtocol::Http2 => true,
            UpstreamProtocol::Http1 => false,
            UpstreamProtocol::Auto => {
                let chose = self.alpn && io.connected().is_negotiated_h2();
                if self.alpn {
                    self.chosen_h2.store(chose, Ordering::Relaxed);
                }
                chose
            }
        };
        if h2 {
            let (sender, conn) = http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .keep_alive_interval(Duration::from_secs(30))
                .keep_alive_timeout(Duration::from_secs(20))
                .handshake(io)
                .await
                .map_err(|e| {
                    tracing::debug!(error = %e, "upstream HTTP/2 handshake failed");
                    UpstreamError::Failed
                })?;
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!(error = %e, "upstream HTTP/2 connection ended with an error");
                }
            });
            return Ok(Connected::H2(sender));
        }
        let (sender, conn) = http1::handshake(io).await.map_err(|e| {
            tracing::debug!(error = %e, "upstream handshake failed");
            UpstreamError::Failed
        })?;
        // Runs on this worker's runtime, like the request; ends when the sender is dropped
        // (the downstream connection closed, or a newer connection replaced it) or the
        // upstream closes.
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "upstream connection ended with an error");
            }
        });
        Ok(Connected::H1(sender))
    }
}

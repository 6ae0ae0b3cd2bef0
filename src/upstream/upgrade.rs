//! Protocol upgrades (SPEC section 14): an HTTP/1.1 request with `Connection: upgrade`
//! (WebSocket; SPDY/3.1 as `kubectl exec`, `attach` and `port-forward` use) is forwarded,
//! already authenticated and authorized and rewritten like any other (impersonate mode's
//! headers and token included), over a new upstream HTTP/1.1 connection of its own. When the
//! upstream switches protocols (101), both connections are handed over and their bytes copied
//! both ways until either side closes; any other answer goes back as a normal response.
//!
//! hyper's `upgrade::on` on both sides and `tokio::io::copy_bidirectional`, as hyper's
//! `examples/upgrades.rs` shows.

use http::header::{HeaderValue, CONNECTION, UPGRADE};
use http::{Request, Response, StatusCode};
use hyper::client::conn::http1;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use super::{strip_hop_by_hop, Upstream, UpstreamBody, UpstreamError};
use crate::request_body::RequestBody;

/// The `Upgrade` value of a request that asks for an upgrade: hyper saw an `Upgrade` header on
/// an HTTP/1.1 request (and left its hand-over in the extensions: the cheap test, done first)
/// and `Connection` lists `upgrade`.
pub(super) fn wanted<B>(req: &Request<B>) -> Option<HeaderValue> {
    req.extensions().get::<OnUpgrade>()?;
    if req.method() == http::Method::CONNECT {
        return None;
    }
    let asks = req.headers().get_all(CONNECTION).iter().any(|v| {
        v.as_bytes()
            .split(|&c| c == b',')
            .any(|o| o.trim_ascii().eq_ignore_ascii_case(b"upgrade"))
    });
    asks.then(|| req.headers().get(UPGRADE).cloned()).flatten()
}

impl Upstream {
    /// Send an upgrade request (`req` already rewritten, `protocol` its `Upgrade` value) and,
    /// on a 101, tunnel the two connections.
    pub(super) async fn upgrade(
        &self,
        mut req: Request<RequestBody>,
        protocol: HeaderValue,
    ) -> Result<Response<UpstreamBody>, UpstreamError> {
        let client_side = hyper::upgrade::on(&mut req);
        let headers = req.headers_mut();
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(UPGRADE, protocol);
        let sent = tokio::time::timeout(self.timeout, async {
            let io = self.connect_io(&self.http1_connector).await?;
            let (mut sender, conn) = http1::handshake(io).await.map_err(|e| {
                tracing::debug!(error = %e, "upstream handshake failed");
                UpstreamError::Failed
            })?;
            tokio::spawn(async move {
                if let Err(e) = conn.with_upgrades().await {
                    tracing::debug!(error = %e, "upstream upgrade connection ended with an error");
                }
            });
            sender.send_request(req).await.map_err(|e| {
                tracing::debug!(error = %e, "upstream upgrade request failed");
                UpstreamError::Failed
            })
        })
        .await;
        let mut resp = sent.map_err(|_| UpstreamError::Timeout)??;
        if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
            strip_hop_by_hop(resp.headers_mut());
            return Ok(resp.map(UpstreamBody::new));
        }
        let upstream_side = hyper::upgrade::on(&mut resp);
        let agreed = resp.headers().get(UPGRADE).cloned();
        let headers = resp.headers_mut();
        strip_hop_by_hop(headers);
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
        if let Some(p) = agreed {
            headers.insert(UPGRADE, p);
        }
        tokio::spawn(tunnel(client_side, upstream_side));
        Ok(resp.map(UpstreamBody::new))
    }
}

/// Copy bytes both ways once both connections are handed over (the client's after hyper has
/// sent it the 101), until either side closes.
async fn tunnel(client: OnUpgrade, upstream: OnUpgrade) {
    let (client, upstream) = match tokio::try_join!(client, upstream) {
        Ok(both) => both,
        Err(e) => {
            tracing::debug!(error = %e, "upgrade not completed");
            return;
        }
    };
    let (mut client, mut upstream) = (TokioIo::new(client), TokioIo::new(upstream));
    match tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
        Ok((up, down)) => tracing::debug!(up, down, "upgraded connection closed"),
        Err(e) => tracing::debug!(error = %e, "upgraded connection ended with an error"),
    }
}

//! Protocol upgrades (SPEC section 14): an HTTP/1.1 request with `Connection: upgrade`
//! (WebSocket; SPDY/3.1 as `kubectl exec`, `attach` and `port-forward` use) is forwarded,
//! already authenticated and authorized and rewritten like any other (impersonate mode's
//! headers and token included), over a new upstream HTTP/1.1 connection of its own. When the
//! upstream switches protocols (101), both connections are handed over and their bytes copied
//! both ways until either side closes; any other answer goes back as a normal response.
//!
//! hyper's `upgrade::on` on both sides and `tokio::io::copy_bidirectional`, as hyper's
//! `examples/upgrades.rs` shows.

use std::time::Duration;

use http::header::{HeaderValue, CONNECTION, UPGRADE};
use http::{Request, Response, StatusCode};
use hyper::client::conn::http1;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use super::dial::Dialer;
use super::error::UpstreamError;
use super::headers::strip_hop_by_hop;
use super::pool::UpstreamBody;
use crate::request_body::RequestBody;

/// The `Upgrade` value of a request that asks for an upgrade: hyper saw an `Upgrade` header on
/// an HTTP/1.1 request (and left its hand-over in the extensions: the cheap test, done first)
/// and `Connection` lists `upgrade`.
///
/// An upgrade to HTTP itself (`h2c`, `HTTP/2.0`) is never forwarded: the tunnel would carry
/// the client's next requests to the upstream unauthenticated. Such a request goes on as a
/// plain one, its `Upgrade` header dropped with the other hop-by-hop headers.
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
    if !asks || req.headers().get_all(UPGRADE).iter().count() != 1 {
        return None;
    }
    let protocol = req.headers().get(UPGRADE)?;
    let to_http = protocol.as_bytes().split(|&c| c == b',').any(|p| {
        let p = p.trim_ascii();
        p.is_empty()
            || p.get(..3).is_some_and(|h| h.eq_ignore_ascii_case(b"h2c"))
            || p.get(..5).is_some_and(|h| h.eq_ignore_ascii_case(b"http/"))
    });
    (!to_http).then(|| protocol.clone())
}

/// Send an upgrade request (`req` already rewritten in HTTP/1.1 form, `protocol` its
/// `Upgrade` value) over a new connection within `timeout` and, on a 101, tunnel the two
/// connections.
pub(super) async fn exchange(
    dialer: &Dialer,
    timeout: Duration,
    mut req: Request<RequestBody>,
    protocol: HeaderValue,
) -> Result<Response<UpstreamBody>, UpstreamError> {
    let client_side = hyper::upgrade::on(&mut req);
    let headers = req.headers_mut();
    headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(UPGRADE, protocol);
    let sent = tokio::time::timeout(timeout, async {
        let io = dialer.io(true).await?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn request(connection: &str, upgrade: &[&str]) -> Request<()> {
        let mut b = Request::get("/").header(CONNECTION, connection);
        for u in upgrade {
            b = b.header(UPGRADE, *u);
        }
        let mut req = b.body(()).unwrap();
        // hyper's HTTP/1 server leaves an `OnUpgrade` on a request with an `Upgrade` header;
        // any `OnUpgrade` stands for it here (this one, from a bare response, never resolves).
        let on = hyper::upgrade::on(http::Response::new(()));
        req.extensions_mut().insert(on);
        req
    }

    #[test]
    fn only_real_upgrades_to_other_protocols_are_wanted() {
        let v =
            |c: &str, u: &[&str]| wanted(&request(c, u)).map(|v| v.to_str().unwrap().to_string());
        assert_eq!(v("Upgrade", &["websocket"]).as_deref(), Some("websocket"));
        assert_eq!(
            v("keep-alive, UPGRADE", &["SPDY/3.1"]).as_deref(),
            Some("SPDY/3.1")
        );
        // Not listed in Connection: no upgrade.
        assert_eq!(v("keep-alive", &["websocket"]), None);
        // To HTTP itself: never tunneled.
        for u in ["h2c", "H2C", "HTTP/2.0", "websocket, h2c", "http/1.1", ""] {
            assert_eq!(v("Upgrade, HTTP2-Settings", &[u]), None, "{u}");
        }
        assert_eq!(
            v("Upgrade", &["websocket", "h2c"]),
            None,
            "two Upgrade headers"
        );
        // No hand-over from hyper (an HTTP/2 request): no upgrade.
        let plain = Request::get("/")
            .header(CONNECTION, "upgrade")
            .header(UPGRADE, "websocket")
            .body(())
            .unwrap();
        assert_eq!(wanted(&plain), None);
    }
}

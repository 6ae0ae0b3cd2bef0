//! Forwarding (SPEC section 6): header hygiene and the upstream call. Bodies stream both ways
//! untouched: the downstream `Incoming` body is handed to the upstream client, and the
//! upstream's `Incoming` body is handed back.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use http::header::{self, HeaderName, HeaderValue, AUTHORIZATION, CONNECTION, HOST};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderMap, Request, Response, Uri, Version};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::config::{IdentityMode, UpstreamConfig};
use crate::tls;

/// Is this a header a client could use to claim an identity? Matches `X-Remote-User`,
/// `X-Remote-Uid`, `X-Remote-Group`, `X-Remote-Extra-*`, `Impersonate-User`,
/// `Impersonate-Uid`, `Impersonate-Group`, `Impersonate-Extra-*`, in any case and with `-`,
/// `_` or `.` as separators. `name` is lowercase (as `http` stores it).
pub fn is_spoofable(name: &str) -> bool {
    let b = name.as_bytes();
    // Fast exit for the common case: neither prefix can match.
    match b.first() {
        Some(b'x') | Some(b'i') => {}
        _ => return false,
    }
    const EXACT: [&[u8]; 6] = [
        b"x-remote-user",
        b"x-remote-uid",
        b"x-remote-group",
        b"impersonate-user",
        b"impersonate-uid",
        b"impersonate-group",
    ];
    const PREFIX: [&[u8]; 2] = [b"x-remote-extra-", b"impersonate-extra-"];
    let eq = |x: u8, pattern: u8| {
        if pattern == b'-' {
            matches!(x, b'-' | b'_' | b'.')
        } else {
            x == pattern
        }
    };
    let matches_prefix = |p: &[u8]| b.len() >= p.len() && b.iter().zip(p).all(|(&x, &y)| eq(x, y));
    EXACT
        .iter()
        .any(|p| b.len() == p.len() && matches_prefix(p))
        || PREFIX.iter().any(|p| matches_prefix(p))
}

/// Remove every spoofable identity header. Runs before anything else, whatever the mode.
pub fn strip_spoofable(headers: &mut HeaderMap) {
    // Rare in practice: scan first, allocate only when there is something to remove.
    if !headers.keys().any(|k| is_spoofable(k.as_str())) {
        return;
    }
    let doomed: Vec<HeaderName> = headers
        .keys()
        .filter(|k| is_spoofable(k.as_str()))
        .cloned()
        .collect();
    for name in doomed {
        headers.remove(&name);
    }
}

const HOP_BY_HOP: [HeaderName; 8] = [
    CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

/// Remove hop-by-hop headers (RFC 9110 7.6.1), including those the `Connection` header names.
/// `Upgrade` is removed too: protocol upgrades (WebSocket) are not proxied.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Most requests and responses carry none of them: one pass over the names decides, instead
    // of ten hashed removals. Names listed in `Connection` matter only if `Connection` is there.
    if !headers
        .keys()
        .any(|k| k == header::UPGRADE || HOP_BY_HOP.contains(k))
    {
        return;
    }
    let listed: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for name in listed {
        // Never let `Connection: authorization` smuggle a header past our own rules: all
        // listed names are simply dropped.
        headers.remove(&name);
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
    headers.remove(header::UPGRADE);
}

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("upstream unreachable")]
    Unreachable,
    #[error("upstream timed out")]
    Timeout,
    #[error("upstream request failed")]
    Failed,
}

type UpstreamClient = Client<HttpsConnector<HttpConnector>, Incoming>;

/// Per-connection facts the forwarder adds to each request.
pub struct Peer {
    /// The client's IP, as a header value built once per connection.
    pub ip: HeaderValue,
    pub tls: bool,
    /// The connection's last accepted token ([`crate::auth::TokenMemo`]).
    pub memo: crate::auth::TokenMemo,
}

impl Peer {
    pub fn new(ip: HeaderValue, tls: bool) -> Peer {
        Peer {
            ip,
            tls,
            memo: Default::default(),
        }
    }
}

/// The upstream of one worker thread: its own connection pool (no cross-thread locking).
pub struct Upstream {
    client: UpstreamClient,
    scheme: Scheme,
    authority: Authority,
    /// The upstream URL's path without trailing slash ("" when none).
    base_path: String,
    host: HeaderValue,
    mode: IdentityMode,
    forward_token: bool,
    timeout: Duration,
    proxy_token: Arc<ArcSwapOption<HeaderValue>>,
}

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

impl Upstream {
    /// Build within the worker's runtime (the pool spawns its connection tasks there).
    pub fn new(
        cfg: &UpstreamConfig,
        proxy_token: Arc<ArcSwapOption<HeaderValue>>,
    ) -> Result<Upstream, tls::TlsError> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(cfg.connect_timeout));
        let client_cert = cfg
            .client_cert
            .as_ref()
            .map(|(c, k)| (c.as_path(), k.as_path()));
        let tls = tls::client_config(cfg.ca_file.as_deref(), client_cert)?;
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(1024)
            .build(connector);
        let scheme = cfg.url.scheme().cloned().unwrap_or(Scheme::HTTP);
        let authority = cfg
            .url
            .authority()
            .cloned()
            .ok_or_else(|| tls::TlsError::Config("upstream.url has no host".into()))?;
        let host = HeaderValue::from_str(authority.as_str())
            .map_err(|_| tls::TlsError::Config("upstream.url host is not a valid Host".into()))?;
        Ok(Upstream {
            client,
            scheme,
            authority,
            base_path: cfg.url.path().trim_end_matches('/').to_string(),
            host,
            mode: cfg.identity_headers,
            forward_token: cfg.forward_token,
            timeout: cfg.timeout,
            proxy_token,
        })
    }

    /// Rewrite an authenticated request for the upstream and send it. The caller has already
    /// stripped spoofable identity headers.
    pub async fn forward(
        &self,
        req: Request<Incoming>,
        identity_headers: &[(HeaderName, HeaderValue)],
        credential: Option<(&HeaderName, HeaderValue)>,
        peer: &Peer,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let (mut parts, body) = req.into_parts();
        let original_host = parts.headers.get(HOST).cloned().or_else(|| {
            parts
                .uri
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        });
        let headers = &mut parts.headers;
        strip_hop_by_hop(headers);
        // Room for what is appended below, so the map grows (and rehashes) at most once.
        headers.reserve(identity_headers.len() + 5);
        match self.mode {
            IdentityMode::Impersonate => {
                headers.remove(AUTHORIZATION);
                if let Some(t) = &*self.proxy_token.load() {
                    headers.insert(AUTHORIZATION, (**t).clone());
                }
            }
            _ if !self.forward_token => {
                headers.remove(AUTHORIZATION);
            }
            _ => {}
        }
        headers.insert(HOST, self.host.clone());
        headers.append(X_FORWARDED_FOR.clone(), peer.ip.clone());
        headers.append(
            X_FORWARDED_PROTO.clone(),
            HeaderValue::from_static(if peer.tls { "https" } else { "http" }),
        );
        if let Some(h) = original_host {
            headers.append(X_FORWARDED_HOST.clone(), h);
        }
        for (name, value) in identity_headers {
            headers.append(name.clone(), value.clone());
        }
        if let Some((name, value)) = credential {
            headers.append(name.clone(), value);
        }

        let path = parts.uri.path_and_query().cloned();
        let path = if self.base_path.is_empty() {
            path.unwrap_or_else(|| PathAndQuery::from_static("/"))
        } else {
            let pq = path.as_ref().map_or("/", |p| p.as_str());
            PathAndQuery::try_from(format!("{}{}", self.base_path, pq))
                .map_err(|_| UpstreamError::Failed)?
        };
        let mut uri = http::uri::Parts::default();
        uri.scheme = Some(self.scheme.clone());
        uri.authority = Some(self.authority.clone());
        uri.path_and_query = Some(path);
        parts.uri = Uri::from_parts(uri).map_err(|_| UpstreamError::Failed)?;
        parts.version = Version::HTTP_11;

        let req = Request::from_parts(parts, body);
        let mut resp = match tokio::time::timeout(self.timeout, self.client.request(req)).await {
            Err(_) => return Err(UpstreamError::Timeout),
            Ok(Err(e)) if e.is_connect() => return Err(UpstreamError::Unreachable),
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "upstream request failed");
                return Err(UpstreamError::Failed);
            }
            Ok(Ok(r)) => r,
        };
        strip_hop_by_hop(resp.headers_mut());
        Ok(resp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spoofable_spellings() {
        for n in [
            "x-remote-user",
            "x_remote_user",
            "x.remote.user",
            "x-remote_uid",
            "x-remote-group",
            "x-remote-extra-scopes",
            "x_remote_extra_anything",
            "impersonate-user",
            "impersonate_group",
            "impersonate.uid",
            "impersonate-extra-foo",
            "impersonate_extra_",
        ] {
            assert!(is_spoofable(n), "{n}");
        }
        for n in [
            "x-remote-users",
            "x-remote",
            "x-request-id",
            "authorization",
            "impersonated-user",
            "x-forwarded-for",
            "x-remote-extr",
        ] {
            assert!(!is_spoofable(n), "{n}");
        }
    }

    #[test]
    fn strip_removes_all_values() {
        let mut h = HeaderMap::new();
        h.append("x-remote-group", "system:masters".parse().unwrap());
        h.append("x-remote-group", "other".parse().unwrap());
        h.append(
            "X_Remote_User"
                .to_ascii_lowercase()
                .parse::<HeaderName>()
                .unwrap(),
            "root".parse().unwrap(),
        );
        h.append("accept", "*/*".parse().unwrap());
        strip_spoofable(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("accept"));
    }

    #[test]
    fn hop_by_hop_and_connection_listed() {
        let mut h = HeaderMap::new();
        h.insert(CONNECTION, "keep-alive, x-secret".parse().unwrap());
        h.insert("x-secret", "1".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert(header::TE, "trailers".parse().unwrap());
        h.insert(header::UPGRADE, "websocket".parse().unwrap());
        h.insert("x-keep", "1".parse().unwrap());
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-keep"));
    }
}

//! Forwarding (SPEC section 6): header hygiene and the upstream call. Bodies stream both ways
//! untouched: the downstream `Incoming` body is handed to the upstream client, and the
//! upstream's `Incoming` body is handed back.

use std::future::{ready, Future};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use futures_util::future::{Either, FutureExt};
use http::header::{Entry, HeaderName, HeaderValue, AUTHORIZATION, CONNECTION, HOST};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderMap, Request, Response, Uri, Version};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tower_service::Service;

use crate::config::{IdentityMode, UpstreamConfig};
use crate::identity::{TokenHeaderNames, TokenHeaderValues};
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

/// Hop-by-hop headers (RFC 9110 7.6.1), plus `Upgrade`: protocol upgrades (WebSocket) are not
/// proxied. Strings, not a `const` array of `HeaderName`s: such a constant is built (and
/// dropped) again at every use.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

fn is_hop_by_hop(name: &HeaderName) -> bool {
    // By length first: most names are told apart by one comparison (this runs for every
    // request and response header).
    let s = name.as_str();
    match s.len() {
        2 => s == "te",
        7 => s == "trailer" || s == "upgrade",
        10 => s == "connection" || s == "keep-alive",
        16 => s == "proxy-connection",
        17 => s == "transfer-encoding",
        18 => s == "proxy-authenticate",
        19 => s == "proxy-authorization",
        _ => false,
    }
}

/// Remove hop-by-hop headers, including those the `Connection` header names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Requests mostly carry none; responses mostly carry only `Connection: keep-alive`. So one
    // pass over the names, then hashed removals only for what is there, and no allocation
    // unless a `Connection` option names a header that is present.
    let mut connection = false;
    let mut others = false;
    for name in headers.keys() {
        if name == CONNECTION {
            connection = true;
        } else if is_hop_by_hop(name) {
            others = true;
        }
    }
    if connection {
        // Never let `Connection: authorization` smuggle a header past our own rules: every
        // header a `Connection` option names is dropped. One hashed look-up takes the values
        // out; the usual ones (`keep-alive`, `close`) name nothing and skip the parse.
        let mut listed: Vec<HeaderName> = Vec::new();
        if let Entry::Occupied(e) = headers.entry(CONNECTION) {
            for v in e.remove_entry_mult().1 {
                let b = v.as_bytes();
                if b.eq_ignore_ascii_case(b"keep-alive") || b.eq_ignore_ascii_case(b"close") {
                    continue;
                }
                let Ok(v) = v.to_str() else { continue };
                listed.extend(
                    v.split(',')
                        .map(str::trim)
                        .filter(|o| {
                            !o.is_empty() && !HOP_BY_HOP.iter().any(|h| h.eq_ignore_ascii_case(o))
                        })
                        .filter_map(|o| HeaderName::from_bytes(o.as_bytes()).ok()),
                );
            }
        }
        for name in listed {
            headers.remove(name);
        }
    }
    if others {
        for name in HOP_BY_HOP {
            headers.remove(name);
        }
    }
}

/// Append `(name, value)` pairs; a run of values under one name (the groups) costs one hashed
/// look-up of the name instead of one per value.
fn append_grouped(headers: &mut HeaderMap, pairs: &[(HeaderName, HeaderValue)]) {
    let mut rest = pairs;
    while let Some(((name, value), tail)) = rest.split_first() {
        let run = tail.iter().take_while(|(n, _)| n == name).count();
        if run == 0 {
            headers.append(name.clone(), value.clone());
        } else {
            let values = std::iter::once(value).chain(tail[..run].iter().map(|(_, v)| v));
            match headers.entry(name.clone()) {
                Entry::Occupied(mut e) => values.for_each(|v| e.append(v.clone())),
                Entry::Vacant(e) => {
                    let mut values = values;
                    if let Some(first) = values.next() {
                        let mut e = e.insert_entry(first.clone());
                        values.for_each(|v| e.append(v.clone()));
                    }
                }
            }
        }
        rest = &tail[run..];
    }
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

type Connector = HttpsConnector<HttpConnector>;
type UpstreamClient = Client<Connector, Incoming>;
type Sender = http1::SendRequest<Incoming>;

/// The upstream's response head as the client gets it (hop-by-hop headers gone), or why there
/// is none (`None`: the upstream timeout passed).
fn response_head(
    sent: Option<Result<Response<Incoming>, UpstreamError>>,
) -> Result<Response<Incoming>, UpstreamError> {
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

/// The upstream timeout of an HTTP/1 client connection's requests, kept without a timer per
/// request: a request in [`Self::within`] is numbered and marked waiting (two stores), and the
/// connection's periodic tick ([`Self::check`], in `listener::drive`) marks it expired once it
/// has waited `timeout`. hyper's HTTP/1 dispatcher polls a connection's in-flight request
/// future whenever it polls the connection (behaviour, not a documented guarantee: the 504
/// tests would hang until the upstream answers if that changed), so the request sees the mark
/// on the tick's next loop turn and ends (504).
/// A timer per request cost 840 of 41k instructions per cached request (arm, then cancel).
/// HTTP/2 streams run concurrently in tasks of their own and keep a timer each.
#[derive(Default)]
pub struct UpstreamDeadline {
    /// Requests started so far; the waiting one (if any) is number `started`.
    started: AtomicU32,
    waiting: AtomicBool,
    /// The number of a request whose wait passed the timeout (0: none).
    expired: AtomicU32,
}

/// What the tick last saw: which request was waiting, and since when (one tick late at most).
#[derive(Default)]
pub struct DeadlineWatch(Option<(u32, Instant)>);

impl UpstreamDeadline {
    /// Run `fut` (the upstream call) to completion, or until the tick marks it expired
    /// (`None`). The wait counts from this call.
    fn within<F: Future>(&self, fut: F) -> Within<'_, F> {
        let n = self.started.load(Ordering::Relaxed).wrapping_add(1).max(1);
        self.started.store(n, Ordering::Relaxed);
        self.waiting.store(true, Ordering::Release);
        Within {
            fut,
            n,
            done: NotWaiting(self),
        }
    }

    /// Called on the connection's tick: mark the waiting request expired once it has waited
    /// `timeout` (noticed up to one tick late, and started counting up to one tick late).
    pub fn check(&self, watch: &mut DeadlineWatch, timeout: Duration) {
        if !self.waiting.load(Ordering::Acquire) {
            watch.0 = None;
            return;
        }
        let n = self.started.load(Ordering::Relaxed);
        match watch.0 {
            Some((seen, since)) if seen == n => {
                if since.elapsed() >= timeout {
                    self.expired.store(n, Ordering::Release);
                }
            }
            _ => watch.0 = Some((n, Instant::now())),
        }
    }
}

pin_project_lite::pin_project! {
    /// [`UpstreamDeadline::within`]'s future.
    struct Within<'a, F> {
        #[pin]
        fut: F,
        // The request's number.
        n: u32,
        done: NotWaiting<'a>,
    }
}

impl<F: Future> Future for Within<'_, F> {
    type Output = Option<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        match this.fut.poll(cx) {
            Poll::Ready(v) => Poll::Ready(Some(v)),
            Poll::Pending if this.done.0.expired.load(Ordering::Acquire) == *this.n => {
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Clears `waiting` however the upstream call ends (answered, expired, or dropped).
struct NotWaiting<'a>(&'a UpstreamDeadline);

impl Drop for NotWaiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.store(false, Ordering::Release);
    }
}

/// Per-connection facts the forwarder adds to each request.
pub struct Peer {
    /// The client's IP, as a header value built once per connection.
    pub ip: HeaderValue,
    pub tls: bool,
    /// The connection's last accepted token ([`crate::auth::TokenMemo`]).
    pub memo: crate::auth::TokenMemo,
    /// This HTTP/1 connection's own upstream connection ([`Upstream::forward`]).
    pub upstream: UpstreamSlot,
    /// The upstream timeout of this HTTP/1 connection's requests.
    pub deadline: UpstreamDeadline,
}

impl Peer {
    pub fn new(ip: HeaderValue, tls: bool) -> Peer {
        Peer {
            ip,
            tls,
            memo: Default::default(),
            upstream: Default::default(),
            deadline: Default::default(),
        }
    }
}

/// The upstream of one worker thread. Requests from HTTP/1 clients go over their downstream
/// connection's own upstream connection ([`UpstreamSlot`]); requests from HTTP/2 clients, which
/// multiplex, go through this worker's own connection pool (no cross-thread locking).
pub struct Upstream {
    connector: Connector,
    client: UpstreamClient,
    scheme: Scheme,
    authority: Authority,
    /// The upstream URL's path without trailing slash ("" when none).
    base_path: String,
    host: HeaderValue,
    mode: IdentityMode,
    /// Names of the per-token identity headers (pod name and uid, credential id) in `mode`.
    token_header_names: TokenHeaderNames,
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
            .build(connector.clone());
        let scheme = cfg.url.scheme().cloned().unwrap_or(Scheme::HTTP);
        let authority = cfg
            .url
            .authority()
            .cloned()
            .ok_or_else(|| tls::TlsError::Config("upstream.url has no host".into()))?;
        let host = HeaderValue::from_str(authority.as_str())
            .map_err(|_| tls::TlsError::Config("upstream.url host is not a valid Host".into()))?;
        Ok(Upstream {
            connector,
            client,
            scheme,
            authority,
            base_path: cfg.url.path().trim_end_matches('/').to_string(),
            host,
            mode: cfg.identity_headers,
            token_header_names: TokenHeaderNames::new(cfg.identity_headers),
            forward_token: cfg.forward_token,
            timeout: cfg.timeout,
            proxy_token,
        })
    }

    /// How long a request may wait for the upstream's response head.
    pub fn timeout(&self) -> Duration {
        self.timeout
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
        req: Request<Incoming>,
        identity_headers: &[(HeaderName, HeaderValue)],
        token_headers: TokenHeaderValues,
        peer: &'a Peer,
    ) -> impl Future<Output = Result<Response<Incoming>, UpstreamError>> + Send + 'a {
        // HTTP/1 clients send one request at a time: they get their own upstream connection.
        let dedicated = req.version() <= Version::HTTP_11;
        let req = match self.rewrite(req, identity_headers, token_headers, peer, dedicated) {
            Ok(req) => req,
            Err(e) => return Either::Right(crate::out_of_line(ready(Err(e)))),
        };
        if !dedicated {
            return Either::Right(crate::out_of_line(async move {
                let sent = tokio::time::timeout(self.timeout, self.send_pooled(req)).await;
                response_head(sent.ok())
            }));
        }
        let slot = &peer.upstream;
        match slot.take() {
            Some(mut sender) if sender.is_ready() => {
                // hyper queues the request now; the future only waits for the response.
                let response = sender.try_send_request(req);
                slot.put(sender);
                let response = response.then(move |r| match r {
                    Ok(resp) => Either::Left(ready(Ok(resp))),
                    // Handed back unsent: the upstream closed this idle connection just now.
                    Err(mut e) => match e.take_message() {
                        Some(unsent) => {
                            Either::Right(crate::out_of_line(self.send_fresh(unsent, slot)))
                        }
                        None => {
                            tracing::debug!(error = %e.error(), "upstream request failed");
                            Either::Left(ready(Err(UpstreamError::Failed)))
                        }
                    },
                });
                Either::Left(peer.deadline.within(response).map(response_head))
            }
            // No connection yet, or one still busy after a timed-out request, or closed by
            // the upstream: dropping it closes it, and a new one is opened.
            _ => Either::Right(crate::out_of_line(async move {
                response_head(peer.deadline.within(self.send_fresh(req, slot)).await)
            })),
        }
    }

    /// The request as the upstream gets it: hop-by-hop headers gone, the token kept or dropped
    /// per mode, `Host` and `X-Forwarded-*` set, identity headers appended, the path prefixed
    /// with the upstream URL's. `origin_form` gives "/path?query" (for a connection already
    /// open to the upstream); otherwise the absolute URI the pool routes by.
    fn rewrite(
        &self,
        req: Request<Incoming>,
        identity_headers: &[(HeaderName, HeaderValue)],
        token_headers: TokenHeaderValues,
        peer: &Peer,
        origin_form: bool,
    ) -> Result<Request<Incoming>, UpstreamError> {
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
        headers.reserve(identity_headers.len() + 8);
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
        append_grouped(headers, identity_headers);
        token_headers.append_to(&self.token_header_names, headers);

        let path = parts.uri.path_and_query().cloned();
        let path = if self.base_path.is_empty() {
            path.unwrap_or_else(|| PathAndQuery::from_static("/"))
        } else {
            let pq = path.as_ref().map_or("/", |p| p.as_str());
            PathAndQuery::try_from(format!("{}{}", self.base_path, pq))
                .map_err(|_| UpstreamError::Failed)?
        };
        parts.uri = if origin_form {
            Uri::from(path)
        } else {
            self.absolute(path)?
        };
        parts.version = Version::HTTP_11;
        Ok(Request::from_parts(parts, body))
    }

    fn absolute(&self, path: PathAndQuery) -> Result<Uri, UpstreamError> {
        let mut uri = http::uri::Parts::default();
        uri.scheme = Some(self.scheme.clone());
        uri.authority = Some(self.authority.clone());
        uri.path_and_query = Some(path);
        Uri::from_parts(uri).map_err(|_| UpstreamError::Failed)
    }

    async fn send_pooled(
        &self,
        req: Request<Incoming>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        self.client.request(req).await.map_err(|e| {
            if e.is_connect() {
                UpstreamError::Unreachable
            } else {
                tracing::debug!(error = %e, "upstream request failed");
                UpstreamError::Failed
            }
        })
    }

    /// Open a new upstream connection for this downstream connection and send on it.
    async fn send_fresh(
        &self,
        req: Request<Incoming>,
        slot: &UpstreamSlot,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let mut sender = self.connect().await?;
        sender.ready().await.map_err(|e| {
            tracing::debug!(error = %e, "upstream connection closed before the request");
            UpstreamError::Failed
        })?;
        let response = sender.try_send_request(req);
        slot.put(sender);
        response.await.map_err(|e| {
            tracing::debug!(error = %e.error(), "upstream request failed");
            UpstreamError::Failed
        })
    }

    async fn connect(&self) -> Result<Sender, UpstreamError> {
        let mut connector = self.connector.clone();
        let target = self.absolute(PathAndQuery::from_static("/"))?;
        let io = async {
            std::future::poll_fn(|cx| connector.poll_ready(cx)).await?;
            connector.call(target).await
        }
        .await
        .map_err(|e| {
            tracing::debug!(error = %e, "upstream connect failed");
            UpstreamError::Unreachable
        })?;
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
        Ok(sender)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header;

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
    fn hop_by_hop_names_are_lowercase_header_names() {
        for n in HOP_BY_HOP {
            assert_eq!(HeaderName::from_static(n).as_str(), n);
            assert!(is_hop_by_hop(&HeaderName::from_static(n)), "{n}");
        }
        // Same lengths as hop-by-hop names, and every standard name: none is one, unless
        // listed.
        for n in [
            "tx",
            "trailed",
            "upgrades",
            "connectio",
            "keep-alivf",
            "proxy-connectiom",
        ] {
            assert!(!is_hop_by_hop(&HeaderName::from_static(n)), "{n}");
        }
        for n in [
            header::ACCEPT,
            header::CONTENT_LENGTH,
            header::CONTENT_TYPE,
            header::DATE,
            header::SERVER,
            header::HOST,
            header::USER_AGENT,
            header::PROXY_AUTHENTICATE,
        ] {
            assert_eq!(is_hop_by_hop(&n), HOP_BY_HOP.contains(&n.as_str()), "{n}");
        }
        assert!(is_hop_by_hop(&header::TRANSFER_ENCODING));
        assert!(is_hop_by_hop(&header::UPGRADE));
        assert!(!is_hop_by_hop(&header::AUTHORIZATION));
    }

    #[test]
    fn grouped_appends_keep_every_value_in_order() {
        let n = |s: &'static str| HeaderName::from_static(s);
        let v = |s: &'static str| HeaderValue::from_static(s);
        let pairs = [
            (n("x-remote-user"), v("u")),
            (n("x-remote-group"), v("g1")),
            (n("x-remote-group"), v("g2")),
            (n("x-remote-group"), v("g3")),
            (n("x-remote-extra-a"), v("a1")),
            (n("x-remote-extra-a"), v("a2")),
            (n("x-remote-extra-b"), v("b")),
        ];
        let mut h = HeaderMap::new();
        h.insert("x-remote-extra-a", v("a0"));
        append_grouped(&mut h, &pairs);
        let all = |name: &str| h.get_all(name).iter().cloned().collect::<Vec<_>>();
        assert_eq!(all("x-remote-user"), [v("u")]);
        assert_eq!(all("x-remote-group"), [v("g1"), v("g2"), v("g3")]);
        assert_eq!(all("x-remote-extra-a"), [v("a0"), v("a1"), v("a2")]);
        assert_eq!(all("x-remote-extra-b"), [v("b")]);
        assert_eq!(h.len(), 8);
        append_grouped(&mut h, &[]);
        assert_eq!(h.len(), 8);
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

        // Several Connection headers, any case, other options alongside.
        let mut h = HeaderMap::new();
        h.append(CONNECTION, "close".parse().unwrap());
        h.append(CONNECTION, " X-Secret , ,Authorization".parse().unwrap());
        h.insert("x-secret", "1".parse().unwrap());
        h.insert(AUTHORIZATION, "Bearer x".parse().unwrap());
        h.insert(header::TRANSFER_ENCODING, "chunked".parse().unwrap());
        h.insert("x-keep", "1".parse().unwrap());
        strip_hop_by_hop(&mut h);
        assert_eq!(h.keys().map(|k| k.as_str()).collect::<Vec<_>>(), ["x-keep"]);

        // The usual response values, any case, and a listed header in a second value.
        let mut h = HeaderMap::new();
        h.append(CONNECTION, "Keep-Alive".parse().unwrap());
        h.append(CONNECTION, "x-secret".parse().unwrap());
        h.insert("x-secret", "1".parse().unwrap());
        h.insert("x-keep", "1".parse().unwrap());
        strip_hop_by_hop(&mut h);
        assert_eq!(h.keys().map(|k| k.as_str()).collect::<Vec<_>>(), ["x-keep"]);
        let mut h = HeaderMap::new();
        h.insert(CONNECTION, "close".parse().unwrap());
        h.insert("x-keep", "1".parse().unwrap());
        strip_hop_by_hop(&mut h);
        assert_eq!(h.keys().map(|k| k.as_str()).collect::<Vec<_>>(), ["x-keep"]);

        // Nothing hop-by-hop: untouched.
        let mut h = HeaderMap::new();
        h.insert("x-keep", "1".parse().unwrap());
        h.insert(AUTHORIZATION, "Bearer x".parse().unwrap());
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 2);
    }
}

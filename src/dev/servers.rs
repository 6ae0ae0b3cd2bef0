//! The HTTP test doubles: a mock OIDC issuer with fault knobs and an echo upstream.

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use aws_lc_rs::digest;
use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use super::keys::{hex, jwks};
// ---- Shared HTTP server plumbing ----

type RespBody = BoxBody<Bytes, Infallible>;
type HandlerResult = Result<Response<RespBody>, std::io::Error>;

/// A handler error makes hyper drop the connection without any response.
fn hang_up() -> std::io::Error {
    std::io::Error::other("test server hangs up on purpose")
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<RespBody> {
    let mut resp = Response::new(Full::new(body.into()).boxed());
    *resp.status_mut() = status;
    if !content_type.is_empty() {
        let value = HeaderValue::from_static(content_type);
        resp.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    resp
}

fn text(status: StatusCode, body: &'static str) -> Response<RespBody> {
    respond(status, "text/plain", body)
}

fn json_text(body: String) -> Response<RespBody> {
    respond(StatusCode::OK, "application/json", body)
}

/// A running server; dropping it closes the listener and every connection.
struct Running<S> {
    addr: SocketAddr,
    state: Arc<S>,
    _stop: watch::Sender<()>,
}

/// Serves `handler(state, request)` on `listener` from a spawned accept loop.
fn serve<S, F>(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    state: Arc<S>,
    handler: fn(Arc<S>, Request<Incoming>) -> F,
) -> std::io::Result<Running<S>>
where
    S: Send + Sync + 'static,
    F: Future<Output = HandlerResult> + Send + 'static,
{
    let addr = listener.local_addr()?;
    let (stop_tx, mut stop) = watch::channel(());
    let served = state.clone();
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                _ = stop.changed() => return,
                accepted = listener.accept() => accepted,
            };
            let Ok((tcp, _)) = accepted else {
                // E.g. EMFILE under load: back off instead of spinning.
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            };
            let (tls, state, mut stop) = (tls.clone(), served.clone(), stop.clone());
            tokio::spawn(async move {
                tokio::select! {
                    _ = stop.changed() => {}
                    _ = serve_connection(tcp, tls, state, handler) => {}
                }
            });
        }
    });
    Ok(Running {
        addr,
        state,
        _stop: stop_tx,
    })
}

async fn serve_connection<S, F>(
    tcp: TcpStream,
    tls: Option<TlsAcceptor>,
    state: Arc<S>,
    handler: fn(Arc<S>, Request<Incoming>) -> F,
) where
    S: Send + Sync + 'static,
    F: Future<Output = HandlerResult> + Send + 'static,
{
    let _ = tcp.set_nodelay(true);
    let service = service_fn(move |req| handler(state.clone(), req));
    let builder = auto::Builder::new(TokioExecutor::new());
    let result = match tls {
        None => builder.serve_connection(TokioIo::new(tcp), service).await,
        Some(acceptor) => {
            let handshake = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp));
            let Ok(Ok(stream)) = handshake.await else {
                return;
            };
            builder
                .serve_connection(TokioIo::new(stream), service)
                .await
        }
    };
    if let Err(e) = result {
        tracing::trace!(error = %e, "test server connection ended with an error");
    }
}

fn tls_acceptor(cert_chain_pem: &str, key_pem: &str) -> std::io::Result<TlsAcceptor> {
    let invalid = |what: &str, e: &dyn std::fmt::Display| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{what}: {e}"))
    };
    let certs = CertificateDer::pem_slice_iter(cert_chain_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid("certificate chain PEM", &e))?;
    if certs.is_empty() {
        return Err(invalid("certificate chain PEM", &"no CERTIFICATE block"));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| invalid("private key PEM", &e))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid("TLS versions", &e))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| invalid("TLS certificate/key", &e))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

// ---- Mock OIDC issuer ----

const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";
const JWKS_PATH: &str = "/openid/v1/jwks";

/// Fault knobs of [`MockIssuer`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IssuerMode {
    Normal,
    /// Read the request (so it is counted), then close the connection
    /// without any response (HTTP/2: reset the stream).
    Down,
    /// 500 on every path.
    Error500,
    /// 200 with a non-JSON body (still labelled application/json) on the JWKS path.
    Garbage,
    /// 200 `{"keys":[]}` on the JWKS path.
    Empty,
    /// Wait this long, then answer normally.
    Slow(Duration),
}

#[derive(Clone)]
struct IssuerConfig {
    keys: Vec<Value>,
    mode: IssuerMode,
    cache_control: Option<String>,
    issuer_override: Option<String>,
    last_authorization: Option<String>,
}

struct IssuerState {
    url: String,
    config: Mutex<IssuerConfig>,
    jwks_fetches: AtomicU64,
    discovery_fetches: AtomicU64,
}

/// Mock OIDC issuer over real loopback HTTP(S). Cheap to clone; serving
/// stops when the last clone is dropped.
#[derive(Clone)]
#[must_use = "the issuer stops serving when its last handle is dropped"]
pub struct MockIssuer {
    inner: Arc<Running<IssuerState>>,
}

impl std::fmt::Debug for MockIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockIssuer")
            .field("url", &self.inner.state.url)
            .finish()
    }
}

impl MockIssuer {
    /// Serves on `http://127.0.0.1:<random port>` on the current runtime.
    pub async fn start(jwks_keys: Vec<Value>) -> std::io::Result<MockIssuer> {
        Self::start_with(jwks_keys, None).await
    }

    /// Same over TLS (h2 and http/1.1 via ALPN) with a PEM certificate chain
    /// and private key; the URL is `https://127.0.0.1:<port>`.
    pub async fn start_tls(
        jwks_keys: Vec<Value>,
        cert_chain_pem: &str,
        key_pem: &str,
    ) -> std::io::Result<MockIssuer> {
        let acceptor = tls_acceptor(cert_chain_pem, key_pem)?;
        Self::start_with(jwks_keys, Some(acceptor)).await
    }

    async fn start_with(keys: Vec<Value>, tls: Option<TlsAcceptor>) -> std::io::Result<MockIssuer> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let state = Arc::new(IssuerState {
            url: format!("{scheme}://{addr}"),
            config: Mutex::new(IssuerConfig {
                keys,
                mode: IssuerMode::Normal,
                cache_control: None,
                issuer_override: None,
                last_authorization: None,
            }),
            jwks_fetches: AtomicU64::new(0),
            discovery_fetches: AtomicU64::new(0),
        });
        let running = serve(listener, tls, state, issuer_respond)?;
        Ok(MockIssuer {
            inner: Arc::new(running),
        })
    }

    pub fn issuer_url(&self) -> String {
        self.inner.state.url.clone()
    }

    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    pub fn jwks_url(&self) -> String {
        format!("{}{JWKS_PATH}", self.inner.state.url)
    }

    pub fn discovery_url(&self) -> String {
        format!("{}{DISCOVERY_PATH}", self.inner.state.url)
    }

    pub fn set_keys(&self, jwks_keys: Vec<Value>) {
        self.config().keys = jwks_keys;
    }

    pub fn set_mode(&self, mode: IssuerMode) {
        self.config().mode = mode;
    }

    /// `Cache-Control` header for JWKS responses (None = no header).
    pub fn set_cache_control(&self, value: Option<String>) {
        self.config().cache_control = value;
    }

    /// Overrides the discovery document's `issuer` (None = the real URL).
    pub fn set_issuer_in_discovery(&self, issuer: Option<String>) {
        self.config().issuer_override = issuer;
    }

    /// Requests that reached the JWKS path, whatever the mode.
    pub fn jwks_fetches(&self) -> u64 {
        self.inner.state.jwks_fetches.load(Ordering::SeqCst)
    }

    /// Requests that reached the discovery path, whatever the mode.
    pub fn discovery_fetches(&self) -> u64 {
        self.inner.state.discovery_fetches.load(Ordering::SeqCst)
    }

    /// `Authorization` header of the most recent request on any path.
    pub fn last_authorization(&self) -> Option<String> {
        self.config().last_authorization.clone()
    }

    fn config(&self) -> MutexGuard<'_, IssuerConfig> {
        lock(&self.inner.state.config)
    }
}

async fn issuer_respond(state: Arc<IssuerState>, req: Request<Incoming>) -> HandlerResult {
    let path = req.uri().path();
    match path {
        JWKS_PATH => state.jwks_fetches.fetch_add(1, Ordering::SeqCst),
        DISCOVERY_PATH => state.discovery_fetches.fetch_add(1, Ordering::SeqCst),
        _ => 0,
    };
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let config = {
        let mut config = lock(&state.config);
        config.last_authorization = authorization;
        config.clone()
    };
    let mode = config.mode;
    match mode {
        IssuerMode::Down => return Err(hang_up()),
        IssuerMode::Slow(delay) => tokio::time::sleep(delay).await,
        IssuerMode::Error500 => {
            return Ok(text(StatusCode::INTERNAL_SERVER_ERROR, "internal error\n"));
        }
        IssuerMode::Normal | IssuerMode::Garbage | IssuerMode::Empty => {}
    }
    match path {
        DISCOVERY_PATH => {
            let mut algs: Vec<&str> = config
                .keys
                .iter()
                .filter_map(|k| k.get("alg")?.as_str())
                .collect();
            algs.sort_unstable();
            algs.dedup();
            if algs.is_empty() {
                algs.push("RS256");
            }
            let doc = json!({
                "issuer": config.issuer_override.unwrap_or_else(|| state.url.clone()),
                "jwks_uri": format!("{}{JWKS_PATH}", state.url),
                "response_types_supported": ["id_token"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": algs,
            });
            Ok(json_text(doc.to_string()))
        }
        JWKS_PATH => {
            let mut resp = match mode {
                IssuerMode::Garbage => json_text("<html>not a JWKS</html>\n".into()),
                IssuerMode::Empty => json_text(jwks(&[]).to_string()),
                _ => json_text(jwks(&config.keys).to_string()),
            };
            if let Some(Ok(value)) = config.cache_control.as_deref().map(HeaderValue::from_str) {
                resp.headers_mut().insert(header::CACHE_CONTROL, value);
            }
            Ok(resp)
        }
        _ => Ok(text(StatusCode::NOT_FOUND, "not found\n")),
    }
}

// ---- Echo upstream ----

/// How many recent requests [`EchoUpstream::requests`] keeps (bounded so
/// `dev` mode and load tests do not grow without limit).
pub const RECORDED_REQUESTS_KEPT: usize = 10_000;

/// One request as the upstream saw it.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    pub method: String,
    pub uri: String,
    /// `HTTP/1.1`, `HTTP/2.0`, ...
    pub version: String,
    /// Lowercase names in arrival order of each name's first occurrence;
    /// repeated names are kept (grouped); non-UTF-8 values lossily converted.
    pub headers: Vec<(String, String)>,
    pub body_len: u64,
    /// Lowercase hex SHA-256 of the body.
    pub body_sha256: String,
}

#[derive(Default)]
struct EchoLog {
    recent: VecDeque<RecordedRequest>,
    total: usize,
}

/// Echo upstream over real loopback HTTP/1.1 and h2c. Cheap to clone;
/// serving stops when the last clone is dropped.
///
/// * `GET /download/<n>`: 200 with exactly `n` bytes of [`download_bytes`],
///   streamed in 64 KiB chunks.
/// * `/status/<code>`: that status (200..=599), empty body.
/// * `/slow/<ms>`: waits, then answers like any other path.
/// * otherwise: 200 with a pretty JSON description of the request.
#[derive(Clone)]
#[must_use = "the upstream stops serving when its last handle is dropped"]
pub struct EchoUpstream {
    inner: Arc<Running<Mutex<EchoLog>>>,
}

impl std::fmt::Debug for EchoUpstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EchoUpstream")
            .field("addr", &self.inner.addr)
            .finish()
    }
}

impl EchoUpstream {
    /// Serves on `127.0.0.1:<random port>` on the current runtime.
    pub async fn start() -> std::io::Result<EchoUpstream> {
        Self::start_on(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await
    }

    /// Serves on a specific address (e.g. `127.0.0.1:8081` for `dev`).
    pub async fn start_on(addr: SocketAddr) -> std::io::Result<EchoUpstream> {
        let listener = TcpListener::bind(addr).await?;
        let running = serve(listener, None, Arc::default(), echo_respond)?;
        Ok(EchoUpstream {
            inner: Arc::new(running),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.inner.addr)
    }

    /// The most recent requests (up to [`RECORDED_REQUESTS_KEPT`]), oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.inner.state).recent.iter().cloned().collect()
    }

    /// Requests recorded since start (or the last [`clear`](Self::clear)).
    pub fn request_count(&self) -> usize {
        lock(&self.inner.state).total
    }

    pub fn clear(&self) {
        *lock(&self.inner.state) = EchoLog::default();
    }
}

async fn echo_respond(log: Arc<Mutex<EchoLog>>, req: Request<Incoming>) -> HandlerResult {
    let (parts, mut body) = req.into_parts();
    let mut hasher = digest::Context::new(&digest::SHA256);
    let mut body_len = 0u64;
    while let Some(frame) = body.frame().await {
        // A body error means the client went away: nobody to answer.
        if let Ok(data) = frame.map_err(|_| hang_up())?.into_data() {
            body_len += data.len() as u64;
            hasher.update(&data);
        }
    }
    let record = RecordedRequest {
        method: parts.method.to_string(),
        uri: parts.uri.to_string(),
        version: format!("{:?}", parts.version),
        headers: parts
            .headers
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_owned(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body_len,
        body_sha256: hex(hasher.finish().as_ref()),
    };
    {
        let mut log = lock(&log);
        if log.recent.len() >= RECORDED_REQUESTS_KEPT {
            log.recent.pop_front();
        }
        log.recent.push_back(record.clone());
        log.total += 1;
    }

    let path = parts.uri.path();
    let bad_request = || text(StatusCode::BAD_REQUEST, "bad number in path\n");
    if let Some(n) = path.strip_prefix("/download/") {
        let Ok(len) = n.parse::<u64>() else {
            return Ok(bad_request());
        };
        let mut resp = respond(StatusCode::OK, "application/octet-stream", "");
        *resp.body_mut() = DownloadBody { next: 0, len }.boxed();
        return Ok(resp);
    }
    if let Some(code) = path.strip_prefix("/status/") {
        return Ok(
            match code.parse::<u16>().ok().filter(|c| (200..=599).contains(c)) {
                Some(code) => respond(StatusCode::from_u16(code).unwrap_or(StatusCode::OK), "", ""),
                None => bad_request(),
            },
        );
    }
    if let Some(ms) = path.strip_prefix("/slow/") {
        let Ok(ms) = ms.parse::<u64>() else {
            return Ok(bad_request());
        };
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    Ok(json_text(echo_json(&record)))
}

fn echo_json(record: &RecordedRequest) -> String {
    let mut headers: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (name, value) in &record.headers {
        headers.entry(name).or_default().push(value);
    }
    let doc = json!({
        "method": record.method,
        "uri": record.uri,
        "version": record.version,
        "headers": headers,
        "body_len": record.body_len,
        "body_sha256": record.body_sha256,
    });
    let mut text = serde_json::to_string_pretty(&doc).unwrap_or_default();
    text.push('\n');
    text
}

const DOWNLOAD_CHUNK: usize = 64 * 1024;
/// `download_byte` repeats with this period (7 * 251).
const DOWNLOAD_PERIOD: u64 = 1757;

/// Byte `i` of every `/download/<n>` body: `(i*31 + i/7) mod 251`.
fn download_byte(i: u64) -> u8 {
    let i = i % DOWNLOAD_PERIOD;
    ((i * 31 + i / 7) % 251) as u8
}

/// One chunk plus one period of the pattern; every chunk is a zero-copy slice.
fn download_pattern() -> &'static Bytes {
    static PATTERN: OnceLock<Bytes> = OnceLock::new();
    PATTERN.get_or_init(|| {
        (0..DOWNLOAD_CHUNK as u64 + DOWNLOAD_PERIOD)
            .map(download_byte)
            .collect::<Vec<_>>()
            .into()
    })
}

/// The first `n` bytes the echo upstream serves on `/download/<n>`.
pub fn download_bytes(n: u64) -> impl Iterator<Item = u8> {
    (0..n).map(download_byte)
}

/// Lowercase hex SHA-256 of `download_bytes(n)`, computed chunk-wise.
pub fn download_sha256(n: u64) -> String {
    let mut hasher = digest::Context::new(&digest::SHA256);
    let mut body = DownloadBody { next: 0, len: n };
    while let Some(chunk) = body.next_chunk() {
        hasher.update(&chunk);
    }
    hex(hasher.finish().as_ref())
}

/// Streaming body of exactly `len` pattern bytes.
struct DownloadBody {
    next: u64,
    len: u64,
}

impl DownloadBody {
    fn next_chunk(&mut self) -> Option<Bytes> {
        let remaining = self.len.checked_sub(self.next).filter(|r| *r > 0)?;
        let take = remaining.min(DOWNLOAD_CHUNK as u64) as usize;
        let start = (self.next % DOWNLOAD_PERIOD) as usize;
        self.next += take as u64;
        Some(download_pattern().slice(start..start + take))
    }
}

impl Body for DownloadBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.next_chunk().map(|chunk| Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.next >= self.len
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.len.saturating_sub(self.next))
    }
}

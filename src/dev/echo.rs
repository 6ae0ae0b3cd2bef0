//! The echo upstream: [`EchoUpstream`] is the protected backend of the tests and `dev` mode.
//! It records every request ([`RecordedRequest`], bounded by [`RECORDED_REQUESTS_KEPT`]) and
//! echoes it back as JSON, fakes statuses and latency, and streams large downloads of a known
//! byte pattern ([`download_bytes`], [`download_sha256`]) without holding them in memory.

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use aws_lc_rs::digest;
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use serde_json::json;
use tokio::net::TcpListener;

use super::keys::hex;
use super::serve::{
    hang_up, json_text, lock, respond, serve, text, tls_acceptor, HandlerResult, Running,
};

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
    tls: bool,
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
            tls: false,
        })
    }

    /// Serves HTTPS on `127.0.0.1:<random port>` with this certificate, offering `h2` and
    /// `http/1.1` by ALPN.
    pub async fn start_tls(cert_chain_pem: &str, key_pem: &str) -> std::io::Result<EchoUpstream> {
        let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await?;
        let acceptor = tls_acceptor(cert_chain_pem, key_pem)?;
        let running = serve(listener, Some(acceptor), Arc::default(), echo_respond)?;
        Ok(EchoUpstream {
            inner: Arc::new(running),
            tls: true,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.inner.addr)
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

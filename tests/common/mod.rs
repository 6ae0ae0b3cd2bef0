//! Shared integration-test harness: a mock OIDC issuer, an echo upstream and the proxy, all
//! over real loopback sockets, plus a small HTTP client and log capture.
#![allow(dead_code)]

pub mod apiserver;
pub mod fake_apiserver;
pub mod pki;

use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use tokenreview_proxy::app::{self, Running};
use tokenreview_proxy::config::Config;
use tokenreview_proxy::dev::{self, EchoUpstream, KubeTokenSpec, MockIssuer, TestKey};

pub const AUD: &str = "test-aud";

/// Every log line of this test binary (debug level), for "no token in logs" checks.
pub fn captured_logs() -> String {
    let buf = log_buffer();
    let bytes = buf.lock().unwrap_or_else(|e| e.into_inner()).clone();
    String::from_utf8_lossy(&bytes).into_owned()
}

fn log_buffer() -> Arc<Mutex<Vec<u8>>> {
    static BUF: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    BUF.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let writer_buf = buf.clone();
        let _ = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(move || LogWriter(writer_buf.clone()))
            .try_init();
        buf
    })
    .clone()
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Knobs for the generated config. Each `*_extra` is TOML lines added to that table.
#[derive(Default)]
pub struct Opts {
    pub server_extra: String,
    pub upstream_extra: String,
    pub cache_extra: String,
    pub tokenreview_extra: String,
    pub issuer_extra: String,
    /// Replace the whole key source line (default: discovery from the mock issuer).
    pub key_source: Option<String>,
    /// Issuer name (metrics label); default "test".
    pub issuer_name: Option<String>,
    /// Don't wait for /readyz before returning.
    pub no_wait: bool,
    /// Keys the mock issuer starts with (default: one RS256 key "k1").
    pub keys: Option<Vec<TestKey>>,
    /// TOML tables appended after the issuer (`[authorization]`, `[kubernetes]`, ...).
    pub tail: String,
}

pub struct Harness {
    pub issuer: MockIssuer,
    pub upstream: EchoUpstream,
    /// The keys the issuer started with; `key()` is the first.
    pub keys: Vec<TestKey>,
    pub proxy: Option<Running>,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub config_text: String,
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some(p) = &self.proxy {
            p.signal_shutdown();
        }
    }
}

pub fn config_text(opts: &Opts, issuer_url: &str, upstream_url: &str) -> String {
    let name = opts.issuer_name.clone().unwrap_or_else(|| "test".into());
    let source = opts.key_source.clone().unwrap_or_default();
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
workers = 2
shutdown_grace = "2s"
{server}
[admin]
listen = "127.0.0.1:0"
[upstream]
url = "{upstream_url}"
{upstream}
[cache]
{cache}
[tokenreview]
{tr}
[[issuers]]
name = "{name}"
issuer = "{issuer_url}"
audiences = ["{AUD}"]
algorithms = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"]
{source}
{issuer}
{tail}
"#,
        tail = opts.tail,
        server = opts.server_extra,
        upstream = opts.upstream_extra,
        cache = opts.cache_extra,
        tr = opts.tokenreview_extra,
        issuer = opts.issuer_extra,
    )
}

impl Harness {
    pub async fn start() -> Harness {
        Harness::start_with(Opts::default()).await
    }

    pub async fn start_with(opts: Opts) -> Harness {
        let _ = log_buffer();
        let mut opts = opts;
        let keys = opts
            .keys
            .take()
            .unwrap_or_else(|| vec![TestKey::generate("RS256", "k1").expect("keygen")]);
        let issuer = MockIssuer::start(keys.iter().map(|k| k.public_jwk()).collect())
            .await
            .expect("mock issuer");
        let upstream = EchoUpstream::start().await.expect("echo upstream");
        Harness::start_proxy(opts, issuer, upstream, keys).await
    }

    /// Start an echo upstream and the proxy against an issuer the test set up itself.
    pub async fn start_with_issuer(opts: Opts, issuer: MockIssuer, keys: Vec<TestKey>) -> Harness {
        let upstream = EchoUpstream::start().await.expect("echo upstream");
        Harness::start_proxy(opts, issuer, upstream, keys).await
    }

    /// Start the proxy against an issuer and upstream the test set up itself.
    pub async fn start_proxy(
        opts: Opts,
        issuer: MockIssuer,
        upstream: EchoUpstream,
        keys: Vec<TestKey>,
    ) -> Harness {
        let text = config_text(&opts, &issuer.issuer_url(), &upstream.url());
        Harness::start_from_text(text, issuer, upstream, keys, !opts.no_wait).await
    }

    /// Start the proxy from a complete config text (for layouts `config_text` cannot express);
    /// waits for readiness when `wait`.
    pub async fn start_from_text(
        text: String,
        issuer: MockIssuer,
        upstream: EchoUpstream,
        keys: Vec<TestKey>,
        wait: bool,
    ) -> Harness {
        let _ = log_buffer();
        let config = Config::parse(&text, "(test)").expect("test config must parse");
        let running = tokio::task::spawn_blocking(move || app::start(config))
            .await
            .expect("join")
            .expect("proxy start");
        let h = Harness {
            addr: running.addr,
            admin: running.admin_addr,
            proxy: Some(running),
            issuer,
            upstream,
            keys,
            config_text: text,
        };
        if wait {
            h.wait_ready(Duration::from_secs(10)).await;
        }
        h
    }

    pub fn key(&self) -> &TestKey {
        &self.keys[0]
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub async fn wait_ready(&self, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let r = get(&format!("http://{}/readyz", self.admin), &[]).await;
            if r.status == StatusCode::OK {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "proxy not ready within {timeout:?}: {}",
                r.text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A valid Kubernetes token for this harness's issuer, signed with `key`.
    pub fn spec(&self) -> KubeTokenSpec {
        KubeTokenSpec::new(&self.issuer.issuer_url(), AUD)
    }

    pub fn token(&self) -> String {
        self.key().sign(&dev::kube_claims(&self.spec()))
    }

    /// GET `path` through the proxy with `Authorization: Bearer <token>` and extra headers.
    pub async fn get_with_token(&self, path: &str, token: &str, extra: &[(&str, &str)]) -> Resp {
        let auth = format!("Bearer {token}");
        let mut headers: Vec<(&str, &str)> = vec![("authorization", auth.as_str())];
        headers.extend_from_slice(extra);
        get(&self.url(path), &headers).await
    }

    pub async fn metrics(&self) -> String {
        get(&format!("http://{}/metrics", self.admin), &[])
            .await
            .text()
    }

    /// The value of one exposition line, e.g. `name{a="b"}`; 0 when absent.
    pub async fn metric(&self, series: &str) -> f64 {
        metric_value(&self.metrics().await, series)
    }
}

pub fn metric_value(exposition: &str, series: &str) -> f64 {
    exposition
        .lines()
        .find_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            (name == series)
                .then(|| value.parse::<f64>().ok())
                .flatten()
        })
        .unwrap_or(0.0)
}

pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Resp {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    }
}

fn client() -> Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

pub async fn send(req: Request<Full<Bytes>>) -> Resp {
    collect(client().request(req).await.expect("request failed")).await
}

/// A response with its whole body read.
async fn collect(resp: http::Response<hyper::body::Incoming>) -> Resp {
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    Resp {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

pub async fn get(url: &str, headers: &[(&str, &str)]) -> Resp {
    let mut b = Request::get(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    send(b.body(Full::new(Bytes::new())).expect("request")).await
}

pub async fn post_json(url: &str, headers: &[(&str, &str)], body: &Value) -> Resp {
    let mut b = Request::post(url).header("content-type", "application/json");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let bytes = Bytes::from(serde_json::to_vec(body).expect("json"));
    send(b.body(Full::new(bytes)).expect("request")).await
}

/// The values the upstream recorded for a header on its most recent request.
/// One keep-alive HTTP/1.1 connection to the proxy: every request goes over the same socket
/// (the path a real client takes when it repeats its token).
pub struct KeepAlive {
    tx: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
}

impl KeepAlive {
    pub async fn open(addr: SocketAddr) -> KeepAlive {
        let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (tx, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .expect("handshake");
        tokio::spawn(conn);
        KeepAlive { tx }
    }

    pub async fn get_with_token(&mut self, path: &str, token: &str) -> Resp {
        self.tx.ready().await.expect("connection still open");
        let req = Request::get(path)
            .header("host", "proxy.test")
            .header("authorization", format!("Bearer {token}"))
            .body(Full::new(Bytes::new()))
            .expect("request");
        collect(self.tx.send_request(req).await.expect("request failed")).await
    }
}

pub fn recorded_header(upstream: &EchoUpstream, name: &str) -> Vec<String> {
    upstream
        .requests()
        .last()
        .map(|r| {
            r.headers
                .iter()
                .filter(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .collect()
        })
        .unwrap_or_default()
}

/// A harness whose proxy forwards to `upstream_url` instead of its echo upstream.
pub async fn start_with_upstream_url(opts: Opts, upstream_url: &str) -> Harness {
    let keys = vec![TestKey::generate("RS256", "k1").expect("keygen")];
    let issuer = MockIssuer::start(keys.iter().map(|k| k.public_jwk()).collect())
        .await
        .expect("issuer");
    let upstream = EchoUpstream::start().await.expect("upstream");
    let text = config_text(&opts, &issuer.issuer_url(), upstream_url);
    Harness::start_from_text(text, issuer, upstream, keys, true).await
}

/// Read one HTTP/1.1 response from a raw socket: until its head and `Content-Length` body are
/// in, the server closes, or `limit` passes. Returns what arrived (lossy UTF-8), never panics.
pub async fn read_response(s: &mut tokio::net::TcpStream, limit: Duration) -> String {
    use tokio::io::AsyncReadExt;
    let deadline = tokio::time::Instant::now() + limit;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = out.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&out[..end]).to_ascii_lowercase();
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok());
            if len.is_some_and(|len| out.len() >= end + 4 + len) {
                break;
            }
        }
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => out.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

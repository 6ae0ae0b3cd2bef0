//! The mock OIDC issuer: [`MockIssuer`] serves a discovery document and a JWKS over real
//! loopback HTTP(S), counts fetches, records the last `Authorization` header, and has fault
//! knobs ([`IssuerMode`], `Cache-Control`, a wrong `issuer` in discovery) for the key-refresh
//! tests.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use http::{header, HeaderValue, Request, StatusCode};
use hyper::body::Incoming;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::keys::jwks;
use super::serve::{hang_up, json_text, lock, serve, text, tls_acceptor, HandlerResult, Running};

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

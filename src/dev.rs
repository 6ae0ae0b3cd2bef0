//! Test doubles used by `dev` mode, the integration tests and the load tests.
//!
//! Everything here speaks real HTTP (HTTP/1.1, and h2 / h2c via ALPN or
//! prior knowledge) over real loopback sockets, so the proxy under test
//! exercises exactly the code paths it uses in production:
//!
//! * [`TestKey`] generates or loads signing keys, publishes them as JWKs and
//!   signs compact JWS tokens, including deliberately malformed ones.
//! * [`KubeTokenSpec`] / [`kube_claims`] build claims shaped exactly like a
//!   kube-apiserver bound projected service-account token.
//! * [`MockIssuer`] serves OIDC discovery and a JWKS, with fault knobs.
//! * [`EchoUpstream`] is the protected backend: it records every request
//!   and echoes it back, streams large downloads and fakes errors/latency.
//!
//! Servers run on the tokio runtime that started them. They stop accepting,
//! and drop their open connections, once the last clone of their handle is
//! dropped, so keep the handle alive for as long as the server is needed.

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::fmt::Write as _;
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::digest;
use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    self, EcdsaKeyPair, EcdsaSigningAlgorithm, Ed25519KeyPair, KeyPair as _, RsaEncoding,
    RsaKeyPair,
};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

// ---- Keys and tokens ----

/// JWS algorithms this module can sign with.
pub const SIGNING_ALGS: &[&str] = &[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
];

/// Errors from generating, loading or using test keys.
#[derive(Debug, thiserror::Error)]
pub enum DevError {
    #[error("unsupported JWS algorithm {0:?} (supported: {list})", list = SIGNING_ALGS.join(", "))]
    UnsupportedAlg(String),
    #[error("unsupported RSA key size {0} bits (supported: 2048, 3072, 4096)")]
    UnsupportedRsaBits(usize),
    #[error("{0}")]
    Pem(String),
    #[error("private key cannot be used with {alg}: {reason}")]
    KeyRejected { alg: String, reason: String },
    #[error("generating a {0} key failed")]
    Generate(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// What an algorithm name asks of the key.
#[derive(Clone, Copy)]
enum KeyKind {
    Rsa(&'static dyn RsaEncoding),
    Ec(&'static EcdsaSigningAlgorithm),
    Ed25519,
}

fn key_kind(alg: &str) -> Result<KeyKind, DevError> {
    Ok(match alg {
        "RS256" => KeyKind::Rsa(&signature::RSA_PKCS1_SHA256),
        "RS384" => KeyKind::Rsa(&signature::RSA_PKCS1_SHA384),
        "RS512" => KeyKind::Rsa(&signature::RSA_PKCS1_SHA512),
        "PS256" => KeyKind::Rsa(&signature::RSA_PSS_SHA256),
        "PS384" => KeyKind::Rsa(&signature::RSA_PSS_SHA384),
        "PS512" => KeyKind::Rsa(&signature::RSA_PSS_SHA512),
        "ES256" => KeyKind::Ec(&signature::ECDSA_P256_SHA256_FIXED_SIGNING),
        "ES384" => KeyKind::Ec(&signature::ECDSA_P384_SHA384_FIXED_SIGNING),
        "EdDSA" => KeyKind::Ed25519,
        other => return Err(DevError::UnsupportedAlg(other.to_owned())),
    })
}

enum Signer {
    Rsa(RsaKeyPair, &'static dyn RsaEncoding),
    Ec(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

/// A private signing key with its JWS `alg` and `kid`; clones share the key.
#[derive(Clone)]
pub struct TestKey {
    alg: String,
    kid: String,
    signer: Arc<Signer>,
}

impl std::fmt::Debug for TestKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print private key material.
        f.debug_struct("TestKey")
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .finish()
    }
}

impl TestKey {
    /// RS*/PS* get RSA 2048, ES256 P-256, ES384 P-384 and EdDSA Ed25519.
    pub fn generate(alg: &str, kid: &str) -> Result<TestKey, DevError> {
        let generated = || DevError::Generate(alg.to_owned());
        let signer = match key_kind(alg)? {
            KeyKind::Rsa(_) => return Self::generate_rsa_bits(alg, kid, 2048),
            KeyKind::Ec(curve) => {
                Signer::Ec(EcdsaKeyPair::generate(curve).map_err(|_| generated())?)
            }
            KeyKind::Ed25519 => {
                Signer::Ed25519(Ed25519KeyPair::generate().map_err(|_| generated())?)
            }
        };
        Ok(Self::new(alg, kid, signer))
    }

    /// An RSA key of `bits` (2048, 3072 or 4096) for an RS*/PS* `alg`.
    pub fn generate_rsa_bits(alg: &str, kid: &str, bits: usize) -> Result<TestKey, DevError> {
        let KeyKind::Rsa(encoding) = key_kind(alg)? else {
            return Err(DevError::KeyRejected {
                alg: alg.to_owned(),
                reason: "an RSA key needs an RS* or PS* algorithm".to_owned(),
            });
        };
        let size = match bits {
            2048 => KeySize::Rsa2048,
            3072 => KeySize::Rsa3072,
            4096 => KeySize::Rsa4096,
            other => return Err(DevError::UnsupportedRsaBits(other)),
        };
        let pair = RsaKeyPair::generate(size).map_err(|_| DevError::Generate(alg.to_owned()))?;
        Ok(Self::new(alg, kid, Signer::Rsa(pair, encoding)))
    }

    /// Loads an unencrypted PKCS#8 (`-----BEGIN PRIVATE KEY-----`) key; the
    /// key type must fit `alg`.
    pub fn from_pkcs8_pem(pem: &str, alg: &str, kid: &str) -> Result<TestKey, DevError> {
        let kind = key_kind(alg)?;
        let der = PrivatePkcs8KeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| {
            DevError::Pem(format!("expected a PKCS#8 \"PRIVATE KEY\" PEM block: {e}"))
        })?;
        let der = der.secret_pkcs8_der();
        let rejected = |e: aws_lc_rs::error::KeyRejected| DevError::KeyRejected {
            alg: alg.to_owned(),
            reason: e.to_string(),
        };
        let signer = match kind {
            KeyKind::Rsa(encoding) => {
                Signer::Rsa(RsaKeyPair::from_pkcs8(der).map_err(rejected)?, encoding)
            }
            KeyKind::Ec(curve) => {
                Signer::Ec(EcdsaKeyPair::from_pkcs8(curve, der).map_err(rejected)?)
            }
            KeyKind::Ed25519 => Signer::Ed25519(Ed25519KeyPair::from_pkcs8(der).map_err(rejected)?),
        };
        Ok(Self::new(alg, kid, signer))
    }

    fn new(alg: &str, kid: &str, signer: Signer) -> Self {
        TestKey {
            alg: alg.to_owned(),
            kid: kid.to_owned(),
            signer: Arc::new(signer),
        }
    }

    /// PKCS#8 v1 PEM of the private key.
    pub fn to_pkcs8_pem(&self) -> String {
        let der = match self.signer.as_ref() {
            Signer::Rsa(pair, _) => AsDer::<Pkcs8V1Der>::as_der(pair).map(|d| d.as_ref().to_vec()),
            Signer::Ec(pair) => pair.to_pkcs8v1().map(|d| d.as_ref().to_vec()),
            Signer::Ed25519(pair) => AsDer::<Pkcs8V1Der>::as_der(pair).map(|d| d.as_ref().to_vec()),
        };
        pem_encode(
            "PRIVATE KEY",
            &der.expect("serializing an in-memory key to PKCS#8"),
        )
    }

    pub fn alg(&self) -> &str {
        &self.alg
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// Public JWK with `kid`, `alg` and `"use":"sig"`; coordinates are
    /// unpadded base64url, RSA `n`/`e` without leading zero bytes.
    pub fn public_jwk(&self) -> Value {
        let mut jwk = match self.signer.as_ref() {
            Signer::Rsa(pair, _) => {
                let public = pair.public_key();
                json!({
                    "kty": "RSA",
                    "n": b64url(public.modulus().big_endian_without_leading_zero()),
                    "e": b64url(public.exponent().big_endian_without_leading_zero()),
                })
            }
            Signer::Ec(pair) => {
                // Uncompressed SEC1 point: 0x04 || x || y.
                let point = pair.public_key().as_ref();
                let coords = point.get(1..).unwrap_or_default();
                let (x, y) = coords.split_at(coords.len() / 2);
                let crv = if x.len() == 48 { "P-384" } else { "P-256" };
                json!({ "kty": "EC", "crv": crv, "x": b64url(x), "y": b64url(y) })
            }
            Signer::Ed25519(pair) => {
                json!({ "kty": "OKP", "crv": "Ed25519", "x": b64url(pair.public_key().as_ref()) })
            }
        };
        jwk["kid"] = json!(self.kid);
        jwk["alg"] = json!(self.alg);
        jwk["use"] = json!("sig");
        jwk
    }

    /// Compact JWS with header `{"alg","kid","typ":"JWT"}`.
    pub fn sign(&self, claims: &Value) -> String {
        let header = json!({ "alg": self.alg, "kid": self.kid, "typ": "JWT" });
        self.sign_with_header(&header, claims)
    }

    /// Compact JWS with exactly this header, signed with this key's alg.
    pub fn sign_with_header(&self, header: &Value, claims: &Value) -> String {
        self.sign_raw(&header.to_string(), &claims.to_string())
    }

    /// Compact JWS over raw header and payload JSON text (used as-is).
    pub fn sign_raw(&self, header_json: &str, payload_json: &str) -> String {
        let input = format!("{}.{}", b64url(header_json), b64url(payload_json));
        let signature = self.signature(input.as_bytes());
        format!("{input}.{}", b64url(signature))
    }

    fn signature(&self, message: &[u8]) -> Vec<u8> {
        const MSG: &str = "signing with a validated in-memory key";
        match self.signer.as_ref() {
            Signer::Rsa(pair, encoding) => {
                let mut out = vec![0; pair.public_modulus_len()];
                pair.sign(*encoding, &SystemRandom::new(), message, &mut out)
                    .expect(MSG);
                out
            }
            Signer::Ec(pair) => pair
                .sign(&SystemRandom::new(), message)
                .expect(MSG)
                .as_ref()
                .to_vec(),
            Signer::Ed25519(pair) => pair.sign(message).as_ref().to_vec(),
        }
    }
}

/// `{"keys": [...]}`.
pub fn jwks(keys: &[Value]) -> Value {
    json!({ "keys": keys })
}

fn b64url(data: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(data)
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    let _ = writeln!(out, "-----END {label}-----");
    out
}

fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// Current time in unix seconds.
pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A random RFC 4122 version-4 UUID string.
pub fn random_uuid() -> String {
    let mut b = [0u8; 16];
    // The system RNG does not fail in practice; a zero UUID is harmless here.
    let _ = SystemRandom::new().fill(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let mut uuid = hex(&b);
    for dash in [20, 16, 12, 8] {
        uuid.insert(dash, '-');
    }
    uuid
}

/// Parameters of a Kubernetes projected service-account token.
#[derive(Clone, Debug)]
pub struct KubeTokenSpec {
    pub issuer: String,
    pub audiences: Vec<String>,
    pub namespace: String,
    pub service_account: String,
    pub service_account_uid: String,
    /// (name, uid)
    pub pod: Option<(String, String)>,
    /// (name, uid)
    pub node: Option<(String, String)>,
    pub ttl_secs: u64,
    pub jti: Option<String>,
    /// Seconds after `iat`.
    pub warnafter_secs: Option<u64>,
}

impl KubeTokenSpec {
    /// `default/default` service account bound to pod `demo-pod` on `node-1`,
    /// one hour TTL, random uids and jti, no `warnafter`.
    pub fn new(issuer: &str, audience: &str) -> Self {
        KubeTokenSpec {
            issuer: issuer.to_owned(),
            audiences: vec![audience.to_owned()],
            namespace: "default".to_owned(),
            service_account: "default".to_owned(),
            service_account_uid: random_uuid(),
            pod: Some(("demo-pod".to_owned(), random_uuid())),
            node: Some(("node-1".to_owned(), random_uuid())),
            ttl_secs: 3600,
            jti: Some(random_uuid()),
            warnafter_secs: None,
        }
    }
}

/// Claims as kube-apiserver issues them for a bound projected token;
/// `iat` = `nbf` = now.
pub fn kube_claims(spec: &KubeTokenSpec) -> Value {
    let now = now_unix();
    let mut kube = json!({
        "namespace": spec.namespace,
        "serviceaccount": { "name": spec.service_account, "uid": spec.service_account_uid },
    });
    if let Some((name, uid)) = &spec.pod {
        kube["pod"] = json!({ "name": name, "uid": uid });
    }
    if let Some((name, uid)) = &spec.node {
        kube["node"] = json!({ "name": name, "uid": uid });
    }
    if let Some(after) = spec.warnafter_secs {
        kube["warnafter"] = json!(now.saturating_add(after));
    }
    let mut claims = json!({
        "aud": spec.audiences,
        "exp": now.saturating_add(spec.ttl_secs),
        "iat": now,
        "nbf": now,
        "iss": spec.issuer,
        "sub": format!("system:serviceaccount:{}:{}", spec.namespace, spec.service_account),
        "kubernetes.io": kube,
    });
    if let Some(jti) = &spec.jti {
        claims["jti"] = json!(jti);
    }
    claims
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::signature::{RsaPublicKeyComponents, UnparsedPublicKey, VerificationAlgorithm};

    fn b64d(s: &str) -> Vec<u8> {
        URL_SAFE_NO_PAD.decode(s).unwrap()
    }

    /// Verifies `token` using nothing but the public JWK.
    fn verify_with_jwk(token: &str, jwk: &Value) -> bool {
        let (input, sig) = token.rsplit_once('.').unwrap();
        let (input, sig) = (input.as_bytes(), b64d(sig));
        let field = |name: &str| b64d(jwk[name].as_str().unwrap());
        let alg: &'static dyn VerificationAlgorithm = match jwk["alg"].as_str().unwrap() {
            "ES256" => &signature::ECDSA_P256_SHA256_FIXED,
            "ES384" => &signature::ECDSA_P384_SHA384_FIXED,
            "EdDSA" => &signature::ED25519,
            rsa => {
                let params = if rsa == "PS256" {
                    &signature::RSA_PSS_2048_8192_SHA256
                } else {
                    &signature::RSA_PKCS1_2048_8192_SHA256
                };
                let public = RsaPublicKeyComponents {
                    n: field("n"),
                    e: field("e"),
                };
                return public.verify(params, input, &sig).is_ok();
            }
        };
        let public = match jwk["kty"].as_str().unwrap() {
            "EC" => [vec![4], field("x"), field("y")].concat(),
            _ => field("x"),
        };
        UnparsedPublicKey::new(alg, public)
            .verify(input, &sig)
            .is_ok()
    }

    #[test]
    fn sign_then_verify_each_alg() {
        for alg in ["RS256", "PS256", "ES256", "ES384", "EdDSA"] {
            let key = TestKey::generate(alg, "k1").unwrap();
            let token = key.sign(&json!({ "sub": "x" }));
            let header: Value =
                serde_json::from_slice(&b64d(token.split('.').next().unwrap())).unwrap();
            assert_eq!(header, json!({ "alg": alg, "kid": "k1", "typ": "JWT" }));
            assert!(verify_with_jwk(&token, &key.public_jwk()), "{alg}");
            let tampered = key.sign(&json!({ "sub": "y" }));
            let (body, _) = tampered.rsplit_once('.').unwrap();
            let forged = format!("{body}.{}", token.rsplit_once('.').unwrap().1);
            assert!(!verify_with_jwk(&forged, &key.public_jwk()), "{alg} forged");
            let reloaded = TestKey::from_pkcs8_pem(&key.to_pkcs8_pem(), alg, "k1").unwrap();
            assert_eq!(reloaded.public_jwk(), key.public_jwk());
        }
    }

    #[test]
    fn jwk_shapes() {
        let rsa = TestKey::generate("RS256", "r").unwrap().public_jwk();
        assert_eq!(
            (rsa["kty"].as_str(), rsa["e"].as_str()),
            (Some("RSA"), Some("AQAB"))
        );
        let n = b64d(rsa["n"].as_str().unwrap());
        assert!(n.len() == 256 && n[0] != 0);
        let ec = TestKey::generate("ES384", "e").unwrap().public_jwk();
        assert_eq!(ec["crv"], "P-384");
        assert_eq!(b64d(ec["y"].as_str().unwrap()).len(), 48);
        let ed = TestKey::generate("EdDSA", "d").unwrap().public_jwk();
        assert_eq!(
            (ed["kty"].as_str(), ed["use"].as_str()),
            (Some("OKP"), Some("sig"))
        );
        for jwk in [&rsa, &ec, &ed] {
            let text = jwk.to_string();
            assert!(!text.contains(['=', '+', '/']), "{text}");
        }
    }
}

//! The HTTP plumbing the test doubles share: an accept loop that serves a handler over
//! HTTP/1.1 and h2 (h2c, or TLS with ALPN) and stops when its [`Running`] handle is dropped,
//! a rustls acceptor built from PEM, and small helpers for building responses. The mock issuer
//! (`issuer`) and the echo upstream (`echo`) are built on it.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

pub(super) type RespBody = BoxBody<Bytes, Infallible>;
pub(super) type HandlerResult = Result<Response<RespBody>, std::io::Error>;

/// A handler error makes hyper drop the connection without any response.
pub(super) fn hang_up() -> std::io::Error {
    std::io::Error::other("test server hangs up on purpose")
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

pub(super) fn respond(
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

pub(super) fn text(status: StatusCode, body: &'static str) -> Response<RespBody> {
    respond(status, "text/plain", body)
}

pub(super) fn json_text(body: String) -> Response<RespBody> {
    respond(StatusCode::OK, "application/json", body)
}

/// A running server; dropping it closes the listener and every connection.
pub(super) struct Running<S> {
    pub(super) addr: SocketAddr,
    pub(super) state: Arc<S>,
    _stop: watch::Sender<()>,
}

/// Serves `handler(state, request)` on `listener` from a spawned accept loop.
pub(super) fn serve<S, F>(
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

pub(super) fn tls_acceptor(cert_chain_pem: &str, key_pem: &str) -> std::io::Result<TlsAcceptor> {
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

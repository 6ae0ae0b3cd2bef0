//! rustls configuration from PEM files: the HTTPS listener (optionally with client-certificate
//! verification) and the client side (upstream and issuer fetches), with a private CA or the
//! system roots.

use arc_swap::ArcSwap;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use std::path::Path;
use std::sync::Arc;

use crate::config::TlsFiles;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {message}")]
    File { path: String, message: String },
    #[error("TLS configuration: {0}")]
    Config(String),
}

fn file_err(path: &Path, message: impl std::fmt::Display) -> TlsError {
    TlsError::File {
        path: path.display().to_string(),
        message: message.to_string(),
    }
}

pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_err(path, format!("cannot read certificates: {e}")))?
        .collect::<Result<_, _>>()
        .map_err(|e| file_err(path, format!("bad PEM certificate: {e}")))?;
    if certs.is_empty() {
        return Err(file_err(path, "no PEM certificate found"));
    }
    Ok(certs)
}

pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| file_err(path, format!("no usable private key: {e}")))
}

fn roots_from(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(path)? {
        roots
            .add(cert)
            .map_err(|e| file_err(path, format!("bad CA certificate: {e}")))?;
    }
    Ok(roots)
}

/// Trust anchors from inline PEM (an AuthenticationConfiguration's `certificateAuthority`).
pub fn roots_from_pem(pem: &str) -> Result<RootCertStore, TlsError> {
    let bad = |e: String| TlsError::Config(format!("certificateAuthority: {e}"));
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| bad(format!("bad PEM certificate: {e}")))?;
    if certs.is_empty() {
        return Err(bad("no PEM certificate found".into()));
    }
    let mut roots = RootCertStore::empty();
    for cert in certs {
        roots
            .add(cert)
            .map_err(|e| bad(format!("bad CA certificate: {e}")))?;
    }
    Ok(roots)
}

/// A client trusting exactly the CA certificates in `pem`.
pub fn client_config_pem(pem: &str) -> Result<ClientConfig, TlsError> {
    Ok(ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(roots_from_pem(pem)?)
        .with_no_client_auth())
}

/// HTTPS listener: ALPN h2 and http/1.1; client certificates required when `client_ca` is set.
pub fn server_config(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> Result<ServerConfig, TlsError> {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match client_ca {
        Some(ca) => {
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots_from(ca)?),
                provider(),
            )
            .build()
            .map_err(|e| file_err(ca, e))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(load_certs(cert)?, load_key(key)?)
        .map_err(|e| file_err(cert, format!("certificate and key do not fit: {e}")))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Client side: trust `ca_file` if given, else the system roots; optional client certificate.
pub fn client_config(
    ca_file: Option<&Path>,
    client_cert: Option<(&Path, &Path)>,
) -> Result<ClientConfig, TlsError> {
    let roots = match ca_file {
        Some(ca) => roots_from(ca)?,
        None => {
            let mut roots = RootCertStore::empty();
            let native = rustls_native_certs::load_native_certs();
            for cert in native.certs {
                // Skip the odd unparsable system certificate rather than fail start-up.
                let _ = roots.add(cert);
            }
            roots
        }
    };
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(roots);
    match client_cert {
        Some((cert, key)) => builder
            .with_client_auth_cert(load_certs(cert)?, load_key(key)?)
            .map_err(|e| file_err(cert, format!("client certificate and key do not fit: {e}"))),
        None => Ok(builder.with_no_client_auth()),
    }
}

/// How often the server's certificate files are read to see whether they changed.
pub const CERT_CHECK_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);

/// Re-read the server's certificate, key and client CA whenever their content changes
/// (cert-manager renewals, Secret volume symlink swaps) and swap the new configuration in for
/// the connections that follow. A pair that does not load is logged and the old one kept.
pub async fn follow_files(
    files: TlsFiles,
    slot: Arc<ArcSwap<ServerConfig>>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let read = |files: &TlsFiles| {
        [
            Some(&files.cert_file),
            Some(&files.key_file),
            files.client_ca_file.as_ref(),
        ]
        .map(|p| p.and_then(|p| std::fs::read(p).ok()))
    };
    let mut seen = read(&files);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(CERT_CHECK_INTERVAL) => {}
            _ = shutdown.changed() => return,
        }
        let now = read(&files);
        if now == seen {
            continue;
        }
        seen = now;
        match server_config(
            &files.cert_file,
            &files.key_file,
            files.client_ca_file.as_deref(),
        ) {
            Ok(c) => {
                slot.store(Arc::new(c));
                tracing::info!(cert = %files.cert_file.display(), "server certificate reloaded");
            }
            Err(e) => {
                tracing::warn!(error = %e, "new server certificate files do not load; keeping the previous ones")
            }
        }
    }
}

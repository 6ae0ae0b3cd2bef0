//! The kube-apiserver connection (SPEC section 12's `[kubernetes]`): a kube-rs client for the
//! features that ask the cluster (bound-object watches, SubjectAccessReview). It is made only
//! when one of them is configured.
//!
//! With no `kubeconfig`, kube-rs's inference applies: in-cluster first (the service host and
//! port from the environment, the pod's CA, and its projected token, which kube-rs re-reads as
//! the kubelet rotates it), else `$KUBECONFIG` or `~/.kube/config`.

use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::config::KubernetesConfig;

/// Why no client could be made: the message names where the settings came from.
#[derive(Debug, thiserror::Error)]
#[error("kubernetes: {0}")]
pub struct ConnectError(String);

/// A client for the configured kube-apiserver. Reads files but does not contact the server.
pub async fn client(cfg: &KubernetesConfig) -> Result<kube::Client, ConnectError> {
    let config = match &cfg.kubeconfig {
        Some(path) => {
            let file = Kubeconfig::read_from(path)
                .map_err(|e| ConnectError(format!("kubeconfig {}: {e}", path.display())))?;
            kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
                .await
                .map_err(|e| ConnectError(format!("kubeconfig {}: {e}", path.display())))?
        }
        None => kube::Config::infer().await.map_err(|e| {
            ConnectError(format!(
                "no in-cluster service account and no usable $KUBECONFIG: {e}"
            ))
        })?,
    };
    kube::Client::try_from(config).map_err(|e| ConnectError(e.to_string()))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use base64::Engine;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// An HTTPS server on loopback that answers every request with a `/version` document.
    async fn version_server() -> (u16, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
        let cert = params.self_signed(&key).unwrap();
        let pem = cert.pem();
        let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut s) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut buf = vec![0u8; 4096];
                    let n = s.read(&mut buf).await.unwrap_or(0);
                    let head = String::from_utf8_lossy(&buf[..n]).to_string();
                    let body = format!(
                        r#"{{"major":"1","minor":"34","gitVersion":"v1.34.0","gitCommit":"x","gitTreeState":"clean","buildDate":"2025-08-27T00:00:00Z","goVersion":"go1.24","compiler":"gc","platform":"linux/amd64","seen":{:?}}}"#,
                        head.lines().next().unwrap_or("")
                    );
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = s.write_all(resp.as_bytes()).await;
                    let _ = s.shutdown().await;
                });
            }
        });
        (port, pem)
    }

    #[tokio::test]
    async fn kubeconfig_reaches_an_https_apiserver_trusted_by_its_ca_data() {
        let (port, ca) = version_server().await;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kubeconfig");
        let ca = base64::engine::general_purpose::STANDARD.encode(ca);
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:{port}\n    certificate-authority-data: {ca}\nusers:\n- name: u\n  user:\n    token: not-a-real-token\ncontexts:\n- name: x\n  context:\n    cluster: c\n    user: u\ncurrent-context: x\n"
            ),
        )
        .unwrap();
        let cfg = KubernetesConfig {
            kubeconfig: Some(path),
            ..KubernetesConfig::default()
        };
        let client = client(&cfg).await.unwrap();
        let version = client.apiserver_version().await.unwrap();
        assert_eq!(
            (version.major.as_str(), version.minor.as_str()),
            ("1", "34")
        );
    }

    #[tokio::test]
    async fn an_unreadable_kubeconfig_is_named() {
        let cfg = KubernetesConfig {
            kubeconfig: Some("/nonexistent/kubeconfig".into()),
            ..KubernetesConfig::default()
        };
        let Err(e) = client(&cfg).await else {
            panic!("a missing kubeconfig made a client")
        };
        let e = e.to_string();
        assert!(e.contains("/nonexistent/kubeconfig"), "{e}");
    }
}

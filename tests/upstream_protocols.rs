//! `upstream.protocol` (SPEC section 14) over real sockets: which HTTP version the echo
//! upstream records for `auto`, `http1` and `http2`, over cleartext (h2c by prior knowledge)
//! and over TLS (ALPN), for HTTP/1 and HTTP/2 clients.
mod common;
use common::pki::{test_pki, TestPki};
use common::*;

use std::io::Write;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokenreview_proxy::dev::{EchoUpstream, MockIssuer, TestKey};

/// The proxy in front of `upstream`, with `upstream_extra` in `[upstream]`.
async fn proxy_to(upstream: EchoUpstream, upstream_extra: String) -> Harness {
    let keys = vec![TestKey::generate("RS256", "k1").expect("keygen")];
    let issuer = MockIssuer::start(keys.iter().map(|k| k.public_jwk()).collect())
        .await
        .expect("issuer");
    let opts = Opts {
        upstream_extra,
        ..Opts::default()
    };
    Harness::start_proxy(opts, issuer, upstream, keys).await
}

/// Versions the upstream recorded for: two HTTP/1.1 requests on one keep-alive connection,
/// then one HTTP/2 (h2c) request; each answered 200 with the identity on it.
async fn versions_seen(h: &Harness) -> Vec<String> {
    let token = h.token();
    let mut c = KeepAlive::open(h.addr).await;
    for _ in 0..2 {
        let r = c.get_with_token("/v1/things?watch=0", &token).await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let h2 = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http::<Full<Bytes>>();
    let req = Request::get(h.url("/v1/things?watch=0"))
        .header("authorization", format!("Bearer {token}"))
        .body(Full::new(Bytes::new()))
        .expect("request");
    assert_eq!(h2.request(req).await.expect("h2c request").status(), 200);
    let recs = h.upstream.requests();
    assert_eq!(recs.len(), 3);
    for r in &recs {
        // HTTP/2 requests arrive in absolute form (`:scheme`, `:authority`).
        let uri: http::Uri = r.uri.parse().expect("uri");
        assert_eq!(
            uri.path_and_query().map(|p| p.as_str()),
            Some("/v1/things?watch=0")
        );
        if let Some(a) = uri.authority() {
            assert_eq!(a.as_str(), h.upstream.addr().to_string());
        }
        assert!(
            r.headers
                .iter()
                .any(|(k, v)| k == "x-remote-user" && v == "system:serviceaccount:default:default"),
            "{:?}",
            r.headers
        );
        assert!(!r.headers.iter().any(|(k, _)| k == "authorization"));
        assert!(!r.headers.iter().any(|(k, _)| k == "te"), "{:?}", r.headers);
    }
    recs.into_iter().map(|r| r.version).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_speaks_h2c_by_prior_knowledge_to_an_http_upstream() {
    let up = EchoUpstream::start().await.expect("upstream");
    let h = proxy_to(up, "protocol = \"http2\"".into()).await;
    assert_eq!(versions_seen(&h).await, ["HTTP/2.0"; 3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_is_http1_to_an_http_upstream() {
    let up = EchoUpstream::start().await.expect("upstream");
    let h = proxy_to(up, String::new()).await;
    assert_eq!(versions_seen(&h).await, ["HTTP/1.1"; 3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_takes_http2_when_a_tls_upstream_offers_it_by_alpn_and_http1_keeps_http1() {
    let TestPki {
        ca_pem: ca,
        cert_pem: cert,
        key_pem: key,
    } = test_pki("upstream test", &["127.0.0.1"]);
    let mut ca_file = tempfile::NamedTempFile::new().expect("tempfile");
    ca_file.write_all(ca.as_bytes()).expect("write");
    let ca_line = format!("ca_file = \"{}\"", ca_file.path().display());

    let up = EchoUpstream::start_tls(&cert, &key)
        .await
        .expect("upstream");
    assert!(up.url().starts_with("https://"));
    let h = proxy_to(up, ca_line.clone()).await;
    assert_eq!(versions_seen(&h).await, ["HTTP/2.0"; 3]);

    let up = EchoUpstream::start_tls(&cert, &key)
        .await
        .expect("upstream");
    let h = proxy_to(up, format!("{ca_line}\nprotocol = \"http1\"")).await;
    assert_eq!(versions_seen(&h).await, ["HTTP/1.1"; 3]);

    let up = EchoUpstream::start_tls(&cert, &key)
        .await
        .expect("upstream");
    let h = proxy_to(up, format!("{ca_line}\nprotocol = \"http2\"")).await;
    assert_eq!(versions_seen(&h).await, ["HTTP/2.0"; 3]);
}

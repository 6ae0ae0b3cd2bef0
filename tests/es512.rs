//! ES512 (ECDSA P-521 with SHA-512), the algorithm kube-apiserver signs service-account tokens
//! with when its key is P-521: accepted when the issuer allows it, `unsupported_algorithm`
//! when it does not. Real sockets: the mock issuer publishes the key, the proxy forwards.

mod common;

use common::*;
use http::StatusCode;
use tokenreview_proxy::dev::{self, MockIssuer, TestKey};

#[tokio::test]
async fn an_es512_token_is_accepted_and_forwarded_with_its_identity() {
    let key = TestKey::generate("ES512", "p521").unwrap();
    let h = Harness::start_with(Opts {
        keys: Some(vec![key]),
        ..Opts::default()
    })
    .await;
    let r = h.get_with_token("/x", &h.token(), &[]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(
        recorded_header(&h.upstream, "x-remote-user"),
        ["system:serviceaccount:default:default"]
    );
    // A forged signature (another P-521 key under the same kid) is refused.
    let other = TestKey::generate("ES512", "p521").unwrap();
    let forged = other.sign(&dev::kube_claims(&h.spec()));
    let r = h.get_with_token("/x", &forged, &[]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r
        .header("www-authenticate")
        .unwrap()
        .contains("bad_signature"));
}

#[tokio::test]
async fn an_es512_token_is_unsupported_algorithm_where_es512_is_not_allowed() {
    let es512 = TestKey::generate("ES512", "p521").unwrap();
    let es256 = TestKey::generate("ES256", "p256").unwrap();
    let keys = vec![es256, es512];
    let issuer = MockIssuer::start(keys.iter().map(|k| k.public_jwk()).collect())
        .await
        .unwrap();
    let upstream = dev::EchoUpstream::start().await.unwrap();
    let text = config_text(&Opts::default(), &issuer.issuer_url(), &upstream.url()).replace(
        r#"algorithms = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"]"#,
        r#"algorithms = ["ES256"]"#,
    );
    assert!(text.contains(r#"algorithms = ["ES256"]"#));
    let h = Harness::start_from_text(text, issuer, upstream, keys, true).await;
    let ok = h.keys[0].sign(&dev::kube_claims(&h.spec()));
    assert_eq!(h.get_with_token("/", &ok, &[]).await.status, StatusCode::OK);
    let token = h.keys[1].sign(&dev::kube_claims(&h.spec()));
    let r = h.get_with_token("/", &token, &[]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(
        r.header("www-authenticate")
            .unwrap()
            .contains(r#"error_description="unsupported_algorithm""#),
        "{:?}",
        r.header("www-authenticate")
    );
}

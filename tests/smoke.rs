//! End-to-end smoke test: a valid token reaches the upstream with the Kubernetes identity.
mod common;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_token_reaches_upstream_with_identity() {
    let h = Harness::start().await;
    let r = h.get_with_token("/hello?x=1", &h.token(), &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let req = h
        .upstream
        .requests()
        .pop()
        .expect("upstream saw the request");
    assert_eq!(req.uri, "/hello?x=1");
    assert_eq!(
        recorded_header(&h.upstream, "x-remote-user"),
        ["system:serviceaccount:default:default"]
    );
    assert!(recorded_header(&h.upstream, "authorization").is_empty());
}

//! Request bodies over raw sockets: a body that stops coming ends with 408 after
//! `server.request_body_timeout` (TokenReview and proxied requests) instead of holding its
//! connection, and a malformed body is the client's error (400), never an upstream failure.
//!
//! The metrics are process-wide, so every test holds `LOCK` and compares before/after deltas.
mod common;
use common::*;

use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const TOKENREVIEW: &str = "/apis/authentication.k8s.io/v1/tokenreviews";
const BODY_TIMEOUTS: &str = "tokenreview_proxy_request_body_timeouts_total";
const UPSTREAM_ERRORS: &str = r#"tokenreview_proxy_upstream_responses_total{class="error"}"#;
const UPSTREAM_ERROR_RESULTS: &str = r#"tokenreview_proxy_requests_total{result="upstream_error"}"#;

/// The proxy with a 1 s body timeout; the upstream timeout far beyond it.
async fn start() -> Harness {
    Harness::start_with(Opts {
        server_extra: "request_body_timeout = \"1s\"".into(),
        upstream_extra: "timeout = \"30s\"".into(),
        ..Opts::default()
    })
    .await
}

/// Send `bytes` on a new connection; the response, and how long it took to come.
async fn exchange(h: &Harness, bytes: &str) -> (String, Duration) {
    let mut s = TcpStream::connect(h.addr).await.expect("connect");
    let started = Instant::now();
    s.write_all(bytes.as_bytes()).await.expect("write");
    let got = read_response(&mut s, Duration::from_secs(10)).await;
    (got, started.elapsed())
}

/// A 408 after the timeout (1 s, plus scheduling), not at once and not never.
fn assert_408_after_the_timeout(got: &str, took: Duration) {
    assert!(got.starts_with("HTTP/1.1 408"), "got {took:?}: {got:?}");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "answered after {took:?}"
    );
}

/// The Kubernetes `Status` a TokenReview 408 carries.
fn assert_timeout_status(got: &str) {
    let body = got.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    let s: serde_json::Value = serde_json::from_str(body).expect("a JSON body");
    assert_eq!(s["kind"], "Status", "{s}");
    assert_eq!(s["code"], 408, "{s}");
}

/// A TokenReview POST whose head promises a body (`framing`) that never comes: 408 with a
/// Status within the timeout, counted once.
async fn tokenreview_body_never_comes(framing: &str) {
    let _guard = LOCK.lock().await;
    let h = start().await;
    let before = h.metric(BODY_TIMEOUTS).await;
    let (got, took) = exchange(
        &h,
        &format!(
            "POST {TOKENREVIEW} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
             {framing}\r\n\r\n"
        ),
    )
    .await;
    assert_408_after_the_timeout(&got, took);
    assert_timeout_status(&got);
    assert_eq!(h.metric(BODY_TIMEOUTS).await - before, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tokenreview_whose_content_length_body_never_comes_gets_408() {
    tokenreview_body_never_comes("Content-Length: 100").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tokenreview_whose_chunked_body_never_comes_gets_408() {
    tokenreview_body_never_comes("Transfer-Encoding: chunked").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxied_request_whose_body_never_comes_gets_408_not_504() {
    let _guard = LOCK.lock().await;
    let h = start().await;
    let before = h.metric(BODY_TIMEOUTS).await;
    let errors = h.metric(UPSTREAM_ERRORS).await;
    let (got, took) = exchange(
        &h,
        &format!(
            "POST /upload HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
             Content-Length: 100\r\n\r\n",
            h.token()
        ),
    )
    .await;
    assert_408_after_the_timeout(&got, took);
    assert_eq!(h.metric(BODY_TIMEOUTS).await - before, 1.0);
    assert_eq!(
        h.metric(UPSTREAM_ERRORS).await,
        errors,
        "the client's stall is not the upstream's failure"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_chunked_body_is_400_and_not_an_upstream_error() {
    let _guard = LOCK.lock().await;
    let h = start().await;
    let errors = h.metric(UPSTREAM_ERRORS).await;
    let error_results = h.metric(UPSTREAM_ERROR_RESULTS).await;
    // "zz" is not a hexadecimal chunk size.
    let (got, _) = exchange(
        &h,
        &format!(
            "POST /upload HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
             Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
            h.token()
        ),
    )
    .await;
    assert!(got.starts_with("HTTP/1.1 400"), "{got:?}");
    assert_eq!(h.metric(UPSTREAM_ERRORS).await, errors);
    assert_eq!(h.metric(UPSTREAM_ERROR_RESULTS).await, error_results);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_keeps_coming_is_not_cut_off() {
    // Each wait is shorter than the timeout, the whole upload longer: it goes through.
    let _guard = LOCK.lock().await;
    let h = start().await;
    let mut s = TcpStream::connect(h.addr).await.expect("connect");
    let head = format!(
        "POST /trickle HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
         Content-Length: 4\r\n\r\n",
        h.token()
    );
    s.write_all(head.as_bytes()).await.expect("write");
    for b in [b"a", b"b", b"c", b"d"] {
        tokio::time::sleep(Duration::from_millis(600)).await;
        s.write_all(b).await.expect("write");
    }
    let got = read_response(&mut s, Duration::from_secs(10)).await;
    assert!(got.starts_with("HTTP/1.1 200"), "{got:?}");
    assert_eq!(h.upstream.requests().last().map(|r| r.body_len), Some(4));
}

//! Forwarding (SPEC section 6) over real loopback sockets: spoofed identity headers never
//! reach the upstream, the identity-header modes, hop-by-hop hygiene, streaming of large
//! bodies both ways, `CONNECT` refused, upstream failures, h2c, and tokens never reaching the
//! logs.
mod common;
use common::*;

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use aws_lc_rs::digest;
use bytes::Bytes;
use http::{Request, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::json;
use tokenreview_proxy::dev::{self, KubeTokenSpec, RecordedRequest, TestKey};
use tokenreview_proxy::token::fingerprint;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Identity headers a client might send to claim to be someone else, in every spelling.
const SPOOFS: &[(&str, &str)] = &[
    ("X-Remote-User", "system:admin"),
    ("X-Remote-Uid", "0"),
    ("X-Remote-Group", "system:masters"),
    ("X-Remote-Extra-Foo", "bar"),
    (
        "X-Remote-Extra-Authentication.kubernetes.io%2fpod-name",
        "evil-pod",
    ),
    ("Impersonate-User", "system:admin"),
    ("Impersonate-Uid", "0"),
    ("Impersonate-Group", "system:masters"),
    ("Impersonate-Extra-Bar", "baz"),
    ("X_Remote_User", "system:admin"),
    ("X_Remote_Uid", "0"),
    ("X.Remote.Group", "system:masters"),
    ("X.Remote.User", "system:admin"),
    ("x_remote_extra_scopes", "all"),
    ("X-Remote_Group", "system:masters"),
    ("impersonate_user", "root"),
    ("Impersonate.Group", "system:masters"),
    ("impersonate_extra_x", "y"),
    ("Impersonate.Extra.Scopes", "all"),
];

/// `_` and `.` spell `-`, any case.
fn normalized(name: &str) -> String {
    name.to_ascii_lowercase().replace(['_', '.'], "-")
}

fn is_identity_header(name: &str) -> bool {
    let n = normalized(name);
    n.starts_with("x-remote-") || n.starts_with("impersonate-")
}

/// Values of one header as the upstream recorded it (names arrive lowercased).
fn values(rec: &RecordedRequest, name: &str) -> Vec<String> {
    rec.headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.clone())
        .collect()
}

fn last(h: &Harness) -> RecordedRequest {
    h.upstream
        .requests()
        .pop()
        .expect("the upstream recorded a request")
}

/// The identity headers the proxy must send for `spec`, with this prefix convention
/// (`x-remote-` or `impersonate-`), sorted.
fn expected_identity(spec: &KubeTokenSpec, prefix: &str) -> Vec<(String, String)> {
    let ns = &spec.namespace;
    let (pod, pod_uid) = spec.pod.clone().expect("pod");
    let (node, node_uid) = spec.node.clone().expect("node");
    let jti = spec.jti.clone().expect("jti");
    let extra = format!("{prefix}extra-authentication.kubernetes.io%2f");
    let mut v = vec![
        (
            format!("{prefix}user"),
            format!("system:serviceaccount:{ns}:{}", spec.service_account),
        ),
        (format!("{prefix}uid"), spec.service_account_uid.clone()),
        (format!("{prefix}group"), "system:serviceaccounts".into()),
        (
            format!("{prefix}group"),
            format!("system:serviceaccounts:{ns}"),
        ),
        (format!("{prefix}group"), "system:authenticated".into()),
        (format!("{extra}pod-name"), pod),
        (format!("{extra}pod-uid"), pod_uid),
        (format!("{extra}node-name"), node),
        (format!("{extra}node-uid"), node_uid),
        (format!("{extra}credential-id"), format!("JTI={jti}")),
    ];
    v.sort();
    v
}

/// Every identity-looking header the upstream got, in any spelling, sorted.
fn actual_identity(rec: &RecordedRequest) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = rec
        .headers
        .iter()
        .filter(|(k, _)| is_identity_header(k))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
        .collect();
    v.sort();
    v
}

fn shop_spec(h: &Harness) -> KubeTokenSpec {
    let mut spec = h.spec();
    spec.namespace = "shop".into();
    spec.service_account = "cart".into();
    spec
}

fn assert_no_value_contains(rec: &RecordedRequest, needle: &str) {
    for (k, v) in &rec.headers {
        assert!(
            !v.contains(needle),
            "upstream header {k} carries the caller's token"
        );
    }
}

/// One HTTP/1.1 exchange over a raw socket, bytes exactly as given; returns the response.
async fn raw_exchange(addr: std::net::SocketAddr, request: &str) -> String {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(request.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("response within 10s")
        .expect("read");
    String::from_utf8_lossy(&out).into_owned()
}

// ---- Spoofed identity headers ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofed_identity_headers_never_reach_the_upstream() {
    let h = Harness::start().await;
    // Control: sent straight to the upstream, every spoofed header arrives there, so the
    // assertions below would see any that got through the proxy.
    get(&format!("{}/direct", h.upstream.url()), SPOOFS).await;
    let direct = last(&h);
    assert_eq!(
        direct
            .headers
            .iter()
            .filter(|(k, _)| is_identity_header(k))
            .count(),
        SPOOFS.len()
    );
    let spec = shop_spec(&h);
    let token = h.key().sign(&dev::kube_claims(&spec));
    let r = h.get_with_token("/spoof", &token, SPOOFS).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let rec = last(&h);
    assert_eq!(actual_identity(&rec), expected_identity(&spec, "x-remote-"));
    assert_eq!(
        values(&rec, "x-remote-user"),
        ["system:serviceaccount:shop:cart"]
    );
    for name in [
        "x_remote_user",
        "x.remote.group",
        "impersonate-user",
        "impersonate_extra_x",
    ] {
        assert!(values(&rec, name).is_empty(), "{name} reached the upstream");
    }
    // Default: the caller's token is not forwarded.
    assert!(values(&rec, "authorization").is_empty());
    assert_no_value_contains(&rec, &token);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofed_headers_in_mixed_case_on_the_wire_are_stripped() {
    let h = Harness::start().await;
    let spec = shop_spec(&h);
    let token = h.key().sign(&dev::kube_claims(&spec));
    let request = format!(
        "GET /raw HTTP/1.1\r\n\
         Host: {addr}\r\n\
         aUtHoRiZaTiOn: bEaReR {token}\r\n\
         x-ReMoTe-UsEr: system:admin\r\n\
         X-REMOTE-UID: 0\r\n\
         X_REMOTE_GROUP: system:masters\r\n\
         x.Remote.Extra.Scopes: all\r\n\
         IMPERSONATE-user: root\r\n\
         iMpErSoNaTe_GrOuP: system:masters\r\n\
         Impersonate_Extra_X: y\r\n\
         Connection: close\r\n\
         \r\n",
        addr = h.addr
    );
    let response = raw_exchange(h.addr, &request).await;
    assert!(response.starts_with("HTTP/1.1 200 "), "{response}");
    let rec = last(&h);
    assert_eq!(rec.uri, "/raw");
    assert_eq!(actual_identity(&rec), expected_identity(&spec, "x-remote-"));
    assert_no_value_contains(&rec, &token);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofed_headers_without_a_valid_token_are_refused() {
    let h = Harness::start().await;
    let r = get(&h.url("/no-token"), SPOOFS).await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate").as_deref(),
        Some(r#"Bearer realm="tokenreview-proxy""#)
    );
    let mut expired = dev::kube_claims(&h.spec());
    expired["exp"] = json!(dev::now_unix() - 3600);
    let r = h
        .get_with_token("/bad-token", &h.key().sign(&expired), SPOOFS)
        .await;
    assert_eq!(r.status, 401);
    let raw = format!(
        "GET /raw HTTP/1.1\r\nHost: {}\r\nX-REMOTE-USER: system:admin\r\nimpersonate_group: system:masters\r\nConnection: close\r\n\r\n",
        h.addr
    );
    let response = raw_exchange(h.addr, &raw).await;
    assert!(response.starts_with("HTTP/1.1 401 "), "{response}");
    assert_eq!(h.upstream.request_count(), 0, "the upstream saw nothing");
}

// ---- Identity header modes ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn impersonate_mode_sends_impersonation_headers_and_the_proxy_token() {
    let mut file = tempfile::NamedTempFile::new().expect("tempfile");
    std::io::Write::write_all(&mut file, b"proxy-sa-token\n").expect("write");
    let h = Harness::start_with(Opts {
        upstream_extra: format!(
            "identity_headers = \"impersonate\"\ntoken_file = \"{}\"",
            file.path().display()
        ),
        ..Opts::default()
    })
    .await;
    let spec = shop_spec(&h);
    let token = h.key().sign(&dev::kube_claims(&spec));
    let r = h.get_with_token("/api/v1/pods", &token, SPOOFS).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let rec = last(&h);
    assert_eq!(
        actual_identity(&rec),
        expected_identity(&spec, "impersonate-")
    );
    assert_eq!(
        values(&rec, "impersonate-user"),
        ["system:serviceaccount:shop:cart"]
    );
    assert_eq!(values(&rec, "authorization"), ["Bearer proxy-sa-token"]);
    assert_no_value_contains(&rec, &token);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_headers_none_sends_no_identity() {
    let h = Harness::start_with(Opts {
        upstream_extra: "identity_headers = \"none\"".into(),
        ..Opts::default()
    })
    .await;
    let token = h.token();
    let r = h.get_with_token("/none", &token, SPOOFS).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let rec = last(&h);
    assert_eq!(actual_identity(&rec), Vec::<(String, String)>::new());
    assert!(values(&rec, "authorization").is_empty());
    // Still authenticated: no token, no forwarding.
    let before = h.upstream.request_count();
    assert_eq!(get(&h.url("/none"), &[]).await.status, 401);
    assert_eq!(h.upstream.request_count(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_token_keeps_the_callers_authorization() {
    let h = Harness::start_with(Opts {
        upstream_extra: "forward_token = true".into(),
        ..Opts::default()
    })
    .await;
    let spec = shop_spec(&h);
    let token = h.key().sign(&dev::kube_claims(&spec));
    let r = h.get_with_token("/fwd", &token, &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let rec = last(&h);
    assert_eq!(values(&rec, "authorization"), [format!("Bearer {token}")]);
    assert_eq!(actual_identity(&rec), expected_identity(&spec, "x-remote-"));
}

// ---- Header hygiene ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_removed_and_forwarding_headers_set() {
    let h = Harness::start().await;
    let hop_headers = [
        ("Connection", "x-foo, x-bar"),
        ("X-Foo", "1"),
        ("X-Bar", "2"),
        ("Keep-Alive", "timeout=5"),
        ("Proxy-Authorization", "Basic dXNlcjpwYXNz"),
    ];
    // Control: the client does send these (straight to the upstream they arrive).
    get(&format!("{}/direct", h.upstream.url()), &hop_headers).await;
    assert_eq!(values(&last(&h), "x-foo"), ["1"]);
    assert_eq!(values(&last(&h), "keep-alive"), ["timeout=5"]);
    let r = h
        .get_with_token(
            "/hop?q=1",
            &h.token(),
            &[
                hop_headers.as_slice(),
                &[("X-Keep", "yes"), ("X-Forwarded-For", "203.0.113.7")],
            ]
            .concat(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let rec = last(&h);
    assert_eq!(rec.uri, "/hop?q=1");
    for gone in ["x-foo", "x-bar", "keep-alive", "proxy-authorization"] {
        assert!(
            values(&rec, gone).is_empty(),
            "{gone} was forwarded: {:?}",
            rec.headers
        );
    }
    assert!(
        values(&rec, "connection")
            .iter()
            .all(|v| !v.contains("x-foo")),
        "{:?}",
        rec.headers
    );
    assert_eq!(values(&rec, "x-keep"), ["yes"], "end-to-end headers pass");
    assert_eq!(values(&rec, "host"), [h.upstream.addr().to_string()]);
    // The client is no trusted proxy: its X-Forwarded-For is replaced (tests/trusted_proxies.rs).
    assert_eq!(values(&rec, "x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(values(&rec, "x-forwarded-proto"), ["http"]);
    assert_eq!(values(&rec, "x-forwarded-host"), [h.addr.to_string()]);
}

// ---- Large bodies ----

const UPLOAD_LEN: u64 = 24 << 20;
const UPLOAD_CHUNK: usize = 64 << 10;

/// A request body produced chunk by chunk (no length known up front, so it goes out
/// chunked); every chunk is stamped with its index so reordering would change the hash.
struct PatternBody {
    sent: u64,
    len: u64,
    base: Bytes,
}

impl PatternBody {
    fn new(len: u64) -> PatternBody {
        let base: Vec<u8> = (0..UPLOAD_CHUNK).map(|i| (i * 131 % 251) as u8).collect();
        PatternBody {
            sent: 0,
            len,
            base: base.into(),
        }
    }

    fn next_chunk(&mut self) -> Option<Bytes> {
        let remaining = self.len - self.sent;
        if remaining == 0 {
            return None;
        }
        let take = remaining.min(UPLOAD_CHUNK as u64) as usize;
        let mut chunk = self.base[..take].to_vec();
        let index = (self.sent / UPLOAD_CHUNK as u64).to_be_bytes();
        let stamp = index.len().min(take);
        chunk[..stamp].copy_from_slice(&index[..stamp]);
        self.sent += take as u64;
        Some(chunk.into())
    }

    fn sha256(len: u64) -> String {
        let mut body = PatternBody::new(len);
        let mut ctx = digest::Context::new(&digest::SHA256);
        while let Some(c) = body.next_chunk() {
            ctx.update(&c);
        }
        hex(ctx.finish().as_ref())
    }
}

impl Body for PatternBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.next_chunk().map(|c| Ok(Frame::data(c))))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_upload_streams_through_unchanged() {
    let h = Harness::start().await;
    let client = Client::builder(TokioExecutor::new()).build_http::<PatternBody>();
    let req = Request::post(h.url("/upload"))
        .header("authorization", format!("Bearer {}", h.token()))
        .header("content-type", "application/octet-stream")
        .body(PatternBody::new(UPLOAD_LEN))
        .expect("request");
    let resp = client.request(req).await.expect("upload");
    assert_eq!(resp.status(), StatusCode::OK);
    let echo: serde_json::Value =
        serde_json::from_slice(&resp.into_body().collect().await.expect("body").to_bytes())
            .expect("echo json");
    let expected = PatternBody::sha256(UPLOAD_LEN);
    let rec = last(&h);
    assert_eq!(rec.method, "POST");
    assert_eq!(rec.body_len, UPLOAD_LEN);
    assert_eq!(rec.body_sha256, expected);
    assert_eq!(echo["body_sha256"], json!(expected));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_download_streams_through_unchanged() {
    const LEN: u64 = 48 << 20;
    let h = Harness::start().await;
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let req = Request::get(h.url(&format!("/download/{LEN}")))
        .header("authorization", format!("Bearer {}", h.token()))
        .body(Full::new(Bytes::new()))
        .expect("request");
    let resp = client.request(req).await.expect("download");
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body();
    let mut ctx = digest::Context::new(&digest::SHA256);
    let (mut len, mut frames) = (0u64, 0u32);
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.expect("body frame").into_data() {
            len += data.len() as u64;
            frames += 1;
            ctx.update(&data);
        }
    }
    assert_eq!(len, LEN);
    assert!(frames > 1, "the body arrives in pieces, not as one buffer");
    assert_eq!(hex(ctx.finish().as_ref()), dev::download_sha256(LEN));
}

// ---- Methods ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_with_a_valid_token_is_405_and_never_forwarded() {
    let h = Harness::start().await;
    let mut s = TcpStream::connect(h.addr).await.expect("connect");
    let req = format!(
        "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\
         Authorization: Bearer {}\r\n\r\n",
        h.token()
    );
    s.write_all(req.as_bytes()).await.expect("write");
    let got = read_response(&mut s, Duration::from_secs(5)).await;
    assert!(got.starts_with("HTTP/1.1 405"), "{got:?}");
    assert!(
        got.to_ascii_lowercase()
            .contains("\r\nallow: get, head, post, put, patch, delete, options\r\n"),
        "{got:?}"
    );
    assert_eq!(
        h.upstream.request_count(),
        0,
        "CONNECT reached the upstream"
    );
}

// ---- Upstream failures ----

const UPSTREAM_ERRORS: &str = r#"tokenreview_proxy_upstream_responses_total{class="error"}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_upstream_port_is_502() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = closed.local_addr().expect("addr").port();
    drop(closed);
    let h = start_with_upstream_url(Opts::default(), &format!("http://127.0.0.1:{port}")).await;
    let before = h.metric(UPSTREAM_ERRORS).await;
    let token = h.token();
    let r = h.get_with_token("/anything", &token, &[]).await;
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(!r.text().contains(&token));
    assert!(h.metric(UPSTREAM_ERRORS).await >= before + 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_upstream_is_504_after_the_timeout() {
    let h = Harness::start_with(Opts {
        upstream_extra: "timeout = \"300ms\"".into(),
        ..Opts::default()
    })
    .await;
    let before = h.metric(UPSTREAM_ERRORS).await;
    let started = Instant::now();
    let r = h.get_with_token("/slow/5000", &h.token(), &[]).await;
    let elapsed = started.elapsed();
    assert_eq!(r.status, 504, "{}", r.text());
    assert!(
        // Checked on the connection's tick: within 1.5 x the timeout, plus scheduling.
        elapsed >= Duration::from_millis(300) && elapsed < Duration::from_millis(1500),
        "answered after {elapsed:?}"
    );
    assert_eq!(
        h.upstream.request_count(),
        1,
        "the upstream did get the request"
    );
    assert!(h.metric(UPSTREAM_ERRORS).await >= before + 1.0);
    // A fast path on the same proxy is unaffected.
    assert_eq!(
        h.get_with_token("/slow/10", &h.token(), &[]).await.status,
        200
    );
}

// ---- HTTP/2 ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_prior_knowledge_is_proxied_with_identity() {
    let h = Harness::start().await;
    let spec = shop_spec(&h);
    let token = h.key().sign(&dev::kube_claims(&spec));
    let client = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http::<Full<Bytes>>();
    let req = Request::get(h.url("/h2?x=1"))
        .header("authorization", format!("Bearer {token}"))
        .header("x-remote-user", "system:admin")
        .body(Full::new(Bytes::new()))
        .expect("request");
    let resp = client.request(req).await.expect("h2c request");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.version(), Version::HTTP_2);
    let rec = last(&h);
    assert_eq!(rec.uri, "/h2?x=1");
    assert_eq!(actual_identity(&rec), expected_identity(&spec, "x-remote-"));
    assert_eq!(values(&rec, "x-forwarded-host"), [h.addr.to_string()]);
    assert!(values(&rec, "authorization").is_empty());

    // Without a token over h2c: 401 with the realm.
    let req = Request::get(h.url("/h2"))
        .body(Full::new(Bytes::new()))
        .expect("request");
    let resp = client.request(req).await.expect("h2c request");
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(h.upstream.request_count(), 1);
}

// ---- Logs ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_never_contain_tokens() {
    let h = Harness::start().await;
    let key = h.key().clone();
    let mut tokens = Vec::new();
    for _ in 0..3 {
        tokens.push(h.token());
    }
    let mut expired = dev::kube_claims(&h.spec());
    expired["exp"] = json!(dev::now_unix() - 3600);
    tokens.push(key.sign(&expired));
    let mut wrong_aud = dev::kube_claims(&h.spec());
    wrong_aud["aud"] = json!(["elsewhere"]);
    tokens.push(key.sign(&wrong_aud));
    let foreign = TestKey::generate("RS256", "k1").expect("keygen");
    tokens.push(foreign.sign(&dev::kube_claims(&h.spec())));
    let stranger = TestKey::generate("RS256", "unknown-kid").expect("keygen");
    tokens.push(stranger.sign(&dev::kube_claims(&h.spec())));
    let good = h.token();
    let (input, _) = good.rsplit_once('.').expect("jws");
    tokens.push(format!("{input}.{}", "A".repeat(342)));
    tokens.push(format!("{good}.extra"));

    let mut rejected = None;
    for (i, t) in tokens.iter().enumerate() {
        let r = h.get_with_token(&format!("/log/{i}"), t, SPOOFS).await;
        assert!(r.status == 200 || r.status == 401, "{}", r.status);
        if r.status == 401 {
            rejected = Some(t.clone());
        }
        // Twice: the second time from the cache.
        h.get_with_token(&format!("/log/{i}"), t, &[]).await;
    }
    let two = format!("Bearer {good}");
    let r = get(
        &h.url("/two"),
        &[("authorization", &two), ("authorization", &two)],
    )
    .await;
    assert_eq!(r.status, 400);
    let logs = captured_logs();
    // The rejections were logged (by fingerprint), so the capture works.
    let rejected = rejected.expect("some token was rejected");
    assert!(
        logs.contains(&fingerprint(&rejected)),
        "expected the rejection to be logged by fingerprint"
    );
    tokens.push(good);
    for t in &tokens {
        assert!(!logs.contains(t.as_str()), "a token reached the logs");
        let sig = t.split('.').nth(2).unwrap_or_default();
        assert!(
            sig.len() < 16 || !logs.contains(sig),
            "a token signature reached the logs"
        );
    }
}

/// The downstream connection's own upstream connection is reopened when the upstream closed
/// it between requests (restart, keep-alive timeout): the next request still succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_restart_between_keep_alive_requests_is_survived() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut h = Harness::start().await;
    let upstream_addr = h.upstream.addr();
    let req = format!(
        "GET /first HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\r\n",
        h.token()
    );
    let mut s = tokio::net::TcpStream::connect(h.addr).await.unwrap();
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 65536];
    let n = s.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));

    // Stop the upstream (its last handle is dropped: it closes its connections) and start a
    // new one on the same port.
    h.upstream = dev::EchoUpstream::start().await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let restarted = dev::EchoUpstream::start_on(upstream_addr).await.unwrap();

    let req = req.replace("/first", "/second");
    s.write_all(req.as_bytes()).await.unwrap();
    let n = s.read(&mut buf).await.unwrap();
    let head = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(restarted.requests().last().unwrap().uri, "/second");
}

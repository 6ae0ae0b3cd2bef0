//! gRPC through the proxy (SPEC sections 7 and 14) with a real gRPC implementation on both
//! sides: tonic's client over a real socket to the proxy, and tonic's server codec behind
//! hyper's HTTP/2 server as the upstream (`upstream.protocol = "http2"`, h2c). Messages are
//! hand-written prost types: no protoc. Unary, server streaming, bidirectional streaming,
//! an error with trailing metadata, identity metadata in gRPC's spelling, and the proxy's own
//! refusals as gRPC statuses.
mod common;
use common::*;

use std::convert::Infallible;
use std::future::{ready, Ready};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use http::uri::PathAndQuery;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokenreview_proxy::dev;
use tokio::net::TcpListener;
use tonic::metadata::MetadataValue;
use tonic::{Code, Request, Response, Status, Streaming};
use tonic_prost::ProstCodec;

#[derive(Clone, PartialEq, prost::Message)]
struct Ping {
    #[prost(string, tag = "1")]
    text: String,
    #[prost(uint32, tag = "2")]
    n: u32,
}

type PingStream = Pin<Box<dyn Stream<Item = Result<Ping, Status>> + Send>>;

/// Headers of each request the upstream received (lowercase names, as on the wire).
type Seen = Arc<Mutex<Vec<Vec<(String, String)>>>>;

struct Unary;
impl tonic::server::UnaryService<Ping> for Unary {
    type Response = Ping;
    type Future = Ready<Result<Response<Ping>, Status>>;
    fn call(&mut self, req: Request<Ping>) -> Self::Future {
        let p = req.into_inner();
        ready(Ok(Response::new(Ping {
            text: format!("unary:{}", p.text),
            n: p.n + 1,
        })))
    }
}

/// Fails with a status, a message and trailing metadata.
struct Fail;
impl tonic::server::UnaryService<Ping> for Fail {
    type Response = Ping;
    type Future = Ready<Result<Response<Ping>, Status>>;
    fn call(&mut self, _req: Request<Ping>) -> Self::Future {
        let mut md = tonic::metadata::MetadataMap::new();
        md.insert("x-detail", MetadataValue::from_static("quota exhausted"));
        ready(Err(Status::with_metadata(
            Code::FailedPrecondition,
            "nope",
            md,
        )))
    }
}

/// `n` replies, 50ms apart.
struct Countdown;
impl tonic::server::ServerStreamingService<Ping> for Countdown {
    type Response = Ping;
    type ResponseStream = PingStream;
    type Future = Ready<Result<Response<PingStream>, Status>>;
    fn call(&mut self, req: Request<Ping>) -> Self::Future {
        let p = req.into_inner();
        let s = futures_util::stream::unfold(0u32, move |i| {
            let text = p.text.clone();
            async move {
                if i == p.n {
                    return None;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                Some((Ok(Ping { text, n: i }), i + 1))
            }
        });
        ready(Ok(Response::new(Box::pin(s) as PingStream)))
    }
}

/// Answers each message as it comes.
struct Bidi;
impl tonic::server::StreamingService<Ping> for Bidi {
    type Response = Ping;
    type ResponseStream = PingStream;
    type Future = Ready<Result<Response<PingStream>, Status>>;
    fn call(&mut self, req: Request<Streaming<Ping>>) -> Self::Future {
        let s = req.into_inner().map(|m| {
            m.map(|p| Ping {
                text: format!("bidi:{}", p.text),
                n: p.n * 2,
            })
        });
        ready(Ok(Response::new(Box::pin(s) as PingStream)))
    }
}

/// The gRPC upstream: HTTP/2 (h2c) only, as gRPC servers are.
async fn grpc_upstream() -> (SocketAddr, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen: Seen = Arc::default();
    let record = seen.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            let record = record.clone();
            tokio::spawn(async move {
                let svc =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let headers = req
                            .headers()
                            .iter()
                            .map(|(k, v)| {
                                (k.as_str().to_string(), v.to_str().unwrap_or("?").into())
                            })
                            .collect();
                        record.lock().unwrap().push(headers);
                        async move {
                            let mut grpc =
                                tonic::server::Grpc::new(ProstCodec::<Ping, Ping>::default());
                            let resp = match req.uri().path() {
                                "/test.Echo/Unary" => grpc.unary(Unary, req).await,
                                "/test.Echo/Fail" => grpc.unary(Fail, req).await,
                                "/test.Echo/Countdown" => {
                                    grpc.server_streaming(Countdown, req).await
                                }
                                "/test.Echo/Bidi" => grpc.streaming(Bidi, req).await,
                                _ => Status::unimplemented("no such method").into_http(),
                            };
                            Ok::<_, Infallible>(resp)
                        }
                    });
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    (addr, seen)
}

async fn client(h: &Harness) -> tonic::client::Grpc<tonic::transport::Channel> {
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", h.addr))
        .expect("uri")
        .connect()
        .await
        .expect("connect to the proxy");
    tonic::client::Grpc::new(channel)
}

fn with_token<T>(msg: T, token: Option<&str>) -> Request<T> {
    let mut req = Request::new(msg);
    if let Some(t) = token {
        req.metadata_mut()
            .insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    // A forged identity: never reaches the upstream.
    req.metadata_mut()
        .insert("x-remote-user", MetadataValue::from_static("system:admin"));
    req
}

async fn unary(
    g: &mut tonic::client::Grpc<tonic::transport::Channel>,
    method: &'static str,
    token: Option<&str>,
) -> Result<Response<Ping>, Status> {
    g.ready().await.expect("ready");
    let msg = Ping {
        text: "hi".into(),
        n: 41,
    };
    g.unary(
        with_token(msg, token),
        PathAndQuery::from_static(method),
        ProstCodec::<Ping, Ping>::default(),
    )
    .await
}

async fn start() -> (Harness, Seen) {
    let (addr, seen) = grpc_upstream().await;
    let opts = Opts {
        upstream_extra: "protocol = \"http2\"".into(),
        ..Opts::default()
    };
    (
        start_with_upstream_url(opts, &format!("http://{addr}")).await,
        seen,
    )
}

fn header(seen: &[(String, String)], name: &str) -> Vec<String> {
    seen.iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unary_streaming_and_bidi_calls_pass_with_identity_metadata() {
    let (h, seen) = start().await;
    let spec = h.spec();
    let token = h.key().sign(&dev::kube_claims(&spec));
    let mut g = client(&h).await;

    let r = unary(&mut g, "/test.Echo/Unary", Some(&token))
        .await
        .expect("unary call");
    assert_eq!(r.get_ref().text, "unary:hi");
    assert_eq!(r.get_ref().n, 42);

    // Server streaming: 5 replies, each as it is sent.
    g.ready().await.expect("ready");
    let msg = Ping {
        text: "tick".into(),
        n: 5,
    };
    let mut stream = g
        .server_streaming(
            with_token(msg, Some(&token)),
            PathAndQuery::from_static("/test.Echo/Countdown"),
            ProstCodec::<Ping, Ping>::default(),
        )
        .await
        .expect("server streaming call")
        .into_inner();
    let mut got = Vec::new();
    while let Some(p) = stream.message().await.expect("stream message") {
        got.push(p.n);
    }
    assert_eq!(got, [0, 1, 2, 3, 4]);

    // Bidirectional: each reply arrives before the next message is sent.
    let (tx, rx) = tokio::sync::mpsc::channel::<Ping>(1);
    let outbound =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) });
    g.ready().await.expect("ready");
    let mut replies = g
        .streaming(
            with_token(outbound, Some(&token)),
            PathAndQuery::from_static("/test.Echo/Bidi"),
            ProstCodec::<Ping, Ping>::default(),
        )
        .await
        .expect("bidi call")
        .into_inner();
    for i in 1..=5u32 {
        tx.send(Ping {
            text: format!("m{i}"),
            n: i,
        })
        .await
        .expect("send");
        let reply = tokio::time::timeout(Duration::from_secs(10), replies.message())
            .await
            .expect("a reply before the next message")
            .expect("message")
            .expect("stream open");
        assert_eq!(
            (reply.text.as_str(), reply.n),
            (format!("bidi:m{i}").as_str(), i * 2)
        );
    }
    drop(tx);
    assert!(replies.message().await.expect("clean end").is_none());

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3);
    let (pod, _) = spec.pod.clone().expect("pod");
    for up in &seen {
        assert_eq!(
            header(up, "x-remote-user"),
            [format!(
                "system:serviceaccount:{}:{}",
                spec.namespace, spec.service_account
            )],
            "{up:?}"
        );
        assert!(header(up, "authorization").is_empty(), "{up:?}");
        assert_eq!(header(up, "te"), ["trailers"], "{up:?}");
        assert_eq!(
            header(up, "x-remote-extra-authentication.kubernetes.io_2fpod-name"),
            std::slice::from_ref(&pod)
        );
        assert!(!header(
            up,
            "x-remote-extra-authentication.kubernetes.io_2fcredential-id"
        )
        .is_empty());
        // Every metadata key is one gRPC allows.
        for (k, _) in up {
            assert!(
                k.bytes()
                    .all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'z' | b'_' | b'.' | b'-')),
                "{k}"
            );
        }
        assert!(!up.iter().any(|(_, v)| v.contains(&token)));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_error_keeps_its_status_message_and_trailing_metadata() {
    let (h, _seen) = start().await;
    let mut g = client(&h).await;
    let e = unary(&mut g, "/test.Echo/Fail", Some(&h.token()))
        .await
        .expect_err("the upstream fails this call");
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert_eq!(e.message(), "nope");
    assert_eq!(
        e.metadata().get("x-detail").map(|v| v.to_str().unwrap()),
        Some("quota exhausted")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_without_a_valid_token_are_unauthenticated_and_never_forwarded() {
    let (h, seen) = start().await;
    let mut g = client(&h).await;
    let e = unary(&mut g, "/test.Echo/Unary", None)
        .await
        .expect_err("no token");
    assert_eq!(e.code(), Code::Unauthenticated);
    assert_eq!(e.message(), "missing bearer token");
    let e = unary(&mut g, "/test.Echo/Unary", Some("not.a.token"))
        .await
        .expect_err("bad token");
    assert_eq!(e.code(), Code::Unauthenticated);
    assert_eq!(e.message(), "invalid token: malformed");
    let mut claims = dev::kube_claims(&h.spec());
    claims["exp"] = serde_json::json!(claims["iat"].as_i64().unwrap() - 600);
    claims["iat"] = serde_json::json!(claims["iat"].as_i64().unwrap() - 3600);
    let expired = h.key().sign(&claims);
    let e = unary(&mut g, "/test.Echo/Unary", Some(&expired))
        .await
        .expect_err("expired token");
    assert_eq!(e.code(), Code::Unauthenticated);
    assert_eq!(e.message(), "invalid token: expired");
    assert!(!e.message().contains(&expired));
    assert!(seen.lock().unwrap().is_empty(), "the upstream saw a call");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_upstream_is_unavailable() {
    // A port nothing listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let opts = Opts {
        upstream_extra: "protocol = \"http2\"".into(),
        ..Opts::default()
    };
    let h = start_with_upstream_url(opts, &format!("http://127.0.0.1:{port}")).await;
    let mut g = client(&h).await;
    let e = unary(&mut g, "/test.Echo/Unary", Some(&h.token()))
        .await
        .expect_err("no upstream");
    assert_eq!(e.code(), Code::Unavailable);
    assert_eq!(e.message(), "upstream unreachable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_no_route_allows_is_permission_denied_and_never_forwarded() {
    let (addr, seen) = grpc_upstream().await;
    let opts = Opts {
        upstream_extra: "protocol = \"http2\"".into(),
        // Only another namespace's service accounts may call this method; the rest is denied.
        tail: "[authorization]\ndefault = \"deny\"\n[[authorization.routes]]\nname = \"unary\"\npath = \"/test.Echo/Unary\"\nservice_accounts = [\"elsewhere:*\"]\n".into(),
        ..Opts::default()
    };
    let h = start_with_upstream_url(opts, &format!("http://{addr}")).await;
    let mut g = client(&h).await;
    let token = h.token();
    for method in ["/test.Echo/Unary", "/test.Echo/Other"] {
        let e = unary(&mut g, method, Some(&token))
            .await
            .expect_err("denied by the routes");
        assert_eq!(e.code(), Code::PermissionDenied, "{method}");
        // The proxy's own gRPC answer (tonic alone would map a bare 403 and say so), and no
        // identity in it.
        assert_eq!(e.message(), "forbidden", "{method}");
    }
    assert!(seen.lock().unwrap().is_empty(), "the upstream saw a call");
}

//! Upstream connections: each keep-alive HTTP/1 client gets an upstream connection of its own
//! (no pool between them), which is reused across its requests, never shared with another
//! client, and replaced (not waited on) after a timed-out request; HTTP/2 clients' requests
//! share at most `upstream.max_connections` per worker. All over real sockets, with
//! an upstream that tells which of its connections carried each request.

mod common;
use common::*;

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokenreview_proxy::dev;
use tokio::net::TcpListener;

/// An HTTP/1.1 upstream that numbers its connections and answers every request with
/// `x-upstream-conn: <number>` and `x-seen-user: <the X-Remote-User it received>`.
/// `/slow` answers after 3 s, `/pause` after 150 ms.
struct CountingUpstream {
    url: String,
    accepted: Arc<AtomicUsize>,
}

impl CountingUpstream {
    async fn start() -> CountingUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let conn_no = counter.fetch_add(1, Ordering::SeqCst) + 1;
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| async move {
                        match req.uri().path() {
                            "/slow" => tokio::time::sleep(Duration::from_secs(3)).await,
                            "/pause" => tokio::time::sleep(Duration::from_millis(150)).await,
                            _ => {}
                        }
                        let user = req
                            .headers()
                            .get("x-remote-user")
                            .cloned()
                            .unwrap_or_else(|| http::HeaderValue::from_static("-"));
                        Ok::<_, Infallible>(
                            Response::builder()
                                .header("x-upstream-conn", conn_no.to_string())
                                .header("x-seen-user", user)
                                .body(Full::new(Bytes::from_static(b"ok")))
                                .expect("response"),
                        )
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
        CountingUpstream { url, accepted }
    }

    fn connections(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

fn conn_of(r: &Resp) -> String {
    r.header("x-upstream-conn").expect("x-upstream-conn")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_keep_alive_client_reuses_one_upstream_connection_of_its_own() {
    let upstream = CountingUpstream::start().await;
    let h = start_with_upstream_url(Opts::default(), &upstream.url).await;
    let mut alice_spec = h.spec();
    alice_spec.service_account = "alice".into();
    let alice = h.key().sign(&dev::kube_claims(&alice_spec));
    let mut bob_spec = h.spec();
    bob_spec.service_account = "bob".into();
    let bob = h.key().sign(&dev::kube_claims(&bob_spec));

    let mut a = KeepAlive::open(h.addr).await;
    let mut b = KeepAlive::open(h.addr).await;
    let (mut a_conns, mut b_conns) = (Vec::new(), Vec::new());
    for _ in 0..10 {
        for (client, token, name, conns) in [
            (&mut a, &alice, "alice", &mut a_conns),
            (&mut b, &bob, "bob", &mut b_conns),
        ] {
            let r = client.get_with_token("/", token).await;
            assert_eq!(r.status, 200, "{}", r.text());
            let expected = format!("system:serviceaccount:default:{name}");
            assert_eq!(r.header("x-seen-user"), Some(expected));
            conns.push(conn_of(&r));
        }
    }
    a_conns.dedup();
    b_conns.dedup();
    assert_eq!(a_conns.len(), 1, "alice's requests moved: {a_conns:?}");
    assert_eq!(b_conns.len(), 1, "bob's requests moved: {b_conns:?}");
    assert_ne!(
        a_conns, b_conns,
        "two clients shared an upstream connection"
    );
    assert_eq!(upstream.connections(), 2);

    // A client that comes back on a new connection gets a new upstream connection.
    drop(a);
    let mut again = KeepAlive::open(h.addr).await;
    let r = again.get_with_token("/a", &alice).await;
    assert_eq!(r.status, 200);
    assert_eq!(upstream.connections(), 3);
    assert_ne!(conn_of(&r), a_conns[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_request_does_not_hold_up_the_next_one_on_the_same_client_connection() {
    let upstream = CountingUpstream::start().await;
    let h = start_with_upstream_url(
        Opts {
            upstream_extra: "timeout = \"300ms\"".into(),
            ..Opts::default()
        },
        &upstream.url,
    )
    .await;
    let token = h.token();
    let mut c = KeepAlive::open(h.addr).await;
    let first = c.get_with_token("/fast", &token).await;
    assert_eq!(first.status, 200);

    let r = c.get_with_token("/slow", &token).await;
    assert_eq!(r.status, 504, "{}", r.text());

    // The upstream connection still owes the slow answer; the next request must not wait
    // for it (nor get it): it goes over a new upstream connection, at once.
    let started = Instant::now();
    let r = c.get_with_token("/fast", &token).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "waited {:?} behind the timed-out request",
        started.elapsed()
    );
    assert_ne!(conn_of(&r), conn_of(&first));
    assert_eq!(upstream.connections(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_clients_share_the_pool_and_still_get_their_own_identity() {
    let upstream = CountingUpstream::start().await;
    let h = start_with_upstream_url(Opts::default(), &upstream.url).await;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<Full<Bytes>>();
    let mut specs = Vec::new();
    for name in ["carol", "dave", "erin", "frank"] {
        let mut s = h.spec();
        s.service_account = name.into();
        specs.push((name, h.key().sign(&dev::kube_claims(&s))));
    }
    // Concurrent streams on one HTTP/2 connection, different callers.
    let mut tasks = Vec::new();
    for (name, token) in specs.iter().cloned() {
        let client = client.clone();
        let url = h.url("/h2");
        tasks.push(tokio::spawn(async move {
            let req = Request::get(url)
                .header("authorization", format!("Bearer {token}"))
                .body(Full::new(Bytes::new()))
                .expect("request");
            let resp = client.request(req).await.expect("h2 request");
            assert_eq!(resp.version(), http::Version::HTTP_2);
            let seen = resp
                .headers()
                .get("x-seen-user")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            (name, resp.status(), seen)
        }));
    }
    for t in tasks {
        let (name, status, seen) = t.await.expect("task");
        assert_eq!(status, 200);
        assert_eq!(
            seen.as_deref(),
            Some(format!("system:serviceaccount:default:{name}").as_str())
        );
    }
}

/// Many concurrent streams from HTTP/2 clients to a slow path: the upstream sees at most
/// `max_connections` per worker, reused from one request to the next, and every request still
/// gets its answer (the ones beyond the bound wait for a connection).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_clients_use_at_most_max_connections_per_worker() {
    const MAX: usize = 2;
    const WORKERS: usize = 2; // the harness's `server.workers`
    const STREAMS: usize = 24;
    let upstream = CountingUpstream::start().await;
    let h = start_with_upstream_url(
        Opts {
            upstream_extra: format!("max_connections = {MAX}"),
            ..Opts::default()
        },
        &upstream.url,
    )
    .await;
    let token = h.token();
    // Two HTTP/2 connections (h2c, prior knowledge): each lands on one worker.
    let mut clients = Vec::new();
    for _ in 0..2 {
        let tcp = tokio::net::TcpStream::connect(h.addr)
            .await
            .expect("connect");
        let (tx, conn) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            TokioIo::new(tcp),
        )
        .await
        .expect("h2 handshake");
        tokio::spawn(conn);
        clients.push(tx);
    }
    for round in 0..2 {
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..STREAMS {
            let mut tx = clients[i % clients.len()].clone();
            let auth = format!("Bearer {token}");
            tasks.spawn(async move {
                let req = Request::get("http://proxy.test/pause")
                    .header("authorization", auth)
                    .body(Full::new(Bytes::new()))
                    .expect("request");
                tx.ready().await.expect("h2 connection open");
                let resp = tx.send_request(req).await.expect("h2 request");
                let status = resp.status();
                let body = http_body_util::BodyExt::collect(resp.into_body())
                    .await
                    .expect("body")
                    .to_bytes();
                (status, body)
            });
        }
        while let Some(done) = tasks.join_next().await {
            let (status, body) = done.expect("stream task");
            assert_eq!(
                status,
                200,
                "round {round}: {}",
                String::from_utf8_lossy(&body)
            );
            assert_eq!(&body[..], b"ok");
        }
        assert!(
            upstream.connections() <= MAX * WORKERS,
            "round {round}: {} upstream connections for {STREAMS} concurrent streams, bound {}",
            upstream.connections(),
            MAX * WORKERS
        );
    }
    assert!(upstream.connections() >= 1);
}

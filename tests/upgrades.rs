//! Protocol upgrades and long responses (SPEC section 14) over real sockets: a WebSocket
//! client and server (tokio-tungstenite) talking through the proxy, a SPDY-style `kubectl
//! exec` upgrade in impersonate mode, the handshake refused without a token, and a slow
//! chunked watch response that outlives `upstream.timeout`.
mod common;
use common::*;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokenreview_proxy::dev;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::server::{
    Request as WsRequest, Response as WsResponse,
};
use tokio_tungstenite::tungstenite::Message;

/// Headers of each upgrade request an upstream double received (lowercase names).
type Seen = Arc<Mutex<Vec<Vec<(String, String)>>>>;

fn header(seen: &[(String, String)], name: &str) -> Vec<String> {
    seen.iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
        .collect()
}

/// A WebSocket server: records each handshake's headers, greets, then echoes every text
/// message as `echo:<text>` until the client closes.
async fn websocket_upstream() -> (SocketAddr, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen: Seen = Arc::default();
    let record = seen.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let record = record.clone();
            tokio::spawn(async move {
                // tungstenite's callback type is given: its error is a whole response.
                #[allow(clippy::result_large_err)]
                let callback = |req: &WsRequest, resp: WsResponse| {
                    let headers = req
                        .headers()
                        .iter()
                        .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").into()))
                        .collect();
                    record.lock().unwrap().push(headers);
                    Ok(resp)
                };
                let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await else {
                    return;
                };
                let _ = ws.send(Message::text("hello from upstream")).await;
                while let Some(Ok(msg)) = ws.next().await {
                    match msg {
                        Message::Text(t) => {
                            let _ = ws.send(Message::text(format!("echo:{t}"))).await;
                        }
                        Message::Close(_) => break,
                        _ => {}
                    }
                }
            });
        }
    });
    (addr, seen)
}

async fn ws_connect(
    h: &Harness,
    token: Option<&str>,
) -> Result<tokio_tungstenite::WebSocketStream<TcpStream>, tokio_tungstenite::tungstenite::Error> {
    let mut req = format!("ws://{}/ws/chat", h.addr)
        .into_client_request()
        .expect("request");
    if let Some(t) = token {
        req.headers_mut()
            .insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    req.headers_mut()
        .insert("x-remote-user", "system:admin".parse().unwrap());
    let tcp = TcpStream::connect(h.addr).await.expect("connect");
    tokio_tungstenite::client_async(req, tcp)
        .await
        .map(|(ws, _)| ws)
}

async fn next_text(ws: &mut tokio_tungstenite::WebSocketStream<TcpStream>) -> String {
    let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("a message within 10s")
        .expect("stream open")
        .expect("message");
    msg.into_text().expect("text").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_messages_flow_both_ways_with_identity_on_the_upgrade() {
    let (ws_addr, seen) = websocket_upstream().await;
    let h = start_with_upstream_url(Opts::default(), &format!("http://{ws_addr}")).await;
    let mut spec = h.spec();
    spec.namespace = "chat".into();
    let token = h.key().sign(&dev::kube_claims(&spec));
    let mut ws = ws_connect(&h, Some(&token))
        .await
        .expect("handshake through the proxy");
    assert_eq!(next_text(&mut ws).await, "hello from upstream");
    for i in 0..20 {
        ws.send(Message::text(format!("m{i}"))).await.expect("send");
        assert_eq!(next_text(&mut ws).await, format!("echo:m{i}"));
    }
    // A large message, to see bytes are copied, not just a first buffer.
    let big = "x".repeat(1 << 20);
    ws.send(Message::text(big.clone())).await.expect("send");
    assert_eq!(next_text(&mut ws).await, format!("echo:{big}"));
    ws.close(None).await.expect("close");

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    let up = &seen[0];
    assert_eq!(
        header(up, "x-remote-user"),
        ["system:serviceaccount:chat:default"],
        "{up:?}"
    );
    assert!(header(up, "x-remote-group").contains(&"system:serviceaccounts:chat".to_string()));
    assert!(header(up, "authorization").is_empty(), "{up:?}");
    assert_eq!(header(up, "upgrade"), ["websocket"]);
    assert!(!up.iter().any(|(_, v)| v.contains(&token)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_handshake_without_a_valid_token_is_401_and_never_forwarded() {
    let (ws_addr, seen) = websocket_upstream().await;
    let h = start_with_upstream_url(Opts::default(), &format!("http://{ws_addr}")).await;
    for token in [None, Some("not.a.token")] {
        match ws_connect(&h, token).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
                assert!(resp.headers().contains_key("www-authenticate"));
            }
            Err(e) => panic!("expected a 401, got {e}"),
            Ok(_) => panic!("the upgrade went through without a valid token"),
        }
    }
    assert!(
        seen.lock().unwrap().is_empty(),
        "the upstream saw a handshake"
    );
}

/// A kube-apiserver-like exec endpoint: reads one request head, records it, answers `101`
/// with `Upgrade: SPDY/3.1`, sends a banner, then echoes bytes back upper-cased.
async fn spdy_upstream() -> (SocketAddr, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen: Seen = Arc::default();
    let record = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let record = record.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if s.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let text = String::from_utf8_lossy(&head).into_owned();
                let mut lines = text.split("\r\n");
                let request_line = lines.next().unwrap_or("").to_string();
                let mut headers: Vec<(String, String)> = lines
                    .filter_map(|l| l.split_once(':'))
                    .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
                    .collect();
                headers.push((":request-line".into(), request_line));
                record.lock().unwrap().push(headers);
                let _ = s
                    .write_all(
                        b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n\
                          Upgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\n\r\n\
                          banner;",
                    )
                    .await;
                let mut buf = [0u8; 4096];
                loop {
                    match s.read(&mut buf).await {
                        Ok(n) if n > 0 => {
                            let up = buf[..n].to_ascii_uppercase();
                            if s.write_all(&up).await.is_err() {
                                return;
                            }
                        }
                        _ => return,
                    }
                }
            });
        }
    });
    (addr, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spdy_exec_upgrade_in_impersonate_mode_carries_impersonation_and_tunnels_bytes() {
    spdy_exec(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spdy_exec_upgrade_works_on_the_listener_s_other_server_too() {
    // A first byte alone ("P", as the h2c preface starts) sends a cleartext connection to
    // hyper-util's auto server instead of the plain HTTP/1 one: upgrades work on both.
    spdy_exec(true).await;
}

async fn spdy_exec(first_byte_alone: bool) {
    let (addr, seen) = spdy_upstream().await;
    let mut file = tempfile::NamedTempFile::new().expect("tempfile");
    std::io::Write::write_all(&mut file, b"proxy-sa-token\n").expect("write");
    let opts = Opts {
        upstream_extra: format!(
            "identity_headers = \"impersonate\"\ntoken_file = \"{}\"\ntimeout = \"2s\"",
            file.path().display()
        ),
        ..Opts::default()
    };
    let h = start_with_upstream_url(opts, &format!("http://{addr}")).await;
    let token = h.token();
    let mut s = TcpStream::connect(h.addr).await.expect("connect");
    let request = format!(
        "POST /api/v1/namespaces/default/pods/web/exec?command=sh&stdin=true HTTP/1.1\r\n\
         Host: apiserver.example\r\n\
         Authorization: Bearer {token}\r\n\
         Impersonate-User: system:admin\r\n\
         Impersonate-Group: system:masters\r\n\
         X-Stream-Protocol-Version: v4.channel.k8s.io\r\n\
         Connection: Upgrade\r\n\
         Upgrade: SPDY/3.1\r\n\
         Content-Length: 0\r\n\r\n"
    );
    if first_byte_alone {
        s.write_all(&request.as_bytes()[..1]).await.expect("write");
        tokio::time::sleep(Duration::from_millis(200)).await;
        s.write_all(&request.as_bytes()[1..]).await.expect("write");
    } else {
        s.write_all(request.as_bytes()).await.expect("write");
    }
    // The 101 head, then the upstream's banner.
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(10);
    while !String::from_utf8_lossy(&got).contains("banner;") {
        assert!(
            Instant::now() < deadline,
            "no 101 and banner: {:?}",
            String::from_utf8_lossy(&got)
        );
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
            .await
            .expect("read within 10s")
            .expect("read");
        assert!(n > 0, "closed: {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&got).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: spdy/3.1"), "{head}");
    assert!(
        head.contains("x-stream-protocol-version: v4.channel.k8s.io"),
        "{head}"
    );
    // Bytes both ways, several round trips, after the switch.
    for i in 0..5 {
        let msg = format!("stdin frame {i};");
        s.write_all(msg.as_bytes()).await.expect("write");
        let want = msg.to_ascii_uppercase();
        let mut echoed = Vec::new();
        while echoed.len() < want.len() {
            let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
                .await
                .expect("echo within 10s")
                .expect("read");
            assert!(n > 0, "tunnel closed");
            echoed.extend_from_slice(&buf[..n]);
        }
        assert_eq!(String::from_utf8_lossy(&echoed), want);
    }
    // The tunnel outlives upstream.timeout (2s): it has no deadline once switched.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    s.write_all(b"late;").await.expect("write");
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
        .await
        .expect("echo within 10s")
        .expect("read");
    assert_eq!(&buf[..n], b"LATE;");
    drop(s);

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    let up = &seen[0];
    assert!(
        header(up, ":request-line")[0]
            .starts_with("POST /api/v1/namespaces/default/pods/web/exec?command=sh&stdin=true "),
        "{up:?}"
    );
    assert_eq!(header(up, "authorization"), ["Bearer proxy-sa-token"]);
    assert_eq!(
        header(up, "impersonate-user"),
        ["system:serviceaccount:default:default"]
    );
    assert!(!header(up, "impersonate-group").contains(&"system:masters".to_string()));
    assert!(header(up, "impersonate-group").contains(&"system:authenticated".to_string()));
    assert_eq!(header(up, "upgrade"), ["SPDY/3.1"]);
    assert!(header(up, "connection")[0].eq_ignore_ascii_case("upgrade"));
    assert_eq!(
        header(up, "x-stream-protocol-version"),
        ["v4.channel.k8s.io"]
    );
    assert!(!up.iter().any(|(_, v)| v.contains(&token)), "{up:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_the_upstream_declines_is_an_ordinary_response() {
    // The echo upstream answers upgrade requests with a plain 200.
    let h = Harness::start().await;
    let mut s = TcpStream::connect(h.addr).await.expect("connect");
    let request = format!(
        "GET /status/403 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
         Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
        h.token()
    );
    s.write_all(request.as_bytes()).await.expect("write");
    let resp = read_response(&mut s, Duration::from_secs(10)).await;
    assert!(resp.starts_with("HTTP/1.1 403"), "{resp}");
    let rec = h.upstream.requests().pop().expect("forwarded");
    assert!(rec
        .headers
        .iter()
        .any(|(k, v)| k == "upgrade" && v == "websocket"));
}

/// An upstream that answers every request with a chunked body of `chunks` lines, one every
/// `every`: a Kubernetes watch.
async fn watch_upstream(chunks: usize, every: Duration) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |_req| async move {
                    let lines = futures_util::stream::unfold(0usize, move |i| async move {
                        if i == chunks {
                            return None;
                        }
                        tokio::time::sleep(every).await;
                        let line = format!("{{\"type\":\"MODIFIED\",\"n\":{i}}}\n");
                        Some((Ok::<_, Infallible>(Frame::data(Bytes::from(line))), i + 1))
                    });
                    Ok::<_, Infallible>(Response::new(StreamBody::new(lines)))
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_watch_streams_past_the_upstream_and_idle_timeouts() {
    // 8 events 400ms apart: 3.2s of body against a 1s upstream timeout, and silences longer
    // than the client connection's idle timeout (300ms).
    let addr = watch_upstream(8, Duration::from_millis(400)).await;
    let opts = Opts {
        upstream_extra: "timeout = \"1s\"".into(),
        server_extra: "idle_timeout = \"300ms\"".into(),
        ..Opts::default()
    };
    let h = start_with_upstream_url(opts, &format!("http://{addr}")).await;
    for http2 in [false, true] {
        let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .http2_only(http2)
            .build_http::<http_body_util::Full<Bytes>>();
        let req = http::Request::get(h.url("/api/v1/pods?watch=true"))
            .header("authorization", format!("Bearer {}", h.token()))
            .body(http_body_util::Full::new(Bytes::new()))
            .unwrap();
        let started = Instant::now();
        let resp = client.request(req).await.expect("response head");
        assert_eq!(resp.status(), 200);
        let mut body = resp.into_body();
        let mut events = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.expect("the watch was not cut");
            if let Ok(d) = frame.into_data() {
                events.push((started.elapsed(), d));
            }
        }
        let text: String = events
            .iter()
            .map(|(_, d)| String::from_utf8_lossy(d).into_owned())
            .collect();
        assert_eq!(text.lines().count(), 8, "http2={http2}: {text}");
        assert!(started.elapsed() >= Duration::from_millis(3000));
        // Streamed as they came, not buffered to the end.
        assert!(
            events[0].0 < Duration::from_millis(1500),
            "http2={http2}: {events:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2c_upgrade_is_never_tunneled() {
    // A tunnel to the upstream's HTTP/2 would carry the client's next requests past
    // authentication: the request goes on as a plain one, without its Upgrade header.
    let h = Harness::start().await;
    let mut s = TcpStream::connect(h.addr).await.expect("connect");
    let request = format!(
        "GET /plain HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
         Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
        h.token()
    );
    s.write_all(request.as_bytes()).await.expect("write");
    let resp = read_response(&mut s, Duration::from_secs(10)).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let rec = h.upstream.requests().pop().expect("forwarded");
    for (k, v) in &rec.headers {
        assert!(k != "upgrade" && k != "http2-settings", "{k} forwarded");
        assert!(
            !(k == "connection" && v.to_ascii_lowercase().contains("upgrade")),
            "{k}: {v}"
        );
    }
}

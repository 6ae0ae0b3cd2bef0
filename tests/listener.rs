//! The listener over real sockets: HTTPS with ALPN (HTTP/1.1 and HTTP/2), client-certificate
//! authentication, header read timeout, idle timeout, connection limit, graceful drain.
mod common;
use common::*;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Pki {
    dir: tempfile::TempDir,
    ca_pem: String,
    client_cert_pem: String,
    client_key_pem: String,
}

impl Pki {
    fn new() -> Pki {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "test CA");
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();

        let server_key = KeyPair::generate().unwrap();
        let server_params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        let server_cert = server_params.signed_by(&server_key, &ca).unwrap();

        let client_key = KeyPair::generate().unwrap();
        let mut client_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        client_params
            .distinguished_name
            .push(DnType::CommonName, "client");
        client_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let client_cert = client_params.signed_by(&client_key, &ca).unwrap();

        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.crt"), ca.pem()).unwrap();
        std::fs::write(dir.path().join("tls.crt"), server_cert.pem()).unwrap();
        std::fs::write(dir.path().join("tls.key"), server_key.serialize_pem()).unwrap();
        Pki {
            dir,
            ca_pem: ca.pem(),
            client_cert_pem: client_cert.pem(),
            client_key_pem: client_key.serialize_pem(),
        }
    }

    fn server_toml(&self, mtls: bool) -> String {
        let p = |f: &str| self.dir.path().join(f).display().to_string();
        let mut s = format!(
            "tls_cert_file = \"{}\"\ntls_key_file = \"{}\"\n",
            p("tls.crt"),
            p("tls.key")
        );
        if mtls {
            s += &format!("client_ca_file = \"{}\"\n", p("ca.crt"));
        }
        s
    }

    fn connector(&self, alpn: &[&[u8]], client_cert: bool) -> tokio_rustls::TlsConnector {
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(self.ca_pem.as_bytes()) {
            roots.add(c.unwrap()).unwrap();
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        let mut cfg = if client_cert {
            let certs: Vec<_> = CertificateDer::pem_slice_iter(self.client_cert_pem.as_bytes())
                .map(|c| c.unwrap())
                .collect();
            let key = PrivateKeyDer::from_pem_slice(self.client_key_pem.as_bytes()).unwrap();
            builder.with_client_auth_cert(certs, key).unwrap()
        } else {
            builder.with_no_client_auth()
        };
        cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        tokio_rustls::TlsConnector::from(Arc::new(cfg))
    }
}

/// One request over TLS; returns (negotiated ALPN, status).
async fn tls_request(
    h: &Harness,
    connector: &tokio_rustls::TlsConnector,
    token: &str,
) -> Result<(Option<Vec<u8>>, u16), String> {
    let tcp = TcpStream::connect(h.addr)
        .await
        .map_err(|e| e.to_string())?;
    let name = ServerName::try_from("localhost").unwrap();
    let tls = connector
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let alpn = tls.get_ref().1.alpn_protocol().map(|p| p.to_vec());
    let req = Request::get(format!("https://localhost:{}/tls", h.addr.port()))
        .header("authorization", format!("Bearer {token}"))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let status = if alpn.as_deref() == Some(b"h2") {
        let (mut send, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                .await
                .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let r = send.send_request(req).await.map_err(|e| e.to_string())?;
        r.status().as_u16()
    } else {
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let mut req = req;
        req.headers_mut().insert(
            "host",
            format!("localhost:{}", h.addr.port()).parse().unwrap(),
        );
        let r = send.send_request(req).await.map_err(|e| e.to_string())?;
        let status = r.status().as_u16();
        let _ = r.into_body().collect().await;
        status
    };
    Ok((alpn, status))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_serves_http1_and_http2_by_alpn() {
    let pki = Pki::new();
    let h = Harness::start_with(Opts {
        server_extra: pki.server_toml(false),
        ..Opts::default()
    })
    .await;
    let token = h.token();
    let (alpn, status) = tls_request(&h, &pki.connector(&[b"http/1.1"], false), &token)
        .await
        .unwrap();
    assert_eq!(alpn.as_deref(), Some(&b"http/1.1"[..]));
    assert_eq!(status, 200);
    assert_eq!(recorded_header(&h.upstream, "x-forwarded-proto"), ["https"]);

    let (alpn, status) = tls_request(&h, &pki.connector(&[b"h2", b"http/1.1"], false), &token)
        .await
        .unwrap();
    assert_eq!(alpn.as_deref(), Some(&b"h2"[..]));
    assert_eq!(status, 200);
    assert_eq!(h.upstream.request_count(), 2);
    assert_eq!(
        recorded_header(&h.upstream, "x-remote-user"),
        ["system:serviceaccount:default:default"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_are_required_when_client_ca_is_set() {
    let pki = Pki::new();
    let h = Harness::start_with(Opts {
        server_extra: pki.server_toml(true),
        ..Opts::default()
    })
    .await;
    let token = h.token();
    let without = tls_request(&h, &pki.connector(&[b"http/1.1"], false), &token).await;
    assert!(
        without.is_err(),
        "a client without certificate must not be served: {without:?}"
    );
    assert_eq!(h.upstream.request_count(), 0);
    let with = tls_request(&h, &pki.connector(&[b"http/1.1"], true), &token).await;
    assert_eq!(with.map(|r| r.1), Ok(200));
}

/// A renewed certificate (cert-manager writes new files) serves the next connections without
/// a restart; files that do not load keep the certificate in use.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_certificate_is_served_without_a_restart() {
    let pki = Pki::new();
    let renewed = Pki::new(); // signed by another CA: clients trusting only it see the swap
    let h = Harness::start_with(Opts {
        server_extra: pki.server_toml(false),
        ..Opts::default()
    })
    .await;
    let token = h.token();
    let old = pki.connector(&[b"http/1.1"], false);
    let new = renewed.connector(&[b"http/1.1"], false);
    assert_eq!(tls_request(&h, &old, &token).await.map(|r| r.1), Ok(200));
    assert!(tls_request(&h, &new, &token).await.is_err());

    for f in ["tls.crt", "tls.key"] {
        std::fs::copy(renewed.dir.path().join(f), pki.dir.path().join(f)).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while tls_request(&h, &new, &token).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "the renewed certificate was not served"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(tls_request(&h, &old, &token).await.is_err());

    // A broken pair: the renewed certificate stays.
    std::fs::write(pki.dir.path().join("tls.key"), "not a key").unwrap();
    tokio::time::sleep(tokenreview_proxy::tls::CERT_CHECK_INTERVAL * 2).await;
    assert_eq!(tls_request(&h, &new, &token).await.map(|r| r.1), Ok(200));
}

/// Read until the server closes; returns what it sent and how long it took.
async fn read_until_closed(s: &mut TcpStream, limit: Duration) -> (Vec<u8>, Duration) {
    let start = Instant::now();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(limit.saturating_sub(start.elapsed()), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (out, start.elapsed()),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => panic!("server did not close the connection within {limit:?}"),
        }
    }
}

/// A raw HTTP/1.1 GET of `path` carrying the harness's token.
fn raw_get(h: &Harness, path: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\r\n",
        h.token()
    )
}

/// The proxy with these `[server]` settings, and a raw connection to it.
async fn start_and_connect(server_extra: &str) -> (Harness, TcpStream) {
    let h = Harness::start_with(Opts {
        server_extra: server_extra.into(),
        ..Opts::default()
    })
    .await;
    let s = TcpStream::connect(h.addr).await.unwrap();
    (h, s)
}

/// Send `req` on `s` and check that a 200 comes back.
async fn expect_200(s: &mut TcpStream, req: &str) {
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 65536];
    let n = s.read(&mut buf).await.unwrap();
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_read_timeout_closes_slow_clients() {
    let h = Harness::start_with(Opts {
        server_extra: "header_read_timeout = \"500ms\"".into(),
        ..Opts::default()
    })
    .await;
    let mut s = TcpStream::connect(h.addr).await.unwrap();
    // Half a request head, then silence (slowloris).
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let (_, took) = read_until_closed(&mut s, Duration::from_secs(5)).await;
    assert!(
        took >= Duration::from_millis(400),
        "closed too early: {took:?}"
    );
    assert_eq!(h.upstream.request_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_connections_are_closed_after_idle_timeout() {
    let (h, mut s) = start_and_connect("idle_timeout = \"1s\"").await;
    let req = raw_get(&h, "/idle");
    expect_200(&mut s, &req).await;
    // A connection in use is not idle: a request every 400 ms for 2.4 s (over twice the
    // timeout) keeps it open.
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        expect_200(&mut s, &req).await;
    }
    let started = Instant::now();
    let (_, _) = read_until_closed(&mut s, Duration::from_secs(6)).await;
    let idle = started.elapsed();
    assert!(
        idle >= Duration::from_millis(800),
        "closed before idle_timeout: {idle:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_holds_extra_connections_until_a_slot_frees() {
    let h = Harness::start_with(Opts {
        server_extra: "max_connections = 1".into(),
        ..Opts::default()
    })
    .await;
    let req = format!(
        "GET /limit HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\r\n",
        h.token()
    );
    let mut first = TcpStream::connect(h.addr).await.unwrap();
    first.write_all(req.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 65536];
    let n = first.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));

    // The second connection is accepted by the kernel but not served while the first is open.
    let mut second = TcpStream::connect(h.addr).await.unwrap();
    second.write_all(req.as_bytes()).await.unwrap();
    let waited = tokio::time::timeout(Duration::from_millis(700), second.read(&mut buf)).await;
    assert!(
        waited.is_err(),
        "second connection was served beyond max_connections"
    );

    drop(first);
    let n = tokio::time::timeout(Duration::from_secs(5), second.read(&mut buf))
        .await
        .expect("served once the first connection closed")
        .unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_finishes_in_flight_requests_and_stops_listening() {
    let mut h = Harness::start().await;
    let token = h.token();
    let url = h.url("/slow/800");
    let in_flight = tokio::spawn(async move {
        get(&url, &[("authorization", &format!("Bearer {token}"))])
            .await
            .status
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let running = h.proxy.take().unwrap();
    let addr = h.addr;
    let admin = h.admin;
    let open = tokio::task::spawn_blocking(move || running.shutdown())
        .await
        .unwrap();
    assert_eq!(in_flight.await.unwrap(), 200, "in-flight request completes");
    assert_eq!(open, 0, "drained within the grace period");
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "no longer listening"
    );
    assert!(
        TcpStream::connect(admin).await.is_err(),
        "admin no longer listening"
    );
}

/// A request still waiting on the upstream when `shutdown_grace` runs out is cut, and
/// `shutdown` says so: the count of connections still open then, read before the workers'
/// runtimes (and with them those connections) end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_reports_the_connections_its_grace_cut() {
    let keys = vec![tokenreview_proxy::dev::TestKey::generate("RS256", "k1").unwrap()];
    let issuer =
        tokenreview_proxy::dev::MockIssuer::start(keys.iter().map(|k| k.public_jwk()).collect())
            .await
            .unwrap();
    let upstream = tokenreview_proxy::dev::EchoUpstream::start().await.unwrap();
    let text = config_text(&Opts::default(), &issuer.issuer_url(), &upstream.url())
        .replace("shutdown_grace = \"2s\"", "shutdown_grace = \"300ms\"");
    assert!(text.contains("300ms"));
    let mut h = Harness::start_from_text(text, issuer, upstream, keys, true).await;
    let mut held = TcpStream::connect(h.addr).await.unwrap();
    let req = format!(
        "GET /slow/5000 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\r\n",
        h.token()
    );
    held.write_all(req.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let running = h.proxy.take().unwrap();
    let started = Instant::now();
    let cut = tokio::task::spawn_blocking(move || running.shutdown())
        .await
        .unwrap();
    assert!(cut >= 1, "shutdown reported {cut} connections cut");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the grace bounds the drain: {:?}",
        started.elapsed()
    );
    let mut buf = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(2), held.read(&mut buf))
        .await
        .expect("the held connection is closed")
        .unwrap_or(0);
    assert_eq!(n, 0, "no answer: {}", String::from_utf8_lossy(&buf[..n]));
    assert!(
        captured_logs().contains("shutdown grace elapsed"),
        "the cut is logged as a warning"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_outlives_header_read_timeout() {
    // The header timeout bounds the wait for a request head once it has started; an idle
    // keep-alive connection between requests is governed by idle_timeout alone.
    let (h, mut s) =
        start_and_connect("header_read_timeout = \"300ms\"\nidle_timeout = \"3s\"").await;
    let req = raw_get(&h, "/idle");
    for _ in 0..2 {
        expect_200(&mut s, &req).await;
        // Four header timeouts of silence between requests.
        tokio::time::sleep(Duration::from_millis(1200)).await;
    }
    assert_eq!(h.upstream.request_count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_never_sends_a_head_is_closed_after_header_read_timeout() {
    let (_h, mut s) =
        start_and_connect("header_read_timeout = \"400ms\"\nidle_timeout = \"30s\"").await;
    let (sent, took) = read_until_closed(&mut s, Duration::from_secs(5)).await;
    assert!(sent.is_empty(), "{}", String::from_utf8_lossy(&sent));
    assert!(
        took >= Duration::from_millis(350),
        "closed too early: {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_head_after_a_good_request_is_cut_off_by_header_read_timeout() {
    let (h, mut s) =
        start_and_connect("header_read_timeout = \"400ms\"\nidle_timeout = \"30s\"").await;
    let req = raw_get(&h, "/first");
    expect_200(&mut s, &req).await;
    let mut buf = vec![0u8; 65536];
    // Quiet for longer than the header timeout (allowed: idle keep-alive), then a head
    // trickled a byte at a time, 100 ms apart: it keeps moving, so idle_timeout never fires,
    // but it does not arrive whole within the header timeout.
    tokio::time::sleep(Duration::from_millis(900)).await;
    let started = Instant::now();
    let mut closed = false;
    for b in req.as_bytes() {
        if started.elapsed() > Duration::from_secs(3) {
            break;
        }
        if s.write_all(&[*b]).await.is_err() {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        match tokio::time::timeout(Duration::from_millis(1), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            Ok(Ok(n)) => panic!("unexpected reply: {}", String::from_utf8_lossy(&buf[..n])),
            Err(_) => {}
        }
    }
    let took = started.elapsed();
    assert!(closed, "a head trickled over {took:?} was waited for");
    assert!(
        took >= Duration::from_millis(350),
        "closed too early: {took:?}"
    );
    assert!(
        took < Duration::from_millis(1500),
        "closed too late: {took:?}"
    );
    assert_eq!(h.upstream.request_count(), 1);
}

/// Two requests on one HTTP/2 connection, four header timeouts apart, while the client pings
/// every 100 ms as gRPC clients do: bytes arrive while no request is in flight, which on
/// HTTP/1 would be a head starting.
async fn two_h2_requests_apart<I>(h: &Harness, io: I, scheme: &str)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .keep_alive_interval(Duration::from_millis(100))
        .keep_alive_while_idle(true)
        .handshake(TokioIo::new(io))
        .await
        .unwrap();
    tokio::spawn(conn);
    let token = h.token();
    for i in 0..2 {
        let req = Request::get(format!("{scheme}://localhost:{}/h2/{i}", h.addr.port()))
            .header("authorization", format!("Bearer {token}"))
            .body(Empty::<Bytes>::new())
            .unwrap();
        let resp = sender
            .send_request(req)
            .await
            .unwrap_or_else(|e| panic!("{scheme} h2 request {i} on the same connection: {e}"));
        assert_eq!(resp.status(), 200);
        tokio::time::sleep(Duration::from_millis(1200)).await;
    }
    assert_eq!(h.upstream.request_count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_http2_connections_outlive_header_read_timeout() {
    let timeouts = "header_read_timeout = \"300ms\"\nidle_timeout = \"5s\"\n";
    // Cleartext (h2c by prior knowledge: told apart by the connection preface).
    let h = Harness::start_with(Opts {
        server_extra: timeouts.into(),
        ..Opts::default()
    })
    .await;
    let tcp = TcpStream::connect(h.addr).await.unwrap();
    two_h2_requests_apart(&h, tcp, "http").await;
    // TLS with ALPN h2.
    let pki = Pki::new();
    let h = Harness::start_with(Opts {
        server_extra: format!("{timeouts}{}", pki.server_toml(false)),
        ..Opts::default()
    })
    .await;
    let tcp = TcpStream::connect(h.addr).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let tls = pki
        .connector(&[b"h2"], false)
        .connect(name, tcp)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    two_h2_requests_apart(&h, tls, "https").await;
}

/// A cleartext connection is served by hyper's HTTP/1 server directly when its first bytes
/// rule out the h2c preface, and by the auto builder (which reads on) when they may be its
/// start. Both, with the first bytes trickling in on their own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_bytes_that_trickle_in_are_served_on_either_path() {
    let h = Harness::start().await;
    let get = raw_get(&h, "/trickle");
    let post = format!(
        "POST /trickle HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Length: 0\r\n\r\n",
        h.token()
    );
    // "G" rules the preface out; "P" and "PRI * " may be its start.
    for (req, first) in [(&get, 1), (&post, 1), (&post, 2), (&get, 0)] {
        let mut s = TcpStream::connect(h.addr).await.unwrap();
        if first > 0 {
            s.write_all(&req.as_bytes()[..first]).await.unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        expect_200(&mut s, &req[first..]).await;
        // And a second request on the same connection.
        expect_200(&mut s, req).await;
    }
    assert_eq!(h.upstream.request_count(), 8);
}

// ---- A client that goes away while its request waits on the upstream ----

/// An upstream that never answers: for each request head it receives it reports the arrival,
/// then how long after that the proxy closed the connection.
async fn silent_upstream() -> (
    std::net::SocketAddr,
    tokio::sync::mpsc::UnboundedReceiver<&'static str>,
    tokio::sync::mpsc::UnboundedReceiver<Duration>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (heads_tx, heads) = tokio::sync::mpsc::unbounded_channel();
    let (closed_tx, closed) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let heads_tx = heads_tx.clone();
            let closed_tx = closed_tx.clone();
            tokio::spawn(async move {
                let mut got = Vec::new();
                let mut buf = [0u8; 4096];
                let mut arrived = None;
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                    if arrived.is_none() && got.windows(4).any(|w| w == b"\r\n\r\n") {
                        arrived = Some(Instant::now());
                        let _ = heads_tx.send("head");
                    }
                }
                if let Some(at) = arrived {
                    let _ = closed_tx.send(at.elapsed());
                }
            });
        }
    });
    (addr, heads, closed)
}

/// How a test client leaves while its request waits on the upstream.
enum Leave {
    /// Close the socket: a FIN.
    Close,
    /// Close with linger 0: a reset.
    Reset,
    /// Over TLS: close_notify, then a FIN.
    TlsCloseNotify,
}

/// Send a request that the upstream never answers, leave as `leave` says once the upstream has
/// it, and check that the proxy closes the upstream connection soon after: seen on the tick,
/// within two ticks (500 ms) of the client leaving, plus scheduling.
async fn assert_upstream_cancelled_when_client_leaves(leave: Leave) {
    let (upstream, mut heads, mut closed) = silent_upstream().await;
    let pki = Pki::new();
    let tls = matches!(leave, Leave::TlsCloseNotify);
    // header_read_timeout 1s: a 250 ms tick. The upstream timeout (30 s) is far off.
    let h = start_with_upstream_url(
        Opts {
            server_extra: format!(
                "header_read_timeout = \"1s\"\n{}",
                if tls {
                    pki.server_toml(false)
                } else {
                    String::new()
                }
            ),
            upstream_extra: "timeout = \"30s\"".into(),
            ..Opts::default()
        },
        &format!("http://{upstream}"),
    )
    .await;
    let tcp = TcpStream::connect(h.addr).await.unwrap();
    let request = raw_get(&h, "/wait");
    let wait_for_head = async {
        tokio::time::timeout(Duration::from_secs(5), heads.recv())
            .await
            .expect("the request reaches the upstream")
            .unwrap();
    };
    match leave {
        Leave::Close | Leave::Reset => {
            if matches!(leave, Leave::Reset) {
                socket2::SockRef::from(&tcp)
                    .set_linger(Some(Duration::ZERO))
                    .unwrap();
            }
            let mut tcp = tcp;
            tcp.write_all(request.as_bytes()).await.unwrap();
            wait_for_head.await;
            drop(tcp);
        }
        Leave::TlsCloseNotify => {
            let name = ServerName::try_from("localhost").unwrap();
            let mut tls = pki
                .connector(&[b"http/1.1"], false)
                .connect(name, tcp)
                .await
                .unwrap();
            tls.write_all(request.as_bytes()).await.unwrap();
            wait_for_head.await;
            tls.shutdown().await.unwrap();
            drop(tls);
        }
    }
    let after = tokio::time::timeout(Duration::from_secs(5), closed.recv())
        .await
        .expect("the upstream request is cancelled soon after the client leaves, not at the 30 s timeout")
        .unwrap();
    assert!(after < Duration::from_secs(2), "cancelled after {after:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_closes_while_its_request_waits_cancels_the_upstream_request() {
    assert_upstream_cancelled_when_client_leaves(Leave::Close).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_resets_while_its_request_waits_cancels_the_upstream_request() {
    assert_upstream_cancelled_when_client_leaves(Leave::Reset).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_client_that_closes_while_its_request_waits_cancels_the_upstream_request() {
    // The close_notify record is still unread ahead of the FIN when the check looks.
    assert_upstream_cancelled_when_client_leaves(Leave::TlsCloseNotify).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_only_shuts_down_its_sending_side_gets_its_answer() {
    let (h, mut s) = start_and_connect("").await;
    s.write_all(raw_get(&h, "/half-closed").as_bytes())
        .await
        .unwrap();
    s.shutdown().await.unwrap();
    let (got, _) = read_until_closed(&mut s, Duration::from_secs(5)).await;
    let got = String::from_utf8_lossy(&got);
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    assert_eq!(h.upstream.request_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_answer_still_reaches_a_client_that_stays() {
    // The check must not mistake a quiet client for a gone one: a request that waits on the
    // upstream over several ticks is answered.
    let (h, mut s) = start_and_connect("header_read_timeout = \"1s\"").await;
    let started = Instant::now();
    expect_200(&mut s, &raw_get(&h, "/slow/1200")).await;
    assert!(started.elapsed() >= Duration::from_millis(1200));
    // And the connection stays usable.
    expect_200(&mut s, &raw_get(&h, "/after")).await;
}

//! `server.trusted_proxies` (SPEC section 14) over real sockets: a peer outside the list
//! cannot forge its address, scheme or host to the upstream in any header spelling; a peer in
//! it has its forwarding headers kept and appended to.
mod common;
use common::*;

use std::time::Duration;

use tokenreview_proxy::dev::RecordedRequest;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Forwarding headers a client might forge, in every spelling hyper passes through.
const FORGED: &[(&str, &str)] = &[
    ("X-Forwarded-For", "203.0.113.7"),
    ("x-forwarded-proto", "https"),
    ("X-Forwarded-Host", "admin.example"),
    ("X_Forwarded_For", "203.0.113.8"),
    ("X.Forwarded.For", "203.0.113.9"),
    ("x_FORWARDED_proto", "https"),
    ("X.Forwarded-Host", "admin.example"),
    ("X-Forwarded-Port", "443"),
    ("X-Forwarded-Prefix", "/admin"),
    ("Forwarded", "for=203.0.113.10;proto=https"),
    ("FORWARDED", "for=203.0.113.11"),
];

/// Send `GET /fwd` with the forged headers over a raw socket (names exactly as written).
async fn send_forged(h: &Harness) -> String {
    let mut request = format!(
        "GET /fwd HTTP/1.1\r\nHost: front.example\r\nAuthorization: Bearer {}\r\n",
        h.token()
    );
    for (k, v) in FORGED {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("Connection: close\r\n\r\n");
    let mut s = TcpStream::connect(h.addr).await.expect("connect");
    s.write_all(request.as_bytes()).await.expect("write");
    read_response(&mut s, Duration::from_secs(10)).await
}

/// The values of every header whose name, with `_`/`.` read as `-`, is `name`.
fn all_spellings(rec: &RecordedRequest, name: &str) -> Vec<String> {
    rec.headers
        .iter()
        .filter(|(k, _)| k.to_ascii_lowercase().replace(['_', '.'], "-") == name)
        .map(|(_, v)| v.clone())
        .collect()
}

fn last(h: &Harness) -> RecordedRequest {
    h.upstream
        .requests()
        .pop()
        .expect("a request reached the upstream")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_peer_cannot_forge_forwarding_headers_in_any_spelling() {
    // The peer (127.0.0.1) is not in the list.
    let h = Harness::start_with(Opts {
        server_extra: "trusted_proxies = [\"10.0.0.0/8\"]".into(),
        ..Default::default()
    })
    .await;
    // Control: straight to the upstream, every spelling arrives, so the checks below see
    // any that got through the proxy.
    get(&format!("{}/direct", h.upstream.url()), FORGED).await;
    let direct = last(&h);
    assert_eq!(all_spellings(&direct, "x-forwarded-for").len(), 3);
    assert_eq!(all_spellings(&direct, "forwarded").len(), 2);

    let resp = send_forged(&h).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let rec = last(&h);
    assert_eq!(all_spellings(&rec, "x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(all_spellings(&rec, "x-forwarded-proto"), ["http"]);
    assert_eq!(all_spellings(&rec, "x-forwarded-host"), ["front.example"]);
    for gone in ["x-forwarded-port", "x-forwarded-prefix", "forwarded"] {
        assert!(
            all_spellings(&rec, gone).is_empty(),
            "{gone}: {:?}",
            rec.headers
        );
    }
    for (_, v) in &rec.headers {
        assert!(
            !v.contains("203.0.113."),
            "a forged address reached the upstream: {v}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_trusted_proxies_is_the_default_and_trusts_no_one() {
    let h = Harness::start().await;
    let resp = send_forged(&h).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let rec = last(&h);
    assert_eq!(all_spellings(&rec, "x-forwarded-for"), ["127.0.0.1"]);
    assert!(all_spellings(&rec, "forwarded").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_peer_keeps_its_forwarding_headers_and_the_proxy_appends() {
    let h = Harness::start_with(Opts {
        server_extra: "trusted_proxies = [\"10.0.0.0/8\", \"127.0.0.0/8\"]".into(),
        ..Default::default()
    })
    .await;
    let resp = send_forged(&h).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let rec = last(&h);
    // What the trusted proxy said comes first, this hop last; other spellings pass as sent.
    let exact = |name: &str| -> Vec<String> {
        rec.headers
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .collect()
    };
    assert_eq!(exact("x-forwarded-for"), ["203.0.113.7", "127.0.0.1"]);
    assert_eq!(exact("x_forwarded_for"), ["203.0.113.8"]);
    assert_eq!(exact("x.forwarded.for"), ["203.0.113.9"]);
    assert_eq!(exact("x-forwarded-proto"), ["https", "http"]);
    assert_eq!(
        exact("x-forwarded-host"),
        ["admin.example", "front.example"]
    );
    assert_eq!(all_spellings(&rec, "x-forwarded-port"), ["443"]);
    assert_eq!(
        all_spellings(&rec, "forwarded"),
        [
            "for=203.0.113.10;proto=https",
            "for=203.0.113.11",
            "for=127.0.0.1;proto=http;host=front.example"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_changes_who_is_trusted_for_new_connections() {
    let h = Harness::start().await;
    let resp = send_forged(&h).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert_eq!(all_spellings(&last(&h), "x-forwarded-for"), ["127.0.0.1"]);

    let text = h
        .config_text
        .replacen("[server]", "[server]\ntrusted_proxies = [\"127.0.0.1\"]", 1);
    let config = tokenreview_proxy::config::Config::parse(&text, "(reloaded)").expect("parses");
    h.proxy
        .as_ref()
        .unwrap()
        .reloader()
        .apply(config)
        .expect("reload");
    let resp = send_forged(&h).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let rec = last(&h);
    assert_eq!(
        all_spellings(&rec, "x-forwarded-for").len(),
        4,
        "{:?}",
        rec.headers
    );
    assert_eq!(all_spellings(&rec, "forwarded").len(), 3);
}

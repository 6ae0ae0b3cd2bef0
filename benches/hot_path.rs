//! The per-request hot path, piece by piece, and one whole request in process.
//!
//! What is measured, and why:
//! - `extract_bearer`: finding the token in the request headers (runs on every request).
//! - `cache_key/*`: the keyed hash that names a cache entry, over a real ~1 KB Kubernetes token:
//!   keyed BLAKE3 (used) against HMAC-SHA-256 (the first candidate). This runs on every
//!   request, cached or not, so it bounds the cache-hit cost from below.
//! - `authenticate/cache_hit`: the whole `Authenticator::authenticate` for a token seen before
//!   (hash → moka lookup → expiry and key-still-published re-check). Includes one
//!   `block_on` of a current-thread runtime per iteration (~100 ns), noted in BENCHMARKS.md.
//! - `authenticate/miss_<alg>`: a never-seen token per iteration (cache miss: parse, claim
//!   checks, signature, identity, insert), for RS256, PS256, ES256, ES512, EdDSA.
//! - `authenticate/miss_RS256_warm` and `authenticate/signature_only_RS256`: misses over a pool
//!   of tokens minted up front (the `miss_*` runs mint in the setup, which leaves the caches
//!   cold), and the bare RSA check of one of them: the difference is what a miss costs beyond
//!   the signature (parse, claims, identity, interning, cache insert).
//! - `identity_headers`: building the X-Remote-* header values for a verified token (done once
//!   per cache entry, not per hit).
//! - `strip_spoofable`: scanning a typical request's headers for client-sent identity headers
//!   (and, from an untrusted peer, the default, forwarding headers).
//! - `claim_rules/*`: an OIDC token's cache miss (ES256) under claim-name mappings
//!   (`miss_claim_names`) and under three claim validation rules (one required value, two CEL)
//!   plus three CEL mappings (username, groups, an extra) (`miss_cel_rules`), and
//!   `apply_cel_rules` / `apply_claim_names`: the mapping and rules alone, without the rest of
//!   the miss. Rules run only on a miss: `authenticate/cache_hit` is unaffected by them.
//! - `end_to_end/cached_request`: one keep-alive HTTP/1.1 request through a running proxy to a
//!   minimal hyper upstream on loopback, token cached: latency, including two loopback hops.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokenreview_proxy::auth::{Audiences, Authenticator, Keyer};
use tokenreview_proxy::config::{Config, IdentityMode};
use tokenreview_proxy::dev::{self, KubeTokenSpec, TestKey};
use tokenreview_proxy::jwks::Issuer;
use tokenreview_proxy::keys::{parse_jwks, KeySet};
use tokenreview_proxy::pipeline::normalize;
use tokenreview_proxy::{identity, token};

const ISS: &str = "https://kubernetes.default.svc.cluster.local";
const AUD: &str = "bench-aud";

/// A one-worker config for issuer `name` with the given key-source line.
fn config(name: &str, upstream: &str, key_source: &str) -> Config {
    config_with(name, upstream, key_source, "")
}

/// [`config`] with `extra` lines in the issuer's table.
fn config_with(name: &str, upstream: &str, key_source: &str, extra: &str) -> Config {
    let text = format!(
        r#"
[server]
listen = "127.0.0.1:0"
workers = 1
[admin]
listen = "127.0.0.1:0"
[upstream]
url = "{upstream}"
[[issuers]]
name = "{name}"
issuer = "{ISS}"
{key_source}
audiences = ["{AUD}"]
algorithms = ["RS256", "PS256", "ES256", "ES512", "EdDSA"]
{extra}
"#
    );
    Config::parse(&text, "(bench)").expect("bench config")
}

/// An authenticator whose issuer already holds `keys` (no fetching).
fn authenticator(keys: &[TestKey]) -> Authenticator {
    authenticator_with(keys, "")
}

/// [`authenticator`] with `extra` lines in the issuer's table.
fn authenticator_with(keys: &[TestKey], extra: &str) -> Authenticator {
    tokenreview_proxy::metrics::install();
    let cfg = config_with(
        "bench",
        "http://127.0.0.1:1",
        "jwks_url = \"http://127.0.0.1:1/unused\"",
        extra,
    );
    let issuer = Arc::new(Issuer::new(cfg.issuers[0].clone()));
    let jwks = serde_json::to_vec(&dev::jwks(
        &keys.iter().map(|k| k.public_jwk()).collect::<Vec<_>>(),
    ))
    .unwrap();
    let parsed = parse_jwks(&jwks, &cfg.issuers[0].algorithms, None).unwrap();
    issuer.store.install(KeySet::new(parsed.keys));
    Authenticator::new(&cfg, vec![issuer])
}

fn kube_token(key: &TestKey) -> String {
    key.sign(&dev::kube_claims(&KubeTokenSpec::new(ISS, AUD)))
}

fn bench_pieces(c: &mut Criterion) {
    let rsa = TestKey::generate("RS256", "rsa").unwrap();
    let tok = kube_token(&rsa);
    println!("token length: {} bytes", tok.len());

    let mut headers = HeaderMap::new();
    headers.insert("host", HeaderValue::from_static("svc.example"));
    headers.insert("user-agent", HeaderValue::from_static("bench/1.0"));
    headers.insert("accept", HeaderValue::from_static("*/*"));
    headers.insert(
        "authorization",
        HeaderValue::from_str(&format!("Bearer {tok}")).unwrap(),
    );
    c.bench_function("extract_bearer", |b| {
        b.iter(|| match token::extract(std::hint::black_box(&headers)) {
            token::Bearer::Token(t) => t.len(),
            _ => 0,
        })
    });
    c.bench_function("strip_spoofable", |b| {
        b.iter_batched_ref(
            || headers.clone(),
            // An untrusted peer (the default): forwarding headers are looked for too.
            |h| normalize::strip_spoofable(h, true),
            BatchSize::SmallInput,
        )
    });

    let keyer = Keyer::random();
    let hmac_key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &[7u8; 32]);
    let mut g = c.benchmark_group("cache_key");
    g.bench_function("blake3_keyed", |b| {
        b.iter(|| keyer.key(std::hint::black_box(&tok), Audiences::Configured))
    });
    g.bench_function("hmac_sha256", |b| {
        b.iter(|| {
            let mut ctx = aws_lc_rs::hmac::Context::with_key(&hmac_key);
            ctx.update(&[0]);
            ctx.update(std::hint::black_box(tok.as_bytes()));
            ctx.sign()
        })
    });
    g.finish();

    let claims: tokenreview_proxy::verify::Claims = {
        let payload = tok.split('.').nth(1).unwrap();
        let bytes =
            base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload)
                .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    };
    let id = identity::kubernetes_identity(&claims, "default", "default");
    c.bench_function("identity_headers", |b| {
        b.iter(|| identity::identity_headers(std::hint::black_box(&id), IdentityMode::Remote))
    });
}

fn bench_authenticate(c: &mut Criterion) {
    let keys: Vec<TestKey> = ["RS256", "PS256", "ES256", "ES512", "EdDSA"]
        .iter()
        .map(|a| TestKey::generate(a, a).unwrap())
        .collect();
    let auth = authenticator(&keys);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut g = c.benchmark_group("authenticate");
    let cached = kube_token(&keys[0]);
    assert!(rt
        .block_on(auth.authenticate(&cached, Audiences::Configured))
        .is_ok());
    g.bench_function("cache_hit", |b| {
        b.iter(|| {
            rt.block_on(auth.authenticate(std::hint::black_box(&cached), Audiences::Configured))
                .is_ok()
        })
    });
    for key in &keys {
        g.bench_function(format!("miss_{}", key.alg()), |b| {
            b.iter_batched(
                || kube_token(key),
                |t| {
                    let ok = rt
                        .block_on(auth.authenticate(&t, Audiences::Configured))
                        .is_ok();
                    assert!(ok);
                },
                BatchSize::SmallInput,
            )
        });
    }

    let pool: Vec<String> = (0..2000).map(|_| kube_token(&keys[0])).collect();
    let mut fresh = authenticator(&keys[..1]);
    let mut next = 0;
    g.bench_function("miss_RS256_warm", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                if next == pool.len() {
                    // A new authenticator (empty cache) for the next pass over the pool.
                    fresh = authenticator(&keys[..1]);
                    next = 0;
                }
                let started = Instant::now();
                let ok = rt
                    .block_on(fresh.authenticate(&pool[next], Audiences::Configured))
                    .is_ok();
                total += started.elapsed();
                assert!(ok);
                next += 1;
            }
            total
        })
    });
    let jwks = serde_json::to_vec(&dev::jwks(&[keys[0].public_jwk()])).unwrap();
    let algs = [tokenreview_proxy::keys::Alg::RS256];
    let set = KeySet::new(parse_jwks(&jwks, &algs, None).unwrap().keys);
    let parsed = tokenreview_proxy::verify::parse(&pool[0], 16 * 1024).unwrap();
    g.bench_function("signature_only_RS256", |b| {
        b.iter(|| {
            tokenreview_proxy::verify::verify_signature(std::hint::black_box(&parsed), &set).is_ok()
        })
    });
    g.finish();
}

async fn tiny_upstream(
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    drop(req);
    Ok(Response::new(Full::new(Bytes::from_static(b"ok"))))
}

fn bench_end_to_end(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let upstream = rt.block_on(async {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((s, _)) = l.accept().await else { return };
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(
                            TokioIo::new(s),
                            hyper::service::service_fn(tiny_upstream),
                        )
                        .await;
                });
            }
        });
        addr
    });
    let key = TestKey::generate("RS256", "k").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let jwks = dir.path().join("jwks.json");
    std::fs::write(
        &jwks,
        serde_json::to_vec(&dev::jwks(&[key.public_jwk()])).unwrap(),
    )
    .unwrap();
    let cfg = config(
        "bench-e2e",
        &format!("http://{upstream}"),
        &format!("jwks_file = \"{}\"", jwks.display()),
    );
    let running = tokenreview_proxy::app::start(cfg).unwrap();
    let addr = running.addr;
    let tok = kube_token(&key);
    let auth = format!("Bearer {tok}");
    let mut sender = rt.block_on(async {
        tokenreview_proxy::jwks::wait_ready(
            &running.runtime().key_sources(),
            std::time::Duration::from_secs(5),
        )
        .await;
        let s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.set_nodelay(true).unwrap();
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s))
            .await
            .unwrap();
        tokio::spawn(conn);
        sender
    });
    c.bench_function("end_to_end/cached_request", |b| {
        b.iter(|| {
            rt.block_on(async {
                let req = Request::get("/bench")
                    .header("host", "bench")
                    .header("authorization", &auth)
                    .body(Empty::<Bytes>::new())
                    .unwrap();
                sender.ready().await.unwrap();
                let resp = sender.send_request(req).await.unwrap();
                assert_eq!(resp.status(), 200);
                resp.into_body().collect().await.unwrap();
            })
        })
    });
    running.signal_shutdown();
}

/// Claim-name mappings, the proxy's OIDC default shape.
const CLAIM_NAMES: &str = r#"
claims = "oidc"
[issuers.claim_mappings]
username = "email"
username_prefix = "oidc:"
groups = "groups"
groups_prefix = "oidc:"
uid = "sub"
"#;

/// Three claim validation rules and three expression mappings.
const CEL_RULES: &str = r#"
claims = "oidc"
[[issuers.claim_validation_rules]]
claim = "hd"
required_value = "example.com"
[[issuers.claim_validation_rules]]
expression = "claims.exp - claims.nbf <= 86400"
message = "lifetime"
[[issuers.claim_validation_rules]]
expression = "claims.email_verified == true"
message = "unverified"
[issuers.claim_mappings]
username_expression = "'oidc:' + claims.email"
groups_expression = "claims.groups.map(g, 'oidc:' + g)"
uid = "sub"
extra = [{ key = "example.com/tenant", value_expression = "claims.tenant" }]
"#;

fn oidc_token(key: &TestKey) -> String {
    let now = dev::now_unix();
    key.sign(&serde_json::json!({
        "iss": ISS, "aud": AUD, "sub": dev::random_uuid(), "iat": now, "nbf": now,
        "exp": now + 3600, "email": "alice@example.com", "email_verified": true,
        "hd": "example.com", "groups": ["dev", "ops", "sre"], "tenant": "t1",
    }))
}

fn bench_claim_rules(c: &mut Criterion) {
    let key = TestKey::generate("ES256", "ES256").unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut g = c.benchmark_group("claim_rules");
    for (name, rules) in [("claim_names", CLAIM_NAMES), ("cel_rules", CEL_RULES)] {
        let auth = authenticator_with(std::slice::from_ref(&key), rules);
        g.bench_function(format!("miss_{name}"), |b| {
            b.iter_batched(
                || oidc_token(&key),
                |t| {
                    let r = rt.block_on(auth.authenticate(&t, Audiences::Configured));
                    assert!(r.is_ok(), "{:?}", r.err());
                },
                BatchSize::SmallInput,
            )
        });
        let cfg = config_with(
            "bench",
            "http://127.0.0.1:1",
            "jwks_url = \"http://127.0.0.1:1/u\"",
            rules,
        );
        let compiled = cfg.issuers[0].claim_rules.clone().unwrap();
        let t = oidc_token(&key);
        let payload = base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            t.split('.').nth(1).unwrap(),
        )
        .unwrap();
        g.bench_function(format!("apply_{name}"), |b| {
            b.iter(|| compiled.apply(std::hint::black_box(&payload), None).is_ok())
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .measurement_time(std::time::Duration::from_secs(3))
        .warm_up_time(std::time::Duration::from_secs(1))
        .sample_size(50);
    targets = bench_pieces, bench_authenticate, bench_claim_rules, bench_end_to_end
}
criterion_main!(benches);

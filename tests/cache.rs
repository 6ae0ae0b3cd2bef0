//! The verification cache (SPEC sections 1.2, 3 `[cache]`, 8): one signature verification per
//! token and audience set, negative caching, expiry re-checks, and the size bound.
//!
//! Cache metrics are process-wide and `verify_cache_total` has no issuer label, so every test in
//! this file holds `LOCK` for its whole run and compares before/after deltas. Signature
//! verifications are counted per test through the `verify_duration_seconds` histogram of a
//! uniquely named issuer.
mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use tokenreview_proxy::dev::{self, IssuerMode, MockIssuer, TestKey};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const CACHE_HIT: &str = r#"tokenreview_proxy_verify_cache_total{result="hit"}"#;
const CACHE_MISS: &str = r#"tokenreview_proxy_verify_cache_total{result="miss"}"#;
const CACHE_NEGATIVE_HIT: &str = r#"tokenreview_proxy_verify_cache_total{result="negative_hit"}"#;
const CACHE_ENTRIES: &str = "tokenreview_proxy_verify_cache_entries";
const TR_V1: &str = "/apis/authentication.k8s.io/v1/tokenreviews";

/// Signature verifications done so far for the issuer named `issuer`.
async fn verifications(h: &Harness, issuer: &str) -> f64 {
    h.metric(&format!(
        "tokenreview_proxy_verify_duration_seconds_count{{issuer=\"{issuer}\"}}"
    ))
    .await
}

fn opts(issuer: &str) -> Opts {
    Opts {
        issuer_name: Some(issuer.to_string()),
        ..Opts::default()
    }
}

/// The `error_description` of a 401's `WWW-Authenticate`, if any.
fn error_description(r: &Resp) -> Option<String> {
    let v = r.header("www-authenticate")?;
    let (_, rest) = v.split_once("error_description=\"")?;
    rest.split('"').next().map(str::to_string)
}

/// Same claims as a valid token, signed by a key the issuer does not publish under the same kid.
fn bad_signature_token(h: &Harness) -> String {
    let impostor = TestKey::generate(h.key().alg(), h.key().kid()).expect("keygen");
    impostor.sign(&dev::kube_claims(&h.spec()))
}

async fn review(h: &Harness, token: &str, audiences: &[&str]) -> Value {
    let body = json!({
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenReview",
        "spec": {"token": token, "audiences": audiences},
    });
    let r = post_json(&h.url(TR_V1), &[], &body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

/// Open `n` connections first, then write one `GET path` with `token` on each back to back, so
/// the requests reach the proxy together instead of one TCP handshake apart; returns each
/// response's status code.
async fn burst(addr: SocketAddr, path: &str, token: &str, n: usize) -> Vec<u16> {
    let mut conns = Vec::with_capacity(n);
    for _ in 0..n {
        let tcp = TcpStream::connect(addr).await.expect("connect to proxy");
        tcp.set_nodelay(true).expect("nodelay");
        conns.push(tcp);
    }
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    );
    for c in &mut conns {
        c.write_all(request.as_bytes())
            .await
            .expect("write request");
    }
    let mut tasks = tokio::task::JoinSet::new();
    for mut c in conns {
        tasks.spawn(async move {
            let mut buf = Vec::new();
            c.read_to_end(&mut buf).await.expect("read response");
            let text = String::from_utf8_lossy(&buf);
            let status = text.split(' ').nth(1).and_then(|s| s.parse::<u16>().ok());
            status.unwrap_or_else(|| panic!("no HTTP status line in {text:?}"))
        });
    }
    let mut statuses = Vec::with_capacity(n);
    while let Some(s) = tasks.join_next().await {
        statuses.push(s.expect("response task"));
    }
    statuses
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_with_one_new_token_verify_once() {
    const KEYS: usize = 64;
    let _guard = LOCK.lock().await;
    let issuer = "cache-coalesce";
    // Tokens without `kid`, signed by the last of many published keys: one verification tries
    // every key (SPEC 4), which keeps it in flight long enough for the simultaneous requests
    // to pile up behind it. Without coalescing they would each verify.
    let keys: Vec<TestKey> = (0..KEYS)
        .map(|i| TestKey::generate("ES256", &format!("e{i}")).expect("keygen"))
        .collect();
    let signer = keys.last().expect("keys").clone();
    let h = Harness::start_with(Opts {
        keys: Some(keys),
        ..opts(issuer)
    })
    .await;
    let header = json!({"alg": "ES256", "typ": "JWT"});
    // Three fresh tokens, 300 simultaneous requests each: every token costs exactly one
    // signature verification, however many requests ask for it at once.
    for round in 1..=3 {
        let token = signer.sign_with_header(&header, &dev::kube_claims(&h.spec()));
        let before = verifications(&h, issuer).await;
        let statuses = burst(h.addr, "/coalesce", &token, 300).await;
        assert_eq!(statuses.len(), 300);
        assert!(
            statuses.iter().all(|s| *s == 200),
            "round {round}: {:?}",
            statuses.iter().filter(|s| **s != 200).collect::<Vec<_>>()
        );
        assert_eq!(
            verifications(&h, issuer).await - before,
            1.0,
            "round {round}: 300 concurrent requests with one token must cost one verification"
        );
    }
    assert_eq!(h.upstream.request_count(), 900);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_signature_is_verified_once_then_negatively_cached() {
    let _guard = LOCK.lock().await;
    let issuer = "cache-negative";
    let h = Harness::start_with(opts(issuer)).await;
    let token = bad_signature_token(&h);
    let rejections = format!(
        "tokenreview_proxy_token_rejections_total{{issuer=\"{issuer}\",reason=\"bad_signature\"}}"
    );
    let (v0, neg0, rej0) = (
        verifications(&h, issuer).await,
        h.metric(CACHE_NEGATIVE_HIT).await,
        h.metric(&rejections).await,
    );

    for i in 0..50 {
        let r = h.get_with_token("/neg", &token, &[]).await;
        assert_eq!(r.status, 401, "request {i}: {}", r.text());
        assert_eq!(
            error_description(&r).as_deref(),
            Some("bad_signature"),
            "request {i}"
        );
    }

    assert_eq!(verifications(&h, issuer).await - v0, 1.0);
    assert_eq!(h.metric(CACHE_NEGATIVE_HIT).await - neg0, 49.0);
    // Every use is still counted as a rejection, cached or not.
    assert_eq!(h.metric(&rejections).await - rej0, 50.0);
    assert_eq!(h.upstream.request_count(), 0);
}

/// Sleep until the wall clock is `frac` (0..1) of a second past a whole unix second.
async fn align_to_subsecond(frac: f64) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64();
    let wait = (frac - now.fract()).rem_euclid(1.0);
    tokio::time::sleep(Duration::from_secs_f64(wait)).await;
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64()
}

/// Sleep until unix time `t` (seconds, fractional).
async fn sleep_until_unix(t: f64) {
    let now = unix_now();
    if t > now {
        tokio::time::sleep(Duration::from_secs_f64(t - now)).await;
    }
}

/// A harness with `clock_skew = "0s"`, and a 3 s token for service account `sa` with its `exp`.
/// Minted half-way through a second, so that `exp` (whole seconds) falls while an entry cached
/// for "3 s from now" may still be in the cache: the re-check on a hit must catch it.
async fn short_lived_token(issuer: &str, sa: &str) -> (Harness, String, f64) {
    let h = Harness::start_with(Opts {
        issuer_extra: r#"clock_skew = "0s""#.into(),
        ..opts(issuer)
    })
    .await;
    let mut spec = h.spec();
    spec.ttl_secs = 3;
    spec.service_account = sa.into();
    align_to_subsecond(0.5).await;
    let claims = dev::kube_claims(&spec);
    let exp = claims["exp"].as_u64().expect("exp") as f64;
    let token = h.key().sign(&claims);
    (h, token, exp)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_token_is_rejected_once_it_expires() {
    let _guard = LOCK.lock().await;
    let issuer = "cache-expiry";
    let (h, token, exp) = short_lived_token(issuer, "default").await;
    let v0 = verifications(&h, issuer).await;

    let r = h.get_with_token("/exp", &token, &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let hits = h.metric(CACHE_HIT).await;
    let r = h.get_with_token("/exp", &token, &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        h.metric(CACHE_HIT).await - hits,
        1.0,
        "second use is a cache hit"
    );
    assert_eq!(verifications(&h, issuer).await - v0, 1.0);

    // Just past exp, and again well past it (~3.5 s after minting).
    for at in [exp + 0.2, exp + 0.9] {
        sleep_until_unix(at).await;
        let r = h.get_with_token("/exp", &token, &[]).await;
        assert_eq!(r.status, 401, "{}", r.text());
        assert_eq!(error_description(&r).as_deref(), Some("expired"));
    }
    assert_eq!(verifications(&h, issuer).await - v0, 1.0);
    assert_eq!(h.upstream.request_count(), 2);
}

/// A client repeating its token on one keep-alive connection is answered from the
/// connection's memo: still re-checked on every request (expiry here), and a different token
/// on the same connection is never answered with the memoized identity.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_repeats_are_rechecked_and_never_mix_identities() {
    let _guard = LOCK.lock().await;
    let issuer = "cache-keepalive";
    let (h, first, exp) = short_lived_token(issuer, "first").await;
    let mut other = h.spec();
    other.service_account = "second".into();
    let second = h.key().sign(&dev::kube_claims(&other));
    let bad = bad_signature_token(&h);
    // Same service account as `first`, another pod: same shared principal, other per-token
    // headers (which the memo keeps per connection).
    let mut spec = h.spec();
    spec.service_account = "first".into();
    spec.pod = Some(("sibling-pod".into(), "sibling-uid".into()));
    spec.jti = Some("sibling-jti".into());
    let sibling = h.key().sign(&dev::kube_claims(&spec));
    let user = |h: &Harness| recorded_header(&h.upstream, "x-remote-user");
    let extra = |h: &Harness, key: &str| {
        recorded_header(
            &h.upstream,
            &format!("x-remote-extra-authentication.kubernetes.io%2f{key}"),
        )
    };

    let mut conn = KeepAlive::open(h.addr).await;
    let v0 = verifications(&h, issuer).await;
    for _ in 0..3 {
        let r = conn.get_with_token("/ka", &first).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(user(&h), ["system:serviceaccount:default:first"]);
        assert_eq!(extra(&h, "pod-name"), ["demo-pod"]);
    }
    let first_jti = extra(&h, "credential-id");
    assert_eq!(conn.get_with_token("/ka", &sibling).await.status, 200);
    assert_eq!(user(&h), ["system:serviceaccount:default:first"]);
    assert_eq!(extra(&h, "pod-name"), ["sibling-pod"]);
    assert_eq!(extra(&h, "pod-uid"), ["sibling-uid"]);
    assert_eq!(extra(&h, "credential-id"), ["JTI=sibling-jti"]);
    assert_eq!(conn.get_with_token("/ka", &first).await.status, 200);
    assert_eq!(extra(&h, "pod-name"), ["demo-pod"]);
    assert_eq!(extra(&h, "credential-id"), first_jti);
    let hits = h.metric(CACHE_HIT).await;
    assert_eq!(conn.get_with_token("/ka", &second).await.status, 200);
    assert_eq!(user(&h), ["system:serviceaccount:default:second"]);
    let r = conn.get_with_token("/ka", &bad).await;
    assert_eq!(r.status, 401);
    assert_eq!(error_description(&r).as_deref(), Some("bad_signature"));
    assert_eq!(conn.get_with_token("/ka", &first).await.status, 200);
    assert_eq!(user(&h), ["system:serviceaccount:default:first"]);
    assert_eq!(
        h.metric(CACHE_HIT).await - hits,
        1.0,
        "first again: a cache hit (the memo held the bad token's miss, not first)"
    );
    assert_eq!(verifications(&h, issuer).await - v0, 4.0);
    let upstream_before = h.upstream.request_count();

    // Repeats every 50 ms across `exp`: the memo (trusted up to a second) is young at every
    // moment, so only the per-request re-check can refuse the first request after expiry.
    let (mut before, mut after, mut passed) = (0, 0, 0);
    while unix_now() < exp + 0.5 {
        let sent = unix_now();
        let r = conn.get_with_token("/ka", &first).await;
        if r.status == 200 {
            assert_eq!(after, 0, "accepted again after a refusal");
            passed += 1;
        }
        if sent < exp - 0.05 {
            assert_eq!(r.status, 200, "{}", r.text());
            before += 1;
        } else if sent >= exp + 0.05 {
            assert_eq!(r.status, 401, "{}", r.text());
            assert_eq!(error_description(&r).as_deref(), Some("expired"));
            after += 1;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        before > 0 && after > 0,
        "{before} before, {after} after exp"
    );
    assert_eq!(h.upstream.request_count(), upstream_before + passed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_entries_are_per_audience_set() {
    let _guard = LOCK.lock().await;
    let issuer = "cache-audience";
    let h = Harness::start_with(opts(issuer)).await;

    // Token for audience "a" only.
    let mut spec = h.spec();
    spec.audiences = vec!["a".into()];
    let only_a = h.key().sign(&dev::kube_claims(&spec));
    let v0 = verifications(&h, issuer).await;

    let st = &review(&h, &only_a, &["a"]).await["status"];
    assert_eq!(st["authenticated"], true, "{st}");
    assert_eq!(st["audiences"], json!(["a"]));
    // Cached for ["a"]: asking for ["b"] is a different question, and the answer is no.
    let st = &review(&h, &only_a, &["b"]).await["status"];
    assert_eq!(st["authenticated"], false, "{st}");
    assert_eq!(st["error"], "audience_mismatch");
    // The proxy path asks for the configured audience: also not served from the ["a"] entry.
    let r = h.get_with_token("/aud", &only_a, &[]).await;
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(error_description(&r).as_deref(), Some("audience_mismatch"));
    // Still accepted for ["a"].
    let st = &review(&h, &only_a, &["a"]).await["status"];
    assert_eq!(st["authenticated"], true, "{st}");
    assert_eq!(verifications(&h, issuer).await - v0, 1.0);

    // A token valid for both: each audience set is its own cache entry (its own verification),
    // and a repeat of either is a hit.
    spec.audiences = vec!["a".into(), AUD.into()];
    let both = h.key().sign(&dev::kube_claims(&spec));
    let v1 = verifications(&h, issuer).await;
    let st = &review(&h, &both, &["a"]).await["status"];
    assert_eq!(st["authenticated"], true, "{st}");
    assert_eq!(st["audiences"], json!(["a"]));
    assert_eq!(verifications(&h, issuer).await - v1, 1.0);
    let r = h.get_with_token("/aud", &both, &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        verifications(&h, issuer).await - v1,
        2.0,
        "configured-audience lookups must not reuse the [\"a\"] entry"
    );
    let hits = h.metric(CACHE_HIT).await;
    let r = h.get_with_token("/aud", &both, &[]).await;
    assert_eq!(r.status, 200);
    let st = &review(&h, &both, &["a"]).await["status"];
    assert_eq!(st["authenticated"], true, "{st}");
    assert_eq!(h.metric(CACHE_HIT).await - hits, 2.0);
    assert_eq!(verifications(&h, issuer).await - v1, 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negative_ttl_bounds_how_long_a_rejection_is_cached() {
    let _guard = LOCK.lock().await;
    let issuer = "cache-negative-ttl";
    let h = Harness::start_with(Opts {
        cache_extra: r#"negative_ttl = "1s""#.into(),
        ..opts(issuer)
    })
    .await;
    let token = bad_signature_token(&h);
    let v0 = verifications(&h, issuer).await;
    for _ in 0..3 {
        let r = h.get_with_token("/nttl", &token, &[]).await;
        assert_eq!(r.status, 401);
        assert_eq!(error_description(&r).as_deref(), Some("bad_signature"));
    }
    assert_eq!(verifications(&h, issuer).await - v0, 1.0);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let r = h.get_with_token("/nttl", &token, &[]).await;
    assert_eq!(r.status, 401);
    assert_eq!(
        verifications(&h, issuer).await - v0,
        2.0,
        "after negative_ttl the rejection must be re-verified"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issuer_unavailable_is_not_negatively_cached() {
    let _guard = LOCK.lock().await;
    let issuer_name = "cache-unavailable";
    let key = TestKey::generate("RS256", "k1").expect("keygen");
    let issuer = MockIssuer::start(vec![key.public_jwk()])
        .await
        .expect("mock issuer");
    issuer.set_mode(IssuerMode::Down);
    // A long negative_ttl: if "unavailable" were cached like a rejection, it would still be
    // served long after the keys arrive.
    let h = Harness::start_with_issuer(
        Opts {
            cache_extra: r#"negative_ttl = "60s""#.into(),
            no_wait: true,
            ..opts(issuer_name)
        },
        issuer,
        vec![key],
    )
    .await;
    let token = h.token();
    let neg0 = h.metric(CACHE_NEGATIVE_HIT).await;
    for _ in 0..3 {
        let r = h.get_with_token("/down", &token, &[]).await;
        assert_eq!(r.status, 503, "{}", r.text());
        assert!(r.header("retry-after").is_some());
    }
    let st = &post_json(
        &h.url(TR_V1),
        &[],
        &json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}}),
    )
    .await;
    assert_eq!(
        st.status,
        503,
        "TokenReview cannot decide without keys: {}",
        st.text()
    );

    h.issuer.set_mode(IssuerMode::Normal);
    h.wait_ready(Duration::from_secs(15)).await;
    let r = h.get_with_token("/up", &token, &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(h.metric(CACHE_NEGATIVE_HIT).await - neg0, 0.0);
    assert_eq!(verifications(&h, issuer_name).await, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_entries_bounds_the_cache() {
    const TOKENS: usize = 3000;
    const CONCURRENCY: usize = 16;
    let _guard = LOCK.lock().await;
    let issuer = "cache-bound";
    let h = Harness::start_with(Opts {
        cache_extra: "max_entries = 1000".into(),
        keys: Some(vec![TestKey::generate("ES256", "e1").expect("keygen")]),
        ..opts(issuer)
    })
    .await;
    let tokens: Vec<String> = (0..TOKENS).map(|_| h.token()).collect();
    let distinct: std::collections::HashSet<&String> = tokens.iter().collect();
    assert_eq!(distinct.len(), TOKENS, "every token carries its own jti");
    let v0 = verifications(&h, issuer).await;
    let miss0 = h.metric(CACHE_MISS).await;

    let tokens = Arc::new(tokens);
    let url = h.url("/bound");
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..CONCURRENCY {
        let (tokens, url) = (tokens.clone(), url.clone());
        tasks.spawn(async move {
            for t in tokens.iter().skip(w).step_by(CONCURRENCY) {
                let auth = format!("Bearer {t}");
                let r = get(&url, &[("authorization", auth.as_str())]).await;
                assert_eq!(r.status, 200, "{}", r.text());
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("request worker");
    }
    assert_eq!(verifications(&h, issuer).await - v0, TOKENS as f64);
    assert_eq!(h.metric(CACHE_MISS).await - miss0, TOKENS as f64);

    // /metrics runs the cache's pending maintenance and refreshes the gauge.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = h.metrics().await;
    let entries = h.metric(CACHE_ENTRIES).await;
    assert!(
        entries <= 1100.0,
        "cache holds {entries} entries with max_entries = 1000"
    );
    assert!(
        entries >= 500.0,
        "the gauge must reflect a filled cache, got {entries}"
    );
}

/// Rejections have a bound of their own: a flood of distinct bad tokens, many more than
/// `max_negative_entries`, neither evicts an accepted result nor keeps a new one out, and the
/// entries stay within the accepted results plus `max_negative_entries`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_bad_tokens_stays_within_max_negative_entries_and_spares_valid_results() {
    const BAD: usize = 600;
    const MAX_NEGATIVE: f64 = 50.0;
    let _guard = LOCK.lock().await;
    let issuer = "cache-negative-bound";
    let h = Harness::start_with(Opts {
        cache_extra: "max_entries = 1000\nmax_negative_entries = 50\nnegative_ttl = \"60s\"".into(),
        ..opts(issuer)
    })
    .await;
    let valid = h.token();
    let r = h.get_with_token("/before", &valid, &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v0 = verifications(&h, issuer).await;

    // Distinct malformed tokens: each one verified once and remembered as a rejection.
    let miss0 = h.metric(CACHE_MISS).await;
    for i in 0..BAD {
        let r = h
            .get_with_token("/flood", &format!("bad-token-{i}"), &[])
            .await;
        assert_eq!(r.status, 401, "{}", r.text());
    }
    assert_eq!(h.metric(CACHE_MISS).await - miss0, BAD as f64);
    let neg0 = h.metric(CACHE_NEGATIVE_HIT).await;
    let latest = format!("bad-token-{}", BAD - 1);
    assert_eq!(h.get_with_token("/flood", &latest, &[]).await.status, 401);
    assert_eq!(
        h.metric(CACHE_NEGATIVE_HIT).await - neg0,
        1.0,
        "the latest rejection is remembered"
    );

    // The token cached before the flood is still a hit: not verified again.
    let hits = h.metric(CACHE_HIT).await;
    let r = h.get_with_token("/after", &valid, &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(h.metric(CACHE_HIT).await - hits, 1.0);
    assert_eq!(verifications(&h, issuer).await - v0, 0.0);

    // A token first seen after the flood is cached as well.
    let fresh = h.token();
    let hits = h.metric(CACHE_HIT).await;
    for _ in 0..2 {
        let r = h.get_with_token("/fresh", &fresh, &[]).await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    assert_eq!(h.metric(CACHE_HIT).await - hits, 1.0);
    assert_eq!(verifications(&h, issuer).await - v0, 1.0);

    // /metrics runs the caches' pending maintenance and refreshes the gauge.
    let _ = h.metrics().await;
    let entries = h.metric(CACHE_ENTRIES).await;
    assert!(
        entries <= 2.0 + MAX_NEGATIVE,
        "{entries} entries: 2 accepted and at most {MAX_NEGATIVE} rejections expected"
    );
    assert!(entries >= 2.0, "the accepted entries count too: {entries}");
}

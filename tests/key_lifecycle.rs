//! Key lifecycle (SPEC section 9) end to end, over real loopback sockets: rotation, the
//! coalesced and rate-limited unknown-`kid` refetch, withdrawn keys, an unreachable issuer
//! (`max_stale`, 503 + `Retry-After`, recovery), bad JWKS documents, start-up before keys
//! arrive, `token_file`, `ca_file`, `jwks_file` symlink swaps, several independent issuers,
//! `Cache-Control: max-age`, and the JWKS metrics.
//!
//! Every test that reads metrics uses its own issuer name: the Prometheus recorder is
//! process-wide, shared by all tests of this binary.
mod common;
use common::pki::test_pki;
use common::*;

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::StatusCode;
use tokenreview_proxy::dev::{self, EchoUpstream, IssuerMode, KubeTokenSpec, MockIssuer, TestKey};

const POLL: Duration = Duration::from_millis(50);

/// Poll `probe` until it returns `Ok`, failing with its last `Err` after `timeout`.
/// Returns how long it took.
async fn wait_for<F, Fut>(timeout: Duration, what: &str, mut probe: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let start = Instant::now();
    loop {
        match probe().await {
            Ok(()) => return start.elapsed(),
            Err(last) => assert!(
                start.elapsed() < timeout,
                "{what}: not within {timeout:?}; last observation: {last}"
            ),
        }
        tokio::time::sleep(POLL).await;
    }
}

fn es256(kid: &str) -> TestKey {
    TestKey::generate("ES256", kid).expect("keygen")
}

fn jwks_of(keys: &[&TestKey]) -> Vec<serde_json::Value> {
    keys.iter().map(|k| k.public_jwk()).collect()
}

/// A fresh (never cached: random jti and uids) token for the harness's issuer.
fn token(h: &Harness, key: &TestKey) -> String {
    key.sign(&dev::kube_claims(&h.spec()))
}

fn token_for_issuer(issuer_url: &str, key: &TestKey) -> String {
    key.sign(&dev::kube_claims(&KubeTokenSpec::new(issuer_url, AUD)))
}

/// `name{k="v",...}` as the exposition renders it (labels in registration order).
fn series(name: &str, labels: &[(&str, &str)]) -> String {
    let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    format!("{name}{{{}}}", labels.join(","))
}

fn refreshes(issuer: &str, result: &str) -> String {
    series(
        "tokenreview_proxy_jwks_refreshes_total",
        &[("issuer", issuer), ("result", result)],
    )
}

async fn status_of(h: &Harness, token: &str) -> StatusCode {
    h.get_with_token("/", token, &[]).await.status
}

async fn readyz(h: &Harness) -> Resp {
    get(&format!("http://{}/readyz", h.admin), &[]).await
}

fn assert_unknown_key(r: &Resp) {
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text());
    let www = r.header("www-authenticate").unwrap_or_default();
    assert!(
        www.contains("error_description=\"unknown_key\""),
        "WWW-Authenticate: {www}"
    );
}

fn toml_path(p: &Path) -> String {
    let s = p.to_str().expect("temp paths are UTF-8");
    assert!(!s.contains(['"', '\\']), "path needs no TOML escaping: {s}");
    format!("\"{s}\"")
}

/// Start the proxy from a complete config text (for layouts `config_text` cannot express).
async fn start_proxy_text(
    text: String,
    issuer: MockIssuer,
    upstream: EchoUpstream,
    keys: Vec<TestKey>,
) -> Harness {
    Harness::start_from_text(text, issuer, upstream, keys, true).await
}

// 1
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_new_kid_passes_after_exactly_one_jwks_fetch() {
    let old = es256("old");
    let new = es256("new");
    let h = Harness::start_with(Opts {
        issuer_extra: "refresh_interval = \"1h\"".into(),
        keys: Some(vec![old.clone()]),
        ..Opts::default()
    })
    .await;
    assert_eq!(status_of(&h, &token(&h, &old)).await, 200);

    h.issuer.set_keys(jwks_of(&[&old, &new]));
    let before = h.issuer.jwks_fetches();
    let r = h.get_with_token("/", &token(&h, &new), &[]).await;
    assert_eq!(r.status, 200, "new kid after rotation: {}", r.text());
    assert_eq!(
        h.issuer.jwks_fetches(),
        before + 1,
        "the unknown kid must cause exactly one JWKS fetch"
    );

    // The new key is now known: more of its tokens, and the old key's, cost no fetch.
    assert_eq!(status_of(&h, &token(&h, &new)).await, 200);
    assert_eq!(status_of(&h, &token(&h, &old)).await, 200);
    assert_eq!(h.issuer.jwks_fetches(), before + 1);
}

// 2
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_kid_flood_refetches_at_most_once_per_min_refetch_interval() {
    let name = "lc-flood";
    let h = Arc::new(
        Harness::start_with(Opts {
            issuer_name: Some(name.into()),
            issuer_extra: "refresh_interval = \"1h\"\nmin_refetch_interval = \"30s\"".into(),
            keys: Some(vec![es256("published")]),
            ..Opts::default()
        })
        .await,
    );
    let unpublished: Vec<TestKey> = (0..6).map(|i| es256(&format!("rogue-{i}"))).collect();
    let tokens: Vec<String> = (0..120)
        .map(|i| token(&h, &unpublished[i % unpublished.len()]))
        .collect();
    let suppressed_series = series(
        "tokenreview_proxy_jwks_refetch_suppressed_total",
        &[("issuer", name)],
    );
    let suppressed_before = h.metric(&suppressed_series).await;
    let fetches_before = h.issuer.jwks_fetches();

    let limit = Arc::new(tokio::sync::Semaphore::new(32));
    let mut tasks = tokio::task::JoinSet::new();
    for t in tokens {
        let (h, limit) = (h.clone(), limit.clone());
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await.expect("semaphore");
            h.get_with_token("/", &t, &[]).await
        });
    }
    let mut answered = 0;
    while let Some(r) = tasks.join_next().await {
        assert_unknown_key(&r.expect("request task"));
        answered += 1;
    }
    assert_eq!(answered, 120);

    let fetched = h.issuer.jwks_fetches() - fetches_before;
    assert!(
        fetched <= 1,
        "{fetched} JWKS fetches for one min_refetch_interval"
    );
    let suppressed = h.metric(&suppressed_series).await - suppressed_before;
    assert!(
        suppressed > 0.0,
        "suppressed refetches must be counted: {suppressed}"
    );
    // The published key still works, without a fetch.
    assert_eq!(status_of(&h, &token(&h, h.key())).await, 200);
    assert_eq!(h.issuer.jwks_fetches() - fetches_before, fetched);
}

// 3
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn withdrawn_key_stops_verifying_even_cached_results() {
    let stays = es256("stays");
    let goes = es256("goes");
    let h = Harness::start_with(Opts {
        issuer_extra: "refresh_interval = \"1s\"".into(),
        keys: Some(vec![stays.clone(), goes.clone()]),
        ..Opts::default()
    })
    .await;
    let cached = token(&h, &goes);
    assert_eq!(status_of(&h, &cached).await, 200);
    assert_eq!(status_of(&h, &cached).await, 200, "second use (cache hit)");
    // The same token repeated on one keep-alive connection (served from its memo).
    let mut conn = KeepAlive::open(h.addr).await;
    for _ in 0..2 {
        assert_eq!(conn.get_with_token("/", &cached).await.status, 200);
    }

    h.issuer.set_keys(jwks_of(&[&stays]));
    // Until the refresher swaps the keys the connection keeps repeating the token, so its memo
    // is young; the first request after the swap (seen in the key-count gauge) is refused.
    let keys = series("tokenreview_proxy_jwks_keys", &[("issuer", "test")]);
    let conn = tokio::sync::Mutex::new(conn);
    wait_for(Duration::from_secs(5), "key withdrawn", || async {
        let mut conn = conn.lock().await;
        let n = h.metric(&keys).await;
        if n == 1.0 {
            assert_unknown_key(&conn.get_with_token("/", &cached).await);
            Ok(())
        } else {
            // The swap may land between reading the gauge and this request.
            let r = conn.get_with_token("/", &cached).await;
            if r.status != 200 {
                assert_unknown_key(&r);
            }
            Err(format!("{n} keys"))
        }
    })
    .await;
    let mut conn = conn.into_inner();
    assert_unknown_key(&h.get_with_token("/", &cached, &[]).await);
    assert_unknown_key(&conn.get_with_token("/", &cached).await);
    assert_unknown_key(&h.get_with_token("/", &token(&h, &goes), &[]).await);
    assert_eq!(status_of(&h, &token(&h, &stays)).await, 200);
}

// 4
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issuer_down_serves_last_keys_until_max_stale_then_503_then_recovers() {
    let name = "lc-down";
    let h = Harness::start_with(Opts {
        issuer_name: Some(name.into()),
        issuer_extra: "refresh_interval = \"1s\"\nmax_stale = \"3s\"".into(),
        keys: Some(vec![es256("k1")]),
        ..Opts::default()
    })
    .await;
    let cached = h.token();
    assert_eq!(status_of(&h, &cached).await, 200);

    let errors_before = h.metric(&refreshes(name, "error")).await;
    h.issuer.set_mode(IssuerMode::Down);
    wait_for(Duration::from_secs(3), "a failed refresh", || async {
        let e = h.metric(&refreshes(name, "error")).await;
        (e > errors_before)
            .then_some(())
            .ok_or(format!("errors {e}"))
    })
    .await;
    // Within max_stale: last good keys still verify, cached and fresh tokens alike.
    let r = h.get_with_token("/", &h.token(), &[]).await;
    assert_eq!(r.status, 200, "fresh token within max_stale: {}", r.text());
    assert_eq!(status_of(&h, &cached).await, 200);

    wait_for(Duration::from_secs(5), "503 after max_stale", || async {
        let r = h.get_with_token("/", &h.token(), &[]).await;
        match r.status {
            StatusCode::SERVICE_UNAVAILABLE => Ok(()),
            s => Err(format!("status {s}")),
        }
    })
    .await;
    let r = h.get_with_token("/", &h.token(), &[]).await;
    assert_eq!(r.status, 503);
    assert!(r.header("retry-after").is_some(), "503 needs Retry-After");
    let r = h.get_with_token("/", &cached, &[]).await;
    assert_eq!(
        r.status, 503,
        "a cached result is no better than stale keys"
    );
    assert!(r.header("retry-after").is_some());
    assert_eq!(readyz(&h).await.status, 503);

    // Back without a restart (failure backoff is capped at refresh_interval).
    h.issuer.set_mode(IssuerMode::Normal);
    wait_for(Duration::from_secs(5), "recovery", || async {
        match status_of(&h, &h.token()).await {
            StatusCode::OK => Ok(()),
            s => Err(format!("status {s}")),
        }
    })
    .await;
    assert_eq!(status_of(&h, &cached).await, 200);
    assert_eq!(readyz(&h).await.status, 200);
}

// 5
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_or_empty_jwks_keeps_the_old_keys() {
    let name = "lc-garbage";
    let h = Harness::start_with(Opts {
        issuer_name: Some(name.into()),
        issuer_extra: "refresh_interval = \"1s\"".into(),
        keys: Some(vec![es256("k1")]),
        ..Opts::default()
    })
    .await;
    let cached = h.token();
    assert_eq!(status_of(&h, &cached).await, 200);
    let keys_series = series("tokenreview_proxy_jwks_keys", &[("issuer", name)]);

    for mode in [IssuerMode::Garbage, IssuerMode::Empty] {
        let errors_before = h.metric(&refreshes(name, "error")).await;
        let fetches_before = h.issuer.jwks_fetches();
        h.issuer.set_mode(mode);
        wait_for(Duration::from_secs(4), "refresh error counted", || async {
            let e = h.metric(&refreshes(name, "error")).await;
            (e > errors_before && h.issuer.jwks_fetches() > fetches_before)
                .then_some(())
                .ok_or(format!("errors {e}"))
        })
        .await;
        let r = h.get_with_token("/", &h.token(), &[]).await;
        assert_eq!(r.status, 200, "{mode:?}: fresh token: {}", r.text());
        assert_eq!(status_of(&h, &cached).await, 200, "{mode:?}: cached token");
        assert_eq!(h.metric(&keys_series).await, 1.0, "{mode:?}: key count");
        assert_eq!(readyz(&h).await.status, 200, "{mode:?}");
    }
    h.issuer.set_mode(IssuerMode::Normal);
}

// 6
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_listening_before_keys_arrive() {
    let key = es256("k1");
    let issuer = MockIssuer::start(jwks_of(&[&key])).await.expect("issuer");
    issuer.set_mode(IssuerMode::Down);
    let h = Harness::start_with_issuer(
        Opts {
            issuer_extra: "refresh_interval = \"1s\"".into(),
            no_wait: true,
            ..Opts::default()
        },
        issuer,
        vec![key],
    )
    .await;
    wait_for(Duration::from_secs(3), "a fetch attempt", || async {
        let n = h.issuer.discovery_fetches();
        (n > 0).then_some(()).ok_or(format!("{n} attempts"))
    })
    .await;

    let health = get(&format!("http://{}/healthz", h.admin), &[]).await;
    assert_eq!(health.status, 200);
    let ready = readyz(&h).await;
    assert_eq!(ready.status, 503, "{}", ready.text());
    let r = h.get_with_token("/", &h.token(), &[]).await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.header("retry-after").is_some());
    assert_eq!(h.upstream.request_count(), 0);

    h.issuer.set_mode(IssuerMode::Normal);
    h.wait_ready(Duration::from_secs(5)).await;
    let r = h.get_with_token("/", &h.token(), &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
}

// 7
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_file_is_reread_before_every_fetch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("token");
    // Replace atomically, as the kubelet does, so a fetch never reads a half-written file.
    let write = |content: &str| {
        let tmp = dir.path().join("token.tmp");
        std::fs::write(&tmp, content).expect("write token");
        std::fs::rename(&tmp, &path).expect("rename token");
    };
    write("t1");
    let h = Harness::start_with(Opts {
        issuer_extra: format!(
            "refresh_interval = \"1s\"\ntoken_file = {}",
            toml_path(&path)
        ),
        keys: Some(vec![es256("k1")]),
        ..Opts::default()
    })
    .await;
    assert_eq!(h.issuer.last_authorization().as_deref(), Some("Bearer t1"));
    assert_eq!(status_of(&h, &h.token()).await, 200);

    write("t2");
    let fetches = h.issuer.jwks_fetches();
    wait_for(
        Duration::from_secs(4),
        "fetch with the new token",
        || async {
            let auth = h.issuer.last_authorization();
            match auth.as_deref() {
                Some("Bearer t2") if h.issuer.jwks_fetches() > fetches => Ok(()),
                Some("Bearer t1" | "Bearer t2") => Err(format!("{auth:?}")),
                _ => panic!("unexpected Authorization {auth:?}"),
            }
        },
    )
    .await;
}

// 8
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_issuer_trusted_through_ca_file_only() {
    let pki = test_pki("mock issuer", &["127.0.0.1", "localhost"]);
    let key = es256("k1");
    let issuer = MockIssuer::start_tls(jwks_of(&[&key]), &pki.cert_pem, &pki.key_pem)
        .await
        .expect("TLS issuer");
    assert!(issuer.issuer_url().starts_with("https://127.0.0.1:"));
    let ca_file = tempfile::NamedTempFile::new().expect("tempfile");
    std::fs::write(ca_file.path(), &pki.ca_pem).expect("write CA");
    let upstream = EchoUpstream::start().await.expect("upstream");

    // With the private CA: ready, and tokens verify.
    let h = Harness::start_proxy(
        Opts {
            issuer_extra: format!("ca_file = {}", toml_path(ca_file.path())),
            ..Opts::default()
        },
        issuer.clone(),
        upstream.clone(),
        vec![key.clone()],
    )
    .await;
    let r = h.get_with_token("/", &h.token(), &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(h.issuer.jwks_fetches() >= 1);

    // System roots only: the private CA is not trusted, so never ready.
    let name = "lc-tls-untrusted";
    let untrusted = Harness::start_proxy(
        Opts {
            issuer_name: Some(name.into()),
            issuer_extra: "refresh_interval = \"1s\"".into(),
            no_wait: true,
            ..Opts::default()
        },
        issuer,
        upstream,
        vec![key],
    )
    .await;
    wait_for(Duration::from_secs(5), "a failed TLS refresh", || async {
        let e = untrusted.metric(&refreshes(name, "error")).await;
        (e >= 1.0).then_some(()).ok_or(format!("errors {e}"))
    })
    .await;
    let ready = readyz(&untrusted).await;
    assert_eq!(ready.status, 503, "{}", ready.text());
    let r = untrusted.get_with_token("/", &untrusted.token(), &[]).await;
    assert_eq!(r.status, 503, "{}", r.text());
}

// 9
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_file_follows_an_atomic_configmap_style_symlink_swap() {
    use std::os::unix::fs::symlink;
    let old = es256("old");
    let new = es256("new");
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let publish = |version: &str, key: &TestKey| {
        let data = d.join(version);
        std::fs::create_dir(&data).expect("mkdir");
        let doc = dev::jwks(&[key.public_jwk()]).to_string();
        std::fs::write(data.join("jwks.json"), doc).expect("write jwks");
        // ..data -> <version>, swapped atomically: new link under a temp name, then rename.
        symlink(version, d.join("..data_tmp")).expect("symlink");
        std::fs::rename(d.join("..data_tmp"), d.join("..data")).expect("swap ..data");
    };
    publish("..2024_01_01_00_00_00.1", &old);
    symlink("..data/jwks.json", d.join("jwks.json")).expect("symlink jwks.json");

    let h = Harness::start_with(Opts {
        key_source: Some(format!("jwks_file = {}", toml_path(&d.join("jwks.json")))),
        keys: Some(vec![old.clone()]),
        ..Opts::default()
    })
    .await;
    let old_token = token(&h, &old);
    assert_eq!(status_of(&h, &old_token).await, 200);
    let new_token = token(&h, &new);
    assert_unknown_key(&h.get_with_token("/", &new_token, &[]).await);

    publish("..2024_01_01_00_05_00.2", &new);
    wait_for(Duration::from_secs(5), "swapped keys in effect", || async {
        let n = status_of(&h, &new_token).await;
        let o = status_of(&h, &old_token).await;
        (n == StatusCode::OK && o == StatusCode::UNAUTHORIZED)
            .then_some(())
            .ok_or(format!("new key's token {n}, old key's token {o}"))
    })
    .await;
    assert_unknown_key(&h.get_with_token("/", &token(&h, &old), &[]).await);
    assert_eq!(h.issuer.jwks_fetches(), 0, "a file source never fetches");
}

// 10
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issuers_are_independent() {
    let key_a = es256("a1");
    let key_b = es256("b1");
    let issuer_a = MockIssuer::start(jwks_of(&[&key_a]))
        .await
        .expect("issuer a");
    let issuer_b = MockIssuer::start(jwks_of(&[&key_b]))
        .await
        .expect("issuer b");
    let upstream = EchoUpstream::start().await.expect("upstream");
    let (a_url, b_url) = (issuer_a.issuer_url(), issuer_b.issuer_url());
    let text = format!(
        r#"
[server]
listen = "127.0.0.1:0"
workers = 2
shutdown_grace = "2s"
[admin]
listen = "127.0.0.1:0"
[upstream]
url = "{upstream}"
[[issuers]]
name = "lc-two-a"
issuer = "{a_url}"
audiences = ["{AUD}"]
algorithms = ["ES256"]
refresh_interval = "1h"
[[issuers]]
name = "lc-two-b"
issuer = "{b_url}"
audiences = ["{AUD}"]
algorithms = ["ES256"]
refresh_interval = "1s"
max_stale = "2s"
"#,
        upstream = upstream.url(),
    );
    let h = start_proxy_text(text, issuer_a.clone(), upstream, vec![key_a.clone()]).await;
    assert_eq!(status_of(&h, &token_for_issuer(&a_url, &key_a)).await, 200);
    assert_eq!(status_of(&h, &token_for_issuer(&b_url, &key_b)).await, 200);
    // Keys are per issuer: B's key does not vouch for a token claiming issuer A.
    assert_unknown_key(
        &h.get_with_token("/", &token_for_issuer(&a_url, &key_b), &[])
            .await,
    );

    let a_fetches = issuer_a.jwks_fetches();
    issuer_b.set_mode(IssuerMode::Down);
    wait_for(
        Duration::from_secs(6),
        "issuer B past max_stale",
        || async {
            match status_of(&h, &token_for_issuer(&b_url, &key_b)).await {
                StatusCode::SERVICE_UNAVAILABLE => Ok(()),
                s => Err(format!("status {s}")),
            }
        },
    )
    .await;
    for _ in 0..3 {
        let r = h
            .get_with_token("/", &token_for_issuer(&a_url, &key_a), &[])
            .await;
        assert_eq!(r.status, 200, "issuer A unaffected: {}", r.text());
    }
    let ready = readyz(&h).await;
    assert_eq!(ready.status, 503, "every issuer must be usable to be ready");
    assert!(ready.text().contains("lc-two-b"), "{}", ready.text());
    assert_eq!(
        issuer_a.jwks_fetches(),
        a_fetches,
        "A keeps its own (hourly) schedule"
    );
}

// 11
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_control_max_age_shortens_the_refresh_interval() {
    let key = es256("k1");
    let issuer = MockIssuer::start(jwks_of(&[&key])).await.expect("issuer");
    issuer.set_cache_control(Some("public, max-age=1".into()));
    let h = Harness::start_with_issuer(
        Opts {
            issuer_extra: "refresh_interval = \"1h\"\nmin_refetch_interval = \"1s\"".into(),
            ..Opts::default()
        },
        issuer,
        vec![key],
    )
    .await;
    let before = h.issuer.jwks_fetches();
    let took = wait_for(
        Duration::from_millis(3500),
        "two max-age refreshes",
        || async {
            let n = h.issuer.jwks_fetches() - before;
            (n >= 2).then_some(()).ok_or(format!("{n} new fetches"))
        },
    )
    .await;
    // Two refreshes are at least one (jittered, ≥ 0.9 s) interval apart: no hammering.
    assert!(took >= Duration::from_millis(800), "too fast: {took:?}");
    assert_eq!(status_of(&h, &h.token()).await, 200);
}

// 12
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_metrics_after_start() {
    let name = "lc-metrics";
    let keys = vec![
        es256("k1"),
        TestKey::generate("EdDSA", "k2").expect("keygen"),
        TestKey::generate("ES384", "k3").expect("keygen"),
    ];
    let h = Harness::start_with(Opts {
        issuer_name: Some(name.into()),
        keys: Some(keys),
        ..Opts::default()
    })
    .await;
    let text = h.metrics().await;
    let keys = metric_value(
        &text,
        &series("tokenreview_proxy_jwks_keys", &[("issuer", name)]),
    );
    assert_eq!(keys, 3.0, "published keys");
    let last = metric_value(
        &text,
        &series(
            "tokenreview_proxy_jwks_last_success_timestamp_seconds",
            &[("issuer", name)],
        ),
    );
    let now = dev::now_unix() as f64;
    assert!((now - last).abs() < 5.0, "last success {last} vs now {now}");
    assert!(metric_value(&text, &refreshes(name, "ok")) >= 1.0);
    assert_eq!(metric_value(&text, &refreshes(name, "error")), 0.0);
}

// 13
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_store_never_turns_refresh_into_a_busy_loop() {
    let key = es256("k1");
    let issuer = MockIssuer::start(jwks_of(&[&key])).await.expect("issuer");
    issuer.set_cache_control(Some("no-store".into()));
    let h = Harness::start_with_issuer(
        Opts {
            issuer_extra: "refresh_interval = \"1h\"\nmin_refetch_interval = \"0s\"".into(),
            ..Opts::default()
        },
        issuer,
        vec![key],
    )
    .await;
    let before = h.issuer.jwks_fetches();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let n = h.issuer.jwks_fetches() - before;
    assert!(n <= 3, "{n} JWKS fetches in 1.5 s");
}

/// The hash of each issuer's current key set: 1 for the set in effect, 0 for the one it
/// replaced, so replicas that disagree after a rotation show it. Build and process metrics
/// come with every scrape.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_show_the_key_set_hash_the_build_and_the_process() {
    let old = es256("old");
    let new = es256("new");
    let h = Harness::start_with(Opts {
        issuer_name: Some("keyset-info".into()),
        issuer_extra: "refresh_interval = \"1h\"".into(),
        keys: Some(vec![old.clone()]),
        ..Opts::default()
    })
    .await;
    let info = |text: &str| -> Vec<(String, f64)> {
        text.lines()
            .filter(|l| l.starts_with("tokenreview_proxy_jwks_key_set_info{issuer=\"keyset-info\""))
            .map(|l| {
                let hash = l
                    .split("hash=\"")
                    .nth(1)
                    .unwrap()
                    .split('"')
                    .next()
                    .unwrap();
                let value: f64 = l.rsplit(' ').next().unwrap().parse().unwrap();
                (hash.to_string(), value)
            })
            .collect()
    };
    let first = info(&h.metrics().await);
    assert_eq!(first.len(), 1, "{first:?}");
    assert_eq!(first[0].0.len(), 16);
    assert_eq!(first[0].1, 1.0);

    h.issuer.set_keys(jwks_of(&[&old, &new]));
    assert_eq!(status_of(&h, &token(&h, &new)).await, 200);
    let after = info(&h.metrics().await);
    assert_eq!(after.len(), 2, "{after:?}");
    let current: Vec<_> = after.iter().filter(|(_, v)| *v == 1.0).collect();
    assert_eq!(current.len(), 1);
    assert_ne!(current[0].0, first[0].0, "a new set, a new hash");

    let text = h.metrics().await;
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        text.contains(&format!(
            "tokenreview_proxy_build_info{{version=\"{version}\"}} 1"
        )),
        "{text}"
    );
    assert!(text.contains("process_resident_memory_bytes"), "{text}");
    assert!(text.contains("process_open_fds"), "{text}");
}

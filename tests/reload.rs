//! Reload (SPEC section 15) over real sockets: a new config swaps the runtime while the
//! connections stay; unchanged issuers keep their cached results; what only a restart can
//! change, and an invalid config, are refused with the running config kept.
//!
//! Metrics are process-wide, so the tests of this file take turns (`TURN`).

mod common;

use std::time::Duration;

use common::{metric_value, Harness, KeepAlive, Opts, AUD};
use tokenreview_proxy::config::Config;
use tokenreview_proxy::dev::{KubeTokenSpec, MockIssuer, TestKey};
use tokenreview_proxy::reload::ReloadError;

static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const CACHE_HIT: &str = r#"tokenreview_proxy_verify_cache_total{result="hit"}"#;
const CACHE_MISS: &str = r#"tokenreview_proxy_verify_cache_total{result="miss"}"#;
const RELOADS_OK: &str = r#"tokenreview_proxy_config_reloads_total{result="ok"}"#;
const RELOADS_ERROR: &str = r#"tokenreview_proxy_config_reloads_total{result="error"}"#;
const LAST_RELOAD: &str = "tokenreview_proxy_config_last_reload_success_timestamp_seconds";

/// A second issuer, with a key of its own, as a `[[issuers]]` block.
async fn second_issuer() -> (MockIssuer, TestKey, String) {
    let key = TestKey::generate("ES256", "second-k1").unwrap();
    let issuer = MockIssuer::start(vec![key.public_jwk()]).await.unwrap();
    let block = format!(
        "\n[[issuers]]\nname = \"second\"\nissuer = \"{}\"\naudiences = [\"{AUD}\"]\nalgorithms = [\"ES256\"]\n",
        issuer.issuer_url()
    );
    (issuer, key, block)
}

fn apply(h: &Harness, text: &str) -> Result<(), ReloadError> {
    let config = Config::parse(text, "(reloaded)").expect("test config parses");
    h.proxy.as_ref().unwrap().reloader().apply(config)
}

/// Poll until `token` gets 200 (a new issuer's keys arrive in the background).
async fn accepted_within(h: &Harness, token: &str, timeout: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if h.get_with_token("/", token, &[]).await.status == 200 {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_reload_adds_an_issuer_on_open_connections_and_keeps_cached_results() {
    let _turn = TURN.lock().await;
    let h = Harness::start().await;
    let first = h.token();
    let mut conn = KeepAlive::open(h.addr).await;
    assert_eq!(conn.get_with_token("/a", &first).await.status, 200);
    let (second, key2, block) = second_issuer().await;
    let token2 = key2.sign(&tokenreview_proxy::dev::kube_claims(&KubeTokenSpec::new(
        &second.issuer_url(),
        AUD,
    )));
    assert_eq!(h.get_with_token("/", &token2, &[]).await.status, 401);

    let ok_before = h.metric(RELOADS_OK).await;
    apply(&h, &format!("{}{block}", h.config_text)).expect("reload");
    assert_eq!(h.metric(RELOADS_OK).await, ok_before + 1.0);
    assert!(h.metric(LAST_RELOAD).await > 1.7e9);

    assert!(
        accepted_within(&h, &token2, Duration::from_secs(10)).await,
        "the added issuer's token is accepted"
    );
    // The first issuer is unchanged: on the connection opened before the reload, its token is
    // still answered from the cache (a hit, no new verification).
    let (hits, misses) = (h.metric(CACHE_HIT).await, h.metric(CACHE_MISS).await);
    tokio::time::sleep(tokenreview_proxy::auth::MEMO_TTL + Duration::from_millis(100)).await;
    let r = conn.get_with_token("/b", &first).await;
    assert_eq!(r.status, 200);
    assert_eq!(h.metric(CACHE_MISS).await, misses, "no verification again");
    assert_eq!(h.metric(CACHE_HIT).await, hits + 1.0);
}

#[tokio::test]
async fn a_removed_issuer_s_cached_tokens_are_refused_at_once() {
    let _turn = TURN.lock().await;
    let h = Harness::start().await;
    let first = h.token();
    assert_eq!(h.get_with_token("/", &first, &[]).await.status, 200);
    let (_second, _key2, block) = second_issuer().await;
    // The config with only the second issuer: the first one's section is cut.
    let cut = h.config_text.find("[[issuers]]").unwrap();
    apply(&h, &format!("{}{block}", &h.config_text[..cut])).expect("reload");
    let r = h.get_with_token("/", &first, &[]).await;
    assert_eq!(r.status, 401);
    assert!(
        r.header("www-authenticate")
            .unwrap()
            .contains("unknown_issuer"),
        "{:?}",
        r.header("www-authenticate")
    );
}

#[tokio::test]
async fn restart_only_and_invalid_configs_are_refused_and_the_running_one_serves() {
    let _turn = TURN.lock().await;
    let h = Harness::start().await;
    let token = h.token();
    let errors_before = h.metric(RELOADS_ERROR).await;

    let moved = h
        .config_text
        .replacen("listen = \"127.0.0.1:0\"", "listen = \"127.0.0.1:1\"", 1);
    match apply(&h, &moved) {
        Err(ReloadError::NeedsRestart(key)) => assert_eq!(key, "server.listen"),
        other => panic!("expected a refusal naming server.listen, got {other:?}"),
    }
    let more_workers = h.config_text.replacen("workers = 2", "workers = 3", 1);
    assert!(matches!(
        apply(&h, &more_workers),
        Err(ReloadError::NeedsRestart("server.workers"))
    ));
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.toml");
    std::fs::write(&broken, "[server]\nlisten = 7\n").unwrap();
    let reloader = h.proxy.as_ref().unwrap().reloader();
    match reloader.reload_file(&broken) {
        Err(ReloadError::Invalid(e)) => {
            assert!(e.to_string().contains("broken.toml"), "{e}");
            assert!(e.to_string().contains("server.listen"), "{e}");
        }
        other => panic!("expected an invalid config, got {other:?}"),
    }
    assert_eq!(h.metric(RELOADS_ERROR).await, errors_before + 3.0);
    assert_eq!(h.get_with_token("/", &token, &[]).await.status, 200);
}

#[tokio::test]
async fn a_request_in_flight_finishes_across_a_reload() {
    let _turn = TURN.lock().await;
    let h = Harness::start_with(Opts::default()).await;
    let token = h.token();
    let url = h.url("/slow/1500");
    let auth = format!("Bearer {token}");
    let in_flight =
        tokio::spawn(async move { common::get(&url, &[("authorization", auth.as_str())]).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Another identity mode: the requests after the reload carry none of the headers.
    let text = h.config_text.replacen(
        "[upstream]\n",
        "[upstream]\nidentity_headers = \"none\"\n",
        1,
    );
    apply(&h, &text).expect("reload");
    let r = in_flight.await.unwrap();
    assert_eq!(r.status, 200, "the request that started before finished");
    let after = h.get_with_token("/after", &token, &[]).await;
    assert_eq!(after.status, 200);
    assert!(
        common::recorded_header(&h.upstream, "x-remote-user").is_empty(),
        "the new runtime forwards without identity headers"
    );
    assert!(metric_value(&h.metrics().await, RELOADS_OK) >= 1.0);
}

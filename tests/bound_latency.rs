//! A measurement, not a check (ignored by default): the time from a pod's DELETED event leaving
//! the fake kube-apiserver to the first 401 for that pod's cached token, over 100 deletions.
//! Run: `cargo test --release --test bound_latency -- --ignored --nocapture`
//! (or without `--release`: the debug build; the tick of 100 ms dominates either way).

mod common;

use std::time::{Duration, Instant};

use common::fake_apiserver::FakeApiserver;
use common::{Harness, KeepAlive, Opts, AUD};
use http::StatusCode;
use tokenreview_proxy::dev::{self, EchoUpstream, KubeTokenSpec, MockIssuer, TestKey};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run with --ignored --nocapture"]
async fn delete_to_first_401_for_a_cached_token() {
    const N: usize = 100;
    let api = FakeApiserver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = api.kubeconfig(dir.path());
    let key = TestKey::generate("ES256", "k1").unwrap();
    let issuer = MockIssuer::start(vec![key.public_jwk()]).await.unwrap();
    let upstream = EchoUpstream::start().await.unwrap();
    let base = KubeTokenSpec::new(&issuer.issuer_url(), AUD);
    api.put_token_service_account(&base);
    let (node, node_uid) = base.node.clone().unwrap();
    api.put("nodes", None, &node, &node_uid, None, &[]);
    let mut tokens = Vec::new();
    for i in 0..N {
        let name = format!("pod-{i}");
        let uid = dev::random_uuid();
        api.put("pods", Some("default"), &name, &uid, None, &[]);
        let spec = KubeTokenSpec {
            pod: Some((name.clone(), uid)),
            ..base.clone()
        };
        tokens.push((name, key.sign(&dev::kube_claims(&spec))));
    }
    let opts = Opts {
        issuer_extra: "bound_objects = true".into(),
        ..Opts::default()
    };
    let mut text = common::config_text(&opts, &issuer.issuer_url(), &upstream.url());
    text.push_str(&format!(
        "\n[kubernetes]\nkubeconfig = \"{}\"\n",
        kubeconfig.display()
    ));
    let h = Harness::start_from_text(text, issuer, upstream, vec![key], true).await;
    let mut conn = KeepAlive::open(h.addr).await;
    for (_, t) in &tokens {
        assert_eq!(conn.get_with_token("/x", t).await.status, StatusCode::OK);
    }
    let mut took = Vec::new();
    for (name, t) in &tokens {
        // Cached and still good just before the deletion.
        assert_eq!(conn.get_with_token("/x", t).await.status, StatusCode::OK);
        let start = Instant::now();
        api.delete("pods", Some("default"), name);
        loop {
            let r = conn.get_with_token("/x", t).await;
            if r.status == StatusCode::UNAUTHORIZED {
                took.push(start.elapsed());
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "{name}: still accepted"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    took.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "delete → first 401 (cached token, {N} deletions): median {:.1} ms, p90 {:.1} ms, max {:.1} ms, min {:.1} ms",
        ms(took[N / 2]),
        ms(took[N * 9 / 10]),
        ms(took[N - 1]),
        ms(took[0])
    );
    assert!(
        took[N - 1] < Duration::from_secs(1),
        "max over the 1 s target"
    );
}

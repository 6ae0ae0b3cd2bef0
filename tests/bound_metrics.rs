//! The bound-object metrics (SPEC section 10): `tokenreview_proxy_bound_objects{kind}`,
//! `tokenreview_proxy_bound_objects_synced{kind}` and `token_rejections_total{reason=
//! "invalidated"}`. Their gauges are process-wide, so this binary runs one proxy only.

mod common;

use std::time::{Duration, Instant};

use common::fake_apiserver::FakeApiserver;
use common::{Harness, Opts, AUD};
use http::StatusCode;
use tokenreview_proxy::dev::{self, EchoUpstream, KubeTokenSpec, MockIssuer, TestKey};

async fn until(limit: Duration, h: &Harness, series: &str, want: f64) -> f64 {
    let start = Instant::now();
    loop {
        let v = h.metric(series).await;
        if v == want || start.elapsed() > limit {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gauges_count_the_index_and_say_whether_each_watch_is_in_sync() {
    let api = FakeApiserver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = api.kubeconfig(dir.path());
    let key = TestKey::generate("ES256", "k1").unwrap();
    let issuer = MockIssuer::start(vec![key.public_jwk()]).await.unwrap();
    let upstream = EchoUpstream::start().await.unwrap();
    let spec = KubeTokenSpec::new(&issuer.issuer_url(), AUD);
    api.put_token_service_account(&spec);
    let (pod, pod_uid) = spec.pod.clone().unwrap();
    api.put("pods", Some("default"), &pod, &pod_uid, None, &[]);
    for i in 0..3 {
        api.put(
            "pods",
            Some("other"),
            &format!("p{i}"),
            &dev::random_uuid(),
            None,
            &[],
        );
    }
    let opts = Opts {
        issuer_name: Some("metrics".into()),
        issuer_extra: "bound_objects = true".into(),
        ..Opts::default()
    };
    let mut text = common::config_text(&opts, &issuer.issuer_url(), &upstream.url());
    text.push_str(&format!(
        "\n[kubernetes]\nkubeconfig = \"{}\"\nmax_stale = \"1s\"\n",
        kubeconfig.display()
    ));
    let h = Harness::start_from_text(text, issuer, upstream, vec![key], true).await;
    let pods = r#"tokenreview_proxy_bound_objects{kind="pods"}"#;
    let synced = r#"tokenreview_proxy_bound_objects_synced{kind="pods"}"#;
    assert_eq!(until(Duration::from_secs(2), &h, pods, 4.0).await, 4.0);
    assert_eq!(until(Duration::from_secs(2), &h, synced, 1.0).await, 1.0);
    let sa = r#"tokenreview_proxy_bound_objects{kind="serviceaccounts"}"#;
    assert_eq!(h.metric(sa).await, 1.0);
    assert_eq!(
        h.metric(r#"tokenreview_proxy_bound_objects{kind="nodes"}"#)
            .await,
        0.0
    );

    let token = h.key().sign(&dev::kube_claims(&spec));
    assert_eq!(
        h.get_with_token("/x", &token, &[]).await.status,
        StatusCode::OK
    );
    let rejected =
        r#"tokenreview_proxy_token_rejections_total{issuer="metrics",reason="invalidated"}"#;
    assert_eq!(h.metric(rejected).await, 0.0);
    api.delete("pods", Some("default"), &pod);
    assert_eq!(until(Duration::from_secs(2), &h, pods, 3.0).await, 3.0);
    let start = Instant::now();
    while h.get_with_token("/x", &token, &[]).await.status == StatusCode::OK {
        assert!(start.elapsed() < Duration::from_secs(3), "still accepted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(h.metric(rejected).await >= 1.0);

    api.stop();
    assert_eq!(until(Duration::from_secs(3), &h, synced, 0.0).await, 0.0);
    api.restart().await;
    assert_eq!(until(Duration::from_secs(15), &h, synced, 1.0).await, 1.0);
}

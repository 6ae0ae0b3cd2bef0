//! Bound objects (SPEC section 12), end to end over real sockets: the real binary's code
//! (`app::start`) watches a fake kube-apiserver (`common::fake_apiserver`, the real list/watch
//! protocol) through a kubeconfig, and a token whose pod, service account, secret or node goes
//! away is refused — cached or not, through the proxy and through TokenReview.

mod common;

use std::time::{Duration, Instant};

use common::fake_apiserver::FakeApiserver;
use common::{get, post_json, Harness, KeepAlive, Opts, AUD};
use http::StatusCode;
use serde_json::{json, Value};
use tokenreview_proxy::dev::{self, EchoUpstream, KubeTokenSpec, MockIssuer, TestKey};

/// Rfc3339 of `now + secs` (may be negative).
fn at(secs: i64) -> String {
    let t = std::time::SystemTime::now();
    let t = if secs >= 0 {
        t + Duration::from_secs(secs as u64)
    } else {
        t - Duration::from_secs((-secs) as u64)
    };
    humantime::format_rfc3339_seconds(t).to_string()
}

/// A proxy whose issuer "cluster" has `bound_objects`, beside an issuer "plain" without it,
/// watching a fake apiserver that holds the default token's service account, pod and node.
struct Cluster {
    api: FakeApiserver,
    h: Harness,
    spec: KubeTokenSpec,
    plain: MockIssuer,
    plain_key: TestKey,
    _dir: tempfile::TempDir,
}

async fn cluster(max_stale: &str, issuer_extra: &str, wait: bool) -> Cluster {
    let api = FakeApiserver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = api.kubeconfig(dir.path());
    let key = TestKey::generate("ES256", "k1").unwrap();
    let issuer = MockIssuer::start(vec![key.public_jwk()]).await.unwrap();
    let plain_key = TestKey::generate("ES256", "p1").unwrap();
    let plain = MockIssuer::start(vec![plain_key.public_jwk()])
        .await
        .unwrap();
    let upstream = EchoUpstream::start().await.unwrap();
    let spec = KubeTokenSpec::new(&issuer.issuer_url(), AUD);
    api.put_token_service_account(&spec);
    let (pod, pod_uid) = spec.pod.clone().unwrap();
    api.put("pods", Some("default"), &pod, &pod_uid, None, &[]);
    let (node, node_uid) = spec.node.clone().unwrap();
    api.put("nodes", None, &node, &node_uid, None, &[]);
    api.put(
        "secrets",
        Some("kube-system"),
        "unrelated",
        &dev::random_uuid(),
        None,
        &[],
    );
    let opts = Opts {
        issuer_name: Some("cluster".into()),
        issuer_extra: format!("bound_objects = true\n{issuer_extra}"),
        cache_extra: "max_ttl = \"10m\"".into(),
        ..Opts::default()
    };
    let mut text = common::config_text(&opts, &issuer.issuer_url(), &upstream.url());
    text.push_str(&format!(
        r#"
[[issuers]]
name = "plain"
issuer = "{}"
audiences = ["{AUD}"]
algorithms = ["ES256"]

[kubernetes]
kubeconfig = "{}"
max_stale = "{max_stale}"
"#,
        plain.issuer_url(),
        kubeconfig.display()
    ));
    let h = Harness::start_from_text(text, issuer, upstream, vec![key], wait).await;
    Cluster {
        api,
        h,
        spec,
        plain,
        plain_key,
        _dir: dir,
    }
}

impl Cluster {
    /// `token` is refused as `invalidated` within 5 s.
    async fn invalidated_within_5s(&self, token: &str) -> bool {
        within(Duration::from_secs(5), || async {
            is_invalidated(&self.h.get_with_token("/x", token, &[]).await)
        })
        .await
        .is_some()
    }

    /// The proxy's index holds more than `before` objects of `kind` within 5 s (its gauge,
    /// updated each tick, lags the index). Wait for this before a token bound to a new object
    /// is first sent: one sent earlier is refused as not found, and the refusal is cached.
    async fn indexed_beyond(&self, kind: &str, before: f64) -> bool {
        let series = format!("tokenreview_proxy_bound_objects{{kind=\"{kind}\"}}");
        within(Duration::from_secs(5), || async {
            self.h.metric(&series).await > before
        })
        .await
        .is_some()
    }

    /// A request with `token()`, called again for each try, is answered 200 within 5 s.
    async fn accepted_within_5s(&self, token: impl Fn() -> String) -> bool {
        within(Duration::from_secs(5), || async {
            self.h.get_with_token("/x", &token(), &[]).await.status == StatusCode::OK
        })
        .await
        .is_some()
    }

    fn token(&self, spec: &KubeTokenSpec) -> String {
        self.h.key().sign(&dev::kube_claims(spec))
    }

    fn plain_token(&self) -> String {
        let spec = KubeTokenSpec::new(&self.plain.issuer_url(), AUD);
        self.plain_key.sign(&dev::kube_claims(&spec))
    }

    async fn review(&self, token: &str) -> Value {
        let body = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                          "spec": {"token": token}});
        let r = post_json(
            &self.h.url("/apis/authentication.k8s.io/v1/tokenreviews"),
            &[],
            &body,
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        r.json()["status"].clone()
    }

    async fn readyz(&self) -> (StatusCode, String) {
        let r = get(&format!("http://{}/readyz", self.h.admin), &[]).await;
        (r.status, r.text())
    }

    /// Every request the fake saw for secrets asked for metadata only (secret data is never
    /// read), and there were some.
    fn assert_secrets_metadata_only(&self) {
        let seen = self.api.requests_for("secrets");
        assert!(!seen.is_empty(), "secrets were never listed");
        for s in seen {
            assert!(
                s.accept.contains("as=PartialObjectMetadata"),
                "a secrets request without the metadata Accept header: {s:?}"
            );
        }
    }
}

/// The proxy's count of indexed secrets.
const SECRETS: &str = r#"tokenreview_proxy_bound_objects{kind="secrets"}"#;

/// Poll `f` every 20 ms until it is true or `limit` passes; the time it took.
async fn within<F, Fut>(limit: Duration, mut f: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < limit {
        if f().await {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

fn is_invalidated(r: &common::Resp) -> bool {
    r.status == StatusCode::UNAUTHORIZED
        && r.header("www-authenticate")
            .is_some_and(|v| v.contains("error_description=\"invalidated\""))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_pods_cached_token_is_refused_within_a_second_by_proxy_and_tokenreview() {
    let c = cluster("5m", "", true).await;
    let token = c.token(&c.spec);
    // Cached in the shared cache and in a keep-alive connection's memo.
    let mut conn = KeepAlive::open(c.h.addr).await;
    assert_eq!(
        conn.get_with_token("/x", &token).await.status,
        StatusCode::OK
    );
    assert_eq!(
        conn.get_with_token("/x", &token).await.status,
        StatusCode::OK
    );
    assert_eq!(c.review(&token).await["authenticated"], true);
    let (pod, _) = c.spec.pod.clone().unwrap();
    assert!(c.api.delete("pods", Some("default"), &pod));
    let start = Instant::now();
    let took = loop {
        let r = conn.get_with_token("/x", &token).await;
        if is_invalidated(&r) {
            break start.elapsed();
        }
        assert_eq!(r.status, StatusCode::OK);
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "the deleted pod's token was still accepted after 3 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(took < Duration::from_millis(1500), "took {took:?}");
    let status = c.review(&token).await;
    assert_eq!(status["authenticated"], false);
    assert_eq!(status["error"], "invalidated");
    // Other tokens of the service account, without that pod, and another issuer's: unaffected.
    let mut other = c.spec.clone();
    other.pod = None;
    other.node = None;
    let r = c.h.get_with_token("/x", &c.token(&other), &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    let r = c.h.get_with_token("/x", &c.plain_token(), &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    let logs = common::captured_logs();
    assert!(
        logs.contains(&format!("pod default/{pod} not found")),
        "no log line naming the pod"
    );
    assert!(!logs.contains(&token), "a token reached the logs");
    c.assert_secrets_metadata_only();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_kind_gone_or_recreated_refuses_the_tokens_bound_to_it() {
    let c = cluster("5m", "", true).await;
    let expect = |what: &'static str| what;
    // A pod recreated under the same name: another uid.
    let token = c.token(&c.spec);
    assert_eq!(
        c.h.get_with_token("/x", &token, &[]).await.status,
        StatusCode::OK
    );
    let (pod, _) = c.spec.pod.clone().unwrap();
    c.api.put(
        "pods",
        Some("default"),
        &pod,
        &dev::random_uuid(),
        None,
        &[],
    );
    let took = within(Duration::from_secs(3), || async {
        is_invalidated(&c.h.get_with_token("/x", &token, &[]).await)
    })
    .await;
    assert!(took.is_some(), "{}", expect("pod recreated"));
    // A node-bound token (no pod): its node deleted.
    let mut node_bound = c.spec.clone();
    node_bound.pod = None;
    let token = c.token(&node_bound);
    assert_eq!(
        c.h.get_with_token("/x", &token, &[]).await.status,
        StatusCode::OK
    );
    let (node, _) = c.spec.node.clone().unwrap();
    c.api.delete("nodes", None, &node);
    let took = within(Duration::from_secs(3), || async {
        is_invalidated(&c.h.get_with_token("/x", &token, &[]).await)
    })
    .await;
    assert!(took.is_some(), "{}", expect("node deleted"));
    // A secret-bound token (kubectl create token --bound-object-kind Secret).
    let secret_uid = dev::random_uuid();
    let secrets = c.h.metric(SECRETS).await;
    c.api.put(
        "secrets",
        Some("default"),
        "bound-secret",
        &secret_uid,
        None,
        &[],
    );
    assert!(c.indexed_beyond("secrets", secrets).await);
    let mut claims = dev::kube_claims(&KubeTokenSpec {
        pod: None,
        node: None,
        ..c.spec.clone()
    });
    claims["kubernetes.io"]["secret"] = json!({"name": "bound-secret", "uid": secret_uid});
    let secret_token = c.h.key().sign(&claims);
    let ok = within(Duration::from_secs(3), || async {
        c.h.get_with_token("/x", &secret_token, &[]).await.status == StatusCode::OK
    })
    .await;
    assert!(
        ok.is_some(),
        "secret-bound token refused while its secret exists"
    );
    c.api.delete("secrets", Some("default"), "bound-secret");
    let took = within(Duration::from_secs(3), || async {
        is_invalidated(&c.h.get_with_token("/x", &secret_token, &[]).await)
    })
    .await;
    assert!(took.is_some(), "{}", expect("secret deleted"));
    // The service account recreated with another uid: every token of it.
    let mut plain_sa = c.spec.clone();
    plain_sa.pod = None;
    plain_sa.node = None;
    let token = c.token(&plain_sa);
    assert_eq!(
        c.h.get_with_token("/x", &token, &[]).await.status,
        StatusCode::OK
    );
    c.api.put(
        "serviceaccounts",
        Some("default"),
        "default",
        &dev::random_uuid(),
        None,
        &[],
    );
    let took = within(Duration::from_secs(3), || async {
        is_invalidated(&c.h.get_with_token("/x", &token, &[]).await)
    })
    .await;
    assert!(took.is_some(), "{}", expect("service account recreated"));
    // And deleted.
    c.api.delete("serviceaccounts", Some("default"), "default");
    let status = c.review(&c.token(&plain_sa)).await;
    assert_eq!(status["error"], "invalidated");
    c.assert_secrets_metadata_only();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deletion_counts_only_once_its_60_second_leeway_has_passed() {
    let c = cluster("5m", "", true).await;
    let (pod, pod_uid) = c.spec.pod.clone().unwrap();
    // Deleted 58 s ago (graceful): still valid, for about 2 more seconds.
    c.api
        .put("pods", Some("default"), &pod, &pod_uid, Some(&at(-58)), &[]);
    let token = c.token(&c.spec);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = c.h.get_with_token("/x", &token, &[]).await;
    assert_eq!(r.status, StatusCode::OK, "within the leeway: {}", r.text());
    // Cached: refused once the leeway passes, without any new event.
    let took = within(Duration::from_secs(6), || async {
        is_invalidated(&c.h.get_with_token("/x", &token, &[]).await)
    })
    .await
    .expect("still accepted 60 s after the deletion timestamp");
    assert!(
        took >= Duration::from_millis(500),
        "refused too early: {took:?}"
    );
    // Deleted 2 minutes ago: refused at once.
    let mut other = c.spec.clone();
    other.pod = Some(("old".into(), dev::random_uuid()));
    let (name, uid) = other.pod.clone().unwrap();
    c.api
        .put("pods", Some("default"), &name, &uid, Some(&at(-120)), &[]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let status = c.review(&c.token(&other)).await;
    assert_eq!(status["error"], "invalidated");
    assert!(common::captured_logs().contains(&format!("pod default/{name} deleted at ")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_watches_resume_and_an_expired_version_relists() {
    let c = cluster("5m", "", true).await;
    let lists = |c: &Cluster| {
        c.api
            .requests_for("pods")
            .iter()
            .filter(|s| !s.uri.contains("watch="))
            .count()
    };
    let listed = lists(&c);
    assert!(listed >= 1);
    // Cut: the watch resumes from its resourceVersion (no new list), and still delivers.
    c.api.cut_watches();
    let token = c.token(&c.spec);
    assert_eq!(
        c.h.get_with_token("/x", &token, &[]).await.status,
        StatusCode::OK
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (pod, pod_uid) = c.spec.pod.clone().unwrap();
    c.api.put(
        "pods",
        Some("default"),
        &pod,
        &dev::random_uuid(),
        None,
        &[],
    );
    assert!(c.invalidated_within_5s(&token).await);
    assert_eq!(lists(&c), listed, "a cut watch is resumed, not relisted");
    let resumed = c
        .api
        .requests_for("pods")
        .iter()
        .filter(|s| s.uri.contains("watch=") && s.uri.contains("allowWatchBookmarks=true"))
        .count();
    assert!(resumed >= 2, "watches resumed with bookmarks: {resumed}");
    // Down, a change the watch misses, versions expired, up: 410 → a fresh list, which lacks
    // the pod.
    c.api
        .put("pods", Some("default"), &pod, &pod_uid, None, &[]);
    assert!(c.accepted_within_5s(|| c.token(&c.spec)).await);
    let token = c.token(&c.spec);
    assert_eq!(
        c.h.get_with_token("/x", &token, &[]).await.status,
        StatusCode::OK
    );
    c.api.stop();
    c.api.delete("pods", Some("default"), &pod);
    c.api.compact();
    c.api.restart().await;
    assert!(
        within(Duration::from_secs(10), || async {
            is_invalidated(&c.h.get_with_token("/x", &token, &[]).await)
        })
        .await
        .is_some(),
        "a deletion missed while down was not found by the relist"
    );
    assert!(lists(&c) > listed, "410 Gone did not force a relist");
    c.assert_secrets_metadata_only();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_broken_past_max_stale_fail_closed_and_recover() {
    let c = cluster("1s", "", true).await;
    let token = c.token(&c.spec);
    // A changed issuer fetches its keys anew first.
    assert!(c.accepted_within_5s(|| token.clone()).await);
    assert_eq!(c.readyz().await.0, StatusCode::OK);
    c.api.stop();
    // Within max_stale the last state serves.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        c.h.get_with_token("/x", &token, &[]).await.status,
        StatusCode::OK
    );
    let stale = within(Duration::from_secs(5), || async {
        c.h.get_with_token("/x", &token, &[]).await.status == StatusCode::SERVICE_UNAVAILABLE
    })
    .await;
    assert!(
        stale.is_some(),
        "bound tokens still served with the watches down past max_stale"
    );
    let r = c.h.get_with_token("/x", &token, &[]).await;
    assert!(r.header("retry-after").is_some());
    assert!(r.text().contains("bound_objects_stale"), "{}", r.text());
    let (status, body) = c.readyz().await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    // TokenReview: 503 too; an issuer without bound_objects: unaffected.
    let body = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                      "spec": {"token": token}});
    let r = post_json(
        &c.h.url("/apis/authentication.k8s.io/v1/tokenreviews"),
        &[],
        &body,
    )
    .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    let r = c.h.get_with_token("/x", &c.plain_token(), &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    let (_, body) = c.readyz().await;
    assert!(body.contains("bound objects pods: watch broken"), "{body}");
    // Back: recovers by itself.
    c.api.restart().await;
    let back = within(Duration::from_secs(15), || async {
        c.h.get_with_token("/x", &token, &[]).await.status == StatusCode::OK
    })
    .await;
    assert!(
        back.is_some(),
        "did not recover after the apiserver came back"
    );
    assert!(within(Duration::from_secs(5), || async {
        c.readyz().await.0 == StatusCode::OK
    })
    .await
    .is_some());
    c.assert_secrets_metadata_only();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_waits_for_the_initial_lists() {
    let api = FakeApiserver::start().await;
    api.stop();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = api.kubeconfig(dir.path());
    let key = TestKey::generate("ES256", "k1").unwrap();
    let issuer = MockIssuer::start(vec![key.public_jwk()]).await.unwrap();
    let upstream = EchoUpstream::start().await.unwrap();
    let opts = Opts {
        issuer_extra: "bound_objects = true".into(),
        ..Opts::default()
    };
    let mut text = common::config_text(&opts, &issuer.issuer_url(), &upstream.url());
    text.push_str(&format!(
        "\n[kubernetes]\nkubeconfig = \"{}\"\n",
        kubeconfig.display()
    ));
    let spec = KubeTokenSpec::new(&issuer.issuer_url(), AUD);
    let h = Harness::start_from_text(text, issuer, upstream, vec![key], false).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let r = get(&format!("http://{}/readyz", h.admin), &[]).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text());
    assert!(
        r.text().contains("bound objects pods: not listed yet"),
        "{}",
        r.text()
    );
    let token = h.key().sign(&dev::kube_claims(&spec));
    let r = h.get_with_token("/x", &token, &[]).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text());
    api.put_token_service_account(&spec);
    let (pod, uid) = spec.pod.clone().unwrap();
    api.put("pods", Some("default"), &pod, &uid, None, &[]);
    api.restart().await;
    h.wait_ready(Duration::from_secs(15)).await;
    assert!(within(Duration::from_secs(3), || async {
        h.get_with_token("/x", &token, &[]).await.status == StatusCode::OK
    })
    .await
    .is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_tokens_need_their_secret_unmarked_and_their_service_account() {
    let c = cluster("5m", "legacy_tokens = true", true).await;
    let legacy = |secret: &str| {
        c.h.key().sign(&json!({
            "iss": "kubernetes/serviceaccount",
            "sub": "system:serviceaccount:default:default",
            "kubernetes.io/serviceaccount/namespace": "default",
            "kubernetes.io/serviceaccount/secret.name": secret,
            "kubernetes.io/serviceaccount/service-account.name": "default",
            "kubernetes.io/serviceaccount/service-account.uid": c.spec.service_account_uid,
        }))
    };
    let secrets = c.h.metric(SECRETS).await;
    c.api.put(
        "secrets",
        Some("default"),
        "default-token-abc",
        &dev::random_uuid(),
        None,
        &[],
    );
    assert!(c.indexed_beyond("secrets", secrets).await);
    let token = legacy("default-token-abc");
    let ok = within(Duration::from_secs(3), || async {
        c.h.get_with_token("/x", &token, &[]).await.status == StatusCode::OK
    })
    .await;
    assert!(ok.is_some(), "legacy token refused with its secret present");
    // No such secret.
    let r =
        c.h.get_with_token("/x", &legacy("never-existed"), &[])
            .await;
    assert!(is_invalidated(&r), "{}", r.text());
    // Marked invalid by the legacy-token cleaner: the cached result goes.
    let uid = dev::random_uuid();
    c.api.put(
        "secrets",
        Some("default"),
        "default-token-abc",
        &uid,
        None,
        &[("kubernetes.io/legacy-token-invalid-since", "2026-01-01")],
    );
    assert!(within(Duration::from_secs(3), || async {
        is_invalidated(&c.h.get_with_token("/x", &token, &[]).await)
    })
    .await
    .is_some());
    // Label removed: accepted again (after the negative cache's memory of it).
    c.api.put(
        "secrets",
        Some("default"),
        "default-token-abc",
        &uid,
        None,
        &[],
    );
    let again = within(Duration::from_secs(15), || async {
        c.h.get_with_token("/x", &token, &[]).await.status == StatusCode::OK
    })
    .await;
    assert!(again.is_some());
    // Deleted.
    c.api
        .delete("secrets", Some("default"), "default-token-abc");
    assert!(within(Duration::from_secs(3), || async {
        is_invalidated(&c.h.get_with_token("/x", &token, &[]).await)
    })
    .await
    .is_some());
    c.assert_secrets_metadata_only();
}

/// The fake speaks the protocol the official Python client expects: it lists and watches pods
/// from it. With `CI=true` a missing `kubernetes` package fails this test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_python_client_lists_and_watches_the_fake() {
    let check = std::process::Command::new("python3")
        .args(["-c", "import kubernetes"])
        .output();
    if !check.as_ref().is_ok_and(|o| o.status.success()) {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "python3 with the kubernetes package is required in CI"
        );
        eprintln!("skipped: python3 -c 'import kubernetes' failed");
        return;
    }
    let api = FakeApiserver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = api.kubeconfig(dir.path());
    api.put("pods", Some("default"), "first", "uid-first", None, &[]);
    let script = r#"
import sys
from kubernetes import client, config, watch
config.load_kube_config(config_file=sys.argv[1])
v1 = client.CoreV1Api()
pods = v1.list_pod_for_all_namespaces()
print("LIST", pods.metadata.resource_version, ",".join(p.metadata.name for p in pods.items), flush=True)
w = watch.Watch()
for ev in w.stream(v1.list_pod_for_all_namespaces, resource_version=pods.metadata.resource_version,
                   allow_watch_bookmarks=True, timeout_seconds=20):
    o = ev["object"]
    if ev["type"] == "BOOKMARK":
        continue
    print(ev["type"], o.metadata.name, o.metadata.uid, flush=True)
    if ev["type"] == "DELETED":
        break
"#;
    let child = std::process::Command::new("python3")
        .args(["-c", script, kubeconfig.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Let it list and start watching, then change things.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !api
        .requests_for("pods")
        .iter()
        .any(|s| s.uri.contains("watch="))
    {
        assert!(Instant::now() < deadline, "python never started watching");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    api.put("pods", Some("default"), "second", "uid-second", None, &[]);
    api.delete("pods", Some("default"), "first");
    // The watch's own timeout_seconds ends it if the DELETED event never comes.
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines
            .first()
            .is_some_and(|l| l.starts_with("LIST ") && l.ends_with(" first")),
        "{stdout}\n{stderr}"
    );
    assert!(
        lines.contains(&"ADDED second uid-second"),
        "{stdout}\n{stderr}"
    );
    assert!(
        lines.contains(&"DELETED first uid-first"),
        "{stdout}\n{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspect_names_the_object_that_is_gone() {
    let c = cluster("5m", "", true).await;
    let path = c._dir.path().join("config.toml");
    std::fs::write(&path, &c.h.config_text).unwrap();
    let inspect = |token: String| {
        let path = path.clone();
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_tokenreview-proxy"))
                .args(["inspect", &token, "--config", path.to_str().unwrap()])
                .output()
                .unwrap()
        })
    };
    let token = c.token(&c.spec);
    let out = inspect(token.clone()).await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    let (pod, _) = c.spec.pod.clone().unwrap();
    assert!(
        stdout.contains(&format!("ok    bound objects: service account default/default present, pod default/{pod} present")),
        "{stdout}"
    );
    assert!(stdout.contains("VERIFIED"), "{stdout}");
    c.api.delete("pods", Some("default"), &pod);
    let out = inspect(token).await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "FAIL  bound objects (invalidated): pod default/{pod} not found"
        )),
        "{stdout}"
    );
    assert!(stdout.contains("REJECTED: invalidated"), "{stdout}");
    c.assert_secrets_metadata_only();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_keep_start_and_stop_the_watches() {
    let c = cluster("5m", "", true).await;
    let running = c.h.proxy.as_ref().unwrap();
    let first = running.runtime().auth.bound_objects().cloned().unwrap();
    let lists = || {
        c.api
            .requests_for("pods")
            .iter()
            .filter(|s| !s.uri.contains("watch="))
            .count()
    };
    let listed = lists();
    // Kept: a reload that keeps bound_objects keeps the index and its watches.
    let text =
        c.h.config_text
            .replace("[cache]", "[cache]\nnegative_ttl = \"1s\"");
    running
        .reloader()
        .apply(tokenreview_proxy::config::Config::parse(&text, "(reload)").unwrap())
        .unwrap();
    let kept = running.runtime().auth.bound_objects().cloned().unwrap();
    assert!(std::sync::Arc::ptr_eq(&first, &kept));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(lists(), listed, "the watches were restarted");
    // Off: no watches; a deleted pod's token is no longer checked.
    let off = text.replace("bound_objects = true", "bound_objects = false");
    running
        .reloader()
        .apply(tokenreview_proxy::config::Config::parse(&off, "(reload)").unwrap())
        .unwrap();
    assert!(running.runtime().auth.bound_objects().is_none());
    let (pod, pod_uid) = c.spec.pod.clone().unwrap();
    c.api.delete("pods", Some("default"), &pod);
    let token = c.token(&c.spec);
    // A changed issuer fetches its keys anew first.
    assert!(c.accepted_within_5s(|| token.clone()).await);
    assert_eq!(c.readyz().await.0, StatusCode::OK);
    // On again: fresh watches, and the token is refused.
    running
        .reloader()
        .apply(tokenreview_proxy::config::Config::parse(&text, "(reload)").unwrap())
        .unwrap();
    let fresh = running.runtime().auth.bound_objects().cloned().unwrap();
    assert!(!std::sync::Arc::ptr_eq(&first, &fresh));
    assert!(c.invalidated_within_5s(&token).await);
    assert!(lists() > listed);
    c.api
        .put("pods", Some("default"), &pod, &pod_uid, None, &[]);
    assert!(c.accepted_within_5s(|| c.token(&c.spec)).await);
}

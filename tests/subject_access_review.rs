//! SubjectAccessReview routes (SPEC section 11) against a fake kube-apiserver over real
//! sockets: what the review carries, the answer cache and its TTLs, coalescing, and 503 (never
//! an allow) when the apiserver fails. Route names are unique per test: the metrics registry
//! is shared by this binary's tests.
mod common;

use std::time::Duration;

use common::apiserver::FakeApiserver;
use common::{post_json, Harness, Opts};
use http::StatusCode;
use serde_json::json;
use tokenreview_proxy::dev::{self, KubeTokenSpec};

struct Setup {
    h: Harness,
    api: FakeApiserver,
    _dir: tempfile::TempDir,
}

async fn start(routes: &str, deny_ttl: &str) -> Setup {
    let api = FakeApiserver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = api.kubeconfig(dir.path(), "proxy-sa-token");
    let h = Harness::start_with(Opts {
        tail: format!(
            "[kubernetes]\nkubeconfig = {:?}\n[authorization]\nsar_allow_ttl = \"5m\"\nsar_deny_ttl = {deny_ttl:?}\n{routes}",
            kubeconfig.display().to_string()
        ),
        ..Opts::default()
    })
    .await;
    Setup { h, api, _dir: dir }
}

fn spec_for(h: &Harness, ns: &str, name: &str) -> KubeTokenSpec {
    let mut spec = h.spec();
    spec.namespace = ns.into();
    spec.service_account = name.into();
    spec
}

async fn status(h: &Harness, path: &str, token: &str) -> StatusCode {
    h.get_with_token(path, token, &[]).await.status
}

#[tokio::test]
async fn a_resource_review_carries_the_whole_identity_and_the_routes_attributes() {
    let s = start(
        r#"
[[authorization.routes]]
name = "sar-body-res"
path_prefix = "/svc"
subject_access_review = { resource = "services", subresource = "proxy", namespace = "shop", name = "orders" }
[[authorization.routes]]
name = "sar-body-nonres"
path_prefix = "/metrics"
subject_access_review = { non_resource = true }
[[authorization.routes]]
name = "sar-body-verb"
path_prefix = "/custom"
subject_access_review = { verb = "proxy", group = "apps", version = "v1", resource = "deployments" }
"#,
        "30s",
    )
    .await;
    let (h, api) = (&s.h, &s.api);
    api.allow("system:serviceaccount:shop:cart");
    let spec = spec_for(h, "shop", "cart");
    let token = h.key().sign(&dev::kube_claims(&spec));
    assert_eq!(status(h, "/svc/orders/7", &token).await, StatusCode::OK);
    let reviews = api.reviews();
    assert_eq!(reviews.len(), 1);
    let r = &reviews[0];
    assert_eq!(r["apiVersion"], "authorization.k8s.io/v1");
    assert_eq!(r["kind"], "SubjectAccessReview");
    let sp = &r["spec"];
    assert_eq!(sp["user"], "system:serviceaccount:shop:cart");
    assert_eq!(sp["uid"], spec.service_account_uid.as_str());
    assert_eq!(
        sp["groups"],
        json!([
            "system:serviceaccounts",
            "system:serviceaccounts:shop",
            "system:authenticated"
        ])
    );
    let (pod, pod_uid) = spec.pod.clone().unwrap();
    let (node, node_uid) = spec.node.clone().unwrap();
    assert_eq!(
        sp["extra"],
        json!({
            "authentication.kubernetes.io/credential-id": [format!("JTI={}", spec.jti.clone().unwrap())],
            "authentication.kubernetes.io/node-name": [node],
            "authentication.kubernetes.io/node-uid": [node_uid],
            "authentication.kubernetes.io/pod-name": [pod],
            "authentication.kubernetes.io/pod-uid": [pod_uid],
        })
    );
    assert_eq!(
        sp["resourceAttributes"],
        json!({"verb": "get", "resource": "services", "subresource": "proxy", "namespace": "shop", "name": "orders"})
    );
    assert!(sp.get("nonResourceAttributes").is_none());
    // The proxy authenticates to the apiserver with its kubeconfig's credential.
    assert_eq!(api.bearers()[0], "Bearer proxy-sa-token");
    // The caller's token never goes to the apiserver.
    assert!(!r.to_string().contains(&token));

    // POST maps to `create`.
    let auth = format!("Bearer {token}");
    let resp = post_json(
        &h.url("/svc/orders"),
        &[("authorization", &auth)],
        &json!({}),
    )
    .await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(
        api.reviews()[1]["spec"]["resourceAttributes"]["verb"],
        "create"
    );

    // Non-resource: the normalized path and the lowercased method.
    assert_eq!(status(h, "/metrics/./x/../y", &token).await, StatusCode::OK);
    let nr = &api.reviews()[2]["spec"];
    assert_eq!(
        nr["nonResourceAttributes"],
        json!({"path": "/metrics/y", "verb": "get"})
    );
    assert!(nr.get("resourceAttributes").is_none());
    let resp = post_json(&h.url("/metrics"), &[("authorization", &auth)], &json!({})).await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(
        api.reviews()[3]["spec"]["nonResourceAttributes"],
        json!({"path": "/metrics", "verb": "post"})
    );

    // A configured verb, group and version are sent as written.
    assert_eq!(status(h, "/custom", &token).await, StatusCode::OK);
    assert_eq!(
        api.reviews()[4]["spec"]["resourceAttributes"],
        json!({"verb": "proxy", "group": "apps", "version": "v1", "resource": "deployments"})
    );
}

#[tokio::test]
async fn answers_are_cached_allows_for_their_ttl_and_denials_for_theirs() {
    let s = start(
        r#"
[[authorization.routes]]
name = "sar-cache"
path_prefix = "/svc"
subject_access_review = { resource = "services", namespace = "shop" }
"#,
        "1s",
    )
    .await;
    let (h, api) = (&s.h, &s.api);
    api.allow("system:serviceaccount:shop:cart");
    let cart = h
        .key()
        .sign(&dev::kube_claims(&spec_for(h, "shop", "cart")));
    let other = h
        .key()
        .sign(&dev::kube_claims(&spec_for(h, "shop", "other")));
    for _ in 0..3 {
        assert_eq!(status(h, "/svc", &cart).await, StatusCode::OK);
    }
    assert_eq!(
        api.reviews().len(),
        1,
        "allowed: one review, then the cache"
    );
    // A denial: 403 without revealing anything, cached for sar_deny_ttl only.
    let r = h.get_with_token("/svc", &other, &[]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.text(), "forbidden\n");
    assert_eq!(status(h, "/svc", &other).await, StatusCode::FORBIDDEN);
    assert_eq!(api.reviews().len(), 2, "the denial is cached");
    tokio::time::sleep(Duration::from_millis(1300)).await;
    api.allow("system:serviceaccount:shop:other");
    assert_eq!(status(h, "/svc", &other).await, StatusCode::OK);
    assert_eq!(
        api.reviews().len(),
        3,
        "the denial expired and was asked again"
    );
    // The allow is still cached.
    assert_eq!(status(h, "/svc", &cart).await, StatusCode::OK);
    assert_eq!(api.reviews().len(), 3);
    let m = h.metrics().await;
    let v = |series: &str| common::metric_value(&m, series);
    assert!(
        v(r#"tokenreview_proxy_subject_access_reviews_total{result="allowed",source="cache"}"#)
            >= 3.0
    );
    assert!(
        v(r#"tokenreview_proxy_subject_access_reviews_total{result="denied",source="cache"}"#)
            >= 1.0
    );
    assert!(
        v(r#"tokenreview_proxy_subject_access_reviews_total{result="denied",source="apiserver"}"#)
            >= 1.0
    );
    assert_eq!(
        v(r#"tokenreview_proxy_authorization_total{route="sar-cache",decision="allowed"}"#),
        5.0
    );
    assert_eq!(
        v(r#"tokenreview_proxy_authorization_total{route="sar-cache",decision="denied"}"#),
        2.0
    );
}

#[tokio::test]
async fn twenty_concurrent_identical_requests_make_one_review() {
    let s = start(
        r#"
[[authorization.routes]]
name = "sar-coalesce"
path_prefix = "/svc"
subject_access_review = { non_resource = true }
"#,
        "30s",
    )
    .await;
    let (h, api) = (&s.h, &s.api);
    api.allow("system:serviceaccount:shop:cart");
    api.set_delay(Duration::from_millis(500));
    let token = h
        .key()
        .sign(&dev::kube_claims(&spec_for(h, "shop", "cart")));
    // Warm the verification cache, on a path no route covers (no review).
    assert_eq!(status(h, "/warm", &token).await, StatusCode::OK);
    let url = h.url("/svc/x");
    let auth = format!("Bearer {token}");
    let all: Vec<_> = (0..20)
        .map(|_| {
            let (url, auth) = (url.clone(), auth.clone());
            tokio::spawn(async move { common::get(&url, &[("authorization", &auth)]).await.status })
        })
        .collect();
    for t in all {
        assert_eq!(t.await.unwrap(), StatusCode::OK);
    }
    assert_eq!(api.reviews().len(), 1);
}

#[tokio::test]
async fn a_failing_or_unreachable_apiserver_is_503_and_never_cached() {
    let s = start(
        r#"
[[authorization.routes]]
name = "sar-down"
path_prefix = "/svc"
subject_access_review = { resource = "services" }
"#,
        "30s",
    )
    .await;
    let (h, api) = (&s.h, &s.api);
    api.allow("system:serviceaccount:shop:cart");
    api.set_failing(true);
    let token = h
        .key()
        .sign(&dev::kube_claims(&spec_for(h, "shop", "cart")));
    let before = h.upstream.request_count();
    let r = h.get_with_token("/svc", &token, &[]).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.header("retry-after").is_some());
    assert_eq!(h.upstream.request_count(), before, "nothing forwarded");
    // The error was not cached: once the apiserver answers, so does the proxy.
    api.set_failing(false);
    assert_eq!(status(h, "/svc", &token).await, StatusCode::OK);
    assert_eq!(api.reviews().len(), 2);
    assert!(
        h.metric(
            r#"tokenreview_proxy_subject_access_reviews_total{result="error",source="apiserver"}"#
        )
        .await
            >= 1.0
    );

    // Nothing listening at all.
    let dead = FakeApiserver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dead.kubeconfig(dir.path(), "t");
    drop(dead);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let h2 = Harness::start_with(Opts {
        tail: format!(
            "[kubernetes]\nkubeconfig = {:?}\n[[authorization.routes]]\nname = \"sar-dead\"\npath_prefix = \"/\"\nsubject_access_review = {{ non_resource = true }}\n",
            kubeconfig.display().to_string()
        ),
        ..Opts::default()
    })
    .await;
    let token = h2.token();
    let r = h2.get_with_token("/x", &token, &[]).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(h2.upstream.request_count(), 0);
}

#[tokio::test]
async fn the_routes_own_conditions_are_checked_before_any_review() {
    let s = start(
        r#"
[[authorization.routes]]
name = "sar-cond"
path_prefix = "/svc"
service_accounts = ["shop:*"]
subject_access_review = { resource = "services" }
"#,
        "30s",
    )
    .await;
    let (h, api) = (&s.h, &s.api);
    api.allow("system:serviceaccount:billing:x");
    let outsider = h
        .key()
        .sign(&dev::kube_claims(&spec_for(h, "billing", "x")));
    assert_eq!(status(h, "/svc", &outsider).await, StatusCode::FORBIDDEN);
    assert!(api.reviews().is_empty());
    let insider = h.key().sign(&dev::kube_claims(&spec_for(h, "shop", "y")));
    assert_eq!(status(h, "/svc", &insider).await, StatusCode::FORBIDDEN);
    assert_eq!(
        api.reviews().len(),
        1,
        "passed the list, then the apiserver denied"
    );
}

//! Authorization (SPEC section 11) over real sockets: routes and their conditions, first match,
//! the default, anonymous routes, CEL expressions, path normalization (what the upstream
//! receives) and every 400 it gives, the metric, and TokenReview left alone. Each test names
//! its routes uniquely: the metrics registry is shared by the tests of this binary.
mod common;

use std::time::Duration;

use common::{captured_logs, get, post_json, read_response, Harness, Opts, AUD};
use http::StatusCode;
use serde_json::json;
use tokenreview_proxy::dev;

async fn start(tail: &str) -> Harness {
    Harness::start_with(Opts {
        tail: tail.to_string(),
        ..Opts::default()
    })
    .await
}

/// A token of service account `ns:name`.
fn token_for(h: &Harness, ns: &str, name: &str) -> String {
    let mut spec = h.spec();
    spec.namespace = ns.into();
    spec.service_account = name.into();
    h.key().sign(&dev::kube_claims(&spec))
}

/// The status of `GET path` with `token`.
async fn status(h: &Harness, path: &str, token: &str) -> StatusCode {
    h.get_with_token(path, token, &[]).await.status
}

/// Send `request_line`'s target as written (no client-side parsing) with `token`, return the
/// raw response.
async fn raw(h: &Harness, method: &str, target: &str, token: Option<&str>) -> String {
    use tokio::io::AsyncWriteExt;
    let mut s = tokio::net::TcpStream::connect(h.addr).await.unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let req =
        format!("{method} {target} HTTP/1.1\r\nHost: app.test\r\n{auth}Connection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    read_response(&mut s, Duration::from_secs(5)).await
}

fn status_of(raw: &str) -> u16 {
    raw.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn last_uri(h: &Harness) -> String {
    h.upstream
        .requests()
        .last()
        .map(|r| r.uri.clone())
        .unwrap_or_default()
}

#[tokio::test]
async fn service_account_lists_allow_their_callers_and_deny_the_rest() {
    let h = start(
        r#"
[authorization]
default = "deny"
[[authorization.routes]]
name = "sa-orders"
path_prefix = "/api/orders"
service_accounts = ["shop:cart", "billing:*"]
"#,
    )
    .await;
    let cart = token_for(&h, "shop", "cart");
    let billing = token_for(&h, "billing", "invoices");
    let other = token_for(&h, "shop", "checkout");
    assert_eq!(status(&h, "/api/orders", &cart).await, StatusCode::OK);
    assert_eq!(status(&h, "/api/orders/7", &billing).await, StatusCode::OK);
    let denied = h.get_with_token("/api/orders/7", &other, &[]).await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    // The 403 never says who the caller is.
    assert_eq!(denied.text(), "forbidden\n");
    // Whole segments only: /api/ordersX is not the route's, and the default denies it.
    assert_eq!(
        status(&h, "/api/ordersX", &cart).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(status(&h, "/elsewhere", &cart).await, StatusCode::FORBIDDEN);
    let m = h.metrics().await;
    let v = |s: &str| common::metric_value(&m, s);
    assert_eq!(
        v(r#"tokenreview_proxy_authorization_total{route="sa-orders",decision="allowed"}"#),
        2.0
    );
    assert_eq!(
        v(r#"tokenreview_proxy_authorization_total{route="sa-orders",decision="denied"}"#),
        1.0
    );
    assert!(
        v(r#"tokenreview_proxy_authorization_total{route="default",decision="denied"}"#) >= 2.0
    );
}

#[tokio::test]
async fn groups_and_users_each_admit_and_others_are_denied() {
    let h = start(
        r#"
[[authorization.routes]]
name = "gu-groups"
path_prefix = "/ci"
groups = ["system:serviceaccounts:ci"]
[[authorization.routes]]
name = "gu-users"
path = "/alice"
users = ["system:serviceaccount:team:alice"]
"#,
    )
    .await;
    let ci = token_for(&h, "ci", "runner");
    let alice = token_for(&h, "team", "alice");
    assert_eq!(status(&h, "/ci/build", &ci).await, StatusCode::OK);
    assert_eq!(status(&h, "/ci/build", &alice).await, StatusCode::FORBIDDEN);
    assert_eq!(status(&h, "/alice", &alice).await, StatusCode::OK);
    assert_eq!(status(&h, "/alice", &ci).await, StatusCode::FORBIDDEN);
    // An exact path covers only itself; below it, the default (allow) decides.
    assert_eq!(status(&h, "/alice/x", &ci).await, StatusCode::OK);
}

#[tokio::test]
async fn the_first_covering_route_decides_and_methods_narrow_it() {
    let h = start(
        r#"
[authorization]
default = "deny"
[[authorization.routes]]
name = "fm-admin"
path_prefix = "/api/admin"
groups = ["admins"]
[[authorization.routes]]
name = "fm-read"
path_prefix = "/api"
methods = ["GET"]
[[authorization.routes]]
name = "fm-write"
path_prefix = "/api"
methods = ["POST"]
service_accounts = ["shop:writer"]
"#,
    )
    .await;
    let reader = token_for(&h, "shop", "reader");
    let writer = token_for(&h, "shop", "writer");
    // fm-admin comes first: fm-read would allow, but is never asked.
    assert_eq!(
        status(&h, "/api/admin/users", &reader).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(status(&h, "/api/items", &reader).await, StatusCode::OK);
    let post = |token: String| {
        let url = h.url("/api/items");
        async move {
            post_json(
                &url,
                &[("authorization", &format!("Bearer {token}"))],
                &json!({}),
            )
            .await
            .status
        }
    };
    assert_eq!(post(writer.clone()).await, StatusCode::OK);
    assert_eq!(post(reader.clone()).await, StatusCode::FORBIDDEN);
    // Methods compare case-insensitively: `get` is covered by the GET route, not the default.
    let r = raw(&h, "get", "/api/items", Some(&reader)).await;
    assert_eq!(status_of(&r), 200, "{r}");
    // DELETE matches no route: the default denies it.
    let r = raw(&h, "DELETE", "/api/items", Some(&writer)).await;
    assert_eq!(status_of(&r), 403, "{r}");
}

#[tokio::test]
async fn the_default_allows_unrouted_requests_unless_told_to_deny() {
    let h = start(
        r#"
[[authorization.routes]]
name = "da-only"
path = "/locked"
users = ["nobody"]
"#,
    )
    .await;
    let t = h.token();
    assert_eq!(status(&h, "/open", &t).await, StatusCode::OK);
    assert_eq!(status(&h, "/locked", &t).await, StatusCode::FORBIDDEN);
    assert_eq!(
        h.metric(r#"tokenreview_proxy_authorization_total{route="default",decision="allowed"}"#)
            .await
            .min(1.0),
        1.0
    );
}

#[tokio::test]
async fn anonymous_routes_forward_without_identity_but_still_verify_a_sent_token() {
    let h = start(
        r#"
[authorization]
default = "deny"
[[authorization.routes]]
name = "an-health"
path = "/healthz"
anonymous = true
"#,
    )
    .await;
    // No token: forwarded, with no identity headers, and a spoofed one stripped.
    let r = get(&h.url("/healthz"), &[("x-remote-user", "system:admin")]).await;
    assert_eq!(r.status, StatusCode::OK);
    let seen = h.upstream.requests().last().cloned().unwrap();
    assert!(
        !seen.headers.iter().any(|(k, _)| k.starts_with("x-remote-")),
        "{:?}",
        seen.headers
    );
    // A valid token: forwarded with its identity.
    let t = token_for(&h, "mon", "prober");
    assert_eq!(status(&h, "/healthz", &t).await, StatusCode::OK);
    assert_eq!(
        common::recorded_header(&h.upstream, "x-remote-user"),
        ["system:serviceaccount:mon:prober"]
    );
    // A bad token is refused, never downgraded to anonymous.
    let before = h.upstream.request_count();
    let r = h.get_with_token("/healthz", "not-a-jwt", &[]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // Signed by a key the issuer does not publish, under its key id.
    let forged = dev::TestKey::generate("RS256", "k1")
        .unwrap()
        .sign(&dev::kube_claims(&h.spec()));
    let r = h.get_with_token("/healthz", &forged, &[]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r
        .header("www-authenticate")
        .unwrap()
        .contains("bad_signature"));
    assert_eq!(h.upstream.request_count(), before);
    // Only the anonymous route is open without a token.
    assert_eq!(
        get(&h.url("/other"), &[]).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get(&h.url("/healthz/x"), &[]).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        h.metric(
            r#"tokenreview_proxy_authorization_total{route="an-health",decision="anonymous"}"#
        )
        .await,
        1.0
    );
}

#[tokio::test]
async fn cel_expressions_allow_deny_and_deny_on_error_with_a_warning() {
    let h = start(
        r#"
[authorization]
default = "deny"
[[authorization.routes]]
name = "cel-read"
path_prefix = "/reports"
expression = 'request.method == "GET" && "system:serviceaccounts:ops" in user.groups && request.path.startsWith("/reports/") && request.host == "app.test"'
[[authorization.routes]]
name = "cel-pod"
path_prefix = "/pods"
expression = 'user.extra["authentication.kubernetes.io/pod-name"][0] == "demo-pod" && user.uid != ""'
[[authorization.routes]]
name = "cel-broken"
path_prefix = "/broken"
expression = 'user.extra["no-such-key"][0] == "x"'
"#,
    )
    .await;
    let ops = token_for(&h, "ops", "bot");
    let dev_ = token_for(&h, "dev", "bot");
    let r = raw(&h, "GET", "/reports/q1", Some(&ops)).await;
    assert_eq!(status_of(&r), 200, "{r}");
    assert_eq!(
        status_of(&raw(&h, "GET", "/reports/q1", Some(&dev_)).await),
        403
    );
    assert_eq!(
        status_of(&raw(&h, "DELETE", "/reports/q1", Some(&ops)).await),
        403
    );
    // Per-token extras (the bound pod) are part of `user.extra`.
    assert_eq!(status(&h, "/pods", &ops).await, StatusCode::OK);
    let mut other_pod = h.spec();
    other_pod.pod = Some((
        "other".into(),
        "c0ffee00-0000-4000-8000-000000000000".into(),
    ));
    let other_pod = h.key().sign(&dev::kube_claims(&other_pod));
    assert_eq!(status(&h, "/pods", &other_pod).await, StatusCode::FORBIDDEN);
    // An expression that fails at run time denies, and says so in the log (never the token).
    assert_eq!(status(&h, "/broken", &ops).await, StatusCode::FORBIDDEN);
    let logs = captured_logs();
    let line = logs
        .lines()
        .find(|l| l.contains("authorization expression failed") && l.contains("cel-broken"))
        .unwrap_or_else(|| panic!("no warning in:\n{logs}"));
    assert!(line.contains("WARN"), "{line}");
    assert!(!logs.contains(&ops), "a token reached the log");
}

#[tokio::test]
async fn routing_and_the_upstream_see_the_same_normalized_path() {
    let h = start(
        r#"
[[authorization.routes]]
name = "nz-admin"
path_prefix = "/admin"
users = ["nobody"]
"#,
    )
    .await;
    let t = h.token();
    let cases = [
        (
            "/api/%6Frders/./7/../8?x=%2F..&y=%41",
            "/api/orders/8?x=%2F..&y=%41",
        ),
        ("/a/%7Euser/%2e/b", "/a/~user/b"),
        ("/a//b/", "/a//b/"),
        ("/a/b/..", "/a/"),
        ("/a/%3A%20", "/a/%3A%20"),
    ];
    for (sent, forwarded) in cases {
        let r = raw(&h, "GET", sent, Some(&t)).await;
        assert_eq!(status_of(&r), 200, "{sent}: {r}");
        assert_eq!(last_uri(&h), forwarded, "{sent}");
    }
    // A climb back into a denied prefix is routed as the path it resolves to.
    for sneaky in [
        "/public/../admin/x",
        "/%61dmin/x",
        "/public/%2e%2e/admin",
        "/./admin",
    ] {
        let r = raw(&h, "GET", sneaky, Some(&t)).await;
        assert_eq!(status_of(&r), 403, "{sneaky}: {r}");
    }
}

#[tokio::test]
async fn unsafe_paths_get_400_and_never_reach_the_upstream() {
    let h = start("").await;
    let t = h.token();
    let cases = [
        ("/a%2Fb", "encoded"),
        ("/a%2fb", "encoded"),
        ("/a%5Cb", "encoded"),
        ("/a%5cb", "encoded"),
        ("/..", "above the root"),
        ("/a/../../etc/passwd", "above the root"),
        ("/%2e%2e/x", "above the root"),
        ("/a%zz", "percent-encoding"),
    ];
    for (path, reason) in cases {
        let r = raw(&h, "GET", path, Some(&t)).await;
        assert_eq!(status_of(&r), 400, "{path}: {r}");
        assert!(r.contains(reason), "{path}: {r}");
        // Without a token too: the path is refused before anything reads the token.
        assert_eq!(status_of(&raw(&h, "GET", path, None).await), 400, "{path}");
    }
    // A raw backslash: refused, by hyper's parser or by the proxy.
    let r = raw(&h, "GET", "/a\\b", Some(&t)).await;
    assert_eq!(status_of(&r), 400, "{r}");
    assert_eq!(h.upstream.request_count(), 0);
}

#[tokio::test]
async fn tokenreview_is_not_a_route() {
    let h = start(
        r#"
[authorization]
default = "deny"
[[authorization.routes]]
name = "tr-all"
path_prefix = "/"
users = ["nobody"]
"#,
    )
    .await;
    let t = h.token();
    assert_eq!(status(&h, "/anything", &t).await, StatusCode::FORBIDDEN);
    let review = json!({
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenReview",
        "spec": {"token": t, "audiences": [AUD]},
    });
    let r = post_json(
        &h.url("/apis/authentication.k8s.io/v1/tokenreviews"),
        &[],
        &review,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["status"]["authenticated"], true);
}

const BIN: &str = env!("CARGO_BIN_EXE_tokenreview-proxy");

const CLI_BASE: &str = r#"
[server]
listen = "127.0.0.1:8080"
[upstream]
url = "http://127.0.0.1:8081"
[[issuers]]
name = "cluster"
issuer = "https://kubernetes.default.svc.cluster.local"
audiences = ["a"]
"#;

/// `check-config` on `text` (written to a temporary file): exit code, stdout, stderr, path.
fn check_config(text: &str) -> (Option<i32>, String, String, String) {
    let f = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    std::fs::write(f.path(), text).unwrap();
    let path = f.path().to_str().unwrap().to_string();
    let o = std::process::Command::new(BIN)
        .args(["check-config", "--config", &path])
        .env_remove("TOKENREVIEW_PROXY_CONFIG")
        .output()
        .unwrap();
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
        path,
    )
}

#[test]
fn check_config_prints_the_routes_in_order() {
    let (code, out, err, _) = check_config(&format!(
        r#"{CLI_BASE}
[authorization]
default = "deny"
[[authorization.routes]]
name = "orders-api"
path_prefix = "/api/orders"
methods = ["GET", "POST"]
service_accounts = ["shop:cart", "billing:*"]
[[authorization.routes]]
name = "health"
path = "/healthz"
anonymous = true
[[authorization.routes]]
name = "reports"
path_prefix = "/reports"
expression = '"ops" in user.groups'
"#
    ));
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("authorization: default deny"), "{out}");
    let orders = out.find("route \"orders-api\": path_prefix /api/orders; methods GET,POST; service_accounts [\"shop:cart\", \"billing:*\"]");
    let health = out.find("route \"health\": path /healthz; methods any; anonymous");
    let reports = out.find("route \"reports\": path_prefix /reports; methods any; expression");
    assert!(
        orders.is_some() && health > orders && reports > health,
        "{out}"
    );
}

#[test]
fn a_bad_expression_or_an_unknown_route_key_exits_64_naming_file_and_route() {
    let (code, _, err, path) = check_config(&format!(
        "{CLI_BASE}\n[[authorization.routes]]\nname = \"orders-api\"\npath = \"/a\"\nexpression = 'user.groups.exists(g, '\n"
    ));
    assert_eq!(code, Some(64), "{err}");
    assert!(err.contains(&path), "{err}");
    assert!(err.contains("authorization.routes[0].expression"), "{err}");
    assert!(err.contains("\"orders-api\""), "{err}");

    let (code, _, err, path) = check_config(&format!(
        "{CLI_BASE}\n[[authorization.routes]]\nname = \"ok\"\npath = \"/a\"\n[[authorization.routes]]\nname = \"typo\"\npath = \"/b\"\nverbs = [\"GET\"]\n"
    ));
    assert_eq!(code, Some(64), "{err}");
    assert!(err.contains(&path), "{err}");
    assert!(err.contains("authorization.routes[1]"), "{err}");
    assert!(err.contains("\"typo\"") && err.contains("verbs"), "{err}");
}

#[tokio::test]
async fn a_reload_changes_the_routes_on_open_connections() {
    let h = start("").await;
    let t = h.token();
    let mut conn = common::KeepAlive::open(h.addr).await;
    assert_eq!(conn.get_with_token("/secret", &t).await.status, 200);
    let locked = format!(
        "{}\n[[authorization.routes]]\nname = \"rl-secret\"\npath = \"/secret\"\nusers = [\"nobody\"]\n",
        h.config_text
    );
    let config = tokenreview_proxy::config::Config::parse(&locked, "(reloaded)").unwrap();
    h.proxy.as_ref().unwrap().reloader().apply(config).unwrap();
    // The same connection, its token remembered: the new routes decide.
    assert_eq!(conn.get_with_token("/secret", &t).await.status, 403);
    assert_eq!(conn.get_with_token("/public", &t).await.status, 200);
}

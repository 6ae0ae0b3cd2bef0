//! Every example works as shipped (SPEC section 16): each config in `config/` is run by the
//! binary and serves a token minted for it. A config is changed only where a test machine
//! needs it: listen addresses on free loopback ports, the upstream pointed at an echo server,
//! and where the config names a live issuer (or a file whose private key was not kept), keys
//! from a test issuer's JWKS URL. Everything else, `issuer`, audiences, algorithms, claim
//! mappings, `allowed_callers`, limits, is the example's own.
mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{get, post_json, recorded_header};
use serde_json::{json, Value};
use tokenreview_proxy::dev::{self, EchoUpstream, KubeTokenSpec, MockIssuer, TestKey};

const BIN: &str = env!("CARGO_BIN_EXE_tokenreview-proxy");

fn examples() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    v.sort();
    v
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The binary, stopped when dropped.
struct Proxy {
    child: Child,
    stderr: PathBuf,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proxy {
    fn logs(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

/// What a token for the example's first issuer must look like.
struct IssuerView {
    issuer: String,
    audience: String,
    oidc: bool,
}

/// Rewrites `table` in place for a test machine; returns the first issuer's view.
fn localize(
    table: &mut toml::Table,
    proxy: u16,
    admin: u16,
    upstream: &str,
    jwks_url: &str,
) -> IssuerView {
    let server = table["server"].as_table_mut().unwrap();
    server.insert("listen".into(), format!("127.0.0.1:{proxy}").into());
    let mut admin_table = toml::Table::new();
    admin_table.insert("listen".into(), format!("127.0.0.1:{admin}").into());
    table.insert("admin".into(), admin_table.into());
    if let Some(up) = table.get_mut("upstream").and_then(|u| u.as_table_mut()) {
        // Keep the example's path prefix, if it has one.
        let url = up["url"].as_str().unwrap().to_string();
        let path = url
            .splitn(4, '/')
            .nth(3)
            .map(|p| format!("/{p}"))
            .unwrap_or_default();
        up.insert("url".into(), format!("{upstream}{path}").into());
        for key in ["ca_file", "client_cert_file", "client_key_file"] {
            up.remove(key);
        }
    }
    let issuers = table["issuers"].as_array_mut().unwrap();
    for issuer in issuers.iter_mut() {
        let issuer = issuer.as_table_mut().unwrap();
        for key in ["discovery_url", "jwks_file", "ca_file", "token_file"] {
            issuer.remove(key);
        }
        issuer.insert("jwks_url".into(), jwks_url.into());
    }
    let first = issuers[0].as_table().unwrap();
    let str_of = |k: &str| first.get(k).and_then(|v| v.as_str()).map(str::to_string);
    IssuerView {
        issuer: str_of("issuer").unwrap(),
        audience: first["audiences"].as_array().unwrap()[0]
            .as_str()
            .unwrap()
            .to_string(),
        oidc: str_of("claims").as_deref() == Some("oidc"),
    }
}

fn start(config: &Path, dir: &Path) -> Proxy {
    let stderr = dir.join("stderr.log");
    let child = Command::new(BIN)
        .args(["run", "--config"])
        .arg(config)
        .env_remove("TOKENREVIEW_PROXY_CONFIG")
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .expect("start the binary");
    Proxy { child, stderr }
}

async fn wait_ready(proxy: &mut Proxy, admin: u16, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let url = format!("http://127.0.0.1:{admin}/readyz");
    loop {
        if let Ok(Some(status)) = proxy.child.try_wait() {
            panic!("{name}: the proxy exited ({status}): {}", proxy.logs());
        }
        let probe = tokio::time::timeout(Duration::from_secs(1), async {
            match tokio::net::TcpStream::connect(("127.0.0.1", admin)).await {
                Ok(_) => Some(get(&url, &[]).await.status),
                Err(_) => None,
            }
        });
        if let Ok(Some(status)) = probe.await {
            if status == 200 {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{name}: /readyz not 200 within 20s: {}",
            proxy.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn oidc_token(key: &TestKey, view: &IssuerView) -> String {
    let now = dev::now_unix();
    key.sign(&json!({
        "iss": view.issuer, "aud": [view.audience], "sub": "user-42",
        "email": "alice@example.com", "groups": ["ops"],
        "iat": now, "nbf": now, "exp": now + 600,
    }))
}

fn kube_token(key: &TestKey, view: &IssuerView, namespace: &str, sa: &str) -> String {
    let mut spec = KubeTokenSpec::new(&view.issuer, &view.audience);
    spec.namespace = namespace.into();
    spec.service_account = sa.into();
    key.sign(&dev::kube_claims(&spec))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_example_config_runs_and_serves_a_token_minted_for_it() {
    let mut seen = Vec::new();
    for path in examples() {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let mut table: toml::Table = std::fs::read_to_string(&path).unwrap().parse().unwrap();
        let alg = table["issuers"][0]
            .get("algorithms")
            .and_then(|a| a.as_array())
            .and_then(|a| a[0].as_str())
            .unwrap_or("RS256")
            .to_string();
        let key = TestKey::generate(&alg, "example-key").unwrap();
        let issuer = MockIssuer::start(vec![key.public_jwk()]).await.unwrap();
        let upstream = EchoUpstream::start().await.unwrap();
        let (port, admin) = (free_port(), free_port());
        let view = localize(&mut table, port, admin, &upstream.url(), &issuer.jwks_url());
        let proxies = table.contains_key("upstream");

        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join(&name);
        std::fs::write(&config, toml::to_string(&table).unwrap()).unwrap();
        let mut proxy = start(&config, dir.path());
        wait_ready(&mut proxy, admin, &name).await;

        let token = if view.oidc {
            oidc_token(&key, &view)
        } else {
            kube_token(&key, &view, "shop", "cart")
        };
        let want_user = if view.oidc {
            "oidc:alice@example.com"
        } else {
            "system:serviceaccount:shop:cart"
        };
        let bearer = format!("Bearer {token}");
        if proxies {
            let r = get(
                &format!("http://127.0.0.1:{port}/hello"),
                &[("authorization", &bearer)],
            )
            .await;
            assert_eq!(r.status, 200, "{name}: {} {}", r.text(), proxy.logs());
            assert_eq!(
                recorded_header(&upstream, "x-remote-user"),
                vec![want_user.to_string()],
                "{name}"
            );
            let r = get(&format!("http://127.0.0.1:{port}/hello"), &[]).await;
            assert_eq!(r.status, 401, "{name}: no token");
        }
        let tokenreview = table
            .get("tokenreview")
            .and_then(|t| t.get("enabled"))
            .and_then(|e| e.as_bool())
            .unwrap_or(true);
        if tokenreview {
            // A caller the example's allowed_callers lists, when it has the list.
            let callers: Vec<String> = table
                .get("tokenreview")
                .and_then(|t| t.get("allowed_callers"))
                .and_then(|c| c.as_array())
                .map(|c| c.iter().map(|v| v.as_str().unwrap().to_string()).collect())
                .unwrap_or_default();
            let caller = callers.first().map(|c| {
                let sa = c
                    .strip_prefix("system:serviceaccount:")
                    .expect("a service account");
                let (ns, name) = sa.split_once(':').unwrap();
                format!("Bearer {}", kube_token(&key, &view, ns, name))
            });
            let headers: Vec<(&str, &str)> = caller
                .iter()
                .map(|c| ("authorization", c.as_str()))
                .collect();
            let body = json!({
                "apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                "spec": { "token": token },
            });
            let url = format!("http://127.0.0.1:{port}/apis/authentication.k8s.io/v1/tokenreviews");
            let r = post_json(&url, &headers, &body).await;
            assert_eq!(r.status, 200, "{name}: {} {}", r.text(), proxy.logs());
            let v: Value = r.json();
            assert_eq!(v["status"]["authenticated"], true, "{name}: {v}");
            assert_eq!(v["status"]["user"]["username"], want_user, "{name}: {v}");
        }
        assert!(
            proxies || tokenreview,
            "{name} neither proxies nor serves TokenReview"
        );
        seen.push(name);
    }
    assert!(
        seen.len() >= 4,
        "expected the 4 shipped examples, ran {seen:?}"
    );
}

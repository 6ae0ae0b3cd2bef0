//! `dev`: the embedded demo. Starts the mock issuer, the echo upstream and the proxy on
//! loopback, prints a valid token, a tampered one and ready-to-paste commands, and runs until
//! SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use base64::Engine;

use super::args::DevArgs;
use super::common::{failure, ShutdownSignals};
use crate::config::Config;
use crate::dev::{self, EchoUpstream, KubeTokenSpec, MockIssuer, TestKey};
use crate::jwks;

fn free_or_ephemeral(addr: SocketAddr) -> SocketAddr {
    match std::net::TcpListener::bind(addr) {
        Ok(_) => addr,
        Err(_) => SocketAddr::new(addr.ip(), 0),
    }
}

pub const DEV_AUDIENCE: &str = "tokenreview-proxy-dev";

pub fn dev(args: &DevArgs) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return failure(e),
    };
    rt.block_on(async {
        let mut signals = match ShutdownSignals::install() {
            Ok(s) => s,
            Err(e) => return failure(format!("cannot install signal handlers: {e}")),
        };
        let key = match TestKey::generate("RS256", "dev-key-1") {
            Ok(k) => k,
            Err(e) => return failure(e),
        };
        let issuer = match MockIssuer::start(vec![key.public_jwk()]).await {
            Ok(i) => i,
            Err(e) => return failure(format!("dev issuer: {e}")),
        };
        let upstream = match EchoUpstream::start_on(args.upstream_listen).await {
            Ok(u) => u,
            Err(_) => match EchoUpstream::start().await {
                Ok(u) => u,
                Err(e) => return failure(format!("dev upstream: {e}")),
            },
        };
        let listen = free_or_ephemeral(args.listen);
        let admin = free_or_ephemeral(args.admin_listen);
        // The dev config goes through the same parser as a real file.
        let toml = format!(
            r#"
[server]
listen = "{listen}"
shutdown_delay = "0s"
[admin]
listen = "{admin}"
[upstream]
url = "{upstream}"
[[issuers]]
name = "dev"
issuer = "{iss}"
audiences = ["{DEV_AUDIENCE}"]
algorithms = ["RS256", "PS256", "ES256", "EdDSA"]
refresh_interval = "1m"
"#,
            upstream = upstream.url(),
            iss = issuer.issuer_url(),
        );
        let config = match Config::parse(&toml, "(dev)") {
            Ok(c) => c,
            Err(e) => return failure(e),
        };
        let running = match tokio::task::spawn_blocking(move || crate::app::start(config)).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return failure(e),
            Err(e) => return failure(e),
        };
        let ready = jwks::wait_ready(&running.runtime().key_sources(), Duration::from_secs(10)).await;
        if !ready {
            eprintln!("warning: the dev issuer's keys did not arrive within 10s");
        }
        let mut spec = KubeTokenSpec::new(&issuer.issuer_url(), DEV_AUDIENCE);
        spec.namespace = "demo".into();
        spec.service_account = "hello".into();
        spec.pod = Some(("hello-7d9f".into(), dev::random_uuid()));
        let token = key.sign(&dev::kube_claims(&spec));
        let tampered = tamper(&token);
        let addr = running.addr;
        let admin_addr = running.admin_addr;
        println!(
            r#"tokenreview-proxy dev mode
  proxy      http://{addr}     (verifies tokens, forwards to the echo upstream)
  upstream   {up}     (echoes what it receives, as JSON)
  issuer     {iss}    (OIDC discovery + JWKS, ephemeral RS256 key)
  admin      http://{admin_addr}     (/healthz /readyz /metrics)

A valid token for system:serviceaccount:demo:hello (1 hour):

export TOKEN={token}

Send it through the proxy; the upstream shows the identity headers it received:

  curl -s -H "Authorization: Bearer $TOKEN" http://{addr}/hello

A tampered token is refused with a reason:

  curl -si -H "Authorization: Bearer {tampered}" http://{addr}/hello

Spoofed identity headers never reach the upstream:

  curl -s -H "Authorization: Bearer $TOKEN" -H "X-Remote-User: system:admin" http://{addr}/hello

Ask as a Kubernetes TokenReview:

  curl -s -X POST http://{addr}/apis/authentication.k8s.io/v1/tokenreviews -H 'Content-Type: application/json' -d '{{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{{"token":"'$TOKEN'"}}}}'

Load test (cargo install oha):

  oha -z 10s -c 64 -H "Authorization: Bearer $TOKEN" http://{addr}/

Metrics:

  curl -s http://{admin_addr}/metrics | grep tokenreview_proxy_

Ctrl-C to stop."#,
            up = upstream.url(),
            iss = issuer.issuer_url(),
        );
        signals.recv().await;
        eprintln!("shutting down");
        let _ = tokio::task::spawn_blocking(move || running.shutdown()).await;
        ExitCode::SUCCESS
    })
}

/// Flip one character of the payload: same shape, signature no longer valid.
fn tamper(token: &str) -> String {
    let mut parts: Vec<String> = token.split('.').map(String::from).collect();
    if parts.len() == 3 {
        if let Ok(mut payload) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(&parts[1])
        {
            if let Some(pos) = payload.windows(5).position(|w| w == b"hello") {
                payload[pos..pos + 5].copy_from_slice(b"admin");
            }
            parts[1] = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(payload);
        }
    }
    parts.join(".")
}

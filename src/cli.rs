//! The command line (SPEC section 2). `main.rs` parses; everything here is callable from tests.

use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use clap::{Args, Parser, Subcommand};

use crate::auth::{Audiences, AuthError, Authenticator};
use crate::config::{parse_duration, Config};
use crate::dev::{self, EchoUpstream, KubeTokenSpec, MockIssuer, TestKey};
use crate::jwks::{self, Issuer};
use crate::verify::{Reject, LEGACY_ISSUER};

pub const EXIT_USAGE: u8 = 64;

#[derive(Parser, Debug)]
#[command(
    name = "tokenreview-proxy",
    version,
    about = "Authenticating reverse proxy and TokenReview server for Kubernetes service-account tokens and OIDC JWTs"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the proxy.
    Run(ConfigArg),
    /// Load and validate a config; print the effective summary. Exit 0 or 64.
    CheckConfig(ConfigArg),
    /// Embedded demo: in-process issuer, echo upstream and proxy on loopback; prints a token
    /// and ready-to-paste curl and oha commands. Runs until Ctrl-C.
    Dev(DevArgs),
    /// Sign test tokens with Kubernetes-shaped claims, one per line.
    Mint(MintArgs),
    /// Decode a token without trusting it; with --config, verify it and say why it would be
    /// rejected.
    Inspect(InspectArgs),
    /// Generate a signing key (PKCS#8 PEM) and its public JWKS, for `mint` and load tests.
    Keygen(KeygenArgs),
}

#[derive(Args, Debug)]
pub struct ConfigArg {
    /// Config file (TOML).
    #[arg(long, env = "TOKENREVIEW_PROXY_CONFIG")]
    pub config: PathBuf,
}

#[derive(Args, Debug)]
pub struct DevArgs {
    /// Proxy listen address (falls back to a free port if taken).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Admin listen address (falls back to a free port if taken).
    #[arg(long, default_value = "127.0.0.1:9090")]
    pub admin_listen: SocketAddr,
    /// Echo upstream address (falls back to a free port if taken).
    #[arg(long, default_value = "127.0.0.1:8081")]
    pub upstream_listen: SocketAddr,
}

#[derive(Args, Debug)]
pub struct MintArgs {
    /// Private key, PKCS#8 PEM (see `keygen`).
    #[arg(long)]
    pub key: PathBuf,
    /// Algorithm; default: RS256 for RSA keys, ES256/ES384 for EC, EdDSA for Ed25519.
    #[arg(long)]
    pub alg: Option<String>,
    #[arg(long, default_value = "key-1")]
    pub kid: String,
    #[arg(long, default_value = "https://kubernetes.default.svc.cluster.local")]
    pub issuer: String,
    /// Audience (repeatable).
    #[arg(
        long = "audience",
        default_value = "https://kubernetes.default.svc.cluster.local"
    )]
    pub audiences: Vec<String>,
    #[arg(long, default_value = "default")]
    pub namespace: String,
    #[arg(long, default_value = "default")]
    pub service_account: String,
    /// Bind the token to a pod of this name.
    #[arg(long)]
    pub pod: Option<String>,
    /// Bind the token to a node of this name.
    #[arg(long)]
    pub node: Option<String>,
    #[arg(long, default_value = "1h")]
    pub ttl: String,
    /// Set kubernetes.io.warnafter this long after issue.
    #[arg(long)]
    pub warnafter: Option<String>,
    /// Number of tokens (each with its own jti, so each is distinct).
    #[arg(long, default_value_t = 1)]
    pub count: u64,
    /// Bind every token to a pod of its own (`<--pod or "pod">-<n>`, new uid), as N pods would
    /// each hold one: the memory worst case for the verification cache.
    #[arg(long)]
    pub distinct_pods: bool,
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// The token, or `-` (or nothing) to read it from standard input.
    pub token: Option<String>,
    /// Verify against this config's issuers (fetches their keys).
    #[arg(long)]
    pub config: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct KeygenArgs {
    #[arg(long, default_value = "RS256")]
    pub alg: String,
    #[arg(long, default_value = "key-1")]
    pub kid: String,
    /// Where to write the private key (PKCS#8 PEM, mode 0600).
    #[arg(long)]
    pub out: PathBuf,
    /// Where to write the public JWKS (default: stdout).
    #[arg(long)]
    pub jwks_out: Option<PathBuf>,
}

fn usage_error(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::from(EXIT_USAGE)
}

fn failure(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::from(1)
}

/// Load a config or print the error (file and key) and give exit code 64.
pub fn load_config(path: &Path) -> Result<Config, ExitCode> {
    Config::load(path).map_err(|e| usage_error(format!("invalid config: {e}")))
}

pub fn check_config(args: &ConfigArg) -> ExitCode {
    match load_config(&args.config) {
        Ok(c) => {
            print!("{}", c.summary());
            for e in c.missing_files() {
                println!("warning: {e} (must exist when the proxy runs)");
            }
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

/// SIGINT and SIGTERM handlers, registered when created (so a signal that arrives right after
/// start-up is caught, not fatal). Create inside a tokio runtime context.
pub struct ShutdownSignals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    pub fn install() -> std::io::Result<ShutdownSignals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(ShutdownSignals {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    /// Wait for SIGINT or SIGTERM.
    pub async fn recv(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
    }
}

pub fn run(args: &ConfigArg) -> ExitCode {
    let config = match load_config(&args.config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if let Some(e) = config.missing_files().into_iter().next() {
        return usage_error(format!("invalid config: {e}"));
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return failure(e),
    };
    let mut signals = {
        let _guard = rt.enter();
        match ShutdownSignals::install() {
            Ok(s) => s,
            Err(e) => return failure(format!("cannot install signal handlers: {e}")),
        }
    };
    let running = match crate::app::start(config) {
        Ok(r) => r,
        Err(e) => return failure(e),
    };
    tracing::info!(listen = %running.addr, admin = %running.admin_addr, "tokenreview-proxy started");
    rt.block_on(signals.recv());
    tracing::info!("shutting down");
    running.shutdown();
    ExitCode::SUCCESS
}

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

fn detect_key(pem: &str, alg: Option<&str>, kid: &str) -> Result<TestKey, String> {
    match alg {
        Some(a) => TestKey::from_pkcs8_pem(pem, a, kid).map_err(|e| e.to_string()),
        None => ["RS256", "ES256", "ES384", "EdDSA"]
            .iter()
            .find_map(|a| TestKey::from_pkcs8_pem(pem, a, kid).ok())
            .ok_or_else(|| "not an RSA, P-256, P-384 or Ed25519 PKCS#8 private key".to_string()),
    }
}

pub fn mint(args: &MintArgs) -> ExitCode {
    let pem = match std::fs::read_to_string(&args.key) {
        Ok(p) => p,
        Err(e) => return usage_error(format!("--key {}: {e}", args.key.display())),
    };
    let key = match detect_key(&pem, args.alg.as_deref(), &args.kid) {
        Ok(k) => k,
        Err(e) => return usage_error(format!("--key {}: {e}", args.key.display())),
    };
    let ttl = match parse_duration(&args.ttl) {
        Ok(d) => d,
        Err(e) => return usage_error(format!("--ttl: {e}")),
    };
    let warnafter = match args.warnafter.as_deref().map(parse_duration).transpose() {
        Ok(d) => d,
        Err(e) => return usage_error(format!("--warnafter: {e}")),
    };
    let mut spec = KubeTokenSpec::new(
        &args.issuer,
        args.audiences.first().map_or("", String::as_str),
    );
    spec.audiences = args.audiences.clone();
    spec.namespace = args.namespace.clone();
    spec.service_account = args.service_account.clone();
    spec.pod = args.pod.as_ref().map(|p| (p.clone(), dev::random_uuid()));
    spec.node = args.node.as_ref().map(|n| (n.clone(), dev::random_uuid()));
    spec.ttl_secs = ttl.as_secs();
    spec.warnafter_secs = warnafter.map(|d| d.as_secs());
    // Signing dominates (RSA: about a millisecond a token), so large counts use every core.
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(args.count.max(1) as usize) as u64;
    let chunks: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (key, mut spec) = (&key, spec.clone());
                let n = args.count / threads + u64::from(t < args.count % threads);
                let pod_base = args.pod.as_deref().unwrap_or("pod");
                scope.spawn(move || {
                    let mut buf = String::new();
                    for i in 0..n {
                        if args.distinct_pods {
                            spec.pod = Some((format!("{pod_base}-{t}-{i}"), dev::random_uuid()));
                        }
                        spec.jti = Some(dev::random_uuid());
                        buf.push_str(&key.sign(&dev::kube_claims(&spec)));
                        buf.push('\n');
                    }
                    buf
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect()
    });
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for chunk in chunks {
        if std::io::Write::write_all(&mut out, chunk.as_bytes()).is_err() {
            return ExitCode::from(1);
        }
    }
    if std::io::Write::flush(&mut out).is_err() {
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}

pub fn keygen(args: &KeygenArgs) -> ExitCode {
    let key = match TestKey::generate(&args.alg, &args.kid) {
        Ok(k) => k,
        Err(e) => return usage_error(format!("--alg: {e}")),
    };
    if let Err(e) = write_private(&args.out, key.to_pkcs8_pem().as_bytes()) {
        return failure(format!("{}: {e}", args.out.display()));
    }
    let jwks = dev::jwks(&[key.public_jwk()]);
    let text = serde_json::to_string_pretty(&jwks).unwrap_or_default() + "\n";
    match &args.jwks_out {
        Some(p) => {
            if let Err(e) = std::fs::write(p, text) {
                return failure(format!("{}: {e}", p.display()));
            }
        }
        None => print!("{text}"),
    }
    ExitCode::SUCCESS
}

fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(path)?.write_all(data)
}

fn describe_remaining(secs: i64) -> String {
    let a = secs.unsigned_abs();
    let human = humantime::format_duration(Duration::from_secs(a)).to_string();
    if secs >= 0 {
        format!("in {human}")
    } else {
        format!("{human} ago")
    }
}

/// What each reason means for an operator reading `inspect`.
pub fn explain(reason: Reject) -> &'static str {
    match reason {
        Reject::Malformed => "not a compact JWS: three base64url (unpadded) segments of JSON",
        Reject::TooLarge => "longer than server.max_header_bytes",
        Reject::UnsupportedAlgorithm => {
            "alg is none/HS*, not in the issuer's algorithms, or does not fit the key"
        }
        Reject::ForbiddenHeader => "header carries crit, jku, x5u, jwk, x5c or cty: JWT",
        Reject::UnknownIssuer => "iss matches no configured issuer",
        Reject::UnknownKey => "kid not in the issuer's JWKS (even after a refetch)",
        Reject::BadSignature => "signature does not verify with the issuer's key",
        Reject::Expired => "exp is in the past (beyond clock_skew)",
        Reject::NotYetValid => "nbf is in the future (beyond clock_skew)",
        Reject::IssuedInFuture => "iat is in the future (beyond clock_skew)",
        Reject::LifetimeExceeded => "exp - iat exceeds the issuer's max_lifetime",
        Reject::AudienceMismatch => "aud shares no value with the issuer's audiences",
        Reject::InvalidClaims => {
            "missing/mistyped exp, duplicate claims, or sub disagrees with the kubernetes.io claim"
        }
        Reject::LegacyToken => "a Secret-based legacy token, and legacy_tokens = false",
    }
}

pub fn inspect(args: &InspectArgs) -> ExitCode {
    let token = match args.token.as_deref() {
        Some(t) if t != "-" => t.trim().to_string(),
        _ => {
            let mut s = String::new();
            if let Err(e) = std::io::stdin().read_to_string(&mut s) {
                return failure(format!("reading standard input: {e}"));
            }
            s.trim().to_string()
        }
    };
    let token = token
        .strip_prefix("Bearer ")
        .or_else(|| token.strip_prefix("bearer "))
        .unwrap_or(&token)
        .trim()
        .to_string();
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let segments: Vec<&str> = token.split('.').collect();
    if segments.len() != 3 {
        return failure(format!(
            "not a compact JWS: {} segments instead of 3",
            segments.len()
        ));
    }
    let decode = |s: &str| -> Option<serde_json::Value> {
        serde_json::from_slice(&b64.decode(s).ok()?).ok()
    };
    let (Some(header), Some(claims)) = (decode(segments[0]), decode(segments[1])) else {
        return failure("header or payload is not base64url-encoded JSON");
    };
    println!("UNVERIFIED — decoded without checking the signature");
    println!(
        "header: {}",
        serde_json::to_string_pretty(&header).unwrap_or_default()
    );
    println!(
        "claims: {}",
        serde_json::to_string_pretty(&claims).unwrap_or_default()
    );
    let now = crate::verify::now_unix();
    let num = |k: &str| claims.get(k).and_then(|v| v.as_f64()).map(|f| f as i64);
    let iss = claims
        .get("iss")
        .and_then(|v| v.as_str())
        .unwrap_or("(none)");
    println!("issuer:    {iss}");
    println!(
        "audiences: {}",
        claims.get("aud").map_or("(none)".into(), |a| a.to_string())
    );
    match num("exp") {
        Some(exp) => println!("expires:   {} ({exp})", describe_remaining(exp - now)),
        None => println!("expires:   never (no exp)"),
    }
    if let (Some(exp), Some(iat)) = (num("exp"), num("iat")) {
        println!(
            "lifetime:  {}",
            humantime::format_duration(Duration::from_secs((exp - iat).max(0) as u64))
        );
    }
    let kube = claims.get("kubernetes.io");
    if let Some(w) = kube
        .and_then(|k| k.get("warnafter"))
        .and_then(|v| v.as_f64())
    {
        let w = w as i64;
        let note = if now > w {
            " — past it: this client is caching its token instead of re-reading the file"
        } else {
            ""
        };
        println!("warnafter: {}{note}", describe_remaining(w - now));
    }
    for (what, field) in [("pod", "pod"), ("node", "node"), ("secret", "secret")] {
        if let Some(obj) = kube.and_then(|k| k.get(field)) {
            println!(
                "bound {what}: {} (uid {})",
                obj.get("name").and_then(|v| v.as_str()).unwrap_or("?"),
                obj.get("uid").and_then(|v| v.as_str()).unwrap_or("?")
            );
        }
    }
    let kind = if iss == LEGACY_ISSUER {
        "legacy Secret-based service-account token (never expires; deprecated)"
    } else if kube.is_some() {
        "bound service-account token (projected, audience-bound, expiring)"
    } else {
        "generic JWT (OIDC)"
    };
    println!("kind:      {kind}");

    let Some(config_path) = &args.config else {
        return ExitCode::SUCCESS;
    };
    let config = match load_config(config_path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return failure(e),
    };
    rt.block_on(async {
        crate::metrics::install();
        let issuers: Vec<Arc<Issuer>> = config
            .issuers
            .iter()
            .cloned()
            .map(|c| Arc::new(Issuer::new(c)))
            .collect();
        let (_stop, stop_rx) = tokio::sync::watch::channel(false);
        for i in &issuers {
            tokio::spawn(jwks::run_refresher(i.clone(), stop_rx.clone()));
        }
        let auth = Authenticator::new(&config, issuers.clone());
        if !jwks::wait_ready(&issuers, Duration::from_secs(10)).await {
            for i in &issuers {
                if !i.store.is_ready() {
                    println!(
                        "warning: issuer {:?} has no usable keys after 10s (see the log above)",
                        i.cfg.name
                    );
                }
            }
        }
        match auth.authenticate(&token, Audiences::Configured).await {
            Ok(v) => {
                let id = v.identity();
                println!(
                    "VERIFIED by issuer {:?}: {}",
                    v.issuer().name(),
                    id.username
                );
                println!("  uid:    {}", id.uid);
                println!("  groups: {:?}", id.groups);
                for (k, vals) in &id.extra {
                    println!("  extra:  {k} = {vals:?}");
                }
                ExitCode::SUCCESS
            }
            Err(AuthError::Rejected(r)) => {
                println!(
                    "REJECTED: {} — {} (issuer: {})",
                    r.reason.as_str(),
                    explain(r.reason),
                    r.issuer_name()
                );
                ExitCode::from(1)
            }
            Err(AuthError::Unavailable { issuer }) => {
                println!(
                    "UNDECIDED: issuer {:?} has no usable keys (unreachable?)",
                    issuer.name()
                );
                ExitCode::from(1)
            }
        }
    })
}

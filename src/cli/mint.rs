//! `mint` and `keygen`: sign test tokens with Kubernetes-shaped claims (or OIDC-shaped ones,
//! with any claims added, to test an issuer's claim mappings) from a PKCS#8 key, and generate
//! such a key (written mode 0600) with its public JWKS.

use std::path::Path;
use std::process::ExitCode;

use super::args::{KeygenArgs, MintArgs};
use super::common::{failure, usage_error};
use crate::config::parse_duration;
use crate::dev::{self, KubeTokenSpec, TestKey};
use serde_json::Value;

fn detect_key(pem: &str, alg: Option<&str>, kid: &str) -> Result<TestKey, String> {
    match alg {
        Some(a) => TestKey::from_pkcs8_pem(pem, a, kid).map_err(|e| e.to_string()),
        None => ["RS256", "ES256", "ES384", "ES512", "EdDSA"]
            .iter()
            .find_map(|a| TestKey::from_pkcs8_pem(pem, a, kid).ok())
            .ok_or_else(|| {
                "not an RSA, P-256, P-384, P-521 or Ed25519 PKCS#8 private key".to_string()
            }),
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
    let extra = match extra_claims(args) {
        Ok(e) => e,
        Err(e) => return usage_error(e),
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
                let (key, mut spec, extra) = (&key, spec.clone(), &extra);
                let n = args.count / threads + u64::from(t < args.count % threads);
                let pod_base = args.pod.as_deref().unwrap_or("pod");
                scope.spawn(move || {
                    let mut buf = String::new();
                    for i in 0..n {
                        if args.distinct_pods {
                            spec.pod = Some((format!("{pod_base}-{t}-{i}"), dev::random_uuid()));
                        }
                        spec.jti = Some(dev::random_uuid());
                        let mut claims = if args.oidc {
                            oidc_claims(&spec, &args.sub)
                        } else {
                            dev::kube_claims(&spec)
                        };
                        for (k, v) in extra {
                            claims[k] = v.clone();
                        }
                        buf.push_str(&key.sign(&claims));
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

/// The claims of an `--oidc` token: the registered ones of `spec`, `sub` as given.
fn oidc_claims(spec: &KubeTokenSpec, sub: &str) -> Value {
    let mut claims = dev::kube_claims(spec);
    if let Some(map) = claims.as_object_mut() {
        map.remove("kubernetes.io");
        map.insert("sub".into(), Value::String(sub.to_string()));
    }
    claims
}

/// `--claims-json`, then each `--claim`, in order (a later one replaces an earlier one).
fn extra_claims(args: &MintArgs) -> Result<Vec<(String, Value)>, String> {
    let mut out: Vec<(String, Value)> = Vec::new();
    if let Some(path) = &args.claims_json {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("--claims-json {}: {e}", path.display()))?;
        match serde_json::from_str::<Value>(&text) {
            Ok(Value::Object(map)) => out.extend(map),
            _ => {
                return Err(format!(
                    "--claims-json {}: not a JSON object",
                    path.display()
                ))
            }
        }
    }
    for c in &args.claims {
        let Some((k, v)) = c.split_once('=').filter(|(k, _)| !k.is_empty()) else {
            return Err(format!("--claim {c:?}: expected KEY=VALUE"));
        };
        let value = serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.to_string()));
        out.push((k.to_string(), value));
    }
    Ok(out)
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

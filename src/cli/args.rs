//! The clap argument structs of each subcommand, in one leaf module so the command files and
//! `cli/mod.rs` (which holds `Cli` and `Command`) can both name them without importing each
//! other.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;

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
    /// Algorithm; default: RS256 for RSA keys, ES256/ES384/ES512 for EC, EdDSA for Ed25519.
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
    /// An OIDC-shaped token (iss, sub, aud, iat, nbf, exp, jti; no kubernetes.io claim), to
    /// test an issuer's claim mappings and rules.
    #[arg(long)]
    pub oidc: bool,
    /// The `sub` of an `--oidc` token.
    #[arg(long, default_value = "user")]
    pub sub: String,
    /// A claim to set, `KEY=VALUE` (repeatable; last wins). VALUE is JSON if it parses as
    /// JSON (`true`, `5`, `["a","b"]`), else a string.
    #[arg(long = "claim", value_name = "KEY=VALUE")]
    pub claims: Vec<String>,
    /// A file with a JSON object of claims to set (before any --claim).
    #[arg(long, value_name = "FILE")]
    pub claims_json: Option<PathBuf>,
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

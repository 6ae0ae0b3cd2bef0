//! The validated config: what the rest of the proxy reads, every field ready to use
//! (durations parsed, URLs checked, defaults applied), and the error every step returns.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::protocols::{Cidr, UpstreamProtocol};
use crate::claim_rules::ClaimRules;
use crate::keys::Alg;

pub const DEFAULT_MAX_HEADER_BYTES: usize = 16384;
pub const DEFAULT_HEADER_READ_TIMEOUT: &str = "10s";
pub const DEFAULT_IDLE_TIMEOUT: &str = "90s";
pub const DEFAULT_SHUTDOWN_GRACE: &str = "25s";
pub const DEFAULT_SHUTDOWN_DELAY: &str = "5s";
pub const DEFAULT_MAX_CONNECTIONS: usize = 10000;
pub const DEFAULT_REQUEST_BODY_TIMEOUT: &str = "30s";
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9090";
pub const DEFAULT_CONNECT_TIMEOUT: &str = "5s";
pub const DEFAULT_UPSTREAM_TIMEOUT: &str = "60s";
/// Per worker thread: upstream connections for HTTP/2 clients' requests.
pub const DEFAULT_UPSTREAM_MAX_CONNECTIONS: usize = 16;
pub const DEFAULT_CACHE_MAX_ENTRIES: u64 = 1_000_000;
pub const DEFAULT_CACHE_MAX_TTL: &str = "10m";
pub const DEFAULT_NEGATIVE_TTL: &str = "10s";
pub const DEFAULT_CACHE_MAX_NEGATIVE_ENTRIES: u64 = 100_000;
pub const DEFAULT_REFRESH_INTERVAL: &str = "5m";
pub const DEFAULT_MIN_REFETCH_INTERVAL: &str = "10s";
pub const DEFAULT_MAX_STALE: &str = "24h";
pub const DEFAULT_CLOCK_SKEW: &str = "60s";
pub const DEFAULT_MAX_LIFETIME: &str = "8784h";
pub const DEFAULT_KUBERNETES_MAX_STALE: &str = "5m";
pub const DEFAULT_ALGORITHMS: &[&str] = &["RS256", "ES256"];
pub const DEFAULT_SAR_ALLOW_TTL: &str = "5m";
pub const DEFAULT_SAR_DENY_TTL: &str = "30s";

/// A configuration error: which file, which key, what is wrong. Exit code 64.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {key}: {message}")]
pub struct ConfigError {
    pub file: String,
    pub key: String,
    pub message: String,
}

#[derive(Debug, Clone)]
pub struct Config {
    /// Where the config came from (for messages).
    pub source: String,
    pub server: ServerConfig,
    pub admin: AdminConfig,
    pub upstream: Option<UpstreamConfig>,
    pub cache: CacheConfig,
    pub tokenreview: TokenReviewConfig,
    pub issuers: Vec<IssuerConfig>,
    pub log: LogConfig,
    pub authorization: AuthorizationConfig,
    pub kubernetes: KubernetesConfig,
    /// `authentication_config`: the AuthenticationConfiguration file whose `jwt` entries were
    /// added to `issuers` (re-read on every reload).
    pub authentication_config: Option<PathBuf>,
    /// What `check-config` warns about in that file (fields that do not apply here).
    pub authentication_config_warnings: Vec<String>,
}

/// `[authorization]` (SPEC section 11).
#[derive(Debug, Clone)]
pub struct AuthorizationConfig {
    /// For an authenticated request no route matches: allow (true) or deny.
    pub default_allow: bool,
    pub sar_allow_ttl: Duration,
    pub sar_deny_ttl: Duration,
    /// In file order: the first that matches decides.
    pub routes: Vec<RouteConfig>,
}

impl Default for AuthorizationConfig {
    fn default() -> AuthorizationConfig {
        AuthorizationConfig {
            default_allow: true,
            sar_allow_ttl: Duration::from_secs(300),
            sar_deny_ttl: Duration::from_secs(30),
            routes: Vec::new(),
        }
    }
}

/// Which paths a route covers, in normalized form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathMatch {
    /// Whole segments: `/api` covers `/api` and `/api/...`, never `/apix`. Stored without a
    /// trailing `/` (`"/"` covers everything).
    Prefix(String),
    Exact(String),
}

/// One `[[authorization.routes]]` entry, checked.
#[derive(Debug, Clone)]
pub struct RouteConfig {
    pub name: String,
    pub path: PathMatch,
    /// Uppercase; empty: any method.
    pub methods: Vec<String>,
    pub anonymous: bool,
    /// `(namespace, name)`; `None`: any name in the namespace.
    pub service_accounts: Vec<(String, Option<String>)>,
    pub groups: Vec<String>,
    pub users: Vec<String>,
    /// Compiled when the config loads.
    pub expression: Option<std::sync::Arc<crate::cel::Expression>>,
    pub subject_access_review: Option<SarAttributes>,
}

/// What a route's SubjectAccessReview asks about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SarAttributes {
    /// `nonResourceAttributes`: the request's path, the verb given or the method's.
    NonResource { verb: Option<String> },
    /// `resourceAttributes`; `verb: None` is the method's Kubernetes verb.
    Resource {
        verb: Option<String>,
        group: String,
        version: String,
        resource: String,
        subresource: String,
        namespace: String,
        name: String,
    },
}

/// `[kubernetes]` (SPEC section 12): how the proxy reaches the kube-apiserver, for the
/// features that need it. Nothing connects unless one of them is configured.
#[derive(Debug, Clone, PartialEq)]
pub struct KubernetesConfig {
    /// A kubeconfig file; `None`: in-cluster (service env, the pod's token and CA), else
    /// `$KUBECONFIG` / `~/.kube/config`.
    pub kubeconfig: Option<PathBuf>,
    /// How long watches may stay broken before bound-object checks fail closed.
    pub max_stale: Duration,
}

impl Default for KubernetesConfig {
    fn default() -> KubernetesConfig {
        KubernetesConfig {
            kubeconfig: None,
            max_stale: Duration::from_secs(300),
        }
    }
}

/// `[log]` (SPEC section 15).
#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A tracing filter (`info`, `debug`, `tokenreview_proxy=debug,warn`); `RUST_LOG` wins.
    pub level: String,
    /// One line per request.
    pub access: bool,
}

impl Default for LogConfig {
    fn default() -> LogConfig {
        LogConfig {
            format: LogFormat::Text,
            level: "info".into(),
            access: false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub tls: Option<TlsFiles>,
    pub max_header_bytes: usize,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub shutdown_grace: Duration,
    /// After SIGTERM, how long to keep accepting (with `/readyz` 503) before the drain.
    pub shutdown_delay: Duration,
    pub max_connections: usize,
    /// The longest wait for the next bytes of a request body; then 408.
    pub request_body_timeout: Duration,
    /// Worker threads, each with its own runtime and `SO_REUSEPORT` listener. Default: cores.
    pub workers: usize,
    /// Peers whose `X-Forwarded-*` and `Forwarded` headers are kept (SPEC section 14).
    pub trusted_proxies: Vec<Cidr>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TlsFiles {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub client_ca_file: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct AdminConfig {
    pub listen: SocketAddr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityMode {
    Remote,
    Impersonate,
    None,
}

#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    pub url: http::Uri,
    pub ca_file: Option<PathBuf>,
    pub client_cert: Option<(PathBuf, PathBuf)>,
    pub token_file: Option<PathBuf>,
    pub identity_headers: IdentityMode,
    pub forward_token: bool,
    pub connect_timeout: Duration,
    pub timeout: Duration,
    /// Per worker thread: the most upstream connections HTTP/2 clients' requests use at once;
    /// more requests wait for one to free up.
    pub max_connections: usize,
    pub protocol: UpstreamProtocol,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CacheConfig {
    pub max_entries: u64,
    pub max_ttl: Duration,
    pub negative_ttl: Duration,
    /// Bound on cached rejections, apart from `max_entries`.
    pub max_negative_entries: u64,
}

#[derive(Debug, Clone)]
pub struct TokenReviewConfig {
    pub enabled: bool,
    pub allowed_callers: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimsMode {
    Kubernetes,
    Oidc,
}

#[derive(Debug, Clone, PartialEq)]
pub enum KeySource {
    /// OIDC discovery document URL; `jwks_uri` is read from it.
    Discovery(String),
    Jwks(String),
    File(PathBuf),
}

#[derive(Debug, Clone, PartialEq)]
pub struct IssuerConfig {
    pub name: String,
    pub issuer: String,
    pub source: KeySource,
    pub audiences: Vec<String>,
    pub algorithms: Vec<Alg>,
    pub ca_file: Option<PathBuf>,
    /// Inline PEM trust for discovery/JWKS fetches (an AuthenticationConfiguration's
    /// `certificateAuthority`); wins over `ca_file`.
    pub ca_pem: Option<String>,
    pub token_file: Option<PathBuf>,
    pub refresh_interval: Duration,
    pub min_refetch_interval: Duration,
    pub max_stale: Duration,
    pub clock_skew: Duration,
    pub max_lifetime: Duration,
    pub claims: ClaimsMode,
    pub legacy_tokens: bool,
    /// Check the token's service account and bound pod, secret or node against the watched
    /// cluster state (SPEC section 12).
    pub bound_objects: bool,
    /// `claims = "oidc"`: the claim mappings and rules (SPEC section 13), compiled.
    pub claim_rules: Option<Arc<ClaimRules>>,
}

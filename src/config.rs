//! Configuration: the TOML file (SPEC section 3) parsed into raw serde structs that reject
//! unknown keys, then validated into [`Config`], whose fields are ready to use (durations
//! parsed, URLs checked, defaults applied). Every error names the file and the key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::keys::Alg;

pub const DEFAULT_MAX_HEADER_BYTES: usize = 16384;
pub const DEFAULT_HEADER_READ_TIMEOUT: &str = "10s";
pub const DEFAULT_IDLE_TIMEOUT: &str = "90s";
pub const DEFAULT_SHUTDOWN_GRACE: &str = "25s";
pub const DEFAULT_MAX_CONNECTIONS: usize = 10000;
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9090";
pub const DEFAULT_CONNECT_TIMEOUT: &str = "5s";
pub const DEFAULT_UPSTREAM_TIMEOUT: &str = "60s";
pub const DEFAULT_CACHE_MAX_ENTRIES: u64 = 1_000_000;
pub const DEFAULT_CACHE_MAX_TTL: &str = "10m";
pub const DEFAULT_NEGATIVE_TTL: &str = "10s";
pub const DEFAULT_REFRESH_INTERVAL: &str = "5m";
pub const DEFAULT_MIN_REFETCH_INTERVAL: &str = "10s";
pub const DEFAULT_MAX_STALE: &str = "24h";
pub const DEFAULT_CLOCK_SKEW: &str = "60s";
pub const DEFAULT_MAX_LIFETIME: &str = "8784h";
pub const DEFAULT_ALGORITHMS: &[&str] = &["RS256", "ES256"];

/// A configuration error: which file, which key, what is wrong. Exit code 64.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {key}: {message}")]
pub struct ConfigError {
    pub file: String,
    pub key: String,
    pub message: String,
}

// ---------------------------------------------------------------------------------------------
// Raw file shape
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    server: RawServer,
    #[serde(default)]
    admin: RawAdmin,
    upstream: Option<RawUpstream>,
    #[serde(default)]
    cache: RawCache,
    #[serde(default)]
    tokenreview: RawTokenReview,
    #[serde(default)]
    issuers: Vec<RawIssuer>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: String,
    tls_cert_file: Option<PathBuf>,
    tls_key_file: Option<PathBuf>,
    client_ca_file: Option<PathBuf>,
    max_header_bytes: Option<usize>,
    header_read_timeout: Option<String>,
    idle_timeout: Option<String>,
    shutdown_grace: Option<String>,
    max_connections: Option<usize>,
    workers: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    listen: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUpstream {
    url: String,
    ca_file: Option<PathBuf>,
    client_cert_file: Option<PathBuf>,
    client_key_file: Option<PathBuf>,
    token_file: Option<PathBuf>,
    identity_headers: Option<String>,
    forward_token: Option<bool>,
    connect_timeout: Option<String>,
    timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCache {
    max_entries: Option<u64>,
    max_ttl: Option<String>,
    negative_ttl: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTokenReview {
    enabled: Option<bool>,
    allowed_callers: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIssuer {
    name: String,
    issuer: String,
    discovery_url: Option<String>,
    jwks_url: Option<String>,
    jwks_file: Option<PathBuf>,
    audiences: Vec<String>,
    algorithms: Option<Vec<String>>,
    ca_file: Option<PathBuf>,
    token_file: Option<PathBuf>,
    refresh_interval: Option<String>,
    min_refetch_interval: Option<String>,
    max_stale: Option<String>,
    clock_skew: Option<String>,
    max_lifetime: Option<String>,
    claims: Option<String>,
    legacy_tokens: Option<bool>,
    claim_mappings: Option<RawClaimMappings>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClaimMappings {
    username: Option<String>,
    username_prefix: Option<String>,
    groups: Option<String>,
    groups_prefix: Option<String>,
    uid: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Validated config
// ---------------------------------------------------------------------------------------------

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
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub tls: Option<TlsFiles>,
    pub max_header_bytes: usize,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub shutdown_grace: Duration,
    pub max_connections: usize,
    /// Worker threads, each with its own runtime and `SO_REUSEPORT` listener. Default: cores.
    pub workers: usize,
}

#[derive(Debug, Clone)]
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
}

#[derive(Debug, Clone)]
pub struct CacheConfig {
    pub max_entries: u64,
    pub max_ttl: Duration,
    pub negative_ttl: Duration,
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

#[derive(Debug, Clone)]
pub enum KeySource {
    /// OIDC discovery document URL; `jwks_uri` is read from it.
    Discovery(String),
    Jwks(String),
    File(PathBuf),
}

#[derive(Debug, Clone)]
pub struct ClaimMappings {
    pub username: String,
    pub username_prefix: String,
    pub groups: Option<String>,
    pub groups_prefix: String,
    pub uid: Option<String>,
}

#[derive(Debug, Clone)]
pub struct IssuerConfig {
    pub name: String,
    pub issuer: String,
    pub source: KeySource,
    pub audiences: Vec<String>,
    pub algorithms: Vec<Alg>,
    pub ca_file: Option<PathBuf>,
    pub token_file: Option<PathBuf>,
    pub refresh_interval: Duration,
    pub min_refetch_interval: Duration,
    pub max_stale: Duration,
    pub clock_skew: Duration,
    pub max_lifetime: Duration,
    pub claims: ClaimsMode,
    pub legacy_tokens: bool,
    pub claim_mappings: ClaimMappings,
}

impl Config {
    /// Read and validate a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: file.clone(),
            key: "(file)".into(),
            message: format!("cannot read: {e}"),
        })?;
        Config::parse(&text, &file)
    }

    /// Parse and validate config text; `file` is only used in messages.
    pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
        let err = |key: &str, message: String| ConfigError {
            file: file.to_string(),
            key: key.to_string(),
            message,
        };
        let value: toml::Value = toml::from_str(text).map_err(|e| {
            err(
                "(syntax)",
                e.message().to_string() + &line_hint(text, e.span()),
            )
        })?;
        let raw: RawConfig = serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            let key = if path == "." || path.is_empty() {
                "(top level)".to_string()
            } else {
                path
            };
            err(&key, e.into_inner().to_string())
        })?;
        validate(raw, file)
    }

    /// Every file the config names, with its key. Validation does not require them to exist
    /// (an in-cluster config names files that only exist in the pod); `run` does, through
    /// [`Config::check_files`], and `check-config` lists the missing ones as warnings.
    pub fn files(&self) -> Vec<(String, PathBuf)> {
        let mut out = Vec::new();
        if let Some(t) = &self.server.tls {
            out.push(("server.tls_cert_file".into(), t.cert_file.clone()));
            out.push(("server.tls_key_file".into(), t.key_file.clone()));
            if let Some(ca) = &t.client_ca_file {
                out.push(("server.client_ca_file".into(), ca.clone()));
            }
        }
        if let Some(u) = &self.upstream {
            if let Some(p) = &u.ca_file {
                out.push(("upstream.ca_file".into(), p.clone()));
            }
            if let Some((c, k)) = &u.client_cert {
                out.push(("upstream.client_cert_file".into(), c.clone()));
                out.push(("upstream.client_key_file".into(), k.clone()));
            }
            if let Some(p) = &u.token_file {
                out.push(("upstream.token_file".into(), p.clone()));
            }
        }
        for (i, is) in self.issuers.iter().enumerate() {
            if let KeySource::File(p) = &is.source {
                out.push((format!("issuers[{i}].jwks_file"), p.clone()));
            }
            if let Some(p) = &is.ca_file {
                out.push((format!("issuers[{i}].ca_file"), p.clone()));
            }
            if let Some(p) = &is.token_file {
                out.push((format!("issuers[{i}].token_file"), p.clone()));
            }
        }
        out
    }

    /// The named files that cannot be read, as config errors (file and key).
    pub fn missing_files(&self) -> Vec<ConfigError> {
        self.files()
            .into_iter()
            .filter_map(|(key, path)| {
                std::fs::File::open(&path).err().map(|e| ConfigError {
                    file: self.source.clone(),
                    key,
                    message: format!("cannot read {}: {e}", path.display()),
                })
            })
            .collect()
    }

    /// A human summary of the effective config (for `check-config`). Never includes secrets:
    /// file paths only, never file contents.
    pub fn summary(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let _ = writeln!(s, "config: {} (valid)", self.source);
        let _ = writeln!(
            s,
            "server: listen {} ({}), workers {}, max_connections {}, max_header_bytes {}",
            self.server.listen,
            if self.server.tls.is_some() {
                "https, h1+h2 via ALPN"
            } else {
                "http, h1 + h2c"
            },
            self.server.workers,
            self.server.max_connections,
            self.server.max_header_bytes
        );
        let _ = writeln!(s, "admin: listen {}", self.admin.listen);
        match &self.upstream {
            Some(u) => {
                let _ = writeln!(
                    s,
                    "upstream: {} identity_headers={:?} forward_token={} timeout={:?}",
                    u.url, u.identity_headers, u.forward_token, u.timeout
                );
            }
            None => {
                let _ = writeln!(s, "upstream: none (TokenReview only)");
            }
        }
        let _ = writeln!(
            s,
            "cache: max_entries {}, max_ttl {:?}, negative_ttl {:?}",
            self.cache.max_entries, self.cache.max_ttl, self.cache.negative_ttl
        );
        let _ = writeln!(
            s,
            "tokenreview: enabled={} allowed_callers={:?}",
            self.tokenreview.enabled, self.tokenreview.allowed_callers
        );
        for i in &self.issuers {
            let source = match &i.source {
                KeySource::Discovery(u) => format!("discovery {u}"),
                KeySource::Jwks(u) => format!("jwks {u}"),
                KeySource::File(p) => format!("file {}", p.display()),
            };
            let algs: Vec<&str> = i.algorithms.iter().map(|a| a.as_str()).collect();
            let _ = writeln!(
                s,
                "issuer {:?}: iss {} via {}; audiences {:?}; algorithms {:?}; claims {:?}; legacy_tokens {}",
                i.name, i.issuer, source, i.audiences, algs, i.claims, i.legacy_tokens
            );
        }
        s
    }
}

fn line_hint(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    match span {
        Some(r) => {
            let line = text[..r.start.min(text.len())].matches('\n').count() + 1;
            format!(" (line {line})")
        }
        None => String::new(),
    }
}

/// Parse a duration like "90s", "5m", "24h", "1h30m", "250ms".
///
/// ```
/// use std::time::Duration;
/// use tokenreview_proxy::config::parse_duration;
/// assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
/// assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
/// assert!(parse_duration("soon").is_err());
/// ```
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("invalid duration {s:?} ({e}); use e.g. \"90s\", \"5m\", \"24h\""))
}

fn validate(raw: RawConfig, file: &str) -> Result<Config, ConfigError> {
    let err = |key: &str, message: String| ConfigError {
        file: file.to_string(),
        key: key.to_string(),
        message,
    };
    let dur = |key: &str, v: &Option<String>, default: &str| -> Result<Duration, ConfigError> {
        parse_duration(v.as_deref().unwrap_or(default)).map_err(|m| err(key, m))
    };
    let addr = |key: &str, v: &str| -> Result<SocketAddr, ConfigError> {
        v.parse::<SocketAddr>().map_err(|e| {
            err(
                key,
                format!(
                    "invalid address {v:?} ({e}); use HOST:PORT with an IP, e.g. \"0.0.0.0:8080\""
                ),
            )
        })
    };

    // [server]
    let s = &raw.server;
    let listen = addr("server.listen", &s.listen)?;
    let tls = match (&s.tls_cert_file, &s.tls_key_file) {
        (Some(c), Some(k)) => Some(TlsFiles {
            cert_file: c.clone(),
            key_file: k.clone(),
            client_ca_file: s.client_ca_file.clone(),
        }),
        (None, None) => {
            if s.client_ca_file.is_some() {
                return Err(err(
                    "server.client_ca_file",
                    "needs server.tls_cert_file and server.tls_key_file".into(),
                ));
            }
            None
        }
        (Some(_), None) => {
            return Err(err(
                "server.tls_key_file",
                "must be set together with server.tls_cert_file".into(),
            ))
        }
        (None, Some(_)) => {
            return Err(err(
                "server.tls_cert_file",
                "must be set together with server.tls_key_file".into(),
            ))
        }
    };
    let max_header_bytes = s.max_header_bytes.unwrap_or(DEFAULT_MAX_HEADER_BYTES);
    if !(1024..=1 << 20).contains(&max_header_bytes) {
        return Err(err(
            "server.max_header_bytes",
            format!("{max_header_bytes} is out of range (1024 to 1048576)"),
        ));
    }
    let max_connections = s.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS);
    if max_connections == 0 {
        return Err(err("server.max_connections", "must be at least 1".into()));
    }
    let workers = match s.workers {
        Some(0) => return Err(err("server.workers", "must be at least 1".into())),
        Some(n) => n,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let server = ServerConfig {
        listen,
        tls,
        max_header_bytes,
        header_read_timeout: dur(
            "server.header_read_timeout",
            &s.header_read_timeout,
            DEFAULT_HEADER_READ_TIMEOUT,
        )?,
        idle_timeout: dur("server.idle_timeout", &s.idle_timeout, DEFAULT_IDLE_TIMEOUT)?,
        shutdown_grace: dur(
            "server.shutdown_grace",
            &s.shutdown_grace,
            DEFAULT_SHUTDOWN_GRACE,
        )?,
        max_connections,
        workers,
    };

    // [admin]
    let admin = AdminConfig {
        listen: addr(
            "admin.listen",
            raw.admin.listen.as_deref().unwrap_or(DEFAULT_ADMIN_LISTEN),
        )?,
    };

    // [upstream]
    let upstream = match &raw.upstream {
        None => None,
        Some(u) => {
            let url: http::Uri = u
                .url
                .parse()
                .map_err(|e| err("upstream.url", format!("invalid URL {:?} ({e})", u.url)))?;
            match url.scheme_str() {
                Some("http") | Some("https") => {}
                _ => {
                    return Err(err(
                        "upstream.url",
                        format!("{:?} must start with http:// or https://", u.url),
                    ))
                }
            }
            if url.authority().is_none() {
                return Err(err("upstream.url", format!("{:?} has no host", u.url)));
            }
            if url.query().is_some() {
                return Err(err("upstream.url", "must not have a query string".into()));
            }
            let identity_headers = match u.identity_headers.as_deref().unwrap_or("remote") {
                "remote" => IdentityMode::Remote,
                "impersonate" => IdentityMode::Impersonate,
                "none" => IdentityMode::None,
                other => {
                    return Err(err(
                        "upstream.identity_headers",
                        format!("{other:?} is not one of \"remote\", \"impersonate\", \"none\""),
                    ))
                }
            };
            let forward_token = u.forward_token.unwrap_or(false);
            if identity_headers == IdentityMode::Impersonate {
                if forward_token {
                    return Err(err(
                        "upstream.forward_token",
                        "cannot be true with identity_headers = \"impersonate\" (the proxy's own token replaces the caller's)".into(),
                    ));
                }
                if u.token_file.is_none() {
                    return Err(err(
                        "upstream.token_file",
                        "required with identity_headers = \"impersonate\"".into(),
                    ));
                }
            }
            let client_cert = match (&u.client_cert_file, &u.client_key_file) {
                (Some(c), Some(k)) => Some((c.clone(), k.clone())),
                (None, None) => None,
                (Some(_), None) => {
                    return Err(err(
                        "upstream.client_key_file",
                        "must be set together with upstream.client_cert_file".into(),
                    ))
                }
                (None, Some(_)) => {
                    return Err(err(
                        "upstream.client_cert_file",
                        "must be set together with upstream.client_key_file".into(),
                    ))
                }
            };
            Some(UpstreamConfig {
                url,
                ca_file: u.ca_file.clone(),
                client_cert,
                token_file: u.token_file.clone(),
                identity_headers,
                forward_token,
                connect_timeout: dur(
                    "upstream.connect_timeout",
                    &u.connect_timeout,
                    DEFAULT_CONNECT_TIMEOUT,
                )?,
                timeout: dur("upstream.timeout", &u.timeout, DEFAULT_UPSTREAM_TIMEOUT)?,
            })
        }
    };

    // [cache]
    let max_entries = raw.cache.max_entries.unwrap_or(DEFAULT_CACHE_MAX_ENTRIES);
    let cache = CacheConfig {
        max_entries,
        max_ttl: dur("cache.max_ttl", &raw.cache.max_ttl, DEFAULT_CACHE_MAX_TTL)?,
        negative_ttl: dur(
            "cache.negative_ttl",
            &raw.cache.negative_ttl,
            DEFAULT_NEGATIVE_TTL,
        )?,
    };

    // [tokenreview]
    let tokenreview = TokenReviewConfig {
        enabled: raw.tokenreview.enabled.unwrap_or(true),
        allowed_callers: raw.tokenreview.allowed_callers.clone().unwrap_or_default(),
    };
    if upstream.is_none() && !tokenreview.enabled {
        return Err(err(
            "upstream.url",
            "required when tokenreview.enabled = false (the proxy would have nothing to do)".into(),
        ));
    }

    // [[issuers]]
    if raw.issuers.is_empty() {
        return Err(err(
            "issuers",
            "at least one [[issuers]] entry is required".into(),
        ));
    }
    let mut issuers = Vec::with_capacity(raw.issuers.len());
    for (i, ri) in raw.issuers.iter().enumerate() {
        let k = |name: &str| format!("issuers[{i}].{name}");
        if ri.name.is_empty()
            || !ri
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        {
            return Err(err(
                &k("name"),
                format!(
                    "{:?} must be non-empty and use only A-Z a-z 0-9 - _ .",
                    ri.name
                ),
            ));
        }
        if issuers.iter().any(|x: &IssuerConfig| x.name == ri.name) {
            return Err(err(&k("name"), format!("{:?} is used twice", ri.name)));
        }
        if ri.issuer.is_empty() {
            return Err(err(&k("issuer"), "must not be empty".into()));
        }
        if issuers.iter().any(|x: &IssuerConfig| x.issuer == ri.issuer) {
            return Err(err(
                &k("issuer"),
                format!("{:?} is configured twice", ri.issuer),
            ));
        }
        let sources = ri.jwks_file.is_some() as u8
            + ri.jwks_url.is_some() as u8
            + ri.discovery_url.is_some() as u8;
        if sources > 1 {
            return Err(err(
                &k("jwks_url"),
                "set at most one of discovery_url, jwks_url, jwks_file".into(),
            ));
        }
        let check_url = |key: &str, u: &str| -> Result<(), ConfigError> {
            let uri: http::Uri = u
                .parse()
                .map_err(|e| err(key, format!("invalid URL {u:?} ({e})")))?;
            match (uri.scheme_str(), uri.authority()) {
                (Some("http") | Some("https"), Some(_)) => Ok(()),
                _ => Err(err(
                    key,
                    format!("{u:?} must be an http:// or https:// URL"),
                )),
            }
        };
        let source = if let Some(f) = &ri.jwks_file {
            KeySource::File(f.clone())
        } else if let Some(u) = &ri.jwks_url {
            check_url(&k("jwks_url"), u)?;
            KeySource::Jwks(u.clone())
        } else {
            let u = ri.discovery_url.clone().unwrap_or_else(|| {
                format!(
                    "{}/.well-known/openid-configuration",
                    ri.issuer.trim_end_matches('/')
                )
            });
            let key = if ri.discovery_url.is_some() {
                k("discovery_url")
            } else {
                k("issuer")
            };
            check_url(&key, &u).map_err(|mut e| {
                if ri.discovery_url.is_none() {
                    e.message = format!(
                        "{} (discovery needs an http(s) issuer; otherwise set jwks_url or jwks_file)",
                        e.message
                    );
                }
                e
            })?;
            KeySource::Discovery(u)
        };
        if ri.audiences.is_empty() || ri.audiences.iter().any(|a| a.is_empty()) {
            return Err(err(
                &k("audiences"),
                "at least one non-empty audience is required".into(),
            ));
        }
        let alg_names: Vec<String> = ri
            .algorithms
            .clone()
            .unwrap_or_else(|| DEFAULT_ALGORITHMS.iter().map(|s| s.to_string()).collect());
        if alg_names.is_empty() {
            return Err(err(
                &k("algorithms"),
                "must list at least one algorithm".into(),
            ));
        }
        let mut algorithms = Vec::new();
        for a in &alg_names {
            let alg = Alg::parse(a).ok_or_else(|| {
                err(
                    &k("algorithms"),
                    format!("{a:?} is not supported (supported: RS256 RS384 RS512 PS256 PS384 PS512 ES256 ES384 EdDSA; HS* and none are never accepted)"),
                )
            })?;
            if !algorithms.contains(&alg) {
                algorithms.push(alg);
            }
        }
        let claims = match ri.claims.as_deref().unwrap_or("kubernetes") {
            "kubernetes" => ClaimsMode::Kubernetes,
            "oidc" => ClaimsMode::Oidc,
            other => {
                return Err(err(
                    &k("claims"),
                    format!("{other:?} is not one of \"kubernetes\", \"oidc\""),
                ))
            }
        };
        if ri.claim_mappings.is_some() && claims != ClaimsMode::Oidc {
            return Err(err(
                &k("claim_mappings"),
                "only valid with claims = \"oidc\"".into(),
            ));
        }
        let legacy_tokens = ri.legacy_tokens.unwrap_or(false);
        if legacy_tokens && claims != ClaimsMode::Kubernetes {
            return Err(err(
                &k("legacy_tokens"),
                "only valid with claims = \"kubernetes\"".into(),
            ));
        }
        let m = ri.claim_mappings.as_ref();
        let claim_mappings = ClaimMappings {
            username: m
                .and_then(|m| m.username.clone())
                .unwrap_or_else(|| "sub".into()),
            username_prefix: m
                .and_then(|m| m.username_prefix.clone())
                .unwrap_or_default(),
            groups: m.and_then(|m| m.groups.clone()),
            groups_prefix: m.and_then(|m| m.groups_prefix.clone()).unwrap_or_default(),
            uid: m.and_then(|m| m.uid.clone()),
        };
        let min_refetch_interval = dur(
            &k("min_refetch_interval"),
            &ri.min_refetch_interval,
            DEFAULT_MIN_REFETCH_INTERVAL,
        )?;
        let refresh_interval = dur(
            &k("refresh_interval"),
            &ri.refresh_interval,
            DEFAULT_REFRESH_INTERVAL,
        )?;
        if refresh_interval < Duration::from_secs(1) {
            return Err(err(&k("refresh_interval"), "must be at least 1s".into()));
        }
        issuers.push(IssuerConfig {
            name: ri.name.clone(),
            issuer: ri.issuer.clone(),
            source,
            audiences: ri.audiences.clone(),
            algorithms,
            ca_file: ri.ca_file.clone(),
            token_file: ri.token_file.clone(),
            refresh_interval,
            min_refetch_interval,
            max_stale: dur(&k("max_stale"), &ri.max_stale, DEFAULT_MAX_STALE)?,
            clock_skew: dur(&k("clock_skew"), &ri.clock_skew, DEFAULT_CLOCK_SKEW)?,
            max_lifetime: dur(&k("max_lifetime"), &ri.max_lifetime, DEFAULT_MAX_LIFETIME)?,
            claims,
            legacy_tokens,
            claim_mappings,
        });
    }

    Ok(Config {
        source: file.to_string(),
        server,
        admin,
        upstream,
        cache,
        tokenreview,
        issuers,
    })
}

/// A minimal valid config with one issuer (`unit`, `https://iss.test`, audience `aud`, keys
/// from an unreachable URL) for unit tests that install their own keys.
#[cfg(test)]
pub(crate) const UNIT_TEST_CONFIG: &str = r#"
[server]
listen = "127.0.0.1:0"
[upstream]
url = "http://127.0.0.1:1"
[[issuers]]
name = "unit"
issuer = "https://iss.test"
jwks_url = "http://127.0.0.1:1/unused"
audiences = ["aud"]
"#;

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: &str = r#"
[server]
listen = "127.0.0.1:8080"
[upstream]
url = "http://127.0.0.1:8081"
[[issuers]]
name = "cluster"
issuer = "https://kubernetes.default.svc.cluster.local"
audiences = ["https://kubernetes.default.svc.cluster.local"]
"#;

    #[test]
    fn minimal_config_gets_documented_defaults() {
        let c = Config::parse(MIN, "t.toml").unwrap();
        assert_eq!(c.server.max_header_bytes, 16384);
        assert_eq!(c.server.idle_timeout, Duration::from_secs(90));
        assert_eq!(c.cache.max_entries, 1_000_000);
        let i = &c.issuers[0];
        assert_eq!(i.algorithms, vec![Alg::RS256, Alg::ES256]);
        assert_eq!(i.max_lifetime, Duration::from_secs(8784 * 3600));
        assert!(matches!(&i.source, KeySource::Discovery(u)
            if u == "https://kubernetes.default.svc.cluster.local/.well-known/openid-configuration"));
        assert_eq!(c.upstream.unwrap().identity_headers, IdentityMode::Remote);
    }

    #[test]
    fn unknown_key_is_named_with_its_table() {
        let text = MIN.replace("[server]", "[server]\nlisten_addr = \"x\"");
        let e = Config::parse(&text, "t.toml").unwrap_err();
        assert_eq!(e.file, "t.toml");
        assert!(e.key.contains("server"), "{e}");
        assert!(e.message.contains("listen_addr"), "{e}");
    }

    #[test]
    fn bad_values_name_their_key() {
        let cases = [
            (MIN.replace("127.0.0.1:8080", "nope"), "server.listen"),
            (
                MIN.replace("[upstream]", "[upstream]\ntimeout = \"soon\""),
                "upstream.timeout",
            ),
            (
                MIN.replace(
                    "name = \"cluster\"",
                    "name = \"cluster\"\nalgorithms = [\"HS256\"]",
                ),
                "issuers[0].algorithms",
            ),
            (
                MIN.replace(
                    "name = \"cluster\"",
                    "name = \"cluster\"\nclaims = \"saml\"",
                ),
                "issuers[0].claims",
            ),
            (
                MIN.replace("http://127.0.0.1:8081", "ftp://x"),
                "upstream.url",
            ),
        ];
        for (text, key) in cases {
            let e = Config::parse(&text, "t.toml").unwrap_err();
            assert_eq!(e.key, key, "{e}");
        }
    }

    #[test]
    fn missing_required_key_is_named() {
        let text = MIN.replace(
            "audiences = [\"https://kubernetes.default.svc.cluster.local\"]",
            "",
        );
        let e = Config::parse(&text, "t.toml").unwrap_err();
        assert!(e.to_string().contains("audiences"), "{e}");
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("24h").unwrap(), Duration::from_secs(86400));
        assert!(parse_duration("5 parsecs").is_err());
    }
}

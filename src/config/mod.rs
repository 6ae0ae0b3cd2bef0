//! Configuration (SPEC section 3). Every input goes one way, as in river's `config/internal.rs`:
//!
//! ```text
//! TOML text ─► raw      serde structs that reject unknown keys (deny_unknown_fields)
//!           ─► validate one function per section: durations parsed, URLs checked, defaults
//!           ─► Config   the internal type the rest of the proxy reads (types.rs)
//! ```
//!
//! Every error names the file and the key.

use std::path::Path;

mod authn_file;
mod authorization;
mod checks;
mod claims;
mod file;
mod protocols;
mod raw;
mod types;
mod validate;

pub use file::parse_duration;
pub use protocols::{Cidr, UpstreamProtocol};
pub use types::{
    AdminConfig, AuthorizationConfig, CacheConfig, ClaimsMode, Config, ConfigError, IdentityMode,
    IssuerConfig, KeySource, KubernetesConfig, LogConfig, LogFormat, PathMatch, RouteConfig,
    SarAttributes, ServerConfig, TlsFiles, TokenReviewConfig, UpstreamConfig, DEFAULT_ADMIN_LISTEN,
    DEFAULT_ALGORITHMS, DEFAULT_CACHE_MAX_ENTRIES, DEFAULT_CACHE_MAX_NEGATIVE_ENTRIES,
    DEFAULT_CACHE_MAX_TTL, DEFAULT_CLOCK_SKEW, DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_HEADER_READ_TIMEOUT, DEFAULT_IDLE_TIMEOUT, DEFAULT_KUBERNETES_MAX_STALE,
    DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_HEADER_BYTES, DEFAULT_MAX_LIFETIME, DEFAULT_MAX_STALE,
    DEFAULT_MIN_REFETCH_INTERVAL, DEFAULT_NEGATIVE_TTL, DEFAULT_REFRESH_INTERVAL,
    DEFAULT_REQUEST_BODY_TIMEOUT, DEFAULT_SHUTDOWN_DELAY, DEFAULT_SHUTDOWN_GRACE,
    DEFAULT_UPSTREAM_MAX_CONNECTIONS, DEFAULT_UPSTREAM_TIMEOUT,
};

impl Config {
    /// Read and validate a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: file.clone(),
            key: "(file)".into(),
            message: format!("cannot read: {e}"),
        })?;
        // Relative paths in the file mean relative to the file, wherever the proxy runs.
        let dir = path.parent().unwrap_or(Path::new(""));
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        let mut config = Config::parse_in(&text, &file, dir)?;
        config.resolve_paths(dir);
        Ok(config)
    }

    /// Parse and validate config text; `file` is only used in messages. A relative
    /// `authentication_config` is read relative to the working directory.
    pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
        Config::parse_in(text, file, Path::new("."))
    }

    /// [`Config::parse`], with a relative `authentication_config` under `dir`.
    fn parse_in(text: &str, file: &str, dir: &Path) -> Result<Config, ConfigError> {
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
        // Kept for messages: an error inside a route names the route.
        let routes = value
            .get("authorization")
            .and_then(|a| a.get("routes"))
            .cloned();
        let raw: raw::RawConfig = serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            let key = if path == "." || path.is_empty() {
                "(top level)".to_string()
            } else {
                path
            };
            let message = e.into_inner().to_string();
            match route_name(routes.as_ref(), &key) {
                Some(name) => err(&key, format!("route {name:?}: {message}")),
                None => err(&key, message),
            }
        })?;
        let mut config = validate::validate(raw, file)?;
        if let Some(p) = &mut config.authentication_config {
            if p.is_relative() {
                *p = dir.join(&*p);
            }
            config.add_authentication_config()?;
        }
        Ok(config)
    }

    /// Read `authentication_config` and add its `jwt` issuers after the TOML ones.
    fn add_authentication_config(&mut self) -> Result<(), ConfigError> {
        let Some(path) = self.authentication_config.clone() else {
            return Ok(());
        };
        let text = std::fs::read_to_string(&path).map_err(|e| ConfigError {
            file: self.source.clone(),
            key: "authentication_config".into(),
            message: format!("cannot read {}: {e}", path.display()),
        })?;
        let file = path.display().to_string();
        let (issuers, warnings) = authn_file::issuers(&text, &file)?;
        for (i, added) in issuers.into_iter().enumerate() {
            let clash = self
                .issuers
                .iter()
                .find(|t| t.name == added.name || t.issuer == added.issuer);
            if let Some(t) = clash {
                return Err(ConfigError {
                    file: file.clone(),
                    key: format!("jwt[{i}].issuer.url"),
                    message: format!(
                        "{:?} (named {:?}) is configured in {} too (issuer {:?})",
                        added.issuer, added.name, self.source, t.name
                    ),
                });
            }
            self.issuers.push(added);
        }
        if self.issuers.is_empty() {
            return Err(ConfigError {
                file,
                key: "jwt".into(),
                message: "no issuers: add a jwt entry here or an [[issuers]] entry".into(),
            });
        }
        self.authentication_config_warnings = warnings;
        Ok(())
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
        let trusted: Vec<String> = self
            .server
            .trusted_proxies
            .iter()
            .map(|c| c.to_string())
            .collect();
        let _ = writeln!(s, "server: trusted_proxies {trusted:?}");
        let _ = writeln!(s, "admin: listen {}", self.admin.listen);
        match &self.upstream {
            Some(u) => {
                let _ = writeln!(
                    s,
                    "upstream: {} protocol={} identity_headers={} forward_token={} timeout={} max_connections={}",
                    u.url,
                    u.protocol.as_str(),
                    u.identity_headers.as_str(),
                    u.forward_token,
                    checks::written(u.timeout),
                    u.max_connections
                );
            }
            None => {
                let _ = writeln!(s, "upstream: none (TokenReview only)");
            }
        }
        let _ = writeln!(
            s,
            "cache: max_entries {}, max_ttl {}, negative_ttl {}, max_negative_entries {}",
            self.cache.max_entries,
            checks::written(self.cache.max_ttl),
            checks::written(self.cache.negative_ttl),
            self.cache.max_negative_entries
        );
        let _ = writeln!(
            s,
            "tokenreview: enabled={} allowed_callers={:?}",
            self.tokenreview.enabled, self.tokenreview.allowed_callers
        );
        let _ = writeln!(
            s,
            "kubernetes: {}, max_stale {}",
            match &self.kubernetes.kubeconfig {
                Some(p) => format!("kubeconfig {}", p.display()),
                None => "in-cluster, else $KUBECONFIG".to_string(),
            },
            checks::written(self.kubernetes.max_stale)
        );
        if let Some(p) = &self.authentication_config {
            let _ = writeln!(s, "authentication_config: {}", p.display());
        }
        for i in &self.issuers {
            let source = match &i.source {
                KeySource::Discovery(u) => format!("discovery {u}"),
                KeySource::Jwks(u) => format!("jwks {u}"),
                KeySource::File(p) => format!("file {}", p.display()),
            };
            let algs: Vec<&str> = i.algorithms.iter().map(|a| a.as_str()).collect();
            let _ = writeln!(
                s,
                "issuer {:?}: iss {} via {}; audiences {:?}; algorithms {:?}; claims {}; legacy_tokens {}; bound_objects {}; refresh_interval {}; max_stale {}",
                i.name,
                i.issuer,
                source,
                i.audiences,
                algs,
                i.claims.as_str(),
                i.legacy_tokens,
                i.bound_objects,
                checks::written(i.refresh_interval),
                checks::written(i.max_stale)
            );
            if let Some(rules) = &i.claim_rules {
                let _ = writeln!(s, "  claim rules {:?}: {}", i.name, rules.describe());
            }
        }
        authorization::summary(&self.authorization, &mut s);
        s
    }
}

/// The name of the route a key like `authorization.routes[2].verbs` is in, if it has one.
fn route_name(routes: Option<&toml::Value>, key: &str) -> Option<String> {
    let rest = key.strip_prefix("authorization.routes[")?;
    let i: usize = rest[..rest.find(']')?].parse().ok()?;
    let name = routes?.get(i)?.get("name")?.as_str()?;
    Some(name.to_string())
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
    use std::time::Duration;

    use super::*;
    use crate::keys::Alg;

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
            (
                format!("{MIN}\n[kubernetes]\nmax_stale = \"0s\"\n"),
                "kubernetes.max_stale",
            ),
            (
                format!("{MIN}\n[kubernetes]\nkube_config = \"k\"\n"),
                "kubernetes.kube_config",
            ),
            (
                MIN.replace(
                    "name = \"cluster\"",
                    "name = \"cluster\"\nclaims = \"oidc\"\nbound_objects = true",
                ),
                "issuers[0].bound_objects",
            ),
        ];
        for (text, key) in cases {
            let e = Config::parse(&text, "t.toml").unwrap_err();
            assert_eq!(e.key, key, "{e}");
        }
    }

    #[test]
    fn kubernetes_defaults_to_in_cluster_and_resolves_its_kubeconfig() {
        let c = Config::parse(MIN, "t.toml").unwrap();
        assert_eq!(c.kubernetes, KubernetesConfig::default());
        assert_eq!(c.kubernetes.max_stale, Duration::from_secs(300));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, format!("{MIN}\n[kubernetes]\nkubeconfig = \"kc\"\n")).unwrap();
        let c = Config::load(&path).unwrap();
        assert_eq!(c.kubernetes.kubeconfig, Some(dir.path().join("kc")));
        let missing: Vec<String> = c.missing_files().into_iter().map(|e| e.key).collect();
        assert_eq!(missing, ["kubernetes.kubeconfig"]);
    }

    #[test]
    fn request_body_timeout_defaults_to_30s_and_must_be_positive() {
        let c = Config::parse(MIN, "t.toml").unwrap();
        assert_eq!(c.server.request_body_timeout, Duration::from_secs(30));
        for bad in ["\"0s\"", "\"soon\""] {
            let text = MIN.replace(
                "[server]",
                &format!("[server]\nrequest_body_timeout = {bad}"),
            );
            let e = Config::parse(&text, "t.toml").unwrap_err();
            assert_eq!(e.key, "server.request_body_timeout", "{e}");
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
}

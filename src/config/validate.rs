//! Raw file → [`Config`]: one function per section, in file order, each naming the file and
//! the key in its errors. The first error found is the one reported.

use std::time::Duration;

use super::file::File;
use super::protocols;
use super::raw::{
    RawAdmin, RawCache, RawConfig, RawIssuer, RawKubernetes, RawLog, RawServer, RawTokenReview,
    RawUpstream,
};
use super::types::*;
use crate::keys::Alg;

pub(super) fn validate(raw: RawConfig, file: &str) -> Result<Config, ConfigError> {
    let f = File(file);
    let server = server(&raw.server, f)?;
    let admin = admin(&raw.admin, f)?;
    let upstream = raw.upstream.as_ref().map(|u| upstream(u, f)).transpose()?;
    let cache = cache(&raw.cache, f)?;
    let tokenreview = tokenreview(&raw.tokenreview, upstream.is_some(), f)?;
    let issuers = issuers(&raw.issuers, raw.authentication_config.is_some(), f)?;
    let log = log(&raw.log, f)?;
    let authorization = super::authorization::authorization(&raw.authorization, f)?;
    super::authorization::check_with_upstream(&authorization, upstream.as_ref(), f)?;
    let kubernetes = kubernetes(&raw.kubernetes, f)?;
    Ok(Config {
        source: file.to_string(),
        server,
        admin,
        upstream,
        cache,
        tokenreview,
        issuers,
        log,
        authorization,
        kubernetes,
        authentication_config: raw.authentication_config.clone(),
        authentication_config_warnings: Vec::new(),
    })
}

fn kubernetes(raw: &RawKubernetes, f: File) -> Result<KubernetesConfig, ConfigError> {
    let max_stale = f.dur(
        "kubernetes.max_stale",
        &raw.max_stale,
        DEFAULT_KUBERNETES_MAX_STALE,
    )?;
    if max_stale.is_zero() {
        return Err(f.err("kubernetes.max_stale", "must be greater than 0".into()));
    }
    Ok(KubernetesConfig {
        kubeconfig: raw.kubeconfig.clone(),
        max_stale,
    })
}

fn log(raw: &RawLog, f: File) -> Result<LogConfig, ConfigError> {
    let format = match raw.format.as_deref().unwrap_or("text") {
        "text" => LogFormat::Text,
        "json" => LogFormat::Json,
        other => {
            return Err(f.err(
                "log.format",
                format!("{other:?}: expected \"text\" or \"json\""),
            ))
        }
    };
    let level = raw.level.clone().unwrap_or_else(|| "info".into());
    tracing_subscriber::EnvFilter::try_new(&level)
        .map_err(|e| f.err("log.level", format!("{level:?}: {e}")))?;
    Ok(LogConfig {
        format,
        level,
        access: raw.access.unwrap_or(false),
    })
}

fn server(s: &RawServer, f: File) -> Result<ServerConfig, ConfigError> {
    let listen = f.addr("server.listen", &s.listen)?;
    let tls = match (&s.tls_cert_file, &s.tls_key_file) {
        (Some(c), Some(k)) => Some(TlsFiles {
            cert_file: c.clone(),
            key_file: k.clone(),
            client_ca_file: s.client_ca_file.clone(),
        }),
        (None, None) => {
            if s.client_ca_file.is_some() {
                return Err(f.err(
                    "server.client_ca_file",
                    "needs server.tls_cert_file and server.tls_key_file".into(),
                ));
            }
            None
        }
        (Some(_), None) => {
            return Err(f.err(
                "server.tls_key_file",
                "must be set together with server.tls_cert_file".into(),
            ))
        }
        (None, Some(_)) => {
            return Err(f.err(
                "server.tls_cert_file",
                "must be set together with server.tls_key_file".into(),
            ))
        }
    };
    let max_header_bytes = s.max_header_bytes.unwrap_or(DEFAULT_MAX_HEADER_BYTES);
    if !(1024..=1 << 20).contains(&max_header_bytes) {
        return Err(f.err(
            "server.max_header_bytes",
            format!("{max_header_bytes} is out of range (1024 to 1048576)"),
        ));
    }
    let max_connections = s.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS);
    if max_connections == 0 {
        return Err(f.err("server.max_connections", "must be at least 1".into()));
    }
    let request_body_timeout = f.dur(
        "server.request_body_timeout",
        &s.request_body_timeout,
        DEFAULT_REQUEST_BODY_TIMEOUT,
    )?;
    if request_body_timeout.is_zero() {
        return Err(f.err(
            "server.request_body_timeout",
            "must be longer than 0s".into(),
        ));
    }
    let workers = match s.workers {
        Some(0) => return Err(f.err("server.workers", "must be at least 1".into())),
        Some(n) => n,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    Ok(ServerConfig {
        listen,
        tls,
        max_header_bytes,
        header_read_timeout: f.dur(
            "server.header_read_timeout",
            &s.header_read_timeout,
            DEFAULT_HEADER_READ_TIMEOUT,
        )?,
        idle_timeout: f.dur("server.idle_timeout", &s.idle_timeout, DEFAULT_IDLE_TIMEOUT)?,
        shutdown_grace: f.dur(
            "server.shutdown_grace",
            &s.shutdown_grace,
            DEFAULT_SHUTDOWN_GRACE,
        )?,
        shutdown_delay: f.dur(
            "server.shutdown_delay",
            &s.shutdown_delay,
            DEFAULT_SHUTDOWN_DELAY,
        )?,
        max_connections,
        request_body_timeout,
        workers,
        trusted_proxies: protocols::trusted_proxies(s.trusted_proxies.as_deref())
            .map_err(|(k, m)| f.err(&k, m))?,
    })
}

fn admin(a: &RawAdmin, f: File) -> Result<AdminConfig, ConfigError> {
    Ok(AdminConfig {
        listen: f.addr(
            "admin.listen",
            a.listen.as_deref().unwrap_or(DEFAULT_ADMIN_LISTEN),
        )?,
    })
}

fn upstream(u: &RawUpstream, f: File) -> Result<UpstreamConfig, ConfigError> {
    let url: http::Uri = u
        .url
        .parse()
        .map_err(|e| f.err("upstream.url", format!("invalid URL {:?} ({e})", u.url)))?;
    match url.scheme_str() {
        Some("http") | Some("https") => {}
        _ => {
            return Err(f.err(
                "upstream.url",
                format!("{:?} must start with http:// or https://", u.url),
            ))
        }
    }
    if url.authority().is_none() {
        return Err(f.err("upstream.url", format!("{:?} has no host", u.url)));
    }
    if url.query().is_some() {
        return Err(f.err("upstream.url", "must not have a query string".into()));
    }
    let identity_headers = match u.identity_headers.as_deref().unwrap_or("remote") {
        "remote" => IdentityMode::Remote,
        "impersonate" => IdentityMode::Impersonate,
        "none" => IdentityMode::None,
        other => {
            return Err(f.err(
                "upstream.identity_headers",
                format!("{other:?} is not one of \"remote\", \"impersonate\", \"none\""),
            ))
        }
    };
    let forward_token = u.forward_token.unwrap_or(false);
    if identity_headers == IdentityMode::Impersonate {
        if forward_token {
            return Err(f.err(
                "upstream.forward_token",
                "cannot be true with identity_headers = \"impersonate\" (the proxy's own token replaces the caller's)".into(),
            ));
        }
        if u.token_file.is_none() {
            return Err(f.err(
                "upstream.token_file",
                "required with identity_headers = \"impersonate\"".into(),
            ));
        }
    }
    let client_cert = match (&u.client_cert_file, &u.client_key_file) {
        (Some(c), Some(k)) => Some((c.clone(), k.clone())),
        (None, None) => None,
        (Some(_), None) => {
            return Err(f.err(
                "upstream.client_key_file",
                "must be set together with upstream.client_cert_file".into(),
            ))
        }
        (None, Some(_)) => {
            return Err(f.err(
                "upstream.client_cert_file",
                "must be set together with upstream.client_key_file".into(),
            ))
        }
    };
    let max_connections = u
        .max_connections
        .unwrap_or(DEFAULT_UPSTREAM_MAX_CONNECTIONS);
    if max_connections == 0 {
        return Err(f.err("upstream.max_connections", "must be at least 1".into()));
    }
    Ok(UpstreamConfig {
        url,
        ca_file: u.ca_file.clone(),
        client_cert,
        token_file: u.token_file.clone(),
        identity_headers,
        forward_token,
        connect_timeout: f.dur(
            "upstream.connect_timeout",
            &u.connect_timeout,
            DEFAULT_CONNECT_TIMEOUT,
        )?,
        timeout: f.dur("upstream.timeout", &u.timeout, DEFAULT_UPSTREAM_TIMEOUT)?,
        max_connections,
        protocol: protocols::upstream_protocol(u.protocol.as_deref())
            .map_err(|m| f.err("upstream.protocol", m))?,
    })
}

fn cache(c: &RawCache, f: File) -> Result<CacheConfig, ConfigError> {
    Ok(CacheConfig {
        max_entries: c.max_entries.unwrap_or(DEFAULT_CACHE_MAX_ENTRIES),
        max_ttl: f.dur("cache.max_ttl", &c.max_ttl, DEFAULT_CACHE_MAX_TTL)?,
        negative_ttl: f.dur("cache.negative_ttl", &c.negative_ttl, DEFAULT_NEGATIVE_TTL)?,
        max_negative_entries: c
            .max_negative_entries
            .unwrap_or(DEFAULT_CACHE_MAX_NEGATIVE_ENTRIES),
    })
}

/// `has_upstream`: without an upstream, TokenReview is the proxy's only job.
fn tokenreview(
    t: &RawTokenReview,
    has_upstream: bool,
    f: File,
) -> Result<TokenReviewConfig, ConfigError> {
    let tokenreview = TokenReviewConfig {
        enabled: t.enabled.unwrap_or(true),
        allowed_callers: t.allowed_callers.clone().unwrap_or_default(),
    };
    if !has_upstream && !tokenreview.enabled {
        return Err(f.err(
            "upstream.url",
            "required when tokenreview.enabled = false (the proxy would have nothing to do)".into(),
        ));
    }
    Ok(tokenreview)
}

/// `more`: an `authentication_config` adds issuers of its own.
fn issuers(raw: &[RawIssuer], more: bool, f: File) -> Result<Vec<IssuerConfig>, ConfigError> {
    if raw.is_empty() && !more {
        return Err(f.err(
            "issuers",
            "at least one [[issuers]] entry (or an authentication_config) is required".into(),
        ));
    }
    let mut issuers = Vec::with_capacity(raw.len());
    for (i, ri) in raw.iter().enumerate() {
        issuers.push(issuer(i, ri, &issuers, f)?);
    }
    Ok(issuers)
}

/// `issuers[i]`; `earlier` are the entries before it, for [`unique`].
fn issuer(
    i: usize,
    ri: &RawIssuer,
    earlier: &[IssuerConfig],
    f: File,
) -> Result<IssuerConfig, ConfigError> {
    let k = |name: &str| format!("issuers[{i}].{name}");
    if ri.name.is_empty()
        || !ri
            .name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
    {
        return Err(f.err(
            &k("name"),
            format!(
                "{:?} must be non-empty and use only A-Z a-z 0-9 - _ .",
                ri.name
            ),
        ));
    }
    // Before the `iss` checks: a repeated entry is reported as repeated.
    unique(i, ri, earlier, f)?;
    if ri.issuer.is_empty() {
        return Err(f.err(&k("issuer"), "must not be empty".into()));
    }
    let sources = ri.jwks_file.is_some() as u8
        + ri.jwks_url.is_some() as u8
        + ri.discovery_url.is_some() as u8;
    if sources > 1 {
        return Err(f.err(
            &k("jwks_url"),
            "set at most one of discovery_url, jwks_url, jwks_file".into(),
        ));
    }
    let check_url = |key: &str, u: &str| -> Result<(), ConfigError> {
        let uri: http::Uri = u
            .parse()
            .map_err(|e| f.err(key, format!("invalid URL {u:?} ({e})")))?;
        match (uri.scheme_str(), uri.authority()) {
            (Some("http") | Some("https"), Some(_)) => Ok(()),
            _ => Err(f.err(key, format!("{u:?} must be an http:// or https:// URL"))),
        }
    };
    let source = if let Some(p) = &ri.jwks_file {
        KeySource::File(p.clone())
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
        return Err(f.err(
            &k("audiences"),
            "at least one non-empty audience is required".into(),
        ));
    }
    let alg_names: Vec<String> = ri
        .algorithms
        .clone()
        .unwrap_or_else(|| DEFAULT_ALGORITHMS.iter().map(|s| s.to_string()).collect());
    if alg_names.is_empty() {
        return Err(f.err(&k("algorithms"), "must list at least one algorithm".into()));
    }
    let mut algorithms = Vec::new();
    for a in &alg_names {
        let alg = Alg::parse(a).ok_or_else(|| {
            f.err(
                &k("algorithms"),
                format!("{a:?} is not supported (supported: RS256 RS384 RS512 PS256 PS384 PS512 ES256 ES384 ES512 EdDSA; HS* and none are never accepted)"),
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
            return Err(f.err(
                &k("claims"),
                format!("{other:?} is not one of \"kubernetes\", \"oidc\""),
            ))
        }
    };
    let claim_rules = super::claims::toml_rules(i, ri, claims == ClaimsMode::Oidc, f.0)?;
    let legacy_tokens = ri.legacy_tokens.unwrap_or(false);
    if legacy_tokens && claims != ClaimsMode::Kubernetes {
        return Err(f.err(
            &k("legacy_tokens"),
            "only valid with claims = \"kubernetes\"".into(),
        ));
    }
    let bound_objects = ri.bound_objects.unwrap_or(false);
    if bound_objects && claims != ClaimsMode::Kubernetes {
        return Err(f.err(
            &k("bound_objects"),
            "only valid with claims = \"kubernetes\"".into(),
        ));
    }
    let min_refetch_interval = f.dur(
        &k("min_refetch_interval"),
        &ri.min_refetch_interval,
        DEFAULT_MIN_REFETCH_INTERVAL,
    )?;
    let refresh_interval = f.dur(
        &k("refresh_interval"),
        &ri.refresh_interval,
        DEFAULT_REFRESH_INTERVAL,
    )?;
    if refresh_interval < Duration::from_secs(1) {
        return Err(f.err(&k("refresh_interval"), "must be at least 1s".into()));
    }
    Ok(IssuerConfig {
        name: ri.name.clone(),
        issuer: ri.issuer.clone(),
        source,
        audiences: ri.audiences.clone(),
        algorithms,
        ca_file: ri.ca_file.clone(),
        ca_pem: None,
        token_file: ri.token_file.clone(),
        refresh_interval,
        min_refetch_interval,
        max_stale: f.dur(&k("max_stale"), &ri.max_stale, DEFAULT_MAX_STALE)?,
        clock_skew: f.dur(&k("clock_skew"), &ri.clock_skew, DEFAULT_CLOCK_SKEW)?,
        max_lifetime: f.dur(&k("max_lifetime"), &ri.max_lifetime, DEFAULT_MAX_LIFETIME)?,
        claims,
        legacy_tokens,
        bound_objects,
        claim_rules,
    })
}

/// The cross-issuer check: neither the name nor the `iss` of an earlier entry.
fn unique(i: usize, ri: &RawIssuer, earlier: &[IssuerConfig], f: File) -> Result<(), ConfigError> {
    if earlier.iter().any(|x| x.name == ri.name) {
        return Err(f.err(
            &format!("issuers[{i}].name"),
            format!("{:?} is used twice", ri.name),
        ));
    }
    if earlier.iter().any(|x| x.issuer == ri.issuer) {
        return Err(f.err(
            &format!("issuers[{i}].issuer"),
            format!("{:?} is configured twice", ri.issuer),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::file::parse_duration;
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("24h").unwrap(), Duration::from_secs(86400));
        assert!(parse_duration("5 parsecs").is_err());
    }
}

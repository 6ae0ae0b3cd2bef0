//! What a valid config may still get wrong, checked against the machine it runs on: the files
//! it names (relative paths resolve against the config file's directory), and settings that
//! contradict each other. `check-config` reports them; `run` refuses missing files.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::types::{ClaimsMode, Config, ConfigError, IdentityMode, KeySource};

/// Files under this directory exist only inside a pod: `check-config` warns about them
/// instead of failing.
pub const POD_ONLY_DIR: &str = "/var/run/secrets/";

/// A duration as a config file writes it (`5m`, `90s`, `24h`).
pub fn written(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

impl IdentityMode {
    pub fn as_str(self) -> &'static str {
        match self {
            IdentityMode::Remote => "remote",
            IdentityMode::Impersonate => "impersonate",
            IdentityMode::None => "none",
        }
    }
}

impl ClaimsMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ClaimsMode::Kubernetes => "kubernetes",
            ClaimsMode::Oidc => "oidc",
        }
    }
}

impl Config {
    /// Make every relative path in the config relative to `dir` (the config file's).
    pub fn resolve_paths(&mut self, dir: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = dir.join(&*p);
            }
        };
        if let Some(t) = &mut self.server.tls {
            fix(&mut t.cert_file);
            fix(&mut t.key_file);
            t.client_ca_file.as_mut().map(fix);
        }
        if let Some(u) = &mut self.upstream {
            u.ca_file.as_mut().map(fix);
            if let Some((c, k)) = &mut u.client_cert {
                fix(c);
                fix(k);
            }
            u.token_file.as_mut().map(fix);
        }
        for i in &mut self.issuers {
            if let KeySource::File(p) = &mut i.source {
                fix(p);
            }
            i.ca_file.as_mut().map(fix);
            i.token_file.as_mut().map(fix);
        }
        self.kubernetes.kubeconfig.as_mut().map(fix);
    }

    /// Every file the config names, with its key. Validation does not require them to exist
    /// (an in-cluster config names files that only exist in the pod); `run` and
    /// `check-config` do, through [`Config::missing_files`].
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
        if let Some(p) = &self.kubernetes.kubeconfig {
            out.push(("kubernetes.kubeconfig".into(), p.clone()));
        }
        if let Some(p) = &self.authentication_config {
            out.push(("authentication_config".into(), p.clone()));
        }
        out
    }

    /// The named files that cannot be read, as config errors (file and key).
    pub fn missing_files(&self) -> Vec<ConfigError> {
        self.files()
            .into_iter()
            .filter_map(|(key, path)| self.unreadable(key, &path))
            .collect()
    }

    fn unreadable(&self, key: String, path: &Path) -> Option<ConfigError> {
        std::fs::File::open(path).err().map(|e| ConfigError {
            file: self.source.clone(),
            key,
            message: format!("cannot read {}: {e}", path.display()),
        })
    }

    /// [`Config::missing_files`] split: those that must exist wherever the config is checked,
    /// and those under [`POD_ONLY_DIR`], which exist only inside a pod.
    pub fn missing_files_by_place(&self) -> (Vec<ConfigError>, Vec<ConfigError>) {
        let (mut here, mut pod) = (Vec::new(), Vec::new());
        for (key, path) in self.files() {
            if let Some(e) = self.unreadable(key, &path) {
                if path.starts_with(POD_ONLY_DIR) {
                    pod.push(e);
                } else {
                    here.push(e);
                }
            }
        }
        (here, pod)
    }

    /// Settings that are valid one by one but contradict each other or invite trouble.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = self.authentication_config_warnings.clone();
        for (n, i) in self.issuers.iter().enumerate() {
            let key = |k: &str| format!("{}: issuers[{n}].{k}", self.source);
            if !matches!(i.source, KeySource::File(_)) && i.max_stale < i.refresh_interval {
                out.push(format!(
                    "{}: {} is shorter than refresh_interval ({}): keys go stale between two refreshes",
                    key("max_stale"),
                    written(i.max_stale),
                    written(i.refresh_interval)
                ));
            }
            let urls = [
                ("issuer", Some(i.issuer.as_str())),
                (
                    "discovery_url",
                    match &i.source {
                        KeySource::Discovery(u) => Some(u.as_str()),
                        _ => None,
                    },
                ),
                (
                    "jwks_url",
                    match &i.source {
                        KeySource::Jwks(u) => Some(u.as_str()),
                        _ => None,
                    },
                ),
            ];
            for (k, url) in urls {
                if let Some(url) = url.filter(|u| plain_http_off_host(u)) {
                    out.push(format!(
                        "{}: {url} is plain http to another host: keys could be replaced in transit",
                        key(k)
                    ));
                }
            }
        }
        let listen = self.server.listen.ip();
        if self.tokenreview.enabled
            && !listen.is_loopback()
            && self.server.tls.is_none()
            && self.tokenreview.allowed_callers.is_empty()
        {
            out.push(format!(
                "{}: tokenreview.enabled: TokenReview is served on {} without TLS and without \
                 allowed_callers: anyone who reaches it can test tokens",
                self.source, self.server.listen
            ));
        }
        out
    }
}

/// An `http://` URL whose host is not loopback.
fn plain_http_off_host(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("http://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = match authority.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
        _ => authority,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.eq_ignore_ascii_case("localhost") {
        return false;
    }
    !host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_is_flagged_only_off_loopback() {
        assert!(plain_http_off_host("http://issuer.example/x"));
        assert!(plain_http_off_host("http://10.0.0.1:8080"));
        assert!(!plain_http_off_host("http://127.0.0.1:8080/jwks"));
        assert!(!plain_http_off_host("http://localhost:1"));
        assert!(!plain_http_off_host("http://[::1]:9/"));
        assert!(!plain_http_off_host("https://issuer.example"));
    }

    #[test]
    fn durations_print_as_written() {
        assert_eq!(written(Duration::from_secs(300)), "5m");
        assert_eq!(written(Duration::from_secs(90)), "1m 30s");
    }
}

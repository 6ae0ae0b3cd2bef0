//! The file's shape, as serde reads it: every table rejects unknown keys, nothing is checked
//! beyond types. `validate` turns it into a `Config`.

use std::path::PathBuf;

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub(super) server: RawServer,
    #[serde(default)]
    pub(super) admin: RawAdmin,
    pub(super) upstream: Option<RawUpstream>,
    #[serde(default)]
    pub(super) cache: RawCache,
    #[serde(default)]
    pub(super) tokenreview: RawTokenReview,
    #[serde(default)]
    pub(super) issuers: Vec<RawIssuer>,
    #[serde(default)]
    pub(super) log: RawLog,
    #[serde(default)]
    pub(super) authorization: RawAuthorization,
    #[serde(default)]
    pub(super) kubernetes: RawKubernetes,
    /// A kube-apiserver AuthenticationConfiguration file: its `jwt` entries become issuers.
    pub(super) authentication_config: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAuthorization {
    pub(super) default: Option<String>,
    pub(super) sar_allow_ttl: Option<String>,
    pub(super) sar_deny_ttl: Option<String>,
    #[serde(default)]
    pub(super) routes: Vec<RawRoute>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRoute {
    pub(super) name: String,
    pub(super) path_prefix: Option<String>,
    pub(super) path: Option<String>,
    pub(super) methods: Option<Vec<String>>,
    pub(super) anonymous: Option<bool>,
    pub(super) service_accounts: Option<Vec<String>>,
    pub(super) groups: Option<Vec<String>>,
    pub(super) users: Option<Vec<String>>,
    pub(super) expression: Option<String>,
    pub(super) subject_access_review: Option<RawSubjectAccessReview>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSubjectAccessReview {
    pub(super) non_resource: Option<bool>,
    pub(super) verb: Option<String>,
    pub(super) group: Option<String>,
    pub(super) version: Option<String>,
    pub(super) resource: Option<String>,
    pub(super) subresource: Option<String>,
    pub(super) namespace: Option<String>,
    pub(super) name: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawKubernetes {
    pub(super) kubeconfig: Option<PathBuf>,
    pub(super) max_stale: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLog {
    pub(super) format: Option<String>,
    pub(super) level: Option<String>,
    pub(super) access: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServer {
    pub(super) listen: String,
    pub(super) tls_cert_file: Option<PathBuf>,
    pub(super) tls_key_file: Option<PathBuf>,
    pub(super) client_ca_file: Option<PathBuf>,
    pub(super) max_header_bytes: Option<usize>,
    pub(super) header_read_timeout: Option<String>,
    pub(super) idle_timeout: Option<String>,
    pub(super) shutdown_grace: Option<String>,
    pub(super) shutdown_delay: Option<String>,
    pub(super) max_connections: Option<usize>,
    pub(super) request_body_timeout: Option<String>,
    pub(super) workers: Option<usize>,
    pub(super) trusted_proxies: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAdmin {
    pub(super) listen: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUpstream {
    pub(super) url: String,
    pub(super) ca_file: Option<PathBuf>,
    pub(super) client_cert_file: Option<PathBuf>,
    pub(super) client_key_file: Option<PathBuf>,
    pub(super) token_file: Option<PathBuf>,
    pub(super) identity_headers: Option<String>,
    pub(super) forward_token: Option<bool>,
    pub(super) connect_timeout: Option<String>,
    pub(super) timeout: Option<String>,
    pub(super) max_connections: Option<usize>,
    pub(super) protocol: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCache {
    pub(super) max_entries: Option<u64>,
    pub(super) max_ttl: Option<String>,
    pub(super) negative_ttl: Option<String>,
    pub(super) max_negative_entries: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTokenReview {
    pub(super) enabled: Option<bool>,
    pub(super) allowed_callers: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawIssuer {
    pub(super) name: String,
    pub(super) issuer: String,
    pub(super) discovery_url: Option<String>,
    pub(super) jwks_url: Option<String>,
    pub(super) jwks_file: Option<PathBuf>,
    pub(super) audiences: Vec<String>,
    pub(super) algorithms: Option<Vec<String>>,
    pub(super) ca_file: Option<PathBuf>,
    pub(super) token_file: Option<PathBuf>,
    pub(super) refresh_interval: Option<String>,
    pub(super) min_refetch_interval: Option<String>,
    pub(super) max_stale: Option<String>,
    pub(super) clock_skew: Option<String>,
    pub(super) max_lifetime: Option<String>,
    pub(super) claims: Option<String>,
    pub(super) legacy_tokens: Option<bool>,
    pub(super) bound_objects: Option<bool>,
    pub(super) claim_mappings: Option<RawClaimMappings>,
    pub(super) claim_validation_rules: Option<Vec<RawClaimRule>>,
    pub(super) user_validation_rules: Option<Vec<RawUserRule>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawClaimMappings {
    pub(super) username: Option<String>,
    pub(super) username_prefix: Option<String>,
    pub(super) groups: Option<String>,
    pub(super) groups_prefix: Option<String>,
    pub(super) uid: Option<String>,
    pub(super) username_expression: Option<String>,
    pub(super) groups_expression: Option<String>,
    pub(super) uid_expression: Option<String>,
    pub(super) extra: Option<Vec<RawExtra>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawExtra {
    pub(super) key: String,
    pub(super) value_expression: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawClaimRule {
    pub(super) claim: Option<String>,
    pub(super) required_value: Option<String>,
    pub(super) expression: Option<String>,
    pub(super) message: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUserRule {
    pub(super) expression: Option<String>,
    pub(super) message: Option<String>,
}

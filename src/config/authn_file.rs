//! `authentication_config = "FILE"`: a kube-apiserver `AuthenticationConfiguration`
//! (`apiserver.config.k8s.io/v1` or `v1beta1`, YAML) read as it is. Each `jwt` entry becomes
//! an OIDC issuer named `jwt-<index>`, with its `claimValidationRules`, `claimMappings` and
//! `userValidationRules` compiled by `claim_rules`. Errors name the file and the field path
//! kube-apiserver would name (`jwt[0].claimMappings.username.expression`). What does not apply
//! here (`anonymous`, `egressSelectorType`) is a warning for `check-config`.
//!
//! The checks follow kube-apiserver's `pkg/apis/apiserver/validation/validation.go`
//! (https issuer and discovery URLs, audiences and `audienceMatchPolicy`, a `prefix` required
//! with a username `claim`). YAML: `serde-saphyr`, a maintained pure-Rust YAML reader (no
//! unsafe, no libyaml) with typed deserialization; `serde_yaml` is deprecated and its forks
//! `serde_yaml_ng`/`serde_norway` have had no release for over a year.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::file::parse_duration;
use super::types::*;
use crate::claim_rules::{
    ClaimRuleSpec, ClaimRules, ExtraSpec, Field, MappingSpec, Part, RulesSpec, UserRuleSpec,
};
use crate::keys::Alg;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct File {
    api_version: String,
    kind: String,
    #[serde(default)]
    jwt: Vec<Jwt>,
    /// Anonymous authentication: kube-apiserver's own, not a token issuer (warned about).
    anonymous: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Jwt {
    issuer: Issuer,
    #[serde(default)]
    claim_validation_rules: Vec<ClaimRule>,
    #[serde(default)]
    claim_mappings: ClaimMappings,
    #[serde(default)]
    user_validation_rules: Vec<UserRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Issuer {
    url: String,
    #[serde(rename = "discoveryURL")]
    discovery_url: Option<String>,
    certificate_authority: Option<String>,
    #[serde(default)]
    audiences: Vec<String>,
    audience_match_policy: Option<String>,
    egress_selector_type: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ClaimRule {
    claim: Option<String>,
    required_value: Option<String>,
    expression: Option<String>,
    message: Option<String>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ClaimMappings {
    #[serde(default)]
    username: Mapping,
    #[serde(default)]
    groups: Mapping,
    #[serde(default)]
    uid: Mapping,
    #[serde(default)]
    extra: Vec<Extra>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Mapping {
    claim: Option<String>,
    prefix: Option<String>,
    expression: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Extra {
    key: String,
    value_expression: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserRule {
    expression: Option<String>,
    message: Option<String>,
}

/// The algorithms kube-apiserver accepts from a structured-configuration JWT issuer.
const ALGORITHMS: [Alg; 9] = [
    Alg::RS256,
    Alg::RS384,
    Alg::RS512,
    Alg::ES256,
    Alg::ES384,
    Alg::ES512,
    Alg::PS256,
    Alg::PS384,
    Alg::PS512,
];

/// kube-apiserver's name for a rules field of `jwt[i]`.
fn yaml_key(i: usize, field: Field) -> String {
    let part = |p: Part| match p {
        Part::Claim => "claim",
        Part::Prefix => "prefix",
        Part::Key => "key",
        Part::RequiredValue => "requiredValue",
        Part::Message => "message",
        Part::Expression => "expression",
    };
    let rest = match field {
        Field::Username(p) => format!("claimMappings.username.{}", part(p)),
        Field::Groups(p) => format!("claimMappings.groups.{}", part(p)),
        Field::Uid(p) => format!("claimMappings.uid.{}", part(p)),
        Field::Extra(j, Part::Key) => format!("claimMappings.extra[{j}].key"),
        Field::Extra(j, _) => format!("claimMappings.extra[{j}].valueExpression"),
        Field::ClaimRule(j, p) => format!("claimValidationRules[{j}].{}", part(p)),
        Field::UserRule(j, p) => format!("userValidationRules[{j}].{}", part(p)),
    };
    format!("jwt[{i}].{rest}")
}

/// The issuers of an AuthenticationConfiguration (`text`, read from `file`), and warnings.
pub(super) fn issuers(
    text: &str,
    file: &str,
) -> Result<(Vec<IssuerConfig>, Vec<String>), ConfigError> {
    let err = |key: &str, message: String| ConfigError {
        file: file.to_string(),
        key: key.to_string(),
        message,
    };
    let doc: File = serde_saphyr::from_str(text).map_err(|e| err("(syntax)", e.to_string()))?;
    if !matches!(
        doc.api_version.as_str(),
        "apiserver.config.k8s.io/v1" | "apiserver.config.k8s.io/v1beta1"
    ) {
        return Err(err(
            "apiVersion",
            format!(
                "{:?}: expected apiserver.config.k8s.io/v1 or apiserver.config.k8s.io/v1beta1",
                doc.api_version
            ),
        ));
    }
    if doc.kind != "AuthenticationConfiguration" {
        return Err(err(
            "kind",
            format!("{:?}: expected AuthenticationConfiguration", doc.kind),
        ));
    }
    let mut warnings = Vec::new();
    if doc.anonymous.is_some() {
        warnings.push(format!(
            "{file}: anonymous: ignored (the proxy never authenticates anonymous requests)"
        ));
    }
    let mut out: Vec<IssuerConfig> = Vec::new();
    for (i, jwt) in doc.jwt.into_iter().enumerate() {
        let issuer = issuer(i, jwt, file, &mut warnings)?;
        if let Some(j) = out.iter().position(|o| o.issuer == issuer.issuer) {
            return Err(err(
                &format!("jwt[{i}].issuer.url"),
                format!("{:?} is the issuer of jwt[{j}] too", issuer.issuer),
            ));
        }
        out.push(issuer);
    }
    Ok((out, warnings))
}

fn issuer(
    i: usize,
    jwt: Jwt,
    file: &str,
    warnings: &mut Vec<String>,
) -> Result<IssuerConfig, ConfigError> {
    let err = |key: String, message: String| ConfigError {
        file: file.to_string(),
        key,
        message,
    };
    let k = |rest: &str| format!("jwt[{i}].issuer.{rest}");
    let is = jwt.issuer;
    https_url(&is.url).map_err(|m| err(k("url"), m))?;
    let source = match &is.discovery_url {
        Some(d) => {
            https_url(d).map_err(|m| err(k("discoveryURL"), m))?;
            if d.trim_end_matches('/') == is.url.trim_end_matches('/') {
                return Err(err(k("discoveryURL"), "must be different from url".into()));
            }
            KeySource::Discovery(d.clone())
        }
        None => KeySource::Discovery(format!(
            "{}/.well-known/openid-configuration",
            is.url.trim_end_matches('/')
        )),
    };
    if is.audiences.is_empty() {
        return Err(err(
            k("audiences"),
            "at least one audience is required".into(),
        ));
    }
    for (j, a) in is.audiences.iter().enumerate() {
        if a.is_empty() {
            return Err(err(
                k(&format!("audiences[{j}]")),
                "must not be empty".into(),
            ));
        }
        if is.audiences[..j].contains(a) {
            return Err(err(
                k(&format!("audiences[{j}]")),
                format!("{a:?} is listed twice"),
            ));
        }
    }
    match (is.audiences.len(), is.audience_match_policy.as_deref()) {
        (_, Some("MatchAny")) | (1, None | Some("")) => {}
        (1, Some(p)) => {
            return Err(err(
                k("audienceMatchPolicy"),
                format!("{p:?}: must be empty or MatchAny for a single audience"),
            ))
        }
        (_, p) => {
            return Err(err(
                k("audienceMatchPolicy"),
                format!(
                    "{:?}: must be MatchAny for multiple audiences",
                    p.unwrap_or("")
                ),
            ))
        }
    }
    if let Some(pem) = &is.certificate_authority {
        check_pem(pem).map_err(|m| err(k("certificateAuthority"), m))?;
    }
    if let Some(e) = &is.egress_selector_type {
        warnings.push(format!(
            "{file}: {}: {e:?} ignored (the proxy reaches the issuer directly)",
            k("egressSelectorType")
        ));
    }
    let m = jwt.claim_mappings;
    if m.username.claim.is_some() && m.username.prefix.is_none() {
        return Err(err(
            format!("jwt[{i}].claimMappings.username.prefix"),
            "prefix is required when claim is set; it can be \"\" to disable prefixing".into(),
        ));
    }
    if m.groups.claim.is_some() && m.groups.prefix.is_none() {
        return Err(err(
            format!("jwt[{i}].claimMappings.groups.prefix"),
            "prefix is required when claim is set; it can be \"\" to disable prefixing".into(),
        ));
    }
    if m.uid.prefix.is_some() {
        return Err(err(
            format!("jwt[{i}].claimMappings.uid.prefix"),
            "unknown field (uid has no prefix)".into(),
        ));
    }
    let mapping = |m: Mapping| MappingSpec {
        claim: m.claim,
        prefix: m.prefix,
        expression: m.expression,
    };
    let spec = RulesSpec {
        username: mapping(m.username),
        groups: mapping(m.groups),
        uid: mapping(m.uid),
        extra: m
            .extra
            .into_iter()
            .map(|x| ExtraSpec {
                key: x.key,
                value_expression: x.value_expression,
            })
            .collect(),
        claim_validation_rules: jwt
            .claim_validation_rules
            .into_iter()
            .map(|r| ClaimRuleSpec {
                claim: r.claim,
                required_value: r.required_value,
                expression: r.expression,
                message: r.message,
            })
            .collect(),
        user_validation_rules: jwt
            .user_validation_rules
            .into_iter()
            .map(|r| UserRuleSpec {
                expression: r.expression,
                message: r.message,
            })
            .collect(),
    };
    let rules = ClaimRules::compile(spec).map_err(|e| err(yaml_key(i, e.field), e.message))?;
    let dur = |s: &str| parse_duration(s).unwrap_or(Duration::from_secs(60));
    Ok(IssuerConfig {
        name: format!("jwt-{i}"),
        issuer: is.url,
        source,
        audiences: is.audiences,
        algorithms: ALGORITHMS.to_vec(),
        ca_file: None,
        ca_pem: is.certificate_authority,
        token_file: None,
        refresh_interval: dur(DEFAULT_REFRESH_INTERVAL),
        min_refetch_interval: dur(DEFAULT_MIN_REFETCH_INTERVAL),
        max_stale: dur(DEFAULT_MAX_STALE),
        clock_skew: dur(DEFAULT_CLOCK_SKEW),
        max_lifetime: dur(DEFAULT_MAX_LIFETIME),
        claims: ClaimsMode::Oidc,
        legacy_tokens: false,
        bound_objects: false,
        claim_rules: Some(Arc::new(rules)),
    })
}

/// kube-apiserver's URL rules: https, no user info, query or fragment.
fn https_url(u: &str) -> Result<(), String> {
    let uri: http::Uri = u.parse().map_err(|e| format!("invalid URL {u:?} ({e})"))?;
    if uri.scheme_str() != Some("https") || uri.authority().is_none() {
        return Err(format!("{u:?}: URL scheme must be https"));
    }
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Err(format!(
            "{u:?}: URL must not contain a username or password"
        ));
    }
    if uri.query().is_some() || u.contains('#') {
        return Err(format!("{u:?}: URL must not contain a query or a fragment"));
    }
    Ok(())
}

/// At least one PEM certificate, each of which parses.
fn check_pem(pem: &str) -> Result<(), String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("bad PEM certificate: {e}"))?;
    if certs.is_empty() {
        return Err("no PEM certificate found".into());
    }
    let mut roots = rustls::RootCertStore::empty();
    for c in certs {
        roots
            .add(c)
            .map_err(|e| format!("bad CA certificate: {e}"))?;
    }
    Ok(())
}

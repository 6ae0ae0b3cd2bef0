//! Who the caller is (SPEC section 5), and the upstream headers that say so (section 6),
//! built once per verified token so a cache hit only clones `Bytes`-backed values.

use http::{HeaderName, HeaderValue};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::claim_rules::Mapped;
use crate::config::IdentityMode;
use crate::verify::{Claims, Reject};

mod extra;
mod token_ids;
use extra::known_extra_header;
pub use extra::{
    grpc_header_name, EXTRA_CREDENTIAL_ID, EXTRA_NODE_NAME, EXTRA_NODE_UID, EXTRA_POD_NAME,
    EXTRA_POD_UID,
};
pub use token_ids::{TokenHeaderNames, TokenHeaderValues, TokenIds};

pub const GROUP_AUTHENTICATED: &str = "system:authenticated";
pub const GROUP_SERVICEACCOUNTS: &str = "system:serviceaccounts";

/// A Kubernetes `UserInfo`: what kube-apiserver would say about the same token. In a cached
/// principal (`auth::Principal`) the per-token extras (pod name and uid, `credential-id`) are
/// left out: they are in [`TokenIds`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identity {
    pub username: String,
    pub uid: String,
    pub groups: Vec<String>,
    /// Sorted by key; each key once.
    pub extra: Vec<(String, Vec<String>)>,
}

/// Kubernetes service-account identity, given the checked namespace and name, without the
/// per-token extras (pod name and uid, `credential-id`: [`TokenIds::from_claims`]).
pub fn kubernetes_identity(claims: &Claims, ns: &str, name: &str) -> Identity {
    let kube = claims.kube.as_ref();
    let uid = kube
        .and_then(|k| k.serviceaccount.as_ref())
        .and_then(|s| s.uid.clone())
        .unwrap_or_default();
    let mut extra: Vec<(String, Vec<String>)> = Vec::new();
    let mut push = |k: &str, v: Option<&String>| {
        if let Some(v) = v.filter(|v| !v.is_empty()) {
            extra.push((k.to_string(), vec![v.clone()]));
        }
    };
    if let Some(node) = kube.and_then(|k| k.node.as_ref()) {
        push(EXTRA_NODE_NAME, node.name.as_ref());
        push(EXTRA_NODE_UID, node.uid.as_ref());
    }
    extra.sort_by(|a, b| a.0.cmp(&b.0));
    Identity {
        username: format!("system:serviceaccount:{ns}:{name}"),
        uid,
        groups: vec![
            GROUP_SERVICEACCOUNTS.to_string(),
            format!("{GROUP_SERVICEACCOUNTS}:{ns}"),
            GROUP_AUTHENTICATED.to_string(),
        ],
        extra,
    }
}

/// Legacy Secret-based token identity (no pod binding, no credential id).
pub fn legacy_identity(claims: &Claims, ns: &str, name: &str) -> Identity {
    Identity {
        username: format!("system:serviceaccount:{ns}:{name}"),
        uid: claims.legacy_sa_uid.clone().unwrap_or_default(),
        groups: vec![
            GROUP_SERVICEACCOUNTS.to_string(),
            format!("{GROUP_SERVICEACCOUNTS}:{ns}"),
            GROUP_AUTHENTICATED.to_string(),
        ],
        extra: Vec::new(),
    }
}

/// OIDC identity from an issuer's mapped claims ([`crate::claim_rules`]): the mapped groups,
/// then `system:authenticated`. Usernames and groups in the reserved `system:` namespace are
/// refused (`invalid_claims`, with the message returned here): an OIDC issuer must not be able
/// to mint a service-account or `system:masters` identity. Use a prefix to namespace them.
pub fn oidc_identity(m: Mapped) -> Result<Identity, &'static str> {
    if m.username.starts_with("system:") {
        return Err("the username is in the reserved system: namespace");
    }
    if m.groups.iter().any(|g| g.starts_with("system:")) {
        return Err("a group is in the reserved system: namespace");
    }
    let mut groups = m.groups;
    groups.push(GROUP_AUTHENTICATED.to_string());
    Ok(Identity {
        username: m.username,
        uid: m.uid,
        groups,
        extra: m.extra,
    })
}

/// Characters kept as-is in `X-Remote-Extra-<key>`: RFC 3986 unreserved. Everything else
/// (notably `/`) is percent-encoded, as kube-apiserver's front-proxy expects.
const EXTRA_KEY_SET: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Identity headers in the configured convention, built once per verified token.
pub fn identity_headers(
    id: &Identity,
    mode: IdentityMode,
) -> Result<Vec<(HeaderName, HeaderValue)>, Reject> {
    let (user, uid, group, extra_prefix) = match mode {
        IdentityMode::None => return Ok(Vec::new()),
        IdentityMode::Remote => (
            "x-remote-user",
            "x-remote-uid",
            "x-remote-group",
            "x-remote-extra-",
        ),
        IdentityMode::Impersonate => (
            "impersonate-user",
            "impersonate-uid",
            "impersonate-group",
            "impersonate-extra-",
        ),
    };
    // Values come from a verified token, but still must be legal header values (no CR/LF/NUL).
    // The constant groups cost no allocation (every cached principal holds these headers).
    let value = |s: &str| match s {
        GROUP_AUTHENTICATED => Ok(HeaderValue::from_static(GROUP_AUTHENTICATED)),
        GROUP_SERVICEACCOUNTS => Ok(HeaderValue::from_static(GROUP_SERVICEACCOUNTS)),
        _ => HeaderValue::from_str(s).map_err(|_| Reject::InvalidClaims),
    };
    let mut out = Vec::with_capacity(2 + id.groups.len() + id.extra.len());
    out.push((HeaderName::from_static(user), value(&id.username)?));
    if !id.uid.is_empty() {
        out.push((HeaderName::from_static(uid), value(&id.uid)?));
    }
    for g in &id.groups {
        out.push((HeaderName::from_static(group), value(g)?));
    }
    for (k, vs) in &id.extra {
        let name = match known_extra_header(mode, k) {
            Some(n) => n,
            None => {
                let name = format!("{extra_prefix}{}", utf8_percent_encode(k, EXTRA_KEY_SET));
                HeaderName::from_bytes(name.as_bytes()).map_err(|_| Reject::InvalidClaims)?
            }
        };
        for v in vs {
            out.push((name.clone(), value(v)?));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::extra::KNOWN_EXTRA_HEADERS;
    use super::*;

    fn claims(json: &str) -> Claims {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn kubernetes_identity_matches_kube_apiserver() {
        let c = claims(
            r#"{"sub":"system:serviceaccount:shop:cart","jti":"abc",
            "kubernetes.io":{"namespace":"shop","serviceaccount":{"name":"cart","uid":"sa-uid"},
            "pod":{"name":"cart-1","uid":"pod-uid"},"node":{"name":"n1","uid":"node-uid"}}}"#,
        );
        let id = kubernetes_identity(&c, "shop", "cart");
        assert_eq!(id.username, "system:serviceaccount:shop:cart");
        assert_eq!(id.uid, "sa-uid");
        assert_eq!(
            id.groups,
            [
                "system:serviceaccounts",
                "system:serviceaccounts:shop",
                "system:authenticated"
            ]
        );
        let keys: Vec<&str> = id.extra.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, [EXTRA_NODE_NAME, EXTRA_NODE_UID]);
        let ids = TokenIds::from_claims(&c).unwrap();
        let extra = ids.extras();
        let extra: Vec<(&str, &str)> = extra
            .iter()
            .map(|(k, v)| (k.as_str(), v[0].as_str()))
            .collect();
        assert_eq!(
            extra,
            [
                (EXTRA_POD_NAME, "cart-1"),
                (EXTRA_POD_UID, "pod-uid"),
                (EXTRA_CREDENTIAL_ID, "JTI=abc")
            ]
        );
    }

    #[test]
    fn static_extra_header_names_match_the_encoding() {
        for mode in [IdentityMode::Remote, IdentityMode::Impersonate] {
            let prefix = match mode {
                IdentityMode::Remote => "x-remote-extra-",
                _ => "impersonate-extra-",
            };
            for (key, _, _) in KNOWN_EXTRA_HEADERS {
                let dynamic = format!("{prefix}{}", utf8_percent_encode(key, EXTRA_KEY_SET));
                let dynamic = HeaderName::from_bytes(dynamic.as_bytes()).unwrap();
                assert_eq!(known_extra_header(mode, key), Some(dynamic), "{key}");
            }
        }
        assert_eq!(known_extra_header(IdentityMode::None, EXTRA_POD_NAME), None);
        assert_eq!(known_extra_header(IdentityMode::Remote, "scopes"), None);
    }

    #[test]
    fn remote_headers_percent_encode_extra_keys() {
        let c = claims(
            r#"{"sub":"system:serviceaccount:a:b","kubernetes.io":{"namespace":"a",
            "serviceaccount":{"name":"b","uid":"u"},"node":{"name":"n","uid":"nu"}}}"#,
        );
        let h = identity_headers(&kubernetes_identity(&c, "a", "b"), IdentityMode::Remote).unwrap();
        let names: Vec<&str> = h.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "x-remote-user",
                "x-remote-uid",
                "x-remote-group",
                "x-remote-group",
                "x-remote-group",
                "x-remote-extra-authentication.kubernetes.io%2Fnode-name",
                "x-remote-extra-authentication.kubernetes.io%2Fnode-uid"
            ]
            .map(|s| s.to_ascii_lowercase())
        );
        let imp = identity_headers(
            &kubernetes_identity(&c, "a", "b"),
            IdentityMode::Impersonate,
        )
        .unwrap();
        assert_eq!(imp[0].0.as_str(), "impersonate-user");
        assert!(
            identity_headers(&kubernetes_identity(&c, "a", "b"), IdentityMode::None)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn oidc_identity_adds_authenticated_and_refuses_system_names() {
        let mapped = |username: &str, groups: &[&str]| Mapped {
            username: username.into(),
            uid: "123".into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            extra: vec![],
        };
        let id = oidc_identity(mapped("oidc:a@b", &["oidc:dev", "oidc:ops"])).unwrap();
        assert_eq!(id.username, "oidc:a@b");
        assert_eq!(id.uid, "123");
        assert_eq!(id.groups, ["oidc:dev", "oidc:ops", "system:authenticated"]);
        assert!(oidc_identity(mapped("system:admin", &[])).is_err());
        assert!(oidc_identity(mapped("x", &["system:masters"])).is_err());
    }

    #[test]
    fn header_injection_is_refused() {
        let id = Identity {
            username: "a\r\nx-remote-group: system:masters".into(),
            uid: String::new(),
            groups: vec![],
            extra: vec![],
        };
        assert_eq!(
            identity_headers(&id, IdentityMode::Remote),
            Err(Reject::InvalidClaims)
        );
    }
}

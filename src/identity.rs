//! Who the caller is (SPEC section 5), and the upstream headers that say so (section 6),
//! built once per verified token so a cache hit only clones `Bytes`-backed values.

use http::{HeaderMap, HeaderName, HeaderValue};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::config::{ClaimMappings, IdentityMode};
use crate::verify::{Claims, Reject};

pub const GROUP_AUTHENTICATED: &str = "system:authenticated";
pub const GROUP_SERVICEACCOUNTS: &str = "system:serviceaccounts";
pub const EXTRA_POD_NAME: &str = "authentication.kubernetes.io/pod-name";
pub const EXTRA_POD_UID: &str = "authentication.kubernetes.io/pod-uid";
pub const EXTRA_NODE_NAME: &str = "authentication.kubernetes.io/node-name";
pub const EXTRA_NODE_UID: &str = "authentication.kubernetes.io/node-uid";
pub const EXTRA_CREDENTIAL_ID: &str = "authentication.kubernetes.io/credential-id";

/// A Kubernetes `UserInfo`: what kube-apiserver would say about the same token. In a
/// [`Principal`] the per-token extras (pod name and uid, `credential-id`) are left out: they
/// are in [`TokenIds`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identity {
    pub username: String,
    pub uid: String,
    pub groups: Vec<String>,
    /// Sorted by key; each key once.
    pub extra: Vec<(String, Vec<String>)>,
}

/// The per-token part of a Kubernetes identity: `credential-id` (`JTI=<jti>`) and the pod the
/// token is bound to. Everything else about the caller is shared in an interned [`Principal`].
///
/// Every cache entry holds one, and in a cluster every pod holds a token of its own, so this is
/// packed into 48 bytes. kube-apiserver's jtis and pod uids are canonical UUIDs: 16 bytes each,
/// no heap. The pod name, and any id that is not a canonical UUID, share one small heap string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenIds {
    jti: [u8; 16],
    pod_uid: [u8; 16],
    /// `None`: the jti is the UUID in `jti`, and there is no pod (a token without pod binding:
    /// no heap). `Some("")`: no jti, no pod (an empty `Box<str>` does not allocate). Otherwise
    /// a layout byte (the `TEXT_*`/`*_UUID` bits) and then the text parts, separated by NUL:
    /// pod name, jti, pod uid, in that order, each only if its bit is set. The parts are checked
    /// header values, which cannot contain NUL.
    text: Option<Box<str>>,
}

const JTI_UUID: u8 = 1;
const POD_UID_UUID: u8 = 2;
const TEXT_POD_NAME: u8 = 4;
const TEXT_JTI: u8 = 8;
const TEXT_POD_UID: u8 = 16;
/// The order of the text parts in [`TokenIds::text`].
const TEXT_PARTS: [u8; 3] = [TEXT_POD_NAME, TEXT_JTI, TEXT_POD_UID];

/// One id as stored: a UUID to spell out, or text.
enum Id<'a> {
    Uuid(&'a [u8; 16]),
    Text(&'a str),
}

impl TokenIds {
    /// No per-token identity (OIDC and legacy tokens).
    pub fn none() -> TokenIds {
        TokenIds {
            jti: [0; 16],
            pod_uid: [0; 16],
            text: Some("".into()),
        }
    }

    /// From a Kubernetes token's claims (`jti`, `kubernetes.io.pod`). Empty values count as
    /// absent. `Err` if a value cannot be an HTTP header value.
    pub fn from_claims(claims: &Claims) -> Result<TokenIds, Reject> {
        fn non_empty(s: Option<&String>) -> Option<&str> {
            s.map(String::as_str).filter(|s| !s.is_empty())
        }
        let pod = claims.kube.as_ref().and_then(|k| k.pod.as_ref());
        let jti = non_empty(claims.jti.as_ref());
        let pod_name = non_empty(pod.and_then(|p| p.name.as_ref()));
        let pod_uid = non_empty(pod.and_then(|p| p.uid.as_ref()));
        for s in [jti, pod_name, pod_uid].into_iter().flatten() {
            if HeaderValue::from_str(s).is_err() {
                return Err(Reject::InvalidClaims);
            }
        }
        let mut ids = TokenIds {
            jti: [0; 16],
            pod_uid: [0; 16],
            text: None,
        };
        let mut layout = 0;
        let mut texts: [Option<&str>; 3] = [None; 3];
        if let Some(name) = pod_name {
            layout |= TEXT_POD_NAME;
            texts[0] = Some(name);
        }
        if let Some(j) = jti {
            match parse_uuid(j) {
                Some(u) => {
                    ids.jti = u;
                    layout |= JTI_UUID;
                }
                None => {
                    layout |= TEXT_JTI;
                    texts[1] = Some(j);
                }
            }
        }
        if let Some(uid) = pod_uid {
            match parse_uuid(uid) {
                Some(u) => {
                    ids.pod_uid = u;
                    layout |= POD_UID_UUID;
                }
                None => {
                    layout |= TEXT_POD_UID;
                    texts[2] = Some(uid);
                }
            }
        }
        ids.text = match layout {
            JTI_UUID => None,
            0 => Some("".into()),
            _ => {
                let len = texts.iter().flatten().map(|t| t.len() + 1).sum::<usize>();
                let mut s = String::with_capacity(len);
                s.push(char::from(layout));
                for (i, t) in texts.iter().flatten().enumerate() {
                    if i > 0 {
                        s.push('\0');
                    }
                    s.push_str(t);
                }
                Some(s.into_boxed_str())
            }
        };
        Ok(ids)
    }

    fn layout(&self) -> u8 {
        match &self.text {
            None => JTI_UUID,
            Some(t) => t.as_bytes().first().copied().unwrap_or(0),
        }
    }

    /// The stored text part for `bit` (one of [`TEXT_PARTS`]), if the layout has it.
    fn text_part(&self, bit: u8) -> Option<&str> {
        let layout = self.layout();
        if layout & bit == 0 {
            return None;
        }
        let mut parts = self.text.as_deref()?.get(1..)?.split('\0');
        for b in TEXT_PARTS {
            if layout & b != 0 {
                let part = parts.next()?;
                if b == bit {
                    return Some(part);
                }
            }
        }
        None
    }

    fn jti(&self) -> Option<Id<'_>> {
        if self.layout() & JTI_UUID != 0 {
            return Some(Id::Uuid(&self.jti));
        }
        self.text_part(TEXT_JTI).map(Id::Text)
    }

    fn pod_uid_id(&self) -> Option<Id<'_>> {
        if self.layout() & POD_UID_UUID != 0 {
            return Some(Id::Uuid(&self.pod_uid));
        }
        self.text_part(TEXT_POD_UID).map(Id::Text)
    }

    /// `authentication.kubernetes.io/pod-name`.
    pub fn pod_name(&self) -> Option<&str> {
        self.text_part(TEXT_POD_NAME)
    }

    /// `authentication.kubernetes.io/pod-uid`.
    pub fn pod_uid(&self) -> Option<String> {
        Some(match self.pod_uid_id()? {
            Id::Uuid(u) => uuid_text(u, b"").into(),
            Id::Text(t) => t.to_string(),
        })
    }

    /// `authentication.kubernetes.io/credential-id`: `JTI=<jti>`, as kube-apiserver reports it.
    pub fn credential_id(&self) -> Option<String> {
        Some(match self.jti()? {
            Id::Uuid(u) => uuid_text(u, b"JTI=").into(),
            Id::Text(t) => format!("JTI={t}"),
        })
    }

    /// The per-token extras (pod name and uid, credential id) as `UserInfo.extra` entries.
    pub fn extras(&self) -> Vec<(String, Vec<String>)> {
        let pairs = [
            (EXTRA_POD_NAME, self.pod_name().map(str::to_string)),
            (EXTRA_POD_UID, self.pod_uid()),
            (EXTRA_CREDENTIAL_ID, self.credential_id()),
        ];
        pairs
            .into_iter()
            .filter_map(|(k, v)| Some((k.to_string(), vec![v?])))
            .collect()
    }

    /// The per-token identity header values (pod name, pod uid, credential id). Built per
    /// client connection and token (see `auth::TokenMemo`), not stored in every cache entry.
    pub fn header_values(&self) -> TokenHeaderValues {
        // Every part was checked as a header value when the token was accepted; a failure
        // here could only drop the header.
        let value = |id: Id<'_>, prefix: &[u8]| match id {
            Id::Uuid(u) => HeaderValue::from_bytes(uuid_text(u, prefix).as_bytes()).ok(),
            Id::Text(t) => HeaderValue::from_bytes(&[prefix, t.as_bytes()].concat()).ok(),
        };
        TokenHeaderValues([
            self.pod_name().and_then(|n| HeaderValue::from_str(n).ok()),
            self.pod_uid_id().and_then(|id| value(id, b"")),
            self.jti().and_then(|id| value(id, b"JTI=")),
        ])
    }
}

/// [`TokenIds`] as header values: pod name, pod uid, credential id, each if the token has it.
#[derive(Debug, Clone, Default)]
pub struct TokenHeaderValues([Option<HeaderValue>; 3]);

impl TokenHeaderValues {
    /// Append them under the names of the configured convention.
    pub fn append_to(self, names: &TokenHeaderNames, headers: &mut HeaderMap) {
        let Some(names) = &names.0 else {
            return;
        };
        for (name, value) in names.iter().zip(self.0) {
            if let Some(v) = value {
                headers.append(name.clone(), v);
            }
        }
    }
}

/// The header names of the per-token extras (pod name, pod uid, credential id) in one
/// convention: built once, so forwarding a request clones static names.
#[derive(Debug, Clone)]
pub struct TokenHeaderNames(Option<[HeaderName; 3]>);

impl TokenHeaderNames {
    pub fn new(mode: IdentityMode) -> TokenHeaderNames {
        let names = [EXTRA_POD_NAME, EXTRA_POD_UID, EXTRA_CREDENTIAL_ID]
            .map(|key| known_extra_header(mode, key));
        TokenHeaderNames(match names {
            [Some(a), Some(b), Some(c)] => Some([a, b, c]),
            _ => None,
        })
    }
}

/// A UUID spelled out canonically after `prefix`, on the stack (no allocation).
struct UuidText {
    buf: [u8; 40],
    len: usize,
}

impl UuidText {
    fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl From<UuidText> for String {
    fn from(t: UuidText) -> String {
        String::from_utf8_lossy(t.as_bytes()).into_owned()
    }
}

fn uuid_text(u: &[u8; 16], prefix: &[u8]) -> UuidText {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut buf = [0u8; 40];
    buf[..prefix.len()].copy_from_slice(prefix);
    let mut at = prefix.len();
    for (i, b) in u.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            buf[at] = b'-';
            at += 1;
        }
        buf[at] = HEX[usize::from(b >> 4)];
        buf[at + 1] = HEX[usize::from(b & 15)];
        at += 2;
    }
    UuidText { buf, len: at }
}

/// A canonical (lowercase, hyphenated) UUID; `None` for any other spelling, so that
/// formatting it back gives exactly the original text.
fn parse_uuid(s: &str) -> Option<[u8; 16]> {
    let b = s.as_bytes();
    if b.len() != 36 {
        return None;
    }
    let mut out = [0u8; 16];
    let mut nibbles = 0;
    for (i, &c) in b.iter().enumerate() {
        if matches!(i, 8 | 13 | 18 | 23) {
            if c != b'-' {
                return None;
            }
            continue;
        }
        let v = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => return None,
        };
        out[nibbles / 2] |= if nibbles % 2 == 0 { v << 4 } else { v };
        nibbles += 1;
    }
    Some(out)
}

/// What every cached token of one caller shares: the issuer, the identity without its
/// per-token extras (see [`TokenIds`]), the audiences it was accepted for, and the identity
/// headers built once. Interned, so all the tokens of one service account (on one node) cost
/// one copy, whichever pods hold them.
#[derive(Debug)]
pub struct Principal {
    /// Index into the authenticator's issuers.
    pub issuer: usize,
    /// A legacy Secret-based token (no pod binding, no credential id).
    pub legacy: bool,
    pub identity: Identity,
    pub audiences: Vec<String>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

/// Header names of the Kubernetes extras, percent-encoded as the dynamic path would make them
/// (a unit test checks they agree): static, so a cached principal's headers do not each carry
/// a heap copy of a 60-byte name. (remote, impersonate) per key.
const KNOWN_EXTRA_HEADERS: [(&str, &str, &str); 5] = [
    (
        EXTRA_POD_NAME,
        "x-remote-extra-authentication.kubernetes.io%2fpod-name",
        "impersonate-extra-authentication.kubernetes.io%2fpod-name",
    ),
    (
        EXTRA_POD_UID,
        "x-remote-extra-authentication.kubernetes.io%2fpod-uid",
        "impersonate-extra-authentication.kubernetes.io%2fpod-uid",
    ),
    (
        EXTRA_NODE_NAME,
        "x-remote-extra-authentication.kubernetes.io%2fnode-name",
        "impersonate-extra-authentication.kubernetes.io%2fnode-name",
    ),
    (
        EXTRA_NODE_UID,
        "x-remote-extra-authentication.kubernetes.io%2fnode-uid",
        "impersonate-extra-authentication.kubernetes.io%2fnode-uid",
    ),
    (
        EXTRA_CREDENTIAL_ID,
        "x-remote-extra-authentication.kubernetes.io%2fcredential-id",
        "impersonate-extra-authentication.kubernetes.io%2fcredential-id",
    ),
];

fn known_extra_header(mode: IdentityMode, key: &str) -> Option<HeaderName> {
    let (_, remote, impersonate) = KNOWN_EXTRA_HEADERS.iter().find(|(k, _, _)| *k == key)?;
    match mode {
        IdentityMode::None => None,
        IdentityMode::Remote => Some(HeaderName::from_static(remote)),
        IdentityMode::Impersonate => Some(HeaderName::from_static(impersonate)),
    }
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

/// OIDC identity from the issuer's claim mappings. Usernames and groups in the reserved
/// `system:` namespace are refused (`invalid_claims`): an OIDC issuer must not be able to mint
/// a service-account or `system:masters` identity. Use a prefix to namespace them.
pub fn oidc_identity(payload: &[u8], m: &ClaimMappings) -> Result<Identity, Reject> {
    let claims: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(payload).map_err(|_| Reject::Malformed)?;
    let username = match claims.get(&m.username) {
        Some(serde_json::Value::String(s)) if !s.is_empty() => {
            format!("{}{}", m.username_prefix, s)
        }
        _ => return Err(Reject::InvalidClaims),
    };
    if username.starts_with("system:") {
        return Err(Reject::InvalidClaims);
    }
    let mut groups = Vec::new();
    if let Some(g) = &m.groups {
        match claims.get(g) {
            None | Some(serde_json::Value::Null) => {}
            Some(serde_json::Value::String(s)) => groups.push(format!("{}{}", m.groups_prefix, s)),
            Some(serde_json::Value::Array(items)) => {
                for item in items {
                    match item {
                        serde_json::Value::String(s) => {
                            groups.push(format!("{}{}", m.groups_prefix, s))
                        }
                        _ => return Err(Reject::InvalidClaims),
                    }
                }
            }
            Some(_) => return Err(Reject::InvalidClaims),
        }
    }
    if groups.iter().any(|g| g.starts_with("system:")) {
        return Err(Reject::InvalidClaims);
    }
    groups.push(GROUP_AUTHENTICATED.to_string());
    let uid = match &m.uid {
        None => String::new(),
        Some(c) => match claims.get(c) {
            Some(serde_json::Value::String(s)) => s.clone(),
            None => String::new(),
            Some(_) => return Err(Reject::InvalidClaims),
        },
    };
    Ok(Identity {
        username,
        uid,
        groups,
        extra: Vec::new(),
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

    fn token_ids(jti: Option<&str>, pod: Option<(&str, &str)>) -> Result<TokenIds, Reject> {
        let mut c = serde_json::json!({});
        if let Some(j) = jti {
            c["jti"] = j.into();
        }
        if let Some((name, uid)) = pod {
            c["kubernetes.io"] = serde_json::json!({"pod": {"name": name, "uid": uid}});
        }
        TokenIds::from_claims(&serde_json::from_value(c).unwrap())
    }

    /// What the forwarded request carries: (name, value) of the per-token headers.
    fn forwarded(ids: &TokenIds, mode: IdentityMode) -> Vec<(String, String)> {
        let mut h = HeaderMap::new();
        ids.header_values()
            .append_to(&TokenHeaderNames::new(mode), &mut h);
        h.iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_string()))
            .collect()
    }

    #[test]
    fn token_ids_round_trip_exactly() {
        let uuid = "0f8b2c4e-91aa-4d3b-8c2f-7e6d5c4b3a29";
        let other = "7cb5fabf-98d9-47fc-8f3b-94d378b17b9d";
        let spellings = [
            uuid,
            "0F8B2C4E-91AA-4D3B-8C2F-7E6D5C4B3A29", // upper case: kept as text
            "0f8b2c4e91aa4d3b8c2f7e6d5c4b3a29",
            "0f8b2c4e-91aa-4d3b-8c2f-7e6d5c4b3a2",
            "0f8b2c4e-91aa-4d3b-8c2f_7e6d5c4b3a29",
            "not-a-uuid",
            "",
        ];
        let pods = [
            None,
            Some(("cart-7d9f8c6b5-x2k4q", other)),
            Some(("p", "uid-as-text")),
            Some(("", other)),
            Some(("name-only", "")),
        ];
        let remote = "x-remote-extra-authentication.kubernetes.io%2f";
        for jti in spellings.iter().map(|j| Some(*j)).chain([None]) {
            for pod in pods {
                let ids = token_ids(jti, pod).unwrap();
                let jti = jti.filter(|j| !j.is_empty());
                let name = pod.map(|p| p.0).filter(|n| !n.is_empty());
                let uid = pod.map(|p| p.1).filter(|u| !u.is_empty());
                let want_cid = jti.map(|j| format!("JTI={j}"));
                assert_eq!(ids.credential_id(), want_cid, "{jti:?} {pod:?}");
                assert_eq!(ids.pod_name(), name, "{jti:?} {pod:?}");
                assert_eq!(ids.pod_uid().as_deref(), uid, "{jti:?} {pod:?}");
                let mut want = Vec::new();
                let mut want_extras = Vec::new();
                for (key, v) in [
                    ("pod-name", name.map(str::to_string)),
                    ("pod-uid", uid.map(str::to_string)),
                    ("credential-id", want_cid.clone()),
                ] {
                    if let Some(v) = v {
                        want.push((format!("{remote}{key}"), v.clone()));
                        want_extras.push((format!("authentication.kubernetes.io/{key}"), vec![v]));
                    }
                }
                assert_eq!(forwarded(&ids, IdentityMode::Remote), want);
                assert_eq!(ids.extras(), want_extras);
                assert!(forwarded(&ids, IdentityMode::None).is_empty());
            }
        }
        // The compact shapes: no heap for a token without pod binding.
        assert_eq!(token_ids(Some(uuid), None).unwrap().text, None);
        assert_eq!(token_ids(None, None).unwrap(), TokenIds::none());
        assert_eq!(
            token_ids(Some("bad\nvalue"), None),
            Err(Reject::InvalidClaims)
        );
        assert_eq!(
            token_ids(None, Some(("a\0b", other))),
            Err(Reject::InvalidClaims)
        );
        assert_eq!(
            token_ids(None, Some(("p", "x\r\ny: z"))),
            Err(Reject::InvalidClaims)
        );
        let imp = forwarded(
            &token_ids(Some(uuid), Some(("p", other))).unwrap(),
            IdentityMode::Impersonate,
        );
        assert_eq!(
            imp[2].0,
            "impersonate-extra-authentication.kubernetes.io%2fcredential-id"
        );
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
    fn oidc_mapping_prefixes_and_refuses_system_names() {
        let m = ClaimMappings {
            username: "email".into(),
            username_prefix: "oidc:".into(),
            groups: Some("groups".into()),
            groups_prefix: "oidc:".into(),
            uid: Some("sub".into()),
        };
        let id =
            oidc_identity(br#"{"sub":"123","email":"a@b","groups":["dev","ops"]}"#, &m).unwrap();
        assert_eq!(id.username, "oidc:a@b");
        assert_eq!(id.uid, "123");
        assert_eq!(id.groups, ["oidc:dev", "oidc:ops", "system:authenticated"]);
        let bare = ClaimMappings {
            username_prefix: String::new(),
            groups_prefix: String::new(),
            ..m
        };
        assert_eq!(
            oidc_identity(br#"{"sub":"1","email":"system:admin"}"#, &bare),
            Err(Reject::InvalidClaims)
        );
        assert_eq!(
            oidc_identity(
                br#"{"sub":"1","email":"x","groups":["system:masters"]}"#,
                &bare
            ),
            Err(Reject::InvalidClaims)
        );
        assert_eq!(
            oidc_identity(br#"{"sub":"1"}"#, &bare),
            Err(Reject::InvalidClaims)
        );
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

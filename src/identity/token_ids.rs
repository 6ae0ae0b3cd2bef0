//! The per-token part of a Kubernetes identity (pod name and uid, `credential-id`), packed for
//! the verification cache, and its upstream headers.

use std::borrow::Cow;

use http::{HeaderMap, HeaderName, HeaderValue};

use super::extra::{
    known_extra_grpc_header, known_extra_header, EXTRA_CREDENTIAL_ID, EXTRA_POD_NAME, EXTRA_POD_UID,
};
use crate::config::IdentityMode;
use crate::verify::{Claims, Reject};

/// The per-token part of a Kubernetes identity: `credential-id` (`JTI=<jti>`) and the pod the
/// token is bound to. Everything else about the caller is shared in an interned principal
/// (`auth::Principal`).
///
/// Every cache entry holds one, and in a cluster every pod holds a token of its own, so this is
/// packed into 48 bytes. kube-apiserver's jtis and pod uids are canonical UUIDs: 16 bytes each,
/// no heap. The pod name, and any id that is not a canonical UUID, share one small heap buffer;
/// a pod name in the DNS alphabet (as Kubernetes requires) is stored at 6 bits a character.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenIds {
    jti: [u8; 16],
    pod_uid: [u8; 16],
    /// `None`: the jti is the UUID in `jti`, and there is no pod (a token without pod binding:
    /// no heap). `Some([])`: no jti, no pod (an empty box does not allocate). Otherwise a layout
    /// byte (the `TEXT_*`/`*_UUID`/`POD_NAME_PACKED` bits); then the text parts, each followed
    /// by a NUL: pod name, jti, pod uid, in that order, each only if its bit is set (the parts
    /// are checked header values, which cannot contain NUL); then, with `POD_NAME_PACKED`, the
    /// pod name packed by [`pack_dns_name`], to the end.
    text: Option<Box<[u8]>>,
}

const JTI_UUID: u8 = 1;
const POD_UID_UUID: u8 = 2;
const TEXT_POD_NAME: u8 = 4;
const TEXT_JTI: u8 = 8;
const TEXT_POD_UID: u8 = 16;
/// The pod name is stored packed after the text parts (instead of as `TEXT_POD_NAME`).
const POD_NAME_PACKED: u8 = 32;
/// The order of the text parts in [`TokenIds::text`].
const TEXT_PARTS: [u8; 3] = [TEXT_POD_NAME, TEXT_JTI, TEXT_POD_UID];

/// The text parts of a [`TokenIds`], in [`TEXT_PARTS`] order.
type TextParts<'a> = [Option<&'a [u8]>; 3];

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
            text: Some(Box::default()),
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
        // The text parts, in `TEXT_PARTS` order. A pod name in the DNS alphabet is packed.
        let pod_name_packed_len = pod_name.and_then(packed_len);
        let packed = pod_name.filter(|_| pod_name_packed_len.is_some());
        let mut texts: [Option<&str>; 3] = [pod_name.filter(|_| packed.is_none()), None, None];
        let mut layout = match (pod_name, packed) {
            (_, Some(_)) => POD_NAME_PACKED,
            (Some(_), None) => TEXT_POD_NAME,
            (None, None) => 0,
        };
        // A canonical UUID goes in its 16-byte slot; any other spelling, in the text.
        let [_, jti_text, pod_uid_text] = &mut texts;
        for (id, slot, uuid_bit, text_bit, text) in [
            (jti, &mut ids.jti, JTI_UUID, TEXT_JTI, jti_text),
            (
                pod_uid,
                &mut ids.pod_uid,
                POD_UID_UUID,
                TEXT_POD_UID,
                pod_uid_text,
            ),
        ] {
            let Some(id) = id else { continue };
            match parse_uuid(id) {
                Some(u) => {
                    *slot = u;
                    layout |= uuid_bit;
                }
                None => {
                    *text = Some(id);
                    layout |= text_bit;
                }
            }
        }
        ids.text = match layout {
            JTI_UUID => None,
            0 => Some(Box::default()),
            _ => {
                let len = 1 + texts.iter().flatten().map(|t| t.len() + 1).sum::<usize>();
                let mut b = Vec::with_capacity(len + pod_name_packed_len.unwrap_or(0));
                b.push(layout);
                for t in texts.iter().flatten() {
                    b.extend_from_slice(t.as_bytes());
                    b.push(0);
                }
                if let Some(name) = packed {
                    pack_dns_name(name, &mut b);
                }
                Some(b.into_boxed_slice())
            }
        };
        Ok(ids)
    }

    fn layout(&self) -> u8 {
        match &self.text {
            None => JTI_UUID,
            Some(t) => t.first().copied().unwrap_or(0),
        }
    }

    /// The stored text part for `bit` (one of [`TEXT_PARTS`]), if the layout has it.
    fn text_part(&self, bit: u8) -> Option<&str> {
        let (parts, _) = self.split_text()?;
        let i = TEXT_PARTS.iter().position(|&b| b == bit)?;
        std::str::from_utf8(parts[i]?).ok()
    }

    /// The packed pod name: what follows the text parts.
    fn packed_pod_name(&self) -> Option<&[u8]> {
        let (_, rest) = self.split_text()?;
        (self.layout() & POD_NAME_PACKED != 0).then_some(rest)
    }

    /// The text parts in [`TEXT_PARTS`] order (each if the layout has it), and what follows.
    fn split_text(&self) -> Option<(TextParts<'_>, &[u8])> {
        let layout = self.layout();
        let mut rest = self.text.as_deref()?.get(1..)?;
        let mut parts = [None; 3];
        for (part, b) in parts.iter_mut().zip(TEXT_PARTS) {
            if layout & b != 0 {
                let end = rest.iter().position(|&c| c == 0)?;
                *part = Some(&rest[..end]);
                rest = &rest[end + 1..];
            }
        }
        Some((parts, rest))
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
    pub fn pod_name(&self) -> Option<Cow<'_, str>> {
        match self.packed_pod_name() {
            Some(p) => unpack_dns_name(p).map(Cow::Owned),
            None => self.text_part(TEXT_POD_NAME).map(Cow::Borrowed),
        }
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
            (EXTRA_POD_NAME, self.pod_name().map(Cow::into_owned)),
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
            self.pod_name().and_then(|n| HeaderValue::from_str(&n).ok()),
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
        Self::with(|key| known_extra_header(mode, key))
    }

    /// The names on gRPC requests (`_` escapes: SPEC section 14).
    pub fn grpc(mode: IdentityMode) -> TokenHeaderNames {
        Self::with(|key| known_extra_grpc_header(mode, key))
    }

    fn with(name: impl Fn(&str) -> Option<HeaderName>) -> TokenHeaderNames {
        let names = [EXTRA_POD_NAME, EXTRA_POD_UID, EXTRA_CREDENTIAL_ID].map(name);
        TokenHeaderNames(match names {
            [Some(a), Some(b), Some(c)] => Some([a, b, c]),
            _ => None,
        })
    }
}

/// The characters of a DNS name (RFC 1123, as Kubernetes requires of pod names), coded 1..=38 in
/// 6 bits. Code 0 never codes a character.
const DNS_ALPHABET: &[u8; 38] = b"abcdefghijklmnopqrstuvwxyz0123456789-.";

/// The code of a character of [`DNS_ALPHABET`] (its inverse).
fn dns_code(c: u8) -> Option<u8> {
    match c {
        b'a'..=b'z' => Some(c - b'a' + 1),
        b'0'..=b'9' => Some(c - b'0' + 27),
        b'-' => Some(37),
        b'.' => Some(38),
        _ => None,
    }
}

/// The bytes [`pack_dns_name`] makes of `name`, or `None` if it cannot pack it: a character
/// not in [`DNS_ALPHABET`], or longer than a DNS subdomain may be (253).
fn packed_len(name: &str) -> Option<usize> {
    (name.len() <= 253 && name.bytes().all(|c| dns_code(c).is_some()))
        .then(|| (name.len() * 6).div_ceil(8))
}

/// Append `name` (for which [`packed_len`] is `Some`) at 6 bits a character, most significant
/// bits first, the last byte padded with zero bits (2, 4 or 6; six make a code 0, which is no
/// character). A 28-character Deployment pod name takes 21 bytes instead of 28.
fn pack_dns_name(name: &str, out: &mut Vec<u8>) {
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in name.bytes() {
        acc = (acc << 6) | u32::from(dns_code(c).unwrap_or(0));
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    if bits > 0 {
        out.push((acc << (8 - bits)) as u8);
    }
}

/// The name [`pack_dns_name`] packed; `None` if `packed` holds a code that is no character.
fn unpack_dns_name(packed: &[u8]) -> Option<String> {
    let mut out = String::with_capacity(packed.len() * 8 / 6);
    let (mut acc, mut bits) = (0u32, 0u32);
    for (i, &b) in packed.iter().enumerate() {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 6 {
            bits -= 6;
            let code = (acc >> bits) & 63;
            acc &= (1 << bits) - 1;
            if code == 0 {
                // Six bits of padding: only at the very end of a name.
                return (i + 1 == packed.len() && acc == 0 && !out.is_empty()).then_some(out);
            }
            let c = DNS_ALPHABET.get(code as usize - 1)?;
            out.push(char::from(*c));
        }
    }
    // What is left is padding: 2 or 4 bits, all zero.
    (acc == 0 && !out.is_empty()).then_some(out)
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn dns_names_pack_to_six_bits_a_character_and_back() {
        // Every character at every position, every length up to 64 (all paddings).
        let all: Vec<u8> = DNS_ALPHABET
            .iter()
            .chain(DNS_ALPHABET.iter().rev())
            .copied()
            .collect();
        for len in 1..=64 {
            for start in 0..all.len() {
                let name: String = all
                    .iter()
                    .cycle()
                    .skip(start)
                    .take(len)
                    .map(|&c| char::from(c))
                    .collect();
                let mut packed = Vec::new();
                pack_dns_name(&name, &mut packed);
                assert_eq!(Some(packed.len()), packed_len(&name), "{name}");
                assert_eq!(packed.len(), (len * 6).div_ceil(8), "{name}");
                assert_eq!(unpack_dns_name(&packed).as_deref(), Some(name.as_str()));
            }
        }
        for outside in ["A", "a_b", "a b", "é", "a/b", "x\0"] {
            assert_eq!(packed_len(outside), None, "{outside:?}");
        }
        // Bytes that are no packing of a name are refused, not misread.
        assert_eq!(unpack_dns_name(&[0]), None); // code 0
        assert_eq!(unpack_dns_name(&[0xff]), None); // code 63
        assert_eq!(unpack_dns_name(&[0x04, 0x01]), None); // "a", then non-zero padding bits
        assert_eq!(unpack_dns_name(&[0x04, 0x00, 0x04]), None); // a code 0 before the end
        assert_eq!(unpack_dns_name(&[]), None);
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
        let long_dns = "a.b-9".repeat(50) + "xyz"; // 253 characters: packed
        let too_long = long_dns.clone() + "q"; // 254: kept as text
        let pods = [
            None,
            Some(("cart-7d9f8c6b5-x2k4q", other)),
            Some(("p", "uid-as-text")),
            Some(("", other)),
            Some(("name-only", "")),
            // Not in the DNS alphabet: kept as text, before the other text parts.
            Some(("Cart_Pod/~1", "uid-as-text")),
            Some(("Cart_Pod", other)),
            Some((long_dns.as_str(), "uid-as-text")),
            Some((too_long.as_str(), other)),
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
                assert_eq!(ids.pod_name().as_deref(), name, "{jti:?} {pod:?}");
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
        // The compact shapes: no heap for a token without pod binding; a Deployment pod's
        // 28-character name in 21 bytes after the layout byte.
        let deployment_pod = token_ids(Some(uuid), Some(("checkout-7d9f8c6b5d-1-123456", other)));
        assert_eq!(deployment_pod.unwrap().text.map(|t| t.len()), Some(22));
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
}

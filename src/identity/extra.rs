//! The Kubernetes `extra` keys of a service-account identity, and their header names.

use http::HeaderName;

use crate::config::IdentityMode;

pub const EXTRA_POD_NAME: &str = "authentication.kubernetes.io/pod-name";
pub const EXTRA_POD_UID: &str = "authentication.kubernetes.io/pod-uid";
pub const EXTRA_NODE_NAME: &str = "authentication.kubernetes.io/node-name";
pub const EXTRA_NODE_UID: &str = "authentication.kubernetes.io/node-uid";
pub const EXTRA_CREDENTIAL_ID: &str = "authentication.kubernetes.io/credential-id";

/// Header names of the Kubernetes extras, percent-encoded as the dynamic path would make them
/// (a unit test checks they agree): static, so a cached principal's headers do not each carry
/// a heap copy of a 60-byte name. (remote, impersonate) per key.
pub(super) const KNOWN_EXTRA_HEADERS: [(&str, &str, &str); 5] = [
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

/// The same names as gRPC metadata keys allow them (`[0-9a-z_.-]`: SPEC section 14), `_`
/// escaping instead of `%`. (remote, impersonate) per key, in [`KNOWN_EXTRA_HEADERS`] order.
pub(super) const KNOWN_EXTRA_GRPC_HEADERS: [(&str, &str); 5] = [
    (
        "x-remote-extra-authentication.kubernetes.io_2fpod-name",
        "impersonate-extra-authentication.kubernetes.io_2fpod-name",
    ),
    (
        "x-remote-extra-authentication.kubernetes.io_2fpod-uid",
        "impersonate-extra-authentication.kubernetes.io_2fpod-uid",
    ),
    (
        "x-remote-extra-authentication.kubernetes.io_2fnode-name",
        "impersonate-extra-authentication.kubernetes.io_2fnode-name",
    ),
    (
        "x-remote-extra-authentication.kubernetes.io_2fnode-uid",
        "impersonate-extra-authentication.kubernetes.io_2fnode-uid",
    ),
    (
        "x-remote-extra-authentication.kubernetes.io_2fcredential-id",
        "impersonate-extra-authentication.kubernetes.io_2fcredential-id",
    ),
];

const EXTRA_PREFIXES: [&str; 2] = ["x-remote-extra-", "impersonate-extra-"];

/// An extra header's name (`x-remote-extra-<percent-encoded key>`, or `impersonate-extra-`)
/// spelled for a gRPC request: the key's bytes outside `[0-9a-z.-]` become `_` and two
/// lowercase hex digits (`/` is `_2f`, `_` itself `_5f`). `None`: not an extra header, or
/// nothing to change. The Kubernetes extras' names are static.
pub fn grpc_header_name(name: &HeaderName) -> Option<HeaderName> {
    let n = name.as_str();
    let prefix = EXTRA_PREFIXES.iter().find(|p| n.starts_with(**p))?;
    let key = &n[prefix.len()..];
    if key
        .bytes()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'.' || c == b'-')
    {
        return None;
    }
    for (i, (_, remote, impersonate)) in KNOWN_EXTRA_HEADERS.iter().enumerate() {
        if n == *remote {
            return Some(HeaderName::from_static(KNOWN_EXTRA_GRPC_HEADERS[i].0));
        }
        if n == *impersonate {
            return Some(HeaderName::from_static(KNOWN_EXTRA_GRPC_HEADERS[i].1));
        }
    }
    HeaderName::from_bytes(escaped(prefix, key).as_bytes()).ok()
}

/// `prefix` and the gRPC spelling of `key` (percent-encoded as in SPEC section 6).
fn escaped(prefix: &str, key: &str) -> String {
    // The key's bytes: undo the percent-encoding, then escape for gRPC.
    let raw: Vec<u8> = percent_encoding::percent_decode_str(key).collect();
    let mut out = String::with_capacity(prefix.len() + raw.len() * 3);
    out.push_str(prefix);
    for c in raw {
        match c {
            b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-' => out.push(char::from(c)),
            // Header names are lowercase already; a key's case is not kept over HTTP.
            b'A'..=b'Z' => out.push(char::from(c.to_ascii_lowercase())),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.push('_');
                out.push(char::from(HEX[usize::from(c >> 4)]));
                out.push(char::from(HEX[usize::from(c & 15)]));
            }
        }
    }
    out
}

pub(super) fn known_extra_grpc_header(mode: IdentityMode, key: &str) -> Option<HeaderName> {
    let i = KNOWN_EXTRA_HEADERS.iter().position(|(k, _, _)| *k == key)?;
    let (remote, impersonate) = KNOWN_EXTRA_GRPC_HEADERS[i];
    match mode {
        IdentityMode::None => None,
        IdentityMode::Remote => Some(HeaderName::from_static(remote)),
        IdentityMode::Impersonate => Some(HeaderName::from_static(impersonate)),
    }
}

pub(super) fn known_extra_header(mode: IdentityMode, key: &str) -> Option<HeaderName> {
    let (_, remote, impersonate) = KNOWN_EXTRA_HEADERS.iter().find(|(k, _, _)| *k == key)?;
    match mode {
        IdentityMode::None => None,
        IdentityMode::Remote => Some(HeaderName::from_static(remote)),
        IdentityMode::Impersonate => Some(HeaderName::from_static(impersonate)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_names_escape_with_underscores_and_agree_with_the_static_ones() {
        let n = |s: &str| HeaderName::from_bytes(s.as_bytes()).unwrap();
        for (i, (_, remote, impersonate)) in KNOWN_EXTRA_HEADERS.iter().enumerate() {
            // The static names are what the general escaping makes of the percent-encoded ones.
            let (grpc_remote, grpc_impersonate) = KNOWN_EXTRA_GRPC_HEADERS[i];
            let general = |prefix: &str, name: &str| escaped(prefix, &name[prefix.len()..]);
            assert_eq!(general("x-remote-extra-", remote), grpc_remote);
            assert_eq!(general("impersonate-extra-", impersonate), grpc_impersonate);
            assert_eq!(grpc_header_name(&n(remote)).unwrap().as_str(), grpc_remote);
            assert_eq!(
                grpc_header_name(&n(impersonate)).unwrap().as_str(),
                grpc_impersonate
            );
            for name in [grpc_remote, grpc_impersonate] {
                assert!(name
                    .bytes()
                    .all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'z' | b'_' | b'.' | b'-')));
            }
        }
        let cases = [
            ("x-remote-extra-scopes", None),
            (
                "x-remote-extra-example.org%2fteam_id",
                Some("x-remote-extra-example.org_2fteam_5fid"),
            ),
            (
                "impersonate-extra-a~b%20c",
                Some("impersonate-extra-a_7eb_20c"),
            ),
            ("x-remote-extra-caf%c3%a9", Some("x-remote-extra-caf_c3_a9")),
            ("x-remote-user", None),
            ("content-type", None),
        ];
        for (from, to) in cases {
            assert_eq!(
                grpc_header_name(&n(from)).as_ref().map(HeaderName::as_str),
                to,
                "{from}"
            );
        }
    }
}

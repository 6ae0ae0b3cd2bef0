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

pub(super) fn known_extra_header(mode: IdentityMode, key: &str) -> Option<HeaderName> {
    let (_, remote, impersonate) = KNOWN_EXTRA_HEADERS.iter().find(|(k, _, _)| *k == key)?;
    match mode {
        IdentityMode::None => None,
        IdentityMode::Remote => Some(HeaderName::from_static(remote)),
        IdentityMode::Impersonate => Some(HeaderName::from_static(impersonate)),
    }
}

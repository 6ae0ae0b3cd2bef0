//! A token string through every verification step the request path runs on it: `parse`, the
//! time, audience and claim rules, identity and its headers, and the signature against a fixed
//! key set (`fixtures/jwks.json`, the keys that signed `seeds/token/`).
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use tokenreview_proxy::config::{ClaimMappings, IdentityMode};
use tokenreview_proxy::identity::{self, TokenIds};
use tokenreview_proxy::keys::{parse_jwks, Alg, KeySet};
use tokenreview_proxy::verify::{self, Reject, TimePolicy};

static KEYS: LazyLock<KeySet> = LazyLock::new(|| {
    let jwks = include_bytes!("../fixtures/jwks.json");
    KeySet::new(
        parse_jwks(jwks, &Alg::ALL, None)
            .expect("fixture JWKS")
            .keys,
    )
});

static MAPPINGS: LazyLock<ClaimMappings> = LazyLock::new(|| ClaimMappings {
    username: "sub".into(),
    username_prefix: "oidc:".into(),
    groups: Some("groups".into()),
    groups_prefix: "oidc:".into(),
    uid: Some("jti".into()),
});

const MAX_LEN: usize = 16384;
const POLICY: TimePolicy = TimePolicy {
    clock_skew: 60,
    max_lifetime: 3600,
};

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    let t = match verify::parse(token, MAX_LEN) {
        Ok(t) => t,
        Err(r) => {
            assert!(token.len() <= MAX_LEN || r == Reject::TooLarge);
            return;
        }
    };
    assert!(token.as_bytes().starts_with(t.signing_input));

    // Times at a fixed clock, and at the token's own `iat` (where the seeds are valid).
    let _ = verify::check_times(&t.claims, 1_800_000_000, POLICY, true);
    let iat = t.claims.iat.as_ref().and_then(|v| v.as_f64());
    if let Some(iat) = iat {
        let _ = verify::check_times(&t.claims, iat as i64, POLICY, false);
    }
    if let Ok(auds) = verify::audience_intersection(&t.claims, &["fuzz-aud".into()]) {
        assert!(!auds.is_empty());
    }

    // Identity and the headers built from it: a claim that cannot be a header value is a
    // rejection, never a malformed header.
    let identity = match verify::check_kubernetes_claims(&t.claims) {
        Ok((ns, name)) => Some(identity::kubernetes_identity(&t.claims, ns, name)),
        Err(_) => verify::check_legacy_claims(&t.claims)
            .ok()
            .map(|(ns, name)| identity::legacy_identity(&t.claims, ns, name)),
    };
    let oidc = identity::oidc_identity(&t.payload, &MAPPINGS).ok();
    for id in identity.iter().chain(oidc.iter()) {
        for mode in [IdentityMode::Remote, IdentityMode::Impersonate] {
            if let Ok(headers) = identity::identity_headers(id, mode) {
                assert!(headers.len() >= 1 + id.groups.len());
            }
        }
    }
    if let Ok(ids) = TokenIds::from_claims(&t.claims) {
        let _ = ids.extras();
        let _ = ids.header_values();
    }

    match verify::verify_signature(&t, &KEYS) {
        Ok(key) => {
            assert_eq!(key.key_type, t.alg.key_type());
            assert!(key.verify(t.alg, t.signing_input, &t.signature));
        }
        Err(r) => assert!(
            matches!(
                r,
                Reject::UnknownKey | Reject::BadSignature | Reject::UnsupportedAlgorithm
            ),
            "{r}"
        ),
    }
});

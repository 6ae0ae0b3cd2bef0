//! A token string through every verification step the request path runs on it: `parse`, the
//! time, audience and claim rules, identity and its headers, and the signature against a fixed
//! key set (`fixtures/jwks.json`, the keys that signed `seeds/token/`).
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use tokenreview_proxy::claim_rules::{ClaimRuleSpec, ClaimRules, MappingSpec, RulesSpec};
use tokenreview_proxy::config::IdentityMode;
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

/// OIDC mappings as an issuer states them: by claim name, and by CEL with a claim rule.
static RULES: LazyLock<[ClaimRules; 2]> = LazyLock::new(|| {
    let claim = |name: &str, prefix: Option<&str>| MappingSpec {
        claim: Some(name.into()),
        prefix: prefix.map(Into::into),
        expression: None,
    };
    let expression = |e: &str| MappingSpec {
        expression: Some(e.into()),
        ..MappingSpec::default()
    };
    let by_name = RulesSpec {
        username: claim("sub", Some("oidc:")),
        groups: claim("groups", Some("oidc:")),
        uid: claim("jti", None),
        ..RulesSpec::default()
    };
    let by_cel = RulesSpec {
        username: expression("'oidc:' + claims.sub"),
        groups: expression("claims.groups"),
        uid: expression("string(claims.iat)"),
        claim_validation_rules: vec![ClaimRuleSpec {
            expression: Some("claims.exp - claims.iat <= 86400".into()),
            message: Some("lifetime".into()),
            ..ClaimRuleSpec::default()
        }],
        ..RulesSpec::default()
    };
    [by_name, by_cel].map(|spec| ClaimRules::compile(spec).expect("fuzz claim rules"))
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
    let oidc: Vec<_> = RULES
        .iter()
        .filter_map(|rules| rules.apply(&t.payload, None).ok())
        .filter_map(|mapped| identity::oidc_identity(mapped).ok())
        .collect();
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

//! Known JWT attacks and odd encodings, each signed with a real key and sent through the same
//! `authenticate` the proxy and TokenReview call (in process: no sockets), plus the pure
//! functions where a boundary is clearer there. Each test says what happens and why it is safe.

use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{json, Value};
use tokenreview_proxy::auth::{Audiences, AuthError, Authenticator, Verified};
use tokenreview_proxy::config::{Config, IdentityMode};
use tokenreview_proxy::dev::{self, KubeTokenSpec, TestKey};
use tokenreview_proxy::identity::{identity_headers, Identity};
use tokenreview_proxy::jwks::Issuer;
use tokenreview_proxy::keys::{parse_jwks, Alg, KeySet};
use tokenreview_proxy::verify::{self, Claims, Reject, TimePolicy};

const ISS: &str = "https://attacks.test";
const POLICY: TimePolicy = TimePolicy {
    clock_skew: 60,
    max_lifetime: 3600,
};

/// An authenticator for one issuer (`ISS`, audience `aud`) whose keys are installed.
fn authenticator(mode: &str, claims: &str, keys: &[&TestKey]) -> Authenticator {
    // Impersonation needs the proxy's own credential; the file is never read here.
    let token_file = match mode {
        "impersonate" => "token_file = \"/var/run/secrets/token\"",
        _ => "",
    };
    let mappings = match claims {
        "oidc" => "[issuers.claim_mappings]\nusername = \"email\"\nusername_prefix = \"oidc:\"\ngroups = \"groups\"\ngroups_prefix = \"oidc:\"\n",
        _ => "",
    };
    let text = format!(
        r#"
[server]
listen = "127.0.0.1:0"
[upstream]
url = "http://127.0.0.1:1"
identity_headers = "{mode}"
{token_file}
[[issuers]]
name = "attacks"
issuer = "{ISS}"
jwks_url = "http://127.0.0.1:1/unused"
audiences = ["aud"]
algorithms = ["RS256", "ES256", "ES384", "ES512", "EdDSA"]
max_lifetime = "1h"
claims = "{claims}"
{mappings}"#
    );
    let cfg = Config::parse(&text, "attacks.toml").unwrap();
    let issuer = Arc::new(Issuer::new(cfg.issuers[0].clone()));
    let jwks: Vec<Value> = keys.iter().map(|k| k.public_jwk()).collect();
    let body = serde_json::to_vec(&dev::jwks(&jwks)).unwrap();
    let parsed = parse_jwks(&body, &cfg.issuers[0].algorithms, None).unwrap();
    issuer.store.install(KeySet::new(parsed.keys));
    Authenticator::new(&cfg, vec![issuer])
}

async fn outcome(auth: &Authenticator, token: &str) -> Result<Arc<Verified>, Reject> {
    match auth.authenticate(token, Audiences::Configured).await {
        Ok(v) => Ok(v),
        Err(AuthError::Rejected(r)) => Err(r.reason),
        Err(AuthError::Unavailable { .. }) => panic!("the keys are installed"),
        Err(AuthError::BoundObjectsStale { .. }) => panic!("no issuer has bound_objects"),
    }
}

/// Kubernetes-shaped claims for `default/default`, edited.
fn kube_claims(edit: impl FnOnce(&mut Value)) -> Value {
    let mut claims = dev::kube_claims(&KubeTokenSpec::new(ISS, "aud"));
    edit(&mut claims);
    claims
}

/// Sign raw header and payload JSON text (duplicates and all) with `key`.
fn sign_text(key: &TestKey, extra_header: &str, payload: &str) -> String {
    let header = format!(
        r#"{{"alg":"{}","kid":"{}"{extra_header}}}"#,
        key.alg(),
        key.kid()
    );
    key.sign_raw(&header, payload)
}

fn now() -> i64 {
    dev::now_unix() as i64
}

/// Duplicate members: RFC 7515 section 4 and RFC 7519 section 4 allow a parser to reject them
/// or to keep the last. Every header parameter and claim we read is a field of a derived
/// struct, and serde rejects a repeated field: `malformed` in the header, `invalid_claims` in
/// the claims. A repeated member we do not read is ignored. The one place a JSON map is read
/// (OIDC claim mappings, for claims that are no struct field, such as `email`) keeps the last,
/// as RFC 7519 allows. Every outcome is the same each time.
#[tokio::test]
async fn duplicate_json_members_are_rejected_or_last_wins_deterministically() {
    let key = TestKey::generate("ES256", "k").unwrap();
    let auth = authenticator("remote", "kubernetes", &[&key]);
    let payload = kube_claims(|_| {}).to_string();
    let with = |member: &str| format!("{{{member},{}", &payload[1..]);
    let cases: [(String, Reject); 6] = [
        (
            sign_text(&key, r#","alg":"none""#, &payload),
            Reject::Malformed,
        ),
        (
            sign_text(&key, r#","kid":"other""#, &payload),
            Reject::Malformed,
        ),
        (
            sign_text(&key, r#","crit":[],"crit":[]"#, &payload),
            Reject::Malformed,
        ),
        (
            sign_text(
                &key,
                "",
                &with(r#""sub":"system:serviceaccount:kube-system:admin""#),
            ),
            Reject::InvalidClaims,
        ),
        (
            sign_text(&key, "", &with(r#""exp":1e300"#)),
            Reject::InvalidClaims,
        ),
        (
            sign_text(&key, "", &with(r#""aud":"other""#)),
            Reject::InvalidClaims,
        ),
    ];
    for (token, reason) in &cases {
        for _ in 0..2 {
            assert_eq!(outcome(&auth, token).await.err(), Some(*reason), "{token}");
            assert_eq!(verify::parse(token, 16384).err(), Some(*reason));
        }
    }
    // Nested: a repeated member of `kubernetes.io` is a repeated struct field too.
    let nested = payload.replace(
        r#""namespace":"default""#,
        r#""namespace":"default","namespace":"kube-system""#,
    );
    assert_ne!(nested, payload);
    let token = sign_text(&key, "", &nested);
    assert_eq!(
        outcome(&auth, &token).await.err(),
        Some(Reject::InvalidClaims)
    );
    // Members we do not read: ignored, the token is accepted.
    let token = sign_text(
        &key,
        r#","typ":"JWT","typ":"at+jwt""#,
        &with(r#""foo":1,"foo":2"#),
    );
    assert!(outcome(&auth, &token).await.is_ok());

    // OIDC: `email` is read from a JSON map, which keeps the last member.
    let oidc = authenticator("remote", "oidc", &[&key]);
    let exp = now() + 600;
    let payload = format!(
        r#"{{"iss":"{ISS}","aud":"aud","exp":{exp},"email":"alice@example.com","email":"bob@example.com"}}"#
    );
    let token = sign_text(&key, "", &payload);
    for _ in 0..2 {
        let v = outcome(&oidc, &token).await.unwrap();
        assert_eq!(v.identity().username, "oidc:bob@example.com");
    }
}

/// NumericDate edge values (RFC 7519: seconds, possibly fractional). Values are floored to
/// whole seconds and saturate at the ends of `i64`, so no value overflows: far-future `exp` is
/// over `max_lifetime`, far-past is expired, a number JSON cannot hold as `f64` is malformed,
/// and a non-number is `invalid_claims`.
#[tokio::test]
async fn numeric_dates_at_the_edges_saturate_and_never_overflow() {
    let key = TestKey::generate("ES256", "k").unwrap();
    let auth = authenticator("remote", "kubernetes", &[&key]);
    let n = now();
    let cases: [(Value, Reject); 8] = [
        (json!(1e300), Reject::LifetimeExceeded),
        (json!(u64::MAX), Reject::LifetimeExceeded),
        (json!(i64::MAX), Reject::LifetimeExceeded),
        (json!(i64::MIN), Reject::Expired),
        (json!(-1e300), Reject::Expired),
        (json!(n as f64 - 60.5), Reject::Expired),
        (json!("1e300"), Reject::InvalidClaims),
        (json!(true), Reject::InvalidClaims),
    ];
    for (exp, reason) in cases {
        let token = key.sign(&kube_claims(|c| c["exp"] = exp.clone()));
        assert_eq!(
            outcome(&auth, &token).await.err(),
            Some(reason),
            "exp {exp}"
        );
    }
    // `exp: null` is no `exp`.
    let token = key.sign(&kube_claims(|c| c["exp"] = Value::Null));
    assert_eq!(
        outcome(&auth, &token).await.err(),
        Some(Reject::InvalidClaims)
    );
    // Out of f64's range: serde_json refuses the number, so the payload is not JSON we read.
    let text = kube_claims(|c| c["exp"] = json!(12345)).to_string();
    let huge = text.replace(r#""exp":12345"#, r#""exp":1e400"#);
    assert_ne!(huge, text);
    assert_eq!(
        outcome(&auth, &sign_text(&key, "", &huge)).await.err(),
        Some(Reject::Malformed)
    );
    // Fractional: floored. 100.7 s left is accepted, and valid until the floor plus skew.
    let v = outcome(
        &auth,
        &key.sign(&kube_claims(|c| c["exp"] = json!(n as f64 + 100.7))),
    )
    .await
    .unwrap();
    assert_eq!(v.valid_until(), Some(n + 100 + 60));

    // The pure function, at the boundaries (now = 1,000,000; skew 60; lifetime 3600).
    let at = |claims: &str| {
        let c: Claims = serde_json::from_str(claims).unwrap();
        verify::check_times(&c, 1_000_000, POLICY, true)
    };
    // exp floored: 999940.5 → 999940 = now - skew: expired (half a second early, on the safe side).
    assert_eq!(at(r#"{"exp":999940.5}"#), Err(Reject::Expired));
    assert_eq!(at(r#"{"exp":999941.0}"#), Ok(Some(999_941)));
    // nbf floored: 1000060.5 → now + skew: not yet in force only from the next whole second
    // (go-jose, as kube-apiserver uses it, truncates NumericDates to seconds the same way).
    assert_eq!(
        at(r#"{"exp":1000100,"nbf":1000060.5}"#),
        Ok(Some(1_000_100))
    );
    assert_eq!(
        at(r#"{"exp":1000100,"nbf":1000061}"#),
        Err(Reject::NotYetValid)
    );
    // iat far in the past: the lifetime saturates instead of overflowing.
    assert_eq!(
        at(r#"{"exp":1000100,"iat":-1e300}"#),
        Err(Reject::LifetimeExceeded)
    );
    assert_eq!(
        at(&format!(r#"{{"exp":1000100,"iat":{}}}"#, i64::MIN)),
        Err(Reject::LifetimeExceeded)
    );
    assert_eq!(
        at(r#"{"exp":1000100,"iat":1e300}"#),
        Err(Reject::IssuedInFuture)
    );
    assert_eq!(
        at(r#"{"exp":1e300,"iat":1e300}"#),
        Err(Reject::IssuedInFuture)
    );
}

/// `kid: null` is read as no `kid` (an `Option`): every key of the algorithm's type is tried,
/// and only a signature that verifies is accepted. A `kid` of another type is malformed; an
/// empty one names no key.
#[tokio::test]
async fn kid_null_means_no_kid_and_still_needs_a_valid_signature() {
    let key = TestKey::generate("ES256", "k").unwrap();
    let other = TestKey::generate("ES256", "other").unwrap();
    let auth = authenticator("remote", "kubernetes", &[&key]);
    let claims = kube_claims(|_| {});
    let null_kid = json!({"alg": "ES256", "kid": null});
    let token = key.sign_with_header(&null_kid, &claims);
    assert_eq!(verify::parse(&token, 16384).unwrap().kid, None);
    assert!(outcome(&auth, &token).await.is_ok());
    let forged = other.sign_with_header(&null_kid, &claims);
    assert_eq!(
        outcome(&auth, &forged).await.err(),
        Some(Reject::BadSignature)
    );
    for kid in [json!(5), json!(["k"]), json!({"k": 1})] {
        let t = key.sign_with_header(&json!({"alg": "ES256", "kid": kid}), &claims);
        assert_eq!(
            outcome(&auth, &t).await.err(),
            Some(Reject::Malformed),
            "{kid}"
        );
    }
    let empty = key.sign_with_header(&json!({"alg": "ES256", "kid": ""}), &claims);
    let parsed = verify::parse(&empty, 16384).unwrap();
    let jwks = serde_json::to_vec(&dev::jwks(&[key.public_jwk()])).unwrap();
    let keys = KeySet::new(parse_jwks(&jwks, &[Alg::ES256], None).unwrap().keys);
    assert_eq!(
        verify::verify_signature(&parsed, &keys).err(),
        Some(Reject::UnknownKey)
    );
}

/// Identity headers are built from claims, so a claim with NUL, CR or LF must never become a
/// header (no header injection, no request splitting): `identity_headers` refuses any value
/// that is not a legal header value, and the token is `invalid_claims`. TAB is legal inside a
/// header value and passes through. With `identity_headers = "none"` no header is built from
/// the username, uid or groups, so those are not checked there (TokenReview answers are JSON,
/// escaped); the per-token values (pod name and uid, jti) are checked in every mode.
#[tokio::test]
async fn control_characters_in_claims_never_reach_a_header() {
    let key = TestKey::generate("EdDSA", "k").unwrap();
    let remote = authenticator("remote", "kubernetes", &[&key]);
    let impersonate = authenticator("impersonate", "kubernetes", &[&key]);
    let none = authenticator("none", "kubernetes", &[&key]);
    for bad in ["\0", "\r", "\n", "\r\nX-Remote-Group: system:masters"] {
        // The namespace flows into the username and a group.
        let ns = format!("evil{bad}");
        let ns = ns.replace(':', "");
        let namespace = key.sign(&kube_claims(|c| {
            c["sub"] = json!(format!("system:serviceaccount:{ns}:default"));
            c["kubernetes.io"]["namespace"] = json!(ns);
        }));
        let uid = key.sign(&kube_claims(|c| {
            c["kubernetes.io"]["serviceaccount"]["uid"] = json!(format!("u{bad}"))
        }));
        let node = key.sign(&kube_claims(|c| {
            c["kubernetes.io"]["node"]["name"] = json!(format!("node{bad}"))
        }));
        let pod = key.sign(&kube_claims(|c| {
            c["kubernetes.io"]["pod"]["name"] = json!(format!("pod{bad}"))
        }));
        let jti = key.sign(&kube_claims(|c| c["jti"] = json!(format!("j{bad}"))));
        for token in [&namespace, &uid, &node, &pod, &jti] {
            for auth in [&remote, &impersonate] {
                assert_eq!(
                    outcome(auth, token).await.err(),
                    Some(Reject::InvalidClaims),
                    "{bad:?}"
                );
            }
        }
        for token in [&pod, &jti] {
            assert_eq!(
                outcome(&none, token).await.err(),
                Some(Reject::InvalidClaims)
            );
        }
        let v = outcome(&none, &namespace).await.unwrap();
        assert!(v.principal.headers.is_empty());

        // OIDC: the username and group claims.
        let oidc = authenticator("remote", "oidc", &[&key]);
        let exp = now() + 600;
        for claims in [
            json!({"iss": ISS, "aud": "aud", "exp": exp, "email": format!("a{bad}b")}),
            json!({"iss": ISS, "aud": "aud", "exp": exp, "email": "a", "groups": ["ok", format!("g{bad}")]}),
        ] {
            assert_eq!(
                outcome(&oidc, &key.sign(&claims)).await.err(),
                Some(Reject::InvalidClaims)
            );
        }
    }

    // The function itself, every field, both conventions.
    let ok = Identity {
        username: "alice".into(),
        uid: "u".into(),
        groups: vec!["g".into()],
        extra: vec![("scopes".into(), vec!["s".into()])],
    };
    for mode in [IdentityMode::Remote, IdentityMode::Impersonate] {
        assert!(identity_headers(&ok, mode).is_ok());
        for bad in ["\0", "\r", "\n", "\x7f"] {
            let mut ids = [ok.clone(), ok.clone(), ok.clone(), ok.clone()];
            ids[0].username = format!("a{bad}");
            ids[1].uid = format!("u{bad}");
            ids[2].groups.push(format!("g{bad}"));
            ids[3].extra[0].1.push(format!("s{bad}"));
            for id in &ids {
                assert_eq!(
                    identity_headers(id, mode).err(),
                    Some(Reject::InvalidClaims),
                    "{bad:?}"
                );
            }
        }
        // An extra key is a header name: percent-encoded, so CR/LF cannot end the name.
        let mut id = ok.clone();
        id.extra[0].0 = "a\r\nx-remote-group: system:masters".into();
        let headers = identity_headers(&id, mode).unwrap();
        let last = headers.last().unwrap().0.as_str();
        assert!(
            last.ends_with("a%0d%0ax-remote-group%3a%20system%3amasters"),
            "{last}"
        );
        // TAB is legal in a header value.
        let mut id = ok.clone();
        id.username = "a\tb".into();
        assert_eq!(identity_headers(&id, mode).unwrap()[0].1, "a\tb");
    }
}

/// ECDSA signatures are malleable: if (r, s) verifies, so does (r, n - s). Both verify here,
/// as in kube-apiserver (Go's crypto/ecdsa does not require low S, nor does aws-lc). So one
/// claim set can have two valid token strings: nothing may treat the token string as a unique
/// identity (the cache keys on it, so each twin is verified once on its own, and both map to
/// the same principal).
#[tokio::test]
async fn high_s_ecdsa_twins_both_verify() {
    // Group orders of P-256, P-384 and P-521.
    const N256: &str = "ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551";
    const N384: &str = "ffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf581a0db248b0a77aecec196accc52973";
    const N521: &str = "01fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffa51868783bf2f966b7fcc0148f709a5d03bb5c9b8899c47aebb6fb71e91386409";
    for (alg, order) in [("ES256", N256), ("ES384", N384), ("ES512", N521)] {
        let key = TestKey::generate(alg, "k").unwrap();
        let auth = authenticator("remote", "kubernetes", &[&key]);
        let token = key.sign(&kube_claims(|_| {}));
        let (input, sig) = token.rsplit_once('.').unwrap();
        let sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
        let (r, s) = sig.split_at(sig.len() / 2);
        let n: Vec<u8> = (0..order.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&order[i..i + 2], 16).unwrap())
            .collect();
        let twin_s = sub_be(&n, s);
        assert_ne!(twin_s, s);
        let twin = format!(
            "{input}.{}",
            URL_SAFE_NO_PAD.encode([r, &twin_s[..]].concat())
        );
        assert_ne!(twin, token);

        let a = outcome(&auth, &token).await.unwrap();
        let b = outcome(&auth, &twin).await.unwrap();
        assert_eq!(a.identity(), b.identity(), "{alg}");
        assert!(Arc::ptr_eq(&a.principal, &b.principal), "{alg}");
    }
}

/// `a - b` for big-endian unsigned integers of one length, `a >= b`.
fn sub_be(a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; a.len()];
    let mut borrow = 0i16;
    for i in (0..a.len()).rev() {
        let d = i16::from(a[i]) - i16::from(b[i]) - borrow;
        borrow = i16::from(d < 0);
        out[i] = (d + 256 * borrow) as u8;
    }
    assert_eq!(borrow, 0);
    out
}

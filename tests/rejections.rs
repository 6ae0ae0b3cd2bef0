//! Every rejection reason code of SPEC section 7, each produced by a crafted token sent over a
//! real loopback socket, plus the accepted shapes (each signing algorithm, legacy tokens when
//! enabled, a token minted by an independent JWT implementation).
//!
//! Every rejection asserts the status, the exact `WWW-Authenticate` value, that the upstream
//! recorded nothing, and that the response does not echo the token.
mod common;
use common::*;

use std::path::Path;
use std::process::Command;

use aws_lc_rs::hmac;
use aws_lc_rs::signature::{self, RsaPublicKeyComponents};
use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine as _;
use serde_json::{json, Value};
use tokenreview_proxy::dev::{self, KubeTokenSpec, MockIssuer, RecordedRequest, TestKey};

const REALM: &str = r#"Bearer realm="tokenreview-proxy""#;

fn b64(data: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(data)
}

fn b64d(s: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(s).expect("base64url")
}

fn now() -> i64 {
    dev::now_unix() as i64
}

fn invalid_token(reason: &str) -> String {
    format!(r#"{REALM}, error="invalid_token", error_description="{reason}""#)
}

/// Neither the body nor any response header carries the token or its signature segment.
fn assert_not_echoed(r: &Resp, token: &str, case: &str) {
    let body = r.text();
    assert!(!body.contains(token), "{case}: body echoes the token");
    let sig = token.rsplit('.').next().unwrap_or_default();
    if sig.len() >= 16 {
        assert!(!body.contains(sig), "{case}: body echoes the signature");
    }
    for (name, value) in &r.headers {
        let v = String::from_utf8_lossy(value.as_bytes());
        assert!(!v.contains(token), "{case}: header {name} echoes the token");
    }
}

/// Send `token`; expect 401 `invalid_token` with `reason`, nothing forwarded, nothing echoed.
async fn expect_rejected(h: &Harness, token: &str, reason: &str) {
    let before = h.upstream.request_count();
    let r = h.get_with_token("/protected", token, &[]).await;
    assert_eq!(r.status, 401, "{reason}: {}", r.text());
    assert_eq!(
        r.header("www-authenticate").as_deref(),
        Some(invalid_token(reason).as_str()),
        "expected reason {reason}"
    );
    assert_eq!(
        h.upstream.request_count(),
        before,
        "{reason}: the upstream must not see a rejected request"
    );
    assert_not_echoed(&r, token, reason);
}

/// Send `token`; expect 200 and return what the upstream recorded.
async fn expect_accepted(h: &Harness, token: &str) -> RecordedRequest {
    let before = h.upstream.request_count();
    let r = h.get_with_token("/accepted", token, &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(h.upstream.request_count(), before + 1);
    h.upstream
        .requests()
        .pop()
        .expect("upstream recorded the request")
}

/// A spec with recognisable namespace and service account.
fn shop_spec(h: &Harness) -> KubeTokenSpec {
    let mut spec = h.spec();
    spec.namespace = "shop".into();
    spec.service_account = "cart".into();
    spec
}

/// The upstream got exactly the Kubernetes identity of `spec` as `X-Remote-*` headers, and
/// no impersonation headers.
fn assert_identity(rec: &RecordedRequest, spec: &KubeTokenSpec) {
    let ns = &spec.namespace;
    let (pod, pod_uid) = spec.pod.clone().expect("spec has a pod");
    let (node, node_uid) = spec.node.clone().expect("spec has a node");
    let jti = spec.jti.clone().expect("spec has a jti");
    let extra = "x-remote-extra-authentication.kubernetes.io%2f";
    let mut expected: Vec<(String, String)> = vec![
        (
            "x-remote-user".into(),
            format!("system:serviceaccount:{ns}:{}", spec.service_account),
        ),
        ("x-remote-uid".into(), spec.service_account_uid.clone()),
        ("x-remote-group".into(), "system:serviceaccounts".into()),
        (
            "x-remote-group".into(),
            format!("system:serviceaccounts:{ns}"),
        ),
        ("x-remote-group".into(), "system:authenticated".into()),
        (format!("{extra}pod-name"), pod),
        (format!("{extra}pod-uid"), pod_uid),
        (format!("{extra}node-name"), node),
        (format!("{extra}node-uid"), node_uid),
        (format!("{extra}credential-id"), format!("JTI={jti}")),
    ];
    let mut actual: Vec<(String, String)> = rec
        .headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
        .filter(|(k, _)| k.starts_with("x-remote-"))
        .collect();
    expected.sort();
    actual.sort();
    assert_eq!(actual, expected);
    // The groups arrive in kube-apiserver's order.
    let groups: Vec<&str> = rec
        .headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("x-remote-group"))
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(
        groups,
        [
            "system:serviceaccounts".to_string(),
            format!("system:serviceaccounts:{ns}"),
            "system:authenticated".to_string()
        ]
    );
    assert!(
        !rec.headers
            .iter()
            .any(|(k, _)| k.to_ascii_lowercase().starts_with("impersonate")),
        "no impersonation headers in remote mode: {:?}",
        rec.headers
    );
    assert!(
        !rec.headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("authorization")),
        "the caller's token is not forwarded by default"
    );
}

/// The header the harness keys sign with.
fn std_header(key: &TestKey) -> Value {
    json!({ "alg": key.alg(), "kid": key.kid(), "typ": "JWT" })
}

// ---- Time claims ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_token_is_rejected() {
    let h = Harness::start().await;
    let mut c = dev::kube_claims(&h.spec());
    c["iat"] = json!(now() - 7200);
    c["nbf"] = json!(now() - 7200);
    c["exp"] = json!(now() - 3600);
    expect_rejected(&h, &h.key().sign(&c), "expired").await;
    // Just past the default 60 s clock skew.
    c["exp"] = json!(now() - 61);
    expect_rejected(&h, &h.key().sign(&c), "expired").await;
    // Within the skew it is still accepted.
    c["exp"] = json!(now() - 5);
    expect_accepted(&h, &h.key().sign(&c)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nbf_in_the_future_is_not_yet_valid() {
    let h = Harness::start().await;
    let mut c = dev::kube_claims(&h.spec());
    c["nbf"] = json!(now() + 3600);
    c["exp"] = json!(now() + 7200);
    expect_rejected(&h, &h.key().sign(&c), "not_yet_valid").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iat_in_the_future_is_issued_in_future() {
    let h = Harness::start().await;
    let mut c = dev::kube_claims(&h.spec());
    c["iat"] = json!(now() + 3600);
    c["exp"] = json!(now() + 7200);
    expect_rejected(&h, &h.key().sign(&c), "issued_in_future").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_or_non_numeric_exp_is_invalid_claims() {
    let h = Harness::start().await;
    let mut c = dev::kube_claims(&h.spec());
    c.as_object_mut().expect("object").remove("exp");
    expect_rejected(&h, &h.key().sign(&c), "invalid_claims").await;
    for bad in [
        json!("9999999999"),
        json!(null),
        json!(true),
        json!({ "t": 1 }),
    ] {
        let mut c = dev::kube_claims(&h.spec());
        c["exp"] = bad;
        expect_rejected(&h, &h.key().sign(&c), "invalid_claims").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifetime_over_max_lifetime_is_rejected() {
    let h = Harness::start_with(Opts {
        issuer_extra: "max_lifetime = \"1h\"".into(),
        ..Opts::default()
    })
    .await;
    let mut spec = h.spec();
    spec.ttl_secs = 2 * 3600;
    expect_rejected(
        &h,
        &h.key().sign(&dev::kube_claims(&spec)),
        "lifetime_exceeded",
    )
    .await;
    // Without iat the lifetime counts from now.
    let mut c = dev::kube_claims(&spec);
    c.as_object_mut().expect("object").remove("iat");
    expect_rejected(&h, &h.key().sign(&c), "lifetime_exceeded").await;
    // Exactly the maximum is fine.
    spec.ttl_secs = 3600;
    expect_accepted(&h, &h.key().sign(&dev::kube_claims(&spec))).await;
}

// ---- Issuer and audience ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_issuer_is_unknown_issuer() {
    let h = Harness::start().await;
    let mut c = dev::kube_claims(&h.spec());
    c["iss"] = json!("https://evil.example");
    expect_rejected(&h, &h.key().sign(&c), "unknown_issuer").await;
    // A trailing slash is a different issuer: the match is exact.
    c["iss"] = json!(format!("{}/", h.issuer.issuer_url()));
    expect_rejected(&h, &h.key().sign(&c), "unknown_issuer").await;
    c.as_object_mut().expect("object").remove("iss");
    expect_rejected(&h, &h.key().sign(&c), "unknown_issuer").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_or_missing_audience_is_audience_mismatch() {
    let h = Harness::start().await;
    let mut c = dev::kube_claims(&h.spec());
    c["aud"] = json!(["https://other.example"]);
    expect_rejected(&h, &h.key().sign(&c), "audience_mismatch").await;
    c["aud"] = json!("https://other.example");
    expect_rejected(&h, &h.key().sign(&c), "audience_mismatch").await;
    c["aud"] = json!([]);
    expect_rejected(&h, &h.key().sign(&c), "audience_mismatch").await;
    c.as_object_mut().expect("object").remove("aud");
    expect_rejected(&h, &h.key().sign(&c), "audience_mismatch").await;
    // One matching audience among others is enough, string or array.
    c["aud"] = json!(["https://other.example", AUD]);
    expect_accepted(&h, &h.key().sign(&c)).await;
    c["aud"] = json!(AUD);
    expect_accepted(&h, &h.key().sign(&c)).await;
}

// ---- Algorithms ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alg_none_is_unsupported_algorithm() {
    let h = Harness::start().await;
    let c = dev::kube_claims(&h.spec());
    let input = format!(
        "{}.{}",
        b64(json!({ "alg": "none", "typ": "JWT" }).to_string()),
        b64(c.to_string())
    );
    // Unsecured JWS: empty signature segment.
    expect_rejected(&h, &format!("{input}."), "unsupported_algorithm").await;
    // With a kid of a real key, and with other spellings of "none".
    for alg in ["none", "None", "NONE"] {
        let header = json!({ "alg": alg, "kid": "k1" }).to_string();
        let t = format!("{}.{}.", b64(header), b64(c.to_string()));
        expect_rejected(&h, &t, "unsupported_algorithm").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hs256_signed_with_the_public_key_is_unsupported_algorithm() {
    let h = Harness::start().await;
    let c = dev::kube_claims(&h.spec());
    let jwk = h.key().public_jwk();
    let n = b64d(jwk["n"].as_str().expect("n"));
    // The secrets an algorithm-confusion attack would try: the modulus, the JWK text, the
    // base64url modulus text.
    let secrets: Vec<Vec<u8>> = vec![
        n.clone(),
        jwk.to_string().into_bytes(),
        jwk["n"].as_str().expect("n").as_bytes().to_vec(),
    ];
    for secret in secrets {
        let key = hmac::Key::new(hmac::HMAC_SHA256, &secret);
        for header in [
            json!({ "alg": "HS256", "kid": "k1", "typ": "JWT" }),
            json!({ "alg": "HS256", "typ": "JWT" }),
        ] {
            let input = format!("{}.{}", b64(header.to_string()), b64(c.to_string()));
            let tag = hmac::sign(&key, input.as_bytes());
            let t = format!("{input}.{}", b64(tag.as_ref()));
            expect_rejected(&h, &t, "unsupported_algorithm").await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_oct_key_is_dropped_and_hs256_refused() {
    let name = "rej-oct";
    let key = TestKey::generate("RS256", "k1").expect("keygen");
    let secret = b"a shared secret that must never verify anything";
    let oct =
        json!({ "kty": "oct", "kid": "hmac", "alg": "HS256", "use": "sig", "k": b64(secret) });
    let issuer = MockIssuer::start(vec![oct, key.public_jwk()])
        .await
        .expect("issuer");
    let h = Harness::start_with_issuer(
        Opts {
            issuer_name: Some(name.into()),
            ..Opts::default()
        },
        issuer,
        vec![key],
    )
    .await;
    let dropped = format!("tokenreview_proxy_jwks_dropped_keys{{issuer=\"{name}\"}}");
    assert!(h.metric(&dropped).await >= 1.0, "{}", h.metrics().await);

    let c = dev::kube_claims(&h.spec());
    let input = format!(
        "{}.{}",
        b64(json!({ "alg": "HS256", "kid": "hmac", "typ": "JWT" }).to_string()),
        b64(c.to_string())
    );
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, secret), input.as_bytes());
    expect_rejected(
        &h,
        &format!("{input}.{}", b64(tag.as_ref())),
        "unsupported_algorithm",
    )
    .await;
    // The oct key is not in the set at all: an asymmetric alg naming it finds no key.
    let t = h
        .key()
        .sign_with_header(&json!({ "alg": "RS256", "kid": "hmac", "typ": "JWT" }), &c);
    expect_rejected(&h, &t, "unknown_key").await;
    // The normal key next to it still works.
    expect_accepted(&h, &h.token()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alg_not_matching_the_key_type_is_unsupported_algorithm() {
    let es = TestKey::generate("ES256", "es").expect("keygen");
    let rs = TestKey::generate("RS256", "rs").expect("keygen");
    let h = Harness::start_with(Opts {
        keys: Some(vec![rs.clone(), es.clone()]),
        ..Opts::default()
    })
    .await;
    let c = dev::kube_claims(&h.spec());
    // Signed by the RSA key but naming the EC key's kid.
    let t = rs.sign_with_header(&json!({ "alg": "RS256", "kid": "es" }), &c);
    expect_rejected(&h, &t, "unsupported_algorithm").await;
    // The RSA JWK pins RS256: PS256 with that key is refused even though the key type fits.
    let ps = TestKey::from_pkcs8_pem(&rs.to_pkcs8_pem(), "PS256", "rs").expect("reload");
    expect_rejected(&h, &ps.sign(&c), "unsupported_algorithm").await;
}

// ---- Signatures and keys ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_payload_or_signature_is_bad_signature() {
    let h = Harness::start().await;
    let spec = shop_spec(&h);
    let token = h.key().sign(&dev::kube_claims(&spec));
    let parts: Vec<&str> = token.split('.').collect();

    // Payload: escalate the service account, keep the original signature.
    let mut c: Value = serde_json::from_slice(&b64d(parts[1])).expect("claims");
    c["sub"] = json!("system:serviceaccount:kube-system:admin");
    c["kubernetes.io"]["namespace"] = json!("kube-system");
    c["kubernetes.io"]["serviceaccount"]["name"] = json!("admin");
    let forged = format!("{}.{}.{}", parts[0], b64(c.to_string()), parts[2]);
    expect_rejected(&h, &forged, "bad_signature").await;

    // Signature: flip one bit in the middle.
    let mut sig = b64d(parts[2]);
    sig[100] ^= 0x01;
    let flipped = format!("{}.{}.{}", parts[0], parts[1], b64(&sig));
    expect_rejected(&h, &flipped, "bad_signature").await;

    // Signature: truncated.
    let short = format!("{}.{}.{}", parts[0], parts[1], b64(&sig[..128]));
    expect_rejected(&h, &short, "bad_signature").await;

    // Another token's signature.
    let other = h.token();
    let swapped = format!(
        "{}.{}.{}",
        parts[0],
        parts[1],
        other.rsplit('.').next().unwrap()
    );
    expect_rejected(&h, &swapped, "bad_signature").await;

    // The untouched token still works.
    assert_identity(&expect_accepted(&h, &token).await, &spec);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_key_under_a_known_kid_is_bad_signature() {
    let h = Harness::start().await;
    let foreign = TestKey::generate("RS256", "k1").expect("keygen");
    expect_rejected(
        &h,
        &foreign.sign(&dev::kube_claims(&h.spec())),
        "bad_signature",
    )
    .await;
    // Without a kid, it is tried against the issuer's RSA keys and fails all of them.
    let t = foreign.sign_with_header(&json!({ "alg": "RS256" }), &dev::kube_claims(&h.spec()));
    expect_rejected(&h, &t, "bad_signature").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_kid_is_unknown_key() {
    let h = Harness::start().await;
    let stranger = TestKey::generate("RS256", "not-published").expect("keygen");
    let fetches = h.issuer.jwks_fetches();
    expect_rejected(
        &h,
        &stranger.sign(&dev::kube_claims(&h.spec())),
        "unknown_key",
    )
    .await;
    // The unknown kid made the proxy look for a newly published key once.
    assert!(
        h.issuer.jwks_fetches() > fetches,
        "an unknown kid triggers a refetch"
    );
    // No key of the token's type at all, without a kid.
    let ed = TestKey::generate("EdDSA", "ed").expect("keygen");
    let t = ed.sign_with_header(&json!({ "alg": "EdDSA" }), &dev::kube_claims(&h.spec()));
    expect_rejected(&h, &t, "unknown_key").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forbidden_headers_are_rejected() {
    let h = Harness::start().await;
    let c = dev::kube_claims(&h.spec());
    let attacker = TestKey::generate("RS256", "k1").expect("keygen");
    let headers = [
        json!({ "alg": "RS256", "kid": "k1", "jku": "https://evil.example/jwks" }),
        json!({ "alg": "RS256", "kid": "k1", "x5u": "https://evil.example/cert.pem" }),
        json!({ "alg": "RS256", "kid": "k1", "jwk": attacker.public_jwk() }),
        json!({ "alg": "RS256", "kid": "k1", "x5c": ["MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"] }),
        json!({ "alg": "RS256", "kid": "k1", "crit": ["exp"], "exp": 1 }),
        json!({ "alg": "RS256", "kid": "k1", "cty": "JWT" }),
        json!({ "alg": "RS256", "kid": "k1", "cty": "jwt" }),
        json!({ "alg": "RS256", "kid": "k1", "cty": "application/JWT" }),
        // Present with a null value is still present.
        json!({ "alg": "RS256", "kid": "k1", "jku": null }),
        json!({ "alg": "RS256", "kid": "k1", "crit": null }),
    ];
    for header in &headers {
        // Signed with the real key: the header alone is the reason.
        expect_rejected(
            &h,
            &h.key().sign_with_header(header, &c),
            "forbidden_header",
        )
        .await;
    }
    // The embedded attacker key must not be used: signed with it, still forbidden_header.
    let t = attacker.sign_with_header(&headers[2], &c);
    expect_rejected(&h, &t, "forbidden_header").await;
    // Other header members are fine.
    let benign = json!({ "alg": "RS256", "kid": "k1", "typ": "JWT", "cty": "json", "x-note": 1 });
    expect_accepted(&h, &h.key().sign_with_header(&benign, &c)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_zero_es256_signature_is_bad_signature() {
    let es = TestKey::generate("ES256", "es").expect("keygen");
    let h = Harness::start_with(Opts {
        keys: Some(vec![es.clone()]),
        ..Opts::default()
    })
    .await;
    let token = es.sign(&dev::kube_claims(&h.spec()));
    let (input, _) = token.rsplit_once('.').expect("three segments");
    expect_rejected(&h, &format!("{input}.{}", b64([0u8; 64])), "bad_signature").await;
    // r = 0 with a non-zero s is refused too.
    let mut rs = [0xffu8; 64];
    rs[..32].fill(0);
    expect_rejected(&h, &format!("{input}.{}", b64(rs)), "bad_signature").await;
    // The real signature verifies.
    expect_accepted(&h, &token).await;
}

// ---- Shape ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_tokens_are_rejected() {
    let h = Harness::start().await;
    let key = h.key().clone();
    let c = dev::kube_claims(&h.spec());
    let token = key.sign(&c);
    let parts: Vec<&str> = token.split('.').collect();

    // Segment counts.
    for t in [
        format!("{}.{}", parts[0], parts[1]),
        format!("{token}.{}", parts[2]),
        format!("{token}."),
        format!("{}..{}", parts[0], parts[2]),
        format!(".{}.{}", parts[1], parts[2]),
        parts[1].to_string(),
    ] {
        expect_rejected(&h, &t, "malformed").await;
    }

    // Padded base64: the same signature bytes with '=' padding.
    assert!(
        !parts[2].len().is_multiple_of(4),
        "a 256-byte signature needs padding"
    );
    let padded_sig = format!(
        "{}.{}.{}",
        parts[0],
        parts[1],
        URL_SAFE.encode(b64d(parts[2]))
    );
    assert!(padded_sig.ends_with('='));
    expect_rejected(&h, &padded_sig, "malformed").await;

    // Padded header and payload, validly signed over exactly those bytes by the issuer's key
    // (an independent signer signs arbitrary input).
    let encoding =
        jsonwebtoken::EncodingKey::from_rsa_pem(key.to_pkcs8_pem().as_bytes()).expect("pem");
    let mut padded_claims = c.clone();
    let mut pad = String::new();
    let (ph, pp) = loop {
        padded_claims["pad"] = json!(pad);
        let ph = URL_SAFE.encode(std_header(&key).to_string());
        let pp = URL_SAFE.encode(padded_claims.to_string());
        if pp.ends_with('=') {
            break (ph, pp);
        }
        pad.push('x');
    };
    let input = format!("{}.{pp}", ph.trim_end_matches('='));
    let sig =
        jsonwebtoken::crypto::sign(input.as_bytes(), &encoding, jsonwebtoken::Algorithm::RS256)
            .expect("sign");
    expect_rejected(&h, &format!("{input}.{sig}"), "malformed").await;
    // The same claims unpadded are fine (so padding is the only defect above).
    let unpadded = format!("{}.{}", ph.trim_end_matches('='), pp.trim_end_matches('='));
    let sig = jsonwebtoken::crypto::sign(
        unpadded.as_bytes(),
        &encoding,
        jsonwebtoken::Algorithm::RS256,
    )
    .expect("sign");
    expect_accepted(&h, &format!("{unpadded}.{sig}")).await;

    // Standard (not URL-safe) alphabet: re-sign until the signature has a '-' or '_'.
    let (input, sig) = loop {
        let t = key.sign(&dev::kube_claims(&h.spec()));
        let (input, sig) = t.rsplit_once('.').expect("three segments");
        if sig.contains(['-', '_']) {
            break (input.to_string(), sig.to_string());
        }
    };
    let std_sig = STANDARD.encode(b64d(&sig));
    let std_sig = std_sig.trim_end_matches('=');
    assert!(std_sig.contains(['+', '/']));
    expect_rejected(&h, &format!("{input}.{std_sig}"), "malformed").await;

    // Non-JSON header and payload, validly signed.
    let header = std_header(&key).to_string();
    expect_rejected(&h, &key.sign_raw("not json", &c.to_string()), "malformed").await;
    expect_rejected(&h, &key.sign_raw(&header, "not json"), "malformed").await;
    let text = c.to_string();
    expect_rejected(
        &h,
        &key.sign_raw(&header, &text[..text.len() - 1]),
        "malformed",
    )
    .await;
    // Not base64 at all.
    expect_rejected(
        &h,
        &format!("{}.{}.{}", parts[0], "*payload*", parts[2]),
        "malformed",
    )
    .await;
    // Header without alg.
    expect_rejected(&h, &key.sign_raw(r#"{"kid":"k1"}"#, &text), "malformed").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_that_is_not_an_object_is_malformed() {
    // RFC 7515/7519: the header and the claims set are JSON objects. A positional array
    // must not be read as if it were one.
    let h = Harness::start().await;
    let key = h.key().clone();
    let c = dev::kube_claims(&h.spec());
    let header_array = r#"["RS256","k1",null,null,null,null,null,null]"#;
    expect_rejected(&h, &key.sign_raw(header_array, &c.to_string()), "malformed").await;
    let o = c.as_object().expect("object");
    let claims_array = json!([
        o["iss"],
        o["sub"],
        o["aud"],
        o["exp"],
        o["nbf"],
        o["iat"],
        o["jti"],
        o["kubernetes.io"],
        null,
        null,
        null,
        null
    ]);
    let t = key.sign_raw(&std_header(&key).to_string(), &claims_array.to_string());
    expect_rejected(&h, &t, "malformed").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_claim_keys_are_invalid_claims() {
    let h = Harness::start().await;
    let key = h.key().clone();
    let c = dev::kube_claims(&h.spec());
    let text = c.to_string();
    let header = std_header(&key).to_string();
    // A second "sub" naming another service account, appended after the real one.
    let dup_sub = format!(
        r#"{},"sub":"system:serviceaccount:kube-system:admin"}}"#,
        &text[..text.len() - 1]
    );
    expect_rejected(&h, &key.sign_raw(&header, &dup_sub), "invalid_claims").await;
    let dup_exp = format!(r#"{},"exp":99999999999}}"#, &text[..text.len() - 1]);
    expect_rejected(&h, &key.sign_raw(&header, &dup_exp), "invalid_claims").await;
}

// ---- Kubernetes claims ----

fn legacy_claims(ns: &str, name: &str, uid: &str) -> Value {
    json!({
        "iss": "kubernetes/serviceaccount",
        "kubernetes.io/serviceaccount/namespace": ns,
        "kubernetes.io/serviceaccount/secret.name": format!("{name}-token-x7k2p"),
        "kubernetes.io/serviceaccount/service-account.name": name,
        "kubernetes.io/serviceaccount/service-account.uid": uid,
        "sub": format!("system:serviceaccount:{ns}:{name}"),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_secret_token_is_rejected_by_default() {
    let h = Harness::start().await;
    let t = h
        .key()
        .sign(&legacy_claims("shop", "cart", &dev::random_uuid()));
    expect_rejected(&h, &t, "legacy_token").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_secret_token_is_accepted_when_enabled() {
    let h = Harness::start_with(Opts {
        issuer_extra: "legacy_tokens = true".into(),
        ..Opts::default()
    })
    .await;
    let uid = dev::random_uuid();
    let rec = expect_accepted(&h, &h.key().sign(&legacy_claims("shop", "cart", &uid))).await;
    let header = |n: &str| -> Vec<String> {
        rec.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(n))
            .map(|(_, v)| v.clone())
            .collect()
    };
    assert_eq!(header("x-remote-user"), ["system:serviceaccount:shop:cart"]);
    assert_eq!(header("x-remote-uid"), [uid.as_str()]);
    assert_eq!(
        header("x-remote-group"),
        [
            "system:serviceaccounts",
            "system:serviceaccounts:shop",
            "system:authenticated"
        ]
    );
    // Still signed: a legacy token from a foreign key is refused.
    let foreign = TestKey::generate("RS256", "k1").expect("keygen");
    expect_rejected(
        &h,
        &foreign.sign(&legacy_claims("shop", "cart", &uid)),
        "bad_signature",
    )
    .await;
    // And its claims must agree.
    let mut c = legacy_claims("shop", "cart", &uid);
    c["sub"] = json!("system:serviceaccount:kube-system:cart");
    expect_rejected(&h, &h.key().sign(&c), "invalid_claims").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sub_disagreeing_with_kubernetes_claim_is_invalid_claims() {
    let h = Harness::start().await;
    let mut c = dev::kube_claims(&h.spec());
    c["sub"] = json!("system:serviceaccount:kube-system:default");
    expect_rejected(&h, &h.key().sign(&c), "invalid_claims").await;
    let mut c = dev::kube_claims(&h.spec());
    c["kubernetes.io"]["serviceaccount"]["name"] = json!("admin");
    expect_rejected(&h, &h.key().sign(&c), "invalid_claims").await;
    let mut c = dev::kube_claims(&h.spec());
    c["sub"] = json!("alice");
    expect_rejected(&h, &h.key().sign(&c), "invalid_claims").await;
    let mut c = dev::kube_claims(&h.spec());
    c.as_object_mut().expect("object").remove("kubernetes.io");
    expect_rejected(&h, &h.key().sign(&c), "invalid_claims").await;
}

// ---- Keys dropped at load ----

/// A real 1024-bit RSA key from the system's `openssl`, in `dir`.
struct WeakRsa {
    key_file: std::path::PathBuf,
    n: Vec<u8>,
}

fn run_openssl(args: &[&str], cwd: &Path) -> Vec<u8> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("the openssl command line tool is needed to make a 1024-bit RSA key");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn weak_rsa(dir: &Path) -> WeakRsa {
    run_openssl(&["genrsa", "-out", "weak.pem", "1024"], dir);
    let modulus = String::from_utf8(run_openssl(
        &["rsa", "-in", "weak.pem", "-noout", "-modulus"],
        dir,
    ))
    .expect("utf-8");
    let hex = modulus.trim().strip_prefix("Modulus=").expect("Modulus=");
    let n = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
        .collect();
    WeakRsa {
        key_file: dir.join("weak.pem"),
        n,
    }
}

impl WeakRsa {
    /// An RS256 token with this key, signed by openssl.
    fn sign(&self, dir: &Path, kid: &str, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            b64(json!({ "alg": "RS256", "kid": kid, "typ": "JWT" }).to_string()),
            b64(claims.to_string())
        );
        std::fs::write(dir.join("input"), &input).expect("write");
        let key = self.key_file.to_str().expect("utf-8 path");
        let sig = run_openssl(&["dgst", "-sha256", "-sign", key, "input"], dir);
        // Prove the token is genuinely valid under the weak key.
        let public = RsaPublicKeyComponents {
            n: self.n.clone(),
            e: vec![1u8, 0, 1],
        };
        public
            .verify(
                &signature::RSA_PKCS1_1024_8192_SHA256_FOR_LEGACY_USE_ONLY,
                input.as_bytes(),
                &sig,
            )
            .expect("openssl signature verifies under the 1024-bit key");
        format!("{input}.{}", b64(sig))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weak_rsa_and_encryption_keys_are_dropped_at_load() {
    let name = "rej-dropped-keys";
    let dir = tempfile::tempdir().expect("tempdir");
    let weak = weak_rsa(dir.path());
    assert_eq!(weak.n.len(), 128, "1024-bit modulus");
    let weak_jwk = json!({
        "kty": "RSA", "kid": "weak", "alg": "RS256", "use": "sig",
        "n": b64(&weak.n), "e": "AQAB",
    });
    let enc = TestKey::generate("RS256", "enc").expect("keygen");
    let mut enc_jwk = enc.public_jwk();
    enc_jwk["use"] = json!("enc");
    let good = TestKey::generate("RS256", "k1").expect("keygen");
    let issuer = MockIssuer::start(vec![weak_jwk, enc_jwk, good.public_jwk()])
        .await
        .expect("issuer");
    let h = Harness::start_with_issuer(
        Opts {
            issuer_name: Some(name.into()),
            ..Opts::default()
        },
        issuer,
        vec![good],
    )
    .await;
    let dropped = format!("tokenreview_proxy_jwks_dropped_keys{{issuer=\"{name}\"}}");
    assert_eq!(h.metric(&dropped).await, 2.0, "{}", h.metrics().await);
    let keys = format!("tokenreview_proxy_jwks_keys{{issuer=\"{name}\"}}");
    assert_eq!(h.metric(&keys).await, 1.0, "{}", h.metrics().await);

    let c = dev::kube_claims(&h.spec());
    expect_rejected(&h, &weak.sign(dir.path(), "weak", &c), "unknown_key").await;
    expect_rejected(&h, &enc.sign(&c), "unknown_key").await;
    expect_accepted(&h, &h.token()).await;
}

// ---- Authorization header shapes and sizes ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_over_max_header_bytes_is_431() {
    let h = Harness::start_with(Opts {
        server_extra: "max_header_bytes = 4096".into(),
        ..Opts::default()
    })
    .await;
    let mut c = dev::kube_claims(&h.spec());
    c["pad"] = json!("x".repeat(3400));
    let big = h.key().sign(&c);
    assert!(big.len() > 4096 && big.len() < 6000, "{}", big.len());
    let before = h.upstream.request_count();
    let r = h.get_with_token("/big", &big, &[]).await;
    assert_eq!(r.status, 431, "{}", r.text());
    assert_eq!(h.upstream.request_count(), before);
    assert_not_echoed(&r, &big, "too_large");
    // A token comfortably under the limit with the same claims shape is accepted.
    c["pad"] = json!("x".repeat(1500));
    let fits = h.key().sign(&c);
    assert!(fits.len() < 4000, "{}", fits.len());
    expect_accepted(&h, &fits).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization_header_shapes() {
    let h = Harness::start().await;
    let token = h.token();
    let before = h.upstream.request_count();

    let r = get(&h.url("/none"), &[]).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.header("www-authenticate").as_deref(), Some(REALM));

    for value in ["Basic dXNlcjpwYXNz", "Bearer", "Bearer    ", "Token abc"] {
        let r = get(&h.url("/other-scheme"), &[("authorization", value)]).await;
        assert_eq!(r.status, 401, "{value}");
        assert_eq!(
            r.header("www-authenticate").as_deref(),
            Some(REALM),
            "{value}"
        );
    }
    // A Basic credential that happens to carry a valid token is still not a bearer.
    let basic = format!("Basic {token}");
    let r = get(&h.url("/basic-token"), &[("authorization", &basic)]).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.header("www-authenticate").as_deref(), Some(REALM));

    let auth = format!("Bearer {token}");
    let r = get(
        &h.url("/two"),
        &[("authorization", &auth), ("authorization", &auth)],
    )
    .await;
    assert_eq!(r.status, 400);
    assert_not_echoed(&r, &token, "two headers");
    assert_eq!(
        h.upstream.request_count(),
        before,
        "none of these is forwarded"
    );

    // Scheme matching is case-insensitive.
    for scheme in ["bearer", "BEARER", "Bearer"] {
        let value = format!("{scheme} {token}");
        let r = get(&h.url("/scheme"), &[("authorization", &value)]).await;
        assert_eq!(r.status, 200, "{scheme}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejection_metric_counts_by_issuer_and_reason() {
    let name = "rej-metric";
    let h = Harness::start_with(Opts {
        issuer_name: Some(name.into()),
        ..Opts::default()
    })
    .await;
    let series = |reason: &str| {
        format!("tokenreview_proxy_token_rejections_total{{issuer=\"{name}\",reason=\"{reason}\"}}")
    };
    let expired_before = h.metric(&series("expired")).await;
    let aud_before = h.metric(&series("audience_mismatch")).await;
    let mut c = dev::kube_claims(&h.spec());
    c["exp"] = json!(now() - 3600);
    c["iat"] = json!(now() - 7200);
    c["nbf"] = json!(now() - 7200);
    expect_rejected(&h, &h.key().sign(&c), "expired").await;
    assert_eq!(h.metric(&series("expired")).await, expired_before + 1.0);
    // A repeat (served from the negative cache) is counted too.
    c["jti"] = json!("second");
    let t = h.key().sign(&c);
    expect_rejected(&h, &t, "expired").await;
    expect_rejected(&h, &t, "expired").await;
    assert_eq!(h.metric(&series("expired")).await, expired_before + 3.0);
    assert_eq!(h.metric(&series("audience_mismatch")).await, aud_before);
}

// ---- Accepted tokens ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_tokens_of_every_algorithm_carry_the_identity() {
    let keys: Vec<TestKey> = [
        ("RS256", "rs"),
        ("PS256", "ps"),
        ("ES256", "es"),
        ("EdDSA", "ed"),
    ]
    .iter()
    .map(|(alg, kid)| TestKey::generate(alg, kid).expect("keygen"))
    .collect();
    let h = Harness::start_with(Opts {
        keys: Some(keys.clone()),
        ..Opts::default()
    })
    .await;
    for key in &keys {
        let spec = shop_spec(&h);
        let rec = expect_accepted(&h, &key.sign(&dev::kube_claims(&spec))).await;
        assert_identity(&rec, &spec);
        // Without a kid, the key is found by type.
        let spec = shop_spec(&h);
        let t = key.sign_with_header(&json!({ "alg": key.alg() }), &dev::kube_claims(&spec));
        assert_identity(&expect_accepted(&h, &t).await, &spec);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_from_an_independent_implementation_verifies() {
    let h = Harness::start().await;
    let spec = shop_spec(&h);
    let claims = dev::kube_claims(&spec);
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some("k1".into());
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(h.key().to_pkcs8_pem().as_bytes())
        .expect("pkcs8 pem");
    let token = jsonwebtoken::encode(&header, &claims, &key).expect("encode");
    assert_identity(&expect_accepted(&h, &token).await, &spec);
}

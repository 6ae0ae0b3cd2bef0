//! JWT signature-verification backends, one criterion group per algorithm
//! (RS256, PS256, ES256, EdDSA; RSA keys are 2048-bit).
//!
//! What is measured: the time to verify ONE compact JWS token
//! (`header.payload.signature`, Kubernetes service-account-like claims: 650
//! bytes of JSON payload) end to end for its signature: split the token,
//! base64url-decode the signature, verify it over the `header.payload` bytes.
//!
//! Why: on a verification-cache miss the per-request cost is dominated by
//! signature verification, so the backend choice sets the cost of every
//! uncached token. The product parses each key once, when the JWKS is loaded,
//! and verifies with that parsed key, so `aws_lc_parsed` is the candidate;
//! `jsonwebtoken_aws_lc` is the reference implementation (it also decodes the
//! header and claims JSON, which the product does after verification anyway);
//! the two `*_unparsed` rows show what parsing the key on every call costs,
//! which is what a ring-backed jsonwebtoken provider would do, since ring 0.17
//! has no pre-parsed RSA public key type. jsonwebtoken's `rust_crypto` backend
//! is excluded: per the project notes it is ~8x slower for RS256.
//!
//! Candidates:
//! - `jsonwebtoken_aws_lc`: `jsonwebtoken::decode` (11, `aws_lc_rs` provider)
//!   with a `DecodingKey` built once from the JWK components and a minimal
//!   `Validation` (no exp, aud or required claims), claims into a small struct.
//! - `ring_unparsed`: ring 0.17 `RsaPublicKeyComponents::verify` /
//!   `UnparsedPublicKey::verify`, the key parsed on every call.
//! - `aws_lc_unparsed`: the same calls in aws-lc-rs, the key parsed per call.
//! - `aws_lc_parsed`: aws-lc-rs `ParsedPublicKey` built once, then
//!   `verify_sig` per call.
//!
//! Keys are generated once per run with aws-lc-rs, tokens are signed with
//! aws-lc-rs, and each candidate sees the public key only as the base64url JWK
//! components (`n`, `e` / `x`, `y` / `x`) a JWKS would provide. Before timing,
//! every candidate must accept the valid token and reject the same token with
//! one signature byte flipped, so no row can be measuring a no-op.
//!
//! Run: `cargo bench --bench jwt_backends` (about 80 s). Results and how they
//! were read are in BENCHMARKS.md: on a shared 2-core machine other work only
//! ever adds time, so the fastest samples in criterion's `sample.json` agree
//! across runs to a few percent while the median can swing by 2x.

use std::hint::black_box;
use std::time::Duration;

use aws_lc_rs::digest;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, ParsedPublicKey, RsaKeyPair,
    RsaPublicKeyComponents, UnparsedPublicKey,
};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use criterion::{criterion_group, criterion_main, Criterion};
use serde::Deserialize;

const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
const SUBJECT: &str = "system:serviceaccount:payments-prod:ledger-reconciler";

/// The algorithms under test.
#[derive(Clone, Copy, Debug)]
enum Alg {
    Rs256,
    Ps256,
    Es256,
    EdDsa,
}

impl Alg {
    const ALL: [Alg; 4] = [Alg::Rs256, Alg::Ps256, Alg::Es256, Alg::EdDsa];

    fn name(self) -> &'static str {
        match self {
            Alg::Rs256 => "RS256",
            Alg::Ps256 => "PS256",
            Alg::Es256 => "ES256",
            Alg::EdDsa => "EdDSA",
        }
    }

    fn jsonwebtoken(self) -> jsonwebtoken::Algorithm {
        match self {
            Alg::Rs256 => jsonwebtoken::Algorithm::RS256,
            Alg::Ps256 => jsonwebtoken::Algorithm::PS256,
            Alg::Es256 => jsonwebtoken::Algorithm::ES256,
            Alg::EdDsa => jsonwebtoken::Algorithm::EdDSA,
        }
    }
}

/// Public key as a JWKS publishes it: base64url (no padding) components.
enum Jwk {
    Rsa { n: String, e: String },
    Ec { x: String, y: String },
    Okp { x: String },
}

/// Public key bytes as a key store holds them after decoding the JWK once.
enum RawKey {
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
    /// Uncompressed SEC1 point: `0x04 || x || y`.
    Ec {
        point: Vec<u8>,
    },
    Ed {
        x: Vec<u8>,
    },
}

impl RawKey {
    fn from_jwk(jwk: &Jwk) -> RawKey {
        let b64 = |s: &str| {
            URL_SAFE_NO_PAD
                .decode(s)
                .expect("JWK component is base64url")
        };
        match jwk {
            Jwk::Rsa { n, e } => RawKey::Rsa {
                n: b64(n),
                e: b64(e),
            },
            Jwk::Ec { x, y } => {
                let mut point = vec![0x04];
                point.extend(b64(x));
                point.extend(b64(y));
                RawKey::Ec { point }
            }
            Jwk::Okp { x } => RawKey::Ed { x: b64(x) },
        }
    }
}

/// One signed token, the same token with a flipped signature byte, and the
/// public key that verifies the first.
struct Fixture {
    alg: Alg,
    token: String,
    tampered: String,
    jwk: Jwk,
}

/// Claims shaped like a projected Kubernetes service-account token.
fn claims_json() -> String {
    let claims = serde_json::json!({
        "aud": ["https://kubernetes.default.svc.cluster.local", "tokenreview-proxy"],
        "exp": 1_795_000_000_u64,
        "iat": 1_794_996_400_u64,
        "iss": ISSUER,
        "jti": "6c1f5a7e-3b2d-4c8e-9f10-2a4b6d8e0c13",
        "kubernetes.io": {
            "namespace": "payments-prod",
            "node": {
                "name": "ip-10-42-17-203.eu-west-1.compute.internal",
                "uid": "0b7e2c51-94d3-4f6a-8e1b-5c2d7a9f3e40"
            },
            "pod": {
                "name": "ledger-reconciler-7d9f8b6c5d-x2k4q",
                "uid": "e4a1c9d2-6b3f-4e8a-b7c5-1d2e3f4a5b6c"
            },
            "serviceaccount": {
                "name": "ledger-reconciler",
                "uid": "9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a"
            },
            "warnafter": 1_794_999_000_u64
        },
        "nbf": 1_794_996_400_u64,
        "sub": SUBJECT
    });
    serde_json::to_string(&claims).expect("claims serialize")
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Signs a JWS signing input with the generated private key.
type Signer = Box<dyn Fn(&[u8]) -> Vec<u8>>;

/// Generates a key for `alg`, signs a token with it, and returns the fixture.
fn fixture(alg: Alg) -> Fixture {
    let rng = SystemRandom::new();
    // The signer is called with the signing input once the `kid` is known.
    let (public_der, jwk, sign): (Vec<u8>, Jwk, Signer) = match alg {
        Alg::Rs256 | Alg::Ps256 => {
            let pair = RsaKeyPair::generate(KeySize::Rsa2048).expect("RSA keygen");
            let public = pair.public_key();
            let jwk = Jwk::Rsa {
                n: b64(public.modulus().big_endian_without_leading_zero()),
                e: b64(public.exponent().big_endian_without_leading_zero()),
            };
            let der = public.as_ref().to_vec();
            let encoding: &'static dyn aws_lc_rs::signature::RsaEncoding = match alg {
                Alg::Rs256 => &aws_lc_rs::signature::RSA_PKCS1_SHA256,
                _ => &aws_lc_rs::signature::RSA_PSS_SHA256,
            };
            let sign = move |msg: &[u8]| {
                let mut sig = vec![0; pair.public_modulus_len()];
                pair.sign(encoding, &rng, msg, &mut sig).expect("RSA sign");
                sig
            };
            (der, jwk, Box::new(sign))
        }
        Alg::Es256 => {
            let pair =
                EcdsaKeyPair::generate(&aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING)
                    .expect("P-256 keygen");
            let point = pair.public_key().as_ref().to_vec();
            assert_eq!((point.len(), point[0]), (65, 0x04), "uncompressed point");
            let jwk = Jwk::Ec {
                x: b64(&point[1..33]),
                y: b64(&point[33..]),
            };
            let sign = move |msg: &[u8]| {
                let sig = pair.sign(&rng, msg).expect("ECDSA sign");
                sig.as_ref().to_vec()
            };
            (point, jwk, Box::new(sign))
        }
        Alg::EdDsa => {
            let pair = Ed25519KeyPair::generate().expect("Ed25519 keygen");
            let x = pair.public_key().as_ref().to_vec();
            let jwk = Jwk::Okp { x: b64(&x) };
            let sign = move |msg: &[u8]| pair.sign(msg).as_ref().to_vec();
            (x, jwk, Box::new(sign))
        }
    };

    // A `kid` the way Kubernetes derives one: a hash of the public key.
    let kid = b64(digest::digest(&digest::SHA256, &public_der).as_ref());
    let header = format!(r#"{{"alg":"{}","kid":"{kid}"}}"#, alg.name());
    let signing_input = format!(
        "{}.{}",
        b64(header.as_bytes()),
        b64(claims_json().as_bytes())
    );

    let mut signature = sign(signing_input.as_bytes());
    let token = format!("{signing_input}.{}", b64(&signature));
    let middle = signature.len() / 2;
    signature[middle] ^= 0x01;
    let tampered = format!("{signing_input}.{}", b64(&signature));

    Fixture {
        alg,
        token,
        tampered,
        jwk,
    }
}

/// Splits a compact JWS into the signing input (`header.payload`) and the
/// decoded signature. `None` if it is not three segments or not base64url.
fn split_jws(token: &str) -> Option<(&[u8], Vec<u8>)> {
    let (signing_input, signature) = token.rsplit_once('.')?;
    let (header, payload) = signing_input.split_once('.')?;
    if header.is_empty() || payload.is_empty() || payload.contains('.') {
        return None;
    }
    let signature = URL_SAFE_NO_PAD.decode(signature).ok()?;
    Some((signing_input.as_bytes(), signature))
}

/// A candidate: given the whole token, does its signature verify?
type Verifier = Box<dyn Fn(&str) -> bool>;

/// A candidate's name and how it builds its verifier (once, at "JWKS load").
type Candidate = (&'static str, fn(&Fixture) -> Verifier);

#[derive(Deserialize)]
struct Claims {
    iss: String,
    sub: String,
    exp: u64,
}

fn jsonwebtoken_aws_lc(fx: &Fixture) -> Verifier {
    let key = match &fx.jwk {
        Jwk::Rsa { n, e } => jsonwebtoken::DecodingKey::from_rsa_components(n, e),
        Jwk::Ec { x, y } => jsonwebtoken::DecodingKey::from_ec_components(x, y),
        Jwk::Okp { x } => jsonwebtoken::DecodingKey::from_ed_components(x),
    }
    .expect("jsonwebtoken DecodingKey");
    let mut validation = jsonwebtoken::Validation::new(fx.alg.jsonwebtoken());
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();

    let data = jsonwebtoken::decode::<Claims>(&fx.token, &key, &validation)
        .expect("jsonwebtoken accepts the valid token");
    assert_eq!(
        (data.claims.iss.as_str(), data.claims.sub.as_str()),
        (ISSUER, SUBJECT)
    );
    assert!(data.claims.exp > 0);

    Box::new(move |token| jsonwebtoken::decode::<Claims>(token, &key, &validation).is_ok())
}

fn ring_unparsed(fx: &Fixture) -> Verifier {
    use ring::signature as rs;
    let key = RawKey::from_jwk(&fx.jwk);
    match (fx.alg, key) {
        (Alg::Rs256 | Alg::Ps256, RawKey::Rsa { n, e }) => {
            let params = match fx.alg {
                Alg::Rs256 => &rs::RSA_PKCS1_2048_8192_SHA256,
                _ => &rs::RSA_PSS_2048_8192_SHA256,
            };
            Box::new(move |token| {
                split_jws(token).is_some_and(|(msg, sig)| {
                    let components = rs::RsaPublicKeyComponents { n: &n, e: &e };
                    components.verify(params, msg, &sig).is_ok()
                })
            })
        }
        (Alg::Es256, RawKey::Ec { point }) => Box::new(move |token| {
            split_jws(token).is_some_and(|(msg, sig)| {
                rs::UnparsedPublicKey::new(&rs::ECDSA_P256_SHA256_FIXED, &point)
                    .verify(msg, &sig)
                    .is_ok()
            })
        }),
        (Alg::EdDsa, RawKey::Ed { x }) => Box::new(move |token| {
            split_jws(token).is_some_and(|(msg, sig)| {
                rs::UnparsedPublicKey::new(&rs::ED25519, &x)
                    .verify(msg, &sig)
                    .is_ok()
            })
        }),
        (alg, _) => panic!("{alg:?}: key type does not match"),
    }
}

fn aws_lc_unparsed(fx: &Fixture) -> Verifier {
    use aws_lc_rs::signature as ls;
    let key = RawKey::from_jwk(&fx.jwk);
    match (fx.alg, key) {
        (Alg::Rs256 | Alg::Ps256, RawKey::Rsa { n, e }) => {
            let params = match fx.alg {
                Alg::Rs256 => &ls::RSA_PKCS1_2048_8192_SHA256,
                _ => &ls::RSA_PSS_2048_8192_SHA256,
            };
            Box::new(move |token| {
                split_jws(token).is_some_and(|(msg, sig)| {
                    let components = RsaPublicKeyComponents { n: &n, e: &e };
                    components.verify(params, msg, &sig).is_ok()
                })
            })
        }
        (Alg::Es256, RawKey::Ec { point }) => Box::new(move |token| {
            split_jws(token).is_some_and(|(msg, sig)| {
                UnparsedPublicKey::new(&ls::ECDSA_P256_SHA256_FIXED, &point)
                    .verify(msg, &sig)
                    .is_ok()
            })
        }),
        (Alg::EdDsa, RawKey::Ed { x }) => Box::new(move |token| {
            split_jws(token).is_some_and(|(msg, sig)| {
                UnparsedPublicKey::new(&ls::ED25519, &x)
                    .verify(msg, &sig)
                    .is_ok()
            })
        }),
        (alg, _) => panic!("{alg:?}: key type does not match"),
    }
}

fn aws_lc_parsed(fx: &Fixture) -> Verifier {
    use aws_lc_rs::signature as ls;
    let parsed = match (fx.alg, RawKey::from_jwk(&fx.jwk)) {
        (Alg::Rs256, RawKey::Rsa { n, e }) => RsaPublicKeyComponents { n: &n, e: &e }
            .to_parsed_public_key(&ls::RSA_PKCS1_2048_8192_SHA256),
        (Alg::Ps256, RawKey::Rsa { n, e }) => RsaPublicKeyComponents { n: &n, e: &e }
            .to_parsed_public_key(&ls::RSA_PSS_2048_8192_SHA256),
        (Alg::Es256, RawKey::Ec { point }) => {
            ParsedPublicKey::new(&ls::ECDSA_P256_SHA256_FIXED, point)
        }
        (Alg::EdDsa, RawKey::Ed { x }) => ParsedPublicKey::new(&ls::ED25519, x),
        (alg, _) => panic!("{alg:?}: key type does not match"),
    }
    .expect("aws-lc-rs parses the public key");
    Box::new(move |token| {
        split_jws(token).is_some_and(|(msg, sig)| parsed.verify_sig(msg, &sig).is_ok())
    })
}

fn jwt_backends(c: &mut Criterion) {
    // jsonwebtoken 11 picks its provider from crate features (only
    // `aws_lc_rs` is enabled); installing it explicitly documents the choice.
    // An `Err` only means a provider is already installed in this process.
    let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();

    let candidates: [Candidate; 4] = [
        ("jsonwebtoken_aws_lc", jsonwebtoken_aws_lc),
        ("ring_unparsed", ring_unparsed),
        ("aws_lc_unparsed", aws_lc_unparsed),
        ("aws_lc_parsed", aws_lc_parsed),
    ];

    for alg in Alg::ALL {
        let fx = fixture(alg);
        let mut group = c.benchmark_group(alg.name());
        for (name, build) in candidates {
            let verify = build(&fx);
            assert!(verify(&fx.token), "{name}/{alg:?} rejects the valid token");
            assert!(
                !verify(&fx.tampered),
                "{name}/{alg:?} accepts a token with a flipped signature byte"
            );
            group.bench_function(name, |b| b.iter(|| verify(black_box(&fx.token))));
        }
        group.finish();
    }
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50)
}

criterion_group! {
    name = benches;
    config = config();
    targets = jwt_backends
}
criterion_main!(benches);

//! Signing keys, JWKs and Kubernetes-shaped tokens for tests, `dev`, `mint` and `keygen`.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    self, EcdsaKeyPair, EcdsaSigningAlgorithm, Ed25519KeyPair, KeyPair as _, RsaEncoding,
    RsaKeyPair,
};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::PrivatePkcs8KeyDer;
use serde_json::{json, Value};

// ---- Keys and tokens ----

/// JWS algorithms this module can sign with.
pub const SIGNING_ALGS: &[&str] = &[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA",
];

/// Errors from generating, loading or using test keys.
#[derive(Debug, thiserror::Error)]
pub enum DevError {
    #[error("unsupported JWS algorithm {0:?} (supported: {list})", list = SIGNING_ALGS.join(", "))]
    UnsupportedAlg(String),
    #[error("unsupported RSA key size {0} bits (supported: 2048, 3072, 4096)")]
    UnsupportedRsaBits(usize),
    #[error("{0}")]
    Pem(String),
    #[error("private key cannot be used with {alg}: {reason}")]
    KeyRejected { alg: String, reason: String },
    #[error("generating a {0} key failed")]
    Generate(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// What an algorithm name asks of the key.
#[derive(Clone, Copy)]
enum KeyKind {
    Rsa(&'static dyn RsaEncoding),
    Ec(&'static EcdsaSigningAlgorithm),
    Ed25519,
}

fn key_kind(alg: &str) -> Result<KeyKind, DevError> {
    Ok(match alg {
        "RS256" => KeyKind::Rsa(&signature::RSA_PKCS1_SHA256),
        "RS384" => KeyKind::Rsa(&signature::RSA_PKCS1_SHA384),
        "RS512" => KeyKind::Rsa(&signature::RSA_PKCS1_SHA512),
        "PS256" => KeyKind::Rsa(&signature::RSA_PSS_SHA256),
        "PS384" => KeyKind::Rsa(&signature::RSA_PSS_SHA384),
        "PS512" => KeyKind::Rsa(&signature::RSA_PSS_SHA512),
        "ES256" => KeyKind::Ec(&signature::ECDSA_P256_SHA256_FIXED_SIGNING),
        "ES384" => KeyKind::Ec(&signature::ECDSA_P384_SHA384_FIXED_SIGNING),
        "ES512" => KeyKind::Ec(&signature::ECDSA_P521_SHA512_FIXED_SIGNING),
        "EdDSA" => KeyKind::Ed25519,
        other => return Err(DevError::UnsupportedAlg(other.to_owned())),
    })
}

enum Signer {
    Rsa(RsaKeyPair, &'static dyn RsaEncoding),
    Ec(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

/// A private signing key with its JWS `alg` and `kid`; clones share the key.
#[derive(Clone)]
pub struct TestKey {
    alg: String,
    kid: String,
    signer: Arc<Signer>,
}

impl std::fmt::Debug for TestKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print private key material.
        f.debug_struct("TestKey")
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .finish()
    }
}

impl TestKey {
    /// RS*/PS* get RSA 2048, ES256 P-256, ES384 P-384, ES512 P-521 and EdDSA Ed25519.
    pub fn generate(alg: &str, kid: &str) -> Result<TestKey, DevError> {
        let generated = || DevError::Generate(alg.to_owned());
        let signer = match key_kind(alg)? {
            KeyKind::Rsa(_) => return Self::generate_rsa_bits(alg, kid, 2048),
            KeyKind::Ec(curve) => {
                Signer::Ec(EcdsaKeyPair::generate(curve).map_err(|_| generated())?)
            }
            KeyKind::Ed25519 => {
                Signer::Ed25519(Ed25519KeyPair::generate().map_err(|_| generated())?)
            }
        };
        Ok(Self::new(alg, kid, signer))
    }

    /// An RSA key of `bits` (2048, 3072 or 4096) for an RS*/PS* `alg`.
    pub fn generate_rsa_bits(alg: &str, kid: &str, bits: usize) -> Result<TestKey, DevError> {
        let KeyKind::Rsa(encoding) = key_kind(alg)? else {
            return Err(DevError::KeyRejected {
                alg: alg.to_owned(),
                reason: "an RSA key needs an RS* or PS* algorithm".to_owned(),
            });
        };
        let size = match bits {
            2048 => KeySize::Rsa2048,
            3072 => KeySize::Rsa3072,
            4096 => KeySize::Rsa4096,
            other => return Err(DevError::UnsupportedRsaBits(other)),
        };
        let pair = RsaKeyPair::generate(size).map_err(|_| DevError::Generate(alg.to_owned()))?;
        Ok(Self::new(alg, kid, Signer::Rsa(pair, encoding)))
    }

    /// Loads an unencrypted PKCS#8 (`-----BEGIN PRIVATE KEY-----`) key; the
    /// key type must fit `alg`.
    pub fn from_pkcs8_pem(pem: &str, alg: &str, kid: &str) -> Result<TestKey, DevError> {
        let kind = key_kind(alg)?;
        let der = PrivatePkcs8KeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| {
            DevError::Pem(format!("expected a PKCS#8 \"PRIVATE KEY\" PEM block: {e}"))
        })?;
        let der = der.secret_pkcs8_der();
        let rejected = |e: aws_lc_rs::error::KeyRejected| DevError::KeyRejected {
            alg: alg.to_owned(),
            reason: e.to_string(),
        };
        let signer = match kind {
            KeyKind::Rsa(encoding) => {
                Signer::Rsa(RsaKeyPair::from_pkcs8(der).map_err(rejected)?, encoding)
            }
            KeyKind::Ec(curve) => {
                Signer::Ec(EcdsaKeyPair::from_pkcs8(curve, der).map_err(rejected)?)
            }
            KeyKind::Ed25519 => Signer::Ed25519(Ed25519KeyPair::from_pkcs8(der).map_err(rejected)?),
        };
        Ok(Self::new(alg, kid, signer))
    }

    fn new(alg: &str, kid: &str, signer: Signer) -> Self {
        TestKey {
            alg: alg.to_owned(),
            kid: kid.to_owned(),
            signer: Arc::new(signer),
        }
    }

    /// PKCS#8 v1 PEM of the private key.
    pub fn to_pkcs8_pem(&self) -> String {
        let der = match self.signer.as_ref() {
            Signer::Rsa(pair, _) => AsDer::<Pkcs8V1Der>::as_der(pair).map(|d| d.as_ref().to_vec()),
            Signer::Ec(pair) => pair.to_pkcs8v1().map(|d| d.as_ref().to_vec()),
            Signer::Ed25519(pair) => AsDer::<Pkcs8V1Der>::as_der(pair).map(|d| d.as_ref().to_vec()),
        };
        pem_encode(
            "PRIVATE KEY",
            &der.expect("serializing an in-memory key to PKCS#8"),
        )
    }

    pub fn alg(&self) -> &str {
        &self.alg
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// Public JWK with `kid`, `alg` and `"use":"sig"`; coordinates are
    /// unpadded base64url, RSA `n`/`e` without leading zero bytes.
    pub fn public_jwk(&self) -> Value {
        let mut jwk = match self.signer.as_ref() {
            Signer::Rsa(pair, _) => {
                let public = pair.public_key();
                json!({
                    "kty": "RSA",
                    "n": b64url(public.modulus().big_endian_without_leading_zero()),
                    "e": b64url(public.exponent().big_endian_without_leading_zero()),
                })
            }
            Signer::Ec(pair) => {
                // Uncompressed SEC1 point: 0x04 || x || y.
                let point = pair.public_key().as_ref();
                let coords = point.get(1..).unwrap_or_default();
                let (x, y) = coords.split_at(coords.len() / 2);
                let crv = match x.len() {
                    66 => "P-521",
                    48 => "P-384",
                    _ => "P-256",
                };
                json!({ "kty": "EC", "crv": crv, "x": b64url(x), "y": b64url(y) })
            }
            Signer::Ed25519(pair) => {
                json!({ "kty": "OKP", "crv": "Ed25519", "x": b64url(pair.public_key().as_ref()) })
            }
        };
        jwk["kid"] = json!(self.kid);
        jwk["alg"] = json!(self.alg);
        jwk["use"] = json!("sig");
        jwk
    }

    /// Compact JWS with header `{"alg","kid","typ":"JWT"}`.
    pub fn sign(&self, claims: &Value) -> String {
        let header = json!({ "alg": self.alg, "kid": self.kid, "typ": "JWT" });
        self.sign_with_header(&header, claims)
    }

    /// Compact JWS with exactly this header, signed with this key's alg.
    pub fn sign_with_header(&self, header: &Value, claims: &Value) -> String {
        self.sign_raw(&header.to_string(), &claims.to_string())
    }

    /// Compact JWS over raw header and payload JSON text (used as-is).
    pub fn sign_raw(&self, header_json: &str, payload_json: &str) -> String {
        let input = format!("{}.{}", b64url(header_json), b64url(payload_json));
        let signature = self.signature(input.as_bytes());
        format!("{input}.{}", b64url(signature))
    }

    fn signature(&self, message: &[u8]) -> Vec<u8> {
        const MSG: &str = "signing with a validated in-memory key";
        match self.signer.as_ref() {
            Signer::Rsa(pair, encoding) => {
                let mut out = vec![0; pair.public_modulus_len()];
                pair.sign(*encoding, &SystemRandom::new(), message, &mut out)
                    .expect(MSG);
                out
            }
            Signer::Ec(pair) => pair
                .sign(&SystemRandom::new(), message)
                .expect(MSG)
                .as_ref()
                .to_vec(),
            Signer::Ed25519(pair) => pair.sign(message).as_ref().to_vec(),
        }
    }
}

/// `{"keys": [...]}`.
pub fn jwks(keys: &[Value]) -> Value {
    json!({ "keys": keys })
}

fn b64url(data: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(data)
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    let _ = writeln!(out, "-----END {label}-----");
    out
}

pub(super) fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// Current time in unix seconds.
pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A random RFC 4122 version-4 UUID string.
pub fn random_uuid() -> String {
    let mut b = [0u8; 16];
    // The system RNG does not fail in practice; a zero UUID is harmless here.
    let _ = SystemRandom::new().fill(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let mut uuid = hex(&b);
    for dash in [20, 16, 12, 8] {
        uuid.insert(dash, '-');
    }
    uuid
}

/// Parameters of a Kubernetes projected service-account token.
#[derive(Clone, Debug)]
pub struct KubeTokenSpec {
    pub issuer: String,
    pub audiences: Vec<String>,
    pub namespace: String,
    pub service_account: String,
    pub service_account_uid: String,
    /// (name, uid)
    pub pod: Option<(String, String)>,
    /// (name, uid)
    pub node: Option<(String, String)>,
    pub ttl_secs: u64,
    pub jti: Option<String>,
    /// Seconds after `iat`.
    pub warnafter_secs: Option<u64>,
}

impl KubeTokenSpec {
    /// `default/default` service account bound to pod `demo-pod` on `node-1`,
    /// one hour TTL, random uids and jti, no `warnafter`.
    pub fn new(issuer: &str, audience: &str) -> Self {
        KubeTokenSpec {
            issuer: issuer.to_owned(),
            audiences: vec![audience.to_owned()],
            namespace: "default".to_owned(),
            service_account: "default".to_owned(),
            service_account_uid: random_uuid(),
            pod: Some(("demo-pod".to_owned(), random_uuid())),
            node: Some(("node-1".to_owned(), random_uuid())),
            ttl_secs: 3600,
            jti: Some(random_uuid()),
            warnafter_secs: None,
        }
    }
}

/// Claims as kube-apiserver issues them for a bound projected token;
/// `iat` = `nbf` = now.
pub fn kube_claims(spec: &KubeTokenSpec) -> Value {
    let now = now_unix();
    let mut kube = json!({
        "namespace": spec.namespace,
        "serviceaccount": { "name": spec.service_account, "uid": spec.service_account_uid },
    });
    if let Some((name, uid)) = &spec.pod {
        kube["pod"] = json!({ "name": name, "uid": uid });
    }
    if let Some((name, uid)) = &spec.node {
        kube["node"] = json!({ "name": name, "uid": uid });
    }
    if let Some(after) = spec.warnafter_secs {
        kube["warnafter"] = json!(now.saturating_add(after));
    }
    let mut claims = json!({
        "aud": spec.audiences,
        "exp": now.saturating_add(spec.ttl_secs),
        "iat": now,
        "nbf": now,
        "iss": spec.issuer,
        "sub": format!("system:serviceaccount:{}:{}", spec.namespace, spec.service_account),
        "kubernetes.io": kube,
    });
    if let Some(jti) = &spec.jti {
        claims["jti"] = json!(jti);
    }
    claims
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::signature::{RsaPublicKeyComponents, UnparsedPublicKey, VerificationAlgorithm};

    fn b64d(s: &str) -> Vec<u8> {
        URL_SAFE_NO_PAD.decode(s).unwrap()
    }

    /// Verifies `token` using nothing but the public JWK.
    fn verify_with_jwk(token: &str, jwk: &Value) -> bool {
        let (input, sig) = token.rsplit_once('.').unwrap();
        let (input, sig) = (input.as_bytes(), b64d(sig));
        let field = |name: &str| b64d(jwk[name].as_str().unwrap());
        let alg: &'static dyn VerificationAlgorithm = match jwk["alg"].as_str().unwrap() {
            "ES256" => &signature::ECDSA_P256_SHA256_FIXED,
            "ES384" => &signature::ECDSA_P384_SHA384_FIXED,
            "ES512" => &signature::ECDSA_P521_SHA512_FIXED,
            "EdDSA" => &signature::ED25519,
            rsa => {
                let params = if rsa == "PS256" {
                    &signature::RSA_PSS_2048_8192_SHA256
                } else {
                    &signature::RSA_PKCS1_2048_8192_SHA256
                };
                let public = RsaPublicKeyComponents {
                    n: field("n"),
                    e: field("e"),
                };
                return public.verify(params, input, &sig).is_ok();
            }
        };
        let public = match jwk["kty"].as_str().unwrap() {
            "EC" => [vec![4], field("x"), field("y")].concat(),
            _ => field("x"),
        };
        UnparsedPublicKey::new(alg, public)
            .verify(input, &sig)
            .is_ok()
    }

    #[test]
    fn sign_then_verify_each_alg() {
        for alg in ["RS256", "PS256", "ES256", "ES384", "ES512", "EdDSA"] {
            let key = TestKey::generate(alg, "k1").unwrap();
            let token = key.sign(&json!({ "sub": "x" }));
            let header: Value =
                serde_json::from_slice(&b64d(token.split('.').next().unwrap())).unwrap();
            assert_eq!(header, json!({ "alg": alg, "kid": "k1", "typ": "JWT" }));
            assert!(verify_with_jwk(&token, &key.public_jwk()), "{alg}");
            let tampered = key.sign(&json!({ "sub": "y" }));
            let (body, _) = tampered.rsplit_once('.').unwrap();
            let forged = format!("{body}.{}", token.rsplit_once('.').unwrap().1);
            assert!(!verify_with_jwk(&forged, &key.public_jwk()), "{alg} forged");
            let reloaded = TestKey::from_pkcs8_pem(&key.to_pkcs8_pem(), alg, "k1").unwrap();
            assert_eq!(reloaded.public_jwk(), key.public_jwk());
        }
    }

    #[test]
    fn jwk_shapes() {
        let rsa = TestKey::generate("RS256", "r").unwrap().public_jwk();
        assert_eq!(
            (rsa["kty"].as_str(), rsa["e"].as_str()),
            (Some("RSA"), Some("AQAB"))
        );
        let n = b64d(rsa["n"].as_str().unwrap());
        assert!(n.len() == 256 && n[0] != 0);
        let ec = TestKey::generate("ES384", "e").unwrap().public_jwk();
        assert_eq!(ec["crv"], "P-384");
        assert_eq!(b64d(ec["y"].as_str().unwrap()).len(), 48);
        let p521 = TestKey::generate("ES512", "e5").unwrap().public_jwk();
        assert_eq!(p521["crv"], "P-521");
        assert_eq!(b64d(p521["x"].as_str().unwrap()).len(), 66);
        let ed = TestKey::generate("EdDSA", "d").unwrap().public_jwk();
        assert_eq!(
            (ed["kty"].as_str(), ed["use"].as_str()),
            (Some("OKP"), Some("sig"))
        );
        for jwk in [&rsa, &ec, &ed] {
            let text = jwk.to_string();
            assert!(!text.contains(['=', '+', '/']), "{text}");
        }
    }
}

//! Issuer keys: JWKS parsing with every check done once at load time, immutable [`KeySet`]s,
//! and the per-issuer [`KeyStore`] that swaps them atomically (`arc-swap`; readers never block).
//!
//! Public keys are parsed into aws-lc-rs `ParsedPublicKey`s when the JWKS loads, so a request
//! pays only the signature check (see BENCHMARKS.md for why this backend).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use aws_lc_rs::signature::{self, ParsedPublicKey, RsaPublicKeyComponents, VerificationAlgorithm};
use base64::Engine;
use serde::Deserialize;

/// JWS algorithms the product can verify. `none` and `HS*` have no variant: they cannot be
/// configured and are never accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(clippy::upper_case_acronyms)]
pub enum Alg {
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    ES512,
    EdDSA,
}

/// Key families, as the JWK `kty`/`crv` pair names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    Rsa,
    P256,
    P384,
    P521,
    Ed25519,
}

impl Alg {
    pub const ALL: [Alg; 10] = [
        Alg::RS256,
        Alg::RS384,
        Alg::RS512,
        Alg::PS256,
        Alg::PS384,
        Alg::PS512,
        Alg::ES256,
        Alg::ES384,
        Alg::ES512,
        Alg::EdDSA,
    ];

    pub fn parse(s: &str) -> Option<Alg> {
        Alg::ALL.into_iter().find(|a| a.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Alg::RS256 => "RS256",
            Alg::RS384 => "RS384",
            Alg::RS512 => "RS512",
            Alg::PS256 => "PS256",
            Alg::PS384 => "PS384",
            Alg::PS512 => "PS512",
            Alg::ES256 => "ES256",
            Alg::ES384 => "ES384",
            Alg::ES512 => "ES512",
            Alg::EdDSA => "EdDSA",
        }
    }

    pub fn key_type(self) -> KeyType {
        match self {
            Alg::RS256 | Alg::RS384 | Alg::RS512 | Alg::PS256 | Alg::PS384 | Alg::PS512 => {
                KeyType::Rsa
            }
            Alg::ES256 => KeyType::P256,
            Alg::ES384 => KeyType::P384,
            Alg::ES512 => KeyType::P521,
            Alg::EdDSA => KeyType::Ed25519,
        }
    }

    fn verification(self) -> &'static dyn VerificationAlgorithm {
        match self {
            Alg::RS256 => &signature::RSA_PKCS1_2048_8192_SHA256,
            Alg::RS384 => &signature::RSA_PKCS1_2048_8192_SHA384,
            Alg::RS512 => &signature::RSA_PKCS1_2048_8192_SHA512,
            Alg::PS256 => &signature::RSA_PSS_2048_8192_SHA256,
            Alg::PS384 => &signature::RSA_PSS_2048_8192_SHA384,
            Alg::PS512 => &signature::RSA_PSS_2048_8192_SHA512,
            Alg::ES256 => &signature::ECDSA_P256_SHA256_FIXED,
            Alg::ES384 => &signature::ECDSA_P384_SHA384_FIXED,
            Alg::ES512 => &signature::ECDSA_P521_SHA512_FIXED,
            Alg::EdDSA => &signature::ED25519,
        }
    }

    fn rsa_params(self) -> Option<&'static signature::RsaParameters> {
        Some(match self {
            Alg::RS256 => &signature::RSA_PKCS1_2048_8192_SHA256,
            Alg::RS384 => &signature::RSA_PKCS1_2048_8192_SHA384,
            Alg::RS512 => &signature::RSA_PKCS1_2048_8192_SHA512,
            Alg::PS256 => &signature::RSA_PSS_2048_8192_SHA256,
            Alg::PS384 => &signature::RSA_PSS_2048_8192_SHA384,
            Alg::PS512 => &signature::RSA_PSS_2048_8192_SHA512,
            _ => return None,
        })
    }
}

/// One verification key, parsed once, for every allowed algorithm its type supports.
pub struct VerifyingKey {
    pub kid: Option<String>,
    pub key_type: KeyType,
    /// Process-unique identity of this key material. Cached verification results remember it,
    /// so a key that leaves the JWKS stops vouching for them at once. 32 bits (every cache
    /// entry stores one): only new key material takes a number, and refetches are rate
    /// limited, so four billion of them are out of reach.
    pub serial: u32,
    /// SHA-256 over the canonical public material: unchanged keys keep their serial across
    /// refreshes.
    pub thumbprint: [u8; 32],
    verifiers: Vec<(Alg, ParsedPublicKey)>,
}

impl std::fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("kid", &self.kid)
            .field("key_type", &self.key_type)
            .field("serial", &self.serial)
            .finish()
    }
}

impl VerifyingKey {
    /// `None` when this key is not usable with `alg` (wrong type, or the JWK pinned another alg).
    pub fn verifier(&self, alg: Alg) -> Option<&ParsedPublicKey> {
        self.verifiers
            .iter()
            .find(|(a, _)| *a == alg)
            .map(|(_, k)| k)
    }

    pub fn verify(&self, alg: Alg, message: &[u8], sig: &[u8]) -> bool {
        match self.verifier(alg) {
            Some(k) => k.verify_sig(message, sig).is_ok(),
            None => false,
        }
    }
}

/// An immutable set of an issuer's keys. Replaced whole, never mutated.
#[derive(Debug, Default)]
pub struct KeySet {
    pub keys: Vec<Arc<VerifyingKey>>,
    by_kid: HashMap<String, usize>,
}

impl KeySet {
    /// First 16 hex characters of SHA-256 over the sorted key ids and key material: replicas
    /// that show different values after a rotation hold different keys.
    pub fn fingerprint(&self) -> String {
        let mut parts: Vec<(&str, &[u8; 32])> = self
            .keys
            .iter()
            .map(|k| (k.kid.as_deref().unwrap_or(""), &k.thumbprint))
            .collect();
        parts.sort();
        let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        for (kid, thumb) in parts {
            ctx.update(&(kid.len() as u64).to_le_bytes());
            ctx.update(kid.as_bytes());
            ctx.update(thumb);
        }
        ctx.finish().as_ref()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    pub fn new(keys: Vec<Arc<VerifyingKey>>) -> KeySet {
        let mut by_kid = HashMap::with_capacity(keys.len());
        for (i, k) in keys.iter().enumerate() {
            if let Some(kid) = &k.kid {
                by_kid.entry(kid.clone()).or_insert(i);
            }
        }
        KeySet { keys, by_kid }
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn by_kid(&self, kid: &str) -> Option<&Arc<VerifyingKey>> {
        self.by_kid.get(kid).map(|&i| &self.keys[i])
    }

    /// Whether the key with this serial is still in the set (a handful of keys: a scan).
    pub fn contains_serial(&self, serial: u32) -> bool {
        self.keys.iter().any(|k| k.serial == serial)
    }

    pub fn kids(&self) -> Vec<String> {
        self.keys
            .iter()
            .map(|k| k.kid.clone().unwrap_or_else(|| "(no kid)".into()))
            .collect()
    }
}

/// Why a JWK was dropped at load time. `as_str` values label metrics and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    Symmetric,
    Encryption,
    WeakRsa,
    UnsupportedType,
    AlgMismatch,
    AlgNotAllowed,
    Malformed,
}

impl DropReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Symmetric => "symmetric key (oct)",
            DropReason::Encryption => "use is not sig",
            DropReason::WeakRsa => "RSA key under 2048 bits",
            DropReason::UnsupportedType => "unsupported kty or crv",
            DropReason::AlgMismatch => "alg does not fit kty/crv",
            DropReason::AlgNotAllowed => "alg not in the issuer's allow-list",
            DropReason::Malformed => "malformed key material",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("JWKS is not valid JSON of the form {{\"keys\": [...]}}: {0}")]
    NotJson(String),
    #[error("JWKS has no usable key ({0} dropped)")]
    NoUsableKey(usize),
}

#[derive(Deserialize)]
struct RawJwks {
    keys: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct RawJwk {
    kty: Option<String>,
    kid: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    alg: Option<String>,
    crv: Option<String>,
    n: Option<String>,
    e: Option<String>,
    x: Option<String>,
    y: Option<String>,
}

/// The outcome of loading a JWKS document.
#[derive(Debug)]
pub struct ParsedJwks {
    pub keys: Vec<Arc<VerifyingKey>>,
    pub dropped: Vec<(Option<String>, DropReason)>,
}

static NEXT_SERIAL: AtomicU32 = AtomicU32::new(1);

fn b64(s: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .ok()
}

/// Parse a JWKS, keeping only keys usable with `allowed` algorithms. `previous` lets unchanged
/// keys keep their identity (serial) across refreshes.
pub fn parse_jwks(
    body: &[u8],
    allowed: &[Alg],
    previous: Option<&KeySet>,
) -> Result<ParsedJwks, JwksError> {
    let raw: RawJwks =
        serde_json::from_slice(body).map_err(|e| JwksError::NotJson(e.to_string()))?;
    let mut keys = Vec::new();
    let mut dropped = Vec::new();
    for value in raw.keys {
        let kid_hint = value.get("kid").and_then(|k| k.as_str()).map(String::from);
        match parse_jwk(value, allowed) {
            Ok(mut key) => {
                let reused = previous.and_then(|p| {
                    p.keys
                        .iter()
                        .find(|k| k.thumbprint == key.thumbprint && k.kid == key.kid)
                        .cloned()
                });
                match reused {
                    Some(k) => keys.push(k),
                    None => {
                        key.serial = NEXT_SERIAL.fetch_add(1, Ordering::Relaxed);
                        keys.push(Arc::new(key));
                    }
                }
            }
            Err(reason) => dropped.push((kid_hint, reason)),
        }
    }
    if keys.is_empty() {
        return Err(JwksError::NoUsableKey(dropped.len()));
    }
    Ok(ParsedJwks { keys, dropped })
}

fn parse_jwk(value: serde_json::Value, allowed: &[Alg]) -> Result<VerifyingKey, DropReason> {
    let jwk: RawJwk = serde_json::from_value(value).map_err(|_| DropReason::Malformed)?;
    let kty = jwk.kty.as_deref().ok_or(DropReason::Malformed)?;
    if kty == "oct" {
        return Err(DropReason::Symmetric);
    }
    if let Some(u) = &jwk.use_ {
        if u != "sig" {
            return Err(DropReason::Encryption);
        }
    }
    let key_type = match (kty, jwk.crv.as_deref()) {
        ("RSA", _) => KeyType::Rsa,
        ("EC", Some("P-256")) => KeyType::P256,
        ("EC", Some("P-384")) => KeyType::P384,
        ("EC", Some("P-521")) => KeyType::P521,
        ("OKP", Some("Ed25519")) => KeyType::Ed25519,
        _ => return Err(DropReason::UnsupportedType),
    };
    let pinned = match &jwk.alg {
        Some(a) => {
            let alg = Alg::parse(a).ok_or(DropReason::AlgMismatch)?;
            if alg.key_type() != key_type {
                return Err(DropReason::AlgMismatch);
            }
            Some(alg)
        }
        None => None,
    };
    let algs: Vec<Alg> = allowed
        .iter()
        .copied()
        .filter(|a| a.key_type() == key_type && pinned.is_none_or(|p| p == *a))
        .collect();
    if algs.is_empty() {
        return Err(DropReason::AlgNotAllowed);
    }

    let mut material = Vec::new();
    let mut verifiers = Vec::with_capacity(algs.len());
    match key_type {
        KeyType::Rsa => {
            let n = jwk
                .n
                .as_deref()
                .and_then(b64)
                .ok_or(DropReason::Malformed)?;
            let e = jwk
                .e
                .as_deref()
                .and_then(b64)
                .ok_or(DropReason::Malformed)?;
            // Big-endian without leading zeros (RFC 7518 6.3.1.1); tolerate one leading zero.
            let n = strip_leading_zeros(&n);
            let e = strip_leading_zeros(&e);
            if n.is_empty() || e.is_empty() || e.len() > 4 {
                return Err(DropReason::Malformed);
            }
            let bits = n.len() * 8 - n[0].leading_zeros() as usize;
            if bits < 2048 {
                return Err(DropReason::WeakRsa);
            }
            if bits > 8192 {
                return Err(DropReason::Malformed);
            }
            let comps = RsaPublicKeyComponents { n, e };
            for alg in algs {
                let params = alg.rsa_params().ok_or(DropReason::Malformed)?;
                let parsed = comps
                    .to_parsed_public_key(params)
                    .map_err(|_| DropReason::Malformed)?;
                verifiers.push((alg, parsed));
            }
            material.extend_from_slice(b"RSA\0");
            material.extend_from_slice(n);
            material.push(0);
            material.extend_from_slice(e);
        }
        KeyType::P256 | KeyType::P384 | KeyType::P521 => {
            // Coordinates are exactly the field size (RFC 7518 6.2.1.2): P-521 takes 66 bytes.
            let len = match key_type {
                KeyType::P256 => 32,
                KeyType::P384 => 48,
                _ => 66,
            };
            let x = jwk
                .x
                .as_deref()
                .and_then(b64)
                .ok_or(DropReason::Malformed)?;
            let y = jwk
                .y
                .as_deref()
                .and_then(b64)
                .ok_or(DropReason::Malformed)?;
            if x.len() != len || y.len() != len {
                return Err(DropReason::Malformed);
            }
            let mut point = Vec::with_capacity(1 + 2 * len);
            point.push(4);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            for alg in algs {
                let parsed = ParsedPublicKey::new(alg.verification(), &point)
                    .map_err(|_| DropReason::Malformed)?;
                verifiers.push((alg, parsed));
            }
            material.extend_from_slice(b"EC\0");
            material.extend_from_slice(&point);
        }
        KeyType::Ed25519 => {
            let x = jwk
                .x
                .as_deref()
                .and_then(b64)
                .ok_or(DropReason::Malformed)?;
            if x.len() != 32 {
                return Err(DropReason::Malformed);
            }
            for alg in algs {
                let parsed = ParsedPublicKey::new(alg.verification(), &x)
                    .map_err(|_| DropReason::Malformed)?;
                verifiers.push((alg, parsed));
            }
            material.extend_from_slice(b"OKP\0");
            material.extend_from_slice(&x);
        }
    }
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &material);
    let mut thumbprint = [0u8; 32];
    thumbprint.copy_from_slice(digest.as_ref());
    Ok(VerifyingKey {
        kid: jwk.kid,
        key_type,
        serial: 0,
        thumbprint,
        verifiers,
    })
}

fn strip_leading_zeros(b: &[u8]) -> &[u8] {
    let first = b.iter().position(|&x| x != 0).unwrap_or(b.len());
    &b[first..]
}

/// Unix time in milliseconds.
pub fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The current keys of one issuer, plus when they were last confirmed by the issuer.
///
/// Reads are one `ArcSwap::load`; writers (the refresher) build a complete [`KeySet`] and swap.
pub struct KeyStore {
    set: ArcSwap<KeySet>,
    /// Unix ms of the last successful fetch (0 = never). A refresh that finds the same keys
    /// counts as success.
    last_success_ms: AtomicU64,
    /// Serve the last good set this long without a successful fetch; `None` = forever
    /// (static keys from a file).
    max_stale: Option<Duration>,
}

impl KeyStore {
    pub fn new(max_stale: Option<Duration>) -> KeyStore {
        KeyStore {
            set: ArcSwap::from_pointee(KeySet::default()),
            last_success_ms: AtomicU64::new(0),
            max_stale,
        }
    }

    /// The current set, if it is usable (non-empty and not older than `max_stale`).
    pub fn usable(&self) -> Option<arc_swap::Guard<Arc<KeySet>>> {
        let set = self.set.load();
        if set.is_empty() || self.is_stale() {
            return None;
        }
        Some(set)
    }

    /// The current set even when stale (for metrics, logs and refresh comparisons).
    pub fn current(&self) -> Arc<KeySet> {
        self.set.load_full()
    }

    pub fn is_stale(&self) -> bool {
        match self.max_stale {
            None => false,
            Some(max) => {
                let last = self.last_success_ms.load(Ordering::Acquire);
                last == 0 || unix_millis().saturating_sub(last) > max.as_millis() as u64
            }
        }
    }

    pub fn is_ready(&self) -> bool {
        self.usable().is_some()
    }

    pub fn last_success_ms(&self) -> u64 {
        self.last_success_ms.load(Ordering::Acquire)
    }

    /// Install a new complete set (the caller has validated it is non-empty).
    pub fn install(&self, set: KeySet) {
        self.set.store(Arc::new(set));
        self.mark_success();
    }

    /// The issuer answered with the keys we already have.
    pub fn mark_success(&self) {
        self.last_success_ms.store(unix_millis(), Ordering::Release);
    }

    #[cfg(test)]
    pub(crate) fn set_last_success_ms(&self, ms: u64) {
        self.last_success_ms.store(ms, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dev::TestKey;

    fn jwks(keys: Vec<serde_json::Value>) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({ "keys": keys })).unwrap()
    }

    #[test]
    fn keys_of_every_type_load_and_verify() {
        for alg in ["RS256", "PS256", "ES256", "ES384", "ES512", "EdDSA"] {
            let k = TestKey::generate(alg, "k1").unwrap();
            let parsed = parse_jwks(&jwks(vec![k.public_jwk()]), &Alg::ALL, None).unwrap();
            assert_eq!(parsed.keys.len(), 1, "{alg}");
            let token = k.sign(&serde_json::json!({"sub": "x"}));
            let (signing_input, sig) = token.rsplit_once('.').unwrap();
            let sig = b64(sig).unwrap();
            let a = Alg::parse(alg).unwrap();
            assert!(
                parsed.keys[0].verify(a, signing_input.as_bytes(), &sig),
                "{alg}"
            );
            let mut bad = sig.clone();
            bad[3] ^= 1;
            assert!(
                !parsed.keys[0].verify(a, signing_input.as_bytes(), &bad),
                "{alg}"
            );
        }
    }

    #[test]
    fn unsafe_keys_are_dropped_at_load() {
        let good = TestKey::generate("RS256", "good").unwrap().public_jwk();
        let mut enc = TestKey::generate("RS256", "enc").unwrap().public_jwk();
        enc["use"] = "enc".into();
        let oct = serde_json::json!({"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"});
        let mut mismatch = TestKey::generate("ES256", "mm").unwrap().public_jwk();
        mismatch["alg"] = "RS256".into();
        let garbage = serde_json::json!({"kty": "RSA", "kid": "bad", "n": "!!", "e": "AQAB"});
        let parsed = parse_jwks(
            &jwks(vec![good, enc, oct, mismatch, garbage]),
            &Alg::ALL,
            None,
        )
        .unwrap();
        assert_eq!(parsed.keys.len(), 1);
        let reasons: Vec<DropReason> = parsed.dropped.iter().map(|d| d.1).collect();
        assert_eq!(
            reasons,
            vec![
                DropReason::Encryption,
                DropReason::Symmetric,
                DropReason::AlgMismatch,
                DropReason::Malformed
            ]
        );
    }

    #[test]
    fn weak_rsa_is_dropped() {
        // A 1024-bit modulus (value irrelevant: the size check comes first).
        let n = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([0xC5u8; 128]);
        let weak = serde_json::json!({"kty": "RSA", "kid": "weak", "n": n, "e": "AQAB"});
        let e = parse_jwks(&jwks(vec![weak]), &Alg::ALL, None).unwrap_err();
        assert!(matches!(e, JwksError::NoUsableKey(1)));
    }

    #[test]
    fn empty_and_garbage_jwks_are_errors() {
        assert!(matches!(
            parse_jwks(b"{\"keys\":[]}", &Alg::ALL, None),
            Err(JwksError::NoUsableKey(0))
        ));
        assert!(matches!(
            parse_jwks(b"<html>", &Alg::ALL, None),
            Err(JwksError::NotJson(_))
        ));
    }

    #[test]
    fn unchanged_keys_keep_their_serial() {
        let k = TestKey::generate("ES256", "k").unwrap().public_jwk();
        let first = parse_jwks(&jwks(vec![k.clone()]), &Alg::ALL, None).unwrap();
        let set = KeySet::new(first.keys);
        let second = parse_jwks(&jwks(vec![k]), &Alg::ALL, Some(&set)).unwrap();
        assert_eq!(second.keys[0].serial, set.keys[0].serial);
        let other = TestKey::generate("ES256", "k").unwrap().public_jwk();
        let third = parse_jwks(&jwks(vec![other]), &Alg::ALL, Some(&set)).unwrap();
        assert_ne!(third.keys[0].serial, set.keys[0].serial);
    }

    #[test]
    fn store_is_unusable_when_empty_or_stale() {
        let store = KeyStore::new(Some(Duration::from_secs(60)));
        assert!(store.usable().is_none());
        let k = TestKey::generate("ES256", "k").unwrap().public_jwk();
        let parsed = parse_jwks(&jwks(vec![k]), &Alg::ALL, None).unwrap();
        store.install(KeySet::new(parsed.keys));
        assert!(store.usable().is_some());
        store.set_last_success_ms(unix_millis() - 61_000);
        assert!(store.usable().is_none());
        assert_eq!(store.current().len(), 1, "stale keys are kept, not dropped");
    }
}

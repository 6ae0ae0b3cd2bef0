//! `authenticate(token, audiences)`: the one question both the proxy and TokenReview ask.
//!
//! cache hit → re-check expiry and that the verifying key is still published → done.
//! miss → (coalesced per key) parse → issuer by `iss` → cheap claim checks → bounded signature
//! verification (one unknown-`kid` refetch allowed) → identity + headers → cached.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use metrics::{counter, histogram, Counter, Histogram};
use tokio::sync::Semaphore;

use crate::cache::{self, Audiences, Keyer, VerifyCache};
use crate::config::{ClaimsMode, Config, IdentityMode};
use crate::identity::{self, Identity, Principal, TokenIds};
use crate::jwks::Issuer;
use crate::metrics as m;
use crate::verify::{self, Reject, LEGACY_ISSUER};

mod intern;
mod memo;
use intern::Interner;
pub use memo::{TokenMemo, MEMO_TTL};

/// An accepted token: who it is, and everything needed to re-check a cached copy. Every cache
/// entry holds one, so it is kept to 72 bytes (with the `Arc` around it, a 96-byte
/// allocation): the shared part lives in an interned [`Principal`], the per-token ids are
/// packed ([`TokenIds`]), times use sentinels.
#[derive(Debug)]
pub struct Verified {
    /// Issuer, identity without the per-token extras, accepted audiences, pre-built headers:
    /// shared.
    pub principal: Arc<Principal>,
    /// The token's pod name and uid and `credential-id` (`JTI=<jti>`).
    pub ids: TokenIds,
    /// `exp + clock_skew`: the last second this result may be served (cache entries live
    /// until then, capped by `cache.max_ttl`). `i64::MAX`: the token has no `exp`.
    valid_until: i64,
    /// `kubernetes.io.warnafter` (Unix seconds, saturated to 32 bits); `u32::MAX` when the
    /// token carries none.
    warnafter: u32,
    /// The key that verified the signature ([`crate::keys::VerifyingKey::serial`]).
    pub key_serial: u32,
}

impl Verified {
    /// Index of the issuer that accepted the token.
    pub fn issuer(&self) -> usize {
        self.principal.issuer
    }

    /// A legacy Secret-based token.
    pub fn legacy(&self) -> bool {
        self.principal.legacy
    }

    /// `exp + clock_skew`, if the token expires.
    pub fn valid_until(&self) -> Option<i64> {
        (self.valid_until != i64::MAX).then_some(self.valid_until)
    }

    /// The full identity, per-token extras included (allocates: for TokenReview and `inspect`).
    pub fn identity(&self) -> Identity {
        let mut id = self.principal.identity.clone();
        let extras = self.ids.extras();
        if !extras.is_empty() {
            id.extra.extend(extras);
            id.extra.sort_by(|a, b| a.0.cmp(&b.0));
        }
        id
    }

    /// Token audiences ∩ the audiences asked for.
    pub fn audiences(&self) -> &[String] {
        &self.principal.audiences
    }
}

/// What the cache stores.
#[derive(Debug)]
pub enum Outcome {
    Accepted(Verified),
    Rejected {
        reason: Reject,
        issuer: Option<usize>,
    },
}

/// Why `authenticate` said no.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthError {
    /// 401 with this reason.
    Rejected {
        reason: Reject,
        issuer: Option<usize>,
    },
    /// The token's issuer has no usable keys (never fetched, or stale past `max_stale`): 503.
    Unavailable { issuer: usize },
}

pub fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Pre-registered metric handles, so the hot path never formats or looks up labels.
struct IssuerMetrics {
    rejections: Vec<Counter>,
    verify_duration: Histogram,
    stale_tokens: Counter,
    legacy_accepted: Counter,
    legacy_rejected: Counter,
}

impl IssuerMetrics {
    fn new(name: &str) -> IssuerMetrics {
        IssuerMetrics {
            rejections: Reject::ALL
                .iter()
                .map(|r| {
                    counter!(m::TOKEN_REJECTIONS_TOTAL, "issuer" => name.to_string(), "reason" => r.as_str())
                })
                .collect(),
            verify_duration: histogram!(m::VERIFY_DURATION_SECONDS, "issuer" => name.to_string()),
            stale_tokens: counter!(m::STALE_TOKENS_TOTAL, "issuer" => name.to_string()),
            legacy_accepted: counter!(m::LEGACY_TOKENS_TOTAL, "issuer" => name.to_string(), "result" => "accepted"),
            legacy_rejected: counter!(m::LEGACY_TOKENS_TOTAL, "issuer" => name.to_string(), "result" => "rejected"),
        }
    }
}

/// Label for rejections that cannot be tied to a configured issuer.
pub const UNKNOWN_ISSUER_LABEL: &str = "unknown";

pub struct Authenticator {
    pub issuers: Vec<Arc<Issuer>>,
    by_iss: HashMap<String, usize>,
    /// The `kubernetes` issuer whose keys verify legacy Secret-based tokens.
    legacy_issuer: Option<usize>,
    cache: VerifyCache,
    keyer: Keyer,
    /// Bounds concurrent signature verifications, so a flood of unique or bogus tokens cannot
    /// take every core away from cache hits.
    verify_permits: Semaphore,
    max_token_bytes: usize,
    mode: IdentityMode,
    metrics: Vec<IssuerMetrics>,
    unknown_rejections: Vec<Counter>,
    cache_hit: Counter,
    cache_miss: Counter,
    cache_negative_hit: Counter,
    /// Last time a stale (past warnafter) token was logged per service account.
    stale_logged: Mutex<HashMap<String, Instant>>,
    principals: Mutex<Interner>,
}

impl Authenticator {
    pub fn new(config: &Config, issuers: Vec<Arc<Issuer>>) -> Authenticator {
        let by_iss = issuers
            .iter()
            .enumerate()
            .map(|(i, is)| (is.cfg.issuer.clone(), i))
            .collect();
        let legacy_issuer = issuers
            .iter()
            .position(|i| i.cfg.claims == ClaimsMode::Kubernetes && i.cfg.legacy_tokens)
            .or_else(|| {
                issuers
                    .iter()
                    .position(|i| i.cfg.claims == ClaimsMode::Kubernetes)
            });
        let metrics = issuers
            .iter()
            .map(|i| IssuerMetrics::new(&i.cfg.name))
            .collect();
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Authenticator {
            by_iss,
            legacy_issuer,
            cache: cache::build(
                config.cache.max_entries,
                config.cache.max_ttl,
                config.cache.negative_ttl,
            ),
            keyer: Keyer::random(),
            verify_permits: Semaphore::new(cores),
            max_token_bytes: config.server.max_header_bytes,
            mode: config
                .upstream
                .as_ref()
                .map_or(IdentityMode::Remote, |u| u.identity_headers),
            metrics,
            unknown_rejections: Reject::ALL
                .iter()
                .map(|r| counter!(m::TOKEN_REJECTIONS_TOTAL, "issuer" => UNKNOWN_ISSUER_LABEL, "reason" => r.as_str()))
                .collect(),
            cache_hit: counter!(m::VERIFY_CACHE_TOTAL, "result" => "hit"),
            cache_miss: counter!(m::VERIFY_CACHE_TOTAL, "result" => "miss"),
            cache_negative_hit: counter!(m::VERIFY_CACHE_TOTAL, "result" => "negative_hit"),
            stale_logged: Mutex::new(HashMap::new()),
            principals: Mutex::new(Interner::new()),
            issuers,
        }
    }

    pub fn issuer_name(&self, issuer: Option<usize>) -> &str {
        issuer
            .and_then(|i| self.issuers.get(i))
            .map_or(UNKNOWN_ISSUER_LABEL, |i| i.cfg.name.as_str())
    }

    /// Number of entries in the verification cache (approximate, as moka reports it).
    pub fn cache_entries(&self) -> u64 {
        self.cache.entry_count()
    }

    pub async fn run_cache_maintenance(&self) {
        self.cache.run_pending_tasks().await;
    }

    /// Authenticate a bearer token for the given audiences.
    pub async fn authenticate(
        &self,
        token: &str,
        audiences: Audiences<'_>,
    ) -> Result<Arc<Outcome>, AuthError> {
        if token.len() > self.max_token_bytes {
            return Err(self.reject(Reject::TooLarge, None));
        }
        let key = self.keyer.key(token, audiences);
        if let Some(hit) = self.cache.get(&key).await {
            match &*hit {
                Outcome::Accepted(v) => match self.recheck(v) {
                    Ok(()) => {
                        self.cache_hit.increment(1);
                        self.note_accepted(v);
                        return Ok(hit);
                    }
                    Err(Recheck::Expired) => {
                        self.cache_hit.increment(1);
                        self.cache.invalidate(&key).await;
                        return Err(self.reject(Reject::Expired, Some(v.issuer())));
                    }
                    Err(Recheck::Unavailable) => {
                        return Err(AuthError::Unavailable { issuer: v.issuer() })
                    }
                    // The verifying key was withdrawn: verify again from scratch.
                    Err(Recheck::KeyGone) => self.cache.invalidate(&key).await,
                },
                Outcome::Rejected { reason, issuer } => {
                    self.cache_negative_hit.increment(1);
                    return Err(self.reject(*reason, *issuer));
                }
            }
        }
        self.cache_miss.increment(1);
        let result = self
            .cache
            .try_get_with(key, async {
                self.verify_uncached(token, audiences).await.map(Arc::new)
            })
            .await;
        let outcome = match result {
            Ok(o) => o,
            // Never cached: "no keys" and "unknown kid" may change any moment.
            Err(e) => {
                return Err(match *e {
                    AuthError::Rejected { reason, issuer } => self.reject(reason, issuer),
                    unavailable => unavailable,
                })
            }
        };
        match &*outcome {
            Outcome::Accepted(v) => {
                self.note_accepted(v);
                Ok(outcome)
            }
            Outcome::Rejected { reason, issuer } => Err(self.reject(*reason, *issuer)),
        }
    }

    fn reject(&self, reason: Reject, issuer: Option<usize>) -> AuthError {
        let counters = match issuer.and_then(|i| self.metrics.get(i)) {
            Some(im) => {
                if reason == Reject::LegacyToken {
                    im.legacy_rejected.increment(1);
                }
                &im.rejections
            }
            None => &self.unknown_rejections,
        };
        counters[reason as usize].increment(1);
        AuthError::Rejected { reason, issuer }
    }

    fn recheck(&self, v: &Verified) -> Result<(), Recheck> {
        let issuer = &self.issuers[v.issuer()];
        // Same rule as verification: accepted while exp > now - clock_skew.
        if v.valid_until <= now_unix() {
            return Err(Recheck::Expired);
        }
        let keys = issuer.store.usable().ok_or(Recheck::Unavailable)?;
        if !keys.contains_serial(v.key_serial) {
            return Err(Recheck::KeyGone);
        }
        Ok(())
    }

    /// Accounting done on every accepted use, cached or not.
    fn note_accepted(&self, v: &Verified) {
        let im = &self.metrics[v.issuer()];
        if v.legacy() {
            im.legacy_accepted.increment(1);
        }
        if v.warnafter != u32::MAX && now_unix() > i64::from(v.warnafter) {
            im.stale_tokens.increment(1);
            self.log_stale(v);
        }
    }

    fn log_stale(&self, v: &Verified) {
        let now = Instant::now();
        let Ok(mut seen) = self.stale_logged.lock() else {
            return;
        };
        let username = &v.principal.identity.username;
        if let Some(last) = seen.get(username) {
            if now.duration_since(*last).as_secs() < 3600 {
                return;
            }
        }
        if seen.len() > 10_000 {
            seen.clear();
        }
        seen.insert(username.clone(), now);
        drop(seen);
        let pod = v.ids.pod_name().unwrap_or_default();
        let (ns, sa) = verify::split_sa_username(username).unwrap_or(("", ""));
        tracing::warn!(
            issuer = %self.issuers[v.issuer()].cfg.name,
            namespace = ns,
            service_account = sa,
            pod = pod.as_ref(),
            "token used after its kubernetes.io warnafter: this client caches its token instead of re-reading the projected file, and will break when token expiration extension is turned off"
        );
    }

    /// Full verification. `Err` for outcomes that must not be cached ("no usable keys",
    /// `unknown_key`); other rejections are `Ok(Outcome::Rejected)`, negatively cached.
    async fn verify_uncached(
        &self,
        token: &str,
        audiences: Audiences<'_>,
    ) -> Result<Outcome, AuthError> {
        let rejected = |reason, issuer| Ok(Outcome::Rejected { reason, issuer });
        let t = match verify::parse(token, self.max_token_bytes) {
            Ok(t) => t,
            Err(r) => return rejected(r, None),
        };
        let iss = t.claims.iss.as_deref().unwrap_or("");
        let (idx, legacy) = if iss == LEGACY_ISSUER {
            match self.legacy_issuer {
                Some(i) => (i, true),
                None => return rejected(Reject::UnknownIssuer, None),
            }
        } else {
            match self.by_iss.get(iss) {
                Some(&i) => (i, false),
                None => return rejected(Reject::UnknownIssuer, None),
            }
        };
        let issuer = &self.issuers[idx];
        let cfg = &issuer.cfg;
        if legacy && !cfg.legacy_tokens {
            return rejected(Reject::LegacyToken, Some(idx));
        }
        if !cfg.algorithms.contains(&t.alg) {
            return rejected(Reject::UnsupportedAlgorithm, Some(idx));
        }
        let now = now_unix();
        let exp = match verify::check_times(&t.claims, now, issuer.policy, !legacy) {
            Ok(e) => e,
            Err(r) => return rejected(r, Some(idx)),
        };
        let expected: &[String] = match audiences {
            Audiences::Configured => &cfg.audiences,
            Audiences::Explicit(list) => list,
        };
        let token_audiences = if legacy {
            // Legacy tokens carry no audience; kube-apiserver accepts them for its own.
            expected.to_vec()
        } else {
            match verify::audience_intersection(&t.claims, expected) {
                Ok(a) => a,
                Err(r) => return rejected(r, Some(idx)),
            }
        };
        let identity = if legacy {
            match verify::check_legacy_claims(&t.claims) {
                Ok((ns, name)) => identity::legacy_identity(&t.claims, ns, name),
                Err(r) => return rejected(r, Some(idx)),
            }
        } else {
            match cfg.claims {
                ClaimsMode::Kubernetes => match verify::check_kubernetes_claims(&t.claims) {
                    Ok((ns, name)) => identity::kubernetes_identity(&t.claims, ns, name),
                    Err(r) => return rejected(r, Some(idx)),
                },
                ClaimsMode::Oidc => {
                    match identity::oidc_identity(&t.payload, &cfg.claim_mappings) {
                        Ok(id) => id,
                        Err(r) => return rejected(r, Some(idx)),
                    }
                }
            }
        };
        // Identity headers are built (and checked) once per principal: a live one that is
        // equal already holds them.
        let existing = self.find_principal(idx, legacy, &identity, &token_audiences);
        let headers = match existing {
            Some(_) => Vec::new(),
            None => match identity::identity_headers(&identity, self.mode) {
                Ok(h) => h,
                Err(r) => return rejected(r, Some(idx)),
            },
        };
        let ids = if !legacy && cfg.claims == ClaimsMode::Kubernetes {
            match TokenIds::from_claims(&t.claims) {
                Ok(ids) => ids,
                Err(r) => return rejected(r, Some(idx)),
            }
        } else {
            TokenIds::none()
        };
        let warnafter = t
            .claims
            .kube
            .as_ref()
            .and_then(|k| k.warnafter.as_ref())
            .and_then(|w| w.as_f64())
            // Saturating: a warnafter past 2106 is as good as none.
            .map_or(u32::MAX, |w| w.clamp(0.0, f64::from(u32::MAX)) as u32);

        // Signature work: bounded. An unknown kid asks the refresher for a refetch and looks
        // again; a second attempt covers joining a fetch that began before the key was
        // published (the rate limit then decides whether a new fetch happens).
        let mut attempts = 0;
        let key_serial = loop {
            // Before the keys are loaded: a fetch completing after this read is seen by the
            // refetch below.
            let seen = issuer.keys_generation();
            let result = {
                let _permit = self.verify_permits.acquire().await;
                let Some(keys) = issuer.store.usable() else {
                    return Err(AuthError::Unavailable { issuer: idx });
                };
                let started = Instant::now();
                let r = verify::verify_signature(&t, &keys).map(|k| k.serial);
                if r != Err(Reject::UnknownKey) {
                    self.metrics[idx]
                        .verify_duration
                        .record(started.elapsed().as_secs_f64());
                }
                r
            };
            match result {
                Ok(serial) => break serial,
                Err(Reject::UnknownKey) => {
                    attempts += 1;
                    if attempts > 2 || !issuer.refetch_for_unknown_kid(seen).await {
                        return Err(AuthError::Rejected {
                            reason: Reject::UnknownKey,
                            issuer: Some(idx),
                        });
                    }
                }
                Err(r) => return rejected(r, Some(idx)),
            }
        };
        Ok(Outcome::Accepted(Verified {
            principal: match existing {
                Some(p) => p,
                None => self.intern(idx, legacy, identity, token_audiences, headers),
            },
            ids,
            valid_until: exp.map_or(i64::MAX, |e| {
                e.saturating_add(issuer.policy.clock_skew).min(i64::MAX - 1)
            }),
            warnafter,
            key_serial,
        }))
    }
}

enum Recheck {
    Expired,
    KeyGone,
    Unavailable,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dev::{self, KubeTokenSpec, TestKey};
    use crate::keys::{parse_jwks, KeySet};

    const ISS: &str = "https://iss.test";

    fn authenticator(key: &TestKey) -> Authenticator {
        // Its issuer is ISS.
        let cfg = Config::parse(crate::config::UNIT_TEST_CONFIG, "(unit)").unwrap();
        let issuer = Arc::new(Issuer::new(cfg.issuers[0].clone()));
        let jwks = serde_json::to_vec(&dev::jwks(&[key.public_jwk()])).unwrap();
        let parsed = parse_jwks(&jwks, &cfg.issuers[0].algorithms, None).unwrap();
        issuer.store.install(KeySet::new(parsed.keys));
        Authenticator::new(&cfg, vec![issuer])
    }

    async fn accept(auth: &Authenticator, token: &str) -> Arc<Outcome> {
        let o = auth
            .authenticate(token, Audiences::Configured)
            .await
            .unwrap();
        assert!(matches!(&*o, Outcome::Accepted(_)));
        o
    }

    fn verified(o: &Outcome) -> &Verified {
        match o {
            Outcome::Accepted(v) => v,
            Outcome::Rejected { .. } => unreachable!(),
        }
    }

    #[test]
    fn a_cache_entry_stays_small() {
        // Every cached token holds one: BENCHMARKS.md's bytes-per-entry figure depends on it.
        // 72 bytes plus the Arc's 16 is an 88-byte request: glibc's 96-byte chunk.
        assert!(std::mem::size_of::<Verified>() <= 72);
        assert!(std::mem::size_of::<Outcome>() <= 72);
        assert_eq!(std::mem::size_of::<TokenIds>(), 48);
    }

    #[tokio::test]
    async fn pods_of_one_service_account_share_one_principal() {
        let key = TestKey::generate("ES256", "k").unwrap();
        let auth = authenticator(&key);
        let spec = KubeTokenSpec::new(ISS, "aud");
        let a = accept(&auth, &key.sign(&dev::kube_claims(&spec))).await;
        let mut again = spec.clone();
        again.jti = Some("another-jti".into());
        again.pod = Some(("other-pod".into(), "uid-2".into()));
        let b = accept(&auth, &key.sign(&dev::kube_claims(&again))).await;
        let (va, vb) = (verified(&a), verified(&b));
        assert!(
            Arc::ptr_eq(&va.principal, &vb.principal),
            "same service account and node: shared"
        );
        assert_ne!(va.ids, vb.ids, "pod and credential-id stay per token");
        let mut h = http::HeaderMap::new();
        vb.ids.header_values().append_to(
            &identity::TokenHeaderNames::new(IdentityMode::Remote),
            &mut h,
        );
        let extra = "x-remote-extra-authentication.kubernetes.io%2f";
        for (key, want) in [
            ("pod-name", "other-pod"),
            ("pod-uid", "uid-2"),
            ("credential-id", "JTI=another-jti"),
        ] {
            assert_eq!(h.get(format!("{extra}{key}")).unwrap(), want, "{key}");
        }
        // The full identity carries them all, as kube-apiserver reports it, sorted by key.
        let full = vb.identity();
        let keys: Vec<&str> = full.extra.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                identity::EXTRA_CREDENTIAL_ID,
                identity::EXTRA_NODE_NAME,
                identity::EXTRA_NODE_UID,
                identity::EXTRA_POD_NAME,
                identity::EXTRA_POD_UID
            ]
        );
        assert!(full
            .extra
            .iter()
            .any(|(k, v)| k == identity::EXTRA_POD_NAME && v == &["other-pod"]));

        // Another node or another service account: another principal.
        let mut other_node = spec.clone();
        other_node.node = Some(("node-2".into(), "uid-3".into()));
        let c = accept(&auth, &key.sign(&dev::kube_claims(&other_node))).await;
        assert!(!Arc::ptr_eq(&va.principal, &verified(&c).principal));
        let mut other_sa = spec.clone();
        other_sa.service_account = "other".into();
        let d = accept(&auth, &key.sign(&dev::kube_claims(&other_sa))).await;
        assert!(!Arc::ptr_eq(&va.principal, &verified(&d).principal));
    }
}

//! `authenticate(token, audiences)`: the one question both the proxy and TokenReview ask.
//!
//! cache hit → re-check expiry and that the verifying key is still published → done.
//! miss → (coalesced per key) parse → issuer by `iss` → cheap claim checks → bounded signature
//! verification (one unknown-`kid` refetch allowed) → identity + headers → cached.
//!
//! Rooms: `issuers` (the configured issuers by `iss`, with their metrics), `verified` (what a
//! result holds), `cache` (the shared verification cache), `negative` (its bounded store of
//! rejections), `memo` (a connection's last token), `intern` (one principal per caller).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use metrics::Counter;
use tokio::sync::Semaphore;

use crate::bound::{self as bound_objects, BoundObjects, NOT_BOUND};
use crate::config::{CacheConfig, ClaimsMode, Config, IdentityMode};
use crate::identity::{self, TokenHeaderValues, TokenIds};
use crate::jwks::Issuer;
use crate::verify::{self, now_unix, Reject};

mod bound;
mod cache;
mod intern;
mod issuers;
mod memo;
mod negative;
mod oidc;
mod verified;

use cache::VerifyCache;
pub use cache::{Audiences, CacheKey, Keyer};
use intern::{Interner, PrincipalKey};
pub use issuers::{Issuers, TrustedIssuer, UNKNOWN_ISSUER_LABEL};
pub use memo::{TokenMemo, MEMO_TTL};
pub use verified::{Outcome, Principal, Rejection, Verified};

/// Why `authenticate` said no.
#[derive(Debug, Clone)]
pub enum AuthError {
    /// 401 with this reason.
    Rejected(Rejection),
    /// The token's issuer has no usable keys (never fetched, or stale past `max_stale`): 503.
    Unavailable { issuer: Arc<TrustedIssuer> },
    /// The token's issuer has `bound_objects`, and the watches are not in sync (not listed
    /// yet, or broken past `kubernetes.max_stale`): 503, fail closed.
    BoundObjectsStale { issuer: Arc<TrustedIssuer> },
}

impl AuthError {
    /// The issuer's name for logs (`unknown` when none could be tied to the token).
    pub fn issuer_name(&self) -> &str {
        match self {
            AuthError::Rejected(r) => r.issuer_name(),
            AuthError::Unavailable { issuer } | AuthError::BoundObjectsStale { issuer } => {
                issuer.name()
            }
        }
    }
}

fn identity_mode(config: &Config) -> IdentityMode {
    config
        .upstream
        .as_ref()
        .map_or(IdentityMode::Remote, |u| u.identity_headers)
}

/// An accepted token, as the request path forwards it: the result, and the token's own
/// identity header values (pod name and uid, credential id; empty in `identity_headers =
/// "none"`).
pub type Accepted = (Arc<Verified>, TokenHeaderValues);

pub struct Authenticator {
    pub issuers: Issuers,
    /// Shared with the next runtime's authenticator when the cache settings and identity mode
    /// stay the same.
    cache: Arc<VerifyCache>,
    cache_config: CacheConfig,
    /// Bounds concurrent signature verifications, so a flood of unique or bogus tokens cannot
    /// take every core away from cache hits.
    verify_permits: Semaphore,
    max_token_bytes: usize,
    mode: IdentityMode,
    unknown_rejections: Vec<Counter>,
    /// Last time a stale (past warnafter) token was logged per service account.
    stale_logged: Mutex<HashMap<String, Instant>>,
    principals: Arc<Interner>,
    /// Counts configs: 0 at start, one more per reload ([`Rejection::generation`]).
    generation: u32,
    /// The watched cluster state, when some issuer has `bound_objects` (shared across
    /// reloads).
    bound: Option<Arc<BoundObjects>>,
}

impl Authenticator {
    pub fn new(config: &Config, issuers: Vec<Arc<Issuer>>) -> Authenticator {
        Authenticator::with(config, Issuers::new(issuers), None)
    }

    /// The authenticator of a new config: unchanged issuers carry on (see [`Issuers::next`]),
    /// and so does the cache unless its settings or the identity mode changed (cached results
    /// hold identity headers built for the mode).
    pub fn next(config: &Config, previous: &Authenticator) -> Authenticator {
        let issuers = Issuers::next(&config.issuers, &previous.issuers);
        let keep = previous.cache_config == config.cache && previous.mode == identity_mode(config);
        let carried = keep.then(|| (previous.cache.clone(), previous.principals.clone()));
        let mut next = Authenticator::with(config, issuers, carried);
        next.generation = previous.generation.wrapping_add(1);
        next
    }

    fn with(
        config: &Config,
        issuers: Issuers,
        carried: Option<(Arc<VerifyCache>, Arc<Interner>)>,
    ) -> Authenticator {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let (cache, principals) = carried.unwrap_or_else(|| {
            let c = &config.cache;
            let cache = VerifyCache::new(
                c.max_entries,
                c.max_negative_entries,
                c.max_ttl,
                c.negative_ttl,
            );
            (Arc::new(cache), Arc::default())
        });
        Authenticator {
            issuers,
            cache,
            cache_config: config.cache.clone(),
            verify_permits: Semaphore::new(cores),
            max_token_bytes: config.server.max_header_bytes,
            mode: identity_mode(config),
            unknown_rejections: issuers::rejection_counters(UNKNOWN_ISSUER_LABEL),
            stale_logged: Mutex::new(HashMap::new()),
            principals,
            generation: 0,
            bound: None,
        }
    }

    /// Check the tokens of `bound_objects` issuers against these watches (`None`: such
    /// tokens get 503).
    pub fn with_bound_objects(mut self, bound: Option<Arc<BoundObjects>>) -> Authenticator {
        self.bound = bound;
        self
    }

    /// The watched cluster state, if this runtime has any `bound_objects` issuer.
    pub fn bound_objects(&self) -> Option<&Arc<BoundObjects>> {
        self.bound.as_ref()
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
    ) -> Result<Arc<Verified>, AuthError> {
        if token.len() > self.max_token_bytes {
            return Err(self.reject(Reject::TooLarge, None));
        }
        let key = self.cache.key(token, audiences);
        if let Some(hit) = self.cache.get(&key).await {
            match hit {
                Outcome::Accepted(v) => match self.recheck(&v) {
                    Ok(()) => {
                        self.cache.count_hit();
                        self.note_accepted(&v);
                        return Ok(v);
                    }
                    Err(Recheck::Expired) => {
                        self.cache.count_hit();
                        self.cache.invalidate(&key).await;
                        return Err(self.reject(Reject::Expired, Some(&v.principal.issuer)));
                    }
                    Err(Recheck::Unavailable) => {
                        return Err(AuthError::Unavailable {
                            issuer: v.principal.issuer.clone(),
                        })
                    }
                    Err(Recheck::BoundStale) => {
                        return Err(AuthError::BoundObjectsStale {
                            issuer: v.principal.issuer.clone(),
                        })
                    }
                    Err(Recheck::Invalidated(i)) => {
                        self.cache.count_hit();
                        self.cache.invalidate(&key).await;
                        bound::log_invalidated(v.issuer().name(), token, &i);
                        return Err(self.reject(Reject::Invalidated, Some(&v.principal.issuer)));
                    }
                    // The verifying key was withdrawn, or a bound result must be verified
                    // again: from scratch.
                    Err(Recheck::KeyGone | Recheck::BoundMoved) => {
                        self.cache.invalidate(&key).await
                    }
                },
                Outcome::Rejected(r) if r.generation == self.generation => {
                    self.cache.count_negative_hit();
                    return Err(self.reject_with(r.reason, r.issuer.as_ref(), r.message.as_ref()));
                }
                // Decided under the config before a reload: decide again.
                Outcome::Rejected(_) => self.cache.invalidate(&key).await,
            }
        }
        self.cache.count_miss();
        let result = self
            .cache
            .get_or_verify(key, self.verify_uncached(token, audiences))
            .await;
        match result {
            Ok(Outcome::Accepted(v)) => {
                self.note_accepted(&v);
                Ok(v)
            }
            Ok(Outcome::Rejected(r)) => {
                Err(self.reject_with(r.reason, r.issuer.as_ref(), r.message.as_ref()))
            }
            // Never cached: "no keys" and "unknown kid" may change any moment.
            Err(e) => Err(match e {
                AuthError::Rejected(r) => self.reject(r.reason, r.issuer.as_ref()),
                unavailable => unavailable,
            }),
        }
    }

    /// [`Self::authenticate`] for the configured audiences, for a token the connection's memo
    /// did not answer ([`Self::recall`]); the memo then keeps the result if accepted.
    pub async fn authenticate_and_remember(
        &self,
        token: &str,
        memo: &TokenMemo,
    ) -> Result<Accepted, AuthError> {
        let result = self.authenticate(token, Audiences::Configured).await;
        let accepted = result.map(|v| {
            let headers = match self.mode {
                IdentityMode::None => TokenHeaderValues::default(),
                _ => v.ids.header_values(),
            };
            (v, headers)
        });
        memo.remember(token, accepted.as_ref().ok().map(|(v, h)| (v, h)));
        accepted
    }

    /// The connection's memo's answer for `token`, if it has one (a repeat of its last
    /// accepted token, within [`MEMO_TTL`], that passes the recheck). Synchronous: the
    /// request path tries it before building any future for the full path.
    pub fn recall(&self, token: &str, memo: &TokenMemo) -> Option<Accepted> {
        let (v, headers) = memo.recall(token)?;
        // Any recheck failure takes the full path, which answers it exactly as for a cache hit.
        self.recheck(&v).ok()?;
        self.cache.count_hit();
        self.note_accepted(&v);
        Some((v, headers))
    }

    fn reject(&self, reason: Reject, issuer: Option<&Arc<TrustedIssuer>>) -> AuthError {
        self.reject_with(reason, issuer, None)
    }

    /// [`Self::reject`] with the message of a failed claim rule.
    fn reject_with(
        &self,
        reason: Reject,
        issuer: Option<&Arc<TrustedIssuer>>,
        message: Option<&Arc<String>>,
    ) -> AuthError {
        let counters = match issuer {
            Some(i) => {
                if reason == Reject::LegacyToken {
                    i.metrics.legacy_rejected.increment(1);
                }
                &i.metrics.rejections
            }
            None => &self.unknown_rejections,
        };
        counters[reason as usize].increment(1);
        AuthError::Rejected(Rejection {
            reason,
            issuer: issuer.cloned(),
            generation: self.generation,
            message: message.cloned(),
        })
    }

    /// Accounting done on every accepted use, cached or not.
    fn note_accepted(&self, v: &Verified) {
        let im = &v.issuer().metrics;
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
            issuer = v.issuer().name(),
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
        let rejected = |reason, issuer: Option<&Arc<TrustedIssuer>>| {
            Ok(Outcome::Rejected(Rejection {
                reason,
                issuer: issuer.cloned(),
                generation: self.generation,
                message: None,
            }))
        };
        let t = match verify::parse(token, self.max_token_bytes) {
            Ok(t) => t,
            Err(r) => return rejected(r, None),
        };
        let iss = t.claims.iss.as_deref().unwrap_or("");
        let Some((issuer, legacy)) = self.issuers.select(iss) else {
            return rejected(Reject::UnknownIssuer, None);
        };
        let by = Some(issuer);
        let cfg = issuer.cfg();
        if legacy && !cfg.legacy_tokens {
            return rejected(Reject::LegacyToken, by);
        }
        if !cfg.algorithms.contains(&t.alg) {
            return rejected(Reject::UnsupportedAlgorithm, by);
        }
        let now = now_unix();
        let policy = issuer.policy();
        let exp = match verify::check_times(&t.claims, now, policy, !legacy) {
            Ok(e) => e,
            Err(r) => return rejected(r, by),
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
                Err(r) => return rejected(r, by),
            }
        };
        // Kubernetes and legacy identities come from the claim shape, checked before any
        // signature work; OIDC claim rules run only on a token whose signature holds.
        let kube_identity = if legacy {
            match verify::check_legacy_claims(&t.claims) {
                Ok((ns, name)) => Some(identity::legacy_identity(&t.claims, ns, name)),
                Err(r) => return rejected(r, by),
            }
        } else {
            match cfg.claims {
                ClaimsMode::Kubernetes => match verify::check_kubernetes_claims(&t.claims) {
                    Ok((ns, name)) => Some(identity::kubernetes_identity(&t.claims, ns, name)),
                    Err(r) => return rejected(r, by),
                },
                ClaimsMode::Oidc => None,
            }
        };
        // Per token: the pod binding and `credential-id` (kube-apiserver gives OIDC tokens
        // with a `jti` one too).
        let ids = if legacy {
            TokenIds::none()
        } else {
            match TokenIds::from_claims(&t.claims) {
                Ok(ids) => ids,
                Err(r) => return rejected(r, by),
            }
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
        let keys = &issuer.keys;
        let mut attempts = 0;
        let key_serial = loop {
            // Before the keys are loaded: a fetch completing after this read is seen by the
            // refetch below.
            let seen = keys.keys_generation();
            let result = {
                let _permit = self.verify_permits.acquire().await;
                let Some(set) = keys.store.usable() else {
                    return Err(AuthError::Unavailable {
                        issuer: issuer.clone(),
                    });
                };
                let started = Instant::now();
                let r = verify::verify_signature(&t, &set).map(|k| k.serial);
                if r != Err(Reject::UnknownKey) {
                    issuer
                        .metrics
                        .verify_duration
                        .record(started.elapsed().as_secs_f64());
                }
                r
            };
            match result {
                Ok(serial) => break serial,
                Err(Reject::UnknownKey) => {
                    attempts += 1;
                    if attempts > 2 || !keys.refetch_for_unknown_kid(seen).await {
                        return Err(AuthError::Rejected(Rejection {
                            reason: Reject::UnknownKey,
                            issuer: Some(issuer.clone()),
                            generation: self.generation,
                            message: None,
                        }));
                    }
                }
                Err(r) => return rejected(r, by),
            }
        };
        // After the signature: a forged token learns nothing about the cluster.
        let bound_check = if cfg.bound_objects {
            match bound::check_new(self.bound.as_deref(), &t.claims, legacy) {
                Ok(checked) => Some(checked),
                Err(bound::Failed::Invalidated(i)) => {
                    bound::log_invalidated(issuer.name(), token, &i);
                    return rejected(Reject::Invalidated, by);
                }
                Err(bound::Failed::Stale | bound::Failed::Reverify) => {
                    return Err(AuthError::BoundObjectsStale {
                        issuer: issuer.clone(),
                    })
                }
            }
        } else {
            None
        };
        let identity = match kube_identity {
            Some(id) => id,
            None => match oidc::identity(issuer, token, &t.payload, &ids) {
                Ok(id) => id,
                Err(message) => {
                    return Ok(Outcome::Rejected(Rejection {
                        reason: Reject::InvalidClaims,
                        issuer: by.cloned(),
                        generation: self.generation,
                        message: Some(message),
                    }))
                }
            },
        };
        // Identity headers are built (and checked) once per principal: a live one that is
        // equal already holds them.
        let existing = self.principals.find(&PrincipalKey {
            issuer,
            legacy,
            identity: &identity,
            audiences: &token_audiences,
        });
        let headers = match existing {
            Some(_) => Vec::new(),
            None => match identity::identity_headers(&identity, self.mode) {
                Ok(h) => h,
                Err(r) => return rejected(r, by),
            },
        };
        let principal = match existing {
            Some(p) => p,
            None => self.principals.intern(Principal {
                issuer: issuer.clone(),
                legacy,
                identity,
                audiences: token_audiences,
                headers,
            }),
        };
        let verified = Verified {
            principal,
            ids,
            valid_until: exp.map_or(u32::MAX, |e| {
                e.saturating_add(policy.clock_skew)
                    .clamp(0, i64::from(u32::MAX - 1)) as u32
            }),
            warnafter,
            key_serial,
            bound: AtomicU32::new(NOT_BOUND),
        };
        if let Some((epoch, binding)) = bound_check {
            let stamp = bound::stamp(epoch, &binding, &verified);
            verified.bound.store(stamp, Ordering::Relaxed);
        }
        Ok(Outcome::Accepted(Arc::new(verified)))
    }

    /// [`recheck`], and for a bound result whose epoch moved, the check against the index.
    fn recheck(&self, v: &Verified) -> Result<(), Recheck> {
        match recheck(v) {
            Err(Recheck::BoundMoved) => match bound::recheck(self.bound.as_deref(), v) {
                Ok(()) => Ok(()),
                Err(bound::Failed::Reverify) => Err(Recheck::BoundMoved),
                Err(bound::Failed::Stale) => Err(Recheck::BoundStale),
                Err(bound::Failed::Invalidated(i)) => Err(Recheck::Invalidated(i)),
            },
            r => r,
        }
    }
}

enum Recheck {
    Expired,
    KeyGone,
    Unavailable,
    /// The bound-object epoch moved since the result was checked (or, from
    /// [`Authenticator::recheck`]: it must be verified again from scratch).
    BoundMoved,
    BoundStale,
    Invalidated(Box<crate::bound::Invalidated>),
}

/// Is a cached result still good? Same rule as verification for time (accepted while
/// `exp > now - clock_skew`), the key that verified it must still be published, and a bound
/// result must have been checked at the current bound-object epoch (one atomic compare).
fn recheck(v: &Verified) -> Result<(), Recheck> {
    if i64::from(v.valid_until) <= now_unix() {
        return Err(Recheck::Expired);
    }
    if v.issuer().is_retired() {
        // Configured differently now, or not at all: verify again from scratch.
        return Err(Recheck::KeyGone);
    }
    let keys = v.issuer().keys.store.usable().ok_or(Recheck::Unavailable)?;
    if !keys.contains_serial(v.key_serial) {
        return Err(Recheck::KeyGone);
    }
    if !bound_objects::stamp_is_current(v.bound.load(Ordering::Relaxed)) {
        return Err(Recheck::BoundMoved);
    }
    Ok(())
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

    async fn accept(auth: &Authenticator, token: &str) -> Arc<Verified> {
        // Accepted by type: `authenticate` has no `Ok` for a rejection.
        auth.authenticate(token, Audiences::Configured)
            .await
            .unwrap()
    }

    fn verified(v: &Verified) -> &Verified {
        v
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

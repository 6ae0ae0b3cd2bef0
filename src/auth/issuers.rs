//! The configured issuers as authentication sees them: each with its key source and its own
//! pre-registered metric handles, found by the token's `iss`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use metrics::{counter, histogram, Counter, Histogram};

use crate::config::{ClaimsMode, IssuerConfig};
use crate::jwks::Issuer;
use crate::metrics as m;
use crate::verify::{Reject, TimePolicy, LEGACY_ISSUER};

/// Label for rejections that cannot be tied to a configured issuer.
pub const UNKNOWN_ISSUER_LABEL: &str = "unknown";

/// One configured issuer: its keys (kept fresh by its refresher) and its metric handles, so
/// the hot path never formats or looks up labels. Identified by its configured name.
pub struct TrustedIssuer {
    pub keys: Arc<Issuer>,
    pub(super) metrics: IssuerMetrics,
    /// Set when a reload removed or changed this issuer: results it accepted are verified
    /// again under the new config instead of being served from the cache.
    retired: AtomicBool,
}

impl std::fmt::Debug for TrustedIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("TrustedIssuer").field(&self.name()).finish()
    }
}

impl TrustedIssuer {
    pub fn new(keys: Arc<Issuer>) -> TrustedIssuer {
        let metrics = IssuerMetrics::new(&keys.cfg.name);
        TrustedIssuer {
            keys,
            metrics,
            retired: AtomicBool::new(false),
        }
    }

    /// No longer configured as it was: see [`Self::is_retired`].
    pub fn retire(&self) {
        self.retired.store(true, Ordering::Release);
    }

    pub fn is_retired(&self) -> bool {
        self.retired.load(Ordering::Acquire)
    }

    /// The configured `name`: metric label, log field, identity.
    pub fn name(&self) -> &str {
        &self.keys.cfg.name
    }

    pub fn cfg(&self) -> &IssuerConfig {
        &self.keys.cfg
    }

    pub fn policy(&self) -> TimePolicy {
        self.keys.policy
    }
}

/// Pre-registered metric handles of one issuer.
pub(super) struct IssuerMetrics {
    pub rejections: Vec<Counter>,
    pub verify_duration: Histogram,
    pub stale_tokens: Counter,
    pub legacy_accepted: Counter,
    pub legacy_rejected: Counter,
}

impl IssuerMetrics {
    fn new(name: &str) -> IssuerMetrics {
        IssuerMetrics {
            rejections: rejection_counters(name),
            verify_duration: histogram!(m::VERIFY_DURATION_SECONDS, "issuer" => name.to_string()),
            stale_tokens: counter!(m::STALE_TOKENS_TOTAL, "issuer" => name.to_string()),
            legacy_accepted: counter!(m::LEGACY_TOKENS_TOTAL, "issuer" => name.to_string(), "result" => "accepted"),
            legacy_rejected: counter!(m::LEGACY_TOKENS_TOTAL, "issuer" => name.to_string(), "result" => "rejected"),
        }
    }
}

/// One rejection counter per reason, for the issuer label `name`.
pub(super) fn rejection_counters(name: &str) -> Vec<Counter> {
    Reject::ALL
        .iter()
        .map(|r| counter!(m::TOKEN_REJECTIONS_TOTAL, "issuer" => name.to_string(), "reason" => r.as_str()))
        .collect()
}

/// The issuers of one runtime, by `iss`.
pub struct Issuers {
    all: Vec<Arc<TrustedIssuer>>,
    by_iss: HashMap<String, Arc<TrustedIssuer>>,
    /// The `kubernetes` issuer whose keys verify legacy Secret-based tokens.
    legacy: Option<Arc<TrustedIssuer>>,
}

impl Issuers {
    pub fn new(keys: Vec<Arc<Issuer>>) -> Issuers {
        Issuers::from_trusted(
            keys.into_iter()
                .map(|k| Arc::new(TrustedIssuer::new(k)))
                .collect(),
        )
    }

    /// For a new config: each issuer whose config is unchanged is the same `TrustedIssuer` as
    /// in `previous` (its keys, refresher and cached results carry on); the others are new.
    pub fn next(configs: &[IssuerConfig], previous: &Issuers) -> Issuers {
        Issuers::from_trusted(
            configs
                .iter()
                .map(|c| match previous.find(&c.name) {
                    Some(same) if same.cfg() == c => same.clone(),
                    _ => Arc::new(TrustedIssuer::new(Arc::new(Issuer::new(c.clone())))),
                })
                .collect(),
        )
    }

    fn from_trusted(all: Vec<Arc<TrustedIssuer>>) -> Issuers {
        let by_iss = all
            .iter()
            .map(|i| (i.cfg().issuer.clone(), i.clone()))
            .collect();
        let kubernetes = |i: &&Arc<TrustedIssuer>| i.cfg().claims == ClaimsMode::Kubernetes;
        let legacy = all
            .iter()
            .filter(kubernetes)
            .find(|i| i.cfg().legacy_tokens)
            .or_else(|| all.iter().find(kubernetes))
            .cloned();
        Issuers {
            all,
            by_iss,
            legacy,
        }
    }

    /// The issuer a token's unverified `iss` selects, and whether it is a legacy token.
    pub fn select(&self, iss: &str) -> Option<(&Arc<TrustedIssuer>, bool)> {
        if iss == LEGACY_ISSUER {
            self.legacy.as_ref().map(|i| (i, true))
        } else {
            self.by_iss.get(iss).map(|i| (i, false))
        }
    }

    /// The issuer configured under `name`.
    pub fn find(&self, name: &str) -> Option<&Arc<TrustedIssuer>> {
        self.all.iter().find(|i| i.name() == name)
    }

    /// Those of `self` that `next` does not carry on (removed, or changed).
    pub fn dropped_by(&self, next: &Issuers) -> Vec<Arc<TrustedIssuer>> {
        self.all
            .iter()
            .filter(|i| !next.all.iter().any(|n| Arc::ptr_eq(i, n)))
            .cloned()
            .collect()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<TrustedIssuer>> {
        self.all.iter()
    }

    /// The key sources, for refreshers and readiness.
    pub fn key_sources(&self) -> Vec<Arc<Issuer>> {
        self.all.iter().map(|i| i.keys.clone()).collect()
    }
}

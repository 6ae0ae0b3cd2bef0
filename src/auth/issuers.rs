//! The configured issuers as authentication sees them: each with its key source and its own
//! pre-registered metric handles, found by the token's `iss`.

use std::collections::HashMap;
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
}

impl std::fmt::Debug for TrustedIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("TrustedIssuer").field(&self.name()).finish()
    }
}

impl TrustedIssuer {
    pub fn new(keys: Arc<Issuer>) -> TrustedIssuer {
        let metrics = IssuerMetrics::new(&keys.cfg.name);
        TrustedIssuer { keys, metrics }
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
        let all: Vec<Arc<TrustedIssuer>> = keys
            .into_iter()
            .map(|k| Arc::new(TrustedIssuer::new(k)))
            .collect();
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

    pub fn iter(&self) -> impl Iterator<Item = &Arc<TrustedIssuer>> {
        self.all.iter()
    }

    /// The key sources, for refreshers and readiness.
    pub fn key_sources(&self) -> Vec<Arc<Issuer>> {
        self.all.iter().map(|i| i.keys.clone()).collect()
    }
}

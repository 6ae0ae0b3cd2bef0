//! SubjectAccessReview: for a route with `subject_access_review`, the kube-apiserver of
//! `[kubernetes]` decides, as kube-rbac-proxy does (its `pkg/authorization` taught the
//! attribute and verb mapping). The review carries the caller's username, uid, groups and
//! extra (the per-token extras too), and the route's resource attributes or the request's
//! non-resource path; the verb is the route's, else the method's (`GET`/`HEAD` get, `POST`
//! create, `PUT` update, `PATCH` patch, `DELETE` delete; the lowercased method for
//! non-resource reviews, as kube-apiserver names them).
//!
//! Answers are cached per (identity, attributes) for `sar_allow_ttl` / `sar_deny_ttl`, in a
//! bounded cache; concurrent identical reviews wait for one request (moka's entry API
//! coalesces them). An apiserver that fails or does not answer within [`SAR_TIMEOUT`] is an
//! error, never cached and never an allow: the caller gets 503.

use std::time::{Duration, Instant};

use k8s_openapi::api::authorization::v1::{
    NonResourceAttributes, ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::{Api, PostParams};
use metrics::{counter, Counter};
use moka::future::Cache;
use moka::Expiry;

use super::facts::RequestFacts;
use super::routes::Route;
use crate::auth::Verified;
use crate::config::{Config, KubernetesConfig, SarAttributes};
use crate::metrics::SUBJECT_ACCESS_REVIEWS_TOTAL;

/// The longest wait for the kube-apiserver's answer.
pub const SAR_TIMEOUT: Duration = Duration::from_secs(5);

/// Cached answers, at most (each a 32-byte key and a flag).
pub const SAR_CACHE_MAX_ENTRIES: u64 = 100_000;

/// Why no answer could be had (503, never an allow).
#[derive(Debug, Clone, thiserror::Error)]
pub enum SarError {
    #[error("no kube-apiserver client: {0}")]
    Client(String),
    #[error("SubjectAccessReview failed: {0}")]
    Apiserver(String),
    #[error("no SubjectAccessReview answer within {0:?}")]
    Timeout(Duration),
}

/// The SubjectAccessReview client (made on first use) and its answer cache.
pub struct Reviewer {
    kubernetes: KubernetesConfig,
    client: tokio::sync::OnceCell<kube::Client>,
    /// Key: BLAKE3 of the review's spec. Value: allowed.
    cache: Cache<[u8; 32], bool>,
    counts: Counts,
}

impl std::fmt::Debug for Reviewer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reviewer")
            .field("kubernetes", &self.kubernetes)
            .field("cached", &self.cache.entry_count())
            .finish()
    }
}

/// `tokenreview_proxy_subject_access_reviews_total`, registered once.
struct Counts {
    allowed_cache: Counter,
    denied_cache: Counter,
    allowed_apiserver: Counter,
    denied_apiserver: Counter,
    error: Counter,
}

/// An answer lives `sar_allow_ttl` if allowed, else `sar_deny_ttl`.
struct ByAnswer {
    allow: Duration,
    deny: Duration,
}

impl Expiry<[u8; 32], bool> for ByAnswer {
    fn expire_after_create(&self, _: &[u8; 32], allowed: &bool, _: Instant) -> Option<Duration> {
        Some(if *allowed { self.allow } else { self.deny })
    }
}

impl Reviewer {
    pub fn new(config: &Config) -> Reviewer {
        let a = &config.authorization;
        let c = |result: &'static str, source: &'static str| counter!(SUBJECT_ACCESS_REVIEWS_TOTAL, "result" => result, "source" => source);
        Reviewer {
            kubernetes: config.kubernetes.clone(),
            client: tokio::sync::OnceCell::new(),
            cache: Cache::builder()
                .max_capacity(SAR_CACHE_MAX_ENTRIES)
                .expire_after(ByAnswer {
                    allow: a.sar_allow_ttl,
                    deny: a.sar_deny_ttl,
                })
                .build(),
            counts: Counts {
                allowed_cache: c("allowed", "cache"),
                denied_cache: c("denied", "cache"),
                allowed_apiserver: c("allowed", "apiserver"),
                denied_apiserver: c("denied", "apiserver"),
                error: c("error", "apiserver"),
            },
        }
    }

    /// Does the kube-apiserver allow `caller` this request, as `route` describes it?
    pub async fn review(
        &self,
        route: &Route,
        caller: &Verified,
        request: RequestFacts<'_>,
    ) -> Result<bool, SarError> {
        let Some(attributes) = &route.sar else {
            return Err(SarError::Client(
                "the route has no subject_access_review".into(),
            ));
        };
        let spec = spec(attributes, caller, &request);
        // serde_json writes fields in declaration order and `extra` is a BTreeMap: the same
        // spec always gives the same bytes.
        let key = *blake3::hash(&serde_json::to_vec(&spec).unwrap_or_default()).as_bytes();
        let entry = self
            .cache
            .entry(key)
            .or_try_insert_with(self.ask(spec))
            .await;
        let c = &self.counts;
        match entry {
            Ok(e) => {
                let allowed = *e.value();
                // A coalesced waiter shares the one review: counted as answered by the cache.
                match (allowed, e.is_fresh()) {
                    (true, true) => c.allowed_apiserver.increment(1),
                    (false, true) => c.denied_apiserver.increment(1),
                    (true, false) => c.allowed_cache.increment(1),
                    (false, false) => c.denied_cache.increment(1),
                }
                Ok(allowed)
            }
            Err(e) => {
                c.error.increment(1);
                Err((*e).clone())
            }
        }
    }

    /// One review, sent.
    async fn ask(&self, spec: SubjectAccessReviewSpec) -> Result<bool, SarError> {
        let client = self
            .client
            .get_or_try_init(|| crate::kubernetes::client(&self.kubernetes))
            .await
            .map_err(|e| SarError::Client(e.to_string()))?;
        let api: Api<SubjectAccessReview> = Api::all(client.clone());
        let review = SubjectAccessReview {
            spec,
            ..SubjectAccessReview::default()
        };
        let answer = tokio::time::timeout(SAR_TIMEOUT, api.create(&PostParams::default(), &review))
            .await
            .map_err(|_| SarError::Timeout(SAR_TIMEOUT))?
            .map_err(|e| SarError::Apiserver(e.to_string()))?;
        let status = answer.status.unwrap_or_default();
        Ok(status.allowed && status.denied != Some(true))
    }
}

/// The Kubernetes verb of an HTTP method, for resource attributes.
fn resource_verb(method: &str) -> String {
    match method.to_ascii_uppercase().as_str() {
        "GET" | "HEAD" => "get".into(),
        "POST" => "create".into(),
        "PUT" => "update".into(),
        "PATCH" => "patch".into(),
        "DELETE" => "delete".into(),
        other => other.to_ascii_lowercase(),
    }
}

/// The review of `caller` making `request` under `attributes`.
fn spec(
    attributes: &SarAttributes,
    caller: &Verified,
    request: &RequestFacts<'_>,
) -> SubjectAccessReviewSpec {
    let id = caller.identity();
    let text = |s: &str| (!s.is_empty()).then(|| s.to_string());
    let (resource_attributes, non_resource_attributes) = match attributes {
        SarAttributes::NonResource { verb } => (
            None,
            Some(NonResourceAttributes {
                path: Some(request.path.to_string()),
                verb: Some(
                    verb.clone()
                        .unwrap_or_else(|| request.method.as_str().to_ascii_lowercase()),
                ),
            }),
        ),
        SarAttributes::Resource {
            verb,
            group,
            version,
            resource,
            subresource,
            namespace,
            name,
        } => (
            Some(ResourceAttributes {
                verb: Some(
                    verb.clone()
                        .unwrap_or_else(|| resource_verb(request.method.as_str())),
                ),
                group: text(group),
                version: text(version),
                resource: text(resource),
                subresource: text(subresource),
                namespace: text(namespace),
                name: text(name),
                ..ResourceAttributes::default()
            }),
            None,
        ),
    };
    SubjectAccessReviewSpec {
        user: Some(id.username),
        uid: text(&id.uid),
        groups: Some(id.groups),
        extra: (!id.extra.is_empty()).then(|| id.extra.into_iter().collect()),
        resource_attributes,
        non_resource_attributes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_map_to_kubernetes_verbs() {
        for (m, v) in [
            ("GET", "get"),
            ("HEAD", "get"),
            ("POST", "create"),
            ("PUT", "update"),
            ("PATCH", "patch"),
            ("DELETE", "delete"),
            ("OPTIONS", "options"),
            ("get", "get"),
        ] {
            assert_eq!(resource_verb(m), v);
        }
    }
}

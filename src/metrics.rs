//! Every metric name (SPEC section 10) as a const, described once at start-up. Label values
//! come only from config (issuer names) and fixed sets (`&'static str` reasons): never from
//! token contents.

use std::sync::OnceLock;

use http::StatusCode;
use metrics::{
    counter, describe_counter, describe_gauge, describe_histogram, histogram, Counter, Histogram,
    Unit,
};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

pub const REQUESTS_TOTAL: &str = "tokenreview_proxy_requests_total";
pub const TOKEN_REJECTIONS_TOTAL: &str = "tokenreview_proxy_token_rejections_total";
pub const VERIFY_CACHE_TOTAL: &str = "tokenreview_proxy_verify_cache_total";
pub const VERIFY_CACHE_ENTRIES: &str = "tokenreview_proxy_verify_cache_entries";
pub const VERIFY_DURATION_SECONDS: &str = "tokenreview_proxy_verify_duration_seconds";
pub const REQUEST_DURATION_SECONDS: &str = "tokenreview_proxy_request_duration_seconds";
pub const JWKS_REFRESHES_TOTAL: &str = "tokenreview_proxy_jwks_refreshes_total";
pub const JWKS_LAST_SUCCESS_TIMESTAMP_SECONDS: &str =
    "tokenreview_proxy_jwks_last_success_timestamp_seconds";
pub const JWKS_KEYS: &str = "tokenreview_proxy_jwks_keys";
pub const JWKS_REFETCH_SUPPRESSED_TOTAL: &str = "tokenreview_proxy_jwks_refetch_suppressed_total";
pub const STALE_TOKENS_TOTAL: &str = "tokenreview_proxy_stale_tokens_total";
pub const LEGACY_TOKENS_TOTAL: &str = "tokenreview_proxy_legacy_tokens_total";
pub const TOKENREVIEWS_TOTAL: &str = "tokenreview_proxy_tokenreviews_total";
pub const UPSTREAM_RESPONSES_TOTAL: &str = "tokenreview_proxy_upstream_responses_total";
pub const BUILD_INFO: &str = "tokenreview_proxy_build_info";
pub const JWKS_KEY_SET_INFO: &str = "tokenreview_proxy_jwks_key_set_info";
pub const CONFIG_RELOADS_TOTAL: &str = "tokenreview_proxy_config_reloads_total";
pub const CONFIG_LAST_RELOAD_SUCCESS_TIMESTAMP_SECONDS: &str =
    "tokenreview_proxy_config_last_reload_success_timestamp_seconds";
pub const BOUND_OBJECTS: &str = "tokenreview_proxy_bound_objects";
pub const BOUND_OBJECTS_SYNCED: &str = "tokenreview_proxy_bound_objects_synced";
pub const AUTHORIZATION_TOTAL: &str = "tokenreview_proxy_authorization_total";
pub const SUBJECT_ACCESS_REVIEWS_TOTAL: &str = "tokenreview_proxy_subject_access_reviews_total";
/// Not in SPEC's table (an addition): keys of the current JWKS document dropped at load time
/// (`oct`, `use: enc`, RSA under 2048 bits, malformed, ...).
pub const JWKS_DROPPED_KEYS: &str = "tokenreview_proxy_jwks_dropped_keys";
/// Not in SPEC's table (an addition): request bodies ended by `server.request_body_timeout`.
pub const REQUEST_BODY_TIMEOUTS_TOTAL: &str = "tokenreview_proxy_request_body_timeouts_total";

/// Histogram buckets for verification and request latency (seconds): 5 µs to 10 s.
const BUCKETS: &[f64] = &[
    0.000_005, 0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005,
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The standard `process_*` metrics (CPU, resident memory, open fds), read when collected.
fn process_collector() -> &'static metrics_process::Collector {
    static COLLECTOR: OnceLock<metrics_process::Collector> = OnceLock::new();
    COLLECTOR.get_or_init(metrics_process::Collector::default)
}

/// Refresh the `process_*` metrics (before a scrape, and on housekeeping).
pub fn collect_process_metrics() {
    process_collector().collect();
}

/// Install the process-wide Prometheus recorder (once; later calls return the same handle).
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(BUCKETS)
                .map(|b| b.build_recorder())
                .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
            let handle = recorder.handle();
            // Fails only if another recorder is installed (an embedding program's): then our
            // handle renders nothing, which /metrics shows plainly.
            let _ = metrics::set_global_recorder(recorder);
            describe();
            metrics::gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
            handle
        })
        .clone()
}

fn describe() {
    describe_counter!(REQUESTS_TOTAL, "Proxied requests by outcome");
    describe_counter!(
        TOKEN_REJECTIONS_TOTAL,
        "Rejected tokens by issuer and reason"
    );
    describe_counter!(VERIFY_CACHE_TOTAL, "Verification cache lookups by result");
    describe_gauge!(VERIFY_CACHE_ENTRIES, "Entries in the verification cache");
    describe_histogram!(
        VERIFY_DURATION_SECONDS,
        Unit::Seconds,
        "Time of real signature verifications (cache misses)"
    );
    describe_histogram!(
        REQUEST_DURATION_SECONDS,
        Unit::Seconds,
        "Time from request to response headers"
    );
    describe_counter!(JWKS_REFRESHES_TOTAL, "JWKS refreshes by issuer and result");
    describe_gauge!(
        JWKS_LAST_SUCCESS_TIMESTAMP_SECONDS,
        Unit::Seconds,
        "Unix time of the last successful JWKS fetch"
    );
    describe_gauge!(JWKS_KEYS, "Usable keys in the current key set");
    describe_counter!(
        JWKS_REFETCH_SUPPRESSED_TOTAL,
        "Unknown-kid refetches suppressed by min_refetch_interval"
    );
    describe_counter!(
        STALE_TOKENS_TOTAL,
        "Tokens used after kubernetes.io.warnafter (clients caching their token)"
    );
    describe_counter!(LEGACY_TOKENS_TOTAL, "Legacy Secret-based tokens seen");
    describe_counter!(
        TOKENREVIEWS_TOTAL,
        "TokenReview requests by version and outcome"
    );
    describe_counter!(
        UPSTREAM_RESPONSES_TOTAL,
        "Upstream responses by status class"
    );
    describe_gauge!(
        BUILD_INFO,
        "Always 1; the version label says which build runs"
    );
    describe_gauge!(
        JWKS_KEY_SET_INFO,
        "1 for each issuer's current key set, labelled with a hash of its key ids and material"
    );
    process_collector().describe();
    describe_counter!(CONFIG_RELOADS_TOTAL, "Config reloads by result");
    describe_gauge!(
        CONFIG_LAST_RELOAD_SUCCESS_TIMESTAMP_SECONDS,
        Unit::Seconds,
        "Unix time of the last successful config reload"
    );
    describe_gauge!(
        JWKS_DROPPED_KEYS,
        "Keys of the current JWKS dropped at load (oct, use=enc, weak RSA, malformed)"
    );
    describe_gauge!(
        BOUND_OBJECTS,
        "Objects held in the bound-object index, by kind"
    );
    describe_gauge!(
        BOUND_OBJECTS_SYNCED,
        "1 while that kind's watch is in sync with the kube-apiserver, else 0"
    );
    describe_counter!(
        AUTHORIZATION_TOTAL,
        "Authorization decisions by route (or default) and decision"
    );
    describe_counter!(
        SUBJECT_ACCESS_REVIEWS_TOTAL,
        "SubjectAccessReview answers by result and source (cache or apiserver)"
    );
    describe_counter!(
        REQUEST_BODY_TIMEOUTS_TOTAL,
        "Request bodies whose next bytes did not arrive within server.request_body_timeout"
    );
}

/// Pre-registered handles of the per-request metrics, so the request path never formats or
/// looks up labels.
pub struct RequestMetrics {
    pub ok: Counter,
    pub missing_token: Counter,
    pub rejected: Counter,
    pub unavailable: Counter,
    pub upstream_error: Counter,
    pub duration: Histogram,
    /// Upstream responses by class: 2xx, 3xx, 4xx, 5xx, error.
    class: [Counter; 5],
}

impl RequestMetrics {
    pub fn new() -> RequestMetrics {
        let r = |v: &'static str| counter!(REQUESTS_TOTAL, "result" => v);
        let c = |v: &'static str| counter!(UPSTREAM_RESPONSES_TOTAL, "class" => v);
        RequestMetrics {
            ok: r("ok"),
            missing_token: r("missing_token"),
            rejected: r("rejected"),
            unavailable: r("unavailable"),
            upstream_error: r("upstream_error"),
            duration: histogram!(REQUEST_DURATION_SECONDS),
            class: [c("2xx"), c("3xx"), c("4xx"), c("5xx"), c("error")],
        }
    }

    /// An upstream response arrived with `status`.
    pub fn upstream_status(&self, status: StatusCode) {
        let i = match status.as_u16() {
            // A 101 (an upgrade the upstream accepted) counts as a success.
            100..=299 => 0,
            300..=399 => 1,
            400..=499 => 2,
            _ => 3,
        };
        self.class[i].increment(1);
    }

    /// No upstream response (502, 504).
    pub fn upstream_failed(&self) {
        self.upstream_error.increment(1);
        self.class[4].increment(1);
    }
}

impl Default for RequestMetrics {
    fn default() -> Self {
        Self::new()
    }
}

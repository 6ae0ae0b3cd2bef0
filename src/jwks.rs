//! Key lifecycle per issuer (SPEC section 9): OIDC discovery → JWKS fetch → validated key set
//! → atomic swap, on a schedule, with backoff on failure, keeping the last good keys; plus the
//! coalesced, rate-limited refetch that an unknown `kid` triggers.
//!
//! One refresher task per issuer owns all fetching. Request paths never fetch: on an unknown
//! `kid` they ask the refresher (at most once per `min_refetch_interval`) and wait, bounded,
//! for that one fetch to finish.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, CACHE_CONTROL};
use http::{HeaderValue, Request, StatusCode};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use metrics::{counter, gauge, Counter};
use tokio::sync::{watch, Notify};

use crate::config::{IssuerConfig, KeySource};
use crate::keys::{parse_jwks, unix_millis, KeySet, KeyStore};
use crate::metrics as m;
use crate::tls;
use crate::verify::TimePolicy;

/// Largest discovery or JWKS document accepted.
pub const MAX_DOCUMENT_BYTES: usize = 1 << 20;
/// Bound on one discovery + JWKS fetch.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a request waits for the refetch its unknown `kid` triggered.
pub const REFETCH_WAIT: Duration = Duration::from_secs(5);
/// How often a `jwks_file` is re-read (it is small; reading catches symlink swaps too).
pub const FILE_POLL: Duration = Duration::from_secs(1);
/// Longest wait between retries while an issuer is failing.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Shortest scheduled refresh, whatever `max-age` says (the floor config puts on
/// `refresh_interval`): `no-store` with `min_refetch_interval = "0s"` must not busy-loop.
pub const MIN_REFRESH: Duration = Duration::from_secs(1);

/// One configured issuer at run time: its config, its keys, and refetch coordination.
pub struct Issuer {
    pub cfg: IssuerConfig,
    pub store: KeyStore,
    pub policy: TimePolicy,
    trigger: Notify,
    /// Bumped after every completed fetch attempt; requests waiting on a refetch watch it.
    generation: watch::Sender<u64>,
    in_flight: AtomicBool,
    last_triggered: Mutex<Option<Instant>>,
    suppressed: Counter,
}

impl Issuer {
    pub fn new(cfg: IssuerConfig) -> Issuer {
        let max_stale = match cfg.source {
            KeySource::File(_) => None,
            _ => Some(cfg.max_stale),
        };
        let policy = TimePolicy {
            clock_skew: cfg.clock_skew.as_secs() as i64,
            max_lifetime: cfg.max_lifetime.as_secs().min(i64::MAX as u64) as i64,
        };
        let suppressed = counter!(m::JWKS_REFETCH_SUPPRESSED_TOTAL, "issuer" => cfg.name.clone());
        Issuer {
            store: KeyStore::new(max_stale),
            policy,
            trigger: Notify::new(),
            generation: watch::channel(0).0,
            in_flight: AtomicBool::new(false),
            last_triggered: Mutex::new(None),
            suppressed,
            cfg,
        }
    }

    /// How many fetch attempts have completed. Read it before loading the keys a verification
    /// uses, and hand it to [`Self::refetch_for_unknown_kid`].
    pub fn keys_generation(&self) -> u64 {
        *self.generation.borrow()
    }

    /// Called by a request whose `kid` is not in the set it looked in, which it loaded after
    /// reading `seen` from [`Self::keys_generation`]. Returns true when a fetch completed
    /// since then (the caller should look again), false when the refetch was suppressed by
    /// `min_refetch_interval` or did not finish within [`REFETCH_WAIT`].
    ///
    /// A fetch that completed between the caller's look and this call counts: another
    /// request's refetch may just have installed the key (and started the rate limit), and
    /// without this check the late request was refused `unknown_key` for a key the proxy
    /// already had (seen once in 300k requests of the rotation load scenario).
    pub async fn refetch_for_unknown_kid(&self, seen: u64) -> bool {
        let mut rx = self.generation.subscribe();
        let mut start = *rx.borrow_and_update();
        if start != seen {
            return true;
        }
        {
            let Ok(mut last) = self.last_triggered.lock() else {
                return false;
            };
            if !self.in_flight.load(Ordering::Acquire) {
                if let Some(t) = *last {
                    if t.elapsed() < self.cfg.min_refetch_interval {
                        self.suppressed.increment(1);
                        return false;
                    }
                }
                *last = Some(Instant::now());
                self.in_flight.store(true, Ordering::Release);
                // The refresher bumps the generation before it clears `in_flight`, so having
                // seen `in_flight` false, any earlier fetch's bump is already visible: wait
                // for the fetch this call triggers, not a finished one.
                start = *rx.borrow_and_update();
                self.trigger.notify_one();
            }
        }
        let done = tokio::time::timeout(REFETCH_WAIT, rx.wait_for(|g| *g != start))
            .await
            .is_ok_and(|r| r.is_ok());
        done
    }
}

/// What the last fetch attempt gave, for scheduling the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LastFetch {
    Success { max_age: Option<Duration> },
    Failure { consecutive: u32 },
}

/// When to refresh next. `jitter` is uniform in [0, 1).
///
/// Success: `refresh_interval`, or sooner when the response's `max-age` says so (never sooner
/// than `min_refetch_interval`, nor than [`MIN_REFRESH`]), shortened by up to 10% so a fleet does
/// not refresh in step.
/// Failure: exponential backoff from 1 s, capped at min(refresh_interval, 60 s), ±20% jitter.
pub fn next_refresh(
    refresh_interval: Duration,
    min_refetch_interval: Duration,
    last: LastFetch,
    jitter: f64,
) -> Duration {
    let jitter = jitter.clamp(0.0, 1.0);
    match last {
        LastFetch::Success { max_age } => {
            let mut base = refresh_interval;
            if let Some(age) = max_age {
                base = base.min(age.max(min_refetch_interval).max(MIN_REFRESH));
            }
            base.mul_f64(1.0 - 0.1 * jitter)
        }
        LastFetch::Failure { consecutive } => {
            let cap = refresh_interval.min(MAX_BACKOFF);
            let exp = consecutive.saturating_sub(1).min(16);
            let backoff = Duration::from_secs(1u64 << exp).min(cap);
            backoff.mul_f64(0.8 + 0.4 * jitter)
        }
    }
}

/// Parse `max-age=N` from a Cache-Control value (`no-cache`/`no-store` mean 0).
pub fn max_age(cache_control: &str) -> Option<Duration> {
    let mut out = None;
    for directive in cache_control.split(',') {
        let d = directive.trim();
        if d.eq_ignore_ascii_case("no-cache") || d.eq_ignore_ascii_case("no-store") {
            return Some(Duration::ZERO);
        }
        if let Some((k, v)) = d.split_once('=') {
            if k.trim().eq_ignore_ascii_case("max-age") {
                out = v
                    .trim()
                    .trim_matches('"')
                    .parse::<u64>()
                    .ok()
                    .map(Duration::from_secs);
            }
        }
    }
    out
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("invalid URL {0}")]
    Url(String),
    #[error("request failed: {0}")]
    Http(String),
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("HTTP status {0}")]
    Status(StatusCode),
    #[error("response body: {0}")]
    Body(String),
    #[error("discovery document: {0}")]
    Discovery(String),
    #[error("token_file {path}: {message}")]
    TokenFile { path: String, message: String },
    #[error("{0}")]
    Jwks(#[from] crate::keys::JwksError),
    #[error("jwks_file {path}: {message}")]
    File { path: String, message: String },
}

type FetchClient = Client<HttpsConnector<HttpConnector>, Empty<Bytes>>;

/// HTTP(S) GETs for one issuer, with its trust (`ca_file`) and bearer (`token_file`).
pub struct Fetcher {
    client: FetchClient,
    token_file: Option<PathBuf>,
}

impl Fetcher {
    pub fn new(cfg: &IssuerConfig) -> Result<Fetcher, tls::TlsError> {
        let tls = match &cfg.ca_pem {
            Some(pem) => tls::client_config_pem(pem)?,
            None => tls::client_config(cfg.ca_file.as_deref(), None)?,
        };
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(FETCH_TIMEOUT));
        http.set_nodelay(true);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Ok(Fetcher {
            client,
            token_file: cfg.token_file.clone(),
        })
    }

    /// GET a document: body (≤ 1 MiB) and the response's max-age.
    pub async fn get(&self, url: &str) -> Result<(Bytes, Option<Duration>), FetchError> {
        tokio::time::timeout(FETCH_TIMEOUT, self.get_inner(url))
            .await
            .map_err(|_| FetchError::Timeout(FETCH_TIMEOUT))?
    }

    async fn get_inner(&self, url: &str) -> Result<(Bytes, Option<Duration>), FetchError> {
        let uri: http::Uri = url.parse().map_err(|_| FetchError::Url(url.to_string()))?;
        let mut req = Request::get(uri)
            .header(ACCEPT, "application/json")
            .body(Empty::<Bytes>::new())
            .map_err(|e| FetchError::Http(e.to_string()))?;
        if let Some(path) = &self.token_file {
            // Projected tokens rotate: read the file fresh for every fetch.
            let token =
                tokio::fs::read_to_string(path)
                    .await
                    .map_err(|e| FetchError::TokenFile {
                        path: path.display().to_string(),
                        message: e.to_string(),
                    })?;
            let value =
                HeaderValue::try_from(format!("Bearer {}", token.trim())).map_err(|_| {
                    FetchError::TokenFile {
                        path: path.display().to_string(),
                        message: "content is not a valid header value".into(),
                    }
                })?;
            req.headers_mut().insert(AUTHORIZATION, value);
        }
        let resp = self
            .client
            .request(req)
            .await
            .map_err(|e| FetchError::Http(error_chain(&e)))?;
        if resp.status() != StatusCode::OK {
            return Err(FetchError::Status(resp.status()));
        }
        let age = resp
            .headers()
            .get(CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .and_then(max_age);
        let body = Limited::new(resp.into_body(), MAX_DOCUMENT_BYTES)
            .collect()
            .await
            .map_err(|e| FetchError::Body(e.to_string()))?
            .to_bytes();
        Ok((body, age))
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        cur = inner.source();
    }
    s
}

#[derive(serde::Deserialize)]
struct Discovery {
    issuer: Option<String>,
    jwks_uri: Option<String>,
}

/// Refresh metrics of one issuer.
struct RefreshMetrics {
    ok: Counter,
    error: Counter,
    unchanged: Counter,
}

/// Run the refresher of one issuer until `shutdown` turns true.
pub async fn run_refresher(issuer: Arc<Issuer>, mut shutdown: watch::Receiver<bool>) {
    let name = issuer.cfg.name.clone();
    let metrics = RefreshMetrics {
        ok: counter!(m::JWKS_REFRESHES_TOTAL, "issuer" => name.clone(), "result" => "ok"),
        error: counter!(m::JWKS_REFRESHES_TOTAL, "issuer" => name.clone(), "result" => "error"),
        unchanged: counter!(m::JWKS_REFRESHES_TOTAL, "issuer" => name.clone(), "result" => "unchanged"),
    };
    let fetcher = match &issuer.cfg.source {
        KeySource::File(_) => None,
        _ => match Fetcher::new(&issuer.cfg) {
            Ok(f) => Some(f),
            Err(e) => {
                tracing::error!(issuer = %name, error = %e, "cannot set up key fetching; this issuer will stay unavailable");
                return;
            }
        },
    };
    let mut consecutive_failures = 0u32;
    let mut last_file_digest: Option<[u8; 32]> = None;
    loop {
        issuer.in_flight.store(true, Ordering::Release);
        let result = match (&issuer.cfg.source, &fetcher) {
            (KeySource::File(path), _) => {
                refresh_from_file(&issuer, path, &mut last_file_digest).await
            }
            (_, Some(f)) => refresh_from_url(&issuer, f).await,
            (_, None) => Err(FetchError::Url("no fetcher".into())),
        };
        let last = match result {
            Ok(Refreshed { changed, max_age }) => {
                consecutive_failures = 0;
                match changed {
                    Some(true) => metrics.ok.increment(1),
                    Some(false) => metrics.unchanged.increment(1),
                    None => {}
                }
                gauge!(m::JWKS_LAST_SUCCESS_TIMESTAMP_SECONDS, "issuer" => name.clone())
                    .set(issuer.store.last_success_ms() as f64 / 1000.0);
                LastFetch::Success { max_age }
            }
            Err(e) => {
                consecutive_failures = consecutive_failures.saturating_add(1);
                metrics.error.increment(1);
                let keys = issuer.store.current().len();
                tracing::warn!(issuer = %name, error = %e, failures = consecutive_failures, keeping_keys = keys, stale = issuer.store.is_stale(), "key refresh failed; keeping the last good keys");
                LastFetch::Failure {
                    consecutive: consecutive_failures,
                }
            }
        };
        // Bump before clearing `in_flight` (see `refetch_for_unknown_kid`).
        issuer.generation.send_modify(|g| *g = g.wrapping_add(1));
        issuer.in_flight.store(false, Ordering::Release);
        let delay = match issuer.cfg.source {
            KeySource::File(_) => FILE_POLL,
            _ => next_refresh(
                issuer.cfg.refresh_interval,
                issuer.cfg.min_refetch_interval,
                last,
                random_unit(),
            ),
        };
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = issuer.trigger.notified() => {}
            _ = shutdown.changed() => return,
        }
        if *shutdown.borrow() {
            return;
        }
    }
}

struct Refreshed {
    /// Some(true): new key set installed; Some(false): same keys; None: nothing to count
    /// (a file that did not change).
    changed: Option<bool>,
    max_age: Option<Duration>,
}

async fn refresh_from_url(issuer: &Issuer, fetcher: &Fetcher) -> Result<Refreshed, FetchError> {
    let jwks_url = match &issuer.cfg.source {
        KeySource::Discovery(url) => {
            let (body, _) = fetcher.get(url).await?;
            let doc: Discovery = serde_json::from_slice(&body)
                .map_err(|e| FetchError::Discovery(format!("not JSON: {e}")))?;
            if doc.issuer.as_deref() != Some(issuer.cfg.issuer.as_str()) {
                return Err(FetchError::Discovery(format!(
                    "issuer {:?} does not match the configured {:?}",
                    doc.issuer.unwrap_or_default(),
                    issuer.cfg.issuer
                )));
            }
            let jwks_uri = doc
                .jwks_uri
                .ok_or_else(|| FetchError::Discovery("no jwks_uri".into()))?;
            // Discovery over HTTPS must not downgrade the key fetch to cleartext.
            if url.starts_with("https://") && !jwks_uri.starts_with("https://") {
                return Err(FetchError::Discovery(format!(
                    "jwks_uri {jwks_uri:?} is not https although discovery was"
                )));
            }
            jwks_uri
        }
        KeySource::Jwks(url) => url.clone(),
        KeySource::File(_) => return Err(FetchError::Url("file source".into())),
    };
    let (body, max_age) = fetcher.get(&jwks_url).await?;
    let changed = install(issuer, &body)?;
    Ok(Refreshed {
        changed: Some(changed),
        max_age,
    })
}

async fn refresh_from_file(
    issuer: &Issuer,
    path: &std::path::Path,
    last_digest: &mut Option<[u8; 32]>,
) -> Result<Refreshed, FetchError> {
    let body = tokio::fs::read(path).await.map_err(|e| FetchError::File {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    let digest: [u8; 32] = *blake3::hash(&body).as_bytes();
    if *last_digest == Some(digest) {
        issuer.store.mark_success();
        return Ok(Refreshed {
            changed: None,
            max_age: None,
        });
    }
    let changed = install(issuer, &body)?;
    *last_digest = Some(digest);
    Ok(Refreshed {
        changed: Some(changed),
        max_age: None,
    })
}

/// Validate a JWKS document and swap it in. Ok(true) when the key set changed. A document
/// that is not JSON or has no usable key leaves the current keys in place.
fn install(issuer: &Issuer, body: &[u8]) -> Result<bool, FetchError> {
    let current = issuer.store.current();
    let parsed = parse_jwks(body, &issuer.cfg.algorithms, Some(&current))?;
    let name = &issuer.cfg.name;
    gauge!(m::JWKS_DROPPED_KEYS, "issuer" => name.clone()).set(parsed.dropped.len() as f64);
    let same = parsed.keys.len() == current.keys.len()
        && parsed
            .keys
            .iter()
            .zip(current.keys.iter())
            .all(|(a, b)| a.serial == b.serial);
    if same {
        issuer.store.mark_success();
        return Ok(false);
    }
    for (kid, reason) in &parsed.dropped {
        tracing::warn!(issuer = %name, kid = kid.as_deref().unwrap_or("(none)"), reason = reason.as_str(), "JWKS key dropped");
    }
    let old = current.kids();
    let new_set = KeySet::new(parsed.keys);
    let new = new_set.kids();
    let added: Vec<&String> = new.iter().filter(|k| !old.contains(k)).collect();
    let removed: Vec<&String> = old.iter().filter(|k| !new.contains(k)).collect();
    let count = new_set.len() as f64;
    let (old_hash, new_hash) = (current.fingerprint(), new_set.fingerprint());
    // Installed first: the gauges never show a key set that is not yet in effect.
    issuer.store.install(new_set);
    gauge!(m::JWKS_KEYS, "issuer" => name.clone()).set(count);
    if !current.is_empty() {
        gauge!(m::JWKS_KEY_SET_INFO, "issuer" => name.clone(), "hash" => old_hash).set(0.0);
    }
    gauge!(m::JWKS_KEY_SET_INFO, "issuer" => name.clone(), "hash" => new_hash).set(1.0);
    tracing::info!(issuer = %name, keys = new.len(), added = ?added, removed = ?removed, "key set changed");
    Ok(true)
}

/// A uniform number in [0, 1) from the system RNG (jitter only; no security role).
fn random_unit() -> f64 {
    let mut b = [0u8; 8];
    if aws_lc_rs::rand::fill(&mut b).is_err() {
        return 0.5;
    }
    (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
}

/// Wait until every issuer has usable keys, or `timeout` passes. Used by `inspect`.
pub async fn wait_ready(issuers: &[Arc<Issuer>], timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if issuers.iter().all(|i| i.store.is_ready()) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Seconds since the last successful fetch, for logs.
pub fn seconds_since_success(issuer: &Issuer) -> Option<u64> {
    match issuer.store.last_success_ms() {
        0 => None,
        ms => Some(unix_millis().saturating_sub(ms) / 1000),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn success_waits_the_interval_minus_jitter() {
        let d = next_refresh(S(300), S(10), LastFetch::Success { max_age: None }, 0.0);
        assert_eq!(d, S(300));
        let d = next_refresh(S(300), S(10), LastFetch::Success { max_age: None }, 0.999);
        assert!(d > S(269) && d < S(300), "{d:?}");
    }

    #[test]
    fn max_age_shortens_but_never_below_min_refetch() {
        let d = next_refresh(
            S(300),
            S(10),
            LastFetch::Success {
                max_age: Some(S(60)),
            },
            0.0,
        );
        assert_eq!(d, S(60));
        let d = next_refresh(
            S(300),
            S(10),
            LastFetch::Success {
                max_age: Some(S(1)),
            },
            0.0,
        );
        assert_eq!(d, S(10));
        let d = next_refresh(
            S(300),
            S(10),
            LastFetch::Success {
                max_age: Some(S(3600)),
            },
            0.0,
        );
        assert_eq!(d, S(300), "max-age never lengthens the interval");
        let zero = Some(S(0));
        let no_store = LastFetch::Success { max_age: zero };
        let d = next_refresh(S(300), S(0), no_store, 0.0);
        assert_eq!(d, MIN_REFRESH, "no-store + 0s min_refetch: no busy loop");
    }

    #[test]
    fn failures_back_off_exponentially_with_a_cap() {
        let f = |n| next_refresh(S(300), S(10), LastFetch::Failure { consecutive: n }, 0.5);
        assert_eq!(f(1), S(1));
        assert_eq!(f(2), S(2));
        assert_eq!(f(3), S(4));
        assert_eq!(f(7), S(60));
        assert_eq!(f(1000), S(60));
        let short = next_refresh(S(5), S(1), LastFetch::Failure { consecutive: 10 }, 0.5);
        assert_eq!(short, S(5), "capped by refresh_interval");
        let lo = next_refresh(S(300), S(10), LastFetch::Failure { consecutive: 3 }, 0.0);
        let hi = next_refresh(S(300), S(10), LastFetch::Failure { consecutive: 3 }, 0.999);
        assert!(lo >= Duration::from_millis(3200) && hi <= Duration::from_millis(4800));
    }

    fn issuer() -> Issuer {
        let cfg = crate::config::Config::parse(crate::config::UNIT_TEST_CONFIG, "(unit)")
            .expect("config");
        Issuer::new(cfg.issuers[0].clone())
    }

    /// What the refresher does when a fetch completes, minus the fetch.
    fn fetch_completed(issuer: &Issuer) {
        issuer.generation.send_modify(|g| *g = g.wrapping_add(1));
        issuer.in_flight.store(false, Ordering::Release);
    }

    #[tokio::test]
    async fn an_unknown_kid_looks_again_when_keys_changed_since_its_look() {
        let issuer = issuer();
        // Request B loads the keys (no new kid yet) ...
        let seen_by_b = issuer.keys_generation();
        // ... request A's refetch installs the new key meanwhile, starting the rate limit ...
        *issuer.last_triggered.lock().expect("lock") = Some(Instant::now());
        fetch_completed(&issuer);
        // ... so B, refused by the key set it loaded, must look again, not give up.
        assert!(issuer.refetch_for_unknown_kid(seen_by_b).await);
        // A request that looked after that fetch is rate limited (nothing new to see).
        let seen_now = issuer.keys_generation();
        assert!(!issuer.refetch_for_unknown_kid(seen_now).await);
    }

    #[test]
    fn cache_control_parsing() {
        assert_eq!(max_age("public, max-age=120"), Some(S(120)));
        assert_eq!(max_age("max-age=\"30\""), Some(S(30)));
        assert_eq!(max_age("no-store"), Some(S(0)));
        assert_eq!(max_age("public"), None);
        assert_eq!(max_age("max-age=abc"), None);
    }
}

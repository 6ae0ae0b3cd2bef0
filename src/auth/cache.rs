//! The verification cache: a token seen before costs a keyed hash and a lookup.
//!
//! Keys are a keyed BLAKE3 MAC (random per-process key) of the audience set and the token, so
//! the cache never holds a token and its keys cannot be probed offline. (HMAC-SHA-256 was the
//! first candidate; without SHA extensions on our CPUs it costs several times more per hit —
//! see `benches/hot_path.rs` and BENCHMARKS.md.) Accepted results, with their pre-built
//! identity headers, live in a moka cache bounded by `cache.max_entries`; rejections (negative
//! entries) in a compact cache of their own, bounded by `cache.max_negative_entries`
//! (`negative.rs`), so bad tokens never take an accepted result's place.

use std::sync::Arc;
use std::time::{Duration, Instant};

use metrics::{counter, Counter};
use moka::future::Cache;
use moka::Expiry;

use super::negative::NegativeCache;
use super::verified::{Outcome, Rejection, Verified};
use crate::metrics as m;
use crate::verify::now_unix;

/// A 128-bit keyed hash of (audience set, token). 128 bits keep a forged match out of reach
/// (an attacker who cannot see the key must hit one of the cached values by chance) at half
/// the memory of the full 256-bit output, which every entry stores more than once.
pub type CacheKey = [u8; 16];

/// The cache's own hash of a [`CacheKey`]: its first 8 bytes. The keys are already outputs of
/// a keyed PRF, uniform and unpredictable to clients, so hashing them again (SipHash, moka's
/// default) would only spend time on every lookup.
#[derive(Clone, Copy, Default)]
pub struct KeyHasher(u64);

impl std::hash::Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut b = [0u8; 8];
        let n = bytes.len().min(8);
        b[..n].copy_from_slice(&bytes[..n]);
        self.0 = self.0.rotate_left(17) ^ u64::from_le_bytes(b);
    }

    fn write_usize(&mut self, _len: usize) {
        // The slice length prefix: the same (16) for every key.
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

pub type KeyHasherBuilder = std::hash::BuildHasherDefault<KeyHasher>;

/// Which audiences a lookup is for: the issuer's configured ones (proxy traffic, and
/// TokenReview without `spec.audiences`), or an explicit set.
#[derive(Debug, Clone, Copy)]
pub enum Audiences<'a> {
    Configured,
    Explicit(&'a [String]),
}

pub struct Keyer {
    key: [u8; 32],
}

impl Keyer {
    pub fn random() -> Keyer {
        let mut key = [0u8; 32];
        // aws-lc-rs's system RNG; failure here means the OS has no entropy source.
        if aws_lc_rs::rand::fill(&mut key).is_err() {
            panic!("no system randomness available");
        }
        Keyer { key }
    }

    pub fn key(&self, token: &str, audiences: Audiences<'_>) -> CacheKey {
        let mut h = blake3::Hasher::new_keyed(&self.key);
        match audiences {
            Audiences::Configured => {
                h.update(&[0]);
            }
            Audiences::Explicit(list) => {
                // Order and duplicates do not change the set: sort a small vector of refs.
                let mut v: Vec<&str> = list.iter().map(String::as_str).collect();
                v.sort_unstable();
                v.dedup();
                h.update(&[1]);
                for a in v {
                    h.update(&(a.len() as u64).to_le_bytes());
                    h.update(a.as_bytes());
                }
            }
        }
        h.update(&(token.len() as u64).to_le_bytes());
        h.update(token.as_bytes());
        let mut key = [0u8; 16];
        h.finalize_xof().fill(&mut key);
        key
    }
}

/// Entry lifetime of an accepted result: until min(max_ttl, exp − now).
struct AcceptedExpiry {
    max_ttl: Duration,
}

impl Expiry<CacheKey, Arc<Verified>> for AcceptedExpiry {
    fn expire_after_create(
        &self,
        _key: &CacheKey,
        value: &Arc<Verified>,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(ttl_for(value, self.max_ttl))
    }
}

fn ttl_for(v: &Verified, max_ttl: Duration) -> Duration {
    match v.valid_until() {
        None => max_ttl,
        Some(until) => {
            let left = until.saturating_sub(now_unix()).max(0) as u64;
            max_ttl.min(Duration::from_secs(left))
        }
    }
}

/// The caches, their key, and their lookup counters.
pub struct VerifyCache {
    entries: Cache<CacheKey, Arc<Verified>, KeyHasherBuilder>,
    rejected: NegativeCache<CacheKey, Rejection, KeyHasherBuilder>,
    keyer: Keyer,
    hit: Counter,
    miss: Counter,
    negative_hit: Counter,
}

/// Why a verification left no accepted entry: a rejection (now a negative entry), or an
/// outcome that must not be cached at all.
enum Miss<E> {
    Rejected(Rejection),
    Uncached(E),
}

impl VerifyCache {
    pub fn new(
        max_entries: u64,
        max_negative_entries: u64,
        max_ttl: Duration,
        negative_ttl: Duration,
    ) -> VerifyCache {
        VerifyCache {
            entries: Cache::builder()
                .max_capacity(max_entries)
                .expire_after(AcceptedExpiry { max_ttl })
                .build_with_hasher(KeyHasherBuilder::default()),
            rejected: NegativeCache::new(max_negative_entries, negative_ttl),
            keyer: Keyer::random(),
            hit: counter!(m::VERIFY_CACHE_TOTAL, "result" => "hit"),
            miss: counter!(m::VERIFY_CACHE_TOTAL, "result" => "miss"),
            negative_hit: counter!(m::VERIFY_CACHE_TOTAL, "result" => "negative_hit"),
        }
    }

    pub fn key(&self, token: &str, audiences: Audiences<'_>) -> CacheKey {
        self.keyer.key(token, audiences)
    }

    /// The accepted result for `key`, else its rejection if one is remembered.
    pub async fn get(&self, key: &CacheKey) -> Option<Outcome> {
        if let Some(v) = self.entries.get(key).await {
            return Some(Outcome::Accepted(v));
        }
        self.rejected.get(key).map(Outcome::Rejected)
    }

    /// Forget an accepted result (rejections only expire).
    pub async fn invalidate(&self, key: &CacheKey) {
        self.entries.invalidate(key).await
    }

    /// The cached outcome, or `init`'s, computed once for concurrent callers of one key:
    /// accepted results go to the accepted cache, rejections to the negative one. `init`'s
    /// `Err` (an outcome that must not be cached) goes to every waiting caller.
    pub async fn get_or_verify<E: Clone + Send + Sync + 'static>(
        &self,
        key: CacheKey,
        init: impl std::future::Future<Output = Result<Outcome, E>>,
    ) -> Result<Outcome, E> {
        let accepted = self
            .entries
            .try_get_with(key, async {
                match init.await {
                    Ok(Outcome::Accepted(v)) => Ok(v),
                    Ok(Outcome::Rejected(r)) => {
                        self.rejected.insert(key, r.clone());
                        Err(Miss::Rejected(r))
                    }
                    Err(e) => Err(Miss::Uncached(e)),
                }
            })
            .await;
        match accepted {
            Ok(v) => Ok(Outcome::Accepted(v)),
            Err(miss) => match &*miss {
                Miss::Rejected(r) => Ok(Outcome::Rejected(r.clone())),
                Miss::Uncached(e) => Err(e.clone()),
            },
        }
    }

    /// Entries held, accepted (approximate, as moka reports it) and rejected.
    pub fn entry_count(&self) -> u64 {
        self.entries.entry_count() + self.rejected.count() as u64
    }

    pub async fn run_pending_tasks(&self) {
        self.entries.run_pending_tasks().await;
        self.rejected.purge_expired();
    }

    /// Count a lookup answered by an accepted entry (the cache or a connection's memo).
    pub fn count_hit(&self) {
        self.hit.increment(1);
    }

    pub fn count_miss(&self) {
        self.miss.increment(1);
    }

    pub fn count_negative_hit(&self) {
        self.negative_hit.increment(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_depend_on_token_and_audience_set_not_order() {
        let k = Keyer::random();
        let ab = vec!["a".to_string(), "b".to_string()];
        let ba = vec!["b".to_string(), "a".to_string(), "a".to_string()];
        let a = vec!["a".to_string()];
        assert_eq!(
            k.key("t", Audiences::Explicit(&ab)),
            k.key("t", Audiences::Explicit(&ba))
        );
        assert_ne!(
            k.key("t", Audiences::Explicit(&ab)),
            k.key("t", Audiences::Explicit(&a))
        );
        assert_ne!(
            k.key("t", Audiences::Configured),
            k.key("t", Audiences::Explicit(&a))
        );
        assert_ne!(
            k.key("t1", Audiences::Configured),
            k.key("t2", Audiences::Configured)
        );
        // Length prefixes: ["ab"] and ["a","b"] are different sets.
        let joined = vec!["ab".to_string()];
        assert_ne!(
            k.key("t", Audiences::Explicit(&ab)),
            k.key("t", Audiences::Explicit(&joined))
        );
    }

    #[test]
    fn keys_are_per_process_secret() {
        assert_ne!(
            Keyer::random().key("t", Audiences::Configured),
            Keyer::random().key("t", Audiences::Configured)
        );
    }
}

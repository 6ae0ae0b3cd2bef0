//! Rejected tokens, remembered for `negative_ttl` within a bound of their own
//! (`cache.max_negative_entries`): a flood of distinct bad tokens can neither grow memory past
//! it nor push accepted results out of the verification cache.
//!
//! Every entry lives the same `negative_ttl`, so insertion order is expiry order: each shard
//! is a hash map and a FIFO queue, and the oldest entry leaves first, whether it expired or its
//! shard is full. No per-entry bookkeeping beyond that: about 100 bytes an entry, where moka
//! needs several hundred (BENCHMARKS.md, "Negative entries"). Lookups take a shard's lock;
//! they run only for tokens that are not in the accepted cache.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hash};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Shards, so that workers looking up different tokens rarely meet on one lock.
const SHARDS: usize = 16;

/// A bounded map from key to value whose entries all expire `ttl` after insertion.
pub struct NegativeCache<K, V, S> {
    shards: Box<[Mutex<Shard<K, V, S>>]>,
    hasher: S,
    ttl_ms: u64,
    epoch: Instant,
}

struct Shard<K, V, S> {
    /// Value and expiry (milliseconds after `epoch`).
    map: HashMap<K, (V, u64), S>,
    /// Keys in insertion (so expiry) order, with the expiry they were inserted with: an entry
    /// whose key was inserted again later is stale, and skipped when it leaves.
    queue: VecDeque<(K, u64)>,
    capacity: usize,
}

impl<K: Hash + Eq + Copy, V: Clone, S: BuildHasher + Default> NegativeCache<K, V, S> {
    /// At most `capacity` entries in all, each kept for `ttl`. Nothing is allocated until
    /// entries arrive.
    pub fn new(capacity: u64, ttl: Duration) -> NegativeCache<K, V, S> {
        let capacity = usize::try_from(capacity).unwrap_or(usize::MAX);
        let n = SHARDS.min(capacity).max(1);
        let shards = (0..n)
            .map(|i| {
                Mutex::new(Shard {
                    map: HashMap::default(),
                    queue: VecDeque::new(),
                    // The remainder goes to the first shards: the total is exactly `capacity`.
                    capacity: capacity / n + usize::from(i < capacity % n),
                })
            })
            .collect();
        NegativeCache {
            shards,
            hasher: S::default(),
            ttl_ms: u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX),
            epoch: Instant::now(),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn shard(&self, key: &K) -> MutexGuard<'_, Shard<K, V, S>> {
        // Bits the shard's own table does not use for its bucket index (the low ones) nor for
        // its control bytes (the top seven).
        let i = (self.hasher.hash_one(key) >> 32) as usize % self.shards.len();
        self.shards[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The value for `key`, unless it has expired.
    pub fn get(&self, key: &K) -> Option<V> {
        let now = self.now_ms();
        let shard = self.shard(key);
        match shard.map.get(key) {
            Some((v, expires)) if *expires > now => Some(v.clone()),
            _ => None,
        }
    }

    pub fn insert(&self, key: K, value: V) {
        let now = self.now_ms();
        let expires = now.saturating_add(self.ttl_ms);
        let mut shard = self.shard(&key);
        if shard.capacity == 0 {
            return;
        }
        shard.expire(now);
        while shard.map.len() >= shard.capacity
            && !shard.queue.is_empty()
            && !shard.map.contains_key(&key)
        {
            shard.pop_oldest();
        }
        shard.map.insert(key, (value, expires));
        shard.queue.push_back((key, expires));
    }

    /// Drop expired entries, and give memory back once a shard holds far fewer entries than
    /// it has room for (after a flood).
    pub fn purge_expired(&self) {
        let now = self.now_ms();
        for shard in self.shards.iter() {
            let mut shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            shard.expire(now);
            let len = shard.map.len();
            if shard.map.capacity() > 64 && len < shard.map.capacity() / 4 {
                shard.map.shrink_to(len * 2);
                shard.queue.shrink_to(len * 2);
            }
        }
    }

    /// Entries held, expired ones not yet purged included.
    pub fn count(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).map.len())
            .sum()
    }
}

impl<K: Hash + Eq + Copy, V, S: BuildHasher> Shard<K, V, S> {
    fn expire(&mut self, now: u64) {
        while self.queue.front().is_some_and(|(_, e)| *e <= now) {
            self.pop_oldest();
        }
    }

    /// Remove the queue's oldest entry, and its map entry unless the key was inserted again
    /// since.
    fn pop_oldest(&mut self) {
        if let Some((key, expires)) = self.queue.pop_front() {
            if self.map.get(&key).is_some_and(|(_, e)| *e == expires) {
                self.map.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Cache = NegativeCache<[u8; 16], u8, std::collections::hash_map::RandomState>;

    fn key(i: u32) -> [u8; 16] {
        let mut k = [0u8; 16];
        k[..4].copy_from_slice(&i.to_le_bytes());
        k[8..12].copy_from_slice(&i.wrapping_mul(2_654_435_761).to_le_bytes());
        k
    }

    #[test]
    fn holds_at_most_its_capacity_and_drops_the_oldest_first() {
        let c = Cache::new(100, Duration::from_secs(60));
        for i in 0..10_000 {
            c.insert(key(i), 1);
        }
        assert!(c.count() <= 100, "{} entries", c.count());
        assert!(c.count() >= 90, "{} entries", c.count());
        // The newest are there, the oldest gone.
        assert_eq!(c.get(&key(9_999)), Some(1));
        assert_eq!(c.get(&key(0)), None);
        // The queues stay as short as the maps.
        let queued: usize = c.shards.iter().map(|s| s.lock().unwrap().queue.len()).sum();
        assert_eq!(queued, c.count());
    }

    #[test]
    fn entries_expire_after_the_ttl_and_can_come_back() {
        let c = Cache::new(10, Duration::from_millis(50));
        c.insert(key(1), 7);
        assert_eq!(c.get(&key(1)), Some(7));
        std::thread::sleep(Duration::from_millis(80));
        assert_eq!(c.get(&key(1)), None);
        // Inserted again after expiry: the new entry survives the old one's queue slot.
        c.insert(key(1), 8);
        c.purge_expired();
        assert_eq!(c.get(&key(1)), Some(8));
        assert_eq!(c.count(), 1);
        std::thread::sleep(Duration::from_millis(80));
        c.purge_expired();
        assert_eq!(c.count(), 0);
    }

    #[test]
    fn zero_capacity_remembers_nothing() {
        let c = Cache::new(0, Duration::from_secs(60));
        c.insert(key(1), 1);
        assert_eq!(c.get(&key(1)), None);
        assert_eq!(c.count(), 0);
    }

    #[test]
    fn memory_is_given_back_once_entries_expire() {
        let c = Cache::new(100_000, Duration::from_millis(500));
        for i in 0..100_000 {
            c.insert(key(i), 1);
        }
        std::thread::sleep(Duration::from_millis(600));
        c.purge_expired();
        for s in c.shards.iter() {
            let s = s.lock().unwrap();
            assert_eq!(s.map.capacity(), 0);
            assert_eq!(s.queue.capacity(), 0);
        }
    }

    #[test]
    fn a_negative_entry_stays_small() {
        // BENCHMARKS.md's bytes-per-entry figure depends on it: a 48-byte map slot (key,
        // rejection with its claim-rule message pointer, expiry) and a 24-byte queue slot
        // (key, expiry).
        assert!(std::mem::size_of::<([u8; 16], (crate::auth::Rejection, u64))>() <= 48);
        assert_eq!(std::mem::size_of::<([u8; 16], u64)>(), 24);
    }

    /// Resident memory of this process, in bytes.
    fn rss() -> usize {
        let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
        let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
        pages * 4096
    }

    /// Entries to measure with: `ENTRIES`, default 1,000,000.
    fn measured() -> u32 {
        std::env::var("ENTRIES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1_000_000)
    }

    fn rejection() -> crate::auth::Rejection {
        crate::auth::Rejection {
            generation: 0,
            reason: crate::verify::Reject::BadSignature,
            issuer: None,
            message: None,
        }
    }

    /// Bytes of RSS per negative entry, as the proxy keeps them (BENCHMARKS.md):
    /// `[ENTRIES=N] cargo test --lib negative_entry_memory -- --ignored --nocapture`.
    #[test]
    #[ignore = "measurement: run alone"]
    fn negative_entry_memory() {
        let n = measured();
        let c: NegativeCache<
            [u8; 16],
            crate::auth::Rejection,
            crate::auth::cache::KeyHasherBuilder,
        > = NegativeCache::new(u64::from(n), Duration::from_secs(600));
        let keyer = crate::auth::Keyer::random();
        let before = rss();
        for i in 0..n {
            let k = keyer.key(&i.to_string(), crate::auth::Audiences::Configured);
            c.insert(k, rejection());
        }
        let per_entry = (rss() - before) / n as usize;
        println!(
            "negative cache: {} entries, {per_entry} bytes per entry",
            c.count()
        );
        assert!(per_entry <= 200, "{per_entry} bytes per negative entry");
    }

    /// The same entries in a moka cache with a time-to-live, for comparison:
    /// `[ENTRIES=N] cargo test --lib moka_negative_entry_memory -- --ignored --nocapture`.
    #[test]
    #[ignore = "measurement: run alone"]
    fn moka_negative_entry_memory() {
        let n = measured();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let c: moka::future::Cache<
                [u8; 16],
                crate::auth::Rejection,
                crate::auth::cache::KeyHasherBuilder,
            > = moka::future::Cache::builder()
                .max_capacity(u64::from(n))
                .time_to_live(Duration::from_secs(600))
                .build_with_hasher(Default::default());
            let keyer = crate::auth::Keyer::random();
            let before = rss();
            for i in 0..n {
                let k = keyer.key(&i.to_string(), crate::auth::Audiences::Configured);
                c.insert(k, rejection()).await;
            }
            c.run_pending_tasks().await;
            let per_entry = (rss() - before) / n as usize;
            println!(
                "moka: {} entries, {per_entry} bytes per entry",
                c.entry_count()
            );
        });
    }
}

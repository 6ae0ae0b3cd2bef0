//! The shared bound-object state: the index, the watches' health, and the epoch that cached
//! results are stamped with.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use metrics::{gauge, Gauge};

use super::check::{Binding, Invalidated, LEEWAY_MS};
use super::index::{key, Index, ObjectState};
use super::kind::Kind;
use crate::metrics as m;

/// A cached result's stamp when its issuer has no `bound_objects`: never re-checked.
pub const NOT_BOUND: u32 = 0;
/// Flag bit of a stamp: the result's bindings cannot be rebuilt from the cached result (a
/// legacy token's or a secret-bound token's secret), so when the epoch moves it is verified
/// again from scratch instead of re-checked against the index.
pub const REVERIFY: u32 = 1;

/// Process-wide: stamps from one index can never be mistaken for another's. Even, never 0.
static EPOCH: AtomicU32 = AtomicU32::new(2);

/// The current bound-object epoch (what a fresh check stamps; read before the lookups).
#[inline]
pub fn epoch() -> u32 {
    EPOCH.load(Ordering::Acquire)
}

/// Is a cached result with this stamp still as checked? The cached path's only cost.
#[inline]
pub fn stamp_is_current(stamp: u32) -> bool {
    stamp == NOT_BOUND || stamp & !REVERIFY == epoch()
}

fn bump_epoch() {
    // Wrapping past 0 skips it: 0 is `NOT_BOUND`.
    if EPOCH.fetch_add(2, Ordering::AcqRel).wrapping_add(2) == 0 {
        EPOCH.fetch_add(2, Ordering::AcqRel);
    }
}

/// How often changes are folded into one epoch step, deletion leeways are checked and the
/// watches' health is re-evaluated. Bounds the invalidation delay (target: 1 s).
pub const TICK: Duration = Duration::from_millis(100);

/// Milliseconds on a monotonic clock (watch health).
pub(super) fn mono_ms() -> i64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as i64 + 1
}

/// Wall-clock milliseconds (deletion timestamps).
pub fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// One watch's health.
#[derive(Default)]
struct Health {
    /// The first full list arrived.
    listed: AtomicBool,
    /// Monotonic ms of the first failure since the watch last worked; 0 = working.
    broken_since: AtomicI64,
    /// Monotonic ms of the last failure.
    last_error: AtomicI64,
    /// Monotonic ms of the last successful (2xx) response from the apiserver to this watch's
    /// requests: a re-established watch says nothing until an event arrives, this does.
    last_success: Arc<AtomicI64>,
}

impl Health {
    fn in_sync(&self) -> bool {
        self.listed.load(Ordering::Acquire) && self.broken_since.load(Ordering::Acquire) == 0
    }
}

/// The shared bound-object state: the index, the watches' health, and the epoch's driver. One
/// per process while some issuer has `bound_objects`; reloads keep it.
pub struct BoundObjects {
    index: Index,
    health: [Health; 4],
    max_stale_ms: AtomicU64,
    /// Every watch listed, none broken past `max_stale`: checks can be answered.
    usable: AtomicBool,
    /// Something changed since the last epoch step.
    dirty: AtomicBool,
    /// Wall ms at which a recorded deletion's leeway passes.
    leeways: Mutex<BinaryHeap<Reverse<i64>>>,
    objects: [Gauge; 4],
    synced: [Gauge; 4],
}

impl BoundObjects {
    pub fn new(max_stale: Duration) -> BoundObjects {
        let per_kind = |name: &'static str| Kind::ALL.map(|k| gauge!(name, "kind" => k.as_str()));
        let b = BoundObjects {
            index: Index::default(),
            health: Default::default(),
            max_stale_ms: AtomicU64::new(max_stale.as_millis() as u64),
            usable: AtomicBool::new(false),
            dirty: AtomicBool::new(false),
            leeways: Mutex::new(BinaryHeap::new()),
            objects: per_kind(m::BOUND_OBJECTS),
            synced: per_kind(m::BOUND_OBJECTS_SYNCED),
        };
        for g in b.objects.iter().chain(&b.synced) {
            g.set(0.0);
        }
        // Results stamped against a previous index are checked against this one.
        bump_epoch();
        b
    }

    /// A fixed index of objects fetched once (`inspect`): usable at once, never watched.
    pub fn fetched(objects: &[(Kind, String, String, ObjectState)]) -> BoundObjects {
        let b = BoundObjects::new(Duration::from_secs(u64::from(u32::MAX)));
        for (kind, ns, name, state) in objects {
            let ns = (*kind != Kind::Nodes).then_some(ns.as_str());
            b.index.apply(*kind, key(ns, name), *state);
        }
        for k in Kind::ALL {
            b.listed(k);
        }
        b.tick();
        b
    }

    pub fn set_max_stale(&self, max_stale: Duration) {
        self.max_stale_ms
            .store(max_stale.as_millis() as u64, Ordering::Release);
    }

    pub fn index(&self) -> &Index {
        &self.index
    }

    /// Every watch has listed and none has been broken past `max_stale`.
    pub fn usable(&self) -> bool {
        self.usable.load(Ordering::Acquire)
    }

    /// kube-apiserver's checks for `b` against the index.
    pub fn check(&self, b: &Binding) -> Result<(), Invalidated> {
        b.check(wall_ms(), |kind, ns, name| self.index.get(kind, ns, name))
    }

    /// For `/readyz`: ready when usable; one line per watch.
    pub fn readiness(&self) -> (bool, String) {
        let mut body = String::new();
        for k in Kind::ALL {
            let h = &self.health[k as usize];
            let state = if !h.listed.load(Ordering::Acquire) {
                "not listed yet"
            } else if h.in_sync() {
                "in sync"
            } else {
                "watch broken, serving the last state until kubernetes.max_stale"
            };
            body.push_str(&format!("bound objects {}: {state}\n", k.as_str()));
        }
        let ok = self.usable();
        if !ok {
            body.push_str("bound objects: not usable (tokens of bound_objects issuers get 503)\n");
        }
        (ok, body)
    }

    /// An object that cached results may depend on changed (watch tasks, after the index).
    pub(super) fn changed(&self) {
        self.dirty.store(true, Ordering::Release);
    }

    /// Remember a deletion timestamp: the epoch moves when its leeway passes.
    pub(super) fn deleting(&self, deleted_at_secs: u32) {
        let at = i64::from(deleted_at_secs) * 1000 + LEEWAY_MS + 1;
        if let Ok(mut l) = self.leeways.lock() {
            l.push(Reverse(at));
        }
    }

    pub(super) fn watch_failed(&self, kind: Kind) {
        let h = &self.health[kind as usize];
        let now = mono_ms();
        h.last_error.store(now, Ordering::Release);
        let _ = h
            .broken_since
            .compare_exchange(0, now, Ordering::AcqRel, Ordering::Acquire);
    }

    pub(super) fn watch_working(&self, kind: Kind) {
        self.health[kind as usize]
            .broken_since
            .store(0, Ordering::Release);
    }

    pub(super) fn listed(&self, kind: Kind) {
        let h = &self.health[kind as usize];
        h.listed.store(true, Ordering::Release);
        h.broken_since.store(0, Ordering::Release);
    }

    pub(super) fn success_clock(&self, kind: Kind) -> Arc<AtomicI64> {
        self.health[kind as usize].last_success.clone()
    }

    /// Fold changes into one epoch step; pass leeways; re-evaluate health. Every [`TICK`].
    pub fn tick(&self) {
        let now = mono_ms();
        let max_stale = self.max_stale_ms.load(Ordering::Acquire) as i64;
        let mut usable = true;
        for k in Kind::ALL {
            let h = &self.health[k as usize];
            let broken = h.broken_since.load(Ordering::Acquire);
            // A successful response after the last failure: the watch is back (resumed
            // quietly, with nothing to report yet).
            if broken != 0
                && h.last_success.load(Ordering::Acquire) > h.last_error.load(Ordering::Acquire)
            {
                h.broken_since.store(0, Ordering::Release);
            }
            let broken = h.broken_since.load(Ordering::Acquire);
            let listed = h.listed.load(Ordering::Acquire);
            usable &= listed && (broken == 0 || now - broken <= max_stale);
            self.synced[k as usize].set(if h.in_sync() { 1.0 } else { 0.0 });
            self.objects[k as usize].set(self.index.len(k) as f64);
        }
        if self.usable.swap(usable, Ordering::AcqRel) != usable {
            if usable {
                tracing::info!("bound objects: watches in sync; bound tokens are checked again");
            } else {
                tracing::warn!("bound objects: watches not in sync past kubernetes.max_stale (or not listed yet); tokens of bound_objects issuers get 503");
            }
            self.changed();
        }
        let wall = wall_ms();
        if let Ok(mut l) = self.leeways.lock() {
            while l.peek().is_some_and(|Reverse(at)| *at <= wall) {
                l.pop();
                self.changed();
            }
        }
        if self.dirty.swap(false, Ordering::AcqRel) {
            bump_epoch();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_follow_the_epoch_and_never_collide_with_not_bound() {
        let e = epoch();
        assert_ne!(e, NOT_BOUND);
        assert_eq!(e & REVERIFY, 0);
        assert!(stamp_is_current(NOT_BOUND));
        let b = BoundObjects::new(Duration::from_secs(1));
        let stamp = epoch() | REVERIFY;
        b.changed();
        b.tick();
        assert!(!stamp_is_current(stamp));
        assert!(stamp_is_current(NOT_BOUND));
    }

    #[test]
    fn usable_only_once_every_kind_is_listed_and_until_broken_past_max_stale() {
        let b = BoundObjects::new(Duration::from_millis(50));
        b.tick();
        assert!(!b.usable());
        for k in Kind::ALL {
            b.listed(k);
        }
        b.tick();
        assert!(b.usable());
        b.watch_failed(Kind::Pods);
        b.tick();
        assert!(b.usable(), "within max_stale the last state serves");
        std::thread::sleep(Duration::from_millis(80));
        let before = epoch();
        b.tick();
        assert!(!b.usable());
        assert_ne!(epoch(), before, "cached results notice");
        // A successful response after the failure: back in sync.
        b.success_clock(Kind::Pods)
            .store(mono_ms() + 1, Ordering::Release);
        b.tick();
        assert!(b.usable());
    }

    #[test]
    fn a_passing_leeway_moves_the_epoch() {
        let b = BoundObjects::new(Duration::from_secs(1));
        b.tick();
        let deleted = ((wall_ms() - LEEWAY_MS - 2000) / 1000) as u32;
        b.deleting(deleted);
        let before = epoch();
        b.tick();
        assert_ne!(epoch(), before);
        let before = epoch();
        b.deleting(u32::MAX);
        b.tick();
        assert_eq!(epoch(), before, "a leeway still ahead waits");
    }
}

//! Interning of principals: all the cached tokens of one caller share one [`Principal`].

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex, Weak};

use super::issuers::TrustedIssuer;
use super::verified::Principal;
use crate::identity::Identity;

/// Interned principals by a keyed hash of (issuer name, legacy, identity, audiences). Holds
/// weak references: a principal lives as long as some cache entry uses it; dead slots are
/// swept when the map doubles.
pub struct Interner(Mutex<Slots>);

struct Slots {
    map: HashMap<u64, Weak<Principal>>,
    sweep_at: usize,
    hasher: RandomState,
}

/// What makes two principals the same.
pub struct PrincipalKey<'a> {
    pub issuer: &'a Arc<TrustedIssuer>,
    pub legacy: bool,
    pub identity: &'a Identity,
    pub audiences: &'a [String],
}

impl PrincipalKey<'_> {
    fn hash(&self, slots: &Slots) -> u64 {
        slots.hasher.hash_one((
            self.issuer.name(),
            self.legacy,
            self.identity,
            self.audiences,
        ))
    }

    fn matches(&self, p: &Principal) -> bool {
        Arc::ptr_eq(&p.issuer, self.issuer)
            && p.legacy == self.legacy
            && p.identity == *self.identity
            && p.audiences == self.audiences
    }
}

impl Default for Interner {
    fn default() -> Interner {
        Interner(Mutex::new(Slots {
            map: HashMap::new(),
            sweep_at: 1024,
            hasher: RandomState::new(),
        }))
    }
}

impl Interner {
    /// The live principal equal to `key`, if any (its identity headers are then built
    /// already).
    pub fn find(&self, key: &PrincipalKey<'_>) -> Option<Arc<Principal>> {
        let slots = self.0.lock().ok()?;
        slots
            .map
            .get(&key.hash(&slots))
            .and_then(Weak::upgrade)
            .filter(|p| key.matches(p))
    }

    /// The live principal equal to the one given, or this one, interned.
    pub fn intern(&self, p: Principal) -> Arc<Principal> {
        let Ok(mut slots) = self.0.lock() else {
            return Arc::new(p);
        };
        let key = PrincipalKey {
            issuer: &p.issuer,
            legacy: p.legacy,
            identity: &p.identity,
            audiences: &p.audiences,
        };
        let hash = key.hash(&slots);
        if let Some(live) = slots.map.get(&hash).and_then(Weak::upgrade) {
            if key.matches(&live) {
                return live;
            }
        }
        let p = Arc::new(p);
        slots.map.insert(hash, Arc::downgrade(&p));
        if slots.map.len() >= slots.sweep_at {
            slots.map.retain(|_, w| w.strong_count() > 0);
            slots.sweep_at = (slots.map.len() * 2).max(1024);
        }
        p
    }
}

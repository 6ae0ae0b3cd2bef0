//! Interning of principals: all the cached tokens of one caller share one [`Principal`].

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Arc, Weak};

use http::{HeaderName, HeaderValue};

use super::Authenticator;
use crate::identity::{Identity, Principal};

/// Interned principals by a keyed hash of (issuer, identity, audiences). Holds weak
/// references: a principal lives as long as some cache entry uses it; dead slots are swept
/// when the map doubles.
pub(super) struct Interner {
    map: HashMap<u64, Weak<Principal>>,
    sweep_at: usize,
    hasher: RandomState,
}

impl Interner {
    pub(super) fn new() -> Interner {
        Interner {
            map: HashMap::new(),
            sweep_at: 1024,
            hasher: RandomState::new(),
        }
    }
}

impl Authenticator {
    /// A live principal equal to (issuer, legacy, identity, audiences), if a cache entry holds
    /// one. Its headers were built and checked when it was made, so a caller that finds one
    /// need not build them again.
    pub(super) fn find_principal(
        &self,
        issuer: usize,
        legacy: bool,
        identity: &Identity,
        audiences: &[String],
    ) -> Option<Arc<Principal>> {
        let interner = self.principals.lock().ok()?;
        let key = interner
            .hasher
            .hash_one((issuer, legacy, identity, audiences));
        interner
            .map
            .get(&key)
            .and_then(Weak::upgrade)
            .filter(|p| same(p, issuer, legacy, identity, audiences))
    }

    /// The shared principal for (issuer, legacy, identity, audiences): an existing one if a
    /// live cache entry holds it, else a new one. Called only after the signature verified.
    pub(super) fn intern(
        &self,
        issuer: usize,
        legacy: bool,
        identity: Identity,
        audiences: Vec<String>,
        headers: Vec<(HeaderName, HeaderValue)>,
    ) -> Arc<Principal> {
        let make = |identity, audiences, headers| {
            Arc::new(Principal {
                issuer,
                legacy,
                identity,
                audiences,
                headers,
            })
        };
        let Ok(mut interner) = self.principals.lock() else {
            return make(identity, audiences, headers);
        };
        let key = interner
            .hasher
            .hash_one((issuer, legacy, &identity, audiences.as_slice()));
        if let Some(p) = interner.map.get(&key).and_then(Weak::upgrade) {
            if same(&p, issuer, legacy, &identity, &audiences) {
                return p;
            }
        }
        let p = make(identity, audiences, headers);
        interner.map.insert(key, Arc::downgrade(&p));
        if interner.map.len() >= interner.sweep_at {
            interner.map.retain(|_, w| w.strong_count() > 0);
            interner.sweep_at = (interner.map.len() * 2).max(1024);
        }
        p
    }
}

/// A 64-bit hash may collide: share only what is really equal.
fn same(
    p: &Principal,
    issuer: usize,
    legacy: bool,
    identity: &Identity,
    audiences: &[String],
) -> bool {
    p.issuer == issuer && p.legacy == legacy && p.identity == *identity && p.audiences == audiences
}

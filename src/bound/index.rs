//! The compact index of watched objects: per kind, `namespace/name` (nodes: `name`) → uid,
//! deletion time and, for secrets, whether `kubernetes.io/legacy-token-invalid-since` is set.
//! Nothing else of an object is kept (no managedFields, labels or annotations): one boxed
//! key and a 24-byte value, about 100–150 bytes an object with the table's own overhead
//! (`benches/bound_index.rs` measures it).
//!
//! Read only on the slow paths (a cache miss, or a cached result whose epoch moved), written
//! by the watch tasks: a read-write lock per kind.

use std::collections::HashMap;
use std::sync::RwLock;

use super::kind::Kind;

/// An object's uid, as 16 bytes: a canonical (lowercase) UUID parsed, anything else hashed
/// (kube-apiserver compares uids as strings: equal bytes here iff equal strings, short of a
/// BLAKE3 collision).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Uid([u8; 16]);

impl Uid {
    pub fn of(s: &str) -> Uid {
        parse_uuid(s).map_or_else(
            || {
                let mut h = blake3::Hasher::new();
                h.update(b"tokenreview-proxy uid\0");
                h.update(s.as_bytes());
                let mut out = [0u8; 16];
                h.finalize_xof().fill(&mut out);
                Uid(out)
            },
            Uid,
        )
    }
}

/// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`, lowercase hex only.
fn parse_uuid(s: &str) -> Option<[u8; 16]> {
    let b = s.as_bytes();
    if b.len() != 36 || [8, 13, 18, 23].iter().any(|&i| b[i] != b'-') {
        return None;
    }
    let mut out = [0u8; 16];
    let mut hex = b.iter().filter(|&&c| c != b'-');
    for o in &mut out {
        let mut v = 0u8;
        for _ in 0..2 {
            let c = *hex.next()?;
            let d = match c {
                b'0'..=b'9' => c - b'0',
                b'a'..=b'f' => c - b'a' + 10,
                _ => return None,
            };
            v = v << 4 | d;
        }
        *o = v;
    }
    Some(out)
}

/// What the checks need of one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectState {
    pub uid: Uid,
    /// `metadata.deletionTimestamp` in Unix seconds; 0: none.
    pub deleted_at: u32,
    /// A secret labelled `kubernetes.io/legacy-token-invalid-since` (non-empty).
    pub legacy_invalid: bool,
}

impl ObjectState {
    /// Whether replacing `self` with `next` can make a token that passed the checks fail them
    /// (a result cached under `self` must then be checked again).
    pub fn weakened_by(&self, next: &ObjectState) -> bool {
        self.uid != next.uid
            || (next.deleted_at != 0 && next.deleted_at != self.deleted_at)
            || (next.legacy_invalid && !self.legacy_invalid)
    }
}

/// `namespace/name`, or `name` for cluster-scoped objects.
pub fn key(namespace: Option<&str>, name: &str) -> Box<str> {
    match namespace {
        Some(ns) => format!("{ns}/{name}").into_boxed_str(),
        None => name.into(),
    }
}

pub type KindMap = HashMap<Box<str>, ObjectState>;

#[derive(Default)]
pub struct Index {
    kinds: [RwLock<KindMap>; 4],
}

impl Index {
    /// The object `ns/name` (nodes: `ns` is ignored).
    pub fn get(&self, kind: Kind, ns: &str, name: &str) -> Option<ObjectState> {
        let map = self.kinds[kind as usize].read().ok()?;
        if kind == Kind::Nodes {
            return map.get(name).copied();
        }
        let mut k = String::with_capacity(ns.len() + 1 + name.len());
        k.push_str(ns);
        k.push('/');
        k.push_str(name);
        map.get(k.as_str()).copied()
    }

    /// Insert or update; the state it replaced.
    pub fn apply(&self, kind: Kind, key: Box<str>, state: ObjectState) -> Option<ObjectState> {
        self.kinds[kind as usize]
            .write()
            .ok()
            .and_then(|mut map| map.insert(key, state))
    }

    /// Remove; `true` if it was there.
    pub fn remove(&self, kind: Kind, key: &str) -> bool {
        self.kinds[kind as usize]
            .write()
            .map_or(true, |mut m| m.remove(key).is_some())
    }

    /// Replace a kind's whole map (a full list).
    pub fn replace(&self, kind: Kind, map: KindMap) {
        if let Ok(mut m) = self.kinds[kind as usize].write() {
            *m = map;
        }
    }

    pub fn len(&self, kind: Kind) -> usize {
        self.kinds[kind as usize].read().map_or(0, |m| m.len())
    }

    pub fn is_empty(&self) -> bool {
        Kind::ALL.iter().all(|&k| self.len(k) == 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uids_compare_as_their_strings() {
        let a = "0e7b7c2a-59a4-4d2c-9a52-3f1c2f8d7e10";
        assert_eq!(Uid::of(a), Uid::of(a));
        assert_eq!(
            parse_uuid(a).map(|b| b[0]),
            Some(0x0e),
            "a canonical UUID is parsed"
        );
        assert_ne!(
            Uid::of(a),
            Uid::of(&a.to_uppercase()),
            "as strings, case matters"
        );
        assert_ne!(Uid::of("uid-1"), Uid::of("uid-2"));
        assert_eq!(Uid::of("uid-1"), Uid::of("uid-1"));
        assert_ne!(Uid::of(""), Uid::of("x"));
    }

    #[test]
    fn value_stays_small() {
        assert_eq!(std::mem::size_of::<ObjectState>(), 24);
    }

    #[test]
    fn weakening_changes_are_told_apart() {
        let s = ObjectState {
            uid: Uid::of("a"),
            deleted_at: 0,
            legacy_invalid: false,
        };
        let idx = Index::default();
        assert_eq!(idx.apply(Kind::Pods, key(Some("ns"), "p"), s), None, "new");
        assert_eq!(idx.apply(Kind::Pods, key(Some("ns"), "p"), s), Some(s));
        assert!(!s.weakened_by(&s), "same");
        let deleting = ObjectState {
            deleted_at: 100,
            ..s
        };
        assert!(s.weakened_by(&deleting));
        assert!(
            !deleting.weakened_by(&s),
            "undeleted: nothing cached can fail"
        );
        let recreated = ObjectState {
            uid: Uid::of("b"),
            ..s
        };
        assert!(s.weakened_by(&recreated));
        let marked = ObjectState {
            legacy_invalid: true,
            ..s
        };
        assert!(s.weakened_by(&marked));
        idx.apply(Kind::Pods, key(Some("ns"), "p"), recreated);
        assert_eq!(idx.get(Kind::Pods, "ns", "p"), Some(recreated));
        assert_eq!(idx.get(Kind::Pods, "ns", "q"), None);
        idx.apply(Kind::Nodes, key(None, "n1"), s);
        assert_eq!(idx.get(Kind::Nodes, "ignored", "n1"), Some(s));
        assert!(idx.remove(Kind::Pods, "ns/p"));
        assert!(!idx.remove(Kind::Pods, "ns/p"));
        assert_eq!(idx.len(Kind::Nodes), 1);
    }
}

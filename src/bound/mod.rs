//! Bound objects (SPEC section 12): a token bound to a pod, secret or node dies with it, as in
//! kube-apiserver, without an API call per request.
//!
//! `watch` lists and watches the metadata of serviceaccounts, pods, secrets and nodes
//! (kube-rs watchers) into a compact `index`; `check` is kube-apiserver's service-account
//! validator over it. Cached results pay one atomic compare: each remembers the [`epoch`] it
//! was checked at, and the epoch moves (at most every [`TICK`]) whenever something a result
//! could depend on changed — an object deleted, recreated or marked invalid, a deletion's
//! 60 s leeway passing, the watches falling stale or recovering. A result from an older epoch
//! is checked against the index again (map lookups only then) and re-stamped.

mod check;
mod index;
mod kind;
mod state;
mod watch;

pub use check::{Binding, Invalidated, Why, LEEWAY_MS};
pub use index::{Index, KindMap, ObjectState, Uid};
pub use kind::Kind;
pub use state::{epoch, stamp_is_current, wall_ms, BoundObjects, NOT_BOUND, REVERIFY, TICK};
pub use watch::{fetch_binding_objects, state_of, BoundWatch};

/// Whether `config` needs the watches: some issuer has `bound_objects`.
pub fn wanted(config: &crate::config::Config) -> bool {
    config.issuers.iter().any(|i| i.bound_objects)
}

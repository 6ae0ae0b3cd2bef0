//! The bound-object check (SPEC section 12) as authentication runs it: on a cache miss after
//! the signature (so unsigned tokens learn nothing about the cluster), and on a cache hit only
//! when the result's epoch stamp is older than [`crate::bound::epoch`] (then against the index,
//! and re-stamped).

use std::sync::atomic::Ordering;

use super::verified::Verified;
use crate::bound::{self, Binding, BoundObjects, Invalidated, REVERIFY};
use crate::identity::{EXTRA_NODE_NAME, EXTRA_NODE_UID};
use crate::verify::{split_sa_username, Claims};

/// Why a bound check did not pass.
pub(super) enum Failed {
    /// The watches are not in sync (or not running): fail closed, 503.
    Stale,
    /// An object is gone: `invalidated`.
    Invalidated(Box<Invalidated>),
    /// The result must be verified again from scratch (its binding cannot be rebuilt).
    Reverify,
}

/// A fresh token's check; the epoch read before the lookups, and its binding.
pub(super) fn check_new(
    objects: Option<&BoundObjects>,
    claims: &Claims,
    legacy: bool,
) -> Result<(u32, Binding), Failed> {
    let objects = objects.ok_or(Failed::Stale)?;
    let epoch = bound::epoch();
    if !objects.usable() {
        return Err(Failed::Stale);
    }
    let binding = Binding::from_claims(claims, legacy);
    objects
        .check(&binding)
        .map_err(|i| Failed::Invalidated(Box::new(i)))?;
    Ok((epoch, binding))
}

/// The stamp of a new result checked at `epoch`: flagged [`REVERIFY`] when what it holds does
/// not rebuild exactly the binding that was checked (legacy and secret-bound tokens).
pub(super) fn stamp(epoch: u32, checked: &Binding, v: &Verified) -> u32 {
    if binding_of(v).as_ref() == Some(checked) {
        epoch
    } else {
        epoch | REVERIFY
    }
}

/// A cached result whose stamp is behind the epoch: check it again and re-stamp it.
#[cold]
#[inline(never)]
pub(super) fn recheck(objects: Option<&BoundObjects>, v: &Verified) -> Result<(), Failed> {
    if v.bound.load(Ordering::Relaxed) & REVERIFY != 0 {
        return Err(Failed::Reverify);
    }
    let objects = objects.ok_or(Failed::Stale)?;
    let epoch = bound::epoch();
    if !objects.usable() {
        return Err(Failed::Stale);
    }
    let binding = binding_of(v).ok_or(Failed::Reverify)?;
    objects
        .check(&binding)
        .map_err(|i| Failed::Invalidated(Box::new(i)))?;
    v.bound.store(epoch, Ordering::Relaxed);
    Ok(())
}

/// The binding of a cached (non-legacy) result, rebuilt from its principal (namespace,
/// service account and its uid, node) and its per-token ids (pod). A secret binding is not
/// kept: such results are stamped [`REVERIFY`].
fn binding_of(v: &Verified) -> Option<Binding> {
    let p = &v.principal;
    if p.legacy {
        return None;
    }
    let (ns, sa) = split_sa_username(&p.identity.username)?;
    let extra = |key: &str| {
        p.identity
            .extra
            .iter()
            .find(|(k, _)| k == key)
            .and_then(|(_, v)| v.first().cloned())
    };
    let both = |a: Option<String>, b: Option<String>| match (a, b) {
        (Some(a), Some(b)) => Some(Some((a, b))),
        (None, None) => Some(None),
        _ => None,
    };
    let node = both(extra(EXTRA_NODE_NAME), extra(EXTRA_NODE_UID))?;
    let pod = both(v.ids.pod_name().map(|n| n.into_owned()), v.ids.pod_uid())?;
    Some(Binding {
        namespace: ns.to_string(),
        service_account: (sa.to_string(), p.identity.uid.clone()),
        pod,
        secret: None,
        node,
        legacy: false,
    })
}

/// The log line of an invalidated token: the object and why, never the token.
pub(super) fn log_invalidated(issuer: &str, token: &str, i: &Invalidated) {
    tracing::info!(
        issuer,
        token_fingerprint = %crate::token::fingerprint(token),
        object = %i,
        "token rejected: invalidated ({i})"
    );
}

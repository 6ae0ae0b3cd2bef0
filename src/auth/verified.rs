//! What authentication produces and the cache keeps: an accepted token ([`Verified`], sharing
//! its caller's [`Principal`]) or a rejection.

use std::sync::atomic::AtomicU32;
use std::sync::Arc;

use http::{HeaderName, HeaderValue};

use super::issuers::TrustedIssuer;
use crate::identity::{Identity, TokenIds};
use crate::verify::Reject;

/// What every cached token of one caller shares: the issuer, the identity without its
/// per-token extras (see [`TokenIds`]), the audiences it was accepted for, and the identity
/// headers built once. Interned, so all the tokens of one service account (on one node) cost
/// one copy, whichever pods hold them.
#[derive(Debug)]
pub struct Principal {
    /// The issuer that accepted the token (by its configured name, never by position).
    pub issuer: Arc<TrustedIssuer>,
    /// A legacy Secret-based token (no pod binding, no credential id).
    pub legacy: bool,
    pub identity: Identity,
    pub audiences: Vec<String>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

/// An accepted token: who it is, and everything needed to re-check a cached copy. Every cache
/// entry holds one, so it is kept to 72 bytes (with the `Arc` around it, a 96-byte
/// allocation): the shared part lives in an interned [`Principal`], the per-token ids are
/// packed ([`TokenIds`]), times use sentinels.
#[derive(Debug)]
pub struct Verified {
    /// Issuer, identity without the per-token extras, accepted audiences, pre-built headers:
    /// shared.
    pub principal: Arc<Principal>,
    /// The token's pod name and uid and `credential-id` (`JTI=<jti>`).
    pub ids: TokenIds,
    /// `exp + clock_skew`: the last second this result may be served (cache entries live
    /// until then, capped by `cache.max_ttl`), saturated to 32 bits (`max_lifetime` keeps
    /// real values far below 2106). `u32::MAX`: the token has no `exp`.
    pub(super) valid_until: u32,
    /// `kubernetes.io.warnafter` (Unix seconds, saturated to 32 bits); `u32::MAX` when the
    /// token carries none.
    pub(super) warnafter: u32,
    /// The key that verified the signature ([`crate::keys::VerifyingKey::serial`]).
    pub key_serial: u32,
    /// The bound-object epoch this result was last checked at ([`crate::bound::epoch`], with
    /// [`crate::bound::REVERIFY`]), or [`crate::bound::NOT_BOUND`].
    pub(super) bound: AtomicU32,
}

impl Verified {
    /// The issuer that accepted the token.
    pub fn issuer(&self) -> &TrustedIssuer {
        &self.principal.issuer
    }

    /// A legacy Secret-based token.
    pub fn legacy(&self) -> bool {
        self.principal.legacy
    }

    /// `exp + clock_skew`, if the token expires.
    pub fn valid_until(&self) -> Option<i64> {
        (self.valid_until != u32::MAX).then_some(i64::from(self.valid_until))
    }

    /// The full identity, per-token extras included (allocates: for TokenReview and `inspect`).
    pub fn identity(&self) -> Identity {
        let mut id = self.principal.identity.clone();
        let extras = self.ids.extras();
        if !extras.is_empty() {
            id.extra.extend(extras);
            id.extra.sort_by(|a, b| a.0.cmp(&b.0));
        }
        id
    }

    /// Token audiences ∩ the audiences asked for.
    pub fn audiences(&self) -> &[String] {
        &self.principal.audiences
    }
}

/// A token said no to, and by which issuer (`None`: no configured issuer could be tied to it).
#[derive(Debug, Clone)]
pub struct Rejection {
    pub reason: Reject,
    pub issuer: Option<Arc<TrustedIssuer>>,
    /// The config generation that decided it: a cached rejection from before a reload is
    /// decided again.
    pub generation: u32,
    /// Why a claim rule or mapping refused the token (`invalid_claims` only): logged, and
    /// TokenReview's `status.error`. Never in 401 responses.
    /// (A thin pointer: every negative cache slot holds one.)
    pub message: Option<Arc<String>>,
}

impl Rejection {
    /// The issuer's name, or the label of rejections no issuer can be tied to.
    pub fn issuer_name(&self) -> &str {
        self.issuer
            .as_deref()
            .map_or(super::issuers::UNKNOWN_ISSUER_LABEL, TrustedIssuer::name)
    }
}

/// What the cache stores per (token, audience set).
#[derive(Debug, Clone)]
pub enum Outcome {
    Accepted(Arc<Verified>),
    Rejected(Rejection),
}

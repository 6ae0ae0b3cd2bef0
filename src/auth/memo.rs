//! A connection's memo of its last accepted token: repeats on a keep-alive connection skip
//! the keyed hash and the shared cache.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::verified::Verified;
use crate::identity::TokenHeaderValues;

/// A connection's last accepted token and its result. Clients send the same token on every
/// request of a keep-alive connection; a repeat then costs a constant-time compare of the
/// token instead of the keyed hash and the shared-cache lookup. The caller still rechecks
/// (expiry, key still published, keys usable) on every use, and a memo is trusted for at most
/// [`MEMO_TTL`] before the shared cache is asked again, so nothing the cache decides (entry
/// lifetimes, invalidation) is bypassed for longer than that. Rejections are never memoized.
/// The memo also keeps the token's per-token header values (pod name and uid, credential id),
/// built once here rather than on every request or in every cache entry.
#[derive(Default)]
pub struct TokenMemo(Mutex<Option<Memo>>);

struct Memo {
    /// A copy of the token: it lives only as long as the connection, and is never logged.
    token: Box<[u8]>,
    verified: Arc<Verified>,
    headers: TokenHeaderValues,
    at: Instant,
}

/// How long a memo answers before the shared cache is asked again.
pub const MEMO_TTL: std::time::Duration = std::time::Duration::from_secs(1);

impl TokenMemo {
    /// Remember `token`'s result (`None`: it was not accepted; forget the last one).
    pub fn remember(&self, token: &str, accepted: Option<(&Arc<Verified>, &TokenHeaderValues)>) {
        if let Ok(mut m) = self.0.lock() {
            *m = accepted.map(|(verified, headers)| Memo {
                token: token.as_bytes().into(),
                verified: verified.clone(),
                headers: headers.clone(),
                at: Instant::now(),
            });
        }
    }

    /// The remembered result, if `token` is the remembered token (compared in constant time)
    /// and the memo is younger than [`MEMO_TTL`].
    pub fn recall(&self, token: &str) -> Option<(Arc<Verified>, TokenHeaderValues)> {
        let m = self.0.lock().ok()?;
        let m = m.as_ref()?;
        // Constant time: one HTTP/2 connection may carry many clients' tokens (a gateway).
        aws_lc_rs::constant_time::verify_slices_are_equal(&m.token, token.as_bytes()).ok()?;
        if m.at.elapsed() > MEMO_TTL {
            return None;
        }
        Some((m.verified.clone(), m.headers.clone()))
    }
}

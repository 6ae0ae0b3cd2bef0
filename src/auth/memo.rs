//! A connection's memo of its last accepted token: repeats on a keep-alive connection skip
//! the keyed hash and the shared cache.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::{AuthError, Authenticator, Outcome};
use crate::cache::Audiences;
use crate::config::IdentityMode;
use crate::identity::TokenHeaderValues;

/// A connection's last accepted token and its outcome. Clients send the same token on every
/// request of a keep-alive connection; a repeat then costs a constant-time compare of the
/// token instead of the keyed hash and the shared-cache lookup. The recheck (expiry, key still
/// published, keys usable) still runs on every use, and a memo is trusted for at most
/// [`MEMO_TTL`] before the shared cache is asked again, so nothing the cache decides (entry
/// lifetimes, invalidation) is bypassed for longer than that. Rejections are never memoized.
/// The memo also keeps the token's per-token header values (pod name and uid, credential id),
/// built once here rather than on every request or in every cache entry.
#[derive(Default)]
pub struct TokenMemo(Mutex<Option<Memo>>);

struct Memo {
    /// A copy of the token: it lives only as long as the connection, and is never logged.
    token: Box<[u8]>,
    outcome: Arc<Outcome>,
    headers: TokenHeaderValues,
    at: Instant,
}

/// How long a connection's memo may answer without asking the shared cache.
pub const MEMO_TTL: std::time::Duration = std::time::Duration::from_secs(1);

impl Authenticator {
    /// [`Self::authenticate`] for the configured audiences, for a token the connection's memo
    /// did not answer ([`Self::memo_hit`]); the memo then keeps the outcome if accepted. With
    /// the outcome come the token's per-token header values (empty unless accepted).
    pub async fn authenticate_and_remember(
        &self,
        token: &str,
        memo: &TokenMemo,
    ) -> Result<(Arc<Outcome>, TokenHeaderValues), AuthError> {
        let result = self.authenticate(token, Audiences::Configured).await;
        let headers = match result.as_deref() {
            Ok(Outcome::Accepted(v)) if self.mode != IdentityMode::None => v.ids.header_values(),
            _ => TokenHeaderValues::default(),
        };
        if let Ok(mut m) = memo.0.lock() {
            *m = result.as_ref().ok().map(|outcome| Memo {
                token: token.as_bytes().into(),
                outcome: outcome.clone(),
                headers: headers.clone(),
                at: Instant::now(),
            });
        }
        result.map(|outcome| (outcome, headers))
    }

    /// The connection's memo's answer for `token`, if it has one (a repeat of its last
    /// accepted token, within [`MEMO_TTL`], that passes the recheck). Synchronous: the
    /// request path tries it before building any future for the full path.
    pub fn memo_hit(
        &self,
        token: &str,
        memo: &TokenMemo,
    ) -> Option<(Arc<Outcome>, TokenHeaderValues)> {
        let m = memo.0.lock().ok()?;
        let m = m.as_ref()?;
        // Constant time: one HTTP/2 connection may carry many clients' tokens (a gateway).
        aws_lc_rs::constant_time::verify_slices_are_equal(&m.token, token.as_bytes()).ok()?;
        if m.at.elapsed() > MEMO_TTL {
            return None;
        }
        let Outcome::Accepted(v) = &*m.outcome else {
            return None;
        };
        // Any recheck failure takes the full path, which answers it exactly as for a cache hit.
        self.recheck(v).ok()?;
        self.cache_hit.increment(1);
        self.note_accepted(v);
        Some((m.outcome.clone(), m.headers.clone()))
    }
}

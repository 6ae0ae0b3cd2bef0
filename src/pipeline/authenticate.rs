//! Stage 3, authenticate: runs after extract, with the request's bearer token. It answers
//! "who is calling?" from the connection's memo of its last token (synchronously: the common
//! case on a keep-alive connection), else from the shared cache or a full verification
//! (`auth`), then remembers the result for the connection. A token that is not accepted ends
//! the request here: 401 with the reason, or 503 while its issuer has no usable keys. It does
//! not change the request.

use http::Response;

use crate::auth::{Accepted, AuthError, Authenticator, TokenMemo};
use crate::metrics::RequestMetrics;
use crate::response::{self, Body};
use crate::token;

/// The memo's answer, if the connection's last accepted token is this one and still good.
pub fn remembered(auth: &Authenticator, token: &str, memo: &TokenMemo) -> Option<Accepted> {
    auth.recall(token, memo)
}

/// The full answer: the shared cache, or a verification.
pub async fn verify(
    auth: &Authenticator,
    token: &str,
    memo: &TokenMemo,
) -> Result<Accepted, AuthError> {
    auth.authenticate_and_remember(token, memo).await
}

/// The answer to a request whose token was not accepted. Logs carry the token's fingerprint,
/// never the token.
#[cold]
#[inline(never)]
pub fn refused(token: &str, e: AuthError, m: &RequestMetrics) -> Response<Body> {
    match e {
        AuthError::Rejected(r) => {
            m.rejected.increment(1);
            tracing::debug!(token_fingerprint = %token::fingerprint(token), reason = r.reason.as_str(), issuer = r.issuer_name(), "token rejected");
            response::rejected(r.reason)
        }
        AuthError::Unavailable { issuer } => {
            m.unavailable.increment(1);
            tracing::debug!(issuer = issuer.name(), "no usable keys");
            response::unavailable()
        }
        AuthError::BoundObjectsStale { issuer } => {
            m.unavailable.increment(1);
            tracing::debug!(issuer = issuer.name(), "bound objects not in sync");
            response::bound_objects_stale()
        }
    }
}

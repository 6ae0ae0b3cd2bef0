//! Stage 2, extract: runs after normalize, on requests to proxy. It finds the bearer token in
//! the one `Authorization` header, borrowed from the request (no copy). A request without a
//! usable bearer ends here: 401 (none) or 400 (two `Authorization` headers). It changes
//! nothing in the request.

use http::HeaderMap;

use crate::metrics::RequestMetrics;
use crate::response::{self, Body};
use crate::token::{self, Bearer};

/// The request's bearer token, or why there is none.
pub fn bearer(headers: &HeaderMap) -> Bearer<'_> {
    token::extract(headers)
}

/// The answer to a request whose `Authorization` gives no token.
#[cold]
#[inline(never)]
pub fn refused(why: Bearer<'_>, m: &RequestMetrics) -> http::Response<Body> {
    match why {
        Bearer::Ambiguous => {
            m.rejected.increment(1);
            response::ambiguous_token()
        }
        Bearer::Missing | Bearer::Token(_) => {
            m.missing_token.increment(1);
            response::missing_token()
        }
    }
}

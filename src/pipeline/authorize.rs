//! Stage 4, authorize: runs after authenticate, for every proxied request whose token was
//! accepted, and before forward. It decides from the caller and the request (method, and the
//! path as it will be forwarded) whether the request may go on; a denial ends it with 403,
//! never revealing the identity. It does not change the request. The policy is the runtime's
//! [`Authorizer`] (allow-all until SPEC section 11's routes are configured).

use http::{Request, Response};
use hyper::body::Incoming;

use crate::auth::Verified;
use crate::authz::{Authorizer, Decision, RequestFacts};
use crate::response::{self, Body};

/// May `caller` make this request?
#[inline]
pub fn decide(authz: &Authorizer, caller: &Verified, req: &Request<Incoming>) -> Decision {
    authz.decide(
        caller,
        RequestFacts {
            method: req.method(),
            path: req.uri().path(),
        },
    )
}

/// The answer to a request authorization denied.
#[cold]
#[inline(never)]
pub fn denied() -> Response<Body> {
    response::forbidden()
}

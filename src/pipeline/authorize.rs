//! Stage 4, authorize: runs after authenticate, for every proxied request whose token was
//! accepted (and, for an anonymous route's request without a token, in place of both), and
//! before forward. The route was found earlier, from the method and the normalized path, right
//! after normalize (`Authorizer::route`): an anonymous route needs it before extract. This
//! stage decides from the caller and the request whether the request may go on; a denial ends
//! it with 403, never revealing the identity; a route with a SubjectAccessReview asks the
//! kube-apiserver (out of line), and its failure is 503. It does not change the request.

use http::{Request, Response};
use hyper::body::Incoming;

use crate::auth::Verified;
use crate::authz::{Authorizer, Decision, RequestFacts, Route, SarError};
use crate::response::{self, Body};

/// What authorization sees of `req` (its path is already the normalized one).
pub fn facts(req: &Request<Incoming>) -> RequestFacts<'_> {
    RequestFacts {
        method: req.method(),
        path: req.uri().path(),
        headers: req.headers(),
        authority: req.uri().authority().map(|a| a.as_str()),
    }
}

/// May `caller` make this request, which `route` (if any) covers?
#[inline]
pub fn decide<'a>(
    authz: &'a Authorizer,
    route: Option<&'a Route>,
    caller: &Verified,
    req: &Request<Incoming>,
) -> Decision<'a> {
    authz.decide(route, caller, facts(req))
}

/// An anonymous route's request without a token goes on, counted.
pub fn anonymous(route: Option<&Route>) {
    if let Some(r) = route {
        r.outcomes.anonymous.increment(1);
    }
}

/// Ask the kube-apiserver (or the review cache) about `caller` on `route`.
pub async fn review(
    authz: &Authorizer,
    route: &Route,
    caller: &Verified,
    req: &Request<Incoming>,
) -> Result<bool, SarError> {
    let Some(reviewer) = &authz.reviewer else {
        return Err(SarError::Client("no route asks for reviews".into()));
    };
    let allowed = reviewer.review(route, caller, facts(req)).await?;
    if allowed {
        route.outcomes.allowed.increment(1);
    } else {
        route.outcomes.denied.increment(1);
    }
    Ok(allowed)
}

/// The answer to a request authorization denied.
#[cold]
#[inline(never)]
pub fn denied() -> Response<Body> {
    response::forbidden()
}

/// The answer to a request whose SubjectAccessReview could not be made.
#[cold]
#[inline(never)]
pub fn unavailable(e: SarError) -> Response<Body> {
    tracing::warn!(error = %e, "SubjectAccessReview failed: 503");
    response::authorization_unavailable()
}

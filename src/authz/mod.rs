//! Authorization (SPEC section 11): may this caller reach this request? Routes are checked in
//! file order; the first whose path and method cover the request decides, with its
//! conditions (`routes`) and, when it has one, a SubjectAccessReview (`sar`). A request no
//! route covers gets `authorization.default`.
//!
//! The table is built once per runtime. The route lookup runs before authentication (an
//! anonymous route needs no token); [`Authorizer::decide`] then runs for an accepted caller.
//! Neither allocates or locks for allow-list routes, and with no routes both cost a length
//! check. A decision that needs the kube-apiserver is [`Decision::Review`]: the pipeline
//! runs it out of line, so the common path stays synchronous.

use http::Method;

use crate::auth::Verified;
use crate::config::Config;

mod facts;
mod routes;
pub mod sar;

pub use facts::RequestFacts;
pub use routes::{Outcomes, Route};
pub use sar::{Reviewer, SarError};

/// The metric label of decisions no route made.
pub const DEFAULT_ROUTE: &str = "default";

/// The answer for one request.
#[derive(Debug, Clone, Copy)]
pub enum Decision<'a> {
    Allow,
    /// 403, without revealing who the caller is.
    Deny,
    /// The route's conditions hold; its SubjectAccessReview decides.
    Review(&'a Route),
}

/// The authorization policy of one runtime, built from the config.
#[derive(Debug)]
pub struct Authorizer {
    routes: Box<[Route]>,
    /// The decision for a request no route covers.
    default_allow: bool,
    /// Counted only when there are routes: with none, the proxy does no authorization.
    default_outcomes: Outcomes,
    /// The SubjectAccessReview client and cache, when a route asks for reviews.
    pub reviewer: Option<Reviewer>,
}

impl Authorizer {
    pub fn new(config: &Config) -> Authorizer {
        let a = &config.authorization;
        let routes: Box<[Route]> = a.routes.iter().map(Route::new).collect();
        let reviewer = routes
            .iter()
            .any(|r| r.sar.is_some())
            .then(|| Reviewer::new(config));
        Authorizer {
            routes,
            default_allow: a.default_allow,
            default_outcomes: Outcomes::new(DEFAULT_ROUTE),
            reviewer,
        }
    }

    /// The route that decides a request with this method and normalized path, if any.
    #[inline]
    pub fn route(&self, method: &Method, path: &str) -> Option<&Route> {
        if self.routes.is_empty() {
            return None;
        }
        let method = method.as_str();
        self.routes.iter().find(|r| r.covers(method, path))
    }

    /// Decide for an accepted caller; `route` is what [`Authorizer::route`] found.
    #[inline]
    pub fn decide<'a>(
        &'a self,
        route: Option<&'a Route>,
        caller: &Verified,
        request: RequestFacts<'_>,
    ) -> Decision<'a> {
        let Some(route) = route else {
            if self.routes.is_empty() && self.default_allow {
                return Decision::Allow;
            }
            return self.by_default();
        };
        if !route.admits(caller, &request) {
            route.outcomes.denied.increment(1);
            return Decision::Deny;
        }
        if route.sar.is_some() {
            return Decision::Review(route);
        }
        route.outcomes.allowed.increment(1);
        Decision::Allow
    }

    #[inline(never)]
    fn by_default(&self) -> Decision<'static> {
        if self.default_allow {
            self.default_outcomes.allowed.increment(1);
            Decision::Allow
        } else {
            self.default_outcomes.denied.increment(1);
            Decision::Deny
        }
    }

    /// The routes, in order (for `check-config` and tests).
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }
}

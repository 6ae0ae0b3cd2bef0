//! Authorization: may this caller reach this request? SPEC section 11's routes, CEL conditions
//! and SubjectAccessReview will live here. The authorize stage (`pipeline::authorize`) asks
//! [`Authorizer::decide`] for every authenticated proxied request.
//!
//! Until routes are configurable, every authenticated caller is allowed, which is what the
//! proxy has always done.

use http::Method;

use crate::auth::Verified;
use crate::config::Config;

/// The answer for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// 403, without revealing who the caller is.
    Deny,
}

/// What the request looks like to authorization: the method, and the path that is forwarded.
pub struct RequestFacts<'a> {
    pub method: &'a Method,
    pub path: &'a str,
}

/// The authorization policy of one runtime, built from the config.
#[derive(Debug)]
pub struct Authorizer {
    /// The decision for a request no route matches.
    default: Decision,
}

impl Authorizer {
    pub fn new(_config: &Config) -> Authorizer {
        Authorizer {
            default: Decision::Allow,
        }
    }

    /// Decide for an accepted caller. Never allocates on the allow path.
    #[inline]
    pub fn decide(&self, _caller: &Verified, _request: RequestFacts<'_>) -> Decision {
        self.default
    }
}

//! One route of the table: does it cover this request (path and method), and does its
//! caller pass its conditions (service accounts, groups, users, a CEL expression)? Built once
//! per runtime from the config; matching and the allow-lists neither allocate nor lock.

use metrics::{counter, Counter};

use super::facts::RequestFacts;
use crate::auth::Verified;
use crate::cel::{self, Expression, Vars};
use crate::config::{PathMatch, RouteConfig, SarAttributes};
use crate::metrics::AUTHORIZATION_TOTAL;

/// The `tokenreview_proxy_authorization_total` series of one route (or of the default).
#[derive(Debug)]
pub struct Outcomes {
    pub allowed: Counter,
    pub denied: Counter,
    pub anonymous: Counter,
}

impl Outcomes {
    /// Registered once per runtime: the request path only increments.
    pub fn new(route: &str) -> Outcomes {
        let c = |decision: &'static str| counter!(AUTHORIZATION_TOTAL, "route" => route.to_string(), "decision" => decision);
        Outcomes {
            allowed: c("allowed"),
            denied: c("denied"),
            anonymous: c("anonymous"),
        }
    }
}

#[derive(Debug)]
pub struct Route {
    pub name: String,
    path: PathMatch,
    /// Uppercase; empty: any.
    methods: Box<[String]>,
    pub anonymous: bool,
    /// No service_accounts, groups, users or expression: any authenticated caller passes.
    open: bool,
    service_accounts: Box<[(String, Option<String>)]>,
    groups: Box<[String]>,
    users: Box<[String]>,
    expression: Option<std::sync::Arc<Expression>>,
    pub sar: Option<SarAttributes>,
    pub outcomes: Outcomes,
}

impl Route {
    pub fn new(c: &RouteConfig) -> Route {
        Route {
            name: c.name.clone(),
            path: c.path.clone(),
            methods: c.methods.clone().into(),
            anonymous: c.anonymous,
            open: c.service_accounts.is_empty()
                && c.groups.is_empty()
                && c.users.is_empty()
                && c.expression.is_none(),
            service_accounts: c.service_accounts.clone().into(),
            groups: c.groups.clone().into(),
            users: c.users.clone().into(),
            expression: c.expression.clone(),
            sar: c.subject_access_review.clone(),
            outcomes: Outcomes::new(&c.name),
        }
    }

    /// Does this route cover a request with this method and normalized path? Methods compare
    /// case-insensitively, so `get` cannot slip past a route written for `GET`.
    #[inline]
    pub fn covers(&self, method: &str, path: &str) -> bool {
        let path_ok = match &self.path {
            PathMatch::Exact(p) => path == p,
            PathMatch::Prefix(p) => under_prefix(path, p),
        };
        path_ok
            && (self.methods.is_empty()
                || self.methods.iter().any(|m| m.eq_ignore_ascii_case(method)))
    }

    /// Does the caller pass the route's conditions (any one of them)?
    pub fn admits(&self, caller: &Verified, req: &RequestFacts<'_>) -> bool {
        if self.open {
            return true;
        }
        let id = &caller.principal.identity;
        if !self.service_accounts.is_empty() {
            if let Some((ns, name)) = service_account(&id.username) {
                if self
                    .service_accounts
                    .iter()
                    .any(|(n, s)| n == ns && s.as_deref().is_none_or(|s| s == name))
                {
                    return true;
                }
            }
        }
        if self.users.contains(&id.username) || self.groups.iter().any(|g| id.groups.contains(g)) {
            return true;
        }
        match &self.expression {
            Some(e) => self.evaluate(e, caller, req),
            None => false,
        }
    }

    /// Run the route's expression; an error or a non-boolean result denies, logged.
    #[inline(never)]
    fn evaluate(&self, e: &Expression, caller: &Verified, req: &RequestFacts<'_>) -> bool {
        let id = &caller.principal.identity;
        // The per-token extras (pod name and uid, credential id) are kept apart from the
        // shared identity: made only when the expression reads `user`.
        let token_extras = if e.uses("user") {
            caller.ids.extras()
        } else {
            Vec::new()
        };
        let mut vars = Vars::default();
        if e.uses("user") {
            let extra = id
                .extra
                .iter()
                .chain(&token_extras)
                .map(|(k, v)| (k.as_str(), cel::string_list(v.iter().map(String::as_str))));
            vars.bind(
                "user",
                cel::map([
                    ("username", cel::string(&id.username)),
                    ("uid", cel::string(&id.uid)),
                    (
                        "groups",
                        cel::string_list(id.groups.iter().map(String::as_str)),
                    ),
                    ("extra", cel::map(extra)),
                ]),
            );
        }
        if e.uses("request") {
            vars.bind(
                "request",
                cel::map([
                    ("method", cel::string(req.method.as_str())),
                    ("path", cel::string(req.path)),
                    ("host", cel::string(req.host())),
                ]),
            );
        }
        match e.eval_bool(&vars) {
            Ok(b) => b,
            Err(err) => {
                tracing::warn!(route = %self.name, error = %err, "authorization expression failed: denied");
                false
            }
        }
    }
}

/// `path` is `prefix` or below it, by whole segments.
#[inline]
fn under_prefix(path: &str, prefix: &str) -> bool {
    prefix == "/"
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// `(namespace, name)` of a service-account username. An OIDC username cannot take this form:
/// OIDC identities in the `system:` namespace are refused when the token is verified.
#[inline]
fn service_account(username: &str) -> Option<(&str, &str)> {
    username
        .strip_prefix("system:serviceaccount:")?
        .split_once(':')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_match_whole_segments() {
        assert!(under_prefix("/api/orders", "/api/orders"));
        assert!(under_prefix("/api/orders/7", "/api/orders"));
        assert!(under_prefix("/api/orders/", "/api/orders"));
        assert!(!under_prefix("/api/ordersX", "/api/orders"));
        assert!(!under_prefix("/api", "/api/orders"));
        assert!(!under_prefix("/api//orders", "/api/orders"));
        assert!(under_prefix("/anything", "/"));
    }

    #[test]
    fn service_account_usernames_split() {
        assert_eq!(
            service_account("system:serviceaccount:shop:cart"),
            Some(("shop", "cart"))
        );
        assert_eq!(service_account("oidc:alice"), None);
        assert_eq!(service_account("system:serviceaccount:shop"), None);
    }
}

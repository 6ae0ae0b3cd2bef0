//! `[authorization]` and its `[[authorization.routes]]` (SPEC section 11): raw → checked.
//! Every error about a route names it (`route "orders-api": ...`) beside its key; CEL
//! expressions are compiled here, once.

use std::sync::Arc;

use super::file::File;
use super::raw::{RawAuthorization, RawRoute, RawSubjectAccessReview};
use super::types::{
    AuthorizationConfig, ConfigError, IdentityMode, PathMatch, RouteConfig, SarAttributes,
    UpstreamConfig, DEFAULT_SAR_ALLOW_TTL, DEFAULT_SAR_DENY_TTL,
};
use crate::cel::Expression;

/// The variables a route expression may use.
pub const ROUTE_VARIABLES: &[&str] = &["user", "request"];

/// The metric label of the decision no route made.
pub const DEFAULT_ROUTE_LABEL: &str = "default";

pub(super) fn authorization(
    raw: &RawAuthorization,
    f: File,
) -> Result<AuthorizationConfig, ConfigError> {
    let default_allow = match raw.default.as_deref().unwrap_or("allow") {
        "allow" => true,
        "deny" => false,
        other => {
            return Err(f.err(
                "authorization.default",
                format!("{other:?} is not one of \"allow\", \"deny\""),
            ))
        }
    };
    let mut routes: Vec<RouteConfig> = Vec::with_capacity(raw.routes.len());
    for (i, r) in raw.routes.iter().enumerate() {
        let route = route(i, r, f)?;
        if routes.iter().any(|x| x.name == route.name) {
            return Err(f.err(
                &format!("authorization.routes[{i}].name"),
                format!("route {:?} is named twice", route.name),
            ));
        }
        routes.push(route);
    }
    Ok(AuthorizationConfig {
        default_allow,
        sar_allow_ttl: f.dur(
            "authorization.sar_allow_ttl",
            &raw.sar_allow_ttl,
            DEFAULT_SAR_ALLOW_TTL,
        )?,
        sar_deny_ttl: f.dur(
            "authorization.sar_deny_ttl",
            &raw.sar_deny_ttl,
            DEFAULT_SAR_DENY_TTL,
        )?,
        routes,
    })
}

/// In impersonate mode the upstream request carries the proxy's own token: a request without
/// an identity would run as the proxy. Anonymous routes are refused there.
pub(super) fn check_with_upstream(
    a: &AuthorizationConfig,
    upstream: Option<&UpstreamConfig>,
    f: File,
) -> Result<(), ConfigError> {
    if upstream.is_some_and(|u| u.identity_headers == IdentityMode::Impersonate) {
        if let Some((i, r)) = a.routes.iter().enumerate().find(|(_, r)| r.anonymous) {
            return Err(f.err(
                &format!("authorization.routes[{i}].anonymous"),
                format!(
                    "route {:?}: not with upstream.identity_headers = \"impersonate\" (a request \
                     without a token would reach the upstream with the proxy's own credential)",
                    r.name
                ),
            ));
        }
    }
    Ok(())
}

fn route(i: usize, r: &RawRoute, f: File) -> Result<RouteConfig, ConfigError> {
    let key = |k: &str| format!("authorization.routes[{i}].{k}");
    let name = &r.name;
    // Every message after the name check says which route it is about.
    let err = |k: &str, m: String| f.err(&key(k), format!("route {name:?}: {m}"));
    if name.is_empty()
        || name == DEFAULT_ROUTE_LABEL
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(f.err(
            &key("name"),
            format!("{name:?} must be non-empty, not \"default\", and use only A-Z a-z 0-9 - _ ."),
        ));
    }
    let path = match (&r.path_prefix, &r.path) {
        (Some(p), None) => {
            let p = route_path(p).map_err(|m| err("path_prefix", m))?;
            let trimmed = p.trim_end_matches('/');
            PathMatch::Prefix(if trimmed.is_empty() { "/" } else { trimmed }.to_string())
        }
        (None, Some(p)) => PathMatch::Exact(route_path(p).map_err(|m| err("path", m))?),
        (Some(_), Some(_)) => {
            return Err(err("path", "set path_prefix or path, not both".into()));
        }
        (None, None) => {
            return Err(err("path_prefix", "set path_prefix or path".into()));
        }
    };
    let methods = match &r.methods {
        None => Vec::new(),
        Some(m) if m.is_empty() => {
            return Err(err(
                "methods",
                "must list at least one method (leave it out for any)".into(),
            ))
        }
        Some(m) => m
            .iter()
            .map(|m| {
                if http::Method::from_bytes(m.as_bytes()).is_err() {
                    return Err(err("methods", format!("{m:?} is not an HTTP method")));
                }
                Ok(m.to_ascii_uppercase())
            })
            .collect::<Result<_, _>>()?,
    };
    let service_accounts = r
        .service_accounts
        .iter()
        .flatten()
        .map(|sa| service_account(sa).map_err(|m| err("service_accounts", m)))
        .collect::<Result<Vec<_>, _>>()?;
    let names = |k: &str, v: &Option<Vec<String>>| -> Result<Vec<String>, ConfigError> {
        let v = v.clone().unwrap_or_default();
        if v.iter().any(|s| s.is_empty()) {
            return Err(err(k, "entries must not be empty".into()));
        }
        Ok(v)
    };
    let groups = names("groups", &r.groups)?;
    let users = names("users", &r.users)?;
    let expression = match &r.expression {
        None => None,
        Some(src) => Some(Arc::new(
            Expression::compile(src, ROUTE_VARIABLES)
                .map_err(|m| err("expression", format!("invalid CEL expression: {m}")))?,
        )),
    };
    let subject_access_review = r
        .subject_access_review
        .as_ref()
        .map(|s| sar(s).map_err(|m| err("subject_access_review", m)))
        .transpose()?;
    let anonymous = r.anonymous.unwrap_or(false);
    let conditions = !service_accounts.is_empty()
        || !groups.is_empty()
        || !users.is_empty()
        || expression.is_some()
        || subject_access_review.is_some();
    if anonymous && conditions {
        return Err(err(
            "anonymous",
            "an anonymous route takes no service_accounts, groups, users, expression or \
             subject_access_review (it admits callers without a token)"
                .into(),
        ));
    }
    Ok(RouteConfig {
        name: name.clone(),
        path,
        methods,
        anonymous,
        service_accounts,
        groups,
        users,
        expression,
        subject_access_review,
    })
}

/// The `check-config` lines of `[authorization]`: the settings, then each route in order.
pub(super) fn summary(a: &AuthorizationConfig, out: &mut String) {
    use std::fmt::Write;
    let _ = writeln!(
        out,
        "authorization: default {}, sar_allow_ttl {}, sar_deny_ttl {}, {} route(s)",
        if a.default_allow { "allow" } else { "deny" },
        super::checks::written(a.sar_allow_ttl),
        super::checks::written(a.sar_deny_ttl),
        a.routes.len()
    );
    for r in &a.routes {
        let path = match &r.path {
            PathMatch::Prefix(p) => format!("path_prefix {p}"),
            PathMatch::Exact(p) => format!("path {p}"),
        };
        let methods = if r.methods.is_empty() {
            "any".to_string()
        } else {
            r.methods.join(",")
        };
        let _ = write!(out, "  route {:?}: {path}; methods {methods}", r.name);
        if r.anonymous {
            let _ = write!(out, "; anonymous");
        }
        if !r.service_accounts.is_empty() {
            let sas: Vec<String> = r
                .service_accounts
                .iter()
                .map(|(ns, n)| format!("{ns}:{}", n.as_deref().unwrap_or("*")))
                .collect();
            let _ = write!(out, "; service_accounts {sas:?}");
        }
        if !r.groups.is_empty() {
            let _ = write!(out, "; groups {:?}", r.groups);
        }
        if !r.users.is_empty() {
            let _ = write!(out, "; users {:?}", r.users);
        }
        if let Some(e) = &r.expression {
            let _ = write!(out, "; expression {:?}", e.source());
        }
        match &r.subject_access_review {
            Some(SarAttributes::NonResource { verb }) => {
                let _ = write!(
                    out,
                    "; subject_access_review non-resource verb {}",
                    verb.as_deref().unwrap_or("(method)")
                );
            }
            Some(SarAttributes::Resource {
                verb,
                group,
                resource,
                subresource,
                namespace,
                name,
                ..
            }) => {
                let mut what = if group.is_empty() {
                    resource.clone()
                } else {
                    format!("{resource}.{group}")
                };
                if !subresource.is_empty() {
                    what = format!("{what}/{subresource}");
                }
                let _ = write!(
                    out,
                    "; subject_access_review {} {what} namespace {:?} name {:?}",
                    verb.as_deref().unwrap_or("(method)"),
                    namespace,
                    name
                );
            }
            None => {}
        }
        let _ = writeln!(out);
    }
}

/// A route's path must be written as the normalized path it matches: routing compares
/// normalized request paths with it, byte for byte.
fn route_path(p: &str) -> Result<String, String> {
    if p.contains(['?', '#']) {
        return Err(format!("{p:?}: a path has no query or fragment"));
    }
    match crate::path::normalize(p) {
        Ok(n) if n == p => Ok(p.to_string()),
        Ok(n) => Err(format!("{p:?} is not in normalized form; write {n:?}")),
        Err(e) => Err(format!("{p:?}: {e}")),
    }
}

/// `"ns:name"` or `"ns:*"`.
fn service_account(sa: &str) -> Result<(String, Option<String>), String> {
    let bad = || format!("{sa:?} must be \"<namespace>:<name>\" or \"<namespace>:*\"");
    let (ns, name) = sa.split_once(':').ok_or_else(bad)?;
    if ns.is_empty() || name.is_empty() || ns == "*" || name.contains(':') || ns.contains('*') {
        return Err(bad());
    }
    if name.contains('*') && name != "*" {
        return Err(bad());
    }
    Ok((ns.to_string(), (name != "*").then(|| name.to_string())))
}

fn sar(s: &RawSubjectAccessReview) -> Result<SarAttributes, String> {
    let verb = s.verb.clone();
    if verb.as_deref().is_some_and(str::is_empty) {
        return Err("verb must not be empty (leave it out for the method's verb)".into());
    }
    if s.non_resource.unwrap_or(false) {
        if s.group.is_some()
            || s.version.is_some()
            || s.resource.is_some()
            || s.subresource.is_some()
            || s.namespace.is_some()
            || s.name.is_some()
        {
            return Err("non_resource = true takes only verb (the path is the request's)".into());
        }
        return Ok(SarAttributes::NonResource { verb });
    }
    let resource = match s.resource.as_deref() {
        Some(r) if !r.is_empty() => r.to_string(),
        _ => return Err("resource is required (or non_resource = true)".into()),
    };
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    Ok(SarAttributes::Resource {
        verb,
        group: text(&s.group),
        version: text(&s.version),
        resource,
        subresource: text(&s.subresource),
        namespace: text(&s.namespace),
        name: text(&s.name),
    })
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, PathMatch, SarAttributes};

    const BASE: &str = r#"
[server]
listen = "127.0.0.1:8080"
[upstream]
url = "http://127.0.0.1:8081"
[[issuers]]
name = "cluster"
issuer = "https://kubernetes.default.svc.cluster.local"
audiences = ["a"]
"#;

    fn parse(extra: &str) -> Result<Config, crate::config::ConfigError> {
        Config::parse(&format!("{BASE}\n{extra}"), "t.toml")
    }

    #[test]
    fn routes_are_read_in_file_order_with_defaults() {
        let c = parse(
            r#"
[authorization]
default = "deny"
[[authorization.routes]]
name = "orders"
path_prefix = "/api/orders/"
methods = ["get", "POST"]
service_accounts = ["shop:cart", "billing:*"]
expression = 'request.method == "GET" && "ops" in user.groups'
[[authorization.routes]]
name = "health"
path = "/healthz"
anonymous = true
[[authorization.routes]]
name = "k8s"
path_prefix = "/"
subject_access_review = { resource = "services", subresource = "proxy", namespace = "shop" }
"#,
        )
        .unwrap();
        let a = &c.authorization;
        assert!(!a.default_allow);
        assert_eq!(a.sar_allow_ttl.as_secs(), 300);
        assert_eq!(a.sar_deny_ttl.as_secs(), 30);
        let r = &a.routes[0];
        assert_eq!(r.path, PathMatch::Prefix("/api/orders".into()));
        assert_eq!(r.methods, ["GET", "POST"]);
        assert_eq!(
            r.service_accounts,
            [
                ("shop".into(), Some("cart".into())),
                ("billing".into(), None)
            ]
        );
        assert!(a.routes[1].anonymous);
        assert_eq!(a.routes[1].path, PathMatch::Exact("/healthz".into()));
        assert_eq!(a.routes[2].path, PathMatch::Prefix("/".into()));
        assert!(matches!(
            &a.routes[2].subject_access_review,
            Some(SarAttributes::Resource { resource, verb: None, .. }) if resource == "services"
        ));
    }

    #[test]
    fn bad_routes_name_the_key_and_the_route() {
        let cases = [
            ("name = \"r\"\npath = \"/a\"\nexpression = \"user.\"", "expression"),
            ("name = \"r\"\npath = \"/a\"\nexpression = \"usr.x\"", "expression"),
            ("name = \"r\"\npath = \"/a/../b\"", "path"),
            ("name = \"r\"\npath_prefix = \"/a%2Fb\"", "path_prefix"),
            ("name = \"r\"", "path_prefix"),
            ("name = \"r\"\npath = \"/a\"\nmethods = []", "methods"),
            ("name = \"r\"\npath = \"/a\"\nmethods = [\"G T\"]", "methods"),
            ("name = \"r\"\npath = \"/a\"\nservice_accounts = [\"shop\"]", "service_accounts"),
            ("name = \"r\"\npath = \"/a\"\nservice_accounts = [\"*:x\"]", "service_accounts"),
            ("name = \"r\"\npath = \"/a\"\nanonymous = true\ngroups = [\"g\"]", "anonymous"),
            (
                "name = \"r\"\npath = \"/a\"\nsubject_access_review = { verb = \"get\" }",
                "subject_access_review",
            ),
            (
                "name = \"r\"\npath = \"/a\"\nsubject_access_review = { non_resource = true, resource = \"x\" }",
                "subject_access_review",
            ),
        ];
        for (route, key) in cases {
            let e = parse(&format!("[[authorization.routes]]\n{route}")).unwrap_err();
            assert_eq!(e.key, format!("authorization.routes[0].{key}"), "{e}");
            assert!(e.message.contains("route \"r\""), "{e}");
            assert_eq!(e.file, "t.toml");
        }
    }

    #[test]
    fn anonymous_routes_are_refused_in_impersonate_mode() {
        let text = format!("{BASE}\n[[authorization.routes]]\nname = \"h\"\npath = \"/healthz\"\nanonymous = true")
            .replace(
                "url = \"http://127.0.0.1:8081\"",
                "url = \"http://127.0.0.1:8081\"\nidentity_headers = \"impersonate\"\ntoken_file = \"/t\"",
            );
        let e = Config::parse(&text, "t.toml").unwrap_err();
        assert_eq!(e.key, "authorization.routes[0].anonymous", "{e}");
        assert!(e.message.contains("\"h\""), "{e}");
    }

    #[test]
    fn names_are_unique_and_not_default() {
        let e = parse(
            "[[authorization.routes]]\nname = \"a\"\npath = \"/a\"\n[[authorization.routes]]\nname = \"a\"\npath = \"/b\"",
        )
        .unwrap_err();
        assert_eq!(e.key, "authorization.routes[1].name", "{e}");
        let e = parse("[[authorization.routes]]\nname = \"default\"\npath = \"/a\"").unwrap_err();
        assert_eq!(e.key, "authorization.routes[0].name", "{e}");
        let e = parse("[authorization]\ndefault = \"maybe\"").unwrap_err();
        assert_eq!(e.key, "authorization.default", "{e}");
    }

    #[test]
    fn an_unknown_route_key_names_the_route() {
        let e =
            parse("[[authorization.routes]]\nname = \"orders\"\npath = \"/a\"\nverbs = [\"GET\"]")
                .unwrap_err();
        assert!(e.key.starts_with("authorization.routes[0]"), "{e}");
        assert!(e.to_string().contains("\"orders\""), "{e}");
        assert!(e.message.contains("verbs"), "{e}");
    }
}

//! The source form of claim rules, as a config file states them, and the checks
//! kube-apiserver makes on it before anything is compiled. Errors name a [`Field`]; each
//! config reader spells it in its own terms (`claim_mappings.username_expression`,
//! `claimMappings.username.expression`).

/// A username, groups or uid mapping: a claim (with a prefix) or an expression.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MappingSpec {
    pub claim: Option<String>,
    pub prefix: Option<String>,
    pub expression: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExtraSpec {
    pub key: String,
    pub value_expression: Option<String>,
}

/// `claim` + `required_value`, or `expression` + `message`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClaimRuleSpec {
    pub claim: Option<String>,
    pub required_value: Option<String>,
    pub expression: Option<String>,
    pub message: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct UserRuleSpec {
    pub expression: Option<String>,
    pub message: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct RulesSpec {
    pub username: MappingSpec,
    pub groups: MappingSpec,
    pub uid: MappingSpec,
    pub extra: Vec<ExtraSpec>,
    pub claim_validation_rules: Vec<ClaimRuleSpec>,
    pub user_validation_rules: Vec<UserRuleSpec>,
}

/// The part of an entry an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Claim,
    Prefix,
    Expression,
    Key,
    RequiredValue,
    Message,
}

/// Which entry of a [`RulesSpec`] an error is about (list entries by index).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Username(Part),
    Groups(Part),
    Uid(Part),
    Extra(usize, Part),
    ClaimRule(usize, Part),
    UserRule(usize, Part),
}

#[derive(Debug, Clone, PartialEq)]
pub struct SpecError {
    pub field: Field,
    pub message: String,
}

fn fail<T>(field: Field, message: impl Into<String>) -> Result<T, SpecError> {
    Err(SpecError {
        field,
        message: message.into(),
    })
}

impl RulesSpec {
    /// kube-apiserver's structural checks, first error first.
    pub(super) fn check(&self) -> Result<(), SpecError> {
        for (m, field) in [
            (&self.username, Field::Username as fn(Part) -> Field),
            (&self.groups, Field::Groups),
            (&self.uid, Field::Uid),
        ] {
            if m.claim.is_some() && m.expression.is_some() {
                return fail(
                    field(Part::Expression),
                    "claim and expression can't both be set",
                );
            }
            if m.expression.is_some() && m.prefix.is_some() {
                return fail(
                    field(Part::Prefix),
                    "may not be specified when expression is set",
                );
            }
            if m.claim.as_deref() == Some("") {
                return fail(field(Part::Claim), "must not be empty");
            }
        }
        let mut keys: Vec<&str> = Vec::new();
        for (i, x) in self.extra.iter().enumerate() {
            let field = Field::Extra(i, Part::Key);
            if let Err(m) = domain_prefixed_path(&x.key) {
                return fail(field, format!("{:?}: {m}", x.key));
            }
            if x.key != x.key.to_lowercase() {
                return fail(field, format!("{:?} must be lowercase", x.key));
            }
            if is_kubernetes_domain(&x.key) {
                return fail(
                    field,
                    format!(
                        "{:?}: k8s.io, kubernetes.io and their subdomains are reserved for Kubernetes use",
                        x.key
                    ),
                );
            }
            if keys.contains(&x.key.as_str()) {
                return fail(field, format!("{:?} is used twice", x.key));
            }
            keys.push(&x.key);
            if x.value_expression.as_deref().unwrap_or("").is_empty() {
                return fail(Field::Extra(i, Part::Expression), "is required");
            }
        }
        let (mut claims, mut exprs): (Vec<&str>, Vec<&str>) = (Vec::new(), Vec::new());
        for (i, r) in self.claim_validation_rules.iter().enumerate() {
            let f = |p| Field::ClaimRule(i, p);
            match (r.claim.as_deref(), r.expression.as_deref()) {
                (Some(_), Some(_)) => {
                    return fail(
                        f(Part::Expression),
                        "claim and expression can't both be set",
                    )
                }
                (None, None) | (Some(""), None) | (None, Some("")) => {
                    return fail(f(Part::Claim), "claim or expression is required")
                }
                (Some(c), None) => {
                    if r.message.is_some() {
                        return fail(f(Part::Message), "may not be specified when claim is set");
                    }
                    if claims.contains(&c) {
                        return fail(f(Part::Claim), format!("{c:?} is used twice"));
                    }
                    claims.push(c);
                }
                (None, Some(e)) => {
                    if r.required_value.is_some() {
                        return fail(
                            f(Part::RequiredValue),
                            "may not be specified when expression is set",
                        );
                    }
                    if exprs.contains(&e) {
                        return fail(f(Part::Expression), format!("{e:?} is used twice"));
                    }
                    exprs.push(e);
                }
            }
        }
        let mut seen: Vec<&str> = Vec::new();
        for (i, r) in self.user_validation_rules.iter().enumerate() {
            let e = r.expression.as_deref().unwrap_or("");
            if e.is_empty() {
                return fail(Field::UserRule(i, Part::Expression), "is required");
            }
            if seen.contains(&e) {
                return fail(
                    Field::UserRule(i, Part::Expression),
                    format!("{e:?} is used twice"),
                );
            }
            seen.push(e);
        }
        Ok(())
    }
}

/// `example.com/name`: a DNS subdomain, a slash, a non-empty path (Kubernetes'
/// `IsDomainPrefixedPath`).
fn domain_prefixed_path(key: &str) -> Result<(), &'static str> {
    let Some((domain, path)) = key.split_once('/') else {
        return Err("must be a domain-prefixed path (such as \"acme.io/foo\")");
    };
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if domain.is_empty() || domain.len() > 253 || !domain.split('.').all(label_ok) {
        return Err("the part before the slash must be a lowercase DNS subdomain");
    }
    let path_ok = path
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/-._~%!$&'()*+,;=:".contains(&b));
    if path.is_empty() || !path_ok {
        return Err("the part after the slash must be a non-empty URL path");
    }
    Ok(())
}

fn is_kubernetes_domain(key: &str) -> bool {
    let domain = key.split_once('/').map_or("", |(d, _)| d);
    ["kubernetes.io", "k8s.io"]
        .iter()
        .any(|r| domain == *r || domain.ends_with(&format!(".{r}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_keys_follow_kube_apiserver() {
        assert!(domain_prefixed_path("example.com/tenant").is_ok());
        assert!(domain_prefixed_path("a-b.example.com/x/y").is_ok());
        for bad in [
            "tenant",
            "/x",
            "example.com/",
            "Example.com/x",
            "-a.com/x",
            "a..b/x",
        ] {
            assert!(domain_prefixed_path(bad).is_err(), "{bad}");
        }
        assert!(is_kubernetes_domain("kubernetes.io/x"));
        assert!(is_kubernetes_domain("authentication.kubernetes.io/x"));
        assert!(is_kubernetes_domain("k8s.io/x"));
        assert!(!is_kubernetes_domain("notkubernetes.io/x"));
    }

    fn spec() -> RulesSpec {
        RulesSpec {
            username: MappingSpec {
                claim: Some("sub".into()),
                prefix: Some(String::new()),
                expression: None,
            },
            ..RulesSpec::default()
        }
    }

    #[test]
    fn structural_errors_name_their_field() {
        let mut s = spec();
        s.username.expression = Some("claims.sub".into());
        assert_eq!(
            s.check().unwrap_err().field,
            Field::Username(Part::Expression)
        );
        let mut s = spec();
        s.groups = MappingSpec {
            prefix: Some("p:".into()),
            expression: Some("claims.g".into()),
            claim: None,
        };
        assert_eq!(s.check().unwrap_err().field, Field::Groups(Part::Prefix));
        let mut s = spec();
        s.claim_validation_rules = vec![ClaimRuleSpec {
            claim: Some("hd".into()),
            message: Some("m".into()),
            ..Default::default()
        }];
        assert_eq!(
            s.check().unwrap_err().field,
            Field::ClaimRule(0, Part::Message)
        );
        let mut s = spec();
        let rule = ClaimRuleSpec {
            expression: Some("true".into()),
            ..Default::default()
        };
        s.claim_validation_rules = vec![rule.clone(), rule];
        assert_eq!(
            s.check().unwrap_err().field,
            Field::ClaimRule(1, Part::Expression)
        );
        let mut s = spec();
        s.extra = vec![ExtraSpec {
            key: "example.com/A".into(),
            value_expression: Some("claims.a".into()),
        }];
        assert_eq!(s.check().unwrap_err().field, Field::Extra(0, Part::Key));
        let mut s = spec();
        s.user_validation_rules = vec![UserRuleSpec::default()];
        assert_eq!(
            s.check().unwrap_err().field,
            Field::UserRule(0, Part::Expression)
        );
        assert!(spec().check().is_ok());
    }
}

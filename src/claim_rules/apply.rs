//! Applying compiled rules to a verified token's claims, in kube-apiserver's order: username,
//! groups, uid, extra; required claims; claim validation expressions; user validation rules
//! over the mapped user. The first failure is the answer.

use ::cel::Value as Cel;
use serde_json::Value as Json;

use super::cel::{self, Expression, Scope, Vars};
use super::compiled::{ClaimRule, ClaimRules, Source};

/// The user a token maps to, before the proxy's own additions (`system:authenticated`, the
/// per-token `credential-id`) and its refusal of `system:` names. `extra` is sorted by key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapped {
    pub username: String,
    pub uid: String,
    pub groups: Vec<String>,
    pub extra: Vec<(String, Vec<String>)>,
}

/// Why a token's claims were refused: `invalid_claims`, with this message in the log and in
/// TokenReview's `status.error`. Never contains claim values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub message: String,
}

fn fail<T>(message: impl Into<String>) -> Result<T, Failure> {
    Err(Failure {
        message: message.into(),
    })
}

fn eval(e: &Expression, vars: &Vars, what: &str) -> Result<Cel, Failure> {
    e.eval(vars)
        .or_else(|err| fail(format!("error evaluating the {what}: {err}")))
}

/// kube-apiserver's conversion of a mapping result to strings: a string or a list of
/// strings, where `""`, `[]` and `null` mean none and empty strings in a list are dropped.
fn string_list(v: Cel, what: &str) -> Result<Vec<String>, Failure> {
    let wrong = || {
        fail(format!(
            "the {what} must return a string or a list of strings"
        ))
    };
    match v {
        Cel::Null => Ok(Vec::new()),
        Cel::String(s) if s.is_empty() => Ok(Vec::new()),
        Cel::String(s) => Ok(vec![s.to_string()]),
        Cel::List(items) => {
            let mut out = Vec::with_capacity(items.len());
            for item in items.iter() {
                match item {
                    Cel::String(s) if s.is_empty() => {}
                    Cel::String(s) => out.push(s.to_string()),
                    _ => return wrong(),
                }
            }
            Ok(out)
        }
        _ => wrong(),
    }
}

fn string(v: Cel, what: &str) -> Result<String, Failure> {
    match v {
        Cel::String(s) => Ok(s.to_string()),
        other => fail(format!(
            "the {what} must return a string, not {}",
            cel::type_name(&other)
        )),
    }
}

type Claims = serde_json::Map<String, Json>;

impl ClaimRules {
    /// Map and check the claims of a token whose signature and registered claims have been
    /// verified. `credential_id` (`JTI=<jti>`) is part of `user.extra` for user validation
    /// rules, as kube-apiserver shows it there.
    pub fn apply(&self, payload: &[u8], credential_id: Option<&str>) -> Result<Mapped, Failure> {
        let Ok(claims) = serde_json::from_slice::<Claims>(payload) else {
            return fail("the claims are not a JSON object");
        };
        // Claims are converted for CEL only when some expression reads them.
        let vars = Vars::new(
            Scope::Claims,
            if self.claims_cel {
                cel::object(claims.iter().map(|(k, v)| (k.as_str(), cel::json_value(v))))
            } else {
                Cel::Null
            },
        );
        let vars = &vars;
        let username = self.username(&claims, vars)?;
        let groups = match &self.groups {
            None => Vec::new(),
            Some(Source::Claim { name, prefix }) => claim_groups(&claims, name, prefix)?,
            Some(Source::Expression(e)) => {
                string_list(eval(e, vars, "groups expression")?, "groups expression")?
            }
        };
        let uid = match &self.uid {
            None => String::new(),
            Some(Source::Claim { name, .. }) => match claims.get(name) {
                Some(Json::String(s)) => s.clone(),
                None => return fail(format!("the uid claim {name:?} is not present")),
                Some(_) => return fail(format!("the uid claim {name:?} is not a string")),
            },
            Some(Source::Expression(e)) => {
                string(eval(e, vars, "uid expression")?, "uid expression")?
            }
        };
        let mut extra = Vec::with_capacity(self.extra.len());
        for (key, e) in &self.extra {
            let what = format!("extra value expression of {key:?}");
            let values = string_list(eval(e, vars, &what)?, &what)?;
            if !values.is_empty() {
                extra.push((key.clone(), values));
            }
        }
        extra.sort_by(|a, b| a.0.cmp(&b.0));
        for rule in &self.claim_rules {
            check_claim_rule(rule, &claims, vars)?;
        }
        let mapped = Mapped {
            username,
            uid,
            groups,
            extra,
        };
        if !self.user_rules.is_empty() {
            let user = Vars::new(Scope::User, user_value(&mapped, credential_id));
            for rule in &self.user_rules {
                match eval(&rule.expression, &user, "user validation expression")? {
                    Cel::Bool(true) => {}
                    Cel::Bool(false) => {
                        return fail(rule.message.clone().unwrap_or_else(|| {
                            format!(
                                "user validation expression {:?} failed",
                                rule.expression.source()
                            )
                        }))
                    }
                    _ => return fail("a user validation expression must return a boolean"),
                }
            }
        }
        Ok(mapped)
    }

    fn username(&self, claims: &Claims, vars: &Vars) -> Result<String, Failure> {
        match &self.username {
            Source::Expression(e) => {
                let name = string(eval(e, vars, "username expression")?, "username expression")?;
                if name.is_empty() {
                    return fail("an empty username from the username expression is not allowed");
                }
                Ok(name)
            }
            Source::Claim { name, prefix } => {
                let value = match claims.get(name) {
                    Some(Json::String(s)) => s,
                    None => return fail(format!("the username claim {name:?} is not present")),
                    Some(_) => return fail(format!("the username claim {name:?} is not a string")),
                };
                // Stricter than kube-apiserver, which would accept an empty name.
                if value.is_empty() {
                    return fail(format!("the username claim {name:?} is empty"));
                }
                // OpenID Connect Core 5.1: an email whose owner was not verified is no name.
                if name == "email" {
                    match claims.get("email_verified") {
                        None | Some(Json::Bool(true)) => {}
                        Some(Json::Bool(false)) => return fail("email not verified"),
                        Some(_) => return fail("the email_verified claim is not a boolean"),
                    }
                }
                Ok(format!("{prefix}{value}"))
            }
        }
    }
}

/// A groups claim: a string or an array of strings (absent or `null`: no groups).
fn claim_groups(claims: &Claims, name: &str, prefix: &str) -> Result<Vec<String>, Failure> {
    let wrong = || {
        fail(format!(
            "the groups claim {name:?} is not a string or an array of strings"
        ))
    };
    match claims.get(name) {
        None | Some(Json::Null) => Ok(Vec::new()),
        Some(Json::String(s)) => Ok(vec![format!("{prefix}{s}")]),
        Some(Json::Array(items)) => {
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                match item {
                    Json::String(s) => out.push(format!("{prefix}{s}")),
                    _ => return wrong(),
                }
            }
            Ok(out)
        }
        Some(_) => wrong(),
    }
}

fn check_claim_rule(rule: &ClaimRule, claims: &Claims, vars: &Vars) -> Result<(), Failure> {
    match rule {
        ClaimRule::Required { claim, value } => match claims.get(claim) {
            Some(Json::String(s)) if s == value => Ok(()),
            Some(Json::String(_)) => fail(format!(
                "the required claim {claim:?} does not have the required value"
            )),
            Some(_) => fail(format!("the required claim {claim:?} is not a string")),
            None => fail(format!("the required claim {claim:?} is not present")),
        },
        ClaimRule::Check {
            expression,
            message,
        } => match eval(expression, vars, "claim validation expression")? {
            Cel::Bool(true) => Ok(()),
            Cel::Bool(false) => fail(message.clone().unwrap_or_else(|| {
                format!(
                    "claim validation expression {:?} failed",
                    expression.source()
                )
            })),
            _ => fail("a claim validation expression must return a boolean"),
        },
    }
}

/// `user` as user validation rules see it: kube-apiserver's `UserInfo` of the mapped
/// identity (without `system:authenticated`, which is added after).
fn user_value(m: &Mapped, credential_id: Option<&str>) -> Cel {
    let credential = credential_id.map(|c| vec![c.to_string()]);
    let extra = m
        .extra
        .iter()
        .map(|(k, v)| (k.as_str(), cel::strings(v)))
        .chain(credential.iter().map(|c| {
            (
                "authentication.kubernetes.io/credential-id",
                cel::strings(c),
            )
        }));
    cel::object([
        ("username", Cel::String(m.username.clone().into())),
        ("uid", Cel::String(m.uid.clone().into())),
        ("groups", cel::strings(&m.groups)),
        ("extra", cel::object(extra)),
    ])
}

/// Equivalence cases with kube-apiserver's `oidc_test.go` for the same claims and config.
#[cfg(test)]
mod tests {
    use super::super::*;
    use super::*;

    fn claim(c: &str, prefix: &str) -> MappingSpec {
        MappingSpec {
            claim: Some(c.into()),
            prefix: Some(prefix.into()),
            expression: None,
        }
    }

    fn expr(e: &str) -> MappingSpec {
        MappingSpec {
            expression: Some(e.into()),
            ..MappingSpec::default()
        }
    }

    fn rules(f: impl FnOnce(&mut RulesSpec)) -> ClaimRules {
        let mut s = RulesSpec {
            username: claim("sub", ""),
            ..RulesSpec::default()
        };
        f(&mut s);
        ClaimRules::compile(s).unwrap()
    }

    fn apply(r: &ClaimRules, claims: serde_json::Value) -> Result<Mapped, String> {
        r.apply(claims.to_string().as_bytes(), None)
            .map_err(|f| f.message)
    }

    use serde_json::json;

    #[test]
    fn email_username_requires_email_verified_when_present() {
        let r = rules(|s| s.username = claim("email", "oidc:"));
        let ok = apply(&r, json!({"email": "a@b.c", "email_verified": true})).unwrap();
        assert_eq!(ok.username, "oidc:a@b.c");
        // Absent email_verified: accepted, as in kube-apiserver.
        assert!(apply(&r, json!({"email": "a@b.c"})).is_ok());
        assert_eq!(
            apply(&r, json!({"email": "a@b.c", "email_verified": false})).unwrap_err(),
            "email not verified"
        );
        assert!(apply(&r, json!({"email": "a@b.c", "email_verified": "true"})).is_err());
        // Only for the claim named `email`.
        let r = rules(|s| s.username = claim("mail", ""));
        assert!(apply(&r, json!({"mail": "a@b.c", "email_verified": false})).is_ok());
    }

    #[test]
    fn username_claim_must_be_a_present_string() {
        let r = rules(|_| {});
        assert!(apply(&r, json!({})).unwrap_err().contains("not present"));
        assert!(apply(&r, json!({"sub": 5}))
            .unwrap_err()
            .contains("not a string"));
    }

    #[test]
    fn a_username_expression_yielding_empty_or_not_a_string_is_refused() {
        let r = rules(|s| s.username = expr("claims.sub"));
        assert_eq!(apply(&r, json!({"sub": "x"})).unwrap().username, "x");
        assert!(apply(&r, json!({"sub": ""}))
            .unwrap_err()
            .contains("empty username"));
        assert!(apply(&r, json!({"sub": 1}))
            .unwrap_err()
            .contains("must return a string"));
        // An evaluation error (missing claim) rejects.
        assert!(apply(&r, json!({}))
            .unwrap_err()
            .contains("error evaluating"));
    }

    #[test]
    fn groups_from_a_claim_or_an_expression() {
        let r = rules(|s| s.groups = claim("groups", "g:"));
        assert_eq!(
            apply(&r, json!({"sub": "u", "groups": "one"}))
                .unwrap()
                .groups,
            ["g:one"]
        );
        assert_eq!(
            apply(&r, json!({"sub": "u", "groups": ["a", "b"]}))
                .unwrap()
                .groups,
            ["g:a", "g:b"]
        );
        assert!(apply(&r, json!({"sub": "u"})).unwrap().groups.is_empty());
        assert!(apply(&r, json!({"sub": "u", "groups": null}))
            .unwrap()
            .groups
            .is_empty());
        assert!(apply(&r, json!({"sub": "u", "groups": 5})).is_err());
        assert!(apply(&r, json!({"sub": "u", "groups": ["a", 1]})).is_err());
        let r = rules(|s| s.groups = expr("claims.roles"));
        assert_eq!(
            apply(&r, json!({"sub": "u", "roles": ["a", "", "b"]}))
                .unwrap()
                .groups,
            ["a", "b"]
        );
        assert!(apply(&r, json!({"sub": "u", "roles": ""}))
            .unwrap()
            .groups
            .is_empty());
        assert!(apply(&r, json!({"sub": "u", "roles": null}))
            .unwrap()
            .groups
            .is_empty());
        assert!(apply(&r, json!({"sub": "u", "roles": [1]})).is_err());
        assert!(apply(&r, json!({"sub": "u", "roles": {"a": "b"}})).is_err());
    }

    #[test]
    fn uid_from_a_claim_must_be_present() {
        let r = rules(|s| s.uid = claim("oid", ""));
        assert_eq!(apply(&r, json!({"sub": "u", "oid": "1"})).unwrap().uid, "1");
        assert!(apply(&r, json!({"sub": "u"})).is_err());
        let r = rules(|s| s.uid = expr("claims.sub + '-uid'"));
        assert_eq!(apply(&r, json!({"sub": "u"})).unwrap().uid, "u-uid");
        let r = rules(|s| s.uid = expr("1"));
        assert!(apply(&r, json!({"sub": "u"})).is_err());
    }

    #[test]
    fn extra_values_drop_empties_and_sort_by_key() {
        let r = rules(|s| {
            s.extra = vec![
                ExtraSpec {
                    key: "z.example.com/tenant".into(),
                    value_expression: Some("claims.tenant".into()),
                },
                ExtraSpec {
                    key: "a.example.com/empty".into(),
                    value_expression: Some("''".into()),
                },
                ExtraSpec {
                    key: "a.example.com/list".into(),
                    value_expression: Some("['x', '', 'y']".into()),
                },
            ]
        });
        let m = apply(&r, json!({"sub": "u", "tenant": "t1"})).unwrap();
        assert_eq!(
            m.extra,
            [
                (
                    "a.example.com/list".to_string(),
                    vec!["x".to_string(), "y".to_string()]
                ),
                ("z.example.com/tenant".to_string(), vec!["t1".to_string()]),
            ]
        );
    }

    #[test]
    fn claim_validation_rules_required_values_then_expressions() {
        let r = rules(|s| {
            s.claim_validation_rules = vec![
                ClaimRuleSpec {
                    expression: Some("claims.exp - claims.nbf <= 86400".into()),
                    message: Some("total token lifetime must not exceed 24 hours".into()),
                    ..Default::default()
                },
                ClaimRuleSpec {
                    claim: Some("hd".into()),
                    required_value: Some("example.com".into()),
                    ..Default::default()
                },
            ]
        });
        let good = json!({"sub": "u", "hd": "example.com", "nbf": 0, "exp": 86400});
        assert!(apply(&r, good).is_ok());
        // Both fail: the required claim is checked first.
        let both = json!({"sub": "u", "hd": "other", "nbf": 0, "exp": 86401});
        assert!(apply(&r, both).unwrap_err().contains("\"hd\""));
        let long = json!({"sub": "u", "hd": "example.com", "nbf": 0, "exp": 86401});
        assert_eq!(
            apply(&r, long).unwrap_err(),
            "total token lifetime must not exceed 24 hours"
        );
        assert!(apply(&r, json!({"sub": "u", "nbf": 0, "exp": 1})).is_err());
        assert!(apply(&r, json!({"sub": "u", "hd": 1, "nbf": 0, "exp": 1})).is_err());
        let r = rules(|s| {
            s.claim_validation_rules = vec![ClaimRuleSpec {
                expression: Some("claims.sub".into()),
                ..Default::default()
            }]
        });
        assert!(apply(&r, json!({"sub": "u"}))
            .unwrap_err()
            .contains("boolean"));
    }

    #[test]
    fn user_validation_rules_see_the_mapped_user_without_system_authenticated() {
        let r = rules(|s| {
            s.username = claim("sub", "oidc:");
            s.groups = claim("groups", "");
            s.user_validation_rules = vec![
                UserRuleSpec {
                    expression: Some("!user.username.startsWith('oidc:admin')".into()),
                    message: Some("no admins here".into()),
                },
                UserRuleSpec {
                    expression: Some("!('system:authenticated' in user.groups)".into()),
                    message: None,
                },
                UserRuleSpec {
                    expression: Some(
                        "!has(user.extra.foo) && user.uid == '' && size(user.groups) <= 2".into(),
                    ),
                    message: None,
                },
            ];
        });
        assert!(apply(&r, json!({"sub": "alice", "groups": ["a"]})).is_ok());
        assert_eq!(
            apply(&r, json!({"sub": "admin1"})).unwrap_err(),
            "no admins here"
        );
        let e = apply(&r, json!({"sub": "u", "groups": ["a", "b", "c"]})).unwrap_err();
        assert!(e.contains("size(user.groups)"), "{e}");
    }

    #[test]
    fn an_email_username_expression_must_check_email_verified() {
        let spec = |extra: Option<&str>, rule: Option<&str>, user: &str| {
            let mut s = RulesSpec {
                username: expr(user),
                ..RulesSpec::default()
            };
            if let Some(e) = extra {
                s.extra = vec![ExtraSpec {
                    key: "example.com/v".into(),
                    value_expression: Some(e.into()),
                }];
            }
            if let Some(e) = rule {
                s.claim_validation_rules = vec![ClaimRuleSpec {
                    expression: Some(e.into()),
                    ..Default::default()
                }];
            }
            ClaimRules::compile(s).map(|_| ())
        };
        let e = spec(None, None, "claims.email").unwrap_err();
        assert_eq!(e.field, Field::Username(Part::Expression));
        assert!(spec(None, None, "claims.email_").is_ok());
        assert!(spec(None, None, "claims.email_verified ? claims.email : ''").is_ok());
        assert!(spec(None, Some("claims.email_verified == true"), "claims.email").is_ok());
        assert!(spec(Some("string(claims.email_verified)"), None, "claims.email").is_ok());
        assert!(spec(None, None, "[claims.email, 'x'].join('')").is_err());
        let r = ClaimRules::compile(RulesSpec {
            username: expr("claims.email_verified ? claims.email : ''"),
            ..RulesSpec::default()
        })
        .unwrap();
        let m = apply(&r, json!({"email": "a@b", "email_verified": false}));
        assert!(m.unwrap_err().contains("empty username"));
    }

    #[test]
    fn bad_expressions_name_their_field() {
        let mut s = RulesSpec {
            username: claim("sub", ""),
            ..RulesSpec::default()
        };
        s.groups = expr("claims.groups +");
        let e = ClaimRules::compile(s.clone()).unwrap_err();
        assert_eq!(e.field, Field::Groups(Part::Expression));
        s.groups = MappingSpec::default();
        s.user_validation_rules = vec![UserRuleSpec {
            expression: Some("claims.sub == 'x'".into()),
            message: None,
        }];
        let e = ClaimRules::compile(s).unwrap_err();
        assert_eq!(e.field, Field::UserRule(0, Part::Expression));
        assert!(e.message.contains("claims"), "{}", e.message);
    }
}

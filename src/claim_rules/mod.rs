//! Claim rules and mappings for `claims = "oidc"` issuers (SPEC section 13): the `jwt`
//! authenticator semantics of kube-apiserver's structured authentication configuration.
//!
//! ```text
//! RulesSpec (from TOML or an AuthenticationConfiguration file)
//!   ─► ClaimRules::compile   every check and every CEL expression, once, at config load
//!   ─► ClaimRules::apply     on a cache miss, after the signature: username, groups, uid,
//!                            extra, then claim validation rules, then user validation rules
//! ```
//!
//! Behaviour learned from kube-apiserver's
//! `staging/src/k8s.io/apiserver/plugin/pkg/authenticator/token/oidc/oidc.go` (evaluation
//! order, the `email_verified` rule, empty CEL usernames, string-list conversion, the user
//! view of user validation rules) and `pkg/apis/apiserver/validation/validation.go` (what a
//! configuration may say: claim xor expression, prefixes, extra keys, duplicates, the
//! `claims.email_verified` reference rule). Written here from scratch.
//!
//! This module imports nothing from the rest of the crate: config compiles into it, auth
//! applies it.

mod apply;
mod cel;
mod compiled;
mod spec;

pub use apply::{Failure, Mapped};
pub use spec::{
    ClaimRuleSpec, ExtraSpec, Field, MappingSpec, Part, RulesSpec, SpecError, UserRuleSpec,
};

use cel::{Expression, Scope};
pub use compiled::ClaimRules;
use compiled::{ClaimRule, Source, UserRule};

impl ClaimRules {
    /// Check `spec` as kube-apiserver validates a `jwt` authenticator and compile its
    /// expressions. The first error found is returned.
    pub fn compile(spec: RulesSpec) -> Result<ClaimRules, SpecError> {
        spec.check()?;
        let err = |field: Field| move |message: String| SpecError { field, message };
        let claims =
            |s: &str, field: Field| Expression::compile(s, Scope::Claims).map_err(err(field));
        let source =
            |m: &MappingSpec, which: fn(Part) -> Field| -> Result<Option<Source>, SpecError> {
                Ok(match (&m.claim, &m.expression) {
                    (_, Some(e)) => Some(Source::Expression(claims(e, which(Part::Expression))?)),
                    (Some(c), None) => Some(Source::Claim {
                        name: c.clone(),
                        prefix: m.prefix.clone().unwrap_or_default(),
                    }),
                    (None, None) => None,
                })
            };
        let username = source(&spec.username, Field::Username)?.ok_or(SpecError {
            field: Field::Username(Part::Claim),
            message: "a claim or an expression is required".into(),
        })?;
        let groups = source(&spec.groups, Field::Groups)?;
        let uid = source(&spec.uid, Field::Uid)?;
        let mut extra = Vec::new();
        for (i, x) in spec.extra.iter().enumerate() {
            let e = x.value_expression.as_deref().unwrap_or_default();
            extra.push((x.key.clone(), claims(e, Field::Extra(i, Part::Expression))?));
        }
        let mut required = Vec::new();
        let mut checks = Vec::new();
        for (i, r) in spec.claim_validation_rules.iter().enumerate() {
            match (&r.claim, &r.expression) {
                (Some(c), _) => required.push(ClaimRule::Required {
                    claim: c.clone(),
                    value: r.required_value.clone().unwrap_or_default(),
                }),
                (None, Some(e)) => checks.push(ClaimRule::Check {
                    expression: claims(e, Field::ClaimRule(i, Part::Expression))?,
                    message: r.message.clone().filter(|m| !m.is_empty()),
                }),
                (None, None) => {}
            }
        }
        let mut user_rules = Vec::new();
        for (i, r) in spec.user_validation_rules.iter().enumerate() {
            let e = r.expression.as_deref().unwrap_or_default();
            user_rules.push(UserRule {
                expression: Expression::compile(e, Scope::User)
                    .map_err(err(Field::UserRule(i, Part::Expression)))?,
                message: r.message.clone().filter(|m| !m.is_empty()),
            });
        }
        let claim_rules: Vec<ClaimRule> = required.into_iter().chain(checks).collect();
        // kube-apiserver: a username expression that reads claims.email must also read
        // claims.email_verified somewhere (username, extra or a claim validation rule).
        if let Source::Expression(u) = &username {
            let verified = |e: &Expression| e.selects("claims", "email_verified");
            let checked = verified(u)
                || extra.iter().any(|(_, e)| verified(e))
                || claim_rules.iter().any(
                    |r| matches!(r, ClaimRule::Check { expression, .. } if verified(expression)),
                );
            if u.selects("claims", "email") && !checked {
                return Err(SpecError {
                    field: Field::Username(Part::Expression),
                    message: "claims.email_verified must be used in the username expression, an extra value expression or a claim validation rule expression when claims.email is used in the username expression".into(),
                });
            }
        }
        let is_expr = |s: &Option<Source>| matches!(s, Some(Source::Expression(_)));
        let claims_cel = matches!(username, Source::Expression(_))
            || is_expr(&groups)
            || is_expr(&uid)
            || !extra.is_empty()
            || claim_rules
                .iter()
                .any(|r| matches!(r, ClaimRule::Check { .. }));
        Ok(ClaimRules {
            spec,
            username,
            groups,
            uid,
            extra,
            claim_rules,
            user_rules,
            claims_cel,
        })
    }
}

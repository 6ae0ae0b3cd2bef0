//! `[issuers.claim_mappings]`, `[[issuers.claim_validation_rules]]` and
//! `[[issuers.user_validation_rules]]` (SPEC section 13) → compiled [`ClaimRules`], with
//! errors named by their TOML key. The checks and the CEL are `claim_rules`'.

use std::sync::Arc;

use super::raw::RawIssuer;
use super::types::ConfigError;
use crate::claim_rules::{
    ClaimRuleSpec, ClaimRules, ExtraSpec, Field, MappingSpec, Part, RulesSpec, UserRuleSpec,
};

/// The TOML key of a rules field of `issuers[i]`.
fn toml_key(i: usize, field: Field) -> String {
    let mapping = |name: &str, part: Part| match part {
        Part::Prefix => format!("{name}_prefix"),
        Part::Expression => format!("{name}_expression"),
        _ => name.to_string(),
    };
    let rule_part = |part: Part| match part {
        Part::Claim => "claim",
        Part::RequiredValue => "required_value",
        Part::Message => "message",
        _ => "expression",
    };
    let rest = match field {
        Field::Username(p) => format!("claim_mappings.{}", mapping("username", p)),
        Field::Groups(p) => format!("claim_mappings.{}", mapping("groups", p)),
        Field::Uid(p) => format!("claim_mappings.{}", mapping("uid", p)),
        Field::Extra(j, Part::Key) => format!("claim_mappings.extra[{j}].key"),
        Field::Extra(j, _) => format!("claim_mappings.extra[{j}].value_expression"),
        Field::ClaimRule(j, p) => format!("claim_validation_rules[{j}].{}", rule_part(p)),
        Field::UserRule(j, p) => format!("user_validation_rules[{j}].{}", rule_part(p)),
    };
    format!("issuers[{i}].{rest}")
}

/// The rules of `issuers[i]`: `Some` for an OIDC issuer (its defaults: username from `sub`,
/// no prefix), `None` otherwise, where any rule or mapping is an error.
pub(super) fn toml_rules(
    i: usize,
    ri: &RawIssuer,
    oidc: bool,
    file: &str,
) -> Result<Option<Arc<ClaimRules>>, ConfigError> {
    let err = |key: String, message: String| ConfigError {
        file: file.to_string(),
        key,
        message,
    };
    if !oidc {
        for (set, name) in [
            (ri.claim_mappings.is_some(), "claim_mappings"),
            (
                ri.claim_validation_rules.is_some(),
                "claim_validation_rules",
            ),
            (ri.user_validation_rules.is_some(), "user_validation_rules"),
        ] {
            if set {
                return Err(err(
                    format!("issuers[{i}].{name}"),
                    "only valid with claims = \"oidc\"".into(),
                ));
            }
        }
        return Ok(None);
    }
    let m = ri.claim_mappings.as_ref();
    let get =
        |f: fn(&super::raw::RawClaimMappings) -> &Option<String>| m.and_then(|m| f(m).clone());
    let username_expression = get(|m| &m.username_expression);
    let username = MappingSpec {
        claim: get(|m| &m.username).or_else(|| username_expression.is_none().then(|| "sub".into())),
        prefix: get(|m| &m.username_prefix),
        expression: username_expression,
    };
    let spec = RulesSpec {
        username,
        groups: MappingSpec {
            claim: get(|m| &m.groups),
            prefix: get(|m| &m.groups_prefix),
            expression: get(|m| &m.groups_expression),
        },
        uid: MappingSpec {
            claim: get(|m| &m.uid),
            prefix: None,
            expression: get(|m| &m.uid_expression),
        },
        extra: m
            .and_then(|m| m.extra.as_ref())
            .into_iter()
            .flatten()
            .map(|x| ExtraSpec {
                key: x.key.clone(),
                value_expression: x.value_expression.clone(),
            })
            .collect(),
        claim_validation_rules: ri
            .claim_validation_rules
            .iter()
            .flatten()
            .map(|r| ClaimRuleSpec {
                claim: r.claim.clone(),
                required_value: r.required_value.clone(),
                expression: r.expression.clone(),
                message: r.message.clone(),
            })
            .collect(),
        user_validation_rules: ri
            .user_validation_rules
            .iter()
            .flatten()
            .map(|r| UserRuleSpec {
                expression: r.expression.clone(),
                message: r.message.clone(),
            })
            .collect(),
    };
    ClaimRules::compile(spec)
        .map(|r| Some(Arc::new(r)))
        .map_err(|e| err(toml_key(i, e.field), e.message))
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    const OIDC: &str = r#"
[server]
listen = "127.0.0.1:8080"
[upstream]
url = "http://127.0.0.1:8081"
[[issuers]]
name = "sso"
issuer = "https://sso.test"
audiences = ["a"]
claims = "oidc"
"#;

    fn key_of(extra: &str) -> String {
        Config::parse(&format!("{OIDC}{extra}"), "t.toml")
            .unwrap_err()
            .key
    }

    #[test]
    fn every_rule_form_loads() {
        let text = format!(
            "{OIDC}{}",
            r#"
[[issuers.claim_validation_rules]]
claim = "hd"
required_value = "example.com"
[[issuers.claim_validation_rules]]
expression = "claims.exp - claims.nbf <= 86400"
message = "total token lifetime must not exceed 24 hours"
[issuers.claim_mappings]
username_expression = '"oidc:" + claims.sub'
groups_expression = "claims.roles"
uid_expression = "claims.sub"
extra = [{ key = "example.com/tenant", value_expression = "claims.tenant" }]
[[issuers.user_validation_rules]]
expression = "!user.username.startsWith('system:')"
message = "username cannot use the reserved system: prefix"
"#
        );
        let c = Config::parse(&text, "t.toml").unwrap();
        let rules = c.issuers[0].claim_rules.as_ref().unwrap();
        assert!(rules.uses_cel());
        // Default OIDC mapping: username from sub.
        let c = Config::parse(OIDC, "t.toml").unwrap();
        let m = c.issuers[0].claim_rules.as_ref().unwrap();
        assert_eq!(m.spec().username.claim.as_deref(), Some("sub"));
    }

    #[test]
    fn bad_rules_are_named_by_their_toml_key() {
        let cases = [
            (
                "[issuers.claim_mappings]\ngroups_expression = \"claims.g +\"\n",
                "issuers[0].claim_mappings.groups_expression",
            ),
            (
                "[issuers.claim_mappings]\nusername = \"email\"\nusername_expression = \"claims.sub\"\n",
                "issuers[0].claim_mappings.username_expression",
            ),
            (
                "[issuers.claim_mappings]\nusername_expression = \"claims.sub\"\nusername_prefix = \"x:\"\n",
                "issuers[0].claim_mappings.username_prefix",
            ),
            (
                "[issuers.claim_mappings]\nusername_expression = \"claims.email\"\n",
                "issuers[0].claim_mappings.username_expression",
            ),
            (
                "[issuers.claim_mappings]\nextra = [{ key = \"tenant\", value_expression = \"claims.t\" }]\n",
                "issuers[0].claim_mappings.extra[0].key",
            ),
            (
                "[[issuers.claim_validation_rules]]\nexpression = \"true\"\n[[issuers.claim_validation_rules]]\nexpression = \"claims.x ==\"\n",
                "issuers[0].claim_validation_rules[1].expression",
            ),
            (
                "[[issuers.claim_validation_rules]]\nclaim = \"hd\"\nmessage = \"m\"\n",
                "issuers[0].claim_validation_rules[0].message",
            ),
            (
                "[[issuers.user_validation_rules]]\nexpression = \"claims.sub == ''\"\n",
                "issuers[0].user_validation_rules[0].expression",
            ),
            (
                "[[issuers.user_validation_rules]]\nexpresion = \"true\"\n",
                "issuers[0].user_validation_rules[0].expresion",
            ),
        ];
        for (extra, key) in cases {
            assert_eq!(key_of(extra), key, "{extra}");
        }
        let kube = OIDC.replace("claims = \"oidc\"", "claims = \"kubernetes\"");
        let e = Config::parse(
            &format!("{kube}[[issuers.user_validation_rules]]\nexpression = \"true\"\n"),
            "t.toml",
        )
        .unwrap_err();
        assert_eq!(e.key, "issuers[0].user_validation_rules");
    }
}

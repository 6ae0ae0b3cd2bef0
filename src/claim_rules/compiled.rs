//! A compiled rule set: what [`super::ClaimRules::compile`] builds and `apply` evaluates.

use super::cel::Expression;
use super::spec::RulesSpec;

/// Where one identity value comes from.
#[derive(Debug)]
pub(super) enum Source {
    Claim { name: String, prefix: String },
    Expression(Expression),
}

#[derive(Debug)]
pub(super) enum ClaimRule {
    /// The claim must be present, a string, and equal to the value.
    Required { claim: String, value: String },
    Check {
        expression: Expression,
        message: Option<String>,
    },
}

#[derive(Debug)]
pub(super) struct UserRule {
    pub(super) expression: Expression,
    pub(super) message: Option<String>,
}

/// A compiled rule set: equal when their specs are equal (so an unchanged issuer keeps its
/// keys and cached results across a reload).
#[derive(Debug)]
pub struct ClaimRules {
    pub(super) spec: RulesSpec,
    pub(super) username: Source,
    pub(super) groups: Option<Source>,
    pub(super) uid: Option<Source>,
    pub(super) extra: Vec<(String, Expression)>,
    /// `Required` rules first, then `Check` rules, each in configured order (kube-apiserver
    /// checks required claims before it evaluates expressions).
    pub(super) claim_rules: Vec<ClaimRule>,
    pub(super) user_rules: Vec<UserRule>,
    /// Some mapping or claim rule is an expression: the claims are converted for CEL.
    pub(super) claims_cel: bool,
}

impl PartialEq for ClaimRules {
    fn eq(&self, other: &Self) -> bool {
        self.spec == other.spec
    }
}

impl ClaimRules {
    /// The spec it was compiled from.
    pub fn spec(&self) -> &RulesSpec {
        &self.spec
    }

    /// Does anything here evaluate CEL (the summary shows it)?
    pub fn uses_cel(&self) -> bool {
        self.claims_cel || !self.user_rules.is_empty()
    }

    /// A one-line description for `check-config`.
    pub fn describe(&self) -> String {
        let src = |s: &Source| match s {
            Source::Claim { name, prefix } if prefix.is_empty() => format!("claim {name}"),
            Source::Claim { name, prefix } => format!("claim {name} (prefix {prefix:?})"),
            Source::Expression(e) => format!("expression {:?}", e.source()),
        };
        let mut out = format!("username {}", src(&self.username));
        if let Some(g) = &self.groups {
            out += &format!(", groups {}", src(g));
        }
        if let Some(u) = &self.uid {
            out += &format!(", uid {}", src(u));
        }
        if !self.extra.is_empty() {
            let keys: Vec<&str> = self.extra.iter().map(|(k, _)| k.as_str()).collect();
            out += &format!(", extra {keys:?}");
        }
        out += &format!(
            ", {} claim validation rule(s), {} user validation rule(s)",
            self.claim_rules.len(),
            self.user_rules.len()
        );
        out
    }
}

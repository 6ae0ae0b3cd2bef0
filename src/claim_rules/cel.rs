//! The CEL side of claim rules: compile an expression once (when the config loads) for one
//! scope — `claims` (validation rules and mappings) or `user` (user validation rules) — and
//! evaluate it over a token's claims or a mapped user.
//!
//! The environment is CEL's standard library plus the strings and lists extensions, close to
//! kube-apiserver's authentication environment (`k8s.io/apiserver/pkg/authentication/cel`).
//! An expression that names the other scope's variable, or any undeclared one, fails to
//! compile, as it does there (cel-go type-checks against the declared variables).

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use ::cel::common::ast::{operators, EntryExpr, Expr, IdedExpr, LiteralValue, MapExpr, StructExpr};
use ::cel::objects::{Key, Map};
use ::cel::{Context, Env, Value};

static ENV: LazyLock<Arc<Env>> = LazyLock::new(|| {
    let mut env = Env::stdlib();
    // These fail only when their names are declared already; they are not.
    let _ = env.add_extension(::cel::extensions::strings);
    let _ = env.add_extension(::cel::extensions::lists);
    Arc::new(env)
});

/// Which variable an expression sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// `claims`: the token's claims (validation rules, mappings).
    Claims,
    /// `user`: the mapped user (user validation rules).
    User,
}

impl Scope {
    pub fn variable(self) -> &'static str {
        match self {
            Scope::Claims => "claims",
            Scope::User => "user",
        }
    }
}

/// A compiled expression with its source (equality is by source).
pub struct Expression {
    source: String,
    program: ::cel::Program,
}

impl std::fmt::Debug for Expression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Expression").field(&self.source).finish()
    }
}

impl PartialEq for Expression {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Expression {
    pub fn compile(source: &str, scope: Scope) -> Result<Expression, String> {
        let (program, free) = crate::cel::parse(&ENV, source)?;
        if let Some(v) = free.iter().find(|v| *v != scope.variable()) {
            return Err(format!(
                "undeclared reference to {v:?} (only `{}` is available here)",
                scope.variable()
            ));
        }
        Ok(Expression {
            source: source.to_string(),
            program,
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// Does the expression select `field` of the variable `operand` (`claims.email`,
    /// `has(claims.email)`, `claims.?email`)? The test kube-apiserver makes for its
    /// `email_verified` rule, on the parsed expression.
    pub fn selects(&self, operand: &str, field: &str) -> bool {
        selects(self.program.expression(), operand, field)
    }

    /// Evaluate with `vars` bound.
    pub fn eval(&self, vars: &Vars) -> Result<Value, String> {
        self.program.execute(&vars.0).map_err(|e| e.to_string())
    }
}

/// The variables of one evaluation.
pub struct Vars(Context<'static, 'static>);

impl Vars {
    pub fn new(scope: Scope, value: Value) -> Vars {
        let mut ctx = Context::with_env(ENV.clone());
        ctx.add_variable_from_value(scope.variable(), value);
        Vars(ctx)
    }
}

/// A JSON claim set as CEL sees it: integers that fit are `int` (as kube-apiserver's
/// unstructured conversion makes them), larger ones `uint`, the rest `double`.
pub fn json_value(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Value::Int(i),
            (None, Some(u)) => Value::UInt(u),
            _ => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        serde_json::Value::String(s) => Value::String(Arc::new(s.clone())),
        serde_json::Value::Array(items) => {
            Value::List(Arc::new(items.iter().map(json_value).collect()))
        }
        serde_json::Value::Object(m) => object(m.iter().map(|(k, v)| (k.as_str(), json_value(v)))),
    }
}

/// A CEL map with string keys.
pub fn object<'a>(entries: impl IntoIterator<Item = (&'a str, Value)>) -> Value {
    let map: HashMap<Key, Value> = entries
        .into_iter()
        .map(|(k, v)| (Key::String(Arc::new(k.to_string())), v))
        .collect();
    Value::Map(Map { map: Arc::new(map) })
}

/// A CEL list of strings.
pub fn strings<'a>(items: impl IntoIterator<Item = &'a String>) -> Value {
    Value::List(Arc::new(
        items
            .into_iter()
            .map(|s| Value::String(Arc::new(s.clone())))
            .collect(),
    ))
}

/// A value's CEL type name, for messages.
pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::List(_) => "list",
        Value::Map(_) => "map",
        Value::Int(_) => "int",
        Value::UInt(_) => "uint",
        Value::Float(_) => "double",
        Value::String(_) => "string",
        Value::Bytes(_) => "bytes",
        Value::Bool(_) => "bool",
        Value::Null => "null",
        _ => "another type",
    }
}

fn is_ident(e: &IdedExpr, name: &str) -> bool {
    matches!(&e.expr, Expr::Ident(n) if n == name)
}

fn selects(e: &IdedExpr, operand: &str, field: &str) -> bool {
    let any = |items: &[&IdedExpr]| items.iter().any(|x| selects(x, operand, field));
    match &e.expr {
        Expr::Select(s) => {
            (is_ident(&s.operand, operand) && s.field == field)
                || selects(&s.operand, operand, field)
        }
        Expr::Call(c) => {
            let optional_select = c.target.is_none()
                && c.func_name == operators::OPT_SELECT
                && c.args.len() == 2
                && is_ident(&c.args[0], operand)
                && matches!(&c.args[1].expr, Expr::Literal(LiteralValue::String(s)) if s.inner() == field);
            optional_select
                || c.args.iter().any(|a| selects(a, operand, field))
                || c.target
                    .as_deref()
                    .is_some_and(|t| selects(t, operand, field))
        }
        Expr::List(l) => l.elements.iter().any(|x| selects(x, operand, field)),
        Expr::Map(MapExpr { entries }) | Expr::Struct(StructExpr { entries, .. }) => {
            entries.iter().any(|entry| match &entry.expr {
                EntryExpr::StructField(f) => selects(&f.value, operand, field),
                EntryExpr::MapEntry(m) => {
                    selects(&m.key, operand, field) || selects(&m.value, operand, field)
                }
            })
        }
        Expr::Comprehension(c) => any(&[
            &c.iter_range,
            &c.accu_init,
            &c.loop_cond,
            &c.loop_step,
            &c.result,
        ]),
        Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(json: &str) -> Vars {
        Vars::new(
            Scope::Claims,
            json_value(&serde_json::from_str(json).unwrap()),
        )
    }

    #[test]
    fn claims_evaluate_with_kube_apiserver_number_types() {
        let v = claims(r#"{"exp": 200, "nbf": 100, "big": 18446744073709551615, "f": 1.5}"#);
        let e = Expression::compile("claims.exp - claims.nbf <= 100", Scope::Claims).unwrap();
        assert_eq!(e.eval(&v), Ok(Value::Bool(true)));
        let e = Expression::compile("claims.nbf - claims.exp", Scope::Claims).unwrap();
        assert_eq!(e.eval(&v), Ok(Value::Int(-100)));
        let e = Expression::compile("claims.big", Scope::Claims).unwrap();
        assert_eq!(e.eval(&v), Ok(Value::UInt(u64::MAX)));
        let e = Expression::compile("claims.f", Scope::Claims).unwrap();
        assert_eq!(e.eval(&v), Ok(Value::Float(1.5)));
        // A missing claim is an evaluation error, not false.
        let e = Expression::compile("claims.missing == 'x'", Scope::Claims).unwrap();
        assert!(e.eval(&v).is_err());
        let e = Expression::compile("has(claims.missing)", Scope::Claims).unwrap();
        assert_eq!(e.eval(&v), Ok(Value::Bool(false)));
        let e = Expression::compile("'A-B'.lowerAscii().split('-')", Scope::Claims).unwrap();
        assert!(e.eval(&v).is_ok());
    }

    #[test]
    fn each_scope_sees_only_its_variable() {
        assert!(Expression::compile("claims.sub", Scope::Claims).is_ok());
        let e = Expression::compile("user.username", Scope::Claims).unwrap_err();
        assert!(e.contains("user"), "{e}");
        assert!(Expression::compile("claims.sub == ''", Scope::User).is_err());
        assert!(Expression::compile("user.groups.all(g, g != 'x')", Scope::User).is_ok());
        assert!(Expression::compile("claims.sub +", Scope::Claims).is_err());
        assert!(Expression::compile(" ", Scope::Claims).is_err());
    }

    #[test]
    fn email_selection_is_found_wherever_it_is() {
        let sel = |s: &str| {
            Expression::compile(s, Scope::Claims)
                .unwrap()
                .selects("claims", "email")
        };
        assert!(sel("claims.email"));
        assert!(sel("has(claims.email) ? claims.email : claims.sub"));
        assert!(sel("[claims.email].join(',')"));
        assert!(sel("{'a': claims.email}['a']"));
        assert!(sel("[1].map(x, claims.email)[0]"));
        assert!(!sel("claims.email_"));
        assert!(!sel("claims.emails"));
        assert!(!sel("claims['email']"));
        let e = Expression::compile("claims.email_verified", Scope::Claims).unwrap();
        assert!(e.selects("claims", "email_verified") && !e.selects("claims", "email"));
    }
}

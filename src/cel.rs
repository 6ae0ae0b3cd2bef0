//! CEL glue, for whoever evaluates expressions over request-time data: compile a program once
//! (when the config loads), then evaluate it with variables the caller binds. Values are bound
//! borrowed ([`string`], [`string_list`], [`map`]): an evaluation copies no string, it only
//! allocates the small containers the `cel` crate's values live in.
//!
//! The environment is CEL's standard library plus the strings extension (`lowerAscii`,
//! `split`, ...), as kube-apiserver's CEL environments have.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use ::cel::common::ast::{EntryExpr, Expr, IdedExpr, MapExpr, StructExpr};
use ::cel::common::types::{CelList, CelMap, CelMapKey, CelString};
use ::cel::common::value::Val;
use ::cel::{Context, Env, Value};

/// One environment for every program, built on first use.
static ENV: LazyLock<Arc<Env>> = LazyLock::new(|| {
    let mut env = Env::stdlib();
    // Fails only if the extension's names were declared already; they are not.
    let _ = env.add_extension(::cel::extensions::strings);
    Arc::new(env)
});

/// A compiled expression and its source.
pub struct Expression {
    source: String,
    program: ::cel::Program,
    /// The variables it names (each once).
    variables: Vec<String>,
}

impl std::fmt::Debug for Expression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Expression").field(&self.source).finish()
    }
}

/// Why an evaluation gave no boolean.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("{0}")]
    Execution(::cel::ExecutionError),
    #[error("the result is {0}, not a bool")]
    NotBool(&'static str),
}

impl Expression {
    /// Compile `source`. `variables` are the names the caller will bind: an expression that
    /// names any other top-level variable is refused here, not at the first request.
    pub fn compile(source: &str, variables: &[&str]) -> Result<Expression, String> {
        let (program, mut free) = parse(&ENV, source)?;
        if let Some(v) = free.iter().find(|v| !variables.contains(&v.as_str())) {
            return Err(format!(
                "undeclared variable {v:?} (available: {})",
                variables.join(", ")
            ));
        }
        free.sort_unstable();
        free.dedup();
        Ok(Expression {
            source: source.to_string(),
            program,
            variables: free,
        })
    }

    /// The expression as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Does the expression name this variable? (Bind only what it uses.)
    pub fn uses(&self, variable: &str) -> bool {
        self.variables.iter().any(|v| v == variable)
    }

    /// Evaluate with the bound variables; anything but a boolean result is an error.
    pub fn eval_bool(&self, vars: &Vars<'_>) -> Result<bool, EvalError> {
        match self.program.execute(&vars.0) {
            Ok(Value::Bool(b)) => Ok(b),
            Ok(other) => Err(EvalError::NotBool(type_name(&other))),
            Err(e) => Err(EvalError::Execution(e)),
        }
    }
}

/// Compile `source` in `env`, refusing an empty one: the program, and the variables it names
/// that no macro binds, in the order they appear (repeats kept). Each caller checks them
/// against what it binds.
pub fn parse(env: &Env, source: &str) -> Result<(::cel::Program, Vec<String>), String> {
    if source.trim().is_empty() {
        return Err("the expression is empty".into());
    }
    let program = env.compile(source).map_err(|e| e.to_string())?;
    let mut free = Vec::new();
    free_variables(program.expression(), &mut Vec::new(), &mut free);
    let free = free.into_iter().map(str::to_string).collect();
    Ok((program, free))
}

/// The variables `e` names that no macro binds (`xs.exists(x, ...)` binds `x`).
fn free_variables<'e>(e: &'e IdedExpr, bound: &mut Vec<&'e str>, out: &mut Vec<&'e str>) {
    match &e.expr {
        Expr::Ident(name) => {
            if !name.starts_with('@') && !bound.contains(&name.as_str()) {
                out.push(name);
            }
        }
        Expr::Call(c) => {
            if let Some(t) = &c.target {
                free_variables(t, bound, out);
            }
            for a in &c.args {
                free_variables(a, bound, out);
            }
        }
        Expr::Comprehension(c) => {
            free_variables(&c.iter_range, bound, out);
            free_variables(&c.accu_init, bound, out);
            let depth = bound.len();
            bound.push(&c.iter_var);
            bound.push(&c.accu_var);
            if let Some(v) = &c.iter_var2 {
                bound.push(v);
            }
            for inner in [&c.loop_cond, &c.loop_step, &c.result] {
                free_variables(inner, bound, out);
            }
            bound.truncate(depth);
        }
        Expr::List(l) => {
            for x in &l.elements {
                free_variables(x, bound, out);
            }
        }
        Expr::Map(MapExpr { entries }) | Expr::Struct(StructExpr { entries, .. }) => {
            for entry in entries {
                match &entry.expr {
                    EntryExpr::StructField(f) => free_variables(&f.value, bound, out),
                    EntryExpr::MapEntry(m) => {
                        free_variables(&m.key, bound, out);
                        free_variables(&m.value, bound, out);
                    }
                }
            }
        }
        Expr::Select(sel) => free_variables(&sel.operand, bound, out),
        Expr::Literal(_) | Expr::Unspecified => {}
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::List(_) => "a list",
        Value::Map(_) => "a map",
        Value::Int(_) | Value::UInt(_) => "an integer",
        Value::Float(_) => "a double",
        Value::String(_) => "a string",
        Value::Bytes(_) => "bytes",
        Value::Null => "null",
        _ => "not a bool",
    }
}

/// The variables of one evaluation, borrowing their data for `'v`.
pub struct Vars<'v>(Context<'v, 'v>);

impl Default for Vars<'_> {
    fn default() -> Self {
        Vars(Context::with_env(ENV.clone()))
    }
}

impl<'v> Vars<'v> {
    pub fn bind(&mut self, name: &str, value: Box<dyn Val + 'v>) {
        self.0.add_variable_as_val(name, value);
    }
}

/// A CEL string borrowing `s`.
pub fn string(s: &str) -> Box<dyn Val + '_> {
    Box::new(CelString::from(s))
}

/// A CEL list of strings, each borrowed.
pub fn string_list<'v>(items: impl IntoIterator<Item = &'v str>) -> Box<dyn Val + 'v> {
    let items: Vec<Box<dyn Val + 'v>> = items.into_iter().map(string).collect();
    Box::new(CelList::from(items))
}

/// A CEL map with string keys, each borrowed.
pub fn map<'v>(
    entries: impl IntoIterator<Item = (&'v str, Box<dyn Val + 'v>)>,
) -> Box<dyn Val + 'v> {
    let entries: HashMap<CelMapKey<'v>, Box<dyn Val + 'v>> = entries
        .into_iter()
        .map(|(k, v)| (CelMapKey::from(k), v))
        .collect();
    Box::new(CelMap::from(entries))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars<'v>(groups: &'v [String], method: &'v str) -> Vars<'v> {
        let mut v = Vars::default();
        v.bind(
            "user",
            map([
                ("username", string("alice")),
                ("groups", string_list(groups.iter().map(String::as_str))),
                ("extra", map([("scopes", string_list(["read", "write"]))])),
            ]),
        );
        v.bind("request", map([("method", string(method))]));
        v
    }

    #[test]
    fn evaluates_over_bound_variables() {
        let groups = vec!["ops".to_string(), "dev".to_string()];
        let e = Expression::compile(
            r#"request.method == "GET" && "ops" in user.groups && "read" in user.extra["scopes"]"#,
            &["user", "request"],
        )
        .unwrap();
        assert!(e.eval_bool(&vars(&groups, "GET")).unwrap());
        assert!(!e.eval_bool(&vars(&groups, "POST")).unwrap());
        let e = Expression::compile(
            r#"user.groups.exists(g, g.startsWith("de")) && user.username.lowerAscii() == "alice""#,
            &["user", "request"],
        )
        .unwrap();
        assert!(e.eval_bool(&vars(&groups, "GET")).unwrap());
    }

    #[test]
    fn non_bool_results_and_runtime_errors_are_errors() {
        let groups = vec![];
        let v = vars(&groups, "GET");
        let e = Expression::compile("user.username", &["user", "request"]).unwrap();
        assert!(matches!(e.eval_bool(&v), Err(EvalError::NotBool(_))));
        let e = Expression::compile("user.extra['missing'][0] == 'x'", &["user"]).unwrap();
        assert!(matches!(e.eval_bool(&v), Err(EvalError::Execution(_))));
    }

    #[test]
    fn bad_expressions_fail_to_compile() {
        assert!(Expression::compile("user.groups.exists(", &["user"]).is_err());
        assert!(Expression::compile("  ", &["user"]).is_err());
        let e = Expression::compile("usr.username == 'a'", &["user", "request"]).unwrap_err();
        assert!(e.contains("usr"), "{e}");
        assert!(Expression::compile("[1].all(x, x > 0)", &[]).is_ok());
        assert!(Expression::compile("[1].all(x, y > 0)", &[]).is_err());
        assert!(Expression::compile("[1].map(x, x).exists(x, x == 1) && x == 1", &[]).is_err());
    }
}

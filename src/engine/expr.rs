//! CEL expressions: `when` conditions and `{{ expr }}` templates.

use std::sync::{Arc, LazyLock};

use cel::{Context, Env, Program, Value};

/// The environment every expression compiles and runs in: the standard library plus the strings
/// extension (`lowerAscii`, `split`, ...), as users know it from Kubernetes CEL.
static ENV: LazyLock<Arc<Env>> = LazyLock::new(|| {
    let mut env = Env::stdlib();
    env.add_extension(cel::extensions::strings).expect("strings extension loads");
    Arc::new(env)
});

/// Compiles an expression, or says why it does not compile.
pub fn compile(expr: &str) -> Result<Program, String> {
    ENV.compile(expr).map_err(|e| format!("{expr:?} does not compile: {}", one_line(&e.to_string())))
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The variables expressions see: `params`, `steps`, `workflow` (a JSON object with those keys).
pub struct Scope {
    vars: serde_json::Value,
}

impl Scope {
    pub fn new(vars: serde_json::Value) -> Self {
        Self { vars }
    }

    fn eval(&self, expr: &str) -> Result<Value, String> {
        let program = compile(expr)?;
        let mut ctx = Context::with_env(ENV.clone());
        if let serde_json::Value::Object(vars) = &self.vars {
            for (name, value) in vars {
                let v = cel::to_value(value).map_err(|e| format!("variable {name}: {e}"))?;
                ctx.add_variable_from_value(name.clone(), v);
            }
        }
        program.execute(&ctx).map_err(|e| format!("{expr:?} failed: {}", one_line(&e.to_string())))
    }

    /// Evaluates a `when` condition, which must be a boolean.
    pub fn eval_bool(&self, expr: &str) -> Result<bool, String> {
        match self.eval(expr)? {
            Value::Bool(b) => Ok(b),
            other => Err(format!("{expr:?} is {}, not a boolean", render_value(&other))),
        }
    }

    /// Replaces each `{{ expr }}` in `text` by the expression's value.
    pub fn render(&self, text: &str) -> Result<String, String> {
        let mut out = String::with_capacity(text.len());
        for segment in parse_template(text)? {
            match segment {
                Segment::Literal(s) => out.push_str(s),
                Segment::Expr(e) => out.push_str(&render_value(&self.eval(e)?)),
            }
        }
        Ok(out)
    }
}

/// Strings as they are, everything else as JSON (`3`, `true`, `["a"]`).
fn render_value(v: &Value) -> String {
    match v {
        Value::String(s) => s.to_string(),
        other => other.json().map(|j| j.to_string()).unwrap_or_else(|_| format!("{other:?}")),
    }
}

/// A piece of a template.
#[derive(Debug, PartialEq)]
pub enum Segment<'a> {
    Literal(&'a str),
    Expr(&'a str),
}

/// Splits text into literals and `{{ expr }}` expressions.
pub fn parse_template(text: &str) -> Result<Vec<Segment<'_>>, String> {
    let mut segments = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find("{{") {
        if open > 0 {
            segments.push(Segment::Literal(&rest[..open]));
        }
        let after = &rest[open + 2..];
        let close = after.find("}}").ok_or_else(|| format!("{text:?}: \"{{{{\" without a closing \"}}}}\""))?;
        let expr = after[..close].trim();
        if expr.is_empty() {
            return Err(format!("{text:?}: empty {{{{ }}}}"));
        }
        segments.push(Segment::Expr(expr));
        rest = &after[close + 2..];
    }
    if rest.contains("}}") {
        return Err(format!("{text:?}: \"}}}}\" without an opening \"{{{{\""));
    }
    if !rest.is_empty() {
        segments.push(Segment::Literal(rest));
    }
    Ok(segments)
}

/// Checks that every expression in a template compiles.
pub fn check_template(text: &str) -> Result<(), String> {
    for segment in parse_template(text)? {
        if let Segment::Expr(e) = segment {
            compile(e)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn scope() -> Scope {
        Scope::new(json!({
            "params": {"document": "s3://a.pdf"},
            "steps": {"scan": {"phase": "Succeeded", "outputs": {"flagged": "3"}, "decidedBy": ""}},
            "workflow": {"name": "wf", "namespace": "ns"},
        }))
    }

    #[test]
    fn renders_templates() {
        let s = scope();
        assert_eq!(s.render("plain").unwrap(), "plain");
        assert_eq!(s.render("{{ steps.scan.outputs.flagged }} in {{params.document}}").unwrap(), "3 in s3://a.pdf");
        assert_eq!(s.render("n={{ 1 + 2 }} b={{ true }}").unwrap(), "n=3 b=true");
        assert_eq!(s.render("{{ workflow.namespace + '/' + workflow.name }}").unwrap(), "ns/wf");
    }

    #[test]
    fn evaluates_conditions() {
        let s = scope();
        assert!(s.eval_bool("steps.scan.phase == 'Succeeded'").unwrap());
        assert!(s.eval_bool("int(steps.scan.outputs.flagged) > 2").unwrap());
        assert!(!s.eval_bool("params.document.startsWith('gs://')").unwrap());
        assert!(s.eval_bool("'ABC'.lowerAscii() == 'abc'").unwrap());
        assert!(s.eval_bool("1 + 1").unwrap_err().contains("not a boolean"));
        assert!(s.eval_bool("steps.nope.phase == 'x'").is_err());
    }

    #[test]
    fn refuses_bad_templates_and_expressions() {
        assert!(check_template("{{ a.b }}").is_ok());
        assert!(check_template("{{ a. }}").unwrap_err().contains("does not compile"));
        assert!(check_template("x {{ a").unwrap_err().contains("without a closing"));
        assert!(check_template("x }} a").unwrap_err().contains("without an opening"));
        assert!(check_template("{{   }}").unwrap_err().contains("empty"));
        assert!(compile("steps.a.phase == ").is_err());
        assert!(compile("(1").is_err());
    }
}

//! CEL expressions: `when` conditions and `{{ expr }}` templates, with the bounds that keep one
//! Workflow's expressions from taking the operator down.
//!
//! Measured on cel 0.15 (debug build): the parser recurses ~150 KiB of stack per bracket level
//! (14 nested brackets overflow a 2 MiB thread, 64 overflow 8 MiB), and the interpreter ~20-40 KiB
//! per level of the expression tree, which a chain `1 + 1 + ...` makes as deep as it is long (60
//! terms overflow 2 MiB). A stack overflow aborts the process. So expressions are bounded in
//! length and bracket nesting before they are parsed, in tree depth and nested comprehensions
//! before they are evaluated, and both happen on a thread with a large stack (`bounded`).
//! Evaluation also has a time limit: ten nested `all()` over short lists run for hours.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use cel::common::ast::{EntryExpr, Expr};
use cel::{Context, Env, IdedExpr, Program, Value};

use super::bounded;
use super::cel_runner::{Evaluated, Ran, runner};
use super::cel_task::{Answer, Request, Task};

/// Longest expression, in characters (the CRD caps `when` at the same).
pub const MAX_LENGTH: usize = hitl_api::workflow::MAX_EXPRESSION_LENGTH;
/// Deepest nesting of brackets `(`, `[`, `{`, checked before parsing.
pub const MAX_NESTING: usize = 32;
/// Deepest expression tree, checked before evaluating: `a + b + c` is 3 deep.
pub const MAX_DEPTH: usize = 100;
/// Comprehension macros (`all`, `exists`, `exists_one`, `map`, `filter`) inside one another:
/// each multiplies the running time by the length of its list.
pub const MAX_COMPREHENSION_NESTING: usize = 2;
/// `{{ }}` expressions in one template string (the CRD checks the same).
pub const MAX_TEMPLATE_EXPRESSIONS: usize = hitl_api::workflow::MAX_TEMPLATE_EXPRESSIONS;
/// Expressions (`when`s and `{{ }}`s) in one Workflow, and their characters in all: every one is
/// parsed on every reconcile (~17 µs per character at worst, debug build).
pub const MAX_WORKFLOW_EXPRESSIONS: usize = 512;
pub const MAX_WORKFLOW_CHARACTERS: usize = 32 * 1024;
/// How long one evaluation (a step's `when`, or all the templates of its container or message)
/// may take, its parsing included (at most ~0.6 s for a Workflow's 32768 characters, debug build).
pub const TIME_LIMIT: Duration = Duration::from_secs(1);

/// The environment every expression compiles and runs in: the standard library plus the strings
/// extension (`lowerAscii`, `split`, ...), as users know it from Kubernetes CEL.
static ENV: LazyLock<Arc<Env>> = LazyLock::new(|| {
    let mut env = Env::stdlib();
    env.add_extension(cel::extensions::strings).expect("strings extension loads");
    Arc::new(env)
});

/// Bounds that protect the parser: length and bracket nesting.
fn check_size(expr: &str) -> Result<(), String> {
    let length = expr.chars().count();
    if length > MAX_LENGTH {
        return Err(format!("the expression is {length} characters long; the limit is {MAX_LENGTH}"));
    }
    let nesting = bracket_nesting(expr);
    if nesting > MAX_NESTING {
        return Err(format!("the expression nests brackets {nesting} deep; the limit is {MAX_NESTING}"));
    }
    Ok(())
}

/// The deepest bracket nesting outside string literals and comments.
fn bracket_nesting(expr: &str) -> usize {
    let b = expr.as_bytes();
    let (mut i, mut depth, mut deepest) = (0, 0usize, 0);
    while i < b.len() {
        match b[i] {
            b'(' | b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b')' | b']' | b'}' => depth = depth.saturating_sub(1),
            b'/' if b.get(i + 1) == Some(&b'/') => {
                i = b[i..].iter().position(|&c| c == b'\n').map_or(b.len(), |n| i + n);
            }
            b'\'' | b'"' => {
                i = string_end(b, i);
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    deepest
}

/// Where the string literal opening at `b[start]` ends (the index after its closing quote):
/// `'x'`, `"x"`, `'''x'''`, `"""x"""`, raw with an `r`/`R` prefix (no escapes).
fn string_end(b: &[u8], start: usize) -> usize {
    let quote = b[start];
    let prefix = &b[..start];
    let raw = matches!(prefix.last(), Some(b'r' | b'R'))
        || (matches!(prefix.last(), Some(b'b' | b'B')) && matches!(prefix.iter().rev().nth(1), Some(b'r' | b'R')));
    let triple = b[start..].starts_with(&[quote; 3]);
    let close: &[u8] = if triple { &b[start..start + 3] } else { &b[start..start + 1] };
    let mut i = start + close.len();
    while i < b.len() {
        if b[i..].starts_with(close) {
            return i + close.len();
        }
        i += if b[i] == b'\\' && !raw { 2 } else { 1 };
    }
    b.len()
}

/// Bounds that protect the interpreter: tree depth and nested comprehensions.
fn check_shape(e: &IdedExpr) -> Result<(), String> {
    let (depth, comprehensions) = shape(e);
    if depth > MAX_DEPTH {
        return Err(format!(
            "the expression is {depth} operations deep; the limit is {MAX_DEPTH} (a chain such as a + b + c + ... counts one per term)"
        ));
    }
    if comprehensions > MAX_COMPREHENSION_NESTING {
        return Err(format!(
            "the expression nests {comprehensions} comprehensions (all, exists, exists_one, map, filter); the limit is {MAX_COMPREHENSION_NESTING}"
        ));
    }
    Ok(())
}

/// (depth of the tree, deepest nesting of comprehensions).
fn shape(e: &IdedExpr) -> (usize, usize) {
    let children: Vec<&IdedExpr> = match &e.expr {
        Expr::Call(c) => c.target.as_deref().into_iter().chain(&c.args).collect(),
        Expr::Comprehension(c) => vec![&c.iter_range, &c.accu_init, &c.loop_cond, &c.loop_step, &c.result],
        Expr::List(l) => l.elements.iter().collect(),
        Expr::Map(m) => m.entries.iter().flat_map(|en| entry_children(&en.expr)).collect(),
        Expr::Struct(s) => s.entries.iter().flat_map(|en| entry_children(&en.expr)).collect(),
        Expr::Select(s) => vec![&s.operand],
        Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => vec![],
    };
    let (depth, nesting) = children.into_iter().map(shape).fold((0, 0), |(d, n), (cd, cn)| (d.max(cd), n.max(cn)));
    let own = usize::from(matches!(e.expr, Expr::Comprehension(_)));
    (depth + 1, nesting + own)
}

fn entry_children(e: &EntryExpr) -> Vec<&IdedExpr> {
    match e {
        EntryExpr::StructField(f) => vec![&f.value],
        EntryExpr::MapEntry(m) => vec![&m.key, &m.value],
    }
}

/// Compiles a bounded expression. Recursive: run it on a large stack (`bounded`).
fn compile(expr: &str) -> Result<Program, String> {
    check_size(expr).map_err(|e| format!("{:?}: {e}", abbreviated(expr)))?;
    let program = ENV.compile(expr).map_err(|e| format!("{expr:?} does not compile: {}", one_line(&e.to_string())))?;
    check_shape(program.expression()).map_err(|e| format!("{expr:?}: {e}"))?;
    Ok(program)
}

/// An over-long expression, shortened for a message.
fn abbreviated(expr: &str) -> String {
    match expr.char_indices().nth(80) {
        Some((at, _)) => format!("{}...", &expr[..at]),
        None => expr.to_string(),
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Where an expression is written (for messages), and whether it is a template of `{{ }}`s or a
/// bare expression (`when`).
pub struct Source<'a> {
    pub at: String,
    pub text: &'a str,
    pub template: bool,
}

/// Checks all of a Workflow's expressions: each template's number of `{{ }}` and each
/// expression's size, the Workflow's totals, then (on a large stack) that each expression
/// compiles and is within the bounds on its shape.
pub fn check_all(sources: &[Source<'_>]) -> Result<(), String> {
    let mut exprs = Vec::new();
    for s in sources {
        let found = if s.template { template_expressions(s.text) } else { Ok(vec![s.text]) };
        for e in found.map_err(|e| format!("{}: {e}", s.at))? {
            check_size(e).map_err(|err| format!("{}: {:?}: {err}", s.at, abbreviated(e)))?;
            exprs.push((&s.at, e));
        }
    }
    let chars: usize = exprs.iter().map(|(_, e)| e.chars().count()).sum();
    if exprs.len() > MAX_WORKFLOW_EXPRESSIONS {
        return Err(format!("the Workflow has {} expressions; the limit is {MAX_WORKFLOW_EXPRESSIONS}", exprs.len()));
    }
    if chars > MAX_WORKFLOW_CHARACTERS {
        return Err(format!(
            "the Workflow's expressions have {chars} characters in all; the limit is {MAX_WORKFLOW_CHARACTERS}"
        ));
    }
    let compile_all =
        || exprs.iter().try_for_each(|(at, e)| compile(e).map(drop).map_err(|err| format!("{at}: {err}")));
    bounded::on_big_stack(compile_all).unwrap_or_else(|e| Err(format!("checking the expressions {e}")))
}

/// The `{{ }}` expressions of a template, at most `MAX_TEMPLATE_EXPRESSIONS` of them.
fn template_expressions(text: &str) -> Result<Vec<&str>, String> {
    let exprs: Vec<&str> = parse_template(text)?
        .into_iter()
        .filter_map(|s| match s {
            Segment::Expr(e) => Some(e),
            Segment::Literal(_) => None,
        })
        .collect();
    if exprs.len() > MAX_TEMPLATE_EXPRESSIONS {
        return Err(format!(
            "{} {{{{ }}}} expressions in one string; the limit is {MAX_TEMPLATE_EXPRESSIONS}",
            exprs.len()
        ));
    }
    Ok(exprs)
}

/// Why an evaluation gave no value.
#[derive(Debug, Clone, PartialEq)]
pub enum EvalError {
    /// The expression failed or ran past the time limit: the step fails (`ExpressionError`).
    Failed(String),
    /// No evaluator could take it now (too many abandoned evaluations still running, or no
    /// evaluator process could be started): try again later.
    Busy(String),
}

impl EvalError {
    /// The same error with its message prefixed (e.g. by the field it came from).
    pub fn at(self, field: &str) -> Self {
        match self {
            Self::Failed(m) => Self::Failed(format!("{field}: {m}")),
            Self::Busy(m) => Self::Busy(format!("{field}: {m}")),
        }
    }
}

impl std::fmt::Display for EvalError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Failed(m) | Self::Busy(m) => f.write_str(m),
        }
    }
}

/// The variables expressions see: `params`, `steps`, `workflow` (a JSON object with those keys).
/// Evaluation runs where the process's runner puts it (`cel_runner`): by default on a thread of
/// this process, in the operator in a child process with a memory limit (`hitl_operator::sandbox`).
pub struct Scope {
    vars: serde_json::Value,
    time_limit: Duration,
}

impl Scope {
    pub fn new(vars: serde_json::Value) -> Self {
        Self { vars, time_limit: TIME_LIMIT }
    }

    #[cfg(test)]
    fn with_time_limit(mut self, limit: Duration) -> Self {
        self.time_limit = limit;
        self
    }

    /// Evaluates a `when` condition, which must be a boolean.
    pub fn eval_bool(&self, expr: &str) -> Result<bool, EvalError> {
        match self.limited(Task::Bool(expr.to_string())).map_err(|(_, e)| e)? {
            Answer::Bool(b) => Ok(b),
            other => Err(EvalError::Failed(format!("{expr:?}: unexpected answer {other:?}"))),
        }
    }

    /// Evaluates an expression to its value as JSON (a `forEach.list`).
    pub fn eval_json(&self, expr: &str) -> Result<serde_json::Value, EvalError> {
        match self.limited(Task::Json(expr.to_string())).map_err(|(_, e)| e)? {
            Answer::Json(v) => Ok(v),
            other => Err(EvalError::Failed(format!("{expr:?}: unexpected answer {other:?}"))),
        }
    }

    /// Replaces each `{{ expr }}` in `text` by the expression's value.
    pub fn render(&self, text: &str) -> Result<String, EvalError> {
        let mut out = self.render_all(vec![text.to_string()]).map_err(|(_, e)| e)?;
        Ok(out.remove(0))
    }

    /// Renders several templates (a step's) within one time limit; an error says which failed.
    pub fn render_all(&self, texts: Vec<String>) -> Result<Vec<String>, (usize, EvalError)> {
        if !texts.iter().any(|t| t.contains("{{") || t.contains("}}")) {
            return Ok(texts);
        }
        let count = texts.len();
        match self.limited(Task::Render(texts))? {
            Answer::Render(out) if out.len() == count => Ok(out),
            other => Err((0, EvalError::Failed(format!("unexpected answer {other:?}")))),
        }
    }

    /// The namespace of the Workflow whose variables these are: evaluations are shared out fairly
    /// between namespaces.
    fn namespace(&self) -> &str {
        self.vars["workflow"]["namespace"].as_str().unwrap_or_default()
    }

    /// Runs `task` with the variables, within the time limit, on the process's runner.
    fn limited(&self, task: Task) -> Result<Answer, (usize, EvalError)> {
        let request = Request { vars: self.vars.clone(), task };
        let Evaluated { ran, running: (at, expr) } = runner().run(self.namespace(), request, self.time_limit);
        let limit = self.time_limit;
        let failed = |m: String| Err((at, EvalError::Failed(m)));
        match ran {
            Ran::Done(r) => r.map_err(|(i, e)| (i, EvalError::Failed(e))),
            Ran::TimedOut { stopped: true } => failed(format!(
                "{expr:?} took longer than {limit:?} (the time limit for evaluating expressions) and was stopped"
            )),
            Ran::TimedOut { stopped: false } => failed(format!(
                "{expr:?} took longer than {limit:?} (the time limit for evaluating expressions) and was abandoned"
            )),
            Ran::OutOfMemory { limit_mib } => failed(format!(
                "{expr:?} needed more than {limit_mib} MiB (the memory limit for evaluating expressions) and was stopped"
            )),
            Ran::Crashed(why) => failed(format!("{expr:?}: evaluation failed: {why}")),
            Ran::Busy(why) => Err((at, EvalError::Busy(why))),
        }
    }
}

/// A CEL context holding the variables.
pub(super) fn context(vars: &serde_json::Value) -> Result<Context<'static, 'static>, String> {
    let mut ctx = Context::with_env(ENV.clone());
    if let serde_json::Value::Object(vars) = vars {
        for (name, value) in vars {
            let v = cel::to_value(value).map_err(|e| format!("variable {name}: {e}"))?;
            ctx.add_variable_from_value(name.clone(), v);
        }
    }
    Ok(ctx)
}

/// Compiles (bounds included) and evaluates one expression, on a CEL thread.
pub(super) fn eval(ctx: &Context, expr: &str) -> Result<Value, String> {
    let program = compile(expr)?;
    program.execute(ctx).map_err(|e| format!("{expr:?} failed: {}", one_line(&e.to_string())))
}

/// Strings as they are, everything else as JSON (`3`, `true`, `["a"]`).
pub(super) fn render_value(v: &Value) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn scope() -> Scope {
        Scope::new(json!({
            "params": {"document": "s3://a.pdf", "letters": "x".repeat(600)},
            "steps": {"scan": {"phase": "Succeeded", "outputs": {"flagged": "3"}, "decidedBy": ""}},
            "workflow": {"name": "wf", "namespace": "ns"},
        }))
    }

    fn check_when(expr: &str) -> Result<(), String> {
        check_all(&[Source { at: "when".into(), text: expr, template: false }])
    }

    fn check_template(text: &str) -> Result<(), String> {
        check_all(&[Source { at: "args[0]".into(), text, template: true }])
    }

    /// `1 + 1 + ... + 1`, `n` terms: a tree `n` deep.
    fn chain(n: usize) -> String {
        vec!["1"; n].join(" + ")
    }

    /// `n` comprehensions, each inside the one before.
    fn nested_all(n: usize) -> String {
        (0..n).rev().fold("true".to_string(), |inner, i| format!("[1, 2].all(x{i}, {inner})"))
    }

    #[test]
    fn renders_templates() {
        let s = scope();
        assert_eq!(s.render("plain").unwrap(), "plain");
        assert_eq!(s.render("{{ steps.scan.outputs.flagged }} in {{params.document}}").unwrap(), "3 in s3://a.pdf");
        assert_eq!(s.render("n={{ 1 + 2 }} b={{ true }}").unwrap(), "n=3 b=true");
        assert_eq!(s.render("{{ workflow.namespace + '/' + workflow.name }}").unwrap(), "ns/wf");
        let all = s.render_all(vec!["a".into(), "{{ 1 }}".into(), "{{ nope }}".into()]).unwrap_err();
        assert_eq!(all.0, 2, "the error names the template that failed: {all:?}");
    }

    #[test]
    fn evaluates_conditions() {
        let s = scope();
        assert!(s.eval_bool("steps.scan.phase == 'Succeeded'").unwrap());
        assert!(s.eval_bool("int(steps.scan.outputs.flagged) > 2").unwrap());
        assert!(!s.eval_bool("params.document.startsWith('gs://')").unwrap());
        assert!(s.eval_bool("'ABC'.lowerAscii() == 'abc'").unwrap());
        assert!(s.eval_bool("1 + 1").unwrap_err().to_string().contains("not a boolean"));
        assert!(matches!(s.eval_bool("steps.nope.phase == 'x'"), Err(EvalError::Failed(_))));
    }

    #[test]
    fn refuses_bad_templates_and_expressions() {
        assert!(check_template("{{ a.b }}").is_ok());
        assert!(check_template("{{ a. }}").unwrap_err().contains("does not compile"));
        assert!(check_template("x {{ a").unwrap_err().contains("without a closing"));
        assert!(check_template("x }} a").unwrap_err().contains("without an opening"));
        assert!(check_template("{{   }}").unwrap_err().contains("empty"));
        assert!(check_when("steps.a.phase == ").is_err());
        assert!(check_when("(1").is_err());
    }

    #[test]
    fn bounds_length() {
        let longest = format!("'{}'", "a".repeat(MAX_LENGTH - 2));
        assert_eq!(check_when(&longest), Ok(()));
        let err = check_when(&format!("'{}'", "a".repeat(MAX_LENGTH - 1))).unwrap_err();
        assert!(err.contains("is 1025 characters long; the limit is 1024"), "{err}");
    }

    #[test]
    fn bounds_bracket_nesting_before_parsing() {
        let nest = |n: usize| format!("{}1{}", "(".repeat(n), ")".repeat(n));
        assert_eq!(check_when(&nest(MAX_NESTING)), Ok(()));
        let err = check_when(&nest(MAX_NESTING + 1)).unwrap_err();
        assert!(err.contains("nests brackets 33 deep; the limit is 32"), "{err}");
        let lists = format!("size({}1{}) == 1", "[".repeat(40), "]".repeat(40));
        assert!(check_when(&lists).unwrap_err().contains("41 deep"));
        // Brackets in strings and comments do not count; a raw string's backslash escapes nothing.
        let opens = "(".repeat(40);
        assert_eq!(check_when(&format!("'{opens}' != ''")), Ok(()));
        assert_eq!(check_when(&format!("'''{opens}''' != ''")), Ok(()));
        assert_eq!(check_when(&format!("'\\'{opens}' != ''")), Ok(()));
        assert_eq!(check_when(&format!("true // {opens}\n")), Ok(()));
        let hidden = format!("r'\\' + {opens}'x'{} + '", ")".repeat(40));
        assert!(check_when(&hidden).unwrap_err().contains("40 deep"));
    }

    #[test]
    fn bounds_depth_before_evaluating() {
        assert_eq!(check_when(&chain(MAX_DEPTH)), Ok(()));
        assert_eq!(scope().render(&format!("{{{{ {} }}}}", chain(MAX_DEPTH))).unwrap(), "100");
        let err = check_when(&chain(MAX_DEPTH + 1)).unwrap_err();
        assert!(err.contains("is 101 operations deep; the limit is 100"), "{err}");
        let err = scope().eval_bool(&format!("{} > 0", chain(MAX_DEPTH + 1))).unwrap_err().to_string();
        assert!(err.contains("operations deep"), "checked again when evaluated: {err}");
    }

    #[test]
    fn bounds_nested_comprehensions() {
        assert_eq!(check_when(&nested_all(MAX_COMPREHENSION_NESTING)), Ok(()));
        assert!(scope().eval_bool(&nested_all(MAX_COMPREHENSION_NESTING)).unwrap());
        let side_by_side = "[1].all(x, [2].exists(y, y > x)) && [1].map(z, z * 2).exists(w, w == 2)";
        assert_eq!(check_when(side_by_side), Ok(()), "only nesting counts");
        let err = check_when(&nested_all(MAX_COMPREHENSION_NESTING + 1)).unwrap_err();
        assert!(err.contains("nests 3 comprehensions (all, exists, exists_one, map, filter); the limit is 2"), "{err}");
    }

    #[test]
    fn bounds_a_templates_expressions() {
        let many = |n: usize| vec!["{{ 1 }}"; n].join(" ");
        assert_eq!(check_template(&many(MAX_TEMPLATE_EXPRESSIONS)), Ok(()));
        let err = check_template(&many(MAX_TEMPLATE_EXPRESSIONS + 1)).unwrap_err();
        assert!(err.contains("17 {{ }} expressions in one string; the limit is 16"), "{err}");
    }

    #[test]
    fn bounds_a_workflows_expressions() {
        let texts: Vec<String> = (0..=MAX_WORKFLOW_EXPRESSIONS / 16).map(|_| vec!["{{ 1 }}"; 16].join("")).collect();
        let sources: Vec<Source<'_>> =
            texts.iter().map(|t| Source { at: "args".into(), text: t, template: true }).collect();
        let err = check_all(&sources).unwrap_err();
        assert!(err.contains("has 528 expressions; the limit is 512"), "{err}");
        let long = format!("'{}'", "a".repeat(1000));
        let sources: Vec<Source<'_>> =
            (0..33).map(|_| Source { at: "when".into(), text: &long, template: false }).collect();
        let err = check_all(&sources).unwrap_err();
        assert!(err.contains("have 33066 characters in all; the limit is 32768"), "{err}");
    }

    /// The reported attacks: an 80 KB `{{ 1 + 1 + ... }}` (it overflowed the stack and aborted the
    /// process) and a 954-character `when` of ten nested `all()` (it ran for hours).
    #[test]
    fn the_reported_attacks_are_refused_before_parsing_or_evaluating() {
        let bomb = format!("{{{{ {} }}}}", chain(20_000));
        assert!(bomb.len() > 80_000);
        assert!(check_template(&bomb).unwrap_err().contains("characters long; the limit is 1024"));
        let list = format!("[{}]", (0..20).map(|i| i.to_string()).collect::<Vec<_>>().join(","));
        let when = (0..10).rev().fold("true".to_string(), |inner, i| format!("{list}.all(x{i}, {inner})"));
        assert!(when.len() < 1024);
        assert!(check_when(&when).unwrap_err().contains("nests 10 comprehensions"));
    }

    #[test]
    fn an_evaluation_past_the_time_limit_fails_and_is_abandoned() {
        // 600 x 600 iterations: about a second on a debug build, far past 20 ms on any build.
        let slow = "params.letters.split('').all(a, params.letters.split('').all(b, a == b))";
        assert_eq!(check_when(slow), Ok(()), "within the static bounds");
        let err = scope().with_time_limit(Duration::from_millis(20)).eval_bool(slow).unwrap_err();
        assert!(matches!(err, EvalError::Failed(_)), "{err:?}");
        assert!(err.to_string().contains("took longer than 20ms"), "{err}");
        let texts = vec!["ok".to_string(), format!("{{{{ 1 }}}} {{{{ {slow} }}}}")];
        let (at, e) = scope().with_time_limit(Duration::from_millis(20)).render_all(texts).unwrap_err();
        assert_eq!(at, 1);
        assert!(e.to_string().starts_with(&format!("{slow:?} took longer than 20ms")), "names the expression: {e}");
    }
}

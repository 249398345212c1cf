//! One evaluation as data: the variables and what to do with them, and the answer. A runner
//! (`cel_runner`) carries a `Request` wherever the evaluation is to happen (a thread of this
//! process, or a child process that can be stopped and whose memory is limited) and `answer`
//! does the work there.

use serde::{Deserialize, Serialize};

use cel::Value;

use super::expr::{Segment, context, eval, parse_template, render_value};

/// What to evaluate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Task {
    /// A `when`: a boolean.
    Bool(String),
    /// A `forEach.list`: a value as JSON.
    Json(String),
    /// Templates of `{{ }}`s, each rendered to a string.
    Render(Vec<String>),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// `params`, `steps`, `workflow` (and `item`, `index`): a JSON object.
    pub vars: serde_json::Value,
    pub task: Task,
}

/// The value of a `Task` of the same kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Answer {
    Bool(bool),
    Json(serde_json::Value),
    Render(Vec<String>),
}

/// An answer, or (the index of the template that failed, why).
pub type Answered = Result<Answer, (usize, String)>;

/// Evaluates `request`. `progress(index, expression)` is told each expression before it starts,
/// so a runner that has to stop the evaluation can say which one ran too long. Recursive: run it
/// on a large stack (`bounded::STACK_SIZE`).
pub fn answer(request: &Request, progress: &mut dyn FnMut(usize, &str)) -> Answered {
    let ctx = context(&request.vars).map_err(|e| (0, e))?;
    match &request.task {
        Task::Bool(expr) => {
            progress(0, expr);
            match eval(&ctx, expr).map_err(|e| (0, e))? {
                Value::Bool(b) => Ok(Answer::Bool(b)),
                other => Err((0, format!("{expr:?} is {}, not a boolean", render_value(&other)))),
            }
        }
        Task::Json(expr) => {
            progress(0, expr);
            let v = eval(&ctx, expr).map_err(|e| (0, e))?;
            let json = v.json().map_err(|e| (0, format!("{expr:?} gives a value that is not JSON: {e}")))?;
            Ok(Answer::Json(json))
        }
        Task::Render(texts) => {
            let mut out = Vec::with_capacity(texts.len());
            for (i, text) in texts.iter().enumerate() {
                out.push(render_one(&ctx, &mut |e| progress(i, e), text).map_err(|e| (i, e))?);
            }
            Ok(Answer::Render(out))
        }
    }
}

fn render_one(ctx: &cel::Context, progress: &mut dyn FnMut(&str), text: &str) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    for segment in parse_template(text)? {
        match segment {
            Segment::Literal(s) => out.push_str(s),
            Segment::Expr(e) => {
                progress(e);
                out.push_str(&render_value(&eval(ctx, e)?));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request(task: Task) -> Request {
        Request { vars: json!({"params": {"p": "x"}}), task }
    }

    #[test]
    fn answers_each_kind_and_tells_which_expression_runs() {
        let mut seen = vec![];
        let mut progress = |i: usize, e: &str| seen.push((i, e.to_string()));
        assert_eq!(answer(&request(Task::Bool("params.p == 'x'".into())), &mut progress), Ok(Answer::Bool(true)));
        let texts = vec!["a".into(), "{{ params.p }}-{{ 1 + 1 }}".into()];
        assert_eq!(
            answer(&request(Task::Render(texts)), &mut progress),
            Ok(Answer::Render(vec!["a".into(), "x-2".into()]))
        );
        assert_eq!(answer(&request(Task::Json("[1]".into())), &mut progress), Ok(Answer::Json(json!([1]))));
        assert_eq!(
            seen,
            [(0, "params.p == 'x'".into()), (1, "params.p".into()), (1, "1 + 1".into()), (0, "[1]".into())]
        );
    }

    #[test]
    fn a_request_survives_its_trip_as_json() {
        let r = request(Task::Render(vec!["{{ 1 }}".into()]));
        let back: Request = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back, r);
    }
}

//! The container step kind: a Pod per attempt.

use super::ctx::{BUSY_RETRY, Ctx, after};
use super::pod_outcome::{PodOutcome, pod_outcome};
use super::retry::Failed;
use crate::event::Event;
use crate::expr::{self, EvalError};
use crate::outputs;
use hitl_api::{Step, StepContainer, StepPhase, StepStatus};

/// Starts a container step's next attempt, expanding its templates with the current scope.
pub(super) fn start(ctx: &mut Ctx<'_>, step: &Step, st: &mut StepStatus, steps: &[StepStatus]) {
    let scope = ctx.scope(steps);
    match render_container(step.container.as_ref().expect("container step"), &scope) {
        Ok(c) => ctx.start_attempt(step, st, c),
        Err(EvalError::Busy(_)) => ctx.wake_at(ctx.now + BUSY_RETRY),
        Err(EvalError::Failed(e)) => {
            ctx.finish(st, StepPhase::Failed, Some("ExpressionError"), Some(e.clone()));
            let note = format!("step {}: {e}", step.name);
            ctx.plan.events.push(Event { warning: true, reason: "StepFailed", note });
        }
    }
}

/// A running container step: its Pod's outcome, a timeout, or a retry.
pub(super) fn observe(ctx: &mut Ctx<'_>, step: &Step, st: &mut StepStatus, steps: &[StepStatus], failing: bool) {
    if let Some(at) = st.retry_at.clone() {
        // A retry waiting out its backoff: the failed attempt was already counted.
        if failing {
            st.retry_at = None;
            ctx.finish(st, StepPhase::Failed, st.reason.clone().as_deref(), st.message.clone());
        } else if at.0 <= ctx.now {
            st.retry_at = None;
            start(ctx, step, st, steps);
        } else {
            ctx.wake_at(at.0);
        }
        return;
    }
    let pod_name = st.pod_name.clone().unwrap_or_default();
    let failed = |reason: &'static str, message: String| Failed { reason, message, exit_code: None, steps };
    let retry = match pod_outcome(ctx.pods.get(pod_name.as_str()).copied()) {
        PodOutcome::Succeeded { message } if message.len() > outputs::MAX_OUTPUT_BYTES => {
            let msg = format!(
                "the termination message is {} bytes; outputs may be at most {} bytes",
                message.len(),
                outputs::MAX_OUTPUT_BYTES
            );
            ctx.attempt_failed(step, st, failing, failed("OutputsTooLarge", msg))
        }
        PodOutcome::Succeeded { message } => {
            st.outputs = outputs::from_termination_message(&message);
            ctx.finish(st, StepPhase::Succeeded, None, None);
            false
        }
        PodOutcome::Failed { reason, message, exit_code } => {
            ctx.attempt_failed(step, st, failing, Failed { reason: &reason, message, exit_code, steps })
        }
        PodOutcome::Stuck { reason, message } => {
            ctx.plan.delete_pods.push(pod_name);
            ctx.attempt_failed(step, st, failing, Failed { reason: &reason, message, exit_code: None, steps })
        }
        PodOutcome::Vanished => {
            let msg = format!("Pod {pod_name} disappeared before it finished");
            ctx.attempt_failed(step, st, failing, failed("PodDeleted", msg))
        }
        PodOutcome::Active => match (step.timeout_seconds, &st.attempt_started_at) {
            (Some(timeout), Some(started)) if after(started, timeout) <= ctx.now => {
                ctx.plan.delete_pods.push(pod_name);
                let msg = format!("the attempt ran longer than timeoutSeconds ({timeout}s)");
                ctx.attempt_failed(step, st, failing, failed("Timeout", msg))
            }
            (Some(timeout), Some(started)) => {
                ctx.wake_at(after(started, timeout));
                false
            }
            _ => false,
        },
    };
    if retry {
        start(ctx, step, st, steps);
    }
}

/// The container with its templates expanded, all within one time limit.
fn render_container(c: &StepContainer, scope: &expr::Scope) -> Result<StepContainer, EvalError> {
    let mut out = c.clone();
    let mut fields: Vec<(String, &mut String)> = Vec::new();
    fields.extend(out.command.iter_mut().enumerate().map(|(i, s)| (format!("container.command[{i}]"), s)));
    fields.extend(out.args.iter_mut().enumerate().map(|(i, s)| (format!("container.args[{i}]"), s)));
    let env = out.env.iter_mut().filter_map(|e| Some((format!("container.env[{}]", e.name), e.value.as_mut()?)));
    fields.extend(env);
    let texts = fields.iter().map(|(_, s)| s.to_string()).collect();
    let rendered = scope.render_all(texts).map_err(|(i, e)| e.at(&fields[i].0))?;
    for ((_, s), r) in fields.into_iter().zip(rendered) {
        *s = r;
    }
    Ok(out)
}
